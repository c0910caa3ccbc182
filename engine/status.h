/* engine/status.h - the JSON body of `sluice status` (see status.c). */
#ifndef SLUICE_STATUS_H
#define SLUICE_STATUS_H
#include "metrics.h"
#include "lib/util.h"
#include "../shards/shard.h"

struct status_view {
	unsigned pid, shards;
	double uptime_s;
	bool drain;
	uint64_t messages, delivered, bounced, expired, deferred, bad;
	uint64_t in_memory, waiting, jobs_open;
	const struct shard_pair_stat *pairs;  /* every shard's, as last published */
	size_t npairs;
	const struct metrics *metrics;        /* outcomes by (result, group, source) */
	const struct adapt_cmd *const *held;  /* suspensions and job holds in force */
	size_t nheld;
	int64_t now_wall_ms;
};

void status_render(const struct status_view *v, struct buf *out);
#endif
