/* Unit tests for authd/zone.c: loading master files, nodes and flags, every rejection with its
 * file, line and reason, limits, and the zone set's most-specific match. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "errors.h"
#include "wire.h"
#include "zone.h"

#define DATA "tests/unit/data/zone/"

static const struct zone_node *find(const struct zone *zone, const char *text)
{
    uint8_t name[WIRE_NAME_MAX];
    size_t len = 0;
    assert_int_equal(wire_name_from_text(text, name, &len), 0);
    wire_name_lower(name, name, len);
    return zone_find_node(zone, name, len);
}

static struct zone *load_ok(const char *origin, const char *file)
{
    struct limits limits;
    struct zone_error err;
    struct zone *zone = NULL;
    limits_init_defaults(&limits);
    int rc = zone_load(origin, file, &limits, &zone, &err);
    if (rc != 0)
        fprintf(stderr, "%s:%u: %s\n", err.file, err.line, err.reason);
    assert_int_equal(rc, 0);
    return zone;
}

static void expect_error(const char *origin, const char *file, const struct limits *limits,
                         const char *err_file_suffix, unsigned line, const char *reason)
{
    struct limits defaults;
    struct zone_error err;
    struct zone *zone = NULL;
    limits_init_defaults(&defaults);
    assert_int_not_equal(zone_load(origin, file, limits ? limits : &defaults, &zone, &err), 0);
    assert_null(zone);
    size_t file_len = strlen(err.file), suffix_len = strlen(err_file_suffix);
    if (file_len < suffix_len || strcmp(err.file + file_len - suffix_len, err_file_suffix) != 0)
        fail_msg("error file '%s' does not end with '%s' (%s)", err.file, err_file_suffix,
                 err.reason);
    assert_int_equal(err.line, line);
    if (!strstr(err.reason, reason))
        fail_msg("reason '%s' does not contain '%s'", err.reason, reason);
}

static void test_zone_loads_records_and_metadata(void **state)
{
    struct zone *zone = load_ok("good.test", DATA "good.zone");
    assert_int_equal(zone->serial, 42);
    assert_int_equal(zone->negative_ttl, 120); /* min(SOA TTL 600, MINIMUM 120) */
    assert_string_equal(zone->name_text, "good.test.");
    assert_non_null(zone->apex_node);
    assert_true(zone->apex_node->flags & ZONE_NODE_APEX);
    const struct zone_node *www = find(zone, "WWW.good.test");
    assert_non_null(www);
    const struct zone_rrset *a = zone_node_rrset(www, WIRE_TYPE_A);
    assert_non_null(a);
    assert_int_equal(a->count, 2); /* the duplicate record collapsed */
    assert_int_equal(a->ttl, 100); /* RFC 2181 §5.2: lowest TTL of the set */
    assert_null(zone_node_rrset(www, WIRE_TYPE_AAAA));
    assert_int_equal(zone_node_rrset(find(zone, "ns1.good.test"), WIRE_TYPE_A)->ttl, 300);
    assert_non_null(find(zone, "included.other.good.test")); /* from $INCLUDE */
    zone_free(zone);
}

static void test_zone_lowercases_names_in_rdata(void **state)
{
    struct zone *zone = load_ok("good.test", DATA "good.zone");
    const struct zone_node *x = find(zone, "x.other.good.test"); /* $ORIGIN change */
    assert_non_null(x);
    const struct zone_rrset *cname = zone_node_rrset(x, WIRE_TYPE_CNAME);
    assert_non_null(cname);
    assert_memory_equal(cname->data + 2, "\3www\4good\4test\0", 15);
    /* SOA MNAME too */
    assert_memory_equal(zone->soa->data + 2, "\3ns1\4good\4test\0", 15);
    zone_free(zone);
}

