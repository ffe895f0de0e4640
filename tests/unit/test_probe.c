/* Tests for authd/probe.c: a real libuv loop with real servers on 127.0.0.1 (port 0) driven by
 * the same loop (TCP listener, tiny HTTP server, UDP DNS responder), a Python TLS server for
 * HTTPS when openssl and python3 are there, and files for fetches. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "addr.h"
#include "errors.h"
#include "probe.h"
#include "wire.h"

#define LOG_MAX 64
#define TEXT_MAX 256
#define SLACK_MS 60 /* scheduling slack for timing assertions (sanitizers are slow) */

/* ---- results ---- */

struct fixture;

struct result_log {
    struct fixture *f;
    int count;
    bool ok[LOG_MAX];
    char error[LOG_MAX][TEXT_MAX];
    uint32_t latency[LOG_MAX];
    uint64_t at_ms[LOG_MAX];   /* since start_ns */
    uint64_t sent_at[LOG_MAX]; /* prober probes_sent when the result came */
    uint64_t start_ns;
    struct probe *probe; /* set by the test for remove_self */
    bool remove_self;    /* the callback removes its own probe */
    bool free_prober;    /* the callback frees the prober */
};

struct fetch_log {
    struct fixture *f;
    int count;
    int status;
    uint8_t *data;
    size_t len;
    char reason[TEXT_MAX];
};

/* ---- servers ---- */

struct http_conn {
    uv_tcp_t handle;
    struct http_server *server;
    struct http_conn *prev, *next;
    char buf[4096];
    size_t len;
    bool responded;
    bool closing;
    uv_write_t write;
    char *response;
};

struct http_server {
    uv_tcp_t listener;
    bool open;
    uint16_t port;
    bool silent; /* reads the request, never answers */
    int status;
    char *body;
    size_t body_len;
    bool no_content_length; /* the end of the body is the end of the connection */
    int requests;
    char last_request[2048];
    struct http_conn *conns;
};

struct dns_server {
    uv_udp_t udp;
    bool open;
    uint16_t port;
    bool silent;
    bool wrong_id_first; /* an answer with another ID before the right one */
    uint8_t rcode;
    int queries;
    uint16_t ids[LOG_MAX];
    uint8_t last_query[512];
    size_t last_len;
};

struct tcp_server {
    uv_tcp_t listener;
    bool open;
    uint16_t port;
    int accepted;
};

struct https_server {
    pid_t pid;
    int out_fd; /* its stdout */
    uint16_t port;
    char dir[64];
};

struct fixture {
    uv_loop_t loop;
    uv_timer_t tick; /* wakes uv_run(UV_RUN_ONCE) so deadlines are checked */
    struct prober *prober;
    struct tcp_server tcp;
    struct http_server http;
    struct dns_server dns;
    int blackhole_fd;
    int fill_fds[4];
    uint16_t blackhole_port;
    char tmpdir[64];
};

/* ---- loop helpers ---- */

static void on_tick(uv_timer_t *timer)
{
}

static uint64_t now_ms_since(uint64_t start_ns)
{
    return (uv_hrtime() - start_ns) / 1000000u;
}

/* Run the loop until *counter reaches target (NULL: for max_ms). */
static void run_until(struct fixture *f, const int *counter, int target, uint32_t max_ms)
{
    uint64_t start = uv_hrtime();
    while ((counter == NULL || *counter < target) && now_ms_since(start) < max_ms)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static void on_result(void *ctx, bool ok, const char *error, uint32_t latency_ms)
{
    struct result_log *log = ctx;
    assert_true(log->count < LOG_MAX);
    int i = log->count++;
    log->ok[i] = ok;
    assert_true(ok ? error == NULL : error != NULL && error[0] != '\0');
    snprintf(log->error[i], TEXT_MAX, "%s", ok ? "" : error);
    log->latency[i] = latency_ms;
    log->at_ms[i] = now_ms_since(log->start_ns);
    if (log->f->prober != NULL) {
        struct prober_stats stats;
        prober_get_stats(log->f->prober, &stats);
        log->sent_at[i] = stats.probes_sent;
    }
    if (log->remove_self)
        probe_remove(log->probe);
    if (log->free_prober) {
        prober_free(log->f->prober);
        log->f->prober = NULL;
    }
}

static void on_fetch(void *ctx, int status, const uint8_t *data, size_t len, const char *reason)
{
    struct fetch_log *log = ctx;
    log->count++;
    log->status = status;
    if (status == 0) {
        assert_non_null(data);
        assert_null(reason);
        free(log->data);
        log->data = malloc(len + 1);
        assert_non_null(log->data);
        memcpy(log->data, data, len);
        log->data[len] = 0;
        log->len = len;
    } else {
        assert_null(data);
        assert_non_null(reason);
        snprintf(log->reason, TEXT_MAX, "%s", reason);
    }
}

static void log_init(struct result_log *log, struct fixture *f)
{
    memset(log, 0, sizeof(*log));
    log->f = f;
    log->start_ns = uv_hrtime();
}

/* ---- TCP listener: accepts and closes ---- */

static void tcp_on_accepted_closed(uv_handle_t *handle)
{
    free(handle);
}

static void tcp_on_connection(uv_stream_t *listener, int status)
{
    struct tcp_server *s = listener->data;
    assert_int_equal(status, 0);
    uv_tcp_t *conn = malloc(sizeof(*conn));
    assert_non_null(conn);
    uv_tcp_init(listener->loop, conn);
    assert_int_equal(uv_accept(listener, (uv_stream_t *)conn), 0);
    s->accepted++;
    uv_close((uv_handle_t *)conn, tcp_on_accepted_closed);
}

static uint16_t bound_port(const uv_handle_t *handle, bool udp)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (udp)
        assert_int_equal(uv_udp_getsockname((const uv_udp_t *)handle, (struct sockaddr *)&ss, &len),
                         0);
    else
        assert_int_equal(uv_tcp_getsockname((const uv_tcp_t *)handle, (struct sockaddr *)&ss, &len),
                         0);
    return addr_port((const struct sockaddr *)&ss);
}

