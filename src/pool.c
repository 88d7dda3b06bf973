/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* pool.c — see pool.h. A block is one mmap: a header, then slots of [owning block][object]. */
#include "pool.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "util.h"

struct pool_block {
    struct pool_block *prev, *next; /* the pool's blocks with a free slot */
    void *free_slots;               /* singly linked through each free slot's first word */
    size_t used;
    size_t fresh; /* slots never handed out yet, at the end of the block */
    unsigned char *next_fresh;
    int listed;
};

struct pool {
    size_t slot_size;
    size_t slots_per_block;
    size_t block_bytes;
    struct pool_block *with_room;
    size_t blocks;
};

/* Each slot starts with its block's address, so pool_put finds the block; the object follows at
 * max_align_t alignment. */
#define SLOT_HEADER ((sizeof(struct pool_block *) + _Alignof(max_align_t) - 1) & \
                     ~(_Alignof(max_align_t) - 1))
#define BLOCK_HEADER ((sizeof(struct pool_block) + _Alignof(max_align_t) - 1) & \
                      ~(_Alignof(max_align_t) - 1))

struct pool *pool_new(size_t object_size, size_t block_bytes)
{
    struct pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    size_t align = _Alignof(max_align_t);
    p->slot_size = SLOT_HEADER + ((object_size + align - 1) & ~(align - 1));
    p->block_bytes = block_bytes;
    if (p->block_bytes < BLOCK_HEADER + p->slot_size)
        p->block_bytes = BLOCK_HEADER + p->slot_size;
    p->slots_per_block = (p->block_bytes - BLOCK_HEADER) / p->slot_size;
    return p;
}

static void list_add(struct pool *p, struct pool_block *b)
{
    UTIL_LIST_PUSH(p->with_room, b);
    b->listed = 1;
}

static void list_remove(struct pool *p, struct pool_block *b)
{
    UTIL_LIST_UNLINK(p->with_room, b);
    b->prev = b->next = NULL;
    b->listed = 0;
}

void *pool_get(struct pool *p)
{
    struct pool_block *b = p->with_room;
    if (b == NULL) {
        /* mmap, not malloc: the block must not sit among (and pin) the heap's pages */
        void *mem = mmap(NULL, p->block_bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED)
            return NULL;
        b = mem;
        b->free_slots = NULL;
        b->used = 0;
        b->fresh = p->slots_per_block;
        b->next_fresh = (unsigned char *)mem + BLOCK_HEADER;
        list_add(p, b);
        p->blocks++;
    }
    unsigned char *slot;
    if (b->free_slots != NULL) {
        slot = b->free_slots;
        b->free_slots = *(void **)slot;
    } else {
        slot = b->next_fresh;
        b->next_fresh += p->slot_size;
        b->fresh--;
    }
    b->used++;
    if (b->free_slots == NULL && b->fresh == 0)
        list_remove(p, b);
    *(struct pool_block **)slot = b;
    return slot + SLOT_HEADER;
}

void pool_put(struct pool *p, void *object)
{
    if (object == NULL)
        return;
    unsigned char *slot = (unsigned char *)object - SLOT_HEADER;
    struct pool_block *b = *(struct pool_block **)slot;
    *(void **)slot = b->free_slots;
    b->free_slots = slot;
    b->used--;
    if (!b->listed)
        list_add(p, b);
    /* an empty block goes back to the system unless it is the last one with room */
    if (b->used == 0 && (b->prev != NULL || b->next != NULL)) {
        list_remove(p, b);
        munmap(b, p->block_bytes);
        p->blocks--;
    }
}

size_t pool_block_count(const struct pool *p) { return p->blocks; }

void pool_free(struct pool *p)
{
    if (p == NULL)
        return;
    /* only empty blocks can be found (full ones are unlisted): callers put everything back first */
    while (p->with_room != NULL) {
        struct pool_block *b = p->with_room;
        list_remove(p, b);
        munmap(b, p->block_bytes);
    }
    free(p);
}
