/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_value.c — what each type of value means and how it is stored: one entry per type in
 * type_ops[] (a scalar parser, or an element parser, elem_size, a sameness test and a release hook
 * for a list; the rate-rule field types' entries are config_rule_value.c's), and the generic
 * set/store/free over a table row's offset. Finds nothing in YAML (config_yaml.c) and declares no
 * keys (config.c). */

#include "config_value.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_rule_value.h"
#include "config_text.h"

/* ---- per-type value handling ---- */

static int check_range(const struct config_key *key, const char *text, uint64_t value,
                       void (*format)(uint64_t, char *, size_t), char *why, size_t why_len)
{
    char bound[32], shown[64];
    if (value < key->min) {
        format(key->min, bound, sizeof bound);
        return config_text_fail(why, why_len, "%s is below the minimum %s",
                                config_text_printable(text, shown, sizeof shown), bound);
    }
    if (value > key->max) {
        format(key->max, bound, sizeof bound);
        return config_text_fail(why, why_len, "%s is above the maximum %s",
                                config_text_printable(text, shown, sizeof shown), bound);
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
        return config_text_fail(why, why_len, "\"%s\" is not true or false",
                                config_text_printable(text, shown, sizeof shown));
    *(int *)dst = strcmp(text, "true") == 0;
    return 0;
}

static int parse_uint(const struct config_key *key, const char *text, void *dst, char *why,
                      size_t why_len)
{
    char shown[64];
    uint64_t value;
    if (config_text_number(text, &value) != 0)
        return config_text_fail(why, why_len, "\"%s\" is not a whole number",
                                config_text_printable(text, shown, sizeof shown));
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
        if (!config_text_all_digits(text))
            return config_text_fail(why, why_len, "\"%s\" is not auto or a number",
                                    config_text_printable(text, shown, sizeof shown));
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
        config_text_printable(text, shown, sizeof shown);
        if (config_text_all_digits(text))
            return config_text_fail(why, why_len, "%s needs a unit: ms, s, m, h or d (as in %ss)",
                                    shown, shown);
        if (config_text_is_duration_form(text))
            return config_text_fail(why, why_len, "%s is too large", shown);
        return config_text_fail(why, why_len,
                                "\"%s\" is not a duration such as 250ms, 10s, 5m, 1h or 1d", shown);
    }
    if (check_range(key, text, ms, config_text_format_duration, why, why_len) != 0)
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
        config_text_printable(text, shown, sizeof shown);
        if (config_text_is_size_form(text))
            return config_text_fail(why, why_len, "%s is too large", shown);
        return config_text_fail(why, why_len, "\"%s\" is not a size such as 512, 64KiB or 1MiB",
                                shown);
    }
    if (check_range(key, text, bytes, config_text_format_size, why, why_len) != 0)
        return -1;
    *(size_t *)dst = (size_t)bytes;
    return 0;
}

static int parse_string(const struct config_key *key, const char *text, void *dst, char *why,
                        size_t why_len)
{
    (void)key;
    if (*text == '\0')
        return config_text_fail(why, why_len, "must not be empty");
    return config_text_store_string(dst, text, why, why_len);
}

static int parse_enum(const struct config_key *key, const char *text, void *dst, char *why,
                      size_t why_len)
{
    return config_text_choice(key->choices, text, dst, why, why_len);
}

static int parse_listen_element(const struct config_key *key, const char *text, void *dst,
                                char *why, size_t why_len)
{
    char reason[128], shown[64];
    (void)key;
    if (config_text_listen(text, dst, reason, sizeof reason) != 0)
        return config_text_fail(why, why_len, "\"%s\": %s",
                                config_text_printable(text, shown, sizeof shown), reason);
    return 0;
}

static int parse_cidr_element(const struct config_key *key, const char *text, void *dst, char *why,
                              size_t why_len)
{
    char shown[64];
    (void)key;
    if (cidr_parse(text, dst) != 0)
        return config_text_fail(why, why_len,
                                "\"%s\" is not an address block such as 10.0.0.0/8 or ::1/128",
                                config_text_printable(text, shown, sizeof shown));
    return 0;
}

