/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_dump.c — writes a loaded config back as YAML, key by key through the table (what `-T`
 * prints), and compares two configs the same way (what a reload warns about). Values are written
 * in the form the parsers read, so the output loads again as the same config; values of rows
 * marked secret are masked, which is the one place where it would not. The table's reloadable
 * field is read here, at run time: a reload warns for every restart-only key that changed. */

#include "config_dump.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_text.h"
#include "log.h"
#include "config_value.h"

#define MASK "********"

static const void *field_at(const void *base, const struct config_key *key)
{
    return (const char *)base + key->offset;
}

static const void *list_at(const void *base, const struct config_key *key)
{
    const void *elems;
    memcpy(&elems, field_at(base, key), sizeof elems);
    return elems;
}

static size_t count_at(const void *base, const struct config_key *key)
{
    size_t count;
    memcpy(&count, (const char *)base + key->count_offset, sizeof count);
    return count;
}

/* Length of the UTF-8 sequence at p and its code point. The loader accepted the text, so it is
 * valid UTF-8; a stray byte is taken as one character rather than trusted further. */
static size_t utf8_decode(const unsigned char *p, uint32_t *cp)
{
    size_t n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 : 4;
    *cp = n == 1 ? p[0] : n == 2 ? p[0] & 0x1fu : n == 3 ? p[0] & 0x0fu : p[0] & 0x07u;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            *cp = p[0];
            return 1;
        }
        *cp = (*cp << 6) | (p[i] & 0x3fu);
    }
    return n;
}

/* What YAML may read back as something else: a line break (NEL, U+2028, U+2029), a character
 * its reader refuses unescaped (controls, surrogates, U+FFFE, U+FFFF), or a BOM it may drop. */
static int needs_escape(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfeff || cp == 0xfffe || cp == 0xffff;
}

/* A YAML double-quoted scalar: the one style that can carry every character a value may hold. */
static void put_quoted(FILE *out, const char *text)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0';) {
        uint32_t cp;
        size_t n = utf8_decode(p, &cp);
        if (cp == '"' || cp == '\\')
            fprintf(out, "\\%c", (char)cp);
        else if (cp < 0x20)
            fprintf(out, "\\x%02x", (unsigned)cp);
        else if (needs_escape(cp))
            fprintf(out, "\\u%04x", (unsigned)cp);
        else
            fwrite(p, 1, n, out);
        p += n;
    }
    fputc('"', out);
}

/* scheme://user:password@host... with the password (or a lone user-info, which for Redis is the
 * password) replaced; anything without user-info is printed as it is. */
static void put_masked_url(FILE *out, const char *url)
{
    const char *scheme_end = strstr(url, "://");
    const char *authority = scheme_end != NULL ? scheme_end + 3 : NULL;
    const char *at = NULL;
    if (authority != NULL) {
        size_t authority_len = strcspn(authority, "/?#");
        for (size_t i = 0; i < authority_len; i++)
            if (authority[i] == '@')
                at = authority + i;
    }
    if (at == NULL) {
        put_quoted(out, url);
        return;
    }
    const char *colon = memchr(authority, ':', (size_t)(at - authority));
    const char *keep_end = colon != NULL ? colon + 1 : authority;
    size_t masked_len = (size_t)(keep_end - url) + strlen(MASK) + strlen(at) + 1;
    char *masked = malloc(masked_len);
    if (masked == NULL) {
        put_quoted(out, MASK);
        return;
    }
    snprintf(masked, masked_len, "%.*s%s%s", (int)(keep_end - url), url, MASK, at);
    put_quoted(out, masked);
    free(masked);
}

static void put_string(FILE *out, const struct config_key *key, const char *text, int mask)
{
    if (text == NULL)
        text = "";
    if (mask && text[0] != '\0' &&
        (key->type == CONFIG_SECRET ||
         (key->secret && strstr(text, "://") == NULL && strncmp(text, "unix:", 5) != 0)))
        put_quoted(out, MASK); /* not a URL (admin.token, shared.key_secret): all of it is secret */
    else if (mask && key->secret)
        put_masked_url(out, text);
    else
        put_quoted(out, text);
}

static void put_cidr(FILE *out, const struct cidr *c)
{
    char addr[INET6_ADDRSTRLEN];
    inet_ntop(c->family, c->addr, addr, sizeof addr);
    fprintf(out, "\"%s/%u\"", addr, c->prefix);
}

static void put_host_pattern(FILE *out, const struct host_pattern *hp)
{
    fprintf(out, "\"%s%s\"", hp->wildcard ? "*" : "", hp->text);
}

static void put_retry_on(FILE *out, uint16_t on)
{
    if (on == RETRY_ON_CONNECT_ERROR)
        fputs("connect_error", out);
    else if (on == RETRY_ON_TIMEOUT)
        fputs("timeout", out);
    else
        fprintf(out, "%u", (unsigned)on);
}

static void put_rule(FILE *out, const struct rate_rule *rule, int mask);

