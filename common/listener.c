/* DNS listeners: a UDP socket driven by uv_poll with recvmmsg/sendmmsg batches, and a libuv TCP
 * server speaking RFC 7766 (length framing, pipelining, idle timeout, connection limit). */
#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "limit.h"

#define LISTENER_UDP_BATCH 32       /* datagrams per recvmmsg/sendmmsg call */
#define LISTENER_UDP_SLOT_SIZE 4096 /* bytes per receive and send slot */
#define LISTENER_UDP_MAX_BATCHES 8  /* batches per poll callback, so one socket cannot starve */
#define LISTENER_TCP_BACKLOG 1024
#define LISTENER_TCP_INITIAL_READ 4096 /* read buffer grows to the largest frame seen */
#define LISTENER_TCP_FRAME_MAX (2 + LIMIT_DNS_MESSAGE_MAX)

/* Control buffer big enough for one IPv4 or IPv6 packet-info message, aligned for cmsghdr. */
union listener_cmsg {
    struct cmsghdr align;
    uint8_t bytes[CMSG_SPACE(sizeof(struct in6_pktinfo)) > CMSG_SPACE(sizeof(struct in_pktinfo))
                      ? CMSG_SPACE(sizeof(struct in6_pktinfo))
                      : CMSG_SPACE(sizeof(struct in_pktinfo))];
};

struct listener_udp {
    struct mmsghdr recv_msgs[LISTENER_UDP_BATCH];
    struct iovec recv_iov[LISTENER_UDP_BATCH];
    struct sockaddr_storage peers[LISTENER_UDP_BATCH];
    union listener_cmsg control[LISTENER_UDP_BATCH];
    struct mmsghdr send_msgs[LISTENER_UDP_BATCH];
    struct iovec send_iov[LISTENER_UDP_BATCH];
    /* Deferred answers given during the batch (cache hits) join it: their peers live here. */
    struct sockaddr_storage send_peers[LISTENER_UDP_BATCH];
    union listener_cmsg send_control[LISTENER_UDP_BATCH];
    uint8_t recv_buf[LISTENER_UDP_BATCH][LISTENER_UDP_SLOT_SIZE];
    uint8_t send_buf[LISTENER_UDP_BATCH][LISTENER_UDP_SLOT_SIZE];
};

struct tcp_conn {
    uv_tcp_t handle;
    uint32_t deferred; /* queries handed out as listener_reply and not yet answered */
    uv_timer_t idle;
    struct listener *listener;
    struct tcp_conn *prev, *next; /* in listener->conns while counted against tcp_clients */
    struct sockaddr_storage peer;
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint32_t writes_pending; /* answers handed to uv_write and not yet completed */
    int handles_open;
    bool in_list;
    bool reading;
    bool eof;
    bool closing;
};

struct tcp_write {
    uv_write_t req;
    struct tcp_conn *conn;
    uint8_t data[];
};

struct listener {
    uv_loop_t *loop;
    struct listener_options options;
    listener_query_fn on_query;
    listener_deferred_fn on_deferred; /* set instead of on_query by listener_open_deferred() */
    uint32_t deferred;                /* outstanding listener_reply tokens */
    void *ctx;
    struct listener_stats stats;
    uint16_t port;
    int family;
    uint8_t *resp; /* LIMIT_DNS_MESSAGE_MAX bytes handed to on_query */

    int udp_fd;
    bool udp_pktinfo; /* wildcard address: reply from the address the query was sent to */
    bool udp_poll_open;
    uv_poll_t udp_poll;
    struct listener_udp *udp;

    int tcp_fd; /* until owned by tcp_server */
    bool tcp_server_open;
    uv_tcp_t tcp_server;
    struct tcp_conn *conns;
    uint32_t conn_count;

    int handles_open;         /* libuv handles (a connection counts as one) not yet closed */
    bool udp_in_batch;        /* inside listener_udp_batch: UDP answers queue for sendmmsg */
    unsigned udp_batch_slots; /* send slots used in the current batch */
    bool closing;
};

/* A query answered later (listener_open_deferred): where the answer must go. */
struct listener_reply {
    struct listener *listener;
    struct tcp_conn *conn; /* NULL for UDP */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    union listener_cmsg control;
    size_t control_len;
};

static void listener_free(struct listener *listener)
{
    free(listener->udp);
    free(listener->resp);
    free(listener);
}

/* Counters are written only on the loop thread; relaxed stores let other threads read them. */
static void listener_count(uint64_t *counter, uint64_t n)
{
    __atomic_store_n(counter, *counter + n, __ATOMIC_RELAXED);
}

