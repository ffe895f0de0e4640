/* ballast: the operator's tool. Checks configs and zones offline, replays outage scenarios, makes
 * control keys, and talks to a running daemon over its control socket or authenticated TCP control
 * (status, stats, zones, reload, stop), in key=value text or, with --json, as JSON for scripts. */
#include <ctype.h>
#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "authd_config.h"
#include "catalog.h"
#include "control.h"
#include "errors.h"
#include "iterate.h"
#include "limit.h"
#include "replay.h"
#include "resolver_config.h"

#define BALLAST_EXIT_OK 0
#define BALLAST_EXIT_ERROR 1       /* the daemon answered "error", or a check failed */
#define BALLAST_EXIT_UNREACHABLE 2 /* no daemon, or bad usage */
#define BALLAST_CONTROL_TIMEOUT_MS 30000
#define BALLAST_DEFAULT_SOCKET "/tmp/ballast-authd.sock"

static void ballast_usage(FILE *out)
{
    fputs("usage: ballast check [-c] FILE [--authd|--resolver|--scenario]\n"
          "                                       check an authd config and its zones, a resolver\n"
          "                                       config and its root hints, or a replay scenario\n"
          "                                       (guessed from the top-level keys)\n"
          "       ballast replay [options] FILE   replay an outage scenario (docs/scenarios.md)\n"
          "       ballast keygen [--force] FILE   write a new TCP control key (mode 0600)\n"
          "       ballast [-s SOCKET] COMMAND     talk to a running daemon\n"
          "       ballast -s ADDR@PORT --key-file FILE COMMAND\n"
          "                                       the same over TCP control (control-tcp)\n"
          "\n"
          "commands: status, stats, reload, stop; zones, health (authd);\n"
          "          fault add|clear|list (authd started with --fault-injection);\n"
          "          flush NAME, flush-zone NAME, flush-all, cache dump [PATH],\n"
          "          cache load [PATH] (resolver)\n"
          "  -s, --socket PATH   control socket (default " BALLAST_DEFAULT_SOCKET ")\n"
          "                      or, with --key-file, the daemon's control-tcp ADDR@PORT\n"
          "  -k, --key-file FILE the daemon's control-key-file: talk TCP control\n"
          "  -j, --json          print the daemon's reply as JSON: lines of one key=value go\n"
          "                      into one object (numbers as numbers, repeated keys as lists),\n"
          "                      lines of several (maybe after a name) into \"items\", other\n"
          "                      text into \"message\" (\"error\" when the daemon refused)\n"
          "exit status: 0 ok, 1 the daemon or the check reported an error, 2 unreachable/usage\n",
          out);
}

enum ballast_check_kind { CHECK_AUTO, CHECK_AUTHD, CHECK_RESOLVER, CHECK_SCENARIO };

/* Which daemon (or scenario) a YAML file is for, from its top-level keys: a scenario has a
 * timeline, load or authorities; an authd config zones or health; anything else is taken as a
 * resolver config (whose own checks then name any key it does not know). */
static enum ballast_check_kind ballast_check_guess(const char *path)
{
    struct config_node *root = NULL;
    struct config_error err;
    if (config_parse_file(path, LIMIT_DEFAULT_CONFIG_BYTES, &root, &err) != 0)
        return CHECK_AUTHD; /* its loader reports the syntax error with file:line */
    enum ballast_check_kind kind = CHECK_RESOLVER;
    if (config_map_get(root, "timeline") || config_map_get(root, "load") ||
        config_map_get(root, "authorities"))
        kind = CHECK_SCENARIO;
    else if (config_map_get(root, "zones") || config_map_get(root, "health") ||
             config_map_get(root, "rrl"))
        kind = CHECK_AUTHD;
    config_free(root);
    return kind;
}

