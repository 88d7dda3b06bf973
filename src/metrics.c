/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* metrics.c — see metrics.h. Names follow Prometheus conventions: counters end in _total, units
 * in the name (_bytes, _seconds), one HELP and TYPE line per family, written only by
 * metrics_render from the table below; readers write samples only, through sample(). */
#include "metrics.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "limiter.h"
#include "process.h"
#include "tls.h"
#include "util.h"
#include "worker.h" /* accessors only: worker_stats_read, worker_index */

struct metrics_source {
    struct worker *const *workers;
    unsigned worker_count;
    struct limiter *limiter;
    const struct metrics_process *process;
    const struct worker_stats_snapshot *stats; /* one per worker, read once per scrape */
};

/* ---- writing samples ------------------------------------------------------------------------- */

/* A label value as the exposition format wants it: backslash, quote and newline escaped (rule
 * names come from the operator's YAML). */
static void add_label_value(struct evbuffer *out, const char *value)
{
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"')
            evbuffer_add_printf(out, "\\%c", *p);
        else if (*p == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, p, 1);
    }
}

/* One sample: family name + suffix, then up to two labels (NULL names end the list) */
static void sample_labels(struct evbuffer *out, const struct metrics_family *f, const char *suffix,
                          const char *const names[2], const char *const values[2],
                          const char *value)
{
    evbuffer_add_printf(out, "%s%s", f->name, suffix);
    for (int i = 0; i < 2 && names[i] != NULL; i++) {
        evbuffer_add_printf(out, "%s%s=\"", i == 0 ? "{" : ",", names[i]);
        add_label_value(out, values[i]);
        evbuffer_add(out, "\"", 1);
    }
    if (names[0] != NULL)
        evbuffer_add(out, "}", 1);
    evbuffer_add_printf(out, " %s\n", value);
}

/* A sample with the family's own labels (f->labels) set to values, in order */
static void sample(struct evbuffer *out, const struct metrics_family *f, const char *const *values,
                   uint64_t value)
{
    char text[32];
    snprintf(text, sizeof text, "%" PRIu64, value);
    const char *names[2] = {f->labels[0], f->labels[0] != NULL ? f->labels[1] : NULL};
    /* a one-label family passes one value (&name): values[1] exists only with a second label */
    const char *vals[2] = {values != NULL ? values[0] : NULL,
                           values != NULL && names[1] != NULL ? values[1] : NULL};
    sample_labels(out, f, "", names, vals, text);
}

static uint64_t field_of(const struct worker_stats_snapshot *s, size_t offset)
{
    return *(const uint64_t *)((const char *)s + offset);
}

static uint64_t sum_field(const struct metrics_source *src, size_t offset)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < src->worker_count; i++)
        total += field_of(&src->stats[i], offset);
    return total;
}

#define FIELD(name) offsetof(struct worker_stats_snapshot, name)

/* ---- readers --------------------------------------------------------------------------------- */

static void read_sum(struct evbuffer *out, const struct metrics_family *f,
                     const struct metrics_source *src)
{
    sample(out, f, NULL, sum_field(src, f->field));
}

/* f->field is the first of consecutive fields, one per value of the family's only label */
static void read_sum_by(struct evbuffer *out, const struct metrics_family *f,
                        const struct metrics_source *src, const char *const *values, size_t count)
{
    for (size_t k = 0; k < count; k++)
        sample(out, f, &values[k], sum_field(src, f->field + k * sizeof(uint64_t)));
}

static void read_responses(struct evbuffer *out, const struct metrics_family *f,
                           const struct metrics_source *src)
{
    static const char *const classes[] = {"aborted", "1xx", "2xx", "3xx", "4xx", "5xx"};
    read_sum_by(out, f, src, classes, 6);
}

static void read_client_bytes(struct evbuffer *out, const struct metrics_family *f,
                              const struct metrics_source *src)
{
    static const char *const directions[] = {"in", "out"};
    read_sum_by(out, f, src, directions, 2);
}

static void read_shared_decisions(struct evbuffer *out, const struct metrics_family *f,
                                  const struct metrics_source *src)
{
    static const char *const outcomes[] = {"admitted", "delayed", "rejected", "error"};
    read_sum_by(out, f, src, outcomes, 4);
}

