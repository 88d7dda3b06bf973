/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* daemon.c — see daemon.h. */
#include "daemon.h"

#include <stdio.h>
#include <time.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#ifdef HAVE_LIBSYSTEMD
static void notify(const char *state) { sd_notify(0, state); }
#else
static void notify(const char *state) { (void)state; }
#endif

void daemon_notify_ready(void) { notify("READY=1\nSTATUS=serving"); }

void daemon_notify_reloading(void)
{
    /* systemd wants the monotonic time with RELOADING=1 to match it against the reload request */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char state[96];
    snprintf(state, sizeof state, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000);
    notify(state);
}

void daemon_notify_stopping(void) { notify("STOPPING=1\nSTATUS=stopping"); }

void daemon_notify_status(const char *status)
{
    char state[256];
    snprintf(state, sizeof state, "STATUS=%s", status);
    notify(state);
}

uint64_t daemon_watchdog_interval_ms(void)
{
#ifdef HAVE_LIBSYSTEMD
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
        return usec / 2000;
#endif
    return 0;
}

void daemon_watchdog_ping(void) { notify("WATCHDOG=1"); }
