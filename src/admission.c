/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* admission.c — see admission.h. */
#include "admission.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limit_headers.h"
#include "log.h"
#include "shared.h"
#include "upstream.h"
#include "util.h"

struct admission_queue {
    struct upstream_multi *upstream;
    struct shared *shared;
    struct retry_budget *retry_budget;
    struct event_base *base;
    uint32_t max_inflight;
    struct admission *first, *last; /* waiting for an upstream slot, FIFO */
    size_t waiting;
    struct event *slot_event; /* starts waiting requests from the loop */
    util_post_fn post;        /* NULL: held requests are not told, they ask at their deadline */
    void *post_target;
};

static void admit(struct admission *a);
static void hold_ready(struct admission *a);

static void queue_remove(struct admission *a)
{
    struct admission_queue *q = a->queue;
    if (a->queue_prev != NULL)
        a->queue_prev->queue_next = a->queue_next;
    else
        q->first = a->queue_next;
    if (a->queue_next != NULL)
        a->queue_next->queue_prev = a->queue_prev;
    else
        q->last = a->queue_prev;
    a->queue_prev = a->queue_next = NULL;
    a->in_queue = 0;
    q->waiting--;
}

static int slot_free(const struct admission_queue *q, uint32_t max_inflight)
{
    return max_inflight == 0 || upstream_multi_active(q->upstream) < max_inflight;
}

static void on_slot_event(evutil_socket_t fd, short what, void *arg)
{
    struct admission_queue *q = arg;
    while (q->first != NULL && slot_free(q, q->max_inflight)) {
        struct admission *a = q->first;
        queue_remove(a);
        a->callbacks->wait(a->owner, ADMISSION_SLOT_GRANTED);
        admit(a);
    }
}

struct admission_queue *admission_queue_new(struct event_base *base,
                                            struct upstream_multi *upstream, struct shared *shared,
                                            struct retry_budget *retry_budget)
{
    struct admission_queue *q = calloc(1, sizeof *q);
    if (q == NULL)
        return NULL;
    q->base = base;
    q->upstream = upstream;
    q->shared = shared;
    q->retry_budget = retry_budget;
    q->slot_event = event_new(base, -1, 0, on_slot_event, q);
    if (q->slot_event == NULL) {
        free(q);
        return NULL;
    }
    return q;
}

void admission_queue_free(struct admission_queue *q)
{
    if (q == NULL)
        return;
    event_free(q->slot_event);
    free(q);
}

size_t admission_queue_waiting(const struct admission_queue *q) { return q->waiting; }

void admission_queue_slot_freed(struct admission_queue *q)
{
    if (q->waiting > 0)
        event_active(q->slot_event, EV_TIMEOUT, 0);
}

void admission_queue_set_max_inflight(struct admission_queue *q, uint32_t max_inflight)
{
    q->max_inflight = max_inflight;
}

void admission_queue_set_post(struct admission_queue *q, util_post_fn post, void *target)
{
    q->post = post;
    q->post_target = target;
}

/* ---- one request ------------------------------------------------------------------------------ */

void admission_init(struct admission *a, struct admission_queue *queue,
                    const struct admission_callbacks *callbacks, void *owner)
{
    memset(a, 0, sizeof *a);
    a->origin_remaining = a->origin_reset_ms = -1;
    a->queue = queue;
    a->callbacks = callbacks;
    a->owner = owner;
}

static void arm(struct admission *a, uint64_t delay_us);

static void hold(struct admission *a)
{
    a->held = 1;
    a->callbacks->wait(a->owner, ADMISSION_WAIT_ADMIT);
}

static void proceed(struct admission *a)
{
    if (a->held && a->attempt <= 1)
        a->wait_ms = util_now_ms() - a->start_ms; /* held by the limiter or an origin's pause */
    a->callbacks->proceed(a->owner);
}

static void apply_decision(struct admission *a)
{
    switch (a->decision.verdict) {
    case LIMITER_REJECT:
        a->callbacks->refuse(a->owner);
        return;
    case LIMITER_DELAY:
        hold(a);
        a->hold = a->decision.hold; /* NULL for an origin's pause: admit() runs again after it */
        a->pause_before = a->decision.paused;
        arm(a, a->decision.delay_us);
        return;
    default:
        a->stamp = a->decision.stamp;
        a->flight = a->decision.flight;
        proceed(a);
    }
}

