/* Unit tests for common/log.c: key=value lines, levels and filtering. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_writes_structured_lines),
        cmocka_unit_test(test_log_level_filtering),
        cmocka_unit_test(test_log_level_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
