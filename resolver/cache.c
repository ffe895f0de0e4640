/* The resolver's shared cache (see cache.h): shards of a chained hash table plus an LRU list, each
 * under its own mutex (like Unbound's slabhash). All types of one name live in the same shard, so
 * an RRset/NODATA lookup and the name's NXDOMAIN are checked under one lock. */
#include "cache.h"

#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "wire.h"

#define CACHE_TYPE_NXDOMAIN 0u /* key type of an NXDOMAIN entry; type 0 is reserved in DNS */
#define CACHE_SHARD_BUCKETS_MIN 16u
#define CACHE_SHARD_BUCKETS_MAX (1u << 24)
#define CACHE_CACHE_LINE 64
#define CACHE_SOA_FIXED_LEN 20u /* SERIAL REFRESH RETRY EXPIRE MINIMUM (RFC 1035 §3.3.13) */

/* One cached RRset or negative answer, allocated in one piece. For negative entries data is the
 * SOA owner name (soa_owner_len bytes) followed by the SOA RDATA. */
struct cache_entry {
    struct cache_entry *hash_next; /* bucket chain; also links lists of entries to free */
    struct cache_entry *lru_prev;  /* towards the most recently used */
    struct cache_entry *lru_next;  /* towards the least recently used */
    uint64_t hash;                 /* bucket hash of name, type and class */
    uint64_t expire_ms;            /* absolute */
    uint64_t seq;                  /* insertion order in the shard: newer wins ties */
    uint32_t ttl;                  /* clamped TTL at insertion */
    uint32_t data_len;             /* bytes after the name */
    uint16_t type;                 /* CACHE_TYPE_NXDOMAIN for NXDOMAIN */
    uint16_t rrclass;
    uint16_t count; /* records in an RRset */
    uint8_t kind;   /* enum cache_kind */
    uint8_t rank;   /* enum cache_rank */
    uint8_t name_len;
    uint8_t soa_owner_len;
    uint8_t bytes[]; /* owner name (lowercase), then data */
};

struct cache_shard {
    _Alignas(CACHE_CACHE_LINE) pthread_mutex_t lock;
    struct cache_entry **buckets;
    size_t bucket_mask;           /* buckets = mask + 1, a power of two */
    struct cache_entry *lru_head; /* most recently used */
    struct cache_entry *lru_tail; /* least recently used: evicted first */
    uint64_t budget;              /* bytes */
    uint64_t seq;
    uint64_t entries;
    uint64_t bytes;
    uint64_t hits;
    uint64_t stale_hits;
    uint64_t misses;
    uint64_t inserts;
    uint64_t refused;
    uint64_t evictions;
    uint64_t expired_removed;
};

struct cache {
    struct cache_options opts;
    unsigned char hash_key[crypto_shorthash_KEYBYTES];
    unsigned shard_bits;
    struct cache_shard *shards;
};

/* A validated, lowercased name with its keyed hash. */
struct cache_key {
    uint8_t name[WIRE_NAME_MAX];
    uint8_t name_len;
    uint64_t name_hash;
};

void cache_options_init_defaults(struct cache_options *opts)
{
    opts->max_bytes = CACHE_DEFAULT_MAX_BYTES;
    opts->shards = CACHE_DEFAULT_SHARDS;
    opts->min_ttl = CACHE_DEFAULT_MIN_TTL;
    opts->max_ttl = CACHE_DEFAULT_MAX_TTL;
    opts->max_negative_ttl = CACHE_DEFAULT_MAX_NEGATIVE_TTL;
    opts->stale_retention_ms = CACHE_DEFAULT_STALE_RETENTION_MS;
}

/* ---- keys and hashing ---- */

static int cache_key_prepare(const struct cache *cache, const uint8_t *name, size_t name_len,
                             struct cache_key *key)
{
    if (name == NULL || name_len == 0 || name_len > WIRE_NAME_MAX ||
        wire_name_length(name, name_len) != name_len)
        return BALLAST_EINVAL;
    wire_name_lower(key->name, name, name_len);
    key->name_len = (uint8_t)name_len;
    unsigned char digest[crypto_shorthash_BYTES];
    crypto_shorthash(digest, key->name, name_len, cache->hash_key);
    memcpy(&key->name_hash, digest, sizeof key->name_hash);
    return BALLAST_OK;
}

