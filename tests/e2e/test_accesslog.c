/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_accesslog.c — the access log (issue 3, item 6): one line per request and per tunnel with
 * time, client, user, method, target, status, bytes in/out, total and upstream time, limiter
 * decision and wait, attempts; `log.access_format: json` lines each parse as JSON with those keys;
 * a hostile target cannot break a line or the JSON; error replies are logged; `log.access: off`
 * writes nothing, and a reload switches the target. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define T_MS 10000

/* ---- helpers ----------------------------------------------------------------------------------
 */

static void access_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/access-%d-%s.log", harness_tmpdir(), (int)getpid(), name);
}

/* An origin, and a proxy writing access lines (text format) to a fresh file named after name,
 * whose path goes to path */
static struct proxy *start_logging(struct origin **o, char *path, size_t len, const char *name)
{
    access_path(path, len, name);
    *o = origin_start(0);
    return proxy_startf("log:\n  access: \"%s\"\n", path);
}

static size_t count_lines(const char *text)
{
    size_t n = 0;
    for (const char *p = text; *p != '\0'; p++)
        n += *p == '\n';
    return n;
}

/* Waits (bounded) until the file has at least `want` lines, then a moment more so that an extra
 * line would show; the contents (malloc'd) */
static char *wait_lines(const char *path, size_t want)
{
    uint64_t deadline = now_ms() + 5000;
    char *text;
    for (;;) {
        text = read_file(path, NULL);
        if (text != NULL && count_lines(text) >= want)
            break;
        ck_assert_msg(now_ms() < deadline, "%s has %zu lines, want %zu:\n%s", path,
                      text != NULL ? count_lines(text) : 0, want, text != NULL ? text : "(none)");
        free(text);
        sleep_ms(20);
    }
    free(text);
    sleep_ms(150);
    text = read_file(path, NULL);
    ck_assert(text != NULL);
    return text;
}

