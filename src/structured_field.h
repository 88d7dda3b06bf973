/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* structured_field.h — one HTTP field line read as an RFC 9651 Structured Field: a List of Items
 * with Parameters, or a Dictionary. A pure parser of outside input: no I/O, no heap, no global
 * state. It owns the syntax only and must not know what any field, key or parameter means (its
 * callers do), nor hand out a member of a line that does not parse whole (RFC 9651 4.2: such a
 * field is ignored, and a half-read line could drop its strictest member).
 *
 * The subset, and where it is not RFC 9651 to the letter ("sf" is the RFC's own prefix):
 *   List and Dictionary  one grammar: a member "key=value" is a Dictionary member (key set), any
 *                        other member is a List member (key ""). A bare Dictionary key therefore
 *                        comes back as a Token member, not as the Boolean true the RFC makes it.
 *                        Repeated keys and parameters are all handed over, in order.
 *   values kept          Integers written without a sign (SF_INTEGER), Strings and Tokens (cut to
 *                        SF_TEXT_SIZE - 1 bytes); keys (a key longer than SF_KEY_SIZE - 1 is "").
 *   values checked only  negative Integers and Decimals (SF_NUMBER), Byte Sequences, Booleans,
 *                        Dates (a Decimal after "@" is let through), Display Strings (their
 *                        percent-encoded bytes are not checked as UTF-8), Inner Lists. */
#ifndef RLPROXY_STRUCTURED_FIELD_H
#define RLPROXY_STRUCTURED_FIELD_H

#include <stddef.h>
#include <stdint.h>

#define SF_KEY_SIZE 16
#define SF_TEXT_SIZE 32

enum sf_kind {
    SF_INTEGER, /* >= 0, at most 15 digits */
    SF_NUMBER,  /* a negative Integer or a Decimal: its value is not kept */
    SF_STRING,
    SF_TOKEN,
    SF_BYTES,
    SF_BOOLEAN, /* also a parameter with no "=" */
    SF_DATE,
    SF_DISPLAY_STRING,
    SF_INNER_LIST,
};

struct sf_item {
    enum sf_kind kind;
    int64_t integer;         /* SF_INTEGER only */
    char text[SF_TEXT_SIZE]; /* SF_STRING, SF_TOKEN: the value, unescaped and cut to fit */
};

/* Where a member's parameters are in the line: read them with sf_next_parameter, on a copy. */
struct sf_parameters {
    const char *next, *end;
};

struct sf_member {
    char key[SF_KEY_SIZE];           /* a Dictionary member's key; "" for a List member */
    struct sf_item item;             /* a Dictionary member's value */
    struct sf_parameters parameters; /* valid while the line is */
};

struct sf_parameter {
    char key[SF_KEY_SIZE];
    struct sf_item value;
};

typedef void (*sf_member_visitor)(const struct sf_member *member, void *context);

/* Parses value (one field line's value, without the name) and, only when all of it parses,
 * hands each member to visit in order. 0 when the line parses (an empty line has no members),
 * -1 when it does not: then visit was not called. */
int sf_parse_members(const char *value, size_t len, sf_member_visitor visit, void *context);

/* The next of a member's parameters into *out, advancing *parameters; 0 when there is none left. */
int sf_next_parameter(struct sf_parameters *parameters, struct sf_parameter *out);

#endif