/* Bucket hash: the secret name hash mixed with type and class (splitmix64 finalizer, a bijection,
 * so types of one name spread over buckets while staying unpredictable to an attacker). */
static uint64_t cache_bucket_hash(uint64_t name_hash, uint16_t type, uint16_t rrclass)
{
    uint64_t x = name_hash + (((uint64_t)type << 16) | rrclass) * 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The shard comes from the top bits of the name hash only: every type of a name shares it. */
static struct cache_shard *cache_shard_of(struct cache *cache, const struct cache_key *key)
{
    size_t index = cache->shard_bits ? (size_t)(key->name_hash >> (64 - cache->shard_bits)) : 0;
    return &cache->shards[index];
}

/* ---- entries ---- */

static size_t cache_entry_bytes(const struct cache_entry *entry)
{
    return sizeof *entry + entry->name_len + entry->data_len;
}

static bool cache_entry_fresh(const struct cache_entry *entry, uint64_t now_ms)
{
    return now_ms < entry->expire_ms;
}

static enum cache_status cache_entry_status(const struct cache *cache,
                                            const struct cache_entry *entry, uint64_t now_ms)
{
    if (cache_entry_fresh(entry, now_ms))
        return CACHE_FRESH;
    if (now_ms - entry->expire_ms <
        __atomic_load_n(&cache->opts.stale_retention_ms, __ATOMIC_RELAXED))
        return CACHE_STALE;
    return CACHE_MISS;
}

static struct cache_entry *cache_entry_new(const struct cache_key *key, uint16_t type,
                                           uint16_t rrclass, size_t data_len)
{
    struct cache_entry *entry = malloc(sizeof *entry + key->name_len + data_len);
    if (entry == NULL)
        return NULL;
    memset(entry, 0, sizeof *entry);
    entry->hash = cache_bucket_hash(key->name_hash, type, rrclass);
    entry->type = type;
    entry->rrclass = rrclass;
    entry->name_len = key->name_len;
    entry->data_len = (uint32_t)data_len;
    memcpy(entry->bytes, key->name, key->name_len);
    return entry;
}

static void cache_entry_set_ttl(struct cache_entry *entry, uint32_t ttl, uint64_t now_ms)
{
    entry->ttl = ttl;
    uint64_t span = (uint64_t)ttl * 1000u;
    entry->expire_ms = now_ms > UINT64_MAX - span ? UINT64_MAX : now_ms + span;
}

static void cache_free_list(struct cache_entry *list)
{
    while (list != NULL) {
        struct cache_entry *next = list->hash_next;
        free(list);
        list = next;
    }
}

/* ---- shard internals: every function below runs with shard->lock held ---- */

static struct cache_entry *cache_shard_find(const struct cache_shard *shard,
                                            const struct cache_key *key, uint16_t type,
                                            uint16_t rrclass)
{
    uint64_t hash = cache_bucket_hash(key->name_hash, type, rrclass);
    for (struct cache_entry *e = shard->buckets[hash & shard->bucket_mask]; e; e = e->hash_next) {
        if (e->hash == hash && e->type == type && e->rrclass == rrclass &&
            e->name_len == key->name_len && memcmp(e->bytes, key->name, key->name_len) == 0)
            return e;
    }
    return NULL;
}

static void cache_lru_unlink(struct cache_shard *shard, struct cache_entry *entry)
{
    if (entry->lru_prev)
        entry->lru_prev->lru_next = entry->lru_next;
    else
        shard->lru_head = entry->lru_next;
    if (entry->lru_next)
        entry->lru_next->lru_prev = entry->lru_prev;
    else
        shard->lru_tail = entry->lru_prev;
}

static void cache_lru_push_front(struct cache_shard *shard, struct cache_entry *entry)
{
    entry->lru_prev = NULL;
    entry->lru_next = shard->lru_head;
    if (shard->lru_head)
        shard->lru_head->lru_prev = entry;
    else
        shard->lru_tail = entry;
    shard->lru_head = entry;
}

static void cache_lru_touch(struct cache_shard *shard, struct cache_entry *entry)
{
    if (shard->lru_head == entry)
        return;
    cache_lru_unlink(shard, entry);
    cache_lru_push_front(shard, entry);
}

/* Unlink an entry and put it on *to_free (freed by the caller after unlocking). */
static void cache_shard_remove(struct cache_shard *shard, struct cache_entry *entry,
                               struct cache_entry **to_free)
{
    struct cache_entry **link = &shard->buckets[entry->hash & shard->bucket_mask];
    while (*link != entry)
        link = &(*link)->hash_next;
    *link = entry->hash_next;
    cache_lru_unlink(shard, entry);
    shard->entries--;
    shard->bytes -= cache_entry_bytes(entry);
    entry->hash_next = *to_free;
    *to_free = entry;
}

/* Double the bucket array when the load passes 1. On allocation failure chains just get longer. */
static void cache_shard_grow(struct cache_shard *shard)
{
    size_t old_size = shard->bucket_mask + 1;
    if (shard->entries <= old_size || old_size >= CACHE_SHARD_BUCKETS_MAX)
        return;
    size_t new_size = old_size * 2;
    struct cache_entry **buckets = calloc(new_size, sizeof *buckets);
    if (buckets == NULL)
        return;
    for (size_t i = 0; i < old_size; i++) {
        struct cache_entry *e = shard->buckets[i];
        while (e) {
            struct cache_entry *next = e->hash_next;
            size_t slot = e->hash & (new_size - 1);
            e->hash_next = buckets[slot];
            buckets[slot] = e;
            e = next;
        }
    }
    free(shard->buckets);
    shard->buckets = buckets;
    shard->bucket_mask = new_size - 1;
}

static void cache_shard_link(struct cache_shard *shard, struct cache_entry *entry)
{
    struct cache_entry **bucket = &shard->buckets[entry->hash & shard->bucket_mask];
    entry->hash_next = *bucket;
    *bucket = entry;
    cache_lru_push_front(shard, entry);
    entry->seq = ++shard->seq;
    shard->entries++;
    shard->bytes += cache_entry_bytes(entry);
    cache_shard_grow(shard);
}

/* Drop least recently used entries until `need` more bytes fit in the budget. An LRU victim that
 * had already expired beyond stale retention counts as expired, not evicted. */
static void cache_shard_make_room(const struct cache *cache, struct cache_shard *shard, size_t need,
                                  uint64_t now_ms, struct cache_entry **to_free)
{
    while (shard->lru_tail != NULL && shard->bytes + need > shard->budget) {
        struct cache_entry *victim = shard->lru_tail;
        if (cache_entry_status(cache, victim, now_ms) == CACHE_MISS)
            shard->expired_removed++;
        else
            shard->evictions++;
        cache_shard_remove(shard, victim, to_free);
    }
}

/* May `incoming` replace `existing`? Only if the existing one is no longer fresh or does not
 * outrank it (RFC 2181 §5.4.1). */
static bool cache_may_replace(const struct cache_entry *existing, uint8_t incoming_rank,
                              uint64_t now_ms)
{
    return !cache_entry_fresh(existing, now_ms) || existing->rank <= incoming_rank;
}

/* Store a filled entry (ownership passes to the cache in every case). A stale entry (restored
 * from a snapshot) never replaces or removes a fresh one. */
static int cache_store(struct cache *cache, const struct cache_key *key, struct cache_entry *entry,
                       uint64_t now_ms, bool stale)
{
    struct cache_shard *shard = cache_shard_of(cache, key);
    struct cache_entry *to_free = NULL;
    size_t size = cache_entry_bytes(entry);
    int rc = BALLAST_OK;

    pthread_mutex_lock(&shard->lock);
    struct cache_entry *old = cache_shard_find(shard, key, entry->type, entry->rrclass);
    if (size > shard->budget) {
        rc = BALLAST_ELIMIT;
    } else if (old != NULL && (!cache_may_replace(old, entry->rank, now_ms) ||
                               (stale && cache_entry_fresh(old, now_ms)))) {
        rc = BALLAST_EEXIST;
    }
    if (rc != BALLAST_OK) {
        shard->refused++;
        pthread_mutex_unlock(&shard->lock);
        free(entry);
        return rc;
    }
    if (old != NULL)
        cache_shard_remove(shard, old, &to_free);
    if (entry->kind != CACHE_KIND_NXDOMAIN) {
        /* Data at the name proves it exists: a contradicting NXDOMAIN goes unless it outranks. */
        struct cache_entry *nx = cache_shard_find(shard, key, CACHE_TYPE_NXDOMAIN, entry->rrclass);
        if (nx != NULL && cache_may_replace(nx, entry->rank, now_ms) &&
            !(stale && cache_entry_fresh(nx, now_ms)))
            cache_shard_remove(shard, nx, &to_free);
    }
    cache_shard_make_room(cache, shard, size, now_ms, &to_free);
    cache_shard_link(shard, entry);
    shard->inserts++;
    pthread_mutex_unlock(&shard->lock);
    cache_free_list(to_free);
    return BALLAST_OK;
}

/* ---- create / free ---- */

static bool cache_options_valid(const struct cache_options *opts)
{
    uint32_t shards = opts->shards;
    return shards >= 1 && shards <= CACHE_SHARDS_MAX && (shards & (shards - 1)) == 0 &&
           opts->max_bytes / shards >= 1 && opts->min_ttl <= opts->max_ttl;
}

static unsigned cache_log2(uint32_t power_of_two)
{
    unsigned bits = 0;
    while ((1u << bits) < power_of_two)
        bits++;
    return bits;
}

/* Detach every entry of a shard (lock held); returns them linked through lru_next. */
static struct cache_entry *cache_shard_take_all(struct cache_shard *shard)
{
    struct cache_entry *list = shard->lru_head;
    shard->lru_head = shard->lru_tail = NULL;
    memset(shard->buckets, 0, (shard->bucket_mask + 1) * sizeof *shard->buckets);
    shard->entries = 0;
    shard->bytes = 0;
    return list;
}

static void cache_free_lru_list(struct cache_entry *list)
{
    while (list != NULL) {
        struct cache_entry *next = list->lru_next;
        free(list);
        list = next;
    }
}

int cache_create(const struct cache_options *opts, struct cache **out)
{
    *out = NULL;
    if (!cache_options_valid(opts))
        return BALLAST_EINVAL;
    if (sodium_init() < 0)
        return BALLAST_ESYS;
    struct cache *cache = calloc(1, sizeof *cache);
    if (cache == NULL)
        return BALLAST_ENOMEM;
    cache->opts = *opts;
    cache->shard_bits = cache_log2(opts->shards);
    crypto_shorthash_keygen(cache->hash_key);
    cache->shards = aligned_alloc(CACHE_CACHE_LINE, opts->shards * sizeof *cache->shards);
    if (cache->shards == NULL) {
        free(cache);
        return BALLAST_ENOMEM;
    }
    memset(cache->shards, 0, opts->shards * sizeof *cache->shards);
    for (uint32_t i = 0; i < opts->shards; i++) {
        struct cache_shard *shard = &cache->shards[i];
        shard->budget = opts->max_bytes / opts->shards;
        shard->bucket_mask = CACHE_SHARD_BUCKETS_MIN - 1;
        shard->buckets = calloc(CACHE_SHARD_BUCKETS_MIN, sizeof *shard->buckets);
        if (shard->buckets == NULL || pthread_mutex_init(&shard->lock, NULL) != 0) {
            free(shard->buckets);
            cache->opts.shards = i; /* cache_free releases only the shards set up */
            cache_free(cache);
            return BALLAST_ENOMEM;
        }
    }
    *out = cache;
    return BALLAST_OK;
}

void cache_free(struct cache *cache)
{
    if (cache == NULL)
        return;
    for (uint32_t i = 0; i < cache->opts.shards; i++) {
        struct cache_shard *shard = &cache->shards[i];
        cache_free_lru_list(cache_shard_take_all(shard));
        free(shard->buckets);
        pthread_mutex_destroy(&shard->lock);
    }
    free(cache->shards);
    sodium_memzero(cache->hash_key, sizeof cache->hash_key);
    free(cache);
}

/* ---- inserts ---- */

static bool cache_rank_valid(enum cache_rank rank)
{
    return rank >= CACHE_RANK_ADDITIONAL && rank <= CACHE_RANK_ANSWER_AUTH;
}

/* count x [RDLENGTH][RDATA] exactly filling rdata_len. */
static bool cache_rdata_valid(const uint8_t *rdata, size_t rdata_len, uint16_t count)
{
    if (count == 0 || rdata_len > CACHE_RDATA_MAX || (rdata == NULL && rdata_len > 0))
        return false;
    size_t at = 0;
    for (uint16_t i = 0; i < count; i++) {
        if (rdata_len - at < 2)
            return false;
        size_t rdlen = wire_read_u16(rdata + at);
        at += 2;
        if (rdata_len - at < rdlen)
            return false;
        at += rdlen;
    }
    return at == rdata_len;
}

/* RFC 2181 §8: a TTL with the most significant bit set is treated as zero. */
static uint32_t cache_ttl_sanitize(uint32_t ttl)
{
    return ttl > INT32_MAX ? 0 : ttl;
}

static uint32_t cache_ttl_clamp(uint32_t ttl, uint32_t low, uint32_t high)
{
    return ttl < low ? low : ttl > high ? high : ttl;
}

int cache_insert_rrset(struct cache *cache, const uint8_t *name, size_t name_len, uint16_t type,
                       uint16_t rrclass, uint32_t ttl, enum cache_rank rank, const uint8_t *rdata,
                       size_t rdata_len, uint16_t count, uint64_t now_ms)
{
    struct cache_key key;
    if (type == CACHE_TYPE_NXDOMAIN || !cache_rank_valid(rank) ||
        !cache_rdata_valid(rdata, rdata_len, count) ||
        cache_key_prepare(cache, name, name_len, &key) != BALLAST_OK)
        return BALLAST_EINVAL;
    struct cache_entry *entry = cache_entry_new(&key, type, rrclass, rdata_len);
    if (entry == NULL)
        return BALLAST_ENOMEM;
    entry->kind = CACHE_KIND_RRSET;
    entry->rank = (uint8_t)rank;
    entry->count = count;
    memcpy(entry->bytes + key.name_len, rdata, rdata_len);
    uint32_t clamped =
        cache_ttl_clamp(cache_ttl_sanitize(ttl), cache->opts.min_ttl, cache->opts.max_ttl);
    cache_entry_set_ttl(entry, clamped, now_ms);
    return cache_store(cache, &key, entry, now_ms, false);
}

uint32_t cache_effective_ttl(const struct cache *cache, uint32_t ttl)
{
    return cache_ttl_clamp(cache_ttl_sanitize(ttl), cache->opts.min_ttl, cache->opts.max_ttl);
}

uint32_t cache_effective_negative_ttl(const struct cache *cache, uint32_t soa_ttl, uint32_t minimum)
{
    /* RFC 2308 §5: the negative TTL is the minimum of the SOA's TTL and its MINIMUM field. */
    uint32_t negative_ttl = cache_ttl_sanitize(soa_ttl);
    if (cache_ttl_sanitize(minimum) < negative_ttl)
        negative_ttl = cache_ttl_sanitize(minimum);
    negative_ttl = cache_ttl_clamp(negative_ttl, 0, cache->opts.max_negative_ttl);
    return cache_ttl_clamp(negative_ttl, 0, cache->opts.max_ttl);
}

/* SOA RDATA is MNAME RNAME and 20 bytes; returns false if not. *minimum gets MINIMUM. */
static bool cache_soa_rdata_parse(const uint8_t *rdata, size_t len, uint32_t *minimum)
{
    if (rdata == NULL)
        return false;
    size_t mname = wire_name_length(rdata, len);
    if (mname == 0)
        return false;
    size_t rname = wire_name_length(rdata + mname, len - mname);
    if (rname == 0 || len - mname - rname != CACHE_SOA_FIXED_LEN)
        return false;
    *minimum = wire_read_u32(rdata + len - 4);
    return true;
}

int cache_insert_negative(struct cache *cache, const uint8_t *name, size_t name_len, uint16_t type,
                          uint16_t rrclass, const uint8_t *soa_owner, size_t soa_owner_len,
                          const uint8_t *soa_rdata, size_t soa_rdlen, uint32_t soa_ttl,
                          enum cache_rank rank, uint64_t now_ms)
{
    struct cache_key key;
    struct cache_key soa_key;
    uint32_t minimum;
    if (!cache_rank_valid(rank) || !cache_soa_rdata_parse(soa_rdata, soa_rdlen, &minimum) ||
        cache_key_prepare(cache, soa_owner, soa_owner_len, &soa_key) != BALLAST_OK ||
        cache_key_prepare(cache, name, name_len, &key) != BALLAST_OK)
        return BALLAST_EINVAL;
    struct cache_entry *entry = cache_entry_new(&key, type, rrclass, soa_owner_len + soa_rdlen);
    if (entry == NULL)
        return BALLAST_ENOMEM;
    entry->kind = type == CACHE_TYPE_NXDOMAIN ? CACHE_KIND_NXDOMAIN : CACHE_KIND_NODATA;
    entry->rank = (uint8_t)rank;
    entry->soa_owner_len = (uint8_t)soa_owner_len;
    memcpy(entry->bytes + key.name_len, soa_key.name, soa_owner_len);
    memcpy(entry->bytes + key.name_len + soa_owner_len, soa_rdata, soa_rdlen);
    cache_entry_set_ttl(entry, cache_effective_negative_ttl(cache, soa_ttl, minimum), now_ms);
    return cache_store(cache, &key, entry, now_ms, false);
}

/* ---- lookup ---- */

/* Look up one key; an entry expired beyond stale retention is removed and not returned. */
static struct cache_entry *
cache_shard_find_live(const struct cache *cache, struct cache_shard *shard,
                      const struct cache_key *key, uint16_t type, uint16_t rrclass, uint64_t now_ms,
                      enum cache_status *status, struct cache_entry **to_free)
{
    struct cache_entry *entry = cache_shard_find(shard, key, type, rrclass);
    if (entry == NULL)
        return NULL;
    *status = cache_entry_status(cache, entry, now_ms);
    if (*status != CACHE_MISS)
        return entry;
    shard->expired_removed++;
    cache_shard_remove(shard, entry, to_free);
    return NULL;
}

/* Between an entry for the type and the name's NXDOMAIN: fresh beats stale, then the higher
 * rank, then the newer. */
static bool cache_entry_better(const struct cache_entry *a, enum cache_status a_status,
                               const struct cache_entry *b, enum cache_status b_status)
{
    if (a_status != b_status)
        return a_status == CACHE_FRESH;
    if (a->rank != b->rank)
        return a->rank > b->rank;
    return a->seq > b->seq;
}

/* Fill out (and buf, if given) from an entry. */
static void cache_result_fill(const struct cache_entry *entry, enum cache_status status,
                              uint64_t now_ms, struct cache_result *out, uint8_t *buf)
{
    memset(out, 0, sizeof *out);
    out->kind = (enum cache_kind)entry->kind;
    out->rank = (enum cache_rank)entry->rank;
    out->original_ttl = entry->ttl;
    if (status == CACHE_FRESH)
        out->ttl = (uint32_t)((entry->expire_ms - now_ms) / 1000u);
    else
        out->stale_ms = now_ms - entry->expire_ms;
    const uint8_t *data = entry->bytes + entry->name_len;
    if (buf != NULL)
        memcpy(buf, data, entry->data_len);
    if (entry->kind == CACHE_KIND_RRSET) {
        out->count = entry->count;
        out->rdata = buf;
        out->rdata_len = entry->data_len;
    } else {
        out->soa_owner = buf;
        out->soa_owner_len = entry->soa_owner_len;
        out->soa_rdata = buf ? buf + entry->soa_owner_len : NULL;
        out->soa_rdlen = (uint16_t)(entry->data_len - entry->soa_owner_len);
    }
}

int cache_lookup(struct cache *cache, const uint8_t *name, size_t name_len, uint16_t type,
                 uint16_t rrclass, uint64_t now_ms, struct cache_result *out, uint8_t *buf,
                 size_t buf_len)
{
    struct cache_key key;
    if (type == CACHE_TYPE_NXDOMAIN || (buf == NULL && buf_len > 0) ||
        cache_key_prepare(cache, name, name_len, &key) != BALLAST_OK)
        return BALLAST_EINVAL;
    struct cache_shard *shard = cache_shard_of(cache, &key);
    struct cache_entry *to_free = NULL;
    enum cache_status status = CACHE_MISS;
    enum cache_status nx_status = CACHE_MISS;
    int rc;

    pthread_mutex_lock(&shard->lock);
    struct cache_entry *entry =
        cache_shard_find_live(cache, shard, &key, type, rrclass, now_ms, &status, &to_free);
    struct cache_entry *nx = cache_shard_find_live(cache, shard, &key, CACHE_TYPE_NXDOMAIN, rrclass,
                                                   now_ms, &nx_status, &to_free);
    if (nx != NULL && (entry == NULL || cache_entry_better(nx, nx_status, entry, status))) {
        entry = nx;
        status = nx_status;
    }
    if (entry == NULL) {
        shard->misses++;
        rc = CACHE_MISS;
    } else if (buf != NULL && buf_len < entry->data_len) {
        rc = BALLAST_ESPACE;
    } else {
        cache_result_fill(entry, status, now_ms, out, buf);
        cache_lru_touch(shard, entry);
        if (status == CACHE_FRESH)
            shard->hits++;
        else
            shard->stale_hits++;
        rc = status;
    }
    pthread_mutex_unlock(&shard->lock);
    cache_free_list(to_free);
    return rc;
}

/* ---- flushes and stats ---- */

/* Remove the entries of one shard for which match() is true. */
static void cache_shard_flush(struct cache_shard *shard,
                              bool (*match)(const struct cache_entry *, const struct cache_key *),
                              const struct cache_key *key)
{
    struct cache_entry *to_free = NULL;
    pthread_mutex_lock(&shard->lock);
    struct cache_entry *e = shard->lru_head;
    while (e) {
        struct cache_entry *next = e->lru_next;
        if (match(e, key))
            cache_shard_remove(shard, e, &to_free);
        e = next;
    }
    pthread_mutex_unlock(&shard->lock);
    cache_free_list(to_free);
}

static bool cache_match_name(const struct cache_entry *entry, const struct cache_key *key)
{
    return entry->name_len == key->name_len && memcmp(entry->bytes, key->name, key->name_len) == 0;
}

static bool cache_match_below(const struct cache_entry *entry, const struct cache_key *key)
{
    return wire_name_is_subdomain(entry->bytes, entry->name_len, key->name, key->name_len);
}

int cache_flush_name(struct cache *cache, const uint8_t *name, size_t name_len)
{
    struct cache_key key;
    if (cache_key_prepare(cache, name, name_len, &key) != BALLAST_OK)
        return BALLAST_EINVAL;
    cache_shard_flush(cache_shard_of(cache, &key), cache_match_name, &key);
    return BALLAST_OK;
}

int cache_flush_below(struct cache *cache, const uint8_t *name, size_t name_len)
{
    struct cache_key key;
    if (cache_key_prepare(cache, name, name_len, &key) != BALLAST_OK)
        return BALLAST_EINVAL;
    for (uint32_t i = 0; i < cache->opts.shards; i++)
        cache_shard_flush(&cache->shards[i], cache_match_below, &key);
    return BALLAST_OK;
}

void cache_flush_all(struct cache *cache)
{
    for (uint32_t i = 0; i < cache->opts.shards; i++) {
        struct cache_shard *shard = &cache->shards[i];
        pthread_mutex_lock(&shard->lock);
        struct cache_entry *list = cache_shard_take_all(shard);
        pthread_mutex_unlock(&shard->lock);
        cache_free_lru_list(list);
    }
}

void cache_set_stale_retention(struct cache *cache, uint64_t stale_retention_ms)
{
    __atomic_store_n(&cache->opts.stale_retention_ms, stale_retention_ms, __ATOMIC_RELAXED);
}

void cache_get_stats(struct cache *cache, struct cache_stats *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < cache->opts.shards; i++) {
        struct cache_shard *shard = &cache->shards[i];
        pthread_mutex_lock(&shard->lock);
        out->entries += shard->entries;
        out->bytes += shard->bytes;
        out->hits += shard->hits;
        out->stale_hits += shard->stale_hits;
        out->misses += shard->misses;
        out->inserts += shard->inserts;
        out->refused += shard->refused;
        out->evictions += shard->evictions;
        out->expired_removed += shard->expired_removed;
        pthread_mutex_unlock(&shard->lock);
    }
}

