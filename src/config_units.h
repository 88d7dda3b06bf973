/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_units.h — the units the table's bounds (config.c) and the value parsers (config_text.c)
 * share. Constants only: it includes nothing of the config, so the table can use it without
 * depending on the parsers. */
#ifndef RLPROXY_CONFIG_UNITS_H
#define RLPROXY_CONFIG_UNITS_H

#include <stdint.h>

#define MS_PER_S UINT64_C(1000)
#define MS_PER_M (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_M)
#define MS_PER_D (24 * MS_PER_H)
#define KIB UINT64_C(1024)
#define MIB (1024 * KIB)

#endif
