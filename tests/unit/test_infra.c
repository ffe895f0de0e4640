/* Unit tests for resolver/infra.c: RTT smoothing, RTO backoff, hold-down and probes, "no EDNS",
 * server selection with exploration (deterministic random), LRU bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>

#include "addr.h"
#include "errors.h"
#include "infra.h"

/* Injected randomness: the exploration roll (upper bound 1000) and the pick among candidates. */
struct fake_random {
    uint32_t roll;
    uint32_t pick;
    unsigned calls;
};

static uint32_t fake_uniform(void *ctx, uint32_t upper_bound)
{
    struct fake_random *f = ctx;
    f->calls++;
    if (upper_bound == 1000)
        return f->roll;
    return f->pick % upper_bound;
}

static struct addr server(const char *text)
{
    struct addr a;
    assert_int_equal(addr_parse(text, 53, &a), 0);
    return a;
}

static struct infra *make_infra(struct infra_config *cfg)
{
    struct infra *infra = NULL;
    assert_int_equal(infra_create(cfg, &infra), 0);
    assert_non_null(infra);
    return infra;
}

static struct infra_config test_config(void)
{
    struct infra_config cfg;
    infra_config_defaults(&cfg);
    cfg.fail_threshold = 3;
    cfg.holddown_ms = 30000;
    cfg.holddown_max_ms = 120000;
    cfg.probe_interval_ms = 10000;
    return cfg;
}

static void test_infra_unknown_server_gets_initial_rto(void **state)
{
    struct infra *infra = make_infra(NULL);
    struct addr a = server("127.0.0.1@5301");
    assert_int_equal(infra_rto(infra, &a, 1000), INFRA_DEFAULT_UNKNOWN_RTO_MS);
    struct infra_server_info info;
    infra_get(infra, &a, 1000, &info);
    assert_false(info.known);
    assert_int_equal(infra_count(infra), 0);
    infra_free(infra);
}

static void test_infra_rtt_smoothing_converges(void **state)
{
    struct infra *infra = make_infra(NULL);
    struct addr a = server("127.0.0.1@5301");
    uint64_t now = 1000;
    /* RFC 6298 §2.2: the first sample sets SRTT = R, RTTVAR = R/2. */
    assert_int_equal(infra_report_rtt(infra, &a, 100, now), 0);
    struct infra_server_info info;
    infra_get(infra, &a, now, &info);
    assert_true(info.measured);
    assert_int_equal(info.srtt_ms, 100);
    assert_int_equal(info.rttvar_ms, 50);
    assert_int_equal(info.rto_ms, 300);
    /* A steady 100 ms: the variance decays and the RTO approaches the RTT. */
    for (int i = 0; i < 60; i++)
        assert_int_equal(infra_report_rtt(infra, &a, 100, ++now), 0);
    infra_get(infra, &a, now, &info);
    assert_int_equal(info.srtt_ms, 100);
    assert_true(info.rttvar_ms <= 1);
    assert_true(info.rto_ms >= 100 && info.rto_ms <= 104);
    /* The server gets faster: SRTT follows, the RTO never goes under the minimum. */
    for (int i = 0; i < 80; i++)
        infra_report_rtt(infra, &a, 10, ++now);
    infra_get(infra, &a, now, &info);
    assert_true(info.srtt_ms >= 10 && info.srtt_ms <= 17);
    assert_int_equal(info.rto_ms, INFRA_DEFAULT_MIN_RTO_MS);
    assert_int_equal(infra_rto(infra, &a, now), INFRA_DEFAULT_MIN_RTO_MS);
    infra_free(infra);
}

static void test_infra_timeouts_double_rto_up_to_cap(void **state)
{
    struct infra_config cfg = test_config();
    cfg.fail_threshold = 100; /* no hold-down in this test */
    struct infra *infra = make_infra(&cfg);
    struct addr a = server("127.0.0.1@5301");
    uint32_t expected[] = {752, 1504, 3008, 6016, 12000, 12000};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        uint32_t sent = infra_rto(infra, &a, 1000);
        assert_int_equal(infra_report_timeout(infra, &a, sent, 1000), 0);
        assert_int_equal(infra_rto(infra, &a, 1000), expected[i]);
    }
    struct infra_server_info info;
    infra_get(infra, &a, 1000, &info);
    assert_int_equal(info.failures, 6);
    infra_free(infra);
}

