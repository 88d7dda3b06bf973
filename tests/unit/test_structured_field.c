/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_structured_field.c — the RFC 9651 subset parser (structured_field.c) as a table of field
 * lines: each valid one with every member and parameter it yields, written out as text, and each
 * invalid one with the rule it breaks (no member may be handed out then). */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "structured_field.h"

#include "unit.h"

struct row {
    const char *line;
    const char *members; /* as describe_member writes them, "|" between members; NULL: invalid */
};

static const struct row rows[] = {
    /* ---- valid: what the rate-limit fields send */
    {"\"default\";r=50;t=30", "\"default\";r=50;t=30"},
    {"\"default\";q=100;w=60", "\"default\";q=100;w=60"},
    {"100, 100;w=60", "100|100;w=60"},
    {"limit=100, remaining=50, reset=30", "limit=100|remaining=50|reset=30"},
    {"day;q=1000;w=86400, \"hour\";q=100;w=3600", "day;q=1000;w=86400|\"hour\";q=100;w=3600"},
    {"p;r=1;r=0", "p;r=1;r=0"}, /* a repeated parameter is handed over twice */
    {"", ""},
    {"  5", "5"},
    {"1 ,\t2", "1|2"},  /* OWS around the comma */
    {"a;  b", "a;b=?"}, /* spaces after ';', a parameter without a value is a Boolean */
    /* ---- valid: every kind of item */
    {"0, 999999999999999", "0|999999999999999"},
    {"-5, 1.5, -0, 123456789012.123", "(number)|(number)|(number)|(number)"},
    {"\"a\\\"b\\\\c\"", "\"a\"b\\c\""},
    {"*tok:en/x, A-b.c", "*tok:en/x|A-b.c"},
    {":aGVsbG8=:, ?1, ?0, @1700000000", "(bytes)|?|?|(date)"},
    {"%\"caf%c3%a9\"", "(display)"},
    {"(1 \"a\";x=1 b), ()", "(inner list)|(inner list)"},
    {"k=(1 2);p=3", "k=(inner list);p=3"},
    {"x;p=\"s\";q=tok;d=1.5;n=-1", "x;p=\"s\";q=tok;d=(number);n=(number)"},
    /* ---- valid: cut to fit */
    {"\"0123456789012345678901234567890123456789\"", "\"0123456789012345678901234567890\""},
    {"abcdefghijklmnopq=1", "1"},      /* a key over SF_KEY_SIZE - 1 comes back "" */
    {"x;abcdefghijklmnopq=1", "x;=1"}, /* so does a parameter's */
    /* ---- invalid */
    {"1,", NULL},               /* a trailing comma */
    {"1,,2", NULL},             /* an empty member */
    {", 1", NULL},              /* a leading comma */
    {"1 2", NULL},              /* no comma between members */
    {"1, 2, x y", NULL},        /* a bad last member: none of the line is read */
    {"1234567890123456", NULL}, /* an Integer of 16 digits */
    {"1234567890123.5", NULL},  /* a Decimal with 13 digits before the dot */
    {"1.2345", NULL},           /* a Decimal with 4 after it */
    {"1.", NULL},               /* a dot with nothing after it */
    {"-", NULL},                /* a sign alone */
    {"\"open", NULL},           /* an unterminated String */
    {"\"a\\n\"", NULL},         /* an escape other than \" and \\ */
    {"\"\t\"", NULL},           /* a control character in a String */
    {":abc", NULL},             /* an unterminated Byte Sequence */
    {"?2", NULL},               /* a Boolean other than ?0 and ?1 */
    {"@", NULL},                /* a Date without seconds */
    {"%\"%C3\"", NULL},         /* upper-case hex in a Display String */
    {"%\"%c\"", NULL},          /* a short percent escape */
    {"(1 2", NULL},             /* an unterminated Inner List */
    {"(1,2)", NULL},            /* a comma inside an Inner List */
    {"x;", NULL},               /* ';' without a key */
    {"x;P=1", NULL},            /* an upper-case parameter key */
    {"x;p=", NULL},             /* '=' without a value */
    {"x;p=(1)", NULL},          /* an Inner List as a parameter value */
    {"Ab=1", NULL},             /* an upper-case Dictionary key */
    {"a=", NULL},               /* a Dictionary key without a value */
    {"a=1=2", NULL},            /* two '=' */
    {"#", NULL},                /* no item starts with '#' */
    {"\xc3\xa9", NULL},         /* nor with a non-ASCII byte */
};