static void loopback(struct sockaddr_in *sin, uint16_t port)
{
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

static void tcp_server_start(struct fixture *f)
{
    struct tcp_server *s = &f->tcp;
    struct sockaddr_in sin;
    loopback(&sin, 0);
    assert_int_equal(uv_tcp_init(&f->loop, &s->listener), 0);
    s->listener.data = s;
    s->open = true;
    assert_int_equal(uv_tcp_bind(&s->listener, (const struct sockaddr *)&sin, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 64, tcp_on_connection), 0);
    s->port = bound_port((uv_handle_t *)&s->listener, false);
}

/* A port nobody listens on: bound, then closed. */
static uint16_t closed_port(int type)
{
    int fd = socket(AF_INET, type, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin;
    loopback(&sin, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

/* A black hole on loopback: a listener whose accept queue is full drops new SYNs, so a connect
 * hangs until it gives up, as with an unreachable address. */
static void blackhole_start(struct fixture *f)
{
    f->blackhole_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->blackhole_fd >= 0);
    struct sockaddr_in sin;
    loopback(&sin, 0);
    assert_int_equal(bind(f->blackhole_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(f->blackhole_fd, 0), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(f->blackhole_fd, (struct sockaddr *)&sin, &len), 0);
    f->blackhole_port = ntohs(sin.sin_port);
    for (size_t i = 0; i < sizeof(f->fill_fds) / sizeof(f->fill_fds[0]); i++) {
        f->fill_fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(f->fill_fds[i] >= 0);
        int rc = connect(f->fill_fds[i], (struct sockaddr *)&sin, sizeof(sin));
        assert_true(rc == 0 || errno == EINPROGRESS);
    }
    usleep(50000); /* let the handshakes fill the queue */
}

/* ---- HTTP server ---- */

static void http_conn_on_closed(uv_handle_t *handle)
{
    struct http_conn *conn = handle->data;
    free(conn->response);
    free(conn);
}

static void http_conn_close(struct http_conn *conn)
{
    if (conn->closing)
        return;
    conn->closing = true;
    struct http_server *s = conn->server;
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        s->conns = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
    uv_close((uv_handle_t *)&conn->handle, http_conn_on_closed);
}

static void http_on_written(uv_write_t *req, int status)
{
    http_conn_close(req->data);
}

static void http_respond(struct http_conn *conn)
{
    struct http_server *s = conn->server;
    size_t cap = 256 + s->body_len;
    conn->response = malloc(cap);
    assert_non_null(conn->response);
    int head;
    if (s->no_content_length)
        head = snprintf(conn->response, cap, "HTTP/1.1 %d Test\r\nConnection: close\r\n\r\n",
                        s->status);
    else
        head = snprintf(conn->response, cap,
                        "HTTP/1.1 %d Test\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                        s->status, s->body_len);
    memcpy(conn->response + head, s->body, s->body_len);
    uv_buf_t buf = uv_buf_init(conn->response, (unsigned)(head + s->body_len));
    conn->write.data = conn;
    assert_int_equal(uv_write(&conn->write, (uv_stream_t *)&conn->handle, &buf, 1, http_on_written),
                     0);
}

static void http_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *conn = handle->data;
    if (conn->len >= sizeof(conn->buf) - 1)
        conn->len = 0; /* only the first request matters */
    *buf = uv_buf_init(conn->buf + conn->len, (unsigned)(sizeof(conn->buf) - 1 - conn->len));
}

static void http_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *conn = stream->data;
    if (nread < 0) {
        http_conn_close(conn);
        return;
    }
    conn->len += (size_t)nread;
    conn->buf[conn->len] = '\0';
    if (conn->responded || strstr(conn->buf, "\r\n\r\n") == NULL)
        return;
    conn->responded = true;
    struct http_server *s = conn->server;
    s->requests++;
    size_t keep = conn->len < sizeof(s->last_request) - 1 ? conn->len : sizeof(s->last_request) - 1;
    memcpy(s->last_request, conn->buf, keep);
    s->last_request[keep] = '\0';
    if (!s->silent)
        http_respond(conn);
}

static void http_on_connection(uv_stream_t *listener, int status)
{
    struct http_server *s = listener->data;
    assert_int_equal(status, 0);
    struct http_conn *conn = calloc(1, sizeof(*conn));
    assert_non_null(conn);
    conn->server = s;
    uv_tcp_init(listener->loop, &conn->handle);
    conn->handle.data = conn;
    assert_int_equal(uv_accept(listener, (uv_stream_t *)&conn->handle), 0);
    conn->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = conn;
    s->conns = conn;
    uv_read_start((uv_stream_t *)&conn->handle, http_on_alloc, http_on_read);
}

static void http_set_body(struct http_server *s, const char *body)
{
    free(s->body);
    s->body = strdup(body);
    assert_non_null(s->body);
    s->body_len = strlen(body);
}

static void http_server_start(struct fixture *f, int status, const char *body)
{
    struct http_server *s = &f->http;
    s->status = status;
    http_set_body(s, body);
    struct sockaddr_in sin;
    loopback(&sin, 0);
    assert_int_equal(uv_tcp_init(&f->loop, &s->listener), 0);
    s->listener.data = s;
    s->open = true;
    assert_int_equal(uv_tcp_bind(&s->listener, (const struct sockaddr *)&sin, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 64, http_on_connection), 0);
    s->port = bound_port((uv_handle_t *)&s->listener, false);
}

/* ---- DNS responder ---- */

static void dns_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    static char space[2048];
    *buf = uv_buf_init(space, sizeof(space));
}

static void dns_send(struct dns_server *s, const uint8_t *msg, size_t len,
                     const struct sockaddr *to)
{
    uv_buf_t buf = uv_buf_init((char *)msg, (unsigned)len);
    assert_int_equal(uv_udp_try_send(&s->udp, &buf, 1, to), (int)len);
}

static void dns_on_recv(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags)
{
    struct dns_server *s = udp->data;
    if (nread <= 0 || from == NULL)
        return;
    assert_true(nread >= WIRE_HEADER_LEN && nread <= (ssize_t)sizeof(s->last_query));
    const uint8_t *q = (const uint8_t *)buf->base;
    if (s->queries < LOG_MAX)
        s->ids[s->queries] = wire_read_u16(q);
    s->queries++;
    memcpy(s->last_query, q, (size_t)nread);
    s->last_len = (size_t)nread;
    if (s->silent)
        return;
    uint8_t resp[512];
    memcpy(resp, q, (size_t)nread);
    uint16_t qflags = wire_read_u16(q + 2);
    wire_write_u16(resp + 2, (uint16_t)(WIRE_FLAG_QR | (qflags & WIRE_FLAG_RD) | s->rcode));
    if (s->wrong_id_first) {
        wire_write_u16(resp, (uint16_t)(wire_read_u16(q) + 1));
        wire_write_u16(resp + 2, (uint16_t)(WIRE_FLAG_QR | WIRE_RCODE_SERVFAIL));
        dns_send(s, resp, (size_t)nread, from);
        wire_write_u16(resp, wire_read_u16(q));
        wire_write_u16(resp + 2, (uint16_t)(WIRE_FLAG_QR | (qflags & WIRE_FLAG_RD) | s->rcode));
    }
    dns_send(s, resp, (size_t)nread, from);
}

static void dns_server_start(struct fixture *f, uint8_t rcode)
{
    struct dns_server *s = &f->dns;
    s->rcode = rcode;
    struct sockaddr_in sin;
    loopback(&sin, 0);
    assert_int_equal(uv_udp_init(&f->loop, &s->udp), 0);
    s->udp.data = s;
    s->open = true;
    assert_int_equal(uv_udp_bind(&s->udp, (const struct sockaddr *)&sin, 0), 0);
    assert_int_equal(uv_udp_recv_start(&s->udp, dns_on_alloc, dns_on_recv), 0);
    s->port = bound_port((uv_handle_t *)&s->udp, true);
}

/* ---- specs ---- */

static void spec_target(struct probe_spec *spec, uint16_t port)
{
    char text[32];
    snprintf(text, sizeof(text), "127.0.0.1@%u", port);
    assert_int_equal(addr_parse(text, 0, &spec->target), 0);
}

static struct probe_spec tcp_spec(uint16_t port, uint32_t interval_ms, uint32_t timeout_ms)
{
    struct probe_spec spec = {
        .kind = PROBE_TCP, .interval_ms = interval_ms, .timeout_ms = timeout_ms};
    spec_target(&spec, port);
    return spec;
}

static struct probe_spec http_spec(uint16_t port, const char *body_match, uint32_t interval_ms,
                                   uint32_t timeout_ms)
{
    /* The host does not resolve: the probe must connect to the target without a lookup. */
    struct probe_spec spec = {.kind = PROBE_HTTP,
                              .url = "http://health.example.test/status",
                              .body_match = (char *)body_match,
                              .tls_verify = true,
                              .interval_ms = interval_ms,
                              .timeout_ms = timeout_ms};
    spec_target(&spec, port);
    return spec;
}

static struct probe_spec dns_spec(uint16_t port, uint8_t expect_rcode, uint32_t interval_ms,
                                  uint32_t timeout_ms)
{
    struct probe_spec spec = {.kind = PROBE_DNS,
                              .dns_qtype = WIRE_TYPE_A,
                              .dns_expect_rcode = expect_rcode,
                              .interval_ms = interval_ms,
                              .timeout_ms = timeout_ms};
    assert_int_equal(wire_name_from_text("www.example.test", spec.dns_qname, &spec.dns_qname_len),
                     0);
    spec_target(&spec, port);
    return spec;
}

static struct probe *add_probe(struct fixture *f, const struct probe_spec *spec,
                               struct result_log *log)
{
    struct probe *probe = NULL;
    assert_int_equal(prober_add(f->prober, spec, on_result, log, &probe), 0);
    assert_non_null(probe);
    log->probe = probe;
    return probe;
}

/* ---- fixture ---- */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, on_tick, 5, 5);
    assert_int_equal(prober_create(&f->loop, &f->prober), 0);
    f->blackhole_fd = -1;
    for (size_t i = 0; i < sizeof(f->fill_fds) / sizeof(f->fill_fds[0]); i++)
        f->fill_fds[i] = -1;
    snprintf(f->tmpdir, sizeof(f->tmpdir), "/tmp/ballast-probe-XXXXXX");
    assert_non_null(mkdtemp(f->tmpdir));
    *state = f;
    return 0;
}

