/* ballast-authd entry point: command line, config and zone loading, --check, then the server. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authd_config.h"
#include "catalog.h"
#include "daemon.h"
#include "errors.h"
#include "log.h"
#include "server.h"

#define AUTHD_EXIT_OK 0
#define AUTHD_EXIT_FAILURE 1
#define AUTHD_EXIT_USAGE 2

enum authd_option {
    OPTION_CHECK = 256,
    OPTION_LISTEN,
    OPTION_ZONE,
    OPTION_WORKERS,
    OPTION_CONTROL,
    OPTION_LOG_LEVEL,
    OPTION_LOG_FORMAT,
    OPTION_LOG_TARGET,
    OPTION_PID_FILE,
    OPTION_FAULT_INJECTION,
    OPTION_FAIL_CLOSED,
    OPTION_USER,
    OPTION_ALLOW_ROOT,
};

struct authd_args {
    const char *config_file;
    bool check;
    const char *listen[AUTHD_MAX_LISTEN];
    size_t listen_count;
    const char **zones;
    size_t zone_count;
    const char *workers;
    const char *control;
    const char *log_level;
    const char *log_format;
    const char *log_target;
    const char *pid_file;
    bool fault_injection;
    bool fail_closed;
    const char *user;
    bool allow_root;
};

static void authd_usage(FILE *out)
{
    fputs("usage: ballast-authd -c FILE [--check]\n"
          "       ballast-authd --listen ADDR[@PORT] --zone NAME:FILE [--zone ...] [options]\n"
          "\n"
          "  -c, --config FILE       YAML configuration (see docs/configuration.md)\n"
          "      --check             validate the configuration and every zone, then exit\n"
          "      --listen ADDR[@PORT] listen on ADDR (port 53 if omitted); repeatable\n"
          "      --zone NAME:FILE    serve zone NAME from master file FILE; repeatable\n"
          "      --workers N         worker threads (0 = one per CPU)\n"
          "      --control PATH      Unix control socket (for `ballast -s PATH ...`)\n"
          "      --log-level LEVEL   error, warn, info or debug\n"
          "      --log-format FORMAT text (key=value) or json (one object per line)\n"
          "      --log-target TARGET stderr or syslog (facility daemon)\n"
          "      --pid-file PATH     write the process id to PATH\n"
          "      --user USER[:GROUP] after binding, run as USER (overrides server.user)\n"
          "      --allow-root        keep running as root when no user is set (or set\n"
          "                          BALLAST_ALLOW_ROOT=1)\n"
          "      --fault-injection   accept `fault` control commands (tests and replay only)\n"
          "      --fail-closed       health pools answer no records when every member is down and\n"
          "                          withdraw members without pacing (replay baselines only)\n"
          "  -V, --version           print the version\n"
          "  -h, --help              this help\n",
          out);
}

static int authd_parse_args(int argc, char **argv, struct authd_args *args)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, OPTION_CHECK},
        {"listen", required_argument, NULL, OPTION_LISTEN},
        {"zone", required_argument, NULL, OPTION_ZONE},
        {"workers", required_argument, NULL, OPTION_WORKERS},
        {"control", required_argument, NULL, OPTION_CONTROL},
        {"log-level", required_argument, NULL, OPTION_LOG_LEVEL},
        {"log-format", required_argument, NULL, OPTION_LOG_FORMAT},
        {"log-target", required_argument, NULL, OPTION_LOG_TARGET},
        {"pid-file", required_argument, NULL, OPTION_PID_FILE},
        {"fault-injection", no_argument, NULL, OPTION_FAULT_INJECTION},
        {"fail-closed", no_argument, NULL, OPTION_FAIL_CLOSED},
        {"user", required_argument, NULL, OPTION_USER},
        {"allow-root", no_argument, NULL, OPTION_ALLOW_ROOT},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "c:Vh", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            args->config_file = optarg;
            break;
        case OPTION_CHECK:
            args->check = true;
            break;
        case OPTION_LISTEN:
            if (args->listen_count >= AUTHD_MAX_LISTEN) {
                fprintf(stderr, "error: at most %d --listen addresses\n", AUTHD_MAX_LISTEN);
                return AUTHD_EXIT_USAGE;
            }
            args->listen[args->listen_count++] = optarg;
            break;
        case OPTION_ZONE:
            args->zones[args->zone_count++] = optarg;
            break;
        case OPTION_WORKERS:
            args->workers = optarg;
            break;
        case OPTION_CONTROL:
            args->control = optarg;
            break;
        case OPTION_LOG_LEVEL:
            args->log_level = optarg;
            break;
        case OPTION_LOG_FORMAT:
            args->log_format = optarg;
            break;
        case OPTION_LOG_TARGET:
            args->log_target = optarg;
            break;
        case OPTION_PID_FILE:
            args->pid_file = optarg;
            break;
        case OPTION_FAULT_INJECTION:
            args->fault_injection = true;
            break;
        case OPTION_FAIL_CLOSED:
            args->fail_closed = true;
            break;
        case OPTION_USER:
            args->user = optarg;
            break;
        case OPTION_ALLOW_ROOT:
            args->allow_root = true;
            break;
        case 'V':
            printf("ballast-authd 0.1.0\n");
            exit(AUTHD_EXIT_OK);
        case 'h':
            authd_usage(stdout);
            exit(AUTHD_EXIT_OK);
        default:
            authd_usage(stderr);
            return AUTHD_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "error: unexpected argument '%s'\n", argv[optind]);
        return AUTHD_EXIT_USAGE;
    }
    if (!args->config_file && args->listen_count == 0 && args->zone_count == 0) {
        authd_usage(stderr);
        return AUTHD_EXIT_USAGE;
    }
    return AUTHD_EXIT_OK;
}

static int authd_set_string(char **field, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return BALLAST_ENOMEM;
    free(*field);
    *field = copy;
    return BALLAST_OK;
}

/* Flags add to (or override) what the config file says. */
static int authd_apply_args(const struct authd_args *args, struct authd_config *cfg,
                            struct config_error *err)
{
    for (size_t i = 0; i < args->listen_count; i++)
        if (authd_config_add_listen(cfg, args->listen[i], err) != 0)
            return BALLAST_EINVAL;
    for (size_t i = 0; i < args->zone_count; i++)
        if (authd_config_add_zone_arg(cfg, args->zones[i], err) != 0)
            return BALLAST_EINVAL;
    snprintf(err->file, sizeof err->file, "command line");
    err->line = 0;
    if (args->workers) {
        char *end = NULL;
        unsigned long workers = strtoul(args->workers, &end, 10);
        if (!*args->workers || *end || workers > LIMIT_DEFAULT_WORKERS_MAX) {
            snprintf(err->reason, sizeof err->reason,
                     "--workers must be an integer between 0 and %u, got '%s'",
                     LIMIT_DEFAULT_WORKERS_MAX, args->workers);
            return BALLAST_EINVAL;
        }
        cfg->workers = (unsigned)workers;
    }
    if (args->log_level && log_level_parse(args->log_level, &cfg->log_level) != 0) {
        snprintf(err->reason, sizeof err->reason,
                 "--log-level must be error, warn, info or debug, got '%s'", args->log_level);
        return BALLAST_EINVAL;
    }
    if (args->log_format && log_format_parse(args->log_format, &cfg->log_format) != 0) {
        snprintf(err->reason, sizeof err->reason, "--log-format must be text or json, got '%s'",
                 args->log_format);
        return BALLAST_EINVAL;
    }
    if (args->log_target && log_target_parse(args->log_target, &cfg->log_target) != 0) {
        snprintf(err->reason, sizeof err->reason, "--log-target must be stderr or syslog, got '%s'",
                 args->log_target);
        return BALLAST_EINVAL;
    }
    if ((args->control && authd_set_string(&cfg->control_path, args->control) != 0) ||
        (args->pid_file && authd_set_string(&cfg->pid_file, args->pid_file) != 0)) {
        snprintf(err->reason, sizeof err->reason, "out of memory");
        return BALLAST_ENOMEM;
    }
    if (args->user && authd_config_set_user(cfg, args->user, err) != 0)
        return BALLAST_EINVAL;
    return BALLAST_OK;
}

