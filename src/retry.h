/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* retry.h — when to fetch again and how long to wait: which failures and methods qualify, the
 * exponential backoff with full jitter, the upstream's Retry-After, and the budget that keeps
 * retries from turning into a storm. Pure: time and randomness are arguments; the caller owns
 * timers, the request body and the transfer. */
#ifndef RLPROXY_RETRY_H
#define RLPROXY_RETRY_H

#include <stdatomic.h>
#include <stdint.h>

enum retry_failure {
    RETRY_CONNECT_ERROR, /* resolve, connect, connect timeout, TLS handshake: nothing was sent */
    RETRY_TIMEOUT,       /* no response in time */
    RETRY_STATUS,        /* a response whose status is in the retry list */
    RETRY_OTHER,         /* reset mid-request, bad response... */
};

#include <stddef.h>

#define RETRY_MAX_METHODS 16
/* retry.on entries: these two words, or an HTTP status from 400 to 599 as itself */
#define RETRY_ON_CONNECT_ERROR 1
#define RETRY_ON_TIMEOUT 2

struct retry_policy {
    unsigned attempts; /* total tries including the first; 1 disables retries */
    uint64_t base_delay_ms, max_delay_ms;
    int jitter_full;
    uint16_t *on; /* what is retried: RETRY_ON_* and statuses */
    size_t on_count;
    char methods[RETRY_MAX_METHODS][24]; /* idempotent methods, retried after a byte was sent */
    size_t methods_count;
    size_t max_body; /* bodies up to this are kept for a replay */
    uint64_t deadline_ms; /* no wait may end later than this after the request arrived; 0: none */
    unsigned budget_percent;
};

/* 1 when a failed attempt (1-based) may be tried again. `nothing_sent`: not one byte of the
 * request reached the origin, which makes any method safe. */
int retry_allowed(const struct retry_policy *p, const char *method, unsigned attempt,
                  enum retry_failure failure, int status, int nothing_sent, int body_replayable);

/* The wait before retry number k (1-based): min(max_delay, base * 2^(k-1)), drawn uniformly
 * from [0, that] with full jitter (random32 is a uniform 32-bit draw); an upstream Retry-After
 * (retry_after_ms >= 0) replaces it. Returns -1 when that Retry-After exceeds max_delay: then
 * the upstream's answer goes to the client as it is. */
int64_t retry_delay_ms(const struct retry_policy *p, unsigned k, int64_t retry_after_ms,
                       uint32_t random32);

/* Retries may add at most budget_percent to the requests of the last 10 s, counted in 100 ms
 * buckets. Thread-safe; one per process. */
#define RETRY_BUDGET_BUCKETS 100
struct retry_budget {
    _Atomic uint64_t requests[RETRY_BUDGET_BUCKETS], retries[RETRY_BUDGET_BUCKETS];
    _Atomic uint64_t stamp[RETRY_BUDGET_BUCKETS]; /* which 100 ms slot each bucket holds */
};
void retry_budget_request(struct retry_budget *b, uint64_t now_ms);
/* Takes one retry from the budget if there is room; 1 when taken. A minimum of 10 retries per
 * 10 s is always allowed, so a quiet proxy can still retry. */
int retry_budget_take(struct retry_budget *b, unsigned percent, uint64_t now_ms);

#endif
