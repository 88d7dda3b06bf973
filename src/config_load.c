/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_load.c — builds configs from config.c's table: the embedded default (each key's
 * default_text through the YAML walker, so a documented default cannot drift from the one that
 * serves), YAML text and files (size limit, the walk, config_finish for what needs more than one
 * key or a file), and the reference count that frees them. Declared in config.h with the rest of
 * the config's public functions; must not know what a value means (config_value.c) or where it
 * is written (config_yaml.c). */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_value.h"
#include "config_yaml.h"

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
    size_t key_count;
    const struct config_key *keys = config_keys(&key_count);
    config_value_free_fields(cfg, keys, key_count);
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
                config_value_release(key, &users[count], 1);
                rc = -1;
            }
        if (rc == 0)
            count++;
    }
    fclose(f);
    if (rc != 0) { /* the entries from auth.users stay owned by cfg */
        config_value_release(key, users + cfg->auth_users_count, count - cfg->auth_users_count);
        free(users);
        return -1;
    }
    free(cfg->auth_users);
    cfg->auth_users = users;
    cfg->auth_users_from_file = count - cfg->auth_users_count;
    cfg->auth_users_count = count;
    return 0;
}

int config_finish(struct config *cfg, char *err, size_t err_len)
{
    if (cfg->auth_users_file != NULL && cfg->auth_users_file[0] != '\0' &&
        read_users_file(cfg, err, err_len) != 0)
        return -1;
    for (size_t i = 0; i < cfg->rate_limits_count; i++) {
        const struct rate_rule *rule = &cfg->rate_limits[i];
        if (rule->cost > rule->limit) {
            snprintf(err, err_len,
                     "%s: rate_limits[%zu].cost: %u is more than limit (%u): no request could ever go",
                     cfg->source, i, rule->cost, rule->limit);
            return -1;
        }
        /* Redis keeps no queue of its own: turns and in-flight caps are this instance's */
        if (rule->shared && (rule->fair_by != RATE_FAIR_NONE || rule->max_concurrent > 0)) {
            snprintf(err, err_len,
                     "%s: rate_limits[%zu]: fair_by and max_concurrent are for local rules only, "
                     "not with shared: true",
                     cfg->source, i);
            return -1;
        }
        /* Redis writes one sorted-set member per unit (O(cost log N) per request, in a script
         * that blocks every other client of that Redis while it runs: bench/SHARED.md) */
        if (rule->shared && rule->cost > RATE_SHARED_COST_MAX) {
            snprintf(err, err_len,
                     "%s: rate_limits[%zu].cost: %u is more than %u, the most a shared rule's "
                     "request may cost",
                     cfg->source, i, rule->cost, RATE_SHARED_COST_MAX);
            return -1;
        }
        if (rule->shared && rule->cost_header[0] != '\0' && rule->limit > RATE_SHARED_COST_MAX) {
            snprintf(err, err_len,
                     "%s: rate_limits[%zu].cost_header: a value may be up to limit (%u), more than "
                     "%u, the most a shared rule's request may cost",
                     cfg->source, i, rule->limit, RATE_SHARED_COST_MAX);
            return -1;
        }
        if ((rule->weights_count > 0 || rule->weight_header[0] != '\0') &&
            rule->fair_by == RATE_FAIR_NONE) {
            snprintf(err, err_len, "%s: rate_limits[%zu]: weights and weight_header need fair_by",
                     cfg->source, i);
            return -1;
        }
        if (rule->weights_count > 0 && rule->fair_by == RATE_FAIR_HEADER) {
            snprintf(err, err_len,
                     "%s: rate_limits[%zu].weights: header values are kept only as keyed hashes, "
                     "so they cannot be listed; use weight_header",
                     cfg->source, i);
            return -1;
        }
        if (rule->fair_by != RATE_FAIR_NONE && rule->over_limit != RATE_OVER_DELAY) {
            snprintf(err, err_len,
                     "%s: rate_limits[%zu].fair_by: needs over_limit: delay (a rule that rejects "
                     "holds nothing to take turns)",
                     cfg->source, i);
            return -1;
        }
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
    size_t key_count;
    const struct config_key *keys = config_keys(&key_count);
    for (size_t i = 0; i < key_count; i++) {
        if (config_yaml_set_default(cfg, &keys[i], err, sizeof err) != 0) {
            /* Only a broken row (or out of memory) gets here; test_config catches the former. */
            log_error("config: default of %s: %s", keys[i].name, err);
            config_free(cfg);
            return NULL;
        }
    }
    return cfg;
}

/* ---- loading ---- */

int config_load_string(const char *yaml, size_t len, const char *name, struct config **out,
                       char *err, size_t err_len)
{
    char scratch[1];
    if (err == NULL || err_len == 0) {
        err = scratch;
        err_len = sizeof scratch;
    }
    err[0] = '\0';
    *out = NULL;
    if (name == NULL)
        name = "(string)";
    if (len > CONFIG_MAX_BYTES) {
        snprintf(err, err_len, "%s: larger than the %zu KiB limit for a config file", name,
                 CONFIG_MAX_BYTES / 1024);
        return -1;
    }
    struct config *cfg = config_default();
    char *source = strdup(name);
    if (cfg == NULL || source == NULL) {
        free(source);
        config_unref(cfg);
        snprintf(err, err_len, "%s: out of memory", name);
        return -1;
    }
    free(cfg->source);
    cfg->source = source;
    if (config_yaml_walk(cfg, yaml != NULL ? yaml : "", len, name, err, err_len) != 0 ||
        config_finish(cfg, err, err_len) != 0) {
        config_unref(cfg);
        return -1;
    }
    *out = cfg;
    return 0;
}

/* Reads up to limit + 1 bytes so an oversized file is recognised without reading all of it. */
static char *read_limited(FILE *f, size_t limit, size_t *len)
{
    char *buf = malloc(limit + 1);
    if (buf == NULL)
        return NULL;
    *len = 0;
    while (*len <= limit) {
        size_t n = fread(buf + *len, 1, limit + 1 - *len, f);
        if (n == 0)
            break;
        *len += n;
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    return buf;
}

int config_load_file(const char *path, struct config **out, char *err, size_t err_len)
{
    char scratch[1], reason[128];
    if (err == NULL || err_len == 0) {
        err = scratch;
        err_len = sizeof scratch;
    }
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "%s: %s", path, strerror_r(errno, reason, sizeof reason));
        return -1;
    }
    size_t len;
    errno = 0;
    char *text = read_limited(f, CONFIG_MAX_BYTES, &len);
    int saved = errno != 0 ? errno : ENOMEM;
    fclose(f);
    if (text == NULL) {
        snprintf(err, err_len, "%s: %s", path, strerror_r(saved, reason, sizeof reason));
        return -1;
    }
    int rc = config_load_string(text, len, path, out, err, err_len);
    free(text);
    return rc;
}
