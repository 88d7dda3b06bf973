/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_rule_value.h — the value types of a rate rule's own fields (rule name, match.host,
 * match.method, match.path_prefix, match.user, key, header names, fair_by, weights): how each is
 * parsed, compared and released. The ops of a type live in one struct config_type_ops, shared with
 * config_value.c, which owns the other types and the generic set/store/free over a table row and
 * is this module's only caller. Must not find values in YAML or declare keys. */
#ifndef RLPROXY_CONFIG_RULE_VALUE_H
#define RLPROXY_CONFIG_RULE_VALUE_H

#include "config.h"

/* Parse text into dst: a scalar field, or one element of a list; -1 with a reason in why. */
typedef int (*config_value_parser)(const struct config_key *key, const char *text, void *dst,
                                   char *why, size_t why_len);

/* What one value type means and how it is stored. */
struct config_type_ops {
    const char *describe;      /* for "expected ..." messages */
    config_value_parser parse; /* scalars: into the field; lists: into one element */
    size_t elem_size;          /* lists only */
    int (*same)(const void *a, const void *b);  /* lists only: repeated entries are refused */
    int owns_string;                            /* the field is a heap string to free */
    void (*release)(void *elems, size_t count); /* lists: free what elements own */
    void (*store)(void *field, void *elems, size_t count); /* lists kept in a fixed array */
};

/* The ops of a rate-rule field type; NULL for any other type (config_value.c has those). */
const struct config_type_ops *config_rule_value_ops(enum config_type type);

#endif
