/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* state_file.c — see state_file.h.
 *
 * The format, one record per line (all numbers decimal; times are wall-clock microseconds since
 * the epoch; a key is hex, "-" for the empty key of `key: global`):
 *
 *   rlproxy-state 2
 *   saved WALL_US
 *   rule NAME KEY LIMIT WINDOW_MS OVER_LIMIT MAX_DELAY_MS MAX_QUEUE SHARED
 *   window HEXKEY COUNT T1 T2 ... TCOUNT
 *   learned HEXKEY REMAINING RESET_WALL_US LIMIT PERIOD_US PAUSED_UNTIL_WALL_US
 *   end CRC32
 *
 * A learned line (version 2) is what the origin said of a key whose reset or pause was still
 * ahead at the save: REMAINING as it stood then ("-": not said), times 0 when not said. Version
 * 1 files (no learned lines) are still read, so an upgrade keeps its windows.
 *
 * CRC32 is 8 lower-case hex digits over every byte before "end". Text rather than binary: an
 * operator can read it with less(1), and the parser is as strict either way. A rule section
 * applies only to a running rule with the same name and parameters, as a reload keeps windows
 * (limiter.c's same_params); the numbers in the rule line are the enum values of config.h.
 *
 * The reader checks the whole file (size, trailer, checksum, every line) before it restores
 * anything, so a bad file costs an empty start and never a half-restored one. */
#include "state_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "limit_headers.h"

#define MAGIC "rlproxy-state"
#define FORMAT_VERSION 2
#define FORMAT_VERSION_OLDEST 1

uint32_t state_file_crc32(const void *data, size_t len)
{
    /* four bits at a time: a 16-entry table, fast enough for a file of a few MiB every 5 s */
    static const uint32_t table[16] = {0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC,
                                       0x76DC4190, 0x6B6B51F4, 0x4DB26158, 0x5005713C,
                                       0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C,
                                       0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C};
    const unsigned char *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ table[crc & 15];
        crc = (crc >> 4) ^ table[crc & 15];
    }
    return ~crc;
}

uint64_t state_file_wall_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- writing ---- */

struct text {
    char *data;
    size_t len, cap;
    int failed; /* out of memory or over STATE_FILE_MAX_BYTES */
};

static void text_add(struct text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n + 1 > STATE_FILE_MAX_BYTES) {
        t->failed = 1;
        return;
    }
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *grown = realloc(t->data, cap);
        if (grown == NULL) {
            t->failed = 1;
            return;
        }
        t->data = grown;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(struct text *t, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf)
        t->failed = 1;
    else
        text_add(t, buf, (size_t)n);
}

struct render {
    struct text *text;
    uint64_t offset_us; /* wall - monotonic at the save */
};

/* A line's first word and its key: hex, two digits a byte, or "-" for the empty key. */
static void render_key(struct text *t, const char *word, const char *key, size_t key_len)
{
    static const char hex[] = "0123456789abcdef";
    text_add(t, word, strlen(word));
    if (key_len == 0)
        text_add(t, "-", 1);
    for (size_t i = 0; i < key_len; i++) {
        char pair[2] = {hex[(unsigned char)key[i] >> 4], hex[(unsigned char)key[i] & 15]};
        text_add(t, pair, 2);
    }
}

static void render_learned(const char *key, size_t key_len,
                           const struct limiter_learned_view *learned, void *arg)
{
    struct render *r = arg;
    /* within the bounds the reader checks, or the whole file would be refused: a limit said
     * after the remaining (a smaller quota) caps it, and a period seen between resets days apart
     * is taken as not known, as limit_headers.c takes a window that long */
    int64_t remaining = learned->remaining;
    if (learned->limit > 0 && remaining > (int64_t)learned->limit)
        remaining = (int64_t)learned->limit;
    uint64_t period_us = learned->period_us;
    if (period_us > (uint64_t)LIMIT_HEADERS_MAX_WAIT_MS * 1000)
        period_us = 0;
    render_key(r->text, "learned ", key, key_len);
    if (remaining < 0)
        text_add(r->text, " -", 2);
    else
        text_printf(r->text, " %lld", (long long)remaining);
    uint64_t reset_wall_us = learned->reset_us ? learned->reset_us + r->offset_us : 0;
    uint64_t paused_wall_us =
        learned->paused_until_us ? learned->paused_until_us + r->offset_us : 0;
    text_printf(r->text, " %llu %llu %llu %llu\n", (unsigned long long)reset_wall_us,
                (unsigned long long)learned->limit, (unsigned long long)period_us,
                (unsigned long long)paused_wall_us);
}

