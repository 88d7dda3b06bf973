/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_lifecycle.c — graceful stop (issue 3, item 3) and the command line (item 1): SIGTERM lets a
 * request in flight finish and exits 0; new connections are refused once the stop has begun;
 * shutdown_timeout cuts a drain short; a second signal stops at once; idle keep-alive connections
 * do not hold the exit back; a tunnel keeps working during the drain. `-t` checks a file (0/1 and
 * FILE:LINE:COLUMN), `-V` prints the version, an unknown option exits 2. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define T_MS 10000

/* ---- helpers ----------------------------------------------------------------------------------
 */

struct exit_info {
    int exited;   /* exited normally */
    int code;     /* its exit status */
    int signaled; /* killed by a signal */
    int sig;
    uint64_t at_ms; /* now_ms() when the exit was seen (10 ms resolution) */
};

/* Waits up to timeout_ms for the proxy to exit on its own. Returns 1 and fills *e when it did (the
 * process is then reaped through the harness, so its teardown forgets it, and p is freed); 0 when
 * it is still running. */
static int wait_exit(struct proxy *p, int timeout_ms, struct exit_info *e)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        /* WNOWAIT: look without reaping; proxy_alive() then reaps and untracks it */
        if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            si.si_pid == p->pid) {
            memset(e, 0, sizeof *e);
            e->at_ms = now_ms();
            e->exited = si.si_code == CLD_EXITED;
            e->code = si.si_status;
            e->signaled = si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED;
            e->sig = si.si_status;
            ck_assert(!proxy_alive(p));
            free(p);
            return 1;
        }
        if (now_ms() >= deadline)
            return 0;
        sleep_ms(10);
    }
}

static void assert_exit_0(const struct exit_info *e, const char *what)
{
    ck_assert_msg(e->exited && e->code == 0, "%s: rlproxy %s %d, want exit status 0", what,
                  e->exited ? "exited with status" : "was killed by signal",
                  e->exited ? e->code : e->sig);
}

/* Sends GET /slow?delay=S on a new connection and waits (bounded) until the origin has it */
static struct raw *start_slow(struct proxy *p, struct origin *o, int delay_s)
{
    long long before = origin_stat(o, "requests");
    struct raw *c = raw_connect(p->port);
    char path[64];
    snprintf(path, sizeof path, "/slow?delay=%d", delay_s);
    raw_send_proxy_request(c, "GET", o, path, NULL);
    uint64_t deadline = now_ms() + 5000;
    while (origin_stat(o, "requests") <= before) {
        ck_assert_msg(now_ms() < deadline, "the slow request never reached the origin");
        sleep_ms(20);
    }
    return c;
}

/* ---- graceful stop ----------------------------------------------------------------------------
 */

START_TEST(test_sigterm_lets_inflight_request_finish)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    struct raw *c = start_slow(p, o, 2);
    uint64_t t0 = now_ms();
    ck_assert(kill(p->pid, SIGTERM) == 0);
    ck_assert_msg(proxy_wait_log(p, "stopping: draining", 2000), "no drain logged; log:\n%s",
                  proxy_log_tail(p, 800));
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "request in flight during the drain: %s", raw_result_name(rc));
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "slow");
    const char *conn = resp_header(&r, "Connection", 0);
    ck_assert_msg(conn != NULL && strcasecmp(conn, "close") == 0,
                  "a draining proxy must close after the response (Connection: %s)",
                  conn != NULL ? conn : "(none)");
    http_response_free(&r);
    ck_assert_msg(raw_wait_closed(c, 3000), "connection left open after the last response");
    raw_close(c);
    struct exit_info e;
    ck_assert_msg(wait_exit(p, 3000, &e), "rlproxy still running 3 s after its last request");
    assert_exit_0(&e, "drain");
    ck_assert_msg(e.at_ms - t0 >= 1000, "exited %llu ms after SIGTERM, before the slow response",
                  (unsigned long long)(e.at_ms - t0));
    origin_stop(o);
}
END_TEST

