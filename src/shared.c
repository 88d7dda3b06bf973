/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* shared.c — see shared.h. */
#include "shared.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "credential.h"
#include "log.h"
#include "shared_script.h"
#include "util.h"

#ifdef HAVE_HIREDIS
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* A connection with commands outstanding and no reply for this many shared.timeouts (and at least
 * HUNG_MIN_MS) is taken for dead and replaced: see drop_if_hung. */
#define HUNG_TIMEOUTS 3
#define HUNG_MIN_MS 2000

/* Every script goes by its SHA1 (EVALSHA): sent as EVAL, Redis would hash its whole text (3.5 KB
 * for a rule that follows its origin's limits) on every request. */
enum script {
    SCRIPT_DECIDE,
    SCRIPT_READY,
    SCRIPT_DEPART,
    SCRIPT_DEPART_LEARN,
    SCRIPT_LEARN,
    SCRIPT_HOLD,
    SCRIPT_RELEASE,
    SCRIPT_COUNT
};
static const char *const script_text[SCRIPT_COUNT] = {
    shared_script_decide,       shared_script_ready, shared_script_depart,
    shared_script_depart_learn, shared_script_learn, shared_script_hold, shared_script_release,
};

struct shared {
    struct event_base *base;
    redisAsyncContext *ac;
    /* Header values in Redis key names: every instance must hash them alike, so not under the
     * per-process random key; under shared.key_secret, or unkeyed (NULL) without it. */
    struct credential_key *credential_key;
    int connected;
    int down_logged;
    uint64_t backoff_ms;
    struct event *reconnect;
    struct event *connect_deadline; /* a connect that neither completes nor fails */
    char host[256];
    int port;
    char unix_path[256];
    unsigned db;
    uint64_t timeout_ms;
    unsigned outstanding;       /* commands sent on ac and not answered yet */
    uint64_t last_progress_ms;  /* the last reply, or when the first outstanding command was sent */
    char sha[SCRIPT_COUNT][41];
    _Atomic uint64_t admitted, delayed, rejected, errors;
};

struct shared_request {
    struct shared *s;
    shared_done_fn done;
    void *arg;
    struct event *timer;
    int finished; /* done was called (timeout, cancel): a late reply is dropped */
    int cancelled;
    struct shared_result result;
    /* the command's arguments (limit and window_us: a ready check's too) */
    char zkey[720], seqkey[730];
    unsigned limit;
    unsigned long long window_us, max_delay_us;
    int delay;
    int dry_run; /* enforce: false */
    int follow;  /* upstream_limits: follow: the learned budget counts */
    unsigned cost; /* units the request takes */
    int costs;     /* the rule has cost or cost_header: requests' units may differ */
    unsigned max_queue;
    int ready;           /* a shared_ready check, not a decision */
    char member[48];     /* ready: the reservation checked */
};

int shared_available(void) { return 1; }

static void connect_now(struct shared *s);

static void on_reconnect(evutil_socket_t fd, short what, void *arg) { connect_now(arg); }

static uint64_t hung_after_ms(const struct shared *s)
{
    uint64_t quiet = s->timeout_ms * HUNG_TIMEOUTS;
    return quiet < HUNG_MIN_MS ? HUNG_MIN_MS : quiet;
}

