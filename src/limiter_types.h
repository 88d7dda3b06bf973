/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limiter_types.h — the values the limiter's interface is made of: a request as the limiter sees
 * it, a decision, and the stamps and places a request keeps until it departs or ends. Included by
 * limiter.h, which documents the functions that use them; apart from it so that the limiter's own
 * files can share them without including limiter.h. Must hold no functions and no state. */
#ifndef RLPROXY_LIMITER_TYPES_H
#define RLPROXY_LIMITER_TYPES_H

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
 * earlier), and a held request computed from it waits for its departure + window. Private fields.
 */
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
    uint64_t delay_us;          /* DELAY */
    uint64_t retry_after_us;    /* REJECT: until the window has room again */
    uint32_t remaining;         /* slots left in the window after this decision */
    uint64_t reset_us;          /* until the oldest counted admission leaves the window */
    const char *reason;         /* REJECT: why, for the 429 body */
    int paused;                 /* the decision comes from what the origin said, not the window */
    struct limiter_hold *hold;  /* DELAY: give back with limiter_hold_done or _cancel; NULL for a
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

/* limiter_hold_ready: max_delay passed without the queued hold's turn (see limiter.h). */
#define LIMITER_HOLD_EXPIRED UINT64_MAX
/* While a held request's slot follows a request that has not departed, limiter_hold_ready asks
 * to be called again after this long. Only when a request takes longer than its window to reach
 * its origin. */
#define LIMITER_PENDING_RECHECK_US 5000

#endif
