/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* conn_state.c — see conn_state.h. */
#include "conn_state.h"

static const char *const state_names[CONN_STATE_COUNT] = {
    "IDLE",       "READ_HEAD", "WAIT_AUTH",      "WAIT_SLOT",
    "WAIT_ADMIT", "FORWARD",   "TUNNEL_CONNECT", "CLOSING"};

#define TO(state) (1u << (state))
/* The moves conn_set_state allows; conn_state.h draws the same table. */
static const unsigned allowed_moves[CONN_STATE_COUNT] = {
    [CONN_IDLE] = TO(CONN_READ_HEAD) | TO(CONN_CLOSING),
    [CONN_READ_HEAD] = TO(CONN_IDLE) | TO(CONN_WAIT_AUTH) | TO(CONN_WAIT_SLOT) |
                       TO(CONN_WAIT_ADMIT) | TO(CONN_FORWARD) | TO(CONN_TUNNEL_CONNECT) |
                       TO(CONN_CLOSING),
    [CONN_WAIT_AUTH] = TO(CONN_READ_HEAD) | TO(CONN_CLOSING),
    [CONN_WAIT_SLOT] = TO(CONN_IDLE) | TO(CONN_WAIT_ADMIT) | TO(CONN_FORWARD) |
                       TO(CONN_TUNNEL_CONNECT) | TO(CONN_CLOSING),
    [CONN_WAIT_ADMIT] = TO(CONN_IDLE) | TO(CONN_WAIT_ADMIT) | TO(CONN_FORWARD) |
                        TO(CONN_TUNNEL_CONNECT) | TO(CONN_CLOSING),
    [CONN_FORWARD] = TO(CONN_IDLE) | TO(CONN_WAIT_ADMIT) | TO(CONN_CLOSING),
    [CONN_TUNNEL_CONNECT] = TO(CONN_CLOSING),
    [CONN_CLOSING] = 0,
};

const char *conn_state_name(size_t state)
{
    return state < CONN_STATE_COUNT ? state_names[state] : NULL;
}

int conn_state_allowed(size_t from, size_t to)
{
    return from < CONN_STATE_COUNT && to < CONN_STATE_COUNT && (allowed_moves[from] & TO(to)) != 0;
}
