/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* conn.c — the client connection and its state machine; see conn.h. */
#include "conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "access.h"
#include "accesslog.h"
#include "admission.h"
#include "auth.h"
#include "client.h"
#include "conn_state.h"
#include "forward.h"
#include "http.h"
#include "intercept.h"
#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "sleeper.h"
#include "tls.h"
#include "tunnel.h"
#include "util.h"

#define SLEEP_AFTER_MS 1000 /* idle this long: folded into a sleeper (sleeper.h) */
/* With more unfolded connections than this on a worker, an idle connection is folded after
 * SLEEP_SOON_MS: a second of thousands of clients' state (4 KB each) would pile up and, once
 * freed, leave holes in the heap that malloc cannot return. Not at once: a busy client sends again
 * within milliseconds, and a fold and wake per request cost 3.3 epoll_ctl per request at 1,000
 * connections. What stays unfolded is bounded by the request rate times SLEEP_SOON_MS. */
#define FOLD_SOON_ABOVE 256
#define SLEEP_SOON_MS 100

struct conn {
    struct conn_home *home;
    struct worker *worker;
    struct config *config;
    struct limiter *limiter;
    struct conn *prev, *next;
    enum conn_state state;
    char client_text[64];
    char client_ip[64]; /* client_text without the port: the limiter's "client" key */
    struct sockaddr_storage client_addr;
    struct client client;
    struct http_parser parser;
    struct admission admission;
    struct forward forward;
    struct event *timer; /* idle and header deadline */
    struct event *kick;  /* runs process_input from the loop, e.g. after curl took body bytes */
    struct auth_pending *auth_pending; /* WAIT_AUTH: the hash being computed */
    struct intercept *intercept; /* allocated when a tunnel is opened: most never are */
    uint64_t idle_since_ms; /* IDLE: since when */
    uint64_t start_ms;      /* the request's first byte */
    char user[256];         /* authenticated proxy user, "-" when none */
    int has_client_slot;    /* holds an access.max_connections_per_client slot */
    int logged;             /* this request's access-log line is written */
    int client_eof;         /* the client half-closed after a whole request */
    const char *reason;     /* while an own reply is logged: its body */
    size_t reason_len;
};

static void process_input(struct conn *c);
static void conn_release(struct conn *c, int keep_socket);
void conn_free(struct conn *c) { conn_release(c, 0); }
static int conn_sleep(struct conn *c, uint64_t timeout_ms);
static void close_after_flush(struct conn *c);
static void log_request(struct conn *c);
static void on_auth_done(void *arg, int valid, const char *user);
static void handle_authorized_head(struct conn *c);

/* ---- the state machine ------------------------------------------------------------------------ */

/* 1 when the move is allowed; else the connection is closed (a bug: it should never happen) and
 * the caller must return at once. */
static int conn_set_state(struct conn *c, enum conn_state next)
{
    if (!conn_state_allowed(c->state, next)) {
        log_error("conn %s: refused state change %s -> %s; closing the connection",
                  c->client_text, conn_state_name(c->state), conn_state_name(next));
#ifdef RLPROXY_STRICT_STATES
        abort();
#endif
        if (c->state != CONN_CLOSING)
            close_after_flush(c);
        return 0;
    }
    log_debug("conn %s: %s -> %s", c->client_text, conn_state_name(c->state),
              conn_state_name(next));
    c->state = next;
    return 1;
}

static void arm_timer(struct conn *c, uint64_t ms)
{
    struct timeval tv;
    util_ms_to_timeval(ms, &tv);
    evtimer_add(c->timer, &tv);
}

static void send_error(struct conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->state == CONN_READ_HEAD) {
        send_error(c, 408, "request head not received within %" PRIu64 " ms",
                   c->config->client_header_timeout_ms);
        return;
    }
    if (c->state == CONN_IDLE) { /* fold it, or wait out the rest of its timeout */
        uint64_t idle = util_now_ms() - c->idle_since_ms;
        uint64_t limit = c->config->client_idle_timeout_ms;
        if (idle < limit) {
            if (!conn_sleep(c, limit - idle))
                arm_timer(c, limit - idle);
            return;
        }
        conn_free(c); /* idle keep-alive expired */
    }
}