static void remove_tree(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    prober_free(f->prober);
    if (f->tcp.open)
        uv_close((uv_handle_t *)&f->tcp.listener, NULL);
    if (f->http.open) {
        while (f->http.conns != NULL)
            http_conn_close(f->http.conns);
        uv_close((uv_handle_t *)&f->http.listener, NULL);
    }
    free(f->http.body);
    if (f->dns.open)
        uv_close((uv_handle_t *)&f->dns.udp, NULL);
    uv_close((uv_handle_t *)&f->tick, NULL);
    /* Everything must close: a handle left by the prober keeps the loop from closing. */
    uint64_t start = uv_hrtime();
    while (uv_run(&f->loop, UV_RUN_NOWAIT) != 0 && now_ms_since(start) < 5000)
        usleep(1000);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    for (size_t i = 0; i < sizeof(f->fill_fds) / sizeof(f->fill_fds[0]); i++)
        if (f->fill_fds[i] >= 0)
            close(f->fill_fds[i]);
    if (f->blackhole_fd >= 0)
        close(f->blackhole_fd);
    remove_tree(f->tmpdir);
    free(f);
    return 0;
}

/* ---- TCP ---- */

static void test_probe_tcp_up_when_listener_accepts(void **state)
{
    struct fixture *f = *state;
    tcp_server_start(f);
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = tcp_spec(f->tcp.port, 100, 1000);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 2, 2000);
    assert_int_equal(log.count, 2);
    assert_true(log.ok[0] && log.ok[1]);
    assert_true(f->tcp.accepted >= 2);
    struct prober_stats stats;
    prober_get_stats(f->prober, &stats);
    assert_true(stats.probes_sent >= 2);
    assert_int_equal(stats.probes_failed, 0);
}

