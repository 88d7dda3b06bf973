/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* cases.c — reads, expands and plays the request cases of tests/cases/ (format:
 * tests/cases/README). Line ends in the request section are layout, not bytes, so that a bare LF, a
 * bare CR or a missing CRLF is always written out and never depends on an editor; anything that is
 * not printable ASCII must be escaped for the same reason. */
#include "cases.h"

#include "harness.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define CASE_READ_TIMEOUT_MS 5000
#define CASE_CLOSE_TIMEOUT_MS 2000
/* bounds on what one directive may produce: a typo must not exhaust memory */
#define CASE_MAX_REPEAT 10000000UL
#define CASE_MAX_RANDOM (16UL * 1024 * 1024)

/* ---- listing --------------------------------------------------------------------------------- */

static void case_list_free(char **files, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(files[i]);
    free(files);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t case_list(const char *dir, size_t min_count, char ***files)
{
    *files = NULL;
    const char *src = getenv("RLPROXY_SRCDIR");
    if (src == NULL) {
        fprintf(stderr,
                "case_list: RLPROXY_SRCDIR is not set (run the suite through make check)\n");
        return 0;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/cases/%s", src, dir);
    DIR *d = opendir(path);
    if (d == NULL) {
        perror(path);
        return 0;
    }
    size_t count = 0, cap = 0;
    char **list = NULL;
    for (struct dirent *entry; (entry = readdir(d)) != NULL;) {
        size_t n = strlen(entry->d_name);
        if (n < 5 || strcmp(entry->d_name + n - 4, ".txt") != 0)
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            list = realloc(list, cap * sizeof *list);
            if (list == NULL)
                abort();
        }
        if (asprintf(&list[count++], "tests/cases/%s/%s", dir, entry->d_name) < 0)
            abort();
    }
    closedir(d);
    if (count < min_count) {
        fprintf(stderr, "case_list: %zu *.txt cases in %s, want %zu or more\n", count, path,
                min_count);
        case_list_free(list, count);
        return 0;
    }
    qsort(list, count, sizeof *list, compare_names);
    *files = list;
    return count;
}

int case_driver_main(const char *dir, size_t min_count, struct case_dir *cases, TCase *each,
                     const TTest *each_test, TCase *all, const TTest *all_test)
{
    cases->count = case_list(dir, min_count, &cases->files);
    if (cases->count == 0)
        return EXIT_FAILURE;
    Suite *s = suite_create(dir);
    tcase_add_loop_test(each, each_test, 0, (int)cases->count);
    suite_add_tcase(s, each);
    tcase_add_test(all, all_test);
    suite_add_tcase(s, all);
    return harness_run_suite(s);
}

/* ---- parsing the header block ---------------------------------------------------------------- */

static void case_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static void case_fail(const char *file, int line, const char *fmt, ...)
{
    char reason[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    ck_abort_msg("%s:%d: malformed case file: %s", file, line, reason);
    abort(); /* not reached: ck_abort_msg ends the test */
}

/* "400", "505 400" or "none" */
static void parse_status(const struct request_case *c, int line, const char *value, int *status,
                         int *alt)
{
    *status = *alt = 0;
    if (strcmp(value, "none") == 0)
        return;
    char *end;
    long first = strtol(value, &end, 10);
    long second = 0;
    if (*end == ' ')
        second = strtol(end + 1, &end, 10);
    if (*end != '\0' || first < 100 || first > 599 ||
        (second != 0 && (second < 100 || second > 599)))
        case_fail(c->file, line, "expect-status \"%s\": one status, two, or \"none\"", value);
    *status = (int)first;
    *alt = (int)second;
}

static void parse_key(struct request_case *c, int line, const char *key, const char *value,
                      int *seen_status)
{
    if (strcmp(key, "name") == 0) {
        if (c->name != NULL)
            case_fail(c->file, line, "a second name");
        c->name = strdup(value);
    } else if (strcmp(key, "why") == 0) {
        /* several why: lines make one paragraph */
        char *joined = NULL;
        if (asprintf(&joined, "%s%s%s", c->why ? c->why : "", c->why ? " " : "", value) < 0)
            abort();
        free(c->why);
        c->why = joined;
    } else if (strcmp(key, "expect-status") == 0) {
        if (*seen_status)
            case_fail(c->file, line, "a second expect-status");
        parse_status(c, line, value, &c->expect_status, &c->alt_status);
        *seen_status = 1;
    } else if (strcmp(key, "first-status") == 0) {
        int alt;
        parse_status(c, line, value, &c->first_status, &alt);
        if (c->first_status == 0 || alt != 0)
            case_fail(c->file, line, "first-status takes one status");
    } else if (strcmp(key, "send") == 0) {
        if (strcmp(value, "all") == 0)
            c->send = CASE_SEND_ALL;
        else if (strcmp(value, "shut-wr") == 0)
            c->send = CASE_SEND_SHUT_WR;
        else if (strcmp(value, "close") == 0)
            c->send = CASE_SEND_CLOSE;
        else
            case_fail(c->file, line, "send \"%s\": all, shut-wr or close", value);
    } else {
        case_fail(c->file, line,
                  "unknown key \"%s\" (name, expect-status, why, send, first-status)", key);
    }
}

void case_load(const char *file, struct request_case *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->file, sizeof c->file, "%s", file);
    char path[1024];
    const char *src = getenv("RLPROXY_SRCDIR");
    snprintf(path, sizeof path, "%s/%s", src ? src : ".", file);
    size_t len = 0;
    char *text = read_file(path, &len);
    if (text == NULL)
        case_fail(file, 0, "cannot read %s", path);
    if (strlen(text) != len)
        case_fail(file, 0, "a NUL byte in the file: write it as \\0");
    if (strchr(text, '\r') != NULL)
        case_fail(file, 0, "a CR byte in the file (CRLF line ends?): the request writes CR as \\r");
    int line = 0, seen_status = 0;
    char *p = text;
    while (c->request == NULL) {
        line++;
        if (*p == '\0')
            case_fail(file, line, "no \"request:\" line");
        char *eol = strchr(p, '\n');
        if (eol == NULL)
            case_fail(file, line, "no \"request:\" line (the file ends without a line end)");
        *eol = '\0';
        if (strcmp(p, "request:") == 0) {
            c->request = strdup(eol + 1);
            c->request_line = line + 1;
        } else if (*p != '\0' && *p != '#') {
            char *colon = strchr(p, ':');
            if (colon == NULL || colon == p)
                case_fail(file, line, "\"%s\": expected \"key: value\"", p);
            *colon = '\0';
            char *value = colon + 1;
            value += strspn(value, " ");
            if (*value == '\0')
                case_fail(file, line, "key \"%s\" without a value", p);
            parse_key(c, line, p, value, &seen_status);
        }
        p = eol + 1;
    }
    free(text);
    if (c->name == NULL)
        case_fail(file, 1, "no name");
    if (!seen_status)
        case_fail(file, 1, "no expect-status");
    if (c->why == NULL)
        case_fail(file, 1, "no why: say what rule the case checks");
    if (c->request[strspn(c->request, "\n")] == '\0')
        case_fail(file, c->request_line, "an empty request");
    if (c->first_status != 0 && c->send != CASE_SEND_ALL)
        case_fail(file, 1, "first-status needs send: all");
}

void case_free(struct request_case *c)
{
    free(c->name);
    free(c->why);
    free(c->request);
    memset(c, 0, sizeof *c);
}

/* ---- expanding the request ------------------------------------------------------------------- */

struct expander {
    const struct request_case *c;
    int origin_port;
    int line;
    struct case_bytes *out;
    size_t cap;
    size_t length_at; /* where {length} goes; SIZE_MAX: nowhere */
    size_t body_at;   /* where {body} marked the body's start; SIZE_MAX: not marked */
};

static void out_add(struct expander *e, const void *data, size_t len)
{
    if (e->out->len + len > e->cap) {
        while (e->out->len + len > e->cap)
            e->cap = e->cap ? e->cap * 2 : 1024;
        e->out->data = realloc(e->out->data, e->cap);
        if (e->out->data == NULL)
            abort();
    }
    memcpy(e->out->data + e->out->len, data, len);
    e->out->len += len;
}

static void out_add_byte(struct expander *e, int byte)
{
    unsigned char b = (unsigned char)byte;
    out_add(e, &b, 1);
}

static void out_add_number(struct expander *e, unsigned long n)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lu", n);
    out_add(e, digits, (size_t)len);
}

