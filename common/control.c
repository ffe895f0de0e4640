/* The control channel: a Unix stream socket, and a TCP listener authenticated with a shared key,
 * served on a libuv loop (one command line in, "ok" or "error" plus text out, then close); the
 * blocking clients the ballast tool uses; the key files. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "errors.h"
#include "log.h"

#define CONTROL_LINE_MAX 4096          /* bytes in one command line, newline excluded */
#define CONTROL_ARGS_MAX 32            /* words in one command line */
#define CONTROL_READ_TIMEOUT_MS 10000  /* a client that sends no line in time is dropped */
#define CONTROL_REPLY_MAX (256u << 20) /* client side: bigger replies are refused */
#define CONTROL_BACKLOG 16
#define CONTROL_MAC_HEX (2 * crypto_auth_hmacsha256_BYTES)
/* A TCP line is "MAC COMMAND": the command part has the Unix line's limit. */
#define CONTROL_TCP_LINE_MAX (CONTROL_MAC_HEX + 1 + CONTROL_LINE_MAX)
#define CONTROL_GREETING_MAX (sizeof(CONTROL_TCP_GREETING) + 2 * CONTROL_NONCE_BYTES + 1)
#define CONTROL_AUTH_FAILED_TEXT "authentication failed"

_Static_assert(CONTROL_KEY_BYTES == crypto_auth_hmacsha256_KEYBYTES, "control key size");

/* A libuv stream that is a Unix pipe or a TCP socket. */
union control_stream {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
};

static uint64_t control_auth_failed_count; /* only touched on the loop thread(s) of servers */

struct control_reply {
    char *text;
    size_t len, cap;
    bool failed; /* out of memory: the reply is replaced by an error */
};

struct control_conn {
    union control_stream io;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_write_t greeting_req; /* TCP: the nonce line */
    struct control_server *server;
    struct control_conn *prev, *next;
    char line[CONTROL_TCP_LINE_MAX + 1];
    size_t line_len;
    unsigned char nonce[CONTROL_NONCE_BYTES]; /* TCP */
    char greeting[CONTROL_GREETING_MAX];      /* TCP, owned until written */
    char peer[INET6_ADDRSTRLEN + 8];          /* TCP, for logs */
    char *answer; /* status line plus handler text, owned until written */
    int handles_open;
    bool answered;
    bool closing;
};

struct control_server {
    uv_loop_t *loop;
    union control_stream io;
    bool tcp;
    unsigned char key[CONTROL_KEY_BYTES]; /* TCP */
    unsigned conn_count;
    char *path; /* Unix socket path; NULL for TCP */
    control_command_fn on_command;
    void *ctx;
    struct control_conn *conns;
    int handles_open;
    bool closing;
};

/* ---- reply buffer ---- */

static bool control_reply_reserve(struct control_reply *reply, size_t more)
{
    if (reply->failed)
        return false;
    if (reply->len + more + 1 <= reply->cap)
        return true;
    size_t cap = reply->cap ? reply->cap : 256;
    while (cap < reply->len + more + 1)
        cap *= 2;
    char *grown = realloc(reply->text, cap);
    if (grown == NULL) {
        reply->failed = true;
        return false;
    }
    reply->text = grown;
    reply->cap = cap;
    return true;
}

void control_reply_printf(struct control_reply *reply, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need <= 0 || !control_reply_reserve(reply, (size_t)need))
        return;
    va_start(ap, fmt);
    vsnprintf(reply->text + reply->len, (size_t)need + 1, fmt, ap);
    va_end(ap);
    reply->len += (size_t)need;
}

/* ---- server: one connection ---- */

static void control_server_free(struct control_server *server)
{
    sodium_memzero(server->key, sizeof server->key);
    free(server->path);
    free(server);
}

static void control_conn_on_handle_closed(uv_handle_t *handle)
{
    struct control_conn *conn = handle->data;
    if (--conn->handles_open > 0)
        return;
    struct control_server *server = conn->server;
    free(conn->answer);
    free(conn);
    server->conn_count--;
    if (--server->handles_open == 0 && server->closing)
        control_server_free(server);
}

static void control_conn_close(struct control_conn *conn)
{
    if (conn->closing)
        return;
    conn->closing = true;
    struct control_server *server = conn->server;
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        server->conns = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
    uv_close((uv_handle_t *)&conn->timer, control_conn_on_handle_closed);
    uv_close(&conn->io.handle, control_conn_on_handle_closed);
}

static void control_conn_on_written(uv_write_t *req, int status)
{
    control_conn_close(req->data);
}

