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
    int fail[FAKE_SERVERS]; /* nonzero: every send to that server completes with this status */
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
        if (s->server < FAKE_SERVERS && net.fail[s->server] != 0) {
            s->done(s->ctx, net.fail[s->server], NULL, 0, 0);
            continue;
        }
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

/* A client query (ID 0x7777) for name/qtype in query (512 bytes), with an OPT record (UDP size
 * 1232) when edns; parsed into q. Returns its length. */
static size_t build_query(const char *name, uint16_t qtype, bool rd, bool edns, uint8_t *query,
                          struct wire_query *q)
{
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
    if (edns) {
        static const uint8_t opt[11] = {0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0};
        wire_write_u16(query + 10, 1);
        memcpy(query + len, opt, sizeof opt);
        len += sizeof opt;
    }
    assert_int_equal(wire_parse_query(query, len, q), 0);
    return len;
}

/* Resolve and return the response as ldns sees it (the request is freed). */
static ldns_pkt *resolve(const char *name, uint16_t qtype, uint16_t *rcode, bool rd)
{
    uint8_t query[512];
    struct wire_query q;
    build_query(name, qtype, rd, false, query, &q);
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

/* --- serve-stale (RFC 8767) and the step-by-step request API ------------------------------- */

static struct stale_table *stale_table;

/* A fresh resolver whose cache keeps expired entries for an hour, with a stale table. */
static int fresh_stale(void **state)
{
    fresh(state);
    cache_free(cache);
    struct cache_options co;
    cache_options_init_defaults(&co);
    co.stale_retention_ms = 3600000;
    assert_int_equal(cache_create(&co, &cache), 0);
    assert_int_equal(stale_table_create(0, &stale_table), 0);
    env.cache = cache;
    env.stale = stale_table;
    return 0;
}

static int cleanup_stale(void **state)
{
    stale_table_free(stale_table);
    stale_table = NULL;
    return cleanup(state);
}

static struct {
    uint8_t wire[WIRE_NAME_MAX];
    size_t len;
} names[4];

/* The wire form of text (a few slots, reused round robin). */
static const uint8_t *wire_of(const char *text, size_t *len)
{
    static unsigned next;
    unsigned slot = next++ % 4;
    assert_int_equal(wire_name_from_text(text, names[slot].wire, &names[slot].len), 0);
    *len = names[slot].len;
    return names[slot].wire;
}

static void insert_rrset(const char *name, uint16_t type, const uint8_t *rdata, size_t rdlen,
                         uint32_t ttl, uint64_t now)
{
    uint8_t data[300];
    wire_write_u16(data, (uint16_t)rdlen);
    memcpy(data + 2, rdata, rdlen);
    size_t len;
    const uint8_t *wire = wire_of(name, &len);
    assert_int_equal(cache_insert_rrset(cache, wire, len, type, WIRE_CLASS_IN, ttl,
                                        CACHE_RANK_ANSWER_AUTH, data, rdlen + 2, 1, now),
                     0);
}

static void insert_a(const char *name, uint32_t ttl, uint64_t now)
{
    static const uint8_t a[4] = {192, 0, 2, 99};
    insert_rrset(name, WIRE_TYPE_A, a, sizeof a, ttl, now);
}

static void insert_aaaa(const char *name, uint32_t ttl, uint64_t now)
{
    static const uint8_t aaaa[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x99};
    insert_rrset(name, WIRE_TYPE_AAAA, aaaa, sizeof aaaa, ttl, now);
}

static void insert_cname(const char *name, const char *target, uint32_t ttl, uint64_t now)
{
    size_t len;
    const uint8_t *wire = wire_of(target, &len);
    insert_rrset(name, WIRE_TYPE_CNAME, wire, len, ttl, now);
}

/* An NXDOMAIN (type 0) or NODATA entry with example.test's SOA (MINIMUM 300). */
static void insert_negative(const char *name, uint16_t type, uint32_t ttl, uint64_t now)
{
    uint8_t soa[WIRE_NAME_MAX * 2 + 20];
    size_t mname_len, rname_len, owner_len;
    const uint8_t *mname = wire_of("ns1.example.test", &mname_len);
    memcpy(soa, mname, mname_len);
    const uint8_t *rname = wire_of("admin.example.test", &rname_len);
    memcpy(soa + mname_len, rname, rname_len);
    uint8_t *numbers = soa + mname_len + rname_len;
    wire_write_u32(numbers, 1);
    wire_write_u32(numbers + 4, 1800);
    wire_write_u32(numbers + 8, 900);
    wire_write_u32(numbers + 12, 604800);
    wire_write_u32(numbers + 16, 300);
    const uint8_t *owner = wire_of("example.test", &owner_len);
    uint8_t owner_copy[WIRE_NAME_MAX];
    memcpy(owner_copy, owner, owner_len);
    size_t len;
    const uint8_t *wire = wire_of(name, &len);
    assert_int_equal(cache_insert_negative(cache, wire, len, type, WIRE_CLASS_IN, owner_copy,
                                           owner_len, soa, mname_len + rname_len + 20, ttl,
                                           CACHE_RANK_ANSWER_AUTH, now),
                     0);
}

/* What the cache holds for name/type at net.now: CACHE_MISS/FRESH/STALE, kind in *kind. */
static int cached(const char *name, uint16_t type, enum cache_kind *kind)
{
    static uint8_t buf[CACHE_LOOKUP_BUF_MAX];
    struct cache_result r;
    size_t len;
    const uint8_t *wire = wire_of(name, &len);
    int status = cache_lookup(cache, wire, len, type, WIRE_CLASS_IN, net.now, &r, buf, sizeof buf);
    *kind = status > 0 ? r.kind : 0;
    return status;
}

static struct iter_request *create(const char *name, uint16_t qtype)
{
    size_t len;
    const uint8_t *wire = wire_of(name, &len);
    struct iter_request *req = NULL;
    finished = false;
    assert_int_equal(iter_request_create(&env, wire, len, qtype, on_done, NULL, &req), 0);
    assert_false(finished);
    return req;
}

/* iter_request_start, the network pumped until the request is done; the caller frees it. */
static struct iter_request *run_to_end(const char *name, uint16_t qtype)
{
    size_t len;
    const uint8_t *wire = wire_of(name, &len);
    struct iter_request *req = NULL;
    finished = false;
    assert_int_equal(iter_request_start(&env, wire, len, qtype, on_done, NULL, &req), 0);
    pump();
    assert_true(finished);
    return req;
}

static struct iter_request *stale_answer(const char *name, uint16_t qtype)
{
    size_t len;
    const uint8_t *wire = wire_of(name, &len);
    struct iter_request *req = NULL;
    assert_int_equal(iter_request_stale(&env, wire, len, qtype, &req), 0);
    assert_non_null(req);
    return req;
}

static int stale_answer_status(const char *name, uint16_t qtype)
{
    size_t len;
    const uint8_t *wire = wire_of(name, &len);
    struct iter_request *req = NULL;
    int rc = iter_request_stale(&env, wire, len, qtype, &req);
    if (rc == 0)
        iter_request_free(req);
    return rc;
}

/* The EDE INFO-CODE in a response (RFC 8914 §2): -2 without OPT, -1 with an OPT without EDE. */
static int response_ede(const uint8_t *resp, size_t n)
{
    assert_true(n >= WIRE_HEADER_LEN);
    if (wire_read_u16(resp + 10) == 0)
        return -2;
    ldns_pkt *pkt = NULL;
    assert_int_equal(ldns_wire2pkt(&pkt, resp, n), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_edns_udp_size(pkt), 1232);
    int ede = -1;
    const ldns_rdf *data = ldns_pkt_edns_data(pkt);
    const uint8_t *at = data ? ldns_rdf_data(data) : NULL;
    size_t left = data ? ldns_rdf_size(data) : 0;
    while (left >= 4) {
        uint16_t code = wire_read_u16(at), len = wire_read_u16(at + 2);
        assert_true(4u + len <= left);
        if (code == 15) {
            assert_int_equal(len, 2); /* INFO-CODE, no EXTRA-TEXT */
            ede = wire_read_u16(at + 4);
        }
        at += 4u + len;
        left -= 4u + len;
    }
    ldns_pkt_free(pkt);
    return ede;
}

/* Write req's response to a query for name/qtype (with EDNS or not); returns it parsed, and the
 * EDE found in *ede. */
static ldns_pkt *respond(const struct iter_request *req, const char *name, uint16_t qtype,
                         bool edns, int *ede)
{
    uint8_t query[512], resp[4096];
    struct wire_query q;
    build_query(name, qtype, true, edns, query, &q);
    size_t n = iter_write_response(req, query, &q, 1232, resp, sizeof resp);
    assert_true(n > WIRE_HEADER_LEN);
    *ede = response_ede(resp, n);
    ldns_pkt *pkt = NULL;
    assert_int_equal(ldns_wire2pkt(&pkt, resp, n), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_id(pkt), 0x7777);
    return pkt;
}

static void test_iterate_try_cache_answers_cached_question(void **state)
{
    uint16_t rcode;
    ldns_pkt_free(resolve("www.example.test", WIRE_TYPE_A, &rcode, true));
    unsigned sent = net.total;
    struct iter_request *req = create("WWW.example.test", WIRE_TYPE_A);
    assert_true(iter_request_try_cache(req));
    assert_true(finished);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NOERROR);
    assert_false(iter_request_from_stale(req));
    assert_int_equal(iter_request_ede(req), STALE_EDE_NONE);
    assert_int_equal(net.total, sent);
    int ede;
    ldns_pkt *p = respond(req, "WWW.example.test", WIRE_TYPE_A, true, &ede);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    assert_int_equal(ede, -1); /* OPT, but no EDE for a fresh answer */
    ldns_pkt_free(p);
    iter_request_free(req);
}

