/* ballast-resolver configuration: reads the YAML schema from a config_node tree and the
 * command-line flags into one struct resolver_config; every error names the file and line (or
 * "command line" and the flag) and the range or limit crossed. */
#include "resolver_config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

#define RESOLVER_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* One scalar key: its section, range (durations and TTLs in ms) and field. */
#define RESOLVER_KEY(section, key, type, min, max, field)                                          \
    CONFIG_KEY(section, key, type, min, max, struct resolver_config, field)

#define DAY_MS 86400000ull

/* Ranges are documented in docs/resolver-configuration.md; keep the two in step. */
static const struct config_key_spec resolver_key_specs[] = {
    RESOLVER_KEY("server", "workers", COUNT, 0, LIMIT_DEFAULT_WORKERS_MAX, workers),
    RESOLVER_KEY("resolution", "qname-minimisation", BOOL, 0, 1, resolution.qname_minimisation),
    RESOLVER_KEY("resolution", "allow-private-upstreams", BOOL, 0, 1,
                 resolution.allow_private_upstreams),
    RESOLVER_KEY("resolution", "upstream-port", COUNT, 1, 65535, resolution.upstream_port),
    RESOLVER_KEY("resolution", "max-referrals", COUNT, 1, 100, resolution.max_referrals),
    RESOLVER_KEY("resolution", "max-ns-names", COUNT, 1, 64, resolution.max_ns_names),
    RESOLVER_KEY("resolution", "max-outbound-queries", COUNT, 1, 4096,
                 resolution.max_outbound_queries),
    RESOLVER_KEY("resolution", "max-cname-chain", COUNT, 1, 64, resolution.max_cname_chain),
    RESOLVER_KEY("resolution", "query-timeout", DURATION, 100, 120000, resolution.query_timeout_ms),
    RESOLVER_KEY("resolution", "upstream-timeout", DURATION, 10, 60000,
                 resolution.upstream_timeout_ms),
    RESOLVER_KEY("cache", "size", SIZE, 1ull << 20, 1ull << 40, cache.size_bytes),
    /* The cache picks a shard from the low bits of a hash, hence a power of two. */
    RESOLVER_KEY("cache", "shards", POWER_OF_TWO, 1, 1024, cache.shards),
    RESOLVER_KEY("cache", "min-ttl", TTL, 0, DAY_MS, cache.min_ttl),
    /* RFC 8767 §4: cap TTLs at 7 days (604800 s), as RFC 2181 §8 left them up to 2^31-1. */
    RESOLVER_KEY("cache", "max-ttl", TTL, 1000, 7 * DAY_MS, cache.max_ttl),
    /* RFC 2308 §5: one to three hours work well; a day is the outer bound. */
    RESOLVER_KEY("cache", "max-negative-ttl", TTL, 0, DAY_MS, cache.max_negative_ttl),
    RESOLVER_KEY("cache", "snapshot-interval", DURATION, 0, DAY_MS, cache.snapshot_interval_ms),
    RESOLVER_KEY("cache", "snapshot-max-size", SIZE, 1ull << 12, 1ull << 40,
                 cache.snapshot_max_bytes),
    RESOLVER_KEY("resolution", "max-pending", COUNT, 1, 1u << 20, resolution.max_pending),
    RESOLVER_KEY("serve-stale", "enable", BOOL, 0, 1, stale.enable),
    /* RFC 8767 §5 suggests 1 to 3 days; a week is the outer bound. */
    RESOLVER_KEY("serve-stale", "max-stale-age", TTL, 0, 7 * DAY_MS, stale.max_stale_age),
    /* RFC 8767 §4: 30 s is the recommended stale TTL. */
    RESOLVER_KEY("serve-stale", "stale-ttl", TTL, 1000, DAY_MS, stale.stale_ttl),
    RESOLVER_KEY("serve-stale", "client-timeout", DURATION, 0, 120000, stale.client_timeout_ms),
    RESOLVER_KEY("serve-stale", "failure-recheck", DURATION, 0, DAY_MS, stale.failure_recheck_ms),
    RESOLVER_KEY("serve-stale", "prefetch", BOOL, 0, 1, stale.prefetch),
    RESOLVER_KEY("serve-stale", "prefetch-threshold", COUNT, 1, 50, stale.prefetch_percent),
    RESOLVER_KEY("serve-stale", "suspicion-window", DURATION, 0, 7 * DAY_MS,
                 stale.suspicion_window_ms),
    RESOLVER_KEY("limits", "tcp-clients", COUNT, 1, UINT32_MAX, limits.tcp_clients),
    /* RFC 7766 §6.2.3: servers close idle connections. */
    RESOLVER_KEY("limits", "tcp-idle-timeout", DURATION, 1, DAY_MS, limits.tcp_idle_timeout_ms),
    /* Pipelined queries on one connection are told apart by the 16-bit ID (RFC 7766 §6.2.1.1). */
    RESOLVER_KEY("limits", "tcp-pipeline", COUNT, 1, 65535, limits.tcp_pipeline),
    /* RFC 6891 §6.2.5: below 512 means 512; 4096 is the usual ceiling. */
    RESOLVER_KEY("limits", "edns-udp-size", COUNT, LIMIT_UDP_MIN_PAYLOAD, 4096,
                 limits.edns_udp_size),
};