static void test_probe_tcp_down_when_connection_refused(void **state)
{
    struct fixture *f = *state;
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = tcp_spec(closed_port(SOCK_STREAM), 100, 1000);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_false(log.ok[0]);
    assert_string_equal(log.error[0], "connect: connection refused");
    struct prober_stats stats;
    prober_get_stats(f->prober, &stats);
    assert_int_equal(stats.probes_failed, 1);
}

static void test_probe_tcp_times_out_on_blackholed_target(void **state)
{
    struct fixture *f = *state;
    blackhole_start(f);
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = tcp_spec(f->blackhole_port, 50, 300);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_false(log.ok[0]);
    assert_string_equal(log.error[0], "timeout after 300 ms");
    assert_in_range(log.latency[0], 290, 300 + SLACK_MS);
}

/* ---- HTTP ---- */

static void test_probe_http_up_on_200_with_body_match(void **state)
{
    struct fixture *f = *state;
    http_server_start(f, 200, "status: all ok here");
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = http_spec(f->http.port, "all ok", 100, 1000);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_true(log.ok[0]);
    /* The URL's host is sent but never looked up: the connection went to the target. */
    assert_non_null(strstr(f->http.last_request, "GET /status HTTP/1.1\r\n"));
    assert_non_null(strstr(f->http.last_request, "Host: health.example.test\r\n"));
}

static void test_probe_http_down_on_503(void **state)
{
    struct fixture *f = *state;
    http_server_start(f, 503, "overloaded");
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = http_spec(f->http.port, NULL, 100, 1000);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_false(log.ok[0]);
    assert_string_equal(log.error[0], "HTTP status 503");
}

static void test_probe_http_up_on_redirect_without_following(void **state)
{
    struct fixture *f = *state;
    http_server_start(f, 302, "");
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = http_spec(f->http.port, NULL, 100, 1000);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_true(log.ok[0]);
    assert_int_equal(f->http.requests, 1);
}

static void test_probe_http_down_when_body_lacks_match(void **state)
{
    struct fixture *f = *state;
    http_server_start(f, 200, "maintenance mode");
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = http_spec(f->http.port, "all ok", 100, 1000);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_false(log.ok[0]);
    assert_string_equal(log.error[0], "body does not contain 'all ok'");
}

/* The match looks at the first 64 KiB only, and a huge body does not keep the probe busy. */
static void test_probe_http_body_match_limited_to_first_64k(void **state)
{
    struct fixture *f = *state;
    size_t len = 1024 * 1024;
    char *body = malloc(len + 1);
    assert_non_null(body);
    memset(body, 'x', len);
    memcpy(body + 1000, "early", 5);
    memcpy(body + len - 10, "late", 4);
    body[len] = '\0';
    http_server_start(f, 200, body);
    free(body);
    struct result_log early, late;
    log_init(&early, f);
    log_init(&late, f);
    struct probe_spec spec_early = http_spec(f->http.port, "early", 100, 2000);
    struct probe_spec spec_late = http_spec(f->http.port, "late", 100, 2000);
    add_probe(f, &spec_early, &early);
    add_probe(f, &spec_late, &late);
    run_until(f, &late.count, 1, 3000);
    run_until(f, &early.count, 1, 3000);
    assert_true(early.ok[0]);
    assert_false(late.ok[0]);
    assert_string_equal(late.error[0], "body does not contain 'late'");
}

static void test_probe_http_expect_status(void **state)
{
    struct fixture *f = *state;
    http_server_start(f, 404, "not here");
    struct result_log want_404, want_any, want_204;
    log_init(&want_404, f);
    log_init(&want_any, f);
    log_init(&want_204, f);
    struct probe_spec spec = http_spec(f->http.port, NULL, 100, 1000);
    spec.expect_status = 404;
    add_probe(f, &spec, &want_404);
    spec.expect_status = 0;
    add_probe(f, &spec, &want_any);
    spec.expect_status = 204;
    add_probe(f, &spec, &want_204);
    run_until(f, &want_404.count, 1, 2000);
    run_until(f, &want_any.count, 1, 2000);
    run_until(f, &want_204.count, 1, 2000);
    assert_true(want_404.ok[0]);
    assert_false(want_any.ok[0]);
    assert_string_equal(want_any.error[0], "HTTP status 404");
    assert_false(want_204.ok[0]);
    assert_string_equal(want_204.error[0], "HTTP status 404, expected 204");
}

static void test_probe_http_times_out_when_server_never_answers(void **state)
{
    struct fixture *f = *state;
    http_server_start(f, 200, "ok");
    f->http.silent = true;
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = http_spec(f->http.port, NULL, 50, 300);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_false(log.ok[0]);
    assert_string_equal(log.error[0], "timeout after 300 ms");
    assert_in_range(log.latency[0], 290, 300 + SLACK_MS);
    assert_int_equal(f->http.requests, 1);
}

static void test_probe_http_down_when_connection_refused(void **state)
{
    struct fixture *f = *state;
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = http_spec(closed_port(SOCK_STREAM), NULL, 100, 1000);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_false(log.ok[0]);
    assert_string_equal(log.error[0], "connect: connection refused");
}

/* ---- HTTPS (a Python TLS server with a certificate made now) ---- */

static const char https_script[] =
    "import socket, ssl, sys\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"
    "s = socket.socket()\n"
    "s.bind(('127.0.0.1', 0))\n"
    "s.listen(16)\n"
    "s.settimeout(30)\n"
    "print(s.getsockname()[1], flush=True)\n"
    "while True:\n"
    "    try:\n"
    "        c, _ = s.accept()\n"
    "    except socket.timeout:\n"
    "        break\n"
    "    try:\n"
    "        c.settimeout(5)\n"
    "        t = ctx.wrap_socket(c, server_side=True)\n"
    "        data = b''\n"
    "        while b'\\r\\n\\r\\n' not in data:\n"
    "            d = t.recv(4096)\n"
    "            if not d:\n"
    "                break\n"
    "            data += d\n"
    "        t.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 9\\r\\n"
    "Connection: close\\r\\n\\r\\ntls is ok')\n"
    "        t.close()\n"
    "    except Exception:\n"
    "        c.close()\n";

