/* The control channel: a Unix stream socket (mode 0600) on a libuv loop, and optionally a TCP
 * listener whose commands are authenticated with a shared key (HMAC-SHA-256, libsodium). A client
 * sends one command line ("stats", "reload", "status", ...), the daemon answers and closes. */
#ifndef BALLAST_CONTROL_H
#define BALLAST_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "addr.h"

#define CONTROL_KEY_BYTES 32     /* crypto_auth_hmacsha256_KEYBYTES */
#define CONTROL_NONCE_BYTES 32   /* the server's per-connection challenge */
#define CONTROL_TCP_CONNS_MAX 16 /* TCP control connections at once; more are closed */
#define CONTROL_TCP_IDLE_MS 5000 /* a TCP client that sends no line in time is closed */
#define CONTROL_TCP_GREETING "ballast-control 1 " /* followed by the nonce in hex and "\n" */

struct config_node;
struct config_error;

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

/* ---- TCP control (docs/operations.md, "TCP control") ----
 * On connect the server sends "ballast-control 1 NONCE\n" (32 random bytes in hex). The client
 * answers with one line "MAC COMMAND...\n", MAC being the hex HMAC-SHA-256 keyed with the shared
 * key over the nonce bytes followed by the bytes of COMMAND... (up to, not including, the
 * newline). A wrong or missing MAC gets "error\nauthentication failed\n"; otherwise the command
 * runs as over the Unix socket. Authenticated, not encrypted. */

/* server.control-tcp and server.control-key-file of either daemon. Owned by the daemon's config;
 * free with control_tcp_config_free. */
struct control_tcp_config {
    bool enabled; /* control-tcp given */
    struct addr addr;
    char *key_file; /* resolved against the config file's directory; NULL when absent */
    unsigned char key[CONTROL_KEY_BYTES];
};

/* Read control-tcp (ADDR[@PORT], default_port when no port) and control-key-file from a server
 * map; the key file is loaded (control_key_load). control-tcp without a key file, a bad address
 * or a bad key file fail with the key's file:line. The caller has checked the map's keys. */
int control_tcp_config_read(const struct config_node *server, const char *config_path,
                            uint16_t default_port, struct control_tcp_config *out,
                            struct config_error *err);
void control_tcp_config_free(struct control_tcp_config *cfg);
/* Same listener and same key (a change needs a restart). */
bool control_tcp_config_equal(const struct control_tcp_config *a,
                              const struct control_tcp_config *b);

/* Load a key file: one line of 64 hex characters (32 bytes). A missing, unreadable or malformed
 * file fails (BALLAST_EIO or BALLAST_EINVAL, err_text names the file); a file readable by group
 * or others is accepted with a warning log line (event control_key_file). */
int control_key_load(const char *path, unsigned char key[CONTROL_KEY_BYTES], char *err_text,
                     size_t err_len);
/* Write a new random key to path, mode 0600. An existing file is refused (BALLAST_EEXIST) unless
 * force. */
int control_key_generate(const char *path, bool force, char *err_text, size_t err_len);

/* Listen on addr; commands are authenticated with key (copied). At most CONTROL_TCP_CONNS_MAX
 * connections at once. Close with control_server_close. */
int control_server_open_tcp(uv_loop_t *loop, const struct addr *addr,
                            const unsigned char key[CONTROL_KEY_BYTES],
                            control_command_fn on_command, void *ctx, struct control_server **out,
                            char *err_text, size_t err_len);
/* Connections refused for a wrong or missing MAC since the process started (all servers). */
uint64_t control_auth_failures(void);

/* control_client_call over TCP to addr with key. A refused MAC returns BALLAST_EINVAL with
 * err_text "authentication failed"; no listener, BALLAST_EIO ("no daemon listening on ..."). */
int control_client_call_tcp(const struct addr *addr, const unsigned char key[CONTROL_KEY_BYTES],
                            const char *command_line, unsigned timeout_ms, char **reply_out,
                            char *err_text, size_t err_len);

#endif
