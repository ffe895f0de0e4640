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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_text_format),
        cmocka_unit_test(test_metrics_writer_grows),
        cmocka_unit_test(test_metrics_endpoint_answers_get_and_404),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