static void schedule_reconnect(struct shared *s)
{
    struct timeval tv;
    util_ms_to_timeval(s->backoff_ms, &tv);
    evtimer_add(s->reconnect, &tv);
    s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

static void note_down(struct shared *s, const char *why)
{
    if (!s->down_logged) /* once per incident, not once per request */
        log_error("shared limits: Redis unavailable (%s); applying shared.on_error until it is back",
                  why);
    s->down_logged = 1;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct shared *s = ac->data;
    if (status != REDIS_OK) {
        note_down(s, ac->errstr);
        s->ac = NULL; /* hiredis frees a context whose connect failed */
        schedule_reconnect(s);
        return;
    }
    s->connected = 1;
    evtimer_del(s->connect_deadline);
    s->backoff_ms = BACKOFF_MIN_MS;
    if (s->down_logged)
        log_notice("shared limits: Redis is back");
    s->down_logged = 0;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct shared *s = ac->data;
    s->connected = 0;
    s->ac = NULL;
    if (status != REDIS_OK) {
        note_down(s, ac->errstr[0] ? ac->errstr : "connection lost");
        schedule_reconnect(s);
    }
}

/* Every command's reply (or its NULL when the context goes) passes here. */
static void note_reply(struct shared *s, const void *reply)
{
    if (s->outstanding > 0)
        s->outstanding--;
    if (reply != NULL)
        s->last_progress_ms = util_now_ms();
}

static void note_sent(struct shared *s)
{
    if (s->outstanding++ == 0)
        s->last_progress_ms = util_now_ms();
}

static void ignore_reply(redisAsyncContext *ac, void *reply, void *arg)
{
    if (ac->data != NULL)
        note_reply(ac->data, reply);
}

/* One script command on its way, with what it takes to send it again as EVAL when Redis answers
 * NOSCRIPT (its script cache was flushed, or a restart raced SCRIPT LOAD): no decision, departure
 * or learned budget is lost to it. */
struct script_call {
    struct shared *s;
    enum script script;
    redisCallbackFn *done; /* NULL: fire and forget */
    void *arg;
    int as_eval;
    int argc;   /* the key count, the keys and the arguments */
    char *args; /* those, as redisvFormatCommand encodes them: "*argc\r\n" then each one */
    size_t args_len;
};

static void script_call_free(struct script_call *c)
{
    redisFreeCommand(c->args);
    free(c);
}

static int script_write(struct script_call *c);

static void on_script_reply(redisAsyncContext *ac, void *reply_ptr, void *arg)
{
    struct script_call *c = arg;
    redisReply *reply = reply_ptr;
    note_reply(c->s, reply);
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && !c->as_eval &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        c->as_eval = 1;
        if (script_write(c) == 0)
            return; /* the EVAL's reply comes back here */
    }
    if (c->done != NULL)
        c->done(ac, reply, c->arg);
    script_call_free(c);
}

/* Sends c as EVALSHA, or EVAL with the script's text: the same arguments after a new head. */
static int script_write(struct script_call *c)
{
    struct shared *s = c->s;
    if (s->ac == NULL || !s->connected)
        return -1;
    const char *body = memchr(c->args, '\n', c->args_len) + 1;
    size_t body_len = c->args_len - (size_t)(body - c->args);
    const char *script = c->as_eval ? script_text[c->script] : s->sha[c->script];
    size_t script_len = strlen(script);
    char head[64];
    int head_len = snprintf(head, sizeof head, "*%d\r\n%s\r\n$%zu\r\n", c->argc + 2,
                            c->as_eval ? "$4\r\nEVAL" : "$7\r\nEVALSHA", script_len);
    size_t len = (size_t)head_len + script_len + 2 + body_len;
    char *cmd = malloc(len);
    if (cmd == NULL)
        return -1;
    memcpy(cmd, head, (size_t)head_len);
    memcpy(cmd + head_len, script, script_len);
    memcpy(cmd + head_len + script_len, "\r\n", 2);
    memcpy(cmd + head_len + script_len + 2, body, body_len);
    int sent = redisAsyncFormattedCommand(s->ac, on_script_reply, c, cmd, len);
    free(cmd);
    if (sent != REDIS_OK)
        return -1;
    note_sent(s);
    return 0;
}

/* Runs `script` by its SHA with the key count, keys and arguments of format (hiredis' format);
 * done(ac, reply, arg) gets its reply (NULL: fire and forget). 0, or -1 when it was not sent (done
 * is not called). */
