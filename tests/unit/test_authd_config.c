/* Unit tests for authd/authd_config.c: the ballast-authd YAML schema (health pools and feeds
 * included), the --listen/--zone flags and the final checks, each error asserted with its
 * file:line and reason. */
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
#include "wire.h"

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
    assert_int_equal(cfg.health.pool_count, 0);
    assert_null(cfg.health.pools);
    assert_int_equal(cfg.health.feed_count, 0);
    assert_null(cfg.health_pool_lines);
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

    assert_int_equal(cfg.health.pool_count, 0); /* no health section: no pools, no feeds */
    assert_int_equal(cfg.health.feed_count, 0);

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
               "unknown key 'resolver' (expected one of: server, limits, rrl, zones, health)");
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

/* ---- health section ---- */

static void assert_target(const struct probe_spec *spec, const char *want)
{
    char buf[64];
    assert_string_equal(addr_format((const struct sockaddr *)&spec->target.ss, buf, sizeof(buf)),
                        want);
}

static void assert_wire_name(const uint8_t *name, size_t len, const char *text)
{
    uint8_t want[WIRE_NAME_MAX];
    size_t want_len = 0;
    assert_int_equal(wire_name_from_text(text, want, &want_len), 0);
    assert_int_equal(len, want_len);
    assert_memory_equal(name, want, want_len);
}

/* The damping settings of health_good.yaml, which every member's params carry. */
static void assert_good_damping(const struct health_params *params)
{
    assert_int_equal(params->flap_window_ms, 600000);
    assert_int_equal(params->flap_threshold, 6);
    assert_int_equal(params->flap_holddown_ms, 90000);
}

static void check_good_api_a_pool(const struct authd_config *cfg)
{
    const struct healthd_pool_config *pool = &cfg->health.pools[0];
    assert_string_equal(pool->def.name, "api.example.test/A");
    assert_wire_name(pool->def.owner, pool->def.owner_len, "api.example.test");
    assert_int_equal(pool->def.type, WIRE_TYPE_A);
    assert_int_equal(pool->def.ttl, 20);
    assert_int_equal(pool->def.min_healthy, 2);
    assert_int_equal(pool->def.max_records, 3);
    assert_int_equal(pool->def.empty_mode, POOL_LAST_HEALTHY);
    assert_true(pool->max_withdraw_share == 0.5);
    assert_int_equal(pool->withdraw_interval_ms, 30000);
    assert_int_equal(cfg->health_pool_lines[0], 10);
    assert_int_equal(pool->def.count, 3);

    static const uint8_t first[4] = {192, 0, 2, 10};
    assert_string_equal(pool->def.members[0].text, "192.0.2.10");
    assert_int_equal(pool->def.members[0].rdlen, 4);
    assert_memory_equal(pool->def.members[0].rdata, first, 4);
    assert_int_equal(pool->def.members[0].priority, 0);
    assert_int_equal(pool->def.members[0].weight, 1);

    /* Member 0: the pool's check as written. */
    const struct healthd_check *check = &pool->checks[0];
    assert_true(check->enabled);
    assert_int_equal(check->spec.kind, PROBE_HTTP);
    assert_string_equal(check->spec.url, "http://192.0.2.10:8080/healthz?pool=api");
    assert_target(&check->spec, "192.0.2.10@8080");
    assert_int_equal(check->spec.expect_status, 204);
    assert_string_equal(check->spec.body_match, "ok");
    assert_true(check->spec.tls_verify);
    assert_int_equal(check->spec.interval_ms, 3000);
    assert_int_equal(check->spec.timeout_ms, 1500);
    assert_int_equal(check->params.rise, 4);
    assert_int_equal(check->params.fall, 5);
    assert_int_equal(check->params.startup, HEALTH_DOWN);
    assert_good_damping(&check->params);

    /* Member 1: url and timeout replaced, everything else inherited (the port key beats the
     * URL's default port). */
    assert_int_equal(pool->def.members[1].priority, 1);
    assert_int_equal(pool->def.members[1].weight, 3);
    check = &pool->checks[1];
    assert_int_equal(check->spec.kind, PROBE_HTTP);
    assert_string_equal(check->spec.url, "http://192.0.2.20/alt");
    assert_target(&check->spec, "192.0.2.20@8080");
    assert_int_equal(check->spec.timeout_ms, 500);
    assert_int_equal(check->spec.interval_ms, 3000);
    assert_int_equal(check->spec.expect_status, 204);
    assert_string_equal(check->spec.body_match, "ok");
    assert_int_equal(check->params.rise, 4);
    assert_int_equal(check->params.startup, HEALTH_DOWN);

    /* Member 2: a DNS check of its own at check-address; nothing comes from the pool's. */
    assert_int_equal(pool->def.members[2].priority, 2);
    assert_int_equal(pool->def.members[2].weight, 7);
    check = &pool->checks[2];
    assert_true(check->enabled);
    assert_int_equal(check->spec.kind, PROBE_DNS);
    assert_target(&check->spec, "198.51.100.30@53");
    assert_wire_name(check->spec.dns_qname, check->spec.dns_qname_len, "health.example.test");
    assert_int_equal(check->spec.dns_qtype, 16);       /* TXT */
    assert_int_equal(check->spec.dns_expect_rcode, 3); /* NXDOMAIN */
    assert_null(check->spec.url);
    assert_null(check->spec.body_match);
    assert_int_equal(check->spec.interval_ms, 10000);
    assert_int_equal(check->spec.timeout_ms, 2000);
    assert_int_equal(check->params.rise, 2);
    assert_int_equal(check->params.fall, 3);
    assert_int_equal(check->params.startup, HEALTH_UP);
    assert_good_damping(&check->params);
}

