/* Unit tests for resolver/snapshot.c: cache snapshots survive a write and a load into a new cache
 * (kinds, TTLs, staleness, wall-clock shift), every kind of damage is refused with nothing loaded,
 * and writes replace the file atomically with mode 0600. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "errors.h"
#include "snapshot.h"
#include "wire.h"

#define T0 10000000u            /* the writing process's cache clock, ms */
#define T1 50000000u            /* the loading process's cache clock: unrelated to T0 */
#define W0 1700000000000ull     /* CLOCK_REALTIME at the write, ms */
#define RETENTION_MS 60000u     /* stale retention of the caches below */
#define MAX_BYTES (1u << 20)    /* snapshot-max-size for the tests */
#define RECORD_FIXED_LEN 26u    /* a record's bytes besides its name and data */
#define COUNT_OFFSET 24u        /* of the header's record count */
#define FIRST_RECORD_OFFSET 32u /* just past the header */

struct fixture {
    char dir[64];
    char path[128]; /* dir/cache.snap: the snapshot under test */
};

struct name {
    uint8_t wire[WIRE_NAME_MAX];
    size_t len;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    strcpy(fx->dir, "/tmp/ballast-snapshot-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof fx->path, "%s/cache.snap", fx->dir);
    *state = fx;
    return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    chmod(fx->dir, 0700);
    nftw(fx->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static struct name name_of(const char *text)
{
    struct name n;
    assert_int_equal(wire_name_from_text(text, n.wire, &n.len), 0);
    return n;
}

/* One A record: [0,4][192.0.2.last_octet]. */
static void rdata_a(uint8_t out[6], uint8_t last_octet)
{
    const uint8_t rr[6] = {0, 4, 192, 0, 2, last_octet};
    memcpy(out, rr, sizeof rr);
}

/* SOA RDATA: ns.example.test. hostmaster.example.test. 1 7200 900 604800 minimum */
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

static struct cache *make_cache(uint32_t shards)
{
    struct cache_options opts;
    cache_options_init_defaults(&opts);
    opts.max_bytes = 1u << 20;
    opts.shards = shards;
    opts.stale_retention_ms = RETENTION_MS;
    struct cache *cache = NULL;
    assert_int_equal(cache_create(&opts, &cache), 0);
    return cache;
}

static void insert_a(struct cache *cache, const char *owner, uint8_t octet, uint32_t ttl,
                     enum cache_rank rank, uint64_t now_ms)
{
    struct name n = name_of(owner);
    uint8_t rr[6];
    rdata_a(rr, octet);
    assert_int_equal(cache_insert_rrset(cache, n.wire, n.len, WIRE_TYPE_A, WIRE_CLASS_IN, ttl, rank,
                                        rr, sizeof rr, 1, now_ms),
                     0);
}

static void insert_negative(struct cache *cache, const char *owner, uint16_t type, uint32_t minimum,
                            uint64_t now_ms)
{
    struct name n = name_of(owner);
    struct name apex = name_of("Example.TEST");
    uint8_t soa[WIRE_NAME_MAX * 2 + 20];
    size_t soa_len = soa_rdata(soa, minimum);
    assert_int_equal(cache_insert_negative(cache, n.wire, n.len, type, WIRE_CLASS_IN, apex.wire,
                                           apex.len, soa, soa_len, 3600, CACHE_RANK_ANSWER_AUTH,
                                           now_ms),
                     0);
}

static int lookup(struct cache *cache, const char *owner, uint16_t type, uint64_t now_ms,
                  struct cache_result *res, uint8_t *buf)
{
    struct name n = name_of(owner);
    return cache_lookup(cache, n.wire, n.len, type, WIRE_CLASS_IN, now_ms, res, buf,
                        CACHE_LOOKUP_BUF_MAX);
}

static uint64_t cache_entries(struct cache *cache)
{
    struct cache_stats stats;
    cache_get_stats(cache, &stats);
    return stats.entries;
}

static uint8_t *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static void write_whole(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len > 0)
        assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Recompute the checksum after an edit, so that the edit itself is what gets checked. */
static void reseal(uint8_t *buf, size_t len)
{
    size_t end = len - SNAPSHOT_CHECKSUM_LEN;
    crypto_generichash(buf + end, SNAPSHOT_CHECKSUM_LEN, buf, end, NULL, 0);
}

/* Write cache to fx->path at T0/W0 and return the file's bytes. */
static uint8_t *snapshot_bytes(const struct fixture *fx, struct cache *cache, size_t *len)
{
    char err[256] = "";
    assert_int_equal(snapshot_write(cache, fx->path, T0, W0, NULL, err, sizeof err), 0);
    return read_whole(fx->path, len);
}

/* A small snapshot of two entries in one shard, in walk order (most recent first):
 * record 1 "www.example.test" A, record 2 the NXDOMAIN of "gone.example.test". */
static uint8_t *small_snapshot(const struct fixture *fx, size_t *len)
{
    struct cache *cache = make_cache(1);
    insert_negative(cache, "gone.example.test", 0, 600, T0);
    insert_a(cache, "www.example.test", 7, 300, CACHE_RANK_ANSWER_AUTH, T0);
    uint8_t *buf = snapshot_bytes(fx, cache, len);
    cache_free(cache);
    return buf;
}

struct counter {
    int calls;
    int fail_at; /* return BALLAST_ENOMEM on this call; 0: never */
};

static int count_record(void *ctx, const struct cache_record *rec)
{
    struct counter *counter = ctx;
    counter->calls++;
    return counter->calls == counter->fail_at ? BALLAST_ENOMEM : 0;
}

/* Parse buf: the return code, with err filled; fails the test if any record was handed out
 * from a snapshot that was refused. */
static int parse_checked(const uint8_t *buf, size_t len, char *err, size_t err_len)
{
    struct counter counter = {0};
    int rc = snapshot_parse(buf, len, MAX_BYTES, W0, count_record, &counter, err, err_len);
    if (rc != 0)
        assert_int_equal(counter.calls, 0);
    return rc;
}

/* Load buf from a file into an empty cache: the return code; nothing may be loaded on error. */
static int load_checked(const struct fixture *fx, const uint8_t *buf, size_t len, char *err,
                        size_t err_len)
{
    write_whole(fx->path, buf, len);
    struct cache *cache = make_cache(4);
    struct snapshot_stats stats;
    int rc = snapshot_load(cache, fx->path, MAX_BYTES, T1, W0, &stats, err, err_len);
    if (rc != 0) {
        assert_int_equal(cache_entries(cache), 0);
        assert_int_equal(stats.entries, 0);
    }
    cache_free(cache);
    return rc;
}

static void test_snapshot_round_trip_keeps_kind_ttl_rank_and_staleness(void **state)
{
    struct fixture *fx = *state;
    struct cache *cache = make_cache(4);
    insert_a(cache, "www.example.test", 7, 300, CACHE_RANK_ANSWER_AUTH, T0);
    insert_a(cache, "old.example.test", 8, 10, CACHE_RANK_ADDITIONAL, T0 - 20000);
    insert_negative(cache, "www.example.test", WIRE_TYPE_AAAA, 120, T0);
    insert_negative(cache, "gone.example.test", 0, 60, T0);

    struct snapshot_stats written;
    char err[256] = "";
    assert_int_equal(snapshot_write(cache, fx->path, T0 + 5000, W0, &written, err, sizeof err), 0);
    assert_int_equal(written.entries, 4);
    assert_int_equal(written.skipped, 0);
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(written.bytes, (uint64_t)st.st_size);
    cache_free(cache);

    /* Another process: another cache clock, the same wall clock. */
    cache = make_cache(8);
    struct snapshot_stats loaded;
    assert_int_equal(snapshot_load(cache, fx->path, MAX_BYTES, T1, W0, &loaded, err, sizeof err),
                     0);
    assert_int_equal(loaded.entries, 4);
    assert_int_equal(loaded.skipped, 0);
    assert_int_equal(loaded.bytes, (uint64_t)st.st_size);
    assert_int_equal(cache_entries(cache), 4);

    struct cache_result res;
    uint8_t buf[CACHE_LOOKUP_BUF_MAX];
    uint8_t expected[6];
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T1, &res, buf), CACHE_FRESH);
    assert_int_equal(res.kind, CACHE_KIND_RRSET);
    assert_int_equal(res.rank, CACHE_RANK_ANSWER_AUTH);
    assert_int_equal(res.ttl, 295);
    assert_int_equal(res.original_ttl, 300);
    assert_int_equal(res.count, 1);
    rdata_a(expected, 7);
    assert_int_equal(res.rdata_len, sizeof expected);
    assert_memory_equal(res.rdata, expected, sizeof expected);

    /* Expired 10 s before T0, written 5 s after T0: stale for 15 s, and still stale. */
    assert_int_equal(lookup(cache, "old.example.test", WIRE_TYPE_A, T1, &res, buf), CACHE_STALE);
    assert_int_equal(res.stale_ms, 15000);
    assert_int_equal(res.original_ttl, 10);
    assert_int_equal(res.rank, CACHE_RANK_ADDITIONAL);
    rdata_a(expected, 8);
    assert_memory_equal(res.rdata, expected, sizeof expected);

    struct name apex = name_of("example.test");
    uint8_t soa[WIRE_NAME_MAX * 2 + 20];
    size_t soa_len = soa_rdata(soa, 120);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_AAAA, T1, &res, buf), CACHE_FRESH);
    assert_int_equal(res.kind, CACHE_KIND_NODATA);
    assert_int_equal(res.ttl, 115);
    assert_int_equal(res.soa_owner_len, apex.len);
    assert_memory_equal(res.soa_owner, apex.wire, apex.len);
    assert_int_equal(res.soa_rdlen, soa_len);
    assert_memory_equal(res.soa_rdata, soa, soa_len);

    soa_len = soa_rdata(soa, 60);
    assert_int_equal(lookup(cache, "gone.example.test", WIRE_TYPE_MX, T1, &res, buf), CACHE_FRESH);
    assert_int_equal(res.kind, CACHE_KIND_NXDOMAIN);
    assert_int_equal(res.ttl, 55);
    assert_int_equal(res.soa_rdlen, soa_len);
    assert_memory_equal(res.soa_rdata, soa, soa_len);
    cache_free(cache);
}