static int script_send(struct shared *s, enum script script, redisCallbackFn *done, void *arg,
                       const char *format, ...)
{
    if (s == NULL || s->ac == NULL || !s->connected)
        return -1;
    struct script_call *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -1;
    *c = (struct script_call){.s = s, .script = script, .done = done, .arg = arg};
    va_list ap;
    va_start(ap, format);
    int len = redisvFormatCommand(&c->args, format, ap);
    va_end(ap);
    if (len <= 0) {
        free(c);
        return -1;
    }
    c->args_len = (size_t)len;
    c->argc = atoi(c->args + 1);
    if (script_write(c) != 0) {
        script_call_free(c);
        return -1;
    }
    return 0;
}

/* A peer that vanished without a reset (a host gone, a firewall dropping packets, a process
 * stopped) leaves a connection that takes commands and never answers; TCP would only give up
 * after many minutes. Each request times out into shared.on_error meanwhile, so after
 * HUNG_TIMEOUTS timeouts' worth of silence the connection is dropped and a new one made. */
static void drop_if_hung(struct shared *s)
{
    uint64_t quiet = hung_after_ms(s);
    uint64_t now = util_now_ms();
    if (s->ac == NULL || !s->connected || s->outstanding == 0 || now - s->last_progress_ms < quiet)
        return;
    log_error("shared limits: no reply from Redis for %" PRIu64 " ms with %u commands waiting: "
              "reconnecting",
              now - s->last_progress_ms, s->outstanding);
    redisAsyncContext *ac = s->ac;
    s->ac = NULL;
    s->connected = 0;
    redisAsyncSetDisconnectCallback(ac, NULL);
    redisAsyncFree(ac); /* the pending callbacks run with a NULL reply and free their requests */
    s->outstanding = 0;
    s->backoff_ms = BACKOFF_MIN_MS;
    schedule_reconnect(s);
}

/* hiredis 0.14's async connect has no timeout of its own: a SYN into a black hole would wait
 * for the kernel's retries (about two minutes) with every shared decision on on_error. */
static void on_connect_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct shared *s = arg;
    if (s->ac == NULL || s->connected)
        return;
    note_down(s, "connect timed out");
    redisAsyncContext *ac = s->ac;
    s->ac = NULL;
    redisAsyncSetConnectCallback(ac, NULL);
    redisAsyncSetDisconnectCallback(ac, NULL);
    redisAsyncFree(ac);
    schedule_reconnect(s);
}

