/* config.c — owns the declaration table (every key: name, type, default, bounds, doc, reloadable),
 * what each type's values mean (durations, sizes, CIDR blocks, listen addresses, ports, words), the
 * embedded default and the reference count. config_yaml.c finds values in YAML and hands their text
 * here, and the defaults are parsed from the table's own default_text through that same walker, so
 * a documented default cannot drift from the one that serves.
 *
 * Adding a key is one row in keys[]. Adding a type is one entry in type_ops[] (a scalar parser, or
 * an element parser and elem_size for a list). rate_limits, a list of mappings, has its own walk
 * function in config_yaml.c; each mapping is walked against a second table, rule_fields[], whose
 * offsets are into struct rate_rule, with the same parsers, and its release hook frees a rule's
 * lists through that table. */

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>
#include <unistd.h>

#define MS_PER_S UINT64_C(1000)
#define MS_PER_M (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_M)
#define MS_PER_D (24 * MS_PER_H)
#define KIB UINT64_C(1024)
#define MIB (1024 * KIB)

/* ENUM values are stored through an int-sized object; the enums in struct config must fit that. */
_Static_assert(sizeof(enum access_format) == sizeof(int), "enum storage");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum storage");
_Static_assert(sizeof(enum rate_key) == sizeof(int), "enum storage");
_Static_assert(sizeof(enum rate_over_limit) == sizeof(int), "enum storage");
/* UINT stores an unsigned; the rate-rule and max-keys fields are uint32_t. */
_Static_assert(sizeof(unsigned) == sizeof(uint32_t), "uint storage");
/* retry.methods shares match.method's type and fixed-array storage. */
_Static_assert(RETRY_MAX_METHODS == RATE_RULE_MAX_METHODS, "method list storage");

/* Index order is the enum order: the ENUM parser stores the index. */
static const char *const log_level_words[] = {"error", "warn", "notice", "info", "debug", NULL};
static const char *const access_format_words[] = {"text", "json", NULL};
static const char *const rate_key_words[] = {"client", "host",   "client+host",
                                             "user",   "global", NULL};
static const char *const over_limit_words[] = {"delay", "reject", NULL};
static const char *const jitter_words[] = {"none", "full", NULL};
static const char *const on_error_words[] = {"local", "deny", "allow", NULL};

#define ROW(name_, type_, default_, min_, max_, choices_, reloadable_, field_, doc_)               \
    {                                                                                              \
        .name = (name_), .type = (type_), .default_text = (default_), .min = (min_),               \
        .max = (max_), .choices = (choices_), .reloadable = (reloadable_), .doc = (doc_),          \
        .offset = offsetof(struct config, field_)                                                  \
    }
