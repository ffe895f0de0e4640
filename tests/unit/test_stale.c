/* Unit tests for resolver/stale.c: the serve-stale table shared by workers (RFC 8767): failure
 * recheck, one refresh per question, the suspicion window of critical names, question identity
 * (case, type), the size bound and the counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "errors.h"
#include "stale.h"
#include "wire.h"

#define TYPE_A 1
#define TYPE_AAAA 28

/* A wire name made from text. */
struct name {
    uint8_t wire[WIRE_NAME_MAX];
    size_t len;
};

static struct name name_of(const char *text)
{
    struct name n;
    assert_int_equal(wire_name_from_text(text, n.wire, &n.len), 0);
    return n;
}

static struct stale_table *make_table(size_t max_entries)
{
    struct stale_table *table = NULL;
    assert_int_equal(stale_table_create(max_entries, &table), 0);
    assert_non_null(table);
    return table;
}

static struct stale_table_stats stats_of(struct stale_table *table)
{
    struct stale_table_stats s;
    stale_table_get_stats(table, &s);
    return s;
}

/* --- failure recheck (RFC 8767 §5) --- */

static void test_stale_failure_remembered_until_recheck_ends(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("www.example.test");
    assert_false(stale_recently_failed(t, n.wire, n.len, TYPE_A, 1000));
    assert_false(stale_failed_before(t, n.wire, n.len, TYPE_A));
    stale_mark_failed(t, n.wire, n.len, TYPE_A, 1000, 30000);
    assert_true(stale_recently_failed(t, n.wire, n.len, TYPE_A, 1000));
    assert_true(stale_recently_failed(t, n.wire, n.len, TYPE_A, 30999));
    assert_false(stale_recently_failed(t, n.wire, n.len, TYPE_A, 31000));
    /* the recheck time is over, but the failure itself is kept until a resolution succeeds */
    assert_true(stale_failed_before(t, n.wire, n.len, TYPE_A));
    assert_int_equal(stats_of(t).entries, 1);
    assert_int_equal(stats_of(t).failures, 1);
    stale_table_free(t);
}

static void test_stale_new_failure_restarts_recheck(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("www.example.test");
    stale_mark_failed(t, n.wire, n.len, TYPE_A, 1000, 30000);
    assert_false(stale_recently_failed(t, n.wire, n.len, TYPE_A, 40000));
    stale_mark_failed(t, n.wire, n.len, TYPE_A, 40000, 30000);
    assert_true(stale_recently_failed(t, n.wire, n.len, TYPE_A, 69999));
    assert_false(stale_recently_failed(t, n.wire, n.len, TYPE_A, 70000));
    struct stale_table_stats s = stats_of(t);
    assert_int_equal(s.failures, 2);
    assert_int_equal(s.entries, 1);
    stale_table_free(t);
}

static void test_stale_failure_at_time_zero_is_remembered(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("www.example.test");
    stale_mark_failed(t, n.wire, n.len, TYPE_A, 0, 10);
    assert_true(stale_recently_failed(t, n.wire, n.len, TYPE_A, 0));
    assert_true(stale_recently_failed(t, n.wire, n.len, TYPE_A, 9));
    assert_false(stale_recently_failed(t, n.wire, n.len, TYPE_A, 10));
    stale_table_free(t);
}

/* recheck 0: no recheck period at all, but the failure is still remembered for
 * stale_failed_before() (stale.h since commit 2fca013). */
static void test_stale_failure_with_zero_recheck_is_never_recent(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("www.example.test");
    stale_mark_failed(t, n.wire, n.len, TYPE_A, 1000, 0);
    assert_false(stale_recently_failed(t, n.wire, n.len, TYPE_A, 1000));
    assert_false(stale_recently_failed(t, n.wire, n.len, TYPE_A, 5000));
    assert_true(stale_failed_before(t, n.wire, n.len, TYPE_A));
    struct stale_table_stats s = stats_of(t);
    assert_int_equal(s.failures, 1);
    stale_table_free(t);
}

/* Every worker passes its own uv_now(), and loops cache their time, so a worker may ask with a
 * now_ms a little behind the one a failure was recorded with: with failure-recheck 0 ("never
 * answer stale without retrying") no worker may see the failure as recent. */
static void test_stale_zero_recheck_is_not_recent_for_a_lagging_clock(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("www.example.test");
    stale_mark_failed(t, n.wire, n.len, TYPE_A, 1000, 0);
    bool recent = stale_recently_failed(t, n.wire, n.len, TYPE_A, 999);
    stale_table_free(t);
    assert_false(recent);
}

