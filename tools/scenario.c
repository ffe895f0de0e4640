/* Outage scenario files for `ballast replay` (docs/scenarios.md): reads the YAML tree of
 * common/config.h into struct scenario and checks every range, limit, address and reference,
 * each error at the FILE:LINE of the node that caused it. */
#include "scenario.h"

#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "errors.h"

#define SCENARIO_COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define SCENARIO_DAY_MS 86400000ull

/* Defaults and ranges below are documented in docs/scenarios.md; keep the two in step. */
#define SCENARIO_DEFAULT_PORT 5300
#define SCENARIO_DEFAULT_TTL 300
#define SCENARIO_DEFAULT_RESOLVER "127.0.40.100"
#define SCENARIO_DEFAULT_SLOW_MS 5000
#define SCENARIO_DEFAULT_TIMEOUT_MS 2000
#define SCENARIO_IDENT_MAX 63 /* names of scenarios, authorities, endpoints (file names too) */
#define SCENARIO_MAX_CLIENTS 256
#define SCENARIO_MAX_WEIGHT 1000000
#define SCENARIO_MAX_DELAY_MS 600000ull /* latency faults and slow endpoints */
#define SCENARIO_RESOLVER "resolver"

static const char *const scenario_top_keys[] = {
    "name",      "description", "duration", "port",     "authorities", "zones",
    "endpoints", "resolver",    "load",     "timeline", "expect",      NULL};
static const char *const scenario_authority_keys[] = {"name", "address", "extra-config", NULL};
static const char *const scenario_zone_keys[] = {"name", "authority", "ttl", "records", NULL};
static const char *const scenario_endpoint_keys[] = {"name", "address", "kind", "slow", NULL};
static const char *const scenario_resolver_keys[] = {"address", "compare", "extra-config", NULL};
static const char *const scenario_load_keys[] = {"rate", "clients", "timeout", "names", NULL};
static const char *const scenario_load_name_keys[] = {"name", "type", "weight", NULL};
static const char *const scenario_expect_keys[] = {"success-rate",     "window",      "p99-latency",
                                                   "max-upstream-qps", "never-empty", NULL};
static const char *const scenario_window_keys[] = {"length", "success-rate", NULL};

/* Top-level keys of the generated daemon configs: extra-config may not set them again (the
 * daemon would refuse the duplicate key, and the tool owns listeners, zones and root hints). */
static const char *const scenario_authority_reserved[] = {"server", "zones", NULL};
static const char *const scenario_resolver_reserved[] = {"server", "resolution", NULL};

static const char *const scenario_fault_names[] = {
    [SCENARIO_FAULT_DROP] = "drop",         [SCENARIO_FAULT_LOSS] = "loss",
    [SCENARIO_FAULT_LATENCY] = "latency",   [SCENARIO_FAULT_SERVFAIL] = "servfail",
    [SCENARIO_FAULT_REFUSED] = "refused",   [SCENARIO_FAULT_EMPTY] = "empty",
    [SCENARIO_FAULT_NXDOMAIN] = "nxdomain", [SCENARIO_FAULT_TRUNCATE] = "truncate",
};
static const char *const scenario_state_names[] = {
    [SCENARIO_ENDPOINT_UP] = "up",
    [SCENARIO_ENDPOINT_DOWN] = "down",
    [SCENARIO_ENDPOINT_SLOW] = "slow",
};
static const char *const scenario_kind_names[] = {
    [SCENARIO_ENDPOINT_TCP] = "tcp",
    [SCENARIO_ENDPOINT_HTTP] = "http",
};
static const char *const scenario_bad_names[] = {
    [SCENARIO_BAD_GARBAGE] = "garbage",
    [SCENARIO_BAD_OVERSIZED] = "oversized",
    [SCENARIO_BAD_EMPTY] = "empty",
};

/* An event's action: the key that names it and every key such an event may have. */
struct scenario_action_spec {
    const char *key;
    enum scenario_action action;
    const char *const *keys;
};

static const struct scenario_action_spec scenario_actions[] = {
    {"fault", SCENARIO_FAULT,
     (const char *const[]){"at", "fault", "target", "name", "percent", "delay", NULL}},
    {"heal", SCENARIO_HEAL, (const char *const[]){"at", "heal", NULL}},
    {"endpoint", SCENARIO_ENDPOINT, (const char *const[]){"at", "endpoint", "state", NULL}},
    {"restart", SCENARIO_RESTART, (const char *const[]){"at", "restart", NULL}},
    {"kill", SCENARIO_KILL, (const char *const[]){"at", "kill", NULL}},
    {"start", SCENARIO_START, (const char *const[]){"at", "start", NULL}},
    {"push-zone", SCENARIO_PUSH_ZONE, (const char *const[]){"at", "push-zone", "content", NULL}},
    {"push-feed", SCENARIO_PUSH_FEED,
     (const char *const[]){"at", "push-feed", "file", "content", NULL}},
    {"restore-zone", SCENARIO_RESTORE_ZONE, (const char *const[]){"at", "restore-zone", NULL}},
};
/* Every key of any event, to report a misspelt key before a missing action. */
static const char *const scenario_event_keys[] = {
    "at",      "fault",     "heal",         "endpoint",  "restart", "kill",
    "start",   "push-zone", "restore-zone", "push-feed", "target",  "name",
    "percent", "delay",     "state",        "content",   "file",    NULL};

/* ---- names for messages ---- */

const char *scenario_fault_name(enum scenario_fault fault)
{
    if ((size_t)fault < SCENARIO_COUNT(scenario_fault_names))
        return scenario_fault_names[fault];
    return "?";
}

const char *scenario_action_name(enum scenario_action action)
{
    for (size_t i = 0; i < SCENARIO_COUNT(scenario_actions); i++)
        if (scenario_actions[i].action == action)
            return scenario_actions[i].key;
    return "?";
}

/* ms as the largest unit that divides it exactly: "20s", "1500ms", "2m". */
static const char *scenario_format_ms(uint64_t ms, char *buf, size_t len)
{
    static const struct {
        const char *suffix;
        uint64_t factor;
    } units[] = {{"d", SCENARIO_DAY_MS}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; i < SCENARIO_COUNT(units); i++) {
        if (ms != 0 && ms % units[i].factor == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)(ms / units[i].factor),
                     units[i].suffix);
            return buf;
        }
    }
    snprintf(buf, len, "%llums", (unsigned long long)ms);
    return buf;
}

/* ---- free ---- */

static void scenario_free_strings(char **items, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(items[i]);
    free(items);
}

void scenario_free(struct scenario *s)
{
    free(s->source_file);
    free(s->dir);
    free(s->name);
    free(s->description);
    for (size_t i = 0; i < s->zone_count; i++) {
        free(s->zones[i].name);
        free(s->zones[i].authority);
        scenario_free_strings(s->zones[i].records, s->zones[i].record_count);
    }
    free(s->zones);
    for (size_t i = 0; i < s->authority_count; i++) {
        free(s->authorities[i].name);
        free(s->authorities[i].extra_config);
    }
    free(s->authorities);
    for (size_t i = 0; i < s->endpoint_count; i++)
        free(s->endpoints[i].name);
    free(s->endpoints);
    free(s->resolver.extra_config);
    for (size_t i = 0; i < s->load.name_count; i++)
        free(s->load.names[i].text);
    free(s->load.names);
    for (size_t i = 0; i < s->event_count; i++) {
        free(s->events[i].target);
        free(s->events[i].name);
        free(s->events[i].file);
    }
    free(s->events);
    scenario_free_strings(s->expect.never_empty, s->expect.never_empty_count);
    memset(s, 0, sizeof(*s));
}

