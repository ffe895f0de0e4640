/* Prometheus metrics endpoint of a daemon: a small HTTP/1.0 server on a libuv loop answering
 * `GET /metrics` with the text exposition format (version 0.0.4), and the writer the daemon's
 * collect callback fills. Off unless the daemon's config names an address. */
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

/* Start a metric family: "# HELP" and "# TYPE" lines. type is "counter" or "gauge". name is
 * the full metric name (e.g. "ballast_resolver_queries_total"). */
void metrics_family(struct metrics_writer *w, const char *name, const char *type, const char *help);
/* One sample of the current family: labels is NULL or the inside of the braces, already escaped
 * (e.g. "rcode=\"NOERROR\""). */
void metrics_sample(struct metrics_writer *w, const char *name, const char *labels, uint64_t value);
/* A family with a single unlabelled sample. */
void metrics_single(struct metrics_writer *w, const char *name, const char *type, const char *help,
                    uint64_t value);

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