static const char *const resolver_top_keys[] = {
    "server",  "access-control", "resolution", "cache",         "serve-stale",
    "forward", "stub",           "limits",     "client-limits", NULL};
/* Keys of each section read by hand rather than from resolver_key_specs. */
static const char *const resolver_server_extra_keys[] = {
    "listen",      "log-level",        "log-format", "log-target", "log-queries", "control",
    "control-tcp", "control-key-file", "pid-file",   "metrics",    "user",        NULL};
static const char *const resolver_resolution_extra_keys[] = {"root-hints", NULL};
static const char *const resolver_cache_extra_keys[] = {"snapshot-file", NULL};
static const char *const resolver_stale_extra_keys[] = {"critical-suffixes", NULL};
static const char *const resolver_acl_keys[] = {"prefix", "action", NULL};
static const char *const resolver_zone_keys[] = {"zone", "to", NULL};

/* ---- init and free ---- */

int resolver_config_init(struct resolver_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->log_level = LOG_LEVEL_INFO;
    limits_init_defaults(&cfg->limits);
    struct resolver_resolution_config *r = &cfg->resolution;
    r->qname_minimisation = true;
    r->allow_private_upstreams = false;
    r->upstream_port = RESOLVER_DEFAULT_PORT;
    r->max_referrals = RESOLVER_DEFAULT_MAX_REFERRALS;
    r->max_ns_names = RESOLVER_DEFAULT_MAX_NS_NAMES;
    r->max_outbound_queries = RESOLVER_DEFAULT_MAX_OUTBOUND_QUERIES;
    r->max_cname_chain = RESOLVER_DEFAULT_MAX_CNAME_CHAIN;
    r->query_timeout_ms = RESOLVER_DEFAULT_QUERY_TIMEOUT_MS;
    r->upstream_timeout_ms = RESOLVER_DEFAULT_UPSTREAM_TIMEOUT_MS;
    cfg->cache = (struct resolver_cache_config){
        .size_bytes = RESOLVER_DEFAULT_CACHE_BYTES,
        .shards = RESOLVER_DEFAULT_CACHE_SHARDS,
        .min_ttl = RESOLVER_DEFAULT_MIN_TTL,
        .max_ttl = RESOLVER_DEFAULT_MAX_TTL,
        .max_negative_ttl = RESOLVER_DEFAULT_MAX_NEGATIVE_TTL,
        .snapshot_interval_ms = RESOLVER_DEFAULT_SNAPSHOT_INTERVAL_MS,
    };
    r->max_pending = RESOLVER_DEFAULT_MAX_PENDING;
    cfg->stale = (struct resolver_stale_config){
        .enable = true,
        .max_stale_age = RESOLVER_DEFAULT_MAX_STALE_AGE,
        .stale_ttl = RESOLVER_DEFAULT_STALE_TTL,
        .client_timeout_ms = RESOLVER_DEFAULT_CLIENT_TIMEOUT_MS,
        .failure_recheck_ms = RESOLVER_DEFAULT_FAILURE_RECHECK_MS,
        .prefetch = true,
        .prefetch_percent = RESOLVER_DEFAULT_PREFETCH_PERCENT,
        .suspicion_window_ms = RESOLVER_DEFAULT_SUSPICION_WINDOW_MS,
    };
    rrl_config_defaults(&cfg->client_limits, RRL_SECTION_QUERIES);
    acl_init(&cfg->acl);
    r->root_hints = strdup(RESOLVER_DEFAULT_ROOT_HINTS);
    if (r->root_hints == NULL || acl_defaults(&cfg->acl) != 0)
        return BALLAST_ENOMEM;
    return 0;
}

static void resolver_zone_free(struct resolver_zone_config *zone)
{
    free(zone->name);
    free(zone->to);
}

