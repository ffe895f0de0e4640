/* The control channel: a Unix stream socket (mode 0600) on a libuv loop. A client sends one
 * command line ("stats", "reload", "status", ...), the daemon answers with text and closes. */
#ifndef BALLAST_CONTROL_H
#define BALLAST_CONTROL_H

#include <stddef.h>
#include <uv.h>

struct control_reply; /* growable text buffer for the answer */

/* Append formatted text to the reply. */
void control_reply_printf(struct control_reply *reply, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Handle one command. argv[0] is the command; argc >= 1. Return 0 for success or a negative
 * BALLAST_E* code; the reply's first line is "ok" or "error" accordingly, followed by the text
 * the handler appended. Called on the loop thread. */
typedef int (*control_command_fn)(void *ctx, int argc, char **argv, struct control_reply *reply);

struct control_server;

/* Listen on path (an existing stale socket file is replaced), permissions 0600. */
int control_server_open(uv_loop_t *loop, const char *path, control_command_fn on_command, void *ctx,
                        struct control_server **out, char *err_text, size_t err_len);
/* Close and unlink the socket; frees once libuv has closed the handles. */
void control_server_close(struct control_server *server);

/* Client side (for the ballast tool and tests): send one command line to the socket at path and
 * read the whole reply into a malloc'd string (*reply_out, caller frees). Returns 0 when the
 * daemon answered "ok", BALLAST_EINVAL when it answered "error", BALLAST_EIO when it could not
 * be reached (err_text says why, e.g. "no daemon listening on PATH"). timeout_ms bounds the wait.
 */
int control_client_call(const char *path, const char *command_line, unsigned timeout_ms,
                        char **reply_out, char *err_text, size_t err_len);

#endif
