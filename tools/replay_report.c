/* Results of `ballast replay`: the per-second CSV, the terminal summary, the SVG plot and the check
 * of a scenario's expectations, all computed from the per-second counters of struct replay_run
 * (real seconds; scenario time = real time x speed). */
#include "replay_report.h"

#include <errno.h>
#include <math.h> /* isfinite, INFINITY (macros: the tools link no libm) */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

#define REPLAY_SUMMARY_WINDOW_MS 5000u /* the "worst window" of the summary */

/* SVG layout (pixels). */
#define SVG_WIDTH 1000
#define SVG_HEIGHT 600
#define SVG_X0 70.0
#define SVG_X1 970.0
#define SVG_TOP_Y0 50.0
#define SVG_TOP_Y1 270.0
#define SVG_BOTTOM_Y0 310.0
#define SVG_BOTTOM_Y1 520.0

static const char *const replay_colours[] = {"#1f77b4", "#d62728", "#2ca02c",
                                             "#ff7f0e", "#9467bd", "#8c564b"};
#define REPLAY_COLOUR_COUNT (sizeof(replay_colours) / sizeof(replay_colours[0]))

struct replay_totals {
    uint64_t sent, answered, with_data, stale, servfail, timeouts, violations;
};

/* A range of whole real seconds [first, first + count). */
struct replay_window_result {
    size_t first, count;
    uint64_t sent, with_data, timeouts, servfail;
};

/* log10 without libm: the decade by scaling, then ln of the mantissa in [1, 10) from the series
 * ln x = 2 atanh((x - 1) / (x + 1)). Good to 1e-12, plenty for placing pixels. x > 0. */
static double replay_log10(double x)
{
    int decade = 0;
    while (x >= 10) {
        x /= 10;
        decade++;
    }
    while (x < 1) {
        x *= 10;
        decade--;
    }
    double y = (x - 1) / (x + 1), y2 = y * y, term = y, sum = 0;
    for (int k = 1; k < 200; k += 2) {
        sum += term / k;
        term *= y2;
    }
    return decade + 2 * sum / 2.302585092994046;
}

static double replay_pow10(int exponent)
{
    double v = 1;
    for (int i = 0; i < exponent; i++)
        v *= 10;
    for (int i = 0; i > exponent; i--)
        v /= 10;
    return v;
}

/* The decade of x: the largest d with 10^d <= x. x > 0. */
static int replay_decade(double x)
{
    int d = 0;
    while (replay_pow10(d + 1) <= x)
        d++;
    while (replay_pow10(d) > x)
        d--;
    return d;
}

/* A number for people: up to three decimals, no trailing zeros, never an exponent. */
struct replay_number {
    char text[48];
};

static struct replay_number replay_number(double v)
{
    struct replay_number n;
    snprintf(n.text, sizeof(n.text), "%.3f", v);
    char *end = n.text + strlen(n.text);
    while (end > n.text && end[-1] == '0')
        *--end = '\0';
    if (end > n.text && end[-1] == '.')
        *--end = '\0';
    if (strcmp(n.text, "-0") == 0)
        strcpy(n.text, "0");
    return n;
}

static double replay_speed(const struct replay_run *run)
{
    return run->speed > 0 && isfinite(run->speed) ? run->speed : 1.0;
}

/* Scenario time in seconds at the start of real second index. */
static double replay_scenario_time(const struct replay_run *run, size_t index)
{
    return (double)index * replay_speed(run);
}

/* Scenario time at the start of real second index, for text. */
static struct replay_number replay_time(const struct replay_run *run, size_t index)
{
    return replay_number(replay_scenario_time(run, index));
}

static void replay_totals(const struct replay_run *run, struct replay_totals *t)
{
    memset(t, 0, sizeof(*t));
    for (size_t i = 0; i < run->count; i++) {
        const struct loadgen_second *s = &run->seconds[i];
        t->sent += s->sent;
        t->answered += s->answered;
        t->with_data += s->with_data;
        t->stale += s->stale;
        t->servfail += s->servfail;
        t->timeouts += s->timeouts;
        t->violations += s->never_empty_violations;
    }
}

