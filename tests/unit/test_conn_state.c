/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_conn_state.c — the connection's state machine (conn_state.c): the diagram in
 * conn_state.h's opening comment and the table conn_set_state consults say the same, both ways,
 * and every state has a name. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_state.h"

#include "unit.h"

static size_t state_by_name(const char *name)
{
    for (size_t i = 0; i < CONN_STATE_COUNT; i++)
        if (strcmp(conn_state_name(i), name) == 0)
            return i;
    return CONN_STATE_COUNT;
}

/* drawn[from][to]: the moves the diagram lines "ST -> A B C" in the header's comment draw */
static void read_diagram(int drawn[CONN_STATE_COUNT][CONN_STATE_COUNT], int listed[CONN_STATE_COUNT])
{
    const char *srcdir = getenv("RLPROXY_SRCDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/src/conn_state.h", srcdir != NULL ? srcdir : ".");
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
        if (strstr(line, "#ifndef") == line)
            break; /* the comment is over */
        char *arrow = strstr(line, " ->");
        if (strncmp(line, " *   ", 5) != 0 || arrow == NULL)
            continue;
        char from_name[64];
        ck_assert_int_eq(sscanf(line + 5, "%63s", from_name), 1);
        size_t from = state_by_name(from_name);
        ck_assert_msg(from < CONN_STATE_COUNT, "diagram names an unknown state %s", from_name);
        ck_assert_msg(!listed[from], "diagram lists %s twice", from_name);
        listed[from] = 1;
        char *rest = arrow + 3, *save = NULL;
        for (char *tok = strtok_r(rest, " \n", &save); tok != NULL; tok = strtok_r(NULL, " \n", &save)) {
            size_t to = state_by_name(tok);
            ck_assert_msg(to < CONN_STATE_COUNT, "diagram: %s -> unknown state %s", from_name, tok);
            drawn[from][to] = 1;
        }
    }
    fclose(f);
}

START_TEST(test_diagram_matches_table)
{
    int drawn[CONN_STATE_COUNT][CONN_STATE_COUNT] = {{0}};
    int listed[CONN_STATE_COUNT] = {0};
    read_diagram(drawn, listed);
    for (size_t from = 0; from < CONN_STATE_COUNT; from++) {
        ck_assert_msg(listed[from], "the diagram has no line for %s", conn_state_name(from));
        for (size_t to = 0; to < CONN_STATE_COUNT; to++)
            ck_assert_msg(drawn[from][to] == conn_state_allowed(from, to),
                          "%s -> %s: the diagram says %s, the table says %s",
                          conn_state_name(from), conn_state_name(to),
                          drawn[from][to] ? "allowed" : "not allowed",
                          conn_state_allowed(from, to) ? "allowed" : "not allowed");
    }
}
END_TEST

START_TEST(test_names_and_bounds)
{
    for (size_t i = 0; i < CONN_STATE_COUNT; i++) {
        ck_assert_ptr_nonnull(conn_state_name(i));
        ck_assert_uint_eq(state_by_name(conn_state_name(i)), i);
    }
    ck_assert_ptr_null(conn_state_name(CONN_STATE_COUNT));
    ck_assert_int_eq(conn_state_allowed(CONN_STATE_COUNT, CONN_IDLE), 0);
    ck_assert_int_eq(conn_state_allowed(CONN_IDLE, CONN_STATE_COUNT), 0);
}
END_TEST

/* what the rest of the proxy relies on: every live state can close; CLOSING is final; a kept
 * reply (429, 407) returns to IDLE from every state a request can be refused in */
START_TEST(test_properties)
{
    for (size_t i = 0; i < CONN_STATE_COUNT; i++) {
        if (i != CONN_CLOSING)
            ck_assert_msg(conn_state_allowed(i, CONN_CLOSING), "%s cannot close",
                          conn_state_name(i));
        ck_assert_int_eq(conn_state_allowed(CONN_CLOSING, i), 0);
    }
    size_t refusable[] = {CONN_READ_HEAD, CONN_WAIT_SLOT, CONN_WAIT_ADMIT, CONN_FORWARD};
    for (size_t i = 0; i < sizeof refusable / sizeof *refusable; i++)
        ck_assert(conn_state_allowed(refusable[i], CONN_IDLE));
    ck_assert_int_eq(conn_state_allowed(CONN_IDLE, CONN_FORWARD), 0); /* a head comes first */
    ck_assert_int_eq(conn_state_allowed(CONN_TUNNEL_CONNECT, CONN_IDLE), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("conn_state");
    unit_add_tcase(s, tcase_create("table"),
                   UNIT_TESTS(test_diagram_matches_table, test_names_and_bounds, test_properties));
    return s;
}

int main(void) { return unit_run(suite()); }