static void check_good_other_pools(const struct authd_config *cfg)
{
    /* The same owner with another type is another pool, with every default. */
    const struct healthd_pool_config *pool = &cfg->health.pools[1];
    assert_string_equal(pool->def.name, "api.example.test/AAAA");
    assert_int_equal(pool->def.type, WIRE_TYPE_AAAA);
    assert_int_equal(pool->def.ttl, 30);
    assert_int_equal(pool->def.min_healthy, 1);
    assert_int_equal(pool->def.max_records, 0);
    assert_int_equal(pool->def.empty_mode, POOL_FAIL_OPEN);
    assert_true(pool->max_withdraw_share == 0.25);
    assert_int_equal(pool->withdraw_interval_ms, 10000);
    assert_int_equal(pool->def.members[0].rdlen, 16);
    const struct healthd_check *check = &pool->checks[0];
    assert_int_equal(check->spec.kind, PROBE_HTTPS);
    assert_string_equal(check->spec.url, "https://[2001:db8::10]/"); /* default URL, brackets */
    assert_target(&check->spec, "2001:db8::10@443");
    assert_false(check->spec.tls_verify);
    assert_int_equal(check->spec.expect_status, 0);
    assert_null(check->spec.body_match);

    pool = &cfg->health.pools[2];
    assert_string_equal(pool->def.name, "www.example.test/CNAME");
    assert_int_equal(pool->def.type, WIRE_TYPE_CNAME);
    assert_int_equal(pool->def.max_records, 1); /* one CNAME per name, whatever the default */
    assert_string_equal(pool->def.members[0].text, "eu.example.test.");
    assert_wire_name(pool->def.members[0].rdata, pool->def.members[0].rdlen, "eu.example.test");
    assert_int_equal(pool->checks[0].spec.kind, PROBE_TCP);
    assert_target(&pool->checks[0].spec, "2001:db8::53@443");
    assert_string_equal(pool->def.members[1].text, "US.example.test"); /* as written, for feeds */
    assert_wire_name(pool->def.members[1].rdata, pool->def.members[1].rdlen, "us.example.test");
    assert_int_equal(pool->def.members[1].weight, 2);
    assert_target(&pool->checks[1].spec, "192.0.2.53@443");

    /* No check anywhere: no probe, feed-driven, damping still applies. */
    pool = &cfg->health.pools[3];
    assert_string_equal(pool->def.name, "feed-only.example.test/A");
    assert_false(pool->checks[0].enabled);
    assert_int_equal(pool->checks[0].params.startup, HEALTH_UP);
    assert_good_damping(&pool->checks[0].params);
    assert_int_equal(cfg->health_pool_lines[3], 52);
}

