/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_reload.c — SIGHUP reload (issue 3, item 2): 20 reloads alternating valid and invalid files
 * under a steady stream of requests lose none of them, and every invalid file is logged with
 * FILE:LINE:COLUMN; a reloadable key (access.allow, http.max_header_size) applies to new
 * connections; a `listen` change opens the new address and closes the removed one while an
 * unchanged address keeps its socket and its open connections; a listen address that cannot be
 * bound fails the reload and keeps the old listeners; a slow request in flight across reloads
 * completes. Then the config-side checks (issues 15, 16, 18): rlproxy -T prints a config that
 * loads again, secrets masked; a reload warns once per changed restart-only key; -t refuses an
 * access log that cannot be opened and a reload that cannot open it fails; -t warns about a rule
 * whose path_prefix cannot see https:// requests. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define T_MS 10000
#define RELOAD_WAIT_MS 5000

/* ---- helpers ----------------------------------------------------------------------------------
 */

enum { RELOAD_OK = 1, RELOAD_FAILED = 0 };

/* proxy_reload (the harness), with this suite's bound */
#define reload_with(p, yaml) proxy_reload((p), (yaml), RELOAD_WAIT_MS)

/* Waits (bounded) until connects to port are refused; 1 if they are */
static int wait_refused(int port, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    while (port_accepts(port)) {
        if (now_ms() > deadline)
            return 0;
        sleep_ms(20);
    }
    return 1;
}

/* A loopback port that nobody listens on right now: bound to 127.0.0.1:0, then closed. */
static int free_port(void) { return harness_closed_port(); }

/* One GET /bytes/n on a fresh connection to port; the status (or a negative raw result) */
static int get_status_on(int port, const struct origin *o, const char *extra)
{
    char *req = proxy_request("GET", o, "/bytes/10", extra);
    struct http_response r;
    int rc = raw_exchange(port, req, &r, 0, T_MS);
    free(req);
    if (rc != RAW_OK) {
        http_response_free(&r);
        return rc;
    }
    int status = r.status;
    if (status == 200)
        ck_assert_msg(r.body_len == 10 && pattern_mismatch(r.body, 10, 0) == -1,
                      "wrong body through port %d", port);
    http_response_free(&r);
    return status;
}

/* One GET /bytes/10 on an open keep-alive connection; the status */
static int get_status_keepalive(struct raw *c, const struct origin *o)
{
    raw_send_proxy_request(c, "GET", o, "/bytes/10", NULL);
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "keep-alive request: %s", raw_result_name(rc));
    int status = r.status;
    ck_assert_msg(resp_header(&r, "Connection", 0) == NULL ||
                      strcasecmp(resp_header(&r, "Connection", 0), "close") != 0,
                  "the proxy closed a keep-alive connection");
    http_response_free(&r);
    return status;
}

/* The part of every config file the tests write: the listen addresses and the admin endpoint on
 * an ephemeral port (admin.listen needs a restart; keeping it the same avoids noise). */
#define ADMIN_YAML "admin:\n  listen: [\"127.0.0.1:0\"]\n"
#define BASE_YAML "listen: [\"127.0.0.1:0\"]\n" ADMIN_YAML

/* ---- (a) 20 reloads under a steady stream -----------------------------------------------------
 */

struct stream {
    int proxy_port;
    int origin_port;
    int fresh; /* a new connection for every request (else one keep-alive connection) */
    atomic_int stop;
    atomic_long ok;
    atomic_long failed;
    char first_error[CURL_ERROR_SIZE + 128];
    pthread_t thread;
};

static size_t count_body(char *data, size_t size, size_t nmemb, void *arg)
{
    *(size_t *)arg += size * nmemb;
    return size * nmemb;
}

/* The client: GET /bytes/1000 through the proxy until told to stop. No Check calls here (this is
 * not the test's thread): failures are counted and the first one described. */
