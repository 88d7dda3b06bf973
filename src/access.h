/* access.h — who may use the proxy and where it may go: client address allow list and CONNECT
 * ports. Pure functions over a config; later: proxy auth and destination policy. */
#ifndef RLPROXY_ACCESS_H
#define RLPROXY_ACCESS_H

#include <sys/socket.h>

#include "config.h"

int access_client_allowed(const struct config *config, const struct sockaddr *client);
int access_connect_port_allowed(const struct config *config, unsigned port);

#endif