static int authd_load_config(const struct authd_args *args, struct authd_config *cfg)
{
    struct config_error err;
    char text[1200];
    memset(&err, 0, sizeof err);
    if (args->config_file && authd_config_load(args->config_file, cfg, &err) != 0)
        goto fail;
    if (authd_apply_args(args, cfg, &err) != 0 || authd_config_validate(cfg, &err) != 0)
        goto fail;
    return BALLAST_OK;
fail:
    fprintf(stderr, "%s\n", config_error_text(&err, text, sizeof text));
    return BALLAST_EINVAL;
}

/* Load every zone for serving; a zone that fails is logged and left out. */
static int authd_load_zones(const struct authd_config *cfg, struct zone_set **zones)
{
    struct catalog_report report;
    int rc = catalog_load(cfg, NULL, zones, &report);
    for (size_t i = 0; i < report.failure_count; i++) {
        const struct catalog_failure *f = &report.failures[i];
        log_error("zone_rejected", "zone=%s file=%s line=%u reason=\"%s\" kept_previous=no",
                  f->zone, f->error.file, f->error.line, f->error.reason);
    }
    catalog_report_free(&report);
    if (rc != 0)
        log_error("startup_failed", "reason=\"%s\"",
                  rc == BALLAST_ENOTFOUND ? "no zone could be loaded" : ballast_strerror(rc));
    return rc;
}

