/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* server.c — see server.h. */
#include "server.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "admin.h"
#include "auth.h"
#include "config_dump.h"
#include "config_warn.h"
#include "conn_set.h"
#include "credential.h"
#include "daemon.h"
#include "process.h"
#include "retry.h"
#include "state_file.h"
#include "tls.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#define LISTEN_BACKLOG 1024

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

struct server {
    struct event_base *base;
    struct config *config;
    const char *config_path;
    int *listen_fds;
    char (*listen_texts)[80]; /* the config text each descriptor was opened for */
    size_t listen_count;
    int socket_activated; /* listeners came from systemd: never rebound */
    struct worker **workers;
    unsigned worker_count;
    struct process process; /* the process-wide objects (process.h), owned here */
    struct retry_budget retry_budget;
    int stopping;
    struct event *watchdog;
    struct admin *admin;
    struct admin_view view;
    struct limiter *limiter; /* for s->config */
    struct event *expiry;
    struct event *state_save; /* state_file: writes the windows every STATE_FILE_INTERVAL_MS */
    char *state_path;         /* state_file of the first config (restart-only), or NULL */
    int state_save_failing;   /* the last save failed: said once, not every 5 s */
};

static int open_listener(const struct listen_addr *la)
{
    int fd = socket(la->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        log_error("listen %s: socket: %s", la->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (la->addr.ss_family == AF_INET6) /* "[::]:3128" means IPv6 only; list 0.0.0.0 for IPv4 */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&la->addr, la->addr_len) != 0 ||
        listen(fd, LISTEN_BACKLOG) != 0) {
        log_error("listen %s: %s", la->text, strerror(errno));
        close(fd);
        return -1;
    }
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    char text[80];
    if (getsockname(fd, (struct sockaddr *)&bound, &len) == 0)
        log_notice("listening on %s", util_format_sockaddr((struct sockaddr *)&bound, text,
                                                           sizeof text));
    return fd;
}

static unsigned listen_port(const struct listen_addr *la)
{
    if (la->addr.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&la->addr)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&la->addr)->sin6_port);
}

/* systemd socket activation (rlproxy.socket): the sockets it passes replace `listen`. */
static int take_activated_sockets(struct server *s)
{
#ifdef HAVE_LIBSYSTEMD
    int n = sd_listen_fds(1);
    if (n <= 0)
        return 0;
    s->listen_fds = calloc((size_t)n, sizeof *s->listen_fds);
    s->listen_texts = calloc((size_t)n, sizeof *s->listen_texts);
    if (s->listen_fds == NULL || s->listen_texts == NULL)
        return -1;
    for (int i = 0; i < n; i++) {
        s->listen_fds[i] = SD_LISTEN_FDS_START + i;
        snprintf(s->listen_texts[i], sizeof s->listen_texts[i], "systemd socket %d", i);
    }
    s->listen_count = (size_t)n;
    s->socket_activated = 1;
    log_notice("using %d socket(s) passed by systemd; listen is ignored", n);
    return 1;
#else
    (void)s;
    return 0;
#endif
}

/* Opens the listeners `config` asks for, reusing the descriptors of `s` whose address did not
 * change (port 0 always means a new socket). On failure nothing of `s` is touched. */
static int build_listeners(struct server *s, const struct config *config, int **fds_out,
                           char (**texts_out)[80])
{
    size_t n = config->listen_count;
    int *fds = calloc(n, sizeof *fds);
    char(*texts)[80] = calloc(n, sizeof *texts);
    if (fds == NULL || texts == NULL) {
        free(fds);
        free(texts);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const struct listen_addr *la = &config->listen[i];
        fds[i] = -1;
        for (size_t j = 0; j < s->listen_count; j++)
            if (strcmp(s->listen_texts[j], la->text) == 0 && listen_port(la) != 0 &&
                s->listen_fds[j] >= 0)
                fds[i] = s->listen_fds[j];
        if (fds[i] < 0)
            fds[i] = open_listener(la);
        if (fds[i] < 0) {
            for (size_t k = 0; k < i; k++) {
                int reused = 0;
                for (size_t j = 0; j < s->listen_count; j++)
                    reused |= s->listen_fds[j] == fds[k];
                if (!reused)
                    close(fds[k]);
            }
            free(fds);
            free(texts);
            return -1;
        }
        snprintf(texts[i], sizeof texts[i], "%s", la->text);
    }
    *fds_out = fds;
    *texts_out = texts;
    return 0;
}

