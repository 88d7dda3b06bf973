/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limiter_key.c — see limiter_key.h. */
#include "limiter_key.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "credential.h"
#include "limiter_state.h"
#include "limiter_types.h"
#include "util.h"

uint64_t limiter_key_hash(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void client_ip(const struct sockaddr *sa, char *buf, size_t len)
{
    char text[80];
    util_format_sockaddr(sa, text, sizeof text);
    /* drop ":port" (and the brackets of an IPv6 address) */
    char *colon = strrchr(text, ':');
    if (colon != NULL)
        *colon = '\0';
    const char *start = text;
    size_t n = strlen(text);
    if (text[0] == '[' && n >= 2 && text[n - 1] == ']') {
        text[n - 1] = '\0';
        start = text + 1;
    }
    snprintf(buf, len, "%s", start);
}

/* key: header:NAME's value as "h:" and hex, under `credential_key` (absent: the empty value). */
static void header_credential(const struct rate_rule *rule, const struct limiter_request *r,
                              const struct credential_key *credential_key,
                              char text[CREDENTIAL_TEXT_SIZE])
{
    size_t len = 0;
    const char *value =
        r->find_header != NULL ? r->find_header(r->headers, rule->key_header, &len) : NULL;
    credential_text(credential_key, value, value != NULL ? len : 0, text);
}

size_t limiter_key_build(const struct rate_rule *rule, const struct limiter_request *r,
                         const struct credential_key *credential_key, char *key)
{
    char ip[80], credential[CREDENTIAL_TEXT_SIZE];
    int n = 0;
    switch (rule->key) {
    case RATE_KEY_CLIENT:
        if (r->client_ip != NULL) { /* formatted once per connection by the caller */
            size_t len = strlen(r->client_ip);
            if (len >= KEY_MAX)
                len = KEY_MAX - 1;
            memcpy(key, r->client_ip, len);
            key[len] = '\0';
            return len;
        }
        client_ip(r->client, ip, sizeof ip);
        n = snprintf(key, KEY_MAX, "%s", ip);
        break;
    case RATE_KEY_HOST:
        n = snprintf(key, KEY_MAX, "%s", r->host);
        break;
    case RATE_KEY_CLIENT_HOST:
        if (r->client_ip == NULL)
            client_ip(r->client, ip, sizeof ip);
        n = snprintf(key, KEY_MAX, "%s %s", r->client_ip != NULL ? r->client_ip : ip, r->host);
        break;
    case RATE_KEY_USER:
        n = snprintf(key, KEY_MAX, "%s", r->user ? r->user : "-");
        break;
    case RATE_KEY_GLOBAL:
        n = 0;
        key[0] = '\0';
        break;
    case RATE_KEY_HEADER: /* the value only as its keyed hash: keys show up in logs and Redis */
        header_credential(rule, r, credential_key, credential);
        n = snprintf(key, KEY_MAX, "%s", credential);
        break;
    case RATE_KEY_HOST_HEADER:
        header_credential(rule, r, credential_key, credential);
        n = snprintf(key, KEY_MAX, "%s %s", r->host, credential);
        break;
    }
    if (n < 0)
        n = 0;
    size_t len = (size_t)n < KEY_MAX ? (size_t)n : KEY_MAX - 1;
    /* host names compare without case */
    if (rule->key == RATE_KEY_HOST || rule->key == RATE_KEY_CLIENT_HOST ||
        rule->key == RATE_KEY_HOST_HEADER)
        for (size_t i = 0; i < len; i++)
            if (key[i] >= 'A' && key[i] <= 'Z')
                key[i] = (char)(key[i] - 'A' + 'a');
    return len;
}

int limiter_key_matches(const struct rate_rule *rule, const struct limiter_request *r)
{
    if (rule->match_client_count > 0) {
        int hit = 0;
        for (size_t i = 0; i < rule->match_client_count && !hit; i++)
            hit = cidr_contains(&rule->match_client[i], r->client);
        if (!hit)
            return 0;
    }
    if (rule->match_host_count > 0 &&
        !host_pattern_match(rule->match_host, rule->match_host_count, r->host))
        return 0;
    if (rule->match_method_count > 0) {
        int hit = 0;
        for (size_t i = 0; i < rule->match_method_count && !hit; i++)
            hit = strcmp(rule->match_method[i], r->method) == 0;
        if (!hit)
            return 0;
    }
    if (rule->match_path_prefix != NULL) {
        size_t n = strlen(rule->match_path_prefix);
        if (r->path_len < n || memcmp(r->path, rule->match_path_prefix, n) != 0)
            return 0;
    }
    if (rule->match_user_count > 0) {
        int hit = 0;
        for (size_t i = 0; i < rule->match_user_count && !hit; i++)
            hit = r->user != NULL && strcmp(rule->match_user[i], r->user) == 0;
        if (!hit)
            return 0;
    }
    return 1;
}

/* cost_header's value: a whole number from 1 to the limit; 0 when it is none. */
static uint32_t parse_cost(const char *value, size_t len, uint32_t limit)
{
    uint64_t cost = 0;
    if (len == 0 || len > 10)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9')
            return 0;
        cost = cost * 10 + (uint64_t)(value[i] - '0');
    }
    return cost >= 1 && cost <= limit ? (uint32_t)cost : 0;
}

