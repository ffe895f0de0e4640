/* Unit tests for tools/scenario.c: the scenario file schema of `ballast replay` — a full file
 * with every field, the defaults, and one bad file per error class (each asserted with its
 * FILE:LINE and reason), every limit crossed by a generated file. */
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
#include "scenario.h"

#define DATA "tests/unit/data/scenario/"

/* The top of a valid scenario; generated files append to it (its last line is 12). */
#define BASE                                                                                       \
    "name: gen\n"                                                                                  \
    "duration: 10s\n"                                                                              \
    "authorities:\n"                                                                               \
    "  - name: auth1\n"                                                                            \
    "    address: 127.0.40.1\n"                                                                    \
    "zones:\n"                                                                                     \
    "  - name: example.test\n"                                                                     \
    "    authority: auth1\n"                                                                       \
    "    records: [ \"www A 192.0.2.1\" ]\n"                                                       \
    "load:\n"                                                                                      \
    "  rate: 10\n"                                                                                 \
    "  names: [ www.example.test ]\n"
#define BASE_LINES 12

static void assert_contains(const char *text, const char *part)
{
    if (strstr(text, part) == NULL)
        fail_msg("'%s' lacks '%s'", text, part);
}

static void assert_addr(const struct addr *a, const char *formatted)
{
    char buf[96];
    assert_string_equal(addr_format((const struct sockaddr *)&a->ss, buf, sizeof(buf)), formatted);
}

/* Load path, which must fail with want_rc at line with a reason containing part; the scenario
 * must come back freed. */
static void load_fails_path(const char *path, int want_rc, unsigned line, const char *part)
{
    struct scenario s;
    struct config_error err = {0};
    int rc = scenario_load(path, &s, &err);
    if (rc != want_rc)
        fail_msg("%s: rc %d, want %d (%s:%u: %s)", path, rc, want_rc, err.file, err.line,
                 err.reason);
    assert_string_equal(err.file, path);
    if (err.line != line)
        fail_msg("%s: line %u, want %u (%s)", path, err.line, line, err.reason);
    assert_contains(err.reason, part);
    assert_null(s.source_file);
    assert_null(s.authorities);
    assert_null(s.events);
    assert_int_equal(s.zone_count, 0);
}

static void load_fails(const char *name, int want_rc, unsigned line, const char *part)
{
    char path[256];
    snprintf(path, sizeof(path), DATA "%s", name);
    load_fails_path(path, want_rc, line, part);
}

/* ---- generated files ---- */

static char temp_dir[64];

static int setup_temp(void **state)
{
    (void)state;
    snprintf(temp_dir, sizeof(temp_dir), "/tmp/test_scenario.XXXXXX");
    return mkdtemp(temp_dir) != NULL ? 0 : -1;
}

static int teardown_temp(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/gen.yaml", temp_dir);
    unlink(path);
    return rmdir(temp_dir);
}

/* Write text to the generated file and return its path. */
static const char *write_temp(const char *text, size_t len)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/gen.yaml", temp_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* A text buffer grown by appends. */
struct text {
    char *data;
    size_t len;
    FILE *stream;
};

static void text_open(struct text *t)
{
    t->data = NULL;
    t->len = 0;
    t->stream = open_memstream(&t->data, &t->len);
    assert_non_null(t->stream);
}

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    assert_true(vfprintf(t->stream, fmt, ap) >= 0);
    va_end(ap);
}

/* Close t, write it to the generated file, free it; returns the path. */
static const char *text_write(struct text *t)
{
    assert_int_equal(fclose(t->stream), 0);
    const char *path = write_temp(t->data, t->len);
    free(t->data);
    return path;
}

/* ---- good files ---- */

