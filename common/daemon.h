/* The daemons' main-loop chores: SIGHUP (reload), SIGTERM/SIGINT (stop), the control socket, the
 * pid file, and a stop that lets the last control reply go out before the loop ends. */
#ifndef BALLAST_DAEMON_H
#define BALLAST_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "control.h"

struct daemon_options {
    const char *name;              /* for logs, e.g. "authd" */
    const char *control_path;      /* NULL: no control socket */
    const char *pid_file;          /* NULL: none */
    control_command_fn on_command; /* control commands other than "stop" */
    void (*on_reload)(void *ctx);  /* SIGHUP */
    void *ctx;
};

struct daemon;

/* Open the control socket (if any), start the signal handlers and write the pid file, on loop.
 * The "stop" control command and SIGTERM/SIGINT make uv_run(loop) return shortly after. */
int daemon_open(uv_loop_t *loop, const struct daemon_options *options, struct daemon **out,
                char *err_text, size_t err_len);
/* Right after daemon_open, before the privilege drop: open the TCP control listener of tcp
 * (nothing when !tcp->enabled; the key is copied). Its commands, "stop" included, run as over
 * the control socket; daemon_close closes it. */
int daemon_open_control_tcp(struct daemon *daemon, const struct control_tcp_config *tcp,
                            char *err_text, size_t err_len);
/* Make uv_run return after the current callbacks (and pending control replies) are done. */
void daemon_request_stop(struct daemon *daemon);
/* Close the control socket and signal handlers, remove the pid file, close every other handle
 * still open on the loop, run it until they are closed and close the loop. */
void daemon_close(struct daemon *daemon);

/* --- privileges (issue #7) ----------------------------------------------------------------
 * Start-up order in both daemons: parse the config, open logs, daemon_privileges_prepare() (the
 * user is looked up and root without a user is refused before anything is bound), bind every
 * listener, open the control socket and metrics listener, write the pid file, then
 * daemon_drop_privileges(). Like Unbound's and NSD's `username:` and Knot's `server.user`. */

/* Set to "1": like --allow-root (test harnesses, containers). */
#define DAEMON_ALLOW_ROOT_ENV "BALLAST_ALLOW_ROOT"
#define DAEMON_NAME_MAX 64 /* user and group names, with the NUL */

/* Who the daemon becomes after start-up; filled by daemon_privileges_prepare(). */
struct daemon_identity {
    bool drop;                   /* false: keep running as the current user */
    uid_t uid;                   /* when drop */
    gid_t gid;                   /* the group's, or the user's primary group */
    char user[DAEMON_NAME_MAX];  /* empty when no user is configured */
    char group[DAEMON_NAME_MAX]; /* as looked up (the user's primary group when not given) */
    bool supplementary;          /* no explicit group: initgroups() gives the user's groups */
};

/* Check the form of server.user / --user: "USER" or "USER:GROUP", each 1 to 63 characters, none
 * of them blank, ':' or control characters, not starting with '-'. Whether they exist is checked
 * by daemon_privileges_prepare(). Returns 0 or BALLAST_EINVAL with err_text filled. */
int daemon_user_check(const char *spec, char *err_text, size_t err_len);

/* true when the environment has BALLAST_ALLOW_ROOT=1. */
bool daemon_allow_root_from_env(void);

/* Decide, before binding anything, who to run as. spec is server.user (or --user), NULL or ""
 * for none. Errors (BALLAST_EINVAL, err_text says why):
 *  - an unknown user or group (named in err_text);
 *  - effective uid 0, no spec and !allow_root: "running as root; set server.user or pass
 *    --allow-root".
 * Not root and spec names another user: a warning is logged and the daemon keeps its identity
 * (like Unbound: a non-root user cannot switch users). Root with allow_root and no spec: a
 * warning, identity kept. */
int daemon_privileges_prepare(const char *spec, bool allow_root, struct daemon_identity *out,
                              char *err_text, size_t err_len);

/* After every listener, the control socket and the pid file are open: chown the control socket
 * (control_path, may be NULL) to the user so that its own tools may use it too (root still can),
 * then setgroups/initgroups, setgid, setuid, each checked, and verify that uid 0 cannot be
 * regained. Does nothing when !id->drop. glibc applies setuid/setgid to every thread of the
 * process, so worker threads already running are dropped too. Returns 0, or BALLAST_ESYS with
 * err_text naming the call that failed (the caller must then exit). */
int daemon_drop_privileges(const struct daemon_identity *id, const char *control_path,
                           char *err_text, size_t err_len);

/* After the drop: log a warning when what (e.g. "zone example.test") at path cannot be read
 * (writable == false) or when the directory of path is not writable (writable == true: files
 * replaced by rename, such as cache snapshots), naming the user and what will fail later. Returns
 * true when the access is possible. */
bool daemon_check_access(const char *what, const char *path, bool writable);

/* Join texts with commas into buf (cut at len), e.g. listen addresses for the "ready" log line.
 * Returns buf. */
const char *daemon_join(char *const *texts, size_t count, char *buf, size_t len);

#endif
