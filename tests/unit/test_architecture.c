/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_architecture.c — the shape of src/ that the design relies on, read from the files
 * themselves: no include cycle between modules (a module is NAME.c with NAME.h), struct worker
 * defined only in worker.c, no source file over 800 lines, the README's architecture section
 * naming exactly the .c files there are, and no process-wide state in file statics (it belongs to
 * objects server.c owns). A failure names the files. */
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#define MAX_MODULES 128
#define MAX_LINES_PER_FILE 800

static char names[MAX_MODULES][64];
static size_t name_count;
static int edge[MAX_MODULES][MAX_MODULES]; /* edge[a][b]: module a includes b's header */

static const char *srcdir(void)
{
    const char *dir = getenv("RLPROXY_SRCDIR");
    return dir != NULL ? dir : ".";
}

static size_t module_index(const char *name, size_t len, int create)
{
    for (size_t i = 0; i < name_count; i++)
        if (strlen(names[i]) == len && strncmp(names[i], name, len) == 0)
            return i;
    if (!create || name_count == MAX_MODULES || len >= sizeof names[0])
        return MAX_MODULES;
    memcpy(names[name_count], name, len);
    names[name_count][len] = '\0';
    return name_count++;
}

/* src/'s files ending in .c or .h, one at a time, each open for reading in `f`:
 * src_files_open, then src_files_next until it returns 0 (it closes what it opened) */
struct src_files {
    DIR *dir;
    FILE *f;
    char file[256];
    size_t stem_len;
    int is_c;
};

static FILE *open_source(const char *file);

static void src_files_open(struct src_files *s)
{
    s->f = NULL;
    char dir_path[4096];
    snprintf(dir_path, sizeof dir_path, "%s/src", srcdir());
    s->dir = opendir(dir_path);
    ck_assert_msg(s->dir != NULL, "cannot open %s", dir_path);
}

static int src_files_next(struct src_files *s)
{
    if (s->f != NULL)
        fclose(s->f);
    s->f = NULL;
    struct dirent *e;
    while ((e = readdir(s->dir)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 3 || e->d_name[n - 2] != '.' ||
            (e->d_name[n - 1] != 'c' && e->d_name[n - 1] != 'h'))
            continue;
        snprintf(s->file, sizeof s->file, "%s", e->d_name);
        s->stem_len = n - 2;
        s->is_c = e->d_name[n - 1] == 'c';
        s->f = open_source(s->file);
        return 1;
    }
    closedir(s->dir);
    return 0;
}

static FILE *open_source(const char *file)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/src/%s", srcdir(), file);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    return f;
}

static void read_graph(void)
{
    struct src_files src;
    src_files_open(&src);
    while (src_files_next(&src)) {
        size_t from = module_index(src.file, src.stem_len, 1);
        char line[1024];
        while (fgets(line, sizeof line, src.f) != NULL) {
            if (strncmp(line, "#include \"", 10) != 0)
                continue;
            char *name = line + 10, *dot = strstr(name, ".h\"");
            if (dot == NULL)
                continue;
            size_t to = module_index(name, (size_t)(dot - name), 1);
            if (to != from && to < MAX_MODULES && from < MAX_MODULES)
                edge[from][to] = 1;
        }
    }
}

/* DFS; on a cycle, its path in `path` */
static int visit(size_t m, int *state, size_t *stack, size_t depth, char *path, size_t path_len)
{
    state[m] = 1;
    stack[depth] = m;
    for (size_t n = 0; n < name_count; n++) {
        if (!edge[m][n])
            continue;
        if (state[n] == 1) {
            size_t at = 0;
            for (size_t i = 0; i <= depth; i++)
                if (stack[i] == n)
                    at = i;
            path[0] = '\0';
            for (size_t i = at; i <= depth; i++)
                snprintf(path + strlen(path), path_len - strlen(path), "%s -> ", names[stack[i]]);
            snprintf(path + strlen(path), path_len - strlen(path), "%s", names[n]);
            return 1;
        }
        if (state[n] == 0 && visit(n, state, stack, depth + 1, path, path_len))
            return 1;
    }
    state[m] = 2;
    return 0;
}

