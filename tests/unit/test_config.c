/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_config.c — the configuration module: the declaration table, defaults, every value type,
 * every error form with its exact FILE:LINE:COLUMN, files on disk, reference counting, and the
 * drift check that keeps man/rlproxy.yaml.5 and conf/rlproxy.yaml in step with the table. */

#include "config.h"
#include "config_dump.h"
#include "config_value.h"
#include "config_warn.h"
#include "shared.h"

#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "unit.h"

#define MS_PER_S UINT64_C(1000)

static struct config *load_ok(const char *yaml)
{
    char err[512] = "";
    struct config *cfg = NULL;
    int rc = config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, err, sizeof err);
    ck_assert_msg(rc == 0, "unexpected error for <<%s>>: %s", yaml, err);
    ck_assert_ptr_nonnull(cfg);
    return cfg;
}

/* The error text for yaml, which must be refused (and must leave *out NULL). */
static const char *load_err(const char *yaml)
{
    static char err[1024];
    struct config *cfg = (struct config *)&err; /* poison: must come back NULL */
    int rc = config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, err, sizeof err);
    ck_assert_msg(rc == -1, "expected an error for <<%s>>", yaml);
    ck_assert_ptr_null(cfg);
    return err;
}

/* ---- the table ---- */

START_TEST(test_table_is_consistent)
{
    size_t n;
    const struct config_key *keys = config_keys(&n);
    ck_assert_uint_ge(n, 17);
    for (size_t i = 0; i < n; i++) {
        const struct config_key *k = &keys[i];
        ck_assert_ptr_eq(config_key_find(k->name), k);
        ck_assert_msg(k->doc != NULL && k->doc[0] != '\0', "%s has no doc", k->name);
        /* One sentence, no final period: the man page adds it; mandoc wants one per line. */
        ck_assert_msg(strstr(k->doc, ". ") == NULL && k->doc[strlen(k->doc) - 1] != '.', "%s doc",
                      k->name);
        ck_assert_msg(k->min <= k->max || k->type == CONFIG_STRING || k->type == CONFIG_ENUM ||
                          k->type == CONFIG_LOG_LEVEL || k->type == CONFIG_BOOL,
                      "%s bounds", k->name);
        int is_list = k->type == CONFIG_LISTEN_LIST || k->type == CONFIG_CIDR_LIST ||
                      k->type == CONFIG_PORT_LIST || k->type == CONFIG_HOST_PATTERN_LIST ||
                      k->type == CONFIG_RATE_RULES || k->type == CONFIG_RETRY_ON_LIST ||
                      k->type == CONFIG_METHOD_LIST || k->type == CONFIG_USER_MAP ||
                      k->type == CONFIG_HOST_NAME_LIST;
        ck_assert_msg(!k->required && !k->single_ok, "%s: rule-only flags", k->name);
        ck_assert_msg(is_list == (k->count_offset != 0), "%s count_offset", k->name);
        ck_assert_msg(is_list == (config_value_elem_size(k) != 0), "%s elem size", k->name);
        if (k->type == CONFIG_ENUM || k->type == CONFIG_LOG_LEVEL)
            ck_assert_ptr_nonnull(k->choices);
        for (size_t j = 0; j < n; j++) {
            size_t len = strlen(k->name);
            if (i == j)
                continue;
            ck_assert_str_ne(k->name, keys[j].name);
            /* A key cannot also be a section ("log.access" and "log.access.x"). */
            ck_assert_msg(!(strncmp(keys[j].name, k->name, len) == 0 && keys[j].name[len] == '.'),
                          "%s is also a section", k->name);
        }
    }
    ck_assert_ptr_null(config_key_find("timeouts"));
    ck_assert_ptr_null(config_key_find("nope"));
}
END_TEST

START_TEST(test_log_level_words_match_log_h)
{
    const struct config_key *k = config_key_find("log.level");
    ck_assert_ptr_nonnull(k);
    for (int i = 0; i <= LOG_LEVEL_DEBUG; i++) {
        enum log_level level;
        ck_assert_str_eq(k->choices[i], log_level_name((enum log_level)i));
        ck_assert_int_eq(log_level_parse(k->choices[i], &level), 0);
        ck_assert_int_eq(level, i);
    }
    ck_assert_ptr_null(k->choices[LOG_LEVEL_DEBUG + 1]);
}
END_TEST

