/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* config_text.c — what the words of a config mean, below the level of keys: numbers with units,
 * address blocks, listen addresses, host names and patterns, and the short forms messages echo.
 * Knows nothing of the table or of YAML. */

#include "config_text.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* ---- small parsers ---- */

/* Decimal digits only (no sign, space or base prefix), overflow-checked. *end gets the first
 * non-digit. */
static int parse_digits(const char *text, uint64_t *out, const char **end)
{
    uint64_t value = 0;
    const char *p = text;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (value > (UINT64_MAX - digit) / 10)
            return -1;
        value = value * 10 + digit;
    }
    if (p == text)
        return -1;
    *out = value;
    *end = p;
    return 0;
}

int config_text_number(const char *text, uint64_t *out)
{
    const char *end;
    return parse_digits(text, out, &end) == 0 && *end == '\0' ? 0 : -1;
}

int config_text_all_digits(const char *text)
{
    if (*text == '\0')
        return 0;
    for (; *text != '\0'; text++)
        if (*text < '0' || *text > '9')
            return 0;
    return 1;
}

struct unit {
    const char *suffix;
    uint64_t factor;
};

static const struct unit duration_units[] = {
    {"ms", 1}, {"s", MS_PER_S}, {"m", MS_PER_M}, {"h", MS_PER_H}, {"d", MS_PER_D}, {NULL, 0},
};

/* IEC powers of 1024 and SI powers of 1000 ("kB" is the SI spelling, "KB" the common one). */
static const struct unit size_units[] = {
    {"", 1},      {"B", 1},     {"KiB", KIB},    {"MiB", MIB},       {"GiB", 1024 * MIB},
    {"KB", 1000}, {"kB", 1000}, {"MB", 1000000}, {"GB", 1000000000}, {NULL, 0},
};

/* Digits then one of the units: the form is right even if the value overflows. */
static int has_unit_form(const char *text, const struct unit *units)
{
    const char *p = text;
    while (*p >= '0' && *p <= '9')
        p++;
    for (const struct unit *u = units; p != text && u->suffix != NULL; u++)
        if (strcmp(p, u->suffix) == 0)
            return 1;
    return 0;
}

static int parse_with_unit(const char *text, const struct unit *units, uint64_t *out)
{
    uint64_t value;
    const char *end;
    if (parse_digits(text, &value, &end) != 0)
        return -1;
    for (const struct unit *u = units; u->suffix != NULL; u++) {
        if (strcmp(end, u->suffix) != 0)
            continue;
        if (value > UINT64_MAX / u->factor)
            return -1;
        *out = value * u->factor;
        return 0;
    }
    return -1;
}

int config_parse_duration_ms(const char *text, uint64_t *out)
{
    /* A bare number is ambiguous (seconds? ms?) so only 0, which means the same in every unit, may
     * go without one. */
    if (strcmp(text, "0") == 0) {
        *out = 0;
        return 0;
    }
    return parse_with_unit(text, duration_units, out);
}

int config_parse_size(const char *text, uint64_t *out)
{
    return parse_with_unit(text, size_units, out);
}

/* The largest unit that divides the value exactly, so messages read "100ms", "5m", "1MiB". */
static void format_with_unit(uint64_t value, const struct unit *units, size_t n, char *buf,
                             size_t len)
{
    const char *suffix = units[0].suffix;
    uint64_t factor = 1;
    for (size_t i = 0; i < n; i++)
        if (value != 0 && value % units[i].factor == 0 && units[i].factor >= factor) {
            factor = units[i].factor;
            suffix = units[i].suffix;
        }
    snprintf(buf, len, "%llu%s", (unsigned long long)(value / factor), value == 0 ? "" : suffix);
}

void config_text_format_duration(uint64_t ms, char *buf, size_t len)
{
    format_with_unit(ms, duration_units, 5, buf, len);
}

void config_text_format_size(uint64_t bytes, char *buf, size_t len)
{
    static const struct unit iec[] = {{"", 1}, {"KiB", KIB}, {"MiB", MIB}, {"GiB", 1024 * MIB}};
    format_with_unit(bytes, iec, 4, buf, len);
}