/* Send "ok\n" or "error\n" and the text, then close. */
static void control_conn_answer(struct control_conn *conn, int status,
                                const struct control_reply *reply)
{
    conn->answered = true;
    uv_read_stop(&conn->io.stream);
    uv_timer_stop(&conn->timer);
    const char *head = status == 0 ? "ok\n" : "error\n";
    const char *body = reply->text ? reply->text : "";
    size_t body_len = reply->len;
    if (reply->failed) {
        head = "error\n";
        body = "out of memory building the reply\n";
        body_len = strlen(body);
    }
    size_t head_len = strlen(head);
    conn->answer = malloc(head_len + body_len);
    if (conn->answer == NULL) {
        control_conn_close(conn);
        return;
    }
    memcpy(conn->answer, head, head_len);
    memcpy(conn->answer + head_len, body, body_len);
    uv_buf_t buf = uv_buf_init(conn->answer, (unsigned)(head_len + body_len));
    conn->write_req.data = conn;
    if (uv_write(&conn->write_req, &conn->io.stream, &buf, 1, control_conn_on_written) != 0)
        control_conn_close(conn);
}

static void control_conn_answer_error(struct control_conn *conn, const char *text)
{
    struct control_reply reply = {0};
    control_reply_printf(&reply, "%s\n", text);
    control_conn_answer(conn, BALLAST_EINVAL, &reply);
    free(reply.text);
}

/* Split the command line on whitespace and hand it to the command handler. */
static void control_conn_dispatch(struct control_conn *conn, char *line)
{
    char *argv[CONTROL_ARGS_MAX + 1];
    int argc = 0;
    char *save = NULL;
    for (char *word = strtok_r(line, " \t\r\v\f", &save); word != NULL;
         word = strtok_r(NULL, " \t\r\v\f", &save)) {
        if (argc == CONTROL_ARGS_MAX) {
            control_conn_answer_error(conn, "too many arguments (max 32)");
            return;
        }
        argv[argc++] = word;
    }
    argv[argc] = NULL;
    if (argc == 0) {
        control_conn_answer_error(conn, "empty command");
        return;
    }
    struct control_reply reply = {0};
    struct control_server *server = conn->server;
    int status = server->on_command(server->ctx, argc, argv, &reply);
    control_conn_answer(conn, status, &reply);
    free(reply.text);
}

static size_t control_line_max(const struct control_server *server)
{
    return server->tcp ? CONTROL_TCP_LINE_MAX : CONTROL_LINE_MAX;
}

static void control_conn_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct control_conn *conn = handle->data;
    /* One byte past the limit tells an over-long line from one that just fits. */
    size_t room = control_line_max(conn->server) + 1 - conn->line_len;
    *buf = uv_buf_init(conn->line + conn->line_len, (unsigned)room);
}

/* HMAC-SHA-256 keyed with key over nonce || command (docs/operations.md, "TCP control"). */
static void control_mac(const unsigned char key[CONTROL_KEY_BYTES],
                        const unsigned char nonce[CONTROL_NONCE_BYTES], const char *command,
                        size_t command_len, unsigned char mac[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, key, CONTROL_KEY_BYTES);
    crypto_auth_hmacsha256_update(&state, nonce, CONTROL_NONCE_BYTES);
    crypto_auth_hmacsha256_update(&state, (const unsigned char *)command, command_len);
    crypto_auth_hmacsha256_final(&state, mac);
    sodium_memzero(&state, sizeof state);
}

/* Check "MAC COMMAND" in line (NUL-terminated, len bytes) against the connection's nonce; on
 * success *command points at COMMAND. The comparison is constant time. */
static bool control_conn_authenticate(struct control_conn *conn, char *line, size_t len,
                                      char **command, const char **why)
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    size_t mac_len = 0;
    *why = "missing MAC";
    if (len < CONTROL_MAC_HEX + 1 || line[CONTROL_MAC_HEX] != ' ')
        return false;
    if (sodium_hex2bin(mac, sizeof mac, line, CONTROL_MAC_HEX, NULL, &mac_len, NULL) != 0 ||
        mac_len != sizeof mac)
        return false;
    *why = "bad MAC";
    size_t command_len = len - CONTROL_MAC_HEX - 1;
    unsigned char *message = malloc(CONTROL_NONCE_BYTES + command_len + 1);
    if (message == NULL) {
        *why = "out of memory";
        return false;
    }
    memcpy(message, conn->nonce, CONTROL_NONCE_BYTES);
    memcpy(message + CONTROL_NONCE_BYTES, line + CONTROL_MAC_HEX + 1, command_len);
    bool ok = crypto_auth_hmacsha256_verify(mac, message, CONTROL_NONCE_BYTES + command_len,
                                            conn->server->key) == 0;
    free(message);
    *command = line + CONTROL_MAC_HEX + 1;
    return ok;
}

