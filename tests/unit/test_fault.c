/* Unit tests for common/fault.c: rule parsing and matching, the per-query decision (loss
 * probability included), rewritten responses read back with ldns, the "fault" control command
 * over a real control socket, and delayed replies through a real deferred listener. */
#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "addr.h"
#include "errors.h"
#include "fault.h"
#include "listener.h"
#include "log.h"

#define QUERY_ID 0x1234
#define EDNS_SIZE 1232

/* --- helpers ------------------------------------------------------------------------------ */

/* A query for name/type with RD set; with edns, an OPT advertising 4096 (and DO if asked). */
static size_t make_query(uint8_t *buf, size_t cap, const char *name, ldns_rr_type type, bool edns,
                         bool dnssec_ok)
{
    ldns_pkt *pkt = NULL;
    assert_int_equal(ldns_pkt_query_new_frm_str(&pkt, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
                     LDNS_STATUS_OK);
    ldns_pkt_set_id(pkt, QUERY_ID);
    if (edns) {
        ldns_pkt_set_edns_udp_size(pkt, 4096);
        ldns_pkt_set_edns_do(pkt, dnssec_ok);
    }
    uint8_t *wire = NULL;
    size_t len = 0;
    assert_int_equal(ldns_pkt2wire(&wire, pkt, &len), LDNS_STATUS_OK);
    assert_true(len <= cap);
    memcpy(buf, wire, len);
    free(wire);
    ldns_pkt_free(pkt);
    return len;
}

static void parse_rule_ok(const char *line, struct fault_rule *rule)
{
    char copy[512];
    char *argv[16];
    int argc = 0;
    snprintf(copy, sizeof copy, "%s", line);
    for (char *w = strtok(copy, " "); w && argc < 16; w = strtok(NULL, " "))
        argv[argc++] = w;
    char err[512] = "";
    int rc = fault_rule_parse(argc, argv, rule, err, sizeof err);
    if (rc != 0)
        fail_msg("'%s' rejected: %s", line, err);
}

/* Parse a line that must fail; err must contain `names` (the bad argument). */
static void parse_rule_fails(const char *line, const char *names)
{
    char copy[512];
    char *argv[16];
    int argc = 0;
    snprintf(copy, sizeof copy, "%s", line);
    for (char *w = strtok(copy, " "); w && argc < 16; w = strtok(NULL, " "))
        argv[argc++] = w;
    struct fault_rule rule;
    char err[512] = "";
    assert_int_equal(fault_rule_parse(argc, argv, &rule, err, sizeof err), BALLAST_EINVAL);
    if (!strstr(err, names))
        fail_msg("'%s': error '%s' does not name '%s'", line, err, names);
}

/* A rule set from lines (each "KIND [args]"); freed by the caller. */
static struct fault_rules *rules_of(const char *const *lines, size_t count)
{
    struct fault_rules *rules = NULL;
    for (size_t i = 0; i < count; i++) {
        struct fault_rule rule;
        struct fault_rules *next = NULL;
        parse_rule_ok(lines[i], &rule);
        assert_int_equal(fault_rules_add(rules, &rule, &next), 0);
        fault_rules_free(rules);
        rules = next;
    }
    return rules;
}

static void decide(const struct fault_rules *rules, const char *name, bool over_tcp,
                   struct fault_decision *d)
{
    uint8_t query[512];
    size_t len = make_query(query, sizeof query, name, LDNS_RR_TYPE_A, false, false);
    fault_decide(rules, query, len, over_tcp, d);
}

static void wire_of(const char *text, uint8_t *out, size_t *len)
{
    assert_int_equal(wire_name_from_text(text, out, len), 0);
}

/* --- parsing ------------------------------------------------------------------------------ */

static void test_fault_parse_accepts_every_kind(void **state)
{
    static const struct {
        const char *line;
        enum fault_kind kind;
        const char *text;
    } cases[] = {
        {"drop", FAULT_DROP, "kind=drop"},
        {"loss percent=30", FAULT_LOSS, "kind=loss percent=30"},
        {"latency delay=2s", FAULT_LATENCY, "kind=latency delay=2000ms"},
        {"latency delay=500ms", FAULT_LATENCY, "kind=latency delay=500ms"},
        {"servfail", FAULT_SERVFAIL, "kind=servfail"},
        {"refused", FAULT_REFUSED, "kind=refused"},
        {"empty name=www.example.test", FAULT_EMPTY, "kind=empty name=www.example.test."},
        {"nxdomain name=example.test.", FAULT_NXDOMAIN, "kind=nxdomain name=example.test."},
        {"truncate", FAULT_TRUNCATE, "kind=truncate"},
        {"loss name=a.test percent=0", FAULT_LOSS, "kind=loss name=a.test. percent=0"},
        {"loss percent=100", FAULT_LOSS, "kind=loss percent=100"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fault_rule rule;
        char text[400];
        parse_rule_ok(cases[i].line, &rule);
        assert_int_equal(rule.kind, cases[i].kind);
        fault_rule_format(&rule, text, sizeof text);
        assert_string_equal(text, cases[i].text);
        enum fault_kind back;
        assert_int_equal(fault_kind_parse(fault_kind_name(rule.kind), &back), 0);
        assert_int_equal(back, rule.kind);
    }
}

static void test_fault_parse_rejects_bad_kind(void **state)
{
    parse_rule_fails("explode", "explode");
    parse_rule_fails("DROP", "DROP"); /* kinds are lowercase words */
    parse_rule_fails("", "KIND");
}

static void test_fault_parse_checks_percent(void **state)
{
    parse_rule_fails("loss", "percent=");
    parse_rule_fails("loss percent=", "percent=");
    parse_rule_fails("loss percent=abc", "percent=");
    parse_rule_fails("loss percent=101", "percent=");
    parse_rule_fails("loss percent=-1", "percent=");
    parse_rule_fails("loss percent=30 percent=40", "percent=");
    parse_rule_fails("drop percent=30", "percent=");
    struct fault_rule rule;
    parse_rule_ok("loss percent=42", &rule);
    assert_int_equal(rule.percent, 42);
}

static void test_fault_parse_checks_delay(void **state)
{
    parse_rule_fails("latency", "delay=");
    parse_rule_fails("latency delay=soon", "delay=");
    parse_rule_fails("latency delay=0", "delay=");
    parse_rule_fails("latency delay=6m", "delay="); /* past FAULT_DELAY_MAX_MS */
    parse_rule_fails("servfail delay=1s", "delay=");
    struct fault_rule rule;
    parse_rule_ok("latency delay=5m", &rule);
    assert_int_equal(rule.delay_ms, FAULT_DELAY_MAX_MS);
    parse_rule_ok("latency delay=3", &rule); /* plain number: seconds, as in config files */
    assert_int_equal(rule.delay_ms, 3000);
}

static void test_fault_parse_rejects_unknown_and_repeated_arguments(void **state)
{
    parse_rule_fails("drop ttl=5", "ttl=5");
    parse_rule_fails("drop example.test", "example.test");
    parse_rule_fails("drop name=a.test name=b.test", "name=");
    parse_rule_fails("drop name=", "name=");
    parse_rule_fails("drop name=a..test", "name=");
}

static void test_fault_parse_name_ignores_case_and_trailing_dot(void **state)
{
    struct fault_rule upper, plain;
    parse_rule_ok("empty name=WWW.Example.TEST.", &upper);
    parse_rule_ok("empty name=www.example.test", &plain);
    uint8_t want[WIRE_NAME_MAX];
    size_t want_len;
    wire_of("www.example.test.", want, &want_len);
    assert_int_equal(upper.name_len, want_len);
    assert_memory_equal(upper.name, want, want_len);
    assert_int_equal(plain.name_len, want_len);
    assert_memory_equal(plain.name, want, want_len);
}

/* --- matching and deciding ---------------------------------------------------------------- */

static void test_fault_name_rule_covers_name_and_below_only(void **state)
{
    static const char *const lines[] = {"servfail name=example.test"};
    struct fault_rules *rules = rules_of(lines, 1);
    static const struct {
        const char *name;
        bool covered;
    } cases[] = {
        {"example.test", true},     {"www.example.test", true},  {"a.b.example.test", true},
        {"WWW.EXAMPLE.test", true}, {"badexample.test", false},  {"test", false},
        {"other.test", false},      {"example.test.org", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fault_decision d;
        decide(rules, cases[i].name, false, &d);
        if ((d.action == FAULT_ACTION_REWRITE) != cases[i].covered)
            fail_msg("%s: action %d", cases[i].name, d.action);
    }
    fault_rules_free(rules);
}

static void test_fault_first_matching_rule_wins(void **state)
{
    static const char *const lines[] = {"nxdomain name=www.example.test", "refused",
                                        "servfail name=example.test"};
    struct fault_rules *rules = rules_of(lines, 3);
    struct fault_decision d;
    decide(rules, "www.example.test", false, &d);
    assert_int_equal(d.action, FAULT_ACTION_REWRITE);
    assert_int_equal(d.kind, FAULT_NXDOMAIN);
    decide(rules, "mail.example.test", false, &d); /* the name-less refused comes first */
    assert_int_equal(d.kind, FAULT_REFUSED);
    uint8_t name[WIRE_NAME_MAX];
    size_t len;
    wire_of("other.test", name, &len);
    assert_ptr_equal(fault_rules_match(rules, name, len), &rules->rules[1]);
    fault_rules_free(rules);
}

static void test_fault_no_rules_answers_normally(void **state)
{
    struct fault_decision d;
    decide(NULL, "www.example.test", false, &d);
    assert_int_equal(d.action, FAULT_ACTION_ANSWER);
    static const char *const lines[] = {"drop name=other.test"};
    struct fault_rules *rules = rules_of(lines, 1);
    decide(rules, "www.example.test", false, &d);
    assert_int_equal(d.action, FAULT_ACTION_ANSWER);
    fault_rules_free(rules);
}

static void test_fault_actions_per_kind_and_transport(void **state)
{
    static const struct {
        const char *line;
        enum fault_action udp, tcp;
    } cases[] = {
        {"drop", FAULT_ACTION_DROP, FAULT_ACTION_DROP},
        {"loss percent=100", FAULT_ACTION_DROP, FAULT_ACTION_DROP},
        {"loss percent=0", FAULT_ACTION_ANSWER, FAULT_ACTION_ANSWER},
        {"latency delay=1500ms", FAULT_ACTION_DELAY, FAULT_ACTION_DELAY},
        {"servfail", FAULT_ACTION_REWRITE, FAULT_ACTION_REWRITE},
        {"refused", FAULT_ACTION_REWRITE, FAULT_ACTION_REWRITE},
        {"empty", FAULT_ACTION_REWRITE, FAULT_ACTION_REWRITE},
        {"nxdomain", FAULT_ACTION_REWRITE, FAULT_ACTION_REWRITE},
        {"truncate", FAULT_ACTION_REWRITE, FAULT_ACTION_ANSWER}, /* TCP gets the answer */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fault_rules *rules = rules_of(&cases[i].line, 1);
        struct fault_decision d;
        decide(rules, "www.example.test", false, &d);
        if (d.action != cases[i].udp)
            fail_msg("%s over UDP: action %d", cases[i].line, d.action);
        decide(rules, "www.example.test", true, &d);
        if (d.action != cases[i].tcp)
            fail_msg("%s over TCP: action %d", cases[i].line, d.action);
        if (i == 3)
            assert_int_equal(d.delay_ms, 1500);
        fault_rules_free(rules);
    }
}

static void test_fault_unreadable_query_meets_only_nameless_rules(void **state)
{
    uint8_t bad[12] = {0x12, 0x34, 0x01, 0x00, 0x00, 0x05}; /* QDCOUNT 5, nothing follows */
    static const char *const drop_all[] = {"drop"};
    static const char *const drop_name[] = {"drop name=example.test"};
    static const char *const servfail_all[] = {"servfail"};
    struct fault_decision d;
    struct fault_rules *rules = rules_of(drop_all, 1);
    fault_decide(rules, bad, sizeof bad, false, &d);
    assert_int_equal(d.action, FAULT_ACTION_DROP);
    fault_rules_free(rules);
    rules = rules_of(drop_name, 1);
    fault_decide(rules, bad, sizeof bad, false, &d);
    assert_int_equal(d.action, FAULT_ACTION_ANSWER);
    fault_rules_free(rules);
    rules = rules_of(servfail_all, 1); /* no question to echo: the normal FORMERR goes out */
    fault_decide(rules, bad, sizeof bad, false, &d);
    assert_int_equal(d.action, FAULT_ACTION_ANSWER);
    fault_rules_free(rules);
}

/* 20000 draws at 30 %: the standard deviation is 0.32 %, so ±3 % is far outside chance. */
static void test_fault_loss_drops_about_percent_of_queries(void **state)
{
    static const char *const lines[] = {"loss percent=30"};
    struct fault_rules *rules = rules_of(lines, 1);
    uint8_t query[512];
    size_t len = make_query(query, sizeof query, "www.example.test", LDNS_RR_TYPE_A, false, false);
    unsigned dropped = 0, draws = 20000;
    for (unsigned i = 0; i < draws; i++) {
        struct fault_decision d;
        fault_decide(rules, query, len, false, &d);
        if (d.action == FAULT_ACTION_DROP)
            dropped++;
        else
            assert_int_equal(d.action, FAULT_ACTION_ANSWER);
    }
    assert_in_range(dropped, draws * 27 / 100, draws * 33 / 100);
    fault_rules_free(rules);
}

static void test_fault_rules_stop_at_the_limit(void **state)
{
    struct fault_rules *rules = NULL, *next = NULL;
    struct fault_rule rule;
    parse_rule_ok("drop", &rule);
    for (int i = 0; i < FAULT_RULES_MAX; i++) {
        assert_int_equal(fault_rules_add(rules, &rule, &next), 0);
        fault_rules_free(rules);
        rules = next;
    }
    assert_int_equal(rules->count, FAULT_RULES_MAX);
    assert_int_equal(fault_rules_add(rules, &rule, &next), BALLAST_ELIMIT);
    assert_null(next);
    fault_rules_free(rules);
}

/* --- rewritten responses ------------------------------------------------------------------ */

struct soa_fixture {
    uint8_t apex[WIRE_NAME_MAX];
    size_t apex_len;
    uint8_t rdata[1024];
    uint16_t rdlen;
    struct fault_soa soa;
};

/* The SOA of zone_text with a given MNAME/RNAME, rendered as the zone store keeps it. */
static void soa_fixture_init(struct soa_fixture *f, const char *zone_text, const char *mname,
                             const char *rname)
{
    char text[1200];
    snprintf(text, sizeof text, "%s 3600 IN SOA %s %s 2026010101 7200 3600 1209600 300", zone_text,
             mname, rname);
    ldns_rr *rr = NULL;
    assert_int_equal(ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL), LDNS_STATUS_OK);
    f->rdlen = 0;
    for (size_t i = 0; i < ldns_rr_rd_count(rr); i++) {
        const ldns_rdf *rdf = ldns_rr_rdf(rr, i);
        memcpy(f->rdata + f->rdlen, ldns_rdf_data(rdf), ldns_rdf_size(rdf));
        f->rdlen = (uint16_t)(f->rdlen + ldns_rdf_size(rdf));
    }
    ldns_rr_free(rr);
    wire_of(zone_text, f->apex, &f->apex_len);
    f->soa = (struct fault_soa){.owner = f->apex,
                                .owner_len = f->apex_len,
                                .rdata = f->rdata,
                                .rdlen = f->rdlen,
                                .ttl = 300};
}

/* Decide for one query under one rule and write the rewritten response; returns it parsed. */
static ldns_pkt *rewrite(const char *rule_line, const char *qname, bool edns, bool dnssec_ok,
                         bool over_tcp, const struct fault_soa *soa, size_t *resp_len)
{
    struct fault_rules *rules = rules_of(&rule_line, 1);
    uint8_t query[512];
    size_t qlen = make_query(query, sizeof query, qname, LDNS_RR_TYPE_AAAA, edns, dnssec_ok);
    struct fault_decision d;
    fault_decide(rules, query, qlen, over_tcp, &d);
    fault_rules_free(rules);
    assert_int_equal(d.action, FAULT_ACTION_REWRITE);
    static uint8_t resp[65535];
    size_t len = fault_write_response(&d, query, soa, EDNS_SIZE, resp, sizeof resp);
    assert_true(len >= 12);
    if (resp_len)
        *resp_len = len;
    ldns_pkt *pkt = NULL;
    assert_int_equal(ldns_wire2pkt(&pkt, resp, len), LDNS_STATUS_OK);
    /* Every rewrite answers the query asked: same ID, QR, the question as sent, no answers. */
    assert_int_equal(ldns_pkt_id(pkt), QUERY_ID);
    assert_true(ldns_pkt_qr(pkt));
    assert_true(ldns_pkt_rd(pkt));
    assert_int_equal(ldns_pkt_qdcount(pkt), 1);
    char *question = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(pkt), 0)));
    char want[300];
    snprintf(want, sizeof want, "%s.", qname);
    assert_string_equal(question, want);
    free(question);
    assert_int_equal(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_question(pkt), 0)),
                     LDNS_RR_TYPE_AAAA);
    assert_int_equal(ldns_pkt_ancount(pkt), 0);
    return pkt;
}