static void connect_now(struct shared *s)
{
    redisAsyncContext *ac = s->unix_path[0] ? redisAsyncConnectUnix(s->unix_path)
                                            : redisAsyncConnect(s->host, s->port);
    if (ac == NULL || ac->err) {
        note_down(s, ac ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        schedule_reconnect(s);
        return;
    }
    ac->data = s;
    s->ac = ac;
    s->outstanding = 0;
    redisEnableKeepAlive(&ac->c); /* the kernel notices a dead peer too, if more slowly */
    redisLibeventAttach(ac, s->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (s->db != 0 && redisAsyncCommand(ac, ignore_reply, NULL, "SELECT %u", s->db) == REDIS_OK)
        note_sent(s);
    /* Before anything else on this connection (its commands run in order), so that no EVALSHA
     * after a Redis restart needs the NOSCRIPT round trip of script_send. */
    for (int i = 0; i < SCRIPT_COUNT; i++)
        if (redisAsyncCommand(ac, ignore_reply, NULL, "SCRIPT LOAD %s", script_text[i]) == REDIS_OK)
            note_sent(s);
    struct timeval tv;
    util_ms_to_timeval(hung_after_ms(s), &tv);
    evtimer_add(s->connect_deadline, &tv);
}

/* "redis://host:port/db" (host an IP address or localhost: no blocking lookup), or "unix:/path". */
static int parse_url(struct shared *s, const char *url)
{
    s->port = 6379;
    if (strncmp(url, "unix:", 5) == 0) {
        snprintf(s->unix_path, sizeof s->unix_path, "%s", url + 5);
        return s->unix_path[0] ? 0 : -1;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return -1;
    const char *h = url + 8, *end = h + strcspn(h, ":/");
    snprintf(s->host, sizeof s->host, "%.*s", (int)(end - h), h);
    if (strcmp(s->host, "localhost") == 0)
        snprintf(s->host, sizeof s->host, "127.0.0.1");
    if (*end == ':')
        s->port = atoi(end + 1);
    const char *slash = strchr(h, '/');
    if (slash != NULL)
        s->db = (unsigned)atoi(slash + 1);
    return s->host[0] && s->port > 0 ? 0 : -1;
}

struct shared *shared_new(struct event_base *base, const struct config *config)
{
    if (config->shared_redis == NULL || config->shared_redis[0] == '\0')
        return NULL;
    struct shared *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->base = base;
    s->timeout_ms = config->shared_timeout_ms;
    s->backoff_ms = BACKOFF_MIN_MS;
    if (config->shared_key_secret != NULL && config->shared_key_secret[0] != '\0') {
        s->credential_key =
            credential_key_new(config->shared_key_secret, strlen(config->shared_key_secret));
        if (s->credential_key == NULL) {
            free(s);
            return NULL;
        }
    }
    s->reconnect = evtimer_new(base, on_reconnect, s);
    s->connect_deadline = evtimer_new(base, on_connect_deadline, s);
    if (s->reconnect == NULL || s->connect_deadline == NULL || parse_url(s, config->shared_redis) != 0) {
        log_error("shared.redis: cannot use %s", config->shared_redis);
        shared_free(s);
        return NULL;
    }
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        unsigned char digest[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)script_text[i], strlen(script_text[i]), digest);
        for (int j = 0; j < SHA_DIGEST_LENGTH; j++)
            snprintf(s->sha[i] + 2 * j, 3, "%02x", digest[j]);
    }
    connect_now(s);
    return s;
}

void shared_free(struct shared *s)
{
    if (s == NULL)
        return;
    if (s->ac != NULL) {
        redisAsyncContext *ac = s->ac;
        ac->data = s;
        redisAsyncSetDisconnectCallback(ac, NULL);
        s->ac = NULL;
        redisAsyncFree(ac); /* pending callbacks run with a NULL reply and free their requests */
    }
    if (s->reconnect != NULL)
        event_free(s->reconnect);
    if (s->connect_deadline != NULL)
        event_free(s->connect_deadline);
    credential_key_free(s->credential_key);
    free(s);
}

static void finish_request(struct shared_request *r, enum shared_outcome outcome)
{
    if (r->finished)
        return;
    r->finished = 1;
    evtimer_del(r->timer);
    r->result.outcome = outcome;
    if (outcome == SHARED_ERROR)
        atomic_fetch_add(&r->s->errors, 1);
    if (!r->cancelled)
        r->done(r->arg, &r->result);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct shared_request *r = arg;
    struct shared *s = r->s;
    note_down(s, "no answer within shared.timeout");
    finish_request(r, SHARED_ERROR);
    drop_if_hung(s); /* may free r */
}

static void on_ready_reply(struct shared_request *r, redisReply *reply)
{
    enum shared_outcome outcome = SHARED_ERROR;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer >= 0) {
        r->result.delay_us = (uint64_t)reply->integer;
        outcome = reply->integer > 0 ? SHARED_DELAY : SHARED_ADMIT;
    } else if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        log_warn("shared limits: Redis error: %s", reply->str);
    }
    if (!r->finished)
        finish_request(r, outcome);
    event_free(r->timer);
    free(r);
}

