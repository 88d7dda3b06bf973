/* config_yaml_error.h — libyaml's parser errors as FILE:LINE:COLUMN messages that name the likely
 * mistake (a tab, bytes that are not UTF-8). Owns only the wording and the position; must not walk
 * events or know the option table (config_yaml.c does both). */
#ifndef RLPROXY_CONFIG_YAML_ERROR_H
#define RLPROXY_CONFIG_YAML_ERROR_H

#include <stddef.h>
#include <yaml.h>

/* Writes the message for the error parser stopped at into err; input is the text it read and name
 * stands in for the file name. */
void config_yaml_error_describe(const yaml_parser_t *parser, const unsigned char *input,
                                size_t input_len, const char *name, char *err, size_t err_len);

#endif