static void test_iterate_try_cache_miss_sends_nothing_until_run(void **state)
{
    struct iter_request *req = create("www.example.test", WIRE_TYPE_A);
    assert_false(iter_request_try_cache(req));
    assert_false(finished);
    assert_int_equal(net.total, 0);
    iter_request_run(req);
    assert_true(net.total >= 1);
    assert_int_equal(net.per_server[1], 1); /* the root first */
    pump();
    assert_true(finished);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NOERROR);
    iter_request_free(req);
    enum cache_kind kind;
    assert_int_equal(cached("www.example.test", WIRE_TYPE_A, &kind), CACHE_FRESH);
    assert_int_equal(kind, CACHE_KIND_RRSET);
}

static void test_iterate_refresh_asks_authority_for_cached_question(void **state)
{
    uint16_t rcode;
    ldns_pkt_free(resolve("www.example.test", WIRE_TYPE_A, &rcode, true));
    unsigned root = net.per_server[1], leaf = net.per_server[3];
    struct iter_request *req = create("www.example.test", WIRE_TYPE_A);
    iter_request_set_refresh(req);
    assert_false(iter_request_try_cache(req)); /* a refresh never answers from the cache */
    assert_int_equal(net.per_server[3], leaf);
    iter_request_run(req);
    pump();
    assert_true(finished);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NOERROR);
    assert_int_equal(net.per_server[3], leaf + 1); /* asked again */
    assert_int_equal(net.per_server[1], root);     /* the delegation came from the cache */
    iter_request_free(req);
}