static double replay_percent(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

/* ---- whole-run latency ---- */

struct replay_mass {
    uint32_t us;
    uint64_t weight;
};

static int replay_mass_compare(const void *a, const void *b)
{
    uint32_t x = ((const struct replay_mass *)a)->us, y = ((const struct replay_mass *)b)->us;
    return (x > y) - (x < y);
}

/* Whole-run latency percentile (µs) from the per-second p50/p99/max: each second's answers are
 * taken as 50 % at its p50, 49 % at its p99 and 1 % at its max, and the percentile of that
 * mixture is read. Every part of it is at or above the true values, so the result is an upper
 * bound of the true whole-run percentile (it never passes a p99 check the run would fail). */
static uint32_t replay_run_percentile(const struct replay_run *run, unsigned percent)
{
    struct replay_mass *mass = calloc(run->count ? run->count * 3 : 1, sizeof(*mass));
    if (!mass)
        return UINT32_MAX;
    size_t n = 0;
    uint64_t answered = 0;
    for (size_t i = 0; i < run->count; i++) {
        const struct loadgen_second *s = &run->seconds[i];
        if (s->answered == 0)
            continue;
        answered += s->answered;
        mass[n++] = (struct replay_mass){s->p50_us, s->answered * 50};
        mass[n++] = (struct replay_mass){s->p99_us, s->answered * 49};
        mass[n++] = (struct replay_mass){s->max_us, s->answered * 1};
    }
    qsort(mass, n, sizeof(*mass), replay_mass_compare);
    uint64_t rank = answered * percent; /* of 100 * answered */
    uint64_t seen = 0;
    uint32_t result = 0;
    for (size_t i = 0; i < n; i++) {
        seen += mass[i].weight;
        result = mass[i].us;
        if (seen >= rank)
            break;
    }
    free(mass);
    return result;
}

/* ---- windows ---- */

/* A window of window_ms scenario time in whole real seconds (rounded, at least one). */
static size_t replay_window_seconds(const struct replay_run *run, uint64_t window_ms)
{
    double seconds = (double)window_ms / 1000.0 / replay_speed(run) + 0.5;
    return seconds < 1 ? 1 : seconds > (double)SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)seconds;
}

static void replay_window_sum(const struct replay_run *run, size_t first, size_t count,
                              struct replay_window_result *w)
{
    memset(w, 0, sizeof(*w));
    w->first = first;
    w->count = count;
    for (size_t i = first; i < first + count && i < run->count; i++) {
        w->sent += run->seconds[i].sent;
        w->with_data += run->seconds[i].with_data;
        w->timeouts += run->seconds[i].timeouts;
        w->servfail += run->seconds[i].servfail;
    }
}

/* The number of windows to slide over: every full window, or the whole run as one window when
 * it is shorter than a window. */
static size_t replay_window_count(const struct replay_run *run, size_t *length)
{
    if (run->count == 0)
        return 0;
    if (*length > run->count) {
        *length = run->count;
        return 1;
    }
    return run->count - *length + 1;
}

/* Is a's success rate lower than b's? (cross-multiplied, no division by zero) */
static bool replay_window_worse(const struct replay_window_result *a,
                                const struct replay_window_result *b)
{
    return (double)a->with_data * (double)b->sent < (double)b->with_data * (double)a->sent;
}

/* The window with the lowest success rate among those that sent queries; false if none. */
static bool replay_worst_window(const struct replay_run *run, uint64_t window_ms,
                                struct replay_window_result *worst)
{
    size_t length = replay_window_seconds(run, window_ms);
    size_t windows = replay_window_count(run, &length);
    bool found = false;
    for (size_t i = 0; i < windows; i++) {
        struct replay_window_result w = {0};
        replay_window_sum(run, i, length, &w);
        if (w.sent > 0 && (!found || replay_window_worse(&w, worst))) {
            *worst = w;
            found = true;
        }
    }
    return found;
}

