/* Unit tests for authd/answer.c: every answer case of RFC 1034 §4.3.2 and the later RFCs, on
 * the zones in tests/unit/data/answer/, with responses decoded by ldns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <ldns/ldns.h>

#include "answer.h"
#include "errors.h"
#include "healthd.h"
#include "wire.h"
#include <urcu/urcu-memb.h>

#define DATA "tests/unit/data/answer/"

static struct zone_set *test_zones;
static struct limits test_limits;

static int setup_zones(void **state)
{
    struct zone *zones[2];
    struct zone_error err;
    limits_init_defaults(&test_limits);
    if (zone_load("example.test", DATA "example.test.zone", &test_limits, &zones[0], &err) != 0) {
        fprintf(stderr, "%s:%u: %s\n", err.file, err.line, err.reason);
        return -1;
    }
    if (zone_load("deep.example.test", DATA "deep.example.test.zone", &test_limits, &zones[1],
                  &err) != 0) {
        fprintf(stderr, "%s:%u: %s\n", err.file, err.line, err.reason);
        return -1;
    }
    return zone_set_create(zones, 2, &test_zones);
}

static int teardown_zones(void **state)
{
    zone_set_free(test_zones);
    return 0;
}

struct query_options {
    bool edns;
    uint16_t udp_size;
    uint8_t edns_version;
    bool tcp;
    uint16_t flags;
};

static size_t make_query(uint8_t *buf, const char *name, uint16_t type,
                         const struct query_options *o)
{
    memset(buf, 0, 12);
    wire_write_u16(buf, 0x1234);
    wire_write_u16(buf + 2, o->flags);
    wire_write_u16(buf + 4, 1);
    wire_write_u16(buf + 10, o->edns ? 1 : 0);
    size_t name_len = 0;
    assert_int_equal(wire_name_from_text(name, buf + 12, &name_len), 0);
    size_t len = 12 + name_len;
    wire_write_u16(buf + len, type);
    wire_write_u16(buf + len + 2, WIRE_CLASS_IN);
    len += 4;
    if (o->edns) {
        uint8_t opt[11] = {0, 0, 41, 0, 0, 0, 0, 0, 0, 0, 0};
        wire_write_u16(opt + 3, o->udp_size);
        opt[6] = o->edns_version;
        memcpy(buf + len, opt, sizeof opt);
        len += sizeof opt;
    }
    return len;
}

static uint8_t response[65535];
static size_t response_len;
static struct answer_info info;

static ldns_pkt *ask_with(const char *name, uint16_t type, const struct query_options *o)
{
    uint8_t query[512];
    size_t len = make_query(query, name, type, o);
    response_len = answer_query(test_zones, &test_limits, query, len, response, sizeof response,
                                o->tcp, &info);
    assert_true(response_len >= 12);
    ldns_pkt *pkt = NULL;
    assert_int_equal(ldns_wire2pkt(&pkt, response, response_len), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_id(pkt), 0x1234);
    assert_true(ldns_pkt_qr(pkt));
    return pkt;
}

static ldns_pkt *ask(const char *name, uint16_t type)
{
    struct query_options o = {.edns = true, .udp_size = 1232};
    return ask_with(name, type, &o);
}

/* The text of RR i of a section, e.g. "www.example.test.\t3600\tIN\tA\t192.0.2.10". */
static char *rr_text(ldns_rr_list *list, size_t i)
{
    static char text[1024];
    char *s = ldns_rr2str(ldns_rr_list_rr(list, i));
    snprintf(text, sizeof text, "%s", s);
    free(s);
    text[strcspn(text, "\n")] = '\0';
    return text;
}

static uint16_t rr_type(ldns_rr_list *list, size_t i)
{
    return (uint16_t)ldns_rr_get_type(ldns_rr_list_rr(list, i));
}