static void listener_maybe_free(struct listener *listener)
{
    if (listener->closing && listener->handles_open == 0 && listener->deferred == 0)
        listener_free(listener);
}

static void listener_handle_released(struct listener *listener)
{
    listener->handles_open--;
    listener_maybe_free(listener);
}

/* ---- sockets ---- */

static bool listener_addr_is_wildcard(const struct addr *addr)
{
    if (addr->ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&addr->ss;
        return sin->sin_addr.s_addr == htonl(INADDR_ANY);
    }
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&addr->ss;
    return IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
}

static int listener_set_option(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof(value));
}

/* A nonblocking socket bound to addr with SO_REUSEPORT, so each worker binds its own. */
static int listener_bind_socket(const struct addr *addr, uint16_t port, int type, bool pktinfo,
                                int *fd_out, char *err_text, size_t err_len)
{
    const char *proto = type == SOCK_DGRAM ? "udp" : "tcp";
    struct sockaddr_storage ss = addr->ss;
    int family = ss.ss_family;
    if (family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
    char text[64];
    addr_format((const struct sockaddr *)&ss, text, sizeof(text));

    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ballast_set_error(err_text, err_len, "socket %s (%s): %s", text, proto, strerror(errno));
        return BALLAST_ESYS;
    }
    bool ok = listener_set_option(fd, SOL_SOCKET, SO_REUSEADDR, 1) == 0 &&
              listener_set_option(fd, SOL_SOCKET, SO_REUSEPORT, 1) == 0;
    if (ok && family == AF_INET6)
        ok = listener_set_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1) == 0;
    if (ok && pktinfo)
        ok = family == AF_INET ? listener_set_option(fd, IPPROTO_IP, IP_PKTINFO, 1) == 0
                               : listener_set_option(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1) == 0;
    if (!ok) {
        ballast_set_error(err_text, err_len, "setsockopt %s (%s): %s", text, proto,
                          strerror(errno));
        close(fd);
        return BALLAST_ESYS;
    }
    if (bind(fd, (const struct sockaddr *)&ss, addr->len) != 0) {
        ballast_set_error(err_text, err_len, "bind %s (%s): %s", text, proto, strerror(errno));
        close(fd);
        return BALLAST_EIO;
    }
    if (type == SOCK_STREAM && listen(fd, LISTENER_TCP_BACKLOG) != 0) {
        ballast_set_error(err_text, err_len, "listen %s (%s): %s", text, proto, strerror(errno));
        close(fd);
        return BALLAST_EIO;
    }
    *fd_out = fd;
    return 0;
}

static uint16_t listener_socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    return addr_port((const struct sockaddr *)&ss);
}

/* Bind the sockets the options ask for. With port 0 the UDP socket picks the port and TCP takes
 * the same one; if that TCP port is busy, try again with a fresh pair. */
static int listener_bind_all(struct listener *listener, const struct addr *addr, char *err_text,
                             size_t err_len)
{
    uint16_t requested = addr_port((const struct sockaddr *)&addr->ss);
    int attempts = requested == 0 && listener->options.udp && listener->options.tcp ? 16 : 1;
    int rc = 0;
    for (int i = 0; i < attempts; i++) {
        uint16_t port = requested;
        if (listener->options.udp) {
            rc = listener_bind_socket(addr, port, SOCK_DGRAM, listener->udp_pktinfo,
                                      &listener->udp_fd, err_text, err_len);
            if (rc != 0)
                return rc;
            port = listener_socket_port(listener->udp_fd);
        }
        if (listener->options.tcp) {
            rc = listener_bind_socket(addr, port, SOCK_STREAM, false, &listener->tcp_fd, err_text,
                                      err_len);
            if (rc != 0) {
                if (listener->udp_fd >= 0)
                    close(listener->udp_fd);
                listener->udp_fd = -1;
                continue;
            }
            port = listener_socket_port(listener->tcp_fd);
        }
        listener->port = port;
        return 0;
    }
    return rc;
}

/* ---- UDP ---- */

/* Reply from the address the query was sent to (wildcard sockets only). The interface index is
 * cleared so the routing table, not the arrival interface, picks the way out. */
