/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limiter_fixture.h — the rate rule and the config that the limiter's unit tests and its benchmark
 * build without a YAML file: what limiter_new reads and nothing else. Header-only and without
 * Check, so that bench/limiter_bench.c includes it too; it must not assert or decide anything. */
#ifndef RLPROXY_TESTS_LIMITER_FIXTURE_H
#define RLPROXY_TESTS_LIMITER_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

/* A rule as the config's defaults would fill it: held up to 30 s, 1000 held at most, a request
 * costs 1, enforced (not a dry run); it follows its origin's limits (upstream_limits: follow). */
static inline struct rate_rule limiter_fixture_rule(const char *name, enum rate_key key,
                                                    uint32_t limit, uint64_t window_ms,
                                                    enum rate_over_limit over)
{
    struct rate_rule r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "%s", name);
    r.key = key;
    r.limit = limit;
    r.window_ms = window_ms;
    r.over_limit = over;
    r.max_delay_ms = 30000;
    r.max_queue = 1000;
    r.cost = 1;
    r.enforce = 1;
    return r;
}

/* A config holding only what limiter_new reads; never passed to config_unref (the rules are the
 * caller's, and the limiter keeps them, not the config). */
static inline struct config limiter_fixture_config(struct rate_rule *rules, size_t count,
                                                   uint32_t max_keys)
{
    struct config c;
    memset(&c, 0, sizeof c);
    c.rate_limits = rules;
    c.rate_limits_count = count;
    c.rate_limits_max_keys = max_keys;
    return c;
}

#endif
