/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_access.c — address blocks: cidr_parse() (what access.allow accepts) and cidr_contains()
 * (which clients a block admits), including IPv4 clients seen through dual-stack IPv6 sockets. */

#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "unit.h"

/* ---- cidr_parse ---- */

struct parse_case {
    const char *text;
    int family;
    unsigned prefix;
    const char *network; /* the address after host bits are masked off */
};

static const struct parse_case good[] = {
    {"10.0.0.0/8", AF_INET, 8, "10.0.0.0"},
    {"192.168.1.7", AF_INET, 32, "192.168.1.7"},
    {"192.168.1.7/32", AF_INET, 32, "192.168.1.7"},
    {"0.0.0.0/0", AF_INET, 0, "0.0.0.0"},
    {"255.255.255.255/0", AF_INET, 0, "0.0.0.0"},
    {"10.1.2.3/8", AF_INET, 8, "10.0.0.0"},
    {"10.255.255.255/9", AF_INET, 9, "10.128.0.0"},
    {"172.16.5.4/12", AF_INET, 12, "172.16.0.0"},
    {"::1/128", AF_INET6, 128, "::1"},
    {"::1", AF_INET6, 128, "::1"},
    {"::/0", AF_INET6, 0, "::"},
    {"2001:db8::1/32", AF_INET6, 32, "2001:db8::"},
    {"2001:db8:ffff:ffff::/33", AF_INET6, 33, "2001:db8:8000::"},
    {"fe80::1:2:3:4/64", AF_INET6, 64, "fe80::"},
    {"::ffff:10.0.0.0/104", AF_INET6, 104, "::ffff:10.0.0.0"},
};

START_TEST(test_parse_good)
{
    const struct parse_case *t = &good[_i];
    struct cidr c;
    memset(&c, 0xaa, sizeof c);
    ck_assert_msg(cidr_parse(t->text, &c) == 0, "\"%s\" refused", t->text);
    ck_assert_int_eq(c.family, t->family);
    ck_assert_uint_eq(c.prefix, t->prefix);
    uint8_t want[16] = {0};
    ck_assert_int_eq(inet_pton(t->family, t->network, want), 1);
    ck_assert_mem_eq(c.addr, want, t->family == AF_INET ? 4 : 16);
    if (t->family == AF_INET) /* unused bytes are zero, so blocks compare with memcmp */
        ck_assert_mem_eq(c.addr + 4, want + 4, 12);
}
END_TEST

static const char *const bad[] = {
    "10.0.0.0/33",
    "1.2.3",
    "::1/129",
    "",
    "10.0.0.0/8/8",
    "/8",
    "10.0.0.0/",
    "10.0.0.0/-1",
    "10.0.0.0/+8",
    " 10.0.0.0/8",
    "10.0.0.0/8 ",
    "10.0.0.0 /8",
    "300.0.0.0/8",
    "a.b.c.d",
    "localhost",
    "10.0.0.0/8a",
    "10.0.0.0/0x8",
    "10.0.0.0/99999999999999999999999",
    "::1/1280",
    "[::1]/128",
    "1.2.3.4.5",
    "2001:db8::/32/",
    ":::/0",
    "10.0.0.0\n/8",
    "0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000/64", /* longer than any
                                                                              address */
};

START_TEST(test_parse_bad)
{
    struct cidr c;
    memset(&c, 0x55, sizeof c);
    struct cidr before = c;
    ck_assert_msg(cidr_parse(bad[_i], &c) == -1, "\"%s\" accepted", bad[_i]);
    ck_assert_mem_eq(&c, &before, sizeof c); /* untouched on error */
}
END_TEST

/* ---- cidr_contains ---- */

/* A socket address for text: "1.2.3.4" is AF_INET, anything with a colon AF_INET6 (so
 * "::ffff:1.2.3.4" is the IPv4-mapped form a dual-stack socket reports). */
static struct sockaddr_storage addr_of(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(40000);
        ck_assert_int_eq(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(40000);
        ck_assert_int_eq(inet_pton(AF_INET, text, &sin->sin_addr), 1);
    }
    return ss;
}

struct contains_case {
    const char *block, *client;
    int inside;
};

