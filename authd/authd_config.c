/* ballast-authd configuration: reads the YAML schema (server, limits, rrl, zones, health) from a
 * config_node tree, and the --listen/--zone flags, into one struct authd_config; every error names
 * the file and line (or "command line") and the limit crossed. */
#include "authd_config.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <ldns/ldns.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "errors.h"
#include "wire.h"

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

static const char *const authd_top_keys[] = {"server", "limits", "rrl", "zones", "health", NULL};
static const char *const authd_server_keys[] = {
    "listen",      "workers", "log-level",   "log-format",       "log-target",
    "log-queries", "control", "control-tcp", "control-key-file", "pid-file",
    "metrics",     "user",    NULL};
static const char *const authd_zone_keys[] = {"name", "file", NULL};

void authd_config_init(struct authd_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->workers = 0;
    cfg->log_level = LOG_LEVEL_INFO;
    limits_init_defaults(&cfg->limits);
    rrl_config_defaults(&cfg->rrl, RRL_SECTION_RESPONSES);
}

void authd_config_free(struct authd_config *cfg)
{
    free(cfg->source_file);
    for (size_t i = 0; i < cfg->listen_count; i++)
        free(cfg->listen_text[i]);
    free(cfg->control_path);
    control_tcp_config_free(&cfg->control_tcp);
    free(cfg->pid_file);
    free(cfg->user);
    for (size_t i = 0; i < cfg->zone_count; i++) {
        free(cfg->zones[i].name);
        free(cfg->zones[i].file);
    }
    free(cfg->zones);
    healthd_config_free(&cfg->health);
    free(cfg->health_pool_lines);
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
                                                .log_format = &cfg->log_format,
                                                .log_target = &cfg->log_target,
                                                .log_queries = &cfg->log_queries,
                                                .control_path = &cfg->control_path,
                                                .pid_file = &cfg->pid_file,
                                                .metrics = &cfg->metrics,
                                                .has_metrics = &cfg->has_metrics,
                                                .metrics_default_port = AUTHD_DEFAULT_METRICS_PORT,
                                                .user = &cfg->user};
    rc = config_read_server_fields(server, cfg->source_file, &fields, err);
    if (rc == 0)
        rc = control_tcp_config_read(server, cfg->source_file, AUTHD_DEFAULT_CONTROL_TCP_PORT,
                                     &cfg->control_tcp, err);
    return rc;
}