START_TEST(test_public_key_names)
{
    /* The issue fixes these names; renaming one breaks every operator's file. */
    static const char *const names[] = {
        "listen",
        "workers",
        "shutdown_timeout",
        "access.allow",
        "connect.allowed_ports",
        "timeouts.client_header",
        "timeouts.client_idle",
        "timeouts.client_body",
        "timeouts.upstream_connect",
        "timeouts.upstream_response",
        "timeouts.tunnel_idle",
        "http.max_request_line",
        "http.max_header_size",
        "backpressure.buffer",
        "log.level",
        "log.access",
        "log.access_format",
        "rate_limits",
        "rate_limits_max_keys",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        ck_assert_msg(config_key_find(names[i]) != NULL, "%s missing", names[i]);
    ck_assert_int_eq(config_key_find("workers")->reloadable, 0);
    ck_assert_int_eq(config_key_find("listen")->reloadable, 1);
    ck_assert_int_eq(config_key_find("rate_limits")->reloadable, 1);
    ck_assert_int_eq(config_key_find("rate_limits_max_keys")->reloadable, 1);
}
END_TEST

/* ---- defaults ---- */

static long expected_workers(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : cpus > 256 ? 256 : cpus;
}

static void assert_defaults(const struct config *c)
{
    ck_assert_uint_eq(c->listen_count, 1);
    ck_assert_str_eq(c->listen[0].text, "127.0.0.1:3128");
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&c->listen[0].addr;
    ck_assert_int_eq(sin->sin_family, AF_INET);
    ck_assert_uint_eq(ntohs(sin->sin_port), 3128);
    ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    ck_assert_uint_eq(c->listen[0].addr_len, sizeof(struct sockaddr_in));
    ck_assert_uint_eq(c->workers, (unsigned)expected_workers());
    ck_assert_uint_eq(c->shutdown_timeout_ms, 30 * MS_PER_S);
    ck_assert_uint_eq(c->access_allow_count, 2);
    ck_assert_int_eq(c->access_allow[0].family, AF_INET);
    ck_assert_uint_eq(c->access_allow[0].prefix, 8);
    ck_assert_uint_eq(c->access_allow[0].addr[0], 127);
    ck_assert_int_eq(c->access_allow[1].family, AF_INET6);
    ck_assert_uint_eq(c->access_allow[1].prefix, 128);
    ck_assert_uint_eq(c->access_allow[1].addr[15], 1);
    ck_assert_uint_eq(c->connect_allowed_ports_count, 1);
    ck_assert_uint_eq(c->connect_allowed_ports[0], 443);
    ck_assert_uint_eq(c->client_header_timeout_ms, 10 * MS_PER_S);
    ck_assert_uint_eq(c->client_idle_timeout_ms, 60 * MS_PER_S);
    ck_assert_uint_eq(c->client_body_timeout_ms, 30 * MS_PER_S);
    ck_assert_uint_eq(c->upstream_connect_timeout_ms, 10 * MS_PER_S);
    ck_assert_uint_eq(c->upstream_response_timeout_ms, 60 * MS_PER_S);
    ck_assert_uint_eq(c->tunnel_idle_timeout_ms, 300 * MS_PER_S);
    ck_assert_uint_eq(c->max_request_line, 8 * 1024);
    ck_assert_uint_eq(c->max_header_size, 32 * 1024);
    ck_assert_uint_eq(c->buffer_size, 256 * 1024);
    ck_assert_int_eq(c->log_level, LOG_LEVEL_INFO);
    ck_assert_str_eq(c->access_log, "stderr");
    ck_assert_int_eq(c->access_format, ACCESS_FORMAT_TEXT);
    ck_assert_uint_eq(c->rate_limits_count, 0);
    ck_assert_ptr_null(c->rate_limits);
    ck_assert_uint_eq(c->rate_limits_max_keys, 1000000);
}

START_TEST(test_default_config)
{
    struct config *c = config_default();
    ck_assert_ptr_nonnull(c);
    assert_defaults(c);
    ck_assert_str_eq(c->source, "(embedded default)");
    config_unref(c);
}
END_TEST

static const char *const empty_inputs[] = {
    "",    "\n",     "# only a comment\n", "---\n", "--- ~\n", "---\n...\n",
    "~\n", "null\n", "\xef\xbb\xbf",
};

START_TEST(test_empty_means_defaults)
{
    struct config *c = load_ok(empty_inputs[_i]);
    assert_defaults(c);
    ck_assert_str_eq(c->source, "t.yaml");
    config_unref(c);
}
END_TEST

START_TEST(test_one_key_keeps_other_defaults)
{
    struct config *c = load_ok("timeouts:\n  client_idle: 5s\n");
    ck_assert_uint_eq(c->client_idle_timeout_ms, 5000);
    ck_assert_uint_eq(c->client_header_timeout_ms, 10000);
    ck_assert_str_eq(c->listen[0].text, "127.0.0.1:3128");
    config_unref(c);
    /* A section with every key commented out is an empty section. */
    c = load_ok("timeouts:\nlog:\n  # level: debug\n");
    assert_defaults(c);
    config_unref(c);
}
END_TEST

/* ---- value types ---- */

struct number_case {
    const char *text;
    int ok;
    uint64_t value;
};

static const struct number_case durations[] = {
    {"0", 1, 0},
    {"0s", 1, 0},
    {"0ms", 1, 0},
    {"250ms", 1, 250},
    {"10s", 1, 10000},
    {"5m", 1, 300000},
    {"1h", 1, 3600000},
    {"1d", 1, 86400000},
    {"18446744073709551615ms", 1, UINT64_MAX},
    {"18446744073709551616ms", 0, 0},                        /* 2^64 */
    {"213503982334d", 1, UINT64_C(213503982334) * 86400000}, /* floor(2^64 / 86400000) days */
    {"213503982335d", 0, 0},                                 /* ms overflow */
    {"10", 0, 0},                                            /* a unit is needed */
    {"1.5s", 0, 0},
    {"-1s", 0, 0},
    {"+1s", 0, 0},
    {" 1s", 0, 0},
    {"1s ", 0, 0},
    {"1 s", 0, 0},
    {"1S", 0, 0},
    {"1sec", 0, 0},
    {"1w", 0, 0},
    {"s", 0, 0},
    {"", 0, 0},
    {"1h30m", 0, 0},
    {"0x10s", 0, 0},
};

START_TEST(test_parse_duration)
{
    const struct number_case *t = &durations[_i];
    uint64_t v = 12345;
    int rc = config_parse_duration_ms(t->text, &v);
    ck_assert_msg(rc == (t->ok ? 0 : -1), "\"%s\": rc %d", t->text, rc);
    if (t->ok)
        ck_assert_uint_eq(v, t->value);
    else
        ck_assert_uint_eq(v, 12345); /* untouched on error */
}
END_TEST

static const struct number_case sizes[] = {
    {"0", 1, 0},
    {"512", 1, 512},
    {"512B", 1, 512},
    {"64KiB", 1, 65536},
    {"1MiB", 1, 1048576},
    {"1GiB", 1, 1073741824},
    {"2KB", 1, 2000},
    {"2kB", 1, 2000},
    {"3MB", 1, 3000000},
    {"4GB", 1, 4000000000},
    {"18446744073709551615", 1, UINT64_MAX},
    {"18446744073709551616", 0, 0},
    {"17179869184GiB", 0, 0}, /* 2^34 GiB = 2^64 bytes */
    {"17179869183GiB", 1, UINT64_C(17179869183) << 30},
    {"1kib", 0, 0},
    {"1K", 0, 0},
    {"1 KiB", 0, 0},
    {"1.5MiB", 0, 0},
    {"-1", 0, 0},
    {"KiB", 0, 0},
    {"", 0, 0},
    {"1TiB", 0, 0},
};

START_TEST(test_parse_size)
{
    const struct number_case *t = &sizes[_i];
    uint64_t v = 12345;
    int rc = config_parse_size(t->text, &v);
    ck_assert_msg(rc == (t->ok ? 0 : -1), "\"%s\": rc %d", t->text, rc);
    ck_assert_uint_eq(v, t->ok ? t->value : 12345);
}
END_TEST

START_TEST(test_every_type_from_yaml)
{
    struct config *c =
        load_ok("workers: 3\n"
                "shutdown_timeout: 0\n"
                "access:\n  allow: [10.0.0.0/8, 192.168.1.7, \"2001:db8::/32\"]\n"
                "connect:\n  allowed_ports:\n    - 443\n    - 8443\n    - 65535\n    - 1\n"
                "timeouts:\n  client_header: 100ms\n  tunnel_idle: 1d\n"
                "http:\n  max_request_line: 256\n  max_header_size: 1MiB\n"
                "backpressure: {buffer: 20KB}\n"
                "log:\n  level: debug\n  access: /var/log/rlproxy/access.log\n"
                "  access_format: json\n");
    ck_assert_uint_eq(c->workers, 3);
    ck_assert_uint_eq(c->shutdown_timeout_ms, 0);
    ck_assert_uint_eq(c->access_allow_count, 3);
    ck_assert_uint_eq(c->access_allow[1].prefix, 32);
    ck_assert_uint_eq(c->access_allow[1].addr[3], 7);
    ck_assert_int_eq(c->access_allow[2].family, AF_INET6);
    ck_assert_uint_eq(c->access_allow[2].prefix, 32);
    ck_assert_uint_eq(c->connect_allowed_ports_count, 4);
    ck_assert_uint_eq(c->connect_allowed_ports[1], 8443);
    ck_assert_uint_eq(c->connect_allowed_ports[2], 65535);
    ck_assert_uint_eq(c->connect_allowed_ports[3], 1);
    ck_assert_uint_eq(c->client_header_timeout_ms, 100);
    ck_assert_uint_eq(c->tunnel_idle_timeout_ms, 86400000);
    ck_assert_uint_eq(c->max_request_line, 256);
    ck_assert_uint_eq(c->max_header_size, 1048576);
    ck_assert_uint_eq(c->buffer_size, 20000);
    ck_assert_int_eq(c->log_level, LOG_LEVEL_DEBUG);
    ck_assert_str_eq(c->access_log, "/var/log/rlproxy/access.log");
    ck_assert_int_eq(c->access_format, ACCESS_FORMAT_JSON);
    config_unref(c);
}
END_TEST

START_TEST(test_empty_lists_where_allowed)
{
    struct config *c = load_ok("access: {allow: []}\nconnect: {allowed_ports: []}\n");
    ck_assert_uint_eq(c->access_allow_count, 0);
    ck_assert_ptr_null(c->access_allow);
    ck_assert_uint_eq(c->connect_allowed_ports_count, 0);
    config_unref(c);
}
END_TEST

START_TEST(test_workers_auto)
{
    struct config *c = load_ok("workers: auto\n");
    ck_assert_uint_eq(c->workers, (unsigned)expected_workers());
    config_unref(c);
    c = load_ok("workers: 256\n");
    ck_assert_uint_eq(c->workers, 256);
    config_unref(c);
    c = load_ok("workers: \"1\"\n"); /* quoting does not change a value's meaning */
    ck_assert_uint_eq(c->workers, 1);
    config_unref(c);
}
END_TEST

struct listen_case {
    const char *text, *normalised;
    int family;
    unsigned port;
};

static const struct listen_case listens[] = {
    {"127.0.0.1:3128", "127.0.0.1:3128", AF_INET, 3128},
    {"10.1.2.3:0", "10.1.2.3:0", AF_INET, 0},
    {"*:3128", "0.0.0.0:3128", AF_INET, 3128},
    {"localhost:8080", "127.0.0.1:8080", AF_INET, 8080},
    {"[::1]:3128", "[::1]:3128", AF_INET6, 3128},
    {"[::]:3128", "[::]:3128", AF_INET6, 3128},
    {"[0:0:0:0:0:0:0:1]:65535", "[::1]:65535", AF_INET6, 65535},
    {"[2001:DB8::1]:80", "[2001:db8::1]:80", AF_INET6, 80},
    {"[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.1]:80", AF_INET6, 80},
};

START_TEST(test_listen_forms)
{
    const struct listen_case *t = &listens[_i];
    char yaml[128];
    snprintf(yaml, sizeof yaml, "listen: [\"%s\"]\n", t->text);
    struct config *c = load_ok(yaml);
    ck_assert_uint_eq(c->listen_count, 1);
    ck_assert_str_eq(c->listen[0].text, t->normalised);
    ck_assert_int_eq(c->listen[0].addr.ss_family, t->family);
    if (t->family == AF_INET) {
        ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&c->listen[0].addr)->sin_port), t->port);
        ck_assert_uint_eq(c->listen[0].addr_len, sizeof(struct sockaddr_in));
    } else {
        ck_assert_uint_eq(ntohs(((struct sockaddr_in6 *)&c->listen[0].addr)->sin6_port), t->port);
        ck_assert_uint_eq(c->listen[0].addr_len, sizeof(struct sockaddr_in6));
    }
    config_unref(c);
}
END_TEST

START_TEST(test_listen_port_zero_may_repeat)
{
    struct config *c = load_ok("listen: [\"127.0.0.1:0\", \"127.0.0.1:0\", \"[::1]:0\"]\n");
    ck_assert_uint_eq(c->listen_count, 3);
    config_unref(c);
}
END_TEST

/* ---- errors: the exact text, position included ----
 * The cases are data: tests/cases/config/NNN-key.case, one per file (format in the README there),
 * run by test_error_cases below. */


START_TEST(test_shared_refused_until_available)
{
    /* a shared rule needs somewhere to share: shared.redis */
    const char *err = load_err("rate_limits:\n  - {name: a, limit: 1, window: 1s, shared: true}\n");
    ck_assert_msg(strstr(err, "rate_limits[0].shared") != NULL &&
                      (strstr(err, "needs shared.redis") != NULL || strstr(err, "no Redis") != NULL),
                  "%s", err);
    ck_assert_str_eq(load_err("shared:\n  redis: \"http://x\"\n"),
                     "t.yaml: shared.redis: \"http://x\" is not redis://HOST:PORT/DB or unix:/PATH");
}
END_TEST

START_TEST(test_auth_users)
{
    struct config *c = load_ok("auth:\n  realm: corp\n  users: {alice: \"$6$abcdefgh$xyz\", bob: \"$y$j9T$abc$def\"}\n");
    ck_assert_uint_eq(c->auth_users_count, 2);
    ck_assert_str_eq(c->auth_users[0].name, "alice");
    ck_assert_str_eq(c->auth_users[1].hash, "$y$j9T$abc$def");
    ck_assert_str_eq(c->auth_realm, "corp");
    config_unref(c);
    ck_assert_str_eq(load_err("auth:\n  users: {alice: secret}\n"),
                     "t.yaml:2:18: auth.users: alice: \"secret\" is not a crypt(3) hash such as "
                     "$6$salt$... (make one with mkpasswd -m sha-512)");
    ck_assert_str_eq(load_err("auth:\n  users: [alice]\n"),
                     "t.yaml:2:10: auth.users: expected a mapping of user names to hashes, such as "
                     "{alice: \"$6$...\"}, got a list");
    ck_assert_str_eq(load_err("auth:\n  users_file: /nonexistent/users\n"),
                     "t.yaml: auth.users_file: cannot read /nonexistent/users: No such file or directory");
    /* a device never ends (fuzz_config found /dev/full read forever): only regular files */
    ck_assert_str_eq(load_err("auth:\n  users_file: /dev/full\n"),
                     "t.yaml: auth.users_file: /dev/full is not a regular file of at most 16 MiB");
}
END_TEST

#define CASES_DIR "tests/cases/config"
/* The old tables held 129 rows; a lost directory must not pass as zero cases. */
#define CASES_AT_LEAST 129

