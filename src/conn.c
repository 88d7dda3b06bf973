/* conn.c — the client side of the proxy; see conn.h for the state machine. */
#include "conn.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "auth.h"
#include "http.h"
#include "limiter.h"
#include "pool.h"
#include "log.h"
#include "metrics.h"
#include "retry.h"
#include "shared.h"
#include "tls.h"
#include "tunnel.h"
#include "upstream.h"
#include "util.h"
#include "worker.h"

#define LINGER_MS 2000 /* after an error reply: keep reading (and discarding) this long */
#define SLEEP_AFTER_MS 1000 /* idle this long: folded into a sleeper (see "sleeping connections") */
#define SLEEPER_BLOCK_BYTES (64 * 1024) /* sleepers are pooled in mmap'd blocks of this size */
/* With more unfolded connections than this on a worker, a keep-alive connection is folded as soon
 * as its response is out (see "sleeping connections"). */
#define FOLD_AT_ONCE_ABOVE 256

/* Retries may add at most retry.budget to the requests of the last 10 s, over all workers. */
static struct retry_budget retry_budget;

struct intercept {
    char host[256];
    unsigned port;
    char user[256];
};

enum conn_state {
    CONN_READ_HEAD,
    CONN_WAIT_AUTH, /* the password hash runs on auth.c's threads */
    CONN_WAIT_SLOT,
    CONN_WAIT_ADMIT,
    CONN_FORWARD,
    CONN_TUNNEL_CONNECT,
    CONN_CLOSING,
};

static const char *const state_names[] = {"READ_HEAD", "WAIT_AUTH",      "WAIT_SLOT", "WAIT_ADMIT",
                                           "FORWARD",   "TUNNEL_CONNECT", "CLOSING"};

struct conn {
    struct worker *worker;
    struct config *config;
    struct limiter *limiter;
    struct bufferevent *bev;
    struct conn *prev, *next;
    struct conn *slot_prev, *slot_next; /* WAIT_SLOT queue */
    enum conn_state state;
    char client_text[64];
    char client_ip[64]; /* client_text without the port: the limiter's "client" key */
    struct sockaddr_storage client_addr;
    struct http_parser parser;
    struct event *timer; /* idle / header deadline / linger */
    struct event *kick;  /* runs process_input from the loop, e.g. after curl drained the body */
    struct event *flush; /* writes the output directly while write_parked (see client_out) */
    int write_parked;    /* EV_WRITE off: the output was empty when the last response ended */
    struct event *read_event; /* plain sockets: the conn reads the client itself (client_read_*) */
    int read_wanted;          /* reading is on, as bufferevent_enable(EV_READ) would have it */
    int read_full;            /* ... but the input reached backpressure.buffer */
    int read_added;           /* read_event is added */
    uint64_t read_timeout_ms; /* 0: none (see set_client_timeouts) */
    int direct_write_ok; /* c->bev is the socket's own bufferevent (not a TLS filter) */
    int header_deadline_armed;
    int timeouts_reading;    /* what set_client_timeouts last gave the bufferevent: -1 nothing */
    uint64_t timeouts_ms;
    uint64_t idle_since_ms; /* READ_HEAD: when the connection last had nothing to do */

    /* the request in flight */
    struct limiter_decision decision;
    struct limiter_hold *hold; /* WAIT_ADMIT: our reserved slot */
    struct shared_request *shared_request; /* WAIT_ADMIT: Redis is deciding */
    struct auth_pending *auth_pending;     /* WAIT_AUTH: the hash being computed */
    char shared_member[48];  /* WAIT_ADMIT: our reservation in Redis, given back if we go away */
    char *shared_key;        /* its Redis key (allocated only for such a hold) */
    uint64_t wait_ms;
    char user[256];         /* authenticated proxy user, "-" when none */
    int has_client_slot;    /* holds an access.max_connections_per_client slot */
    int logged;             /* this request's access-log line is written */
    /* an opened (intercepted) CONNECT tunnel: requests inside are for https://host:port */
    struct intercept *intercept; /* allocated when the tunnel is opened: most connections never are */
    unsigned attempt;       /* 1 for the first try */
    int64_t retry_delay_ms; /* decided in on_upstream_status */
    struct evbuffer *spool; /* body bytes handed to curl, kept for a replay up to retry.max_body */
    uint64_t spooled;
    int spool_lost;         /* the body outgrew the spool: no replay */
    int continue_sent;
    struct upstream *upstream;
    struct evbuffer *body; /* request body bytes not yet taken by curl */
    int message_done;
    int head_sent;
    int upstream_head_invalid; /* the origin's head cannot be forwarded: 502 when curl is done */
    enum http_framing framing;
    int close_after;
    int client_eof;
    int recv_paused, send_paused;
    int status;
    uint64_t start_ms, upstream_start_ms, upstream_head_ms, upstream_done_ms;
    uint64_t bytes_in, bytes_out;
};

static void process_input(struct conn *c);

/* ---- client output ---------------------------------------------------------------------------
 * A socket bufferevent with EV_WRITE enabled registers EPOLLOUT as soon as bytes are added and
 * removes it once they are written, in the next loop pass: two epoll_ctl and one more wake-up per
 * response. Between responses the write side is parked instead (EV_WRITE disabled, output empty);
 * bytes added then are written straight to the socket by a flush event later in the same pass,
 * and only what the socket does not take goes back to libevent (EV_WRITE enabled: watermarks,
 * write timeout and on_client_write as before). A keep-alive response that fits in the socket
 * buffer then costs one writev and no epoll_ctl. Plain sockets only: a TLS filter writes itself. */
static struct evbuffer *client_out(struct conn *c)
{
    if (c->write_parked)
        event_active(c->flush, EV_TIMEOUT, 0); /* no-op when already active */
    return bufferevent_get_output(c->bev);
}

static void unpark_write(struct conn *c)
{
    if (!c->write_parked)
        return;
    c->write_parked = 0;
    bufferevent_enable(c->bev, EV_WRITE);
}

/* The bufferevent keeps its output's drain side frozen so that only it writes; thawed for the
 * call, as bufferevent_writecb does. An error is left for the bufferevent to report. */
static void write_directly(struct conn *c, struct evbuffer *out)
{
    evbuffer_unfreeze(out, 1);
    evbuffer_write(out, bufferevent_getfd(c->bev));
    evbuffer_freeze(out, 1);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (!c->write_parked || c->bev == NULL)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) > 0)
        write_directly(c, out);
    if (evbuffer_get_length(out) > 0) { /* the socket is full (or failed): libevent takes over */
        unpark_write(c);
        return;
    }
    if (c->recv_paused && c->upstream != NULL) { /* what on_client_write does after a drain */
        c->recv_paused = 0;
        upstream_set_pause(c->upstream, 0, c->send_paused);
    }
}

/* At the end of a keep-alive response: write what is left now, and park if it all went. */
static void park_write(struct conn *c)
{
    if (c->write_parked || !c->direct_write_ok)
        return; /* parked: the flush event is pending and writes */
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) > 0)
        write_directly(c, out);
    if (evbuffer_get_length(out) == 0) {
        bufferevent_disable(c->bev, EV_WRITE);
        c->write_parked = 1;
    }
}
/* ---- client input ----------------------------------------------------------------------------
 * A socket bufferevent asks the kernel how much is readable (ioctl FIONREAD) before every read:
 * one system call per request on top of the read. On a plain socket the conn reads into the
 * bufferevent's input buffer itself, from an event of its own, with the same high-water mark
 * (backpressure.buffer) and read timeout; the bufferevent never reads. Where libevent must read
 * (under a TLS filter, in a tunnel, while lingering after an error) client_read_stop hands
 * reading back to the bufferevent. */
static void on_client_event(struct bufferevent *bev, short what, void *arg);
static void process_input(struct conn *c);

static void client_read_update(struct conn *c)
{
    int on = c->read_wanted && !c->read_full;
    if (on) {
        struct timeval tv;
        util_ms_to_timeval(c->read_timeout_ms, &tv);
        event_add(c->read_event, c->read_timeout_ms > 0 ? &tv : NULL);
    } else if (c->read_added) {
        event_del(c->read_event);
    }
    c->read_added = on;
}

static void client_read_enable(struct conn *c, int on)
{
    if (c->read_event == NULL) {
        if (on)
            bufferevent_enable(c->bev, EV_READ);
        else
            bufferevent_disable(c->bev, EV_READ);
        return;
    }
    if (c->read_wanted == on && (!on || c->read_added || c->read_full))
        return;
    c->read_wanted = on;
    client_read_update(c);
}

/* From here on the bufferevent reads (with reading as it was). */
static void client_read_stop(struct conn *c)
{
    if (c->read_event == NULL)
        return;
    int on = c->read_wanted;
    event_free(c->read_event);
    c->read_event = NULL;
    c->read_added = 0;
    if (on)
        bufferevent_enable(c->bev, EV_READ);
}

/* Input was consumed: below the mark, reading resumes. */
static void client_read_drained(struct conn *c)
{
    if (c->read_event != NULL && c->read_full &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) < c->config->buffer_size) {
        c->read_full = 0;
        client_read_update(c);
    }
}

#define CLIENT_READ_MAX 16384 /* per read, as libevent's bufferevent reads */

