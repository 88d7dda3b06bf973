/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* upstream.c — transfers to origins: pooled easy handles, the options of a forward or a tunnel,
 * curl's header, body and socket callbacks, and the result a finished transfer gets. The event
 * glue that drives the multi is upstream_loop.c's; handles are removed only from its done callback
 * or from libevent callbacks, never from inside curl's. */
#include "upstream.h"

#include <errno.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "access.h"
#include "http.h"
#include "http_response.h"
#include "log.h"
#include "tls.h"
#include "upstream_loop.h"
#include "upstream_result.h"
#include "util.h"

/* Idle easy handles kept per worker: up to as many as it may have transfers in flight
 * (backpressure.max_inflight), at most POOL_MAX. A configured handle costs ~20 curl_easy_setopt
 * and an init to make; with fewer kept than in flight, a burst of finished transfers destroyed
 * handles that the next burst made again (at 1,000 clients, a 64-handle pool did so for most
 * requests). Their memory is what the transfers in flight held anyway. */
#define POOL_MAX 4096
#define UPSTREAM_MAX_HEAD (64 * 1024)   /* response head bound; more is a 502 */
#define ORIGIN_CACHE_MAX 16             /* parsed origin URLs kept per worker */
#define ORIGIN_URL_MAX 512
#define SPARE_HEAD_MAX (8 * 1024)       /* a head buffer up to this size is kept for reuse */
/* A worker's transfers are spread over up to SHARDS_MAX curl multi handles of at most
 * SHARD_TRANSFERS transfers each. curl 7.88 walks a host's cached connections to find an idle one
 * for every transfer, and every cached connection of the multi when a handle is removed: O(n)
 * per request with a cache miss per connection. At 1,000 client connections, one multi with
 * 1,000 origin connections spent ~55 us of CPU per request against ~32 with at most 256
 * (bench/PROFILE.md). Shards fill in order, so up to SHARD_TRANSFERS in flight everything
 * shares one connection cache, as before. */
#define SHARD_TRANSFERS 128
#define SHARDS_MAX 16

/* An origin's URL ("http://host:port/") parsed once: curl would parse CURLOPT_URL again on every
 * transfer (~5k instructions). curl reads the CURLU when the transfer connects, so an entry in
 * use by a transfer in flight is never replaced. */
struct origin_url {
    char url[ORIGIN_URL_MAX]; /* "" while unused */
    CURLU *uh;
    unsigned refs;      /* transfers in flight that were given uh */
    uint64_t last_used; /* for replacing the least recently used */
};

struct upstream_shard {
    struct upstream_loop *loop;
    uint32_t active; /* transfers in this shard's multi */
};

struct upstream_multi {
    struct event_base *base;
    struct upstream_shard shards[SHARDS_MAX];
    size_t shard_count;
    uint32_t shard_capacity; /* transfers a shard takes before the next one is used */
    CURL **pool;
    size_t pool_count, pool_cap;
    _Atomic size_t active; /* read by the admin thread for /metrics */
    struct origin_url origins[ORIGIN_CACHE_MAX];
    uint64_t origin_clock;
    char *spare_head; /* a finished transfer's head buffer, for the next one; NULL if none */
    size_t spare_head_cap;
};

struct upstream {
    struct upstream_multi *m;
    struct upstream_shard *shard;
    CURL *easy;
    struct curl_slist *headers;
    struct curl_slist *proxy_headers; /* CONNECT to a parent: an ordinary curl list */
    const struct upstream_callbacks *cb;
    void *ctx;
    struct event *response_timer; /* &response_timer_ev once set up, else NULL */
    struct event response_timer_ev;
    uint64_t response_timeout_ms;
    char *head; /* header block of the response being read */
    size_t head_len, head_cap;
    int status;
    char reason[128];
    int head_delivered;
    int in_interim; /* inside a 1xx response's headers */
    int connect_only;
    int discarded_status;
    int64_t retry_after_ms;
    int timed_out;
    int head_too_big;
    int pause_mask;
    int dirty; /* the easy handle needs a curl_easy_reset before its next use: see easy_put */
    uint64_t closes_at_start; /* upstream_loop_closes when the transfer started */
    struct origin_url *origin; /* the parsed URL curl was given, or NULL */
    uint64_t bytes_received;
    int64_t upload_left; /* Content-Length bodies: bytes curl still has to read; -1 chunked */
    char target_text[256];
    char parent[160]; /* the parent proxy, without credentials, or "" */
    const struct config *policy; /* for destinations.deny; the owner keeps it alive */
    char denied[64];  /* the address refused by destinations.deny, or "" */
    const char *extra_ca_file;
    char error[CURL_ERROR_SIZE];
};
static void transfer_done(CURL *easy, CURLcode result);