static void render_window(const char *key, size_t key_len, const uint64_t *times_us, uint32_t count,
                          void *arg)
{
    struct render *r = arg;
    render_key(r->text, "window ", key, key_len);
    text_printf(r->text, " %u", count);
    for (uint32_t i = 0; i < count; i++)
        text_printf(r->text, " %llu", (unsigned long long)(times_us[i] + r->offset_us));
    text_add(r->text, "\n", 1);
}

char *state_file_render(struct limiter *limiter, uint64_t now_mono_us, uint64_t now_wall_us,
                        size_t *len)
{
    struct text t = {0};
    /* a wall clock before the monotonic one (a clock set to 1970) would wrap: save nothing */
    struct render r = {&t, now_wall_us >= now_mono_us ? now_wall_us - now_mono_us : 0};
    text_printf(&t, "%s %d\nsaved %llu\n", MAGIC, FORMAT_VERSION, (unsigned long long)now_wall_us);
    for (size_t i = 0; limiter != NULL && i < limiter_rule_count(limiter) && r.offset_us > 0; i++) {
        const struct rate_rule *rule = limiter_rule(limiter, i);
        text_printf(&t, "rule %s %d %u %llu %d %llu %u %d\n", rule->name, (int)rule->key,
                    rule->limit, (unsigned long long)rule->window_ms, (int)rule->over_limit,
                    (unsigned long long)rule->max_delay_ms, rule->max_queue, rule->shared ? 1 : 0);
        limiter_export_windows(limiter, i, now_mono_us, render_window, &r);
        limiter_export_learned(limiter, i, now_mono_us, render_learned, &r);
    }
    if (!t.failed)
        text_printf(&t, "end %08x\n", state_file_crc32(t.data, t.len));
    if (t.failed) {
        free(t.data);
        return NULL;
    }
    *len = t.len;
    return t.data;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The directory entry of a rename is durable only once the directory itself is synced. */
static int sync_directory_of(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int state_file_save(struct limiter *limiter, const char *path, uint64_t now_mono_us,
                    uint64_t now_wall_us, char *err, size_t err_len)
{
    size_t len;
    char *data = state_file_render(limiter, now_mono_us, now_wall_us, &len);
    if (data == NULL) {
        snprintf(err, err_len, "%s: out of memory or more than %u MiB of windows; not written",
                 path, STATE_FILE_MAX_BYTES >> 20);
        return -1;
    }
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        free(data);
        snprintf(err, err_len, "%s: path too long", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    const char *step = "open";
    int rc = -1;
    if (fd >= 0) {
        step = "write";
        if (write_all(fd, data, len) == 0 && (step = "fsync", fsync(fd) == 0)) {
            step = "close";
            rc = close(fd);
            fd = -1;
            if (rc == 0 && (step = "rename", rc = rename(tmp, path)) == 0 &&
                (step = "fsync of the directory", rc = sync_directory_of(path)) != 0)
                rc = -1;
        }
    }
    int saved = errno;
    if (fd >= 0)
        close(fd);
    if (rc != 0) {
        snprintf(err, err_len, "%s: %s: %s", step[0] == 'o' ? tmp : path, step, strerror(saved));
        unlink(tmp);
    }
    free(data);
    return rc;
}

/* ---- reading ---- */

struct cursor {
    const char *p, *end;
    unsigned line;
    char *err;
    size_t err_len;
};

static int fail(struct cursor *c, const char *what)
{
    snprintf(c->err, c->err_len, "line %u: %s", c->line, what);
    return -1;
}

static int at_word(struct cursor *c, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) > n && memcmp(c->p, word, n) == 0 && c->p[n] == ' ') {
        c->p += n + 1;
        return 1;
    }
    return 0;
}

static int space(struct cursor *c)
{
    if (c->p < c->end && *c->p == ' ') {
        c->p++;
        return 0;
    }
    return fail(c, "expected a space");
}

static int newline(struct cursor *c)
{
    if (c->p < c->end && *c->p == '\n') {
        c->p++;
        c->line++;
        return 0;
    }
    return fail(c, "expected the end of the line");
}

static int number(struct cursor *c, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned digit = (unsigned)(*c->p - '0');
        if (digit > max || v > (max - digit) / 10)
            return fail(c, "number out of range");
        v = v * 10 + digit;
        c->p++;
    }
    if (c->p == start || c->p - start > 20)
        return fail(c, "expected a number");
    *out = v;
    return 0;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* A window's key: hex digits (two per byte) or "-" for the empty key. */
static int key_text(struct cursor *c, char *key, size_t *len)
{
    *len = 0;
    if (c->p < c->end && *c->p == '-') {
        c->p++;
        return 0;
    }
    while (c->p + 1 < c->end && hex_value(c->p[0]) >= 0 && hex_value(c->p[1]) >= 0) {
        if (*len + 1 >= LIMITER_KEY_TEXT_MAX)
            return fail(c, "key too long");
        key[(*len)++] = (char)(hex_value(c->p[0]) << 4 | hex_value(c->p[1]));
        c->p += 2;
    }
    if (*len == 0)
        return fail(c, "expected a key in hex or -");
    return 0;
}

static int rule_name(struct cursor *c, char name[64])
{
    size_t n = 0;
    while (c->p < c->end && n < 63 &&
           ((*c->p >= 'a' && *c->p <= 'z') || (*c->p >= 'A' && *c->p <= 'Z') ||
            (*c->p >= '0' && *c->p <= '9') || *c->p == '_' || *c->p == '.' || *c->p == '-'))
        name[n++] = *c->p++;
    name[n] = '\0';
    return n == 0 ? fail(c, "expected a rule name") : 0;
}

/* The fields of a rule line that must equal the running rule's for its windows to apply. */
struct rule_line {
    char name[64];
    uint64_t key, limit, window_ms, over_limit, max_delay_ms, max_queue, shared;
};

static int parse_rule(struct cursor *c, struct rule_line *r)
{
    if (rule_name(c, r->name) != 0)
        return -1;
    /* bounds: the config table's (limit 1..1000000, window up to a day, max_delay up to an hour) */
    if (space(c) || number(c, RATE_KEY_GLOBAL, &r->key) || space(c) ||
        number(c, 1000000, &r->limit) || space(c) || number(c, 86400000, &r->window_ms) ||
        space(c) || number(c, RATE_OVER_REJECT, &r->over_limit) || space(c) ||
        number(c, 3600000, &r->max_delay_ms) || space(c) || number(c, 1000000, &r->max_queue) ||
        space(c) || number(c, 1, &r->shared) || newline(c))
        return -1;
    if (r->limit == 0 || r->window_ms == 0)
        return fail(c, "a rule with limit or window 0");
    return 0;
}

/* The running rule that rule line r describes, or limiter_rule_count() when none. */
static size_t match_rule(struct limiter *limiter, const struct rule_line *r)
{
    size_t n = limiter_rule_count(limiter);
    for (size_t i = 0; i < n; i++) {
        const struct rate_rule *rule = limiter_rule(limiter, i);
        if (strcmp(rule->name, r->name) == 0 && (uint64_t)rule->key == r->key &&
            rule->limit == r->limit && rule->window_ms == r->window_ms &&
            (uint64_t)rule->over_limit == r->over_limit && rule->max_delay_ms == r->max_delay_ms &&
            rule->max_queue == r->max_queue && (uint64_t)(rule->shared != 0) == r->shared)
            return i;
    }
    return n;
}

struct pass {
    struct limiter *limiter; /* NULL: check only */
    uint64_t version;
    uint64_t now_mono_us, now_wall_us;
    struct state_file_counts *counts;
    uint64_t *times; /* scratch: the current rule's limit entries */
};

/* One window line, restored when the pass applies and its rule is running (rule_index valid). */
static int parse_window(struct cursor *c, struct pass *pass, const struct rule_line *rule,
                        size_t rule_index)
{
    char key[LIMITER_KEY_TEXT_MAX];
    size_t key_len;
    uint64_t count;
    if (key_text(c, key, &key_len) || space(c) || number(c, rule->limit, &count))
        return -1;
    if (count == 0)
        return fail(c, "a window without entries");
    uint64_t window_us = rule->window_ms * 1000;
    uint32_t kept = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t wall_us;
        if (space(c) || number(c, UINT64_MAX, &wall_us))
            return -1;
        if (pass->times == NULL || wall_us > pass->now_wall_us)
            continue; /* from the future (the clock was set back): it cannot be placed */
        uint64_t age_us = pass->now_wall_us - wall_us;
        if (age_us >= window_us)
            continue; /* counts no more */
        /* a boot more recent than the entry puts it before monotonic 0: 0 is later than its true
         * time, which keeps it in the window longer, never shorter */
        pass->times[kept++] = age_us < pass->now_mono_us ? pass->now_mono_us - age_us : 0;
    }
    if (newline(c) != 0)
        return -1;
    if (pass->times != NULL && kept > 0) {
        int n = limiter_restore_window(pass->limiter, rule_index, key, key_len, pass->times, kept,
                                       pass->now_mono_us);
        if (n > 0) {
            pass->counts->windows++;
            pass->counts->entries += (uint64_t)n;
        }
    }
    return 0;
}