/* ---- scalar reads; each names its key in errors ---- */

static int scenario_missing(const struct config_node *map, const char *what, const char *key,
                            struct config_error *err)
{
    return config_fail(err, map, "%s: missing required key '%s'", what, key);
}

/* The value of a required key of map; what names map in the error ("zone", "load"). */
static int scenario_require(const struct config_node *map, const char *what, const char *key,
                            const struct config_node **out, struct config_error *err)
{
    *out = config_map_get(map, key);
    return *out != NULL ? 0 : scenario_missing(map, what, key, err);
}

/* A non-empty string; *out is NULL when the key is absent (and required fails). */
static int scenario_text(const struct config_node *map, const char *what, const char *key,
                         bool required, const struct config_node **node, const char **out,
                         struct config_error *err)
{
    int rc = config_get_text(map, key, node, out, err);
    if (rc == 0 && *out == NULL && required)
        return scenario_missing(map, what, key, err);
    return rc;
}

static int scenario_strdup(const struct config_node *node, const char *text, char **out,
                           struct config_error *err)
{
    *out = strdup(text);
    return *out != NULL ? 0 : config_nomem(err, node);
}

/* An optional duration; *out keeps its default when the key is absent. */
static int scenario_duration(const struct config_node *map, const char *key, uint64_t min_ms,
                             uint64_t max_ms, uint64_t *out, struct config_error *err)
{
    const struct config_node *node = config_map_get(map, key);
    if (node == NULL)
        return 0;
    int rc = config_get_duration_ms(node, min_ms, max_ms, out, err);
    return rc == 0 ? 0 : config_name_key(err, key, rc);
}

static int scenario_duration32(const struct config_node *map, const char *key, uint64_t min_ms,
                               uint64_t max_ms, uint32_t *out, struct config_error *err)
{
    uint64_t value = *out;
    int rc = scenario_duration(map, key, min_ms, max_ms, &value, err);
    *out = (uint32_t)value;
    return rc;
}

/* An optional integer; *out keeps its default when the key is absent. */
static int scenario_uint32(const struct config_node *map, const char *key, uint64_t min,
                           uint64_t max, uint32_t *out, struct config_error *err)
{
    const struct config_node *node = config_map_get(map, key);
    if (node == NULL)
        return 0;
    uint64_t value = 0;
    int rc = config_get_uint(node, min, max, &value, err);
    if (rc != 0)
        return config_name_key(err, key, rc);
    *out = (uint32_t)value;
    return 0;
}

/* After a failed range read of node: when the value parsed but is above max, the reason also
 * names the limit (a named constant) and the error is BALLAST_ELIMIT. */
static int scenario_over_limit(const struct config_node *node, bool duration, uint64_t max,
                               const char *limit, int rc, struct config_error *err)
{
    struct config_error scratch;
    uint64_t value = 0;
    int parsed = duration ? config_get_duration_ms(node, 0, UINT64_MAX, &value, &scratch)
                          : config_get_uint(node, 0, UINT64_MAX, &value, &scratch);
    if (parsed != 0 || value <= max)
        return rc;
    size_t used = strlen(err->reason);
    snprintf(err->reason + used, sizeof(err->reason) - used, " (limit %s)", limit);
    return BALLAST_ELIMIT;
}

/* One of names (indexed by an enum); *out keeps its default when the key is absent. */
static int scenario_choice(const struct config_node *map, const char *key, const char *const *names,
                           size_t count, unsigned *out, struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = config_get_text(map, key, &node, &text, err);
    if (rc != 0 || text == NULL)
        return rc;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (unsigned)i;
            return 0;
        }
    }
    char list[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < count && used < sizeof(list); i++) {
        int n = snprintf(list + used, sizeof(list) - used, "%s%s", i == 0 ? "" : ", ", names[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    return config_fail(err, node, "%s: expected one of %s, got '%s'", key, list, text);
}

/* Names of scenarios, authorities and endpoints: [a-z0-9-]+, short enough for a file name. */
static int scenario_ident(const struct config_node *map, const char *what, const char *key,
                          const struct config_node **node, const char **out,
                          struct config_error *err)
{
    int rc = scenario_text(map, what, key, true, node, out, err);
    if (rc != 0)
        return rc;
    size_t len = strlen(*out);
    if (len > SCENARIO_IDENT_MAX || strspn(*out, "abcdefghijklmnopqrstuvwxyz0123456789-") != len)
        return config_fail(err, *node,
                           "%s: expected lowercase letters, digits and '-' (at most %d), got '%s'",
                           key, SCENARIO_IDENT_MAX, *out);
    return 0;
}

/* A domain name in canonical form: lowercase wire and text without the final dot ("." for
 * the root). */
static int scenario_domain(const struct config_node *node, const char *key, char **text,
                           uint8_t *wire, size_t *wire_len, struct config_error *err)
{
    const char *raw = NULL;
    int rc = config_get_string(node, &raw, err);
    if (rc != 0)
        return config_name_key(err, key, rc);
    char printed[WIRE_NAME_MAX * 4 + 2];
    if (raw[0] == '\0' || wire_name_from_text(raw, wire, wire_len) != 0)
        return config_fail(err, node, "%s: invalid domain name '%s'", key, raw);
    wire_name_lower(wire, wire, *wire_len);
    if (wire_name_to_text(wire, printed, sizeof(printed)) != 0)
        return config_fail(err, node, "%s: invalid domain name '%s'", key, raw);
    size_t len = strlen(printed);
    if (len > 1 && printed[len - 1] == '.')
        printed[len - 1] = '\0';
    return scenario_strdup(node, printed, text, err);
}

/* A share in per mille: "99.5%" (at most one decimal) or a fraction "0.995" (at most three). */
static int scenario_parse_permille(const char *text, uint32_t *out)
{
    size_t len = strlen(text);
    bool percent = len > 0 && text[len - 1] == '%';
    unsigned whole = 0, frac = 0, frac_digits = 0;
    const char *p = text;
    if (*p < '0' || *p > '9')
        return BALLAST_EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        whole = whole * 10 + (unsigned)(*p - '0');
        if (whole > 1000)
            return BALLAST_EINVAL;
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, frac_digits++) {
            if (frac_digits == (percent ? 1u : 3u))
                return BALLAST_EINVAL;
            frac = frac * 10 + (unsigned)(*p - '0');
        }
        if (frac_digits == 0)
            return BALLAST_EINVAL;
    }
    if ((percent && p != text + len - 1) || (!percent && *p != '\0'))
        return BALLAST_EINVAL;
    unsigned value;
    if (percent) {
        value = whole * 10 + frac;
    } else {
        for (unsigned d = frac_digits; d < 3; d++)
            frac *= 10;
        value = whole * 1000 + frac;
    }
    if (value > 1000)
        return BALLAST_EINVAL;
    *out = value;
    return 0;
}

static int scenario_permille(const struct config_node *node, const char *key, uint32_t *out,
                             struct config_error *err)
{
    const char *text = NULL;
    int rc = config_get_string(node, &text, err);
    if (rc != 0)
        return config_name_key(err, key, rc);
    if (scenario_parse_permille(text, out) != 0)
        return config_fail(err, node,
                           "%s: expected a percentage like 99.5%% or a fraction like 0.995 "
                           "(0 to 100%%, per mille precision), got '%s'",
                           key, text);
    return 0;
}

