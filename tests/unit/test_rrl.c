/* Unit tests for common/rrl.c: token-bucket math with injected time, client prefixes (IPv4,
 * IPv6, IPv4-mapped), the slip pattern, the whitelist, a full table, threads sharing a table,
 * response keys of authoritative answers (built with ldns), the TC=1 slip and the config sections.
 */
#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "config.h"
#include "errors.h"
#include "rrl.h"

/* --- helpers ------------------------------------------------------------------------------ */

static struct sockaddr_storage client_storage(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(5353);
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(5353);
    }
    return ss;
}

/* One check from client (text) for key (text, may be ""), at now_ms. */
static enum rrl_action check(struct rrl *rrl, const char *client, const char *key, uint64_t now_ms)
{
    struct sockaddr_storage ss = client_storage(client);
    return rrl_check(rrl, (const struct sockaddr *)&ss, (const uint8_t *)key, strlen(key), now_ms);
}

/* How many of n checks at now_ms pass. */
static unsigned passes(struct rrl *rrl, const char *client, const char *key, uint64_t now_ms,
                       unsigned n)
{
    unsigned passed = 0;
    for (unsigned i = 0; i < n; i++)
        passed += check(rrl, client, key, now_ms) == RRL_PASS;
    return passed;
}

static struct rrl *make_rrl(uint32_t rate, uint32_t burst, uint32_t slip)
{
    struct rrl_config cfg;
    rrl_config_defaults(&cfg, RRL_SECTION_RESPONSES);
    cfg.enable = true;
    cfg.rate = rate;
    cfg.burst = burst;
    cfg.slip = slip;
    struct rrl *rrl = NULL;
    assert_int_equal(rrl_create(&cfg, &rrl), 0);
    return rrl;
}

/* --- token buckets ------------------------------------------------------------------------ */

static void test_rrl_bucket_passes_one_second_of_rate_then_limits(void **state)
{
    (void)state;
    struct rrl *rrl = make_rrl(10, 0, 0);
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 5000, 10), 10);
    assert_int_equal(check(rrl, "192.0.2.1", "k", 5000), RRL_DROP);
    struct rrl_stats stats;
    rrl_get_stats(rrl, &stats);
    assert_int_equal(stats.passed, 10);
    assert_int_equal(stats.dropped, 1);
    assert_int_equal(stats.slipped, 0);
    rrl_free(rrl);
}

static void test_rrl_bucket_refills_at_rate_up_to_burst(void **state)
{
    (void)state;
    struct rrl *rrl = make_rrl(10, 0, 0);
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 1000, 20), 10);
    /* 10 per second: one token every 100 ms, none after 99 ms. */
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 1099, 5), 0);
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 1100, 5), 1);
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 1350, 5), 2);
    /* A long quiet time fills the bucket, never past its capacity. */
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 1000000, 50), 10);
    rrl_free(rrl);
}

static void test_rrl_burst_sets_the_bucket_capacity(void **state)
{
    (void)state;
    struct rrl *rrl = make_rrl(10, 30, 0);
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 1000, 100), 30);
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 2000, 100), 10); /* refill is still the rate */
    rrl_free(rrl);
}

static void test_rrl_time_going_backwards_adds_no_tokens(void **state)
{
    (void)state;
    struct rrl *rrl = make_rrl(10, 0, 0);
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 50000, 10), 10);
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 40000, 5), 0);
    /* ... and the bucket keeps its later time: 100 ms after 50000, not after 40000. */
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 40100, 5), 0);
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 50100, 5), 1);
    rrl_free(rrl);
}

static void test_rrl_different_keys_have_their_own_buckets(void **state)
{
    (void)state;
    struct rrl *rrl = make_rrl(5, 0, 0);
    assert_int_equal(passes(rrl, "192.0.2.1", "www", 1000, 10), 5);
    assert_int_equal(passes(rrl, "192.0.2.1", "mail", 1000, 10), 5);
    assert_int_equal(passes(rrl, "192.0.2.1", "", 1000, 10), 5);
    rrl_free(rrl);
}

/* --- client prefixes ---------------------------------------------------------------------- */