static void test_answer_positive_is_authoritative(void **state)
{
    ldns_pkt *p = ask("www.example.test", WIRE_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_true(ldns_pkt_aa(p));
    assert_int_equal(ldns_pkt_ancount(p), 1);
    assert_string_equal(rr_text(ldns_pkt_answer(p), 0),
                        "www.example.test.\t3600\tIN\tA\t192.0.2.10");
    ldns_pkt_free(p);
}

static void test_answer_preserves_query_case(void **state)
{
    ldns_pkt *p = ask("wWw.ExAmPlE.TeSt", WIRE_TYPE_A);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    assert_string_equal(rr_text(ldns_pkt_question(p), 0), "wWw.ExAmPlE.TeSt.\tIN\tA");
    assert_true(strncmp(rr_text(ldns_pkt_answer(p), 0), "wWw.ExAmPlE.TeSt.", 17) == 0);
    ldns_pkt_free(p);
}

static void test_answer_nxdomain_has_soa_with_negative_ttl(void **state)
{
    ldns_pkt *p = ask("nothere.example.test", WIRE_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    assert_true(ldns_pkt_aa(p));
    assert_int_equal(ldns_pkt_ancount(p), 0);
    assert_int_equal(ldns_pkt_nscount(p), 1);
    ldns_rr *soa = ldns_rr_list_rr(ldns_pkt_authority(p), 0);
    assert_int_equal(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
    assert_int_equal(ldns_rr_ttl(soa), 300); /* min(3600, MINIMUM 300) */
    ldns_pkt_free(p);
}

static void test_answer_nodata_and_empty_non_terminal(void **state)
{
    ldns_pkt *p = ask("www.example.test", WIRE_TYPE_TXT);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 0);
    assert_int_equal(rr_type(ldns_pkt_authority(p), 0), WIRE_TYPE_SOA);
    ldns_pkt_free(p);
    p = ask("b.ent.example.test", WIRE_TYPE_A); /* exists only as an ancestor of a.b.ent */
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 0);
    assert_int_equal(ldns_pkt_nscount(p), 1);
    ldns_pkt_free(p);
}

static void test_answer_referral_has_ns_and_glue(void **state)
{
    const char *names[] = {"sub.example.test", "deeper.sub.example.test"};
    for (size_t i = 0; i < 2; i++) {
        ldns_pkt *p = ask(names[i], WIRE_TYPE_A);
        assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
        assert_false(ldns_pkt_aa(p));
        assert_int_equal(ldns_pkt_ancount(p), 0);
        assert_int_equal(ldns_pkt_nscount(p), 2);
        assert_int_equal(rr_type(ldns_pkt_authority(p), 0), WIRE_TYPE_NS);
        /* in-bailiwick glue for ns.sub; none for ns.other.test; plus our OPT (not counted) */
        assert_int_equal(ldns_pkt_arcount(p), 1);
        assert_string_equal(rr_text(ldns_pkt_additional(p), 0),
                            "ns.sub.example.test.\t3600\tIN\tA\t192.0.2.40");
        assert_true(info.referral);
        ldns_pkt_free(p);
    }
}

static void test_answer_ds_at_cut_comes_from_parent(void **state)
{
    ldns_pkt *p = ask("sub.example.test", WIRE_TYPE_DS);
    assert_true(ldns_pkt_aa(p));
    assert_int_equal(ldns_pkt_ancount(p), 1);
    assert_int_equal(rr_type(ldns_pkt_answer(p), 0), WIRE_TYPE_DS);
    ldns_pkt_free(p);
    /* DS at the apex of deep.example.test is answered by its parent zone (NODATA there) */
    p = ask("deep.example.test", WIRE_TYPE_DS);
    assert_int_equal(ldns_pkt_ancount(p), 0);
    char *soa = rr_text(ldns_pkt_authority(p), 0);
    assert_true(strncmp(soa, "example.test.", 13) == 0);
    ldns_pkt_free(p);
}

static void test_answer_follows_cname_chain_in_zone(void **state)
{
    ldns_pkt *p = ask("alias.example.test", WIRE_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 3);
    assert_int_equal(rr_type(ldns_pkt_answer(p), 0), WIRE_TYPE_CNAME);
    assert_int_equal(rr_type(ldns_pkt_answer(p), 1), WIRE_TYPE_CNAME);
    assert_string_equal(rr_text(ldns_pkt_answer(p), 2),
                        "www.example.test.\t3600\tIN\tA\t192.0.2.10");
    ldns_pkt_free(p);
    /* a CNAME query returns the CNAME itself */
    p = ask("alias.example.test", WIRE_TYPE_CNAME);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
}

static void test_answer_cname_out_of_zone_dangling_and_loop(void **state)
{
    ldns_pkt *p = ask("external.example.test", WIRE_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    p = ask("dangling.example.test", WIRE_TYPE_A); /* RFC 6604: rcode of the last name */
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    p = ask("loop1.example.test", WIRE_TYPE_A);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    ldns_pkt_free(p);
}

static void test_answer_cname_chain_limit(void **state)
{
    test_limits.cname_chain = 1;
    ldns_pkt *p = ask("alias.example.test", WIRE_TYPE_A);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    test_limits.cname_chain = LIMIT_DEFAULT_CNAME_CHAIN;
}

static void test_answer_wildcard_synthesis(void **state)
{
    ldns_pkt *p = ask("Anything.wild.example.test", WIRE_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_true(ldns_pkt_aa(p));
    assert_string_equal(rr_text(ldns_pkt_answer(p), 0),
                        "Anything.wild.example.test.\t3600\tIN\tA\t192.0.2.50");
    ldns_pkt_free(p);
    p = ask("a.b.c.wild.example.test", WIRE_TYPE_A); /* several labels below the wildcard */
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    p = ask("host.wild.example.test", WIRE_TYPE_A); /* explicit data beats the wildcard */
    assert_string_equal(rr_text(ldns_pkt_answer(p), 0),
                        "host.wild.example.test.\t3600\tIN\tA\t192.0.2.51");
    ldns_pkt_free(p);
    p = ask("x.wild.example.test", WIRE_TYPE_AAAA); /* wildcard NODATA */
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 0);
    assert_int_equal(ldns_pkt_nscount(p), 1);
    ldns_pkt_free(p);
    p = ask("host.wild.example.test", WIRE_TYPE_TXT); /* existing name: no wildcard */
    assert_int_equal(ldns_pkt_ancount(p), 0);
    ldns_pkt_free(p);
}

static void test_answer_wildcard_cname_is_followed(void **state)
{
    ldns_pkt *p = ask("foo.cw.example.test", WIRE_TYPE_A);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    assert_true(strncmp(rr_text(ldns_pkt_answer(p), 0), "foo.cw.example.test.", 20) == 0);
    assert_int_equal(rr_type(ldns_pkt_answer(p), 1), WIRE_TYPE_A);
    ldns_pkt_free(p);
}

static void test_answer_wildcard_blocked_by_empty_non_terminal(void **state)
{
    /* RFC 4592 §2.2.1: x.w2 exists (as an ENT), so z.x.w2 has closest encloser x.w2, which has
     * no wildcard child: NXDOMAIN. But q.w2 is synthesised from *.w2. x.w2 itself is NODATA. */
    ldns_pkt *p = ask("z.x.w2.example.test", WIRE_TYPE_TXT);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    ldns_pkt_free(p);
    p = ask("q.w2.example.test", WIRE_TYPE_TXT);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    p = ask("x.w2.example.test", WIRE_TYPE_TXT);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 0);
    ldns_pkt_free(p);
}

static void test_answer_most_specific_zone_and_refused(void **state)
{
    ldns_pkt *p = ask("www.deep.example.test", WIRE_TYPE_A);
    assert_string_equal(rr_text(ldns_pkt_answer(p), 0),
                        "www.deep.example.test.\t600\tIN\tA\t192.0.2.99");
    ldns_pkt_free(p);
    p = ask("www.example.org", WIRE_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
    assert_false(ldns_pkt_aa(p));
    ldns_pkt_free(p);
    p = ask("example.test", WIRE_TYPE_AXFR);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
    ldns_pkt_free(p);
}

static void test_answer_additional_addresses_for_mx_and_ns(void **state)
{
    ldns_pkt *p = ask("example.test", WIRE_TYPE_MX);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    assert_int_equal(ldns_pkt_arcount(p), 1);
    assert_string_equal(rr_text(ldns_pkt_additional(p), 0),
                        "mail.example.test.\t3600\tIN\tA\t192.0.2.20");
    ldns_pkt_free(p);
    p = ask("example.test", WIRE_TYPE_NS);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    assert_int_equal(ldns_pkt_arcount(p), 3); /* ns1 A, ns2 A, ns2 AAAA */
    ldns_pkt_free(p);
}

/* The root zone's own NS addresses sit below the test. cut; an NS answer still carries them. */
static void test_answer_ns_answer_includes_glue_below_a_cut(void **state)
{
    struct zone *root = NULL;
    struct zone_error err;
    assert_int_equal(zone_load(".", "tests/unit/data/iterate/root.zone", &test_limits, &root, &err),
                     0);
    struct zone_set *saved = test_zones;
    assert_int_equal(zone_set_create(&root, 1, &test_zones), 0);
    ldns_pkt *p = ask(".", WIRE_TYPE_NS);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    assert_int_equal(ldns_pkt_arcount(p), 1);
    assert_string_equal(rr_text(ldns_pkt_additional(p), 0),
                        "a.root-servers.test.\t86400\tIN\tA\t127.0.0.1");
    ldns_pkt_free(p);
    zone_set_free(test_zones);
    test_zones = saved;
}

static void test_answer_any_is_minimal(void **state)
{
    ldns_pkt *p = ask("example.test", WIRE_TYPE_ANY);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_true(ldns_pkt_ancount(p) >= 1);
    ldns_rr_list *answer = ldns_pkt_answer(p);
    for (size_t i = 1; i < ldns_rr_list_rr_count(answer); i++)
        assert_int_equal(rr_type(answer, i), rr_type(answer, 0)); /* one RRset */
    ldns_pkt_free(p);
}

static void test_answer_edns_echo_and_badvers(void **state)
{
    ldns_pkt *p = ask("www.example.test", WIRE_TYPE_A);
    assert_true(ldns_pkt_edns(p));
    assert_int_equal(ldns_pkt_edns_udp_size(p), 1232);
    ldns_pkt_free(p);
    struct query_options plain = {.edns = false};
    p = ask_with("www.example.test", WIRE_TYPE_A, &plain);
    assert_false(ldns_pkt_edns(p));
    ldns_pkt_free(p);
    struct query_options v1 = {.edns = true, .udp_size = 1232, .edns_version = 1};
    p = ask_with("www.example.test", WIRE_TYPE_A, &v1);
    assert_true(ldns_pkt_edns(p));
    assert_int_equal(info.rcode, WIRE_RCODE_BADVERS);
    assert_int_equal(ldns_pkt_edns_extended_rcode(p), 1); /* 16 >> 4 */
    assert_int_equal(ldns_pkt_ancount(p), 0);
    ldns_pkt_free(p);
}

static void test_answer_truncates_over_udp_and_not_over_tcp(void **state)
{
    struct query_options plain = {.edns = false};
    ldns_pkt *p = ask_with("big.example.test", WIRE_TYPE_TXT, &plain);
    assert_true(ldns_pkt_tc(p));
    assert_true(response_len <= 512);
    assert_true(ldns_pkt_ancount(p) > 0 && ldns_pkt_ancount(p) < 40); /* whole RRs that fit */
    ldns_pkt_free(p);
    p = ask("big.example.test", WIRE_TYPE_TXT);
    assert_true(ldns_pkt_tc(p));
    assert_true(response_len <= 1232);
    assert_true(ldns_pkt_edns(p)); /* the OPT survives truncation */
    ldns_pkt_free(p);
    struct query_options tcp = {.edns = true, .udp_size = 1232, .tcp = true};
    p = ask_with("big.example.test", WIRE_TYPE_TXT, &tcp);
    assert_false(ldns_pkt_tc(p));
    assert_int_equal(ldns_pkt_ancount(p), 40);
    ldns_pkt_free(p);
}

static void test_answer_malformed_notimp_and_drop(void **state)
{
    uint8_t query[512];
    struct query_options o = {.edns = false};
    size_t len = make_query(query, "www.example.test", WIRE_TYPE_A, &o);
    /* FORMERR: truncated question */
    response_len = answer_query(test_zones, &test_limits, query, len - 2, response, sizeof response,
                                false, &info);
    assert_int_equal(response_len, 12);
    assert_int_equal(WIRE_RCODE(wire_read_u16(response + 2)), WIRE_RCODE_FORMERR);
    assert_int_equal(wire_read_u16(response), 0x1234);
    /* NOTIMP: opcode 5 (UPDATE) is not implemented */
    wire_write_u16(query + 2, 5 << 11);
    response_len =
        answer_query(test_zones, &test_limits, query, len, response, sizeof response, false, &info);
    assert_int_equal(WIRE_RCODE(wire_read_u16(response + 2)), WIRE_RCODE_NOTIMP);
    assert_int_equal(WIRE_OPCODE(wire_read_u16(response + 2)), 5);
    /* a response is never answered */
    wire_write_u16(query + 2, WIRE_FLAG_QR);
    assert_int_equal(
        answer_query(test_zones, &test_limits, query, len, response, sizeof response, false, &info),
        0);
    assert_int_equal(info.outcome, ANSWER_DROPPED);
    /* no zones at all: REFUSED */
    wire_write_u16(query + 2, 0);
    response_len =
        answer_query(NULL, &test_limits, query, len, response, sizeof response, false, &info);
    assert_int_equal(WIRE_RCODE(wire_read_u16(response + 2)), WIRE_RCODE_REFUSED);
}

/* Mutated and random packets: never a crash (ASan/UBSan builds check memory), and every
 * response is either nothing or a well-formed header that echoes the ID. Deterministic seed. */
static void test_answer_survives_mutated_packets(void **state)
{
    uint32_t seed = 12345;
    uint8_t query[600] = {0};
    struct query_options o = {.edns = true, .udp_size = 4096};
    const char *names[] = {"www.example.test", "a.b.c.wild.example.test", "alias.example.test",
                           "x.sub.example.test", "big.example.test"};
    for (unsigned round = 0; round < 200000; round++) {
        size_t len = make_query(query, names[round % 5], WIRE_TYPE_A, &o);
        unsigned flips = 1 + round % 8;
        for (unsigned f = 0; f < flips; f++) {
            seed = seed * 1103515245u + 12345u;
            query[(seed >> 8) % len] = (uint8_t)(seed >> 16);
        }
        seed = seed * 1103515245u + 12345u;
        if (round % 3 == 0)
            len = (seed >> 8) % (len + 1); /* truncate */
        else if (round % 7 == 0)
            len += (seed >> 8) % 40; /* trailing garbage (uninitialised is fine: bytes) */
        size_t n = answer_query(test_zones, &test_limits, query, len, response, sizeof response,
                                round % 2 == 0, &info);
        if (n == 0)
            continue;
        assert_true(n >= 12 && n <= sizeof response);
        assert_int_equal(wire_read_u16(response), wire_read_u16(query));
        assert_true(wire_read_u16(response + 2) & WIRE_FLAG_QR);
    }
}

/* A health-checked pool overrides the zone's static RRset: its members answer, at most
 * max-records at a time, rotating; names without a pool keep the zone's data. */
static void test_answer_pool_overrides_static_rrset(void **state)
{
    struct healthd_config cfg;
    memset(&cfg, 0, sizeof cfg);
    struct healthd_pool_config *pool = calloc(1, sizeof *pool);
    assert_non_null(pool);
    pool->def.name = strdup("www.example.test/A");
    size_t owner_len = 0;
    assert_int_equal(wire_name_from_text("www.example.test", pool->def.owner, &owner_len), 0);
    pool->def.owner_len = owner_len;
    pool->def.type = WIRE_TYPE_A;
    pool->def.ttl = 30;
    pool->def.count = 3;
    pool->def.min_healthy = 1;
    pool->def.max_records = 1;
    pool->def.members = calloc(3, sizeof *pool->def.members);
    const char *addresses[] = {"192.0.2.100", "192.0.2.101", "192.0.2.102"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(pool_member_parse(WIRE_TYPE_A, addresses[i], &pool->def.members[i]), 0);
        pool->def.members[i].weight = 1;
    }
    pool->checks = calloc(3, sizeof *pool->checks); /* no probes: members are up */
    for (size_t i = 0; i < 3; i++)
        health_params_defaults(&pool->checks[i].params);
    pool->max_withdraw_share = 0.25;
    pool->withdraw_interval_ms = 10000;
    cfg.pools = pool;
    cfg.pool_count = 1;
    struct healthd *health = NULL;
    char err[256];
    assert_int_equal(healthd_start(&cfg, &health, err, sizeof err), 0);

    urcu_memb_register_thread();
    uint8_t query[512];
    size_t len = make_query(query, "www.example.test", WIRE_TYPE_A,
                            &(struct query_options){.edns = true, .udp_size = 1232});
    bool seen[3] = {false, false, false};
    for (int i = 0; i < 30; i++) {
        urcu_memb_read_lock();
        response_len = answer_query_health(test_zones, health, &test_limits, query, len, response,
                                           sizeof response, false, &info);
        urcu_memb_read_unlock();
        ldns_pkt *p = NULL;
        assert_int_equal(ldns_wire2pkt(&p, response, response_len), LDNS_STATUS_OK);
        assert_int_equal(ldns_pkt_ancount(p), 1);
        char *text = rr_text(ldns_pkt_answer(p), 0);
        assert_non_null(strstr(text, "\t30\tIN\tA\t192.0.2.10")); /* pool TTL, pool member */
        seen[text[strlen(text) - 1] - '0'] = true;
        ldns_pkt_free(p);
    }
    assert_true(seen[0] && seen[1] && seen[2]); /* rotation reaches every member */
    /* other names keep the zone's data */
    len = make_query(query, "mail.example.test", WIRE_TYPE_A,
                     &(struct query_options){.edns = true, .udp_size = 1232});
    urcu_memb_read_lock();
    response_len = answer_query_health(test_zones, health, &test_limits, query, len, response,
                                       sizeof response, false, &info);
    urcu_memb_read_unlock();
    ldns_pkt *p = NULL;
    assert_int_equal(ldns_wire2pkt(&p, response, response_len), LDNS_STATUS_OK);
    assert_string_equal(rr_text(ldns_pkt_answer(p), 0),
                        "mail.example.test.\t3600\tIN\tA\t192.0.2.20");
    ldns_pkt_free(p);
    urcu_memb_unregister_thread();
    healthd_stop(health);
    healthd_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_positive_is_authoritative),
        cmocka_unit_test(test_answer_preserves_query_case),
        cmocka_unit_test(test_answer_nxdomain_has_soa_with_negative_ttl),
        cmocka_unit_test(test_answer_nodata_and_empty_non_terminal),
        cmocka_unit_test(test_answer_referral_has_ns_and_glue),
        cmocka_unit_test(test_answer_ds_at_cut_comes_from_parent),
        cmocka_unit_test(test_answer_follows_cname_chain_in_zone),
        cmocka_unit_test(test_answer_cname_out_of_zone_dangling_and_loop),
        cmocka_unit_test(test_answer_cname_chain_limit),
        cmocka_unit_test(test_answer_wildcard_synthesis),
        cmocka_unit_test(test_answer_wildcard_cname_is_followed),
        cmocka_unit_test(test_answer_wildcard_blocked_by_empty_non_terminal),
        cmocka_unit_test(test_answer_most_specific_zone_and_refused),
        cmocka_unit_test(test_answer_additional_addresses_for_mx_and_ns),
        cmocka_unit_test(test_answer_ns_answer_includes_glue_below_a_cut),
        cmocka_unit_test(test_answer_any_is_minimal),
        cmocka_unit_test(test_answer_edns_echo_and_badvers),
        cmocka_unit_test(test_answer_truncates_over_udp_and_not_over_tcp),
        cmocka_unit_test(test_answer_malformed_notimp_and_drop),
        cmocka_unit_test(test_answer_survives_mutated_packets),
        cmocka_unit_test(test_answer_pool_overrides_static_rrset),
    };
    return cmocka_run_group_tests(tests, setup_zones, teardown_zones);
}
