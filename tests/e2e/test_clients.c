/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_clients.c — real clients pointed at rlproxy work as they do without a proxy (issue 2,
 * items 2 and 9): the curl and wget command-line tools and python3's urllib, for plain HTTP and
 * for https:// through a CONNECT tunnel to the local TLS origin. Each client's own proxy
 * configuration path is used (-x, http_proxy=/https_proxy=, ProxyHandler). */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SIZE 100000
#define CMD_MS 60000

/* The client must use the proxy we name and nothing else from the environment */
static const char *const CLEAN_ENV[] = {"no_proxy",   "NO_PROXY",    "all_proxy",   "ALL_PROXY",
                                        "http_proxy", "https_proxy", "HTTPS_PROXY", NULL};

static void out_path(char *buf, size_t len, const char *name)
{
    static unsigned seq;
    snprintf(buf, len, "%s/%s-%d-%u", harness_tmpdir(), name, (int)getpid(), seq++);
}

static void assert_pattern_file(const char *path, const char *who)
{
    size_t len = 0;
    char *data = read_file(path, &len);
    ck_assert_msg(data != NULL, "%s wrote no output file", who);
    ck_assert_msg(len == SIZE, "%s: %zu bytes, want %d", who, len, SIZE);
    ck_assert_msg(pattern_mismatch(data, len, 0) == -1, "%s: wrong bytes", who);
    free(data);
}

static void run_ok(char *const argv[], const char *const env[], struct cmd_result *r)
{
    run_cmd(argv, env, CMD_MS, r);
    ck_assert_msg(r->exit_code == 0, "%s exited %d%s\nstdout: %.500s\nstderr: %.1000s", argv[0],
                  r->exit_code, r->timed_out ? " (timed out)" : "", r->out, r->err);
}

/* Runs `tool`, the options it always gets, then extra (NULL-terminated, at most 12), then url;
 * fails the test unless it exits 0. r is for the caller to free. */
static void run_client(const char *tool, const char *const extra[], const char *url,
                       const char *const env[], struct cmd_result *r)
{
    static const char *const curl_always[] = {"-q", "-sS", "--max-time", "30", NULL};
    static const char *const wget_always[] = {"--no-config", "-q",           "-e", "use_proxy=on",
                                              "--tries=1",   "--timeout=30", NULL};
    const char *const *always = strcmp(tool, "curl") == 0 ? curl_always : wget_always;
    char *argv[24];
    size_t n = 0;
    argv[n++] = (char *)tool;
    for (size_t i = 0; always[i] != NULL; i++)
        argv[n++] = (char *)always[i];
    for (size_t i = 0; extra[i] != NULL && n < 22; i++)
        argv[n++] = (char *)extra[i];
    argv[n++] = (char *)url;
    argv[n] = NULL;
    run_ok(argv, env, r);
}

START_TEST(test_curl_cli_http)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    char url[256], proxy[64], body[600], hdrs[600];
    out_path(body, sizeof body, "curl-body");
    out_path(hdrs, sizeof hdrs, "curl-headers");
    const char *const options[] = {"-x", proxy_url(p, proxy, sizeof proxy), "-D", hdrs, "-o", body,
                                   NULL};
    struct cmd_result r;
    run_client("curl", options, origin_url(o, "/bytes/100000", url, sizeof url), CLEAN_ENV, &r);
    cmd_result_free(&r);
    assert_pattern_file(body, "curl -x");
    char *head = read_file(hdrs, NULL);
    ck_assert_msg(head != NULL && strstr(head, "HTTP/1.1 200") != NULL, "headers: %s", head);
    ck_assert_msg(strcasestr(head, "Via: 1.1 rlproxy") != NULL,
                  "no Via from rlproxy: did curl bypass the proxy?\n%s", head);
    free(head);
    /* and an upload */
    char upload[600], data[SIZE];
    out_path(upload, sizeof upload, "curl-upload");
    pattern_fill(data, sizeof data, 0);
    FILE *f = fopen(upload, "wb");
    ck_assert(f != NULL && fwrite(data, 1, sizeof data, f) == sizeof data && fclose(f) == 0);
    char at_file[620];
    snprintf(at_file, sizeof at_file, "@%s", upload);
    const char *const post[] = {"-x",    proxy, "--data-binary",
                                at_file, "-H",  "Content-Type: application/octet-stream",
                                NULL};
    run_client("curl", post, origin_url(o, "/sink", url, sizeof url), CLEAN_ENV, &r);
    char want[65];
    sha256_hex(data, sizeof data, want);
    ck_assert_msg(strstr(r.out, want) != NULL, "origin's view of the POST: %s", r.out);
    cmd_result_free(&r);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_curl_cli_proxytunnel)
{
    struct origin *o;
    struct proxy *p = proxy_start_tunnel_to(&o, 1);
    char url[256], proxy[64], body[600];
    out_path(body, sizeof body, "curl-tunnel");
    const char *const options[] = {"--proxytunnel",
                                   "-x",
                                   proxy_url(p, proxy, sizeof proxy),
                                   "--cacert",
                                   harness_ca_path(),
                                   "-o",
                                   body,
                                   NULL};
    struct cmd_result r;
    run_client("curl", options, origin_url(o, "/bytes/100000", url, sizeof url), CLEAN_ENV, &r);
    cmd_result_free(&r);
    assert_pattern_file(body, "curl --proxytunnel");
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_wget_http)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    char url[256], proxy[128], env_proxy[160], body[600], json[600];
    snprintf(env_proxy, sizeof env_proxy, "http_proxy=%s/", proxy_url(p, proxy, sizeof proxy));
    const char *env[] = {"no_proxy", "NO_PROXY", "https_proxy", env_proxy, NULL};
    out_path(body, sizeof body, "wget-body");
    const char *const options[] = {"-O", body, NULL};
    struct cmd_result r;
    run_client("wget", options, origin_url(o, "/bytes/100000", url, sizeof url), env, &r);
    cmd_result_free(&r);
    assert_pattern_file(body, "wget");
    /* proof it went through rlproxy: the origin saw our Via */
    out_path(json, sizeof json, "wget-headers");
    const char *const to_json[] = {"-O", json, NULL};
    run_client("wget", to_json, origin_url(o, "/headers", url, sizeof url), env, &r);
    cmd_result_free(&r);
    char *seen = read_file(json, NULL);
    ck_assert_msg(seen != NULL && strstr(seen, "1.1 rlproxy") != NULL,
                  "origin saw no Via from rlproxy: %s", seen);
    free(seen);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_wget_https)
{
    struct origin *o;
    struct proxy *p = proxy_start_tunnel_to(&o, 1);
    char url[256], proxy[128], env_proxy[160], body[600], ca[700];
    snprintf(env_proxy, sizeof env_proxy, "https_proxy=%s/", proxy_url(p, proxy, sizeof proxy));
    snprintf(ca, sizeof ca, "--ca-certificate=%s", harness_ca_path());
    const char *env[] = {"no_proxy", "NO_PROXY", "http_proxy", env_proxy, NULL};
    out_path(body, sizeof body, "wget-tunnel");
    const char *const options[] = {ca, "-O", body, NULL};
    struct cmd_result r;
    run_client("wget", options, origin_url(o, "/bytes/100000", url, sizeof url), env, &r);
    cmd_result_free(&r);
    assert_pattern_file(body, "wget over https_proxy");
    proxy_stop_with_origin(p, o);
}
END_TEST