static void read_worker_connections(struct evbuffer *out, const struct metrics_family *f,
                                    const struct metrics_source *src)
{
    for (unsigned i = 0; i < src->worker_count; i++) {
        char id[16];
        snprintf(id, sizeof id, "%u", i);
        const char *values[] = {id};
        sample(out, f, values, src->stats[i].open_connections + src->stats[i].open_tunnels);
    }
}

static void read_shared_up(struct evbuffer *out, const struct metrics_family *f,
                           const struct metrics_source *src)
{
    sample(out, f, NULL, sum_field(src, FIELD(shared_configured)) ? sum_field(src, f->field) : 0);
}

enum limiter_field { LIMITER_DECISIONS, LIMITER_QUEUED, LIMITER_KEYS, LIMITER_PAUSED_KEYS };

static void read_limiter(struct evbuffer *out, const struct metrics_family *f,
                         const struct metrics_source *src)
{
    if (src->limiter == NULL)
        return;
    for (size_t i = 0; i < limiter_rule_count(src->limiter); i++) {
        struct limiter_rule_stats st;
        limiter_rule_stats(src->limiter, i, &st);
        const char *name = limiter_rule(src->limiter, i)->name;
        switch ((enum limiter_field)f->field) {
        case LIMITER_DECISIONS:
            sample(out, f, (const char *const[]){name, "admitted"}, st.admitted);
            sample(out, f, (const char *const[]){name, "delayed"}, st.delayed);
            sample(out, f, (const char *const[]){name, "rejected"}, st.rejected);
            sample(out, f, (const char *const[]){name, "would_delay"}, st.would_delay);
            sample(out, f, (const char *const[]){name, "would_reject"}, st.would_reject);
            break;
        case LIMITER_QUEUED:
            sample(out, f, &name, st.queued);
            break;
        case LIMITER_KEYS:
            sample(out, f, &name, st.keys);
            break;
        case LIMITER_PAUSED_KEYS:
            sample(out, f, &name, limiter_paused_keys(src->limiter, i, util_now_us()));
            break;
        }
    }
}

static void read_pause_decisions(struct evbuffer *out, const struct metrics_family *f,
                                 const struct metrics_source *src)
{
    (void)src;
    sample(out, f, NULL, limiter_pause_decisions());
}

/* zeros when the process has no interception state (a config check, a test) */
static void tls_stats_of(const struct metrics_source *src, struct tls_stats *out)
{
    memset(out, 0, sizeof *out);
    if (src->process->objects != NULL && src->process->objects->tls != NULL)
        tls_get_stats(src->process->objects->tls, out);
}

static void read_tls_intercepted(struct evbuffer *out, const struct metrics_family *f,
                                 const struct metrics_source *src)
{
    struct tls_stats tls;
    tls_stats_of(src, &tls);
    sample(out, f, NULL, tls.handshakes_started);
}

static void read_tls_leaf_cache(struct evbuffer *out, const struct metrics_family *f,
                                const struct metrics_source *src)
{
    struct tls_stats tls;
    tls_stats_of(src, &tls);
    sample(out, f, (const char *const[]){"hit"}, tls.leaf_cache_hits);
    sample(out, f, (const char *const[]){"miss"}, tls.leaf_cache_misses);
}

static void read_workers(struct evbuffer *out, const struct metrics_family *f,
                         const struct metrics_source *src)
{
    sample(out, f, NULL, src->worker_count);
}

static void read_reloads(struct evbuffer *out, const struct metrics_family *f,
                         const struct metrics_source *src)
{
    sample(out, f, (const char *const[]){"ok"}, src->process->reloads_ok);
    sample(out, f, (const char *const[]){"failed"}, src->process->reloads_failed);
}

/* f->field: offset into struct metrics_process of a uint64_t */
static void read_process(struct evbuffer *out, const struct metrics_family *f,
                         const struct metrics_source *src)
{
    sample(out, f, NULL, *(const uint64_t *)((const char *)src->process + f->field));
}