static void wait_for_request(struct conn *c)
{
    c->idle_since_ms = util_now_ms();
    uint64_t limit = c->config->client_idle_timeout_ms;
    uint64_t fold = worker_conn_count(c->worker) - sleepers_count(c->home->sleepers) >
                            FOLD_SOON_ABOVE ? SLEEP_SOON_MS : SLEEP_AFTER_MS;
    arm_timer(c, limit < fold ? limit : fold);
    client_set_timeouts(&c->client, 0, c->config->client_body_timeout_ms);
}

/* ---- closing ---------------------------------------------------------------------------------- */

/* Frees c. keep_socket: the client's socket lives on in a sleeper, which takes over its
 * access.max_connections_per_client slot and its place in the worker's count. */
static void conn_release(struct conn *c, int keep_socket)
{
    struct worker *w = c->worker;
    if (!c->logged && c->parser.req.method_len > 0 && c->state > CONN_READ_HEAD &&
        c->state != CONN_CLOSING) { /* a request that was read whole and not answered */
        c->forward.status = c->forward.head_sent ? c->forward.status : 499; /* the client left */
        log_request(c);
    }
    auth_cancel(c->auth_pending);
    admission_release(&c->admission);
    free(c->intercept);
    if (c->has_client_slot && !keep_socket)
        access_client_slot_give(worker_process(w)->client_slots,
                                (const struct sockaddr *)&c->client_addr);
    limiter_unref(c->limiter);
    if (forward_active(&c->forward))
        worker_count_response(w, 0, c->forward.bytes_in, c->forward.bytes_out);
    forward_release(&c->forward);
    client_release(&c->client, keep_socket);
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->kick != NULL)
        event_free(c->kick);
    http_parser_free(&c->parser);
    UTIL_LIST_UNLINK(c->home->first, c);
    if (!keep_socket)
        worker_conn_removed(w);
    config_unref(c->config);
    free(c);
}

static void close_after_flush(struct conn *c)
{
    if (c->state == CONN_CLOSING || !conn_set_state(c, CONN_CLOSING))
        return;
    evtimer_del(c->timer);
    forward_abort(&c->forward);
    client_close(&c->client, c->config->client_body_timeout_ms);
}

/* ---- access log ------------------------------------------------------------------------------- */

static void log_request(struct conn *c)
{
    c->logged = 1;
    const struct forward *f = &c->forward;
    const struct limiter_decision *d = &c->admission.decision;
    uint64_t now_ms = util_now_ms();
    metrics_observe_request(c->worker, d->rule != NULL ? (int)(d->rule - c->config->rate_limits) : -1,
                            (now_ms - c->start_ms) * 1000, c->admission.wait_ms * 1000,
                            forward_upstream_us(f));
    const struct http_request *r = &c->parser.req;
    char full[1100];
    size_t target_len;
    const char *target = intercept_target_text(c->intercept, r, full, sizeof full, &target_len);
    struct accesslog_entry e = {
        .client = c->client_text,
        .user = c->user,
        .method = http_arena(r, r->method_off),
        .method_len = r->method_len,
        .target = target,
        .target_len = target_len,
        .status = f->status,
        .bytes_in = f->bytes_in,
        .bytes_out = f->bytes_out,
        .total_ms = now_ms - c->start_ms,
        .upstream_ms = f->upstream_head_ms ? f->upstream_head_ms - f->upstream_start_ms : 0,
        .wait_ms = c->admission.wait_ms,
        .attempts = c->admission.attempt,
        .origin_remaining = c->admission.origin_remaining,
        .origin_reset_ms = c->admission.origin_reset_ms,
        .reason = c->reason,
        .reason_len = c->reason_len,
    };
    accesslog_decision(d, &e.verdict, &e.rule, &e.paused);
    accesslog_write(c->config->access_format, &e);
}

/* ---- replies made by the proxy itself --------------------------------------------------------- */

/* Writes the reply and logs the request with its words as the reason. */
static void reply_and_log(struct conn *c, const struct reply *reply)
{
    struct forward *f = &c->forward;
    f->bytes_out += reply_write(client_output(&c->client), reply);
    f->status = reply->status;
    f->head_sent = 1;
    if (c->parser.req.method_len > 0) {
        c->reason = reply->body;
        c->reason_len = reply->body_len;
        log_request(c);
        c->reason = NULL;
    }
}