static void assert_negative_soa(ldns_pkt *pkt, const char *apex_text)
{
    assert_int_equal(ldns_pkt_nscount(pkt), 1);
    ldns_rr *soa = ldns_rr_list_rr(ldns_pkt_authority(pkt), 0);
    assert_int_equal(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
    assert_int_equal(ldns_rr_ttl(soa), 300);
    char *owner = ldns_rdf2str(ldns_rr_owner(soa));
    assert_string_equal(owner, apex_text);
    free(owner);
    char *serial = ldns_rdf2str(ldns_rr_rdf(soa, 2));
    assert_string_equal(serial, "2026010101");
    free(serial);
}

static void test_fault_rewrites_servfail_and_refused(void **state)
{
    struct soa_fixture f;
    soa_fixture_init(&f, "example.test.", "ns1.example.test.", "hostmaster.example.test.");
    ldns_pkt *pkt = rewrite("servfail", "www.Example.test", false, false, false, &f.soa, NULL);
    assert_int_equal(ldns_pkt_get_rcode(pkt), LDNS_RCODE_SERVFAIL);
    assert_false(ldns_pkt_aa(pkt));
    assert_false(ldns_pkt_tc(pkt));
    assert_int_equal(ldns_pkt_nscount(pkt), 0); /* no records, whatever the zone */
    assert_int_equal(ldns_pkt_arcount(pkt), 0);
    ldns_pkt_free(pkt);
    pkt = rewrite("refused", "www.example.test", false, false, true, NULL, NULL);
    assert_int_equal(ldns_pkt_get_rcode(pkt), LDNS_RCODE_REFUSED);
    assert_int_equal(ldns_pkt_nscount(pkt) + ldns_pkt_arcount(pkt), 0);
    ldns_pkt_free(pkt);
}

static void test_fault_rewrites_empty_as_nodata_with_soa(void **state)
{
    struct soa_fixture f;
    soa_fixture_init(&f, "example.test.", "ns1.example.test.", "hostmaster.example.test.");
    ldns_pkt *pkt = rewrite("empty name=www.example.test", "www.example.test", false, false, false,
                            &f.soa, NULL);
    assert_int_equal(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
    assert_true(ldns_pkt_aa(pkt));
    assert_false(ldns_pkt_tc(pkt));
    assert_negative_soa(pkt, "example.test.");
    ldns_pkt_free(pkt);
    pkt = rewrite("empty", "www.example.test", false, false, false, NULL, NULL);
    assert_int_equal(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_nscount(pkt), 0); /* no zone known: no SOA */
    ldns_pkt_free(pkt);
}

static void test_fault_rewrites_nxdomain_with_soa(void **state)
{
    struct soa_fixture f;
    soa_fixture_init(&f, "example.test.", "ns1.example.test.", "hostmaster.example.test.");
    ldns_pkt *pkt = rewrite("nxdomain", "www.example.test", true, false, false, &f.soa, NULL);
    assert_int_equal(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NXDOMAIN);
    assert_true(ldns_pkt_aa(pkt));
    assert_negative_soa(pkt, "example.test.");
    ldns_pkt_free(pkt);
}

static void test_fault_rewrites_truncate_as_empty_tc(void **state)
{
    struct soa_fixture f;
    soa_fixture_init(&f, "example.test.", "ns1.example.test.", "hostmaster.example.test.");
    ldns_pkt *pkt = rewrite("truncate", "www.example.test", false, false, false, &f.soa, NULL);
    assert_int_equal(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
    assert_true(ldns_pkt_tc(pkt));
    assert_true(ldns_pkt_aa(pkt));
    assert_int_equal(ldns_pkt_nscount(pkt) + ldns_pkt_arcount(pkt), 0);
    ldns_pkt_free(pkt);
}

static void test_fault_rewrite_echoes_edns(void **state)
{
    ldns_pkt *pkt = rewrite("servfail", "www.example.test", true, true, false, NULL, NULL);
    assert_true(ldns_pkt_edns(pkt));
    assert_int_equal(ldns_pkt_edns_udp_size(pkt), EDNS_SIZE);
    assert_true(ldns_pkt_edns_do(pkt));
    assert_int_equal(ldns_pkt_edns_version(pkt), 0);
    ldns_pkt_free(pkt);
    pkt = rewrite("servfail", "www.example.test", true, false, false, NULL, NULL);
    assert_true(ldns_pkt_edns(pkt));
    assert_false(ldns_pkt_edns_do(pkt));
    ldns_pkt_free(pkt);
}

/* A SOA too big for 512 bytes (two 255-byte names that share no suffix, so nothing compresses)
 * is left out over plain UDP and kept over TCP. */
static void test_fault_rewrite_keeps_udp_size_limit(void **state)
{
    char mname[300], rname[300], a[64], b[64], c[62], d[62];
    memset(a, 'a', 63), memset(b, 'b', 63), memset(c, 'c', 61), memset(d, 'd', 61);
    a[63] = b[63] = c[61] = d[61] = '\0';
    snprintf(mname, sizeof mname, "%s.%s.%s.%s.", a, a, a, c);
    snprintf(rname, sizeof rname, "%s.%s.%s.%s.", b, b, b, d);
    struct soa_fixture f;
    soa_fixture_init(&f, "example.test.", mname, rname);
    size_t len = 0;
    ldns_pkt *pkt = rewrite("nxdomain", "www.example.test", false, false, false, &f.soa, &len);
    assert_int_equal(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NXDOMAIN);
    assert_int_equal(ldns_pkt_nscount(pkt), 0);
    assert_true(len <= 512);
    ldns_pkt_free(pkt);
    pkt = rewrite("nxdomain", "www.example.test", false, false, true, &f.soa, &len);
    assert_negative_soa(pkt, "example.test.");
    assert_true(len > 512);
    ldns_pkt_free(pkt);
}

/* --- the control command over a real socket ----------------------------------------------- */

#define CALLS_MAX 12

struct command_harness {
    uv_loop_t loop;
    uv_async_t done;
    uv_timer_t guard;
    uv_thread_t thread;
    struct control_server *server;
    char path[108];
    struct fault_rules *rules; /* what a daemon would publish */
    int changes;
    const char *lines[CALLS_MAX];
    int rcs[CALLS_MAX];
    char *replies[CALLS_MAX];
    int count;
};

static int command_on_command(void *ctx, int argc, char **argv, struct control_reply *reply)
{
    struct command_harness *h = ctx;
    struct fault_rules *next = NULL;
    bool changed = false;
    int rc = fault_command(h->rules, argc, argv, reply, &next, &changed);
    if (rc == 0 && changed) {
        fault_rules_free(h->rules);
        h->rules = next;
        h->changes++;
    } else {
        assert_null(next);
    }
    return rc;
}

static void command_shutdown(struct command_harness *h)
{
    control_server_close(h->server);
    uv_close((uv_handle_t *)&h->done, NULL);
    uv_close((uv_handle_t *)&h->guard, NULL);
}

static void command_on_done(uv_async_t *async)
{
    command_shutdown(async->data);
}

static void command_on_guard(uv_timer_t *timer)
{
    command_shutdown(timer->data);
}

static void command_client(void *arg)
{
    struct command_harness *h = arg;
    for (int i = 0; i < h->count; i++) {
        char err[256];
        h->rcs[i] =
            control_client_call(h->path, h->lines[i], 5000, &h->replies[i], err, sizeof err);
    }
    uv_async_send(&h->done);
}

static void command_run(struct command_harness *h)
{
    char err[256] = "";
    snprintf(h->path, sizeof h->path, "/tmp/ballast-test-fault-%ld.sock", (long)getpid());
    assert_int_equal(uv_loop_init(&h->loop), 0);
    if (control_server_open(&h->loop, h->path, command_on_command, h, &h->server, err,
                            sizeof err) != 0)
        fail_msg("control_server_open: %s", err);
    uv_async_init(&h->loop, &h->done, command_on_done);
    h->done.data = h;
    uv_timer_init(&h->loop, &h->guard);
    h->guard.data = h;
    uv_timer_start(&h->guard, command_on_guard, 20000, 0);
    assert_int_equal(uv_thread_create(&h->thread, command_client, h), 0);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    uv_thread_join(&h->thread);
    assert_int_equal(uv_loop_close(&h->loop), 0);
}

static void command_free(struct command_harness *h)
{
    for (int i = 0; i < h->count; i++)
        free(h->replies[i]);
    fault_rules_free(h->rules);
}

static void test_fault_command_adds_lists_and_clears(void **state)
{
    struct command_harness h;
    memset(&h, 0, sizeof h);
    const char *lines[] = {
        "fault add drop name=WWW.example.test",
        "fault add latency delay=2s",
        "fault list",
        "fault add loss",
        "fault add boom",
        "fault",
        "fault list extra",
        "fault clear",
        "fault list",
    };
    h.count = (int)(sizeof lines / sizeof lines[0]);
    memcpy(h.lines, lines, sizeof lines);
    FILE *log = tmpfile();
    log_set_stream(log);
    command_run(&h);
    log_set_stream(NULL);

    assert_int_equal(h.rcs[0], 0);
    assert_string_equal(h.replies[0], "1 rule\n");
    assert_int_equal(h.rcs[1], 0);
    assert_string_equal(h.replies[1], "2 rules\n");
    assert_int_equal(h.rcs[2], 0);
    assert_string_equal(h.replies[2], "rule=1 kind=drop name=www.example.test.\n"
                                      "rule=2 kind=latency delay=2000ms\n");
    assert_int_equal(h.rcs[3], BALLAST_EINVAL);
    assert_non_null(strstr(h.replies[3], "percent="));
    assert_int_equal(h.rcs[4], BALLAST_EINVAL);
    assert_non_null(strstr(h.replies[4], "unknown kind 'boom'"));
    assert_int_equal(h.rcs[5], BALLAST_EINVAL);
    assert_int_equal(h.rcs[6], BALLAST_EINVAL);
    assert_non_null(strstr(h.replies[6], "extra"));
    assert_int_equal(h.rcs[7], 0);
    assert_string_equal(h.replies[7], "0 rules\n");
    assert_int_equal(h.rcs[8], 0);
    assert_string_equal(h.replies[8], "");
    assert_null(h.rules);
    assert_int_equal(h.changes, 3); /* two adds and the clear; the failures changed nothing */

    char text[4096] = "";
    rewind(log);
    size_t n = fread(text, 1, sizeof text - 1, log);
    text[n] = '\0';
    fclose(log);
    assert_non_null(strstr(text, "event=fault action=add kind=drop name=www.example.test."));
    assert_non_null(strstr(text, "event=fault action=add kind=latency delay=2000ms"));
    assert_non_null(strstr(text, "event=fault action=clear"));
    command_free(&h);
}

/* --- delayed replies through a deferred listener ------------------------------------------ */

struct delay_harness {
    uv_loop_t loop;
    uv_timer_t check, stop;
    struct listener *listener;
    struct fault_delayer *delayer;
    int client_fd;
    uint32_t delay_ms;
    int accepted, refused;
    int replies_at_check; /* replies already at the client at the check timer */
    size_t pending_at_check;
};

static void delay_on_query(void *ctx, const uint8_t *query, size_t len, const struct sockaddr *peer,
                           bool over_tcp, struct listener_reply *reply)
{
    struct delay_harness *h = ctx;
    uint8_t resp[512];
    memcpy(resp, query, len);
    resp[2] |= 0x80; /* QR */
    if (fault_delayer_send(h->delayer, reply, resp, len, h->delay_ms) == 0)
        h->accepted++;
    else
        h->refused++;
}

static int count_replies(int fd)
{
    uint8_t buf[512];
    int n = 0;
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
        n++;
    return n;
}

static void delay_on_check(uv_timer_t *timer)
{
    struct delay_harness *h = timer->data;
    h->replies_at_check = count_replies(h->client_fd);
    h->pending_at_check = fault_delayer_pending(h->delayer);
}

static void delay_on_stop(uv_timer_t *timer)
{
    struct delay_harness *h = timer->data;
    fault_delayer_close(h->delayer);
    listener_close(h->listener);
    uv_close((uv_handle_t *)&h->check, NULL);
    uv_close((uv_handle_t *)&h->stop, NULL);
}

/* Two queries reach a delayer that holds at most one answer; check_ms and stop_ms are when the
 * client's socket is looked at and when everything closes. Returns replies seen at the end. */
static int delay_run(struct delay_harness *h, uint32_t delay_ms, uint64_t check_ms,
                     uint64_t stop_ms)
{
    memset(h, 0, sizeof *h);
    h->delay_ms = delay_ms;
    assert_int_equal(uv_loop_init(&h->loop), 0);
    struct addr addr;
    memset(&addr, 0, sizeof addr);
    struct sockaddr_in *sin = (struct sockaddr_in *)&addr.ss;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.len = sizeof *sin;
    struct listener_options options = {
        .tcp_clients = 4, .tcp_idle_timeout_ms = 1000, .tcp_pipeline = 4, .udp = true};
    char err[256] = "";
    assert_int_equal(listener_open_deferred(&h->loop, &addr, &options, delay_on_query, h,
                                            &h->listener, err, sizeof err),
                     0);
    assert_int_equal(fault_delayer_create(&h->loop, 1, &h->delayer), 0);
    uv_timer_init(&h->loop, &h->check);
    uv_timer_init(&h->loop, &h->stop);
    h->check.data = h->stop.data = h;
    uv_timer_start(&h->check, delay_on_check, check_ms, 0);
    uv_timer_start(&h->stop, delay_on_stop, stop_ms, 0);

    h->client_fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(listener_port(h->listener))};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uint8_t query[512];
    size_t len = make_query(query, sizeof query, "www.example.test", LDNS_RR_TYPE_A, false, false);
    for (int i = 0; i < 2; i++)
        assert_int_equal(sendto(h->client_fd, query, len, 0, (struct sockaddr *)&to, sizeof to),
                         (ssize_t)len);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&h->loop), 0);
    usleep(20000);
    int replies = count_replies(h->client_fd);
    close(h->client_fd);
    return replies;
}