/* ---- walk and restore (snapshots) ---- */

int cache_walk(struct cache *cache, uint64_t now_ms, cache_walk_fn fn, void *ctx)
{
    for (uint32_t i = 0; i < cache->opts.shards; i++) {
        struct cache_shard *shard = &cache->shards[i];
        int rc = 0;
        pthread_mutex_lock(&shard->lock);
        for (struct cache_entry *e = shard->lru_head; e != NULL && rc == 0; e = e->lru_next) {
            if (cache_entry_status(cache, e, now_ms) == CACHE_MISS)
                continue;
            struct cache_record rec = {
                .name = e->bytes,
                .name_len = e->name_len,
                .type = e->type,
                .rrclass = e->rrclass,
                .kind = (enum cache_kind)e->kind,
                .rank = (enum cache_rank)e->rank,
                .ttl = e->ttl,
                .expires_in_ms = e->expire_ms >= now_ms ? (int64_t)(e->expire_ms - now_ms)
                                                        : -(int64_t)(now_ms - e->expire_ms),
                .count = e->count,
                .data = e->bytes + e->name_len,
                .data_len = e->data_len,
                .soa_owner_len = e->soa_owner_len,
            };
            rc = fn(ctx, &rec);
        }
        pthread_mutex_unlock(&shard->lock);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Is the record's data what an insert of its kind would have accepted? */
static bool cache_record_valid(const struct cache_record *rec)
{
    if (rec->data == NULL || !cache_rank_valid(rec->rank))
        return false;
    switch (rec->kind) {
    case CACHE_KIND_RRSET:
        return rec->type != CACHE_TYPE_NXDOMAIN && rec->soa_owner_len == 0 &&
               cache_rdata_valid(rec->data, rec->data_len, rec->count);
    case CACHE_KIND_NODATA:
    case CACHE_KIND_NXDOMAIN: {
        uint32_t minimum;
        if ((rec->kind == CACHE_KIND_NXDOMAIN) != (rec->type == CACHE_TYPE_NXDOMAIN) ||
            rec->count != 0 || rec->soa_owner_len == 0 || rec->soa_owner_len > rec->data_len ||
            wire_name_length(rec->data, rec->soa_owner_len) != rec->soa_owner_len)
            return false;
        return cache_soa_rdata_parse(rec->data + rec->soa_owner_len,
                                     rec->data_len - rec->soa_owner_len, &minimum);
    }
    default:
        return false;
    }
}

int cache_restore(struct cache *cache, const struct cache_record *rec, uint64_t now_ms)
{
    struct cache_key key;
    if (rec == NULL || !cache_record_valid(rec) || rec->data_len > CACHE_RDATA_MAX + 255u ||
        cache_key_prepare(cache, rec->name, rec->name_len, &key) != BALLAST_OK)
        return BALLAST_EINVAL;
    uint32_t ttl = cache_ttl_clamp(cache_ttl_sanitize(rec->ttl), 0, cache->opts.max_ttl);
    if (rec->kind != CACHE_KIND_RRSET)
        ttl = cache_ttl_clamp(ttl, 0, cache->opts.max_negative_ttl);
    int64_t expires_in = rec->expires_in_ms;
    if (expires_in > (int64_t)ttl * 1000)
        expires_in = (int64_t)ttl * 1000;
    /* Expired for this long (0 - via unsigned: INT64_MIN has no positive int64_t). An entry
     * expiring exactly now is already stale, so with no retention it is gone (as for lookups). */
    uint64_t expired_for = expires_in < 0 ? 0 - (uint64_t)expires_in : 0;
    if (expires_in <= 0 && expired_for >= cache->opts.stale_retention_ms)
        return BALLAST_ENOTFOUND;
    /* The cache clock is monotonic from about boot: an expiry before its origin (after a reboot)
     * is clamped to the origin, which keeps the entry stale a little longer than it was. */
    if (expired_for > now_ms)
        expired_for = now_ms;
    struct cache_entry *entry = cache_entry_new(&key, rec->type, rec->rrclass, rec->data_len);
    if (entry == NULL)
        return BALLAST_ENOMEM;
    entry->kind = (uint8_t)rec->kind;
    entry->rank = (uint8_t)rec->rank;
    entry->count = rec->count;
    entry->soa_owner_len = rec->soa_owner_len;
    memcpy(entry->bytes + key.name_len, rec->data, rec->data_len);
    if (rec->kind != CACHE_KIND_RRSET) /* the SOA owner is kept lowercase, as inserts do */
        wire_name_lower(entry->bytes + key.name_len, rec->data, rec->soa_owner_len);
    entry->ttl = ttl;
    entry->expire_ms = expires_in >= 0 ? now_ms + (uint64_t)expires_in : now_ms - expired_for;
    return cache_store(cache, &key, entry, now_ms, expires_in <= 0);
}
