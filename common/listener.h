/* DNS listeners on a libuv loop: one UDP socket (batched recvmmsg/sendmmsg) and one TCP socket
 * (RFC 7766: length framing, pipelining, idle timeout, connection limit) per address per worker.
 * Sockets use SO_REUSEPORT so every worker thread binds the same address. */
#ifndef BALLAST_LISTENER_H
#define BALLAST_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "addr.h"

/* Answer one query. Write the response into resp (resp_cap bytes, always >= 65535) and return
 * its length, or 0 to send nothing. Called on the loop thread; must not block. */
typedef size_t (*listener_query_fn)(void *ctx, const uint8_t *query, size_t query_len,
                                    uint8_t *resp, size_t resp_cap, const struct sockaddr *peer,
                                    bool over_tcp);

struct listener_options {
    uint32_t tcp_clients;         /* max open TCP connections on this listener; more are closed */
    uint32_t tcp_idle_timeout_ms; /* close a TCP connection idle this long */
    uint32_t tcp_pipeline;        /* max queries read ahead of answers per TCP connection */
    bool udp;                     /* open the UDP socket */
    bool tcp;                     /* open the TCP socket */
};

/* Counters, updated on the loop thread; read from others with relaxed loads. */
struct listener_stats {
    uint64_t udp_received;
    uint64_t udp_sent;
    uint64_t udp_send_errors;
    uint64_t tcp_accepted;
    uint64_t tcp_refused;     /* closed at once: connection limit reached */
    uint64_t tcp_idle_closed; /* closed by the idle timeout */
    uint64_t tcp_received;
    uint64_t tcp_sent;
    uint64_t tcp_bad_frames; /* zero-length or otherwise bad length prefix */
};

struct listener;

/* Open UDP and/or TCP sockets on addr with SO_REUSEPORT and start serving on loop. The listener
 * is owned by the caller and must be released with listener_close() on the loop thread.
 * Returns 0 or a negative BALLAST_E* code (err_text gets a human-readable reason). */
int listener_open(uv_loop_t *loop, const struct addr *addr, const struct listener_options *options,
                  listener_query_fn on_query, void *ctx, struct listener **out, char *err_text,
                  size_t err_len);

/* Stop serving, close every connection and free the listener once libuv has closed all handles.
 * Call on the loop thread; the loop must run afterwards for the close callbacks. */
void listener_close(struct listener *listener);

/* Deferred answers, for servers that answer later (the resolver). The callback receives a reply
 * token it owns until it calls listener_reply_send() or listener_reply_drop(), on the loop
 * thread, exactly once. peer points into the token. If the client's TCP connection or the
 * listener closed meanwhile, the answer is dropped; the token keeps the memory valid. */
struct listener_reply;
typedef void (*listener_deferred_fn)(void *ctx, const uint8_t *query, size_t query_len,
                                     const struct sockaddr *peer, bool over_tcp,
                                     struct listener_reply *reply);

int listener_open_deferred(uv_loop_t *loop, const struct addr *addr,
                           const struct listener_options *options, listener_deferred_fn on_query,
                           void *ctx, struct listener **out, char *err_text, size_t err_len);
/* Send resp (copied; over TCP with its length prefix) and release the token. */
void listener_reply_send(struct listener_reply *reply, const uint8_t *resp, size_t len);
/* Release the token without answering. */
void listener_reply_drop(struct listener_reply *reply);
bool listener_reply_is_tcp(const struct listener_reply *reply);

const struct listener_stats *listener_get_stats(const struct listener *listener);
/* Add listener's counters to sum, each read atomically: safe from another thread. */
void listener_stats_add(struct listener_stats *sum, const struct listener *listener);

/* The bound port (useful when opened with port 0 in tests). */
uint16_t listener_port(const struct listener *listener);

#endif