/* ---- CSV ---- */

static void replay_csv_row(FILE *f, const struct replay_run *run, size_t i)
{
    const struct loadgen_second *s = &run->seconds[i];
    fprintf(f, "%s,%llu,%llu,%llu,%llu,%llu,%llu,%llu,", replay_time(run, i).text,
            (unsigned long long)s->sent, (unsigned long long)s->with_data,
            (unsigned long long)s->stale, (unsigned long long)s->nodata,
            (unsigned long long)s->nxdomain, (unsigned long long)s->servfail,
            (unsigned long long)s->timeouts);
    if (s->sent > 0)
        fprintf(f, "%.2f", replay_percent(s->with_data, s->sent));
    fprintf(f, ",%.3f,%.3f,%llu\n", s->p50_us / 1000.0, s->p99_us / 1000.0,
            (unsigned long long)s->upstream);
}

static int replay_close(FILE *f, const char *path, char *err, size_t err_len)
{
    bool failed = ferror(f) != 0;
    int saved = errno;
    if (fclose(f) != 0 && !failed) {
        failed = true;
        saved = errno;
    }
    if (failed) {
        ballast_set_error(err, err_len, "%s: write failed: %s", path, strerror(saved));
        return BALLAST_EIO;
    }
    return BALLAST_OK;
}

/* success_rate is in percent (two decimals), empty for a second without queries; latencies in ms
 * with µs precision; upstream as the caller filled it (per real second). */
int replay_write_csv(const char *path, const struct replay_run *run, char *err, size_t err_len)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        ballast_set_error(err, err_len, "%s: %s", path, strerror(errno));
        return BALLAST_EIO;
    }
    fputs("second,queries,with_data,stale,nodata,nxdomain,servfail,timeouts,success_rate,p50_ms,"
          "p99_ms,upstream\n",
          f);
    for (size_t i = 0; i < run->count; i++)
        replay_csv_row(f, run, i);
    return replay_close(f, path, err, err_len);
}

/* ---- summary ---- */

/* Peak upstream queries per scenario second: a real second covers speed scenario seconds, so the
 * count of a real second is divided by speed. */
static double replay_peak_upstream(const struct replay_run *run, size_t *at)
{
    double peak = 0;
    *at = 0;
    for (size_t i = 0; i < run->count; i++) {
        double qps = (double)run->seconds[i].upstream / replay_speed(run);
        if (qps > peak) {
            peak = qps;
            *at = i;
        }
    }
    return peak;
}

static int replay_label_width(const struct replay_run *runs, size_t run_count)
{
    size_t width = 3;
    for (size_t i = 0; i < run_count; i++) {
        size_t len = strlen(runs[i].label ? runs[i].label : "");
        if (len > width)
            width = len;
    }
    return width > 40 ? 40 : (int)width;
}

static void replay_summary_row(FILE *out, const struct replay_run *run, int width)
{
    struct replay_totals t;
    replay_totals(run, &t);
    size_t at;
    fprintf(out, "%-*s %10llu ", width, run->label ? run->label : "", (unsigned long long)t.sent);
    if (t.sent > 0)
        fprintf(out, "%8.2f%% %6.2f%%", replay_percent(t.with_data, t.sent),
                replay_percent(t.stale, t.sent));
    else
        fprintf(out, "%9s %7s", "-", "-");
    fprintf(out, " %9llu %9llu %9.2f %9.2f %16.0f\n", (unsigned long long)t.servfail,
            (unsigned long long)t.timeouts, replay_run_percentile(run, 50) / 1000.0,
            replay_run_percentile(run, 99) / 1000.0, replay_peak_upstream(run, &at));
}

/* p50/p99 of the whole run are upper bounds estimated from the per-second percentiles (see
 * replay_run_percentile); peak upstream is per scenario second. */
