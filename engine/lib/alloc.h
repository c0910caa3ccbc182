/* engine/lib/alloc.h - the one module that talks to jemalloc: gives each shard
 * thread its own arena so shards never contend on the allocator. */
#ifndef SLUICE_ALLOC_H
#define SLUICE_ALLOC_H
void alloc_thread_arena(void);
#endif
