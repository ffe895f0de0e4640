/* Unit tests for authd/health.c: rise/fall thresholds, start-up state, flap damping and its
 * release, feed overrides and their expiry, and velocity control of withdrawals per pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "health.h"

static struct health_params quick_params(void)
{
    struct health_params params;
    health_params_defaults(&params);
    params.rise = 2;
    params.fall = 3;
    return params;
}

static void report_n(struct health_member *member, const struct health_params *params, bool ok,
                     int n, uint64_t *now)
{
    for (int i = 0; i < n; i++) {
        *now += 1000;
        health_member_report(member, params, ok, ok ? NULL : "connect refused", *now);
    }
}

static void test_health_defaults_match_docs(void **state)
{
    (void)state;
    struct health_params params;
    health_params_defaults(&params);
    assert_int_equal(params.rise, 2);
    assert_int_equal(params.fall, 3);
    assert_int_equal(params.startup, HEALTH_UP);
    assert_int_equal(params.flap_window_ms, 300000);
    assert_int_equal(params.flap_threshold, 4);
    assert_int_equal(params.flap_holddown_ms, 120000);
}

static void test_health_fall_minus_one_failures_keep_member_up(void **state)
{
    (void)state;
    struct health_params params = quick_params();
    struct health_member member;
    uint64_t now = 0;
    health_member_init(&member, &params, now);
    assert_false(health_member_report(&member, &params, false, "timeout", now += 1000));
    assert_false(health_member_report(&member, &params, false, "timeout", now += 1000));
    assert_int_equal(member.observed, HEALTH_UP);
    assert_int_equal(health_member_verdict(&member, now), HEALTH_UP);
    assert_int_equal(member.failures, 2);
    assert_int_equal(member.transitions, 0);
}

static void test_health_fall_failures_take_member_down(void **state)
{
    (void)state;
    struct health_params params = quick_params();
    struct health_member member;
    uint64_t now = 0;
    health_member_init(&member, &params, now);
    report_n(&member, &params, false, 2, &now);
    assert_true(health_member_report(&member, &params, false, "timeout", now += 1000));
    assert_int_equal(member.observed, HEALTH_DOWN);
    assert_int_equal(health_member_verdict(&member, now), HEALTH_DOWN);
    assert_int_equal(member.since_ms, now);
    assert_int_equal(member.transitions, 1);
    /* Further failures are not further changes. */
    assert_false(health_member_report(&member, &params, false, "timeout", now += 1000));
    assert_int_equal(member.transitions, 1);
}

static void test_health_rise_minus_one_successes_keep_member_down(void **state)
{
    (void)state;
    struct health_params params = quick_params();
    struct health_member member;
    uint64_t now = 0;
    health_member_init(&member, &params, now);
    report_n(&member, &params, false, 3, &now);
    assert_int_equal(member.observed, HEALTH_DOWN);
    assert_false(health_member_report(&member, &params, true, NULL, now += 1000));
    assert_int_equal(member.observed, HEALTH_DOWN);
    assert_true(health_member_report(&member, &params, true, NULL, now += 1000));
    assert_int_equal(member.observed, HEALTH_UP);
    assert_int_equal(member.transitions, 2);
}

static void test_health_success_resets_failure_streak(void **state)
{
    (void)state;
    struct health_params params = quick_params();
    struct health_member member;
    uint64_t now = 0;
    health_member_init(&member, &params, now);
    report_n(&member, &params, false, 2, &now);
    report_n(&member, &params, true, 1, &now);
    report_n(&member, &params, false, 2, &now);
    assert_int_equal(member.observed, HEALTH_UP);
    assert_int_equal(member.failures, 2);
}

static void test_health_startup_state_is_used_before_first_verdict(void **state)
{
    (void)state;
    struct health_params params = quick_params();
    struct health_member member;
    health_member_init(&member, &params, 5000);
    assert_int_equal(health_member_verdict(&member, 5000), HEALTH_UP);
    assert_int_equal(member.since_ms, 5000);

    params.startup = HEALTH_DOWN;
    health_member_init(&member, &params, 5000);
    assert_int_equal(health_member_verdict(&member, 5000), HEALTH_DOWN);
    uint64_t now = 5000;
    report_n(&member, &params, true, 1, &now);
    assert_int_equal(health_member_verdict(&member, now), HEALTH_DOWN);
    report_n(&member, &params, true, 1, &now);
    assert_int_equal(health_member_verdict(&member, now), HEALTH_UP);
}