static struct dirent **case_entries;
static int case_count;

static int is_case_file(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    return n > 5 && strcmp(e->d_name + n - 5, ".case") == 0;
}

/* At suite creation: the loop test needs the count. Sorted, so NNN is the order of a run. */
static void find_cases(void)
{
    char dir[4096];
    unit_srcdir_path(CASES_DIR, dir, sizeof dir);
    case_count = scandir(dir, &case_entries, is_case_file, alphasort);
    if (case_count < 0)
        case_count = 0;
}

START_TEST(test_error_cases_found)
{
    ck_assert_msg(case_count >= CASES_AT_LEAST, "%d cases in %s (set RLPROXY_SRCDIR)", case_count,
                  CASES_DIR);
}
END_TEST

/* "# comment" lines, "error: MESSAGE", "input:", then the YAML to the end of the file. */
START_TEST(test_error_cases)
{
    char relative[512];
    snprintf(relative, sizeof relative, CASES_DIR "/%s", case_entries[_i]->d_name);
    char *text = unit_slurp(relative), *p = text;
    while (*p == '#')
        p = strchr(p, '\n') != NULL ? strchr(p, '\n') + 1 : p + strlen(p);
    ck_assert_msg(strncmp(p, "error: ", 7) == 0, "%s: no \"error: \" line", relative);
    char *message = p + 7, *end = strchr(message, '\n');
    ck_assert_msg(end != NULL && strncmp(end, "\ninput:\n", 8) == 0,
                  "%s: the error line must be followed by \"input:\"", relative);
    *end = '\0';
    const char *yaml = end + 8;
    const char *got = load_err(yaml);
    ck_assert_msg(strcmp(got, message) == 0, "%s:\n  got      %s\n  expected %s", relative, got,
                  message);
    free(text);
}
END_TEST

START_TEST(test_invalid_utf8)
{
    const char *err = load_err("log:\n  access: \"\xc3\x28\"\n");
    ck_assert_msg(strncmp(err, "t.yaml:2:", 9) == 0 && strstr(err, "UTF-8") != NULL, "%s", err);
}
END_TEST

/* Every numeric bound in the table, both sides, written the way a user would. */
static void bound_yaml(const struct config_key *k, uint64_t value, char *buf, size_t len)
{
    char text[64];
    snprintf(text, sizeof text, "%llu%s", (unsigned long long)value,
             k->type == CONFIG_DURATION ? "ms" : "");
    const char *dot = strchr(k->name, '.');
    if (dot == NULL)
        snprintf(buf, len, "%s: %s\n", k->name, text);
    else
        snprintf(buf, len, "%.*s:\n  %s: %s\n", (int)(dot - k->name), k->name, dot + 1, text);
}

START_TEST(test_numeric_bounds)
{
    size_t n;
    const struct config_key *keys = config_keys(&n);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        const struct config_key *k = &keys[i];
        if (k->type != CONFIG_DURATION && k->type != CONFIG_SIZE && k->type != CONFIG_UINT &&
            k->type != CONFIG_WORKERS)
            continue;
        char yaml[256];
        bound_yaml(k, k->min, yaml, sizeof yaml);
        config_unref(load_ok(yaml));
        bound_yaml(k, k->max, yaml, sizeof yaml);
        config_unref(load_ok(yaml));
        bound_yaml(k, k->max + 1, yaml, sizeof yaml);
        ck_assert_msg(strstr(load_err(yaml), "is above the maximum") != NULL, "%s", k->name);
        if (k->min > 0) {
            bound_yaml(k, k->min - 1, yaml, sizeof yaml);
            ck_assert_msg(strstr(load_err(yaml), "is below the minimum") != NULL, "%s", k->name);
        }
        checked++;
    }
    ck_assert_int_ge(checked, 11);
}
END_TEST

/* A list of `count` distinct valid entries for key k. */
static char *list_yaml(const struct config_key *k, size_t count)
{
    size_t cap = 64 + count * 64;
    char *buf = malloc(cap), *p = buf;
    const char *dot = strchr(k->name, '.');
    if (dot == NULL)
        p += sprintf(p, "%s:\n", k->name);
    else
        p += sprintf(p, "%.*s:\n  %s:\n", (int)(dot - k->name), k->name, dot + 1);
    if (k->type == CONFIG_USER_MAP) { /* a mapping, not a list */
        p += sprintf(p, "    {");
        for (size_t i = 0; i < count; i++)
            p += sprintf(p, "%su%zu: \"$6$saltsalt$hash\"", i ? ", " : "", i);
        sprintf(p, "}\n");
        return buf;
    }
    for (size_t i = 0; i < count; i++) {
        if (k->type == CONFIG_LISTEN_LIST)
            p += sprintf(p, "    - \"127.0.0.1:%zu\"\n", 1000 + i);
        else if (k->type == CONFIG_CIDR_LIST)
            p += sprintf(p, "    - 10.%zu.%zu.0/24\n", i / 256, i % 256);
        else if (k->type == CONFIG_RATE_RULES)
            p += sprintf(p, "    - {name: r%zu, limit: 1, window: 1s}\n", i);
        else if (k->type == CONFIG_RETRY_ON_LIST)
            p += sprintf(p, "    - %zu\n", 400 + i);
        else if (k->type == CONFIG_METHOD_LIST)
            p += sprintf(p, "    - M%zu\n", i);
        else
            p += sprintf(p, "    - %zu\n", i + 1);
    }
    return buf;
}

START_TEST(test_list_length_bounds)
{
    size_t n;
    const struct config_key *keys = config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        const struct config_key *k = &keys[i];
        if (config_value_elem_size(k) == 0)
            continue;
        char *yaml = list_yaml(k, k->max);
        struct config *c = load_ok(yaml);
        ck_assert_uint_eq(*(size_t *)((char *)c + k->count_offset), k->max);
        config_unref(c);
        free(yaml);
        yaml = list_yaml(k, k->max + 1);
        char expected[64];
        snprintf(expected, sizeof expected, "more than the maximum of %llu entries",
                 (unsigned long long)k->max);
        ck_assert_msg(strstr(load_err(yaml), expected) != NULL, "%s: %s", k->name, load_err(yaml));
        free(yaml);
    }
}
END_TEST

START_TEST(test_size_limit)
{
    size_t len = CONFIG_MAX_BYTES;
    char *yaml = malloc(len + 2);
    memset(yaml, ' ', len + 1);
    yaml[0] = '#';
    yaml[len - 1] = '\n';
    struct config *c = NULL;
    char err[256];
    ck_assert_int_eq(config_load_string(yaml, len, "big.yaml", &c, err, sizeof err), 0);
    config_unref(c);
    ck_assert_int_eq(config_load_string(yaml, len + 1, "big.yaml", &c, err, sizeof err), -1);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(err, "big.yaml: larger than the 1024 KiB limit for a config file");
    free(yaml);
}
END_TEST

START_TEST(test_small_or_missing_error_buffer)
{
    struct config *c = NULL;
    char err[12];
    memset(err, 'x', sizeof err);
    ck_assert_int_eq(config_load_string("workers: 0\n", 11, "t.yaml", &c, err, sizeof err), -1);
    ck_assert_str_eq(err, "t.yaml:1:10"); /* truncated, NUL-terminated */
    ck_assert_int_eq(config_load_string("workers: 0\n", 11, "t.yaml", &c, NULL, 0), -1);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(config_load_string("workers: 0\n", 11, NULL, &c, err, 1), -1);
    ck_assert_str_eq(err, "");
    ck_assert_int_eq(config_load_file("/nonexistent/x.yaml", &c, NULL, 0), -1);
}
END_TEST

START_TEST(test_not_nul_terminated)
{
    /* The length, not a NUL, ends the input (the fuzzer feeds raw bytes). */
    const char yaml[] = "workers: 3\nworkers: 4";
    struct config *c = NULL;
    char err[256];
    ck_assert_int_eq(config_load_string(yaml, 10, "t.yaml", &c, err, sizeof err), 0);
    ck_assert_uint_eq(c->workers, 3);
    config_unref(c);
}
END_TEST

/* ---- files ---- */

