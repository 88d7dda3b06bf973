/* limiter.c — see limiter.h.
 *
 * Each key's window is a ring of at most `limit` timestamps kept in ascending order. Admitting at
 * time t when the ring is full needs ring[0] + window <= t; otherwise the earliest moment is
 * ring[0] + window, which a delayed request reserves by taking ring[0]'s place. Because every new
 * entry is at least the newest one, the ring stays sorted and delayed requests go in arrival
 * order, with no polling: the caller sleeps until its reserved time. A cancelled reservation is
 * removed from the ring, which leaves room for the next request.
 *
 * Memory: a window costs ~64 bytes plus 8 bytes per ring slot; the ring starts at 4 slots and
 * doubles up to `limit`, so keys that send little cost little. */
#include "limiter.h"

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "credential.h"
#include "fair_queue.h"
#include "http.h"
#include "limit_headers.h"
#include "util.h"

#define STRIPES 64 /* lock stripes per rule: contention on one key never blocks the others */
#define KEY_MAX 600
#define WEIGHT_UNSAID UINT32_MAX /* no weight_header value: weights decides */

/* What the origin said about one key (upstream_limits: follow): its quota as of one response,
 * and a pause it asked for. The budget left is `remaining` less the departures since the request
 * that response answered (requests that left after it are not in the origin's count yet) less the
 * requests on their way. */
struct learned {
    int64_t remaining;        /* -1: nothing known */
    uint64_t seq;             /* the departure that response answered */
    uint64_t reset_us;        /* when the quota renews (monotonic); 0: not said */
    uint64_t limit;           /* the quota's size, when said: the budget after a reset */
    uint64_t period_us;       /* the quota's window: said (IETF w) or seen between resets */
    uint64_t paused_until_us; /* a 429/503's Retry-After */
    uint64_t last_reset_us;   /* the last reset said, kept across renewals: for period_us */
};

/* A key of a rule with fair_by or max_concurrent: its held requests wait in a queue and are given
 * the slot when it frees, in the queue's order; one of them (the waker) is told when to ask next.
 * Apart from the window, so that keys of other rules do not pay for it. */
struct key_queue {
    struct fair_queue queue;
    uint32_t inflight;          /* max_concurrent: admitted and not ended */
    struct limiter_hold *waker; /* NULL: nobody is to ask at wake_at */
    uint64_t wake_at;
    uint64_t seen_us;           /* the latest time a decision or a hold was made at */
};

struct window {
    struct window *next; /* bucket chain */
    uint64_t hash;
    uint64_t *times; /* ring */
    uint32_t head, count, cap;
    uint32_t queued; /* outstanding holds: a window with holds is never freed */
    /* when held requests actually went: a timer that fires late must delay the requests whose
     * slots were computed from it, or the origin would see them closer than a window apart. A
     * cancelled reservation that later ones were computed from is kept here too, as what it was
     * computed from (linked: linked_first..linked_last): they wait for that in its place. */
    struct release {
        uint64_t scheduled, actual;
        uint64_t linked_first, linked_last;
        int linked;
    } *releases;
    uint32_t releases_head, releases_count, releases_cap;
    /* entries of requests that have not departed yet (limiter_stamp): they never leave the ring
     * and move to their departure time. As many as the key has requests in flight. */
    uint64_t *pending;
    uint32_t pending_count, pending_cap;
    uint64_t departures; /* ever: a response's request is known by its place in this count */
    /* departed requests not answered yet (their numbers), while the rule follows what the origin
     * says: an origin may count them after a request it answers first */
    uint64_t *unanswered;
    uint32_t unanswered_count, unanswered_cap;
    struct learned learned;
    struct key_queue *kq; /* fair_by, max_concurrent: made at the key's first decision */
    uint64_t reset_us;    /* an operator's reset (POST /limits): nothing before it comes back */
    size_t key_len;
    char key[];
};

struct stripe {
    pthread_mutex_t lock;
    struct window **buckets;
    size_t bucket_count, window_count;
};

/* The number of windows over all rules, against rate_limits.max_keys. A limiter built over a
 * previous one shares its count, as it shares the windows of unchanged rules, so the count lives
 * with server.c's chain of limiters; limiters built apart (unit tests, the benchmark) count apart.
 * Each limiter and each rule state holds a reference. */
struct key_count {
    atomic_uint refs;
    _Atomic uint64_t keys;
};

/* The state of one rule; shared between the limiters of successive configs while the rule is
 * unchanged. */
struct rule_state {
    atomic_uint refs;
    struct key_count *total_keys;
    struct rate_rule params; /* copies of the fields that define the windows (no match lists) */
    struct stripe stripes[STRIPES];
    _Atomic uint64_t admitted, delayed, rejected, queued, keys;
    _Atomic uint64_t would_delay, would_reject; /* enforce: false */
};

struct limiter {
    atomic_uint refs;
    const struct rate_rule *rules; /* owned by the config the limiter was built for */
    size_t rule_count;
    struct rule_state **states;
    uint32_t max_keys;
    const struct credential_key *credential_key; /* hashes header values; the process owns it */
    struct key_count *total_keys;
};

struct limiter_hold {
    struct rule_state *state;
    struct stripe *stripe;
    struct window *window;
    uint64_t time_us; /* the reserved entries (cost of them) */
    /* the entries it displaced, oldest and newest: it may go no earlier than their actual
     * departures + window */
    uint64_t base_first_us, base_us;
    uint32_t cost, displaced;
    int depart_later; /* its entries are pending until limiter_depart */
    /* a queued hold (fair_by, max_concurrent); in_queue_mode never changes, so it may be read
     * without the lock (queued and granted change under it, from any thread) */
    int in_queue_mode;
    int queued;              /* in w->kq->queue: time_us is not known yet */
    int granted;             /* its turn came: entries taken at time_us */
    int posted, abandoned;   /* a wake-up is on its way; cancelled meanwhile: the call frees it */
    uint64_t deadline_us;    /* max_delay after it was held */
    struct fair_queue_item item;
    struct util_call call;
    util_post_fn post;
    void *post_target;
    void (*woken)(void *arg);
    void *woken_arg;
};

static _Atomic uint64_t pause_decisions; /* requests held or refused for what an origin said */

uint64_t limiter_pause_decisions(void) { return atomic_load(&pause_decisions); }

uint64_t limiter_total_keys(const struct limiter *l) { return atomic_load(&l->total_keys->keys); }

static void key_count_unref(struct key_count *count)
{
    if (count != NULL && atomic_fetch_sub(&count->refs, 1) == 1)
        free(count);
}

/* The span the window counts over: the rule's window, widened by its margin. */
static uint64_t counted_window_us(const struct rate_rule *rule)
{
    return (rule->window_ms + rule->margin_ms) * 1000;
}

/* ---- the ring ----------------------------------------------------------------------------- */

static uint64_t ring_at(const struct window *w, uint32_t i) { return w->times[(w->head + i) % w->cap]; }

static int ring_grow(struct window *w, uint32_t limit)
{
    uint32_t cap = w->cap ? w->cap * 2 : 4;
    if (cap > limit)
        cap = limit;
    uint64_t *times = malloc((size_t)cap * sizeof *times);
    if (times == NULL)
        return -1;
    for (uint32_t i = 0; i < w->count; i++)
        times[i] = ring_at(w, i);
    free(w->times);
    w->times = times;
    w->head = 0;
    w->cap = cap;
    return 0;
}

/* Room for `need` entries (at most limit); 0, or -1 when out of memory. */
static int ring_reserve(struct window *w, uint32_t need, uint32_t limit)
{
    if (need > limit)
        need = limit;
    while (w->cap < need)
        if (ring_grow(w, limit) != 0)
            return -1;
    return 0;
}

/* Inserts t keeping the order; the common case (t >= newest) is an append. */
static void ring_insert(struct window *w, uint64_t t)
{
    uint32_t i = w->count;
    while (i > 0 && ring_at(w, i - 1) > t) {
        w->times[(w->head + i) % w->cap] = ring_at(w, i - 1);
        i--;
    }
    w->times[(w->head + i) % w->cap] = t;
    w->count++;
}

