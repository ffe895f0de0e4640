/* Unit tests for resolver/scrub.c: answer matching (address, port, ID, question), classification
 * (answer, CNAME, DNAME, negative, referral, lame, ...) and bailiwick scrubbing, with responses
 * built by ldns; malformed and random input never crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "errors.h"
#include "limit.h"
#include "scrub.h"
#include "wire.h"

#define TEST_ID 0x1234

/* The query we "sent": www.example.test/A to the example.test servers at 127.0.0.1@5301. */
struct fixture {
    uint8_t qname[WIRE_NAME_MAX];
    uint8_t zone[WIRE_NAME_MAX];
    struct addr server;
    struct scrub_query query;
    struct scrub_result result;
};

static struct fixture fx;

static void set_query(const char *qname, uint16_t qtype, const char *zone)
{
    size_t len;
    assert_int_equal(wire_name_from_text(qname, fx.qname, &len), 0);
    fx.query.qname = fx.qname;
    fx.query.qname_len = len;
    assert_int_equal(wire_name_from_text(zone, fx.zone, &len), 0);
    fx.query.zone = fx.zone;
    fx.query.zone_len = len;
    fx.query.qtype = qtype;
}

static int setup(void **state)
{
    memset(&fx, 0, sizeof fx);
    assert_int_equal(addr_parse("127.0.0.1@5301", 53, &fx.server), 0);
    fx.query.id = TEST_ID;
    fx.query.qclass = LDNS_RR_CLASS_IN;
    fx.query.server = &fx.server;
    set_query("www.example.test", LDNS_RR_TYPE_A, "example.test");
    return 0;
}

static int teardown(void **state)
{
    scrub_result_free(&fx.result);
    return 0;
}

static ldns_pkt *response_for(const char *qname, ldns_rr_type qtype, uint8_t rcode, bool aa)
{
    ldns_pkt *p = ldns_pkt_new();
    assert_non_null(p);
    ldns_pkt_set_id(p, TEST_ID);
    ldns_pkt_set_qr(p, true);
    ldns_pkt_set_aa(p, aa);
    ldns_pkt_set_rcode(p, rcode);
    if (qname != NULL) {
        ldns_rr *q = ldns_rr_new();
        ldns_rdf *owner = ldns_dname_new_frm_str(qname);
        assert_non_null(owner);
        ldns_rr_set_owner(q, owner);
        ldns_rr_set_type(q, qtype);
        ldns_rr_set_class(q, LDNS_RR_CLASS_IN);
        ldns_rr_set_question(q, true);
        assert_true(ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, q));
    }
    return p;
}

static ldns_pkt *response(uint8_t rcode, bool aa)
{
    return response_for("www.example.test.", LDNS_RR_TYPE_A, rcode, aa);
}

static void add(ldns_pkt *p, ldns_pkt_section section, const char *text)
{
    ldns_rr *rr = NULL;
    if (ldns_rr_new_frm_str(&rr, text, 3600, NULL, NULL) != LDNS_STATUS_OK)
        fail_msg("bad test record: %s", text);
    assert_true(ldns_pkt_push_rr(p, section, rr));
}

static int scrub_bytes_from(const uint8_t *buf, size_t len, const char *from_text)
{
    struct addr from;
    assert_int_equal(addr_parse(from_text, 53, &from), 0);
    scrub_result_free(&fx.result);
    return scrub_response(buf, len, &fx.query, (const struct sockaddr *)&from.ss, &fx.result);
}

/* Serialise p (and free it), scrub it as received from from_text. */
static enum scrub_status scrub_pkt_from(ldns_pkt *p, const char *from_text)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(ldns_pkt2wire(&buf, p, &len), LDNS_STATUS_OK);
    ldns_pkt_free(p);
    assert_int_equal(scrub_bytes_from(buf, len, from_text), 0);
    free(buf);
    return fx.result.status;
}

static enum scrub_status scrub_pkt(ldns_pkt *p)
{
    return scrub_pkt_from(p, "127.0.0.1@5301");
}

static void assert_name(const ldns_rdf *name, const char *text)
{
    assert_non_null(name);
    ldns_rdf *expected = ldns_dname_new_frm_str(text);
    int cmp = ldns_dname_compare(name, expected);
    ldns_rdf_deep_free(expected);
    if (cmp != 0) {
        char *got = ldns_rdf2str(name);
        print_error("expected %s, got %s\n", text, got);
        free(got);
        fail();
    }
}