static void read_last_reload_ok(struct evbuffer *out, const struct metrics_family *f,
                                const struct metrics_source *src)
{
    sample(out, f, NULL, src->process->last_reload_ok != 0);
}

/* What this binary was built with: dashboards tell rollouts apart, alerts ask for a feature. TLS
 * interception is always compiled in (configure requires OpenSSL and libevent_openssl). */
static void read_build_info(struct evbuffer *out, const struct metrics_family *f,
                            const struct metrics_source *src)
{
    (void)src;
    static const char features[] = "tls_intercept"
#ifdef HAVE_HIREDIS
                                   ",hiredis"
#endif
#ifdef HAVE_LIBSYSTEMD
                                   ",systemd"
#endif
        ;
    sample(out, f, (const char *const[]){PACKAGE_VERSION, features}, 1);
}

static void read_histogram(struct evbuffer *out, const struct metrics_family *f,
                           const struct metrics_source *src);

/* ---- the table ------------------------------------------------------------------------------- */

#define ROW(name_, type_, help_, read_, field_, ...)                                               \
    {                                                                                              \
        .name = name_, .type = type_, .help = help_, .labels = {__VA_ARGS__}, .read = read_,       \
        .field = field_                                                                            \
    }
#define NO_LABELS NULL

enum histogram_kind { HISTOGRAM_TOTAL, HISTOGRAM_WAIT, HISTOGRAM_UPSTREAM, HISTOGRAM_KINDS };

