/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* access.c — see access.h. */
#include "access.h"

#include "http_response.h"
#include "util.h"

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int access_destination_port_allowed(const struct config *config, unsigned port)
{
    if (config->destinations_allow_ports_count == 0)
        return 1;
    for (size_t i = 0; i < config->destinations_allow_ports_count; i++)
        if (config->destinations_allow_ports[i] == port)
            return 1;
    return 0;
}

int access_destination_denied(const struct config *config, const char *host)
{
    return host_pattern_match(config->destinations_deny, config->destinations_deny_count, host);
}

int access_address_denied(const struct config *config, const struct sockaddr *addr)
{
    /* 0.0.0.0/8 and :: are "this host" when connected to: never a destination */
    if (addr->sa_family == AF_INET &&
        (((const unsigned char *)&((const struct sockaddr_in *)(const void *)addr)->sin_addr)[0]) == 0)
        return 1;
    if (addr->sa_family == AF_INET6 &&
        IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr))
        return 1;
    for (size_t i = 0; i < config->destinations_deny_count; i++) {
        const struct host_pattern *p = &config->destinations_deny[i];
        if (p->is_cidr && cidr_contains(&p->cidr, addr))
            return 1;
    }
    return 0;
}

int access_check_client(const struct config *config, const struct sockaddr *client,
                        const struct http_request *r, char *why, size_t why_len)
{
    if (!access_client_allowed(config, client)) {
        char text[64];
        util_format_sockaddr(client, text, sizeof text);
        snprintf(why, why_len, "client %s is not allowed to use this proxy (access.allow)", text);
        return 403;
    }
    if (http_via_has_ours(r)) {
        snprintf(why, why_len,
                 "request loop: this request already passed through this proxy (Via)");
        return 508;
    }
    return 0;
}

void access_explain_origin_form(int fd, char *why, size_t why_len)
{
    char local[64] = "127.0.0.1:3128";
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        util_format_sockaddr((struct sockaddr *)&ss, local, sizeof local);
    snprintf(why, why_len,
             "rlproxy is an HTTP proxy: send the full URL (absolute form), e.g. "
             "curl -x http://%s http://example.com/ or http_proxy=http://%s",
             local, local);
}

int access_check_destination(const struct config *config, const struct http_request *r,
                             char *why, size_t why_len)
{
    int connect = r->method == HTTP_CONNECT;
    unsigned port = r->target.port;
    if (!connect && r->target.scheme != HTTP_SCHEME_NONE &&
        !access_destination_port_allowed(config, port)) {
        snprintf(why, why_len, "port %u is not allowed (destinations.allow_ports)", port);
        return 403;
    }
    if ((r->target.scheme != HTTP_SCHEME_NONE || connect) &&
        access_destination_denied(config, r->target.host)) {
        snprintf(why, why_len, "destination %s is denied (destinations.deny)", r->target.host);
        return 403;
    }
    if (connect && !access_connect_port_allowed(config, port)) {
        snprintf(why, why_len, "CONNECT to port %u is not allowed (connect.allowed_ports)", port);
        return 403;
    }
    if (connect && !access_destination_port_allowed(config, port)) {
        snprintf(why, why_len, "port %u is not allowed (destinations.allow_ports)", port);
        return 403;
    }
    return 0;
}

/* Connections per client address: an open-addressing table of counts under one mutex (a few
 * instructions per accept and close). Entries whose count drops to 0 are kept as reusable. */
#define CLIENT_SLOTS 65536

struct client_slots {
    pthread_mutex_t lock;
    struct {
        uint8_t addr[16];
        uint32_t count;
        int used;
    } entries[CLIENT_SLOTS];
};

struct client_slots *access_client_slots_new(void)
{
    struct client_slots *slots = calloc(1, sizeof *slots);
    if (slots != NULL)
        pthread_mutex_init(&slots->lock, NULL);
    return slots;
}

void access_client_slots_free(struct client_slots *slots)
{
    if (slots == NULL)
        return;
    pthread_mutex_destroy(&slots->lock);
    free(slots);
}

static void client_key(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff; /* as an IPv4-mapped IPv6 address */
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

static size_t client_find(struct client_slots *slots, const uint8_t key[16], int create)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    size_t free_slot = CLIENT_SLOTS;
    for (size_t probe = 0; probe < CLIENT_SLOTS; probe++) {
        size_t i = (h + probe) % CLIENT_SLOTS;
        if (slots->entries[i].used && memcmp(slots->entries[i].addr, key, 16) == 0)
            return i;
        if (slots->entries[i].used && slots->entries[i].count == 0 && free_slot == CLIENT_SLOTS)
            free_slot = i;
        if (!slots->entries[i].used) {
            if (free_slot == CLIENT_SLOTS)
                free_slot = i;
            break;
        }
    }
    if (!create || free_slot == CLIENT_SLOTS)
        return CLIENT_SLOTS;
    slots->entries[free_slot].used = 1;
    slots->entries[free_slot].count = 0;
    memcpy(slots->entries[free_slot].addr, key, 16);
    return free_slot;
}

int access_client_slot_take(struct client_slots *slots, const struct sockaddr *client,
                            uint32_t max)
{
    uint8_t key[16];
    client_key(client, key);
    pthread_mutex_lock(&slots->lock);
    size_t i = client_find(slots, key, 1);
    int ok = i == CLIENT_SLOTS || max == 0 || slots->entries[i].count < max;
    if (ok && i != CLIENT_SLOTS)
        slots->entries[i].count++;
    pthread_mutex_unlock(&slots->lock);
    return ok;
}

void access_client_slot_give(struct client_slots *slots, const struct sockaddr *client)
{
    uint8_t key[16];
    client_key(client, key);
    pthread_mutex_lock(&slots->lock);
    size_t i = client_find(slots, key, 0);
    if (i != CLIENT_SLOTS && slots->entries[i].count > 0)
        slots->entries[i].count--;
    pthread_mutex_unlock(&slots->lock);
}