static void test_health_last_error_is_kept_truncated_and_cleared(void **state)
{
    (void)state;
    struct health_params params = quick_params();
    struct health_member member;
    health_member_init(&member, &params, 0);
    char long_error[HEALTH_ERROR_MAX * 2];
    memset(long_error, 'x', sizeof long_error - 1);
    long_error[sizeof long_error - 1] = '\0';
    health_member_report(&member, &params, false, long_error, 1000);
    assert_false(member.last_ok);
    assert_int_equal(member.last_probe_ms, 1000);
    assert_int_equal(strlen(member.last_error), HEALTH_ERROR_MAX - 1);
    health_member_report(&member, &params, false, NULL, 2000);
    assert_string_equal(member.last_error, "failed");
    health_member_report(&member, &params, true, NULL, 3000);
    assert_true(member.last_ok);
    assert_string_equal(member.last_error, "");
}

/* rise = fall = 1 so every report is a transition. */
static struct health_params flappy_params(void)
{
    struct health_params params = quick_params();
    params.rise = 1;
    params.fall = 1;
    params.flap_window_ms = 300000;
    params.flap_threshold = 4;
    params.flap_holddown_ms = 120000;
    return params;
}

static void test_health_damping_holds_flapping_member_down(void **state)
{
    (void)state;
    struct health_params params = flappy_params();
    struct health_member member;
    uint64_t now = 0;
    health_member_init(&member, &params, now);
    report_n(&member, &params, false, 1, &now); /* 1: DOWN */
    report_n(&member, &params, true, 1, &now);  /* 2: UP */
    report_n(&member, &params, false, 1, &now); /* 3: DOWN */
    assert_int_equal(member.damped_until_ms, 0);
    report_n(&member, &params, true, 1, &now); /* 4: UP, threshold reached */
    assert_int_equal(member.transitions, 4);
    assert_int_equal(member.observed, HEALTH_UP);
    assert_int_equal(member.damped_until_ms, now + 120000);
    assert_int_equal(health_member_verdict(&member, now), HEALTH_DOWN);

    /* Probes keep succeeding: still down for the whole hold-down. */
    uint64_t release = member.damped_until_ms;
    for (uint64_t t = now + 1000; t < release; t += 10000) {
        health_member_report(&member, &params, true, NULL, t);
        assert_int_equal(health_member_verdict(&member, t), HEALTH_DOWN);
    }
    assert_int_equal(health_member_verdict(&member, release - 1), HEALTH_DOWN);
    /* After the hold-down the probe state applies again. */
    assert_int_equal(health_member_verdict(&member, release), HEALTH_UP);
}

static void test_health_damping_release_applies_probe_state_and_flaps_renew_it(void **state)
{
    (void)state;
    struct health_params params = flappy_params();
    struct health_member member;
    uint64_t now = 0;
    health_member_init(&member, &params, now);
    for (int i = 0; i < 4; i++)
        report_n(&member, &params, i % 2 == 1, 1, &now);
    report_n(&member, &params, false, 1, &now); /* 5th change, extends the hold-down */
    uint64_t release = member.damped_until_ms;
    assert_int_equal(release, now + 120000);
    assert_int_equal(health_member_verdict(&member, release), HEALTH_DOWN);
    report_n(&member, &params, true, 1, &release);
    assert_int_equal(health_member_verdict(&member, release), HEALTH_DOWN); /* damped again */
}

static void test_health_transitions_spread_beyond_window_are_not_damped(void **state)
{
    (void)state;
    struct health_params params = flappy_params();
    struct health_member member;
    health_member_init(&member, &params, 0);
    /* Four changes, but any 300 s window holds at most three of them. */
    uint64_t times[] = {1000, 102000, 203000, 304000};
    for (int i = 0; i < 4; i++)
        health_member_report(&member, &params, i % 2 == 1, NULL, times[i]);
    assert_int_equal(member.transitions, 4);
    assert_int_equal(member.damped_until_ms, 0);
    assert_int_equal(health_member_verdict(&member, 304000), HEALTH_UP);
}

static void test_health_damping_threshold_zero_disables_damping(void **state)
{
    (void)state;
    struct health_params params = flappy_params();
    params.flap_threshold = 0;
    struct health_member member;
    uint64_t now = 0;
    health_member_init(&member, &params, now);
    for (int i = 0; i < 20; i++)
        report_n(&member, &params, i % 2 == 1, 1, &now);
    assert_int_equal(member.transitions, 20);
    assert_int_equal(health_member_verdict(&member, now), HEALTH_UP);
}

