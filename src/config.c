/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config.c — owns the declaration table (every key: name, type, default, bounds, doc, reloadable)
 * and the table of a rate rule's fields. Building a config from them (the embedded default, files,
 * the reference count) is config_load.c's; what a value means is config_value.c's; where it is
 * written is config_yaml.c's. This file includes none of them, so the table sits below every other
 * part of the config.
 *
 * Adding a key is one row in keys[]. Adding a type is one entry in config_value.c's type_ops[].
 * rate_limits, a list of mappings, has its own walk function in config_yaml.c; each mapping is
 * walked against a second table, rule_fields[], whose offsets are into struct rate_rule. */

#include "config.h"

#include <string.h>

#include "config_units.h"

/* ENUM values are stored through an int-sized object; the enums in struct config must fit that. */
_Static_assert(sizeof(enum access_format) == sizeof(int), "enum storage");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum storage");
_Static_assert(sizeof(enum rate_key) == sizeof(int), "enum storage");
_Static_assert(sizeof(enum rate_over_limit) == sizeof(int), "enum storage");
_Static_assert(sizeof(enum rate_fair_by) == sizeof(int), "enum storage");
/* UINT stores an unsigned; the rate-rule and max-keys fields are uint32_t. */
_Static_assert(sizeof(unsigned) == sizeof(uint32_t), "uint storage");
/* retry.methods shares match.method's type and fixed-array storage. */
_Static_assert(RETRY_MAX_METHODS == RATE_RULE_MAX_METHODS, "method list storage");

/* Index order is the enum order: the ENUM parser stores the index. */
static const char *const log_level_words[] = {"error", "warn", "notice", "info", "debug", NULL};
static const char *const access_format_words[] = {"text", "json", NULL};
/* The last two stand for header:NAME and host+header:NAME (config_value.c's parse_rate_key). */
static const char *const rate_key_words[] = {"client", "host",        "client+host",
                                             "user",   "global",      "header:NAME",
                                             "host+header:NAME", NULL};
static const char *const over_limit_words[] = {"delay", "reject", NULL};
static const char *const upstream_limits_words[] = {"follow", "ignore", NULL};
/* The last stands for header:NAME (config_value.c's parse_fair_by). */
static const char *const fair_by_words[] = {"none", "client", "user", "header:NAME", NULL};
static const char *const jitter_words[] = {"none", "full", NULL};
static const char *const on_error_words[] = {"local", "deny", "allow", NULL};

#define ROW_FIELDS(name_, type_, default_, min_, max_, choices_, reloadable_, field_, doc_)        \
    .name = (name_), .type = (type_), .default_text = (default_), .min = (min_), .max = (max_),    \
    .choices = (choices_), .reloadable = (reloadable_), .doc = (doc_),                             \
    .offset = offsetof(struct config, field_)
