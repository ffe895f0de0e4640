/* Serve-stale bookkeeping (see stale.h): a chained hash table of questions in shards, each shard
 * under its own mutex with its records on an age list, oldest first, for eviction when full. */
#include "stale.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "wire.h"

#define STALE_SHARDS 16u
#define STALE_BUCKETS_PER_SHARD 1024u

struct stale_record {
    struct stale_record *hash_next;
    struct stale_record *age_prev, *age_next; /* age list: head is the oldest */
    uint64_t hash;
    uint64_t failed_until_ms;  /* failure recheck: 0 = none */
    uint64_t refresh_since_ms; /* refresh in flight since; 0 = none */
    uint64_t suspect_since_ms; /* suspicion window start; 0 = none */
    bool failed;               /* the last resolution failed (kept after the recheck time) */
    uint16_t type;
    uint8_t name_len;
    uint8_t name[WIRE_NAME_MAX]; /* lowercase */
};

struct stale_shard {
    pthread_mutex_t lock;
    struct stale_record *buckets[STALE_BUCKETS_PER_SHARD];
    struct stale_record *oldest, *newest;
    size_t count;
};

struct stale_table {
    unsigned char hash_key[crypto_shorthash_KEYBYTES];
    size_t max_per_shard;
    struct stale_shard shards[STALE_SHARDS];
    uint64_t failures, suspicions, suspicions_ended, evicted; /* atomic */
};

/* A question's key: lowercase name and keyed hash. */
struct stale_key {
    uint8_t name[WIRE_NAME_MAX];
    size_t len;
    uint16_t type;
    uint64_t hash;
};

int stale_table_create(size_t max_entries, struct stale_table **out)
{
    if (sodium_init() < 0)
        return BALLAST_ESYS;
    struct stale_table *table = calloc(1, sizeof *table);
    if (table == NULL)
        return BALLAST_ENOMEM;
    if (max_entries == 0)
        max_entries = STALE_DEFAULT_MAX_ENTRIES;
    table->max_per_shard = (max_entries + STALE_SHARDS - 1) / STALE_SHARDS;
    crypto_shorthash_keygen(table->hash_key);
    for (unsigned i = 0; i < STALE_SHARDS; i++)
        pthread_mutex_init(&table->shards[i].lock, NULL);
    *out = table;
    return BALLAST_OK;
}

void stale_table_free(struct stale_table *table)
{
    if (table == NULL)
        return;
    for (unsigned i = 0; i < STALE_SHARDS; i++) {
        struct stale_record *r = table->shards[i].oldest;
        while (r != NULL) {
            struct stale_record *next = r->age_next;
            free(r);
            r = next;
        }
        pthread_mutex_destroy(&table->shards[i].lock);
    }
    free(table);
}

static bool stale_key_make(const struct stale_table *table, const uint8_t *name, size_t len,
                           uint16_t type, struct stale_key *key)
{
    if (name == NULL || len == 0 || len > WIRE_NAME_MAX)
        return false;
    wire_name_lower(key->name, name, len);
    key->len = len;
    key->type = type;
    uint8_t input[WIRE_NAME_MAX + 2];
    memcpy(input, key->name, len);
    wire_write_u16(input + len, type);
    unsigned char digest[crypto_shorthash_BYTES];
    crypto_shorthash(digest, input, len + 2, table->hash_key);
    memcpy(&key->hash, digest, sizeof key->hash);
    return true;
}

static struct stale_shard *stale_shard_of(struct stale_table *table, const struct stale_key *key)
{
    return &table->shards[key->hash >> 60 & (STALE_SHARDS - 1)];
}

static struct stale_record **stale_bucket(struct stale_shard *shard, const struct stale_key *key)
{
    return &shard->buckets[key->hash % STALE_BUCKETS_PER_SHARD];
}

/* The record of key in shard (locked), or NULL. */
static struct stale_record *stale_find(struct stale_shard *shard, const struct stale_key *key)
{
    for (struct stale_record *r = *stale_bucket(shard, key); r != NULL; r = r->hash_next)
        if (r->hash == key->hash && r->type == key->type && r->name_len == key->len &&
            memcmp(r->name, key->name, key->len) == 0)
            return r;
    return NULL;
}

