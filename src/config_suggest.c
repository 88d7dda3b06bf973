/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_suggest.c — "did you mean": the known key or section closest to an unknown one. Pure
 * string work over a table's names; no YAML, no values. */

#include "config_suggest.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Longest dotted key path compared; longer ones cannot be in a table. */
#define PATH_MAX_LEN 128

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[PATH_MAX_LEN + 1];
    if (la > PATH_MAX_LEN || lb > PATH_MAX_LEN)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t above = row[j];
            size_t best = diagonal + (a[i - 1] != b[j - 1]);
            if (above + 1 < best)
                best = above + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[lb];
}

static const char *last_part(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot != NULL ? dot + 1 : path;
}

/* How far `path` is from `name`: spelling distance, but for keys (not sections) the right leaf word
 * in the wrong section ("client_header" at the top) or a fragment of one ("timeouts.connect") is
 * close. */
static size_t key_distance(const char *path, const char *name, int is_section)
{
    const char *leaf = last_part(path), *name_leaf = last_part(name);
    size_t d = edit_distance(path, name);
    if (is_section)
        return d;
    if (strcmp(leaf, name_leaf) == 0 && d > 1)
        d = 1;
    if (strlen(leaf) >= 4 && strstr(name_leaf, leaf) != NULL && d > 2)
        d = 2;
    return d;
}

static void consider(const char *path, const char *name, size_t n, size_t *best, char *buf,
                     size_t len)
{
    int is_section = name[n] == '.';
    char candidate[PATH_MAX_LEN];
    if (n >= sizeof candidate)
        return;
    memcpy(candidate, name, n);
    candidate[n] = '\0';
    /* doubled, with the odd unit as a tie-break for a candidate in the same section */
    const char *dot = strchr(path, '.');
    size_t section = dot ? (size_t)(dot - path) : 0;
    int same_section = section > 0 && strncmp(candidate, path, section + 1) == 0;
    size_t d = key_distance(path, candidate, is_section) * 2 + !same_section;
    if (d < *best) {
        *best = d;
        snprintf(buf, len, "%s", candidate);
    }
}

/* The known key or section closest to an unknown `path` (both as the scope's table names them), or
 * NULL when nothing is close. */
const char *config_suggest(const struct config_key *keys, size_t count, const char *path, char *buf,
                           size_t len)
{
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < count; i++) {
        const char *name = keys[i].name;
        consider(path, name, strlen(name), &best, buf, len);
        for (const char *dot = strchr(name, '.'); dot != NULL; dot = strchr(dot + 1, '.'))
            consider(path, name, (size_t)(dot - name), &best, buf, len); /* its sections */
    }
    size_t tolerance = strlen(path) / 4 > 2 ? strlen(path) / 4 : 2;
    return best / 2 <= tolerance ? buf : NULL;
}