/* ---- lists ---- */

/* The list under key with at most max items (the first item past the limit is blamed); *out
 * is NULL when the key is absent or empty, which fails when required. */
static int scenario_list(const struct config_node *map, const char *what, const char *key,
                         bool required, size_t max, const char *limit,
                         const struct config_node **out, struct config_error *err)
{
    int rc = config_section(map, key, CONFIG_LIST, out, err);
    if (rc != 0)
        return rc;
    if (*out == NULL || (*out)->count == 0) {
        const struct config_node *node = config_map_get(map, key);
        if (!required)
            return 0;
        if (node == NULL)
            return scenario_missing(map, what, key, err);
        return config_fail(err, node, "%s: needs at least one entry", key);
    }
    if ((*out)->count > max) {
        config_fail(err, (*out)->values[max], "%s: too many entries: %zu (limit is %zu, %s)", key,
                    (*out)->count, max, limit);
        return BALLAST_ELIMIT;
    }
    return 0;
}

static int scenario_expect_map(const struct config_node *item, const char *what,
                               struct config_error *err)
{
    if (item->kind == CONFIG_MAP)
        return 0;
    return config_fail(err, item, "%s: each entry must be a map", what);
}

/* ---- addresses ---- */

static bool scenario_is_loopback(const struct addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a->ss;
        return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    }
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&a->ss;
    return a->ss.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
}

static void scenario_set_port(struct addr *a, uint16_t port)
{
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
}

/* A loopback "ADDR[@PORT]". A daemon (daemon_port != 0) listens on the scenario's port, which
 * an explicit port must repeat; an endpoint (daemon_port 0) needs its own port. */
static int scenario_address(const struct config_node *node, const char *key, uint16_t daemon_port,
                            struct addr *out, struct config_error *err)
{
    const char *text = NULL;
    int rc = config_get_string(node, &text, err);
    if (rc != 0)
        return config_name_key(err, key, rc);
    if (addr_parse(text, 0, out) != 0)
        return config_fail(err, node, "%s: invalid address '%s' (expected ADDR%s)", key, text,
                           daemon_port != 0 ? " or ADDR@PORT" : "@PORT");
    if (!scenario_is_loopback(out))
        return config_fail(err, node,
                           "%s: '%s': address must be loopback: tests and replays never leave "
                           "127.0.0.0/8 (or ::1)",
                           key, text);
    uint16_t port = addr_port((const struct sockaddr *)&out->ss);
    if (daemon_port == 0 && port == 0)
        return config_fail(err, node, "%s: '%s' needs a port (ADDR@PORT)", key, text);
    if (daemon_port != 0 && port != 0 && port != daemon_port)
        return config_fail(err, node,
                           "%s: '%s': every daemon listens on the scenario port %u; leave out "
                           "@PORT",
                           key, text, daemon_port);
    if (port == 0)
        scenario_set_port(out, daemon_port);
    return 0;
}

static bool scenario_addr_equal(const struct addr *a, const struct addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family)
        return false;
    if (addr_port((const struct sockaddr *)&a->ss) != addr_port((const struct sockaddr *)&b->ss))
        return false;
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)&b->ss)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                  &((const struct sockaddr_in6 *)&b->ss)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* What listens where, to refuse two listeners on one address. */
struct scenario_listener {
    const struct addr *addr;
    const char *what;               /* "authority", "endpoint" or "the resolver" */
    const char *name;               /* NULL for the resolver */
    const struct config_node *node; /* its address; NULL for the resolver's default */
};

static void scenario_listener_describe(const struct scenario_listener *l, char *buf, size_t len)
{
    char where[32] = "its default address";
    if (l->node != NULL)
        snprintf(where, sizeof(where), "line %u", l->node->line);
    if (l->name != NULL)
        snprintf(buf, len, "%s '%s' (%s)", l->what, l->name, where);
    else
        snprintf(buf, len, "%s (%s)", l->what, where);
}

/* Fails when the last of count listeners shares its address with an earlier one. */
static int scenario_listener_admit(const struct scenario_listener *seen, size_t count,
                                   struct config_error *err)
{
    const struct scenario_listener *l = &seen[count - 1];
    for (size_t i = 0; i + 1 < count; i++) {
        if (!scenario_addr_equal(seen[i].addr, l->addr))
            continue;
        char text[96], owner[160];
        addr_format((const struct sockaddr *)&l->addr->ss, text, sizeof(text));
        scenario_listener_describe(&seen[i], owner, sizeof(owner));
        return config_fail(err, l->node, "address %s is already used by %s", text, owner);
    }
    return 0;
}

/* ---- extra-config ---- */

/* YAML text appended to a generated daemon config: it must parse as a map and leave the keys
 * the tool writes (reserved) alone. */
static int scenario_extra_config(const struct config_node *map, const char *const *reserved,
                                 char **out, struct config_error *err)
{
    const struct config_node *node = config_map_get(map, "extra-config");
    if (node == NULL)
        return 0;
    if (node->kind != CONFIG_SCALAR)
        return config_fail(err, node,
                           "extra-config: expected YAML text as a string (write 'extra-config: |' "
                           "and indent the YAML below it)");
    struct config_node *tree = NULL;
    struct config_error inner = {0};
    int rc = config_parse_string("extra-config", node->scalar, strlen(node->scalar), &tree, &inner);
    if (rc == BALLAST_ENOMEM)
        return config_nomem(err, node);
    if (rc != 0)
        return config_fail(err, node, "extra-config: line %u of the text: %s", inner.line,
                           inner.reason);
    for (size_t i = 0; reserved[i] != NULL && rc == 0; i++)
        if (config_map_get(tree, reserved[i]) != NULL)
            rc = config_fail(err, node,
                             "extra-config: '%s' is written by the tool and cannot be set here",
                             reserved[i]);
    config_free(tree);
    return rc == 0 ? scenario_strdup(node, node->scalar, out, err) : rc;
}

/* ---- lookups (the item being read has no name yet) ---- */

static const struct scenario_authority *scenario_find_authority(const struct scenario *s,
                                                                const char *name)
{
    for (size_t i = 0; i < s->authority_count; i++)
        if (s->authorities[i].name != NULL && strcmp(s->authorities[i].name, name) == 0)
            return &s->authorities[i];
    return NULL;
}

static const struct scenario_endpoint *scenario_find_endpoint(const struct scenario *s,
                                                              const char *name)
{
    for (size_t i = 0; i < s->endpoint_count; i++)
        if (s->endpoints[i].name != NULL && strcmp(s->endpoints[i].name, name) == 0)
            return &s->endpoints[i];
    return NULL;
}

static const struct scenario_zone *scenario_find_zone(const struct scenario *s, const char *name)
{
    for (size_t i = 0; i < s->zone_count; i++)
        if (s->zones[i].name != NULL && strcmp(s->zones[i].name, name) == 0)
            return &s->zones[i];
    return NULL;
}

/* ---- top-level scalars ---- */