void resolver_config_free(struct resolver_config *cfg)
{
    free(cfg->source_file);
    for (size_t i = 0; i < cfg->listen_count; i++)
        free(cfg->listen_text[i]);
    free(cfg->control_path);
    control_tcp_config_free(&cfg->control_tcp);
    free(cfg->pid_file);
    free(cfg->user);
    free(cfg->resolution.root_hints);
    free(cfg->cache.snapshot_file);
    free(cfg->stale.critical);
    acl_free(&cfg->acl);
    for (size_t i = 0; i < cfg->zone_count; i++)
        resolver_zone_free(&cfg->zones[i]);
    free(cfg->zones);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- listen addresses ---- */

static struct config_listen_list resolver_listen_list(struct resolver_config *cfg)
{
    return CONFIG_LISTEN_LIST(cfg, RESOLVER_MAX_LISTEN, RESOLVER_DEFAULT_PORT);
}

int resolver_config_add_listen(struct resolver_config *cfg, const char *text,
                               struct config_error *err)
{
    struct config_listen_list list = resolver_listen_list(cfg);
    return config_listen_append(&list, text, NULL, err);
}

/* ---- forward and stub zones ---- */

static const char *resolver_zone_kind_name(enum resolver_zone_kind kind)
{
    return kind == RESOLVER_ZONE_STUB ? "stub" : "forward";
}

/* Fill zone->name and zone->wire from text: lowercase, no trailing dot except the root. */
static int resolver_zone_set_name(struct resolver_zone_config *zone, const char *text)
{
    char printed[WIRE_NAME_MAX * 4 + 2];
    if (text[0] == '\0' || wire_name_from_text(text, zone->wire, &zone->wire_len) != 0)
        return BALLAST_EINVAL;
    wire_name_lower(zone->wire, zone->wire, zone->wire_len);
    if (wire_name_to_text(zone->wire, printed, sizeof(printed)) != 0)
        return BALLAST_EINVAL;
    size_t len = strlen(printed);
    if (len > 1 && printed[len - 1] == '.')
        printed[len - 1] = '\0';
    zone->name = strdup(printed);
    return zone->name != NULL ? 0 : BALLAST_ENOMEM;
}

/* Add one server to zone; node is where text came from (NULL for flags), what names the list
 * in errors ("to" or the flag). */
static int resolver_zone_add_server(struct resolver_zone_config *zone, const char *text,
                                    const struct config_node *node, const char *what,
                                    struct config_error *err)
{
    struct addr addr;
    if (addr_parse(text, RESOLVER_DEFAULT_PORT, &addr) != 0)
        return config_fail_or_cmdline(err, node, "%s: invalid address '%s' (expected ADDR[@PORT])",
                                      what, text);
    for (size_t i = 0; i < zone->to_count; i++) {
        if (zone->to[i].len == addr.len && memcmp(&zone->to[i].ss, &addr.ss, addr.len) == 0)
            return config_fail_or_cmdline(err, node,
                                          "%s: address '%s' is listed twice for zone '%s'", what,
                                          text, zone->name);
    }
    if (zone->to_count == RESOLVER_MAX_ZONE_SERVERS) {
        config_fail_or_cmdline(err, node, "%s: too many servers for zone '%s' (limit is %d)", what,
                               zone->name, RESOLVER_MAX_ZONE_SERVERS);
        return BALLAST_ELIMIT;
    }
    struct addr *grown = realloc(zone->to, (zone->to_count + 1) * sizeof(*grown));
    if (grown == NULL)
        return config_nomem(err, node);
    zone->to = grown;
    zone->to[zone->to_count++] = addr;
    return 0;
}

/* The earlier zone named like zone, or NULL. */
static const struct resolver_zone_config *resolver_zone_find(const struct resolver_config *cfg,
                                                             const char *name)
{
    for (size_t i = 0; i < cfg->zone_count; i++)
        if (strcmp(cfg->zones[i].name, name) == 0)
            return &cfg->zones[i];
    return NULL;
}

/* Append a filled zone, taking ownership of what it holds (freed on error). */
static int resolver_zone_append(struct resolver_config *cfg, struct resolver_zone_config *zone)
{
    struct resolver_zone_config *zones =
        config_array_reserve(cfg->zones, cfg->zone_count, sizeof(*zones));
    if (zones == NULL) {
        resolver_zone_free(zone);
        return BALLAST_ENOMEM;
    }
    cfg->zones = zones;
    cfg->zones[cfg->zone_count++] = *zone;
    return 0;
}

/* Checks shared by the file and the flags before a zone is appended: the count limit and a
 * name already used by a forward or stub zone. node is the zone name's node (NULL for flags). */
static int resolver_zone_admit(const struct resolver_config *cfg,
                               const struct resolver_zone_config *zone,
                               const struct config_node *node, struct config_error *err)
{
    if (cfg->zone_count >= RESOLVER_MAX_ZONES) {
        config_fail_or_cmdline(err, node, "too many forward and stub zones (limit is %d)",
                               RESOLVER_MAX_ZONES);
        return BALLAST_ELIMIT;
    }
    const struct resolver_zone_config *first = resolver_zone_find(cfg, zone->name);
    if (first == NULL)
        return 0;
    if (first->line > 0)
        return config_fail_or_cmdline(err, node, "duplicate zone '%s' (first at line %u, %s)",
                                      zone->name, first->line,
                                      resolver_zone_kind_name(first->kind));
    return config_fail_or_cmdline(err, node, "duplicate zone '%s' (already given as --%s)",
                                  zone->name, resolver_zone_kind_name(first->kind));
}

/* Parse "ZONE=ADDR[@PORT][,ADDR...]" from --forward or --stub. */
static int resolver_zone_arg(struct resolver_config *cfg, enum resolver_zone_kind kind,
                             const char *arg, struct config_error *err)
{
    const char *flag = kind == RESOLVER_ZONE_STUB ? "--stub" : "--forward";
    const char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg || eq[1] == '\0')
        return config_fail_or_cmdline(
            err, NULL, "%s: invalid argument '%s' (expected ZONE=ADDR[@PORT][,ADDR...])", flag,
            arg);
    char *name = strndup(arg, (size_t)(eq - arg));
    char *list = strdup(eq + 1);
    struct resolver_zone_config zone = {.kind = kind};
    int rc = name != NULL && list != NULL ? 0 : config_nomem(err, NULL);
    if (rc == 0 && resolver_zone_set_name(&zone, name) != 0)
        rc = config_fail_or_cmdline(err, NULL, "%s: invalid zone name '%s' in '%s'", flag, name,
                                    arg);
    if (rc == 0)
        rc = resolver_zone_admit(cfg, &zone, NULL, err);
    /* strsep keeps empty items, so "a,,b" and a trailing comma are reported, not skipped. */
    char *rest = list;
    while (rc == 0 && rest != NULL) {
        const char *item = strsep(&rest, ",");
        rc = resolver_zone_add_server(&zone, item, NULL, flag, err);
    }
    free(name);
    free(list);
    if (rc != 0) {
        resolver_zone_free(&zone);
        return rc;
    }
    rc = resolver_zone_append(cfg, &zone);
    return rc == 0 ? 0 : config_nomem(err, NULL);
}

