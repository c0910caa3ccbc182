# sluice - high-throughput outbound MTA. `make` builds ./sluice;
# `make check` runs every test CI runs; `make demo` shows it working.
PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
BASE_CFLAGS := -std=gnu11 -DSLUICE_DATADIR='"$(PREFIX)/share/sluice"' $(WARN) -pthread -MMD -MP
# dkim/exports.list: libopendkim's key parse reaches dkim/keys.c (see there).
LIBS := -luring -lconfig -lldns -lopendkim -lcrypto -pthread -Wl,--dynamic-list=dkim/exports.list
JEMALLOC := -ljemalloc

SRCS := engine/main.c engine/util.c engine/envelope.c engine/json.c engine/acct_log.c \
        engine/feeder.c engine/dsn.c \
        engine/config.c engine/spool.c engine/run.c engine/alloc.c engine/strmap.c \
        shards/ring.c shards/timer_wheel.c shards/smtp_reply.c shards/smtp_data.c \
        shards/shard.c shards/smtp_client.c \
        dkim/keys.c dkim/signer.c dkim/dkim_cmd.c \
        dns/packet.c dns/resolver.c dns/mx.c dns/resolve_cmd.c \
        bench/mockmx.c bench/spoolgen.c bench/bench_cmd.c

# Debian packages the build, the tests, the demo and the benchmark need.
DEB_PKGS := build-essential pkg-config liburing-dev libwolfssl-dev libldns-dev \
            libopendkim-dev libssl-dev libjemalloc-dev libcmocka-dev libconfig-dev \
            postfix python3 python3-dkim jq gnuplot-nox openssl strace iproute2 \
            opendkim-tools dnsmasq-base nsd ldnsutils publicsuffix
# What must exist for each of them (checked before installing anything).
DEP_PROBE := /usr/include/liburing.h /usr/include/openssl/evp.h /usr/include/opendkim/dkim.h /usr/include/libconfig.h /usr/include/jemalloc/jemalloc.h \
             /usr/include/cmocka.h /usr/sbin/smtp-sink /usr/bin/jq /usr/bin/gnuplot /usr/bin/openssl /usr/bin/strace /usr/bin/ss \
             /usr/sbin/opendkim-testmsg /usr/sbin/dnsmasq /usr/sbin/nsd /usr/bin/drill \
             /usr/share/publicsuffix/public_suffix_list.dat

BUILD := build/release
ASAN_BUILD := build/asan
OBJS := $(SRCS:%.c=$(BUILD)/%.o)
ASAN_OBJS := $(SRCS:%.c=$(ASAN_BUILD)/%.o)
LIB_SRCS := $(filter-out engine/main.c,$(SRCS))

UNIT_TESTS := test_smtp_reply test_envelope test_smtp_data test_json test_timer_wheel test_dns_packet

.PHONY: all deps check check-asan unit integration bench bench-quick demo install clean fuzz

all: sluice

sluice: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $(OBJS) $(LIBS) $(JEMALLOC)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -c -o $@ $<

$(ASAN_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	      -DSLUICE_NO_JEMALLOC -c -o $@ $<

build/sluice-asan: $(ASAN_OBJS)
	$(CC) -fsanitize=address,undefined -o $@ $(ASAN_OBJS) $(LIBS)

-include $(OBJS:.o=.d) $(ASAN_OBJS:.o=.d)

# deps: install the Debian packages when root, else print the command.
deps:
	@missing=""; for f in $(DEP_PROBE); do [ -e $$f ] || missing=yes; done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS); \
	else \
	  echo "deps: run as root: apt-get install -y $(DEB_PKGS)"; exit 1; \
	fi

# ---- tests ----
UNIT_BINS := $(UNIT_TESTS:%=build/tests/%)
ASAN_UNIT_BINS := $(UNIT_TESTS:%=build/tests-asan/%)

build/tests/%: tests/unit/%.c $(filter-out $(BUILD)/engine/main.o,$(OBJS))
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(filter-out $(BUILD)/engine/main.o,$(OBJS)) \
	      -lcmocka $(LIBS) $(JEMALLOC)

build/tests-asan/%: tests/unit/%.c $(filter-out $(ASAN_BUILD)/engine/main.o,$(ASAN_OBJS))
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O1 -g -fsanitize=address,undefined -o $@ $< \
	      $(filter-out $(ASAN_BUILD)/engine/main.o,$(ASAN_OBJS)) -lcmocka $(LIBS)

unit: deps sluice $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_BINS)

integration: deps sluice
	@SLUICE=$(CURDIR)/sluice tests/run-integration.sh

check: deps
	@$(MAKE) --no-print-directory sluice $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_BINS)
	@SLUICE=$(CURDIR)/sluice tests/run-integration.sh

check-asan: deps
	@$(MAKE) --no-print-directory build/sluice-asan $(ASAN_UNIT_BINS)
	@tests/run-unit.sh $(ASAN_UNIT_BINS)
	@SLUICE=$(CURDIR)/build/sluice-asan SLUICE_ASAN=1 tests/run-integration.sh

# ---- benchmark and demo ----
bench: deps sluice
	@./sluice bench

bench-quick: deps sluice
	@./sluice bench --quick

demo: deps sluice
	@bench/demo.sh

install: sluice
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/sluice $(DESTDIR)$(PREFIX)/share/sluice
	install -m 0755 sluice $(DESTDIR)$(PREFIX)/bin/sluice
	install -m 0755 bench/bench.py $(DESTDIR)$(PREFIX)/share/sluice/bench.py
	install -m 0644 sluice.conf README.md $(DESTDIR)$(PREFIX)/share/doc/sluice/

clean:
	rm -rf build sluice

# fuzz: libFuzzer (clang) on the DNS packet path for FUZZ_SECONDS (not in CI).
FUZZ_SECONDS ?= 120
fuzz: deps
	@command -v clang >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq clang; }
	@mkdir -p build/fuzz
	clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -o build/fuzz/fuzz_dns_packet \
	      tests/fuzz/fuzz_dns_packet.c dns/packet.c -lldns
	python3 tests/fuzz/seeds.py build/fuzz/corpus
	./build/fuzz/fuzz_dns_packet -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=5 build/fuzz/corpus
