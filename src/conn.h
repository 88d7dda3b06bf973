/* conn.h — one client connection: reads requests (llhttp via http.c), checks them, forwards them
 * through upstream.c, streams the response back with flow control both ways, and hands CONNECT
 * requests to tunnel.c once the upstream socket is open. States:
 *   READ_HEAD -> [WAIT_SLOT] -> [WAIT_ADMIT] -> FORWARD -> (READ_HEAD on keep-alive) | CLOSING
 *   READ_HEAD -> TUNNEL_CONNECT -> (handed to tunnel.c) | CLOSING
 * conn_set_state() makes every transition. Lives and dies on its worker's thread. */
#ifndef RLPROXY_CONN_H
#define RLPROXY_CONN_H

#include <event2/util.h>
#include <sys/socket.h>

struct worker;
struct conn;

void conn_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *addr, int addr_len);
/* Draining: close now if idle, else after the current response. */
void conn_drain(struct conn *c);
void conn_free(struct conn *c);
/* Closes every idle connection folded into a sleeper (draining, stopping). */
void conn_close_sleepers(struct worker *w);
struct conn *conn_next(struct conn *c);
/* Starts requests that wait for an upstream slot while the worker is under max_inflight. */
void conn_start_waiting(struct worker *w);

#endif
