/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_warn.h — advice about a config that loads but cannot do all it says: rules that name a
 * host and look inside requests (match.path_prefix, match.method) while https:// requests to that
 * host stay inside CONNECT tunnels that are not intercepted, and shared rules keyed by a header
 * without shared.key_secret (unkeyed hashes in Redis). Must not refuse a config: every warning is
 * about something that still works. */
#ifndef RLPROXY_CONFIG_WARN_H
#define RLPROXY_CONFIG_WARN_H

#include "config.h"

/* Calls back once per warning with "FILE:LINE:COLUMN: rate_limits[N] (name): ..." ; returns how
 * many there were. */
typedef void (*config_warning_callback)(const char *message, void *arg);
int config_rule_warnings(const struct config *cfg, config_warning_callback callback, void *arg);

/* The same warnings through log_warn(): at start, with -t, and on reload. */
int config_log_rule_warnings(const struct config *cfg);

#endif