static void test_iterate_stale_answer_from_expired_entry(void **state)
{
    cfg.stale.stale_ttl = 17;
    insert_a("old.example.test", 1, 0);
    net.now = 5000;
    struct iter_request *req = stale_answer("OLD.example.test", WIRE_TYPE_A);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NOERROR);
    assert_true(iter_request_from_stale(req));
    assert_int_equal(iter_request_ede(req), STALE_EDE_STALE_ANSWER);
    assert_int_equal(net.total, 0);
    int ede;
    ldns_pkt *p = respond(req, "OLD.example.test", WIRE_TYPE_A, true, &ede);
    assert_int_equal(ede, STALE_EDE_STALE_ANSWER);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    assert_string_equal(rr_text(ldns_pkt_answer(p), 0), "OLD.example.test.\t17\tIN\tA\t192.0.2.99");
    ldns_pkt_free(p);
    /* without EDNS in the query: no OPT, so no EDE */
    p = respond(req, "OLD.example.test", WIRE_TYPE_A, false, &ede);
    assert_int_equal(ede, -2);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    iter_request_free(req);
}

static void test_iterate_stale_nxdomain_has_its_own_ede(void **state)
{
    cfg.stale.stale_ttl = 17;
    insert_negative("gone.example.test", 0, 1, 0);
    net.now = 5000;
    struct iter_request *req = stale_answer("gone.example.test", WIRE_TYPE_AAAA);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NXDOMAIN);
    assert_true(iter_request_from_stale(req));
    assert_int_equal(iter_request_ede(req), STALE_EDE_STALE_NXDOMAIN);
    int ede;
    ldns_pkt *p = respond(req, "gone.example.test", WIRE_TYPE_AAAA, true, &ede);
    assert_int_equal(ede, STALE_EDE_STALE_NXDOMAIN);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    assert_int_equal(ldns_pkt_nscount(p), 1);
    ldns_rr *soa = ldns_rr_list_rr(ldns_pkt_authority(p), 0);
    assert_int_equal(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
    assert_int_equal(ldns_rr_ttl(soa), 17);
    ldns_pkt_free(p);
    iter_request_free(req);
}

