/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* splice_relay.c — the reference relay of bench/tunnel: a plain TCP relay that moves bytes with
 * splice(2) through a pipe, never copying them to user space, so rlproxy's opaque tunnels can be
 * compared with the cheapest relay Linux offers. It owns nothing but its sockets: no HTTP, no
 * limits, no timeouts; a benchmark tool, not a server for anything else.
 *
 * usage: splice_relay LISTEN_PORT TARGET_IPV4 TARGET_PORT
 * Listens on 127.0.0.1:LISTEN_PORT; each accepted connection gets a connection to the target and
 * two threads, one per direction, each splicing socket -> pipe -> socket until end of stream
 * (then it half-closes the other side). Runs until killed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* a pipe holds 64 KiB by default: one splice moves at most that much */
#define SPLICE_CHUNK (1 << 16)

struct pair {
    int client_fd, target_fd;
    atomic_int directions_left;
};

struct direction {
    struct pair *pair;
    int from_fd, to_fd;
};

static void pair_release(struct pair *pair)
{
    if (atomic_fetch_sub(&pair->directions_left, 1) == 1) {
        close(pair->client_fd);
        close(pair->target_fd);
        free(pair);
    }
}

static void *relay_direction(void *argument)
{
    struct direction *d = argument;
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        shutdown(d->to_fd, SHUT_WR);
        pair_release(d->pair);
        free(d);
        return NULL;
    }
    for (;;) {
        ssize_t in = splice(d->from_fd, NULL, pipe_fds[1], NULL, SPLICE_CHUNK, SPLICE_F_MOVE);
        if (in < 0 && errno == EINTR)
            continue;
        if (in <= 0)
            break;
        while (in > 0) {
            ssize_t out = splice(pipe_fds[0], NULL, d->to_fd, NULL, (size_t)in, SPLICE_F_MOVE);
            if (out < 0 && errno == EINTR)
                continue;
            if (out <= 0)
                goto done;
            in -= out;
        }
    }
done:
    shutdown(d->to_fd, SHUT_WR);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    pair_release(d->pair);
    free(d);
    return NULL;
}

static int start_direction(struct pair *pair, int from_fd, int to_fd)
{
    struct direction *d = malloc(sizeof *d);
    if (d == NULL)
        return -1;
    *d = (struct direction){.pair = pair, .from_fd = from_fd, .to_fd = to_fd};
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    pthread_t thread;
    int rc = pthread_create(&thread, &attributes, relay_direction, d);
    pthread_attr_destroy(&attributes);
    if (rc != 0) {
        free(d);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: splice_relay LISTEN_PORT TARGET_IPV4 TARGET_PORT\n");
        return 2;
    }
    struct sockaddr_in listen_address = {.sin_family = AF_INET,
                                         .sin_port = htons((uint16_t)atoi(argv[1])),
                                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in target = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &target.sin_addr) != 1) {
        fprintf(stderr, "splice_relay: '%s' is not an IPv4 address\n", argv[2]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (listener < 0 ||
        bind(listener, (struct sockaddr *)&listen_address, sizeof listen_address) != 0 ||
        listen(listener, 4096) != 0) {
        perror("splice_relay: listen");
        return 1;
    }
    for (;;) {
        int client_fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (client_fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("splice_relay: accept");
            return 1;
        }
        int target_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (target_fd < 0 || connect(target_fd, (struct sockaddr *)&target, sizeof target) != 0) {
            perror("splice_relay: connect to the target");
            close(client_fd);
            if (target_fd >= 0)
                close(target_fd);
            continue;
        }
        setsockopt(client_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(target_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct pair *pair = malloc(sizeof *pair);
        if (pair == NULL) {
            close(client_fd);
            close(target_fd);
            continue;
        }
        pair->client_fd = client_fd;
        pair->target_fd = target_fd;
        atomic_init(&pair->directions_left, 2);
        if (start_direction(pair, client_fd, target_fd) != 0) {
            shutdown(target_fd, SHUT_WR);
            pair_release(pair); /* this direction never ran */
        }
        if (start_direction(pair, target_fd, client_fd) != 0) {
            shutdown(client_fd, SHUT_WR);
            pair_release(pair);
        }
    }
}
