/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* admin.c — see admin.h. evhttp is a web-server API, which is what this endpoint is: small
 * requests, whole responses. What a request asks for is admin_request.c's (fuzzed); this file
 * answers it. */
#include "admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin_page.h"
#include "admin_request.h"
#include "limiter.h"
#include "log.h"
#include "state_file.h"
#include "util.h"

struct admin {
    struct evhttp *http;
    struct admin_view *view;
    char *token; /* admin.token, or NULL when none is set */
};

/* ---- GET /limits ---------------------------------------------------------------------------- */

/* A JSON string: any byte outside printable ASCII is escaped, so keys taken from requests (host
 * names, user names) can never break the document or the page that shows it. */
static void json_string(struct evbuffer *out, const char *s, size_t len)
{
    evbuffer_add(out, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            evbuffer_add_printf(out, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            evbuffer_add_printf(out, "\\u%04x", ch);
        else
            evbuffer_add(out, &s[i], 1);
    }
    evbuffer_add(out, "\"", 1);
}

/* The word a rule field's value is written as in the config (config.c's table). */
static const char *rule_word(const char *field, int value)
{
    size_t n;
    const struct config_key *fields = config_rule_fields(&n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(fields[i].name, field) != 0 || fields[i].choices == NULL)
            continue;
        for (int j = 0; fields[i].choices[j] != NULL; j++)
            if (j == value)
                return fields[i].choices[j];
    }
    return "?";
}

struct shown_key {
    uint32_t used, held, in_flight;
    uint64_t reset_us;
    int64_t origin_limit, origin_remaining;
    uint64_t origin_reset_us, paused_us;
    size_t key_len;
    char key[LIMITER_KEY_TEXT_MAX];
};

/* The ADMIN_LIMITS_MAX_KEYS keys nearest their limit, kept as a min-heap on (used, held): a rule
 * with a million keys costs one pass and no allocation per key. */
struct top_keys {
    struct shown_key *heap;
    size_t count;
    uint64_t active;
};

static int nearer(const struct shown_key *a, const struct shown_key *b)
{
    return a->used != b->used ? a->used > b->used : a->held > b->held;
}

static void heap_sift_down(struct top_keys *t, size_t i)
{
    for (;;) {
        size_t least = i, l = 2 * i + 1, r = l + 1;
        if (l < t->count && nearer(&t->heap[least], &t->heap[l]))
            least = l;
        if (r < t->count && nearer(&t->heap[least], &t->heap[r]))
            least = r;
        if (least == i)
            return;
        struct shown_key swap = t->heap[i];
        t->heap[i] = t->heap[least];
        t->heap[least] = swap;
        i = least;
    }
}

static void keep_key(const struct limiter_window_view *v, void *arg)
{
    struct top_keys *t = arg;
    t->active++;
    struct shown_key k = {.used = v->used, .held = v->held, .reset_us = v->reset_us,
                          .in_flight = v->in_flight, .origin_limit = v->origin_limit,
                          .origin_remaining = v->origin_remaining,
                          .origin_reset_us = v->origin_reset_us, .paused_us = v->paused_us};
    size_t at;
    if (t->count < ADMIN_LIMITS_MAX_KEYS) {
        at = t->count++;
        /* sift up */
        while (at > 0 && nearer(&t->heap[(at - 1) / 2], &k)) {
            t->heap[at] = t->heap[(at - 1) / 2];
            at = (at - 1) / 2;
        }
    } else if (nearer(&k, &t->heap[0])) {
        at = 0;
    } else {
        return;
    }
    k.key_len = v->key_len < LIMITER_KEY_TEXT_MAX ? v->key_len : LIMITER_KEY_TEXT_MAX - 1;
    memcpy(k.key, v->key, k.key_len);
    t->heap[at] = k;
    if (at == 0 && t->count == ADMIN_LIMITS_MAX_KEYS)
        heap_sift_down(t, 0);
}

