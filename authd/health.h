/* Health of pool members: the per-member state machine (rise/fall counts, start-up state,
 * flap damping) and the per-pool velocity control that withdraws at most a share of a pool's
 * members per interval. Plain logic on plain structs, time passed in; no I/O, no locks (the
 * health thread owns these structs; answers read only what pool.h publishes). */
#ifndef BALLAST_HEALTH_H
#define BALLAST_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HEALTH_ERROR_MAX 128   /* last error text kept per member */
#define HEALTH_FLAP_HISTORY 16 /* transitions remembered for damping */

enum health_state { HEALTH_DOWN = 0, HEALTH_UP = 1 };

/* Rise/fall and damping settings of one check (defaults in docs/health.md). */
struct health_params {
    uint32_t rise;             /* consecutive successes to go UP (default 2) */
    uint32_t fall;             /* consecutive failures to go DOWN (default 3) */
    enum health_state startup; /* state before the first verdict (default UP) */
    uint32_t flap_window_ms;   /* damping: count transitions in this window (default 300 s) */
    uint32_t flap_threshold;   /* this many transitions in the window → damped (default 4) */
    uint32_t flap_holddown_ms; /* a damped member stays DOWN this long (default 120 s) */
};
void health_params_defaults(struct health_params *params);

/* What one member's checks say. `observed` is the probes' state after rise/fall; damping and a
 * feed override are applied on top by health_member_verdict(). Whether the member is actually
 * withdrawn from answers is decided per pool by health_pool_apply() (velocity control). */
struct health_member {
    enum health_state observed;
    uint64_t since_ms;                        /* when observed last changed (or start) */
    uint32_t successes;                       /* consecutive */
    uint32_t failures;                        /* consecutive */
    uint32_t transitions;                     /* total observed changes */
    uint64_t flap_times[HEALTH_FLAP_HISTORY]; /* ring of recent transition times */
    uint32_t flap_next;
    uint64_t damped_until_ms; /* > now: held DOWN by damping */
    bool last_ok;             /* last probe result */
    uint64_t last_probe_ms;
    char last_error[HEALTH_ERROR_MAX];
    /* A health feed can override the probe: its state wins until feed_expires_ms. */
    bool feed_valid;
    enum health_state feed_state;
    uint64_t feed_expires_ms;
};

void health_member_init(struct health_member *member, const struct health_params *params,
                        uint64_t now_ms);
/* Record one probe result (error may be NULL on success). Returns true when `observed`
 * changed (the verdict may still be DOWN while damped). Damping (RFC 2439-style, simplified):
 * when flap_threshold transitions happen within flap_window_ms, the member is held DOWN for
 * flap_holddown_ms whatever the probes say. */
bool health_member_report(struct health_member *member, const struct health_params *params, bool ok,
                          const char *error, uint64_t now_ms);
/* Apply a feed's verdict, valid for valid_ms. Returns true when the effective verdict changed. */
bool health_member_feed(struct health_member *member, enum health_state state, uint64_t valid_ms,
                        uint64_t now_ms);
/* The verdict used for answers: the feed's while valid, else the probes' (damping included). */
enum health_state health_member_verdict(const struct health_member *member, uint64_t now_ms);

/* Velocity control for one pool (DESIGN.md: "health checks must not remove capacity faster than
 * it can be trusted to be gone"): at most max_withdraw_share of the pool's members may go from
 * serving to withdrawn per interval_ms; the rest are held back (still served) and retried on
 * the next call. Members coming back are restored at once. */
struct health_velocity {
    double max_withdraw_share; /* 0 < share <= 1 (default 0.25); at least one member */
    uint32_t interval_ms;      /* default 10 s */
    uint64_t window_start_ms;
    uint32_t withdrawn_in_window;
    uint64_t held_back; /* counter: withdrawals postponed by the rate limit */
};
void health_velocity_init(struct health_velocity *velocity, double share, uint32_t interval_ms);

/* Update `serving` (one flag per member, true = in answers) from the members' verdicts, within
 * the velocity limit. Returns the number of flags changed. */
size_t health_pool_apply(struct health_velocity *velocity, const struct health_member *members,
                         bool *serving, size_t count, uint64_t now_ms);

#endif
