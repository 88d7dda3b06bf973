/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* reply.c — see reply.h. */
#include "reply.h"

#include <event2/buffer.h>
#include <stdio.h>

#include "config.h"
#include "http.h"
#include "http_response.h"
#include "limiter.h"

size_t reply_write(struct evbuffer *out, const struct reply *reply)
{
    size_t body_len = reply->body_len;
    int add_newline = body_len == 0 || reply->body[body_len - 1] != '\n';
    size_t length = body_len + (size_t)add_newline;
    char retry_after[40] = "";
    if (reply->retry_after_s > 0)
        snprintf(retry_after, sizeof retry_after, "Retry-After: %llu\r\n",
                 (unsigned long long)reply->retry_after_s);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: %zu\r\n%s%s%sVia: %s\r\n\r\n",
                        reply->status, http_status_reason(reply->status), length, retry_after,
                        reply->extra_headers != NULL ? reply->extra_headers : "",
                        reply->close ? "Connection: close\r\n" : "", http_via());
    if (reply->head_only)
        return 0;
    evbuffer_add(out, reply->body, body_len);
    if (add_newline)
        evbuffer_add(out, "\n", 1);
    return length;
}

void reply_rate_fields(const struct rate_rule *rule, uint32_t remaining, uint64_t reset_us,
                       char *buf, size_t len)
{
    uint64_t window_s = (rule->window_ms + 999) / 1000;
    uint64_t reset_s = (reset_us + 999999) / 1000000;
    snprintf(buf, len,
             "RateLimit-Policy: \"%s\";q=%u;w=%llu\r\nRateLimit: \"%s\";r=%u;t=%llu\r\n",
             rule->name, rule->limit, (unsigned long long)window_s, rule->name, remaining,
             (unsigned long long)reset_s);
}

uint64_t reply_retry_after_s(uint64_t delay_us)
{
    uint64_t seconds = (delay_us + 999999) / 1000000;
    return seconds > 0 ? seconds : 1;
}

static size_t clamp(int n, size_t size)
{
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

void reply_429(struct reply *reply, struct reply_text *text, const struct limiter_decision *d,
               const char *host)
{
    uint64_t retry_s = reply_retry_after_s(d->retry_after_us);
    int n;
    text->headers[0] = '\0';
    if (d->paused) {
        n = snprintf(text->body, sizeof text->body,
                     "%s asked for a pause (Retry-After); retry after %llu s", host,
                     (unsigned long long)retry_s);
    } else {
        reply_rate_fields(d->rule, d->remaining, d->retry_after_us, text->headers,
                          sizeof text->headers);
        n = snprintf(text->body, sizeof text->body,
                     "rate limit \"%s\" exceeded: %s; retry after %llu s", d->rule->name,
                     d->reason, (unsigned long long)retry_s);
    }
    *reply = (struct reply){.status = 429, .body = text->body,
                            .body_len = clamp(n, sizeof text->body),
                            .extra_headers = text->headers, .retry_after_s = retry_s};
}

void reply_407(struct reply *reply, struct reply_text *text, const char *realm,
               int had_credentials)
{
    snprintf(text->headers, sizeof text->headers,
             "Proxy-Authenticate: Basic realm=\"%s\", charset=\"UTF-8\"\r\n", realm);
    int n = snprintf(text->body, sizeof text->body, "%s",
                     had_credentials ? "proxy authentication failed: wrong user name or password"
                                     : "proxy authentication required (Proxy-Authorization: "
                                       "Basic)");
    *reply = (struct reply){.status = 407, .body = text->body,
                            .body_len = clamp(n, sizeof text->body),
                            .extra_headers = text->headers};
}