static void listener_udp_prepare_reply_control(struct msghdr *msg)
{
    struct cmsghdr *cmsg = msg->msg_controllen > 0 ? CMSG_FIRSTHDR(msg) : NULL;
    if (cmsg == NULL) {
        msg->msg_control = NULL;
        msg->msg_controllen = 0;
        return;
    }
    if (cmsg->cmsg_level == IPPROTO_IP && cmsg->cmsg_type == IP_PKTINFO) {
        struct in_pktinfo *info = (struct in_pktinfo *)CMSG_DATA(cmsg);
        info->ipi_spec_dst = info->ipi_addr;
        info->ipi_ifindex = 0;
        msg->msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
    } else if (cmsg->cmsg_level == IPPROTO_IPV6 && cmsg->cmsg_type == IPV6_PKTINFO) {
        struct in6_pktinfo *info = (struct in6_pktinfo *)CMSG_DATA(cmsg);
        info->ipi6_ifindex = 0;
        msg->msg_controllen = CMSG_SPACE(sizeof(struct in6_pktinfo));
    } else {
        msg->msg_control = NULL;
        msg->msg_controllen = 0;
    }
}

static void listener_udp_reset_recv(struct listener *listener)
{
    struct listener_udp *udp = listener->udp;
    for (int i = 0; i < LISTENER_UDP_BATCH; i++) {
        struct msghdr *hdr = &udp->recv_msgs[i].msg_hdr;
        udp->recv_iov[i].iov_base = udp->recv_buf[i];
        udp->recv_iov[i].iov_len = LISTENER_UDP_SLOT_SIZE;
        hdr->msg_name = &udp->peers[i];
        hdr->msg_namelen = sizeof(udp->peers[i]);
        hdr->msg_iov = &udp->recv_iov[i];
        hdr->msg_iovlen = 1;
        hdr->msg_control = listener->udp_pktinfo ? udp->control[i].bytes : NULL;
        hdr->msg_controllen = listener->udp_pktinfo ? sizeof(udp->control[i].bytes) : 0;
        hdr->msg_flags = 0;
    }
}

/* Send the batch; a message the kernel refuses is counted and skipped. */
static void listener_udp_flush(struct listener *listener, unsigned count)
{
    struct mmsghdr *msgs = listener->udp->send_msgs;
    unsigned done = 0;
    while (done < count) {
        int sent = sendmmsg(listener->udp_fd, msgs + done, count - done, 0);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            listener_count(&listener->stats.udp_send_errors, 1);
            done++;
            continue;
        }
        listener_count(&listener->stats.udp_sent, (uint64_t)sent);
        done += (unsigned)sent;
    }
}

static void listener_udp_defer(struct listener *listener, int i)
{
    struct listener_udp *udp = listener->udp;
    struct msghdr *in = &udp->recv_msgs[i].msg_hdr;
    struct listener_reply *reply = calloc(1, sizeof(*reply));
    if (reply == NULL)
        return;
    reply->listener = listener;
    memcpy(&reply->peer, &udp->peers[i], in->msg_namelen);
    reply->peer_len = in->msg_namelen;
    if (in->msg_control != NULL && in->msg_controllen <= sizeof(reply->control)) {
        memcpy(&reply->control, in->msg_control, in->msg_controllen);
        reply->control_len = in->msg_controllen;
    }
    listener->deferred++;
    listener->on_deferred(listener->ctx, udp->recv_buf[i], udp->recv_msgs[i].msg_len,
                          (const struct sockaddr *)&reply->peer, false, reply);
}

/* Answer datagram i of the receive batch; returns true when it queued a reply in send slot. */
static bool listener_udp_answer(struct listener *listener, int i, unsigned slot)
{
    struct listener_udp *udp = listener->udp;
    struct msghdr *in = &udp->recv_msgs[i].msg_hdr;
    size_t query_len = udp->recv_msgs[i].msg_len;
    listener_count(&listener->stats.udp_received, 1);
    /* A query larger than our slot was cut short by the kernel; nothing sane can answer it. */
    if ((in->msg_flags & MSG_TRUNC) != 0 || query_len == 0)
        return false;
    if (listener->on_deferred) {
        listener_udp_defer(listener, i);
        return false;
    }
    size_t resp_len =
        listener->on_query(listener->ctx, udp->recv_buf[i], query_len, listener->resp,
                           LIMIT_DNS_MESSAGE_MAX, (const struct sockaddr *)&udp->peers[i], false);
    if (resp_len == 0)
        return false;
    if (resp_len > LIMIT_DNS_MESSAGE_MAX)
        resp_len = LIMIT_DNS_MESSAGE_MAX;

    struct msghdr *out = &udp->send_msgs[slot].msg_hdr;
    *out = (struct msghdr){
        .msg_name = in->msg_name,
        .msg_namelen = in->msg_namelen,
        .msg_iov = &udp->send_iov[slot],
        .msg_iovlen = 1,
        .msg_control = in->msg_control,
        .msg_controllen = in->msg_controllen,
    };
    listener_udp_prepare_reply_control(out);
    if (resp_len <= LISTENER_UDP_SLOT_SIZE) {
        memcpy(udp->send_buf[slot], listener->resp, resp_len);
        udp->send_iov[slot] = (struct iovec){.iov_base = udp->send_buf[slot], .iov_len = resp_len};
        return true;
    }
    /* Too big for a batch slot: send it now from the answer buffer. */
    udp->send_iov[slot] = (struct iovec){.iov_base = listener->resp, .iov_len = resp_len};
    ssize_t sent;
    do {
        sent = sendmsg(listener->udp_fd, out, 0);
    } while (sent < 0 && errno == EINTR);
    listener_count(sent < 0 ? &listener->stats.udp_send_errors : &listener->stats.udp_sent, 1);
    return false;
}

