/* The daemons' main-loop chores: SIGHUP (reload), SIGTERM/SIGINT (stop), the control socket, the
 * pid file, and a stop that lets the last control reply go out before the loop ends. */
#ifndef BALLAST_DAEMON_H
#define BALLAST_DAEMON_H

#include <stddef.h>
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
/* Make uv_run return after the current callbacks (and pending control replies) are done. */
void daemon_request_stop(struct daemon *daemon);
/* Close the control socket and signal handlers, remove the pid file, close every other handle
 * still open on the loop, run it until they are closed and close the loop. */
void daemon_close(struct daemon *daemon);

/* Join texts with commas into buf (cut at len), e.g. listen addresses for the "ready" log line.
 * Returns buf. */
const char *daemon_join(char *const *texts, size_t count, char *buf, size_t len);

#endif
