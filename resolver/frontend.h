/* The resolver's frontend: client queries arrive on a worker's listeners, pass the ACL and the
 * checks, and are answered from the cache or handed to the iterator; the answer goes back when
 * resolution ends or the client's patience (query-timeout) runs out. Also the snapshot of
 * config that workers read and reloads replace. */
#ifndef BALLAST_FRONTEND_H
#define BALLAST_FRONTEND_H

#include <stdint.h>
#include <uv.h>

#include "cache.h"
#include "infra.h"
#include "iterate.h"
#include "listener.h"
#include "metrics.h"
#include "outbound.h"
#include "resolver_config.h"
#include "stale.h"

/* Config and hints as published to the workers. Reference counted: every client query holds
 * one reference for its whole life, so a reload never frees a config still in use. */
struct frontend_snapshot {
    struct resolver_config cfg;
    struct iter_hints hints;
    struct rrl *client_limits; /* cfg.client_limits' table, shared by the workers; NULL: off */
    uint32_t refs;
};

/* Take ownership of cfg (moved) and hints into a new snapshot with one reference, and a fresh
 * client-limits table when cfg has one. NULL when out of memory (cfg is then still the
 * caller's). */
struct frontend_snapshot *frontend_snapshot_new(struct resolver_config *cfg,
                                                const struct iter_hints *hints);
void frontend_snapshot_release(struct frontend_snapshot *snapshot);

/* Counters of one worker (single writer; read with relaxed loads). */
enum frontend_counter {
    FRONTEND_QUERIES,
    FRONTEND_QUERIES_TCP,
    FRONTEND_CACHE_ANSWERS, /* answered without an upstream query */
    FRONTEND_RESOLVED,      /* answered after iterating */
    FRONTEND_NOERROR,
    FRONTEND_NXDOMAIN,
    FRONTEND_SERVFAIL,
    FRONTEND_REFUSED,
    FRONTEND_FORMERR,
    FRONTEND_NOTIMP,
    FRONTEND_DROPPED, /* malformed beyond answering, or denied by the ACL */
    FRONTEND_ACL_REFUSED,
    FRONTEND_TIMEOUTS,          /* query-timeout reached before resolution ended */
    FRONTEND_STALE_ANSWERS,     /* answers with stale data (RFC 8767), all reasons */
    FRONTEND_STALE_ON_TIMER,    /* ... because the client timer fired first */
    FRONTEND_STALE_ON_FAILURE,  /* ... because resolution failed */
    FRONTEND_STALE_AT_ONCE,     /* ... at once: failure recheck, refresh running, overload */
    FRONTEND_STALE_SUSPECT,     /* ... of which: a critical name answered empty */
    FRONTEND_PREFETCHES,        /* refreshes started before an entry expired */
    FRONTEND_REFRESHES,         /* refreshes left running after a stale answer */
    FRONTEND_REFRESHES_SKIPPED, /* not started: too many refreshes in flight */
    FRONTEND_OVERLOAD,          /* queries past max-pending (stale or SERVFAIL at once) */
    FRONTEND_CLIENT_LIMITED,    /* dropped: the client's prefix was over client-limits */
    FRONTEND_TRUNCATED,         /* answers sent with TC=1 (over the client's UDP size) */
    FRONTEND_COUNTER_COUNT
};
extern const char *const frontend_counter_names[FRONTEND_COUNTER_COUNT];

struct frontend_shared {
    struct cache *cache;
    struct infra *infra;
    struct stale_table *stale;           /* serve-stale bookkeeping shared by the workers */
    struct frontend_snapshot **snapshot; /* RCU-published pointer owned by main */
};

struct frontend;

/* Open a worker's frontend on loop: its outbound engine and listeners on every address of the
 * current snapshot. Returns 0 or a BALLAST_E* code with err_text. */
int frontend_open(uv_loop_t *loop, const struct frontend_shared *shared, struct frontend **out,
                  char *err_text, size_t err_len);
/* Close listeners, cancel every query in flight (their clients get nothing) and free once libuv
 * has closed the handles. Call on the loop thread. */
void frontend_close(struct frontend *frontend);
uint64_t frontend_counter(const struct frontend *frontend, enum frontend_counter counter);
void frontend_outbound_stats(const struct frontend *frontend, struct outbound_stats *out);
/* Add this worker's client listener counters (TCP accepted/refused/idle-closed/bad frames, UDP
 * send errors) to sum (relaxed loads). */
void frontend_add_listener_stats(const struct frontend *frontend, struct listener_stats *sum);
/* Add this worker's queries by QTYPE and answer latency histogram (receipt to reply sent,
 * whatever the source: cache, stale, resolved, error) to the sums (relaxed loads). */
void frontend_add_metrics(const struct frontend *frontend, struct metrics_qtypes *qtypes,
                          struct metrics_latency *latency);

#endif