static void test_zone_empty_non_terminals_and_flags(void **state)
{
    struct zone *zone = load_ok("good.test", DATA "good.zone");
    const struct zone_node *c = find(zone, "c.good.test");
    const struct zone_node *bc = find(zone, "b.c.good.test");
    assert_non_null(c);
    assert_non_null(bc);
    assert_int_equal(c->rrset_count, 0);
    assert_int_equal(bc->rrset_count, 0);
    assert_null(find(zone, "nothere.good.test"));
    assert_true(find(zone, "w.good.test")->flags & ZONE_NODE_WILDCARD_CHILD);
    assert_non_null(find(zone, "*.w.good.test"));
    assert_true(find(zone, "sub.good.test")->flags & ZONE_NODE_DELEGATION);
    assert_false(find(zone, "sub.good.test")->flags & ZONE_NODE_OCCLUDED);
    assert_true(find(zone, "ns.sub.good.test")->flags & ZONE_NODE_OCCLUDED);
    assert_false(zone->apex_node->flags & ZONE_NODE_DELEGATION);
    zone_free(zone);
}

static void test_zone_rejects_syntax_error_with_line(void **state)
{
    expect_error("s.test", DATA "syntax.zone", NULL, "syntax.zone", 4, "");
}

static void test_zone_rejects_bad_soa_and_ns(void **state)
{
    expect_error("s.test", DATA "nosoa.zone", NULL, "nosoa.zone", 0, "no SOA");
    /* the second SOA is named, not just the file */
    expect_error("s.test", DATA "twosoa.zone", NULL, "twosoa.zone", 3, "exactly one");
    expect_error("s.test", DATA "soanotapex.zone", NULL, "soanotapex.zone", 4,
                 "not at the zone apex");
    expect_error("s.test", DATA "nons.zone", NULL, "nons.zone", 0, "no NS");
}

static void test_zone_rejects_bad_records(void **state)
{
    expect_error("s.test", DATA "outofzone.zone", NULL, "outofzone.zone", 4,
                 "outside zone s.test.");
    expect_error("s.test", DATA "cnameother.zone", NULL, "cnameother.zone", 4,
                 "CNAME and other data");
    expect_error("s.test", DATA "chaos.zone", NULL, "chaos.zone", 4, "class");
    expect_error("s.test", DATA "missing.zone", NULL, "missing.zone", 0, "cannot open");
}

static void test_zone_include_rules(void **state)
{
    expect_error("good.test", DATA "outside.zone", NULL, "outside.zone", 4,
                 "outside the zone directory");
    struct limits limits;
    limits_init_defaults(&limits);
    limits.max_include_depth = 3;
    expect_error("d.test", DATA "loop.zone", &limits, "loop.zone", 4, "max-include-depth");
}

static void test_zone_limits(void **state)
{
    struct limits limits;
    limits_init_defaults(&limits);
    limits.max_rrset_records = 9;
    expect_error("s.test", DATA "rrset10.zone", &limits, "rrset10.zone", 4,
                 "has 10 records, limit is 9 (max-rrset-records)");
    limits_init_defaults(&limits);
    limits.max_zone_records = 5;
    expect_error("s.test", DATA "rrset10.zone", &limits, "rrset10.zone", 7, "max-zone-records");
    limits_init_defaults(&limits);
    limits.max_zone_bytes = 100;
    expect_error("s.test", DATA "rrset10.zone", &limits, "rrset10.zone", 0, "max-zone-size");
    /* exactly at the limit is fine */
    limits_init_defaults(&limits);
    limits.max_rrset_records = 10;
    struct zone *zone = NULL;
    struct zone_error err;
    assert_int_equal(zone_load("s.test", DATA "rrset10.zone", &limits, &zone, &err), 0);
    zone_free(zone);
}

static void test_zone_set_most_specific_and_duplicates(void **state)
{
    struct zone *zones[3];
    zones[0] = load_ok("example.test", "tests/unit/data/answer/example.test.zone");
    zones[1] = load_ok("deep.example.test", "tests/unit/data/answer/deep.example.test.zone");
    zones[2] = load_ok("good.test", DATA "good.zone");
    struct zone_set *set = NULL;
    assert_int_equal(zone_set_create(zones, 3, &set), 0);
    uint8_t name[WIRE_NAME_MAX];
    size_t len = 0;
    wire_name_from_text("a.www.deep.example.test", name, &len);
    assert_ptr_equal(zone_set_find(set, name, len), zones[1]);
    wire_name_from_text("www.example.test", name, &len);
    assert_ptr_equal(zone_set_find(set, name, len), zones[0]);
    wire_name_from_text("example.org", name, &len);
    assert_null(zone_set_find(set, name, len));
    wire_name_from_text("test", name, &len);
    assert_null(zone_set_find(set, name, len));
    struct zone *dup[2] = {zones[0], zones[0]};
    struct zone_set *bad = NULL;
    assert_int_equal(zone_set_create(dup, 2, &bad), BALLAST_EEXIST);
    zone_set_free(set);
}

