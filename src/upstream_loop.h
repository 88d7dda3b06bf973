/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* upstream_loop.h — the libevent<->libcurl multi glue of one worker (the pattern of curl's
 * docs/examples/multi-event.c): owns the CURLM, the socket watches curl asks for and the one timer
 * curl wants. The only caller of curl_multi_socket_action and curl_multi_info_read. Knows nothing
 * about transfers: a finished easy handle goes to the done function its owner (upstream.c) gave. */
#ifndef RLPROXY_UPSTREAM_LOOP_H
#define RLPROXY_UPSTREAM_LOOP_H

#include <curl/curl.h>
#include <event2/event.h>
#include <stdint.h>

struct upstream_loop;

/* Called from the loop's libevent callbacks (never from inside curl's) for each transfer that
 * ended; it may remove and free the handle. */
typedef void (*upstream_loop_done_fn)(CURL *easy, CURLcode result);

struct upstream_loop *upstream_loop_new(struct event_base *base, upstream_loop_done_fn done);
/* curl_multi_cleanup, which closes cached connections: free the transfers and easy handles first */
void upstream_loop_free(struct upstream_loop *l);
CURLM *upstream_loop_multi(const struct upstream_loop *l);

/* On every easy handle: sockets curl closes are unregistered first, so a reused fd number never
 * inherits a stale registration. */
void upstream_loop_watch_closes(struct upstream_loop *l, CURL *easy);
/* For CURLOPT_OPENSOCKETFUNCTION: a connection socket, kept registered while idle in curl's
 * connection cache. CURL_SOCKET_BAD on failure. */
curl_socket_t upstream_loop_open_socket(struct upstream_loop *l,
                                        const struct curl_sockaddr *address);
/* Connection sockets curl closed, ever: a transfer during which none closed has not resent. */
uint64_t upstream_loop_closes(const struct upstream_loop *l);

#endif
