/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* tls.h — TLS interception for the hosts listed under tls_intercept: the operator's CA, leaf
 * certificates minted per host (ECDSA P-256, cached with a bound), server-side SSL objects for
 * the client end of an opened CONNECT tunnel, and `rlproxy ca init`. Also the extra CA bundle for
 * verifying origins (tls_intercept.upstream_ca_file). OpenSSL is the one libcurl already links.
 * Owns no sockets: conn.c wraps its bufferevent around the SSL object this module hands out. */
#ifndef RLPROXY_TLS_H
#define RLPROXY_TLS_H

#include <stddef.h>

#include "config.h"

typedef struct ssl_st SSL;

/* Checks what config_load cannot: the CA files exist, parse, match, and the key is private
 * (mode 0600 or stricter). 0, or -1 with "FILE: reason" in err. Used by -t, start and reload. */
int tls_check_config(const struct config *config, char *err, size_t err_len);

/* The process's interception state: the CA, the leaf key, the cache of leaf contexts and their
 * counters. server.c makes one (struct process's tls) and frees it after the workers are joined. */
struct tls_interceptor;
struct tls_interceptor *tls_interceptor_new(void); /* NULL when out of memory */
void tls_interceptor_free(struct tls_interceptor *tls);

/* Makes `config`'s CA the one used for new intercepted tunnels (start and reload). 0 or -1. A
 * config without tls_intercept.hosts turns interception off. Thread-safe. */
int tls_configure(struct tls_interceptor *tls, const struct config *config, char *err,
                  size_t err_len);

/* 1 when CONNECTs to host are opened (tls_intercept.hosts). */
int tls_should_intercept(const struct config *config, const char *host);

/* A server-side SSL for a client that asked to CONNECT to host: a leaf for host signed by the
 * CA, ALPN http/1.1 only. NULL with a reason in err. */
SSL *tls_new_server_ssl(struct tls_interceptor *tls, const char *host, char *err, size_t err_len);

/* For libcurl's CURLOPT_SSL_CTX_FUNCTION: adds tls_intercept.upstream_ca_file to the store that
 * verifies origins, on top of the system store. */
int tls_add_upstream_ca(void *ssl_ctx, const char *ca_file);

/* `rlproxy ca init DIR`: writes DIR/ca.key (0600) and DIR/ca.pem. 0 or -1 with err. */
int tls_ca_init(const char *dir, char *err, size_t err_len);

/* For /metrics. */
struct tls_stats {
    unsigned long long handshakes_started, leaf_cache_hits, leaf_cache_misses, leaves_cached;
};
void tls_get_stats(struct tls_interceptor *tls, struct tls_stats *out);

#endif
