/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* unit.h — what every Check program shares (unit suites, and the e2e harness through harness.h):
 * registering a list of tests in one statement, reading files of the source tree, and running a
 * suite into the exit status automake's test driver reads. Header-only: each unit program is one
 * .c file. */
#ifndef RLPROXY_TESTS_UNIT_H
#define RLPROXY_TESTS_UNIT_H

#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline int unit_run(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* make check sets RLPROXY_SRCDIR (builds may be out of tree); by hand, run from the source root. */
static inline void unit_srcdir_path(const char *relative, char *path, size_t len)
{
    const char *dir = getenv("RLPROXY_SRCDIR");
    snprintf(path, len, "%s/%s", dir != NULL && *dir != '\0' ? dir : ".", relative);
}

/* A file of the source tree (up to 1 MiB), NUL-terminated, for the caller to free */
static inline char *unit_slurp(const char *relative)
{
    char path[4096];
    unit_srcdir_path(relative, path, sizeof path);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (set RLPROXY_SRCDIR)", path);
    static const size_t cap = 1 << 20;
    char *buf = malloc(cap + 1);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* unit_slurp(relative), and in *at the first place marker stands in it: the test fails, saying
 * the file lacks what, when it is not there */
static inline char *unit_slurp_at(const char *relative, const char *marker, const char *what,
                                  const char **at)
{
    char *text = unit_slurp(relative);
    *at = strstr(text, marker);
    ck_assert_msg(*at != NULL, "%s has no %s", relative, what);
    return text;
}

/* Adds each test to tc, in order, and tc to s; returns tc for loop tests and fixtures. A suite's
 * tests are then one statement a TCase (UNIT_TESTS below) rather than one tcase_add_test line a
 * test, which made the tail of every suite look alike. */
static inline TCase *unit_add_tcase(Suite *s, TCase *tc, const TTest *const tests[], size_t count)
{
    for (size_t i = 0; i < count; i++)
        tcase_add_test(tc, tests[i]);
    suite_add_tcase(s, tc);
    return tc;
}

/* The tests and their count, as unit_add_tcase takes them:
 * unit_add_tcase(s, tcase_create("name"), UNIT_TESTS(test_a, test_b)) */
#define UNIT_TESTS(...)                                                                            \
    (const TTest *const[]){__VA_ARGS__},                                                           \
        sizeof((const TTest *const[]){__VA_ARGS__}) / sizeof(const TTest *)

#endif