static void *stream_main(void *arg)
{
    struct stream *s = arg;
    CURL *h = curl_easy_init();
    char url[128], proxy[64], err[CURL_ERROR_SIZE];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/bytes/1000", s->origin_port);
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", s->proxy_port);
    size_t got = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, proxy);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, count_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &got);
    if (s->fresh) {
        curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    }
    while (!atomic_load(&s->stop)) {
        got = 0;
        err[0] = '\0';
        CURLcode rc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_OK && status == 200 && got == 1000) {
            atomic_fetch_add(&s->ok, 1);
        } else {
            if (atomic_fetch_add(&s->failed, 1) == 0)
                snprintf(s->first_error, sizeof s->first_error,
                         "curl %d (%s), status %ld, %zu body bytes", (int)rc, err, status, got);
        }
    }
    curl_easy_cleanup(h);
    return NULL;
}

/* An invalid file whose error is on a line that depends on i; *where gets "LINE:COLUMN: what" as
 * the proxy must report it. Kinds: wrong type, unknown key, below the minimum, a YAML syntax
 * error, a bad address block. */
static char *invalid_config(int i, char *where, size_t where_len)
{
    char pad[512] = "";
    for (int k = 0; k < i; k++)
        strcat(pad, "# padding\n");
    int line = 3 + i + 1; /* BASE_YAML is 3 lines, then i padding lines */
    /* the text, and where the error is: its line (after the padding) and the message's start */
    static const struct {
        const char *text;
        int line_in_text;
        const char *where;
    } bad[] = {
        {"timeouts:\n  client_idle: banana\n", 1, ":%d:16: timeouts.client_idle: "},
        {"bogus_key: 1\n", 0, ":%d:1: bogus_key: unknown key"},
        {"http:\n  max_header_size: 10\n", 1, ":%d:20: http.max_header_size: "},
        {"\tworkers: 2\n", 0, ":%d:1: "},
        {"access:\n  allow: [\"300.1.1.1/8\"]\n", 1, ":%d:11: access.allow: "},
    };
    int k = i % (int)(sizeof bad / sizeof bad[0]);
    char *yaml = NULL;
    ck_assert(asprintf(&yaml, "%s%s%s", BASE_YAML, pad, bad[k].text) > 0);
    snprintf(where, where_len, bad[k].where, line + bad[k].line_in_text);
    return yaml;
}

/* A valid file that changes reloadable keys every time */
static char *valid_config(int i)
{
    char *yaml = NULL;
    ck_assert(asprintf(&yaml,
                       "%s"
                       "log:\n  access: \"off\"\n  level: %s\n"
                       "timeouts:\n  client_idle: %ds\n  client_header: %ds\n"
                       "http:\n  max_header_size: %dKiB\n"
                       "connect:\n  allowed_ports: [443, %d]\n",
                       BASE_YAML, i % 4 == 0 ? "notice" : "info", 10 + i, 5 + i, 16 + i,
                       1000 + i) > 0);
    return yaml;
}

static long wait_progress(struct stream *s, long from, long more)
{
    uint64_t deadline = now_ms() + 3000;
    long n;
    while ((n = atomic_load(&s->ok)) < from + more && atomic_load(&s->failed) == 0 &&
           now_ms() < deadline)
        sleep_ms(2);
    return n - from;
}

