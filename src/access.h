/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* access.h — who may use the proxy and where it may go: client address allow list and CONNECT
 * ports, destination policy (pure functions over a config), and the per-client connection counts. */
#ifndef RLPROXY_ACCESS_H
#define RLPROXY_ACCESS_H

#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "http.h"

int access_client_allowed(const struct config *config, const struct sockaddr *client);
int access_connect_port_allowed(const struct config *config, unsigned port);
/* destinations.allow_ports (empty: any port). */
int access_destination_port_allowed(const struct config *config, unsigned port);
/* destinations.deny against the host as written (names, and address literals against blocks).
 * The address actually connected to is checked again by upstream.c. */
int access_destination_denied(const struct config *config, const char *host);
/* The client checks of a request head: its address (access.allow: 403) and a Via loop (508).
 * 0, or the status with why. */
int access_check_client(const struct config *config, const struct sockaddr *client,
                        const struct http_request *r, char *why, size_t why_len);
/* The 400 text for a request in origin form: how to use a proxy, with our address (fd's). */
void access_explain_origin_form(int fd, char *why, size_t why_len);
/* The destination checks of a request head (allowed ports, deny list, CONNECT ports): 0 when it
 * may go, else the status to answer (403) with why in `why`. */
int access_check_destination(const struct config *config, const struct http_request *r,
                             char *why, size_t why_len);
/* 1 when addr is in one of the deny list's address blocks. */
int access_address_denied(const struct config *config, const struct sockaddr *addr);

/* access.max_connections_per_client: connections per client address, one table per process
 * (server.c makes it), thread-safe. Take a slot for this client address (0 when over the cap),
 * give it back when the connection (or its tunnel) closes. */
struct client_slots;
struct client_slots *access_client_slots_new(void);
void access_client_slots_free(struct client_slots *slots);
int access_client_slot_take(struct client_slots *slots, const struct sockaddr *client,
                            uint32_t max);
void access_client_slot_give(struct client_slots *slots, const struct sockaddr *client);

#endif
