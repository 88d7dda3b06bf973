/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* util.h — small helpers shared by every module: monotonic time, case-insensitive token compare,
 * socket address formatting. No state, no allocation. */
#ifndef RLPROXY_UTIL_H
#define RLPROXY_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

uint64_t util_now_ms(void); /* CLOCK_MONOTONIC */
uint64_t util_now_us(void);
uint64_t util_wall_ms(void); /* CLOCK_REALTIME: for dates and epoch times that origins send */
void util_ms_to_timeval(uint64_t ms, struct timeval *tv);

/* A fast per-thread pseudo-random 32-bit draw (xorshift, seeded per thread); for jitter, not
 * secrets. */
uint32_t util_random32(void);

/* 1 when the len bytes at a equal the NUL-terminated word, ignoring ASCII case. */
int util_equals_nocase(const char *a, size_t len, const char *word);

/* "127.0.0.1:3128" / "[::1]:3128"; returns buf. */
const char *util_format_sockaddr(const struct sockaddr *sa, char *buf, size_t buf_len);
/* "1.2.3.4:5678" -> "1.2.3.4", "[::1]:5678" -> "::1" (what util_format_sockaddr wrote). */
void util_address_without_port(const char *text, char *out, size_t out_len);

/* A function to run on another thread's loop, handed over with a post function (such as
 * worker_post_call) that is safe from any thread. The node is the caller's: no allocation. */
struct util_call {
    void (*fn)(void *arg);
    void *arg;
    struct util_call *next;
};
typedef void (*util_post_fn)(void *target, struct util_call *call);

/* For each comma-separated token (trimmed of SP/HT) in value[0..len): fn returns non-zero to stop.
 */
int util_for_each_token(const char *value, size_t len,
                        int (*fn)(const char *token, size_t token_len, void *arg), void *arg);

/* An intrusive doubly linked list: head points at the first node, each node has prev and next.
 * Connections, tunnels, sleepers and pool blocks each keep one; these are its two operations. */
#define UTIL_LIST_PUSH(head, node)                                                                 \
    do {                                                                                           \
        (node)->prev = NULL;                                                                       \
        (node)->next = (head);                                                                     \
        if ((head) != NULL)                                                                        \
            (head)->prev = (node);                                                                 \
        (head) = (node);                                                                           \
    } while (0)
#define UTIL_LIST_UNLINK(head, node)                                                               \
    do {                                                                                           \
        if ((node)->prev != NULL)                                                                  \
            (node)->prev->next = (node)->next;                                                     \
        else                                                                                       \
            (head) = (node)->next;                                                                 \
        if ((node)->next != NULL)                                                                  \
            (node)->next->prev = (node)->prev;                                                     \
    } while (0)

#endif
