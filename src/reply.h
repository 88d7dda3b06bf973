/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* reply.h — every response rlproxy writes itself (errors, 407, 429, overload, the per-client
 * connection cap): one function builds the status line, Content-Type, a Content-Length counted
 * from the body, Retry-After, RateLimit fields, Connection and Via. Owns no connection state and
 * decides nothing: the caller says what to answer; conn.c says when. */
#ifndef RLPROXY_REPLY_H
#define RLPROXY_REPLY_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct limiter_decision;
struct rate_rule;

struct reply {
    int status;
    const char *body;          /* plain text, one or more lines; a missing final '\n' is added */
    size_t body_len;
    const char *extra_headers; /* whole "Name: value\r\n" lines, or NULL */
    uint64_t retry_after_s;    /* 0: no Retry-After */
    int close;                 /* "Connection: close" */
    int head_only;             /* a response to HEAD: the head, with the body's length, no body */
};

/* Appends the reply to out; returns the bytes of its body that went out (0 for head_only), which
 * the access log counts. */
size_t reply_write(struct evbuffer *out, const struct reply *reply);

/* The RateLimit fields (draft-ietf-httpapi-ratelimit-headers) of a decision of `rule`: its policy
 * and what is left, "RateLimit-Policy: ...\r\nRateLimit: ...\r\n", with `reset_us` to go. */
void reply_rate_fields(const struct rate_rule *rule, uint32_t remaining, uint64_t reset_us,
                       char *buf, size_t len);

/* Where the texts of a composed reply live (the caller's stack). */
struct reply_text {
    char headers[512];
    char body[700];
};

/* 429 for a limiter decision (or an origin's pause of `host`): Retry-After, the RateLimit fields
 * of the rule, and a body that names the rule and why. */
void reply_429(struct reply *reply, struct reply_text *text, const struct limiter_decision *d,
               const char *host);
/* 407: the Basic challenge for realm; the body says whether credentials were wrong or missing. */
void reply_407(struct reply *reply, struct reply_text *text, const char *realm,
               int had_credentials);

/* Seconds for Retry-After: rounded up, at least 1. */
uint64_t reply_retry_after_s(uint64_t delay_us);

#endif
