/* Unit tests for resolver/resolver_config.c: the ballast-resolver YAML schema, the flag helpers
 * (--forward ZONE=ADDR,... and friends), the final checks and the shipped root hints; every
 * error is asserted with its file:line and reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "errors.h"
#include "resolver_config.h"

#define DATA "tests/unit/data/resolver_config/"

static void assert_contains(const char *text, const char *part)
{
    if (strstr(text, part) == NULL)
        fail_msg("'%s' lacks '%s'", text, part);
}

static void assert_addr(const struct addr *a, const char *formatted)
{
    char buf[64];
    assert_string_equal(addr_format((const struct sockaddr *)&a->ss, buf, sizeof(buf)), formatted);
}

static enum acl_action check(const struct acl *acl, const char *client)
{
    struct addr a;
    assert_int_equal(addr_parse(client, 53, &a), 0);
    return acl_check(acl, (const struct sockaddr *)&a.ss);
}

static void init(struct resolver_config *cfg)
{
    assert_int_equal(resolver_config_init(cfg), 0);
}

/* Load a data file that must fail at line with a reason containing part; cfg must come back
 * freed (nothing left to free). */
static void load_fails(const char *name, int want_rc, unsigned line, const char *part)
{
    char path[256];
    snprintf(path, sizeof(path), DATA "%s", name);
    struct resolver_config cfg;
    struct config_error err = {0};
    int rc = resolver_config_load(path, &cfg, &err);
    if (rc != want_rc)
        fail_msg("%s: rc %d, want %d (%s:%u: %s)", name, rc, want_rc, err.file, err.line,
                 err.reason);
    assert_string_equal(err.file, path);
    if (err.line != line)
        fail_msg("%s: line %u, want %u (%s)", name, err.line, line, err.reason);
    assert_contains(err.reason, part);
    assert_null(cfg.source_file);
    assert_null(cfg.zones);
    assert_null(cfg.resolution.root_hints);
    assert_int_equal(cfg.listen_count, 0);
    assert_int_equal(acl_rule_count(&cfg.acl), 0);
}

/* The last error must name the command line, no line, and contain part. */
static void assert_flag_error(const struct config_error *err, const char *part)
{
    assert_string_equal(err->file, "command line");
    assert_int_equal(err->line, 0);
    assert_contains(err->reason, part);
}

static void test_resolver_config_defaults(void **state)
{
    (void)state;
    struct resolver_config cfg;
    init(&cfg);
    assert_int_equal(cfg.listen_count, 0);
    assert_int_equal(cfg.workers, 0);
    assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
    assert_null(cfg.control_path);
    assert_null(cfg.pid_file);
    assert_null(cfg.source_file);
    assert_string_equal(cfg.resolution.root_hints, "zones/root.hints");
    assert_true(cfg.resolution.qname_minimisation);
    assert_false(cfg.resolution.allow_private_upstreams);
    assert_int_equal(cfg.resolution.upstream_port, 53);
    assert_int_equal(cfg.resolution.max_referrals, 30);
    assert_int_equal(cfg.resolution.max_ns_names, 8);
    assert_int_equal(cfg.resolution.max_outbound_queries, 64);
    assert_int_equal(cfg.resolution.max_cname_chain, 12);
    assert_int_equal(cfg.resolution.query_timeout_ms, 10000);
    assert_int_equal(cfg.resolution.upstream_timeout_ms, 1500);
    assert_true(cfg.cache.size_bytes == 64ull << 20);
    assert_int_equal(cfg.cache.shards, 16);
    assert_int_equal(cfg.cache.min_ttl, 0);
    assert_int_equal(cfg.cache.max_ttl, 86400);
    assert_int_equal(cfg.cache.max_negative_ttl, 3600);
    assert_int_equal(cfg.limits.edns_udp_size, 1232);
    assert_int_equal(cfg.limits.tcp_idle_timeout_ms, 10000);
    assert_int_equal(cfg.zone_count, 0);
    /* The default ACL: loopback and private ranges allowed, the rest refused. */
    assert_int_equal(acl_rule_count(&cfg.acl), 8);
    assert_int_equal(check(&cfg.acl, "127.0.0.1"), ACL_ALLOW);
    assert_int_equal(check(&cfg.acl, "192.168.3.4"), ACL_ALLOW);
    assert_int_equal(check(&cfg.acl, "8.8.8.8"), ACL_REFUSE);
    resolver_config_free(&cfg);
    assert_null(cfg.resolution.root_hints);
    resolver_config_free(&cfg); /* freeing twice is harmless */
}