static void test_rrl_ipv4_clients_of_one_slash24_share_a_bucket(void **state)
{
    (void)state;
    struct rrl *rrl = make_rrl(5, 0, 0);
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 1000, 3), 3);
    assert_int_equal(passes(rrl, "192.0.2.254", "k", 1000, 10), 2);
    assert_int_equal(passes(rrl, "192.0.3.1", "k", 1000, 10), 5);
    rrl_free(rrl);
}

static void test_rrl_ipv6_clients_of_one_slash56_share_a_bucket(void **state)
{
    (void)state;
    struct rrl *rrl = make_rrl(5, 0, 0);
    assert_int_equal(passes(rrl, "2001:db8:0:1::1", "k", 1000, 3), 3);
    /* Bits 56-63 differ: the same /56. */
    assert_int_equal(passes(rrl, "2001:db8:0:ff::2", "k", 1000, 10), 2);
    /* Bit 55 differs: another /56. */
    assert_int_equal(passes(rrl, "2001:db8:0:100::1", "k", 1000, 10), 5);
    rrl_free(rrl);
}

static void test_rrl_prefix_lengths_are_configurable(void **state)
{
    (void)state;
    struct rrl_config cfg;
    rrl_config_defaults(&cfg, RRL_SECTION_QUERIES);
    cfg.rate = 5;
    struct rrl *rrl = NULL;
    assert_int_equal(rrl_create(&cfg, &rrl), 0);
    /* /32 and /64: neighbours are not limited together. */
    assert_int_equal(passes(rrl, "192.0.2.1", "", 1000, 10), 5);
    assert_int_equal(passes(rrl, "192.0.2.2", "", 1000, 10), 5);
    assert_int_equal(passes(rrl, "2001:db8::1", "", 1000, 3), 3);
    assert_int_equal(passes(rrl, "2001:db8::ffff:1", "", 1000, 10), 2);
    assert_int_equal(passes(rrl, "2001:db8:0:1::1", "", 1000, 10), 5);
    rrl_free(rrl);
}

static void test_rrl_ipv4_mapped_ipv6_client_is_its_ipv4_address(void **state)
{
    (void)state;
    struct rrl *rrl = make_rrl(5, 0, 0);
    assert_int_equal(passes(rrl, "192.0.2.7", "k", 1000, 3), 3);
    assert_int_equal(passes(rrl, "::ffff:192.0.2.9", "k", 1000, 10), 2);
    rrl_free(rrl);
}

/* --- slip --------------------------------------------------------------------------------- */

/* The actions of the first n limited answers of a bucket with slip, as 'S'/'D'. */
static void limited_pattern(uint32_t slip, char *out, unsigned n)
{
    struct rrl *rrl = make_rrl(1, 0, slip);
    assert_int_equal(check(rrl, "192.0.2.1", "k", 1000), RRL_PASS);
    for (unsigned i = 0; i < n; i++) {
        enum rrl_action action = check(rrl, "192.0.2.1", "k", 1000);
        assert_int_not_equal(action, RRL_PASS);
        out[i] = action == RRL_SLIP ? 'S' : 'D';
    }
    out[n] = '\0';
    rrl_free(rrl);
}

static void test_rrl_slip_sends_every_nth_limited_answer_truncated(void **state)
{
    (void)state;
    char pattern[8];
    limited_pattern(2, pattern, 6);
    assert_string_equal(pattern, "DSDSDS");
    limited_pattern(1, pattern, 6);
    assert_string_equal(pattern, "SSSSSS");
    limited_pattern(0, pattern, 6);
    assert_string_equal(pattern, "DDDDDD");
    limited_pattern(3, pattern, 6);
    assert_string_equal(pattern, "DDSDDS");
}

