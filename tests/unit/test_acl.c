/* Unit tests for resolver/acl.c: prefix parsing and its errors, the default rules, longest-prefix
 * matching, IPv4-mapped IPv6 clients, allow/refuse/deny, and the private-address check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>
#include <pthread.h>

#include "acl.h"
#include "addr.h"
#include "errors.h"

static void assert_contains(const char *text, const char *part)
{
    if (strstr(text, part) == NULL)
        fail_msg("'%s' lacks '%s'", text, part);
}

/* The action for a client written as text ("10.1.2.3", "::1"). */
static enum acl_action check(const struct acl *acl, const char *client)
{
    struct addr a;
    if (addr_parse(client, 53, &a) != 0)
        fail_msg("bad test address '%s'", client);
    return acl_check(acl, (const struct sockaddr *)&a.ss);
}

static void assert_action(const struct acl *acl, const char *client, enum acl_action want)
{
    enum acl_action got = check(acl, client);
    if (got != want)
        fail_msg("%s: got %s, want %s", client, acl_action_name(got), acl_action_name(want));
}

static void add_rule(struct acl *acl, const char *prefix, enum acl_action action)
{
    struct acl_prefix p;
    char reason[256];
    if (acl_prefix_parse(prefix, &p, reason, sizeof(reason)) != 0)
        fail_msg("%s", reason);
    assert_int_equal(acl_add(acl, &p, action), 0);
}

static void assert_prefix_text(const char *text, const char *canonical)
{
    struct acl_prefix p;
    char reason[256] = "";
    if (acl_prefix_parse(text, &p, reason, sizeof(reason)) != 0)
        fail_msg("%s: %s", text, reason);
    char buf[ACL_PREFIX_TEXT_MAX];
    assert_string_equal(acl_prefix_format(&p, buf, sizeof(buf)), canonical);
}

static void assert_prefix_rejected(const char *text, const char *part)
{
    struct acl_prefix p;
    char reason[256] = "";
    assert_int_equal(acl_prefix_parse(text, &p, reason, sizeof(reason)), BALLAST_EINVAL);
    assert_contains(reason, part);
}

static void test_acl_prefix_parse_accepts_cidr_and_bare_addresses(void **state)
{
    (void)state;
    assert_prefix_text("10.0.0.0/8", "10.0.0.0/8");
    assert_prefix_text("0.0.0.0/0", "0.0.0.0/0");
    assert_prefix_text("192.0.2.7", "192.0.2.7/32");
    assert_prefix_text("::1", "::1/128");
    assert_prefix_text("::1/128", "::1/128");
    assert_prefix_text("fd00::/8", "fd00::/8");
    assert_prefix_text("FE80::/10", "fe80::/10");
    assert_prefix_text("::/0", "::/0");
    assert_prefix_text("2001:db8:0:0:8000::/65", "2001:db8:0:0:8000::/65");
    /* IPv4-mapped prefixes become the IPv4 prefix they cover. */
    assert_prefix_text("::ffff:10.0.0.0/104", "10.0.0.0/8");
    assert_prefix_text("::ffff:192.0.2.1", "192.0.2.1/32");
    assert_prefix_text("::ffff:0:0/96", "0.0.0.0/0");
    /* Shorter than /96 it covers more than IPv4-mapped space, so it stays IPv6. */
    assert_prefix_text("::/95", "::/95");
}