static void on_read_event(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (what & EV_TIMEOUT) {
        on_client_event(c->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, c);
        return;
    }
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t have = evbuffer_get_length(in);
    if (have >= c->config->buffer_size) {
        c->read_full = 1;
        client_read_update(c);
        return;
    }
    size_t room = c->config->buffer_size - have;
    if (room > CLIENT_READ_MAX)
        room = CLIENT_READ_MAX;
    struct evbuffer_iovec vec;
    evbuffer_unfreeze(in, 0); /* the bufferevent keeps its input's end for itself */
    ssize_t n = -1;
    int saved = 0;
    if (evbuffer_reserve_space(in, (ev_ssize_t)room, &vec, 1) == 1) {
        n = recv(fd, vec.iov_base, vec.iov_len < room ? vec.iov_len : room, 0);
        saved = errno;
        if (n > 0) {
            vec.iov_len = (size_t)n;
            evbuffer_commit_space(in, &vec, 1);
        }
    }
    evbuffer_freeze(in, 0);
    if (n == 0) {
        on_client_event(c->bev, BEV_EVENT_READING | BEV_EVENT_EOF, c);
        return;
    }
    if (n < 0) {
        if (saved == EAGAIN || saved == EWOULDBLOCK || saved == EINTR)
            return;
        on_client_event(c->bev, BEV_EVENT_READING | BEV_EVENT_ERROR, c);
        return;
    }
    process_input(c);
}

static void log_request(struct conn *c);
static void on_client_read(struct bufferevent *bev, void *arg);
static void on_client_write(struct bufferevent *bev, void *arg);
static void on_client_event(struct bufferevent *bev, short what, void *arg);
static void send_error(struct conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_set_state(struct conn *c, enum conn_state next)
{
    log_debug("conn %s: %s -> %s", c->client_text, state_names[c->state], state_names[next]);
    c->state = next;
}

struct conn *conn_next(struct conn *c) { return c->next; }

/* ---- timers ----------------------------------------------------------------------------------- */

static void arm_timer(struct conn *c, uint64_t ms)
{
    struct timeval tv;
    util_ms_to_timeval(ms, &tv);
    evtimer_add(c->timer, &tv);
}

static void proceed(struct conn *c);
static void admit(struct conn *c);
static int conn_sleep(struct conn *c, uint64_t timeout_ms);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->state == CONN_WAIT_ADMIT) {
        if (c->shared_member[0] != '\0') { /* our slot reserved in Redis has come */
            c->shared_member[0] = '\0';
            c->wait_ms = util_now_ms() - c->start_ms;
            proceed(c);
            return;
        }
        if (c->hold == NULL) { /* a retry's backoff or an origin's pause is over: ask again */
            struct limiter_decision pause = c->decision;
            admit(c);
            if (pause.paused && (c->state == CONN_FORWARD || c->state == CONN_TUNNEL_CONNECT) &&
                (c->decision.verdict == LIMITER_ADMIT || c->decision.verdict == LIMITER_UNLIMITED))
                c->decision = pause; /* the log shows what held it: delay:origin-pause */
            return;
        }
        uint64_t more = limiter_hold_ready(c->hold, util_now_us());
        if (more > 0) { /* the request our slot follows went late: keep the gap whole */
            struct timeval tv = {(time_t)(more / 1000000), (suseconds_t)(more % 1000000)};
            evtimer_add(c->timer, &tv);
            return;
        }
        limiter_hold_done(c->hold, util_now_us()); /* the reserved slot is ours now */
        c->hold = NULL;
        c->wait_ms = util_now_ms() - c->start_ms;
        proceed(c);
        return;
    }
    if (c->state == CONN_READ_HEAD && c->parser.started) {
        send_error(c, 408, "request head not received within %" PRIu64 " ms",
                   c->config->client_header_timeout_ms);
        return;
    }
    if (c->state == CONN_READ_HEAD) { /* idle: fold it, or wait out the rest of its timeout */
        uint64_t idle = util_now_ms() - c->idle_since_ms;
        uint64_t limit = c->config->client_idle_timeout_ms;
        if (idle < limit) {
            if (!conn_sleep(c, limit - idle))
                arm_timer(c, limit - idle);
            return;
        }
    }
    conn_free(c); /* idle keep-alive expired, or the linger after an error reply ended */
}

/* The bufferevent's own timeouts: a write that does not drain for client_body_timeout ends the
 * connection at any time (while idle the output is empty, so this costs nothing then); reading
 * times out only while a request body is coming. Each change re-adds the bufferevent's events,
 * so they are set only when they differ: a GET on a keep-alive connection changes nothing. */
static void set_client_timeouts(struct conn *c, int body_reading)
{
    uint64_t ms = c->config->client_body_timeout_ms;
    if (c->timeouts_reading == body_reading && c->timeouts_ms == ms)
        return;
    struct timeval tv;
    util_ms_to_timeval(ms, &tv);
    bufferevent_set_timeouts(c->bev, body_reading ? &tv : NULL, &tv);
    c->timeouts_reading = body_reading;
    c->timeouts_ms = ms;
    if (c->read_event != NULL) {
        c->read_timeout_ms = body_reading ? ms : 0;
        if (c->read_added)
            client_read_update(c); /* re-added with the new timeout */
    }
}

static void wait_for_request(struct conn *c)
{
    c->header_deadline_armed = 0;
    c->idle_since_ms = util_now_ms();
    uint64_t limit = c->config->client_idle_timeout_ms;
    arm_timer(c, limit < SLEEP_AFTER_MS ? limit : SLEEP_AFTER_MS);
    set_client_timeouts(c, 0);
}

/* ---- closing ---------------------------------------------------------------------------------- */

static void slot_queue_remove(struct conn *c)
{
    struct worker *w = c->worker;
    if (c->slot_prev != NULL)
        c->slot_prev->slot_next = c->slot_next;
    else
        w->slot_first = c->slot_next;
    if (c->slot_next != NULL)
        c->slot_next->slot_prev = c->slot_prev;
    else
        w->slot_last = c->slot_prev;
    c->slot_prev = c->slot_next = NULL;
    w->slot_waiting--;
}

/* Frees c. keep_socket: the client's socket lives on in a sleeper, which takes over its
 * access.max_connections_per_client slot and its place in the worker's count. */
static void conn_release(struct conn *c, int keep_socket)
{
    if (!c->logged && c->parser.req.method_len > 0 &&
        (c->state == CONN_FORWARD || c->state == CONN_WAIT_ADMIT || c->state == CONN_WAIT_SLOT ||
         c->state == CONN_WAIT_AUTH ||
         c->state == CONN_TUNNEL_CONNECT)) {
        c->status = c->head_sent ? c->status : 499; /* the client went away first */
        log_request(c);
    }
    shared_cancel(c->shared_request);
    auth_cancel(c->auth_pending);
    if (c->shared_member[0] != '\0' && c->shared_key != NULL)
        shared_release(c->worker->shared, c->shared_key, c->shared_member);
    free(c->shared_key);
    free(c->intercept);
    if (c->has_client_slot && !keep_socket)
        access_client_slot_give((const struct sockaddr *)&c->client_addr);
    if (c->state == CONN_WAIT_SLOT)
        slot_queue_remove(c);
    if (c->hold != NULL) /* gone while held: the slot goes back to the window */
        limiter_hold_cancel(c->hold);
    limiter_unref(c->limiter);
    if (c->upstream != NULL) {
        upstream_abort(c->upstream);
        worker_count_response(c->worker, 0, c->bytes_in, c->bytes_out);
        worker_slot_freed(c->worker);
    }
    if (c->read_event != NULL)
        event_free(c->read_event);
    if (c->bev != NULL) {
        if (keep_socket)
            bufferevent_setfd(c->bev, -1); /* so that freeing it does not close the socket */
        bufferevent_free(c->bev);
    }
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->kick != NULL)
        event_free(c->kick);
    if (c->flush != NULL)
        event_free(c->flush);
    if (c->body != NULL)
        evbuffer_free(c->body);
    if (c->spool != NULL)
        evbuffer_free(c->spool);
    http_parser_free(&c->parser);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->worker->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (!keep_socket)
        worker_conn_removed(c->worker);
    config_unref(c->config);
    free(c);
}

void conn_free(struct conn *c) { conn_release(c, 0); }

static void on_linger_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void on_closing_event(struct bufferevent *bev, short what, void *arg)
{
    if (what == BEV_EVENT_CONNECTED)
        return; /* an intercepted tunnel's handshake completing after the reply was queued */
    conn_free(arg);
}

/* Once the last byte is out: half-close and read what the client still sends for a moment, so our
 * close does not turn into a RST that destroys the reply before the client reads it. */
static void on_closing_drained(struct bufferevent *bev, void *arg);

static void on_underlying_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                                  void *arg)
{
    struct conn *c = arg;
    if (evbuffer_get_length(buf) == 0) {
        evbuffer_remove_cb(buf, on_underlying_drained, arg);
        on_closing_drained(c->bev, c);
    }
}

