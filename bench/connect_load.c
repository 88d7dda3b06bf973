/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* connect_load.c — load generator for bench/intercept and bench/tunnel: GETs inside CONNECT
 * tunnels (optionally TLS inside them), which wrk cannot send. It owns its sockets and its
 * figures only: no timing here decides anything, the scripts read the RESULT line.
 *
 * usage: connect_load [-x PROXY_HOST:PORT] [-t] [-k CA_FILE] [-n] [-c CONNECTIONS]
 *                     [-d SECONDS] TARGET_HOST:PORT PATH
 *   -x  open each connection to the proxy and send CONNECT TARGET_HOST:PORT first; without -x
 *       connect to the target itself
 *   -t  TLS to the target (inside the tunnel), SNI and verification against TARGET_HOST
 *   -k  CA file to verify the target's certificate with (without it nothing is verified)
 *   -n  one request per connection: a new TCP connection, CONNECT and handshake for each request
 *       (no TLS session resumption), closed by us once the response is complete
 *   -c  connections kept busy at once [50];  -d  seconds to run [5]
 * Each connection sends one GET at a time (keep-alive unless -n) and reads the whole response
 * (Content-Length or chunked). Non-2xx answers and failed connections count as errors; a failed
 * connection is replaced.
 * Prints: RESULT requests=N errors=N connections=N duration_us=N bytes=N p50_us=N p99_us=N
 * (latency of each request from its first byte written, on an established connection; with -n
 * from the start of the connection). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum phase {
    PHASE_CONNECTING,
    PHASE_PROXY_WRITE,
    PHASE_PROXY_READ,
    PHASE_HANDSHAKE,
    PHASE_REQUEST_WRITE,
    PHASE_RESPONSE_HEAD,
    PHASE_RESPONSE_BODY,
};

enum body_kind { BODY_LENGTH, BODY_CHUNK_SIZE, BODY_CHUNK_DATA, BODY_CHUNK_CRLF, BODY_TRAILER };

struct connection {
    int fd;
    SSL *tls;
    enum phase phase;
    const char *out; /* bytes still to write in this phase */
    size_t out_left;
    char head[16384]; /* proxy reply or response head, then the body bytes read with it */
    size_t head_used;
    enum body_kind body;
    uint64_t body_left; /* BODY_LENGTH and BODY_CHUNK_DATA: bytes still expected */
    char line[256];     /* a chunk-size or trailer line being read */
    size_t line_used;
    int status;
    uint64_t request_start_us;
};

static struct {
    const char *proxy_host, *proxy_port, *target_host, *target_port, *path, *ca_file;
    int tls, one_request_per_connection, connections, seconds;
} options = {.connections = 50, .seconds = 5};

static struct addrinfo *connect_address;
static SSL_CTX *tls_context;
static int epoll_fd;
static char request_text[2048], connect_text[1024];
static size_t request_length, connect_length;
static uint64_t requests_done, errors, connections_opened, bytes_read;
static uint32_t *latencies_us;
static size_t latency_count, latency_capacity;
static int running = 1;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void die(const char *what)
{
    fprintf(stderr, "connect_load: %s\n", what);
    exit(2);
}

static void usage(void)
{
    die("usage: connect_load [-x PROXY_HOST:PORT] [-t] [-k CA_FILE] [-n] [-c CONNECTIONS] "
        "[-d SECONDS] TARGET_HOST:PORT PATH");
}

/* "host:port" (or "[v6]:port") into its parts; the string is modified */
static int split_host_port(char *text, const char **host, const char **port)
{
    char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text || colon[1] == '\0')
        return -1;
    *colon = '\0';
    *port = colon + 1;
    if (text[0] == '[' && colon[-1] == ']') {
        colon[-1] = '\0';
        text++;
    }
    *host = text;
    return 0;
}