static void stale_unlink(struct stale_shard *shard, struct stale_record *r)
{
    struct stale_record **link = &shard->buckets[r->hash % STALE_BUCKETS_PER_SHARD];
    while (*link != r)
        link = &(*link)->hash_next;
    *link = r->hash_next;
    if (r->age_prev)
        r->age_prev->age_next = r->age_next;
    else
        shard->oldest = r->age_next;
    if (r->age_next)
        r->age_next->age_prev = r->age_prev;
    else
        shard->newest = r->age_prev;
    shard->count--;
}

/* The record of key, created (evicting the oldest when the shard is full) if absent; NULL when
 * out of memory. */
static struct stale_record *stale_get(struct stale_table *table, struct stale_shard *shard,
                                      const struct stale_key *key)
{
    struct stale_record *r = stale_find(shard, key);
    if (r != NULL)
        return r;
    if (shard->count >= table->max_per_shard && shard->oldest != NULL) {
        r = shard->oldest;
        stale_unlink(shard, r);
        __atomic_add_fetch(&table->evicted, 1, __ATOMIC_RELAXED);
    } else {
        r = malloc(sizeof *r);
        if (r == NULL)
            return NULL;
    }
    memset(r, 0, offsetof(struct stale_record, name));
    r->hash = key->hash;
    r->type = key->type;
    r->name_len = (uint8_t)key->len;
    memcpy(r->name, key->name, key->len);
    struct stale_record **bucket = stale_bucket(shard, key);
    r->hash_next = *bucket;
    *bucket = r;
    r->age_prev = shard->newest;
    if (shard->newest)
        shard->newest->age_next = r;
    else
        shard->oldest = r;
    shard->newest = r;
    shard->count++;
    return r;
}

/* Free a record that holds nothing any more. */
static void stale_drop_if_empty(struct stale_shard *shard, struct stale_record *r)
{
    if (!r->failed && r->refresh_since_ms == 0 && r->suspect_since_ms == 0) {
        stale_unlink(shard, r);
        free(r);
    }
}

/* Timestamps of 0 mean "none": a real time of 0 is stored as 1. */
static uint64_t stale_stamp(uint64_t now_ms)
{
    return now_ms == 0 ? 1 : now_ms;
}

void stale_mark_failed(struct stale_table *table, const uint8_t *name, size_t len, uint16_t type,
                       uint64_t now_ms, uint32_t recheck_ms)
{
    struct stale_key key;
    if (!stale_key_make(table, name, len, type, &key))
        return;
    __atomic_add_fetch(&table->failures, 1, __ATOMIC_RELAXED);
    struct stale_shard *shard = stale_shard_of(table, &key);
    pthread_mutex_lock(&shard->lock);
    struct stale_record *r = stale_get(table, shard, &key);
    if (r != NULL) {
        r->failed = true;
        r->failed_until_ms = recheck_ms ? now_ms + recheck_ms : 0;
    }
    pthread_mutex_unlock(&shard->lock);
}

bool stale_recently_failed(struct stale_table *table, const uint8_t *name, size_t len,
                           uint16_t type, uint64_t now_ms)
{
    struct stale_key key;
    if (!stale_key_make(table, name, len, type, &key))
        return false;
    struct stale_shard *shard = stale_shard_of(table, &key);
    pthread_mutex_lock(&shard->lock);
    struct stale_record *r = stale_find(shard, &key);
    bool failed = r != NULL && r->failed && now_ms < r->failed_until_ms;
    pthread_mutex_unlock(&shard->lock);
    return failed;
}

bool stale_failed_before(struct stale_table *table, const uint8_t *name, size_t len, uint16_t type)
{
    struct stale_key key;
    if (!stale_key_make(table, name, len, type, &key))
        return false;
    struct stale_shard *shard = stale_shard_of(table, &key);
    pthread_mutex_lock(&shard->lock);
    struct stale_record *r = stale_find(shard, &key);
    bool failed = r != NULL && r->failed;
    pthread_mutex_unlock(&shard->lock);
    return failed;
}

