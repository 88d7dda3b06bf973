/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_rule_value.c — what the values of a rate rule's own field types mean: names, methods,
 * path prefixes, keys, fair_by and its weights, header names, user lists; see config_rule_value.h.
 */
#include "config_rule_value.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_text.h"

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
        return config_text_fail(why, why_len, "must not be empty");
    if (len >= RULE_NAME_SIZE)
        return config_text_fail(why, why_len, "\"%s\" is longer than %zu characters",
                                config_text_printable(text, shown, sizeof shown),
                                RULE_NAME_SIZE - 1);
    if (strspn(text, allowed) != len)
        return config_text_fail(why, why_len, "\"%s\" may hold only letters, digits, _, . and -",
                                config_text_printable(text, shown, sizeof shown));
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
        return config_text_fail(why, why_len, "\"%s\" is longer than %zu characters",
                                config_text_printable(text, shown, sizeof shown), METHOD_SIZE - 1);
    int ok = len > 0;
    for (size_t i = 0; ok && i < len; i++) {
        ok = is_tchar(text[i]);
        method[i] = (text[i] >= 'a' && text[i] <= 'z') ? (char)(text[i] - 'a' + 'A') : text[i];
    }
    if (!ok)
        return config_text_fail(why, why_len, "\"%s\" is not a method name such as GET",
                                config_text_printable(text, shown, sizeof shown));
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

/* key: a word of key->choices, or header:NAME / host+header:NAME. The row points at rule->key and
 * this type serves no other row, so the header name goes beside it into the same rule. NAME is an
 * RFC 9110 field name (a token), compared without case when requests are read. */
static int parse_rate_key(const struct config_key *key, const char *text, void *dst, char *why,
                          size_t why_len)
{
    static const struct {
        const char *prefix;
        enum rate_key kind;
    } header_kinds[] = {{"header:", RATE_KEY_HEADER}, {"host+header:", RATE_KEY_HOST_HEADER}};
    struct rate_rule *rule =
        (struct rate_rule *)(void *)((char *)dst - offsetof(struct rate_rule, key));
    char shown[96];
    for (size_t k = 0; k < sizeof header_kinds / sizeof header_kinds[0]; k++) {
        size_t prefix_len = strlen(header_kinds[k].prefix);
        if (strncmp(text, header_kinds[k].prefix, prefix_len) != 0)
            continue;
        const char *name = text + prefix_len;
        size_t len = strlen(name);
        if (len == 0)
            return config_text_fail(why, why_len, "\"%s\" names no header (%sNAME)", text,
                                    header_kinds[k].prefix);
        if (len > RATE_KEY_HEADER_MAX)
            return config_text_fail(why, why_len, "\"%s\": a header name is at most %d characters",
                                    config_text_printable(text, shown, sizeof shown),
                                    RATE_KEY_HEADER_MAX);
        for (size_t i = 0; i < len; i++)
            if (!is_tchar(name[i]))
                return config_text_fail(why, why_len,
                                        "\"%s\": \"%s\" is not a header name (letters, digits and "
                                        "!#$%%&'*+-.^_`|~ only)",
                                        config_text_printable(text, shown, sizeof shown),
                                        config_text_printable(name, shown + 64, 32));
        memcpy(rule->key_header, name, len + 1);
        rule->key = header_kinds[k].kind;
        return 0;
    }
    int kind;
    if (config_text_choice(key->choices, text, &kind, why, why_len) != 0)
        return -1;
    rule->key = (enum rate_key)kind;
    rule->key_header[0] = '\0';
    return 0;
}

/* fair_by: a word of key->choices, or header:NAME; the name goes beside it into the same rule. */
static int parse_fair_by(const struct config_key *key, const char *text, void *dst, char *why,
                         size_t why_len)
{
    struct rate_rule *rule =
        (struct rate_rule *)(void *)((char *)dst - offsetof(struct rate_rule, fair_by));
    char shown[96];
    if (strncmp(text, "header:", 7) == 0) {
        const char *name = text + 7;
        size_t len = strlen(name);
        if (len == 0 || len > RATE_KEY_HEADER_MAX)
            return config_text_fail(
                why, why_len, "\"%s\": header:NAME with a NAME of 1 to %d characters",
                config_text_printable(text, shown, sizeof shown), RATE_KEY_HEADER_MAX);
        for (size_t i = 0; i < len; i++)
            if (!is_tchar(name[i]))
                return config_text_fail(why, why_len, "\"%s\" is not a header name",
                                        config_text_printable(name, shown, sizeof shown));
        memcpy(rule->fair_header, name, len + 1);
        rule->fair_by = RATE_FAIR_HEADER;
        return 0;
    }
    int kind;
    if (config_text_choice(key->choices, text, &kind, why, why_len) != 0)
        return -1;
    if (kind == RATE_FAIR_HEADER)
        return config_text_fail(why, why_len, "header:NAME needs a NAME");
    rule->fair_by = (enum rate_fair_by)kind;
    rule->fair_header[0] = '\0';
    return 0;
}

/* One weights entry, as config_yaml.c hands it over: "WEIGHT VALUE" (the value may hold
 * anything, spaces included). */
