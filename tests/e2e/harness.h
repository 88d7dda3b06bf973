/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* harness.h — end-to-end test support: spawns the real test origin (tests/origin/origin.py) and a
 * real rlproxy on loopback ephemeral ports, and talks to them through raw sockets, libcurl and the
 * curl/wget/python CLIs. No mocks. Every wait is bounded; helpers fail the running Check test
 * (ck_assert) on set-up errors so a test body reads as the behaviour it checks.
 *
 * Children get PR_SET_PDEATHSIG(SIGKILL): when a test's forked process ends (pass, fail or Check's
 * timeout) nothing it spawned outlives it. */
#ifndef RLPROXY_TEST_HARNESS_H
#define RLPROXY_TEST_HARNESS_H

#include <check.h>
#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../unit/unit.h" /* unit_add_tcase, UNIT_TESTS */

/* ---- run control ---------------------------------------------------------------------------- */

/* Runs the suite (CK_NORMAL) with a per-run temp dir, returns EXIT_SUCCESS when nothing failed. */
int harness_run_suite(Suite *s);
/* A TCase whose teardown kills anything a test left running; timeout_s 0 keeps Check's default. */
TCase *harness_tcase(const char *name, double timeout_s);
/* Runs a suite that is one harness_tcase of these tests, both called name (harness_run_suite) */
int harness_run_tests(const char *name, double timeout_s, const TTest *const tests[], size_t count);
/* The whole main() of such a suite: HARNESS_MAIN("forward", 0, test_a, test_b) */
#define HARNESS_MAIN(name, timeout_s, ...)                                                         \
    int main(void) { return harness_run_tests(name, timeout_s, UNIT_TESTS(__VA_ARGS__)); }
int harness_sanitizers(void); /* RLPROXY_SANITIZERS=1: RSS figures are meaningless */
/* RLPROXY_WRAPPER="valgrind --error-exitcode=99 ... -q": its whitespace-separated words go before
 * rlproxy's argv in proxy_start(). A wrapped rlproxy is slow (valgrind: 20-50x), so the ready,
 * admin and stop waits are longer, RSS limits are not checked (valgrind's RSS is its own) and
 * harness_quick() is on. A wrapper's non-zero exit (valgrind's --error-exitcode on an error or a
 * leak) fails proxy_stop(), with the "==PID==" report in the message. */
int harness_wrapped(void);
/* Timing tolerances: 1 under sanitizers or a wrapper (the proxy is many times slower) */
int harness_slow(void);
int harness_quick(void); /* RLPROXY_QUICK=1, or RLPROXY_WRAPPER set: use small sizes */
/* big unless quick, then small */
uint64_t harness_size(uint64_t big, uint64_t small);
const char *harness_tmpdir(void);
uint64_t now_ms(void); /* CLOCK_MONOTONIC */
uint64_t now_us(void); /* CLOCK_MONOTONIC */
void sleep_ms(unsigned ms);
void sleep_until_us(uint64_t t_us); /* until now_us() reaches t_us */
/* Writes text to path (replacing it); fails the test if it cannot */
void write_text(const char *path, const char *text);

/* ---- body pattern: byte i = (i*131 + 7) & 0xff, as tests/origin/origin.py sends ------------- */

void pattern_fill(void *buf, size_t len, uint64_t offset);
/* -1 when buf equals the pattern at offset, else the index of the first wrong byte */
int64_t pattern_mismatch(const void *buf, size_t len, uint64_t offset);
/* sha256 hex of the first n pattern bytes, computed as a client that generated them would */
void pattern_sha256_hex(uint64_t n, char out[65]);

/* ---- SHA-256 (FIPS 180-4), so uploads can be verified without linking libcrypto ------------- */

struct sha256 {
    uint32_t h[8];
    uint64_t total;
    uint8_t block[64];
    size_t used;
};
void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final_hex(struct sha256 *s, char out[65]);
void sha256_hex(const void *data, size_t len, char out[65]);

/* ---- headers ----------------------------------------------------------------------------------
 */

struct http_header {
    char *name;
    char *value;
};
/* nth (0-based) header called name, ignoring case; NULL when absent */
const char *hdr_find(const struct http_header *h, size_t n, const char *name, int nth);
size_t hdr_count(const struct http_header *h, size_t n, const char *name);
/* 1 when a header has exactly this name (case kept) and value */
int hdr_has_exact(const struct http_header *h, size_t n, const char *name, const char *value);
void hdr_free(struct http_header *h, size_t n);