static int hex_value(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* p is just after the backslash; returns what follows the escape */
static const char *expand_escape(struct expander *e, const char *p)
{
    static const char letters[] = "rntv0\\{}";
    static const char bytes[] = {'\r', '\n', '\t', '\v', '\0', '\\', '{', '}'};
    const char *letter = *p != '\0' ? strchr(letters, *p) : NULL;
    if (letter != NULL) {
        out_add_byte(e, bytes[letter - letters]);
        return p + 1;
    }
    if (*p == 'x') {
        int high = hex_value(p[1]), low = high < 0 ? -1 : hex_value(p[2]);
        if (high < 0 || low < 0)
            case_fail(e->c->file, e->line, "\\x takes two hex digits");
        out_add_byte(e, high * 16 + low);
        return p + 3;
    }
    if (*p == '\0' || *p == '\n')
        case_fail(e->c->file, e->line, "a backslash at the end of a line");
    case_fail(e->c->file, e->line, "unknown escape \\%c (\\r \\n \\t \\v \\0 \\xHH \\\\ \\{ \\})",
              *p);
}

/* The count of {repeat N ...} or {random N}: digits, then end (a space or "}") */
static unsigned long directive_count(struct expander *e, const char **p, char end,
                                     unsigned long max)
{
    char *stop;
    unsigned long n = strtoul(*p, &stop, 10);
    if (stop == *p || *stop != end || n == 0 || n > max)
        case_fail(e->c->file, e->line, "a count from 1 to %lu, then \"%c\"", max, end);
    *p = stop + 1;
    return n;
}

/* The bytes {random N} stands for: xorshift64 from a fixed seed, so every run sends the same */
static void expand_random(struct expander *e, unsigned long n)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (unsigned long i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out_add_byte(e, (int)(x >> 24));
    }
}

