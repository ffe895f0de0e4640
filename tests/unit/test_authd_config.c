/* Unit tests for authd/authd_config.c: the ballast-authd YAML schema, the --listen/--zone
 * flags and the final checks, each error asserted with its file:line and reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "authd_config.h"
#include "errors.h"

#define DATA "tests/unit/data/config/"

static void assert_contains(const char *text, const char *part)
{
    if (strstr(text, part) == NULL)
        fail_msg("'%s' lacks '%s'", text, part);
}

static void assert_listen(const struct authd_config *cfg, size_t i, const char *text,
                          const char *formatted)
{
    char buf[64];
    assert_string_equal(cfg->listen_text[i], text);
    assert_string_equal(addr_format((const struct sockaddr *)&cfg->listen[i].ss, buf, sizeof(buf)),
                        formatted);
}

/* Load a data file that must fail at line with reason containing part; cfg must come back
 * initialised (nothing to free, defaults in place). */
static void load_fails(const char *name, int want_rc, unsigned line, const char *part)
{
    char path[256];
    snprintf(path, sizeof(path), DATA "%s", name);
    struct authd_config cfg;
    struct config_error err = {0};
    int rc = authd_config_load(path, &cfg, &err);
    if (rc != want_rc)
        fail_msg("%s: rc %d, want %d (%s:%u: %s)", name, rc, want_rc, err.file, err.line,
                 err.reason);
    assert_string_equal(err.file, path);
    if (err.line != line)
        fail_msg("%s: line %u, want %u (%s)", name, err.line, line, err.reason);
    assert_contains(err.reason, part);
    assert_null(cfg.source_file);
    assert_int_equal(cfg.listen_count, 0);
    assert_int_equal(cfg.zone_count, 0);
    assert_null(cfg.zones);
    assert_int_equal(cfg.limits.max_zones, LIMIT_DEFAULT_MAX_ZONES);
}

static void test_authd_config_defaults(void **state)
{
    (void)state;
    struct authd_config cfg;
    authd_config_init(&cfg);
    assert_int_equal(cfg.listen_count, 0);
    assert_int_equal(cfg.zone_count, 0);
    assert_int_equal(cfg.workers, 0);
    assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
    assert_null(cfg.control_path);
    assert_null(cfg.pid_file);
    assert_null(cfg.source_file);
    assert_int_equal(cfg.limits.edns_udp_size, LIMIT_DEFAULT_EDNS_UDP_SIZE);
    assert_int_equal(cfg.limits.tcp_idle_timeout_ms, LIMIT_DEFAULT_TCP_IDLE_TIMEOUT_MS);
    authd_config_free(&cfg);
}