static void ring_pop_oldest(struct window *w)
{
    w->head = (w->head + 1) % w->cap;
    w->count--;
}

/* The position of the first entry >= t (count when none). */
static uint32_t ring_lower_bound(const struct window *w, uint64_t t)
{
    uint32_t first = 0, last = w->count;
    while (first < last) {
        uint32_t mid = first + (last - first) / 2;
        if (ring_at(w, mid) < t)
            first = mid + 1;
        else
            last = mid;
    }
    return first;
}

/* Takes one entry t out; 0 when there is none. Entries are a multiset of times: two requests
 * admitted in the same microsecond are interchangeable, so a stamp names a time, not a slot. */
static int ring_remove(struct window *w, uint64_t t)
{
    uint32_t i = ring_lower_bound(w, t);
    if (i == w->count || ring_at(w, i) != t)
        return 0;
    for (; i + 1 < w->count; i++)
        w->times[(w->head + i) % w->cap] = ring_at(w, i + 1);
    w->count--;
    return 1;
}

/* Room for one more in a growing array of uint64_t; 0, or -1 when out of memory. */
static int grow_u64(uint64_t **items, uint32_t *cap, uint32_t count)
{
    if (count < *cap)
        return 0;
    uint32_t more = *cap ? *cap * 2 : 4;
    uint64_t *grown = realloc(*items, (size_t)more * sizeof *grown);
    if (grown == NULL)
        return -1;
    *items = grown;
    *cap = more;
    return 0;
}

static int pending_index(const struct window *w, uint64_t t)
{
    for (uint32_t i = 0; i < w->pending_count; i++)
        if (w->pending[i] == t)
            return (int)i;
    return -1;
}

static int pending_add(struct window *w, uint64_t t)
{
    if (grow_u64(&w->pending, &w->pending_cap, w->pending_count) != 0)
        return -1;
    w->pending[w->pending_count++] = t;
    return 0;
}

/* 1 when t was pending (and is not any more). */
static int pending_remove(struct window *w, uint64_t t)
{
    int i = pending_index(w, t);
    if (i < 0)
        return 0;
    w->pending[i] = w->pending[--w->pending_count];
    return 1;
}

/* Entries that still count at `now` (newer than now - window), and when the oldest of them
 * stops counting. */
static uint32_t ring_in_window(const struct window *w, uint64_t now, uint64_t window_us,
                               uint64_t *reset_us)
{
    /* the ring is sorted: binary search, since a key far under its limit keeps many old entries */
    uint32_t first = 0, last = w->count;
    while (first < last) {
        uint32_t mid = first + (last - first) / 2;
        if (ring_at(w, mid) + window_us <= now)
            first = mid + 1;
        else
            last = mid;
    }
    *reset_us = first < w->count ? ring_at(w, first) + window_us - now : 0;
    return w->count - first;
}

/* ---- keys and windows --------------------------------------------------------------------- */

static uint64_t hash_key(const char *key, size_t len)
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

