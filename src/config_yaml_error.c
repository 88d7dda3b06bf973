/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_yaml_error.c — see config_yaml_error.h. */
#include "config_yaml_error.h"

#include <stdio.h>
#include <string.h>

/* The reader reports a byte offset, not a mark; count lines and UTF-8 characters up to it. */
static yaml_mark_t mark_at_offset(const unsigned char *input, size_t input_len, size_t offset)
{
    yaml_mark_t mark = {offset, 0, 0};
    for (size_t i = 0; i < offset && i < input_len; i++) {
        if (input[i] == '\n') {
            mark.line++;
            mark.column = 0;
        } else if ((input[i] & 0xc0) != 0x80) {
            mark.column++;
        }
    }
    return mark;
}

/* libyaml blames a tab with words that do not name it ("found character that cannot start any
 * token") or only half do; a tab is the likeliest mistake in a hand-written file, so say so.
 * NULL when the error is not at a tab. */
static const char *tab_problem(const yaml_parser_t *p, const unsigned char *input, size_t input_len)
{
    size_t at = p->problem_mark.index;
    if (p->error != YAML_SCANNER_ERROR || at >= input_len || input[at] != '\t')
        return NULL;
    size_t line_start = at;
    while (line_start > 0 && input[line_start - 1] != '\n')
        line_start--;
    int indenting = 1;
    for (size_t i = line_start; i < at; i++)
        indenting &= input[i] == ' ' || input[i] == '\t';
    return indenting ? "a tab character indents this line; YAML indents with spaces"
                     : "a tab character cannot start a value here; use spaces";
}

void config_yaml_error_describe(const yaml_parser_t *p, const unsigned char *input,
                                size_t input_len, const char *name, char *err, size_t err_len)
{
    if (err == NULL || err_len == 0)
        return;
    /* libyaml's marks count from 0; editors count from 1 */
    if (p->error == YAML_MEMORY_ERROR) {
        snprintf(err, err_len, "%s:1:1: out of memory", name);
        return;
    }
    const char *tab = tab_problem(p, input, input_len);
    yaml_mark_t mark = p->error == YAML_READER_ERROR && tab == NULL
                           ? mark_at_offset(input, input_len, p->problem_offset)
                           : p->problem_mark;
    snprintf(err, err_len, "%s:%zu:%zu: %s", name, mark.line + 1, mark.column + 1,
             tab != NULL          ? tab
             : p->problem != NULL ? p->problem
                                  : "YAML syntax error");
    if (tab != NULL)
        return;
    size_t used = strlen(err);
    if (p->error == YAML_READER_ERROR && p->problem_value != -1)
        used += (size_t)snprintf(err + used, err_len - used, " (#%X)", (unsigned)p->problem_value);
    if (p->context != NULL && used < err_len)
        snprintf(err + used, err_len - used, " (%s at line %zu, column %zu)", p->context,
                 p->context_mark.line + 1, p->context_mark.column + 1);
}

void config_yaml_error_at(char *err, size_t err_len, const char *name, yaml_mark_t mark,
                          const char *path, const char *fmt, va_list ap)
{
    if (err == NULL || err_len == 0)
        return;
    int used = snprintf(err, err_len, "%s:%zu:%zu: %s%s", name, mark.line + 1, mark.column + 1,
                        path != NULL ? path : "", path != NULL && *path != '\0' ? ": " : "");
    if (used >= 0 && (size_t)used < err_len)
        vsnprintf(err + used, err_len - (size_t)used, fmt, ap);
}

const char *config_yaml_node_kind(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    case YAML_SEQUENCE_START_EVENT:
        return "a list";
    case YAML_SCALAR_EVENT:
        return "a single value";
    default:
        return "something else";
    }
}