static void on_reply(redisAsyncContext *ac, void *reply_ptr, void *arg)
{
    struct shared_request *r = arg;
    redisReply *reply = reply_ptr;
    if (r->ready) {
        on_ready_reply(r, reply);
        return;
    }
    enum shared_outcome outcome = SHARED_ERROR;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
        if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
            log_warn("shared limits: Redis error: %s", reply->str);
    } else {
        long long verdict = reply->element[0]->integer, wait = reply->element[1]->integer;
        r->result.remaining = (uint32_t)reply->element[2]->integer;
        if (reply->element[3]->type == REDIS_REPLY_STRING)
            snprintf(r->result.member, sizeof r->result.member, "%s", reply->element[3]->str);
        outcome = verdict == 1                                   ? SHARED_ADMIT
                  : verdict == 2 || verdict == 3 || verdict == 5 ? SHARED_DELAY
                                                                 : SHARED_REJECT;
        r->result.paused = verdict == 3 || verdict == 4;
        r->result.delay_us = outcome == SHARED_DELAY ? (uint64_t)wait : 0;
        r->result.retry_after_us = outcome == SHARED_REJECT ? (uint64_t)wait : 0;
        _Atomic uint64_t *counter = outcome == SHARED_ADMIT   ? &r->s->admitted
                                    : outcome == SHARED_DELAY ? &r->s->delayed
                                                              : &r->s->rejected;
        if (r->dry_run && outcome != SHARED_ADMIT) {
            /* what enforcing would do, counted by the caller (would_delay, would_reject): the
             * request goes on without an entry */
            r->result.would = outcome;
            outcome = SHARED_ADMIT;
            r->result.member[0] = '\0';
        } else {
            atomic_fetch_add(counter, 1);
        }
    }
    if (reply != NULL && outcome != SHARED_ERROR && r->s->down_logged) {
        log_notice("shared limits: Redis is back"); /* answering again after a slow spell */
        r->s->down_logged = 0;
    }
    if (!r->finished)
        finish_request(r, outcome);
    else if (outcome == SHARED_ADMIT || outcome == SHARED_DELAY)
        /* timed out or went away while Redis decided: the slot it took is nobody's */
        shared_release(r->s, r->zkey, r->result.member);
    event_free(r->timer);
    free(r);
}

static int send_decide(struct shared_request *r)
{
    return script_send(r->s, SCRIPT_DECIDE, on_reply, r,
                       "7 %s %s %s:hold %s:pending %s:learned %s:departed %s:unanswered %u %llu %d "
                       "%llu %u %llu %d %d %u %d",
                       r->zkey, r->seqkey, r->zkey, r->zkey, r->zkey, r->zkey, r->zkey, r->limit,
                       r->window_us, r->delay, r->max_delay_us, r->max_queue,
                       (unsigned long long)SHARED_PENDING_STALE_US, r->dry_run, r->follow, r->cost,
                       r->costs);
}

static int send_ready(struct shared_request *r)
{
    return script_send(r->s, SCRIPT_READY, on_reply, r, "2 %s %s:pending %s %u %llu %llu %llu",
                       r->zkey, r->zkey, r->member, r->limit, r->window_us,
                       (unsigned long long)SHARED_PENDING_RECHECK_US,
                       (unsigned long long)SHARED_PENDING_STALE_US);
}

/* A request of `rule`'s key answering done(arg), not sent yet; NULL when out of memory. */
static struct shared_request *request_new(struct shared *s, const struct rate_rule *rule,
                                          shared_done_fn done, void *arg)
{
    struct shared_request *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->s = s;
    r->done = done;
    r->arg = arg;
    r->limit = rule->limit;
    r->window_us = (unsigned long long)(rule->window_ms + rule->margin_ms) * 1000;
    return r;
}

/* Sends r (a decision, or a ready check) and gives Redis timeout_ms to answer. The timer is made
 * before the command goes, so a reply always finds one. 0, or -1 with r freed when the timer
 * cannot be made or the command cannot be queued. */
