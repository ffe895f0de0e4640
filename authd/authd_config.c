/* ballast-authd configuration: reads the YAML schema (server, limits, zones) from a config_node
 * tree, and the --listen/--zone flags, into one struct authd_config; every error names the file
 * and line (or "command line") and the limit crossed. */
#include "authd_config.h"

#include <ldns/ldns.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

#define AUTHD_CMDLINE "command line"

enum authd_limit_type { AUTHD_LIMIT_COUNT, AUTHD_LIMIT_SIZE, AUTHD_LIMIT_DURATION };

/* One key of the limits section: its range and where it lands in struct limits. */
struct authd_limit_spec {
    const char *key;
    enum authd_limit_type type;
    uint64_t min, max;
    size_t offset, width;
};

#define AUTHD_LIMIT(key, type, min, max, field)                                                    \
    {                                                                                              \
        key, type, min, max, offsetof(struct limits, field), sizeof(((struct limits *)0)->field)   \
    }

/* Ranges are documented in docs/configuration.md; keep the two in step. */
static const struct authd_limit_spec authd_limit_specs[] = {
    AUTHD_LIMIT("max-zone-records", AUTHD_LIMIT_COUNT, 1, UINT32_MAX, max_zone_records),
    AUTHD_LIMIT("max-zone-size", AUTHD_LIMIT_SIZE, 1, 1ull << 40, max_zone_bytes),
    /* An RRset must fit in one message: ANCOUNT is 16 bits (RFC 1035 §4.1.1). */
    AUTHD_LIMIT("max-rrset-records", AUTHD_LIMIT_COUNT, 1, 65535, max_rrset_records),
    AUTHD_LIMIT("max-include-depth", AUTHD_LIMIT_COUNT, 0, 64, max_include_depth),
    AUTHD_LIMIT("max-zones", AUTHD_LIMIT_COUNT, 1, UINT32_MAX, max_zones),
    AUTHD_LIMIT("tcp-clients", AUTHD_LIMIT_COUNT, 1, UINT32_MAX, tcp_clients),
    /* RFC 7766 §6.2.3: servers close idle connections; allow 1 ms up to a day. */
    AUTHD_LIMIT("tcp-idle-timeout", AUTHD_LIMIT_DURATION, 1, 86400000, tcp_idle_timeout_ms),
    /* Pipelined queries on one connection are told apart by the 16-bit ID (RFC 7766 §6.2.1.1). */
    AUTHD_LIMIT("tcp-pipeline", AUTHD_LIMIT_COUNT, 1, 65535, tcp_pipeline),
    /* RFC 6891 §6.2.5: below 512 means 512; 4096 is the usual ceiling. */
    AUTHD_LIMIT("edns-udp-size", AUTHD_LIMIT_COUNT, LIMIT_UDP_MIN_PAYLOAD, 4096, edns_udp_size),
    AUTHD_LIMIT("cname-chain", AUTHD_LIMIT_COUNT, 1, 64, cname_chain),
};
#define AUTHD_LIMIT_SPEC_COUNT (sizeof(authd_limit_specs) / sizeof(authd_limit_specs[0]))

static const char *const authd_top_keys[] = {"server", "limits", "zones", NULL};
static const char *const authd_server_keys[] = {"listen",  "workers",  "log-level",
                                                "control", "pid-file", NULL};
static const char *const authd_zone_keys[] = {"name", "file", NULL};

/* Report at node's file:line, or at "command line" when node is NULL (flags). */
static int authd_fail(struct config_error *err, const struct config_node *node, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));

