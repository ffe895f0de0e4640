/* The resolver's shared cache: RRsets and RFC 2308 negative answers keyed by lowercase name, type
 * and class; TTL-clamped, byte-bounded with per-shard LRU, keeps expired entries for serve-stale
 * (RFC 8767). Shared by all workers with one lock per shard and no global lock. */
#ifndef BALLAST_CACHE_H
#define BALLAST_CACHE_H

#include <stddef.h>
#include <stdint.h>

/* Defaults (Unbound's for the TTL bounds). Each is a field of struct cache_options. */
#define CACHE_DEFAULT_MAX_BYTES (64u << 20)  /* total bytes of entries, all shards */
#define CACHE_DEFAULT_SHARDS 16u             /* a power of two */
#define CACHE_DEFAULT_MIN_TTL 0u             /* seconds; positive entries only */
#define CACHE_DEFAULT_MAX_TTL 86400u         /* seconds */
#define CACHE_DEFAULT_MAX_NEGATIVE_TTL 3600u /* seconds; RFC 2308 §5 suggests 1-3 hours */
#define CACHE_DEFAULT_STALE_RETENTION_MS 0u  /* keep expired entries this long (serve-stale) */
#define CACHE_SHARDS_MAX 4096u
/* RDATA of one entry: `count` x [RDLENGTH u16 BE][RDATA] fits one DNS message. */
#define CACHE_RDATA_MAX 65535u
/* A lookup buffer of this size always holds any entry's data. */
#define CACHE_LOOKUP_BUF_MAX (CACHE_RDATA_MAX + 255u)

struct cache_options {
    uint64_t max_bytes;          /* budget, split evenly over the shards; per shard must be >= 1 */
    uint32_t shards;             /* power of two, 1..CACHE_SHARDS_MAX */
    uint32_t min_ttl;            /* raise positive TTLs to at least this (seconds) */
    uint32_t max_ttl;            /* cap every TTL (seconds); must be >= min_ttl */
    uint32_t max_negative_ttl;   /* cap negative TTLs (seconds) */
    uint64_t stale_retention_ms; /* expired entries are served STALE for this long, then dropped */
};

/* Trust ranks, lowest first (RFC 2181 §5.4.1). A fresh entry is replaced only by data of equal or
 * higher rank; an expired one by anything. */
enum cache_rank {
    CACHE_RANK_ADDITIONAL = 1,    /* additional section (glue addresses, other extras) */
    CACHE_RANK_AUTHORITY_NONAUTH, /* authority section of a non-AA answer: referral NS */
    CACHE_RANK_ANSWER_NONAUTH,    /* answer section without AA (e.g. from a forwarder) */
    CACHE_RANK_AUTHORITY_AUTH,    /* authority section of an AA answer (NS, SOA) */
    CACHE_RANK_ANSWER_AUTH,       /* answer section with AA, and AA negative answers */
};

enum cache_status {
    CACHE_MISS = 0,
    CACHE_FRESH = 1, /* within its TTL */
    CACHE_STALE = 2, /* expired less than stale_retention_ms ago */
};

enum cache_kind {
    CACHE_KIND_RRSET = 1,    /* an RRset of the looked-up type */
    CACHE_KIND_NODATA = 2,   /* the name exists but has no data of this type (RFC 2308 §2.2) */
    CACHE_KIND_NXDOMAIN = 3, /* the name does not exist: answers every type (RFC 2308 §2.1) */
};

/* What a lookup found. Pointers point into the caller's buffer, never into the cache. */
struct cache_result {
    enum cache_kind kind;
    enum cache_rank rank;
    uint32_t ttl;          /* FRESH: remaining seconds (rounded down); STALE: 0 */
    uint32_t original_ttl; /* the clamped TTL the entry was stored with */
    uint64_t stale_ms;     /* STALE: how long ago it expired; FRESH: 0 */
    /* CACHE_KIND_RRSET: count x [RDLENGTH u16 BE][RDATA], as inserted. */
    uint16_t count;
    const uint8_t *rdata;
    size_t rdata_len;
    /* NODATA/NXDOMAIN: the SOA for the authority section (RFC 2308 §3); emit it with `ttl`. */
    const uint8_t *soa_owner; /* lowercase wire name */
    size_t soa_owner_len;
    const uint8_t *soa_rdata; /* uncompressed RDATA, no length prefix */
    uint16_t soa_rdlen;
};

