/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* sleeper.h — idle keep-alive connections folded to their socket. A connection waiting for its
 * next request needs none of a request's state (bufferevent, parser, timers, buffers: ~4 KB);
 * folded into a sleeper it is one event on the socket (readable, or the rest of its idle timeout)
 * and the client's address, ~200 bytes, kept in a pool (pool.h) so that it does not pin a page of
 * the freed state. When the client sends again the owner's wake function unfolds it. Owns the
 * sleepers and their sockets; knows nothing of struct conn. One set per worker, on its thread. */
#ifndef RLPROXY_SLEEPER_H
#define RLPROXY_SLEEPER_H

#include <event2/util.h>
#include <stdint.h>
#include <sys/socket.h>

struct worker;
struct sleepers;

/* The client sent again: take over fd (and the client's connection slot when has_client_slot).
 * 0, or -1 when it could not (the sleeper then closes fd and gives the slot back). */
typedef int (*sleeper_wake_fn)(void *arg, evutil_socket_t fd, const struct sockaddr *addr,
                               socklen_t addr_len, int has_client_slot);

struct sleepers *sleepers_new(struct worker *w, sleeper_wake_fn wake, void *arg);
void sleepers_free(struct sleepers *set); /* closes every sleeper */
/* 1 when fd now sleeps for at most timeout_ms (the set owns it then); 0, nothing changed, when it
 * cannot. */
int sleepers_add(struct sleepers *set, evutil_socket_t fd, const struct sockaddr *addr,
                 socklen_t addr_len, int has_client_slot, uint64_t timeout_ms);
void sleepers_close_all(struct sleepers *set);
size_t sleepers_count(const struct sleepers *set);

#endif