static void send_error(struct conn *c, int status, const char *fmt, ...)
{
    struct forward *f = &c->forward;
    if (f->head_sent) { /* too late for a status: a truncated response must look truncated */
        f->status = f->status ? f->status : status;
        log_request(c);
        worker_count_response(c->worker, 0, f->bytes_in, f->bytes_out);
        /* what arrived goes out, then the close: a short Content-Length body or a chunked body
         * without its last chunk, which clients report as incomplete */
        close_after_flush(c);
        return;
    }
    char body[700];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof body ? (size_t)n : sizeof body - 1;
    forward_abort(f); /* counted here, so conn_free does not count it as aborted */
    reply_and_log(c, &(struct reply){.status = status, .body = body, .body_len = len, .close = 1});
    worker_count_response(c->worker, status, f->bytes_in, f->bytes_out);
    log_info("%s: %d %.*s", c->client_text, status, (int)len, body);
    close_after_flush(c);
}

static void send_overload(struct conn *c, const char *why)
{
    int status = (int)(c->config->overload_status ? c->config->overload_status : 503);
    char body[300];
    int n = snprintf(body, sizeof body, "rlproxy is overloaded: %s; retry after 1 s", why);
    reply_and_log(c, &(struct reply){.status = status, .body = body,
                                     .body_len = n > 0 ? (size_t)n : 0, .retry_after_s = 1,
                                     .close = 1});
    worker_count_response(c->worker, status, c->forward.bytes_in, c->forward.bytes_out);
    close_after_flush(c);
}

static void finish_request(struct conn *c);
static void after_head_done(struct conn *c);

/* A reply of our own after which the connection stays usable when the request was read whole
 * (429, 407): clients that are limited or challenged carry on without a new handshake. */
static void reply_keeping(struct conn *c, struct reply *reply)
{
    /* a request whose body we have not read cannot leave the connection usable */
    if (c->parser.req.method != HTTP_CONNECT)
        after_head_done(c);
    int keep = c->forward.message_done && c->parser.req.keep_alive && !worker_draining(c->worker);
    reply->close = !keep;
    reply->head_only = c->parser.req.method == HTTP_HEAD;
    reply_and_log(c, reply);
    c->forward.close_after = !keep;
    finish_request(c);
}

static void send_407(struct conn *c, int had_credentials)
{
    struct reply reply;
    struct reply_text text;
    reply_407(&reply, &text, c->config->auth_realm, had_credentials);
    reply_keeping(c, &reply);
}

/* ---- after the response ----------------------------------------------------------------------- */

static void finish_request(struct conn *c)
{
    struct forward *f = &c->forward;
    if (!c->logged)
        log_request(c);
    worker_count_response(c->worker, f->status, f->bytes_in, f->bytes_out);
    if (f->close_after || !f->message_done || c->client_eof) {
        close_after_flush(c);
        return;
    }
    if (!conn_set_state(c, CONN_IDLE))
        return;
    client_park_write(&c->client);
    /* keep-alive: the next request may already be waiting in the input buffer */
    http_parser_next(&c->parser);
    forward_reset(f);
    admission_reset(&c->admission);
    c->logged = 0;
    if (c->intercept != NULL)
        snprintf(c->user, sizeof c->user, "%s", c->intercept->user);
    else
        memcpy(c->user, "-", 2);
    wait_for_request(c);
    client_read_enable(&c->client, 1);
    event_active(c->kick, EV_TIMEOUT, 0);
}

/* ---- forward.c's callbacks -------------------------------------------------------------------- */

static void on_forward_done(void *owner) { finish_request(owner); }

static void on_forward_failed(void *owner, int status, const char *message)
{
    send_error(owner, status, "%s", message);
}

static void on_forward_want_input(void *owner)
{
    struct conn *c = owner;
    event_active(c->kick, EV_TIMEOUT, 0);
}

