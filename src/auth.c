/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* auth.c — see auth.h. */
#include "auth.h"

#include <crypt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define CACHE_SLOTS 64
#define CACHE_TTL_MS (5 * 60 * 1000) /* a removed user or changed password stops working by then */

struct cache_entry {
    const struct config *config; /* entries belong to one config: a reload starts afresh */
    char token[512];             /* the Basic token as sent */
    char user[256];
    uint64_t expires_ms;
};

static _Thread_local struct cache_entry cache[CACHE_SLOTS];
static _Thread_local struct crypt_data crypt_scratch;

int auth_required(const struct config *config) { return config->auth_users_count > 0; }

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int auth_base64_decode(const char *in, size_t len, char *out, size_t out_cap, size_t *out_len)
{
    if (len % 4 != 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad > 0 || (v[k] = b64_value(in[i + k])) < 0) {
                return -1;
            }
        }
        unsigned triple = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 |
                          (unsigned)v[3];
        for (int k = 0; k < 3 - pad; k++) {
            if (n + 1 >= out_cap)
                return -1;
            out[n++] = (char)(triple >> (16 - 8 * k));
        }
    }
    out[n] = '\0';
    *out_len = n;
    return 0;
}

/* Compares without an early exit, so timing does not tell how much of a guess was right. */
static int equal_constant_time(const char *a, size_t a_len, const char *b, size_t b_len)
{
    unsigned char diff = (unsigned char)(a_len != b_len);
    size_t n = a_len < b_len ? a_len : b_len;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static uint64_t hash_token(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static const struct auth_user *find_user(const struct config *config, const char *name)
{
    for (size_t i = 0; i < config->auth_users_count; i++)
        if (strcmp(config->auth_users[i].name, name) == 0)
            return &config->auth_users[i];
    return NULL;
}

static int verify(const char *hash, const char *password, struct crypt_data *scratch)
{
    const char *hashed = crypt_r(password, hash, scratch);
    if (hashed == NULL || hashed[0] == '*')
        return 0; /* crypt's failure tokens start with '*' */
    return equal_constant_time(hashed, strlen(hashed), hash, strlen(hash));
}

/* What a Proxy-Authorization value says, before any hash. */
struct credentials {
    const char *token; /* the Basic token as sent (not terminated) */
    size_t token_len;
    char decoded[512]; /* "user\0password" once split; wiped by the caller */
    const char *password;
    struct cache_entry *slot; /* where this token is (or would be) cached */
};

/* 1 when the value is well-formed Basic credentials (split into c); 0 when it cannot be valid. */
static int parse_credentials(const char *value, size_t len, struct credentials *c)
{
    if (len < 6 || strncasecmp(value, "Basic ", 6) != 0)
        return 0;
    c->token = value + 6;
    c->token_len = len - 6;
    while (c->token_len > 0 && *c->token == ' ') {
        c->token++;
        c->token_len--;
    }
    if (c->token_len == 0 || c->token_len >= sizeof cache[0].token)
        return 0;
    c->slot = &cache[hash_token(c->token, c->token_len) % CACHE_SLOTS];
    size_t decoded_len;
    if (auth_base64_decode(c->token, c->token_len, c->decoded, sizeof c->decoded, &decoded_len) !=
            0 ||
        memchr(c->decoded, '\0', decoded_len) != NULL)
        return 0;
    char *colon = strchr(c->decoded, ':');
    if (colon == NULL)
        return 0;
    *colon = '\0';
    c->password = colon + 1;
    return 1;
}

static int cache_lookup(const struct config *config, const struct credentials *c, char *user_out,
                        size_t user_len)
{
    const struct cache_entry *slot = c->slot;
    if (slot->config == config && slot->expires_ms > util_now_ms() &&
        equal_constant_time(slot->token, strlen(slot->token), c->token, c->token_len)) {
        snprintf(user_out, user_len, "%s", slot->user);
        return 1;
    }
    return 0;
}

static void cache_store(struct cache_entry *slot, const struct config *config, const char *token,
                        size_t token_len, const char *user)
{
    slot->config = config;
    memcpy(slot->token, token, token_len);
    slot->token[token_len] = '\0';
    snprintf(slot->user, sizeof slot->user, "%.*s", (int)sizeof slot->user - 1, user);
    slot->expires_ms = util_now_ms() + CACHE_TTL_MS;
}

/* The user whose hash a guess is checked against: an unknown user costs a hash too (against the
 * first user's), so timing does not tell which user names exist. */
static const struct auth_user *user_to_check(const struct config *config, const char *name,
                                             int *known)
{
    const struct auth_user *u =
        strlen(name) < sizeof cache[0].user ? find_user(config, name) : NULL;
    *known = u != NULL;
    return u != NULL ? u : &config->auth_users[0];
}

int auth_check(const struct config *config, const char *value, size_t len, char *user_out,
               size_t user_len)
{
    struct credentials c;
    int ok = 0;
    if (!parse_credentials(value, len, &c)) {
        ok = 0;
    } else if (cache_lookup(config, &c, user_out, user_len)) {
        ok = 1;
    } else {
        int known;
        const struct auth_user *u = user_to_check(config, c.decoded, &known);
        ok = verify(u->hash, c.password, &crypt_scratch) && known;
        if (ok) {
            cache_store(c.slot, config, c.token, c.token_len, c.decoded);
            snprintf(user_out, user_len, "%s", c.decoded);
        }
    }
    /* the password does not outlive this call on our stack */
    explicit_bzero(c.decoded, sizeof c.decoded);
    return ok;
}

/* ---- hashing off the event loops ----------------------------------------------------------------
 * A password hash is slow on purpose (bcrypt cost 12, or sha512-crypt with many rounds: hundreds
 * of ms). Run on a worker's loop it would stall every other connection of that worker, so that a
 * client guessing passwords could stop a worker. The hashes run on AUTH_HASH_THREADS threads of
 * their own instead, fed from one queue of at most AUTH_QUEUE_MAX checks; the answer comes back
 * to the worker's loop through an event. */
#define AUTH_HASH_THREADS 2
#define AUTH_QUEUE_MAX 256

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct auth_pending {
    struct auth_pool *pool;
    struct auth_pending *prev, *next; /* the queue, while JOB_QUEUED */
    enum job_state state;
    int cancelled; /* RUNNING: the hash thread frees the job; DONE: on_job_done does */
    int valid;
    int known_user;
    util_post_fn post; /* hands the finished job back to the caller's loop */
    void *post_target;
    struct util_call call;
    auth_done_fn done;
    void *arg;
    const struct config *config; /* for the cache entry: the caller holds a reference */
    struct cache_entry *slot;     /* the calling thread's cache slot for the token */
    char token[512];
    char user[256];
    char *hash;
    char password[512];
};

/* The hash threads and the checks waiting for them; threads start with the first check. */
struct auth_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct auth_pending *queue_head, *queue_tail;
    size_t queue_length;
    pthread_t threads[AUTH_HASH_THREADS];
    size_t thread_count;
    int stopping;
};

static void job_free(struct auth_pending *job)
{
    explicit_bzero(job->password, sizeof job->password);
    free(job->hash);
    free(job);
}

static void queue_remove(struct auth_pending *job)
{
    struct auth_pool *pool = job->pool;
    if (job->prev != NULL)
        job->prev->next = job->next;
    else
        pool->queue_head = job->next;
    if (job->next != NULL)
        job->next->prev = job->prev;
    else
        pool->queue_tail = job->prev;
    job->prev = job->next = NULL;
    pool->queue_length--;
}

static void on_job_done(void *arg);

static void *hash_thread_main(void *arg)
{
    struct auth_pool *pool = arg;
    struct crypt_data *scratch = calloc(1, sizeof *scratch); /* 32 KiB: not on the stack */
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->queue_head == NULL && !pool->stopping)
            pthread_cond_wait(&pool->wake, &pool->lock);
        if (pool->queue_head == NULL)
            break; /* stopping, and nothing left */
        struct auth_pending *job = pool->queue_head;
        queue_remove(job);
        job->state = JOB_RUNNING;
        pthread_mutex_unlock(&pool->lock);
        int valid = scratch != NULL && verify(job->hash, job->password, scratch) && job->known_user;
        explicit_bzero(job->password, sizeof job->password);
        pthread_mutex_lock(&pool->lock);
        if (job->cancelled) {
            job_free(job);
            continue;
        }
        job->valid = valid;
        job->state = JOB_DONE;
        job->call.fn = on_job_done;
        job->call.arg = job;
        job->post(job->post_target, &job->call); /* under the lock: auth_cancel waits for it */
    }
    pthread_mutex_unlock(&pool->lock);
    free(scratch);
    return NULL;
}

