/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_yaml.h — the libyaml walk: finds values in YAML text and hands them to config_value.c,
 * naming FILE:LINE:COLUMN of the node at fault in every error. Must not decide what a value means,
 * open files, or touch anything but the struct config it fills. */
#ifndef RLPROXY_CONFIG_YAML_H
#define RLPROXY_CONFIG_YAML_H

#include "config.h"

/* Walk one YAML document over cfg (which holds the defaults); -1 with the message in err. `name`
 * stands in for the file name in messages. */
int config_yaml_walk(struct config *cfg, const char *text, size_t len, const char *name, char *err,
                     size_t err_len);

/* Parse key->default_text through the same value walker into cfg. */
int config_yaml_set_default(struct config *cfg, const struct config_key *key, char *err,
                            size_t err_len);

#endif