static const ldns_rr *answer_rr(size_t set, size_t index)
{
    assert_true(set < fx.result.answer_count);
    assert_true(index < ldns_rr_list_rr_count(fx.result.answer[set]));
    return ldns_rr_list_rr(fx.result.answer[set], index);
}

static size_t list_count(const ldns_rr_list *list)
{
    return list != NULL ? ldns_rr_list_rr_count(list) : 0;
}

static void test_scrub_accepts_good_answer(void **state)
{
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN A 192.0.2.1");
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN A 192.0.2.2");
    ldns_pkt_set_edns_udp_size(p, 1232);
    assert_int_equal(scrub_pkt(p), SCRUB_ANSWER);
    assert_int_equal(fx.result.reject, SCRUB_REJECT_NONE);
    assert_true(fx.result.aa);
    assert_true(fx.result.edns);
    assert_int_equal(fx.result.answer_count, 1);
    assert_int_equal(ldns_rr_list_rr_count(fx.result.answer[0]), 2);
    assert_int_equal(ldns_rr_ttl(answer_rr(0, 0)), 300);
    assert_name(fx.result.target, "www.example.test.");
    assert_int_equal(fx.result.chain_length, 0);
    assert_int_equal(fx.result.dropped, 0);
    assert_null(fx.result.soa);
    assert_null(fx.result.referral_ns);
}