/* A learned time (wall clock, 0: not said) as the limiter's monotonic time at the load: 0 when
 * not said or past; at most max_ahead_us ahead, the bound the limiter itself applies, so a clock
 * set back cannot make an origin's word hold longer than the origin could have asked. */
static uint64_t learned_time(const struct pass *pass, uint64_t wall_us, uint64_t max_ahead_us)
{
    if (wall_us <= pass->now_wall_us)
        return 0;
    uint64_t ahead_us = wall_us - pass->now_wall_us;
    return pass->now_mono_us + (ahead_us < max_ahead_us ? ahead_us : max_ahead_us);
}

/* One learned line, restored when the pass applies and its rule is running; dropped when its
 * reset and its pause are both past. */
static int parse_learned(struct cursor *c, struct pass *pass, size_t rule_index, int rule_running)
{
    char key[LIMITER_KEY_TEXT_MAX];
    size_t key_len;
    uint64_t remaining = 0, reset_wall_us, limit, period_us, paused_wall_us;
    int said = 1;
    if (key_text(c, key, &key_len) || space(c))
        return -1;
    if (c->p < c->end && *c->p == '-') {
        c->p++;
        said = 0;
    } else if (number(c, LIMIT_HEADERS_MAX_COUNT, &remaining)) {
        return -1;
    }
    /* bounds: limit_headers.c's, which is all an origin can have said */
    uint64_t max_wait_us = (uint64_t)LIMIT_HEADERS_MAX_WAIT_MS * 1000;
    if (space(c) || number(c, UINT64_MAX, &reset_wall_us) || space(c) ||
        number(c, LIMIT_HEADERS_MAX_COUNT, &limit) || space(c) ||
        number(c, max_wait_us, &period_us) || space(c) || number(c, UINT64_MAX, &paused_wall_us) ||
        newline(c))
        return -1;
    if (said && limit > 0 && remaining > limit)
        return fail(c, "more remaining than the limit");
    if (pass->limiter == NULL || !rule_running)
        return 0;
    struct limiter_learned_view learned = {
        said ? (int64_t)remaining : -1, learned_time(pass, reset_wall_us, max_wait_us), limit,
        period_us, learned_time(pass, paused_wall_us, LIMITER_MAX_PAUSE_US)};
    if (learned.reset_us == 0 && learned.paused_until_us == 0)
        return 0; /* holds nothing any more */
    if (limiter_restore_learned(pass->limiter, rule_index, key, key_len, &learned) == 0)
        pass->counts->learned++;
    return 0;
}