static void test_iterate_stale_nodata_is_a_stale_answer(void **state)
{
    insert_negative("www.example.test", WIRE_TYPE_AAAA, 1, 0);
    net.now = 5000;
    struct iter_request *req = stale_answer("www.example.test", WIRE_TYPE_AAAA);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NOERROR);
    assert_true(iter_request_from_stale(req));
    assert_int_equal(iter_request_ede(req), STALE_EDE_STALE_ANSWER);
    iter_request_free(req);
}

static void test_iterate_stale_without_cached_data_is_not_found(void **state)
{
    assert_int_equal(stale_answer_status("nothing.example.test", WIRE_TYPE_A), BALLAST_ENOTFOUND);
    /* another type at the name does not answer the question */
    insert_a("old.example.test", 1, 0);
    net.now = 5000;
    assert_int_equal(stale_answer_status("old.example.test", WIRE_TYPE_AAAA), BALLAST_ENOTFOUND);
    /* beyond stale retention the entry is gone */
    net.now = 3600000 + 2000;
    assert_int_equal(stale_answer_status("old.example.test", WIRE_TYPE_A), BALLAST_ENOTFOUND);
    assert_int_equal(net.total, 0);
}

static void test_iterate_stale_request_with_fresh_entry_is_not_stale(void **state)
{
    insert_a("new.example.test", 3600, 0);
    net.now = 5000;
    struct iter_request *req = stale_answer("new.example.test", WIRE_TYPE_A);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NOERROR);
    assert_false(iter_request_from_stale(req));
    assert_int_equal(iter_request_ede(req), STALE_EDE_NONE);
    int ede;
    ldns_pkt *p = respond(req, "new.example.test", WIRE_TYPE_A, true, &ede);
    assert_int_equal(ede, -1);
    assert_int_equal(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(p), 0)), 3595);
    ldns_pkt_free(p);
    iter_request_free(req);
}

static void test_iterate_stale_follows_cname_chain(void **state)
{
    cfg.stale.stale_ttl = 17;
    insert_cname("alias.example.test", "www.other.test", 1, 0);
    insert_a("www.other.test", 1, 0);
    net.now = 5000;
    struct iter_request *req = stale_answer("alias.example.test", WIRE_TYPE_A);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NOERROR);
    assert_int_equal(iter_request_ede(req), STALE_EDE_STALE_ANSWER);
    int ede;
    ldns_pkt *p = respond(req, "alias.example.test", WIRE_TYPE_A, true, &ede);
    assert_int_equal(ede, STALE_EDE_STALE_ANSWER);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    assert_string_equal(rr_text(ldns_pkt_answer(p), 0),
                        "alias.example.test.\t17\tIN\tCNAME\twww.other.test.");
    assert_string_equal(rr_text(ldns_pkt_answer(p), 1), "www.other.test.\t17\tIN\tA\t192.0.2.99");
    ldns_pkt_free(p);
    iter_request_free(req);
    /* a chain whose end is not cached cannot answer the question */
    insert_cname("dangling.example.test", "nowhere.other.test", 1, 0);
    assert_int_equal(stale_answer_status("dangling.example.test", WIRE_TYPE_A), BALLAST_ENOTFOUND);
}

