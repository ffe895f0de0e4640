/* The infra cache: per-upstream-server RTT/RTO, backoff, hold-down and "no EDNS" state in a
 * bounded, sharded LRU hash, and server selection with exploration (see infra.h). */
#include "infra.h"

#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

#define INFRA_SELECT_STACK 32u /* candidates examined without a heap allocation */
#define INFRA_PERMILLE 1000u

/* What identifies a server: family, address and port. Zero-filled so it can be hashed and
 * compared as bytes. */
struct infra_key {
    uint16_t family;
    uint16_t port;
    uint8_t address[16];
};

struct infra_entry {
    struct infra_key key;
    uint64_t hash;
    struct infra_entry *bucket_next;
    struct infra_entry *lru_prev; /* towards the most recently used */
    struct infra_entry *lru_next; /* towards the least recently used */
    bool measured;
    uint32_t srtt_ms;
    uint32_t rttvar_ms;
    uint32_t rto_ms;
    uint32_t failures;
    uint32_t holddowns;
    uint64_t held_until_ms; /* held down while now < held_until_ms */
    uint64_t last_probe_ms; /* start of hold-down, then time of the last probe */
    uint64_t noedns_until_ms;
    uint64_t updated_ms; /* last report */
};

struct infra_shard {
    pthread_mutex_t lock;
    struct infra_entry **buckets;
    size_t bucket_mask;
    struct infra_entry *lru_head; /* most recently used */
    struct infra_entry *lru_tail; /* next to evict */
    size_t count;
    size_t max;
};

/* Per-server counters (infra_count_query): state goes FREE -> CLAIMED (key being written) ->
 * READY, never back, so readers need no lock. */
enum { INFRA_SLOT_FREE, INFRA_SLOT_CLAIMED, INFRA_SLOT_READY };
struct infra_counter_slot {
    uint32_t state;
    struct infra_key key;
    struct addr server;
    uint64_t queries;
    uint64_t timeouts;
};

struct infra {
    struct infra_config config;
    struct infra_counter_slot counted[INFRA_COUNTED_SERVERS];
    struct infra_counter_slot other; /* servers past INFRA_COUNTED_SERVERS */
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    size_t shard_count;
    struct infra_shard shards[];
};

/* A candidate's state as seen by infra_select(). */
struct infra_view {
    uint32_t rto_ms;
    bool held;
    uint64_t held_until_ms;
};

void infra_config_defaults(struct infra_config *config)
{
    *config = (struct infra_config){
        .max_entries = INFRA_DEFAULT_MAX_ENTRIES,
        .shards = INFRA_DEFAULT_SHARDS,
        .unknown_rto_ms = INFRA_DEFAULT_UNKNOWN_RTO_MS,
        .min_rto_ms = INFRA_DEFAULT_MIN_RTO_MS,
        .max_rto_ms = INFRA_DEFAULT_MAX_RTO_MS,
        .fail_threshold = INFRA_DEFAULT_FAIL_THRESHOLD,
        .holddown_ms = INFRA_DEFAULT_HOLDDOWN_MS,
        .holddown_max_ms = INFRA_DEFAULT_HOLDDOWN_MAX_MS,
        .probe_interval_ms = INFRA_DEFAULT_PROBE_INTERVAL_MS,
        .noedns_ttl_ms = INFRA_DEFAULT_NOEDNS_TTL_MS,
        .host_ttl_ms = INFRA_DEFAULT_HOST_TTL_MS,
        .explore_permille = INFRA_DEFAULT_EXPLORE_PERMILLE,
        .band_ms = INFRA_DEFAULT_BAND_MS,
    };
}

static void infra_default_zero(uint32_t *value, uint32_t fallback)
{
    if (*value == 0)
        *value = fallback;
}

