/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
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

#include "config.h"
#include "limiter_key.h"
#include "limiter_types.h"
#include "limiter_view.h"
#include "util.h"

/* The request, decision, stamp and flight types and the LIMITER_HOLD_EXPIRED and
 * LIMITER_PENDING_RECHECK_US values are in limiter_types.h; rule matching and keys in
 * limiter_key.h; views, snapshots and counts per rule in limiter_view.h. All of them come with
 * this header. */

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
/* The request was abandoned before its time: the reserved slot is given back. */
void limiter_hold_cancel(struct limiter_hold *hold);

/* What an origin said in its response to a request (upstream_limits: follow): its quota for the
 * request's key (limit, remaining, reset; limit_headers.h) and a 429/503's Retry-After. `answer`
 * is what limiter_depart filled for that request: requests of the key that departed after it are
 * not in the origin's count yet, nor, maybe, those that departed before it and are not answered;
 * answers may arrive in another order than the origin counted their requests.
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
uint64_t limiter_pause_decisions(void); /* requests held or refused for what an origin said */

/* limiter_match and limiter_key: limiter_key.h. */

/* Frees windows idle for longer than their window. Returns the windows left. */
size_t limiter_expire(struct limiter *limiter, uint64_t now_us);

/* Windows over all rules (what rate_limits_max_keys caps), counted over this limiter and the
 * ones it was built over (limiter_new's previous) and after. */
uint64_t limiter_total_keys(const struct limiter *limiter);

/* Views, snapshots and counts per rule (the admin endpoint's /limits and /metrics, the state
 * file): limiter_view.h. */

#endif
