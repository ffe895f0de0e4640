/* Results of `ballast replay`: the per-second timeline as CSV, the summary table for the
 * terminal, the SVG plot (success rate and latency over time, fault windows shaded, one or two
 * runs), and the check of a scenario's expectations. */
#ifndef BALLAST_REPLAY_REPORT_H
#define BALLAST_REPLAY_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "loadgen.h"
#include "scenario.h"

/* One run: its seconds (real time) and the time scale (scenario seconds = real * speed). */
struct replay_run {
    const char *label; /* "ballast", "protections off", "unbound" */
    const struct loadgen_second *seconds;
    size_t count;
    double speed;
};

/* A fault window to shade on the plot, in scenario milliseconds. */
struct replay_window {
    uint64_t start_ms, end_ms;
    const char *label; /* "drop auth1" */
};

/* CSV with a header: second (scenario time, s), queries, with_data, stale, nodata, nxdomain,
 * servfail, timeouts, success_rate, p50_ms, p99_ms, upstream. */
int replay_write_csv(const char *path, const struct replay_run *run, char *err, size_t err_len);
/* A table: per run the queries, success rate, stale share, SERVFAIL, timeouts, p50/p99, peak
 * upstream qps; and the worst window. */
void replay_print_summary(FILE *out, const struct replay_run *runs, size_t run_count);
/* A self-contained SVG (no scripts): top panel success rate (%), bottom panel p99 latency (ms,
 * log scale), x = scenario time, windows shaded and labelled, a legend per run. */
int replay_write_svg(const char *path, const char *title, const struct replay_run *runs,
                     size_t run_count, const struct replay_window *windows, size_t window_count,
                     char *err, size_t err_len);

/* Check expect against a run. Every failed expectation is appended to failures as one line
 * ("success rate 97.1% < 99.5%", "window 40-45 s: success 12.0% < 95.0%", ...). Returns the
 * number of failures (0 = all met). */
size_t replay_check(const struct scenario_expect *expect, const struct replay_run *run,
                    char *failures, size_t failures_len);

#endif
