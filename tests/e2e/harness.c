/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* harness.c — see harness.h. Processes, sockets and clients for rlproxy's end-to-end tests. */
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 64
#define MAX_HEAD (1024 * 1024)       /* a response head larger than this is a bug */
#define MAX_STORED_BODY (256u << 20) /* bigger bodies must use RESP_PATTERN */
#define PROXY_READY_MS 15000
#define PROXY_STOP_MS 20000 /* SIGTERM drains in-flight requests: allow for it */
#define PROXY_ADMIN_MS 3000
/* Under RLPROXY_WRAPPER (valgrind: 20-50x slower start-up, and a leak check at exit) the ready,
 * admin and stop waits are this many times longer */
#define WRAPPER_WAIT_FACTOR 10u
#define MAX_WRAPPER_WORDS 32

#define MAX_PROXIES 8

static char g_tmpdir[512];
static struct proxy *g_proxies[MAX_PROXIES]; /* running, for failure diagnostics */
static pid_t g_runner_pid;
static unsigned g_seq;
static pid_t g_children[MAX_CHILDREN];

/* ---- small utilities ------------------------------------------------------------------------- */

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void sleep_until_us(uint64_t t_us)
{
    struct timespec ts = {(time_t)(t_us / 1000000u), (long)(t_us % 1000000u) * 1000L};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    ck_assert_msg(fclose(f) == 0, "cannot write %s", path);
}

void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static int env_is_1(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && strcmp(v, "1") == 0;
}

/* RLPROXY_WRAPPER split at whitespace into g_wrapper (a private copy of the value); the number of
 * words. Parsed once; fork()ed tests inherit the result. */
static char *g_wrapper[MAX_WRAPPER_WORDS + 1];
static int g_wrapper_n = -1;

static int wrapper_words(void)
{
    if (g_wrapper_n >= 0)
        return g_wrapper_n;
    g_wrapper_n = 0;
    const char *v = getenv("RLPROXY_WRAPPER");
    static char copy[4096];
    if (v == NULL)
        return 0;
    if (strlen(v) >= sizeof copy) {
        fprintf(stderr, "harness: RLPROXY_WRAPPER is longer than %zu bytes\n", sizeof copy - 1);
        abort();
    }
    strcpy(copy, v);
    for (char *save = NULL, *w = strtok_r(copy, " \t\n", &save); w != NULL;
         w = strtok_r(NULL, " \t\n", &save)) {
        if (g_wrapper_n == MAX_WRAPPER_WORDS) {
            fprintf(stderr, "harness: RLPROXY_WRAPPER has more than %d words\n", MAX_WRAPPER_WORDS);
            abort();
        }
        g_wrapper[g_wrapper_n++] = w;
    }
    g_wrapper[g_wrapper_n] = NULL;
    return g_wrapper_n;
}

int harness_sanitizers(void) { return env_is_1("RLPROXY_SANITIZERS"); }
int harness_wrapped(void) { return wrapper_words() > 0; }
int harness_slow(void) { return harness_sanitizers() || harness_wrapped(); }
int harness_quick(void) { return env_is_1("RLPROXY_QUICK") || harness_wrapped(); }
uint64_t harness_size(uint64_t big, uint64_t small) { return harness_quick() ? small : big; }

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    ck_assert_msg(p != NULL, "out of memory (%zu bytes)", n);
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    ck_assert_msg(q != NULL, "out of memory (%zu bytes)", n);
    return q;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0)
            buf = xrealloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    ck_assert_msg(fclose(f) == 0, "cannot write %s", path);
}

/* ---- temp dir and run control ---------------------------------------------------------------- */

const char *harness_tmpdir(void)
{
    if (g_tmpdir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        snprintf(g_tmpdir, sizeof g_tmpdir, "%s/rlproxy-e2e-XXXXXX",
                 base != NULL && *base ? base : "/tmp");
        if (mkdtemp(g_tmpdir) == NULL) {
            fprintf(stderr, "harness: mkdtemp %s: %s\n", g_tmpdir, strerror(errno));
            abort();
        }
    }
    return g_tmpdir;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

static void remove_tmpdir(void)
{
    if (g_tmpdir[0] == '\0' || env_is_1("RLPROXY_KEEP_TMP"))
        return;
    nftw(g_tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int harness_run_suite(Suite *s)
{
    /* The tests write to sockets the proxy may close on purpose; EPIPE must be an error return,
     * not a silent death. Children get SIGPIPE back to default before exec. */
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_runner_pid = getpid();
    harness_tmpdir(); /* created here so every forked test shares it (and the test CA) */
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    remove_tmpdir();
    curl_global_cleanup();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void pid_set_track(pid_t *set, size_t cap, pid_t pid, int add)
{
    for (size_t i = 0; i < cap; i++)
        if (add ? set[i] == 0 : set[i] == pid) {
            set[i] = add ? pid : 0;
            return;
        }
}

void pid_set_kill(pid_t *set, size_t cap)
{
    for (size_t i = 0; i < cap; i++)
        if (set[i] > 0) {
            kill(set[i], SIGKILL);
            waitpid(set[i], NULL, 0);
            set[i] = 0;
        }
}

static void track_child(pid_t pid) { pid_set_track(g_children, MAX_CHILDREN, pid, 1); }

static void untrack_child(pid_t pid) { pid_set_track(g_children, MAX_CHILDREN, pid, 0); }

/* Checked teardown: with CK_FORK=no a failed test returns here with its processes still alive. */
static void harness_teardown(void) { pid_set_kill(g_children, MAX_CHILDREN); }

TCase *harness_tcase(const char *name, double timeout_s)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, NULL, harness_teardown);
    if (timeout_s > 0)
        tcase_set_timeout(tc, timeout_s);
    return tc;
}

int harness_run_tests(const char *name, double timeout_s, const TTest *const tests[], size_t count)
{
    Suite *s = suite_create(name);
    unit_add_tcase(s, harness_tcase(name, timeout_s), tests, count);
    return harness_run_suite(s);
}

/* ---- processes ------------------------------------------------------------------------------- */

static void child_setup(const char *const env[], int in_fd, int out_fd, int err_fd, pid_t parent)
{
    /* Die with the test process, whichever way it ends. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int devnull = open("/dev/null", O_RDWR);
    dup2(in_fd >= 0 ? in_fd : devnull, 0);
    dup2(out_fd >= 0 ? out_fd : devnull, 1);
    dup2(err_fd >= 0 ? err_fd : devnull, 2);
    closefrom(3);
    for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
        const char *eq = strchr(env[i], '=');
        if (eq == NULL) {
            unsetenv(env[i]);
        } else {
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)(eq - env[i]), env[i]);
            setenv(name, eq + 1, 1);
        }
    }
}

static pid_t spawn(char *const argv[], const char *const env[], int in_fd, int out_fd, int err_fd)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        child_setup(env, in_fd, out_fd, err_fd, parent);
        execvp(argv[0], argv);
        dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    track_child(pid);
    return pid;
}

pid_t spawn_logged(char *const argv[], const char *log_path)
{
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ck_assert_msg(fd >= 0, "open %s: %s", log_path, strerror(errno));
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        child_setup(NULL, -1, fd, fd, parent);
        execv(argv[0], argv);
        dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    return pid;
}

/* 1 when pid was reaped within timeout_ms (status filled), 0 if it is still running */
static int wait_child(pid_t pid, int timeout_ms, int *status)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r == -1 && errno == ECHILD)) {
            untrack_child(pid);
            return 1;
        }
        if (now_ms() >= deadline)
            return 0;
        sleep_ms(10);
    }
}

static void kill_child(pid_t pid, int *status)
{
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    untrack_child(pid);
}

static void append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        while (*len + n + 1 > *cap)
            *cap = *cap ? *cap * 2 : 4096;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void collect_output(int out_fd, int err_fd, uint64_t deadline, struct cmd_result *r)
{
    size_t out_cap = 0, err_cap = 0;
    struct pollfd pfd[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    char chunk[65536];
    while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
        int64_t left = (int64_t)deadline - (int64_t)now_ms();
        if (left <= 0) {
            r->timed_out = 1;
            return;
        }
        if (poll(pfd, 2, (int)left) < 0 && errno != EINTR)
            return;
        for (int i = 0; i < 2; i++) {
            if (pfd[i].fd < 0 || pfd[i].revents == 0)
                continue;
            ssize_t n = read(pfd[i].fd, chunk, sizeof chunk);
            if (n <= 0)
                pfd[i].fd = -1;
            else if (i == 0)
                append(&r->out, &r->out_len, &out_cap, chunk, (size_t)n);
            else
                append(&r->err, &r->err_len, &err_cap, chunk, (size_t)n);
        }
    }
}

void run_cmd(char *const argv[], const char *const env[], int timeout_ms, struct cmd_result *r)
{
    memset(r, 0, sizeof *r);
    r->exit_code = -1;
    int out[2], err[2];
    ck_assert(pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0);
    pid_t pid = spawn(argv, env, -1, out[1], err[1]);
    close(out[1]);
    close(err[1]);
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    collect_output(out[0], err[0], deadline, r);
    close(out[0]);
    close(err[0]);
    int status = 0;
    int64_t left = (int64_t)deadline - (int64_t)now_ms();
    if (r->timed_out || !wait_child(pid, left > 0 ? (int)left : 0, &status)) {
        r->timed_out = 1;
        kill_child(pid, &status);
        r->exit_code = -1;
    } else if (WIFEXITED(status)) {
        r->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        r->exit_code = 128 + WTERMSIG(status);
    }
    if (r->out == NULL)
        r->out = xstrndup("", 0);
    if (r->err == NULL)
        r->err = xstrndup("", 0);
}

static const char *proxy_bin(void);