static const struct metrics_family families[] = {
    ROW("rlproxy_limiter_decisions_total", METRICS_COUNTER,
        "Rate-limit decisions by rule: admitted at once, delayed (held), rejected (429); with "
        "enforce: false, would_delay and would_reject (let through at once).",
        read_limiter, LIMITER_DECISIONS, "rule", "decision"),
    ROW("rlproxy_limiter_queued", METRICS_GAUGE, "Requests held by a delay rule now.", read_limiter,
        LIMITER_QUEUED, "rule"),
    ROW("rlproxy_limiter_keys", METRICS_GAUGE, "Windows (distinct keys) kept now, by rule.",
        read_limiter, LIMITER_KEYS, "rule"),
    ROW("rlproxy_requests_total", METRICS_COUNTER, "Requests whose head was parsed.", read_sum,
        FIELD(requests), NO_LABELS),
    ROW("rlproxy_responses_total", METRICS_COUNTER,
        "Responses by status class; class=\"aborted\" when the exchange ended without one.",
        read_responses, FIELD(responses_by_class), "class"),
    ROW("rlproxy_client_bytes_total", METRICS_COUNTER,
        "Body bytes from clients (in) and to clients (out), tunnels included.", read_client_bytes,
        FIELD(bytes_from_clients), "direction"),
    ROW("rlproxy_connections_accepted_total", METRICS_COUNTER, "Client connections accepted.",
        read_sum, FIELD(connections_accepted), NO_LABELS),
    ROW("rlproxy_connections_handed_over_total", METRICS_COUNTER,
        "Client connections accepted by a worker that held more than the least-loaded one, and "
        "handed over to it.",
        read_sum, FIELD(connections_handed_over), NO_LABELS),
    ROW("rlproxy_worker_connections", METRICS_GAUGE,
        "Client connections and tunnels open now, by worker.", read_worker_connections, 0,
        "worker"),
    ROW("rlproxy_open_connections", METRICS_GAUGE,
        "Client connections open now (tunnels excluded).", read_sum, FIELD(open_connections),
        NO_LABELS),
    ROW("rlproxy_idle_connections", METRICS_GAUGE,
        "Open client connections idle long enough to hold no buffers (included in "
        "rlproxy_open_connections).",
        read_sum, FIELD(idle_connections), NO_LABELS),
    ROW("rlproxy_tunnels_total", METRICS_COUNTER, "CONNECT tunnels established.", read_sum,
        FIELD(tunnels_opened), NO_LABELS),
    ROW("rlproxy_open_tunnels", METRICS_GAUGE, "CONNECT tunnels open now.", read_sum,
        FIELD(open_tunnels), NO_LABELS),
    ROW("rlproxy_upstream_transfers", METRICS_GAUGE,
        "Upstream transfers in progress (requests and tunnel connects).", read_sum,
        FIELD(upstream_transfers), NO_LABELS),
    ROW("rlproxy_retries_total", METRICS_COUNTER,
        "Upstream attempts beyond the first (retries), over all requests.", read_sum,
        FIELD(retries), NO_LABELS),
    ROW("rlproxy_upstream_paused_keys", METRICS_GAUGE,
        "Keys of a rule held now by what their origin said: a 429/503's Retry-After, or a quota it announced as spent (upstream_limits: follow).",
        read_limiter, LIMITER_PAUSED_KEYS, "rule"),
    ROW("rlproxy_upstream_pause_decisions_total", METRICS_COUNTER,
        "Requests held or refused because their origin asked for a pause or said their key's quota was spent.",
        read_pause_decisions, 0, NO_LABELS),
    ROW("rlproxy_shared_decisions_total", METRICS_COUNTER,
        "Decisions of shared (Redis) rules: admitted, delayed, rejected, error (shared.on_error "
        "applied).",
        read_shared_decisions, FIELD(shared_admitted), "outcome"),
    ROW("rlproxy_shared_redis_up", METRICS_GAUGE,
        "Workers connected to shared.redis (0 when none is configured).", read_shared_up,
        FIELD(shared_connected), NO_LABELS),
    ROW("rlproxy_tls_intercepted_total", METRICS_COUNTER,
        "CONNECT tunnels opened for TLS interception (tls_intercept.hosts).", read_tls_intercepted,
        0, NO_LABELS),
    ROW("rlproxy_tls_leaf_cache_total", METRICS_COUNTER,
        "Leaf certificate look-ups by result: hit (cached) or miss (minted).", read_tls_leaf_cache,
        0, "result"),
    ROW("rlproxy_workers", METRICS_GAUGE, "Worker threads.", read_workers, 0, NO_LABELS),
    ROW("rlproxy_config_reloads_total", METRICS_COUNTER, "Configuration reloads by result.",
        read_reloads, 0, "result"),
    ROW("rlproxy_start_time_seconds", METRICS_GAUGE, "Start time of the process (Unix time).",
        read_process, offsetof(struct metrics_process, start_time_unix), NO_LABELS),
    ROW("rlproxy_config_last_reload_success", METRICS_GAUGE,
        "1 when the last configuration load (start-up or reload) took effect, 0 when it failed.",
        read_last_reload_ok, 0, NO_LABELS),
    ROW("rlproxy_config_last_reload_success_timestamp_seconds", METRICS_GAUGE,
        "When the configuration last loaded successfully (Unix time).", read_process,
        offsetof(struct metrics_process, last_reload_ok_time_unix), NO_LABELS),
    ROW("rlproxy_build_info", METRICS_GAUGE,
        "Always 1: the version and the optional features compiled in (tls_intercept, hiredis, "
        "systemd).",
        read_build_info, 0, "version", "features"),
    ROW("rlproxy_request_duration_seconds", METRICS_HISTOGRAM,
        "Requests by rule (rule=\"\" when none matched): from the arrival of the head to the end "
        "of the response, waits and retries included.",
        read_histogram, HISTOGRAM_TOTAL, "rule"),
    ROW("rlproxy_limiter_wait_seconds", METRICS_HISTOGRAM,
        "Requests by rule: time held by the limiter or an origin's pause before going upstream "
        "(0 when admitted at once).",
        read_histogram, HISTOGRAM_WAIT, "rule"),
    ROW("rlproxy_upstream_duration_seconds", METRICS_HISTOGRAM,
        "Requests that reached an upstream, by rule: from the start of the last attempt's "
        "transfer to its end.",
        read_histogram, HISTOGRAM_UPSTREAM, "rule"),
};

size_t metrics_family_count(void) { return sizeof families / sizeof families[0]; }

const struct metrics_family *metrics_family(size_t index)
{
    return index < metrics_family_count() ? &families[index] : NULL;
}

