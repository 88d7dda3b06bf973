/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_warn.c — see config_warn.h. A CONNECT tunnel shows rlproxy only its host and port, so a
 * rule's path or method can only be compared with requests that rlproxy reads: plain http://
 * requests, and https:// requests to hosts in tls_intercept.hosts, whose tunnels it opens. */

#include "config_warn.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

/* 1 when every host `pattern` stands for is in tls_intercept.hosts: an exact host that matches
 * one of them, or a *.suffix inside a *.suffix there. */
static int intercepted(const struct config *cfg, const struct host_pattern *pattern)
{
    if (!pattern->wildcard)
        return host_pattern_match(cfg->tls_intercept_hosts, cfg->tls_intercept_hosts_count,
                                  pattern->text);
    size_t len = strlen(pattern->text);
    for (size_t i = 0; i < cfg->tls_intercept_hosts_count; i++) {
        const struct host_pattern *tls = &cfg->tls_intercept_hosts[i];
        size_t tls_len = strlen(tls->text);
        if (tls->wildcard && len >= tls_len &&
            strcmp(pattern->text + len - tls_len, tls->text) == 0)
            return 1;
    }
    return 0;
}

/* Fields that need the request itself; CONNECT alone is a rule for tunnels and needs nothing. */
static const char *inside_fields(const struct rate_rule *rule)
{
    int other_method = 0;
    for (size_t i = 0; i < rule->match_method_count; i++)
        other_method |= strcmp(rule->match_method[i], "CONNECT") != 0;
    if (rule->match_path_prefix != NULL && other_method)
        return "match.path_prefix and match.method";
    if (rule->match_path_prefix != NULL)
        return "match.path_prefix";
    return other_method ? "match.method" : NULL;
}

static int warn_rule(const struct config *cfg, size_t index, config_warning_callback callback,
                     void *arg)
{
    const struct rate_rule *rule = &cfg->rate_limits[index];
    const char *fields = inside_fields(rule);
    if (fields == NULL || rule->match_host_count == 0)
        return 0;
    char hosts[512] = "";
    size_t missed = 0;
    for (size_t i = 0; i < rule->match_host_count; i++) {
        const struct host_pattern *h = &rule->match_host[i];
        if (intercepted(cfg, h))
            continue;
        size_t used = strlen(hosts);
        snprintf(hosts + used, sizeof hosts - used, "%s%s%s", missed++ > 0 ? ", " : "",
                 h->wildcard ? "*" : "", h->text);
    }
    if (missed == 0)
        return 0;
    char message[1024];
    snprintf(message, sizeof message,
             "%s:%u:%u: rate_limits[%zu] (%s): %s never limits https:// requests to %s: they "
             "pass through CONNECT tunnels that rlproxy does not open (%s); the rule still "
             "applies to plain http://",
             cfg->source, rule->line, rule->column, index, rule->name, fields, hosts,
             cfg->tls_intercept_hosts_count == 0
                 ? "tls_intercept is off: set tls_intercept.ca_cert, ca_key and hosts"
                 : "add them to tls_intercept.hosts");
    callback(message, arg);
    return 1;
}

/* Instances that share a window must name it alike, so a shared rule cannot hash header values
 * under the per-process random key; without shared.key_secret it hashes them with plain SHA-256,
 * which anyone who can list Redis keys can test guessed tokens against. */
static int warn_unkeyed_shared(const struct config *cfg, size_t index,
                               config_warning_callback callback, void *arg)
{
    const struct rate_rule *rule = &cfg->rate_limits[index];
    if (!rule->shared || (rule->key != RATE_KEY_HEADER && rule->key != RATE_KEY_HOST_HEADER) ||
        (cfg->shared_key_secret != NULL && cfg->shared_key_secret[0] != '\0'))
        return 0;
    char message[1024];
    snprintf(message, sizeof message,
             "%s:%u:%u: rate_limits[%zu] (%s): shared rule keyed by header %s, and no "
             "shared.key_secret: its Redis keys hold an unkeyed SHA-256 of each value, never the "
             "value, but whoever can list Redis keys can test guessed values against them; set "
             "shared.key_secret to the same secret on every instance",
             cfg->source, rule->line, rule->column, index, rule->name, rule->key_header);
    callback(message, arg);
    return 1;
}

int config_rule_warnings(const struct config *cfg, config_warning_callback callback, void *arg)
{
    int count = 0;
    for (size_t i = 0; i < cfg->rate_limits_count; i++) {
        count += warn_rule(cfg, i, callback, arg);
        count += warn_unkeyed_shared(cfg, i, callback, arg);
    }
    return count;
}

static void log_one(const char *message, void *arg)
{
    (void)arg;
    log_warn("%s", message);
}

int config_log_rule_warnings(const struct config *cfg)
{
    return config_rule_warnings(cfg, log_one, NULL);
}