static int by_nearness(const void *a, const void *b)
{
    return nearer(a, b) ? -1 : nearer(b, a) ? 1 : 0;
}

static void render_rule(struct evbuffer *out, struct limiter *limiter, size_t index,
                        uint64_t now_us, struct top_keys *top)
{
    const struct rate_rule *rule = limiter_rule(limiter, index);
    struct limiter_rule_stats stats;
    limiter_rule_stats(limiter, index, &stats);
    top->count = 0;
    top->active = 0;
    limiter_foreach_window(limiter, index, now_us, keep_key, top);
    qsort(top->heap, top->count, sizeof *top->heap, by_nearness);
    evbuffer_add_printf(out, "%s{\"name\":", index > 0 ? "," : "");
    json_string(out, rule->name, strlen(rule->name));
    evbuffer_add_printf(
        out,
        ",\"key\":\"%s\",\"limit\":%u,\"window_ms\":%llu,\"over_limit\":\"%s\","
        "\"max_delay_ms\":%llu,\"shared\":%s,\"held\":%llu,\"admitted\":%llu,"
        "\"delayed\":%llu,\"rejected\":%llu,\"active_keys\":%llu,"
        "\"keys_shown\":%zu,\"keys\":[",
        rule_word("key", (int)rule->key), rule->limit, (unsigned long long)rule->window_ms,
        rule_word("over_limit", (int)rule->over_limit), (unsigned long long)rule->max_delay_ms,
        rule->shared ? "true" : "false", (unsigned long long)stats.queued,
        (unsigned long long)stats.admitted, (unsigned long long)stats.delayed,
        (unsigned long long)stats.rejected, (unsigned long long)top->active, top->count);
    for (size_t i = 0; i < top->count; i++) {
        const struct shown_key *k = &top->heap[i];
        evbuffer_add_printf(out, "%s{\"key\":", i > 0 ? "," : "");
        json_string(out, k->key, k->key_len);
        evbuffer_add_printf(out, ",\"used\":%u,\"limit\":%u,\"held\":%u,\"reset_ms\":%llu,"
                                 "\"in_flight\":%u,\"learned_limit\":",
                            k->used, rule->limit, k->held,
                            (unsigned long long)((k->reset_us + 999) / 1000), k->in_flight);
        /* what the origin said: its quota (limit, remaining, reset), or null */
        if (k->origin_remaining >= 0 || k->origin_limit >= 0)
            evbuffer_add_printf(out, "{\"limit\":%lld,\"remaining\":%lld,\"reset_ms\":%llu}",
                                (long long)k->origin_limit, (long long)k->origin_remaining,
                                (unsigned long long)((k->origin_reset_us + 999) / 1000));
        else
            evbuffer_add(out, "null", 4);
        if (k->paused_us > 0)
            evbuffer_add_printf(out, ",\"pause_until_ms\":%llu}",
                                (unsigned long long)((state_file_wall_now_us() + k->paused_us) /
                                                     1000));
        else
            evbuffer_add_printf(out, ",\"pause_until_ms\":null}");
    }
    evbuffer_add(out, "]}", 2);
}

static int render_limits(struct evbuffer *out, struct limiter *limiter)
{
    struct top_keys top = {calloc(ADMIN_LIMITS_MAX_KEYS, sizeof *top.heap), 0, 0};
    if (top.heap == NULL)
        return -1;
    uint64_t now_us = util_now_us();
    evbuffer_add_printf(out,
                        "{\"now_unix_ms\":%llu,\"max_keys_per_rule\":%d,\"rules\":[",
                        (unsigned long long)(state_file_wall_now_us() / 1000),
                        ADMIN_LIMITS_MAX_KEYS);
    for (size_t i = 0; i < limiter_rule_count(limiter); i++)
        render_rule(out, limiter, i, now_us, &top);
    evbuffer_add(out, "]}\n", 3);
    free(top.heap);
    return 0;
}