START_TEST(test_no_include_cycle)
{
    read_graph();
    ck_assert_uint_gt(name_count, 10);
    int state[MAX_MODULES] = {0};
    size_t stack[MAX_MODULES];
    char path[4096];
    for (size_t m = 0; m < name_count; m++)
        if (state[m] == 0)
            ck_assert_msg(!visit(m, state, stack, 0, path, sizeof path),
                          "include cycle between modules: %s", path);
}
END_TEST

START_TEST(test_worker_is_opaque)
{
    struct src_files src;
    src_files_open(&src);
    while (src_files_next(&src)) {
        char line[1024];
        while (fgets(line, sizeof line, src.f) != NULL)
            ck_assert_msg(strncmp(line, "struct worker {", 15) != 0 ||
                              strcmp(src.file, "worker.c") == 0,
                          "%s defines struct worker: only worker.c may", src.file);
    }
}
END_TEST

START_TEST(test_file_sizes)
{
    struct src_files src;
    src_files_open(&src);
    while (src_files_next(&src)) {
        size_t lines = 0;
        int ch;
        while ((ch = fgetc(src.f)) != EOF)
            lines += ch == '\n';
        ck_assert_msg(lines <= (size_t)MAX_LINES_PER_FILE,
                      "src/%s has %zu lines (more than %zu: two modules?)", src.file, lines,
                      (size_t)MAX_LINES_PER_FILE);
    }
}
END_TEST

/* LICENSE is BSD-2-Clause, and each source file says so in its first line, where license scanners
 * (licensecheck, reuse, Debian's copyright tools) look. */
START_TEST(test_license_line)
{
    struct src_files src;
    src_files_open(&src);
    while (src_files_next(&src)) {
        char line[256] = "";
        ck_assert_msg(fgets(line, sizeof line, src.f) != NULL &&
                          strstr(line, "SPDX-License-Identifier: BSD-2-Clause") != NULL,
                      "src/%s does not start with its license line: %s", src.file, line);
    }
}
END_TEST

/* Process-wide state lives in objects server.c makes and hands down (process.h), not in file
 * statics: a file-scope variable that is not const is allowed only here, each for its reason.
 * (_Thread_local ones are per thread, not process-wide.) */
static const struct {
    const char *file, *name; /* name NULL: the whole file */
} allowed_static[] = {
    {"log.c", NULL}, /* every module logs without plumbing (nginx and redis keep it global too) */
    {"http.c", "settings"},           /* llhttp's callback table: filled once, read-only after */
    {"http_response.c", "via_token"}, /* the process's Via id: set once before any thread runs */
    /* one process-wide count for /metrics of requests an origin's pause held or refused */
    {"limiter.c", "pause_decisions"},
    {NULL, NULL},
};

static int static_allowed(const char *file, const char *name)
{
    for (size_t i = 0; allowed_static[i].file != NULL; i++)
        if (strcmp(allowed_static[i].file, file) == 0 &&
            (allowed_static[i].name == NULL || strcmp(allowed_static[i].name, name) == 0))
            return 1;
    return 0;
}

/* The name a declaration line declares: the last identifier before '=', ';', '[' or a '{' that
 * opens an initializer. "" when there is none. */
static void declared_name(const char *line, char *name, size_t len)
{
    size_t end = strcspn(line, "=;[{");
    while (end > 0 && !(isalnum((unsigned char)line[end - 1]) || line[end - 1] == '_'))
        end--;
    size_t start = end;
    while (start > 0 && (isalnum((unsigned char)line[start - 1]) || line[start - 1] == '_'))
        start--;
    snprintf(name, len, "%.*s", (int)(end - start), line + start);
}