/* Values are echoed in messages; keep them short and free of control characters. len >= 8. */
const char *config_text_printable(const char *text, char *buf, size_t len)
{
    size_t n = strlen(text), keep = n < len ? n : len - 4;
    for (size_t i = 0; i < keep; i++)
        buf[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
    if (keep < n)
        memcpy(buf + keep, "...", 4);
    else
        buf[keep] = '\0';
    return buf;
}

int config_text_fail(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int config_text_fail(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why != NULL && why_len > 0)
        vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    return -1;
}

int config_text_choice(const char *const *choices, const char *text, int *out, char *why,
                       size_t why_len)
{
    char list[256] = "", shown[64];
    for (size_t i = 0; choices[i] != NULL; i++) {
        if (strcmp(text, choices[i]) == 0) {
            *out = (int)i;
            return 0;
        }
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i > 0 ? ", " : "", choices[i]);
    }
    return config_text_fail(why, why_len, "\"%s\" is not one of %s",
                            config_text_printable(text, shown, sizeof shown), list);
}

int config_text_store_string(void *dst, const char *text, char *why, size_t why_len)
{
    char *copy = strdup(text);
    if (copy == NULL)
        return config_text_fail(why, why_len, "out of memory");
    free(*(char **)dst);
    *(char **)dst = copy;
    return 0;
}

/* ---- CIDR blocks ---- */

int cidr_parse(const char *text, struct cidr *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t host_len = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (host_len == 0 || host_len >= sizeof host)
        return -1;
    memcpy(host, text, host_len);
    host[host_len] = '\0';

    struct cidr block = {0};
    unsigned max_prefix;
    if (inet_pton(AF_INET, host, block.addr) == 1) {
        block.family = AF_INET;
        max_prefix = 32;
    } else if (inet_pton(AF_INET6, host, block.addr) == 1) {
        block.family = AF_INET6;
        max_prefix = 128;
    } else {
        return -1;
    }
    uint64_t prefix = max_prefix;
    if (slash != NULL && (config_text_number(slash + 1, &prefix) != 0 || prefix > max_prefix))
        return -1;
    block.prefix = (unsigned)prefix;
    /* Host bits are masked off rather than refused: "10.1.2.3/8" can only mean 10.0.0.0/8. */
    for (unsigned bit = block.prefix; bit < max_prefix; bit++)
        block.addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    *out = block;
    return 0;
}