static void test_rrl_slip_pattern_goes_on_across_passes(void **state)
{
    (void)state;
    /* A flood just above the rate: one limited answer per second still slips every 2nd time. */
    struct rrl *rrl = make_rrl(1, 0, 2);
    unsigned slips = 0;
    for (uint64_t second = 1; second <= 10; second++) {
        assert_int_equal(check(rrl, "192.0.2.1", "k", second * 1000), RRL_PASS);
        slips += check(rrl, "192.0.2.1", "k", second * 1000) == RRL_SLIP;
    }
    assert_int_equal(slips, 5);
    struct rrl_stats stats;
    rrl_get_stats(rrl, &stats);
    assert_int_equal(stats.slipped, 5);
    assert_int_equal(stats.dropped, 5);
    rrl_free(rrl);
}

/* --- whitelist ---------------------------------------------------------------------------- */

static void test_rrl_whitelisted_prefix_is_never_limited(void **state)
{
    (void)state;
    struct rrl_config cfg;
    rrl_config_defaults(&cfg, RRL_SECTION_RESPONSES);
    cfg.rate = 2;
    cfg.slip = 0;
    char reason[128];
    assert_int_equal(rrl_prefix_parse("192.0.2.128/25", &cfg.whitelist[0], reason, sizeof reason),
                     0);
    assert_int_equal(rrl_prefix_parse("2001:db8::/32", &cfg.whitelist[1], reason, sizeof reason),
                     0);
    cfg.whitelist_count = 2;
    struct rrl *rrl = NULL;
    assert_int_equal(rrl_create(&cfg, &rrl), 0);
    assert_int_equal(passes(rrl, "192.0.2.200", "k", 1000, 100), 100);
    assert_int_equal(passes(rrl, "::ffff:192.0.2.129", "k", 1000, 100), 100);
    assert_int_equal(passes(rrl, "2001:db8:1::1", "k", 1000, 100), 100);
    /* The other half of the /24 is limited. */
    assert_int_equal(passes(rrl, "192.0.2.1", "k", 1000, 100), 2);
    struct rrl_stats stats;
    rrl_get_stats(rrl, &stats);
    assert_int_equal(stats.exempt, 300);
    assert_int_equal(stats.passed, 2);
    assert_int_equal(stats.dropped, 98);
    rrl_free(rrl);
}

static void test_rrl_prefix_parse_rejects_bad_prefixes(void **state)
{
    (void)state;
    struct rrl_prefix p;
    char reason[128];
    assert_int_equal(rrl_prefix_parse("10.0.0.1/8", &p, reason, sizeof reason), BALLAST_EINVAL);
    assert_non_null(strstr(reason, "host bits"));
    assert_int_equal(rrl_prefix_parse("10.0.0.0/33", &p, reason, sizeof reason), BALLAST_EINVAL);
    assert_int_equal(rrl_prefix_parse("10.0.0.0/", &p, reason, sizeof reason), BALLAST_EINVAL);
    assert_int_equal(rrl_prefix_parse("example.test", &p, reason, sizeof reason), BALLAST_EINVAL);
    assert_int_equal(rrl_prefix_parse("::ffff:10.0.0.0/104", &p, reason, sizeof reason), 0);
    assert_int_equal(p.family, AF_INET);
    assert_int_equal(p.len, 8);
    assert_int_equal(p.addr[0], 10);
    assert_int_equal(rrl_prefix_parse("::1", &p, reason, sizeof reason), 0);
    assert_int_equal(p.family, AF_INET6);
    assert_int_equal(p.len, 128);
}

/* --- a full table ------------------------------------------------------------------------- */

static struct rrl *make_small_rrl(uint32_t rate)
{
    struct rrl_config cfg;
    rrl_config_defaults(&cfg, RRL_SECTION_RESPONSES);
    cfg.rate = rate;
    cfg.table_size = RRL_TABLE_SIZE_MIN; /* 8 sets of 8 */
    struct rrl *rrl = NULL;
    assert_int_equal(rrl_create(&cfg, &rrl), 0);
    return rrl;
}

