/* Tests for tools/loadgen.c: a real libuv loop with a tiny DNS responder on 127.0.0.1 (port 0)
 * on the same loop; one 1.5 s run at 200 qps feeds most tests (group setup). */
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <uv.h>

#include "errors.h"
#include "loadgen.h"
#include "wire.h"

#define RUN_RATE 200
#define RUN_MS 1500
#define RUN_CLIENTS 3
#define RUN_TIMEOUT_MS 200
#define MAX_PORTS 16

/* What the responder does for each name. */
enum behaviour {
    B_DATA,     /* an A record, after two decoys (other question; other source port) */
    B_CNAME,    /* a CNAME */
    B_STALE,    /* an A record and EDE 3 (stale answer) */
    B_NODATA,   /* NOERROR, no records */
    B_NXDOMAIN, /* NXDOMAIN */
    B_SERVFAIL, /* SERVFAIL */
    B_REFUSED,  /* REFUSED */
    B_DROP,     /* never answers */
    B_COUNT
};

static const struct {
    const char *text;
    enum behaviour behaviour;
    uint32_t weight;
    bool never_empty;
} test_names[B_COUNT] = {
    {"data.test", B_DATA, 3, true},       {"alias.test", B_CNAME, 1, false},
    {"stale.test", B_STALE, 1, true},     {"empty.test", B_NODATA, 1, true},
    {"nx.test", B_NXDOMAIN, 1, true},     {"fail.test", B_SERVFAIL, 1, false},
    {"refused.test", B_REFUSED, 1, true}, {"drop.test", B_DROP, 1, true},
};

/* ---- responder ---- */

struct responder {
    uv_udp_t udp;
    uv_udp_t spoofer; /* a second socket: answers from it come from the wrong port */
    struct sockaddr_storage addr;
    uint8_t names[B_COUNT][WIRE_NAME_MAX];
    size_t name_lens[B_COUNT];
    uint64_t received[B_COUNT];
    uint64_t total;
    uint64_t with_edns_1232;
    uint64_t decoys;
    uint16_t ports[MAX_PORTS];
    size_t port_count;
    uint8_t buf[4096];
};

static void responder_note_port(struct responder *r, const struct sockaddr *from)
{
    uint16_t port = ntohs(((const struct sockaddr_in *)from)->sin_port);
    for (size_t i = 0; i < r->port_count; i++)
        if (r->ports[i] == port)
            return;
    if (r->port_count < MAX_PORTS)
        r->ports[r->port_count++] = port;
}

/* Header and question of the query, with QR/RA, rcode and the section counts. */
static size_t response_start(const uint8_t *query, const struct wire_query *q, uint8_t *out,
                             unsigned rcode, uint16_t ancount, uint16_t arcount)
{
    memcpy(out, query, q->question_end);
    wire_write_u16(out + 2, (uint16_t)(WIRE_FLAG_QR | WIRE_FLAG_RD | WIRE_FLAG_RA | rcode));
    wire_write_u16(out + 4, 1);
    wire_write_u16(out + 6, ancount);
    wire_write_u16(out + 8, 0);
    wire_write_u16(out + 10, arcount);
    return q->question_end;
}

static size_t append_a(uint8_t *out, size_t len)
{
    static const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1};
    memcpy(out + len, rr, sizeof(rr));
    return len + sizeof(rr);
}

static size_t append_cname(uint8_t *out, size_t len, const uint8_t *target, size_t target_len)
{
    static const uint8_t fixed[] = {0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 60};
    memcpy(out + len, fixed, sizeof(fixed));
    len += sizeof(fixed);
    wire_write_u16(out + len, (uint16_t)target_len);
    memcpy(out + len + 2, target, target_len);
    return len + 2 + target_len;
}

/* RFC 8914 §2: OPT with an EDE option, info-code 3 (Stale Answer). */
static size_t append_opt_ede_stale(uint8_t *out, size_t len)
{
    static const uint8_t opt[] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 6, 0, 15, 0, 2, 0, 3};
    memcpy(out + len, opt, sizeof(opt));
    return len + sizeof(opt);
}

static void responder_send(uv_udp_t *udp, const uint8_t *msg, size_t len, const struct sockaddr *to)
{
    uv_buf_t buf = uv_buf_init((char *)msg, (unsigned)len);
    assert_true(uv_udp_try_send(udp, &buf, 1, to) >= 0);
}