static void test_resolver_config_good_file_sets_every_key(void **state)
{
    (void)state;
    struct resolver_config cfg;
    struct config_error err = {0};
    int rc = resolver_config_load(DATA "good.yaml", &cfg, &err);
    if (rc != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    assert_string_equal(cfg.source_file, DATA "good.yaml");

    assert_int_equal(cfg.listen_count, 3);
    assert_string_equal(cfg.listen_text[0], "127.0.0.1@5300");
    assert_addr(&cfg.listen[1], "::1@5300");
    assert_addr(&cfg.listen[2], "127.0.0.2@53");
    assert_int_equal(cfg.workers, 4);
    assert_int_equal(cfg.log_level, LOG_LEVEL_DEBUG);
    assert_string_equal(cfg.control_path, DATA "run/resolver.sock");
    assert_string_equal(cfg.pid_file, "/tmp/ballast-resolver-test.pid");

    /* access-control replaced the defaults. */
    assert_int_equal(acl_rule_count(&cfg.acl), 4);
    assert_int_equal(check(&cfg.acl, "127.0.0.1"), ACL_ALLOW);
    assert_int_equal(check(&cfg.acl, "::1"), ACL_ALLOW);
    assert_int_equal(check(&cfg.acl, "192.0.2.9"), ACL_DENY);
    assert_int_equal(check(&cfg.acl, "10.0.0.1"), ACL_REFUSE);
    assert_int_equal(check(&cfg.acl, "fd00::1"), ACL_REFUSE);

    const struct resolver_resolution_config *r = &cfg.resolution;
    assert_string_equal(r->root_hints, DATA "hints/test.hints");
    assert_false(r->qname_minimisation);
    assert_true(r->allow_private_upstreams);
    assert_int_equal(r->upstream_port, 5353);
    assert_int_equal(r->max_referrals, 20);
    assert_int_equal(r->max_ns_names, 4);
    assert_int_equal(r->max_outbound_queries, 32);
    assert_int_equal(r->max_cname_chain, 8);
    assert_int_equal(r->query_timeout_ms, 5000);
    assert_int_equal(r->upstream_timeout_ms, 800);

    assert_true(cfg.cache.size_bytes == 128ull << 20);
    assert_int_equal(cfg.cache.shards, 8);
    assert_int_equal(cfg.cache.min_ttl, 30);
    assert_int_equal(cfg.cache.max_ttl, 2 * 86400);
    assert_int_equal(cfg.cache.max_negative_ttl, 900);

    assert_int_equal(cfg.zone_count, 3);
    const struct resolver_zone_config *z = &cfg.zones[0];
    assert_int_equal(z->kind, RESOLVER_ZONE_FORWARD);
    assert_string_equal(z->name, "corp.internal");
    assert_int_equal(z->wire_len, 15);
    assert_memory_equal(z->wire, "\4corp\10internal", 15);
    assert_int_equal(z->line, 31);
    assert_int_equal(z->to_count, 2);
    assert_addr(&z->to[0], "10.0.0.1@53");
    assert_addr(&z->to[1], "10.0.0.2@5353");
    z = &cfg.zones[1];
    assert_int_equal(z->kind, RESOLVER_ZONE_FORWARD);
    assert_string_equal(z->name, ".");
    assert_int_equal(z->wire_len, 1);
    assert_int_equal(z->to_count, 1);
    assert_addr(&z->to[0], "192.0.2.53@53");
    z = &cfg.zones[2];
    assert_int_equal(z->kind, RESOLVER_ZONE_STUB);
    assert_string_equal(z->name, "lab.test");
    assert_int_equal(z->to_count, 2);
    assert_addr(&z->to[0], "127.0.0.103@53535");
    assert_addr(&z->to[1], "::1@53535");

    assert_int_equal(cfg.limits.tcp_clients, 200);
    assert_int_equal(cfg.limits.tcp_idle_timeout_ms, 2500);
    assert_int_equal(cfg.limits.tcp_pipeline, 16);
    assert_int_equal(cfg.limits.edns_udp_size, 1400);

    assert_int_equal(resolver_config_validate(&cfg, &err), 0);
    resolver_config_free(&cfg);
    assert_null(cfg.zones);
    assert_int_equal(cfg.zone_count, 0);
}

static void test_resolver_config_absent_or_empty_sections_keep_defaults(void **state)
{
    (void)state;
    struct resolver_config cfg;
    struct config_error err = {0};
    assert_int_equal(resolver_config_load(DATA "minimal.yaml", &cfg, &err), 0);
    assert_int_equal(cfg.listen_count, 1);
    assert_addr(&cfg.listen[0], "127.0.0.1@5300");
    /* "access-control:" with nothing under it keeps the default ACL. */
    assert_int_equal(acl_rule_count(&cfg.acl), 8);
    assert_int_equal(check(&cfg.acl, "10.1.1.1"), ACL_ALLOW);
    /* The default root hints are the shipped file, not relative to the config directory. */
    assert_string_equal(cfg.resolution.root_hints, RESOLVER_DEFAULT_ROOT_HINTS);
    assert_int_equal(cfg.cache.shards, RESOLVER_DEFAULT_CACHE_SHARDS);
    assert_int_equal(cfg.zone_count, 0);
    assert_int_equal(resolver_config_validate(&cfg, &err), 0);
    resolver_config_free(&cfg);
}

static void test_resolver_config_unknown_keys_rejected_with_line(void **state)
{
    (void)state;
    load_fails("unknown_top_key.yaml", BALLAST_EINVAL, 3,
               "unknown key 'zones' (expected one of: server, access-control, resolution, cache, "
               "serve-stale, forward, stub, limits, client-limits)");
    load_fails("unknown_resolution_key.yaml", BALLAST_EINVAL, 3,
               "unknown key 'qname-minimization' (expected one of: ");
    load_fails("unknown_resolution_key.yaml", BALLAST_EINVAL, 3, "qname-minimisation");
    load_fails("unknown_resolution_key.yaml", BALLAST_EINVAL, 3, "root-hints");
    load_fails("unknown_limit.yaml", BALLAST_EINVAL, 2,
               "unknown key 'max-zones' (expected one of: tcp-clients, tcp-idle-timeout, "
               "tcp-pipeline, edns-udp-size)");
    load_fails("acl_unknown_key.yaml", BALLAST_EINVAL, 2,
               "unknown key 'comment' (expected one of: prefix, action)");
    load_fails("section_not_map.yaml", BALLAST_EINVAL, 2, "cache: expected a map");
}

static void test_resolver_config_bad_values_rejected_with_line(void **state)
{
    (void)state;
    load_fails("bad_bool.yaml", BALLAST_EINVAL, 2,
               "qname-minimisation: expected true or false, got 'maybe'");
    load_fails("bad_duration.yaml", BALLAST_EINVAL, 2,
               "query-timeout: expected a duration between 100ms and 2m, got '10 seconds'");
    load_fails("ttl_fraction.yaml", BALLAST_EINVAL, 3,
               "min-ttl: expected a whole number of seconds, got '1500ms'");
    load_fails("max_ttl_range.yaml", BALLAST_EINVAL, 2,
               "max-ttl: expected a duration between 1s and 7d, got '8d'");
    load_fails("shards_not_power_of_two.yaml", BALLAST_EINVAL, 2,
               "shards: expected a power of two between 1 and 1024, got '12'");
    load_fails("cache_too_small.yaml", BALLAST_EINVAL, 2,
               "size: expected a size between 1M and 1T, got '64k'");
    load_fails("upstream_port_zero.yaml", BALLAST_EINVAL, 2,
               "upstream-port: expected an integer between 1 and 65535, got '0'");
    load_fails("empty_root_hints.yaml", BALLAST_EINVAL, 2, "root-hints: must not be empty");
    load_fails("bad_log_level.yaml", BALLAST_EINVAL, 2,
               "log-level: expected error, warn, info or debug, got 'verbose'");
    load_fails("workers_out_of_range.yaml", BALLAST_EINVAL, 2,
               "workers: expected an integer between 0 and 256, got '257'");
    load_fails("edns_out_of_range.yaml", BALLAST_EINVAL, 3,
               "edns-udp-size: expected an integer between 512 and 4096, got '9000'");
    load_fails("bad_listen.yaml", BALLAST_EINVAL, 4,
               "invalid listen address 'localhost@53' (expected ADDR[@PORT])");
}

static void test_resolver_config_related_keys_checked_together(void **state)
{
    (void)state;
    load_fails("min_ttl_above_max.yaml", BALLAST_EINVAL, 3,
               "min-ttl (7200s) must not exceed max-ttl (3600s)");
    /* Only query-timeout is in the file, so its line is the one named. */
    load_fails("query_timeout_below_upstream.yaml", BALLAST_EINVAL, 3,
               "upstream-timeout (1500ms) must not exceed query-timeout (1000ms)");
}

static void test_resolver_config_bad_access_control_rejected_with_line(void **state)
{
    (void)state;
    load_fails("acl_host_bits.yaml", BALLAST_EINVAL, 3,
               "access-control: '10.0.0.1/8': address has bits set past /8 (did you mean "
               "10.0.0.0/8?)");
    load_fails("acl_bad_length.yaml", BALLAST_EINVAL, 2,
               "prefix length must be a number from 0 to 128 for IPv6");
    load_fails("acl_bad_action.yaml", BALLAST_EINVAL, 3,
               "action: expected allow, refuse or deny, got 'drop'");
    load_fails("acl_duplicate.yaml", BALLAST_EINVAL, 4,
               "access-control: 10.0.0.0/8 is listed twice (first at line 2)");
    load_fails("acl_missing_action.yaml", BALLAST_EINVAL, 3,
               "access-control: entry is missing 'action'");
    load_fails("acl_empty_list.yaml", BALLAST_EINVAL, 3,
               "access-control: an empty list would refuse every client");
    load_fails("acl_not_list.yaml", BALLAST_EINVAL, 1, "access-control: expected a list");
}

static void test_resolver_config_bad_forward_and_stub_rejected_with_line(void **state)
{
    (void)state;
    load_fails("forward_bad_address.yaml", BALLAST_EINVAL, 5,
               "to: invalid address 'corp-dns.internal' (expected ADDR[@PORT])");
    load_fails("forward_bad_zone.yaml", BALLAST_EINVAL, 2,
               "forward: invalid zone name 'corp..internal'");
    load_fails("forward_missing_to.yaml", BALLAST_EINVAL, 4, "forward zone is missing 'to'");
    load_fails("forward_empty_to.yaml", BALLAST_EINVAL, 3, "to: needs at least one address");
    load_fails("forward_duplicate_address.yaml", BALLAST_EINVAL, 3,
               "to: address '10.0.0.1@53' is listed twice for zone 'corp.internal'");
    load_fails("forward_not_map.yaml", BALLAST_EINVAL, 2,
               "forward: each entry must be a map with zone and to");
    load_fails("zone_in_forward_and_stub.yaml", BALLAST_EINVAL, 7,
               "duplicate zone 'corp.internal' (first at line 2, forward)");
    load_fails("forward_duplicate_zone.yaml", BALLAST_EINVAL, 6,
               "duplicate zone '.' (first at line 2, forward)");
}

static void test_resolver_config_too_many_servers_for_a_zone_rejected(void **state)
{
    (void)state;
    char path[] = "/tmp/ballast-test-resolver-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fprintf(f, "forward:\n  - zone: corp.internal\n    to:\n");
    for (int i = 0; i <= RESOLVER_MAX_ZONE_SERVERS; i++)
        fprintf(f, "      - 10.0.0.%d\n", i + 1);
    fclose(f);
    struct resolver_config cfg;
    struct config_error err = {0};
    int rc = resolver_config_load(path, &cfg, &err);
    unlink(path);
    assert_int_equal(rc, BALLAST_ELIMIT);
    assert_int_equal(err.line, 4 + RESOLVER_MAX_ZONE_SERVERS);
    assert_string_equal(err.reason, "to: too many servers for zone 'corp.internal' (limit is 32)");
    assert_null(cfg.zones);
}

/* Write a config of `count` list items made by item(i) under header to a temp file and load it;
 * the load must fail with BALLAST_ELIMIT at line want_line with reason containing part. */
static void load_generated_fails(const char *header, const char *item_format, int count,
                                 unsigned want_line, const char *part)
{
    char path[] = "/tmp/ballast-test-resolver-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(header, f);
    for (int i = 0; i < count; i++)
        fprintf(f, item_format, i, i % 250 + 1);
    fclose(f);
    struct resolver_config cfg;
    struct config_error err = {0};
    int rc = resolver_config_load(path, &cfg, &err);
    unlink(path);
    assert_int_equal(rc, BALLAST_ELIMIT);
    assert_int_equal(err.line, want_line);
    assert_contains(err.reason, part);
    assert_null(cfg.zones);
}

static void test_resolver_config_more_forward_zones_than_limit_rejected(void **state)
{
    (void)state;
    /* Zone i spans lines 2 + 2i and 3 + 2i; the first one too many names line 2 + 2 * MAX. */
    load_generated_fails("forward:\n", "  - zone: z%d.test\n    to: 10.0.0.%d\n",
                         RESOLVER_MAX_ZONES + 1, 2 + 2 * RESOLVER_MAX_ZONES,
                         "too many forward and stub zones (limit is 4096)");
}

static void test_resolver_config_more_critical_suffixes_than_limit_rejected(void **state)
{
    (void)state;
    /* Suffix i is on line 3 + i. */
    load_generated_fails("serve-stale:\n  critical-suffixes:\n", "    - s%d.x%d.test\n",
                         RESOLVER_MAX_CRITICAL_SUFFIXES + 1, 3 + RESOLVER_MAX_CRITICAL_SUFFIXES,
                         "critical-suffixes: too many (limit is 1024)");
}

static void test_resolver_config_syntax_error_and_missing_file(void **state)
{
    (void)state;
    load_fails("syntax_error.yaml", BALLAST_EPARSE, 4, "YAML syntax error");
    load_fails("no-such-file.yaml", BALLAST_EIO, 0, "No such file or directory");
}

static void test_resolver_config_forward_arg_parsed(void **state)
{
    (void)state;
    struct resolver_config cfg;
    struct config_error err = {0};
    init(&cfg);
    assert_int_equal(
        resolver_config_add_forward_arg(&cfg, "Corp.Internal.=10.0.0.1,10.0.0.2@5353,::1@53", &err),
        0);
    assert_int_equal(resolver_config_add_forward_arg(&cfg, ".=192.0.2.1", &err), 0);
    assert_int_equal(resolver_config_add_stub_arg(&cfg, "lab.test=[::1]:5301", &err), 0);
    assert_int_equal(cfg.zone_count, 3);
    const struct resolver_zone_config *z = &cfg.zones[0];
    assert_int_equal(z->kind, RESOLVER_ZONE_FORWARD);
    assert_string_equal(z->name, "corp.internal");
    assert_int_equal(z->line, 0);
    assert_int_equal(z->to_count, 3);
    assert_addr(&z->to[0], "10.0.0.1@53");
    assert_addr(&z->to[1], "10.0.0.2@5353");
    assert_addr(&z->to[2], "::1@53");
    assert_string_equal(cfg.zones[1].name, ".");
    assert_addr(&cfg.zones[1].to[0], "192.0.2.1@53");
    assert_int_equal(cfg.zones[2].kind, RESOLVER_ZONE_STUB);
    assert_addr(&cfg.zones[2].to[0], "::1@5301");
    assert_int_equal(resolver_config_add_listen(&cfg, "127.0.0.1@5300", &err), 0);
    assert_int_equal(resolver_config_validate(&cfg, &err), 0);
    resolver_config_free(&cfg);
}

static void test_resolver_config_bad_forward_args_name_command_line(void **state)
{
    (void)state;
    struct resolver_config cfg;
    struct config_error err = {0};
    init(&cfg);
    const char *malformed[] = {"corp.internal", "=10.0.0.1", "corp.internal=", ""};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        assert_int_equal(resolver_config_add_forward_arg(&cfg, malformed[i], &err), BALLAST_EINVAL);
        assert_flag_error(&err, "(expected ZONE=ADDR[@PORT][,ADDR...])");
        assert_contains(err.reason, "--forward: invalid argument");
    }
    assert_int_equal(resolver_config_add_forward_arg(&cfg, "a..b=10.0.0.1", &err), BALLAST_EINVAL);
    assert_flag_error(&err, "--forward: invalid zone name 'a..b' in 'a..b=10.0.0.1'");
    assert_int_equal(resolver_config_add_forward_arg(&cfg, "corp=10.0.0.1,,10.0.0.2", &err),
                     BALLAST_EINVAL);
    assert_flag_error(&err, "--forward: invalid address '' (expected ADDR[@PORT])");
    assert_int_equal(resolver_config_add_forward_arg(&cfg, "corp=10.0.0.1,", &err), BALLAST_EINVAL);
    assert_flag_error(&err, "invalid address ''");
    assert_int_equal(resolver_config_add_forward_arg(&cfg, "corp=dns.corp", &err), BALLAST_EINVAL);
    assert_flag_error(&err, "--forward: invalid address 'dns.corp'");
    assert_int_equal(resolver_config_add_forward_arg(&cfg, "corp=10.0.0.1@0", &err),
                     BALLAST_EINVAL);
    assert_flag_error(&err, "invalid address '10.0.0.1@0'");
    assert_int_equal(resolver_config_add_forward_arg(&cfg, "corp=10.0.0.1,10.0.0.1@53", &err),
                     BALLAST_EINVAL);
    assert_flag_error(&err, "address '10.0.0.1@53' is listed twice for zone 'corp'");
    assert_int_equal(resolver_config_add_stub_arg(&cfg, "lab", &err), BALLAST_EINVAL);
    assert_flag_error(&err, "--stub: invalid argument 'lab'");
    /* Nothing half-added. */
    assert_int_equal(cfg.zone_count, 0);

    /* One zone name, once, across --forward and --stub, whatever its case or final dot. */
    assert_int_equal(resolver_config_add_forward_arg(&cfg, "corp=10.0.0.1", &err), 0);
    assert_int_equal(resolver_config_add_stub_arg(&cfg, "CORP.=10.0.0.2", &err), BALLAST_EINVAL);
    assert_flag_error(&err, "duplicate zone 'corp' (already given as --forward)");
    assert_int_equal(resolver_config_add_forward_arg(&cfg, "corp=10.0.0.3", &err), BALLAST_EINVAL);
    assert_int_equal(cfg.zone_count, 1);

    char arg[1024] = "many=";
    for (int i = 0; i <= RESOLVER_MAX_ZONE_SERVERS; i++)
        snprintf(arg + strlen(arg), sizeof(arg) - strlen(arg), "%s10.0.1.%d", i ? "," : "", i + 1);
    assert_int_equal(resolver_config_add_forward_arg(&cfg, arg, &err), BALLAST_ELIMIT);
    assert_flag_error(&err, "--forward: too many servers for zone 'many' (limit is 32)");
    assert_int_equal(cfg.zone_count, 1);
    resolver_config_free(&cfg);
}