static void test_infra_simultaneous_timeouts_back_off_once(void **state)
{
    struct infra_config cfg = test_config();
    cfg.fail_threshold = 100;
    struct infra *infra = make_infra(&cfg);
    struct addr a = server("127.0.0.1@5301");
    uint32_t sent = infra_rto(infra, &a, 0);
    for (int i = 0; i < 5; i++)
        infra_report_timeout(infra, &a, sent, 400);
    assert_int_equal(infra_rto(infra, &a, 400), 2 * sent);
    /* A timeout of a query sent before a fresh answer lowered the RTO changes nothing. */
    infra_report_rtt(infra, &a, 20, 500);
    uint32_t after_answer = infra_rto(infra, &a, 500);
    infra_report_timeout(infra, &a, 4 * sent, 600);
    assert_int_equal(infra_rto(infra, &a, 600), after_answer);
    infra_free(infra);
}

static void test_infra_holddown_after_threshold_then_probe_after_interval(void **state)
{
    struct infra_config cfg = test_config();
    struct infra *infra = make_infra(&cfg);
    struct addr servers[2] = {server("127.0.0.1@5301"), server("127.0.0.2@5301")};
    struct fake_random rnd = {.roll = 999, .pick = 0};
    struct infra_random random = {fake_uniform, &rnd};
    struct infra_server_info info;
    infra_report_rtt(infra, &servers[1], 300, 0); /* slower, but healthy */
    infra_report_rtt(infra, &servers[0], 10, 0);
    for (int i = 0; i < 2; i++)
        infra_report_timeout(infra, &servers[0], 0, 1000);
    infra_get(infra, &servers[0], 1000, &info);
    assert_false(info.held_down);
    infra_report_timeout(infra, &servers[0], 0, 1000);
    infra_get(infra, &servers[0], 1000, &info);
    assert_true(info.held_down);
    assert_int_equal(info.held_until_ms, 31000);
    /* Held down: the healthy server is chosen although the other one was faster. */
    assert_int_equal(infra_select(infra, servers, 2, 2000, &random), 1);
    assert_int_equal(infra_select(infra, servers, 2, 10999, &random), 1);
    /* One probe once the interval has passed, and only one. */
    assert_int_equal(infra_select(infra, servers, 2, 11000, &random), 0);
    assert_int_equal(infra_select(infra, servers, 2, 11000, &random), 1);
    assert_int_equal(infra_select(infra, servers, 2, 20999, &random), 1);
    assert_int_equal(infra_select(infra, servers, 2, 21000, &random), 0);
    infra_free(infra);
}

static void test_infra_holddown_grows_with_repeats_and_is_capped(void **state)
{
    struct infra_config cfg = test_config();
    cfg.fail_threshold = 2;
    cfg.holddown_ms = 1000;
    cfg.holddown_max_ms = 3000;
    struct infra *infra = make_infra(&cfg);
    struct addr a = server("127.0.0.1@5301");
    struct infra_server_info info;
    infra_report_failure(infra, &a, 0);
    infra_report_failure(infra, &a, 0);
    infra_get(infra, &a, 0, &info);
    assert_int_equal(info.held_until_ms, 1000);
    /* A failed probe during the hold-down does not extend it. */
    infra_report_timeout(infra, &a, 0, 500);
    infra_get(infra, &a, 500, &info);
    assert_int_equal(info.held_until_ms, 1000);
    /* Failing again after it ended: twice as long, then capped. */
    infra_report_failure(infra, &a, 1000);
    infra_get(infra, &a, 1000, &info);
    assert_int_equal(info.held_until_ms, 3000);
    infra_report_failure(infra, &a, 3000);
    infra_get(infra, &a, 3000, &info);
    assert_int_equal(info.held_until_ms, 6000);
    assert_int_equal(info.holddowns, 3);
    infra_free(infra);
}

