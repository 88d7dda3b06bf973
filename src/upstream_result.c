/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* upstream_result.c — see upstream_result.h. */
#include "upstream_result.h"

#include <errno.h>
#include <stdio.h>

static enum retry_failure failure_kind(const struct upstream_outcome *u, CURLcode code)
{
    curl_off_t connect_us = 0;
    curl_easy_getinfo(u->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
    if (u->discarded_status)
        return RETRY_STATUS;
    if (u->timed_out)
        return RETRY_TIMEOUT;
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
        return RETRY_CONNECT_ERROR;
    case CURLE_OPERATION_TIMEDOUT:
        return connect_us == 0 ? RETRY_CONNECT_ERROR : RETRY_TIMEOUT;
    default:
        return RETRY_OTHER;
    }
}

/* With a parent proxy, curl's connect time is the time to reach the parent. */
static int proxy_connected(const struct upstream_outcome *u)
{
    curl_off_t connect_us = 0;
    curl_easy_getinfo(u->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
    return connect_us > 0;
}

void upstream_result_classify(const struct upstream_outcome *u, struct upstream_result *r)
{
    CURLcode code = u->code;
    long os_errno = 0, request_size = 0;
    curl_easy_getinfo(u->easy, CURLINFO_OS_ERRNO, &os_errno);
    curl_easy_getinfo(u->easy, CURLINFO_REQUEST_SIZE, &request_size);
    r->failure = failure_kind(u, code);
    /* nginx's rule: a request is safe to send again when no byte of it left */
    r->nothing_sent = r->failure == RETRY_CONNECT_ERROR || request_size == 0;
    r->discarded_status = u->discarded_status;
    r->retry_after_ms = u->retry_after_ms;
    const char *detail = u->error[0] ? u->error : curl_easy_strerror(code);
    const char *t = u->target_text;
    r->status = 502;
    if (u->timed_out) {
        r->status = 504;
        snprintf(r->message, sizeof r->message,
                 "upstream timed out: no response from %s within %llu ms", t,
                 (unsigned long long)u->response_timeout_ms);
        return;
    }
    if (u->head_too_big) {
        snprintf(r->message, sizeof r->message, "response header from %s too large", t);
        return;
    }
    if (u->denied[0] != '\0') {
        r->status = 403;
        r->failure = RETRY_OTHER;
        r->nothing_sent = 0; /* never worth a retry: the answer would be the same */
        snprintf(r->message, sizeof r->message,
                 "destination %s resolves to %s, which destinations.deny refuses", t, u->denied);
        return;
    }
    long connect_code = 0; /* the parent's answer to our CONNECT, if any */
    curl_easy_getinfo(u->easy, CURLINFO_HTTP_CONNECTCODE, &connect_code);
    if (u->parent[0] != '\0' &&
        (code == CURLE_COULDNT_RESOLVE_PROXY || connect_code >= 300 ||
         (code == CURLE_COULDNT_CONNECT && !proxy_connected(u)))) {
        if (os_errno == ECONNREFUSED)
            snprintf(r->message, sizeof r->message,
                     "connection refused by parent proxy %s (for %s)", u->parent, t);
        else
            snprintf(r->message, sizeof r->message, "parent proxy %s failed for %s: %s",
                     u->parent, t, detail);
        return;
    }
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(r->message, sizeof r->message, "cannot resolve host for %s: %s", t, detail);
        break;
    case CURLE_COULDNT_CONNECT:
        if (os_errno == ECONNREFUSED)
            snprintf(r->message, sizeof r->message, "connection refused by %s", t);
        else
            snprintf(r->message, sizeof r->message, "cannot connect to %s: %s", t, detail);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        r->status = 504;
        snprintf(r->message, sizeof r->message, "upstream timed out: %s: %s", t, detail);
        break;
    case CURLE_GOT_NOTHING:
        snprintf(r->message, sizeof r->message, "%s closed the connection without a response", t);
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        snprintf(r->message, sizeof r->message, "TLS with %s failed: %s", t, detail);
        break;
    default:
        snprintf(r->message, sizeof r->message, "upstream error from %s: %s", t, detail);
        break;
    }
}
