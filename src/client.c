/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* client.c — see client.h.
 *
 * Writing: a socket bufferevent with EV_WRITE enabled registers EPOLLOUT as soon as bytes are
 * added and removes it once they are written, in the next loop pass: two epoll_ctl and one more
 * wake-up per response. Between responses the write side is parked instead (EV_WRITE disabled,
 * output empty); bytes added then are written straight to the socket by a flush event later in
 * the same pass, and only what the socket does not take goes back to libevent (EV_WRITE enabled:
 * watermarks, write timeout and the drained callback as before). A keep-alive response that fits
 * in the socket buffer then costs one writev and no epoll_ctl. Plain sockets only: a TLS filter
 * writes itself.
 *
 * Reading: a socket bufferevent asks the kernel how much is readable (ioctl FIONREAD) before
 * every read, one system call per request on top of the read. On a plain socket we read into the
 * bufferevent's input buffer ourselves, from an event of our own, with the same high-water mark
 * and read timeout; the bufferevent never reads. Where libevent must read (under a TLS filter, in
 * a tunnel, while lingering after an error) read_stop hands reading back to the bufferevent. */
#include "client.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "util.h"

#define LINGER_MS 2000          /* after the last reply: keep reading (and discarding) this long */
#define CLIENT_READ_MAX 16384   /* per read, as libevent's bufferevent reads */

static void unpark_write(struct client *c)
{
    if (!c->write_parked)
        return;
    c->write_parked = 0;
    bufferevent_enable(c->bev, EV_WRITE);
}

/* The bufferevent keeps its output's drain side frozen so that only it writes; thawed for the
 * call, as bufferevent_writecb does. An error is left for the bufferevent to report. */
static void write_directly(struct client *c, struct evbuffer *out)
{
    evbuffer_unfreeze(out, 1);
    evbuffer_write(out, bufferevent_getfd(c->bev));
    evbuffer_freeze(out, 1);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    if (!c->write_parked || c->bev == NULL)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) > 0)
        write_directly(c, out);
    if (evbuffer_get_length(out) > 0) { /* the socket is full (or failed): libevent takes over */
        unpark_write(c);
        return;
    }
    c->callbacks->drained(c->owner); /* what the write callback does after a drain */
}

struct evbuffer *client_output(struct client *c)
{
    if (c->write_parked)
        event_active(c->flush, EV_TIMEOUT, 0); /* no-op when already active */
    return bufferevent_get_output(c->bev);
}

struct evbuffer *client_input(const struct client *c) { return bufferevent_get_input(c->bev); }

evutil_socket_t client_fd(const struct client *c) { return bufferevent_getfd(c->bev); }

void client_park_write(struct client *c)
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

/* ---- reading ---------------------------------------------------------------------------------- */

static void read_update(struct client *c)
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

void client_read_enable(struct client *c, int on)
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
    read_update(c);
}

/* From here on the bufferevent reads (with reading as it was). */
static void read_stop(struct client *c)
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

void client_read_drained(struct client *c)
{
    if (c->read_event != NULL && c->read_full &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) < c->buffer_size) {
        c->read_full = 0;
        read_update(c);
    }
}

static void on_read_event(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    if (what & EV_TIMEOUT) {
        c->callbacks->event(c->owner, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
        return;
    }
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t have = evbuffer_get_length(in);
    if (have >= c->buffer_size) {
        c->read_full = 1;
        read_update(c);
        return;
    }
    size_t room = c->buffer_size - have;
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
        c->callbacks->event(c->owner, BEV_EVENT_READING | BEV_EVENT_EOF);
        return;
    }
    if (n < 0) {
        if (saved == EAGAIN || saved == EWOULDBLOCK || saved == EINTR)
            return;
        c->callbacks->event(c->owner, BEV_EVENT_READING | BEV_EVENT_ERROR);
        return;
    }
    c->callbacks->readable(c->owner);
}

/* ---- the bufferevent's callbacks -------------------------------------------------------------- */

static void on_bev_read(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    c->callbacks->readable(c->owner);
}

static void on_bev_write(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    c->callbacks->drained(c->owner);
}

static void on_bev_event(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;
    if (what == BEV_EVENT_CONNECTED)
        return; /* an intercepted tunnel's TLS handshake completed */
    c->callbacks->event(c->owner, what);
}

static void set_callbacks(struct client *c)
{
    bufferevent_setcb(c->bev, on_bev_read, on_bev_write, on_bev_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, c->buffer_size);
    bufferevent_setwatermark(c->bev, EV_WRITE, c->buffer_size / 2, 0);
}

