/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* fair_queue.c — see fair_queue.h.
 *
 * The flows with items form a circular list; the cursor's flow is served while its deficit covers
 * its oldest item's cost. A flow that cannot pay gets its quantum once per turn and the cursor
 * moves on; a flow that empties leaves the ring and forgets its deficit, as DRR requires (an idle
 * flow saves no credit). Finding a flow by key walks the ring: as many steps as flows with held
 * requests in one limiter key. */
#include "fair_queue.h"

#include <stdlib.h>
#include <string.h>

struct fair_queue_flow {
    struct fair_queue_flow *prev, *next; /* the ring */
    struct fair_queue_item *first, *last;
    uint64_t deficit;
    uint32_t quantum;
    int credited; /* got its quantum this turn */
    size_t key_len;
    char key[];
};

static struct fair_queue_flow *flow_find(struct fair_queue *q, const char *key, size_t len)
{
    struct fair_queue_flow *f = q->cursor;
    for (size_t i = 0; i < q->flows; i++, f = f->next)
        if (f->key_len == len && memcmp(f->key, key, len) == 0)
            return f;
    return NULL;
}

int fair_queue_push(struct fair_queue *q, struct fair_queue_item *item, const char *key, size_t len,
                    uint32_t quantum, uint32_t cost)
{
    struct fair_queue_flow *f = flow_find(q, key, len);
    if (f == NULL) {
        f = calloc(1, sizeof *f + len);
        if (f == NULL)
            return -1;
        memcpy(f->key, key, len);
        f->key_len = len;
        f->quantum = quantum > 0 ? quantum : 1;
        if (q->cursor == NULL) {
            f->prev = f->next = f;
            q->cursor = f;
        } else { /* last in the ring: its first turn comes after every flow waiting now */
            f->next = q->cursor;
            f->prev = q->cursor->prev;
            f->prev->next = f;
            q->cursor->prev = f;
        }
        q->flows++;
    }
    item->flow = f;
    item->cost = cost > 0 ? cost : 1;
    item->next = NULL;
    item->prev = f->last;
    if (f->last != NULL)
        f->last->next = item;
    else
        f->first = item;
    f->last = item;
    q->items++;
    return 0;
}

static void flow_unlink(struct fair_queue *q, struct fair_queue_flow *f)
{
    if (q->flows == 1) {
        q->cursor = NULL;
    } else {
        f->prev->next = f->next;
        f->next->prev = f->prev;
        if (q->cursor == f)
            q->cursor = f->next;
    }
    q->flows--;
    free(f);
}

static void next_turn(struct fair_queue *q)
{
    q->cursor->credited = 0;
    q->cursor = q->cursor->next;
}

struct fair_queue_item *fair_queue_peek(struct fair_queue *q)
{
    if (q->cursor == NULL)
        return NULL;
    /* Each flow gains its quantum per turn, so within cost/quantum rounds someone can pay. A
     * round in which nobody could is skipped as a whole: every flow gets the quanta of the rounds
     * the cheapest wait would take, which is what the rounds themselves would have given. */
    for (;;) {
        uint64_t rounds = UINT64_MAX;
        for (size_t i = 0; i < q->flows; i++) {
            struct fair_queue_flow *f = q->cursor;
            if (f->deficit >= f->first->cost)
                return f->first;
            if (!f->credited) {
                f->credited = 1;
                f->deficit += f->quantum;
                if (f->deficit >= f->first->cost)
                    return f->first;
            }
            uint64_t need = (f->first->cost - f->deficit + f->quantum - 1) / f->quantum;
            if (need < rounds)
                rounds = need;
            next_turn(q);
        }
        if (rounds > 1) {
            struct fair_queue_flow *f = q->cursor;
            for (size_t i = 0; i < q->flows; i++, f = f->next)
                f->deficit += (rounds - 1) * f->quantum;
        }
    }
}

void fair_queue_remove(struct fair_queue *q, struct fair_queue_item *item, int served)
{
    struct fair_queue_flow *f = item->flow;
    if (f == NULL)
        return;
    served = served && f == q->cursor && item == f->first && f->deficit >= item->cost;
    if (item->prev != NULL)
        item->prev->next = item->next;
    else
        f->first = item->next;
    if (item->next != NULL)
        item->next->prev = item->prev;
    else
        f->last = item->prev;
    item->prev = item->next = NULL;
    item->flow = NULL;
    q->items--;
    if (f->first == NULL) {
        flow_unlink(q, f); /* an idle flow keeps no credit */
        return;
    }
    if (served) {
        f->deficit -= item->cost;
        if (f->deficit < f->first->cost) /* its turn is over */
            next_turn(q);
    }
}