static const char *expand_text(struct expander *e, const char *p, long index);

/* p is just after "{"; returns what follows the directive's "}" */
static const char *expand_directive(struct expander *e, const char *p, long index)
{
    size_t word = strcspn(p, " }\n");
    if (strncmp(p, "port}", 5) == 0) {
        out_add_number(e, (unsigned long)e->origin_port);
        return p + 5;
    }
    if (strncmp(p, "i}", 2) == 0) {
        if (index < 0)
            case_fail(e->c->file, e->line, "{i} outside {repeat}");
        out_add_number(e, (unsigned long)index);
        return p + 2;
    }
    if (strncmp(p, "length}", 7) == 0 || strncmp(p, "body}", 5) == 0) {
        size_t *at = p[0] == 'l' ? &e->length_at : &e->body_at;
        if (index >= 0 || *at != SIZE_MAX)
            case_fail(e->c->file, e->line, "{%.*s} once, outside {repeat}", (int)word, p);
        *at = e->out->len;
        return p + word + 1;
    }
    if (strncmp(p, "random ", 7) == 0) {
        p += 7;
        expand_random(e, directive_count(e, &p, '}', CASE_MAX_RANDOM));
        return p;
    }
    if (strncmp(p, "repeat ", 7) == 0) {
        p += 7;
        unsigned long n = directive_count(e, &p, ' ', CASE_MAX_REPEAT);
        int line = e->line;
        const char *end = p;
        for (unsigned long i = 0; i < n; i++) {
            e->line = line;
            end = expand_text(e, p, (long)i);
        }
        return end + 1;
    }
    case_fail(e->c->file, e->line,
              "unknown directive {%.*s (port, i, length, body, repeat N TEXT, random N)", (int)word,
              p);
}

/* Expands until the end of the text (index < 0) or the "}" closing a {repeat} (index >= 0, which
 * {i} stands for); returns where it stopped */