static void https_server_stop(struct https_server *s)
{
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    close(s->out_fd);
}

/* Returns false (the test is skipped) when openssl or python3's ssl is missing. */
static bool https_server_start(struct fixture *f, struct https_server *s)
{
    if (access("/usr/bin/openssl", X_OK) != 0 || access("/usr/bin/python3", X_OK) != 0)
        return false;
    char cert[128], key[128], cmd[512];
    snprintf(cert, sizeof(cert), "%s/cert.pem", f->tmpdir);
    snprintf(key, sizeof(key), "%s/key.pem", f->tmpdir);
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout '%s' -out '%s' -days 1 -subj /CN=health.example.test >/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0)
        return false;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl("/usr/bin/python3", "python3", "-c", https_script, cert, key, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    /* The pipe stays open until the server stops: a write to a closed pipe would kill it. */
    s->out_fd = fds[0];
    char line[32] = "";
    size_t len = 0;
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    while (len < sizeof(line) - 1 && strchr(line, '\n') == NULL && poll(&pfd, 1, 10000) == 1) {
        ssize_t n = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        line[len] = '\0';
    }
    s->port = strchr(line, '\n') != NULL ? (uint16_t)atoi(line) : 0;
    if (s->port == 0)
        https_server_stop(s);
    return s->port != 0;
}

static void test_probe_https_checks_certificate_when_asked(void **state)
{
    struct fixture *f = *state;
    struct https_server server = {.pid = -1};
    if (!https_server_start(f, &server))
        skip();
    struct result_log unverified, verified;
    log_init(&unverified, f);
    log_init(&verified, f);
    struct probe_spec spec = http_spec(server.port, "tls is ok", 100, 3000);
    spec.kind = PROBE_HTTPS;
    spec.url = "https://health.example.test/";
    spec.tls_verify = false;
    add_probe(f, &spec, &unverified);
    spec.tls_verify = true; /* self-signed: must fail */
    add_probe(f, &spec, &verified);
    run_until(f, &unverified.count, 1, 5000);
    run_until(f, &verified.count, 1, 5000);
    prober_free(f->prober);
    f->prober = NULL;
    https_server_stop(&server);
    assert_true(unverified.count >= 1);
    assert_true(unverified.ok[0]);
    assert_true(verified.count >= 1);
    assert_false(verified.ok[0]);
    assert_non_null(strstr(verified.error[0], "certificate"));
}

/* ---- DNS ---- */

static void test_probe_dns_up_on_expected_rcode(void **state)
{
    struct fixture *f = *state;
    dns_server_start(f, WIRE_RCODE_NOERROR);
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = dns_spec(f->dns.port, WIRE_RCODE_NOERROR, 50, 1000);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 3, 2000);
    assert_int_equal(log.count, 3);
    assert_true(log.ok[0] && log.ok[1] && log.ok[2]);
    /* RFC 1035 §4.1.1: one question, RD set; the ID is random per query. */
    assert_int_equal(wire_read_u16(f->dns.last_query + 4), 1);
    assert_true(wire_read_u16(f->dns.last_query + 2) & WIRE_FLAG_RD);
    assert_memory_equal(f->dns.last_query + WIRE_HEADER_LEN, spec.dns_qname, spec.dns_qname_len);
    assert_false(f->dns.ids[0] == f->dns.ids[1] && f->dns.ids[1] == f->dns.ids[2]);
}

static void test_probe_dns_down_on_servfail(void **state)
{
    struct fixture *f = *state;
    dns_server_start(f, WIRE_RCODE_SERVFAIL);
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = dns_spec(f->dns.port, WIRE_RCODE_NOERROR, 50, 1000);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_false(log.ok[0]);
    assert_string_equal(log.error[0], "RCODE SERVFAIL");
}

static void test_probe_dns_expected_rcode_mismatch(void **state)
{
    struct fixture *f = *state;
    dns_server_start(f, WIRE_RCODE_SERVFAIL);
    struct result_log want_nx, want_servfail;
    log_init(&want_nx, f);
    log_init(&want_servfail, f);
    struct probe_spec spec = dns_spec(f->dns.port, WIRE_RCODE_NXDOMAIN, 50, 1000);
    add_probe(f, &spec, &want_nx);
    spec.dns_expect_rcode = WIRE_RCODE_SERVFAIL;
    add_probe(f, &spec, &want_servfail);
    run_until(f, &want_nx.count, 1, 2000);
    run_until(f, &want_servfail.count, 1, 2000);
    assert_false(want_nx.ok[0]);
    assert_string_equal(want_nx.error[0], "RCODE SERVFAIL, expected NXDOMAIN");
    assert_true(want_servfail.ok[0]);
}

static void test_probe_dns_ignores_answer_with_other_id(void **state)
{
    struct fixture *f = *state;
    dns_server_start(f, WIRE_RCODE_NOERROR);
    f->dns.wrong_id_first = true;
    struct result_log log;
    log_init(&log, f);
    /* The wrong-ID answer says SERVFAIL; only the right one (NOERROR) may count. */
    struct probe_spec spec = dns_spec(f->dns.port, WIRE_RCODE_NOERROR, 50, 1000);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_true(log.ok[0]);
}

static void test_probe_dns_times_out_when_silent(void **state)
{
    struct fixture *f = *state;
    dns_server_start(f, WIRE_RCODE_NOERROR);
    f->dns.silent = true;
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = dns_spec(f->dns.port, WIRE_RCODE_NOERROR, 50, 250);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_false(log.ok[0]);
    assert_string_equal(log.error[0], "timeout after 250 ms");
    assert_int_equal(f->dns.queries, 1);
}

static void test_probe_dns_down_when_port_unreachable(void **state)
{
    struct fixture *f = *state;
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = dns_spec(closed_port(SOCK_DGRAM), WIRE_RCODE_NOERROR, 50, 1000);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_false(log.ok[0]);
    assert_string_equal(log.error[0], "recv: connection refused");
}