static void append(char *out, size_t size, const char *text)
{
    size_t used = strlen(out);
    snprintf(out + used, size - used, "%s", text);
}

static void describe_item(char *out, size_t size, const struct sf_item *item)
{
    char text[SF_TEXT_SIZE + 32];
    switch (item->kind) {
    case SF_INTEGER:
        snprintf(text, sizeof text, "%" PRId64, item->integer);
        break;
    case SF_STRING:
        snprintf(text, sizeof text, "\"%s\"", item->text);
        break;
    case SF_TOKEN:
        snprintf(text, sizeof text, "%s", item->text);
        break;
    case SF_NUMBER:
        snprintf(text, sizeof text, "(number)");
        break;
    case SF_BYTES:
        snprintf(text, sizeof text, "(bytes)");
        break;
    case SF_BOOLEAN:
        snprintf(text, sizeof text, "?");
        break;
    case SF_DATE:
        snprintf(text, sizeof text, "(date)");
        break;
    case SF_DISPLAY_STRING:
        snprintf(text, sizeof text, "(display)");
        break;
    case SF_INNER_LIST:
        snprintf(text, sizeof text, "(inner list)");
        break;
    }
    append(out, size, text);
}

struct seen {
    char text[1024];
    int members;
};

static void describe_member(const struct sf_member *m, void *context)
{
    struct seen *seen = context;
    if (seen->members++ > 0)
        append(seen->text, sizeof seen->text, "|");
    if (m->key[0] != '\0') {
        append(seen->text, sizeof seen->text, m->key);
        append(seen->text, sizeof seen->text, "=");
    }
    describe_item(seen->text, sizeof seen->text, &m->item);
    struct sf_parameters parameters = m->parameters;
    struct sf_parameter p;
    while (sf_next_parameter(&parameters, &p)) {
        append(seen->text, sizeof seen->text, ";");
        append(seen->text, sizeof seen->text, p.key);
        append(seen->text, sizeof seen->text, "=");
        describe_item(seen->text, sizeof seen->text, &p.value);
    }
}

START_TEST(test_row)
{
    const struct row *row = &rows[_i];
    struct seen seen = {"", 0};
    int rc = sf_parse_members(row->line, strlen(row->line), describe_member, &seen);
    if (row->members == NULL) {
        ck_assert_msg(rc == -1, "\"%s\": parsed as %s, should be invalid", row->line, seen.text);
        ck_assert_msg(seen.members == 0, "\"%s\": invalid, but %d members handed out", row->line,
                      seen.members);
    } else {
        ck_assert_msg(rc == 0, "\"%s\": invalid, should be %s", row->line, row->members);
        ck_assert_msg(strcmp(seen.text, row->members) == 0, "\"%s\": got %s, want %s", row->line,
                      seen.text, row->members);
    }
}
END_TEST

/* The line is read only up to len, as a field value inside a larger header block is. */
START_TEST(test_length_bounds_the_line)
{
    const char block[] = "1, 2\r\nRateLimit: x";
    struct seen seen = {"", 0};
    ck_assert_int_eq(sf_parse_members(block, 4, describe_member, &seen), 0);
    ck_assert_str_eq(seen.text, "1|2");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("structured_field");
    TCase *t = tcase_create("lines");
    tcase_add_loop_test(t, test_row, 0, (int)(sizeof rows / sizeof rows[0]));
    tcase_add_test(t, test_length_bounds_the_line);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return unit_run(suite()); }