static int scenario_read_header(struct scenario *s, const struct config_node *root,
                                struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = scenario_ident(root, "scenario", "name", &node, &text, err);
    if (rc == 0)
        rc = scenario_strdup(node, text, &s->name, err);
    node = config_map_get(root, "description");
    if (rc == 0 && node != NULL) {
        rc = config_get_string(node, &text, err);
        if (rc != 0)
            return config_name_key(err, "description", rc);
        rc = scenario_strdup(node, text, &s->description, err);
    }
    if (rc == 0)
        rc = scenario_require(root, "scenario", "duration", &node, err);
    if (rc == 0) {
        rc = scenario_duration(root, "duration", 1000, SCENARIO_MAX_DURATION_MS, &s->duration_ms,
                               err);
        rc = scenario_over_limit(node, true, SCENARIO_MAX_DURATION_MS, "SCENARIO_MAX_DURATION_MS",
                                 rc, err);
    }
    uint32_t port = SCENARIO_DEFAULT_PORT;
    if (rc == 0)
        rc = scenario_uint32(root, "port", 1, 65535, &port, err);
    s->port = (uint16_t)port;
    return rc;
}

/* ---- authorities ---- */

static int scenario_read_authority(struct scenario *s, const struct config_node *item,
                                   struct scenario_authority *a, struct config_error *err)
{
    int rc = scenario_expect_map(item, "authorities", err);
    if (rc == 0)
        rc = config_check_keys(item, scenario_authority_keys, err);
    const struct config_node *node;
    const char *name;
    if (rc == 0)
        rc = scenario_ident(item, "authority", "name", &node, &name, err);
    if (rc != 0)
        return rc;
    a->line = node->line;
    if (strcmp(name, "root") == 0 || strcmp(name, SCENARIO_RESOLVER) == 0)
        return config_fail(
            err, node, "name: '%s' is reserved (the generated root server and the resolver)", name);
    const struct scenario_authority *first = scenario_find_authority(s, name);
    if (first != NULL)
        return config_fail(err, node, "name: authority '%s' is defined twice (first at line %u)",
                           name, first->line);
    rc = scenario_strdup(node, name, &a->name, err);
    if (rc == 0)
        rc = scenario_require(item, "authority", "address", &node, err);
    if (rc == 0)
        rc = scenario_address(node, "address", s->port, &a->address, err);
    if (rc == 0)
        rc = scenario_extra_config(item, scenario_authority_reserved, &a->extra_config, err);
    return rc;
}

static int scenario_read_authorities(struct scenario *s, const struct config_node *root,
                                     struct config_error *err)
{
    const struct config_node *list;
    int rc = scenario_list(root, "scenario", "authorities", true, SCENARIO_MAX_AUTHORITIES,
                           "SCENARIO_MAX_AUTHORITIES", &list, err);
    if (rc != 0)
        return rc;
    s->authorities = calloc(list->count, sizeof(*s->authorities));
    if (s->authorities == NULL)
        return config_nomem(err, list);
    /* The count grows before an item is filled so scenario_free sees its partial fields. */
    for (size_t i = 0; i < list->count && rc == 0; i++) {
        s->authority_count = i + 1;
        rc = scenario_read_authority(s, list->values[i], &s->authorities[i], err);
    }
    return rc;
}

/* ---- zones ---- */

/* One master-file line relative to the zone: it must parse (ldns, as ballast-authd will load
 * it) and its owner must be at or below the apex. */
static int scenario_check_record(const struct scenario_zone *zone, const ldns_rdf *origin,
                                 const struct config_node *item, struct config_error *err)
{
    if (item->kind != CONFIG_SCALAR || item->scalar[0] == '\0')
        return config_fail(err, item, "records: each record must be a non-empty string");
    ldns_rr *rr = NULL;
    ldns_status status = ldns_rr_new_frm_str(&rr, item->scalar, zone->ttl, origin, NULL);
    if (status != LDNS_STATUS_OK)
        return config_fail(err, item, "records: invalid record '%s': %s", item->scalar,
                           ldns_get_errorstr_by_id(status));
    const ldns_rdf *owner = ldns_rr_owner(rr);
    bool inside = ldns_dname_compare(owner, origin) == 0 || ldns_dname_is_subdomain(owner, origin);
    ldns_rr_free(rr);
    if (!inside)
        return config_fail(err, item, "records: '%s' is outside zone '%s'", item->scalar,
                           zone->name);
    return 0;
}

static int scenario_read_records(struct scenario_zone *zone, const struct config_node *item,
                                 struct config_error *err)
{
    const struct config_node *list;
    int rc = scenario_list(item, "zone", "records", false, SCENARIO_MAX_RECORDS,
                           "SCENARIO_MAX_RECORDS", &list, err);
    if (rc != 0 || list == NULL)
        return rc;
    ldns_rdf *origin = NULL;
    char apex[WIRE_NAME_MAX * 4 + 2];
    snprintf(apex, sizeof(apex), "%s.", zone->name);
    if (ldns_str2rdf_dname(&origin, apex) != LDNS_STATUS_OK)
        return config_nomem(err, list);
    zone->records = calloc(list->count, sizeof(*zone->records));
    if (zone->records == NULL)
        rc = config_nomem(err, list);
    for (size_t i = 0; rc == 0 && i < list->count; i++) {
        const struct config_node *record = list->values[i];
        rc = scenario_check_record(zone, origin, record, err);
        if (rc == 0)
            rc = scenario_strdup(record, record->scalar, &zone->records[i], err);
        if (rc == 0)
            zone->record_count = i + 1;
    }
    ldns_rdf_deep_free(origin);
    return rc;
}

static int scenario_read_zone(struct scenario *s, const struct config_node *item,
                              struct scenario_zone *zone, struct config_error *err)
{
    int rc = scenario_expect_map(item, "zones", err);
    if (rc == 0)
        rc = config_check_keys(item, scenario_zone_keys, err);
    const struct config_node *node;
    uint8_t wire[WIRE_NAME_MAX];
    size_t wire_len = 0;
    if (rc == 0)
        rc = scenario_require(item, "zone", "name", &node, err);
    if (rc == 0)
        rc = scenario_domain(node, "name", &zone->name, wire, &wire_len, err);
    if (rc != 0)
        return rc;
    zone->line = node->line;
    if (wire_len == 1)
        return config_fail(err, node, "name: the root zone is generated by the tool");
    for (size_t i = 0; zone != &s->zones[i]; i++)
        if (strcmp(s->zones[i].name, zone->name) == 0)
            return config_fail(err, node, "name: zone '%s' is defined twice (first at line %u)",
                               zone->name, s->zones[i].line);
    const char *authority;
    rc = scenario_text(item, "zone", "authority", true, &node, &authority, err);
    if (rc != 0)
        return rc;
    if (scenario_find_authority(s, authority) == NULL)
        return config_fail(err, node, "authority: no authority named '%s'", authority);
    rc = scenario_strdup(node, authority, &zone->authority, err);
    node = config_map_get(item, "ttl");
    zone->ttl = SCENARIO_DEFAULT_TTL;
    if (rc == 0 && node != NULL) {
        /* RFC 8767 §4 caps TTLs at 7 days; a scenario needs no more. */
        const struct config_key_spec spec = {
            "zones", "ttl", CONFIG_VALUE_TTL, 0, 7 * SCENARIO_DAY_MS, 0, 0};
        uint64_t ttl = 0;
        rc = config_value_parse(node, &spec, &ttl, err);
        if (rc != 0)
            return config_name_key(err, "ttl", rc);
        zone->ttl = (uint32_t)ttl;
    }
    return rc == 0 ? scenario_read_records(zone, item, err) : rc;
}

static int scenario_read_zones(struct scenario *s, const struct config_node *root,
                               struct config_error *err)
{
    const struct config_node *list;
    int rc = scenario_list(root, "scenario", "zones", true, SCENARIO_MAX_ZONES,
                           "SCENARIO_MAX_ZONES", &list, err);
    if (rc != 0)
        return rc;
    s->zones = calloc(list->count, sizeof(*s->zones));
    if (s->zones == NULL)
        return config_nomem(err, list);
    for (size_t i = 0; i < list->count && rc == 0; i++) {
        s->zone_count = i + 1;
        rc = scenario_read_zone(s, list->values[i], &s->zones[i], err);
    }
    return rc;
}

