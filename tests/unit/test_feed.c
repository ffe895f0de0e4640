/* Unit tests for authd/feed.c: health feed parsing with a reason for every bad input, the
 * generation/age/skew/empty checks, and Ed25519 detached signatures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "errors.h"
#include "feed.h"

#define DATA "tests/unit/data/feed/"
#define NOW 1763900000u

/* Read a whole test data file; *len excludes the terminating NUL added for convenience. */
static char *read_data(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, DATA "%s", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

static void load_key(const char *name, uint8_t key[32])
{
    char *text = read_data(name, NULL);
    assert_int_equal(feed_public_key_parse(text, key), 0);
    free(text);
}

/* Sign with the test key in key.seed, as the external prober would. */
static void sign_with_test_key(const void *payload, size_t len, char *b64, size_t b64_len)
{
    uint8_t seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES],
        sk[crypto_sign_SECRETKEYBYTES], sig[crypto_sign_BYTES];
    size_t seed_len;
    char *text = read_data("key.seed", NULL);
    assert_int_equal(sodium_base642bin(seed, sizeof seed, text, strlen(text), " \n", &seed_len,
                                       NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    free(text);
    assert_int_equal(seed_len, sizeof seed);
    assert_int_equal(crypto_sign_seed_keypair(pk, sk, seed), 0);
    assert_int_equal(crypto_sign_detached(sig, NULL, payload, len, sk), 0);
    sodium_bin2base64(b64, b64_len, sig, sizeof sig, sodium_base64_VARIANT_ORIGINAL);
}

static int parse_text(const char *text, const struct feed_limits *limits, struct feed_doc *doc,
                      char *reason)
{
    reason[0] = '\0';
    return feed_parse(text, strlen(text), limits, doc, reason, FEED_REASON_MAX);
}

/* A bad document is refused with exactly this code and reason, and leaves doc empty. */
static void expect_rejected(const char *text, int code, const char *want)
{
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    assert_int_equal(parse_text(text, NULL, &doc, reason), code);
    assert_string_equal(reason, want);
    assert_null(doc.entries);
    assert_int_equal(doc.count, 0);
}

/* A one-member document with the member object given, for member-level errors. */
static void expect_member_rejected(const char *member_json, const char *want)
{
    char text[1024];
    snprintf(text, sizeof text, "{\"generation\": 1, \"timestamp\": %u, \"members\": [%s]}", NOW,
             member_json);
    expect_rejected(text, BALLAST_EPARSE, want);
}

/* n distinct members: "m-<i>" in api.example.test/A, all up. */
static char *make_feed(size_t n, uint64_t generation, uint64_t timestamp)
{
    size_t cap = 128 + n * 80;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t off = (size_t)snprintf(text, cap,
                                  "{\"generation\": %llu, \"timestamp\": %llu, "
                                  "\"members\": [",
                                  (unsigned long long)generation, (unsigned long long)timestamp);
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(text + off, cap - off,
                                "%s{\"pool\": \"api.example.test/A\", \"member\": \"m-%zu\", "
                                "\"state\": \"up\"}",
                                i == 0 ? "" : ",", i);
    snprintf(text + off, cap - off, "]}");
    return text;
}

static void parse_ok(const char *text, struct feed_doc *doc)
{
    char reason[FEED_REASON_MAX];
    int rc = parse_text(text, NULL, doc, reason);
    if (rc != 0)
        fail_msg("unexpected rejection: %s", reason);
}

/* ---- parsing: the good document ---- */

static void test_feed_parses_good_document_with_all_fields(void **state)
{
    size_t len;
    char *text = read_data("good.json", &len);
    struct feed_limits limits;
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    feed_limits_defaults(&limits);
    assert_int_equal(feed_parse(text, len, &limits, &doc, reason, sizeof reason), 0);
    assert_int_equal(doc.generation, 42);
    assert_int_equal(doc.timestamp, 1763900000u);
    assert_int_equal(doc.count, 4);
    assert_string_equal(doc.entries[0].pool, "api.example.test/A");
    assert_string_equal(doc.entries[0].member, "192.0.2.10");
    assert_int_equal(doc.entries[0].state, HEALTH_UP);
    assert_string_equal(doc.entries[1].member, "192.0.2.11");
    assert_int_equal(doc.entries[1].state, HEALTH_DOWN);
    assert_string_equal(doc.entries[2].pool, "api.example.test/AAAA");
    assert_string_equal(doc.entries[2].member, "2001:db8::10");
    assert_string_equal(doc.entries[3].pool, "www.example.test/CNAME");
    assert_string_equal(doc.entries[3].member, "eu.api.example.test.");
    assert_int_equal(feed_check(&doc, 41, NOW, &limits, reason, sizeof reason), 0);
    feed_doc_free(&doc);
    assert_null(doc.entries);
    assert_int_equal(doc.count, 0);
    free(text);
}

static void test_feed_limits_defaults_match_documentation(void **state)
{
    struct feed_limits limits;
    feed_limits_defaults(&limits);
    assert_int_equal(limits.max_bytes, 16 * 1024 * 1024);
    assert_int_equal(limits.max_members, 100000);
    assert_int_equal(limits.max_age_s, 300);
    assert_int_equal(limits.max_skew_s, 60);
}

/* ---- parsing: not JSON ---- */

static void test_feed_rejects_syntax_error_with_line_and_column(void **state)
{
    size_t len;
    char *text = read_data("not-json.json", &len);
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    assert_int_equal(feed_parse(text, len, NULL, &doc, reason, sizeof reason), BALLAST_EPARSE);
    assert_non_null(strstr(reason, "invalid JSON at line 4, column 11: "));
    assert_null(doc.entries);
    free(text);
}

static void test_feed_rejects_empty_and_truncated_input(void **state)
{
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    assert_int_equal(feed_parse("", 0, NULL, &doc, reason, sizeof reason), BALLAST_EPARSE);
    assert_non_null(strstr(reason, "invalid JSON at line 1, column 0: "));
    assert_int_equal(parse_text("{\"generation\": 1, \"timest", NULL, &doc, reason),
                     BALLAST_EPARSE);
    assert_non_null(strstr(reason, "invalid JSON at line 1, column "));
}

static void test_feed_rejects_nul_byte_and_trailing_garbage(void **state)
{
    static const char with_nul[] = "{\"generation\": 1,\0 \"timestamp\": 1, \"members\": []}";
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    assert_int_equal(feed_parse(with_nul, sizeof with_nul - 1, NULL, &doc, reason, sizeof reason),
                     BALLAST_EPARSE);
    assert_non_null(strstr(reason, "invalid JSON at line 1"));
    assert_int_equal(
        parse_text("{\"generation\": 1, \"timestamp\": 1, \"members\": []} x", NULL, &doc, reason),
        BALLAST_EPARSE);
    assert_non_null(strstr(reason, "invalid JSON at line 1"));
}

static void test_feed_rejects_duplicate_json_key(void **state)
{
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    assert_int_equal(parse_text("{\"generation\": 1, \"generation\": 2, \"timestamp\": 1, "
                                "\"members\": []}",
                                NULL, &doc, reason),
                     BALLAST_EPARSE);
    assert_non_null(strstr(reason, "invalid JSON at line 1"));
    assert_non_null(strstr(reason, "duplicate object key"));
}

static void test_feed_rejects_top_level_that_is_not_an_object(void **state)
{
    expect_rejected("[1, 2]", BALLAST_EPARSE, "top level: must be an object, not an array");
}

static void test_feed_reasons_are_printable_ascii(void **state)
{
    /* raw control and non-ASCII bytes from a feed must not reach a log line */
    static const char *const inputs[] = {
        "{\"generation\": \"a\nb\"}",
        "{\"generation\": 1, \"timestamp\": 1, \"members\": [], \"\x1b[31m\": 1}",
        "{\"generation\": 1, \"timestamp\": 1, \"members\": [], \"caf\xc3\xa9\": 1}",
        "\xff\xfe{}",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        struct feed_doc doc;
        char reason[FEED_REASON_MAX];
        assert_int_equal(parse_text(inputs[i], NULL, &doc, reason), BALLAST_EPARSE);
        assert_true(reason[0] != '\0');
        for (const char *p = reason; *p != '\0'; p++)
            assert_true(*p >= 0x20 && *p < 0x7f);
    }
}

/* ---- parsing: wrong types ---- */

static void test_feed_rejects_wrong_types_at_top_level(void **state)
{
    expect_rejected("{\"generation\": \"42\", \"timestamp\": 1, \"members\": []}", BALLAST_EPARSE,
                    "generation: must be an integer, not a string");
    expect_rejected("{\"generation\": 42.5, \"timestamp\": 1, \"members\": []}", BALLAST_EPARSE,
                    "generation: must be an integer, not a real number");
    expect_rejected("{\"generation\": 42, \"timestamp\": null, \"members\": []}", BALLAST_EPARSE,
                    "timestamp: must be an integer, not null");
    expect_rejected("{\"generation\": 42, \"timestamp\": 1, \"members\": {}}", BALLAST_EPARSE,
                    "members: must be an array, not an object");
}

static void test_feed_rejects_generation_zero_or_negative(void **state)
{
    expect_rejected("{\"generation\": 0, \"timestamp\": 1, \"members\": []}", BALLAST_EPARSE,
                    "generation: must be at least 1, not 0");
    expect_rejected("{\"generation\": -5, \"timestamp\": 1, \"members\": []}", BALLAST_EPARSE,
                    "generation: must be at least 1, not -5");
    expect_rejected("{\"generation\": 1, \"timestamp\": -1, \"members\": []}", BALLAST_EPARSE,
                    "timestamp: must be at least 0, not -1");
}

static void test_feed_rejects_integer_too_big_for_jansson(void **state)
{
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    assert_int_equal(parse_text("{\"generation\": 99999999999999999999, \"timestamp\": 1, "
                                "\"members\": []}",
                                NULL, &doc, reason),
                     BALLAST_EPARSE);
    assert_non_null(strstr(reason, "invalid JSON at line 1, column "));
}

static void test_feed_rejects_wrong_types_in_members(void **state)
{
    expect_member_rejected("\"192.0.2.10\"", "members[0]: must be an object, not a string");
    expect_member_rejected("{\"pool\": 7, \"member\": \"192.0.2.10\", \"state\": \"up\"}",
                           "members[0].pool: must be a string, not an integer");
    expect_member_rejected("{\"pool\": \"a.test/A\", \"member\": [], \"state\": \"up\"}",
                           "members[0].member: must be a string, not an array");
    expect_member_rejected("{\"pool\": \"a.test/A\", \"member\": \"192.0.2.10\", \"state\": true}",
                           "members[0].state: must be a string, not a boolean");
}

/* ---- parsing: missing and unknown keys ---- */

static void test_feed_rejects_missing_top_level_keys(void **state)
{
    expect_rejected("{\"timestamp\": 1, \"members\": []}", BALLAST_EPARSE,
                    "generation: missing key");
    expect_rejected("{\"generation\": 1, \"members\": []}", BALLAST_EPARSE,
                    "timestamp: missing key");
    expect_rejected("{\"generation\": 1, \"timestamp\": 1}", BALLAST_EPARSE,
                    "members: missing key");
}

static void test_feed_rejects_missing_member_keys(void **state)
{
    expect_member_rejected("{\"member\": \"192.0.2.10\", \"state\": \"up\"}",
                           "members[0].pool: missing key");
    expect_member_rejected("{\"pool\": \"a.test/A\", \"state\": \"up\"}",
                           "members[0].member: missing key");
    expect_member_rejected("{\"pool\": \"a.test/A\", \"member\": \"192.0.2.10\"}",
                           "members[0].state: missing key");
}

static void test_feed_rejects_unknown_keys_with_their_path(void **state)
{
    expect_rejected("{\"generation\": 1, \"timestamp\": 1, \"members\": [], \"colour\": 1}",
                    BALLAST_EPARSE, "colour: unknown key");
    char *text = make_feed(3, 1, NOW);
    /* replace the closing "]}" with a fourth member that has an extra key */
    text[strlen(text) - 2] = '\0';
    char *bigger = malloc(strlen(text) + 200);
    assert_non_null(bigger);
    sprintf(bigger,
            "%s, {\"pool\": \"a.test/A\", \"member\": \"x\", \"state\": \"up\", "
            "\"colour\": \"red\"}]}",
            text);
    expect_rejected(bigger, BALLAST_EPARSE, "members[3].colour: unknown key");
    free(bigger);
    free(text);
}

static void test_feed_quotes_hostile_keys_safely(void **state)
{
    /* a newline must not reach a log line; a long key is cut */
    expect_rejected("{\"generation\": 1, \"timestamp\": 1, \"members\": [], \"a\\nb\": 1}",
                    BALLAST_EPARSE, "a?b: unknown key");
    expect_rejected("{\"generation\": 1, \"timestamp\": 1, \"members\": [], "
                    "\"0123456789012345678901234567890123456789012345678901234567890\": 1}",
                    BALLAST_EPARSE,
                    "012345678901234567890123456789012345678901234567...: unknown key");
}

/* ---- parsing: bad values ---- */

static void test_feed_rejects_bad_state(void **state)
{
    expect_member_rejected("{\"pool\": \"a.test/A\", \"member\": \"x\", \"state\": \"sideways\"}",
                           "members[0].state: \"sideways\" is not \"up\" or \"down\"");
    expect_member_rejected("{\"pool\": \"a.test/A\", \"member\": \"x\", \"state\": \"UP\"}",
                           "members[0].state: \"UP\" is not \"up\" or \"down\"");
}

static void test_feed_rejects_bad_pool_and_member(void **state)
{
    expect_member_rejected("{\"pool\": \"a.test\", \"member\": \"x\", \"state\": \"up\"}",
                           "members[0].pool: \"a.test\" is not \"owner/TYPE\"");
    expect_member_rejected("{\"pool\": \"/A\", \"member\": \"x\", \"state\": \"up\"}",
                           "members[0].pool: \"/A\" is not \"owner/TYPE\"");
    expect_member_rejected("{\"pool\": \"a.test/MX\", \"member\": \"x\", \"state\": \"up\"}",
                           "members[0].pool: type \"MX\" is not A, AAAA or CNAME");
    expect_member_rejected("{\"pool\": \"a test/A\", \"member\": \"x\", \"state\": \"up\"}",
                           "members[0].pool: owner of \"a test/A\" contains a space or control "
                           "character");
    expect_member_rejected("{\"pool\": \"a.test/A\", \"member\": \"\", \"state\": \"up\"}",
                           "members[0].member: empty");
    expect_member_rejected("{\"pool\": \"a.test/A\", \"member\": \"192.0.2.1\\t\", \"state\": "
                           "\"up\"}",
                           "members[0].member: \"192.0.2.1?\" contains a space or control "
                           "character");
}

static void test_feed_rejects_overlong_owner_and_member(void **state)
{
    char long_text[300], member[400];
    memset(long_text, 'a', 255);
    long_text[255] = '\0';
    snprintf(member, sizeof member, "{\"pool\": \"%s/A\", \"member\": \"x\", \"state\": \"up\"}",
             long_text);
    expect_member_rejected(member, "members[0].pool: owner is 255 characters, limit is 254");
    long_text[254] = '\0'; /* at the limit: accepted */
    snprintf(member, sizeof member,
             "{\"generation\": 1, \"timestamp\": 1, \"members\": [{\"pool\": \"%s/A\", "
             "\"member\": \"x\", \"state\": \"up\"}]}",
             long_text);
    struct feed_doc doc;
    parse_ok(member, &doc);
    feed_doc_free(&doc);

    memset(long_text, 'b', 256);
    long_text[256] = '\0';
    snprintf(member, sizeof member,
             "{\"pool\": \"a.test/A\", \"member\": \"%s\", \"state\": \"up\"}", long_text);
    expect_member_rejected(member, "members[0].member: 256 characters, limit is 255");
}

static void test_feed_rejects_duplicate_member(void **state)
{
    expect_rejected("{\"generation\": 1, \"timestamp\": 1, \"members\": ["
                    "{\"pool\": \"a.test/A\", \"member\": \"192.0.2.1\", \"state\": \"up\"},"
                    "{\"pool\": \"a.test/A\", \"member\": \"192.0.2.2\", \"state\": \"up\"},"
                    "{\"pool\": \"a.test/A\", \"member\": \"192.0.2.1\", \"state\": \"down\"}]}",
                    BALLAST_EPARSE,
                    "members[2]: duplicate of members[0] (pool \"a.test/A\", member "
                    "\"192.0.2.1\")");
}

static void test_feed_duplicate_is_case_insensitive_and_first_in_order(void **state)
{
    /* members[3] repeats members[1] (names without case), before members[4] repeats [0] */
    expect_rejected("{\"generation\": 1, \"timestamp\": 1, \"members\": ["
                    "{\"pool\": \"z.test/A\", \"member\": \"192.0.2.1\", \"state\": \"up\"},"
                    "{\"pool\": \"a.test/AAAA\", \"member\": \"2001:db8::a\", \"state\": \"up\"},"
                    "{\"pool\": \"m.test/A\", \"member\": \"192.0.2.1\", \"state\": \"up\"},"
                    "{\"pool\": \"A.Test/AAAA\", \"member\": \"2001:DB8::A\", \"state\": \"up\"},"
                    "{\"pool\": \"z.test/A\", \"member\": \"192.0.2.1\", \"state\": \"up\"}]}",
                    BALLAST_EPARSE,
                    "members[3]: duplicate of members[1] (pool \"A.Test/AAAA\", member "
                    "\"2001:DB8::A\")");
}

static void test_feed_accepts_same_member_in_different_pools(void **state)
{
    struct feed_doc doc;
    parse_ok("{\"generation\": 1, \"timestamp\": 1, \"members\": ["
             "{\"pool\": \"a.test/A\", \"member\": \"192.0.2.1\", \"state\": \"up\"},"
             "{\"pool\": \"b.test/A\", \"member\": \"192.0.2.1\", \"state\": \"down\"}]}",
             &doc);
    assert_int_equal(doc.count, 2);
    assert_int_equal(doc.entries[1].state, HEALTH_DOWN);
    feed_doc_free(&doc);
}

/* ---- parsing: limits ---- */

static void test_feed_rejects_oversized_document_before_parsing(void **state)
{
    struct feed_limits limits;
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    size_t len;
    char *text = read_data("good.json", &len);
    feed_limits_defaults(&limits);
    limits.max_bytes = len - 1;
    assert_int_equal(feed_parse(text, len, &limits, &doc, reason, sizeof reason), BALLAST_ELIMIT);
    char want[FEED_REASON_MAX];
    snprintf(want, sizeof want, "feed is %zu bytes, limit is %zu (max-size)", len, len - 1);
    assert_string_equal(reason, want);
    /* not parsed at all: even garbage of that size gets the size reason */
    memset(text, '!', len);
    assert_int_equal(feed_parse(text, len, &limits, &doc, reason, sizeof reason), BALLAST_ELIMIT);
    assert_string_equal(reason, want);
    free(text);
    text = read_data("good.json", &len);
    limits.max_bytes = len; /* exactly at the limit: accepted */
    assert_int_equal(feed_parse(text, len, &limits, &doc, reason, sizeof reason), 0);
    feed_doc_free(&doc);
    free(text);
}

static void test_feed_rejects_too_many_members(void **state)
{
    struct feed_limits limits;
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    feed_limits_defaults(&limits);
    limits.max_members = 200;
    char *text = make_feed(201, 1, NOW);
    assert_int_equal(parse_text(text, &limits, &doc, reason), BALLAST_ELIMIT);
    assert_string_equal(reason, "feed has 201 members, limit is 200 (max-members)");
    free(text);
    text = make_feed(200, 1, NOW);
    assert_int_equal(parse_text(text, &limits, &doc, reason), 0);
    assert_int_equal(doc.count, 200);
    assert_string_equal(doc.entries[199].member, "m-199");
    feed_doc_free(&doc);
    free(text);
}

static void test_feed_parses_max_members_quickly(void **state)
{
    /* duplicate detection must stay O(n log n) at max-members (100000 members are ~6.6 MB,
     * beyond the default max-size, so that limit is raised here) */
    struct feed_limits limits;
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    feed_limits_defaults(&limits);
    limits.max_bytes = 16 * 1024 * 1024;
    char *text = make_feed(limits.max_members, 7, NOW);
    assert_int_equal(parse_text(text, &limits, &doc, reason), 0);
    assert_int_equal(doc.count, 100000);
    assert_string_equal(doc.entries[99999].member, "m-99999");
    feed_doc_free(&doc);
    free(text);
}

static void test_feed_error_in_a_late_member_frees_earlier_ones(void **state)
{
    /* runs under ASan: the entries parsed before the bad one must be released */
    char *text = make_feed(50, 1, NOW);
    char *bad = strstr(text, "\"member\": \"m-49\", \"state\": \"up\"");
    assert_non_null(bad);
    memcpy(strstr(bad, "\"up\""), "\"no\"", 4);
    expect_rejected(text, BALLAST_EPARSE, "members[49].state: \"no\" is not \"up\" or \"down\"");
    free(text);
}

/* ---- feed_check ---- */

static void check_doc(uint64_t generation, uint64_t timestamp, size_t members, struct feed_doc *doc)
{
    char *text = make_feed(members, generation, timestamp);
    parse_ok(text, doc);
    free(text);
}

static void test_feed_check_rejects_empty_feed(void **state)
{
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    parse_ok("{\"generation\": 43, \"timestamp\": 1763900000, \"members\": []}", &doc);
    assert_int_equal(doc.count, 0);
    assert_int_equal(feed_check(&doc, 42, NOW, NULL, reason, sizeof reason), BALLAST_EINVAL);
    assert_string_equal(reason, "empty feed: generation 43 has no members");
    feed_doc_free(&doc);
}

static void test_feed_check_rejects_older_generation(void **state)
{
    /* the AWS October 2025 race: a delayed worker's old plan must not replace the newer one */
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    check_doc(41, NOW, 2, &doc);
    assert_int_equal(feed_check(&doc, 42, NOW, NULL, reason, sizeof reason), BALLAST_EINVAL);
    assert_string_equal(reason, "generation 41 is not newer than the applied 42");
    feed_doc_free(&doc);
}

static void test_feed_check_rejects_equal_generation(void **state)
{
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    check_doc(42, NOW, 2, &doc);
    assert_int_equal(feed_check(&doc, 42, NOW, NULL, reason, sizeof reason), BALLAST_EINVAL);
    assert_string_equal(reason, "generation 42 is not newer than the applied 42");
    assert_int_equal(feed_check(&doc, 41, NOW, NULL, reason, sizeof reason), 0);
    assert_int_equal(feed_check(&doc, 0, NOW, NULL, reason, sizeof reason), 0); /* first feed */
    feed_doc_free(&doc);
}

static void test_feed_check_rejects_stale_timestamp(void **state)
{
    struct feed_limits limits;
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    feed_limits_defaults(&limits);
    check_doc(2, NOW - 301, 1, &doc);
    assert_int_equal(feed_check(&doc, 1, NOW, &limits, reason, sizeof reason), BALLAST_EINVAL);
    assert_string_equal(reason, "feed is stale: timestamp 1763899699 is 301 s old, limit is 300 s "
                                "(max-age)");
    feed_doc_free(&doc);
    check_doc(2, NOW - 300, 1, &doc); /* exactly max-age old: still fresh */
    assert_int_equal(feed_check(&doc, 1, NOW, &limits, reason, sizeof reason), 0);
    feed_doc_free(&doc);
}

static void test_feed_check_age_does_not_underflow_near_epoch(void **state)
{
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    check_doc(2, 0, 1, &doc);
    assert_int_equal(feed_check(&doc, 1, 100, NULL, reason, sizeof reason), 0);
    assert_int_equal(feed_check(&doc, 1, 301, NULL, reason, sizeof reason), BALLAST_EINVAL);
    assert_string_equal(reason, "feed is stale: timestamp 0 is 301 s old, limit is 300 s "
                                "(max-age)");
    feed_doc_free(&doc);
}

static void test_feed_check_rejects_future_timestamp(void **state)
{
    struct feed_limits limits;
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    feed_limits_defaults(&limits);
    check_doc(2, NOW + 61, 1, &doc);
    assert_int_equal(feed_check(&doc, 1, NOW, &limits, reason, sizeof reason), BALLAST_EINVAL);
    assert_string_equal(reason, "feed timestamp 1763900061 is 61 s in the future, limit is 60 s "
                                "(max-skew)");
    feed_doc_free(&doc);
    check_doc(2, NOW + 60, 1, &doc); /* within the allowed clock skew */
    assert_int_equal(feed_check(&doc, 1, NOW, &limits, reason, sizeof reason), 0);
    feed_doc_free(&doc);
}

static void test_feed_check_uses_configured_limits(void **state)
{
    struct feed_limits limits;
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    feed_limits_defaults(&limits);
    limits.max_age_s = 10;
    limits.max_skew_s = 0;
    check_doc(2, NOW - 11, 1, &doc);
    assert_int_equal(feed_check(&doc, 1, NOW, &limits, reason, sizeof reason), BALLAST_EINVAL);
    assert_string_equal(reason, "feed is stale: timestamp 1763899989 is 11 s old, limit is 10 s "
                                "(max-age)");
    feed_doc_free(&doc);
    check_doc(2, NOW + 1, 1, &doc);
    assert_int_equal(feed_check(&doc, 1, NOW, &limits, reason, sizeof reason), BALLAST_EINVAL);
    assert_string_equal(reason, "feed timestamp 1763900001 is 1 s in the future, limit is 0 s "
                                "(max-skew)");
    feed_doc_free(&doc);
}

/* ---- signatures ---- */

static void test_feed_test_data_is_consistent(void **state)
{
    /* key.seed signs good.json into good.json.sig (Ed25519 is deterministic); if good.json is
     * edited, the message shows the signature to store */
    size_t len;
    char *text = read_data("good.json", &len);
    char *stored = read_data("good.json.sig", NULL);
    char computed[128];
    sign_with_test_key(text, len, computed, sizeof computed);
    if (strncmp(stored, computed, strlen(computed)) != 0)
        fail_msg("good.json.sig is out of date; it should be %s", computed);
    free(stored);
    free(text);
}

static void test_feed_verify_accepts_good_signature(void **state)
{
    size_t len;
    uint8_t key[32];
    char reason[FEED_REASON_MAX];
    char *text = read_data("good.json", &len);
    char *sig = read_data("good.json.sig", NULL); /* ends with a newline: whitespace ignored */
    load_key("key.pub", key);
    assert_int_equal(feed_verify((const uint8_t *)text, len, sig, key, reason, sizeof reason), 0);
    char padded[200];
    snprintf(padded, sizeof padded, " \t%s\r\n", sig);
    assert_int_equal(feed_verify((const uint8_t *)text, len, padded, key, reason, sizeof reason),
                     0);
    free(sig);
    free(text);
}

static void test_feed_verify_rejects_signature_of_other_bytes(void **state)
{
    size_t len;
    uint8_t key[32];
    char reason[FEED_REASON_MAX];
    char *text = read_data("good.json", &len);
    char *sig = read_data("good.json.sig", NULL);
    load_key("key.pub", key);
    /* one byte changed: the generation 42 becomes 43 */
    char *gen = strstr(text, "42");
    assert_non_null(gen);
    gen[1] = '3';
    assert_int_equal(feed_verify((const uint8_t *)text, len, sig, key, reason, sizeof reason),
                     BALLAST_EINVAL);
    char want[FEED_REASON_MAX];
    snprintf(want, sizeof want,
             "Ed25519 signature does not match the %zu-byte feed for the configured public key",
             len);
    assert_string_equal(reason, want);
    /* one byte fewer: a truncated download */
    gen[1] = '2';
    assert_int_equal(feed_verify((const uint8_t *)text, len - 1, sig, key, reason, sizeof reason),
                     BALLAST_EINVAL);
    /* a good signature made for another document */
    char other[128];
    static const char doc2[] = "{\"generation\": 43}";
    sign_with_test_key(doc2, sizeof doc2 - 1, other, sizeof other);
    assert_int_equal(
        feed_verify((const uint8_t *)doc2, sizeof doc2 - 1, other, key, reason, sizeof reason), 0);
    assert_int_equal(feed_verify((const uint8_t *)text, len, other, key, reason, sizeof reason),
                     BALLAST_EINVAL);
    free(sig);
    free(text);
}

static void test_feed_verify_rejects_corrupted_signature(void **state)
{
    size_t len;
    uint8_t key[32];
    char reason[FEED_REASON_MAX];
    char *text = read_data("good.json", &len);
    char *sig = read_data("good.json.sig", NULL);
    load_key("key.pub", key);
    sig[10] = sig[10] == 'A' ? 'B' : 'A'; /* still valid base64, other bytes */
    assert_int_equal(feed_verify((const uint8_t *)text, len, sig, key, reason, sizeof reason),
                     BALLAST_EINVAL);
    assert_non_null(strstr(reason, "Ed25519 signature does not match"));
    free(sig);
    free(text);
}

static void test_feed_verify_rejects_bad_base64(void **state)
{
    size_t len;
    uint8_t key[32];
    char reason[FEED_REASON_MAX];
    char *text = read_data("good.json", &len);
    char *sig = read_data("good.json.sig", NULL);
    load_key("key.pub", key);
    sig[20] = '!';
    assert_int_equal(feed_verify((const uint8_t *)text, len, sig, key, reason, sizeof reason),
                     BALLAST_EINVAL);
    assert_string_equal(reason, "signature is not valid base64 at character 20");
    assert_int_equal(
        feed_verify((const uint8_t *)text, len, "c2lnbmF0dXJl", key, reason, sizeof reason),
        BALLAST_EINVAL);
    assert_string_equal(reason, "signature is 12 base64 characters, expected 88 (a 64-byte "
                                "Ed25519 signature)");
    assert_int_equal(feed_verify((const uint8_t *)text, len, " \n", key, reason, sizeof reason),
                     BALLAST_EINVAL);
    assert_string_equal(reason, "signature is 0 base64 characters, expected 88 (a 64-byte "
                                "Ed25519 signature)");
    /* URL-safe alphabet is not the configured variant */
    char *urlsafe = read_data("good.json.sig", NULL);
    char *plus = strpbrk(urlsafe, "+/");
    assert_non_null(plus);
    *plus = *plus == '+' ? '-' : '_';
    assert_int_equal(feed_verify((const uint8_t *)text, len, urlsafe, key, reason, sizeof reason),
                     BALLAST_EINVAL);
    assert_non_null(strstr(reason, "signature is not valid base64 at character "));
    free(urlsafe);
    free(sig);
    free(text);
}

static void test_feed_verify_rejects_wrong_key(void **state)
{
    size_t len;
    uint8_t key[32], other[32];
    char reason[FEED_REASON_MAX];
    char *text = read_data("good.json", &len);
    char *sig = read_data("good.json.sig", NULL);
    char *other_sig = read_data("good.json.other-key.sig", NULL);
    load_key("key.pub", key);
    load_key("other-key.pub", other);
    assert_int_equal(feed_verify((const uint8_t *)text, len, sig, other, reason, sizeof reason),
                     BALLAST_EINVAL);
    assert_non_null(strstr(reason, "for the configured public key"));
    /* signed by the other key: good for it, refused for ours */
    assert_int_equal(
        feed_verify((const uint8_t *)text, len, other_sig, other, reason, sizeof reason), 0);
    assert_int_equal(feed_verify((const uint8_t *)text, len, other_sig, key, reason, sizeof reason),
                     BALLAST_EINVAL);
    free(other_sig);
    free(sig);
    free(text);
}

static void test_feed_public_key_parse_accepts_base64_key(void **state)
{
    uint8_t key[32], again[32];
    load_key("key.pub", key);
    assert_int_equal(
        feed_public_key_parse("  gvrFYeminxDoSdXBTYe7FPwF9Itdqar3lbeOOC6+DYw=\n", again), 0);
    assert_memory_equal(key, again, 32);
    assert_int_not_equal(key[0] | key[1] | key[2], 0);
}

static void test_feed_public_key_parse_rejects_bad_keys(void **state)
{
    uint8_t key[32];
    memset(key, 0x5a, sizeof key);
    /* 31 bytes, 33 bytes, bad character, missing padding, empty, an all-zero (small order) point */
    assert_int_equal(feed_public_key_parse("gvrFYeminxDoSdXBTYe7FPwF9Itdqar3lbeOOC6+DQ==", key),
                     BALLAST_EINVAL);
    assert_int_equal(feed_public_key_parse("gvrFYeminxDoSdXBTYe7FPwF9Itdqar3lbeOOC6+DYwA", key),
                     BALLAST_EINVAL);
    assert_int_equal(feed_public_key_parse("gvrFYeminxDoSdXBTYe7FPwF9Itdqar3lbeOOC6*DYw=", key),
                     BALLAST_EINVAL);
    assert_int_equal(feed_public_key_parse("gvrFYeminxDoSdXBTYe7FPwF9Itdqar3lbeOOC6+DYw", key),
                     BALLAST_EINVAL);
    assert_int_equal(feed_public_key_parse("", key), BALLAST_EINVAL);
    assert_int_equal(feed_public_key_parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", key),
                     BALLAST_EINVAL);
    assert_int_equal(feed_public_key_parse(NULL, key), BALLAST_EINVAL);
    /* a refused key leaves the output untouched */
    for (size_t i = 0; i < sizeof key; i++)
        assert_int_equal(key[i], 0x5a);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feed_parses_good_document_with_all_fields),
        cmocka_unit_test(test_feed_limits_defaults_match_documentation),
        cmocka_unit_test(test_feed_rejects_syntax_error_with_line_and_column),
        cmocka_unit_test(test_feed_rejects_empty_and_truncated_input),
        cmocka_unit_test(test_feed_rejects_nul_byte_and_trailing_garbage),
        cmocka_unit_test(test_feed_rejects_duplicate_json_key),
        cmocka_unit_test(test_feed_rejects_top_level_that_is_not_an_object),
        cmocka_unit_test(test_feed_reasons_are_printable_ascii),
        cmocka_unit_test(test_feed_rejects_wrong_types_at_top_level),
        cmocka_unit_test(test_feed_rejects_generation_zero_or_negative),
        cmocka_unit_test(test_feed_rejects_integer_too_big_for_jansson),
        cmocka_unit_test(test_feed_rejects_wrong_types_in_members),
        cmocka_unit_test(test_feed_rejects_missing_top_level_keys),
        cmocka_unit_test(test_feed_rejects_missing_member_keys),
        cmocka_unit_test(test_feed_rejects_unknown_keys_with_their_path),
        cmocka_unit_test(test_feed_quotes_hostile_keys_safely),
        cmocka_unit_test(test_feed_rejects_bad_state),
        cmocka_unit_test(test_feed_rejects_bad_pool_and_member),
        cmocka_unit_test(test_feed_rejects_overlong_owner_and_member),
        cmocka_unit_test(test_feed_rejects_duplicate_member),
        cmocka_unit_test(test_feed_duplicate_is_case_insensitive_and_first_in_order),
        cmocka_unit_test(test_feed_accepts_same_member_in_different_pools),
        cmocka_unit_test(test_feed_rejects_oversized_document_before_parsing),
        cmocka_unit_test(test_feed_rejects_too_many_members),
        cmocka_unit_test(test_feed_parses_max_members_quickly),
        cmocka_unit_test(test_feed_error_in_a_late_member_frees_earlier_ones),
        cmocka_unit_test(test_feed_check_rejects_empty_feed),
        cmocka_unit_test(test_feed_check_rejects_older_generation),
        cmocka_unit_test(test_feed_check_rejects_equal_generation),
        cmocka_unit_test(test_feed_check_rejects_stale_timestamp),
        cmocka_unit_test(test_feed_check_age_does_not_underflow_near_epoch),
        cmocka_unit_test(test_feed_check_rejects_future_timestamp),
        cmocka_unit_test(test_feed_check_uses_configured_limits),
        cmocka_unit_test(test_feed_test_data_is_consistent),
        cmocka_unit_test(test_feed_verify_accepts_good_signature),
        cmocka_unit_test(test_feed_verify_rejects_signature_of_other_bytes),
        cmocka_unit_test(test_feed_verify_rejects_corrupted_signature),
        cmocka_unit_test(test_feed_verify_rejects_bad_base64),
        cmocka_unit_test(test_feed_verify_rejects_wrong_key),
        cmocka_unit_test(test_feed_public_key_parse_accepts_base64_key),
        cmocka_unit_test(test_feed_public_key_parse_rejects_bad_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