static void test_infra_success_clears_failures_and_holddown(void **state)
{
    struct infra_config cfg = test_config();
    struct infra *infra = make_infra(&cfg);
    struct addr a = server("127.0.0.1@5301");
    for (int i = 0; i < 3; i++)
        infra_report_timeout(infra, &a, 0, 100);
    struct infra_server_info info;
    infra_get(infra, &a, 100, &info);
    assert_true(info.held_down);
    assert_int_equal(info.failures, 3);
    /* The probe answers. */
    assert_int_equal(infra_report_rtt(infra, &a, 40, 10100), 0);
    infra_get(infra, &a, 10100, &info);
    assert_false(info.held_down);
    assert_int_equal(info.failures, 0);
    assert_int_equal(info.holddowns, 0);
    assert_int_equal(info.rto_ms, 40 + 4 * 20);
    /* Failures count from zero again. */
    infra_report_failure(infra, &a, 10200);
    infra_report_failure(infra, &a, 10200);
    infra_get(infra, &a, 10200, &info);
    assert_false(info.held_down);
    infra_free(infra);
}

static void test_infra_select_picks_fastest_and_explores_sometimes(void **state)
{
    struct infra *infra = make_infra(NULL);
    struct addr servers[3] = {server("127.0.0.1@53"), server("127.0.0.2@53"),
                              server("127.0.0.3@53")};
    infra_report_rtt(infra, &servers[0], 900, 0);
    infra_report_rtt(infra, &servers[1], 20, 0);
    infra_report_rtt(infra, &servers[2], 800, 0);
    /* No exploration: only server 1 is within 400 ms of the best, whatever the pick. */
    for (uint32_t pick = 0; pick < 3; pick++) {
        struct fake_random rnd = {.roll = 50, .pick = pick};
        struct infra_random random = {fake_uniform, &rnd};
        assert_int_equal(infra_select(infra, servers, 3, 100, &random), 1);
    }
    /* Exploration (roll below 5 %): any healthy server may be picked. */
    struct fake_random rnd = {.roll = 49, .pick = 2};
    struct infra_random random = {fake_uniform, &rnd};
    assert_int_equal(infra_select(infra, servers, 3, 100, &random), 2);
    rnd.pick = 0;
    assert_int_equal(infra_select(infra, servers, 3, 100, &random), 0);
    /* With libsodium (NULL): the fastest nearly always; over 2000 picks both kinds happen. */
    unsigned fastest = 0;
    for (int i = 0; i < 2000; i++)
        fastest += infra_select(infra, servers, 3, 100, NULL) == 1;
    assert_true(fastest > 1700 && fastest < 2000);
    infra_free(infra);
}

static void test_infra_select_randomises_within_band(void **state)
{
    struct infra *infra = make_infra(NULL);
    struct addr servers[3] = {server("127.0.0.1@53"), server("127.0.0.2@53"),
                              server("127.0.0.3@53")};
    infra_report_rtt(infra, &servers[0], 30, 0);  /* RTO 90 */
    infra_report_rtt(infra, &servers[1], 100, 0); /* RTO 300 */
    infra_report_rtt(infra, &servers[2], 400, 0); /* RTO 1200: out of the band */
    struct fake_random rnd = {.roll = 999, .pick = 1};
    struct infra_random random = {fake_uniform, &rnd};
    assert_int_equal(infra_select(infra, servers, 3, 100, &random), 1);
    rnd.pick = 2; /* wraps within the two in-band servers */
    assert_int_equal(infra_select(infra, servers, 3, 100, &random), 0);
    /* Unknown servers (376 ms) are in the band of a measured 90 ms one: they get explored. */
    struct addr fresh[2] = {servers[0], server("127.0.0.9@53")};
    rnd.pick = 1;
    assert_int_equal(infra_select(infra, fresh, 2, 100, &random), 1);
    infra_free(infra);
}