/* enforce: false on a shared rule: what enforcing would have done is counted with the rule's
 * local decisions (rlproxy_limiter_decisions_total, the access log) and the request goes on at
 * once, as a local dry run's does. */
static void shared_would(struct admission *a, enum limiter_verdict would)
{
    a->decision.verdict = LIMITER_ADMIT;
    a->decision.would = would;
    limiter_count_would(a->limiter, a->decision.rule_index, would == LIMITER_DELAY);
    proceed(a);
}

/* Redis could not decide (down, slow, overloaded): shared.on_error says what to do. */
static void shared_failed(struct admission *a, const struct rate_rule *rule)
{
    size_t rule_index = a->decision.rule_index;
    switch (a->config->shared_on_error) {
    case SHARED_ON_ERROR_DENY:
        if (!rule->enforce) { /* a dry run refuses nothing: the 503 it would be is counted */
            memset(&a->decision, 0, sizeof a->decision);
            a->decision.rule = rule;
            a->decision.rule_index = rule_index;
            shared_would(a, LIMITER_REJECT);
            return;
        }
        a->callbacks->overload(a->owner, "the shared rate-limit store (Redis) is unavailable");
        return;
    case SHARED_ON_ERROR_ALLOW:
        memset(&a->decision, 0, sizeof a->decision);
        a->decision.verdict = LIMITER_ADMIT;
        a->decision.rule = rule;
        a->decision.rule_index = rule_index;
        proceed(a);
        return;
    default: /* local: this instance's own window for the rule */
        limiter_decide(a->limiter, &a->request, util_now_us(), &a->decision);
        apply_decision(a);
    }
}

static void on_shared_decided(void *arg, const struct shared_result *result)
{
    struct admission *a = arg;
    a->shared_request = NULL;
    const struct rate_rule *rule = a->decision.rule;
    size_t rule_index = a->decision.rule_index;
    if (result->outcome == SHARED_ERROR) {
        shared_failed(a, rule);
        return;
    }
    memset(&a->decision, 0, sizeof a->decision);
    a->decision.rule = rule;
    a->decision.rule_index = rule_index;
    a->decision.remaining = result->remaining;
    a->decision.reset_us = rule->window_ms * 1000;
    if (result->would != SHARED_ADMIT) { /* enforce: false: no entry was taken */
        shared_would(a, result->would == SHARED_DELAY ? LIMITER_DELAY : LIMITER_REJECT);
        return;
    }
    if (result->outcome == SHARED_REJECT) {
        a->decision.verdict = LIMITER_REJECT;
        a->decision.retry_after_us = result->retry_after_us;
        a->decision.paused = result->paused;
        a->decision.reason = result->paused ? "the origin asked for a pause or said the quota "
                                              "is spent"
                                            : "over the shared limit";
    } else if (result->paused) { /* held for what the origin said: ask again after it */
        a->decision.verdict = LIMITER_DELAY;
        a->decision.delay_us = result->delay_us;
        a->decision.paused = 1;
    } else {
        /* the entry in Redis: departure moves it; a reservation is given back if we go away */
        snprintf(a->shared_member, sizeof a->shared_member, "%s", result->member);
        free(a->shared_key);
        a->shared_key = strdup(result->key);
        a->decision.verdict = result->outcome == SHARED_DELAY ? LIMITER_DELAY : LIMITER_ADMIT;
        a->decision.delay_us = result->delay_us;
        a->shared_held = result->outcome == SHARED_DELAY; /* it goes after the wait, unasked */
        a->shared_due_us = util_now_us() + result->delay_us;
    }
    apply_decision(a);
}

