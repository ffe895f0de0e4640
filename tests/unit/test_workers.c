/* Unit tests for common/workers.c: threads start with their own loops, stop together, and a
 * failing open closes what was opened. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "errors.h"
#include "workers.h"

struct counts {
    int opened, closed, entered, exited;
    int fail_at; /* open fails for this index; -1 never */
    uv_timer_t timers[8];
};

static int count_open(void *ctx, unsigned index, uv_loop_t *loop, char *err, size_t len)
{
    struct counts *c = ctx;
    uv_timer_init(loop, &c->timers[index]); /* a handle the close callback must close */
    if ((int)index == c->fail_at) {
        snprintf(err, len, "worker %u refused", index);
        return BALLAST_EIO;
    }
    __atomic_add_fetch(&c->opened, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void count_close(void *ctx, unsigned index)
{
    struct counts *c = ctx;
    uv_close((uv_handle_t *)&c->timers[index], NULL);
    __atomic_add_fetch(&c->closed, 1, __ATOMIC_SEQ_CST);
}

static void count_enter(void *ctx, unsigned index)
{
    __atomic_add_fetch(&((struct counts *)ctx)->entered, 1, __ATOMIC_SEQ_CST);
}

static void count_exit(void *ctx, unsigned index)
{
    __atomic_add_fetch(&((struct counts *)ctx)->exited, 1, __ATOMIC_SEQ_CST);
}

static const struct workers_callbacks callbacks = {count_open, count_close, count_enter,
                                                   count_exit};

static void test_workers_start_and_stop_every_thread(void **state)
{
    struct counts c = {.fail_at = -1};
    struct workers *w = NULL;
    char err[128];
    assert_int_equal(workers_start(3, &callbacks, &c, &w, err, sizeof err), 0);
    assert_int_equal(workers_count(w), 3);
    workers_stop(w);
    assert_int_equal(c.opened, 3);
    assert_int_equal(c.closed, 3);
    assert_int_equal(c.entered, 3);
    assert_int_equal(c.exited, 3);
}

static void test_workers_failed_open_closes_the_opened(void **state)
{
    struct counts c = {.fail_at = 2};
    struct workers *w = NULL;
    char err[128] = "";
    assert_int_equal(workers_start(4, &callbacks, &c, &w, err, sizeof err), BALLAST_EIO);
    assert_null(w);
    assert_string_equal(err, "worker 2 refused");
    assert_int_equal(c.opened, 2);
    assert_int_equal(c.closed, 3); /* the failed one may hold handles too */
    assert_int_equal(c.entered, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workers_start_and_stop_every_thread),
        cmocka_unit_test(test_workers_failed_open_closes_the_opened),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