static void test_infra_select_all_held_down_returns_earliest_end(void **state)
{
    struct infra_config cfg = test_config();
    struct infra *infra = make_infra(&cfg);
    struct addr servers[2] = {server("127.0.0.1@53"), server("127.0.0.2@53")};
    for (int i = 0; i < 3; i++)
        infra_report_timeout(infra, &servers[1], 0, 0); /* held until 30000 */
    for (int i = 0; i < 3; i++)
        infra_report_timeout(infra, &servers[0], 0, 5000); /* held until 35000 */
    struct fake_random rnd = {.roll = 999, .pick = 0};
    struct infra_random random = {fake_uniform, &rnd};
    assert_int_equal(infra_select(infra, servers, 2, 6000, &random), 1);
    assert_int_equal(infra_select(infra, servers, 2, 6000, NULL), 1);
    assert_int_equal(infra_select(infra, servers, 0, 6000, NULL), BALLAST_EINVAL);
    infra_free(infra);
}

static void test_infra_noedns_flag_set_and_expires(void **state)
{
    struct infra_config cfg = test_config();
    cfg.noedns_ttl_ms = 60000;
    struct infra *infra = make_infra(&cfg);
    struct addr a = server("127.0.0.1@53"), b = server("127.0.0.1@54");
    assert_false(infra_noedns(infra, &a, 0));
    assert_int_equal(infra_set_noedns(infra, &a, 1000), 0);
    assert_true(infra_noedns(infra, &a, 1000));
    assert_true(infra_noedns(infra, &a, 60999));
    assert_false(infra_noedns(infra, &b, 1000)); /* another port is another server */
    assert_false(infra_noedns(infra, &a, 61000));
    infra_free(infra);
}

static void test_infra_lru_bound_evicts_least_recently_used(void **state)
{
    struct infra_config cfg = test_config();
    cfg.max_entries = 3;
    cfg.shards = 1;
    struct infra *infra = make_infra(&cfg);
    struct addr s[4] = {server("127.0.0.1@53"), server("127.0.0.2@53"), server("::1@53"),
                        server("127.0.0.4@53")};
    for (int i = 0; i < 3; i++)
        infra_report_rtt(infra, &s[i], 10 + (uint32_t)i, 0);
    assert_int_equal(infra_count(infra), 3);
    infra_report_rtt(infra, &s[0], 10, 1); /* s[1] is now the least recently used */
    infra_report_rtt(infra, &s[3], 10, 2);
    assert_int_equal(infra_count(infra), 3);
    struct infra_server_info info;
    infra_get(infra, &s[1], 2, &info);
    assert_false(info.known);
    infra_get(infra, &s[0], 2, &info);
    assert_true(info.known);
    infra_get(infra, &s[2], 2, &info);
    assert_true(info.known);
    infra_free(infra);
}

static void test_infra_bound_holds_with_many_shards(void **state)
{
    struct infra_config cfg = test_config();
    cfg.max_entries = 100;
    cfg.shards = 8;
    struct infra *infra = make_infra(&cfg);
    char text[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(text, sizeof text, "10.0.%d.%d@53", i / 250, i % 250);
        struct addr a = server(text);
        assert_int_equal(infra_report_rtt(infra, &a, 10, (uint64_t)i), 0);
        assert_true(infra_count(infra) <= 100);
    }
    assert_true(infra_count(infra) > 50);
    infra_free(infra);
}

static void test_infra_forgets_idle_state_after_host_ttl(void **state)
{
    struct infra_config cfg = test_config();
    cfg.host_ttl_ms = 100000;
    struct infra *infra = make_infra(&cfg);
    struct addr a = server("127.0.0.1@53");
    infra_report_timeout(infra, &a, 0, 0);
    assert_int_equal(infra_rto(infra, &a, 99999), 752);
    assert_int_equal(infra_rto(infra, &a, 100000), INFRA_DEFAULT_UNKNOWN_RTO_MS);
    infra_free(infra);
}

static void test_infra_rejects_inconsistent_config(void **state)
{
    struct infra_config cfg = test_config();
    struct infra *infra = NULL;
    cfg.min_rto_ms = 5000;
    cfg.max_rto_ms = 1000;
    assert_int_equal(infra_create(&cfg, &infra), BALLAST_EINVAL);
    cfg = test_config();
    cfg.explore_permille = 1001;
    assert_int_equal(infra_create(&cfg, &infra), BALLAST_EINVAL);
    assert_null(infra);
}

