/* Tests for common/listener.c: real libuv loop on loopback port 0, clients in a second thread
 * using blocking sockets with timeouts; assertions run on the main thread after the loop ends. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "errors.h"
#include "listener.h"

#define CLIENT_TIMEOUT_MS 2000

/* ---- the query handler ---- */

struct echo_ctx {
    int calls;
    bool silent;       /* answer nothing */
    size_t answer_len; /* 0: as long as the query */
    bool last_over_tcp;
    int last_family;
    uint16_t last_peer_port;
};

/* Echo the query with QR set, padded with 0xAB up to answer_len. */
static size_t echo_query(void *ctx, const uint8_t *query, size_t query_len, uint8_t *resp,
                         size_t resp_cap, const struct sockaddr *peer, bool over_tcp)
{
    struct echo_ctx *echo = ctx;
    echo->calls++;
    echo->last_over_tcp = over_tcp;
    echo->last_family = peer->sa_family;
    echo->last_peer_port = addr_port(peer);
    if (echo->silent || resp_cap < 65535)
        return 0;
    size_t len = echo->answer_len ? echo->answer_len : query_len;
    memset(resp, 0xAB, len);
    memcpy(resp, query, query_len < len ? query_len : len);
    if (len > 2)
        resp[2] |= 0x80;
    return len;
}

/* A query of len bytes (len >= 12) with the given ID, QR clear. */
static void make_query(uint8_t *buf, size_t len, uint16_t id)
{
    memset(buf, 0x11, len);
    buf[0] = (uint8_t)(id >> 8);
    buf[1] = (uint8_t)id;
    buf[2] = 0x01; /* RD */
}

static uint16_t msg_id(const uint8_t *buf)
{
    return (uint16_t)((buf[0] << 8) | buf[1]);
}

/* ---- loop harness ---- */

struct harness {
    uv_loop_t loop;
    uv_async_t done;
    uv_timer_t guard;
    uv_thread_t thread;
    struct listener *listeners[2];
    struct listener_stats stats[2]; /* snapshot taken when the client finished */
    int family;
    uint16_t port;
    void (*client)(struct harness *, void *);
    void *client_arg;
    bool timed_out;
    uv_handle_t *extra; /* another handle of the test's, closed with the harness */
};

static void harness_shutdown(struct harness *h)
{
    for (int i = 0; i < 2; i++) {
        if (h->listeners[i] != NULL) {
            h->stats[i] = *listener_get_stats(h->listeners[i]);
            listener_close(h->listeners[i]);
            h->listeners[i] = NULL;
        }
    }
    uv_close((uv_handle_t *)&h->done, NULL);
    uv_close((uv_handle_t *)&h->guard, NULL);
    if (h->extra != NULL && !uv_is_closing(h->extra))
        uv_close(h->extra, NULL);
}

static void harness_on_done(uv_async_t *async)
{
    harness_shutdown(async->data);
}

static void harness_on_guard(uv_timer_t *timer)
{
    struct harness *h = timer->data;
    h->timed_out = true;
    harness_shutdown(h);
}

static void harness_client_thread(void *arg)
{
    struct harness *h = arg;
    h->client(h, h->client_arg);
    uv_async_send(&h->done);
}

static struct addr loopback_addr(int family, uint16_t port)
{
    struct addr addr;
    memset(&addr, 0, sizeof(addr));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&addr.ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&addr.ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        sin6->sin6_addr = in6addr_loopback;
        addr.len = sizeof(*sin6);
    }
    return addr;
}

static struct listener_options default_options(void)
{
    return (struct listener_options){
        .tcp_clients = 16,
        .tcp_idle_timeout_ms = 5000,
        .tcp_pipeline = 16,
        .udp = true,
        .tcp = true,
    };
}

static void harness_init(struct harness *h)
{
    memset(h, 0, sizeof(*h));
    assert_int_equal(uv_loop_init(&h->loop), 0);
    h->family = AF_INET;
}

/* Open listener index i on the harness loop; port 0 picks one and the harness remembers it. */
static int harness_open(struct harness *h, int i, const struct listener_options *options,
                        struct echo_ctx *echo)
{
    char err[256] = "";
    struct addr addr = loopback_addr(h->family, h->port);
    int rc = listener_open(&h->loop, &addr, options, echo_query, echo, &h->listeners[i], err,
                           sizeof(err));
    if (rc == 0 && h->port == 0)
        h->port = listener_port(h->listeners[i]);
    return rc;
}