/* The units a request takes: its cost_header's value when the rule names one and it is there,
 * else the rule's cost; 0 when the header's value is not a cost. */
uint32_t limiter_key_cost(const struct rate_rule *rule, const struct limiter_request *r)
{
    uint32_t cost = rule->cost > 0 ? rule->cost : 1; /* 0 only in a rule not made by config.c */
    if (rule->cost_header[0] == '\0' || r->find_header == NULL)
        return cost;
    size_t len = 0;
    const char *value = r->find_header(r->headers, rule->cost_header, &len);
    return value != NULL ? parse_cost(value, len, rule->limit) : cost;
}

/* The request's weight_header value when the rule names one and it is there; WEIGHT_UNSAID else
 * (weights by fair_by value are looked up when the request joins a queue); 0 when it is no
 * weight. */
uint32_t limiter_key_weight(const struct rate_rule *rule, const struct limiter_request *r)
{
    if (rule->weight_header[0] == '\0' || r->find_header == NULL)
        return WEIGHT_UNSAID;
    size_t len = 0;
    const char *value = r->find_header(r->headers, rule->weight_header, &len);
    return value != NULL ? parse_cost(value, len, RATE_WEIGHT_MAX) : WEIGHT_UNSAID;
}

/* The value of the rule's fair_by for the request: whose turn it is. */
size_t limiter_key_fair_value(const struct rate_rule *p, const struct limiter_request *r,
                              const struct credential_key *credential_key, char *out, size_t len)
{
    switch (p->fair_by) {
    case RATE_FAIR_CLIENT:
        if (r->client_ip != NULL)
            snprintf(out, len, "%s", r->client_ip);
        else
            client_ip(r->client, out, len);
        break;
    case RATE_FAIR_USER:
        snprintf(out, len, "%s", r->user != NULL ? r->user : "-");
        break;
    case RATE_FAIR_HEADER: {
        char text[CREDENTIAL_TEXT_SIZE];
        size_t value_len = 0;
        const char *value =
            r->find_header != NULL ? r->find_header(r->headers, p->fair_header, &value_len) : NULL;
        credential_text(credential_key, value, value != NULL ? value_len : 0, text);
        snprintf(out, len, "%s", text);
        break;
    }
    default:
        out[0] = '\0';
    }
    return strlen(out);
}

size_t limiter_match(const struct limiter *l, const struct limiter_request *r)
{
    size_t i = 0;
    while (i < l->rule_count && !limiter_key_matches(&l->rules[i], r))
        i++;
    return i;
}

size_t limiter_key(const struct rate_rule *rule, const struct limiter_request *r,
                   const struct credential_key *credential_key, char *key, size_t len)
{
    char buf[KEY_MAX];
    size_t n = limiter_key_build(rule, r, credential_key, buf);
    snprintf(key, len, "%.*s", (int)n, buf);
    return n < len ? n : len - 1;
}