/* Read one batch and answer it; returns the number of datagrams read (0 when drained). */
static int listener_udp_batch(struct listener *listener)
{
    listener_udp_reset_recv(listener);
    int count;
    do {
        count = recvmmsg(listener->udp_fd, listener->udp->recv_msgs, LISTENER_UDP_BATCH,
                         MSG_DONTWAIT, NULL);
    } while (count < 0 && errno == EINTR);
    if (count <= 0)
        return 0;
    listener->udp_batch_slots = 0;
    listener->udp_in_batch = true;
    for (int i = 0; i < count; i++) {
        if (listener_udp_answer(listener, i, listener->udp_batch_slots))
            listener->udp_batch_slots++;
    }
    listener->udp_in_batch = false;
    listener_udp_flush(listener, listener->udp_batch_slots);
    return count;
}

static void listener_udp_on_readable(uv_poll_t *poll, int status, int events)
{
    struct listener *listener = poll->data;
    if (status < 0 || (events & UV_READABLE) == 0)
        return;
    for (int batch = 0; batch < LISTENER_UDP_MAX_BATCHES; batch++) {
        if (listener_udp_batch(listener) < LISTENER_UDP_BATCH)
            break;
    }
}

static void listener_udp_on_close(uv_handle_t *handle)
{
    struct listener *listener = handle->data;
    close(listener->udp_fd);
    listener->udp_fd = -1;
    listener_handle_released(listener);
}

static int listener_udp_start(struct listener *listener, char *err_text, size_t err_len)
{
    int rc = uv_poll_init(listener->loop, &listener->udp_poll, listener->udp_fd);
    if (rc != 0) {
        ballast_set_error(err_text, err_len, "uv_poll_init: %s", uv_strerror(rc));
        return BALLAST_EIO;
    }
    listener->udp_poll.data = listener;
    listener->udp_poll_open = true;
    listener->handles_open++;
    rc = uv_poll_start(&listener->udp_poll, UV_READABLE, listener_udp_on_readable);
    if (rc != 0) {
        ballast_set_error(err_text, err_len, "uv_poll_start: %s", uv_strerror(rc));
        return BALLAST_EIO;
    }
    return 0;
}

/* ---- TCP (RFC 7766) ---- */

static void tcp_conn_read_start(struct tcp_conn *conn);

static void tcp_conn_on_handle_closed(uv_handle_t *handle)
{
    struct tcp_conn *conn = handle->data;
    if (--conn->handles_open > 0)
        return;
    struct listener *listener = conn->listener;
    if (conn->deferred > 0)
        return; /* freed by the last listener_reply_send/drop */
    free(conn->rbuf);
    free(conn);
    listener_handle_released(listener);
}

static void tcp_conn_close(struct tcp_conn *conn)
{
    if (conn->closing)
        return;
    conn->closing = true;
    struct listener *listener = conn->listener;
    if (conn->in_list) {
        if (conn->prev != NULL)
            conn->prev->next = conn->next;
        else
            listener->conns = conn->next;
        if (conn->next != NULL)
            conn->next->prev = conn->prev;
        conn->in_list = false;
        listener->conn_count--;
    }
    uv_timer_stop(&conn->idle);
    uv_close((uv_handle_t *)&conn->idle, tcp_conn_on_handle_closed);
    uv_close((uv_handle_t *)&conn->handle, tcp_conn_on_handle_closed);
}

static void tcp_conn_on_idle(uv_timer_t *timer)
{
    struct tcp_conn *conn = timer->data;
    listener_count(&conn->listener->stats.tcp_idle_closed, 1);
    tcp_conn_close(conn);
}

/* RFC 7766 §6.2.3: the idle timer runs while the connection has nothing to do. */
static void tcp_conn_touch(struct tcp_conn *conn)
{
    uv_timer_start(&conn->idle, tcp_conn_on_idle, conn->listener->options.tcp_idle_timeout_ms, 0);
}

