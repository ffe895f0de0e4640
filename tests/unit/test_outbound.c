/* Tests for resolver/outbound.c: a real libuv loop with fake upstream servers (UDP and TCP on
 * 127.0.0.1, port 0) driven by the same loop; each test ends with every handle closed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "errors.h"
#include "outbound.h"
#include "wire.h"

#define MAX_RECORDED 32
#define MARKER_RIGHT 1
#define MARKER_TCP 2
#define MARKER_WRONG 66

/* ---- DNS helpers ---- */

static size_t name_from_text(const char *text, uint8_t *out)
{
    size_t len = 0;
    assert_int_equal(wire_name_from_text(text, out, &len), 0);
    return len;
}

static size_t question_end(const uint8_t *msg, size_t len)
{
    size_t name_len = wire_name_length(msg + WIRE_HEADER_LEN, len - WIRE_HEADER_LEN);
    return name_len == 0 ? 0 : WIRE_HEADER_LEN + name_len + 4;
}

/* An authoritative answer to query: its header and question, one A record 192.0.2.marker. */
static size_t answer_for(const uint8_t *query, size_t query_len, uint8_t *out, uint8_t marker)
{
    size_t qend = question_end(query, query_len);
    memcpy(out, query, qend);
    wire_write_u16(out + 2, WIRE_FLAG_QR | WIRE_FLAG_AA);
    wire_write_u16(out + 6, 1);  /* ANCOUNT */
    wire_write_u16(out + 8, 0);  /* NSCOUNT */
    wire_write_u16(out + 10, 0); /* ARCOUNT */
    static const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2};
    memcpy(out + qend, rr, sizeof(rr));
    out[qend + sizeof(rr)] = marker;
    return qend + sizeof(rr) + 1;
}

/* The marker of an answer built by answer_for. */
static uint8_t answer_marker(const uint8_t *resp, size_t len)
{
    return len > 0 ? resp[len - 1] : 0;
}

/* ---- fake upstream server ---- */

enum fake_mode {
    FAKE_ANSWER,               /* one right answer (after delay_ms) */
    FAKE_SILENT,               /* never answers */
    FAKE_WRONG_ID_FIRST,       /* an answer with another ID, then the right one */
    FAKE_WRONG_QUESTION_FIRST, /* other name, type, class, QR=0; then the right one */
    FAKE_SPOOF_FIRST,          /* right ID and question from other ports/addresses first */
    FAKE_TRUNCATED,            /* TC=1 over UDP; TCP gets a wrong ID frame, then MARKER_TCP */
};

struct fake_conn {
    uv_tcp_t handle;
    struct fake *fake;
    struct fake_conn *next;
    uint8_t buf[4096];
    size_t len;
};

struct fake {
    uv_udp_t udp;
    uv_tcp_t tcp;
    bool tcp_listening;
    uv_timer_t delay;
    uint16_t port;
    enum fake_mode mode;
    uint32_t delay_ms;
    char only_first; /* when set, UDP queries whose name starts otherwise go unanswered */
    int udp_queries;
    int tcp_queries;
    uint8_t query[512]; /* the last query */
    size_t query_len;
    struct sockaddr_storage peer; /* where the last UDP query came from */
    struct pending {              /* queries waiting for delay_ms */
        uint8_t query[512];
        size_t len;
        struct sockaddr_storage peer;
    } pending[MAX_RECORDED];
    int pending_count;
    uint16_t ports[MAX_RECORDED];
    uint16_t ids[MAX_RECORDED];
    struct fake_conn *conns;
    uint8_t rbuf[4096];
};

struct fixture {
    uv_loop_t loop;
    uv_timer_t tick; /* wakes uv_run(UV_RUN_ONCE) so deadlines are checked */
    struct outbound *ob;
    struct fake fake;
    bool fake_open;
};

static void fake_udp_send_to(struct fake *f, const uint8_t *msg, size_t len,
                             const struct sockaddr_storage *peer)
{
    uv_buf_t buf = uv_buf_init((char *)msg, (unsigned)len);
    int rc = uv_udp_try_send(&f->udp, &buf, 1, (const struct sockaddr *)peer);
    assert_int_equal(rc, (int)len);
}

static void fake_udp_send(struct fake *f, const uint8_t *msg, size_t len)
{
    fake_udp_send_to(f, msg, len, &f->peer);
}

/* Send the right answer from sockets that are not the server: another port on 127.0.0.1 and
 * 127.0.0.2 with the server's port. */
static void fake_spoof(struct fake *f, const uint8_t *msg, size_t len)
{
    const char *sources[] = {"127.0.0.1", "127.0.0.2"};
    for (int i = 0; i < 2; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        assert_true(fd >= 0);
        struct sockaddr_in sin = {.sin_family = AF_INET};
        sin.sin_port = i == 0 ? 0 : htons(f->port);
        inet_pton(AF_INET, sources[i], &sin.sin_addr);
        assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        ssize_t sent = sendto(fd, msg, len, 0, (struct sockaddr *)&f->peer, sizeof(sin));
        assert_int_equal(sent, (ssize_t)len);
        close(fd);
    }
}