struct thread_arg {
    struct infra *infra;
    int base;
};

static void *hammer(void *p)
{
    struct thread_arg *arg = p;
    char text[64];
    for (int i = 0; i < 2000; i++) {
        snprintf(text, sizeof text, "10.1.%d.%d@53", arg->base, i % 200);
        struct addr a;
        if (addr_parse(text, 53, &a) != 0)
            return NULL;
        infra_report_rtt(arg->infra, &a, (uint32_t)(i % 50), (uint64_t)i);
        infra_report_timeout(arg->infra, &a, 0, (uint64_t)i);
        struct addr cands[2] = {a, a};
        infra_select(arg->infra, cands, 2, (uint64_t)i, NULL);
    }
    return arg;
}

static void test_infra_concurrent_use_stays_bounded(void **state)
{
    struct infra_config cfg = test_config();
    cfg.max_entries = 256;
    struct infra *infra = make_infra(&cfg);
    pthread_t threads[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){infra, i};
        assert_int_equal(pthread_create(&threads[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ret = NULL;
        pthread_join(threads[i], &ret);
        assert_ptr_equal(ret, &args[i]);
    }
    assert_true(infra_count(infra) <= 256);
    infra_free(infra);
}

static void hold_down(struct infra *infra, const struct addr *a, uint64_t now)
{
    for (int i = 0; i < 3; i++)
        infra_report_timeout(infra, a, 0, now);
}

static void test_infra_fail_when_all_held_gives_limit_until_probe_due(void **state)
{
    struct infra_config cfg = test_config();
    cfg.fail_when_all_held = true;
    struct infra *infra = make_infra(&cfg);
    struct addr servers[3] = {server("127.0.0.1@53"), server("127.0.0.2@53"),
                              server("127.0.0.3@53")};
    struct fake_random rnd = {.roll = 999, .pick = 0};
    struct infra_random random = {fake_uniform, &rnd};
    hold_down(infra, &servers[0], 0);    /* held until 30000, probe due at 10000 */
    hold_down(infra, &servers[1], 5000); /* held until 35000, probe due at 15000 */
    /* one healthy server left: it is chosen */
    assert_int_equal(infra_select(infra, servers, 3, 6000, &random), 2);
    /* every candidate held down, no probe due: no server at all */
    assert_int_equal(infra_select(infra, servers, 2, 6000, &random), BALLAST_ELIMIT);
    assert_int_equal(infra_select(infra, servers, 2, 9999, NULL), BALLAST_ELIMIT);
    /* a due probe is still returned, once per interval */
    assert_int_equal(infra_select(infra, servers, 2, 10000, &random), 0);
    assert_int_equal(infra_select(infra, servers, 2, 10000, &random), BALLAST_ELIMIT);
    assert_int_equal(infra_select(infra, servers, 2, 15000, &random), 1);
    assert_int_equal(infra_select(infra, servers, 2, 15001, &random), BALLAST_ELIMIT);
    assert_int_equal(infra_select(infra, servers, 2, 20000, &random), 0);
    assert_int_equal(infra_select(infra, servers, 2, 25000, &random), 1);
    /* the hold-down of server 0 is over: it is a candidate again */
    assert_int_equal(infra_select(infra, servers, 2, 30000, &random), 0);
    assert_int_equal(infra_select(infra, servers, 2, 30001, &random), 0);
    infra_free(infra);
}

static void test_infra_without_fail_when_all_held_picks_earliest_end(void **state)
{
    struct infra_config cfg = test_config();
    cfg.fail_when_all_held = false;
    struct infra *infra = make_infra(&cfg);
    struct addr servers[2] = {server("127.0.0.1@53"), server("127.0.0.2@53")};
    hold_down(infra, &servers[0], 5000);
    hold_down(infra, &servers[1], 0);
    assert_int_equal(infra_select(infra, servers, 2, 6000, NULL), 1);
    infra_free(infra);
}

static void test_infra_holddown_jitter_spreads_ends_within_percent(void **state)
{
    struct infra_config cfg = test_config();
    cfg.holddown_jitter_percent = 20;
    struct infra *infra = make_infra(&cfg);
    const uint64_t now = 1000;
    uint64_t lowest = UINT64_MAX, highest = 0, first = 0;
    unsigned differing = 0;
    for (int i = 0; i < 30; i++) {
        char text[32];
        snprintf(text, sizeof text, "127.0.1.%d@53", i + 1);
        struct addr a = server(text);
        hold_down(infra, &a, now);
        struct infra_server_info info;
        infra_get(infra, &a, now, &info);
        assert_true(info.held_down);
        uint64_t period = info.held_until_ms - now;
        assert_true(period >= 24000 && period <= 36000); /* [0.8, 1.2] x 30000 */
        if (i == 0)
            first = period;
        differing += period != first;
        lowest = period < lowest ? period : lowest;
        highest = period > highest ? period : highest;
    }
    assert_true(differing > 0); /* they do not all come back at the same ms */
    assert_true(highest - lowest > 1000);
    infra_free(infra);
}

static void test_infra_holddown_jitter_applies_to_repeats(void **state)
{
    struct infra_config cfg = test_config();
    cfg.holddown_ms = 1000;
    cfg.holddown_max_ms = 100000;
    cfg.holddown_jitter_percent = 10;
    struct infra *infra = make_infra(&cfg);
    for (int i = 0; i < 20; i++) {
        char text[32];
        snprintf(text, sizeof text, "127.0.2.%d@53", i + 1);
        struct addr a = server(text);
        struct infra_server_info info;
        hold_down(infra, &a, 0);
        infra_get(infra, &a, 0, &info);
        assert_true(info.held_until_ms >= 900 && info.held_until_ms <= 1100);
        /* fails again once the first hold-down is over: twice as long, jittered */
        infra_report_failure(infra, &a, 2000);
        infra_get(infra, &a, 2000, &info);
        assert_int_equal(info.holddowns, 2);
        assert_true(info.held_until_ms >= 2000 + 1800 && info.held_until_ms <= 2000 + 2200);
    }
    infra_free(infra);
}

static void test_infra_rejects_jitter_over_100_percent(void **state)
{
    struct infra_config cfg = test_config();
    struct infra *infra = NULL;
    cfg.holddown_jitter_percent = 101;
    assert_int_equal(infra_create(&cfg, &infra), BALLAST_EINVAL);
    assert_null(infra);
    cfg.holddown_jitter_percent = 100;
    assert_int_equal(infra_create(&cfg, &infra), 0);
    infra_free(infra);
}

/* --- per-server counters ------------------------------------------------------------------ */

static void test_infra_counts_queries_and_timeouts_per_server(void **state)
{
    struct infra_config cfg = test_config();
    struct infra *infra = make_infra(&cfg);
    struct addr a = server("192.0.2.1"), b = server("192.0.2.2@5301");
    infra_count_query(infra, &a);
    infra_count_query(infra, &b);
    infra_count_query(infra, &a);
    assert_int_equal(infra_report_timeout(infra, &a, 0, 1000), 0);
    struct infra_server_counters out[4], other;
    size_t n = infra_get_counters(infra, out, 4, &other);
    assert_int_equal(n, 2);
    char text[64];
    assert_string_equal(addr_format((const struct sockaddr *)&out[0].server.ss, text, sizeof text),
                        "192.0.2.1@53"); /* first seen first */
    assert_int_equal(out[0].queries, 2);
    assert_int_equal(out[0].timeouts, 1);
    assert_int_equal(out[1].queries, 1);
    assert_int_equal(out[1].timeouts, 0);
    assert_int_equal(other.queries, 0);
    assert_int_equal(other.timeouts, 0);
    infra_free(infra);
}

static void test_infra_counters_past_the_cap_go_to_other(void **state)
{
    struct infra_config cfg = test_config();
    struct infra *infra = make_infra(&cfg);
    for (unsigned i = 0; i < INFRA_COUNTED_SERVERS + 5; i++) {
        char text[32];
        snprintf(text, sizeof text, "10.0.%u.%u", i / 200, i % 200 + 1);
        struct addr a = server(text);
        infra_count_query(infra, &a);
        infra_count_query(infra, &a);
    }
    struct addr first = server("10.0.0.1");
    infra_count_query(infra, &first); /* still its own series after the table filled */
    struct infra_server_counters out[INFRA_COUNTED_SERVERS], other;
    size_t n = infra_get_counters(infra, out, INFRA_COUNTED_SERVERS, &other);
    assert_int_equal(n, INFRA_COUNTED_SERVERS);
    assert_int_equal(out[0].queries, 3);
    assert_int_equal(other.queries, 10);
    /* a smaller cap folds the counted servers past it into other too */
    n = infra_get_counters(infra, out, 2, &other);
    assert_int_equal(n, 2);
    assert_int_equal(other.queries, 10 + 2 * (INFRA_COUNTED_SERVERS - 2));
    infra_free(infra);
}

struct count_thread {
    struct infra *infra;
    unsigned offset;
};

static void *count_thread_main(void *arg)
{
    struct count_thread *t = arg;
    for (unsigned round = 0; round < 200; round++)
        for (unsigned i = 0; i < 8; i++) {
            char text[32];
            snprintf(text, sizeof text, "10.1.0.%u", (i + t->offset) % 8 + 1);
            struct addr a = server(text);
            infra_count_query(t->infra, &a);
        }
    return NULL;
}

static void test_infra_counters_claim_each_server_once_across_threads(void **state)
{
    struct infra_config cfg = test_config();
    struct infra *infra = make_infra(&cfg);
    pthread_t threads[4];
    struct count_thread args[4];
    for (unsigned i = 0; i < 4; i++) {
        args[i] = (struct count_thread){infra, i * 3};
        assert_int_equal(pthread_create(&threads[i], NULL, count_thread_main, &args[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    struct infra_server_counters out[INFRA_COUNTED_SERVERS], other;
    size_t n = infra_get_counters(infra, out, INFRA_COUNTED_SERVERS, &other);
    assert_int_equal(n, 8); /* no server got two slots */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(out[i].queries, 4 * 200);
    assert_int_equal(other.queries, 0);
    infra_free(infra);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_infra_unknown_server_gets_initial_rto),
        cmocka_unit_test(test_infra_rtt_smoothing_converges),
        cmocka_unit_test(test_infra_timeouts_double_rto_up_to_cap),
        cmocka_unit_test(test_infra_simultaneous_timeouts_back_off_once),
        cmocka_unit_test(test_infra_holddown_after_threshold_then_probe_after_interval),
        cmocka_unit_test(test_infra_holddown_grows_with_repeats_and_is_capped),
        cmocka_unit_test(test_infra_success_clears_failures_and_holddown),
        cmocka_unit_test(test_infra_select_picks_fastest_and_explores_sometimes),
        cmocka_unit_test(test_infra_select_randomises_within_band),
        cmocka_unit_test(test_infra_select_all_held_down_returns_earliest_end),
        cmocka_unit_test(test_infra_noedns_flag_set_and_expires),
        cmocka_unit_test(test_infra_lru_bound_evicts_least_recently_used),
        cmocka_unit_test(test_infra_bound_holds_with_many_shards),
        cmocka_unit_test(test_infra_forgets_idle_state_after_host_ttl),
        cmocka_unit_test(test_infra_rejects_inconsistent_config),
        cmocka_unit_test(test_infra_concurrent_use_stays_bounded),
        cmocka_unit_test(test_infra_fail_when_all_held_gives_limit_until_probe_due),
        cmocka_unit_test(test_infra_without_fail_when_all_held_picks_earliest_end),
        cmocka_unit_test(test_infra_holddown_jitter_spreads_ends_within_percent),
        cmocka_unit_test(test_infra_holddown_jitter_applies_to_repeats),
        cmocka_unit_test(test_infra_rejects_jitter_over_100_percent),
        cmocka_unit_test(test_infra_counts_queries_and_timeouts_per_server),
        cmocka_unit_test(test_infra_counters_past_the_cap_go_to_other),
        cmocka_unit_test(test_infra_counters_claim_each_server_once_across_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