void stale_mark_resolved(struct stale_table *table, const uint8_t *name, size_t len, uint16_t type)
{
    struct stale_key key;
    if (!stale_key_make(table, name, len, type, &key))
        return;
    struct stale_shard *shard = stale_shard_of(table, &key);
    pthread_mutex_lock(&shard->lock);
    struct stale_record *r = stale_find(shard, &key);
    if (r != NULL) {
        r->failed = false;
        r->failed_until_ms = 0;
        r->suspect_since_ms = 0;
        stale_drop_if_empty(shard, r);
    }
    pthread_mutex_unlock(&shard->lock);
}

static bool stale_refresh_live(const struct stale_record *r, uint64_t now_ms, uint32_t hold_ms)
{
    return r != NULL && r->refresh_since_ms != 0 && now_ms < r->refresh_since_ms + hold_ms;
}

bool stale_refresh_begin(struct stale_table *table, const uint8_t *name, size_t len, uint16_t type,
                         uint64_t now_ms, uint32_t hold_ms)
{
    struct stale_key key;
    if (!stale_key_make(table, name, len, type, &key))
        return false;
    struct stale_shard *shard = stale_shard_of(table, &key);
    pthread_mutex_lock(&shard->lock);
    struct stale_record *r = stale_get(table, shard, &key);
    bool taken = r != NULL && !stale_refresh_live(r, now_ms, hold_ms);
    if (taken)
        r->refresh_since_ms = stale_stamp(now_ms);
    pthread_mutex_unlock(&shard->lock);
    return taken;
}

bool stale_refresh_running(struct stale_table *table, const uint8_t *name, size_t len,
                           uint16_t type, uint64_t now_ms, uint32_t hold_ms)
{
    struct stale_key key;
    if (!stale_key_make(table, name, len, type, &key))
        return false;
    struct stale_shard *shard = stale_shard_of(table, &key);
    pthread_mutex_lock(&shard->lock);
    bool running = stale_refresh_live(stale_find(shard, &key), now_ms, hold_ms);
    pthread_mutex_unlock(&shard->lock);
    return running;
}

void stale_refresh_end(struct stale_table *table, const uint8_t *name, size_t len, uint16_t type)
{
    struct stale_key key;
    if (!stale_key_make(table, name, len, type, &key))
        return;
    struct stale_shard *shard = stale_shard_of(table, &key);
    pthread_mutex_lock(&shard->lock);
    struct stale_record *r = stale_find(shard, &key);
    if (r != NULL) {
        r->refresh_since_ms = 0;
        stale_drop_if_empty(shard, r);
    }
    pthread_mutex_unlock(&shard->lock);
}

bool stale_suspect_empty(struct stale_table *table, const uint8_t *name, size_t len, uint16_t type,
                         uint64_t now_ms, uint32_t window_ms)
{
    struct stale_key key;
    if (window_ms == 0 || !stale_key_make(table, name, len, type, &key))
        return false;
    struct stale_shard *shard = stale_shard_of(table, &key);
    pthread_mutex_lock(&shard->lock);
    struct stale_record *r = stale_get(table, shard, &key);
    bool suspect = false;
    if (r != NULL && r->suspect_since_ms == 0) {
        r->suspect_since_ms = stale_stamp(now_ms);
        __atomic_add_fetch(&table->suspicions, 1, __ATOMIC_RELAXED);
        suspect = true;
    } else if (r != NULL && now_ms < r->suspect_since_ms + window_ms) {
        suspect = true;
    } else if (r != NULL) {
        r->suspect_since_ms = 0;
        __atomic_add_fetch(&table->suspicions_ended, 1, __ATOMIC_RELAXED);
        stale_drop_if_empty(shard, r);
    }
    pthread_mutex_unlock(&shard->lock);
    return suspect;
}

void stale_table_get_stats(struct stale_table *table, struct stale_table_stats *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < STALE_SHARDS; i++) {
        pthread_mutex_lock(&table->shards[i].lock);
        out->entries += table->shards[i].count;
        pthread_mutex_unlock(&table->shards[i].lock);
    }
    out->failures = __atomic_load_n(&table->failures, __ATOMIC_RELAXED);
    out->suspicions = __atomic_load_n(&table->suspicions, __ATOMIC_RELAXED);
    out->suspicions_ended = __atomic_load_n(&table->suspicions_ended, __ATOMIC_RELAXED);
    out->evicted = __atomic_load_n(&table->evicted, __ATOMIC_RELAXED);
}
