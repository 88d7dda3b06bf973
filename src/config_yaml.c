/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_yaml.c — turns YAML text into a struct config by walking libyaml's event stream against
 * the declaration table in config.c, and owns every position: each error names FILE:LINE:COLUMN of
 * the node at fault. What a value means is config_value.c's business; this file only finds values
 * and checks the shape around them (mappings where sections are, lists where lists are, no key
 * twice).
 *
 * Mappings are walked against a scope: the top-level table with values stored into the struct
 * config, or, inside each rate_limits entry, the rule table with values stored into that struct
 * rate_rule. Messages always carry the full path ("rate_limits[2].match.host"); lookups use the
 * part after the scope's own prefix.
 *
 * Hostile input costs at most linear time and memory: inputs over CONFIG_MAX_BYTES are refused
 * before parsing, anchors and aliases are refused (an alias bomb expands exponentially in any
 * consumer that follows them), and the walk stops at the first error, so it never descends into
 * unknown structure. */

#include "config_yaml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config_suggest.h"
#include "config_text.h"
#include "config_value.h"
#include "config_yaml_error.h"

/* Longest dotted key path we look up; longer ones cannot be in the table. */
#define PATH_MAX_LEN 128

/* Which table names the keys being walked, and where their values go. */
struct scope {
    const struct config_key *keys;
    size_t count;
    void *base;  /* the struct config, or the struct rate_rule being filled */
    size_t skip; /* leading characters of a path naming the scope itself ("rate_limits[0].") */
    /* NULL, or per row of keys: whether a value was given and where (for required keys and
     * messages about a value after the mapping ends). */
    unsigned char *given;
    yaml_mark_t *marks;
};

struct walker {
    yaml_parser_t parser;
    const char *name; /* file name for messages */
    const unsigned char *input;
    size_t input_len;
    struct scope scope;
    char *err;
    size_t err_len;
};

/* Keys already given in one mapping, for the duplicate check. */
struct seen {
    struct seen_key {
        char *name;
        yaml_mark_t mark;
    } * keys;
    size_t count, cap;
};

/* ---- messages ---- */

static int fail_at(struct walker *w, yaml_mark_t mark, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_at(struct walker *w, yaml_mark_t mark, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    config_yaml_error_at(w->err, w->err_len, w->name, mark, path, fmt, ap);
    va_end(ap);
    return -1;
}

static int fail_parser(struct walker *w)
{
    config_yaml_error_describe(&w->parser, w->input, w->input_len, w->name, w->err, w->err_len);
    return -1;
}

/* ---- events ---- */

/* Next event, or -1 with the message written. On 0 the caller owns ev (yaml_event_delete()). */
static int next_event(struct walker *w, const char *path, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&w->parser, ev))
        return fail_parser(w);
    const yaml_char_t *anchor = NULL, *tag = NULL;
    if (ev->type == YAML_SCALAR_EVENT) {
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
    } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
    } else if (ev->type == YAML_MAPPING_START_EVENT) {
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
    }
    const char *refused = ev->type == YAML_ALIAS_EVENT ? "aliases (*name) are not allowed"
                          : anchor != NULL             ? "anchors (&name) are not allowed"
                          : tag != NULL                ? "tags (!name) are not allowed"
                                                       : NULL;
    if (refused == NULL)
        return 0;
    fail_at(w, ev->start_mark, path, "%s", refused);
    yaml_event_delete(ev);
    return -1;
}