static void test_authd_config_good_file_sets_every_key(void **state)
{
    (void)state;
    struct authd_config cfg;
    struct config_error err = {0};
    int rc = authd_config_load(DATA "authd_good.yaml", &cfg, &err);
    if (rc != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    assert_string_equal(cfg.source_file, DATA "authd_good.yaml");

    assert_int_equal(cfg.listen_count, 3);
    assert_listen(&cfg, 0, "127.0.0.1@5301", "127.0.0.1@5301");
    assert_listen(&cfg, 1, "::1@5302", "::1@5302");
    assert_listen(&cfg, 2, "127.0.0.2", "127.0.0.2@53");
    assert_int_equal(cfg.workers, 4);
    assert_int_equal(cfg.log_level, LOG_LEVEL_DEBUG);
    assert_string_equal(cfg.control_path, DATA "run/authd.sock");
    assert_string_equal(cfg.pid_file, "/tmp/ballast-authd-test.pid");

    assert_int_equal(cfg.limits.max_zone_records, 1000);
    assert_true(cfg.limits.max_zone_bytes == 64ull << 20);
    assert_int_equal(cfg.limits.max_rrset_records, 100);
    assert_int_equal(cfg.limits.max_include_depth, 3);
    assert_int_equal(cfg.limits.max_zones, 50);
    assert_int_equal(cfg.limits.tcp_clients, 200);
    assert_int_equal(cfg.limits.tcp_idle_timeout_ms, 2500);
    assert_int_equal(cfg.limits.tcp_pipeline, 16);
    assert_int_equal(cfg.limits.edns_udp_size, 1400);
    assert_int_equal(cfg.limits.cname_chain, 8);

    assert_int_equal(cfg.zone_count, 3);
    assert_string_equal(cfg.zones[0].name, "example.test");
    assert_string_equal(cfg.zones[0].file, DATA "example.test.zone");
    assert_string_equal(cfg.zones[1].name, ".");
    assert_string_equal(cfg.zones[1].file, "/var/lib/ballast/root.zone");
    assert_string_equal(cfg.zones[2].name, "other.test");
    assert_string_equal(cfg.zones[2].file, DATA "sub/other.test.zone");

    assert_int_equal(authd_config_validate(&cfg, &err), 0);
    authd_config_free(&cfg);
    assert_null(cfg.zones);
    assert_int_equal(cfg.zone_count, 0);
    authd_config_free(&cfg); /* freeing twice is harmless: free re-initialises */
}

static void test_authd_config_single_listen_string_and_defaults_kept(void **state)
{
    (void)state;
    struct authd_config cfg;
    struct config_error err = {0};
    assert_int_equal(authd_config_load(DATA "authd_listen_single.yaml", &cfg, &err), 0);
    assert_int_equal(cfg.listen_count, 1);
    assert_listen(&cfg, 0, "127.0.0.1@5301", "127.0.0.1@5301");
    assert_int_equal(cfg.workers, 0);
    assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
    assert_null(cfg.control_path);
    assert_null(cfg.pid_file);
    assert_int_equal(cfg.limits.max_zones, LIMIT_DEFAULT_MAX_ZONES);
    assert_true(cfg.limits.max_zone_bytes == LIMIT_DEFAULT_MAX_ZONE_BYTES);
    assert_int_equal(authd_config_validate(&cfg, &err), 0);
    authd_config_free(&cfg);
}

static void test_authd_config_relative_zone_path_resolved_against_config_dir(void **state)
{
    (void)state;
    struct authd_config cfg;
    struct config_error err = {0};
    assert_int_equal(authd_config_load(DATA "authd_zones_only.yaml", &cfg, &err), 0);
    assert_int_equal(cfg.zone_count, 1);
    assert_string_equal(cfg.zones[0].file, "tests/unit/data/config/example.test.zone");

    /* A config named without a directory is in the working directory: paths stay as written. */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(DATA), 0);
    struct authd_config here;
    int rc = authd_config_load("authd_zones_only.yaml", &here, &err);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    assert_string_equal(here.zones[0].file, "example.test.zone");
    authd_config_free(&here);

    /* Without listeners the final check refuses the config, naming the way out. */
    assert_int_equal(authd_config_validate(&cfg, &err), BALLAST_EINVAL);
    assert_string_equal(err.file, DATA "authd_zones_only.yaml");
    assert_string_equal(err.reason, "no listen address: add server.listen or --listen");
    authd_config_free(&cfg);
}

static void test_authd_config_unknown_keys_rejected_with_line(void **state)
{
    (void)state;
    load_fails("authd_unknown_key.yaml", BALLAST_EINVAL, 5, "unknown key 'max-zone-recods'");
    load_fails("authd_unknown_key.yaml", BALLAST_EINVAL, 5, "max-zone-records");
    load_fails("authd_unknown_top_key.yaml", BALLAST_EINVAL, 3,
               "unknown key 'resolver' (expected one of: server, limits, zones)");
    load_fails("authd_unknown_zone_key.yaml", BALLAST_EINVAL, 4,
               "unknown key 'type' (expected one of: name, file)");
}