static void record_latency(uint64_t start_us)
{
    if (latency_count == latency_capacity) {
        latency_capacity = latency_capacity ? latency_capacity * 2 : 65536;
        latencies_us = realloc(latencies_us, latency_capacity * sizeof *latencies_us);
        if (latencies_us == NULL)
            die("out of memory");
    }
    uint64_t elapsed = now_us() - start_us;
    latencies_us[latency_count++] = elapsed > UINT32_MAX ? UINT32_MAX : (uint32_t)elapsed;
}

static void set_interest(struct connection *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        die("epoll_ctl MOD failed");
}

static void close_connection(struct connection *c)
{
    if (c->tls != NULL) {
        SSL_free(c->tls);
        c->tls = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
    }
}

static void open_connection(struct connection *c)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(connect_address->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket() failed (raise ulimit -n?)");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    connections_opened++;
    c->request_start_us = now_us();
    c->phase = PHASE_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die("epoll_ctl ADD failed");
    if (connect(c->fd, connect_address->ai_addr, connect_address->ai_addrlen) != 0 &&
        errno != EINPROGRESS) {
        /* handled as a failed connection on the first event */
    }
}

static void fail_connection(struct connection *c)
{
    errors++;
    close_connection(c);
    if (running)
        open_connection(c);
}

/* Returns bytes read, 0 at end of stream, -1 when it would block (interest set), -2 on error */
static ssize_t transport_read(struct connection *c, char *buffer, size_t size)
{
    if (c->tls == NULL || c->phase < PHASE_HANDSHAKE) {
        ssize_t n = read(c->fd, buffer, size);
        if (n >= 0)
            return n;
        if (errno == EAGAIN || errno == EINTR) {
            set_interest(c, EPOLLIN);
            return -1;
        }
        return -2;
    }
    int n = SSL_read(c->tls, buffer, (int)size);
    if (n > 0)
        return n;
    switch (SSL_get_error(c->tls, n)) {
    case SSL_ERROR_WANT_READ:
        set_interest(c, EPOLLIN);
        return -1;
    case SSL_ERROR_WANT_WRITE:
        set_interest(c, EPOLLOUT);
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        return -2;
    }
}

/* Writes c->out; 1 when all is written, -1 when it would block, -2 on error */
static int transport_write(struct connection *c)
{
    while (c->out_left > 0) {
        ssize_t n;
        if (c->tls == NULL || c->phase < PHASE_HANDSHAKE) {
            n = write(c->fd, c->out, c->out_left);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    set_interest(c, EPOLLOUT);
                    return -1;
                }
                return -2;
            }
        } else {
            int w = SSL_write(c->tls, c->out, (int)c->out_left);
            if (w <= 0) {
                int e = SSL_get_error(c->tls, w);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    set_interest(c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
                    return -1;
                }
                return -2;
            }
            n = w;
        }
        c->out += n;
        c->out_left -= (size_t)n;
    }
    return 1;
}

static void start_request(struct connection *c)
{
    c->phase = PHASE_REQUEST_WRITE;
    c->out = request_text;
    c->out_left = request_length;
    c->head_used = 0;
    if (!options.one_request_per_connection)
        c->request_start_us = now_us();
}

static int start_tls(struct connection *c)
{
    c->tls = SSL_new(tls_context);
    if (c->tls == NULL || SSL_set_fd(c->tls, c->fd) != 1)
        return -1;
    struct in6_addr address;
    int literal = inet_pton(AF_INET, options.target_host, &address) == 1 ||
                  inet_pton(AF_INET6, options.target_host, &address) == 1;
    if (!literal)
        SSL_set_tlsext_host_name(c->tls, options.target_host);
    if (options.ca_file != NULL) {
        X509_VERIFY_PARAM *param = SSL_get0_param(c->tls);
        if (literal ? X509_VERIFY_PARAM_set1_ip_asc(param, options.target_host) != 1
                    : X509_VERIFY_PARAM_set1_host(param, options.target_host, 0) != 1)
            return -1;
    }
    SSL_set_connect_state(c->tls);
    c->phase = PHASE_HANDSHAKE;
    return 0;
}

