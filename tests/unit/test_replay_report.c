/* Tests for tools/replay_report.c: CSV, summary, SVG and expectation checks on hand-made runs
 * (10 seconds of 100 queries with an outage in seconds 4 and 5). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "errors.h"
#include "replay_report.h"

#define SECONDS 10

static struct loadgen_second outage[SECONDS];
static char dir[64];

/* Every second 100 queries, all with data, p50 1 ms, p99 4 ms, max 9 ms, 50 upstream; second 4:
 * 10 with data (5 stale), 50 SERVFAIL, 40 timeouts, 400 upstream; second 5: 30 with data (25
 * stale), 70 timeouts of never-empty names, p99 300 ms, max 500 ms. */
static void make_outage(void)
{
    for (int i = 0; i < SECONDS; i++) {
        outage[i] = (struct loadgen_second){.sent = 100,
                                            .answered = 100,
                                            .with_data = 100,
                                            .p50_us = 1000,
                                            .p99_us = 4000,
                                            .max_us = 9000,
                                            .upstream = 50};
    }
    outage[4].with_data = 10;
    outage[4].stale = 5;
    outage[4].servfail = 50;
    outage[4].timeouts = 40;
    outage[4].answered = 60;
    outage[4].upstream = 400;
    outage[5].with_data = 30;
    outage[5].stale = 25;
    outage[5].timeouts = 70;
    outage[5].answered = 30;
    outage[5].never_empty_violations = 70;
    outage[5].p99_us = 300000;
    outage[5].max_us = 500000;
}

static struct replay_run outage_run(double speed)
{
    return (struct replay_run){"ballast", outage, SECONDS, speed};
}

