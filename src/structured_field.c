/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* structured_field.c — see structured_field.h. */
#include "structured_field.h"

#include <string.h>

struct cursor {
    const char *p, *end;
};

static int at(const struct cursor *c, char ch) { return c->p < c->end && *c->p == ch; }

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_lcalpha(char c) { return c >= 'a' && c <= 'z'; }

static int is_alpha(char c) { return is_lcalpha(c) || (c >= 'A' && c <= 'Z'); }

static int is_tchar(char c)
{
    return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~:/", c) != NULL);
}

static void append_text(struct sf_item *item, size_t *n, char c)
{
    if (*n + 1 < sizeof item->text) {
        item->text[(*n)++] = c;
        item->text[*n] = '\0';
    }
}

/* RFC 9651 4.2.4: an Integer has at most 15 digits; a Decimal at most 12 before the dot and 1-3
 * after it. */
static int parse_number(struct cursor *c, struct sf_item *item)
{
    int negative = at(c, '-');
    if (negative)
        c->p++;
    int digits = 0, fraction_digits = -1;
    int64_t value = 0;
    while (c->p < c->end && (is_digit(*c->p) || (*c->p == '.' && fraction_digits < 0))) {
        if (*c->p == '.') {
            if (digits > 12)
                return -1;
            fraction_digits = 0;
        } else if (fraction_digits >= 0) {
            if (++fraction_digits > 3)
                return -1;
        } else {
            if (++digits > 15)
                return -1;
            value = value * 10 + (*c->p - '0');
        }
        c->p++;
    }
    if (digits == 0 || fraction_digits == 0)
        return -1;
    item->kind = negative || fraction_digits > 0 ? SF_NUMBER : SF_INTEGER;
    item->integer = value;
    return 0;
}

static int parse_string(struct cursor *c, struct sf_item *item)
{
    size_t n = 0;
    c->p++; /* the opening quote */
    while (c->p < c->end) {
        char ch = *c->p++;
        if (ch == '"') {
            item->kind = SF_STRING;
            return 0;
        }
        if (ch == '\\') {
            if (c->p == c->end || (*c->p != '"' && *c->p != '\\'))
                return -1;
            ch = *c->p++;
        } else if (ch < 0x20 || ch > 0x7e) {
            return -1;
        }
        append_text(item, &n, ch);
    }
    return -1;
}

static int parse_display_string(struct cursor *c, struct sf_item *item)
{
    c->p += 2; /* %" */
    while (c->p < c->end) {
        char ch = *c->p++;
        if (ch == '"') {
            item->kind = SF_DISPLAY_STRING;
            return 0;
        }
        if (ch == '%') {
            for (int i = 0; i < 2; i++, c->p++)
                if (c->p == c->end || !(is_digit(*c->p) || (*c->p >= 'a' && *c->p <= 'f')))
                    return -1;
        } else if (ch < 0x20 || ch > 0x7e) {
            return -1;
        }
    }
    return -1;
}

static int parse_bare_item(struct cursor *c, struct sf_item *item)
{
    memset(item, 0, sizeof *item);
    if (c->p == c->end)
        return -1;
    char first = *c->p;
    if (first == '-' || is_digit(first))
        return parse_number(c, item);
    if (first == '"')
        return parse_string(c, item);
    if (is_alpha(first) || first == '*') {
        size_t n = 0;
        while (c->p < c->end && is_tchar(*c->p))
            append_text(item, &n, *c->p++);
        item->kind = SF_TOKEN;
        return 0;
    }
    if (first == ':') {
        c->p++;
        while (c->p < c->end &&
               (is_alpha(*c->p) || is_digit(*c->p) || *c->p == '+' || *c->p == '/' || *c->p == '='))
            c->p++;
        if (!at(c, ':'))
            return -1;
        c->p++;
        item->kind = SF_BYTES;
        return 0;
    }
    if (first == '?') {
        c->p++;
        if (!at(c, '0') && !at(c, '1'))
            return -1;
        c->p++;
        item->kind = SF_BOOLEAN;
        return 0;
    }
    if (first == '@') {
        struct sf_item seconds;
        c->p++;
        if (parse_number(c, &seconds) != 0)
            return -1;
        item->kind = SF_DATE;
        return 0;
    }
    if (first == '%' && c->end - c->p > 1 && c->p[1] == '"')
        return parse_display_string(c, item);
    return -1;
}