static void test_iterate_servfail_carries_ede_with_edns_only(void **state)
{
    uint8_t query[512], resp[512];
    struct wire_query q;
    build_query("x.silent", WIRE_TYPE_A, true, true, query, &q);
    size_t n =
        iter_write_servfail(query, &q, 1232, STALE_EDE_NO_REACHABLE_AUTHORITY, resp, sizeof resp);
    assert_true(n > q.question_end);
    assert_int_equal(response_ede(resp, n), STALE_EDE_NO_REACHABLE_AUTHORITY);
    ldns_pkt *p = NULL;
    assert_int_equal(ldns_wire2pkt(&p, resp, n), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
    assert_int_equal(ldns_pkt_id(p), 0x7777);
    assert_true(ldns_pkt_qr(p) && ldns_pkt_ra(p) && ldns_pkt_rd(p));
    assert_int_equal(ldns_pkt_qdcount(p), 1);
    assert_int_equal(ldns_pkt_ancount(p), 0);
    ldns_pkt_free(p);
    /* STALE_EDE_NONE: an OPT without options */
    n = iter_write_servfail(query, &q, 1232, STALE_EDE_NONE, resp, sizeof resp);
    assert_int_equal(response_ede(resp, n), -1);
    /* no EDNS in the query: no OPT at all */
    build_query("x.silent", WIRE_TYPE_A, true, false, query, &q);
    n = iter_write_servfail(query, &q, 1232, STALE_EDE_NO_REACHABLE_AUTHORITY, resp, sizeof resp);
    assert_int_equal(n, q.question_end);
    assert_int_equal(response_ede(resp, n), -2);
    assert_int_equal(resp[3] & 0xF, WIRE_RCODE_SERVFAIL);
    /* too small a buffer */
    assert_int_equal(iter_write_servfail(query, &q, 1232, STALE_EDE_NONE, resp, 12), 0);
}

static void test_iterate_prefetch_due_near_end_of_ttl(void **state)
{
    uint64_t start = net.now;
    insert_a("hot.example.test", 100, start);
    net.now = start + 50000; /* 50 s of 100 left */
    struct iter_request *req = create("hot.example.test", WIRE_TYPE_A);
    assert_true(iter_request_try_cache(req));
    assert_false(iter_request_prefetch_due(req));
    iter_request_free(req);
    net.now = start + 99000; /* 1 s left: within the last 10 % */
    req = create("hot.example.test", WIRE_TYPE_A);
    assert_true(iter_request_try_cache(req));
    assert_true(iter_request_prefetch_due(req));
    iter_request_free(req);
    cfg.stale.prefetch = false;
    req = create("hot.example.test", WIRE_TYPE_A);
    assert_true(iter_request_try_cache(req));
    assert_false(iter_request_prefetch_due(req));
    iter_request_free(req);
    assert_int_equal(net.total, 0);
}

static void set_critical(const char *suffix)
{
    cfg.stale.critical = calloc(1, sizeof *cfg.stale.critical);
    assert_non_null(cfg.stale.critical);
    assert_int_equal(
        wire_name_from_text(suffix, cfg.stale.critical[0].wire, &cfg.stale.critical[0].wire_len),
        0);
    cfg.stale.critical_count = 1;
    cfg.stale.suspicion_window_ms = 60000;
}

static void test_iterate_critical_name_turning_empty_is_suspect(void **state)
{
    set_critical("example.test");
    insert_aaaa("www.example.test", 1, net.now - 10000); /* stale */
    struct iter_request *req = run_to_end("www.example.test", WIRE_TYPE_AAAA);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_SERVFAIL);
    assert_true(iter_request_suspect(req));
    assert_int_equal(iter_request_ede(req), STALE_EDE_NONE);
    assert_true(net.per_server[3] >= 1); /* the authority was asked and said NODATA */
    iter_request_free(req);
    enum cache_kind kind;
    assert_int_equal(cached("www.example.test", WIRE_TYPE_AAAA, &kind), CACHE_STALE);
    assert_int_equal(kind, CACHE_KIND_RRSET); /* the NODATA was not cached */
    struct stale_table_stats s;
    stale_table_get_stats(stale_table, &s);
    assert_int_equal(s.suspicions, 1);
    /* still within the window */
    net.now += 30000;
    req = run_to_end("www.example.test", WIRE_TYPE_AAAA);
    assert_true(iter_request_suspect(req));
    iter_request_free(req);
    /* the window is over: the empty answer is accepted and cached */
    net.now += 31000;
    req = run_to_end("www.example.test", WIRE_TYPE_AAAA);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NOERROR);
    assert_false(iter_request_suspect(req));
    iter_request_free(req);
    assert_int_equal(cached("www.example.test", WIRE_TYPE_AAAA, &kind), CACHE_FRESH);
    assert_int_equal(kind, CACHE_KIND_NODATA);
    stale_table_get_stats(stale_table, &s);
    assert_int_equal(s.suspicions, 1);
    assert_int_equal(s.suspicions_ended, 1);
}

