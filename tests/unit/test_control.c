/* Tests for common/control.c: the server (Unix and TCP) on a real libuv loop, the clients in a
 * second thread; assertions run on the main thread after the loop ends. Also the key files. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <uv.h>

#include "control.h"
#include "errors.h"

#define CALL_TIMEOUT_MS 2000

/* ---- the command handler ---- */

struct handler_ctx {
    int calls;
    int argc;
    char argv[4][64];
};

/* "echo A B": ok with the words; "fail": error with a reason; "big N": N bytes of text. */
static int handle_command(void *ctx, int argc, char **argv, struct control_reply *reply)
{
    struct handler_ctx *handler = ctx;
    handler->calls++;
    handler->argc = argc;
    for (int i = 0; i < argc && i < 4; i++)
        snprintf(handler->argv[i], sizeof(handler->argv[i]), "%s", argv[i]);
    if (strcmp(argv[0], "echo") == 0) {
        control_reply_printf(reply, "argc=%d\n", argc);
        for (int i = 1; i < argc; i++)
            control_reply_printf(reply, "%s\n", argv[i]);
        return 0;
    }
    if (strcmp(argv[0], "fail") == 0) {
        control_reply_printf(reply, "reload refused: %s\n", "zone example.com: too many records");
        return BALLAST_ELIMIT;
    }
    if (strcmp(argv[0], "big") == 0 && argc == 2) {
        long n = strtol(argv[1], NULL, 10);
        for (long i = 0; i < n / 10; i++)
            control_reply_printf(reply, "%09ld\n", i);
        return 0;
    }
    control_reply_printf(reply, "unknown command: %s\n", argv[0]);
    return BALLAST_EINVAL;
}

/* ---- loop harness ---- */

#define MAX_CALLS 4

struct harness;

struct call {
    const char *line;
    /* TCP: instead of control_client_call_tcp, talk to the server by hand (sets rc and reply). */
    void (*raw)(struct harness *h, struct call *c);
    unsigned timeout_ms;
    int rc;
    char *reply;
    char err[256];
};

struct harness {
    uv_loop_t loop;
    uv_async_t done;
    uv_timer_t guard;
    uv_thread_t thread;
    struct control_server *server;
    char path[108];
    bool tcp;
    struct addr addr;                            /* TCP: where the server listens */
    unsigned char key[CONTROL_KEY_BYTES];        /* TCP: the server's key */
    unsigned char client_key[CONTROL_KEY_BYTES]; /* TCP: the key the client uses */
    struct call calls[MAX_CALLS];
    int call_count;
    bool timed_out;
};

static void harness_shutdown(struct harness *h)
{
    control_server_close(h->server);
    h->server = NULL;
    uv_close((uv_handle_t *)&h->done, NULL);
    uv_close((uv_handle_t *)&h->guard, NULL);
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
    for (int i = 0; i < h->call_count; i++) {
        struct call *c = &h->calls[i];
        unsigned timeout_ms = c->timeout_ms ? c->timeout_ms : CALL_TIMEOUT_MS;
        if (c->raw != NULL)
            c->raw(h, c);
        else if (h->tcp)
            c->rc = control_client_call_tcp(&h->addr, h->client_key, c->line, timeout_ms, &c->reply,
                                            c->err, sizeof(c->err));
        else
            c->rc = control_client_call(h->path, c->line, timeout_ms, &c->reply, c->err,
                                        sizeof(c->err));
    }
    uv_async_send(&h->done);
}

static void harness_path(char *path, size_t len, const char *name)
{
    snprintf(path, len, "/tmp/ballast-test-control-%ld-%s.sock", (long)getpid(), name);
}

static void harness_init(struct harness *h, const char *name)
{
    memset(h, 0, sizeof(*h));
    assert_int_equal(uv_loop_init(&h->loop), 0);
    harness_path(h->path, sizeof(h->path), name);
}

