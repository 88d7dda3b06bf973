/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limit_headers.c — see limit_headers.h. */
#include "limit_headers.h"

#include <string.h>
#include <strings.h>
#include <time.h>

#include "http.h"
#include "http_response.h"
#include "structured_field.h"

#define UNKNOWN INT64_C(-1)
#define NS_PER_MS INT64_C(1000000)
#define MAX_WAIT_NS (LIMIT_HEADERS_MAX_WAIT_MS * NS_PER_MS)

/* ---- header lines ---- */

/* The next line of the block named `name` (exactly, case-insensitive, colon right after it, as
 * RFC 9110 5.1 has it), its value without surrounding whitespace; 0 when there is none left. */
static int next_field(const char **cursor, const char *end, const char *name, const char **value,
                      size_t *value_len, const char **line_start)
{
    size_t name_len = strlen(name);
    while (*cursor < end) {
        const char *line = *cursor;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        const char *line_end = eol != NULL ? eol : end;
        *cursor = eol != NULL ? eol + 1 : end;
        if ((size_t)(line_end - line) <= name_len || line[name_len] != ':' ||
            strncasecmp(line, name, name_len) != 0)
            continue;
        const char *v = line + name_len + 1, *e = line_end;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *value = v;
        *value_len = (size_t)(e - v);
        if (line_start != NULL)
            *line_start = line;
        return 1;
    }
    return 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* ---- plain numbers (X-RateLimit-*, X-Rate-Limit-*, OpenAI) ---- */

/* "123" or "123.45": 1-15 digits, optionally 1-9 more after a dot; nothing else. */
static int parse_decimal(const char *s, size_t len, int64_t *whole, int64_t *fraction,
                         int *fraction_digits)
{
    size_t i = 0;
    *whole = 0;
    *fraction = 0;
    *fraction_digits = 0;
    while (i < len && is_digit(s[i])) {
        if (i == 15)
            return -1;
        *whole = *whole * 10 + (s[i] - '0');
        i++;
    }
    if (i == 0)
        return -1;
    if (i == len)
        return 0;
    if (s[i++] != '.')
        return -1;
    while (i < len && is_digit(s[i])) {
        if (*fraction_digits == 9)
            return -1;
        *fraction = *fraction * 10 + (s[i] - '0');
        (*fraction_digits)++;
        i++;
    }
    return i == len && *fraction_digits > 0 ? 0 : -1;
}

static int64_t power_of_ten(int n)
{
    int64_t p = 1;
    while (n-- > 0)
        p *= 10;
    return p;
}

/* fraction / 10^digits of unit_ns, rounded up; no overflow for unit_ns up to an hour */
static int64_t fraction_of(int64_t fraction, int digits, int64_t unit_ns)
{
    int64_t scale = power_of_ten(digits);
    int64_t quotient = unit_ns / scale, remainder = unit_ns % scale;
    return fraction * quotient + (fraction * remainder + scale - 1) / scale;
}

/* A count: the whole part; "598.0" is Reddit's way of writing 598, and rounding down only ever
 * makes it stricter. */
static int64_t parse_count(const char *s, size_t len)
{
    int64_t whole, fraction;
    int digits;
    return parse_decimal(s, len, &whole, &fraction, &digits) == 0 ? whole : UNKNOWN;
}

/* A Go-style duration as OpenAI sends it ("6m0s", "1h2m3.5s", "12ms"), rounded up to the ms. */
static int64_t parse_duration_ms(const char *s, size_t len)
{
    static const struct {
        const char *unit;
        int64_t ns;
    } units[] = {{"ns", 1},
                 {"us", 1000},
                 {"\xc2\xb5s", 1000},
                 {"ms", NS_PER_MS},
                 {"s", 1000 * NS_PER_MS},
                 {"m", 60 * 1000 * NS_PER_MS},
                 {"h", 3600 * 1000 * NS_PER_MS}};
    const char *p = s, *end = s + len;
    int64_t total_ns = 0;
    if (len == 0)
        return UNKNOWN;
    while (p < end) {
        const char *number = p;
        while (p < end && (is_digit(*p) || *p == '.'))
            p++;
        int64_t whole, fraction;
        int digits;
        if (parse_decimal(number, (size_t)(p - number), &whole, &fraction, &digits) != 0)
            return UNKNOWN;
        int64_t unit_ns = 0;
        for (size_t u = 0; u < sizeof units / sizeof units[0] && unit_ns == 0; u++) {
            size_t unit_len = strlen(units[u].unit);
            if ((size_t)(end - p) >= unit_len && memcmp(p, units[u].unit, unit_len) == 0 &&
                (unit_len > 1 || p + 1 == end || is_digit(p[1]))) {
                unit_ns = units[u].ns;
                p += unit_len;
            }
        }
        if (unit_ns == 0 || whole > MAX_WAIT_NS / unit_ns)
            return UNKNOWN;
        total_ns += whole * unit_ns + fraction_of(fraction, digits, unit_ns);
        if (total_ns > MAX_WAIT_NS)
            return UNKNOWN;
    }
    return (total_ns + NS_PER_MS - 1) / NS_PER_MS;
}

/* Seconds (whole and fraction) as a reset from now: an epoch at or above the threshold. */
static int64_t seconds_to_reset_ms(int64_t whole, int64_t fraction, int digits, int64_t now_ms)
{
    int64_t ms = whole * 1000 + fraction_of(fraction, digits, 1000);
    if (whole >= LIMIT_HEADERS_EPOCH_THRESHOLD_S) {
        /* to the millisecond: from whole seconds, a reset would look up to 1 s further off
         * than it is, and two resets seen at different fractions would give a wrong period */
        if (now_ms < 0)
            now_ms = 0;
        if (now_ms > LIMIT_HEADERS_MAX_COUNT)
            now_ms = LIMIT_HEADERS_MAX_COUNT;
        ms -= now_ms;
        if (ms < 0)
            ms = 0; /* already reset */
    }
    return ms > LIMIT_HEADERS_MAX_WAIT_MS ? UNKNOWN : ms;
}

static int64_t parse_reset_ms(const char *s, size_t len, int64_t now_ms)
{
    int64_t whole, fraction;
    int digits;
    if (parse_decimal(s, len, &whole, &fraction, &digits) == 0)
        return seconds_to_reset_ms(whole, fraction, digits, now_ms);
    return parse_duration_ms(s, len);
}

/* One field over all its lines. A line may be a comma list (duplicates folded by an intermediary);
 * a line with any element that does not parse is unknown as a whole, so that "5, 0x" cannot come
 * out as 5. Lines combine by the rule given: lowest count, latest reset. */
static int64_t read_plain_field(const char *head, size_t len, const char *name, int is_reset,
                                int64_t now_ms)
{
    const char *cursor = head, *end = head + len, *value;
    size_t value_len;
    int64_t result = UNKNOWN;
    while (next_field(&cursor, end, name, &value, &value_len, NULL)) {
        int64_t line_result = UNKNOWN;
        const char *p = value, *value_end = value + value_len;
        int bad = value_len == 0;
        while (!bad && p <= value_end) {
            const char *comma = memchr(p, ',', (size_t)(value_end - p));
            const char *element_end = comma != NULL ? comma : value_end;
            const char *e = element_end;
            while (p < e && (*p == ' ' || *p == '\t'))
                p++;
            while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            int64_t v = is_reset ? parse_reset_ms(p, (size_t)(e - p), now_ms)
                                 : parse_count(p, (size_t)(e - p));
            if (v < 0)
                bad = 1;
            else if (line_result < 0 || (is_reset ? v > line_result : v < line_result))
                line_result = v;
            if (comma == NULL)
                break;
            p = comma + 1;
        }
        if (bad || line_result < 0)
            continue;
        if (result < 0 || (is_reset ? line_result > result : line_result < result))
            result = line_result;
    }
    return result;
}

/* ---- Structured Fields: the IETF fields' parameters ---- */

enum { PARAM_R, PARAM_A, PARAM_T, PARAM_W, PARAM_Q, PARAM_COUNT };
static const char param_names[PARAM_COUNT] = {'r', 'a', 't', 'w', 'q'};

/* An SF Integer (never negative) as a count; any other item is unknown. */
static int64_t integer_or_unknown(const struct sf_item *item)
{
    return item->kind == SF_INTEGER ? item->integer : UNKNOWN;
}

/* The member's r a t w q parameters that are SF Integers, UNKNOWN for the rest. A repeated
 * parameter: RFC 9651 keeps the last; the stricter one is kept here (r a q: lowest; t w:
 * highest), so that a repetition can never loosen a limit. */
static void read_params(const struct sf_member *m, int64_t param[PARAM_COUNT])
{
    struct sf_parameters cursor = m->parameters;
    struct sf_parameter p;
    for (int i = 0; i < PARAM_COUNT; i++)
        param[i] = UNKNOWN;
    while (sf_next_parameter(&cursor, &p)) {
        if (p.key[0] == '\0' || p.key[1] != '\0' || p.value.kind != SF_INTEGER)
            continue;
        for (int i = 0; i < PARAM_COUNT; i++) {
            if (p.key[0] != param_names[i])
                continue;
            int keep_highest = i == PARAM_T || i == PARAM_W;
            if (param[i] < 0 ||
                (keep_highest ? p.value.integer > param[i] : p.value.integer < param[i]))
                param[i] = p.value.integer;
        }
    }
}

/* A policy name cut to fit, as every name compared with it is. */
static void copy_policy(char policy[LIMIT_HEADERS_POLICY_SIZE], const struct sf_item *item)
{
    size_t n = strlen(item->text);
    if (n > LIMIT_HEADERS_POLICY_SIZE - 1)
        n = LIMIT_HEADERS_POLICY_SIZE - 1;
    memcpy(policy, item->text, n);
    policy[n] = '\0';
}

static void visit_each_line(const char *head, size_t len, const char *name, sf_member_visitor visit,
                            void *context)
{
    const char *cursor = head, *end = head + len, *value;
    size_t value_len;
    while (next_field(&cursor, end, name, &value, &value_len, NULL))
        sf_parse_members(value, value_len, visit, context);
}

/* ---- candidates ---- */

struct candidate {
    int64_t limit, remaining, reset_ms, window_ms;
    char policy[LIMIT_HEADERS_POLICY_SIZE];
    const char *family;
    int rank; /* the family's place in the header's table: lower wins a full tie */
};

static void candidate_init(struct candidate *c, const char *family, int rank)
{
    memset(c, 0, sizeof *c);
    c->limit = c->remaining = c->reset_ms = c->window_ms = UNKNOWN;
    c->family = family;
    c->rank = rank;
}

static int candidate_known(const struct candidate *c)
{
    return c->limit >= 0 || c->remaining >= 0 || c->reset_ms >= 0 || c->window_ms >= 0;
}

/* <0 when a is stricter than b, >0 when b is; 0 on a full tie. Unknown is the loosest. */
static int compare_known_lower(int64_t a, int64_t b)
{
    if (a == b)
        return 0;
    if (a < 0)
        return 1;
    if (b < 0)
        return -1;
    return a < b ? -1 : 1;
}

static int compare_strictness(const struct candidate *a, const struct candidate *b)
{
    int order = compare_known_lower(a->remaining, b->remaining);
    if (order != 0)
        return order;
    if (a->reset_ms != b->reset_ms) /* the later reset holds longer; unknown says the least */
        return a->reset_ms > b->reset_ms ? -1 : 1;
    if (a->limit >= 0 && a->window_ms > 0 && b->limit >= 0 && b->window_ms > 0) {
        long double rate_a = (long double)a->limit / (long double)a->window_ms;
        long double rate_b = (long double)b->limit / (long double)b->window_ms;
        if (rate_a != rate_b)
            return rate_a < rate_b ? -1 : 1;
    }
    order = compare_known_lower(a->limit, b->limit);
    if (order != 0)
        return order;
    return a->rank - b->rank;
}

/* Remaining is clamped to the limit before the comparison, so that a candidate saying "10 left of
 * 2" ranks as 2 left and another candidate cannot beat it with 5. */
static void consider(struct candidate *best, const struct candidate *candidate)
{
    struct candidate c = *candidate;
    if (c.limit >= 0 && c.remaining > c.limit)
        c.remaining = c.limit;
    if (!candidate_known(&c))
        return;
    if (!candidate_known(best) || compare_strictness(&c, best) < 0)
        *best = c;
}

/* ---- the IETF fields ---- */

static int64_t seconds_bounded_ms(int64_t seconds)
{
    return seconds < 0 || seconds > LIMIT_HEADERS_MAX_WAIT_MS / 1000 ? UNKNOWN : seconds * 1000;
}

static int64_t lower_known(int64_t a, int64_t b) { return compare_known_lower(a, b) <= 0 ? a : b; }

static int64_t higher(int64_t a, int64_t b) { return a > b ? a : b; }

struct ietf_state {
    struct candidate best; /* the strictest RateLimit item */
    struct candidate dict; /* draft-07's dictionary: its members, on every line, are one policy */
};

/* RateLimit: an item per policy, or draft-07's dictionary of limit, remaining and reset. */
static void visit_ratelimit(const struct sf_member *m, void *context)
{
    struct ietf_state *st = context;
    if (m->key[0] != '\0') {
        int64_t v = integer_or_unknown(&m->item);
        if (strcmp(m->key, "limit") == 0)
            st->dict.limit = lower_known(st->dict.limit, v);
        else if (strcmp(m->key, "remaining") == 0)
            st->dict.remaining = lower_known(st->dict.remaining, v);
        else if (strcmp(m->key, "reset") == 0)
            st->dict.reset_ms = higher(st->dict.reset_ms, seconds_bounded_ms(v));
        return;
    }
    struct candidate c;
    int64_t param[PARAM_COUNT];
    candidate_init(&c, "ietf", 0);
    read_params(m, param);
    if (m->item.kind == SF_STRING || m->item.kind == SF_TOKEN)
        copy_policy(c.policy, &m->item);
    c.remaining = lower_known(param[PARAM_R], param[PARAM_A]);
    c.reset_ms = seconds_bounded_ms(higher(param[PARAM_T], param[PARAM_W]));
    consider(&st->best, &c);
}

struct policy_state {
    const char *name;   /* the policy looked for; NULL: the strictest of all */
    int64_t want_quota; /* a nameless RateLimit's limit, to find draft-07's matching policy */
    struct candidate found;
};

static void visit_policy(const struct sf_member *m, void *context)
{
    struct policy_state *st = context;
    struct candidate c;
    int64_t param[PARAM_COUNT];
    candidate_init(&c, "ietf", 0);
    if (m->key[0] != '\0')
        return;
    read_params(m, param);
    int named = m->item.kind == SF_STRING || m->item.kind == SF_TOKEN;
    if (named)
        copy_policy(c.policy, &m->item);
    c.limit = param[PARAM_Q];
    if (m->item.kind == SF_INTEGER) /* draft-07: "100;w=60" */
        c.limit = lower_known(c.limit, m->item.integer);
    c.window_ms = seconds_bounded_ms(param[PARAM_W]);
    if (st->name != NULL) {
        if (st->name[0] != '\0' ? !named || strcmp(st->name, c.policy) != 0
                                : named || c.limit != st->want_quota)
            return;
        /* the same policy given twice: its lowest quota over its longest window */
        if (candidate_known(&st->found)) {
            st->found.limit = lower_known(st->found.limit, c.limit);
            st->found.window_ms = higher(st->found.window_ms, c.window_ms);
            return;
        }
    }
    consider(&st->found, &c);
}

static void read_ietf(const char *head, size_t len, struct candidate *out)
{
    struct ietf_state st;
    candidate_init(&st.best, "ietf", 0);
    candidate_init(&st.dict, "ietf", 0);
    visit_each_line(head, len, "RateLimit", visit_ratelimit, &st);
    consider(&st.best, &st.dict);
    int have_item = candidate_known(&st.best);
    struct policy_state policy = {.name = have_item ? st.best.policy : NULL,
                                  .want_quota = st.best.limit};
    candidate_init(&policy.found, "ietf", 0);
    visit_each_line(head, len, "RateLimit-Policy", visit_policy, &policy);
    *out = have_item ? st.best : policy.found;
    if (have_item) {
        out->limit = lower_known(out->limit, policy.found.limit);
        out->window_ms = policy.found.window_ms;
    }
}

/* RateLimit-Limit / -Remaining / -Reset of drafts 00-06: SF Integers, the limit maybe followed by
 * quota policies ("100, 100;w=60"). A line with anything else is unknown. */
struct old_ietf_state {
    int64_t value, window_s;
    int highest, bad;
};

static void visit_old_ietf(const struct sf_member *m, void *context)
{
    struct old_ietf_state *st = context;
    int64_t v = integer_or_unknown(&m->item), param[PARAM_COUNT];
    read_params(m, param);
    if (v < 0 || m->key[0] != '\0') {
        st->bad = 1;
    } else if (st->value < 0 || (st->highest ? v > st->value : v < st->value)) {
        st->value = v;
        st->window_s = param[PARAM_W];
    } else if (v == st->value) {
        st->window_s = higher(st->window_s, param[PARAM_W]);
    }
}

static int64_t read_old_ietf_field(const char *head, size_t len, const char *name, int highest,
                                   int64_t *window_s)
{
    const char *cursor = head, *end = head + len, *value;
    size_t value_len;
    int64_t result = UNKNOWN;
    while (next_field(&cursor, end, name, &value, &value_len, NULL)) {
        struct old_ietf_state st = {UNKNOWN, UNKNOWN, highest, 0};
        if (sf_parse_members(value, value_len, visit_old_ietf, &st) != 0 || st.bad || st.value < 0)
            continue;
        if (result < 0 || (highest ? st.value > result : st.value < result)) {
            result = st.value;
            *window_s = st.window_s;
        }
    }
    return result;
}

static void read_old_ietf(const char *head, size_t len, int64_t now_ms, struct candidate *c)
{
    int64_t window_s = UNKNOWN, ignored;
    c->limit = read_old_ietf_field(head, len, "RateLimit-Limit", 0, &window_s);
    c->window_ms = seconds_bounded_ms(window_s);
    c->remaining = read_old_ietf_field(head, len, "RateLimit-Remaining", 0, &ignored);
    int64_t reset_s = read_old_ietf_field(head, len, "RateLimit-Reset", 1, &ignored);
    c->reset_ms = reset_s < 0 ? UNKNOWN : seconds_to_reset_ms(reset_s, 0, 0, now_ms);
}

/* Retry-After line by line through http_retry_after_ms, which reads only the first: an unusable
 * line is skipped, and of several usable ones the latest counts. */
static int64_t read_retry_after_ms(const char *head, size_t len, int64_t now_ms)
{
    const char *cursor = head, *end = head + len, *value, *line;
    size_t value_len;
    int64_t result = UNKNOWN;
    while (next_field(&cursor, end, "Retry-After", &value, &value_len, &line)) {
        int64_t ms = http_retry_after_ms(line, (size_t)(cursor - line), (time_t)(now_ms / 1000));
        if (ms <= LIMIT_HEADERS_MAX_WAIT_MS)
            result = higher(result, ms);
    }
    return result;
}

/* ---- the whole block ---- */

static void read_plain_family(const char *head, size_t len, int64_t now_ms, const char *limit_name,
                              const char *remaining_name, const char *reset_name,
                              const char *used_name, struct candidate *c)
{
    c->limit = read_plain_field(head, len, limit_name, 0, now_ms);
    c->remaining = read_plain_field(head, len, remaining_name, 0, now_ms);
    c->reset_ms = read_plain_field(head, len, reset_name, 1, now_ms);
    /* Reddit sends no limit, but what was used: the quota is used + remaining */
    if (c->limit < 0 && c->remaining >= 0 && used_name != NULL) {
        int64_t used = read_plain_field(head, len, used_name, 0, now_ms);
        if (used >= 0 && used <= LIMIT_HEADERS_MAX_COUNT - c->remaining)
            c->limit = used + c->remaining;
    }
}

/* 1 when some field could be one this parser reads: its name starts RateLimit, X-RateLimit,
 * X-Rate-Limit or Retry-After (any case). Every response of a rule that follows its origin is
 * parsed, and most carry none of them: one pass over the names instead of one per field. */
static int may_have_limits(const char *head, size_t len)
{
    static const char *const prefixes[] = {"ratelimit", "x-ratelimit", "x-rate-limit",
                                           "retry-after"};
    const char *line = head, *end = head + len;
    while (line < end) {
        char first = (char)(*line | 0x20);
        if (first == 'r' || first == 'x')
            for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
                size_t n = strlen(prefixes[i]);
                if ((size_t)(end - line) >= n && strncasecmp(line, prefixes[i], n) == 0)
                    return 1;
            }
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        line = eol != NULL ? eol + 1 : end;
    }
    return 0;
}