static const uint8_t *rdata_of(const struct zone *zone, const char *owner, uint16_t type)
{
    const struct zone_rrset *rrset = zone_node_rrset(find(zone, owner), type);
    assert_non_null(rrset);
    return rrset->data + 2;
}

static void test_zone_full_counts_ttls_and_soa_fields(void **state)
{
    struct zone *zone = load_ok("Example.Test", DATA "full.zone");
    assert_int_equal(zone->node_count, 23);   /* 16 owners + 7 empty non-terminals */
    assert_int_equal(zone->record_count, 20); /* the duplicate www A counts once */
    assert_int_equal(zone->serial, 2024010101);
    assert_int_equal(zone->negative_ttl, 300); /* RFC 2308 §5: min(SOA TTL 3600, MINIMUM 300) */
    assert_string_equal(zone->name_text, "example.test.");
    assert_string_equal(zone->file, DATA "full.zone");
    const struct zone_rrset *www = zone_node_rrset(find(zone, "www.example.test"), WIRE_TYPE_A);
    assert_int_equal(www->count, 2);
    assert_int_equal(www->ttl, 60);
    assert_int_equal(www->data_len, 12); /* 2 x ([RDLENGTH][4 bytes]) */
    assert_int_equal(zone_node_rrset(find(zone, "ttl.example.test"), WIRE_TYPE_A)->ttl, 3600);
    /* the included file inherits the $TTL in force; its own TTLs still win */
    assert_int_equal(zone_node_rrset(find(zone, "h1.hosts.rel.example.test"), WIRE_TYPE_A)->ttl,
                     3600);
    assert_int_equal(zone_node_rrset(find(zone, "h2.hosts.rel.example.test"), WIRE_TYPE_A)->ttl,
                     300);
    /* RRsets sorted by type */
    const struct zone_node *apex = zone->apex_node;
    assert_int_equal(apex->rrset_count, 3);
    assert_int_equal(apex->rrsets[0].type, WIRE_TYPE_NS);
    assert_int_equal(apex->rrsets[1].type, WIRE_TYPE_SOA);
    assert_int_equal(apex->rrsets[2].type, WIRE_TYPE_MX);
    assert_ptr_equal(zone->soa, &apex->rrsets[1]);
    assert_null(zone_node_rrset(apex, WIRE_TYPE_TXT));
    zone_free(zone);
}

static void test_zone_full_lowercases_rdata_names(void **state)
{
    struct zone *zone = load_ok("example.test", DATA "full.zone");
    /* RFC 4034 §6.2 types: MX exchange, SRV target, CNAME, NS, SOA MNAME and RNAME */
    assert_memory_equal(rdata_of(zone, "example.test", WIRE_TYPE_MX),
                        "\0\12\4mail\7example\4test\0", 21);
    assert_memory_equal(rdata_of(zone, "_sip._tcp.example.test", WIRE_TYPE_SRV),
                        "\0\0\0\5\23\304\3sip\7example\4test\0", 24);
    assert_memory_equal(rdata_of(zone, "alias.example.test", WIRE_TYPE_CNAME),
                        "\3www\7example\4test\0", 18);
    assert_memory_equal(rdata_of(zone, "example.test", WIRE_TYPE_SOA),
                        "\3ns1\7example\4test\0\12hostmaster\7example\4test\0", 43);
    zone_free(zone);
}

