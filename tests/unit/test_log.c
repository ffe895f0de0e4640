/* Unit tests for common/log.c: key=value lines, levels and filtering, the JSON format and the
 * query log line. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"
#include "log.h"

static char *capture(enum log_level level, void (*emit)(void))
{
    static char text[4096];
    FILE *f = tmpfile();
    assert_non_null(f);
    log_set_stream(f);
    log_set_level(level);
    emit();
    log_set_stream(NULL);
    fflush(f);
    rewind(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static void emit_info_and_debug(void)
{
    log_info("zone_loaded", "zone=%s records=%d", "example.test", 42);
    log_debug("noise", "x=%d", 1);
    log_error("zone_rejected", "reason=\"%s\"", "bad");
}

static void test_log_writes_structured_lines(void **state)
{
    char *text = capture(LOG_LEVEL_INFO, emit_info_and_debug);
    assert_non_null(strstr(text, "level=info event=zone_loaded zone=example.test records=42\n"));
    assert_non_null(strstr(text, "level=error event=zone_rejected reason=\"bad\"\n"));
    assert_true(strncmp(text, "ts=", 3) == 0);
    assert_null(strstr(text, "event=noise")); /* debug filtered at info */
}

static void test_log_level_filtering(void **state)
{
    char *text = capture(LOG_LEVEL_ERROR, emit_info_and_debug);
    assert_null(strstr(text, "zone_loaded"));
    assert_non_null(strstr(text, "zone_rejected"));
    text = capture(LOG_LEVEL_DEBUG, emit_info_and_debug);
    assert_non_null(strstr(text, "level=debug event=noise x=1"));
    log_set_level(LOG_LEVEL_INFO);
}

static void test_log_level_parse(void **state)
{
    enum log_level level;
    assert_int_equal(log_level_parse("warn", &level), 0);
    assert_int_equal(level, LOG_LEVEL_WARN);
    assert_int_equal(log_level_parse("debug", &level), 0);
    assert_int_equal(level, LOG_LEVEL_DEBUG);
    assert_int_equal(log_level_parse("verbose", &level), BALLAST_EINVAL);
}

static const char *to_json(const char *text)
{
    static char out[4096];
    log_text_to_json(text, strlen(text), out, sizeof out);
    return out;
}

static void test_log_json_numbers_stay_numbers_and_words_become_strings(void **state)
{
    assert_string_equal(to_json("level=info event=ready records=42 ratio=0.5 neg=-3 exp=1e3"),
                        "{\"level\":\"info\",\"event\":\"ready\",\"records\":42,"
                        "\"ratio\":0.5,\"neg\":-3,\"exp\":1e3}");
    /* not JSON numbers: leading zero, trailing dot, hex, a version, an address with a port */
    assert_string_equal(to_json("a=007 b=1. c=0x10 d=1.2.3 e=127.0.0.1@53 f=yes"),
                        "{\"a\":\"007\",\"b\":\"1.\",\"c\":\"0x10\",\"d\":\"1.2.3\","
                        "\"e\":\"127.0.0.1@53\",\"f\":\"yes\"}");
}

static void test_log_json_quoted_values_are_strings_even_when_numeric(void **state)
{
    assert_string_equal(to_json("event=x reason=\"zone has 3 errors\" id=\"42\" empty=\"\""),
                        "{\"event\":\"x\",\"reason\":\"zone has 3 errors\",\"id\":\"42\","
                        "\"empty\":\"\"}");
}

static void test_log_json_escapes_quotes_backslashes_and_controls(void **state)
{
    /* a quote inside a quoted value (not followed by a space) and an escaped one */
    assert_string_equal(to_json("reason=\"say \\\"hi\\\" a\"b\" path=C:\\x"),
                        "{\"reason\":\"say \\\"hi\\\" a\\\"b\",\"path\":\"C:\\\\x\"}");
    assert_string_equal(to_json("m=\"a\tb\nc\x01\""), "{\"m\":\"a\\tb\\nc\\u0001\"}");
    /* valid UTF-8 passes, a stray byte becomes U+FFFD */
    assert_string_equal(to_json("z=\"caf\xc3\xa9 \xff\""), "{\"z\":\"caf\xc3\xa9 \\ufffd\"}");
}

static void test_log_json_keeps_words_without_equals_and_unterminated_quotes(void **state)
{
    assert_string_equal(to_json("event=x stray reason=\"cut"),
                        "{\"event\":\"x\",\"msg\":\"stray\",\"reason\":\"cut\"}");
}

static void test_log_json_cut_short_stays_valid(void **state)
{
    char out[24];
    size_t n = log_text_to_json("event=ready listen=127.0.0.1@53 workers=4", 41, out, sizeof out);
    assert_int_equal(n, strlen(out));
    assert_true(n < sizeof out);
    assert_string_equal(out, "{\"event\":\"ready\"}");
}

