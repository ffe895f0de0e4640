/* The running ballast-authd: worker threads (one libuv loop and one SO_REUSEPORT socket set per
 * thread), the RCU-published snapshot of zones and limits they answer from, counters, and the
 * main loop that handles signals, the control socket and staged reloads. */
#ifndef BALLAST_SERVER_H
#define BALLAST_SERVER_H

#include "authd_config.h"
#include "zone.h"

struct server;

/* Bind every listener and start the workers. Takes ownership of cfg (moved; the caller's struct
 * is reset) and of zones. Returns 0 or a negative BALLAST_E* code; on error everything taken
 * is freed and err_text says why (e.g. the address that could not be bound). */
int server_start(struct authd_config *cfg, struct zone_set *zones, struct server **out,
                 char *err_text, size_t err_len);

/* Run the main loop until SIGTERM, SIGINT or the "stop" control command, then stop the workers
 * and free everything. Returns the process exit status (0 after a clean shutdown). */
int server_run(struct server *server);

#endif