static void test_rrl_full_table_evicts_the_stalest_bucket_not_a_busy_one(void **state)
{
    (void)state;
    struct rrl *rrl = make_small_rrl(1);
    assert_int_equal(check(rrl, "192.0.2.1", "hot", 1000), RRL_PASS);
    /* 500 new keys, one per millisecond, in a 64-bucket table; the hot key, limited all along,
     * is the newest of its set every time and keeps its empty bucket. */
    char key[32];
    for (unsigned i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "flood-%u", i);
        assert_int_equal(check(rrl, "198.51.100.1", key, 1001 + i), RRL_PASS);
        assert_int_not_equal(check(rrl, "192.0.2.1", "hot", 1001 + i), RRL_PASS);
    }
    struct rrl_stats stats;
    rrl_get_stats(rrl, &stats);
    assert_true(stats.evicted >= 500 - RRL_TABLE_SIZE_MIN);
    assert_int_equal(stats.dropped + stats.slipped, 500);
    rrl_free(rrl);
}

static void test_rrl_refilled_buckets_are_reused_without_eviction(void **state)
{
    (void)state;
    struct rrl *rrl = make_small_rrl(10);
    char key[32];
    for (unsigned i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "first-%u", i);
        check(rrl, "192.0.2.1", key, 1000);
    }
    struct rrl_stats before;
    rrl_get_stats(rrl, &before);
    assert_true(before.evicted > 0);
    /* A second later every bucket is full again: taking one loses nothing. (RRL_WAYS new keys
     * fit even if they all fall in one set.) */
    for (unsigned i = 0; i < RRL_WAYS; i++) {
        snprintf(key, sizeof key, "second-%u", i);
        assert_int_equal(check(rrl, "192.0.2.1", key, 2000), RRL_PASS);
    }
    struct rrl_stats after;
    rrl_get_stats(rrl, &after);
    assert_int_equal(after.evicted, before.evicted);
    rrl_free(rrl);
}

/* --- threads ------------------------------------------------------------------------------ */

struct thread_arg {
    struct rrl *rrl;
    unsigned passed;
};

static void *thread_checks(void *p)
{
    struct thread_arg *arg = p;
    arg->passed = passes(arg->rrl, "192.0.2.1", "shared", 7000, 5000);
    return NULL;
}

static void test_rrl_threads_share_one_bucket_exactly(void **state)
{
    (void)state;
    struct rrl *rrl = make_rrl(1000, 0, 0);
    pthread_t threads[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){.rrl = rrl};
        assert_int_equal(pthread_create(&threads[i], NULL, thread_checks, &args[i]), 0);
    }
    unsigned total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        total += args[i].passed;
    }
    assert_int_equal(total, 1000);
    struct rrl_stats stats;
    rrl_get_stats(rrl, &stats);
    assert_int_equal(stats.passed + stats.dropped, 20000);
    rrl_free(rrl);
}

static void test_rrl_create_rejects_bad_settings(void **state)
{
    (void)state;
    struct rrl_config cfg;
    struct rrl *rrl = NULL;
    rrl_config_defaults(&cfg, RRL_SECTION_QUERIES); /* rate 0: off */
    assert_int_equal(rrl_create(&cfg, &rrl), BALLAST_EINVAL);
    rrl_config_defaults(&cfg, RRL_SECTION_RESPONSES);
    cfg.table_size = RRL_TABLE_SIZE_MIN - 1;
    assert_int_equal(rrl_create(&cfg, &rrl), BALLAST_EINVAL);
    rrl_config_defaults(&cfg, RRL_SECTION_RESPONSES);
    cfg.ipv6_prefix = 129;
    assert_int_equal(rrl_create(&cfg, &rrl), BALLAST_EINVAL);
    assert_null(rrl);
}

/* --- response keys ------------------------------------------------------------------------ */

static ldns_rr *rr(const char *text)
{
    ldns_rr *out = NULL;
    assert_int_equal(ldns_rr_new_frm_str(&out, text, 0, NULL, NULL), LDNS_STATUS_OK);
    return out;
}

/* A response to qname/qtype with rcode, AA, TC and records (NULL-terminated "S:" authority or
 * "A:" answer prefixed texts); wire form (compressed by ldns) into buf, length returned. */