static void test_scrub_question_matches_case_insensitively(void **state)
{
    ldns_pkt *p = response_for("WwW.ExAmPlE.tEsT.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "WWW.EXAMPLE.TEST. 300 IN A 192.0.2.1");
    assert_int_equal(scrub_pkt(p), SCRUB_ANSWER);
    assert_int_equal(fx.result.answer_count, 1);
}

static void expect_reject(ldns_pkt *p, const char *from, enum scrub_reject reject)
{
    assert_int_equal(scrub_pkt_from(p, from), SCRUB_REJECTED);
    assert_int_equal(fx.result.reject, reject);
    assert_non_null(fx.result.why);
    assert_int_equal(fx.result.answer_count, 0);
}

static ldns_pkt *good_answer(void)
{
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN A 192.0.2.1");
    return p;
}

static void test_scrub_rejects_wrong_source_id_or_question(void **state)
{
    expect_reject(good_answer(), "127.0.0.2@5301", SCRUB_REJECT_ADDRESS);
    expect_reject(good_answer(), "127.0.0.1@5302", SCRUB_REJECT_PORT);
    expect_reject(good_answer(), "::1@5301", SCRUB_REJECT_ADDRESS);

    ldns_pkt *p = good_answer();
    ldns_pkt_set_id(p, TEST_ID + 1);
    expect_reject(p, "127.0.0.1@5301", SCRUB_REJECT_ID);

    p = good_answer();
    ldns_pkt_set_qr(p, false);
    expect_reject(p, "127.0.0.1@5301", SCRUB_REJECT_NOT_REPLY);

    p = good_answer();
    ldns_pkt_set_opcode(p, LDNS_PACKET_NOTIFY);
    expect_reject(p, "127.0.0.1@5301", SCRUB_REJECT_OPCODE);

    p = response_for("www.victim.org.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "www.victim.org. 300 IN A 6.6.6.6");
    expect_reject(p, "127.0.0.1@5301", SCRUB_REJECT_QUESTION);

    p = response_for("www.example.test.", LDNS_RR_TYPE_AAAA, LDNS_RCODE_NOERROR, true);
    expect_reject(p, "127.0.0.1@5301", SCRUB_REJECT_QUESTION);

    p = response_for(NULL, 0, LDNS_RCODE_NOERROR, true); /* no question at all */
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN A 192.0.2.1");
    expect_reject(p, "127.0.0.1@5301", SCRUB_REJECT_QUESTION);

    p = good_answer(); /* a second question */
    ldns_rr *q2 = NULL;
    assert_int_equal(ldns_rr_new_question_frm_str(&q2, "www.example.test. IN A", NULL, NULL),
                     LDNS_STATUS_OK);
    assert_true(ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, q2));
    expect_reject(p, "127.0.0.1@5301", SCRUB_REJECT_QUESTION);
}

static void test_scrub_drops_out_of_bailiwick_records(void **state)
{
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN A 192.0.2.1");
    add(p, LDNS_SECTION_ANSWER, "www.victim.org. 300 IN A 6.6.6.6");
    add(p, LDNS_SECTION_AUTHORITY, "org. 86400 IN NS ns.evil.example.test.");
    add(p, LDNS_SECTION_AUTHORITY, "example.test. 3600 IN NS ns1.example.test.");
    add(p, LDNS_SECTION_ADDITIONAL, "www.victim.org. 300 IN A 6.6.6.6");
    add(p, LDNS_SECTION_ADDITIONAL, "ns.evil.example.test. 300 IN A 6.6.6.6");
    add(p, LDNS_SECTION_ADDITIONAL, "ns1.example.test. 300 IN A 192.0.2.53");
    assert_int_equal(scrub_pkt(p), SCRUB_ANSWER);
    assert_int_equal(fx.result.answer_count, 1);
    assert_int_equal(ldns_rr_list_rr_count(fx.result.answer[0]), 1);
    assert_name(ldns_rr_owner(answer_rr(0, 0)), "www.example.test.");
    assert_int_equal(fx.result.out_of_bailiwick, 3);
    assert_int_equal(fx.result.dropped, 6); /* nothing but the answer is kept */
    assert_null(fx.result.glue);
    assert_null(fx.result.referral_ns);
}

static void test_scrub_drops_records_of_another_class(void **state)
{
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 CH A 192.0.2.9");
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN A 192.0.2.1");
    assert_int_equal(scrub_pkt(p), SCRUB_ANSWER);
    assert_int_equal(ldns_rr_list_rr_count(fx.result.answer[0]), 1);
    assert_int_equal(ldns_rr_get_class(answer_rr(0, 0)), LDNS_RR_CLASS_IN);
}

static void test_scrub_referral_keeps_glue_of_ns_names_only(void **state)
{
    set_query("www.example.test", LDNS_RR_TYPE_A, "test"); /* we asked the test. servers */
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, false);
    add(p, LDNS_SECTION_AUTHORITY, "example.test. 86400 IN NS ns1.example.test.");
    add(p, LDNS_SECTION_AUTHORITY, "example.test. 86400 IN NS ns2.elsewhere.test.");
    add(p, LDNS_SECTION_AUTHORITY, "example.test. 86400 IN NS ns.victim.org.");
    add(p, LDNS_SECTION_ADDITIONAL, "ns1.example.test. 86400 IN A 192.0.2.53");
    add(p, LDNS_SECTION_ADDITIONAL, "ns1.example.test. 86400 IN AAAA 2001:db8::53");
    add(p, LDNS_SECTION_ADDITIONAL, "ns2.elsewhere.test. 86400 IN A 192.0.2.54");
    add(p, LDNS_SECTION_ADDITIONAL, "ns.victim.org. 86400 IN A 6.6.6.6");
    add(p, LDNS_SECTION_ADDITIONAL, "unrelated.test. 86400 IN A 6.6.6.7");
    assert_int_equal(scrub_pkt(p), SCRUB_REFERRAL);
    assert_name(fx.result.referral_zone, "example.test.");
    assert_int_equal(list_count(fx.result.referral_ns), 3);
    assert_int_equal(list_count(fx.result.glue), 3);
    for (size_t i = 0; i < list_count(fx.result.glue); i++) {
        const ldns_rdf *owner = ldns_rr_owner(ldns_rr_list_rr(fx.result.glue, i));
        char *text = ldns_rdf2str(owner);
        bool ok =
            strcmp(text, "ns1.example.test.") == 0 || strcmp(text, "ns2.elsewhere.test.") == 0;
        free(text);
        assert_true(ok);
    }
    assert_int_equal(fx.result.out_of_bailiwick, 1);
    assert_int_equal(fx.result.dropped, 2);
    assert_int_equal(fx.result.answer_count, 0);
}