/* ---- requests -------------------------------------------------------------------------------- */

static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *content_type, struct evbuffer *body)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", content_type);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

/* A web page elsewhere must not be able to make the operator's browser reset windows (a POST
 * needs no preflight), nor reach us through a name rebound to 127.0.0.1: a POST that carries an
 * Origin must come from the address it is sent to, and that address must be a loopback literal
 * or localhost. Clients that are not browsers send no Origin. */
static int post_origin_ok(struct evhttp_request *req)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *origin = evhttp_find_header(in, "Origin");
    const char *host = evhttp_find_header(in, "Host");
    if (origin == NULL)
        return 1;
    if (host == NULL || strncasecmp(origin, "http://", 7) != 0 || strcasecmp(origin + 7, host) != 0)
        return 0;
    return strncmp(host, "127.", 4) == 0 || strncmp(host, "[::1]", 5) == 0 ||
           strncasecmp(host, "localhost", 9) == 0;
}

static void reset_window(struct admin *admin, struct evhttp_request *req,
                         const struct admin_request *ar, struct evbuffer *body)
{
    struct limiter *limiter = admin->view->limiter;
    size_t n = limiter_rule_count(limiter), index = 0;
    while (index < n && strcmp(limiter_rule(limiter, index)->name, ar->rule) != 0)
        index++;
    if (index == n) {
        evbuffer_add_printf(body, "no rule named %s\n", ar->rule);
        reply_text(req, 404, "Not Found", "text/plain", body);
    } else if (limiter_reset_window(limiter, index, ar->key, ar->key_len, util_now_us()) != 0) {
        evbuffer_add_printf(body, "rule %s has no window for that key\n", ar->rule);
        reply_text(req, 404, "Not Found", "text/plain", body);
    } else {
        char shown[LIMITER_KEY_TEXT_MAX];
        size_t shown_len = 0;
        for (size_t i = 0; i < ar->key_len && shown_len + 1 < sizeof shown; i++) /* one line */
            shown[shown_len++] = ar->key[i] >= 0x20 && ar->key[i] < 0x7f ? ar->key[i] : '?';
        shown[shown_len] = '\0';
        log_notice("admin: window of rule %s reset for key %s", ar->rule, shown);
        evbuffer_add_printf(body, "{\"reset\":true}\n");
        reply_text(req, 200, "OK", "application/json", body);
    }
}

static enum admin_method method_of(struct evhttp_request *req)
{
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
        return ADMIN_METHOD_GET;
    case EVHTTP_REQ_HEAD:
        return ADMIN_METHOD_HEAD;
    case EVHTTP_REQ_POST:
        return ADMIN_METHOD_POST;
    default:
        return ADMIN_METHOD_OTHER;
    }
}

