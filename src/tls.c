/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* tls.c — see tls.h. One leaf key (P-256) per process signs nothing and is shared by every leaf
 * certificate, as interception proxies commonly do: minting a certificate is then one signature,
 * not a key generation. Leaf contexts are cached per host name (LEAF_CACHE entries, least
 * recently used goes first). */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define LEAF_CACHE 1024
#define LEAF_DAYS 397 /* browsers refuse leaves valid for longer than 398 days */

struct leaf {
    char host[256];
    SSL_CTX *ctx;
    uint64_t used;
};

/* The process's CA and leaf cache; server.c makes one (struct process's tls) and frees it after
 * the workers are joined. Workers mint leaves under the lock; the main thread swaps the CA. */
struct tls_interceptor {
    pthread_mutex_t lock;
    X509 *ca_cert;
    EVP_PKEY *ca_key;
    EVP_PKEY *leaf_key;
    struct leaf leaves[LEAF_CACHE];
    size_t leaf_count;
    uint64_t clock;
    _Atomic unsigned long long handshakes, hits, misses;
};

static void openssl_error(char *err, size_t err_len, const char *what)
{
    unsigned long e = ERR_get_error();
    char detail[256] = "unknown error";
    if (e != 0)
        ERR_error_string_n(e, detail, sizeof detail);
    ERR_clear_error();
    snprintf(err, err_len, "%s: %s", what, detail);
}

static X509 *read_cert(const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_len, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (cert == NULL) {
        char what[600];
        snprintf(what, sizeof what, "%s: not a PEM certificate", path);
        openssl_error(err, err_len, what);
    }
    return cert;
}

/* The CA key must be readable by the proxy's user only: anyone who reads it can impersonate every
 * intercepted host to every client that trusts the CA. */
static EVP_PKEY *read_key(const char *path, char *err, size_t err_len)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, err_len, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    if (st.st_mode & 077) {
        snprintf(err, err_len,
                 "%s: the CA key is readable or writable by group or others (mode %04o); "
                 "chmod 600 it",
                 path, (unsigned)(st.st_mode & 07777));
        return NULL;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_len, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (key == NULL) {
        char what[600];
        snprintf(what, sizeof what, "%s: not a PEM private key", path);
        openssl_error(err, err_len, what);
    }
    return key;
}

static int load_ca(const struct config *config, X509 **cert_out, EVP_PKEY **key_out, char *err,
                   size_t err_len)
{
    const char *cert_path = config->tls_ca_cert, *key_path = config->tls_ca_key;
    if (cert_path == NULL || cert_path[0] == '\0' || key_path == NULL || key_path[0] == '\0') {
        snprintf(err, err_len,
                 "%s: tls_intercept.hosts needs tls_intercept.ca_cert and tls_intercept.ca_key "
                 "(make them with: rlproxy ca init DIR)",
                 config->source);
        return -1;
    }
    X509 *cert = read_cert(cert_path, err, err_len);
    EVP_PKEY *key = cert ? read_key(key_path, err, err_len) : NULL;
    if (cert == NULL || key == NULL) {
        X509_free(cert);
        return -1;
    }
    if (X509_check_private_key(cert, key) != 1) {
        snprintf(err, err_len, "%s: does not belong to the certificate %s", key_path, cert_path);
        ERR_clear_error();
    } else if (X509_check_ca(cert) == 0) {
        snprintf(err, err_len, "%s: not a CA certificate (basicConstraints CA:TRUE)", cert_path);
    } else {
        *cert_out = cert;
        *key_out = key;
        return 0;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    return -1;
}

int tls_check_config(const struct config *config, char *err, size_t err_len)
{
    if (config->tls_intercept_hosts_count == 0)
        return 0;
    X509 *cert;
    EVP_PKEY *key;
    if (load_ca(config, &cert, &key, err, err_len) != 0)
        return -1;
    X509_free(cert);
    EVP_PKEY_free(key);
    return 0;
}

static void clear_leaves(struct tls_interceptor *t)
{
    for (size_t i = 0; i < t->leaf_count; i++)
        SSL_CTX_free(t->leaves[i].ctx);
    t->leaf_count = 0;
}

struct tls_interceptor *tls_interceptor_new(void)
{
    struct tls_interceptor *t = calloc(1, sizeof *t);
    if (t != NULL)
        pthread_mutex_init(&t->lock, NULL);
    return t;
}

int tls_configure(struct tls_interceptor *t, const struct config *config, char *err,
                  size_t err_len)
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL, *leaf_key = NULL;
    if (config->tls_intercept_hosts_count > 0) {
        if (load_ca(config, &cert, &key, err, err_len) != 0)
            return -1;
        leaf_key = EVP_EC_gen("P-256");
        if (leaf_key == NULL) {
            openssl_error(err, err_len, "cannot make the leaf key");
            X509_free(cert);
            EVP_PKEY_free(key);
            return -1;
        }
    }
    pthread_mutex_lock(&t->lock);
    clear_leaves(t); /* leaves signed by the old CA must not outlive it */
    X509_free(t->ca_cert);
    EVP_PKEY_free(t->ca_key);
    EVP_PKEY_free(t->leaf_key);
    t->ca_cert = cert;
    t->ca_key = key;
    t->leaf_key = leaf_key;
    pthread_mutex_unlock(&t->lock);
    return 0;
}