static void test_resolver_config_flag_zone_clashing_with_file_names_its_line(void **state)
{
    (void)state;
    struct resolver_config cfg;
    struct config_error err = {0};
    assert_int_equal(resolver_config_load(DATA "good.yaml", &cfg, &err), 0);
    assert_int_equal(resolver_config_add_forward_arg(&cfg, "lab.test=10.0.0.1", &err),
                     BALLAST_EINVAL);
    assert_flag_error(&err, "duplicate zone 'lab.test' (first at line 36, stub)");
    resolver_config_free(&cfg);
}

static void test_resolver_config_scalar_flags(void **state)
{
    (void)state;
    struct resolver_config cfg;
    struct config_error err = {0};
    init(&cfg);
    assert_int_equal(resolver_config_set_upstream_port(&cfg, "5353", &err), 0);
    assert_int_equal(cfg.resolution.upstream_port, 5353);
    assert_int_equal(resolver_config_set_upstream_port(&cfg, "0", &err), BALLAST_EINVAL);
    assert_flag_error(&err, "--upstream-port: expected an integer between 1 and 65535, got '0'");
    assert_int_equal(resolver_config_set_upstream_port(&cfg, "65536", &err), BALLAST_EINVAL);
    assert_int_equal(cfg.resolution.upstream_port, 5353);

    assert_int_equal(resolver_config_set_workers(&cfg, "2", &err), 0);
    assert_int_equal(cfg.workers, 2);
    assert_int_equal(resolver_config_set_workers(&cfg, "two", &err), BALLAST_EINVAL);
    assert_flag_error(&err, "--workers: expected an integer between 0 and 256, got 'two'");

    assert_int_equal(resolver_config_set_log_level(&cfg, "warn", &err), 0);
    assert_int_equal(cfg.log_level, LOG_LEVEL_WARN);
    assert_int_equal(resolver_config_set_log_level(&cfg, "verbose", &err), BALLAST_EINVAL);
    assert_flag_error(&err, "--log-level: expected error, warn, info or debug, got 'verbose'");

    assert_int_equal(resolver_config_set_root_hints(&cfg, "test/hints.zone", &err), 0);
    assert_string_equal(cfg.resolution.root_hints, "test/hints.zone");
    assert_int_equal(resolver_config_set_root_hints(&cfg, "", &err), BALLAST_EINVAL);
    assert_flag_error(&err, "--root-hints: must not be empty");
    assert_string_equal(cfg.resolution.root_hints, "test/hints.zone");

    assert_int_equal(resolver_config_set_control(&cfg, "/tmp/r.sock", &err), 0);
    assert_string_equal(cfg.control_path, "/tmp/r.sock");
    assert_int_equal(resolver_config_set_pid_file(&cfg, "/tmp/r.pid", &err), 0);
    assert_string_equal(cfg.pid_file, "/tmp/r.pid");

    assert_int_equal(resolver_config_add_listen(&cfg, "127.0.0.1@99999", &err), BALLAST_EINVAL);
    assert_flag_error(&err, "invalid listen address '127.0.0.1@99999' (expected ADDR[@PORT])");
    assert_int_equal(resolver_config_add_listen(&cfg, "::1@5300", &err), 0);
    assert_int_equal(resolver_config_add_listen(&cfg, "[::1]:5300", &err), BALLAST_EINVAL);
    assert_flag_error(&err, "duplicate listen address '[::1]:5300' (same as '::1@5300')");
    resolver_config_free(&cfg);
}