static void answer(struct admin *admin, struct evhttp_request *req, struct evbuffer *body)
{
    const char *target = evhttp_request_get_uri(req);
    struct admin_request ar;
    admin_request_parse(method_of(req), target, target != NULL ? strlen(target) : 0, &ar);
    /* the page holds no data, so a browser may load it without the token (it cannot send one
     * with a navigation); the page's script sends the token from the URL fragment with each
     * request for data */
    if (admin->token != NULL && ar.route != ADMIN_ROUTE_PAGE &&
        !admin_request_token_ok(
            evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization"),
            admin->token)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer realm=\"rlproxy admin\"");
        evbuffer_add_printf(body, "this endpoint needs Authorization: Bearer <admin.token>\n");
        reply_text(req, 401, "Unauthorized", "text/plain", body);
        return;
    }
    if (!ar.method_allowed) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", ar.allow);
        evbuffer_add_printf(body, "method not allowed here; use %s\n", ar.allow);
        reply_text(req, 405, "Method Not Allowed", "text/plain", body);
        return;
    }
    switch (ar.route) {
    case ADMIN_ROUTE_PAGE:
        evbuffer_add(body, admin_page_html, strlen(admin_page_html));
        reply_text(req, 200, "OK", "text/html; charset=utf-8", body);
        break;
    case ADMIN_ROUTE_LIMITS:
        if (render_limits(body, admin->view->limiter) != 0) {
            evhttp_send_error(req, 503, NULL);
            return;
        }
        reply_text(req, 200, "OK", "application/json", body);
        break;
    case ADMIN_ROUTE_METRICS:
        metrics_render(body, admin->view->workers, admin->view->worker_count, admin->view->limiter,
                       &admin->view->process);
        reply_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
        break;
    case ADMIN_ROUTE_HEALTHZ:
        if (admin->view->stopping) {
            evbuffer_add_printf(body, "stopping\n");
            reply_text(req, 503, "Service Unavailable", "text/plain", body);
        } else {
            evbuffer_add_printf(body, "ok\n");
            reply_text(req, 200, "OK", "text/plain", body);
        }
        break;
    case ADMIN_ROUTE_RESET:
        if (!post_origin_ok(req)) {
            evbuffer_add_printf(body, "cross-origin reset refused\n");
            reply_text(req, 403, "Forbidden", "text/plain", body);
        } else {
            reset_window(admin, req, &ar, body);
        }
        break;
    case ADMIN_ROUTE_BAD_REQUEST:
        evbuffer_add_printf(body, "%s\n", ar.why);
        reply_text(req, 400, "Bad Request", "text/plain", body);
        break;
    case ADMIN_ROUTE_NOT_FOUND:
        evbuffer_add_printf(body, "not found: try /, /limits, /metrics or /healthz\n");
        reply_text(req, 404, "Not Found", "text/plain", body);
        break;
    }
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct evbuffer *body = evbuffer_new();
    if (body == NULL) {
        evhttp_send_error(req, 503, NULL);
        return;
    }
    answer(arg, req, body);
    evbuffer_free(body);
}

static int bind_one(struct admin *admin, const struct listen_addr *la)
{
    int fd = socket(la->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (la->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&la->addr, la->addr_len) != 0 || listen(fd, 64) != 0 ||
        evhttp_accept_socket_with_handle(admin->http, fd) == NULL) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    char text[80];
    if (getsockname(fd, (struct sockaddr *)&bound, &len) == 0)
        log_notice("admin endpoint listening on %s",
                   util_format_sockaddr((struct sockaddr *)&bound, text, sizeof text));
    return 0;
}

struct admin *admin_start(struct event_base *base, const struct config *config,
                          struct admin_view *view)
{
    struct admin *admin = calloc(1, sizeof *admin);
    if (admin == NULL)
        return NULL;
    admin->view = view;
    admin->http = evhttp_new(base);
    if (config->admin_token != NULL && config->admin_token[0] != '\0')
        admin->token = strdup(config->admin_token);
    if (admin->http == NULL ||
        (config->admin_token != NULL && config->admin_token[0] != '\0' && admin->token == NULL)) {
        admin_free(admin);
        return NULL;
    }
    /* bounds: the endpoint takes tiny GETs and bodiless POSTs only */
    evhttp_set_allowed_methods(admin->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                                EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                                EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    evhttp_set_max_headers_size(admin->http, 8192);
    evhttp_set_max_body_size(admin->http, 0);
    evhttp_set_timeout(admin->http, 10);
    evhttp_set_gencb(admin->http, on_request, admin);
    for (size_t i = 0; i < config->admin_listen_count; i++) {
        if (bind_one(admin, &config->admin_listen[i]) != 0) {
            log_error("admin.listen %s: %s", config->admin_listen[i].text, strerror(errno));
            admin_free(admin);
            return NULL;
        }
    }
    return admin;
}

void admin_free(struct admin *admin)
{
    if (admin == NULL)
        return;
    if (admin->http != NULL)
        evhttp_free(admin->http);
    free(admin->token);
    free(admin);
}