/* Decoys for data.test: the right ID with another question (AAAA), and the right ID and
 * question from another port; both say NXDOMAIN/SERVFAIL so accepting one would show. */
static void responder_send_decoys(struct responder *r, const uint8_t *query,
                                  const struct wire_query *q, const struct sockaddr *to)
{
    uint8_t out[512];
    size_t len = response_start(query, q, out, WIRE_RCODE_NXDOMAIN, 0, 0);
    wire_write_u16(out + q->question_end - 4, WIRE_TYPE_AAAA);
    responder_send(&r->udp, out, len, to);
    len = response_start(query, q, out, WIRE_RCODE_SERVFAIL, 0, 0);
    responder_send(&r->spoofer, out, len, to);
    r->decoys++;
}

static void responder_answer(struct responder *r, enum behaviour b, const uint8_t *query,
                             const struct wire_query *q, const struct sockaddr *to)
{
    uint8_t out[512];
    size_t len = 0;
    switch (b) {
    case B_DATA:
        responder_send_decoys(r, query, q, to);
        len = append_a(out, response_start(query, q, out, WIRE_RCODE_NOERROR, 1, 0));
        break;
    case B_CNAME:
        len = append_cname(out, response_start(query, q, out, WIRE_RCODE_NOERROR, 1, 0),
                           r->names[B_DATA], r->name_lens[B_DATA]);
        break;
    case B_STALE:
        len = append_a(out, response_start(query, q, out, WIRE_RCODE_NOERROR, 1, 1));
        len = append_opt_ede_stale(out, len);
        break;
    case B_NODATA:
        len = response_start(query, q, out, WIRE_RCODE_NOERROR, 0, 0);
        break;
    case B_NXDOMAIN:
        len = response_start(query, q, out, WIRE_RCODE_NXDOMAIN, 0, 0);
        break;
    case B_SERVFAIL:
        len = response_start(query, q, out, WIRE_RCODE_SERVFAIL, 0, 0);
        break;
    case B_REFUSED:
        len = response_start(query, q, out, WIRE_RCODE_REFUSED, 0, 0);
        break;
    case B_DROP:
    case B_COUNT:
        return;
    }
    responder_send(&r->udp, out, len, to);
}

static void responder_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct responder *r = handle->data;
    *buf = uv_buf_init((char *)r->buf, sizeof(r->buf));
}

static void responder_recv(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf,
                           const struct sockaddr *from, unsigned flags)
{
    struct responder *r = udp->data;
    if (nread <= 0 || !from)
        return;
    struct wire_query q;
    const uint8_t *query = (const uint8_t *)buf->base;
    assert_int_equal(wire_parse_query(query, (size_t)nread, &q), 0);
    r->total++;
    responder_note_port(r, from);
    if (q.has_edns && q.edns_udp_size == 1232 && (q.flags & WIRE_FLAG_RD))
        r->with_edns_1232++;
    for (int b = 0; b < B_COUNT; b++) {
        if (q.qname_len == r->name_lens[b] &&
            memcmp(q.qname_lower, r->names[b], q.qname_len) == 0) {
            r->received[b]++;
            responder_answer(r, (enum behaviour)b, query, &q, from);
            return;
        }
    }
    fail_msg("query for an unknown name");
}

static void responder_start(uv_loop_t *loop, struct responder *r)
{
    memset(r, 0, sizeof(*r));
    for (int b = 0; b < B_COUNT; b++)
        assert_int_equal(wire_name_from_text(test_names[b].text, r->names[b], &r->name_lens[b]), 0);
    struct sockaddr_in any;
    uv_ip4_addr("127.0.0.1", 0, &any);
    uv_udp_t *sockets[2] = {&r->udp, &r->spoofer};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(uv_udp_init(loop, sockets[i]), 0);
        sockets[i]->data = r;
        assert_int_equal(uv_udp_bind(sockets[i], (const struct sockaddr *)&any, 0), 0);
    }
    int len = sizeof(r->addr);
    assert_int_equal(uv_udp_getsockname(&r->udp, (struct sockaddr *)&r->addr, &len), 0);
    assert_int_equal(uv_udp_recv_start(&r->udp, responder_alloc, responder_recv), 0);
}

