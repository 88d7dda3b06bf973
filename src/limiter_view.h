/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limiter_view.h — the limiter's windows as others may see them: the admin endpoint's /limits
 * (one view per window), the counts per rule /metrics reads (with the dry-run decisions Redis
 * made for shared rules), the state file's export and restore of window entries and learned
 * limits, and the admin reset of one key. Included by limiter.h.
 * Reads and writes windows only under their stripe locks, through window.h; must not decide, hold
 * or learn anything (limiter.c does; counting the keys an origin holds renews a quota whose reset
 * passed, as the key's next decision would). */
#ifndef RLPROXY_LIMITER_VIEW_H
#define RLPROXY_LIMITER_VIEW_H

#include <stddef.h>
#include <stdint.h>

struct limiter;
struct rate_rule;

struct limiter_rule_stats {
    uint64_t admitted, delayed, rejected;
    uint64_t would_delay, would_reject; /* enforce: false: let through at once */
    uint64_t queued;                    /* gauge: requests held now */
    uint64_t keys;                      /* gauge: windows kept now */
};
size_t limiter_rule_count(const struct limiter *limiter);
const struct rate_rule *limiter_rule(const struct limiter *limiter, size_t index);
void limiter_rule_stats(struct limiter *limiter, size_t index, struct limiter_rule_stats *out);
/* A shared rule's dry-run decision (Redis made it): counted as the rule's would_delay (1) or
 * would_reject (0), so the rule's counts say what enforcing would do wherever it was decided. */
void limiter_count_would(struct limiter *limiter, size_t index, int would_delay);
/* Keys of the rule held now by what their origin said, for /metrics (walks every window). */
size_t limiter_paused_keys(struct limiter *limiter, size_t rule_index, uint64_t now_us);

/* These read and write windows through the same locks as decisions; callbacks run with one
 * stripe locked, so they must be quick and must not call back into the limiter. Every ring entry
 * counts as a plain entry (an admission or a reservation). */
#define LIMITER_KEY_TEXT_MAX 600 /* longest key text, terminating NUL included */

struct limiter_window_view {
    const char *key; /* the key text as windows use it (not NUL-terminated) */
    size_t key_len;
    uint32_t used; /* entries that count now, reservations of held requests included */
    uint32_t limit;
    uint32_t held;      /* requests of this key held now */
    uint64_t reset_us;  /* until the oldest counted entry leaves the window; 0 when none counts */
    uint32_t in_flight; /* admitted, not departed yet */
    int64_t origin_limit, origin_remaining; /* what the origin said (-1: nothing) */
    uint64_t origin_reset_us;               /* until the origin's quota renews; 0: not said */
    uint64_t paused_us;                     /* until an origin's pause of the key is over */
};
typedef void (*limiter_window_fn)(const struct limiter_window_view *view, void *arg);
/* Calls fn for every window of rule `rule_index` that holds an entry or a held request. */
void limiter_foreach_window(struct limiter *limiter, size_t rule_index, uint64_t now_us,
                            limiter_window_fn fn, void *arg);

/* The entries of one window that count at now_us and are not in the future (reservations of held
 * requests are left out: those requests do not outlive the process), oldest first, in the
 * limiter's monotonic microseconds. */
typedef void (*limiter_entries_fn)(const char *key, size_t key_len, const uint64_t *times_us,
                                   uint32_t count, void *arg);
void limiter_export_windows(struct limiter *limiter, size_t rule_index, uint64_t now_us,
                            limiter_entries_fn fn, void *arg);
/* Adds entries (monotonic microseconds, any order) to the window of `key` under rule
 * `rule_index`: entries that no longer count at now_us or lie in the future are dropped, and of
 * the rest at most `limit` (the newest) are kept. Returns how many entries the window gained, or
 * -1 when the window cannot be had (key cap, out of memory). */
int limiter_restore_window(struct limiter *limiter, size_t rule_index, const char *key,
                           size_t key_len, const uint64_t *times_us, uint32_t count,
                           uint64_t now_us);
/* What a key learned from its origin, as the state file keeps it: remaining as it stands at the
 * export (what the origin said, less the requests that departed since), times in the limiter's
 * monotonic microseconds (0: not said). */
struct limiter_learned_view {
    int64_t remaining; /* -1: nothing said */
    uint64_t reset_us, limit, period_us, paused_until_us;
};
typedef void (*limiter_learned_fn)(const char *key, size_t key_len,
                                   const struct limiter_learned_view *learned, void *arg);
/* Calls fn for every key of rule `rule_index` whose learned reset or pause is after now_us. */
void limiter_export_learned(struct limiter *limiter, size_t rule_index, uint64_t now_us,
                            limiter_learned_fn fn, void *arg);
/* Sets what the key of rule `rule_index` learned, making its window if needed: the key is held
 * as if the origin had just said it. 0, or -1 when the window cannot be had (key cap, memory). */
int limiter_restore_learned(struct limiter *limiter, size_t rule_index, const char *key,
                            size_t key_len, const struct limiter_learned_view *learned);
/* Empties the window of `key` under rule `rule_index` of every entry up to now_us (admin reset):
 * the key's next request is admitted as if the key were new, unless requests are held on it,
 * whose reservations stay and count. 0, or -1 when the rule has no such window. */
int limiter_reset_window(struct limiter *limiter, size_t rule_index, const char *key,
                         size_t key_len, uint64_t now_us);

#endif