static void fake_answer_now(struct fake *f)
{
    uint8_t resp[1024];
    size_t len = answer_for(f->query, f->query_len, resp, MARKER_RIGHT);
    fake_udp_send(f, resp, len);
}

static void fake_on_delay(uv_timer_t *timer)
{
    struct fake *f = timer->data;
    for (int i = 0; i < f->pending_count; i++) {
        uint8_t resp[1024];
        size_t len = answer_for(f->pending[i].query, f->pending[i].len, resp, MARKER_RIGHT);
        fake_udp_send_to(f, resp, len, &f->pending[i].peer);
    }
    f->pending_count = 0;
}

static void fake_answer_later(struct fake *f)
{
    assert_true(f->pending_count < MAX_RECORDED);
    struct pending *p = &f->pending[f->pending_count++];
    memcpy(p->query, f->query, f->query_len);
    p->len = f->query_len;
    p->peer = f->peer;
    if (!uv_is_active((uv_handle_t *)&f->delay))
        uv_timer_start(&f->delay, fake_on_delay, f->delay_ms, 0);
}

static void fake_wrong_questions(struct fake *f)
{
    uint8_t resp[1024];
    size_t len = answer_for(f->query, f->query_len, resp, MARKER_WRONG);
    size_t qend = question_end(resp, len);
    uint8_t wrong[1024];
    memcpy(wrong, resp, len);
    wrong[WIRE_HEADER_LEN + 1] ^= 0x01; /* first letter of the name */
    fake_udp_send(f, wrong, len);
    memcpy(wrong, resp, len);
    wire_write_u16(wrong + qend - 4, WIRE_TYPE_AAAA);
    fake_udp_send(f, wrong, len);
    memcpy(wrong, resp, len);
    wire_write_u16(wrong + qend - 2, 3); /* CH */
    fake_udp_send(f, wrong, len);
    memcpy(wrong, resp, len);
    wrong[2] &= 0x7f; /* QR=0: a query, not an answer */
    fake_udp_send(f, wrong, len);
    fake_udp_send(f, resp, 5); /* shorter than a header */
}

static void fake_on_udp_recv(uv_udp_t *handle, ssize_t nread, const uv_buf_t *buf,
                             const struct sockaddr *peer, unsigned flags)
{
    struct fake *f = handle->data;
    if (nread <= 0 || peer == NULL)
        return;
    if (f->udp_queries < MAX_RECORDED) {
        f->ports[f->udp_queries] = addr_port(peer);
        f->ids[f->udp_queries] = wire_read_u16((const uint8_t *)buf->base);
    }
    f->udp_queries++;
    f->query_len = (size_t)nread < sizeof(f->query) ? (size_t)nread : sizeof(f->query);
    memcpy(f->query, buf->base, f->query_len);
    memcpy(&f->peer, peer,
           peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    if (f->only_first != 0 && f->query[WIRE_HEADER_LEN + 1] != (uint8_t)f->only_first)
        return;

    uint8_t resp[1024];
    size_t len = answer_for(f->query, f->query_len, resp, MARKER_WRONG);
    switch (f->mode) {
    case FAKE_ANSWER:
        if (f->delay_ms > 0)
            fake_answer_later(f);
        else
            fake_answer_now(f);
        break;
    case FAKE_SILENT:
        break;
    case FAKE_WRONG_ID_FIRST:
        resp[1] ^= 0x5a;
        fake_udp_send(f, resp, len);
        fake_answer_now(f);
        break;
    case FAKE_WRONG_QUESTION_FIRST:
        fake_wrong_questions(f);
        fake_answer_now(f);
        break;
    case FAKE_SPOOF_FIRST:
        fake_spoof(f, resp, len);
        fake_answer_now(f);
        break;
    case FAKE_TRUNCATED:
        len = question_end(f->query, f->query_len);
        memcpy(resp, f->query, len);
        wire_write_u16(resp + 2, WIRE_FLAG_QR | WIRE_FLAG_AA | WIRE_FLAG_TC);
        memset(resp + 6, 0, 6);
        fake_udp_send(f, resp, len);
        break;
    }
}

static void fake_on_udp_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct fake *f = handle->data;
    *buf = uv_buf_init((char *)f->rbuf, sizeof(f->rbuf));
}

static void fake_conn_on_closed(uv_handle_t *handle)
{
    struct fake_conn *conn = handle->data;
    struct fake_conn **link = &conn->fake->conns;
    while (*link != conn)
        link = &(*link)->next;
    *link = conn->next;
    free(conn);
}

static void fake_conn_close(struct fake_conn *conn)
{
    if (!uv_is_closing((uv_handle_t *)&conn->handle))
        uv_close((uv_handle_t *)&conn->handle, fake_conn_on_closed);
}

/* The client may already be gone (outbound_free): then the connection is just closed. */
static void fake_tcp_send(struct fake_conn *conn, const uint8_t *msg, size_t len)
{
    uint8_t frame[1026];
    wire_write_u16(frame, (uint16_t)len);
    memcpy(frame + 2, msg, len);
    uv_buf_t buf = uv_buf_init((char *)frame, (unsigned)(len + 2));
    int rc = uv_try_write((uv_stream_t *)&conn->handle, &buf, 1);
    if (rc < 0)
        fake_conn_close(conn);
    else
        assert_int_equal(rc, (int)(len + 2));
}

