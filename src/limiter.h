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
#include "util.h"

struct limiter;
struct limiter_hold;
struct credential_key;

struct limiter_request {
    const struct sockaddr *client;
    const char *user; /* "-" when the client did not authenticate */
    const char *host; /* destination host, as in the request target */
    unsigned port;    /* destination port (origin pauses are per host and port) */
    const char *method;
    const char *path; /* origin-form path and query; "" for CONNECT */
    size_t path_len;
    const char *client_ip; /* client's address as text without the port, or NULL: from client */
    /* key: header:NAME: finds the value of a request header in `headers` (the caller decides
     * which line of a repeated field counts), NULL when absent; NULL find_header: no headers. An
     * absent header counts as the empty value. The limiter keeps only a hash (credential.h).
     * A lookup rather than a value, because which header is wanted is known only once a rule
     * has matched. */
    const char *(*find_header)(const void *headers, const char *name, size_t *value_len);
    const void *headers;
    /* The caller stamps the request's departure (limiter_depart, or limiter_abandon when nothing
     * was sent): until then its entry is pending and never leaves the window. 0: the entry is
     * stamped at admission (the limiter's own tests and benchmarks). */
    int depart_later;
    /* Rules with fair_by or max_concurrent hold requests in a queue, not at reserved times:
     * when its turn comes, the limiter calls post(post_target, call) from whichever thread
     * freed the slot, and the call runs woken(woken_arg) on the request's own thread, which then
     * asks limiter_hold_ready. NULL post: nobody is told (the caller polls limiter_hold_ready). */
    util_post_fn post;
    void *post_target;
    void (*woken)(void *arg);
    void *woken_arg;
};

/* A request of a max_concurrent rule in flight to its origin: end it with limiter_flight_end
 * when its exchange (or tunnel) is over. Private fields; window NULL: nothing to end. */
struct limiter_flight {
    void *state, *stripe, *window;
};

/* An admitted request's window entry, pending until the request departs: its head is written to
 * the origin, after DNS, connect, TLS and any parent proxy. The API counts arrivals, so the window
 * records departures: a pending entry never leaves the window, departing moves it later (never
 * earlier), and a held request computed from it waits for its departure + window. Private fields. */
struct limiter_stamp {
    void *state, *stripe, *window; /* NULL: nothing to stamp */
    uint64_t time_us;
    uint32_t cost; /* entries at time_us that are the request's (its units) */
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
    int paused;              /* the decision comes from what the origin said, not the window */
    struct limiter_hold *hold; /* DELAY: give back with limiter_hold_done or _cancel; NULL for a
                                  pause, after which the caller decides again */
    struct limiter_stamp stamp; /* ADMIT with depart_later: the entry to stamp */
    uint32_t cost;              /* units of the window the request takes (cost, cost_header) */
    /* enforce: false: ADMIT, and what enforcing would have done (DELAY or REJECT; UNLIMITED when
     * it would have admitted too). Such a request takes no entry: nothing is reserved. */
    enum limiter_verdict would;
    int bad_request; /* REJECT: the value of bad_header (cost_header, weight_header) is not one
                        (400, not 429) */
    const char *bad_header;
    struct limiter_flight flight; /* ADMIT under max_concurrent: the place it takes */
};

/* Builds the limiter for `config`'s rate_limits. Rules of `previous` (may be NULL) with the same
 * name and parameters keep their windows, so a reload does not reset them. Header keys are hashed
 * under `credential_key`, which must outlive the limiter (NULL: unkeyed SHA-256). */
struct limiter *limiter_new(const struct config *config, struct limiter *previous,
                            const struct credential_key *credential_key);
struct limiter *limiter_ref(struct limiter *limiter);
void limiter_unref(struct limiter *limiter);

void limiter_decide(struct limiter *limiter, const struct limiter_request *request, uint64_t now_us,
                    struct limiter_decision *out);
/* The reserved time came: 0 when the request may go now, else how much longer it must wait
 * because the request its slot was computed from went late (a timer that fired late). For a
 * queued hold (fair_by, max_concurrent): 0 when its turn came, else how long until it asks again
 * at the latest (it may be woken sooner), or LIMITER_HOLD_EXPIRED when max_delay passed without
 * its turn: the caller answers 429 and gives the hold back with limiter_hold_cancel. */
uint64_t limiter_hold_ready(struct limiter_hold *hold, uint64_t now_us);
#define LIMITER_HOLD_EXPIRED UINT64_MAX
/* The request went ahead (now). */
void limiter_hold_done(struct limiter_hold *hold, uint64_t now_us);
/* The same for a request admitted with depart_later: its entry stays pending in *stamp. Under
 * max_concurrent, *flight (may be NULL: the request is not counted in flight) takes its place. */