static void write_temp(char *path, const char *content, size_t len)
{
    strcpy(path, "/tmp/rlproxy-test-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, content, len), (ssize_t)len);
    close(fd);
}

/* auth.users_file holds at most as many users as auth.users may (10000): the 10001st is refused
 * with its line. */
START_TEST(test_users_file_bounded)
{
    enum { USERS = 10001 };
    size_t cap = (size_t)USERS * 48, len = 0;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    for (int i = 0; i < USERS; i++)
        len += (size_t)snprintf(text + len, cap - len, "u%d:$1$salt$PTQ9Un8QTaVCYiHFsvjEO1\n", i);
    char path[64], err[512], yaml[128], expected[160];
    write_temp(path, text, len);
    free(text);
    snprintf(yaml, sizeof yaml, "auth:\n  users_file: %s\n", path);
    struct config *c = NULL;
    ck_assert_int_eq(config_load_string(yaml, strlen(yaml), "t.yaml", &c, err, sizeof err), -1);
    snprintf(expected, sizeof expected, "%s:%d:1: auth.users_file: more than 10000 users", path,
             USERS);
    ck_assert_str_eq(err, expected);
    unlink(path);
}
END_TEST

START_TEST(test_file_on_disk)
{
    char path[64], err[512], expected[600];
    const char *good = "listen:\n  - \"[::1]:0\"\nlog:\n  level: warn\n";
    write_temp(path, good, strlen(good));
    struct config *c = NULL;
    ck_assert_int_eq(config_load_file(path, &c, err, sizeof err), 0);
    ck_assert_str_eq(c->source, path);
    ck_assert_str_eq(c->listen[0].text, "[::1]:0");
    ck_assert_int_eq(c->log_level, LOG_LEVEL_WARN);
    config_unref(c);
    unlink(path);

    const char *bad = "log:\n  level: warn\n  lvel: x\n";
    write_temp(path, bad, strlen(bad));
    ck_assert_int_eq(config_load_file(path, &c, err, sizeof err), -1);
    ck_assert_ptr_null(c);
    snprintf(expected, sizeof expected, "%s:3:3: log.lvel: unknown key, did you mean log.level?",
             path);
    ck_assert_str_eq(err, expected);
    unlink(path);
}
END_TEST

START_TEST(test_file_errors)
{
    char path[64], err[512], expected[600];
    struct config *c = NULL;
    ck_assert_int_eq(config_load_file("/nonexistent/rlproxy.yaml", &c, err, sizeof err), -1);
    ck_assert_str_eq(err, "/nonexistent/rlproxy.yaml: No such file or directory");
    ck_assert_int_eq(config_load_file("/tmp", &c, err, sizeof err), -1);
    ck_assert_str_eq(err, "/tmp: Is a directory");

    size_t len = CONFIG_MAX_BYTES + 10;
    char *big = malloc(len);
    memset(big, '\n', len);
    write_temp(path, big, len);
    free(big);
    ck_assert_int_eq(config_load_file(path, &c, err, sizeof err), -1);
    snprintf(expected, sizeof expected, "%s: larger than the 1024 KiB limit for a config file",
             path);
    ck_assert_str_eq(err, expected);
    ck_assert_ptr_null(c);
    unlink(path);

    write_temp(path, "", 0);
    ck_assert_int_eq(config_load_file(path, &c, err, sizeof err), 0);
    assert_defaults(c);
    config_unref(c);
    unlink(path);
}
END_TEST

/* ---- reference counting ---- */

static void *ref_churn(void *arg)
{
    struct config *c = arg;
    for (int i = 0; i < 100000; i++)
        config_unref(config_ref(c));
    return NULL;
}

START_TEST(test_refcount)
{
    struct config *c = config_default();
    ck_assert_ptr_eq(config_ref(c), c);
    config_unref(c);
    ck_assert_ptr_null(config_ref(NULL));
    config_unref(NULL);
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, ref_churn, c), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    assert_defaults(c); /* still alive: the churn was balanced */
    config_unref(c);    /* the last reference; valgrind/ASan check it freed everything */
}
END_TEST

/* ---- rate_limits ---- */

/* The two rules of issue 4, as written there: the public interface. */
static const char issue_example[] =
    "rate_limits:\n"
    "  - name: github\n"
    "    match: { host: \"api.github.com\", method: [GET], path_prefix: \"/repos\", client: "
    "[\"10.0.0.0/8\"] }\n"
    "    key: host            # client | host | client+host | user | global\n"
    "    limit: 5000\n"
    "    window: 1h\n"
    "    over_limit: delay    # delay: hold until the window has room; reject: 429 at once\n"
    "    max_delay: 30s       # longer than this → 429\n"
    "    max_queue: 1000      # held requests for this rule; beyond → 429\n"
    "  - name: default\n"
    "    key: client\n"
    "    limit: 100\n"
    "    window: 1s\n"
    "    over_limit: reject\n";

static void assert_issue_rules(const struct config *c)
{
    ck_assert_uint_eq(c->rate_limits_count, 2);
    const struct rate_rule *g = &c->rate_limits[0], *d = &c->rate_limits[1];
    ck_assert_str_eq(g->name, "github");
    ck_assert_uint_eq(g->match_host_count, 1);
    ck_assert_str_eq(g->match_host[0].text, "api.github.com");
    ck_assert_uint_eq(g->match_method_count, 1);
    ck_assert_str_eq(g->match_method[0], "GET");
    ck_assert_str_eq(g->match_path_prefix, "/repos");
    ck_assert_uint_eq(g->match_client_count, 1);
    ck_assert_uint_eq(g->match_client[0].prefix, 8);
    ck_assert_int_eq(g->key, RATE_KEY_HOST);
    ck_assert_uint_eq(g->limit, 5000);
    ck_assert_uint_eq(g->window_ms, 3600 * MS_PER_S);
    ck_assert_int_eq(g->over_limit, RATE_OVER_DELAY);
    ck_assert_uint_eq(g->max_delay_ms, 30 * MS_PER_S);
    ck_assert_uint_eq(g->max_queue, 1000);
    ck_assert_str_eq(d->name, "default");
    ck_assert_int_eq(d->key, RATE_KEY_CLIENT);
    ck_assert_uint_eq(d->limit, 100);
    ck_assert_uint_eq(d->window_ms, MS_PER_S);
    ck_assert_int_eq(d->over_limit, RATE_OVER_REJECT);
}

START_TEST(test_rules_issue_example_file)
{
    char path[64], err[512];
    write_temp(path, issue_example, strlen(issue_example));
    struct config *c = NULL;
    ck_assert_msg(config_load_file(path, &c, err, sizeof err) == 0, "%s", err);
    assert_issue_rules(c);
    config_unref(c);
    unlink(path);
}
END_TEST

START_TEST(test_rules_every_field)
{
    struct config *c =
        load_ok("rate_limits:\n"
                "  - name: github\n"
                "    match:\n"
                "      host: [\"API.GitHub.com\", \"*.githubusercontent.com\", 192.0.2.7]\n"
                "      method: [get, HEAD, M-SEARCH]\n"
                "      path_prefix: /repos/\n"
                "      client: [10.0.0.0/8, \"fd00::/8\"]\n"
                "      user: [alice, \"b o b\"]\n"
                "    key: client+host\n"
                "    limit: 5000\n"
                "    window: 1h\n"
                "    over_limit: delay\n"
                "    max_delay: 2m\n"
                "    max_queue: 50\n"
                "    headers: true\n"
                "    shared: false\n"
                "  - {name: fall.back-1_x, key: global, limit: 1000000, window: 1d,\n"
                "     max_delay: 0, max_queue: 0, headers: false, shared: false}\n"
                "rate_limits_max_keys: 5000\n");
    ck_assert_uint_eq(c->rate_limits_count, 2);
    ck_assert_uint_eq(c->rate_limits_max_keys, 5000);
    const struct rate_rule *r = &c->rate_limits[0];
    ck_assert_str_eq(r->name, "github");
    ck_assert_uint_eq(r->match_host_count, 3);
    ck_assert_str_eq(r->match_host[0].text, "api.github.com"); /* lower-cased */
    ck_assert_int_eq(r->match_host[0].wildcard, 0);
    ck_assert_str_eq(r->match_host[1].text, ".githubusercontent.com");
    ck_assert_int_eq(r->match_host[1].wildcard, 1);
    ck_assert_int_eq(r->match_host[2].is_cidr, 1); /* one address: compared as an address */
    ck_assert_uint_eq(r->match_host[2].cidr.prefix, 32);
    ck_assert(host_pattern_match(r->match_host, r->match_host_count, "a.githubusercontent.com"));
    ck_assert(host_pattern_match(r->match_host, r->match_host_count, "api.github.COM"));
    ck_assert(host_pattern_match(r->match_host, r->match_host_count, "192.0.2.7"));
    ck_assert(!host_pattern_match(r->match_host, r->match_host_count, "githubusercontent.com"));
    ck_assert_uint_eq(r->match_method_count, 3);
    ck_assert_str_eq(r->match_method[0], "GET"); /* upper-cased */
    ck_assert_str_eq(r->match_method[1], "HEAD");
    ck_assert_str_eq(r->match_method[2], "M-SEARCH");
    ck_assert_str_eq(r->match_path_prefix, "/repos/");
    ck_assert_uint_eq(r->match_client_count, 2);
    ck_assert_int_eq(r->match_client[0].family, AF_INET);
    ck_assert_int_eq(r->match_client[1].family, AF_INET6);
    ck_assert_uint_eq(r->match_client[1].prefix, 8);
    ck_assert_uint_eq(r->match_user_count, 2);
    ck_assert_str_eq(r->match_user[0], "alice");
    ck_assert_str_eq(r->match_user[1], "b o b");
    ck_assert_int_eq(r->key, RATE_KEY_CLIENT_HOST);
    ck_assert_uint_eq(r->limit, 5000);
    ck_assert_uint_eq(r->window_ms, 3600 * MS_PER_S);
    ck_assert_int_eq(r->over_limit, RATE_OVER_DELAY);
    ck_assert_uint_eq(r->max_delay_ms, 120 * MS_PER_S);
    ck_assert_uint_eq(r->max_queue, 50);
    ck_assert_int_eq(r->headers, 1);
    ck_assert_int_eq(r->shared, 0); /* true needs shared.redis: see test_shared_refused_... */
    r = &c->rate_limits[1];
    ck_assert_str_eq(r->name, "fall.back-1_x");
    ck_assert_int_eq(r->key, RATE_KEY_GLOBAL);
    ck_assert_uint_eq(r->limit, 1000000);
    ck_assert_uint_eq(r->window_ms, 86400 * MS_PER_S);
    ck_assert_uint_eq(r->max_delay_ms, 0);
    ck_assert_uint_eq(r->max_queue, 0);
    ck_assert_int_eq(r->headers, 0);
    ck_assert_int_eq(r->shared, 0);
    ck_assert_uint_eq(r->match_host_count + r->match_method_count + r->match_client_count +
                          r->match_user_count,
                      0);
    config_unref(c);
}
END_TEST

/* key: header:NAME and host+header:NAME keep the name as written (matched without case later);
 * the plain words leave no name behind. */