void run_rlproxy(char *const args[], int timeout_ms, struct cmd_result *r)
{
    char *argv[MAX_WRAPPER_WORDS + 16];
    int n = wrapper_words(), argc = 0;
    for (int i = 0; i < n; i++)
        argv[argc++] = g_wrapper[i];
    argv[argc++] = (char *)proxy_bin();
    for (int i = 0; args[i] != NULL; i++) {
        ck_assert_msg(argc < (int)(sizeof argv / sizeof argv[0]) - 1, "run_rlproxy: too many args");
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;
    run_cmd(argv, NULL, n > 0 ? timeout_ms * 5 : timeout_ms, r);
}

void cmd_result_free(struct cmd_result *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

/* ---- body pattern ---------------------------------------------------------------------------- */

#define PAT_BLOCK 65536
static uint8_t g_pat[PAT_BLOCK + 256];

static const uint8_t *pattern_table(void)
{
    if (g_pat[1] == 0) /* byte 1 is 138, never 0: table not built yet */
        for (size_t i = 0; i < sizeof g_pat; i++)
            g_pat[i] = (uint8_t)((i * 131u + 7u) & 0xffu);
    return g_pat;
}

void pattern_fill(void *buf, size_t len, uint64_t offset)
{
    const uint8_t *pat = pattern_table();
    uint8_t *out = buf;
    for (size_t i = 0; i < len;) {
        size_t n = len - i < PAT_BLOCK ? len - i : PAT_BLOCK;
        memcpy(out + i, pat + ((offset + i) & 0xffu), n);
        i += n;
    }
}

int64_t pattern_mismatch(const void *buf, size_t len, uint64_t offset)
{
    const uint8_t *pat = pattern_table();
    const uint8_t *in = buf;
    for (size_t i = 0; i < len;) {
        size_t n = len - i < PAT_BLOCK ? len - i : PAT_BLOCK;
        const uint8_t *want = pat + ((offset + i) & 0xffu);
        if (memcmp(in + i, want, n) != 0) {
            for (size_t j = 0; j < n; j++)
                if (in[i + j] != want[j])
                    return (int64_t)(i + j);
        }
        i += n;
    }
    return -1;
}

void pattern_sha256_hex(uint64_t n, char out[65])
{
    static uint8_t block[PAT_BLOCK];
    struct sha256 s;
    sha256_init(&s);
    for (uint64_t off = 0; off < n;) {
        size_t chunk = n - off < PAT_BLOCK ? (size_t)(n - off) : PAT_BLOCK;
        pattern_fill(block, chunk, off);
        sha256_update(&s, block, chunk);
        off += chunk;
    }
    sha256_final_hex(&s, out);
}

/* ---- SHA-256 (FIPS 180-4) -------------------------------------------------------------------- */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(struct sha256 *s, const uint8_t *p)
{
    uint32_t w[64], v[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(v, s->h, sizeof v);
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = v[7] + (ror(v[4], 6) ^ ror(v[4], 11) ^ ror(v[4], 25)) +
                      ((v[4] & v[5]) ^ (~v[4] & v[6])) + K256[i] + w[i];
        uint32_t t2 = (ror(v[0], 2) ^ ror(v[0], 13) ^ ror(v[0], 22)) +
                      ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
        memmove(v + 1, v, 7 * sizeof v[0]);
        v[4] += t1;
        v[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++)
        s->h[i] += v[i];
}

void sha256_init(struct sha256 *s)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->total = 0;
    s->used = 0;
}

void sha256_update(struct sha256 *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->total += len;
    if (s->used > 0) {
        size_t n = 64 - s->used < len ? 64 - s->used : len;
        memcpy(s->block + s->used, p, n);
        s->used += n, p += n, len -= n;
        if (s->used < 64)
            return;
        sha256_block(s, s->block);
        s->used = 0;
    }
    for (; len >= 64; p += 64, len -= 64)
        sha256_block(s, p);
    memcpy(s->block, p, len);
    s->used = len;
}

void sha256_final_hex(struct sha256 *s, char out[65])
{
    uint64_t bits = s->total * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = (s->used < 56 ? 56 : 120) - s->used;
    for (int i = 0; i < 8; i++)
        pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, pad, padlen + 8);
    for (int i = 0; i < 8; i++)
        snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

void sha256_hex(const void *data, size_t len, char out[65])
{
    struct sha256 s;
    sha256_init(&s);
    sha256_update(&s, data, len);
    sha256_final_hex(&s, out);
}

/* ---- headers --------------------------------------------------------------------------------- */

const char *hdr_find(const struct http_header *h, size_t n, const char *name, int nth)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, name) == 0 && nth-- == 0)
            return h[i].value;
    return NULL;
}

size_t hdr_count(const struct http_header *h, size_t n, const char *name)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += strcasecmp(h[i].name, name) == 0;
    return count;
}

int hdr_has_exact(const struct http_header *h, size_t n, const char *name, const char *value)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, name) == 0 && strcmp(h[i].value, value) == 0)
            return 1;
    return 0;
}

void hdr_free(struct http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static void hdr_add(struct http_header **h, size_t *n, const char *name, size_t name_len,
                    const char *value, size_t value_len)
{
    *h = xrealloc(*h, (*n + 1) * sizeof **h);
    (*h)[*n].name = xstrndup(name, name_len);
    (*h)[*n].value = xstrndup(value, value_len);
    (*n)++;
}

/* "Name: value" (OWS trimmed) appended; 0, or -1 when there is no colon */
static int hdr_add_line(struct http_header **h, size_t *n, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (colon == NULL)
        return -1;
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    hdr_add(h, n, line, (size_t)(colon - line), v, (size_t)(end - v));
    return 0;
}

/* ---- test CA and leaf, generated once per run with the openssl CLI ----------------------------
 */

static const char CERT_CONF[] =
    "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = rlproxy test\n"
    "[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[v3_leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost\n"
    "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n";

static void tmp_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", harness_tmpdir(), name);
}

static void openssl(char *const argv[])
{
    struct cmd_result r;
    run_cmd(argv, NULL, 30000, &r);
    ck_assert_msg(r.exit_code == 0, "openssl %s failed (%d): %s", argv[1], r.exit_code, r.err);
    cmd_result_free(&r);
}

static void ensure_certs(void)
{
    char conf[600], ca_key[600], ca[600], key[600], csr[600], leaf[600], serial[600];
    tmp_path(leaf, sizeof leaf, "leaf.pem");
    if (access(leaf, R_OK) == 0)
        return;
    tmp_path(conf, sizeof conf, "cert.cnf");
    tmp_path(ca_key, sizeof ca_key, "ca.key");
    tmp_path(ca, sizeof ca, "ca.pem");
    tmp_path(key, sizeof key, "leaf.key");
    tmp_path(csr, sizeof csr, "leaf.csr");
    tmp_path(serial, sizeof serial, "ca.srl");
    write_file(conf, CERT_CONF);
    char *ca_argv[] = {"openssl",     "req",      "-x509",
                       "-new",        "-config",  conf,
                       "-extensions", "v3_ca",    "-newkey",
                       "ec",          "-pkeyopt", "ec_paramgen_curve:prime256v1",
                       "-nodes",      "-keyout",  ca_key,
                       "-out",        ca,         "-days",
                       "2",           "-subj",    "/CN=rlproxy test CA",
                       NULL};
    char *csr_argv[] = {"openssl",
                        "req",
                        "-new",
                        "-config",
                        conf,
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:prime256v1",
                        "-nodes",
                        "-keyout",
                        key,
                        "-out",
                        csr,
                        "-subj",
                        "/CN=localhost",
                        NULL};
    /* written to a temp name and renamed last: leaf.pem existing means the set is complete */
    char tmp_leaf[620];
    snprintf(tmp_leaf, sizeof tmp_leaf, "%s.%d", leaf, (int)getpid());
    char *sign_argv[] = {
        "openssl",         "x509",      "-req", "-in",  csr,      "-CA",   ca,  "-CAkey",   ca_key,
        "-CAcreateserial", "-CAserial", serial, "-out", tmp_leaf, "-days", "2", "-extfile", conf,
        "-extensions",     "v3_leaf",   NULL};
    openssl(ca_argv);
    openssl(csr_argv);
    openssl(sign_argv);
    ck_assert_msg(rename(tmp_leaf, leaf) == 0, "rename %s: %s", tmp_leaf, strerror(errno));
}

const char *harness_ca_path(void)
{
    static char ca[600];
    ensure_certs();
    tmp_path(ca, sizeof ca, "ca.pem");
    return ca;
}

/* ---- the test origin ------------------------------------------------------------------------- */

static const char *origin_script(void)
{
    static char path[1024];
    const char *env = getenv("RLPROXY_ORIGIN");
    if (env != NULL && *env)
        return env;
    const char *src = getenv("RLPROXY_SRCDIR");
    snprintf(path, sizeof path, "%s/tests/origin/origin.py", src != NULL && *src ? src : ".");
    return path;
}