int resolver_config_add_forward_arg(struct resolver_config *cfg, const char *arg,
                                    struct config_error *err)
{
    return resolver_zone_arg(cfg, RESOLVER_ZONE_FORWARD, arg, err);
}

int resolver_config_add_stub_arg(struct resolver_config *cfg, const char *arg,
                                 struct config_error *err)
{
    return resolver_zone_arg(cfg, RESOLVER_ZONE_STUB, arg, err);
}

const struct resolver_zone_config *resolver_config_find_zone(const struct resolver_config *cfg,
                                                             const uint8_t *name, size_t len)
{
    const struct resolver_zone_config *best = NULL;
    for (size_t i = 0; i < cfg->zone_count; i++) {
        const struct resolver_zone_config *zone = &cfg->zones[i];
        if ((best == NULL || zone->wire_len > best->wire_len) &&
            wire_name_is_subdomain(name, len, zone->wire, zone->wire_len))
            best = zone;
    }
    return best;
}

/* ---- scalar keys ---- */

static const struct config_key_spec *resolver_key_spec_find(const char *section, const char *key)
{
    for (size_t i = 0; i < RESOLVER_COUNT(resolver_key_specs); i++)
        if (strcmp(resolver_key_specs[i].section, section) == 0 &&
            strcmp(resolver_key_specs[i].key, key) == 0)
            return &resolver_key_specs[i];
    return NULL;
}

/* Apply a flag's text through the spec of its config key, so both share ranges and messages. */
static int resolver_flag_set(struct resolver_config *cfg, const char *section, const char *key,
                             const char *flag, const char *text, struct config_error *err)
{
    const struct config_key_spec *spec = resolver_key_spec_find(section, key);
    struct config_node node = {.kind = CONFIG_SCALAR, .scalar = (char *)text};
    uint64_t value = 0;
    int rc = config_value_parse(&node, spec, &value, err);
    if (rc != 0) {
        snprintf(err->file, sizeof(err->file), "%s", CONFIG_CMDLINE);
        err->line = 0;
        return config_name_key(err, flag, rc);
    }
    config_value_store(cfg, spec, value);
    return 0;
}

int resolver_config_set_upstream_port(struct resolver_config *cfg, const char *text,
                                      struct config_error *err)
{
    return resolver_flag_set(cfg, "resolution", "upstream-port", "--upstream-port", text, err);
}