int client_init(struct client *c, struct event_base *base, evutil_socket_t fd, size_t buffer_size,
                const struct client_callbacks *callbacks, void *owner)
{
    c->base = base;
    c->callbacks = callbacks;
    c->owner = owner;
    c->buffer_size = buffer_size;
    c->timeouts_reading = -1;
    c->direct_write_ok = 1;
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->read_event = event_new(base, fd, EV_READ | EV_PERSIST, on_read_event, c);
    c->flush = event_new(base, -1, 0, on_flush, c);
    if (c->bev == NULL || c->read_event == NULL || c->flush == NULL)
        return -1;
    set_callbacks(c);
    bufferevent_enable(c->bev, EV_WRITE);
    return 0;
}

void client_release(struct client *c, int keep_socket)
{
    if (c->read_event != NULL)
        event_free(c->read_event);
    c->read_event = NULL;
    if (c->bev != NULL) {
        if (keep_socket)
            bufferevent_setfd(c->bev, -1); /* so that freeing it does not close the socket */
        bufferevent_free(c->bev);
    }
    c->bev = NULL;
    if (c->flush != NULL)
        event_free(c->flush);
    c->flush = NULL;
    if (c->close_timer != NULL)
        event_free(c->close_timer);
    c->close_timer = NULL;
}

/* Each change re-adds the bufferevent's events, so timeouts are set only when they differ: a GET
 * on a keep-alive connection changes nothing. */
void client_set_timeouts(struct client *c, int body_reading, uint64_t ms)
{
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
            read_update(c); /* re-added with the new timeout */
    }
}

int client_is_quiet(const struct client *c)
{
    return c->direct_write_ok && !c->closing &&
           evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
           evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
}

/* ---- interception and tunnels ----------------------------------------------------------------- */

static const char connection_established[] = "HTTP/1.1 200 Connection established\r\n\r\n";

int client_start_tls(struct client *c, SSL *ssl)
{
    unpark_write(c);   /* the TLS filter writes through the socket's bufferevent */
    read_stop(c);      /* and reads through it */
    evbuffer_add(bufferevent_get_output(c->bev), connection_established,
                 sizeof connection_established - 1);
    struct bufferevent *tls = bufferevent_openssl_filter_new(
        c->base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (tls == NULL) {
        SSL_free(ssl);
        return -1;
    }
    /* a client that drops the connection without close_notify is not an error worth logging */
    bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
    c->bev = tls; /* owns the plain bufferevent now */
    c->direct_write_ok = 0;
    c->timeouts_reading = -1; /* a new bufferevent has none */
    set_callbacks(c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return 0;
}

int client_is_tls(const struct client *c) { return !c->direct_write_ok; }

struct bufferevent *client_take_for_tunnel(struct client *c)
{
    unpark_write(c); /* the tunnel writes through the bufferevent */
    read_stop(c);    /* and reads through it (reading is off until tunnel.c turns it on) */
    evbuffer_add(bufferevent_get_output(c->bev), connection_established,
                 sizeof connection_established - 1);
    struct bufferevent *bev = c->bev;
    c->bev = NULL;
    return bev;
}

/* ---- closing ---------------------------------------------------------------------------------- */

static void on_linger_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void on_closing_event(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;
    if (what == BEV_EVENT_CONNECTED)
        return; /* an intercepted tunnel's handshake completing after the reply was queued */
    c->callbacks->closed(c->owner);
}

static void on_close_timer(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    c->callbacks->closed(c->owner);
}

static void arm_close_timer(struct client *c, uint64_t ms)
{
    struct timeval tv;
    util_ms_to_timeval(ms, &tv);
    evtimer_add(c->close_timer, &tv);
}

static void on_closing_drained(struct bufferevent *bev, void *arg);

static void on_underlying_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                                  void *arg)
{
    struct client *c = arg;
    if (evbuffer_get_length(buf) == 0) {
        evbuffer_remove_cb(buf, on_underlying_drained, arg);
        on_closing_drained(c->bev, c);
    }
}

/* Once the last byte is out: half-close and read what the client still sends for a moment. */
static void on_closing_drained(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
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
    arm_close_timer(c, LINGER_MS);
}

void client_close(struct client *c, uint64_t write_timeout_ms)
{
    c->closing = 1;
    if (c->close_timer == NULL)
        c->close_timer = evtimer_new(c->base, on_close_timer, c);
    if (c->close_timer == NULL) { /* out of memory: no linger */
        c->callbacks->closed(c->owner);
        return;
    }
    unpark_write(c); /* on_closing_drained needs libevent's write callback */
    client_read_enable(c, 0);
    read_stop(c); /* the linger reads through the bufferevent */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_setcb(c->bev, NULL, on_closing_drained, on_closing_event, c);
    client_set_timeouts(c, 0, write_timeout_ms);
    arm_close_timer(c, write_timeout_ms + LINGER_MS);
    on_closing_drained(c->bev, c);
}