/* A complete line of len bytes: authenticate it (TCP) and run it. */
static void control_conn_run_line(struct control_conn *conn, size_t len)
{
    char *command = conn->line;
    const char *why = NULL;
    if (conn->server->tcp && !control_conn_authenticate(conn, conn->line, len, &command, &why)) {
        control_auth_failed_count++;
        log_warn("control_auth_failed", "peer=%s reason=\"%s\"", conn->peer, why);
        control_conn_answer_error(conn, CONTROL_AUTH_FAILED_TEXT);
        return;
    }
    control_conn_dispatch(conn, command);
}

static void control_conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct control_conn *conn = stream->data;
    if (conn->answered || nread == 0)
        return;
    if (nread < 0 && nread != UV_EOF) {
        control_conn_close(conn);
        return;
    }
    size_t scanned = conn->line_len;
    if (nread > 0)
        conn->line_len += (size_t)nread;
    char *newline = memchr(conn->line + scanned, '\n', conn->line_len - scanned);
    if (newline == NULL && conn->line_len > control_line_max(conn->server)) {
        control_conn_answer_error(conn, "command line too long (max 4096 bytes)");
        return;
    }
    if (newline == NULL && nread != UV_EOF)
        return;
    if (newline == NULL && conn->line_len == 0) {
        control_conn_close(conn); /* connected and left without a word */
        return;
    }
    size_t end = newline ? (size_t)(newline - conn->line) : conn->line_len;
    conn->line[end] = '\0';
    if (memchr(conn->line, '\0', end) != NULL) {
        control_conn_answer_error(conn, "command line contains a NUL byte");
        return;
    }
    control_conn_run_line(conn, end);
}

static void control_conn_on_timeout(uv_timer_t *timer)
{
    control_conn_close(timer->data);
}

static void control_conn_on_greeting_written(uv_write_t *req, int status)
{
    if (status != 0 && status != UV_ECANCELED)
        control_conn_close(req->data);
}

/* TCP: note the peer and send "ballast-control 1 NONCE\n" with a fresh random nonce. */
static int control_conn_greet(struct control_conn *conn)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&conn->io.tcp, (struct sockaddr *)&ss, &len) == 0)
        addr_format((struct sockaddr *)&ss, conn->peer, sizeof conn->peer);
    else
        snprintf(conn->peer, sizeof conn->peer, "unknown");
    randombytes_buf(conn->nonce, sizeof conn->nonce);
    char hex[2 * CONTROL_NONCE_BYTES + 1];
    sodium_bin2hex(hex, sizeof hex, conn->nonce, sizeof conn->nonce);
    int n = snprintf(conn->greeting, sizeof conn->greeting, "%s%s\n", CONTROL_TCP_GREETING, hex);
    uv_buf_t buf = uv_buf_init(conn->greeting, (unsigned)n);
    conn->greeting_req.data = conn;
    return uv_write(&conn->greeting_req, &conn->io.stream, &buf, 1,
                    control_conn_on_greeting_written);
}

static void control_on_refused_closed(uv_handle_t *handle)
{
    free(handle);
}

/* TCP: over CONTROL_TCP_CONNS_MAX connections; accept and close at once. */
static void control_server_refuse(struct control_server *server)
{
    uv_tcp_t *tcp = malloc(sizeof *tcp);
    if (tcp == NULL)
        return;
    uv_tcp_init(server->loop, tcp);
    uv_accept(&server->io.stream, (uv_stream_t *)tcp);
    uv_close((uv_handle_t *)tcp, control_on_refused_closed);
    log_warn("control_busy", "reason=\"more than %d TCP control connections; closed\"",
             CONTROL_TCP_CONNS_MAX);
}