/* ---- endpoints ---- */

static int scenario_read_endpoint(struct scenario *s, const struct config_node *item,
                                  struct scenario_endpoint *e, struct config_error *err)
{
    int rc = scenario_expect_map(item, "endpoints", err);
    if (rc == 0)
        rc = config_check_keys(item, scenario_endpoint_keys, err);
    const struct config_node *node;
    const char *name;
    if (rc == 0)
        rc = scenario_ident(item, "endpoint", "name", &node, &name, err);
    if (rc != 0)
        return rc;
    e->line = node->line;
    const struct scenario_endpoint *first = scenario_find_endpoint(s, name);
    if (first != NULL)
        return config_fail(err, node, "name: endpoint '%s' is defined twice (first at line %u)",
                           name, first->line);
    rc = scenario_strdup(node, name, &e->name, err);
    if (rc == 0)
        rc = scenario_require(item, "endpoint", "address", &node, err);
    if (rc == 0)
        rc = scenario_address(node, "address", 0, &e->address, err);
    unsigned kind = SCENARIO_ENDPOINT_TCP;
    if (rc == 0)
        rc = scenario_choice(item, "kind", scenario_kind_names, SCENARIO_COUNT(scenario_kind_names),
                             &kind, err);
    e->kind = (enum scenario_endpoint_kind)kind;
    e->slow_ms = SCENARIO_DEFAULT_SLOW_MS;
    if (rc == 0)
        rc = scenario_duration32(item, "slow", 1, SCENARIO_MAX_DELAY_MS, &e->slow_ms, err);
    return rc;
}

static int scenario_read_endpoints(struct scenario *s, const struct config_node *root,
                                   struct config_error *err)
{
    const struct config_node *list;
    int rc = scenario_list(root, "scenario", "endpoints", false, SCENARIO_MAX_ENDPOINTS,
                           "SCENARIO_MAX_ENDPOINTS", &list, err);
    if (rc != 0 || list == NULL)
        return rc;
    s->endpoints = calloc(list->count, sizeof(*s->endpoints));
    if (s->endpoints == NULL)
        return config_nomem(err, list);
    for (size_t i = 0; i < list->count && rc == 0; i++) {
        s->endpoint_count = i + 1;
        rc = scenario_read_endpoint(s, list->values[i], &s->endpoints[i], err);
    }
    return rc;
}

/* ---- resolver ---- */

static int scenario_read_resolver(struct scenario *s, const struct config_node *root,
                                  struct config_error *err)
{
    struct scenario_resolver *r = &s->resolver;
    if (addr_parse(SCENARIO_DEFAULT_RESOLVER, s->port, &r->address) != 0)
        return config_fail(err, root, "internal error: bad default resolver address");
    const struct config_node *section;
    int rc = config_section(root, "resolver", CONFIG_MAP, &section, err);
    if (rc != 0 || section == NULL)
        return rc;
    rc = config_check_keys(section, scenario_resolver_keys, err);
    const struct config_node *node = config_map_get(section, "address");
    if (rc == 0 && node != NULL)
        rc = scenario_address(node, "address", s->port, &r->address, err);
    const char *compare;
    if (rc == 0)
        rc = config_get_text(section, "compare", &node, &compare, err);
    if (rc == 0 && compare != NULL) {
        if (strcmp(compare, "unbound") != 0)
            return config_fail(err, node, "compare: expected unbound, got '%s'", compare);
        r->compare_unbound = true;
    }
    if (rc == 0)
        rc = scenario_extra_config(section, scenario_resolver_reserved, &r->extra_config, err);
    return rc;
}

/* Two listeners on one address would fail at start; say which at load time. The one later in
 * the file is blamed: the resolver's default address comes first, a written one last. */
static int scenario_check_listeners(const struct scenario *s, const struct config_node *root,
                                    struct config_error *err)
{
    size_t total = s->authority_count + s->endpoint_count + 1;
    struct scenario_listener *seen = calloc(total, sizeof(*seen));
    if (seen == NULL)
        return config_nomem(err, root);
    const struct config_node *resolver_node =
        config_map_get(config_map_get(root, "resolver"), "address");
    const struct scenario_listener resolver = {&s->resolver.address, "the resolver", NULL,
                                               resolver_node};
    const struct config_node *authorities = config_map_get(root, "authorities");
    const struct config_node *endpoints = config_map_get(root, "endpoints");
    size_t n = 0;
    if (resolver_node == NULL)
        seen[n++] = resolver;
    for (size_t i = 0; i < s->authority_count; i++)
        seen[n++] = (struct scenario_listener){&s->authorities[i].address, "authority",
                                               s->authorities[i].name,
                                               config_map_get(authorities->values[i], "address")};
    for (size_t i = 0; i < s->endpoint_count; i++)
        seen[n++] =
            (struct scenario_listener){&s->endpoints[i].address, "endpoint", s->endpoints[i].name,
                                       config_map_get(endpoints->values[i], "address")};
    if (resolver_node != NULL)
        seen[n++] = resolver;
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++)
        rc = scenario_listener_admit(seen, i, err);
    free(seen);
    return rc;
}

/* ---- load ---- */

/* A query type by mnemonic (ldns) or TYPEnnn (RFC 3597 §5); meta and query-only types are
 * refused (RFC 6895 §3.1: 128-255, and OPT). */
static int scenario_qtype(const struct config_node *node, uint16_t *out, struct config_error *err)
{
    const char *text = NULL;
    int rc = config_get_string(node, &text, err);
    if (rc != 0)
        return config_name_key(err, "type", rc);
    unsigned long value = 0;
    if (strncasecmp(text, "TYPE", 4) == 0 && text[4] >= '0' && text[4] <= '9') {
        char *end = NULL;
        value = strtoul(text + 4, &end, 10);
        if (*end != '\0' || value > 65535)
            value = 0;
    } else {
        value = ldns_get_rr_type_by_name(text);
    }
    if (value == 0 || value == LDNS_RR_TYPE_OPT || (value >= 128 && value <= 255))
        return config_fail(err, node,
                           "type: expected a record type such as A, AAAA or TXT, got '%s'", text);
    *out = (uint16_t)value;
    return 0;
}

static int scenario_read_load_name(const struct config_node *item, struct scenario_name *name,
                                   struct config_error *err)
{
    name->qtype = LDNS_RR_TYPE_A;
    name->weight = 1;
    if (item->kind == CONFIG_SCALAR)
        return scenario_domain(item, "names", &name->text, name->wire, &name->wire_len, err);
    if (item->kind != CONFIG_MAP)
        return config_fail(err, item,
                           "names: each entry must be a name or a map with name, type "
                           "and weight");
    int rc = config_check_keys(item, scenario_load_name_keys, err);
    const struct config_node *node;
    if (rc == 0)
        rc = scenario_require(item, "names entry", "name", &node, err);
    if (rc == 0)
        rc = scenario_domain(node, "name", &name->text, name->wire, &name->wire_len, err);
    node = config_map_get(item, "type");
    if (rc == 0 && node != NULL)
        rc = scenario_qtype(node, &name->qtype, err);
    if (rc == 0)
        rc = scenario_uint32(item, "weight", 1, SCENARIO_MAX_WEIGHT, &name->weight, err);
    return rc;
}