static void test_health_feed_overrides_probes_until_expiry(void **state)
{
    (void)state;
    struct health_params params = quick_params();
    struct health_member member;
    health_member_init(&member, &params, 0);
    assert_true(health_member_feed(&member, HEALTH_DOWN, 60000, 1000));
    assert_int_equal(health_member_verdict(&member, 1000), HEALTH_DOWN);
    health_member_report(&member, &params, true, NULL, 2000);
    assert_int_equal(health_member_verdict(&member, 60999), HEALTH_DOWN);
    /* Expired: the probe state (UP) applies again. */
    assert_int_equal(health_member_verdict(&member, 61000), HEALTH_UP);
    /* The same verdict again is no change. */
    assert_false(health_member_feed(&member, HEALTH_UP, 60000, 62000));
}

static void test_health_feed_up_overrides_probe_down(void **state)
{
    (void)state;
    struct health_params params = quick_params();
    params.startup = HEALTH_DOWN;
    struct health_member member;
    health_member_init(&member, &params, 0);
    assert_true(health_member_feed(&member, HEALTH_UP, 10000, 0));
    assert_int_equal(health_member_verdict(&member, 9999), HEALTH_UP);
    assert_int_equal(health_member_verdict(&member, 10000), HEALTH_DOWN);
}

#define POOL_SIZE 10

static void members_init(struct health_member *members, size_t count, uint64_t now)
{
    struct health_params params = quick_params();
    for (size_t i = 0; i < count; i++)
        health_member_init(&members[i], &params, now);
}

static void members_fail(struct health_member *members, size_t from, size_t to, uint64_t now)
{
    struct health_params params = quick_params();
    for (size_t i = from; i < to; i++)
        for (uint32_t n = 0; n < params.fall; n++)
            health_member_report(&members[i], &params, false, "down", now);
}

static size_t serving_count(const bool *serving, size_t count)
{
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        n += serving[i];
    return n;
}

static void test_health_velocity_withdraws_share_per_interval(void **state)
{
    (void)state;
    struct health_member members[POOL_SIZE];
    bool serving[POOL_SIZE];
    struct health_velocity velocity;
    health_velocity_init(&velocity, 0.2, 10000);
    members_init(members, POOL_SIZE, 0);
    for (size_t i = 0; i < POOL_SIZE; i++)
        serving[i] = true;
    uint64_t now = 100000;
    members_fail(members, 0, POOL_SIZE, now); /* all ten fail at once */

    assert_int_equal(health_pool_apply(&velocity, members, serving, POOL_SIZE, now), 2);
    assert_int_equal(serving_count(serving, POOL_SIZE), 8);
    assert_false(serving[0]);
    assert_false(serving[1]); /* lowest indexes first */
    assert_true(serving[2]);
    assert_int_equal(velocity.held_back, 8);

    /* Same interval: nothing more goes. */
    assert_int_equal(health_pool_apply(&velocity, members, serving, POOL_SIZE, now + 9999), 0);
    assert_int_equal(serving_count(serving, POOL_SIZE), 8);
    assert_int_equal(velocity.held_back, 16);

    /* Next interval: two more. */
    assert_int_equal(health_pool_apply(&velocity, members, serving, POOL_SIZE, now + 10000), 2);
    assert_int_equal(serving_count(serving, POOL_SIZE), 6);
    assert_false(serving[2]);
    assert_false(serving[3]);

    /* Five intervals in all to drain the pool. */
    for (uint64_t k = 2; k < 5; k++)
        health_pool_apply(&velocity, members, serving, POOL_SIZE, now + k * 10000);
    assert_int_equal(serving_count(serving, POOL_SIZE), 0);
}

static void test_health_velocity_restores_members_at_once(void **state)
{
    (void)state;
    struct health_member members[POOL_SIZE];
    bool serving[POOL_SIZE];
    struct health_velocity velocity;
    health_velocity_init(&velocity, 0.2, 10000);
    members_init(members, POOL_SIZE, 0);
    for (size_t i = 0; i < POOL_SIZE; i++)
        serving[i] = true;
    members_fail(members, 0, 4, 1000);
    health_pool_apply(&velocity, members, serving, POOL_SIZE, 1000);
    health_pool_apply(&velocity, members, serving, POOL_SIZE, 11000);
    assert_int_equal(serving_count(serving, POOL_SIZE), 6);

    /* All four recover: all back in the same call, within the same interval. */
    members_init(members, 4, 12000);
    assert_int_equal(health_pool_apply(&velocity, members, serving, POOL_SIZE, 12000), 4);
    assert_int_equal(serving_count(serving, POOL_SIZE), 10);
}

