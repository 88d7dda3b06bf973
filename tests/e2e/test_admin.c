/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_admin.c — the admin endpoint (issue 3, item 7): /healthz, /metrics in the Prometheus text
 * format (0.0.4) with HELP and TYPE for every family, and the values moving with the traffic:
 * requests and responses by class, open connections, tunnels, client bytes, config reloads;
 * the request histograms, build info and last-reload gauges (issue 18); the family table in
 * metrics.c tied to /metrics and rlproxy(8) (issue 15); promtool's lint of a live page.
 * Unknown paths get 404, other methods 405, and `admin.listen: []` turns the endpoint off. */
#include "harness.h"
#include "metrics.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define T_MS 10000

/* ---- scraping ---------------------------------------------------------------------------------
 */

/* Waits (bounded) for the "rlproxy VERSION started" line, which comes after every listener and
 * the admin endpoint have been announced. */
static void wait_started(struct proxy *p)
{
    uint64_t deadline = now_ms() + 5000;
    while (!proxy_log_contains(p, " started: ")) {
        ck_assert_msg(now_ms() < deadline, "no 'started' line; log:\n%s", proxy_log_tail(p, 800));
        sleep_ms(10);
    }
}

static char *scrape(struct proxy *p)
{
    struct fetch_res rs;
    proxy_admin_fetch(p, NULL, "/metrics", NULL, &rs);
    ck_assert_int_eq(rs.status, 200);
    char *body = rs.body;
    rs.body = NULL;
    fetch_free(&rs);
    return body;
}

/* The value of one series ("name" or "name{label=\"v\"}") in an exposition; fails the test when
 * the series is missing. */
static double series_in(const char *text, const char *series)
{
    size_t len = strlen(series);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, series, len) == 0 && line[len] == ' ') {
            char *end;
            double v = strtod(line + len + 1, &end);
            ck_assert_msg(end != line + len + 1 && (*end == '\n' || *end == '\0'),
                          "unparseable sample: %.80s", line);
            return v;
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    /* Check's messages are limited (check_pack.c: "Message string too long" turns the failure into
     * an early exit): the page's start only */
    ck_abort_msg("series %s missing from /metrics (%zu bytes), which begins:\n%.1500s", series,
                 strlen(text), text);
    return -1;
}

static double metric(struct proxy *p, const char *series)
{
    char *text = scrape(p);
    double v = series_in(text, series);
    free(text);
    return v;
}

/* Polls (bounded) until the series has the value; returns the last value seen */
static double wait_metric(struct proxy *p, const char *series, double want, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    double v;
    while ((v = metric(p, series)) != want && now_ms() < deadline)
        sleep_ms(20);
    return v;
}

/* A histogram's samples (NAME_bucket, NAME_sum, NAME_count) belong to the family NAME: when the
 * text before `line` declares NAME a histogram, name is cut back to it. */
static void histogram_family(char *text, char *line, char *name)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(name), len = strlen(suffixes[k]);
        if (n <= len || strcmp(name + n - len, suffixes[k]) != 0)
            continue;
        char type[200];
        snprintf(type, sizeof type, "# TYPE %.*s histogram\n", (int)(n - len), name);
        char saved = *line;
        *line = '\0';
        int declared = strstr(text, type) != NULL;
        *line = saved;
        if (declared)
            name[n - len] = '\0';
        return;
    }
}

/* ---- tests ------------------------------------------------------------------------------------
 */

START_TEST(test_healthz)
{
    struct proxy *p = proxy_start(NULL);
    struct fetch_res rs;
    proxy_admin_fetch(p, NULL, "/healthz", NULL, &rs);
    ck_assert_int_eq(rs.status, 200);
    ck_assert_str_eq(rs.body, "ok\n");
    fetch_free(&rs);
    proxy_stop(p);
}
END_TEST