int resolver_config_set_workers(struct resolver_config *cfg, const char *text,
                                struct config_error *err)
{
    return resolver_flag_set(cfg, "server", "workers", "--workers", text, err);
}

int resolver_config_set_log_level(struct resolver_config *cfg, const char *text,
                                  struct config_error *err)
{
    if (log_level_parse(text, &cfg->log_level) != 0)
        return config_fail_or_cmdline(
            err, NULL, "--log-level: expected error, warn, info or debug, got '%s'", text);
    return 0;
}

/* Replace *field with a copy of text (flags: paths kept as given). */
static int resolver_set_string(char **field, const char *flag, const char *text,
                               struct config_error *err)
{
    if (text[0] == '\0')
        return config_fail_or_cmdline(err, NULL, "%s: must not be empty", flag);
    char *copy = strdup(text);
    if (copy == NULL)
        return config_nomem(err, NULL);
    free(*field);
    *field = copy;
    return 0;
}

int resolver_config_set_root_hints(struct resolver_config *cfg, const char *path,
                                   struct config_error *err)
{
    return resolver_set_string(&cfg->resolution.root_hints, "--root-hints", path, err);
}

int resolver_config_set_control(struct resolver_config *cfg, const char *path,
                                struct config_error *err)
{
    return resolver_set_string(&cfg->control_path, "--control", path, err);
}

int resolver_config_set_pid_file(struct resolver_config *cfg, const char *path,
                                 struct config_error *err)
{
    return resolver_set_string(&cfg->pid_file, "--pid-file", path, err);
}

int resolver_config_set_user(struct resolver_config *cfg, const char *spec,
                             struct config_error *err)
{
    return config_set_user(&cfg->user, spec, err);
}

/* ---- reading the YAML tree ---- */

/* Check a map section's keys (its specs plus extras) and read every spec key present.
 * *out is the section (NULL when absent) for the caller's own keys. */
static int resolver_read_section(struct resolver_config *cfg, const struct config_node *root,
                                 const char *name, const char *const *extras,
                                 const struct config_node **out, struct config_error *err)
{
    return config_read_section(root, name, resolver_key_specs, RESOLVER_COUNT(resolver_key_specs),
                               extras, cfg, out, err);
}

static int resolver_read_server(struct resolver_config *cfg, const struct config_node *root,
                                struct config_error *err)
{
    const struct config_node *server;
    int rc = resolver_read_section(cfg, root, "server", resolver_server_extra_keys, &server, err);
    if (rc != 0 || server == NULL)
        return rc;
    /* workers is read above, from its spec. */
    const struct config_server_fields fields = {.listen = resolver_listen_list(cfg),
                                                .listen_required = true,
                                                .workers = NULL,
                                                .log_level = &cfg->log_level,
                                                .log_format = &cfg->log_format,
                                                .log_target = &cfg->log_target,
                                                .log_queries = &cfg->log_queries,
                                                .control_path = &cfg->control_path,
                                                .pid_file = &cfg->pid_file,
                                                .metrics = &cfg->metrics,
                                                .has_metrics = &cfg->has_metrics,
                                                .metrics_default_port =
                                                    RESOLVER_DEFAULT_METRICS_PORT,
                                                .user = &cfg->user};
    rc = config_read_server_fields(server, cfg->source_file, &fields, err);
    if (rc == 0)
        rc = control_tcp_config_read(server, cfg->source_file, RESOLVER_DEFAULT_CONTROL_TCP_PORT,
                                     &cfg->control_tcp, err);
    return rc;
}

static int resolver_read_resolution(struct resolver_config *cfg, const struct config_node *root,
                                    struct config_error *err)
{
    const struct config_node *section;
    int rc = resolver_read_section(cfg, root, "resolution", resolver_resolution_extra_keys,
                                   &section, err);
    if (rc != 0 || section == NULL)
        return rc;
    return config_read_path(section, "root-hints", cfg->source_file, &cfg->resolution.root_hints,
                            err);
}

static int resolver_read_cache(struct resolver_config *cfg, const struct config_node *root,
                               struct config_error *err)
{
    const struct config_node *section;
    int rc = resolver_read_section(cfg, root, "cache", resolver_cache_extra_keys, &section, err);
    if (rc != 0 || section == NULL)
        return rc;
    return config_read_path(section, "snapshot-file", cfg->source_file, &cfg->cache.snapshot_file,
                            err);
}

