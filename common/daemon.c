/* The daemons' main-loop chores: signals, control socket, pid file and a clean stop; and the
 * start-up privilege drop (server.user / --user, the root refusal). */
#include "daemon.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
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
    struct control_server *control_tcp;
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

int daemon_open_control_tcp(struct daemon *daemon, const struct control_tcp_config *tcp,
                            char *err_text, size_t err_len)
{
    if (!tcp->enabled || daemon->control_tcp != NULL)
        return BALLAST_OK;
    int rc = control_server_open_tcp(daemon->loop, &tcp->addr, tcp->key, daemon_on_command, daemon,
                                     &daemon->control_tcp, err_text, err_len);
    if (rc == 0) {
        char where[64]; /* "[v6 address]@port" */
        addr_format((const struct sockaddr *)&tcp->addr.ss, where, sizeof where);
        log_info("control_tcp", "listen=%s key_file=%s", where, tcp->key_file);
    }
    return rc;
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
    if (daemon->control_tcp)
        control_server_close(daemon->control_tcp);
    uv_walk(loop, daemon_close_walk, NULL); /* signals, timer and anything the owner left */
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    if (daemon->pid_file)
        unlink(daemon->pid_file);
    free(daemon->pid_file);
    free(daemon);
}

/* --- privileges ------------------------------------------------------------------------------ */

#define DAEMON_LOOKUP_BUFFER 16384 /* getpwnam_r/getgrnam_r scratch (large group lists) */
#define DAEMON_ROOT_REFUSAL "running as root; set server.user or pass --allow-root"

/* One name of a spec: not empty, shorter than DAEMON_NAME_MAX, no ':', blank or control
 * character, not starting with '-' (it would read as an option to tools such as chown). */
static bool daemon_name_ok(const char *name, size_t len)
{
    if (len == 0 || len >= DAEMON_NAME_MAX || name[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c == 0x7f || c == ':')
            return false;
    }
    return true;
}

int daemon_user_check(const char *spec, char *err_text, size_t err_len)
{
    const char *colon = strchr(spec, ':');
    size_t user_len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (!daemon_name_ok(spec, user_len) ||
        (colon && !daemon_name_ok(colon + 1, strlen(colon + 1)))) {
        ballast_set_error(err_text, err_len,
                          "user: expected USER or USER:GROUP (names of 1 to %d characters, no "
                          "blanks, not starting with '-'), got '%s'",
                          DAEMON_NAME_MAX - 1, spec);
        return BALLAST_EINVAL;
    }
    return BALLAST_OK;
}

bool daemon_allow_root_from_env(void)
{
    const char *value = getenv(DAEMON_ALLOW_ROOT_ENV);
    return value != NULL && strcmp(value, "1") == 0;
}