static bool tcp_conn_pipeline_full(const struct tcp_conn *conn)
{
    return conn->writes_pending + conn->deferred >= conn->listener->options.tcp_pipeline;
}

static bool tcp_conn_idle(const struct tcp_conn *conn)
{
    return conn->writes_pending == 0 && conn->deferred == 0;
}

static void tcp_conn_on_written(uv_write_t *req, int status)
{
    struct tcp_write *write = (struct tcp_write *)req;
    struct tcp_conn *conn = write->conn;
    struct listener *listener = conn->listener;
    free(write);
    conn->writes_pending--;
    if (conn->closing)
        return;
    if (status < 0) {
        tcp_conn_close(conn);
        return;
    }
    listener_count(&listener->stats.tcp_sent, 1);
    tcp_conn_touch(conn);
    if (conn->eof) {
        if (tcp_conn_idle(conn))
            tcp_conn_close(conn);
        return;
    }
    if (!conn->reading && !tcp_conn_pipeline_full(conn))
        tcp_conn_read_start(conn);
}

/* RFC 7766 §8: each message is prefixed with its two-byte length. */
static int tcp_conn_send(struct tcp_conn *conn, const uint8_t *answer, size_t len)
{
    struct tcp_write *write = malloc(sizeof(*write) + 2 + len);
    if (write == NULL)
        return BALLAST_ENOMEM;
    write->conn = conn;
    write->data[0] = (uint8_t)(len >> 8);
    write->data[1] = (uint8_t)(len & 0xff);
    memcpy(write->data + 2, answer, len);
    uv_buf_t buf = uv_buf_init((char *)write->data, (unsigned)(2 + len));
    int rc = uv_write(&write->req, (uv_stream_t *)&conn->handle, &buf, 1, tcp_conn_on_written);
    if (rc != 0) {
        free(write);
        return BALLAST_EIO;
    }
    conn->writes_pending++;
    return 0;
}

static int tcp_conn_answer(struct tcp_conn *conn, const uint8_t *query, size_t len)
{
    struct listener *listener = conn->listener;
    listener_count(&listener->stats.tcp_received, 1);
    tcp_conn_touch(conn);
    if (listener->on_deferred) {
        struct listener_reply *reply = calloc(1, sizeof(*reply));
        if (reply == NULL)
            return BALLAST_ENOMEM;
        reply->listener = listener;
        reply->conn = conn;
        memcpy(&reply->peer, &conn->peer, sizeof(conn->peer));
        conn->deferred++;
        listener->deferred++;
        listener->on_deferred(listener->ctx, query, len, (const struct sockaddr *)&reply->peer,
                              true, reply);
        return 0;
    }
    size_t resp_len =
        listener->on_query(listener->ctx, query, len, listener->resp, LIMIT_DNS_MESSAGE_MAX,
                           (const struct sockaddr *)&conn->peer, true);
    if (resp_len == 0)
        return 0;
    if (resp_len > LIMIT_DNS_MESSAGE_MAX)
        resp_len = LIMIT_DNS_MESSAGE_MAX;
    return tcp_conn_send(conn, listener->resp, resp_len);
}

/* Answer every complete frame in the read buffer, in order (RFC 7766 §6.2.1.1 pipelining),
 * until the pipeline is full. Returns false when the connection was closed. */
static bool tcp_conn_process(struct tcp_conn *conn)
{
    size_t off = 0;
    bool alive = true;
    while (conn->rlen - off >= 2 && !tcp_conn_pipeline_full(conn)) {
        size_t frame = ((size_t)conn->rbuf[off] << 8) | conn->rbuf[off + 1];
        if (frame == 0) {
            listener_count(&conn->listener->stats.tcp_bad_frames, 1);
            alive = false;
            break;
        }
        if (conn->rlen - off < 2 + frame)
            break;
        if (tcp_conn_answer(conn, conn->rbuf + off + 2, frame) != 0) {
            alive = false;
            break;
        }
        off += 2 + frame;
    }
    if (!alive) {
        tcp_conn_close(conn);
        return false;
    }
    memmove(conn->rbuf, conn->rbuf + off, conn->rlen - off);
    conn->rlen -= off;
    /* Make room for the whole frame whose length prefix we hold. */
    if (conn->rlen >= 2) {
        size_t need = 2 + (((size_t)conn->rbuf[0] << 8) | conn->rbuf[1]);
        if (need > conn->rcap) {
            uint8_t *grown = realloc(conn->rbuf, need);
            if (grown == NULL) {
                tcp_conn_close(conn);
                return false;
            }
            conn->rbuf = grown;
            conn->rcap = need;
        }
    }
    return true;
}