/* The CONNECT's upstream connection is up: the tunnel takes both sockets and the conn goes. */
static void on_forward_connected(void *owner, int fd)
{
    struct conn *c = owner;
    struct tunnel_info info;
    const struct http_target *t = &c->parser.req.target;
    snprintf(info.client, sizeof info.client, "%s", c->client_text);
    snprintf(info.target, sizeof info.target, t->host_is_ipv6 ? "[%s]:%u" : "%s:%u", t->host,
             t->port);
    info.start_ms = c->start_ms;
    info.connect_ms = util_now_ms() - c->forward.upstream_start_ms;
    info.wait_ms = c->admission.wait_ms;
    snprintf(info.user, sizeof info.user, "%s", c->user);
    info.client_addr = c->client_addr;
    const char *rule;
    accesslog_decision(&c->admission.decision, &info.verdict, &rule, &info.paused);
    snprintf(info.rule, sizeof info.rule, "%s", rule != NULL ? rule : "");
    c->has_client_slot = 0; /* the tunnel gives it back */
    info.flight = admission_take_flight(&c->admission); /* it counts while the tunnel is open */
    struct bufferevent *bev = client_take_for_tunnel(&c->client);
    struct tunnels *tunnels = c->home->tunnels;
    c->logged = 1; /* the tunnel writes the line when it ends */
    conn_free(c);
    tunnel_start(tunnels, bev, fd, &info);
}

static const struct forward_callbacks forward_callbacks = {
    .done = on_forward_done,
    .failed = on_forward_failed,
    .connected = on_forward_connected,
    .want_input = on_forward_want_input,
};

/* ---- admission.c's callbacks ------------------------------------------------------------------ */

static void on_admission_wait(void *owner, enum admission_wait what)
{
    struct conn *c = owner;
    switch (what) {
    case ADMISSION_WAIT_SLOT:
        /* still read (up to the buffer's mark, not parsed): a client that leaves is noticed and
         * its request is not sent after all */
        if (conn_set_state(c, CONN_WAIT_SLOT))
            worker_pause_accept(c->worker, "requests wait for an upstream slot (max_inflight)");
        return;
    case ADMISSION_SLOT_GRANTED:
        client_read_enable(&c->client, 1);
        return;
    case ADMISSION_WAIT_ADMIT:
        conn_set_state(c, CONN_WAIT_ADMIT);
        return;
    }
}

static void on_admission_proceed(void *owner)
{
    struct conn *c = owner;
    if (c->parser.req.method == HTTP_CONNECT) {
        if (!conn_set_state(c, CONN_TUNNEL_CONNECT))
            return;
        client_read_enable(&c->client, 0); /* bytes after the head wait for the tunnel */
        forward_connect(&c->forward, &c->parser.req, c->config);
        return;
    }
    if (!conn_set_state(c, CONN_FORWARD))
        return;
    const char *drop[3];
    admission_own_headers(&c->admission, drop);
    forward_start(&c->forward, &c->parser.req, c->config, c->intercept != NULL, drop);
    if (c->state == CONN_FORWARD) {
        after_head_done(c);
        event_active(c->kick, EV_TIMEOUT, 0); /* body bytes may be waiting in the input */
    }
}

static void on_admission_refuse(void *owner)
{
    struct conn *c = owner;
    const struct limiter_decision *d = &c->admission.decision;
    if (d->bad_request) { /* a rule's cost_header or weight_header */
        send_error(c, 400, "%s: %s", d->bad_header, d->reason);
        return;
    }
    struct reply reply;
    struct reply_text text;
    reply_429(&reply, &text, d, c->parser.req.target.host);
    reply_keeping(c, &reply);
}

static void on_admission_overload(void *owner, const char *why) { send_overload(owner, why); }

static const struct admission_callbacks admission_callbacks = {
    .wait = on_admission_wait,
    .proceed = on_admission_proceed,
    .refuse = on_admission_refuse,
    .overload = on_admission_overload,
};

/* key: header:NAME counts by the first NAME field line, as most origins read a repeated
 * credential (Go's Header.Get, Node's http for Authorization, nginx's $http_NAME). */
static const char *find_request_header(const void *request, const char *name, size_t *value_len)
{
    return http_header_find(request, name, value_len);
}