static void fake_conn_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct fake_conn *conn = handle->data;
    *buf = uv_buf_init((char *)conn->buf + conn->len, (unsigned)(sizeof(conn->buf) - conn->len));
}

/* Answer one framed query: a frame with a wrong ID first, then MARKER_TCP. */
static void fake_conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct fake_conn *conn = stream->data;
    struct fake *f = conn->fake;
    if (nread < 0) {
        fake_conn_close(conn);
        return;
    }
    conn->len += (size_t)nread;
    if (conn->len < 2 || conn->len < 2 + (size_t)wire_read_u16(conn->buf))
        return;
    f->tcp_queries++;
    const uint8_t *query = conn->buf + 2;
    size_t query_len = wire_read_u16(conn->buf);
    f->query_len = query_len < sizeof(f->query) ? query_len : sizeof(f->query);
    memcpy(f->query, query, f->query_len);
    uint8_t resp[1024];
    size_t len = answer_for(query, query_len, resp, MARKER_WRONG);
    resp[0] ^= 0xa5;
    fake_tcp_send(conn, resp, len);
    len = answer_for(query, query_len, resp, MARKER_TCP);
    fake_tcp_send(conn, resp, len);
    conn->len = 0;
}

static void fake_on_connection(uv_stream_t *server, int status)
{
    struct fake *f = server->data;
    assert_int_equal(status, 0);
    struct fake_conn *conn = calloc(1, sizeof(*conn));
    assert_non_null(conn);
    conn->fake = f;
    conn->next = f->conns;
    f->conns = conn;
    uv_tcp_init(server->loop, &conn->handle);
    conn->handle.data = conn;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&conn->handle), 0);
    assert_int_equal(
        uv_read_start((uv_stream_t *)&conn->handle, fake_conn_on_alloc, fake_conn_on_read), 0);
}

/* UDP on the loopback address of family, port 0, and TCP on the same port (retried if that
 * TCP port is taken). */
static void fake_open_family(struct fixture *fx, enum fake_mode mode, const char *loopback)
{
    struct fake *f = &fx->fake;
    memset(f, 0, sizeof(*f));
    f->mode = mode;
    for (int attempt = 0; attempt < 16; attempt++) {
        struct addr bound;
        assert_int_equal(addr_parse(loopback, 0, &bound), 0);
        assert_int_equal(uv_udp_init(&fx->loop, &f->udp), 0);
        f->udp.data = f;
        assert_int_equal(uv_udp_bind(&f->udp, (struct sockaddr *)&bound.ss, 0), 0);
        int len = sizeof(bound.ss);
        assert_int_equal(uv_udp_getsockname(&f->udp, (struct sockaddr *)&bound.ss, &len), 0);
        assert_int_equal(uv_tcp_init(&fx->loop, &f->tcp), 0);
        f->tcp.data = f;
        if (uv_tcp_bind(&f->tcp, (struct sockaddr *)&bound.ss, 0) == 0 &&
            uv_listen((uv_stream_t *)&f->tcp, 16, fake_on_connection) == 0) {
            f->port = addr_port((struct sockaddr *)&bound.ss);
            break;
        }
        uv_close((uv_handle_t *)&f->udp, NULL);
        uv_close((uv_handle_t *)&f->tcp, NULL);
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    }
    assert_int_not_equal(f->port, 0);
    assert_int_equal(uv_udp_recv_start(&f->udp, fake_on_udp_alloc, fake_on_udp_recv), 0);
    uv_timer_init(&fx->loop, &f->delay);
    f->delay.data = f;
    fx->fake_open = true;
}

static void fake_open(struct fixture *fx, enum fake_mode mode)
{
    fake_open_family(fx, mode, "127.0.0.1");
}

static void fake_close(struct fixture *fx)
{
    struct fake *f = &fx->fake;
    if (!fx->fake_open)
        return;
    fx->fake_open = false;
    uv_close((uv_handle_t *)&f->udp, NULL);
    uv_close((uv_handle_t *)&f->tcp, NULL);
    uv_close((uv_handle_t *)&f->delay, NULL);
    for (struct fake_conn *conn = f->conns; conn != NULL; conn = conn->next)
        fake_conn_close(conn);
}

/* ---- fixture ---- */

static void on_tick(uv_timer_t *timer)
{
}

static int fixture_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    uv_timer_init(&fx->loop, &fx->tick);
    uv_timer_start(&fx->tick, on_tick, 5, 5);
    struct outbound_options o = {
        .edns_udp_size = 1232, .tcp_timeout_ms = 2000, .max_outstanding = 64};
    assert_int_equal(outbound_create(&fx->loop, &o, &fx->ob), 0);
    *state = fx;
    return 0;
}

/* Free everything and prove that every handle was closed. */
static int fixture_teardown(void **state)
{
    struct fixture *fx = *state;
    outbound_free(fx->ob);
    fake_close(fx);
    uv_close((uv_handle_t *)&fx->tick, NULL);
    assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
    return 0;
}

