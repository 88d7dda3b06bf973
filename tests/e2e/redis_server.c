/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* redis_server.c — see redis_server.h. */
#include "redis_server.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define MAX_REDIS 4

static pid_t g_redis_pids[MAX_REDIS];
static char g_redis_server[512], g_redis_cli[512];
static int g_redis_major = -1;

void redis_track(pid_t pid, int add) { pid_set_track(g_redis_pids, MAX_REDIS, pid, add); }

void redis_teardown(void) { pid_set_kill(g_redis_pids, MAX_REDIS); }

/* Absolute path of an executable found in PATH (or the usual Debian places); 0 or -1 */
static int find_program(const char *name, char *out, size_t len)
{
    const char *path = getenv("PATH");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s:/usr/bin:/usr/sbin:/usr/local/bin", path ? path : "");
    for (char *save = NULL, *dir = strtok_r(buf, ":", &save); dir != NULL;
         dir = strtok_r(NULL, ":", &save)) {
        if (*dir == '\0')
            continue;
        snprintf(out, len, "%s/%s", dir, name);
        if (access(out, X_OK) == 0)
            return 0;
    }
    return -1;
}

/* Fails the test unless redis-server and redis-cli are installed; learns redis-server's version */
void require_redis(void)
{
    if (g_redis_server[0] != '\0')
        return;
    ck_assert_msg(find_program("redis-server", g_redis_server, sizeof g_redis_server) == 0,
                  "redis-server is not installed (Debian: apt-get install redis-server; .ci/run "
                  "installs it): the shared-limit tests need a real Redis and do not skip");
    ck_assert_msg(find_program("redis-cli", g_redis_cli, sizeof g_redis_cli) == 0,
                  "redis-cli is not installed (Debian package redis-tools, a dependency of "
                  "redis-server): the shared-limit tests need it");
    struct cmd_result r;
    char *argv[] = {g_redis_server, "--version", NULL};
    run_cmd(argv, NULL, 5000, &r);
    const char *v = strstr(r.out, "v=");
    g_redis_major = v != NULL ? atoi(v + 2) : 0;
    ck_assert_msg(r.exit_code == 0 && g_redis_major > 0, "%s --version: %s%s", g_redis_server,
                  r.out, r.err);
    cmd_result_free(&r);
}

/* redis-cli -p PORT args...: stdout (malloc'd). Fails the test unless it exits 0 in time. */
char *redis_cli_v(int port, const char *const *args)
{
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    char *argv[16] = {g_redis_cli, "-h", "127.0.0.1", "-p", port_s};
    int n = 5;
    for (; *args != NULL && n < 15; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    struct cmd_result r;
    run_cmd(argv, NULL, 5000, &r);
    ck_assert_msg(r.exit_code == 0 && !r.timed_out, "redis-cli -p %d %s ...: exit %d%s; %s%s", port,
                  argv[5], r.exit_code, r.timed_out ? " (timed out)" : "", r.out, r.err);
    char *out = r.out;
    r.out = NULL;
    cmd_result_free(&r);
    return out;
}

/* 1 when PONG came back within timeout_ms */
static int redis_pong(int port, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    while (now_ms() < deadline) {
        char port_s[16];
        snprintf(port_s, sizeof port_s, "%d", port);
        char *argv[] = {g_redis_cli, "-h", "127.0.0.1", "-p", port_s, "ping", NULL};
        struct cmd_result r;
        run_cmd(argv, NULL, 2000, &r);
        int ok = r.exit_code == 0 && strncmp(r.out, "PONG", 4) == 0;
        cmd_result_free(&r);
        if (ok)
            return 1;
        sleep_ms(20);
    }
    return 0;
}

/* Starts redis-server on r->port (a fresh free port when 0) and waits for PONG. */
void redis_run(struct redis *r)
{
    require_redis();
    for (int attempt = 0;; attempt++) {
        int fresh = r->port == 0;
        if (fresh)
            r->port = harness_closed_port();
        ck_assert_msg(r->port != 6379, "never the default Redis port");
        if (r->log_path[0] == '\0')
            snprintf(r->log_path, sizeof r->log_path, "%s/redis-%d-%d.log", harness_tmpdir(),
                     (int)getpid(), r->port);
        char port_s[16];
        snprintf(port_s, sizeof port_s, "%d", r->port);
        /* DEBUG (for DEBUG SLEEP) is refused by default since Redis 7 unless enabled */
        char *argv[] = {g_redis_server,
                        "--port",
                        port_s,
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        (char *)harness_tmpdir(),
                        g_redis_major >= 7 ? "--enable-debug-command" : NULL,
                        "local",
                        NULL};
        r->pid = spawn_logged(argv, r->log_path);
        redis_track(r->pid, 1);
        uint64_t deadline = now_ms() + 5000;
        int status;
        for (;;) {
            if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
                redis_track(r->pid, 0);
                r->pid = 0;
                break; /* exited: port taken meanwhile? */
            }
            if (redis_pong(r->port, 100))
                return;
            ck_assert_msg(now_ms() < deadline,
                          "redis-server on port %d never answered PONG; log:\n%s", r->port,
                          read_file(r->log_path, NULL));
        }
        char *log = read_file(r->log_path, NULL);
        ck_assert_msg(fresh && attempt < 3, "redis-server on port %d exited at start-up; log:\n%s",
                      r->port, log);
        free(log);
        r->port = 0; /* another free port */
    }
}

