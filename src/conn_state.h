/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* conn_state.h — the states of a client connection (conn.c) and the only moves between them: one
 * table, in conn_state.c, that conn_set_state consults. Data and names only; no behaviour.
 *
 * Every move conn_set_state allows (any other is refused: an abort in sanitizer builds, a logged
 * error and a closed connection otherwise). tests/unit/test_conn_state checks this list against
 * the table in conn_state.c, both ways:
 *   IDLE           -> READ_HEAD CLOSING
 *   READ_HEAD      -> IDLE WAIT_AUTH WAIT_SLOT WAIT_ADMIT FORWARD TUNNEL_CONNECT CLOSING
 *   WAIT_AUTH      -> READ_HEAD CLOSING
 *   WAIT_SLOT      -> IDLE WAIT_ADMIT FORWARD TUNNEL_CONNECT CLOSING
 *   WAIT_ADMIT     -> IDLE WAIT_ADMIT FORWARD TUNNEL_CONNECT CLOSING
 *   FORWARD        -> IDLE WAIT_ADMIT CLOSING
 *   TUNNEL_CONNECT -> CLOSING
 *   CLOSING        ->
 * IDLE: waiting for a request (nothing of it read); READ_HEAD: a head is arriving (the header
 * deadline runs) or being checked; WAIT_AUTH: the password hash runs on auth.c's threads;
 * WAIT_SLOT / WAIT_ADMIT: admission.c holds the request; FORWARD: forward.c exchanges it with the
 * origin; TUNNEL_CONNECT: the CONNECT's upstream connection is opening (then tunnel.c owns the
 * sockets and the conn is freed); CLOSING: the last reply drains, then the socket closes. A reply
 * of rlproxy's own that keeps the connection goes back to IDLE. */
#ifndef RLPROXY_CONN_STATE_H
#define RLPROXY_CONN_STATE_H

#include <stddef.h>

enum conn_state {
    CONN_IDLE,
    CONN_READ_HEAD,
    CONN_WAIT_AUTH,
    CONN_WAIT_SLOT,
    CONN_WAIT_ADMIT,
    CONN_FORWARD,
    CONN_TUNNEL_CONNECT,
    CONN_CLOSING,
    CONN_STATE_COUNT
};

const char *conn_state_name(size_t state); /* NULL beyond the last */
int conn_state_allowed(size_t from, size_t to);

#endif