static void test_authd_config_bad_values_rejected_with_line(void **state)
{
    (void)state;
    load_fails("authd_bad_int.yaml", BALLAST_EINVAL, 3,
               "workers: expected an integer between 0 and 256, got 'abc'");
    load_fails("authd_workers_out_of_range.yaml", BALLAST_EINVAL, 2,
               "expected an integer between 0 and 256, got '257'");
    load_fails("authd_edns_out_of_range.yaml", BALLAST_EINVAL, 3,
               "edns-udp-size: expected an integer between 512 and 4096, got '9000'");
    load_fails("authd_bad_log_level.yaml", BALLAST_EINVAL, 2,
               "log-level: expected error, warn, info or debug, got 'verbose'");
    load_fails("authd_bad_duration.yaml", BALLAST_EINVAL, 2,
               "tcp-idle-timeout: expected a duration between 1ms and 1d, got '10 seconds'");
    load_fails("authd_bad_size.yaml", BALLAST_EINVAL, 2,
               "max-zone-size: expected a size between 1 and 1T, got '12Q'");
    load_fails("authd_size_overflow.yaml", BALLAST_EINVAL, 2, "max-zone-size: expected a size");
    load_fails("authd_top_level_list.yaml", BALLAST_EINVAL, 1, "top level must be a map");
}

static void test_authd_config_duplicate_key_rejected(void **state)
{
    (void)state;
    load_fails("authd_duplicate_key.yaml", BALLAST_EINVAL, 5,
               "duplicate key 'workers' (first at line 3)");
}

static void test_authd_config_duplicate_zone_rejected_ignoring_case_and_dot(void **state)
{
    (void)state;
    load_fails("authd_duplicate_zone.yaml", BALLAST_EINVAL, 6,
               "duplicate zone 'example.test' (first at line 2)");
}

static void test_authd_config_bad_listen_address_rejected(void **state)
{
    (void)state;
    load_fails("authd_bad_listen.yaml", BALLAST_EINVAL, 4,
               "invalid listen address 'localhost@53' (expected ADDR[@PORT])");
}

static void test_authd_config_aliases_rejected(void **state)
{
    (void)state;
    load_fails("authd_alias.yaml", BALLAST_EINVAL, 2, "anchors and aliases are not allowed");
}

static void test_authd_config_syntax_error_reports_line(void **state)
{
    (void)state;
    load_fails("authd_syntax_error.yaml", BALLAST_EPARSE, 4, "could not find expected ':'");
    load_fails("authd_syntax_error.yaml", BALLAST_EPARSE, 4, "at line 3");
}

static void test_authd_config_more_zones_than_max_zones_rejected(void **state)
{
    (void)state;
    /* limits comes after zones in the file, and still applies to them. */
    load_fails("authd_too_many_zones.yaml", BALLAST_ELIMIT, 6,
               "too many zones (limit is 2, max-zones)");
}

static void test_authd_config_bad_zone_entries_rejected(void **state)
{
    (void)state;
    load_fails("authd_bad_zone_name.yaml", BALLAST_EINVAL, 2, "invalid zone name 'bad..name'");
    load_fails("authd_zone_missing_file.yaml", BALLAST_EINVAL, 4, "zone is missing 'file'");
}

static void test_authd_config_missing_file_reports_os_error(void **state)
{
    (void)state;
    load_fails("no-such-config.yaml", BALLAST_EIO, 0, "No such file or directory");
}

static void test_authd_config_oversized_file_rejected(void **state)
{
    (void)state;
    char path[] = "/tmp/ballast-test-authd-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)LIMIT_DEFAULT_CONFIG_BYTES + 1), 0);
    close(fd);
    struct authd_config cfg;
    struct config_error err = {0};
    int rc = authd_config_load(path, &cfg, &err);
    unlink(path);
    assert_int_equal(rc, BALLAST_ELIMIT);
    assert_int_equal(err.line, 0);
    char want[128];
    snprintf(want, sizeof(want), "file is %u bytes, limit is %u (max-config-size)",
             LIMIT_DEFAULT_CONFIG_BYTES + 1, LIMIT_DEFAULT_CONFIG_BYTES);
    assert_string_equal(err.reason, want);
    assert_int_equal(cfg.zone_count, 0);
}

