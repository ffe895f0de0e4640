/* The client load of `ballast replay`: asynchronous DNS queries on a libuv loop at a fixed rate
 * over a weighted mix of names, each with its own timeout, classified and counted per second
 * (answers with data, stale answers, NODATA/NXDOMAIN, SERVFAIL, timeouts, latency p50/p99). */
#ifndef BALLAST_LOADGEN_H
#define BALLAST_LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "addr.h"
#include "wire.h"

struct loadgen_name {
    uint8_t wire[WIRE_NAME_MAX];
    size_t wire_len;
    uint16_t qtype;
    uint32_t weight;  /* share of the queries, relative to the others (>= 1) */
    bool never_empty; /* count NODATA/NXDOMAIN/SERVFAIL/timeouts for it as violations */
};

struct loadgen_options {
    struct addr server;               /* the resolver under test (UDP) */
    const struct loadgen_name *names; /* copied */
    size_t name_count;
    uint32_t rate;       /* queries per second, all clients together (> 0) */
    uint32_t clients;    /* UDP sockets the queries are spread over (>= 1), random source ports */
    uint32_t timeout_ms; /* a query without an answer after this counts as a timeout */
};

/* One second of the run (real time since loadgen_start, bucket i = [i s, i+1 s)). Queries are
 * counted in the second they were sent. */
struct loadgen_second {
    uint64_t sent;
    uint64_t answered;  /* any response */
    uint64_t with_data; /* NOERROR with at least one record of the asked type (or a CNAME) */
    uint64_t stale;     /* ... of which carried EDE 3 or 19 (RFC 8914) */
    uint64_t nodata;    /* NOERROR without data */
    uint64_t nxdomain;
    uint64_t servfail;
    uint64_t other_rcode; /* REFUSED, FORMERR, ... */
    uint64_t timeouts;
    uint64_t never_empty_violations;
    uint32_t p50_us, p99_us, max_us; /* latency of the answered queries (0 when none) */
    uint64_t upstream;               /* filled in by the caller (resolver stats), not by loadgen */
};

struct loadgen;

/* Start sending on loop at once. Returns 0, BALLAST_EINVAL or BALLAST_ENOMEM / BALLAST_ESYS. */
int loadgen_start(uv_loop_t *loop, const struct loadgen_options *options, struct loadgen **out);
/* Stop sending; queries in flight still complete or time out; done (may be NULL) runs once
 * the last one has, on the loop. */
void loadgen_stop(struct loadgen *lg, void (*done)(void *ctx), void *ctx);
/* The seconds so far (including the current one); valid until the next loop iteration. */
const struct loadgen_second *loadgen_seconds(const struct loadgen *lg, size_t *count);
/* Close handles and free; call on the loop thread after stop's done (the loop must run). */
void loadgen_free(struct loadgen *lg);

#endif