/* Reads "listening on PORT\n" from fd within timeout_ms; the port, or -1 */
static int read_listening_line(int fd, int timeout_ms)
{
    char line[256];
    size_t len = 0;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    while (len < sizeof line - 1 && memchr(line, '\n', len) == NULL) {
        int64_t left = (int64_t)deadline - (int64_t)now_ms();
        struct pollfd pfd = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return -1;
        ssize_t n = read(fd, line + len, sizeof line - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
    }
    line[len] = '\0';
    int port = -1;
    if (sscanf(line, "listening on %d", &port) != 1)
        return -1;
    return port;
}

struct origin *origin_start(int tls)
{
    char cert[600], key[600];
    if (tls) {
        ensure_certs();
        tmp_path(cert, sizeof cert, "leaf.pem");
        tmp_path(key, sizeof key, "leaf.key");
    }
    char *argv[] = {"python3", (char *)origin_script(), tls ? "--tls" : NULL, cert, key, NULL};
    int out[2];
    ck_assert(pipe2(out, O_CLOEXEC) == 0);
    struct origin *o = xmalloc(sizeof *o);
    o->tls = tls;
    o->pid = spawn(argv, NULL, -1, out[1], 2);
    close(out[1]);
    o->port = read_listening_line(out[0], 20000);
    close(out[0]);
    if (o->port <= 0) {
        int status;
        kill_child(o->pid, &status);
        free(o);
        ck_abort_msg("test origin %s did not report its port", argv[1]);
    }
    return o;
}

void origin_stop(struct origin *o)
{
    if (o == NULL)
        return;
    int status;
    kill(o->pid, SIGTERM);
    if (!wait_child(o->pid, 5000, &status))
        kill_child(o->pid, &status);
    free(o);
}

const char *origin_url(const struct origin *o, const char *path, char *buf, size_t len)
{
    snprintf(buf, len, "%s://127.0.0.1:%d%s", o->tls ? "https" : "http", o->port, path);
    return buf;
}

/* ---- rlproxy --------------------------------------------------------------------------------- */

static const char *proxy_bin(void)
{
    const char *env = getenv("RLPROXY_BIN");
    return env != NULL && *env ? env : "src/rlproxy";
}

char *proxy_log_tail(struct proxy *p, size_t max_bytes)
{
    size_t len = 0;
    char *log = read_file(p->log_path, &len);
    if (log == NULL)
        return xstrndup("(no log)", 8);
    if (len > max_bytes) {
        char *tail = xstrndup(log + len - max_bytes, max_bytes);
        free(log);
        return tail;
    }
    return log;
}

int proxy_log_contains(struct proxy *p, const char *text)
{
    char *log = read_file(p->log_path, NULL);
    int found = log != NULL && strstr(log, text) != NULL;
    free(log);
    return found;
}

size_t text_count(const char *haystack, const char *needle)
{
    size_t n = 0, len = strlen(needle);
    for (const char *q = haystack; q != NULL && len > 0 && (q = strstr(q, needle)) != NULL;
         q += len)
        n++;
    return n;
}

size_t proxy_log_count(struct proxy *p, const char *text)
{
    char *log = read_file(p->log_path, NULL);
    size_t n = text_count(log, text);
    free(log);
    return n;
}

/* The port of the first "listening on 127.0.0.1:PORT" log line that is (admin != 0) or is not
 * (admin == 0) about the admin endpoint; -1 while there is none yet */
static int parse_listen_port(struct proxy *p, int admin)
{
    static const char needle[] = "listening on 127.0.0.1:";
    char *log = read_file(p->log_path, NULL);
    int port = -1;
    for (char *line = log; line != NULL && *line != '\0' && port < 0;) {
        char *nl = strchr(line, '\n');
        if (nl == NULL)
            break; /* a line still being written */
        *nl = '\0';
        const char *hit = strstr(line, needle);
        if (hit != NULL && (strstr(line, "admin") != NULL) == (admin != 0))
            port = atoi(hit + strlen(needle));
        line = nl + 1;
    }
    free(log);
    return port > 0 ? port : -1;
}

static void proxy_wait_ready(struct proxy *p)
{
    uint64_t deadline = now_ms() + PROXY_READY_MS * (harness_wrapped()  ? WRAPPER_WAIT_FACTOR
                                                     : harness_quick() ? 4u
                                                                       : 1u);
    int status = 0;
    while ((p->port = parse_listen_port(p, 0)) < 0) {
        if (wait_child(p->pid, 0, &status)) {
            p->running = 0;
            char *tail = proxy_log_excerpt(p);
            ck_abort_msg("rlproxy exited during start-up (status 0x%x); log:\n%s", status, tail);
        }
        if (now_ms() > deadline) {
            char *tail = proxy_log_excerpt(p);
            ck_abort_msg("rlproxy never logged 'listening on 127.0.0.1:PORT'; log:\n%s", tail);
        }
        sleep_ms(10);
    }
}

/* The admin line may follow the proxy's own; bounded, and not an error when it never comes */
static void proxy_wait_admin(struct proxy *p)
{
    uint64_t deadline = now_ms() + PROXY_ADMIN_MS * (harness_wrapped() ? WRAPPER_WAIT_FACTOR : 1u);
    while ((p->admin_port = parse_listen_port(p, 1)) < 0 && now_ms() < deadline && proxy_alive(p))
        sleep_ms(10);
}

/* The admin endpoint goes on an ephemeral port unless the test configures it: its default is a
 * fixed port, and suites run in parallel under make -j. */
static int yaml_has_top_key(const char *yaml, const char *key)
{
    size_t n = strlen(key);
    for (const char *line = yaml; line != NULL && *line != '\0';) {
        if (strncmp(line, key, n) == 0 && line[n] == ':')
            return 1;
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    return 0;
}

struct proxy *proxy_start(const char *yaml_extra)
{
    struct proxy *p = xmalloc(sizeof *p);
    memset(p, 0, sizeof *p);
    unsigned seq = g_seq++;
    snprintf(p->conf_path, sizeof p->conf_path, "%s/proxy-%d-%u.yaml", harness_tmpdir(),
             (int)getpid(), seq);
    snprintf(p->log_path, sizeof p->log_path, "%s/proxy-%d-%u.log", harness_tmpdir(), (int)getpid(),
             seq);
    const char *extra = yaml_extra != NULL ? yaml_extra : "";
    const char *admin =
        yaml_has_top_key(extra, "admin") ? "" : "admin:\n  listen: [\"127.0.0.1:0\"]\n";
    char *conf = NULL;
    ck_assert(asprintf(&conf, "listen: [\"127.0.0.1:0\"]\n%s%s\n", admin, extra) > 0);
    write_file(p->conf_path, conf);
    free(conf);
    int log_fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_msg(log_fd >= 0, "open %s: %s", p->log_path, strerror(errno));
    /* RLPROXY_WRAPPER's words go first (valgrind ... rlproxy -c CONF): valgrind runs rlproxy in
     * its own process, so p->pid is still rlproxy's and SIGTERM still reaches it */
    char *argv[MAX_WRAPPER_WORDS + 4];
    int argc = wrapper_words();
    memcpy(argv, g_wrapper, (size_t)argc * sizeof argv[0]);
    argv[argc++] = (char *)proxy_bin();
    argv[argc++] = "-c";
    argv[argc++] = p->conf_path;
    argv[argc] = NULL;
    p->pid = spawn(argv, NULL, -1, log_fd, log_fd);
    close(log_fd);
    p->running = 1;
    proxy_wait_ready(p);
    p->admin_port = -1;
    if (*admin != '\0')
        proxy_wait_admin(p);
    for (int i = 0; i < MAX_PROXIES; i++)
        if (g_proxies[i] == NULL) {
            g_proxies[i] = p;
            break;
        }
    return p;
}

struct proxy *proxy_startf(const char *fmt, ...)
{
    va_list ap;
    char *yaml = NULL;
    va_start(ap, fmt);
    ck_assert(vasprintf(&yaml, fmt, ap) >= 0);
    va_end(ap);
    struct proxy *p = proxy_start(yaml);
    free(yaml);
    return p;
}

int proxy_alive(struct proxy *p)
{
    if (p->running && wait_child(p->pid, 0, &p->wait_status))
        p->running = 0;
    return p->running;
}

static void describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "wait status 0x%x", status);
}

/* 1 when the line (len bytes) is valgrind's: "==PID== ..." or a bare "==PID==". rlproxy's own
 * lines never start so; ASan's "==PID==ERROR: AddressSanitizer" has no space after the "==". */
static int is_valgrind_line(const char *line, size_t len)
{
    if (len < 5 || strncmp(line, "==", 2) != 0 || !isdigit((unsigned char)line[2]))
        return 0;
    const char *q = line + 2;
    while (isdigit((unsigned char)*q))
        q++;
    return strncmp(q, "==", 2) == 0 && (q + 2 == line + len || q[2] == ' ');
}

/* Splits log into valgrind's report (its lines, at most max bytes of them: *report, NULL when the
 * log has none) and the rest (*rest, the log without them). Both malloc'd. */
static void split_valgrind(const char *log, size_t max, char **report, char **rest)
{
    size_t total = strlen(log), n = 0, m = 0;
    char *vg = xmalloc(max + 64), *other = xmalloc(total + 1);
    int found = 0, more = 0;
    for (const char *line = log; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);
        if (is_valgrind_line(line, len)) {
            found = 1;
            if (n + len + 1 <= max) {
                memcpy(vg + n, line, len);
                vg[n + len] = '\n';
                n += len + 1;
            } else {
                more = 1;
            }
        } else {
            memcpy(other + m, line, len + (nl != NULL));
            m += len + (nl != NULL);
        }
        line += len + (nl != NULL);
    }
    other[m] = '\0';
    snprintf(vg + n, max + 64 - n, "%s", more ? "... (valgrind report cut short)\n" : "");
    if (!found) {
        free(vg);
        vg = NULL;
    }
    *report = vg;
    *rest = other;
}

char *proxy_log_excerpt(struct proxy *p)
{
    char *log = read_file(p->log_path, NULL);
    if (log == NULL)
        return xstrndup("(no log)", 8);
    /* a sanitizer report is long: its first lines (the bad access and the stack) and its SUMMARY
     * say what happened; the tail is the shadow byte legend */
    const char *start = strstr(log, "ERROR: AddressSanitizer");
    if (start == NULL)
        start = strstr(log, "ERROR: LeakSanitizer");
    if (start == NULL)
        start = strstr(log, "runtime error:");
    char *out, *vg = NULL, *rest = NULL;
    if (start != NULL) {
        const char *summary = strstr(start, "SUMMARY:");
        const char *end = summary != NULL ? strchr(summary, '\n') : NULL;
        ck_assert(asprintf(&out, "%.1400s\n...\n%.*s", start,
                           summary != NULL ? (int)(end != NULL ? end - summary : 300) : 0,
                           summary != NULL ? summary : "") > 0);
    } else if (split_valgrind(log, 6000, &vg, &rest), vg != NULL) {
        /* under RLPROXY_WRAPPER=valgrind: its errors and leak records, then the log's end */
        size_t len = strlen(rest);
        ck_assert(asprintf(&out, "valgrind report:\n%s--- log tail ---\n%s", vg,
                           len > 600 ? rest + len - 600 : rest) > 0);
    } else {
        size_t len = strlen(log);
        out = xstrndup(len > 1500 ? log + len - 1500 : log, len > 1500 ? 1500 : len);
    }
    free(vg);
    free(rest);
    free(log);
    return out;
}

char *proxy_state(struct proxy *p)
{
    if (proxy_alive(p))
        return xstrndup("rlproxy is still running", 24);
    char how[128], *out = NULL, *excerpt = proxy_log_excerpt(p);
    describe_status(p->wait_status, how, sizeof how);
    ck_assert(asprintf(&out, "rlproxy exited (%s); log:\n%s", how, excerpt) > 0);
    free(excerpt);
    return out;
}