static void test_scrub_referral_picks_deepest_valid_delegation(void **state)
{
    set_query("a.b.sub.example.test", LDNS_RR_TYPE_A, "test");
    ldns_pkt *p = response_for("a.b.sub.example.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, false);
    add(p, LDNS_SECTION_AUTHORITY, "example.test. 86400 IN NS ns1.example.test.");
    add(p, LDNS_SECTION_AUTHORITY, "sub.example.test. 86400 IN NS ns.sub.example.test.");
    add(p, LDNS_SECTION_AUTHORITY, "other.test. 86400 IN NS ns.other.test.");
    assert_int_equal(scrub_pkt(p), SCRUB_REFERRAL);
    assert_name(fx.result.referral_zone, "sub.example.test.");
    assert_int_equal(list_count(fx.result.referral_ns), 1);
}

static void expect_lame(ldns_pkt *p, const char *why_part)
{
    assert_int_equal(scrub_pkt(p), SCRUB_LAME);
    assert_non_null(fx.result.why);
    if (strstr(fx.result.why, why_part) == NULL)
        fail_msg("why '%s' lacks '%s'", fx.result.why, why_part);
    assert_int_equal(fx.result.answer_count, 0);
    assert_null(fx.result.referral_ns);
    assert_null(fx.result.glue);
}

static void test_scrub_upward_and_sideways_referrals_are_lame(void **state)
{
    const char *upward[] = {". 518400 IN NS a.root-servers.net.", "test. 86400 IN NS ns.test.",
                            "example.test. 86400 IN NS ns1.example.test."};
    for (size_t i = 0; i < sizeof upward / sizeof upward[0]; i++) {
        ldns_pkt *p = response(LDNS_RCODE_NOERROR, false);
        add(p, LDNS_SECTION_AUTHORITY, upward[i]);
        add(p, LDNS_SECTION_ADDITIONAL, "a.root-servers.net. 3600 IN A 198.41.0.4");
        expect_lame(p, "upward");
    }
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, false);
    add(p, LDNS_SECTION_AUTHORITY, "org. 86400 IN NS ns.victim.org.");
    expect_lame(p, "sideways");
    p = response(LDNS_RCODE_NOERROR, false);
    add(p, LDNS_SECTION_AUTHORITY, "other.example.test. 86400 IN NS ns.other.example.test.");
    expect_lame(p, "not an ancestor");
    p = response(LDNS_RCODE_NOERROR, false); /* empty, not authoritative */
    expect_lame(p, "not authoritative");
}

static void test_scrub_refused_and_notauth_are_lame(void **state)
{
    expect_lame(response(LDNS_RCODE_REFUSED, false), "REFUSED");
    expect_lame(response(LDNS_RCODE_NOTAUTH, true), "NOTAUTH");
}

static void test_scrub_non_authoritative_answer_is_lame(void **state)
{
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, false);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN A 192.0.2.1");
    expect_lame(p, "AA");
    p = response(LDNS_RCODE_NXDOMAIN, false);
    expect_lame(p, "AA");
}

static void test_scrub_forwarder_answers_need_no_aa_but_may_not_refer(void **state)
{
    fx.query.forwarder = true;
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, false);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN A 192.0.2.1");
    assert_int_equal(scrub_pkt(p), SCRUB_ANSWER);
    p = response(LDNS_RCODE_NOERROR, false);
    add(p, LDNS_SECTION_AUTHORITY, "www.example.test. 86400 IN NS ns1.example.test.");
    expect_lame(p, "forwarder");
}

static void test_scrub_servfail_formerr_notimp(void **state)
{
    assert_int_equal(scrub_pkt(response(LDNS_RCODE_SERVFAIL, false)), SCRUB_SERVFAIL);
    assert_int_equal(scrub_pkt(response(LDNS_RCODE_NOTIMPL, false)), SCRUB_FORMERR);
    /* A server that chokes on EDNS may send FORMERR without the question. */
    assert_int_equal(scrub_pkt(response_for(NULL, 0, LDNS_RCODE_FORMERR, false)), SCRUB_FORMERR);
    assert_int_equal(fx.result.rcode, LDNS_RCODE_FORMERR);
    assert_int_equal(scrub_pkt(response(LDNS_RCODE_YXDOMAIN, true)), SCRUB_SERVFAIL);
}

static void test_scrub_nxdomain_keeps_matching_soa(void **state)
{
    ldns_pkt *p = response(LDNS_RCODE_NXDOMAIN, true);
    add(p, LDNS_SECTION_AUTHORITY,
        "victim.org. 3600 IN SOA ns.victim.org. h.victim.org. 1 2 3 4 5");
    add(p, LDNS_SECTION_AUTHORITY,
        "sub.example.test. 3600 IN SOA ns.example.test. h.example.test. 1 2 3 4 5");
    add(p, LDNS_SECTION_AUTHORITY,
        "example.test. 3600 IN SOA ns.example.test. h.example.test. 1 2 3 4 300");
    assert_int_equal(scrub_pkt(p), SCRUB_NXDOMAIN);
    assert_non_null(fx.result.soa);
    assert_name(ldns_rr_owner(fx.result.soa), "example.test.");
    assert_name(fx.result.target, "www.example.test.");
    assert_int_equal(fx.result.out_of_bailiwick, 1);
    assert_int_equal(fx.result.dropped, 2);
    /* Without an SOA: still NXDOMAIN, but nothing to negatively cache with. */
    assert_int_equal(scrub_pkt(response(LDNS_RCODE_NXDOMAIN, true)), SCRUB_NXDOMAIN);
    assert_null(fx.result.soa);
}