START_TEST(test_twenty_reloads_under_load)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, "log:\n  access: \"off\"\n");
    struct stream streams[2];
    memset(streams, 0, sizeof streams);
    for (int i = 0; i < 2; i++) {
        streams[i].proxy_port = p->port;
        streams[i].origin_port = o->port;
        streams[i].fresh = i == 1;
        ck_assert(pthread_create(&streams[i].thread, NULL, stream_main, &streams[i]) == 0);
    }
    int port_before = p->port;
    char expected[10][800];
    int n_invalid = 0, n_valid = 0;
    for (int i = 0; i < 20; i++) {
        /* requests pass between every two reloads, on both streams */
        for (int k = 0; k < 2; k++) {
            long moved = wait_progress(&streams[k], atomic_load(&streams[k].ok), 3);
            ck_assert_msg(moved >= 3 || atomic_load(&streams[k].failed) > 0,
                          "stream %d made no progress before reload %d", k, i + 1);
        }
        if (i % 2 == 0) {
            char *yaml = valid_config(i);
            ck_assert_msg(reload_with(p, yaml) == RELOAD_OK,
                          "reload %d of a valid file failed:\n%s", i + 1, proxy_log_tail(p, 800));
            free(yaml);
            n_valid++;
        } else {
            char where[128];
            char *yaml = invalid_config(n_invalid, where, sizeof where);
            ck_assert_msg(reload_with(p, yaml) == RELOAD_FAILED,
                          "reload %d of an invalid file was accepted", i + 1);
            snprintf(expected[n_invalid], sizeof expected[n_invalid],
                     "reload failed, keeping the running config: %s%s", p->conf_path, where);
            free(yaml);
            n_invalid++;
        }
    }
    for (int k = 0; k < 2; k++)
        wait_progress(&streams[k], atomic_load(&streams[k].ok), 3);
    for (int k = 0; k < 2; k++) {
        atomic_store(&streams[k].stop, 1);
        pthread_join(streams[k].thread, NULL);
    }
    printf("reload under load: %ld keep-alive + %ld fresh-connection requests, %ld + %ld failed\n",
           atomic_load(&streams[0].ok), atomic_load(&streams[1].ok),
           atomic_load(&streams[0].failed), atomic_load(&streams[1].failed));
    fflush(stdout);
    for (int k = 0; k < 2; k++) {
        ck_assert_msg(atomic_load(&streams[k].failed) == 0,
                      "%s stream: %ld failed requests during reloads; first: %s",
                      k == 0 ? "keep-alive" : "fresh-connection", atomic_load(&streams[k].failed),
                      streams[k].first_error);
        ck_assert_msg(atomic_load(&streams[k].ok) >= 60, "only %ld requests passed",
                      atomic_load(&streams[k].ok));
    }
    char *log = read_file(p->log_path, NULL);
    ck_assert(log != NULL);
    char reloaded[600];
    snprintf(reloaded, sizeof reloaded, "configuration reloaded from %s", p->conf_path);
    ck_assert_msg(text_count(log, reloaded) == (size_t)n_valid, "%zu '%s' lines, want %d",
                  text_count(log, reloaded), reloaded, n_valid);
    ck_assert_uint_eq(text_count(log, "reload failed, keeping the running config: "),
                      (size_t)n_invalid);
    for (int i = 0; i < n_invalid; i++)
        ck_assert_msg(strstr(log, expected[i]) != NULL, "log lacks \"%s\"; log tail:\n%s",
                      expected[i], proxy_log_tail(p, 1500));
    free(log);
    /* the listener was not touched: same port, still serving */
    ck_assert_int_eq(proxy_log_count(p, "notice: listening on 127.0.0.1:"), 1);
    ck_assert_int_eq(get_status_on(port_before, o, NULL), 200);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- (b) reloadable keys apply to new connections ---------------------------------------------
 */

START_TEST(test_reloaded_keys_apply_to_new_connections)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    /* a 2000-byte header: fine under the default 32KiB head limit */
    char big[2100];
    memset(big, 'a', sizeof big);
    memcpy(big, "X-Big: ", 7);
    memcpy(big + 2000, "\r\n", 3);
    ck_assert_int_eq(get_status_on(p->port, o, NULL), 200);
    ck_assert_int_eq(get_status_on(p->port, o, big), 200);

    /* access.allow without loopback: a new connection is refused with 403 */
    ck_assert_int_eq(reload_with(p, BASE_YAML "access:\n  allow: [\"10.0.0.0/8\"]\n"), RELOAD_OK);
    char *req = proxy_request("GET", o, "/bytes/10", NULL);
    struct http_response r;
    int rc = raw_exchange(p->port, req, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "after reload: %s", raw_result_name(rc));
    ck_assert_msg(r.status == 403, "client outside access.allow got %d", r.status);
    ck_assert_msg(strstr(r.body, "access.allow") != NULL, "403 body: %s", r.body);
    http_response_free(&r);
    free(req);
    /* and back */
    ck_assert_int_eq(reload_with(p, BASE_YAML "access:\n  allow: [\"127.0.0.1/32\"]\n"), RELOAD_OK);
    ck_assert_int_eq(get_status_on(p->port, o, NULL), 200);

    /* http.max_header_size 1KiB: the same 2000-byte header now gets 431 */
    ck_assert_int_eq(reload_with(p, BASE_YAML "http:\n  max_header_size: 1KiB\n"), RELOAD_OK);
    ck_assert_int_eq(get_status_on(p->port, o, big), 431);
    ck_assert_int_eq(get_status_on(p->port, o, NULL), 200);
    ck_assert_int_eq(reload_with(p, BASE_YAML "http:\n  max_header_size: 4KiB\n"), RELOAD_OK);
    ck_assert_int_eq(get_status_on(p->port, o, big), 200);

    /* an invalid file changes nothing: 4KiB still applies */
    ck_assert_int_eq(reload_with(p, BASE_YAML "http:\n  max_header_size: 1KiB\n  bogus: 1\n"),
                     RELOAD_FAILED);
    ck_assert_int_eq(get_status_on(p->port, o, big), 200);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- (c) listen changes -----------------------------------------------------------------------
 */