static void start_admission(struct conn *c)
{
    const struct http_request *r = &c->parser.req;
    int is_connect = r->method == HTTP_CONNECT;
    struct limiter_request lr = {
        .client = (const struct sockaddr *)&c->client_addr,
        .client_ip = c->client_ip,
        .user = c->user,
        .host = r->target.host,
        .port = r->target.port,
        .method = http_arena(r, r->method_off),
        .path = is_connect ? "" : http_arena(r, r->target.path_off),
        .path_len = is_connect ? 0 : r->target.path_len,
        .find_header = find_request_header,
        .headers = r,
    };
    admission_start(&c->admission, c->config, c->limiter, &lr, c->start_ms);
}

/* ---- the request head ------------------------------------------------------------------------- */

/* CONNECT to a host listed in tls_intercept.hosts: answer 200, then speak TLS to the client with a
 * certificate for that host and read the requests inside like any others. */
static void start_intercept(struct conn *c)
{
    const struct http_target *t = &c->parser.req.target;
    char err[300];
    SSL *ssl = tls_new_server_ssl(worker_process(c->worker)->tls, t->host, err, sizeof err);
    if (ssl == NULL) {
        send_error(c, 502, "cannot intercept %s: %s", t->host, err);
        return;
    }
    if (client_start_tls(&c->client, ssl) != 0) {
        send_error(c, 502, "cannot intercept %s: out of memory", t->host);
        return;
    }
    c->intercept = intercept_new(t->host, t->port, c->user);
    if (c->intercept == NULL) {
        conn_free(c); /* the 200 is queued but TLS cannot be spoken without it */
        return;
    }
    c->forward.status = 200;
    log_request(c);
    worker_count_response(c->worker, 200, 0, 0);
    http_parser_next(&c->parser);
    forward_reset(&c->forward);
    c->logged = 0;
    if (!conn_set_state(c, CONN_IDLE))
        return;
    wait_for_request(c);
}

static void handle_head(struct conn *c)
{
    const struct http_request *r = &c->parser.req;
    evtimer_del(c->timer);
    worker_count_request(c->worker);
    if (c->config != worker_config(c->worker)) { /* reloaded: this request follows the new one */
        config_unref(c->config);
        c->config = config_ref(worker_config(c->worker));
        limiter_unref(c->limiter);
        c->limiter = limiter_ref(worker_limiter(c->worker));
    }
    char why[300];
    int status = access_check_client(c->config, (const struct sockaddr *)&c->client_addr, r, why,
                                     sizeof why);
    if (status == 0 && c->intercept != NULL)
        status = intercept_adopt(c->intercept, &c->parser.req, why, sizeof why);
    if (status != 0) {
        send_error(c, status, "%s", why);
        return;
    }
    if (auth_required(c->config) && c->intercept == NULL) {
        size_t len = 0;
        const char *creds = http_header_find(r, "Proxy-Authorization", &len);
        if (creds == NULL) {
            send_407(c, 0);
            return;
        }
        switch (auth_check_start(worker_process(c->worker)->auth_pool, c->config, worker_post_call,
                                 c->worker, creds, len, c->user, sizeof c->user, on_auth_done, c,
                                 &c->auth_pending)) {
        case AUTH_VALID:
            break;
        case AUTH_INVALID:
            send_407(c, 1);
            return;
        case AUTH_PENDING:
            conn_set_state(c, CONN_WAIT_AUTH); /* on_auth_done carries on */
            return;
        case AUTH_BUSY:
            send_overload(c, "too many password checks waiting");
            return;
        }
    }
    handle_authorized_head(c);
}

static void on_auth_done(void *arg, int valid, const char *user)
{
    struct conn *c = arg;
    c->auth_pending = NULL;
    if (!conn_set_state(c, CONN_READ_HEAD)) /* where the head's checks run, as if never paused */
        return;
    if (!valid) {
        send_407(c, 1);
        return;
    }
    snprintf(c->user, sizeof c->user, "%s", user);
    handle_authorized_head(c); /* proceeding reads on past the head, as after any other wait */
}

