/* main.c — command line, process-wide set-up (libcurl, libevent threads, signals), config loading
 * and `-t`. The only place that decides the exit status. */
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "util.h"
#include "log.h"
#include "server.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: rlproxy [-hV] [-t] [-c file]\n"
            "  -c file  configuration file (YAML); without it the embedded default serves\n"
            "           (listen 127.0.0.1:3128, loopback clients only)\n"
            "  -t       check the configuration and exit (0: valid, 1: invalid)\n"
            "  -V       print the version and exit\n"
            "  -h       this help\n"
            "signals: TERM/INT drain and stop (a second one stops at once), HUP reloads -c file\n");
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    int check_only = 0;
    int opt;
    while ((opt = getopt(argc, argv, "c:thV")) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            check_only = 1;
            break;
        case 'V':
            printf("rlproxy %s\n", PACKAGE_VERSION);
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
    if (check_only) {
        printf("%s: configuration OK\n", config_path ? config_path : "(embedded default)");
        config_unref(config);
        return 0;
    }

    log_set_level(config->log_level);
    if (log_access_open(config->access_log) != 0) {
        fprintf(stderr, "rlproxy: cannot open access log %s: %s\n", config->access_log,
                strerror(errno));
        config_unref(config);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
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