/* python3 urllib with an explicit ProxyHandler: prints "status length sha256 via" */
static const char PY_CLIENT[] =
    "import hashlib, ssl, sys, urllib.request\n"
    "proxy, url, ca = sys.argv[1], sys.argv[2], sys.argv[3]\n"
    "ctx = ssl.create_default_context(cafile=ca)\n"
    "opener = urllib.request.build_opener(\n"
    "    urllib.request.ProxyHandler({'http': proxy, 'https': proxy}),\n"
    "    urllib.request.HTTPSHandler(context=ctx))\n"
    "data = sys.argv[4].encode() if len(sys.argv) > 4 else None\n"
    "with opener.open(url, data=data, timeout=30) as r:\n"
    "    body = r.read()\n"
    "    print(r.status, len(body), hashlib.sha256(body).hexdigest(), r.headers.get('Via'))\n"
    "    if data is not None:\n"
    "        print(body.decode())\n";

static void python_fetch(const char *proxy, const char *url, const char *post, struct cmd_result *r)
{
    char *argv[] = {"python3",     "-c",        (char *)PY_CLIENT,
                    (char *)proxy, (char *)url, (char *)harness_ca_path(),
                    (char *)post,  NULL};
    run_ok(argv, CLEAN_ENV, r);
}

START_TEST(test_python_urllib)
{
    struct origin *o = origin_start(0);
    struct origin *tls;
    struct proxy *p = proxy_start_tunnel_to(&tls, 1);
    char url[256], proxy[64], want[128], sha[65];
    proxy_url(p, proxy, sizeof proxy);
    pattern_sha256_hex(SIZE, sha);
    snprintf(want, sizeof want, "200 %d %s", SIZE, sha);
    struct cmd_result r;
    python_fetch(proxy, origin_url(o, "/bytes/100000", url, sizeof url), NULL, &r);
    ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "urllib http: %s", r.out);
    ck_assert_msg(strstr(r.out, "1.1 rlproxy") != NULL, "urllib http: no Via: %s", r.out);
    cmd_result_free(&r);
    python_fetch(proxy, origin_url(tls, "/bytes/100000", url, sizeof url), NULL, &r);
    ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "urllib https: %s", r.out);
    cmd_result_free(&r);
    python_fetch(proxy, origin_url(o, "/sink", url, sizeof url), "form=field&x=1", &r);
    ck_assert_msg(strstr(r.out, "\"length\":14") != NULL && strstr(r.out, "\"method\":\"POST\""),
                  "urllib POST: %s", r.out);
    cmd_result_free(&r);
    proxy_stop_with_origin(p, tls);
    origin_stop(o);
}
END_TEST

HARNESS_MAIN("clients", 0, test_curl_cli_http, test_curl_cli_proxytunnel, test_wget_http,
             test_wget_https, test_python_urllib)
