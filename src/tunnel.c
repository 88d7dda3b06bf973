/* tunnel.c — CONNECT splice. Each direction moves whole evbuffer chains (no copies); a direction
 * whose output is over the high-water mark stops reading its source until the output drains to
 * half, so a slow reader pushes back on the fast writer through the kernel's socket buffers. */
#include "tunnel.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "access.h"
#include "log.h"
#include "util.h"
#include "worker.h"

struct side {
    struct bufferevent *bev;
    int eof;       /* no more input from this side */
    int shut;      /* we sent FIN to this side */
    uint64_t bytes; /* bytes read from this side */
};

struct tunnel {
    struct worker *worker;
    struct tunnel *prev, *next;
    struct side client, origin;
    struct tunnel_info info;
    struct event *idle_timer;
    uint64_t last_activity_ms;
    uint64_t idle_ms;
    size_t buffer_size;
};

struct tunnel *tunnel_next(struct tunnel *t) { return t->next; }

static void log_tunnel(struct tunnel *t)
{
    if (!log_access_enabled())
        return;
    char line[600], when[40];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t used = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + used, sizeof when - used, ".%03ldZ", now.tv_nsec / 1000000);
    uint64_t total = util_now_ms() - t->info.start_ms;
    int anonymous = strcmp(t->info.user, "-") == 0;
    int n;
    if (t->worker->config->access_format == ACCESS_FORMAT_JSON)
        n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"client\":\"%s\",\"user\":%s%s%s,\"method\":\"CONNECT\","
                     "\"target\":\"%s\",\"status\":200,\"bytes_in\":%" PRIu64
                     ",\"bytes_out\":%" PRIu64 ",\"total_ms\":%" PRIu64 ",\"upstream_ms\":%" PRIu64
                     ",\"limit\":\"%s\",\"wait_ms\":%" PRIu64 ",\"attempts\":1}",
                     when, t->info.client, anonymous ? "" : "\"", anonymous ? "null" : t->info.user,
                     anonymous ? "" : "\"", t->info.target, t->client.bytes, t->origin.bytes, total,
                     t->info.connect_ms, t->info.decision, t->info.wait_ms);
    else
        n = snprintf(line, sizeof line,
                     "%s %s %s \"CONNECT %s\" 200 %" PRIu64 " %" PRIu64 " total=%" PRIu64
                     "ms upstream=%" PRIu64 "ms limit=%s wait=%" PRIu64 "ms attempts=1",
                     when, t->info.client, t->info.user, t->info.target, t->client.bytes,
                     t->origin.bytes, total, t->info.connect_ms, t->info.decision, t->info.wait_ms);
    if (n > 0)
        log_access_line(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

void tunnel_free(struct tunnel *t)
{
    log_tunnel(t);
    worker_count_response(t->worker, 200, t->client.bytes, t->origin.bytes);
    if (t->client.bev != NULL)
        bufferevent_free(t->client.bev);
    access_client_slot_give((const struct sockaddr *)&t->info.client_addr);
    if (t->origin.bev != NULL)
        bufferevent_free(t->origin.bev);
    if (t->idle_timer != NULL)
        event_free(t->idle_timer);
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        t->worker->tunnels = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    worker_tunnel_removed(t->worker, t);
    free(t);
}

static struct side *side_of(struct tunnel *t, struct bufferevent *bev)
{
    return bev == t->client.bev ? &t->client : &t->origin;
}

static struct side *peer_of(struct tunnel *t, struct bufferevent *bev)
{
    return bev == t->client.bev ? &t->origin : &t->client;
}

/* When a side has sent EOF and everything it sent is written to its peer, pass the FIN on. */
static void maybe_shutdown(struct tunnel *t, struct side *from, struct side *to)
{
    if (!from->eof || to->shut || evbuffer_get_length(bufferevent_get_output(to->bev)) > 0)
        return;
    shutdown(bufferevent_getfd(to->bev), SHUT_WR);
    to->shut = 1;
}

static int finished(const struct tunnel *t)
{
    return t->client.eof && t->origin.eof && t->client.shut && t->origin.shut;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct tunnel *t = arg;
    struct side *from = side_of(t, bev), *to = peer_of(t, bev);
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(to->bev);
    from->bytes += evbuffer_get_length(in);
    evbuffer_add_buffer(out, in);
    t->last_activity_ms = util_now_ms();
    if (evbuffer_get_length(out) >= t->buffer_size)
        bufferevent_disable(bev, EV_READ); /* resumed in on_write when `to` drains */
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct tunnel *t = arg;
    struct side *to = side_of(t, bev), *from = peer_of(t, bev);
    t->last_activity_ms = util_now_ms();
    if (!from->eof)
        bufferevent_enable(from->bev, EV_READ);
    maybe_shutdown(t, from, to);
    if (finished(t))
        tunnel_free(t);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct tunnel *t = arg;
    struct side *from = side_of(t, bev), *to = peer_of(t, bev);
    if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING)) {
        on_read(bev, t); /* whatever arrived with the FIN */
        from->eof = 1;
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(to->bev, EV_WRITE, 0, 0); /* write cb when fully drained */
        maybe_shutdown(t, from, to);
        if (finished(t))
            tunnel_free(t);
        return;
    }
    tunnel_free(t); /* an error on either side ends both */
}