static void control_server_on_connection(uv_stream_t *stream, int status)
{
    struct control_server *server = stream->data;
    if (status < 0 || server->closing)
        return;
    if (server->tcp && server->conn_count >= CONTROL_TCP_CONNS_MAX) {
        control_server_refuse(server);
        return;
    }
    struct control_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL)
        return;
    conn->server = server;
    if (server->tcp)
        uv_tcp_init(server->loop, &conn->io.tcp);
    else
        uv_pipe_init(server->loop, &conn->io.pipe, 0);
    uv_timer_init(server->loop, &conn->timer);
    conn->io.handle.data = conn;
    conn->timer.data = conn;
    conn->handles_open = 2;
    server->handles_open++;
    server->conn_count++;
    conn->next = server->conns;
    if (server->conns != NULL)
        server->conns->prev = conn;
    server->conns = conn;
    if (uv_accept(stream, &conn->io.stream) != 0 ||
        (server->tcp && control_conn_greet(conn) != 0) ||
        uv_read_start(&conn->io.stream, control_conn_on_alloc, control_conn_on_read) != 0) {
        control_conn_close(conn);
        return;
    }
    uv_timer_start(&conn->timer, control_conn_on_timeout,
                   server->tcp ? CONTROL_TCP_IDLE_MS : CONTROL_READ_TIMEOUT_MS, 0);
}

/* ---- server: listening socket ---- */

static int control_fill_sockaddr(const char *path, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun->sun_path))
        return BALLAST_EINVAL;
    memcpy(sun->sun_path, path, strlen(path) + 1);
    return 0;
}

/* Remove a socket file left by a daemon that is gone; refuse to steal a live one. */
static int control_remove_stale(const char *path, char *err_text, size_t err_len)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        ballast_set_error(err_text, err_len, "%s exists and is not a socket", path);
        return BALLAST_EEXIST;
    }
    struct sockaddr_un sun;
    control_fill_sockaddr(path, &sun);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        ballast_set_error(err_text, err_len, "socket: %s", strerror(errno));
        return BALLAST_ESYS;
    }
    int rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    int saved = errno;
    close(fd);
    if (rc == 0 || saved == EAGAIN) {
        ballast_set_error(err_text, err_len, "a daemon is already listening on %s", path);
        return BALLAST_EEXIST;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        ballast_set_error(err_text, err_len, "remove stale %s: %s", path, strerror(errno));
        return BALLAST_EIO;
    }
    return 0;
}

static void control_server_on_listener_closed(uv_handle_t *handle)
{
    struct control_server *server = handle->data;
    if (--server->handles_open == 0)
        control_server_free(server);
}

int control_server_open(uv_loop_t *loop, const char *path, control_command_fn on_command, void *ctx,
                        struct control_server **out, char *err_text, size_t err_len)
{
    *out = NULL;
    struct sockaddr_un sun;
    if (control_fill_sockaddr(path, &sun) != 0) {
        ballast_set_error(err_text, err_len, "control socket path too long (max %zu bytes): %s",
                          sizeof(sun.sun_path) - 1, path);
        return BALLAST_EINVAL;
    }
    int rc = control_remove_stale(path, err_text, err_len);
    if (rc != 0)
        return rc;
    struct control_server *server = calloc(1, sizeof(*server));
    char *path_copy = strdup(path);
    if (server == NULL || path_copy == NULL) {
        free(server);
        free(path_copy);
        ballast_set_error(err_text, err_len, "out of memory opening %s", path);
        return BALLAST_ENOMEM;
    }
    server->loop = loop;
    server->path = path_copy;
    server->on_command = on_command;
    server->ctx = ctx;
    uv_pipe_init(loop, &server->io.pipe, 0);
    server->io.handle.data = server;
    server->handles_open = 1;

    /* chmod before listen: until listen() no client can connect, so none sees a wider mode. */
    const char *step = "bind";
    rc = uv_pipe_bind(&server->io.pipe, path);
    if (rc == 0) {
        step = "chmod";
        rc = chmod(path, 0600) == 0 ? 0 : uv_translate_sys_error(errno);
    }
    if (rc == 0) {
        step = "listen";
        rc = uv_listen(&server->io.stream, CONTROL_BACKLOG, control_server_on_connection);
    }
    if (rc != 0) {
        ballast_set_error(err_text, err_len, "control socket %s: %s: %s", path, step,
                          uv_strerror(rc));
        server->closing = true;
        if (strcmp(step, "bind") != 0)
            unlink(path);
        uv_close(&server->io.handle, control_server_on_listener_closed);
        return BALLAST_EIO;
    }
    *out = server;
    return 0;
}