static void on_closing_drained(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return;
    struct bufferevent *under = bufferevent_get_underlying(bev);
    if (under != NULL) {
        /* TLS: the ciphertext is still in the socket bufferevent under the filter */
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        if (ssl != NULL && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
            SSL_shutdown(ssl); /* close_notify */
        struct evbuffer *out = bufferevent_get_output(under);
        if (evbuffer_get_length(out) > 0) {
            evbuffer_remove_cb(out, on_underlying_drained, c);
            evbuffer_add_cb(out, on_underlying_drained, c);
            return;
        }
    }
    shutdown(bufferevent_getfd(bev), SHUT_WR);
    bufferevent_setcb(bev, on_linger_read, NULL, on_closing_event, c);
    bufferevent_enable(bev, EV_READ);
    arm_timer(c, LINGER_MS);
}

static void close_after_flush(struct conn *c)
{
    unpark_write(c); /* on_closing_drained needs libevent's write callback */
    conn_set_state(c, CONN_CLOSING);
    if (c->upstream != NULL) {
        upstream_abort(c->upstream);
        c->upstream = NULL;
        worker_slot_freed(c->worker);
    }
    client_read_enable(c, 0);
    client_read_stop(c); /* the linger reads through the bufferevent */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_setcb(c->bev, NULL, on_closing_drained, on_closing_event, c);
    set_client_timeouts(c, 0);
    arm_timer(c, c->config->client_body_timeout_ms + LINGER_MS);
    on_closing_drained(c->bev, c);
}

/* ---- access log ------------------------------------------------------------------------------- */

static void format_time(char *buf, size_t len)
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t used = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + used, len - used, ".%03ldZ", now.tv_nsec / 1000000);
}

/* Copies s for a log line, replacing quotes, backslashes and control bytes so a hostile target
 * cannot forge log lines or break the JSON. */
static void sanitize(char *out, size_t out_len, const char *s, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 1 < out_len; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[j++] = (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\') ? '?' : (char)ch;
    }
    out[j] = '\0';
}

/* "none", or "admit:RULE", "delay:RULE", "reject:RULE" */
static void format_decision(const struct limiter_decision *d, char *buf, size_t len)
{
    static const char *const verdicts[] = {"none", "admit", "delay", "reject"};
    if (d->paused)
        snprintf(buf, len, "%s:origin-pause", verdicts[d->verdict]);
    else if (d->rule == NULL)
        snprintf(buf, len, "none");
    else
        snprintf(buf, len, "%s:%s", verdicts[d->verdict], d->rule->name);
}

static void log_request(struct conn *c)
{
    c->logged = 1;
    /* the access log's clock (ms); upstream: the last attempt, if it ran to its end */
    int rule_index = c->decision.rule ? (int)(c->decision.rule - c->config->rate_limits) : -1;
    uint64_t upstream_us = c->upstream_done_ms >= c->upstream_start_ms && c->upstream_start_ms
                               ? (c->upstream_done_ms - c->upstream_start_ms) * 1000
                               : METRICS_NOT_MEASURED;
    metrics_observe_request(c->worker, rule_index, (util_now_ms() - c->start_ms) * 1000,
                            c->wait_ms * 1000, upstream_us);
    if (!log_access_enabled())
        return;
    char decision[96];
    format_decision(&c->decision, decision, sizeof decision);
    const struct http_request *r = &c->parser.req;
    char when[40], method[40], target[1024], line[1800], user[260], user_json[270];
    format_time(when, sizeof when);
    sanitize(user, sizeof user, c->user, strlen(c->user));
    if (strcmp(c->user, "-") == 0)
        snprintf(user_json, sizeof user_json, "null");
    else
        snprintf(user_json, sizeof user_json, "\"%s\"", user);
    sanitize(method, sizeof method, http_arena(r, r->method_off), r->method_len);
    if (c->intercept != NULL && r->method != HTTP_CONNECT && r->target_len > 0 &&
        http_arena(r, r->target_off)[0] == '/') {
        char full[1100];
        int used = snprintf(full, sizeof full, "https://%s:%u%.*s", c->intercept->host,
                            c->intercept->port, (int)r->target_len, http_arena(r, r->target_off));
        sanitize(target, sizeof target, full, used > 0 ? (size_t)used : 0);
    } else {
        sanitize(target, sizeof target, http_arena(r, r->target_off), r->target_len);
    }
    uint64_t now = util_now_ms();
    uint64_t total = now - c->start_ms;
    uint64_t upstream_ms = c->upstream_head_ms ? c->upstream_head_ms - c->upstream_start_ms : 0;
    int n;
    if (c->config->access_format == ACCESS_FORMAT_JSON)
        n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"client\":\"%s\",\"user\":%s,\"method\":\"%s\","
                     "\"target\":\"%s\",\"status\":%d,\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
                     ",\"total_ms\":%" PRIu64 ",\"upstream_ms\":%" PRIu64
                     ",\"limit\":\"%s\",\"wait_ms\":%" PRIu64 ",\"attempts\":%d}",
                     when, c->client_text, user_json, method, target, c->status, c->bytes_in,
                     c->bytes_out, total, upstream_ms, decision, c->wait_ms, c->attempt);
    else
        n = snprintf(line, sizeof line,
                     "%s %s %s \"%s %s\" %d %" PRIu64 " %" PRIu64 " total=%" PRIu64
                     "ms upstream=%" PRIu64 "ms limit=%s wait=%" PRIu64 "ms attempts=%d",
                     when, c->client_text, user, method, target, c->status, c->bytes_in,
                     c->bytes_out, total, upstream_ms, decision, c->wait_ms, c->attempt);
    if (n > 0)
        log_access_line(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* ---- replies made by the proxy itself --------------------------------------------------------- */

static void send_error(struct conn *c, int status, const char *fmt, ...)
{
    if (c->head_sent) { /* too late for a status: a truncated response must look truncated */
        c->status = c->status ? c->status : status;
        log_request(c);
        worker_count_response(c->worker, 0, c->bytes_in, c->bytes_out);
        /* what arrived goes out, then the close: a short Content-Length body or a chunked body
         * without its last chunk, which clients report as incomplete */
        close_after_flush(c);
        return;
    }
    char body[700];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof body - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof body - 2)
        n = (int)sizeof body - 2;
    body[n++] = '\n';
    struct evbuffer *out = client_out(c);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: %d\r\nConnection: close\r\nVia: %s\r\n\r\n",
                        status, http_status_reason(status), n, http_via());
    evbuffer_add(out, body, (size_t)n);
    c->status = status;
    c->head_sent = 1;
    if (c->upstream != NULL) { /* counted here, so conn_free does not count it as aborted */
        upstream_abort(c->upstream);
        c->upstream = NULL;
        worker_slot_freed(c->worker);
    }
    worker_count_response(c->worker, status, c->bytes_in, c->bytes_out);
    if (c->parser.req.method_len > 0)
        log_request(c);
    log_info("%s: %d %.*s", c->client_text, status, n - 1, body);
    close_after_flush(c);
}

/* ---- upstream callbacks ----------------------------------------------------------------------- */

/* The RateLimit fields (draft-ietf-httpapi-ratelimit-headers): the policy, and what is left. */
static void format_rate_headers(const struct limiter_decision *d, uint64_t reset_us, char *buf,
                                size_t len)
{
    const struct rate_rule *rule = d->rule;
    uint64_t window_s = (rule->window_ms + 999) / 1000;
    uint64_t reset_s = (reset_us + 999999) / 1000000;
    snprintf(buf, len,
             "RateLimit-Policy: \"%s\";q=%u;w=%llu\r\nRateLimit: \"%s\";r=%u;t=%llu\r\n",
             rule->name, rule->limit, (unsigned long long)window_s, rule->name, d->remaining,
             (unsigned long long)reset_s);
}

static void on_upstream_head(void *arg, int status, const char *reason, size_t reason_len,
                             const char *headers, size_t headers_len)
{
    struct conn *c = arg;
    int close_after = c->worker->draining;
    char rate[512];
    const char *extra = NULL;
    if (c->decision.rule != NULL && c->decision.rule->headers && !c->decision.paused) {
        format_rate_headers(&c->decision, c->decision.reset_us, rate, sizeof rate);
        extra = rate;
    }
    c->framing = http_write_response_head(client_out(c), &c->parser.req, status,
                                          reason, reason_len, headers, headers_len, extra,
                                          &close_after);
    if (c->framing == HTTP_FRAME_INVALID) { /* on_upstream_body ends the transfer */
        c->upstream_head_invalid = 1;
        c->framing = HTTP_FRAME_NONE;
        return;
    }
    c->close_after = close_after;
    c->status = status;
    c->head_sent = 1;
    c->upstream_head_ms = util_now_ms();
}

static enum upstream_body_result on_upstream_body(void *arg, const char *data, size_t len)
{
    struct conn *c = arg;
    if (c->state != CONN_FORWARD || c->upstream_head_invalid)
        return UPSTREAM_BODY_ABORT;
    if (c->framing == HTTP_FRAME_NONE)
        return UPSTREAM_BODY_OK; /* HEAD/204/304 carry no body whatever the origin sends */
    struct evbuffer *out = client_out(c);
    if (evbuffer_get_length(out) >= c->config->buffer_size) {
        c->recv_paused = 1; /* resumed by on_client_write once the client drained half */
        return UPSTREAM_BODY_PAUSE;
    }
    if (c->framing == HTTP_FRAME_CHUNKED)
        evbuffer_add_printf(out, "%zx\r\n", len);
    evbuffer_add(out, data, len);
    if (c->framing == HTTP_FRAME_CHUNKED)
        evbuffer_add(out, "\r\n", 2);
    c->bytes_out += len;
    return UPSTREAM_BODY_OK;
}