/* Run the loop until *count reaches target or max_ms pass. */
static void run_until(struct fixture *fx, const int *count, int target, uint32_t max_ms)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)max_ms * 1000000u;
    while (*count < target && uv_hrtime() < deadline)
        uv_run(&fx->loop, UV_RUN_ONCE);
}

static void run_for(struct fixture *fx, uint32_t ms)
{
    int never = 0;
    run_until(fx, &never, 1, ms);
}

static uint64_t ms_since(uint64_t start_ns)
{
    return (uv_hrtime() - start_ns) / 1000000u;
}

/* ---- results ---- */

struct result {
    int calls;
    int status;
    uint8_t resp[2048];
    size_t len;
    uint32_t rtt_ms;
    uint64_t elapsed_ms;
    uint64_t start_ns;
};

static void on_done(void *ctx, int status, const uint8_t *resp, size_t len, uint32_t rtt_ms)
{
    struct result *r = ctx;
    r->calls++;
    r->status = status;
    r->len = len < sizeof(r->resp) ? len : sizeof(r->resp);
    if (resp != NULL)
        memcpy(r->resp, resp, r->len);
    r->rtt_ms = rtt_ms;
    r->elapsed_ms = ms_since(r->start_ns);
}

struct query_buf {
    struct addr server;
    uint8_t qname[WIRE_NAME_MAX];
    struct outbound_query q;
};

static void query_init_at(struct query_buf *qb, const char *name, const char *server, uint16_t port)
{
    memset(qb, 0, sizeof(*qb));
    assert_int_equal(addr_parse(server, port, &qb->server), 0);
    qb->q.server = &qb->server;
    qb->q.qname = qb->qname;
    qb->q.qname_len = name_from_text(name, qb->qname);
    qb->q.qtype = WIRE_TYPE_A;
    qb->q.qclass = WIRE_CLASS_IN;
    qb->q.edns = true;
    qb->q.timeout_ms = 2000;
}

static void query_init(struct query_buf *qb, const char *name, uint16_t port)
{
    query_init_at(qb, name, "127.0.0.1", port);
}

static int send_query(struct fixture *fx, const struct query_buf *qb, struct result *r,
                      struct outbound_request **handle)
{
    r->start_ns = uv_hrtime();
    return outbound_send(fx->ob, &qb->q, on_done, r, handle);
}

static struct outbound_stats stats_of(const struct fixture *fx)
{
    struct outbound_stats s;
    outbound_get_stats(fx->ob, &s);
    return s;
}

/* A port on 127.0.0.1 with nothing behind it: bound to learn a free number, then closed. */
static uint16_t closed_port(int type)
{
    int fd = socket(AF_INET, type, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

/* ---- tests ---- */

static void test_outbound_answer_delivered_with_rtt(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_ANSWER);
    fx->fake.delay_ms = 60;
    struct query_buf qb;
    query_init(&qb, "www.example.", fx->fake.port);
    struct result r = {0};
    assert_int_equal(send_query(fx, &qb, &r, NULL), 0);
    assert_int_equal(r.calls, 0); /* never from inside outbound_send */
    run_until(fx, &r.calls, 1, 3000);

    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(answer_marker(r.resp, r.len), MARKER_RIGHT);
    assert_int_equal(wire_read_u16(r.resp), wire_read_u16(fx->fake.query));
    assert_true(r.rtt_ms >= 55);
    assert_true(r.rtt_ms < 1000);
    struct outbound_stats s = stats_of(fx);
    assert_int_equal(s.sent_udp, 1);
    assert_int_equal(s.answers, 1);
    assert_int_equal(s.mismatched, 0);
}

static void test_outbound_ipv6_server_answered_over_udp_and_tcp(void **state)
{
    struct fixture *fx = *state;
    fake_open_family(fx, FAKE_TRUNCATED, "::1");
    struct query_buf qb;
    query_init_at(&qb, "www.example.", "::1", fx->fake.port);
    struct result r = {0};
    assert_int_equal(send_query(fx, &qb, &r, NULL), 0);
    run_until(fx, &r.calls, 1, 3000);

    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(answer_marker(r.resp, r.len), MARKER_TCP);
    assert_int_equal(fx->fake.udp_queries, 1);
    assert_int_equal(fx->fake.tcp_queries, 1);
    assert_true(fx->fake.ports[0] >= 1024);
}

static void test_outbound_query_has_rd_clear_one_question_and_edns_without_do(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_ANSWER);
    struct query_buf qb;
    query_init(&qb, "WwW.ExAmple.", fx->fake.port);
    qb.q.qtype = WIRE_TYPE_MX;
    struct result r = {0};
    assert_int_equal(send_query(fx, &qb, &r, NULL), 0);
    run_until(fx, &r.calls, 1, 3000);
    assert_int_equal(r.calls, 1);

    const uint8_t *q = fx->fake.query;
    size_t qend = question_end(q, fx->fake.query_len);
    assert_int_equal(wire_read_u16(q + 2), 0); /* QUERY, RD=0 */
    assert_int_equal(wire_read_u16(q + 4), 1);
    assert_int_equal(wire_read_u16(q + 6), 0);
    assert_int_equal(wire_read_u16(q + 8), 0);
    assert_int_equal(wire_read_u16(q + 10), 1);
    assert_memory_equal(q + WIRE_HEADER_LEN, qb.qname, qb.q.qname_len); /* case as given */
    assert_int_equal(wire_read_u16(q + qend - 4), WIRE_TYPE_MX);
    assert_int_equal(wire_read_u16(q + qend - 2), WIRE_CLASS_IN);
    /* OPT: root owner, TYPE 41, CLASS = payload size, TTL 0 (version 0, DO clear), and only a
     * COOKIE option with our client cookie: this server never gave us a server cookie. */
    assert_int_equal(fx->fake.query_len, qend + 11 + 12);
    assert_int_equal(q[qend], 0);
    assert_int_equal(wire_read_u16(q + qend + 1), WIRE_TYPE_OPT);
    assert_int_equal(wire_read_u16(q + qend + 3), 1232);
    assert_int_equal(wire_read_u32(q + qend + 5), 0);
    assert_int_equal(wire_read_u16(q + qend + 9), 12);
    assert_int_equal(wire_read_u16(q + qend + 11), 10); /* RFC 7873 §4: COOKIE, 8 bytes */
    assert_int_equal(wire_read_u16(q + qend + 13), 8);

    /* Without EDNS: no additional record at all. */
    qb.q.edns = false;
    struct result r2 = {0};
    assert_int_equal(send_query(fx, &qb, &r2, NULL), 0);
    run_until(fx, &r2.calls, 1, 3000);
    assert_int_equal(r2.status, 0);
    assert_int_equal(wire_read_u16(fx->fake.query + 10), 0);
    assert_int_equal(fx->fake.query_len, qend);
}