/* One critical suffix: a domain name, not repeated. */
static int resolver_add_critical(struct resolver_stale_config *stale,
                                 const struct config_node *item, struct config_error *err)
{
    struct resolver_suffix suffix;
    if (item->kind != CONFIG_SCALAR || item->scalar[0] == '\0' ||
        wire_name_from_text(item->scalar, suffix.wire, &suffix.wire_len) != 0)
        return config_fail(err, item, "critical-suffixes: invalid domain name '%s'",
                           item->kind == CONFIG_SCALAR ? item->scalar : "(not a name)");
    wire_name_lower(suffix.wire, suffix.wire, suffix.wire_len);
    for (size_t i = 0; i < stale->critical_count; i++)
        if (stale->critical[i].wire_len == suffix.wire_len &&
            memcmp(stale->critical[i].wire, suffix.wire, suffix.wire_len) == 0)
            return config_fail(err, item, "critical-suffixes: '%s' is listed twice", item->scalar);
    if (stale->critical_count >= RESOLVER_MAX_CRITICAL_SUFFIXES) {
        config_fail(err, item, "critical-suffixes: too many (limit is %d)",
                    RESOLVER_MAX_CRITICAL_SUFFIXES);
        return BALLAST_ELIMIT;
    }
    struct resolver_suffix *grown =
        config_array_reserve(stale->critical, stale->critical_count, sizeof(*grown));
    if (grown == NULL)
        return config_nomem(err, item);
    stale->critical = grown;
    stale->critical[stale->critical_count++] = suffix;
    return 0;
}

static int resolver_read_stale(struct resolver_config *cfg, const struct config_node *root,
                               struct config_error *err)
{
    const struct config_node *section;
    int rc =
        resolver_read_section(cfg, root, "serve-stale", resolver_stale_extra_keys, &section, err);
    if (rc != 0 || section == NULL)
        return rc;
    const struct config_node *list;
    rc = config_section(section, "critical-suffixes", CONFIG_LIST, &list, err);
    for (size_t i = 0; rc == 0 && list != NULL && i < list->count; i++)
        rc = resolver_add_critical(&cfg->stale, list->values[i], err);
    return rc;
}

bool resolver_config_is_critical(const struct resolver_config *cfg, const uint8_t *name, size_t len)
{
    for (size_t i = 0; i < cfg->stale.critical_count; i++)
        if (wire_name_is_subdomain(name, len, cfg->stale.critical[i].wire,
                                   cfg->stale.critical[i].wire_len))
            return true;
    return false;
}

/* ---- access-control ---- */

/* Line of the earlier list entry whose prefix equals prefix (entries before index). */
static unsigned resolver_acl_first_line(const struct config_node *list, size_t index,
                                        const struct acl_prefix *prefix)
{
    for (size_t i = 0; i < index; i++) {
        const struct config_node *node = config_map_get(list->values[i], "prefix");
        struct acl_prefix other;
        char reason[8];
        if (node != NULL && node->kind == CONFIG_SCALAR &&
            acl_prefix_parse(node->scalar, &other, reason, sizeof(reason)) == 0 &&
            acl_prefix_equal(&other, prefix))
            return node->line;
    }
    return 0;
}

static int resolver_read_acl_entry(struct acl *acl, const struct config_node *list, size_t index,
                                   struct config_error *err)
{
    const struct config_node *entry = list->values[index];
    if (entry->kind != CONFIG_MAP)
        return config_fail_or_cmdline(
            err, entry, "access-control: each entry must be a map with prefix and action");
    int rc = config_check_keys(entry, resolver_acl_keys, err);
    const struct config_node *prefix_node, *action_node;
    const char *prefix_text = NULL, *action_text = NULL;
    if (rc == 0)
        rc = config_get_text(entry, "prefix", &prefix_node, &prefix_text, err);
    if (rc == 0)
        rc = config_get_text(entry, "action", &action_node, &action_text, err);
    if (rc != 0)
        return rc;
    if (prefix_text == NULL || action_text == NULL)
        return config_fail_or_cmdline(err, entry, "access-control: entry is missing '%s'",
                                      prefix_text == NULL ? "prefix" : "action");
    struct acl_prefix prefix;
    char reason[256];
    if (acl_prefix_parse(prefix_text, &prefix, reason, sizeof(reason)) != 0)
        return config_fail_or_cmdline(err, prefix_node, "access-control: %s", reason);
    enum acl_action action;
    if (acl_action_parse(action_text, &action) != 0)
        return config_fail_or_cmdline(
            err, action_node, "action: expected allow, refuse or deny, got '%s'", action_text);
    rc = acl_add(acl, &prefix, action);
    char text[ACL_PREFIX_TEXT_MAX];
    if (rc == BALLAST_EEXIST)
        return config_fail_or_cmdline(err, prefix_node,
                                      "access-control: %s is listed twice (first at line %u)",
                                      acl_prefix_format(&prefix, text, sizeof(text)),
                                      resolver_acl_first_line(list, index, &prefix));
    if (rc == BALLAST_ELIMIT) {
        config_fail_or_cmdline(err, prefix_node, "access-control: too many rules (limit is %d)",
                               ACL_MAX_RULES);
        return BALLAST_ELIMIT;
    }
    return rc == 0 ? 0 : config_nomem(err, prefix_node);
}