START_TEST(test_rule_header_keys)
{
    struct config *c = load_ok("rate_limits:\n"
                               "  - {name: a, limit: 1, window: 1s, key: header:X-Api-Key}\n"
                               "  - {name: b, limit: 1, window: 1s,\n"
                               "     key: \"host+header:authorization\"}\n"
                               "  - name: c\n    limit: 1\n    window: 1s\n"
                               "    key: \"header:!#$%&'*+-.^_`|~09azAZ\"\n"
                               "  - {name: d, limit: 1, window: 1s, key: host}\n");
    ck_assert_uint_eq(c->rate_limits_count, 4);
    ck_assert_int_eq(c->rate_limits[0].key, RATE_KEY_HEADER);
    ck_assert_str_eq(c->rate_limits[0].key_header, "X-Api-Key");
    ck_assert_int_eq(c->rate_limits[1].key, RATE_KEY_HOST_HEADER);
    ck_assert_str_eq(c->rate_limits[1].key_header, "authorization");
    ck_assert_int_eq(c->rate_limits[2].key, RATE_KEY_HEADER);
    ck_assert_str_eq(c->rate_limits[2].key_header, "!#$%&'*+-.^_`|~09azAZ");
    ck_assert_int_eq(c->rate_limits[3].key, RATE_KEY_HOST);
    ck_assert_str_eq(c->rate_limits[3].key_header, "");
    config_unref(c);
    /* the longest name there may be */
    char yaml[256], name[RATE_KEY_HEADER_MAX + 1];
    memset(name, 'N', RATE_KEY_HEADER_MAX);
    name[RATE_KEY_HEADER_MAX] = '\0';
    snprintf(yaml, sizeof yaml, "rate_limits: [{name: r, limit: 1, window: 1s, key: header:%s}]\n",
             name);
    c = load_ok(yaml);
    ck_assert_str_eq(c->rate_limits[0].key_header, name);
    config_unref(c);
}
END_TEST

static void assert_rule_defaults(const struct rate_rule *r)
{
    ck_assert_uint_eq(r->match_host_count, 0);
    ck_assert_ptr_null(r->match_host);
    ck_assert_uint_eq(r->match_method_count, 0);
    ck_assert_ptr_null(r->match_path_prefix);
    ck_assert_uint_eq(r->match_client_count, 0);
    ck_assert_ptr_null(r->match_client);
    ck_assert_uint_eq(r->match_user_count, 0);
    ck_assert_ptr_null(r->match_user);
    ck_assert_int_eq(r->key, RATE_KEY_CLIENT);
    ck_assert_int_eq(r->over_limit, RATE_OVER_REJECT);
    ck_assert_uint_eq(r->max_delay_ms, 30 * MS_PER_S);
    ck_assert_uint_eq(r->max_queue, 1000);
    ck_assert_int_eq(r->headers, 0);
    ck_assert_int_eq(r->shared, 0);
}

START_TEST(test_rule_defaults)
{
    struct config *c = load_ok("rate_limits:\n  - {name: a, limit: 7, window: 10s}\n"
                               "  - name: b\n    match:\n    limit: 1\n    window: 1ms\n"
                               "  - {name: c, limit: 1, window: 1s, match: {}}\n");
    ck_assert_uint_eq(c->rate_limits_count, 3);
    for (size_t i = 0; i < 3; i++)
        assert_rule_defaults(&c->rate_limits[i]);
    ck_assert_uint_eq(c->rate_limits[0].limit, 7);
    ck_assert_uint_eq(c->rate_limits[0].window_ms, 10 * MS_PER_S);
    ck_assert_uint_eq(c->rate_limits[1].window_ms, 1);
    config_unref(c);

    struct rate_rule r;
    char why[256];
    ck_assert_int_eq(config_rule_init(&r, why, sizeof why), 0);
    assert_rule_defaults(&r);
    ck_assert_str_eq(r.name, "");
    ck_assert_uint_eq(r.limit, 0);

    c = load_ok("rate_limits: []\n");
    ck_assert_uint_eq(c->rate_limits_count, 0);
    ck_assert_ptr_null(c->rate_limits);
    config_unref(c);
}
END_TEST

/* Every match field takes one value or a list; one value is a one-entry list. */
START_TEST(test_rule_single_or_list)
{
    struct config *c = load_ok(
        "rate_limits:\n"
        "  - {name: a, limit: 1, window: 1s, match: {host: \"*.example.com\", method: post,\n"
        "     path_prefix: /x, client: 10.1.2.3, user: alice}}\n"
        "  - {name: b, limit: 1, window: 1s, match: {host: [a.example, b.example],\n"
        "     method: [GET, PUT], client: [10.0.0.0/8, \"::1\"], user: [alice, bob]}}\n"
        "  - {name: c, limit: 1, window: 1s,\n"
        "     match: {host: [], method: [], client: [], user: []}}\n");
    const struct rate_rule *a = &c->rate_limits[0], *b = &c->rate_limits[1],
                           *e = &c->rate_limits[2];
    ck_assert_uint_eq(a->match_host_count, 1);
    ck_assert_int_eq(a->match_host[0].wildcard, 1);
    ck_assert_uint_eq(a->match_method_count, 1);
    ck_assert_str_eq(a->match_method[0], "POST");
    ck_assert_uint_eq(a->match_client_count, 1);
    ck_assert_uint_eq(a->match_client[0].prefix, 32);
    ck_assert_uint_eq(a->match_user_count, 1);
    ck_assert_str_eq(a->match_user[0], "alice");
    ck_assert_uint_eq(b->match_host_count, 2);
    ck_assert_str_eq(b->match_host[1].text, "b.example");
    ck_assert_uint_eq(b->match_method_count, 2);
    ck_assert_str_eq(b->match_method[1], "PUT");
    ck_assert_uint_eq(b->match_client_count, 2);
    ck_assert_uint_eq(b->match_user_count, 2);
    ck_assert_str_eq(b->match_user[1], "bob");
    assert_rule_defaults(e);
    config_unref(c);
}
END_TEST

START_TEST(test_rule_fields_table)
{
    size_t n;
    const struct config_key *f = config_rule_fields(&n);
    ck_assert_uint_ge(n, 14);
    ck_assert_uint_le(n, CONFIG_RULE_MAX_FIELDS);
    size_t required = 0;
    for (size_t i = 0; i < n; i++) {
        int is_list = config_value_elem_size(&f[i]) != 0;
        ck_assert_msg(f[i].doc != NULL && strstr(f[i].doc, ". ") == NULL &&
                          f[i].doc[strlen(f[i].doc) - 1] != '.',
                      "%s doc", f[i].name);
        /* Required fields have no default; lists are optional, start empty and take one value. */
        ck_assert_msg(!(f[i].required && f[i].default_text != NULL), "%s", f[i].name);
        ck_assert_msg(is_list == (f[i].count_offset != 0) && is_list == f[i].single_ok, "%s",
                      f[i].name);
        ck_assert_msg(!is_list || f[i].max > 0, "%s max", f[i].name);
        ck_assert_int_eq(f[i].reloadable, 1);
        required += (size_t)f[i].required;
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(f[i].name, f[j].name);
    }
    ck_assert_uint_eq(required, 3); /* name, limit, window */
}
END_TEST

/* One rule whose `field` is `value`, the required keys filled in around it. */
static void rule_yaml(const char *field, const char *value, char *buf, size_t len)
{
    snprintf(buf, len, "rate_limits:\n  - name: %s\n    limit: %s\n    window: %s\n",
             strcmp(field, "name") == 0 ? value : "r",
             /* cost may not exceed limit */
             strcmp(field, "limit") == 0 ? value : strcmp(field, "cost") == 0 ? "1000000" : "1",
             strcmp(field, "window") == 0 ? value : "1s");
    if (strcmp(field, "name") != 0 && strcmp(field, "limit") != 0 && strcmp(field, "window") != 0)
        snprintf(buf + strlen(buf), len - strlen(buf), "    %s: %s\n", field, value);
}

START_TEST(test_rule_numeric_bounds)
{
    size_t n;
    const struct config_key *f = config_rule_fields(&n);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        if (f[i].type != CONFIG_UINT && f[i].type != CONFIG_DURATION)
            continue;
        const char *unit = f[i].type == CONFIG_DURATION ? "ms" : "";
        char value[64], yaml[256];
        snprintf(value, sizeof value, "%llu%s", (unsigned long long)f[i].min, unit);
        rule_yaml(f[i].name, value, yaml, sizeof yaml);
        config_unref(load_ok(yaml));
        snprintf(value, sizeof value, "%llu%s", (unsigned long long)f[i].max, unit);
        rule_yaml(f[i].name, value, yaml, sizeof yaml);
        config_unref(load_ok(yaml));
        snprintf(value, sizeof value, "%llu%s", (unsigned long long)f[i].max + 1, unit);
        rule_yaml(f[i].name, value, yaml, sizeof yaml);
        ck_assert_msg(strstr(load_err(yaml), "is above the maximum") != NULL, "%s", f[i].name);
        if (f[i].min > 0) {
            snprintf(value, sizeof value, "%llu%s", (unsigned long long)f[i].min - 1, unit);
            rule_yaml(f[i].name, value, yaml, sizeof yaml);
            ck_assert_msg(strstr(load_err(yaml), "is below the minimum") != NULL, "%s", f[i].name);
        }
        checked++;
    }
    ck_assert_int_eq(checked, 7); /* limit, window, max_delay, margin, max_queue, cost, max_concurrent */
}
END_TEST

/* Rules that are wrong in one way are cases in tests/cases/config/ as well (068 onwards). */


/* Errors after a rule already owns lists and strings, and after earlier rules are complete: the
 * partial rule and the finished ones are all freed (valgrind and ASan runs check it). */
static const char *const rule_errors_late[] = {
    ("rate_limits:\n"
     "  - {name: a, limit: 1, window: 1s, match: {user: [x, y], host: a.example, client: ::1,\n"
     "     path_prefix: /p}}\n"
     "  - name: b\n"
     "    match: {user: [u1, u2], path_prefix: /q, host: [b.example], method: GET, client: ::1}\n"
     "    limit: 0\n"),
    "rate_limits:\n  - {name: a, limit: 1, window: 1s,\n"
    "     match: {path_prefix: /a, path_prefix: /b}}\n",
    ("rate_limits:\n  - {name: a, limit: 1, window: 1s, match: {user: [x], path_prefix: /a}}\n"
     "  - {name: a, limit: 1, window: 1s, match: {user: [y, z], path_prefix: /b}}\n"),
    "rate_limits:\n  - {name: a, limit: 1, window: 1s, match: {user: [x, y, x]}}\n",
    "rate_limits:\n  - {name: a, limit: 1, window: 1s, match: {user: [x, y, *z]}}\n",
    "rate_limits:\n  - {name: a, match: {user: x, path_prefix: /a}}\n",
    "rate_limits:\n  - {name: a, limit: 1, window: 1s, match: {user: [x, y]\n",
};

