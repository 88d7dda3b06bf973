/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* conn_set.h — a worker's client connections as the worker sees them (struct worker_clients):
 * accepting (the per-client connection cap; a new connection starts asleep, sleeper.h),
 * draining and closing them all, and the sleepers and tunnels that go with them. The policy of
 * who gets a connection; what a connection does is conn.c's. */
#ifndef RLPROXY_CONN_SET_H
#define RLPROXY_CONN_SET_H

#include "worker.h"

/* What worker.c does with client connections (server.c hands it to every worker). */
extern const struct worker_clients conn_set_clients;

#endif
