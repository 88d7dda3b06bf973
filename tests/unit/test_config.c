/* test_config.c — the configuration module: the declaration table, defaults, every value type,
 * every error form with its exact FILE:LINE:COLUMN, files on disk, reference counting, and the
 * drift check that keeps man/rlproxy.yaml.5 and conf/rlproxy.yaml in step with the table. */

#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

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

/* make check sets RLPROXY_SRCDIR (builds may be out of tree); by hand, run from the source root. */
static void srcdir_path(const char *relative, char *path, size_t len)
{
    const char *dir = getenv("RLPROXY_SRCDIR");
    snprintf(path, len, "%s/%s", dir != NULL && *dir != '\0' ? dir : ".", relative);
}

static char *slurp(const char *relative)
{
    char path[4096];
    srcdir_path(relative, path, sizeof path);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (set RLPROXY_SRCDIR)", path);
    static const size_t cap = 1 << 20;
    char *buf = malloc(cap + 1);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
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
                      k->type == CONFIG_PORT_LIST || k->type == CONFIG_HOST_PATTERN_LIST;
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
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        ck_assert_msg(config_key_find(names[i]) != NULL, "%s missing", names[i]);
    ck_assert_int_eq(config_key_find("workers")->reloadable, 0);
    ck_assert_int_eq(config_key_find("listen")->reloadable, 1);
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

/* ---- errors: the exact text, position included ---- */

struct error_case {
    const char *yaml, *message;
};

static const struct error_case errors[] = {
    /* bounds */
    {"timeouts:\n  client_header: 0s\n",
     "t.yaml:2:18: timeouts.client_header: 0s is below the minimum 100ms"},
    {"timeouts:\n  tunnel_idle: 2d\n",
     "t.yaml:2:16: timeouts.tunnel_idle: 2d is above the maximum 1d"},
    {"timeouts:\n  upstream_connect: 601s\n",
     "t.yaml:2:21: timeouts.upstream_connect: 601s is above the maximum 10m"},
    {"http:\n  max_header_size: 2MiB\n",
     "t.yaml:2:20: http.max_header_size: 2MiB is above the maximum 1MiB"},
    {"http:\n  max_request_line: 255\n",
     "t.yaml:2:21: http.max_request_line: 255 is below the minimum 256"},
    {"backpressure: {buffer: 16383}\n",
     "t.yaml:1:24: backpressure.buffer: 16383 is below the minimum 16KiB"},
    {"workers: 0\n", "t.yaml:1:10: workers: 0 is below the minimum 1"},
    {"workers: 257\n", "t.yaml:1:10: workers: 257 is above the maximum 256"},
    {"listen: []\n", "t.yaml:1:9: listen: needs at least 1 entry"},
    /* unknown keys */
    {"timeouts:\n  client_headr: 1s\n",
     "t.yaml:2:3: timeouts.client_headr: unknown key, did you mean timeouts.client_header?"},
    {"client_header: 1s\n",
     "t.yaml:1:1: client_header: unknown key, did you mean timeouts.client_header?"},
    {"timeout:\n  client_header: 1s\n", "t.yaml:1:1: timeout: unknown key, did you mean timeouts?"},
    {"timeouts:\n  connect: 1s\n",
     "t.yaml:2:3: timeouts.connect: unknown key, did you mean timeouts.upstream_connect?"},
    {"log: {acces_format: json}\n",
     "t.yaml:1:7: log.acces_format: unknown key, did you mean log.access_format?"},
    {"frobnicate: 1\n", "t.yaml:1:1: frobnicate: unknown key"},
    {"\"\": 1\n", "t.yaml:1:1: empty key"},
    {"timeouts.client_header: 1s\n", "t.yaml:1:1: timeouts.client_header: a key cannot contain a "
                                     "dot; nest each part under the one before it"},
    /* duplicates */
    {"log:\n  level: debug\n  level: info\n",
     "t.yaml:3:3: log.level: duplicate key (first given at line 2, column 3)"},
    {"workers: 1\nworkers: 2\n",
     "t.yaml:2:1: workers: duplicate key (first given at line 1, column 1)"},
    {"timeouts:\n  client_idle: 1s\ntimeouts:\n  client_body: 1s\n",
     "t.yaml:3:1: timeouts: duplicate key (first given at line 1, column 1)"},
    {"connect:\n  allowed_ports: [443, 443]\n",
     "t.yaml:2:24: connect.allowed_ports: 443 is listed twice"},
    {"access: {allow: [10.0.0.0/8, 10.9.9.9/8]}\n",
     "t.yaml:1:30: access.allow: 10.9.9.9/8 is listed twice"},
    {"listen: [\"*:80\", \"0.0.0.0:80\"]\n", "t.yaml:1:18: listen: 0.0.0.0:80 is listed twice"},
    /* shapes */
    {"listen: 127.0.0.1:80\n", "t.yaml:1:9: listen: expected a list of addresses, such as "
                               "[\"127.0.0.1:3128\"], got a single value"},
    {"connect: {allowed_ports: 443}\n", "t.yaml:1:26: connect.allowed_ports: expected a list of "
                                        "ports, such as [443], got a single value"},
    {"workers: [1]\n", "t.yaml:1:10: workers: expected auto or a number, got a list"},
    {"shutdown_timeout: {a: 1}\n",
     "t.yaml:1:19: shutdown_timeout: expected a duration such as 10s, got a mapping"},
    {"timeouts: 10s\n", "t.yaml:1:11: timeouts: expected a mapping of keys such as client_header:, "
                        "got a single value"},
    {"log:\n  - level\n", "t.yaml:2:3: log: expected a mapping of keys such as level:, got a list"},
    {"listen:\n  - 127.0.0.1:80\n  - [a]\n",
     "t.yaml:3:5: listen: list entries must be single values, not a list"},
    {"listen:\n  -\n", "t.yaml:2:4: listen: empty list entry"},
    {"log:\n  level:\n", "t.yaml:2:9: log.level: needs a value, such as info"},
    {"[1, 2]\n", "t.yaml:1:1: the top level must be a mapping of keys such as listen:, not a list"},
    {"just words\n",
     "t.yaml:1:1: the top level must be a mapping of keys such as listen:, not a single value"},
    {"? [a]\n: 1\n", "t.yaml:1:3: keys must be single words, not a list"},
    {"workers: 2\n---\nworkers: 3\n",
     "t.yaml:2:1: a config holds one YAML document; remove the second ---"},
    /* values */
    {"log:\n  level: verbose\n",
     "t.yaml:2:10: log.level: \"verbose\" is not one of error, warn, notice, info, debug"},
    {"log: {access_format: xml}\n",
     "t.yaml:1:22: log.access_format: \"xml\" is not one of text, json"},
    {"log: {access: ''}\n", "t.yaml:1:15: log.access: must not be empty"},
    {"log: {access: \"a\\0b\"}\n", "t.yaml:1:15: log.access: contains a NUL character"},
    {"workers: many\n", "t.yaml:1:10: workers: \"many\" is not auto or a number"},
    {"shutdown_timeout: 10\n",
     "t.yaml:1:19: shutdown_timeout: 10 needs a unit: ms, s, m, h or d (as in 10s)"},
    {"shutdown_timeout: soon\n",
     "t.yaml:1:19: shutdown_timeout: \"soon\" is not a duration such as 250ms, 10s, 5m, 1h or 1d"},
    {"shutdown_timeout: 99999999999999999999d\n",
     "t.yaml:1:19: shutdown_timeout: 99999999999999999999d is too large"},
    {"http:\n  max_header_size: lots\n",
     "t.yaml:2:20: http.max_header_size: \"lots\" is not a size such as 512, 64KiB or 1MiB"},
    {"access:\n  allow: [10.0.0.0/33]\n", "t.yaml:2:11: access.allow: \"10.0.0.0/33\" is not an "
                                          "address block such as 10.0.0.0/8 or ::1/128"},
    {"connect:\n  allowed_ports: [443, 0]\n",
     "t.yaml:2:24: connect.allowed_ports: \"0\" is not a port from 1 to 65535"},
    {"connect:\n  allowed_ports: [65536]\n",
     "t.yaml:2:19: connect.allowed_ports: \"65536\" is not a port from 1 to 65535"},
    {"listen: [\"example.com:80\"]\n",
     "t.yaml:1:10: listen: \"example.com:80\": listen needs an IP address (or * or localhost)"},
    {"listen: [\"::1:80\"]\n",
     "t.yaml:1:10: listen: \"::1:80\": an IPv6 address goes in brackets, as in [::1]:3128"},
    {"listen: [\"127.0.0.1\"]\n",
     "t.yaml:1:10: listen: \"127.0.0.1\": needs an address and a port, as in 127.0.0.1:3128"},
    {"listen: [\"127.0.0.1:65536\"]\n",
     "t.yaml:1:10: listen: \"127.0.0.1:65536\": needs a port from 0 to 65535 after the colon"},
    {"listen: [\":80\"]\n", "t.yaml:1:10: listen: \":80\": listen needs an IP address"},
    {"listen: [\"[::1]80\"]\n", "t.yaml:1:10: listen: \"[::1]80\": an IPv6 listen address is "
                                "written [address]:port, as in [::1]:3128"},
    {"listen: [\"[fe80::1%eth0]:80\"]\n",
     "t.yaml:1:10: listen: \"[fe80::1%eth0]:80\": listen needs an IP "
     "address; [fe80::1%eth0] is not an IPv6 address"},
    /* refused YAML features */
    {"log: &a {level: info}\n", "t.yaml:1:6: log: anchors (&name) are not allowed"},
    {"log: {level: *a}\n", "t.yaml:1:14: log.level: aliases (*name) are not allowed"},
    {"workers: !!int 3\n", "t.yaml:1:10: workers: tags (!name) are not allowed"},
    /* syntax, with libyaml's own words */
    {"log:\n  level: info\n level2: x\n",
     "t.yaml:3:2: did not find expected key (while parsing a block mapping at line 1, column 1)"},
    {"log:\n  access: \"x\n", "t.yaml:3:1: found unexpected end of stream (while scanning a quoted "
                              "scalar at line 2, column 11)"},
    {"log:\n  level: info\n\tfoo: 1\n",
     "t.yaml:3:1: found a tab character that violates indentation "
     "(while scanning a plain scalar at line 2, column 10)"},
};

START_TEST(test_error_messages)
{
    const struct error_case *t = &errors[_i];
    ck_assert_str_eq(load_err(t->yaml), t->message);
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
    size_t cap = 64 + count * 32;
    char *buf = malloc(cap), *p = buf;
    const char *dot = strchr(k->name, '.');
    if (dot == NULL)
        p += sprintf(p, "%s:\n", k->name);
    else
        p += sprintf(p, "%.*s:\n  %s:\n", (int)(dot - k->name), k->name, dot + 1);
    for (size_t i = 0; i < count; i++) {
        if (k->type == CONFIG_LISTEN_LIST)
            p += sprintf(p, "    - \"127.0.0.1:%zu\"\n", 1000 + i);
        else if (k->type == CONFIG_CIDR_LIST)
            p += sprintf(p, "    - 10.%zu.%zu.0/24\n", i / 256, i % 256);
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
    char *man = slurp("man/rlproxy.yaml.5");
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
    if (node->type != YAML_MAPPING_NODE) {
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
    char *conf = slurp("conf/rlproxy.yaml");
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

START_TEST(test_sample_config_loads_as_defaults)
{
    char path[4096], err[512];
    srcdir_path("conf/rlproxy.yaml", path, sizeof path);
    struct config *c = NULL;
    ck_assert_msg(config_load_file(path, &c, err, sizeof err) == 0, "%s", err);
    /* Its header promises every key at its default. */
    assert_defaults(c);
    config_unref(c);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *t = tcase_create("table");
    tcase_add_test(t, test_table_is_consistent);
    tcase_add_test(t, test_log_level_words_match_log_h);
    tcase_add_test(t, test_public_key_names);
    suite_add_tcase(s, t);

    t = tcase_create("defaults");
    tcase_add_test(t, test_default_config);
    tcase_add_loop_test(t, test_empty_means_defaults, 0,
                        sizeof empty_inputs / sizeof empty_inputs[0]);
    tcase_add_test(t, test_one_key_keeps_other_defaults);
    suite_add_tcase(s, t);

    t = tcase_create("values");
    tcase_add_loop_test(t, test_parse_duration, 0, sizeof durations / sizeof durations[0]);
    tcase_add_loop_test(t, test_parse_size, 0, sizeof sizes / sizeof sizes[0]);
    tcase_add_test(t, test_every_type_from_yaml);
    tcase_add_test(t, test_empty_lists_where_allowed);
    tcase_add_test(t, test_workers_auto);
    tcase_add_loop_test(t, test_listen_forms, 0, sizeof listens / sizeof listens[0]);
    tcase_add_test(t, test_listen_port_zero_may_repeat);
    suite_add_tcase(s, t);

    t = tcase_create("errors");
    tcase_add_loop_test(t, test_error_messages, 0, sizeof errors / sizeof errors[0]);
    tcase_add_test(t, test_invalid_utf8);
    tcase_add_test(t, test_numeric_bounds);
    tcase_add_test(t, test_list_length_bounds);
    tcase_add_test(t, test_size_limit);
    tcase_add_test(t, test_small_or_missing_error_buffer);
    tcase_add_test(t, test_not_nul_terminated);
    suite_add_tcase(s, t);

    t = tcase_create("files");
    tcase_add_test(t, test_file_on_disk);
    tcase_add_test(t, test_file_errors);
    tcase_add_test(t, test_refcount);
    suite_add_tcase(s, t);

    t = tcase_create("drift");
    tcase_add_test(t, test_man_page_lists_every_key);
    tcase_add_test(t, test_sample_config_sets_every_key);
    tcase_add_test(t, test_sample_config_loads_as_defaults);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(config_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