static void tcp_conn_read_stop(struct tcp_conn *conn)
{
    uv_read_stop((uv_stream_t *)&conn->handle);
    conn->reading = false;
}

static void tcp_conn_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct tcp_conn *conn = handle->data;
    *buf = uv_buf_init((char *)conn->rbuf + conn->rlen, (unsigned)(conn->rcap - conn->rlen));
}

static void tcp_conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tcp_conn *conn = stream->data;
    if (nread == 0)
        return;
    if (nread == UV_EOF) {
        /* The client may half-close after its last query; answer what is pending first. */
        conn->eof = true;
        tcp_conn_read_stop(conn);
        if (tcp_conn_idle(conn))
            tcp_conn_close(conn);
        return;
    }
    if (nread < 0) {
        tcp_conn_close(conn);
        return;
    }
    conn->rlen += (size_t)nread;
    if (!tcp_conn_process(conn))
        return;
    if (tcp_conn_pipeline_full(conn))
        tcp_conn_read_stop(conn);
}

static void tcp_conn_read_start(struct tcp_conn *conn)
{
    if (!tcp_conn_process(conn))
        return;
    if (tcp_conn_pipeline_full(conn))
        return;
    if (uv_read_start((uv_stream_t *)&conn->handle, tcp_conn_on_alloc, tcp_conn_on_read) != 0) {
        tcp_conn_close(conn);
        return;
    }
    conn->reading = true;
}

static struct tcp_conn *tcp_conn_new(struct listener *listener)
{
    struct tcp_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL)
        return NULL;
    conn->rbuf = malloc(LISTENER_TCP_INITIAL_READ);
    if (conn->rbuf == NULL) {
        free(conn);
        return NULL;
    }
    conn->rcap = LISTENER_TCP_INITIAL_READ;
    conn->listener = listener;
    uv_tcp_init(listener->loop, &conn->handle);
    uv_timer_init(listener->loop, &conn->idle);
    conn->handle.data = conn;
    conn->idle.data = conn;
    conn->handles_open = 2;
    listener->handles_open++;
    return conn;
}

static void listener_tcp_on_connection(uv_stream_t *server, int status)
{
    struct listener *listener = server->data;
    if (status < 0 || listener->closing)
        return;
    struct tcp_conn *conn = tcp_conn_new(listener);
    if (conn == NULL)
        return; /* the connection stays in the backlog; libuv calls again */
    if (uv_accept(server, (uv_stream_t *)&conn->handle) != 0) {
        tcp_conn_close(conn);
        return;
    }
    if (listener->conn_count >= listener->options.tcp_clients) {
        listener_count(&listener->stats.tcp_refused, 1);
        tcp_conn_close(conn);
        return;
    }
    listener_count(&listener->stats.tcp_accepted, 1);
    conn->next = listener->conns;
    if (listener->conns != NULL)
        listener->conns->prev = conn;
    listener->conns = conn;
    conn->in_list = true;
    listener->conn_count++;

    int len = sizeof(conn->peer);
    uv_tcp_getpeername(&conn->handle, (struct sockaddr *)&conn->peer, &len);
    uv_tcp_nodelay(&conn->handle, 1); /* answers are whole messages; do not hold them back */
    tcp_conn_touch(conn);
    tcp_conn_read_start(conn);
}

static void listener_tcp_on_close(uv_handle_t *handle)
{
    listener_handle_released(handle->data);
}

static int listener_tcp_start(struct listener *listener, char *err_text, size_t err_len)
{
    int rc = uv_tcp_init(listener->loop, &listener->tcp_server);
    if (rc != 0) {
        ballast_set_error(err_text, err_len, "uv_tcp_init: %s", uv_strerror(rc));
        return BALLAST_EIO;
    }
    listener->tcp_server.data = listener;
    listener->tcp_server_open = true;
    listener->handles_open++;
    rc = uv_tcp_open(&listener->tcp_server, listener->tcp_fd);
    if (rc != 0) {
        ballast_set_error(err_text, err_len, "uv_tcp_open: %s", uv_strerror(rc));
        return BALLAST_EIO;
    }
    listener->tcp_fd = -1; /* owned by the handle now */
    rc = uv_listen((uv_stream_t *)&listener->tcp_server, LISTENER_TCP_BACKLOG,
                   listener_tcp_on_connection);
    if (rc != 0) {
        ballast_set_error(err_text, err_len, "uv_listen: %s", uv_strerror(rc));
        return BALLAST_EIO;
    }
    return 0;
}

/* ---- lifetime ---- */

