/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_docs.c — the operator documents agree with the option table (issue 18, item 4). The man page
 * and sample-config checks in test_config.c follow the table into rlproxy.yaml(5) and
 * conf/rlproxy.yaml; these widen them to every document an operator reads (rlproxy(8), the README,
 * the units, the Debian package's files) and run the other way round too:
 *  - no document says a feature or key is missing, reserved or unusable ("not part of this
 *    version", "no effect yet", "NOT USABLE YET") while the table and the code have it;
 *  - every dotted key a document names (tls_intercept.ca_key, shared.redis) is in the table, so a
 *    renamed or removed key cannot live on in the docs;
 *  - the README's list of sections names every section of the table and nothing else. */
#include <check.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "unit.h"

static const char *const documents[] = {
    "README.md",
    "man/rlproxy.8",
    "man/rlproxy.yaml.5",
    "conf/rlproxy.yaml",
    "systemd/rlproxy.service.in",
    "systemd/rlproxy.socket",
    "debian/rlproxy.logrotate",
    "debian/control",
};
#define DOCUMENT_COUNT (sizeof documents / sizeof documents[0])

/* 1-based line number of position at in text */
static int line_of(const char *text, const char *at)
{
    int line = 1;
    for (const char *c = text; c < at; c++)
        line += *c == '\n';
    return line;
}

/* Each phrase once said that something the code does was missing: shared Redis limits ("not part
 * of this version", "reserved, no effect yet") and socket activation ("NOT USABLE YET ... does not
 * take sockets"). Matched case-insensitively; none belongs in a document of a feature that works.
 */
static const char *const absence_phrases[] = {
    "not part of this (version|release)",
    "no effect yet",
    "reserved, no effect",
    "not (usable|available|supported|implemented|working) yet",
    "not yet (usable|available|supported|implemented|working)",
    "does not take sockets",
    "until then, enable",
};

START_TEST(test_no_document_calls_a_feature_missing)
{
    regex_t re[sizeof absence_phrases / sizeof absence_phrases[0]];
    size_t phrases = sizeof absence_phrases / sizeof absence_phrases[0];
    for (size_t i = 0; i < phrases; i++)
        ck_assert(regcomp(&re[i], absence_phrases[i], REG_EXTENDED | REG_ICASE | REG_NEWLINE) == 0);
    for (size_t d = 0; d < DOCUMENT_COUNT; d++) {
        char *text = unit_slurp(documents[d]);
        for (size_t i = 0; i < phrases; i++) {
            regmatch_t m;
            if (regexec(&re[i], text, 1, &m, 0) == 0)
                ck_abort_msg("%s:%d: \"%.*s\" calls a feature missing that rlproxy has",
                             documents[d], line_of(text, text + m.rm_so), (int)(m.rm_eo - m.rm_so),
                             text + m.rm_so);
        }
        free(text);
    }
    for (size_t i = 0; i < phrases; i++)
        regfree(&re[i]);
}
END_TEST

/* 1 when name is a key of the table or a rate-rule field */
static int known_key(const char *name)
{
    size_t n;
    const struct config_key *keys = config_keys(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i].name, name) == 0)
            return 1;
    const struct config_key *fields = config_rule_fields(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].name, name) == 0)
            return 1;
    return 0;
}

/* 1 when some dotted key of the table or the rule fields starts with "section." */
static int dotted_section(const char *section, size_t len)
{
    const struct config_key *tables[2];
    size_t counts[2];
    tables[0] = config_keys(&counts[0]);
    tables[1] = config_rule_fields(&counts[1]);
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < counts[t]; i++)
            if (strncmp(tables[t][i].name, section, len) == 0 && tables[t][i].name[len] == '.')
                return 1;
    return 0;
}