static void test_stale_resolved_clears_failure_and_suspicion(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("www.example.test");
    stale_mark_failed(t, n.wire, n.len, TYPE_A, 1000, 30000);
    assert_true(stale_suspect_empty(t, n.wire, n.len, TYPE_A, 1000, 60000));
    assert_int_equal(stats_of(t).entries, 1);
    stale_mark_resolved(t, n.wire, n.len, TYPE_A);
    assert_false(stale_recently_failed(t, n.wire, n.len, TYPE_A, 1001));
    assert_false(stale_failed_before(t, n.wire, n.len, TYPE_A));
    assert_int_equal(stats_of(t).entries, 0);
    /* the suspicion is gone too: the next empty answer starts a new window */
    assert_true(stale_suspect_empty(t, n.wire, n.len, TYPE_A, 2000, 60000));
    assert_int_equal(stats_of(t).suspicions, 2);
    assert_int_equal(stats_of(t).suspicions_ended, 0);
    /* resolving a question never seen is harmless */
    struct name other = name_of("other.test");
    stale_mark_resolved(t, other.wire, other.len, TYPE_A);
    assert_int_equal(stats_of(t).entries, 1);
    stale_table_free(t);
}

static void test_stale_resolved_keeps_refresh_in_flight(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("www.example.test");
    assert_true(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 1000, 5000));
    stale_mark_failed(t, n.wire, n.len, TYPE_A, 1000, 30000);
    stale_mark_resolved(t, n.wire, n.len, TYPE_A);
    assert_true(stale_refresh_running(t, n.wire, n.len, TYPE_A, 1001, 5000));
    assert_false(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 1001, 5000));
    stale_table_free(t);
}

/* --- one refresh per question --- */

static void test_stale_refresh_slot_taken_once_until_end(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("www.example.test");
    assert_false(stale_refresh_running(t, n.wire, n.len, TYPE_A, 1000, 5000));
    assert_true(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 1000, 5000));
    assert_true(stale_refresh_running(t, n.wire, n.len, TYPE_A, 1000, 5000));
    assert_false(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 1000, 5000));
    assert_false(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 5999, 5000));
    stale_refresh_end(t, n.wire, n.len, TYPE_A);
    assert_false(stale_refresh_running(t, n.wire, n.len, TYPE_A, 2000, 5000));
    assert_int_equal(stats_of(t).entries, 0);
    assert_true(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 2000, 5000));
    stale_table_free(t);
}

static void test_stale_refresh_presumed_lost_after_hold(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("www.example.test");
    assert_true(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 1000, 5000));
    assert_true(stale_refresh_running(t, n.wire, n.len, TYPE_A, 5999, 5000));
    assert_false(stale_refresh_running(t, n.wire, n.len, TYPE_A, 6000, 5000));
    assert_true(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 6000, 5000));
    /* the new slot is held from its own start */
    assert_false(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 10999, 5000));
    assert_true(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 11000, 5000));
    stale_table_free(t);
}

static void test_stale_refresh_at_time_zero_is_held(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("www.example.test");
    assert_true(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 0, 100));
    assert_true(stale_refresh_running(t, n.wire, n.len, TYPE_A, 0, 100));
    assert_false(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 0, 100));
    stale_table_free(t);
}

/* --- the suspicion window of critical names --- */

static void test_stale_suspicion_window_then_accept(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("api.critical.test");
    assert_true(stale_suspect_empty(t, n.wire, n.len, TYPE_A, 1000, 60000));
    assert_int_equal(stats_of(t).suspicions, 1);
    /* within the window: still suspect, not a new window */
    assert_true(stale_suspect_empty(t, n.wire, n.len, TYPE_A, 30000, 60000));
    assert_true(stale_suspect_empty(t, n.wire, n.len, TYPE_A, 60999, 60000));
    assert_int_equal(stats_of(t).suspicions, 1);
    assert_int_equal(stats_of(t).suspicions_ended, 0);
    /* the window (from the first call) is over: accept the empty answer, forget the record */
    assert_false(stale_suspect_empty(t, n.wire, n.len, TYPE_A, 61000, 60000));
    struct stale_table_stats s = stats_of(t);
    assert_int_equal(s.suspicions_ended, 1);
    assert_int_equal(s.entries, 0);
    /* the data came back and went away again: a new window starts */
    assert_true(stale_suspect_empty(t, n.wire, n.len, TYPE_A, 200000, 60000));
    assert_true(stale_suspect_empty(t, n.wire, n.len, TYPE_A, 259999, 60000));
    assert_int_equal(stats_of(t).suspicions, 2);
    stale_table_free(t);
}

