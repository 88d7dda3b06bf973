/* limiter.h — rate-limit rules and their exact sliding windows, shared by all workers.
 * A window is a sorted ring of the admission times of one key (past admissions and future
 * reservations): at no instant has a key admitted more than `limit` requests in the last `window`.
 * A request over the limit either reserves the slot that frees first (delay) or is refused.
 * Time is an argument (microseconds, monotonic), so tests need no sleeps. Owns no event loop:
 * the caller arms its own timer for a delay. Thread-safe: striped mutexes per rule.
 * The decision interface is the one a shared (Redis) backend will implement too. */
#ifndef RLPROXY_LIMITER_H
#define RLPROXY_LIMITER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

struct limiter;
struct limiter_hold;

struct limiter_request {
    const struct sockaddr *client;
    const char *user; /* "-" when the client did not authenticate */
    const char *host; /* destination host, as in the request target */
    unsigned port;    /* destination port (origin pauses are per host and port) */
    const char *method;
    const char *path; /* origin-form path and query; "" for CONNECT */
    size_t path_len;
    const char *client_ip; /* client's address as text without the port, or NULL: from client */
};

enum limiter_verdict {
    LIMITER_UNLIMITED, /* no rule matched */
    LIMITER_ADMIT,     /* go now */
    LIMITER_DELAY,     /* go after delay_us: the slot is reserved (hold) */
    LIMITER_REJECT,    /* 429 */
};

struct limiter_decision {
    enum limiter_verdict verdict;
    const struct rate_rule *rule; /* NULL when unlimited */
    size_t rule_index;
    uint64_t delay_us;       /* DELAY */
    uint64_t retry_after_us; /* REJECT: until the window has room again */
    uint32_t remaining;      /* slots left in the window after this decision */
    uint64_t reset_us;       /* until the oldest counted admission leaves the window */
    const char *reason;      /* REJECT: why, for the 429 body */
    int paused;              /* the decision comes from an origin's pause, not the window */
    struct limiter_hold *hold; /* DELAY: give back with limiter_hold_done or _cancel; NULL for a
                                  pause, after which the caller decides again */
};

/* Builds the limiter for `config`'s rate_limits. Rules of `previous` (may be NULL) with the same
 * name and parameters keep their windows, so a reload does not reset them. */
struct limiter *limiter_new(const struct config *config, struct limiter *previous);
struct limiter *limiter_ref(struct limiter *limiter);
void limiter_unref(struct limiter *limiter);

void limiter_decide(struct limiter *limiter, const struct limiter_request *request, uint64_t now_us,
                    struct limiter_decision *out);
/* The reserved time came: 0 when the request may go now, else how much longer it must wait
 * because the request its slot was computed from went late (a timer that fired late). */
uint64_t limiter_hold_ready(struct limiter_hold *hold, uint64_t now_us);
/* The request went ahead (now). */
void limiter_hold_done(struct limiter_hold *hold, uint64_t now_us);
/* The request was abandoned before its time: the reserved slot is given back. */
void limiter_hold_cancel(struct limiter_hold *hold);

/* An origin answered 429/503 with Retry-After: requests for `host` are held (delay rules, within
 * max_delay) or refused until `until_us`. Process-wide, bounded (LIMITER_MAX_PAUSES hosts). */
#define LIMITER_MAX_PAUSES 1024
#define LIMITER_MAX_PAUSE_US (3600ULL * 1000000) /* a Retry-After longer than an hour is capped */
void limiter_pause_host(const char *host, unsigned port, uint64_t until_us, uint64_t now_us);
uint64_t limiter_paused_hosts(uint64_t now_us);
uint64_t limiter_pause_decisions(void); /* requests held or refused because of a pause */

/* The index of the first rule that matches, or limiter_rule_count() when none does. */
size_t limiter_match(const struct limiter *limiter, const struct limiter_request *request);
/* The key a rule counts the request under (client address, host, ...), as used for windows. */
size_t limiter_key(const struct rate_rule *rule, const struct limiter_request *request, char *key,
                   size_t len);

/* Frees windows idle for longer than their window. Returns the windows left. */
size_t limiter_expire(struct limiter *limiter, uint64_t now_us);

struct limiter_rule_stats {
    uint64_t admitted, delayed, rejected;
    uint64_t queued; /* gauge: requests held now */
    uint64_t keys;   /* gauge: windows kept now */
};
size_t limiter_rule_count(const struct limiter *limiter);
const struct rate_rule *limiter_rule(const struct limiter *limiter, size_t index);
void limiter_rule_stats(struct limiter *limiter, size_t index, struct limiter_rule_stats *out);
/* Windows over all rules of the process (what rate_limits_max_keys caps). */
uint64_t limiter_total_keys(void);

/* ---- views and snapshots: the admin endpoint's /limits and the state file ------------------- */

/* These read and write windows through the same locks as decisions; callbacks run with one
 * stripe locked, so they must be quick and must not call back into the limiter. Every ring entry
 * counts as a plain entry (an admission or a reservation). */
#define LIMITER_KEY_TEXT_MAX 600 /* longest key text, terminating NUL included */

struct limiter_window_view {
    const char *key; /* the key text as windows use it (not NUL-terminated) */
    size_t key_len;
    uint32_t used; /* entries that count now, reservations of held requests included */
    uint32_t limit;
    uint32_t held;     /* requests of this key held now */
    uint64_t reset_us; /* until the oldest counted entry leaves the window; 0 when none counts */
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
/* Empties the window of `key` under rule `rule_index` of every entry up to now_us (admin reset):
 * the key's next request is admitted as if the key were new, unless requests are held on it,
 * whose reservations stay and count. 0, or -1 when the rule has no such window. */
int limiter_reset_window(struct limiter *limiter, size_t rule_index, const char *key,
                         size_t key_len, uint64_t now_us);

#endif