/* Run the loop while the client runs in its own thread, then close the listeners. */
static void harness_run(struct harness *h, void (*client)(struct harness *, void *), void *arg)
{
    h->client = client;
    h->client_arg = arg;
    h->done.data = h;
    h->guard.data = h;
    assert_int_equal(uv_async_init(&h->loop, &h->done, harness_on_done), 0);
    uv_timer_init(&h->loop, &h->guard);
    uv_timer_start(&h->guard, harness_on_guard, 15000, 0);
    assert_int_equal(uv_thread_create(&h->thread, harness_client_thread, h), 0);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    uv_thread_join(&h->thread);
    assert_false(h->timed_out);
    assert_int_equal(uv_loop_close(&h->loop), 0);
}

/* ---- client side helpers (client thread: no cmocka asserts here) ---- */

static void socket_set_timeout(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int client_connect(const struct harness *h, int type)
{
    struct addr addr = loopback_addr(h->family, h->port);
    int fd = socket(h->family, type, 0);
    if (fd < 0)
        return -1;
    socket_set_timeout(fd, CLIENT_TIMEOUT_MS);
    if (type == SOCK_STREAM) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (connect(fd, (struct sockaddr *)&addr.ss, addr.len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

static bool recv_exact(int fd, uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n <= 0)
            return false;
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

/* Read one length-prefixed message; returns its length or -1. */
static long read_frame(int fd, uint8_t *buf, size_t cap)
{
    uint8_t prefix[2];
    if (!recv_exact(fd, prefix, 2))
        return -1;
    size_t len = ((size_t)prefix[0] << 8) | prefix[1];
    if (len > cap || !recv_exact(fd, buf, len))
        return -1;
    return (long)len;
}

/* Append a length-prefixed query with the given ID and size to buf; returns bytes written. */
static size_t put_frame(uint8_t *buf, uint16_t id, size_t len)
{
    buf[0] = (uint8_t)(len >> 8);
    buf[1] = (uint8_t)len;
    make_query(buf + 2, len, id);
    return 2 + len;
}

/* Send one framed query and read the answer; returns the answer's ID or -1. */
static int tcp_exchange(int fd, uint16_t id)
{
    uint8_t frame[64];
    uint8_t answer[512];
    size_t len = put_frame(frame, id, 40);
    if (!send_all(fd, frame, len))
        return -1;
    long got = read_frame(fd, answer, sizeof(answer));
    if (got != 40 || (answer[2] & 0x80) == 0)
        return -1;
    return msg_id(answer);
}

static long elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* True when the server closes the connection (EOF or reset) before any data arrives. */
static bool wait_closed(int fd)
{
    uint8_t byte;
    ssize_t n = recv(fd, &byte, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* ---- UDP ---- */

struct udp_result {
    long got;
    uint8_t answer[65536];
    long second_got;
};

static void client_udp_one_query(struct harness *h, void *arg)
{
    struct udp_result *r = arg;
    uint8_t query[40];
    make_query(query, sizeof(query), 0x1234);
    int fd = client_connect(h, SOCK_DGRAM);
    r->got = -1;
    if (fd < 0)
        return;
    if (send(fd, query, sizeof(query), 0) == (ssize_t)sizeof(query))
        r->got = recv(fd, r->answer, sizeof(r->answer), 0);
    close(fd);
}

static void test_listener_udp_answers_query(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    assert_int_not_equal(h.port, 0);
    struct udp_result *r = calloc(1, sizeof(*r));
    harness_run(&h, client_udp_one_query, r);
    assert_int_equal(r->got, 40);
    assert_int_equal(msg_id(r->answer), 0x1234);
    assert_true(r->answer[2] & 0x80);
    assert_int_equal(echo.calls, 1);
    assert_false(echo.last_over_tcp);
    assert_int_equal(echo.last_family, AF_INET);
    assert_int_not_equal(echo.last_peer_port, 0);
    assert_int_equal(h.stats[0].udp_received, 1);
    assert_int_equal(h.stats[0].udp_sent, 1);
    assert_int_equal(h.stats[0].udp_send_errors, 0);
    free(r);
}

static void test_listener_udp_sends_nothing_when_handler_returns_zero(void **state)
{
    struct harness h;
    struct echo_ctx echo = {.silent = true};
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct udp_result *r = calloc(1, sizeof(*r));
    harness_run(&h, client_udp_one_query, r);
    assert_true(r->got < 0); /* receive timed out */
    assert_int_equal(echo.calls, 1);
    assert_int_equal(h.stats[0].udp_received, 1);
    assert_int_equal(h.stats[0].udp_sent, 0);
    free(r);
}

static void test_listener_udp_sends_large_answer(void **state)
{
    struct harness h;
    struct echo_ctx echo = {.answer_len = 9000}; /* bigger than a batch slot */
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct udp_result *r = calloc(1, sizeof(*r));
    harness_run(&h, client_udp_one_query, r);
    assert_int_equal(r->got, 9000);
    assert_int_equal(msg_id(r->answer), 0x1234);
    assert_int_equal(r->answer[8999], 0xAB);
    assert_int_equal(h.stats[0].udp_sent, 1);
    free(r);
}

static void client_udp_oversized_then_normal(struct harness *h, void *arg)
{
    struct udp_result *r = arg;
    uint8_t *big = malloc(5000);
    int fd = client_connect(h, SOCK_DGRAM);
    r->got = r->second_got = -1;
    if (fd < 0 || big == NULL)
        goto out;
    socket_set_timeout(fd, 300);
    make_query(big, 5000, 1);
    if (send(fd, big, 5000, 0) == 5000)
        r->got = recv(fd, r->answer, sizeof(r->answer), 0);
    socket_set_timeout(fd, CLIENT_TIMEOUT_MS);
    if (send(fd, big, 100, 0) == 100)
        r->second_got = recv(fd, r->answer, sizeof(r->answer), 0);
out:
    if (fd >= 0)
        close(fd);
    free(big);
}

static void test_listener_udp_drops_query_larger_than_receive_buffer(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct udp_result *r = calloc(1, sizeof(*r));
    harness_run(&h, client_udp_oversized_then_normal, r);
    assert_true(r->got < 0);
    assert_int_equal(r->second_got, 100);
    assert_int_equal(echo.calls, 1); /* only the normal query reached the handler */
    assert_int_equal(h.stats[0].udp_received, 2);
    assert_int_equal(h.stats[0].udp_sent, 1);
    free(r);
}

#define BURST 100

struct burst_result {
    int answered;
    bool seen[BURST];
};

static void client_udp_burst(struct harness *h, void *arg)
{
    struct burst_result *r = arg;
    int fd = client_connect(h, SOCK_DGRAM);
    if (fd < 0)
        return;
    uint8_t buf[64];
    for (uint16_t id = 0; id < BURST; id++) {
        make_query(buf, 30, id);
        send(fd, buf, 30, 0);
    }
    for (int i = 0; i < BURST; i++) {
        if (recv(fd, buf, sizeof(buf), 0) != 30 || msg_id(buf) >= BURST)
            break;
        if (!r->seen[msg_id(buf)])
            r->answered++;
        r->seen[msg_id(buf)] = true;
    }
    close(fd);
}

static void test_listener_udp_answers_burst_in_batches(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct burst_result r = {0};
    harness_run(&h, client_udp_burst, &r);
    assert_int_equal(r.answered, BURST);
    assert_int_equal(h.stats[0].udp_received, BURST);
    assert_int_equal(h.stats[0].udp_sent, BURST);
}

#define SPREAD_CLIENTS 32

static void client_udp_from_many_ports(struct harness *h, void *arg)
{
    int *answered = arg;
    for (int i = 0; i < SPREAD_CLIENTS; i++) {
        uint8_t buf[64];
        int fd = client_connect(h, SOCK_DGRAM);
        if (fd < 0)
            continue;
        make_query(buf, 20, (uint16_t)i);
        if (send(fd, buf, 20, 0) == 20 && recv(fd, buf, sizeof(buf), 0) == 20)
            (*answered)++;
        close(fd);
    }
}

static void test_listener_two_listeners_share_port(void **state)
{
    struct harness h;
    struct echo_ctx echo[2] = {{0}, {0}};
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo[0]), 0);
    assert_int_equal(harness_open(&h, 1, &options, &echo[1]), 0); /* same port: SO_REUSEPORT */
    assert_int_equal(listener_port(h.listeners[1]), listener_port(h.listeners[0]));
    int answered = 0;
    harness_run(&h, client_udp_from_many_ports, &answered);
    assert_int_equal(answered, SPREAD_CLIENTS);
    /* The kernel spreads clients over both sockets (by source port hash). */
    assert_int_equal(echo[0].calls + echo[1].calls, SPREAD_CLIENTS);
    assert_true(echo[0].calls > 0);
    assert_true(echo[1].calls > 0);
}

static void test_listener_open_reports_port_in_use(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    /* A socket without SO_REUSEPORT holds the port. */
    struct addr addr = loopback_addr(AF_INET, 0);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr.ss, addr.len), 0);
    socklen_t len = addr.len;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr.ss, &len), 0);

    struct listener_options options = default_options();
    options.tcp = false;
    struct listener *listener = (struct listener *)&loop; /* must be reset to NULL */
    char err[256] = "";
    struct echo_ctx echo = {0};
    int rc = listener_open(&loop, &addr, &options, echo_query, &echo, &listener, err, sizeof(err));
    assert_int_equal(rc, BALLAST_EIO);
    assert_null(listener);
    assert_non_null(strstr(err, "bind 127.0.0.1@"));
    assert_non_null(strstr(err, "Address already in use"));
    close(fd);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_listener_open_rejects_no_protocol(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct addr addr = loopback_addr(AF_INET, 0);
    struct listener_options options = default_options();
    options.udp = options.tcp = false;
    struct listener *listener = NULL;
    char err[256] = "";
    struct echo_ctx echo = {0};
    int rc = listener_open(&loop, &addr, &options, echo_query, &echo, &listener, err, sizeof(err));
    assert_int_equal(rc, BALLAST_EINVAL);
    assert_null(listener);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- TCP ---- */

struct tcp_result {
    int count; /* queries to pipeline */
    int ids[32];
    long lens[4];
    bool closed;
    long closed_after_ms;
    int keep_fd;
};

static void client_tcp_one_query(struct harness *h, void *arg)
{
    struct tcp_result *r = arg;
    int fd = client_connect(h, SOCK_STREAM);
    r->ids[0] = fd < 0 ? -1 : tcp_exchange(fd, 0x4242);
    if (fd >= 0)
        close(fd);
}

static void test_listener_tcp_answers_query(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct tcp_result r = {0};
    harness_run(&h, client_tcp_one_query, &r);
    assert_int_equal(r.ids[0], 0x4242);
    assert_true(echo.last_over_tcp);
    assert_int_equal(echo.last_family, AF_INET);
    assert_int_equal(h.stats[0].tcp_accepted, 1);
    assert_int_equal(h.stats[0].tcp_received, 1);
    assert_int_equal(h.stats[0].tcp_sent, 1);
}

static void client_tcp_pipelined(struct harness *h, void *arg)
{
    struct tcp_result *r = arg;
    uint8_t buf[2048];
    int count = r->count;
    int fd = client_connect(h, SOCK_STREAM);
    memset(r->ids, 0xff, sizeof(r->ids));
    if (fd < 0)
        return;
    size_t len = 0;
    for (int i = 0; i < count; i++)
        len += put_frame(buf + len, (uint16_t)(100 + i), 30);
    if (send_all(fd, buf, len)) {
        for (int i = 0; i < count; i++) {
            if (read_frame(fd, buf, sizeof(buf)) != 30)
                break;
            r->ids[i] = msg_id(buf);
        }
    }
    close(fd);
}

static void test_listener_tcp_answers_pipelined_queries_in_order(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct tcp_result r = {.count = 2};
    harness_run(&h, client_tcp_pipelined, &r);
    assert_int_equal(r.ids[0], 100);
    assert_int_equal(r.ids[1], 101);
    assert_int_equal(h.stats[0].tcp_received, 2);
    assert_int_equal(h.stats[0].tcp_sent, 2);
}

static void test_listener_tcp_pipeline_limit_pauses_without_losing_queries(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    options.tcp_pipeline = 2;
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct tcp_result r = {.count = 30};
    harness_run(&h, client_tcp_pipelined, &r);
    for (int i = 0; i < 30; i++)
        assert_int_equal(r.ids[i], 100 + i);
    assert_int_equal(h.stats[0].tcp_sent, 30);
}

static void client_tcp_split_frame(struct harness *h, void *arg)
{
    struct tcp_result *r = arg;
    uint8_t frame[64];
    uint8_t answer[64] = {0};
    size_t len = put_frame(frame, 0x0707, 40);
    int fd = client_connect(h, SOCK_STREAM);
    r->lens[0] = -1;
    if (fd < 0)
        return;
    /* Split inside the length prefix and inside the message. */
    bool sent = send_all(fd, frame, 1);
    usleep(50000);
    sent = sent && send_all(fd, frame + 1, 10);
    usleep(50000);
    sent = sent && send_all(fd, frame + 11, len - 11);
    if (sent)
        r->lens[0] = read_frame(fd, answer, sizeof(answer));
    r->ids[0] = msg_id(answer);
    close(fd);
}

static void test_listener_tcp_reassembles_split_frame(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct tcp_result r = {0};
    harness_run(&h, client_tcp_split_frame, &r);
    assert_int_equal(r.lens[0], 40);
    assert_int_equal(r.ids[0], 0x0707);
    assert_int_equal(echo.calls, 1);
}

static void client_tcp_large_messages(struct harness *h, void *arg)
{
    struct tcp_result *r = arg;
    uint8_t *buf = malloc(70000);
    int fd = client_connect(h, SOCK_STREAM);
    r->lens[0] = -1;
    if (fd < 0 || buf == NULL)
        goto out;
    size_t len = put_frame(buf, 0x0102, 10000); /* larger than the initial read buffer */
    if (send_all(fd, buf, len))
        r->lens[0] = read_frame(fd, buf, 70000);
    r->ids[0] = msg_id(buf);
    r->ids[1] = buf[59999];
out:
    if (fd >= 0)
        close(fd);
    free(buf);
}

static void test_listener_tcp_handles_large_query_and_answer(void **state)
{
    struct harness h;
    struct echo_ctx echo = {.answer_len = 60000};
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct tcp_result r = {0};
    harness_run(&h, client_tcp_large_messages, &r);
    assert_int_equal(r.lens[0], 60000);
    assert_int_equal(r.ids[0], 0x0102);
    assert_int_equal(r.ids[1], 0xAB);
}

static void client_tcp_wait_idle(struct harness *h, void *arg)
{
    struct tcp_result *r = arg;
    int fd = client_connect(h, SOCK_STREAM);
    if (fd < 0)
        return;
    r->ids[0] = tcp_exchange(fd, 9);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    r->closed = wait_closed(fd);
    r->closed_after_ms = elapsed_ms(&start);
    close(fd);
}

static void test_listener_tcp_idle_timeout_closes_connection(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    options.tcp_idle_timeout_ms = 200;
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct tcp_result r = {0};
    harness_run(&h, client_tcp_wait_idle, &r);
    assert_int_equal(r.ids[0], 9);
    assert_true(r.closed);
    assert_true(r.closed_after_ms >= 150);
    assert_true(r.closed_after_ms < 1500);
    assert_int_equal(h.stats[0].tcp_idle_closed, 1);
}

static void client_tcp_over_limit(struct harness *h, void *arg)
{
    struct tcp_result *r = arg;
    int first = client_connect(h, SOCK_STREAM);
    if (first < 0)
        return;
    r->ids[0] = tcp_exchange(first, 1); /* the first connection is registered */
    int second = client_connect(h, SOCK_STREAM);
    if (second >= 0) {
        r->closed = wait_closed(second);
        close(second);
    }
    r->ids[1] = tcp_exchange(first, 2); /* the first keeps working */
    close(first);
}

static void test_listener_tcp_refuses_connection_over_limit(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    options.tcp_clients = 1;
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct tcp_result r = {0};
    harness_run(&h, client_tcp_over_limit, &r);
    assert_int_equal(r.ids[0], 1);
    assert_true(r.closed);
    assert_int_equal(r.ids[1], 2);
    assert_int_equal(h.stats[0].tcp_accepted, 1);
    assert_int_equal(h.stats[0].tcp_refused, 1);
}

static void client_tcp_zero_length(struct harness *h, void *arg)
{
    struct tcp_result *r = arg;
    int fd = client_connect(h, SOCK_STREAM);
    if (fd < 0)
        return;
    r->ids[0] = tcp_exchange(fd, 5);
    /* A zero-length frame followed by a valid query: the query must not be answered. */
    uint8_t buf[64] = {0, 0};
    size_t len = 2 + put_frame(buf + 2, 6, 30);
    if (send_all(fd, buf, len))
        r->closed = wait_closed(fd);
    close(fd);
}

static void test_listener_tcp_zero_length_frame_closes_connection(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct tcp_result r = {0};
    harness_run(&h, client_tcp_zero_length, &r);
    assert_int_equal(r.ids[0], 5);
    assert_true(r.closed);
    assert_int_equal(echo.calls, 1);
    assert_int_equal(h.stats[0].tcp_bad_frames, 1);
}

static void client_tcp_half_close(struct harness *h, void *arg)
{
    struct tcp_result *r = arg;
    uint8_t buf[128];
    int fd = client_connect(h, SOCK_STREAM);
    r->lens[0] = -1;
    if (fd < 0)
        return;
    size_t len = put_frame(buf, 0x0A0B, 40);
    if (send_all(fd, buf, len) && shutdown(fd, SHUT_WR) == 0) {
        r->lens[0] = read_frame(fd, buf, sizeof(buf));
        r->ids[0] = msg_id(buf);
        r->closed = wait_closed(fd);
    }
    close(fd);
}

static void test_listener_tcp_answers_after_client_half_close(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct tcp_result r = {0};
    harness_run(&h, client_tcp_half_close, &r);
    assert_int_equal(r.lens[0], 40);
    assert_int_equal(r.ids[0], 0x0A0B);
    assert_true(r.closed);
}

static void client_tcp_stay_connected(struct harness *h, void *arg)
{
    struct tcp_result *r = arg;
    r->keep_fd = client_connect(h, SOCK_STREAM);
    if (r->keep_fd >= 0)
        r->ids[0] = tcp_exchange(r->keep_fd, 3);
}

static void test_listener_close_closes_open_connections(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    harness_init(&h);
    assert_int_equal(harness_open(&h, 0, &options, &echo), 0);
    struct tcp_result r = {0};
    harness_run(&h, client_tcp_stay_connected, &r); /* the listener closes with it open */
    assert_int_equal(r.ids[0], 3);
    assert_true(r.keep_fd >= 0);
    assert_true(wait_closed(r.keep_fd));
    close(r.keep_fd);
}

static void client_ipv6_both(struct harness *h, void *arg)
{
    struct tcp_result *r = arg;
    struct udp_result *u = calloc(1, sizeof(*u));
    if (u != NULL) {
        client_udp_one_query(h, u);
        r->lens[0] = u->got;
        free(u);
    }
    client_tcp_one_query(h, r);
}

static void test_listener_serves_ipv6_loopback(void **state)
{
    struct harness h;
    struct echo_ctx echo = {0};
    struct listener_options options = default_options();
    harness_init(&h);
    h.family = AF_INET6;
    if (harness_open(&h, 0, &options, &echo) != 0) {
        uv_loop_close(&h.loop);
        skip(); /* no IPv6 on this host */
    }
    struct tcp_result r = {0};
    harness_run(&h, client_ipv6_both, &r);
    assert_int_equal(r.lens[0], 40);
    assert_int_equal(r.ids[0], 0x4242);
    assert_int_equal(echo.last_family, AF_INET6);
}

/* ---- wildcard address: replies leave from the address the query was sent to ---- */

static void client_udp_to_second_loopback(struct harness *h, void *arg)
{
    long *got = arg;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(h->port)};
    inet_pton(AF_INET, "127.0.0.2", &to.sin_addr);
    uint8_t buf[64];
    *got = -1;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        return;
    socket_set_timeout(fd, CLIENT_TIMEOUT_MS);
    /* A connected socket drops datagrams from any other source address. */
    make_query(buf, 20, 77);
    if (connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0 && send(fd, buf, 20, 0) == 20)
        *got = recv(fd, buf, sizeof(buf), 0);
    close(fd);
}

static bool loopback_up(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strcpy(ifr.ifr_name, "lo");
    bool ok = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
    ifr.ifr_flags |= IFF_UP;
    ok = ok && ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Child process in a private network namespace, so binding 0.0.0.0 reaches only its own
 * loopback. Exit status: 0 answered, 1 not answered, 77 namespaces unavailable. */
static int wildcard_child(void)
{
    if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0 || !loopback_up())
        return 77;
    struct addr addr = loopback_addr(AF_INET, 0);
    ((struct sockaddr_in *)&addr.ss)->sin_addr.s_addr = htonl(INADDR_ANY);
    struct listener_options options = default_options();
    options.tcp = false;
    struct echo_ctx echo = {0};
    struct harness h;
    memset(&h, 0, sizeof(h));
    if (uv_loop_init(&h.loop) != 0)
        return 1;
    char err[256];
    if (listener_open(&h.loop, &addr, &options, echo_query, &echo, &h.listeners[0], err,
                      sizeof(err)) != 0)
        return 1;
    h.port = listener_port(h.listeners[0]);
    long got = -1;
    h.client = client_udp_to_second_loopback;
    h.client_arg = &got;
    h.done.data = &h;
    h.guard.data = &h;
    uv_async_init(&h.loop, &h.done, harness_on_done);
    uv_timer_init(&h.loop, &h.guard);
    uv_timer_start(&h.guard, harness_on_guard, 15000, 0);
    uv_thread_create(&h.thread, harness_client_thread, &h);
    uv_run(&h.loop, UV_RUN_DEFAULT);
    uv_thread_join(&h.thread);
    uv_loop_close(&h.loop);
    return got == 20 ? 0 : 1;
}

static void test_listener_wildcard_udp_replies_from_query_destination(void **state)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(wildcard_child());
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
        skip();
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- deferred answers (the resolver's mode) ---- */

#define DEFERRED_MAX 8

struct deferred_ctx {
    uv_timer_t timer;
    struct listener_reply *replies[DEFERRED_MAX];
    uint8_t queries[DEFERRED_MAX][64];
    size_t lens[DEFERRED_MAX];
    int count;
    int answered;
    bool drop_first;
    bool tcp_seen;
    bool immediate; /* answer inside the callback, as a resolver cache hit does */
};

/* Answer everything held, newest first, so TCP answers go out of order (RFC 7766 §7). */
static void deferred_on_timer(uv_timer_t *timer)
{
    struct deferred_ctx *d = timer->data;
    for (int i = d->count - 1; i >= 0; i--) {
        if (d->replies[i] == NULL)
            continue;
        if (d->drop_first && i == 0) {
            listener_reply_drop(d->replies[i]);
        } else {
            d->queries[i][2] |= 0x80;
            listener_reply_send(d->replies[i], d->queries[i], d->lens[i]);
            d->answered++;
        }
        d->replies[i] = NULL;
    }
    d->count = 0;
}

static void deferred_query(void *ctx, const uint8_t *query, size_t len, const struct sockaddr *peer,
                           bool over_tcp, struct listener_reply *reply)
{
    struct deferred_ctx *d = ctx;
    if (d->count >= DEFERRED_MAX || len > sizeof d->queries[0]) {
        listener_reply_drop(reply);
        return;
    }
    d->tcp_seen |= listener_reply_is_tcp(reply);
    if (d->immediate) {
        uint8_t answer[64];
        memcpy(answer, query, len);
        answer[2] |= 0x80;
        listener_reply_send(reply, answer, len);
        d->answered++;
        return;
    }
    memcpy(d->queries[d->count], query, len);
    d->lens[d->count] = len;
    d->replies[d->count++] = reply;
    uv_timer_start(&d->timer, deferred_on_timer, 20, 0);
}

static void harness_open_deferred(struct harness *h, struct deferred_ctx *d)
{
    char err[256] = "";
    struct listener_options options = default_options();
    struct addr addr = loopback_addr(h->family, 0);
    uv_timer_init(&h->loop, &d->timer);
    d->timer.data = d;
    h->extra = (uv_handle_t *)&d->timer;
    assert_int_equal(listener_open_deferred(&h->loop, &addr, &options, deferred_query, d,
                                            &h->listeners[0], err, sizeof(err)),
                     0);
    h->port = listener_port(h->listeners[0]);
}

static void test_listener_deferred_udp_answer_is_sent_later(void **state)
{
    struct harness h;
    struct deferred_ctx d = {0};
    harness_init(&h);
    harness_open_deferred(&h, &d);
    struct udp_result *r = calloc(1, sizeof(*r));
    harness_run(&h, client_udp_one_query, r);
    assert_int_equal(r->got, 40);
    assert_int_equal(msg_id(r->answer), 0x1234);
    assert_true(r->answer[2] & 0x80);
    assert_int_equal(d.answered, 1);
    assert_int_equal(h.stats[0].udp_sent, 1);
    free(r);
}

/* Answers given inside the callback join the batch's sendmmsg; every query is answered. */
static void test_listener_deferred_immediate_answers_join_the_batch(void **state)
{
    struct harness h;
    struct deferred_ctx d = {.immediate = true};
    harness_init(&h);
    harness_open_deferred(&h, &d);
    struct udp_result *r = calloc(1, sizeof(*r));
    harness_run(&h, client_udp_one_query, r);
    assert_int_equal(r->got, 40);
    assert_int_equal(msg_id(r->answer), 0x1234);
    assert_true(r->answer[2] & 0x80);
    assert_int_equal(d.answered, 1);
    assert_int_equal(h.stats[0].udp_sent, 1);
    free(r);
}

static void test_listener_deferred_tcp_answers_out_of_order(void **state)
{
    struct harness h;
    struct deferred_ctx d = {0};
    harness_init(&h);
    harness_open_deferred(&h, &d);
    struct tcp_result r = {.count = 3};
    harness_run(&h, client_tcp_pipelined, &r);
    assert_true(d.tcp_seen);
    assert_int_equal(d.answered, 3);
    /* all three answered, newest first */
    assert_int_equal(r.ids[0], 102);
    assert_int_equal(r.ids[1], 101);
    assert_int_equal(r.ids[2], 100);
}

/* The listener closes while replies are still held: they must stay valid and release cleanly
 * (ASan checks for use-after-free and leaks). */
static void test_listener_deferred_reply_outlives_listener(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct deferred_ctx d = {0};
    char err[256] = "";
    struct listener_options options = default_options();
    struct addr addr = loopback_addr(AF_INET, 0);
    struct listener *listener = NULL;
    assert_int_equal(listener_open_deferred(&loop, &addr, &options, deferred_query, &d, &listener,
                                            err, sizeof(err)),
                     0);
    uv_timer_init(&loop, &d.timer);
    d.timer.data = &d;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(listener_port(listener))};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uint8_t query[40];
    make_query(query, sizeof(query), 7);
    assert_int_equal(sendto(fd, query, sizeof(query), 0, (struct sockaddr *)&to, sizeof(to)), 40);
    for (int i = 0; i < 100 && d.count == 0; i++)
        uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
    assert_int_equal(d.count, 1);
    uv_timer_stop(&d.timer);
    listener_close(listener);
    uv_run(&loop, UV_RUN_NOWAIT);
    listener_reply_send(d.replies[0], d.queries[0], d.lens[0]); /* dropped, then freed */
    uv_close((uv_handle_t *)&d.timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listener_deferred_udp_answer_is_sent_later),
        cmocka_unit_test(test_listener_deferred_immediate_answers_join_the_batch),
        cmocka_unit_test(test_listener_deferred_tcp_answers_out_of_order),
        cmocka_unit_test(test_listener_deferred_reply_outlives_listener),
        cmocka_unit_test(test_listener_udp_answers_query),
        cmocka_unit_test(test_listener_udp_sends_nothing_when_handler_returns_zero),
        cmocka_unit_test(test_listener_udp_sends_large_answer),
        cmocka_unit_test(test_listener_udp_drops_query_larger_than_receive_buffer),
        cmocka_unit_test(test_listener_udp_answers_burst_in_batches),
        cmocka_unit_test(test_listener_two_listeners_share_port),
        cmocka_unit_test(test_listener_open_reports_port_in_use),
        cmocka_unit_test(test_listener_open_rejects_no_protocol),
        cmocka_unit_test(test_listener_tcp_answers_query),
        cmocka_unit_test(test_listener_tcp_answers_pipelined_queries_in_order),
        cmocka_unit_test(test_listener_tcp_pipeline_limit_pauses_without_losing_queries),
        cmocka_unit_test(test_listener_tcp_reassembles_split_frame),
        cmocka_unit_test(test_listener_tcp_handles_large_query_and_answer),
        cmocka_unit_test(test_listener_tcp_idle_timeout_closes_connection),
        cmocka_unit_test(test_listener_tcp_refuses_connection_over_limit),
        cmocka_unit_test(test_listener_tcp_zero_length_frame_closes_connection),
        cmocka_unit_test(test_listener_tcp_answers_after_client_half_close),
        cmocka_unit_test(test_listener_close_closes_open_connections),
        cmocka_unit_test(test_listener_serves_ipv6_loopback),
        cmocka_unit_test(test_listener_wildcard_udp_replies_from_query_destination),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
