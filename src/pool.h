/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* pool.h — a pool of same-size objects for one thread, kept in its own mmap'd blocks. It is for
 * small objects that outlive the larger allocations around them (conn.c's sleepers): from
 * malloc, each would land in a hole left by freed memory and keep that whole page resident. An
 * empty block is unmapped, except the last one with room. Not thread-safe. */
#ifndef RLPROXY_POOL_H
#define RLPROXY_POOL_H

#include <stddef.h>

struct pool;

/* block_bytes: the size of each mmap (a multiple of the page size is best). NULL when out of
 * memory. */
struct pool *pool_new(size_t object_size, size_t block_bytes);
/* Uninitialised, aligned for any type; NULL when out of memory. */
void *pool_get(struct pool *p);
void pool_put(struct pool *p, void *object);
/* Blocks mapped now. */
size_t pool_block_count(const struct pool *p);
/* Every object must have been put back. */
void pool_free(struct pool *p);

#endif