static int request_send(struct shared_request *r, uint64_t timeout_ms)
{
    r->timer = evtimer_new(r->s->base, on_timeout, r);
    if (r->timer == NULL || (r->ready ? send_ready(r) : send_decide(r)) != 0) {
        if (r->timer != NULL)
            event_free(r->timer);
        free(r);
        return -1;
    }
    struct timeval tv;
    util_ms_to_timeval(timeout_ms, &tv);
    evtimer_add(r->timer, &tv);
    return 0;
}

struct shared_request *shared_decide(struct shared *s, const struct rate_rule *rule,
                                     const struct limiter_request *request, uint64_t timeout_ms,
                                     shared_done_fn done, void *arg)
{
    if (s != NULL)
        s->timeout_ms = timeout_ms; /* the current config's: shared.timeout is reloadable */
    if (s == NULL || s->ac == NULL || !s->connected) {
        if (s != NULL)
            atomic_fetch_add(&s->errors, 1);
        return NULL;
    }
    struct shared_request *r = request_new(s, rule, done, arg);
    if (r == NULL)
        return NULL;
    char key[600];
    limiter_key(rule, request, s->credential_key, key, sizeof key);
    /* one hash tag: the set and its counter live in the same Redis Cluster slot */
    snprintf(r->zkey, sizeof r->zkey, "rlproxy:{%s:%s}", rule->name, key);
    snprintf(r->result.key, sizeof r->result.key, "%s", r->zkey);
    snprintf(r->seqkey, sizeof r->seqkey, "%s:seq", r->zkey);
    r->delay = rule->over_limit == RATE_OVER_DELAY;
    r->max_delay_us = (unsigned long long)rule->max_delay_ms * 1000;
    r->max_queue = rule->max_queue;
    r->dry_run = !rule->enforce;
    r->follow = rule->upstream_limits == RATE_UPSTREAM_FOLLOW;
    /* admission refused a bad cost_header value (400) before asking */
    r->cost = limiter_key_cost(rule, request);
    if (r->cost == 0)
        r->cost = 1;
    if (r->cost > r->limit)
        r->cost = r->limit;
    r->costs = rule->cost > 1 || rule->cost_header[0] != '\0';
    if (request_send(r, s->timeout_ms) != 0) {
        atomic_fetch_add(&s->errors, 1);
        return NULL;
    }
    return r;
}

struct shared_request *shared_ready(struct shared *s, const struct rate_rule *rule,
                                    const char *key, const char *member, uint64_t timeout_ms,
                                    shared_done_fn done, void *arg)
{
    if (s == NULL || s->ac == NULL || !s->connected || member[0] == '\0')
        return NULL;
    struct shared_request *r = request_new(s, rule, done, arg);
    if (r == NULL)
        return NULL;
    r->ready = 1;
    snprintf(r->zkey, sizeof r->zkey, "%s", key);
    snprintf(r->member, sizeof r->member, "%s", member);
    return request_send(r, timeout_ms) == 0 ? r : NULL;
}

void shared_cancel(struct shared_request *r)
{
    if (r == NULL)
        return;
    r->cancelled = 1; /* freed when its reply (or the disconnect) arrives */
    r->finished = 1;
    evtimer_del(r->timer);
}

void shared_depart(struct shared *s, const char *key, const char *member, int learn)
{
    if (s == NULL || s->ac == NULL || !s->connected || member[0] == '\0')
        return;
    if (learn)
        script_send(s, SCRIPT_DEPART_LEARN, NULL, NULL,
                    "4 %s %s:pending %s:departed %s:unanswered %s %d", key, key, key, key, member,
                    SHARED_UNANSWERED_MAX);
    else
        script_send(s, SCRIPT_DEPART, NULL, NULL, "2 %s %s:pending %s", key, key, member);
}

