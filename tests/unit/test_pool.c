/* Unit tests for authd/pool.c: priority levels and min_healthy, never-empty fallbacks (fail open,
 * last healthy), per-query picks (weights, max records, rotation) and member parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"
#include "pool.h"
#include "wire.h"

#define MAX_TEST_MEMBERS 8

/* A pool of A records 192.0.2.(i+1) with the given priorities and weights. */
static void make_pool(struct pool_def *def, size_t count, const uint16_t *priorities,
                      const uint16_t *weights)
{
    memset(def, 0, sizeof *def);
    def->type = WIRE_TYPE_A;
    def->ttl = 30;
    def->count = count;
    def->members = calloc(count, sizeof *def->members);
    assert_non_null(def->members);
    def->name = strdup("api.example.test/A");
    assert_non_null(def->name);
    for (size_t i = 0; i < count; i++) {
        char text[32];
        snprintf(text, sizeof text, "192.0.2.%zu", i + 1);
        assert_int_equal(pool_member_parse(WIRE_TYPE_A, text, &def->members[i]), 0);
        def->members[i].priority = priorities != NULL ? priorities[i] : 0;
        def->members[i].weight = weights != NULL ? weights[i] : 1;
    }
}

/* The member (192.0.2.(i+1) -> i) a record of an A answer is for. */
static size_t record_member(const uint8_t *record)
{
    assert_int_equal(record[0], 0);
    assert_int_equal(record[1], 4);
    return (size_t)record[5] - 1;
}

static void test_pool_best_level_answers_with_its_serving_members(void **state)
{
    (void)state;
    struct pool_def def;
    uint16_t priorities[] = {0, 0, 1, 1};
    make_pool(&def, 4, priorities, NULL);
    def.min_healthy = 1;
    bool serving[] = {true, true, true, true};
    struct pool_answer *answer = NULL;
    assert_int_equal(pool_build_answer(&def, serving, NULL, &answer), 0);
    assert_int_equal(answer->count, 2);
    assert_int_equal(answer->level, 0);
    assert_false(answer->fail_open);
    assert_int_equal(answer->member_index[0], 0);
    assert_int_equal(answer->member_index[1], 1);
    assert_int_equal(answer->total_weight, 2);
    assert_int_equal(answer->ttl, 30);
    assert_int_equal(answer->type, WIRE_TYPE_A);
    assert_int_equal(answer->max_records, 2);
    const uint8_t expected[] = {0, 4, 192, 0, 2, 1, 0, 4, 192, 0, 2, 2};
    assert_int_equal(answer->data_len, sizeof expected);
    assert_memory_equal(answer->data, expected, sizeof expected);
    pool_answer_free(answer);
    pool_def_free(&def);
}

static void test_pool_level_below_min_healthy_hands_over_to_next(void **state)
{
    (void)state;
    struct pool_def def;
    uint16_t priorities[] = {0, 0, 1, 1, 1};
    make_pool(&def, 5, priorities, NULL);
    def.min_healthy = 2;
    bool serving[] = {false, true, true, false, true};
    struct pool_answer *answer = NULL;
    assert_int_equal(pool_build_answer(&def, serving, NULL, &answer), 0);
    assert_int_equal(answer->level, 1);
    assert_int_equal(answer->count, 2);
    assert_int_equal(answer->member_index[0], 2);
    assert_int_equal(answer->member_index[1], 4);
    assert_false(answer->fail_open);
    pool_answer_free(answer);
    pool_def_free(&def);
}

static void test_pool_levels_ordered_by_priority_not_position(void **state)
{
    (void)state;
    struct pool_def def;
    uint16_t priorities[] = {7, 3, 7, 3};
    make_pool(&def, 4, priorities, NULL);
    def.min_healthy = 1;
    bool serving[] = {true, true, true, true};
    struct pool_answer *answer = NULL;
    assert_int_equal(pool_build_answer(&def, serving, NULL, &answer), 0);
    assert_int_equal(answer->level, 3);
    assert_int_equal(answer->member_index[0], 1);
    assert_int_equal(answer->member_index[1], 3);
    pool_answer_free(answer);
    pool_def_free(&def);
}