/* Look up out->user (and out->group when set) into out's ids. */
static int daemon_lookup_identity(struct daemon_identity *out, char *err_text, size_t err_len)
{
    char *buffer = malloc(DAEMON_LOOKUP_BUFFER);
    if (!buffer) {
        ballast_set_error(err_text, err_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    struct passwd pw, *pw_found = NULL;
    int rc = getpwnam_r(out->user, &pw, buffer, DAEMON_LOOKUP_BUFFER, &pw_found);
    if (pw_found == NULL) {
        if (rc == 0 || rc == ENOENT || rc == ESRCH)
            ballast_set_error(err_text, err_len, "user '%s' does not exist (server.user / --user)",
                              out->user);
        else
            ballast_set_error(err_text, err_len, "cannot look up user '%s': %s", out->user,
                              strerror(rc));
        free(buffer);
        return BALLAST_EINVAL;
    }
    out->uid = pw.pw_uid;
    out->gid = pw.pw_gid;
    if (out->group[0] == '\0') {
        struct group gr, *gr_found = NULL;
        getgrgid_r(out->gid, &gr, buffer, DAEMON_LOOKUP_BUFFER, &gr_found);
        if (gr_found)
            snprintf(out->group, sizeof out->group, "%s", gr.gr_name);
        else
            snprintf(out->group, sizeof out->group, "%lu", (unsigned long)out->gid);
        free(buffer);
        return BALLAST_OK;
    }
    struct group gr, *gr_found = NULL;
    rc = getgrnam_r(out->group, &gr, buffer, DAEMON_LOOKUP_BUFFER, &gr_found);
    if (gr_found == NULL) {
        if (rc == 0 || rc == ENOENT || rc == ESRCH)
            ballast_set_error(err_text, err_len,
                              "group '%s' does not exist (server.user / --user '%s:%s')",
                              out->group, out->user, out->group);
        else
            ballast_set_error(err_text, err_len, "cannot look up group '%s': %s", out->group,
                              strerror(rc));
        free(buffer);
        return BALLAST_EINVAL;
    }
    out->gid = gr.gr_gid;
    free(buffer);
    return BALLAST_OK;
}

int daemon_privileges_prepare(const char *spec, bool allow_root, struct daemon_identity *out,
                              char *err_text, size_t err_len)
{
    memset(out, 0, sizeof *out);
    bool root = geteuid() == 0;
    if (spec == NULL || spec[0] == '\0') {
        if (!root)
            return BALLAST_OK;
        if (!allow_root) {
            ballast_set_error(err_text, err_len, "%s", DAEMON_ROOT_REFUSAL);
            return BALLAST_EINVAL;
        }
        log_warn("privileges",
                 "action=kept user=root reason=\"running as root: allowed by "
                 "--allow-root or %s=1\"",
                 DAEMON_ALLOW_ROOT_ENV);
        return BALLAST_OK;
    }
    int rc = daemon_user_check(spec, err_text, err_len);
    if (rc != 0)
        return rc;
    const char *colon = strchr(spec, ':');
    size_t user_len = colon ? (size_t)(colon - spec) : strlen(spec);
    snprintf(out->user, sizeof out->user, "%.*s", (int)user_len, spec);
    if (colon)
        snprintf(out->group, sizeof out->group, "%s", colon + 1);
    out->supplementary = colon == NULL;
    rc = daemon_lookup_identity(out, err_text, err_len);
    if (rc != 0)
        return rc;
    if (out->uid == 0) {
        ballast_set_error(err_text, err_len,
                          "user '%s' has uid 0: name an unprivileged user (or leave server.user "
                          "out and pass --allow-root)",
                          out->user);
        return BALLAST_EINVAL;
    }
    if (!root) {
        /* Only root can switch users; like Unbound, carry on as who we are. */
        if (out->uid != geteuid())
            log_warn("privileges",
                     "action=kept user=%s uid=%lu reason=\"not running as root: cannot switch "
                     "to user %s; staying uid %lu\"",
                     out->user, (unsigned long)geteuid(), out->user, (unsigned long)geteuid());
        return BALLAST_OK;
    }
    out->drop = true;
    return BALLAST_OK;
}

/* uid 0 must be out of reach: both the real and the saved ids were changed by setuid() as root. */
static bool daemon_root_regainable(void)
{
    return setuid(0) == 0 || seteuid(0) == 0;
}

int daemon_drop_privileges(const struct daemon_identity *id, const char *control_path,
                           char *err_text, size_t err_len)
{
    if (!id->drop)
        return BALLAST_OK;
    /* The socket is 0600: owned by the user, the daemon's own account can use `ballast` too;
     * root always can. */
    if (control_path && chown(control_path, id->uid, id->gid) != 0)
        log_warn("privileges", "file=%s reason=\"cannot chown the control socket to %s: %s\"",
                 control_path, id->user, strerror(errno));
    /* Groups first: setgid and setgroups need root, which setuid gives up. */
    const char *step = NULL;
    if (id->supplementary ? initgroups(id->user, id->gid) != 0 : setgroups(1, &id->gid) != 0)
        step = id->supplementary ? "initgroups" : "setgroups";
    else if (setgid(id->gid) != 0)
        step = "setgid";
    else if (setuid(id->uid) != 0)
        step = "setuid";
    if (step) {
        ballast_set_error(err_text, err_len, "cannot drop privileges to %s:%s: %s: %s", id->user,
                          id->group, step, strerror(errno));
        return BALLAST_ESYS;
    }
    if (getuid() != id->uid || geteuid() != id->uid || getgid() != id->gid ||
        getegid() != id->gid || daemon_root_regainable()) {
        ballast_set_error(err_text, err_len,
                          "privileges of %s:%s not fully dropped: uid 0 could be regained",
                          id->user, id->group);
        return BALLAST_ESYS;
    }
    log_info("privileges", "action=dropped user=%s uid=%lu group=%s gid=%lu", id->user,
             (unsigned long)id->uid, id->group, (unsigned long)id->gid);
    return BALLAST_OK;
}

bool daemon_check_access(const char *what, const char *path, bool writable)
{
    if (path == NULL)
        return true;
    char dir[4096];
    const char *target = path;
    if (writable) {
        const char *slash = strrchr(path, '/');
        if (slash == NULL)
            snprintf(dir, sizeof dir, ".");
        else if (slash == path)
            snprintf(dir, sizeof dir, "/");
        else
            snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        target = dir;
    }
    /* access() checks the real ids, which are the dropped ones after setuid() as root. */
    if (access(target, writable ? W_OK | X_OK : R_OK) == 0)
        return true;
    int saved = errno;
    log_warn("privileges",
             "file=%s uid=%lu reason=\"%s: %s is not %s by this user (%s); %s will fail\"", target,
             (unsigned long)getuid(), what, target, writable ? "writable" : "readable",
             strerror(saved), writable ? "writing it" : "reloading it");
    return false;
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