struct upstream_multi *upstream_multi_new(struct event_base *base, uint32_t max_connections)
{
    struct upstream_multi *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->base = base;
    if (max_connections == 0)
        max_connections = 1;
    m->pool_cap = max_connections < POOL_MAX ? max_connections : POOL_MAX;
    m->pool = calloc(m->pool_cap, sizeof *m->pool);
    if (m->pool == NULL) {
        free(m);
        return NULL;
    }
    m->shard_count = (max_connections + SHARD_TRANSFERS - 1) / SHARD_TRANSFERS;
    if (m->shard_count > SHARDS_MAX)
        m->shard_count = SHARDS_MAX;
    m->shard_capacity = (uint32_t)((max_connections + m->shard_count - 1) / m->shard_count);
    for (size_t i = 0; i < m->shard_count; i++) {
        m->shards[i].loop = upstream_loop_new(base, transfer_done);
        if (m->shards[i].loop == NULL) {
            upstream_multi_free(m);
            return NULL;
        }
        /* connections kept for reuse: as many as the shard may have transfers in flight (the
         * worker's share of backpressure.max_inflight). Fewer, and past that many clients each
         * finished transfer closed a connection the next one opened again (measured at 1,000
         * clients on a cap of 256: ~575 origin connections closed and reopened a second) */
        curl_multi_setopt(upstream_loop_multi(m->shards[i].loop), CURLMOPT_MAXCONNECTS,
                          (long)m->shard_capacity);
    }
    return m;
}

void upstream_multi_free(struct upstream_multi *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->pool_count; i++)
        curl_easy_cleanup(m->pool[i]);
    free(m->pool);
    for (size_t i = 0; i < m->shard_count; i++)
        upstream_loop_free(m->shards[i].loop);
    for (size_t i = 0; i < ORIGIN_CACHE_MAX; i++)
        curl_url_cleanup(m->origins[i].uh);
    free(m->spare_head);
    free(m);
}

size_t upstream_multi_active(struct upstream_multi *m) { return atomic_load(&m->active); }

/* ---- easy handle life ------------------------------------------------------------------------- */

static curl_socket_t open_socket_cb(void *arg, curlsocktype purpose, struct curl_sockaddr *address);
static size_t header_cb(char *data, size_t size, size_t nitems, void *arg);
static size_t write_cb(char *data, size_t size, size_t nitems, void *arg);
static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg);
static int seek_cb(void *arg, curl_off_t offset, int origin);
static int prereq_cb(void *arg, char *primary_ip, char *local_ip, int primary_port,
                     int local_port);

/* What every handle needs, forwarding or tunnelling. */
static void easy_base(struct upstream_multi *m, CURL *e)
{
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* curl would otherwise obey http_proxy/https_proxy from our environment, and no_proxy even
     * with a proxy set: that would send requests past the configured parent (and cost two
     * getenv calls per transfer) */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOPROXY, "");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
}

/* A pooled handle is configured for forwarding once, here, and keeps these between transfers:
 * curl_easy_reset and setting them again cost ~5k instructions per request. Only options that
 * are the same for every plain forward belong here; upstream_start sets every one that varies,
 * on every request, so nothing of the previous transfer reaches the next. The read and seek
 * callbacks are harmless without CURLOPT_UPLOAD: curl reads no body then. */