static void harness_open(struct harness *h, struct handler_ctx *handler)
{
    char err[256] = "";
    int rc = control_server_open(&h->loop, h->path, handle_command, handler, &h->server, err,
                                 sizeof(err));
    if (rc != 0)
        fail_msg("control_server_open: %s", err);
}

/* A free loopback port: bind port 0, note the port, close (the test binds it right after). */
static uint16_t free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

/* TCP server on 127.0.0.1 with a random key; the client uses the same key unless changed. */
static void harness_open_tcp(struct harness *h, struct handler_ctx *handler)
{
    char text[64], err[256] = "";
    h->tcp = true;
    snprintf(text, sizeof text, "127.0.0.1@%u", (unsigned)free_tcp_port());
    assert_int_equal(addr_parse(text, 0, &h->addr), 0);
    randombytes_buf(h->key, sizeof h->key);
    memcpy(h->client_key, h->key, sizeof h->key);
    int rc = control_server_open_tcp(&h->loop, &h->addr, h->key, handle_command, handler,
                                     &h->server, err, sizeof(err));
    if (rc != 0)
        fail_msg("control_server_open_tcp: %s", err);
}

static void harness_add_call(struct harness *h, const char *line)
{
    h->calls[h->call_count++].line = line;
}

/* Run the loop while the client thread makes its calls, then close the server. */
static void harness_run(struct harness *h)
{
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

static void harness_free(struct harness *h)
{
    for (int i = 0; i < h->call_count; i++)
        free(h->calls[i].reply);
}

/* ---- raw TCP client helpers (run in the client thread) ---- */

static int raw_connect(const struct harness *h)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (const struct sockaddr *)&h->addr.ss, h->addr.len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Read the greeting and decode its nonce; false when the server sent none. */
static bool raw_read_nonce(int fd, unsigned char nonce[CONTROL_NONCE_BYTES])
{
    char line[256];
    size_t len = 0;
    while (len < sizeof line - 1 && recv(fd, line + len, 1, 0) == 1 && line[len] != '\n')
        len++;
    line[len] = '\0';
    size_t prefix = strlen(CONTROL_TCP_GREETING), bin_len = 0;
    return len == prefix + 2 * CONTROL_NONCE_BYTES &&
           strncmp(line, CONTROL_TCP_GREETING, prefix) == 0 &&
           sodium_hex2bin(nonce, CONTROL_NONCE_BYTES, line + prefix, 2 * CONTROL_NONCE_BYTES, NULL,
                          &bin_len, NULL) == 0 &&
           bin_len == CONTROL_NONCE_BYTES;
}

/* "MAC COMMAND\n" for command under key and nonce, as the protocol defines it. */
static void raw_signed_line(const unsigned char *key, const unsigned char *nonce,
                            const char *command, char *out, size_t out_len)
{
    size_t len = strlen(command);
    unsigned char *message = malloc(CONTROL_NONCE_BYTES + len);
    assert_non_null(message);
    memcpy(message, nonce, CONTROL_NONCE_BYTES);
    memcpy(message + CONTROL_NONCE_BYTES, command, len);
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, message, CONTROL_NONCE_BYTES + len, key);
    free(message);
    char hex[2 * sizeof mac + 1];
    sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
    snprintf(out, out_len, "%s %s\n", hex, command);
}

/* Send text and read until the server closes; the reply (malloc'd) goes to c->reply. */
static void raw_exchange(int fd, const char *text, struct call *c)
{
    send(fd, text, strlen(text), MSG_NOSIGNAL);
    size_t cap = 4096, len = 0;
    c->reply = malloc(cap);
    ssize_t n;
    while (len + 1 < cap && (n = recv(fd, c->reply + len, cap - 1 - len, 0)) > 0)
        len += (size_t)n;
    c->reply[len] = '\0';
    c->rc = 0;
}

/* c->line sent as it is, without a MAC. */
static void raw_send_unsigned(struct harness *h, struct call *c)
{
    unsigned char nonce[CONTROL_NONCE_BYTES];
    int fd = raw_connect(h);
    c->rc = BALLAST_EIO;
    if (fd < 0)
        return;
    if (raw_read_nonce(fd, nonce))
        raw_exchange(fd, c->line, c);
    close(fd);
}