int authd_config_set_user(struct authd_config *cfg, const char *spec, struct config_error *err)
{
    return config_set_user(&cfg->user, spec, err);
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

/* ---- health: damping, pools, checks, feeds (docs/health.md) ---- */

#define AUTHD_POOL_DEFAULT_TTL_S 30
#define AUTHD_POOL_DEFAULT_SHARE 0.25
#define AUTHD_POOL_DEFAULT_WITHDRAW_MS 10000
#define AUTHD_CHECK_DEFAULT_INTERVAL_MS 10000
#define AUTHD_CHECK_DEFAULT_TIMEOUT_MS 2000
#define AUTHD_FEED_DEFAULT_INTERVAL_MS 10000
#define AUTHD_FEED_DEFAULT_VALID_MS 60000
#define AUTHD_CHECK_KEY_MAX 32 /* entries of a merged check map (each side has at most 14) */

static const char *const authd_health_keys[] = {"damping", "pools", "feeds", "max-pools", NULL};
/* health.max-pools: pools are generated by other systems and may grow; 1000 by default. */
#define AUTHD_MAX_POOLS_CEILING 1000000u
static const char *const authd_pool_keys[] = {"name",
                                              "type",
                                              "ttl",
                                              "min-healthy",
                                              "max-records",
                                              "when-all-down",
                                              "max-withdraw-share",
                                              "withdraw-interval",
                                              "check",
                                              "members",
                                              NULL};
static const char *const authd_member_keys[] = {"address",       "target", "priority", "weight",
                                                "check-address", "check",  NULL};
static const char *const authd_check_keys[] = {
    "type",       "port",     "url",      "expect-status", "body-match",
    "tls-verify", "dns-name", "dns-type", "dns-rcode",     "interval",
    "timeout",    "rise",     "fall",     "startup",       NULL};
static const char *const authd_feed_keys[] = {
    "url",      "public-key",  "signature-url", "interval", "valid-for",
    "max-size", "max-members", "max-age",       "max-skew", NULL};

/* Ranges are documented in docs/health.md; keep the two in step. */
static const struct config_key_spec authd_damping_specs[] = {
    CONFIG_KEY("damping", "window", DURATION, 1000, 86400000, struct health_params, flap_window_ms),
    /* 0 turns damping off; the member keeps at most HEALTH_FLAP_HISTORY transition times. */
    CONFIG_KEY("damping", "threshold", COUNT, 0, HEALTH_FLAP_HISTORY, struct health_params,
               flap_threshold),
    CONFIG_KEY("damping", "holddown", DURATION, 1000, 86400000, struct health_params,
               flap_holddown_ms),
};

#define AUTHD_POOL_KEY(key, type, min, max, field)                                                 \
    CONFIG_KEY("pool", key, type, min, max, struct healthd_pool_config, field)
static const struct config_key_spec authd_pool_specs[] = {
    /* RFC 2181 §8: a TTL is a 31-bit count of seconds; a pool's should be short. */
    AUTHD_POOL_KEY("ttl", TTL, 0, 86400000, def.ttl),
    AUTHD_POOL_KEY("min-healthy", COUNT, 1, POOL_MAX_MEMBERS, def.min_healthy),
    AUTHD_POOL_KEY("max-records", COUNT, 0, POOL_MAX_MEMBERS, def.max_records),
    AUTHD_POOL_KEY("withdraw-interval", DURATION, 1000, 3600000, withdraw_interval_ms),
};

static const struct config_key_spec authd_member_specs[] = {
    CONFIG_KEY("member", "priority", COUNT, 0, 65535, struct pool_member_def, priority),
    CONFIG_KEY("member", "weight", COUNT, 1, 65535, struct pool_member_def, weight),
};

/* The scalar values of a check, before they become a probe_spec and health_params. */
struct authd_check_values {
    uint16_t port; /* 0: the kind's default (or the URL's port) */
    uint16_t expect_status;
    bool tls_verify;
    uint32_t interval_ms;
    uint32_t timeout_ms;
    uint32_t rise;
    uint32_t fall;
};

#define AUTHD_CHECK_KEY(key, type, min, max, field)                                                \
    CONFIG_KEY("check", key, type, min, max, struct authd_check_values, field)
static const struct config_key_spec authd_check_specs[] = {
    AUTHD_CHECK_KEY("port", COUNT, 1, 65535, port),
    AUTHD_CHECK_KEY("expect-status", COUNT, 100, 599, expect_status),
    AUTHD_CHECK_KEY("tls-verify", BOOL, 0, 1, tls_verify),
    AUTHD_CHECK_KEY("interval", DURATION, 100, 3600000, interval_ms),
    AUTHD_CHECK_KEY("timeout", DURATION, 10, 60000, timeout_ms),
    AUTHD_CHECK_KEY("rise", COUNT, 1, 100, rise),
    AUTHD_CHECK_KEY("fall", COUNT, 1, 100, fall),
};

#define AUTHD_FEED_KEY(key, type, min, max, field)                                                 \
    CONFIG_KEY("feed", key, type, min, max, struct healthd_feed_config, field)
static const struct config_key_spec authd_feed_specs[] = {
    AUTHD_FEED_KEY("interval", DURATION, 100, 86400000, interval_ms),
    AUTHD_FEED_KEY("valid-for", DURATION, 1000, 86400000, valid_ms),
    AUTHD_FEED_KEY("max-size", SIZE, 1, 1ull << 30, limits.max_bytes),
    AUTHD_FEED_KEY("max-members", COUNT, 1, 100000000, limits.max_members),
    AUTHD_FEED_KEY("max-age", TTL, 1000, 7 * 86400000ull, limits.max_age_s),
    AUTHD_FEED_KEY("max-skew", TTL, 0, 86400000, limits.max_skew_s),
};

#define AUTHD_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Read each key of specs present in map into base; errors are prefixed by the key. */
static int authd_read_specs(const struct config_node *map, const struct config_key_spec *specs,
                            size_t count, void *base, struct config_error *err)
{
    for (size_t i = 0; i < count; i++) {
        const struct config_node *node = config_map_get(map, specs[i].key);
        if (node == NULL)
            continue;
        uint64_t value = 0;
        int rc = config_value_parse(node, &specs[i], &value, err);
        if (rc != 0)
            return config_name_key(err, specs[i].key, rc);
        config_value_store(base, &specs[i], value);
    }
    return 0;
}

/* The key's value node, or the map itself when the key is absent: where an error about the key
 * (or its absence) belongs. */
static const struct config_node *authd_key_or_map(const struct config_node *map, const char *key)
{
    const struct config_node *node = config_map_get(map, key);
    return node != NULL ? node : map;
}

/* --- checks --- */

static const struct {
    const char *name;
    enum probe_kind kind;
    uint16_t default_port; /* 0: the check must give a port */
} authd_check_kinds[] = {
    {"tcp", PROBE_TCP, 0},
    {"http", PROBE_HTTP, 80},
    {"https", PROBE_HTTPS, 443},
    {"dns", PROBE_DNS, 53},
};

#define AUTHD_KIND_BIT(kind) (1u << (kind))
#define AUTHD_KINDS_HTTP (AUTHD_KIND_BIT(PROBE_HTTP) | AUTHD_KIND_BIT(PROBE_HTTPS))

/* Keys that only some kinds of check use; anything else applies to every kind. */
static const struct {
    const char *key;
    unsigned kinds;
    const char *which;
} authd_check_kind_keys[] = {
    {"url", AUTHD_KINDS_HTTP, "http and https"},
    {"expect-status", AUTHD_KINDS_HTTP, "http and https"},
    {"body-match", AUTHD_KINDS_HTTP, "http and https"},
    {"tls-verify", AUTHD_KIND_BIT(PROBE_HTTPS), "https"},
    {"dns-name", AUTHD_KIND_BIT(PROBE_DNS), "dns"},
    {"dns-type", AUTHD_KIND_BIT(PROBE_DNS), "dns"},
    {"dns-rcode", AUTHD_KIND_BIT(PROBE_DNS), "dns"},
};

/* What a check is built for: the pool, and the member (NULL when only the pool's own check is
 * being validated, before any member needs it). */
struct authd_check_target {
    const struct pool_def *def;
    const struct pool_member_def *member;
    const char *address; /* where the probe connects: check-address or the member's address */
};

static int authd_check_kind(const struct config_node *check, size_t *kind_index,
                            struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = config_get_text(check, "type", &node, &text, err);
    if (rc != 0)
        return rc;
    if (text == NULL)
        return config_fail(err, check, "check: missing 'type' (expected tcp, http, https or dns)");
    for (size_t i = 0; i < AUTHD_COUNT(authd_check_kinds); i++) {
        if (strcasecmp(text, authd_check_kinds[i].name) == 0) {
            *kind_index = i;
            return 0;
        }
    }
    return config_fail(err, node, "type: expected tcp, http, https or dns, got '%s'", text);
}

static int authd_check_kind_keys_allowed(const struct config_node *check, size_t kind_index,
                                         struct config_error *err)
{
    enum probe_kind kind = authd_check_kinds[kind_index].kind;
    for (size_t i = 0; i < AUTHD_COUNT(authd_check_kind_keys); i++) {
        const struct config_node *node = config_map_get(check, authd_check_kind_keys[i].key);
        if (node != NULL && (authd_check_kind_keys[i].kinds & AUTHD_KIND_BIT(kind)) == 0)
            return config_fail(err, node, "%s: only for %s checks, this one is %s",
                               authd_check_kind_keys[i].key, authd_check_kind_keys[i].which,
                               authd_check_kinds[kind_index].name);
    }
    return 0;
}

static int authd_check_startup(const struct config_node *check, enum health_state *out,
                               struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = config_get_text(check, "startup", &node, &text, err);
    if (rc != 0 || text == NULL)
        return rc;
    if (strcmp(text, "up") == 0)
        *out = HEALTH_UP;
    else if (strcmp(text, "down") == 0)
        *out = HEALTH_DOWN;
    else
        return config_fail(err, node, "startup: expected up or down, got '%s'", text);
    return 0;
}

/* DNS checks: question name (default the pool's owner), type (default A), expected RCODE
 * (default NOERROR, RFC 1035 §4.1.1). */
static int authd_check_dns(const struct config_node *check, const struct pool_def *def,
                           struct probe_spec *spec, struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = config_get_text(check, "dns-name", &node, &text, err);
    if (rc != 0)
        return rc;
    if (text == NULL) {
        memcpy(spec->dns_qname, def->owner, def->owner_len);
        spec->dns_qname_len = def->owner_len;
    } else if (wire_name_from_text(text, spec->dns_qname, &spec->dns_qname_len) != 0) {
        return config_fail(err, node, "dns-name: invalid domain name '%s'", text);
    }
    spec->dns_qtype = WIRE_TYPE_A;
    rc = config_get_text(check, "dns-type", &node, &text, err);
    if (rc != 0)
        return rc;
    if (text != NULL) {
        spec->dns_qtype = (uint16_t)ldns_get_rr_type_by_name(text);
        if (spec->dns_qtype == 0)
            return config_fail(err, node, "dns-type: unknown RR type '%s'", text);
    }
    spec->dns_expect_rcode = 0;
    rc = config_get_text(check, "dns-rcode", &node, &text, err);
    if (rc != 0)
        return rc;
    if (text != NULL) {
        const ldns_lookup_table *rcode = ldns_lookup_by_name(ldns_rcodes, text);
        if (rcode == NULL)
            return config_fail(err, node,
                               "dns-rcode: expected an RCODE name such as NOERROR, NXDOMAIN or "
                               "REFUSED, got '%s'",
                               text);
        spec->dns_expect_rcode = (uint8_t)rcode->id;
    }
    return 0;
}

/* The member as {member} in a URL: an IPv6 address in brackets (RFC 3986 §3.2.2), a name
 * without its final dot. */
static void authd_url_member(const struct authd_check_target *target, char *buf, size_t len)
{
    const char *text = target->member->text;
    if (target->def->type == WIRE_TYPE_AAAA) {
        snprintf(buf, len, "[%s]", text);
        return;
    }
    size_t n = strlen(text);
    if (target->def->type == WIRE_TYPE_CNAME && n > 1 && text[n - 1] == '.')
        n--;
    snprintf(buf, len, "%.*s", (int)n, text);
}

/* template with every "{member}" replaced; NULL when out of memory. */
static char *authd_url_expand(const char *template, const char *member)
{
    static const char placeholder[] = "{member}";
    size_t place_len = sizeof(placeholder) - 1, member_len = strlen(member), count = 0;
    for (const char *p = strstr(template, placeholder); p; p = strstr(p + place_len, placeholder))
        count++;
    size_t len = strlen(template) + count * member_len + 1;
    char *out = malloc(len);
    if (out == NULL)
        return NULL;
    char *w = out;
    for (const char *p = template;;) {
        const char *next = strstr(p, placeholder);
        size_t chunk = next ? (size_t)(next - p) : strlen(p);
        memcpy(w, p, chunk);
        w += chunk;
        if (next == NULL)
            break;
        memcpy(w, member, member_len);
        w += member_len;
        p = next + place_len;
    }
    *w = '\0';
    return out;
}

/* Check url with libcurl's URL parser: an http or https URL with a host. Sets *scheme_https and
 * *port (0 when the URL names none). Returns 0, or BALLAST_EINVAL with why filled. */
static int authd_url_parse(const char *url, bool *scheme_https, uint16_t *port, char *why,
                           size_t why_len)
{
    CURLU *handle = curl_url();
    if (handle == NULL) {
        snprintf(why, why_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    char *scheme = NULL, *host = NULL, *port_text = NULL;
    int rc = BALLAST_EINVAL;
    CURLUcode uc = curl_url_set(handle, CURLUPART_URL, url, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_get(handle, CURLUPART_SCHEME, &scheme, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_get(handle, CURLUPART_HOST, &host, 0);
    if (uc != CURLUE_OK) {
        snprintf(why, why_len, "%s", curl_url_strerror(uc));
    } else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        snprintf(why, why_len, "scheme %s is not http or https", scheme);
    } else {
        *scheme_https = strcmp(scheme, "https") == 0;
        *port = 0;
        if (curl_url_get(handle, CURLUPART_PORT, &port_text, 0) == CURLUE_OK)
            *port = (uint16_t)strtoul(port_text, NULL, 10);
        rc = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port_text);
    curl_url_cleanup(handle);
    return rc;
}

/* HTTP(S): the URL with {member} expanded (default "<type>://{member}/"), whose scheme must be
 * the check's; its port is the probe's unless the check gives one. */
static int authd_check_url(const struct config_node *check, const struct authd_check_target *target,
                           enum probe_kind kind, struct probe_spec *spec, uint16_t *url_port,
                           struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = config_get_text(check, "url", &node, &text, err);
    if (rc != 0)
        return rc;
    bool https = kind == PROBE_HTTPS;
    const char *template = text != NULL ? text : https ? "https://{member}/" : "http://{member}/";
    char member[sizeof(target->member->text) + 2]; /* room for the brackets */
    authd_url_member(target, member, sizeof(member));
    spec->url = authd_url_expand(template, member);
    if (spec->url == NULL)
        return config_nomem(err, check);
    char why[128];
    bool url_https = false;
    rc = authd_url_parse(spec->url, &url_https, url_port, why, sizeof(why));
    if (rc == BALLAST_ENOMEM)
        return config_nomem(err, check);
    if (rc != 0)
        return config_fail(err, authd_key_or_map(check, "url"), "url: invalid URL '%s': %s",
                           spec->url, why);
    if (url_https != https)
        return config_fail(err, authd_key_or_map(check, "url"),
                           "url: '%s' does not match the check type %s", spec->url,
                           https ? "https" : "http");
    return 0;
}

/* Free the strings a built check owns. */
static void authd_check_clear(struct healthd_check *check)
{
    free(check->spec.url);
    free(check->spec.body_match);
    check->spec.url = check->spec.body_match = NULL;
}

/* Where the probe goes: the target address and the port (the check's, else the URL's, else the
 * kind's default). */
static int authd_check_address(const struct config_node *check,
                               const struct authd_check_target *target, size_t kind_index,
                               const struct authd_check_values *values, uint16_t url_port,
                               struct probe_spec *spec, struct config_error *err)
{
    uint16_t port = values->port;
    if (port == 0)
        port = url_port != 0 ? url_port : authd_check_kinds[kind_index].default_port;
    if (addr_parse(target->address, port, &spec->target) != 0)
        return config_fail(err, check, "check: invalid probe address '%s'", target->address);
    return 0;
}

/* Build one member's check (or, with target->member NULL, validate the pool's check alone) from
 * check, a map of check keys, over the health-wide damping settings. */
static int authd_check_build(const struct config_node *check, const struct health_params *damping,
                             const struct authd_check_target *target, struct healthd_check *out,
                             struct config_error *err)
{
    size_t kind_index = 0;
    int rc = authd_check_kind(check, &kind_index, err);
    if (rc == 0)
        rc = authd_check_kind_keys_allowed(check, kind_index, err);
    struct authd_check_values values = {.tls_verify = true,
                                        .interval_ms = AUTHD_CHECK_DEFAULT_INTERVAL_MS,
                                        .timeout_ms = AUTHD_CHECK_DEFAULT_TIMEOUT_MS,
                                        .rise = damping->rise,
                                        .fall = damping->fall};
    if (rc == 0)
        rc = authd_read_specs(check, authd_check_specs, AUTHD_COUNT(authd_check_specs), &values,
                              err);
    if (rc != 0)
        return rc;
    if (values.timeout_ms >= values.interval_ms) {
        /* Of the two keys, the later one in the file: in a merged check, the member's override
         * that broke the pair. */
        const struct config_node *timeout = config_map_get(check, "timeout");
        const struct config_node *interval = authd_key_or_map(check, "interval");
        const struct config_node *at =
            timeout != NULL && timeout->line >= interval->line ? timeout : interval;
        return config_fail(err, at, "timeout (%ums) must be shorter than interval (%ums)",
                           (unsigned)values.timeout_ms, (unsigned)values.interval_ms);
    }
    enum probe_kind kind = authd_check_kinds[kind_index].kind;
    if (kind == PROBE_TCP && values.port == 0)
        return config_fail(err, check, "check: a tcp check needs a port");
    out->enabled = true;
    out->params = *damping;
    out->params.rise = values.rise;
    out->params.fall = values.fall;
    rc = authd_check_startup(check, &out->params.startup, err);
    struct probe_spec *spec = &out->spec;
    spec->kind = kind;
    spec->expect_status = values.expect_status;
    spec->tls_verify = values.tls_verify;
    spec->interval_ms = values.interval_ms;
    spec->timeout_ms = values.timeout_ms;
    if (rc == 0 && kind == PROBE_DNS)
        rc = authd_check_dns(check, target->def, spec, err);
    const struct config_node *body_node;
    const char *body;
    if (rc == 0)
        rc = config_get_text(check, "body-match", &body_node, &body, err);
    if (rc == 0 && body != NULL && (spec->body_match = strdup(body)) == NULL)
        rc = config_nomem(err, body_node);
    if (rc != 0 || target->member == NULL)
        return rc;
    uint16_t url_port = 0;
    if (kind == PROBE_HTTP || kind == PROBE_HTTPS)
        rc = authd_check_url(check, target, kind, spec, &url_port, err);
    if (rc == 0)
        rc = authd_check_address(check, target, kind_index, &values, url_port, spec, err);
    return rc;
}

/* A check map in the tree, or one made of the pool's check with the member's keys over it (the
 * values stay in the tree, so errors keep their lines). */
struct authd_check_map {
    struct config_node node;
    char *keys[AUTHD_CHECK_KEY_MAX];
    unsigned key_lines[AUTHD_CHECK_KEY_MAX];
    struct config_node *values[AUTHD_CHECK_KEY_MAX];
};

static void authd_check_map_put(struct authd_check_map *map, const struct config_node *from)
{
    for (size_t i = 0; i < from->count; i++) {
        size_t slot = 0;
        while (slot < map->node.count && strcmp(map->keys[slot], from->keys[i]) != 0)
            slot++;
        if (slot == AUTHD_CHECK_KEY_MAX)
            continue; /* cannot happen: both maps were checked against authd_check_keys */
        map->keys[slot] = from->keys[i];
        map->key_lines[slot] = from->key_lines[i];
        map->values[slot] = from->values[i];
        if (slot == map->node.count)
            map->node.count++;
    }
}

/* A member's check map: its own check over the pool's, key by key, unless it names another type
 * (then the pool's check does not apply to it). NULL when neither has one. */
static const struct config_node *authd_check_merge(const struct config_node *pool_check,
                                                   const struct config_node *member_check,
                                                   struct authd_check_map *merged)
{
    if (member_check == NULL)
        return pool_check;
    if (pool_check == NULL)
        return member_check;
    const struct config_node *member_type = config_map_get(member_check, "type");
    const struct config_node *pool_type = config_map_get(pool_check, "type");
    if (member_type != NULL && (pool_type == NULL || member_type->kind != CONFIG_SCALAR ||
                                pool_type->kind != CONFIG_SCALAR ||
                                strcasecmp(member_type->scalar, pool_type->scalar) != 0))
        return member_check;
    memset(merged, 0, sizeof(*merged));
    merged->node = *member_check;
    merged->node.count = 0;
    merged->node.keys = merged->keys;
    merged->node.key_lines = merged->key_lines;
    merged->node.values = merged->values;
    authd_check_map_put(merged, pool_check);
    authd_check_map_put(merged, member_check);
    return &merged->node;
}

/* The "check" map of map (pool or member), its keys checked; NULL when absent. */
static int authd_check_section(const struct config_node *map, const struct config_node **out,
                               struct config_error *err)
{
    int rc = config_section(map, "check", CONFIG_MAP, out, err);
    if (rc == 0 && *out != NULL)
        rc = config_check_keys(*out, authd_check_keys, err);
    return rc;
}

/* --- pools and members --- */

static const struct {
    const char *name;
    uint16_t type;
} authd_pool_types[] = {
    {"A", WIRE_TYPE_A},
    {"AAAA", WIRE_TYPE_AAAA},
    {"CNAME", WIRE_TYPE_CNAME},
};

static const char *authd_pool_type_name(uint16_t type)
{
    for (size_t i = 0; i < AUTHD_COUNT(authd_pool_types); i++)
        if (authd_pool_types[i].type == type)
            return authd_pool_types[i].name;
    return "?";
}

/* Everything a pool's members are read against. */
struct authd_pool_context {
    const struct health_params *damping;
    const struct config_node *check; /* the pool's check, NULL for none */
};

/* The member's address (A/AAAA) or target (CNAME): exactly one of the two keys, by pool type. */
static int authd_member_value(const struct config_node *item, uint16_t type,
                              const struct config_node **node, const char **text,
                              struct config_error *err)
{
    bool cname = type == WIRE_TYPE_CNAME;
    const char *key = cname ? "target" : "address";
    const char *other = cname ? "address" : "target";
    const struct config_node *wrong = config_map_get(item, other);
    if (wrong != NULL)
        return config_fail(err, wrong, "%s: a %s pool's members give '%s'", other,
                           authd_pool_type_name(type), key);
    int rc = config_get_text(item, key, node, text, err);
    if (rc == 0 && *text == NULL)
        rc = config_fail(err, item, "member is missing '%s'", key);
    return rc;
}

static int authd_member_parse_value(uint16_t type, const struct config_node *node, const char *text,
                                    struct pool_member_def *out, struct config_error *err)
{
    if (pool_member_parse(type, text, out) == 0)
        return 0;
    if (type == WIRE_TYPE_CNAME)
        return config_fail(err, node, "target: invalid domain name '%s'", text);
    return config_fail(err, node, "address: '%s' is not an %s address (pool type %s)", text,
                       type == WIRE_TYPE_A ? "IPv4" : "IPv6", authd_pool_type_name(type));
}

/* Where the member's probes go: check-address, else the member's own address (A/AAAA). */
static int authd_member_probe_address(const struct config_node *item, const struct pool_def *def,
                                      const struct pool_member_def *member, bool checked,
                                      const char **out, struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = config_get_text(item, "check-address", &node, &text, err);
    if (rc != 0)
        return rc;
    *out = text != NULL ? text : member->text;
    if (text != NULL) {
        struct addr parsed;
        if (!checked)
            return config_fail(err, node, "check-address: the member has no check");
        if (strchr(text, '@') != NULL || text[0] == '[' || addr_parse(text, 1, &parsed) != 0)
            return config_fail(err, node,
                               "check-address: expected an IPv4 or IPv6 address, got '%s' (the "
                               "port is the check's)",
                               text);
    } else if (checked && def->type == WIRE_TYPE_CNAME) {
        return config_fail(err, item,
                           "member '%s' of a CNAME pool has a check but no check-address",
                           member->text);
    }
    return 0;
}

static int authd_read_member(const struct config_node *item, const struct authd_pool_context *ctx,
                             struct healthd_pool_config *pool, size_t index,
                             struct config_error *err)
{
    if (item->kind != CONFIG_MAP)
        return config_fail(err, item, "members: each entry must be a map");
    int rc = config_check_keys(item, authd_member_keys, err);
    const struct config_node *node = NULL;
    const char *text = NULL;
    if (rc == 0)
        rc = authd_member_value(item, pool->def.type, &node, &text, err);
    struct pool_member_def *member = &pool->def.members[index];
    if (rc == 0)
        rc = authd_member_parse_value(pool->def.type, node, text, member, err);
    if (rc == 0)
        rc = authd_read_specs(item, authd_member_specs, AUTHD_COUNT(authd_member_specs), member,
                              err);
    const struct config_node *own_check = NULL;
    if (rc == 0)
        rc = authd_check_section(item, &own_check, err);
    if (rc != 0)
        return rc;
    struct authd_check_map merged;
    const struct config_node *check = authd_check_merge(ctx->check, own_check, &merged);
    struct authd_check_target target = {.def = &pool->def, .member = member};
    rc = authd_member_probe_address(item, &pool->def, member, check != NULL, &target.address, err);
    if (rc != 0)
        return rc;
    struct healthd_check *out = &pool->checks[index];
    if (check != NULL)
        return authd_check_build(check, ctx->damping, &target, out, err);
    out->enabled = false; /* no probe: UP unless a feed says otherwise */
    out->params = *ctx->damping;
    return 0;
}

/* The canonical text of each member (address as inet_ntop prints it, name in lowercase), for
 * finding duplicates written differently ("2001:DB8::1" and "2001:db8::1"). */
static void authd_member_canonical(const struct pool_def *def, size_t index, char *buf, size_t len)
{
    const struct pool_member_def *member = &def->members[index];
    if (def->type == WIRE_TYPE_CNAME) {
        if (wire_name_to_text(member->rdata, buf, len) != 0)
            snprintf(buf, len, "%s", member->text);
        return;
    }
    int family = def->type == WIRE_TYPE_A ? AF_INET : AF_INET6;
    if (inet_ntop(family, member->rdata, buf, (socklen_t)len) == NULL)
        snprintf(buf, len, "%s", member->text);
}

#define AUTHD_CANONICAL_MAX 256

static const char *authd_canonical_at(const void *items, size_t index)
{
    return (const char *)items + index * AUTHD_CANONICAL_MAX;
}

static const struct config_node *authd_member_value_node(const struct config_node *members,
                                                         size_t index)
{
    const struct config_node *item = members->values[index];
    const struct config_node *node = config_map_get(item, "address");
    if (node == NULL)
        node = config_map_get(item, "target");
    return node != NULL ? node : item;
}

static int authd_members_unique(const struct healthd_pool_config *pool,
                                const struct config_node *members, struct config_error *err)
{
    char *canonical = malloc(pool->def.count * AUTHD_CANONICAL_MAX);
    if (canonical == NULL)
        return config_nomem(err, members);
    for (size_t i = 0; i < pool->def.count; i++)
        authd_member_canonical(&pool->def, i, canonical + i * AUTHD_CANONICAL_MAX,
                               AUTHD_CANONICAL_MAX);
    size_t second = 0, first = 0;
    int rc = config_find_duplicate(canonical, pool->def.count, authd_canonical_at, &second, &first);
    free(canonical);
    if (rc < 0)
        return config_nomem(err, members);
    if (rc == 0)
        return 0;
    return config_fail(err, authd_member_value_node(members, second),
                       "duplicate member '%s' in pool '%s' (first at line %u)",
                       pool->def.members[second].text, pool->def.name,
                       authd_member_value_node(members, first)->line);
}

static int authd_read_members(const struct config_node *map, const struct authd_pool_context *ctx,
                              struct healthd_pool_config *pool, struct config_error *err)
{
    const struct config_node *members;
    int rc = config_section(map, "members", CONFIG_LIST, &members, err);
    if (rc != 0)
        return rc;
    if (members == NULL || members->count == 0)
        return config_fail(err, authd_key_or_map(map, "members"),
                           "pool '%s' has no members (at least one is needed)", pool->def.name);
    if (members->count > POOL_MAX_MEMBERS) {
        config_fail(err, members->values[POOL_MAX_MEMBERS],
                    "too many members in pool '%s' (limit is %d members per pool)", pool->def.name,
                    POOL_MAX_MEMBERS);
        return BALLAST_ELIMIT;
    }
    pool->def.members = calloc(members->count, sizeof(*pool->def.members));
    pool->checks = calloc(members->count, sizeof(*pool->checks));
    if (pool->def.members == NULL || pool->checks == NULL)
        return config_nomem(err, members);
    pool->def.count = members->count; /* zeroed entries are safe to free */
    for (size_t i = 0; i < members->count && rc == 0; i++)
        rc = authd_read_member(members->values[i], ctx, pool, i, err);
    if (rc == 0)
        rc = authd_members_unique(pool, members, err);
    if (rc == 0 && pool->def.min_healthy > pool->def.count)
        rc = config_fail(err, authd_key_or_map(map, "min-healthy"),
                         "min-healthy: %u is more than the pool's %zu members",
                         (unsigned)pool->def.min_healthy, pool->def.count);
    return rc;
}

/* owner/TYPE: the owner normalised (lowercase, no final dot), in text for ops and feeds and in
 * wire form for answers. */
static int authd_pool_identity(const struct config_node *map, struct healthd_pool_config *pool,
                               struct config_error *err)
{
    const struct config_node *name_node, *type_node;
    const char *name_text, *type_text;
    int rc = config_get_text(map, "name", &name_node, &name_text, err);
    if (rc == 0)
        rc = config_get_text(map, "type", &type_node, &type_text, err);
    if (rc != 0)
        return rc;
    if (name_text == NULL || type_text == NULL)
        return config_fail(err, map, "pool is missing '%s'", name_text == NULL ? "name" : "type");
    for (size_t i = 0; i < AUTHD_COUNT(authd_pool_types) && pool->def.type == 0; i++)
        if (strcasecmp(type_text, authd_pool_types[i].name) == 0)
            pool->def.type = authd_pool_types[i].type;
    if (pool->def.type == 0)
        return config_fail(err, type_node, "type: expected A, AAAA or CNAME, got '%s'", type_text);
    char *owner = authd_zone_name_normalise(name_text);
    uint8_t wire[WIRE_NAME_MAX];
    size_t wire_len = 0;
    if (owner == NULL || wire_name_from_text(owner, wire, &wire_len) != 0) {
        free(owner);
        return config_fail(err, name_node, "invalid pool name '%s'", name_text);
    }
    wire_name_lower(pool->def.owner, wire, wire_len);
    pool->def.owner_len = wire_len;
    int n = asprintf(&pool->def.name, "%s/%s", owner, authd_pool_type_name(pool->def.type));
    free(owner);
    if (n < 0) {
        pool->def.name = NULL;
        return config_nomem(err, name_node);
    }
    return 0;
}

static int authd_pool_empty_mode(const struct config_node *map, enum pool_empty_mode *out,
                                 struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = config_get_text(map, "when-all-down", &node, &text, err);
    if (rc != 0 || text == NULL)
        return rc;
    if (strcmp(text, "fail-open") == 0)
        *out = POOL_FAIL_OPEN;
    else if (strcmp(text, "last-healthy") == 0)
        *out = POOL_LAST_HEALTHY;
    else
        return config_fail(err, node, "when-all-down: expected fail-open or last-healthy, got '%s'",
                           text);
    return 0;
}

/* max-withdraw-share: a decimal number, 0 < share <= 1 (e.g. 0.25). */
static int authd_pool_share(const struct config_node *map, double *out, struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = config_get_text(map, "max-withdraw-share", &node, &text, err);
    if (rc != 0 || text == NULL)
        return rc;
    size_t digits = 0, dots = 0, other = 0;
    for (const char *p = text; *p; p++) {
        if (*p >= '0' && *p <= '9')
            digits++;
        else if (*p == '.')
            dots++;
        else
            other++;
    }
    double share = digits > 0 && dots <= 1 && other == 0 ? strtod(text, NULL) : 0.0;
    if (!(share > 0.0 && share <= 1.0))
        return config_fail(err, node,
                           "max-withdraw-share: expected a number above 0 and at most 1, got '%s'",
                           text);
    *out = share;
    return 0;
}

/* A name has at most one CNAME record (RFC 2181 §10.1): a CNAME pool answers with one target,
 * picked by weight among the serving members of the answering level. */
static int authd_pool_cname_records(const struct config_node *map, struct pool_def *def,
                                    struct config_error *err)
{
    if (def->type != WIRE_TYPE_CNAME)
        return 0;
    const struct config_node *node = config_map_get(map, "max-records");
    if (node != NULL && def->max_records != 1)
        return config_fail(err, node,
                           "max-records: a CNAME pool answers with exactly one record (RFC 2181 "
                           "§10.1), got %u",
                           (unsigned)def->max_records);
    def->max_records = 1;
    return 0;
}

static int authd_read_pool(const struct config_node *map, const struct health_params *damping,
                           struct healthd_pool_config *pool, struct config_error *err)
{
    if (map->kind != CONFIG_MAP)
        return config_fail(err, map, "pools: each entry must be a map");
    pool->def.ttl = AUTHD_POOL_DEFAULT_TTL_S;
    pool->def.min_healthy = 1;
    pool->def.max_records = 0;
    pool->def.empty_mode = POOL_FAIL_OPEN;
    pool->max_withdraw_share = AUTHD_POOL_DEFAULT_SHARE;
    pool->withdraw_interval_ms = AUTHD_POOL_DEFAULT_WITHDRAW_MS;
    int rc = config_check_keys(map, authd_pool_keys, err);
    if (rc == 0)
        rc = authd_pool_identity(map, pool, err);
    if (rc == 0)
        rc = authd_read_specs(map, authd_pool_specs, AUTHD_COUNT(authd_pool_specs), pool, err);
    if (rc == 0)
        rc = authd_pool_cname_records(map, &pool->def, err);
    if (rc == 0)
        rc = authd_pool_empty_mode(map, &pool->def.empty_mode, err);
    if (rc == 0)
        rc = authd_pool_share(map, &pool->max_withdraw_share, err);
    struct authd_pool_context ctx = {.damping = damping};
    if (rc == 0)
        rc = authd_check_section(map, &ctx.check, err);
    if (rc == 0 && ctx.check != NULL) {
        /* Validate the pool's check on its own, so its errors show even where members override
         * it; each member then builds its own from it. */
        struct healthd_check alone = {0};
        struct authd_check_target target = {.def = &pool->def};
        rc = authd_check_build(ctx.check, damping, &target, &alone, err);
        authd_check_clear(&alone);
    }
    if (rc == 0)
        rc = authd_read_members(map, &ctx, pool, err);
    return rc;
}

static const char *authd_pool_name_at(const void *pools, size_t index)
{
    return ((const struct healthd_pool_config *)pools)[index].def.name;
}

/* health.max-pools, or HEALTH_MAX_POOLS when absent. */
static int authd_read_max_pools(const struct config_node *health, size_t *max_pools,
                                struct config_error *err)
{
    const struct config_node *node = config_map_get(health, "max-pools");
    uint64_t value = HEALTH_MAX_POOLS;
    if (node != NULL) {
        int rc = config_get_uint(node, 1, AUTHD_MAX_POOLS_CEILING, &value, err);
        if (rc != 0)
            return config_name_key(err, "max-pools", rc);
    }
    *max_pools = (size_t)value;
    return 0;
}

static int authd_read_pools(struct authd_config *cfg, const struct config_node *health,
                            const struct health_params *damping, struct config_error *err)
{
    const struct config_node *pools = NULL;
    size_t max_pools = HEALTH_MAX_POOLS;
    int rc = authd_read_max_pools(health, &max_pools, err);
    if (rc == 0)
        rc = config_section(health, "pools", CONFIG_LIST, &pools, err);
    if (rc != 0 || pools == NULL || pools->count == 0)
        return rc;
    if (pools->count > max_pools) {
        config_fail(err, pools->values[max_pools], "too many pools (limit is %zu, max-pools)",
                    max_pools);
        return BALLAST_ELIMIT;
    }
    cfg->health.pools = calloc(pools->count, sizeof(*cfg->health.pools));
    cfg->health_pool_lines = calloc(pools->count, sizeof(*cfg->health_pool_lines));
    if (cfg->health.pools == NULL || cfg->health_pool_lines == NULL)
        return config_nomem(err, pools);
    for (size_t i = 0; i < pools->count && rc == 0; i++) {
        const struct config_node *item = pools->values[i];
        cfg->health_pool_lines[i] = authd_key_or_map(item, "name")->line;
        cfg->health.pool_count++; /* zeroed: safe to free half-read */
        rc = authd_read_pool(item, damping, &cfg->health.pools[i], err);
    }
    if (rc != 0)
        return rc;
    size_t second = 0, first = 0;
    rc = config_find_duplicate(cfg->health.pools, cfg->health.pool_count, authd_pool_name_at,
                               &second, &first);
    if (rc < 0)
        return config_nomem(err, pools);
    if (rc == 0)
        return 0;
    return config_fail(err, authd_key_or_map(pools->values[second], "name"),
                       "duplicate pool '%s' (first at line %u)", cfg->health.pools[second].def.name,
                       cfg->health_pool_lines[first]);
}

/* --- feeds --- */

static bool authd_has_prefix(const char *text, const char *prefix)
{
    return strncasecmp(text, prefix, strlen(prefix)) == 0;
}

/* A feed location: an http(s) URL (checked with libcurl's parser) or file:// URL as written,
 * else a path, resolved against the config file's directory. */
static int authd_feed_location(const struct config_node *map, const char *key,
                               const char *config_path, char **out, struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = config_get_text(map, key, &node, &text, err);
    if (rc != 0 || text == NULL)
        return rc;
    if (authd_has_prefix(text, "http://") || authd_has_prefix(text, "https://")) {
        char why[128];
        bool https;
        uint16_t port;
        rc = authd_url_parse(text, &https, &port, why, sizeof(why));
        if (rc == BALLAST_ENOMEM)
            return config_nomem(err, node);
        if (rc != 0)
            return config_fail(err, node, "%s: invalid URL '%s': %s", key, text, why);
        *out = strdup(text);
    } else if (authd_has_prefix(text, "file://")) {
        if (text[7] != '/')
            return config_fail(err, node, "%s: '%s' is not file:///ABSOLUTE/PATH", key, text);
        *out = strdup(text);
    } else if (strstr(text, "://") != NULL) {
        return config_fail(
            err, node, "%s: '%s': expected a path, a file:// URL or an http(s):// URL", key, text);
    } else {
        *out = config_resolve_path(config_path, text);
    }
    return *out != NULL ? 0 : config_nomem(err, node);
}

static int authd_feed_key(const struct config_node *map, struct healthd_feed_config *feed,
                          struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = config_get_text(map, "public-key", &node, &text, err);
    if (rc != 0)
        return rc;
    const struct config_node *signature = config_map_get(map, "signature-url");
    if (text == NULL && signature != NULL)
        return config_fail(
            err, signature,
            "signature-url: set only with public-key (the key checks the signature)");
    if (text == NULL)
        return 0;
    if (feed_public_key_parse(text, feed->public_key) != 0)
        return config_fail(err, node,
                           "public-key: expected the base64 of a 32-byte Ed25519 public key, got "
                           "'%s'",
                           text);
    feed->has_key = true;
    return 0;
}

static int authd_read_feed(const struct config_node *map, const char *config_path,
                           struct healthd_feed_config *feed, struct config_error *err)
{
    if (map->kind != CONFIG_MAP)
        return config_fail(err, map, "feeds: each entry must be a map");
    feed->interval_ms = AUTHD_FEED_DEFAULT_INTERVAL_MS;
    feed->valid_ms = AUTHD_FEED_DEFAULT_VALID_MS;
    feed_limits_defaults(&feed->limits);
    int rc = config_check_keys(map, authd_feed_keys, err);
    if (rc == 0)
        rc = authd_feed_location(map, "url", config_path, &feed->url, err);
    if (rc == 0 && feed->url == NULL)
        rc = config_fail(err, map, "feed is missing 'url'");
    if (rc == 0)
        rc = authd_feed_key(map, feed, err);
    if (rc == 0)
        rc = authd_feed_location(map, "signature-url", config_path, &feed->signature_url, err);
    if (rc == 0)
        rc = authd_read_specs(map, authd_feed_specs, AUTHD_COUNT(authd_feed_specs), feed, err);
    /* States from a pull must outlive the wait for the next one, or members would fall back to
     * their probe state between two good pulls. */
    if (rc == 0 && feed->valid_ms <= feed->interval_ms)
        rc = config_fail(err, authd_key_or_map(map, "valid-for"),
                         "valid-for (%ums) must be longer than interval (%ums)",
                         (unsigned)feed->valid_ms, (unsigned)feed->interval_ms);
    return rc;
}

static const char *authd_feed_url_at(const void *feeds, size_t index)
{
    return ((const struct healthd_feed_config *)feeds)[index].url;
}

static int authd_read_feeds(struct authd_config *cfg, const struct config_node *health,
                            struct config_error *err)
{
    const struct config_node *feeds;
    int rc = config_section(health, "feeds", CONFIG_LIST, &feeds, err);
    if (rc != 0 || feeds == NULL || feeds->count == 0)
        return rc;
    if (feeds->count > HEALTH_MAX_FEEDS) {
        config_fail(err, feeds->values[HEALTH_MAX_FEEDS], "too many feeds (limit is %d)",
                    HEALTH_MAX_FEEDS);
        return BALLAST_ELIMIT;
    }
    cfg->health.feeds = calloc(feeds->count, sizeof(*cfg->health.feeds));
    if (cfg->health.feeds == NULL)
        return config_nomem(err, feeds);
    for (size_t i = 0; i < feeds->count && rc == 0; i++) {
        cfg->health.feed_count++;
        rc = authd_read_feed(feeds->values[i], cfg->source_file, &cfg->health.feeds[i], err);
    }
    if (rc != 0)
        return rc;
    size_t second = 0, first = 0;
    rc = config_find_duplicate(cfg->health.feeds, cfg->health.feed_count, authd_feed_url_at,
                               &second, &first);
    if (rc < 0)
        return config_nomem(err, feeds);
    if (rc == 0)
        return 0;
    return config_fail(err, authd_key_or_map(feeds->values[second], "url"),
                       "duplicate feed '%s' (first at line %u)", cfg->health.feeds[second].url,
                       authd_key_or_map(feeds->values[first], "url")->line);
}

static int authd_read_health(struct authd_config *cfg, const struct config_node *root,
                             struct config_error *err)
{
    const struct config_node *health;
    int rc = config_section(root, "health", CONFIG_MAP, &health, err);
    if (rc != 0 || health == NULL)
        return rc;
    rc = config_check_keys(health, authd_health_keys, err);
    struct health_params damping;
    health_params_defaults(&damping);
    const struct config_node *section;
    if (rc == 0)
        rc = config_read_section(health, "damping", authd_damping_specs,
                                 AUTHD_COUNT(authd_damping_specs), NULL, &damping, &section, err);
    if (rc == 0)
        rc = authd_read_pools(cfg, health, &damping, err);
    if (rc == 0)
        rc = authd_read_feeds(cfg, health, err);
    return rc;
}

/* --- final checks on pools --- */

struct authd_zone_wire {
    uint8_t name[WIRE_NAME_MAX];
    size_t len;
};

/* The zones' names in lowercase wire form; NULL when out of memory. A name that does not
 * convert (impossible after normalising) gets length 0 and matches nothing. */
static struct authd_zone_wire *authd_zone_wires(const struct authd_config *cfg)
{
    struct authd_zone_wire *wires = calloc(cfg->zone_count ? cfg->zone_count : 1, sizeof(*wires));
    if (wires == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->zone_count; i++) {
        uint8_t name[WIRE_NAME_MAX];
        size_t len = 0;
        if (wire_name_from_text(cfg->zones[i].name, name, &len) != 0)
            continue;
        wire_name_lower(wires[i].name, name, len);
        wires[i].len = len;
    }
    return wires;
}

/* A pool answers for its owner only inside a zone this server serves (the zone file holds the
 * static RRset the pool overrides), and a CNAME cannot sit at a zone apex, which has SOA and NS
 * (RFC 1034 §3.6.2, RFC 2181 §10.1). */
static bool authd_pool_inside_zones(const struct healthd_pool_config *pool,
                                    const struct authd_zone_wire *wires,
                                    const struct authd_config *cfg, const char **apex_of)
{
    bool inside = false;
    *apex_of = NULL;
    for (size_t z = 0; z < cfg->zone_count; z++) {
        if (wires[z].len == 0 || !wire_name_is_subdomain(pool->def.owner, pool->def.owner_len,
                                                         wires[z].name, wires[z].len))
            continue;
        inside = true;
        if (pool->def.owner_len == wires[z].len && pool->def.type == WIRE_TYPE_CNAME)
            *apex_of = cfg->zones[z].name;
    }
    return inside;
}

static int authd_validate_pools(const struct authd_config *cfg, struct config_error *err)
{
    if (cfg->health.pool_count == 0)
        return 0;
    struct authd_zone_wire *wires = authd_zone_wires(cfg);
    if (wires == NULL) {
        config_fail(err, NULL, "out of memory");
        return BALLAST_ENOMEM;
    }
    int rc = 0;
    for (size_t p = 0; p < cfg->health.pool_count && rc == 0; p++) {
        const struct healthd_pool_config *pool = &cfg->health.pools[p];
        const char *apex = NULL;
        if (!authd_pool_inside_zones(pool, wires, cfg, &apex))
            rc = config_fail(err, NULL,
                             "pool '%s' is outside every configured zone (its zone must be "
                             "served, with the static records in its zone file)",
                             pool->def.name);
        else if (apex != NULL)
            rc = config_fail(err, NULL,
                             "pool '%s': a CNAME pool cannot be at the apex of zone '%s' (RFC "
                             "1034 §3.6.2)",
                             pool->def.name, apex);
        if (rc != 0)
            err->line = cfg->health_pool_lines != NULL ? cfg->health_pool_lines[p] : 0;
    }
    free(wires);
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
        rc = rrl_config_read(root, RRL_SECTION_RESPONSES, &cfg->rrl, err);
    if (rc == 0)
        rc = authd_read_zones(cfg, root, err);
    if (rc == 0)
        rc = authd_read_health(cfg, root, err);
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
    return authd_validate_pools(cfg, err);
}