static void test_zone_full_nodes_and_flags(void **state)
{
    struct zone *zone = load_ok("example.test", DATA "full.zone");
    const char *empty[] = {"_tcp.example.test",     "b.c.example.test",  "c.example.test",
                           "y.sub.example.test",    "wild.example.test", "rel.example.test",
                           "hosts.rel.example.test"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        const struct zone_node *node = find(zone, empty[i]);
        if (!node)
            fail_msg("empty non-terminal %s missing", empty[i]);
        assert_int_equal(node->rrset_count, 0);
    }
    assert_int_equal(zone->apex_node->flags, ZONE_NODE_APEX);
    assert_int_equal(find(zone, "sub.example.test")->flags, ZONE_NODE_DELEGATION);
    assert_int_equal(find(zone, "ns.sub.example.test")->flags, ZONE_NODE_OCCLUDED);
    assert_int_equal(find(zone, "y.sub.example.test")->flags, ZONE_NODE_OCCLUDED);
    assert_int_equal(find(zone, "x.y.sub.example.test")->flags, ZONE_NODE_OCCLUDED);
    assert_int_equal(find(zone, "wild.example.test")->flags, ZONE_NODE_WILDCARD_CHILD);
    assert_int_equal(find(zone, "*.wild.example.test")->flags, 0);
    assert_int_equal(find(zone, "www.example.test")->flags, 0);
    assert_int_equal(find(zone, "c.example.test")->labels, 3);
    assert_null(find(zone, "example.test.example.test"));
    assert_null(find(zone, "test"));
    zone_free(zone);
}

static void test_zone_relative_origin_and_include_origin(void **state)
{
    struct zone *zone = load_ok("example.test", DATA "full.zone");
    /* "$ORIGIN rel" is relative to the current origin (RFC 1035 §5.1) ... */
    assert_non_null(zone_node_rrset(find(zone, "x.rel.example.test"), WIRE_TYPE_A));
    /* ... "$INCLUDE file Hosts" gives the included file its own origin ... */
    assert_non_null(zone_node_rrset(find(zone, "h1.hosts.rel.example.test"), WIRE_TYPE_A));
    /* ... and never changes the parent's. */
    assert_non_null(zone_node_rrset(find(zone, "after.rel.example.test"), WIRE_TYPE_A));
    zone_free(zone);
}

static void test_zone_error_line_skips_comments_before_the_record(void **state)
{
    /* lines 5-6 are a blank line and a comment; the broken record is on line 7 */
    expect_error("example.test", DATA "syntax_after_comment.zone", NULL,
                 "syntax_after_comment.zone", 7, "bad IN A 192.0.2");
    expect_error("example.test", DATA "bad_ttl.zone", NULL, "bad_ttl.zone", 2,
                 "bad $TTL value: bogus");
}

static void test_zone_cname_beside_rrsig_is_allowed_but_not_beside_a(void **state)
{
    expect_error("example.test", DATA "cname_rrsig.zone", NULL, "cname_rrsig.zone", 5,
                 "CNAME and other data (A) at www.example.test.");
}

static void test_zone_duplicates_count_once_against_limits(void **state)
{
    struct limits limits;
    struct zone_error err;
    struct zone *zone = NULL;
    limits_init_defaults(&limits);
    limits.max_zone_records = 5; /* 6 lines of records, one a duplicate */
    assert_int_equal(zone_load("example.test", DATA "records_dup.zone", &limits, &zone, &err), 0);
    assert_int_equal(zone->record_count, 5);
    zone_free(zone);
    limits.max_zone_records = 4; /* the 5th distinct record, on line 7, crosses it */
    expect_error("example.test", DATA "records_dup.zone", &limits, "records_dup.zone", 7,
                 "has 5 records, limit is 4 (max-zone-records)");

    limits_init_defaults(&limits);
    limits.max_rrset_records = 4; /* 5 TXT lines, one a duplicate */
    assert_int_equal(zone_load("example.test", DATA "rrset_dup.zone", &limits, &zone, &err), 0);
    assert_int_equal(zone_node_rrset(find(zone, "big.example.test"), WIRE_TYPE_TXT)->count, 4);
    zone_free(zone);
    limits.max_rrset_records = 3;
    expect_error("example.test", DATA "rrset_dup.zone", &limits, "rrset_dup.zone", 5,
                 "RRset big.example.test./TXT has 4 records, limit is 3 (max-rrset-records)");
}

