/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* upstream_result.h — what a transfer that failed or ended early tells its owner: the status and
 * the short message the client gets (naming the target, never a parent proxy's credentials), and
 * the kind of failure the retry policy weighs. Reads the finished easy handle; owns nothing and
 * changes no transfer state (upstream.c owns the transfers). */
#ifndef RLPROXY_UPSTREAM_RESULT_H
#define RLPROXY_UPSTREAM_RESULT_H

#include <curl/curl.h>
#include <stdint.h>

#include "retry.h"

/* How a transfer ended, for its owner (upstream.h's on_done). */
struct upstream_result {
    int ok;            /* 1: the whole response arrived */
    enum retry_failure failure; /* when !ok: what kind of failure, for the retry policy */
    int nothing_sent;  /* when !ok: not one request byte reached the origin */
    int discarded_status; /* when on_status asked to discard the response: its status */
    int64_t retry_after_ms; /* the origin's Retry-After, -1 when absent */
    int status;        /* when !ok: what the client should get if no head was sent (502, 504) */
    char message[900]; /* when !ok: the cause, one line, names the target */
    uint64_t bytes_received;
};

/* The facts of one finished transfer, as upstream.c recorded them. */
struct upstream_outcome {
    CURL *easy;
    CURLcode code;
    int discarded_status; /* an answer the retry policy threw away */
    int timed_out;        /* the response timer fired */
    int head_too_big;
    int64_t retry_after_ms;
    uint64_t response_timeout_ms;
    const char *error;       /* curl's error buffer */
    const char *target_text; /* host:port as the client named it */
    const char *denied;      /* the address destinations.deny refused, or "" */
    const char *parent;      /* the parent proxy without credentials, or "" */
};

/* Fills status, message, failure, nothing_sent, discarded_status and retry_after_ms of r. */
void upstream_result_classify(const struct upstream_outcome *outcome, struct upstream_result *r);

#endif
