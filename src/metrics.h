/* metrics.h — renders the workers' counters in the Prometheus text exposition format (0.0.4).
 * Reads only atomics, so the admin endpoint can run on the main thread while workers serve. */
#ifndef RLPROXY_METRICS_H
#define RLPROXY_METRICS_H

#include <stdint.h>

struct evbuffer;
struct limiter;
struct worker;

struct metrics_process {
    uint64_t reloads_ok, reloads_failed;
    uint64_t start_time_unix;
};

void metrics_render(struct evbuffer *out, struct worker *const *workers, unsigned worker_count,
                    struct limiter *limiter, const struct metrics_process *process);

#endif
