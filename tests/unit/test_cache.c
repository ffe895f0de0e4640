/* Unit tests for resolver/cache.c: hits and TTLs, expiry and stale retention, clamping, trust
 * ranks, negative caching (RFC 2308), LRU eviction under the byte budget, flushes, stats, and
 * concurrent use from several threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <time.h>

#include "cache.h"
#include "errors.h"
#include "wire.h"

#define T0 1000000u /* an arbitrary "now" in ms */

struct name {
    uint8_t wire[WIRE_NAME_MAX];
    size_t len;
};

static struct name name_of(const char *text)
{
    struct name n;
    assert_int_equal(wire_name_from_text(text, n.wire, &n.len), 0);
    return n;
}

/* One A record: [0,4][a.b.c.d]. */
static void rdata_a(uint8_t out[6], uint8_t last_octet)
{
    const uint8_t rr[6] = {0, 4, 192, 0, 2, last_octet};
    memcpy(out, rr, sizeof rr);
}

/* SOA RDATA for example.test: ns.example.test. hostmaster.example.test. 1 7200 900 604800 min */
static size_t soa_rdata(uint8_t *out, uint32_t minimum)
{
    struct name mname = name_of("ns.example.test");
    struct name rname = name_of("hostmaster.example.test");
    size_t at = 0;
    memcpy(out + at, mname.wire, mname.len);
    at += mname.len;
    memcpy(out + at, rname.wire, rname.len);
    at += rname.len;
    const uint32_t fixed[5] = {1, 7200, 900, 604800, minimum};
    for (int i = 0; i < 5; i++, at += 4)
        wire_write_u32(out + at, fixed[i]);
    return at;
}

static struct cache *make_cache(uint64_t max_bytes, uint32_t shards, uint64_t retention_ms)
{
    struct cache_options opts;
    cache_options_init_defaults(&opts);
    opts.max_bytes = max_bytes;
    opts.shards = shards;
    opts.stale_retention_ms = retention_ms;
    struct cache *cache = NULL;
    assert_int_equal(cache_create(&opts, &cache), 0);
    assert_non_null(cache);
    return cache;
}

static struct cache *default_cache(void)
{
    return make_cache(CACHE_DEFAULT_MAX_BYTES, CACHE_DEFAULT_SHARDS, 0);
}

static int insert_a(struct cache *cache, const char *owner, uint8_t octet, uint32_t ttl,
                    enum cache_rank rank, uint64_t now_ms)
{
    struct name n = name_of(owner);
    uint8_t rr[6];
    rdata_a(rr, octet);
    return cache_insert_rrset(cache, n.wire, n.len, WIRE_TYPE_A, WIRE_CLASS_IN, ttl, rank, rr,
                              sizeof rr, 1, now_ms);
}

static int insert_negative(struct cache *cache, const char *owner, uint16_t type, uint32_t soa_ttl,
                           uint32_t minimum, enum cache_rank rank, uint64_t now_ms)
{
    struct name n = name_of(owner);
    struct name apex = name_of("example.test");
    uint8_t soa[WIRE_NAME_MAX * 2 + 20];
    size_t soa_len = soa_rdata(soa, minimum);
    return cache_insert_negative(cache, n.wire, n.len, type, WIRE_CLASS_IN, apex.wire, apex.len,
                                 soa, soa_len, soa_ttl, rank, now_ms);
}

static int lookup(struct cache *cache, const char *owner, uint16_t type, uint64_t now_ms,
                  struct cache_result *res, uint8_t *buf, size_t buf_len)
{
    struct name n = name_of(owner);
    return cache_lookup(cache, n.wire, n.len, type, WIRE_CLASS_IN, now_ms, res, buf, buf_len);
}

/* The last octet of the A record found, or -1 on anything but a FRESH RRset hit. */
static int lookup_a_octet(struct cache *cache, const char *owner, uint64_t now_ms)
{
    struct cache_result res;
    uint8_t buf[CACHE_LOOKUP_BUF_MAX];
    if (lookup(cache, owner, WIRE_TYPE_A, now_ms, &res, buf, sizeof buf) != CACHE_FRESH ||
        res.kind != CACHE_KIND_RRSET || res.rdata_len != 6)
        return -1;
    return res.rdata[5];
}

static void test_cache_hit_returns_data_with_ttl_counting_down(void **state)
{
    struct cache *cache = default_cache();
    assert_int_equal(insert_a(cache, "www.Example.TEST", 7, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);

    struct cache_result res;
    uint8_t buf[CACHE_LOOKUP_BUF_MAX];
    assert_int_equal(lookup(cache, "WWW.example.test", WIRE_TYPE_A, T0, &res, buf, sizeof buf),
                     CACHE_FRESH);
    uint8_t expected[6];
    rdata_a(expected, 7);
    assert_int_equal(res.kind, CACHE_KIND_RRSET);
    assert_int_equal(res.count, 1);
    assert_int_equal(res.rdata_len, sizeof expected);
    assert_memory_equal(res.rdata, expected, sizeof expected);
    assert_ptr_equal(res.rdata, buf);
    assert_int_equal(res.ttl, 300);
    assert_int_equal(res.original_ttl, 300);
    assert_int_equal(res.rank, CACHE_RANK_ANSWER_AUTH);

    assert_int_equal(
        lookup(cache, "www.example.test", WIRE_TYPE_A, T0 + 10500, &res, buf, sizeof buf),
        CACHE_FRESH);
    assert_int_equal(res.ttl, 289); /* 289.5 s left, rounded down */
    assert_int_equal(res.original_ttl, 300);
    /* Other types and classes are other keys. */
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_AAAA, T0, &res, buf, sizeof buf),
                     CACHE_MISS);
    struct name n = name_of("www.example.test");
    assert_int_equal(cache_lookup(cache, n.wire, n.len, WIRE_TYPE_A, 3, T0, &res, buf, sizeof buf),
                     CACHE_MISS);
    cache_free(cache);
}

static void test_cache_expired_entry_misses_without_retention(void **state)
{
    struct cache *cache = default_cache();
    assert_int_equal(insert_a(cache, "www.example.test", 1, 10, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(lookup_a_octet(cache, "www.example.test", T0 + 9999), 1);

    struct cache_result res;
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T0 + 10000, &res, NULL, 0),
                     CACHE_MISS);
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.expired_removed, 1);
    assert_int_equal(stats.entries, 0);
    assert_int_equal(stats.bytes, 0);
    cache_free(cache);
}

