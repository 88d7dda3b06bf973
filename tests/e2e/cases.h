/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* cases.h — request cases kept as data, one per file under tests/cases/<dir>/ (the format is in
 * tests/cases/README): lists a case directory, parses a file, expands its request into exact bytes
 * and plays it against a running rlproxy. It must not guess: a malformed file fails the running
 * Check test with "file:line: reason". What a suite concludes beyond the file's own expectations
 * (the origin's log, the proxy's survival) belongs to the suite's driver. */
#ifndef RLPROXY_TEST_CASES_H
#define RLPROXY_TEST_CASES_H

#include <check.h>
#include <stddef.h>

enum case_send {
    CASE_SEND_ALL,     /* send, then read the reply */
    CASE_SEND_SHUT_WR, /* send, half-close, then read */
    CASE_SEND_CLOSE,   /* send, then close at once: only the proxy's survival can be observed */
};

struct request_case {
    char file[512]; /* as given to case_load, relative to the source tree: every message names it */
    char *name;
    char *why;
    int expect_status; /* 0: no response at all, only the proxy's close */
    int alt_status;    /* another acceptable status, or 0 */
    int first_status;  /* a valid pipelined request comes first and gets this status; 0: none */
    enum case_send send;
    char *request;    /* the request section as written; case_bytes() expands it */
    int request_line; /* the file line the request section starts on, for messages */
};

struct case_bytes {
    unsigned char *data;
    size_t len;
};

/* The *.txt files of tests/cases/<dir> (below $RLPROXY_SRCDIR), sorted, as
 * "tests/cases/<dir>/x.txt" in *files (malloc'd). Returns how many; 0 after printing why on stderr
 * when the directory cannot be read or holds fewer than min_count cases (then the directory was not
 * read as it should be): call it from main(), before the suite runs. */
size_t case_list(const char *dir, size_t min_count, char ***files);

/* A driver's cases: the files case_list found */
struct case_dir {
    char **files;
    size_t count;
};
/* A driver's main(): lists tests/cases/<dir> into *cases (which lives as long as the process: the
 * forked tests index it), then runs a suite with each_test as a loop test over the files in `each`
 * and all_test once in `all`. EXIT_FAILURE without running anything when case_list finds fewer
 * than min_count files. */
int case_driver_main(const char *dir, size_t min_count, struct case_dir *cases, TCase *each,
                     const TTest *each_test, TCase *all, const TTest *all_test);

/* Parses one case file; fails the running test, naming file and line, when it is malformed. */
void case_load(const char *file, struct request_case *c);
void case_free(struct request_case *c);

/* The request's bytes, with {port} = origin_port; fails the test on a malformed request section. */
void case_expand(const struct request_case *c, int origin_port, struct case_bytes *out);
void case_bytes_free(struct case_bytes *b);

/* Plays the case on a new connection to the proxy: "" when the proxy answered as the file says and
 * closed the connection within 2 s, else what went wrong (a static buffer, overwritten by the next
 * call). The caller names c->file in its failure message. */
const char *case_play(const struct request_case *c, int proxy_port, int origin_port);

#endif