static size_t response(uint8_t *buf, const char *qname, ldns_rr_type qtype, ldns_pkt_rcode rcode,
                       bool aa, bool tc, const char *const *records)
{
    ldns_pkt *pkt = NULL;
    assert_int_equal(ldns_pkt_query_new_frm_str(&pkt, qname, qtype, LDNS_RR_CLASS_IN, LDNS_RD),
                     LDNS_STATUS_OK);
    ldns_pkt_set_qr(pkt, true);
    ldns_pkt_set_id(pkt, 0x4242);
    ldns_pkt_set_rcode(pkt, rcode);
    ldns_pkt_set_aa(pkt, aa);
    ldns_pkt_set_tc(pkt, tc);
    for (size_t i = 0; records && records[i]; i++)
        ldns_pkt_push_rr(pkt, records[i][0] == 'A' ? LDNS_SECTION_ANSWER : LDNS_SECTION_AUTHORITY,
                         rr(records[i] + 2));
    uint8_t *wire = NULL;
    size_t len = 0;
    assert_int_equal(ldns_pkt2wire(&wire, pkt, &len), LDNS_STATUS_OK);
    memcpy(buf, wire, len);
    free(wire);
    ldns_pkt_free(pkt);
    return len;
}

static const char *const soa_example[] = {
    "S:example.test. 300 IN SOA ns1.example.test. admin.example.test. 1 3600 600 86400 300", NULL};

static void assert_key(const uint8_t *key, size_t len, enum rrl_class cls, uint16_t qtype,
                       const char *name)
{
    assert_int_equal(key[0], cls);
    assert_int_equal((key[1] << 8) | key[2], qtype);
    if (name == NULL) {
        assert_int_equal(len, 3);
        return;
    }
    ldns_rdf *dname = ldns_dname_new_frm_str(name);
    assert_non_null(dname);
    assert_int_equal(len, 3 + ldns_rdf_size(dname));
    assert_memory_equal(key + 3, ldns_rdf_data(dname), ldns_rdf_size(dname));
    ldns_rdf_deep_free(dname);
}