static void test_iterate_critical_name_turning_nxdomain_is_suspect(void **state)
{
    set_critical("example.test");
    insert_a("gone.example.test", 1, net.now - 10000);
    struct iter_request *req = run_to_end("gone.example.test", WIRE_TYPE_A);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_SERVFAIL);
    assert_true(iter_request_suspect(req));
    iter_request_free(req);
    enum cache_kind kind;
    assert_int_equal(cached("gone.example.test", WIRE_TYPE_A, &kind), CACHE_STALE);
    assert_int_equal(kind, CACHE_KIND_RRSET);
}

/* An NXDOMAIN takes away the whole name: a critical name with a cached A RRset that turns
 * NXDOMAIN to an AAAA query (clients ask A and AAAA together) is suspect too, otherwise the
 * NXDOMAIN would be cached, beat the stale A and be the next A answer with no suspicion window
 * (docs/serve-stale.md). */
static void test_iterate_critical_name_nxdomain_for_other_type_is_suspect(void **state)
{
    set_critical("example.test");
    insert_a("gone.example.test", 1, net.now - 10000);
    struct iter_request *req = run_to_end("gone.example.test", WIRE_TYPE_AAAA);
    bool suspect = iter_request_suspect(req);
    iter_request_free(req);
    enum cache_kind kind;
    int status = cached("gone.example.test", WIRE_TYPE_A, &kind);
    assert_int_equal(kind, CACHE_KIND_RRSET); /* got CACHE_KIND_NXDOMAIN (3) */
    assert_int_equal(status, CACHE_STALE);
    assert_true(suspect);
}

static void test_iterate_empty_answer_accepted_for_other_names(void **state)
{
    set_critical("example.test");
    /* not critical: the NODATA is taken at once */
    insert_aaaa("www.other.test", 1, net.now - 10000);
    struct iter_request *req = run_to_end("www.other.test", WIRE_TYPE_AAAA);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NOERROR);
    assert_false(iter_request_suspect(req));
    iter_request_free(req);
    enum cache_kind kind;
    assert_int_equal(cached("www.other.test", WIRE_TYPE_AAAA, &kind), CACHE_FRESH);
    assert_int_equal(kind, CACHE_KIND_NODATA);
    /* critical, but nothing was cached for it: nothing to protect */
    req = run_to_end("ns1.example.test", WIRE_TYPE_AAAA);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NOERROR);
    assert_false(iter_request_suspect(req));
    iter_request_free(req);
    struct stale_table_stats s;
    stale_table_get_stats(stale_table, &s);
    assert_int_equal(s.suspicions, 0);
}

static void test_iterate_no_suspicion_without_window_or_table(void **state)
{
    set_critical("example.test");
    cfg.stale.suspicion_window_ms = 0;
    insert_aaaa("www.example.test", 1, net.now - 10000);
    struct iter_request *req = run_to_end("www.example.test", WIRE_TYPE_AAAA);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NOERROR);
    assert_false(iter_request_suspect(req));
    iter_request_free(req);
    cfg.stale.suspicion_window_ms = 60000;
    env.stale = NULL;
    insert_aaaa("ns1.example.test", 1, net.now - 10000);
    req = run_to_end("ns1.example.test", WIRE_TYPE_AAAA);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_NOERROR);
    assert_false(iter_request_suspect(req));
    iter_request_free(req);
}

static void test_iterate_timeouts_give_no_reachable_authority_ede(void **state)
{
    struct iter_request *req = run_to_end("x.silent", WIRE_TYPE_A);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_SERVFAIL);
    assert_int_equal(iter_request_ede(req), STALE_EDE_NO_REACHABLE_AUTHORITY);
    assert_false(iter_request_from_stale(req));
    int ede;
    ldns_pkt *p = respond(req, "x.silent", WIRE_TYPE_A, true, &ede);
    assert_int_equal(ede, STALE_EDE_NO_REACHABLE_AUTHORITY);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
    assert_int_equal(ldns_pkt_ancount(p), 0);
    ldns_pkt_free(p);
    iter_request_free(req);
}