static void test_scrub_nodata_with_soa(void **state)
{
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_AUTHORITY,
        "example.test. 3600 IN SOA ns.example.test. h.example.test. 1 2 3 4 300");
    assert_int_equal(scrub_pkt(p), SCRUB_NODATA);
    assert_non_null(fx.result.soa);
    assert_int_equal(fx.result.answer_count, 0);
    /* Data of another type at qname is not an answer. */
    p = response(LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN TXT \"hello\"");
    add(p, LDNS_SECTION_AUTHORITY,
        "example.test. 3600 IN SOA ns.example.test. h.example.test. 1 2 3 4 300");
    assert_int_equal(scrub_pkt(p), SCRUB_NODATA);
    assert_int_equal(fx.result.answer_count, 0);
    assert_int_equal(fx.result.dropped, 1);
}

static void test_scrub_follows_cname_chain_inside_response(void **state)
{
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "b.example.test. 300 IN A 192.0.2.1");
    add(p, LDNS_SECTION_ANSWER, "stray.example.test. 300 IN A 6.6.6.6");
    add(p, LDNS_SECTION_ANSWER, "a.example.test. 300 IN CNAME b.example.test.");
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN CNAME a.example.test.");
    assert_int_equal(scrub_pkt(p), SCRUB_ANSWER);
    assert_int_equal(fx.result.answer_count, 3);
    assert_int_equal(ldns_rr_get_type(answer_rr(0, 0)), LDNS_RR_TYPE_CNAME);
    assert_name(ldns_rr_owner(answer_rr(0, 0)), "www.example.test.");
    assert_name(ldns_rr_owner(answer_rr(1, 0)), "a.example.test.");
    assert_int_equal(ldns_rr_get_type(answer_rr(2, 0)), LDNS_RR_TYPE_A);
    assert_name(fx.result.target, "b.example.test.");
    assert_int_equal(fx.result.chain_length, 2);
    assert_int_equal(fx.result.dropped, 1);
}

static void test_scrub_cname_to_outside_name_must_be_chased(void **state)
{
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN CNAME www.victim.org.");
    add(p, LDNS_SECTION_ANSWER, "www.victim.org. 300 IN A 6.6.6.6");
    assert_int_equal(scrub_pkt(p), SCRUB_CNAME);
    assert_name(fx.result.target, "www.victim.org.");
    assert_int_equal(fx.result.answer_count, 1);
    assert_int_equal(ldns_rr_get_type(answer_rr(0, 0)), LDNS_RR_TYPE_CNAME);
    assert_int_equal(fx.result.out_of_bailiwick, 1);
    /* NXDOMAIN about a name outside our zone is not believed either (RFC 6604). */
    p = response(LDNS_RCODE_NXDOMAIN, true);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN CNAME www.victim.org.");
    assert_int_equal(scrub_pkt(p), SCRUB_CNAME);
    assert_name(fx.result.target, "www.victim.org.");
}