static void easy_configure(struct upstream_multi *m, CURL *e)
{
    easy_base(m, e);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    /* curl reads at most this much per recv and then polls the socket to see if there is more:
     * the default 16 KiB costs a recvfrom and a poll per 16 KiB of body. curl allocates the buffer
     * per transfer and frees it when the transfer ends, so only transfers in flight hold one. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 64L * 1024);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_cb);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq_cb);
}

/* Every handle handed out is configured for forwarding (see easy_configure). */
static CURL *easy_get(struct upstream_multi *m)
{
    if (m->pool_count > 0)
        return m->pool[--m->pool_count];
    CURL *e = curl_easy_init();
    if (e != NULL)
        easy_configure(m, e);
    return e;
}

/* `dirty`: the handle may carry more than a plain forward leaves behind (a parent proxy, a
 * CONNECT, or curl state such as its per-handle count of resends, which only curl_easy_reset
 * clears): it is reset and configured again before anyone else gets it. */
static void easy_put(struct upstream_multi *m, CURL *easy, int dirty)
{
    if (m->pool_count >= m->pool_cap) {
        curl_easy_cleanup(easy);
        return;
    }
    if (dirty) {
        curl_easy_reset(easy);
        easy_configure(m, easy);
    } else {
        /* these point into memory freed with the upstream: a pooled handle must not keep them */
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(easy, CURLOPT_CURLU, NULL);
    }
    m->pool[m->pool_count++] = easy;
}

static void upstream_free(struct upstream *u)
{
    struct upstream_multi *m = u->m;
    curl_multi_remove_handle(upstream_loop_multi(u->shard->loop), u->easy);
    /* curl counts resends after a reused connection died per handle, and only curl_easy_reset
     * sets the count back; a resend closes that connection first, so a transfer during which no
     * connection closed has not resent */
    easy_put(m, u->easy, u->dirty || u->closes_at_start != upstream_loop_closes(u->shard->loop));
    if (u->origin != NULL)
        u->origin->refs--;
    free(u->headers); /* one block: see upstream.h */
    curl_slist_free_all(u->proxy_headers);
    if (u->response_timer != NULL)
        event_del(u->response_timer);
    /* one buffer per worker saves a malloc and a free per request; a large one is not kept */
    if (m->spare_head == NULL && u->head_cap <= SPARE_HEAD_MAX) {
        m->spare_head = u->head;
        m->spare_head_cap = u->head_cap;
    } else {
        free(u->head);
    }
    u->shard->active--;
    m->active--;
    free(u);
}

void upstream_abort(struct upstream *u)
{
    if (u == NULL)
        return;
    u->dirty = 1; /* stopped mid-transfer: whatever curl left, reset it */
    upstream_free(u);
}

/* "http://user:secret@host:3128" -> "http://host:3128": credentials never reach logs or clients. */
static void strip_credentials(const char *url, char *out, size_t len)
{
    const char *scheme_end = strstr(url, "://");
    const char *auth = scheme_end ? scheme_end + 3 : url;
    const char *at = strchr(auth, '@');
    const char *slash = strchr(auth, '/');
    if (at != NULL && (slash == NULL || at < slash))
        snprintf(out, len, "%.*s%s", (int)(auth - url), url, at + 1);
    else
        snprintf(out, len, "%s", url);
}

static void finish(struct upstream *u, CURLcode code)
{
    struct upstream_result r;
    memset(&r, 0, sizeof r);
    r.bytes_received = u->bytes_received;
    r.retry_after_ms = -1;
    if (code == CURLE_OK && !u->timed_out && !u->head_too_big &&
        (u->head_delivered || u->connect_only)) {
        r.ok = 1;
    } else {
        u->dirty = 1; /* ended early or in error: a clean slate for the next user */
        struct upstream_outcome outcome = {
            .easy = u->easy, .code = code, .discarded_status = u->discarded_status,
            .timed_out = u->timed_out, .head_too_big = u->head_too_big,
            .retry_after_ms = u->retry_after_ms, .response_timeout_ms = u->response_timeout_ms,
            .error = u->error, .target_text = u->target_text, .denied = u->denied,
            .parent = u->parent};
        upstream_result_classify(&outcome, &r);
    }
    const struct upstream_callbacks *cb = u->cb;
    void *ctx = u->ctx;
    if (u->connect_only && r.ok) {
        curl_socket_t s = CURL_SOCKET_BAD;
        curl_easy_getinfo(u->easy, CURLINFO_ACTIVESOCKET, &s);
        /* curl closes its connect-only connection when the handle leaves the multi; our dup keeps
         * the socket for the tunnel and frees curl from any say over it (no cache pruning). */
        int fd = s == CURL_SOCKET_BAD ? -1 : fcntl(s, F_DUPFD_CLOEXEC, 0);
        upstream_free(u);
        if (fd < 0) {
            r.ok = 0;
            r.status = 502;
            snprintf(r.message, sizeof r.message, "tunnel socket unavailable");
            cb->on_done(ctx, &r);
            return;
        }
        cb->on_connected(ctx, fd);
        return;
    }
    upstream_free(u);
    cb->on_done(ctx, &r);
}

static void transfer_done(CURL *easy, CURLcode result)
{
    struct upstream *u = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&u);
    finish(u, result);
}

