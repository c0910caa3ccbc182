/* engine/lib/alloc.c - per-thread jemalloc arenas (see alloc.h). Built without
 * jemalloc for the sanitizer build, where ASan owns malloc. */
#include "alloc.h"
#ifndef SLUICE_NO_JEMALLOC
#include <jemalloc/jemalloc.h>
#include <stdio.h>

void alloc_thread_arena(void)
{
	unsigned arena;
	size_t sz = sizeof(arena);
	if (mallctl("arenas.create", &arena, &sz, NULL, 0) != 0)
		return; /* keep the default arena: slower, still correct */
	mallctl("thread.arena", NULL, NULL, &arena, sizeof(arena));
}
#else
void alloc_thread_arena(void)
{
}
#endif
