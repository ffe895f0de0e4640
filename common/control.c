/* The control channel: a Unix stream socket served on a libuv loop (one command line in, "ok" or
 * "error" plus text out, then close) and the blocking client the ballast tool uses. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

#include "errors.h"

#define CONTROL_LINE_MAX 4096          /* bytes in one command line, newline excluded */
#define CONTROL_ARGS_MAX 32            /* words in one command line */
#define CONTROL_READ_TIMEOUT_MS 10000  /* a client that sends no line in time is dropped */
#define CONTROL_REPLY_MAX (256u << 20) /* client side: bigger replies are refused */
#define CONTROL_BACKLOG 16

struct control_reply {
    char *text;
    size_t len, cap;
    bool failed; /* out of memory: the reply is replaced by an error */
};

struct control_conn {
    uv_pipe_t pipe;
    uv_timer_t timer;
    uv_write_t write_req;
    struct control_server *server;
    struct control_conn *prev, *next;
    char line[CONTROL_LINE_MAX + 1];
    size_t line_len;
    char *answer; /* status line plus handler text, owned until written */
    int handles_open;
    bool answered;
    bool closing;
};

struct control_server {
    uv_loop_t *loop;
    uv_pipe_t pipe;
    char *path;
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

static void control_conn_on_handle_closed(uv_handle_t *handle)
{
    struct control_conn *conn = handle->data;
    if (--conn->handles_open > 0)
        return;
    struct control_server *server = conn->server;
    free(conn->answer);
    free(conn);
    if (--server->handles_open == 0 && server->closing) {
        free(server->path);
        free(server);
    }
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
    uv_close((uv_handle_t *)&conn->pipe, control_conn_on_handle_closed);
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
    uv_read_stop((uv_stream_t *)&conn->pipe);
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
    if (uv_write(&conn->write_req, (uv_stream_t *)&conn->pipe, &buf, 1, control_conn_on_written) !=
        0)
        control_conn_close(conn);
}

static void control_conn_answer_error(struct control_conn *conn, const char *text)
{
    struct control_reply reply = {0};
    control_reply_printf(&reply, "%s\n", text);
    control_conn_answer(conn, BALLAST_EINVAL, &reply);
    free(reply.text);
}

/* Split the line on whitespace and hand it to the command handler. */
static void control_conn_dispatch(struct control_conn *conn)
{
    char *argv[CONTROL_ARGS_MAX + 1];
    int argc = 0;
    char *save = NULL;
    for (char *word = strtok_r(conn->line, " \t\r\v\f", &save); word != NULL;
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

static void control_conn_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct control_conn *conn = handle->data;
    /* One byte past the limit tells an over-long line from one that just fits. */
    *buf =
        uv_buf_init(conn->line + conn->line_len, (unsigned)(sizeof(conn->line) - conn->line_len));
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
    if (newline == NULL && conn->line_len > CONTROL_LINE_MAX) {
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
    control_conn_dispatch(conn);
}

static void control_conn_on_timeout(uv_timer_t *timer)
{
    control_conn_close(timer->data);
}

static void control_server_on_connection(uv_stream_t *stream, int status)
{
    struct control_server *server = stream->data;
    if (status < 0 || server->closing)
        return;
    struct control_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL)
        return;
    conn->server = server;
    uv_pipe_init(server->loop, &conn->pipe, 0);
    uv_timer_init(server->loop, &conn->timer);
    conn->pipe.data = conn;
    conn->timer.data = conn;
    conn->handles_open = 2;
    server->handles_open++;
    conn->next = server->conns;
    if (server->conns != NULL)
        server->conns->prev = conn;
    server->conns = conn;
    if (uv_accept(stream, (uv_stream_t *)&conn->pipe) != 0 ||
        uv_read_start((uv_stream_t *)&conn->pipe, control_conn_on_alloc, control_conn_on_read) !=
            0) {
        control_conn_close(conn);
        return;
    }
    uv_timer_start(&conn->timer, control_conn_on_timeout, CONTROL_READ_TIMEOUT_MS, 0);
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

static void control_server_on_pipe_closed(uv_handle_t *handle)
{
    struct control_server *server = handle->data;
    if (--server->handles_open == 0) {
        free(server->path);
        free(server);
    }
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
    uv_pipe_init(loop, &server->pipe, 0);
    server->pipe.data = server;
    server->handles_open = 1;

    /* chmod before listen: until listen() no client can connect, so none sees a wider mode. */
    const char *step = "bind";
    rc = uv_pipe_bind(&server->pipe, path);
    if (rc == 0) {
        step = "chmod";
        rc = chmod(path, 0600) == 0 ? 0 : uv_translate_sys_error(errno);
    }
    if (rc == 0) {
        step = "listen";
        rc = uv_listen((uv_stream_t *)&server->pipe, CONTROL_BACKLOG, control_server_on_connection);
    }
    if (rc != 0) {
        ballast_set_error(err_text, err_len, "control socket %s: %s: %s", path, step,
                          uv_strerror(rc));
        server->closing = true;
        if (strcmp(step, "bind") != 0)
            unlink(path);
        uv_close((uv_handle_t *)&server->pipe, control_server_on_pipe_closed);
        return BALLAST_EIO;
    }
    *out = server;
    return 0;
}

void control_server_close(struct control_server *server)
{
    if (server == NULL || server->closing)
        return;
    server->closing = true;
    unlink(server->path);
    while (server->conns != NULL)
        control_conn_close(server->conns);
    uv_close((uv_handle_t *)&server->pipe, control_server_on_pipe_closed);
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

int control_client_call(const char *path, const char *command_line, unsigned timeout_ms,
                        char **reply_out, char *err_text, size_t err_len)
{
    if (reply_out != NULL)
        *reply_out = NULL;
    if (strchr(command_line, '\n') != NULL) {
        ballast_set_error(err_text, err_len, "command line must not contain a newline");
        return BALLAST_EINVAL;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }

    int fd;
    int rc = control_client_connect(path, &deadline, &fd, err_text, err_len);
    if (rc != 0)
        return rc;
    struct control_reply in = {0};
    size_t len = strlen(command_line);
    char *line = malloc(len + 2);
    if (line == NULL) {
        close(fd);
        ballast_set_error(err_text, err_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    memcpy(line, command_line, len);
    line[len] = '\n';
    line[len + 1] = '\0';
    rc = control_client_send(fd, path, line, len + 1, &deadline, err_text, err_len);
    free(line);
    if (rc == 0)
        rc = control_client_receive(fd, path, &deadline, &in, err_text, err_len);
    close(fd);
    if (rc == 0)
        rc = control_client_parse(&in, path, reply_out, err_text, err_len);
    free(in.text);
    return rc;
}
