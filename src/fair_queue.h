/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* fair_queue.h — deficit round robin (Shreedhar and Varghese, 1995) over the items of one queue:
 * one FIFO per flow (a fair key's value), a cursor over the flows that have items, a weight as
 * each flow's quantum. It decides only *who* is next; when is the caller's (the limiter's window).
 * Intrusive: the caller owns the items and their memory; a flow lives while it has items. Not
 * thread-safe: the caller locks. */
#ifndef RLPROXY_FAIR_QUEUE_H
#define RLPROXY_FAIR_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct fair_queue_flow;

struct fair_queue_item {
    struct fair_queue_item *prev, *next; /* within its flow, oldest first */
    struct fair_queue_flow *flow;        /* NULL while not queued */
    uint32_t cost;
};

struct fair_queue {
    struct fair_queue_flow *cursor; /* the flow whose turn it is; flows form a ring after it */
    size_t flows, items;
};

/* Queues item (cost >= 1) at the end of the flow named by key[0..len), made with `quantum`
 * (>= 1: its weight) when it has no items. 0, or -1 when out of memory (nothing queued). */
int fair_queue_push(struct fair_queue *q, struct fair_queue_item *item, const char *key, size_t len,
                    uint32_t quantum, uint32_t cost);
/* The item whose turn it is (NULL when empty). Asking twice without a pop gives the same item. */
struct fair_queue_item *fair_queue_peek(struct fair_queue *q);
/* Takes item out. `served`: it is the one fair_queue_peek gave and it was served, so its flow is
 * charged its cost; else (a cancelled request) it leaves without a charge. */
void fair_queue_remove(struct fair_queue *q, struct fair_queue_item *item, int served);

#endif