/* File names share the shape of dotted keys (access.c, access.log, http.h): not keys */
static int file_suffix(const char *last, size_t len)
{
    static const char *const suffixes[] = {"c",   "h",    "py",      "md",    "yaml", "in",
                                           "log", "pem",  "key",     "sh",    "txt",  "png",
                                           "lua", "json", "service", "socket"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
        if (strlen(suffixes[i]) == len && strncmp(suffixes[i], last, len) == 0)
            return 1;
    return 0;
}

static int key_char(char c) { return (c >= 'a' && c <= 'z') || c == '_'; }

START_TEST(test_documents_name_only_keys_of_the_table)
{
    for (size_t d = 0; d < DOCUMENT_COUNT; d++) {
        char *text = unit_slurp(documents[d]);
        for (const char *c = text; *c != '\0'; c++) {
            if (!key_char(*c) ||
                (c > text && (key_char(c[-1]) ||
                              strchr("/.-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", c[-1]) != NULL)))
                continue;
            /* [a-z_]+(\.[a-z_]+)+ starting here */
            const char *end = c, *last = NULL;
            while (key_char(*end))
                end++;
            size_t section_len = (size_t)(end - c);
            while (end[0] == '.' && key_char(end[1])) {
                last = end + 1;
                end++;
                while (key_char(*end))
                    end++;
            }
            if (last == NULL || !dotted_section(c, section_len) ||
                file_suffix(last, (size_t)(end - last)) || *end == '/' ||
                (end[0] == '.' && end[1] != '\0' && end[1] != ' ' && end[1] != '\n' &&
                 end[1] != ')' && end[1] != ','))
                continue;
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(end - c), c);
            ck_assert_msg(known_key(name), "%s:%d: names \"%s\", which is not a key of the table",
                          documents[d], line_of(text, c), name);
            c = end - 1;
        }
        free(text);
    }
}
END_TEST

/* The README's "Sections:" sentence: every section of the table, as `name` for a top-level key or
 * `name.*` for a section of dotted keys (a section of one key may be written as that key), and
 * nothing that is not one. */
START_TEST(test_readme_lists_every_section)
{
    const char *start;
    char *readme = unit_slurp_at("README.md", "\nSections: ", "\"Sections: \" list", &start);
    const char *end = strstr(start, ". ");
    ck_assert_ptr_nonnull(end);
    size_t list_len = (size_t)(end - start);
    char *list = strndup(start, list_len);

    size_t n;
    const struct config_key *keys = config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        const char *dot = strchr(keys[i].name, '.');
        char whole[128], section[128];
        snprintf(whole, sizeof whole, "`%s`", keys[i].name);
        if (dot == NULL) {
            ck_assert_msg(strstr(list, whole) != NULL, "README.md Sections: lacks %s", whole);
            continue;
        }
        snprintf(section, sizeof section, "`%.*s.*`", (int)(dot - keys[i].name), keys[i].name);
        ck_assert_msg(strstr(list, whole) != NULL || strstr(list, section) != NULL,
                      "README.md Sections: lacks %s (or %s)", section, whole);
    }
    /* the other way round: each `entry` is a key, or a section of dotted keys */
    for (const char *tick = strchr(list, '`'); tick != NULL;) {
        const char *close = strchr(tick + 1, '`');
        ck_assert_ptr_nonnull(close);
        char entry[128];
        snprintf(entry, sizeof entry, "%.*s", (int)(close - tick - 1), tick + 1);
        size_t len = strlen(entry);
        int ok = len > 2 && strcmp(entry + len - 2, ".*") == 0 ? dotted_section(entry, len - 2)
                                                               : known_key(entry);
        ck_assert_msg(ok, "README.md Sections: names `%s`, which the table does not have", entry);
        tick = strchr(close + 1, '`');
    }
    free(list);
    free(readme);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("docs");
    unit_add_tcase(s, tcase_create("agree"),
                   UNIT_TESTS(test_no_document_calls_a_feature_missing,
                              test_documents_name_only_keys_of_the_table,
                              test_readme_lists_every_section));
    return unit_run(s);
}
