/* metrics.c — see metrics.h. Names follow Prometheus conventions: counters end in _total, units
 * in the name (_bytes), one HELP and TYPE line per family. */
#include "metrics.h"

#include <event2/buffer.h>
#include <inttypes.h>

#include "limiter.h"
#include "shared.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

static void family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define MAX_WORKERS_RENDERED 1024 /* config: workers <= 1024 */

static uint64_t sum(const struct worker_stats *stats, unsigned count, size_t offset)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < count; i++)
        total += *(const uint64_t *)((const char *)&stats[i] + offset);
    return total;
}

#define SUM(field) sum(stats, worker_count, offsetof(struct worker_stats, field))

static void render_limiter(struct evbuffer *out, struct limiter *limiter)
{
    size_t n = limiter_rule_count(limiter);
    family(out, "rlproxy_limiter_decisions_total", "counter",
           "Rate-limit decisions by rule: admitted at once, delayed (held), rejected (429).");
    for (size_t i = 0; i < n; i++) {
        struct limiter_rule_stats st;
        limiter_rule_stats(limiter, i, &st);
        const char *name = limiter_rule(limiter, i)->name;
        evbuffer_add_printf(out,
                            "rlproxy_limiter_decisions_total{rule=\"%s\",decision=\"admitted\"} %" PRIu64
                            "\nrlproxy_limiter_decisions_total{rule=\"%s\",decision=\"delayed\"} %" PRIu64
                            "\nrlproxy_limiter_decisions_total{rule=\"%s\",decision=\"rejected\"} %" PRIu64
                            "\n",
                            name, st.admitted, name, st.delayed, name, st.rejected);
    }
    family(out, "rlproxy_limiter_queued", "gauge", "Requests held by a delay rule now.");
    for (size_t i = 0; i < n; i++) {
        struct limiter_rule_stats st;
        limiter_rule_stats(limiter, i, &st);
        evbuffer_add_printf(out, "rlproxy_limiter_queued{rule=\"%s\"} %" PRIu64 "\n",
                            limiter_rule(limiter, i)->name, st.queued);
    }
    family(out, "rlproxy_limiter_keys", "gauge", "Windows (distinct keys) kept now, by rule.");
    for (size_t i = 0; i < n; i++) {
        struct limiter_rule_stats st;
        limiter_rule_stats(limiter, i, &st);
        evbuffer_add_printf(out, "rlproxy_limiter_keys{rule=\"%s\"} %" PRIu64 "\n",
                            limiter_rule(limiter, i)->name, st.keys);
    }
}

void metrics_render(struct evbuffer *out, struct worker *const *workers, unsigned worker_count,
                    struct limiter *limiter, const struct metrics_process *process)
{
    static struct worker_stats stats[MAX_WORKERS_RENDERED]; /* the admin runs on one thread */
    if (worker_count > MAX_WORKERS_RENDERED)
        worker_count = MAX_WORKERS_RENDERED;
    for (unsigned i = 0; i < worker_count; i++)
        worker_stats_read(workers[i], &stats[i]);
    if (limiter != NULL)
        render_limiter(out, limiter);
    family(out, "rlproxy_requests_total", "counter", "Requests whose head was parsed.");
    evbuffer_add_printf(out, "rlproxy_requests_total %" PRIu64 "\n", SUM(requests));

