/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_value.h — what each type of config value means and how it is stored at a table row's
 * offset (parse, compare entries, store, free). Between config.c, config_yaml.c and config_dump.c;
 * the rest of rlproxy has no use for these. Must not find values in YAML or declare keys.
 *
 * Storage per type: BOOL int, UINT and WORKERS unsigned, DURATION uint64_t ms, SIZE size_t,
 * STRING char * (heap), ENUM and LOG_LEVEL the enum, *_LIST a heap array and a size_t count. */
#ifndef RLPROXY_CONFIG_VALUE_H
#define RLPROXY_CONFIG_VALUE_H

#include "config.h"

/* Element size for list types; 0 for scalar types. */
size_t config_value_elem_size(const struct config_key *key);
/* What the value should look like, for "expected ..." messages: "a duration such as 10s". */
const char *config_value_describe(const struct config_key *key);
/* Scalar types: parse text and store it in cfg (freeing the old value); -1 with a reason in why. */
int config_value_set(struct config *cfg, const struct config_key *key, const char *text, char *why,
                     size_t why_len);
/* List types: parse one element into elem (elem_size bytes); -1 with a reason in why. */
int config_value_parse_element(const struct config_key *key, const char *text, void *elem,
                               char *why, size_t why_len);
/* List types: 1 when two parsed elements are the same entry (a repeated entry is an error). */
int config_value_same_element(const struct config_key *key, const void *a, const void *b);
/* List types: store a heap array (ownership passes to cfg; the old array is freed). */
void config_value_set_list(struct config *cfg, const struct config_key *key, void *elems,
                           size_t count);
/* The same, for a table whose offsets are relative to `base` rather than to a struct config (the
 * rate-rule fields: base is a struct rate_rule). config_value_set() and _set_list() are these with
 * base = cfg. */
int config_value_set_at(void *base, const struct config_key *key, const char *text, char *why,
                        size_t why_len);
void config_value_set_list_at(void *base, const struct config_key *key, void *elems, size_t count);
/* List types: free what `count` parsed elements own (strings, a rule's lists), not the array. */
void config_value_release(const struct config_key *key, void *elems, size_t count);
/* What every field of `table` owns in `base` (a struct config or a rule); the struct stays. */
void config_value_free_fields(void *base, const struct config_key *table, size_t count);

/* A rule with every optional field at its default and nothing owned; -1 only for a broken row. */
int config_rule_init(struct rate_rule *rule, char *why, size_t why_len);

#endif
