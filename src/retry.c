/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* retry.c — see retry.h. */
#include "retry.h"

#include <string.h>

#define BUCKET_MS 100
#define BUDGET_FLOOR 10

int retry_allowed(const struct retry_policy *p, const char *method, unsigned attempt,
                  enum retry_failure failure, int status, int nothing_sent, int body_replayable)
{
    if (attempt >= p->attempts)
        return 0;
    unsigned wanted = failure == RETRY_CONNECT_ERROR ? RETRY_ON_CONNECT_ERROR
                      : failure == RETRY_TIMEOUT       ? RETRY_ON_TIMEOUT
                      : failure == RETRY_STATUS        ? (unsigned)status
                                                       : 0;
    int listed = 0;
    for (size_t i = 0; i < p->on_count && !listed; i++)
        listed = wanted != 0 && p->on[i] == wanted;
    if (!listed)
        return 0;
    /* nothing reached the origin: resending cannot repeat a side effect, whatever the method */
    if (nothing_sent)
        return 1;
    if (!body_replayable)
        return 0;
    for (size_t i = 0; i < p->methods_count; i++)
        if (strcmp(p->methods[i], method) == 0)
            return 1;
    return 0;
}

int64_t retry_delay_ms(const struct retry_policy *p, unsigned k, int64_t retry_after_ms,
                       uint32_t random32)
{
    if (retry_after_ms >= 0)
        return (uint64_t)retry_after_ms > p->max_delay_ms ? -1 : retry_after_ms;
    uint64_t delay = p->base_delay_ms;
    for (unsigned i = 1; i < k && delay < p->max_delay_ms; i++)
        delay *= 2;
    if (delay > p->max_delay_ms)
        delay = p->max_delay_ms;
    if (p->jitter_full)
        delay = ((delay + 1) * (uint64_t)random32) >> 32; /* max_delay <= 1 h: no overflow */
    return (int64_t)delay;
}

/* The bucket for now, emptied first if it still holds an older slot's counts. */
static unsigned bucket(struct retry_budget *b, uint64_t now_ms)
{
    uint64_t slot = now_ms / BUCKET_MS;
    unsigned i = (unsigned)(slot % RETRY_BUDGET_BUCKETS);
    uint64_t seen = atomic_load(&b->stamp[i]);
    if (seen != slot && atomic_compare_exchange_strong(&b->stamp[i], &seen, slot)) {
        atomic_store(&b->requests[i], 0);
        atomic_store(&b->retries[i], 0);
    }
    return i;
}

void retry_budget_request(struct retry_budget *b, uint64_t now_ms)
{
    atomic_fetch_add(&b->requests[bucket(b, now_ms)], 1);
}

int retry_budget_take(struct retry_budget *b, unsigned percent, uint64_t now_ms)
{
    unsigned current = bucket(b, now_ms);
    uint64_t slot = now_ms / BUCKET_MS, requests = 0, retries = 0;
    for (unsigned i = 0; i < RETRY_BUDGET_BUCKETS; i++) {
        uint64_t s = atomic_load(&b->stamp[i]);
        if (s + RETRY_BUDGET_BUCKETS <= slot || s > slot)
            continue; /* older than 10 s */
        requests += atomic_load(&b->requests[i]);
        retries += atomic_load(&b->retries[i]);
    }
    /* a few racing takers may overshoot by one each: the budget is a guard, not an invariant */
    if (retries >= BUDGET_FLOOR && retries * 100 >= requests * percent)
        return 0;
    atomic_fetch_add(&b->retries[current], 1);
    return 1;
}
