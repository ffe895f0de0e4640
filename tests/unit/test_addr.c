/* Unit tests for common/addr.c: parsing the address forms users write, and formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <netinet/in.h>

#include "addr.h"
#include "errors.h"

static const char *round_trip(const char *text, uint16_t default_port)
{
    static char buf[128];
    struct addr a;
    assert_int_equal(addr_parse(text, default_port, &a), 0);
    return addr_format((const struct sockaddr *)&a.ss, buf, sizeof buf);
}

static void test_addr_parses_ipv4_with_and_without_port(void **state)
{
    assert_string_equal(round_trip("127.0.0.1@5301", 53), "127.0.0.1@5301");
    assert_string_equal(round_trip("10.0.0.1", 53), "10.0.0.1@53");
    struct addr a;
    assert_int_equal(addr_parse("127.0.0.2@8053", 53, &a), 0);
    assert_int_equal(addr_port((const struct sockaddr *)&a.ss), 8053);
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
}

static void test_addr_parses_ipv6_forms(void **state)
{
    assert_string_equal(round_trip("::1@5301", 53), "::1@5301");
    assert_string_equal(round_trip("[::1]:5302", 53), "::1@5302");
    assert_string_equal(round_trip("::1", 53), "::1@53");
    struct addr a;
    assert_int_equal(addr_parse("::1", 53, &a), 0);
    assert_int_equal(a.len, sizeof(struct sockaddr_in6));
}

static void test_addr_rejects_bad_input(void **state)
{
    struct addr a;
    const char *bad[] = {
        "",          "localhost", "127.0.0.1@", "127.0.0.1@70000", "127.0.0.1@-1", "127.0.0.1@53x",
        "1.2.3.4.5", "[::1",      "[::1]:",     "999.1.1.1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (addr_parse(bad[i], 53, &a) != BALLAST_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_parses_ipv4_with_and_without_port),
        cmocka_unit_test(test_addr_parses_ipv6_forms),
        cmocka_unit_test(test_addr_rejects_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