#define LIST_ROW(name_, type_, default_, min_, max_, reloadable_, field_, doc_)                    \
    {                                                                                              \
        .name = (name_), .type = (type_), .default_text = (default_), .min = (min_),               \
        .max = (max_), .reloadable = (reloadable_), .doc = (doc_),                                 \
        .offset = offsetof(struct config, field_),                                                 \
        .count_offset = offsetof(struct config, field_##_count)                                    \
    }

/* The one declaration table. Docs are single sentences: the man page repeats them verbatim and
 * test_config checks that it does. Bounds of DURATION are in ms, of SIZE in bytes, of lists in
 * entries. */
static const struct config_key keys[] = {
    LIST_ROW("listen", CONFIG_LISTEN_LIST, "[\"127.0.0.1:3128\"]", 1, 64, 1, listen,
             "Addresses that accept proxy clients, as IP:port; port 0 picks a free port"),
    ROW("workers", CONFIG_WORKERS, "auto", 1, 256, NULL, 0, workers,
        "Worker threads, each with its own event loop; auto starts one per online CPU"),
    ROW("shutdown_timeout", CONFIG_DURATION, "30s", 0, MS_PER_H, NULL, 1, shutdown_timeout_ms,
        "How long a graceful stop waits for in-flight requests and tunnels"),
    LIST_ROW("access.allow", CONFIG_CIDR_LIST, "[\"127.0.0.0/8\", \"::1/128\"]", 0, 4096, 1,
             access_allow,
             "Client address blocks allowed to use the proxy; clients outside get 403"),
    ROW("access.max_connections_per_client", CONFIG_UINT, "256", 0, 1000000, NULL, 1,
        max_connections_per_client,
        "Connections one client address may hold open at once, tunnels included; 0 means no cap"),
    ROW("auth.realm", CONFIG_STRING, "rlproxy", 0, 0, NULL, 1, auth_realm,
        "Realm named in the Proxy-Authenticate challenge"),
    LIST_ROW("auth.users", CONFIG_USER_MAP, "{}", 0, 10000, 1, auth_users,
             "Users allowed to use the proxy and their crypt(3) password hashes; when any user is configured every request must authenticate"),
    ROW("auth.users_file", CONFIG_OPTIONAL_STRING, "\"\"", 0, 0, NULL, 1, auth_users_file,
        "File of user:hash lines read at start and on reload, in addition to auth.users; a regular file of at most 16 MiB and 10000 users"),
    LIST_ROW("destinations.deny", CONFIG_HOST_PATTERN_LIST, "[\"169.254.0.0/16\", \"fe80::/10\"]", 0,
             4096, 1, destinations_deny,
             "Destinations refused with 403: names, *.suffix patterns, or address blocks checked on the address actually connected to"),
    LIST_ROW("destinations.allow_ports", CONFIG_PORT_LIST, "[]", 0, 1024, 1,
             destinations_allow_ports,
             "Destination ports allowed for any request; an empty list allows every port to plain requests"),
    LIST_ROW("connect.allowed_ports", CONFIG_PORT_LIST, "[443]", 0, 1024, 1, connect_allowed_ports,
             "Destination ports that CONNECT may open tunnels to; other ports get 403"),
    ROW("timeouts.client_header", CONFIG_DURATION, "10s", 100, MS_PER_H, NULL, 1,
        client_header_timeout_ms, "Time a client has to send a complete request head"),
    ROW("timeouts.client_idle", CONFIG_DURATION, "60s", 100, MS_PER_D, NULL, 1,
        client_idle_timeout_ms,
        "Time a keep-alive client connection may sit idle between requests"),
    ROW("timeouts.client_body", CONFIG_DURATION, "30s", 100, MS_PER_D, NULL, 1,
        client_body_timeout_ms, "Longest stall allowed between two reads of a request body"),
    ROW("timeouts.upstream_connect", CONFIG_DURATION, "10s", 100, 10 * MS_PER_M, NULL, 1,
        upstream_connect_timeout_ms, "Time allowed to open a connection to an origin server"),
    ROW("timeouts.upstream_response", CONFIG_DURATION, "60s", 100, MS_PER_D, NULL, 1,
        upstream_response_timeout_ms,
        "Time from sending a request upstream until the first byte of its response"),
    ROW("timeouts.tunnel_idle", CONFIG_DURATION, "5m", MS_PER_S, MS_PER_D, NULL, 1,
        tunnel_idle_timeout_ms, "Time a CONNECT tunnel may pass no bytes in either direction"),
    ROW("http.max_request_line", CONFIG_SIZE, "8KiB", 256, MIB, NULL, 1, max_request_line,
        "Longest request line accepted; longer ones get 414"),
    ROW("http.max_header_size", CONFIG_SIZE, "32KiB", KIB, MIB, NULL, 1, max_header_size,
        "Largest request head (request line and headers) accepted; larger ones get 431"),
    ROW("backpressure.buffer", CONFIG_SIZE, "256KiB", 16 * KIB, 64 * MIB, NULL, 1, buffer_size,
        "Bytes buffered per direction per connection before reading pauses"),
    ROW("log.level", CONFIG_LOG_LEVEL, "info", 0, 0, log_level_words, 1, log_level,
        "Least severe diagnostic written to stderr"),
    ROW("log.access", CONFIG_STRING, "stderr", 0, 0, NULL, 1, access_log,
        "Where access-log lines go: stderr, stdout, off, or a file to append to"),
    ROW("log.access_format", CONFIG_ENUM, "text", 0, 0, access_format_words, 1, access_format,
        "Access-log line format, one line per request or tunnel"),
    LIST_ROW("admin.listen", CONFIG_LISTEN_LIST, "[\"127.0.0.1:9128\"]", 0, 8, 0, admin_listen,
             "Addresses of the admin endpoint serving /metrics and /healthz; an empty list disables it"),
    ROW("tls_intercept.ca_cert", CONFIG_OPTIONAL_STRING, "\"\"", 0, 0, NULL, 1, tls_ca_cert,
        "PEM certificate of the CA that signs the certificates shown to clients of intercepted hosts"),
    ROW("tls_intercept.ca_key", CONFIG_OPTIONAL_STRING, "\"\"", 0, 0, NULL, 1, tls_ca_key,
        "PEM private key of that CA; refused unless only its owner can read it"),
    LIST_ROW("tls_intercept.hosts", CONFIG_HOST_NAME_LIST, "[]", 0, 1024, 1, tls_intercept_hosts,
             "Hosts whose CONNECT tunnels are opened so each request inside is limited, retried and logged; all others stay opaque"),
    ROW("tls_intercept.upstream_ca_file", CONFIG_OPTIONAL_STRING, "\"\"", 0, 0, NULL, 1,
        tls_upstream_ca_file,
        "Extra CA bundle for verifying origins, on top of the system store"),
    ROW("shared.redis", CONFIG_OPTIONAL_STRING, "\"\"", 0, 0, NULL, 0, shared_redis,
        "Redis server that rules with shared: true keep their windows in, as redis://IP:PORT/DB or unix:/path"),
    ROW("shared.on_error", CONFIG_ENUM, "local", 0, 0, on_error_words, 1, shared_on_error,
        "What a shared rule does when Redis does not answer: local uses this instance's own limiter, deny answers 503, allow admits"),
    ROW("shared.timeout", CONFIG_DURATION, "50ms", 1, 10 * MS_PER_S, NULL, 1, shared_timeout_ms,
        "Longest wait for Redis to decide one request before shared.on_error applies; a connection that leaves requests unanswered for 3 timeouts (at least 2s) is replaced"),
    ROW("upstream_proxy", CONFIG_PROXY_URL, "\"\"", 0, 0, NULL, 1, upstream_proxy,
        "Parent proxy that every request and tunnel goes through, or empty for direct connections"),
    LIST_ROW("upstream_proxy_bypass", CONFIG_HOST_PATTERN_LIST, "[]", 0, 1024, 1,
             upstream_proxy_bypass,
             "Destinations reached directly despite upstream_proxy: names, *.suffix patterns or address blocks"),
    ROW("backpressure.max_connections", CONFIG_UINT, "10000", 1, 10000000, NULL, 1,
        max_connections,
        "Client connections and tunnels open at once over all workers; at the cap the proxy stops accepting until 90% of it"),
    ROW("backpressure.max_inflight", CONFIG_UINT, "1024", 1, 1000000, NULL, 1, max_inflight,
        "Upstream transfers per worker; further requests wait unread, and as many again waiting get overload_status"),
    ROW("backpressure.overload_status", CONFIG_UINT, "503", 500, 599, NULL, 1, overload_status,
        "Status answered, with Retry-After, when a hard cap is hit"),
    ROW("retry.attempts", CONFIG_UINT, "3", 1, 10, NULL, 1, retry.attempts,
        "Tries per request including the first; 1 turns retries off"),
    ROW("retry.base_delay", CONFIG_DURATION, "100ms", 1, MS_PER_M, NULL, 1, retry.base_delay_ms,
        "Backoff before the first retry; each further retry doubles it"),
    ROW("retry.max_delay", CONFIG_DURATION, "10s", 1, MS_PER_H, NULL, 1, retry.max_delay_ms,
        "Longest backoff, and the longest upstream Retry-After that is waited for"),
    ROW("retry.jitter", CONFIG_ENUM, "full", 0, 0, jitter_words, 1, retry.jitter_full,
        "full draws each backoff uniformly between zero and its value; none uses the value"),
    LIST_ROW("retry.on", CONFIG_RETRY_ON_LIST, "[connect_error, timeout, 502, 503, 504, 429]", 0,
             16, 1, retry.on,
             "Failures that are retried: connect_error, timeout, or response statuses from 400 to 599"),
    LIST_ROW("retry.methods", CONFIG_METHOD_LIST, "[GET, HEAD, OPTIONS, PUT, DELETE]", 0,
             RETRY_MAX_METHODS, 1, retry.methods,
             "Methods retried after the request reached the origin; any method is retried when nothing was sent"),
    ROW("retry.max_body", CONFIG_SIZE, "1MiB", 0, 1024 * MIB, NULL, 1, retry.max_body,
        "Request bodies up to this size are kept for a retry; larger ones are never sent twice"),
    ROW("retry.budget", CONFIG_PERCENT, "20%", 0, 100, NULL, 1, retry.budget_percent,
        "Retries may add at most this share to the requests of the last 10 seconds"),
    LIST_ROW("rate_limits", CONFIG_RATE_RULES, "[]", 0, 1024, 1, rate_limits,
             "Rate-limit rules, tried in order; the first rule that matches a request applies, and a request no rule matches is not limited"),
    ROW("rate_limits_max_keys", CONFIG_UINT, "1000000", 1000, 100000000, NULL, 1,
        rate_limits_max_keys,
        "The most windows (distinct keys over all rules) kept at once; at the cap a request for a new key is refused with 429 until idle keys expire"),
};

#define KEY_COUNT (sizeof keys / sizeof keys[0])

#define RULE_ROW(name_, type_, default_, min_, max_, choices_, field_, doc_)                       \
    {                                                                                              \
        .name = (name_), .type = (type_), .default_text = (default_), .min = (min_),               \
        .max = (max_), .choices = (choices_), .reloadable = 1, .doc = (doc_),                      \
        .offset = offsetof(struct rate_rule, field_)                                               \
    }
#define RULE_REQUIRED(name_, type_, min_, max_, field_, doc_)                                      \
    {                                                                                              \
        .name = (name_), .type = (type_), .min = (min_), .max = (max_), .reloadable = 1,           \
        .doc = (doc_), .offset = offsetof(struct rate_rule, field_), .required = 1                 \
    }
/* Match lists are optional (empty matches everything) and take a single value for one entry. */
#define RULE_LIST(name_, type_, max_, field_, doc_)                                                \
    {                                                                                              \
        .name = (name_), .type = (type_), .max = (max_), .reloadable = 1, .doc = (doc_),           \
        .offset = offsetof(struct rate_rule, field_),                                              \
        .count_offset = offsetof(struct rate_rule, field_##_count), .single_ok = 1                 \
    }

/* The keys of one rate_limits entry. Required rows have no default; optional scalars have one;
 * match lists start empty. Docs follow the rules of keys[] (the man page repeats them). */
static const struct config_key rule_fields[] = {
    RULE_REQUIRED("name", CONFIG_RULE_NAME, 1, 63, name,
                  "Names the rule in 429 bodies, RateLimit fields, the access log and metrics"),
    RULE_LIST("match.host", CONFIG_HOST_NAME_LIST, 1024, match_host,
              "Destination hosts the rule applies to: exact names, single addresses or *.suffix patterns"),
    RULE_LIST("match.method", CONFIG_METHOD_LIST, RATE_RULE_MAX_METHODS, match_method,
              "Request methods the rule applies to, such as GET or CONNECT"),
    /* Not a list: one prefix per rule (NULL: none); several prefixes are several rules. */
    RULE_ROW("match.path_prefix", CONFIG_PATH_PREFIX, NULL, 0, 0, NULL, match_path_prefix,
             "Start of the request path (and query) the rule applies to, compared byte for byte"),
    RULE_LIST("match.client", CONFIG_CIDR_LIST, 4096, match_client,
              "Client address blocks the rule applies to"),
    RULE_LIST("match.user", CONFIG_USER_LIST, 1024, match_user,
              "Proxy user names the rule applies to"),
    RULE_ROW("key", CONFIG_ENUM, "client", 0, 0, rate_key_words, key,
             "What the rule counts separately: each client address, destination host, client and host pair or user, or all requests together"),
    RULE_REQUIRED("limit", CONFIG_UINT, 1, 1000000, limit,
                  "Most requests one key may have admitted within any span of one window"),
    RULE_REQUIRED("window", CONFIG_DURATION, 1, MS_PER_D, window_ms,
                  "Length of the sliding window that limit counts over"),
    RULE_ROW("over_limit", CONFIG_ENUM, "reject", 0, 0, over_limit_words, over_limit,
             "What a request over the limit gets: delay holds it until the window has room, reject answers 429 at once"),
    RULE_ROW("max_delay", CONFIG_DURATION, "30s", 0, MS_PER_H, NULL, max_delay_ms,
             "Longest a delayed request is held; one that would wait longer gets 429 at once"),
    RULE_ROW("max_queue", CONFIG_UINT, "1000", 0, 1000000, NULL, max_queue,
             "Most requests held at once by this rule; a request beyond it gets 429 at once"),
    RULE_ROW("headers", CONFIG_BOOL, "false", 0, 0, NULL, headers,
             "Whether admitted responses carry RateLimit-Policy and RateLimit fields too, as 429 responses always do"),
    RULE_ROW("shared", CONFIG_BOOL, "false", 0, 0, NULL, shared,
             "Keep this rule's windows in Redis (shared.redis) so that every rlproxy instance naming the same server shares one limit"),
};

#define RULE_FIELD_COUNT (sizeof rule_fields / sizeof rule_fields[0])
_Static_assert(RULE_FIELD_COUNT <= CONFIG_RULE_MAX_FIELDS, "config_yaml.c tracks this many fields");

const struct config_key *config_rule_fields(size_t *count)
{
    if (count != NULL)
        *count = RULE_FIELD_COUNT;
    return rule_fields;
}

const struct config_key *config_keys(size_t *count)
{
    if (count != NULL)
        *count = KEY_COUNT;
    return keys;
}

const struct config_key *config_key_find(const char *name)
{
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* ---- small parsers ---- */

/* Decimal digits only (no sign, space or base prefix), overflow-checked. *end gets the first
 * non-digit. */
static int parse_digits(const char *text, uint64_t *out, const char **end)
{
    uint64_t value = 0;
    const char *p = text;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (value > (UINT64_MAX - digit) / 10)
            return -1;
        value = value * 10 + digit;
    }
    if (p == text)
        return -1;
    *out = value;
    *end = p;
    return 0;
}

static int parse_number(const char *text, uint64_t *out)
{
    const char *end;
    return parse_digits(text, out, &end) == 0 && *end == '\0' ? 0 : -1;
}

static int all_digits(const char *text)
{
    if (*text == '\0')
        return 0;
    for (; *text != '\0'; text++)
        if (*text < '0' || *text > '9')
            return 0;
    return 1;
}

struct unit {
    const char *suffix;
    uint64_t factor;
};

static const struct unit duration_units[] = {
    {"ms", 1}, {"s", MS_PER_S}, {"m", MS_PER_M}, {"h", MS_PER_H}, {"d", MS_PER_D}, {NULL, 0},
};

/* IEC powers of 1024 and SI powers of 1000 ("kB" is the SI spelling, "KB" the common one). */
static const struct unit size_units[] = {
    {"", 1},      {"B", 1},     {"KiB", KIB},    {"MiB", MIB},       {"GiB", 1024 * MIB},
    {"KB", 1000}, {"kB", 1000}, {"MB", 1000000}, {"GB", 1000000000}, {NULL, 0},
};

/* Digits then one of the units: the form is right even if the value overflows. */
static int has_unit_form(const char *text, const struct unit *units)
{
    const char *p = text;
    while (*p >= '0' && *p <= '9')
        p++;
    for (const struct unit *u = units; p != text && u->suffix != NULL; u++)
        if (strcmp(p, u->suffix) == 0)
            return 1;
    return 0;
}

static int parse_with_unit(const char *text, const struct unit *units, uint64_t *out)
{
    uint64_t value;
    const char *end;
    if (parse_digits(text, &value, &end) != 0)
        return -1;
    for (const struct unit *u = units; u->suffix != NULL; u++) {
        if (strcmp(end, u->suffix) != 0)
            continue;
        if (value > UINT64_MAX / u->factor)
            return -1;
        *out = value * u->factor;
        return 0;
    }
    return -1;
}

int config_parse_duration_ms(const char *text, uint64_t *out)
{
    /* A bare number is ambiguous (seconds? ms?) so only 0, which means the same in every unit, may
     * go without one. */
    if (strcmp(text, "0") == 0) {
        *out = 0;
        return 0;
    }
    return parse_with_unit(text, duration_units, out);
}

int config_parse_size(const char *text, uint64_t *out)
{
    return parse_with_unit(text, size_units, out);
}

/* The largest unit that divides the value exactly, so messages read "100ms", "5m", "1MiB". */
static void format_with_unit(uint64_t value, const struct unit *units, size_t n, char *buf,
                             size_t len)
{
    const char *suffix = units[0].suffix;
    uint64_t factor = 1;
    for (size_t i = 0; i < n; i++)
        if (value != 0 && value % units[i].factor == 0 && units[i].factor >= factor) {
            factor = units[i].factor;
            suffix = units[i].suffix;
        }
    snprintf(buf, len, "%llu%s", (unsigned long long)(value / factor), value == 0 ? "" : suffix);
}

static void format_duration(uint64_t ms, char *buf, size_t len)
{
    format_with_unit(ms, duration_units, 5, buf, len);
}

static void format_size(uint64_t bytes, char *buf, size_t len)
{
    static const struct unit iec[] = {{"", 1}, {"KiB", KIB}, {"MiB", MIB}, {"GiB", 1024 * MIB}};
    format_with_unit(bytes, iec, 4, buf, len);
}

/* Values are echoed in messages; keep them short and free of control characters. len >= 8. */
static const char *printable(const char *text, char *buf, size_t len)
{
    size_t n = strlen(text), keep = n < len ? n : len - 4;
    for (size_t i = 0; i < keep; i++)
        buf[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
    if (keep < n)
        memcpy(buf + keep, "...", 4);
    else
        buf[keep] = '\0';
    return buf;
}

static int why_fail(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int why_fail(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why != NULL && why_len > 0)
        vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- CIDR blocks ---- */

int cidr_parse(const char *text, struct cidr *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t host_len = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (host_len == 0 || host_len >= sizeof host)
        return -1;
    memcpy(host, text, host_len);
    host[host_len] = '\0';

    struct cidr block = {0};
    unsigned max_prefix;
    if (inet_pton(AF_INET, host, block.addr) == 1) {
        block.family = AF_INET;
        max_prefix = 32;
    } else if (inet_pton(AF_INET6, host, block.addr) == 1) {
        block.family = AF_INET6;
        max_prefix = 128;
    } else {
        return -1;
    }
    uint64_t prefix = max_prefix;
    if (slash != NULL && (parse_number(slash + 1, &prefix) != 0 || prefix > max_prefix))
        return -1;
    block.prefix = (unsigned)prefix;
    /* Host bits are masked off rather than refused: "10.1.2.3/8" can only mean 10.0.0.0/8. */
    for (unsigned bit = block.prefix; bit < max_prefix; bit++)
        block.addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    *out = block;
    return 0;
}

static int prefix_matches(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

/* A client is the same client whether a dual-stack socket shows it as ::ffff:a.b.c.d or an IPv4
 * socket as a.b.c.d: both match IPv4 blocks, and both match IPv6 blocks in their mapped form (so
 * ::/0 matches every client, and ::ffff:0:0/96 every IPv4 client). */
int cidr_contains(const struct cidr *cidr, const struct sockaddr *addr)
{
    static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    uint8_t v6[16];
    if (addr->sa_family == AF_INET) {
        memcpy(v6, mapped_prefix, 12);
        memcpy(v6 + 12, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, 4);
    } else if (addr->sa_family == AF_INET6) {
        memcpy(v6, &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr, 16);
    } else {
        return 0;
    }
    int is_v4 = memcmp(v6, mapped_prefix, 12) == 0;
    if (cidr->family == AF_INET)
        return is_v4 && cidr->prefix <= 32 && prefix_matches(cidr->addr, v6 + 12, cidr->prefix);
    if (cidr->family == AF_INET6)
        return cidr->prefix <= 128 && prefix_matches(cidr->addr, v6, cidr->prefix);
    return 0;
}

/* ---- listen addresses ---- */

/* Split "host:port" / "[v6]:port" into host text and port; -1 with a reason. */
static int split_host_port(const char *text, char *host, size_t host_len, int *bracketed,
                           uint64_t *port, char *why, size_t why_len)
{
    const char *host_start = text, *host_end, *colon;
    *bracketed = text[0] == '[';
    if (*bracketed) {
        host_start = text + 1;
        host_end = strchr(host_start, ']');
        if (host_end == NULL || host_end[1] != ':')
            return why_fail(why, why_len,
                            "an IPv6 listen address is written [address]:port, as in [::1]:3128");
        colon = host_end + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return why_fail(why, why_len, "needs an address and a port, as in 127.0.0.1:3128");
        host_end = colon;
        if (memchr(text, ':', (size_t)(colon - text)) != NULL)
            return why_fail(why, why_len, "an IPv6 address goes in brackets, as in [::1]:3128");
    }
    if (parse_number(colon + 1, port) != 0 || *port > 65535)
        return why_fail(why, why_len, "needs a port from 0 to 65535 after the colon");
    size_t n = (size_t)(host_end - host_start);
    if (n == 0 || n >= host_len)
        return why_fail(why, why_len, "listen needs an IP address");
    memcpy(host, host_start, n);
    host[n] = '\0';
    return 0;
}

static int parse_listen(const char *text, struct listen_addr *out, char *why, size_t why_len)
{
    char host[INET6_ADDRSTRLEN + 1], shown[INET6_ADDRSTRLEN];
    int bracketed = 0;
    uint64_t port = 0; /* set by split_host_port(); GCC -O3 cannot see that */
    if (split_host_port(text, host, sizeof host, &bracketed, &port, why, why_len) != 0)
        return -1;
    memset(out, 0, sizeof *out);
    if (!bracketed) {
        /* Only "localhost" is resolved: a name that resolves differently tomorrow has no place in a
         * bind address, and getaddrinfo() would make loading depend on DNS. */
        const char *ip = strcmp(host, "*") == 0           ? "0.0.0.0"
                         : strcmp(host, "localhost") == 0 ? "127.0.0.1"
                                                          : host;
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
        if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1)
            return why_fail(why, why_len, "listen needs an IP address (or * or localhost)");
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->addr_len = sizeof *sin;
        inet_ntop(AF_INET, &sin->sin_addr, shown, sizeof shown);
        snprintf(out->text, sizeof out->text, "%s:%u", shown, (unsigned)port);
        return 0;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
        return why_fail(why, why_len, "listen needs an IP address; [%s] is not an IPv6 address",
                        host);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    out->addr_len = sizeof *sin6;
    inet_ntop(AF_INET6, &sin6->sin6_addr, shown, sizeof shown);
    snprintf(out->text, sizeof out->text, "[%s]:%u", shown, (unsigned)port);
    return 0;
}

/* ---- per-type value handling ---- */

static int check_range(const struct config_key *key, const char *text, uint64_t value,
                       void (*format)(uint64_t, char *, size_t), char *why, size_t why_len)
{
    char bound[32], shown[64];
    if (value < key->min) {
        format(key->min, bound, sizeof bound);
        return why_fail(why, why_len, "%s is below the minimum %s",
                        printable(text, shown, sizeof shown), bound);
    }
    if (value > key->max) {
        format(key->max, bound, sizeof bound);
        return why_fail(why, why_len, "%s is above the maximum %s",
                        printable(text, shown, sizeof shown), bound);
    }
    return 0;
}

static void format_plain(uint64_t value, char *buf, size_t len)
{
    snprintf(buf, len, "%llu", (unsigned long long)value);
}

static int parse_bool(const struct config_key *key, const char *text, void *dst, char *why,
                      size_t why_len)
{
    char shown[64];
    (void)key;
    /* YAML 1.2's two words only: YAML 1.1's yes/no/on/off surprise people ("Norway problem"). */
    if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
        return why_fail(why, why_len, "\"%s\" is not true or false",
                        printable(text, shown, sizeof shown));
    *(int *)dst = strcmp(text, "true") == 0;
    return 0;
}

static int parse_uint(const struct config_key *key, const char *text, void *dst, char *why,
                      size_t why_len)
{
    char shown[64];
    uint64_t value;
    if (parse_number(text, &value) != 0)
        return why_fail(why, why_len, "\"%s\" is not a whole number",
                        printable(text, shown, sizeof shown));
    if (check_range(key, text, value, format_plain, why, why_len) != 0)
        return -1;
    *(unsigned *)dst = (unsigned)value;
    return 0;
}

static int parse_workers(const struct config_key *key, const char *text, void *dst, char *why,
                         size_t why_len)
{
    char shown[64];
    if (strcmp(text, "auto") != 0) {
        if (!all_digits(text))
            return why_fail(why, why_len, "\"%s\" is not auto or a number",
                            printable(text, shown, sizeof shown));
        return parse_uint(key, text, dst, why, why_len);
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < (long)key->min)
        cpus = (long)key->min;
    if ((uint64_t)cpus > key->max)
        cpus = (long)key->max;
    *(unsigned *)dst = (unsigned)cpus;
    return 0;
}

static int parse_duration(const struct config_key *key, const char *text, void *dst, char *why,
                          size_t why_len)
{
    char shown[64];
    uint64_t ms;
    if (config_parse_duration_ms(text, &ms) != 0) {
        printable(text, shown, sizeof shown);
        if (all_digits(text))
            return why_fail(why, why_len, "%s needs a unit: ms, s, m, h or d (as in %ss)", shown,
                            shown);
        if (has_unit_form(text, duration_units))
            return why_fail(why, why_len, "%s is too large", shown);
        return why_fail(why, why_len, "\"%s\" is not a duration such as 250ms, 10s, 5m, 1h or 1d",
                        shown);
    }
    if (check_range(key, text, ms, format_duration, why, why_len) != 0)
        return -1;
    *(uint64_t *)dst = ms;
    return 0;
}

static int parse_size(const struct config_key *key, const char *text, void *dst, char *why,
                      size_t why_len)
{
    char shown[64];
    uint64_t bytes;
    if (config_parse_size(text, &bytes) != 0) {
        printable(text, shown, sizeof shown);
        if (has_unit_form(text, size_units))
            return why_fail(why, why_len, "%s is too large", shown);
        return why_fail(why, why_len, "\"%s\" is not a size such as 512, 64KiB or 1MiB", shown);
    }
    if (check_range(key, text, bytes, format_size, why, why_len) != 0)
        return -1;
    *(size_t *)dst = (size_t)bytes;
    return 0;
}

/* String-valued keys own a heap copy; the old value (a default, or an earlier load) goes. */
static int store_string(void *dst, const char *text, char *why, size_t why_len)
{
    char *copy = strdup(text);
    if (copy == NULL)
        return why_fail(why, why_len, "out of memory");
    free(*(char **)dst);
    *(char **)dst = copy;
    return 0;
}

static int parse_string(const struct config_key *key, const char *text, void *dst, char *why,
                        size_t why_len)
{
    (void)key;
    if (*text == '\0')
        return why_fail(why, why_len, "must not be empty");
    return store_string(dst, text, why, why_len);
}

static int parse_enum(const struct config_key *key, const char *text, void *dst, char *why,
                      size_t why_len)
{
    char list[256] = "", shown[64];
    for (size_t i = 0; key->choices[i] != NULL; i++) {
        if (strcmp(text, key->choices[i]) == 0) {
            *(int *)dst = (int)i;
            return 0;
        }
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i > 0 ? ", " : "", key->choices[i]);
    }
    return why_fail(why, why_len, "\"%s\" is not one of %s", printable(text, shown, sizeof shown),
                    list);
}

static int parse_listen_element(const struct config_key *key, const char *text, void *dst,
                                char *why, size_t why_len)
{
    char reason[128], shown[64];
    (void)key;
    if (parse_listen(text, dst, reason, sizeof reason) != 0)
        return why_fail(why, why_len, "\"%s\": %s", printable(text, shown, sizeof shown), reason);
    return 0;
}

static int parse_cidr_element(const struct config_key *key, const char *text, void *dst, char *why,
                              size_t why_len)
{
    char shown[64];
    (void)key;
    if (cidr_parse(text, dst) != 0)
        return why_fail(why, why_len,
                        "\"%s\" is not an address block such as 10.0.0.0/8 or ::1/128",
                        printable(text, shown, sizeof shown));
    return 0;
}

static int parse_port_element(const struct config_key *key, const char *text, void *dst, char *why,
                              size_t why_len)
{
    char shown[64];
    uint64_t port;
    (void)key;
    if (parse_number(text, &port) != 0 || port < 1 || port > 65535)
        return why_fail(why, why_len, "\"%s\" is not a port from 1 to 65535",
                        printable(text, shown, sizeof shown));
    *(uint16_t *)dst = (uint16_t)port;
    return 0;
}

static unsigned listen_port(const struct listen_addr *l)
{
    if (l->addr.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)&l->addr)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)(const void *)&l->addr)->sin6_port);
}