void limiter_hold_go(struct limiter_hold *hold, struct limiter_stamp *stamp,
                     struct limiter_flight *flight);
/* The request's exchange with the origin is over (or never started): its max_concurrent place
 * goes to the next in the queue. Later calls change nothing. */
void limiter_flight_end(struct limiter_flight *flight, uint64_t now_us);
/* The request's head went to the origin at now_us: its entry moves there (never earlier). Later
 * calls for the same stamp change nothing. Returns the departure's number within its key (0 when
 * there was nothing to stamp). With `answer` (may be NULL), a rule that follows its origin's
 * limits fills it for limiter_learn and limiter_answered. */
uint64_t limiter_depart(struct limiter_stamp *stamp, uint64_t now_us, struct limiter_stamp *answer);
/* Nothing of the request was sent (it failed to connect, or its client left): the entry stays
 * where it was admitted, no longer pending, which counts it without holding the window up. */
void limiter_abandon(struct limiter_stamp *stamp);
/* While a held request's slot follows a request that has not departed, limiter_hold_ready asks
 * to be called again after this long. Only when a request takes longer than its window to reach
 * its origin. */
#define LIMITER_PENDING_RECHECK_US 5000
/* The request was abandoned before its time: the reserved slot is given back. */
void limiter_hold_cancel(struct limiter_hold *hold);

/* What an origin said in its response to a request (upstream_limits: follow): its quota for the
 * request's key (limit, remaining, reset; limit_headers.h) and a 429/503's Retry-After. `answer`
 * is what limiter_depart filled for that request: requests of the key that departed after it are
 * not in the origin's count yet, nor, maybe, those that departed before it and are not answered.
 * From then on the key is held (delay rules, within max_delay) or refused until the reset or the
 * pause is over; requests of other keys, and requests matching no rule, are not. Never loosens
 * the rule. */
struct limit_headers;
void limiter_learn(struct limiter_stamp *answer, int status, const struct limit_headers *headers,
                   uint64_t now_us);
/* The request of `answer` got its response (or will get none): forgets it. Always call it once
 * for a filled answer. */
void limiter_answered(struct limiter_stamp *answer);
#define LIMITER_MAX_PAUSE_US (3600ULL * 1000000) /* a Retry-After longer than an hour is capped */
/* Two resets this far apart or more are two quota windows (seconds in headers round). */
#define LIMITER_RESET_SLACK_US 500000ULL
/* Keys of the rule held now by what their origin said, for /metrics (walks every window). */
size_t limiter_paused_keys(struct limiter *limiter, size_t rule_index, uint64_t now_us);
uint64_t limiter_pause_decisions(void); /* requests held or refused for what an origin said */

/* The index of the first rule that matches, or limiter_rule_count() when none does. */
size_t limiter_match(const struct limiter *limiter, const struct limiter_request *request);
/* The key a rule counts the request under (client address, host, ...), as used for windows; a
 * header value appears only as its hash under `credential_key` ("h:" and hex). */
size_t limiter_key(const struct rate_rule *rule, const struct limiter_request *request,
                   const struct credential_key *credential_key, char *key, size_t len);

/* Frees windows idle for longer than their window. Returns the windows left. */
size_t limiter_expire(struct limiter *limiter, uint64_t now_us);

struct limiter_rule_stats {
    uint64_t admitted, delayed, rejected;
    uint64_t would_delay, would_reject; /* enforce: false: let through at once */
    uint64_t queued; /* gauge: requests held now */
    uint64_t keys;   /* gauge: windows kept now */
};
size_t limiter_rule_count(const struct limiter *limiter);
const struct rate_rule *limiter_rule(const struct limiter *limiter, size_t index);
void limiter_rule_stats(struct limiter *limiter, size_t index, struct limiter_rule_stats *out);
/* Windows over all rules (what rate_limits_max_keys caps), counted over this limiter and the
 * ones it was built over (limiter_new's previous) and after. */
uint64_t limiter_total_keys(const struct limiter *limiter);

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
/* Empties the window of `key` under rule `rule_index` of every entry up to now_us (admin reset):
 * the key's next request is admitted as if the key were new, unless requests are held on it,
 * whose reservations stay and count. 0, or -1 when the rule has no such window. */
int limiter_reset_window(struct limiter *limiter, size_t rule_index, const char *key,
                         size_t key_len, uint64_t now_us);

#endif
