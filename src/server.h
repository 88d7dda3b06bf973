/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* server.h — the process's life on the main thread: opens the listening sockets, starts the worker
 * threads, handles signals (TERM/INT drain then stop, a second one stops at once; HUP reloads the
 * config file, keeping the old config on error), talks to systemd. Workers do all proxying. */
#ifndef RLPROXY_SERVER_H
#define RLPROXY_SERVER_H

#include "config.h"

/* Runs until stopped; returns the process exit status. Takes over the reference to config. */
int server_run(struct config *config, const char *config_path);

#endif