static void test_resolver_config_validate_final_checks(void **state)
{
    (void)state;
    struct resolver_config cfg;
    struct config_error err = {0};
    init(&cfg);
    assert_int_equal(resolver_config_validate(&cfg, &err), BALLAST_EINVAL);
    assert_flag_error(&err, "no listen address: add server.listen or --listen");

    assert_int_equal(resolver_config_add_listen(&cfg, "127.0.0.1@5300", &err), 0);
    assert_int_equal(resolver_config_validate(&cfg, &err), 0);

    cfg.cache.min_ttl = 600;
    cfg.cache.max_ttl = 60;
    assert_int_equal(resolver_config_validate(&cfg, &err), BALLAST_EINVAL);
    assert_flag_error(&err, "min-ttl (600s) must not exceed max-ttl (60s)");
    cfg.cache.min_ttl = 0;

    cfg.resolution.upstream_timeout_ms = 20000;
    assert_int_equal(resolver_config_validate(&cfg, &err), BALLAST_EINVAL);
    assert_flag_error(&err, "upstream-timeout (20000ms) must not exceed query-timeout (10000ms)");
    cfg.resolution.upstream_timeout_ms = 1000;

    /* Zones changed behind the helpers' back are still caught. */
    assert_int_equal(resolver_config_add_forward_arg(&cfg, "a.test=10.0.0.1", &err), 0);
    assert_int_equal(resolver_config_add_stub_arg(&cfg, "b.test=10.0.0.2", &err), 0);
    free(cfg.zones[1].name);
    cfg.zones[1].name = strdup("a.test");
    assert_int_equal(resolver_config_validate(&cfg, &err), BALLAST_EINVAL);
    assert_flag_error(&err, "duplicate zone 'a.test'");
    cfg.zones[1].to_count = 0;
    assert_int_equal(resolver_config_validate(&cfg, &err), BALLAST_EINVAL);
    assert_flag_error(&err, "stub zone 'a.test' has no servers");
    resolver_config_free(&cfg);
}