static size_t on_upstream_read(void *arg, char *buf, size_t len)
{
    struct conn *c = arg;
    size_t before = evbuffer_get_length(c->body);
    int n = evbuffer_remove(c->body, buf, len);
    if (n > 0 && !c->spool_lost) {
        if (c->spooled + (uint64_t)n <= c->config->retry.max_body) {
            evbuffer_add(c->spool, buf, (size_t)n);
            c->spooled += (uint64_t)n;
        } else { /* too big to keep: this request will not be sent twice */
            c->spool_lost = 1;
            evbuffer_drain(c->spool, evbuffer_get_length(c->spool));
        }
    }
    if (n > 0) {
        /* feeding stopped at the high-water mark: resume it from the loop, not from inside curl */
        if (before >= c->config->buffer_size && before - (size_t)n < c->config->buffer_size)
            event_active(c->kick, EV_TIMEOUT, 0);
        return (size_t)n;
    }
    if (c->message_done)
        return 0;
    c->send_paused = 1; /* resumed by process_input when more body arrives */
    return UPSTREAM_READ_PAUSE;
}

static void finish_request(struct conn *c)
{
    log_request(c);
    worker_count_response(c->worker, c->status, c->bytes_in, c->bytes_out);
    if (c->close_after || !c->message_done || c->client_eof) {
        close_after_flush(c);
        return;
    }
    park_write(c);
    /* keep-alive: the next request may already be waiting in the input buffer */
    http_parser_next(&c->parser);
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    c->message_done = c->head_sent = c->recv_paused = c->send_paused = 0;
    c->upstream_head_invalid = 0;
    c->status = 0;
    c->bytes_in = c->bytes_out = 0;
    c->upstream_head_ms = c->upstream_start_ms = c->upstream_done_ms = 0;
    c->wait_ms = 0;
    memset(&c->decision, 0, sizeof c->decision);
    evbuffer_drain(c->spool, evbuffer_get_length(c->spool));
    c->spooled = 0;
    c->spool_lost = c->continue_sent = 0;
    c->attempt = 0;
    c->logged = 0;
    if (c->intercept != NULL)
        snprintf(c->user, sizeof c->user, "%s", c->intercept->user);
    else
        memcpy(c->user, "-", 2);
    c->framing = HTTP_FRAME_NONE;
    conn_set_state(c, CONN_READ_HEAD);
    wait_for_request(c);
    client_read_enable(c, 1);
    struct worker *w = c->worker;
    if (w->conn_count - w->sleeper_count > FOLD_AT_ONCE_ABOVE &&
        conn_sleep(c, c->config->client_idle_timeout_ms))
        return;
    event_active(c->kick, EV_TIMEOUT, 0);
}

static void schedule_retry(struct conn *c, int64_t delay_ms);

/* A failure before any response byte reached the client: try again when the policy allows. */
static int retry_after_failure(struct conn *c, const struct upstream_result *result)
{
    const struct retry_policy *p = &c->config->retry;
    if (c->head_sent || c->spool_lost || c->state != CONN_FORWARD)
        return 0;
    if (result->discarded_status) { /* on_upstream_status already decided and took the budget */
        schedule_retry(c, c->retry_delay_ms);
        return 1;
    }
    const struct http_request *r = &c->parser.req;
    if (!retry_allowed(p, http_arena(r, r->method_off), c->attempt, result->failure, 0,
                       result->nothing_sent, 1))
        return 0;
    int64_t delay = retry_delay_ms(p, c->attempt, -1, util_random32());
    if (delay < 0 || !retry_budget_take(&retry_budget, p->budget_percent, util_now_ms()))
        return 0;
    log_info("%s: attempt %u failed (%s), retrying in %" PRId64 " ms", c->client_text, c->attempt,
             result->message, delay);
    schedule_retry(c, delay);
    return 1;
}

static void on_upstream_done(void *arg, const struct upstream_result *result)
{
    struct conn *c = arg;
    c->upstream = NULL;
    c->upstream_done_ms = util_now_ms();
    worker_slot_freed(c->worker);
    if (c->upstream_head_invalid) { /* not a failure worth a retry: the origin means it */
        send_error(c, 502, "invalid response from upstream: malformed or conflicting "
                           "Content-Length");
        return;
    }
    if (!result->ok) {
        if (retry_after_failure(c, result))
            return;
        send_error(c, result->status, "%s", result->message);
        return;
    }
    if (c->framing == HTTP_FRAME_CHUNKED)
        evbuffer_add(client_out(c), "0\r\n\r\n", 5);
    if (c->message_done || c->state != CONN_FORWARD) {
        finish_request(c);
        return;
    }
    /* The origin answered before the client finished its body: the rest cannot be resynced. */
    c->close_after = 1;
    finish_request(c);
}

static void on_tunnel_connected(void *arg, int fd);

/* An origin that answers 429 or 503 with Retry-After has said when to come back: every request
 * for that host waits until then (DESIGN: "upstream says stop"). */
static void note_upstream_pause(struct conn *c, int status, int64_t retry_after_ms)
{
    if ((status != 429 && status != 503) || retry_after_ms <= 0)
        return;
    uint64_t now = util_now_us();
    limiter_pause_host(c->parser.req.target.host, c->parser.req.target.port,
                       now + (uint64_t)retry_after_ms * 1000, now);
}

static int on_upstream_status(void *arg, int status, int64_t retry_after_ms)
{
    struct conn *c = arg;
    note_upstream_pause(c, status, retry_after_ms);
    const struct retry_policy *p = &c->config->retry;
    const struct http_request *r = &c->parser.req;
    if (c->spool_lost ||
        !retry_allowed(p, http_arena(r, r->method_off), c->attempt, RETRY_STATUS, status, 0, 1))
        return 0;
    int64_t delay = retry_delay_ms(p, c->attempt, retry_after_ms, util_random32());
    if (delay < 0 || !retry_budget_take(&retry_budget, p->budget_percent, util_now_ms()))
        return 0; /* over max_delay or out of budget: the client gets the origin's answer */
    c->retry_delay_ms = delay;
    log_info("%s: attempt %u got %d, retrying in %" PRId64 " ms", c->client_text, c->attempt, status,
             delay);
    return 1;
}

static int on_upstream_rewind(void *arg)
{
    struct conn *c = arg;
    if (c->spool_lost)
        return -1;
    evbuffer_prepend_buffer(c->body, c->spool);
    c->spooled = 0;
    return 0;
}

static int on_upstream_status(void *arg, int status, int64_t retry_after_ms);
static int on_upstream_rewind(void *arg);

static const struct upstream_callbacks forward_callbacks = {
    .on_status = on_upstream_status,
    .rewind_body = on_upstream_rewind,
    .on_head = on_upstream_head,
    .on_body = on_upstream_body,
    .read_body = on_upstream_read,
    .on_done = on_upstream_done,
    .on_connected = NULL,
};

static const struct upstream_callbacks tunnel_callbacks = {
    .on_done = on_upstream_done,
    .on_connected = on_tunnel_connected,
};

/* ---- starting the upstream side ------------------------------------------------------------- */

/* The CURLOPT_HTTPHEADER list in one allocation, nodes first and then their lines: curl only
 * reads the list, so it need not come from curl_slist_append (a malloc and a strdup per line).
 * The upstream releases it with free(). */
static char *put_line(char *p, const char *name, size_t name_len, const char *value,
                      size_t value_len)
{
    memcpy(p, name, name_len);
    p += name_len;
    if (value_len == 0) { /* "Name;" is curl's way to send an empty header ("Name:" deletes it) */
        *p++ = ';';
    } else {
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, value, value_len);
        p += value_len;
    }
    *p++ = '\0';
    return p;
}

static struct curl_slist *build_request_headers(const struct http_request *r, int *failed)
{
    const char *via = http_via();
    size_t via_len = strlen(via);
    /* bounds: every client header kept, plus Via and the two removals */
    size_t max_nodes = r->header_count + 3;
    size_t max_bytes = 5 + via_len + 1 + sizeof "Expect:" + sizeof "Accept:";
    for (size_t i = 0; i < r->header_count; i++)
        max_bytes += r->headers[i].name_len + r->headers[i].value_len + 3;
    struct curl_slist *nodes = malloc(max_nodes * sizeof *nodes + max_bytes);
    if (nodes == NULL) {
        *failed = 1;
        return NULL;
    }
    char *p = (char *)(nodes + max_nodes);
    size_t n = 0;
    int has_accept = 0;
    for (size_t i = 0; i < r->header_count; i++) {
        const struct http_header *h = &r->headers[i];
        const char *name = http_arena(r, h->name_off);
        if (http_request_header_is_hop(r, name, h->name_len))
            continue;
        if (util_equals_nocase(name, h->name_len, "Accept"))
            has_accept = 1;
        nodes[n++].data = p;
        p = put_line(p, name, h->name_len, http_arena(r, h->value_off), h->value_len);
    }
    nodes[n++].data = p;
    p = put_line(p, "Via", 3, via, via_len);
    /* "Name:" with no value removes a header libcurl would add on its own. */
    nodes[n++].data = p;
    memcpy(p, "Expect:", sizeof "Expect:");
    p += sizeof "Expect:";
    if (!has_accept) {
        nodes[n++].data = p;
        memcpy(p, "Accept:", sizeof "Accept:");
        p += sizeof "Accept:";
    }
    for (size_t i = 0; i < n; i++)
        nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
    return nodes;
}