static void emit_json_line(void)
{
    log_info("ready", "listen=%s workers=%d reason=\"%s\"", "127.0.0.1@53", 4, "a \"q\"");
}

static void test_log_json_format_writes_one_object_per_line(void **state)
{
    log_set_format(LOG_FORMAT_JSON);
    char *text = capture(LOG_LEVEL_INFO, emit_json_line);
    log_set_format(LOG_FORMAT_TEXT);
    assert_true(strncmp(text, "{\"ts\":\"", 7) == 0);
    assert_non_null(strstr(text, "Z\",\"level\":\"info\",\"event\":\"ready\",\"listen\":"
                                 "\"127.0.0.1@53\",\"workers\":4,\"reason\":\"a \\\"q\\\"\"}\n"));
    assert_null(strchr(strchr(text, '\n') + 1, '\n')); /* one line */
}

static void test_log_format_and_target_parse(void **state)
{
    enum log_format format;
    enum log_target target;
    assert_int_equal(log_format_parse("json", &format), 0);
    assert_int_equal(format, LOG_FORMAT_JSON);
    assert_int_equal(log_format_parse("text", &format), 0);
    assert_int_equal(format, LOG_FORMAT_TEXT);
    assert_int_equal(log_format_parse("xml", &format), BALLAST_EINVAL);
    assert_int_equal(log_target_parse("syslog", &target), 0);
    assert_int_equal(target, LOG_TARGET_SYSLOG);
    assert_int_equal(log_target_parse("file", &target), BALLAST_EINVAL);
}

static void test_log_queries_switch_is_off_by_default(void **state)
{
    assert_false(log_queries_enabled());
    log_set_queries(true);
    assert_true(log_queries_enabled());
    log_set_queries(false);
    assert_false(log_queries_enabled());
}

static void test_log_query_describe_names_client_proto_question_and_rcode(void **state)
{
    /* id 1, RD, one question: www.Example.test AAAA IN */
    static const uint8_t query[] = {0, 1,   1,   0,   0,   1,   0,   0,   0,   0,   0,   0,
                                    3, 'w', 'w', 'w', 7,   'E', 'x', 'a', 'm', 'p', 'l', 'e',
                                    4, 't', 'e', 's', 't', 0,   0,   28,  0,   1};
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(5353)};
    inet_pton(AF_INET, "127.0.21.9", &sin.sin_addr);
    char buf[LOG_QUERY_TEXT_MAX];
    log_query_describe(buf, (struct sockaddr *)&sin, false, query, sizeof query, 3);
    assert_string_equal(buf, "client=127.0.21.9@5353 proto=udp qname=www.Example.test. "
                             "qtype=AAAA rcode=NXDOMAIN");
    log_query_describe(buf, (struct sockaddr *)&sin, true, query, 20, 1); /* cut question */
    assert_non_null(strstr(buf, "proto=tcp qname=- qtype=- rcode=FORMERR"));
}

static void test_log_query_describe_escapes_odd_name_bytes_and_unknown_types(void **state)
{
    /* the label a"b c, type 65280, rcode 23 */
    static const uint8_t query[] = {0, 1,   0,   0,   0,   1,   0, 0,    0, 0, 0, 0,
                                    5, 'a', '"', 'b', ' ', 'c', 0, 0xff, 0, 0, 1};
    char buf[LOG_QUERY_TEXT_MAX];
    log_query_describe(buf, NULL, false, query, sizeof query, 23);
    assert_string_equal(buf,
                        "client=- proto=udp qname=a\\034b\\032c. qtype=TYPE65280 rcode=BADCOOKIE");
    assert_string_equal(to_json(buf), "{\"client\":\"-\",\"proto\":\"udp\",\"qname\":"
                                      "\"a\\\\034b\\\\032c.\",\"qtype\":\"TYPE65280\",\"rcode\":"
                                      "\"BADCOOKIE\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_writes_structured_lines),
        cmocka_unit_test(test_log_level_filtering),
        cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_log_json_numbers_stay_numbers_and_words_become_strings),
        cmocka_unit_test(test_log_json_quoted_values_are_strings_even_when_numeric),
        cmocka_unit_test(test_log_json_escapes_quotes_backslashes_and_controls),
        cmocka_unit_test(test_log_json_keeps_words_without_equals_and_unterminated_quotes),
        cmocka_unit_test(test_log_json_cut_short_stays_valid),
        cmocka_unit_test(test_log_json_format_writes_one_object_per_line),
        cmocka_unit_test(test_log_format_and_target_parse),
        cmocka_unit_test(test_log_queries_switch_is_off_by_default),
        cmocka_unit_test(test_log_query_describe_names_client_proto_question_and_rcode),
        cmocka_unit_test(test_log_query_describe_escapes_odd_name_bytes_and_unknown_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