static int scenario_read_load(struct scenario *s, const struct config_node *root,
                              struct config_error *err)
{
    struct scenario_load *load = &s->load;
    const struct config_node *section;
    int rc = config_section(root, "load", CONFIG_MAP, &section, err);
    if (rc != 0)
        return rc;
    if (section == NULL)
        return scenario_missing(root, "scenario", "load", err);
    rc = config_check_keys(section, scenario_load_keys, err);
    const struct config_node *node;
    if (rc == 0)
        rc = scenario_require(section, "load", "rate", &node, err);
    if (rc == 0) {
        rc = scenario_uint32(section, "rate", 1, SCENARIO_MAX_RATE, &load->rate, err);
        rc = scenario_over_limit(node, false, SCENARIO_MAX_RATE, "SCENARIO_MAX_RATE", rc, err);
    }
    load->clients = 1;
    load->timeout_ms = SCENARIO_DEFAULT_TIMEOUT_MS;
    if (rc == 0)
        rc = scenario_uint32(section, "clients", 1, SCENARIO_MAX_CLIENTS, &load->clients, err);
    if (rc == 0)
        rc = scenario_duration32(section, "timeout", 10, 60000, &load->timeout_ms, err);
    const struct config_node *list = NULL;
    if (rc == 0)
        rc = scenario_list(section, "load", "names", true, SCENARIO_MAX_NAMES, "SCENARIO_MAX_NAMES",
                           &list, err);
    if (rc != 0)
        return rc;
    load->names = calloc(list->count, sizeof(*load->names));
    if (load->names == NULL)
        return config_nomem(err, list);
    for (size_t i = 0; i < list->count && rc == 0; i++) {
        load->name_count = i + 1;
        rc = scenario_read_load_name(list->values[i], &load->names[i], err);
    }
    return rc;
}

/* ---- timeline ---- */

/* The one action key of an event, and its value. */
static int scenario_event_action(const struct config_node *item,
                                 const struct scenario_action_spec **spec,
                                 const struct config_node **value, struct config_error *err)
{
    *spec = NULL;
    for (size_t i = 0; i < item->count; i++) {
        for (size_t j = 0; j < SCENARIO_COUNT(scenario_actions); j++) {
            if (strcmp(item->keys[i], scenario_actions[j].key) != 0)
                continue;
            if (*spec != NULL) {
                config_fail(err, item,
                            "event has two actions, '%s' and '%s': write one event for each",
                            (*spec)->key, item->keys[i]);
                err->line = item->key_lines[i];
                return BALLAST_EINVAL;
            }
            *spec = &scenario_actions[j];
            *value = item->values[i];
        }
    }
    if (*spec != NULL)
        return 0;
    int rc = config_check_keys(item, scenario_event_keys, err);
    if (rc != 0)
        return rc;
    return config_fail(err, item,
                       "event needs one action: fault, heal, endpoint, restart, kill, start, "
                       "push-zone, restore-zone or push-feed");
}

/* The text of an event's target (the action's value or target:), not empty. */
static int scenario_target_text(const struct config_node *node, const char *key, const char **out,
                                struct config_error *err)
{
    int rc = config_get_string(node, out, err);
    if (rc != 0)
        return config_name_key(err, key, rc);
    return (*out)[0] != '\0' ? 0 : config_fail(err, node, "%s: must not be empty", key);
}

/* The value of the action key (or of key) as a target that must name an authority. */
static int scenario_event_authority(const struct scenario *s, const struct config_node *node,
                                    const char *key, struct scenario_event *ev,
                                    struct config_error *err)
{
    const char *name = NULL;
    int rc = scenario_target_text(node, key, &name, err);
    if (rc != 0)
        return rc;
    if (scenario_find_authority(s, name) == NULL)
        return config_fail(err, node, "%s: no authority named '%s'", key, name);
    return scenario_strdup(node, name, &ev->target, err);
}

/* restart, kill and start: the resolver or an authority. */
static int scenario_event_daemon(const struct scenario *s, const struct config_node *node,
                                 const char *key, struct scenario_event *ev,
                                 struct config_error *err)
{
    const char *name = NULL;
    int rc = scenario_target_text(node, key, &name, err);
    if (rc != 0)
        return rc;
    if (strcmp(name, SCENARIO_RESOLVER) != 0 && scenario_find_authority(s, name) == NULL)
        return config_fail(err, node, "%s: '%s' is neither 'resolver' nor an authority", key, name);
    return scenario_strdup(node, name, &ev->target, err);
}

static int scenario_event_zone(const struct scenario *s, const struct config_node *node,
                               const char *key, struct scenario_event *ev, struct config_error *err)
{
    uint8_t wire[WIRE_NAME_MAX];
    size_t wire_len = 0;
    int rc = scenario_domain(node, key, &ev->target, wire, &wire_len, err);
    if (rc == 0 && scenario_find_zone(s, ev->target) == NULL)
        return config_fail(err, node, "%s: no zone named '%s'", key, ev->target);
    return rc;
}

static int scenario_event_endpoint(const struct scenario *s, const struct config_node *item,
                                   const struct config_node *node, struct scenario_event *ev,
                                   struct config_error *err)
{
    const char *name = NULL;
    int rc = scenario_target_text(node, "endpoint", &name, err);
    if (rc != 0)
        return rc;
    if (scenario_find_endpoint(s, name) == NULL)
        return config_fail(err, node, "endpoint: no endpoint named '%s'", name);
    rc = scenario_strdup(node, name, &ev->target, err);
    if (rc == 0 && config_map_get(item, "state") == NULL)
        return scenario_missing(item, "endpoint event", "state", err);
    unsigned state = SCENARIO_ENDPOINT_UP;
    if (rc == 0)
        rc = scenario_choice(item, "state", scenario_state_names,
                             SCENARIO_COUNT(scenario_state_names), &state, err);
    ev->state = (enum scenario_endpoint_state)state;
    return rc;
}

/* content: of push-zone and push-feed. */
static int scenario_event_content(const struct config_node *item, const char *what,
                                  struct scenario_event *ev, struct config_error *err)
{
    if (config_map_get(item, "content") == NULL)
        return scenario_missing(item, what, "content", err);
    unsigned bad = SCENARIO_BAD_GARBAGE;
    int rc = scenario_choice(item, "content", scenario_bad_names,
                             SCENARIO_COUNT(scenario_bad_names), &bad, err);
    ev->bad = (enum scenario_bad_input)bad;
    return rc;
}

/* A file in the run directory: relative, and no ".." can lead out of it. */
static int scenario_event_feed(const struct scenario *s, const struct config_node *item,
                               const struct config_node *value, struct scenario_event *ev,
                               struct config_error *err)
{
    int rc = scenario_event_authority(s, value, "push-feed", ev, err);
    const struct config_node *node;
    const char *file;
    if (rc == 0)
        rc = scenario_text(item, "push-feed event", "file", true, &node, &file, err);
    if (rc != 0)
        return rc;
    bool escapes = file[0] == '/' || strcmp(file, "..") == 0 || strncmp(file, "../", 3) == 0 ||
                   strstr(file, "/../") != NULL ||
                   (strlen(file) >= 3 && strcmp(file + strlen(file) - 3, "/..") == 0);
    if (escapes)
        return config_fail(err, node, "file: '%s' must be a relative path inside the run directory",
                           file);
    rc = scenario_strdup(node, file, &ev->file, err);
    return rc == 0 ? scenario_event_content(item, "push-feed event", ev, err) : rc;
}