static void test_fault_delayer_sends_later_and_holds_at_most_max(void **state)
{
    struct delay_harness h;
    int late = delay_run(&h, 300, 100, 600);
    assert_int_equal(h.accepted, 1);
    assert_int_equal(h.refused, 1);          /* max_pending 1: the second reply is dropped */
    assert_int_equal(h.replies_at_check, 0); /* not before its time */
    assert_int_equal(h.pending_at_check, 1);
    assert_int_equal(late, 1);
}

/* Closing drops what waits and frees everything (ASan checks) without waiting for the delay. */
static void test_fault_delayer_close_drops_waiting_answers(void **state)
{
    struct delay_harness h;
    uint64_t start = uv_hrtime();
    int replies = delay_run(&h, 60000, 50, 100);
    assert_int_equal(h.accepted, 1);
    assert_int_equal(replies, 0);
    assert_true(uv_hrtime() - start < 5000000000ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_parse_accepts_every_kind),
        cmocka_unit_test(test_fault_parse_rejects_bad_kind),
        cmocka_unit_test(test_fault_parse_checks_percent),
        cmocka_unit_test(test_fault_parse_checks_delay),
        cmocka_unit_test(test_fault_parse_rejects_unknown_and_repeated_arguments),
        cmocka_unit_test(test_fault_parse_name_ignores_case_and_trailing_dot),
        cmocka_unit_test(test_fault_name_rule_covers_name_and_below_only),
        cmocka_unit_test(test_fault_first_matching_rule_wins),
        cmocka_unit_test(test_fault_no_rules_answers_normally),
        cmocka_unit_test(test_fault_actions_per_kind_and_transport),
        cmocka_unit_test(test_fault_unreadable_query_meets_only_nameless_rules),
        cmocka_unit_test(test_fault_loss_drops_about_percent_of_queries),
        cmocka_unit_test(test_fault_rules_stop_at_the_limit),
        cmocka_unit_test(test_fault_rewrites_servfail_and_refused),
        cmocka_unit_test(test_fault_rewrites_empty_as_nodata_with_soa),
        cmocka_unit_test(test_fault_rewrites_nxdomain_with_soa),
        cmocka_unit_test(test_fault_rewrites_truncate_as_empty_tc),
        cmocka_unit_test(test_fault_rewrite_echoes_edns),
        cmocka_unit_test(test_fault_rewrite_keeps_udp_size_limit),
        cmocka_unit_test(test_fault_command_adds_lists_and_clears),
        cmocka_unit_test(test_fault_delayer_sends_later_and_holds_at_most_max),
        cmocka_unit_test(test_fault_delayer_close_drops_waiting_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