/* Port 0 asks the kernel for a fresh port each time, so "127.0.0.1:0" twice is two listeners. */
static int same_listen(const void *a, const void *b)
{
    const struct listen_addr *x = a, *y = b;
    return listen_port(x) != 0 && strcmp(x->text, y->text) == 0;
}

static int same_cidr(const void *a, const void *b)
{
    const struct cidr *x = a, *y = b;
    return x->family == y->family && x->prefix == y->prefix && memcmp(x->addr, y->addr, 16) == 0;
}

static int same_port(const void *a, const void *b)
{
    return *(const uint16_t *)a == *(const uint16_t *)b;
}

static int parse_proxy_url(const struct config_key *key, const char *text, void *dst, char *why,
                           size_t why_len)
{
    static const char *const schemes[] = {"http://", "https://", "socks5://", "socks5h://", NULL};
    char shown[64];
    int known = *text == '\0';
    for (size_t i = 0; schemes[i] != NULL && !known; i++)
        known = strncmp(text, schemes[i], strlen(schemes[i])) == 0 &&
                text[strlen(schemes[i])] != '\0';
    if (!known)
        return why_fail(why, why_len,
                        "\"%s\" is not a proxy URL such as http://parent.example:3128 "
                        "(schemes: http, https, socks5, socks5h)",
                        printable(text, shown, sizeof shown));
    for (const char *p = text; *p != '\0'; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return why_fail(why, why_len, "proxy URL contains a space or control character");
    (void)key;
    return store_string(dst, text, why, why_len);
}

/* A host name or "*.suffix" into hp (zeroed first); 0 or -1. */
static int parse_host_name(const char *text, struct host_pattern *hp)
{
    memset(hp, 0, sizeof *hp);
    const char *name = text;
    if (strncmp(text, "*.", 2) == 0) {
        hp->wildcard = 1;
        name = text + 1; /* keep the dot: "*.internal" matches "a.internal", not "xinternal" */
    }
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof hp->text || (hp->wildcard && len < 2))
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_';
        if (!ok)
            return -1;
        hp->text[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    return 0;
}

static int parse_host_pattern_element(const struct config_key *key, const char *text, void *dst,
                                      char *why, size_t why_len)
{
    struct host_pattern *hp = dst;
    char shown[64];
    (void)key;
    struct cidr block;
    if (cidr_parse(text, &block) == 0) {
        memset(hp, 0, sizeof *hp);
        hp->is_cidr = 1;
        hp->cidr = block;
        snprintf(hp->text, sizeof hp->text, "%s", text);
        return 0;
    }
    if (parse_host_name(text, hp) != 0)
        return why_fail(why, why_len, "\"%s\" is not a host name, *.suffix or address block",
                        printable(text, shown, sizeof shown));
    return 0;
}

/* match.host: a destination is named, not a network. A single address is still a host (kept as a
 * one-address block so host_pattern_match compares it as an address: "::1" matches "0::1"), but a
 * block is refused: a rule for a range of destinations is almost always a rule for clients. */
static int parse_host_name_element(const struct config_key *key, const char *text, void *dst,
                                   char *why, size_t why_len)
{
    char shown[64];
    struct cidr block;
    int is_address = cidr_parse(text, &block) == 0;
    if (is_address && strchr(text, '/') != NULL)
        return why_fail(why, why_len,
                        "\"%s\" is an address block; match.host takes host names, single "
                        "addresses and *.suffix (client blocks go in match.client)",
                        printable(text, shown, sizeof shown));
    if (is_address)
        return parse_host_pattern_element(key, text, dst, why, why_len);
    struct host_pattern hp;
    if (parse_host_name(text, &hp) != 0)
        return why_fail(why, why_len, "\"%s\" is not a host name or *.suffix",
                        printable(text, shown, sizeof shown));
    memcpy(dst, &hp, sizeof hp);
    return 0;
}

static int same_host_pattern(const void *a, const void *b)
{
    const struct host_pattern *x = a, *y = b;
    return x->wildcard == y->wildcard && strcmp(x->text, y->text) == 0;
}

int host_pattern_match(const struct host_pattern *patterns, size_t count, const char *host)
{
    struct sockaddr_storage ss;
    int is_address = 0;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        ss.ss_family = AF_INET;
        is_address = 1;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        ss.ss_family = AF_INET6;
        is_address = 1;
    }
    size_t host_len = strlen(host);
    while (host_len > 0 && host[host_len - 1] == '.') /* "a.internal." is "a.internal" */
        host_len--;
    for (size_t i = 0; i < count; i++) {
        const struct host_pattern *p = &patterns[i];
        if (p->is_cidr) {
            if (is_address && cidr_contains(&p->cidr, (const struct sockaddr *)&ss))
                return 1;
            continue;
        }
        if (is_address && p->wildcard)
            continue; /* a name pattern never matches an address literal */
        size_t len = strlen(p->text);
        if (p->wildcard) {
            if (host_len > len && strncasecmp(host + host_len - len, p->text, len) == 0)
                return 1;
        } else if (host_len == len && strncasecmp(host, p->text, len) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- rate-rule fields ---- */

#define RULE_NAME_SIZE sizeof(((struct rate_rule *)0)->name)
#define METHOD_SIZE sizeof(((struct rate_rule *)0)->match_method[0])
#define USER_MAX_LEN 255

/* A rule's name goes into RateLimit-Policy as a structured-field string, log lines and metric
 * labels; letters, digits and "_.-" need no escaping in any of them. */
static int parse_rule_name(const struct config_key *key, const char *text, void *dst, char *why,
                           size_t why_len)
{
    static const char allowed[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    char shown[64];
    size_t len = strlen(text);
    (void)key;
    if (len == 0)
        return why_fail(why, why_len, "must not be empty");
    if (len >= RULE_NAME_SIZE)
        return why_fail(why, why_len, "\"%s\" is longer than %zu characters",
                        printable(text, shown, sizeof shown), RULE_NAME_SIZE - 1);
    if (strspn(text, allowed) != len)
        return why_fail(why, why_len, "\"%s\" may hold only letters, digits, _, . and -",
                        printable(text, shown, sizeof shown));
    memcpy(dst, text, len + 1);
    return 0;
}

/* RFC 9110 token characters: what a method may be made of. */
static int is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Methods are case-sensitive on the wire, but every registered one is upper case and a lower-case
 * "get" in a config can only mean GET; upper-casing makes the limiter's comparison a strcmp. */
static int parse_method_element(const struct config_key *key, const char *text, void *dst,
                                char *why, size_t why_len)
{
    char shown[64], method[METHOD_SIZE] = {0};
    size_t len = strlen(text);
    (void)key;
    if (len >= METHOD_SIZE)
        return why_fail(why, why_len, "\"%s\" is longer than %zu characters",
                        printable(text, shown, sizeof shown), METHOD_SIZE - 1);
    int ok = len > 0;
    for (size_t i = 0; ok && i < len; i++) {
        ok = is_tchar(text[i]);
        method[i] = (text[i] >= 'a' && text[i] <= 'z') ? (char)(text[i] - 'a' + 'A') : text[i];
    }
    if (!ok)
        return why_fail(why, why_len, "\"%s\" is not a method name such as GET",
                        printable(text, shown, sizeof shown));
    memcpy(dst, method, sizeof method);
    return 0;
}

static int same_method(const void *a, const void *b) { return strcmp(a, b) == 0; }

/* match_method is a fixed array in the rule, not a heap array: copy the parsed list in. The walker
 * stops at the row's max, which is the array's size. */
static void store_methods(void *field, void *elems, size_t count)
{
    if (count > RATE_RULE_MAX_METHODS)
        count = RATE_RULE_MAX_METHODS;
    if (count > 0)
        memcpy(field, elems, count * METHOD_SIZE);
    free(elems);
}

/* Compared with the request's path and query as received (no decoding or dot-segment removal), so
 * the prefix must look like one. */
static int parse_path_prefix(const struct config_key *key, const char *text, void *dst, char *why,
                             size_t why_len)
{
    char shown[64];
    (void)key;
    if (text[0] != '/')
        return why_fail(why, why_len, "\"%s\" must start with /",
                        printable(text, shown, sizeof shown));
    for (const char *p = text; *p != '\0'; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return why_fail(why, why_len, "\"%s\" contains a space or control character",
                            printable(text, shown, sizeof shown));
    return store_string(dst, text, why, why_len);
}

/* A Basic credential's user-id cannot hold a colon, so a name with one could never match. */
static int parse_user_element(const struct config_key *key, const char *text, void *dst, char *why,
                              size_t why_len)
{
    char shown[64];
    size_t len = strlen(text);
    (void)key;
    int ok = len > 0 && len <= USER_MAX_LEN && strchr(text, ':') == NULL;
    for (size_t i = 0; ok && i < len; i++)
        ok = (unsigned char)text[i] >= 0x20 && text[i] != 0x7f;
    if (!ok)
        return why_fail(why, why_len,
                        "\"%s\" is not a user name (1 to %d characters, no colon or control "
                        "characters)",
                        printable(text, shown, sizeof shown), USER_MAX_LEN);
    char *copy = strdup(text);
    if (copy == NULL)
        return why_fail(why, why_len, "out of memory");
    *(char **)dst = copy;
    return 0;
}

static int same_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b) == 0;
}

static void release_strings(void *elems, size_t count)
{
    char **strings = elems;
    for (size_t i = 0; i < count; i++)
        free(strings[i]);
}

static void free_fields(void *base, const struct config_key *table, size_t count);

static void release_rules(void *elems, size_t count)
{
    struct rate_rule *rules = elems;
    for (size_t i = 0; i < count; i++)
        free_fields(&rules[i], rule_fields, RULE_FIELD_COUNT);
}

static int parse_percent(const struct config_key *key, const char *text, void *dst, char *why,
                         size_t why_len)
{
    char shown[64], digits[16];
    size_t len = strlen(text);
    if (len > 0 && text[len - 1] == '%')
        len--;
    uint64_t value = 0;
    int ok = len > 0 && len < sizeof digits;
    if (ok) {
        memcpy(digits, text, len);
        digits[len] = '\0';
        ok = all_digits(digits) && parse_number(digits, &value) == 0;
    }
    if (!ok)
        return why_fail(why, why_len, "\"%s\" is not a percentage such as 20%%",
                        printable(text, shown, sizeof shown));
    if (value > key->max)
        return why_fail(why, why_len, "%s is above the maximum %llu%%",
                        printable(text, shown, sizeof shown), (unsigned long long)key->max);
    *(unsigned *)dst = (unsigned)value;
    return 0;
}

static int parse_retry_on_element(const struct config_key *key, const char *text, void *dst,
                                  char *why, size_t why_len)
{
    char shown[64];
    uint64_t status;
    (void)key;
    if (strcmp(text, "connect_error") == 0) {
        *(uint16_t *)dst = RETRY_ON_CONNECT_ERROR;
        return 0;
    }
    if (strcmp(text, "timeout") == 0) {
        *(uint16_t *)dst = RETRY_ON_TIMEOUT;
        return 0;
    }
    if (parse_number(text, &status) != 0 || status < 400 || status > 599)
        return why_fail(why, why_len,
                        "\"%s\" is not connect_error, timeout or a status from 400 to 599",
                        printable(text, shown, sizeof shown));
    *(uint16_t *)dst = (uint16_t)status;
    return 0;
}

static int parse_optional_string(const struct config_key *key, const char *text, void *dst,
                                 char *why, size_t why_len)
{
    (void)key;
    return store_string(dst, text, why, why_len);
}

/* One auth.users entry arrives from the walker as "name:hash" (a Basic user-id has no colon). */
static int parse_user_entry(const struct config_key *key, const char *text, void *dst, char *why,
                            size_t why_len)
{
    char shown[64];
    const char *colon = strchr(text, ':');
    (void)key;
    if (colon == NULL || colon == text)
        return why_fail(why, why_len, "empty user name");
    for (const char *p = text; p < colon; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return why_fail(why, why_len, "user name has a space or control character");
    const char *hash = colon + 1;
    /* crypt(3) hashes: $id$...; refusing anything else catches a plain password pasted by mistake */
    if (hash[0] != '$' || strlen(hash) < 8 || strchr(hash, ':') != NULL)
        return why_fail(why, why_len,
                        "\"%s\" is not a crypt(3) hash such as $6$salt$... (make one with "
                        "mkpasswd -m sha-512)",
                        printable(hash, shown, sizeof shown));
    struct auth_user *u = dst;
    u->name = strndup(text, (size_t)(colon - text));
    u->hash = strdup(hash);
    if (u->name == NULL || u->hash == NULL) {
        free(u->name);
        free(u->hash);
        return why_fail(why, why_len, "out of memory");
    }
    return 0;
}

static int same_user(const void *a, const void *b)
{
    return strcmp(((const struct auth_user *)a)->name, ((const struct auth_user *)b)->name) == 0;
}

static void release_users(void *elems, size_t count)
{
    struct auth_user *users = elems;
    for (size_t i = 0; i < count; i++) {
        free(users[i].name);
        free(users[i].hash);
    }
}

typedef int (*value_parser)(const struct config_key *key, const char *text, void *dst, char *why,
                            size_t why_len);

struct type_ops {
    const char *describe; /* for "expected ..." messages */
    value_parser parse;   /* scalars: into the field; lists: into one element */
    size_t elem_size;     /* lists only */
    int (*same)(const void *a, const void *b);  /* lists only: repeated entries are refused */
    int owns_string;                            /* the field is a heap string to free */
    void (*release)(void *elems, size_t count); /* lists: free what elements own */
    void (*store)(void *field, void *elems, size_t count); /* lists kept in a fixed array */
};

static const struct type_ops type_ops[] = {
    [CONFIG_BOOL] = {.describe = "true or false", .parse = parse_bool},
    [CONFIG_UINT] = {.describe = "a whole number", .parse = parse_uint},
    [CONFIG_WORKERS] = {.describe = "auto or a number", .parse = parse_workers},
    [CONFIG_DURATION] = {.describe = "a duration such as 10s", .parse = parse_duration},
    [CONFIG_SIZE] = {.describe = "a size such as 64KiB", .parse = parse_size},
    [CONFIG_STRING] = {.describe = "a string", .parse = parse_string, .owns_string = 1},
    [CONFIG_ENUM] = {.describe = "a word", .parse = parse_enum},
    [CONFIG_LOG_LEVEL] = {.describe = "a log level", .parse = parse_enum},
    [CONFIG_LISTEN_LIST] = {.describe = "a list of addresses",
                            .parse = parse_listen_element,
                            .elem_size = sizeof(struct listen_addr),
                            .same = same_listen},
    [CONFIG_CIDR_LIST] = {.describe = "a list of address blocks",
                          .parse = parse_cidr_element,
                          .elem_size = sizeof(struct cidr),
                          .same = same_cidr},
    [CONFIG_PORT_LIST] = {.describe = "a list of ports",
                          .parse = parse_port_element,
                          .elem_size = sizeof(uint16_t),
                          .same = same_port},
    [CONFIG_PERCENT] = {.describe = "a percentage such as 20%", .parse = parse_percent},
    [CONFIG_RETRY_ON_LIST] = {.describe = "a list of failures",
                              .parse = parse_retry_on_element,
                              .elem_size = sizeof(uint16_t),
                              .same = same_port},
    [CONFIG_USER_MAP] = {.describe = "a mapping of user names to password hashes",
                         .parse = parse_user_entry,
                         .elem_size = sizeof(struct auth_user),
                         .same = same_user,
                         .release = release_users},
    [CONFIG_OPTIONAL_STRING] = {.describe = "a string",
                                .parse = parse_optional_string,
                                .owns_string = 1},
    [CONFIG_PROXY_URL] = {.describe = "a proxy URL", .parse = parse_proxy_url, .owns_string = 1},
    [CONFIG_HOST_PATTERN_LIST] = {.describe = "a list of host patterns",
                                  .parse = parse_host_pattern_element,
                                  .elem_size = sizeof(struct host_pattern),
                                  .same = same_host_pattern},
    /* Walked by config_yaml.c's walk_rules(), never parsed from one scalar. */
    [CONFIG_RATE_RULES] = {.describe = "a list of rules (mappings with name, limit and window)",
                           .elem_size = sizeof(struct rate_rule),
                           .release = release_rules},
    [CONFIG_RULE_NAME] = {.describe = "a name such as github", .parse = parse_rule_name},
    [CONFIG_HOST_NAME_LIST] = {.describe = "a host name, *.suffix, or a list of them",
                               .parse = parse_host_name_element,
                               .elem_size = sizeof(struct host_pattern),
                               .same = same_host_pattern},
    [CONFIG_METHOD_LIST] = {.describe = "a method, or a list of methods",
                            .parse = parse_method_element,
                            .elem_size = METHOD_SIZE,
                            .same = same_method,
                            .store = store_methods},
    [CONFIG_PATH_PREFIX] = {.describe = "a path such as /api/",
                            .parse = parse_path_prefix,
                            .owns_string = 1},
    [CONFIG_USER_LIST] = {.describe = "a user name, or a list of them",
                          .parse = parse_user_element,
                          .elem_size = sizeof(char *),
                          .same = same_string,
                          .release = release_strings},
};

size_t config_value_elem_size(const struct config_key *key)
{
    return type_ops[key->type].elem_size;
}

const char *config_value_describe(const struct config_key *key)
{
    return type_ops[key->type].describe;
}

/* Every parser writes its destination only on success, so a failed value leaves the field as it was
 * (and a replaced string is freed by parse_string). */
int config_value_set_at(void *base, const struct config_key *key, const char *text, char *why,
                        size_t why_len)
{
    if (type_ops[key->type].parse == NULL || type_ops[key->type].elem_size > 0)
        return why_fail(why, why_len, "expected %s", type_ops[key->type].describe);
    return type_ops[key->type].parse(key, text, (char *)base + key->offset, why, why_len);
}

int config_value_set(struct config *cfg, const struct config_key *key, const char *text, char *why,
                     size_t why_len)
{
    return config_value_set_at(cfg, key, text, why, why_len);
}

int config_value_parse_element(const struct config_key *key, const char *text, void *elem,
                               char *why, size_t why_len)
{
    if (type_ops[key->type].parse == NULL)
        return why_fail(why, why_len, "expected %s", type_ops[key->type].describe);
    return type_ops[key->type].parse(key, text, elem, why, why_len);
}

int config_value_same_element(const struct config_key *key, const void *a, const void *b)
{
    return type_ops[key->type].same != NULL && type_ops[key->type].same(a, b);
}

void config_value_release(const struct config_key *key, void *elems, size_t count)
{
    if (elems != NULL && type_ops[key->type].release != NULL)
        type_ops[key->type].release(elems, count);
}

/* Pointer fields have their own types (struct cidr *, char *...); memcpy reads and writes them as
 * the void * they convert to, without type-punning through void **. */
static void *pointer_at(void *base, const struct config_key *key)
{
    void *value;
    memcpy(&value, (char *)base + key->offset, sizeof value);
    return value;
}

static size_t count_at(void *base, const struct config_key *key)
{
    size_t count;
    memcpy(&count, (char *)base + key->count_offset, sizeof count);
    return count;
}

/* A heap list field and everything its elements own. */
static void free_list(void *base, const struct config_key *key)
{
    void *elems = pointer_at(base, key);
    config_value_release(key, elems, count_at(base, key));
    free(elems);
}

/* What every field of a config (or of a rule) owns; the struct itself stays. */
static void free_fields(void *base, const struct config_key *table, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct type_ops *ops = &type_ops[table[i].type];
        if (ops->owns_string)
            free(pointer_at(base, &table[i]));
        else if (ops->elem_size > 0 && ops->store == NULL)
            free_list(base, &table[i]);
    }
}

void config_value_set_list_at(void *base, const struct config_key *key, void *elems, size_t count)
{
    if (type_ops[key->type].store != NULL) {
        type_ops[key->type].store((char *)base + key->offset, elems, count);
    } else {
        free_list(base, key);
        memcpy((char *)base + key->offset, &elems, sizeof elems);
    }
    memcpy((char *)base + key->count_offset, &count, sizeof count);
}

void config_value_set_list(struct config *cfg, const struct config_key *key, void *elems,
                           size_t count)
{
    config_value_set_list_at(cfg, key, elems, count);
}

/* Optional scalars get their defaults; match lists start empty. The defaults are single words,
 * so they are parsed directly rather than through the YAML walker (the same parsers either way). */
int config_rule_init(struct rate_rule *rule, char *why, size_t why_len)
{
    memset(rule, 0, sizeof *rule);
    for (size_t i = 0; i < RULE_FIELD_COUNT; i++) {
        const struct config_key *f = &rule_fields[i];
        if (f->default_text != NULL &&
            config_value_set_at(rule, f, f->default_text, why, why_len) != 0) {
            free_fields(rule, rule_fields, RULE_FIELD_COUNT);
            return -1;
        }
    }
    return 0;
}

/* ---- lifetime ---- */

/* The count lives beside the public struct, not in it, so struct config stays plain data. */
struct config_holder {
    atomic_uint refs;
    struct config config;
};

static struct config_holder *holder_of(struct config *cfg)
{
    return (struct config_holder *)(void *)((char *)cfg - offsetof(struct config_holder, config));
}

static void config_free(struct config *cfg)
{
    free_fields(cfg, keys, KEY_COUNT);
    free(cfg->source);
    free(holder_of(cfg));
}

struct config *config_ref(struct config *cfg)
{
    if (cfg != NULL)
        atomic_fetch_add_explicit(&holder_of(cfg)->refs, 1, memory_order_relaxed);
    return cfg;
}

void config_unref(struct config *cfg)
{
    /* acq_rel: whatever a thread wrote before dropping its reference happens before the free. */
    if (cfg != NULL &&
        atomic_fetch_sub_explicit(&holder_of(cfg)->refs, 1, memory_order_acq_rel) == 1)
        config_free(cfg);
}

/* auth.users_file: "user:hash" lines, '#' comments and blank lines ignored. A regular file of at
 * most USERS_FILE_MAX bytes and as many users as auth.users may hold: anything else (a device
 * that never ends, say) is refused rather than read forever. */
#define USERS_FILE_MAX (16u << 20)
static int read_users_file(struct config *cfg, char *err, size_t err_len)
{
    const struct config_key *key = config_key_find("auth.users");
    FILE *f = fopen(cfg->auth_users_file, "r");
    if (f == NULL) {
        snprintf(err, err_len, "%s: auth.users_file: cannot read %s: %s", cfg->source,
                 cfg->auth_users_file, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > USERS_FILE_MAX) {
        snprintf(err, err_len, "%s: auth.users_file: %s is not a regular file of at most %u MiB",
                 cfg->source, cfg->auth_users_file, USERS_FILE_MAX >> 20);
        fclose(f);
        return -1;
    }
    size_t count = cfg->auth_users_count, cap = count + 16;
    struct auth_user *users = calloc(cap, sizeof *users);
    if (users == NULL) {
        fclose(f);
        snprintf(err, err_len, "%s: out of memory", cfg->source);
        return -1;
    }
    if (count > 0)
        memcpy(users, cfg->auth_users, count * sizeof *users);
    char line[1024], why[256];
    unsigned lineno = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue;
        if (count - cfg->auth_users_count >= key->max) {
            snprintf(err, err_len, "%s:%u:1: auth.users_file: more than %llu users",
                     cfg->auth_users_file, lineno, (unsigned long long)key->max);
            rc = -1;
            break;
        }
        if (count == cap) {
            struct auth_user *grown = realloc(users, 2 * cap * sizeof *users);
            if (grown == NULL) {
                rc = -1;
                snprintf(err, err_len, "%s: out of memory", cfg->auth_users_file);
                break;
            }
            users = grown;
            cap *= 2;
        }
        if (config_value_parse_element(key, line, &users[count], why, sizeof why) != 0) {
            snprintf(err, err_len, "%s:%u:1: auth.users_file: %s", cfg->auth_users_file, lineno,
                     why);
            rc = -1;
            break;
        }
        for (size_t i = 0; i < count && rc == 0; i++)
            if (strcmp(users[i].name, users[count].name) == 0) {
                snprintf(err, err_len, "%s:%u:1: auth.users_file: user %s is listed twice",
                         cfg->auth_users_file, lineno, users[count].name);
                release_users(&users[count], 1);
                rc = -1;
            }
        if (rc == 0)
            count++;
    }
    fclose(f);
    if (rc != 0) { /* the entries from auth.users stay owned by cfg */
        release_users(users + cfg->auth_users_count, count - cfg->auth_users_count);
        free(users);
        return -1;
    }
    free(cfg->auth_users);
    cfg->auth_users = users;
    cfg->auth_users_count = count;
    return 0;
}

int config_finish(struct config *cfg, char *err, size_t err_len)
{
    if (cfg->auth_users_file != NULL && cfg->auth_users_file[0] != '\0' &&
        read_users_file(cfg, err, err_len) != 0)
        return -1;
    for (size_t i = 0; i < cfg->rate_limits_count; i++) {
        if (!cfg->rate_limits[i].shared)
            continue;
#ifndef HAVE_HIREDIS
        snprintf(err, err_len,
                 "%s: rate_limits[%zu].shared: this build has no Redis support (install "
                 "libhiredis-dev and rebuild)",
                 cfg->source, i);
        return -1;
#endif
        if (cfg->shared_redis == NULL || cfg->shared_redis[0] == '\0') {
            snprintf(err, err_len, "%s: rate_limits[%zu].shared: needs shared.redis", cfg->source, i);
            return -1;
        }
    }
    if (cfg->shared_redis != NULL && cfg->shared_redis[0] != '\0' &&
        strncmp(cfg->shared_redis, "unix:/", 6) != 0 && strncmp(cfg->shared_redis, "redis://", 8) != 0) {
        snprintf(err, err_len, "%s: shared.redis: \"%s\" is not redis://HOST:PORT/DB or unix:/PATH",
                 cfg->source, cfg->shared_redis);
        return -1;
    }
    return 0;
}

struct config *config_default(void)
{
    struct config_holder *holder = calloc(1, sizeof *holder);
    if (holder == NULL)
        return NULL;
    atomic_init(&holder->refs, 1);
    struct config *cfg = &holder->config;
    cfg->source = strdup("(embedded default)");
    if (cfg->source == NULL) {
        config_free(cfg);
        return NULL;
    }
    char err[256];
    for (size_t i = 0; i < KEY_COUNT; i++) {
        if (config_yaml_set_default(cfg, &keys[i], err, sizeof err) != 0) {
            /* Only a broken row (or out of memory) gets here; test_config catches the former. */
            log_error("config: default of %s: %s", keys[i].name, err);
            config_free(cfg);
            return NULL;
        }
    }
    return cfg;
}
