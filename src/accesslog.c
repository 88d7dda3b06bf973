/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* accesslog.c — see accesslog.h. */
#include "accesslog.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "limiter.h"
#include "log.h"

static void format_time(char *buf, size_t len)
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t used = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + used, len - used, ".%03ldZ", now.tv_nsec / 1000000);
}

/* Quotes, backslashes and control bytes become '?': a hostile target cannot forge log lines or
 * break the JSON. */
static void sanitize(char *out, size_t out_len, const char *s, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 1 < out_len; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[j++] = (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\') ? '?' : (char)ch;
    }
    out[j] = '\0';
}

void accesslog_decision(const struct limiter_decision *decision, const char **verdict,
                        const char **rule, int *paused)
{
    static const char *const verdicts[] = {"none", "admit", "delay", "reject"};
    *verdict = verdicts[decision->verdict];
    *rule = decision->rule != NULL ? decision->rule->name : NULL;
    *paused = decision->paused;
    if (decision->rule == NULL && !decision->paused)
        *verdict = "none";
    else if (decision->would == LIMITER_DELAY) /* enforce: false */
        *verdict = "would_delay";
    else if (decision->would == LIMITER_REJECT)
        *verdict = "would_reject";
}

/* a JSON string, or null */
static void json_string(char *out, size_t len, const char *sanitized)
{
    if (sanitized == NULL)
        snprintf(out, len, "null");
    else
        snprintf(out, len, "\"%s\"", sanitized);
}

void accesslog_write(enum access_format format, const struct accesslog_entry *e)
{
    if (!log_access_enabled())
        return;
    char when[40], method[40], target[1024], user[260], rule[160], reason[720];
    char limit[200], user_json[270], rule_json[170], reason_json[730], origin[80];
    format_time(when, sizeof when);
    sanitize(user, sizeof user, e->user, strlen(e->user));
    sanitize(method, sizeof method, e->method, e->method_len);
    sanitize(target, sizeof target, e->target, e->target_len);
    if (e->rule != NULL)
        sanitize(rule, sizeof rule, e->rule, strlen(e->rule));
    /* the combined field of earlier versions: "none", "admit:RULE", "delay:origin-pause" */
    if (e->paused)
        snprintf(limit, sizeof limit, "%s:origin-pause", e->verdict);
    else if (e->rule == NULL)
        snprintf(limit, sizeof limit, "none");
    else
        snprintf(limit, sizeof limit, "%s:%s", e->verdict, rule);
    char line[2800];
    int n;
    if (format == ACCESS_FORMAT_JSON) {
        json_string(user_json, sizeof user_json, strcmp(e->user, "-") == 0 ? NULL : user);
        json_string(rule_json, sizeof rule_json, e->rule != NULL ? rule : NULL);
        size_t reason_len = e->reason_len;
        while (reason_len > 0 && e->reason[reason_len - 1] == '\n')
            reason_len--;
        if (e->reason != NULL)
            sanitize(reason, sizeof reason, e->reason, reason_len);
        json_string(reason_json, sizeof reason_json, e->reason != NULL ? reason : NULL);
        /* what the origin said of its limit for this request: "origin":{"remaining":9,...} */
        if (e->origin_remaining >= 0 || e->origin_reset_ms >= 0)
            snprintf(origin, sizeof origin, "{\"remaining\":%lld,\"reset_ms\":%lld}",
                     (long long)e->origin_remaining, (long long)e->origin_reset_ms);
        else
            snprintf(origin, sizeof origin, "null");
        n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"client\":\"%s\",\"user\":%s,\"method\":\"%s\","
                     "\"target\":\"%s\",\"status\":%d,\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
                     ",\"total_ms\":%" PRIu64 ",\"upstream_ms\":%" PRIu64
                     ",\"limit\":\"%s\",\"rule\":%s,\"decision\":\"%s\",\"paused\":%s"
                     ",\"wait_ms\":%" PRIu64 ",\"attempts\":%u,\"origin\":%s,\"reason\":%s}",
                     when, e->client, user_json, method, target, e->status, e->bytes_in,
                     e->bytes_out, e->total_ms, e->upstream_ms, limit, rule_json, e->verdict,
                     e->paused ? "true" : "false", e->wait_ms, e->attempts, origin, reason_json);
    } else {
        n = snprintf(line, sizeof line,
                     "%s %s %s \"%s %s\" %d %" PRIu64 " %" PRIu64 " total=%" PRIu64
                     "ms upstream=%" PRIu64 "ms limit=%s wait=%" PRIu64 "ms attempts=%u",
                     when, e->client, user, method, target, e->status, e->bytes_in, e->bytes_out,
                     e->total_ms, e->upstream_ms, limit, e->wait_ms, e->attempts);
    }
    if (n > 0)
        log_access_line(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}