static int parse_weight_element(const struct config_key *key, const char *text, void *dst,
                                char *why, size_t why_len)
{
    (void)key;
    char shown[96];
    const char *space = strchr(text, ' ');
    uint64_t weight = 0;
    char digits[16];
    size_t len = space != NULL ? (size_t)(space - text) : 0;
    if (len == 0 || len >= sizeof digits)
        return config_text_fail(why, why_len, "expected a weight from 1 to %d", RATE_WEIGHT_MAX);
    memcpy(digits, text, len);
    digits[len] = '\0';
    if (!config_text_all_digits(digits) || config_text_number(digits, &weight) != 0 || weight < 1 ||
        weight > RATE_WEIGHT_MAX)
        return config_text_fail(why, why_len, "\"%s\" is not a weight from 1 to %d",
                                config_text_printable(digits, shown, sizeof shown),
                                RATE_WEIGHT_MAX);
    if (space[1] == '\0')
        return config_text_fail(why, why_len, "an empty value cannot be weighted");
    char *value = strdup(space + 1);
    if (value == NULL)
        return config_text_fail(why, why_len, "out of memory");
    *(struct fair_weight *)dst = (struct fair_weight){value, (uint32_t)weight};
    return 0;
}

static int same_weight(const void *a, const void *b)
{
    return strcmp(((const struct fair_weight *)a)->value, ((const struct fair_weight *)b)->value) ==
           0;
}

static void release_weights(void *elems, size_t count)
{
    struct fair_weight *weights = elems;
    for (size_t i = 0; i < count; i++)
        free(weights[i].value);
}

/* cost_header: "" for none, else a field name (a token) of at most RATE_KEY_HEADER_MAX. */
static int parse_header_name(const struct config_key *key, const char *text, void *dst, char *why,
                             size_t why_len)
{
    char shown[96];
    size_t len = strlen(text);
    (void)key;
    if (len > RATE_KEY_HEADER_MAX)
        return config_text_fail(why, why_len, "\"%s\": a header name is at most %d characters",
                                config_text_printable(text, shown, sizeof shown),
                                RATE_KEY_HEADER_MAX);
    for (size_t i = 0; i < len; i++)
        if (!is_tchar(text[i]))
            return config_text_fail(why, why_len,
                                    "\"%s\" is not a header name (letters, digits and "
                                    "!#$%%&'*+-.^_`|~ only)",
                                    config_text_printable(text, shown, sizeof shown));
    memcpy(dst, text, len + 1);
    return 0;
}

/* Compared with the request's path and query as received (no decoding or dot-segment removal), so
 * the prefix must look like one. */
static int parse_path_prefix(const struct config_key *key, const char *text, void *dst, char *why,
                             size_t why_len)
{
    char shown[64];
    (void)key;
    if (text[0] != '/')
        return config_text_fail(why, why_len, "\"%s\" must start with /",
                                config_text_printable(text, shown, sizeof shown));
    for (const char *p = text; *p != '\0'; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return config_text_fail(why, why_len, "\"%s\" contains a space or control character",
                                    config_text_printable(text, shown, sizeof shown));
    return config_text_store_string(dst, text, why, why_len);
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
        return config_text_fail(
            why, why_len,
            "\"%s\" is not a user name (1 to %d characters, no colon or control "
            "characters)",
            config_text_printable(text, shown, sizeof shown), USER_MAX_LEN);
    char *copy = strdup(text);
    if (copy == NULL)
        return config_text_fail(why, why_len, "out of memory");
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

static const struct config_type_ops rule_type_ops[CONFIG_TYPE_COUNT] = {
    [CONFIG_RULE_NAME] = {.describe = "a name such as github", .parse = parse_rule_name},
    [CONFIG_METHOD_LIST] = {.describe = "a method, or a list of methods",
                            .parse = parse_method_element,
                            .elem_size = METHOD_SIZE,
                            .same = same_method,
                            .store = store_methods},
    [CONFIG_PATH_PREFIX] = {.describe = "a path such as /api/",
                            .parse = parse_path_prefix,
                            .owns_string = 1},
    [CONFIG_RATE_KEY] = {.describe = "a key such as client or header:Authorization",
                         .parse = parse_rate_key},
    [CONFIG_HEADER_NAME] = {.describe = "a header name such as X-Request-Cost",
                            .parse = parse_header_name},
    [CONFIG_FAIR_BY] = {.describe = "none, client, user or header:NAME", .parse = parse_fair_by},
    [CONFIG_WEIGHT_MAP] = {.describe =
                               "a mapping of fair_by values to weights, such as {\"10.0.0.5\": 3}",
                           .parse = parse_weight_element,
                           .elem_size = sizeof(struct fair_weight),
                           .same = same_weight,
                           .release = release_weights},
    [CONFIG_USER_LIST] = {.describe = "a user name, or a list of them",
                          .parse = parse_user_element,
                          .elem_size = sizeof(char *),
                          .same = same_string,
                          .release = release_strings},
};

const struct config_type_ops *config_rule_value_ops(enum config_type type)
{
    if ((size_t)type >= CONFIG_TYPE_COUNT || rule_type_ops[type].describe == NULL)
        return NULL;
    return &rule_type_ops[type];
}
