/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* auth.h — proxy authentication (RFC 9110 11.7: Basic over Proxy-Authorization). Verifies the
 * client's credentials against the config's users (crypt(3) hashes), with a small per-thread
 * cache so a keep-alive client does not pay a slow hash on every request, and the hashes run on
 * threads of their own so they never stall an event loop. Never logs or forwards a password. */
#ifndef RLPROXY_AUTH_H
#define RLPROXY_AUTH_H

#include <stddef.h>

#include "config.h"
#include "util.h"

/* 1 when the config asks clients to authenticate. */
int auth_required(const struct config *config);

/* Checks a Proxy-Authorization value ("Basic dXNlcjpwYXNz"). 1 and the user name in user_out
 * when valid; 0 otherwise. Thread-safe (the cache is per thread). */
int auth_check(const struct config *config, const char *value, size_t len, char *user_out,
               size_t user_len);

/* The same check without the hash on the caller's thread: a cached answer (or credentials that
 * cannot be valid) comes at once; otherwise the hash runs on a thread of its own, which hands the
 * result back with post(post_target, call) (worker_post_call), and done(arg, valid, user) runs
 * on the caller's loop (user NULL when not valid), unless auth_cancel was called first. */
enum auth_start {
    AUTH_INVALID, /* answered: not valid */
    AUTH_VALID,   /* answered: valid, the user name is in user_out */
    AUTH_PENDING, /* *pending set: done will run */
    AUTH_BUSY     /* too many checks waiting for a hash thread (or out of memory): try later */
};
struct auth_pending;
typedef void (*auth_done_fn)(void *arg, int valid, const char *user);
/* The hash threads and their queue: one per process (struct process's auth_pool), made by
 * server.c and freed after every worker was joined (their loops have cancelled what they started).
 * Threads start with the first check that needs one. */
struct auth_pool;
struct auth_pool *auth_pool_new(void); /* NULL when out of memory */
void auth_pool_free(struct auth_pool *pool);
enum auth_start auth_check_start(struct auth_pool *pool, const struct config *config,
                                 util_post_fn post, void *post_target, const char *value,
                                 size_t len, char *user_out, size_t user_len, auth_done_fn done,
                                 void *arg, struct auth_pending **pending);
/* From the caller's loop: done will not run. NULL is ignored. */
void auth_cancel(struct auth_pending *pending);

/* Decodes standard base64 (RFC 4648 4, padding required when the length is not a multiple of 4);
 * -1 on anything else. For tests too. */
int auth_base64_decode(const char *in, size_t len, char *out, size_t out_cap, size_t *out_len);

#endif