START_TEST(test_metrics_format)
{
    struct proxy *p = proxy_start(NULL);
    struct fetch_res rs;
    proxy_admin_fetch(p, NULL, "/metrics", NULL, &rs);
    ck_assert_int_eq(rs.status, 200);
    const char *ct = fetch_header(&rs, "Content-Type", 0);
    ck_assert_msg(ct != NULL && strncmp(ct, "text/plain; version=0.0.4", 25) == 0,
                  "Content-Type: %s", ct != NULL ? ct : "(none)");
    /* every sample's family has exactly one HELP and one TYPE line, both before its first sample;
     * every sample value is a number; the families the issue names are present */
    char *text = rs.body;
    size_t samples = 0;
    for (char *line = text; *line != '\0';) {
        char *nl = strchr(line, '\n');
        ck_assert_msg(nl != NULL, "last line not terminated: %s", line);
        *nl = '\0';
        if (line[0] != '#') {
            ck_assert_msg(line[0] != '\0', "empty line in the exposition");
            char name[128];
            size_t n = strcspn(line, "{ ");
            ck_assert(n > 0 && n < sizeof name);
            memcpy(name, line, n);
            name[n] = '\0';
            histogram_family(text, line, name);
            char help[160], type[160];
            snprintf(help, sizeof help, "# HELP %s ", name);
            snprintf(type, sizeof type, "# TYPE %s ", name);
            *nl = '\0';
            /* search only the text before this sample */
            char saved = *line;
            *line = '\0';
            char *h = strstr(text, help), *t = strstr(text, type);
            *line = saved;
            ck_assert_msg(h != NULL && t != NULL, "family %s has no HELP or TYPE before: %s", name,
                          line);
            ck_assert_msg(strstr(h + 1, help) == NULL || strstr(h + 1, help) > line,
                          "two HELP lines for %s", name);
            const char *sp = strrchr(line, ' ');
            char *end;
            ck_assert(sp != NULL);
            strtod(sp + 1, &end);
            ck_assert_msg(end != sp + 1 && *end == '\0', "sample value not a number: %s", line);
            samples++;
        } else {
            ck_assert_msg(strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0,
                          "unexpected comment: %s", line);
            if (strncmp(line, "# TYPE ", 7) == 0) {
                const char *kind = strrchr(line, ' ') + 1;
                ck_assert_msg(strcmp(kind, "counter") == 0 || strcmp(kind, "gauge") == 0 ||
                                  strcmp(kind, "histogram") == 0 || strcmp(kind, "summary") == 0 ||
                                  strcmp(kind, "untyped") == 0,
                              "bad TYPE: %s", line);
            }
        }
        *nl = '\n';
        line = nl + 1;
    }
    ck_assert_msg(samples >= 10, "only %zu samples", samples);
    static const char *const families[] = {
        "rlproxy_requests_total",     "rlproxy_responses_total",      "rlproxy_open_connections",
        "rlproxy_tunnels_total",      "rlproxy_open_tunnels",         "rlproxy_client_bytes_total",
        "rlproxy_upstream_transfers", "rlproxy_config_reloads_total",
    };
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        char type[160];
        snprintf(type, sizeof type, "# TYPE %s ", families[i]);
        ck_assert_msg(strstr(text, type) != NULL, "family %s missing", families[i]);
    }
    /* counters end in _total */
    for (const char *t = text; (t = strstr(t, "# TYPE ")) != NULL; t++) {
        const char *eol = strchr(t, '\n');
        ck_assert(eol != NULL);
        if (eol - t > 8 && strncmp(eol - 8, " counter", 8) == 0)
            ck_assert_msg(strncmp(eol - 14, "_total", 6) == 0, "counter without _total: %.*s",
                          (int)(eol - t), t);
    }
    fetch_free(&rs);
    proxy_stop(p);
}
END_TEST