void shared_learn(struct shared *s, const char *key, const char *member,
                  const struct limit_headers *said, uint64_t margin_ms)
{
    if (s == NULL || s->ac == NULL || !s->connected || member[0] == '\0')
        return;
    if (said == NULL || said->remaining < 0 || said->reset_ms < 0) {
        /* Nothing to learn: this is all the script would do, and a plain command costs Redis a
         * fraction of a script call (an origin that sends no limit fields answers every request
         * so: 3.6 of 23 µs of Redis CPU per request, measured in bench/SHARED.md) */
        if (redisAsyncCommand(s->ac, ignore_reply, NULL, "ZREM %s:unanswered %s", key, member) ==
            REDIS_OK)
            note_sent(s);
        return;
    }
    long long remaining = said->remaining, reset_us = said->reset_ms * 1000, limit = said->limit;
    long long period_us = said->window_ms > 0 ? said->window_ms * 1000 : -1;
    script_send(s, SCRIPT_LEARN, NULL, NULL,
                "3 %s:learned %s:departed %s:unanswered %s %lld %lld %lld %lld %llu %llu", key, key,
                key, member, remaining, reset_us, limit, period_us,
                (unsigned long long)margin_ms * 1000, (unsigned long long)LIMITER_RESET_SLACK_US);
}

void shared_abandon(struct shared *s, const char *key, const char *member)
{
    if (s != NULL && s->ac != NULL && s->connected && member[0] != '\0' &&
        redisAsyncCommand(s->ac, ignore_reply, NULL, "SREM %s:pending %s", key, member) ==
            REDIS_OK)
        note_sent(s);
}

void shared_hold(struct shared *s, const char *key, uint64_t for_ms)
{
    if (for_ms > 0)
        script_send(s, SCRIPT_HOLD, NULL, NULL, "1 %s:hold %llu", key, (unsigned long long)for_ms);
}

void shared_release(struct shared *s, const char *key, const char *member)
{
    if (strchr(member, 'x') != NULL) { /* a request of cost n: its n members */
        script_send(s, SCRIPT_RELEASE, NULL, NULL, "2 %s %s:pending %s", key, key, member);
        return;
    }
    if (s != NULL && s->ac != NULL && s->connected && member[0] != '\0' &&
        redisAsyncCommand(s->ac, ignore_reply, NULL, "ZREM %s %s", key, member) == REDIS_OK) {
        note_sent(s);
        shared_abandon(s, key, member);
    }
}

void shared_stats(struct shared *s, struct shared_stats *out)
{
    memset(out, 0, sizeof *out);
    if (s == NULL)
        return;
    out->admitted = atomic_load(&s->admitted);
    out->delayed = atomic_load(&s->delayed);
    out->rejected = atomic_load(&s->rejected);
    out->errors = atomic_load(&s->errors);
    out->connected = s->connected;
}

#else /* no hiredis: shared rules are refused by the config check */

int shared_available(void) { return 0; }
struct shared *shared_new(struct event_base *base, const struct config *config) { return NULL; }
void shared_free(struct shared *s) {}
struct shared_request *shared_decide(struct shared *s, const struct rate_rule *rule,
                                     const struct limiter_request *request, uint64_t timeout_ms,
                                     shared_done_fn done, void *arg)
{
    return NULL;
}
void shared_cancel(struct shared_request *r) {}
void shared_depart(struct shared *s, const char *key, const char *member, int learn) {}
void shared_learn(struct shared *s, const char *key, const char *member,
                  const struct limit_headers *said, uint64_t margin_ms)
{
}
void shared_hold(struct shared *s, const char *key, uint64_t for_ms) {}
struct shared_request *shared_ready(struct shared *s, const struct rate_rule *rule,
                                    const char *key, const char *member, uint64_t timeout_ms,
                                    shared_done_fn done, void *arg)
{
    return NULL;
}
void shared_release(struct shared *s, const char *key, const char *member) {}
void shared_abandon(struct shared *s, const char *key, const char *member) {}
void shared_stats(struct shared *s, struct shared_stats *out) { memset(out, 0, sizeof *out); }

#endif