/* The zone resolver_config_find_zone picks for a name given as text; NULL text = none. */
static void assert_zone_for(const struct resolver_config *cfg, const char *qname, const char *want)
{
    uint8_t wire[WIRE_NAME_MAX];
    size_t len = 0;
    assert_int_equal(wire_name_from_text(qname, wire, &len), 0);
    const struct resolver_zone_config *zone = resolver_config_find_zone(cfg, wire, len);
    if (want == NULL) {
        if (zone != NULL)
            fail_msg("%s: got zone '%s', want none", qname, zone->name);
        return;
    }
    if (zone == NULL)
        fail_msg("%s: got no zone, want '%s'", qname, want);
    assert_string_equal(zone->name, want);
}

static void test_resolver_config_find_zone_picks_the_closest(void **state)
{
    (void)state;
    struct resolver_config cfg;
    struct config_error err = {0};
    init(&cfg);
    assert_int_equal(resolver_config_add_forward_arg(&cfg, "corp.internal=10.0.0.1", &err), 0);
    assert_int_equal(resolver_config_add_stub_arg(&cfg, "a.corp.internal=10.0.0.2", &err), 0);
    assert_zone_for(&cfg, "www.a.corp.internal.", "a.corp.internal");
    assert_zone_for(&cfg, "a.corp.internal.", "a.corp.internal");
    assert_zone_for(&cfg, "b.corp.internal.", "corp.internal");
    assert_zone_for(&cfg, "corp.internal.", "corp.internal");
    assert_zone_for(&cfg, "xcorp.internal.", NULL); /* a label boundary, not a string suffix */
    assert_zone_for(&cfg, "example.com.", NULL);
    assert_int_equal(resolver_config_add_forward_arg(&cfg, ".=192.0.2.1", &err), 0);
    assert_zone_for(&cfg, "example.com.", ".");
    assert_zone_for(&cfg, "www.a.corp.internal.", "a.corp.internal");
    resolver_config_free(&cfg);
}

