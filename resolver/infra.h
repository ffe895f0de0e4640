/* The infra cache: per-upstream-server state (smoothed RTT, retransmission timeout with backoff,
 * hold-down of failing servers, "no EDNS" memory) and the choice of which server to ask next.
 * Plain data and functions, no I/O; time is passed in as now_ms. Thread-safe (sharded locks). */
#ifndef BALLAST_INFRA_H
#define BALLAST_INFRA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* Defaults (overridable through struct infra_config). */
#define INFRA_DEFAULT_MAX_ENTRIES 10000u
#define INFRA_DEFAULT_SHARDS 16u
#define INFRA_DEFAULT_UNKNOWN_RTO_MS 376u      /* Unbound's UNKNOWN_SERVER_NICENESS */
#define INFRA_DEFAULT_MIN_RTO_MS 50u           /* below this a timeout is only jitter */
#define INFRA_DEFAULT_MAX_RTO_MS 12000u        /* backoff ceiling for one server */
#define INFRA_DEFAULT_FAIL_THRESHOLD 5u        /* consecutive failures before hold-down */
#define INFRA_DEFAULT_HOLDDOWN_MS 30000u       /* first hold-down; doubles on each repeat */
#define INFRA_DEFAULT_HOLDDOWN_MAX_MS 600000u  /* hold-down ceiling */
#define INFRA_DEFAULT_PROBE_INTERVAL_MS 10000u /* at most one probe per held-down server */
#define INFRA_DEFAULT_NOEDNS_TTL_MS 900000u    /* how long "no EDNS" is remembered */
#define INFRA_DEFAULT_HOST_TTL_MS 900000u      /* state idle this long is forgotten */
#define INFRA_DEFAULT_EXPLORE_PERMILLE 50u     /* 5 %: pick any healthy server */
#define INFRA_DEFAULT_BAND_MS 400u             /* Unbound's RTT_BAND: "as good as the best" */

struct infra_config {
    uint32_t max_entries;       /* servers remembered; least recently used are evicted */
    uint32_t shards;            /* independently locked parts of the table */
    uint32_t unknown_rto_ms;    /* RTO of a server never measured */
    uint32_t min_rto_ms;        /* RTO clamp, RFC 6298 §2.4 (lower than its 1 s for DNS) */
    uint32_t max_rto_ms;        /* RTO clamp and backoff ceiling, RFC 6298 §2.5 and §5.5 */
    uint32_t fail_threshold;    /* consecutive failures that start a hold-down */
    uint32_t holddown_ms;       /* first hold-down period */
    uint32_t holddown_max_ms;   /* ceiling of the doubling hold-down */
    uint32_t probe_interval_ms; /* a held-down server gets at most one query per interval */
    uint32_t noedns_ttl_ms;     /* lifetime of the "no EDNS" mark */
    uint32_t host_ttl_ms;       /* an entry not updated for this long starts afresh */
    uint32_t explore_permille;  /* chance (per mille) to pick uniformly among healthy servers */
    uint32_t band_ms;           /* servers within this of the best RTO are picked at random */
    uint32_t holddown_jitter_percent; /* hold-downs vary by up to +/- this % (0: exact) */
    bool fail_when_all_held;          /* infra_select: no server when all are held down (rule 3) */
};

/* Fill with the INFRA_DEFAULT_* values. */
void infra_config_defaults(struct infra_config *config);

/* A source of uniform random numbers in [0, upper_bound) (upper_bound >= 1). Production code
 * passes NULL to infra_select() and gets libsodium's randombytes_uniform(); tests inject one. */
struct infra_random {
    uint32_t (*uniform)(void *ctx, uint32_t upper_bound);
    void *ctx;
};

struct infra;

/* Create an infra cache. config NULL means defaults; values of 0 are replaced by the defaults,
 * except explore_permille and band_ms where 0 is meaningful. Returns 0, BALLAST_EINVAL (e.g.
 * min_rto_ms > max_rto_ms) or BALLAST_ENOMEM. The caller owns *out; free with infra_free(). */
int infra_create(const struct infra_config *config, struct infra **out);
void infra_free(struct infra *infra);

/* Timeout to use for the next query to server (RFC 6298 §2: SRTT + 4 * RTTVAR, clamped, or the
 * backed-off value after timeouts). Unknown servers get unknown_rto_ms. */
uint32_t infra_rto(struct infra *infra, const struct addr *server, uint64_t now_ms);

/* The server answered after rtt_ms: fold the sample into SRTT/RTTVAR (RFC 6298 §2.2-2.3),
 * recompute the RTO, clear consecutive failures and any hold-down. Any well-formed answer
 * counts, whatever its RCODE: the server is reachable. Returns 0 or BALLAST_ENOMEM. */