static void test_scrub_cname_to_inside_name_negative_answers(void **state)
{
    const char *soa = "example.test. 3600 IN SOA ns.example.test. h.example.test. 1 2 3 4 300";
    ldns_pkt *p = response(LDNS_RCODE_NXDOMAIN, true);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN CNAME gone.example.test.");
    add(p, LDNS_SECTION_AUTHORITY, soa);
    assert_int_equal(scrub_pkt(p), SCRUB_NXDOMAIN);
    assert_name(fx.result.target, "gone.example.test.");
    assert_int_equal(fx.result.answer_count, 1);
    assert_non_null(fx.result.soa);

    p = response(LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN CNAME txt.example.test.");
    add(p, LDNS_SECTION_AUTHORITY, soa);
    assert_int_equal(scrub_pkt(p), SCRUB_NODATA);
    assert_name(fx.result.target, "txt.example.test.");

    /* In the zone, but nothing said about the target: chase it. */
    p = response(LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN CNAME deleg.sub.example.test.");
    add(p, LDNS_SECTION_AUTHORITY, "sub.example.test. 300 IN NS ns.sub.example.test.");
    assert_int_equal(scrub_pkt(p), SCRUB_CNAME);
    assert_name(fx.result.target, "deleg.sub.example.test.");
}

static void test_scrub_cname_loop_stops_at_chain_limit(void **state)
{
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN CNAME loop.example.test.");
    add(p, LDNS_SECTION_ANSWER, "loop.example.test. 300 IN CNAME www.example.test.");
    add(p, LDNS_SECTION_AUTHORITY,
        "example.test. 3600 IN SOA ns.example.test. h.example.test. 1 2 3 4 300");
    assert_int_equal(scrub_pkt(p), SCRUB_CNAME);
    assert_int_equal(fx.result.chain_length, LIMIT_DEFAULT_CNAME_CHAIN);
    assert_int_equal(fx.result.answer_count, LIMIT_DEFAULT_CNAME_CHAIN);
}

static void test_scrub_dname_synthesises_cname(void **state)
{
    set_query("www.old.example.test", LDNS_RR_TYPE_A, "example.test");
    /* The server's CNAME agrees with the DNAME. */
    ldns_pkt *p = response_for("www.old.example.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "old.example.test. 600 IN DNAME new.example.test.");
    add(p, LDNS_SECTION_ANSWER, "www.old.example.test. 0 IN CNAME www.new.example.test.");
    add(p, LDNS_SECTION_ANSWER, "www.new.example.test. 300 IN A 192.0.2.7");
    assert_int_equal(scrub_pkt(p), SCRUB_ANSWER);
    assert_int_equal(fx.result.answer_count, 3);
    assert_int_equal(ldns_rr_get_type(answer_rr(0, 0)), LDNS_RR_TYPE_DNAME);
    const ldns_rr *cname = answer_rr(1, 0);
    assert_int_equal(ldns_rr_get_type(cname), LDNS_RR_TYPE_CNAME);
    assert_name(ldns_rr_owner(cname), "www.old.example.test.");
    assert_name(ldns_rr_rdf(cname, 0), "www.new.example.test.");
    assert_int_equal(ldns_rr_ttl(cname), 600); /* the DNAME's TTL */
    assert_name(fx.result.target, "www.new.example.test.");
    assert_int_equal(fx.result.dropped, 0);

    /* No CNAME, or a lying one: the synthesised CNAME is what counts. */
    p = response_for("www.old.example.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "old.example.test. 600 IN DNAME new.example.test.");
    add(p, LDNS_SECTION_ANSWER, "www.old.example.test. 300 IN CNAME evil.example.test.");
    add(p, LDNS_SECTION_ANSWER, "evil.example.test. 300 IN A 6.6.6.6");
    add(p, LDNS_SECTION_ANSWER, "www.new.example.test. 300 IN A 192.0.2.7");
    assert_int_equal(scrub_pkt(p), SCRUB_ANSWER);
    assert_int_equal(fx.result.answer_count, 3);
    assert_name(ldns_rr_rdf(answer_rr(1, 0), 0), "www.new.example.test.");
    assert_int_equal(ldns_rr_list_rr_count(fx.result.answer[2]), 1);
    assert_name(ldns_rr_owner(answer_rr(2, 0)), "www.new.example.test.");
    assert_int_equal(fx.result.dropped, 2);
}

static void test_scrub_dname_to_outside_and_out_of_bailiwick(void **state)
{
    set_query("www.old.example.test", LDNS_RR_TYPE_A, "example.test");
    ldns_pkt *p = response_for("www.old.example.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "old.example.test. 600 IN DNAME new.victim.org.");
    add(p, LDNS_SECTION_ANSWER, "www.new.victim.org. 300 IN A 6.6.6.6");
    assert_int_equal(scrub_pkt(p), SCRUB_CNAME);
    assert_name(fx.result.target, "www.new.victim.org.");
    assert_int_equal(fx.result.answer_count, 2);

    /* A DNAME above our zone is not ours to believe. */
    p = response_for("www.old.example.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "test. 600 IN DNAME victim.org.");
    add(p, LDNS_SECTION_ANSWER, "www.old.example.test. 300 IN CNAME www.old.example.victim.org.");
    assert_int_equal(scrub_pkt(p), SCRUB_CNAME);
    assert_name(fx.result.target, "www.old.example.victim.org.");
    assert_int_equal(fx.result.answer_count, 1);
    assert_int_equal(fx.result.out_of_bailiwick, 1);
}

static void test_scrub_dname_query_answered_by_dname(void **state)
{
    set_query("old.example.test", LDNS_RR_TYPE_DNAME, "example.test");
    ldns_pkt *p = response_for("old.example.test.", LDNS_RR_TYPE_DNAME, LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "old.example.test. 600 IN DNAME new.example.test.");
    assert_int_equal(scrub_pkt(p), SCRUB_ANSWER);
    assert_int_equal(fx.result.chain_length, 0);
}

static void test_scrub_ns_answer_keeps_addresses_of_ns_names(void **state)
{
    set_query("example.test", LDNS_RR_TYPE_NS, "example.test");
    ldns_pkt *p = response_for("example.test.", LDNS_RR_TYPE_NS, LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "example.test. 3600 IN NS ns1.example.test.");
    add(p, LDNS_SECTION_ANSWER, "example.test. 3600 IN NS ns.victim.org.");
    add(p, LDNS_SECTION_ADDITIONAL, "ns1.example.test. 3600 IN A 192.0.2.53");
    add(p, LDNS_SECTION_ADDITIONAL, "mail.example.test. 3600 IN A 192.0.2.25");
    add(p, LDNS_SECTION_ADDITIONAL, "ns.victim.org. 3600 IN A 6.6.6.6");
    assert_int_equal(scrub_pkt(p), SCRUB_ANSWER);
    assert_int_equal(ldns_rr_list_rr_count(fx.result.answer[0]), 2);
    assert_int_equal(list_count(fx.result.glue), 1);
    assert_name(ldns_rr_owner(ldns_rr_list_rr(fx.result.glue, 0)), "ns1.example.test.");
}

static void test_scrub_any_answer_grouped_by_type(void **state)
{
    set_query("www.example.test", LDNS_RR_TYPE_ANY, "example.test");
    ldns_pkt *p = response_for("www.example.test.", LDNS_RR_TYPE_ANY, LDNS_RCODE_NOERROR, true);
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN A 192.0.2.1");
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN TXT \"x\"");
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN A 192.0.2.2");
    assert_int_equal(scrub_pkt(p), SCRUB_ANSWER);
    assert_int_equal(fx.result.answer_count, 2);
    assert_int_equal(ldns_rr_list_rr_count(fx.result.answer[0]), 2);
    assert_int_equal(ldns_rr_list_rr_count(fx.result.answer[1]), 1);
}

static void test_scrub_truncated_means_retry_over_tcp(void **state)
{
    ldns_pkt *p = good_answer();
    ldns_pkt_set_tc(p, true);
    assert_int_equal(scrub_pkt(p), SCRUB_TRUNCATED);
    assert_int_equal(fx.result.answer_count, 0);
}

/* xorshift32: reproducible noise. */
static uint32_t noise(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void test_scrub_garbage_is_malformed_never_a_crash(void **state)
{
    uint8_t junk[64];
    uint32_t seed = 12345;
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)noise(&seed);
    junk[0] = TEST_ID >> 8;
    junk[1] = TEST_ID & 0xff;
    junk[2] = 0x80; /* QR, opcode QUERY */
    junk[4] = 0x7f; /* absurd counts */
    assert_int_equal(scrub_bytes_from(junk, sizeof junk, "127.0.0.1@5301"), 0);
    assert_int_equal(fx.result.status, SCRUB_REJECTED);
    assert_int_equal(fx.result.reject, SCRUB_REJECT_MALFORMED);
    assert_int_equal(scrub_bytes_from(junk, 5, "127.0.0.1@5301"), 0);
    assert_int_equal(fx.result.reject, SCRUB_REJECT_MALFORMED);
    assert_int_equal(scrub_bytes_from(NULL, 0, "127.0.0.1@5301"), 0);
    assert_int_equal(fx.result.reject, SCRUB_REJECT_MALFORMED);

    /* Random bytes behind a valid header, and bit flips of a real referral. */
    ldns_pkt *p = response(LDNS_RCODE_NOERROR, false);
    add(p, LDNS_SECTION_AUTHORITY, "example.test. 86400 IN NS ns1.example.test.");
    add(p, LDNS_SECTION_ADDITIONAL, "ns1.example.test. 86400 IN A 192.0.2.53");
    add(p, LDNS_SECTION_ANSWER, "www.example.test. 300 IN CNAME a.example.test.");
    uint8_t *good = NULL;
    size_t good_len = 0;
    assert_int_equal(ldns_pkt2wire(&good, p, &good_len), LDNS_STATUS_OK);
    ldns_pkt_free(p);
    uint8_t buf[512];
    unsigned verdicts = 0;
    for (int round = 0; round < 20000; round++) {
        size_t len;
        if (round % 2 == 0) {
            len = 12 + noise(&seed) % 200;
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)noise(&seed);
            buf[0] = TEST_ID >> 8;
            buf[1] = TEST_ID & 0xff;
            buf[2] = 0x80 | (buf[2] & 0x07);
        } else {
            len = good_len - (noise(&seed) % 3 == 0 ? noise(&seed) % 16 : 0);
            memcpy(buf, good, len);
            for (int flips = 1 + (int)(noise(&seed) % 4); flips > 0; flips--)
                buf[12 + noise(&seed) % (len - 12)] ^= (uint8_t)(1u << (noise(&seed) % 8));
        }
        assert_int_equal(scrub_bytes_from(buf, len, "127.0.0.1@5301"), 0);
        verdicts += fx.result.status != SCRUB_REJECTED;
    }
    free(good);
    assert_true(verdicts > 0); /* some mutants still parse and get classified */
}

static void test_scrub_rejects_bad_arguments(void **state)
{
    struct addr from = fx.server;
    uint8_t byte = 0;
    assert_int_equal(scrub_response(&byte, 1, NULL, (struct sockaddr *)&from.ss, &fx.result),
                     BALLAST_EINVAL);
    assert_int_equal(scrub_response(&byte, 1, &fx.query, NULL, &fx.result), BALLAST_EINVAL);
    assert_int_equal(scrub_response(&byte, 1, &fx.query, (struct sockaddr *)&from.ss, NULL),
                     BALLAST_EINVAL);
    fx.query.zone_len = 3; /* not a name */
    assert_int_equal(scrub_response(&byte, 1, &fx.query, (struct sockaddr *)&from.ss, &fx.result),
                     BALLAST_EINVAL);
    assert_string_equal(scrub_status_name(SCRUB_REFERRAL), "referral");
    assert_string_equal(scrub_reject_name(SCRUB_REJECT_ID), "wrong ID");
}

#define SCRUB_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SCRUB_TEST(test_scrub_accepts_good_answer),
        SCRUB_TEST(test_scrub_question_matches_case_insensitively),
        SCRUB_TEST(test_scrub_rejects_wrong_source_id_or_question),
        SCRUB_TEST(test_scrub_drops_out_of_bailiwick_records),
        SCRUB_TEST(test_scrub_drops_records_of_another_class),
        SCRUB_TEST(test_scrub_referral_keeps_glue_of_ns_names_only),
        SCRUB_TEST(test_scrub_referral_picks_deepest_valid_delegation),
        SCRUB_TEST(test_scrub_upward_and_sideways_referrals_are_lame),
        SCRUB_TEST(test_scrub_refused_and_notauth_are_lame),
        SCRUB_TEST(test_scrub_non_authoritative_answer_is_lame),
        SCRUB_TEST(test_scrub_forwarder_answers_need_no_aa_but_may_not_refer),
        SCRUB_TEST(test_scrub_servfail_formerr_notimp),
        SCRUB_TEST(test_scrub_nxdomain_keeps_matching_soa),
        SCRUB_TEST(test_scrub_nodata_with_soa),
        SCRUB_TEST(test_scrub_follows_cname_chain_inside_response),
        SCRUB_TEST(test_scrub_cname_to_outside_name_must_be_chased),
        SCRUB_TEST(test_scrub_cname_to_inside_name_negative_answers),
        SCRUB_TEST(test_scrub_cname_loop_stops_at_chain_limit),
        SCRUB_TEST(test_scrub_dname_synthesises_cname),
        SCRUB_TEST(test_scrub_dname_to_outside_and_out_of_bailiwick),
        SCRUB_TEST(test_scrub_dname_query_answered_by_dname),
        SCRUB_TEST(test_scrub_ns_answer_keeps_addresses_of_ns_names),
        SCRUB_TEST(test_scrub_any_answer_grouped_by_type),
        SCRUB_TEST(test_scrub_truncated_means_retry_over_tcp),
        SCRUB_TEST(test_scrub_garbage_is_malformed_never_a_crash),
        SCRUB_TEST(test_scrub_rejects_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
