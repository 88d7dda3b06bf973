/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_yaml_error.h — config errors as FILE:LINE:COLUMN messages: libyaml's parser errors worded
 * to name the likely mistake (a tab, bytes that are not UTF-8), and the walk's own messages
 * composed in the same form. Owns only the wording and the position; must not walk events or know
 * the option table (config_yaml.c does both). */
#ifndef RLPROXY_CONFIG_YAML_ERROR_H
#define RLPROXY_CONFIG_YAML_ERROR_H

#include <stdarg.h>
#include <stddef.h>
#include <yaml.h>

/* Writes the message for the error parser stopped at into err; input is the text it read and name
 * stands in for the file name. */
void config_yaml_error_describe(const yaml_parser_t *parser, const unsigned char *input,
                                size_t input_len, const char *name, char *err, size_t err_len);

/* Writes "FILE:LINE:COLUMN: PATH: message" into err (PATH left out when empty); libyaml's marks
 * count from 0, editors from 1. */
void config_yaml_error_at(char *err, size_t err_len, const char *name, yaml_mark_t mark,
                          const char *path, const char *fmt, va_list ap)
    __attribute__((format(printf, 6, 0)));

/* What a node is, for "expected ..., got a list" messages. */
const char *config_yaml_node_kind(const yaml_event_t *ev);

#endif