/* The nth line (0-based) of text, copied into buf */
static const char *nth_line(const char *text, size_t nth, char *buf, size_t len)
{
    const char *p = text;
    for (size_t i = 0; i < nth && p != NULL; i++) {
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    ck_assert_msg(p != NULL && *p != '\0', "no line %zu in:\n%s", nth, text);
    size_t n = strcspn(p, "\n");
    ck_assert_msg(n < len, "line %zu too long (%zu bytes)", nth, n);
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

static int local_port(const struct raw *c)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    ck_assert(getsockname(c->fd, (struct sockaddr *)&sa, &len) == 0);
    return ntohs(sa.sin_port);
}

/* One request on an open connection; the response (caller frees) */
/* wait_lines, and the file has exactly want lines (of what) */
static char *exact_lines(const char *path, size_t want, const char *what)
{
    char *text = wait_lines(path, want);
    ck_assert_msg(count_lines(text) == want, "%zu %s, %zu lines:\n%s", want, what,
                  count_lines(text), text);
    return text;
}

static void exchange(struct raw *c, const char *request, struct http_response *r)
{
    raw_send_str(c, request);
    int rc = raw_read_response(c, r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "response: %s", raw_result_name(rc));
}

/* A parsed text-format line */
struct text_line {
    char time[64], client[64], user[64], request[2048];
    int status;
    unsigned long long bytes_in, bytes_out, total_ms, upstream_ms, wait_ms;
    char limit[64];
    int attempts;
};

static void parse_text_line(const char *line, struct text_line *t)
{
    memset(t, 0, sizeof *t);
    int used = -1;
    int n = sscanf(line,
                   "%63s %63s %63s \"%2047[^\"]\" %d %llu %llu total=%llums upstream=%llums "
                   "limit=%63s wait=%llums attempts=%d%n",
                   t->time, t->client, t->user, t->request, &t->status, &t->bytes_in, &t->bytes_out,
                   &t->total_ms, &t->upstream_ms, t->limit, &t->wait_ms, &t->attempts, &used);
    ck_assert_msg(n == 12 && used == (int)strlen(line), "unparseable access line (%d fields): %s",
                  n, line);
    /* 2026-01-02T03:04:05.678Z, within a minute of now */
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = strptime(t->time, "%Y-%m-%dT%H:%M:%S", &tm);
    ck_assert_msg(rest != NULL && strlen(t->time) == 24 && rest[0] == '.' && rest[4] == 'Z',
                  "time field: %s", t->time);
    long long skew = (long long)timegm(&tm) - (long long)time(NULL);
    ck_assert_msg(skew > -60 && skew < 60, "time field %s is %lld s off", t->time, skew);
}

static void expect_text(const char *line, const char *client, const char *request, int status,
                        unsigned long long bytes_in, unsigned long long bytes_out, int attempts)
{
    struct text_line t;
    parse_text_line(line, &t);
    ck_assert_msg(strcmp(t.client, client) == 0, "client %s, want %s: %s", t.client, client, line);
    ck_assert_msg(strcmp(t.user, "-") == 0, "user %s: %s", t.user, line);
    ck_assert_msg(strcmp(t.request, request) == 0, "request \"%s\", want \"%s\"", t.request,
                  request);
    ck_assert_msg(t.status == status, "status %d, want %d: %s", t.status, status, line);
    ck_assert_msg(t.bytes_in == bytes_in, "bytes_in %llu, want %llu: %s", t.bytes_in, bytes_in,
                  line);
    ck_assert_msg(t.bytes_out == bytes_out, "bytes_out %llu, want %llu: %s", t.bytes_out, bytes_out,
                  line);
    ck_assert_msg(strcmp(t.limit, "none") == 0 && t.wait_ms == 0, "limiter fields: %s", line);
    ck_assert_msg(t.attempts == attempts, "attempts %d, want %d: %s", t.attempts, attempts, line);
    ck_assert_msg(t.upstream_ms <= t.total_ms, "upstream time over total: %s", line);
}

/* ---- text format ------------------------------------------------------------------------------
 */

START_TEST(test_text_lines)
{
    char path[600];
    access_path(path, sizeof path, "text");
    struct origin *o = origin_start(0);
    struct proxy *p =
        proxy_startf("log:\n  access: \"%s\"\nconnect:\n  allowed_ports: [%d]\n", path, o->port);
    char client[64], want[256];
    struct http_response r;

    /* two requests on one keep-alive connection: a GET and a POST with a body */
    struct raw *c = raw_connect(p->port);
    snprintf(client, sizeof client, "127.0.0.1:%d", local_port(c));
    char *req = proxy_request("GET", o, "/bytes/1234", NULL);
    exchange(c, req, &r);
    free(req);
    ck_assert_int_eq(r.status, 200);
    http_response_free(&r);
    char body[300];
    memset(body, 'x', sizeof body);
    req = proxy_request("POST", o, "/sink", "Content-Length: 300\r\n");
    raw_send_str(c, req);
    raw_send(c, body, sizeof body);
    free(req);
    ck_assert_int_eq(raw_read_response(c, &r, 0, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 200);
    size_t sink_reply = r.body_len;
    http_response_free(&r);
    raw_close(c);

    /* a slow one: total and upstream time */
    struct raw *s = raw_connect(p->port);
    char slow_client[64];
    snprintf(slow_client, sizeof slow_client, "127.0.0.1:%d", local_port(s));
    req = proxy_request("GET", o, "/slow?delay=1", NULL);
    exchange(s, req, &r);
    free(req);
    ck_assert_int_eq(r.status, 200);
    http_response_free(&r);
    raw_close(s);

    /* a tunnel with one exchange inside */
    struct raw *t = raw_connect(p->port);
    char tunnel_client[64];
    snprintf(tunnel_client, sizeof tunnel_client, "127.0.0.1:%d", local_port(t));
    ck_assert_int_eq(raw_tunnel_request(t, o->port, &r, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 200);
    http_response_free(&r);
    static const char inner[] = "GET /bytes/777 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    exchange(t, inner, &r);
    ck_assert_uint_eq(r.body_len, 777);
    http_response_free(&r);
    raw_close(t);

    char *log = exact_lines(path, 4, "requests and tunnels");
    char line[4096];
    snprintf(want, sizeof want, "GET http://127.0.0.1:%d/bytes/1234", o->port);
    expect_text(nth_line(log, 0, line, sizeof line), client, want, 200, 0, 1234, 1);
    snprintf(want, sizeof want, "POST http://127.0.0.1:%d/sink", o->port);
    expect_text(nth_line(log, 1, line, sizeof line), client, want, 200, 300, sink_reply, 1);
    snprintf(want, sizeof want, "GET http://127.0.0.1:%d/slow?delay=1", o->port);
    nth_line(log, 2, line, sizeof line);
    expect_text(line, slow_client, want, 200, 0, 4, 1);
    struct text_line tl;
    parse_text_line(line, &tl);
    ck_assert_msg(tl.total_ms >= 950 && tl.total_ms < 5000, "total %llu ms for a 1 s request",
                  tl.total_ms);
    ck_assert_msg(tl.upstream_ms >= 950, "upstream %llu ms for a 1 s origin", tl.upstream_ms);
    /* the tunnel: bytes in are what the client sent inside it; out includes the inner head */
    nth_line(log, 3, line, sizeof line);
    parse_text_line(line, &tl);
    snprintf(want, sizeof want, "CONNECT 127.0.0.1:%d", o->port);
    ck_assert_msg(strcmp(tl.request, want) == 0 && tl.status == 200, "tunnel line: %s", line);
    ck_assert_str_eq(tl.client, tunnel_client);
    ck_assert_str_eq(tl.user, "-");
    ck_assert_msg(tl.bytes_in == strlen(inner), "tunnel bytes_in %llu, sent %zu", tl.bytes_in,
                  strlen(inner));
    ck_assert_msg(tl.bytes_out > 777 && tl.bytes_out < 777 + 1000, "tunnel bytes_out %llu",
                  tl.bytes_out);
    ck_assert_msg(tl.attempts == 1 && strcmp(tl.limit, "none") == 0, "tunnel line: %s", line);
    free(log);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_error_replies_logged)
{
    char path[600];
    struct origin *o;
    struct proxy *p = start_logging(&o, path, sizeof path, "errors");
    struct http_response r;
    char client[3][64];
    /* 400: origin-form target */
    struct raw *c = raw_connect(p->port);
    snprintf(client[0], sizeof client[0], "127.0.0.1:%d", local_port(c));
    exchange(c, "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", &r);
    ck_assert_int_eq(r.status, 400);
    http_response_free(&r);
    raw_close(c);
    /* 403: CONNECT to a port not allowed */
    c = raw_connect(p->port);
    snprintf(client[1], sizeof client[1], "127.0.0.1:%d", local_port(c));
    ck_assert_int_eq(raw_tunnel_request(c, o->port, &r, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 403);
    http_response_free(&r);
    raw_close(c);
    /* 502: nobody listens */
    int closed = harness_closed_port();
    c = raw_connect(p->port);
    snprintf(client[2], sizeof client[2], "127.0.0.1:%d", local_port(c));
    raw_sendf(c, "GET http://127.0.0.1:%d/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", closed,
              closed);
    ck_assert_int_eq(raw_read_response(c, &r, 0, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 502);
    size_t reply_502 = r.body_len; /* rlproxy's own reply: its bytes are counted (bytes_out) */
    http_response_free(&r);
    raw_close(c);

    char *log = exact_lines(path, 3, "error replies");
    char line[4096], want[128];
    struct text_line t;
    parse_text_line(nth_line(log, 0, line, sizeof line), &t);
    ck_assert_msg(t.status == 400 && strcmp(t.request, "GET /index.html") == 0 &&
                      strcmp(t.client, client[0]) == 0,
                  "400 line: %s", line);
    parse_text_line(nth_line(log, 1, line, sizeof line), &t);
    snprintf(want, sizeof want, "CONNECT 127.0.0.1:%d", o->port);
    ck_assert_msg(t.status == 403 && strcmp(t.request, want) == 0 &&
                      strcmp(t.client, client[1]) == 0,
                  "403 line: %s", line);
    parse_text_line(nth_line(log, 2, line, sizeof line), &t);
    snprintf(want, sizeof want, "GET http://127.0.0.1:%d/x", closed);
    ck_assert_msg(t.status == 502 && strcmp(t.request, want) == 0 &&
                      strcmp(t.client, client[2]) == 0 && t.bytes_out == reply_502 &&
                      reply_502 > 0,
                  "502 line (want bytes_out %zu): %s", reply_502, line);
    free(log);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* Quotes, backslashes and control bytes in a target: each request stays one line, and the
 * characters that could end the quoted field (or a JSON string) come out as '?' */
START_TEST(test_hostile_target_text)
{
    char path[600];
    struct origin *o;
    struct proxy *p = start_logging(&o, path, sizeof path, "hostile");
    struct http_response r;
    /* accepted by the parser (and passed on): quotes and backslashes */
    struct raw *c = raw_connect(p->port);
    raw_sendf(c, "GET http://127.0.0.1:%d/q\"x\\y\"?a=\"}{\\ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
              o->port);
    ck_assert_int_eq(raw_read_response(c, &r, 0, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 404); /* the origin has no such path */
    http_response_free(&r);
    raw_close(c);
    /* refused by the parser (400): control bytes, a DEL, a bare CR inside the target */
    static const char *const bad[] = {"/a\x1b[2Jb",
                                      "/a\x7f"
                                      "b",
                                      "/a\rFAKE LINE"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = raw_connect(p->port);
        raw_sendf(c, "GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", o->port,
                  bad[i]);
        raw_expect_status(c, 400, "a request with a bad target");
        raw_close(c);
    }
    char *log = exact_lines(path, 4, "requests");
    for (const char *q = log; *q != '\0'; q++)
        ck_assert_msg((unsigned char)*q >= 0x20 && (unsigned char)*q != 0x7f ? 1 : *q == '\n',
                      "control byte 0x%02x in the access log", (unsigned char)*q);
    ck_assert_msg(strstr(log, "FAKE LINE") == NULL || strstr(log, "\nFAKE") == NULL,
                  "a target started a line of its own");
    char line[4096], want[256];
    struct text_line t;
    parse_text_line(nth_line(log, 0, line, sizeof line), &t);
    snprintf(want, sizeof want, "GET http://127.0.0.1:%d/q?x?y??a=?}{?", o->port);
    ck_assert_msg(strcmp(t.request, want) == 0, "request field \"%s\", want \"%s\"", t.request,
                  want);
    ck_assert_int_eq(t.status, 404);
    for (size_t i = 1; i < 4; i++) {
        parse_text_line(nth_line(log, i, line, sizeof line), &t);
        ck_assert_msg(t.status == 400, "line %zu: %s", i, line);
    }
    free(log);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- JSON format ------------------------------------------------------------------------------
 */

/* Parses every line of the file with python3's json module and prints one summary per line:
 * method|target|status|bytes_in|bytes_out|attempts|limit|wait_ms|user|client|decision|rule|reason,
 * after checking the key set and the value types. */
static const char JSON_CHECK[] =
    "import json, sys\n"
    "need = {'time': str, 'client': str, 'method': str, 'target': str, 'status': int,\n"
    "        'bytes_in': int, 'bytes_out': int, 'total_ms': int, 'upstream_ms': int,\n"
    "        'limit': str, 'wait_ms': int, 'attempts': int, 'decision': str, 'paused': bool}\n"
    "with open(sys.argv[1], 'rb') as f:\n"
    "    raw = f.read()\n"
    "for n, line in enumerate(raw.decode('utf-8').split('\\n')[:-1]):\n"
    "    d = json.loads(line)\n"
    "    assert isinstance(d, dict), 'line %d is not an object' % n\n"
    "    missing = [k for k in list(need) + ['user', 'rule', 'reason'] if k not in d]\n"
    "    assert not missing, 'line %d lacks %s' % (n, missing)\n"
    "    for k, t in need.items():\n"
    "        assert type(d[k]) is t, 'line %d: %s is %r' % (n, k, d[k])\n"
    "    for k in ('user', 'rule', 'reason'):\n"
    "        assert d[k] is None or isinstance(d[k], str), 'line %d: %s is %r' % (n, k, d[k])\n"
    "    assert d['upstream_ms'] <= d['total_ms'] + 1\n"
    "    print('%s|%s|%d|%d|%d|%d|%s|%d|%s|%s|%s|%s|%s' % (d['method'], d['target'],\n"
    "          d['status'], d['bytes_in'], d['bytes_out'], d['attempts'], d['limit'],\n"
    "          d['wait_ms'], d['user'], d['client'], d['decision'], d['rule'], d['reason']))\n";

static char *json_summary(const char *path)
{
    char *argv[] = {"python3", "-c", (char *)JSON_CHECK, (char *)path, NULL};
    struct cmd_result r;
    run_cmd(argv, NULL, 20000, &r);
    char *log = read_file(path, NULL);
    ck_assert_msg(r.exit_code == 0, "access log is not one JSON object per line (%s):\n%s", r.err,
                  log != NULL ? log : "(none)");
    free(log);
    char *out = r.out;
    r.out = NULL;
    cmd_result_free(&r);
    return out;
}

START_TEST(test_json_lines)
{
    char path[600];
    access_path(path, sizeof path, "json");
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("log:\n  access: \"%s\"\n  access_format: json\n"
                                   "connect:\n  allowed_ports: [%d]\n",
                                   path, o->port);
    struct http_response r;
    struct raw *c = raw_connect(p->port);
    int port = local_port(c);
    char *req = proxy_request("GET", o, "/bytes/1000", NULL);
    exchange(c, req, &r);
    free(req);
    ck_assert_int_eq(r.status, 200);
    http_response_free(&r);
    /* hostile: quotes and backslashes, and a long target (truncated, still valid JSON) */
    raw_sendf(c, "GET http://127.0.0.1:%d/j\"s\\o\"n\\ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
              o->port);
    ck_assert_int_eq(raw_read_response(c, &r, 0, T_MS), RAW_OK);
    http_response_free(&r);
    char longpath[5001];
    memset(longpath, 'L', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    for (size_t i = 100; i < sizeof longpath - 1; i += 97)
        longpath[i] = i % 2 ? '"' : '\\';
    req = proxy_request("GET", o, longpath, NULL);
    exchange(c, req, &r);
    free(req);
    http_response_free(&r);
    raw_close(c);
    /* a 400 */
    c = raw_connect(p->port);
    exchange(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", &r);
    ck_assert_int_eq(r.status, 400);
    size_t reply_400 = r.body_len;
    http_response_free(&r);
    raw_close(c);
    /* a tunnel */
    c = raw_connect(p->port);
    ck_assert_int_eq(raw_tunnel_request(c, o->port, &r, T_MS), RAW_OK);
    http_response_free(&r);
    exchange(c, "GET /bytes/10 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", &r);
    http_response_free(&r);
    raw_close(c);

    char *log = exact_lines(path, 5, "requests and tunnels");
    /* by hand: every line one object */
    char line[8192];
    for (size_t i = 0; i < 5; i++) {
        nth_line(log, i, line, sizeof line);
        size_t n = strlen(line);
        ck_assert_msg(n > 2 && line[0] == '{' && line[n - 1] == '}', "line %zu: %s", i, line);
    }
    nth_line(log, 0, line, sizeof line);
    ck_assert_msg(strstr(line, "\"status\":200") != NULL, "line 0: %s", line);
    free(log);
    /* and by a real JSON parser */
    char *sum = json_summary(path);
    char want[512];
    snprintf(want, sizeof want,
             "GET|http://127.0.0.1:%d/bytes/1000|200|0|1000|1|none|0|None|"
             "127.0.0.1:%d|none|None|None\n",
             o->port, port);
    ck_assert_msg(strncmp(sum, want, strlen(want)) == 0, "first line: %s\nwant: %s", sum, want);
    snprintf(want, sizeof want, "\nGET|http://127.0.0.1:%d/j?s?o?n?|404|", o->port);
    ck_assert_msg(strstr(sum, want) != NULL, "hostile target not as expected:\n%s", sum);
    snprintf(want, sizeof want, "\nGET|http://127.0.0.1:%d/LLLL", o->port);
    ck_assert_msg(strstr(sum, want) != NULL, "long target missing:\n%s", sum);
    /* the 400 is rlproxy's own: its body's bytes count as bytes_out, its words are the reason */
    snprintf(want, sizeof want, "\nGET|/|400|0|%zu|0|none|0|None|127.0.0.1:", reply_400);
    ck_assert_msg(strstr(sum, want) != NULL, "400 line missing or without its bytes (%zu):\n%s",
                  reply_400, sum);
    ck_assert_msg(strstr(sum, "|none|None|rlproxy is an HTTP proxy: send the full URL") != NULL,
                  "400 line without its reason:\n%s", sum);
    snprintf(want, sizeof want, "\nCONNECT|127.0.0.1:%d|200|", o->port);
    ck_assert_msg(strstr(sum, want) != NULL, "tunnel line missing:\n%s", sum);
    free(sum);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- off, and switching on reload -------------------------------------------------------------
 */

static void one_get(struct proxy *p, struct origin *o, const char *path)
{
    char url[256];
    ck_assert_int_eq(status_via(p->port, origin_url(o, path, url, sizeof url)), 200);
}

static void reload(struct proxy *p, const char *yaml)
{
    size_t before = proxy_log_count(p, "configuration reloaded");
    write_text(p->conf_path, yaml);
    ck_assert(kill(p->pid, SIGHUP) == 0);
    uint64_t deadline = now_ms() + 5000;
    for (;;) {
        if (proxy_log_count(p, "configuration reloaded") > before)
            return;
        ck_assert_msg(now_ms() < deadline, "reload not logged:\n%s", proxy_log_tail(p, 800));
        sleep_ms(10);
    }
}

START_TEST(test_access_off_and_reload_switch)
{
    char path[600];
    access_path(path, sizeof path, "switch");
    struct origin *o = origin_start(0);
    /* off from the start: nothing on stderr either */
    struct proxy *p = proxy_start("log:\n  access: \"off\"\n");
    one_get(p, o, "/bytes/11");
    one_get(p, o, "/bytes/12");
    sleep_ms(200);
    ck_assert_msg(!proxy_log_contains(p, "\"GET http://"), "access line with access: off:\n%s",
                  proxy_log_tail(p, 800));
    /* on reload: to a file */
    char *yaml = NULL;
    ck_assert(asprintf(&yaml,
                       "listen: [\"127.0.0.1:0\"]\nadmin:\n  listen: [\"127.0.0.1:0\"]\n"
                       "log:\n  access: \"%s\"\n",
                       path) > 0);
    reload(p, yaml);
    one_get(p, o, "/bytes/13");
    char *log = wait_lines(path, 1);
    ck_assert_msg(count_lines(log) == 1 && strstr(log, "/bytes/13\" 200 ") != NULL, "file:\n%s",
                  log);
    free(log);
    /* off again: the file gets nothing more */
    reload(p, "listen: [\"127.0.0.1:0\"]\nadmin:\n  listen: [\"127.0.0.1:0\"]\n"
              "log:\n  access: \"off\"\n");
    one_get(p, o, "/bytes/14");
    sleep_ms(200);
    log = read_file(path, NULL);
    ck_assert_msg(count_lines(log) == 1, "access: off after reload, file:\n%s", log);
    free(log);
    /* and back to the file: appended, not truncated */
    reload(p, yaml);
    free(yaml);
    one_get(p, o, "/bytes/15");
    log = wait_lines(path, 2);
    ck_assert_msg(count_lines(log) == 2 && strstr(log, "/bytes/13\" 200 ") != NULL &&
                      strstr(log, "/bytes/15\" 200 ") != NULL && strstr(log, "/bytes/14") == NULL,
                  "file:\n%s", log);
    free(log);
    ck_assert_msg(!proxy_log_contains(p, "\"GET http://"), "access lines on stderr:\n%s",
                  proxy_log_tail(p, 800));
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_default_goes_to_stderr)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    one_get(p, o, "/bytes/21");
    char want[128];
    snprintf(want, sizeof want, " - \"GET http://127.0.0.1:%d/bytes/21\" 200 0 21 total=", o->port);
    uint64_t deadline = now_ms() + 3000;
    while (!proxy_log_contains(p, want)) {
        ck_assert_msg(now_ms() < deadline, "no access line on stderr:\n%s", proxy_log_tail(p, 800));
        sleep_ms(20);
    }
    proxy_stop_with_origin(p, o);
}
END_TEST

/* log.access_buffer: lines to a file gather and go out together, yet none is lost or reordered,
 * a quiet proxy's last line reaches the file within about a second, and the stop writes out what
 * is left. (A buffer changes when lines reach the disk, not which: this holds the buffer to the
 * promises the manual makes.) */
START_TEST(test_buffered_file_keeps_every_line)
{
    char path[600];
    access_path(path, sizeof path, "buffered");
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("log:\n  access: \"%s\"\n  access_buffer: 64KiB\n", path);
    enum { N = 60 };
    struct raw *c = raw_connect(p->port);
    struct http_response r;
    for (int i = 0; i < N; i++) {
        char target[64];
        snprintf(target, sizeof target, "/bytes/10?line=%d", i);
        char *req = proxy_request("GET", o, target, NULL);
        exchange(c, req, &r);
        free(req);
        ck_assert_int_eq(r.status, 200);
        http_response_free(&r);
    }
    raw_close(c);
    uint64_t quiet_since = now_ms();
    char *log = wait_lines(path, N); /* the last ones came with nothing after them */
    printf("accesslog: %d buffered lines in the file %llu ms after the last request\n", N,
           (unsigned long long)(now_ms() - quiet_since));
    ck_assert_uint_eq(count_lines(log), N);
    const char *at = log;
    for (int i = 0; i < N; i++) { /* in order, each once */
        char want[64];
        snprintf(want, sizeof want, "/bytes/10?line=%d\"", i);
        const char *found = strstr(at, want);
        ck_assert_msg(found != NULL, "line %d missing or out of order:\n%.1500s", i, log);
        at = found + strlen(want);
    }
    free(log);
    /* one more, then the stop: it is written out, not lost with the process */
    c = raw_connect(p->port);
    char *req = proxy_request("GET", o, "/bytes/10?line=last", NULL);
    exchange(c, req, &r);
    free(req);
    http_response_free(&r);
    raw_close(c);
    proxy_stop_with_origin(p, o);
    log = read_file(path, NULL);
    ck_assert_msg(log != NULL && count_lines(log) == N + 1 && strstr(log, "line=last") != NULL,
                  "after the stop: %zu lines", log != NULL ? count_lines(log) : 0);
    free(log);
}
END_TEST

HARNESS_MAIN("accesslog", 20, test_text_lines, test_error_replies_logged, test_hostile_target_text,
             test_json_lines, test_access_off_and_reload_switch, test_default_goes_to_stderr,
             test_buffered_file_keeps_every_line)