struct cache_stats {
    uint64_t entries; /* entries held now (fresh and stale) */
    uint64_t bytes;   /* bytes accounted to them now */
    uint64_t hits;    /* FRESH lookups */
    uint64_t stale_hits;
    uint64_t misses;
    uint64_t inserts;         /* entries stored */
    uint64_t refused;         /* inserts refused: lower rank than a fresh entry, or oversize */
    uint64_t evictions;       /* entries dropped to stay within the byte budget */
    uint64_t expired_removed; /* entries dropped because they expired beyond stale retention */
};

struct cache;

/* Fill with the defaults above. */
void cache_options_init_defaults(struct cache_options *opts);

/* Create a cache (owned by the caller, cache_free). opts is copied. The bucket hash is SipHash
 * (libsodium crypto_shorthash) with a random key per cache so names cannot be aimed at one bucket.
 * Returns 0, BALLAST_EINVAL for bad options, BALLAST_ENOMEM or BALLAST_ESYS (libsodium init). */
int cache_create(const struct cache_options *opts, struct cache **out);
/* Free the cache and every entry. No other call may be running on it. NULL is allowed. */
void cache_free(struct cache *cache);

/* The TTL the cache would keep for a record that came with ttl: clamped to [min_ttl, max_ttl],
 * with the top bit set counting as 0 (RFC 2181 §8). Answers resolved now carry this TTL, so the
 * first client sees what every later one does. */
uint32_t cache_effective_ttl(const struct cache *cache, uint32_t ttl);
/* The same for a negative answer: min(SOA TTL, SOA MINIMUM) (RFC 2308 §5), clamped to
 * max_negative_ttl and max_ttl. */
uint32_t cache_effective_negative_ttl(const struct cache *cache, uint32_t soa_ttl,
                                      uint32_t minimum);

/* Store an RRset: name is an uncompressed wire name (any case; the cache lowercases the key),
 * rdata is `count` x [RDLENGTH u16 BE][RDATA] (RDATA names uncompressed), copied. ttl is clamped
 * to [min_ttl, max_ttl] (TTLs with the top bit set count as 0, RFC 2181 §8). Storing data at a
 * name removes an NXDOMAIN entry there unless that one is fresh and of higher rank.
 * Returns 0 when stored; BALLAST_EEXIST when a fresh entry of higher rank is kept instead;
 * BALLAST_ELIMIT when the entry is larger than one shard's budget; BALLAST_EINVAL for a malformed
 * name or rdata, type 0 or a bad rank; BALLAST_ENOMEM. Thread-safe. */
int cache_insert_rrset(struct cache *cache, const uint8_t *name, size_t name_len, uint16_t type,
                       uint16_t rrclass, uint32_t ttl, enum cache_rank rank, const uint8_t *rdata,
                       size_t rdata_len, uint16_t count, uint64_t now_ms);

/* Store a negative answer: type 0 means NXDOMAIN (the name answers no type), otherwise NODATA
 * for name+type. soa_owner/soa_rdata are the SOA from the authority section (RDATA uncompressed,
 * without a length prefix), copied. TTL = min(soa_ttl, SOA MINIMUM) (RFC 2308 §5), capped by
 * max_negative_ttl and max_ttl (min_ttl does not apply). Same returns and rank rule as
 * cache_insert_rrset; BALLAST_EINVAL also for SOA RDATA that is not two names and 20 bytes.
 * Thread-safe. */
int cache_insert_negative(struct cache *cache, const uint8_t *name, size_t name_len, uint16_t type,
                          uint16_t rrclass, const uint8_t *soa_owner, size_t soa_owner_len,
                          const uint8_t *soa_rdata, size_t soa_rdlen, uint32_t soa_ttl,
                          enum cache_rank rank, uint64_t now_ms);

