/* unit.h — what every Check program shares (unit suites, and the e2e harness through harness.h):
 * registering a list of tests in one statement, and running a suite into the exit status
 * automake's test driver reads. Header-only: each unit program is one .c file. */
#ifndef RLPROXY_TESTS_UNIT_H
#define RLPROXY_TESTS_UNIT_H

#include <check.h>
#include <stddef.h>
#include <stdlib.h>

static inline int unit_run(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
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