static void test_outbound_wrong_id_ignored_then_right_id_delivered(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_WRONG_ID_FIRST);
    struct query_buf qb;
    query_init(&qb, "www.example.", fx->fake.port);
    struct result r = {0};
    assert_int_equal(send_query(fx, &qb, &r, NULL), 0);
    run_until(fx, &r.calls, 1, 3000);
    run_for(fx, 20); /* nothing else arrives */

    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(answer_marker(r.resp, r.len), MARKER_RIGHT);
    struct outbound_stats s = stats_of(fx);
    assert_int_equal(s.mismatched, 1);
    assert_int_equal(s.answers, 1);
}

static void test_outbound_wrong_question_or_qr_clear_ignored(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_WRONG_QUESTION_FIRST);
    struct query_buf qb;
    query_init(&qb, "www.example.", fx->fake.port);
    struct result r = {0};
    assert_int_equal(send_query(fx, &qb, &r, NULL), 0);
    run_until(fx, &r.calls, 1, 3000);

    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(answer_marker(r.resp, r.len), MARKER_RIGHT);
    assert_int_equal(stats_of(fx).mismatched, 5); /* name, type, class, QR=0, runt */
}

static void test_outbound_answer_case_differs_still_matches(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_ANSWER);
    struct query_buf qb;
    query_init(&qb, "www.example.", fx->fake.port);
    struct result r = {0};
    /* The server sends back the question in upper case (a 0x20-unaware middlebox). */
    fx->fake.mode = FAKE_SILENT;
    assert_int_equal(send_query(fx, &qb, &r, NULL), 0);
    run_until(fx, &fx->fake.udp_queries, 1, 3000);
    uint8_t resp[1024];
    size_t len = answer_for(fx->fake.query, fx->fake.query_len, resp, MARKER_RIGHT);
    for (size_t i = WIRE_HEADER_LEN; i < question_end(resp, len) - 4; i++)
        if (resp[i] >= 'a' && resp[i] <= 'z')
            resp[i] = (uint8_t)(resp[i] - 32);
    fake_udp_send(&fx->fake, resp, len);
    run_until(fx, &r.calls, 1, 3000);
    assert_int_equal(r.status, 0);
    assert_int_equal(answer_marker(r.resp, r.len), MARKER_RIGHT);
}

static void test_outbound_reply_from_other_port_or_address_not_delivered(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_SPOOF_FIRST);
    struct query_buf qb;
    query_init(&qb, "www.example.", fx->fake.port);
    struct result r = {0};
    assert_int_equal(send_query(fx, &qb, &r, NULL), 0);
    run_until(fx, &r.calls, 1, 3000);

    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(answer_marker(r.resp, r.len), MARKER_RIGHT);
    /* The connected socket never saw the spoofed datagrams. */
    assert_int_equal(stats_of(fx).mismatched, 0);
}

static void test_outbound_silent_server_times_out(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_SILENT);
    struct query_buf qb;
    query_init(&qb, "www.example.", fx->fake.port);
    qb.q.timeout_ms = 200;
    struct result r = {0};
    assert_int_equal(send_query(fx, &qb, &r, NULL), 0);
    run_until(fx, &r.calls, 1, 3000);

    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, BALLAST_ETIMEOUT);
    assert_null(r.len == 0 ? NULL : r.resp);
    assert_true(r.elapsed_ms >= 190);
    assert_true(r.elapsed_ms < 1000);
    assert_int_equal(fx->fake.udp_queries, 1);
    assert_int_equal(stats_of(fx).timeouts, 1);
}