static void responder_close(struct responder *r)
{
    uv_close((uv_handle_t *)&r->udp, NULL);
    uv_close((uv_handle_t *)&r->spoofer, NULL);
}

/* ---- the run ---- */

struct run {
    uv_loop_t loop;
    struct responder responder;
    struct loadgen *lg;
    uv_timer_t stop_timer;
    unsigned done_calls;
    struct loadgen_second *seconds; /* copied when done runs */
    size_t count;
    struct loadgen_second total;
};

static struct run the_run;

static void fill_names(struct loadgen_name *names)
{
    for (int b = 0; b < B_COUNT; b++) {
        memset(&names[b], 0, sizeof(names[b]));
        assert_int_equal(wire_name_from_text(test_names[b].text, names[b].wire, &names[b].wire_len),
                         0);
        names[b].qtype = WIRE_TYPE_A;
        names[b].weight = test_names[b].weight;
        names[b].never_empty = test_names[b].never_empty;
    }
}

static void on_done(void *ctx)
{
    struct run *run = ctx;
    run->done_calls++;
    size_t count = 0;
    const struct loadgen_second *seconds = loadgen_seconds(run->lg, &count);
    run->seconds = calloc(count ? count : 1, sizeof(*run->seconds));
    assert_non_null(run->seconds);
    memcpy(run->seconds, seconds, count * sizeof(*seconds));
    run->count = count;
    loadgen_free(run->lg);
    run->lg = NULL;
    responder_close(&run->responder);
}

static void on_stop_timer(uv_timer_t *timer)
{
    struct run *run = timer->data;
    loadgen_stop(run->lg, on_done, run);
    uv_close((uv_handle_t *)timer, NULL);
}

static void sum_seconds(struct run *run)
{
    struct loadgen_second *t = &run->total;
    memset(t, 0, sizeof(*t));
    for (size_t i = 0; i < run->count; i++) {
        const struct loadgen_second *s = &run->seconds[i];
        t->sent += s->sent;
        t->answered += s->answered;
        t->with_data += s->with_data;
        t->stale += s->stale;
        t->nodata += s->nodata;
        t->nxdomain += s->nxdomain;
        t->servfail += s->servfail;
        t->other_rcode += s->other_rcode;
        t->timeouts += s->timeouts;
        t->never_empty_violations += s->never_empty_violations;
    }
}

static struct loadgen_options run_options(const struct responder *r, struct loadgen_name *names)
{
    struct loadgen_options o = {.names = names,
                                .name_count = B_COUNT,
                                .rate = RUN_RATE,
                                .clients = RUN_CLIENTS,
                                .timeout_ms = RUN_TIMEOUT_MS};
    memcpy(&o.server.ss, &r->addr, sizeof(r->addr));
    o.server.len = sizeof(struct sockaddr_in);
    return o;
}

static int run_load(void **state)
{
    struct run *run = &the_run;
    memset(run, 0, sizeof(*run));
    assert_int_equal(uv_loop_init(&run->loop), 0);
    responder_start(&run->loop, &run->responder);
    struct loadgen_name names[B_COUNT];
    fill_names(names);
    struct loadgen_options o = run_options(&run->responder, names);
    assert_int_equal(loadgen_start(&run->loop, &o, &run->lg), 0);
    assert_int_equal(uv_timer_init(&run->loop, &run->stop_timer), 0);
    run->stop_timer.data = run;
    assert_int_equal(uv_timer_start(&run->stop_timer, on_stop_timer, RUN_MS, 0), 0);
    assert_int_equal(uv_run(&run->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&run->loop), 0);
    sum_seconds(run);
    return 0;
}

static int free_load(void **state)
{
    free(the_run.seconds);
    return 0;
}

/* ---- tests on the run ---- */

static void test_loadgen_sends_at_the_configured_rate(void **state)
{
    const struct run *run = &the_run;
    uint64_t expected = (uint64_t)RUN_RATE * RUN_MS / 1000;
    assert_in_range(run->total.sent, expected * 9 / 10, expected * 11 / 10);
    assert_int_equal(run->responder.total, run->total.sent);
    /* smooth: the first full second carries its own share, not a burst */
    assert_int_equal(run->count, 2);
    assert_in_range(run->seconds[0].sent, RUN_RATE * 9 / 10, RUN_RATE * 11 / 10);
    for (int b = 0; b < B_COUNT; b++)
        assert_true(run->responder.received[b] > 0);
    /* weight 3 of 10: data.test gets more than any weight-1 name would on average */
    assert_true(run->responder.received[B_DATA] > run->total.sent / 10);
}