    family(out, "rlproxy_responses_total", "counter",
           "Responses by status class; class=\"aborted\" when the exchange ended without one.");
    static const char *const classes[] = {"aborted", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (unsigned c = 0; c < 6; c++) {
        uint64_t n = 0;
        for (unsigned i = 0; i < worker_count; i++)
            n += stats[i].responses_by_class[c];
        evbuffer_add_printf(out, "rlproxy_responses_total{class=\"%s\"} %" PRIu64 "\n", classes[c],
                            n);
    }

    family(out, "rlproxy_client_bytes_total", "counter",
           "Body bytes from clients (in) and to clients (out), tunnels included.");
    evbuffer_add_printf(out, "rlproxy_client_bytes_total{direction=\"in\"} %" PRIu64 "\n",
                        SUM(bytes_from_clients));
    evbuffer_add_printf(out, "rlproxy_client_bytes_total{direction=\"out\"} %" PRIu64 "\n",
                        SUM(bytes_to_clients));

    family(out, "rlproxy_connections_accepted_total", "counter", "Client connections accepted.");
    evbuffer_add_printf(out, "rlproxy_connections_accepted_total %" PRIu64 "\n",
                        SUM(connections_accepted));
    family(out, "rlproxy_connections_handed_over_total", "counter",
           "Client connections accepted by a worker that held more than the least-loaded one, "
           "and handed over to it.");
    evbuffer_add_printf(out, "rlproxy_connections_handed_over_total %" PRIu64 "\n",
                        SUM(connections_handed_over));
    family(out, "rlproxy_worker_connections", "gauge",
           "Client connections and tunnels open now, by worker.");
    for (unsigned i = 0; i < worker_count; i++)
        evbuffer_add_printf(out, "rlproxy_worker_connections{worker=\"%u\"} %" PRIu64 "\n", i,
                            stats[i].open_connections + stats[i].open_tunnels);
    family(out, "rlproxy_open_connections", "gauge",
           "Client connections open now (tunnels excluded).");
    evbuffer_add_printf(out, "rlproxy_open_connections %" PRIu64 "\n", SUM(open_connections));
    family(out, "rlproxy_idle_connections", "gauge",
           "Open client connections idle long enough to hold no buffers (included in "
           "rlproxy_open_connections).");
    evbuffer_add_printf(out, "rlproxy_idle_connections %" PRIu64 "\n", SUM(idle_connections));
    family(out, "rlproxy_tunnels_total", "counter", "CONNECT tunnels established.");
    evbuffer_add_printf(out, "rlproxy_tunnels_total %" PRIu64 "\n", SUM(tunnels_opened));
    family(out, "rlproxy_open_tunnels", "gauge", "CONNECT tunnels open now.");
    evbuffer_add_printf(out, "rlproxy_open_tunnels %" PRIu64 "\n", SUM(open_tunnels));

    family(out, "rlproxy_upstream_transfers", "gauge",
           "Upstream transfers in progress (requests and tunnel connects).");
    evbuffer_add_printf(out, "rlproxy_upstream_transfers %" PRIu64 "\n", SUM(upstream_active));

    family(out, "rlproxy_retries_total", "counter",
           "Upstream attempts beyond the first (retries), over all requests.");
    evbuffer_add_printf(out, "rlproxy_retries_total %" PRIu64 "\n", SUM(retries));
    family(out, "rlproxy_upstream_paused_hosts", "gauge",
           "Origins that asked for a pause (429/503 with Retry-After) whose pause is running.");
    evbuffer_add_printf(out, "rlproxy_upstream_paused_hosts %" PRIu64 "\n",
                        limiter_paused_hosts(util_now_us()));
    family(out, "rlproxy_upstream_pause_decisions_total", "counter",
           "Requests held or refused because their origin asked for a pause.");
    evbuffer_add_printf(out, "rlproxy_upstream_pause_decisions_total %" PRIu64 "\n",
                        limiter_pause_decisions());
    uint64_t shared_counts[4] = {0, 0, 0, 0};
    int shared_up = 0, shared_any = 0;
    for (unsigned i = 0; i < worker_count; i++) {
        struct shared_stats st;
        shared_stats(worker_shared(workers[i]), &st);
        shared_counts[0] += st.admitted;
        shared_counts[1] += st.delayed;
        shared_counts[2] += st.rejected;
        shared_counts[3] += st.errors;
        shared_up += st.connected;
        shared_any |= worker_shared(workers[i]) != NULL;
    }
    family(out, "rlproxy_shared_decisions_total", "counter",
           "Decisions of shared (Redis) rules: admitted, delayed, rejected, error (shared.on_error applied).");
    static const char *const outcomes[] = {"admitted", "delayed", "rejected", "error"};
    for (int k = 0; k < 4; k++)
        evbuffer_add_printf(out, "rlproxy_shared_decisions_total{outcome=\"%s\"} %" PRIu64 "\n",
                            outcomes[k], shared_counts[k]);
    family(out, "rlproxy_shared_redis_up", "gauge",
           "Workers connected to shared.redis (0 when none is configured).");
    evbuffer_add_printf(out, "rlproxy_shared_redis_up %d\n", shared_any ? shared_up : 0);
    struct tls_stats tls;
    tls_get_stats(&tls);
    family(out, "rlproxy_tls_intercepted_total", "counter",
           "CONNECT tunnels opened for TLS interception (tls_intercept.hosts).");
    evbuffer_add_printf(out, "rlproxy_tls_intercepted_total %llu\n", tls.handshakes_started);
    family(out, "rlproxy_tls_leaf_cache_total", "counter",
           "Leaf certificate look-ups by result: hit (cached) or miss (minted).");
    evbuffer_add_printf(out, "rlproxy_tls_leaf_cache_total{result=\"hit\"} %llu\n",
                        tls.leaf_cache_hits);
    evbuffer_add_printf(out, "rlproxy_tls_leaf_cache_total{result=\"miss\"} %llu\n",
                        tls.leaf_cache_misses);
    family(out, "rlproxy_workers", "gauge", "Worker threads.");
    evbuffer_add_printf(out, "rlproxy_workers %u\n", worker_count);
    family(out, "rlproxy_config_reloads_total", "counter", "Configuration reloads by result.");
    evbuffer_add_printf(out, "rlproxy_config_reloads_total{result=\"ok\"} %" PRIu64 "\n",
                        process->reloads_ok);
    evbuffer_add_printf(out, "rlproxy_config_reloads_total{result=\"failed\"} %" PRIu64 "\n",
                        process->reloads_failed);
    family(out, "rlproxy_start_time_seconds", "gauge", "Start time of the process (Unix time).");
    evbuffer_add_printf(out, "rlproxy_start_time_seconds %" PRIu64 "\n", process->start_time_unix);
}