static void on_idle_check(evutil_socket_t fd, short what, void *arg)
{
    struct tunnel *t = arg;
    uint64_t idle = util_now_ms() - t->last_activity_ms;
    if (idle >= t->idle_ms) {
        log_info("tunnel %s -> %s idle for %" PRIu64 " ms, closing", t->info.client, t->info.target,
                 idle);
        tunnel_free(t);
        return;
    }
    struct timeval tv;
    util_ms_to_timeval(t->idle_ms - idle, &tv);
    evtimer_add(t->idle_timer, &tv);
}

int tunnel_start(struct worker *w, struct bufferevent *client, int upstream_fd,
                 const struct tunnel_info *info)
{
    struct tunnel *t = calloc(1, sizeof *t);
    struct bufferevent *origin = bufferevent_socket_new(w->base, upstream_fd, BEV_OPT_CLOSE_ON_FREE);
    if (t == NULL || origin == NULL) {
        free(t);
        if (origin != NULL)
            bufferevent_free(origin);
        else
            evutil_closesocket(upstream_fd);
        bufferevent_free(client);
        return -1;
    }
    t->worker = w;
    t->info = *info;
    t->client.bev = client;
    t->origin.bev = origin;
    t->buffer_size = w->config->buffer_size;
    t->idle_ms = w->config->tunnel_idle_timeout_ms;
    t->last_activity_ms = util_now_ms();
    t->idle_timer = evtimer_new(w->base, on_idle_check, t);
    t->next = w->tunnels;
    if (w->tunnels != NULL)
        w->tunnels->prev = t;
    w->tunnels = t;
    worker_tunnel_added(w, t);
    if (t->idle_timer == NULL) {
        tunnel_free(t);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        struct bufferevent *bev = i == 0 ? client : origin;
        bufferevent_set_timeouts(bev, NULL, NULL);
        bufferevent_setcb(bev, on_read, on_write, on_event, t);
        bufferevent_setwatermark(bev, EV_READ, 0, t->buffer_size);
        bufferevent_setwatermark(bev, EV_WRITE, t->buffer_size / 2, 0);
        bufferevent_enable(bev, EV_READ | EV_WRITE);
    }
    struct timeval tv;
    util_ms_to_timeval(t->idle_ms, &tv);
    evtimer_add(t->idle_timer, &tv);
    if (evbuffer_get_length(bufferevent_get_input(client)) > 0)
        on_read(client, t); /* bytes the client sent right behind its CONNECT */
    return 0;
}
