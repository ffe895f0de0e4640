/* Health of pool members: rise/fall counting, start-up state, flap damping and feed overrides
 * per member, and velocity control per pool (at most a share of members withdrawn per
 * interval). Pure logic; time is passed in. */
#include "health.h"

#include <math.h>
#include <string.h>

void health_params_defaults(struct health_params *params)
{
    params->rise = 2;
    params->fall = 3;
    params->startup = HEALTH_UP;
    params->flap_window_ms = 300 * 1000;
    params->flap_threshold = 4;
    params->flap_holddown_ms = 120 * 1000;
}

void health_member_init(struct health_member *member, const struct health_params *params,
                        uint64_t now_ms)
{
    memset(member, 0, sizeof *member);
    member->observed = params->startup == HEALTH_DOWN ? HEALTH_DOWN : HEALTH_UP;
    member->since_ms = now_ms;
    member->last_ok = member->observed == HEALTH_UP;
}

/* Transitions recorded in the ring that happened in (now - window, now]. Only the last
 * min(transitions, HEALTH_FLAP_HISTORY) slots hold real times. */
static uint32_t health_flaps_in_window(const struct health_member *member, uint32_t window_ms,
                                       uint64_t now_ms)
{
    uint32_t valid =
        member->transitions < HEALTH_FLAP_HISTORY ? member->transitions : HEALTH_FLAP_HISTORY;
    uint32_t count = 0;
    for (uint32_t i = 0; i < valid; i++) {
        uint32_t slot = (member->flap_next + HEALTH_FLAP_HISTORY - 1 - i) % HEALTH_FLAP_HISTORY;
        uint64_t when = member->flap_times[slot];
        if (when > now_ms || now_ms - when >= window_ms)
            break; /* the ring is in time order: older slots are outside too */
        count++;
    }
    return count;
}

/* Record an observed change and, when it makes flap_threshold changes within flap_window_ms,
 * hold the member down (RFC 2439 §4.2 idea: suppress a route that flaps, release it later).
 * A threshold above the ring size is treated as the ring size; 0 disables damping. */
static void health_record_transition(struct health_member *member,
                                     const struct health_params *params, uint64_t now_ms)
{
    member->flap_times[member->flap_next] = now_ms;
    member->flap_next = (member->flap_next + 1) % HEALTH_FLAP_HISTORY;
    member->transitions++;
    member->since_ms = now_ms;

    uint32_t threshold = params->flap_threshold;
    if (threshold == 0)
        return;
    if (threshold > HEALTH_FLAP_HISTORY)
        threshold = HEALTH_FLAP_HISTORY;
    if (health_flaps_in_window(member, params->flap_window_ms, now_ms) >= threshold)
        member->damped_until_ms = now_ms + params->flap_holddown_ms;
}

static void health_record_result(struct health_member *member, bool ok, const char *error,
                                 uint64_t now_ms)
{
    member->last_ok = ok;
    member->last_probe_ms = now_ms;
    if (ok) {
        member->successes++;
        member->failures = 0;
        member->last_error[0] = '\0';
    } else {
        member->failures++;
        member->successes = 0;
        const char *text = error != NULL ? error : "failed";
        size_t len = strnlen(text, HEALTH_ERROR_MAX - 1);
        memcpy(member->last_error, text, len);
        member->last_error[len] = '\0';
    }
}

bool health_member_report(struct health_member *member, const struct health_params *params, bool ok,
                          const char *error, uint64_t now_ms)
{
    health_record_result(member, ok, error, now_ms);

    /* rise/fall of 0 would mean "change without evidence": one result is the minimum. */
    uint32_t rise = params->rise > 0 ? params->rise : 1;
    uint32_t fall = params->fall > 0 ? params->fall : 1;
    enum health_state next = member->observed;
    if (member->observed == HEALTH_DOWN && member->successes >= rise)
        next = HEALTH_UP;
    else if (member->observed == HEALTH_UP && member->failures >= fall)
        next = HEALTH_DOWN;
    if (next == member->observed)
        return false;
    member->observed = next;
    health_record_transition(member, params, now_ms);
    return true;
}

bool health_member_feed(struct health_member *member, enum health_state state, uint64_t valid_ms,
                        uint64_t now_ms)
{
    enum health_state before = health_member_verdict(member, now_ms);
    member->feed_valid = true;
    member->feed_state = state == HEALTH_DOWN ? HEALTH_DOWN : HEALTH_UP;
    member->feed_expires_ms = now_ms + valid_ms;
    return health_member_verdict(member, now_ms) != before;
}

enum health_state health_member_verdict(const struct health_member *member, uint64_t now_ms)
{
    if (member->feed_valid && now_ms < member->feed_expires_ms)
        return member->feed_state;
    if (now_ms < member->damped_until_ms)
        return HEALTH_DOWN;
    return member->observed;
}

void health_velocity_init(struct health_velocity *velocity, double share, uint32_t interval_ms)
{
    memset(velocity, 0, sizeof *velocity);
    if (isnan(share) || share < 0.0)
        share = 0.0; /* still at least one member per interval */
    if (share > 1.0)
        share = 1.0;
    velocity->max_withdraw_share = share;
    velocity->interval_ms = interval_ms;
}

/* How many members may be withdrawn per interval: a share of the pool, at least one. */
static uint32_t health_velocity_budget(const struct health_velocity *velocity, size_t count)
{
    /* The epsilon keeps 0.29 x 100 at 29 despite binary rounding; the cast floors (>= 0). */
    double allowed = velocity->max_withdraw_share * (double)count + 1e-9;
    if (allowed < 1.0)
        return 1;
    if (allowed >= (double)UINT32_MAX)
        return UINT32_MAX;
    return (uint32_t)allowed;
}

static void health_velocity_roll(struct health_velocity *velocity, uint64_t now_ms)
{
    /* A clock that went backwards also starts a new window rather than freezing the old one. */
    if (now_ms < velocity->window_start_ms ||
        now_ms - velocity->window_start_ms >= velocity->interval_ms) {
        velocity->window_start_ms = now_ms;
        velocity->withdrawn_in_window = 0;
    }
}

size_t health_pool_apply(struct health_velocity *velocity, const struct health_member *members,
                         bool *serving, size_t count, uint64_t now_ms)
{
    health_velocity_roll(velocity, now_ms);
    uint32_t budget = health_velocity_budget(velocity, count);
    size_t changed = 0;
    for (size_t i = 0; i < count; i++) {
        enum health_state verdict = health_member_verdict(&members[i], now_ms);
        if (verdict == HEALTH_UP && !serving[i]) {
            serving[i] = true; /* capacity coming back is trusted at once */
            changed++;
        } else if (verdict == HEALTH_DOWN && serving[i]) {
            if (velocity->withdrawn_in_window < budget) {
                serving[i] = false;
                velocity->withdrawn_in_window++;
                changed++;
            } else {
                velocity->held_back++;
            }
        }
    }
    return changed;
}
