/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* forward.c — see forward.h. */
#include "forward.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "upstream.h"
#include "upstream_request.h"
#include "util.h"
#include "worker.h"

int forward_init(struct forward *f, struct worker *w, struct client *client,
                 struct admission *admission, const char *client_text,
                 const struct forward_callbacks *callbacks, void *owner)
{
    memset(f, 0, sizeof *f);
    f->client_text = client_text;
    f->worker = w;
    f->client = client;
    f->admission = admission;
    f->callbacks = callbacks;
    f->owner = owner;
    f->body = evbuffer_new();
    f->spool = evbuffer_new();
    return f->body != NULL && f->spool != NULL ? 0 : -1;
}

int forward_active(const struct forward *f) { return f->upstream != NULL; }

uint64_t forward_upstream_us(const struct forward *f)
{
    /* the access log's clock (ms): the last attempt, if it ran to its end */
    if (f->upstream_start_ms == 0 || f->upstream_done_ms < f->upstream_start_ms)
        return METRICS_NOT_MEASURED;
    return (f->upstream_done_ms - f->upstream_start_ms) * 1000;
}

void forward_abort(struct forward *f)
{
    if (f->upstream == NULL)
        return;
    upstream_abort(f->upstream);
    f->upstream = NULL;
    worker_slot_freed(f->worker);
}

void forward_release(struct forward *f)
{
    forward_abort(f);
    if (f->body != NULL)
        evbuffer_free(f->body);
    if (f->spool != NULL)
        evbuffer_free(f->spool);
    f->body = f->spool = NULL;
}

void forward_reset(struct forward *f)
{
    evbuffer_drain(f->body, evbuffer_get_length(f->body));
    evbuffer_drain(f->spool, evbuffer_get_length(f->spool));
    f->spooled = 0;
    f->spool_lost = f->continue_sent = 0;
    f->message_done = f->head_sent = f->recv_paused = f->send_paused = 0;
    f->head_invalid = f->tunnel = 0;
    f->status = 0;
    f->bytes_in = f->bytes_out = 0;
    f->upstream_head_ms = f->upstream_start_ms = f->upstream_done_ms = 0;
    f->framing = HTTP_FRAME_NONE;
}

/* ---- the request body ------------------------------------------------------------------------- */

int forward_body_add(struct forward *f, const char *data, size_t len)
{
    f->bytes_in += len;
    return evbuffer_add(f->body, data, len);
}

size_t forward_body_buffered(const struct forward *f) { return evbuffer_get_length(f->body); }

void forward_body_more(struct forward *f)
{
    if (f->upstream != NULL && f->send_paused &&
        (evbuffer_get_length(f->body) > 0 || f->message_done)) {
        f->send_paused = 0;
        upstream_set_pause(f->upstream, f->recv_paused, 0);
    }
}

void forward_client_drained(struct forward *f)
{
    if (f->recv_paused && f->upstream != NULL) {
        f->recv_paused = 0;
        upstream_set_pause(f->upstream, 0, f->send_paused);
    }
}

static size_t on_upstream_read(void *arg, char *buf, size_t len)
{
    struct forward *f = arg;
    size_t mark = f->config->buffer_size;
    size_t before = evbuffer_get_length(f->body);
    int n = evbuffer_remove(f->body, buf, len);
    if (n > 0 && !f->spool_lost) {
        if (f->spooled + (uint64_t)n <= f->config->retry.max_body) {
            evbuffer_add(f->spool, buf, (size_t)n);
            f->spooled += (uint64_t)n;
        } else { /* too big to keep: this request will not be sent twice */
            f->spool_lost = 1;
            evbuffer_drain(f->spool, evbuffer_get_length(f->spool));
        }
    }
    if (n > 0) {
        /* feeding stopped at the high-water mark: resume it from the loop, not from inside curl */
        if (before >= mark && before - (size_t)n < mark)
            f->callbacks->want_input(f->owner);
        return (size_t)n;
    }
    if (f->message_done)
        return 0;
    f->send_paused = 1; /* resumed by forward_body_more when more body arrives */
    return UPSTREAM_READ_PAUSE;
}

