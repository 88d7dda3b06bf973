/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* window.h — one key's window as a data structure: the sorted ring of entry times (admissions,
 * departures and reservations), the entries still pending departure, the log of late releases and
 * of cancelled reservations' links, and the departures not answered yet. Private to the limiter's
 * files (limiter.c, limiter_queue.c, limiter_view.c). Must not lock, read a rule or decide
 * anything: callers hold the window's stripe lock and pass the limit and span they judge by. */
#ifndef RLPROXY_WINDOW_H
#define RLPROXY_WINDOW_H

#include <stddef.h>
#include <stdint.h>

struct key_queue;

/* What the origin said about one key (upstream_limits: follow): its quota as of one response,
 * and a pause it asked for. The budget left is `remaining` less the departures since the request
 * that response answered (requests that left after it are not in the origin's count yet) less the
 * requests on their way. */
struct learned {
    int64_t remaining;        /* -1: nothing known */
    uint64_t seq;             /* the departure that response answered */
    uint64_t reset_us;        /* when the quota renews (monotonic); 0: not said */
    uint64_t limit;           /* the quota's size, when said: the budget after a reset */
    uint64_t period_us;       /* the quota's window: said (IETF w) or seen between resets */
    uint64_t paused_until_us; /* a 429/503's Retry-After */
    uint64_t last_reset_us;   /* the last reset said, kept across renewals: for period_us */
    /* The lowest remaining said for the quota window that resets at lowest_reset_us (0: none).
     * An origin's answers may arrive in another order than it counted their requests: the
     * lowest is the latest count, whichever request it answered. */
    int64_t lowest_remaining;
    uint64_t lowest_reset_us;
};

struct window {
    struct window *next; /* bucket chain */
    uint64_t hash;
    uint64_t *times; /* ring */
    uint32_t head, count, cap;
    uint32_t queued; /* outstanding holds: a window with holds is never freed */
    /* when held requests actually went: a timer that fires late must delay the requests whose
     * slots were computed from it, or the origin would see them closer than a window apart. A
     * cancelled reservation that later ones were computed from is kept here too, as what it was
     * computed from (linked: linked_first..linked_last): they wait for that in its place. */
    struct window_release {
        uint64_t scheduled, actual;
        uint64_t linked_first, linked_last;
        int linked;
    } * releases;
    uint32_t releases_head, releases_count, releases_cap;
    /* entries of requests that have not departed yet (limiter_stamp): they never leave the ring
     * and move to their departure time. As many as the key has requests in flight. */
    uint64_t *pending;
    uint32_t pending_count, pending_cap;
    uint64_t departures; /* ever: a response's request is known by its place in this count */
    /* departed requests not answered yet (their numbers), while the rule follows what the origin
     * says: an origin may count them after a request it answers first */
    uint64_t *unanswered;
    uint32_t unanswered_count, unanswered_cap;
    struct learned learned;
    struct key_queue *kq; /* fair_by, max_concurrent: made at the key's first decision */
    uint64_t reset_us;    /* an operator's reset (POST /limits): nothing before it comes back */
    size_t key_len;
    char key[];
};

/* The entries a held request's slot was computed from: its displaced range, and the ranges that
 * cancelled reservations within it were computed from in turn (up to WINDOW_RANGES_MAX). */
#define WINDOW_RANGES_MAX 16
struct window_ranges {
    uint64_t first[WINDOW_RANGES_MAX], last[WINDOW_RANGES_MAX];
    uint32_t count;
};

/* ---- the ring: entry times, ascending ---- */
/* The i-th oldest entry; inline, since every decision walks the ring through it. */
static inline uint64_t window_at(const struct window *w, uint32_t i)
{
    return w->times[(w->head + i) % w->cap];
}
int window_grow(struct window *w, uint32_t limit);
/* Room for `need` entries (at most limit); 0, or -1 when out of memory. */
int window_reserve(struct window *w, uint32_t need, uint32_t limit);
/* Inserts t keeping the order; the common case (t >= newest) is an append. */
void window_insert(struct window *w, uint64_t t);
void window_pop_oldest(struct window *w);
/* Takes one entry t out; 0 when there is none. */
int window_remove(struct window *w, uint64_t t);
/* Entries equal to t in the ring. */
uint32_t window_count_of(const struct window *w, uint64_t t);
/* Entries that still count at `now` (newer than now - window), and when the oldest of them
 * stops counting. */
uint32_t window_used(const struct window *w, uint64_t now, uint64_t window_us, uint64_t *reset_us);
/* Entries that no longer count leave; pending ones stay (they count from their departure). */
void window_drop_stale(struct window *w, uint64_t now, uint64_t window_us);

/* ---- pending entries: admitted, not departed ---- */
int window_pending_index(const struct window *w, uint64_t t); /* -1: t is not pending */
/* Takes `cost` pending entries at t; 0, or -1 (none taken) when out of memory. */
int window_pending_add_units(struct window *w, uint64_t t, uint32_t cost);
/* 1 when t was pending (and is not any more). */
int window_pending_remove(struct window *w, uint64_t t);
uint32_t window_pending_count_of(const struct window *w, uint64_t t);

/* ---- departures not answered yet ---- */
/* 0, or -1 when out of memory (nothing added). */
int window_unanswered_add(struct window *w, uint64_t seq);

/* ---- releases: when held requests actually went ---- */
/* Records a late release or a cancelled reservation's link; on-time releases change nothing. */
void window_record_release(struct window *w, uint32_t limit, struct window_release release);
void window_ranges_of(const struct window *w, uint64_t first, uint64_t last,
                      struct window_ranges *out);
int window_in_ranges(const struct window_ranges *rs, uint64_t t);
/* When the requests scheduled within the ranges actually went, the latest (0 if they went on
 * time or are not known). */
uint64_t window_actual_release(const struct window *w, const struct window_ranges *rs);
/* 1 when an entry within the ranges has not departed. */
int window_pending_within(const struct window *w, const struct window_ranges *rs);

#endif