/* ---- scheduling ---- */

static void test_probe_first_run_is_jittered_within_interval(void **state)
{
    struct fixture *f = *state;
    tcp_server_start(f);
    enum { N = 8 };
    struct result_log logs[N];
    for (int i = 0; i < N; i++) {
        log_init(&logs[i], f);
        struct probe_spec spec = tcp_spec(f->tcp.port, 1000, 500);
        add_probe(f, &spec, &logs[i]);
    }
    uint64_t first = UINT64_MAX, last = 0;
    for (int i = 0; i < N; i++) {
        run_until(f, &logs[i].count, 1, 2000);
        assert_true(logs[i].count >= 1);
        assert_in_range(logs[i].at_ms[0], 0, 1000 + SLACK_MS);
        first = logs[i].at_ms[0] < first ? logs[i].at_ms[0] : first;
        last = logs[i].at_ms[0] > last ? logs[i].at_ms[0] : last;
    }
    /* Eight uniform draws in [0, 1000) all within 100 ms: about 1 in a million. */
    assert_true(last - first > 100);
}

static void test_probe_later_runs_every_interval_within_ten_percent(void **state)
{
    struct fixture *f = *state;
    tcp_server_start(f);
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = tcp_spec(f->tcp.port, 300, 200);
    add_probe(f, &spec, &log);
    run_until(f, &log.count, 5, 3000);
    assert_int_equal(log.count, 5);
    for (int i = 1; i < 5; i++) {
        uint64_t gap = log.at_ms[i] - log.at_ms[i - 1];
        assert_in_range(gap, 270 - 20, 330 + 20);
    }
}

/* Timeout longer than the interval: the slots that come while a run is in flight are skipped,
 * so a new run never starts before the last one's result. */
static void test_probe_slow_run_skips_slots(void **state)
{
    struct fixture *f = *state;
    http_server_start(f, 200, "ok");
    f->http.silent = true;
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = http_spec(f->http.port, NULL, 100, 350);
    add_probe(f, &spec, &log);
    run_until(f, NULL, 0, 1300);
    assert_true(log.count >= 2);
    for (int i = 0; i < log.count; i++) {
        assert_string_equal(log.error[i], "timeout after 350 ms");
        assert_int_equal(log.sent_at[i], (uint64_t)(i + 1)); /* one in flight at most */
    }
    struct prober_stats stats;
    prober_get_stats(f->prober, &stats);
    assert_true(stats.probes_sent <= (uint64_t)log.count + 1);
    assert_true(stats.probes_sent <= 4); /* 13 slots in 1.3 s, each run takes 4 of them */
}

/* A blackholed target and a silent HTTP server only time out their own probes. */
static void test_probe_slow_targets_do_not_delay_others(void **state)
{
    struct fixture *f = *state;
    tcp_server_start(f);
    http_server_start(f, 200, "ok");
    f->http.silent = true;
    blackhole_start(f);
    struct result_log slow_http, blackholed, fast;
    log_init(&slow_http, f);
    log_init(&blackholed, f);
    log_init(&fast, f);
    struct probe_spec spec = http_spec(f->http.port, NULL, 20, 800);
    add_probe(f, &spec, &slow_http);
    spec = tcp_spec(f->blackhole_port, 20, 800);
    add_probe(f, &spec, &blackholed);
    spec = tcp_spec(f->tcp.port, 100, 500);
    add_probe(f, &spec, &fast);
    run_until(f, &blackholed.count, 1, 2000);
    run_until(f, &slow_http.count, 1, 2000);
    assert_string_equal(slow_http.error[0], "timeout after 800 ms");
    assert_string_equal(blackholed.error[0], "timeout after 800 ms");
    /* While both were hanging, the fast probe kept its pace. */
    uint64_t slow_done =
        slow_http.at_ms[0] < blackholed.at_ms[0] ? slow_http.at_ms[0] : blackholed.at_ms[0];
    int fast_before = 0;
    for (int i = 0; i < fast.count; i++) {
        assert_true(fast.ok[i]);
        assert_in_range(fast.latency[i], 0, SLACK_MS);
        if (fast.at_ms[i] < slow_done)
            fast_before++;
        if (i > 0)
            assert_in_range(fast.at_ms[i] - fast.at_ms[i - 1], 0, 110 + SLACK_MS);
    }
    assert_true(fast_before >= 5);
}

/* ---- lifetime ---- */

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void test_probe_remove_in_callback_stops_results(void **state)
{
    struct fixture *f = *state;
    tcp_server_start(f);
    struct result_log log;
    log_init(&log, f);
    log.remove_self = true;
    struct probe_spec spec = tcp_spec(f->tcp.port, 30, 500);
    add_probe(f, &spec, &log);
    run_until(f, NULL, 0, 400);
    assert_int_equal(log.count, 1);
}

static void test_probe_remove_while_in_flight_gives_no_result(void **state)
{
    struct fixture *f = *state;
    blackhole_start(f);
    struct result_log log;
    log_init(&log, f);
    struct probe_spec spec = tcp_spec(f->blackhole_port, 10, 300);
    struct probe *probe = add_probe(f, &spec, &log);
    run_until(f, NULL, 0, 100); /* in flight now */
    struct prober_stats stats;
    prober_get_stats(f->prober, &stats);
    assert_int_equal(stats.probes_sent, 1);
    probe_remove(probe);
    run_until(f, NULL, 0, 500);
    assert_int_equal(log.count, 0);
}