static int prefix_matches(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

/* A client is the same client whether a dual-stack socket shows it as ::ffff:a.b.c.d or an IPv4
 * socket as a.b.c.d: both match IPv4 blocks, and both match IPv6 blocks in their mapped form (so
 * ::/0 matches every client, and ::ffff:0:0/96 every IPv4 client). */
int cidr_contains(const struct cidr *cidr, const struct sockaddr *addr)
{
    static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    uint8_t v6[16];
    if (addr->sa_family == AF_INET) {
        memcpy(v6, mapped_prefix, 12);
        memcpy(v6 + 12, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, 4);
    } else if (addr->sa_family == AF_INET6) {
        memcpy(v6, &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr, 16);
    } else {
        return 0;
    }
    int is_v4 = memcmp(v6, mapped_prefix, 12) == 0;
    if (cidr->family == AF_INET)
        return is_v4 && cidr->prefix <= 32 && prefix_matches(cidr->addr, v6 + 12, cidr->prefix);
    if (cidr->family == AF_INET6)
        return cidr->prefix <= 128 && prefix_matches(cidr->addr, v6, cidr->prefix);
    return 0;
}

/* ---- listen addresses ---- */

/* Split "host:port" / "[v6]:port" into host text and port; -1 with a reason. */
static int split_host_port(const char *text, char *host, size_t host_len, int *bracketed,
                           uint64_t *port, char *why, size_t why_len)
{
    const char *host_start = text, *host_end, *colon;
    *bracketed = text[0] == '[';
    if (*bracketed) {
        host_start = text + 1;
        host_end = strchr(host_start, ']');
        if (host_end == NULL || host_end[1] != ':')
            return config_text_fail(
                why, why_len, "an IPv6 listen address is written [address]:port, as in [::1]:3128");
        colon = host_end + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return config_text_fail(why, why_len,
                                    "needs an address and a port, as in 127.0.0.1:3128");
        host_end = colon;
        if (memchr(text, ':', (size_t)(colon - text)) != NULL)
            return config_text_fail(why, why_len,
                                    "an IPv6 address goes in brackets, as in [::1]:3128");
    }
    if (config_text_number(colon + 1, port) != 0 || *port > 65535)
        return config_text_fail(why, why_len, "needs a port from 0 to 65535 after the colon");
    size_t n = (size_t)(host_end - host_start);
    if (n == 0 || n >= host_len)
        return config_text_fail(why, why_len, "listen needs an IP address");
    memcpy(host, host_start, n);
    host[n] = '\0';
    return 0;
}

int config_text_listen(const char *text, struct listen_addr *out, char *why, size_t why_len)
{
    char host[INET6_ADDRSTRLEN + 1];
    int bracketed = 0;
    uint64_t port = 0; /* set by split_host_port(); GCC -O3 cannot see that */
    if (split_host_port(text, host, sizeof host, &bracketed, &port, why, why_len) != 0)
        return -1;
    memset(out, 0, sizeof *out);
    if (!bracketed) {
        /* Only "localhost" is resolved: a name that resolves differently tomorrow has no place in a
         * bind address, and getaddrinfo() would make loading depend on DNS. */
        const char *ip = strcmp(host, "*") == 0           ? "0.0.0.0"
                         : strcmp(host, "localhost") == 0 ? "127.0.0.1"
                                                          : host;
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
        if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1)
            return config_text_fail(why, why_len, "listen needs an IP address (or * or localhost)");
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->addr_len = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return config_text_fail(
                why, why_len, "listen needs an IP address; [%s] is not an IPv6 address", host);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->addr_len = sizeof *sin6;
    }
    util_format_sockaddr((const struct sockaddr *)&out->addr, out->text, sizeof out->text);
    return 0;
}

/* A host name or "*.suffix" into hp (zeroed first); 0 or -1. */
int config_text_host_name(const char *text, struct host_pattern *hp)
{
    memset(hp, 0, sizeof *hp);
    const char *name = text;
    if (strncmp(text, "*.", 2) == 0) {
        hp->wildcard = 1;
        name = text + 1; /* keep the dot: "*.internal" matches "a.internal", not "xinternal" */
    }
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof hp->text || (hp->wildcard && len < 2))
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_';
        if (!ok)
            return -1;
        hp->text[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    return 0;
}

int host_pattern_match(const struct host_pattern *patterns, size_t count, const char *host)
{
    struct sockaddr_storage ss;
    int is_address = 0;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        ss.ss_family = AF_INET;
        is_address = 1;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        ss.ss_family = AF_INET6;
        is_address = 1;
    }
    size_t host_len = strlen(host);
    while (host_len > 0 && host[host_len - 1] == '.') /* "a.internal." is "a.internal" */
        host_len--;
    for (size_t i = 0; i < count; i++) {
        const struct host_pattern *p = &patterns[i];
        if (p->is_cidr) {
            if (is_address && cidr_contains(&p->cidr, (const struct sockaddr *)&ss))
                return 1;
            continue;
        }
        if (is_address && p->wildcard)
            continue; /* a name pattern never matches an address literal */
        size_t len = strlen(p->text);
        if (p->wildcard) {
            if (host_len > len && strncasecmp(host + host_len - len, p->text, len) == 0)
                return 1;
        } else if (host_len == len && strncasecmp(host, p->text, len) == 0) {
            return 1;
        }
    }
    return 0;
}

int config_text_is_duration_form(const char *text) { return has_unit_form(text, duration_units); }

int config_text_is_size_form(const char *text) { return has_unit_form(text, size_units); }

int config_listen_is_loopback(const struct listen_addr *la)
{
    if (la->addr.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&la->addr)->sin_addr.s_addr) >> 24) == 127;
    if (la->addr.ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&la->addr)->sin6_addr);
    return 0;
}