void replay_print_summary(FILE *out, const struct replay_run *runs, size_t run_count)
{
    int width = replay_label_width(runs, run_count);
    fprintf(out, "%-*s %10s %9s %7s %9s %9s %9s %9s %16s\n", width, "run", "queries", "success",
            "stale", "SERVFAIL", "timeouts", "p50 ms", "p99 ms", "peak upstream/s");
    for (size_t i = 0; i < run_count; i++)
        replay_summary_row(out, &runs[i], width);
    fprintf(out, "\nworst %u s window (success rate):\n", REPLAY_SUMMARY_WINDOW_MS / 1000);
    for (size_t i = 0; i < run_count; i++) {
        const struct replay_run *run = &runs[i];
        struct replay_window_result w = {0};
        fprintf(out, "  %-*s ", width, run->label ? run->label : "");
        if (!replay_worst_window(run, REPLAY_SUMMARY_WINDOW_MS, &w)) {
            fprintf(out, "no queries\n");
            continue;
        }
        fprintf(out, "%s-%s s: %.2f%% (%llu queries, %llu timeouts, %llu SERVFAIL)\n",
                replay_time(run, w.first).text, replay_time(run, w.first + w.count).text,
                replay_percent(w.with_data, w.sent), (unsigned long long)w.sent,
                (unsigned long long)w.timeouts, (unsigned long long)w.servfail);
    }
}

/* ---- SVG ---- */

/* XML character data and attribute values (XML 1.0 §2.4, §3.3.3); control characters XML 1.0
 * does not allow (§2.2) become '?'. */
static void svg_escape(FILE *f, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)(text ? text : ""); *p; p++) {
        switch (*p) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&apos;", f);
            break;
        default:
            fputc(*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r' ? '?' : *p, f);
        }
    }
}

struct svg_scale {
    double x_max;  /* scenario seconds */
    int decade_lo; /* the latency axis covers 10^decade_lo .. 10^decade_hi ms */
    int decade_hi;
};

static double svg_x(const struct svg_scale *sc, double seconds)
{
    return SVG_X0 + seconds / sc->x_max * (SVG_X1 - SVG_X0);
}

static double svg_y_success(double percent)
{
    return SVG_TOP_Y1 - percent / 100.0 * (SVG_TOP_Y1 - SVG_TOP_Y0);
}

static double svg_y_latency(const struct svg_scale *sc, double ms)
{
    double v = (replay_log10(ms) - sc->decade_lo) / (sc->decade_hi - sc->decade_lo);
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    return SVG_BOTTOM_Y1 - v * (SVG_BOTTOM_Y1 - SVG_BOTTOM_Y0);
}

static void svg_compute_scale(const struct replay_run *runs, size_t run_count,
                              const struct replay_window *windows, size_t window_count,
                              struct svg_scale *sc)
{
    double x_max = 0, lo = INFINITY, hi = 0;
    for (size_t r = 0; r < run_count; r++) {
        double end = replay_scenario_time(&runs[r], runs[r].count);
        x_max = end > x_max ? end : x_max;
        for (size_t i = 0; i < runs[r].count; i++) {
            double ms = runs[r].seconds[i].p99_us / 1000.0;
            if (runs[r].seconds[i].p99_us == 0)
                continue;
            lo = ms < lo ? ms : lo;
            hi = ms > hi ? ms : hi;
        }
    }
    for (size_t w = 0; w < window_count; w++) {
        double end = windows[w].end_ms / 1000.0;
        x_max = end > x_max ? end : x_max;
    }
    sc->x_max = x_max > 0 ? x_max : 1;
    if (hi <= 0) {
        lo = 0.1;
        hi = 1000;
    }
    sc->decade_lo = replay_decade(lo < 0.001 ? 0.001 : lo);
    sc->decade_hi = replay_decade(hi);
    if (replay_pow10(sc->decade_hi) < hi || sc->decade_hi <= sc->decade_lo)
        sc->decade_hi++;
}