/* name of an empty or nxdomain fault: a domain in a zone the target authority serves. */
static int scenario_fault_name_option(const struct scenario *s, const struct config_node *node,
                                      struct scenario_event *ev, struct config_error *err)
{
    uint8_t wire[WIRE_NAME_MAX];
    size_t wire_len = 0;
    int rc = scenario_domain(node, "name", &ev->name, wire, &wire_len, err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < s->zone_count; i++) {
        const struct scenario_zone *zone = &s->zones[i];
        uint8_t apex[WIRE_NAME_MAX];
        size_t apex_len = 0;
        if (strcmp(zone->authority, ev->target) == 0 &&
            wire_name_from_text(zone->name, apex, &apex_len) == 0 &&
            wire_name_is_subdomain(wire, wire_len, apex, apex_len))
            return 0;
    }
    return config_fail(err, node, "name: '%s' is in no zone that authority '%s' serves", ev->name,
                       ev->target);
}

/* percent, delay and name belong to some fault kinds only; kind_node is the fault: value. */
static int scenario_fault_options(const struct scenario *s, const struct config_node *item,
                                  const struct config_node *kind_node, struct scenario_event *ev,
                                  struct config_error *err)
{
    const char *kind = scenario_fault_name(ev->fault);
    const struct config_node *percent = config_map_get(item, "percent");
    const struct config_node *delay = config_map_get(item, "delay");
    const struct config_node *name = config_map_get(item, "name");
    bool is_loss = ev->fault == SCENARIO_FAULT_LOSS,
         is_latency = ev->fault == SCENARIO_FAULT_LATENCY;
    bool takes_name = ev->fault == SCENARIO_FAULT_EMPTY || ev->fault == SCENARIO_FAULT_NXDOMAIN;
    if (is_loss && percent == NULL)
        return config_fail(err, kind_node, "fault: loss needs 'percent' (0 to 100)");
    if (!is_loss && percent != NULL)
        return config_fail(err, percent, "percent: only a loss fault takes a percent, not %s",
                           kind);
    if (is_latency && delay == NULL)
        return config_fail(err, kind_node, "fault: latency needs 'delay' (1ms to 10m)");
    if (!is_latency && delay != NULL)
        return config_fail(err, delay, "delay: only a latency fault takes a delay, not %s", kind);
    if (!takes_name && name != NULL)
        return config_fail(err, name, "name: only empty and nxdomain faults take a name, not %s",
                           kind);
    int rc = scenario_uint32(item, "percent", 0, 100, &ev->percent, err);
    if (rc == 0)
        rc = scenario_duration32(item, "delay", 1, SCENARIO_MAX_DELAY_MS, &ev->delay_ms, err);
    if (rc == 0 && name != NULL)
        rc = scenario_fault_name_option(s, name, ev, err);
    return rc;
}

static int scenario_event_fault(const struct scenario *s, const struct config_node *item,
                                const struct config_node *value, struct scenario_event *ev,
                                struct config_error *err)
{
    unsigned fault = 0;
    int rc = scenario_choice(item, "fault", scenario_fault_names,
                             SCENARIO_COUNT(scenario_fault_names), &fault, err);
    ev->fault = (enum scenario_fault)fault;
    const struct config_node *target;
    if (rc == 0)
        rc = scenario_require(item, "fault event", "target", &target, err);
    if (rc == 0)
        rc = scenario_event_authority(s, target, "target", ev, err);
    return rc == 0 ? scenario_fault_options(s, item, value, ev, err) : rc;
}

static int scenario_read_event(const struct scenario *s, const struct config_node *item,
                               struct scenario_event *ev, struct config_error *err)
{
    if (item->kind != CONFIG_MAP)
        return config_fail(err, item, "timeline: each event must be a map with 'at' and an action");
    ev->line = item->line;
    const struct scenario_action_spec *spec;
    const struct config_node *value = NULL;
    int rc = scenario_event_action(item, &spec, &value, err);
    if (rc == 0)
        rc = config_check_keys(item, spec->keys, err);
    const struct config_node *at;
    if (rc == 0)
        rc = scenario_require(item, "event", "at", &at, err);
    if (rc == 0)
        rc = scenario_duration(item, "at", 0, SCENARIO_MAX_DURATION_MS, &ev->at_ms, err);
    if (rc != 0)
        return rc;
    char when[32], end[32];
    if (ev->at_ms > s->duration_ms)
        return config_fail(err, at, "at: %s is after the end of the scenario (duration %s)",
                           scenario_format_ms(ev->at_ms, when, sizeof(when)),
                           scenario_format_ms(s->duration_ms, end, sizeof(end)));
    ev->action = spec->action;
    switch (spec->action) {
    case SCENARIO_FAULT:
        return scenario_event_fault(s, item, value, ev, err);
    case SCENARIO_HEAL:
        return scenario_event_authority(s, value, spec->key, ev, err);
    case SCENARIO_ENDPOINT:
        return scenario_event_endpoint(s, item, value, ev, err);
    case SCENARIO_RESTART:
    case SCENARIO_KILL:
    case SCENARIO_START:
        return scenario_event_daemon(s, value, spec->key, ev, err);
    case SCENARIO_PUSH_ZONE:
        rc = scenario_event_zone(s, value, spec->key, ev, err);
        return rc == 0 ? scenario_event_content(item, "push-zone event", ev, err) : rc;
    case SCENARIO_RESTORE_ZONE:
        return scenario_event_zone(s, value, spec->key, ev, err);
    case SCENARIO_PUSH_FEED:
        return scenario_event_feed(s, item, value, ev, err);
    }
    return config_fail(err, item, "internal error: unhandled action");
}

/* Stable by at_ms (insertion sort: at most SCENARIO_MAX_EVENTS, usually a handful). */
static void scenario_sort_events(struct scenario_event *events, size_t count)
{
    for (size_t i = 1; i < count; i++) {
        struct scenario_event ev = events[i];
        size_t j = i;
        for (; j > 0 && events[j - 1].at_ms > ev.at_ms; j--)
            events[j] = events[j - 1];
        events[j] = ev;
    }
}

/* kill, start and restart in time order: start only a killed daemon, kill or restart only a
 * running one. Index 0 is the resolver, 1 + i authority i. */
static int scenario_check_daemon_events(const struct scenario *s, struct config_error *err)
{
    bool killed[1 + SCENARIO_MAX_AUTHORITIES] = {false};
    for (size_t i = 0; i < s->event_count; i++) {
        const struct scenario_event *ev = &s->events[i];
        if (ev->action != SCENARIO_KILL && ev->action != SCENARIO_START &&
            ev->action != SCENARIO_RESTART)
            continue;
        const struct scenario_authority *a = scenario_find_authority(s, ev->target);
        size_t index = a != NULL ? 1 + (size_t)(a - s->authorities) : 0;
        char when[32];
        scenario_format_ms(ev->at_ms, when, sizeof(when));
        const char *problem = NULL;
        if (ev->action == SCENARIO_START && !killed[index])
            problem = "is running then; start only follows a kill";
        else if (ev->action == SCENARIO_KILL && killed[index])
            problem = "is already killed";
        else if (ev->action == SCENARIO_RESTART && killed[index])
            problem = "is killed then; start it instead";
        if (problem != NULL) {
            snprintf(err->file, sizeof(err->file), "%s", s->source_file);
            config_fail(err, NULL, "%s at %s: '%s' %s", scenario_action_name(ev->action), when,
                        ev->target, problem);
            err->line = ev->line;
            return BALLAST_EINVAL;
        }
        killed[index] = ev->action == SCENARIO_KILL;
    }
    return 0;
}