static size_t build_key(const struct rate_rule *rule, const struct limiter_request *r,
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

static void window_free(struct rule_state *st, struct window *w)
{
    free(w->kq);
    free(w->unanswered);
    free(w->pending);
    free(w->releases);
    free(w->times);
    free(w);
    atomic_fetch_sub(&st->total_keys->keys, 1);
    atomic_fetch_sub(&st->keys, 1);
}

static int stripe_grow(struct stripe *s)
{
    size_t count = s->bucket_count ? s->bucket_count * 2 : 64;
    struct window **buckets = calloc(count, sizeof *buckets);
    if (buckets == NULL)
        return -1;
    for (size_t i = 0; i < s->bucket_count; i++) {
        struct window *w = s->buckets[i];
        while (w != NULL) {
            struct window *next = w->next;
            size_t b = (w->hash / STRIPES) % count;
            w->next = buckets[b];
            buckets[b] = w;
            w = next;
        }
    }
    free(s->buckets);
    s->buckets = buckets;
    s->bucket_count = count;
    return 0;
}

/* Finds or creates the window; NULL when the key cap is reached (or out of memory). Called with
 * the stripe locked. */
static struct window *window_get(struct rule_state *st, struct stripe *s, uint64_t hash,
                                 const char *key, size_t len, uint32_t max_keys)
{
    if (s->bucket_count > 0) {
        for (struct window *w = s->buckets[(hash / STRIPES) % s->bucket_count]; w; w = w->next)
            if (w->hash == hash && w->key_len == len && memcmp(w->key, key, len) == 0)
                return w;
    }
    if (atomic_load(&st->total_keys->keys) >= max_keys)
        return NULL;
    if ((s->window_count >= s->bucket_count * 2 || s->bucket_count == 0) && stripe_grow(s) != 0)
        return NULL;
    struct window *w = calloc(1, sizeof *w + len + 1);
    if (w == NULL)
        return NULL;
    w->hash = hash;
    w->learned.remaining = -1;
    w->key_len = len;
    memcpy(w->key, key, len);
    size_t b = (hash / STRIPES) % s->bucket_count;
    w->next = s->buckets[b];
    s->buckets[b] = w;
    s->window_count++;
    atomic_fetch_add(&st->total_keys->keys, 1);
    atomic_fetch_add(&st->keys, 1);
    return w;
}

static int window_idle(const struct window *w, uint64_t now, uint64_t window_us)
{
    /* a key that learned something keeps it until its reset or pause is over */
    return w->queued == 0 && w->pending_count == 0 && w->unanswered_count == 0 &&
           (w->kq == NULL || w->kq->inflight == 0) &&
           w->learned.reset_us <= now &&
           w->learned.paused_until_us <= now &&
           (w->count == 0 || ring_at(w, w->count - 1) + window_us <= now);
}

static size_t stripe_expire(struct rule_state *st, struct stripe *s, uint64_t now)
{
    uint64_t window_us = counted_window_us(&st->params);
    for (size_t b = 0; b < s->bucket_count; b++) {
        struct window **link = &s->buckets[b];
        while (*link != NULL) {
            struct window *w = *link;
            if (window_idle(w, now, window_us)) {
                *link = w->next;
                s->window_count--;
                window_free(st, w);
            } else {
                link = &w->next;
            }
        }
    }
    return s->window_count;
}

/* ---- rules -------------------------------------------------------------------------------- */

static int same_params(const struct rate_rule *a, const struct rate_rule *b)
{
    return strcmp(a->name, b->name) == 0 && a->key == b->key &&
           strcasecmp(a->key_header, b->key_header) == 0 && a->limit == b->limit &&
           a->window_ms == b->window_ms && a->over_limit == b->over_limit &&
           a->max_delay_ms == b->max_delay_ms && a->max_queue == b->max_queue &&
           a->shared == b->shared && a->margin_ms == b->margin_ms && a->fair_by == b->fair_by &&
           strcasecmp(a->fair_header, b->fair_header) == 0 &&
           a->max_concurrent == b->max_concurrent;
}

static struct rule_state *state_new(const struct rate_rule *rule, struct key_count *total_keys)
{
    struct rule_state *st = calloc(1, sizeof *st);
    if (st == NULL)
        return NULL;
    atomic_init(&st->refs, 1);
    st->total_keys = total_keys;
    atomic_fetch_add(&total_keys->refs, 1);
    st->params = *rule;
    /* the match lists belong to the config; the state keeps only the window parameters */
    st->params.match_client = NULL;
    st->params.match_host = NULL;
    st->params.match_path_prefix = NULL;
    st->params.match_user = NULL;
    st->params.weights = NULL; /* read from the current config's rule */
    st->params.weights_count = 0;
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_init(&st->stripes[i].lock, NULL);
    return st;
}

static void state_unref(struct rule_state *st)
{
    if (st == NULL || atomic_fetch_sub(&st->refs, 1) != 1)
        return;
    for (size_t i = 0; i < STRIPES; i++) {
        struct stripe *s = &st->stripes[i];
        for (size_t b = 0; b < s->bucket_count; b++) {
            struct window *w = s->buckets[b];
            while (w != NULL) {
                struct window *next = w->next;
                window_free(st, w);
                w = next;
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    key_count_unref(st->total_keys);
    free(st);
}

struct limiter *limiter_new(const struct config *config, struct limiter *previous,
                            const struct credential_key *credential_key)
{
    struct limiter *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    atomic_init(&l->refs, 1);
    l->rules = config->rate_limits;
    l->rule_count = config->rate_limits_count;
    l->max_keys = config->rate_limits_max_keys;
    l->credential_key = credential_key;
    l->total_keys = previous != NULL ? previous->total_keys : calloc(1, sizeof *l->total_keys);
    l->states = calloc(l->rule_count ? l->rule_count : 1, sizeof *l->states);
    if (l->total_keys == NULL || l->states == NULL) {
        if (previous == NULL)
            free(l->total_keys);
        free(l->states);
        free(l);
        return NULL;
    }
    atomic_fetch_add(&l->total_keys->refs, 1);
    for (size_t i = 0; i < l->rule_count; i++) {
        const struct rate_rule *rule = &l->rules[i];
        for (size_t j = 0; previous != NULL && j < previous->rule_count; j++) {
            if (same_params(&previous->states[j]->params, rule)) {
                l->states[i] = previous->states[j];
                atomic_fetch_add(&l->states[i]->refs, 1);
                break;
            }
        }
        if (l->states[i] == NULL)
            l->states[i] = state_new(rule, l->total_keys);
        if (l->states[i] == NULL) {
            limiter_unref(l);
            return NULL;
        }
    }
    return l;
}

struct limiter *limiter_ref(struct limiter *l)
{
    if (l != NULL)
        atomic_fetch_add(&l->refs, 1);
    return l;
}

void limiter_unref(struct limiter *l)
{
    if (l == NULL || atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    for (size_t i = 0; i < l->rule_count; i++)
        state_unref(l->states[i]);
    key_count_unref(l->total_keys);
    free(l->states);
    free(l);
}

size_t limiter_rule_count(const struct limiter *l) { return l->rule_count; }

const struct rate_rule *limiter_rule(const struct limiter *l, size_t index) { return &l->rules[index]; }

void limiter_rule_stats(struct limiter *l, size_t index, struct limiter_rule_stats *out)
{
    struct rule_state *st = l->states[index];
    out->admitted = atomic_load(&st->admitted);
    out->delayed = atomic_load(&st->delayed);
    out->rejected = atomic_load(&st->rejected);
    out->would_delay = atomic_load(&st->would_delay);
    out->would_reject = atomic_load(&st->would_reject);
    out->queued = atomic_load(&st->queued);
    out->keys = atomic_load(&st->keys);
}

static int rule_matches(const struct rate_rule *rule, const struct limiter_request *r)
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

/* ---- decisions ---------------------------------------------------------------------------- */

static void reject(struct rule_state *st, struct limiter_decision *out, uint64_t retry_after_us,
                   const char *reason)
{
    out->verdict = LIMITER_REJECT;
    out->retry_after_us = retry_after_us;
    out->reason = reason;
    atomic_fetch_add(&st->rejected, 1);
}

/* ---- what the origin said (upstream_limits: follow) ------------------------------------------- */

/* With the stripe locked: until when the origin's word holds the key (0: it does not), and why.
 * A quota whose reset passed renews at its announced size, counting from now. */
static uint64_t learned_until(const struct rate_rule *p, struct window *w, uint64_t now,
                              const char **why)
{
    struct learned *k = &w->learned;
    if (p->upstream_limits != RATE_UPSTREAM_FOLLOW)
        return 0;
    uint64_t margin_us = p->margin_ms * 1000;
    if (k->paused_until_us > now) {
        *why = "the origin asked for a pause (Retry-After)";
        return k->paused_until_us + margin_us;
    }
    if (k->remaining < 0)
        return 0;
    if (k->reset_us != 0 && k->reset_us + margin_us <= now) {
        if (k->limit == 0) { /* nothing to renew to: forget it */
            k->remaining = -1;
            k->reset_us = 0;
            return 0;
        }
        k->remaining = (int64_t)k->limit;
        k->seq = w->departures;
        if (k->period_us > 0) /* the next reset, one quota window after the last */
            k->reset_us += ((now - k->reset_us) / k->period_us + 1) * k->period_us;
        else
            k->reset_us = 0;
    }
    if (k->seq > w->departures) /* the window was made anew since */
        k->seq = w->departures;
    uint64_t used = w->departures - k->seq + w->pending_count;
    if ((int64_t)used < k->remaining)
        return 0;
    *why = "the origin's quota for this key is spent";
    /* no reset said: ask again a window later, or when a response says more */
    return k->reset_us != 0 ? k->reset_us + margin_us : now + counted_window_us(p);
}

/* enforce: false: what enforcing would have done is counted and shown, and the request goes on
 * at once without an entry, so a dry run changes nothing for the requests that would go. */
static void would(struct rule_state *st, enum limiter_verdict verdict, struct limiter_decision *out)
{
    out->would = verdict;
    out->verdict = LIMITER_ADMIT;
    out->hold = NULL;
    atomic_fetch_add(verdict == LIMITER_DELAY ? &st->would_delay : &st->would_reject, 1);
}

/* With the stripe locked: a request the origin's word holds until `until`: held within max_delay
 * (no reservation: it asks again then), else refused. */
static void learned_verdict(struct rule_state *st, uint64_t until, uint64_t now, const char *why,
                            int enforce, struct limiter_decision *out)
{
    const struct rate_rule *p = &st->params;
    int delay = p->over_limit == RATE_OVER_DELAY && until - now <= p->max_delay_ms * 1000;
    if (!enforce) {
        would(st, delay ? LIMITER_DELAY : LIMITER_REJECT, out);
        return;
    }
    atomic_fetch_add(&pause_decisions, 1);
    out->paused = 1;
    if (delay) {
        out->verdict = LIMITER_DELAY;
        out->delay_us = until - now;
        atomic_fetch_add(&st->delayed, 1);
    } else {
        reject(st, out, until - now, why);
    }
}

/* Takes `cost` pending entries at t; 0, or -1 (none taken) when out of memory. */
static int pending_add_units(struct window *w, uint64_t t, uint32_t cost)
{
    for (uint32_t i = 0; i < cost; i++)
        if (pending_add(w, t) != 0) {
            while (i-- > 0)
                pending_remove(w, t);
            return -1;
        }
    return 0;
}

/* Takes the entries of a request admitted at `t`: pending when the caller stamps its departure. */
static int admit_entry(struct rule_state *st, struct stripe *s, struct window *w, uint64_t t,
                       int depart_later, uint32_t cost, struct limiter_decision *out)
{
    if (depart_later && pending_add_units(w, t, cost) != 0)
        return -1;
    for (uint32_t i = 0; i < cost; i++)
        ring_insert(w, t);
    if (!depart_later)
        w->departures++; /* stamped at admission */
    out->verdict = LIMITER_ADMIT;
    if (depart_later)
        out->stamp = (struct limiter_stamp){st, s, w, t, cost};
    return 0;
}

/* With the stripe locked: a request over the limit reserves the slot that frees first for its
 * `cost` units: the `displaced` oldest entries make room and its entries take their place at
 * free_at. Entries are added at the end, so the ring stays sorted. */
static void reserve(struct rule_state *st, struct stripe *s, struct window *w, uint64_t now,
                    uint64_t free_at, uint32_t displaced, int depart_later, uint32_t cost,
                    struct limiter_decision *out)
{
    struct limiter_hold *hold = malloc(sizeof *hold);
    if (hold == NULL || (depart_later && pending_add_units(w, free_at, cost) != 0)) {
        free(hold);
        reject(st, out, free_at - now, "out of memory");
        return;
    }
    uint64_t first = ring_at(w, 0), last = ring_at(w, displaced - 1);
    for (uint32_t i = 0; i < displaced; i++)
        ring_pop_oldest(w);
    for (uint32_t i = 0; i < cost; i++)
        ring_insert(w, free_at);
    w->queued++;
    *hold = (struct limiter_hold){.state = st, .stripe = s, .window = w, .time_us = free_at,
                                  .base_first_us = first, .base_us = last, .cost = cost,
                                  .displaced = displaced, .depart_later = depart_later};
    out->verdict = LIMITER_DELAY;
    out->delay_us = free_at - now;
    out->hold = hold;
    atomic_fetch_add(&st->delayed, 1);
    atomic_fetch_add(&st->queued, 1);
}

/* With the stripe locked: the decision for one window. */
static void decide_window(struct rule_state *st, struct stripe *s, struct window *w, uint64_t now,
                          int depart_later, uint32_t cost, int enforce,
                          struct limiter_decision *out)
{
    const struct rate_rule *p = &st->params;
    uint64_t window_us = counted_window_us(p);
    /* Entries that no longer count leave now, so the ring holds only the current window: without
     * this a key below its limit keeps up to `limit` stale entries, and ring_in_window() below
     * walks all of them on every request (O(limit) per request, a modulo per step). An entry
     * displaced by a reservation (see cancel_reservation) is never among them: it is newer than
     * now - window until the reservation's own time has come. A pending entry stays: its request
     * has not reached the origin yet, so it counts from its departure, which is later than now. */
    while (w->count > 0 && ring_at(w, 0) + window_us <= now &&
           (w->pending_count == 0 || pending_index(w, ring_at(w, 0)) < 0))
        ring_pop_oldest(w);
    const char *why = NULL;
    uint64_t until = learned_until(p, w, now, &why);
    if (until > now) { /* the stricter of the rule and the origin's word */
        learned_verdict(st, until, now, why, enforce, out);
        out->reset_us = until - now;
        return;
    }
    if (ring_reserve(w, w->count + cost, p->limit) != 0) {
        reject(st, out, 1000000, "out of memory");
    } else if (w->count + cost <= p->limit) {
        if (admit_entry(st, s, w, now, depart_later, cost, out) != 0)
            reject(st, out, 1000000, "out of memory");
    } else {
        /* the request's units fit once this many of the oldest entries have left */
        uint32_t displaced = w->count + cost - p->limit;
        uint64_t newest_displaced = ring_at(w, displaced - 1);
        /* an entry counts until window after it departs; a pending one has not: at the
         * earliest it departs now */
        uint64_t free_at = newest_displaced + window_us > now ? newest_displaced + window_us
                                                              : now + window_us;
        if (p->over_limit == RATE_OVER_REJECT) {
            reject(st, out, free_at - now, "over the limit");
        } else if (free_at - now > p->max_delay_ms * 1000) {
            reject(st, out, free_at - now, "the wait would exceed max_delay");
        } else if (atomic_load(&st->queued) >= p->max_queue) { /* per rule, as documented */
            reject(st, out, free_at - now, "the queue of held requests is full (max_queue)");
        } else if (!enforce) {
            would(st, LIMITER_DELAY, out);
            out->delay_us = free_at - now;
        } else {
            reserve(st, s, w, now, free_at, displaced, depart_later, cost, out);
        }
        if (!enforce && out->verdict == LIMITER_REJECT) {
            atomic_fetch_sub(&st->rejected, 1); /* reject() counted it: it was not enforced */
            would(st, LIMITER_REJECT, out);
        }
    }
    if (out->verdict == LIMITER_ADMIT && out->would == LIMITER_UNLIMITED)
        atomic_fetch_add(&st->admitted, 1);
    /* what the RateLimit fields report: room left at the moment the request goes ahead */
    uint64_t at = out->verdict == LIMITER_DELAY ? now + out->delay_us : now;
    uint32_t used = ring_in_window(w, at, window_us, &out->reset_us);
    out->remaining = used >= p->limit ? 0 : p->limit - used;
}

/* ---- held requests in a queue (fair_by, max_concurrent) ------------------------------------------
 *
 * Such a rule's held requests reserve no slot: they wait in the window's fair queue, and when the
 * ring has room (and the key has fewer than max_concurrent in flight) the queue's next request
 * takes its entries there and then. The ring stays the only judge of when; the queue only says
 * who. Nobody polls: the one request told to (the waker) asks again when the next slot frees,
 * a request whose turn comes is told at once through its post function, and a cancelled or
 * finished request passes its place on at once. */

static int queue_mode(const struct rate_rule *p)
{
    return p->fair_by != RATE_FAIR_NONE || p->max_concurrent > 0;
}

static struct limiter_hold *hold_of(struct fair_queue_item *item)
{
    return (struct limiter_hold *)(void *)((char *)item - offsetof(struct limiter_hold, item));
}

/* Entries that no longer count leave (see decide_window). */
static void drop_stale(struct window *w, uint64_t now, uint64_t window_us)
{
    while (w->count > 0 && ring_at(w, 0) + window_us <= now &&
           (w->pending_count == 0 || pending_index(w, ring_at(w, 0)) < 0))
        ring_pop_oldest(w);
}

/* Runs on the held request's own thread. A hold cancelled while its call was on the way is freed
 * here, where nothing else can reach it any more. */
static void on_posted(void *arg)
{
    struct limiter_hold *hold = arg;
    pthread_mutex_lock(&hold->stripe->lock);
    hold->posted = 0;
    int gone = hold->abandoned;
    pthread_mutex_unlock(&hold->stripe->lock);
    if (gone) {
        struct rule_state *st = hold->state;
        free(hold);
        state_unref(st);
        return;
    }
    hold->woken(hold->woken_arg);
}

/* With the stripe locked: tells the held request to ask limiter_hold_ready. */
static void notify(struct limiter_hold *hold)
{
    if (hold->post == NULL || hold->posted)
        return;
    hold->posted = 1;
    hold->call.fn = on_posted;
    hold->call.arg = hold;
    hold->post(hold->post_target, &hold->call);
}

/* With the stripe locked: someone must ask again at `at`. The waker keeps its place (told only
 * when that is sooner than it thinks); without one, the request whose turn it is becomes it. */
static void set_waker(struct window *w, struct limiter_hold *next, uint64_t at)
{
    if (w->kq->waker != NULL) {
        uint64_t before = w->kq->wake_at;
        w->kq->wake_at = at;
        if (at < before)
            notify(w->kq->waker);
        return;
    }
    w->kq->waker = next;
    w->kq->wake_at = at;
    notify(next);
}

/* With the stripe locked: the slot is the hold's: its entries are taken now. */
static void grant(struct rule_state *st, struct window *w, struct limiter_hold *hold, uint64_t now)
{
    fair_queue_remove(&w->kq->queue, &hold->item, 1);
    hold->queued = 0;
    hold->granted = 1;
    hold->time_us = now;
    if (hold->depart_later && pending_add_units(w, now, hold->cost) != 0)
        hold->depart_later = 0; /* out of memory: counted from now, as if it departed now */
    for (uint32_t i = 0; i < hold->cost; i++)
        ring_insert(w, now);
    if (!hold->depart_later)
        w->departures++;
    if (st->params.max_concurrent > 0)
        w->kq->inflight++;
    if (w->kq->waker == hold)
        w->kq->waker = NULL;
    notify(hold);
}

/* With the stripe locked: gives freed slots to the queue, in its order, and leaves a waker for
 * the next one. Time never runs backwards here: a call without a clock of its own (a cancel) uses
 * the latest time the window saw. */
static void pump(struct rule_state *st, struct window *w, uint64_t now)
{
    const struct rate_rule *p = &st->params;
    uint64_t window_us = counted_window_us(p);
    if (now < w->kq->seen_us)
        now = w->kq->seen_us;
    w->kq->seen_us = now;
    drop_stale(w, now, window_us);
    while (w->kq->queue.items > 0) {
        if (p->max_concurrent > 0 && w->kq->inflight >= p->max_concurrent)
            return; /* limiter_flight_end pumps */
        struct limiter_hold *next = hold_of(fair_queue_peek(&w->kq->queue));
        const char *why = NULL;
        uint64_t until = learned_until(p, w, now, &why);
        if (until > now) { /* the origin's word holds the key */
            set_waker(w, next, until);
            return;
        }
        if (ring_reserve(w, w->count + next->cost, p->limit) != 0)
            return; /* out of memory: the waker or a deadline asks again */
        if (w->count + next->cost <= p->limit) {
            grant(st, w, next, now);
            continue;
        }
        uint64_t oldest = ring_at(w, w->count + next->cost - p->limit - 1);
        uint64_t at = oldest + window_us;
        if (at <= now) /* it has not departed yet: ask again shortly */
            at = now + LIMITER_PENDING_RECHECK_US;
        set_waker(w, next, at);
        return;
    }
}

/* The value of the rule's fair_by for the request: whose turn it is. */
static size_t fair_value(const struct rate_rule *p, const struct limiter_request *r,
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

/* With the stripe locked: holds the request in the queue until its turn, at most max_delay. */
static void enqueue(struct rule_state *st, struct window *w, uint64_t now,
                    const struct limiter_request *r, const struct rate_rule *rule,
                    const struct credential_key *credential_key, uint32_t cost, uint32_t weight,
                    struct limiter_decision *out)
{
    const struct rate_rule *p = &st->params;
    char value[KEY_MAX];
    size_t len = fair_value(p, r, credential_key, value, sizeof value);
    /* weights: the current config's, by value; a weight_header's value wins; a flow keeps the
     * weight it was made with while it has requests held */
    if (weight == WEIGHT_UNSAID) {
        weight = 1;
        for (size_t i = 0; i < rule->weights_count; i++)
            if (strcmp(rule->weights[i].value, value) == 0)
                weight = rule->weights[i].weight;
    }
    struct limiter_hold *hold = calloc(1, sizeof *hold);
    if (hold == NULL || fair_queue_push(&w->kq->queue, &hold->item, value, len, weight, cost) != 0) {
        free(hold);
        reject(st, out, 1000000, "out of memory");
        return;
    }
    hold->state = st;
    hold->stripe = &st->stripes[w->hash % STRIPES];
    hold->window = w;
    hold->cost = cost;
    hold->depart_later = r->depart_later;
    hold->in_queue_mode = 1;
    hold->queued = 1;
    hold->deadline_us = now + p->max_delay_ms * 1000;
    hold->post = r->post;
    hold->post_target = r->post_target;
    hold->woken = r->woken;
    hold->woken_arg = r->woken_arg;
    atomic_fetch_add(&st->refs, 1); /* a hold outlives nothing it points into */
    w->queued++;
    out->verdict = LIMITER_DELAY;
    out->delay_us = p->max_delay_ms * 1000; /* at the latest; its turn is told */
    out->hold = hold;
    atomic_fetch_add(&st->delayed, 1);
    atomic_fetch_add(&st->queued, 1);
    pump(st, w, now);
}

/* With the stripe locked: the decision of a rule with fair_by or max_concurrent. */
static void decide_queued(struct rule_state *st, struct stripe *s, struct window *w, uint64_t now,
                          const struct limiter_request *r, const struct rate_rule *rule,
                          const struct credential_key *credential_key, uint32_t cost,
                          uint32_t weight, struct limiter_decision *out)
{
    const struct rate_rule *p = &st->params;
    int enforce = rule->enforce;
    uint64_t window_us = counted_window_us(p);
    if (w->kq == NULL && (w->kq = calloc(1, sizeof *w->kq)) == NULL) {
        reject(st, out, 1000000, "out of memory");
        return;
    }
    if (now > w->kq->seen_us)
        w->kq->seen_us = now;
    drop_stale(w, now, window_us);
    const char *why = NULL;
    uint64_t until = learned_until(p, w, now, &why);
    if (until > now) {
        learned_verdict(st, until, now, why, enforce, out);
        out->reset_us = until - now;
        return;
    }
    if (ring_reserve(w, w->count + cost, p->limit) != 0) {
        reject(st, out, 1000000, "out of memory");
        return;
    }
    int room = w->count + cost <= p->limit;
    int below_cap = p->max_concurrent == 0 || w->kq->inflight < p->max_concurrent;
    if (room && below_cap && w->kq->queue.items == 0) { /* nobody waits before it */
        if (admit_entry(st, s, w, now, r->depart_later, cost, out) != 0) {
            reject(st, out, 1000000, "out of memory");
            return;
        }
        if (p->max_concurrent > 0) {
            w->kq->inflight++;
            out->flight = (struct limiter_flight){st, s, w};
        }
    } else {
        /* at the earliest when the window has room for it: a wait can only be longer */
        uint64_t free_at = now;
        if (!room) {
            uint64_t oldest = ring_at(w, w->count + cost - p->limit - 1);
            free_at = oldest + window_us > now ? oldest + window_us : now + window_us;
        }
        uint64_t retry_us = free_at > now ? free_at - now : 1000000;
        if (p->over_limit == RATE_OVER_REJECT)
            reject(st, out, retry_us,
                   room ? "too many requests of this key in flight (max_concurrent)"
                        : "over the limit");
        else if (free_at - now > p->max_delay_ms * 1000)
            reject(st, out, retry_us, "the wait would exceed max_delay");
        else if (atomic_load(&st->queued) >= p->max_queue)
            reject(st, out, retry_us, "the queue of held requests is full (max_queue)");
        else if (!enforce)
            would(st, LIMITER_DELAY, out);
        else
            enqueue(st, w, now, r, rule, credential_key, cost, weight, out);
        if (!enforce && out->verdict == LIMITER_REJECT) {
            atomic_fetch_sub(&st->rejected, 1);
            would(st, LIMITER_REJECT, out);
        }
    }
    if (out->verdict == LIMITER_ADMIT && out->would == LIMITER_UNLIMITED)
        atomic_fetch_add(&st->admitted, 1);
    uint32_t used = ring_in_window(w, now, window_us, &out->reset_us);
    out->remaining = used >= p->limit ? 0 : p->limit - used;
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
static uint32_t request_cost(const struct rate_rule *rule, const struct limiter_request *r)
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
static uint32_t request_weight(const struct rate_rule *rule, const struct limiter_request *r)
{
    if (rule->weight_header[0] == '\0' || r->find_header == NULL)
        return WEIGHT_UNSAID;
    size_t len = 0;
    const char *value = r->find_header(r->headers, rule->weight_header, &len);
    return value != NULL ? parse_cost(value, len, RATE_WEIGHT_MAX) : WEIGHT_UNSAID;
}

void limiter_decide(struct limiter *l, const struct limiter_request *r, uint64_t now_us,
                    struct limiter_decision *out)
{
    memset(out, 0, sizeof *out);
    out->verdict = LIMITER_UNLIMITED;
    size_t i = 0;
    while (i < l->rule_count && !rule_matches(&l->rules[i], r))
        i++;
    if (i == l->rule_count)
        return;
    struct rule_state *st = l->states[i];
    /* cost and enforce come from this config's rule, not the kept state: a reload that changes
     * only them keeps the windows */
    const struct rate_rule *rule = &l->rules[i];
    out->rule = rule;
    out->rule_index = i;
    out->cost = request_cost(rule, r);
    if (out->cost == 0) {
        out->verdict = LIMITER_REJECT;
        out->bad_request = 1;
        out->bad_header = rule->cost_header;
        out->reason = "the cost header's value is not a whole number from 1 to the rule's limit";
        return;
    }
    uint32_t weight = request_weight(rule, r);
    if (weight == 0) {
        out->verdict = LIMITER_REJECT;
        out->bad_request = 1;
        out->bad_header = rule->weight_header;
        out->reason = "the weight header's value is not a whole number from 1 to 1000";
        return;
    }
    if (out->cost > st->params.limit) /* a reload lowered the limit under a kept cost */
        out->cost = st->params.limit;
    char key[KEY_MAX];
    size_t len = build_key(&st->params, r, l->credential_key, key);
    uint64_t hash = hash_key(key, len);
    struct stripe *s = &st->stripes[hash % STRIPES];
    pthread_mutex_lock(&s->lock);
    struct window *w = window_get(st, s, hash, key, len, l->max_keys);
    if (w == NULL) { /* at the cap: make room from this stripe's idle windows, then try once more */
        stripe_expire(st, s, now_us);
        w = window_get(st, s, hash, key, len, l->max_keys);
    }
    if (w == NULL)
        reject(st, out, st->params.window_ms * 1000, "too many distinct keys (rate_limits_max_keys)");
    else if (queue_mode(&st->params))
        decide_queued(st, s, w, now_us, r, rule, l->credential_key, out->cost, weight, out);
    else
        decide_window(st, s, w, now_us, r->depart_later, out->cost, rule->enforce, out);
    pthread_mutex_unlock(&s->lock);
}

void limiter_learn(struct limiter_stamp *answer, int status, const struct limit_headers *h,
                   uint64_t now_us)
{
    struct window *w = answer->window;
    if (w == NULL || !h->found)
        return;
    struct stripe *s = answer->stripe;
    uint64_t departure = answer->time_us;
    pthread_mutex_lock(&s->lock);
    struct learned *k = &w->learned;
    if (h->retry_after_ms >= 0 && (status == 429 || status == 503)) {
        uint64_t wait = (uint64_t)h->retry_after_ms * 1000;
        uint64_t until = now_us + (wait < LIMITER_MAX_PAUSE_US ? wait : LIMITER_MAX_PAUSE_US);
        if (until > k->paused_until_us)
            k->paused_until_us = until;
    }
    if (h->limit > 0)
        k->limit = (uint64_t)h->limit;
    if (h->window_ms > 0)
        k->period_us = (uint64_t)h->window_ms * 1000;
    /* a response to an earlier request than the one the key learned from says less: it was
     * counted before requests the newer one already includes */
    if (h->remaining >= 0 && (k->remaining < 0 || departure >= k->seq)) {
        uint64_t reset = h->reset_ms >= 0 ? now_us + (uint64_t)h->reset_ms * 1000 : 0;
        /* a quota window seen from two resets (X-RateLimit-Reset says when, not how long) */
        uint64_t known = reset != 0 && k->reset_us == 0 ? k->last_reset_us : k->reset_us;
        if (h->window_ms <= 0 && reset != 0 && known != 0 && reset > known + LIMITER_RESET_SLACK_US)
            k->period_us = reset - known;
        /* requests that left before this one and are not answered yet may reach the origin's
         * count after it: they are taken as not counted */
        int64_t earlier = 0;
        for (uint32_t i = 0; i < w->unanswered_count; i++)
            earlier += w->unanswered[i] < departure;
        k->remaining = h->remaining > earlier ? h->remaining - earlier : 0;
        k->seq = departure;
        if (reset != 0)
            k->reset_us = k->last_reset_us = reset;
    }
    pthread_mutex_unlock(&s->lock);
}

void limiter_answered(struct limiter_stamp *answer)
{
    struct window *w = answer->window;
    if (w == NULL)
        return;
    pthread_mutex_lock(&((struct stripe *)answer->stripe)->lock);
    for (uint32_t i = 0; i < w->unanswered_count; i++)
        if (w->unanswered[i] == answer->time_us) {
            w->unanswered[i] = w->unanswered[--w->unanswered_count];
            break;
        }
    pthread_mutex_unlock(&((struct stripe *)answer->stripe)->lock);
    answer->window = NULL;
}

size_t limiter_paused_keys(struct limiter *l, size_t rule_index, uint64_t now_us)
{
    struct rule_state *st = l->states[rule_index];
    size_t n = 0;
    for (size_t j = 0; j < STRIPES; j++) {
        struct stripe *s = &st->stripes[j];
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->bucket_count; b++)
            for (struct window *w = s->buckets[b]; w != NULL; w = w->next) {
                const char *why;
                n += learned_until(&st->params, w, now_us, &why) > now_us;
            }
        pthread_mutex_unlock(&s->lock);
    }
    return n;
}

size_t limiter_match(const struct limiter *l, const struct limiter_request *r)
{
    size_t i = 0;
    while (i < l->rule_count && !rule_matches(&l->rules[i], r))
        i++;
    return i;
}

size_t limiter_key(const struct rate_rule *rule, const struct limiter_request *r,
                   const struct credential_key *credential_key, char *key, size_t len)
{
    char buf[KEY_MAX];
    size_t n = build_key(rule, r, credential_key, buf);
    snprintf(key, len, "%.*s", (int)n, buf);
    return n < len ? n : len - 1;
}

/* The entries a held request's slot was computed from: its displaced range, and the ranges that
 * cancelled reservations within it were computed from in turn (up to RANGES_MAX). */
#define RANGES_MAX 16
struct ranges {
    uint64_t first[RANGES_MAX], last[RANGES_MAX];
    uint32_t count;
};

static void ranges_of(const struct window *w, uint64_t first, uint64_t last, struct ranges *out)
{
    out->count = 0;
    out->first[out->count] = first;
    out->last[out->count++] = last;
    for (uint32_t k = 0; k < out->count; k++)
        for (uint32_t i = 0; i < w->releases_count && out->count < RANGES_MAX; i++) {
            const struct release *r = &w->releases[(w->releases_head + i) % w->releases_cap];
            if (r->linked && r->scheduled >= out->first[k] &&
                r->scheduled <= out->last[k]) {
                out->first[out->count] = r->linked_first;
                out->last[out->count++] = r->linked_last;
            }
        }
}

static int in_ranges(const struct ranges *rs, uint64_t t)
{
    for (uint32_t k = 0; k < rs->count; k++)
        if (t >= rs->first[k] && t <= rs->last[k])
            return 1;
    return 0;
}

/* With the stripe locked: when the requests scheduled within the ranges actually went, the latest
 * (0 if they went on time or are not known). */
static uint64_t actual_release(const struct window *w, const struct ranges *rs)
{
    uint64_t actual = 0;
    for (uint32_t i = 0; i < w->releases_count; i++) {
        const struct release *r = &w->releases[(w->releases_head + i) % w->releases_cap];
        if (!r->linked && in_ranges(rs, r->scheduled) && r->actual > actual)
            actual = r->actual;
    }
    return actual;
}

/* With the stripe locked: 1 when an entry within the ranges has not departed. */
static int pending_within(const struct window *w, const struct ranges *rs)
{
    for (uint32_t i = 0; i < w->pending_count; i++)
        if (in_ranges(rs, w->pending[i]))
            return 1;
    return 0;
}

/* Entries equal to t in the ring. */
static uint32_t ring_count_of(const struct window *w, uint64_t t)
{
    uint32_t n = 0;
    for (uint32_t i = ring_lower_bound(w, t); i < w->count && ring_at(w, i) == t; i++)
        n++;
    return n;
}

static uint32_t pending_count_of(const struct window *w, uint64_t t)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->pending_count; i++)
        n += w->pending[i] == t;
    return n;
}

static void record_release(struct window *w, uint32_t limit, struct release release);

/* With the stripe locked: takes a cancelled reservation's entries out and puts back the entries it
 * displaced. Entries of it that later reservations displaced in turn stand for as many of its own
 * (those reservations wait a window after it, later than after any of them), so only the rest
 * come back, and the later ones learn to wait for what it was computed from instead. Each entry
 * comes back no earlier than its request reached the origin: one still on its way at its own
 * time (its departure moves it), the others at the newest displaced time or the latest late
 * departure among them, which is exact for the newest and stricter for the rest. */
static void cancel_reservation(struct window *w, const struct limiter_hold *hold)
{
    uint32_t removed = 0;
    while (removed < hold->cost && ring_remove(w, hold->time_us))
        removed++;
    uint32_t superseded = hold->cost - removed;
    if (superseded > 0)
        record_release(w, hold->state->params.limit,
                       (struct release){hold->time_us, 0, hold->base_first_us, hold->base_us, 1});
    uint32_t back = hold->displaced > superseded ? hold->displaced - superseded : 0;
    if (hold->base_us < w->reset_us)
        back = 0; /* what it displaced was reset */
    struct ranges rs;
    ranges_of(w, hold->base_first_us, hold->base_us, &rs);
    for (uint32_t i = 0; i < w->pending_count && back > 0 && w->count < w->cap; i++) {
        uint64_t p = w->pending[i];
        if (in_ranges(&rs, p) && ring_count_of(w, p) < pending_count_of(w, p)) {
            ring_insert(w, p);
            back--;
        }
    }
    uint64_t at = actual_release(w, &rs);
    if (at < hold->base_us)
        at = hold->base_us;
    for (; back > 0 && w->count < w->cap; back--)
        ring_insert(w, at);
}

/* limiter_hold_ready for a queued hold, with the stripe locked. */
static uint64_t queued_ready(struct limiter_hold *hold, uint64_t now)
{
    struct window *w = hold->window;
    if (hold->queued)
        pump(hold->state, w, now);
    if (hold->granted)
        return 0;
    if (now >= hold->deadline_us)
        return LIMITER_HOLD_EXPIRED;
    uint64_t until = hold->deadline_us;
    if (w->kq->waker == hold && w->kq->wake_at < until)
        until = w->kq->wake_at;
    return until > now ? until - now : 1;
}

uint64_t limiter_hold_ready(struct limiter_hold *hold, uint64_t now_us)
{
    pthread_mutex_lock(&hold->stripe->lock);
    if (hold->in_queue_mode) {
        uint64_t wait = queued_ready(hold, now_us);
        pthread_mutex_unlock(&hold->stripe->lock);
        return wait;
    }
    struct ranges rs;
    ranges_of(hold->window, hold->base_first_us, hold->base_us, &rs);
    if (pending_within(hold->window, &rs)) {
        pthread_mutex_unlock(&hold->stripe->lock); /* it follows a request still on its way */
        return LIMITER_PENDING_RECHECK_US;
    }
    uint64_t actual = actual_release(hold->window, &rs);
    pthread_mutex_unlock(&hold->stripe->lock);
    uint64_t earliest = hold->time_us; /* timers may fire early by the loop's cached time */
    uint64_t window_us = counted_window_us(&hold->state->params);
    if (actual != 0 && actual + window_us > earliest)
        earliest = actual + window_us;
    return earliest > now_us ? earliest - now_us : 0;
}

/* Late releases only: on-time ones change nothing. The log keeps the last 2 x limit + 64 of them
 * and of the links of cancelled reservations (one each per request, whatever its cost): the holds
 * still waiting were computed from at most `limit` entries of the window. */
static void record_release(struct window *w, uint32_t limit, struct release release)
{
    if (release.actual <= release.scheduled && !release.linked)
        return;
    if (w->releases == NULL) {
        w->releases_cap = limit < 4096 ? 2 * limit + 64 : 8256;
        w->releases = calloc(w->releases_cap, sizeof *w->releases);
        if (w->releases == NULL)
            return;
    }
    uint32_t slot = (w->releases_head + w->releases_count) % w->releases_cap;
    if (w->releases_count == w->releases_cap)
        w->releases_head = (w->releases_head + 1) % w->releases_cap;
    else
        w->releases_count++;
    w->releases[slot] = release;
}

void limiter_hold_done(struct limiter_hold *hold, uint64_t now_us)
{
    if (hold == NULL)
        return;
    if (hold->depart_later || hold->in_queue_mode) { /* went and departed at once */
        struct limiter_stamp stamp;
        limiter_hold_go(hold, &stamp, NULL);
        limiter_depart(&stamp, now_us, NULL);
        return;
    }
    pthread_mutex_lock(&hold->stripe->lock);
    record_release(hold->window, hold->state->params.limit,
                   (struct release){hold->time_us, now_us, 0, 0, 0});
    hold->window->queued--;
    pthread_mutex_unlock(&hold->stripe->lock);
    atomic_fetch_sub(&hold->state->queued, 1);
    free(hold);
}

void limiter_hold_go(struct limiter_hold *hold, struct limiter_stamp *stamp,
                     struct limiter_flight *flight)
{
    struct rule_state *st = hold->state;
    *stamp = (struct limiter_stamp){st, hold->stripe, hold->window, hold->time_us, hold->cost};
    struct limiter_flight taken = {NULL, NULL, NULL};
    if (hold->granted && st->params.max_concurrent > 0)
        taken = (struct limiter_flight){st, hold->stripe, hold->window};
    int counted = hold->in_queue_mode; /* a queued hold holds a reference to its rule's state */
    pthread_mutex_lock(&hold->stripe->lock);
    hold->window->queued--; /* its entry stays pending until the stamp departs */
    int keep = hold->posted; /* its wake-up is on the way: on_posted frees it */
    hold->abandoned = keep;
    pthread_mutex_unlock(&hold->stripe->lock);
    atomic_fetch_sub(&st->queued, 1);
    if (!keep)
        free(hold);
    if (flight != NULL)
        *flight = taken;
    else
        limiter_flight_end(&taken, 0);
    if (counted && !keep)
        state_unref(st);
}

void limiter_flight_end(struct limiter_flight *flight, uint64_t now_us)
{
    struct window *w = flight->window;
    if (w == NULL)
        return;
    struct stripe *s = flight->stripe;
    pthread_mutex_lock(&s->lock);
    if (w->kq->inflight > 0)
        w->kq->inflight--;
    pump(flight->state, w, now_us);
    pthread_mutex_unlock(&s->lock);
    flight->window = NULL;
}

uint64_t limiter_depart(struct limiter_stamp *stamp, uint64_t now_us, struct limiter_stamp *answer)
{
    struct window *w = stamp->window;
    if (w == NULL)
        return 0;
    struct stripe *s = stamp->stripe;
    struct rule_state *st = stamp->state;
    uint64_t seq = 0;
    pthread_mutex_lock(&s->lock);
    uint32_t units = 0;
    while (units < stamp->cost && pending_remove(w, stamp->time_us))
        units++;
    if (units > 0) {
        seq = ++w->departures;
        if (answer != NULL && st->params.upstream_limits == RATE_UPSTREAM_FOLLOW &&
            grow_u64(&w->unanswered, &w->unanswered_cap, w->unanswered_count) == 0) {
            w->unanswered[w->unanswered_count++] = seq; /* pins the window until answered */
            *answer = (struct limiter_stamp){st, s, w, seq, 0};
        }
        int displaced = 0;
        for (uint32_t i = 0; i < units && now_us > stamp->time_us; i++) {
            if (ring_remove(w, stamp->time_us))
                ring_insert(w, now_us);
            else /* displaced by a held request's reservation: that request waits for this one */
                displaced = 1;
        }
        if (displaced)
            record_release(w, st->params.limit, (struct release){stamp->time_us, now_us, 0, 0, 0});
    }
    pthread_mutex_unlock(&s->lock);
    stamp->window = NULL;
    return seq;
}

void limiter_abandon(struct limiter_stamp *stamp)
{
    if (stamp->window == NULL)
        return;
    struct stripe *s = stamp->stripe;
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < stamp->cost; i++)
        pending_remove(stamp->window, stamp->time_us);
    pthread_mutex_unlock(&s->lock);
    stamp->window = NULL;
}

/* limiter_hold_cancel for a queued hold: its place, or the slot it was given and did not use,
 * goes to the next in the queue at once. */
static void cancel_queued(struct limiter_hold *hold)
{
    struct rule_state *st = hold->state;
    struct window *w = hold->window;
    pthread_mutex_lock(&hold->stripe->lock);
    if (hold->queued) {
        fair_queue_remove(&w->kq->queue, &hold->item, 0);
        hold->queued = 0;
        if (w->kq->waker == hold)
            w->kq->waker = NULL;
    } else { /* granted, never sent: its entries and its place in flight go back */
        for (uint32_t i = 0; i < hold->cost; i++) {
            if (hold->depart_later)
                pending_remove(w, hold->time_us);
            ring_remove(w, hold->time_us);
        }
        if (st->params.max_concurrent > 0 && w->kq->inflight > 0)
            w->kq->inflight--;
    }
    w->queued--;
    pump(st, w, w->kq->seen_us);
    int keep = hold->posted; /* on_posted frees it */
    hold->abandoned = keep;
    pthread_mutex_unlock(&hold->stripe->lock);
    atomic_fetch_sub(&st->queued, 1);
    if (!keep) {
        free(hold);
        state_unref(st);
    }
}

void limiter_hold_cancel(struct limiter_hold *hold)
{
    if (hold == NULL)
        return;
    if (hold->in_queue_mode) {
        cancel_queued(hold);
        return;
    }
    pthread_mutex_lock(&hold->stripe->lock);
    for (uint32_t i = 0; hold->depart_later && i < hold->cost; i++)
        pending_remove(hold->window, hold->time_us);
    cancel_reservation(hold->window, hold);
    hold->window->queued--;
    pthread_mutex_unlock(&hold->stripe->lock);
    atomic_fetch_sub(&hold->state->queued, 1);
    free(hold);
}

size_t limiter_expire(struct limiter *l, uint64_t now_us)
{
    size_t left = 0;
    for (size_t i = 0; i < l->rule_count; i++) {
        struct rule_state *st = l->states[i];
        for (size_t j = 0; j < STRIPES; j++) {
            pthread_mutex_lock(&st->stripes[j].lock);
            left += stripe_expire(st, &st->stripes[j], now_us);
            pthread_mutex_unlock(&st->stripes[j].lock);
        }
    }
    return left;
}

/* ---- views and snapshots (admin /limits, state_file) ---------------------------------------- */

/* New code reads and writes windows only through the helpers below, so changes to the ring's
 * internals stay local to them. */

_Static_assert(KEY_MAX <= LIMITER_KEY_TEXT_MAX, "limiter.h promises keys fit LIMITER_KEY_TEXT_MAX");

/* With the stripe locked: the window of `key`, or NULL; never creates one. */
static struct window *window_find(struct stripe *s, uint64_t hash, const char *key, size_t len)
{
    if (s->bucket_count == 0)
        return NULL;
    for (struct window *w = s->buckets[(hash / STRIPES) % s->bucket_count]; w; w = w->next)
        if (w->hash == hash && w->key_len == len && memcmp(w->key, key, len) == 0)
            return w;
    return NULL;
}

/* Calls visit for every window of one rule, one stripe locked at a time. */
static void rule_visit(struct rule_state *st,
                       void (*visit)(struct rule_state *, struct window *, void *), void *arg)
{
    for (size_t i = 0; i < STRIPES; i++) {
        struct stripe *s = &st->stripes[i];
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->bucket_count; b++)
            for (struct window *w = s->buckets[b]; w != NULL; w = w->next)
                visit(st, w, arg);
        pthread_mutex_unlock(&s->lock);
    }
}

struct view_visit {
    uint64_t now_us;
    limiter_window_fn fn;
    void *arg;
};

static void view_one(struct rule_state *st, struct window *w, void *arg)
{
    struct view_visit *v = arg;
    struct limiter_window_view view = {
        .key = w->key, .key_len = w->key_len, .limit = st->params.limit, .held = w->queued};
    view.used = ring_in_window(w, v->now_us, counted_window_us(&st->params), &view.reset_us);
    /* admitted and not departed, or departed and not answered (rules that follow their origin) */
    view.in_flight = w->pending_count - (w->pending_count >= w->queued ? w->queued : 0) +
                     w->unanswered_count;
    const struct learned *k = &w->learned;
    view.origin_limit = k->limit > 0 ? (int64_t)k->limit : -1;
    view.origin_remaining = k->remaining;
    view.origin_reset_us = k->reset_us > v->now_us ? k->reset_us - v->now_us : 0;
    view.paused_us = k->paused_until_us > v->now_us ? k->paused_until_us - v->now_us : 0;
    if (view.used > 0 || view.held > 0 || view.in_flight > 0 || view.paused_us > 0 ||
        view.origin_reset_us > 0)
        v->fn(&view, v->arg);
}

void limiter_foreach_window(struct limiter *l, size_t rule_index, uint64_t now_us,
                            limiter_window_fn fn, void *arg)
{
    if (rule_index >= l->rule_count)
        return;
    struct view_visit v = {now_us, fn, arg};
    rule_visit(l->states[rule_index], view_one, &v);
}

struct export_visit {
    uint64_t now_us;
    limiter_entries_fn fn;
    void *arg;
    uint64_t *times; /* scratch of `limit` entries */
};

static void export_one(struct rule_state *st, struct window *w, void *arg)
{
    struct export_visit *v = arg;
    uint64_t window_us = counted_window_us(&st->params);
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->count; i++) {
        uint64_t t = ring_at(w, i);
        if (t + window_us > v->now_us && t <= v->now_us)
            v->times[n++] = t;
    }
    if (n > 0)
        v->fn(w->key, w->key_len, v->times, n, v->arg);
}

void limiter_export_windows(struct limiter *l, size_t rule_index, uint64_t now_us,
                            limiter_entries_fn fn, void *arg)
{
    if (rule_index >= l->rule_count)
        return;
    struct rule_state *st = l->states[rule_index];
    struct export_visit v = {now_us, fn, arg, malloc((size_t)st->params.limit * sizeof(uint64_t))};
    if (v.times == NULL)
        return;
    rule_visit(st, export_one, &v);
    free(v.times);
}

static int compare_times(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int limiter_restore_window(struct limiter *l, size_t rule_index, const char *key, size_t key_len,
                           const uint64_t *times_us, uint32_t count, uint64_t now_us)
{
    if (rule_index >= l->rule_count || key_len >= KEY_MAX)
        return -1;
    struct rule_state *st = l->states[rule_index];
    uint64_t window_us = st->params.window_ms * 1000;
    uint64_t *kept = malloc(((size_t)count + 1) * sizeof *kept);
    if (kept == NULL)
        return -1;
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++)
        if (times_us[i] <= now_us && times_us[i] + window_us > now_us)
            kept[n++] = times_us[i];
    qsort(kept, n, sizeof *kept, compare_times);
    uint64_t hash = hash_key(key, key_len);
    struct stripe *s = &st->stripes[hash % STRIPES];
    pthread_mutex_lock(&s->lock);
    struct window *w = n > 0 ? window_get(st, s, hash, key, key_len, l->max_keys) : NULL;
    int rc = n > 0 && w == NULL ? -1 : 0;
    uint32_t before = w != NULL ? w->count : 0;
    for (uint32_t i = 0; w != NULL && i < n; i++) {
        while (w->count > 0 && ring_at(w, 0) + window_us <= now_us)
            ring_pop_oldest(w);
        if (w->count == st->params.limit)
            ring_pop_oldest(w); /* the newest `limit` entries are the ones that matter */
        if (w->count == w->cap && ring_grow(w, st->params.limit) != 0) {
            rc = -1;
            break;
        }
        ring_insert(w, kept[i]);
        rc = w->count > before ? (int)(w->count - before) : 0;
    }
    pthread_mutex_unlock(&s->lock);
    free(kept);
    return rc;
}

int limiter_reset_window(struct limiter *l, size_t rule_index, const char *key, size_t key_len,
                         uint64_t now_us)
{
    if (rule_index >= l->rule_count || key_len >= KEY_MAX)
        return -1;
    struct rule_state *st = l->states[rule_index];
    uint64_t hash = hash_key(key, key_len);
    struct stripe *s = &st->stripes[hash % STRIPES];
    pthread_mutex_lock(&s->lock);
    struct window *w = window_find(s, hash, key, key_len);
    if (w != NULL) {
        /* the ring is sorted: the reservations of held requests are its suffix after now, and
         * they stay, since those requests will still go. A held request cancelled later gives
         * back nothing it displaced before now (reset_us), which is what an emptied window wants. */
        uint32_t past = 0;
        while (past < w->count && ring_at(w, past) <= now_us)
            past++;
        w->head = w->cap > 0 ? (w->head + past) % w->cap : 0;
        w->count -= past;
        w->reset_us = now_us;
        w->releases_count = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return w != NULL ? 0 : -1;
}
