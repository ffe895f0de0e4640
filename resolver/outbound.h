/* Upstream query engine of the resolver: builds a query, sends it over UDP from a random source
 * port with a random ID (TCP on TC=1 or on request), accepts only a matching answer, and
 * coalesces identical outstanding exchanges. One `struct outbound` per worker loop. */
#ifndef BALLAST_OUTBOUND_H
#define BALLAST_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "addr.h"

#define OUTBOUND_DEFAULT_EDNS_UDP_SIZE 1232u   /* DNS flag day 2020 */
#define OUTBOUND_DEFAULT_TCP_TIMEOUT_MS 5000u  /* connect + write + read of one TCP exchange */
#define OUTBOUND_DEFAULT_MAX_OUTSTANDING 4096u /* exchanges in flight per outbound */
#define OUTBOUND_SOURCE_PORT_MIN 1024u         /* random UDP source ports: 1024..65535 */

struct outbound_options {
    uint16_t edns_udp_size;   /* advertised in the OPT record; 0: 1232 */
    uint32_t tcp_timeout_ms;  /* whole TCP exchange (connect, write, answer); 0: default */
    uint32_t max_outstanding; /* exchanges in flight; one more → BALLAST_ELIMIT; 0: default */
};

/* Called once per waiter with status 0 and the full response (already matched: source address
 * and port, ID, question, QR=1), or with resp NULL and BALLAST_ETIMEOUT, BALLAST_EIO (ICMP
 * unreachable, connection refused or reset, socket error) or BALLAST_ECANCELED (outbound_free).
 * resp is valid only during the call. rtt_ms is measured from when the packet that got this
 * answer was sent (the TCP connect for TCP), so coalesced waiters see the exchange's RTT. The
 * request handle is released when the callback returns. The callback is never called from
 * inside outbound_send or outbound_cancel; it may call outbound_send, outbound_cancel (other
 * requests) and outbound_free. */
typedef void (*outbound_done_fn)(void *ctx, int status, const uint8_t *resp, size_t resp_len,
                                 uint32_t rtt_ms);

struct outbound;
struct outbound_request;

/* Create an outbound on loop (which the caller owns and keeps running). o may be NULL for the
 * defaults. The process must ignore SIGPIPE: libuv writes TCP with write(), and an upstream may
 * reset. Returns 0, BALLAST_ENOMEM or BALLAST_ESYS (libsodium failed to initialise). */
int outbound_create(uv_loop_t *loop, const struct outbound_options *o, struct outbound **out);

/* Cancel everything in flight (every waiter's callback runs with BALLAST_ECANCELED before this
 * returns) and free the outbound once its handles have closed: the caller must keep running the
 * loop until then (uv_run returning, or uv_loop_close succeeding, proves it). Sends after this
 * fail with BALLAST_ECANCELED. Call on the loop's thread. */
void outbound_free(struct outbound *ob);

/* What to ask. Everything is copied by outbound_send; the caller keeps ownership. */
struct outbound_query {
    const struct addr *server; /* AF_INET or AF_INET6 with a nonzero port; the only peer used */
    const uint8_t *qname;      /* uncompressed wire name, sent with its case as given */
    size_t qname_len;
    uint16_t qtype, qclass;
    bool edns;           /* add an OPT record (RFC 6891) with edns_udp_size, DO bit clear */
    bool tcp;            /* skip UDP and ask over TCP */
    bool rd;             /* recursion desired: set for forwarders, clear when iterating */
    uint32_t timeout_ms; /* UDP wait for an answer (> 0); TCP uses tcp_timeout_ms */
};

/* Ask q and call cb(ctx, ...) once with the result. When an identical exchange (same server
 * address and port, qname without regard to case, qtype, qclass, edns, tcp and rd) is in flight,
 * the caller joins it as another waiter instead of sending a packet (stats.coalesced; a joined
 * waiter does not count against max_outstanding and shares the exchange's timeout).
 * *handle (may be NULL) is owned by outbound until the callback returns or outbound_cancel.
 * Returns 0; BALLAST_EINVAL (bad name, address or timeout), BALLAST_ELIMIT (max_outstanding
 * exchanges in flight), BALLAST_ECANCELED (outbound is being freed), BALLAST_ENOMEM, or
 * BALLAST_EIO/BALLAST_ESYS (socket setup failed); on error cb is never called. */
int outbound_send(struct outbound *ob, const struct outbound_query *q, outbound_done_fn cb,
                  void *ctx, struct outbound_request **handle);

/* Forget one waiter: its callback is NOT called, and the handle is freed. The exchange stops
 * (sockets closed) when no waiter is left. Must not be called on a request whose callback has
 * already run; called from inside its own callback, it does nothing. */
void outbound_cancel(struct outbound_request *req);

/* Counters per exchange (not per waiter), except coalesced (one per joined waiter). */
struct outbound_stats {
    uint64_t sent_udp;     /* UDP queries sent */
    uint64_t sent_tcp;     /* TCP queries written */
    uint64_t answers;      /* exchanges that ended with a matching answer */
    uint64_t timeouts;     /* exchanges that ended with BALLAST_ETIMEOUT */
    uint64_t errors;       /* exchanges that ended with BALLAST_EIO */
    uint64_t mismatched;   /* responses ignored: wrong ID, question, QR or malformed */
    uint64_t tc_fallbacks; /* UDP answers with TC=1 retried over TCP */
    uint64_t coalesced;    /* sends that joined an exchange already in flight */
    uint64_t bad_cookie;   /* UDP responses dropped: COOKIE with a client cookie we did not send,
                            * or none from a server that gave us a server cookie before */
};

/* Copy the counters; safe to call from another thread (each counter is read atomically). */
void outbound_get_stats(const struct outbound *ob, struct outbound_stats *out);

#endif
