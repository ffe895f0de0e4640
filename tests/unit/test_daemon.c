/* Unit tests for common/daemon.c: SIGHUP reaches the reload callback, "stop" over the control
 * socket and SIGTERM end the loop, commands reach the owner, the pid file comes and goes. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "errors.h"

struct owner {
    int reloads;
    int commands;
    char socket_path[64];
    char pid_path[64];
    char reply[256];
    int client_rc;
};

static void owner_reload(void *ctx)
{
    ((struct owner *)ctx)->reloads++;
}

static int owner_command(void *ctx, int argc, char **argv, struct control_reply *reply)
{
    struct owner *o = ctx;
    o->commands++;
    control_reply_printf(reply, "hello %s\n", argc > 1 ? argv[1] : "");
    return BALLAST_OK;
}

static void client_thread(void *arg)
{
    struct owner *o = arg;
    char *text = NULL;
    char err[128];
    if (control_client_call(o->socket_path, "greet world", 2000, &text, err, sizeof err) == 0 &&
        text)
        snprintf(o->reply, sizeof o->reply, "%s", text);
    free(text);
    text = NULL;
    o->client_rc = control_client_call(o->socket_path, "stop", 2000, &text, err, sizeof err);
    free(text);
}

static void open_daemon(uv_loop_t *loop, struct owner *o, struct daemon **d)
{
    snprintf(o->socket_path, sizeof o->socket_path, "/tmp/ballast-test-daemon-%d.sock", getpid());
    snprintf(o->pid_path, sizeof o->pid_path, "/tmp/ballast-test-daemon-%d.pid", getpid());
    struct daemon_options options = {"test",        o->socket_path, o->pid_path,
                                     owner_command, owner_reload,   o};
    char err[256];
    assert_int_equal(uv_loop_init(loop), 0);
    assert_int_equal(daemon_open(loop, &options, d, err, sizeof err), 0);
    assert_int_equal(access(o->pid_path, F_OK), 0);
}

static void test_daemon_control_commands_and_stop(void **state)
{
    uv_loop_t loop;
    struct owner o = {0};
    struct daemon *d = NULL;
    open_daemon(&loop, &o, &d);
    uv_thread_t thread;
    assert_int_equal(uv_thread_create(&thread, client_thread, &o), 0);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns when "stop" arrives */
    uv_thread_join(&thread);
    assert_int_equal(o.commands, 1);
    assert_string_equal(o.reply, "hello world\n");
    assert_int_equal(o.client_rc, 0);
    daemon_close(d);
    assert_int_not_equal(access(o.pid_path, F_OK), 0);    /* pid file removed */
    assert_int_not_equal(access(o.socket_path, F_OK), 0); /* socket removed */
}

static void send_signals(uv_timer_t *timer)
{
    raise(SIGHUP);
    raise(SIGTERM);
    uv_close((uv_handle_t *)timer, NULL);
}

static void test_daemon_sighup_reloads_and_sigterm_stops(void **state)
{
    uv_loop_t loop;
    struct owner o = {0};
    struct daemon *d = NULL;
    open_daemon(&loop, &o, &d);
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    uv_timer_start(&timer, send_signals, 10, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(o.reloads, 1);
    daemon_close(d);
}

static void test_daemon_join_lists_and_cuts(void **state)
{
    char *texts[] = {"127.0.0.1@53", "::1@53", "10.0.0.1@5300"};
    char buf[64];
    assert_string_equal(daemon_join(texts, 3, buf, sizeof buf),
                        "127.0.0.1@53,::1@53,10.0.0.1@5300");
    assert_string_equal(daemon_join(texts, 0, buf, sizeof buf), "");
    char small[10];
    assert_string_equal(daemon_join(texts, 3, small, sizeof small), "127.0.0.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_daemon_control_commands_and_stop),
        cmocka_unit_test(test_daemon_sighup_reloads_and_sigterm_stops),
        cmocka_unit_test(test_daemon_join_lists_and_cuts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