static void test_rrl_answer_key_is_qname_and_qtype_without_case(void **state)
{
    (void)state;
    uint8_t buf[1024], key[RRL_KEY_MAX];
    static const char *const answer[] = {"A:www.example.test. 300 IN A 192.0.2.1", NULL};
    size_t len =
        response(buf, "WWW.Example.TEST.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, true, false, answer);
    size_t key_len = rrl_response_key(buf, len, key);
    assert_key(key, key_len, RRL_CLASS_ANSWER, LDNS_RR_TYPE_A, "www.example.test.");
    /* TC=1 without records counts as the answer it stands for. */
    len =
        response(buf, "www.example.test.", LDNS_RR_TYPE_TXT, LDNS_RCODE_NOERROR, true, true, NULL);
    key_len = rrl_response_key(buf, len, key);
    assert_key(key, key_len, RRL_CLASS_ANSWER, LDNS_RR_TYPE_TXT, "www.example.test.");
}

static void test_rrl_nxdomain_key_is_the_zone_whatever_the_qname(void **state)
{
    (void)state;
    uint8_t buf[1024], key1[RRL_KEY_MAX], key2[RRL_KEY_MAX];
    size_t len = response(buf, "random1.example.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NXDOMAIN, true,
                          false, soa_example);
    size_t len1 = rrl_response_key(buf, len, key1);
    assert_key(key1, len1, RRL_CLASS_NXDOMAIN, 0, "example.test.");
    len = response(buf, "x.random2.example.test.", LDNS_RR_TYPE_AAAA, LDNS_RCODE_NXDOMAIN, true,
                   false, soa_example);
    size_t len2 = rrl_response_key(buf, len, key2);
    assert_int_equal(len1, len2);
    assert_memory_equal(key1, key2, len1);
}

static void test_rrl_nxdomain_after_cname_skips_the_answers(void **state)
{
    (void)state;
    uint8_t buf[1024], key[RRL_KEY_MAX];
    static const char *const records[] = {
        "A:alias.other.test. 300 IN CNAME gone.example.test.",
        "S:example.test. 300 IN SOA ns1.example.test. admin.example.test. 1 3600 600 86400 300",
        NULL};
    size_t len = response(buf, "alias.other.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NXDOMAIN, true,
                          false, records);
    size_t key_len = rrl_response_key(buf, len, key);
    assert_key(key, key_len, RRL_CLASS_NXDOMAIN, 0, "example.test.");
}

static void test_rrl_nodata_and_referral_keys_are_their_imputed_names(void **state)
{
    (void)state;
    uint8_t buf[1024], key[RRL_KEY_MAX];
    size_t len = response(buf, "www.example.test.", LDNS_RR_TYPE_MX, LDNS_RCODE_NOERROR, true,
                          false, soa_example);
    size_t key_len = rrl_response_key(buf, len, key);
    assert_key(key, key_len, RRL_CLASS_NODATA, 0, "example.test.");
    static const char *const referral[] = {"S:sub.example.test. 300 IN NS ns.sub.example.test.",
                                           NULL};
    len = response(buf, "a.b.sub.example.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, false, false,
                   referral);
    key_len = rrl_response_key(buf, len, key);
    assert_key(key, key_len, RRL_CLASS_REFERRAL, 0, "sub.example.test.");
}

static void test_rrl_error_key_is_the_class_alone(void **state)
{
    (void)state;
    uint8_t buf[1024], key[RRL_KEY_MAX];
    size_t len =
        response(buf, "anything.invalid.", LDNS_RR_TYPE_A, LDNS_RCODE_REFUSED, false, false, NULL);
    assert_key(key, rrl_response_key(buf, len, key), RRL_CLASS_ERROR, 0, NULL);
    len =
        response(buf, "www.example.test.", LDNS_RR_TYPE_A, LDNS_RCODE_SERVFAIL, false, false, NULL);
    assert_key(key, rrl_response_key(buf, len, key), RRL_CLASS_ERROR, 0, NULL);
    /* A header alone (FORMERR without a question) and a short packet. */
    memset(buf, 0, WIRE_HEADER_LEN);
    buf[3] = WIRE_RCODE_FORMERR;
    assert_key(key, rrl_response_key(buf, WIRE_HEADER_LEN, key), RRL_CLASS_ERROR, 0, NULL);
    assert_key(key, rrl_response_key(buf, 5, key), RRL_CLASS_ERROR, 0, NULL);
}

static void test_rrl_slip_response_is_header_and_question_with_tc(void **state)
{
    (void)state;
    uint8_t buf[1024];
    static const char *const answer[] = {"A:www.example.test. 300 IN A 192.0.2.1",
                                         "A:www.example.test. 300 IN A 192.0.2.2", NULL};
    size_t len =
        response(buf, "www.example.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, true, false, answer);
    size_t slipped = rrl_slip_response(buf, len);
    assert_int_equal(slipped, WIRE_HEADER_LEN + 18 + 4); /* www.example.test. is 18 bytes */
    ldns_pkt *pkt = NULL;
    assert_int_equal(ldns_wire2pkt(&pkt, buf, slipped), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_id(pkt), 0x4242);
    assert_true(ldns_pkt_qr(pkt));
    assert_true(ldns_pkt_tc(pkt));
    assert_true(ldns_pkt_aa(pkt));
    assert_int_equal(ldns_pkt_qdcount(pkt), 1);
    assert_int_equal(ldns_pkt_ancount(pkt), 0);
    assert_int_equal(ldns_pkt_nscount(pkt), 0);
    assert_int_equal(ldns_pkt_arcount(pkt), 0);
    assert_int_equal(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_question(pkt), 0)), LDNS_RR_TYPE_A);
    ldns_pkt_free(pkt);
}

/* --- config sections ---------------------------------------------------------------------- */

static int read_section(const char *text, enum rrl_section_kind kind, struct rrl_config *cfg,
                        struct config_error *err)
{
    struct config_node *root = NULL;
    memset(err, 0, sizeof *err);
    assert_int_equal(config_parse_string("t.yaml", text, strlen(text), &root, err), 0);
    rrl_config_defaults(cfg, kind);
    int rc = rrl_config_read(root, kind, cfg, err);
    config_free(root);
    return rc;
}