static void test_prober_free_with_work_in_flight_calls_nothing(void **state)
{
    struct fixture *f = *state;
    http_server_start(f, 200, "ok");
    f->http.silent = true;
    blackhole_start(f);
    struct result_log http_log, tcp_log;
    log_init(&http_log, f);
    log_init(&tcp_log, f);
    struct probe_spec spec = http_spec(f->http.port, NULL, 10, 5000);
    add_probe(f, &spec, &http_log);
    spec = tcp_spec(f->blackhole_port, 10, 5000);
    add_probe(f, &spec, &tcp_log);
    struct fetch_log fetch;
    memset(&fetch, 0, sizeof(fetch));
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/feed.json", f->http.port);
    assert_int_equal(prober_fetch(f->prober, url, 1000, 5000, on_fetch, &fetch), 0);
    run_until(f, NULL, 0, 200);
    assert_int_equal(f->http.requests, 2); /* the probe and the fetch are both waiting */
    struct fetch_log file_fetch;
    memset(&file_fetch, 0, sizeof(file_fetch));
    char path[128];
    snprintf(path, sizeof(path), "%s/feed.json", f->tmpdir);
    write_file(path, "{}", 2);
    assert_int_equal(prober_fetch(f->prober, path, 1000, 0, on_fetch, &file_fetch), 0);
    prober_free(f->prober);
    f->prober = NULL;
    run_until(f, NULL, 0, 200);
    assert_int_equal(http_log.count, 0);
    assert_int_equal(tcp_log.count, 0);
    assert_int_equal(fetch.count, 0);
    assert_int_equal(file_fetch.count, 0);
}

static void test_prober_free_from_callback(void **state)
{
    struct fixture *f = *state;
    tcp_server_start(f);
    struct result_log first, second;
    log_init(&first, f);
    log_init(&second, f);
    first.free_prober = true;
    second.free_prober = true;
    struct probe_spec spec = tcp_spec(f->tcp.port, 30, 500);
    add_probe(f, &spec, &first);
    add_probe(f, &spec, &second);
    run_until(f, NULL, 0, 300);
    assert_null(f->prober);
    assert_int_equal(first.count + second.count, 1);
}

/* ---- fetch ---- */

static void fetch_and_wait(struct fixture *f, const char *url, size_t max_bytes,
                           struct fetch_log *log)
{
    memset(log, 0, sizeof(*log));
    assert_int_equal(prober_fetch(f->prober, url, max_bytes, 2000, on_fetch, log), 0);
    assert_int_equal(log->count, 0); /* never from inside prober_fetch */
    run_until(f, &log->count, 1, 3000);
    assert_int_equal(log->count, 1);
}

static void test_fetch_file_reads_document(void **state)
{
    struct fixture *f = *state;
    char path[128], url[160];
    snprintf(path, sizeof(path), "%s/feed.json", f->tmpdir);
    write_file(path, "{\"generation\": 1}", 17);
    struct fetch_log log;
    fetch_and_wait(f, path, 17, &log);
    assert_int_equal(log.status, 0);
    assert_int_equal(log.len, 17);
    assert_memory_equal(log.data, "{\"generation\": 1}", 17);
    free(log.data);
    snprintf(url, sizeof(url), "file://%s", path);
    fetch_and_wait(f, url, 1000, &log);
    assert_int_equal(log.status, 0);
    assert_int_equal(log.len, 17);
    free(log.data);
}

static void test_fetch_file_larger_than_limit_rejected(void **state)
{
    struct fixture *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/big.json", f->tmpdir);
    char big[2000];
    memset(big, 'a', sizeof(big));
    write_file(path, big, sizeof(big));
    struct fetch_log log;
    fetch_and_wait(f, path, 1999, &log);
    assert_int_equal(log.status, BALLAST_ELIMIT);
    assert_string_equal(log.reason, "document larger than 1999 bytes");
    fetch_and_wait(f, path, 2000, &log); /* exactly the limit is fine */
    assert_int_equal(log.status, 0);
    assert_int_equal(log.len, 2000);
    free(log.data);
}

static void test_fetch_missing_file_fails(void **state)
{
    struct fixture *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/absent.json", f->tmpdir);
    struct fetch_log log;
    fetch_and_wait(f, path, 1000, &log);
    assert_int_equal(log.status, BALLAST_EIO);
    assert_string_equal(log.reason, "open: no such file or directory");
    fetch_and_wait(f, f->tmpdir, 1000, &log);
    assert_int_equal(log.status, BALLAST_EINVAL);
    assert_string_equal(log.reason, "not a regular file");
}

static void test_fetch_http_reads_document(void **state)
{
    struct fixture *f = *state;
    http_server_start(f, 200, "{\"generation\": 7}");
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/feed.json", f->http.port);
    struct fetch_log log;
    fetch_and_wait(f, url, 1000, &log);
    assert_int_equal(log.status, 0);
    assert_string_equal((const char *)log.data, "{\"generation\": 7}");
    assert_non_null(strstr(f->http.last_request, "GET /feed.json HTTP/1.1\r\n"));
    free(log.data);
}

static void test_fetch_http_larger_than_limit_rejected(void **state)
{
    struct fixture *f = *state;
    char *body = malloc(200001);
    assert_non_null(body);
    memset(body, 'b', 200000);
    body[200000] = '\0';
    http_server_start(f, 200, body);
    free(body);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/feed.json", f->http.port);
    struct fetch_log log;
    /* Content-Length announces it (CURLOPT_MAXFILESIZE_LARGE)... */
    fetch_and_wait(f, url, 100000, &log);
    assert_int_equal(log.status, BALLAST_ELIMIT);
    assert_string_equal(log.reason, "document larger than 100000 bytes");
    /* ...or the bytes cross the limit (the write callback stops it). */
    f->http.no_content_length = true;
    fetch_and_wait(f, url, 100000, &log);
    assert_int_equal(log.status, BALLAST_ELIMIT);
    assert_string_equal(log.reason, "document larger than 100000 bytes");
    fetch_and_wait(f, url, 200000, &log);
    assert_int_equal(log.status, 0);
    assert_int_equal(log.len, 200000);
    free(log.data);
}

static void test_fetch_http_error_status_fails(void **state)
{
    struct fixture *f = *state;
    http_server_start(f, 404, "no feed");
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/feed.json", f->http.port);
    struct fetch_log log;
    fetch_and_wait(f, url, 1000, &log);
    assert_int_equal(log.status, BALLAST_EIO);
    assert_string_equal(log.reason, "HTTP status 404");
}