START_TEST(test_request_and_response_counters)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    double req0 = metric(p, "rlproxy_requests_total");
    double ok0 = metric(p, "rlproxy_responses_total{class=\"2xx\"}");
    double c4 = metric(p, "rlproxy_responses_total{class=\"4xx\"}");
    double c5 = metric(p, "rlproxy_responses_total{class=\"5xx\"}");
    double out0 = metric(p, "rlproxy_client_bytes_total{direction=\"out\"}");
    double in0 = metric(p, "rlproxy_client_bytes_total{direction=\"in\"}");
    const int n = 7;
    char url[256];
    for (int i = 0; i < n; i++) {
        struct fetch_res rs;
        fetch_via(p->port, origin_url(o, "/bytes/20000", url, sizeof url), &rs);
        ck_assert_int_eq(rs.status, 200);
        ck_assert_uint_eq(rs.body_len, 20000);
        fetch_free(&rs);
    }
    /* and an upload: 5000 body bytes in */
    struct fetch_req up = {
        .url = origin_url(o, "/sink", url, sizeof url), .proxy_port = p->port, .gen_upload = 5000};
    struct fetch_res rs;
    fetch(&up, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "upload: %s", rs.err);
    fetch_free(&rs);
    char *text = scrape(p);
    double dreq = series_in(text, "rlproxy_requests_total") - req0;
    double dok = series_in(text, "rlproxy_responses_total{class=\"2xx\"}") - ok0;
    double dout = series_in(text, "rlproxy_client_bytes_total{direction=\"out\"}") - out0;
    double din = series_in(text, "rlproxy_client_bytes_total{direction=\"in\"}") - in0;
    ck_assert_msg(dreq == n + 1, "requests_total moved by %.0f after %d requests", dreq, n + 1);
    ck_assert_msg(dok == n + 1, "2xx moved by %.0f after %d 200s", dok, n + 1);
    ck_assert_msg(series_in(text, "rlproxy_responses_total{class=\"4xx\"}") == c4, "4xx moved");
    ck_assert_msg(series_in(text, "rlproxy_responses_total{class=\"5xx\"}") == c5, "5xx moved");
    ck_assert_msg(dout >= n * 20000.0, "client bytes out moved by %.0f, sent %d body bytes", dout,
                  n * 20000);
    ck_assert_msg(din >= 5000, "client bytes in moved by %.0f after a 5000-byte upload", din);
    free(text);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_5xx_from_origin_counted)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    double c5 = metric(p, "rlproxy_responses_total{class=\"5xx\"}");
    double c2 = metric(p, "rlproxy_responses_total{class=\"2xx\"}");
    char url[256];
    ck_assert_int_eq(status_via(p->port, origin_url(o, "/status/502", url, sizeof url)), 502);
    ck_assert_msg(metric(p, "rlproxy_responses_total{class=\"5xx\"}") == c5 + 1,
                  "an origin's 502 did not move class=\"5xx\"");
    ck_assert(metric(p, "rlproxy_responses_total{class=\"2xx\"}") == c2);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* Replies the proxy makes itself (a 502 when the origin refuses, a 403, a 400) are responses too */