static char *listen_config(int a, int b)
{
    char *yaml = NULL;
    if (b > 0)
        ck_assert(
            asprintf(&yaml, "listen: [\"127.0.0.1:%d\", \"127.0.0.1:%d\"]\n" ADMIN_YAML, a, b) > 0);
    else
        ck_assert(asprintf(&yaml, "listen: [\"127.0.0.1:%d\"]\n" ADMIN_YAML, a) > 0);
    return yaml;
}

static size_t listening_lines(struct proxy *p, int port)
{
    char needle[64];
    snprintf(needle, sizeof needle, "notice: listening on 127.0.0.1:%d\n", port);
    return proxy_log_count(p, needle);
}

START_TEST(test_listen_change_rebinds_only_what_changed)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    int p0 = p->port;
    ck_assert_int_eq(get_status_on(p0, o, NULL), 200);

    /* 1. from the ephemeral port to a fixed one: A serves, the old port refuses */
    int a = free_port();
    char *yaml = listen_config(a, 0);
    ck_assert_msg(reload_with(p, yaml) == RELOAD_OK, "reload to port %d failed:\n%s", a,
                  proxy_log_tail(p, 800));
    free(yaml);
    ck_assert_int_eq(listening_lines(p, a), 1);
    ck_assert_int_eq(get_status_on(a, o, NULL), 200);
    ck_assert_msg(wait_refused(p0, 3000), "the removed address 127.0.0.1:%d still accepts", p0);

    /* 2. add B: A keeps its socket (no second "listening on" line) and its open connection */
    struct raw *k = raw_connect(a);
    ck_assert_int_eq(get_status_keepalive(k, o), 200);
    int b = free_port();
    yaml = listen_config(a, b);
    ck_assert_int_eq(reload_with(p, yaml), RELOAD_OK);
    ck_assert_int_eq(listening_lines(p, b), 1);
    ck_assert_msg(listening_lines(p, a) == 1, "127.0.0.1:%d was rebound though it did not change",
                  a);
    ck_assert_int_eq(get_status_on(b, o, NULL), 200);
    ck_assert_int_eq(get_status_on(a, o, NULL), 200);
    ck_assert_int_eq(get_status_keepalive(k, o), 200);

    /* 3. a reload with the same listen list (another key changed) keeps both sockets */
    char *same = NULL;
    ck_assert(asprintf(&same, "%stimeouts:\n  client_idle: 30s\n", yaml) > 0);
    free(yaml);
    ck_assert_int_eq(reload_with(p, same), RELOAD_OK);
    free(same);
    ck_assert_int_eq(listening_lines(p, a), 1);
    ck_assert_int_eq(listening_lines(p, b), 1);
    ck_assert_int_eq(get_status_keepalive(k, o), 200);
    ck_assert_int_eq(get_status_on(a, o, NULL), 200);
    ck_assert_int_eq(get_status_on(b, o, NULL), 200);

    /* 4. drop A: it refuses new connections, B serves, and the connection accepted on A lives on */
    yaml = listen_config(b, 0);
    ck_assert_int_eq(reload_with(p, yaml), RELOAD_OK);
    free(yaml);
    ck_assert_msg(wait_refused(a, 3000), "the removed address 127.0.0.1:%d still accepts", a);
    ck_assert_int_eq(get_status_on(b, o, NULL), 200);
    ck_assert_int_eq(get_status_keepalive(k, o), 200);
    raw_close(k);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_listen_bind_failure_keeps_old_listeners)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    int p0 = p->port;
    /* a free port plus one that is taken (the origin's): nothing may change */
    int a = free_port();
    char *yaml = listen_config(a, o->port);
    ck_assert_int_eq(reload_with(p, yaml), RELOAD_FAILED);
    free(yaml);
    ck_assert_msg(proxy_log_contains(p, "cannot listen on the new addresses"), "log:\n%s",
                  proxy_log_tail(p, 800));
    ck_assert_int_eq(get_status_on(p0, o, NULL), 200);
    ck_assert_msg(!port_accepts(a), "half-applied reload: 127.0.0.1:%d accepts", a);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- (d) a request in flight across reloads ---------------------------------------------------
 */