/* A complete response: count it, then the next request on this connection or a new one */
static void response_done(struct connection *c)
{
    if (running) {
        requests_done++;
        if (c->status < 200 || c->status > 299)
            errors++;
        record_latency(c->request_start_us);
    }
    if (options.one_request_per_connection) {
        close_connection(c);
        if (running)
            open_connection(c);
        return;
    }
    start_request(c);
}

/* Consumes body bytes; returns 1 when the response is complete, 0 for more, -1 when malformed */
static int consume_body(struct connection *c, const char *data, size_t size)
{
    while (size > 0 || (c->body == BODY_LENGTH && c->body_left == 0)) {
        switch (c->body) {
        case BODY_LENGTH: {
            size_t take = size < c->body_left ? size : (size_t)c->body_left;
            c->body_left -= take;
            data += take;
            size -= take;
            if (c->body_left == 0)
                return size == 0 ? 1 : -1; /* one request at a time: nothing may follow */
            break;
        }
        case BODY_CHUNK_DATA: {
            size_t take = size < c->body_left ? size : (size_t)c->body_left;
            c->body_left -= take;
            data += take;
            size -= take;
            if (c->body_left == 0)
                c->body = BODY_CHUNK_CRLF;
            break;
        }
        case BODY_CHUNK_SIZE:
        case BODY_CHUNK_CRLF:
        case BODY_TRAILER: {
            char ch = *data++;
            size--;
            if (ch != '\n') {
                if (c->line_used + 1 >= sizeof c->line)
                    return -1;
                c->line[c->line_used++] = ch;
                break;
            }
            c->line[c->line_used] = '\0';
            if (c->line_used > 0 && c->line[c->line_used - 1] == '\r')
                c->line[--c->line_used] = '\0';
            size_t length = c->line_used;
            c->line_used = 0;
            if (c->body == BODY_CHUNK_CRLF) {
                if (length != 0)
                    return -1;
                c->body = BODY_CHUNK_SIZE;
            } else if (c->body == BODY_CHUNK_SIZE) {
                char *end;
                unsigned long long chunk = strtoull(c->line, &end, 16);
                if (end == c->line)
                    return -1;
                c->body_left = chunk;
                c->body = chunk == 0 ? BODY_TRAILER : BODY_CHUNK_DATA;
            } else if (length == 0) {
                return size == 0 ? 1 : -1;
            }
            break;
        }
        }
    }
    return 0;
}

/* The response head is complete in c->head (ending at head_end); sets up body reading */
static int parse_response_head(struct connection *c, size_t head_end)
{
    c->head[head_end - 1] = '\0';
    if (sscanf(c->head, "HTTP/1.%*d %d", &c->status) != 1)
        return -1;
    c->body = BODY_LENGTH;
    c->body_left = 0;
    for (char *line = strstr(c->head, "\r\n"); line != NULL; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            c->body_left = strtoull(line + 15, NULL, 10);
        else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strcasestr(line, "chunked"))
            c->body = BODY_CHUNK_SIZE;
    }
    if (c->status == 204 || c->status == 304)
        c->body_left = 0;
    c->line_used = 0;
    return 0;
}

static char *find_head_end(struct connection *c)
{
    return memmem(c->head, c->head_used, "\r\n\r\n", 4);
}