static void check_good_feeds(const struct authd_config *cfg)
{
    static const uint8_t key_start[4] = {0xd7, 0x5a, 0x98, 0x01}; /* RFC 8032 §7.1 TEST 1 */
    const struct healthd_feed_config *feed = &cfg->health.feeds[0];
    assert_string_equal(feed->url, DATA "feeds/health.json"); /* relative to the config */
    assert_true(feed->has_key);
    assert_memory_equal(feed->public_key, key_start, 4);
    assert_int_equal(feed->public_key[31], 0x1a);
    assert_string_equal(feed->signature_url, "https://feeds.example.test/health.json.sig");
    assert_int_equal(feed->interval_ms, 5000);
    assert_int_equal(feed->valid_ms, 30000);
    assert_true(feed->limits.max_bytes == 2u << 20);
    assert_true(feed->limits.max_members == 5000);
    assert_true(feed->limits.max_age_s == 120);
    assert_true(feed->limits.max_skew_s == 10);

    struct feed_limits defaults;
    feed_limits_defaults(&defaults);
    feed = &cfg->health.feeds[1];
    assert_string_equal(feed->url, "https://prober.example.test:8443/feed.json");
    assert_false(feed->has_key);
    assert_null(feed->signature_url);
    assert_int_equal(feed->interval_ms, 10000);
    assert_int_equal(feed->valid_ms, 60000);
    assert_memory_equal(&feed->limits, &defaults, sizeof(defaults));
    assert_string_equal(cfg->health.feeds[2].url, "file:///var/lib/ballast/feed.json");
}