static int scenario_read_timeline(struct scenario *s, const struct config_node *root,
                                  struct config_error *err)
{
    const struct config_node *list;
    int rc = scenario_list(root, "scenario", "timeline", false, SCENARIO_MAX_EVENTS,
                           "SCENARIO_MAX_EVENTS", &list, err);
    if (rc != 0 || list == NULL)
        return rc;
    s->events = calloc(list->count, sizeof(*s->events));
    if (s->events == NULL)
        return config_nomem(err, list);
    for (size_t i = 0; i < list->count && rc == 0; i++) {
        s->event_count = i + 1;
        rc = scenario_read_event(s, list->values[i], &s->events[i], err);
    }
    if (rc != 0)
        return rc;
    scenario_sort_events(s->events, s->event_count);
    return scenario_check_daemon_events(s, err);
}

/* ---- expect ---- */

static int scenario_read_window(struct scenario *s, const struct config_node *section,
                                struct config_error *err)
{
    const struct config_node *window;
    int rc = config_section(section, "window", CONFIG_MAP, &window, err);
    if (rc != 0 || window == NULL)
        return rc;
    rc = config_check_keys(window, scenario_window_keys, err);
    const struct config_node *length, *rate;
    if (rc == 0)
        rc = scenario_require(window, "window", "length", &length, err);
    if (rc == 0)
        rc = scenario_require(window, "window", "success-rate", &rate, err);
    if (rc == 0)
        rc = scenario_duration(window, "length", 1000, s->duration_ms, &s->expect.window_ms, err);
    if (rc == 0)
        rc = scenario_permille(rate, "success-rate", &s->expect.window_success_permille, err);
    s->expect.has_window = rc == 0;
    return rc;
}

static int scenario_read_never_empty(struct scenario *s, const struct config_node *section,
                                     struct config_error *err)
{
    struct scenario_expect *expect = &s->expect;
    const struct config_node *list;
    int rc = config_section(section, "never-empty", CONFIG_LIST, &list, err);
    if (rc != 0 || list == NULL)
        return rc;
    if (list->count > SCENARIO_MAX_NAMES) {
        config_fail(err, list->values[SCENARIO_MAX_NAMES],
                    "never-empty: too many entries: %zu (limit is %u, SCENARIO_MAX_NAMES)",
                    list->count, SCENARIO_MAX_NAMES);
        return BALLAST_ELIMIT;
    }
    expect->never_empty = calloc(list->count ? list->count : 1, sizeof(*expect->never_empty));
    if (expect->never_empty == NULL)
        return config_nomem(err, list);
    for (size_t i = 0; i < list->count; i++) {
        uint8_t wire[WIRE_NAME_MAX];
        size_t wire_len = 0;
        expect->never_empty_count = i + 1;
        const struct config_node *item = list->values[i];
        rc = scenario_domain(item, "never-empty", &expect->never_empty[i], wire, &wire_len, err);
        if (rc != 0)
            return rc;
        bool loaded = false;
        for (size_t j = 0; j < s->load.name_count && !loaded; j++)
            loaded = strcmp(s->load.names[j].text, expect->never_empty[i]) == 0;
        if (!loaded)
            return config_fail(err, item,
                               "never-empty: '%s' is not in load.names (only queried names can "
                               "be checked)",
                               expect->never_empty[i]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(expect->never_empty[j], expect->never_empty[i]) == 0)
                return config_fail(err, item, "never-empty: '%s' is listed twice",
                                   expect->never_empty[i]);
    }
    return 0;
}

static int scenario_read_expect(struct scenario *s, const struct config_node *root,
                                struct config_error *err)
{
    struct scenario_expect *expect = &s->expect;
    const struct config_node *section;
    int rc = config_section(root, "expect", CONFIG_MAP, &section, err);
    if (rc != 0 || section == NULL)
        return rc;
    rc = config_check_keys(section, scenario_expect_keys, err);
    const struct config_node *node = config_map_get(section, "success-rate");
    if (rc == 0 && node != NULL) {
        rc = scenario_permille(node, "success-rate", &expect->success_permille, err);
        expect->has_success_rate = rc == 0;
    }
    if (rc == 0)
        rc = scenario_read_window(s, section, err);
    if (rc == 0 && config_map_get(section, "p99-latency") != NULL) {
        rc = scenario_duration32(section, "p99-latency", 1, 60000, &expect->p99_ms, err);
        expect->has_p99 = rc == 0;
    }
    if (rc == 0 && config_map_get(section, "max-upstream-qps") != NULL) {
        rc = scenario_uint32(section, "max-upstream-qps", 0, UINT32_MAX, &expect->max_upstream_qps,
                             err);
        expect->has_upstream = rc == 0;
    }
    return rc == 0 ? scenario_read_never_empty(s, section, err) : rc;
}

/* ---- whole file ---- */

static int scenario_read(struct scenario *s, const struct config_node *root,
                         struct config_error *err)
{
    int rc = config_check_keys(root, scenario_top_keys, err);
    if (rc == 0)
        rc = scenario_read_header(s, root, err);
    if (rc == 0)
        rc = scenario_read_authorities(s, root, err);
    if (rc == 0)
        rc = scenario_read_zones(s, root, err);
    if (rc == 0)
        rc = scenario_read_endpoints(s, root, err);
    if (rc == 0)
        rc = scenario_read_resolver(s, root, err);
    if (rc == 0)
        rc = scenario_check_listeners(s, root, err);
    if (rc == 0)
        rc = scenario_read_load(s, root, err);
    if (rc == 0)
        rc = scenario_read_timeline(s, root, err);
    if (rc == 0)
        rc = scenario_read_expect(s, root, err);
    return rc;
}

static int scenario_set_paths(struct scenario *s, const char *path)
{
    s->source_file = strdup(path);
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        s->dir = strdup(".");
    else if (slash == path)
        s->dir = strdup("/");
    else
        s->dir = strndup(path, (size_t)(slash - path));
    return s->source_file != NULL && s->dir != NULL ? 0 : BALLAST_ENOMEM;
}

/* config_parse_file names the daemons' limit; a scenario has its own. */
static void scenario_size_error(const char *path, struct config_error *err)
{
    struct stat st;
    snprintf(err->file, sizeof(err->file), "%s", path);
    err->line = 0;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        snprintf(err->reason, sizeof(err->reason),
                 "scenario file is %lld bytes, limit is %u (SCENARIO_MAX_BYTES)",
                 (long long)st.st_size, SCENARIO_MAX_BYTES);
    else
        snprintf(err->reason, sizeof(err->reason),
                 "scenario file is more than %u bytes (SCENARIO_MAX_BYTES)", SCENARIO_MAX_BYTES);
}

int scenario_load(const char *path, struct scenario *s, struct config_error *err)
{
    memset(s, 0, sizeof(*s));
    struct config_node *root = NULL;
    int rc = config_parse_file(path, SCENARIO_MAX_BYTES, &root, err);
    if (rc == BALLAST_ELIMIT)
        scenario_size_error(path, err);
    if (rc != 0)
        return rc;
    rc = scenario_set_paths(s, path);
    if (rc != 0)
        config_nomem(err, root);
    else
        rc = scenario_read(s, root, err);
    config_free(root);
    if (rc != 0)
        scenario_free(s);
    return rc;
}
