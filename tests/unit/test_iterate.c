/* Unit tests for resolver/iterate.c: the iterator's decisions against a fake network whose
 * "servers" are authd's real answer builder over the zones in tests/unit/data/iterate/
 * (root on 127.0.0.1, test. on .2, example.test. on .3, other.test. and oob.test. on .4, a lame
 * server on .9, silent servers on .10 and .11). No sockets, no loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <ldns/ldns.h>

#include "answer.h"
#include "errors.h"
#include "iterate.h"
#include "wire.h"

#define DATA "tests/unit/data/iterate/"
#define FAKE_MAX_SENDS 64
#define FAKE_SERVERS 16

struct fake_send {
    bool active;
    unsigned server; /* last octet of 127.0.0.x */
    uint8_t qname[WIRE_NAME_MAX];
    size_t qname_len;
    uint16_t qtype;
    bool rd, edns;
    uint32_t timeout_ms;
    iter_send_done_fn done;
    void *ctx;
};

struct fake {
    struct fake_send sends[FAKE_MAX_SENDS];
    unsigned count;
    uint64_t now;
    unsigned total;
    unsigned per_server[FAKE_SERVERS];
    char log[64][300]; /* "server qname qtype" of every send, for QNAME minimisation checks */
    unsigned log_count;
};

static struct fake net;
static struct zone_set *servers[FAKE_SERVERS];
static struct limits auth_limits;
static struct resolver_config cfg;
static struct cache *cache;
static struct infra *infra;
static struct iter_hints hints;
static struct iter_env env;

static int fake_send(void *io, const struct iter_send *q, iter_send_done_fn done, void *ctx,
                     void **handle)
{
    struct fake *f = io;
    if (f->count >= FAKE_MAX_SENDS)
        return BALLAST_ELIMIT;
    struct fake_send *s = &f->sends[f->count++];
    memset(s, 0, sizeof *s);
    s->active = true;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&q->server->ss;
    s->server = ntohl(sin->sin_addr.s_addr) & 0xFF;
    memcpy(s->qname, q->qname, q->qname_len);
    s->qname_len = q->qname_len;
    s->qtype = q->qtype;
    s->rd = q->rd;
    s->edns = q->edns;
    s->timeout_ms = q->timeout_ms;
    s->done = done;
    s->ctx = ctx;
    f->total++;
    if (s->server < FAKE_SERVERS)
        f->per_server[s->server]++;
    if (f->log_count < 64) {
        char name[256];
        wire_name_to_text(q->qname, name, sizeof name);
        snprintf(f->log[f->log_count++], sizeof f->log[0], "%u %s %u", s->server, name, q->qtype);
    }
    *handle = s;
    return 0;
}

static void fake_cancel(void *io, void *handle)
{
    ((struct fake_send *)handle)->active = false;
}

static uint64_t fake_now(void *io)
{
    return ((struct fake *)io)->now;
}

/* Deliver every pending send until none is left: the servers answer with authd's logic; the
 * silent ones time out. */
static void pump(void)
{
    for (unsigned guard = 0; guard < 1000; guard++) {
        struct fake_send *s = NULL;
        for (unsigned i = 0; i < net.count && !s; i++)
            if (net.sends[i].active)
                s = &net.sends[i];
        if (!s) {
            net.count = 0;
            return;
        }
        s->active = false;
        if (s->server == 10 || s->server == 11) {
            net.now += s->timeout_ms;
            s->done(s->ctx, BALLAST_ETIMEOUT, NULL, 0, 0);
            continue;
        }
        uint8_t query[512], resp[65535];
        memset(query, 0, 12);
        wire_write_u16(query, 0x4242);
        wire_write_u16(query + 2, s->rd ? WIRE_FLAG_RD : 0);
        wire_write_u16(query + 4, 1);
        memcpy(query + 12, s->qname, s->qname_len);
        size_t len = 12 + s->qname_len;
        wire_write_u16(query + len, s->qtype);
        wire_write_u16(query + len + 2, WIRE_CLASS_IN);
        len += 4;
        if (s->edns) {
            uint8_t opt[11] = {0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0};
            wire_write_u16(query + 10, 1);
            memcpy(query + len, opt, sizeof opt);
            len += sizeof opt;
        }
        struct answer_info info;
        size_t n = answer_query(s->server < FAKE_SERVERS ? servers[s->server] : NULL, &auth_limits,
                                query, len, resp, sizeof resp, false, &info);
        net.now += 3;
        s->done(s->ctx, 0, resp, n, 3);
    }
    fail_msg("pump did not settle");
}