static int ballast_check_authd(const char *config_file)
{
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

/* A resolver config as `ballast-resolver --check -c` sees it (without command-line flags, so a
 * file that relies on --listen is reported as having no listen address). */
static int ballast_check_resolver(const char *config_file)
{
    struct resolver_config cfg;
    struct config_error err;
    char text[1200];
    if (resolver_config_load(config_file, &cfg, &err) != 0 ||
        resolver_config_validate(&cfg, &err) != 0) {
        fprintf(stderr, "%s\n", config_error_text(&err, text, sizeof text));
        resolver_config_free(&cfg);
        return BALLAST_EXIT_ERROR;
    }
    struct iter_hints hints;
    int rc = iter_hints_load(cfg.resolution.root_hints, cfg.resolution.upstream_port, &hints, text,
                             sizeof text);
    if (rc != 0)
        fprintf(stderr, "%s\n", text);
    else
        printf("ok: %s: resolver, %zu listen addresses, %zu root server addresses, %zu "
               "forward/stub zones\n",
               config_file, cfg.listen_count, hints.count, cfg.zone_count);
    resolver_config_free(&cfg);
    return rc == 0 ? BALLAST_EXIT_OK : BALLAST_EXIT_ERROR;
}

/* `ballast check [-c] FILE [--authd|--resolver|--scenario]`: an authd config with its zones, a
 * resolver config with its root hints, or a replay scenario; every error as FILE:LINE: reason. */
static int ballast_check(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"authd", no_argument, NULL, 'a'},
        {"resolver", no_argument, NULL, 'r'},
        {"scenario", no_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    const char *config_file = NULL;
    enum ballast_check_kind kind = CHECK_AUTO;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_file = optarg;
            break;
        case 'a':
            kind = CHECK_AUTHD;
            break;
        case 'r':
            kind = CHECK_RESOLVER;
            break;
        case 's':
            kind = CHECK_SCENARIO;
            break;
        default:
            ballast_usage(stderr);
            return BALLAST_EXIT_UNREACHABLE;
        }
    }
    if (!config_file && optind < argc)
        config_file = argv[optind++];
    if (!config_file || optind < argc) {
        fprintf(stderr, "error: ballast check needs one FILE (-c FILE)\n");
        return BALLAST_EXIT_UNREACHABLE;
    }
    if (kind == CHECK_AUTO)
        kind = ballast_check_guess(config_file);
    if (kind == CHECK_SCENARIO) {
        char *args[] = {"replay", "--check", (char *)config_file, NULL};
        return replay_main(3, args) == 0 ? BALLAST_EXIT_OK : BALLAST_EXIT_ERROR;
    }
    return kind == CHECK_RESOLVER ? ballast_check_resolver(config_file)
                                  : ballast_check_authd(config_file);
}

/* One token of a reply line: key=value, the value maybe "quoted" (backslash escapes). Returns
 * the position after it, or NULL at the end of the line. */
static const char *ballast_token(const char *p, char *key, size_t key_len, char *value,
                                 size_t value_len, bool *is_pair)
{
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return NULL;
    size_t k = 0, v = 0;
    *is_pair = false;
    while (*p && *p != ' ' && *p != '=' && k + 1 < key_len)
        key[k++] = *p++;
    key[k] = '\0';
    if (*p == '=') {
        *is_pair = true;
        p++;
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (v + 1 < value_len)
                    value[v++] = *p;
            }
            if (*p == '"')
                p++;
        } else {
            while (*p && *p != ' ' && v + 1 < value_len)
                value[v++] = *p++;
        }
    }
    while (*p && *p != ' ')
        p++; /* the rest of an over-long token */
    value[v] = '\0';
    return p;
}

static json_t *ballast_json_value(const char *text)
{
    char *end = NULL;
    if (*text &&
        (isdigit((unsigned char)*text) || (*text == '-' && isdigit((unsigned char)text[1])))) {
        long long n = strtoll(text, &end, 10);
        if (end && *end == '\0')
            return json_integer(n);
        double d = strtod(text, &end);
        if (end && *end == '\0')
            return json_real(d);
    }
    return json_string(text);
}

/* Add key=value to obj; a repeated key becomes a list. */
static void ballast_json_put(json_t *obj, const char *key, json_t *value)
{
    json_t *old = json_object_get(obj, key);
    if (!old) {
        json_object_set_new(obj, key, value);
    } else if (json_is_array(old)) {
        json_array_append_new(old, value);
    } else {
        json_t *list = json_array();
        json_array_append(list, old);
        json_array_append_new(list, value);
        json_object_set_new(obj, key, list);
    }
}

/* The daemon's reply as JSON (see the usage). */
static void ballast_print_json(const char *reply, bool ok, FILE *out)
{
    json_t *root = json_object();
    json_t *items = json_array();
    char *message = NULL;
    size_t message_len = 0;
    json_object_set_new(root, "ok", json_boolean(ok));
    const char *line = reply ? reply : "";
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char *copy = strndup(line, len);
        char key[256], value[4096];
        bool is_pair = false, all_pairs = true, named = false;
        size_t tokens = 0;
        for (const char *p = copy; p && *p;) {
            p = ballast_token(p, key, sizeof key, value, sizeof value, &is_pair);
            if (!p)
                break;
            if (tokens == 0 && !is_pair)
                named = true; /* "example.test. serial=1 records=74": a named item */
            else
                all_pairs = all_pairs && is_pair;
            tokens++;
        }
        if (tokens > 0 && all_pairs && (!named || tokens > 1)) {
            json_t *target = tokens == 1 ? root : json_object();
            for (const char *p = copy; p && *p;) {
                p = ballast_token(p, key, sizeof key, value, sizeof value, &is_pair);
                if (p && is_pair)
                    ballast_json_put(target, key, ballast_json_value(value));
                else if (p)
                    json_object_set_new(target, "name", json_string(key));
            }
            if (tokens > 1)
                json_array_append_new(items, target);
        } else if (len > 0) {
            char *grown = realloc(message, message_len + len + 2);
            if (grown) {
                message = grown;
                memcpy(message + message_len, line, len);
                message_len += len;
                message[message_len++] = '\n';
                message[message_len] = '\0';
            }
        }
        free(copy);
        line = eol ? eol + 1 : line + len;
    }
    if (json_array_size(items) > 0)
        json_object_set(root, "items", items);
    json_decref(items);
    if (message) {
        message[message_len - 1] = '\0';
        json_object_set_new(root, ok ? "message" : "error", json_string(message));
        free(message);
    }
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text) {
        fprintf(out, "%s\n", text);
        free(text);
    }
    json_decref(root);
}