static void test_pool_no_level_reaching_min_healthy_uses_first_with_any(void **state)
{
    (void)state;
    struct pool_def def;
    uint16_t priorities[] = {0, 0, 1, 1};
    make_pool(&def, 4, priorities, NULL);
    def.min_healthy = 3;
    bool serving[] = {false, true, true, false};
    struct pool_answer *answer = NULL;
    assert_int_equal(pool_build_answer(&def, serving, NULL, &answer), 0);
    assert_int_equal(answer->level, 0);
    assert_int_equal(answer->count, 1);
    assert_int_equal(answer->member_index[0], 1);
    assert_false(answer->fail_open);
    pool_answer_free(answer);
    pool_def_free(&def);
}

static void test_pool_nothing_serving_fails_open_with_all_members(void **state)
{
    (void)state;
    struct pool_def def;
    uint16_t priorities[] = {0, 1, 2};
    make_pool(&def, 3, priorities, NULL);
    bool serving[] = {false, false, false};
    struct pool_answer *answer = NULL;
    assert_int_equal(pool_build_answer(&def, serving, NULL, &answer), 0);
    assert_true(answer->fail_open);
    assert_int_equal(answer->count, 3);
    assert_int_equal(answer->level, 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(answer->member_index[i], i);
    pool_answer_free(answer);
    pool_def_free(&def);
}

static void test_pool_fail_closed_answers_no_records(void **state)
{
    (void)state;
    struct pool_def def;
    uint16_t priorities[] = {0, 1};
    make_pool(&def, 2, priorities, NULL);
    def.empty_mode = POOL_FAIL_CLOSED; /* `ballast-authd --fail-closed`, replay baselines */
    bool serving[] = {false, false};
    struct pool_answer *answer = NULL;
    assert_int_equal(pool_build_answer(&def, serving, NULL, &answer), 0);
    assert_false(answer->fail_open);
    assert_int_equal(answer->count, 0);
    uint8_t buf[64];
    struct zone_rrset picked;
    assert_int_equal(pool_answer_pick(answer, 7, buf, sizeof buf, &picked), 0);
    assert_int_equal(picked.count, 0);
    pool_answer_free(answer);
    /* with a member serving it answers as usual */
    serving[1] = true;
    assert_int_equal(pool_build_answer(&def, serving, NULL, &answer), 0);
    assert_int_equal(answer->count, 1);
    pool_answer_free(answer);
    pool_def_free(&def);
}

static void test_pool_last_healthy_keeps_previous_set(void **state)
{
    (void)state;
    struct pool_def def;
    make_pool(&def, 4, NULL, NULL);
    def.empty_mode = POOL_LAST_HEALTHY;
    bool some[] = {false, true, false, true};
    bool none[] = {false, false, false, false};
    struct pool_answer *healthy = NULL;
    struct pool_answer *kept = NULL;
    assert_int_equal(pool_build_answer(&def, some, NULL, &healthy), 0);
    assert_int_equal(pool_build_answer(&def, none, healthy, &kept), 0);
    assert_true(kept->fail_open);
    assert_true(kept->last_healthy);
    assert_int_equal(kept->count, 2);
    assert_int_equal(kept->member_index[0], 1);
    assert_int_equal(kept->member_index[1], 3);
    assert_int_equal(kept->data_len, healthy->data_len);
    assert_memory_equal(kept->data, healthy->data, healthy->data_len);
    /* The copy is independent of previous, and a kept set is kept again. */
    pool_answer_free(healthy);
    struct pool_answer *again = NULL;
    assert_int_equal(pool_build_answer(&def, none, kept, &again), 0);
    assert_int_equal(again->count, 2);
    assert_true(again->last_healthy);
    assert_int_equal(again->member_index[1], 3);
    pool_answer_free(again);
    pool_answer_free(kept);
    pool_def_free(&def);
}

static void test_pool_last_healthy_without_healthy_history_fails_open(void **state)
{
    (void)state;
    struct pool_def def;
    make_pool(&def, 3, NULL, NULL);
    def.empty_mode = POOL_LAST_HEALTHY;
    bool none[] = {false, false, false};
    struct pool_answer *first = NULL;
    assert_int_equal(pool_build_answer(&def, none, NULL, &first), 0);
    assert_true(first->fail_open);
    assert_false(first->last_healthy);
    assert_int_equal(first->count, 3);
    /* previous is itself fail-open: still all members. */
    struct pool_answer *second = NULL;
    assert_int_equal(pool_build_answer(&def, none, first, &second), 0);
    assert_true(second->fail_open);
    assert_int_equal(second->count, 3);
    pool_answer_free(first);
    pool_answer_free(second);
    pool_def_free(&def);
}

static void test_pool_last_healthy_ignores_previous_that_no_longer_fits(void **state)
{
    (void)state;
    struct pool_def big;
    struct pool_def small;
    make_pool(&big, 4, NULL, NULL);
    make_pool(&small, 2, NULL, NULL);
    small.empty_mode = POOL_LAST_HEALTHY;
    bool some[] = {false, false, false, true};
    bool none[] = {false, false};
    struct pool_answer *previous = NULL;
    struct pool_answer *answer = NULL;
    assert_int_equal(pool_build_answer(&big, some, NULL, &previous), 0);
    /* After a reload shrank the pool, member 3 no longer exists: fail open instead. */
    assert_int_equal(pool_build_answer(&small, none, previous, &answer), 0);
    assert_true(answer->fail_open);
    assert_false(answer->last_healthy);
    assert_int_equal(answer->count, 2);
    pool_answer_free(previous);
    pool_answer_free(answer);
    pool_def_free(&big);
    pool_def_free(&small);
}

static void test_pool_empty_definition_is_rejected(void **state)
{
    (void)state;
    struct pool_def def;
    memset(&def, 0, sizeof def);
    def.type = WIRE_TYPE_A;
    struct pool_answer *answer = (struct pool_answer *)&def; /* must be reset to NULL */
    assert_int_equal(pool_build_answer(&def, NULL, NULL, &answer), BALLAST_EINVAL);
    assert_null(answer);
}

static struct pool_answer *build_all_serving(struct pool_def *def)
{
    bool serving[MAX_TEST_MEMBERS];
    for (size_t i = 0; i < MAX_TEST_MEMBERS; i++)
        serving[i] = true;
    struct pool_answer *answer = NULL;
    assert_int_equal(pool_build_answer(def, serving, NULL, &answer), 0);
    return answer;
}

static void test_pool_pick_respects_weights(void **state)
{
    (void)state;
    struct pool_def def;
    uint16_t weights[] = {3, 1};
    make_pool(&def, 2, NULL, weights);
    def.max_records = 1;
    struct pool_answer *answer = build_all_serving(&def);
    assert_int_equal(answer->max_records, 1);
    assert_int_equal(answer->total_weight, 4);
    uint8_t buf[64];
    struct zone_rrset rrset;
    size_t first = 0;
    const size_t rounds = 4000;
    for (uint32_t seed = 0; seed < rounds; seed++) {
        assert_int_equal(pool_answer_pick(answer, seed, buf, sizeof buf, &rrset), 0);
        assert_int_equal(rrset.count, 1);
        first += record_member(rrset.data) == 0;
    }
    /* 3:1 → 75 % of picks, within ±5 % of the rounds. */
    assert_in_range(first, rounds * 3 / 4 - rounds / 20, rounds * 3 / 4 + rounds / 20);
    pool_answer_free(answer);
    pool_def_free(&def);
}

static void test_pool_pick_honours_max_records_without_repeats(void **state)
{
    (void)state;
    struct pool_def def;
    uint16_t weights[] = {1, 5, 1, 9, 2};
    make_pool(&def, 5, NULL, weights);
    def.max_records = 2;
    struct pool_answer *answer = build_all_serving(&def);
    uint8_t buf[64];
    struct zone_rrset rrset;
    size_t seen[5] = {0};
    for (uint32_t seed = 0; seed < 1000; seed++) {
        assert_int_equal(pool_answer_pick(answer, seed, buf, sizeof buf, &rrset), 0);
        assert_int_equal(rrset.count, 2);
        assert_int_equal(rrset.data_len, 12);
        assert_int_equal(rrset.type, WIRE_TYPE_A);
        assert_int_equal(rrset.ttl, 30);
        assert_ptr_equal(rrset.data, buf);
        size_t a = record_member(rrset.data);
        size_t b = record_member(rrset.data + 6);
        assert_true(a < 5 && b < 5);
        assert_int_not_equal(a, b);
        seen[a]++;
        seen[b]++;
    }
    for (size_t i = 0; i < 5; i++)
        assert_true(seen[i] > 0); /* even weight 1 gets picked sometimes */
    assert_true(seen[3] > seen[0]);
    pool_answer_free(answer);
    pool_def_free(&def);
}

static void test_pool_pick_all_records_rotates_first_record(void **state)
{
    (void)state;
    struct pool_def def;
    make_pool(&def, 3, NULL, NULL);
    def.max_records = 0;
    struct pool_answer *answer = build_all_serving(&def);
    assert_int_equal(answer->max_records, 3);
    uint8_t buf[64];
    struct zone_rrset rrset;
    bool first_seen[3] = {false, false, false};
    for (uint32_t seed = 0; seed < 3; seed++) {
        assert_int_equal(pool_answer_pick(answer, seed, buf, sizeof buf, &rrset), 0);
        assert_int_equal(rrset.count, 3);
        assert_int_equal(rrset.data_len, answer->data_len);
        size_t first = record_member(rrset.data);
        first_seen[first] = true;
        /* Rotation keeps the cyclic order and every record. */
        assert_int_equal(record_member(rrset.data + 6), (first + 1) % 3);
        assert_int_equal(record_member(rrset.data + 12), (first + 2) % 3);
    }
    assert_true(first_seen[0] && first_seen[1] && first_seen[2]);
    pool_answer_free(answer);
    pool_def_free(&def);
}

static void test_pool_pick_is_reproducible_from_seed(void **state)
{
    (void)state;
    struct pool_def def;
    make_pool(&def, 6, NULL, NULL);
    def.max_records = 3;
    struct pool_answer *answer = build_all_serving(&def);
    uint8_t one[64];
    uint8_t two[64];
    struct zone_rrset a;
    struct zone_rrset b;
    assert_int_equal(pool_answer_pick(answer, 12345, one, sizeof one, &a), 0);
    assert_int_equal(pool_answer_pick(answer, 12345, two, sizeof two, &b), 0);
    assert_int_equal(a.data_len, b.data_len);
    assert_memory_equal(one, two, a.data_len);
    pool_answer_free(answer);
    pool_def_free(&def);
}

static void test_pool_pick_small_buffer_is_espace(void **state)
{
    (void)state;
    struct pool_def def;
    make_pool(&def, 3, NULL, NULL);
    def.max_records = 1;
    struct pool_answer *answer = build_all_serving(&def);
    uint8_t buf[17];
    struct zone_rrset rrset;
    assert_int_equal(pool_answer_pick(answer, 1, buf, sizeof buf, &rrset), BALLAST_ESPACE);
    assert_int_equal(pool_answer_pick(answer, 1, buf, 18, &rrset), 0);
    pool_answer_free(answer);
    pool_def_free(&def);
}

/* Every serving[] combination of small pools, with several priority layouts, min_healthy values
 * and both empty modes: the answer and every pick are never empty, and only serving members
 * answer whenever any member serves. */
static void check_never_empty(struct pool_def *def, const bool *serving,
                              const struct pool_answer *previous, struct pool_answer **out)
{
    struct pool_answer *answer = NULL;
    assert_int_equal(pool_build_answer(def, serving, previous, &answer), 0);
    assert_true(answer->count >= 1);
    assert_true(answer->max_records >= 1 && answer->max_records <= answer->count);
    bool any = false;
    for (size_t i = 0; i < def->count; i++)
        any = any || serving[i];
    if (any) {
        assert_false(answer->fail_open);
        for (size_t i = 0; i < answer->count; i++)
            assert_true(serving[answer->member_index[i]]);
    } else {
        assert_true(answer->fail_open);
        bool keep = def->empty_mode == POOL_LAST_HEALTHY && previous != NULL &&
                    (!previous->fail_open || previous->last_healthy);
        assert_int_equal(answer->last_healthy, keep);
        assert_int_equal(answer->count, keep ? previous->count : def->count);
    }
    uint8_t buf[MAX_TEST_MEMBERS * 6];
    for (uint32_t seed = 0; seed < 4; seed++) {
        struct zone_rrset rrset;
        assert_int_equal(pool_answer_pick(answer, seed, buf, sizeof buf, &rrset), 0);
        assert_true(rrset.count >= 1);
        assert_true(rrset.data_len >= 6);
    }
    *out = answer;
}

static void test_pool_never_empty_for_any_serving_combination(void **state)
{
    (void)state;
    uint16_t layouts[][5] = {{0, 0, 0, 0, 0}, {0, 1, 2, 3, 4}, {1, 0, 1, 0, 1}, {2, 2, 0, 5, 5}};
    size_t checked = 0;
    for (size_t n = 1; n <= 5; n++) {
        for (size_t layout = 0; layout < 4; layout++) {
            for (uint32_t min_healthy = 0; min_healthy <= 3; min_healthy++) {
                for (int mode = POOL_FAIL_OPEN; mode <= POOL_LAST_HEALTHY; mode++) {
                    struct pool_def def;
                    make_pool(&def, n, layouts[layout], NULL);
                    def.min_healthy = min_healthy;
                    def.max_records = min_healthy; /* 0..3, also exercises "all" */
                    def.empty_mode = (enum pool_empty_mode)mode;
                    struct pool_answer *previous = NULL;
                    /* Nobody serving comes last, after healthy sets, for last-healthy. */
                    for (uint32_t k = 1; k <= (1u << n); k++) {
                        uint32_t bits = k & ((1u << n) - 1);
                        bool serving[5];
                        for (size_t i = 0; i < n; i++)
                            serving[i] = (bits >> i) & 1;
                        struct pool_answer *answer = NULL;
                        check_never_empty(&def, serving, previous, &answer);
                        pool_answer_free(previous);
                        previous = answer;
                        checked++;
                    }
                    pool_answer_free(previous);
                    pool_def_free(&def);
                }
            }
        }
    }
    assert_int_equal(checked, 4 * 4 * 2 * (2 + 4 + 8 + 16 + 32));
}

static void test_pool_member_parse_addresses(void **state)
{
    (void)state;
    struct pool_member_def member;
    assert_int_equal(pool_member_parse(WIRE_TYPE_A, "192.0.2.10", &member), 0);
    const uint8_t v4[] = {192, 0, 2, 10};
    assert_int_equal(member.rdlen, 4);
    assert_memory_equal(member.rdata, v4, 4);
    assert_string_equal(member.text, "192.0.2.10");
    assert_int_equal(member.weight, 1);
    assert_int_equal(member.priority, 0);

    assert_int_equal(pool_member_parse(WIRE_TYPE_AAAA, "2001:db8::1", &member), 0);
    const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    assert_int_equal(member.rdlen, 16);
    assert_memory_equal(member.rdata, v6, 16);

    assert_int_equal(pool_member_parse(WIRE_TYPE_A, "300.0.2.1", &member), BALLAST_EINVAL);
    assert_int_equal(pool_member_parse(WIRE_TYPE_A, "2001:db8::1", &member), BALLAST_EINVAL);
    assert_int_equal(pool_member_parse(WIRE_TYPE_AAAA, "192.0.2.1", &member), BALLAST_EINVAL);
    assert_int_equal(pool_member_parse(WIRE_TYPE_A, "", &member), BALLAST_EINVAL);
    assert_int_equal(pool_member_parse(WIRE_TYPE_A, NULL, &member), BALLAST_EINVAL);
    assert_int_equal(pool_member_parse(WIRE_TYPE_MX, "192.0.2.1", &member), BALLAST_EINVAL);
}

static void test_pool_member_parse_cname_target_lowercased(void **state)
{
    (void)state;
    struct pool_member_def member;
    const uint8_t wire[] = {2,   'e', 'u', 3,   'a', 'p', 'i', 7,   'e', 'x', 'a',
                            'm', 'p', 'l', 'e', 4,   't', 'e', 's', 't', 0};
    assert_int_equal(pool_member_parse(WIRE_TYPE_CNAME, "EU.Api.Example.TEST.", &member), 0);
    assert_int_equal(member.rdlen, sizeof wire);
    assert_memory_equal(member.rdata, wire, sizeof wire);
    assert_string_equal(member.text, "EU.Api.Example.TEST.");
    /* Without the final dot the name is still absolute. */
    assert_int_equal(pool_member_parse(WIRE_TYPE_CNAME, "eu.api.example.test", &member), 0);
    assert_int_equal(member.rdlen, sizeof wire);
    assert_memory_equal(member.rdata, wire, sizeof wire);

    char too_long[300];
    memset(too_long, 'a', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    assert_int_equal(pool_member_parse(WIRE_TYPE_CNAME, too_long, &member), BALLAST_EINVAL);
    char long_label[80];
    memset(long_label, 'a', 70);
    strcpy(long_label + 70, ".test.");
    assert_int_equal(pool_member_parse(WIRE_TYPE_CNAME, long_label, &member), BALLAST_EINVAL);
}

static void test_pool_cname_pool_answers_names(void **state)
{
    (void)state;
    struct pool_def def;
    memset(&def, 0, sizeof def);
    def.type = WIRE_TYPE_CNAME;
    def.ttl = 20;
    def.count = 2;
    def.members = calloc(2, sizeof *def.members);
    assert_non_null(def.members);
    assert_int_equal(pool_member_parse(WIRE_TYPE_CNAME, "a.test.", &def.members[0]), 0);
    assert_int_equal(pool_member_parse(WIRE_TYPE_CNAME, "b.test.", &def.members[1]), 0);
    def.max_records = 1;
    bool serving[] = {false, true};
    struct pool_answer *answer = NULL;
    assert_int_equal(pool_build_answer(&def, serving, NULL, &answer), 0);
    const uint8_t expected[] = {0, 8, 1, 'b', 4, 't', 'e', 's', 't', 0};
    assert_int_equal(answer->data_len, sizeof expected);
    assert_memory_equal(answer->data, expected, sizeof expected);
    uint8_t buf[16];
    struct zone_rrset rrset;
    assert_int_equal(pool_answer_pick(answer, 99, buf, sizeof buf, &rrset), 0);
    assert_int_equal(rrset.type, WIRE_TYPE_CNAME);
    assert_int_equal(rrset.count, 1);
    assert_memory_equal(rrset.data, expected, sizeof expected);
    pool_answer_free(answer);
    pool_def_free(&def);
}

static void test_pool_def_free_releases_and_clears(void **state)
{
    (void)state;
    struct pool_def def;
    make_pool(&def, 2, NULL, NULL);
    pool_def_free(&def);
    assert_null(def.members);
    assert_null(def.name);
    assert_int_equal(def.count, 0);
    pool_def_free(&def); /* twice is harmless */
    pool_def_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_best_level_answers_with_its_serving_members),
        cmocka_unit_test(test_pool_level_below_min_healthy_hands_over_to_next),
        cmocka_unit_test(test_pool_levels_ordered_by_priority_not_position),
        cmocka_unit_test(test_pool_no_level_reaching_min_healthy_uses_first_with_any),
        cmocka_unit_test(test_pool_nothing_serving_fails_open_with_all_members),
        cmocka_unit_test(test_pool_fail_closed_answers_no_records),
        cmocka_unit_test(test_pool_last_healthy_keeps_previous_set),
        cmocka_unit_test(test_pool_last_healthy_without_healthy_history_fails_open),
        cmocka_unit_test(test_pool_last_healthy_ignores_previous_that_no_longer_fits),
        cmocka_unit_test(test_pool_empty_definition_is_rejected),
        cmocka_unit_test(test_pool_pick_respects_weights),
        cmocka_unit_test(test_pool_pick_honours_max_records_without_repeats),
        cmocka_unit_test(test_pool_pick_all_records_rotates_first_record),
        cmocka_unit_test(test_pool_pick_is_reproducible_from_seed),
        cmocka_unit_test(test_pool_pick_small_buffer_is_espace),
        cmocka_unit_test(test_pool_never_empty_for_any_serving_combination),
        cmocka_unit_test(test_pool_member_parse_addresses),
        cmocka_unit_test(test_pool_member_parse_cname_target_lowercased),
        cmocka_unit_test(test_pool_cname_pool_answers_names),
        cmocka_unit_test(test_pool_def_free_releases_and_clears),
    };
    return cmocka_run_group_tests(tests, 0, 0);
}