static void test_stale_suspicion_window_zero_never_suspects(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("api.critical.test");
    assert_false(stale_suspect_empty(t, n.wire, n.len, TYPE_A, 1000, 0));
    struct stale_table_stats s = stats_of(t);
    assert_int_equal(s.suspicions, 0);
    assert_int_equal(s.entries, 0);
    stale_table_free(t);
}

/* --- question identity --- */

static void test_stale_names_compare_without_case(void **state)
{
    struct stale_table *t = make_table(0);
    struct name lower = name_of("www.example.test");
    struct name upper = name_of("WWW.Example.TEST");
    stale_mark_failed(t, upper.wire, upper.len, TYPE_A, 1000, 30000);
    assert_true(stale_recently_failed(t, lower.wire, lower.len, TYPE_A, 1000));
    assert_true(stale_failed_before(t, lower.wire, lower.len, TYPE_A));
    assert_true(stale_refresh_begin(t, lower.wire, lower.len, TYPE_A, 1000, 5000));
    assert_false(stale_refresh_begin(t, upper.wire, upper.len, TYPE_A, 1000, 5000));
    assert_int_equal(stats_of(t).entries, 1);
    /* the caller's name is not changed */
    assert_int_equal(upper.wire[1], 'W');
    stale_table_free(t);
}

static void test_stale_types_are_different_questions(void **state)
{
    struct stale_table *t = make_table(0);
    struct name n = name_of("www.example.test");
    stale_mark_failed(t, n.wire, n.len, TYPE_A, 1000, 30000);
    assert_true(stale_recently_failed(t, n.wire, n.len, TYPE_A, 1000));
    assert_false(stale_recently_failed(t, n.wire, n.len, TYPE_AAAA, 1000));
    assert_true(stale_refresh_begin(t, n.wire, n.len, TYPE_A, 1000, 5000));
    assert_true(stale_refresh_begin(t, n.wire, n.len, TYPE_AAAA, 1000, 5000));
    assert_true(stale_suspect_empty(t, n.wire, n.len, TYPE_AAAA, 1000, 60000));
    assert_int_equal(stats_of(t).entries, 2);
    /* different names too, including a parent and a child */
    struct name parent = name_of("example.test"), child = name_of("a.www.example.test");
    assert_false(stale_recently_failed(t, parent.wire, parent.len, TYPE_A, 1000));
    assert_false(stale_recently_failed(t, child.wire, child.len, TYPE_A, 1000));
    stale_table_free(t);
}

static void test_stale_rejects_bad_names(void **state)
{
    struct stale_table *t = make_table(0);
    uint8_t long_name[WIRE_NAME_MAX + 1];
    memset(long_name, 0, sizeof long_name);
    stale_mark_failed(t, NULL, 0, TYPE_A, 1000, 30000);
    stale_mark_failed(t, long_name, sizeof long_name, TYPE_A, 1000, 30000);
    assert_false(stale_recently_failed(t, long_name, sizeof long_name, TYPE_A, 1000));
    assert_false(stale_refresh_begin(t, NULL, 0, TYPE_A, 1000, 5000));
    assert_false(stale_suspect_empty(t, NULL, 0, TYPE_A, 1000, 60000));
    assert_int_equal(stats_of(t).entries, 0);
    stale_table_free(t);
}

/* --- the size bound --- */

static void name_numbered(unsigned i, struct name *n)
{
    char text[64];
    snprintf(text, sizeof text, "host%u.example.test", i);
    *n = name_of(text);
}

static void test_stale_table_is_bounded_and_evicts_oldest(void **state)
{
    struct stale_table *t = make_table(32);
    const unsigned inserted = 1000;
    for (unsigned i = 0; i < inserted; i++) {
        struct name n;
        name_numbered(i, &n);
        stale_mark_failed(t, n.wire, n.len, TYPE_A, 1000, 30000);
        assert_true(stats_of(t).entries <= 32);
    }
    struct stale_table_stats s = stats_of(t);
    assert_true(s.entries <= 32);
    assert_true(s.entries >= 16); /* 16 shards of 2: most are full by now */
    assert_int_equal(s.evicted, inserted - s.entries);
    assert_int_equal(s.failures, inserted);
    /* the newest is remembered, the first ones were evicted */
    struct name last;
    name_numbered(inserted - 1, &last);
    assert_true(stale_recently_failed(t, last.wire, last.len, TYPE_A, 1000));
    unsigned remembered = 0;
    for (unsigned i = 0; i < 100; i++) {
        struct name n;
        name_numbered(i, &n);
        remembered += stale_recently_failed(t, n.wire, n.len, TYPE_A, 1000);
    }
    assert_int_equal(remembered, 0);
    stale_table_free(t);
}