static int parse_port_element(const struct config_key *key, const char *text, void *dst, char *why,
                              size_t why_len)
{
    char shown[64];
    uint64_t port;
    (void)key;
    if (config_text_number(text, &port) != 0 || port < 1 || port > 65535)
        return config_text_fail(why, why_len, "\"%s\" is not a port from 1 to 65535",
                                config_text_printable(text, shown, sizeof shown));
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
        known =
            strncmp(text, schemes[i], strlen(schemes[i])) == 0 && text[strlen(schemes[i])] != '\0';
    if (!known)
        return config_text_fail(why, why_len,
                                "\"%s\" is not a proxy URL such as http://parent.example:3128 "
                                "(schemes: http, https, socks5, socks5h)",
                                config_text_printable(text, shown, sizeof shown));
    for (const char *p = text; *p != '\0'; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return config_text_fail(why, why_len,
                                    "proxy URL contains a space or control character");
    (void)key;
    return config_text_store_string(dst, text, why, why_len);
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
    if (config_text_host_name(text, hp) != 0)
        return config_text_fail(why, why_len,
                                "\"%s\" is not a host name, *.suffix or address block",
                                config_text_printable(text, shown, sizeof shown));
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
        return config_text_fail(why, why_len,
                                "\"%s\" is an address block; match.host takes host names, single "
                                "addresses and *.suffix (client blocks go in match.client)",
                                config_text_printable(text, shown, sizeof shown));
    if (is_address)
        return parse_host_pattern_element(key, text, dst, why, why_len);
    struct host_pattern hp;
    if (config_text_host_name(text, &hp) != 0)
        return config_text_fail(why, why_len, "\"%s\" is not a host name or *.suffix",
                                config_text_printable(text, shown, sizeof shown));
    memcpy(dst, &hp, sizeof hp);
    return 0;
}

static int same_host_pattern(const void *a, const void *b)
{
    const struct host_pattern *x = a, *y = b;
    return x->wildcard == y->wildcard && strcmp(x->text, y->text) == 0;
}

static void release_rules(void *elems, size_t count)
{
    struct rate_rule *rules = elems;
    size_t field_count;
    const struct config_key *fields = config_rule_fields(&field_count);
    for (size_t i = 0; i < count; i++)
        config_value_free_fields(&rules[i], fields, field_count);
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
        ok = config_text_all_digits(digits) && config_text_number(digits, &value) == 0;
    }
    if (!ok)
        return config_text_fail(why, why_len, "\"%s\" is not a percentage such as 20%%",
                                config_text_printable(text, shown, sizeof shown));
    if (value > key->max)
        return config_text_fail(why, why_len, "%s is above the maximum %llu%%",
                                config_text_printable(text, shown, sizeof shown),
                                (unsigned long long)key->max);
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
    if (config_text_number(text, &status) != 0 || status < 400 || status > 599)
        return config_text_fail(why, why_len,
                                "\"%s\" is not connect_error, timeout or a status from 400 to 599",
                                config_text_printable(text, shown, sizeof shown));
    *(uint16_t *)dst = (uint16_t)status;
    return 0;
}

static int parse_optional_string(const struct config_key *key, const char *text, void *dst,
                                 char *why, size_t why_len)
{
    (void)key;
    return config_text_store_string(dst, text, why, why_len);
}

/* A short secret could be guessed. The message never repeats the value. */
static int parse_secret(const struct config_key *key, const char *text, void *dst, char *why,
                        size_t why_len)
{
    size_t len = strlen(text);
    if (len > 0 && (len < key->min || len > key->max))
        return config_text_fail(why, why_len, "must be empty or %llu to %llu characters long",
                                (unsigned long long)key->min, (unsigned long long)key->max);
    return config_text_store_string(dst, text, why, why_len);
}