START_TEST(test_sigterm_refuses_new_connections)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    int port = p->port;
    struct raw *c = start_slow(p, o, 2);
    ck_assert(kill(p->pid, SIGTERM) == 0);
    ck_assert(proxy_wait_log(p, "stopping: draining", 2000));
    uint64_t t0 = now_ms();
    int refused = 0;
    while (!(refused = !port_accepts(port)) && now_ms() - t0 < 1000)
        sleep_ms(20);
    uint64_t ms = now_ms() - t0;
    /* the request in flight is not disturbed either way */
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, T_MS);
    int status = rc == RAW_OK ? r.status : 0;
    http_response_free(&r);
    ck_assert_msg(rc == RAW_OK && status == 200, "in-flight request: %s, status %d",
                  raw_result_name(rc), status);
    raw_close(c);
    struct exit_info e;
    ck_assert_msg(wait_exit(p, 5000, &e), "rlproxy did not exit after the drain");
    assert_exit_0(&e, "drain");
    ck_assert_msg(refused,
                  "127.0.0.1:%d still accepted connections %llu ms into the drain (they are never "
                  "served: the listening socket stays open while draining)",
                  port, (unsigned long long)ms);
    origin_stop(o);
}
END_TEST

START_TEST(test_shutdown_timeout_cuts_drain_short)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, "shutdown_timeout: 1s\n");
    struct raw *c = start_slow(p, o, 10);
    uint64_t t0 = now_ms();
    ck_assert(kill(p->pid, SIGTERM) == 0);
    struct exit_info e;
    ck_assert_msg(wait_exit(p, 3000, &e), "rlproxy still running 3 s after SIGTERM with "
                                          "shutdown_timeout 1s");
    uint64_t ms = e.at_ms - t0;
    printf("shutdown_timeout 1s: exited %llu ms after SIGTERM\n", (unsigned long long)ms);
    fflush(stdout);
    ck_assert_msg(ms >= 900, "exited after %llu ms: the drain did not wait",
                  (unsigned long long)ms);
    ck_assert_msg(ms <= 1600, "exited after %llu ms, shutdown_timeout is 1 s",
                  (unsigned long long)ms);
    assert_exit_0(&e, "drain cut short");
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, 2000);
    int status = rc == RAW_OK ? r.status : 0;
    http_response_free(&r);
    ck_assert_msg(rc == RAW_CLOSED, "client of the cut-off request: %s (status %d), want closed",
                  raw_result_name(rc), status);
    raw_close(c);
    origin_stop(o);
}
END_TEST

START_TEST(test_second_signal_stops_at_once)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL); /* shutdown_timeout: 30s */
    struct raw *c = start_slow(p, o, 10);
    ck_assert(kill(p->pid, SIGTERM) == 0);
    ck_assert(proxy_wait_log(p, "stopping: draining", 2000));
    sleep_ms(300);
    ck_assert_msg(proxy_alive(p), "rlproxy exited with a request in flight and 30 s to drain");
    uint64_t t0 = now_ms();
    ck_assert(kill(p->pid, SIGINT) == 0); /* TERM then INT: either counts as the second */
    struct exit_info e;
    ck_assert_msg(wait_exit(p, 2000, &e), "a second signal did not stop rlproxy within 2 s");
    uint64_t ms = e.at_ms - t0;
    ck_assert_msg(ms <= 1000, "second signal: exited after %llu ms", (unsigned long long)ms);
    assert_exit_0(&e, "second signal");
    ck_assert_msg(raw_wait_closed(c, 2000), "the client's connection outlived the process");
    raw_close(c);
    origin_stop(o);
}
END_TEST