static void on_response_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *u = arg;
    u->timed_out = 1;
    finish(u, CURLE_OPERATION_TIMEDOUT);
}

void upstream_request_sent(struct upstream *u)
{
    if (u->head_delivered || u->response_timer == NULL)
        return;
    struct timeval tv;
    util_ms_to_timeval(u->response_timeout_ms, &tv);
    evtimer_add(u->response_timer, &tv);
}

/* ---- curl callbacks --------------------------------------------------------------------------- */

static int head_append(struct upstream *u, const char *data, size_t len)
{
    if (u->head_len + len > UPSTREAM_MAX_HEAD) {
        u->head_too_big = 1;
        return -1;
    }
    if (u->head == NULL && u->m->spare_head != NULL) {
        u->head = u->m->spare_head;
        u->head_cap = u->m->spare_head_cap;
        u->m->spare_head = NULL;
    }
    if (u->head_len + len > u->head_cap) {
        size_t cap = u->head_cap ? u->head_cap * 2 : 2048;
        while (cap < u->head_len + len)
            cap *= 2;
        char *grown = realloc(u->head, cap);
        if (grown == NULL)
            return -1;
        u->head = grown;
        u->head_cap = cap;
    }
    memcpy(u->head + u->head_len, data, len);
    u->head_len += len;
    return 0;
}

/* "HTTP/1.1 200 OK\r\n": keeps the code and the reason phrase as the origin sent them. */
static int parse_status_line(struct upstream *u, const char *line, size_t len)
{
    const char *reason;
    size_t reason_len;
    if (http_parse_status_line(line, len, &u->status, &reason, &reason_len) != 0)
        return -1;
    if (reason_len >= sizeof u->reason)
        reason_len = sizeof u->reason - 1;
    memcpy(u->reason, reason, reason_len);
    u->reason[reason_len] = '\0';
    return 0;
}

static size_t header_cb(char *data, size_t size, size_t nitems, void *arg)
{
    struct upstream *u = arg;
    size_t len = size * nitems;
    if (u->head_delivered)
        return len; /* trailers after a chunked body: not forwarded */
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        if (parse_status_line(u, data, len) != 0)
            return 0;
        u->in_interim = u->status < 200;
        u->head_len = 0;
        return len;
    }
    if (len <= 2 && (data[0] == '\r' || data[0] == '\n')) {
        if (u->in_interim) { /* 1xx: curl handles 100; 103 hints are dropped deliberately */
            u->in_interim = 0;
            return len;
        }
        if (u->response_timer != NULL)
            evtimer_del(u->response_timer);
        u->retry_after_ms = http_retry_after_ms(u->head, u->head_len, time(NULL));
        if (u->cb->on_status != NULL && u->cb->on_status(u->ctx, u->status, u->retry_after_ms,
                                                         u->head, u->head_len)) {
            u->discarded_status = u->status;
            return 0; /* ends the transfer: the connection is not worth a body we drop */
        }
        u->head_delivered = 1;
        u->cb->on_head(u->ctx, u->status, u->reason, strlen(u->reason), u->head, u->head_len);
        return len;
    }
    if (u->in_interim)
        return len;
    return head_append(u, data, len) == 0 ? len : 0;
}