static const char *expand_text(struct expander *e, const char *p, long index)
{
    for (;;) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '\0') {
            if (index >= 0)
                case_fail(e->c->file, e->line, "{repeat} not closed");
            return p;
        }
        if (ch == '}') {
            if (index < 0)
                case_fail(e->c->file, e->line, "a \"}\" that closes nothing (the byte is \\})");
            return p;
        }
        if (ch == '\n') {
            e->line++;
            p++;
        } else if (ch == '\\') {
            p = expand_escape(e, p + 1);
        } else if (ch == '{') {
            p = expand_directive(e, p + 1, index);
        } else if (ch < 0x20 || ch > 0x7e) {
            case_fail(e->c->file, e->line, "byte 0x%02x written as itself: write \\x%02x", ch, ch);
        } else {
            out_add_byte(e, ch);
            p++;
        }
    }
}

void case_expand(const struct request_case *c, int origin_port, struct case_bytes *out)
{
    memset(out, 0, sizeof *out);
    struct expander e = {.c = c,
                         .origin_port = origin_port,
                         .line = c->request_line,
                         .out = out,
                         .length_at = SIZE_MAX,
                         .body_at = SIZE_MAX};
    expand_text(&e, c->request, -1);
    if (e.length_at == SIZE_MAX)
        return;
    if (e.body_at == SIZE_MAX || e.body_at < e.length_at)
        case_fail(c->file, c->request_line, "{length} needs a {body} after it");
    /* {length} counts the bytes after {body}: insert the digits now that they are known */
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%zu", out->len - e.body_at);
    out_add(&e, digits, (size_t)n); /* grows the buffer; the bytes are moved into place below */
    unsigned char *at = out->data + e.length_at;
    memmove(at + n, at, out->len - (size_t)n - e.length_at);
    memcpy(at, digits, (size_t)n);
}

void case_bytes_free(struct case_bytes *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

/* ---- playing a case -------------------------------------------------------------------------- */

/* After the send: what the proxy answered, against what the file expects */
static void check_answer(const struct request_case *c, struct raw *conn, char *why, size_t cap)
{
    struct http_response r;
    if (c->first_status != 0) {
        int rc = raw_read_response(conn, &r, 0, CASE_READ_TIMEOUT_MS);
        if (rc != RAW_OK || r.status != c->first_status)
            snprintf(why, cap, "the valid pipelined request got %s / %d, want %d",
                     raw_result_name(rc), r.status, c->first_status);
        http_response_free(&r);
        if (why[0] != '\0')
            return;
    }
    if (c->expect_status == 0) {
        size_t pending = raw_pending(conn, CASE_CLOSE_TIMEOUT_MS);
        if (pending > 0)
            snprintf(why, cap, "expected no response, got: %.*s",
                     (int)(pending < 120 ? pending : 120), conn->buf);
        return;
    }
    int rc = raw_read_response(conn, &r, 0, CASE_READ_TIMEOUT_MS);
    if (rc != RAW_OK)
        snprintf(why, cap, "expected %d, got no response: %s", c->expect_status,
                 raw_result_name(rc));
    else if (r.status != c->expect_status && (c->alt_status == 0 || r.status != c->alt_status))
        snprintf(why, cap, "expected %d%s, got %d %s: %.200s", c->expect_status,
                 c->alt_status ? " (or the alternative)" : "", r.status, r.reason, r.body);
    http_response_free(&r);
}

const char *case_play(const struct request_case *c, int proxy_port, int origin_port)
{
    static char why[1200];
    why[0] = '\0';
    struct case_bytes bytes;
    case_expand(c, origin_port, &bytes);
    struct raw *conn = raw_connect(proxy_port);
    /* the proxy may answer and close before it has read everything: a failed send is fine */
    (void)raw_try_send(conn, bytes.data, bytes.len);
    case_bytes_free(&bytes);
    if (c->send == CASE_SEND_CLOSE) {
        raw_close(conn);
        return why;
    }
    if (c->send == CASE_SEND_SHUT_WR)
        shutdown(conn->fd, SHUT_WR);
    check_answer(c, conn, why, sizeof why);
    if (why[0] == '\0' && !raw_wait_closed(conn, CASE_CLOSE_TIMEOUT_MS))
        snprintf(why, sizeof why, "the proxy did not close the connection within %d ms",
                 CASE_CLOSE_TIMEOUT_MS);
    raw_close(conn);
    return why;
}
