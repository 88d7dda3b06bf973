/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* client.h — the client's socket as a byte stream under flow control: reading up to the
 * backpressure mark (on plain sockets without libevent's ioctl(FIONREAD) per read), writing with
 * the write side parked between responses, timeouts, the TLS filter of an intercepted tunnel,
 * and the closing linger after the last reply. Knows nothing of HTTP or requests: it reports to
 * its owner (conn.c) through callbacks and never frees it. Lives on its worker's thread. */
#ifndef RLPROXY_CLIENT_H
#define RLPROXY_CLIENT_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdint.h>

struct client_callbacks {
    void (*readable)(void *owner);          /* input arrived */
    void (*drained)(void *owner);           /* the output fell below half the mark */
    void (*event)(void *owner, short what); /* BEV_EVENT_EOF, _ERROR or _TIMEOUT with _READING/_WRITING */
    void (*closed)(void *owner);            /* after client_close: the linger is over */
};

/* Embedded in its owner. */
struct client {
    struct bufferevent *bev;
    struct event_base *base;
    const struct client_callbacks *callbacks;
    void *owner;
    size_t buffer_size;       /* backpressure.buffer: the input's mark, twice the output's */
    struct event *read_event; /* plain sockets: read here (see client.c) */
    int read_wanted;          /* reading is on, as bufferevent_enable(EV_READ) would have it */
    int read_full;            /* ... but the input reached the mark */
    int read_added;           /* read_event is added */
    uint64_t read_timeout_ms; /* 0: none */
    struct event *flush;      /* writes the output directly while write_parked */
    int write_parked;         /* EV_WRITE off: the output was empty when the last response ended */
    int direct_write_ok;      /* bev is the socket's own bufferevent (not a TLS filter) */
    int timeouts_reading;     /* what client_set_timeouts last gave the bufferevent: -1 nothing */
    uint64_t timeouts_ms;
    struct event *close_timer; /* while closing */
    int closing;
};

/* 0, or -1 when out of memory (then client_release, keeping or closing fd as the caller wants). */
int client_init(struct client *c, struct event_base *base, evutil_socket_t fd, size_t buffer_size,
                const struct client_callbacks *callbacks, void *owner);
/* keep_socket: the descriptor stays open (it goes on in a sleeper). */
void client_release(struct client *c, int keep_socket);

evutil_socket_t client_fd(const struct client *c);
struct evbuffer *client_input(const struct client *c);
/* Where replies go: between responses, bytes added here are written straight to the socket later
 * in the same loop pass. */
struct evbuffer *client_output(struct client *c);
void client_read_enable(struct client *c, int on);
/* Input was consumed: below the mark, reading resumes. */
void client_read_drained(struct client *c);
/* At the end of a keep-alive response: write what is left now, and park if it all went. */
void client_park_write(struct client *c);
/* The read timeout (only while a request body is coming) and the write timeout (always). */
void client_set_timeouts(struct client *c, int body_reading, uint64_t timeout_ms);
/* 1 when nothing is buffered either way and the socket is plain: it can be folded away. */
int client_is_quiet(const struct client *c);

/* Speak TLS with ssl (server side) from now on: "200 Connection established" goes out first, in
 * clear. 0, or -1 (ssl freed). */
int client_start_tls(struct client *c, SSL *ssl);
int client_is_tls(const struct client *c);
/* For a tunnel: the bufferevent (reading off, "200 Connection established" queued), which the
 * caller owns from now on. */
struct bufferevent *client_take_for_tunnel(struct client *c);

/* Sends what is buffered, half-closes, and reads (discarding) for a moment more, so that our
 * close does not turn into a RST that destroys the reply before the client reads it; then, or
 * after write_timeout_ms if the client does not read, closed() runs. */
void client_close(struct client *c, uint64_t write_timeout_ms);

#endif