START_TEST(test_inflight_request_survives_reloads)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    struct raw *c = raw_connect_send(p->port, "GET", o, "/slow?delay=2", NULL);
    uint64_t t0 = now_ms();
    sleep_ms(300);
    /* a config that would refuse this client, shorter timeouts, then an invalid file */
    ck_assert_int_eq(reload_with(p, BASE_YAML "access:\n  allow: [\"10.0.0.0/8\"]\n"
                                              "timeouts:\n  upstream_response: 1s\n"),
                     RELOAD_OK);
    ck_assert_int_eq(reload_with(p, BASE_YAML "timeouts:\n  upstream_response: soon\n"),
                     RELOAD_FAILED);
    ck_assert_msg(now_ms() - t0 < 2000, "reloads took too long to test anything");
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "slow request across reloads: %s", raw_result_name(rc));
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "slow");
    uint64_t ms = now_ms() - t0;
    ck_assert_msg(ms >= 1900, "slow response after only %llu ms", (unsigned long long)ms);
    http_response_free(&r);
    raw_close(c);
    /* the reloaded config is in force for new connections */
    ck_assert_int_eq(get_status_on(p->port, o, NULL), 403);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- (e) rlproxy -T: the effective configuration, loadable again ------------------------------
 */

static char *tmp_path(const char *name)
{
    char *path = NULL;
    ck_assert(asprintf(&path, "%s/%s", harness_tmpdir(), name) > 0);
    return path;
}

START_TEST(test_dump_config_loads_again)
{
    char *users = tmp_path("dump-users"), *conf = tmp_path("dump.yaml"),
         *again = tmp_path("dump-again.yaml");
    write_text(users, "carol:$6$saltsalt$fromthefile\n");
    char *yaml = NULL;
    ck_assert(asprintf(&yaml,
                       "listen: [\"127.0.0.1:0\"]\nadmin: {listen: []}\nworkers: 2\n"
                       "auth: {users: {alice: \"$6$saltsalt$inlinehash\"}, users_file: \"%s\"}\n"
                       "upstream_proxy: \"http://bob:pa55word@127.0.0.1:9\"\n"
                       "rate_limits:\n  - {name: api, limit: 5, window: 1m, match: {method: GET}}\n",
                       users) > 0);
    write_text(conf, yaml);
    struct cmd_result r;
    run_rlproxy((char *const[]){"-T", "-c", conf, NULL}, T_MS, &r);
    ck_assert_msg(r.exit_code == 0, "rlproxy -T: exit %d: %s", r.exit_code, r.err);
    ck_assert_msg(strstr(r.err, "configuration OK") != NULL, "stderr: %s", r.err);
    /* defaults filled in, the rule written out, secrets masked, the users file's users absent */
    const char *expect[] = {"\nworkers: 2\n", "\n  client_header: 10s\n",
                            "\nrate_limits:\n  - {name: \"api\", match: {method: [GET]}, ",
                            "\n  users: {\"alice\": \"********\"}\n",
                            "\nupstream_proxy: \"http://bob:********@127.0.0.1:9\"\n"};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        ck_assert_msg(strstr(r.out, expect[i]) != NULL, "no <<%s>> in:\n%s", expect[i], r.out);
    const char *secret[] = {"inlinehash", "fromthefile", "carol", "pa55word"};
    for (size_t i = 0; i < sizeof secret / sizeof secret[0]; i++)
        ck_assert_msg(strstr(r.out, secret[i]) == NULL, "%s printed:\n%s", secret[i], r.out);

    /* -c accepts the output again (with the masked hash put back) and prints the same keys */
    char *first = strdup(r.out), *output = strdup(r.out), *hash = strstr(output, "\"********\"}");
    ck_assert_ptr_nonnull(hash);
    memcpy(hash, "\"$6$saltx\"", 10); /* as long as the quoted mask */
    write_text(again, output);
    cmd_result_free(&r);
    run_rlproxy((char *const[]){"-T", "-c", again, NULL}, T_MS, &r);
    ck_assert_msg(r.exit_code == 0, "rlproxy -T on its own output: exit %d: %s", r.exit_code,
                  r.err);
    ck_assert_str_eq(strchr(r.out, '\n'), strchr(first, '\n')); /* line 1 names the file */
    cmd_result_free(&r);
    free(first);
    free(output);
    free(yaml);
    unlink(users);
    unlink(conf);
    unlink(again);
    free(users);
    free(conf);
    free(again);
}
END_TEST