static void admit(struct admission *a)
{
    struct admission_queue *q = a->queue;
    if (a->attempt == 0) {
        a->attempt = 1;
        retry_budget_request(q->retry_budget, util_now_ms());
    }
    size_t index = limiter_match(a->limiter, &a->request);
    if (index < limiter_rule_count(a->limiter) && limiter_rule(a->limiter, index)->shared) {
        const struct rate_rule *rule = limiter_rule(a->limiter, index);
        memset(&a->decision, 0, sizeof a->decision);
        a->decision.rule = rule;
        a->decision.rule_index = index;
        a->decision.cost = limiter_key_cost(rule, &a->request);
        if (a->decision.cost == 0) { /* the same 400 as a local rule's, without asking Redis */
            a->decision.verdict = LIMITER_REJECT;
            a->decision.bad_request = 1;
            a->decision.bad_header = rule->cost_header;
            a->decision.reason =
                "the cost header's value is not a whole number from 1 to the rule's limit";
            apply_decision(a);
            return;
        }
        hold(a);
        a->shared_request = shared_decide(q->shared, rule, &a->request,
                                          a->config->shared_timeout_ms, on_shared_decided, a);
        if (a->shared_request == NULL)
            shared_failed(a, rule);
        return;
    }
    struct limiter_decision pause = a->decision;
    int after_pause = a->pause_before;
    a->pause_before = 0;
    limiter_decide(a->limiter, &a->request, util_now_us(), &a->decision);
    if (after_pause && (a->decision.verdict == LIMITER_ADMIT ||
                        a->decision.verdict == LIMITER_UNLIMITED)) {
        a->stamp = a->decision.stamp;
        a->flight = a->decision.flight;
        a->decision = pause; /* the log shows what held it: delay:origin-pause */
        proceed(a);
        return;
    }
    apply_decision(a);
}

/* Redis checked a reservation whose time came (shared_ready). */
static void on_shared_ready(void *arg, const struct shared_result *result)
{
    struct admission *a = arg;
    a->shared_request = NULL;
    if (result->outcome == SHARED_DELAY) { /* the request it followed departed late */
        a->shared_due_us = util_now_us() + result->delay_us;
        arm(a, result->delay_us);
        return;
    }
    a->shared_held = 0; /* an error: the reservation was granted, so it goes */
    proceed(a);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct admission *a = arg;
    if (a->shared_held) { /* our slot reserved in Redis has come: did its predecessor go late? */
        /* libevent arms a timer from the time it read before this loop iteration's callbacks,
         * and Redis' answer may have come in after that: the timer can fire a little before the
         * reserved time. Asked early, Redis would only say to wait; but when it cannot be asked
         * the request goes unchecked, and early it would break the window at the origin. */
        uint64_t now_us = util_now_us();
        if (now_us < a->shared_due_us) {
            arm(a, a->shared_due_us - now_us);
            return;
        }
        a->shared_request =
            shared_ready(a->queue->shared, a->decision.rule, a->shared_key, a->shared_member,
                         a->config->shared_timeout_ms, on_shared_ready, a);
        if (a->shared_request == NULL) {
            a->shared_held = 0;
            proceed(a);
        }
        return;
    }
    if (a->hold == NULL) { /* a retry's back-off or an origin's pause is over: ask again */
        admit(a);
        return;
    }
    hold_ready(a);
}

/* A held request asks whether its slot is its own now. */
static void hold_ready(struct admission *a)
{
    uint64_t more = limiter_hold_ready(a->hold, util_now_us());
    /* told through the queue, its timer (max_delay, or the waker's next slot) is still armed:
     * firing later it would take the request for a back-off that ended and admit it again */
    if ((more == 0 || more == LIMITER_HOLD_EXPIRED) && a->timer != NULL)
        evtimer_del(a->timer);
    if (more == LIMITER_HOLD_EXPIRED) { /* max_delay passed in a rule's queue */
        limiter_hold_cancel(a->hold);
        a->hold = NULL;
        a->decision.verdict = LIMITER_REJECT;
        a->decision.retry_after_us = 1000000;
        a->decision.reason = "the wait exceeded max_delay";
        a->callbacks->refuse(a->owner);
        return;
    }
    if (more > 0) { /* not yet: the request our slot follows went late, or not our turn */
        arm(a, more);
        return;
    }
    limiter_hold_go(a->hold, &a->stamp, &a->flight); /* the slot is ours now */
    a->hold = NULL;
    proceed(a);
}

/* A rule's queue says our turn may have come (posted from the thread that freed the slot). */
static void on_hold_woken(void *arg)
{
    struct admission *a = arg;
    if (a->hold != NULL)
        hold_ready(a);
}

static void arm(struct admission *a, uint64_t delay_us)
{
    if (a->timer == NULL)
        a->timer = evtimer_new(a->queue->base, on_timer, a);
    if (a->timer == NULL) { /* out of memory: no way to wait, so no waiting */
        a->callbacks->overload(a->owner, "out of memory");
        return;
    }
    struct timeval tv = {(time_t)(delay_us / 1000000), (suseconds_t)(delay_us % 1000000)};
    evtimer_add(a->timer, &tv);
}