/* On the caller's loop. */
static void on_job_done(void *arg)
{
    struct auth_pending *job = arg;
    if (job->cancelled) { /* auth_cancel came first: nobody waits any more */
        job_free(job);
        return;
    }
    if (job->valid)
        cache_store(job->slot, job->config, job->token, strlen(job->token), job->user);
    auth_done_fn done = job->done;
    void *done_arg = job->arg;
    int valid = job->valid;
    char user[sizeof job->user];
    memcpy(user, job->user, sizeof user);
    job_free(job);
    done(done_arg, valid, valid ? user : NULL);
}

/* Called with the pool's lock held. */
static int pool_start_locked(struct auth_pool *pool)
{
    while (pool->thread_count < AUTH_HASH_THREADS && !pool->stopping) {
        if (pthread_create(&pool->threads[pool->thread_count], NULL, hash_thread_main, pool) != 0)
            break;
        pool->thread_count++;
    }
    return pool->thread_count > 0 ? 0 : -1;
}

struct auth_pool *auth_pool_new(void)
{
    struct auth_pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return NULL;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    return pool;
}

enum auth_start auth_check_start(struct auth_pool *pool, const struct config *config,
                                 util_post_fn post,
                                 void *post_target, const char *value, size_t len, char *user_out,
                                 size_t user_len, auth_done_fn done, void *arg,
                                 struct auth_pending **pending)
{
    *pending = NULL;
    struct credentials c;
    enum auth_start result = AUTH_INVALID;
    if (!parse_credentials(value, len, &c)) {
        result = AUTH_INVALID;
    } else if (cache_lookup(config, &c, user_out, user_len)) {
        result = AUTH_VALID;
    } else {
        struct auth_pending *job = calloc(1, sizeof *job);
        int known;
        const struct auth_user *u = user_to_check(config, c.decoded, &known);
        if (job != NULL)
            job->hash = strdup(u->hash);
        if (job == NULL || job->hash == NULL || strlen(c.password) >= sizeof job->password) {
            if (job != NULL)
                job_free(job);
            result = job == NULL ? AUTH_BUSY : AUTH_INVALID;
        } else {
            job->pool = pool;
            job->known_user = known;
            job->post = post;
            job->post_target = post_target;
            job->done = done;
            job->arg = arg;
            job->config = config;
            job->slot = c.slot;
            memcpy(job->token, c.token, c.token_len);
            job->token[c.token_len] = '\0';
            snprintf(job->user, sizeof job->user, "%.*s", (int)sizeof job->user - 1, c.decoded);
            snprintf(job->password, sizeof job->password, "%s", c.password);
            pthread_mutex_lock(&pool->lock);
            if (pool->queue_length >= AUTH_QUEUE_MAX || pool_start_locked(pool) != 0) {
                pthread_mutex_unlock(&pool->lock);
                job_free(job);
                result = AUTH_BUSY;
            } else {
                job->state = JOB_QUEUED;
                job->prev = pool->queue_tail;
                if (pool->queue_tail != NULL)
                    pool->queue_tail->next = job;
                else
                    pool->queue_head = job;
                pool->queue_tail = job;
                pool->queue_length++;
                pthread_cond_signal(&pool->wake);
                pthread_mutex_unlock(&pool->lock);
                *pending = job;
                result = AUTH_PENDING;
            }
        }
    }
    explicit_bzero(c.decoded, sizeof c.decoded);
    return result;
}

void auth_cancel(struct auth_pending *job)
{
    if (job == NULL)
        return;
    struct auth_pool *pool = job->pool;
    pthread_mutex_lock(&pool->lock);
    switch (job->state) {
    case JOB_QUEUED:
        queue_remove(job);
        pthread_mutex_unlock(&pool->lock);
        job_free(job);
        return;
    case JOB_RUNNING: /* the hash thread frees it when the hash is done */
    case JOB_DONE:    /* posted to our loop, not run yet: on_job_done frees it */
        job->cancelled = 1;
        pthread_mutex_unlock(&pool->lock);
        return;
    }
    pthread_mutex_unlock(&pool->lock);
}

void auth_pool_free(struct auth_pool *pool)
{
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->wake);
    size_t n = pool->thread_count;
    pthread_mutex_unlock(&pool->lock);
    for (size_t i = 0; i < n; i++)
        pthread_join(pool->threads[i], NULL);
    while (pool->queue_head != NULL) { /* only if a caller never cancelled: their loops are gone */
        struct auth_pending *job = pool->queue_head;
        queue_remove(job);
        job_free(job);
    }
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}