/* ---- (f) restart-only keys: one warning each, driven by the table's reloadable field ----------
 */

START_TEST(test_restart_only_keys_warn_each)
{
    struct proxy *p = proxy_start("workers: 1\n");
    const char *tail = "; the running value stays until a restart";
    /* a reloadable key alone: no warning */
    ck_assert_int_eq(reload_with(p, BASE_YAML "workers: 1\nshutdown_timeout: 5s\n"), RELOAD_OK);
    ck_assert_uint_eq(proxy_log_count(p, tail), 0);
    ck_assert_int_eq(reload_with(p, "listen: [\"127.0.0.1:0\"]\nadmin: {listen: []}\nworkers: 2\n"
                                    "shared: {redis: \"redis://:sekrit@127.0.0.1:1/0\"}\n"
                                    "shutdown_timeout: 6s\n"),
                     RELOAD_OK);
    const char *expect[] = {
        "warn: reload: workers changed from 1 to 2; the running value stays until a restart\n",
        "warn: reload: admin.listen changed from [\"127.0.0.1:0\"] to []; the running value "
        "stays until a restart\n",
        "warn: reload: shared.redis changed from \"\" to \"redis://:********@127.0.0.1:1/0\"; the "
        "running value stays until a restart\n"};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        ck_assert_msg(proxy_log_count(p, expect[i]) == 1, "no <<%s>> once in:\n%s", expect[i],
                      proxy_log_tail(p, 3000));
    ck_assert_uint_eq(proxy_log_count(p, tail), 3);
    ck_assert_uint_eq(proxy_log_count(p, "sekrit"), 0);
    /* the admin endpoint indeed still serves where it started */
    ck_assert_int_ge(proxy_metric(p, "rlproxy_config_reloads_total{result=\"ok\"}"), 2);
    proxy_stop(p);
}
END_TEST

/* ---- (g) the access log: -t checks it can be opened, and a reload that cannot open it fails ---
 */