void admission_start(struct admission *a, const struct config *config, struct limiter *limiter,
                     const struct limiter_request *request, uint64_t start_ms)
{
    struct admission_queue *q = a->queue;
    a->config = config;
    a->limiter = limiter;
    a->request = *request;
    a->request.depart_later = 1; /* forward.c stamps the departure */
    a->request.post = q->post;
    a->request.post_target = q->post_target;
    a->request.woken = on_hold_woken;
    a->request.woken_arg = a;
    a->start_ms = start_ms;
    /* backpressure.max_inflight: a request starts its upstream transfer only while the worker
     * has fewer than max_inflight; others wait in arrival order without being read further, and
     * the worker stops accepting. Waiting happens before the limiter so that an admission is
     * followed by the fetch at once (a fetch delayed after admission could bunch up at the
     * origin). The hard cap, as many waiting as max_inflight, is answered with overload. */
    uint32_t max = config->max_inflight;
    if (slot_free(q, max) && q->waiting == 0) {
        admit(a);
        return;
    }
    if (q->waiting >= max) {
        a->callbacks->overload(a->owner, "too many requests in flight (backpressure.max_inflight)");
        return;
    }
    a->queue_prev = q->last;
    a->queue_next = NULL;
    if (q->last != NULL)
        q->last->queue_next = a;
    else
        q->first = a;
    q->last = a;
    q->waiting++;
    a->in_queue = 1;
    a->callbacks->wait(a->owner, ADMISSION_WAIT_SLOT);
}

/* The previous attempt's entries: departed, or counted where they were admitted. */
static void forget_entries(struct admission *a)
{
    limiter_abandon(&a->stamp);
    limiter_answered(&a->answer);
    limiter_flight_end(&a->flight, util_now_us());
    if (a->shared_held && a->shared_key != NULL) /* a reservation never used: free it */
        shared_release(a->queue->shared, a->shared_key, a->shared_member);
    else if (a->shared_key != NULL) /* admitted, never departed: counted where it was admitted */
        shared_abandon(a->queue->shared, a->shared_key, a->shared_member);
    if (a->shared_key != NULL) /* departed and never answered (failed, or its client left) */
        shared_learn(a->queue->shared, a->shared_key, a->shared_unanswered, NULL, 0);
    a->shared_unanswered[0] = '\0';
    a->shared_held = 0;
    a->shared_member[0] = '\0';
    free(a->shared_key);
    a->shared_key = NULL;
}

struct limiter_flight admission_take_flight(struct admission *a)
{
    struct limiter_flight flight = a->flight;
    a->flight.window = NULL;
    return flight;
}

void admission_own_headers(const struct admission *a, const char *out[3])
{
    const struct rate_rule *rule = a->decision.rule;
    size_t n = 0;
    if (rule != NULL && rule->cost_header[0] != '\0')
        out[n++] = rule->cost_header;
    if (rule != NULL && rule->weight_header[0] != '\0')
        out[n++] = rule->weight_header;
    out[n] = NULL;
}

void admission_depart(struct admission *a)
{
    limiter_depart(&a->stamp, util_now_us(), &a->answer);
    if (a->shared_key != NULL && a->shared_member[0] != '\0') {
        int learn =
            a->decision.rule != NULL && a->decision.rule->upstream_limits == RATE_UPSTREAM_FOLLOW;
        shared_depart(a->queue->shared, a->shared_key, a->shared_member, learn);
        if (learn)
            memcpy(a->shared_unanswered, a->shared_member, sizeof a->shared_unanswered);
        a->shared_member[0] = '\0'; /* once per attempt */
    }
}

void admission_reset(struct admission *a)
{
    shared_cancel(a->shared_request);
    a->shared_request = NULL;
    forget_entries(a);
    if (a->in_queue)
        queue_remove(a);
    if (a->hold != NULL) /* gone while held: the slot goes back to the window */
        limiter_hold_cancel(a->hold);
    a->hold = NULL;
    if (a->timer != NULL)
        evtimer_del(a->timer);
    memset(&a->decision, 0, sizeof a->decision);
    a->wait_ms = 0;
    a->attempt = 0;
    a->pause_before = 0;
    a->held = 0;
    a->origin_remaining = a->origin_reset_ms = -1;
}

