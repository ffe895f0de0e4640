/* ballast: the operator's tool. Checks configs and zones offline and talks to a running daemon
 * over its control socket (status, stats, zones, reload, stop). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd_config.h"
#include "catalog.h"
#include "control.h"
#include "errors.h"
#include "replay.h"

#define BALLAST_EXIT_OK 0
#define BALLAST_EXIT_ERROR 1       /* the daemon answered "error", or a check failed */
#define BALLAST_EXIT_UNREACHABLE 2 /* no daemon, or bad usage */
#define BALLAST_CONTROL_TIMEOUT_MS 30000
#define BALLAST_DEFAULT_SOCKET "/tmp/ballast-authd.sock"

static void ballast_usage(FILE *out)
{
    fputs("usage: ballast check -c FILE           validate an authd config and its zones\n"
          "       ballast replay [options] FILE   replay an outage scenario (docs/scenarios.md)\n"
          "       ballast [-s SOCKET] COMMAND     talk to a running daemon\n"
          "\n"
          "commands: status, stats, reload, stop; zones, health (authd);\n"
          "          fault add|clear|list (authd started with --fault-injection);\n"
          "          flush NAME, flush-zone NAME, flush-all, cache dump [PATH],\n"
          "          cache load [PATH] (resolver)\n"
          "  -s, --socket PATH   control socket (default " BALLAST_DEFAULT_SOCKET ")\n"
          "exit status: 0 ok, 1 the daemon or the check reported an error, 2 unreachable/usage\n",
          out);
}

static int ballast_check(int argc, char **argv)
{
    const char *config_file = NULL;
    int opt;
    optind = 1;
    while ((opt = getopt(argc, argv, "c:")) != -1) {
        if (opt != 'c') {
            ballast_usage(stderr);
            return BALLAST_EXIT_UNREACHABLE;
        }
        config_file = optarg;
    }
    if (!config_file) {
        fprintf(stderr, "error: ballast check needs -c FILE\n");
        return BALLAST_EXIT_UNREACHABLE;
    }
    struct authd_config cfg;
    struct config_error err;
    char text[1200];
    authd_config_init(&cfg);
    if (authd_config_load(config_file, &cfg, &err) != 0 || authd_config_validate(&cfg, &err) != 0) {
        fprintf(stderr, "%s\n", config_error_text(&err, text, sizeof text));
        authd_config_free(&cfg);
        return BALLAST_EXIT_ERROR;
    }
    size_t zones = 0, records = 0;
    int rc = catalog_check(&cfg, stderr, &zones, &records);
    if (rc == 0)
        printf("ok: %s: %zu zones, %zu records\n", config_file, zones, records);
    authd_config_free(&cfg);
    return rc == 0 ? BALLAST_EXIT_OK : BALLAST_EXIT_ERROR;
}

static int ballast_control(const char *socket_path, int argc, char **argv)
{
    char line[4096];
    size_t used = 0;
    for (int i = 0; i < argc; i++) {
        int n = snprintf(line + used, sizeof line - used, "%s%s", i ? " " : "", argv[i]);
        if (n < 0 || (size_t)n >= sizeof line - used) {
            fprintf(stderr, "error: command too long\n");
            return BALLAST_EXIT_UNREACHABLE;
        }
        used += (size_t)n;
    }
    char *reply = NULL;
    char err[512] = "";
    int rc =
        control_client_call(socket_path, line, BALLAST_CONTROL_TIMEOUT_MS, &reply, err, sizeof err);
    if (rc == BALLAST_EIO) {
        fprintf(stderr, "error: %s\n", err);
        free(reply);
        return BALLAST_EXIT_UNREACHABLE;
    }
    fputs(reply ? reply : "", rc == 0 ? stdout : stderr);
    free(reply);
    return rc == 0 ? BALLAST_EXIT_OK : BALLAST_EXIT_ERROR;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *socket_path = getenv("BALLAST_SOCKET");
    if (!socket_path)
        socket_path = BALLAST_DEFAULT_SOCKET;
    if (argc >= 2 && strcmp(argv[1], "check") == 0)
        return ballast_check(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "replay") == 0)
        return replay_main(argc - 1, argv + 1);
    int opt;
    while ((opt = getopt_long(argc, argv, "+s:h", options, NULL)) != -1) {
        switch (opt) {
        case 's':
            socket_path = optarg;
            break;
        case 'h':
            ballast_usage(stdout);
            return BALLAST_EXIT_OK;
        default:
            ballast_usage(stderr);
            return BALLAST_EXIT_UNREACHABLE;
        }
    }
    if (optind >= argc) {
        ballast_usage(stderr);
        return BALLAST_EXIT_UNREACHABLE;
    }
    if (strcmp(argv[optind], "check") == 0)
        return ballast_check(argc - optind, argv + optind);
    return ballast_control(socket_path, argc - optind, argv + optind);
}