static void test_iterate_network_errors_give_network_error_ede(void **state)
{
    net.fail[10] = BALLAST_EIO;
    net.fail[11] = BALLAST_EIO;
    struct iter_request *req = run_to_end("x.silent", WIRE_TYPE_A);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_SERVFAIL);
    assert_int_equal(iter_request_ede(req), STALE_EDE_NETWORK_ERROR);
    assert_true(net.per_server[10] >= 1 && net.per_server[11] >= 1);
    iter_request_free(req);
}

static void test_iterate_lame_answers_give_no_reachable_authority_ede(void **state)
{
    /* RFC 8914 §4.23: 22 also covers servers that "refused to reply"; no network error */
    struct iter_request *req = run_to_end("x.lame", WIRE_TYPE_A);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_SERVFAIL);
    assert_true(net.per_server[9] >= 1);
    assert_int_equal(iter_request_ede(req), STALE_EDE_NO_REACHABLE_AUTHORITY);
    iter_request_free(req);
}

static void test_iterate_fails_fast_when_all_servers_held_down(void **state)
{
    infra_free(infra);
    struct infra_config ic;
    infra_config_defaults(&ic);
    ic.fail_threshold = 1;
    ic.fail_when_all_held = true;
    assert_int_equal(infra_create(&ic, &infra), 0);
    env.infra = infra;
    struct iter_request *req = run_to_end("x.silent", WIRE_TYPE_A);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_SERVFAIL);
    iter_request_free(req);
    unsigned tries = net.per_server[10] + net.per_server[11];
    assert_true(tries >= 2);
    /* both are held down now, no probe is due: nothing is sent to them */
    net.now += 1000;
    req = run_to_end("y.silent", WIRE_TYPE_A);
    assert_int_equal(iter_request_rcode(req), WIRE_RCODE_SERVFAIL);
    assert_string_equal(iter_request_failure(req), "all servers held down");
    assert_int_equal(iter_request_ede(req), STALE_EDE_NO_REACHABLE_AUTHORITY);
    assert_int_equal(net.per_server[10] + net.per_server[11], tries);
    iter_request_free(req);
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
        cmocka_unit_test_setup_teardown(test_iterate_try_cache_answers_cached_question, fresh_stale,
                                        cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_try_cache_miss_sends_nothing_until_run,
                                        fresh_stale, cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_refresh_asks_authority_for_cached_question,
                                        fresh_stale, cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_stale_answer_from_expired_entry, fresh_stale,
                                        cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_stale_nxdomain_has_its_own_ede, fresh_stale,
                                        cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_stale_nodata_is_a_stale_answer, fresh_stale,
                                        cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_stale_without_cached_data_is_not_found,
                                        fresh_stale, cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_stale_request_with_fresh_entry_is_not_stale,
                                        fresh_stale, cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_stale_follows_cname_chain, fresh_stale,
                                        cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_servfail_carries_ede_with_edns_only,
                                        fresh_stale, cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_prefetch_due_near_end_of_ttl, fresh_stale,
                                        cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_critical_name_turning_empty_is_suspect,
                                        fresh_stale, cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_critical_name_turning_nxdomain_is_suspect,
                                        fresh_stale, cleanup_stale),
        cmocka_unit_test_setup_teardown(
            test_iterate_critical_name_nxdomain_for_other_type_is_suspect, fresh_stale,
            cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_empty_answer_accepted_for_other_names,
                                        fresh_stale, cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_no_suspicion_without_window_or_table,
                                        fresh_stale, cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_timeouts_give_no_reachable_authority_ede,
                                        fresh_stale, cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_network_errors_give_network_error_ede,
                                        fresh_stale, cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_lame_answers_give_no_reachable_authority_ede,
                                        fresh_stale, cleanup_stale),
        cmocka_unit_test_setup_teardown(test_iterate_fails_fast_when_all_servers_held_down,
                                        fresh_stale, cleanup_stale),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