void admission_release(struct admission *a)
{
    admission_reset(a);
    if (a->timer != NULL)
        event_free(a->timer);
    a->timer = NULL;
}

/* ---- origin pauses and retries ---------------------------------------------------------------- */

/* A shared rule's key learns through Redis what the origin says, for every instance: the budget
 * its remaining leaves (shared_learn), and a hold for a 429/503's Retry-After or a quota it says
 * is spent until its reset. Every departed request is answered, said or not, so that Redis stops
 * counting it among the requests the origin may not have counted yet. */
static void note_shared_response(struct admission *a, int status, const char *headers,
                                 size_t headers_len)
{
    struct limit_headers said;
    if (a->shared_key == NULL)
        return;
    int found = limit_headers_parse(headers, headers_len, status, (int64_t)util_wall_ms(), &said);
    shared_learn(a->queue->shared, a->shared_key, a->shared_unanswered, found ? &said : NULL,
                 a->decision.rule->margin_ms);
    a->shared_unanswered[0] = '\0';
    if (!found)
        return;
    a->origin_remaining = said.remaining;
    a->origin_reset_ms = said.reset_ms;
    int64_t hold_ms = -1;
    if (said.retry_after_ms >= 0 && (status == 429 || status == 503))
        hold_ms = said.retry_after_ms;
    else if (said.remaining == 0 && said.reset_ms >= 0)
        hold_ms = said.reset_ms;
    if (hold_ms > 0)
        shared_hold(a->queue->shared, a->shared_key,
                    (uint64_t)hold_ms + a->decision.rule->margin_ms);
}

void admission_note_response(struct admission *a, int status, const char *headers,
                             size_t headers_len)
{
    const struct rate_rule *rule = a->decision.rule;
    if (rule == NULL || rule->upstream_limits != RATE_UPSTREAM_FOLLOW)
        return;
    if (rule->shared) {
        note_shared_response(a, status, headers, headers_len);
        return;
    }
    struct limit_headers said;
    if (a->answer.window != NULL &&
        limit_headers_parse(headers, headers_len, status, (int64_t)util_wall_ms(), &said)) {
        limiter_learn(&a->answer, status, &said, util_now_us());
        a->origin_remaining = said.remaining;
        a->origin_reset_ms = said.reset_ms;
    }
    limiter_answered(&a->answer);
}

/* retry.deadline: no wait may end later than the deadline after the request arrived, so a
 * client with a timeout of its own gets the last answer instead of nothing. */
static int64_t take_budget(struct admission *a, int64_t delay_ms)
{
    uint64_t deadline_ms = a->config->retry.deadline_ms;
    if (delay_ms >= 0 && deadline_ms > 0 &&
        util_now_ms() + (uint64_t)delay_ms > a->start_ms + deadline_ms) {
        log_info("not retrying: the wait of %" PRId64 " ms would end after retry.deadline (%" PRIu64
                 " ms after the request arrived)",
                 delay_ms, deadline_ms);
        return -1;
    }
    if (delay_ms < 0 ||
        !retry_budget_take(a->queue->retry_budget, a->config->retry.budget_percent, util_now_ms()))
        return -1; /* over max_delay or out of budget: the client gets the origin's answer */
    return delay_ms;
}

int64_t admission_retry_for_status(struct admission *a, const char *method, int status,
                                   int64_t retry_after_ms, int body_replayable)
{
    const struct retry_policy *p = &a->config->retry;
    if (!body_replayable ||
        !retry_allowed(p, method, a->attempt, RETRY_STATUS, status, 0, 1))
        return -1;
    return take_budget(a, retry_delay_ms(p, a->attempt, retry_after_ms, util_random32()));
}

int64_t admission_retry_for_failure(struct admission *a, const char *method,
                                    enum retry_failure failure, int nothing_sent)
{
    const struct retry_policy *p = &a->config->retry;
    if (!retry_allowed(p, method, a->attempt, failure, 0, nothing_sent, 1))
        return -1;
    return take_budget(a, retry_delay_ms(p, a->attempt, -1, util_random32()));
}

void admission_retry(struct admission *a, int64_t delay_ms)
{
    forget_entries(a); /* the next attempt is admitted, and counted, anew */
    a->attempt++;
    hold(a);
    arm(a, (uint64_t)delay_ms * 1000);
}