/* One element of a list type. */
static void put_element(FILE *out, const struct config_key *key, const void *elems, size_t i,
                        int mask)
{
    switch (key->type) {
    case CONFIG_LISTEN_LIST:
        put_quoted(out, ((const struct listen_addr *)elems)[i].text);
        break;
    case CONFIG_CIDR_LIST:
        put_cidr(out, &((const struct cidr *)elems)[i]);
        break;
    case CONFIG_PORT_LIST:
        fprintf(out, "%u", (unsigned)((const uint16_t *)elems)[i]);
        break;
    case CONFIG_RETRY_ON_LIST:
        put_retry_on(out, ((const uint16_t *)elems)[i]);
        break;
    case CONFIG_HOST_PATTERN_LIST:
    case CONFIG_HOST_NAME_LIST:
        put_host_pattern(out, &((const struct host_pattern *)elems)[i]);
        break;
    case CONFIG_METHOD_LIST:
        fputs((const char *)elems + i * config_value_elem_size(key), out);
        break;
    case CONFIG_USER_LIST:
        put_quoted(out, ((char *const *)elems)[i]);
        break;
    case CONFIG_USER_MAP: {
        const struct auth_user *u = &((const struct auth_user *)elems)[i];
        put_quoted(out, u->name);
        fputs(": ", out);
        put_quoted(out, mask ? MASK : u->hash);
        break;
    }
    case CONFIG_RATE_RULES:
        put_rule(out, &((const struct rate_rule *)elems)[i], mask);
        break;
    case CONFIG_WEIGHT_MAP: {
        const struct fair_weight *fw = &((const struct fair_weight *)elems)[i];
        put_quoted(out, fw->value);
        fprintf(out, ": %u", fw->weight);
        break;
    }
    default:
        break;
    }
}

static void put_list(FILE *out, const void *base, const struct config_key *key, int mask)
{
    size_t count = count_at(base, key);
    if (key->type == CONFIG_USER_MAP) /* only at the top level; the file's users stay in the file */
        count -= ((const struct config *)base)->auth_users_from_file;
    /* match_method and retry.methods are fixed arrays inside the struct, not heap arrays */
    const void *elems = key->type == CONFIG_METHOD_LIST ? field_at(base, key) : list_at(base, key);
    int mapping = key->type == CONFIG_USER_MAP || key->type == CONFIG_WEIGHT_MAP;
    fputc(mapping ? '{' : '[', out);
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            fputs(", ", out);
        put_element(out, key, elems, i, mask);
    }
    fputc(mapping ? '}' : ']', out);
}

static void put_scalar(FILE *out, const void *base, const struct config_key *key, int mask)
{
    const void *field = field_at(base, key);
    char text[64];
    switch (key->type) {
    case CONFIG_BOOL:
        fputs(*(const int *)field ? "true" : "false", out);
        break;
    case CONFIG_UINT:
    case CONFIG_WORKERS: /* "auto" was resolved at load; the number is what serves */
        fprintf(out, "%u", *(const unsigned *)field);
        break;
    case CONFIG_PERCENT:
        fprintf(out, "\"%u%%\"", *(const unsigned *)field);
        break;
    case CONFIG_DURATION:
        config_text_format_duration(*(const uint64_t *)field, text, sizeof text);
        fputs(text, out);
        break;
    case CONFIG_SIZE:
        config_text_format_size(*(const size_t *)field, text, sizeof text);
        fputs(text, out);
        break;
    case CONFIG_ENUM:
    case CONFIG_LOG_LEVEL:
        fputs(key->choices[*(const int *)field], out);
        break;
    case CONFIG_RULE_NAME:
    case CONFIG_HEADER_NAME:
        put_quoted(out, (const char *)field);
        break;
    case CONFIG_RATE_KEY: { /* the row is a rule's key; a header kind's name is beside it */
        const struct rate_rule *rule = base;
        int kind = *(const int *)field;
        if (kind == RATE_KEY_HEADER || kind == RATE_KEY_HOST_HEADER) {
            char word[RATE_KEY_HEADER_MAX + 16];
            snprintf(word, sizeof word, "%s%s",
                     kind == RATE_KEY_HEADER ? "header:" : "host+header:", rule->key_header);
            put_quoted(out, word); /* a tchar such as # or | would mean something unquoted */
        } else {
            fputs(key->choices[kind], out);
        }
        break;
    }
    case CONFIG_FAIR_BY: {
        const struct rate_rule *rule = base;
        int kind = *(const int *)field;
        if (kind == RATE_FAIR_HEADER) {
            char word[RATE_KEY_HEADER_MAX + 16];
            snprintf(word, sizeof word, "header:%s", rule->fair_header);
            put_quoted(out, word);
        } else {
            fputs(key->choices[kind], out);
        }
        break;
    }
    default: /* the string types */
        put_string(out, key, *(char *const *)field, mask);
        break;
    }
}

static void put_value(FILE *out, const void *base, const struct config_key *key, int mask)
{
    if (config_value_elem_size(key) > 0)
        put_list(out, base, key, mask);
    else
        put_scalar(out, base, key, mask);
}