/* curl resends on a reused connection that died before answering, and a retry starts over:
 * the body comes again from the spool. */
static int on_upstream_rewind(void *arg)
{
    struct forward *f = arg;
    if (f->spool_lost)
        return -1;
    evbuffer_prepend_buffer(f->body, f->spool);
    f->spooled = 0;
    return 0;
}

/* ---- the response ----------------------------------------------------------------------------- */

static void on_upstream_head(void *arg, int status, const char *reason, size_t reason_len,
                             const char *headers, size_t headers_len)
{
    struct forward *f = arg;
    int close_after = worker_draining(f->worker);
    const struct limiter_decision *d = &f->admission->decision;
    char rate[512];
    const char *extra = NULL;
    if (d->rule != NULL && d->rule->headers && !d->paused) {
        reply_rate_fields(d->rule, d->remaining, d->reset_us, rate, sizeof rate);
        extra = rate;
    }
    f->framing = http_write_response_head(client_output(f->client), f->request, status, reason,
                                          reason_len, headers, headers_len, extra, &close_after);
    if (f->framing == HTTP_FRAME_INVALID) { /* on_upstream_body ends the transfer */
        f->head_invalid = 1;
        f->framing = HTTP_FRAME_NONE;
        return;
    }
    f->close_after = close_after;
    f->status = status;
    f->head_sent = 1;
    f->upstream_head_ms = util_now_ms();
}

static enum upstream_body_result on_upstream_body(void *arg, const char *data, size_t len)
{
    struct forward *f = arg;
    if (f->head_invalid)
        return UPSTREAM_BODY_ABORT;
    if (f->framing == HTTP_FRAME_NONE)
        return UPSTREAM_BODY_OK; /* HEAD/204/304 carry no body whatever the origin sends */
    struct evbuffer *out = client_output(f->client);
    if (evbuffer_get_length(out) >= f->config->buffer_size) {
        f->recv_paused = 1; /* resumed by forward_client_drained once the client drained half */
        return UPSTREAM_BODY_PAUSE;
    }
    if (f->framing == HTTP_FRAME_CHUNKED)
        evbuffer_add_printf(out, "%zx\r\n", len);
    evbuffer_add(out, data, len);
    if (f->framing == HTTP_FRAME_CHUNKED)
        evbuffer_add(out, "\r\n", 2);
    f->bytes_out += len;
    return UPSTREAM_BODY_OK;
}

static const char *method_of(const struct forward *f)
{
    return http_arena(f->request, f->request->method_off);
}

/* The final status, before its head is delivered: what the origin says about its limits is
 * learned for the rule's key, and a status in retry.on is dropped for another attempt when the
 * policy, the budget and the deadline allow. */
static int on_upstream_status(void *arg, int status, int64_t retry_after_ms, const char *headers,
                              size_t headers_len)
{
    struct forward *f = arg;
    admission_note_response(f->admission, status, headers, headers_len);
    int64_t delay = admission_retry_for_status(f->admission, method_of(f), status, retry_after_ms,
                                               !f->spool_lost);
    if (delay < 0)
        return 0; /* the client gets the origin's answer */
    f->retry_delay_ms = delay;
    log_info("%s: attempt %u got %d, retrying in %" PRId64 " ms", f->client_text,
             f->admission->attempt, status, delay);
    return 1;
}

static void schedule_retry(struct forward *f, int64_t delay_ms)
{
    worker_count_retry(f->worker);
    on_upstream_rewind(f); /* the body starts over from the spool */
    f->recv_paused = f->send_paused = 0;
    f->framing = HTTP_FRAME_NONE;
    admission_retry(f->admission, delay_ms);
}

/* A failure before any response byte reached the client: try again when the policy allows. */
static int retry_after_failure(struct forward *f, const struct upstream_result *result)
{
    if (f->head_sent || f->spool_lost || f->tunnel)
        return 0;
    if (result->discarded_status) { /* on_upstream_status already decided and took the budget */
        schedule_retry(f, f->retry_delay_ms);
        return 1;
    }
    int64_t delay = admission_retry_for_failure(f->admission, method_of(f), result->failure,
                                                result->nothing_sent);
    if (delay < 0)
        return 0;
    log_info("%s: attempt %u failed (%s), retrying in %" PRId64 " ms", f->client_text,
             f->admission->attempt, result->message, delay);
    schedule_retry(f, delay);
    return 1;
}