/* After the drop: what a reload reads must stay readable (docs/packaging.md). */
static void authd_check_reload_access(const struct authd_config *cfg)
{
    daemon_check_access("the configuration file", cfg->source_file, false);
    char what[300];
    for (size_t i = 0; i < cfg->zone_count; i++) {
        snprintf(what, sizeof what, "zone %s", cfg->zones[i].name);
        daemon_check_access(what, cfg->zones[i].file, false);
    }
}

static int authd_check(const struct authd_config *cfg)
{
    size_t zone_count = 0, records = 0;
    if (catalog_check(cfg, stderr, &zone_count, &records) != 0)
        return AUTHD_EXIT_FAILURE;
    printf("ok: %zu zones, %zu records, %zu listen addresses\n", zone_count, records,
           cfg->listen_count);
    return AUTHD_EXIT_OK;
}

int main(int argc, char **argv)
{
    struct authd_args args;
    memset(&args, 0, sizeof args);
    args.zones = calloc((size_t)argc, sizeof *args.zones);
    if (!args.zones)
        return AUTHD_EXIT_FAILURE;
    int status = authd_parse_args(argc, argv, &args);
    if (status != AUTHD_EXIT_OK) {
        free(args.zones);
        return status;
    }
    signal(SIGPIPE, SIG_IGN);

    struct authd_config cfg;
    authd_config_init(&cfg);
    struct zone_set *zones = NULL;
    if (authd_load_config(&args, &cfg) != 0) {
        status = AUTHD_EXIT_FAILURE;
        goto done;
    }
    log_set_ident("ballast-authd");
    log_configure(cfg.log_level, cfg.log_format, cfg.log_target, cfg.log_queries);
    if (args.check) {
        status = authd_check(&cfg);
        goto done;
    }
    /* Before anything is bound: an unknown user, or root without a user, stops here. */
    struct daemon_identity identity;
    char err_text[512];
    if (daemon_privileges_prepare(cfg.user, args.allow_root || daemon_allow_root_from_env(),
                                  &identity, err_text, sizeof err_text) != 0) {
        log_error("startup_failed", "reason=\"%s\"", err_text);
        fprintf(stderr, "error: %s\n", err_text);
        status = AUTHD_EXIT_FAILURE;
        goto done;
    }
    if (authd_load_zones(&cfg, &zones) != 0) {
        status = AUTHD_EXIT_FAILURE;
        goto done;
    }

    struct server *server = NULL;
    if (args.fail_closed) {
        /* what DNS does without Ballast's protections: the baseline of `ballast replay` */
        for (size_t i = 0; i < cfg.health.pool_count; i++) {
            cfg.health.pools[i].def.empty_mode = POOL_FAIL_CLOSED;
            cfg.health.pools[i].max_withdraw_share = 1.0;
        }
        log_warn("fail_closed",
                 "reason=\"--fail-closed: pools may answer empty (replay baseline)\"");
    }
    /* authd_apply_args put the log flags in cfg already; the server re-applies them on reload */
    struct server_options options = {
        .fault_injection = args.fault_injection,
        .has_log_level = args.log_level != NULL,
        .has_log_format = args.log_format != NULL,
        .has_log_target = args.log_target != NULL,
        .log_level = cfg.log_level,
        .log_format = cfg.log_format,
        .log_target = cfg.log_target,
    };
    /* server_start moves cfg: its strings then belong to the server and stay as they are until
     * the first reload, which cannot happen before server_run. */
    const struct authd_config moved = cfg;
    /* server_start binds every listener (the worker threads are started with their sockets
     * open), the metrics listener and the control socket, and writes the pid file. */
    if (server_start(&cfg, zones, &options, &server, err_text, sizeof err_text) != 0) {
        log_error("startup_failed", "reason=\"%s\"", err_text);
        fprintf(stderr, "error: %s\n", err_text);
        status = AUTHD_EXIT_FAILURE;
        goto done;
    }
    /* The workers already run: glibc's setuid() changes every thread of the process. */
    if (daemon_drop_privileges(&identity, moved.control_path, err_text, sizeof err_text) != 0) {
        log_error("startup_failed", "reason=\"%s\"", err_text);
        _exit(AUTHD_EXIT_FAILURE); /* half-dropped, threads running: end the process at once */
    }
    if (identity.drop)
        authd_check_reload_access(&moved);
    status = server_run(server);
done:
    authd_config_free(&cfg);
    free(args.zones);
    return status;
}