static void test_authd_config_flags_build_a_config(void **state)
{
    (void)state;
    struct authd_config cfg;
    struct config_error err = {0};
    authd_config_init(&cfg);
    assert_int_equal(authd_config_add_listen(&cfg, "127.0.0.1@5301", &err), 0);
    assert_int_equal(authd_config_add_listen(&cfg, "::1", &err), 0);
    assert_listen(&cfg, 1, "::1", "::1@53");
    /* The first ':' splits, so a file path may itself contain ':'. */
    assert_int_equal(authd_config_add_zone_arg(&cfg, "Example.Test.:zones/a:b.zone", &err), 0);
    assert_int_equal(authd_config_add_zone_arg(&cfg, ".:root.zone", &err), 0);
    assert_int_equal(cfg.zone_count, 2);
    assert_string_equal(cfg.zones[0].name, "example.test");
    assert_string_equal(cfg.zones[0].file, "zones/a:b.zone");
    assert_string_equal(cfg.zones[1].name, ".");
    assert_string_equal(cfg.zones[1].file, "root.zone");
    assert_int_equal(authd_config_validate(&cfg, &err), 0);
    authd_config_free(&cfg);
}

static void test_authd_config_flag_errors_name_command_line(void **state)
{
    (void)state;
    struct authd_config cfg;
    struct config_error err = {0};
    authd_config_init(&cfg);
    assert_int_equal(authd_config_add_listen(&cfg, "127.0.0.1@99999", &err), BALLAST_EINVAL);
    assert_string_equal(err.file, "command line");
    assert_int_equal(err.line, 0);
    assert_string_equal(err.reason,
                        "invalid listen address '127.0.0.1@99999' (expected ADDR[@PORT])");
    assert_int_equal(cfg.listen_count, 0);

    assert_int_equal(authd_config_add_listen(&cfg, "127.0.0.1@5301", &err), 0);
    assert_int_equal(authd_config_add_listen(&cfg, "127.0.0.1@5301", &err), BALLAST_EINVAL);
    assert_contains(err.reason, "duplicate listen address");

    const char *bad_zones[] = {"example.test", ":file", "example.test:", ""};
    for (size_t i = 0; i < sizeof(bad_zones) / sizeof(bad_zones[0]); i++) {
        assert_int_equal(authd_config_add_zone_arg(&cfg, bad_zones[i], &err), BALLAST_EINVAL);
        assert_string_equal(err.file, "command line");
        assert_contains(err.reason, "(expected NAME:FILE)");
    }
    assert_int_equal(authd_config_add_zone_arg(&cfg, "a..b:f.zone", &err), BALLAST_EINVAL);
    assert_contains(err.reason, "invalid zone name 'a..b'");

    assert_int_equal(authd_config_validate(&cfg, &err), BALLAST_EINVAL);
    assert_string_equal(err.file, "command line");
    assert_contains(err.reason, "no zones");

    assert_int_equal(authd_config_add_zone_arg(&cfg, "example.test:a.zone", &err), 0);
    assert_int_equal(authd_config_add_zone_arg(&cfg, "EXAMPLE.test.:b.zone", &err), BALLAST_EINVAL);
    assert_string_equal(err.reason, "duplicate zone 'example.test'");
    assert_int_equal(cfg.zone_count, 1);
    authd_config_free(&cfg);
}