static void test_stale_default_size_holds_many(void **state)
{
    struct stale_table *t = make_table(0);
    for (unsigned i = 0; i < 5000; i++) {
        struct name n;
        name_numbered(i, &n);
        stale_mark_failed(t, n.wire, n.len, TYPE_A, 1000, 30000);
    }
    struct stale_table_stats s = stats_of(t);
    assert_int_equal(s.entries, 5000);
    assert_int_equal(s.evicted, 0);
    stale_table_free(t);
}

/* --- threads --- */

struct hammer_arg {
    struct stale_table *table;
    unsigned base;
};

static void *hammer(void *p)
{
    struct hammer_arg *arg = p;
    for (unsigned i = 0; i < 3000; i++) {
        struct name n;
        char text[64];
        snprintf(text, sizeof text, "h%u.t%u.test", i % 300, arg->base % 2);
        if (wire_name_from_text(text, n.wire, &n.len) != 0)
            return NULL;
        stale_mark_failed(arg->table, n.wire, n.len, TYPE_A, i, 50);
        stale_recently_failed(arg->table, n.wire, n.len, TYPE_A, i);
        if (stale_refresh_begin(arg->table, n.wire, n.len, TYPE_A, i, 10))
            stale_refresh_end(arg->table, n.wire, n.len, TYPE_A);
        stale_suspect_empty(arg->table, n.wire, n.len, TYPE_A, i, 20);
        if (i % 7 == 0)
            stale_mark_resolved(arg->table, n.wire, n.len, TYPE_A);
    }
    return arg;
}

static void test_stale_concurrent_use_stays_bounded(void **state)
{
    struct stale_table *t = make_table(64);
    pthread_t threads[4];
    struct hammer_arg args[4];
    for (unsigned i = 0; i < 4; i++) {
        args[i] = (struct hammer_arg){t, i};
        assert_int_equal(pthread_create(&threads[i], NULL, hammer, &args[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        void *ret = NULL;
        pthread_join(threads[i], &ret);
        assert_ptr_equal(ret, &args[i]);
    }
    struct stale_table_stats s = stats_of(t);
    assert_true(s.entries <= 64);
    assert_int_equal(s.failures, 4 * 3000);
    stale_table_free(t);
}

static void test_stale_free_null_is_harmless(void **state)
{
    stale_table_free(NULL);
    struct stale_table *t = make_table(1); /* rounds up to one per shard */
    struct name a = name_of("a.test");
    stale_mark_failed(t, a.wire, a.len, TYPE_A, 1, 10);
    assert_true(stale_recently_failed(t, a.wire, a.len, TYPE_A, 1));
    stale_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_failure_remembered_until_recheck_ends),
        cmocka_unit_test(test_stale_new_failure_restarts_recheck),
        cmocka_unit_test(test_stale_failure_at_time_zero_is_remembered),
        cmocka_unit_test(test_stale_failure_with_zero_recheck_is_never_recent),
        cmocka_unit_test(test_stale_zero_recheck_is_not_recent_for_a_lagging_clock),
        cmocka_unit_test(test_stale_resolved_clears_failure_and_suspicion),
        cmocka_unit_test(test_stale_resolved_keeps_refresh_in_flight),
        cmocka_unit_test(test_stale_refresh_slot_taken_once_until_end),
        cmocka_unit_test(test_stale_refresh_presumed_lost_after_hold),
        cmocka_unit_test(test_stale_refresh_at_time_zero_is_held),
        cmocka_unit_test(test_stale_suspicion_window_then_accept),
        cmocka_unit_test(test_stale_suspicion_window_zero_never_suspects),
        cmocka_unit_test(test_stale_names_compare_without_case),
        cmocka_unit_test(test_stale_types_are_different_questions),
        cmocka_unit_test(test_stale_rejects_bad_names),
        cmocka_unit_test(test_stale_table_is_bounded_and_evicts_oldest),
        cmocka_unit_test(test_stale_default_size_holds_many),
        cmocka_unit_test(test_stale_concurrent_use_stays_bounded),
        cmocka_unit_test(test_stale_free_null_is_harmless),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
