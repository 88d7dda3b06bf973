/* access.h — who may use the proxy and where it may go: client address allow list and CONNECT
 * ports. Pure functions over a config; later: proxy auth and destination policy. */
#ifndef RLPROXY_ACCESS_H
#define RLPROXY_ACCESS_H

#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

int access_client_allowed(const struct config *config, const struct sockaddr *client);
int access_connect_port_allowed(const struct config *config, unsigned port);
/* destinations.allow_ports (empty: any port). */
int access_destination_port_allowed(const struct config *config, unsigned port);
/* destinations.deny against the host as written (names, and address literals against blocks).
 * The address actually connected to is checked again by upstream.c. */
int access_destination_denied(const struct config *config, const char *host);
/* 1 when addr is in one of the deny list's address blocks. */
int access_address_denied(const struct config *config, const struct sockaddr *addr);

/* access.max_connections_per_client: take a slot for this client address (0 when over the cap),
 * give it back when the connection (or its tunnel) closes. Process-wide, thread-safe. */
int access_client_slot_take(const struct sockaddr *client, uint32_t max);
void access_client_slot_give(const struct sockaddr *client);

#endif