START_TEST(test_proxy_generated_errors_counted)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    double req0 = metric(p, "rlproxy_requests_total");
    double c5 = metric(p, "rlproxy_responses_total{class=\"5xx\"}");
    double c4 = metric(p, "rlproxy_responses_total{class=\"4xx\"}");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", harness_closed_port());
    ck_assert_int_eq(status_via(p->port, url), 502);
    /* CONNECT to a port not in connect.allowed_ports: 403 */
    struct raw *c = raw_connect(p->port);
    struct http_response r;
    ck_assert_int_eq(raw_tunnel_request(c, o->port, &r, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 403);
    http_response_free(&r);
    raw_close(c);
    char *text = scrape(p);
    double dreq = series_in(text, "rlproxy_requests_total") - req0;
    double d5 = series_in(text, "rlproxy_responses_total{class=\"5xx\"}") - c5;
    double d4 = series_in(text, "rlproxy_responses_total{class=\"4xx\"}") - c4;
    free(text);
    ck_assert_msg(dreq == 2, "requests_total moved by %.0f", dreq);
    ck_assert_msg(d5 == 1, "a proxy-made 502 moved class=\"5xx\" by %.0f", d5);
    ck_assert_msg(d4 == 1, "a proxy-made 403 moved class=\"4xx\" by %.0f", d4);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_open_connections_gauge)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    ck_assert(metric(p, "rlproxy_open_connections") == 0);
    struct raw *c = raw_connect(p->port);
    double v = wait_metric(p, "rlproxy_open_connections", 1, 3000);
    ck_assert_msg(v == 1, "open_connections %.0f with one raw connection open", v);
    /* still open after a keep-alive request on it */
    char *req = proxy_request("GET", o, "/bytes/10", NULL);
    raw_send_str(c, req);
    free(req);
    struct http_response r;
    ck_assert_int_eq(raw_read_response(c, &r, 0, T_MS), RAW_OK);
    http_response_free(&r);
    struct raw *c2 = raw_connect(p->port);
    v = wait_metric(p, "rlproxy_open_connections", 2, 3000);
    ck_assert_msg(v == 2, "open_connections %.0f with two connections open", v);
    raw_close(c);
    raw_close(c2);
    v = wait_metric(p, "rlproxy_open_connections", 0, 3000);
    ck_assert_msg(v == 0, "open_connections %.0f after every client left", v);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_tunnel_metrics)
{
    struct origin *o;
    struct proxy *p = proxy_start_tunnel_to(&o, 1);
    double t0 = metric(p, "rlproxy_tunnels_total");
    double out0 = metric(p, "rlproxy_client_bytes_total{direction=\"out\"}");
    ck_assert(metric(p, "rlproxy_open_tunnels") == 0);
    /* a raw tunnel held open */
    struct raw *c = raw_connect(p->port);
    struct http_response r;
    ck_assert_int_eq(raw_tunnel_request(c, o->port, &r, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 200);
    http_response_free(&r);
    double v = wait_metric(p, "rlproxy_open_tunnels", 1, 3000);
    ck_assert_msg(v == 1, "open_tunnels %.0f with a tunnel open", v);
    ck_assert(metric(p, "rlproxy_tunnels_total") == t0 + 1);
    ck_assert_msg(metric(p, "rlproxy_open_connections") == 0,
                  "a tunnel counted as an open connection");
    raw_close(c);
    v = wait_metric(p, "rlproxy_open_tunnels", 0, 3000);
    ck_assert_msg(v == 0, "open_tunnels %.0f after the tunnel closed", v);
    /* TLS through a tunnel: the bytes count toward client bytes out */
    char url[256];
    struct fetch_req rq = {.url = origin_url(o, "/bytes/50000", url, sizeof url),
                           .proxy_port = p->port,
                           .tunnel = 1,
                           .cainfo = harness_ca_path(),
                           .check_pattern = 1};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "https via tunnel: %s", rs.err);
    ck_assert_uint_eq(rs.received, 50000);
    fetch_free(&rs);
    v = wait_metric(p, "rlproxy_tunnels_total", t0 + 2, 3000);
    ck_assert_msg(v == t0 + 2, "tunnels_total %.0f, want %.0f", v, t0 + 2);
    ck_assert(wait_metric(p, "rlproxy_open_tunnels", 0, 3000) == 0);
    double dout = metric(p, "rlproxy_client_bytes_total{direction=\"out\"}") - out0;
    ck_assert_msg(dout >= 50000, "client bytes out moved by %.0f after 50000 bytes via TLS", dout);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_reload_counters)
{
    struct proxy *p = proxy_start(NULL);
    ck_assert(metric(p, "rlproxy_config_reloads_total{result=\"ok\"}") == 0);
    ck_assert(metric(p, "rlproxy_config_reloads_total{result=\"failed\"}") == 0);
    /* the start-up load counts as the last successful one */
    double started = metric(p, "rlproxy_start_time_seconds");
    ck_assert(metric(p, "rlproxy_config_last_reload_success") == 1);
    ck_assert(metric(p, "rlproxy_config_last_reload_success_timestamp_seconds") == started);
    sleep_ms(1100); /* so that the reload's timestamp can differ from the start's (whole seconds) */
    write_text(p->conf_path, "listen: [\"127.0.0.1:0\"]\nadmin:\n  listen: [\"127.0.0.1:0\"]\n"
                             "timeouts:\n  client_idle: 20s\n");
    ck_assert(kill(p->pid, SIGHUP) == 0);
    ck_assert(proxy_wait_log(p, "configuration reloaded from", 5000));
    ck_assert(wait_metric(p, "rlproxy_config_reloads_total{result=\"ok\"}", 1, 2000) == 1);
    ck_assert(metric(p, "rlproxy_config_reloads_total{result=\"failed\"}") == 0);
    ck_assert(metric(p, "rlproxy_config_last_reload_success") == 1);
    double reloaded = metric(p, "rlproxy_config_last_reload_success_timestamp_seconds");
    ck_assert_msg(reloaded > started, "last successful reload at %.0f, started at %.0f", reloaded,
                  started);
    write_text(p->conf_path, "listen: [\"127.0.0.1:0\"]\nadmin:\n  listen: [\"127.0.0.1:0\"]\n"
                             "timeouts:\n  client_idle: never\n");
    ck_assert(kill(p->pid, SIGHUP) == 0);
    ck_assert(proxy_wait_log(p, "reload failed", 5000));
    ck_assert(wait_metric(p, "rlproxy_config_reloads_total{result=\"failed\"}", 1, 2000) == 1);
    ck_assert(metric(p, "rlproxy_config_reloads_total{result=\"ok\"}") == 1);
    ck_assert(metric(p, "rlproxy_config_last_reload_success") == 0);
    ck_assert(metric(p, "rlproxy_config_last_reload_success_timestamp_seconds") == reloaded);
    /* the endpoint survives reloads on the same port */
    ck_assert_int_eq(proxy_admin_status(p, NULL, "/healthz", NULL), 200);
    proxy_stop(p);
}
END_TEST