static void test_resolver_config_shipped_root_hints_list_the_13_root_servers(void **state)
{
    (void)state;
    FILE *f = fopen(RESOLVER_DEFAULT_ROOT_HINTS, "r");
    assert_non_null(f);
    char line[512];
    unsigned ns = 0, a = 0, aaaa = 0;
    bool seen[13] = {false};
    while (fgets(line, sizeof(line), f) != NULL) {
        char owner[128], type[16], data[128];
        unsigned long ttl;
        if (line[0] == ';' || sscanf(line, "%127s %lu %15s %127s", owner, &ttl, type, data) != 4)
            continue;
        if (strcmp(type, "NS") == 0 && strcmp(owner, ".") == 0) {
            char letter;
            assert_int_equal(sscanf(data, "%c.ROOT-SERVERS.NET.", &letter), 1);
            assert_true(letter >= 'A' && letter <= 'M');
            seen[letter - 'A'] = true;
            ns++;
        }
        a += strcmp(type, "A") == 0;
        aaaa += strcmp(type, "AAAA") == 0;
    }
    fclose(f);
    assert_int_equal(ns, 13);
    assert_int_equal(a, 13);
    assert_int_equal(aaaa, 13);
    for (int i = 0; i < 13; i++)
        assert_true(seen[i]);
}

