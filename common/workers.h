/* Worker threads for the daemons: each runs its own libuv loop on which the owner opens its
 * listeners (SO_REUSEPORT lets every worker bind the same addresses), and all stop together. */
#ifndef BALLAST_WORKERS_H
#define BALLAST_WORKERS_H

#include <stddef.h>
#include <uv.h>

/* Called on the starting thread before the worker threads run, once per worker, to open that
 * worker's handles on loop. Returns 0 or a BALLAST_E* code with err_text filled. */
typedef int (*workers_open_fn)(void *ctx, unsigned index, uv_loop_t *loop, char *err_text,
                               size_t err_len);
/* Called on the worker's own thread when it is asked to stop: close every handle opened on the
 * loop (the loop then ends by itself). Also called on the starting thread for workers whose
 * thread never started. */
typedef void (*workers_close_fn)(void *ctx, unsigned index);
/* Optional: called first and last on each worker thread (e.g. RCU reader registration). */
typedef void (*workers_thread_fn)(void *ctx, unsigned index);

struct workers_callbacks {
    workers_open_fn open;
    workers_close_fn close;
    workers_thread_fn thread_enter; /* may be NULL */
    workers_thread_fn thread_exit;  /* may be NULL */
};

struct workers;

/* Start count workers (0 = one per online CPU). On error every worker opened so far is closed
 * and nothing is left running. */
int workers_start(unsigned count, const struct workers_callbacks *callbacks, void *ctx,
                  struct workers **out, char *err_text, size_t err_len);
/* Number of workers actually started. */
unsigned workers_count(const struct workers *workers);
/* Ask every worker to stop, wait for the threads and free everything. */
void workers_stop(struct workers *workers);

#endif