static int method_in(const struct retry_policy *p, const char *method)
{
    for (size_t i = 0; i < p->methods_count; i++)
        if (strcmp(p->methods[i], method) == 0)
            return 1;
    return 0;
}

static const char *parent_proxy_for(const struct config *config, const char *host)
{
    if (config->upstream_proxy[0] == '\0' ||
        host_pattern_match(config->upstream_proxy_bypass, config->upstream_proxy_bypass_count, host))
        return NULL;
    return config->upstream_proxy;
}

/* "http://host:port" or "https://[v6]:port" into buf; its length. snprintf costs more than the
 * rest of the request's bookkeeping here. */
static size_t format_origin(const struct http_target *t, char *buf, size_t len)
{
    char port[8];
    size_t port_len = 0;
    for (unsigned p = t->port; p > 0 || port_len == 0; p /= 10)
        port[port_len++] = (char)('0' + p % 10);
    const char *scheme = t->scheme == HTTP_SCHEME_HTTPS ? "https://" : "http://";
    size_t scheme_len = strlen(scheme), host_len = strlen(t->host);
    size_t need = scheme_len + host_len + 2 * t->host_is_ipv6 + 1 + port_len + 1;
    if (need > len) {
        buf[0] = '\0';
        return 0;
    }
    char *o = buf;
    memcpy(o, scheme, scheme_len);
    o += scheme_len;
    if (t->host_is_ipv6)
        *o++ = '[';
    memcpy(o, t->host, host_len);
    o += host_len;
    if (t->host_is_ipv6)
        *o++ = ']';
    *o++ = ':';
    while (port_len > 0)
        *o++ = port[--port_len];
    *o = '\0';
    return (size_t)(o - buf);
}

static void start_forward(struct conn *c)
{
    const struct http_request *r = &c->parser.req;
    if (r->content_length > 0 && (uint64_t)r->content_length > c->config->retry.max_body)
        c->spool_lost = 1; /* decided up front, not by how much arrived before an early answer */
    const struct http_target *t = &r->target;
    char url[400], target_text[1200], target_small[512];
    size_t url_len = format_origin(t, url, sizeof url);

    /* the request target curl sends: the path as the client wrote it, "/" when it had none */
    const char *path = http_arena(r, t->path_off);
    size_t path_len = t->path_len;
    char *target = path_len + 2 <= sizeof target_small ? target_small : malloc(path_len + 2);
    if (target == NULL) {
        send_error(c, 503, "out of memory");
        return;
    }
    size_t used = 0;
    if (path_len == 0 || path[0] != '/')
        target[used++] = '/';
    memcpy(target + used, path, path_len);
    target[used + path_len] = '\0';
    /* for messages: what the client asked for, as https://host:port/path inside a tunnel */
    size_t text_used = 0;
    if (c->intercept != NULL && r->target_len > 0 && http_arena(r, r->target_off)[0] == '/') {
        memcpy(target_text, url, url_len);
        text_used = url_len;
    }
    size_t text_len = r->target_len < sizeof target_text - 1 - text_used
                          ? r->target_len
                          : sizeof target_text - 1 - text_used;
    memcpy(target_text + text_used, http_arena(r, r->target_off), text_len);
    target_text[text_used + text_len] = '\0';

    int failed = 0;
    struct upstream_request req = {
        .url = url,
        .request_target = target,
        .method = http_arena(r, r->method_off),
        .is_head = r->method == HTTP_HEAD,
        .idempotent = method_in(&c->config->retry, http_arena(r, r->method_off)),
        .upload = r->has_body || r->content_length == 0,
        .upload_length = r->chunked ? -1 : r->content_length,
        .headers = build_request_headers(r, &failed),
        .target_text = target_text,
        .parent_proxy = parent_proxy_for(c->config, t->host),
        .policy = c->config,
        .extra_ca_file = c->config->tls_upstream_ca_file,
        .connect_timeout_ms = c->config->upstream_connect_timeout_ms,
        .response_timeout_ms = c->config->upstream_response_timeout_ms,
    };
    if (failed) {
        free(req.headers);
        if (target != target_small)
            free(target);
        send_error(c, 503, "out of memory");
        return;
    }
    c->upstream_start_ms = util_now_ms();
    c->upstream = upstream_start(c->worker->upstream, &req, &forward_callbacks, c);
    if (target != target_small)
        free(target); /* curl copied it */
    if (c->upstream == NULL) {
        send_error(c, 503, "cannot start upstream transfer");
        return;
    }
    if (r->expect_continue && r->has_body && evbuffer_get_length(c->body) == 0 &&
        !c->continue_sent) {
        evbuffer_add(client_out(c), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        c->continue_sent = 1;
    }
    /* a stalled request body is a client timeout; a write that never drains likewise */
    set_client_timeouts(c, r->has_body);
}

static void start_tunnel(struct conn *c)
{
    const struct http_target *t = &c->parser.req.target;
    conn_set_state(c, CONN_TUNNEL_CONNECT);
    client_read_enable(c, 0); /* bytes after the head wait for the tunnel */
    c->upstream_start_ms = util_now_ms();
    c->upstream = upstream_connect(c->worker->upstream, t->host, t->port,
                                   c->config->upstream_connect_timeout_ms,
                                   parent_proxy_for(c->config, t->host), c->config,
                                   &tunnel_callbacks, c);
    if (c->upstream == NULL)
        send_error(c, 503, "cannot start upstream connection");
}

static void on_tunnel_connected(void *arg, int fd)
{
    struct conn *c = arg;
    c->upstream = NULL;
    worker_slot_freed(c->worker);
    struct tunnel_info info;
    const struct http_target *t = &c->parser.req.target;
    snprintf(info.client, sizeof info.client, "%s", c->client_text);
    snprintf(info.target, sizeof info.target, t->host_is_ipv6 ? "[%s]:%u" : "%s:%u", t->host,
             t->port);
    info.start_ms = c->start_ms;
    info.connect_ms = util_now_ms() - c->upstream_start_ms;
    info.wait_ms = c->wait_ms;
    snprintf(info.user, sizeof info.user, "%s", c->user);
    info.client_addr = c->client_addr;
    c->has_client_slot = 0; /* the tunnel gives it back */
    format_decision(&c->decision, info.decision, sizeof info.decision);
    unpark_write(c); /* the tunnel writes through the bufferevent */
    client_read_stop(c); /* and reads through it (reading is off until tunnel.c turns it on) */
    evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 200 Connection established\r\n\r\n",
                 39);
    struct bufferevent *bev = c->bev;
    struct worker *w = c->worker;
    c->bev = NULL; /* the tunnel owns it now */
    c->logged = 1;  /* the tunnel writes the line when it ends */
    conn_free(c);
    tunnel_start(w, bev, fd, &info);
}

/* ---- the request head ------------------------------------------------------------------------- */

static void after_head_done(struct conn *c);

static void send_overload(struct conn *c, const char *why)
{
    int status = (int)(c->config->overload_status ? c->config->overload_status : 503);
    char body[300];
    int n = snprintf(body, sizeof body, "rlproxy is overloaded: %s; retry after 1 s\n", why);
    struct evbuffer *out = client_out(c);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\nVia: %s"
                        "\r\n\r\n%s",
                        status, http_status_reason(status), n, http_via(), body);
    c->status = status;
    c->head_sent = 1;
    worker_count_response(c->worker, status, c->bytes_in, c->bytes_out);
    log_request(c);
    close_after_flush(c);
}

/* A reply of our own after which the connection stays usable when the request was read whole
 * (429, 407): clients that are limited or challenged carry on without a new handshake. */
static void reply_keeping(struct conn *c, int status, const char *headers, const char *body)
{
    /* a request whose body we have not read cannot leave the connection usable */
    if (c->parser.req.method != HTTP_CONNECT)
        after_head_done(c);
    int keep = c->message_done && c->parser.req.keep_alive && !c->worker->draining;
    struct evbuffer *out = client_out(c);
    /* a response to HEAD has no body, whatever its Content-Length says */
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: %zu\r\n%sVia: %s\r\n%s\r\n%s",
                        status, http_status_reason(status), strlen(body), headers, http_via(),
                        keep ? "" : "Connection: close\r\n",
                        c->parser.req.method == HTTP_HEAD ? "" : body);
    c->status = status;
    c->head_sent = 1;
    conn_set_state(c, CONN_FORWARD);
    c->close_after = !keep;
    finish_request(c);
}