static struct zone *load(const char *origin, const char *file)
{
    struct zone *zone = NULL;
    struct zone_error err;
    if (zone_load(origin, file, &auth_limits, &zone, &err) != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    return zone;
}

static void serve(unsigned server, struct zone **zones, size_t count)
{
    assert_int_equal(zone_set_create(zones, count, &servers[server]), 0);
}

static int setup(void **state)
{
    limits_init_defaults(&auth_limits);
    struct zone *z1[] = {load(".", DATA "root.zone")};
    struct zone *z2[] = {load("test", DATA "test.zone")};
    struct zone *z3[] = {load("example.test", DATA "example.test.zone")};
    struct zone *z4[] = {load("other.test", DATA "other.test.zone"),
                         load("oob.test", DATA "oob.test.zone")};
    serve(1, z1, 1);
    serve(2, z2, 1);
    serve(3, z3, 1);
    serve(4, z4, 2);
    char err[256];
    assert_int_equal(iter_hints_load(DATA "hints", 53, &hints, err, sizeof err), 0);
    assert_int_equal(hints.count, 1);
    return 0;
}

static int teardown(void **state)
{
    for (unsigned i = 0; i < FAKE_SERVERS; i++)
        zone_set_free(servers[i]);
    return 0;
}

/* A fresh resolver (empty cache and infra) for each test. */
static int fresh(void **state)
{
    memset(&net, 0, sizeof net);
    net.now = 1000000;
    assert_int_equal(resolver_config_init(&cfg), 0);
    cfg.resolution.allow_private_upstreams = true;
    struct cache_options co;
    cache_options_init_defaults(&co);
    assert_int_equal(cache_create(&co, &cache), 0);
    assert_int_equal(infra_create(NULL, &infra), 0);
    env = (struct iter_env){
        .cache = cache,
        .infra = infra,
        .cfg = &cfg,
        .hints = &hints,
        .transport = {fake_send, fake_cancel, &net, fake_now},
    };
    return 0;
}

static int cleanup(void **state)
{
    cache_free(cache);
    infra_free(infra);
    resolver_config_free(&cfg);
    return 0;
}

static bool finished;
static void on_done(void *ctx, struct iter_request *req)
{
    finished = true;
}

/* Resolve and return the response as ldns sees it (the request is freed). */
static ldns_pkt *resolve(const char *name, uint16_t qtype, uint16_t *rcode, bool rd)
{
    uint8_t query[512];
    memset(query, 0, 12);
    wire_write_u16(query, 0x7777);
    wire_write_u16(query + 2, rd ? WIRE_FLAG_RD : 0);
    wire_write_u16(query + 4, 1);
    size_t len = 0;
    assert_int_equal(wire_name_from_text(name, query + 12, &len), 0);
    len += 12;
    wire_write_u16(query + len, qtype);
    wire_write_u16(query + len + 2, WIRE_CLASS_IN);
    len += 4;
    struct wire_query q;
    assert_int_equal(wire_parse_query(query, len, &q), 0);
    struct iter_request *req = NULL;
    finished = false;
    if (rd)
        assert_int_equal(iter_request_start(&env, q.qname, q.qname_len, qtype, on_done, NULL, &req),
                         0);
    else
        assert_int_equal(
            iter_request_cache_only(&env, q.qname, q.qname_len, qtype, on_done, NULL, &req), 0);
    pump();
    assert_true(finished);
    *rcode = iter_request_rcode(req);
    uint8_t resp[4096];
    size_t n = iter_write_response(req, query, &q, 1232, resp, sizeof resp);
    iter_request_free(req);
    ldns_pkt *pkt = NULL;
    assert_int_equal(ldns_wire2pkt(&pkt, resp, n), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_id(pkt), 0x7777);
    assert_true(ldns_pkt_ra(pkt));
    return pkt;
}

static char *rr_text(ldns_rr_list *list, size_t i)
{
    static char text[512];
    char *s = ldns_rr2str(ldns_rr_list_rr(list, i));
    snprintf(text, sizeof text, "%s", s);
    free(s);
    text[strcspn(text, "\n")] = '\0';
    return text;
}

static void test_iterate_resolves_from_root_and_caches(void **state)
{
    uint16_t rcode;
    ldns_pkt *p = resolve("www.example.test", WIRE_TYPE_A, &rcode, true);
    assert_int_equal(rcode, WIRE_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    assert_string_equal(rr_text(ldns_pkt_answer(p), 0),
                        "www.example.test.\t3600\tIN\tA\t192.0.2.10");
    ldns_pkt_free(p);
    assert_true(net.per_server[1] >= 1 && net.per_server[2] >= 1 && net.per_server[3] >= 1);
    unsigned sent = net.total;
    p = resolve("WWW.example.test", WIRE_TYPE_A, &rcode, true); /* from the cache */
    assert_int_equal(net.total, sent);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    /* a sibling name reuses the cached delegation: only example.test's server is asked */
    unsigned root_before = net.per_server[1];
    p = resolve("nothere.example.test", WIRE_TYPE_A, &rcode, true);
    assert_int_equal(net.per_server[1], root_before);
    assert_int_equal(rcode, WIRE_RCODE_NXDOMAIN);
    assert_int_equal(ldns_pkt_nscount(p), 1);
    assert_int_equal(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_authority(p), 0)), LDNS_RR_TYPE_SOA);
    ldns_pkt_free(p);
}

