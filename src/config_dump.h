/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_dump.h — a loaded config written back as YAML through the table (`rlproxy -T`), and two
 * configs compared key by key (reload warnings). Reads configs only; must not load, change or
 * free one. */
#ifndef RLPROXY_CONFIG_DUMP_H
#define RLPROXY_CONFIG_DUMP_H

#include <stdio.h>

#include "config.h"

/* Every key of cfg, defaults included, as YAML that config_load_file() accepts again; values of
 * rows marked secret are masked. 0, or -1 when writing failed. */
int config_dump(const struct config *cfg, FILE *out);

/* One value of `base` (a struct config, or a struct rate_rule for a rule field) as YAML flow text;
 * mask: 1 to mask secret rows. A heap string (free it), or NULL when out of memory. */
char *config_format_value(const void *base, const struct config_key *key, int mask);

/* Called for each top-level key whose value differs, with both values as YAML text, masked. */
typedef void (*config_diff_callback)(const struct config_key *key, const char *old_text,
                                     const char *new_text, void *arg);

/* Compares every row of the table (lists entry by entry, rules field by field) and calls back
 * (callback may be NULL) for each that changed; returns how many did. */
int config_diff(const struct config *old_cfg, const struct config *new_cfg,
                config_diff_callback callback, void *arg);

/* Logs a warning for each key whose row is not reloadable and whose value differs between the
 * running config and the next one, naming the key and both values (masked); returns how many
 * keys differ in all. */
int config_warn_restart_only(const struct config *running, const struct config *next);

#endif