/* A present list replaces the defaults entirely; it is built aside and swapped in. */
static int resolver_read_acl(struct resolver_config *cfg, const struct config_node *root,
                             struct config_error *err)
{
    const struct config_node *list;
    int rc = config_section(root, "access-control", CONFIG_LIST, &list, err);
    if (rc != 0 || list == NULL)
        return rc;
    if (list->count == 0)
        return config_fail_or_cmdline(
            err, list,
            "access-control: an empty list would refuse every client; leave "
            "the key out to use the defaults");
    struct acl acl;
    acl_init(&acl);
    for (size_t i = 0; i < list->count && rc == 0; i++)
        rc = resolver_read_acl_entry(&acl, list, i, err);
    if (rc != 0) {
        acl_free(&acl);
        return rc;
    }
    acl_free(&cfg->acl);
    cfg->acl = acl;
    return 0;
}

/* ---- forward and stub lists ---- */

static int resolver_add_server_node(void *ctx, const struct config_node *item,
                                    struct config_error *err)
{
    return resolver_zone_add_server(ctx, item->scalar, item, "to", err);
}

static int resolver_read_zone(struct resolver_config *cfg, enum resolver_zone_kind kind,
                              const struct config_node *entry, struct config_error *err)
{
    const char *section = resolver_zone_kind_name(kind);
    if (entry->kind != CONFIG_MAP)
        return config_fail_or_cmdline(err, entry, "%s: each entry must be a map with zone and to",
                                      section);
    int rc = config_check_keys(entry, resolver_zone_keys, err);
    const struct config_node *name_node;
    const char *name_text = NULL;
    if (rc == 0)
        rc = config_get_text(entry, "zone", &name_node, &name_text, err);
    if (rc != 0)
        return rc;
    const struct config_node *to = config_map_get(entry, "to");
    if (name_text == NULL || to == NULL)
        return config_fail_or_cmdline(err, entry, "%s zone is missing '%s'", section,
                                      name_text == NULL ? "zone" : "to");
    struct resolver_zone_config zone = {.kind = kind, .line = name_node->line};
    rc = resolver_zone_set_name(&zone, name_text);
    if (rc == BALLAST_ENOMEM)
        return config_nomem(err, name_node);
    if (rc != 0)
        return config_fail_or_cmdline(err, name_node, "%s: invalid zone name '%s'", section,
                                      name_text);
    rc = resolver_zone_admit(cfg, &zone, name_node, err);
    if (rc == 0)
        rc = config_for_each_address(to, "to", true, resolver_add_server_node, &zone, err);
    if (rc != 0) {
        resolver_zone_free(&zone);
        return rc;
    }
    return resolver_zone_append(cfg, &zone) == 0 ? 0 : config_nomem(err, entry);
}

static int resolver_read_zones(struct resolver_config *cfg, const struct config_node *root,
                               enum resolver_zone_kind kind, struct config_error *err)
{
    const struct config_node *list;
    int rc = config_section(root, resolver_zone_kind_name(kind), CONFIG_LIST, &list, err);
    if (rc != 0 || list == NULL)
        return rc;
    for (size_t i = 0; i < list->count && rc == 0; i++)
        rc = resolver_read_zone(cfg, kind, list->values[i], err);
    return rc;
}

/* ---- whole file ---- */

/* The node of key in section, else of other_key (the one the file set); NULL without a file. */
static const struct config_node *resolver_blame(const struct config_node *root, const char *section,
                                                const char *key, const char *other_key)
{
    const struct config_node *map = config_map_get(root, section);
    const struct config_node *node = config_map_get(map, key);
    return node != NULL ? node : config_map_get(map, other_key);
}

