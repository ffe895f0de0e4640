/* Unit tests for authd/zone.c: loading master files, nodes and flags, every rejection with its
 * file, line and reason, limits, and the zone set's most-specific match. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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
    expect_error("s.test", DATA "twosoa.zone", NULL, "twosoa.zone", 0, "exactly one");
    expect_error("s.test", DATA "soanotapex.zone", NULL, "soanotapex.zone", 4, "not at the zone apex");
    expect_error("s.test", DATA "nons.zone", NULL, "nons.zone", 0, "no NS");
}

static void test_zone_rejects_bad_records(void **state)
{
    expect_error("s.test", DATA "outofzone.zone", NULL, "outofzone.zone", 4, "outside zone s.test.");
    expect_error("s.test", DATA "cnameother.zone", NULL, "cnameother.zone", 4, "CNAME and other data");
    expect_error("s.test", DATA "chaos.zone", NULL, "chaos.zone", 4, "class");
    expect_error("s.test", DATA "missing.zone", NULL, "missing.zone", 0, "cannot open");
}

static void test_zone_include_rules(void **state)
{
    expect_error("good.test", DATA "outside.zone", NULL, "outside.zone", 4, "outside the zone directory");
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