static void test_resolver_config_serve_stale_section_read(void **state)
{
    struct resolver_config cfg;
    struct config_error err = {0};
    assert_int_equal(resolver_config_load(DATA "stale_good.yaml", &cfg, &err), 0);
    assert_true(cfg.stale.enable);
    assert_int_equal(cfg.stale.max_stale_age, 2 * 86400);
    assert_int_equal(cfg.stale.stale_ttl, 10);
    assert_int_equal(cfg.stale.client_timeout_ms, 0);
    assert_int_equal(cfg.stale.failure_recheck_ms, 5000);
    assert_false(cfg.stale.prefetch);
    assert_int_equal(cfg.stale.prefetch_percent, 20);
    assert_int_equal(cfg.stale.suspicion_window_ms, 3600000);
    assert_int_equal(cfg.stale.critical_count, 2);
    assert_int_equal(cfg.resolution.max_pending, 500);
    assert_int_equal(cfg.cache.snapshot_interval_ms, 60000);
    assert_int_equal(cfg.cache.snapshot_max_bytes, 8u << 20);
    assert_string_equal(cfg.cache.snapshot_file, DATA "cache.snap");
    /* suffix matching is by whole labels and ignores case */
    uint8_t name[WIRE_NAME_MAX];
    size_t len;
    assert_int_equal(wire_name_from_text("www.example.test.", name, &len), 0);
    assert_true(resolver_config_is_critical(&cfg, name, len));
    assert_int_equal(wire_name_from_text("dynamodb.us-east-1.amazonaws.com.", name, &len), 0);
    assert_true(resolver_config_is_critical(&cfg, name, len));
    assert_int_equal(wire_name_from_text("notexample.test.", name, &len), 0);
    assert_false(resolver_config_is_critical(&cfg, name, len));
    resolver_config_free(&cfg);
}

static void test_resolver_config_serve_stale_defaults_follow_rfc8767(void **state)
{
    struct resolver_config cfg;
    init(&cfg);
    assert_true(cfg.stale.enable);
    assert_int_equal(cfg.stale.max_stale_age, 86400);
    assert_int_equal(cfg.stale.stale_ttl, 30);
    assert_int_equal(cfg.stale.client_timeout_ms, 1800);
    assert_int_equal(cfg.stale.failure_recheck_ms, 30000);
    assert_true(cfg.stale.prefetch);
    assert_int_equal(cfg.stale.critical_count, 0);
    assert_null(cfg.cache.snapshot_file);
    resolver_config_free(&cfg);
}