/* A tick step of 1, 2 or 5 times a power of ten giving at most about 10 ticks. */
static double svg_tick_step(double range)
{
    double raw = range / 10.0;
    double power = replay_pow10(replay_decade(raw));
    double steps[] = {1, 2, 5, 10};
    for (size_t i = 0; i < 4; i++)
        if (steps[i] * power >= raw)
            return steps[i] * power;
    return 10 * power;
}

static void svg_axes(FILE *f, const struct svg_scale *sc)
{
    /* panel frames and y axes */
    fprintf(f, "<g stroke=\"#444\" fill=\"none\">\n");
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\"/>\n", SVG_X0, SVG_TOP_Y0,
            SVG_X1 - SVG_X0, SVG_TOP_Y1 - SVG_TOP_Y0);
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\"/>\n", SVG_X0,
            SVG_BOTTOM_Y0, SVG_X1 - SVG_X0, SVG_BOTTOM_Y1 - SVG_BOTTOM_Y0);
    fprintf(f, "</g>\n<g font-size=\"11\" fill=\"#222\">\n");
    for (int p = 0; p <= 100; p += 25) {
        double y = svg_y_success(p);
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                SVG_X0, y, SVG_X1, y);
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n", SVG_X0 - 6,
                y + 4, p);
    }
    for (int d = sc->decade_lo; d <= sc->decade_hi; d++) {
        double ms = replay_pow10(d);
        double y = svg_y_latency(sc, ms);
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                SVG_X0, y, SVG_X1, y);
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", SVG_X0 - 6, y + 4,
                replay_number(ms).text);
    }
    double step = svg_tick_step(sc->x_max);
    for (double t = 0; t <= sc->x_max + 1e-9; t += step) {
        double x = svg_x(sc, t);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#444\"/>\n", x,
                SVG_BOTTOM_Y1, x, SVG_BOTTOM_Y1 + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", x,
                SVG_BOTTOM_Y1 + 18, replay_number(t).text);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">scenario time (s)</text>\n",
            (SVG_X0 + SVG_X1) / 2, SVG_BOTTOM_Y1 + 36);
    fprintf(f,
            "<text transform=\"translate(18 %.0f) rotate(-90)\" text-anchor=\"middle\">"
            "success rate (%%)</text>\n",
            (SVG_TOP_Y0 + SVG_TOP_Y1) / 2);
    fprintf(f,
            "<text transform=\"translate(18 %.0f) rotate(-90)\" text-anchor=\"middle\">"
            "p99 latency (ms, log)</text>\n",
            (SVG_BOTTOM_Y0 + SVG_BOTTOM_Y1) / 2);
    fprintf(f, "</g>\n");
}

static void svg_windows(FILE *f, const struct svg_scale *sc, const struct replay_window *windows,
                        size_t window_count)
{
    for (size_t i = 0; i < window_count; i++) {
        const struct replay_window *w = &windows[i];
        double x0 = svg_x(sc, w->start_ms / 1000.0);
        double x1 = svg_x(sc, (w->end_ms > w->start_ms ? w->end_ms : w->start_ms) / 1000.0);
        fprintf(f,
                "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\" fill=\"#888\" "
                "fill-opacity=\"0.18\"/>\n",
                x0, SVG_TOP_Y0, x1 - x0 < 1 ? 1 : x1 - x0, SVG_BOTTOM_Y1 - SVG_TOP_Y0);
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" fill=\"#333\">", x0 + 3,
                SVG_TOP_Y0 + 12 + 12.0 * (double)(i % 3));
        svg_escape(f, w->label);
        fprintf(f, "</text>\n");
    }
}

static void svg_run_lines(FILE *f, const struct svg_scale *sc, const struct replay_run *run,
                          const char *colour)
{
    double half = replay_speed(run) / 2; /* a second's point sits at its middle */
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colour);
    for (size_t i = 0; i < run->count; i++) {
        const struct loadgen_second *s = &run->seconds[i];
        if (s->sent > 0)
            fprintf(f, "%.1f,%.1f ", svg_x(sc, replay_scenario_time(run, i) + half),
                    svg_y_success(replay_percent(s->with_data, s->sent)));
    }
    fprintf(f, "\"/>\n");
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colour);
    for (size_t i = 0; i < run->count; i++) {
        const struct loadgen_second *s = &run->seconds[i];
        if (s->p99_us > 0)
            fprintf(f, "%.1f,%.1f ", svg_x(sc, replay_scenario_time(run, i) + half),
                    svg_y_latency(sc, s->p99_us / 1000.0));
    }
    fprintf(f, "\"/>\n");
}

