/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_text.h — the words of a config below the level of keys: numbers with units, listen
 * addresses, host names, and the short echo of a value in messages. Shared by config_value.c and
 * config_dump.c; must not know the table or YAML. (cidr_*, host_pattern_match and
 * config_parse_duration_ms/size, which other modules use, are declared in config.h.) */
#ifndef RLPROXY_CONFIG_TEXT_H
#define RLPROXY_CONFIG_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "config_units.h"

/* Decimal digits only, no sign or space, overflow-checked; 0 or -1. */
int config_text_number(const char *text, uint64_t *out);
/* 1 when text is one or more decimal digits and nothing else. */
int config_text_all_digits(const char *text);
/* 1 when text is digits and a duration (size) unit, even if the value would overflow. */
int config_text_is_duration_form(const char *text);
int config_text_is_size_form(const char *text);
/* The largest unit that divides the value exactly: "100ms", "5m", "1MiB". */
void config_text_format_duration(uint64_t ms, char *buf, size_t len);
void config_text_format_size(uint64_t bytes, char *buf, size_t len);
/* text shortened to fit buf (len >= 8), control characters as '?'; returns buf. */
const char *config_text_printable(const char *text, char *buf, size_t len);
/* Writes the reason into why (when there is room) and returns -1. */
int config_text_fail(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* text as the index of one of `choices` (NULL-terminated) into *out; -1 naming them all. */
int config_text_choice(const char *const *choices, const char *text, int *out, char *why,
                       size_t why_len);
/* A heap copy of text into *(char **)dst, freeing the value there (a default, or an earlier
 * load); the field keeps its old value when out of memory. */
int config_text_store_string(void *dst, const char *text, char *why, size_t why_len);
/* "127.0.0.1:3128", "[::1]:3128", "*:3128", "localhost:3128" into out; -1 with a reason. */
int config_text_listen(const char *text, struct listen_addr *out, char *why, size_t why_len);
/* A host name or "*.suffix" into hp (zeroed first, lower-cased); 0 or -1. */
int config_text_host_name(const char *text, struct host_pattern *hp);

/* 1 when the address is 127.0.0.0/8 or ::1. */
int config_listen_is_loopback(const struct listen_addr *la);

#endif