static void test_iterate_chases_cname_across_zones(void **state)
{
    uint16_t rcode;
    ldns_pkt *p = resolve("alias.example.test", WIRE_TYPE_A, &rcode, true);
    assert_int_equal(rcode, WIRE_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    assert_int_equal(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_answer(p), 0)), LDNS_RR_TYPE_CNAME);
    assert_string_equal(rr_text(ldns_pkt_answer(p), 1), "www.other.test.\t3600\tIN\tA\t192.0.2.20");
    ldns_pkt_free(p);
}

static void test_iterate_resolves_out_of_bailiwick_ns(void **state)
{
    uint16_t rcode;
    ldns_pkt *p = resolve("www.oob.test", WIRE_TYPE_A, &rcode, true);
    assert_int_equal(rcode, WIRE_RCODE_NOERROR);
    assert_string_equal(rr_text(ldns_pkt_answer(p), 0), "www.oob.test.\t3600\tIN\tA\t192.0.2.30");
    ldns_pkt_free(p);
    assert_true(net.per_server[4] >= 2); /* ns.other.test's address, then the answer */
}

static void test_iterate_lame_and_silent_servers_servfail(void **state)
{
    uint16_t rcode;
    ldns_pkt *p = resolve("x.lame", WIRE_TYPE_A, &rcode, true);
    assert_int_equal(rcode, WIRE_RCODE_SERVFAIL);
    assert_int_equal(ldns_pkt_ancount(p), 0);
    ldns_pkt_free(p);
    p = resolve("x.silent", WIRE_TYPE_A, &rcode, true);
    assert_int_equal(rcode, WIRE_RCODE_SERVFAIL);
    ldns_pkt_free(p);
    assert_true(net.per_server[10] >= 1 && net.per_server[11] >= 1); /* both tried */
    struct addr a;
    assert_int_equal(addr_parse("127.0.0.10@53", 53, &a), 0);
    struct infra_server_info info;
    infra_get(infra, &a, net.now, &info);
    assert_true(info.failures >= 1); /* the timeout was remembered */
}

static bool log_has(const char *line)
{
    for (unsigned i = 0; i < net.log_count; i++)
        if (strcmp(net.log[i], line) == 0)
            return true;
    return false;
}

static void test_iterate_minimises_qname(void **state)
{
    uint16_t rcode;
    ldns_pkt *p = resolve("a.b.c.deep.example.test", WIRE_TYPE_AAAA, &rcode, true);
    ldns_pkt_free(p);
    assert_int_equal(rcode, WIRE_RCODE_NOERROR);
    /* the root is asked for test. (type A), never for the full name */
    assert_true(log_has("1 test. 1"));
    assert_false(log_has("1 a.b.c.deep.example.test. 28"));
    assert_true(log_has("3 deep.example.test. 1"));
    assert_true(log_has("3 a.b.c.deep.example.test. 28"));
}

static void test_iterate_without_minimisation_sends_full_name(void **state)
{
    cfg.resolution.qname_minimisation = false;
    uint16_t rcode;
    ldns_pkt *p = resolve("www.example.test", WIRE_TYPE_A, &rcode, true);
    ldns_pkt_free(p);
    assert_true(log_has("1 www.example.test. 1"));
}

static void test_iterate_outbound_budget_stops_resolution(void **state)
{
    cfg.resolution.max_outbound_queries = 2;
    uint16_t rcode;
    ldns_pkt *p = resolve("www.example.test", WIRE_TYPE_A, &rcode, true);
    ldns_pkt_free(p);
    assert_int_equal(rcode, WIRE_RCODE_SERVFAIL);
    assert_true(net.total <= 2);
}

