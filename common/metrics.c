/* Prometheus metrics endpoint (see metrics.h): accept, read the request head, answer
 * `GET /metrics` with the collected text (anything else 404), close. Bounded: at most
 * METRICS_MAX_CONNECTIONS at once, request heads up to METRICS_REQUEST_MAX bytes, and each
 * connection closed after METRICS_CONNECTION_TIMEOUT_MS. Also the per-worker query-type counts
 * and latency histograms both daemons keep, and their text. */
#include "metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

struct metrics_writer {
    char *text;
    size_t len, cap;
    bool failed;
};

struct metrics_server {
    uv_tcp_t tcp;
    metrics_collect_fn collect;
    void *ctx;
    unsigned connections;
    uint64_t scrapes;
    bool closing;
};

struct metrics_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write;
    struct metrics_server *server;
    char request[METRICS_REQUEST_MAX];
    size_t request_len;
    char *response;
    bool answered;
    unsigned open_handles;
};

/* --- the writer --------------------------------------------------------------------------- */

static void metrics_printf(struct metrics_writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void metrics_printf(struct metrics_writer *w, const char *fmt, ...)
{
    if (w->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n =
            vsnprintf(w->text ? w->text + w->len : NULL, w->text ? w->cap - w->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            w->failed = true;
            return;
        }
        if (w->text && w->len + (size_t)n < w->cap) {
            w->len += (size_t)n;
            return;
        }
        size_t cap = w->cap ? w->cap * 2 : 4096;
        while (cap < w->len + (size_t)n + 1)
            cap *= 2;
        char *grown = realloc(w->text, cap);
        if (!grown) {
            w->failed = true;
            return;
        }
        w->text = grown;
        w->cap = cap;
    }
}

void metrics_family(struct metrics_writer *w, const char *name, const char *type, const char *help)
{
    metrics_printf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_sample(struct metrics_writer *w, const char *name, const char *labels, uint64_t value)
{
    if (labels && *labels)
        metrics_printf(w, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
    else
        metrics_printf(w, "%s %llu\n", name, (unsigned long long)value);
}

void metrics_single(struct metrics_writer *w, const char *name, const char *type, const char *help,
                    uint64_t value)
{
    metrics_family(w, name, type, help);
    metrics_sample(w, name, NULL, value);
}

/* --- queries by QTYPE --------------------------------------------------------------------- */

/* The types with their own label: the common ones (RFC 1035, 3596, 2782, 3403, 4034, 8659,
 * 9460) and ANY; METRICS_QTYPE_SLOTS - 1 of them, the last slot is "other". */
static const struct {
    uint16_t type;
    const char *name;
} metrics_qtype_names[METRICS_QTYPE_SLOTS - 1] = {
    {1, "A"},     {2, "NS"},      {5, "CNAME"}, {6, "SOA"},    {12, "PTR"},  {15, "MX"},
    {16, "TXT"},  {28, "AAAA"},   {33, "SRV"},  {35, "NAPTR"}, {43, "DS"},   {46, "RRSIG"},
    {47, "NSEC"}, {48, "DNSKEY"}, {64, "SVCB"}, {65, "HTTPS"}, {255, "ANY"}, {257, "CAA"},
};

static size_t metrics_qtype_slot(uint16_t qtype)
{
    for (size_t i = 0; i < METRICS_QTYPE_SLOTS - 1; i++)
        if (metrics_qtype_names[i].type == qtype)
            return i;
    return METRICS_QTYPE_SLOTS - 1;
}

/* Single writer: a relaxed load-add-store, no locked instruction (as the daemons' counters). */
static inline void metrics_bump(uint64_t *counter, uint64_t by)
{
    __atomic_store_n(counter, *counter + by, __ATOMIC_RELAXED);
}

void metrics_qtypes_count(struct metrics_qtypes *qtypes, uint16_t qtype)
{
    metrics_bump(&qtypes->counts[metrics_qtype_slot(qtype)], 1);
}

/* RFC 1035 §4.1.1-4.1.2: a 12-byte header, then QNAME as uncompressed labels and QTYPE. */
void metrics_qtypes_count_query(struct metrics_qtypes *qtypes, const uint8_t *query, size_t len)
{
    if (len < 12 || (query[2] & 0x80) != 0 || (query[4] == 0 && query[5] == 0))
        return;
    size_t at = 12;
    while (at < len && query[at] != 0) {
        if ((query[at] & 0xC0) != 0)
            return; /* compression in a question: malformed, counted as dropped elsewhere */
        at += (size_t)query[at] + 1;
    }
    if (at + 3 > len)
        return;
    metrics_qtypes_count(qtypes, (uint16_t)(query[at + 1] << 8 | query[at + 2]));
}

void metrics_qtypes_add(struct metrics_qtypes *sum, const struct metrics_qtypes *worker)
{
    for (size_t i = 0; i < METRICS_QTYPE_SLOTS; i++)
        sum->counts[i] += __atomic_load_n(&worker->counts[i], __ATOMIC_RELAXED);
}

void metrics_write_qtypes(struct metrics_writer *w, const char *name, const char *help,
                          const struct metrics_qtypes *qtypes)
{
    metrics_family(w, name, "counter", help);
    char labels[32];
    for (size_t i = 0; i < METRICS_QTYPE_SLOTS; i++) {
        snprintf(labels, sizeof labels, "type=\"%s\"",
                 i < METRICS_QTYPE_SLOTS - 1 ? metrics_qtype_names[i].name : "other");
        metrics_sample(w, name, labels, qtypes->counts[i]);
    }
}

/* --- latency histogram -------------------------------------------------------------------- */

const uint64_t metrics_latency_bounds_us[METRICS_LATENCY_BUCKETS] = {
    500,    1000,   2500,   5000,    10000,   25000,   50000,
    100000, 250000, 500000, 1000000, 2000000, 3000000, 5000000,
};

void metrics_latency_observe(struct metrics_latency *latency, uint64_t micros)
{
    size_t i = 0;
    while (i < METRICS_LATENCY_BUCKETS && micros > metrics_latency_bounds_us[i])
        i++;
    metrics_bump(&latency->buckets[i], 1);
    metrics_bump(&latency->sum_us, micros);
}

void metrics_latency_observe_since(struct metrics_latency *latency, uint64_t start_ns)
{
    uint64_t now = uv_hrtime();
    metrics_latency_observe(latency, now > start_ns ? (now - start_ns) / 1000 : 0);
}

void metrics_latency_add(struct metrics_latency *sum, const struct metrics_latency *worker)
{
    for (size_t i = 0; i <= METRICS_LATENCY_BUCKETS; i++)
        sum->buckets[i] += __atomic_load_n(&worker->buckets[i], __ATOMIC_RELAXED);
    sum->sum_us += __atomic_load_n(&worker->sum_us, __ATOMIC_RELAXED);
}

void metrics_write_latency(struct metrics_writer *w, const char *name, const char *help,
                           const struct metrics_latency *latency)
{
    metrics_family(w, name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= METRICS_LATENCY_BUCKETS; i++) {
        cumulative += latency->buckets[i];
        if (i < METRICS_LATENCY_BUCKETS) {
            uint64_t us = metrics_latency_bounds_us[i];
            metrics_printf(w, "%s_bucket{le=\"%g\"} %llu\n", name, (double)us / 1e6,
                           (unsigned long long)cumulative);
        } else {
            metrics_printf(w, "%s_bucket{le=\"+Inf\"} %llu\n", name,
                           (unsigned long long)cumulative);
        }
    }
    metrics_printf(w, "%s_sum %llu.%06llu\n", name, (unsigned long long)(latency->sum_us / 1000000),
                   (unsigned long long)(latency->sum_us % 1000000));
    metrics_printf(w, "%s_count %llu\n", name, (unsigned long long)cumulative);
}

char *metrics_render(metrics_collect_fn collect, void *ctx)
{
    struct metrics_writer w = {0};
    collect(ctx, &w);
    metrics_printf(&w, "%s", "");
    if (w.failed) {
        free(w.text);
        return NULL;
    }
    return w.text;
}

/* --- the HTTP side ------------------------------------------------------------------------ */

static void metrics_conn_on_closed(uv_handle_t *handle)
{
    struct metrics_conn *c = handle->data;
    if (--c->open_handles > 0)
        return;
    c->server->connections--;
    free(c->response);
    free(c);
}

static void metrics_conn_close(struct metrics_conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, metrics_conn_on_closed);
    uv_close((uv_handle_t *)&c->timer, metrics_conn_on_closed);
}

static void metrics_conn_on_timeout(uv_timer_t *timer)
{
    metrics_conn_close(timer->data);
}

static void metrics_conn_on_written(uv_write_t *req, int status)
{
    metrics_conn_close(req->data);
}

static void metrics_conn_respond(struct metrics_conn *c)
{
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    bool get_metrics = strncmp(c->request, "GET /metrics ", 13) == 0 ||
                       strncmp(c->request, "GET /metrics?", 13) == 0 ||
                       strncmp(c->request, "GET / ", 6) == 0;
    char *body = get_metrics ? metrics_render(c->server->collect, c->server->ctx) : NULL;
    const char *status =
        get_metrics ? (body ? "200 OK" : "500 Internal Server Error") : "404 Not Found";
    const char *text = body ? body : get_metrics ? "out of memory\n" : "try /metrics\n";
    size_t len = strlen(text);
    size_t cap = len + 256;
    c->response = malloc(cap);
    if (!c->response) {
        free(body);
        metrics_conn_close(c);
        return;
    }
    int head = snprintf(c->response, cap,
                        "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                        status, len);
    memcpy(c->response + head, text, len);
    free(body);
    if (get_metrics)
        c->server->scrapes++;
    uv_buf_t buf = uv_buf_init(c->response, (unsigned)(head + (int)len));
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, metrics_conn_on_written) != 0)
        metrics_conn_close(c);
}

static void metrics_conn_alloc(uv_handle_t *handle, size_t size, uv_buf_t *buf)
{
    struct metrics_conn *c = handle->data;
    size_t room = sizeof c->request - 1 - c->request_len;
    *buf = uv_buf_init(c->request + c->request_len, (unsigned)room);
}

static void metrics_conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct metrics_conn *c = stream->data;
    if (nread < 0 || (nread == 0 && c->request_len >= sizeof c->request - 1)) {
        metrics_conn_close(c);
        return;
    }
    c->request_len += (size_t)nread;
    c->request[c->request_len] = '\0';
    if (strstr(c->request, "\r\n\r\n") || strstr(c->request, "\n\n"))
        metrics_conn_respond(c);
    else if (c->request_len >= sizeof c->request - 1)
        metrics_conn_close(c); /* a request head larger than METRICS_REQUEST_MAX */
}