int control_server_open_tcp(uv_loop_t *loop, const struct addr *addr,
                            const unsigned char key[CONTROL_KEY_BYTES],
                            control_command_fn on_command, void *ctx, struct control_server **out,
                            char *err_text, size_t err_len)
{
    *out = NULL;
    char where[INET6_ADDRSTRLEN + 8];
    addr_format((const struct sockaddr *)&addr->ss, where, sizeof where);
    if (sodium_init() < 0) {
        ballast_set_error(err_text, err_len, "control-tcp %s: libsodium failed to start", where);
        return BALLAST_ESYS;
    }
    struct control_server *server = calloc(1, sizeof(*server));
    if (server == NULL) {
        ballast_set_error(err_text, err_len, "out of memory opening control-tcp %s", where);
        return BALLAST_ENOMEM;
    }
    server->loop = loop;
    server->tcp = true;
    memcpy(server->key, key, CONTROL_KEY_BYTES);
    server->on_command = on_command;
    server->ctx = ctx;
    uv_tcp_init(loop, &server->io.tcp);
    server->io.handle.data = server;
    server->handles_open = 1;
    const char *step = "bind";
    int rc = uv_tcp_bind(&server->io.tcp, (const struct sockaddr *)&addr->ss, 0);
    if (rc == 0) {
        step = "listen";
        rc = uv_listen(&server->io.stream, CONTROL_BACKLOG, control_server_on_connection);
    }
    if (rc != 0) {
        ballast_set_error(err_text, err_len, "control-tcp %s: %s: %s", where, step,
                          uv_strerror(rc));
        server->closing = true;
        uv_close(&server->io.handle, control_server_on_listener_closed);
        return BALLAST_EIO;
    }
    *out = server;
    return 0;
}

uint64_t control_auth_failures(void)
{
    return control_auth_failed_count;
}

void control_server_close(struct control_server *server)
{
    if (server == NULL || server->closing)
        return;
    server->closing = true;
    if (server->path != NULL)
        unlink(server->path);
    while (server->conns != NULL)
        control_conn_close(server->conns);
    uv_close(&server->io.handle, control_server_on_listener_closed);
}

/* ---- client ---- */

static long control_ms_left(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? ms : 0;
}

/* Wait for events on fd until the deadline; returns false on timeout or error. */
static bool control_wait(int fd, short events, const struct timespec *deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        int rc = poll(&pfd, 1, (int)control_ms_left(deadline));
        if (rc > 0)
            return true;
        if (rc == 0 || errno != EINTR)
            return false;
    }
}

static int control_client_connect(const char *path, const struct timespec *deadline, int *fd_out,
                                  char *err_text, size_t err_len)
{
    struct sockaddr_un sun;
    if (control_fill_sockaddr(path, &sun) != 0) {
        ballast_set_error(err_text, err_len, "control socket path too long: %s", path);
        return BALLAST_EINVAL;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ballast_set_error(err_text, err_len, "socket: %s", strerror(errno));
        return BALLAST_EIO;
    }
    /* A Unix connect blocks only while the backlog is full; SO_SNDTIMEO bounds that wait. */
    long ms = control_ms_left(deadline);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 + (ms == 0)};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int rc;
    do {
        rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int saved = errno;
        close(fd);
        if (saved == EAGAIN || saved == EINPROGRESS)
            ballast_set_error(err_text, err_len, "timed out connecting to %s", path);
        else
            ballast_set_error(err_text, err_len, "no daemon listening on %s: %s", path,
                              strerror(saved));
        return BALLAST_EIO;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    *fd_out = fd;
    return 0;
}

static int control_client_send(int fd, const char *path, const char *line, size_t len,
                               const struct timespec *deadline, char *err_text, size_t err_len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN && control_wait(fd, POLLOUT, deadline))
            continue;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            return 0; /* answered and closed before reading all of it: read the reply */
        if (n < 0 && errno != EAGAIN)
            ballast_set_error(err_text, err_len, "send to %s: %s", path, strerror(errno));
        else
            ballast_set_error(err_text, err_len, "timed out sending to %s", path);
        return BALLAST_EIO;
    }
    return 0;
}

/* Read until the daemon closes; in->text ends with a NUL. */
static int control_client_receive(int fd, const char *path, const struct timespec *deadline,
                                  struct control_reply *in, char *err_text, size_t err_len)
{
    for (;;) {
        if (!control_reply_reserve(in, 4096)) {
            ballast_set_error(err_text, err_len, "out of memory reading from %s", path);
            return BALLAST_ENOMEM;
        }
        ssize_t n = recv(fd, in->text + in->len, in->cap - in->len - 1, 0);
        if (n == 0)
            break;
        if (n > 0) {
            in->len += (size_t)n;
            in->text[in->len] = '\0';
            if (in->len > CONTROL_REPLY_MAX) {
                ballast_set_error(err_text, err_len, "reply from %s exceeds %u bytes", path,
                                  CONTROL_REPLY_MAX);
                return BALLAST_EIO;
            }
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && control_wait(fd, POLLIN, deadline))
            continue;
        /* The daemon closed with part of our line unread (e.g. an over-long line): what it
         * answered before that is the whole reply. */
        if (errno == ECONNRESET && in->len > 0)
            break;
        if (errno != EAGAIN)
            ballast_set_error(err_text, err_len, "read from %s: %s", path, strerror(errno));
        else
            ballast_set_error(err_text, err_len, "timed out waiting for a reply from %s", path);
        return BALLAST_EIO;
    }
    in->text[in->len] = '\0';
    return 0;
}