int infra_report_rtt(struct infra *infra, const struct addr *server, uint32_t rtt_ms,
                     uint64_t now_ms);

/* No answer within the RTO: back off (RFC 6298 §5.5) and count a consecutive failure; at
 * fail_threshold failures the server is held down. sent_rto_ms is the infra_rto() the query was
 * sent with: the RTO becomes twice that (capped at max_rto_ms), so queries that time out
 * together double it once, and a timeout older than a fresh answer does not raise it. 0 means
 * "double the current RTO". Returns 0 or BALLAST_ENOMEM. */
int infra_report_timeout(struct infra *infra, const struct addr *server, uint32_t sent_rto_ms,
                         uint64_t now_ms);

/* The server answered, but uselessly (malformed, SERVFAIL to everything): count a consecutive
 * failure without touching the RTT estimate. Returns 0 or BALLAST_ENOMEM. */
int infra_report_failure(struct infra *infra, const struct addr *server, uint64_t now_ms);

/* Remember that server fails queries with EDNS but answers without (RFC 6891 §7 fallback), for
 * noedns_ttl_ms. Returns 0 or BALLAST_ENOMEM. */
int infra_set_noedns(struct infra *infra, const struct addr *server, uint64_t now_ms);
/* Should queries to server go without EDNS? */
bool infra_noedns(struct infra *infra, const struct addr *server, uint64_t now_ms);

/* Pick the server to query among candidates[0..count). Returns its index, BALLAST_EINVAL
 * when count is 0, or BALLAST_ELIMIT under rule 3 with fail_when_all_held (the retry budget
 * of those servers is spent until a probe is due: fail fast and let serve-stale answer).
 * Rules, in order:
 *  1. a held-down server whose probe is due (probe_interval_ms since hold-down or last probe)
 *     is picked, and its probe slot is taken (so concurrent callers do not probe it too);
 *  2. otherwise among servers not held down: with explore_permille chance any of them, else
 *     any whose RTO is within band_ms of the lowest RTO, uniformly at random;
 *  3. when every candidate is held down: the one whose hold-down ends first.
 * Duplicated candidates are allowed. random NULL means libsodium. */
int infra_select(struct infra *infra, const struct addr *candidates, size_t count, uint64_t now_ms,
                 const struct infra_random *random);

/* A copy of one server's state, for tests, stats and the control channel. */
struct infra_server_info {
    bool known;             /* false: never seen (or forgotten); the rest are defaults */
    bool measured;          /* at least one RTT sample */
    uint32_t srtt_ms;       /* smoothed RTT (0 when !measured) */
    uint32_t rttvar_ms;     /* RTT variance */
    uint32_t rto_ms;        /* what infra_rto() returns */
    uint32_t failures;      /* consecutive failures */
    uint32_t holddowns;     /* consecutive hold-downs (grows the period) */
    bool held_down;         /* held down at now_ms */
    uint64_t held_until_ms; /* end of the current or last hold-down */
    bool noedns;            /* "no EDNS" mark in force */
};

/* Fill info for server at now_ms (info->known false when absent). Does not change LRU order. */
void infra_get(struct infra *infra, const struct addr *server, uint64_t now_ms,
               struct infra_server_info *info);

/* Number of servers currently remembered. */
size_t infra_count(struct infra *infra);

/* Per-server upstream counters for metrics (docs/resolver.md, Metrics). Unlike the state above
 * they are never evicted: the first INFRA_COUNTED_SERVERS servers seen since start get their own
 * counters, every later one is added to "other". First come keeps each series monotonic, as a
 * Prometheus counter must be (a top-N chosen at scrape time would move counts between series);
 * the first servers an iterating resolver meets are the roots and TLDs, a forwarding one has
 * only a few. The cap bounds the label cardinality. */
#define INFRA_COUNTED_SERVERS 32u

struct infra_server_counters {
    struct addr server; /* unset in "other" */
    uint64_t queries;   /* queries sent (infra_count_query) */
    uint64_t timeouts;  /* infra_report_timeout calls */
};

/* One query was sent to server. Lock-free (atomic adds; the slot of a new server is claimed
 * with a compare-and-swap). */
void infra_count_query(struct infra *infra, const struct addr *server);
/* Copy the counted servers into out[0..cap) in the order they were first seen and return how
 * many; other (may be NULL) gets the servers past the cap, and any counted server past cap. */
size_t infra_get_counters(struct infra *infra, struct infra_server_counters *out, size_t cap,
                          struct infra_server_counters *other);

#endif