void proxy_stop(struct proxy *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < MAX_PROXIES; i++)
        if (g_proxies[i] == p)
            g_proxies[i] = NULL;
    int status = 0, killed = 0;
    if (!proxy_alive(p))
        ck_abort_msg("rlproxy died before the test stopped it: %s", proxy_state(p));
    kill(p->pid, SIGTERM);
    int stop_ms = PROXY_STOP_MS * (harness_wrapped() ? (int)WRAPPER_WAIT_FACTOR
                                   : harness_quick() ? 3
                                                     : 1);
    if (!wait_child(p->pid, stop_ms, &status)) {
        kill_child(p->pid, &status);
        killed = 1;
    }
    p->running = 0;
    char how[128];
    describe_status(status, how, sizeof how);
    int ok = !killed && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    char *tail = ok ? NULL : proxy_log_excerpt(p);
    free(p);
    ck_assert_msg(ok, "rlproxy %s after SIGTERM (%s); log tail:\n%s",
                  killed ? "did not exit in time" : "did not exit cleanly", how, tail);
}

static long proc_status_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    size_t flen = strlen(field);
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, flen) == 0 && line[flen] == ':')
            kib = strtol(line + flen + 1, NULL, 10);
    fclose(f);
    return kib;
}

long proxy_rss_kib(struct proxy *p) { return proc_status_kib(p->pid, "VmRSS"); }
long proxy_peak_rss_kib(struct proxy *p) { return proc_status_kib(p->pid, "VmHWM"); }

const char *proxy_url(const struct proxy *p, char *buf, size_t len)
{
    snprintf(buf, len, "http://127.0.0.1:%d", p->port);
    return buf;
}

/* 1 when a sanitizer runtime is mapped into the process (gcc links libasan dynamically) */
static int process_is_sanitized(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    char *maps = read_file(path, NULL);
    int found =
        maps != NULL && (strstr(maps, "libasan") != NULL || strstr(maps, "libubsan") != NULL ||
                         strstr(maps, "libtsan") != NULL);
    free(maps);
    return found;
}

void assert_peak_rss_below(struct proxy *p, long limit_kib, const char *label)
{
    long peak = proxy_peak_rss_kib(p), now = proxy_rss_kib(p);
    int wrapped = harness_wrapped();
    int skip = wrapped || harness_sanitizers() || process_is_sanitized(p->pid);
    printf("rss: %s: VmHWM %ld KiB, VmRSS %ld KiB%s\n", label, peak, now,
           !skip     ? ""
           : wrapped ? " (under RLPROXY_WRAPPER: not checked)"
                     : " (sanitizer build: not checked)");
    fflush(stdout);
    if (skip)
        return;
    ck_assert_msg(peak > 0, "%s: cannot read /proc/%d/status", label, (int)p->pid);
    ck_assert_msg(peak < limit_kib, "%s: rlproxy peak RSS %ld KiB, limit %ld KiB", label, peak,
                  limit_kib);
}

char *origin_get(const struct origin *o, const char *path)
{
    char url[512];
    struct fetch_req rq = {.url = origin_url(o, path, url, sizeof url),
                           .cainfo = o->tls ? harness_ca_path() : NULL,
                           .timeout_ms = 10000};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "origin GET %s: %s (status %ld)", path,
                  rs.err, rs.status);
    char *body = rs.body;
    rs.body = NULL;
    fetch_free(&rs);
    return body;
}

long long origin_key_count(const struct origin *o, const char *key)
{
    char path[256];
    snprintf(path, sizeof path, "/count?key=%s", key);
    char *json = origin_get(o, path);
    long long n = -1;
    ck_assert_msg(json_get_int(json, "count", &n) == 0, "/count: %s", json);
    free(json);
    return n;
}

size_t origin_key_times(const struct origin *o, const char *key, double *ms, size_t max)
{
    char path[256];
    snprintf(path, sizeof path, "/count?key=%s", key);
    char *json = origin_get(o, path);
    const char *p = strstr(json, "\"times\":[");
    ck_assert_msg(p != NULL, "/count: %s", json);
    p += strlen("\"times\":[");
    size_t n = 0;
    while (n < max && *p != ']' && *p != '\0') {
        char *end = NULL;
        double v = strtod(p, &end);
        ck_assert_msg(end != p, "/count times: %s", json);
        ms[n++] = v * 1000.0;
        p = *end == ',' ? end + 1 : end;
    }
    free(json);
    return n;
}

long long origin_stat(const struct origin *o, const char *key)
{
    char *json = origin_get(o, "/stats");
    long long v = -1;
    ck_assert_msg(json_get_int(json, key, &v) == 0, "no %s in /stats: %s", key, json);
    free(json);
    return v;
}

int harness_closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    ck_assert(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    ck_assert(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd); /* bound but never listening, now closed: connects get RST */
    return ntohs(sa.sin_port);
}

/* ---- a TCP relay: slow new connections, frozen old ones ------------------------------------ */

struct relay {
    int listen_fd, port, target_port, delay_ms;
    pthread_t acceptor;
    _Atomic long connections;
    _Atomic int stopping;
    _Atomic int freezes; /* relay_freeze calls so far */
    _Atomic int copying; /* connection threads still running: relay_stop waits for them */
};

struct relay_connection {
    struct relay *relay;
    int client;
    int freezes_at_open; /* frozen once relay->freezes passes this */
};

static int relay_frozen(const struct relay_connection *c)
{
    return atomic_load(&c->relay->freezes) != c->freezes_at_open;
}

/* Copies both ways, passing each FIN on, until both sides are done, one fails or the relay stops;
 * once frozen it neither reads nor writes (and resets nothing) until the relay stops. */
static void relay_copy(const struct relay_connection *c, int upstream)
{
    char buf[16384];
    int fds[2] = {c->client, upstream}, open[2] = {1, 1};
    while ((open[0] || open[1]) && !atomic_load(&c->relay->stopping)) {
        int frozen = relay_frozen(c);
        struct pollfd p[2] = {{fds[0], open[0] && !frozen ? POLLIN : 0, 0},
                              {fds[1], open[1] && !frozen ? POLLIN : 0, 0}};
        if (poll(p, 2, 20) < 0 && errno != EINTR)
            return;
        for (int i = 0; i < 2 && !frozen; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(fds[i], buf, sizeof buf);
            if (n <= 0) {
                shutdown(fds[1 - i], SHUT_WR);
                open[i] = 0;
                if (n < 0)
                    return;
                continue;
            }
            for (ssize_t done = 0; done < n;) {
                ssize_t w = write(fds[1 - i], buf + done, (size_t)(n - done));
                if (w <= 0)
                    return;
                done += w;
            }
        }
    }
}

static void *relay_serve(void *arg)
{
    struct relay_connection *c = arg;
    struct relay *r = c->relay;
    for (uint64_t until = now_ms() + (uint64_t)r->delay_ms;
         now_ms() < until && !atomic_load(&r->stopping);)
        sleep_ms(5);
    int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)r->target_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (up >= 0 && connect(up, (struct sockaddr *)&sa, sizeof sa) == 0)
        relay_copy(c, up);
    if (up >= 0)
        close(up);
    close(c->client);
    free(c);
    atomic_fetch_sub(&r->copying, 1);
    return NULL;
}

int accept_until_stopped(int listen_fd, _Atomic int *stop, int poll_ms)
{
    while (!atomic_load(stop)) {
        struct pollfd p = {listen_fd, POLLIN, 0};
        if (poll(&p, 1, poll_ms) <= 0)
            continue;
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
    }
    return -1;
}

int thread_start_detached(void *(*run)(void *), void *arg, size_t stack_bytes)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack_bytes > 0)
        pthread_attr_setstacksize(&attr, stack_bytes);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, run, arg);
    pthread_attr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