START_TEST(test_rule_errors_free_everything)
{
    const char *err = load_err(rule_errors_late[_i]);
    ck_assert_msg(strncmp(err, "t.yaml:", 7) == 0, "%s", err);
}
END_TEST

START_TEST(test_rule_seed_loads)
{
    /* The fuzz seed is the issue's example plus every field; it must stay a valid config. */
    char path[4096], err[512];
    unit_srcdir_path("tests/fuzz/corpus_config/rate_limits.yaml", path, sizeof path);
    struct config *c = NULL;
    ck_assert_msg(config_load_file(path, &c, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_ge(c->rate_limits_count, 2);
    ck_assert_str_eq(c->rate_limits[0].name, "github");
    config_unref(c);
}
END_TEST

/* ---- drift: the man page and the sample config follow the table ---- */

/* default_text as it is written in the man page: mdoc spells a double quote \(dq. */
static void mdoc_quote(const char *text, char *buf, size_t len)
{
    size_t used = 0;
    for (; *text != '\0' && used + 5 < len; text++) {
        if (*text == '"') {
            memcpy(buf + used, "\\(dq", 4);
            used += 4;
        } else {
            buf[used++] = *text;
        }
    }
    buf[used] = '\0';
}

START_TEST(test_man_page_lists_every_key)
{
    char *man = unit_slurp("man/rlproxy.yaml.5");
    size_t n;
    const struct config_key *keys = config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        char want[512], quoted[256];
        snprintf(want, sizeof want, "\n.It Ic %s ", keys[i].name);
        ck_assert_msg(strstr(man, want) != NULL, "man page lacks \".It Ic %s\"", keys[i].name);
        snprintf(want, sizeof want, "\n%s.\n", keys[i].doc);
        ck_assert_msg(strstr(man, want) != NULL, "man page lacks the doc line of %s: %s",
                      keys[i].name, keys[i].doc);
        mdoc_quote(keys[i].default_text, quoted, sizeof quoted);
        snprintf(want, sizeof want, "Default:\n.Ql %s .\n", quoted);
        ck_assert_msg(strstr(man, want) != NULL, "man page lacks the default of %s: %s",
                      keys[i].name, quoted);
    }
    free(man);
}
END_TEST

/* Every dotted path of a leaf (non-mapping) value in a YAML document, for the sample config. */
static void collect_paths(yaml_document_t *doc, yaml_node_t *node, const char *prefix, char *out,
                          size_t len)
{
    const struct config_key *known = config_key_find(prefix);
    /* a key whose value is itself a mapping (auth.users) is set by being present */
    if (node->type != YAML_MAPPING_NODE || (known != NULL && known->type == CONFIG_USER_MAP)) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "|%s|", prefix);
        return;
    }
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(doc, p->key);
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "",
                 (const char *)key->data.scalar.value);
        collect_paths(doc, yaml_document_get_node(doc, p->value), path, out, len);
    }
}

START_TEST(test_sample_config_sets_every_key)
{
    char *conf = unit_slurp("conf/rlproxy.yaml");
    yaml_parser_t parser;
    yaml_document_t doc;
    static char paths[8192];
    paths[0] = '\0';
    ck_assert(yaml_parser_initialize(&parser));
    yaml_parser_set_input_string(&parser, (const unsigned char *)conf, strlen(conf));
    ck_assert(yaml_parser_load(&parser, &doc));
    collect_paths(&doc, yaml_document_get_root_node(&doc), "", paths, sizeof paths);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);

    size_t n;
    const struct config_key *keys = config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        char want[256];
        snprintf(want, sizeof want, "|%s|", keys[i].name);
        ck_assert_msg(strstr(paths, want) != NULL, "conf/rlproxy.yaml does not set %s",
                      keys[i].name);
        snprintf(want, sizeof want, "# %s: ", keys[i].name);
        ck_assert_msg(strstr(conf, want) != NULL, "conf/rlproxy.yaml has no comment for %s",
                      keys[i].name);
        snprintf(want, sizeof want, "Default %s.", keys[i].default_text);
        ck_assert_msg(strstr(conf, want) != NULL, "conf/rlproxy.yaml: %s should say \"%s\"",
                      keys[i].name, want);
    }
    free(conf);
}
END_TEST

/* 1 when `text` occurs in [from, to) (to == NULL: to the end). */
static int occurs_within(const char *from, const char *to, const char *text)
{
    const char *at = strstr(from, text);
    return at != NULL && (to == NULL || at < to);
}

/* The rule table drives the RATE LIMITS section as keys[] drives KEYS: each field has its entry
 * there, holding its doc sentence and either "Required." or its default. */
START_TEST(test_man_page_lists_every_rule_field)
{
    const char *section;
    char *man =
        unit_slurp_at("man/rlproxy.yaml.5", "\n.Sh RATE LIMITS\n", "RATE LIMITS section", &section);
    size_t n;
    const struct config_key *f = config_rule_fields(&n);
    for (size_t i = 0; i < n; i++) {
        char want[512], quoted[256];
        snprintf(want, sizeof want, "\n.It Ic %s ", f[i].name);
        const char *entry = strstr(section, want);
        ck_assert_msg(entry != NULL, "RATE LIMITS lacks \".It Ic %s\"", f[i].name);
        const char *next = strstr(entry + 1, "\n.It ");
        const char *list_end = strstr(entry + 1, "\n.El\n");
        if (next == NULL || (list_end != NULL && list_end < next))
            next = list_end;
        snprintf(want, sizeof want, "\n%s.\n", f[i].doc);
        ck_assert_msg(occurs_within(entry, next, want), "%s: doc line %s", f[i].name, f[i].doc);
        if (f[i].required) {
            ck_assert_msg(occurs_within(entry, next, "\nRequired.\n"), "%s: Required.", f[i].name);
        } else if (f[i].default_text != NULL) {
            mdoc_quote(f[i].default_text, quoted, sizeof quoted);
            snprintf(want, sizeof want, "Default:\n.Ql %s .\n", quoted);
            ck_assert_msg(occurs_within(entry, next, want), "%s: %s", f[i].name, want);
        }
    }
    free(man);
}
END_TEST

/* The commented example in conf/rlproxy.yaml, uncommented, is the issue's two rules. */
START_TEST(test_sample_config_rate_example)
{
    const char *start;
    char *conf = unit_slurp_at("conf/rlproxy.yaml", "\n# rate_limits:\n",
                               "commented rate_limits example", &start);
    char *yaml = calloc(1, strlen(conf) + 1), *out = yaml;
    /* "# rate_limits:" and every following line that starts "#  ", without the "# ". */
    for (const char *line = start + 1;
         strncmp(line, "# rate_limits:\n", 15) == 0 || strncmp(line, "#  ", 3) == 0;) {
        const char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        memcpy(out, line + 2, (size_t)(nl - line - 1));
        out += nl - line - 1;
        line = nl + 1;
    }
    struct config *c = load_ok(yaml);
    assert_issue_rules(c);
    config_unref(c);
    free(yaml);
    free(conf);
}
END_TEST

START_TEST(test_sample_config_loads_as_defaults)
{
    char path[4096], err[512];
    unit_srcdir_path("conf/rlproxy.yaml", path, sizeof path);
    struct config *c = NULL;
    ck_assert_msg(config_load_file(path, &c, err, sizeof err) == 0, "%s", err);
    /* Its header promises every key at its default. */
    assert_defaults(c);
    config_unref(c);
}
END_TEST

/* ---- -T and reload: the config written back through the table, and compared ---- */

static char *dump_text(const struct config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(config_dump(c, out), 0);
    ck_assert_int_eq(fclose(out), 0);
    return text;
}

/* Every type the table has, away from its default (secrets aside: they come back masked). */
static const char dump_example[] =
    "listen: [\"127.0.0.1:0\", \"[::1]:0\", \"*:8080\"]\n"
    "workers: 3\n"
    "shutdown_timeout: 1500ms\n"
    "access: {allow: [10.1.2.3/8, \"::1\"], max_connections_per_client: 7}\n"
    "auth: {realm: \"a \\\"quoted\\\" realm\\\\\"}\n"
    "destinations: {deny: [\"*.internal\", 192.168.0.0/16, Evil.Example], allow_ports: [80, 443]}\n"
    "connect: {allowed_ports: []}\n"
    "timeouts: {client_header: 2s, tunnel_idle: 2h}\n"
    "http: {max_request_line: 1000, max_header_size: 64KiB}\n"
    "backpressure: {buffer: 1MiB, max_connections: 5, overload_status: 599}\n"
    "log: {level: debug, access: \"/var/log/x y.log\", access_format: json}\n"
    "admin: {listen: []}\n"
    "shared: {on_error: deny, timeout: 1s}\n"
    "upstream_proxy_bypass: [localhost, \"::1\"]\n"
    "retry: {attempts: 5, jitter: none, on: [timeout, 429], methods: [get], max_body: 0, budget: 5}\n"
    "rate_limits:\n"
    "  - {name: gh, match: {host: [api.github.com, \"*.github.com\"], method: [GET, post],\n"
    "     path_prefix: /repos, client: 127.0.0.0/8, user: [alice, \"b b\"]}, key: client+host,\n"
    "     limit: 50, window: 1h, over_limit: delay, max_delay: 0, max_queue: 3, headers: true}\n"
    "  - {name: all, limit: 1, window: 1d, key: global}\n"
    "rate_limits_max_keys: 2000\n";