static void metrics_on_connection(uv_stream_t *listener, int status)
{
    struct metrics_server *server = listener->data;
    if (status != 0 || server->closing)
        return;
    struct metrics_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->server = server;
    uv_tcp_init(listener->loop, &c->tcp);
    uv_timer_init(listener->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    server->connections++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
        server->connections > METRICS_MAX_CONNECTIONS) {
        metrics_conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, metrics_conn_on_timeout, METRICS_CONNECTION_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, metrics_conn_alloc, metrics_conn_on_read);
}

static void metrics_on_closed(uv_handle_t *handle)
{
    free(handle->data);
}

int metrics_open(uv_loop_t *loop, const struct addr *addr, metrics_collect_fn collect, void *ctx,
                 struct metrics_server **out, char *err_text, size_t err_len)
{
    struct metrics_server *server = calloc(1, sizeof *server);
    if (!server) {
        snprintf(err_text, err_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    server->collect = collect;
    server->ctx = ctx;
    uv_tcp_init(loop, &server->tcp);
    server->tcp.data = server;
    int rc = uv_tcp_bind(&server->tcp, (const struct sockaddr *)&addr->ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server->tcp, 64, metrics_on_connection);
    if (rc != 0) {
        char text[64];
        snprintf(err_text, err_len, "metrics: cannot listen on %s: %s",
                 addr_format((const struct sockaddr *)&addr->ss, text, sizeof text),
                 uv_strerror(rc));
        uv_close((uv_handle_t *)&server->tcp, metrics_on_closed);
        return BALLAST_EIO;
    }
    *out = server;
    return BALLAST_OK;
}

void metrics_close(struct metrics_server *server)
{
    if (!server)
        return;
    server->closing = true;
    uv_close((uv_handle_t *)&server->tcp, metrics_on_closed);
}

uint64_t metrics_scrapes(const struct metrics_server *server)
{
    return server->scrapes;
}