/* The kernel rate-limits ICMP unreachable system-wide (net.ipv4.icmp_msgs_per_sec), and other
 * tests on this host may spend that budget: an attempt whose ICMP was suppressed times out, so
 * try a few times; every attempt must end in EIO (quickly) or in the timeout, nothing else. */
static void test_outbound_closed_udp_port_fails_fast_with_eio(void **state)
{
    struct fixture *fx = *state;
    int eio = 0, timeouts = 0;
    for (int attempt = 0; attempt < 5 && eio == 0; attempt++) {
        struct query_buf qb;
        query_init(&qb, "www.example.", closed_port(SOCK_DGRAM));
        qb.q.timeout_ms = 1500;
        struct result r = {0};
        assert_int_equal(send_query(fx, &qb, &r, NULL), 0);
        run_until(fx, &r.calls, 1, 3000);
        assert_int_equal(r.calls, 1);
        if (r.status == BALLAST_EIO) {
            assert_true(r.elapsed_ms < 1000); /* ICMP port unreachable, not the timeout */
            eio++;
        } else {
            assert_int_equal(r.status, BALLAST_ETIMEOUT);
            timeouts++;
        }
    }
    assert_int_equal(eio, 1);
    struct outbound_stats s = stats_of(fx);
    assert_int_equal(s.errors, 1);
    assert_int_equal(s.timeouts, (uint64_t)timeouts);
}

static void test_outbound_truncated_answer_retried_over_tcp(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_TRUNCATED);
    struct query_buf qb;
    query_init(&qb, "big.example.", fx->fake.port);
    struct result r = {0};
    assert_int_equal(send_query(fx, &qb, &r, NULL), 0);
    run_until(fx, &r.calls, 1, 3000);

    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(answer_marker(r.resp, r.len), MARKER_TCP);
    assert_int_equal(wire_read_u16(r.resp + 2) & WIRE_FLAG_TC, 0);
    assert_int_equal(fx->fake.udp_queries, 1);
    assert_int_equal(fx->fake.tcp_queries, 1);
    /* the TCP query is the same question */
    assert_memory_equal(fx->fake.query + WIRE_HEADER_LEN, qb.qname, qb.q.qname_len);
    struct outbound_stats s = stats_of(fx);
    assert_int_equal(s.tc_fallbacks, 1);
    assert_int_equal(s.sent_udp, 1);
    assert_int_equal(s.sent_tcp, 1);
    assert_int_equal(s.mismatched, 1); /* the wrong-ID TCP frame */
    assert_int_equal(s.answers, 1);
}

static void test_outbound_tcp_query_skips_udp(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_ANSWER);
    struct query_buf qb;
    query_init(&qb, "www.example.", fx->fake.port);
    qb.q.tcp = true;
    struct result r = {0};
    assert_int_equal(send_query(fx, &qb, &r, NULL), 0);
    run_until(fx, &r.calls, 1, 3000);

    assert_int_equal(r.status, 0);
    assert_int_equal(answer_marker(r.resp, r.len), MARKER_TCP);
    assert_int_equal(fx->fake.udp_queries, 0);
    assert_int_equal(fx->fake.tcp_queries, 1);
    struct outbound_stats s = stats_of(fx);
    assert_int_equal(s.sent_udp, 0);
    assert_int_equal(s.sent_tcp, 1);
    assert_int_equal(s.tc_fallbacks, 0);
}

static void test_outbound_tcp_connection_refused_is_eio(void **state)
{
    struct fixture *fx = *state;
    struct query_buf qb;
    query_init(&qb, "www.example.", closed_port(SOCK_STREAM));
    qb.q.tcp = true;
    struct result r = {0};
    assert_int_equal(send_query(fx, &qb, &r, NULL), 0);
    run_until(fx, &r.calls, 1, 3000);

    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, BALLAST_EIO);
    assert_true(r.elapsed_ms < 1000);
    assert_int_equal(stats_of(fx).errors, 1);
}

static void test_outbound_identical_queries_coalesced_into_one_packet(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_ANSWER);
    fx->fake.delay_ms = 20;
    struct query_buf qb1, qb2, qb3;
    query_init(&qb1, "www.example.", fx->fake.port);
    query_init(&qb2, "WWW.Example.", fx->fake.port); /* same name without regard to case */
    query_init(&qb3, "www.example.", fx->fake.port);
    qb3.q.qtype = WIRE_TYPE_AAAA; /* another question: its own exchange */
    struct result r1 = {0}, r2 = {0}, r3 = {0};
    assert_int_equal(send_query(fx, &qb1, &r1, NULL), 0);
    assert_int_equal(send_query(fx, &qb2, &r2, NULL), 0);
    assert_int_equal(send_query(fx, &qb3, &r3, NULL), 0);
    run_until(fx, &r1.calls, 1, 3000);
    run_until(fx, &r2.calls, 1, 3000);
    run_until(fx, &r3.calls, 1, 3000);

    assert_int_equal(r1.calls, 1);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r1.status, 0);
    assert_int_equal(r2.status, 0);
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.resp, r2.resp, r1.len);
    assert_int_equal(fx->fake.udp_queries, 2); /* A once, AAAA once */
    struct outbound_stats s = stats_of(fx);
    assert_int_equal(s.coalesced, 1);
    assert_int_equal(s.sent_udp, 2);
}

