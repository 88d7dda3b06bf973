/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* metrics.h — owns the table of metric families (name, type, help, labels, reader) that renders
 * /metrics in the Prometheus text format (0.0.4), and the per-worker request histograms. Reads
 * workers only through worker.h's accessors and atomics, so the admin endpoint can run on the main
 * thread while workers serve; it must not reach into struct worker or change what it reads. */
#ifndef RLPROXY_METRICS_H
#define RLPROXY_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct limiter;
struct worker;
struct metrics_histograms;
struct process;

/* Owned by server.c; read by the admin endpoint on the same (main) thread. */
struct metrics_process {
    uint64_t reloads_ok, reloads_failed;
    uint64_t start_time_unix;
    int last_reload_ok;                /* the last load (start-up or reload) took effect */
    uint64_t last_reload_ok_time_unix; /* wall clock of the last load that took effect */
    const struct process *objects; /* histograms and TLS counters (process.h); NULL: none */
};
/* At start-up: the first load counts as a successful one (as Prometheus's own gauge does). */
void metrics_process_started(struct metrics_process *process);
/* Where a reload's result is known: counts it and sets the last-reload gauges. */
void metrics_count_reload(struct metrics_process *process, int ok);

/* ---- the table ------------------------------------------------------------------------------- */
enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };
#define METRICS_LABELS_MAX 2
struct metrics_source; /* what a reader reads: private to metrics.c */
struct metrics_family {
    const char *name;
    enum metrics_type type;
    const char *help;
    const char *labels[METRICS_LABELS_MAX + 1]; /* NULL-terminated; histograms add "le" */
    void (*read)(struct evbuffer *out, const struct metrics_family *family,
                 const struct metrics_source *source);
    size_t field; /* for readers that sum one field of struct worker_stats_snapshot */
};
size_t metrics_family_count(void);
const struct metrics_family *metrics_family(size_t index); /* NULL past the end */
const char *metrics_type_name(enum metrics_type type);     /* "counter", "gauge", "histogram" */

/* Every family in table order: one HELP and one TYPE line each, then its samples. `workers` is the
 * group server.c started; `limiter` the current rules (NULL: none). */
void metrics_render(struct evbuffer *out, struct worker *const *workers, unsigned worker_count,
                    struct limiter *limiter, const struct metrics_process *process);

/* ---- request histograms ----------------------------------------------------------------------
 * Per worker, per rule (slot 0 for requests that matched no rule, rendered as rule=""), three
 * histograms in seconds with the bounds .001 .0025 .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 30 60
 * +Inf. A worker allocates a rule's 408 bytes the first time it observes a request of that rule, so
 * memory is bounded by workers x rules actually used (rate_limits holds at most
 * METRICS_RULES_MAX rules; the option table's bound) plus an 8 KiB slot table per worker.
 * Slots are positions in the rule list: when a reload changes the list of rule names, every
 * histogram resets (a counter reset to Prometheus); requests in flight across that reload are
 * counted under the position their rule had. */
#define METRICS_RULES_MAX 1024
#define METRICS_NOT_MEASURED UINT64_MAX /* upstream_us of a request that never reached upstream */
/* Made by server.c before the workers start (struct process's histograms; NULL when out of
 * memory) and freed after they are joined. */
struct metrics_histograms;
struct metrics_histograms *metrics_histograms_new(unsigned worker_count);
void metrics_histograms_free(struct metrics_histograms *histograms);
/* server.c's reload, main thread: resets the histograms when the rule names changed. */
void metrics_rules_reloaded(struct metrics_histograms *histograms, const struct limiter *previous,
                            const struct limiter *next);
/* From w's own thread, once per finished request (where its access-log line is written), into
 * its process's histograms: rule_index in the request's rule list, or -1 when no rule matched. */
void metrics_observe_request(struct worker *w, int rule_index, uint64_t total_us, uint64_t wait_us,
                             uint64_t upstream_us);

#endif
