/* The iterator: resolves one question from the cache and by querying authorities from the root
 * hints down (or forwarders), following referrals, CNAMEs and QNAME minimisation (RFC 9156,
 * relaxed), within per-query budgets. It knows nothing of sockets: upstream queries go through
 * the iter_transport functions, which production points at outbound.c and tests at fakes. */
#ifndef BALLAST_ITERATE_H
#define BALLAST_ITERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "cache.h"
#include "infra.h"
#include "resolver_config.h"
#include "stale.h"

#define ITER_MAX_HINTS 64       /* root server addresses kept from the hints file */
#define ITER_MAX_SERVERS 64     /* addresses considered for one delegation */
#define ITER_MAX_ANSWER 32      /* RRsets in one answer (CNAME chain plus data) */
#define ITER_MAX_DEPTH 4        /* nested resolutions of NS names */
#define ITER_MAX_SERVER_TRIES 8 /* upstream tries against one delegation before SERVFAIL */

/* Root hints: the root servers' addresses (port = upstream port). */
struct iter_hints {
    struct addr addrs[ITER_MAX_HINTS];
    size_t count;
};

/* Read a hints file (master-file format: NS records for "." and A/AAAA of those names).
 * Addresses get port `port`. Errors name file and line. */
int iter_hints_load(const char *path, uint16_t port, struct iter_hints *hints, char *err,
                    size_t err_len);

/* One upstream question as the iterator wants it sent. */
struct iter_send {
    const struct addr *server;
    const uint8_t *qname;
    size_t qname_len;
    uint16_t qtype;
    bool rd; /* recursion desired: only for forward zones */
    bool edns;
    uint32_t timeout_ms;
};

/* Completion of a send: status 0 with the matched response, else BALLAST_ETIMEOUT, BALLAST_EIO,
 * BALLAST_ECANCELED. */
typedef void (*iter_send_done_fn)(void *ctx, int status, const uint8_t *resp, size_t resp_len,
                                  uint32_t rtt_ms);

struct iter_transport {
    /* Start a send; returns 0 and later calls done exactly once (never from inside send), or an
     * error and never calls it. *handle identifies it for cancel. */
    int (*send)(void *io, const struct iter_send *q, iter_send_done_fn done, void *ctx,
                void **handle);
    void (*cancel)(void *io, void *handle); /* done is not called afterwards */
    void *io;
    uint64_t (*now_ms)(void *io);
};

/* What the iterator needs, shared by every request of a worker. Not owned. */
struct iter_env {
    struct cache *cache;
    struct infra *infra;
    const struct resolver_config *cfg;
    const struct iter_hints *hints;
    struct iter_transport transport;
    struct stale_table *stale; /* serve-stale bookkeeping (suspicion window); may be NULL */
};

/* Per client query counters, also reported in stats. */
struct iter_budget {
    uint32_t referrals;
    uint32_t ns_names;
    uint32_t outbound;
    uint32_t chain;
};

struct iter_request;

/* Called once when the request finishes (answer, negative answer or failure); the request stays
 * valid until iter_request_free(). */
typedef void (*iter_done_fn)(void *ctx, struct iter_request *req);

/* Start resolving qname (any case, wire form)/qtype/class IN. The request is owned by the
 * caller (iter_request_free, which also cancels it if unfinished). done may run before this
 * returns (cache hit). Returns 0 or BALLAST_ENOMEM / BALLAST_EINVAL. */
int iter_request_start(struct iter_env *env, const uint8_t *qname, size_t qname_len, uint16_t qtype,
                       iter_done_fn done, void *ctx, struct iter_request **out);
/* Answer only from the cache (RD=0 queries): done runs before this returns. */
int iter_request_cache_only(struct iter_env *env, const uint8_t *qname, size_t qname_len,
                            uint16_t qtype, iter_done_fn done, void *ctx,
                            struct iter_request **out);
void iter_request_free(struct iter_request *req);

/* The same as iter_request_start in steps, so a caller can decide between them: create the
 * request (nothing is looked up or sent), try the cache (true: answered, done has run), then
 * run it (upstream queries; done runs later, or before iter_request_run returns). */
int iter_request_create(struct iter_env *env, const uint8_t *qname, size_t qname_len,
                        uint16_t qtype, iter_done_fn done, void *ctx, struct iter_request **out);
bool iter_request_try_cache(struct iter_request *req);
void iter_request_run(struct iter_request *req);
/* Before run: never answer the question from the cache, ask the authorities again (prefetch and
 * background refresh); delegations still come from the cache. */
void iter_request_set_refresh(struct iter_request *req);

/* Build an answer from the cache accepting stale entries (RFC 8767): their TTL becomes
 * cfg->stale.stale_ttl. Returns 0 with a finished request (data, NODATA or NXDOMAIN; owned by
 * the caller, iter_request_free; no done callback), BALLAST_ENOTFOUND when the cache cannot
 * answer the whole question, or BALLAST_ENOMEM / BALLAST_EINVAL. */
int iter_request_stale(struct iter_env *env, const uint8_t *qname, size_t qname_len, uint16_t qtype,
                       struct iter_request **out);

/* Results, valid after done. rcode is NOERROR, NXDOMAIN, SERVFAIL or REFUSED. */
uint16_t iter_request_rcode(const struct iter_request *req);
const struct iter_budget *iter_request_budget(const struct iter_request *req);
/* A short reason for SERVFAIL ("no servers reachable", "referral limit", ...), or NULL. */
const char *iter_request_failure(const struct iter_request *req);
/* Was some RRset of the answer stale (iter_request_stale)? */
bool iter_request_from_stale(const struct iter_request *req);
/* Did the answer come from a cache entry within its prefetch window (cfg->stale.prefetch)? */
bool iter_request_prefetch_due(const struct iter_request *req);
/* Did it fail because a critical name that had data answered empty (the suspicion window)? */
bool iter_request_suspect(const struct iter_request *req);
/* The Extended DNS Error for the response (RFC 8914): 3 or 19 for stale answers; 22 (no
 * reachable authority) or 23 (network error) for SERVFAIL because no server answered;
 * STALE_EDE_NONE otherwise. */
int iter_request_ede(const struct iter_request *req);

/* Write the response to the client's query (query is the client's packet, already parsed into
 * q) into resp (limit bytes: 512/EDNS size over UDP, 65535 over TCP): header with RA, the
 * question as received, the answer chain, the SOA for negative answers, OPT when the client
 * sent one; TC=1 when it does not fit. Returns the length. */
struct wire_query;
size_t iter_write_response(const struct iter_request *req, const uint8_t *query,
                           const struct wire_query *q, uint16_t edns_size, uint8_t *resp,
                           size_t limit);

/* The next QNAME-minimised name (RFC 9156 §2.3): given the target (lowercase wire) and how many
 * labels the last query had (`labels_done`, at least the zone's), write the next name to ask
 * and return its label count; when it returns the target's own label count, minimisation is
 * over and the real QTYPE must be used. First four steps add one label each, then the rest is
 * spread so that at most 10 queries are made (MAX_MINIMISE_COUNT, MINIMISE_ONE_LAB). */
/* A SERVFAIL response to the client's query with the Extended DNS Error ede (or STALE_EDE_NONE)
 * when the client sent EDNS. Returns the length, 0 if limit is too small. */
size_t iter_write_servfail(const uint8_t *query, const struct wire_query *q, uint16_t edns_size,
                           int ede, uint8_t *resp, size_t limit);

unsigned iter_qmin_next(const uint8_t *target, size_t target_len, unsigned labels_done,
                        unsigned zone_labels, uint8_t *out, size_t *out_len);

#endif