START_TEST(test_not_found_and_method_not_allowed)
{
    struct proxy *p = proxy_start(NULL);
    ck_assert_int_eq(proxy_admin_status(p, NULL, "/nope", NULL), 404);
    ck_assert_int_eq(proxy_admin_status(p, NULL, "/metrics/extra", NULL), 404);
    ck_assert_int_eq(proxy_admin_status(p, "POST", "/metrics", NULL), 405);
    ck_assert_int_eq(proxy_admin_status(p, "DELETE", "/healthz", NULL), 405);
    ck_assert_int_eq(proxy_admin_status(p, "HEAD", "/healthz", NULL), 200);
    /* a query string does not change the path */
    ck_assert_int_eq(proxy_admin_status(p, NULL, "/healthz?verbose=1", NULL), 200);
    proxy_stop(p);
}
END_TEST

START_TEST(test_healthz_while_draining)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    struct raw *c = raw_connect_send(p->port, "GET", o, "/slow?delay=2", NULL);
    sleep_ms(300);
    ck_assert(kill(p->pid, SIGTERM) == 0);
    ck_assert(proxy_wait_log(p, "stopping", 2000));
    struct fetch_res rs;
    proxy_admin_fetch(p, NULL, "/healthz", NULL, &rs);
    ck_assert_msg(rs.status == 503, "/healthz while draining: %ld", rs.status);
    fetch_free(&rs);
    raw_expect_status(c, 200, "the request in flight while draining");
    /* proxy_stop sends another TERM (a second signal) and checks the exit status. The client
     * stays until then: once it leaves, the drain is complete and rlproxy exits by itself, maybe
     * before proxy_stop looks (it failed so on a loaded machine). */
    proxy_stop(p);
    raw_close(c);
    origin_stop(o);
}
END_TEST

START_TEST(test_admin_disabled)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, "admin:\n  listen: []\n");
    wait_started(p);
    ck_assert_int_eq(p->admin_port, -1);
    ck_assert(!proxy_log_contains(p, "admin endpoint listening on"));
    ck_assert_msg(!proxy_log_contains(p, "admin endpoint"), "log:\n%s", proxy_log_tail(p, 800));
    /* the proxy itself serves */
    char url[256];
    ck_assert_int_eq(status_via(p->port, origin_url(o, "/bytes/10", url, sizeof url)), 200);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* rlproxy(8)'s METRICS section, malloc'd (fails the test when the page cannot be read) */