static int infra_config_complete(const struct infra_config *in, struct infra_config *out)
{
    struct infra_config defaults;
    infra_config_defaults(&defaults);
    if (in == NULL) {
        *out = defaults;
        return BALLAST_OK;
    }
    *out = *in;
    infra_default_zero(&out->max_entries, defaults.max_entries);
    infra_default_zero(&out->shards, defaults.shards);
    infra_default_zero(&out->unknown_rto_ms, defaults.unknown_rto_ms);
    infra_default_zero(&out->min_rto_ms, defaults.min_rto_ms);
    infra_default_zero(&out->max_rto_ms, defaults.max_rto_ms);
    infra_default_zero(&out->fail_threshold, defaults.fail_threshold);
    infra_default_zero(&out->holddown_ms, defaults.holddown_ms);
    infra_default_zero(&out->holddown_max_ms, defaults.holddown_max_ms);
    infra_default_zero(&out->probe_interval_ms, defaults.probe_interval_ms);
    infra_default_zero(&out->noedns_ttl_ms, defaults.noedns_ttl_ms);
    infra_default_zero(&out->host_ttl_ms, defaults.host_ttl_ms);
    if (out->min_rto_ms > out->max_rto_ms || out->holddown_ms > out->holddown_max_ms ||
        out->explore_permille > INFRA_PERMILLE || out->holddown_jitter_percent > 100)
        return BALLAST_EINVAL;
    if (out->shards > out->max_entries)
        out->shards = out->max_entries;
    return BALLAST_OK;
}

static uint32_t infra_clamp_rto(const struct infra_config *config, uint64_t rto_ms)
{
    if (rto_ms < config->min_rto_ms)
        return config->min_rto_ms;
    if (rto_ms > config->max_rto_ms)
        return config->max_rto_ms;
    return (uint32_t)rto_ms;
}

static size_t infra_round_pow2(size_t n)
{
    size_t p = 4;
    while (p < n)
        p <<= 1;
    return p;
}

int infra_create(const struct infra_config *config, struct infra **out)
{
    struct infra_config cfg;
    int rc = infra_config_complete(config, &cfg);
    if (rc != BALLAST_OK)
        return rc;
    if (sodium_init() < 0)
        return BALLAST_ESYS;
    struct infra *infra = calloc(1, sizeof *infra + cfg.shards * sizeof(struct infra_shard));
    if (infra == NULL)
        return BALLAST_ENOMEM;
    infra->config = cfg;
    /* A secret hash key keeps remote parties from choosing colliding server addresses. */
    randombytes_buf(infra->hash_key, sizeof infra->hash_key);
    size_t per_shard = cfg.max_entries / cfg.shards; /* floor: the total never exceeds max */
    size_t buckets = infra_round_pow2(per_shard);
    for (size_t i = 0; i < cfg.shards; i++) {
        struct infra_shard *shard = &infra->shards[i];
        shard->buckets = calloc(buckets, sizeof *shard->buckets);
        if (shard->buckets == NULL) {
            infra->shard_count = i;
            infra_free(infra);
            return BALLAST_ENOMEM;
        }
        shard->bucket_mask = buckets - 1;
        shard->max = per_shard;
        pthread_mutex_init(&shard->lock, NULL);
        infra->shard_count = i + 1;
    }
    *out = infra;
    return BALLAST_OK;
}

void infra_free(struct infra *infra)
{
    if (infra == NULL)
        return;
    for (size_t i = 0; i < infra->shard_count; i++) {
        struct infra_shard *shard = &infra->shards[i];
        struct infra_entry *e = shard->lru_head;
        while (e != NULL) {
            struct infra_entry *next = e->lru_next;
            free(e);
            e = next;
        }
        free(shard->buckets);
        pthread_mutex_destroy(&shard->lock);
    }
    free(infra);
}