START_TEST(test_dump_round_trips)
{
    struct config *c = load_ok(dump_example);
    char *first = dump_text(c);
    struct config *again = load_ok(first);
    char *second = dump_text(again);
    /* the first line names the source file */
    ck_assert_str_eq(strchr(second, '\n'), strchr(first, '\n'));
    ck_assert_int_eq(config_diff(c, again, NULL, NULL), 0);
    /* every key is written, each once, in its section */
    size_t n;
    const struct config_key *k = config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        const char *leaf = strrchr(k[i].name, '.') ? strrchr(k[i].name, '.') + 1 : k[i].name;
        char needle[128];
        snprintf(needle, sizeof needle, "%s%s:", strchr(k[i].name, '.') ? "\n  " : "\n", leaf);
        ck_assert_msg(strstr(first, needle) != NULL, "%s missing from:\n%s", k[i].name, first);
    }
    ck_assert_msg(strstr(first, "\nrate_limits:\n  - {name: \"gh\", match: {host: "
                                "[\"api.github.com\", \"*.github.com\"], method: [GET, POST], "
                                "path_prefix: \"/repos\", client: [\"127.0.0.0/8\"], user: "
                                "[\"alice\", \"b b\"]}, key: client+host, limit: 50, window: 1h,") !=
                      NULL,
                  "%s", first);
    ck_assert_msg(strstr(first, "\n  realm: \"a \\\"quoted\\\" realm\\\\\"\n") != NULL, "%s", first);
    free(first);
    free(second);
    config_unref(again);
    config_unref(c);
    /* the embedded default too */
    c = config_default();
    first = dump_text(c);
    again = load_ok(first);
    ck_assert_int_eq(config_diff(c, again, NULL, NULL), 0);
    free(first);
    config_unref(again);
    config_unref(c);
}
END_TEST

/* Characters YAML reads as line breaks or may drop come back escaped, so the value survives. */
START_TEST(test_dump_escapes_what_yaml_would_fold)
{
    struct config *c = load_ok("auth: {realm: \"a\\Nb\\Lc\\Pd\\ufeffe\\x85f\\u0080g\\th\\\"i\\uffffj\"}\n");
    char *text = dump_text(c);
    ck_assert_msg(strstr(text, "\n  realm: \"a\\u0085b\\u2028c\\u2029d\\ufeffe\\u0085f\\u0080g\\x09h\\\"i\\uffffj\"\n") !=
                      NULL,
                  "%s", text);
    struct config *again = load_ok(text);
    ck_assert_str_eq(again->auth_realm, c->auth_realm);
    free(text);
    config_unref(again);
    config_unref(c);
}
END_TEST

START_TEST(test_dump_masks_secrets)
{
    struct config *c = load_ok("auth: {users: {alice: \"$6$saltsalt$secrethash\"}}\n"
                               "upstream_proxy: \"http://bob:pa55word@127.0.0.1:3129\"\n"
                               "upstream_proxy_bypass: [\"*.a\"]\n"
                               "shared: {redis: \"redis://:redispw@127.0.0.1:6379/0\"}\n"
                               "admin: {token: \"t0kenvalue\"}\n");
    char *text = dump_text(c);
    ck_assert_msg(strstr(text, "secrethash") == NULL && strstr(text, "pa55word") == NULL &&
                      strstr(text, "redispw") == NULL && strstr(text, "t0kenvalue") == NULL,
                  "%s", text);
    /* a secret that is not a URL is all secret */
    ck_assert_msg(strstr(text, "token: \"********\"") != NULL, "%s", text);
    ck_assert_msg(strstr(text, "users: {\"alice\": \"********\"}") != NULL, "%s", text);
    ck_assert_msg(strstr(text, "upstream_proxy: \"http://bob:********@127.0.0.1:3129\"") != NULL,
                  "%s", text);
    ck_assert_msg(strstr(text, "redis: \"redis://:********@127.0.0.1:6379/0\"") != NULL, "%s",
                  text);
    free(text);
    config_unref(c);
}
END_TEST

struct changes {
    char names[512];
    char values[2048];
};

static void note_change(const struct config_key *key, const char *old_text, const char *new_text,
                        void *arg)
{
    struct changes *ch = arg;
    size_t used = strlen(ch->names);
    snprintf(ch->names + used, sizeof ch->names - used, "%s ", key->name);
    used = strlen(ch->values);
    snprintf(ch->values + used, sizeof ch->values - used, "%s: %s -> %s\n", key->name, old_text,
             new_text);
}

START_TEST(test_diff_names_each_changed_key)
{
    struct config *a = load_ok("workers: 2\nadmin: {listen: [\"127.0.0.1:9128\"]}\n"
                               "retry: {methods: [GET, PUT]}\n"
                               "shared: {redis: \"redis://:one@127.0.0.1:6379/0\"}\n"
                               "rate_limits: [{name: r, limit: 1, window: 1s}]\n");
    struct config *b = load_ok("workers: 2\nadmin: {listen: [\"127.0.0.1:9129\"]}\n"
                               "retry: {methods: [GET, POST]}\n"
                               "shared: {redis: \"redis://:two@127.0.0.1:6379/0\"}\n"
                               "rate_limits: [{name: r, limit: 2, window: 1s}]\n"
                               "log: {level: debug}\n");
    struct changes ch = {"", ""};
    ck_assert_int_eq(config_diff(a, b, note_change, &ch), 5);
    ck_assert_str_eq(ch.names, "log.level admin.listen shared.redis retry.methods rate_limits ");
    ck_assert_msg(strstr(ch.values, "admin.listen: [\"127.0.0.1:9128\"] -> [\"127.0.0.1:9129\"]\n") !=
                      NULL,
                  "%s", ch.values);
    /* a changed password is a change, shown masked on both sides */
    ck_assert_msg(strstr(ch.values, "shared.redis: \"redis://:********@127.0.0.1:6379/0\" -> "
                                    "\"redis://:********@127.0.0.1:6379/0\"\n") != NULL,
                  "%s", ch.values);
    ck_assert_int_eq(config_diff(a, a, note_change, &ch), 0);
    config_unref(a);
    config_unref(b);
}
END_TEST

/* ---- rules that cannot see inside https:// requests (issue 16 item 6) ---- */

static size_t text_lines(const char *text)
{
    size_t n = 0;
    for (; *text != '\0'; text++)
        n += *text == '\n';
    return n;
}

static void collect_warning(const char *message, void *arg)
{
    char *all = arg;
    size_t used = strlen(all);
    snprintf(all + used, 4096 - used, "%s\n", message);
}

struct warning_case {
    const char *yaml, *warnings; /* warnings: each followed by a newline; "" for none */
};

#define GH_RULE "rate_limits:\n  - name: github\n    match: {host: api.github.com, path_prefix: /repos}\n" \
                "    limit: 5000\n    window: 1h\n"
#define WARN_TAIL ": they pass through CONNECT tunnels that rlproxy does not open "
static const struct warning_case warning_cases[] = {
    /* tls_intercept off: the host can only be reached through an opaque tunnel */
    {GH_RULE,
     "t.yaml:2:5: rate_limits[0] (github): match.path_prefix never limits https:// requests to "
     "api.github.com" WARN_TAIL "(tls_intercept is off: set tls_intercept.ca_cert, ca_key and "
     "hosts); the rule still applies to plain http://\n"},
    /* intercepted, exactly or by a wildcard: nothing to say */
    {GH_RULE "tls_intercept: {hosts: [api.github.com]}\n", ""},
    {GH_RULE "tls_intercept: {hosts: [\"*.github.com\"]}\n", ""},
    /* another host intercepted: this one is not */
    {GH_RULE "tls_intercept: {hosts: [api.gitlab.com]}\n",
     "t.yaml:2:5: rate_limits[0] (github): match.path_prefix never limits https:// requests to "
     "api.github.com" WARN_TAIL "(add them to tls_intercept.hosts); the rule still applies to "
     "plain http://\n"},
    /* a wildcard rule is covered only by a wildcard as wide; the uncovered hosts are listed */
    {"rate_limits:\n- {name: w, limit: 1, window: 1s, match: {host: [\"*.a.example\", "
     "b.example, \"*.x.c.example\", \"::1\"], method: [get, CONNECT]}}\n"
     "tls_intercept: {hosts: [x.a.example, b.example, \"*.c.example\"]}\n",
     "t.yaml:2:3: rate_limits[0] (w): match.method never limits https:// requests to *.a.example, "
     "::1" WARN_TAIL "(add them to tls_intercept.hosts); the rule still applies to plain "
     "http://\n"},
    /* both fields named; the second rule is the one at fault */
    {"rate_limits:\n  - {name: ok, limit: 1, window: 1s}\n"
     "  - {name: both, limit: 1, window: 1s,\n     match: {host: h.example, method: POST, "
     "path_prefix: /p}}\n",
     "t.yaml:3:5: rate_limits[1] (both): match.path_prefix and match.method never limits "
     "https:// requests to h.example" WARN_TAIL "(tls_intercept is off: set "
     "tls_intercept.ca_cert, ca_key and hosts); the rule still applies to plain http://\n"},
    /* what a tunnel shows is enough: CONNECT rules, host-only rules, rules without a host */
    {"rate_limits:\n  - {name: t, limit: 1, window: 1s, match: {host: h.example, method: "
     "CONNECT}}\n  - {name: h, limit: 1, window: 1s, match: {host: h.example}}\n"
     "  - {name: p, limit: 1, window: 1s, match: {path_prefix: /x, method: GET}}\n",
     ""},
};

START_TEST(test_rule_warnings)
{
    const struct warning_case *t = &warning_cases[_i];
    struct config *c = load_ok(t->yaml);
    char all[4096] = "";
    int n = config_rule_warnings(c, collect_warning, all);
    ck_assert_str_eq(all, t->warnings);
    ck_assert_int_eq(n, (int)text_lines(t->warnings));
    config_unref(c);
}
END_TEST

/* -T writes header keys quoted (a tchar such as # or | means something to YAML) and they load
 * back the same; a changed header name is a changed rule for the reload diff. */