static int setup(void **state)
{
    make_outage();
    snprintf(dir, sizeof(dir), "/tmp/test_replay_report.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char path[128];
    const char *files[] = {"t.csv", "p.svg"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static const char *path_in_dir(const char *name)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}

/* ---- CSV ---- */

static void test_replay_csv_has_the_documented_header_and_a_row_per_second(void **state)
{
    struct replay_run run = outage_run(1);
    char err[256] = "";
    assert_int_equal(replay_write_csv(path_in_dir("t.csv"), &run, err, sizeof(err)), 0);
    char *text = read_all(path_in_dir("t.csv"));
    const char *header = "second,queries,with_data,stale,nodata,nxdomain,servfail,timeouts,"
                         "success_rate,p50_ms,p99_ms,upstream\n";
    assert_memory_equal(text, header, strlen(header));
    size_t lines = 0;
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, SECONDS + 1);
    assert_non_null(strstr(text, "\n0,100,100,0,0,0,0,0,100.00,1.000,4.000,50\n"));
    assert_non_null(strstr(text, "\n4,100,10,5,0,0,50,40,10.00,1.000,4.000,400\n"));
    assert_non_null(strstr(text, "\n5,100,30,25,0,0,0,70,30.00,1.000,300.000,50\n"));
}

static void test_replay_csv_second_is_scenario_time(void **state)
{
    struct loadgen_second seconds[3] = {{.sent = 10, .with_data = 5}, {.sent = 0}, {.sent = 4}};
    struct replay_run run = {"x", seconds, 3, 2.5};
    char err[256] = "";
    assert_int_equal(replay_write_csv(path_in_dir("t.csv"), &run, err, sizeof(err)), 0);
    char *text = read_all(path_in_dir("t.csv"));
    assert_non_null(strstr(text, "\n0,10,5,0,0,0,0,0,50.00,0.000,0.000,0\n"));
    /* no queries: no success rate */
    assert_non_null(strstr(text, "\n2.5,0,0,0,0,0,0,0,,0.000,0.000,0\n"));
    assert_non_null(strstr(text, "\n5,4,0,0,0,0,0,0,0.00,"));
    /* large times stay plain numbers (no exponent) */
    run.speed = 604800.5;
    assert_int_equal(replay_write_csv(path_in_dir("t.csv"), &run, err, sizeof(err)), 0);
    text = read_all(path_in_dir("t.csv"));
    assert_non_null(strstr(text, "\n1209601,4,"));
}

static void test_replay_csv_reports_an_unwritable_path(void **state)
{
    struct replay_run run = outage_run(1);
    char err[256] = "";
    const char *path = "/nonexistent-dir/t.csv";
    assert_int_equal(replay_write_csv(path, &run, err, sizeof(err)), BALLAST_EIO);
    assert_non_null(strstr(err, path));
}

/* ---- summary ---- */

static char *summary_of(const struct replay_run *runs, size_t count)
{
    static char *text; /* static: the stream keeps the addresses until fclose */
    static size_t len;
    text = NULL;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    replay_print_summary(f, runs, count);
    fclose(f);
    return text;
}

static void test_replay_summary_shows_totals_latency_and_worst_window(void **state)
{
    struct loadgen_second clean[2] = {
        {.sent = 50, .answered = 50, .with_data = 50, .p50_us = 2000, .p99_us = 2000}};
    struct replay_run runs[2] = {outage_run(1), {"protections off", clean, 1, 1}};
    char *text = summary_of(runs, 2);
    /* ballast: 1000 queries, 840 with data, 30 stale, 50 SERVFAIL, 110 timeouts; p50 1 ms; the
     * p99 estimate lands on second 5's 300 ms; peak upstream 400/s */
    assert_non_null(strstr(text, "ballast"));
    assert_non_null(strstr(text, "1000"));
    assert_non_null(strstr(text, "84.00%"));
    assert_non_null(strstr(text, "3.00%"));
    assert_non_null(strstr(text, " 50 "));
    assert_non_null(strstr(text, " 110 "));
    assert_non_null(strstr(text, " 1.00 "));
    assert_non_null(strstr(text, " 300.00 "));
    assert_non_null(strstr(text, " 400\n"));
    /* every 5 s window with both outage seconds has 340/500; the first is reported */
    assert_non_null(strstr(text, "1-6 s: 68.00% (500 queries, 110 timeouts, 50 SERVFAIL)"));
    assert_non_null(strstr(text, "protections off"));
    assert_non_null(strstr(text, "100.00%"));
    /* columns line up: the header and each row have the same length */
    char *second_line = strchr(text, '\n') + 1;
    char *third_line = strchr(second_line, '\n') + 1;
    assert_int_equal(second_line - text, third_line - second_line);
    free(text);
}

static void test_replay_summary_worst_window_scales_with_speed(void **state)
{
    struct replay_run run = outage_run(5); /* 5 s of scenario time is one real second */
    char *text = summary_of(&run, 1);
    assert_non_null(strstr(text, "20-25 s: 10.00%"));
    free(text);
}

/* ---- SVG ---- */

/* Crude well-formedness: every start tag is closed in order, nothing is left open. */
static void assert_tags_balanced(const char *text)
{
    char stack[64][32];
    int depth = 0;
    for (const char *p = strchr(text, '<'); p; p = strchr(p + 1, '<')) {
        const char *end = strchr(p, '>');
        assert_non_null(end);
        assert_null(memchr(p + 1, '<', (size_t)(end - p - 1)));
        if (end[-1] == '/')
            continue; /* <x/> */
        bool closing = p[1] == '/';
        const char *name = p + 1 + closing;
        size_t len = strcspn(name, " >\n");
        assert_true(len > 0 && len < sizeof(stack[0]));
        if (closing) {
            assert_true(depth > 0);
            depth--;
            assert_int_equal(strlen(stack[depth]), len);
            assert_memory_equal(stack[depth], name, len);
        } else {
            assert_true(depth < 64);
            memcpy(stack[depth], name, len);
            stack[depth++][len] = '\0';
        }
    }
    assert_int_equal(depth, 0);
}

static size_t count_of(const char *text, const char *what)
{
    size_t n = 0;
    for (const char *p = strstr(text, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

static void test_replay_svg_plots_every_run_and_window(void **state)
{
    struct loadgen_second other[SECONDS];
    memcpy(other, outage, sizeof(other));
    other[6].with_data = 0;
    struct replay_run runs[2] = {outage_run(1), {"unbound", other, SECONDS, 1}};
    struct replay_window windows[2] = {{3000, 6000, "drop auth1"},
                                       {7000, 8000, "loss <50%> & \"more\""}};
    char err[256] = "";
    assert_int_equal(replay_write_svg(path_in_dir("p.svg"), "outage <test>", runs, 2, windows, 2,
                                      err, sizeof(err)),
                     0);
    char *text = read_all(path_in_dir("p.svg"));
    assert_memory_equal(text, "<svg", 4);
    assert_non_null(strstr(text, "</svg>"));
    assert_tags_balanced(text);
    assert_int_equal(count_of(text, "<polyline"), 4); /* success and p99 per run */
    assert_non_null(strstr(text, "stroke=\"#1f77b4\""));
    assert_non_null(strstr(text, "stroke=\"#d62728\""));
    assert_non_null(strstr(text, ">drop auth1</text>"));
    assert_non_null(strstr(text, ">loss &lt;50%&gt; &amp; &quot;more&quot;</text>"));
    assert_non_null(strstr(text, ">outage &lt;test&gt;</text>"));
    assert_non_null(strstr(text, ">unbound</text>"));
    assert_int_equal(count_of(text, "fill-opacity"), 2); /* one shaded rectangle per window */
    assert_null(strstr(text, "<script"));
}

static void test_replay_svg_reports_an_unwritable_path(void **state)
{
    struct replay_run run = outage_run(1);
    char err[256] = "";
    assert_int_equal(
        replay_write_svg("/nonexistent-dir/p.svg", "t", &run, 1, NULL, 0, err, sizeof(err)),
        BALLAST_EIO);
    assert_non_null(strstr(err, "/nonexistent-dir/p.svg"));
}

/* ---- expectations ---- */

static void test_replay_check_success_rate(void **state)
{
    struct replay_run run = outage_run(1);
    struct scenario_expect e = {.has_success_rate = true, .success_permille = 840};
    char out[512] = "";
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    e.success_permille = 900;
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 1);
    assert_string_equal(out, "success rate 84.0% < 90.0%\n");
}

static void test_replay_check_every_window_and_names_the_worst(void **state)
{
    struct replay_run run = outage_run(1);
    struct scenario_expect e = {
        .has_window = true, .window_ms = 2000, .window_success_permille = 500};
    char out[512] = "";
    /* 2 s windows: 3-5 s 55 %, 4-6 s 20 %, 5-7 s 65 % */
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 1);
    assert_string_equal(out, "window 4-6 s: success 20.0% < 50.0%\n");
    e.window_success_permille = 200;
    out[0] = '\0';
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 0);
    /* 5 s windows at 90 %: all six fail, one line for the run of them */
    e.window_ms = 5000;
    e.window_success_permille = 900;
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 1);
    assert_string_equal(
        out, "window 1-6 s: success 68.0% < 90.0% (6 windows failing from 0 s to 10 s)\n");
}