static int authd_fail(struct config_error *err, const struct config_node *node, const char *fmt,
                      ...)
{
    char reason[sizeof(err->reason)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (node == NULL)
        snprintf(err->file, sizeof(err->file), "%s", AUTHD_CMDLINE);
    return config_fail(err, node, "%s", reason);
}

/* Prefix a typed-read error with the key it was read for: "workers: expected an integer...". */
static int authd_name_key(struct config_error *err, const char *key, int rc)
{
    char reason[sizeof(err->reason)];
    memcpy(reason, err->reason, sizeof(reason));
    /* A reason cut short at 511 bytes is acceptable; checking the length says so. */
    if (snprintf(err->reason, sizeof(err->reason), "%s: %s", key, reason) < 0)
        err->reason[0] = '\0';
    return rc;
}

static int authd_nomem(struct config_error *err, const struct config_node *node)
{
    authd_fail(err, node, "out of memory");
    return BALLAST_ENOMEM;
}

void authd_config_init(struct authd_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->workers = 0;
    cfg->log_level = LOG_LEVEL_INFO;
    limits_init_defaults(&cfg->limits);
}

void authd_config_free(struct authd_config *cfg)
{
    free(cfg->source_file);
    for (size_t i = 0; i < cfg->listen_count; i++)
        free(cfg->listen_text[i]);
    free(cfg->control_path);
    free(cfg->pid_file);
    for (size_t i = 0; i < cfg->zone_count; i++) {
        free(cfg->zones[i].name);
        free(cfg->zones[i].file);
    }
    free(cfg->zones);
    authd_config_init(cfg);
}

/* ---- listen addresses ---- */

/* node is where text came from (NULL for flags). */
static int authd_listen_append(struct authd_config *cfg, const char *text,
                               const struct config_node *node, struct config_error *err)
{
    struct addr addr;
    if (addr_parse(text, AUTHD_DEFAULT_PORT, &addr) != 0)
        return authd_fail(err, node, "invalid listen address '%s' (expected ADDR[@PORT])", text);
    for (size_t i = 0; i < cfg->listen_count; i++) {
        if (cfg->listen[i].len == addr.len && memcmp(&cfg->listen[i].ss, &addr.ss, addr.len) == 0)
            return authd_fail(err, node, "duplicate listen address '%s' (same as '%s')", text,
                              cfg->listen_text[i]);
    }
    if (cfg->listen_count == AUTHD_MAX_LISTEN) {
        authd_fail(err, node, "too many listen addresses (limit is %d)", AUTHD_MAX_LISTEN);
        return BALLAST_ELIMIT;
    }
    char *copy = strdup(text);
    if (copy == NULL)
        return authd_nomem(err, node);
    cfg->listen[cfg->listen_count] = addr;
    cfg->listen_text[cfg->listen_count] = copy;
    cfg->listen_count++;
    return 0;
}

int authd_config_add_listen(struct authd_config *cfg, const char *text, struct config_error *err)
{
    return authd_listen_append(cfg, text, NULL, err);
}

/* ---- zones ---- */

/* Canonical form of a zone name: lowercase, escapes as ldns prints them, no trailing dot
 * except for the root ".". Returns NULL if text is not a domain name. */
static char *authd_zone_name_normalise(const char *text)
{
    if (text[0] == '\0')
        return NULL;
    ldns_rdf *dname = ldns_dname_new_frm_str(text);
    if (dname == NULL)
        return NULL;
    ldns_dname2canonical(dname);
    char *printed = ldns_rdf2str(dname);
    ldns_rdf_deep_free(dname);
    if (printed == NULL)
        return NULL;
    size_t len = strlen(printed);
    if (len > 1 && printed[len - 1] == '.')
        printed[len - 1] = '\0';
    return printed;
}

/* Append a zone; takes ownership of name and file (freed on error). */
static int authd_zone_append(struct authd_config *cfg, char *name, char *file)
{
    /* Capacity is 4, 8, 16, ...: zone_count is the only size the struct keeps. */
    size_t count = cfg->zone_count;
    if (count == 0 || (count >= 4 && (count & (count - 1)) == 0)) {
        size_t capacity = count ? count * 2 : 4;
        struct authd_zone_config *zones = realloc(cfg->zones, capacity * sizeof(*zones));
        if (zones == NULL) {
            free(name);
            free(file);
            return BALLAST_ENOMEM;
        }
        cfg->zones = zones;
    }
    cfg->zones[cfg->zone_count].name = name;
    cfg->zones[cfg->zone_count].file = file;
    cfg->zone_count++;
    return 0;
}

struct authd_zone_ref {
    const char *name;
    size_t index;
};

static int authd_zone_ref_cmp(const void *a, const void *b)
{
    const struct authd_zone_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Earliest second occurrence of a zone name (names are normalised, so strcmp suffices).
 * Sorting keeps a server with many zones at n log n. Returns 1 and sets *second, *first. */
static int authd_zone_find_duplicate(const struct authd_config *cfg, size_t *second, size_t *first)
{
    if (cfg->zone_count < 2)
        return 0;
    struct authd_zone_ref *refs = malloc(cfg->zone_count * sizeof(*refs));
    if (refs == NULL)
        return BALLAST_ENOMEM;
    for (size_t i = 0; i < cfg->zone_count; i++)
        refs[i] = (struct authd_zone_ref){.name = cfg->zones[i].name, .index = i};
    qsort(refs, cfg->zone_count, sizeof(*refs), authd_zone_ref_cmp);
    int found = 0;
    for (size_t i = 1; i < cfg->zone_count; i++) {
        bool run_start = i < 2 || strcmp(refs[i - 2].name, refs[i].name) != 0;
        if (strcmp(refs[i - 1].name, refs[i].name) != 0 || !run_start)
            continue;
        if (!found || refs[i].index < *second) {
            *second = refs[i].index;
            *first = refs[i - 1].index;
            found = 1;
        }
    }
    free(refs);
    return found;
}

int authd_config_add_zone_arg(struct authd_config *cfg, const char *arg, struct config_error *err)
{
    const char *colon = strchr(arg, ':');
    if (colon == NULL || colon == arg || colon[1] == '\0')
        return authd_fail(err, NULL, "invalid zone '%s' (expected NAME:FILE)", arg);
    char *text = strndup(arg, (size_t)(colon - arg));
    if (text == NULL)
        return authd_nomem(err, NULL);
    char *name = authd_zone_name_normalise(text);
    if (name == NULL) {
        authd_fail(err, NULL, "invalid zone name '%s' in '%s'", text, arg);
        free(text);
        return BALLAST_EINVAL;
    }
    free(text);
    for (size_t i = 0; i < cfg->zone_count; i++) {
        if (strcmp(cfg->zones[i].name, name) == 0) {
            authd_fail(err, NULL, "duplicate zone '%s'", name);
            free(name);
            return BALLAST_EINVAL;
        }
    }
    char *file = strdup(colon + 1);
    if (file == NULL) {
        free(name);
        return authd_nomem(err, NULL);
    }
    if (authd_zone_append(cfg, name, file) != 0)
        return authd_nomem(err, NULL);
    return 0;
}

/* ---- reading the YAML tree ---- */

/* path as written, or joined to the directory of config_path when relative. */
static char *authd_resolve_path(const char *config_path, const char *path)
{
    const char *slash = strrchr(config_path, '/');
    if (path[0] == '/' || slash == NULL)
        return strdup(path);
    size_t dir_len = (size_t)(slash - config_path);
    char *joined = NULL;
    if (asprintf(&joined, "%.*s/%s", (int)dir_len, config_path, path) < 0)
        return NULL;
    return joined;
}

/* A section that may be absent or empty ("server:" alone); *out is NULL then. */
static int authd_section(const struct config_node *map, const char *key, enum config_kind kind,
                         const struct config_node **out, struct config_error *err)
{
    const struct config_node *node = config_map_get(map, key);
    *out = NULL;
    if (node == NULL || (node->kind == CONFIG_SCALAR && node->scalar[0] == '\0'))
        return 0;
    if (node->kind != kind)
        return authd_fail(err, node, "%s: expected %s", key,
                          kind == CONFIG_MAP ? "a map" : "a list");
    *out = node;
    return 0;
}

/* A non-empty string value of key, if present (*out stays NULL when absent). */
static int authd_get_text(const struct config_node *map, const char *key,
                          const struct config_node **node, const char **out,
                          struct config_error *err)
{
    *node = config_map_get(map, key);
    *out = NULL;
    if (*node == NULL)
        return 0;
    int rc = config_get_string(*node, out, err);
    if (rc != 0)
        return authd_name_key(err, key, rc);
    if ((*out)[0] == '\0')
        return authd_fail(err, *node, "%s: must not be empty", key);
    return 0;
}

static int authd_read_path(const struct config_node *map, const char *key, const char *config_path,
                           char **out, struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = authd_get_text(map, key, &node, &text, err);
    if (rc != 0 || text == NULL)
        return rc;
    char *resolved = authd_resolve_path(config_path, text);
    if (resolved == NULL)
        return authd_nomem(err, node);
    free(*out);
    *out = resolved;
    return 0;
}

static int authd_read_listen(struct authd_config *cfg, const struct config_node *server,
                             struct config_error *err)
{
    const struct config_node *listen = config_map_get(server, "listen");
    if (listen == NULL)
        return 0;
    if (listen->kind == CONFIG_SCALAR)
        return authd_listen_append(cfg, listen->scalar, listen, err);
    if (listen->kind != CONFIG_LIST)
        return authd_fail(err, listen, "listen: expected an address or a list of addresses");
    for (size_t i = 0; i < listen->count; i++) {
        const struct config_node *item = listen->values[i];
        if (item->kind != CONFIG_SCALAR)
            return authd_fail(err, item, "listen: expected an address, got a %s",
                              item->kind == CONFIG_MAP ? "map" : "list");
        int rc = authd_listen_append(cfg, item->scalar, item, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int authd_read_server(struct authd_config *cfg, const struct config_node *root,
                             struct config_error *err)
{
    const struct config_node *server;
    int rc = authd_section(root, "server", CONFIG_MAP, &server, err);
    if (rc != 0 || server == NULL)
        return rc;
    rc = config_check_keys(server, authd_server_keys, err);
    if (rc == 0)
        rc = authd_read_listen(cfg, server, err);
    if (rc != 0)
        return rc;
    const struct config_node *node = config_map_get(server, "workers");
    if (node != NULL) {
        uint64_t workers;
        rc = config_get_uint(node, 0, LIMIT_DEFAULT_WORKERS_MAX, &workers, err);
        if (rc != 0)
            return authd_name_key(err, "workers", rc);
        cfg->workers = (unsigned)workers;
    }
    const char *level;
    rc = authd_get_text(server, "log-level", &node, &level, err);
    if (rc != 0)
        return rc;
    if (level != NULL && log_level_parse(level, &cfg->log_level) != 0)
        return authd_fail(err, node, "log-level: expected error, warn, info or debug, got '%s'",
                          level);
    rc = authd_read_path(server, "control", cfg->source_file, &cfg->control_path, err);
    if (rc == 0)
        rc = authd_read_path(server, "pid-file", cfg->source_file, &cfg->pid_file, err);
    return rc;
}

static void authd_limit_store(struct limits *limits, const struct authd_limit_spec *spec,
                              uint64_t value)
{
    char *field = (char *)limits + spec->offset;
    if (spec->width == sizeof(uint16_t)) {
        uint16_t v = (uint16_t)value;
        memcpy(field, &v, sizeof(v));
    } else if (spec->width == sizeof(uint32_t)) {
        uint32_t v = (uint32_t)value;
        memcpy(field, &v, sizeof(v));
    } else {
        memcpy(field, &value, sizeof(value));
    }
}

static int authd_read_limit(struct limits *limits, const struct config_node *node,
                            const struct authd_limit_spec *spec, struct config_error *err)
{
    uint64_t value = 0;
    int rc;
    switch (spec->type) {
    case AUTHD_LIMIT_SIZE:
        rc = config_get_size(node, spec->min, spec->max, &value, err);
        break;
    case AUTHD_LIMIT_DURATION:
        rc = config_get_duration_ms(node, spec->min, spec->max, &value, err);
        break;
    default:
        rc = config_get_uint(node, spec->min, spec->max, &value, err);
        break;
    }
    if (rc != 0)
        return authd_name_key(err, spec->key, rc);
    authd_limit_store(limits, spec, value);
    return 0;
}

static int authd_read_limits(struct authd_config *cfg, const struct config_node *root,
                             struct config_error *err)
{
    const struct config_node *section;
    int rc = authd_section(root, "limits", CONFIG_MAP, &section, err);
    if (rc != 0 || section == NULL)
        return rc;
    const char *allowed[AUTHD_LIMIT_SPEC_COUNT + 1];
    for (size_t i = 0; i < AUTHD_LIMIT_SPEC_COUNT; i++)
        allowed[i] = authd_limit_specs[i].key;
    allowed[AUTHD_LIMIT_SPEC_COUNT] = NULL;
    rc = config_check_keys(section, allowed, err);
    for (size_t i = 0; i < AUTHD_LIMIT_SPEC_COUNT && rc == 0; i++) {
        const struct config_node *node = config_map_get(section, authd_limit_specs[i].key);
        if (node != NULL)
            rc = authd_read_limit(&cfg->limits, node, &authd_limit_specs[i], err);
    }
    return rc;
}

static int authd_read_zone(struct authd_config *cfg, const struct config_node *zone,
                           struct config_error *err)
{
    if (zone->kind != CONFIG_MAP)
        return authd_fail(err, zone, "zones: each entry must be a map with name and file");
    int rc = config_check_keys(zone, authd_zone_keys, err);
    if (rc != 0)
        return rc;
    const struct config_node *name_node, *file_node;
    const char *name_text, *file_text;
    rc = authd_get_text(zone, "name", &name_node, &name_text, err);
    if (rc == 0)
        rc = authd_get_text(zone, "file", &file_node, &file_text, err);
    if (rc != 0)
        return rc;
    if (name_text == NULL || file_text == NULL)
        return authd_fail(err, zone, "zone is missing '%s'", name_text == NULL ? "name" : "file");
    if (cfg->zone_count >= cfg->limits.max_zones) {
        authd_fail(err, name_node, "too many zones (limit is %u, max-zones)",
                   (unsigned)cfg->limits.max_zones);
        return BALLAST_ELIMIT;
    }
    char *name = authd_zone_name_normalise(name_text);
    if (name == NULL)
        return authd_fail(err, name_node, "invalid zone name '%s'", name_text);
    char *file = authd_resolve_path(cfg->source_file, file_text);
    if (file == NULL) {
        free(name);
        return authd_nomem(err, file_node);
    }
    if (authd_zone_append(cfg, name, file) != 0)
        return authd_nomem(err, zone);
    return 0;
}

static unsigned authd_zone_name_line(const struct config_node *zones, size_t index)
{
    const struct config_node *name = config_map_get(zones->values[index], "name");
    return name != NULL ? name->line : zones->values[index]->line;
}

static int authd_read_zones(struct authd_config *cfg, const struct config_node *root,
                            struct config_error *err)
{
    const struct config_node *zones;
    int rc = authd_section(root, "zones", CONFIG_LIST, &zones, err);
    if (rc != 0 || zones == NULL)
        return rc;
    for (size_t i = 0; i < zones->count && rc == 0; i++)
        rc = authd_read_zone(cfg, zones->values[i], err);
    if (rc != 0)
        return rc;
    /* The config starts without zones, so zone i came from list entry i. */
    size_t second = 0, first = 0;
    rc = authd_zone_find_duplicate(cfg, &second, &first);
    if (rc < 0)
        return authd_nomem(err, zones);
    if (rc == 0)
        return 0;
    rc = authd_fail(err, config_map_get(zones->values[second], "name"),
                    "duplicate zone '%s' (first at line %u)", cfg->zones[second].name,
                    authd_zone_name_line(zones, first));
    return rc;
}

static int authd_read_tree(struct authd_config *cfg, const struct config_node *root,
                           struct config_error *err)
{
    int rc = config_check_keys(root, authd_top_keys, err);
    if (rc == 0)
        rc = authd_read_server(cfg, root, err);
    /* Limits before zones: max-zones applies to the list whatever the key order. */
    if (rc == 0)
        rc = authd_read_limits(cfg, root, err);
    if (rc == 0)
        rc = authd_read_zones(cfg, root, err);
    return rc;
}

/* cfg is an output: it is initialised here, so it must not hold anything the caller still
 * needs to free. Listener/zone presence is left to authd_config_validate, so flags can add
 * them after loading. */
int authd_config_load(const char *path, struct authd_config *cfg, struct config_error *err)
{
    authd_config_init(cfg);
    struct config_node *root = NULL;
    int rc = config_parse_file(path, LIMIT_DEFAULT_CONFIG_BYTES, &root, err);
    if (rc != 0)
        return rc;
    cfg->source_file = strdup(path);
    if (cfg->source_file == NULL)
        rc = authd_nomem(err, root);
    else
        rc = authd_read_tree(cfg, root, err);
    config_free(root);
    if (rc != 0)
        authd_config_free(cfg);
    return rc;
}

int authd_config_validate(const struct authd_config *cfg, struct config_error *err)
{
    snprintf(err->file, sizeof(err->file), "%s",
             cfg->source_file ? cfg->source_file : AUTHD_CMDLINE);
    if (cfg->listen_count == 0)
        return config_fail(err, NULL, "no listen address: add server.listen or --listen");
    if (cfg->zone_count == 0)
        return config_fail(err, NULL, "no zones: add an entry to zones or --zone NAME:FILE");
    if (cfg->zone_count > cfg->limits.max_zones) {
        config_fail(err, NULL, "too many zones: %zu (limit is %u, max-zones)", cfg->zone_count,
                    (unsigned)cfg->limits.max_zones);
        return BALLAST_ELIMIT;
    }
    size_t second = 0, first = 0;
    int rc = authd_zone_find_duplicate(cfg, &second, &first);
    if (rc < 0) {
        config_fail(err, NULL, "out of memory");
        return BALLAST_ENOMEM;
    }
    if (rc > 0)
        return config_fail(err, NULL, "duplicate zone '%s'", cfg->zones[second].name);
    return 0;
}
