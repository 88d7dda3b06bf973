/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_pool.c — the object pool (pool.c): objects are distinct, aligned and writable, freed slots
 * are reused, empty blocks are unmapped, and objects never overlap across many get/put rounds. */
#include <check.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

#include "unit.h"

#define OBJECT_SIZE 188 /* about a sleeper (conn.c) */
#define BLOCK_BYTES (64 * 1024)

START_TEST(test_distinct_aligned_writable)
{
    struct pool *p = pool_new(OBJECT_SIZE, BLOCK_BYTES);
    ck_assert_ptr_nonnull(p);
    enum { N = 5000 };
    unsigned char **objects = calloc(N, sizeof *objects);
    for (int i = 0; i < N; i++) {
        objects[i] = pool_get(p);
        ck_assert_ptr_nonnull(objects[i]);
        ck_assert_uint_eq((uintptr_t)objects[i] % alignof(max_align_t), 0);
        memset(objects[i], i & 0xff, OBJECT_SIZE);
    }
    /* each still holds its own pattern: no two overlap */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < OBJECT_SIZE; j++)
            ck_assert_msg(objects[i][j] == (unsigned char)(i & 0xff), "object %d byte %d", i, j);
    size_t per_block = (BLOCK_BYTES - 64) / (OBJECT_SIZE + 16);
    size_t blocks = pool_block_count(p);
    ck_assert_msg(blocks >= N / per_block && blocks <= N / per_block + 2, "%zu blocks", blocks);
    for (int i = 0; i < N; i++)
        pool_put(p, objects[i]);
    ck_assert_uint_eq(pool_block_count(p), 1); /* the last one with room is kept */
    pool_free(p);
    free(objects);
}
END_TEST

START_TEST(test_slots_reused)
{
    struct pool *p = pool_new(OBJECT_SIZE, BLOCK_BYTES);
    void *a = pool_get(p);
    void *b = pool_get(p);
    pool_put(p, a);
    ck_assert_ptr_eq(pool_get(p), a);
    pool_put(p, b);
    pool_put(p, a);
    ck_assert_uint_eq(pool_block_count(p), 1);
    pool_free(p);
}
END_TEST

/* Random gets and puts, with each live object's contents checked before it goes back. */
START_TEST(test_random_rounds)
{
    struct pool *p = pool_new(OBJECT_SIZE, 4096);
    enum { SLOTS = 2000, ROUNDS = 200000 };
    unsigned char **live = calloc(SLOTS, sizeof *live);
    unsigned seed = 12345;
    for (int r = 0; r < ROUNDS; r++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 8) % SLOTS);
        if (live[i] == NULL) {
            live[i] = pool_get(p);
            if (live[i] == NULL)
                ck_abort_msg("pool_get failed at round %d", r);
            memset(live[i], i & 0xff, OBJECT_SIZE);
        } else {
            /* one check per object: each ck_assert is a write to Check's pipe */
            int bad = -1;
            for (int j = 0; j < OBJECT_SIZE && bad < 0; j++)
                if (live[i][j] != (unsigned char)(i & 0xff))
                    bad = j;
            ck_assert_msg(bad < 0, "slot %d overwritten at byte %d", i, bad);
            pool_put(p, live[i]);
            live[i] = NULL;
        }
    }
    for (int i = 0; i < SLOTS; i++)
        pool_put(p, live[i]); /* NULL is ignored */
    ck_assert_uint_eq(pool_block_count(p), 1);
    pool_free(p);
    free(live);
}
END_TEST

START_TEST(test_object_larger_than_block)
{
    struct pool *p = pool_new(10000, 4096); /* a block grows to hold one object */
    void *a = pool_get(p);
    void *b = pool_get(p);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    memset(a, 1, 10000);
    memset(b, 2, 10000);
    ck_assert_uint_eq(pool_block_count(p), 2);
    pool_put(p, a);
    pool_put(p, b);
    ck_assert_uint_eq(pool_block_count(p), 1);
    pool_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pool");
    unit_add_tcase(s, tcase_create("pool"),
                   UNIT_TESTS(test_distinct_aligned_writable, test_slots_reused, test_random_rounds,
                              test_object_larger_than_block));
    return unit_run(s);
}