/* A field that is not set: an empty match list, or no path prefix. */
static int rule_field_unset(const struct rate_rule *rule, const struct config_key *f)
{
    if (config_value_elem_size(f) > 0)
        return count_at(rule, f) == 0;
    if (f->type == CONFIG_PATH_PREFIX)
        return rule->match_path_prefix == NULL;
    return 0;
}

/* One rule as a flow mapping; the match.* rows, which are adjacent in the table, nest under one
 * match: key. */
static void put_rule(FILE *out, const struct rate_rule *rule, int mask)
{
    size_t count;
    const struct config_key *fields = config_rule_fields(&count);
    int need_separator = 0, in_match = 0, match_needs_separator = 0;
    fputc('{', out);
    for (size_t i = 0; i < count; i++) {
        const struct config_key *f = &fields[i];
        int is_match = strncmp(f->name, "match.", 6) == 0;
        if (is_match && rule_field_unset(rule, f))
            continue;
        if (in_match && !is_match) {
            fputc('}', out);
            in_match = 0;
        }
        if (!in_match) {
            if (need_separator)
                fputs(", ", out);
            need_separator = 1;
        }
        if (is_match && !in_match) {
            fputs("match: {", out);
            in_match = 1;
            match_needs_separator = 0;
        }
        if (is_match && match_needs_separator)
            fputs(", ", out);
        match_needs_separator = is_match;
        fprintf(out, "%s: ", is_match ? f->name + 6 : f->name);
        put_value(out, rule, f, mask);
    }
    if (in_match)
        fputc('}', out);
    fputc('}', out);
}

char *config_format_value(const void *base, const struct config_key *key, int mask)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL)
        return NULL;
    put_value(out, base, key, mask);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static size_t section_len(const char *name)
{
    const char *dot = strchr(name, '.');
    return dot != NULL ? (size_t)(dot - name) : 0;
}

int config_dump(const struct config *cfg, FILE *out)
{
    size_t count;
    const struct config_key *keys = config_keys(&count);
    char source[256]; /* a comment line: a newline in the file name would end it */
    fprintf(out, "# effective configuration of %s; values marked " MASK " are masked\n",
            config_text_printable(cfg->source, source, sizeof source));
    for (size_t i = 0; i < count; i++) {
        size_t section = section_len(keys[i].name);
        int seen = 0; /* a section's keys are written together, at its first key */
        for (size_t j = 0; j < i && section > 0 && !seen; j++)
            seen = section_len(keys[j].name) == section &&
                   strncmp(keys[j].name, keys[i].name, section) == 0;
        if (seen)
            continue;
        if (section == 0) {
            fprintf(out, "%s:", keys[i].name);
            if (keys[i].type == CONFIG_RATE_RULES && count_at(cfg, &keys[i]) > 0) {
                const struct rate_rule *rules = list_at(cfg, &keys[i]);
                for (size_t r = 0; r < count_at(cfg, &keys[i]); r++) {
                    fputs("\n  - ", out);
                    put_rule(out, &rules[r], 1);
                }
            } else {
                fputc(' ', out);
                put_value(out, cfg, &keys[i], 1);
            }
            fputc('\n', out);
            continue;
        }
        fprintf(out, "%.*s:\n", (int)section, keys[i].name);
        for (size_t j = i; j < count; j++) {
            if (section_len(keys[j].name) != section ||
                strncmp(keys[j].name, keys[i].name, section) != 0)
                continue;
            fprintf(out, "  %s: ", keys[j].name + section + 1);
            put_value(out, cfg, &keys[j], 1);
            fputc('\n', out);
        }
    }
    return ferror(out) ? -1 : 0;
}

int config_diff(const struct config *old_cfg, const struct config *new_cfg,
                config_diff_callback callback, void *arg)
{
    size_t count;
    const struct config_key *keys = config_keys(&count);
    int changed = 0;
    for (size_t i = 0; i < count; i++) {
        /* compared in full, so a changed password counts; reported masked */
        char *before = config_format_value(old_cfg, &keys[i], 0);
        char *after = config_format_value(new_cfg, &keys[i], 0);
        int differ = before == NULL || after == NULL || strcmp(before, after) != 0;
        free(before);
        free(after);
        if (!differ)
            continue;
        changed++;
        if (callback == NULL)
            continue;
        char *shown_before = config_format_value(old_cfg, &keys[i], 1);
        char *shown_after = config_format_value(new_cfg, &keys[i], 1);
        callback(&keys[i], shown_before != NULL ? shown_before : "?",
                 shown_after != NULL ? shown_after : "?", arg);
        free(shown_before);
        free(shown_after);
    }
    return changed;
}

static void warn_restart_only(const struct config_key *key, const char *old_text,
                              const char *new_text, void *arg)
{
    (void)arg;
    if (!key->reloadable)
        log_warn("reload: %s changed from %s to %s; the running value stays until a restart",
                 key->name, old_text, new_text);
}

int config_warn_restart_only(const struct config *running, const struct config *next)
{
    return config_diff(running, next, warn_restart_only, NULL);
}
