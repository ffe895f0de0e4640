/* ballast-authd configuration: reads the YAML schema (server, limits, zones) from a config_node
 * tree, and the --listen/--zone flags, into one struct authd_config; every error names the file
 * and line (or "command line") and the limit crossed. */
#include "authd_config.h"

#include <ldns/ldns.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

/* A key of the limits section: its range and its field of struct limits. */
#define AUTHD_LIMIT(key, type, min, max, field)                                                    \
    CONFIG_KEY("limits", key, type, min, max, struct limits, field)

/* Ranges are documented in docs/configuration.md; keep the two in step. */
static const struct config_key_spec authd_limit_specs[] = {
    AUTHD_LIMIT("max-zone-records", COUNT, 1, UINT32_MAX, max_zone_records),
    AUTHD_LIMIT("max-zone-size", SIZE, 1, 1ull << 40, max_zone_bytes),
    /* An RRset must fit in one message: ANCOUNT is 16 bits (RFC 1035 §4.1.1). */
    AUTHD_LIMIT("max-rrset-records", COUNT, 1, 65535, max_rrset_records),
    AUTHD_LIMIT("max-include-depth", COUNT, 0, 64, max_include_depth),
    AUTHD_LIMIT("max-zones", COUNT, 1, UINT32_MAX, max_zones),
    AUTHD_LIMIT("tcp-clients", COUNT, 1, UINT32_MAX, tcp_clients),
    /* RFC 7766 §6.2.3: servers close idle connections; allow 1 ms up to a day. */
    AUTHD_LIMIT("tcp-idle-timeout", DURATION, 1, 86400000, tcp_idle_timeout_ms),
    /* Pipelined queries on one connection are told apart by the 16-bit ID (RFC 7766 §6.2.1.1). */
    AUTHD_LIMIT("tcp-pipeline", COUNT, 1, 65535, tcp_pipeline),
    /* RFC 6891 §6.2.5: below 512 means 512; 4096 is the usual ceiling. */
    AUTHD_LIMIT("edns-udp-size", COUNT, LIMIT_UDP_MIN_PAYLOAD, 4096, edns_udp_size),
    AUTHD_LIMIT("cname-chain", COUNT, 1, 64, cname_chain),
};
#define AUTHD_LIMIT_SPEC_COUNT (sizeof(authd_limit_specs) / sizeof(authd_limit_specs[0]))

static const char *const authd_top_keys[] = {"server", "limits", "zones", NULL};
static const char *const authd_server_keys[] = {"listen",  "workers",  "log-level",
                                                "control", "pid-file", NULL};
static const char *const authd_zone_keys[] = {"name", "file", NULL};

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

static struct config_listen_list authd_listen_list(struct authd_config *cfg)
{
    return CONFIG_LISTEN_LIST(cfg, AUTHD_MAX_LISTEN, AUTHD_DEFAULT_PORT);
}

int authd_config_add_listen(struct authd_config *cfg, const char *text, struct config_error *err)
{
    struct config_listen_list list = authd_listen_list(cfg);
    return config_listen_append(&list, text, NULL, err);
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
    struct authd_zone_config *zones =
        config_array_reserve(cfg->zones, cfg->zone_count, sizeof(*zones));
    if (zones == NULL) {
        free(name);
        free(file);
        return BALLAST_ENOMEM;
    }
    cfg->zones = zones;
    cfg->zones[cfg->zone_count].name = name;
    cfg->zones[cfg->zone_count].file = file;
    cfg->zone_count++;
    return 0;
}

static const char *authd_zone_name_at(const void *zones, size_t index)
{
    return ((const struct authd_zone_config *)zones)[index].name;
}

/* Earliest second occurrence of a zone name (names are normalised, so strcmp suffices).
 * Returns 1 and sets *second, *first; 0 if none; or BALLAST_ENOMEM. */
static int authd_zone_find_duplicate(const struct authd_config *cfg, size_t *second, size_t *first)
{
    return config_find_duplicate(cfg->zones, cfg->zone_count, authd_zone_name_at, second, first);
}