/* The rest of a request head's checks, once the client is who it says (or need not say). */
static void handle_authorized_head(struct conn *c)
{
    const struct http_request *r = &c->parser.req;
    char why[300];
    int status = access_check_destination(c->config, r, why, sizeof why);
    if (status != 0) {
        send_error(c, status, "%s", why);
        return;
    }
    if (r->method == HTTP_CONNECT && tls_should_intercept(c->config, r->target.host)) {
        start_intercept(c); /* no admission for the tunnel: each request inside is admitted */
        return;
    }
    if (r->method != HTTP_CONNECT && r->target.scheme == HTTP_SCHEME_NONE) {
        access_explain_origin_form(client_fd(&c->client), why, sizeof why);
        send_error(c, 400, "%s", why);
        return;
    }
    start_admission(c);
}

/* ---- input ------------------------------------------------------------------------------------ */

static int on_request_body(void *arg, const char *data, size_t len)
{
    struct conn *c = arg;
    return forward_body_add(&c->forward, data, len);
}

static void message_done(struct conn *c)
{
    c->forward.message_done = 1;
    /* the client now waits for the answer: only a write that never drains times out */
    client_set_timeouts(&c->client, 0, c->config->client_body_timeout_ms);
}

/* A body-less request completes with no further input: zero bytes let the parser say so. */
static void after_head_done(struct conn *c)
{
    if (c->forward.message_done)
        return;
    enum http_feed_result result;
    http_parser_feed(&c->parser, "", 0, &result);
    if (result == HTTP_FEED_DONE)
        message_done(c);
}

static int wants_input(const struct conn *c)
{
    if (c->state == CONN_IDLE || c->state == CONN_READ_HEAD)
        return 1;
    return c->state == CONN_FORWARD && !c->forward.message_done &&
           forward_body_buffered(&c->forward) < c->config->buffer_size;
}

static void process_input(struct conn *c)
{
    struct evbuffer *in = client_input(&c->client);
    while (wants_input(c) && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec vec;
        if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1)
            break;
        size_t len = vec.iov_len;
        if (c->state == CONN_FORWARD) { /* feed no more body than fits under the mark */
            size_t room = c->config->buffer_size - forward_body_buffered(&c->forward);
            if (len > room)
                len = room;
        }
        enum http_feed_result result;
        size_t used = http_parser_feed(&c->parser, vec.iov_base, len, &result);
        evbuffer_drain(in, used);
        if (c->state == CONN_IDLE && c->parser.started) { /* the head's deadline starts */
            if (!conn_set_state(c, CONN_READ_HEAD))
                return;
            c->start_ms = util_now_ms();
            arm_timer(c, c->config->client_header_timeout_ms);
        }
        if (result == HTTP_FEED_ERROR) {
            if (c->state == CONN_FORWARD && c->forward.head_sent) {
                send_error(c, c->parser.error_status, "%s", c->parser.error_reason);
                return;
            }
            send_error(c, c->parser.error_status, "malformed request: %s",
                       c->parser.error_reason ? c->parser.error_reason : "parse error");
            return;
        }
        if (result == HTTP_FEED_HEAD) {
            http_parser_resume(&c->parser);
            handle_head(c);
            if (c->state != CONN_FORWARD)
                return; /* held, tunnel, error reply or closing: no more parsing here */
            after_head_done(c);
            if (c->forward.message_done)
                break;
            continue;
        }
        if (result == HTTP_FEED_DONE) {
            message_done(c);
            break;
        }
    }
    if (c->state == CONN_FORWARD)
        forward_body_more(&c->forward);
    client_read_drained(&c->client);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->state == CONN_IDLE || c->state == CONN_READ_HEAD || c->state == CONN_FORWARD)
        process_input(c);
}

/* ---- client.c's callbacks --------------------------------------------------------------------- */

static void on_client_readable(void *owner) { process_input(owner); }

static void on_client_drained(void *owner)
{
    struct conn *c = owner;
    forward_client_drained(&c->forward);
}