static void *relay_accept(void *arg)
{
    struct relay *r = arg;
    int fd;
    while ((fd = accept_until_stopped(r->listen_fd, &r->stopping, 20)) >= 0) {
        atomic_fetch_add(&r->connections, 1);
        struct relay_connection *c = malloc(sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        *c = (struct relay_connection){r, fd, atomic_load(&r->freezes)};
        atomic_fetch_add(&r->copying, 1);
        /* ends when either side closes or the relay stops */
        if (thread_start_detached(relay_serve, c, 0) != 0) {
            atomic_fetch_sub(&r->copying, 1);
            close(fd);
            free(c);
        }
    }
    return NULL;
}

struct relay *relay_start(int target_port, int delay_ms)
{
    struct relay *r = calloc(1, sizeof *r);
    ck_assert(r != NULL);
    r->target_port = target_port;
    r->delay_ms = delay_ms;
    r->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    ck_assert(bind(r->listen_fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    ck_assert(listen(r->listen_fd, 64) == 0);
    ck_assert(getsockname(r->listen_fd, (struct sockaddr *)&sa, &len) == 0);
    r->port = ntohs(sa.sin_port);
    ck_assert(pthread_create(&r->acceptor, NULL, relay_accept, r) == 0);
    return r;
}

int relay_port(const struct relay *r) { return r->port; }

long relay_connections(struct relay *r) { return atomic_load(&r->connections); }

void relay_freeze(struct relay *r) { atomic_fetch_add(&r->freezes, 1); }

void relay_stop(struct relay *r)
{
    atomic_store(&r->stopping, 1);
    pthread_join(r->acceptor, NULL);
    close(r->listen_fd);
    while (atomic_load(&r->copying) > 0) /* each notices within one 20 ms poll */
        sleep_ms(5);
    free(r);
}

/* ---- raw sockets ----------------------------------------------------------------------------- */

static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        int64_t left = (int64_t)deadline - (int64_t)now_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {fd, events, 0};
        int n = poll(&pfd, 1, (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

struct raw *raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ck_assert(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    if (rc < 0 && errno == EINPROGRESS && wait_fd(fd, POLLOUT, now_ms() + 5000) == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
    }
    if (rc < 0) {
        int err = errno;
        close(fd);
        ck_abort_msg("connect 127.0.0.1:%d: %s", port, strerror(err));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct raw *c = xmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    c->fd = fd;
    return c;
}

void raw_close(struct raw *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    free(c->buf);
    free(c);
}

int raw_try_send(struct raw *c, const void *data, size_t len)
{
    const char *p = data;
    uint64_t deadline = now_ms() + 10000;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n, len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(c->fd, POLLOUT, deadline) != 1)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

void raw_send(struct raw *c, const void *data, size_t len)
{
    int rc = raw_try_send(c, data, len);
    ck_assert_msg(rc == 0, "send of %zu bytes failed: %s", len, strerror(errno));
}

void raw_send_str(struct raw *c, const char *s) { raw_send(c, s, strlen(s)); }

void raw_sendf(struct raw *c, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    ck_assert(vasprintf(&s, fmt, ap) >= 0);
    va_end(ap);
    raw_send_str(c, s);
    free(s);
}

char *proxy_request(const char *method, const struct origin *o, const char *path, const char *extra)
{
    char *req = NULL;
    ck_assert(asprintf(&req, "%s http://127.0.0.1:%d%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n",
                       method, o->port, path, o->port, extra != NULL ? extra : "") > 0);
    return req;
}

static int raw_fill(struct raw *c, uint64_t deadline);

size_t raw_pending(struct raw *c, int wait_ms)
{
    if (c->len == 0)
        raw_fill(c, now_ms() + (uint64_t)wait_ms);
    return c->len;
}

/* Reads more bytes into c->buf: >0 read, 0 peer closed (or reset), RAW_TIMEOUT */
static int raw_fill(struct raw *c, uint64_t deadline)
{
    if (c->eof)
        return 0;
    if (c->cap - c->len < 65536) {
        c->cap = c->len + 65536 + 1;
        c->buf = xrealloc(c->buf, c->cap);
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
        if (n > 0) {
            c->len += (size_t)n;
            return (int)n;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            c->eof = 1; /* EOF and ECONNRESET both mean the peer is gone */
            return 0;
        }
        if (wait_fd(c->fd, POLLIN, deadline) != 1)
            return RAW_TIMEOUT;
    }
}

static void raw_consume(struct raw *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* One line (without CR LF) into a malloc'd string */
static int raw_line(struct raw *c, uint64_t deadline, char **line)
{
    char *nl;
    while ((nl = c->len ? memchr(c->buf, '\n', c->len) : NULL) == NULL) {
        if (c->len > MAX_HEAD)
            return RAW_BAD;
        int rc = raw_fill(c, deadline);
        if (rc <= 0)
            return rc == 0 ? RAW_CLOSED : rc;
    }
    size_t n = (size_t)(nl - c->buf);
    *line = xstrndup(c->buf, n > 0 && c->buf[n - 1] == '\r' ? n - 1 : n);
    raw_consume(c, n + 1);
    return RAW_OK;
}

static int parse_status_line(const char *line, struct http_response *r)
{
    int consumed = 0;
    if (sscanf(line, "%15s %3d%n", r->version, &r->status, &consumed) != 2 ||
        strncmp(r->version, "HTTP/1.", 7) != 0)
        return RAW_BAD;
    const char *reason = line + consumed;
    if (*reason == ' ')
        reason++;
    snprintf(r->reason, sizeof r->reason, "%s", reason);
    return RAW_OK;
}

static int read_head(struct raw *c, struct http_response *r, uint64_t deadline)
{
    char *line = NULL;
    int rc = raw_line(c, deadline, &line);
    if (rc != RAW_OK)
        return rc;
    rc = parse_status_line(line, r);
    free(line);
    while (rc == RAW_OK) {
        rc = raw_line(c, deadline, &line);
        if (rc != RAW_OK)
            break;
        int end = line[0] == '\0';
        if (!end && hdr_add_line(&r->headers, &r->nheaders, line, strlen(line)) < 0)
            rc = RAW_BAD;
        free(line);
        if (end)
            break;
    }
    return rc;
}

static void body_take(struct raw *c, struct http_response *r, int flags, size_t n)
{
    if (flags & RESP_PATTERN) {
        int64_t bad = pattern_mismatch(c->buf, n, r->body_len);
        if (bad >= 0 && r->pattern_bad < 0)
            r->pattern_bad = (int64_t)r->body_len + bad;
    } else {
        r->body = xrealloc(r->body, r->body_len + n + 1);
        memcpy(r->body + r->body_len, c->buf, n);
        r->body[r->body_len + n] = '\0';
    }
    r->body_len += n;
    raw_consume(c, n);
}

/* Exactly want bytes of body; RAW_CLOSED if the peer closes first */
static int read_exact(struct raw *c, struct http_response *r, int flags, uint64_t want,
                      uint64_t deadline)
{
    while (want > 0) {
        if (c->len == 0) {
            int rc = raw_fill(c, deadline);
            if (rc <= 0)
                return rc == 0 ? RAW_CLOSED : rc;
        }
        size_t n = c->len < want ? c->len : (size_t)want;
        if (!(flags & RESP_PATTERN) && r->body_len + n > MAX_STORED_BODY)
            return RAW_BAD;
        body_take(c, r, flags, n);
        want -= n;
    }
    return RAW_OK;
}

static int read_until_close(struct raw *c, struct http_response *r, int flags, uint64_t deadline)
{
    for (;;) {
        if (c->len > 0) {
            if (!(flags & RESP_PATTERN) && r->body_len + c->len > MAX_STORED_BODY)
                return RAW_BAD;
            body_take(c, r, flags, c->len);
        }
        int rc = raw_fill(c, deadline);
        if (rc == 0)
            return RAW_OK;
        if (rc < 0)
            return rc;
    }
}

static int read_chunked(struct raw *c, struct http_response *r, int flags, uint64_t deadline)
{
    for (;;) {
        char *line = NULL, *end = NULL;
        int rc = raw_line(c, deadline, &line);
        if (rc != RAW_OK)
            return rc;
        unsigned long long size = strtoull(line, &end, 16);
        int bad = end == line || (*end != '\0' && *end != ';' && *end != ' ' && *end != '\t');
        free(line);
        if (bad)
            return RAW_BAD;
        if (size == 0)
            break;
        if ((rc = read_exact(c, r, flags, size, deadline)) != RAW_OK)
            return rc;
        if ((rc = raw_line(c, deadline, &line)) != RAW_OK)
            return rc;
        bad = line[0] != '\0';
        free(line);
        if (bad)
            return RAW_BAD;
    }
    for (;;) { /* trailer section, ended by an empty line */
        char *line = NULL;
        int rc = raw_line(c, deadline, &line);
        if (rc != RAW_OK)
            return rc;
        int end = line[0] == '\0';
        free(line);
        if (end)
            return RAW_OK;
    }
}

static int is_chunked(const struct http_response *r)
{
    const char *te = NULL;
    for (int i = 0; (te = resp_header(r, "Transfer-Encoding", i)) != NULL; i++)
        if (strcasestr(te, "chunked") != NULL)
            return 1;
    return 0;
}

/* RFC 9112 6.3: how the body of this response is delimited */
static int read_body(struct raw *c, struct http_response *r, int flags, uint64_t deadline)
{
    if ((flags & RESP_HEAD) || r->status < 200 || r->status == 204 || r->status == 304 ||
        ((flags & RESP_CONNECT) && r->status < 300))
        return RAW_OK;
    if (is_chunked(r)) {
        r->chunked = 1;
        return read_chunked(c, r, flags, deadline);
    }
    const char *cl = resp_header(r, "Content-Length", 0);
    if (cl != NULL) {
        char *end = NULL;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end == cl || *end != '\0')
            return RAW_BAD;
        return read_exact(c, r, flags, n, deadline);
    }
    r->close_delimited = 1;
    return read_until_close(c, r, flags, deadline);
}

int raw_read_response(struct raw *c, struct http_response *r, int flags, int timeout_ms)
{
    memset(r, 0, sizeof *r);
    r->pattern_bad = -1;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    int rc = read_head(c, r, deadline);
    if (rc == RAW_OK)
        rc = read_body(c, r, flags, deadline);
    if (r->body == NULL && !(flags & RESP_PATTERN))
        r->body = xstrndup("", 0);
    return rc;
}

void http_response_free(struct http_response *r)
{
    hdr_free(r->headers, r->nheaders);
    free(r->body);
    memset(r, 0, sizeof *r);
}

const char *resp_header(const struct http_response *r, const char *name, int nth)
{
    return hdr_find(r->headers, r->nheaders, name, nth);
}

int raw_wait_closed(struct raw *c, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        c->len = 0;
        int rc = raw_fill(c, deadline);
        if (rc == 0)
            return 1;
        if (rc < 0)
            return 0;
    }
}

void raw_send_proxy_request(struct raw *c, const char *method, const struct origin *o,
                            const char *path, const char *extra)
{
    char *req = proxy_request(method, o, path, extra);
    raw_send_str(c, req);
    free(req);
}

void raw_send_pipelined(struct raw *c, const struct origin *o, const char *const method_path[])
{
    char *all = calloc(1, 1);
    ck_assert_ptr_nonnull(all);
    for (size_t i = 0; method_path[i] != NULL; i += 2) {
        char *req = proxy_request(method_path[i], o, method_path[i + 1], NULL), *both = NULL;
        ck_assert(asprintf(&both, "%s%s", all, req) > 0);
        free(req);
        free(all);
        all = both;
    }
    raw_send_str(c, all);
    free(all);
}

void raw_expect_pattern(struct raw *c, size_t n, const char *what)
{
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, 10000); /* the T_MS of the suites that call it */
    ck_assert_msg(rc == RAW_OK, "%s: %s", what, raw_result_name(rc));
    ck_assert_msg(r.status == 200, "%s: status %d", what, r.status);
    ck_assert_msg(r.body_len == n, "%s: %zu bytes, want %zu", what, r.body_len, n);
    ck_assert_msg(pattern_mismatch(r.body, n, 0) == -1, "%s: wrong bytes", what);
    http_response_free(&r);
}

void raw_expect_status(struct raw *c, int status, const char *what)
{
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, 10000); /* the T_MS of the suites that call it */
    ck_assert_msg(rc == RAW_OK, "%s: %s", what, raw_result_name(rc));
    ck_assert_msg(r.status == status, "%s: status %d, want %d", what, r.status, status);
    http_response_free(&r);
}

void raw_get_pattern(struct raw *c, const struct origin *o, size_t n, const char *what)
{
    char path[64];
    snprintf(path, sizeof path, "/bytes/%zu", n);
    raw_send_proxy_request(c, "GET", o, path, NULL);
    raw_expect_pattern(c, n, what);
}

void raw_assert_closed_between(struct raw *c, int min_ms, int max_ms, const char *what)
{
    uint64_t t0 = now_ms();
    ck_assert_msg(raw_wait_closed(c, max_ms), "%s: still open %d ms later", what, max_ms);
    uint64_t ms = now_ms() - t0;
    ck_assert_msg(ms >= (uint64_t)min_ms, "%s: closed after %llu ms, before %d ms", what,
                  (unsigned long long)ms, min_ms);
}

int raw_exchange(int port, const char *request, struct http_response *r, int flags, int timeout_ms)
{
    struct raw *c = raw_connect(port);
    raw_send_str(c, request);
    int rc = raw_read_response(c, r, flags, timeout_ms);
    raw_close(c);
    return rc;
}

/* A request through a proxy that killed it fails here, with the proxy's own account */
static void assert_proxies_alive(const char *what)
{
    for (int i = 0; i < MAX_PROXIES; i++)
        if (g_proxies[i] != NULL && !proxy_alive(g_proxies[i]))
            ck_abort_msg("rlproxy died during %s: %s", what, proxy_state(g_proxies[i]));
}

static const char *raw_result_text(int rc)
{
    switch (rc) {
    case RAW_OK:
        return "ok";
    case RAW_TIMEOUT:
        return "timed out";
    case RAW_CLOSED:
        return "connection closed before the response was complete";
    case RAW_BAD:
        return "unparseable response";
    default:
        return "?";
    }
}

const char *raw_result_name(int rc)
{
    static char *text;
    free(text);
    text = NULL;
    /* A closed connection or a timeout is often a crash: say so in the failure message. The
     * socket closes a moment before the process can be reaped (a sanitizer report takes a
     * while), so give a dying proxy time; this only runs on a failure path. */
    struct proxy *dead = NULL;
    uint64_t deadline = now_ms() + (rc == RAW_CLOSED ? 2000 : 0);
    do {
        for (int i = 0; rc != RAW_OK && i < MAX_PROXIES && dead == NULL; i++)
            if (g_proxies[i] != NULL && !proxy_alive(g_proxies[i]))
                dead = g_proxies[i];
        if (dead == NULL && now_ms() < deadline)
            sleep_ms(50);
    } while (dead == NULL && now_ms() < deadline);
    if (dead == NULL)
        return raw_result_text(rc);
    char *state = proxy_state(dead);
    ck_assert(asprintf(&text, "%s; %s", raw_result_text(rc), state) > 0);
    free(state);
    return text;
}

/* ---- libcurl client -------------------------------------------------------------------------- */

struct fetch_ctx {
    const struct fetch_req *rq;
    struct fetch_res *rs;
    size_t body_cap;
    uint64_t sent;
    struct sha256 sha;
};

static size_t on_header(char *data, size_t size, size_t nitems, void *arg)
{
    struct fetch_ctx *ctx = arg;
    size_t len = size * nitems;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* a new response (1xx, the proxy's CONNECT reply, the final one): start over */
        hdr_free(ctx->rs->headers, ctx->rs->nheaders);
        ctx->rs->headers = NULL;
        ctx->rs->nheaders = 0;
        size_t n = len;
        while (n > 0 && (data[n - 1] == '\r' || data[n - 1] == '\n'))
            n--;
        snprintf(ctx->rs->status_line, sizeof ctx->rs->status_line, "%.*s", (int)n, data);
    } else {
        hdr_add_line(&ctx->rs->headers, &ctx->rs->nheaders, data, len);
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct fetch_ctx *ctx = arg;
    struct fetch_res *rs = ctx->rs;
    size_t len = size * nmemb;
    if (ctx->rq->check_pattern) {
        int64_t bad = pattern_mismatch(data, len, rs->received);
        if (bad >= 0 && rs->pattern_bad < 0)
            rs->pattern_bad = (int64_t)rs->received + bad;
    } else {
        if (rs->body_len + len + 1 > ctx->body_cap) {
            while (rs->body_len + len + 1 > ctx->body_cap)
                ctx->body_cap = ctx->body_cap ? ctx->body_cap * 2 : 65536;
            if (ctx->body_cap > MAX_STORED_BODY * 2u)
                return 0;
            rs->body = xrealloc(rs->body, ctx->body_cap);
        }
        memcpy(rs->body + rs->body_len, data, len);
        rs->body_len += len;
        rs->body[rs->body_len] = '\0';
    }
    rs->received += len;
    if (ctx->rq->abort_after > 0 && rs->received >= ctx->rq->abort_after)
        return 0; /* CURLE_WRITE_ERROR: the client goes away mid-body */
    return len;
}

static size_t on_upload(char *buf, size_t size, size_t nitems, void *arg)
{
    struct fetch_ctx *ctx = arg;
    const struct fetch_req *rq = ctx->rq;
    uint64_t total = rq->gen_upload > 0 ? (uint64_t)rq->gen_upload : rq->body_len;
    size_t n = size * nitems;
    if (n > total - ctx->sent)
        n = (size_t)(total - ctx->sent);
    if (rq->gen_upload > 0)
        pattern_fill(buf, n, ctx->sent);
    else
        memcpy(buf, (const char *)rq->body + ctx->sent, n);
    sha256_update(&ctx->sha, buf, n);
    ctx->sent += n;
    return n;
}

static struct curl_slist *request_headers(const struct fetch_req *rq)
{
    struct curl_slist *list = NULL;
    int has_expect = 0;
    for (size_t i = 0; rq->headers != NULL && rq->headers[i] != NULL; i++) {
        list = curl_slist_append(list, rq->headers[i]);
        has_expect |= strncasecmp(rq->headers[i], "Expect:", 7) == 0;
    }
    /* curl adds "Expect: 100-continue" to big uploads on its own; tests ask for it explicitly */
    if (!has_expect)
        list = curl_slist_append(list, "Expect:");
    return list;
}

static void setup_upload(CURL *h, const struct fetch_req *rq, struct fetch_ctx *ctx)
{
    if (rq->body == NULL && rq->gen_upload <= 0)
        return;
    uint64_t total = rq->gen_upload > 0 ? (uint64_t)rq->gen_upload : rq->body_len;
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
    curl_easy_setopt(h, CURLOPT_READDATA, ctx);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, rq->chunked ? (curl_off_t)-1 : (curl_off_t)total);
    if (rq->method == NULL)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "POST");
}

static void setup_proxy(CURL *h, const struct fetch_req *rq)
{
    char proxy[64] = "";
    if (rq->proxy_port > 0)
        snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", rq->proxy_port);
    curl_easy_setopt(h, CURLOPT_PROXY, proxy); /* "" also ignores any *_proxy variables */
    curl_easy_setopt(h, CURLOPT_NOPROXY, "");
    curl_easy_setopt(h, CURLOPT_HTTPPROXYTUNNEL, rq->tunnel ? 1L : 0L);
    if (rq->cainfo != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, rq->cainfo);
}

void fetch(const struct fetch_req *rq, struct fetch_res *rs)
{
    memset(rs, 0, sizeof *rs);
    rs->pattern_bad = -1;
    struct fetch_ctx ctx = {.rq = rq, .rs = rs};
    sha256_init(&ctx.sha);
    CURL *h = curl_easy_init();
    ck_assert(h != NULL);
    struct curl_slist *hdrs = request_headers(rq);
    curl_easy_setopt(h, CURLOPT_URL, rq->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, rs->err);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &ctx);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &ctx);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, rq->timeout_ms > 0 ? rq->timeout_ms : 60000L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    setup_proxy(h, rq);
    if (rq->method != NULL && strcmp(rq->method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (rq->method != NULL)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    setup_upload(h, rq, &ctx);
    rs->rc = curl_easy_perform(h);
    if (rq->proxy_port > 0)
        assert_proxies_alive(rq->url);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
    curl_easy_getinfo(h, CURLINFO_HTTP_CONNECTCODE, &rs->connect_code);
    rs->uploaded = ctx.sent;
    sha256_final_hex(&ctx.sha, rs->upload_sha256);
    if (rs->body == NULL && !rq->check_pattern)
        rs->body = xstrndup("", 0);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
}

void fetch_free(struct fetch_res *rs)
{
    hdr_free(rs->headers, rs->nheaders);
    free(rs->body);
    memset(rs, 0, sizeof *rs);
}

const char *fetch_header(const struct fetch_res *rs, const char *name, int nth)
{
    return hdr_find(rs->headers, rs->nheaders, name, nth);
}

void fetch_tls_via_tunnel(int proxy_port, const struct origin *o, size_t n)
{
    char url[256], path[64];
    snprintf(path, sizeof path, "/bytes/%zu", n);
    struct fetch_req rq = {.url = origin_url(o, path, url, sizeof url),
                           .proxy_port = proxy_port,
                           .tunnel = 1,
                           .cainfo = harness_ca_path(),
                           .check_pattern = 1};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK, "https via CONNECT: curl error %d: %s", (int)rs.rc, rs.err);
    ck_assert_int_eq(rs.connect_code, 200);
    ck_assert_int_eq(rs.status, 200);
    ck_assert_uint_eq(rs.received, n);
    ck_assert_int_eq(rs.pattern_bad, -1);
    fetch_free(&rs);
}

int multi_next_done(CURLM *m, struct multi_done *d)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        d->easy = msg->easy_handle;
        d->result = msg->data.result;
        d->status = 0;
        curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &d->status);
        d->private = NULL;
        curl_easy_getinfo(d->easy, CURLINFO_PRIVATE, (char **)&d->private);
        return 1;
    }
    return 0;
}