static void test_iterate_referral_budget(void **state)
{
    cfg.resolution.max_referrals = 1;
    cfg.resolution.qname_minimisation = false;
    uint16_t rcode;
    ldns_pkt *p = resolve("www.example.test", WIRE_TYPE_A, &rcode, true);
    ldns_pkt_free(p);
    assert_int_equal(rcode, WIRE_RCODE_SERVFAIL); /* root → test. → example.test. is 2 */
}

static void test_iterate_cache_only_without_recursion(void **state)
{
    uint16_t rcode;
    ldns_pkt *p = resolve("www.example.test", WIRE_TYPE_A, &rcode, false);
    assert_int_equal(net.total, 0);
    assert_int_equal(ldns_pkt_ancount(p), 0);
    ldns_pkt_free(p);
    p = resolve("www.example.test", WIRE_TYPE_A, &rcode, true);
    ldns_pkt_free(p);
    unsigned sent = net.total;
    p = resolve("www.example.test", WIRE_TYPE_A, &rcode, false);
    assert_int_equal(net.total, sent);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
}

static void test_iterate_refuses_private_upstreams_by_default(void **state)
{
    cfg.resolution.allow_private_upstreams = false;
    uint16_t rcode;
    ldns_pkt *p = resolve("www.example.test", WIRE_TYPE_A, &rcode, true);
    ldns_pkt_free(p);
    assert_int_equal(rcode, WIRE_RCODE_SERVFAIL);
    assert_int_equal(net.total, 0); /* 127.0.0.1 is never asked */
}

/* NXNSAttack (CVE-2020-12662): a referral to 20 NS names without glue must not make the
 * resolver look up all of them. */
static void test_iterate_ns_name_budget_limits_nxns_amplification(void **state)
{
    cfg.resolution.max_ns_names = 3;
    uint16_t rcode;
    ldns_pkt *p = resolve("www.nxns.test", WIRE_TYPE_A, &rcode, true);
    ldns_pkt_free(p);
    assert_int_equal(rcode, WIRE_RCODE_SERVFAIL);
    unsigned lookups = 0;
    for (unsigned i = 0; i < net.log_count; i++)
        if (strstr(net.log[i], ".other.test. ") && strncmp(net.log[i], "4 ns", 4) == 0)
            lookups++;
    assert_true(lookups <= 3 * 2); /* at most max-ns-names names (maybe minimised + full) */
    assert_true(net.total < 20);
}

static void test_iterate_qmin_steps(void **state)
{
    uint8_t target[WIRE_NAME_MAX], out[WIRE_NAME_MAX];
    size_t len = 0, out_len = 0;
    char text[256];
    wire_name_from_text("a.b.c.d.e.f.g.h.i.j.k.l.example.test", target, &len);
    /* from the root: test., then example.test., ... one label at a time for 4 steps */
    assert_int_equal(iter_qmin_next(target, len, 0, 0, out, &out_len), 1);
    wire_name_to_text(out, text, sizeof text);
    assert_string_equal(text, "test.");
    assert_int_equal(iter_qmin_next(target, len, 3, 0, out, &out_len), 4);
    /* after 4 one-label steps the rest is spread: never more than 10 queries in total */
    unsigned labels = 0, queries = 0;
    while (labels < 14) {
        labels = iter_qmin_next(target, len, labels, 0, out, &out_len);
        queries++;
    }
    assert_true(queries <= 10);
    wire_name_to_text(out, text, sizeof text);
    assert_string_equal(text, "a.b.c.d.e.f.g.h.i.j.k.l.example.test.");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_iterate_resolves_from_root_and_caches, fresh, cleanup),
        cmocka_unit_test_setup_teardown(test_iterate_chases_cname_across_zones, fresh, cleanup),
        cmocka_unit_test_setup_teardown(test_iterate_resolves_out_of_bailiwick_ns, fresh, cleanup),
        cmocka_unit_test_setup_teardown(test_iterate_lame_and_silent_servers_servfail, fresh,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_iterate_minimises_qname, fresh, cleanup),
        cmocka_unit_test_setup_teardown(test_iterate_without_minimisation_sends_full_name, fresh,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_iterate_outbound_budget_stops_resolution, fresh,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_iterate_referral_budget, fresh, cleanup),
        cmocka_unit_test_setup_teardown(test_iterate_cache_only_without_recursion, fresh, cleanup),
        cmocka_unit_test_setup_teardown(test_iterate_refuses_private_upstreams_by_default, fresh,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_iterate_ns_name_budget_limits_nxns_amplification,
                                        fresh, cleanup),
        cmocka_unit_test(test_iterate_qmin_steps),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