static size_t write_cb(char *data, size_t size, size_t nitems, void *arg)
{
    struct upstream *u = arg;
    size_t len = size * nitems;
    switch (u->cb->on_body(u->ctx, data, len)) {
    case UPSTREAM_BODY_OK:
        u->bytes_received += len;
        return len;
    case UPSTREAM_BODY_PAUSE:
        u->pause_mask |= CURLPAUSE_RECV;
        u->dirty = 1; /* paused transfers go back to the pool reset, as they always did */
        return CURL_WRITEFUNC_PAUSE;
    default:
        return 0;
    }
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    struct upstream *u = arg;
    size_t n = u->cb->read_body(u->ctx, buf, size * nitems);
    if (n == CURL_READFUNC_PAUSE) {
        u->pause_mask |= CURLPAUSE_SEND;
        u->dirty = 1;
    } else if (n == 0) {
        upstream_request_sent(u);
    } else if (n != CURL_READFUNC_ABORT && u->upload_left >= 0) {
        /* curl stops reading at the declared length, so "end of body" never comes as a 0 */
        u->upload_left -= (int64_t)n;
        if (u->upload_left <= 0)
            upstream_request_sent(u);
    }
    return n;
}

/* curl resends a request whose reused connection died before the answer: the body must start
 * over, which works while the owner still has it (its replay spool). */
static int seek_cb(void *arg, curl_off_t offset, int origin)
{
    struct upstream *u = arg;
    if (offset != 0 || origin != SEEK_SET)
        return CURL_SEEKFUNC_FAIL;
    if (u->cb->rewind_body == NULL || u->cb->rewind_body(u->ctx) != 0)
        return CURL_SEEKFUNC_CANTSEEK;
    return CURL_SEEKFUNC_OK;
}

/* The connection is ready and the request goes out next: the moment the rate limit counts. */
static int prereq_cb(void *arg, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    struct upstream *u = arg;
    if (u->cb->on_departure != NULL)
        u->cb->on_departure(u->ctx);
    return CURL_PREREQFUNC_OK;
}

void upstream_set_pause(struct upstream *u, int recv_paused, int send_paused)
{
    int mask = (recv_paused ? CURLPAUSE_RECV : 0) | (send_paused ? CURLPAUSE_SEND : 0);
    if (mask == u->pause_mask)
        return;
    u->pause_mask = mask;
    u->dirty |= mask != 0;
    curl_easy_pause(u->easy, mask);
}

/* Every address curl is about to connect to passes here, after DNS: a name that resolves to a
 * denied address (the cloud metadata service, say) is refused even though its name looked fine.
 * Through a parent proxy the address is the parent's, which the operator chose. */
static curl_socket_t open_socket_cb(void *arg, curlsocktype purpose, struct curl_sockaddr *address)
{
    struct upstream *u = arg;
    if (purpose == CURLSOCKTYPE_IPCXN && u->policy != NULL && u->parent[0] == '\0' &&
        access_address_denied(u->policy, &address->addr)) {
        util_format_sockaddr(&address->addr, u->denied, sizeof u->denied);
        return CURL_SOCKET_BAD;
    }
    return upstream_loop_open_socket(u->shard->loop, address);
}

static CURLcode ssl_ctx_cb(CURL *easy, void *ssl_ctx, void *arg)
{
    struct upstream *u = arg;
    if (tls_add_upstream_ca(ssl_ctx, u->extra_ca_file) != 0)
        log_warn("cannot load tls_intercept.upstream_ca_file %s", u->extra_ca_file);
    return CURLE_OK; /* the system store still verifies */
}

/* ---- starting transfers ----------------------------------------------------------------------- */

/* The first shard with room (see SHARD_TRANSFERS), else the least busy. */
static struct upstream_shard *shard_pick(struct upstream_multi *m)
{
    struct upstream_shard *least = &m->shards[0];
    for (size_t i = 0; i < m->shard_count; i++) {
        if (m->shards[i].active < m->shard_capacity)
            return &m->shards[i];
        if (m->shards[i].active < least->active)
            least = &m->shards[i];
    }
    return least;
}

/* Sockets curl closes are unregistered from the shard that watches them: set on every transfer,
 * since a pooled handle moves between shards (curl keeps the callback with each connection). */
static void shard_bind(struct upstream *u)
{
    upstream_loop_watch_closes(u->shard->loop, u->easy);
}