int authd_config_add_zone_arg(struct authd_config *cfg, const char *arg, struct config_error *err)
{
    const char *colon = strchr(arg, ':');
    if (colon == NULL || colon == arg || colon[1] == '\0')
        return config_fail_or_cmdline(err, NULL, "invalid zone '%s' (expected NAME:FILE)", arg);
    char *text = strndup(arg, (size_t)(colon - arg));
    if (text == NULL)
        return config_nomem(err, NULL);
    char *name = authd_zone_name_normalise(text);
    if (name == NULL) {
        config_fail_or_cmdline(err, NULL, "invalid zone name '%s' in '%s'", text, arg);
        free(text);
        return BALLAST_EINVAL;
    }
    free(text);
    for (size_t i = 0; i < cfg->zone_count; i++) {
        if (strcmp(cfg->zones[i].name, name) == 0) {
            config_fail_or_cmdline(err, NULL, "duplicate zone '%s'", name);
            free(name);
            return BALLAST_EINVAL;
        }
    }
    char *file = strdup(colon + 1);
    if (file == NULL) {
        free(name);
        return config_nomem(err, NULL);
    }
    if (authd_zone_append(cfg, name, file) != 0)
        return config_nomem(err, NULL);
    return 0;
}

/* ---- reading the YAML tree ---- */

static int authd_read_server(struct authd_config *cfg, const struct config_node *root,
                             struct config_error *err)
{
    const struct config_node *server;
    int rc = config_section(root, "server", CONFIG_MAP, &server, err);
    if (rc != 0 || server == NULL)
        return rc;
    rc = config_check_keys(server, authd_server_keys, err);
    if (rc != 0)
        return rc;
    /* An empty listen list is no error here: flags may add listeners (authd_config_validate). */
    const struct config_server_fields fields = {.listen = authd_listen_list(cfg),
                                                .listen_required = false,
                                                .workers = &cfg->workers,
                                                .log_level = &cfg->log_level,
                                                .control_path = &cfg->control_path,
                                                .pid_file = &cfg->pid_file};
    return config_read_server_fields(server, cfg->source_file, &fields, err);
}

static int authd_read_limits(struct authd_config *cfg, const struct config_node *root,
                             struct config_error *err)
{
    const struct config_node *section;
    return config_read_section(root, "limits", authd_limit_specs, AUTHD_LIMIT_SPEC_COUNT, NULL,
                               &cfg->limits, &section, err);
}

static int authd_read_zone(struct authd_config *cfg, const struct config_node *zone,
                           struct config_error *err)
{
    if (zone->kind != CONFIG_MAP)
        return config_fail_or_cmdline(err, zone,
                                      "zones: each entry must be a map with name and file");
    int rc = config_check_keys(zone, authd_zone_keys, err);
    if (rc != 0)
        return rc;
    const struct config_node *name_node, *file_node;
    const char *name_text, *file_text;
    rc = config_get_text(zone, "name", &name_node, &name_text, err);
    if (rc == 0)
        rc = config_get_text(zone, "file", &file_node, &file_text, err);
    if (rc != 0)
        return rc;
    if (name_text == NULL || file_text == NULL)
        return config_fail_or_cmdline(err, zone, "zone is missing '%s'",
                                      name_text == NULL ? "name" : "file");
    if (cfg->zone_count >= cfg->limits.max_zones) {
        config_fail_or_cmdline(err, name_node, "too many zones (limit is %u, max-zones)",
                               (unsigned)cfg->limits.max_zones);
        return BALLAST_ELIMIT;
    }
    char *name = authd_zone_name_normalise(name_text);
    if (name == NULL)
        return config_fail_or_cmdline(err, name_node, "invalid zone name '%s'", name_text);
    char *file = config_resolve_path(cfg->source_file, file_text);
    if (file == NULL) {
        free(name);
        return config_nomem(err, file_node);
    }
    if (authd_zone_append(cfg, name, file) != 0)
        return config_nomem(err, zone);
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
    int rc = config_section(root, "zones", CONFIG_LIST, &zones, err);
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
        return config_nomem(err, zones);
    if (rc == 0)
        return 0;
    rc = config_fail_or_cmdline(err, config_map_get(zones->values[second], "name"),
                                "duplicate zone '%s' (first at line %u)", cfg->zones[second].name,
                                authd_zone_name_line(zones, first));
    return rc;
}

static int authd_read_tree(void *ctx, const struct config_node *root, struct config_error *err)
{
    struct authd_config *cfg = ctx;
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
    int rc = config_load_file(path, &cfg->source_file, authd_read_tree, cfg, err);
    if (rc != 0)
        authd_config_free(cfg);
    return rc;
}

int authd_config_validate(const struct authd_config *cfg, struct config_error *err)
{
    snprintf(err->file, sizeof(err->file), "%s",
             cfg->source_file ? cfg->source_file : CONFIG_CMDLINE);
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
