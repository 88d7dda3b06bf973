/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* source_addresses.c — LD_PRELOAD shim for bench/run: gives each TCP connection a program opens to
 * 127.0.0.0/8 its own loopback source address, so one wrk process looks like many clients (wrk has
 * no option to choose a source address). It only binds sockets before connect(); it must not touch
 * anything else a program does.
 *
 * SOURCE_ADDRESSES=N (1..250): connections take 127.0.0.10 .. 127.0.0.(9+N) in turn. Unset or 0:
 * the shim does nothing. A bind that fails makes that connect() fail with bind's errno, once
 * reported on stderr, so a run never silently falls back to one address. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*connect_function)(int, const struct sockaddr *, socklen_t);

static atomic_uint next_address;

int connect(int fd, const struct sockaddr *address, socklen_t length)
{
    static connect_function real_connect;
    if (real_connect == NULL)
        real_connect = (connect_function)dlsym(RTLD_NEXT, "connect");
    const char *count_text = getenv("SOURCE_ADDRESSES");
    int count = count_text != NULL ? atoi(count_text) : 0;
    if (count <= 0 || count > 250 || address == NULL || address->sa_family != AF_INET ||
        length < (socklen_t)sizeof(struct sockaddr_in))
        return real_connect(fd, address, length);
    const struct sockaddr_in *target = (const struct sockaddr_in *)address;
    if ((ntohl(target->sin_addr.s_addr) >> 24) != 127)
        return real_connect(fd, address, length);
    unsigned turn = atomic_fetch_add(&next_address, 1) % (unsigned)count;
    struct sockaddr_in source;
    memset(&source, 0, sizeof source);
    source.sin_family = AF_INET;
    source.sin_addr.s_addr = htonl((127u << 24) | (10u + turn));
    if (bind(fd, (const struct sockaddr *)&source, sizeof source) != 0) {
        int saved = errno;
        static atomic_int reported;
        if (atomic_exchange(&reported, 1) == 0)
            fprintf(stderr, "source_addresses: bind to 127.0.0.%u failed: %s\n", 10u + turn,
                    strerror(saved));
        errno = saved;
        return -1;
    }
    return real_connect(fd, address, length);
}