static int open_listeners(struct server *s)
{
    int activated = take_activated_sockets(s);
    if (activated != 0)
        return activated < 0 ? -1 : 0;
    int *fds;
    char(*texts)[80];
    if (build_listeners(s, s->config, &fds, &texts) != 0)
        return -1;
    s->listen_fds = fds;
    s->listen_texts = texts;
    s->listen_count = s->config->listen_count;
    return 0;
}

static void close_listeners(struct server *s)
{
    for (size_t i = 0; i < s->listen_count; i++)
        close(s->listen_fds[i]);
    free(s->listen_fds);
    free(s->listen_texts);
    s->listen_fds = NULL;
    s->listen_texts = NULL;
    s->listen_count = 0;
}

/* Reload: new sockets for new addresses, the same ones for unchanged addresses; workers switch
 * their listeners; sockets no longer listed close once every worker has let go of them. */
static int rebind(struct server *s, const struct config *next)
{
    int *fds;
    char(*texts)[80];
    if (build_listeners(s, next, &fds, &texts) != 0)
        return -1;
    for (unsigned i = 0; i < s->worker_count; i++)
        if (worker_post_listeners(s->workers[i], fds, next->listen_count) != 0)
            log_error("worker %u: cannot hand over the new listeners", i);
    for (size_t j = 0; j < s->listen_count; j++) {
        int kept = 0;
        for (size_t i = 0; i < next->listen_count; i++)
            kept |= fds[i] == s->listen_fds[j];
        if (!kept)
            close(s->listen_fds[j]);
    }
    free(s->listen_fds);
    free(s->listen_texts);
    s->listen_fds = fds;
    s->listen_texts = texts;
    s->listen_count = next->listen_count;
    return 0;
}

static int same_listen(const struct config *a, const struct config *b)
{
    if (a->listen_count != b->listen_count)
        return 0;
    for (size_t i = 0; i < a->listen_count; i++)
        if (strcmp(a->listen[i].text, b->listen[i].text) != 0)
            return 0;
    return 1;
}

static void reload(struct server *s)
{
    if (s->config_path == NULL) {
        log_notice("SIGHUP: running on the embedded default config, nothing to reload");
        return;
    }
    daemon_notify_reloading();
    char err[1024];
    struct config *next = NULL;
    if (config_load_file(s->config_path, &next, err, sizeof err) != 0) {
        log_error("reload failed, keeping the running config: %s", err);
        metrics_count_reload(&s->view.process, 0);
        daemon_notify_ready();
        return;
    }
    if (tls_configure(s->process.tls, next, err, sizeof err) != 0) {
        log_error("reload failed, keeping the running config: %s", err);
        metrics_count_reload(&s->view.process, 0);
        config_unref(next);
        daemon_notify_ready();
        return;
    }
    /* opened before anything changes: a log that cannot be written fails the whole reload */
    struct log_access_sink access_log;
    if (log_access_prepare(next->access_log, &access_log) != 0) {
        log_error("reload failed, keeping the running config: log.access: cannot open %s: %s",
                  next->access_log, strerror(errno));
        metrics_count_reload(&s->view.process, 0);
        config_unref(next);
        daemon_notify_ready();
        return;
    }
    if (!same_listen(s->config, next) && !s->socket_activated && rebind(s, next) != 0) {
        log_error("reload failed, keeping the running config: cannot listen on the new addresses");
        metrics_count_reload(&s->view.process, 0);
        log_access_discard(&access_log);
        config_unref(next);
        daemon_notify_ready();
        return;
    }
    struct limiter *limiter = limiter_new(next, s->limiter, s->process.credential_key);
    if (limiter == NULL) {
        log_error("reload failed, keeping the running config: out of memory");
        metrics_count_reload(&s->view.process, 0);
        log_access_discard(&access_log);
        config_unref(next);
        daemon_notify_ready();
        return;
    }
    config_warn_restart_only(s->config, next); /* workers, admin.listen, shared.redis... */
    config_log_rule_warnings(next);
    log_set_level(next->log_level);
    log_access_set_buffer(next->access_buffer);
    log_access_install(&access_log);
    metrics_rules_reloaded(s->process.histograms, s->limiter, limiter);
    for (unsigned i = 0; i < s->worker_count; i++)
        worker_post_config(s->workers[i], next, limiter);
    config_unref(s->config);
    s->config = next;
    limiter_unref(s->limiter);
    s->limiter = limiter;
    s->view.limiter = limiter;
    metrics_count_reload(&s->view.process, 1);
    log_notice("configuration reloaded from %s", s->config_path);
    daemon_notify_ready();
}

