/* ballast-authd configuration: the YAML schema (server, limits, rrl, zones, health) and the
 * command-line shortcut (--listen/--zone without a file), both producing one struct authd_config.
 */
#ifndef BALLAST_AUTHD_CONFIG_H
#define BALLAST_AUTHD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "config.h"
#include "control.h"
#include "healthd.h"
#include "limit.h"
#include "log.h"
#include "rrl.h"

#define AUTHD_DEFAULT_PORT 53
#define AUTHD_DEFAULT_METRICS_PORT 9154     /* server.metrics without a port */
#define AUTHD_DEFAULT_CONTROL_TCP_PORT 8954 /* server.control-tcp without a port */
#define AUTHD_MAX_LISTEN 64
/* Health section limits (docs/health.md); members per pool are capped by POOL_MAX_MEMBERS. */
#define HEALTH_MAX_POOLS 1000
#define HEALTH_MAX_FEEDS 16

struct authd_zone_config {
    char *name; /* zone apex as written, e.g. "example.test" */
    char *file; /* path; relative paths in a config file are resolved against its directory */
};

struct authd_config {
    char *source_file; /* config file path, NULL when built from flags */
    struct addr listen[AUTHD_MAX_LISTEN];
    char *listen_text[AUTHD_MAX_LISTEN]; /* as written, for logs */
    size_t listen_count;
    unsigned workers; /* 0 = one per CPU */
    enum log_level log_level;
    enum log_format log_format; /* server.log-format / --log-format: text (default) or json */
    enum log_target log_target; /* server.log-target / --log-target: stderr (default) or syslog */
    bool log_queries;           /* server.log-queries: one info line per query; off by default */
    char *control_path;         /* Unix control socket; NULL = none */
    char *pid_file;             /* NULL = none */
    char *user;                 /* server.user / --user: "USER[:GROUP]" to drop to; NULL = none */
    bool has_metrics;           /* server.metrics: the Prometheus endpoint (off by default) */
    struct addr metrics;
    struct control_tcp_config control_tcp; /* server.control-tcp, control-key-file; off */
    struct limits limits;
    struct rrl_config rrl; /* response rate limiting (docs/authd.md); off by default */
    struct authd_zone_config *zones;
    size_t zone_count;
    struct healthd_config health; /* pools and feeds; empty when the file has no health section */
    unsigned *health_pool_lines;  /* line of each pool's name in source_file, for errors */
};

/* Defaults: no listeners, no zones, workers 0, log info, default limits, no control socket,
 * rate limiting off. */
void authd_config_init(struct authd_config *cfg);
void authd_config_free(struct authd_config *cfg);

/* Load and validate a YAML file (schema in docs/configuration.md and docs/health.md). Unknown
 * keys, bad values, duplicate zones, pools and members are errors with file:line. On error cfg is
 * left freed/initialised. */
int authd_config_load(const char *path, struct authd_config *cfg, struct config_error *err);

/* Add a listen address "ADDR[@PORT]" (port defaults to 53). */
int authd_config_add_listen(struct authd_config *cfg, const char *text, struct config_error *err);
/* Add a zone "NAME:FILE" (as given to --zone). */
int authd_config_add_zone_arg(struct authd_config *cfg, const char *arg, struct config_error *err);
/* --user USER[:GROUP] (replaces server.user): the form is checked (daemon_user_check), the names
 * at start-up. */
int authd_config_set_user(struct authd_config *cfg, const char *spec, struct config_error *err);

/* Final checks: at least one listener and one zone, no duplicate zone names, every health pool
 * inside a configured zone (and no CNAME pool at a zone apex). */
int authd_config_validate(const struct authd_config *cfg, struct config_error *err);

#endif