static void listener_apply_defaults(struct listener_options *options)
{
    if (options->tcp_clients == 0)
        options->tcp_clients = LIMIT_DEFAULT_TCP_CLIENTS;
    if (options->tcp_idle_timeout_ms == 0)
        options->tcp_idle_timeout_ms = LIMIT_DEFAULT_TCP_IDLE_TIMEOUT_MS;
    if (options->tcp_pipeline == 0)
        options->tcp_pipeline = LIMIT_DEFAULT_TCP_PIPELINE;
}

static int listener_open_common(uv_loop_t *loop, const struct addr *addr,
                                const struct listener_options *options, listener_query_fn on_query,
                                listener_deferred_fn on_deferred, void *ctx, struct listener **out,
                                char *err_text, size_t err_len)
{
    *out = NULL;
    if (addr->ss.ss_family != AF_INET && addr->ss.ss_family != AF_INET6) {
        ballast_set_error(err_text, err_len, "listener address is not IPv4 or IPv6");
        return BALLAST_EINVAL;
    }
    if (!options->udp && !options->tcp) {
        ballast_set_error(err_text, err_len, "listener needs UDP or TCP");
        return BALLAST_EINVAL;
    }
    struct listener *listener = calloc(1, sizeof(*listener));
    if (listener == NULL)
        goto out_of_memory;
    listener->loop = loop;
    listener->options = *options;
    listener_apply_defaults(&listener->options);
    listener->on_query = on_query;
    listener->on_deferred = on_deferred;
    listener->ctx = ctx;
    listener->family = addr->ss.ss_family;
    listener->udp_fd = -1;
    listener->tcp_fd = -1;
    listener->udp_pktinfo = listener_addr_is_wildcard(addr);
    listener->resp = malloc(LIMIT_DNS_MESSAGE_MAX);
    if (listener->resp == NULL)
        goto out_of_memory;
    if (options->udp) {
        listener->udp = malloc(sizeof(*listener->udp));
        if (listener->udp == NULL)
            goto out_of_memory;
    }

    int rc = listener_bind_all(listener, addr, err_text, err_len);
    if (rc != 0) {
        free(listener->udp);
        free(listener->resp);
        free(listener);
        return rc;
    }
    if (options->udp)
        rc = listener_udp_start(listener, err_text, err_len);
    if (rc == 0 && options->tcp)
        rc = listener_tcp_start(listener, err_text, err_len);
    if (rc != 0) {
        /* Handles may be open already: they are freed by the close callbacks. */
        listener_close(listener);
        return rc;
    }
    *out = listener;
    return 0;

out_of_memory:
    if (listener != NULL) {
        free(listener->udp);
        free(listener->resp);
        free(listener);
    }
    ballast_set_error(err_text, err_len, "out of memory opening listener");
    return BALLAST_ENOMEM;
}

int listener_open(uv_loop_t *loop, const struct addr *addr, const struct listener_options *options,
                  listener_query_fn on_query, void *ctx, struct listener **out, char *err_text,
                  size_t err_len)
{
    return listener_open_common(loop, addr, options, on_query, NULL, ctx, out, err_text, err_len);
}

void listener_close(struct listener *listener)
{
    if (listener == NULL || listener->closing)
        return;
    listener->closing = true;
    if (listener->udp_poll_open) {
        uv_poll_stop(&listener->udp_poll);
        uv_close((uv_handle_t *)&listener->udp_poll, listener_udp_on_close);
    } else if (listener->udp_fd >= 0) {
        close(listener->udp_fd);
        listener->udp_fd = -1;
    }
    if (listener->tcp_server_open)
        uv_close((uv_handle_t *)&listener->tcp_server, listener_tcp_on_close);
    if (listener->tcp_fd >= 0) {
        close(listener->tcp_fd);
        listener->tcp_fd = -1;
    }
    while (listener->conns != NULL)
        tcp_conn_close(listener->conns);
    listener_maybe_free(listener);
}

int listener_open_deferred(uv_loop_t *loop, const struct addr *addr,
                           const struct listener_options *options, listener_deferred_fn on_query,
                           void *ctx, struct listener **out, char *err_text, size_t err_len)
{
    int rc = listener_open_common(loop, addr, options, NULL, on_query, ctx, out, err_text, err_len);
    return rc;
}

/* Release a token; frees the connection or listener if they closed while it was out. */
static void listener_reply_release(struct listener_reply *reply)
{
    struct listener *listener = reply->listener;
    struct tcp_conn *conn = reply->conn;
    free(reply);
    if (conn != NULL) {
        conn->deferred--;
        if (conn->closing && conn->deferred == 0 && conn->handles_open == 0) {
            free(conn->rbuf);
            free(conn);
            listener->handles_open--;
        } else if (!conn->closing) {
            if (conn->eof && tcp_conn_idle(conn))
                tcp_conn_close(conn);
            else if (!conn->reading && !conn->eof && !tcp_conn_pipeline_full(conn))
                tcp_conn_read_start(conn);
        }
    }
    listener->deferred--;
    listener_maybe_free(listener);
}