static void send_407(struct conn *c, int had_credentials)
{
    char headers[400], body[200];
    snprintf(headers, sizeof headers, "Proxy-Authenticate: Basic realm=\"%s\", charset=\"UTF-8\"\r\n",
             c->config->auth_realm);
    snprintf(body, sizeof body, "%s\n",
             had_credentials ? "proxy authentication failed: wrong user name or password"
                             : "proxy authentication required (Proxy-Authorization: Basic)");
    reply_keeping(c, 407, headers, body);
}

static void send_429(struct conn *c)
{
    const struct limiter_decision *d = &c->decision;
    uint64_t retry_s = (d->retry_after_us + 999999) / 1000000;
    if (retry_s == 0)
        retry_s = 1;
    char headers[512] = "", body[600];
    int n;
    if (d->paused) {
        n = snprintf(body, sizeof body, "%s asked for a pause (Retry-After); retry after %llu s\n",
                     c->parser.req.target.host, (unsigned long long)retry_s);
    } else {
        format_rate_headers(d, d->retry_after_us, headers, sizeof headers);
        n = snprintf(body, sizeof body, "rate limit \"%s\" exceeded: %s; retry after %llu s\n",
                     d->rule->name, d->reason, (unsigned long long)retry_s);
    }
    if (n < 0 || (size_t)n >= sizeof body)
        n = (int)strlen(body);
    char all[700];
    snprintf(all, sizeof all, "Retry-After: %llu\r\n%s", (unsigned long long)retry_s, headers);
    reply_keeping(c, 429, all, body);
}

static void proceed(struct conn *c)
{
    if (c->state == CONN_WAIT_ADMIT && c->attempt <= 1)
        c->wait_ms = util_now_ms() - c->start_ms; /* held by the limiter or an origin's pause */
    if (c->parser.req.method == HTTP_CONNECT) {
        start_tunnel(c);
        return;
    }
    conn_set_state(c, CONN_FORWARD);
    start_forward(c);
    if (c->state == CONN_FORWARD) {
        after_head_done(c);
        event_active(c->kick, EV_TIMEOUT, 0); /* body bytes may be waiting in the input */
    }
}

static void apply_decision(struct conn *c)
{
    switch (c->decision.verdict) {
    case LIMITER_REJECT:
        send_429(c);
        return;
    case LIMITER_DELAY: {
        conn_set_state(c, CONN_WAIT_ADMIT);
        c->hold = c->decision.hold; /* NULL for an origin's pause: admit() runs again after it */
        struct timeval tv = {(time_t)(c->decision.delay_us / 1000000),
                             (suseconds_t)(c->decision.delay_us % 1000000)};
        evtimer_add(c->timer, &tv);
        return;
    }
    default:
        proceed(c);
    }
}

static void build_limiter_request(struct conn *c, struct limiter_request *lr)
{
    const struct http_request *r = &c->parser.req;
    int is_connect = r->method == HTTP_CONNECT;
    *lr = (struct limiter_request){
        .client = (const struct sockaddr *)&c->client_addr,
        .client_ip = c->client_ip,
        .user = c->user,
        .host = r->target.host,
        .port = r->target.port,
        .method = http_arena(r, r->method_off),
        .path = is_connect ? "" : http_arena(r, r->target.path_off),
        .path_len = is_connect ? 0 : r->target.path_len,
    };
}

/* Redis could not decide (down, slow, overloaded): shared.on_error says what to do. */
static void shared_failed(struct conn *c, const struct rate_rule *rule)
{
    struct limiter_request lr;
    build_limiter_request(c, &lr);
    switch (c->config->shared_on_error) {
    case SHARED_ON_ERROR_DENY:
        send_overload(c, "the shared rate-limit store (Redis) is unavailable");
        return;
    case SHARED_ON_ERROR_ALLOW:
        memset(&c->decision, 0, sizeof c->decision);
        c->decision.verdict = LIMITER_ADMIT;
        c->decision.rule = rule;
        proceed(c);
        return;
    default: /* local: this instance's own window for the rule */
        limiter_decide(c->limiter, &lr, util_now_us(), &c->decision);
        apply_decision(c);
    }
}

static void on_shared_decided(void *arg, const struct shared_result *result)
{
    struct conn *c = arg;
    c->shared_request = NULL;
    const struct rate_rule *rule = c->decision.rule;
    if (result->outcome == SHARED_ERROR) {
        shared_failed(c, rule);
        return;
    }
    memset(&c->decision, 0, sizeof c->decision);
    c->decision.rule = rule;
    c->decision.remaining = result->remaining;
    c->decision.reset_us = rule->window_ms * 1000;
    if (result->outcome == SHARED_REJECT) {
        c->decision.verdict = LIMITER_REJECT;
        c->decision.retry_after_us = result->retry_after_us;
        c->decision.reason = "over the shared limit";
    } else if (result->outcome == SHARED_DELAY) {
        c->decision.verdict = LIMITER_DELAY;
        c->decision.delay_us = result->delay_us;
        /* reserved in Redis: after the wait the request goes ahead without asking again */
        snprintf(c->shared_member, sizeof c->shared_member, "%s", result->member);
        free(c->shared_key);
        c->shared_key = strdup(result->key);
    } else {
        c->decision.verdict = LIMITER_ADMIT;
    }
    apply_decision(c);
}

static void admit(struct conn *c)
{
    struct limiter_request lr;
    build_limiter_request(c, &lr);
    if (c->attempt == 0) {
        c->attempt = 1;
        retry_budget_request(&retry_budget, util_now_ms());
    }
    size_t index = limiter_match(c->limiter, &lr);
    if (index < limiter_rule_count(c->limiter) && limiter_rule(c->limiter, index)->shared) {
        const struct rate_rule *rule = limiter_rule(c->limiter, index);
        memset(&c->decision, 0, sizeof c->decision);
        c->decision.rule = rule;
        c->decision.rule_index = index;
        conn_set_state(c, CONN_WAIT_ADMIT);
        c->shared_request = shared_decide(c->worker->shared, rule, &lr,
                                          c->config->shared_timeout_ms, on_shared_decided, c);
        if (c->shared_request == NULL)
            shared_failed(c, rule);
        return;
    }
    limiter_decide(c->limiter, &lr, util_now_us(), &c->decision);
    apply_decision(c);
}

static void schedule_retry(struct conn *c, int64_t delay_ms)
{
    c->attempt++;
    atomic_fetch_add(&c->worker->stats.retries, 1);
    on_upstream_rewind(c); /* the body starts over from the spool */
    c->recv_paused = c->send_paused = 0;
    c->framing = HTTP_FRAME_NONE;
    conn_set_state(c, CONN_WAIT_ADMIT);
    struct timeval tv;
    util_ms_to_timeval((uint64_t)delay_ms, &tv);
    evtimer_add(c->timer, &tv);
}

/* backpressure.max_inflight: a request starts its upstream transfer only while the worker has
 * fewer than max_inflight; others wait in arrival order without being read further, and the
 * worker stops accepting. Waiting happens before the limiter so that an admission is followed
 * by the fetch at once (a fetch delayed after admission could bunch up at the origin). The hard
 * cap, as many waiting as max_inflight, is answered with overload_status. */
static void wait_for_slot(struct conn *c)
{
    struct worker *w = c->worker;
    uint32_t max = c->config->max_inflight;
    if (max == 0 || (upstream_multi_active(w->upstream) < max && w->slot_waiting == 0)) {
        admit(c);
        return;
    }
    if (w->slot_waiting >= max) {
        send_overload(c, "too many requests in flight (backpressure.max_inflight)");
        return;
    }
    /* still read (up to the buffer's mark, not parsed): a client that leaves is noticed and its
     * request is not sent after all */
    conn_set_state(c, CONN_WAIT_SLOT);
    c->slot_prev = w->slot_last;
    c->slot_next = NULL;
    if (w->slot_last != NULL)
        w->slot_last->slot_next = c;
    else
        w->slot_first = c;
    w->slot_last = c;
    w->slot_waiting++;
    worker_pause_accept(w, "requests wait for an upstream slot (max_inflight)");
}

void conn_start_waiting(struct worker *w)
{
    while (w->slot_first != NULL &&
           (w->config->max_inflight == 0 ||
            upstream_multi_active(w->upstream) < w->config->max_inflight)) {
        struct conn *c = w->slot_first;
        slot_queue_remove(c);
        client_read_enable(c, 1);
        admit(c);
    }
}

/* Inside an opened tunnel requests come in origin form ("GET /x"); they are for the host the
 * client asked to CONNECT to. An absolute URL must name that host too. */
static int adopt_tunnel_target(struct conn *c)
{
    struct http_request *r = &c->parser.req;
    if (r->method == HTTP_CONNECT) {
        send_error(c, 400, "CONNECT inside an intercepted tunnel to %s", c->intercept->host);
        return 0;
    }
    if (r->target.scheme == HTTP_SCHEME_NONE) {
        r->target.scheme = HTTP_SCHEME_HTTPS;
        snprintf(r->target.host, sizeof r->target.host, "%s", c->intercept->host);
        r->target.host_is_ipv6 = strchr(c->intercept->host, ':') != NULL;
        r->target.port = c->intercept->port;
        r->target.path_off = r->target_off;
        r->target.path_len = r->target_len;
        return 1;
    }
    if (strcasecmp(r->target.host, c->intercept->host) != 0 || r->target.port != c->intercept->port) {
        send_error(c, 400, "request for %s:%u inside the tunnel to %s:%u", r->target.host,
                   r->target.port, c->intercept->host, c->intercept->port);
        return 0;
    }
    r->target.scheme = HTTP_SCHEME_HTTPS;
    return 1;
}

