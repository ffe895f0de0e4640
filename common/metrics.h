/* Prometheus metrics endpoint of a daemon: a small HTTP/1.0 server on a libuv loop answering
 * `GET /metrics` with the text exposition format (version 0.0.4), the writer the daemon's
 * collect callback fills, and the per-worker QTYPE counts and latency histograms it sums. */
#ifndef BALLAST_METRICS_H
#define BALLAST_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "addr.h"

#define METRICS_MAX_CONNECTIONS 16 /* scrapes served at once; more are closed */
#define METRICS_REQUEST_MAX 8192   /* bytes of one request head */
#define METRICS_CONNECTION_TIMEOUT_MS 5000

/* The text being built for one scrape (growable; owned by the metrics server). */
struct metrics_writer;

/* Start a metric family: "# HELP" and "# TYPE" lines. type is "counter", "gauge" or "histogram"
 * (metrics_write_latency writes whole histograms). name is
 * the full metric name (e.g. "ballast_resolver_queries_total"). */
void metrics_family(struct metrics_writer *w, const char *name, const char *type, const char *help);
/* One sample of the current family: labels is NULL or the inside of the braces, already escaped
 * (e.g. "rcode=\"NOERROR\""). */
void metrics_sample(struct metrics_writer *w, const char *name, const char *labels, uint64_t value);
/* A family with a single unlabelled sample. */
void metrics_single(struct metrics_writer *w, const char *name, const char *type, const char *help,
                    uint64_t value);

/* --- queries by QTYPE --------------------------------------------------------------------- */

/* The types counted under their own label (metrics.c holds the list); every other type is
 * counted as type="other", so the family has at most METRICS_QTYPE_SLOTS samples. */
#define METRICS_QTYPE_SLOTS 19 /* 18 named types + "other" */

/* One worker's counts (single writer, read by the scraping thread with relaxed loads). */
struct metrics_qtypes {
    uint64_t counts[METRICS_QTYPE_SLOTS];
};

/* Count one query of type qtype (writer thread only). */
void metrics_qtypes_count(struct metrics_qtypes *qtypes, uint16_t qtype);
/* Count the QTYPE of a raw query: the first question of a QR=0 message with QDCOUNT >= 1 and a
 * readable question; anything else is not counted. */
void metrics_qtypes_count_query(struct metrics_qtypes *qtypes, const uint8_t *query, size_t len);
/* sum += one worker's counts (relaxed loads). */
void metrics_qtypes_add(struct metrics_qtypes *sum, const struct metrics_qtypes *worker);
/* A counter family with one sample per slot, labelled type="A" ... type="other". */
void metrics_write_qtypes(struct metrics_writer *w, const char *name, const char *help,
                          const struct metrics_qtypes *qtypes);

/* --- latency histogram -------------------------------------------------------------------- */

/* Upper bounds of the buckets, in microseconds: 0.0005 s ... 5 s (and +Inf). */
#define METRICS_LATENCY_BUCKETS 14
extern const uint64_t metrics_latency_bounds_us[METRICS_LATENCY_BUCKETS];

/* One worker's histogram (single writer, relaxed loads to read). Buckets are not cumulative
 * here (the +Inf one is the last slot); metrics_write_latency makes them cumulative. */
struct metrics_latency {
    uint64_t buckets[METRICS_LATENCY_BUCKETS + 1];
    uint64_t sum_us;
};

/* Observe one duration in microseconds (writer thread only). */
void metrics_latency_observe(struct metrics_latency *latency, uint64_t micros);
/* Observe the time since start_ns (a uv_hrtime() value). */
void metrics_latency_observe_since(struct metrics_latency *latency, uint64_t start_ns);
void metrics_latency_add(struct metrics_latency *sum, const struct metrics_latency *worker);
/* A histogram family: name_bucket{le="..."} (cumulative), name_sum (seconds), name_count. */
void metrics_write_latency(struct metrics_writer *w, const char *name, const char *help,
                           const struct metrics_latency *latency);

/* Called on the loop thread for every scrape; writes every metric. */
typedef void (*metrics_collect_fn)(void *ctx, struct metrics_writer *w);

struct metrics_server;

/* Listen on addr (TCP) on loop. Returns 0 or BALLAST_E* with err_text. The caller owns the
 * server: metrics_close on the loop thread (the loop must run afterwards). */
int metrics_open(uv_loop_t *loop, const struct addr *addr, metrics_collect_fn collect, void *ctx,
                 struct metrics_server **out, char *err_text, size_t err_len);
void metrics_close(struct metrics_server *server);
/* Scrapes answered so far. */
uint64_t metrics_scrapes(const struct metrics_server *server);

/* For tests: run collect into a fresh writer and return the text (caller frees). */
char *metrics_render(metrics_collect_fn collect, void *ctx);

#endif