static struct upstream *upstream_new(struct upstream_multi *m, const struct upstream_callbacks *cb,
                                     void *ctx, const char *target_text)
{
    struct upstream *u = calloc(1, sizeof *u);
    if (u == NULL)
        return NULL;
    u->easy = easy_get(m);
    if (u->easy == NULL) {
        free(u);
        return NULL;
    }
    u->m = m;
    u->shard = shard_pick(m);
    u->shard->active++;
    shard_bind(u);
    u->cb = cb;
    u->ctx = ctx;
    u->closes_at_start = upstream_loop_closes(u->shard->loop);
    /* (not snprintf: ~500 instructions per request for a bounded copy) */
    size_t len = strnlen(target_text, sizeof u->target_text - 1);
    memcpy(u->target_text, target_text, len);
    u->target_text[len] = '\0';
    curl_easy_setopt(u->easy, CURLOPT_PRIVATE, u);
    curl_easy_setopt(u->easy, CURLOPT_ERRORBUFFER, u->error);
    m->active++;
    return u;
}

static int add_to_multi(struct upstream *u)
{
    if (curl_multi_add_handle(upstream_loop_multi(u->shard->loop), u->easy) != CURLM_OK) {
        u->headers = NULL;
        u->dirty = 1;
        upstream_free(u);
        return -1;
    }
    return 0;
}

/* The parsed form of url, taken for one transfer (release: refs--), or NULL when it cannot be
 * had: then curl parses CURLOPT_URL itself, as it always did. */
static struct origin_url *origin_take(struct upstream_multi *m, const char *url, size_t len)
{
    if (len >= ORIGIN_URL_MAX)
        return NULL;
    struct origin_url *victim = NULL;
    for (size_t i = 0; i < ORIGIN_CACHE_MAX; i++) {
        struct origin_url *o = &m->origins[i];
        if (o->uh != NULL && memcmp(o->url, url, len + 1) == 0) {
            o->refs++;
            o->last_used = ++m->origin_clock;
            return o;
        }
        if (o->refs == 0 && (victim == NULL || o->last_used < victim->last_used))
            victim = o;
    }
    if (victim == NULL)
        return NULL;
    /* the flags curl itself parses CURLOPT_URL with (url.c, parseurlandfillconn) */
    CURLU *uh = curl_url();
    if (uh == NULL || curl_url_set(uh, CURLUPART_URL, url,
                                   CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME |
                                       CURLU_PATH_AS_IS) != CURLUE_OK) {
        curl_url_cleanup(uh); /* curl reports the bad URL from CURLOPT_URL as before */
        return NULL;
    }
    curl_url_cleanup(victim->uh);
    victim->uh = uh;
    memcpy(victim->url, url, len + 1);
    victim->refs = 1;
    victim->last_used = ++m->origin_clock;
    return victim;
}

/* Everything a forward sets besides easy_configure's constants. The handle may come straight
 * from the previous request: each option that request may have changed is set here again,
 * whether this request needs it or not (method, body, target, TLS callback, fresh connect). */
static int set_forward_options(struct upstream *u, const struct upstream_request *req)
{
    CURL *e = u->easy;
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, u);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, u);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, u);
    curl_easy_setopt(e, CURLOPT_READDATA, u);
    curl_easy_setopt(e, CURLOPT_SEEKDATA, u);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, u);
    if (req->extra_ca_file != NULL && req->extra_ca_file[0] != '\0') {
        u->extra_ca_file = req->extra_ca_file; /* owned by the config the conn holds */
        curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
        curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, u);
    } else {
        curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, NULL);
        curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, NULL);
    }
    if (req->parent_proxy == NULL) {
        char url[ORIGIN_URL_MAX];
        size_t len = strlen(req->url);
        if (len + 2 > sizeof url)
            return -1;
        memcpy(url, req->url, len);
        memcpy(url + len, "/", 2);
        /* CURLOPT_URL as well: curl resends a request whose reused connection died to the URL
         * string, not the CURLU, and this keeps that string this request's own */
        curl_easy_setopt(e, CURLOPT_URL, url);
        u->origin = origin_take(u->m, url, len + 1);
        curl_easy_setopt(e, CURLOPT_CURLU, u->origin != NULL ? u->origin->uh : NULL);
        /* the target goes out byte for byte; curl would otherwise normalise it */
        curl_easy_setopt(e, CURLOPT_REQUEST_TARGET, req->request_target);
    } else {
        /* a parent needs the absolute form, which REQUEST_TARGET would replace */
        size_t len = strlen(req->url) + strlen(req->request_target) + 1;
        char *url = malloc(len);
        if (url == NULL)
            return -1;
        snprintf(url, len, "%s%s", req->url, req->request_target);
        curl_easy_setopt(e, CURLOPT_URL, url);
        free(url); /* curl copies strings it is given */
        curl_easy_setopt(e, CURLOPT_CURLU, NULL);
        curl_easy_setopt(e, CURLOPT_REQUEST_TARGET, NULL);
        curl_easy_setopt(e, CURLOPT_PROXY, req->parent_proxy);
        u->dirty = 1; /* the proxy (and its credentials) must not outlive this request */
        strip_credentials(req->parent_proxy, u->parent, sizeof u->parent);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, u->headers);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
    /* HTTPGET puts back what NOBODY and UPLOAD change: method GET, no upload, a body */
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    if (req->is_head) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    }
    /* libcurl resends a request whose reused connection died before the answer; for a method
     * that is not safe to repeat, a fresh connection means there is nothing to resend */
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, req->idempotent ? 0L : 1L);
    if (req->upload) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->upload_length);
    } else {
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)-1);
    }
    return 0;
}