void fetch_via(int proxy_port, const char *url, struct fetch_res *rs)
{
    struct fetch_req rq = {.url = url, .proxy_port = proxy_port};
    fetch(&rq, rs);
    ck_assert_msg(rs->rc == CURLE_OK, "GET %s via proxy %d: curl error %d: %s", url, proxy_port,
                  (int)rs->rc, rs->err);
}

long status_via(int proxy_port, const char *url)
{
    struct fetch_res rs;
    fetch_via(proxy_port, url, &rs);
    long status = rs.status;
    fetch_free(&rs);
    return status;
}

long origin_status_via(const struct proxy *p, const struct origin *o, const char *path)
{
    char url[256];
    return status_via(p->port, origin_url(o, path, url, sizeof url));
}

/* ---- origin JSON ----------------------------------------------------------------------------- */

/* Position just after `"key":`, or NULL */
static const char *json_key(const char *json, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = json != NULL ? strstr(json, pat) : NULL;
    return p != NULL ? p + strlen(pat) : NULL;
}

int json_get_int(const char *json, const char *key, long long *out)
{
    const char *p = json_key(json, key);
    char *end = NULL;
    if (p == NULL)
        return -1;
    *out = strtoll(p, &end, 10);
    return end == p ? -1 : 0;
}

int json_get_bool(const char *json, const char *key)
{
    const char *p = json_key(json, key);
    if (p == NULL)
        return -1;
    if (strncmp(p, "true", 4) == 0)
        return 1;
    return strncmp(p, "false", 5) == 0 ? 0 : -1;
}