static void test_loadgen_spreads_queries_over_every_client_with_edns(void **state)
{
    const struct run *run = &the_run;
    assert_int_equal(run->responder.port_count, RUN_CLIENTS);
    assert_int_equal(run->responder.with_edns_1232, run->responder.total);
}

static void test_loadgen_classifies_data_cname_and_stale_answers(void **state)
{
    const struct run *run = &the_run;
    const uint64_t *got = run->responder.received;
    assert_int_equal(run->total.with_data, got[B_DATA] + got[B_CNAME] + got[B_STALE]);
    assert_int_equal(run->total.stale, got[B_STALE]);
}

static void test_loadgen_classifies_nodata_nxdomain_servfail_and_other(void **state)
{
    const struct run *run = &the_run;
    const uint64_t *got = run->responder.received;
    assert_int_equal(run->total.nodata, got[B_NODATA]);
    assert_int_equal(run->total.nxdomain, got[B_NXDOMAIN]);
    assert_int_equal(run->total.servfail, got[B_SERVFAIL]);
    assert_int_equal(run->total.other_rcode, got[B_REFUSED]);
    assert_int_equal(run->total.answered, run->total.sent - got[B_DROP]);
}

static void test_loadgen_ignores_wrong_question_and_wrong_source(void **state)
{
    const struct run *run = &the_run;
    /* every data.test query got both decoys first; counts above would be off if one counted */
    assert_int_equal(run->responder.decoys, run->responder.received[B_DATA]);
    assert_int_equal(run->total.nxdomain, run->responder.received[B_NXDOMAIN]);
    assert_int_equal(run->total.servfail, run->responder.received[B_SERVFAIL]);
}

static void test_loadgen_counts_timeouts_before_done(void **state)
{
    const struct run *run = &the_run;
    assert_int_equal(run->done_calls, 1);
    assert_int_equal(run->total.timeouts, run->responder.received[B_DROP]);
    uint64_t finished = run->total.answered + run->total.timeouts;
    assert_int_equal(finished, run->total.sent);
}

static void test_loadgen_counts_never_empty_violations(void **state)
{
    const struct run *run = &the_run;
    const uint64_t *got = run->responder.received;
    /* NODATA, NXDOMAIN and timeouts of never-empty names; fail.test is not one, REFUSED is not
     * an empty answer */
    assert_int_equal(run->total.never_empty_violations,
                     got[B_NODATA] + got[B_NXDOMAIN] + got[B_DROP]);
}

static void test_loadgen_reports_latency_percentiles(void **state)
{
    const struct run *run = &the_run;
    for (size_t i = 0; i < run->count; i++) {
        const struct loadgen_second *s = &run->seconds[i];
        assert_true(s->answered > 0);
        assert_true(s->p50_us > 0);
        assert_true(s->p50_us <= s->p99_us);
        assert_true(s->p99_us <= s->max_us);
        assert_true(s->max_us < RUN_TIMEOUT_MS * 1000u);
    }
}

/* ---- tests with their own loop ---- */

struct early_stop {
    struct loadgen *lg;
    struct responder *responder;
    unsigned done_calls;
    size_t count;
    uint64_t sent;
    struct loadgen_second total;
};

static void early_stop_done(void *ctx)
{
    struct early_stop *e = ctx;
    e->done_calls++;
    const struct loadgen_second *seconds = loadgen_seconds(e->lg, &e->count);
    for (size_t i = 0; i < e->count; i++) {
        e->sent += seconds[i].sent;
        e->total.with_data += seconds[i].with_data;
        e->total.timeouts += seconds[i].timeouts;
    }
    loadgen_free(e->lg);
    responder_close(e->responder);
}

static void early_stop_timer(uv_timer_t *timer)
{
    struct early_stop *e = timer->data;
    loadgen_stop(e->lg, early_stop_done, e);
    uv_close((uv_handle_t *)timer, NULL);
}