struct upstream *upstream_start(struct upstream_multi *m, const struct upstream_request *req,
                                const struct upstream_callbacks *cb, void *ctx)
{
    struct upstream *u = upstream_new(m, cb, ctx, req->target_text);
    if (u == NULL) {
        free(req->headers);
        return NULL;
    }
    u->headers = req->headers;
    u->response_timeout_ms = req->response_timeout_ms;
    u->policy = req->policy;
    evtimer_assign(&u->response_timer_ev, m->base, on_response_timeout, u);
    u->response_timer = &u->response_timer_ev;
    if (set_forward_options(u, req) != 0) {
        free(u->headers); /* one block: see upstream.h */
        u->headers = NULL;
        u->dirty = 1;
        upstream_free(u);
        return NULL;
    }
    u->upload_left = req->upload ? req->upload_length : -1;
    if (add_to_multi(u) != 0)
        return NULL;
    if (!req->upload || req->upload_length == 0)
        upstream_request_sent(u);
    return u;
}

struct upstream *upstream_connect(struct upstream_multi *m, const char *host, unsigned port,
                                  uint64_t connect_timeout_ms, const char *parent_proxy,
                                  const struct config *policy,
                                  const struct upstream_callbacks *cb, void *ctx)
{
    char target[300], url[320];
    int v6 = strchr(host, ':') != NULL;
    snprintf(target, sizeof target, v6 ? "[%s]:%u" : "%s:%u", host, port);
    snprintf(url, sizeof url, "http://%s/", target);
    struct upstream *u = upstream_new(m, cb, ctx, target);
    if (u == NULL)
        return NULL;
    u->connect_only = 1;
    u->dirty = 1;
    u->policy = policy;
    /* a tunnel gets none of the forwarding options (no header or body callbacks: a parent's
     * answer to CONNECT is not a response for on_head) */
    CURL *e = u->easy;
    curl_easy_reset(e);
    easy_base(m, e);
    shard_bind(u);
    curl_easy_setopt(e, CURLOPT_PRIVATE, u);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, u->error);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, u);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
    if (parent_proxy != NULL) { /* curl sends CONNECT to the parent; the socket is the tunnel */
        curl_easy_setopt(e, CURLOPT_PROXY, parent_proxy);
        strip_credentials(parent_proxy, u->parent, sizeof u->parent);
        curl_easy_setopt(e, CURLOPT_HTTPPROXYTUNNEL, 1L);
        char via[64];
        snprintf(via, sizeof via, "Via: %s", http_via());
        u->proxy_headers = curl_slist_append(NULL, via);
        curl_easy_setopt(e, CURLOPT_PROXYHEADER, u->proxy_headers);
        curl_easy_setopt(e, CURLOPT_HEADEROPT, (long)CURLHEADER_SEPARATE);
    }
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout_ms);
    if (add_to_multi(u) != 0)
        return NULL;
    return u;
}