static void test_rrl_config_defaults_are_off(void **state)
{
    (void)state;
    struct rrl_config cfg;
    struct config_error err;
    assert_int_equal(read_section("server: {}\n", RRL_SECTION_RESPONSES, &cfg, &err), 0);
    assert_false(cfg.enable);
    assert_int_equal(cfg.rate, 200);
    assert_int_equal(cfg.slip, 2);
    assert_int_equal(cfg.ipv4_prefix, 24);
    assert_int_equal(cfg.ipv6_prefix, 56);
    assert_int_equal(cfg.table_size, 100000);
    assert_int_equal(read_section("server: {}\n", RRL_SECTION_QUERIES, &cfg, &err), 0);
    assert_false(cfg.enable);
    assert_int_equal(cfg.rate, 0);
    assert_int_equal(cfg.ipv4_prefix, 32);
    assert_int_equal(cfg.ipv6_prefix, 64);
}

static void test_rrl_config_reads_every_key(void **state)
{
    (void)state;
    struct rrl_config cfg;
    struct config_error err;
    const char *text = "rrl:\n  enable: yes\n  rate: 20\n  burst: 40\n  slip: 3\n"
                       "  ipv4-prefix: 16\n  ipv6-prefix: 48\n  table-size: 5000\n"
                       "  whitelist: [10.0.0.0/8, '2001:db8::/32']\n";
    assert_int_equal(read_section(text, RRL_SECTION_RESPONSES, &cfg, &err), 0);
    assert_true(cfg.enable);
    assert_int_equal(cfg.rate, 20);
    assert_int_equal(cfg.burst, 40);
    assert_int_equal(cfg.slip, 3);
    assert_int_equal(cfg.ipv4_prefix, 16);
    assert_int_equal(cfg.ipv6_prefix, 48);
    assert_int_equal(cfg.table_size, 5000);
    assert_int_equal(cfg.whitelist_count, 2);
    assert_int_equal(cfg.whitelist[1].family, AF_INET6);
    text = "client-limits:\n  rate: 50\n  burst: 100\n";
    assert_int_equal(read_section(text, RRL_SECTION_QUERIES, &cfg, &err), 0);
    assert_true(cfg.enable);
    assert_int_equal(cfg.rate, 50);
    assert_int_equal(cfg.burst, 100);
}

static void test_rrl_config_errors_name_line_and_range(void **state)
{
    (void)state;
    struct rrl_config cfg;
    struct config_error err;
    assert_int_equal(read_section("rrl:\n  rate: 0\n", RRL_SECTION_RESPONSES, &cfg, &err),
                     BALLAST_EINVAL);
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.reason, "rate"));
    assert_int_equal(read_section("rrl:\n  enable: yes\n  slip: 2\n  sleep: 1\n",
                                  RRL_SECTION_RESPONSES, &cfg, &err),
                     BALLAST_EINVAL);
    assert_int_equal(err.line, 4);
    assert_non_null(strstr(err.reason, "sleep"));
    /* slip is an authd key only: a resolver drops. */
    assert_int_equal(read_section("client-limits:\n  slip: 2\n", RRL_SECTION_QUERIES, &cfg, &err),
                     BALLAST_EINVAL);
    assert_int_equal(
        read_section("rrl:\n  whitelist:\n    - 10.0.0.1/8\n", RRL_SECTION_RESPONSES, &cfg, &err),
        BALLAST_EINVAL);
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.reason, "host bits"));
    assert_int_equal(read_section("rrl:\n  whitelist: [10.0.0.0/8, 10.0.0.0/8]\n",
                                  RRL_SECTION_RESPONSES, &cfg, &err),
                     BALLAST_EINVAL);
    assert_non_null(strstr(err.reason, "twice"));
}