START_TEST(test_idle_connections_do_not_delay_exit)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    /* one keep-alive connection after a request, one that never sent a byte */
    struct raw *k = raw_connect_send(p->port, "GET", o, "/bytes/100", NULL);
    raw_expect_status(k, 200, "the keep-alive connection's request");
    struct raw *silent = raw_connect(p->port);
    sleep_ms(200); /* let a worker accept it */
    uint64_t t0 = now_ms();
    ck_assert(kill(p->pid, SIGTERM) == 0);
    struct exit_info e;
    ck_assert_msg(wait_exit(p, 3000, &e), "idle connections held the exit back for 3 s");
    uint64_t ms = e.at_ms - t0;
    ck_assert_msg(ms <= 1000, "exit took %llu ms with only idle connections",
                  (unsigned long long)ms);
    assert_exit_0(&e, "idle");
    ck_assert(raw_wait_closed(k, 1000));
    ck_assert(raw_wait_closed(silent, 1000));
    raw_close(k);
    raw_close(silent);
    origin_stop(o);
}
END_TEST

START_TEST(test_sigint_stops_idle_proxy)
{
    struct proxy *p = proxy_start(NULL);
    uint64_t t0 = now_ms();
    ck_assert(kill(p->pid, SIGINT) == 0);
    struct exit_info e;
    ck_assert_msg(wait_exit(p, 2000, &e), "SIGINT did not stop an idle rlproxy within 2 s");
    ck_assert_msg(e.at_ms - t0 <= 1000, "SIGINT: exit took %llu ms",
                  (unsigned long long)(e.at_ms - t0));
    assert_exit_0(&e, "SIGINT");
}
END_TEST