/* One auth.users entry arrives from the walker as "name:hash" (a Basic user-id has no colon). */
static int parse_user_entry(const struct config_key *key, const char *text, void *dst, char *why,
                            size_t why_len)
{
    char shown[64];
    const char *colon = strchr(text, ':');
    (void)key;
    if (colon == NULL || colon == text)
        return config_text_fail(why, why_len, "empty user name");
    for (const char *p = text; p < colon; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return config_text_fail(why, why_len, "user name has a space or control character");
    const char *hash = colon + 1;
    /* crypt(3) hashes: $id$...; refusing anything else catches a plain password pasted by mistake
     */
    if (hash[0] != '$' || strlen(hash) < 8 || strchr(hash, ':') != NULL)
        return config_text_fail(why, why_len,
                                "\"%s\" is not a crypt(3) hash such as $6$salt$... (make one with "
                                "mkpasswd -m sha-512)",
                                config_text_printable(hash, shown, sizeof shown));
    struct auth_user *u = dst;
    u->name = strndup(text, (size_t)(colon - text));
    u->hash = strdup(hash);
    if (u->name == NULL || u->hash == NULL) {
        free(u->name);
        free(u->hash);
        return config_text_fail(why, why_len, "out of memory");
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

static const struct config_type_ops type_ops[CONFIG_TYPE_COUNT] = {
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
    [CONFIG_SECRET] = {.describe = "a secret string", .parse = parse_secret, .owns_string = 1},
    [CONFIG_PROXY_URL] = {.describe = "a proxy URL", .parse = parse_proxy_url, .owns_string = 1},
    [CONFIG_HOST_PATTERN_LIST] = {.describe = "a list of host patterns",
                                  .parse = parse_host_pattern_element,
                                  .elem_size = sizeof(struct host_pattern),
                                  .same = same_host_pattern},
    /* Walked by config_yaml.c's walk_rules(), never parsed from one scalar. */
    [CONFIG_RATE_RULES] = {.describe = "a list of rules (mappings with name, limit and window)",
                           .elem_size = sizeof(struct rate_rule),
                           .release = release_rules},
    [CONFIG_HOST_NAME_LIST] = {.describe = "a host name, *.suffix, or a list of them",
                               .parse = parse_host_name_element,
                               .elem_size = sizeof(struct host_pattern),
                               .same = same_host_pattern},
};

/* The rate-rule field types are config_rule_value.c's; the rest are here. */
static const struct config_type_ops *ops_of(enum config_type type)
{
    const struct config_type_ops *rule = config_rule_value_ops(type);
    return rule != NULL ? rule : &type_ops[type];
}

size_t config_value_elem_size(const struct config_key *key) { return ops_of(key->type)->elem_size; }

const char *config_value_describe(const struct config_key *key)
{
    return ops_of(key->type)->describe;
}

/* Every parser writes its destination only on success, so a failed value leaves the field as it was
 * (and a replaced string is freed by parse_string). */
int config_value_set_at(void *base, const struct config_key *key, const char *text, char *why,
                        size_t why_len)
{
    const struct config_type_ops *ops = ops_of(key->type);
    if (ops->parse == NULL || ops->elem_size > 0)
        return config_text_fail(why, why_len, "expected %s", ops->describe);
    return ops->parse(key, text, (char *)base + key->offset, why, why_len);
}

int config_value_set(struct config *cfg, const struct config_key *key, const char *text, char *why,
                     size_t why_len)
{
    return config_value_set_at(cfg, key, text, why, why_len);
}

int config_value_parse_element(const struct config_key *key, const char *text, void *elem,
                               char *why, size_t why_len)
{
    const struct config_type_ops *ops = ops_of(key->type);
    if (ops->parse == NULL)
        return config_text_fail(why, why_len, "expected %s", ops->describe);
    return ops->parse(key, text, elem, why, why_len);
}

int config_value_same_element(const struct config_key *key, const void *a, const void *b)
{
    const struct config_type_ops *ops = ops_of(key->type);
    return ops->same != NULL && ops->same(a, b);
}

void config_value_release(const struct config_key *key, void *elems, size_t count)
{
    const struct config_type_ops *ops = ops_of(key->type);
    if (elems != NULL && ops->release != NULL)
        ops->release(elems, count);
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
void config_value_free_fields(void *base, const struct config_key *table, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct config_type_ops *ops = ops_of(table[i].type);
        if (ops->owns_string)
            free(pointer_at(base, &table[i]));
        else if (ops->elem_size > 0 && ops->store == NULL)
            free_list(base, &table[i]);
    }
}

void config_value_set_list_at(void *base, const struct config_key *key, void *elems, size_t count)
{
    const struct config_type_ops *ops = ops_of(key->type);
    if (ops->store != NULL) {
        ops->store((char *)base + key->offset, elems, count);
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
    size_t field_count;
    const struct config_key *fields = config_rule_fields(&field_count);
    memset(rule, 0, sizeof *rule);
    for (size_t i = 0; i < field_count; i++) {
        const struct config_key *f = &fields[i];
        if (f->default_text != NULL &&
            config_value_set_at(rule, f, f->default_text, why, why_len) != 0) {
            config_value_free_fields(rule, fields, field_count);
            return -1;
        }
    }
    return 0;
}
