/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* daemon.h — telling the service manager what we are doing (sd_notify: READY, RELOADING, STOPPING,
 * WATCHDOG). Without libsystemd, or when not started by systemd, every call is a no-op. */
#ifndef RLPROXY_DAEMON_H
#define RLPROXY_DAEMON_H

#include <stdint.h>

void daemon_notify_ready(void);
void daemon_notify_reloading(void);
void daemon_notify_stopping(void);
void daemon_notify_status(const char *status);
/* 0 when no watchdog is wanted; else the interval at which to ping, in ms (half systemd's). */
uint64_t daemon_watchdog_interval_ms(void);
void daemon_watchdog_ping(void);

#endif
