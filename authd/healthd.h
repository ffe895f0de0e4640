/* The health engine of ballast-authd: a thread with its own libuv loop that runs the probes,
 * pulls the health feeds, keeps each member's state, applies velocity control and publishes
 * each pool's answer set with RCU. Workers only read what is published (healthd_find). */
#ifndef BALLAST_HEALTHD_H
#define BALLAST_HEALTHD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control.h"
#include "feed.h"
#include "health.h"
#include "pool.h"
#include "probe.h"

/* How one member is checked. */
struct healthd_check {
    bool enabled;           /* false: no probe, the member is UP unless a feed says DOWN */
    struct probe_spec spec; /* strings owned by the config */
    struct health_params params;
};

struct healthd_pool_config {
    struct pool_def def;           /* members in def.members */
    struct healthd_check *checks;  /* def.count entries, one per member */
    double max_withdraw_share;     /* velocity control (default 0.25) */
    uint32_t withdraw_interval_ms; /* default 10 s */
};

struct healthd_feed_config {
    char *url;           /* file path, file:// or http(s):// */
    char *signature_url; /* detached signature; NULL: url + ".sig" when a key is set */
    bool has_key;        /* a public key is set: the signature is required */
    uint8_t public_key[32];
    uint32_t interval_ms; /* how often to pull (default 10 s) */
    uint32_t valid_ms;    /* how long applied states last (default 60 s) */
    struct feed_limits limits;
};

struct healthd_config {
    struct healthd_pool_config *pools;
    size_t pool_count;
    struct healthd_feed_config *feeds;
    size_t feed_count;
};

void healthd_config_free(struct healthd_config *cfg);

struct healthd;

/* Start the engine for cfg (copied where needed; cfg may be freed after). Every pool is
 * published at once from the members' start-up states. Returns 0 or BALLAST_E*. */
int healthd_start(const struct healthd_config *cfg, struct healthd **out, char *err_text,
                  size_t err_len);
/* Stop the thread, free everything. Workers must no longer call healthd_find. */
void healthd_stop(struct healthd *healthd);

/* The published answer set for owner (lowercase wire)/type, or NULL when no pool has it. Call
 * inside an RCU read-side critical section (urcu-memb); the result is valid until it ends. */
const struct pool_answer *healthd_find(const struct healthd *healthd, const uint8_t *owner,
                                       size_t owner_len, uint16_t type);

/* Prometheus metrics of the health engine (common/metrics.h): pool and member states,
 * transitions, probes, feeds. Safe from any thread. */
struct metrics_writer;
void healthd_metrics(struct healthd *healthd, struct metrics_writer *w);

/* `ballast health`: every pool and member (state, since, last result and error, transitions,
 * level answering) and the counters. Safe from any thread. */
void healthd_report(struct healthd *healthd, struct control_reply *reply);
/* Counters for `ballast stats`. */
void healthd_stats(struct healthd *healthd, struct control_reply *reply);

#endif