/* Load fx->path into a new cache at wall time `wall`; returns the cache. */
static struct cache *load_at(const struct fixture *fx, uint64_t wall, struct snapshot_stats *stats)
{
    struct cache *cache = make_cache(4);
    char err[256] = "";
    assert_int_equal(snapshot_load(cache, fx->path, MAX_BYTES, T1, wall, stats, err, sizeof err),
                     0);
    return cache;
}

static void test_snapshot_load_shifts_expiry_by_elapsed_wall_time(void **state)
{
    struct fixture *fx = *state;
    struct cache *cache = make_cache(4);
    insert_a(cache, "www.example.test", 7, 300, CACHE_RANK_ANSWER_AUTH, T0);
    size_t len;
    free(snapshot_bytes(fx, cache, &len));
    cache_free(cache);
    struct cache_result res;
    uint8_t buf[CACHE_LOOKUP_BUF_MAX];
    struct snapshot_stats stats;

    /* Down for 10 s: 10 s less of the TTL remain. */
    cache = load_at(fx, W0 + 10000, &stats);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T1, &res, buf), CACHE_FRESH);
    assert_int_equal(res.ttl, 290);
    cache_free(cache);

    /* Down past the TTL: stale, for as long as it has been expired. */
    cache = load_at(fx, W0 + 301000, &stats);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T1, &res, buf), CACHE_STALE);
    assert_int_equal(res.stale_ms, 1000);
    cache_free(cache);

    /* Down past the TTL and the stale retention: skipped, not stored. */
    cache = load_at(fx, W0 + 300000 + RETENTION_MS, &stats);
    assert_int_equal(stats.entries, 0);
    assert_int_equal(stats.skipped, 1);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T1, &res, buf), CACHE_MISS);
    cache_free(cache);

    /* A wall clock that went backwards cannot stretch an entry past its TTL. */
    cache = load_at(fx, W0 - 100000, &stats);
    assert_int_equal(lookup(cache, "www.example.test", WIRE_TYPE_A, T1, &res, buf), CACHE_FRESH);
    assert_int_equal(res.ttl, 300);
    cache_free(cache);
}

