/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config.h — rlproxy's configuration: one table declares every key (name, type, default, bounds,
 * one-line doc, reloadable); config_load_*() turn YAML (libyaml) or the embedded defaults into an
 * immutable, reference-counted struct config. Loading never exits and never touches sockets.
 * The modules: config.c (the tables, loading, lifetime), config_value.c (what each type means),
 * config_text.c (units, addresses, host names), config_yaml.c (the libyaml walk and positions),
 * config_suggest.c ("did you mean"), config_dump.c (-T and the reload diff), config_warn.c
 * (rules that load but cannot see https:// requests). */
#ifndef RLPROXY_CONFIG_H
#define RLPROXY_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "log.h"
#include "retry.h"

/* An address block; family is AF_INET or AF_INET6, addr holds 4 or 16 bytes in network order. */
struct cidr {
    int family;
    unsigned prefix;
    uint8_t addr[16];
};

/* One `listen` entry: "127.0.0.1:3128", "[::1]:3128", "*:3128" (all IPv4), "[::]:3128". */
struct listen_addr {
    char text[80]; /* as written in the config, normalised: "127.0.0.1:3128", "[::1]:3128" */
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

enum access_format { ACCESS_FORMAT_TEXT, ACCESS_FORMAT_JSON };
enum shared_on_error { SHARED_ON_ERROR_LOCAL, SHARED_ON_ERROR_DENY, SHARED_ON_ERROR_ALLOW };

/* What a rate-limit rule counts by. The HEADER kinds count by a request header's value
 * (rate_rule.key_header names it), kept only as a keyed hash (credential.h). */
enum rate_key {
    RATE_KEY_CLIENT,
    RATE_KEY_HOST,
    RATE_KEY_CLIENT_HOST,
    RATE_KEY_USER,
    RATE_KEY_GLOBAL,
    RATE_KEY_HEADER,      /* header:NAME */
    RATE_KEY_HOST_HEADER, /* host+header:NAME */
};
#define RATE_KEY_HEADER_MAX 64 /* longest NAME in header:NAME */
enum rate_over_limit { RATE_OVER_DELAY, RATE_OVER_REJECT };
/* fair_by: whose held requests of one key take turns (rate_rule.fair_header names the header) */
enum rate_fair_by { RATE_FAIR_NONE, RATE_FAIR_CLIENT, RATE_FAIR_USER, RATE_FAIR_HEADER };
enum rate_upstream_limits { RATE_UPSTREAM_FOLLOW, RATE_UPSTREAM_IGNORE };

#define RATE_RULE_MAX_METHODS 16

/* One entry of `rate_limits` (see rlproxy.yaml(5)). Every match field is optional; an empty
 * field matches everything. */
struct rate_rule {
    char name[64]; /* unique within the list */
    /* match */
    struct cidr *match_client; /* match.client: address blocks */
    size_t match_client_count;
    struct host_pattern *match_host; /* match.host: exact names and "*.suffix" */
    size_t match_host_count;
    char match_method[RATE_RULE_MAX_METHODS][24]; /* match.method: upper-case names */
    size_t match_method_count;
    char *match_path_prefix; /* match.path_prefix: NULL for none */
    char **match_user;       /* match.user: user names (proxy auth) */
    size_t match_user_count;
    /* limit */
    enum rate_key key;             /* key: client (default) */
    char key_header[RATE_KEY_HEADER_MAX + 1]; /* NAME of key: header:NAME, as written; "" else */
    uint32_t limit;                /* limit: 1..1000000, required */
    uint64_t window_ms;            /* window: 1ms..1d, required */
    enum rate_over_limit over_limit; /* over_limit: reject (default) */
    uint64_t max_delay_ms;         /* max_delay: 30s default, 0..1h */
    uint64_t margin_ms;            /* margin: 0 default: counted as if window were this longer */
    enum rate_upstream_limits upstream_limits; /* upstream_limits: follow (default) */
    uint32_t max_queue;            /* max_queue: 1000 default, 0..1000000 */
    int headers;                   /* headers: false default: RateLimit fields on admitted responses */
    int shared;                    /* shared: false (Redis, later) */
    uint32_t cost;                 /* cost: 1 default, 1..limit: units of the window one request takes */
    char cost_header[RATE_KEY_HEADER_MAX + 1]; /* cost_header: "" (none): a request's own cost */
    int enforce;                   /* enforce: true default; false: decide and count, never hold */
    enum rate_fair_by fair_by;     /* fair_by: none (FIFO) default */
    char fair_header[RATE_KEY_HEADER_MAX + 1]; /* NAME of fair_by: header:NAME; "" else */
    uint32_t max_concurrent;       /* max_concurrent: 0 (no cap): in flight at once per key */
    struct fair_weight *weights;   /* weights: {} — turns per fair_by value (client, user) */
    size_t weights_count;
    char weight_header[RATE_KEY_HEADER_MAX + 1]; /* weight_header: "" (none) */
    unsigned line, column;         /* where the rule's mapping starts (1-based); 0 if not known */
};

/* One `weights` entry of a rule: a fair_by value and its weight (1..RATE_WEIGHT_MAX). */
struct fair_weight {
    char *value;
    uint32_t weight;
};
#define RATE_WEIGHT_MAX 1000
/* The most units one request of a shared rule may take (cost, and a cost_header's values, which
 * go up to limit): each unit is a member of a sorted set in Redis (see bench/SHARED.md). */
#define RATE_SHARED_COST_MAX 1000

/* One `auth.users` entry: a user name and its crypt(3) hash. */
struct auth_user {
    char *name;
    char *hash;
};

/* One `upstream_proxy_bypass` entry: a host name, "*.suffix", or an address block. */
struct host_pattern {
    char text[256]; /* lower-cased; for "*.suffix" the text after the '*' (".suffix") */
    int wildcard;
    int is_cidr;
    struct cidr cidr;
};

struct config {
    char *source; /* file path, or "(embedded default)" */

    struct listen_addr *listen; /* listen: ["127.0.0.1:3128"] */
    size_t listen_count;
    unsigned workers;           /* workers: auto (resolved to the number of online CPUs) | 1..256 */
    uint64_t shutdown_timeout_ms;

    struct cidr *access_allow; /* access.allow: ["127.0.0.0/8", "::1/128"] */
    size_t access_allow_count;

    uint32_t max_connections_per_client; /* access.max_connections_per_client: 256, 0 = no cap */

    char *auth_realm;           /* auth.realm: "rlproxy" */
    struct auth_user *auth_users; /* auth.users: {} */
    size_t auth_users_count;
    char *auth_users_file;      /* auth.users_file: "" */
    size_t auth_users_from_file; /* the last this many of auth_users came from auth.users_file */

    struct host_pattern *destinations_deny; /* destinations.deny: link-local v4 and v6 */
    size_t destinations_deny_count;
    uint16_t *destinations_allow_ports; /* destinations.allow_ports: [] = any port */
    size_t destinations_allow_ports_count;

    uint16_t *connect_allowed_ports; /* connect.allowed_ports: [443] */
    size_t connect_allowed_ports_count;

    uint64_t client_header_timeout_ms;    /* timeouts.client_header: 10s */
    uint64_t client_idle_timeout_ms;      /* timeouts.client_idle: 60s */
    uint64_t client_body_timeout_ms;      /* timeouts.client_body: 30s (stall between body reads) */
    uint64_t upstream_connect_timeout_ms; /* timeouts.upstream_connect: 10s */
    uint64_t upstream_response_timeout_ms;/* timeouts.upstream_response: 60s (to the first byte) */
    uint64_t tunnel_idle_timeout_ms;      /* timeouts.tunnel_idle: 5m */

    size_t max_request_line; /* http.max_request_line: 8KiB (414 above) */
    size_t max_header_size;  /* http.max_header_size: 32KiB, request line + headers (431 above) */

    size_t buffer_size; /* backpressure.buffer: 256KiB per direction per connection */
    uint32_t max_connections;  /* backpressure.max_connections: 10000, clients + tunnels, process-wide */
    uint32_t max_inflight;     /* backpressure.max_inflight: 1024 upstream transfers per worker */
    uint32_t overload_status;  /* backpressure.overload_status: 503 */

    enum log_level log_level;        /* log.level: info */
    char *access_log;                /* log.access: "stderr" | "off" | a file path */
    size_t access_buffer;              /* log.access_buffer: 64KiB; 0: a write per line */
    enum access_format access_format;/* log.access_format: text */

    struct listen_addr *admin_listen; /* admin.listen: ["127.0.0.1:9128"]; [] disables */
    size_t admin_listen_count;
    char *admin_token; /* admin.token: "" = none (then admin.listen must be loopback only) */
    char *state_file;  /* state_file: "" = windows are not saved */

    struct rate_rule *rate_limits; /* rate_limits: [] — first matching rule applies */
    size_t rate_limits_count;
    uint32_t rate_limits_max_keys; /* rate_limits_max_keys: 1000000 */

    struct retry_policy retry; /* retry.*: attempts, base_delay, max_delay, jitter, on, methods,
                                  max_body, budget */

    char *tls_ca_cert;  /* tls_intercept.ca_cert: "" */
    char *tls_ca_key;   /* tls_intercept.ca_key: "" (mode 0600 or stricter) */
    struct host_pattern *tls_intercept_hosts; /* tls_intercept.hosts: [] — only these are opened */
    size_t tls_intercept_hosts_count;
    char *tls_upstream_ca_file; /* tls_intercept.upstream_ca_file: "" */

    char *shared_redis;   /* shared.redis: "" | "redis://127.0.0.1:6379/0" | "unix:/path" */
    int shared_on_error;  /* shared.on_error: local | deny | allow */
    uint64_t shared_timeout_ms; /* shared.timeout: 50ms */
    char *shared_key_secret;    /* shared.key_secret: "" (header keys of shared rules unkeyed) */

    char *upstream_proxy; /* upstream_proxy: "" (none) or "http://[user:pass@]host:port" */
    struct host_pattern *upstream_proxy_bypass; /* upstream_proxy_bypass: [] */
    size_t upstream_proxy_bypass_count;
};

enum config_type {
    CONFIG_BOOL,
    CONFIG_UINT,      /* unsigned integer within [min, max] */
    CONFIG_WORKERS,   /* "auto" or an integer in [min, max] */
    CONFIG_DURATION,  /* "250ms", "10s", "5m", "1h", "1d"; no bare numbers but 0; stored in ms */
    CONFIG_SIZE,      /* "64KiB", "1MiB", "512", "1GiB"; stored in bytes */
    CONFIG_STRING,
    CONFIG_ENUM,      /* one of the words in `choices` (NULL-terminated), stored as its index */
    CONFIG_LOG_LEVEL, /* error|warn|notice|info|debug */
    CONFIG_LISTEN_LIST,
    CONFIG_CIDR_LIST,
    CONFIG_PORT_LIST,
    CONFIG_PERCENT,           /* "20%" (or 20), 0..100; stored as unsigned */
    CONFIG_RETRY_ON_LIST,     /* connect_error, timeout, or statuses 400..599; uint16_t list */
    CONFIG_USER_MAP,          /* mapping of user name to crypt(3) hash: {alice: "$6$..."} */
    CONFIG_OPTIONAL_STRING,   /* a string that may be empty */
    CONFIG_SECRET,            /* "" or min..max characters, a credential as a whole: -T masks it */
    CONFIG_PROXY_URL,         /* "" or scheme://[user:password@]host:port, scheme http|https|socks5|socks5h */
    CONFIG_HOST_PATTERN_LIST, /* host names, "*.suffix", address blocks */
    CONFIG_RATE_RULES,        /* rate_limits: a list of mappings, each walked against the rule table */
    /* Types of rate-rule fields only (config_rule_fields()): */
    CONFIG_RULE_NAME,         /* 1..63 of [A-Za-z0-9_.-], into char[64] */
    CONFIG_HOST_NAME_LIST,    /* host names and "*.suffix" (a bare address is one host, no blocks) */
    CONFIG_METHOD_LIST,       /* method tokens, upper-cased, into the fixed match_method array */
    CONFIG_PATH_PREFIX,       /* "/..." heap string */
    CONFIG_USER_LIST,         /* user names: a heap array of heap strings */
    CONFIG_RATE_KEY,          /* client|host|...|header:NAME|host+header:NAME: key and key_header */
    CONFIG_HEADER_NAME,       /* "" or an RFC 9110 field name, into char[RATE_KEY_HEADER_MAX + 1] */
    CONFIG_FAIR_BY,           /* none|client|user|header:NAME: fair_by and fair_header */
    CONFIG_WEIGHT_MAP,        /* mapping of fair_by values to weights: a heap array of fair_weight */
    CONFIG_TYPE_COUNT         /* not a type: the size of the per-type tables */
};

/* One row of the declaration table. */
struct config_key {
    const char *name;          /* dotted path: "timeouts.client_header" */
    enum config_type type;
    const char *default_text;  /* the default as a user would write it in YAML: "10s", "[443]" */
    uint64_t min, max;         /* bounds for UINT, WORKERS, DURATION (ms), SIZE (bytes), list lengths */
    const char *const *choices;/* ENUM words */
    int reloadable;            /* 1: a SIGHUP applies it; 0: needs a restart */
    const char *doc;           /* one line */
    size_t offset;             /* offsetof(struct config, field) */
    size_t count_offset;       /* lists: offsetof the *_count field */
    int required;              /* rate-rule fields: a rule without it is refused (no default_text) */
    int single_ok;             /* lists: a single value stands for a one-entry list */
    int secret;                /* holds credentials (URL passwords, password hashes): printed masked */
};

/* The table, in the order the docs present it. */
const struct config_key *config_keys(size_t *count);

/* Load from a YAML file. On error returns -1 and writes "FILE:LINE:COLUMN: key: what is wrong"
 * into err (never more than err_len bytes, always NUL-terminated). An empty file means defaults. */
int config_load_file(const char *path, struct config **out, char *err, size_t err_len);

/* Same, from a string; `name` stands in for the file name in messages. */
int config_load_string(const char *yaml, size_t len, const char *name, struct config **out, char *err,
                       size_t err_len);

/* The embedded default (every key at its default). Never fails except on out of memory (NULL). */
struct config *config_default(void);

/* Configs are shared by workers and in-flight requests; the last unref frees. Thread-safe. */
struct config *config_ref(struct config *config);
void config_unref(struct config *config);

/* Helpers other modules use. */
int cidr_parse(const char *text, struct cidr *out);             /* 0 or -1 */
int cidr_contains(const struct cidr *cidr, const struct sockaddr *addr); /* 1 or 0 */
int config_parse_duration_ms(const char *text, uint64_t *out);  /* 0 or -1 */
int config_parse_size(const char *text, uint64_t *out);         /* 0 or -1 */

/* 1 when host (a name or an address literal) matches one of the patterns. */
int host_pattern_match(const struct host_pattern *patterns, size_t count, const char *host);

/* After the walk: what needs more than one key or a file: reads auth.users_file into auth.users,
 * refuses what cannot work yet. -1 with "FILE:LINE:COLUMN: key: reason" in err. */
int config_finish(struct config *cfg, char *err, size_t err_len);

/* The row named `name` ("timeouts.client_header"), or NULL. */
const struct config_key *config_key_find(const char *name);

/* Largest config file or string accepted; bigger inputs are refused before parsing. */
#define CONFIG_MAX_BYTES ((size_t)1 << 20)

/* The fields of one rate_limits entry, as rows whose offsets are into struct rate_rule; dotted
 * names ("match.host") are nested mappings inside the rule. */
#define CONFIG_RULE_MAX_FIELDS 32
const struct config_key *config_rule_fields(size_t *count);

#endif