static void test_authd_config_validate_requires_listener_and_zone(void **state)
{
    (void)state;
    struct authd_config cfg;
    struct config_error err = {0};
    authd_config_init(&cfg);
    assert_int_equal(authd_config_validate(&cfg, &err), BALLAST_EINVAL);
    assert_string_equal(err.file, "command line");
    assert_int_equal(err.line, 0);
    assert_string_equal(err.reason, "no listen address: add server.listen or --listen");

    assert_int_equal(authd_config_add_listen(&cfg, "127.0.0.1@5301", &err), 0);
    assert_int_equal(authd_config_validate(&cfg, &err), BALLAST_EINVAL);
    assert_contains(err.reason, "no zones");

    assert_int_equal(authd_config_add_zone_arg(&cfg, "a.test:a.zone", &err), 0);
    assert_int_equal(authd_config_add_zone_arg(&cfg, "b.test:b.zone", &err), 0);
    assert_int_equal(authd_config_validate(&cfg, &err), 0);

    cfg.limits.max_zones = 1;
    assert_int_equal(authd_config_validate(&cfg, &err), BALLAST_ELIMIT);
    assert_contains(err.reason, "too many zones: 2 (limit is 1, max-zones)");
    authd_config_free(&cfg);
}

static void test_authd_config_validate_catches_duplicates_added_directly(void **state)
{
    (void)state;
    /* Zones loaded from a file plus flags: validate re-checks the merged list. */
    struct authd_config cfg;
    struct config_error err = {0};
    assert_int_equal(authd_config_load(DATA "authd_listen_single.yaml", &cfg, &err), 0);
    free(cfg.zones[0].name);
    cfg.zones[0].name = strdup("b.test");
    assert_int_equal(authd_config_add_zone_arg(&cfg, "a.test:a.zone", &err), 0);
    free(cfg.zones[1].name);
    cfg.zones[1].name = strdup("b.test");
    assert_int_equal(authd_config_validate(&cfg, &err), BALLAST_EINVAL);
    assert_string_equal(err.file, DATA "authd_listen_single.yaml");
    assert_string_equal(err.reason, "duplicate zone 'b.test'");
    authd_config_free(&cfg);
}

static void test_authd_config_many_listeners_capped(void **state)
{
    (void)state;
    struct authd_config cfg;
    struct config_error err = {0};
    authd_config_init(&cfg);
    char text[32];
    for (int i = 0; i < AUTHD_MAX_LISTEN; i++) {
        snprintf(text, sizeof(text), "127.0.0.1@%d", 5000 + i);
        assert_int_equal(authd_config_add_listen(&cfg, text, &err), 0);
    }
    assert_int_equal(authd_config_add_listen(&cfg, "127.0.0.1@6000", &err), BALLAST_ELIMIT);
    assert_contains(err.reason, "too many listen addresses (limit is 64)");
    assert_int_equal(cfg.listen_count, AUTHD_MAX_LISTEN);
    authd_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authd_config_defaults),
        cmocka_unit_test(test_authd_config_good_file_sets_every_key),
        cmocka_unit_test(test_authd_config_single_listen_string_and_defaults_kept),
        cmocka_unit_test(test_authd_config_relative_zone_path_resolved_against_config_dir),
        cmocka_unit_test(test_authd_config_unknown_keys_rejected_with_line),
        cmocka_unit_test(test_authd_config_bad_values_rejected_with_line),
        cmocka_unit_test(test_authd_config_duplicate_key_rejected),
        cmocka_unit_test(test_authd_config_duplicate_zone_rejected_ignoring_case_and_dot),
        cmocka_unit_test(test_authd_config_bad_listen_address_rejected),
        cmocka_unit_test(test_authd_config_aliases_rejected),
        cmocka_unit_test(test_authd_config_syntax_error_reports_line),
        cmocka_unit_test(test_authd_config_more_zones_than_max_zones_rejected),
        cmocka_unit_test(test_authd_config_bad_zone_entries_rejected),
        cmocka_unit_test(test_authd_config_missing_file_reports_os_error),
        cmocka_unit_test(test_authd_config_oversized_file_rejected),
        cmocka_unit_test(test_authd_config_flags_build_a_config),
        cmocka_unit_test(test_authd_config_flag_errors_name_command_line),
        cmocka_unit_test(test_authd_config_validate_requires_listener_and_zone),
        cmocka_unit_test(test_authd_config_validate_catches_duplicates_added_directly),
        cmocka_unit_test(test_authd_config_many_listeners_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
