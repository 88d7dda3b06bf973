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

#include "access.h"
#include "accesslog.h"
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
    struct tunnels *set;
    struct tunnel *prev, *next;
    struct side client, origin;
    struct tunnel_info info;
    struct event *idle_timer;
    uint64_t last_activity_ms;
    uint64_t idle_ms;
    size_t buffer_size;
};

struct tunnels {
    struct worker *worker;
    struct tunnel *first;
};

struct tunnels *tunnels_new(struct worker *w)
{
    struct tunnels *set = calloc(1, sizeof *set);
    if (set != NULL)
        set->worker = w;
    return set;
}

static void log_tunnel(struct tunnel *t)
{
    uint64_t total = util_now_ms() - t->info.start_ms;
    struct accesslog_entry e = {
        .client = t->info.client,
        .user = t->info.user,
        .method = "CONNECT",
        .method_len = 7,
        .target = t->info.target,
        .target_len = strlen(t->info.target),
        .status = 200,
        .bytes_in = t->client.bytes,
        .bytes_out = t->origin.bytes,
        .total_ms = total,
        .upstream_ms = t->info.connect_ms,
        .wait_ms = t->info.wait_ms,
        .attempts = 1,
        .verdict = t->info.verdict,
        .rule = t->info.rule[0] != '\0' ? t->info.rule : NULL,
        .paused = t->info.paused,
    };
    accesslog_write(worker_config(t->set->worker)->access_format, &e);
}

static void tunnel_free(struct tunnel *t)
{
    struct worker *w = t->set->worker;
    log_tunnel(t);
    worker_count_response(w, 200, t->client.bytes, t->origin.bytes);
    if (t->client.bev != NULL)
        bufferevent_free(t->client.bev);
    access_client_slot_give(worker_process(w)->client_slots,
                            (const struct sockaddr *)&t->info.client_addr);
    limiter_flight_end(&t->info.flight, util_now_us());
    if (t->origin.bev != NULL)
        bufferevent_free(t->origin.bev);
    if (t->idle_timer != NULL)
        event_free(t->idle_timer);
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        t->set->first = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    worker_tunnel_removed(w);
    free(t);
}

void tunnels_close_all(struct tunnels *set)
{
    while (set->first != NULL)
        tunnel_free(set->first);
}

void tunnels_free(struct tunnels *set)
{
    if (set == NULL)
        return;
    tunnels_close_all(set);
    free(set);
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

int tunnel_start(struct tunnels *set, struct bufferevent *client, int upstream_fd,
                 const struct tunnel_info *info)
{
    struct worker *w = set->worker;
    const struct config *config = worker_config(w);
    struct tunnel *t = calloc(1, sizeof *t);
    struct bufferevent *origin =
        bufferevent_socket_new(worker_base(w), upstream_fd, BEV_OPT_CLOSE_ON_FREE);
    if (t == NULL || origin == NULL) {
        struct limiter_flight flight = info->flight;
        limiter_flight_end(&flight, util_now_us());
        free(t);
        if (origin != NULL)
            bufferevent_free(origin);
        else
            evutil_closesocket(upstream_fd);
        bufferevent_free(client);
        return -1;
    }
    t->set = set;
    t->info = *info;
    t->client.bev = client;
    t->origin.bev = origin;
    t->buffer_size = config->buffer_size;
    t->idle_ms = config->tunnel_idle_timeout_ms;
    t->last_activity_ms = util_now_ms();
    t->idle_timer = evtimer_new(worker_base(w), on_idle_check, t);
    t->next = set->first;
    if (set->first != NULL)
        set->first->prev = t;
    set->first = t;
    worker_tunnel_added(w);
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