/* SIGUSR1, nginx's convention and what the packaged logrotate file sends after it renamed the
 * access log: the same path is opened again. On failure the old file keeps receiving lines. */
static void reopen_logs(struct server *s)
{
    if (log_access_open(s->config->access_log) != 0) {
        log_error("SIGUSR1: cannot reopen access log %s, still writing to the old file: %s",
                  s->config->access_log, strerror(errno));
        return;
    }
    log_notice("SIGUSR1: access log %s reopened", s->config->access_log);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    if (sig == SIGHUP) {
        reload(s);
        return;
    }
    if (sig == SIGUSR1) {
        reopen_logs(s);
        return;
    }
    if (s->stopping) {
        log_notice("second stop signal: stopping now");
        for (unsigned i = 0; i < s->worker_count; i++)
            worker_post_stop(s->workers[i], 1);
        event_base_loopbreak(s->base);
        return;
    }
    s->stopping = 1;
    s->view.stopping = 1;
    daemon_notify_stopping();
    log_notice("stopping: draining connections for up to %" PRIu64 " ms",
               s->config->shutdown_timeout_ms);
    for (unsigned i = 0; i < s->worker_count; i++)
        worker_post_stop(s->workers[i], 0);
    close_listeners(s); /* the workers close their copies as they start draining */
    /* the main loop now only waits (in server_run) for the workers or the deadline */
    event_base_loopexit(s->base, NULL);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg) { daemon_watchdog_ping(); }

/* Idle windows go once a second, so memory follows the active keys, not every key ever seen. */
static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    limiter_expire(s->limiter, util_now_us());
    log_access_flush();
}

/* state_file: on the main thread, so a slow disk delays the admin endpoint and signals, never a
 * request; the limiter's locks are taken one stripe at a time. */
static void save_state(struct server *s, int at_stop)
{
    char err[512];
    if (state_file_save(s->limiter, s->state_path, util_now_us(), state_file_wall_now_us(), err,
                        sizeof err) != 0) {
        if (!s->state_save_failing || at_stop)
            log_warn("state_file: %s (said once until a save works again)", err);
        s->state_save_failing = 1;
    } else if (s->state_save_failing) {
        log_notice("state_file: %s written again", s->state_path);
        s->state_save_failing = 0;
    }
}

static void on_state_save(evutil_socket_t fd, short what, void *arg) { save_state(arg, 0); }

/* Before any worker runs: the windows of the last run, when the file has them. A bad file is a
 * warning and an empty start, never a refusal to start. */