/* CONNECT to a host listed in tls_intercept.hosts: answer 200, then speak TLS to the client with a
 * certificate for that host and read the requests inside like any others. */
static void start_intercept(struct conn *c)
{
    const struct http_target *t = &c->parser.req.target;
    char err[300];
    SSL *ssl = tls_new_server_ssl(t->host, err, sizeof err);
    if (ssl == NULL) {
        send_error(c, 502, "cannot intercept %s: %s", t->host, err);
        return;
    }
    unpark_write(c); /* the TLS filter writes through the socket's bufferevent */
    c->direct_write_ok = 0;
    client_read_stop(c); /* and reads through it */
    evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 200 Connection established\r\n\r\n",
                 39);
    struct bufferevent *tls = bufferevent_openssl_filter_new(
        c->worker->base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (tls == NULL) {
        SSL_free(ssl);
        send_error(c, 502, "cannot intercept %s: out of memory", t->host);
        return;
    }
    /* a client that drops the connection without close_notify is not an error worth logging */
    bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
    c->bev = tls; /* owns the plain bufferevent now */
    c->timeouts_reading = -1; /* a new bufferevent has none */
    c->intercept = calloc(1, sizeof *c->intercept);
    if (c->intercept == NULL) {
        conn_free(c); /* the 200 is queued but TLS cannot be spoken without it */
        return;
    }
    snprintf(c->intercept->host, sizeof c->intercept->host, "%s", t->host);
    c->intercept->port = t->port;
    snprintf(c->intercept->user, sizeof c->intercept->user, "%s", c->user);
    c->status = 200;
    log_request(c);
    worker_count_response(c->worker, 200, 0, 0);
    http_parser_next(&c->parser);
    c->head_sent = c->message_done = 0;
    c->status = 0;
    c->logged = 0;
    bufferevent_setcb(c->bev, on_client_read, on_client_write, on_client_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, c->config->buffer_size);
    bufferevent_setwatermark(c->bev, EV_WRITE, c->config->buffer_size / 2, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    conn_set_state(c, CONN_READ_HEAD);
    wait_for_request(c);
}

static void on_auth_done(void *arg, int valid, const char *user);
static void handle_authorized_head(struct conn *c);

static void handle_head(struct conn *c)
{
    const struct http_request *r = &c->parser.req;
    evtimer_del(c->timer);
    atomic_fetch_add(&c->worker->stats.requests, 1);
    if (c->config != c->worker->config) { /* reloaded: this request follows the new config */
        config_unref(c->config);
        c->config = config_ref(c->worker->config);
        limiter_unref(c->limiter);
        c->limiter = limiter_ref(c->worker->limiter);
    }
    if (!access_client_allowed(c->config, (const struct sockaddr *)&c->client_addr)) {
        send_error(c, 403, "client %s is not allowed to use this proxy (access.allow)",
                   c->client_text);
        return;
    }
    if (http_via_has_ours(r)) {
        send_error(c, 508, "request loop: this request already passed through this proxy (Via)");
        return;
    }
    if (c->intercept != NULL && !adopt_tunnel_target(c))
        return;
    if (auth_required(c->config) && c->intercept == NULL) {
        size_t len = 0;
        const char *creds = http_header_find(r, "Proxy-Authorization", &len);
        if (creds == NULL) {
            send_407(c, 0);
            return;
        }
        switch (auth_check_start(c->config, worker_post_call, c->worker, creds, len, c->user,
                                 sizeof c->user, on_auth_done, c, &c->auth_pending)) {
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
    conn_set_state(c, CONN_READ_HEAD); /* where the head's checks run, as if never paused */
    if (!valid) {
        send_407(c, 1);
        return;
    }
    snprintf(c->user, sizeof c->user, "%s", user);
    handle_authorized_head(c); /* proceed() reads on past the head, as after any other wait */
}

/* The rest of a request head's checks, once the client is who it says (or need not say). */
static void handle_authorized_head(struct conn *c)
{
    const struct http_request *r = &c->parser.req;
    if (r->method != HTTP_CONNECT && r->target.scheme != HTTP_SCHEME_NONE &&
        !access_destination_port_allowed(c->config, r->target.port)) {
        send_error(c, 403, "port %u is not allowed (destinations.allow_ports)", r->target.port);
        return;
    }
    if (r->target.scheme != HTTP_SCHEME_NONE || r->method == HTTP_CONNECT) {
        if (access_destination_denied(c->config, r->target.host)) {
            send_error(c, 403, "destination %s is denied (destinations.deny)", r->target.host);
            return;
        }
    }
    if (r->method == HTTP_CONNECT && !access_connect_port_allowed(c->config, r->target.port)) {
        send_error(c, 403, "CONNECT to port %u is not allowed (connect.allowed_ports)",
                   r->target.port);
        return;
    }
    if (r->method == HTTP_CONNECT && !access_destination_port_allowed(c->config, r->target.port)) {
        send_error(c, 403, "port %u is not allowed (destinations.allow_ports)", r->target.port);
        return;
    }
    if (r->method == HTTP_CONNECT && tls_should_intercept(c->config, r->target.host)) {
        start_intercept(c); /* no admission for the tunnel: each request inside is admitted */
        return;
    }
    if (r->method != HTTP_CONNECT && r->target.scheme == HTTP_SCHEME_NONE) {
        char local[64] = "127.0.0.1:3128";
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (getsockname(bufferevent_getfd(c->bev), (struct sockaddr *)&ss, &len) == 0)
            util_format_sockaddr((struct sockaddr *)&ss, local, sizeof local);
        send_error(c, 400,
                   "rlproxy is an HTTP proxy: send the full URL (absolute form), e.g. "
                   "curl -x http://%s http://example.com/ or http_proxy=http://%s",
                   local, local);
        return;
    }
    wait_for_slot(c);
}

/* ---- input ------------------------------------------------------------------------------------ */

static int on_request_body(void *arg, const char *data, size_t len)
{
    struct conn *c = arg;
    c->bytes_in += len;
    return evbuffer_add(c->body, data, len);
}

static void message_done(struct conn *c)
{
    c->message_done = 1;
    /* the client now waits for the answer: only a write that never drains times out */
    set_client_timeouts(c, 0);
}

/* A body-less request completes with no further input: zero bytes let the parser say so. */
static void after_head_done(struct conn *c)
{
    if (c->message_done)
        return;
    enum http_feed_result result;
    http_parser_feed(&c->parser, "", 0, &result);
    if (result == HTTP_FEED_DONE)
        message_done(c);
}

static int wants_input(const struct conn *c)
{
    if (c->state == CONN_READ_HEAD)
        return 1;
    return c->state == CONN_FORWARD && !c->message_done &&
           evbuffer_get_length(c->body) < c->config->buffer_size;
}

static void process_input(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (wants_input(c) && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec vec;
        if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1)
            break;
        size_t len = vec.iov_len;
        if (c->state == CONN_FORWARD) { /* feed no more body than fits under the mark */
            size_t room = c->config->buffer_size - evbuffer_get_length(c->body);
            if (len > room)
                len = room;
        }
        enum http_feed_result result;
        size_t used = http_parser_feed(&c->parser, vec.iov_base, len, &result);
        evbuffer_drain(in, used);
        if (c->state == CONN_READ_HEAD && c->parser.started && !c->header_deadline_armed) {
            c->header_deadline_armed = 1;
            c->start_ms = util_now_ms();
            arm_timer(c, c->config->client_header_timeout_ms);
        }
        if (result == HTTP_FEED_ERROR) {
            if (c->state == CONN_FORWARD && c->head_sent) {
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
            if (c->message_done)
                break;
            continue;
        }
        if (result == HTTP_FEED_DONE) {
            message_done(c);
            break;
        }
    }
    if (c->state == CONN_FORWARD && c->upstream != NULL && c->send_paused &&
        (evbuffer_get_length(c->body) > 0 || c->message_done)) {
        c->send_paused = 0;
        upstream_set_pause(c->upstream, c->recv_paused, 0);
    }
    client_read_drained(c);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->state == CONN_READ_HEAD || c->state == CONN_FORWARD)
        process_input(c);
}

static void on_client_read(struct bufferevent *bev, void *arg) { process_input(arg); }

static void on_client_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->recv_paused && c->upstream != NULL) {
        c->recv_paused = 0;
        upstream_set_pause(c->upstream, 0, c->send_paused);
    }
}

static void on_client_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    log_debug("conn %s: event 0x%x in %s", c->client_text, (unsigned)what, state_names[c->state]);
    if (what == BEV_EVENT_CONNECTED)
        return; /* an intercepted tunnel's TLS handshake completed */
    if (what & BEV_EVENT_TIMEOUT) {
        if (c->state == CONN_FORWARD && !c->message_done && !c->head_sent)
            send_error(c, 408, "request body stalled for %" PRIu64 " ms",
                       c->config->client_body_timeout_ms);
        else
            conn_free(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING) && c->state == CONN_FORWARD &&
        c->message_done) {
        /* the client half-closed after a whole request: answer it, then close */
        c->client_eof = 1;
        client_read_enable(c, 0);
        return;
    }
    conn_free(c);
}