static void on_upstream_done(void *arg, const struct upstream_result *result)
{
    struct forward *f = arg;
    f->upstream = NULL;
    f->upstream_done_ms = util_now_ms();
    worker_slot_freed(f->worker);
    if (f->head_invalid) { /* not a failure worth a retry: the origin means it */
        f->callbacks->failed(f->owner, 502,
                             "invalid response from upstream: malformed or conflicting "
                             "Content-Length");
        return;
    }
    if (!result->ok) {
        if (retry_after_failure(f, result))
            return;
        f->callbacks->failed(f->owner, result->status, result->message);
        return;
    }
    if (f->framing == HTTP_FRAME_CHUNKED)
        evbuffer_add(client_output(f->client), "0\r\n\r\n", 5);
    /* The origin answered before the client finished its body: the rest cannot be resynced. */
    if (!f->message_done)
        f->close_after = 1;
    f->callbacks->done(f->owner);
}

static void on_departure(void *arg)
{
    struct forward *f = arg;
    admission_depart(f->admission);
}

static void on_tunnel_connected(void *arg, int fd)
{
    struct forward *f = arg;
    admission_depart(f->admission); /* the origin counts the connection */
    f->upstream = NULL;
    worker_slot_freed(f->worker);
    f->callbacks->connected(f->owner, fd);
}

static const struct upstream_callbacks forward_callbacks = {
    .on_status = on_upstream_status,
    .rewind_body = on_upstream_rewind,
    .on_head = on_upstream_head,
    .on_body = on_upstream_body,
    .read_body = on_upstream_read,
    .on_done = on_upstream_done,
    .on_connected = NULL,
    .on_departure = on_departure,
};

static const struct upstream_callbacks tunnel_callbacks = {
    .on_done = on_upstream_done,
    .on_connected = on_tunnel_connected,
};

/* ---- starting --------------------------------------------------------------------------------- */

void forward_start(struct forward *f, const struct http_request *r, const struct config *config,
                   int intercepted, const char *const *drop_headers)
{
    f->request = r;
    f->config = config;
    if (r->content_length > 0 && (uint64_t)r->content_length > config->retry.max_body)
        f->spool_lost = 1; /* decided up front, not by how much arrived before an early answer */
    struct upstream_request req;
    struct upstream_request_text text;
    if (upstream_request_build(&req, &text, r, config, intercepted, drop_headers) != 0) {
        f->callbacks->failed(f->owner, 503, "out of memory");
        return;
    }
    f->upstream_start_ms = util_now_ms();
    f->upstream = upstream_start(worker_upstream(f->worker), &req, &forward_callbacks, f);
    upstream_request_text_free(&text); /* curl copied it */
    if (f->upstream == NULL) {
        f->callbacks->failed(f->owner, 503, "cannot start upstream transfer");
        return;
    }
    if (r->expect_continue && r->has_body && evbuffer_get_length(f->body) == 0 &&
        !f->continue_sent) {
        evbuffer_add(client_output(f->client), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        f->continue_sent = 1;
    }
    /* a stalled request body is a client timeout; a write that never drains likewise */
    client_set_timeouts(f->client, r->has_body, config->client_body_timeout_ms);
}

void forward_connect(struct forward *f, const struct http_request *r, const struct config *config)
{
    const struct http_target *t = &r->target;
    f->request = r;
    f->config = config;
    f->tunnel = 1;
    f->upstream_start_ms = util_now_ms();
    f->upstream = upstream_connect(worker_upstream(f->worker), t->host, t->port,
                                   config->upstream_connect_timeout_ms,
                                   upstream_request_parent(config, t->host), config,
                                   &tunnel_callbacks, f);
    if (f->upstream == NULL)
        f->callbacks->failed(f->owner, 503, "cannot start upstream connection");
}
