/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* accesslog.h — the one formatter of access-log lines, for proxied requests and CONNECT tunnels
 * alike: text or JSON (log.access_format), every outside string sanitized so that a hostile
 * target or user name cannot forge a line or break the JSON. Writes through log.c's sink; keeps
 * no state and never decides what is logged or when (conn.c and tunnel.c do). */
#ifndef RLPROXY_ACCESSLOG_H
#define RLPROXY_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct limiter_decision;

struct accesslog_entry {
    const char *client;  /* "address:port" */
    const char *user;    /* "-" when the client did not authenticate */
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    int status;
    uint64_t bytes_in, bytes_out; /* body bytes from the client; bytes to it (ours included) */
    uint64_t total_ms, upstream_ms, wait_ms;
    unsigned attempts;
    const char *verdict; /* "none", "admit", "delay", "reject" */
    const char *rule;    /* the rule that decided, or NULL */
    int paused;          /* the verdict came from an origin's pause */
    int64_t origin_remaining, origin_reset_ms; /* what the origin said of its limit; -1: nothing */
    const char *reason;  /* why rlproxy answered itself (the error body's words), or NULL */
    size_t reason_len;
};

/* The verdict and rule of a limiter decision, as the access log names them. */
void accesslog_decision(const struct limiter_decision *decision, const char **verdict,
                        const char **rule, int *paused);

/* Writes one line when the access log is on. */
void accesslog_write(enum access_format format, const struct accesslog_entry *entry);

#endif
