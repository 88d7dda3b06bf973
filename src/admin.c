/* admin.c — see admin.h. evhttp is a web-server API, which is what this endpoint is: small
 * requests, whole responses. */
#include "admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct admin {
    struct evhttp *http;
    struct admin_view *view;
};

static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *content_type, struct evbuffer *body)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", content_type);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct admin *admin = arg;
    struct evbuffer *body = evbuffer_new();
    if (body == NULL) {
        evhttp_send_error(req, 503, NULL);
        return;
    }
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        evbuffer_add_printf(body, "only GET\n");
        reply_text(req, 405, "Method Not Allowed", "text/plain", body);
    } else if (path != NULL && strcmp(path, "/metrics") == 0) {
        metrics_render(body, admin->view->workers, admin->view->worker_count,
                       admin->view->limiter, &admin->view->process);
        reply_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
    } else if (path != NULL && strcmp(path, "/healthz") == 0) {
        if (admin->view->stopping) {
            evbuffer_add_printf(body, "stopping\n");
            reply_text(req, 503, "Service Unavailable", "text/plain", body);
        } else {
            evbuffer_add_printf(body, "ok\n");
            reply_text(req, 200, "OK", "text/plain", body);
        }
    } else {
        evbuffer_add_printf(body, "not found: try /metrics or /healthz\n");
        reply_text(req, 404, "Not Found", "text/plain", body);
    }
    evbuffer_free(body);
}

static int bind_one(struct admin *admin, const struct listen_addr *la)
{
    int fd = socket(la->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (la->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&la->addr, la->addr_len) != 0 || listen(fd, 64) != 0 ||
        evhttp_accept_socket_with_handle(admin->http, fd) == NULL) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    char text[80];
    if (getsockname(fd, (struct sockaddr *)&bound, &len) == 0)
        log_notice("admin endpoint listening on %s",
                   util_format_sockaddr((struct sockaddr *)&bound, text, sizeof text));
    return 0;
}

struct admin *admin_start(struct event_base *base, const struct config *config,
                          struct admin_view *view)
{
    struct admin *admin = calloc(1, sizeof *admin);
    if (admin == NULL)
        return NULL;
    admin->view = view;
    admin->http = evhttp_new(base);
    if (admin->http == NULL) {
        free(admin);
        return NULL;
    }
    /* bounds: the endpoint takes tiny GETs only */
    evhttp_set_max_headers_size(admin->http, 8192);
    evhttp_set_max_body_size(admin->http, 0);
    evhttp_set_timeout(admin->http, 10);
    evhttp_set_gencb(admin->http, on_request, admin);
    for (size_t i = 0; i < config->admin_listen_count; i++) {
        if (bind_one(admin, &config->admin_listen[i]) != 0) {
            log_error("admin.listen %s: %s", config->admin_listen[i].text, strerror(errno));
            admin_free(admin);
            return NULL;
        }
    }
    return admin;
}

void admin_free(struct admin *admin)
{
    if (admin == NULL)
        return;
    evhttp_free(admin->http);
    free(admin);
}