/* Split "ok\n..." or "error\n..." into the status and the text after the status line. */
static int control_client_parse(struct control_reply *in, const char *path, char **reply_out,
                                char *err_text, size_t err_len)
{
    int status;
    size_t head;
    if (strncmp(in->text, "ok\n", 3) == 0) {
        status = 0;
        head = 3;
    } else if (strncmp(in->text, "error\n", 6) == 0) {
        status = BALLAST_EINVAL;
        head = 6;
    } else {
        ballast_set_error(err_text, err_len, "malformed reply from %s", path);
        return BALLAST_EIO;
    }
    size_t len = in->len - head;
    char *text = malloc(len + 1);
    if (text == NULL) {
        ballast_set_error(err_text, err_len, "out of memory reading from %s", path);
        return BALLAST_ENOMEM;
    }
    memcpy(text, in->text + head, len + 1);
    if (status != 0) {
        size_t line = strcspn(text, "\n");
        ballast_set_error(err_text, err_len, "%.*s", (int)line, line ? text : "daemon error");
    }
    if (reply_out != NULL)
        *reply_out = text;
    else
        free(text);
    return status;
}

static void control_deadline(unsigned timeout_ms, struct timespec *deadline)
{
    clock_gettime(CLOCK_MONOTONIC, deadline);
    deadline->tv_sec += timeout_ms / 1000;
    deadline->tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline->tv_nsec >= 1000000000) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000;
    }
}

/* Send line (a newline is added), read the whole reply and close fd. label names the daemon in
 * errors. */
static int control_client_exchange(int fd, const char *label, const char *line,
                                   const struct timespec *deadline, char **reply_out,
                                   char *err_text, size_t err_len)
{
    struct control_reply in = {0};
    size_t len = strlen(line);
    char *framed = malloc(len + 2);
    if (framed == NULL) {
        close(fd);
        ballast_set_error(err_text, err_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    memcpy(framed, line, len);
    framed[len] = '\n';
    framed[len + 1] = '\0';
    int rc = control_client_send(fd, label, framed, len + 1, deadline, err_text, err_len);
    free(framed);
    if (rc == 0)
        rc = control_client_receive(fd, label, deadline, &in, err_text, err_len);
    close(fd);
    if (rc == 0)
        rc = control_client_parse(&in, label, reply_out, err_text, err_len);
    free(in.text);
    return rc;
}

static int control_client_check_line(const char *command_line, char **reply_out, char *err_text,
                                     size_t err_len)
{
    if (reply_out != NULL)
        *reply_out = NULL;
    if (strchr(command_line, '\n') != NULL) {
        ballast_set_error(err_text, err_len, "command line must not contain a newline");
        return BALLAST_EINVAL;
    }
    return 0;
}

int control_client_call(const char *path, const char *command_line, unsigned timeout_ms,
                        char **reply_out, char *err_text, size_t err_len)
{
    int rc = control_client_check_line(command_line, reply_out, err_text, err_len);
    if (rc != 0)
        return rc;
    struct timespec deadline;
    control_deadline(timeout_ms, &deadline);
    int fd;
    rc = control_client_connect(path, &deadline, &fd, err_text, err_len);
    if (rc != 0)
        return rc;
    return control_client_exchange(fd, path, command_line, &deadline, reply_out, err_text, err_len);
}

/* ---- TCP client ---- */

static int control_client_connect_tcp(const struct addr *addr, const char *label,
                                      const struct timespec *deadline, int *fd_out, char *err_text,
                                      size_t err_len)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        ballast_set_error(err_text, err_len, "socket: %s", strerror(errno));
        return BALLAST_EIO;
    }
    int rc = connect(fd, (const struct sockaddr *)&addr->ss, addr->len);
    int saved = rc == 0 ? 0 : errno;
    if (rc != 0 && (saved == EINPROGRESS || saved == EINTR)) {
        if (!control_wait(fd, POLLOUT, deadline)) {
            close(fd);
            ballast_set_error(err_text, err_len, "timed out connecting to %s", label);
            return BALLAST_EIO;
        }
        socklen_t len = sizeof saved;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &saved, &len) != 0)
            saved = errno;
    }
    if (saved != 0) {
        close(fd);
        ballast_set_error(err_text, err_len, "no daemon listening on %s: %s", label,
                          strerror(saved));
        return BALLAST_EIO;
    }
    *fd_out = fd;
    return 0;
}

