/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* forward.h — one admitted request's exchange with the origin through upstream.c: the request
 * body fed to curl with a bounded replay spool, the origin's response head and body framed for
 * the client with flow control both ways, the retry of a failed attempt (through admission), and
 * the upstream connection of a CONNECT. Writes only the origin's response to the client; what
 * rlproxy answers itself, and what happens after the exchange, is its owner's (conn.c), told
 * through callbacks. Never frees its owner. Lives on its worker's thread. */
#ifndef RLPROXY_FORWARD_H
#define RLPROXY_FORWARD_H

#include <event2/buffer.h>
#include <stdint.h>

#include "admission.h"
#include "client.h"
#include "config.h"
#include "http.h"
#include "http_response.h"

struct upstream;
struct worker;

struct forward_callbacks {
    /* The origin's response is complete (close_after says whether the connection ends). */
    void (*done)(void *owner);
    /* No response the client can be given: answer status with message (one line), or, when
     * head_sent, cut the response short. */
    void (*failed)(void *owner, int status, const char *message);
    /* CONNECT: the origin's TCP connection is up; fd is the owner's to hand to a tunnel. */
    void (*connected)(void *owner, int fd);
    /* Body bytes were taken below the mark: read the client again (from the loop). */
    void (*want_input)(void *owner);
};

/* Embedded in its owner, one request at a time. The owner reads the response fields for the
 * access log and keep-alive, and sets them itself when it answers in rlproxy's own name. */
struct forward {
    /* the response */
    int status;
    int head_sent;
    int close_after;
    uint64_t bytes_in, bytes_out; /* request body bytes read; response bytes to the client */
    uint64_t upstream_start_ms, upstream_head_ms, upstream_done_ms;
    int message_done; /* the whole request (head and body) was read */

    /* private */
    const struct forward_callbacks *callbacks;
    void *owner;
    struct worker *worker;
    struct client *client;
    const struct http_request *request;
    const struct config *config;
    struct admission *admission;
    const char *client_text;
    struct upstream *upstream;
    struct evbuffer *body;  /* request body bytes not yet taken by curl */
    struct evbuffer *spool; /* body bytes handed to curl, kept for a replay up to retry.max_body */
    uint64_t spooled;
    int spool_lost;         /* the body outgrew the spool: no replay */
    int continue_sent;
    int head_invalid;       /* the origin's head cannot be forwarded: 502 when curl is done */
    int tunnel;             /* the exchange opens a CONNECT tunnel */
    enum http_framing framing;
    int recv_paused, send_paused;
    int64_t retry_delay_ms; /* decided on the response's status */
};

/* 0, or -1 when out of memory. */
/* client_text names the client in messages; it must live as long as f. */
int forward_init(struct forward *f, struct worker *w, struct client *client,
                 struct admission *admission, const char *client_text,
                 const struct forward_callbacks *callbacks, void *owner);
void forward_release(struct forward *f);
/* The next request on the connection starts clean. */
void forward_reset(struct forward *f);

/* Admitted: send the request (or open the CONNECT's connection). `intercepted`: the request came
 * inside an opened tunnel. `drop_headers` (NULL-terminated, or NULL): headers meant for rlproxy
 * alone (a rule's cost_header, weight_header), not forwarded. On failure, failed() has run. */
void forward_start(struct forward *f, const struct http_request *request,
                   const struct config *config, int intercepted, const char *const *drop_headers);
void forward_connect(struct forward *f, const struct http_request *request,
                     const struct config *config);
/* Stops the transfer if one runs (the owner answers or closes). */
void forward_abort(struct forward *f);
int forward_active(const struct forward *f);
/* The last attempt's upstream time, start to done (METRICS_NOT_MEASURED when none ran to its end). */
uint64_t forward_upstream_us(const struct forward *f);

/* Request body from the parser. */
int forward_body_add(struct forward *f, const char *data, size_t len);
size_t forward_body_buffered(const struct forward *f);
/* The parser took in more (or the whole) body: let curl go on sending. */
void forward_body_more(struct forward *f);
/* The client's output drained: let curl go on receiving. */
void forward_client_drained(struct forward *f);

#endif