static void test_outbound_cancel_suppresses_callback(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_ANSWER);
    fx->fake.delay_ms = 20;
    struct query_buf qb;
    query_init(&qb, "www.example.", fx->fake.port);
    struct result r = {0};
    struct outbound_request *req = NULL;
    assert_int_equal(send_query(fx, &qb, &r, &req), 0);
    assert_non_null(req);
    outbound_cancel(req);
    run_for(fx, 100);
    assert_int_equal(r.calls, 0);
    assert_int_equal(stats_of(fx).answers, 0);
}

static void test_outbound_cancel_of_one_waiter_keeps_the_other(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_ANSWER);
    fx->fake.delay_ms = 20;
    struct query_buf qb;
    query_init(&qb, "www.example.", fx->fake.port);
    struct result r1 = {0}, r2 = {0};
    struct outbound_request *req1 = NULL;
    assert_int_equal(send_query(fx, &qb, &r1, &req1), 0);
    assert_int_equal(send_query(fx, &qb, &r2, NULL), 0);
    outbound_cancel(req1);
    run_until(fx, &r2.calls, 1, 3000);
    run_for(fx, 20);

    assert_int_equal(r1.calls, 0);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r2.status, 0);
    assert_int_equal(answer_marker(r2.resp, r2.len), MARKER_RIGHT);
    assert_int_equal(fx->fake.udp_queries, 1);
}

static int ephemeral_range(unsigned *low, unsigned *high)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f == NULL)
        return -1;
    int n = fscanf(f, "%u %u", low, high);
    fclose(f);
    return n == 2 ? 0 : -1;
}

static int count_distinct(const uint16_t *values, int n)
{
    int distinct = 0;
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++)
            seen = seen || values[j] == values[i];
        distinct += seen ? 0 : 1;
    }
    return distinct;
}

static void test_outbound_source_ports_and_ids_are_random(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_ANSWER);
    enum { N = 16 };
    struct query_buf qb[N];
    struct result r[N];
    memset(r, 0, sizeof(r));
    int done_total = 0;
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof(name), "n%d.example.", i);
        query_init(&qb[i], name, fx->fake.port);
        assert_int_equal(send_query(fx, &qb[i], &r[i], NULL), 0);
    }
    uint64_t deadline = uv_hrtime() + 3000000000u;
    while (done_total < N && uv_hrtime() < deadline) {
        uv_run(&fx->loop, UV_RUN_ONCE);
        done_total = 0;
        for (int i = 0; i < N; i++)
            done_total += r[i].calls;
    }
    assert_int_equal(done_total, N);
    assert_int_equal(fx->fake.udp_queries, N);

    for (int i = 0; i < N; i++)
        assert_true(fx->fake.ports[i] >= 1024);
    assert_true(count_distinct(fx->fake.ports, N) >= N - 1);
    assert_true(count_distinct(fx->fake.ids, N) >= N - 1);
    /* Ports come from all of 1024..65535, not the kernel's ephemeral range: 16 uniform draws
     * all inside it would happen about twice in a million runs. */
    unsigned low, high;
    if (ephemeral_range(&low, &high) == 0) {
        int outside = 0;
        for (int i = 0; i < N; i++)
            outside += fx->fake.ports[i] < low || fx->fake.ports[i] > high;
        assert_true(outside > 0);
    }
}

static void test_outbound_free_with_requests_in_flight_cancels_them(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_SILENT);
    struct query_buf a, b, tcp;
    query_init(&a, "a.example.", fx->fake.port);
    query_init(&b, "b.example.", fx->fake.port);
    query_init(&tcp, "c.example.", fx->fake.port);
    tcp.q.tcp = true;
    struct result ra1 = {0}, ra2 = {0}, rb = {0}, rt = {0};
    assert_int_equal(send_query(fx, &a, &ra1, NULL), 0);
    assert_int_equal(send_query(fx, &a, &ra2, NULL), 0); /* coalesced */
    assert_int_equal(send_query(fx, &b, &rb, NULL), 0);
    assert_int_equal(send_query(fx, &tcp, &rt, NULL), 0); /* connect pending */
    run_until(fx, &fx->fake.udp_queries, 2, 3000);

    outbound_free(fx->ob);
    struct result *all[] = {&ra1, &ra2, &rb, &rt};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(all[i]->calls, 1);
        assert_int_equal(all[i]->status, BALLAST_ECANCELED);
    }
    /* A send after free is refused without a callback. */
    struct result late = {0};
    assert_int_equal(send_query(fx, &a, &late, NULL), BALLAST_ECANCELED);
    fx->ob = NULL; /* freed once its handles close; teardown proves the loop is empty */
    run_for(fx, 20);
    assert_int_equal(late.calls, 0);
}