/* Read the greeting line "ballast-control 1 NONCE" byte by byte (nothing follows it until the
 * reply) and decode the nonce. */
static int control_client_read_greeting(int fd, const char *label, const struct timespec *deadline,
                                        unsigned char nonce[CONTROL_NONCE_BYTES], char *err_text,
                                        size_t err_len)
{
    char line[CONTROL_GREETING_MAX + 1];
    size_t len = 0;
    while (len < sizeof line - 1) {
        ssize_t n = recv(fd, line + len, 1, 0);
        if (n == 1 && line[len] == '\n')
            break;
        if (n == 1) {
            len++;
            continue;
        }
        if (n < 0 && (errno == EINTR || (errno == EAGAIN && control_wait(fd, POLLIN, deadline))))
            continue;
        if (n == 0 || errno == ECONNRESET)
            ballast_set_error(err_text, err_len,
                              "%s closed the connection before greeting (too many control "
                              "connections?)",
                              label);
        else
            ballast_set_error(err_text, err_len, "timed out waiting for the greeting from %s",
                              label);
        return BALLAST_EIO;
    }
    line[len] = '\0';
    size_t prefix = strlen(CONTROL_TCP_GREETING);
    size_t nonce_len = 0;
    if (len != prefix + 2 * CONTROL_NONCE_BYTES ||
        strncmp(line, CONTROL_TCP_GREETING, prefix) != 0 ||
        sodium_hex2bin(nonce, CONTROL_NONCE_BYTES, line + prefix, 2 * CONTROL_NONCE_BYTES, NULL,
                       &nonce_len, NULL) != 0 ||
        nonce_len != CONTROL_NONCE_BYTES) {
        ballast_set_error(err_text, err_len,
                          "unexpected greeting from %s (not a ballast control-tcp port?)", label);
        return BALLAST_EIO;
    }
    return 0;
}