static char *man_metrics_section(void)
{
    const char *dir = getenv("RLPROXY_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/man/rlproxy.8", dir != NULL && *dir ? dir : ".");
    char *man = read_file(path, NULL);
    ck_assert_msg(man != NULL, "cannot read %s (set RLPROXY_SRCDIR)", path);
    char *start = strstr(man, "\n.Sh METRICS\n");
    ck_assert_msg(start != NULL, "%s has no METRICS section", path);
    char *end = strstr(start + 1, "\n.Sh ");
    if (end != NULL)
        end[1] = '\0';
    char *section = strdup(start);
    free(man);
    return section;
}

/* The table in metrics.c, /metrics and rlproxy(8) name the same families: every row is rendered
 * with its HELP and TYPE, every family rendered is a row, every row is documented under METRICS
 * with its type, and METRICS documents no family the table lacks. */
START_TEST(test_metrics_table_rendered_and_documented)
{
    struct proxy *p = proxy_start("rate_limits:\n  - name: r1\n    limit: 10\n    window: 1s\n");
    char *text = scrape(p);
    char *man = man_metrics_section();
    size_t rows = metrics_family_count();
    ck_assert_msg(rows >= 30, "only %zu families in the table", rows);
    ck_assert(metrics_family(rows) == NULL);
    for (size_t i = 0; i < rows; i++) {
        const struct metrics_family *f = metrics_family(i);
        char line[600];
        snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                 metrics_type_name(f->type));
        ck_assert_msg(strstr(text, line) != NULL, "family %s not rendered as:\n%s", f->name, line);
        snprintf(line, sizeof line, ".It Sy %s Pq %s\n", f->name, metrics_type_name(f->type));
        ck_assert_msg(strstr(man, line) != NULL, "rlproxy(8) METRICS lacks: %s", line);
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(strcmp(metrics_family(j)->name, f->name) != 0, "two rows for %s",
                          f->name);
    }
    int rendered = 0;
    for (const char *h = strstr(text, "# HELP "); h != NULL; h = strstr(h + 1, "# HELP ")) {
        char name[128];
        ck_assert(sscanf(h, "# HELP %127s", name) == 1);
        int found = 0;
        for (size_t i = 0; i < rows && !found; i++)
            found = strcmp(metrics_family(i)->name, name) == 0;
        ck_assert_msg(found, "/metrics has a family %s that is not in the table", name);
        rendered++;
    }
    ck_assert_int_eq(rendered, (int)rows);
    for (const char *it = strstr(man, ".It Sy "); it != NULL; it = strstr(it + 1, ".It Sy ")) {
        char name[128];
        ck_assert(sscanf(it, ".It Sy %127s", name) == 1);
        int found = 0;
        for (size_t i = 0; i < rows && !found; i++)
            found = strcmp(metrics_family(i)->name, name) == 0;
        ck_assert_msg(found, "rlproxy(8) METRICS documents %s, which the table lacks", name);
    }
    free(man);
    free(text);
    proxy_stop(p);
}
END_TEST

/* Samples of one rule's histogram: NAME_count{rule="RULE"} or NAME_bucket{rule="RULE",le="LE"} */
static double histogram_count(const char *text, const char *name, const char *rule)
{
    char series[256];
    snprintf(series, sizeof series, "%s_count{rule=\"%s\"}", name, rule);
    return series_in(text, series);
}

static double histogram_bucket(const char *text, const char *name, const char *rule, const char *le)
{
    char series[256];
    snprintf(series, sizeof series, "%s_bucket{rule=\"%s\",le=\"%s\"}", name, rule, le);
    return series_in(text, series);
}

static void get_status(struct proxy *p, struct origin *o, const char *path, long want)
{
    long status = origin_status_via(p, o, path);
    ck_assert_msg(status == want, "%s: status %ld, want %ld", path, status, want);
}