/* ---- the test origin --------------------------------------------------------------------------
 */

struct origin {
    pid_t pid;
    int port;
    int tls;
};
struct origin *origin_start(int tls);
void origin_stop(struct origin *o);
/* "http[s]://127.0.0.1:PORT" + path into buf */
const char *origin_url(const struct origin *o, const char *path, char *buf, size_t len);
/* test CA (PEM) that signed the TLS origin's leaf for 127.0.0.1, ::1 and localhost */
const char *harness_ca_path(void);

/* ---- rlproxy ----------------------------------------------------------------------------------
 */

struct proxy {
    pid_t pid;
    int port;
    int admin_port; /* from "admin endpoint listening on 127.0.0.1:PORT" when the harness
                     * configured the admin endpoint (ephemeral); -1 otherwise */
    int running;
    int wait_status; /* once reaped */
    char conf_path[512];
    char log_path[512];
};
/* Config is `listen: ["127.0.0.1:0"]`, `admin: {listen: ["127.0.0.1:0"]}` unless yaml_extra has
 * a top-level admin key, then yaml_extra (NULL or YAML lines). Waits for the
 * "listening on 127.0.0.1:PORT" log line; fails the test if it never comes. */
struct proxy *proxy_start(const char *yaml_extra);
struct proxy *proxy_startf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* SIGTERM, bounded wait; fails the test unless rlproxy exited with status 0 (a crash, a signal
 * or a sanitizer report fails it). Frees p. */
void proxy_stop(struct proxy *p);
int proxy_alive(struct proxy *p);
int proxy_log_contains(struct proxy *p, const char *text);
/* How often text occurs in the proxy's log (non-overlapping); in a string */
size_t proxy_log_count(struct proxy *p, const char *text);
size_t text_count(const char *haystack, const char *needle);
/* Rewrites the proxy's config file with yaml (the whole file), sends SIGHUP and waits (timeout_ms
 * at most) for the outcome in the log: 1 reloaded, 0 the reload failed (the old config runs on).
 * Fails the test when rlproxy dies or logs neither in time. */
int proxy_reload(struct proxy *p, const char *yaml, int timeout_ms);
/* Polls (every 10 ms, at most timeout_ms) until the proxy's log contains text; 1 when it did */
int proxy_wait_log(struct proxy *p, const char *text, int timeout_ms);
char *proxy_log_tail(struct proxy *p, size_t max_bytes); /* malloc'd, never NULL */
/* For failure messages: a sanitizer report's head and SUMMARY if the log has one, else valgrind's
 * "==PID==" report lines and the log's tail if it has those, else its tail */
char *proxy_log_excerpt(struct proxy *p);
/* "rlproxy is still running", or how it exited and proxy_log_excerpt(); malloc'd */
char *proxy_state(struct proxy *p);
long proxy_rss_kib(struct proxy *p);      /* VmRSS, -1 if unknown */
long proxy_peak_rss_kib(struct proxy *p); /* VmHWM, -1 if unknown */
const char *proxy_url(const struct proxy *p, char *buf, size_t len);
/* The admin endpoint's port. proxy_start() reads it as soon as the proxy's own listener is logged,
 * which can be before the admin endpoint's line: this waits (5 s at most) for that line and fails
 * the test when it never comes. */
int proxy_admin_port(struct proxy *p);
/* A request to the admin endpoint (no proxy): method NULL is GET; auth, when not NULL, is sent as
 * the Authorization header. Fails the test when curl fails. proxy_admin_status: its status. */
struct fetch_res; /* below, with the libcurl client */
void proxy_admin_fetch(struct proxy *p, const char *method, const char *path, const char *auth,
                       struct fetch_res *rs);
long proxy_admin_status(struct proxy *p, const char *method, const char *path, const char *auth);
/* A series from the admin endpoint's /metrics; `series` is the whole series name, labels
 * included. -1 when absent; fails the test when /metrics cannot be read. */
long long proxy_metric(struct proxy *p, const char *series);
/* Polls (every 20 ms, at most timeout_ms) until the series has the value; 1 when it got there */
int proxy_wait_metric(struct proxy *p, const char *series, long long want, int timeout_ms);