START_TEST(test_dump_round_trips_header_keys)
{
    static const char yaml[] = "rate_limits:\n"
                               "  - {name: a, limit: 1, window: 1s, key: \"header:X-Key#|1\"}\n"
                               "  - {name: b, limit: 1, window: 1s,\n"
                               "     key: host+header:Authorization}\n";
    struct config *c = load_ok(yaml);
    char *first = dump_text(c);
    ck_assert_msg(strstr(first, "key: \"header:X-Key#|1\"") != NULL, "%s", first);
    ck_assert_msg(strstr(first, "key: \"host+header:Authorization\"") != NULL, "%s", first);
    struct config *again = load_ok(first);
    ck_assert_str_eq(again->rate_limits[0].key_header, "X-Key#|1");
    ck_assert_int_eq(again->rate_limits[1].key, RATE_KEY_HOST_HEADER);
    ck_assert_int_eq(config_diff(c, again, NULL, NULL), 0);
    struct config *other = load_ok("rate_limits:\n"
                                   "  - {name: a, limit: 1, window: 1s, key: \"header:X-Key#|2\"}\n"
                                   "  - {name: b, limit: 1, window: 1s,\n"
                                   "     key: host+header:Authorization}\n");
    ck_assert_int_ne(config_diff(c, other, NULL, NULL), 0);
    free(first);
    config_unref(other);
    config_unref(again);
    config_unref(c);
}
END_TEST

/* shared.key_secret is a credential: -T masks it. */
START_TEST(test_dump_masks_key_secret)
{
    struct config *c = load_ok("shared: {key_secret: \"correct horse battery staple\"}\n");
    ck_assert_str_eq(c->shared_key_secret, "correct horse battery staple");
    char *text = dump_text(c);
    ck_assert_msg(strstr(text, "horse") == NULL, "%s", text);
    ck_assert_msg(strstr(text, "key_secret: \"********\"") != NULL, "%s", text);
    free(text);
    config_unref(c);
}
END_TEST

/* A shared rule keyed by a header hashes values unkeyed without shared.key_secret: -t says what
 * that gives away; with the secret, or for a local rule, nothing is said. */
START_TEST(test_shared_header_key_warning)
{
    if (!shared_available())
        return; /* shared: true is refused at load: see test_shared_refused_until_available */
    static const char rules[] =
        "rate_limits:\n"
        "  - {name: tokens, limit: 1, window: 1s, key: header:X-Api-Key, shared: true}\n"
        "  - {name: local, limit: 1, window: 1s, key: header:X-Api-Key}\n"
        "  - {name: hosts, limit: 1, window: 1s, key: host, shared: true}\n";
    char yaml[1024], all[4096] = "";
    snprintf(yaml, sizeof yaml, "%sshared: {redis: \"redis://127.0.0.1:6379/0\"}\n", rules);
    struct config *c = load_ok(yaml);
    ck_assert_int_eq(config_rule_warnings(c, collect_warning, all), 1);
    ck_assert_str_eq(all, "t.yaml:2:5: rate_limits[0] (tokens): shared rule keyed by header "
                          "X-Api-Key, and no shared.key_secret: its Redis keys hold an unkeyed "
                          "SHA-256 of each value, never the value, but whoever can list Redis "
                          "keys can test guessed values against them; set shared.key_secret to "
                          "the same secret on every instance\n");
    config_unref(c);
    snprintf(yaml, sizeof yaml,
             "%sshared: {redis: \"redis://127.0.0.1:6379/0\", key_secret: 0123456789abcdef}\n",
             rules);
    c = load_ok(yaml);
    ck_assert_int_eq(config_rule_warnings(c, collect_warning, all), 0);
    config_unref(c);
}
END_TEST

/* enforce: false on a shared rule is a dry run in Redis (it loads, and shows in -T); so do cost
 * and cost_header (units in Redis), up to RATE_SHARED_COST_MAX units a request; turns and
 * in-flight caps stay this instance's, and the message names just those. */
START_TEST(test_shared_dry_run_loads)
{
    if (!shared_available())
        return; /* shared: true is refused at load: see test_shared_refused_until_available */
    static const char redis[] = "shared: {redis: \"redis://127.0.0.1:6379/0\"}\n";
    char yaml[1024];
    snprintf(
        yaml, sizeof yaml,
        "%srate_limits:\n  - {name: dry, limit: 5, window: 2s, shared: true, enforce: false}\n",
        redis);
    struct config *c = load_ok(yaml);
    ck_assert_int_eq(c->rate_limits[0].shared, 1);
    ck_assert_int_eq(c->rate_limits[0].enforce, 0);
    config_unref(c);
    snprintf(yaml, sizeof yaml,
             "%srate_limits:\n  - {name: units, limit: 1000, window: 2s, shared: true, cost: 1000}"
             "\n  - {name: header, limit: 1000, window: 2s, shared: true, cost_header: X-Cost}\n",
             redis);
    c = load_ok(yaml);
    ck_assert_uint_eq(c->rate_limits[0].cost, 1000);
    ck_assert_str_eq(c->rate_limits[1].cost_header, "X-Cost");
    config_unref(c);
    static const char *const local_only[] = {"fair_by: client, over_limit: delay",
                                             "max_concurrent: 1"};
    for (size_t i = 0; i < sizeof local_only / sizeof local_only[0]; i++) {
        snprintf(yaml, sizeof yaml,
                 "%srate_limits:\n  - {name: s, limit: 5, window: 2s, shared: true, %s}\n", redis,
                 local_only[i]);
        ck_assert_str_eq(load_err(yaml), "t.yaml: rate_limits[0]: fair_by and max_concurrent are "
                                         "for local rules only, not with shared: true");
    }
    snprintf(yaml, sizeof yaml,
             "%srate_limits:\n  - {name: s, limit: 5000, window: 2s, shared: true, cost: 1001}\n",
             redis);
    ck_assert_str_eq(load_err(yaml), "t.yaml: rate_limits[0].cost: 1001 is more than 1000, the "
                                     "most a shared rule's request may cost");
    snprintf(yaml, sizeof yaml,
             "%srate_limits:\n  - {name: s, limit: 1001, window: 2s, shared: true, "
             "cost_header: X-Cost}\n",
             redis);
    ck_assert_str_eq(load_err(yaml), "t.yaml: rate_limits[0].cost_header: a value may be up to "
                                     "limit (1001), more than 1000, the most a shared rule's "
                                     "request may cost");
}
END_TEST

/* The README's rate-limit example is a working HTTPS rule: it loads and draws no warning. */
START_TEST(test_readme_rate_example_warns_nothing)
{
    const char *start;
    char *readme = unit_slurp_at("README.md", "```yaml\ntls_intercept:",
                                 "yaml example starting with tls_intercept:", &start);
    start += strlen("```yaml\n");
    const char *end = strstr(start, "```");
    ck_assert_ptr_nonnull(end);
    char *yaml = strndup(start, (size_t)(end - start));
    struct config *c = load_ok(yaml);
    ck_assert_uint_ge(c->rate_limits_count, 1);
    ck_assert_ptr_nonnull(c->rate_limits[0].match_path_prefix);
    char all[4096] = "";
    ck_assert_int_eq(config_rule_warnings(c, collect_warning, all), 0);
    config_unref(c);
    free(yaml);
    free(readme);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    unit_add_tcase(s, tcase_create("table"),
                   UNIT_TESTS(test_table_is_consistent, test_log_level_words_match_log_h,
                              test_public_key_names));

    TCase *t = unit_add_tcase(s, tcase_create("defaults"),
                              UNIT_TESTS(test_default_config, test_one_key_keeps_other_defaults));
    tcase_add_loop_test(t, test_empty_means_defaults, 0,
                        sizeof empty_inputs / sizeof empty_inputs[0]);

    t = unit_add_tcase(s, tcase_create("values"),
                       UNIT_TESTS(test_every_type_from_yaml, test_empty_lists_where_allowed,
                                  test_workers_auto, test_listen_port_zero_may_repeat));
    tcase_add_loop_test(t, test_parse_duration, 0, sizeof durations / sizeof durations[0]);
    tcase_add_loop_test(t, test_parse_size, 0, sizeof sizes / sizeof sizes[0]);
    tcase_add_loop_test(t, test_listen_forms, 0, sizeof listens / sizeof listens[0]);

    find_cases();
    t = unit_add_tcase(s, tcase_create("errors"),
                       UNIT_TESTS(test_error_cases_found, test_shared_refused_until_available,
                                  test_shared_dry_run_loads, test_auth_users, test_invalid_utf8,
                                  test_numeric_bounds, test_list_length_bounds, test_size_limit,
                                  test_small_or_missing_error_buffer, test_not_nul_terminated));
    tcase_add_loop_test(t, test_error_cases, 0, case_count);

    t = unit_add_tcase(s, tcase_create("rate_limits"),
                       UNIT_TESTS(test_rules_issue_example_file, test_rules_every_field,
                                  test_rule_defaults, test_rule_header_keys,
                                  test_rule_single_or_list, test_rule_fields_table,
                                  test_rule_numeric_bounds, test_rule_seed_loads));
    tcase_add_loop_test(t, test_rule_errors_free_everything, 0,
                        sizeof rule_errors_late / sizeof rule_errors_late[0]);

    unit_add_tcase(
        s, tcase_create("files"),
        UNIT_TESTS(test_file_on_disk, test_users_file_bounded, test_file_errors, test_refcount));

    unit_add_tcase(s, tcase_create("drift"),
                   UNIT_TESTS(test_man_page_lists_every_key, test_sample_config_sets_every_key,
                              test_sample_config_loads_as_defaults,
                              test_man_page_lists_every_rule_field,
                              test_sample_config_rate_example));

    unit_add_tcase(s, tcase_create("dump"),
                   UNIT_TESTS(test_dump_round_trips, test_dump_masks_secrets,
                              test_dump_masks_key_secret, test_dump_round_trips_header_keys,
                              test_dump_escapes_what_yaml_would_fold,
                              test_diff_names_each_changed_key));

    t = unit_add_tcase(
        s, tcase_create("warnings"),
        UNIT_TESTS(test_readme_rate_example_warns_nothing, test_shared_header_key_warning));
    tcase_add_loop_test(t, test_rule_warnings, 0, sizeof warning_cases / sizeof warning_cases[0]);
    return s;
}

int main(void)
{
    return unit_run(config_suite());
}