struct redis *redis_start(void)
{
    struct redis *r = calloc(1, sizeof *r);
    ck_assert(r != NULL);
    redis_run(r);
    fprintf(stderr, "shared: redis-server %d (pid %d) on 127.0.0.1:%d, log %s\n", g_redis_major,
            (int)r->pid, r->port, r->log_path);
    return r;
}

/* Stops it at once: SIGKILL (the Redis "stopped" fault; nothing is saved anyway) */
void redis_kill(struct redis *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    redis_track(r->pid, 0);
    r->pid = 0;
}

void redis_free(struct redis *r)
{
    redis_kill(r);
    free(r);
}

/* An integer from a redis-cli reply such as "3\n" */
long long redis_int(int port, const char *cmd, const char *arg)
{
    char *out = redis_cli(port, cmd, arg);
    char *end;
    long long v = strtoll(out, &end, 10);
    ck_assert_msg(end != out, "redis-cli %s %s: %s", cmd, arg, out);
    free(out);
    return v;
}

/* The sorted set of rule `name` (rlproxy:{NAME:KEY}, its counter rlproxy:{NAME:KEY}:seq, its
 * pending set :pending and a hold :hold beside it); "" while there is none */
void window_key(int port, const char *name, char *out, size_t len)
{
    char pattern[128];
    snprintf(pattern, sizeof pattern, "rlproxy:{%s:*", name);
    char *keys = redis_cli(port, "--scan", "--pattern", pattern);
    out[0] = '\0';
    for (char *save = NULL, *k = strtok_r(keys, "\n", &save); k != NULL;
         k = strtok_r(NULL, "\n", &save)) {
        size_t n = strlen(k);
        /* the set's name ends with its hash tag; the keys beside it (:seq, :pending, :hold,
         * :departed, :unanswered, :learned: see shared_script.h) add a suffix after it */
        if (n == 0 || k[n - 1] != '}')
            continue;
        snprintf(out, len, "%s", k);
    }
    free(keys);
}

long long window_card(int port, const char *name)
{
    char key[256];
    window_key(port, name, key, sizeof key);
    return key[0] ? redis_int(port, "ZCARD", key) : 0;
}

/* Polls ZCARD of rule `name` until it is want (bounded); returns the last value */
long long wait_card(int port, const char *name, long long want, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    long long v;
    while ((v = window_card(port, name)) != want && now_ms() < deadline)
        sleep_ms(10);
    return v;
}

/* The scores (admission and reservation times, µs of Redis' clock) of rule `name`'s sorted set,
 * ascending; returns how many */
size_t window_scores(int port, const char *name, long long **out)
{
    char key[256];
    window_key(port, name, key, sizeof key);
    ck_assert_msg(key[0] != '\0', "no sorted set for rule %s in Redis", name);
    char *text = redis_cli(port, "ZRANGE", key, "0", "-1", "WITHSCORES");
    size_t n = 0, cap = 64, line = 0;
    long long *v = malloc(cap * sizeof *v);
    ck_assert(v != NULL);
    for (char *save = NULL, *t = strtok_r(text, "\n", &save); t != NULL;
         t = strtok_r(NULL, "\n", &save), line++) {
        if (line % 2 == 0)
            continue; /* the member */
        if (n == cap) {
            cap *= 2;
            v = realloc(v, cap * sizeof *v);
            ck_assert(v != NULL);
        }
        v[n++] = strtoll(t, NULL, 10);
    }
    free(text);
    *out = v;
    return n;
}

/* The shortest time (µs) spanned by limit+1 consecutive scores; LLONG_MAX when too few */
long long scores_min_span(const long long *v, size_t n, int limit)
{
    long long min = LLONG_MAX;
    for (size_t i = 0; i + (size_t)limit < n; i++)
        if (v[i + limit] - v[i] < min)
            min = v[i + limit] - v[i];
    return min;
}

/* A number from INFO SECTION: the digits after "field" (e.g. "errorstat_NOSCRIPT:count="); 0 when
 * the field is absent (Redis lists no line for an error that never happened) */
long long redis_info(int port, const char *section, const char *field)
{
    char *out = redis_cli(port, "INFO", section);
    const char *hit = strstr(out, field);
    long long v = hit != NULL ? strtoll(hit + strlen(field), NULL, 10) : 0;
    free(out);
    return v;
}

const char *redis_cli_path(void)
{
    require_redis();
    return g_redis_cli;
}