/* A file-scope "static" line that declares a variable, not a function or a constant. */
static int is_static_variable(const char *line)
{
    if (strncmp(line, "static ", 7) != 0 || strncmp(line, "static const ", 13) == 0 ||
        strncmp(line, "static inline ", 14) == 0 || strstr(line, "_Thread_local") != NULL)
        return 0;
    /* a '(' before any '=' is a function (or its declaration); _Atomic(T) is a type */
    const char *paren = strchr(line, '('), *equals = strchr(line, '=');
    while (paren != NULL && paren >= line + 7 && strncmp(paren - 7, "_Atomic", 7) == 0)
        paren = strchr(paren + 1, '(');
    return paren == NULL || (equals != NULL && equals < paren);
}

START_TEST(test_no_process_state_in_statics)
{
    struct src_files src;
    src_files_open(&src);
    while (src_files_next(&src)) {
        if (!src.is_c)
            continue;
        char line[1024], name[128];
        while (fgets(line, sizeof line, src.f) != NULL) {
            if (!is_static_variable(line))
                continue;
            size_t n = strlen(line);
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == ' '))
                line[--n] = '\0';
            if (n > 0 && line[n - 1] == '{' && strchr(line, '=') == NULL) {
                /* "static struct {": the name follows the closing brace */
                while (fgets(line, sizeof line, src.f) != NULL && line[0] != '}')
                    continue;
            }
            declared_name(line[0] == '}' ? line + 1 : line, name, sizeof name);
            ck_assert_msg(static_allowed(src.file, name),
                          "src/%s keeps process-wide state in a file static (%s): make it part "
                          "of an object server.c owns (process.h)",
                          src.file, name);
        }
    }
}
END_TEST

/* The README's "## Architecture" section, as one string. */
static char *architecture_section(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/README.md", srcdir());
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t cap = 1 << 16, len = 0;
    char *text = calloc(1, cap), line[2048];
    int inside = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "## ", 3) == 0)
            inside = strncmp(line, "## Architecture", 15) == 0;
        if (inside && len + strlen(line) + 1 < cap) {
            memcpy(text + len, line, strlen(line) + 1);
            len += strlen(line);
        }
    }
    fclose(f);
    ck_assert_msg(len > 0, "README.md has no \"## Architecture\" section");
    return text;
}

START_TEST(test_readme_lists_every_file)
{
    char *section = architecture_section();
    char quoted[300];
    struct src_files src;
    src_files_open(&src);
    while (src_files_next(&src)) {
        if (!src.is_c)
            continue;
        snprintf(quoted, sizeof quoted, "`%s`", src.file);
        ck_assert_msg(strstr(section, quoted) != NULL,
                      "README.md's architecture section does not name %s", quoted);
    }
    /* and every `NAME.c` it names exists */
    for (const char *p = strchr(section, '`'); p != NULL; p = strchr(p + 1, '`')) {
        const char *end = strchr(p + 1, '`');
        if (end == NULL)
            break;
        size_t n = (size_t)(end - p - 1);
        if (n > 2 && n < 200 && p[n - 1] == '.' && p[n] == 'c' && memchr(p + 1, ' ', n) == NULL) {
            char path[4096];
            snprintf(path, sizeof path, "%s/src/%.*s", srcdir(), (int)n, p + 1);
            FILE *f = fopen(path, "r");
            ck_assert_msg(f != NULL, "README.md names `%.*s`, which src/ does not have", (int)n,
                          p + 1);
            fclose(f);
        }
        p = end;
    }
    free(section);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("architecture");
    unit_add_tcase(s, tcase_create("src"),
                   UNIT_TESTS(test_no_include_cycle, test_worker_is_opaque, test_file_sizes,
                              test_readme_lists_every_file, test_no_process_state_in_statics,
                              test_license_line));
    return s;
}

int main(void) { return unit_run(suite()); }