static void test_snapshot_load_skips_entries_the_cache_refuses_by_rank(void **state)
{
    struct fixture *fx = *state;
    struct cache *cache = make_cache(4);
    insert_a(cache, "ns1.example.test", 1, 300, CACHE_RANK_ADDITIONAL, T0);
    insert_a(cache, "ns2.example.test", 2, 300, CACHE_RANK_ADDITIONAL, T0);
    size_t len;
    free(snapshot_bytes(fx, cache, &len));
    cache_free(cache);

    cache = make_cache(4);
    insert_a(cache, "ns1.example.test", 9, 300, CACHE_RANK_ANSWER_AUTH, T1);
    struct snapshot_stats stats;
    char err[256] = "";
    assert_int_equal(snapshot_load(cache, fx->path, MAX_BYTES, T1, W0, &stats, err, sizeof err), 0);
    assert_int_equal(stats.entries, 1);
    assert_int_equal(stats.skipped, 1);
    struct cache_result res;
    uint8_t buf[CACHE_LOOKUP_BUF_MAX];
    assert_int_equal(lookup(cache, "ns1.example.test", WIRE_TYPE_A, T1, &res, buf), CACHE_FRESH);
    assert_int_equal(res.rdata[5], 9);
    assert_int_equal(lookup(cache, "ns2.example.test", WIRE_TYPE_A, T1, &res, buf), CACHE_FRESH);
    assert_int_equal(res.rdata[5], 2);
    cache_free(cache);
}

