/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limiter_key.h — what a request is to the limiter's rules: which rule matches it, the key it is
 * counted under, the units it costs, its weight and its fair_by value. Included by limiter.h.
 * Pure functions of the request and the rule; must not touch windows, locks or time. */
#ifndef RLPROXY_LIMITER_KEY_H
#define RLPROXY_LIMITER_KEY_H

#include <stddef.h>
#include <stdint.h>

struct credential_key;
struct limiter;
struct limiter_request;
struct rate_rule;

/* The index of the first rule that matches, or limiter_rule_count() when none does. */
size_t limiter_match(const struct limiter *limiter, const struct limiter_request *request);
/* The key a rule counts the request under (client address, host, ...), as used for windows; a
 * header value appears only as its hash under `credential_key` ("h:" and hex). */
size_t limiter_key(const struct rate_rule *rule, const struct limiter_request *request,
                   const struct credential_key *credential_key, char *key, size_t len);

/* ---- for the limiter's own files ---- */

/* The key text (at most KEY_MAX - 1 bytes, not NUL-terminated past its length); its length. */
size_t limiter_key_build(const struct rate_rule *rule, const struct limiter_request *r,
                         const struct credential_key *credential_key, char *key);
uint64_t limiter_key_hash(const char *key, size_t len);
int limiter_key_matches(const struct rate_rule *rule, const struct limiter_request *r);
/* The units a request takes: its cost_header's value when the rule names one and it is there,
 * else the rule's cost; 0 when the header's value is not a cost. */
uint32_t limiter_key_cost(const struct rate_rule *rule, const struct limiter_request *r);
/* The request's weight_header value when the rule names one and it is there; WEIGHT_UNSAID else
 * (weights by fair_by value are looked up when the request joins a queue); 0 when it is no
 * weight. */
uint32_t limiter_key_weight(const struct rate_rule *rule, const struct limiter_request *r);
/* The value of the rule's fair_by for the request: whose turn it is. */
size_t limiter_key_fair_value(const struct rate_rule *p, const struct limiter_request *r,
                              const struct credential_key *credential_key, char *out, size_t len);

#endif
