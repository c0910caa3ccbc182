/* tests/unit/test_timer_wheel.c - deadlines fire once, in time, never
 * early; disarmed timers never fire; far deadlines survive many rounds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "../../shards/timer_wheel.h"

static int fired[8];

struct tt { struct timer t; int id; };

static void on_fire(struct timer *t, void *arg)
{
	struct tt *x = (struct tt *)t;
	int64_t *now = arg;
	assert_true(t->expire_ms <= *now);
	fired[x->id]++;
}

static void fires_in_time(void **state)
{
	struct timer_wheel w;
	int64_t now = 1000000;
	wheel_init(&w, now);
	struct tt a = { .id = 0 }, b = { .id = 1 }, c = { .id = 2 }, far = { .id = 3 };
	wheel_arm(&w, &a.t, now + 100);
	wheel_arm(&w, &b.t, now + 300);
	wheel_arm(&w, &c.t, now + 200);
	wheel_arm(&w, &far.t, now + (int64_t)WHEEL_SLOTS * WHEEL_TICK_MS * 3 + 70);
	wheel_disarm(&c.t);
	for (int64_t t = now; t < now + 400; t += 10) {
		wheel_advance(&w, t, on_fire, &t);
		if (t < now + 100)
			assert_int_equal(fired[0], 0);
	}
	assert_int_equal(fired[0], 1);
	assert_int_equal(fired[1], 1);
	assert_int_equal(fired[2], 0);
	assert_int_equal(fired[3], 0);
	int64_t t = now + (int64_t)WHEEL_SLOTS * WHEEL_TICK_MS * 3;
	wheel_advance(&w, t, on_fire, &t);
	assert_int_equal(fired[3], 0);
	t += 200;
	wheel_advance(&w, t, on_fire, &t);
	assert_int_equal(fired[3], 1);
	assert_false(timer_armed(&far.t));
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(fires_in_time) };
	return cmocka_run_group_tests_name("timer_wheel", tests, NULL, NULL);
}