static void test_fetch_http_timeout(void **state)
{
    struct fixture *f = *state;
    http_server_start(f, 200, "ok");
    f->http.silent = true;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/feed.json", f->http.port);
    struct fetch_log log;
    memset(&log, 0, sizeof(log));
    assert_int_equal(prober_fetch(f->prober, url, 1000, 300, on_fetch, &log), 0);
    run_until(f, &log.count, 1, 2000);
    assert_int_equal(log.count, 1);
    assert_int_equal(log.status, BALLAST_ETIMEOUT);
    assert_string_equal(log.reason, "timeout after 300 ms");
}

static void test_fetch_rejects_bad_arguments(void **state)
{
    struct fixture *f = *state;
    struct fetch_log log;
    memset(&log, 0, sizeof(log));
    assert_int_equal(prober_fetch(f->prober, "ftp://127.0.0.1/feed", 1000, 0, on_fetch, &log),
                     BALLAST_EINVAL);
    assert_int_equal(prober_fetch(f->prober, "file://host/feed", 1000, 0, on_fetch, &log),
                     BALLAST_EINVAL);
    assert_int_equal(prober_fetch(f->prober, "", 1000, 0, on_fetch, &log), BALLAST_EINVAL);
    assert_int_equal(prober_fetch(f->prober, "/etc/hostname", 0, 0, on_fetch, &log),
                     BALLAST_EINVAL);
    run_until(f, NULL, 0, 50);
    assert_int_equal(log.count, 0);
}

/* ---- specs ---- */

static void test_prober_add_rejects_invalid_specs(void **state)
{
    struct fixture *f = *state;
    struct result_log log;
    log_init(&log, f);
    struct probe *probe = NULL;
    struct probe_spec spec = tcp_spec(53, 100, 50);
    ((struct sockaddr_in *)&spec.target.ss)->sin_port = 0; /* TCP needs a port */
    assert_int_equal(prober_add(f->prober, &spec, on_result, &log, &probe), BALLAST_EINVAL);
    spec = http_spec(80, NULL, 100, 50);
    spec.url = NULL;
    assert_int_equal(prober_add(f->prober, &spec, on_result, &log, &probe), BALLAST_EINVAL);
    spec = http_spec(80, NULL, 100, 50);
    spec.url = "https://health.example.test/"; /* kind says HTTP */
    assert_int_equal(prober_add(f->prober, &spec, on_result, &log, &probe), BALLAST_EINVAL);
    spec = dns_spec(53, 0, 100, 50);
    spec.dns_qname[0] = 60; /* label runs past the name */
    assert_int_equal(prober_add(f->prober, &spec, on_result, &log, &probe), BALLAST_EINVAL);
    spec = tcp_spec(53, 100, 50);
    spec.target.ss.ss_family = AF_UNIX;
    assert_int_equal(prober_add(f->prober, &spec, on_result, &log, &probe), BALLAST_EINVAL);
    assert_null(probe);
}

static void test_probe_spec_key_canonical(void **state)
{
    char a[PROBE_SPEC_KEY_MAX], b[PROBE_SPEC_KEY_MAX];
    struct probe_spec spec = tcp_spec(443, 0, 0);
    probe_spec_key(&spec, a, sizeof(a));
    assert_string_equal(a, "tcp 127.0.0.1@443 interval=10000 timeout=2000");
    spec.interval_ms = 10000; /* the default, written out */
    probe_spec_key(&spec, b, sizeof(b));
    assert_string_equal(a, b);
    spec.timeout_ms = 1000;
    probe_spec_key(&spec, b, sizeof(b));
    assert_string_not_equal(a, b);

    struct probe_spec http = http_spec(80, "ok", 0, 0);
    probe_spec_key(&http, a, sizeof(a));
    assert_string_equal(a, "http 127.0.0.1@80 http://health.example.test/status status=0 "
                           "interval=10000 timeout=2000 body='ok'");
    http.tls_verify = false; /* means nothing without TLS */
    probe_spec_key(&http, b, sizeof(b));
    assert_string_equal(a, b);
    http.kind = PROBE_HTTPS;
    http.url = "https://health.example.test/status";
    probe_spec_key(&http, a, sizeof(a));
    http.tls_verify = true;
    probe_spec_key(&http, b, sizeof(b));
    assert_string_not_equal(a, b);
    http.expect_status = 204;
    probe_spec_key(&http, a, sizeof(a));
    assert_string_not_equal(a, b);
    spec_target(&http, 8443);
    probe_spec_key(&http, b, sizeof(b));
    assert_string_not_equal(a, b);

    struct probe_spec dns = dns_spec(53, WIRE_RCODE_NOERROR, 0, 0);
    probe_spec_key(&dns, a, sizeof(a));
    assert_string_equal(a, "dns 127.0.0.1@53 www.example.test. A rcode=NOERROR interval=10000 "
                           "timeout=2000");
    dns.dns_qtype = WIRE_TYPE_AAAA;
    probe_spec_key(&dns, b, sizeof(b));
    assert_string_not_equal(a, b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_probe_tcp_up_when_listener_accepts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_tcp_down_when_connection_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe_tcp_times_out_on_blackholed_target, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe_http_up_on_200_with_body_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_http_down_on_503, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_http_up_on_redirect_without_following, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe_http_down_when_body_lacks_match, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe_http_body_match_limited_to_first_64k, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe_http_expect_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_http_times_out_when_server_never_answers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe_http_down_when_connection_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe_https_checks_certificate_when_asked, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe_dns_up_on_expected_rcode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_dns_down_on_servfail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_dns_expected_rcode_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_dns_ignores_answer_with_other_id, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe_dns_times_out_when_silent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_dns_down_when_port_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_first_run_is_jittered_within_interval, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe_later_runs_every_interval_within_ten_percent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_slow_run_skips_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_slow_targets_do_not_delay_others, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe_remove_in_callback_stops_results, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe_remove_while_in_flight_gives_no_result, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prober_free_with_work_in_flight_calls_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prober_free_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_file_reads_document, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_file_larger_than_limit_rejected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fetch_missing_file_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_http_reads_document, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_http_larger_than_limit_rejected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fetch_http_error_status_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_http_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_rejects_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prober_add_rejects_invalid_specs, setup, teardown),
        cmocka_unit_test(test_probe_spec_key_canonical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
