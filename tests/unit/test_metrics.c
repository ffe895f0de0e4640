/* Unit tests for common/metrics.c: the Prometheus text format written by the collect callback,
 * and the HTTP endpoint on a real loop (GET /metrics answered, other paths 404). */
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "addr.h"
#include "metrics.h"

static void collect_two(void *ctx, struct metrics_writer *w)
{
    uint64_t *calls = ctx;
    (*calls)++;
    metrics_family(w, "ballast_test_queries_total", "counter", "Queries.");
    metrics_sample(w, "ballast_test_queries_total", "transport=\"udp\"", 7);
    metrics_sample(w, "ballast_test_queries_total", "transport=\"tcp\"", 1);
    metrics_single(w, "ballast_test_entries", "gauge", "Entries.", 18446744073709551615ull);
}

static void test_metrics_text_format(void **state)
{
    uint64_t calls = 0;
    char *text = metrics_render(collect_two, &calls);
    assert_non_null(text);
    assert_int_equal(calls, 1);
    assert_string_equal(text, "# HELP ballast_test_queries_total Queries.\n"
                              "# TYPE ballast_test_queries_total counter\n"
                              "ballast_test_queries_total{transport=\"udp\"} 7\n"
                              "ballast_test_queries_total{transport=\"tcp\"} 1\n"
                              "# HELP ballast_test_entries Entries.\n"
                              "# TYPE ballast_test_entries gauge\n"
                              "ballast_test_entries 18446744073709551615\n");
    free(text);
}

static void collect_many(void *ctx, struct metrics_writer *w)
{
    for (int i = 0; i < 5000; i++)
        metrics_single(w, "ballast_test_long_metric_name_to_grow_the_buffer", "counter", "x",
                       (uint64_t)i);
}

static void test_metrics_writer_grows(void **state)
{
    char *text = metrics_render(collect_many, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "ballast_test_long_metric_name_to_grow_the_buffer 4999\n"));
    free(text);
}

/* --- the endpoint ------------------------------------------------------------------------- */

struct scrape {
    uv_loop_t *loop;
    uint16_t port;
    const char *request;
    char response[8192];
    uv_thread_t thread;
};

static void scrape_thread(void *arg)
{
    struct scrape *s = arg;
    struct addr a;
    char text[32];
    snprintf(text, sizeof text, "127.0.0.1@%u", s->port);
    addr_parse(text, 0, &a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&a.ss, a.len) == 0) {
        write(fd, s->request, strlen(s->request));
        size_t got = 0;
        ssize_t n;
        while ((n = read(fd, s->response + got, sizeof s->response - 1 - got)) > 0)
            got += (size_t)n;
        s->response[got] = '\0';
    }
    close(fd);
}

static void on_done_check(uv_timer_t *timer)
{
    struct scrape *s = timer->data;
    if (s->response[0] || uv_now(s->loop) > 5000 + 0)
        uv_stop(s->loop);
}

static void run_scrape(struct scrape *s)
{
    uv_timer_t t;
    uv_timer_init(s->loop, &t);
    t.data = s;
    uv_thread_create(&s->thread, scrape_thread, s);
    uv_timer_start(&t, on_done_check, 10, 10);
    uv_run(s->loop, UV_RUN_DEFAULT);
    uv_thread_join(&s->thread);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(s->loop, UV_RUN_NOWAIT);
}