int limit_headers_parse(const char *head, size_t len, int status, int64_t now_ms,
                        struct limit_headers *out)
{
    if (status != 429 && !may_have_limits(head, len)) {
        memset(out, 0, sizeof *out);
        out->limit = out->remaining = out->reset_ms = out->window_ms = UNKNOWN;
        out->retry_after_ms = UNKNOWN;
        return 0;
    }
    struct candidate best, c;
    candidate_init(&best, NULL, 0);

    read_ietf(head, len, &c);
    consider(&best, &c);

    candidate_init(&c, "ietf-old", 1);
    read_old_ietf(head, len, now_ms, &c);
    consider(&best, &c);

    candidate_init(&c, "openai", 2);
    read_plain_family(head, len, now_ms, "x-ratelimit-limit-requests",
                      "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests", NULL, &c);
    consider(&best, &c);

    candidate_init(&c, "x-ratelimit", 3);
    read_plain_family(head, len, now_ms, "X-RateLimit-Limit", "X-RateLimit-Remaining",
                      "X-RateLimit-Reset", "X-RateLimit-Used", &c);
    consider(&best, &c);

    candidate_init(&c, "x-rate-limit", 4);
    read_plain_family(head, len, now_ms, "X-Rate-Limit-Limit", "X-Rate-Limit-Remaining",
                      "X-Rate-Limit-Reset", NULL, &c);
    consider(&best, &c);

    memset(out, 0, sizeof *out);
    out->limit = best.limit;
    out->remaining = best.remaining;
    out->reset_ms = best.reset_ms;
    out->window_ms = best.window_ms;
    out->retry_after_ms = UNKNOWN;
    memcpy(out->policy, best.policy, sizeof out->policy);
    out->policy[sizeof out->policy - 1] = '\0';
    out->family = candidate_known(&best) ? best.family : NULL;

    if (status == 429) {
        out->remaining = 0;
        if (out->family == NULL)
            out->family = "status";
    }
    if (status >= 400 && status <= 599) {
        int64_t retry_after_ms = read_retry_after_ms(head, len, now_ms);
        if (retry_after_ms >= 0) {
            out->retry_after_ms = retry_after_ms;
            out->reset_ms = retry_after_ms;
            if (out->family == NULL)
                out->family = "retry-after";
        }
    }
    out->found = out->family != NULL;
    return out->found;
}