/* Runs one connection until it would block */
static void step(struct connection *c)
{
    for (;;) {
        switch (c->phase) {
        case PHASE_CONNECTING: {
            int error = 0;
            socklen_t length = sizeof error;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0)
                return fail_connection(c);
            struct sockaddr_storage peer;
            socklen_t peer_length = sizeof peer;
            if (getpeername(c->fd, (struct sockaddr *)&peer, &peer_length) != 0) {
                if (errno != ENOTCONN)
                    return fail_connection(c);
                set_interest(c, EPOLLOUT); /* a stale event: still connecting */
                return;
            }
            if (options.proxy_host != NULL) {
                c->phase = PHASE_PROXY_WRITE;
                c->out = connect_text;
                c->out_left = connect_length;
            } else if (options.tls) {
                if (start_tls(c) != 0)
                    return fail_connection(c);
            } else {
                start_request(c);
            }
            break;
        }
        case PHASE_PROXY_WRITE: {
            int r = transport_write(c);
            if (r == -1)
                return;
            if (r < 0)
                return fail_connection(c);
            c->phase = PHASE_PROXY_READ;
            c->head_used = 0;
            break;
        }
        case PHASE_PROXY_READ: {
            ssize_t n =
                transport_read(c, c->head + c->head_used, sizeof c->head - 1 - c->head_used);
            if (n == -1)
                return;
            if (n <= 0)
                return fail_connection(c);
            c->head_used += (size_t)n;
            char *end = find_head_end(c);
            if (end == NULL) {
                if (c->head_used >= sizeof c->head - 1)
                    return fail_connection(c);
                break;
            }
            int status = 0;
            c->head[c->head_used] = '\0';
            /* the tunnel's first bytes are ours to send: nothing may follow the reply head */
            if (sscanf(c->head, "HTTP/1.%*d %d", &status) != 1 || status != 200 ||
                end + 4 != c->head + c->head_used)
                return fail_connection(c);
            if (options.tls) {
                if (start_tls(c) != 0)
                    return fail_connection(c);
            } else {
                start_request(c);
            }
            break;
        }
        case PHASE_HANDSHAKE: {
            int r = SSL_do_handshake(c->tls);
            if (r == 1) {
                start_request(c);
                break;
            }
            int e = SSL_get_error(c->tls, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                set_interest(c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
                return;
            }
            return fail_connection(c);
        }
        case PHASE_REQUEST_WRITE: {
            int r = transport_write(c);
            if (r == -1)
                return;
            if (r < 0)
                return fail_connection(c);
            c->phase = PHASE_RESPONSE_HEAD;
            c->head_used = 0;
            break;
        }
        case PHASE_RESPONSE_HEAD: {
            ssize_t n =
                transport_read(c, c->head + c->head_used, sizeof c->head - 1 - c->head_used);
            if (n == -1)
                return;
            if (n <= 0)
                return fail_connection(c);
            bytes_read += (uint64_t)n;
            c->head_used += (size_t)n;
            char *end = find_head_end(c);
            if (end == NULL) {
                if (c->head_used >= sizeof c->head - 1)
                    return fail_connection(c);
                break;
            }
            size_t head_end = (size_t)(end - c->head) + 4;
            size_t rest = c->head_used - head_end;
            char rest_bytes[sizeof c->head];
            memcpy(rest_bytes, c->head + head_end, rest);
            if (parse_response_head(c, head_end) != 0)
                return fail_connection(c);
            c->phase = PHASE_RESPONSE_BODY;
            int r = consume_body(c, rest_bytes, rest);
            if (r < 0)
                return fail_connection(c);
            if (r == 1) {
                response_done(c);
                if (c->fd < 0)
                    return;
            }
            break;
        }
        case PHASE_RESPONSE_BODY: {
            static char buffer[1 << 17];
            ssize_t n = transport_read(c, buffer, sizeof buffer);
            if (n == -1)
                return;
            if (n <= 0)
                return fail_connection(c);
            bytes_read += (uint64_t)n;
            int r = consume_body(c, buffer, (size_t)n);
            if (r < 0)
                return fail_connection(c);
            if (r == 1) {
                response_done(c);
                if (c->fd < 0)
                    return;
            }
            break;
        }
        }
        if (c->fd < 0)
            return;
    }
}

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t percentile(double p)
{
    if (latency_count == 0)
        return 0;
    size_t index = (size_t)(p / 100.0 * (double)(latency_count - 1) + 0.5);
    return latencies_us[index];
}