/* A line correctly signed for one connection's nonce is sent on a second connection first (a
 * replay: refused, reply in c->reply), then on its own (answered, reply in c->err). */
static void raw_replay_other_nonce(struct harness *h, struct call *c)
{
    unsigned char nonce_a[CONTROL_NONCE_BYTES], nonce_b[CONTROL_NONCE_BYTES];
    char line[256];
    c->rc = BALLAST_EIO;
    int a = raw_connect(h), b = raw_connect(h);
    if (a >= 0 && b >= 0 && raw_read_nonce(a, nonce_a) && raw_read_nonce(b, nonce_b)) {
        raw_signed_line(h->client_key, nonce_a, c->line, line, sizeof line);
        raw_exchange(b, line, c);
        struct call own = {0};
        raw_exchange(a, line, &own);
        snprintf(c->err, sizeof c->err, "%s", own.reply);
        free(own.reply);
    }
    if (a >= 0)
        close(a);
    if (b >= 0)
        close(b);
}

/* Connect and send nothing; rc is the seconds until the server closed (-1: it never did). */
static void raw_stay_silent(struct harness *h, struct call *c)
{
    unsigned char nonce[CONTROL_NONCE_BYTES];
    int fd = raw_connect(h);
    c->rc = -1;
    if (fd < 0 || !raw_read_nonce(fd, nonce)) {
        if (fd >= 0)
            close(fd);
        return;
    }
    time_t start = time(NULL);
    char byte;
    if (recv(fd, &byte, 1, 0) == 0)
        c->rc = (int)(time(NULL) - start);
    close(fd);
}

/* Hold CONTROL_TCP_CONNS_MAX connections (each greeted), then open one more: rc is 1 when the
 * extra one was closed without a greeting, and the held ones still answer (reply of the last). */