/* The body: header, saved line, rule sections. The trailer was checked before. */
static int parse_body(struct cursor *c, struct pass *pass)
{
    uint64_t version, saved;
    if (!at_word(c, MAGIC))
        return fail(c, "not an rlproxy state file");
    if (number(c, UINT32_MAX, &version) || newline(c))
        return -1;
    if (version < FORMAT_VERSION_OLDEST || version > FORMAT_VERSION)
        return fail(c, "a version this build does not read");
    pass->version = version;
    if (!at_word(c, "saved") || number(c, UINT64_MAX, &saved) || newline(c))
        return fail(c, "expected \"saved WALL_US\"");
    struct rule_line rule;
    int in_rule = 0;
    size_t rule_index = 0;
    while (c->p < c->end) {
        if (at_word(c, "rule")) {
            if (parse_rule(c, &rule) != 0)
                return -1;
            in_rule = 1;
            pass->counts->rules++;
            free(pass->times);
            pass->times = NULL;
            if (pass->limiter == NULL)
                continue;
            rule_index = match_rule(pass->limiter, &rule);
            if (rule_index < limiter_rule_count(pass->limiter)) {
                pass->counts->matched++;
                pass->times = malloc(rule.limit * sizeof *pass->times);
                if (pass->times == NULL)
                    return fail(c, "out of memory");
            }
        } else if (at_word(c, "window")) {
            if (!in_rule)
                return fail(c, "a window before any rule");
            if (parse_window(c, pass, &rule, rule_index) != 0)
                return -1;
        } else if (pass->version >= 2 && at_word(c, "learned")) {
            if (!in_rule)
                return fail(c, "a learned line before any rule");
            int running = pass->limiter != NULL && rule_index < limiter_rule_count(pass->limiter);
            if (parse_learned(c, pass, rule_index, running) != 0)
                return -1;
        } else {
            return fail(c, "expected \"rule\", \"window\" or \"learned\"");
        }
    }
    return 0;
}

