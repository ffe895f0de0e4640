/* The running ballast-authd: worker threads (one libuv loop and one SO_REUSEPORT socket set per
 * thread), the RCU-published snapshot of zones and limits they answer from, counters, and the
 * main loop that handles signals, the control socket and staged reloads. */
#ifndef BALLAST_SERVER_H
#define BALLAST_SERVER_H

#include <stdbool.h>

#include "authd_config.h"
#include "log.h"
#include "zone.h"

struct server;

/* Command-line only settings, fixed for the life of the process (a reload keeps them). */
struct server_options {
    bool fault_injection; /* --fault-injection: accept "fault" commands (common/fault.h) */
    /* --log-level, --log-format, --log-target: each one given wins over the config file's
     * value at start and on every reload (docs/authd.md, Reload). */
    bool has_log_level, has_log_format, has_log_target;
    enum log_level log_level;
    enum log_format log_format;
    enum log_target log_target;
};

/* Bind every listener and start the workers. Takes ownership of cfg (moved; the caller's struct
 * is reset) and of zones; process_options may be NULL (all off). Returns 0 or a negative
 * BALLAST_E* code; on error everything taken is freed and err_text says why (e.g. the address
 * that could not be bound). */
int server_start(struct authd_config *cfg, struct zone_set *zones,
                 const struct server_options *process_options, struct server **out, char *err_text,
                 size_t err_len);

/* Run the main loop until SIGTERM, SIGINT or the "stop" control command, then stop the workers
 * and free everything. Returns the process exit status (0 after a clean shutdown). */
int server_run(struct server *server);

#endif