static void infra_key_make(const struct addr *server, struct infra_key *key)
{
    memset(key, 0, sizeof *key);
    key->family = server->ss.ss_family;
    if (server->ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&server->ss;
        key->port = sin->sin_port;
        memcpy(key->address, &sin->sin_addr, sizeof sin->sin_addr);
    } else if (server->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&server->ss;
        key->port = sin6->sin6_port;
        memcpy(key->address, &sin6->sin6_addr, sizeof sin6->sin6_addr);
    }
}

static uint64_t infra_key_hash(const struct infra *infra, const struct infra_key *key)
{
    uint8_t digest[crypto_shorthash_BYTES];
    crypto_shorthash(digest, (const uint8_t *)key, sizeof *key, infra->hash_key);
    uint64_t h;
    memcpy(&h, digest, sizeof h);
    return h;
}

/* The shard that holds key, locked. Unlock with pthread_mutex_unlock(&shard->lock). */
static struct infra_shard *infra_lock_shard(struct infra *infra, const struct addr *server,
                                            struct infra_key *key, uint64_t *hash)
{
    infra_key_make(server, key);
    *hash = infra_key_hash(infra, key);
    struct infra_shard *shard = &infra->shards[*hash % infra->shard_count];
    pthread_mutex_lock(&shard->lock);
    return shard;
}

static struct infra_entry **infra_bucket(struct infra_shard *shard, uint64_t hash)
{
    return &shard->buckets[(hash >> 32) & shard->bucket_mask];
}

static struct infra_entry *infra_shard_find(struct infra_shard *shard, const struct infra_key *key,
                                            uint64_t hash)
{
    for (struct infra_entry *e = *infra_bucket(shard, hash); e != NULL; e = e->bucket_next)
        if (e->hash == hash && memcmp(&e->key, key, sizeof *key) == 0)
            return e;
    return NULL;
}