static void raw_over_connection_limit(struct harness *h, struct call *c)
{
    int fds[CONTROL_TCP_CONNS_MAX];
    unsigned char nonces[CONTROL_TCP_CONNS_MAX][CONTROL_NONCE_BYTES], nonce[CONTROL_NONCE_BYTES];
    int greeted = 0;
    for (int i = 0; i < CONTROL_TCP_CONNS_MAX; i++) {
        fds[i] = raw_connect(h);
        greeted += fds[i] >= 0 && raw_read_nonce(fds[i], nonces[i]);
    }
    int extra = raw_connect(h);
    c->rc = greeted == CONTROL_TCP_CONNS_MAX && extra >= 0 && !raw_read_nonce(extra, nonce);
    if (extra >= 0)
        close(extra);
    char line[256];
    raw_signed_line(h->client_key, nonces[0], "echo still", line, sizeof line);
    struct call held = {0};
    raw_exchange(fds[0], line, &held);
    c->reply = held.reply;
    for (int i = 0; i < CONTROL_TCP_CONNS_MAX; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* ---- tests ---- */

static void test_control_dispatches_command_with_args(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    harness_init(&h, "dispatch");
    harness_open(&h, &handler);
    harness_add_call(&h, "echo  alpha\tbeta");
    harness_run(&h);
    assert_int_equal(h.calls[0].rc, 0);
    assert_string_equal(h.calls[0].reply, "argc=3\nalpha\nbeta\n");
    assert_int_equal(handler.calls, 1);
    assert_int_equal(handler.argc, 3);
    assert_string_equal(handler.argv[0], "echo");
    assert_string_equal(handler.argv[2], "beta");
    harness_free(&h);
}

static void test_control_error_reply_returns_einval_with_text(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    harness_init(&h, "error");
    harness_open(&h, &handler);
    harness_add_call(&h, "fail");
    harness_add_call(&h, "frobnicate now");
    harness_run(&h);
    assert_int_equal(h.calls[0].rc, BALLAST_EINVAL);
    assert_string_equal(h.calls[0].reply, "reload refused: zone example.com: too many records\n");
    assert_string_equal(h.calls[0].err, "reload refused: zone example.com: too many records");
    assert_int_equal(h.calls[1].rc, BALLAST_EINVAL);
    assert_string_equal(h.calls[1].reply, "unknown command: frobnicate\n");
    harness_free(&h);
}

static void test_control_rejects_oversized_empty_and_too_many_args(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    char *long_line = malloc(5001);
    assert_non_null(long_line);
    memset(long_line, 'x', 5000);
    long_line[5000] = '\0';
    char many[128] = "echo";
    for (int i = 0; i < 32; i++)
        strcat(many, " a");
    char *huge_line = malloc(1 << 20); /* more than the socket buffers hold */
    assert_non_null(huge_line);
    memset(huge_line, 'z', (1 << 20) - 1);
    huge_line[(1 << 20) - 1] = '\0';
    harness_init(&h, "limits");
    harness_open(&h, &handler);
    harness_add_call(&h, long_line);
    harness_add_call(&h, huge_line);
    harness_add_call(&h, "   ");
    harness_add_call(&h, many); /* 33 words */
    harness_run(&h);
    assert_int_equal(h.calls[0].rc, BALLAST_EINVAL);
    assert_non_null(strstr(h.calls[0].reply, "too long"));
    assert_int_equal(h.calls[1].rc, BALLAST_EINVAL);
    assert_non_null(strstr(h.calls[1].reply, "too long"));
    assert_int_equal(h.calls[2].rc, BALLAST_EINVAL);
    assert_non_null(strstr(h.calls[2].reply, "empty"));
    assert_int_equal(h.calls[3].rc, BALLAST_EINVAL);
    assert_non_null(strstr(h.calls[3].reply, "too many arguments"));
    assert_int_equal(handler.calls, 0);
    harness_free(&h);
    free(long_line);
    free(huge_line);
}

static void test_control_accepts_line_of_exactly_max_length(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    char *line = malloc(4097);
    assert_non_null(line);
    memcpy(line, "echo ", 5);
    memset(line + 5, 'y', 4091);
    line[4096] = '\0';
    harness_init(&h, "maxline");
    harness_open(&h, &handler);
    harness_add_call(&h, line);
    harness_run(&h);
    assert_int_equal(h.calls[0].rc, 0);
    assert_int_equal(handler.argc, 2);
    assert_int_equal(strlen(h.calls[0].reply), strlen("argc=2\n") + 4091 + 1);
    harness_free(&h);
    free(line);
}

static void test_control_reply_grows_for_long_answers(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    harness_init(&h, "big");
    harness_open(&h, &handler);
    harness_add_call(&h, "big 200000");
    harness_run(&h);
    assert_int_equal(h.calls[0].rc, 0);
    assert_int_equal(strlen(h.calls[0].reply), 200000);
    assert_memory_equal(h.calls[0].reply + 199990, "000019999\n", 10);
    harness_free(&h);
}

static void test_control_socket_mode_is_0600(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    harness_init(&h, "mode");
    harness_open(&h, &handler);
    struct stat st;
    assert_int_equal(stat(h.path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    harness_add_call(&h, "echo");
    harness_run(&h);
    assert_int_equal(h.calls[0].rc, 0);
    /* Closing the server removes the socket file. */
    assert_int_equal(stat(h.path, &st), -1);
    harness_free(&h);
}

static void test_control_client_without_daemon_returns_eio(void **state)
{
    char path[108];
    char err[256] = "";
    char *reply = (char *)path; /* must be reset to NULL */
    harness_path(path, sizeof(path), "missing");
    unlink(path);
    int rc = control_client_call(path, "status", 500, &reply, err, sizeof(err));
    assert_int_equal(rc, BALLAST_EIO);
    assert_null(reply);
    assert_non_null(strstr(err, "no daemon listening on "));
    assert_non_null(strstr(err, path));
}

/* Bind a Unix socket at path; listening or not, it is left for the caller to close. */
static int bind_unix(const char *path, bool listening)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
        return -1;
    if (listening && listen(fd, 4) != 0)
        return -1;
    return fd;
}

static void test_control_replaces_stale_socket_file(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    harness_init(&h, "stale");
    unlink(h.path);
    int fd = bind_unix(h.path, false);
    assert_true(fd >= 0);
    close(fd); /* the file stays, nobody listens: stale */
    harness_open(&h, &handler);
    harness_add_call(&h, "echo x");
    harness_run(&h);
    assert_int_equal(h.calls[0].rc, 0);
    assert_string_equal(h.calls[0].reply, "argc=2\nx\n");
    harness_free(&h);
}

static void test_control_refuses_to_replace_live_socket(void **state)
{
    char path[108];
    char err[256] = "";
    harness_path(path, sizeof(path), "live");
    unlink(path);
    int fd = bind_unix(path, true);
    assert_true(fd >= 0);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct control_server *server = NULL;
    struct handler_ctx handler = {0};
    int rc = control_server_open(&loop, path, handle_command, &handler, &server, err, sizeof(err));
    assert_int_equal(rc, BALLAST_EEXIST);
    assert_null(server);
    assert_non_null(strstr(err, "already listening"));
    struct stat st;
    assert_int_equal(stat(path, &st), 0); /* left alone */
    close(fd);
    unlink(path);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_control_client_times_out_on_silent_daemon(void **state)
{
    char path[108];
    char err[256] = "";
    char *reply = NULL;
    harness_path(path, sizeof(path), "silent");
    unlink(path);
    int fd = bind_unix(path, true); /* accepts into the backlog, never answers */
    assert_true(fd >= 0);
    int rc = control_client_call(path, "status", 200, &reply, err, sizeof(err));
    assert_int_equal(rc, BALLAST_EIO);
    assert_null(reply);
    assert_non_null(strstr(err, "timed out"));
    close(fd);
    unlink(path);
}

static void test_control_open_rejects_too_long_path(void **state)
{
    char path[200];
    memset(path, 'p', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct control_server *server = NULL;
    char err[512] = "";
    int rc = control_server_open(&loop, path, handle_command, NULL, &server, err, sizeof(err));
    assert_int_equal(rc, BALLAST_EINVAL);
    assert_non_null(strstr(err, "too long"));
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- TCP control ---- */

static void test_control_tcp_answers_command_signed_with_right_key(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    harness_init(&h, "tcp-ok");
    harness_open_tcp(&h, &handler);
    harness_add_call(&h, "echo alpha beta");
    harness_add_call(&h, "fail");
    harness_run(&h);
    assert_int_equal(h.calls[0].rc, 0);
    assert_string_equal(h.calls[0].reply, "argc=3\nalpha\nbeta\n");
    assert_int_equal(h.calls[1].rc, BALLAST_EINVAL);
    assert_string_equal(h.calls[1].reply, "reload refused: zone example.com: too many records\n");
    assert_int_equal(handler.calls, 2);
    harness_free(&h);
}

static void test_control_tcp_refuses_wrong_key_and_counts_it(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    uint64_t failures = control_auth_failures();
    harness_init(&h, "tcp-wrong");
    harness_open_tcp(&h, &handler);
    h.client_key[0] ^= 1;
    harness_add_call(&h, "echo secret");
    harness_run(&h);
    assert_int_equal(h.calls[0].rc, BALLAST_EINVAL);
    assert_string_equal(h.calls[0].err, "authentication failed");
    assert_string_equal(h.calls[0].reply, "authentication failed\n");
    assert_int_equal(handler.calls, 0);
    assert_int_equal(control_auth_failures(), failures + 1);
    harness_free(&h);
}

static void test_control_tcp_refuses_lines_without_mac(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    uint64_t failures = control_auth_failures();
    harness_init(&h, "tcp-nomac");
    harness_open_tcp(&h, &handler);
    harness_add_call(&h, "echo hello\n");
    h.calls[0].raw = raw_send_unsigned;
    /* 64 characters that are not hex, then a command: no MAC either. */
    harness_add_call(&h,
                     "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz echo x\n");
    h.calls[1].raw = raw_send_unsigned;
    harness_add_call(&h, "\n");
    h.calls[2].raw = raw_send_unsigned;
    harness_run(&h);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(h.calls[i].rc, 0);
        assert_string_equal(h.calls[i].reply, "error\nauthentication failed\n");
    }
    assert_int_equal(handler.calls, 0);
    assert_int_equal(control_auth_failures(), failures + 3);
    harness_free(&h);
}

static void test_control_tcp_refuses_mac_made_for_another_nonce(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    harness_init(&h, "tcp-replay");
    harness_open_tcp(&h, &handler);
    harness_add_call(&h, "echo replayed");
    h.calls[0].raw = raw_replay_other_nonce;
    harness_run(&h);
    assert_int_equal(h.calls[0].rc, 0);
    assert_string_equal(h.calls[0].reply, "error\nauthentication failed\n");
    /* The same line on the connection whose nonce it was signed for is answered. */
    assert_string_equal(h.calls[0].err, "ok\nargc=2\nreplayed\n");
    assert_int_equal(handler.calls, 1);
    harness_free(&h);
}

static void test_control_tcp_refuses_command_longer_than_unix_limit(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    char *too_long = malloc(4098), *just_fits = malloc(4097);
    assert_non_null(too_long);
    assert_non_null(just_fits);
    memset(too_long, 'x', 4097);
    too_long[4097] = '\0';
    memset(just_fits, 'y', 4096);
    just_fits[4096] = '\0';
    harness_init(&h, "tcp-long");
    harness_open_tcp(&h, &handler);
    harness_add_call(&h, too_long);
    harness_add_call(&h, just_fits);
    harness_run(&h);
    assert_int_equal(h.calls[0].rc, BALLAST_EINVAL);
    assert_non_null(strstr(h.calls[0].reply, "too long"));
    assert_int_equal(h.calls[1].rc, BALLAST_EINVAL);
    assert_non_null(strstr(h.calls[1].reply, "unknown command: yyyy"));
    assert_int_equal(handler.calls, 1); /* only the line that fits reached the handler */
    harness_free(&h);
    free(too_long);
    free(just_fits);
}

static void test_control_tcp_closes_silent_client_after_5s(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    harness_init(&h, "tcp-silent");
    harness_open_tcp(&h, &handler);
    harness_add_call(&h, "");
    h.calls[0].raw = raw_stay_silent;
    harness_run(&h);
    assert_in_range(h.calls[0].rc, CONTROL_TCP_IDLE_MS / 1000 - 1, CONTROL_TCP_IDLE_MS / 1000 + 1);
    assert_int_equal(handler.calls, 0);
    harness_free(&h);
}

static void test_control_tcp_closes_connections_over_the_limit(void **state)
{
    struct harness h;
    struct handler_ctx handler = {0};
    harness_init(&h, "tcp-many");
    harness_open_tcp(&h, &handler);
    harness_add_call(&h, "");
    h.calls[0].raw = raw_over_connection_limit;
    harness_run(&h);
    assert_int_equal(h.calls[0].rc, 1);
    assert_string_equal(h.calls[0].reply, "ok\nargc=2\nstill\n");
    harness_free(&h);
}

static void test_control_tcp_client_without_daemon_says_no_daemon(void **state)
{
    struct addr addr;
    char text[64], err[256] = "";
    char *reply = NULL;
    unsigned char key[CONTROL_KEY_BYTES] = {0};
    snprintf(text, sizeof text, "127.0.0.1@%u", (unsigned)free_tcp_port());
    assert_int_equal(addr_parse(text, 0, &addr), 0);
    int rc = control_client_call_tcp(&addr, key, "status", 1000, &reply, err, sizeof err);
    assert_int_equal(rc, BALLAST_EIO);
    assert_null(reply);
    assert_non_null(strstr(err, "no daemon listening on 127.0.0.1@"));
}

static void key_path(char *path, size_t len, const char *name)
{
    snprintf(path, len, "/tmp/ballast-test-control-%ld-%s.key", (long)getpid(), name);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static void test_control_keygen_writes_0600_and_refuses_to_overwrite(void **state)
{
    char path[128], err[512] = "";
    unsigned char first[CONTROL_KEY_BYTES], second[CONTROL_KEY_BYTES];
    key_path(path, sizeof path, "gen");
    unlink(path);
    assert_int_equal(control_key_generate(path, false, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 65); /* 64 hex characters and a newline */
    assert_int_equal(control_key_load(path, first, err, sizeof err), 0);
    assert_int_equal(control_key_generate(path, false, err, sizeof err), BALLAST_EEXIST);
    assert_non_null(strstr(err, "--force"));
    assert_int_equal(control_key_load(path, second, err, sizeof err), 0);
    assert_memory_equal(first, second, CONTROL_KEY_BYTES);
    assert_int_equal(control_key_generate(path, true, err, sizeof err), 0);
    assert_int_equal(control_key_load(path, second, err, sizeof err), 0);
    assert_memory_not_equal(first, second, CONTROL_KEY_BYTES);
    unlink(path);
}

static void test_control_key_load_refuses_malformed_and_missing_files(void **state)
{
    char path[128], err[512] = "";
    unsigned char key[CONTROL_KEY_BYTES];
    key_path(path, sizeof path, "bad");
    write_text(path, "0123456789abcdef\n", 0600); /* too short */
    assert_int_equal(control_key_load(path, key, err, sizeof err), BALLAST_EINVAL);
    assert_non_null(strstr(err, "64 hex characters"));
    char text[80];
    memset(text, 'g', 64); /* the right length, not hex */
    strcpy(text + 64, "\n");
    write_text(path, text, 0600);
    assert_int_equal(control_key_load(path, key, err, sizeof err), BALLAST_EINVAL);
    memset(text, 'a', 64);
    write_text(path, text, 0640); /* valid; readable by the group: a warning only */
    assert_int_equal(control_key_load(path, key, err, sizeof err), 0);
    assert_int_equal(key[0], 0xaa);
    unlink(path);
    assert_int_equal(control_key_load(path, key, err, sizeof err), BALLAST_EIO);
    assert_non_null(strstr(err, "cannot read key file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_control_dispatches_command_with_args),
        cmocka_unit_test(test_control_error_reply_returns_einval_with_text),
        cmocka_unit_test(test_control_rejects_oversized_empty_and_too_many_args),
        cmocka_unit_test(test_control_accepts_line_of_exactly_max_length),
        cmocka_unit_test(test_control_reply_grows_for_long_answers),
        cmocka_unit_test(test_control_socket_mode_is_0600),
        cmocka_unit_test(test_control_client_without_daemon_returns_eio),
        cmocka_unit_test(test_control_replaces_stale_socket_file),
        cmocka_unit_test(test_control_refuses_to_replace_live_socket),
        cmocka_unit_test(test_control_client_times_out_on_silent_daemon),
        cmocka_unit_test(test_control_open_rejects_too_long_path),
        cmocka_unit_test(test_control_tcp_answers_command_signed_with_right_key),
        cmocka_unit_test(test_control_tcp_refuses_wrong_key_and_counts_it),
        cmocka_unit_test(test_control_tcp_refuses_lines_without_mac),
        cmocka_unit_test(test_control_tcp_refuses_mac_made_for_another_nonce),
        cmocka_unit_test(test_control_tcp_refuses_command_longer_than_unix_limit),
        cmocka_unit_test(test_control_tcp_closes_silent_client_after_5s),
        cmocka_unit_test(test_control_tcp_closes_connections_over_the_limit),
        cmocka_unit_test(test_control_tcp_client_without_daemon_says_no_daemon),
        cmocka_unit_test(test_control_keygen_writes_0600_and_refuses_to_overwrite),
        cmocka_unit_test(test_control_key_load_refuses_malformed_and_missing_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