static void test_rrl_config_whitelist_stops_at_its_limit(void **state)
{
    (void)state;
    char text[4096];
    size_t used = (size_t)snprintf(text, sizeof text, "rrl:\n  whitelist:\n");
    for (unsigned i = 0; i <= RRL_WHITELIST_MAX; i++)
        used += (size_t)snprintf(text + used, sizeof text - used, "    - 10.0.%u.0/24\n", i);
    struct rrl_config cfg;
    struct config_error err;
    assert_int_equal(read_section(text, RRL_SECTION_RESPONSES, &cfg, &err), BALLAST_ELIMIT);
    assert_int_equal(err.line, 3 + RRL_WHITELIST_MAX);
    text[0] = '\0';
    used = (size_t)snprintf(text, sizeof text, "rrl:\n  whitelist:\n");
    for (unsigned i = 0; i < RRL_WHITELIST_MAX; i++)
        used += (size_t)snprintf(text + used, sizeof text - used, "    - 10.0.%u.0/24\n", i);
    assert_int_equal(read_section(text, RRL_SECTION_RESPONSES, &cfg, &err), 0);
    assert_int_equal(cfg.whitelist_count, RRL_WHITELIST_MAX);
}

static void test_rrl_config_equal_compares_every_setting(void **state)
{
    (void)state;
    struct rrl_config a, b;
    struct config_error err;
    assert_int_equal(read_section("rrl: {enable: yes, whitelist: [10.0.0.0/8]}\n",
                                  RRL_SECTION_RESPONSES, &a, &err),
                     0);
    assert_int_equal(read_section("rrl: {enable: yes, whitelist: [10.0.0.0/8]}\n",
                                  RRL_SECTION_RESPONSES, &b, &err),
                     0);
    assert_true(rrl_config_equal(&a, &b));
    b.slip = 1;
    assert_false(rrl_config_equal(&a, &b));
    b = a;
    b.whitelist[0].len = 9;
    assert_false(rrl_config_equal(&a, &b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rrl_bucket_passes_one_second_of_rate_then_limits),
        cmocka_unit_test(test_rrl_bucket_refills_at_rate_up_to_burst),
        cmocka_unit_test(test_rrl_burst_sets_the_bucket_capacity),
        cmocka_unit_test(test_rrl_time_going_backwards_adds_no_tokens),
        cmocka_unit_test(test_rrl_different_keys_have_their_own_buckets),
        cmocka_unit_test(test_rrl_ipv4_clients_of_one_slash24_share_a_bucket),
        cmocka_unit_test(test_rrl_ipv6_clients_of_one_slash56_share_a_bucket),
        cmocka_unit_test(test_rrl_prefix_lengths_are_configurable),
        cmocka_unit_test(test_rrl_ipv4_mapped_ipv6_client_is_its_ipv4_address),
        cmocka_unit_test(test_rrl_slip_sends_every_nth_limited_answer_truncated),
        cmocka_unit_test(test_rrl_slip_pattern_goes_on_across_passes),
        cmocka_unit_test(test_rrl_whitelisted_prefix_is_never_limited),
        cmocka_unit_test(test_rrl_prefix_parse_rejects_bad_prefixes),
        cmocka_unit_test(test_rrl_full_table_evicts_the_stalest_bucket_not_a_busy_one),
        cmocka_unit_test(test_rrl_refilled_buckets_are_reused_without_eviction),
        cmocka_unit_test(test_rrl_threads_share_one_bucket_exactly),
        cmocka_unit_test(test_rrl_create_rejects_bad_settings),
        cmocka_unit_test(test_rrl_answer_key_is_qname_and_qtype_without_case),
        cmocka_unit_test(test_rrl_nxdomain_key_is_the_zone_whatever_the_qname),
        cmocka_unit_test(test_rrl_nxdomain_after_cname_skips_the_answers),
        cmocka_unit_test(test_rrl_nodata_and_referral_keys_are_their_imputed_names),
        cmocka_unit_test(test_rrl_error_key_is_the_class_alone),
        cmocka_unit_test(test_rrl_slip_response_is_header_and_question_with_tc),
        cmocka_unit_test(test_rrl_config_defaults_are_off),
        cmocka_unit_test(test_rrl_config_reads_every_key),
        cmocka_unit_test(test_rrl_config_errors_name_line_and_range),
        cmocka_unit_test(test_rrl_config_whitelist_stops_at_its_limit),
        cmocka_unit_test(test_rrl_config_equal_compares_every_setting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