/* `ballast keygen [--force] FILE`: 32 random bytes as hex, mode 0600, for control-key-file. */
static int ballast_keygen(int argc, char **argv)
{
    static const struct option options[] = {
        {"force", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    bool force = false;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "f", options, NULL)) != -1) {
        if (opt != 'f') {
            ballast_usage(stderr);
            return BALLAST_EXIT_UNREACHABLE;
        }
        force = true;
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "error: ballast keygen needs one FILE\n");
        return BALLAST_EXIT_UNREACHABLE;
    }
    char err[512];
    if (control_key_generate(argv[optind], force, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        return BALLAST_EXIT_ERROR;
    }
    printf("ok: wrote a new control key to %s (mode 0600)\n", argv[optind]);
    return BALLAST_EXIT_OK;
}

/* Where to send a command: a Unix socket path, or a TCP address and its key (--key-file). */
struct ballast_target {
    const char *socket; /* -s as given */
    const char *key_file;
    struct addr addr;
    unsigned char key[CONTROL_KEY_BYTES];
};

/* With --key-file: parse -s as ADDR@PORT and load the key. Returns 0 or prints why not. */
static int ballast_target_prepare(struct ballast_target *target)
{
    if (target->key_file == NULL)
        return 0;
    if (addr_parse(target->socket, 0, &target->addr) != 0 ||
        addr_port((const struct sockaddr *)&target->addr.ss) == 0) {
        fprintf(stderr,
                "error: with --key-file, -s must be the daemon's control-tcp ADDR@PORT (got "
                "'%s')\n",
                target->socket);
        return BALLAST_EIO;
    }
    char err[600];
    if (control_key_load(target->key_file, target->key, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        return BALLAST_EIO;
    }
    return 0;
}

static int ballast_control(const struct ballast_target *target, int argc, char **argv, bool json)
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
    int rc = target->key_file
                 ? control_client_call_tcp(&target->addr, target->key, line,
                                           BALLAST_CONTROL_TIMEOUT_MS, &reply, err, sizeof err)
                 : control_client_call(target->socket, line, BALLAST_CONTROL_TIMEOUT_MS, &reply,
                                       err, sizeof err);
    if (rc == BALLAST_EINVAL && target->key_file && strcmp(err, "authentication failed") == 0 &&
        !json) {
        fprintf(stderr,
                "error: authentication failed at %s: %s is not the daemon's control-key-file\n",
                target->socket, target->key_file);
        free(reply);
        return BALLAST_EXIT_ERROR;
    }
    if (rc == BALLAST_EIO) {
        if (json) {
            char text[700];
            snprintf(text, sizeof text, "%s", err);
            ballast_print_json(text, false, stdout);
        } else {
            fprintf(stderr, "error: %s\n", err);
        }
        free(reply);
        return BALLAST_EXIT_UNREACHABLE;
    }
    if (json)
        ballast_print_json(reply, rc == 0, stdout);
    else
        fputs(reply ? reply : "", rc == 0 ? stdout : stderr);
    free(reply);
    return rc == 0 ? BALLAST_EXIT_OK : BALLAST_EXIT_ERROR;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"socket", required_argument, NULL, 's'},
        {"key-file", required_argument, NULL, 'k'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ballast_target target = {.socket = getenv("BALLAST_SOCKET")};
    if (!target.socket)
        target.socket = BALLAST_DEFAULT_SOCKET;
    if (argc >= 2 && strcmp(argv[1], "check") == 0)
        return ballast_check(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "replay") == 0)
        return replay_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
        return ballast_keygen(argc - 1, argv + 1);
    int opt;
    bool json = false;
    while ((opt = getopt_long(argc, argv, "+s:k:jh", options, NULL)) != -1) {
        switch (opt) {
        case 's':
            target.socket = optarg;
            break;
        case 'k':
            target.key_file = optarg;
            break;
        case 'j':
            json = true;
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
    if (ballast_target_prepare(&target) != 0)
        return BALLAST_EXIT_UNREACHABLE;
    int rc = ballast_control(&target, argc - optind, argv + optind, json);
    sodium_memzero(target.key, sizeof target.key);
    return rc;
}
