/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* redis_server.h — a test's own redis-server on 127.0.0.1 and a free port (never 6379, never a
 * system service), and reading the shared windows rlproxy keeps in it through redis-cli. For the
 * suites that need a real Redis (tests/e2e/test_shared, tests/unit/test_shared); helpers fail the
 * running Check test on set-up errors. Without redis-server and redis-cli installed every caller
 * FAILS, saying so: a CI without Redis must not pass by skipping. */
#ifndef RLPROXY_TEST_REDIS_SERVER_H
#define RLPROXY_TEST_REDIS_SERVER_H

#include <stddef.h>
#include <sys/types.h>

struct redis {
    pid_t pid; /* 0 when not running */
    int port;
    char log_path[512];
};

/* Fails the test unless redis-server and redis-cli are installed; learns redis-server's version */
void require_redis(void);
/* The redis-cli found by require_redis */
const char *redis_cli_path(void);
/* Starts redis-server on r->port (a fresh free port when 0) and waits for PONG. Spawned directly
 * with PR_SET_PDEATHSIG, from the test's main thread only (the death signal follows the thread
 * that forked), and tracked for redis_teardown. */
void redis_run(struct redis *r);
/* A new redis-server on a free port (redis_run), for redis_free */
struct redis *redis_start(void);
/* Stops it at once: SIGKILL (the Redis "stopped" fault; nothing is saved anyway) */
void redis_kill(struct redis *r);
void redis_free(struct redis *r);
/* Another child (a background redis-cli) that redis_teardown kills if the test does not reap it:
 * add (add=1) or remove it */
void redis_track(pid_t pid, int add);
/* A checked fixture's teardown: SIGKILL every redis-server and tracked child still running */
void redis_teardown(void);

/* redis-cli -h 127.0.0.1 -p PORT args...: stdout (malloc'd). Fails the test unless it exits 0 in
 * time. */
char *redis_cli_v(int port, const char *const *args);
#define redis_cli(port, ...) redis_cli_v((port), (const char *const[]){__VA_ARGS__, NULL})
/* An integer from a redis-cli reply such as "3\n" */
long long redis_int(int port, const char *cmd, const char *arg);
/* A number from INFO SECTION: the digits after "field" (e.g. "errorstat_NOSCRIPT:count="); 0 when
 * the field is absent (Redis lists no line for an error that never happened) */
long long redis_info(int port, const char *section, const char *field);

/* The sorted set of rule `name` (rlproxy:{NAME:KEY}; the keys beside it, :seq, :pending, :hold,
 * :departed, :unanswered and :learned, are skipped); "" while there is none */
void window_key(int port, const char *name, char *out, size_t len);
/* ZCARD of rule `name`'s set; 0 while there is none */
long long window_card(int port, const char *name);
/* Polls ZCARD of rule `name` until it is want (bounded); returns the last value */
long long wait_card(int port, const char *name, long long want, int timeout_ms);
/* The scores (admission and reservation times, µs of Redis' clock) of rule `name`'s sorted set,
 * ascending (malloc'd in *out); returns how many */
size_t window_scores(int port, const char *name, long long **out);
/* The shortest time (µs) spanned by limit+1 consecutive scores; LLONG_MAX when too few */
long long scores_min_span(const long long *v, size_t n, int limit);

#endif