int main(int argc, char **argv)
{
    int opt;
    char *proxy = NULL;
    while ((opt = getopt(argc, argv, "x:tk:nc:d:")) != -1) {
        switch (opt) {
        case 'x':
            proxy = optarg;
            break;
        case 't':
            options.tls = 1;
            break;
        case 'k':
            options.ca_file = optarg;
            break;
        case 'n':
            options.one_request_per_connection = 1;
            break;
        case 'c':
            options.connections = atoi(optarg);
            break;
        case 'd':
            options.seconds = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (argc - optind != 2 || options.connections < 1 || options.connections > 100000 ||
        options.seconds < 1)
        usage();
    if (split_host_port(argv[optind], &options.target_host, &options.target_port) != 0)
        usage();
    options.path = argv[optind + 1];
    if (proxy != NULL && split_host_port(proxy, &options.proxy_host, &options.proxy_port) != 0)
        usage();
    signal(SIGPIPE, SIG_IGN);

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    const char *host = proxy != NULL ? options.proxy_host : options.target_host;
    const char *port = proxy != NULL ? options.proxy_port : options.target_port;
    if (getaddrinfo(host, port, &hints, &connect_address) != 0)
        die("cannot resolve the address to connect to");

    const char *authority_host = options.target_host;
    int bracket = strchr(authority_host, ':') != NULL;
    connect_length = (size_t)snprintf(
        connect_text, sizeof connect_text, "CONNECT %s%s%s:%s HTTP/1.1\r\nHost: %s%s%s:%s\r\n\r\n",
        bracket ? "[" : "", authority_host, bracket ? "]" : "", options.target_port,
        bracket ? "[" : "", authority_host, bracket ? "]" : "", options.target_port);
    request_length = (size_t)snprintf(request_text, sizeof request_text,
                                      "GET %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: "
                                      "connect_load\r\nAccept: */*\r\n\r\n",
                                      options.path, bracket ? "[" : "", authority_host,
                                      bracket ? "]" : "", options.target_port);
    if (request_length >= sizeof request_text || connect_length >= sizeof connect_text)
        die("target or path too long");

    if (options.tls) {
        tls_context = SSL_CTX_new(TLS_client_method());
        if (tls_context == NULL)
            die("SSL_CTX_new failed");
        /* every handshake a full one: the cost of a new tunnel is what is measured */
        SSL_CTX_set_session_cache_mode(tls_context, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(tls_context, SSL_OP_NO_TICKET);
        if (options.ca_file != NULL) {
            if (SSL_CTX_load_verify_locations(tls_context, options.ca_file, NULL) != 1)
                die("cannot load the CA file");
            SSL_CTX_set_verify(tls_context, SSL_VERIFY_PEER, NULL);
        }
    }

    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0)
        die("epoll_create1 failed");
    struct connection *all = calloc((size_t)options.connections, sizeof *all);
    if (all == NULL)
        die("out of memory");
    uint64_t start_us = now_us(), end_us = start_us + (uint64_t)options.seconds * 1000000u;
    for (int i = 0; i < options.connections; i++)
        open_connection(&all[i]);

    struct epoll_event events[256];
    for (;;) {
        uint64_t now = now_us();
        if (now >= end_us)
            break;
        int timeout_ms = (int)((end_us - now) / 1000u) + 1;
        int n = epoll_wait(epoll_fd, events, 256, timeout_ms);
        if (n < 0 && errno != EINTR)
            die("epoll_wait failed");
        for (int i = 0; i < n; i++) {
            struct connection *c = events[i].data.ptr;
            if (c->fd >= 0)
                step(c);
        }
    }
    running = 0;
    uint64_t duration_us = now_us() - start_us;
    for (int i = 0; i < options.connections; i++)
        close_connection(&all[i]);
    qsort(latencies_us, latency_count, sizeof *latencies_us, compare_u32);
    printf("RESULT requests=%llu errors=%llu connections=%llu duration_us=%llu bytes=%llu "
           "p50_us=%u p99_us=%u\n",
           (unsigned long long)requests_done, (unsigned long long)errors,
           (unsigned long long)connections_opened, (unsigned long long)duration_us,
           (unsigned long long)bytes_read, percentile(50), percentile(99));
    free(all);
    free(latencies_us);
    freeaddrinfo(connect_address);
    SSL_CTX_free(tls_context);
    return 0;
}
