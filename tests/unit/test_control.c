/* Tests for common/control.c: the server on a real libuv loop, control_client_call in a second
 * thread; assertions run on the main thread after the loop ends. */
#include <errno.h>
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
#include <unistd.h>

#include <cmocka.h>
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

struct call {
    const char *line;
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
        c->rc =
            control_client_call(h->path, c->line, c->timeout_ms ? c->timeout_ms : CALL_TIMEOUT_MS,
                                &c->reply, c->err, sizeof(c->err));
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