static void svg_legend(FILE *f, const struct replay_run *runs, size_t run_count)
{
    double y = SVG_HEIGHT - 16;
    for (size_t i = 0; i < run_count; i++) {
        double x = SVG_X0 + 220.0 * (double)i;
        const char *colour = replay_colours[i % REPLAY_COLOUR_COUNT];
        fprintf(f,
                "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                "stroke-width=\"3\"/>\n",
                x, y - 4, x + 24, y - 4, colour);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\">", x + 30, y);
        svg_escape(f, runs[i].label);
        fprintf(f, "</text>\n");
    }
}

int replay_write_svg(const char *path, const char *title, const struct replay_run *runs,
                     size_t run_count, const struct replay_window *windows, size_t window_count,
                     char *err, size_t err_len)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        ballast_set_error(err, err_len, "%s: %s", path, strerror(errno));
        return BALLAST_EIO;
    }
    struct svg_scale sc;
    svg_compute_scale(runs, run_count, windows, window_count, &sc);
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n",
            SVG_WIDTH, SVG_HEIGHT, SVG_WIDTH, SVG_HEIGHT);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", SVG_WIDTH, SVG_HEIGHT);
    fprintf(f, "<text x=\"%d\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">", SVG_WIDTH / 2);
    svg_escape(f, title);
    fprintf(f, "</text>\n");
    svg_windows(f, &sc, windows, window_count);
    svg_axes(f, &sc);
    for (size_t i = 0; i < run_count; i++)
        svg_run_lines(f, &sc, &runs[i], replay_colours[i % REPLAY_COLOUR_COUNT]);
    svg_legend(f, runs, run_count);
    fprintf(f, "</svg>\n");
    return replay_close(f, path, err, err_len);
}

/* ---- expectations ---- */