/* ---- sleeping connections ---------------------------------------------------------------------
 * A connection waiting for its next request needs none of a request's state: no bufferevent, no
 * parser, no timers, no buffers, about 4 KB in all. Once it has been idle for SLEEP_AFTER_MS it is
 * folded into a sleeper: one event on the socket (readable, or the rest of the idle timeout) and
 * the client's address, about 200 bytes, kept in a pool (pool.h) so that it does not pin a page of
 * the freed state. It is unfolded into a new struct conn when the client
 * sends again. A new connection starts as a sleeper, so a connection that never sends costs as
 * little. The delay keeps a busy keep-alive connection from paying the unfold on every request.
 * But when thousands of clients finish a request at once, a second of their state (4 KB each)
 * would pile up, and once freed it leaves the heap full of holes that malloc cannot return to the
 * system (other allocations sit between them): beyond FOLD_AT_ONCE_ABOVE unfolded connections on
 * a worker, connections are folded right after their response, which keeps the heap as small as
 * the work in flight. */
struct sleeper {
    struct event ev;
    struct worker *worker;
    struct sleeper *prev, *next;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } addr;
    socklen_t addr_len;
    int has_client_slot;
};

static void sleeper_free(struct sleeper *s, int close_socket)
{
    struct worker *w = s->worker;
    evutil_socket_t fd = event_get_fd(&s->ev);
    event_del(&s->ev);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        w->sleepers = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    w->sleeper_count--;
    atomic_fetch_sub(&w->stats.idle_connections, 1);
    if (close_socket) {
        if (s->has_client_slot)
            access_client_slot_give(&s->addr.sa);
        evutil_closesocket(fd);
        pool_put(w->sleeper_pool, s);
        worker_conn_removed(w);
        return;
    }
    pool_put(w->sleeper_pool, s);
}

static struct conn *conn_open(struct worker *w, evutil_socket_t fd, const struct sockaddr *addr,
                              socklen_t addr_len);

static void on_sleeper_event(evutil_socket_t fd, short what, void *arg)
{
    struct sleeper *s = arg;
    if (!(what & EV_READ) || s->worker->draining) {
        sleeper_free(s, 1); /* idle timeout */
        return;
    }
    /* opened while our event still watches the socket, so epoll keeps it registered throughout */
    struct conn *c = conn_open(s->worker, fd, &s->addr.sa, s->addr_len);
    if (c == NULL) {
        log_error("out of memory for a connection: closed");
        sleeper_free(s, 1);
        return;
    }
    c->has_client_slot = s->has_client_slot;
    sleeper_free(s, 0);
}

/* 1 when fd now waits in a sleeper for at most timeout_ms; 0 (nothing changed) when it cannot. */
static int sleeper_start(struct worker *w, evutil_socket_t fd, const struct sockaddr *addr,
                         socklen_t addr_len, int has_client_slot, uint64_t timeout_ms)
{
    if (addr_len > sizeof(((struct sleeper *)NULL)->addr))
        return 0; /* not an IP address: stays unfolded */
    if (w->sleeper_pool == NULL)
        w->sleeper_pool = pool_new(sizeof(struct sleeper), SLEEPER_BLOCK_BYTES);
    struct sleeper *s = w->sleeper_pool != NULL ? pool_get(w->sleeper_pool) : NULL;
    if (s == NULL)
        return 0;
    struct timeval tv;
    util_ms_to_timeval(timeout_ms, &tv);
    if (event_assign(&s->ev, w->base, fd, EV_READ | EV_PERSIST, on_sleeper_event, s) != 0 ||
        event_add(&s->ev, &tv) != 0) {
        pool_put(w->sleeper_pool, s);
        return 0;
    }
    s->worker = w;
    memcpy(&s->addr, addr, addr_len);
    s->addr_len = addr_len;
    s->has_client_slot = has_client_slot;
    s->prev = NULL;
    s->next = w->sleepers;
    if (w->sleepers != NULL)
        w->sleepers->prev = s;
    w->sleepers = s;
    w->sleeper_count++;
    atomic_fetch_add(&w->stats.idle_connections, 1);
    return 1;
}

/* Folds an idle connection into a sleeper; 0 when it has state a sleeper cannot hold. */
static int conn_sleep(struct conn *c, uint64_t timeout_ms)
{
    /* an intercepted connection's TLS session lives in its bufferevent */
    if (c->state != CONN_READ_HEAD || c->parser.started || c->intercept != NULL ||
        !c->direct_write_ok || c->close_after || c->client_eof || c->worker->draining ||
        evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
        return 0;
    struct sockaddr_storage addr;
    socklen_t addr_len = c->client_addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                               : sizeof(struct sockaddr_in);
    memcpy(&addr, &c->client_addr, sizeof addr);
    if (!sleeper_start(c->worker, bufferevent_getfd(c->bev), (struct sockaddr *)&addr, addr_len,
                       c->has_client_slot, timeout_ms))
        return 0;
    struct worker *w = c->worker;
    conn_release(c, 1);
    worker_memory_freed(w);
    return 1;
}

void conn_close_sleepers(struct worker *w)
{
    while (w->sleepers != NULL)
        sleeper_free(w->sleepers, 1);
}

/* ---- accept ----------------------------------------------------------------------------------- */

/* A struct conn reading its first request from fd; not counted (the caller's count stands), and
 * NULL when out of memory (fd left open). */
static struct conn *conn_open(struct worker *w, evutil_socket_t fd, const struct sockaddr *addr,
                              socklen_t addr_len)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->worker = w;
    c->config = config_ref(w->config);
    c->limiter = limiter_ref(w->limiter);
    snprintf(c->user, sizeof c->user, "-");
    memcpy(&c->client_addr, addr, addr_len < sizeof c->client_addr ? addr_len
                                                                    : sizeof c->client_addr);
    util_format_sockaddr(addr, c->client_text, sizeof c->client_text);
    { /* "1.2.3.4:5678" -> "1.2.3.4", "[::1]:5678" -> "::1": the limiter's client key, made once */
        const char *text = c->client_text;
        const char *colon = strrchr(text, ':');
        size_t n = colon != NULL ? (size_t)(colon - text) : strlen(text);
        if (n >= 2 && text[0] == '[' && text[n - 1] == ']') {
            text++;
            n -= 2;
        }
        memcpy(c->client_ip, text, n);
        c->client_ip[n] = '\0';
    }
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timeouts_reading = -1;
    c->read_event = event_new(w->base, fd, EV_READ | EV_PERSIST, on_read_event, c);
    c->timer = evtimer_new(w->base, on_timer, c);
    c->kick = event_new(w->base, -1, 0, on_kick, c);
    c->flush = event_new(w->base, -1, 0, on_flush, c);
    c->direct_write_ok = 1;
    c->body = evbuffer_new();
    c->spool = evbuffer_new();
    http_parser_init(&c->parser, c->config->max_request_line, c->config->max_header_size,
                     on_request_body, c);
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    if (c->bev == NULL || c->timer == NULL || c->kick == NULL || c->flush == NULL ||
        c->body == NULL || c->spool == NULL || c->read_event == NULL) {
        conn_release(c, 1);
        return NULL;
    }
    bufferevent_setcb(c->bev, on_client_read, on_client_write, on_client_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, c->config->buffer_size);
    bufferevent_setwatermark(c->bev, EV_WRITE, c->config->buffer_size / 2, 0);
    bufferevent_enable(c->bev, EV_WRITE);
    client_read_enable(c, 1);
    conn_set_state(c, CONN_READ_HEAD);
    wait_for_request(c);
    return c;
}

void conn_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *addr, int addr_len)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    worker_conn_added(w);
    socklen_t len = addr_len > 0 ? (socklen_t)addr_len : 0;
    if (access_client_slot_take(addr, w->config->max_connections_per_client)) {
        if (sleeper_start(w, fd, addr, len, 1, w->config->client_idle_timeout_ms))
            return;
        struct conn *c = conn_open(w, fd, addr, len);
        if (c != NULL) {
            c->has_client_slot = 1;
            return;
        }
        access_client_slot_give(addr);
        evutil_closesocket(fd);
        worker_conn_removed(w);
        return;
    }
    struct conn *c = conn_open(w, fd, addr, len);
    if (c == NULL) {
        evutil_closesocket(fd);
        worker_conn_removed(w);
        return;
    }
    /* a client over its connection cap cannot crowd out the others */
    static const char reply[] = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n"
                                "Content-Type: text/plain\r\nContent-Length: 74\r\n"
                                "Connection: close\r\n\r\n"
                                "too many connections from this client (access.max_connections_per_client)\n";
    evbuffer_add(bufferevent_get_output(c->bev), reply, sizeof reply - 1);
    log_info("%s: over access.max_connections_per_client (%u)", c->client_text,
             c->config->max_connections_per_client);
    close_after_flush(c);
}

void conn_drain(struct conn *c)
{
    if (c->state == CONN_READ_HEAD && !c->parser.started &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) == 0) {
        conn_free(c);
        return;
    }
    c->close_after = 1;
}