void tls_interceptor_free(struct tls_interceptor *t)
{
    if (t == NULL)
        return;
    clear_leaves(t);
    X509_free(t->ca_cert);
    EVP_PKEY_free(t->ca_key);
    EVP_PKEY_free(t->leaf_key);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int tls_should_intercept(const struct config *config, const char *host)
{
    return config->tls_intercept_hosts_count > 0 &&
           host_pattern_match(config->tls_intercept_hosts, config->tls_intercept_hosts_count, host);
}

static int add_extension(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static int random_serial(X509 *cert)
{
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof bytes) != 1)
        return -1;
    bytes[0] &= 0x7f; /* positive */
    BIGNUM *bn = BN_bin2bn(bytes, sizeof bytes, NULL);
    int ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

static int is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* A leaf for host, valid from an hour ago (clock skew) for LEAF_DAYS. With the lock held. */
static X509 *make_leaf(struct tls_interceptor *t, const char *host)
{
    X509 *cert = X509_new();
    char san[300];
    snprintf(san, sizeof san, "%s:%s", is_ip_literal(host) ? "IP" : "DNS", host);
    int ok = cert != NULL && X509_set_version(cert, 2) && random_serial(cert) == 0 &&
             X509_gmtime_adj(X509_getm_notBefore(cert), -3600) &&
             X509_gmtime_adj(X509_getm_notAfter(cert), (long)LEAF_DAYS * 86400) &&
             X509_set_pubkey(cert, t->leaf_key) &&
             X509_set_issuer_name(cert, X509_get_subject_name(t->ca_cert));
    if (ok) {
        X509_NAME *name = X509_get_subject_name(cert);
        ok = X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)host,
                                        -1, -1, 0) &&
             add_extension(cert, t->ca_cert, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             add_extension(cert, t->ca_cert, NID_key_usage, "critical,digitalSignature") == 0 &&
             add_extension(cert, t->ca_cert, NID_ext_key_usage, "serverAuth") == 0 &&
             add_extension(cert, t->ca_cert, NID_subject_alt_name, san) == 0 &&
             add_extension(cert, t->ca_cert, NID_authority_key_identifier, "keyid:always") == 0 &&
             X509_sign(cert, t->ca_key, EVP_sha256()) > 0;
    }
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

/* Offer only HTTP/1.1: the requests inside go through the HTTP/1 parser. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_len,
                       const unsigned char *in, unsigned int in_len, void *arg)
{
    for (unsigned i = 0; i < in_len;) {
        unsigned n = in[i];
        if (i + 1 + n > in_len)
            break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *out_len = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK; /* no ALPN: HTTP/1.1 is what a client without it speaks */
}

static SSL_CTX *make_ctx(struct tls_interceptor *t, const char *host)
{
    X509 *leaf = make_leaf(t, host);
    SSL_CTX *ctx = leaf ? SSL_CTX_new(TLS_server_method()) : NULL;
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        SSL_CTX_use_certificate(ctx, leaf) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, t->leaf_key) != 1 ||
        SSL_CTX_add1_chain_cert(ctx, t->ca_cert) != 1) {
        SSL_CTX_free(ctx);
        X509_free(leaf);
        return NULL;
    }
    X509_free(leaf); /* the context holds its own reference */
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    return ctx;
}