#define H_TOTAL "rlproxy_request_duration_seconds"
#define H_WAIT "rlproxy_limiter_wait_seconds"
#define H_UPSTREAM "rlproxy_upstream_duration_seconds"

/* One request moves each of its rule's histograms by one; a request held by a delay rule for
 * about 3 s lands in the wait buckets above 0.25 s and at or below 10 s; a rejected request is a
 * request but never went upstream; a request no rule matched counts under rule="". */
START_TEST(test_histograms_count_requests)
{
    struct origin *o;
    struct proxy *p =
        proxy_start_with_origin(&o, 0,
                                "rate_limits:\n"
                                "  - name: held\n    match: { path_prefix: \"/bytes/\" }\n"
                                "    limit: 1\n    window: 3s\n    over_limit: delay\n"
                                "    max_delay: 20s\n"
                                "  - name: refused\n    match: { path_prefix: \"/status/\" }\n"
                                "    limit: 1\n    window: 1h\n    over_limit: reject\n");
    char *before = scrape(p);
    ck_assert(histogram_count(before, H_TOTAL, "held") == 0);
    ck_assert(histogram_count(before, H_WAIT, "held") == 0);
    ck_assert(histogram_count(before, H_UPSTREAM, "held") == 0);
    ck_assert(histogram_count(before, H_TOTAL, "") == 0);
    free(before);

    get_status(p, o, "/bytes/10", 200); /* admitted at once */
    char *one = scrape(p);
    ck_assert(histogram_count(one, H_TOTAL, "held") == 1);
    ck_assert(histogram_count(one, H_WAIT, "held") == 1);
    ck_assert(histogram_count(one, H_UPSTREAM, "held") == 1);
    ck_assert_msg(histogram_bucket(one, H_WAIT, "held", "0.25") == 1, "an admitted request waited");
    ck_assert(histogram_bucket(one, H_TOTAL, "held", "+Inf") == 1);
    ck_assert(histogram_count(one, H_TOTAL, "refused") == 0);
    ck_assert(histogram_count(one, H_TOTAL, "") == 0);

    uint64_t t0 = now_ms();
    get_status(p, o, "/bytes/20", 200); /* the window is full: held until the first one leaves */
    uint64_t held_ms = now_ms() - t0;
    char *two = scrape(p);
    ck_assert(histogram_count(two, H_TOTAL, "held") == 2);
    ck_assert(histogram_count(two, H_WAIT, "held") == 2);
    ck_assert(histogram_count(two, H_UPSTREAM, "held") == 2);
    ck_assert_msg(histogram_bucket(two, H_WAIT, "held", "0.25") == 1 &&
                      histogram_bucket(two, H_WAIT, "held", "10") == 2,
                  "a request held %llu ms: wait buckets 0.25 -> %.0f, 10 -> %.0f",
                  (unsigned long long)held_ms, histogram_bucket(two, H_WAIT, "held", "0.25"),
                  histogram_bucket(two, H_WAIT, "held", "10"));
    char series[128];
    snprintf(series, sizeof series, "%s_sum{rule=\"held\"}", H_WAIT);
    double wait_s = series_in(two, series);
    ck_assert_msg(wait_s > 0.25 && wait_s <= 10, "wait sum %.3f s after a hold of %llu ms", wait_s,
                  (unsigned long long)held_ms);
    snprintf(series, sizeof series, "%s_sum{rule=\"held\"}", H_TOTAL);
    ck_assert_msg(series_in(two, series) >= wait_s, "total time below the wait");

    get_status(p, o, "/status/204", 204);
    get_status(p, o, "/status/204", 429);
    get_status(p, o, "/sink", 200); /* no rule matches */
    char *three = scrape(p);
    ck_assert(histogram_count(three, H_TOTAL, "refused") == 2);
    ck_assert_msg(histogram_count(three, H_UPSTREAM, "refused") == 1,
                  "a rejected request counted as an upstream transfer");
    ck_assert(histogram_count(three, H_TOTAL, "") == 1);
    ck_assert(histogram_count(three, H_UPSTREAM, "") == 1);
    ck_assert(histogram_count(three, H_TOTAL, "held") == 2);
    free(one);
    free(two);
    free(three);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* A reload that changes the rule names resets the histograms: the positions now name other rules */
START_TEST(test_histograms_reset_when_rules_change)
{
    struct origin *o = origin_start(0);
    struct proxy *p =
        proxy_start("rate_limits:\n  - name: first\n    limit: 100\n    window: 1s\n");
    get_status(p, o, "/bytes/10", 200);
    char *text = scrape(p);
    ck_assert(histogram_count(text, H_TOTAL, "first") == 1);
    free(text);
    write_text(p->conf_path, "listen: [\"127.0.0.1:0\"]\nadmin:\n  listen: [\"127.0.0.1:0\"]\n"
                             "rate_limits:\n  - name: second\n    limit: 100\n    window: 1s\n");
    ck_assert(kill(p->pid, SIGHUP) == 0);
    ck_assert(proxy_wait_log(p, "configuration reloaded from", 5000));
    text = scrape(p);
    ck_assert_msg(strstr(text, "rule=\"first\"") == NULL, "a removed rule is still rendered");
    ck_assert_msg(histogram_count(text, H_TOTAL, "second") == 0,
                  "rule second inherited rule first's requests");
    free(text);
    get_status(p, o, "/bytes/10", 200);
    text = scrape(p);
    ck_assert(histogram_count(text, H_TOTAL, "second") == 1);
    free(text);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_build_info)
{
    struct proxy *p = proxy_start(NULL);
    char *text = scrape(p);
    const char *features = "tls_intercept"
#ifdef HAVE_HIREDIS
                           ",hiredis"
#endif
#ifdef HAVE_LIBSYSTEMD
                           ",systemd"
#endif
        ;
    char series[256];
    snprintf(series, sizeof series, "rlproxy_build_info{version=\"%s\",features=\"%s\"}",
             PACKAGE_VERSION, features);
    ck_assert(series_in(text, series) == 1);
    free(text);
    proxy_stop(p);
}
END_TEST

/* promtool (Debian's prometheus package) lints a live page with every kind of family in use: a
 * rule with its histograms observed, a reload counted. Without promtool the test fails under CI
 * (CI=true) and says so elsewhere. */
START_TEST(test_promtool_check_metrics)
{
    struct cmd_result r;
    char *const which[] = {"sh", "-c", "command -v promtool", NULL};
    run_cmd(which, NULL, T_MS, &r);
    int have = r.exit_code == 0;
    cmd_result_free(&r);
    if (harness_tool_missing(have, "test_promtool_check_metrics", "promtool", "prometheus"))
        return;
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0,
                                              "rate_limits:\n  - name: api.v1_x-y\n    limit: 100\n"
                                              "    window: 1s\n");
    get_status(p, o, "/bytes/10", 200);
    ck_assert(kill(p->pid, SIGHUP) == 0);
    ck_assert(proxy_wait_log(p, "configuration reloaded from", 5000));
    char *text = scrape(p);
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.txt", harness_tmpdir());
    write_text(path, text);
    free(text);
    char *const check[] = {"sh", "-c", "promtool check metrics < \"$0\"", path, NULL};
    run_cmd(check, NULL, 60000, &r);
    ck_assert_msg(r.exit_code == 0, "promtool check metrics: exit %d\n%s%s", r.exit_code, r.out,
                  r.err);
    cmd_result_free(&r);
    proxy_stop_with_origin(p, o);
}
END_TEST

HARNESS_MAIN("admin", 20, test_healthz, test_metrics_format, test_request_and_response_counters,
             test_5xx_from_origin_counted, test_proxy_generated_errors_counted,
             test_open_connections_gauge, test_tunnel_metrics, test_reload_counters,
             test_not_found_and_method_not_allowed, test_healthz_while_draining,
             test_admin_disabled, test_metrics_table_rendered_and_documented,
             test_histograms_count_requests, test_histograms_reset_when_rules_change,
             test_build_info, test_promtool_check_metrics)