static void test_cache_expired_entry_is_stale_within_retention(void **state)
{
    struct cache *cache = make_cache(1u << 20, 4, 5000);
    assert_int_equal(insert_a(cache, "www.example.test", 3, 10, CACHE_RANK_ANSWER_AUTH, T0), 0);

    struct cache_result res;
    uint8_t buf[64];
    assert_int_equal(
        lookup(cache, "www.example.test", WIRE_TYPE_A, T0 + 12000, &res, buf, sizeof buf),
        CACHE_STALE);
    assert_int_equal(res.stale_ms, 2000);
    assert_int_equal(res.ttl, 0);
    assert_int_equal(res.original_ttl, 10);
    assert_int_equal(res.rdata_len, 6);
    assert_int_equal(res.rdata[5], 3);

    /* Past the retention window the entry is gone for good. */
    assert_int_equal(
        lookup(cache, "www.example.test", WIRE_TYPE_A, T0 + 15000, &res, buf, sizeof buf),
        CACHE_MISS);
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.stale_hits, 1);
    assert_int_equal(stats.expired_removed, 1);
    assert_int_equal(stats.entries, 0);
    cache_free(cache);
}

static void test_cache_clamps_ttl_to_min_and_max(void **state)
{
    struct cache_options opts;
    cache_options_init_defaults(&opts);
    opts.min_ttl = 60;
    opts.max_ttl = 3600;
    struct cache *cache;
    assert_int_equal(cache_create(&opts, &cache), 0);
    struct cache_result res;

    assert_int_equal(insert_a(cache, "low.example.test", 1, 5, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(lookup(cache, "low.example.test", WIRE_TYPE_A, T0, &res, NULL, 0),
                     CACHE_FRESH);
    assert_int_equal(res.ttl, 60);

    assert_int_equal(insert_a(cache, "high.example.test", 1, 100000, CACHE_RANK_ANSWER_AUTH, T0),
                     0);
    assert_int_equal(lookup(cache, "high.example.test", WIRE_TYPE_A, T0, &res, NULL, 0),
                     CACHE_FRESH);
    assert_int_equal(res.ttl, 3600);

    /* RFC 2181 §8: a TTL with the top bit set means 0, then raised to min_ttl. */
    assert_int_equal(
        insert_a(cache, "neg.example.test", 1, 0x80000001u, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(lookup(cache, "neg.example.test", WIRE_TYPE_A, T0, &res, NULL, 0),
                     CACHE_FRESH);
    assert_int_equal(res.ttl, 60);
    cache_free(cache);
}

static void test_cache_negative_ttl_is_min_of_soa_ttl_and_minimum(void **state)
{
    struct cache *cache = default_cache();
    struct cache_result res;
    /* RFC 2308 §5 */
    assert_int_equal(
        insert_negative(cache, "a.example.test", 0, 3600, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(lookup(cache, "a.example.test", WIRE_TYPE_A, T0, &res, NULL, 0), CACHE_FRESH);
    assert_int_equal(res.ttl, 300);

    assert_int_equal(
        insert_negative(cache, "b.example.test", 0, 120, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(lookup(cache, "b.example.test", WIRE_TYPE_A, T0, &res, NULL, 0), CACHE_FRESH);
    assert_int_equal(res.ttl, 120);
    cache_free(cache);
}

static void test_cache_negative_ttl_capped_by_max_negative_ttl_and_not_raised(void **state)
{
    struct cache_options opts;
    cache_options_init_defaults(&opts);
    opts.max_negative_ttl = 900;
    opts.min_ttl = 600; /* applies to positive entries only */
    struct cache *cache;
    assert_int_equal(cache_create(&opts, &cache), 0);
    struct cache_result res;

    assert_int_equal(
        insert_negative(cache, "a.example.test", 0, 86400, 86400, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(lookup(cache, "a.example.test", WIRE_TYPE_A, T0, &res, NULL, 0), CACHE_FRESH);
    assert_int_equal(res.ttl, 900);

    assert_int_equal(insert_negative(cache, "b.example.test", WIRE_TYPE_AAAA, 3600, 30,
                                     CACHE_RANK_ANSWER_AUTH, T0),
                     0);
    assert_int_equal(lookup(cache, "b.example.test", WIRE_TYPE_AAAA, T0, &res, NULL, 0),
                     CACHE_FRESH);
    assert_int_equal(res.ttl, 30);
    cache_free(cache);
}

static void test_cache_glue_does_not_replace_authoritative_answer(void **state)
{
    struct cache *cache = default_cache();
    assert_int_equal(insert_a(cache, "ns1.example.test", 1, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(insert_a(cache, "ns1.example.test", 2, 300, CACHE_RANK_ADDITIONAL, T0 + 1),
                     BALLAST_EEXIST);
    assert_int_equal(
        insert_a(cache, "ns1.example.test", 3, 300, CACHE_RANK_AUTHORITY_NONAUTH, T0 + 1),
        BALLAST_EEXIST);
    assert_int_equal(lookup_a_octet(cache, "ns1.example.test", T0 + 2), 1);

    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.refused, 2);
    assert_int_equal(stats.entries, 1);
    cache_free(cache);
}

static void test_cache_answer_replaces_glue_and_equal_rank_replaces(void **state)
{
    struct cache *cache = default_cache();
    assert_int_equal(insert_a(cache, "ns1.example.test", 1, 300, CACHE_RANK_ADDITIONAL, T0), 0);
    assert_int_equal(insert_a(cache, "ns1.example.test", 2, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(lookup_a_octet(cache, "ns1.example.test", T0), 2);
    assert_int_equal(insert_a(cache, "ns1.example.test", 3, 600, CACHE_RANK_ANSWER_AUTH, T0), 0);

    struct cache_result res;
    assert_int_equal(lookup(cache, "ns1.example.test", WIRE_TYPE_A, T0, &res, NULL, 0),
                     CACHE_FRESH);
    assert_int_equal(res.ttl, 600);
    assert_int_equal(lookup_a_octet(cache, "ns1.example.test", T0), 3);
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.entries, 1);
    cache_free(cache);
}

static void test_cache_lower_rank_replaces_expired_entry(void **state)
{
    struct cache *cache = make_cache(1u << 20, 1, 60000);
    assert_int_equal(insert_a(cache, "ns1.example.test", 1, 10, CACHE_RANK_ANSWER_AUTH, T0), 0);
    /* Expired (though still kept as stale): no longer outranks fresh glue. */
    assert_int_equal(insert_a(cache, "ns1.example.test", 2, 300, CACHE_RANK_ADDITIONAL, T0 + 10000),
                     0);
    assert_int_equal(lookup_a_octet(cache, "ns1.example.test", T0 + 10001), 2);
    cache_free(cache);
}

static void test_cache_nxdomain_answers_every_type_at_the_name(void **state)
{
    struct cache *cache = default_cache();
    assert_int_equal(
        insert_negative(cache, "gone.Example.test", 0, 3600, 600, CACHE_RANK_ANSWER_AUTH, T0), 0);

    const uint16_t types[] = {WIRE_TYPE_A, WIRE_TYPE_AAAA, WIRE_TYPE_MX, WIRE_TYPE_TXT};
    uint8_t expected_soa[WIRE_NAME_MAX * 2 + 20];
    size_t expected_len = soa_rdata(expected_soa, 600);
    struct name apex = name_of("example.test");
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct cache_result res;
        uint8_t buf[CACHE_LOOKUP_BUF_MAX];
        assert_int_equal(
            lookup(cache, "gone.example.test", types[i], T0 + 1000, &res, buf, sizeof buf),
            CACHE_FRESH);
        assert_int_equal(res.kind, CACHE_KIND_NXDOMAIN);
        assert_int_equal(res.ttl, 599);
        assert_int_equal(res.soa_owner_len, apex.len);
        assert_memory_equal(res.soa_owner, apex.wire, apex.len);
        assert_int_equal(res.soa_rdlen, expected_len);
        assert_memory_equal(res.soa_rdata, expected_soa, expected_len);
    }
    /* Only that name: neither a sibling nor a child (RFC 8020 is not applied). */
    assert_int_equal(lookup_a_octet(cache, "other.example.test", T0), -1);
    struct cache_result res;
    assert_int_equal(lookup(cache, "x.gone.example.test", WIRE_TYPE_A, T0, &res, NULL, 0),
                     CACHE_MISS);
    cache_free(cache);
}

static void test_cache_nodata_answers_only_its_type(void **state)
{
    struct cache *cache = default_cache();
    assert_int_equal(insert_negative(cache, "www.example.test", WIRE_TYPE_AAAA, 3600, 300,
                                     CACHE_RANK_ANSWER_AUTH, T0),
                     0);
    struct cache_result res;
    uint8_t buf[CACHE_LOOKUP_BUF_MAX];
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_AAAA, T0, &res, buf, sizeof buf),
                     CACHE_FRESH);
    assert_int_equal(res.kind, CACHE_KIND_NODATA);
    assert_non_null(res.soa_rdata);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T0, &res, buf, sizeof buf),
                     CACHE_MISS);
    cache_free(cache);
}

static void test_cache_data_at_name_clears_its_nxdomain(void **state)
{
    struct cache *cache = default_cache();
    assert_int_equal(
        insert_negative(cache, "new.example.test", 0, 3600, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(insert_a(cache, "new.example.test", 9, 300, CACHE_RANK_ANSWER_AUTH, T0 + 1),
                     0);
    assert_int_equal(lookup_a_octet(cache, "new.example.test", T0 + 2), 9);
    /* The NXDOMAIN is gone, so other types are now unknown rather than negative. */
    struct cache_result res;
    assert_int_equal(lookup(cache, "new.example.test", WIRE_TYPE_AAAA, T0 + 2, &res, NULL, 0),
                     CACHE_MISS);
    cache_free(cache);
}

static void test_cache_fresh_authoritative_nxdomain_outranks_glue_at_the_name(void **state)
{
    struct cache *cache = make_cache(1u << 20, 4, 600000); /* stale entries kept */
    assert_int_equal(
        insert_negative(cache, "ns.example.test", 0, 3600, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    /* Glue for a name the authority says does not exist: stored, but the NXDOMAIN wins. */
    assert_int_equal(insert_a(cache, "ns.example.test", 5, 3600, CACHE_RANK_ADDITIONAL, T0), 0);
    struct cache_result res;
    assert_int_equal(lookup(cache, "ns.example.test", WIRE_TYPE_A, T0, &res, NULL, 0), CACHE_FRESH);
    assert_int_equal(res.kind, CACHE_KIND_NXDOMAIN);
    /* Once the NXDOMAIN has expired, the fresh glue beats it though it is still kept stale. */
    assert_int_equal(lookup_a_octet(cache, "ns.example.test", T0 + 300000), 5);
    cache_free(cache);
}

/* Bytes one A entry for a name of the same length as "nameN.example.test" takes. */
static uint64_t one_entry_bytes(void)
{
    struct cache *probe = make_cache(1u << 20, 1, 0);
    assert_int_equal(insert_a(probe, "name0.example.test", 1, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    struct cache_stats stats;
    cache_get_stats(probe, &stats);
    cache_free(probe);
    assert_true(stats.bytes > 6 + 20); /* struct + name + rdata are all counted */
    return stats.bytes;
}

static void test_cache_evicts_least_recently_used_within_byte_budget(void **state)
{
    uint64_t size = one_entry_bytes();
    struct cache *cache = make_cache(size * 3 + size / 2, 1, 0);
    assert_int_equal(insert_a(cache, "name1.example.test", 1, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(insert_a(cache, "name2.example.test", 2, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(insert_a(cache, "name3.example.test", 3, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    /* Touch the oldest: name2 becomes the least recently used. */
    assert_int_equal(lookup_a_octet(cache, "name1.example.test", T0), 1);
    assert_int_equal(insert_a(cache, "name4.example.test", 4, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);

    assert_int_equal(lookup_a_octet(cache, "name2.example.test", T0), -1);
    assert_int_equal(lookup_a_octet(cache, "name1.example.test", T0), 1);
    assert_int_equal(lookup_a_octet(cache, "name3.example.test", T0), 3);
    assert_int_equal(lookup_a_octet(cache, "name4.example.test", T0), 4);
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.evictions, 1);
    assert_int_equal(stats.entries, 3);
    assert_int_equal(stats.bytes, size * 3);
    cache_free(cache);
}

static void test_cache_refuses_entry_larger_than_shard_budget(void **state)
{
    /* 64 KiB over 64 shards: 1 KiB per shard. */
    struct cache *cache = make_cache(64u << 10, 64, 0);
    uint8_t rdata[2 + 1500] = {0};
    wire_write_u16(rdata, 1500);
    struct name n = name_of("big.example.test");
    assert_int_equal(cache_insert_rrset(cache, n.wire, n.len, WIRE_TYPE_TXT, WIRE_CLASS_IN, 300,
                                        CACHE_RANK_ANSWER_AUTH, rdata, sizeof rdata, 1, T0),
                     BALLAST_ELIMIT);
    struct cache_result res;
    assert_int_equal(
        cache_lookup(cache, n.wire, n.len, WIRE_TYPE_TXT, WIRE_CLASS_IN, T0, &res, NULL, 0),
        CACHE_MISS);
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.refused, 1);
    assert_int_equal(stats.entries, 0);
    assert_int_equal(stats.bytes, 0);
    cache_free(cache);
}

static void test_cache_flush_name_removes_every_type_only_at_that_name(void **state)
{
    struct cache *cache = default_cache();
    struct name www = name_of("www.example.test");
    uint8_t aaaa[18] = {0, 16};
    assert_int_equal(insert_a(cache, "www.example.test", 1, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(cache_insert_rrset(cache, www.wire, www.len, WIRE_TYPE_AAAA, WIRE_CLASS_IN,
                                        300, CACHE_RANK_ANSWER_AUTH, aaaa, sizeof aaaa, 1, T0),
                     0);
    assert_int_equal(insert_negative(cache, "www.example.test", WIRE_TYPE_MX, 300, 300,
                                     CACHE_RANK_ANSWER_AUTH, T0),
                     0);
    assert_int_equal(insert_a(cache, "x.www.example.test", 2, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);

    struct name upper = name_of("WWW.example.TEST");
    assert_int_equal(cache_flush_name(cache, upper.wire, upper.len), 0);
    struct cache_result res;
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T0, &res, NULL, 0), CACHE_MISS);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_AAAA, T0, &res, NULL, 0),
                     CACHE_MISS);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_MX, T0, &res, NULL, 0),
                     CACHE_MISS);
    assert_int_equal(lookup_a_octet(cache, "x.www.example.test", T0), 2);
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.entries, 1);
    cache_free(cache);
}

static void test_cache_flush_below_removes_zone_and_everything_under_it(void **state)
{
    struct cache *cache = default_cache();
    const char *inside[] = {"example.test", "www.example.test", "a.b.example.test"};
    const char *outside[] = {"test", "notexample.test", "example.org", "example.test.org"};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(insert_a(cache, inside[i], 1, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(insert_a(cache, outside[i], 2, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(
        insert_negative(cache, "gone.example.test", 0, 300, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);

    struct name zone = name_of("Example.Test");
    assert_int_equal(cache_flush_below(cache, zone.wire, zone.len), 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(lookup_a_octet(cache, inside[i], T0), -1);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(lookup_a_octet(cache, outside[i], T0), 2);
    struct cache_result res;
    assert_int_equal(lookup(cache, "gone.example.test", WIRE_TYPE_A, T0, &res, NULL, 0),
                     CACHE_MISS);
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.entries, 4);
    cache_free(cache);
}

static void test_cache_flush_all_empties_cache_and_keeps_counters(void **state)
{
    struct cache *cache = default_cache();
    char owner[64];
    for (int i = 0; i < 100; i++) {
        snprintf(owner, sizeof owner, "h%d.example.test", i);
        assert_int_equal(insert_a(cache, owner, 1, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    }
    cache_flush_all(cache);
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.entries, 0);
    assert_int_equal(stats.bytes, 0);
    assert_int_equal(stats.inserts, 100);
    assert_int_equal(lookup_a_octet(cache, "h5.example.test", T0), -1);
    /* Still usable afterwards. */
    assert_int_equal(insert_a(cache, "h5.example.test", 5, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(lookup_a_octet(cache, "h5.example.test", T0), 5);
    cache_free(cache);
}

static void test_cache_stats_count_hits_stale_hits_misses_and_inserts(void **state)
{
    struct cache *cache = make_cache(1u << 20, 8, 60000);
    assert_int_equal(insert_a(cache, "a.example.test", 1, 10, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(insert_a(cache, "b.example.test", 1, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(lookup_a_octet(cache, "a.example.test", T0), 1);          /* hit */
    assert_int_equal(lookup_a_octet(cache, "b.example.test", T0), 1);          /* hit */
    assert_int_equal(lookup_a_octet(cache, "c.example.test", T0), -1);         /* miss */
    assert_int_equal(lookup_a_octet(cache, "a.example.test", T0 + 20000), -1); /* stale */
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.hits, 2);
    assert_int_equal(stats.stale_hits, 1);
    assert_int_equal(stats.misses, 1);
    assert_int_equal(stats.inserts, 2);
    assert_int_equal(stats.entries, 2);
    assert_int_equal(stats.evictions, 0);
    assert_int_equal(stats.expired_removed, 0);
    assert_true(stats.bytes > 0);
    cache_free(cache);
}

static void test_cache_lookup_copies_into_caller_buffer(void **state)
{
    struct cache *cache = default_cache();
    assert_int_equal(insert_a(cache, "www.example.test", 4, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    struct cache_result res;
    uint8_t small[5];
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T0, &res, small, sizeof small),
                     BALLAST_ESPACE);
    /* Status only. */
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T0, &res, NULL, 0),
                     CACHE_FRESH);
    assert_null(res.rdata);
    assert_int_equal(res.rdata_len, 6);

    uint8_t buf[6];
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T0, &res, buf, sizeof buf),
                     CACHE_FRESH);
    /* The copy outlives the entry. */
    cache_flush_all(cache);
    assert_int_equal(insert_a(cache, "www.example.test", 8, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    assert_int_equal(res.rdata[5], 4);
    cache_free(cache);
}

static void test_cache_rejects_malformed_input_and_options(void **state)
{
    struct cache *cache = default_cache();
    struct name n = name_of("www.example.test");
    struct cache_result res;
    uint8_t rr[6];
    rdata_a(rr, 1);
    /* Truncated name, a compression pointer, rdata length mismatch, zero count, type 0. */
    assert_int_equal(cache_insert_rrset(cache, n.wire, n.len - 1, WIRE_TYPE_A, 1, 300,
                                        CACHE_RANK_ANSWER_AUTH, rr, sizeof rr, 1, T0),
                     BALLAST_EINVAL);
    const uint8_t pointer[] = {3, 'w', 'w', 'w', 0xC0, 12};
    assert_int_equal(cache_insert_rrset(cache, pointer, sizeof pointer, WIRE_TYPE_A, 1, 300,
                                        CACHE_RANK_ANSWER_AUTH, rr, sizeof rr, 1, T0),
                     BALLAST_EINVAL);
    assert_int_equal(cache_insert_rrset(cache, n.wire, n.len, WIRE_TYPE_A, 1, 300,
                                        CACHE_RANK_ANSWER_AUTH, rr, sizeof rr - 1, 1, T0),
                     BALLAST_EINVAL);
    assert_int_equal(cache_insert_rrset(cache, n.wire, n.len, WIRE_TYPE_A, 1, 300,
                                        CACHE_RANK_ANSWER_AUTH, rr, sizeof rr, 2, T0),
                     BALLAST_EINVAL);
    assert_int_equal(cache_insert_rrset(cache, n.wire, n.len, WIRE_TYPE_A, 1, 300,
                                        CACHE_RANK_ANSWER_AUTH, rr, 0, 0, T0),
                     BALLAST_EINVAL);
    assert_int_equal(cache_insert_rrset(cache, n.wire, n.len, 0, 1, 300, CACHE_RANK_ANSWER_AUTH, rr,
                                        sizeof rr, 1, T0),
                     BALLAST_EINVAL);
    assert_int_equal(cache_insert_rrset(cache, n.wire, n.len, WIRE_TYPE_A, 1, 300,
                                        (enum cache_rank)9, rr, sizeof rr, 1, T0),
                     BALLAST_EINVAL);
    /* SOA RDATA must be two names and exactly 20 bytes. */
    uint8_t soa[WIRE_NAME_MAX * 2 + 20];
    size_t soa_len = soa_rdata(soa, 300);
    assert_int_equal(cache_insert_negative(cache, n.wire, n.len, 0, 1, n.wire, n.len, soa,
                                           soa_len - 1, 300, CACHE_RANK_ANSWER_AUTH, T0),
                     BALLAST_EINVAL);
    assert_int_equal(cache_lookup(cache, n.wire, n.len, 0, 1, T0, &res, NULL, 0), BALLAST_EINVAL);
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.entries, 0);
    cache_free(cache);

    struct cache_options opts;
    cache_options_init_defaults(&opts);
    opts.shards = 12; /* not a power of two */
    assert_int_equal(cache_create(&opts, &cache), BALLAST_EINVAL);
    cache_options_init_defaults(&opts);
    opts.min_ttl = 100;
    opts.max_ttl = 50;
    assert_int_equal(cache_create(&opts, &cache), BALLAST_EINVAL);
    cache_options_init_defaults(&opts);
    opts.max_bytes = opts.shards - 1; /* less than a byte per shard */
    assert_int_equal(cache_create(&opts, &cache), BALLAST_EINVAL);
}

/* ---- concurrency ---- */

#define THREADS 4
#define POOL 512
#define RUN_MS 500

static struct name pool_names[POOL];

struct worker {
    struct cache *cache;
    unsigned seed;
    uint64_t lookups;
    uint64_t failures; /* cmocka asserts are not thread-safe: count, check in the main thread */
    struct timespec start;
    const uint8_t *soa;
    size_t soa_len;
};

static uint64_t elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)(now.tv_sec - start->tv_sec) * 1000u +
           (uint64_t)((now.tv_nsec - start->tv_nsec) / 1000000);
}

static unsigned next_random(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 8;
}

/* Each name's RRset carries its own index and length, so a lookup can tell whether it got
 * exactly the right data. */
static void *worker_run(void *arg)
{
    struct worker *w = arg;
    uint8_t buf[CACHE_LOOKUP_BUF_MAX];
    const struct name *apex = &pool_names[0];
    uint64_t ms;
    while ((ms = elapsed_ms(&w->start)) < RUN_MS) {
        unsigned r = next_random(&w->seed);
        unsigned index = 1 + r % (POOL - 1);
        const struct name *n = &pool_names[index];
        /* Fast clock (1 ms = 10 s) so entries expire and go stale during the run. */
        uint64_t now = T0 + ms * 10000;
        enum cache_rank rank = (enum cache_rank)(1 + (r >> 7) % 5);
        unsigned op = (r >> 12) % 100;
        if (op < 40) {
            uint8_t rdata[2 + 16] = {0};
            uint16_t rdlen = (uint16_t)(4 + 4 * ((r >> 20) % 4)); /* sizes vary */
            wire_write_u16(rdata, rdlen);
            wire_write_u32(rdata + 2, index);
            int rc = cache_insert_rrset(w->cache, n->wire, n->len, WIRE_TYPE_A, WIRE_CLASS_IN,
                                        1 + (r >> 4) % 60, rank, rdata, 2u + rdlen, 1, now);
            w->failures += rc != 0 && rc != BALLAST_EEXIST;
        } else if (op < 45) {
            uint16_t type = (r >> 20) % 2 ? 0 : WIRE_TYPE_A;
            int rc =
                cache_insert_negative(w->cache, n->wire, n->len, type, WIRE_CLASS_IN, apex->wire,
                                      apex->len, w->soa, w->soa_len, 60, rank, now);
            w->failures += rc != 0 && rc != BALLAST_EEXIST;
        } else if (op < 98) {
            struct cache_result res;
            int rc = cache_lookup(w->cache, n->wire, n->len, WIRE_TYPE_A, WIRE_CLASS_IN, now, &res,
                                  buf, sizeof buf);
            w->lookups++;
            if (rc < 0)
                w->failures++;
            else if (rc != CACHE_MISS && res.kind == CACHE_KIND_RRSET)
                w->failures += res.rdata_len < 6 ||
                               res.rdata_len != 2u + wire_read_u16(res.rdata) ||
                               wire_read_u32(res.rdata + 2) != index;
            else if (rc != CACHE_MISS)
                w->failures += res.soa_rdlen != w->soa_len ||
                               memcmp(res.soa_rdata, w->soa, w->soa_len) != 0 ||
                               res.soa_owner_len != apex->len;
        } else if (op < 99) {
            w->failures += cache_flush_name(w->cache, n->wire, n->len) != 0;
        } else {
            struct cache_stats stats;
            cache_get_stats(w->cache, &stats);
        }
    }
    return NULL;
}

static void test_cache_concurrent_inserts_and_lookups_stay_consistent(void **state)
{
    const uint64_t budget = 40u << 10; /* holds ~70% of the pool: evictions and expiry */
    struct cache *cache = make_cache(budget, 4, 10000);
    struct worker workers[THREADS];
    pthread_t threads[THREADS];
    uint8_t soa[WIRE_NAME_MAX * 2 + 20];
    size_t soa_len = soa_rdata(soa, 30);
    pool_names[0] = name_of("example.test");
    for (unsigned i = 1; i < POOL; i++) {
        char owner[64];
        snprintf(owner, sizeof owner, "n%u.example.test", i);
        pool_names[i] = name_of(owner);
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (struct worker){.cache = cache,
                                     .seed = 0x9E37u * (unsigned)(i + 1),
                                     .start = start,
                                     .soa = soa,
                                     .soa_len = soa_len};
        assert_int_equal(pthread_create(&threads[i], NULL, worker_run, &workers[i]), 0);
    }
    uint64_t lookups = 0;
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(workers[i].failures, 0);
        lookups += workers[i].lookups;
    }
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_true(lookups > 1000);
    assert_int_equal(stats.hits + stats.stale_hits + stats.misses, lookups);
    assert_true(stats.hits > 0);
    assert_true(stats.stale_hits > 0);
    assert_true(stats.evictions > 0);
    assert_true(stats.bytes <= budget);
    assert_true(stats.inserts >= stats.entries);
    cache_flush_all(cache);
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.entries, 0);
    assert_int_equal(stats.bytes, 0);
    cache_free(cache);
}

/* ---- cache_walk and cache_restore (snapshots) ---- */

#define WALK_MAX 16

struct walk_entry {
    struct name name;
    uint16_t type;
    enum cache_kind kind;
    enum cache_rank rank;
    uint32_t ttl;
    int64_t expires_in_ms;
    uint8_t soa_owner_len;
    size_t data_len;
};

struct walk_seen {
    int calls;
    int stop_after; /* return 42 from this call on; 0: never stop */
    struct walk_entry entries[WALK_MAX];
};

static int walk_collect(void *ctx, const struct cache_record *rec)
{
    struct walk_seen *seen = ctx;
    if (seen->calls < WALK_MAX) {
        struct walk_entry *e = &seen->entries[seen->calls];
        memcpy(e->name.wire, rec->name, rec->name_len);
        e->name.len = rec->name_len;
        e->type = rec->type;
        e->kind = rec->kind;
        e->rank = rec->rank;
        e->ttl = rec->ttl;
        e->expires_in_ms = rec->expires_in_ms;
        e->soa_owner_len = rec->soa_owner_len;
        e->data_len = rec->data_len;
    }
    seen->calls++;
    return seen->stop_after != 0 && seen->calls >= seen->stop_after ? 42 : 0;
}

static const struct walk_entry *walk_find(const struct walk_seen *seen, const char *owner,
                                          uint16_t type)
{
    struct name n = name_of(owner);
    for (int i = 0; i < seen->calls && i < WALK_MAX; i++) {
        const struct walk_entry *e = &seen->entries[i];
        if (e->type == type && e->name.len == n.len && memcmp(e->name.wire, n.wire, n.len) == 0)
            return e;
    }
    return NULL;
}

static void test_cache_walk_sees_fresh_and_stale_but_not_entries_beyond_retention(void **state)
{
    struct cache *cache = make_cache(1u << 20, 4, 5000);
    assert_int_equal(insert_a(cache, "fresh.example.test", 1, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    /* Expired 2 s before T0: stale. Expired 10 s before T0: beyond the 5 s retention. */
    assert_int_equal(
        insert_a(cache, "stale.example.test", 2, 10, CACHE_RANK_ADDITIONAL, T0 - 12000), 0);
    assert_int_equal(
        insert_a(cache, "dead.example.test", 3, 10, CACHE_RANK_ANSWER_AUTH, T0 - 20000), 0);
    assert_int_equal(
        insert_negative(cache, "gone.example.test", 0, 3600, 600, CACHE_RANK_ANSWER_AUTH, T0), 0);

    struct walk_seen seen = {0};
    assert_int_equal(cache_walk(cache, T0, walk_collect, &seen), 0);
    assert_int_equal(seen.calls, 3);

    const struct walk_entry *fresh = walk_find(&seen, "fresh.example.test", WIRE_TYPE_A);
    assert_non_null(fresh);
    assert_int_equal(fresh->kind, CACHE_KIND_RRSET);
    assert_int_equal(fresh->rank, CACHE_RANK_ANSWER_AUTH);
    assert_int_equal(fresh->ttl, 300);
    assert_int_equal(fresh->expires_in_ms, 300000);
    assert_int_equal(fresh->data_len, 6);

    const struct walk_entry *stale = walk_find(&seen, "stale.example.test", WIRE_TYPE_A);
    assert_non_null(stale);
    assert_int_equal(stale->rank, CACHE_RANK_ADDITIONAL);
    assert_int_equal(stale->expires_in_ms, -2000);

    const struct walk_entry *gone = walk_find(&seen, "gone.example.test", 0);
    assert_non_null(gone);
    assert_int_equal(gone->kind, CACHE_KIND_NXDOMAIN);
    assert_int_equal(gone->ttl, 600);
    struct name apex = name_of("example.test");
    uint8_t soa[WIRE_NAME_MAX * 2 + 20];
    assert_int_equal(gone->soa_owner_len, apex.len);
    assert_int_equal(gone->data_len, apex.len + soa_rdata(soa, 600));

    assert_null(walk_find(&seen, "dead.example.test", WIRE_TYPE_A));
    cache_free(cache);
}

static void test_cache_walk_stops_at_first_nonzero_return(void **state)
{
    struct cache *cache = make_cache(1u << 20, 16, 0);
    for (int i = 0; i < 10; i++) {
        char owner[64];
        snprintf(owner, sizeof owner, "host%d.example.test", i);
        assert_int_equal(insert_a(cache, owner, (uint8_t)i, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);
    }
    struct walk_seen all = {0};
    assert_int_equal(cache_walk(cache, T0, walk_collect, &all), 0);
    assert_int_equal(all.calls, 10);

    struct walk_seen first = {.stop_after = 1};
    assert_int_equal(cache_walk(cache, T0, walk_collect, &first), 42);
    assert_int_equal(first.calls, 1);

    struct walk_seen third = {.stop_after = 3};
    assert_int_equal(cache_walk(cache, T0, walk_collect, &third), 42);
    assert_int_equal(third.calls, 3);
    cache_free(cache);
}

/* A one-record A RRset as cache_walk would show it; rr must outlive the record. */
static struct cache_record a_record(const struct name *n, const uint8_t rr[6], uint32_t ttl,
                                    int64_t expires_in_ms, enum cache_rank rank)
{
    struct cache_record rec = {
        .name = n->wire,
        .name_len = n->len,
        .type = WIRE_TYPE_A,
        .rrclass = WIRE_CLASS_IN,
        .kind = CACHE_KIND_RRSET,
        .rank = rank,
        .ttl = ttl,
        .expires_in_ms = expires_in_ms,
        .count = 1,
        .data = rr,
        .data_len = 6,
    };
    return rec;
}

static void test_cache_restore_caps_ttl_and_expiry(void **state)
{
    struct cache_options opts;
    cache_options_init_defaults(&opts);
    opts.max_ttl = 3600;
    opts.max_negative_ttl = 900;
    struct cache *cache;
    assert_int_equal(cache_create(&opts, &cache), 0);
    struct cache_result res;
    uint8_t rr[6];
    rdata_a(rr, 1);

    /* An expiry further away than the TTL (a clock jumped back) is cut to the TTL. */
    struct name a = name_of("a.example.test");
    struct cache_record rec = a_record(&a, rr, 60, 3600000, CACHE_RANK_ANSWER_AUTH);
    assert_int_equal(cache_restore(cache, &rec, T0), 0);
    assert_int_equal(lookup(cache, "a.example.test", WIRE_TYPE_A, T0, &res, NULL, 0), CACHE_FRESH);
    assert_int_equal(res.ttl, 60);
    assert_int_equal(res.original_ttl, 60);

    /* A TTL over this cache's max_ttl (another configuration wrote it) is capped. */
    struct name b = name_of("b.example.test");
    rec = a_record(&b, rr, 100000, 100000000, CACHE_RANK_ANSWER_AUTH);
    assert_int_equal(cache_restore(cache, &rec, T0), 0);
    assert_int_equal(lookup(cache, "b.example.test", WIRE_TYPE_A, T0, &res, NULL, 0), CACHE_FRESH);
    assert_int_equal(res.ttl, 3600);
    assert_int_equal(res.original_ttl, 3600);

    /* Negative entries are capped by max_negative_ttl. */
    struct name gone = name_of("gone.example.test");
    struct name apex = name_of("example.test");
    uint8_t data[WIRE_NAME_MAX * 3 + 20];
    memcpy(data, apex.wire, apex.len);
    size_t data_len = apex.len + soa_rdata(data + apex.len, 3600);
    struct cache_record nx = {
        .name = gone.wire,
        .name_len = gone.len,
        .type = 0,
        .rrclass = WIRE_CLASS_IN,
        .kind = CACHE_KIND_NXDOMAIN,
        .rank = CACHE_RANK_ANSWER_AUTH,
        .ttl = 3600,
        .expires_in_ms = 3600000,
        .data = data,
        .data_len = data_len,
        .soa_owner_len = (uint8_t)apex.len,
    };
    assert_int_equal(cache_restore(cache, &nx, T0), 0);
    assert_int_equal(lookup(cache, "gone.example.test", WIRE_TYPE_MX, T0, &res, NULL, 0),
                     CACHE_FRESH);
    assert_int_equal(res.kind, CACHE_KIND_NXDOMAIN);
    assert_int_equal(res.ttl, 900);
    assert_int_equal(res.original_ttl, 900);
    cache_free(cache);
}

static void test_cache_restore_beyond_retention_returns_not_found(void **state)
{
    struct cache *cache = make_cache(1u << 20, 4, 5000);
    struct cache_result res;
    uint8_t rr[6];
    rdata_a(rr, 1);
    struct name n = name_of("www.example.test");

    struct cache_record rec = a_record(&n, rr, 60, -5000, CACHE_RANK_ANSWER_AUTH);
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_ENOTFOUND);
    rec.expires_in_ms = INT64_MIN; /* from a corrupt or hostile source: must not overflow */
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_ENOTFOUND);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T0, &res, NULL, 0), CACHE_MISS);

    rec.expires_in_ms = -4999;
    assert_int_equal(cache_restore(cache, &rec, T0), 0);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T0, &res, NULL, 0),
                     CACHE_STALE);
    assert_int_equal(res.stale_ms, 4999);
    cache_free(cache);

    /* Without retention an entry expiring right now is already gone, as lookups see it. */
    cache = make_cache(1u << 20, 4, 0);
    rec.expires_in_ms = 0;
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_ENOTFOUND);
    rec.expires_in_ms = 1000;
    assert_int_equal(cache_restore(cache, &rec, T0), 0);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T0, &res, NULL, 0),
                     CACHE_FRESH);
    assert_int_equal(res.ttl, 1);
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.entries, 1);
    cache_free(cache);
}

static void test_cache_restore_stale_never_replaces_fresh(void **state)
{
    struct cache *cache = make_cache(1u << 20, 4, 600000);
    struct cache_result res;
    uint8_t fresh_rr[6], stale_rr[6];
    rdata_a(fresh_rr, 1);
    rdata_a(stale_rr, 2);
    struct name n = name_of("www.example.test");
    assert_int_equal(cache_insert_rrset(cache, n.wire, n.len, WIRE_TYPE_A, WIRE_CLASS_IN, 60,
                                        CACHE_RANK_ADDITIONAL, fresh_rr, sizeof fresh_rr, 1, T0),
                     0);
    /* a stale record of higher rank from a snapshot loses against fresh data */
    struct cache_record rec = a_record(&n, stale_rr, 60, -1000, CACHE_RANK_ANSWER_AUTH);
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EEXIST);
    uint8_t buf[64];
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T0, &res, buf, sizeof buf),
                     CACHE_FRESH);
    assert_memory_equal(res.rdata, fresh_rr, sizeof fresh_rr);
    /* a fresh one of higher rank replaces it as an insert would */
    rec.expires_in_ms = 30000;
    assert_int_equal(cache_restore(cache, &rec, T0), 0);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T0, &res, buf, sizeof buf),
                     CACHE_FRESH);
    assert_memory_equal(res.rdata, stale_rr, sizeof stale_rr);
    cache_free(cache);
}

static void test_cache_restore_before_clock_origin_stays_stale(void **state)
{
    /* after a reboot the monotonic clock is younger than the snapshot's stale entries */
    struct cache *cache = make_cache(1u << 20, 4, 86400000);
    struct cache_result res;
    uint8_t rr[6];
    rdata_a(rr, 1);
    struct name n = name_of("www.example.test");
    struct cache_record rec = a_record(&n, rr, 60, -3600000, CACHE_RANK_ANSWER_AUTH);
    assert_int_equal(cache_restore(cache, &rec, 1000), 0);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, 1000, &res, NULL, 0),
                     CACHE_STALE);
    cache_free(cache);
}

static void test_cache_restore_rejects_malformed_records(void **state)
{
    struct cache *cache = default_cache();
    struct name n = name_of("www.example.test");
    struct name apex = name_of("example.test");
    uint8_t rr[6];
    rdata_a(rr, 1);
    const struct cache_record good = a_record(&n, rr, 60, 60000, CACHE_RANK_ANSWER_AUTH);
    struct cache_record rec;

    rec = good;
    rec.count = 2; /* one record in the data */
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);
    rec = good;
    rec.data_len = 5;
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);
    rec = good;
    rec.rank = 0;
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);
    rec = good;
    rec.rank = CACHE_RANK_ANSWER_AUTH + 1;
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);
    rec = good;
    rec.kind = (enum cache_kind)7;
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);
    rec = good;
    rec.type = 0; /* an RRset of type 0 */
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);
    rec = good;
    rec.name_len = n.len - 1; /* name without its root label */
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);
    rec = good;
    rec.data = NULL;
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);

    uint8_t data[WIRE_NAME_MAX * 3 + 20];
    memcpy(data, apex.wire, apex.len);
    size_t data_len = apex.len + soa_rdata(data + apex.len, 300);
    const struct cache_record negative = {
        .name = n.wire,
        .name_len = n.len,
        .type = WIRE_TYPE_AAAA,
        .rrclass = WIRE_CLASS_IN,
        .kind = CACHE_KIND_NODATA,
        .rank = CACHE_RANK_ANSWER_AUTH,
        .ttl = 300,
        .expires_in_ms = 300000,
        .data = data,
        .data_len = data_len,
        .soa_owner_len = (uint8_t)apex.len,
    };
    rec = negative;
    assert_int_equal(cache_restore(cache, &rec, T0), 0); /* the control: this one is fine */
    rec = negative;
    rec.kind = CACHE_KIND_NXDOMAIN; /* NXDOMAIN with a type */
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);
    rec = negative;
    rec.type = 0; /* NODATA without one */
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);
    rec = negative;
    rec.soa_owner_len = 0;
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);
    rec = negative;
    rec.soa_owner_len = (uint8_t)(apex.len + 1);
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);
    rec = negative;
    rec.data_len = data_len - 1; /* SOA fixed fields one byte short */
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EINVAL);

    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    assert_int_equal(stats.entries, 1);
    cache_free(cache);
}

