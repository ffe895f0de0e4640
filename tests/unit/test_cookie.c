/* Unit tests for common/cookie.c: COOKIE option parsing (incl. malformed lengths), RFC 9018
 * server cookies (make, check, expiry, another client IP, the RFC's own vectors), SipHash-2-4
 * against the reference vector, client cookies per server and writing the option. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <sodium.h>

#include "cookie.h"
#include "errors.h"

static struct sockaddr_storage test_addr(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
    }
    return ss;
}

static void test_hex(const char *hex, uint8_t *out, size_t len)
{
    size_t bin_len = 0;
    assert_int_equal(sodium_hex2bin(out, len, hex, strlen(hex), NULL, &bin_len, NULL), 0);
    assert_int_equal(bin_len, len);
}

/* One option (code, payload of len bytes filled with 0xAB) at out; returns its size. */
static size_t test_option(uint8_t *out, uint16_t code, uint16_t len)
{
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    memset(out + 4, 0xAB, len);
    return 4u + len;
}

static void test_cookie_siphash_matches_reference_vector(void **state)
{
    (void)state;
    /* SipHash-2-4 reference (Aumasson & Bernstein): key 00..0f, empty message. */
    uint8_t key[16], out[8], expect[8];
    for (unsigned i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    test_hex("310e0edd47db6f72", expect, 8);
    crypto_shorthash_siphash24(out, NULL, 0, key);
    assert_memory_equal(out, expect, 8);
}

static void test_cookie_parse_finds_client_and_server_cookie(void **state)
{
    (void)state;
    uint8_t opts[128];
    size_t len = test_option(opts, 8, 7); /* ECS-like option before it */
    len += test_option(opts + len, COOKIE_OPTION_CODE, 24);
    struct cookie c;
    assert_int_equal(cookie_parse_option(opts, len, &c), BALLAST_OK);
    assert_true(c.present);
    assert_int_equal(c.server_len, 16);
    assert_int_equal(c.client[0], 0xAB);
    assert_int_equal(c.server[15], 0xAB);
}

static void test_cookie_parse_without_option_is_absent(void **state)
{
    (void)state;
    struct cookie c;
    assert_int_equal(cookie_parse_option(NULL, 0, &c), BALLAST_OK);
    assert_false(c.present);
    uint8_t opts[16];
    size_t len = test_option(opts, 12, 4);
    assert_int_equal(cookie_parse_option(opts, len, &c), BALLAST_OK);
    assert_false(c.present);
}

static void test_cookie_parse_accepts_only_rfc_lengths(void **state)
{
    (void)state;
    uint8_t opts[128];
    struct cookie c;
    for (uint16_t n = 0; n <= 48; n++) {
        size_t len = test_option(opts, COOKIE_OPTION_CODE, n);
        bool valid = n == 8 || (n >= 16 && n <= 40); /* RFC 7873 §5.2.2 */
        assert_int_equal(cookie_parse_option(opts, len, &c), valid ? BALLAST_OK : BALLAST_EFORMERR);
        if (valid)
            assert_int_equal(c.server_len, n - 8);
    }
}

static void test_cookie_parse_rejects_option_overrunning_rdata(void **state)
{
    (void)state;
    uint8_t opts[64];
    size_t len = test_option(opts, COOKIE_OPTION_CODE, 8);
    struct cookie c;
    assert_int_equal(cookie_parse_option(opts, len - 1, &c), BALLAST_EFORMERR);
    assert_int_equal(cookie_parse_option(opts, 3, &c), BALLAST_EFORMERR);
}

static void test_cookie_server_matches_rfc9018_vectors(void **state)
{
    (void)state;
    /* RFC 9018 Appendix A.1 and A.2 (IPv4 client 198.51.100.100). */
    uint8_t secret[16], client[8], expect[16], out[16];
    struct sockaddr_storage peer = test_addr("198.51.100.100");
    test_hex("e5e973e5a6b2a43f48e7dc849e37bfcf", secret, 16);
    test_hex("2464c4abcf10c957", client, 8);
    test_hex("010000005cf79f111f8130c3eee29480", expect, 16);
    cookie_server_make(secret, client, (struct sockaddr *)&peer, 1559731985, out);
    assert_memory_equal(out, expect, 16);
    test_hex("010000005cf7a871d4a564a1442aca77", expect, 16);
    cookie_server_make(secret, client, (struct sockaddr *)&peer, 1559734385, out);
    assert_memory_equal(out, expect, 16);
}

static struct cookie test_made_cookie(const uint8_t *secret, const struct sockaddr *peer,
                                      uint32_t when)
{
    struct cookie c = {.present = true, .server_len = COOKIE_SERVER_LEN};
    memset(c.client, 0x42, sizeof c.client);
    cookie_server_make(secret, c.client, peer, when, c.server);
    return c;
}

static void test_cookie_server_check_accepts_fresh_and_rejects_expired(void **state)
{
    (void)state;
    uint8_t secret[16];
    cookie_secret_generate(secret);
    struct sockaddr_storage peer = test_addr("2001:db8::1");
    uint32_t t = 1700000000u;
    struct cookie c = test_made_cookie(secret, (struct sockaddr *)&peer, t);
    assert_true(cookie_server_check(secret, &c, (struct sockaddr *)&peer, t));
    assert_true(cookie_server_check(secret, &c, (struct sockaddr *)&peer, t + COOKIE_MAX_AGE));
    assert_false(cookie_server_check(secret, &c, (struct sockaddr *)&peer, t + COOKIE_MAX_AGE + 1));
    assert_true(cookie_server_check(secret, &c, (struct sockaddr *)&peer, t - COOKIE_MAX_FUTURE));
    assert_false(
        cookie_server_check(secret, &c, (struct sockaddr *)&peer, t - COOKIE_MAX_FUTURE - 1));
}

static void test_cookie_server_check_rejects_other_client_ip_secret_or_cookie(void **state)
{
    (void)state;
    uint8_t secret[16], other_secret[16];
    cookie_secret_generate(secret);
    cookie_secret_generate(other_secret);
    struct sockaddr_storage peer = test_addr("192.0.2.1");
    struct sockaddr_storage other = test_addr("192.0.2.2");
    uint32_t t = 1700000000u;
    struct cookie c = test_made_cookie(secret, (struct sockaddr *)&peer, t);
    assert_false(cookie_server_check(secret, &c, (struct sockaddr *)&other, t));
    assert_false(cookie_server_check(other_secret, &c, (struct sockaddr *)&peer, t));
    struct cookie changed = c;
    changed.client[0] ^= 1;
    assert_false(cookie_server_check(secret, &changed, (struct sockaddr *)&peer, t));
    changed = c;
    changed.server[1] = 1; /* reserved byte */
    assert_false(cookie_server_check(secret, &changed, (struct sockaddr *)&peer, t));
    changed = c;
    changed.server_len = 8;
    assert_false(cookie_server_check(secret, &changed, (struct sockaddr *)&peer, t));
}

static void test_cookie_write_option_round_trips(void **state)
{
    (void)state;
    uint8_t client[8] = {1, 2, 3, 4, 5, 6, 7, 8}, server[16];
    memset(server, 9, sizeof server);
    uint8_t buf[COOKIE_OPTION_MAX];
    size_t n = cookie_write_option(buf, sizeof buf, client, server, sizeof server);
    assert_int_equal(n, 28);
    struct cookie c;
    assert_int_equal(cookie_parse_option(buf, n, &c), BALLAST_OK);
    assert_true(c.present);
    assert_memory_equal(c.client, client, 8);
    assert_int_equal(c.server_len, 16);
    assert_memory_equal(c.server, server, 16);
    assert_int_equal(cookie_write_option(buf, 27, client, server, sizeof server), 0);
    assert_int_equal(cookie_write_option(buf, sizeof buf, client, NULL, 0), 12);
}

static void test_cookie_client_differs_per_server_and_is_stable(void **state)
{
    (void)state;
    uint8_t secret[16], a[8], a2[8], b[8];
    cookie_secret_generate(secret);
    struct sockaddr_storage s1 = test_addr("192.0.2.53");
    struct sockaddr_storage s2 = test_addr("192.0.2.54");
    cookie_client_make(secret, (struct sockaddr *)&s1, a);
    cookie_client_make(secret, (struct sockaddr *)&s1, a2);
    cookie_client_make(secret, (struct sockaddr *)&s2, b);
    assert_memory_equal(a, a2, 8);
    assert_memory_not_equal(a, b, 8);
}

/* A response with one question (the root, A/IN), one answer and, when with_opt, an empty OPT. */
static size_t test_response(uint8_t *out, bool with_opt)
{
    static const uint8_t head[] = {0x12, 0x34, 0x84, 0, 0, 1, 0, 1, 0,  0, 0, 0, /* header */
                                   0,    0,    1,    0, 1,                       /* question */
                                   0,    0,    1,    0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1};
    static const uint8_t opt[] = {0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0};
    memcpy(out, head, sizeof head);
    if (!with_opt)
        return sizeof head;
    out[11] = 1; /* ARCOUNT */
    memcpy(out + sizeof head, opt, sizeof opt);
    return sizeof head + sizeof opt;
}

static void test_cookie_append_extends_final_opt_and_find_reads_it(void **state)
{
    (void)state;
    uint8_t resp[256], client[8] = {1, 2, 3, 4, 5, 6, 7, 8}, server[16] = {1};
    uint8_t option[COOKIE_OPTION_MAX];
    size_t option_len = cookie_write_option(option, sizeof option, client, server, sizeof server);
    size_t len = test_response(resp, true);
    size_t grown = cookie_append_to_response(resp, len, sizeof resp, option, option_len);
    assert_int_equal(grown, len + option_len);
    assert_int_equal(resp[len - 1], option_len); /* the OPT's RDLENGTH */
    assert_memory_equal(resp + len, option, option_len);
    struct cookie c;
    assert_int_equal(cookie_find_in_response(resp, grown, &c), BALLAST_OK);
    assert_true(c.present);
    assert_memory_equal(c.client, client, 8);
    assert_int_equal(c.server_len, 16);
    /* No room, or no OPT at the end: unchanged. */
    len = test_response(resp, true);
    assert_int_equal(cookie_append_to_response(resp, len, len + option_len - 1, option, option_len),
                     len);
    len = test_response(resp, false);
    assert_int_equal(cookie_append_to_response(resp, len, sizeof resp, option, option_len), len);
    assert_int_equal(cookie_find_in_response(resp, len, &c), BALLAST_OK);
    assert_false(c.present);
    assert_int_equal(cookie_find_in_response(resp, len - 1, &c), BALLAST_EFORMERR);
}

static void test_cookie_server_option_echoes_client_cookie_with_valid_server_cookie(void **state)
{
    (void)state;
    struct sockaddr_storage peer = test_addr("127.0.0.1");
    struct cookie asked = {.present = true, .client = {9, 9, 9, 9, 9, 9, 9, 9}};
    uint8_t option[COOKIE_OPTION_MAX];
    size_t n = cookie_server_option(&asked, (struct sockaddr *)&peer, 1000, option, sizeof option);
    assert_int_equal(n, 4 + 8 + 16);
    struct cookie back;
    assert_int_equal(cookie_parse_option(option, n, &back), BALLAST_OK);
    assert_memory_equal(back.client, asked.client, 8);
    assert_true(cookie_server_check(cookie_server_secret(), &back, (struct sockaddr *)&peer, 1001));
    struct cookie none = {.present = false};
    assert_int_equal(
        cookie_server_option(&none, (struct sockaddr *)&peer, 1000, option, sizeof option), 0);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_siphash_matches_reference_vector),
        cmocka_unit_test(test_cookie_parse_finds_client_and_server_cookie),
        cmocka_unit_test(test_cookie_parse_without_option_is_absent),
        cmocka_unit_test(test_cookie_parse_accepts_only_rfc_lengths),
        cmocka_unit_test(test_cookie_parse_rejects_option_overrunning_rdata),
        cmocka_unit_test(test_cookie_server_matches_rfc9018_vectors),
        cmocka_unit_test(test_cookie_server_check_accepts_fresh_and_rejects_expired),
        cmocka_unit_test(test_cookie_server_check_rejects_other_client_ip_secret_or_cookie),
        cmocka_unit_test(test_cookie_write_option_round_trips),
        cmocka_unit_test(test_cookie_client_differs_per_server_and_is_stable),
        cmocka_unit_test(test_cookie_append_extends_final_opt_and_find_reads_it),
        cmocka_unit_test(test_cookie_server_option_echoes_client_cookie_with_valid_server_cookie),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