static void test_outbound_max_outstanding_limits_exchanges(void **state)
{
    struct fixture *fx = *state;
    outbound_free(fx->ob);
    struct outbound_options o = {.max_outstanding = 2};
    assert_int_equal(outbound_create(&fx->loop, &o, &fx->ob), 0);
    fake_open(fx, FAKE_ANSWER);
    fx->fake.delay_ms = 20;
    struct query_buf a, b, c;
    query_init(&a, "a.example.", fx->fake.port);
    query_init(&b, "b.example.", fx->fake.port);
    query_init(&c, "c.example.", fx->fake.port);
    struct result ra = {0}, rb = {0}, rc = {0}, ra2 = {0}, rc2 = {0};
    assert_int_equal(send_query(fx, &a, &ra, NULL), 0);
    assert_int_equal(send_query(fx, &b, &rb, NULL), 0);
    assert_int_equal(send_query(fx, &c, &rc, NULL), BALLAST_ELIMIT);
    assert_int_equal(send_query(fx, &a, &ra2, NULL), 0); /* joins, needs no new exchange */
    run_until(fx, &ra.calls, 1, 3000);
    run_until(fx, &rb.calls, 1, 3000);
    assert_int_equal(send_query(fx, &c, &rc2, NULL), 0); /* room again */
    run_until(fx, &rc2.calls, 1, 3000);

    assert_int_equal(rc.calls, 0);
    assert_int_equal(ra2.calls, 1);
    assert_int_equal(rc2.status, 0);
    assert_int_equal(fx->fake.udp_queries, 3);
}

static void test_outbound_invalid_queries_rejected(void **state)
{
    struct fixture *fx = *state;
    struct query_buf qb;
    struct result r = {0};
    query_init(&qb, "www.example.", 0); /* port 0 */
    assert_int_equal(send_query(fx, &qb, &r, NULL), BALLAST_EINVAL);
    query_init(&qb, "www.example.", 53);
    qb.q.timeout_ms = 0;
    assert_int_equal(send_query(fx, &qb, &r, NULL), BALLAST_EINVAL);
    query_init(&qb, "www.example.", 53);
    qb.q.qname_len -= 1; /* no root label */
    assert_int_equal(send_query(fx, &qb, &r, NULL), BALLAST_EINVAL);
    query_init(&qb, "www.example.", 53);
    qb.qname[0] = 0xc0; /* a compression pointer is not a name here */
    assert_int_equal(send_query(fx, &qb, &r, NULL), BALLAST_EINVAL);
    assert_int_equal(r.calls, 0);
    assert_int_equal(stats_of(fx).sent_udp, 0);
}

/* The callback of one waiter frees the outbound: the other waiter still gets the answer and
 * nothing leaks. */
struct free_in_callback {
    struct outbound **ob;
    int calls;
    int statuses[2];
};

static void on_done_free(void *ctx, int status, const uint8_t *resp, size_t len, uint32_t rtt)
{
    struct free_in_callback *f = ctx;
    f->statuses[f->calls++] = status;
    outbound_free(*f->ob);
}

static void test_outbound_free_from_callback_is_safe(void **state)
{
    struct fixture *fx = *state;
    fake_open(fx, FAKE_ANSWER);
    struct query_buf qb, other;
    query_init(&qb, "www.example.", fx->fake.port);
    query_init(&other, "other.example.", fx->fake.port);
    fx->fake.only_first = 'w'; /* "other" stays unanswered */
    struct free_in_callback f = {.ob = &fx->ob};
    struct result ro = {0};
    assert_int_equal(outbound_send(fx->ob, &other.q, on_done, &ro, NULL), 0);
    assert_int_equal(outbound_send(fx->ob, &qb.q, on_done_free, &f, NULL), 0);
    assert_int_equal(outbound_send(fx->ob, &qb.q, on_done_free, &f, NULL), 0);
    run_until(fx, &f.calls, 2, 3000);

    assert_int_equal(f.calls, 2);
    assert_int_equal(f.statuses[0], 0);
    assert_int_equal(f.statuses[1], 0);
    assert_int_equal(ro.calls, 1);
    assert_int_equal(ro.status, BALLAST_ECANCELED);
    fx->ob = NULL;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* libuv writes with write(); a reset peer must not kill us */
#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_outbound_answer_delivered_with_rtt),
        T(test_outbound_query_has_rd_clear_one_question_and_edns_without_do),
        T(test_outbound_ipv6_server_answered_over_udp_and_tcp),
        T(test_outbound_wrong_id_ignored_then_right_id_delivered),
        T(test_outbound_wrong_question_or_qr_clear_ignored),
        T(test_outbound_answer_case_differs_still_matches),
        T(test_outbound_reply_from_other_port_or_address_not_delivered),
        T(test_outbound_silent_server_times_out),
        T(test_outbound_closed_udp_port_fails_fast_with_eio),
        T(test_outbound_truncated_answer_retried_over_tcp),
        T(test_outbound_tcp_query_skips_udp),
        T(test_outbound_tcp_connection_refused_is_eio),
        T(test_outbound_identical_queries_coalesced_into_one_packet),
        T(test_outbound_cancel_suppresses_callback),
        T(test_outbound_cancel_of_one_waiter_keeps_the_other),
        T(test_outbound_source_ports_and_ids_are_random),
        T(test_outbound_free_with_requests_in_flight_cancels_them),
        T(test_outbound_max_outstanding_limits_exchanges),
        T(test_outbound_invalid_queries_rejected),
        T(test_outbound_free_from_callback_is_safe),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
