/* The daemons' main-loop chores: signals, control socket, pid file and a clean stop. */
#include "daemon.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"

#define DAEMON_STOP_DELAY_MS 20 /* lets the control reply go out before the loop stops */

struct daemon {
    uv_loop_t *loop;
    struct daemon_options options;
    char *pid_file;
    uv_signal_t signals[3];
    uv_timer_t stop_timer;
    struct control_server *control;
};

static const int daemon_signals[3] = {SIGHUP, SIGTERM, SIGINT};

static void daemon_on_stop_timer(uv_timer_t *timer)
{
    struct daemon *daemon = timer->data;
    log_info("shutdown", "reason=requested");
    uv_stop(daemon->loop);
}

void daemon_request_stop(struct daemon *daemon)
{
    if (!uv_is_active((uv_handle_t *)&daemon->stop_timer))
        uv_timer_start(&daemon->stop_timer, daemon_on_stop_timer, DAEMON_STOP_DELAY_MS, 0);
}

static void daemon_on_signal(uv_signal_t *handle, int signum)
{
    struct daemon *daemon = handle->data;
    if (signum == SIGHUP) {
        log_info("signal", "signal=SIGHUP action=reload");
        if (daemon->options.on_reload)
            daemon->options.on_reload(daemon->options.ctx);
        return;
    }
    log_info("signal", "signal=%s action=shutdown", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    daemon_request_stop(daemon);
}

static int daemon_on_command(void *ctx, int argc, char **argv, struct control_reply *reply)
{
    struct daemon *daemon = ctx;
    if (strcmp(argv[0], "stop") == 0) {
        control_reply_printf(reply, "stopping\n");
        daemon_request_stop(daemon);
        return BALLAST_OK;
    }
    return daemon->options.on_command(daemon->options.ctx, argc, argv, reply);
}

static void daemon_write_pid_file(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        log_warn("pid_file", "file=%s reason=\"cannot write\"", path);
        return;
    }
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
}

int daemon_open(uv_loop_t *loop, const struct daemon_options *options, struct daemon **out,
                char *err_text, size_t err_len)
{
    struct daemon *daemon = calloc(1, sizeof *daemon);
    if (!daemon) {
        snprintf(err_text, err_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    daemon->loop = loop;
    daemon->options = *options;
    if (options->control_path) {
        int rc = control_server_open(loop, options->control_path, daemon_on_command, daemon,
                                     &daemon->control, err_text, err_len);
        if (rc != 0) {
            free(daemon);
            return rc;
        }
    }
    for (size_t i = 0; i < 3; i++) {
        uv_signal_init(loop, &daemon->signals[i]);
        daemon->signals[i].data = daemon;
        uv_signal_start(&daemon->signals[i], daemon_on_signal, daemon_signals[i]);
    }
    uv_timer_init(loop, &daemon->stop_timer);
    daemon->stop_timer.data = daemon;
    if (options->pid_file) {
        daemon->pid_file = strdup(options->pid_file);
        daemon_write_pid_file(options->pid_file);
    }
    *out = daemon;
    return BALLAST_OK;
}

static void daemon_close_walk(uv_handle_t *handle, void *arg)
{
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

void daemon_close(struct daemon *daemon)
{
    uv_loop_t *loop = daemon->loop;
    if (daemon->control)
        control_server_close(daemon->control);
    uv_walk(loop, daemon_close_walk, NULL); /* signals, timer and anything the owner left */
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    if (daemon->pid_file)
        unlink(daemon->pid_file);
    free(daemon->pid_file);
    free(daemon);
}

const char *daemon_join(char *const *texts, size_t count, char *buf, size_t len)
{
    size_t used = 0;
    if (len > 0)
        buf[0] = '\0';
    for (size_t i = 0; i < count && used < len; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? "," : "", texts[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}