static void test_acl_prefix_parse_rejects_bad_prefixes_with_reason(void **state)
{
    (void)state;
    assert_prefix_rejected("", "missing address");
    assert_prefix_rejected("/8", "'/8': missing address");
    assert_prefix_rejected("10.0.0/8", "'10.0.0' is not an IPv4 or IPv6 address");
    assert_prefix_rejected("localhost", "'localhost' is not an IPv4 or IPv6 address");
    assert_prefix_rejected("10.0.0.0 /8", "is not an IPv4 or IPv6 address");
    assert_prefix_rejected("fe80::1%eth0", "is not an IPv4 or IPv6 address");
    assert_prefix_rejected("10.0.0.0/", "prefix length must be a number from 0 to 32 for IPv4");
    assert_prefix_rejected("10.0.0.0/33", "'10.0.0.0/33': prefix length must be a number from 0 "
                                          "to 32 for IPv4");
    assert_prefix_rejected("10.0.0.0/-1", "from 0 to 32");
    assert_prefix_rejected("10.0.0.0/8x", "from 0 to 32");
    assert_prefix_rejected("10.0.0.0/8/9", "from 0 to 32");
    assert_prefix_rejected("10.0.0.0/0008", "from 0 to 32");
    assert_prefix_rejected("::/129", "prefix length must be a number from 0 to 128 for IPv6");
    assert_prefix_rejected("10.0.0.1/8",
                           "'10.0.0.1/8': address has bits set past /8 (did you mean 10.0.0.0/8?)");
    assert_prefix_rejected("fd00::1/8", "(did you mean fd00::/8?)");
    assert_prefix_rejected("172.16.0.0/11", "did you mean 172.0.0.0/11?");
    char long_text[300];
    memset(long_text, '1', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    assert_prefix_rejected(long_text, "is not an IPv4 or IPv6 address");
}

static void test_acl_action_names_round_trip(void **state)
{
    (void)state;
    const char *names[] = {"allow", "refuse", "deny"};
    for (size_t i = 0; i < 3; i++) {
        enum acl_action action;
        assert_int_equal(acl_action_parse(names[i], &action), 0);
        assert_string_equal(acl_action_name(action), names[i]);
    }
    enum acl_action action = ACL_ALLOW;
    assert_int_equal(acl_action_parse("drop", &action), BALLAST_EINVAL);
    assert_int_equal(acl_action_parse("Allow", &action), BALLAST_EINVAL);
    assert_int_equal(acl_action_parse("", &action), BALLAST_EINVAL);
    assert_int_equal(action, ACL_ALLOW);
}

static void test_acl_defaults_allow_loopback_and_private_refuse_others(void **state)
{
    (void)state;
    struct acl acl;
    acl_init(&acl);
    assert_int_equal(acl_defaults(&acl), 0);
    assert_int_equal(acl_rule_count(&acl), 8);
    const char *allowed[] = {
        "127.0.0.1",      "127.255.255.255", "10.0.0.0",        "10.255.255.255", "172.16.0.1",
        "172.31.255.255", "192.168.0.1",     "192.168.255.255", "169.254.1.1",    "::1",
        "fc00::1",        "fdff:ffff::1",    "fe80::1",         "febf:ffff::1",
    };
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        assert_action(&acl, allowed[i], ACL_ALLOW);
    const char *refused[] = {
        "8.8.8.8",    "128.0.0.1",   "11.0.0.1",    "172.15.255.255",
        "172.32.0.0", "192.169.0.1", "169.255.0.1", "0.0.0.0",
        "::2",        "::",          "2001:db8::1", "fec0::1",
        "fbff::1",    "ff02::1",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        assert_action(&acl, refused[i], ACL_REFUSE);
    acl_free(&acl);
}

static void test_acl_ipv4_mapped_client_matches_ipv4_rules(void **state)
{
    (void)state;
    struct acl acl;
    acl_init(&acl);
    assert_int_equal(acl_defaults(&acl), 0);
    assert_action(&acl, "::ffff:127.0.0.1", ACL_ALLOW);
    assert_action(&acl, "::ffff:192.168.1.1", ACL_ALLOW);
    assert_action(&acl, "::ffff:8.8.8.8", ACL_REFUSE);
    add_rule(&acl, "198.51.100.0/24", ACL_DENY);
    assert_action(&acl, "::ffff:198.51.100.9", ACL_DENY);
    /* A rule written IPv4-mapped applies to plain IPv4 clients too. */
    add_rule(&acl, "::ffff:203.0.113.0/120", ACL_ALLOW);
    assert_action(&acl, "203.0.113.77", ACL_ALLOW);
    assert_action(&acl, "::ffff:203.0.113.77", ACL_ALLOW);
    assert_action(&acl, "203.0.114.1", ACL_REFUSE);
    acl_free(&acl);
}

static void test_acl_ipv6_catch_all_does_not_cover_ipv4(void **state)
{
    (void)state;
    struct acl acl;
    acl_init(&acl);
    add_rule(&acl, "::/0", ACL_ALLOW);
    assert_action(&acl, "2001:db8::1", ACL_ALLOW);
    assert_action(&acl, "192.0.2.1", ACL_REFUSE);
    assert_action(&acl, "::ffff:192.0.2.1", ACL_REFUSE);
    add_rule(&acl, "0.0.0.0/0", ACL_DENY);
    assert_action(&acl, "192.0.2.1", ACL_DENY);
    assert_action(&acl, "::ffff:192.0.2.1", ACL_DENY);
    assert_action(&acl, "2001:db8::1", ACL_ALLOW);
    acl_free(&acl);
}

/* Rules given in order (each index into the table) and checked against the same clients. */
static void check_nested_rules(const size_t *order)
{
    static const struct {
        const char *prefix;
        enum acl_action action;
    } rules[] = {
        {"0.0.0.0/0", ACL_DENY},    {"10.0.0.0/8", ACL_ALLOW}, {"10.1.0.0/16", ACL_REFUSE},
        {"10.1.2.0/24", ACL_ALLOW}, {"10.1.2.3", ACL_DENY},
    };
    struct acl acl;
    acl_init(&acl);
    for (size_t i = 0; i < 5; i++)
        add_rule(&acl, rules[order[i]].prefix, rules[order[i]].action);
    assert_action(&acl, "192.0.2.1", ACL_DENY);
    assert_action(&acl, "10.9.9.9", ACL_ALLOW);
    assert_action(&acl, "10.1.9.9", ACL_REFUSE);
    assert_action(&acl, "10.1.2.4", ACL_ALLOW);
    assert_action(&acl, "10.1.2.3", ACL_DENY);
    acl_free(&acl);
}

static void test_acl_longest_prefix_wins_whatever_the_order(void **state)
{
    (void)state;
    const size_t forward[] = {0, 1, 2, 3, 4};
    const size_t backward[] = {4, 3, 2, 1, 0};
    const size_t mixed[] = {2, 4, 0, 3, 1};
    check_nested_rules(forward);
    check_nested_rules(backward);
    check_nested_rules(mixed);
}

static void test_acl_ipv6_longest_prefix_across_word_boundary(void **state)
{
    (void)state;
    struct acl acl;
    acl_init(&acl);
    add_rule(&acl, "2001:db8::/32", ACL_ALLOW);
    add_rule(&acl, "2001:db8::/63", ACL_DENY);
    add_rule(&acl, "2001:db8:0:0:8000::/65", ACL_REFUSE);
    add_rule(&acl, "2001:db8::8000:0:0:1", ACL_ALLOW);
    assert_action(&acl, "2001:db8:0:2::1", ACL_ALLOW);       /* outside /63 */
    assert_action(&acl, "2001:db8:0:1::1", ACL_DENY);        /* /63, second /64 */
    assert_action(&acl, "2001:db8::1", ACL_DENY);            /* /63, first half of /64 */
    assert_action(&acl, "2001:db8::8000:0:0:2", ACL_REFUSE); /* /65 */
    assert_action(&acl, "2001:db8::8000:0:0:1", ACL_ALLOW);  /* /128 */
    assert_action(&acl, "2001:db9::1", ACL_REFUSE);          /* no rule */
    acl_free(&acl);
}

static void test_acl_deny_and_refuse_are_distinct(void **state)
{
    (void)state;
    struct acl acl;
    acl_init(&acl);
    add_rule(&acl, "192.0.2.0/24", ACL_DENY);
    add_rule(&acl, "198.51.100.0/24", ACL_REFUSE);
    assert_action(&acl, "192.0.2.1", ACL_DENY);
    assert_action(&acl, "198.51.100.1", ACL_REFUSE);
    assert_int_not_equal(ACL_DENY, ACL_REFUSE);
    acl_free(&acl);
}

static void test_acl_empty_list_and_unknown_family_refused(void **state)
{
    (void)state;
    struct acl acl;
    acl_init(&acl);
    assert_action(&acl, "127.0.0.1", ACL_REFUSE);
    assert_action(&acl, "::1", ACL_REFUSE);
    add_rule(&acl, "0.0.0.0/0", ACL_ALLOW);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    assert_int_equal(acl_check(&acl, (const struct sockaddr *)&un), ACL_REFUSE);
    acl_free(&acl);
    acl_free(&acl); /* freeing twice is harmless */
    assert_int_equal(acl_rule_count(&acl), 0);
}

static void test_acl_same_prefix_twice_rejected(void **state)
{
    (void)state;
    struct acl acl;
    acl_init(&acl);
    add_rule(&acl, "10.0.0.0/8", ACL_ALLOW);
    struct acl_prefix p;
    char reason[128];
    assert_int_equal(acl_prefix_parse("10.0.0.0/8", &p, reason, sizeof(reason)), 0);
    assert_int_equal(acl_add(&acl, &p, ACL_DENY), BALLAST_EEXIST);
    /* The IPv4-mapped spelling is the same prefix. */
    assert_int_equal(acl_prefix_parse("::ffff:10.0.0.0/104", &p, reason, sizeof(reason)), 0);
    assert_int_equal(acl_add(&acl, &p, ACL_DENY), BALLAST_EEXIST);
    /* Same address, other length: a different rule. */
    assert_int_equal(acl_prefix_parse("10.0.0.0/9", &p, reason, sizeof(reason)), 0);
    assert_int_equal(acl_add(&acl, &p, ACL_DENY), 0);
    assert_int_equal(acl_rule_count(&acl), 2);
    assert_action(&acl, "10.1.1.1", ACL_DENY);
    assert_action(&acl, "10.200.1.1", ACL_ALLOW);
    acl_free(&acl);
}

static void test_acl_rule_count_limited(void **state)
{
    (void)state;
    struct acl acl;
    acl_init(&acl);
    struct acl_prefix p = {.family = AF_INET, .len = 32};
    for (unsigned i = 0; i < ACL_MAX_RULES; i++) {
        p.addr[2] = (uint8_t)(i >> 8);
        p.addr[3] = (uint8_t)i;
        assert_int_equal(acl_add(&acl, &p, ACL_ALLOW), 0);
    }
    p.addr[1] = 1;
    assert_int_equal(acl_add(&acl, &p, ACL_ALLOW), BALLAST_ELIMIT);
    assert_int_equal(acl_rule_count(&acl), ACL_MAX_RULES);
    assert_action(&acl, "0.0.3.255", ACL_ALLOW);
    assert_action(&acl, "0.1.3.255", ACL_REFUSE);
    acl_free(&acl);
}

static void test_acl_private_address_check(void **state)
{
    (void)state;
    const char *private_addrs[] = {"127.0.0.1",   "10.1.2.3", "172.20.0.1",      "192.168.1.1",
                                   "169.254.0.5", "::1",      "fd12::1",         "fe80::1",
                                   "0.0.0.0",     "::",       "::ffff:127.0.0.1"};
    const char *public_addrs[] = {"198.41.0.4",     "8.8.8.8",    "2001:503:ba3e::2:30",
                                  "::ffff:8.8.8.8", "172.32.0.1", "::2"};
    struct addr a;
    for (size_t i = 0; i < sizeof(private_addrs) / sizeof(private_addrs[0]); i++) {
        assert_int_equal(addr_parse(private_addrs[i], 53, &a), 0);
        if (!acl_address_is_private((const struct sockaddr *)&a.ss))
            fail_msg("%s should be private", private_addrs[i]);
    }
    for (size_t i = 0; i < sizeof(public_addrs) / sizeof(public_addrs[0]); i++) {
        assert_int_equal(addr_parse(public_addrs[i], 53, &a), 0);
        if (acl_address_is_private((const struct sockaddr *)&a.ss))
            fail_msg("%s should be public", public_addrs[i]);
    }
}

struct acl_reader {
    const struct acl *acl;
    int mismatches;
};

static void *acl_reader_run(void *arg)
{
    struct acl_reader *reader = arg;
    struct addr allow, refuse;
    if (addr_parse("::ffff:10.1.2.3", 53, &allow) != 0 || addr_parse("8.8.4.4", 53, &refuse) != 0)
        return NULL;
    for (int i = 0; i < 20000; i++) {
        reader->mismatches +=
            acl_check(reader->acl, (const struct sockaddr *)&allow.ss) != ACL_ALLOW;
        reader->mismatches +=
            acl_check(reader->acl, (const struct sockaddr *)&refuse.ss) != ACL_REFUSE;
    }
    return NULL;
}

static void test_acl_check_from_many_threads_at_once(void **state)
{
    (void)state;
    struct acl acl;
    acl_init(&acl);
    assert_int_equal(acl_defaults(&acl), 0);
    pthread_t threads[4];
    struct acl_reader readers[4];
    for (int i = 0; i < 4; i++) {
        readers[i] = (struct acl_reader){.acl = &acl};
        assert_int_equal(pthread_create(&threads[i], NULL, acl_reader_run, &readers[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(readers[i].mismatches, 0);
    }
    acl_free(&acl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acl_prefix_parse_accepts_cidr_and_bare_addresses),
        cmocka_unit_test(test_acl_prefix_parse_rejects_bad_prefixes_with_reason),
        cmocka_unit_test(test_acl_action_names_round_trip),
        cmocka_unit_test(test_acl_defaults_allow_loopback_and_private_refuse_others),
        cmocka_unit_test(test_acl_ipv4_mapped_client_matches_ipv4_rules),
        cmocka_unit_test(test_acl_ipv6_catch_all_does_not_cover_ipv4),
        cmocka_unit_test(test_acl_longest_prefix_wins_whatever_the_order),
        cmocka_unit_test(test_acl_ipv6_longest_prefix_across_word_boundary),
        cmocka_unit_test(test_acl_deny_and_refuse_are_distinct),
        cmocka_unit_test(test_acl_empty_list_and_unknown_family_refused),
        cmocka_unit_test(test_acl_same_prefix_twice_rejected),
        cmocka_unit_test(test_acl_rule_count_limited),
        cmocka_unit_test(test_acl_private_address_check),
        cmocka_unit_test(test_acl_check_from_many_threads_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