/* Decodes the JSON string starting at *p (on its opening quote); advances *p past it */
static char *json_string(const char **p)
{
    const char *s = *p;
    if (*s != '"')
        return NULL;
    size_t cap = strlen(s) + 1, n = 0;
    char *out = xmalloc(cap);
    for (s++; *s != '\0' && *s != '"'; s++) {
        if (*s != '\\') {
            out[n++] = *s;
            continue;
        }
        s++;
        switch (*s) {
        case 'n':
            out[n++] = '\n';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'b':
            out[n++] = '\b';
            break;
        case 'f':
            out[n++] = '\f';
            break;
        case 'u': { /* origin.py escapes latin-1 header bytes as \u00XX */
            unsigned v = 0;
            if (sscanf(s + 1, "%4x", &v) != 1) {
                free(out);
                return NULL;
            }
            out[n++] = v < 256 ? (char)v : '?';
            s += 4;
            break;
        }
        case '\0':
            free(out);
            return NULL;
        default:
            out[n++] = *s;
            break;
        }
    }
    if (*s != '"') {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    *p = s + 1;
    return out;
}

char *json_get_str(const char *json, const char *key)
{
    const char *p = json_key(json, key);
    return p != NULL ? json_string(&p) : NULL;
}

int json_headers(const char *json, struct http_header **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    const char *p = json_key(json, "headers");
    if (p == NULL || *p++ != '[')
        return -1;
    while (*p == '[') {
        p++;
        char *name = json_string(&p);
        char *value = name != NULL && *p == ',' ? (p++, json_string(&p)) : NULL;
        if (value == NULL || *p != ']') {
            free(name);
            free(value);
            return -1;
        }
        hdr_add(out, n, name, strlen(name), value, strlen(value));
        free(name);
        free(value);
        p++;
        if (*p == ',')
            p++;
    }
    return *p == ']' ? 0 : -1;
}

/* ---- /metrics ----------------------------------------------------------------------------------
 */

int proxy_admin_port(struct proxy *p)
{
    static const char needle[] = "admin endpoint listening on 127.0.0.1:";
    uint64_t deadline = now_ms() + 5000;
    while (p->admin_port <= 0) {
        char *log = read_file(p->log_path, NULL);
        const char *hit = log != NULL ? strstr(log, needle) : NULL;
        if (hit != NULL)
            p->admin_port = atoi(hit + strlen(needle));
        free(log);
        if (p->admin_port > 0)
            break;
        ck_assert_msg(now_ms() < deadline, "no admin endpoint in the log:\n%s",
                      proxy_log_tail(p, 800));
        sleep_ms(10);
    }
    return p->admin_port;
}

void proxy_admin_fetch(struct proxy *p, const char *method, const char *path, const char *auth,
                       struct fetch_res *rs)
{
    char url[2048], header[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", proxy_admin_port(p), path);
    const char *headers[] = {header, NULL};
    if (auth != NULL)
        snprintf(header, sizeof header, "Authorization: %s", auth);
    struct fetch_req rq = {.url = url,
                           .method = method,
                           .timeout_ms = 10000,
                           .headers = auth != NULL ? headers : NULL};
    fetch(&rq, rs);
    ck_assert_msg(rs->rc == CURLE_OK, "admin %s %s: %s", method ? method : "GET", path, rs->err);
}

long proxy_admin_status(struct proxy *p, const char *method, const char *path, const char *auth)
{
    struct fetch_res rs;
    proxy_admin_fetch(p, method, path, auth, &rs);
    long status = rs.status;
    fetch_free(&rs);
    return status;
}

long long proxy_metric(struct proxy *p, const char *series)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", proxy_admin_port(p));
    struct fetch_req rq = {.url = url, .timeout_ms = 10000};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "GET /metrics: curl %d, status %ld, %s",
                  (int)rs.rc, rs.status, rs.err);
    long long v = -1;
    size_t n = strlen(series);
    for (const char *line = rs.body; line != NULL && *line != '\0';) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            v = strtoll(line + n + 1, NULL, 10);
            break;
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    fetch_free(&rs);
    return v;
}

int proxy_wait_metric(struct proxy *p, const char *series, long long want, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    long long v;
    while ((v = proxy_metric(p, series)) != want && now_ms() < deadline)
        sleep_ms(20);
    return v == want;
}

/* ---- the origin's log ---------------------------------------------------------------------------
 */

static int arrival_by_time(const void *a, const void *b)
{
    double x = ((const struct arrival *)a)->ms, y = ((const struct arrival *)b)->ms;
    return x < y ? -1 : x > y;
}

size_t origin_arrivals(const struct origin *o, const char *prefix, struct arrival **out)
{
    char *log = origin_get(o, "/log");
    size_t n = 0, cap = 64, plen = strlen(prefix);
    struct arrival *a = malloc(cap * sizeof *a);
    ck_assert(a != NULL);
    for (const char *p = log; (p = strstr(p, "\"target\":\"")) != NULL;) {
        p += strlen("\"target\":\"");
        const char *end = strchr(p, '"');
        ck_assert(end != NULL);
        const char *mono = strstr(end, "\"mono\":");
        const char *close = strchr(end, '}');
        ck_assert_msg(mono != NULL && close != NULL && mono < close,
                      "origin log entry without \"mono\" (tests/origin/origin.py too old?)");
        if ((size_t)(end - p) >= plen && strncmp(p, prefix, plen) == 0) {
            if (n == cap) {
                cap *= 2;
                a = realloc(a, cap * sizeof *a);
                ck_assert(a != NULL);
            }
            snprintf(a[n].target, sizeof a[n].target, "%.*s", (int)(end - p), p);
            a[n].ms = strtod(mono + strlen("\"mono\":"), NULL) * 1000.0;
            const char *conn = strstr(end, "\"conn\":");
            a[n].conn = conn != NULL && conn < close ? strtol(conn + 7, NULL, 10) : -1;
            n++;
        }
        p = close;
    }
    free(log);
    qsort(a, n, sizeof *a, arrival_by_time);
    *out = a;
    return n;
}

double arrivals_min_span(const struct arrival *a, size_t n, int limit, size_t *worst)
{
    double min = 1e9;
    *worst = 0;
    for (size_t i = 0; i + (size_t)limit < n; i++)
        if (a[i + limit].ms - a[i].ms < min) {
            min = a[i + limit].ms - a[i].ms;
            *worst = i;
        }
    return min;
}

struct proxy *proxy_start_with_origin(struct origin **o, int tls, const char *yaml_extra)
{
    *o = origin_start(tls);
    return proxy_start(yaml_extra);
}

struct proxy *proxy_start_tunnel_to(struct origin **o, int tls)
{
    *o = origin_start(tls);
    return proxy_startf("connect:\n  allowed_ports: [%d]\n", (*o)->port);
}

void proxy_stop_with_origin(struct proxy *p, struct origin *o)
{
    proxy_stop(p);
    origin_stop(o);
}

struct fixture fixture_up(int tls, const char *yaml_extra)
{
    struct fixture f;
    f.p = proxy_start_with_origin(&f.o, tls, yaml_extra);
    return f;
}

void fixture_still_serving(struct fixture f, size_t body_len)
{
    ck_assert_msg(proxy_alive(f.p), "%s", proxy_state(f.p));
    char path[64], url[256];
    snprintf(path, sizeof path, "/bytes/%zu", body_len);
    struct fetch_res rs;
    fetch_via(f.p->port, origin_url(f.o, path, url, sizeof url), &rs);
    ck_assert_int_eq(rs.status, 200);
    ck_assert_uint_eq(rs.body_len, body_len);
    fetch_free(&rs);
}

void fixture_down(struct fixture f) { proxy_stop_with_origin(f.p, f.o); }

int proxy_reload(struct proxy *p, const char *yaml, int timeout_ms)
{
    static const char ok[] = "configuration reloaded from ";
    static const char failed[] = "reload failed, keeping the running config: ";
    size_t ok0 = proxy_log_count(p, ok), failed0 = proxy_log_count(p, failed);
    write_text(p->conf_path, yaml);
    ck_assert_msg(kill(p->pid, SIGHUP) == 0, "kill -HUP: %s", strerror(errno));
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (proxy_log_count(p, ok) > ok0)
            return 1;
        if (proxy_log_count(p, failed) > failed0)
            return 0;
        ck_assert_msg(proxy_alive(p), "rlproxy died on SIGHUP: %s", proxy_state(p));
        if (now_ms() > deadline)
            ck_abort_msg("no reload outcome logged within %d ms; log:\n%s", timeout_ms,
                         proxy_log_tail(p, 1500));
        sleep_ms(5);
    }
}