/* YAML's null: an empty plain scalar, "~" or "null". Quoted "" is an empty string, not null. */
static int is_null(const yaml_event_t *ev)
{
    if (ev->type != YAML_SCALAR_EVENT || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *v = (const char *)ev->data.scalar.value;
    return *v == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

/* A scalar's text as a C string; "\0" in a double-quoted scalar would silently cut it short. */
static int scalar_text(struct walker *w, const yaml_event_t *ev, const char *path,
                       const char **text)
{
    *text = (const char *)ev->data.scalar.value;
    if (strlen(*text) != ev->data.scalar.length)
        return fail_at(w, ev->start_mark, path, "contains a NUL character");
    return 0;
}

/* ---- values ---- */

/* Required keys have no default to offer as an example. */
static int fail_needs_value(struct walker *w, const struct config_key *key, const char *path,
                            const yaml_event_t *ev)
{
    if (key->default_text == NULL)
        return fail_at(w, ev->start_mark, path, "needs a value");
    return fail_at(w, ev->start_mark, path, "needs a value, such as %s", key->default_text);
}

static int walk_scalar(struct walker *w, const struct config_key *key, const char *path,
                       const yaml_event_t *ev)
{
    const char *text;
    char why[256];
    if (ev->type != YAML_SCALAR_EVENT)
        return fail_at(w, ev->start_mark, path, "expected %s, got %s", config_value_describe(key),
                       config_yaml_node_kind(ev));
    if (is_null(ev))
        return fail_needs_value(w, key, path, ev);
    if (scalar_text(w, ev, path, &text) != 0)
        return -1;
    if (config_value_set_at(w->scope.base, key, text, why, sizeof why) != 0)
        return fail_at(w, ev->start_mark, path, "%s", why);
    return 0;
}

struct list_build {
    char *elems;
    size_t count, cap, elem_size;
};

/* Room for one more element (not yet counted), or NULL with the message written. */
static void *list_slot(struct walker *w, const struct config_key *key, const char *path,
                       const yaml_event_t *ev, struct list_build *list)
{
    if (list->count >= key->max) {
        fail_at(w, ev->start_mark, path, "more than the maximum of %llu entries",
                (unsigned long long)key->max);
        return NULL;
    }
    if (list->count == list->cap) {
        size_t cap = list->cap == 0 ? 4 : list->cap * 2;
        char *grown = realloc(list->elems, cap * list->elem_size);
        if (grown == NULL) {
            fail_at(w, ev->start_mark, path, "out of memory");
            return NULL;
        }
        list->elems = grown;
        list->cap = cap;
    }
    return list->elems + list->count * list->elem_size;
}

static void list_discard(const struct config_key *key, struct list_build *list)
{
    config_value_release(key, list->elems, list->count);
    free(list->elems);
}

static int add_element(struct walker *w, const struct config_key *key, const char *path,
                       const yaml_event_t *ev, struct list_build *list)
{
    const char *text;
    char why[256];
    if (ev->type != YAML_SCALAR_EVENT)
        return fail_at(w, ev->start_mark, path, "list entries must be single values, not %s",
                       config_yaml_node_kind(ev));
    if (is_null(ev))
        return fail_at(w, ev->start_mark, path, "empty list entry");
    if (scalar_text(w, ev, path, &text) != 0)
        return -1;
    char *slot = list_slot(w, key, path, ev, list);
    if (slot == NULL)
        return -1;
    if (config_value_parse_element(key, text, slot, why, sizeof why) != 0)
        return fail_at(w, ev->start_mark, path, "%s", why);
    /* Quadratic, but lists are capped at a few thousand entries and this runs once per load. */
    for (size_t i = 0; i < list->count; i++) {
        if (config_value_same_element(key, list->elems + i * list->elem_size, slot)) {
            config_value_release(key, slot, 1); /* parsed, but never counted */
            return fail_at(w, ev->start_mark, path, "%s is listed twice", text);
        }
    }
    list->count++;
    return 0;
}

/* The entries of a YAML list, up to and including its end. */
static int add_elements(struct walker *w, const struct config_key *key, const char *path,
                        struct list_build *list)
{
    for (;;) {
        yaml_event_t ev;
        if (next_event(w, path, &ev) != 0)
            return -1;
        int done = ev.type == YAML_SEQUENCE_END_EVENT;
        int rc = done ? 0 : add_element(w, key, path, &ev, list);
        yaml_event_delete(&ev);
        if (rc != 0 || done)
            return rc;
    }
}

static int fail_not_list(struct walker *w, const struct config_key *key, const char *path,
                         const yaml_event_t *start)
{
    if (key->default_text == NULL)
        return fail_at(w, start->start_mark, path, "expected %s, got %s",
                       config_value_describe(key), config_yaml_node_kind(start));
    return fail_at(w, start->start_mark, path, "expected %s, such as %s, got %s",
                   config_value_describe(key), key->default_text, config_yaml_node_kind(start));
}

static int walk_list(struct walker *w, const struct config_key *key, const char *path,
                     const yaml_event_t *start)
{
    struct list_build list = {.elem_size = config_value_elem_size(key)};
    int rc;
    if (start->type == YAML_SEQUENCE_START_EVENT)
        rc = add_elements(w, key, path, &list);
    else if (start->type == YAML_SCALAR_EVENT && key->single_ok && is_null(start))
        rc = fail_needs_value(w, key, path, start);
    else if (start->type == YAML_SCALAR_EVENT && key->single_ok) /* host: a.example */
        rc = add_element(w, key, path, start, &list);
    else
        rc = fail_not_list(w, key, path, start);
    if (rc == 0 && list.count < key->min)
        rc = fail_at(w, start->start_mark, path, "needs at least %llu entr%s",
                     (unsigned long long)key->min, key->min == 1 ? "y" : "ies");
    if (rc != 0) {
        list_discard(key, &list);
        return -1;
    }
    config_value_set_list_at(w->scope.base, key, list.elems, list.count);
    return 0;
}

static int walk_rules(struct walker *w, const struct config_key *key, const char *path,
                      const yaml_event_t *start);

/* One "name: hash" of auth.users, handed to the element parser as "name:hash". */
/* A mapping of names to scalars kept as a list (auth.users, a rule's weights): each pair becomes
 * one element's text, which the type's parser reads. What differs between them is said here. */
struct pair_map {
    const char *mapping;    /* "expected %s" when the node is not a mapping */
    const char *bad_name;   /* a name that is not a scalar */
    const char *value_kind; /* "expected %s" when a value is not a scalar */
    const char *twice;      /* before "NAME is listed twice" */
    /* the element's text from the pair into entry; -1 with why for the name, -2 for the value */
    int (*compose)(const char *name, const char *value, char *entry, size_t len, char *why,
                   size_t why_len);
};

/* auth.users: "user:hash" lines, as auth.users_file has them. */
static int compose_user(const char *name, const char *hash, char *entry, size_t len, char *why,
                        size_t why_len)
{
    if (strchr(name, ':') != NULL) {
        snprintf(why, why_len, "user name \"%s\" contains a colon", name);
        return -1;
    }
    if (snprintf(entry, len, "%s:%s", name, hash) >= (int)len) {
        snprintf(why, why_len, "%s: entry too long", name);
        return -2;
    }
    return 0;
}

/* weights: "VALUE: WEIGHT", handed to the type's parser as "WEIGHT VALUE". */
static int compose_weight(const char *name, const char *weight, char *entry, size_t len, char *why,
                          size_t why_len)
{
    if (snprintf(entry, len, "%s %s", weight, name) >= (int)len) {
        snprintf(why, why_len, "value too long");
        return -1;
    }
    return 0;
}

static const struct pair_map user_map = {
    "a mapping of user names to hashes, such as {alice: \"$6$...\"}",
    "user names must be single words", "a password hash", "user ", compose_user};
static const struct pair_map weight_map = {
    "a mapping of values to weights, such as {\"10.0.0.5\": 3}",
    "expected a client address or user name", "a weight", "", compose_weight};

static int add_pair(struct walker *w, const struct config_key *key, const char *path,
                    const struct pair_map *map, const yaml_event_t *name_ev,
                    struct list_build *list)
{
    const char *name, *text;
    char entry[1200], why[256];
    if (name_ev->type != YAML_SCALAR_EVENT || is_null(name_ev))
        return fail_at(w, name_ev->start_mark, path, "%s", map->bad_name);
    if (scalar_text(w, name_ev, path, &name) != 0)
        return -1;
    char *name_copy = strdup(name);
    yaml_event_t value;
    if (name_copy == NULL || next_event(w, path, &value) != 0) {
        free(name_copy);
        return name_copy == NULL ? fail_at(w, name_ev->start_mark, path, "out of memory") : -1;
    }
    int rc = 0, composed;
    if (value.type != YAML_SCALAR_EVENT || is_null(&value))
        rc = fail_at(w, value.start_mark, path, "%s: expected %s, got %s", name_copy,
                     map->value_kind, config_yaml_node_kind(&value));
    else if (scalar_text(w, &value, path, &text) != 0)
        rc = -1;
    else if ((composed = map->compose(name_copy, text, entry, sizeof entry, why, sizeof why)) != 0)
        rc = fail_at(w, composed == -1 ? name_ev->start_mark : value.start_mark, path, "%s", why);
    if (rc == 0) {
        char *slot = list_slot(w, key, path, &value, list);
        if (slot == NULL)
            rc = -1;
        else if (config_value_parse_element(key, entry, slot, why, sizeof why) != 0)
            rc = fail_at(w, value.start_mark, path, "%s: %s", name_copy, why);
        else {
            for (size_t i = 0; i < list->count && rc == 0; i++)
                if (config_value_same_element(key, list->elems + i * list->elem_size, slot)) {
                    config_value_release(key, slot, 1);
                    rc = fail_at(w, name_ev->start_mark, path, "%s%s is listed twice", map->twice,
                                 name_copy);
                }
            if (rc == 0)
                list->count++;
        }
    }
    yaml_event_delete(&value);
    free(name_copy);
    return rc;
}

static int walk_pair_map(struct walker *w, const struct config_key *key, const char *path,
                         const struct pair_map *map, const yaml_event_t *start)
{
    struct list_build list = {.elem_size = config_value_elem_size(key)};
    if (start->type != YAML_MAPPING_START_EVENT)
        return fail_at(w, start->start_mark, path, "expected %s, got %s", map->mapping,
                       config_yaml_node_kind(start));
    int rc = 0;
    for (;;) {
        yaml_event_t ev;
        if (next_event(w, path, &ev) != 0) {
            rc = -1;
            break;
        }
        int done = ev.type == YAML_MAPPING_END_EVENT;
        if (!done)
            rc = add_pair(w, key, path, map, &ev, &list);
        yaml_event_delete(&ev);
        if (rc != 0 || done)
            break;
    }
    if (rc != 0) {
        list_discard(key, &list);
        return -1;
    }
    config_value_set_list_at(w->scope.base, key, list.elems, list.count);
    return 0;
}

/* Where the value of `key` starts, for the required-key and unique-name checks. `key` is always a
 * row of the current scope: walk_entry() found it there with scope_find(). */
static void note_given(struct walker *w, const struct config_key *key, yaml_mark_t mark)
{
    if (w->scope.given == NULL)
        return;
    size_t i = (size_t)(key - w->scope.keys);
    w->scope.given[i] = 1;
    w->scope.marks[i] = mark;
}

/* A new kind of value gets its own walk function, chosen here. */
static int walk_value(struct walker *w, const struct config_key *key, const char *path)
{
    yaml_event_t ev;
    if (next_event(w, path, &ev) != 0)
        return -1;
    note_given(w, key, ev.start_mark);
    int rc = key->type == CONFIG_RATE_RULES    ? walk_rules(w, key, path, &ev)
             : key->type == CONFIG_USER_MAP    ? walk_pair_map(w, key, path, &user_map, &ev)
             : key->type == CONFIG_WEIGHT_MAP  ? walk_pair_map(w, key, path, &weight_map, &ev)
             : config_value_elem_size(key) > 0 ? walk_list(w, key, path, &ev)
                                               : walk_scalar(w, key, path, &ev);
    yaml_event_delete(&ev);
    return rc;
}

/* ---- mappings ---- */

/* `path` without the scope's own prefix: the name its table knows it by. */
static const char *scope_name(const struct walker *w, const char *path)
{
    return strlen(path) >= w->scope.skip ? path + w->scope.skip : "";
}

static const struct config_key *scope_find(const struct walker *w, const char *path)
{
    const char *name = scope_name(w, path);
    for (size_t i = 0; i < w->scope.count; i++)
        if (strcmp(w->scope.keys[i].name, name) == 0)
            return &w->scope.keys[i];
    return NULL;
}

/* The first row under section `path`, for examples in messages; NULL when `path` is no section. */
static const struct config_key *first_in_section(const struct walker *w, const char *path)
{
    const char *name = scope_name(w, path);
    size_t len = strlen(name);
    for (size_t i = 0; i < w->scope.count; i++)
        if (strncmp(w->scope.keys[i].name, name, len) == 0 && w->scope.keys[i].name[len] == '.')
            return &w->scope.keys[i];
    return NULL;
}

static int fail_unknown(struct walker *w, yaml_mark_t mark, const char *path)
{
    char buf[PATH_MAX_LEN];
    const char *close =
        config_suggest(w->scope.keys, w->scope.count, scope_name(w, path), buf, sizeof buf);
    if (close != NULL)
        return fail_at(w, mark, path, "unknown key, did you mean %s?", close);
    return fail_at(w, mark, path, "unknown key");
}

static const char *last_part(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot != NULL ? dot + 1 : path;
}

static int walk_mapping(struct walker *w, const char *prefix);

static int walk_section(struct walker *w, const char *path)
{
    yaml_event_t ev;
    if (next_event(w, path, &ev) != 0)
        return -1;
    int rc = 0;
    if (ev.type == YAML_MAPPING_START_EVENT)
        rc = walk_mapping(w, path);
    else if (!is_null(&ev)) /* a null section ("timeouts:" with every key commented out) is empty */
        rc = fail_at(w, ev.start_mark, path, "expected a mapping of keys such as %s:, got %s",
                     last_part(first_in_section(w, path)->name), config_yaml_node_kind(&ev));
    yaml_event_delete(&ev);
    return rc;
}

static const yaml_mark_t *seen_find(const struct seen *seen, const char *name)
{
    for (size_t i = 0; i < seen->count; i++)
        if (strcmp(seen->keys[i].name, name) == 0)
            return &seen->keys[i].mark;
    return NULL;
}

static int seen_add(struct seen *seen, const char *name, yaml_mark_t mark)
{
    if (seen->count == seen->cap) {
        size_t cap = seen->cap == 0 ? 8 : seen->cap * 2;
        struct seen_key *grown = realloc(seen->keys, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        seen->keys = grown;
        seen->cap = cap;
    }
    seen->keys[seen->count].name = strdup(name);
    if (seen->keys[seen->count].name == NULL)
        return -1;
    seen->keys[seen->count++].mark = mark;
    return 0;
}

static void seen_free(struct seen *seen)
{
    for (size_t i = 0; i < seen->count; i++)
        free(seen->keys[i].name);
    free(seen->keys);
}

/* One "key: value" of a mapping under `prefix`; key_ev is the key's event. */
static int walk_entry(struct walker *w, const char *prefix, const yaml_event_t *key_ev,
                      struct seen *seen)
{
    yaml_mark_t mark = key_ev->start_mark;
    const char *name;
    char path[PATH_MAX_LEN];
    if (key_ev->type != YAML_SCALAR_EVENT)
        return fail_at(w, mark, prefix, "keys must be single words, not %s",
                       config_yaml_node_kind(key_ev));
    if (scalar_text(w, key_ev, prefix, &name) != 0)
        return -1;
    if (*name == '\0')
        return fail_at(w, mark, prefix, "empty key");
    int n = snprintf(path, sizeof path, "%s%s%s", prefix, *prefix != '\0' ? "." : "", name);
    if (n < 0 || (size_t)n >= sizeof path)
        return fail_at(w, mark, prefix, "unknown key (%zu characters long)", strlen(name));
    if (strchr(name, '.') != NULL)
        return fail_at(w, mark, path,
                       "a key cannot contain a dot; nest each part under the one before it");
    const yaml_mark_t *first = seen_find(seen, name);
    if (first != NULL)
        return fail_at(w, mark, path, "duplicate key (first given at line %zu, column %zu)",
                       first->line + 1, first->column + 1);
    if (seen_add(seen, name, mark) != 0)
        return fail_at(w, mark, path, "out of memory");
    const struct config_key *key = scope_find(w, path);
    if (key != NULL)
        return walk_value(w, key, path);
    if (first_in_section(w, path) != NULL)
        return walk_section(w, path);
    return fail_unknown(w, mark, path);
}

static int walk_mapping(struct walker *w, const char *prefix)
{
    struct seen seen = {0};
    int rc = 0;
    for (;;) {
        yaml_event_t key_ev;
        if (next_event(w, prefix, &key_ev) != 0) {
            rc = -1;
            break;
        }
        int done = key_ev.type == YAML_MAPPING_END_EVENT;
        if (!done)
            rc = walk_entry(w, prefix, &key_ev, &seen);
        yaml_event_delete(&key_ev);
        if (done || rc != 0)
            break;
    }
    seen_free(&seen);
    return rc;
}

/* ---- rate_limits: a list of mappings ---- */

/* "rate_limits[0]: missing required key limit" (or keys, all of them), at the rule's start. */
static int check_required(struct walker *w, const char *prefix, yaml_mark_t mark)
{
    char missing[256] = "";
    size_t n = 0;
    for (size_t i = 0; i < w->scope.count; i++) {
        if (!w->scope.keys[i].required || w->scope.given[i])
            continue;
        size_t used = strlen(missing);
        snprintf(missing + used, sizeof missing - used, "%s%s", n++ > 0 ? ", " : "",
                 w->scope.keys[i].name);
    }
    if (n == 0)
        return 0;
    return fail_at(w, mark, prefix, "missing required key%s %s", n > 1 ? "s" : "", missing);
}

/* Names identify a rule's windows across reloads and in every message about it. Runs while the
 * rule's scope (and so the mark of its name) is current. */
static int check_unique_name(struct walker *w, const char *path, const char *prefix,
                             const struct rate_rule *rule, const struct list_build *rules)
{
    const struct rate_rule *earlier = (const void *)rules->elems;
    for (size_t i = 0; i < rules->count; i++) {
        if (strcmp(earlier[i].name, rule->name) != 0)
            continue;
        char name_path[PATH_MAX_LEN + sizeof ".name"];
        snprintf(name_path, sizeof name_path, "%s.name", prefix);
        const struct config_key *key = scope_find(w, name_path);
        yaml_mark_t mark = w->scope.marks[key - w->scope.keys];
        return fail_at(w, mark, name_path, "\"%s\" is used by %s[%zu]", rule->name, path, i);
    }
    return 0;
}

/* The keys of one rule (its mapping start already read) into `rule`, the uncounted slot after
 * `rules`. */
static int walk_rule(struct walker *w, const char *path, const char *prefix, yaml_mark_t mark,
                     struct rate_rule *rule, const struct list_build *rules)
{
    unsigned char given[CONFIG_RULE_MAX_FIELDS] = {0};
    yaml_mark_t marks[CONFIG_RULE_MAX_FIELDS];
    struct scope outer = w->scope;
    w->scope =
        (struct scope){.base = rule, .skip = strlen(prefix) + 1, .given = given, .marks = marks};
    w->scope.keys = config_rule_fields(&w->scope.count);
    int rc = walk_mapping(w, prefix);
    if (rc == 0)
        rc = check_required(w, prefix, mark);
    if (rc == 0)
        rc = check_unique_name(w, path, prefix, rule, rules);
    w->scope = outer;
    return rc;
}

/* One entry of the list: a mapping, filled over a rule holding the defaults. */
static int add_rule(struct walker *w, const struct config_key *key, const char *path,
                    const yaml_event_t *ev, struct list_build *rules)
{
    char prefix[PATH_MAX_LEN], why[256];
    snprintf(prefix, sizeof prefix, "%s[%zu]", path, rules->count);
    if (is_null(ev))
        return fail_at(w, ev->start_mark, prefix, "empty list entry");
    if (ev->type != YAML_MAPPING_START_EVENT)
        return fail_at(w, ev->start_mark, prefix,
                       "expected a rule, a mapping of keys such as name:, got %s",
                       config_yaml_node_kind(ev));
    struct rate_rule *rule = list_slot(w, key, path, ev, rules);
    if (rule == NULL)
        return -1;
    if (config_rule_init(rule, why, sizeof why) != 0)
        return fail_at(w, ev->start_mark, prefix, "%s", why);
    rule->line = (unsigned)ev->start_mark.line + 1; /* for warnings after the load */
    rule->column = (unsigned)ev->start_mark.column + 1;
    if (walk_rule(w, path, prefix, ev->start_mark, rule, rules) != 0) {
        config_value_release(key, rule, 1); /* whatever lists it got before the error */
        return -1;
    }
    rules->count++;
    return 0;
}

static int walk_rules(struct walker *w, const struct config_key *key, const char *path,
                      const yaml_event_t *start)
{
    if (start->type != YAML_SEQUENCE_START_EVENT)
        return fail_at(w, start->start_mark, path, "expected %s, got %s",
                       config_value_describe(key), config_yaml_node_kind(start));
    struct list_build rules = {.elem_size = config_value_elem_size(key)};
    void *base = w->scope.base;
    for (;;) {
        yaml_event_t ev;
        if (next_event(w, path, &ev) != 0)
            break;
        int done = ev.type == YAML_SEQUENCE_END_EVENT;
        int rc = done ? 0 : add_rule(w, key, path, &ev, &rules);
        yaml_event_delete(&ev);
        if (rc != 0)
            break;
        if (done) {
            config_value_set_list_at(base, key, rules.elems, rules.count);
            return 0;
        }
    }
    list_discard(key, &rules);
    return -1;
}

/* ---- documents ---- */

static int walk_root(struct walker *w)
{
    yaml_event_t ev;
    if (next_event(w, NULL, &ev) != 0)
        return -1;
    int rc = 0;
    if (ev.type == YAML_MAPPING_START_EVENT)
        rc = walk_mapping(w, "");
    else if (!is_null(&ev)) /* "---" alone, or "~": no keys given */
        rc = fail_at(w, ev.start_mark, NULL,
                     "the top level must be a mapping of keys such as listen:, not %s",
                     config_yaml_node_kind(&ev));
    yaml_event_delete(&ev);
    return rc;
}

/* Consume one event whose type the parser's grammar already fixes; only errors need handling. */
static int skip_event(struct walker *w, yaml_event_type_t *type)
{
    yaml_event_t ev;
    if (next_event(w, NULL, &ev) != 0)
        return -1;
    *type = ev.type;
    yaml_event_delete(&ev);
    return 0;
}

/* One stream holding at most one document. With key == NULL the document is a whole config; else it
 * is the value of that one key (a row's default_text). */
static int walk_stream(struct walker *w, const struct config_key *key)
{
    yaml_event_type_t got;
    /* Stream start, then document start (or stream end: no document at all). */
    if (skip_event(w, &got) != 0 || skip_event(w, &got) != 0)
        return -1;
    if (got == YAML_STREAM_END_EVENT) /* an empty file, or only comments: all defaults */
        return key == NULL ? 0 : fail_at(w, w->parser.mark, key->name, "the default is empty");
    if ((key == NULL ? walk_root(w) : walk_value(w, key, key->name)) != 0)
        return -1;
    if (skip_event(w, &got) != 0) /* document end */
        return -1;
    yaml_event_t ev;
    if (next_event(w, NULL, &ev) != 0)
        return -1;
    int rc = 0;
    if (ev.type != YAML_STREAM_END_EVENT)
        rc = fail_at(w, ev.start_mark, NULL,
                     "a config holds one YAML document; remove the second ---");
    yaml_event_delete(&ev);
    return rc;
}

/* The admin endpoint can reset windows: reachable beyond loopback, it must ask for a token. Runs
 * after the walk, since admin.token may come after admin.listen; names admin.listen's value. */
static int check_admin_exposure(struct walker *w)
{
    const struct config *cfg = w->scope.base;
    if (cfg->admin_token != NULL && cfg->admin_token[0] != '\0')
        return 0;
    for (size_t i = 0; i < cfg->admin_listen_count; i++) {
        if (config_listen_is_loopback(&cfg->admin_listen[i]))
            continue;
        const struct config_key *key = scope_find(w, "admin.listen");
        yaml_mark_t mark = {0, 0, 0};
        if (key != NULL && w->scope.given[key - w->scope.keys])
            mark = w->scope.marks[key - w->scope.keys];
        return fail_at(w, mark, "admin.listen",
                       "%s is not a loopback address: set admin.token, or listen on 127.0.0.1 "
                       "or [::1] only",
                       cfg->admin_listen[i].text);
    }
    return 0;
}

static int walk_text(void *cfg, const char *text, size_t len, const char *name,
                     const struct config_key *key, char *err, size_t err_len)
{
    struct walker w = {.name = name,
                       .input = (const unsigned char *)text,
                       .input_len = len,
                       .scope = {.base = cfg},
                       .err = err,
                       .err_len = err_len};
    w.scope.keys = config_keys(&w.scope.count);
    if (key == NULL) { /* a whole config: remember where keys were given, for later checks */
        w.scope.given = calloc(w.scope.count, sizeof *w.scope.given);
        w.scope.marks = calloc(w.scope.count, sizeof *w.scope.marks);
    }
    if ((key == NULL && (w.scope.given == NULL || w.scope.marks == NULL)) ||
        !yaml_parser_initialize(&w.parser)) {
        free(w.scope.given);
        free(w.scope.marks);
        snprintf(err, err_len, "%s: out of memory", name);
        return -1;
    }
    yaml_parser_set_input_string(&w.parser, w.input, len);
    int rc = walk_stream(&w, key);
    if (rc == 0 && key == NULL)
        rc = check_admin_exposure(&w);
    yaml_parser_delete(&w.parser);
    free(w.scope.given);
    free(w.scope.marks);
    return rc;
}

int config_yaml_set_default(struct config *cfg, const struct config_key *key, char *err,
                            size_t err_len)
{
    return walk_text(cfg, key->default_text, strlen(key->default_text), "(default)", key, err,
                     err_len);
}

int config_yaml_walk(struct config *cfg, const char *text, size_t len, const char *name, char *err,
                     size_t err_len)
{
    return walk_text(cfg, text, len, name, NULL, err, err_len);
}
