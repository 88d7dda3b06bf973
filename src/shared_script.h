/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* shared_script.h — the Lua scripts shared.c runs in Redis, and the layout of the keys they keep
 * beside a rule key's sorted set. Text only: it must not talk to Redis, read a rule or hold state;
 * shared.c sends these with their keys and arguments. Each script is O(1) or O(the key's pending
 * and unanswered requests), never O(the window's size), times the request's cost in units (at
 * most RATE_SHARED_COST_MAX) where it writes or moves them; a rule with costs also walks its
 * held units for max_queue.
 *
 * Keys of one rule key, ZKEY = rlproxy:{RULE:KEY} (one hash tag: one Redis Cluster slot):
 *   ZKEY             sorted set: admission, reservation and departure times (µs, Redis' clock),
 *                    one member per unit of a request's cost (shared_script.c says how named)
 *   ZKEY:seq         counter naming members
 *   ZKEY:pending     set: members admitted or reserved and not departed yet
 *   ZKEY:hold        a hold for what the origin said (a Retry-After), with its own expiry
 *   ZKEY:departed    counter: departures of requests whose rule follows the origin's limits
 *   ZKEY:unanswered  sorted set: departed members not answered yet, scored by departure number
 *   ZKEY:learned     hash: the budget the origin's answers leave (upstream_limits: follow) */
#ifndef RLPROXY_SHARED_SCRIPT_H
#define RLPROXY_SHARED_SCRIPT_H

/* A departed request whose answer has not come within this many later departures of its key is
 * taken as lost (its instance went away): it stops being counted as unanswered. */
#define SHARED_UNANSWERED_MAX 10000

extern const char shared_script_decide[];
extern const char shared_script_ready[];
extern const char shared_script_depart[];
extern const char shared_script_depart_learn[];
extern const char shared_script_learn[];
extern const char shared_script_hold[];
extern const char shared_script_release[];

#endif