static void test_snapshot_empty_cache_round_trips(void **state)
{
    struct fixture *fx = *state;
    struct cache *cache = make_cache(4);
    struct snapshot_stats stats;
    char err[256] = "";
    assert_int_equal(snapshot_write(cache, fx->path, T0, W0, &stats, err, sizeof err), 0);
    assert_int_equal(stats.entries, 0);
    assert_int_equal(stats.bytes, SNAPSHOT_HEADER_LEN + SNAPSHOT_CHECKSUM_LEN);
    assert_int_equal(snapshot_load(cache, fx->path, MAX_BYTES, T1, W0, &stats, err, sizeof err), 0);
    assert_int_equal(stats.entries, 0);
    assert_int_equal(stats.bytes, SNAPSHOT_HEADER_LEN + SNAPSHOT_CHECKSUM_LEN);
    cache_free(cache);
}

static void test_snapshot_every_truncation_is_rejected_and_loads_nothing(void **state)
{
    struct fixture *fx = *state;
    size_t len;
    uint8_t *buf = small_snapshot(fx, &len);
    char err[256];
    assert_int_equal(parse_checked(buf, len, err, sizeof err), 0);
    for (size_t cut = 0; cut < len; cut++) {
        err[0] = '\0';
        assert_int_equal(parse_checked(buf, cut, err, sizeof err), BALLAST_EPARSE);
        assert_non_null(strstr(err, "truncated at byte"));
        assert_int_equal(load_checked(fx, buf, cut, err, sizeof err), BALLAST_EPARSE);
        assert_non_null(strstr(err, fx->path));
    }
    /* The byte offset is where the file ends. */
    assert_int_equal(parse_checked(buf, 40, err, sizeof err), BALLAST_EPARSE);
    assert_non_null(strstr(err, "truncated at byte 40 (in record 1 of 2)"));
    free(buf);
}

