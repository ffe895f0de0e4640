/* Worker threads for the daemons: one libuv loop per thread, opened by the owner's callback,
 * stopped through an async handle and joined. */
#include "workers.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "errors.h"

struct worker_thread {
    struct workers *workers;
    unsigned index;
    uv_loop_t loop;
    uv_async_t stop_async;
    uv_thread_t thread;
    bool loop_ready;
    bool thread_started;
};

struct workers {
    struct workers_callbacks callbacks;
    void *ctx;
    unsigned count;
    struct worker_thread *threads;
};

static void workers_on_stop(uv_async_t *async)
{
    struct worker_thread *w = async->data;
    w->workers->callbacks.close(w->workers->ctx, w->index);
    uv_close((uv_handle_t *)&w->stop_async, NULL);
}

static void workers_thread_main(void *arg)
{
    struct worker_thread *w = arg;
    const struct workers_callbacks *cb = &w->workers->callbacks;
    if (cb->thread_enter)
        cb->thread_enter(w->workers->ctx, w->index);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (cb->thread_exit)
        cb->thread_exit(w->workers->ctx, w->index);
}

/* Close a worker whose thread never ran, on the calling thread. */
static void workers_discard(struct worker_thread *w)
{
    workers_on_stop(&w->stop_async);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    w->loop_ready = false;
}

void workers_stop(struct workers *workers)
{
    if (!workers)
        return;
    for (unsigned i = 0; i < workers->count; i++)
        if (workers->threads[i].thread_started)
            uv_async_send(&workers->threads[i].stop_async);
    for (unsigned i = 0; i < workers->count; i++) {
        struct worker_thread *w = &workers->threads[i];
        if (w->thread_started) {
            uv_thread_join(&w->thread);
            uv_loop_close(&w->loop);
        } else if (w->loop_ready) {
            workers_discard(w);
        }
    }
    free(workers->threads);
    free(workers);
}

static unsigned workers_default_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (unsigned)cpus : 1;
}

int workers_start(unsigned count, const struct workers_callbacks *callbacks, void *ctx,
                  struct workers **out, char *err_text, size_t err_len)
{
    *out = NULL;
    struct workers *workers = calloc(1, sizeof *workers);
    unsigned wanted = count ? count : workers_default_count();
    if (workers)
        workers->threads = calloc(wanted, sizeof *workers->threads);
    if (!workers || !workers->threads) {
        free(workers);
        snprintf(err_text, err_len, "out of memory starting workers");
        return BALLAST_ENOMEM;
    }
    workers->callbacks = *callbacks;
    workers->ctx = ctx;
    int rc = BALLAST_OK;
    for (unsigned i = 0; i < wanted && rc == BALLAST_OK; i++) {
        struct worker_thread *w = &workers->threads[i];
        w->workers = workers;
        w->index = i;
        if (uv_loop_init(&w->loop) != 0) {
            snprintf(err_text, err_len, "cannot create event loop for worker %u", i);
            rc = BALLAST_ESYS;
            break;
        }
        workers->count++;
        w->loop_ready = true;
        uv_async_init(&w->loop, &w->stop_async, workers_on_stop);
        w->stop_async.data = w;
        rc = callbacks->open(ctx, i, &w->loop, err_text, err_len);
    }
    for (unsigned i = 0; i < workers->count && rc == BALLAST_OK; i++) {
        struct worker_thread *w = &workers->threads[i];
        if (uv_thread_create(&w->thread, workers_thread_main, w) != 0) {
            snprintf(err_text, err_len, "cannot start worker thread %u", i);
            rc = BALLAST_ESYS;
        } else {
            w->thread_started = true;
        }
    }
    if (rc != BALLAST_OK) {
        workers_stop(workers);
        return rc;
    }
    *out = workers;
    return BALLAST_OK;
}

unsigned workers_count(const struct workers *workers)
{
    return workers->count;
}