/* An origin and an rlproxy in front of it: what most tests start with; fixture_down stops both, the
 * proxy first (proxy_stop's checks apply). */
struct fixture {
    struct origin *o;
    struct proxy *p;
};
void fixture_down(struct fixture f);
/* origin_start(tls), then proxy_start(yaml_extra) */
struct fixture fixture_up(int tls, const char *yaml_extra);
/* The proxy is alive and a fresh connection GETs body_len pattern bytes through it (a 200) */
void fixture_still_serving(struct fixture f, size_t body_len);
/* The same pair for tests that name them o and p: origin_start(tls) into *o, then
 * proxy_start(yaml_extra); proxy_stop_with_origin stops both, the proxy first. */
struct proxy *proxy_start_with_origin(struct origin **o, int tls, const char *yaml_extra);
void proxy_stop_with_origin(struct proxy *p, struct origin *o);
/* proxy_start_with_origin with `connect: {allowed_ports: [ORIGIN'S PORT]}`: clients may open
 * CONNECT tunnels to the origin */
struct proxy *proxy_start_tunnel_to(struct origin **o, int tls);

/* Fails the test when the proxy's peak RSS (VmHWM) reached limit_kib; prints the figure. Skipped
 * (printed only) under RLPROXY_SANITIZERS=1, under RLPROXY_WRAPPER (valgrind's RSS is its own) or
 * when the running rlproxy has libasan/libubsan mapped: shadow memory makes RSS meaningless there. */
void assert_peak_rss_below(struct proxy *p, long limit_kib, const char *label);

/* GET path straight from the origin (no proxy): the body, malloc'd; fails the test on error */
char *origin_get(const struct origin *o, const char *path);
/* A number from the origin's /stats: "connections" (open now), "accepted" (ever), "requests",
 * "streams_active", "bytes_sent"; the /stats request's own connection counts in the first two. */
long long origin_stat(const struct origin *o, const char *key);

/* The origin's /count?key=KEY: how many requests with that key it received, and when (ms on its
 * monotonic clock, up to max of them, oldest first; how many). Fail the test on an answer they
 * cannot read. */
long long origin_key_count(const struct origin *o, const char *key);
size_t origin_key_times(const struct origin *o, const char *key, double *ms, size_t max);

/* One request as the origin logged it (its /log): when it arrived (CLOCK_MONOTONIC, ms, like
 * now_ms()), on which of the origin's connections, for which target. */
struct arrival {
    double ms;
    long conn; /* -1 when the log does not say */
    char target[200];
};
/* The requests the origin received whose target starts with prefix, oldest first; *out is
 * malloc'd. Fails the test on a log it cannot read. */
size_t origin_arrivals(const struct origin *o, const char *prefix, struct arrival **out);
/* The shortest time spanned by limit+1 consecutive arrivals (1e9 when there are not that many);
 * *worst its first index */
double arrivals_min_span(const struct arrival *a, size_t n, int limit, size_t *worst);

/* A loopback port that was just bound and closed: connecting to it is refused. */
int harness_closed_port(void);

/* A TCP relay on 127.0.0.1 in front of target_port, threads of this process. New connections take
 * delay_ms to open: it accepts at once, waits, then connects to the target and copies both ways,
 * as a distant origin (or its TLS handshake) would look to rlproxy. relay_freeze makes every
 * connection it has stop moving (nothing read, nothing written, no reset), like a server behind a
 * firewall that started dropping packets; connections made afterwards are relayed again.
 * relay_stop closes every connection. */
struct relay;
struct relay *relay_start(int target_port, int delay_ms);
int relay_port(const struct relay *r);
long relay_connections(struct relay *r); /* accepted so far */
void relay_freeze(struct relay *r);
void relay_stop(struct relay *r);
/* For a test server's accepting thread: the next connection on listen_fd (close-on-exec), or -1
 * once *stop is set, which it looks at every poll_ms */
int accept_until_stopped(int listen_fd, _Atomic int *stop, int poll_ms);
/* run(arg) on a detached thread with a stack of stack_bytes (0: the default); 0, or -1 when no
 * thread could be made */
int thread_start_detached(void *(*run)(void *), void *arg, size_t stack_bytes);
/* 1 when a TCP connect to 127.0.0.1:port succeeds (within 2 s), 0 when it is refused */
int port_accepts(int port);

/* ---- raw sockets ------------------------------------------------------------------------------
 */