/* key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ); "" when it does not fit */
static int parse_key(struct cursor *c, char *key, size_t size)
{
    size_t n = 0;
    if (c->p == c->end || !(is_lcalpha(*c->p) || *c->p == '*'))
        return -1;
    while (c->p < c->end &&
           (is_lcalpha(*c->p) || is_digit(*c->p) || (*c->p != '\0' && strchr("_-.*", *c->p)))) {
        if (n + 1 < size)
            key[n] = *c->p;
        n++;
        c->p++;
    }
    key[n + 1 < size ? n : 0] = '\0';
    return 0;
}

static void skip_spaces(struct cursor *c)
{
    while (at(c, ' '))
        c->p++;
}

/* One ";key" or ";key=value" at c; 0 when c is not at a ';', -1 when what follows is not one. */
static int parse_parameter(struct cursor *c, struct sf_parameter *out)
{
    if (!at(c, ';'))
        return 0;
    memset(out, 0, sizeof *out);
    out->value.kind = SF_BOOLEAN; /* a parameter without a value is true */
    c->p++;
    skip_spaces(c);
    if (parse_key(c, out->key, sizeof out->key) != 0)
        return -1;
    if (at(c, '=')) {
        c->p++;
        if (parse_bare_item(c, &out->value) != 0)
            return -1;
    }
    return 1;
}

static int skip_parameters(struct cursor *c)
{
    struct sf_parameter ignored;
    int more;
    while ((more = parse_parameter(c, &ignored)) > 0)
        continue;
    return more;
}

int sf_next_parameter(struct sf_parameters *parameters, struct sf_parameter *out)
{
    struct cursor c = {parameters->next, parameters->end};
    if (parse_parameter(&c, out) <= 0)
        return 0;
    parameters->next = c.p;
    return 1;
}

static int parse_inner_list(struct cursor *c, struct sf_item *item)
{
    memset(item, 0, sizeof *item);
    item->kind = SF_INNER_LIST;
    c->p++; /* ( */
    for (;;) {
        skip_spaces(c);
        if (at(c, ')')) {
            c->p++;
            return 0;
        }
        struct sf_item member;
        if (parse_bare_item(c, &member) != 0 || skip_parameters(c) != 0)
            return -1;
        if (!at(c, ' ') && !at(c, ')'))
            return -1;
    }
}

static int parse_item_or_inner_list(struct cursor *c, struct sf_item *item)
{
    return at(c, '(') ? parse_inner_list(c, item) : parse_bare_item(c, item);
}

/* A List member, or a Dictionary member when a key and "=" start it (draft-07's
 * "limit=100, remaining=50, reset=30"): a key is also a Token, so the Token is read first. */
static int parse_member(struct cursor *c, struct sf_member *m)
{
    memset(m, 0, sizeof *m);
    const char *start = c->p;
    if (parse_item_or_inner_list(c, &m->item) != 0)
        return -1;
    if (m->item.kind == SF_TOKEN && at(c, '=')) {
        struct cursor key_cursor = {start, c->p};
        if (parse_key(&key_cursor, m->key, sizeof m->key) != 0 || key_cursor.p != c->p)
            return -1;
        c->p++;
        if (parse_item_or_inner_list(c, &m->item) != 0)
            return -1;
    }
    m->parameters.next = c->p;
    if (skip_parameters(c) != 0)
        return -1;
    m->parameters.end = c->p;
    return 0;
}

int sf_parse_members(const char *value, size_t len, sf_member_visitor visit, void *context)
{
    for (int pass = 0; pass < 2; pass++) {
        struct cursor c = {value, value + len};
        skip_spaces(&c);
        while (c.p < c.end) {
            struct sf_member m;
            if (parse_member(&c, &m) != 0)
                return -1;
            if (pass == 1)
                visit(&m, context);
            while (at(&c, ' ') || at(&c, '\t'))
                c.p++;
            if (c.p == c.end)
                break;
            if (*c.p++ != ',')
                return -1;
            while (at(&c, ' ') || at(&c, '\t'))
                c.p++;
            if (c.p == c.end)
                return -1; /* a trailing comma */
        }
    }
    return 0;
}