static void test_snapshot_any_flipped_byte_is_rejected(void **state)
{
    struct fixture *fx = *state;
    size_t len;
    uint8_t *buf = small_snapshot(fx, &len);
    const uint8_t masks[] = {0x01, 0x10, 0x80};
    char err[256];
    for (size_t at = 0; at < len; at++) {
        for (size_t m = 0; m < sizeof masks; m++) {
            buf[at] ^= masks[m];
            assert_int_equal(parse_checked(buf, len, err, sizeof err), BALLAST_EPARSE);
            buf[at] ^= masks[m];
        }
    }
    /* A flip in the data of a record that stays well formed is the checksum's to catch. */
    buf[len - SNAPSHOT_CHECKSUM_LEN - 1] ^= 0x01;
    assert_int_equal(load_checked(fx, buf, len, err, sizeof err), BALLAST_EPARSE);
    assert_non_null(strstr(err, "checksum mismatch"));
    free(buf);
}

static void test_snapshot_wrong_version_is_rejected_naming_both_versions(void **state)
{
    struct fixture *fx = *state;
    size_t len;
    uint8_t *buf = small_snapshot(fx, &len);
    wire_write_u32(buf + SNAPSHOT_MAGIC_LEN, 7);
    reseal(buf, len);
    char err[256];
    assert_int_equal(load_checked(fx, buf, len, err, sizeof err), BALLAST_EPARSE);
    assert_non_null(strstr(err, "wrong version 7 (this build reads 1)"));
    assert_non_null(strstr(err, fx->path));
    free(buf);
}

static void test_snapshot_wrong_magic_is_rejected(void **state)
{
    struct fixture *fx = *state;
    size_t len;
    uint8_t *buf = small_snapshot(fx, &len);
    memcpy(buf, "UNBOUNDC", SNAPSHOT_MAGIC_LEN);
    reseal(buf, len);
    char err[256];
    assert_int_equal(load_checked(fx, buf, len, err, sizeof err), BALLAST_EPARSE);
    assert_non_null(strstr(err, "bad magic"));
    /* Even a file too short for a header is named as not a snapshot. */
    assert_int_equal(parse_checked((const uint8_t *)"hello", 5, err, sizeof err), BALLAST_EPARSE);
    assert_non_null(strstr(err, "bad magic"));
    free(buf);
}

static void test_snapshot_unknown_flags_are_rejected(void **state)
{
    struct fixture *fx = *state;
    size_t len;
    uint8_t *buf = small_snapshot(fx, &len);
    wire_write_u32(buf + SNAPSHOT_MAGIC_LEN + 4, 1);
    reseal(buf, len);
    char err[256];
    assert_int_equal(parse_checked(buf, len, err, sizeof err), BALLAST_EPARSE);
    assert_non_null(strstr(err, "unknown flags"));
    free(buf);
}

static void test_snapshot_larger_than_max_size_is_refused_before_reading(void **state)
{
    struct fixture *fx = *state;
    size_t len;
    uint8_t *buf = small_snapshot(fx, &len);
    char err[256];
    struct counter counter = {0};
    assert_int_equal(snapshot_parse(buf, len, len, W0, count_record, &counter, err, sizeof err), 0);
    assert_int_equal(counter.calls, 2);
    counter.calls = 0;
    assert_int_equal(snapshot_parse(buf, len, len - 1, W0, count_record, &counter, err, sizeof err),
                     BALLAST_ELIMIT);
    assert_int_equal(counter.calls, 0);
    char expected[64];
    snprintf(expected, sizeof expected, "larger than snapshot-max-size (%zu bytes)", len - 1);
    assert_non_null(strstr(err, expected));

    struct cache *cache = make_cache(4);
    struct snapshot_stats stats;
    assert_int_equal(snapshot_load(cache, fx->path, len - 1, T1, W0, &stats, err, sizeof err),
                     BALLAST_ELIMIT);
    assert_non_null(strstr(err, expected));
    assert_int_equal(cache_entries(cache), 0);

    /* A sparse 1 TiB file: reading it (or allocating for it) would fail differently or never
     * finish, so ELIMIT shows the size was checked first. */
    int fd = open(fx->path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)1 << 40), 0);
    close(fd);
    assert_int_equal(snapshot_load(cache, fx->path, MAX_BYTES, T1, W0, &stats, err, sizeof err),
                     BALLAST_ELIMIT);
    assert_non_null(strstr(err, "larger than snapshot-max-size (1048576 bytes)"));
    assert_int_equal(cache_entries(cache), 0);
    cache_free(cache);
    free(buf);
}

