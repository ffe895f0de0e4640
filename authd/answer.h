/* Answer building for ballast-authd: one query in wire form → one response in wire form, from an
 * immutable zone set (RFC 1034 §4.3.2 with RFC 2308, 4592, 6891, 8482 and 9471). Pure logic: no
 * sockets, no allocation, no locks, so each worker calls it on its own buffers. */
#ifndef BALLAST_ANSWER_H
#define BALLAST_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limit.h"
#include "zone.h"

struct sockaddr;

/* What happened to one query, for counters and logs. */
enum answer_outcome {
    ANSWER_DROPPED = 0, /* nothing sent: shorter than a header, or a response (QR=1) */
    ANSWER_SENT,        /* a response was built; see rcode */
};

struct answer_info {
    enum answer_outcome outcome;
    uint16_t rcode;     /* extended RCODE (BADVERS = 16) */
    bool truncated;     /* TC=1 was set */
    bool authoritative; /* AA=1 was set */
    bool referral;      /* a delegation was returned */
};

/* Answer `query` (query_len bytes) from zones into resp (resp_cap bytes). over_tcp selects the
 * 65535-byte limit; over UDP the limit is 512 without EDNS, else min(client's size, ours) and
 * at least 512 (RFC 6891 §6.2.5). Returns the response length, or 0 when nothing must be sent.
 * zones may be NULL (every query is REFUSED). */
size_t answer_query(const struct zone_set *zones, const struct limits *limits, const uint8_t *query,
                    size_t query_len, uint8_t *resp, size_t resp_cap, bool over_tcp,
                    struct answer_info *info);

/* The same, with health-checked pools (NULL: none): an RRset owned by a pool is answered with
 * the members the pool publishes. Call inside an RCU read-side critical section. */
struct healthd;
size_t answer_query_health(const struct zone_set *zones, const struct healthd *health,
                           const struct limits *limits, const uint8_t *query, size_t query_len,
                           uint8_t *resp, size_t resp_cap, bool over_tcp, struct answer_info *info);

/* Who asked, for DNS cookies (RFC 7873, RFC 9018): a query with a COOKIE option is answered
 * with the client cookie and a fresh server cookie for peer (common/cookie.h); a malformed one
 * gets FORMERR (RFC 7873 §5.2.2). */
struct answer_client {
    const struct sockaddr *peer;
    uint32_t now; /* seconds since the epoch, the server cookie's timestamp */
};

/* answer_query_health with cookies; client NULL: COOKIE options are ignored. */
size_t answer_query_client(const struct zone_set *zones, const struct healthd *health,
                           const struct answer_client *client, const struct limits *limits,
                           const uint8_t *query, size_t query_len, uint8_t *resp, size_t resp_cap,
                           bool over_tcp, struct answer_info *info);

#endif