/* An answer given while its batch is still being read (a cache hit) goes out with the batch's
 * sendmmsg instead of a sendmsg of its own. Returns false when it cannot be queued. */
static bool listener_udp_queue_reply(struct listener *listener, const struct listener_reply *reply,
                                     const uint8_t *resp, size_t len)
{
    struct listener_udp *udp = listener->udp;
    unsigned slot = listener->udp_batch_slots;
    if (!listener->udp_in_batch || slot >= LISTENER_UDP_BATCH || len > LISTENER_UDP_SLOT_SIZE)
        return false;
    memcpy(&udp->send_peers[slot], &reply->peer, reply->peer_len);
    memcpy(&udp->send_control[slot], &reply->control, reply->control_len);
    memcpy(udp->send_buf[slot], resp, len);
    udp->send_iov[slot] = (struct iovec){.iov_base = udp->send_buf[slot], .iov_len = len};
    struct msghdr *out = &udp->send_msgs[slot].msg_hdr;
    *out = (struct msghdr){
        .msg_name = &udp->send_peers[slot],
        .msg_namelen = reply->peer_len,
        .msg_iov = &udp->send_iov[slot],
        .msg_iovlen = 1,
        .msg_control = reply->control_len ? udp->send_control[slot].bytes : NULL,
        .msg_controllen = reply->control_len,
    };
    listener_udp_prepare_reply_control(out);
    listener->udp_batch_slots++;
    return true;
}

void listener_reply_send(struct listener_reply *reply, const uint8_t *resp, size_t len)
{
    struct listener *listener = reply->listener;
    if (len > LIMIT_DNS_MESSAGE_MAX)
        len = LIMIT_DNS_MESSAGE_MAX;
    if (reply->conn != NULL) {
        struct tcp_conn *conn = reply->conn;
        if (!conn->closing && tcp_conn_send(conn, resp, len) != 0)
            tcp_conn_close(conn);
    } else if (!listener->closing && listener->udp_fd >= 0 &&
               !listener_udp_queue_reply(listener, reply, resp, len)) {
        struct iovec iov = {.iov_base = (void *)resp, .iov_len = len};
        struct msghdr msg = {
            .msg_name = &reply->peer,
            .msg_namelen = reply->peer_len,
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = reply->control_len ? reply->control.bytes : NULL,
            .msg_controllen = reply->control_len,
        };
        listener_udp_prepare_reply_control(&msg);
        ssize_t sent;
        do {
            sent = sendmsg(listener->udp_fd, &msg, 0);
        } while (sent < 0 && errno == EINTR);
        listener_count(sent < 0 ? &listener->stats.udp_send_errors : &listener->stats.udp_sent, 1);
    }
    listener_reply_release(reply);
}

void listener_reply_drop(struct listener_reply *reply)
{
    listener_reply_release(reply);
}

bool listener_reply_is_tcp(const struct listener_reply *reply)
{
    return reply->conn != NULL;
}

const struct listener_stats *listener_get_stats(const struct listener *listener)
{
    return &listener->stats;
}

void listener_stats_add(struct listener_stats *sum, const struct listener *listener)
{
    const struct listener_stats *s = &listener->stats;
    sum->udp_received += __atomic_load_n(&s->udp_received, __ATOMIC_RELAXED);
    sum->udp_sent += __atomic_load_n(&s->udp_sent, __ATOMIC_RELAXED);
    sum->udp_send_errors += __atomic_load_n(&s->udp_send_errors, __ATOMIC_RELAXED);
    sum->tcp_accepted += __atomic_load_n(&s->tcp_accepted, __ATOMIC_RELAXED);
    sum->tcp_refused += __atomic_load_n(&s->tcp_refused, __ATOMIC_RELAXED);
    sum->tcp_idle_closed += __atomic_load_n(&s->tcp_idle_closed, __ATOMIC_RELAXED);
    sum->tcp_received += __atomic_load_n(&s->tcp_received, __ATOMIC_RELAXED);
    sum->tcp_sent += __atomic_load_n(&s->tcp_sent, __ATOMIC_RELAXED);
    sum->tcp_bad_frames += __atomic_load_n(&s->tcp_bad_frames, __ATOMIC_RELAXED);
}

uint16_t listener_port(const struct listener *listener)
{
    return listener->port;
}