static void test_health_velocity_window_counts_withdrawals_across_calls(void **state)
{
    (void)state;
    struct health_member members[POOL_SIZE];
    bool serving[POOL_SIZE];
    struct health_velocity velocity;
    health_velocity_init(&velocity, 0.2, 10000);
    members_init(members, POOL_SIZE, 0);
    for (size_t i = 0; i < POOL_SIZE; i++)
        serving[i] = true;
    members_fail(members, 0, 2, 20000);
    assert_int_equal(health_pool_apply(&velocity, members, serving, POOL_SIZE, 20000), 2);
    members_fail(members, 5, 6, 25000);
    assert_int_equal(health_pool_apply(&velocity, members, serving, POOL_SIZE, 25000), 0);
    assert_true(serving[5]);
    assert_int_equal(velocity.held_back, 1);
    assert_int_equal(health_pool_apply(&velocity, members, serving, POOL_SIZE, 30000), 1);
    assert_false(serving[5]);
}

static void test_health_velocity_tiny_share_still_withdraws_one(void **state)
{
    (void)state;
    struct health_member members[POOL_SIZE];
    bool serving[POOL_SIZE];
    struct health_velocity velocity;
    health_velocity_init(&velocity, 0.001, 10000);
    members_init(members, POOL_SIZE, 0);
    for (size_t i = 0; i < POOL_SIZE; i++)
        serving[i] = true;
    members_fail(members, 0, POOL_SIZE, 50000);
    assert_int_equal(health_pool_apply(&velocity, members, serving, POOL_SIZE, 50000), 1);
    assert_false(serving[0]);
    assert_int_equal(velocity.held_back, 9);

    health_velocity_init(&velocity, 0.0, 10000);
    assert_int_equal(health_pool_apply(&velocity, members, serving, POOL_SIZE, 50000), 1);
    assert_false(serving[1]);
}

static void test_health_velocity_full_share_withdraws_everything(void **state)
{
    (void)state;
    struct health_member members[POOL_SIZE];
    bool serving[POOL_SIZE];
    struct health_velocity velocity;
    health_velocity_init(&velocity, 5.0, 10000); /* clamped to 1 */
    assert_true(velocity.max_withdraw_share == 1.0);
    members_init(members, POOL_SIZE, 0);
    for (size_t i = 0; i < POOL_SIZE; i++)
        serving[i] = true;
    members_fail(members, 0, POOL_SIZE, 1000);
    assert_int_equal(health_pool_apply(&velocity, members, serving, POOL_SIZE, 1000), POOL_SIZE);
    assert_int_equal(velocity.held_back, 0);
}

static void test_health_velocity_share_floors_without_rounding_error(void **state)
{
    (void)state;
    enum { big = 100 };
    struct health_member members[big];
    bool serving[big];
    struct health_velocity velocity;
    health_velocity_init(&velocity, 0.29, 10000); /* 0.29 x 100 is 28.999... in binary */
    members_init(members, big, 0);
    for (size_t i = 0; i < big; i++)
        serving[i] = true;
    members_fail(members, 0, big, 1000);
    assert_int_equal(health_pool_apply(&velocity, members, serving, big, 1000), 29);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_defaults_match_docs),
        cmocka_unit_test(test_health_fall_minus_one_failures_keep_member_up),
        cmocka_unit_test(test_health_fall_failures_take_member_down),
        cmocka_unit_test(test_health_rise_minus_one_successes_keep_member_down),
        cmocka_unit_test(test_health_success_resets_failure_streak),
        cmocka_unit_test(test_health_startup_state_is_used_before_first_verdict),
        cmocka_unit_test(test_health_last_error_is_kept_truncated_and_cleared),
        cmocka_unit_test(test_health_damping_holds_flapping_member_down),
        cmocka_unit_test(test_health_damping_release_applies_probe_state_and_flaps_renew_it),
        cmocka_unit_test(test_health_transitions_spread_beyond_window_are_not_damped),
        cmocka_unit_test(test_health_damping_threshold_zero_disables_damping),
        cmocka_unit_test(test_health_feed_overrides_probes_until_expiry),
        cmocka_unit_test(test_health_feed_up_overrides_probe_down),
        cmocka_unit_test(test_health_velocity_withdraws_share_per_interval),
        cmocka_unit_test(test_health_velocity_restores_members_at_once),
        cmocka_unit_test(test_health_velocity_window_counts_withdrawals_across_calls),
        cmocka_unit_test(test_health_velocity_tiny_share_still_withdraws_one),
        cmocka_unit_test(test_health_velocity_full_share_withdraws_everything),
        cmocka_unit_test(test_health_velocity_share_floors_without_rounding_error),
    };
    return cmocka_run_group_tests(tests, 0, 0);
}