const char *metrics_type_name(enum metrics_type type)
{
    static const char *const names[] = {"counter", "gauge", "histogram"};
    return (unsigned)type < 3 ? names[type] : "untyped";
}

void metrics_render(struct evbuffer *out, struct worker *const *workers, unsigned worker_count,
                    struct limiter *limiter, const struct metrics_process *process)
{
    struct worker_stats_snapshot *stats = calloc(worker_count ? worker_count : 1, sizeof *stats);
    if (stats == NULL)
        worker_count = 0; /* out of memory: the families render, per-worker samples as zero */
    static struct worker_stats_snapshot none;
    for (unsigned i = 0; i < worker_count; i++)
        worker_stats_read(workers[i], &stats[i]);
    struct metrics_source src = {workers, worker_count, limiter, process,
                                 stats != NULL ? stats : &none};
    for (size_t i = 0; i < metrics_family_count(); i++) {
        const struct metrics_family *f = &families[i];
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                            metrics_type_name(f->type));
        f->read(out, f, &src);
    }
    free(stats);
}

void metrics_process_started(struct metrics_process *process)
{
    process->start_time_unix = (uint64_t)time(NULL);
    process->last_reload_ok = 1;
    process->last_reload_ok_time_unix = process->start_time_unix;
}

void metrics_count_reload(struct metrics_process *process, int ok)
{
    if (ok) {
        process->reloads_ok++;
        process->last_reload_ok_time_unix = (uint64_t)time(NULL);
    } else {
        process->reloads_failed++;
    }
    process->last_reload_ok = ok != 0;
}

/* ---- histograms ------------------------------------------------------------------------------ */

#define BUCKETS 15 /* finite bounds; one more bucket counts what is above the last (+Inf) */
static const uint64_t bucket_bounds_us[BUCKETS] = {1000,    2500,    5000,     10000,    25000,
                                                   50000,   100000,  250000,   500000,   1000000,
                                                   2500000, 5000000, 10000000, 30000000, 60000000};
static const char *const bucket_labels[BUCKETS + 1] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
    "0.5",   "1",      "2.5",   "5",    "10",    "30",   "60",  "+Inf"};

/* Counts per bucket, not cumulative: an observation is one atomic add; render accumulates */
struct histogram {
    _Atomic uint64_t buckets[BUCKETS + 1];
    _Atomic uint64_t sum_us;
};
struct rule_histograms {
    struct histogram kinds[HISTOGRAM_KINDS];
};
/* Slot 0: no rule; slot i + 1: rule i. Written only by the worker's thread (allocation), read by
 * the main thread. Slots are freed only when every worker was joined. */
struct worker_histograms {
    _Atomic(struct rule_histograms *) slots[METRICS_RULES_MAX + 1];
};

struct metrics_histograms {
    unsigned worker_count;
    struct worker_histograms per_worker[]; /* by worker_index */
};

struct metrics_histograms *metrics_histograms_new(unsigned worker_count)
{
    struct metrics_histograms *h =
        calloc(1, sizeof *h + (worker_count ? worker_count : 1) * sizeof h->per_worker[0]);
    if (h != NULL)
        h->worker_count = worker_count;
    return h;
}

void metrics_histograms_free(struct metrics_histograms *h)
{
    if (h == NULL)
        return;
    for (unsigned w = 0; w < h->worker_count; w++)
        for (size_t s = 0; s <= METRICS_RULES_MAX; s++)
            free(atomic_load(&h->per_worker[w].slots[s]));
    free(h);
}

static void histogram_add(struct histogram *h, uint64_t value_us)
{
    unsigned b = 0;
    while (b < BUCKETS && value_us > bucket_bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, value_us, memory_order_relaxed);
}