static void test_cache_restore_respects_rank_of_fresh_entry(void **state)
{
    struct cache *cache = make_cache(1u << 20, 4, 60000);
    struct name n = name_of("ns1.example.test");
    uint8_t rr[6];
    assert_int_equal(insert_a(cache, "ns1.example.test", 1, 300, CACHE_RANK_ANSWER_AUTH, T0), 0);

    rdata_a(rr, 2);
    struct cache_record rec = a_record(&n, rr, 300, 300000, CACHE_RANK_ADDITIONAL);
    assert_int_equal(cache_restore(cache, &rec, T0), BALLAST_EEXIST);
    assert_int_equal(lookup_a_octet(cache, "ns1.example.test", T0), 1);

    rdata_a(rr, 3);
    rec = a_record(&n, rr, 300, 300000, CACHE_RANK_ANSWER_AUTH);
    assert_int_equal(cache_restore(cache, &rec, T0), 0);
    assert_int_equal(lookup_a_octet(cache, "ns1.example.test", T0), 3);

    /* Once the existing entry has expired, lower-ranked data may replace it. */
    rdata_a(rr, 4);
    rec = a_record(&n, rr, 300, 300000, CACHE_RANK_ADDITIONAL);
    assert_int_equal(cache_restore(cache, &rec, T0 + 300000), 0);
    assert_int_equal(lookup_a_octet(cache, "ns1.example.test", T0 + 300000), 4);
    cache_free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_hit_returns_data_with_ttl_counting_down),
        cmocka_unit_test(test_cache_expired_entry_misses_without_retention),
        cmocka_unit_test(test_cache_expired_entry_is_stale_within_retention),
        cmocka_unit_test(test_cache_clamps_ttl_to_min_and_max),
        cmocka_unit_test(test_cache_negative_ttl_is_min_of_soa_ttl_and_minimum),
        cmocka_unit_test(test_cache_negative_ttl_capped_by_max_negative_ttl_and_not_raised),
        cmocka_unit_test(test_cache_glue_does_not_replace_authoritative_answer),
        cmocka_unit_test(test_cache_answer_replaces_glue_and_equal_rank_replaces),
        cmocka_unit_test(test_cache_lower_rank_replaces_expired_entry),
        cmocka_unit_test(test_cache_nxdomain_answers_every_type_at_the_name),
        cmocka_unit_test(test_cache_nodata_answers_only_its_type),
        cmocka_unit_test(test_cache_data_at_name_clears_its_nxdomain),
        cmocka_unit_test(test_cache_fresh_authoritative_nxdomain_outranks_glue_at_the_name),
        cmocka_unit_test(test_cache_evicts_least_recently_used_within_byte_budget),
        cmocka_unit_test(test_cache_refuses_entry_larger_than_shard_budget),
        cmocka_unit_test(test_cache_flush_name_removes_every_type_only_at_that_name),
        cmocka_unit_test(test_cache_flush_below_removes_zone_and_everything_under_it),
        cmocka_unit_test(test_cache_flush_all_empties_cache_and_keeps_counters),
        cmocka_unit_test(test_cache_stats_count_hits_stale_hits_misses_and_inserts),
        cmocka_unit_test(test_cache_lookup_copies_into_caller_buffer),
        cmocka_unit_test(test_cache_rejects_malformed_input_and_options),
        cmocka_unit_test(test_cache_concurrent_inserts_and_lookups_stay_consistent),
        cmocka_unit_test(test_cache_walk_sees_fresh_and_stale_but_not_entries_beyond_retention),
        cmocka_unit_test(test_cache_walk_stops_at_first_nonzero_return),
        cmocka_unit_test(test_cache_restore_caps_ttl_and_expiry),
        cmocka_unit_test(test_cache_restore_beyond_retention_returns_not_found),
        cmocka_unit_test(test_cache_restore_rejects_malformed_records),
        cmocka_unit_test(test_cache_restore_stale_never_replaces_fresh),
        cmocka_unit_test(test_cache_restore_before_clock_origin_stays_stale),
        cmocka_unit_test(test_cache_restore_respects_rank_of_fresh_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