static int run_pass(struct pass *pass, const char *text, size_t body_len, char *err, size_t err_len)
{
    struct cursor c = {text, text + body_len, 1, err, err_len};
    int rc = parse_body(&c, pass);
    free(pass->times);
    pass->times = NULL;
    return rc;
}

int state_file_parse(struct limiter *limiter, const char *text, size_t len, uint64_t now_mono_us,
                     uint64_t now_wall_us, struct state_file_counts *counts, char *err,
                     size_t err_len)
{
    struct state_file_counts scratch;
    if (counts == NULL)
        counts = &scratch;
    memset(counts, 0, sizeof *counts);
    if (len > STATE_FILE_MAX_BYTES) {
        snprintf(err, err_len, "larger than %u MiB", STATE_FILE_MAX_BYTES >> 20);
        return -1;
    }
    /* the trailer: "end XXXXXXXX\n", the last 13 bytes, right after a newline */
    static const size_t trailer = 13;
    if (len < trailer + 1 || memcmp(text + len - trailer, "end ", 4) != 0 ||
        text[len - 1] != '\n' || text[len - trailer - 1] != '\n') {
        snprintf(err, err_len, "truncated: no \"end CRC32\" line at the end");
        return -1;
    }
    uint32_t want = 0;
    for (size_t i = len - trailer + 4; i < len - 1; i++) {
        int v = hex_value(text[i]);
        if (v < 0) {
            snprintf(err, err_len, "truncated: no \"end CRC32\" line at the end");
            return -1;
        }
        want = want << 4 | (uint32_t)v;
    }
    uint32_t got = state_file_crc32(text, len - trailer);
    if (got != want) {
        snprintf(err, err_len, "checksum mismatch (file says %08x, content gives %08x)", want, got);
        return -1;
    }
    struct pass check = {NULL, 0, now_mono_us, now_wall_us, counts, NULL};
    if (run_pass(&check, text, len - trailer, err, err_len) != 0)
        return -1;
    if (limiter == NULL)
        return 0;
    memset(counts, 0, sizeof *counts);
    struct pass apply = {limiter, 0, now_mono_us, now_wall_us, counts, NULL};
    return run_pass(&apply, text, len - trailer, err, err_len);
}

int state_file_load(struct limiter *limiter, const char *path, uint64_t now_mono_us,
                    uint64_t now_wall_us, struct state_file_counts *counts, char *err,
                    size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
        return 1;
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > STATE_FILE_MAX_BYTES) {
        close(fd);
        snprintf(err, err_len, "%s: not a regular file of at most %u MiB", path,
                 STATE_FILE_MAX_BYTES >> 20);
        return -1;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *text = malloc(size + 1);
    if (text == NULL) {
        close(fd);
        snprintf(err, err_len, "%s: out of memory", path);
        return -1;
    }
    while (got < size) {
        ssize_t n = read(fd, text + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    char why[200];
    int rc =
        state_file_parse(limiter, text, got, now_mono_us, now_wall_us, counts, why, sizeof why);
    if (rc != 0)
        snprintf(err, err_len, "%s: %s", path, why);
    free(text);
    return rc;
}
