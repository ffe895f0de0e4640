/* Unit tests for authd/catalog.c: staged loading where a failing zone keeps its last good
 * version, refusal of an empty set, and release of the replaced set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "catalog.h"
#include "errors.h"
#include "wire.h"

static char dir[] = "/tmp/ballast-test-catalog-XXXXXX";

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void configure(struct authd_config *cfg)
{
    struct config_error err;
    char arg[300];
    authd_config_init(cfg);
    snprintf(arg, sizeof arg, "a.test:%s/a.zone", dir);
    assert_int_equal(authd_config_add_zone_arg(cfg, arg, &err), 0);
    snprintf(arg, sizeof arg, "b.test:%s/b.zone", dir);
    assert_int_equal(authd_config_add_zone_arg(cfg, arg, &err), 0);
}

static const char *good_a = "$ORIGIN a.test.\n@ SOA ns admin 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n";
static const char *good_a2 = "$ORIGIN a.test.\n@ SOA ns admin 2 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n";
static const char *good_b = "$ORIGIN b.test.\n@ SOA ns admin 7 1 1 1 1\n@ NS ns\n";
static const char *bad = "$ORIGIN a.test.\n@ SOA ns admin 3 1 1 1 1\n@ NS ns\nns A 300.0.0.1\n";

static const struct zone *find(const struct zone_set *set, const char *text)
{
    uint8_t name[255];
    size_t len = 0;
    assert_int_equal(wire_name_from_text(text, name, &len), 0);
    return zone_set_find_exact(set, name, len);
}

static void test_catalog_failed_zone_keeps_last_good_version(void **state)
{
    assert_non_null(mkdtemp(dir));
    write_file("a.zone", good_a);
    write_file("b.zone", good_b);
    struct authd_config cfg;
    configure(&cfg);
    struct zone_set *first = NULL, *second = NULL, *third = NULL;
    struct catalog_report report;
    assert_int_equal(catalog_load(&cfg, NULL, &first, &report), 0);
    assert_int_equal(report.loaded, 2);
    assert_int_equal(report.failure_count, 0);
    catalog_report_free(&report);

    /* a.zone breaks: the new set still serves serial 1 of a.test, shared with the old set */
    write_file("a.zone", bad);
    assert_int_equal(catalog_load(&cfg, first, &second, &report), 0);
    assert_int_equal(report.failure_count, 1);
    assert_true(report.failures[0].kept_previous);
    assert_string_equal(report.failures[0].zone, "a.test");
    assert_int_equal(report.failures[0].error.line, 4);
    char text[1200];
    assert_non_null(
        strstr(catalog_failure_text(&report.failures[0], text, sizeof text), "a.zone:4: "));
    assert_ptr_equal(find(second, "a.test"), find(first, "a.test"));
    assert_int_equal(find(second, "a.test")->serial, 1);
    catalog_report_free(&report);
    catalog_release_previous(second, first); /* must not free the shared zone */

    /* fixed: fresh version replaces it */
    write_file("a.zone", good_a2);
    assert_int_equal(catalog_load(&cfg, second, &third, &report), 0);
    assert_int_equal(find(third, "a.test")->serial, 2);
    catalog_report_free(&report);
    catalog_release_previous(third, second);
    zone_set_free(third);
    authd_config_free(&cfg);
}

static void test_catalog_refuses_an_empty_set(void **state)
{
    write_file("a.zone", bad);
    write_file("b.zone", "garbage here\n");
    struct authd_config cfg;
    configure(&cfg);
    struct zone_set *set = NULL;
    struct catalog_report report;
    assert_int_equal(catalog_load(&cfg, NULL, &set, &report), BALLAST_ENOTFOUND);
    assert_null(set);
    assert_int_equal(report.failure_count, 2);
    assert_false(report.failures[0].kept_previous);
    catalog_report_free(&report);
    size_t zones = 99;
    FILE *devnull = fopen("/dev/null", "w");
    assert_int_not_equal(catalog_check(&cfg, devnull, &zones, NULL), 0);
    fclose(devnull);
    assert_int_equal(zones, 0);
    authd_config_free(&cfg);
    char path[256];
    snprintf(path, sizeof path, "%s/a.zone", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/b.zone", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_catalog_failed_zone_keeps_last_good_version),
        cmocka_unit_test(test_catalog_refuses_an_empty_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