struct raw {
    int fd;
    char *buf; /* bytes received but not yet consumed (pipelined responses) */
    size_t len;
    size_t cap;
    int eof;
};

enum raw_result {
    RAW_OK = 0,
    RAW_TIMEOUT = -1,
    RAW_CLOSED = -2, /* the peer closed (or reset) before the response was complete */
    RAW_BAD = -3,    /* not parseable as an HTTP/1.x response */
};

enum {
    RESP_HEAD = 1,    /* response to HEAD: no body whatever the headers say */
    RESP_CONNECT = 2, /* response to CONNECT: a 2xx has no body, the tunnel follows */
    RESP_PATTERN = 4, /* don't store the body; check it against the pattern as it arrives */
};

struct http_response {
    char version[16];
    int status;
    char reason[256];
    struct http_header *headers;
    size_t nheaders;
    char *body; /* NUL-terminated; NULL with RESP_PATTERN */
    size_t body_len;
    int chunked;
    int close_delimited;
    int64_t pattern_bad; /* RESP_PATTERN: first wrong offset, -1 if none */
};

struct raw *raw_connect(int port); /* fails the test if 127.0.0.1:port refuses */
/* A connection to 127.0.0.1:port from source address src (NULL: the kernel's choice; tests bind
 * 127.0.0.x to be different clients), TCP_NODELAY, connected within 5 s. For client threads: no
 * ck_assert inside; NULL on error with the reason in err. */
struct raw *raw_connect_from(int port, const char *src, char *err, size_t err_len);
/* The same for the test's own thread: fails the test on error */
struct raw *raw_connect_src(int port, const char *src);
/* Sends "METHOD http://host:port/path HTTP/1.1" with Host (absolute form, keep-alive); 0 or -1.
 * No ck_assert: threads may use it. */
int raw_send_request(struct raw *c, const char *method, const char *host, int port,
                     const char *path);
/* raw_send_request, then the response: RAW_OK or the harness's error code (a failed send is
 * RAW_CLOSED). r is always initialised (free it). No ck_assert: threads may use it. */
int raw_request_on(struct raw *c, const char *method, const char *host, int port, const char *path,
                   struct http_response *r, int timeout_ms);
/* Sends "CONNECT 127.0.0.1:target_port HTTP/1.1" with Host on c, then reads the answer (a 2xx has
 * no body: the tunnel follows): RAW_OK or the harness's error code (a failed send is RAW_CLOSED).
 * r is always initialised (free it). No ck_assert: threads may use it. */
