/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* main.c — command line, process-wide set-up (libcurl, libevent threads, signal dispositions),
 * config loading and `-t`. The only place that decides the exit status. */
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>
#ifdef HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

#include "config.h"
#include "config_dump.h"
#include "config_warn.h"
#include "http.h"
#include "http_response.h"
#include "util.h"
#include "log.h"
#include "server.h"
#include "tls.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: rlproxy [-hV] [-t | -T] [-c file]\n"
        "  -c file        configuration file (YAML); without it the embedded default serves\n"
        "                 (listen 127.0.0.1:3128, loopback clients only, access log to stderr)\n"
        "  -t             check the configuration and exit (0: valid, 1: invalid)\n"
        "  -T             check it like -t and print the effective configuration (secrets\n"
        "                 masked)\n"
        "  -V, --version  print the version and the build features, and exit\n"
        "  -h, --help     this help\n"
        "       rlproxy ca init DIR\n"
        "  writes DIR/ca.key (mode 0600) and DIR/ca.pem, a new CA for tls_intercept\n"
        "signals: TERM/INT/QUIT drain and stop (a second one stops at once), HUP reloads the\n"
        "  -c file and reopens the access log, USR1 reopens the access log (logrotate); the\n"
        "  others are ignored\n"
        "manual: rlproxy(8), rlproxy.yaml(5)\n");
}

/* What a bug report needs: the optional parts compiled in, and the libraries actually loaded
 * (the run-time versions, which a security update changes without a rebuild). */
static void print_version(void)
{
    const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
    printf("rlproxy %s\n", PACKAGE_VERSION);
    printf("features: +tls-intercept %csystemd %chiredis\n",
#ifdef HAVE_LIBSYSTEMD
           '+',
#else
           '-',
#endif
#ifdef HAVE_HIREDIS
           '+'
#else
           '-'
#endif
    );
    printf("libraries: libevent %s, libcurl %s, OpenSSL %s, libyaml %s, llhttp %d.%d.%d",
           event_get_version(), curl->version, OpenSSL_version(OPENSSL_VERSION_STRING),
           yaml_get_version_string(), LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR,
           LLHTTP_VERSION_PATCH);
#ifdef HAVE_HIREDIS
    printf(", hiredis %d.%d.%d", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
#endif
    printf("\n");
}

/* A signal rlproxy has no use for must not stop a proxy that is serving: SIGUSR2 or SIGALRM sent
 * by mistake, SIGPIPE from a peer that went away, SIGXFSZ at a file-size limit (the write then
 * fails with EFBIG instead). Faults (SEGV, BUS, FPE, ILL, ABRT, SYS, TRAP) keep their default, and
 * so does job control (TSTP, TTIN, TTOU). HUP and USR1 are ignored too until the event loop takes
 * them over, so a logrotate run during start-up does not kill rlproxy. Errors are not checked: a
 * tool such as valgrind may reserve a real-time signal. */
static void ignore_unused_signals(void)
{
    static const int unused[] = {
        SIGPIPE,   SIGUSR1, SIGUSR2, SIGHUP,   SIGALRM, SIGVTALRM,
        SIGPROF,   SIGIO,   SIGURG,  SIGWINCH, SIGXCPU, SIGXFSZ,
#ifdef SIGPWR
        SIGPWR,
#endif
#ifdef SIGSTKFLT
        SIGSTKFLT,
#endif
    };
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    for (size_t i = 0; i < sizeof unused / sizeof unused[0]; i++)
        sigaction(unused[i], &ignore, NULL);
    for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++)
        sigaction(sig, &ignore, NULL);
}

/* `rlproxy ca init DIR`: a CA for tls_intercept, and how to make clients trust it. */
static int ca_init(const char *dir)
{
    char err[1024];
    if (tls_ca_init(dir, err, sizeof err) != 0) {
        fprintf(stderr, "rlproxy: %s\n", err);
        return 1;
    }
    printf(
        "wrote %s/ca.key (mode 0600, keep it private) and %s/ca.pem\n\n"
        "Configure rlproxy:\n"
        "  tls_intercept:\n    ca_cert: %s/ca.pem\n    ca_key: %s/ca.key\n"
        "    hosts: [\"api.example.com\"]\n\n"
        "Make clients trust %s/ca.pem:\n"
        "  curl:      curl --cacert %s/ca.pem -x http://127.0.0.1:3128 https://api.example.com/\n"
        "  OpenSSL:   SSL_CERT_FILE=%s/ca.pem (replaces the default bundle: concatenate it with\n"
        "             /etc/ssl/certs/ca-certificates.crt for other hosts)\n"
        "  Python:    REQUESTS_CA_BUNDLE=... for requests, SSL_CERT_FILE=... for urllib\n"
        "  Debian:    cp %s/ca.pem /usr/local/share/ca-certificates/rlproxy.crt && "
        "update-ca-certificates\n"
        "  Chromium:  certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n rlproxy -i %s/ca.pem\n",
        dir, dir, dir, dir, dir, dir, dir, dir, dir);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "ca") == 0) {
        if (argc != 4 || strcmp(argv[2], "init") != 0) {
            fprintf(stderr, "usage: rlproxy ca init DIR\n");
            return 2;
        }
        return ca_init(argv[3]);
    }
    const char *config_path = NULL;
    int check_only = 0, dump = 0;
    static const struct option long_options[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "c:tThV", long_options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            check_only = 1;
            break;
        case 'T':
            check_only = dump = 1;
            break;
        case 'V':
            print_version();
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    ignore_unused_signals();

    struct config *config = NULL;
    char err[1024];
    if (config_path != NULL) {
        if (config_load_file(config_path, &config, err, sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    } else {
        config = config_default();
        if (config == NULL) {
            fprintf(stderr, "rlproxy: out of memory\n");
            return 1;
        }
    }
    if (tls_check_config(config, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        config_unref(config);
        return 1;
    }
    config_log_rule_warnings(config); /* -t, -T and start alike */
    if (check_only && log_access_check(config->access_log) != 0) {
        fprintf(stderr, "%s: log.access: cannot open %s for append: %s\n", config->source,
                config->access_log, strerror(errno));
        config_unref(config);
        return 1;
    }
    if (dump && config_dump(config, stdout) != 0) {
        config_unref(config);
        return 1;
    }
    if (check_only) {
        if (dump) /* stdout is YAML; the verdict goes beside it */
            fprintf(stderr, "%s: configuration OK\n",
                    config_path ? config_path : "(embedded default)");
        else
            printf("%s: configuration OK\n", config_path ? config_path : "(embedded default)");
        config_unref(config);
        return 0;
    }

    log_set_level(config->log_level);
    log_access_set_buffer(config->access_buffer);
    if (log_access_open(config->access_log) != 0) {
        fprintf(stderr, "rlproxy: cannot open access log %s: %s\n", config->access_log,
                strerror(errno));
        config_unref(config);
        return 1;
    }
    if (evthread_use_pthreads() != 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "rlproxy: cannot initialise libevent threads or libcurl\n");
        config_unref(config);
        return 1;
    }
    /* our Via entry carries a per-process id, so a request that loops back is recognised */
    http_via_init(util_random32() ^ (uint32_t)getpid());
    int status = server_run(config, config_path);
    curl_global_cleanup();
    log_access_close();
    libevent_global_shutdown();
    return status;
}
