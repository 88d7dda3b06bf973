/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_suggest.h — "did you mean": finds the known key or section closest to an unknown one. Pure
 * string work over a table's names; must not read YAML or values. */
#ifndef RLPROXY_CONFIG_SUGGEST_H
#define RLPROXY_CONFIG_SUGGEST_H

#include "config.h"

/* The row name or section ("timeouts") among keys[0..count) closest to `path`, copied into buf, or
 * NULL when nothing is close enough to be a likely typo. */
const char *config_suggest(const struct config_key *keys, size_t count, const char *path, char *buf,
                           size_t len);

#endif