static void test_replay_check_p99(void **state)
{
    struct replay_run run = outage_run(1);
    struct scenario_expect e = {.has_p99 = true, .p99_ms = 300};
    char out[512] = "";
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 0);
    e.p99_ms = 100;
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 1);
    assert_string_equal(out, "p99 latency 300.0 ms > 100 ms\n");
}

static void test_replay_check_upstream_per_scenario_second(void **state)
{
    struct replay_run run = outage_run(1);
    struct scenario_expect e = {.has_upstream = true, .max_upstream_qps = 400};
    char out[512] = "";
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 0);
    e.max_upstream_qps = 300;
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 1);
    assert_string_equal(out, "upstream 400 qps at 4 s > 300 qps (1 second over)\n");
    /* at speed 2 a real second's 400 upstream queries are 200 per scenario second */
    run = outage_run(2);
    out[0] = '\0';
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 0);
    e.max_upstream_qps = 20;
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 1);
    assert_string_equal(out, "upstream 200 qps at 8 s > 20 qps (10 seconds over)\n");
}

static void test_replay_check_never_empty(void **state)
{
    struct replay_run run = outage_run(1);
    char *names[] = {"www.example.test"};
    struct scenario_expect e = {.never_empty = names, .never_empty_count = 1};
    char out[512] = "";
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 1);
    assert_string_equal(out,
                        "never-empty names: 70 NODATA/NXDOMAIN/SERVFAIL/timeouts (first at 5 s)\n");
    outage[5].never_empty_violations = 0;
    out[0] = '\0';
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 0);
    outage[5].never_empty_violations = 70;
}

static void test_replay_check_appends_one_line_per_failure(void **state)
{
    struct replay_run run = outage_run(1);
    struct scenario_expect e = {
        .has_success_rate = true, .success_permille = 990, .has_p99 = true, .p99_ms = 10};
    char out[512] = "earlier\n";
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 2);
    assert_string_equal(out, "earlier\nsuccess rate 84.0% < 99.0%\np99 latency 300.0 ms > 10 ms\n");
    /* a short buffer truncates, still terminated */
    char small[16] = "";
    assert_int_equal(replay_check(&e, &run, small, sizeof(small)), 2);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void test_replay_check_without_queries_fails_rates(void **state)
{
    struct loadgen_second none[1] = {{0}};
    struct replay_run run = {"x", none, 1, 1};
    struct scenario_expect e = {
        .has_success_rate = true, .success_permille = 1, .has_p99 = true, .p99_ms = 1000};
    char out[512] = "";
    assert_int_equal(replay_check(&e, &run, out, sizeof(out)), 2);
    assert_string_equal(out, "success rate: no queries were sent\np99 latency: no answers\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_csv_has_the_documented_header_and_a_row_per_second),
        cmocka_unit_test(test_replay_csv_second_is_scenario_time),
        cmocka_unit_test(test_replay_csv_reports_an_unwritable_path),
        cmocka_unit_test(test_replay_summary_shows_totals_latency_and_worst_window),
        cmocka_unit_test(test_replay_summary_worst_window_scales_with_speed),
        cmocka_unit_test(test_replay_svg_plots_every_run_and_window),
        cmocka_unit_test(test_replay_svg_reports_an_unwritable_path),
        cmocka_unit_test(test_replay_check_success_rate),
        cmocka_unit_test(test_replay_check_every_window_and_names_the_worst),
        cmocka_unit_test(test_replay_check_p99),
        cmocka_unit_test(test_replay_check_upstream_per_scenario_second),
        cmocka_unit_test(test_replay_check_never_empty),
        cmocka_unit_test(test_replay_check_appends_one_line_per_failure),
        cmocka_unit_test(test_replay_check_without_queries_fails_rates),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