static void test_scenario_full_file_fills_every_field(void **state)
{
    (void)state;
    struct scenario s;
    struct config_error err = {0};
    int rc = scenario_load(DATA "full.yaml", &s, &err);
    if (rc != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    assert_string_equal(s.source_file, DATA "full.yaml");
    assert_string_equal(s.dir, "tests/unit/data/scenario");
    assert_string_equal(s.name, "aws-us-east-1-2025");
    assert_string_equal(s.description,
                        "The regional endpoint's record went empty and clients kept retrying.\n");
    assert_int_equal(s.duration_ms, 120000);
    assert_int_equal(s.port, 5353);

    /* Daemons listen on the scenario's port whether or not the address repeats it. */
    assert_int_equal(s.authority_count, 2);
    assert_string_equal(s.authorities[0].name, "tld");
    assert_addr(&s.authorities[0].address, "127.0.40.1@5353");
    assert_null(s.authorities[0].extra_config);
    assert_int_equal(s.authorities[0].line, 9);
    assert_string_equal(s.authorities[1].name, "regional");
    assert_addr(&s.authorities[1].address, "127.0.40.2@5353");
    assert_string_equal(s.authorities[1].extra_config, "health:\n  pools: []\n");
    assert_int_equal(s.authorities[1].line, 11);

    assert_int_equal(s.zone_count, 2);
    assert_string_equal(s.zones[0].name, "test");
    assert_string_equal(s.zones[0].authority, "tld");
    assert_int_equal(s.zones[0].ttl, 300);
    assert_int_equal(s.zones[0].record_count, 0);
    assert_int_equal(s.zones[0].line, 17);
    /* Written "AmazonAWS.test.": kept lowercase, without the final dot. */
    assert_string_equal(s.zones[1].name, "amazonaws.test");
    assert_string_equal(s.zones[1].authority, "regional");
    assert_int_equal(s.zones[1].ttl, 5);
    assert_int_equal(s.zones[1].line, 19);
    assert_int_equal(s.zones[1].record_count, 3);
    assert_string_equal(s.zones[1].records[0], "dynamodb A 192.0.2.10");
    assert_string_equal(s.zones[1].records[1], "dynamodb AAAA 2001:db8::10");
    assert_string_equal(s.zones[1].records[2], "www CNAME dynamodb");

    assert_int_equal(s.endpoint_count, 2);
    assert_string_equal(s.endpoints[0].name, "use1-a");
    assert_addr(&s.endpoints[0].address, "127.0.40.51@8080");
    assert_int_equal(s.endpoints[0].kind, SCENARIO_ENDPOINT_HTTP);
    assert_int_equal(s.endpoints[0].slow_ms, 3000);
    assert_int_equal(s.endpoints[0].line, 27);
    assert_string_equal(s.endpoints[1].name, "use1-b");
    assert_addr(&s.endpoints[1].address, "::1@8081");
    assert_int_equal(s.endpoints[1].kind, SCENARIO_ENDPOINT_TCP);
    assert_int_equal(s.endpoints[1].slow_ms, 5000);

    assert_addr(&s.resolver.address, "127.0.40.100@5353");
    assert_true(s.resolver.compare_unbound);
    assert_string_equal(s.resolver.extra_config, "serve-stale:\n  failure-recheck: 10s\n");

    assert_int_equal(s.load.rate, 100);
    assert_int_equal(s.load.clients, 4);
    assert_int_equal(s.load.timeout_ms, 1500);
    assert_int_equal(s.load.name_count, 3);
    uint8_t wire[WIRE_NAME_MAX];
    size_t wire_len = 0;
    assert_int_equal(wire_name_from_text("dynamodb.amazonaws.test.", wire, &wire_len), 0);
    assert_string_equal(s.load.names[0].text, "dynamodb.amazonaws.test");
    assert_int_equal(s.load.names[0].wire_len, wire_len);
    assert_memory_equal(s.load.names[0].wire, wire, wire_len);
    assert_int_equal(s.load.names[0].qtype, 28);
    assert_int_equal(s.load.names[0].weight, 3);
    assert_string_equal(s.load.names[1].text, "www.amazonaws.test");
    assert_int_equal(s.load.names[1].qtype, 1);
    assert_int_equal(s.load.names[1].weight, 1);
    assert_int_equal(s.load.names[2].qtype, 1); /* TYPE1 (RFC 3597) */

    assert_true(s.expect.has_success_rate);
    assert_int_equal(s.expect.success_permille, 995);
    assert_true(s.expect.has_window);
    assert_int_equal(s.expect.window_ms, 5000);
    assert_int_equal(s.expect.window_success_permille, 950);
    assert_true(s.expect.has_p99);
    assert_int_equal(s.expect.p99_ms, 100);
    assert_true(s.expect.has_upstream);
    assert_int_equal(s.expect.max_upstream_qps, 50);
    assert_int_equal(s.expect.never_empty_count, 2);
    assert_string_equal(s.expect.never_empty[0], "dynamodb.amazonaws.test");
    assert_string_equal(s.expect.never_empty[1], "www.amazonaws.test");
    scenario_free(&s);
    assert_null(s.zones);
}

/* The events of full.yaml in time order; ties keep the file's order. */
static void test_scenario_events_are_sorted_stably_with_every_field(void **state)
{
    (void)state;
    struct scenario s;
    struct config_error err = {0};
    assert_int_equal(scenario_load(DATA "full.yaml", &s, &err), 0);
    static const struct {
        uint64_t at_ms;
        enum scenario_action action;
        const char *target;
        unsigned line;
    } want[] = {
        {0, SCENARIO_PUSH_ZONE, "test", 67},
        {20000, SCENARIO_FAULT, "regional", 49},
        {20000, SCENARIO_FAULT, "regional", 50},
        {20000, SCENARIO_FAULT, "regional", 51},
        {20000, SCENARIO_FAULT, "regional", 52},
        {21000, SCENARIO_FAULT, "regional", 53},
        {21000, SCENARIO_FAULT, "tld", 54},
        {21000, SCENARIO_FAULT, "regional", 55},
        {21000, SCENARIO_FAULT, "regional", 56},
        {30000, SCENARIO_ENDPOINT, "use1-a", 57},
        {30000, SCENARIO_RESTART, "resolver", 60},
        {30000, SCENARIO_KILL, "resolver", 61},
        {31000, SCENARIO_ENDPOINT, "use1-a", 58},
        {32000, SCENARIO_ENDPOINT, "use1-a", 59},
        {40000, SCENARIO_START, "resolver", 62},
        {45000, SCENARIO_RESTART, "regional", 63},
        {50000, SCENARIO_PUSH_ZONE, "amazonaws.test", 64},
        {50000, SCENARIO_PUSH_FEED, "regional", 66},
        {60000, SCENARIO_RESTORE_ZONE, "amazonaws.test", 65},
        {80000, SCENARIO_HEAL, "regional", 48},
        {120000, SCENARIO_PUSH_ZONE, "test", 68},
    };
    assert_int_equal(s.event_count, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < s.event_count; i++) {
        const struct scenario_event *ev = &s.events[i];
        if (ev->at_ms != want[i].at_ms || ev->action != want[i].action ||
            strcmp(ev->target, want[i].target) != 0 || ev->line != want[i].line)
            fail_msg("event %zu: %llu %s %s line %u", i, (unsigned long long)ev->at_ms,
                     scenario_action_name(ev->action), ev->target, ev->line);
    }
    const struct scenario_event *e = s.events;
    assert_int_equal(e[0].bad, SCENARIO_BAD_EMPTY);
    assert_int_equal(e[1].fault, SCENARIO_FAULT_EMPTY);
    assert_string_equal(e[1].name, "dynamodb.amazonaws.test");
    assert_int_equal(e[2].fault, SCENARIO_FAULT_DROP);
    assert_null(e[2].name);
    assert_int_equal(e[3].fault, SCENARIO_FAULT_LOSS);
    assert_int_equal(e[3].percent, 30);
    assert_int_equal(e[4].fault, SCENARIO_FAULT_LATENCY);
    assert_int_equal(e[4].delay_ms, 2000);
    assert_int_equal(e[5].fault, SCENARIO_FAULT_SERVFAIL);
    assert_int_equal(e[6].fault, SCENARIO_FAULT_REFUSED);
    assert_int_equal(e[7].fault, SCENARIO_FAULT_NXDOMAIN);
    assert_null(e[7].name); /* every name */
    assert_int_equal(e[8].fault, SCENARIO_FAULT_TRUNCATE);
    assert_int_equal(e[9].state, SCENARIO_ENDPOINT_DOWN);
    assert_int_equal(e[12].state, SCENARIO_ENDPOINT_SLOW);
    assert_int_equal(e[13].state, SCENARIO_ENDPOINT_UP);
    assert_int_equal(e[16].bad, SCENARIO_BAD_OVERSIZED);
    assert_string_equal(e[17].file, "feeds/feed.json");
    assert_int_equal(e[17].bad, SCENARIO_BAD_GARBAGE);
    assert_null(e[18].file);
    scenario_free(&s);
}

static void test_scenario_minimal_file_takes_defaults(void **state)
{
    (void)state;
    struct scenario s;
    struct config_error err = {0};
    int rc = scenario_load(DATA "minimal.yaml", &s, &err);
    if (rc != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    assert_string_equal(s.name, "minimal");
    assert_null(s.description);
    assert_int_equal(s.duration_ms, 1000);
    assert_int_equal(s.port, 5300);
    assert_addr(&s.authorities[0].address, "::1@5300");
    assert_int_equal(s.zones[0].ttl, 300);
    assert_int_equal(s.zones[0].record_count, 0);
    assert_null(s.zones[0].records);
    assert_int_equal(s.endpoint_count, 0);
    assert_addr(&s.resolver.address, "127.0.40.100@5300");
    assert_false(s.resolver.compare_unbound);
    assert_null(s.resolver.extra_config);
    assert_int_equal(s.load.rate, 1);
    assert_int_equal(s.load.clients, 1);
    assert_int_equal(s.load.timeout_ms, 2000);
    assert_int_equal(s.load.names[0].qtype, 1);
    assert_int_equal(s.load.names[0].weight, 1);
    assert_int_equal(s.event_count, 0);
    assert_false(s.expect.has_success_rate);
    assert_false(s.expect.has_window);
    assert_false(s.expect.has_p99);
    assert_false(s.expect.has_upstream);
    assert_int_equal(s.expect.never_empty_count, 0);
    scenario_free(&s);
}

static void test_scenario_names_of_faults_and_actions(void **state)
{
    (void)state;
    assert_string_equal(scenario_fault_name(SCENARIO_FAULT_DROP), "drop");
    assert_string_equal(scenario_fault_name(SCENARIO_FAULT_LOSS), "loss");
    assert_string_equal(scenario_fault_name(SCENARIO_FAULT_TRUNCATE), "truncate");
    assert_string_equal(scenario_action_name(SCENARIO_FAULT), "fault");
    assert_string_equal(scenario_action_name(SCENARIO_PUSH_FEED), "push-feed");
    assert_string_equal(scenario_action_name(SCENARIO_RESTORE_ZONE), "restore-zone");
}

/* "99.5%" and 0.995 are the same; finer than per mille, above 100% or 95 (no %) are refused. */
static void test_scenario_success_rate_is_percent_or_fraction(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int permille; /* -1: refused */
    } cases[] = {
        {"99.5%", 995}, {"0.995", 995}, {"100%", 1000}, {"1", 1000},  {"0", 0},    {"0%", 0},
        {"0.5", 500},   {"95%", 950},   {"1.0", 1000},  {"101%", -1}, {"1.5", -1}, {"0.9995", -1},
        {"95", -1},     {"%", -1},      {"99.%", -1},   {"abc", -1},  {"-1%", -1}, {"99.55%", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];
        int len =
            snprintf(text, sizeof(text), BASE "expect:\n  success-rate: \"%s\"\n", cases[i].text);
        const char *path = write_temp(text, (size_t)len);
        struct scenario s;
        struct config_error err = {0};
        int rc = scenario_load(path, &s, &err);
        if (cases[i].permille < 0) {
            if (rc != BALLAST_EINVAL)
                fail_msg("'%s' accepted", cases[i].text);
            assert_int_equal(err.line, BASE_LINES + 2);
            assert_contains(err.reason, "success-rate: expected a percentage");
            continue;
        }
        if (rc != 0)
            fail_msg("'%s': %s", cases[i].text, err.reason);
        assert_int_equal(s.expect.success_permille, cases[i].permille);
        scenario_free(&s);
    }
}

/* ---- one bad file per error class ---- */

static void test_scenario_unknown_keys_are_errors(void **state)
{
    (void)state;
    load_fails("unknown_key.yaml", BALLAST_EINVAL, 13,
               "unknown key 'duraton' (expected one of: name, description, duration");
    load_fails("unknown_key_event.yaml", BALLAST_EINVAL, 14,
               "unknown key 'precent' (expected one of: at, fault, target, name, percent, delay)");
    load_fails("duplicate_key.yaml", BALLAST_EINVAL, 14, "duplicate key 'port' (first at line 13)");
}

static void test_scenario_missing_required_keys(void **state)
{
    (void)state;
    load_fails("missing_duration.yaml", BALLAST_EINVAL, 1,
               "scenario: missing required key 'duration'");
    load_fails("missing_zone_authority.yaml", BALLAST_EINVAL, 7,
               "zone: missing required key 'authority'");
    load_fails("empty_names.yaml", BALLAST_EINVAL, 12, "names: needs at least one entry");
    load_fails("latency_without_delay.yaml", BALLAST_EINVAL, 14,
               "fault: latency needs 'delay' (1ms to 10m)");
    load_fails("no_action.yaml", BALLAST_EINVAL, 14,
               "event needs one action: fault, heal, endpoint");
}

static void test_scenario_bad_durations(void **state)
{
    (void)state;
    load_fails("bad_duration.yaml", BALLAST_ELIMIT, 2,
               "duration: expected a duration between 1s and 7d, got '8d' "
               "(limit SCENARIO_MAX_DURATION_MS)");
    load_fails("bad_duration_unit.yaml", BALLAST_EINVAL, 2,
               "duration: expected a duration between 1s and 7d, got '10 seconds'");
    load_fails("window_too_long.yaml", BALLAST_EINVAL, 14,
               "length: expected a duration between 1s and 10s, got '11s'");
}

static void test_scenario_addresses_must_be_loopback(void **state)
{
    (void)state;
    load_fails("non_loopback.yaml", BALLAST_EINVAL, 5,
               "'10.0.0.1': address must be loopback: tests and replays never leave 127.0.0.0/8");
    load_fails("non_loopback_endpoint.yaml", BALLAST_EINVAL, 14,
               "'192.0.2.80@80': address must be loopback");
}

static void test_scenario_address_rules(void **state)
{
    (void)state;
    load_fails("endpoint_without_port.yaml", BALLAST_EINVAL, 14,
               "address: '127.0.40.80' needs a port (ADDR@PORT)");
    load_fails("daemon_port.yaml", BALLAST_EINVAL, 5,
               "every daemon listens on the scenario port 5300; leave out @PORT");
    load_fails("duplicate_address.yaml", BALLAST_EINVAL, 7,
               "address 127.0.40.1@5300 is already used by authority 'auth1' (line 5)");
    load_fails("resolver_address_taken.yaml", BALLAST_EINVAL, 14,
               "address 127.0.40.1@5300 is already used by authority 'auth1' (line 5)");
}

static void test_scenario_unknown_targets(void **state)
{
    (void)state;
    load_fails("unknown_target.yaml", BALLAST_EINVAL, 15, "target: no authority named 'auth2'");
    load_fails("unknown_endpoint.yaml", BALLAST_EINVAL, 14, "endpoint: no endpoint named 'web'");
    load_fails("unknown_zone.yaml", BALLAST_EINVAL, 14, "push-zone: no zone named 'other.test'");
    load_fails("unknown_daemon.yaml", BALLAST_EINVAL, 14,
               "restart: 'auth9' is neither 'resolver' nor an authority");
    load_fails("zone_unknown_authority.yaml", BALLAST_EINVAL, 8,
               "authority: no authority named 'auth2'");
}

static void test_scenario_event_after_duration(void **state)
{
    (void)state;
    /* at: 10s (= duration) is fine; 1 ms later is not. */
    load_fails("event_after_duration.yaml", BALLAST_EINVAL, 15,
               "at: 10001ms is after the end of the scenario (duration 10s)");
}

static void test_scenario_fault_options_belong_to_their_kind(void **state)
{
    (void)state;
    load_fails("loss_without_percent.yaml", BALLAST_EINVAL, 14,
               "fault: loss needs 'percent' (0 to 100)");
    load_fails("loss_percent_range.yaml", BALLAST_EINVAL, 14,
               "percent: expected an integer between 0 and 100, got '101'");
    load_fails("percent_on_drop.yaml", BALLAST_EINVAL, 14,
               "percent: only a loss fault takes a percent, not drop");
    load_fails("fault_name_invalid.yaml", BALLAST_EINVAL, 14,
               "name: invalid domain name 'bad..name'");
    load_fails("fault_name_outside.yaml", BALLAST_EINVAL, 14,
               "name: 'www.other.test' is in no zone that authority 'auth1' serves");
    load_fails("two_actions.yaml", BALLAST_EINVAL, 14,
               "event has two actions, 'fault' and 'heal': write one event for each");
    load_fails("feed_escapes.yaml", BALLAST_EINVAL, 14,
               "file: '../feed.json' must be a relative path inside the run directory");
}

static void test_scenario_kill_start_restart_follow_each_other(void **state)
{
    (void)state;
    load_fails("start_not_killed.yaml", BALLAST_EINVAL, 14,
               "start at 5s: 'resolver' is running then; start only follows a kill");
    load_fails("restart_killed.yaml", BALLAST_EINVAL, 15,
               "restart at 6s: 'auth1' is killed then; start it instead");
}

static void test_scenario_duplicate_names(void **state)
{
    (void)state;
    load_fails("duplicate_authority.yaml", BALLAST_EINVAL, 6,
               "name: authority 'auth1' is defined twice (first at line 4)");
    load_fails("duplicate_zone.yaml", BALLAST_EINVAL, 10,
               "name: zone 'example.test' is defined twice (first at line 7)");
    load_fails("duplicate_endpoint.yaml", BALLAST_EINVAL, 15,
               "name: endpoint 'web' is defined twice (first at line 14)");
}

static void test_scenario_bad_names(void **state)
{
    (void)state;
    load_fails("bad_ident.yaml", BALLAST_EINVAL, 1,
               "name: expected lowercase letters, digits and '-' (at most 63), got 'Bad_Name'");
    load_fails("reserved_authority.yaml", BALLAST_EINVAL, 4, "name: 'root' is reserved");
    load_fails("root_zone.yaml", BALLAST_EINVAL, 7, "name: the root zone is generated by the tool");
    load_fails("bad_qtype.yaml", BALLAST_EINVAL, 12,
               "type: expected a record type such as A, AAAA or TXT, got 'AXFR'");
}

static void test_scenario_records_are_checked(void **state)
{
    (void)state;
    load_fails("bad_record.yaml", BALLAST_EINVAL, 9, "records: invalid record 'www A 300.0.0.1'");
    load_fails("record_outside.yaml", BALLAST_EINVAL, 9,
               "records: 'www.other.test. A 192.0.2.1' is outside zone 'example.test'");
}

static void test_scenario_extra_config_is_checked(void **state)
{
    (void)state;
    load_fails("extra_config_syntax.yaml", BALLAST_EINVAL, 6,
               "extra-config: line 3 of the text: YAML syntax error");
    load_fails("extra_config_reserved.yaml", BALLAST_EINVAL, 6,
               "extra-config: 'server' is written by the tool and cannot be set here");
}

static void test_scenario_expectations_are_checked(void **state)
{
    (void)state;
    load_fails("never_empty_not_in_load.yaml", BALLAST_EINVAL, 14,
               "never-empty: 'api.example.test' is not in load.names");
    load_fails("bad_success_rate.yaml", BALLAST_EINVAL, 14,
               "success-rate: expected a percentage like 99.5% or a fraction like 0.995");
}

static void test_scenario_yaml_syntax_error(void **state)
{
    (void)state;
    load_fails("yaml_syntax.yaml", BALLAST_EPARSE, 14, "YAML syntax error");
}

static void test_scenario_missing_file(void **state)
{
    (void)state;
    load_fails("no-such-file.yaml", BALLAST_EIO, 0, "cannot open");
}

/* ---- limits, each crossed by a generated file ---- */

static void test_scenario_rate_limit(void **state)
{
    (void)state;
    load_fails("rate_limit.yaml", BALLAST_ELIMIT, 11,
               "rate: expected an integer between 1 and 100000, got '100001' "
               "(limit SCENARIO_MAX_RATE)");
}

/* A scenario whose load has count names, one per line from line NAMES_FIRST_LINE. */
#define NAMES_FIRST_LINE 10
static const char *write_names(size_t count)
{
    struct text t;
    text_open(&t);
    text_add(&t, "name: gen\nduration: 10s\n"
                 "authorities: [ { name: auth1, address: 127.0.40.1 } ]\n"
                 "zones: [ { name: example.test, authority: auth1 } ]\n"
                 "load:\n  rate: 10\n  clients: 2\n  timeout: 100ms\n  names:\n");
    for (size_t i = 0; i < count; i++)
        text_add(&t, "    - n%zu.example.test\n", i);
    return text_write(&t);
}

static void test_scenario_too_many_names(void **state)
{
    (void)state;
    struct scenario s;
    struct config_error err = {0};
    const char *path = write_names(SCENARIO_MAX_NAMES);
    int rc = scenario_load(path, &s, &err);
    if (rc != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    assert_int_equal(s.load.name_count, SCENARIO_MAX_NAMES);
    assert_string_equal(s.load.names[SCENARIO_MAX_NAMES - 1].text, "n999.example.test");
    scenario_free(&s);
    path = write_names(SCENARIO_MAX_NAMES + 1);
    /* Blamed at the first name past the limit. */
    load_fails_path(path, BALLAST_ELIMIT, NAMES_FIRST_LINE + SCENARIO_MAX_NAMES,
                    "names: too many entries: 1001 (limit is 1000, SCENARIO_MAX_NAMES)");
}

/* A list of count items under top-level key, each made by item(i), after BASE. */
static const char *write_list(const char *prefix, const char *key, size_t count,
                              void (*item)(struct text *t, size_t i))
{
    struct text t;
    text_open(&t);
    text_add(&t, "%s%s:\n", prefix, key);
    for (size_t i = 0; i < count; i++)
        item(&t, i);
    return text_write(&t);
}

static void authority_item(struct text *t, size_t i)
{
    text_add(t, "  - { name: a%zu, address: 127.0.41.%zu }\n", i, i + 1);
}

static void endpoint_item(struct text *t, size_t i)
{
    text_add(t, "  - { name: e%zu, address: \"127.0.42.1@%zu\" }\n", i, 8000 + i);
}

static void event_item(struct text *t, size_t i)
{
    text_add(t, "  - { at: %zums, heal: auth1 }\n", i);
}

static void record_item(struct text *t, size_t i)
{
    text_add(t, "      - \"h%zu A 192.0.2.1\"\n", i);
}

static void zone_item(struct text *t, size_t i)
{
    text_add(t, "  - { name: z%zu.test, authority: auth1 }\n", i);
}

#define LOAD_AND_AUTH1                                                                             \
    "name: gen\nduration: 10s\nload: { rate: 1, names: [ www.example.test ] }\n"                   \
    "authorities: [ { name: auth1, address: 127.0.40.1 } ]\n"

static void test_scenario_list_limits(void **state)
{
    (void)state;
    /* Each list one past its limit, blamed at the first item past it (item i of a list whose
     * key is on line k is on line k + 1 + i). */
    const char *path = write_list("name: gen\nduration: 10s\nload: { rate: 1, names: [ x.test ] }\n"
                                  "zones: [ { name: x.test, authority: a0 } ]\n",
                                  "authorities", SCENARIO_MAX_AUTHORITIES + 1, authority_item);
    load_fails_path(path, BALLAST_ELIMIT, 6 + SCENARIO_MAX_AUTHORITIES,
                    "authorities: too many entries: 33 (limit is 32, SCENARIO_MAX_AUTHORITIES)");
    path = write_list(LOAD_AND_AUTH1, "zones", SCENARIO_MAX_ZONES + 1, zone_item);
    load_fails_path(path, BALLAST_ELIMIT, 6 + SCENARIO_MAX_ZONES,
                    "zones: too many entries: 65 (limit is 64, SCENARIO_MAX_ZONES)");
    path = write_list(BASE, "endpoints", SCENARIO_MAX_ENDPOINTS + 1, endpoint_item);
    load_fails_path(path, BALLAST_ELIMIT, BASE_LINES + 2 + SCENARIO_MAX_ENDPOINTS,
                    "endpoints: too many entries: 257 (limit is 256, SCENARIO_MAX_ENDPOINTS)");
    path = write_list(BASE, "timeline", SCENARIO_MAX_EVENTS + 1, event_item);
    load_fails_path(path, BALLAST_ELIMIT, BASE_LINES + 2 + SCENARIO_MAX_EVENTS,
                    "timeline: too many entries: 1001 (limit is 1000, SCENARIO_MAX_EVENTS)");
    path = write_list(LOAD_AND_AUTH1 "zones:\n  - name: example.test\n    authority: auth1\n",
                      "    records", SCENARIO_MAX_RECORDS + 1, record_item);
    load_fails_path(path, BALLAST_ELIMIT, 9 + SCENARIO_MAX_RECORDS,
                    "records: too many entries: 10001 (limit is 10000, SCENARIO_MAX_RECORDS)");
}

/* Exactly at each list limit loads. */
static void test_scenario_lists_at_their_limits_load(void **state)
{
    (void)state;
    struct scenario s;
    struct config_error err = {0};
    const char *path = write_list(LOAD_AND_AUTH1 "zones:\n  - name: example.test\n"
                                                 "    authority: auth1\n",
                                  "    records", SCENARIO_MAX_RECORDS, record_item);
    int rc = scenario_load(path, &s, &err);
    if (rc != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    assert_int_equal(s.zones[0].record_count, SCENARIO_MAX_RECORDS);
    scenario_free(&s);
    path = write_list(BASE, "timeline", SCENARIO_MAX_EVENTS, event_item);
    assert_int_equal(scenario_load(path, &s, &err), 0);
    assert_int_equal(s.event_count, SCENARIO_MAX_EVENTS);
    for (size_t i = 1; i < s.event_count; i++)
        assert_true(s.events[i - 1].at_ms <= s.events[i].at_ms);
    scenario_free(&s);
}

/* A file of size bytes: BASE padded with a comment. */
static const char *write_padded(size_t size)
{
    size_t base = strlen(BASE);
    char *text = malloc(size);
    assert_non_null(text);
    memcpy(text, BASE, base);
    text[base] = '#';
    memset(text + base + 1, 'x', size - base - 2);
    text[size - 1] = '\n';
    const char *path = write_temp(text, size);
    free(text);
    return path;
}

static void test_scenario_file_size_limit(void **state)
{
    (void)state;
    struct scenario s;
    struct config_error err = {0};
    const char *path = write_padded(SCENARIO_MAX_BYTES);
    int rc = scenario_load(path, &s, &err);
    if (rc != 0)
        fail_msg("%s:%u: %s", err.file, err.line, err.reason);
    scenario_free(&s);
    path = write_padded(SCENARIO_MAX_BYTES + 1);
    load_fails_path(path, BALLAST_ELIMIT, 0,
                    "scenario file is 1048577 bytes, limit is 1048576 (SCENARIO_MAX_BYTES)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenario_full_file_fills_every_field),
        cmocka_unit_test(test_scenario_events_are_sorted_stably_with_every_field),
        cmocka_unit_test(test_scenario_minimal_file_takes_defaults),
        cmocka_unit_test(test_scenario_names_of_faults_and_actions),
        cmocka_unit_test(test_scenario_success_rate_is_percent_or_fraction),
        cmocka_unit_test(test_scenario_unknown_keys_are_errors),
        cmocka_unit_test(test_scenario_missing_required_keys),
        cmocka_unit_test(test_scenario_bad_durations),
        cmocka_unit_test(test_scenario_addresses_must_be_loopback),
        cmocka_unit_test(test_scenario_address_rules),
        cmocka_unit_test(test_scenario_unknown_targets),
        cmocka_unit_test(test_scenario_event_after_duration),
        cmocka_unit_test(test_scenario_fault_options_belong_to_their_kind),
        cmocka_unit_test(test_scenario_kill_start_restart_follow_each_other),
        cmocka_unit_test(test_scenario_duplicate_names),
        cmocka_unit_test(test_scenario_bad_names),
        cmocka_unit_test(test_scenario_records_are_checked),
        cmocka_unit_test(test_scenario_extra_config_is_checked),
        cmocka_unit_test(test_scenario_expectations_are_checked),
        cmocka_unit_test(test_scenario_yaml_syntax_error),
        cmocka_unit_test(test_scenario_missing_file),
        cmocka_unit_test(test_scenario_rate_limit),
        cmocka_unit_test(test_scenario_too_many_names),
        cmocka_unit_test(test_scenario_list_limits),
        cmocka_unit_test(test_scenario_lists_at_their_limits_load),
        cmocka_unit_test(test_scenario_file_size_limit),
    };
    return cmocka_run_group_tests(tests, setup_temp, teardown_temp);
}