int raw_tunnel_request(struct raw *c, int target_port, struct http_response *r, int timeout_ms);
/* 1 when the response says Connection: close */
int resp_wants_close(const struct http_response *r);
void raw_close(struct raw *c);
void raw_send(struct raw *c, const void *data, size_t len); /* fails the test on error */
void raw_send_str(struct raw *c, const char *s);
void raw_sendf(struct raw *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int raw_try_send(struct raw *c, const void *data, size_t len); /* 0 or -1 */
/* Absolute-form request text for the proxy: "METHOD http://127.0.0.1:PORT/path HTTP/1.1", Host,
 * then extra (complete header lines, may be NULL) and the blank line. malloc'd. */
char *proxy_request(const char *method, const struct origin *o, const char *path,
                    const char *extra);
/* Bytes received and not yet consumed, after waiting up to wait_ms for some to arrive */
size_t raw_pending(struct raw *c, int wait_ms);
/* Reads one response (1xx responses are returned one at a time). */
int raw_read_response(struct raw *c, struct http_response *r, int flags, int timeout_ms);
void http_response_free(struct http_response *r);
const char *resp_header(const struct http_response *r, const char *name, int nth);
/* 1 when the peer closed (EOF or reset) within timeout_ms; data arriving meanwhile is dropped */
int raw_wait_closed(struct raw *c, int timeout_ms);
/* A new connection to the proxy on port with proxy_request(method, o, path, extra) sent on it */
struct raw *raw_connect_send(int port, const char *method, const struct origin *o, const char *path,
                             const char *extra);
/* proxy_request(method, o, path, extra) sent on c */
void raw_send_proxy_request(struct raw *c, const char *method, const struct origin *o,
                            const char *path, const char *extra);
/* Sends proxy requests for the (method, path) pairs, NULL-terminated, in one write: a pipelining
 * client */
void raw_send_pipelined(struct raw *c, const struct origin *o, const char *const method_path[]);
/* Reads the next response on c: a 200 whose body is n pattern bytes, or the test fails (naming
 * what) */
void raw_expect_pattern(struct raw *c, size_t n, const char *what);
/* Reads the next response on c (10 s at most); the test fails unless it is one with this status */
void raw_expect_status(struct raw *c, int status, const char *what);
/* GET /bytes/n from the origin o through the proxy on c, then raw_expect_pattern(c, n, what) */
void raw_get_pattern(struct raw *c, const struct origin *o, size_t n, const char *what);
/* Fails the test unless the peer closes c (a timeout, as what says) no sooner than min_ms and
 * within max_ms from now */
void raw_assert_closed_between(struct raw *c, int min_ms, int max_ms, const char *what);
/* One request, one response on a fresh connection: for the common raw case. */
int raw_exchange(int port, const char *request, struct http_response *r, int flags, int timeout_ms);
/* rc in words for a failure message; when a running rlproxy has died meanwhile, also how it
 * exited and its log (sanitizer report) */
const char *raw_result_name(int rc);

/* ---- libcurl client ---------------------------------------------------------------------------
 */

struct fetch_req {
    const char *url;
    const char *method;         /* NULL: GET; "HEAD" uses CURLOPT_NOBODY */
    int proxy_port;             /* 0: no proxy at all (environment ignored) */
    int tunnel;                 /* CURLOPT_HTTPPROXYTUNNEL */
    const char *cainfo;         /* CA for https URLs */
    const char *const *headers; /* NULL-terminated "Name: value" list */
    const void *body;           /* in-memory upload ... */
    size_t body_len;
    int64_t gen_upload;   /* ... or >0: upload this many pattern bytes from a generator */
    int chunked;          /* upload with Transfer-Encoding: chunked */
    int check_pattern;    /* response body checked against the pattern, not stored */
    uint64_t abort_after; /* >0: the client gives up after this many body bytes */
    long timeout_ms;      /* 0: 60 s */
};

struct fetch_res {
    CURLcode rc;
    char err[CURL_ERROR_SIZE];
    long status;
    long connect_code; /* CURLINFO_HTTP_CONNECTCODE */
    char status_line[256];
    struct http_header *headers; /* of the final response */
    size_t nheaders;
    char *body; /* NUL-terminated, NULL when check_pattern */
    size_t body_len;
    uint64_t received;
    int64_t pattern_bad;
    uint64_t uploaded;
    char upload_sha256[65];
};

void fetch(const struct fetch_req *rq, struct fetch_res *rs);
void fetch_free(struct fetch_res *rs);
const char *fetch_header(const struct fetch_res *rs, const char *name, int nth);
/* GET url through the proxy on port; fails the test unless curl succeeded */
void fetch_via(int proxy_port, const char *url, struct fetch_res *rs);

/* An https GET of /bytes/n through a CONNECT tunnel the proxy on proxy_port opens to o; fails the
 * test unless curl got all n pattern bytes in a 200 after a 200 to the CONNECT */
void fetch_tls_via_tunnel(int proxy_port, const struct origin *o, size_t n);

/* A transfer of a curl multi that finished: its easy handle (still in the multi), result, response
 * code and CURLOPT_PRIVATE */
struct multi_done {
    CURL *easy;
    CURLcode result;
    long status;
    void *private;
};
/* 1 with *d filled for the next transfer of m that finished, 0 when no more have */
int multi_next_done(CURLM *m, struct multi_done *d);
/* fetch_via, then the response's status (the response freed) */
long status_via(int proxy_port, const char *url);
/* The status of a GET of path from the origin o through the proxy p */
long origin_status_via(const struct proxy *p, const struct origin *o, const char *path);

/* ---- origin JSON (compact, as origin.py prints it) --------------------------------------------
 */

int json_get_int(const char *json, const char *key, long long *out); /* 0 or -1 */
char *json_get_str(const char *json, const char *key);               /* malloc'd or NULL */
int json_get_bool(const char *json, const char *key);                /* 1, 0, or -1 */
/* the "headers":[[name,value],...] array of /headers; 0 or -1 */
int json_headers(const char *json, struct http_header **out, size_t *n);

/* ---- paced load: client threads, each sending one GET per period ------------------------------
 */

/* a request's send and answer times: rlproxy decided on it in between */
struct span {
    uint64_t sent_us, answered_us;
};

enum {
    LOAD_CONNECT_EARLY = 1, /* connect before the start: the first request is not slower */
    LOAD_KEEP_SPANS = 2,    /* record the spans of the 200s in admitted */
};

struct load {
    int proxy_port, origin_port;
    const char *prefix; /* sends GET prefix?t=<id>&j=<n> */
    int id;
    int flags;
    uint64_t start_us, end_us; /* sends requests while now < end_us */
    uint64_t offset_us;        /* first request at start_us + offset_us */
    uint64_t period_us;        /* then one per period (missed slots are skipped, not bunched) */
    long sent, ok, limited, other, errors;
    int other_status;
    uint64_t max_us; /* slowest answer */
    char error[240];
    struct span *admitted; /* LOAD_KEEP_SPANS: of the 200s */
    size_t admitted_cap;
};

/* `threads` (at most 16) clients, thread k on proxies[k % nproxies] with prefixes[k % nproxies],
 * each sending one GET per period from start to end, thread k starting k*period/threads after
 * start. Per-thread results in l[] (at least `threads` entries). */
void load_run(struct proxy **proxies, const char **prefixes, int nproxies, const struct origin *o,
              int threads, uint64_t start_us, uint64_t end_us, uint64_t period_us, int flags,
              struct load *l);
/* Sums l[k] for the threads k with k % nproxies == which (which < 0: all); the threads' spans move
 * into the sum (free its admitted) */
struct load load_sum(struct load *l, int threads, int nproxies, int which);

/* ---- access-log lines ---------------------------------------------------------------------------
 */

/* The complete lines of the file at path that contain needle (and `also`, when not NULL), in order;
 * how many. The first max are kept in lines[] (malloc'd) when lines is not NULL. A last line still
 * being written (no newline yet) does not count. */
size_t file_lines_with(const char *path, const char *needle, const char *also, char **lines,
                       size_t max);
/* The last access-log line (text format, in the proxy's log) containing needle, waited for up to
 * 3 s; malloc'd. Fails the test when none comes. */
char *proxy_access_line(struct proxy *p, const char *needle);
/* The attempts= and wait= fields of an access-log line; fail the test when the field is missing */
int line_attempts(const char *line);
long long line_wait_ms(const char *line);

/* For a test that needs a tool the machine may lack: 0 when have; else fails the test under CI=true
 * (the CI image must have it) and otherwise says on stderr that test was not checked and how to
 * install package, and returns 1 for the test to return. */
int harness_tool_missing(int have, const char *test, const char *tool, const char *package);

/* ---- external commands ------------------------------------------------------------------------
 */

struct cmd_result {
    int exit_code; /* exit status, or 128+signal, or -1 when timed out / not started */
    int timed_out;
    char *out; /* stdout, NUL-terminated */
    size_t out_len;
    char *err; /* stderr, NUL-terminated */
    size_t err_len;
};
/* A fixed-size set of child pids (0: a free slot) that a teardown kills: add (add=1) or remove one,
 * or SIGKILL and reap them all */
void pid_set_track(pid_t *set, size_t cap, pid_t pid, int add);
void pid_set_kill(pid_t *set, size_t cap);
/* Runs argv[0] (PATH search). env: NULL-terminated "NAME=value" (set) or "NAME" (unset). */
void run_cmd(char *const argv[], const char *const env[], int timeout_ms, struct cmd_result *r);
void cmd_result_free(struct cmd_result *r);
/* Starts argv[0] (a path: no PATH search) with stdout and stderr appended to log_path and stdin
 * from /dev/null; it dies with the test process. Not tracked by harness_tcase's teardown: the
 * caller reaps or kills it (a server that outlives one test). */
pid_t spawn_logged(char *const argv[], const char *log_path);
/* rlproxy itself with args (NULL-terminated, after the program name: "-t", "-c", path), under
 * RLPROXY_WRAPPER when it is set, like proxy_start: valgrind's exit 99 on a memory error or leak
 * then fails whatever exit code the caller expects. The timeout grows 5x under the wrapper. */
void run_rlproxy(char *const args[], int timeout_ms, struct cmd_result *r);
/* Reads a whole file (malloc'd, NUL-terminated); NULL if it can't */
char *read_file(const char *path, size_t *len);

#endif