#define LIST_ROW_FIELDS(name_, type_, default_, min_, max_, reloadable_, field_, doc_)             \
    .name = (name_), .type = (type_), .default_text = (default_), .min = (min_), .max = (max_),    \
    .reloadable = (reloadable_), .doc = (doc_), .offset = offsetof(struct config, field_),         \
    .count_offset = offsetof(struct config, field_##_count)
#define ROW(...) {ROW_FIELDS(__VA_ARGS__)}
#define LIST_ROW(...) {LIST_ROW_FIELDS(__VA_ARGS__)}
/* Values that hold credentials: -T and reload messages print them masked. */
#define SECRET_ROW(...) {ROW_FIELDS(__VA_ARGS__), .secret = 1}
#define SECRET_LIST_ROW(...) {LIST_ROW_FIELDS(__VA_ARGS__), .secret = 1}

/* A short secret could be guessed, and then every token hashed under it tested offline. */
#define SHARED_KEY_SECRET_MIN 16

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
    SECRET_LIST_ROW("auth.users", CONFIG_USER_MAP, "{}", 0, 10000, 1, auth_users,
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
    ROW("log.access_buffer", CONFIG_SIZE, "64KiB", 0, 16 * MIB, NULL, 1, access_buffer,
        "Bytes of access-log lines gathered before one write to a log.access file (0: a write per line); they go out within a second at the latest, at a reopen and at a stop"),
    ROW("log.access_format", CONFIG_ENUM, "text", 0, 0, access_format_words, 1, access_format,
        "Access-log line format, one line per request or tunnel"),
    LIST_ROW("admin.listen", CONFIG_LISTEN_LIST, "[\"127.0.0.1:9128\"]", 0, 8, 0, admin_listen,
             "Addresses of the admin endpoint serving /, /limits, /metrics and /healthz; an empty list disables it"),
    SECRET_ROW("admin.token", CONFIG_OPTIONAL_STRING, "\"\"", 0, 0, NULL, 0, admin_token,
        "Bearer token every admin request must present as Authorization: Bearer TOKEN; required when admin.listen has an address other than loopback"),
    ROW("state_file", CONFIG_OPTIONAL_STRING, "\"\"", 0, 0, NULL, 0, state_file,
        "File the local windows are written to every 5 seconds and at a graceful stop, and read from at start, so that a restart keeps them; empty keeps windows in memory only"),
    ROW("tls_intercept.ca_cert", CONFIG_OPTIONAL_STRING, "\"\"", 0, 0, NULL, 1, tls_ca_cert,
        "PEM certificate of the CA that signs the certificates shown to clients of intercepted hosts"),
    ROW("tls_intercept.ca_key", CONFIG_OPTIONAL_STRING, "\"\"", 0, 0, NULL, 1, tls_ca_key,
        "PEM private key of that CA; refused unless only its owner can read it"),
    LIST_ROW("tls_intercept.hosts", CONFIG_HOST_NAME_LIST, "[]", 0, 1024, 1, tls_intercept_hosts,
             "Hosts whose CONNECT tunnels are opened so each request inside is limited, retried and logged; all others stay opaque"),
    ROW("tls_intercept.upstream_ca_file", CONFIG_OPTIONAL_STRING, "\"\"", 0, 0, NULL, 1,
        tls_upstream_ca_file,
        "Extra CA bundle for verifying origins, on top of the system store"),
    SECRET_ROW("shared.redis", CONFIG_OPTIONAL_STRING, "\"\"", 0, 0, NULL, 0, shared_redis,
        "Redis server that rules with shared: true keep their windows in, as redis://IP:PORT/DB or unix:/path"),
    ROW("shared.on_error", CONFIG_ENUM, "local", 0, 0, on_error_words, 1, shared_on_error,
        "What a shared rule does when Redis does not answer: local uses this instance's own limiter, deny answers 503, allow admits"),
    SECRET_ROW("shared.key_secret", CONFIG_SECRET, "\"\"", SHARED_KEY_SECRET_MIN, 4096, NULL, 0,
               shared_key_secret,
        "Secret of at least 16 characters, the same on every instance, under which shared rules hash header keys before they name Redis keys; empty hashes them unkeyed"),
    ROW("shared.timeout", CONFIG_DURATION, "50ms", 1, 10 * MS_PER_S, NULL, 1, shared_timeout_ms,
        "Longest wait for Redis to decide one request before shared.on_error applies; a connection that leaves requests unanswered for 3 timeouts (at least 2s) is replaced"),
    SECRET_ROW("upstream_proxy", CONFIG_PROXY_URL, "\"\"", 0, 0, NULL, 1, upstream_proxy,
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
    ROW("retry.deadline", CONFIG_DURATION, "10s", 0, MS_PER_H, NULL, 1, retry.deadline_ms,
        "Longest a request may take from its arrival through every retry and upstream-requested wait; a retry that would end later is not made and the client gets the last answer now (0: no deadline)"),
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
    RULE_ROW("key", CONFIG_RATE_KEY, "client", 0, 0, rate_key_words, key,
             "What the rule counts separately: each client address, destination host, client and host pair, user, or value of a request header (alone or with the host), or all requests together"),
    RULE_REQUIRED("limit", CONFIG_UINT, 1, 1000000, limit,
                  "Most requests one key may have admitted within any span of one window"),
    RULE_REQUIRED("window", CONFIG_DURATION, 1, MS_PER_D, window_ms,
                  "Length of the sliding window that limit counts over"),
    RULE_ROW("over_limit", CONFIG_ENUM, "reject", 0, 0, over_limit_words, over_limit,
             "What a request over the limit gets: delay holds it until the window has room, reject answers 429 at once"),
    RULE_ROW("max_delay", CONFIG_DURATION, "30s", 0, MS_PER_H, NULL, max_delay_ms,
             "Longest a delayed request is held; one that would wait longer gets 429 at once"),
    RULE_ROW("margin", CONFIG_DURATION, "0ms", 0, MS_PER_H, NULL, margin_ms,
             "Added to window when counting, for the jitter between rlproxy and the API: departures are spaced as if the window were this much longer"),
    RULE_ROW("upstream_limits", CONFIG_ENUM, "follow", 0, 0, upstream_limits_words, upstream_limits,
             "follow: learn the limits the origin announces (RateLimit, X-RateLimit-*, Retry-After) per key and keep under the stricter of them and this rule; ignore: only this rule counts"),
    RULE_ROW("max_queue", CONFIG_UINT, "1000", 0, 1000000, NULL, max_queue,
             "Most requests held at once by this rule; a request beyond it gets 429 at once"),
    RULE_ROW("headers", CONFIG_BOOL, "false", 0, 0, NULL, headers,
             "Whether admitted responses carry RateLimit-Policy and RateLimit fields too, as 429 responses always do"),
    RULE_ROW("shared", CONFIG_BOOL, "false", 0, 0, NULL, shared,
             "Keep this rule's windows in Redis (shared.redis) so that every rlproxy instance naming the same server shares one limit"),
    RULE_ROW("cost", CONFIG_UINT, "1", 1, 1000000, NULL, cost,
             "Units of the window one request takes, at most limit: the window holds at most limit units"),
    RULE_ROW("cost_header", CONFIG_HEADER_NAME, NULL, 0, 0, NULL, cost_header,
             "Request header whose value (a whole number from 1 to limit) is that request's cost instead of cost; it is never forwarded, and a request with a bad value gets 400"),
    RULE_ROW("enforce", CONFIG_BOOL, "true", 0, 0, NULL, enforce,
             "false makes a dry run: each request is decided and counted as would_delay or would_reject in the access log and metrics, but goes on at once"),
    RULE_ROW("fair_by", CONFIG_FAIR_BY, "none", 0, 0, fair_by_words, fair_by,
             "Whose held requests of one key take turns: none releases them in arrival order; client, user or header:NAME releases them round robin over the values of that"),
    RULE_LIST("weights", CONFIG_WEIGHT_MAP, 4096, weights,
              "Turns of fair_by values (client addresses or user names) relative to the others, from 1 to 1000; a value not listed has 1"),
    RULE_ROW("weight_header", CONFIG_HEADER_NAME, NULL, 0, 0, NULL, weight_header,
             "Request header whose value (a whole number from 1 to 1000) is the weight of the request's fair_by value instead of weights; it is never forwarded, and a request with a bad value gets 400"),
    RULE_ROW("max_concurrent", CONFIG_UINT, "0", 0, 1000000, NULL, max_concurrent,
             "Most requests of one key in flight to the origin at once (a tunnel counts while open); others wait in the same queue; 0 is no cap"),
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