int control_client_call_tcp(const struct addr *addr, const unsigned char key[CONTROL_KEY_BYTES],
                            const char *command_line, unsigned timeout_ms, char **reply_out,
                            char *err_text, size_t err_len)
{
    int rc = control_client_check_line(command_line, reply_out, err_text, err_len);
    if (rc != 0)
        return rc;
    if (sodium_init() < 0) {
        ballast_set_error(err_text, err_len, "libsodium failed to start");
        return BALLAST_ESYS;
    }
    char label[INET6_ADDRSTRLEN + 8];
    addr_format((const struct sockaddr *)&addr->ss, label, sizeof label);
    struct timespec deadline;
    control_deadline(timeout_ms, &deadline);
    int fd;
    rc = control_client_connect_tcp(addr, label, &deadline, &fd, err_text, err_len);
    if (rc != 0)
        return rc;
    unsigned char nonce[CONTROL_NONCE_BYTES];
    rc = control_client_read_greeting(fd, label, &deadline, nonce, err_text, err_len);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    size_t command_len = strlen(command_line);
    char *line = malloc(CONTROL_MAC_HEX + 1 + command_len + 1);
    if (line == NULL) {
        close(fd);
        ballast_set_error(err_text, err_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    control_mac(key, nonce, command_line, command_len, mac);
    sodium_bin2hex(line, CONTROL_MAC_HEX + 1, mac, sizeof mac);
    line[CONTROL_MAC_HEX] = ' ';
    memcpy(line + CONTROL_MAC_HEX + 1, command_line, command_len + 1);
    rc = control_client_exchange(fd, label, line, &deadline, reply_out, err_text, err_len);
    free(line);
    return rc;
}

/* ---- key files ---- */

int control_key_load(const char *path, unsigned char key[CONTROL_KEY_BYTES], char *err_text,
                     size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ballast_set_error(err_text, err_len, "cannot read key file %s: %s", path, strerror(errno));
        return BALLAST_EIO;
    }
    struct stat st;
    char text[4 * CONTROL_KEY_BYTES];
    const char *why = NULL;
    ssize_t n = -1;
    if (fstat(fd, &st) != 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if ((n = read(fd, text, sizeof text - 1)) < 0)
        why = strerror(errno);
    close(fd);
    if (why != NULL) {
        ballast_set_error(err_text, err_len, "cannot read key file %s: %s", path, why);
        return BALLAST_EIO;
    }
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        n--;
    text[n] = '\0';
    size_t key_len = 0;
    if (n != 2 * CONTROL_KEY_BYTES ||
        sodium_hex2bin(key, CONTROL_KEY_BYTES, text, (size_t)n, NULL, &key_len, NULL) != 0 ||
        key_len != CONTROL_KEY_BYTES) {
        sodium_memzero(text, sizeof text);
        ballast_set_error(err_text, err_len,
                          "key file %s: expected one line of %d hex characters (%d bytes, as "
                          "written by `ballast keygen FILE`)",
                          path, 2 * CONTROL_KEY_BYTES, CONTROL_KEY_BYTES);
        return BALLAST_EINVAL;
    }
    sodium_memzero(text, sizeof text);
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
        log_warn("control_key_file",
                 "file=%s reason=\"readable by group or others (mode %03o); chmod 600 it\"", path,
                 (unsigned)(st.st_mode & 0777));
    return 0;
}

int control_key_generate(const char *path, bool force, char *err_text, size_t err_len)
{
    if (sodium_init() < 0) {
        ballast_set_error(err_text, err_len, "libsodium failed to start");
        return BALLAST_ESYS;
    }
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (force ? O_TRUNC : O_EXCL);
    int fd = open(path, flags, 0600);
    if (fd < 0) {
        int saved = errno;
        if (saved == EEXIST) {
            ballast_set_error(err_text, err_len, "%s exists; pass --force to replace it", path);
            return BALLAST_EEXIST;
        }
        ballast_set_error(err_text, err_len, "cannot write %s: %s", path, strerror(saved));
        return BALLAST_EIO;
    }
    unsigned char key[CONTROL_KEY_BYTES];
    char text[2 * CONTROL_KEY_BYTES + 2];
    crypto_auth_hmacsha256_keygen(key);
    sodium_bin2hex(text, sizeof text, key, sizeof key);
    sodium_memzero(key, sizeof key);
    size_t len = strlen(text);
    text[len++] = '\n';
    int rc = fchmod(fd, 0600) == 0 && write(fd, text, len) == (ssize_t)len ? 0 : -1;
    int saved = errno;
    sodium_memzero(text, sizeof text);
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc != 0) {
        ballast_set_error(err_text, err_len, "cannot write %s: %s", path, strerror(saved));
        return BALLAST_EIO;
    }
    return 0;
}

/* ---- configuration ---- */

int control_tcp_config_read(const struct config_node *server, const char *config_path,
                            uint16_t default_port, struct control_tcp_config *out,
                            struct config_error *err)
{
    const struct config_node *tcp_node = NULL, *key_node = NULL;
    const char *text = NULL, *key_text = NULL;
    int rc = config_get_text(server, "control-tcp", &tcp_node, &text, err);
    if (rc == 0)
        rc = config_get_text(server, "control-key-file", &key_node, &key_text, err);
    if (rc == 0)
        rc = config_read_path(server, "control-key-file", config_path, &out->key_file, err);
    if (rc != 0)
        return rc;
    if (text != NULL) {
        if (addr_parse(text, default_port, &out->addr) != 0)
            return config_fail(err, tcp_node,
                               "control-tcp: invalid address '%s' (expected ADDR[@PORT])", text);
        out->enabled = true;
    }
    if (out->enabled && out->key_file == NULL)
        return config_fail(err, tcp_node,
                           "control-tcp needs control-key-file (make one with `ballast keygen "
                           "FILE`)");
    if (key_node != NULL) {
        char reason[512];
        if (control_key_load(out->key_file, out->key, reason, sizeof reason) != 0)
            return config_fail(err, key_node, "control-key-file: %s", reason);
    }
    return 0;
}

void control_tcp_config_free(struct control_tcp_config *cfg)
{
    free(cfg->key_file);
    sodium_memzero(cfg, sizeof *cfg);
}

bool control_tcp_config_equal(const struct control_tcp_config *a,
                              const struct control_tcp_config *b)
{
    if (a->enabled != b->enabled)
        return false;
    if (!a->enabled)
        return true;
    return a->addr.len == b->addr.len && memcmp(&a->addr.ss, &b->addr.ss, a->addr.len) == 0 &&
           sodium_memcmp(a->key, b->key, CONTROL_KEY_BYTES) == 0;
}