void metrics_observe_request(struct worker *w, int rule_index, uint64_t total_us, uint64_t wait_us,
                             uint64_t upstream_us)
{
    unsigned id = worker_index(w);
    struct metrics_histograms *h = worker_process(w)->histograms;
    if (h == NULL || id >= h->worker_count || rule_index < -1 || rule_index >= METRICS_RULES_MAX)
        return;
    _Atomic(struct rule_histograms *) *slot = &h->per_worker[id].slots[rule_index + 1];
    struct rule_histograms *rh = atomic_load_explicit(slot, memory_order_acquire);
    if (rh == NULL) {
        rh = calloc(1, sizeof *rh);
        if (rh == NULL)
            return; /* out of memory: this observation is lost, nothing else */
        atomic_store_explicit(slot, rh, memory_order_release);
    }
    histogram_add(&rh->kinds[HISTOGRAM_TOTAL], total_us);
    histogram_add(&rh->kinds[HISTOGRAM_WAIT], wait_us);
    if (upstream_us != METRICS_NOT_MEASURED)
        histogram_add(&rh->kinds[HISTOGRAM_UPSTREAM], upstream_us);
}

static int same_rule_names(const struct limiter *a, const struct limiter *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    if (limiter_rule_count(a) != limiter_rule_count(b))
        return 0;
    for (size_t i = 0; i < limiter_rule_count(a); i++)
        if (strcmp(limiter_rule(a, i)->name, limiter_rule(b, i)->name) != 0)
            return 0;
    return 1;
}

/* Zeroing races with workers adding: an observation made during the reset may survive it. That is
 * one request, against labels that would otherwise name the wrong rule for good. */
void metrics_rules_reloaded(struct metrics_histograms *h, const struct limiter *previous,
                            const struct limiter *next)
{
    if (h == NULL || same_rule_names(previous, next))
        return;
    for (unsigned w = 0; w < h->worker_count; w++)
        for (size_t s = 0; s <= METRICS_RULES_MAX; s++) {
            struct rule_histograms *rh = atomic_load(&h->per_worker[w].slots[s]);
            if (rh == NULL)
                continue;
            for (int k = 0; k < HISTOGRAM_KINDS; k++) {
                for (int b = 0; b <= BUCKETS; b++)
                    atomic_store(&rh->kinds[k].buckets[b], 0);
                atomic_store(&rh->kinds[k].sum_us, 0);
            }
        }
}

/* One rule's histogram summed over the workers, cumulative as the format wants */
static void render_histogram(struct evbuffer *out, const struct metrics_family *f,
                             const struct metrics_histograms *hs, size_t slot, const char *rule)
{
    uint64_t counts[BUCKETS + 1] = {0}, sum_us = 0;
    for (unsigned w = 0; w < hs->worker_count; w++) {
        struct rule_histograms *rh = atomic_load(&hs->per_worker[w].slots[slot]);
        if (rh == NULL)
            continue;
        struct histogram *h = &rh->kinds[f->field];
        for (int b = 0; b <= BUCKETS; b++)
            counts[b] += atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
        sum_us += atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    }
    const char *names[2] = {"rule", "le"};
    const char *values[2] = {rule, NULL};
    char text[32];
    uint64_t cumulative = 0;
    for (int b = 0; b <= BUCKETS; b++) {
        cumulative += counts[b];
        values[1] = bucket_labels[b];
        snprintf(text, sizeof text, "%" PRIu64, cumulative);
        sample_labels(out, f, "_bucket", names, values, text);
    }
    const char *rule_only[2] = {"rule", NULL};
    snprintf(text, sizeof text, "%" PRIu64 ".%06" PRIu64, sum_us / 1000000, sum_us % 1000000);
    sample_labels(out, f, "_sum", rule_only, values, text);
    snprintf(text, sizeof text, "%" PRIu64, cumulative);
    sample_labels(out, f, "_count", rule_only, values, text);
}

/* Every current rule and rule="", observed or not: a series that appears only after its first
 * request makes rate() miss that request. */
static void read_histogram(struct evbuffer *out, const struct metrics_family *f,
                           const struct metrics_source *src)
{
    const struct metrics_histograms *hs =
        src->process->objects != NULL ? src->process->objects->histograms : NULL;
    if (hs == NULL)
        return;
    render_histogram(out, f, hs, 0, "");
    size_t rules = src->limiter != NULL ? limiter_rule_count(src->limiter) : 0;
    for (size_t i = 0; i < rules && i < METRICS_RULES_MAX; i++)
        render_histogram(out, f, hs, i + 1, limiter_rule(src->limiter, i)->name);
}
