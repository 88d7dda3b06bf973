/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* upstream.h — fetching from origins with libcurl multi on a worker's event loop. Owns the pool
 * of easy handles, the options and callbacks of each transfer, and the mapping of curl errors to
 * 502/504 with a cause; the libevent<->curl socket/timer glue is upstream_loop.h's (nothing here
 * calls curl_multi_socket_action). Knows nothing about clients: it talks to its owner through
 * struct upstream_callbacks. */
#ifndef RLPROXY_UPSTREAM_H
#define RLPROXY_UPSTREAM_H

#include <curl/curl.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "retry.h"
#include "upstream_result.h"

struct upstream_multi;
struct upstream;

enum upstream_body_result { UPSTREAM_BODY_OK, UPSTREAM_BODY_PAUSE, UPSTREAM_BODY_ABORT };
#define UPSTREAM_READ_PAUSE CURL_READFUNC_PAUSE
#define UPSTREAM_READ_ABORT CURL_READFUNC_ABORT

/* Callbacks run inside libcurl's callbacks (except on_done and on_connected): they must not call
 * back into this module; they may touch their own buffers and arm libevent events. */
struct upstream_callbacks {
    /* The final (non-1xx) response head. `headers` is the raw header block from the origin,
     * "Name: value\r\n" lines, without the status line and the blank line. */
    void (*on_head)(void *ctx, int status, const char *reason, size_t reason_len,
                    const char *headers, size_t headers_len);
    /* The final status, before the head is delivered (`headers` as for on_head): return 1 to
     * drop this response (the transfer ends with discarded_status set, e.g. to retry), 0 to
     * deliver it. May be NULL. */
    int (*on_status)(void *ctx, int status, int64_t retry_after_ms, const char *headers,
                     size_t headers_len);
    enum upstream_body_result (*on_body)(void *ctx, const char *data, size_t len);
    /* curl resends on a reused connection that died before answering: give the body again from
     * its start. 0, or -1 when it cannot. May be NULL. */
    int (*rewind_body)(void *ctx);
    /* Request body: bytes copied, 0 at the end, UPSTREAM_READ_PAUSE or UPSTREAM_READ_ABORT. */
    size_t (*read_body)(void *ctx, char *buf, size_t len);
    /* The transfer is over (removed from the multi); the upstream object is already freed. */
    void (*on_done)(void *ctx, const struct upstream_result *result);
    /* Tunnels only: the TCP connection is up; fd is ours (a dup, close it when done). */
    void (*on_connected)(void *ctx, int fd);
    /* The request head is about to be written to the origin: DNS, connect, TLS and a parent's
     * CONNECT are done (CURLOPT_PREREQFUNCTION). Again if curl resends the request on a new
     * connection. May be NULL. */
    void (*on_departure)(void *ctx);
};

struct upstream_request {
    const char *url;            /* "http://host:port" — scheme and authority */
    const char *request_target; /* sent verbatim: "/a/../b?x" */
    const char *method;
    int idempotent; /* listed in retry.methods: curl may resend it on a reused connection */
    int is_head;
    int upload;            /* send a body (Content-Length or chunked) */
    int64_t upload_length; /* -1: chunked */
    struct curl_slist *headers; /* taken over by the upstream: ONE malloc'd block (nodes and their
                                   lines), released with free(), not curl_slist_free_all() */
    const char *target_text;    /* for messages: "http://host:port/path" or "host:port" */
    const char *parent_proxy;   /* NULL: connect directly */
    const struct config *policy; /* destinations.deny checked on each address connected to */
    const char *extra_ca_file;   /* added to the system store to verify https origins; "" none */
    uint64_t connect_timeout_ms;
    uint64_t response_timeout_ms; /* from the end of the request to the first response byte */
};

/* max_connections: idle upstream connections kept for reuse (curl's connection cache). */
struct upstream_multi *upstream_multi_new(struct event_base *base, uint32_t max_connections);
void upstream_multi_free(struct upstream_multi *m); /* aborts nothing: free transfers first */
size_t upstream_multi_active(struct upstream_multi *m); /* thread-safe */

struct upstream *upstream_start(struct upstream_multi *m, const struct upstream_request *req,
                                const struct upstream_callbacks *cb, void *ctx);
/* CONNECT: open a TCP connection to host:port through libcurl (DNS cache, happy eyeballs). */
struct upstream *upstream_connect(struct upstream_multi *m, const char *host, unsigned port,
                                  uint64_t connect_timeout_ms, const char *parent_proxy,
                                  const struct config *policy,
                                  const struct upstream_callbacks *cb, void *ctx);

/* Pausing: recv when the client cannot take more, send when it has not sent more body yet.
 * Never call from inside an upstream callback. */
void upstream_set_pause(struct upstream *u, int recv_paused, int send_paused);
/* The request body is complete; starts the response timer. Safe from inside read_body. */
void upstream_request_sent(struct upstream *u);
/* Stop and free without calling on_done. Never from inside an upstream callback. */
void upstream_abort(struct upstream *u);

#endif