static void test_zone_include_depth_limit_is_exact(void **state)
{
    struct limits limits;
    struct zone_error err;
    struct zone *zone = NULL;
    limits_init_defaults(&limits);
    limits.max_include_depth = 2; /* zone -> level1 -> level2 */
    assert_int_equal(zone_load("example.test", DATA "include_chain.zone", &limits, &zone, &err), 0);
    assert_non_null(find(zone, "l2.example.test"));
    zone_free(zone);
    limits.max_include_depth = 1;
    expect_error("example.test", DATA "include_chain.zone", &limits, "inc/level1.inc", 2,
                 "nested deeper than 1 files (max-include-depth)");
}

static void test_zone_include_errors_name_the_directive(void **state)
{
    expect_error("example.test", DATA "include_missing.zone", NULL, "include_missing.zone", 4,
                 "cannot open $INCLUDE file inc/nonexistent.inc");
    /* a zone in sub/ cannot include its sibling directory's files */
    expect_error("example.test", DATA "sub/include_outside.zone", NULL, "include_outside.zone", 4,
                 "$INCLUDE outside the zone directory");
}

static void test_zone_size_limit_counts_included_files(void **state)
{
    struct stat st;
    assert_int_equal(stat(DATA "full.zone", &st), 0);
    struct limits limits;
    limits_init_defaults(&limits);
    limits.max_zone_bytes = (uint64_t)st.st_size; /* the top file fits, its include does not */
    expect_error("example.test", DATA "full.zone", &limits, "full.zone", 30, "hosts.inc, limit is");
    expect_error("example.test", DATA "full.zone", &limits, "full.zone", 30, "(max-zone-size)");
}

static void test_zone_set_exact_and_empty(void **state)
{
    struct zone *zones[2];
    zones[0] = load_ok("example.test", "tests/unit/data/answer/example.test.zone");
    zones[1] = load_ok("deep.example.test", "tests/unit/data/answer/deep.example.test.zone");
    struct zone_set *set = NULL;
    assert_int_equal(zone_set_create(zones, 2, &set), 0);
    assert_ptr_equal(zone_set_find_exact(set, zones[1]->apex, zones[1]->apex_len), zones[1]);
    uint8_t name[WIRE_NAME_MAX];
    size_t len = 0;
    assert_int_equal(wire_name_from_text("www.example.test", name, &len), 0);
    assert_null(zone_set_find_exact(set, name, len));
    /* the deep zone's apex itself belongs to the deep zone */
    assert_ptr_equal(zone_set_find(set, zones[1]->apex, zones[1]->apex_len), zones[1]);
    zone_set_free(set);

    struct zone_set *empty = NULL;
    assert_int_equal(zone_set_create(NULL, 0, &empty), 0);
    assert_null(zone_set_find(empty, name, len));
    zone_set_free(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zone_loads_records_and_metadata),
        cmocka_unit_test(test_zone_lowercases_names_in_rdata),
        cmocka_unit_test(test_zone_empty_non_terminals_and_flags),
        cmocka_unit_test(test_zone_rejects_syntax_error_with_line),
        cmocka_unit_test(test_zone_rejects_bad_soa_and_ns),
        cmocka_unit_test(test_zone_rejects_bad_records),
        cmocka_unit_test(test_zone_include_rules),
        cmocka_unit_test(test_zone_limits),
        cmocka_unit_test(test_zone_set_most_specific_and_duplicates),
        cmocka_unit_test(test_zone_full_counts_ttls_and_soa_fields),
        cmocka_unit_test(test_zone_full_lowercases_rdata_names),
        cmocka_unit_test(test_zone_full_nodes_and_flags),
        cmocka_unit_test(test_zone_relative_origin_and_include_origin),
        cmocka_unit_test(test_zone_error_line_skips_comments_before_the_record),
        cmocka_unit_test(test_zone_cname_beside_rrsig_is_allowed_but_not_beside_a),
        cmocka_unit_test(test_zone_duplicates_count_once_against_limits),
        cmocka_unit_test(test_zone_include_depth_limit_is_exact),
        cmocka_unit_test(test_zone_include_errors_name_the_directive),
        cmocka_unit_test(test_zone_size_limit_counts_included_files),
        cmocka_unit_test(test_zone_set_exact_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