static void test_loadgen_stop_before_sending_calls_done(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct responder r;
    responder_start(&loop, &r);
    struct loadgen_name names[B_COUNT];
    fill_names(names);
    struct loadgen_options o = run_options(&r, names);
    struct early_stop e = {.responder = &r};
    assert_int_equal(loadgen_start(&loop, &o, &e.lg), 0);
    loadgen_stop(e.lg, early_stop_done, &e);
    assert_int_equal(e.done_calls, 0); /* runs on the loop, not inside loadgen_stop */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(e.done_calls, 1);
    assert_int_equal(e.count, 1);
    assert_int_equal(e.sent, 0);
    assert_int_equal(r.total, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* 5000 qps on one socket with half the queries never answered and a 400 ms timeout: about 1000
 * in flight at once, so the in-flight table grows and removes under load. */
static void test_loadgen_keeps_track_of_a_thousand_in_flight(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct responder r;
    responder_start(&loop, &r);
    struct loadgen_name all[B_COUNT];
    fill_names(all);
    struct loadgen_name names[2] = {all[B_DATA], all[B_DROP]};
    names[0].weight = names[1].weight = 1;
    struct loadgen_options o = run_options(&r, names);
    o.name_count = 2;
    o.rate = 5000;
    o.clients = 1;
    o.timeout_ms = 400;
    struct early_stop e = {.responder = &r};
    assert_int_equal(loadgen_start(&loop, &o, &e.lg), 0);
    uv_timer_t stop;
    assert_int_equal(uv_timer_init(&loop, &stop), 0);
    stop.data = &e;
    assert_int_equal(uv_timer_start(&stop, early_stop_timer, 600, 0), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(e.done_calls, 1);
    assert_in_range(e.sent, 2700, 3300);
    assert_int_equal(r.total, e.sent);
    assert_int_equal(e.total.with_data, r.received[B_DATA]);
    assert_int_equal(e.total.timeouts, r.received[B_DROP]);
    assert_true(r.received[B_DROP] > 1000);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_loadgen_rejects_invalid_options(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct responder r;
    responder_start(&loop, &r);
    struct loadgen_name names[B_COUNT];
    fill_names(names);
    struct loadgen *lg = (struct loadgen *)&loop; /* must be reset to NULL */
    struct loadgen_options o = run_options(&r, names);
    o.rate = 0;
    assert_int_equal(loadgen_start(&loop, &o, &lg), BALLAST_EINVAL);
    assert_null(lg);
    o = run_options(&r, names);
    o.clients = 0;
    assert_int_equal(loadgen_start(&loop, &o, &lg), BALLAST_EINVAL);
    o = run_options(&r, names);
    o.name_count = 0;
    assert_int_equal(loadgen_start(&loop, &o, &lg), BALLAST_EINVAL);
    o = run_options(&r, names);
    names[2].weight = 0;
    assert_int_equal(loadgen_start(&loop, &o, &lg), BALLAST_EINVAL);
    names[2].weight = 1;
    names[3].wire_len = 0;
    assert_int_equal(loadgen_start(&loop, &o, &lg), BALLAST_EINVAL);
    fill_names(names);
    o = run_options(&r, names);
    o.server.ss.ss_family = AF_UNIX;
    assert_int_equal(loadgen_start(&loop, &o, &lg), BALLAST_EINVAL);
    responder_close(&r);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest run_tests[] = {
        cmocka_unit_test(test_loadgen_sends_at_the_configured_rate),
        cmocka_unit_test(test_loadgen_spreads_queries_over_every_client_with_edns),
        cmocka_unit_test(test_loadgen_classifies_data_cname_and_stale_answers),
        cmocka_unit_test(test_loadgen_classifies_nodata_nxdomain_servfail_and_other),
        cmocka_unit_test(test_loadgen_ignores_wrong_question_and_wrong_source),
        cmocka_unit_test(test_loadgen_counts_timeouts_before_done),
        cmocka_unit_test(test_loadgen_counts_never_empty_violations),
        cmocka_unit_test(test_loadgen_reports_latency_percentiles),
    };
    const struct CMUnitTest own_loop_tests[] = {
        cmocka_unit_test(test_loadgen_stop_before_sending_calls_done),
        cmocka_unit_test(test_loadgen_keeps_track_of_a_thousand_in_flight),
        cmocka_unit_test(test_loadgen_rejects_invalid_options),
    };
    int failed = cmocka_run_group_tests_name("loadgen run", run_tests, run_load, free_load);
    failed += cmocka_run_group_tests_name("loadgen", own_loop_tests, NULL, NULL);
    return failed;
}
