/* Unit tests for common/daemon.c: SIGHUP reaches the reload callback, "stop" over the control
 * socket and SIGTERM end the loop, commands reach the owner, the pid file comes and goes; the
 * server.user form, the root refusal and the privilege drop (in a child process). */
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

static void test_daemon_user_check_accepts_user_and_user_group_only(void **state)
{
    char err[256];
    assert_int_equal(daemon_user_check("nobody", err, sizeof err), 0);
    assert_int_equal(daemon_user_check("ballast:ballast", err, sizeof err), 0);
    assert_int_equal(daemon_user_check("svc.dns_1", err, sizeof err), 0);
    static const char *const bad[] = {"",         ":",   "nobody:",   ":nogroup", "a:b:c",
                                      "bad name", "-rf", "tab\tname", "nobody:-g"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (daemon_user_check(bad[i], err, sizeof err) != BALLAST_EINVAL)
            fail_msg("'%s' accepted", bad[i]);
        assert_non_null(strstr(err, "expected USER or USER:GROUP"));
    }
    char long_name[DAEMON_NAME_MAX + 1];
    memset(long_name, 'a', DAEMON_NAME_MAX);
    long_name[DAEMON_NAME_MAX] = '\0';
    assert_int_equal(daemon_user_check(long_name, err, sizeof err), BALLAST_EINVAL);
    long_name[DAEMON_NAME_MAX - 1] = '\0'; /* 63 characters: the longest allowed */
    assert_int_equal(daemon_user_check(long_name, err, sizeof err), 0);
}

static void test_daemon_allow_root_env_needs_exactly_one(void **state)
{
    const char *saved = getenv(DAEMON_ALLOW_ROOT_ENV);
    char *copy = saved ? strdup(saved) : NULL;
    setenv(DAEMON_ALLOW_ROOT_ENV, "1", 1);
    assert_true(daemon_allow_root_from_env());
    setenv(DAEMON_ALLOW_ROOT_ENV, "yes", 1);
    assert_false(daemon_allow_root_from_env());
    unsetenv(DAEMON_ALLOW_ROOT_ENV);
    assert_false(daemon_allow_root_from_env());
    if (copy)
        setenv(DAEMON_ALLOW_ROOT_ENV, copy, 1);
    free(copy);
}

static void test_daemon_prepare_refuses_root_without_user_unless_allowed(void **state)
{
    struct daemon_identity id;
    char err[256] = "";
    if (geteuid() != 0) {
        /* not root: nothing to refuse and nothing to drop */
        assert_int_equal(daemon_privileges_prepare(NULL, false, &id, err, sizeof err), 0);
        assert_false(id.drop);
        skip();
    }
    assert_int_equal(daemon_privileges_prepare(NULL, false, &id, err, sizeof err), BALLAST_EINVAL);
    assert_string_equal(err, "running as root; set server.user or pass --allow-root");
    assert_int_equal(daemon_privileges_prepare("", false, &id, err, sizeof err), BALLAST_EINVAL);
    assert_int_equal(daemon_privileges_prepare(NULL, true, &id, err, sizeof err), 0);
    assert_false(id.drop);
}

static void test_daemon_prepare_names_unknown_user_group_and_refuses_uid_0(void **state)
{
    struct daemon_identity id;
    char err[256] = "";
    assert_int_equal(daemon_privileges_prepare("ballast-no-such-user", true, &id, err, sizeof err),
                     BALLAST_EINVAL);
    assert_string_equal(err, "user 'ballast-no-such-user' does not exist (server.user / --user)");
    if (getpwnam("nobody") == NULL)
        skip();
    assert_int_equal(
        daemon_privileges_prepare("nobody:ballast-no-such-group", true, &id, err, sizeof err),
        BALLAST_EINVAL);
    assert_non_null(strstr(err, "group 'ballast-no-such-group' does not exist"));
    assert_int_equal(daemon_privileges_prepare("root", true, &id, err, sizeof err), BALLAST_EINVAL);
    assert_non_null(strstr(err, "user 'root' has uid 0"));
}

static void test_daemon_prepare_looks_up_the_user_and_its_group(void **state)
{
    struct passwd *pw = getpwnam("nobody");
    if (pw == NULL)
        skip();
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    struct daemon_identity id;
    char err[256] = "";
    assert_int_equal(daemon_privileges_prepare("nobody", false, &id, err, sizeof err), 0);
    assert_string_equal(id.user, "nobody");
    assert_int_equal(id.uid, uid);
    assert_int_equal(id.gid, gid);
    assert_true(id.supplementary);
    assert_true(id.group[0] != '\0');
    /* only root switches users; anyone else keeps running as itself (with a warning) */
    assert_int_equal(id.drop, geteuid() == 0);
}

/* In a child, so that the test process keeps its ids: drop to nobody and try to get root back. */
static void test_daemon_drop_privileges_cannot_regain_root(void **state)
{
    if (geteuid() != 0 || getpwnam("nobody") == NULL)
        skip();
    struct daemon_identity id;
    char err[256] = "";
    assert_int_equal(daemon_privileges_prepare("nobody", false, &id, err, sizeof err), 0);
    assert_true(id.drop);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int code = 0;
        if (daemon_drop_privileges(&id, NULL, err, sizeof err) != 0)
            code = 10;
        else if (getuid() != id.uid || geteuid() != id.uid || getgid() != id.gid)
            code = 11;
        else if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0)
            code = 12;
        gid_t groups[64];
        int count = code ? 0 : getgroups(64, groups);
        for (int i = 0; i < count; i++)
            if (groups[i] == 0)
                code = 13; /* root's group kept */
        _exit(code);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* nothing to do without a drop planned */
    struct daemon_identity keep = {0};
    assert_int_equal(daemon_drop_privileges(&keep, NULL, err, sizeof err), 0);
    assert_int_equal(geteuid(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_daemon_control_commands_and_stop),
        cmocka_unit_test(test_daemon_sighup_reloads_and_sigterm_stops),
        cmocka_unit_test(test_daemon_join_lists_and_cuts),
        cmocka_unit_test(test_daemon_user_check_accepts_user_and_user_group_only),
        cmocka_unit_test(test_daemon_allow_root_env_needs_exactly_one),
        cmocka_unit_test(test_daemon_prepare_refuses_root_without_user_unless_allowed),
        cmocka_unit_test(test_daemon_prepare_names_unknown_user_group_and_refuses_uid_0),
        cmocka_unit_test(test_daemon_prepare_looks_up_the_user_and_its_group),
        cmocka_unit_test(test_daemon_drop_privileges_cannot_regain_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