START_TEST(test_tunnel_works_during_drain)
{
    struct origin *o;
    struct proxy *p = proxy_start_tunnel_to(&o, 0);
    struct raw *t = raw_connect(p->port);
    struct http_response r;
    ck_assert_int_eq(raw_tunnel_request(t, o->port, &r, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 200);
    http_response_free(&r);
    ck_assert(kill(p->pid, SIGTERM) == 0);
    ck_assert(proxy_wait_log(p, "stopping: draining", 2000));
    sleep_ms(200);
    /* the tunnel still carries a request and its response */
    raw_send_str(t, "GET /bytes/5000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    raw_expect_pattern(t, 5000, "tunnel during the drain");
    ck_assert_msg(proxy_alive(p), "rlproxy exited with a tunnel open");
    /* the client ends the tunnel: nothing is left, the process exits */
    uint64_t t0 = now_ms();
    raw_close(t);
    struct exit_info e;
    ck_assert_msg(wait_exit(p, 3000, &e), "rlproxy still running 3 s after the last tunnel closed");
    ck_assert_msg(e.at_ms - t0 <= 1500, "exit took %llu ms after the tunnel closed",
                  (unsigned long long)(e.at_ms - t0));
    assert_exit_0(&e, "tunnel drain");
    origin_stop(o);
}
END_TEST

/* ---- the command line -------------------------------------------------------------------------
 */

static void run_bin(struct cmd_result *r, const char *a1, const char *a2, const char *a3)
{
    char *args[] = {(char *)a1, (char *)a2, (char *)a3, NULL};
    run_rlproxy(args, 10000, r);
    ck_assert_msg(!r->timed_out, "rlproxy %s timed out", a1 != NULL ? a1 : "");
}

START_TEST(test_check_config_valid_and_invalid)
{
    char good[600], bad[600], missing[600];
    snprintf(good, sizeof good, "%s/lifecycle-good.yaml", harness_tmpdir());
    snprintf(bad, sizeof bad, "%s/lifecycle-bad.yaml", harness_tmpdir());
    snprintf(missing, sizeof missing, "%s/lifecycle-missing.yaml", harness_tmpdir());
    /* -t never opens sockets: a listen address that is taken right now is fine */
    int busy = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    ck_assert(bind(busy, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(busy, 1) == 0);
    ck_assert(getsockname(busy, (struct sockaddr *)&sa, &len) == 0);
    char *yaml = NULL;
    ck_assert(asprintf(&yaml,
                       "listen: [\"127.0.0.1:%d\"]\nworkers: 1\nshutdown_timeout: 5s\n"
                       "timeouts:\n  client_idle: 30s\nlog:\n  access_format: json\n",
                       ntohs(sa.sin_port)) > 0);
    write_text(good, yaml);
    free(yaml);
    write_text(bad, "listen: [\"127.0.0.1:0\"]\n# comment\ntimeouts:\n  client_idle: 5 seconds\n");

    struct cmd_result r;
    run_bin(&r, "-t", "-c", good);
    ck_assert_msg(r.exit_code == 0, "-t on a valid file: exit %d, stderr: %s", r.exit_code, r.err);
    ck_assert_msg(strstr(r.out, good) != NULL, "-t output does not name the file: %s", r.out);
    cmd_result_free(&r);
    close(busy);

    run_bin(&r, "-t", "-c", bad);
    ck_assert_msg(r.exit_code == 1, "-t on an invalid file: exit %d", r.exit_code);
    char where[700];
    snprintf(where, sizeof where, "%s:4:16: timeouts.client_idle: ", bad);
    ck_assert_msg(strncmp(r.err, where, strlen(where)) == 0,
                  "stderr: \"%s\", want it to start \"%s\"", r.err, where);
    cmd_result_free(&r);

    run_bin(&r, "-c", bad, "-t"); /* option order does not matter */
    ck_assert_int_eq(r.exit_code, 1);
    cmd_result_free(&r);

    run_bin(&r, "-t", "-c", missing);
    ck_assert_msg(r.exit_code == 1, "-t on a missing file: exit %d", r.exit_code);
    ck_assert_msg(strstr(r.err, missing) != NULL, "stderr does not name the file: %s", r.err);
    cmd_result_free(&r);

    /* the shipped sample config is valid */
    const char *src = getenv("RLPROXY_SRCDIR");
    char sample[1024];
    snprintf(sample, sizeof sample, "%s/conf/rlproxy.yaml", src != NULL && *src ? src : ".");
    run_bin(&r, "-t", "-c", sample);
    ck_assert_msg(r.exit_code == 0, "-t %s: exit %d: %s", sample, r.exit_code, r.err);
    cmd_result_free(&r);

    /* without -c, -t checks the embedded default */
    run_bin(&r, "-t", NULL, NULL);
    ck_assert_msg(r.exit_code == 0, "-t on the embedded default: exit %d: %s", r.exit_code, r.err);
    cmd_result_free(&r);
}
END_TEST

START_TEST(test_version_and_usage_errors)
{
    struct cmd_result r;
    run_bin(&r, "-V", NULL, NULL);
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_msg(strncmp(r.out, "rlproxy " PACKAGE_VERSION "\n",
                          strlen("rlproxy " PACKAGE_VERSION "\n")) == 0,
                  "-V: %s", r.out);
    cmd_result_free(&r);

    run_bin(&r, "-h", NULL, NULL);
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_msg(strstr(r.out, "usage: rlproxy") != NULL, "-h: %s", r.out);
    cmd_result_free(&r);

    run_bin(&r, "-Z", NULL, NULL);
    ck_assert_msg(r.exit_code == 2, "unknown option: exit %d", r.exit_code);
    ck_assert_msg(strstr(r.err, "usage: rlproxy") != NULL, "unknown option, stderr: %s", r.err);
    ck_assert_str_eq(r.out, "");
    cmd_result_free(&r);

    run_bin(&r, "-c", NULL, NULL); /* missing argument */
    ck_assert_msg(r.exit_code == 2, "-c without a file: exit %d", r.exit_code);
    cmd_result_free(&r);

    run_bin(&r, "-t", "stray", NULL); /* operand */
    ck_assert_msg(r.exit_code == 2, "stray operand: exit %d", r.exit_code);
    cmd_result_free(&r);
}
END_TEST

/* ---- signals rlproxy does not use, SIGUSR1, --help and --version (issue 18) -------------------
 */

/* GET path through the proxy, 200 expected: the proxy is still serving */
static void assert_serves(struct proxy *p, struct origin *o, const char *path, const char *after)
{
    char url[256];
    struct fetch_res rs;
    fetch_via(p->port, origin_url(o, path, url, sizeof url), &rs);
    ck_assert_msg(rs.status == 200, "after %s: status %ld; %s", after, rs.status, proxy_state(p));
    fetch_free(&rs);
}

/* kill -USR1 is an nginx operator's habit and what logrotate's postrotate sends; the others reach
 * a daemon by mistake (USR2, ALRM) or from the terminal and the network (WINCH, PIPE). None may
 * stop a serving proxy; proxy_stop then checks it still exits 0 on SIGTERM. */
START_TEST(test_unused_signals_do_not_stop_serving)
{
    static const struct {
        int sig;
        const char *name;
    } sent[] = {{SIGUSR1, "SIGUSR1"}, {SIGUSR2, "SIGUSR2"},   {SIGPIPE, "SIGPIPE"},
                {SIGALRM, "SIGALRM"}, {SIGWINCH, "SIGWINCH"}, {SIGVTALRM, "SIGVTALRM"},
                {SIGPROF, "SIGPROF"}, {SIGIO, "SIGIO"},       {SIGXFSZ, "SIGXFSZ"}};
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    assert_serves(p, o, "/echo", "start-up");
    for (size_t i = 0; i < sizeof sent / sizeof sent[0]; i++) {
        ck_assert(kill(p->pid, sent[i].sig) == 0);
        sleep_ms(100); /* a fatal default action would have ended the process by now */
        ck_assert_msg(proxy_alive(p), "%s stopped rlproxy: %s", sent[i].name, proxy_state(p));
        assert_serves(p, o, "/echo", sent[i].name);
    }
    /* a real-time signal too: their default action is to terminate */
    ck_assert(kill(p->pid, SIGRTMIN + 1) == 0);
    sleep_ms(100);
    ck_assert_msg(proxy_alive(p), "SIGRTMIN+1 stopped rlproxy: %s", proxy_state(p));
    assert_serves(p, o, "/echo", "SIGRTMIN+1");
    proxy_stop_with_origin(p, o);
}
END_TEST

/* Polls (bounded) until the file contains text */
static int wait_file_contains(const char *path, const char *text, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *data = read_file(path, NULL);
        int found = data != NULL && strstr(data, text) != NULL;
        free(data);
        if (found)
            return 1;
        if (now_ms() > deadline)
            return 0;
        sleep_ms(20);
    }
}

/* Renames the access log to rotated and sends sig; the proxy logs logged, and the next request
 * (marked marker) is logged in a new file at log_path. */
static void rotate_access_log(struct proxy *p, struct origin *o, const char *log_path,
                              const char *rotated, int sig, const char *logged, const char *marker)
{
    char path[64];
    snprintf(path, sizeof path, "/echo?%s", marker);
    ck_assert(rename(log_path, rotated) == 0);
    ck_assert(kill(p->pid, sig) == 0);
    ck_assert_msg(proxy_wait_log(p, logged, 5000), "no \"%s\" logged: %s", logged, proxy_state(p));
    assert_serves(p, o, path, strsignal(sig));
    ck_assert_msg(wait_file_contains(log_path, marker, 5000),
                  "after %s the line did not go to a new %s", strsignal(sig), log_path);
}

/* What logrotate does: rename the access log, then SIGUSR1 (the packaged logrotate file), or
 * SIGHUP (the reload, which reopens it as well). Lines written after the signal go to a new file
 * at the configured path; lines before it stay in the renamed one. */
START_TEST(test_usr1_and_hup_reopen_access_log)
{
    char log_path[600], rotated[620], rotated2[620];
    snprintf(log_path, sizeof log_path, "%s/lifecycle-access.log", harness_tmpdir());
    snprintf(rotated, sizeof rotated, "%s.1", log_path);
    snprintf(rotated2, sizeof rotated2, "%s.2", log_path);
    unlink(log_path);
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("log:\n  access: \"%s\"\n", log_path);
    assert_serves(p, o, "/echo?before-rotation", "start-up");
    ck_assert_msg(wait_file_contains(log_path, "before-rotation", 5000), "no access-log line");

    rotate_access_log(p, o, log_path, rotated, SIGUSR1, "access log", "after-usr1");
    char *old = read_file(rotated, NULL);
    ck_assert_ptr_nonnull(old);
    ck_assert_msg(strstr(old, "before-rotation") != NULL && strstr(old, "after-usr1") == NULL,
                  "the rotated file: %s", old);
    free(old);

    rotate_access_log(p, o, log_path, rotated2, SIGHUP, "configuration reloaded", "after-hup");
    proxy_stop_with_origin(p, o);
}
END_TEST

/* GNU-style long options, as operators and packaging scripts expect; --version names the optional
 * parts compiled in (a bug report needs them). */
START_TEST(test_long_options_and_build_features)
{
    struct cmd_result r;
    run_bin(&r, "--help", NULL, NULL);
    ck_assert_msg(r.exit_code == 0, "--help: exit %d, stderr: %s", r.exit_code, r.err);
    ck_assert_msg(strstr(r.out, "usage: rlproxy") != NULL, "--help: %s", r.out);
    ck_assert_str_eq(r.err, "");
    cmd_result_free(&r);

    struct cmd_result v;
    run_bin(&r, "--version", NULL, NULL);
    run_bin(&v, "-V", NULL, NULL);
    ck_assert_msg(r.exit_code == 0, "--version: exit %d, stderr: %s", r.exit_code, r.err);
    ck_assert_str_eq(r.out, v.out);
    ck_assert_msg(strncmp(r.out, "rlproxy " PACKAGE_VERSION "\n",
                          strlen("rlproxy " PACKAGE_VERSION "\n")) == 0,
                  "--version: %s", r.out);
#ifdef HAVE_HIREDIS
    ck_assert_msg(strstr(r.out, " +hiredis") != NULL, "--version: %s", r.out);
#else
    ck_assert_msg(strstr(r.out, " -hiredis") != NULL, "--version: %s", r.out);
#endif
#ifdef HAVE_LIBSYSTEMD
    ck_assert_msg(strstr(r.out, " +systemd") != NULL, "--version: %s", r.out);
#else
    ck_assert_msg(strstr(r.out, " -systemd") != NULL, "--version: %s", r.out);
#endif
    ck_assert_msg(strstr(r.out, "+tls-intercept") != NULL, "--version: %s", r.out);
    ck_assert_msg(strstr(r.out, "libcurl ") != NULL, "--version: %s", r.out);
    cmd_result_free(&r);
    cmd_result_free(&v);

    run_bin(&r, "--no-such-option", NULL, NULL);
    ck_assert_msg(r.exit_code == 2, "unknown long option: exit %d", r.exit_code);
    ck_assert_msg(strstr(r.err, "usage: rlproxy") != NULL, "stderr: %s", r.err);
    cmd_result_free(&r);
}
END_TEST

HARNESS_MAIN("lifecycle", 20, test_sigterm_lets_inflight_request_finish,
             test_sigterm_refuses_new_connections, test_shutdown_timeout_cuts_drain_short,
             test_second_signal_stops_at_once, test_idle_connections_do_not_delay_exit,
             test_sigint_stops_idle_proxy, test_tunnel_works_during_drain,
             test_check_config_valid_and_invalid, test_version_and_usage_errors,
             test_unused_signals_do_not_stop_serving, test_usr1_and_hup_reopen_access_log,
             test_long_options_and_build_features)