/* With the lock held: the cached context for host, or a new one (evicting the least used). */
static SSL_CTX *leaf_ctx(struct tls_interceptor *t, const char *host)
{
    struct leaf *oldest = NULL;
    for (size_t i = 0; i < t->leaf_count; i++) {
        struct leaf *l = &t->leaves[i];
        if (strcasecmp(l->host, host) == 0) {
            l->used = ++t->clock;
            atomic_fetch_add(&t->hits, 1);
            return l->ctx;
        }
        if (oldest == NULL || l->used < oldest->used)
            oldest = l;
    }
    atomic_fetch_add(&t->misses, 1);
    SSL_CTX *ctx = make_ctx(t, host);
    if (ctx == NULL)
        return NULL;
    struct leaf *slot = t->leaf_count < LEAF_CACHE ? &t->leaves[t->leaf_count++] : oldest;
    if (slot->ctx != NULL && slot == oldest)
        SSL_CTX_free(slot->ctx);
    snprintf(slot->host, sizeof slot->host, "%s", host);
    slot->ctx = ctx;
    slot->used = ++t->clock;
    return ctx;
}

SSL *tls_new_server_ssl(struct tls_interceptor *t, const char *host, char *err, size_t err_len)
{
    pthread_mutex_lock(&t->lock);
    SSL *ssl = NULL;
    if (t->ca_cert == NULL) {
        snprintf(err, err_len, "TLS interception is not configured");
    } else {
        SSL_CTX *ctx = leaf_ctx(t, host);
        if (ctx == NULL)
            openssl_error(err, err_len, "cannot make a certificate");
        else if ((ssl = SSL_new(ctx)) == NULL) /* takes its own reference to ctx */
            openssl_error(err, err_len, "SSL_new");
    }
    pthread_mutex_unlock(&t->lock);
    if (ssl != NULL)
        atomic_fetch_add(&t->handshakes, 1);
    return ssl;
}

int tls_add_upstream_ca(void *ssl_ctx, const char *ca_file)
{
    X509_STORE *store = SSL_CTX_get_cert_store((SSL_CTX *)ssl_ctx);
    if (store == NULL || X509_STORE_load_file(store, ca_file) != 1) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

void tls_get_stats(struct tls_interceptor *t, struct tls_stats *out)
{
    out->handshakes_started = atomic_load(&t->handshakes);
    out->leaf_cache_hits = atomic_load(&t->hits);
    out->leaf_cache_misses = atomic_load(&t->misses);
    pthread_mutex_lock(&t->lock);
    out->leaves_cached = t->leaf_count;
    pthread_mutex_unlock(&t->lock);
}

/* ---- rlproxy ca init ---------------------------------------------------------------------- */

static int write_pem(const char *path, int mode, int (*writer)(FILE *, void *), void *object,
                     char *err, size_t err_len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL || !writer(f, object)) {
        snprintf(err, err_len, "%s: cannot write", path);
        if (f != NULL)
            fclose(f);
        else
            close(fd);
        unlink(path);
        return -1;
    }
    if (fclose(f) != 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        unlink(path);
        return -1;
    }
    return 0;
}

static int write_key(FILE *f, void *key)
{
    return PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
}

static int write_cert(FILE *f, void *cert) { return PEM_write_X509(f, cert); }

int tls_ca_init(const char *dir, char *err, size_t err_len)
{
    char key_path[4096], cert_path[4096], host[128] = "localhost", cn[256];
    snprintf(key_path, sizeof key_path, "%s/ca.key", dir);
    snprintf(cert_path, sizeof cert_path, "%s/ca.pem", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, err_len, "%s: %s", dir, strerror(errno));
        return -1;
    }
    gethostname(host, sizeof host - 1);
    snprintf(cn, sizeof cn, "rlproxy interception CA (%s)", host);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    int ok = key != NULL && cert != NULL && X509_set_version(cert, 2) && random_serial(cert) == 0 &&
             X509_gmtime_adj(X509_getm_notBefore(cert), -3600) &&
             X509_gmtime_adj(X509_getm_notAfter(cert), 10L * 365 * 86400) &&
             X509_set_pubkey(cert, key);
    if (ok) {
        X509_NAME *name = X509_get_subject_name(cert);
        ok = X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                        -1, 0) &&
             X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                        (const unsigned char *)"rlproxy", -1, -1, 0) &&
             X509_set_issuer_name(cert, name) &&
             add_extension(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") == 0 &&
             add_extension(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") == 0 &&
             add_extension(cert, cert, NID_subject_key_identifier, "hash") == 0 &&
             X509_sign(cert, key, EVP_sha256()) > 0;
    }
    int rc = -1;
    if (!ok)
        openssl_error(err, err_len, "cannot make the CA");
    else if (write_pem(key_path, 0600, write_key, key, err, err_len) == 0) {
        if (write_pem(cert_path, 0644, write_cert, cert, err, err_len) == 0)
            rc = 0;
        else
            unlink(key_path);
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}