static void test_snapshot_trailing_bytes_are_rejected(void **state)
{
    struct fixture *fx = *state;
    size_t len;
    uint8_t *buf = small_snapshot(fx, &len);
    uint8_t *longer = calloc(1, len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    char err[256];
    assert_int_equal(load_checked(fx, longer, len + 1, err, sizeof err), BALLAST_EPARSE);
    assert_non_null(strstr(err, "1 trailing bytes after the checksum"));
    free(longer);
    free(buf);
}

static void test_snapshot_record_count_must_match_header(void **state)
{
    struct fixture *fx = *state;
    size_t len;
    uint8_t *buf = small_snapshot(fx, &len);
    char err[256];
    /* One record fewer: the second record is left over before the checksum. */
    wire_write_u32(buf + COUNT_OFFSET + 4, 1);
    reseal(buf, len);
    assert_int_equal(load_checked(fx, buf, len, err, sizeof err), BALLAST_EPARSE);
    assert_non_null(strstr(err, "trailing bytes"));
    /* One record more: the checksum is not a record. */
    wire_write_u32(buf + COUNT_OFFSET + 4, 3);
    reseal(buf, len);
    assert_int_equal(load_checked(fx, buf, len, err, sizeof err), BALLAST_EPARSE);
    /* A count near 2^64 ends at the end of the buffer, not in a long loop. */
    memset(buf + COUNT_OFFSET, 0xff, 8);
    reseal(buf, len);
    assert_int_equal(load_checked(fx, buf, len, err, sizeof err), BALLAST_EPARSE);
    free(buf);
}

/* Change one field of a well-formed snapshot, reseal it, and expect this reason. */
static void expect_refused(const struct fixture *fx, const uint8_t *good, size_t len, size_t at,
                           const uint8_t *bytes, size_t n, const char *reason)
{
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    memcpy(buf, good, len);
    memcpy(buf + at, bytes, n);
    reseal(buf, len);
    char err[256] = "";
    assert_int_equal(load_checked(fx, buf, len, err, sizeof err), BALLAST_EPARSE);
    if (strstr(err, reason) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", reason, err);
    free(buf);
}

static void test_snapshot_malformed_record_with_valid_checksum_loads_nothing(void **state)
{
    struct fixture *fx = *state;
    size_t len;
    uint8_t *good = small_snapshot(fx, &len);
    char err[256];
    assert_int_equal(load_checked(fx, good, len, err, sizeof err), 0);

    /* Record 1: www.example.test A, at byte 32; its fixed fields follow the name. */
    struct name www = name_of("www.example.test");
    size_t fixed = FIRST_RECORD_OFFSET + 1 + www.len;
    const uint8_t zero2[2] = {0, 0}, two[2] = {0, 2}, rank9 = 9, kind4 = 4, one = 1, label63 = 63;
    const uint8_t huge[4] = {0, 1, 0x11, 0x70}; /* 70000 */
    expect_refused(fx, good, len, fixed + 5, &rank9, 1, "record 1 at byte 32: rank out of range");
    expect_refused(fx, good, len, fixed + 4, &kind4, 1, "record 1 at byte 32: unknown kind");
    expect_refused(fx, good, len, fixed + 0, zero2, 2, "RRset of type 0");
    expect_refused(fx, good, len, fixed + 18, two, 2, "malformed RDATA");
    expect_refused(fx, good, len, fixed + 20, &one, 1, "SOA owner length in an RRset");
    expect_refused(fx, good, len, fixed + 21, huge, 4, "data length 70000 over 65790");
    expect_refused(fx, good, len, FIRST_RECORD_OFFSET + 1, &label63, 1, "malformed owner name");

    /* Record 2 (NXDOMAIN): record 1 is valid but must not be loaded either. */
    size_t second = fixed + RECORD_FIXED_LEN - 1 + 6;
    struct name gone = name_of("gone.example.test");
    size_t second_fixed = second + 1 + gone.len;
    const uint8_t type_a[2] = {0, 1}, count1[2] = {0, 1}, no_owner = 0;
    expect_refused(fx, good, len, second_fixed + 0, type_a, 2, "NXDOMAIN entry with a type");
    expect_refused(fx, good, len, second_fixed + 18, count1, 2, "record count in a negative");
    expect_refused(fx, good, len, second_fixed + 20, &no_owner, 1, "malformed SOA owner name");
    expect_refused(fx, good, len, second_fixed + 4, (const uint8_t[]){CACHE_KIND_NODATA}, 1,
                   "type 0 in a NODATA entry");
    /* The SOA MNAME's first label claims more bytes than there are. */
    struct name apex = name_of("example.test");
    expect_refused(fx, good, len, second_fixed + RECORD_FIXED_LEN - 1 + apex.len, &label63, 1,
                   "malformed SOA RDATA");
    free(good);
}

static void test_snapshot_parse_stops_at_record_callback_error(void **state)
{
    struct fixture *fx = *state;
    size_t len;
    uint8_t *buf = small_snapshot(fx, &len);
    struct counter counter = {.fail_at = 1};
    char err[256] = "";
    assert_int_equal(
        snapshot_parse(buf, len, MAX_BYTES, W0, count_record, &counter, err, sizeof err),
        BALLAST_ENOMEM);
    assert_int_equal(counter.calls, 1);
    assert_non_null(strstr(err, "record 1"));
    free(buf);
}

static void test_snapshot_missing_file_is_not_found(void **state)
{
    struct fixture *fx = *state;
    struct cache *cache = make_cache(4);
    char err[256] = "";
    struct snapshot_stats stats;
    assert_int_equal(snapshot_load(cache, fx->path, MAX_BYTES, T1, W0, &stats, err, sizeof err),
                     BALLAST_ENOTFOUND);
    assert_non_null(strstr(err, fx->path));
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(stats.entries, 0);
    cache_free(cache);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The snapshot at fx->path still has exactly these bytes, and no temporary is left. */
static void assert_old_snapshot_intact(const struct fixture *fx, const uint8_t *old, size_t len)
{
    size_t now_len;
    uint8_t *now = read_whole(fx->path, &now_len);
    assert_int_equal(now_len, len);
    assert_memory_equal(now, old, len);
    free(now);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", fx->path);
    assert_false(exists(tmp));
}

static void test_snapshot_failed_write_keeps_old_file_and_removes_temporary(void **state)
{
    struct fixture *fx = *state;
    size_t old_len;
    uint8_t *old = small_snapshot(fx, &old_len);
    struct cache *cache = make_cache(4);
    for (int i = 0; i < 50; i++) {
        char owner[64];
        snprintf(owner, sizeof owner, "host%d.example.test", i);
        insert_a(cache, owner, (uint8_t)i, 300, CACHE_RANK_ANSWER_AUTH, T0);
    }
    char err[256] = "";
    char path[200];

    /* A path in a missing directory. */
    snprintf(path, sizeof path, "%s/missing/cache.snap", fx->dir);
    assert_int_equal(snapshot_write(cache, path, T0, W0, NULL, err, sizeof err), BALLAST_EIO);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file"));

    /* The write itself fails half way (file size limit): the partial temporary goes. */
    struct rlimit saved;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    struct rlimit small = {.rlim_cur = old_len + 100, .rlim_max = saved.rlim_max};
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    int rc = snapshot_write(cache, fx->path, T0, W0, NULL, err, sizeof err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(rc, BALLAST_EIO);
    assert_non_null(strstr(err, "write of"));
    assert_old_snapshot_intact(fx, old, old_len);

    /* The temporary name is taken by a directory: nothing is written, nothing removed. */
    snprintf(path, sizeof path, "%s.tmp", fx->path);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(snapshot_write(cache, fx->path, T0, W0, NULL, err, sizeof err), BALLAST_EIO);
    assert_true(exists(path));
    assert_int_equal(rmdir(path), 0);
    assert_old_snapshot_intact(fx, old, old_len);

    /* The rename fails (the target is a non-empty directory): the temporary goes. */
    snprintf(path, sizeof path, "%s/busy", fx->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    char inside[240];
    snprintf(inside, sizeof inside, "%s/file", path);
    write_whole(inside, (const uint8_t *)"x", 1);
    assert_int_equal(snapshot_write(cache, path, T0, W0, NULL, err, sizeof err), BALLAST_EIO);
    assert_non_null(strstr(err, "rename"));
    snprintf(inside, sizeof inside, "%s.tmp", path);
    assert_false(exists(inside));

    /* A directory we may not write to (root may write anywhere, so only as another user). */
    if (geteuid() != 0) {
        assert_int_equal(chmod(fx->dir, 0500), 0);
        rc = snapshot_write(cache, fx->path, T0, W0, NULL, err, sizeof err);
        assert_int_equal(chmod(fx->dir, 0700), 0);
        assert_int_equal(rc, BALLAST_EIO);
        assert_old_snapshot_intact(fx, old, old_len);
    }

    /* And a write that works replaces the file. */
    struct snapshot_stats stats;
    assert_int_equal(snapshot_write(cache, fx->path, T0, W0, &stats, err, sizeof err), 0);
    assert_int_equal(stats.entries, 50);
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, stats.bytes);
    cache_free(cache);
    free(old);
}

static void test_snapshot_file_mode_is_0600(void **state)
{
    struct fixture *fx = *state;
    struct cache *cache = make_cache(4);
    insert_a(cache, "www.example.test", 7, 300, CACHE_RANK_ANSWER_AUTH, T0);
    /* A leftover world-readable temporary and a permissive umask change nothing. */
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", fx->path);
    int fd = open(tmp, O_WRONLY | O_CREAT, 0666);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, 0666), 0);
    close(fd);
    mode_t old_umask = umask(0);
    char err[256] = "";
    int rc = snapshot_write(cache, fx->path, T0, W0, NULL, err, sizeof err);
    umask(old_umask);
    assert_int_equal(rc, 0);
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_false(exists(tmp));
    cache_free(cache);
}

#define SNAPSHOT_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SNAPSHOT_TEST(test_snapshot_round_trip_keeps_kind_ttl_rank_and_staleness),
        SNAPSHOT_TEST(test_snapshot_load_shifts_expiry_by_elapsed_wall_time),
        SNAPSHOT_TEST(test_snapshot_load_skips_entries_the_cache_refuses_by_rank),
        SNAPSHOT_TEST(test_snapshot_empty_cache_round_trips),
        SNAPSHOT_TEST(test_snapshot_every_truncation_is_rejected_and_loads_nothing),
        SNAPSHOT_TEST(test_snapshot_any_flipped_byte_is_rejected),
        SNAPSHOT_TEST(test_snapshot_wrong_version_is_rejected_naming_both_versions),
        SNAPSHOT_TEST(test_snapshot_wrong_magic_is_rejected),
        SNAPSHOT_TEST(test_snapshot_unknown_flags_are_rejected),
        SNAPSHOT_TEST(test_snapshot_larger_than_max_size_is_refused_before_reading),
        SNAPSHOT_TEST(test_snapshot_trailing_bytes_are_rejected),
        SNAPSHOT_TEST(test_snapshot_record_count_must_match_header),
        SNAPSHOT_TEST(test_snapshot_malformed_record_with_valid_checksum_loads_nothing),
        SNAPSHOT_TEST(test_snapshot_parse_stops_at_record_callback_error),
        SNAPSHOT_TEST(test_snapshot_missing_file_is_not_found),
        SNAPSHOT_TEST(test_snapshot_failed_write_keeps_old_file_and_removes_temporary),
        SNAPSHOT_TEST(test_snapshot_file_mode_is_0600),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