static void load_state(struct server *s)
{
    struct state_file_counts counts;
    char err[512];
    int rc = state_file_load(s->limiter, s->state_path, util_now_us(), state_file_wall_now_us(),
                             &counts, err, sizeof err);
    if (rc < 0)
        log_warn("state_file: %s; starting with empty windows", err);
    else if (rc > 0)
        log_notice("state_file: %s does not exist yet; starting with empty windows", s->state_path);
    else
        log_notice("state_file: restored %llu windows (%llu entries) and %llu learned limits of "
                   "%llu of %llu saved rules from %s",
                   (unsigned long long)counts.windows, (unsigned long long)counts.entries,
                   (unsigned long long)counts.learned, (unsigned long long)counts.matched,
                   (unsigned long long)counts.rules, s->state_path);
}

/* Joins every worker, forcing them to stop when the drain deadline passes. A second signal during
 * the wait is handled by the signal events still armed on the main base. */
static void wait_for_workers(struct server *s)
{
    uint64_t deadline = util_now_ms() + s->config->shutdown_timeout_ms;
    for (unsigned i = 0; i < s->worker_count; i++) {
        for (;;) {
            uint64_t now = util_now_ms();
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            uint64_t wait_ms = now < deadline ? deadline - now : 0;
            if (wait_ms > 100)
                wait_ms = 100;
            until.tv_nsec += (long)(wait_ms * 1000000);
            until.tv_sec += until.tv_nsec / 1000000000;
            until.tv_nsec %= 1000000000;
            if (worker_timedjoin(s->workers[i], &until) == 0)
                break;
            event_base_loop(s->base, EVLOOP_NONBLOCK); /* a second signal forces the stop */
            if (util_now_ms() >= deadline) {
                log_warn("drain deadline passed: closing remaining connections");
                for (unsigned j = 0; j < s->worker_count; j++)
                    worker_post_stop(s->workers[j], 1);
                deadline = UINT64_MAX;
            }
        }
    }
}