static void test_resolver_config_bad_serve_stale_rejected_with_line(void **state)
{
    load_fails("stale_bad_suffix.yaml", BALLAST_EINVAL, 4, "invalid domain name 'bad..name'");
    load_fails("stale_duplicate_suffix.yaml", BALLAST_EINVAL, 4, "listed twice");
    load_fails("stale_client_timeout.yaml", BALLAST_EINVAL, 4,
               "client-timeout (3000ms) must be shorter than query-timeout (2000ms)");
    load_fails("stale_ttl_zero.yaml", BALLAST_EINVAL, 2, "stale-ttl");
    load_fails("stale_suffixes_not_list.yaml", BALLAST_EINVAL, 2, "critical-suffixes");
}

/* A YAML text in a scratch file (removed by the caller) for the server.user cases. */
static void write_scratch(char *path, size_t len, const char *text)
{
    snprintf(path, len, "/tmp/ballast-test-resolver-user-%d.yaml", getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_resolver_config_user_read_from_server_section(void **state)
{
    char path[128];
    write_scratch(path, sizeof path,
                  "server:\n  listen: [\"127.0.0.1@5300\"]\n  user: \"ballast:dns\"\n");
    struct resolver_config cfg;
    struct config_error err = {0};
    int rc = resolver_config_load(path, &cfg, &err);
    unlink(path);
    if (rc != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    assert_string_equal(cfg.user, "ballast:dns");
    /* --user replaces it */
    assert_int_equal(resolver_config_set_user(&cfg, "nobody", &err), 0);
    assert_string_equal(cfg.user, "nobody");
    resolver_config_free(&cfg);

    init(&cfg);
    assert_null(cfg.user); /* no user by default: root is refused at start (issue #7) */
    resolver_config_free(&cfg);
}

static void test_resolver_config_bad_user_rejected_with_line(void **state)
{
    static const char *const bad[] = {"\"\"",     "\"bad name\"", "\"ballast:\"",
                                      "\":dns\"", "\"-x\"",       "\"a:b:c\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[256], path[128];
        snprintf(text, sizeof text, "server:\n  listen: [\"127.0.0.1@5300\"]\n  user: %s\n",
                 bad[i]);
        write_scratch(path, sizeof path, text);
        struct resolver_config cfg;
        struct config_error err = {0};
        int rc = resolver_config_load(path, &cfg, &err);
        unlink(path);
        if (rc != BALLAST_EINVAL)
            fail_msg("user: %s accepted (rc %d)", bad[i], rc);
        if (err.line != 3)
            fail_msg("user: %s: line %u (%s)", bad[i], err.line, err.reason);
        assert_contains(err.reason, i == 0 ? "user: must not be empty" : "user: expected USER");
        assert_null(cfg.user);
    }
    struct resolver_config cfg;
    struct config_error err = {0};
    init(&cfg);
    assert_int_equal(resolver_config_set_user(&cfg, "nobody:", &err), BALLAST_EINVAL);
    assert_flag_error(&err, "--user: expected USER or USER:GROUP");
    assert_null(cfg.user);
    resolver_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolver_config_defaults),
        cmocka_unit_test(test_resolver_config_user_read_from_server_section),
        cmocka_unit_test(test_resolver_config_bad_user_rejected_with_line),
        cmocka_unit_test(test_resolver_config_good_file_sets_every_key),
        cmocka_unit_test(test_resolver_config_absent_or_empty_sections_keep_defaults),
        cmocka_unit_test(test_resolver_config_unknown_keys_rejected_with_line),
        cmocka_unit_test(test_resolver_config_bad_values_rejected_with_line),
        cmocka_unit_test(test_resolver_config_related_keys_checked_together),
        cmocka_unit_test(test_resolver_config_bad_access_control_rejected_with_line),
        cmocka_unit_test(test_resolver_config_bad_forward_and_stub_rejected_with_line),
        cmocka_unit_test(test_resolver_config_too_many_servers_for_a_zone_rejected),
        cmocka_unit_test(test_resolver_config_more_forward_zones_than_limit_rejected),
        cmocka_unit_test(test_resolver_config_more_critical_suffixes_than_limit_rejected),
        cmocka_unit_test(test_resolver_config_syntax_error_and_missing_file),
        cmocka_unit_test(test_resolver_config_forward_arg_parsed),
        cmocka_unit_test(test_resolver_config_bad_forward_args_name_command_line),
        cmocka_unit_test(test_resolver_config_flag_zone_clashing_with_file_names_its_line),
        cmocka_unit_test(test_resolver_config_scalar_flags),
        cmocka_unit_test(test_resolver_config_validate_final_checks),
        cmocka_unit_test(test_resolver_config_find_zone_picks_the_closest),
        cmocka_unit_test(test_resolver_config_shipped_root_hints_list_the_13_root_servers),
        cmocka_unit_test(test_resolver_config_serve_stale_section_read),
        cmocka_unit_test(test_resolver_config_serve_stale_defaults_follow_rfc8767),
        cmocka_unit_test(test_resolver_config_bad_serve_stale_rejected_with_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
