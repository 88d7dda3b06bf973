/* tunnel.h — a CONNECT tunnel: two bufferevents spliced together with watermarks (a side whose
 * peer is slow stops being read), an idle timeout, half-close, and one access-log line at the end.
 * Owns both sockets once started. */
#ifndef RLPROXY_TUNNEL_H
#define RLPROXY_TUNNEL_H

#include <event2/bufferevent.h>
#include <stdint.h>
#include <sys/socket.h>

struct worker;
struct tunnel;

struct tunnel_info {
    char client[64];
    char target[300];
    uint64_t start_ms;
    uint64_t connect_ms; /* time to open the upstream connection */
    uint64_t wait_ms;    /* held by the limiter */
    char decision[96];   /* the limiter's, as in the access log */
    char user[256];
    struct sockaddr_storage client_addr; /* its access.max_connections_per_client slot */
};

/* Takes over `client` (a bufferevent whose input may already hold bytes for the origin) and
 * `upstream_fd`. Returns 0, or -1 having freed both. */
int tunnel_start(struct worker *w, struct bufferevent *client, int upstream_fd,
                 const struct tunnel_info *info);
void tunnel_free(struct tunnel *t);
struct tunnel *tunnel_next(struct tunnel *t);

#endif