static void on_client_event(void *owner, short what)
{
    struct conn *c = owner;
    log_debug("conn %s: event 0x%x in %s", c->client_text, (unsigned)what,
              conn_state_name(c->state));
    if (what & BEV_EVENT_TIMEOUT) {
        if (c->state == CONN_FORWARD && !c->forward.message_done && !c->forward.head_sent)
            send_error(c, 408, "request body stalled for %" PRIu64 " ms",
                       c->config->client_body_timeout_ms);
        else
            conn_free(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING) && c->state == CONN_FORWARD &&
        c->forward.message_done) {
        /* the client half-closed after a whole request: answer it, then close */
        c->client_eof = 1;
        client_read_enable(&c->client, 0);
        return;
    }
    conn_free(c);
}

static void on_client_closed(void *owner) { conn_free(owner); }

static const struct client_callbacks client_callbacks = {
    .readable = on_client_readable,
    .drained = on_client_drained,
    .event = on_client_event,
    .closed = on_client_closed,
};

/* ---- opening, folding, accepting -------------------------------------------------------------- */

/* Folds an idle connection into a sleeper; 0 when it has state a sleeper cannot hold. */
static int conn_sleep(struct conn *c, uint64_t timeout_ms)
{
    /* an intercepted connection's TLS session lives in its bufferevent */
    if (c->state != CONN_IDLE || c->parser.started || c->intercept != NULL ||
        !client_is_quiet(&c->client) || c->forward.close_after || c->client_eof ||
        worker_draining(c->worker))
        return 0;
    struct sockaddr_storage addr;
    socklen_t addr_len = c->client_addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                               : sizeof(struct sockaddr_in);
    memcpy(&addr, &c->client_addr, sizeof addr);
    if (!sleepers_add(c->home->sleepers, client_fd(&c->client), (struct sockaddr *)&addr,
                      addr_len, c->has_client_slot, timeout_ms))
        return 0;
    struct worker *w = c->worker;
    conn_release(c, 1);
    worker_memory_freed(w);
    return 1;
}

struct conn *conn_open(struct conn_home *home, evutil_socket_t fd, const struct sockaddr *addr,
                       socklen_t addr_len, int has_client_slot)
{
    struct worker *w = home->worker;
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->home = home;
    c->worker = w;
    c->config = config_ref(worker_config(w));
    c->limiter = limiter_ref(worker_limiter(w));
    snprintf(c->user, sizeof c->user, "-");
    memcpy(&c->client_addr, addr, addr_len < sizeof c->client_addr ? addr_len
                                                                    : sizeof c->client_addr);
    util_format_sockaddr(addr, c->client_text, sizeof c->client_text);
    util_address_without_port(c->client_text, c->client_ip, sizeof c->client_ip);
    struct event_base *base = worker_base(w);
    int failed = client_init(&c->client, base, fd, c->config->buffer_size, &client_callbacks, c);
    c->timer = evtimer_new(base, on_timer, c);
    c->kick = event_new(base, -1, 0, on_kick, c);
    failed |= forward_init(&c->forward, w, &c->client, &c->admission, c->client_text,
                           &forward_callbacks, c);
    admission_init(&c->admission, worker_admission(w), &admission_callbacks, c);
    http_parser_init(&c->parser, c->config->max_request_line, c->config->max_header_size,
                     on_request_body, c);
    UTIL_LIST_PUSH(home->first, c);
    if (failed || c->timer == NULL || c->kick == NULL) {
        conn_release(c, 1); /* the caller keeps fd and the slot */
        return NULL;
    }
    c->has_client_slot = has_client_slot;
    client_read_enable(&c->client, 1);
    wait_for_request(c);
    return c;
}

void conn_drain(struct conn *c)
{
    if (c->state == CONN_IDLE && evbuffer_get_length(client_input(&c->client)) == 0)
        conn_free(c);
    else
        c->forward.close_after = 1;
}

struct conn *conn_next(const struct conn *c) { return c->next; }

void conn_refuse_over_cap(struct conn *c)
{
    /* a client over its connection cap cannot crowd out the others */
    static const char body[] =
        "too many connections from this client (access.max_connections_per_client)";
    reply_write(client_output(&c->client),
                &(struct reply){.status = 429, .body = body, .body_len = sizeof body - 1,
                                .retry_after_s = 1, .close = 1});
    log_info("%s: over access.max_connections_per_client (%u)", c->client_text,
             c->config->max_connections_per_client);
    close_after_flush(c);
}
