/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* upstream_request.c — see upstream_request.h. */
#include "upstream_request.h"

#include <stdlib.h>
#include <string.h>

#include "http_response.h"
#include "util.h"

/* The CURLOPT_HTTPHEADER list in one allocation, nodes first and then their lines: curl only
 * reads the list, so it need not come from curl_slist_append (a malloc and a strdup per line).
 * The upstream releases it with free(). */
static char *put_line(char *p, const char *name, size_t name_len, const char *value,
                      size_t value_len)
{
    memcpy(p, name, name_len);
    p += name_len;
    if (value_len == 0) { /* "Name;" is curl's way to send an empty header ("Name:" deletes it) */
        *p++ = ';';
    } else {
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, value, value_len);
        p += value_len;
    }
    *p++ = '\0';
    return p;
}

static int dropped(const char *name, size_t len, const char *const *drop_headers)
{
    for (size_t i = 0; drop_headers != NULL && drop_headers[i] != NULL; i++)
        if (util_equals_nocase(name, len, drop_headers[i]))
            return 1;
    return 0;
}

static struct curl_slist *build_headers(const struct http_request *r,
                                        const char *const *drop_headers)
{
    const char *via = http_via();
    size_t via_len = strlen(via);
    /* bounds: every client header kept, plus Via and the two removals */
    size_t max_nodes = r->header_count + 3;
    size_t max_bytes = 5 + via_len + 1 + sizeof "Expect:" + sizeof "Accept:";
    for (size_t i = 0; i < r->header_count; i++)
        max_bytes += r->headers[i].name_len + r->headers[i].value_len + 3;
    struct curl_slist *nodes = malloc(max_nodes * sizeof *nodes + max_bytes);
    if (nodes == NULL)
        return NULL;
    char *p = (char *)(nodes + max_nodes);
    size_t n = 0;
    int has_accept = 0;
    for (size_t i = 0; i < r->header_count; i++) {
        const struct http_header *h = &r->headers[i];
        const char *name = http_arena(r, h->name_off);
        if (http_request_header_is_hop(r, name, h->name_len) ||
            dropped(name, h->name_len, drop_headers))
            continue;
        if (util_equals_nocase(name, h->name_len, "Accept"))
            has_accept = 1;
        nodes[n++].data = p;
        p = put_line(p, name, h->name_len, http_arena(r, h->value_off), h->value_len);
    }
    nodes[n++].data = p;
    p = put_line(p, "Via", 3, via, via_len);
    /* "Name:" with no value removes a header libcurl would add on its own. */
    nodes[n++].data = p;
    memcpy(p, "Expect:", sizeof "Expect:");
    p += sizeof "Expect:";
    if (!has_accept) {
        nodes[n++].data = p;
        memcpy(p, "Accept:", sizeof "Accept:");
        p += sizeof "Accept:";
    }
    for (size_t i = 0; i < n; i++)
        nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
    return nodes;
}

static int method_in(const struct retry_policy *p, const char *method)
{
    for (size_t i = 0; i < p->methods_count; i++)
        if (strcmp(p->methods[i], method) == 0)
            return 1;
    return 0;
}

const char *upstream_request_parent(const struct config *config, const char *host)
{
    if (config->upstream_proxy[0] == '\0' ||
        host_pattern_match(config->upstream_proxy_bypass, config->upstream_proxy_bypass_count, host))
        return NULL;
    return config->upstream_proxy;
}

/* "http://host:port" or "https://[v6]:port" into buf; its length. snprintf costs more than the
 * rest of the request's bookkeeping here. */
static size_t format_origin(const struct http_target *t, char *buf, size_t len)
{
    char port[8];
    size_t port_len = 0;
    for (unsigned p = t->port; p > 0 || port_len == 0; p /= 10)
        port[port_len++] = (char)('0' + p % 10);
    const char *scheme = t->scheme == HTTP_SCHEME_HTTPS ? "https://" : "http://";
    size_t scheme_len = strlen(scheme), host_len = strlen(t->host);
    size_t need = scheme_len + host_len + 2 * t->host_is_ipv6 + 1 + port_len + 1;
    if (need > len) {
        buf[0] = '\0';
        return 0;
    }
    char *o = buf;
    memcpy(o, scheme, scheme_len);
    o += scheme_len;
    if (t->host_is_ipv6)
        *o++ = '[';
    memcpy(o, t->host, host_len);
    o += host_len;
    if (t->host_is_ipv6)
        *o++ = ']';
    *o++ = ':';
    while (port_len > 0)
        *o++ = port[--port_len];
    *o = '\0';
    return (size_t)(o - buf);
}

int upstream_request_build(struct upstream_request *req, struct upstream_request_text *text,
                           const struct http_request *r, const struct config *config,
                           int intercepted, const char *const *drop_headers)
{
    const struct http_target *t = &r->target;
    size_t url_len = format_origin(t, text->url, sizeof text->url);

    /* the request target curl sends: the path as the client wrote it, "/" when it had none */
    const char *path = http_arena(r, t->path_off);
    size_t path_len = t->path_len;
    text->target = path_len + 2 <= sizeof text->target_small ? text->target_small
                                                              : malloc(path_len + 2);
    if (text->target == NULL)
        return -1;
    size_t used = 0;
    if (path_len == 0 || path[0] != '/')
        text->target[used++] = '/';
    memcpy(text->target + used, path, path_len);
    text->target[used + path_len] = '\0';
    /* for messages: what the client asked for, as https://host:port/path inside a tunnel */
    size_t text_used = 0;
    if (intercepted && r->target_len > 0 && http_arena(r, r->target_off)[0] == '/') {
        memcpy(text->target_text, text->url, url_len);
        text_used = url_len;
    }
    size_t text_len = r->target_len < sizeof text->target_text - 1 - text_used
                          ? r->target_len
                          : sizeof text->target_text - 1 - text_used;
    memcpy(text->target_text + text_used, http_arena(r, r->target_off), text_len);
    text->target_text[text_used + text_len] = '\0';

    *req = (struct upstream_request){
        .url = text->url,
        .request_target = text->target,
        .method = http_arena(r, r->method_off),
        .is_head = r->method == HTTP_HEAD,
        .idempotent = method_in(&config->retry, http_arena(r, r->method_off)),
        .upload = r->has_body || r->content_length == 0,
        .upload_length = r->chunked ? -1 : r->content_length,
        .headers = build_headers(r, drop_headers),
        .target_text = text->target_text,
        .parent_proxy = upstream_request_parent(config, t->host),
        .policy = config,
        .extra_ca_file = config->tls_upstream_ca_file,
        .connect_timeout_ms = config->upstream_connect_timeout_ms,
        .response_timeout_ms = config->upstream_response_timeout_ms,
    };
    if (req->headers == NULL) {
        upstream_request_text_free(text);
        return -1;
    }
    return 0;
}

void upstream_request_text_free(struct upstream_request_text *text)
{
    if (text->target != NULL && text->target != text->target_small)
        free(text->target);
    text->target = NULL;
}
