/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_stream.c — bodies stream through rlproxy both ways without being held in memory (issue 2,
 * item 5), and an upstream that dies mid-body is never passed on as a complete response (item 7).
 * Peak RSS (VmHWM) of a fresh rlproxy is checked after each big transfer; the figures are printed
 * to the test log. RLPROXY_QUICK=1 shrinks the sizes, RLPROXY_SANITIZERS=1 skips the RSS limit. */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#define RSS_LIMIT_KIB (32 * 1024)
#define BIG_TIMEOUT_MS 600000L

/* fetch through the proxy, which must succeed at the transport level; prints the throughput */
static void timed_fetch(const struct fetch_req *rq, struct fetch_res *rs, uint64_t size,
                        const char *label)
{
    uint64_t t0 = now_ms();
    fetch(rq, rs);
    uint64_t ms = now_ms() - t0;
    ck_assert_msg(rs->rc == CURLE_OK, "%s: curl error %d: %s", label, (int)rs->rc, rs->err);
    printf("stream: %s: %llu bytes in %llu ms\n", label, (unsigned long long)size,
           (unsigned long long)ms);
}

static void download(struct fixture f, const char *path, uint64_t size, const char *label)
{
    char url[256];
    struct fetch_req rq = {.url = origin_url(f.o, path, url, sizeof url),
                           .proxy_port = f.p->port,
                           .check_pattern = 1,
                           .timeout_ms = BIG_TIMEOUT_MS};
    struct fetch_res rs;
    timed_fetch(&rq, &rs, size, label);
    ck_assert_int_eq(rs.status, 200);
    ck_assert_msg(rs.received == size, "%s: got %llu bytes, want %llu", label,
                  (unsigned long long)rs.received, (unsigned long long)size);
    ck_assert_msg(rs.pattern_bad < 0, "%s: wrong byte at offset %lld", label,
                  (long long)rs.pattern_bad);
    fetch_free(&rs);
}

static void upload(struct fixture f, const char *path, uint64_t size, int chunked,
                   const char *label)
{
    char url[256];
    struct fetch_req rq = {.url = origin_url(f.o, path, url, sizeof url),
                           .method = "POST",
                           .proxy_port = f.p->port,
                           .gen_upload = (int64_t)size,
                           .chunked = chunked,
                           .timeout_ms = BIG_TIMEOUT_MS};
    struct fetch_res rs;
    timed_fetch(&rq, &rs, size, label);
    ck_assert_msg(rs.status == 200, "%s: status %ld: %s", label, rs.status, rs.body);
    ck_assert_uint_eq(rs.uploaded, size);
    long long len = -1;
    char *sha = json_get_str(rs.body, "sha256");
    ck_assert_msg(json_get_int(rs.body, "length", &len) == 0 && len == (long long)size,
                  "%s: origin got %lld bytes of %llu", label, len, (unsigned long long)size);
    ck_assert_msg(sha != NULL && strcmp(sha, rs.upload_sha256) == 0,
                  "%s: origin's sha256 %s, client sent %s", label, sha, rs.upload_sha256);
    if (!chunked) /* a known length stays a known length (Content-Length is end-to-end) */
        ck_assert_msg(json_get_bool(rs.body, "chunked") == 0, "%s: re-chunked", label);
    free(sha);
    fetch_free(&rs);
}

/* The three ways an origin frames a body; the peak RSS is checked after the framings whose size
 * is large enough to show a buffered body. */
static const struct {
    uint64_t size, quick_size;
    const char *query, *label, *rss_after;
} downloads[] = {
    {1ull << 30, 32ull << 20, "", "download (Content-Length)", "after 1 GiB download"},
    {256ull << 20, 8ull << 20, "?chunked=1", "download (chunked)", "after chunked download"},
    {64ull << 20, 4ull << 20, "?close=1", "download (close-delimited)", NULL},
};

START_TEST(test_download)
{
    uint64_t size = harness_size(downloads[_i].size, downloads[_i].quick_size);
    char path[64];
    snprintf(path, sizeof path, "/bytes/%llu%s", (unsigned long long)size, downloads[_i].query);
    struct fixture f = fixture_up(0, NULL);
    download(f, path, size, downloads[_i].label);
    if (downloads[_i].rss_after != NULL)
        assert_peak_rss_below(f.p, RSS_LIMIT_KIB, downloads[_i].rss_after);
    fixture_down(f);
}
END_TEST

/* However rlproxy frames a close-delimited body, a raw socket reads all of it */
START_TEST(test_download_close_delimited_raw)
{
    struct fixture f = fixture_up(0, NULL);
    struct raw *c = raw_connect(f.p->port);
    char *req = proxy_request("GET", f.o, "/bytes/200000?close=1", NULL);
    raw_send_str(c, req);
    struct http_response r;
    int rc = raw_read_response(c, &r, RESP_PATTERN, 30000);
    ck_assert_msg(rc == RAW_OK, "close-delimited via raw socket: %s", raw_result_name(rc));
    ck_assert_uint_eq(r.body_len, 200000);
    ck_assert_int_eq(r.pattern_bad, -1);
    http_response_free(&r);
    free(req);
    raw_close(c);
    fixture_down(f);
}
END_TEST