START_TEST(test_access_log_checked_by_t_and_reload)
{
    char *conf = tmp_path("access-t.yaml"), *log_path = tmp_path("access-t.log");
    const char *missing = "/nonexistent-rlproxy-dir/access.log";
    char *yaml = NULL;
    struct cmd_result r;
    /* -t: a directory that does not exist is an error... */
    ck_assert(asprintf(&yaml, "log: {access: \"%s\"}\n", missing) > 0);
    write_text(conf, yaml);
    free(yaml);
    run_rlproxy((char *const[]){"-t", "-c", conf, NULL}, T_MS, &r);
    ck_assert_msg(r.exit_code == 1, "rlproxy -t with log.access %s: exit %d", missing, r.exit_code);
    ck_assert_msg(strstr(r.err, ": log.access: cannot open /nonexistent-rlproxy-dir/access.log "
                                "for append: No such file or directory") != NULL,
                  "stderr: %s", r.err);
    cmd_result_free(&r);
    /* ...a file not there yet in a writable directory is fine, and -t does not create it */
    ck_assert(asprintf(&yaml, "log: {access: \"%s\"}\n", log_path) > 0);
    write_text(conf, yaml);
    free(yaml);
    run_rlproxy((char *const[]){"-t", "-c", conf, NULL}, T_MS, &r);
    ck_assert_msg(r.exit_code == 0, "rlproxy -t: exit %d: %s", r.exit_code, r.err);
    ck_assert_msg(access(log_path, F_OK) != 0, "-t created %s", log_path);
    cmd_result_free(&r);

    /* reload: the running config, its access log included, keeps serving; the metric counts a
     * failure */
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("log: {access: \"%s\"}\n", log_path);
    ck_assert_int_eq(get_status_on(p->port, o, NULL), 200);
    char *bad = NULL;
    ck_assert(asprintf(&bad, BASE_YAML "log: {access: \"%s\"}\nshutdown_timeout: 7s\n", missing) >
              0);
    ck_assert_int_eq(reload_with(p, bad), RELOAD_FAILED);
    ck_assert_msg(proxy_log_contains(p, "reload failed, keeping the running config: log.access: "
                                        "cannot open /nonexistent-rlproxy-dir/access.log: No "
                                        "such file or directory"),
                  "%s", proxy_log_tail(p, 2000));
    ck_assert_uint_eq(proxy_log_count(p, "configuration reloaded from"), 0);
    ck_assert_int_eq(proxy_metric(p, "rlproxy_config_reloads_total{result=\"failed\"}"), 1);
    ck_assert_int_eq(proxy_metric(p, "rlproxy_config_reloads_total{result=\"ok\"}"), 0);
    ck_assert_int_eq(get_status_on(p->port, o, NULL), 200);
    proxy_stop(p);
    size_t len = 0;
    char *lines = read_file(log_path, &len);
    ck_assert_msg(lines != NULL && text_count(lines, "\n") == 2,
                  "both requests belong in the first access log:\n%s", lines ? lines : "(none)");
    free(lines);
    free(bad);
    origin_stop(o);
    unlink(log_path);
    unlink(conf);
    free(log_path);
    free(conf);
}
END_TEST

/* ---- (h) a rule that looks inside requests to a host whose tunnels stay closed: -t warns -----
 */

START_TEST(test_check_warns_about_rules_tunnels_hide)
{
    char *conf = tmp_path("warn.yaml");
    write_text(conf, "listen: [\"127.0.0.1:0\"]\n"
                     "rate_limits:\n"
                     "  - name: github\n"
                     "    match: { host: \"api.github.com\", path_prefix: \"/repos\" }\n"
                     "    limit: 5000\n"
                     "    window: 1h\n");
    struct cmd_result r;
    run_rlproxy((char *const[]){"-t", "-c", conf, NULL}, T_MS, &r);
    ck_assert_msg(r.exit_code == 0, "a warning is no error: exit %d: %s", r.exit_code, r.err);
    ck_assert_msg(strstr(r.err, "warn: ") != NULL && strstr(r.err, "warn.yaml:3:5: rate_limits[0] "
                                                                 "(github): match.path_prefix "
                                                                 "never limits https:// requests "
                                                                 "to api.github.com") != NULL,
                  "stderr: %s", r.err);
    cmd_result_free(&r);
    unlink(conf);
    free(conf);
}
END_TEST

HARNESS_MAIN("reload", 30, test_twenty_reloads_under_load,
             test_reloaded_keys_apply_to_new_connections,
             test_listen_change_rebinds_only_what_changed,
             test_listen_bind_failure_keeps_old_listeners, test_inflight_request_survives_reloads,
             test_dump_config_loads_again, test_restart_only_keys_warn_each,
             test_access_log_checked_by_t_and_reload, test_check_warns_about_rules_tunnels_hide)