static const struct contains_case contains[] = {
    {"10.0.0.0/8", "10.0.0.1", 1},
    {"10.0.0.0/8", "10.255.255.255", 1},
    {"10.0.0.0/8", "11.0.0.0", 0},
    {"10.0.0.0/8", "9.255.255.255", 0},
    {"10.0.0.0/9", "10.127.255.255", 1},
    {"10.0.0.0/9", "10.128.0.0", 0},
    {"192.168.1.7/32", "192.168.1.7", 1},
    {"192.168.1.7/32", "192.168.1.6", 0},
    {"192.168.1.7", "192.168.1.8", 0},
    {"0.0.0.0/0", "203.0.113.9", 1},
    {"0.0.0.0/0", "::ffff:203.0.113.9", 1}, /* IPv4 via a dual-stack socket */
    {"0.0.0.0/0", "2001:db8::1", 0},        /* a real IPv6 client is no IPv4 client */
    {"0.0.0.0/0", "::", 0},
    {"127.0.0.0/8", "::ffff:127.0.0.1", 1},
    {"127.0.0.0/8", "::ffff:128.0.0.1", 0},
    {"127.0.0.0/8", "::1", 0},
    {"127.0.0.0/8", "::7f00:1", 0}, /* IPv4-compatible (deprecated) is not mapped */
    {"10.0.0.0/8", "2001:db8::a00:1", 0},
    {"::1/128", "::1", 1},
    {"::1/128", "::2", 0},
    {"::1/128", "127.0.0.1", 0},
    {"2001:db8::/32", "2001:db8:ffff::1", 1},
    {"2001:db8::/32", "2001:db9::1", 0},
    {"2001:db8::/33", "2001:db8:7fff::1", 1},
    {"2001:db8::/33", "2001:db8:8000::1", 0},
    {"fe80::/64", "fe80::1234:5678:9abc:def0", 1},
    {"fe80::/65", "fe80::8000:0:0:1", 0},
    {"::/0", "2001:db8::1", 1},
    {"::/0", "10.0.0.1", 1}, /* documented: IPv6 blocks see IPv4 clients in their mapped form */
    {"::ffff:0:0/96", "10.0.0.1", 1},
    {"::ffff:0:0/96", "::ffff:10.0.0.1", 1},
    {"::ffff:0:0/96", "2001:db8::1", 0},
    {"::ffff:10.0.0.0/104", "10.1.2.3", 1},
    {"::ffff:10.0.0.0/104", "11.1.2.3", 0},
};

START_TEST(test_contains)
{
    const struct contains_case *t = &contains[_i];
    struct cidr c;
    ck_assert_int_eq(cidr_parse(t->block, &c), 0);
    struct sockaddr_storage ss = addr_of(t->client);
    ck_assert_msg(cidr_contains(&c, (const struct sockaddr *)&ss) == t->inside,
                  "%s in %s should be %d", t->client, t->block, t->inside);
}
END_TEST

START_TEST(test_contains_other_families)
{
    struct cidr c;
    ck_assert_int_eq(cidr_parse("0.0.0.0/0", &c), 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    ck_assert_int_eq(cidr_contains(&c, (const struct sockaddr *)&sun), 0);
    ck_assert_int_eq(cidr_parse("::/0", &c), 0);
    ck_assert_int_eq(cidr_contains(&c, (const struct sockaddr *)&sun), 0);
    struct cidr zeroed = {0}; /* never parsed: matches nothing */
    struct sockaddr_storage ss = addr_of("10.0.0.1");
    ck_assert_int_eq(cidr_contains(&zeroed, (const struct sockaddr *)&ss), 0);
}
END_TEST

static Suite *access_suite(void)
{
    Suite *s = suite_create("access");
    TCase *t = tcase_create("cidr_parse");
    tcase_add_loop_test(t, test_parse_good, 0, sizeof good / sizeof good[0]);
    tcase_add_loop_test(t, test_parse_bad, 0, sizeof bad / sizeof bad[0]);
    suite_add_tcase(s, t);
    t = unit_add_tcase(s, tcase_create("cidr_contains"), UNIT_TESTS(test_contains_other_families));
    tcase_add_loop_test(t, test_contains, 0, sizeof contains / sizeof contains[0]);
    return s;
}

int main(void)
{
    return unit_run(access_suite());
}
