/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* tls_record.c — the TLS floor of one intercepted request (issue #19 item 4): what OpenSSL alone
 * costs an intercepting proxy per request, with no sockets, no system calls and no HTTP. It owns
 * nothing but two in-memory TLS 1.3 sessions; a benchmark tool, not part of rlproxy.
 *
 * An intercepting proxy holds two TLS sessions per request: the client's (the proxy is the server)
 * and the origin's (the proxy is the client). Per request it decrypts the request from the client,
 * encrypts it to the origin, decrypts the response from the origin and encrypts it to the client:
 * four record operations. This program connects each session's two ends through a BIO pair and
 * times only the proxy's four calls (SSL_read, SSL_write, SSL_read, SSL_write), so the figure is
 * a floor under any intercepting proxy built on this OpenSSL, however few system calls it makes.
 *
 * usage: tls_record [REQUEST_BYTES [RESPONSE_BYTES [ITERATIONS]]]   (defaults: 120 1280 200000)
 * Prints OpenSSL's version, the cipher negotiated (OpenSSL's default TLS 1.3 preference, which is
 * what the peers in bench/intercept negotiate) and microseconds per request for the four calls. */
#define _GNU_SOURCE
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void die(const char *what)
{
    fprintf(stderr, "tls_record: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* A self-signed P-256 certificate, as `rlproxy ca init` makes (ECDSA P-256). */
static void make_identity(EVP_PKEY **key_out, X509 **cert_out)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    if (key == NULL || cert == NULL)
        die("cannot make a key");
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1,
                               0);
    X509_set_issuer_name(cert, name);
    if (X509_sign(cert, key, EVP_sha256()) == 0)
        die("cannot sign");
    *key_out = key;
    *cert_out = cert;
}

struct session {
    SSL *server, *client;
};

/* Moves handshake bytes between the two ends until both are done. */
static void handshake(struct session *s)
{
    int server_done = 0, client_done = 0;
    for (int round = 0; round < 100 && !(server_done && client_done); round++) {
        if (!client_done) {
            int r = SSL_do_handshake(s->client);
            if (r == 1)
                client_done = 1;
            else if (SSL_get_error(s->client, r) != SSL_ERROR_WANT_READ)
                die("client handshake");
        }
        if (!server_done) {
            int r = SSL_do_handshake(s->server);
            if (r == 1)
                server_done = 1;
            else if (SSL_get_error(s->server, r) != SSL_ERROR_WANT_READ)
                die("server handshake");
        }
    }
    if (!(server_done && client_done))
        die("handshake did not finish");
}

static struct session session_new(SSL_CTX *server_ctx, SSL_CTX *client_ctx)
{
    struct session s = {SSL_new(server_ctx), SSL_new(client_ctx)};
    BIO *server_bio, *client_bio;
    if (s.server == NULL || s.client == NULL || !BIO_new_bio_pair(&server_bio, 1 << 17, &client_bio,
                                                                   1 << 17))
        die("cannot make a session");
    SSL_set_bio(s.server, server_bio, server_bio);
    SSL_set_bio(s.client, client_bio, client_bio);
    SSL_set_accept_state(s.server);
    SSL_set_connect_state(s.client);
    handshake(&s);
    return s;
}

static void write_all(SSL *ssl, const char *data, int n)
{
    if (SSL_write(ssl, data, n) != n)
        die("SSL_write");
}

static void read_all(SSL *ssl, char *data, int n)
{
    for (int got = 0; got < n;) {
        int r = SSL_read(ssl, data + got, n - got);
        if (r <= 0)
            die("SSL_read");
        got += r;
    }
}

int main(int argc, char **argv)
{
    int request_bytes = argc > 1 ? atoi(argv[1]) : 120;
    int response_bytes = argc > 2 ? atoi(argv[2]) : 1280;
    long iterations = argc > 3 ? atol(argv[3]) : 200000;
    if (request_bytes <= 0 || response_bytes <= 0 || iterations <= 0)
        die("usage: tls_record [REQUEST_BYTES [RESPONSE_BYTES [ITERATIONS]]]");
    EVP_PKEY *key;
    X509 *cert;
    make_identity(&key, &cert);
    SSL_CTX *server_ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX *client_ctx = SSL_CTX_new(TLS_client_method());
    if (server_ctx == NULL || client_ctx == NULL || SSL_CTX_use_certificate(server_ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey(server_ctx, key) != 1)
        die("cannot make the contexts");
    SSL_CTX_set_min_proto_version(server_ctx, TLS1_3_VERSION);
    SSL_CTX_set_min_proto_version(client_ctx, TLS1_3_VERSION);
    /* the client's session: the proxy is its server; the origin's: the proxy is its client */
    struct session toward_client = session_new(server_ctx, client_ctx);
    struct session toward_origin = session_new(server_ctx, client_ctx);

    char *request = malloc((size_t)request_bytes), *response = malloc((size_t)response_bytes);
    char *scratch = malloc((size_t)(request_bytes > response_bytes ? request_bytes : response_bytes));
    if (request == NULL || response == NULL || scratch == NULL)
        die("out of memory");
    memset(request, 'q', (size_t)request_bytes);
    memset(response, 'r', (size_t)response_bytes);

    double proxy_us = 0;
    for (long i = -iterations / 10; i < iterations; i++) { /* the first tenth warms up */
        write_all(toward_client.client, request, request_bytes); /* the client sends */
        double t0 = now_us();
        read_all(toward_client.server, scratch, request_bytes);  /* the proxy decrypts it */
        write_all(toward_origin.client, scratch, request_bytes); /* and encrypts it onward */
        double t1 = now_us();
        read_all(toward_origin.server, scratch, request_bytes);   /* the origin reads */
        write_all(toward_origin.server, response, response_bytes); /* and answers */
        double t2 = now_us();
        read_all(toward_origin.client, scratch, response_bytes);  /* the proxy decrypts it */
        write_all(toward_client.server, scratch, response_bytes); /* and encrypts it back */
        double t3 = now_us();
        read_all(toward_client.client, scratch, response_bytes); /* the client reads */
        if (i >= 0)
            proxy_us += (t1 - t0) + (t3 - t2);
    }
    printf("%s, %s, request %d B, response %d B, %ld requests: %.2f µs of the proxy's four TLS "
           "calls per request\n",
           OpenSSL_version(OPENSSL_VERSION), SSL_get_cipher_name(toward_client.server),
           request_bytes, response_bytes, iterations, proxy_us / (double)iterations);
    free(request);
    free(response);
    free(scratch);
    SSL_free(toward_client.server);
    SSL_free(toward_client.client);
    SSL_free(toward_origin.server);
    SSL_free(toward_origin.client);
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    X509_free(cert);
    EVP_PKEY_free(key);
    return 0;
}