/* Both framings of a request body; in the last row the origin sleeps 2 s before reading, so
 * rlproxy must push back on the client, not buffer. */
static const struct {
    const char *path;
    uint64_t size, quick_size;
    int chunked;
    const char *label, *rss_after;
} uploads[] = {
    {"/sink", 200ull << 20, 16ull << 20, 1, "upload (chunked)", "after chunked upload"},
    {"/sink", 200ull << 20, 16ull << 20, 0, "upload (Content-Length)",
     "after Content-Length upload"},
    {"/sink?delay=2", 128ull << 20, 8ull << 20, 0, "upload to a slow reader",
     "after upload to a slow reader"},
};

START_TEST(test_upload)
{
    struct fixture f = fixture_up(0, NULL);
    upload(f, uploads[_i].path, harness_size(uploads[_i].size, uploads[_i].quick_size),
           uploads[_i].chunked, uploads[_i].label);
    assert_peak_rss_below(f.p, RSS_LIMIT_KIB, uploads[_i].rss_after);
    fixture_down(f);
}
END_TEST

/* The client doesn't read for 2 s while the origin could send hundreds of MiB. */
START_TEST(test_download_to_slow_reader)
{
    uint64_t size = harness_size(512ull << 20, 32ull << 20);
    struct fixture f = fixture_up(0, NULL);
    struct raw *c = raw_connect(f.p->port);
    char path[64];
    snprintf(path, sizeof path, "/bytes/%llu", (unsigned long long)size);
    char *req = proxy_request("GET", f.o, path, NULL);
    raw_send_str(c, req);
    sleep_ms(2000);
    assert_peak_rss_below(f.p, RSS_LIMIT_KIB, "while the client does not read");
    struct http_response r;
    int rc = raw_read_response(c, &r, RESP_PATTERN, (int)BIG_TIMEOUT_MS);
    ck_assert_msg(rc == RAW_OK, "slow reader: %s", raw_result_name(rc));
    ck_assert_uint_eq(r.body_len, size);
    ck_assert_int_eq(r.pattern_bad, -1);
    http_response_free(&r);
    free(req);
    raw_close(c);
    assert_peak_rss_below(f.p, RSS_LIMIT_KIB, "after the slow reader caught up");
    fixture_down(f);
}
END_TEST

/* An origin that closes mid-body, with a Content-Length and chunked */
static const char *const TRUNCATED[] = {"/truncate", "/truncate?chunked=1"};

static void truncated_via_curl(struct fixture f, const char *path)
{
    char url[256];
    struct fetch_req rq = {.url = origin_url(f.o, path, url, sizeof url),
                           .proxy_port = f.p->port,
                           .timeout_ms = 20000};
    struct fetch_res rs;
    fetch(&rq, &rs);
    /* a 5xx before any byte is honest too; a 200 that curl accepts as complete is not */
    ck_assert_msg(rs.rc != CURLE_OK || rs.status >= 500,
                  "%s: truncated body presented as complete (%zu bytes, status %ld)", path,
                  rs.body_len, rs.status);
    ck_assert_msg(rs.rc != CURLE_OPERATION_TIMEDOUT, "%s: client left hanging", path);
    fetch_free(&rs);
}

static void truncated_via_raw(struct fixture f, const char *path)
{
    struct raw *c = raw_connect(f.p->port);
    char *req = proxy_request("GET", f.o, path, NULL);
    raw_send_str(c, req);
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, 20000);
    ck_assert_msg(rc != RAW_TIMEOUT, "%s: the client was left waiting", path);
    ck_assert_msg(rc != RAW_OK || r.status >= 500,
                  "%s: a truncated body arrived as a complete %d response of %zu bytes", path,
                  r.status, r.body_len);
    if (rc != RAW_OK)
        ck_assert_msg(raw_wait_closed(c, 3000), "%s: connection not closed", path);
    http_response_free(&r);
    free(req);
    raw_close(c);
}

/* A body the origin cut short reaches neither client (libcurl, a raw socket) as complete */
static void (*const truncated_clients[])(struct fixture, const char *) = {truncated_via_curl,
                                                                          truncated_via_raw};

START_TEST(test_truncated_upstream_fails_client)
{
    struct fixture f = fixture_up(0, NULL);
    for (size_t i = 0; i < sizeof TRUNCATED / sizeof TRUNCATED[0]; i++) {
        truncated_clients[_i](f, TRUNCATED[i]);
        fixture_still_serving(f, 1000);
    }
    fixture_down(f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stream");
    TCase *big = harness_tcase("big", 900);
    tcase_add_loop_test(big, test_download, 0, (int)(sizeof downloads / sizeof downloads[0]));
    tcase_add_loop_test(big, test_upload, 0, (int)(sizeof uploads / sizeof uploads[0]));
    unit_add_tcase(s, big,
                   UNIT_TESTS(test_download_close_delimited_raw, test_download_to_slow_reader));
    TCase *truncate = harness_tcase("truncate", 0);
    tcase_add_loop_test(truncate, test_truncated_upstream_fails_client, 0,
                        (int)(sizeof truncated_clients / sizeof truncated_clients[0]));
    suite_add_tcase(s, truncate);
    return harness_run_suite(s);
}
