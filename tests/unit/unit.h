/* unit.h — what every unit test program shares: running its suite and turning the result into
 * the exit status automake's test driver reads. Header-only: each program is one .c file. */
#ifndef RLPROXY_TESTS_UNIT_H
#define RLPROXY_TESTS_UNIT_H

#include <check.h>
#include <stdlib.h>

static inline int unit_run(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