static void test_metrics_endpoint_answers_get_and_404(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct addr a;
    assert_int_equal(addr_parse("127.0.0.1@9", 0, &a), 0);
    ((struct sockaddr_in *)&a.ss)->sin_port = 0; /* any free port */
    uint64_t calls = 0;
    struct metrics_server *server = NULL;
    char err[128];
    assert_int_equal(metrics_open(&loop, &a, collect_two, &calls, &server, err, sizeof err), 0);
    /* the bound port */
    uv_os_fd_t fd;
    uv_fileno((uv_handle_t *)server, &fd);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    uint16_t port = ntohs(((struct sockaddr_in *)&ss)->sin_port);

    struct scrape s = {
        .loop = &loop, .port = port, .request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"};
    run_scrape(&s);
    assert_non_null(strstr(s.response, "HTTP/1.0 200 OK\r\n"));
    assert_non_null(strstr(s.response, "Content-Type: text/plain; version=0.0.4"));
    assert_non_null(strstr(s.response, "ballast_test_queries_total{transport=\"udp\"} 7\n"));
    assert_int_equal(calls, 1);
    assert_int_equal(metrics_scrapes(server), 1);

    struct scrape other = {.loop = &loop, .port = port, .request = "GET /secret HTTP/1.0\r\n\r\n"};
    run_scrape(&other);
    assert_non_null(strstr(other.response, "HTTP/1.0 404 Not Found\r\n"));
    assert_int_equal(calls, 1);

    metrics_close(server);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* --- queries by QTYPE --------------------------------------------------------------------- */

static void collect_qtypes(void *ctx, struct metrics_writer *w)
{
    metrics_write_qtypes(w, "t_by_type_total", "By type.", ctx);
}

static void test_metrics_qtypes_counts_known_types_and_the_rest_as_other(void **state)
{
    struct metrics_qtypes worker1 = {0}, worker2 = {0}, sum = {0};
    metrics_qtypes_count(&worker1, 28); /* AAAA */
    metrics_qtypes_count(&worker1, 28);
    metrics_qtypes_count(&worker2, 28);
    metrics_qtypes_count(&worker2, 1);     /* A */
    metrics_qtypes_count(&worker2, 99);    /* SPF: not listed */
    metrics_qtypes_count(&worker2, 65280); /* private use */
    metrics_qtypes_add(&sum, &worker1);
    metrics_qtypes_add(&sum, &worker2);
    char *text = metrics_render(collect_qtypes, &sum);
    assert_non_null(text);
    assert_non_null(strstr(text, "# TYPE t_by_type_total counter\n"));
    assert_non_null(strstr(text, "t_by_type_total{type=\"AAAA\"} 3\n"));
    assert_non_null(strstr(text, "t_by_type_total{type=\"A\"} 1\n"));
    assert_non_null(strstr(text, "t_by_type_total{type=\"other\"} 2\n"));
    assert_non_null(strstr(text, "t_by_type_total{type=\"MX\"} 0\n"));
    size_t samples = 0;
    for (const char *p = text; (p = strstr(p, "\nt_by_type_total{")) != NULL; p++)
        samples++;
    assert_int_equal(samples, METRICS_QTYPE_SLOTS); /* bounded, whatever types arrive */
    free(text);
}

static void test_metrics_qtypes_reads_the_question_of_a_raw_query(void **state)
{
    /* id, flags (RD), QDCOUNT 1, then "www.example" A... with QTYPE TXT (16) */
    const uint8_t query[] = {0x12, 0x34, 0x01, 0x00, 0,   1,   0,   0,   0,   0, 0, 0,  3, 'w', 'w',
                             'w',  7,    'e',  'x',  'a', 'm', 'p', 'l', 'e', 0, 0, 16, 0, 1};
    struct metrics_qtypes q = {0};
    metrics_qtypes_count_query(&q, query, sizeof query);
    metrics_qtypes_count_query(&q, query, sizeof query - 3); /* QTYPE cut short: not counted */
    uint8_t response[sizeof query];
    memcpy(response, query, sizeof query);
    response[2] |= 0x80; /* QR=1: not a query */
    metrics_qtypes_count_query(&q, response, sizeof response);
    uint8_t compressed[sizeof query];
    memcpy(compressed, query, sizeof query);
    compressed[12] = 0xC0; /* a compression pointer in the question */
    metrics_qtypes_count_query(&q, compressed, sizeof compressed);
    metrics_qtypes_count_query(&q, query, 11); /* shorter than a header */
    struct metrics_qtypes sum = {0};
    metrics_qtypes_add(&sum, &q);
    char *text = metrics_render(collect_qtypes, &sum);
    assert_non_null(text);
    assert_non_null(strstr(text, "t_by_type_total{type=\"TXT\"} 1\n"));
    assert_non_null(strstr(text, "t_by_type_total{type=\"other\"} 0\n"));
    assert_non_null(strstr(text, "t_by_type_total{type=\"A\"} 0\n"));
    free(text);
}

/* --- latency histogram -------------------------------------------------------------------- */

static void collect_latency(void *ctx, struct metrics_writer *w)
{
    metrics_write_latency(w, "t_seconds", "Latency.", ctx);
}

static void test_metrics_latency_buckets_are_cumulative_with_sum_and_count(void **state)
{
    struct metrics_latency worker1 = {0}, worker2 = {0}, sum = {0};
    metrics_latency_observe(&worker1, 100);     /* 0.0001 s: first bucket */
    metrics_latency_observe(&worker1, 500);     /* exactly on the 0.0005 bound: le is <= */
    metrics_latency_observe(&worker2, 3000);    /* 0.003 s: le=0.005 */
    metrics_latency_observe(&worker2, 7000000); /* 7 s: only +Inf */
    metrics_latency_add(&sum, &worker1);
    metrics_latency_add(&sum, &worker2);
    char *text = metrics_render(collect_latency, &sum);
    assert_non_null(text);
    assert_non_null(strstr(text, "# TYPE t_seconds histogram\n"));
    assert_non_null(strstr(text, "t_seconds_bucket{le=\"0.0005\"} 2\n"));
    assert_non_null(strstr(text, "t_seconds_bucket{le=\"0.001\"} 2\n"));
    assert_non_null(strstr(text, "t_seconds_bucket{le=\"0.0025\"} 2\n"));
    assert_non_null(strstr(text, "t_seconds_bucket{le=\"0.005\"} 3\n"));
    assert_non_null(strstr(text, "t_seconds_bucket{le=\"5\"} 3\n"));
    assert_non_null(strstr(text, "t_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(text, "t_seconds_sum 7.003600\n"));
    assert_non_null(strstr(text, "t_seconds_count 4\n"));
    free(text);
}

static void test_metrics_latency_observe_since_measures_elapsed_time(void **state)
{
    struct metrics_latency l = {0}, sum = {0};
    uint64_t start = uv_hrtime();
    usleep(2000);
    metrics_latency_observe_since(&l, start);
    metrics_latency_observe_since(&l, uv_hrtime() + 1000000000ull); /* a start in the future: 0 */
    metrics_latency_add(&sum, &l);
    assert_true(sum.sum_us >= 2000);
    assert_true(sum.sum_us < 2000000);
    assert_int_equal(sum.buckets[0], 1); /* the 0 */
    uint64_t total = 0;
    for (size_t i = 0; i <= METRICS_LATENCY_BUCKETS; i++)
        total += sum.buckets[i];
    assert_int_equal(total, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_text_format),
        cmocka_unit_test(test_metrics_writer_grows),
        cmocka_unit_test(test_metrics_endpoint_answers_get_and_404),
        cmocka_unit_test(test_metrics_qtypes_counts_known_types_and_the_rest_as_other),
        cmocka_unit_test(test_metrics_qtypes_reads_the_question_of_a_raw_query),
        cmocka_unit_test(test_metrics_latency_buckets_are_cumulative_with_sum_and_count),
        cmocka_unit_test(test_metrics_latency_observe_since_measures_elapsed_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