/* Relations between keys; root is the file's tree to find the line to blame, NULL otherwise. */
static int resolver_check_relations(const struct resolver_config *cfg,
                                    const struct config_node *root, struct config_error *err)
{
    if (cfg->cache.min_ttl > cfg->cache.max_ttl) {
        const struct config_node *node = resolver_blame(root, "cache", "min-ttl", "max-ttl");
        return config_fail(err, node, "min-ttl (%us) must not exceed max-ttl (%us)",
                           (unsigned)cfg->cache.min_ttl, (unsigned)cfg->cache.max_ttl);
    }
    if (cfg->resolution.upstream_timeout_ms > cfg->resolution.query_timeout_ms) {
        const struct config_node *node =
            resolver_blame(root, "resolution", "upstream-timeout", "query-timeout");
        return config_fail(err, node,
                           "upstream-timeout (%ums) must not exceed query-timeout (%ums)",
                           (unsigned)cfg->resolution.upstream_timeout_ms,
                           (unsigned)cfg->resolution.query_timeout_ms);
    }
    if (cfg->stale.client_timeout_ms >= cfg->resolution.query_timeout_ms) {
        const struct config_node *node =
            resolver_blame(root, "serve-stale", "client-timeout", "query-timeout");
        return config_fail(
            err, node, "client-timeout (%ums) must be shorter than query-timeout (%ums)",
            (unsigned)cfg->stale.client_timeout_ms, (unsigned)cfg->resolution.query_timeout_ms);
    }
    return 0;
}

static int resolver_read_tree(void *ctx, const struct config_node *root, struct config_error *err)
{
    struct resolver_config *cfg = ctx;
    const struct config_node *unused;
    int rc = config_check_keys(root, resolver_top_keys, err);
    if (rc == 0)
        rc = resolver_read_server(cfg, root, err);
    if (rc == 0)
        rc = resolver_read_acl(cfg, root, err);
    if (rc == 0)
        rc = resolver_read_resolution(cfg, root, err);
    if (rc == 0)
        rc = resolver_read_cache(cfg, root, err);
    if (rc == 0)
        rc = resolver_read_stale(cfg, root, err);
    if (rc == 0)
        rc = resolver_read_section(cfg, root, "limits", NULL, &unused, err);
    if (rc == 0)
        rc = rrl_config_read(root, RRL_SECTION_QUERIES, &cfg->client_limits, err);
    if (rc == 0)
        rc = resolver_read_zones(cfg, root, RESOLVER_ZONE_FORWARD, err);
    if (rc == 0)
        rc = resolver_read_zones(cfg, root, RESOLVER_ZONE_STUB, err);
    if (rc == 0) {
        snprintf(err->file, sizeof(err->file), "%s", cfg->source_file);
        rc = resolver_check_relations(cfg, root, err);
    }
    return rc;
}

/* Listener presence is left to resolver_config_validate, so flags can add them after loading. */
int resolver_config_load(const char *path, struct resolver_config *cfg, struct config_error *err)
{
    if (resolver_config_init(cfg) != 0) {
        resolver_config_free(cfg);
        snprintf(err->file, sizeof(err->file), "%s", path);
        config_fail(err, NULL, "out of memory");
        return BALLAST_ENOMEM;
    }
    int rc = config_load_file(path, &cfg->source_file, resolver_read_tree, cfg, err);
    if (rc != 0)
        resolver_config_free(cfg);
    return rc;
}

/* ---- final checks ---- */

static const char *resolver_zone_name_at(const void *zones, size_t index)
{
    return ((const struct resolver_zone_config *)zones)[index].name;
}

int resolver_config_validate(const struct resolver_config *cfg, struct config_error *err)
{
    snprintf(err->file, sizeof(err->file), "%s",
             cfg->source_file ? cfg->source_file : CONFIG_CMDLINE);
    if (cfg->listen_count == 0)
        return config_fail(err, NULL, "no listen address: add server.listen or --listen");
    if (cfg->zone_count > RESOLVER_MAX_ZONES) {
        config_fail(err, NULL, "too many forward and stub zones: %zu (limit is %d)",
                    cfg->zone_count, RESOLVER_MAX_ZONES);
        return BALLAST_ELIMIT;
    }
    for (size_t i = 0; i < cfg->zone_count; i++) {
        const struct resolver_zone_config *zone = &cfg->zones[i];
        if (zone->to_count == 0)
            return config_fail(err, NULL, "%s zone '%s' has no servers",
                               resolver_zone_kind_name(zone->kind), zone->name);
    }
    size_t second = 0;
    int rc =
        config_find_duplicate(cfg->zones, cfg->zone_count, resolver_zone_name_at, &second, NULL);
    if (rc < 0) {
        config_fail(err, NULL, "out of memory");
        return BALLAST_ENOMEM;
    }
    if (rc > 0)
        return config_fail(err, NULL, "duplicate zone '%s'", cfg->zones[second].name);
    if (cfg->resolution.root_hints == NULL || cfg->resolution.root_hints[0] == '\0')
        return config_fail(err, NULL, "no root hints file: set resolution.root-hints");
    return resolver_check_relations(cfg, NULL, err);
}