static void replay_append(char *out, size_t out_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Append one line (with its newline) to out, truncated to fit. */
static void replay_append(char *out, size_t out_len, const char *fmt, ...)
{
    if (!out || out_len == 0)
        return;
    size_t used = strnlen(out, out_len - 1);
    out[used] = '\0';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + used, out_len - used, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    used = strnlen(out, out_len - 1);
    if (used + 1 < out_len) {
        out[used] = '\n';
        out[used + 1] = '\0';
    }
}

static bool replay_below(uint64_t with_data, uint64_t sent, uint32_t permille)
{
    return (double)with_data * 1000.0 < (double)permille * (double)sent;
}

static size_t replay_check_success(const struct scenario_expect *e, const struct replay_run *run,
                                   char *out, size_t out_len)
{
    struct replay_totals t;
    replay_totals(run, &t);
    if (t.sent == 0) {
        replay_append(out, out_len, "success rate: no queries were sent");
        return 1;
    }
    if (!replay_below(t.with_data, t.sent, e->success_permille))
        return 0;
    replay_append(out, out_len, "success rate %.1f%% < %.1f%%", replay_percent(t.with_data, t.sent),
                  e->success_permille / 10.0);
    return 1;
}

static void replay_report_windows(const struct replay_run *run, uint32_t permille,
                                  const struct replay_window_result *worst, size_t first,
                                  size_t last, char *out, size_t out_len)
{
    char span[160] = "";
    if (last > first)
        snprintf(span, sizeof(span), " (%zu windows failing from %s s to %s s)", last - first + 1,
                 replay_time(run, first).text, replay_time(run, last + worst->count).text);
    replay_append(out, out_len, "window %s-%s s: success %.1f%% < %.1f%%%s",
                  replay_time(run, worst->first).text,
                  replay_time(run, worst->first + worst->count).text,
                  replay_percent(worst->with_data, worst->sent), permille / 10.0, span);
}

/* Every window of window_ms scenario time, sliding by one real second, must meet the rate; each
 * run of consecutive failing windows is one failure naming its worst window. */
static size_t replay_check_windows(const struct scenario_expect *e, const struct replay_run *run,
                                   char *out, size_t out_len)
{
    size_t length = replay_window_seconds(run, e->window_ms);
    size_t windows = replay_window_count(run, &length);
    size_t failures = 0;
    bool in_group = false;
    size_t group_first = 0;
    struct replay_window_result worst = {0};
    for (size_t i = 0; i <= windows; i++) {
        struct replay_window_result w = {0};
        bool failing = false;
        if (i < windows) {
            replay_window_sum(run, i, length, &w);
            failing = w.sent > 0 && replay_below(w.with_data, w.sent, e->window_success_permille);
        }
        if (failing && (!in_group || replay_window_worse(&w, &worst)))
            worst = w;
        if (failing && !in_group) {
            in_group = true;
            group_first = i;
        } else if (!failing && in_group) {
            in_group = false;
            replay_report_windows(run, e->window_success_permille, &worst, group_first, i - 1, out,
                                  out_len);
            failures++;
        }
    }
    return failures;
}

static size_t replay_check_p99(const struct scenario_expect *e, const struct replay_run *run,
                               char *out, size_t out_len)
{
    struct replay_totals t;
    replay_totals(run, &t);
    if (t.answered == 0) {
        replay_append(out, out_len, "p99 latency: no answers");
        return 1;
    }
    uint32_t p99 = replay_run_percentile(run, 99);
    if ((uint64_t)p99 <= (uint64_t)e->p99_ms * 1000)
        return 0;
    replay_append(out, out_len, "p99 latency %.1f ms > %u ms", p99 / 1000.0, e->p99_ms);
    return 1;
}

/* Upstream queries per scenario second (a real second's count / speed), every second. */
static size_t replay_check_upstream(const struct scenario_expect *e, const struct replay_run *run,
                                    char *out, size_t out_len)
{
    size_t over = 0;
    for (size_t i = 0; i < run->count; i++)
        if ((double)run->seconds[i].upstream / replay_speed(run) > (double)e->max_upstream_qps)
            over++;
    if (over == 0)
        return 0;
    size_t at;
    double peak = replay_peak_upstream(run, &at);
    replay_append(out, out_len, "upstream %.0f qps at %s s > %u qps (%zu second%s over)", peak,
                  replay_time(run, at).text, e->max_upstream_qps, over, over == 1 ? "" : "s");
    return 1;
}

static size_t replay_check_never_empty(const struct replay_run *run, char *out, size_t out_len)
{
    struct replay_totals t;
    replay_totals(run, &t);
    if (t.violations == 0)
        return 0;
    size_t first = 0;
    while (first < run->count && run->seconds[first].never_empty_violations == 0)
        first++;
    replay_append(out, out_len,
                  "never-empty names: %llu NODATA/NXDOMAIN/SERVFAIL/timeouts (first at %s s)",
                  (unsigned long long)t.violations, replay_time(run, first).text);
    return 1;
}

/* failures must hold a string (possibly empty): lines are appended after it. */
size_t replay_check(const struct scenario_expect *expect, const struct replay_run *run,
                    char *failures, size_t failures_len)
{
    size_t count = 0;
    if (expect->has_success_rate)
        count += replay_check_success(expect, run, failures, failures_len);
    if (expect->has_window)
        count += replay_check_windows(expect, run, failures, failures_len);
    if (expect->has_p99)
        count += replay_check_p99(expect, run, failures, failures_len);
    if (expect->has_upstream)
        count += replay_check_upstream(expect, run, failures, failures_len);
    if (expect->never_empty_count > 0)
        count += replay_check_never_empty(run, failures, failures_len);
    return count;
}