int proxy_wait_log(struct proxy *p, const char *text, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    while (!proxy_log_contains(p, text)) {
        if (now_ms() > deadline)
            return 0;
        sleep_ms(10);
    }
    return 1;
}

int port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert(fd >= 0);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* connect() on a non-blocking socket, bounded by timeout_ms: 0, or -1 with errno set */
static int connect_bounded(int fd, const struct sockaddr_in *sa, int timeout_ms)
{
    int rc = connect(fd, (const struct sockaddr *)sa, sizeof *sa);
    if (rc < 0 && errno == EINPROGRESS) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        int soerr = ETIMEDOUT;
        socklen_t len = sizeof soerr;
        if (poll(&pfd, 1, timeout_ms) == 1)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        rc = soerr == 0 ? 0 : -1;
        errno = soerr;
    }
    return rc;
}

struct raw *raw_connect_from(int port, const char *src, char *err, size_t err_len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, err_len, "socket: %s", strerror(errno));
        return NULL;
    }
    if (src != NULL) {
        struct sockaddr_in from = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, src, &from.sin_addr) != 1 ||
            bind(fd, (struct sockaddr *)&from, sizeof from) != 0) {
            snprintf(err, err_len, "bind %s: %s", src, strerror(errno));
            close(fd);
            return NULL;
        }
    }
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect_bounded(fd, &sa, 5000) < 0) {
        snprintf(err, err_len, "connect 127.0.0.1:%d from %s: %s", port, src ? src : "any",
                 strerror(errno));
        close(fd);
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct raw *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    c->fd = fd;
    return c;
}

struct raw *raw_connect_src(int port, const char *src)
{
    char err[200];
    struct raw *c = raw_connect_from(port, src, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    return c;
}

int raw_send_request(struct raw *c, const char *method, const char *host, int port,
                     const char *path)
{
    char req[1024];
    int n = snprintf(req, sizeof req, "%s http://%s:%d%s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", method,
                     host, port, path, host, port);
    return raw_try_send(c, req, (size_t)n);
}

int raw_request_on(struct raw *c, const char *method, const char *host, int port, const char *path,
                   struct http_response *r, int timeout_ms)
{
    memset(r, 0, sizeof *r);
    if (raw_send_request(c, method, host, port, path) != 0)
        return RAW_CLOSED;
    return raw_read_response(c, r, strcmp(method, "HEAD") == 0 ? RESP_HEAD : 0, timeout_ms);
}

struct raw *raw_connect_send(int port, const char *method, const struct origin *o, const char *path,
                             const char *extra)
{
    struct raw *c = raw_connect(port);
    raw_send_proxy_request(c, method, o, path, extra);
    return c;
}

int harness_tool_missing(int have, const char *test, const char *tool, const char *package)
{
    if (have)
        return 0;
    const char *ci = getenv("CI");
    ck_assert_msg(ci == NULL || strcmp(ci, "true") != 0, "%s is missing (apt-get install %s)", tool,
                  package);
    fprintf(stderr, "%s: %s missing, not checked (apt-get install %s)\n", test, tool, package);
    return 1;
}

int raw_tunnel_request(struct raw *c, int target_port, struct http_response *r, int timeout_ms)
{
    memset(r, 0, sizeof *r);
    char head[128];
    int n =
        snprintf(head, sizeof head, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                 target_port, target_port);
    if (raw_try_send(c, head, (size_t)n) != 0)
        return RAW_CLOSED;
    return raw_read_response(c, r, RESP_CONNECT, timeout_ms);
}

int resp_wants_close(const struct http_response *r)
{
    const char *v = resp_header(r, "Connection", 0);
    return v != NULL && strcasestr(v, "close") != NULL;
}

/* file_lines_with, and the last matching line in *last (malloc'd) when last is not NULL */
static size_t scan_lines(const char *path, const char *needle, const char *also, char **lines,
                         size_t max, char **last)
{
    char *text = read_file(path, NULL);
    size_t n = 0;
    for (char *line = text; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl == NULL)
            break; /* still being written */
        *nl = '\0';
        if (strstr(line, needle) != NULL && (also == NULL || strstr(line, also) != NULL)) {
            if (lines != NULL && n < max)
                lines[n] = strdup(line);
            if (last != NULL) {
                free(*last);
                *last = strdup(line);
            }
            n++;
        }
        line = nl + 1;
    }
    free(text);
    return n;
}

size_t file_lines_with(const char *path, const char *needle, const char *also, char **lines,
                       size_t max)
{
    return scan_lines(path, needle, also, lines, max, NULL);
}

char *proxy_access_line(struct proxy *p, const char *needle)
{
    uint64_t deadline = now_ms() + 3000;
    for (;;) {
        char *last = NULL;
        /* both fields are in every access-log line (conn.c, tunnel.c) and in no other line */
        scan_lines(p->log_path, needle, " attempts=", NULL, 0, &last);
        if (last != NULL && strstr(last, " limit=") != NULL)
            return last;
        free(last);
        if (now_ms() > deadline)
            ck_abort_msg("no access-log line containing %s; log:\n%s", needle,
                         proxy_log_tail(p, 2000));
        sleep_ms(20);
    }
}

int line_attempts(const char *line)
{
    const char *a = strstr(line, " attempts=");
    ck_assert_msg(a != NULL, "no attempts= in %s", line);
    return atoi(a + strlen(" attempts="));
}

long long line_wait_ms(const char *line)
{
    const char *a = strstr(line, " wait=");
    ck_assert_msg(a != NULL, "no wait= in %s", line);
    return atoll(a + strlen(" wait="));
}

/* ---- paced load ------------------------------------------------------------------------------ */

static void load_answer(struct load *l, const struct http_response *r, uint64_t sent_us,
                        uint64_t answered_us)
{
    if (r->status == 200) {
        if ((l->flags & LOAD_KEEP_SPANS) && (size_t)l->ok == l->admitted_cap) {
            l->admitted_cap = l->admitted_cap ? 2 * l->admitted_cap : 64;
            l->admitted = realloc(l->admitted, l->admitted_cap * sizeof *l->admitted);
            if (l->admitted == NULL)
                abort();
        }
        if (l->flags & LOAD_KEEP_SPANS)
            l->admitted[l->ok] = (struct span){sent_us, answered_us};
        l->ok++;
    } else if (r->status == 429) {
        l->limited++;
    } else if (l->other++ == 0) {
        l->other_status = r->status;
    }
}

/* A client thread: no ck_assert (Check's are for the test's own thread) */
static void *load_thread(void *arg)
{
    struct load *l = arg;
    struct raw *c = NULL;
    if ((l->flags & LOAD_CONNECT_EARLY) &&
        (c = raw_connect_from(l->proxy_port, NULL, l->error, sizeof l->error)) == NULL) {
        l->errors++;
        return NULL;
    }
    uint64_t next = l->start_us + l->offset_us;
    for (unsigned j = 0;; j++) {
        sleep_until_us(next);
        if (now_us() >= l->end_us)
            break;
        if (c == NULL &&
            (c = raw_connect_from(l->proxy_port, NULL, l->error, sizeof l->error)) == NULL) {
            l->errors++;
            break;
        }
        char path[160];
        snprintf(path, sizeof path, "%s?t=%d&j=%u", l->prefix, l->id, j);
        struct http_response r;
        uint64_t sent_us = now_us();
        int rc = raw_request_on(c, "GET", "127.0.0.1", l->origin_port, path, &r, 5000);
        uint64_t answered_us = now_us();
        if (answered_us - sent_us > l->max_us)
            l->max_us = answered_us - sent_us;
        l->sent++;
        if (rc != RAW_OK) {
            if (l->errors++ == 0)
                snprintf(l->error, sizeof l->error, "%s: %s", path, raw_result_name(rc));
            raw_close(c);
            c = NULL;
        } else {
            load_answer(l, &r, sent_us, answered_us);
            if (resp_wants_close(&r)) {
                raw_close(c);
                c = NULL;
            }
        }
        http_response_free(&r);
        next += l->period_us;
        uint64_t now = now_us();
        if (next < now)
            next += ((now - next) / l->period_us + 1) * l->period_us;
    }
    raw_close(c);
    return NULL;
}

void load_run(struct proxy **proxies, const char **prefixes, int nproxies, const struct origin *o,
              int threads, uint64_t start_us, uint64_t end_us, uint64_t period_us, int flags,
              struct load *l)
{
    pthread_t tid[16];
    ck_assert(threads <= 16);
    for (int k = 0; k < threads; k++) {
        l[k] = (struct load){.proxy_port = proxies[k % nproxies]->port,
                             .origin_port = o->port,
                             .prefix = prefixes[k % nproxies],
                             .id = k,
                             .flags = flags,
                             .start_us = start_us,
                             .end_us = end_us,
                             .offset_us = period_us * (uint64_t)k / (uint64_t)threads,
                             .period_us = period_us};
        ck_assert(pthread_create(&tid[k], NULL, load_thread, &l[k]) == 0);
    }
    for (int k = 0; k < threads; k++)
        pthread_join(tid[k], NULL);
}

struct load load_sum(struct load *l, int threads, int nproxies, int which)
{
    struct load t = {0};
    for (int k = 0; k < threads; k++) {
        if (which >= 0 && k % nproxies != which)
            continue;
        t.sent += l[k].sent;
        t.limited += l[k].limited;
        t.other += l[k].other;
        t.errors += l[k].errors;
        if (l[k].other > 0)
            t.other_status = l[k].other_status;
        if (l[k].errors > 0)
            snprintf(t.error, sizeof t.error, "%s", l[k].error);
        if (l[k].max_us > t.max_us)
            t.max_us = l[k].max_us;
        if (l[k].admitted != NULL) {
            t.admitted =
                realloc(t.admitted, ((size_t)t.ok + (size_t)l[k].ok + 1) * sizeof *t.admitted);
            ck_assert(t.admitted != NULL);
            memcpy(t.admitted + t.ok, l[k].admitted, (size_t)l[k].ok * sizeof *l[k].admitted);
            free(l[k].admitted);
            l[k].admitted = NULL;
        }
        t.ok += l[k].ok;
    }
    return t;
}