static void test_authd_config_health_good_file_sets_every_key(void **state)
{
    (void)state;
    struct authd_config cfg;
    struct config_error err = {0};
    int rc = authd_config_load(DATA "health_good.yaml", &cfg, &err);
    if (rc != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    assert_int_equal(cfg.health.pool_count, 4);
    assert_int_equal(cfg.health.feed_count, 3);
    check_good_api_a_pool(&cfg);
    check_good_other_pools(&cfg);
    check_good_feeds(&cfg);
    assert_int_equal(authd_config_validate(&cfg, &err), 0);
    authd_config_free(&cfg);
    assert_int_equal(cfg.health.pool_count, 0);
    assert_null(cfg.health.pools);
    assert_null(cfg.health_pool_lines);
}

static void test_authd_config_health_example_in_zones_loads_and_validates(void **state)
{
    (void)state;
    struct authd_config cfg;
    struct config_error err = {0};
    int rc = authd_config_load("zones/health.yaml", &cfg, &err);
    if (rc != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    assert_int_equal(cfg.health.pool_count, 3);
    assert_int_equal(cfg.health.feed_count, 1);
    assert_string_equal(cfg.health.pools[2].def.name, "www.health.example.test/CNAME");
    assert_string_equal(cfg.health.feeds[0].url, "zones/health-feed.json");
    assert_int_equal(authd_config_validate(&cfg, &err), 0);
    authd_config_free(&cfg);
}

static void test_authd_config_health_unknown_keys_rejected_with_line(void **state)
{
    (void)state;
    load_fails("health_unknown_key.yaml", BALLAST_EINVAL, 8,
               "unknown key 'min-healty' (expected one of: name, type, ttl, min-healthy, "
               "max-records, when-all-down, max-withdraw-share, withdraw-interval, check, "
               "members)");
    load_fails("health_unknown_check_key.yaml", BALLAST_EINVAL, 11,
               "unknown key 'intervall' (expected one of: type, port, url, expect-status, "
               "body-match, tls-verify, dns-name, dns-type, dns-rcode, interval, timeout, rise, "
               "fall, startup)");
    load_fails("health_unknown_member_key.yaml", BALLAST_EINVAL, 10,
               "unknown key 'adress' (expected one of: address, target, priority, weight, "
               "check-address, check)");
    load_fails("health_unknown_section_key.yaml", BALLAST_EINVAL, 5,
               "unknown key 'pool' (expected one of: damping, pools, feeds, max-pools)");
}

static void test_authd_config_health_bad_types_rejected(void **state)
{
    (void)state;
    load_fails("health_bad_pool_type.yaml", BALLAST_EINVAL, 7,
               "type: expected A, AAAA or CNAME, got 'MX'");
    load_fails("health_bad_check_type.yaml", BALLAST_EINVAL, 8,
               "type: expected tcp, http, https or dns, got 'icmp'");
}

static void test_authd_config_health_bad_member_addresses_rejected(void **state)
{
    (void)state;
    load_fails("health_bad_member_address.yaml", BALLAST_EINVAL, 10,
               "address: '192.0.2.300' is not an IPv4 address (pool type A)");
    load_fails("health_member_wrong_family.yaml", BALLAST_EINVAL, 9,
               "address: '2001:db8::1' is not an IPv4 address (pool type A)");
}

static void test_authd_config_health_duplicate_pool_rejected_ignoring_case_and_dot(void **state)
{
    (void)state;
    load_fails("health_duplicate_pool.yaml", BALLAST_EINVAL, 12,
               "duplicate pool 'api.example.test/A' (first at line 6)");
}

static void test_authd_config_health_duplicate_member_rejected_in_canonical_form(void **state)
{
    (void)state;
    load_fails("health_duplicate_member.yaml", BALLAST_EINVAL, 11,
               "duplicate member '2001:db8::1' in pool 'api.example.test/AAAA' (first at line 9)");
    load_fails("health_duplicate_feed.yaml", BALLAST_EINVAL, 7,
               "duplicate feed 'tests/unit/data/config/feed.json' (first at line 6)");
}

static void test_authd_config_health_timeout_must_be_below_interval(void **state)
{
    (void)state;
    load_fails("health_timeout_not_below_interval.yaml", BALLAST_EINVAL, 12,
               "timeout (2000ms) must be shorter than interval (2000ms)");
    /* The member's interval, merged over the pool's timeout, is where the pair broke. */
    load_fails("health_member_interval_below_timeout.yaml", BALLAST_EINVAL, 12,
               "timeout (2000ms) must be shorter than interval (1000ms)");
}

static void test_authd_config_health_bad_share_rejected(void **state)
{
    (void)state;
    load_fails("health_bad_share.yaml", BALLAST_EINVAL, 8,
               "max-withdraw-share: expected a number above 0 and at most 1, got '1.5'");
    load_fails("health_zero_share.yaml", BALLAST_EINVAL, 8,
               "max-withdraw-share: expected a number above 0 and at most 1, got '0'");
}

static void test_authd_config_health_bad_urls_rejected(void **state)
{
    (void)state;
    load_fails("health_bad_url.yaml", BALLAST_EINVAL, 10,
               "url: invalid URL 'http://192.0.2.1:99999/': ");
    load_fails("health_url_scheme_mismatch.yaml", BALLAST_EINVAL, 8,
               "url: 'https://192.0.2.1/' does not match the check type http");
    load_fails("health_bad_feed_url.yaml", BALLAST_EINVAL, 6,
               "url: 'ftp://prober.example.test/feed.json': expected a path, a file:// URL or an "
               "http(s):// URL");
}

static void test_authd_config_health_bad_public_key_rejected(void **state)
{
    (void)state;
    load_fails("health_bad_public_key.yaml", BALLAST_EINVAL, 7,
               "public-key: expected the base64 of a 32-byte Ed25519 public key, got "
               "'bm90IGEga2V5'");
    load_fails("health_signature_without_key.yaml", BALLAST_EINVAL, 7,
               "signature-url: set only with public-key");
}

static void test_authd_config_health_probe_needs_a_target(void **state)
{
    (void)state;
    load_fails("health_tcp_without_port.yaml", BALLAST_EINVAL, 8,
               "check: a tcp check needs a port");
    load_fails("health_cname_check_without_address.yaml", BALLAST_EINVAL, 11,
               "member 'us.example.test' of a CNAME pool has a check but no check-address");
    load_fails("health_check_address_without_check.yaml", BALLAST_EINVAL, 9,
               "check-address: the member has no check");
}

static void test_authd_config_health_other_bad_values_rejected(void **state)
{
    (void)state;
    load_fails("health_key_for_other_kind.yaml", BALLAST_EINVAL, 11,
               "url: only for http and https checks, this one is tcp");
    load_fails("health_bad_dns_rcode.yaml", BALLAST_EINVAL, 8,
               "dns-rcode: expected an RCODE name such as NOERROR, NXDOMAIN or REFUSED, got "
               "'GOOD'");
    load_fails("health_bad_when_all_down.yaml", BALLAST_EINVAL, 8,
               "when-all-down: expected fail-open or last-healthy, got 'fail-closed'");
    load_fails("health_min_healthy_above_members.yaml", BALLAST_EINVAL, 8,
               "min-healthy: 3 is more than the pool's 2 members");
    load_fails("health_no_members.yaml", BALLAST_EINVAL, 9,
               "pool 'api.example.test/A' has no members (at least one is needed)");
    load_fails("health_cname_max_records.yaml", BALLAST_EINVAL, 8,
               "max-records: a CNAME pool answers with exactly one record (RFC 2181 §10.1), got 2");
    load_fails("health_valid_for_short.yaml", BALLAST_EINVAL, 8,
               "valid-for (30000ms) must be longer than interval (30000ms)");
}

/* Load a file that parses but that authd_config_validate refuses at line with reason. */
static void validate_fails(const char *name, unsigned line, const char *reason)
{
    char path[256];
    snprintf(path, sizeof(path), DATA "%s", name);
    struct authd_config cfg;
    struct config_error err = {0};
    int rc = authd_config_load(path, &cfg, &err);
    if (rc != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    assert_int_equal(authd_config_validate(&cfg, &err), BALLAST_EINVAL);
    assert_string_equal(err.file, path);
    assert_int_equal(err.line, line);
    assert_string_equal(err.reason, reason);
    authd_config_free(&cfg);
}

static void test_authd_config_health_pool_outside_zones_rejected_by_validate(void **state)
{
    (void)state;
    validate_fails("health_outside_zone.yaml", 6,
                   "pool 'api.other.test/A' is outside every configured zone (its zone must be "
                   "served, with the static records in its zone file)");
    /* A zone added by --zone after loading puts it inside. */
    struct authd_config cfg;
    struct config_error err = {0};
    assert_int_equal(authd_config_load(DATA "health_outside_zone.yaml", &cfg, &err), 0);
    assert_int_equal(authd_config_add_zone_arg(&cfg, "other.test:other.test.zone", &err), 0);
    assert_int_equal(authd_config_validate(&cfg, &err), 0);
    authd_config_free(&cfg);
}

static void test_authd_config_health_cname_pool_at_apex_rejected(void **state)
{
    (void)state;
    validate_fails("health_cname_at_apex.yaml", 9,
                   "pool 'example.test/CNAME': a CNAME pool cannot be at the apex of zone "
                   "'example.test' (RFC 1034 §3.6.2)");
}

/* Write a config with `pools` pools of one member each, or one pool of `members` members. */
static void write_big_config(char *path, size_t pools, size_t members)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("server: { listen: 127.0.0.1@5301 }\n"
          "zones: [ { name: example.test, file: example.test.zone } ]\n"
          "health:\n"
          "  pools:\n",
          f);
    for (size_t i = 0; i < pools; i++)
        fprintf(f,
                "    - { name: p%zu.example.test, type: A, members: [ { address: 192.0.2.1 } ] }\n",
                i);
    if (members > 0)
        fputs("    - name: api.example.test\n      type: A\n      members:\n", f);
    for (size_t i = 0; i < members; i++)
        fprintf(f, "        - { address: 10.0.%zu.%zu }\n", i / 256, i % 256);
    assert_int_equal(fclose(f), 0);
}

static void big_config_loads(size_t pools, size_t members, int want_rc, unsigned line,
                             const char *reason)
{
    char path[] = "/tmp/ballast-test-authd-health-XXXXXX";
    write_big_config(path, pools, members);
    struct authd_config cfg;
    struct config_error err = {0};
    int rc = authd_config_load(path, &cfg, &err);
    unlink(path);
    if (rc != want_rc)
        fail_msg("rc %d, want %d (%s:%u: %s)", rc, want_rc, err.file, err.line, err.reason);
    if (want_rc == 0) {
        assert_int_equal(cfg.health.pool_count, pools + (members > 0));
        if (members > 0)
            assert_int_equal(cfg.health.pools[pools].def.count, members);
        assert_int_equal(authd_config_validate(&cfg, &err), 0);
        authd_config_free(&cfg);
        return;
    }
    assert_int_equal(err.line, line);
    assert_string_equal(err.reason, reason);
    assert_int_equal(cfg.health.pool_count, 0);
}

static void test_authd_config_health_pool_and_member_counts_capped(void **state)
{
    (void)state;
    big_config_loads(HEALTH_MAX_POOLS, 0, 0, 0, NULL);
    /* Pool i is on line 5 + i: the first one too many is on line 5 + HEALTH_MAX_POOLS. */
    big_config_loads(HEALTH_MAX_POOLS + 1, 0, BALLAST_ELIMIT, 5 + HEALTH_MAX_POOLS,
                     "too many pools (limit is 1000, max-pools)");
    big_config_loads(0, POOL_MAX_MEMBERS, 0, 0, NULL);
    /* Member i is on line 8 + i. */
    big_config_loads(0, POOL_MAX_MEMBERS + 1, BALLAST_ELIMIT, 8 + POOL_MAX_MEMBERS,
                     "too many members in pool 'api.example.test/A' (limit is 4096 members per "
                     "pool)");
}

/* Load a config with health.max-pools set to max_pools (text) and `pools` pools; pool i is on
 * line 6 + i. Returns the load's rc; err holds the error. */
static int load_with_max_pools(const char *max_pools, size_t pools, struct config_error *err)
{
    char path[] = "/tmp/ballast-test-authd-max-pools-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fprintf(f,
            "server: { listen: 127.0.0.1@5301 }\n"
            "zones: [ { name: example.test, file: example.test.zone } ]\n"
            "health:\n  max-pools: %s\n  pools:\n",
            max_pools);
    for (size_t i = 0; i < pools; i++)
        fprintf(f,
                "    - { name: p%zu.example.test, type: A, members: [ { address: 192.0.2.1 } ] }\n",
                i);
    assert_int_equal(fclose(f), 0);
    struct authd_config cfg;
    int rc = authd_config_load(path, &cfg, err);
    unlink(path);
    if (rc == 0) {
        assert_int_equal(cfg.health.pool_count, pools);
        authd_config_free(&cfg);
    } else {
        assert_int_equal(cfg.health.pool_count, 0);
    }
    return rc;
}

static void test_authd_config_max_pools_lowers_and_raises_the_pool_limit(void **state)
{
    (void)state;
    struct config_error err = {0};
    assert_int_equal(load_with_max_pools("2", 2, &err), 0); /* exactly at the limit */
    assert_int_equal(load_with_max_pools("2", 3, &err), BALLAST_ELIMIT);
    assert_int_equal(err.line, 8); /* the third pool */
    assert_string_equal(err.reason, "too many pools (limit is 2, max-pools)");
    assert_int_equal(load_with_max_pools("1500", HEALTH_MAX_POOLS + 1, &err), 0);
    assert_int_equal(load_with_max_pools("0", 1, &err), BALLAST_EINVAL);
    assert_int_equal(err.line, 4);
    assert_contains(err.reason, "max-pools: expected an integer between 1 and 1000000");
}

static void test_authd_config_more_feeds_than_limit_rejected(void **state)
{
    (void)state;
    char path[] = "/tmp/ballast-test-authd-feeds-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("server: { listen: 127.0.0.1@5301 }\nzones: [ { name: example.test, file: x.zone } ]\n"
          "health:\n  feeds:\n",
          f);
    for (int i = 0; i <= HEALTH_MAX_FEEDS; i++)
        fprintf(f, "    - url: feed%d.json\n", i); /* feed i is on line 5 + i */
    fclose(f);
    struct authd_config cfg;
    struct config_error err = {0};
    int rc = authd_config_load(path, &cfg, &err);
    unlink(path);
    assert_int_equal(rc, BALLAST_ELIMIT);
    assert_int_equal(err.line, 5 + HEALTH_MAX_FEEDS);
    assert_string_equal(err.reason, "too many feeds (limit is 16)");
    assert_null(cfg.health.feeds);
}

