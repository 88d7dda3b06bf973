/* access.c — see access.h. */
#include "access.h"

int access_client_allowed(const struct config *config, const struct sockaddr *client)
{
    for (size_t i = 0; i < config->access_allow_count; i++)
        if (cidr_contains(&config->access_allow[i], client))
            return 1;
    return 0;
}

int access_connect_port_allowed(const struct config *config, unsigned port)
{
    for (size_t i = 0; i < config->connect_allowed_ports_count; i++)
        if (config->connect_allowed_ports[i] == port)
            return 1;
    return 0;
}