/* Look up name (any case) + type (not 0) + class: an RRset or NODATA stored for that type, or an
 * NXDOMAIN stored for the name. When both exist, fresh beats stale, then higher rank, then the
 * newer. The entry's data is copied into buf (pointers in out point into buf); buf may be NULL
 * (buf_len 0) to learn only the status and sizes. A found entry moves to the front of its LRU.
 * Entries expired for longer than stale_retention_ms are removed here.
 * Returns CACHE_MISS, CACHE_FRESH or CACHE_STALE (out filled for the last two); BALLAST_ESPACE if
 * buf is too small (CACHE_LOOKUP_BUF_MAX always suffices); BALLAST_EINVAL for a bad name/type.
 * Thread-safe. */
int cache_lookup(struct cache *cache, const uint8_t *name, size_t name_len, uint16_t type,
                 uint16_t rrclass, uint64_t now_ms, struct cache_result *out, uint8_t *buf,
                 size_t buf_len);

/* Remove every entry (all types, classes, positive and negative) at exactly this name. */
int cache_flush_name(struct cache *cache, const uint8_t *name, size_t name_len);
/* Remove every entry at this name or below it (a zone flush; "." flushes all). */
int cache_flush_below(struct cache *cache, const uint8_t *name, size_t name_len);
/* Remove every entry. Counters other than entries/bytes are kept. */
void cache_flush_all(struct cache *cache);
/* The flush calls return 0 or BALLAST_EINVAL (malformed name); they are thread-safe and lock one
 * shard at a time, so concurrent inserts may land during a flush of several shards. */

/* One entry as cache_walk shows it and cache_restore takes it (cache snapshots). Pointers are
 * valid only during the walk callback; for a restore they are the caller's and are copied. */
struct cache_record {
    const uint8_t *name; /* lowercase wire name */
    size_t name_len;
    uint16_t type; /* the RRset or NODATA type; 0 for NXDOMAIN */
    uint16_t rrclass;
    enum cache_kind kind;
    enum cache_rank rank;
    uint32_t ttl;          /* the clamped TTL the entry was stored with (seconds) */
    int64_t expires_in_ms; /* expiry relative to now_ms: negative once the entry is stale */
    uint16_t count;        /* RRSET: records in data */
    /* RRSET: count x [RDLENGTH][RDATA]; NODATA/NXDOMAIN: the SOA owner (soa_owner_len bytes)
     * followed by the SOA RDATA. */
    const uint8_t *data;
    size_t data_len;
    uint8_t soa_owner_len;
};

/* Call fn for every entry that is fresh or within stale retention at now_ms, shard by shard,
 * each shard from most to least recently used. fn runs with the shard's lock held: it must not
 * call into the cache. A nonzero return from fn stops the walk and is returned; else 0. */
typedef int (*cache_walk_fn)(void *ctx, const struct cache_record *rec);
int cache_walk(struct cache *cache, uint64_t now_ms, cache_walk_fn fn, void *ctx);

/* Store an entry as cache_walk gave it (perhaps from another process: expires_in_ms is relative
 * to this now_ms). The data is checked as the inserts check it; the TTL is capped at max_ttl
 * (max_negative_ttl for negative entries) and the expiry at the TTL. Rank rules as for inserts.
 * Returns 0; BALLAST_ENOTFOUND when the entry is beyond stale retention (not stored);
 * BALLAST_EEXIST, BALLAST_ELIMIT, BALLAST_EINVAL (malformed record) or BALLAST_ENOMEM.
 * Thread-safe. */
int cache_restore(struct cache *cache, const struct cache_record *rec, uint64_t now_ms);

/* Change how long expired entries are kept (a reload of max-stale-age). Thread-safe. */
void cache_set_stale_retention(struct cache *cache, uint64_t stale_retention_ms);

/* Sum of the counters of all shards (each read under its shard lock). Thread-safe. */
void cache_get_stats(struct cache *cache, struct cache_stats *out);

#endif