/* A YAML text in a scratch file (removed by the caller) for the server.user cases. */
static void write_scratch(char *path, size_t len, const char *text)
{
    snprintf(path, len, "/tmp/ballast-test-authd-user-%d.yaml", getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_authd_config_user_read_from_server_section(void **state)
{
    char path[128];
    write_scratch(path, sizeof path,
                  "server:\n  listen: [\"127.0.0.1@5301\"]\n  user: ballast\nzones:\n"
                  "  - name: example.test\n    file: example.test.zone\n");
    struct authd_config cfg;
    struct config_error err = {0};
    int rc = authd_config_load(path, &cfg, &err);
    unlink(path);
    if (rc != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    assert_string_equal(cfg.user, "ballast");
    /* --user replaces it */
    assert_int_equal(authd_config_set_user(&cfg, "nobody:nogroup", &err), 0);
    assert_string_equal(cfg.user, "nobody:nogroup");
    authd_config_free(&cfg);
    assert_null(cfg.user); /* no user by default: root is refused at start (issue #7) */
}

static void test_authd_config_bad_user_rejected_with_line(void **state)
{
    static const char *const bad[] = {"\"\"",     "\"bad name\"", "\"ballast:\"",
                                      "\":dns\"", "\"-x\"",       "\"a:b:c\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[256], path[128];
        snprintf(text, sizeof text, "server:\n  listen: [\"127.0.0.1@5301\"]\n  user: %s\n",
                 bad[i]);
        write_scratch(path, sizeof path, text);
        struct authd_config cfg;
        struct config_error err = {0};
        int rc = authd_config_load(path, &cfg, &err);
        unlink(path);
        if (rc != BALLAST_EINVAL)
            fail_msg("user: %s accepted (rc %d)", bad[i], rc);
        if (err.line != 3)
            fail_msg("user: %s: line %u (%s)", bad[i], err.line, err.reason);
        assert_contains(err.reason, i == 0 ? "user: must not be empty" : "user: expected USER");
        assert_null(cfg.user);
    }
    struct authd_config cfg;
    struct config_error err = {0};
    authd_config_init(&cfg);
    assert_int_equal(authd_config_set_user(&cfg, "bad name", &err), BALLAST_EINVAL);
    assert_string_equal(err.file, "command line");
    assert_contains(err.reason, "--user: expected USER or USER:GROUP");
    assert_null(cfg.user);
    authd_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authd_config_defaults),
        cmocka_unit_test(test_authd_config_user_read_from_server_section),
        cmocka_unit_test(test_authd_config_bad_user_rejected_with_line),
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
        cmocka_unit_test(test_authd_config_health_good_file_sets_every_key),
        cmocka_unit_test(test_authd_config_health_example_in_zones_loads_and_validates),
        cmocka_unit_test(test_authd_config_health_unknown_keys_rejected_with_line),
        cmocka_unit_test(test_authd_config_health_bad_types_rejected),
        cmocka_unit_test(test_authd_config_health_bad_member_addresses_rejected),
        cmocka_unit_test(test_authd_config_health_duplicate_pool_rejected_ignoring_case_and_dot),
        cmocka_unit_test(test_authd_config_health_duplicate_member_rejected_in_canonical_form),
        cmocka_unit_test(test_authd_config_health_timeout_must_be_below_interval),
        cmocka_unit_test(test_authd_config_health_bad_share_rejected),
        cmocka_unit_test(test_authd_config_health_bad_urls_rejected),
        cmocka_unit_test(test_authd_config_health_bad_public_key_rejected),
        cmocka_unit_test(test_authd_config_health_probe_needs_a_target),
        cmocka_unit_test(test_authd_config_health_other_bad_values_rejected),
        cmocka_unit_test(test_authd_config_health_pool_outside_zones_rejected_by_validate),
        cmocka_unit_test(test_authd_config_health_cname_pool_at_apex_rejected),
        cmocka_unit_test(test_authd_config_health_pool_and_member_counts_capped),
        cmocka_unit_test(test_authd_config_more_feeds_than_limit_rejected),
        cmocka_unit_test(test_authd_config_max_pools_lowers_and_raises_the_pool_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