int server_run(struct config *config, const char *config_path)
{
    struct server s;
    memset(&s, 0, sizeof s);
    s.config = config;
    s.config_path = config_path;
    int status = 1;
    struct event *signals[5] = {NULL, NULL, NULL, NULL, NULL};
    const int signal_numbers[5] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1};
    s.base = event_base_new();
    if (s.base == NULL)
        goto out;
    /* before anything is announced: a TERM during start-up must stop us cleanly, not kill us */
    for (int i = 0; i < 5; i++) {
        signals[i] = evsignal_new(s.base, signal_numbers[i], on_signal, &s);
        evsignal_add(signals[i], NULL);
    }
    if (open_listeners(&s) != 0)
        goto out;
    char tls_err[1024] = "out of memory";
    s.process.tls = tls_interceptor_new();
    if (s.process.tls == NULL ||
        tls_configure(s.process.tls, config, tls_err, sizeof tls_err) != 0) {
        log_error("%s", tls_err);
        goto out;
    }
    char key_err[256] = "out of memory";
    /* with shared.key_secret the windows of header keys keep their names across a restart (and
     * so survive in state_file); without it a random key per process is the safer default */
    if (config->shared_key_secret != NULL && config->shared_key_secret[0] != '\0')
        s.process.credential_key =
            credential_key_new(config->shared_key_secret, strlen(config->shared_key_secret));
    else
        s.process.credential_key = credential_key_new_random(key_err, sizeof key_err);
    if (s.process.credential_key == NULL) {
        log_error("%s", key_err);
        goto out;
    }
    s.limiter = limiter_new(config, NULL, s.process.credential_key);
    s.workers = calloc(config->workers, sizeof *s.workers);
    s.process.retry_budget = &s.retry_budget;
    s.process.client_slots = access_client_slots_new();
    if (s.workers == NULL || s.limiter == NULL || s.process.client_slots == NULL)
        goto out;
    s.view.limiter = s.limiter;
    if (config->state_file != NULL && config->state_file[0] != '\0') {
        s.state_path = strdup(config->state_file); /* restart-only: the first config's path */
        if (s.state_path == NULL)
            goto out;
        load_state(&s);
    }
    s.process.histograms = metrics_histograms_new(config->workers);
    s.process.worker_group = worker_group_new();
    s.process.auth_pool = auth_pool_new();
    if (s.process.histograms == NULL || s.process.worker_group == NULL ||
        s.process.auth_pool == NULL)
        goto out;
    s.view.process.objects = &s.process;
    for (unsigned i = 0; i < config->workers; i++) {
        struct worker *w = worker_new(i, config, s.limiter, s.listen_fds, s.listen_count,
                                      &s.process, &conn_set_clients);
        if (w == NULL) {
            log_error("worker %u: initialisation failed", i);
            goto stop_workers;
        }
        if (worker_run(w) != 0) {
            log_error("worker %u: cannot start thread", i);
            worker_free(w);
            goto stop_workers;
        }
        s.workers[s.worker_count++] = w;
    }
    s.expiry = event_new(s.base, -1, EV_PERSIST, on_expiry, &s);
    if (s.expiry != NULL) {
        struct timeval second = {1, 0};
        event_add(s.expiry, &second);
    }
    if (s.state_path != NULL) {
        s.state_save = event_new(s.base, -1, EV_PERSIST, on_state_save, &s);
        struct timeval interval;
        util_ms_to_timeval(STATE_FILE_INTERVAL_MS, &interval);
        if (s.state_save != NULL)
            event_add(s.state_save, &interval);
    }
    uint64_t watchdog_ms = daemon_watchdog_interval_ms();
    if (watchdog_ms > 0) {
        s.watchdog = event_new(s.base, -1, EV_PERSIST, on_watchdog, &s);
        struct timeval tv;
        util_ms_to_timeval(watchdog_ms, &tv);
        event_add(s.watchdog, &tv);
    }
    worker_group_start(s.process.worker_group, s.workers, s.worker_count);
    s.view.workers = s.workers;
    s.view.worker_count = s.worker_count;
    metrics_process_started(&s.view.process);
    s.admin = admin_start(s.base, config, &s.view);
    if (s.admin == NULL)
        goto stop_workers;
    log_notice("rlproxy %s started: %u workers", PACKAGE_VERSION, s.worker_count);
    daemon_notify_ready();
    event_base_dispatch(s.base);
    status = 0;
    wait_for_workers(&s);
    if (s.state_save != NULL) /* after the drain: the requests that finished during it count */
        save_state(&s, 1);
    worker_group_stop(s.process.worker_group);
    for (unsigned i = 0; i < s.worker_count; i++)
        worker_free(s.workers[i]);
    admin_free(s.admin);
    log_notice("stopped");
    goto out;

stop_workers:
    for (unsigned i = 0; i < s.worker_count; i++)
        worker_post_stop(s.workers[i], 1);
    /* all joined before any is freed: a running worker may still hand a connection over */
    for (unsigned i = 0; i < s.worker_count; i++)
        worker_join(s.workers[i]);
    worker_group_stop(s.process.worker_group);
    for (unsigned i = 0; i < s.worker_count; i++)
        worker_free(s.workers[i]);
out:
    for (int i = 0; i < 5; i++)
        if (signals[i] != NULL)
            event_free(signals[i]);
    if (s.watchdog != NULL)
        event_free(s.watchdog);
    if (s.expiry != NULL)
        event_free(s.expiry);
    if (s.state_save != NULL)
        event_free(s.state_save);
    free(s.state_path);
    /* after every worker was joined: they write into these and cancelled their auth checks */
    metrics_histograms_free(s.process.histograms);
    worker_group_free(s.process.worker_group);
    auth_pool_free(s.process.auth_pool);
    limiter_unref(s.limiter);
    credential_key_free(s.process.credential_key); /* after the limiter that hashes under it */
    tls_interceptor_free(s.process.tls);
    free(s.workers);
    access_client_slots_free(s.process.client_slots);
    close_listeners(&s);
    if (s.base != NULL)
        event_base_free(s.base);
    config_unref(s.config);
    return status;
}