static void infra_lru_unlink(struct infra_shard *shard, struct infra_entry *e)
{
    if (e->lru_prev != NULL)
        e->lru_prev->lru_next = e->lru_next;
    else
        shard->lru_head = e->lru_next;
    if (e->lru_next != NULL)
        e->lru_next->lru_prev = e->lru_prev;
    else
        shard->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void infra_lru_push_front(struct infra_shard *shard, struct infra_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = shard->lru_head;
    if (shard->lru_head != NULL)
        shard->lru_head->lru_prev = e;
    shard->lru_head = e;
    if (shard->lru_tail == NULL)
        shard->lru_tail = e;
}

static void infra_lru_touch(struct infra_shard *shard, struct infra_entry *e)
{
    if (shard->lru_head == e)
        return;
    infra_lru_unlink(shard, e);
    infra_lru_push_front(shard, e);
}

static void infra_shard_remove(struct infra_shard *shard, struct infra_entry *e)
{
    struct infra_entry **link = infra_bucket(shard, e->hash);
    while (*link != e)
        link = &(*link)->bucket_next;
    *link = e->bucket_next;
    infra_lru_unlink(shard, e);
    shard->count--;
    free(e);
}

static void infra_entry_reset(const struct infra_config *config, struct infra_entry *e)
{
    e->measured = false;
    e->srtt_ms = 0;
    e->rttvar_ms = 0;
    e->rto_ms = infra_clamp_rto(config, config->unknown_rto_ms);
    e->failures = 0;
    e->holddowns = 0;
    e->held_until_ms = 0;
    e->last_probe_ms = 0;
}

/* Forget what is too old to trust (like Unbound's infra-host-ttl), but never a hold-down in
 * force: a dead server must not look fresh just because nobody asked it for a while. */
static void infra_entry_age(const struct infra_config *config, struct infra_entry *e,
                            uint64_t now_ms)
{
    if (now_ms >= e->updated_ms + config->host_ttl_ms && now_ms >= e->held_until_ms) {
        infra_entry_reset(config, e);
        e->updated_ms = now_ms;
    }
}

/* Find or create the entry for key (caller holds the shard lock); evicts the least recently
 * used entry when the shard is full. NULL when out of memory. */
static struct infra_entry *infra_shard_get(const struct infra_config *config,
                                           struct infra_shard *shard, const struct infra_key *key,
                                           uint64_t hash, uint64_t now_ms)
{
    struct infra_entry *e = infra_shard_find(shard, key, hash);
    if (e != NULL) {
        infra_entry_age(config, e, now_ms);
        infra_lru_touch(shard, e);
        return e;
    }
    if (shard->count >= shard->max && shard->lru_tail != NULL)
        infra_shard_remove(shard, shard->lru_tail);
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->key = *key;
    e->hash = hash;
    infra_entry_reset(config, e);
    e->updated_ms = now_ms;
    struct infra_entry **bucket = infra_bucket(shard, hash);
    e->bucket_next = *bucket;
    *bucket = e;
    infra_lru_push_front(shard, e);
    shard->count++;
    return e;
}

static bool infra_entry_held(const struct infra_entry *e, uint64_t now_ms)
{
    return now_ms < e->held_until_ms;
}

/* Count a consecutive failure; at the threshold start a hold-down whose length doubles with each
 * repeat (capped). A failed probe during a hold-down does not extend it: the next failure after
 * it ends starts a longer one. */
static void infra_entry_fail(const struct infra_config *config, struct infra_entry *e,
                             uint64_t now_ms)
{
    if (e->failures < UINT32_MAX)
        e->failures++;
    e->updated_ms = now_ms;
    if (e->failures < config->fail_threshold || infra_entry_held(e, now_ms))
        return;
    if (e->holddowns < 32)
        e->holddowns++;
    uint64_t period = (uint64_t)config->holddown_ms << (e->holddowns - 1);
    if (period > config->holddown_max_ms)
        period = config->holddown_max_ms;
    if (config->holddown_jitter_percent > 0) {
        /* servers that failed together come back at different times */
        uint64_t span = period * config->holddown_jitter_percent / 100u;
        period = period - span + randombytes_uniform((uint32_t)(2 * span + 1));
        if (period > config->holddown_max_ms)
            period = config->holddown_max_ms;
    }
    e->held_until_ms = now_ms + period;
    e->last_probe_ms = now_ms;
}

/* RFC 6298 §2.2 (first sample) and §2.3 (later samples), with alpha = 1/8 and beta = 1/4. */
static void infra_entry_sample(const struct infra_config *config, struct infra_entry *e,
                               uint32_t rtt_ms)
{
    uint64_t r = rtt_ms > config->max_rto_ms ? config->max_rto_ms : rtt_ms;
    if (!e->measured) {
        e->srtt_ms = (uint32_t)r;
        e->rttvar_ms = (uint32_t)(r / 2);
        e->measured = true;
    } else {
        uint64_t delta = e->srtt_ms > r ? e->srtt_ms - r : r - e->srtt_ms;
        e->rttvar_ms = (uint32_t)((3 * (uint64_t)e->rttvar_ms + delta) / 4);
        e->srtt_ms = (uint32_t)((7 * (uint64_t)e->srtt_ms + r) / 8);
    }
    /* RFC 6298 §2.3: RTO = SRTT + max(G, 4 * RTTVAR); the clamp plays the role of G. */
    e->rto_ms = infra_clamp_rto(config, (uint64_t)e->srtt_ms + 4 * (uint64_t)e->rttvar_ms);
}

uint32_t infra_rto(struct infra *infra, const struct addr *server, uint64_t now_ms)
{
    struct infra_key key;
    uint64_t hash;
    struct infra_shard *shard = infra_lock_shard(infra, server, &key, &hash);
    struct infra_entry *e = infra_shard_find(shard, &key, hash);
    uint32_t rto = infra_clamp_rto(&infra->config, infra->config.unknown_rto_ms);
    if (e != NULL) {
        infra_entry_age(&infra->config, e, now_ms);
        rto = e->rto_ms;
    }
    pthread_mutex_unlock(&shard->lock);
    return rto;
}

int infra_report_rtt(struct infra *infra, const struct addr *server, uint32_t rtt_ms,
                     uint64_t now_ms)
{
    struct infra_key key;
    uint64_t hash;
    struct infra_shard *shard = infra_lock_shard(infra, server, &key, &hash);
    struct infra_entry *e = infra_shard_get(&infra->config, shard, &key, hash, now_ms);
    if (e != NULL) {
        infra_entry_sample(&infra->config, e, rtt_ms);
        e->failures = 0;
        e->holddowns = 0;
        e->held_until_ms = 0;
        e->updated_ms = now_ms;
    }
    pthread_mutex_unlock(&shard->lock);
    return e != NULL ? BALLAST_OK : BALLAST_ENOMEM;
}

/* --- per-server counters ------------------------------------------------------------------ */

/* The slot counting server: its own (claimed on first sight) or "other" when all are taken. */
static struct infra_counter_slot *infra_counter_slot(struct infra *infra, const struct addr *server)
{
    struct infra_key key;
    infra_key_make(server, &key);
    for (size_t i = 0; i < INFRA_COUNTED_SERVERS; i++) {
        struct infra_counter_slot *slot = &infra->counted[i];
        uint32_t state = __atomic_load_n(&slot->state, __ATOMIC_ACQUIRE);
        if (state == INFRA_SLOT_FREE) {
            uint32_t expected = INFRA_SLOT_FREE;
            if (__atomic_compare_exchange_n(&slot->state, &expected, INFRA_SLOT_CLAIMED, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                slot->key = key;
                slot->server = *server;
                __atomic_store_n(&slot->state, INFRA_SLOT_READY, __ATOMIC_RELEASE);
                return slot;
            }
            state = expected;
        }
        while (state == INFRA_SLOT_CLAIMED) /* another thread is writing the key: a few stores */
            state = __atomic_load_n(&slot->state, __ATOMIC_ACQUIRE);
        if (memcmp(&slot->key, &key, sizeof key) == 0)
            return slot;
    }
    return &infra->other;
}

void infra_count_query(struct infra *infra, const struct addr *server)
{
    __atomic_fetch_add(&infra_counter_slot(infra, server)->queries, 1, __ATOMIC_RELAXED);
}

static void infra_count_timeout(struct infra *infra, const struct addr *server)
{
    __atomic_fetch_add(&infra_counter_slot(infra, server)->timeouts, 1, __ATOMIC_RELAXED);
}

size_t infra_get_counters(struct infra *infra, struct infra_server_counters *out, size_t cap,
                          struct infra_server_counters *other)
{
    struct infra_server_counters rest = {
        .queries = __atomic_load_n(&infra->other.queries, __ATOMIC_RELAXED),
        .timeouts = __atomic_load_n(&infra->other.timeouts, __ATOMIC_RELAXED),
    };
    size_t n = 0;
    for (size_t i = 0; i < INFRA_COUNTED_SERVERS; i++) {
        struct infra_counter_slot *slot = &infra->counted[i];
        if (__atomic_load_n(&slot->state, __ATOMIC_ACQUIRE) != INFRA_SLOT_READY)
            break;
        struct infra_server_counters c = {
            .server = slot->server,
            .queries = __atomic_load_n(&slot->queries, __ATOMIC_RELAXED),
            .timeouts = __atomic_load_n(&slot->timeouts, __ATOMIC_RELAXED),
        };
        if (n < cap) {
            out[n++] = c;
        } else {
            rest.queries += c.queries;
            rest.timeouts += c.timeouts;
        }
    }
    if (other)
        *other = rest;
    return n;
}

int infra_report_timeout(struct infra *infra, const struct addr *server, uint32_t sent_rto_ms,
                         uint64_t now_ms)
{
    struct infra_key key;
    uint64_t hash;
    infra_count_timeout(infra, server);
    struct infra_shard *shard = infra_lock_shard(infra, server, &key, &hash);
    struct infra_entry *e = infra_shard_get(&infra->config, shard, &key, hash, now_ms);
    if (e != NULL) {
        /* RFC 6298 §5.5 backoff. Double the RTO the query was sent with, not the current one
         * (as Unbound's rtt_lost() does), so that many queries timing out together back off
         * once; and if an answer has since lowered the RTO, this timeout is old news. */
        uint32_t base = sent_rto_ms != 0 ? sent_rto_ms : e->rto_ms;
        if (e->rto_ms >= base) {
            uint32_t doubled = infra_clamp_rto(&infra->config, 2 * (uint64_t)base);
            if (doubled > e->rto_ms)
                e->rto_ms = doubled;
        }
        infra_entry_fail(&infra->config, e, now_ms);
    }
    pthread_mutex_unlock(&shard->lock);
    return e != NULL ? BALLAST_OK : BALLAST_ENOMEM;
}

int infra_report_failure(struct infra *infra, const struct addr *server, uint64_t now_ms)
{
    struct infra_key key;
    uint64_t hash;
    struct infra_shard *shard = infra_lock_shard(infra, server, &key, &hash);
    struct infra_entry *e = infra_shard_get(&infra->config, shard, &key, hash, now_ms);
    if (e != NULL)
        infra_entry_fail(&infra->config, e, now_ms);
    pthread_mutex_unlock(&shard->lock);
    return e != NULL ? BALLAST_OK : BALLAST_ENOMEM;
}

int infra_set_noedns(struct infra *infra, const struct addr *server, uint64_t now_ms)
{
    struct infra_key key;
    uint64_t hash;
    struct infra_shard *shard = infra_lock_shard(infra, server, &key, &hash);
    struct infra_entry *e = infra_shard_get(&infra->config, shard, &key, hash, now_ms);
    if (e != NULL)
        e->noedns_until_ms = now_ms + infra->config.noedns_ttl_ms;
    pthread_mutex_unlock(&shard->lock);
    return e != NULL ? BALLAST_OK : BALLAST_ENOMEM;
}

bool infra_noedns(struct infra *infra, const struct addr *server, uint64_t now_ms)
{
    struct infra_key key;
    uint64_t hash;
    struct infra_shard *shard = infra_lock_shard(infra, server, &key, &hash);
    struct infra_entry *e = infra_shard_find(shard, &key, hash);
    bool noedns = e != NULL && now_ms < e->noedns_until_ms;
    pthread_mutex_unlock(&shard->lock);
    return noedns;
}

/* Look at one candidate for infra_select(): fill view; take the probe slot and return true when
 * it is held down and a probe is due. */
static bool infra_view_candidate(struct infra *infra, const struct addr *server, uint64_t now_ms,
                                 struct infra_view *view)
{
    const struct infra_config *config = &infra->config;
    struct infra_key key;
    uint64_t hash;
    bool probe = false;
    struct infra_shard *shard = infra_lock_shard(infra, server, &key, &hash);
    struct infra_entry *e = infra_shard_find(shard, &key, hash);
    *view = (struct infra_view){.rto_ms = infra_clamp_rto(config, config->unknown_rto_ms)};
    if (e != NULL) {
        infra_entry_age(config, e, now_ms);
        infra_lru_touch(shard, e);
        view->rto_ms = e->rto_ms;
        view->held = infra_entry_held(e, now_ms);
        view->held_until_ms = e->held_until_ms;
        if (view->held && now_ms >= e->last_probe_ms + config->probe_interval_ms) {
            e->last_probe_ms = now_ms;
            probe = true;
        }
    }
    pthread_mutex_unlock(&shard->lock);
    return probe;
}

static uint32_t infra_uniform(const struct infra_random *random, uint32_t upper_bound)
{
    if (upper_bound <= 1)
        return 0;
    uint32_t r = random != NULL ? random->uniform(random->ctx, upper_bound)
                                : randombytes_uniform(upper_bound);
    return r < upper_bound ? r : upper_bound - 1;
}

/* Index of the nth (from 0) candidate that is not held down and has rto_ms <= limit. */
static size_t infra_nth_usable(const struct infra_view *views, size_t count, uint64_t limit,
                               uint32_t nth)
{
    for (size_t i = 0; i < count; i++)
        if (!views[i].held && views[i].rto_ms <= limit && nth-- == 0)
            return i;
    return 0; /* not reached: nth < number of matches */
}

static int infra_choose(const struct infra_config *config, const struct infra_view *views,
                        size_t count, const struct infra_random *random)
{
    size_t usable = 0, first_up = 0;
    uint32_t best = UINT32_MAX;
    for (size_t i = 0; i < count; i++) {
        if (views[i].held) {
            if (views[i].held_until_ms < views[first_up].held_until_ms)
                first_up = i;
            continue;
        }
        usable++;
        if (views[i].rto_ms < best)
            best = views[i].rto_ms;
    }
    if (usable == 0)
        return config->fail_when_all_held ? BALLAST_ELIMIT : (int)first_up;
    uint64_t limit = (uint64_t)best + config->band_ms;
    if (infra_uniform(random, INFRA_PERMILLE) < config->explore_permille)
        limit = UINT64_MAX; /* exploration: every healthy server is a candidate */
    uint32_t in_band = 0;
    for (size_t i = 0; i < count; i++)
        if (!views[i].held && views[i].rto_ms <= limit)
            in_band++;
    return (int)infra_nth_usable(views, count, limit, infra_uniform(random, in_band));
}

int infra_select(struct infra *infra, const struct addr *candidates, size_t count, uint64_t now_ms,
                 const struct infra_random *random)
{
    if (count == 0 || count > INT32_MAX)
        return BALLAST_EINVAL;
    struct infra_view stack_views[INFRA_SELECT_STACK];
    struct infra_view *views = stack_views;
    if (count > INFRA_SELECT_STACK) {
        views = malloc(count * sizeof *views);
        if (views == NULL)
            return BALLAST_ENOMEM;
    }
    int chosen = -1;
    for (size_t i = 0; i < count && chosen < 0; i++)
        if (infra_view_candidate(infra, &candidates[i], now_ms, &views[i]))
            chosen = (int)i;
    if (chosen < 0)
        chosen = infra_choose(&infra->config, views, count, random);
    if (views != stack_views)
        free(views);
    return chosen;
}

void infra_get(struct infra *infra, const struct addr *server, uint64_t now_ms,
               struct infra_server_info *info)
{
    const struct infra_config *config = &infra->config;
    struct infra_key key;
    uint64_t hash;
    struct infra_shard *shard = infra_lock_shard(infra, server, &key, &hash);
    struct infra_entry *e = infra_shard_find(shard, &key, hash);
    *info = (struct infra_server_info){.rto_ms = infra_clamp_rto(config, config->unknown_rto_ms)};
    if (e != NULL) {
        infra_entry_age(config, e, now_ms);
        *info = (struct infra_server_info){
            .known = true,
            .measured = e->measured,
            .srtt_ms = e->srtt_ms,
            .rttvar_ms = e->rttvar_ms,
            .rto_ms = e->rto_ms,
            .failures = e->failures,
            .holddowns = e->holddowns,
            .held_down = infra_entry_held(e, now_ms),
            .held_until_ms = e->held_until_ms,
            .noedns = now_ms < e->noedns_until_ms,
        };
    }
    pthread_mutex_unlock(&shard->lock);
}

size_t infra_count(struct infra *infra)
{
    size_t total = 0;
    for (size_t i = 0; i < infra->shard_count; i++) {
        pthread_mutex_lock(&infra->shards[i].lock);
        total += infra->shards[i].count;
        pthread_mutex_unlock(&infra->shards[i].lock);
    }
    return total;
}
