/* ballast-resolver configuration: the YAML schema (server, access-control, resolution, cache,
 * forward, stub, limits, client-limits) and the command-line helpers, both producing one struct
 * resolver_config.
 */
#ifndef BALLAST_RESOLVER_CONFIG_H
#define BALLAST_RESOLVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "addr.h"
#include "config.h"
#include "control.h"
#include "limit.h"
#include "log.h"
#include "rrl.h"
#include "wire.h"

#define RESOLVER_DEFAULT_PORT 53
#define RESOLVER_DEFAULT_METRICS_PORT 9153     /* server.metrics without a port */
#define RESOLVER_DEFAULT_CONTROL_TCP_PORT 8953 /* server.control-tcp without a port */
#define RESOLVER_MAX_LISTEN 64
/* Servers listed for one forward or stub zone. */
#define RESOLVER_MAX_ZONE_SERVERS 32
/* Forward plus stub zones. */
#define RESOLVER_MAX_ZONES 4096
/* The real root servers' hints shipped in zones/ (a copy of IANA's named.root). A relative
 * path is taken from the working directory; a packaged build may define an installed path. */
#ifndef RESOLVER_DEFAULT_ROOT_HINTS
#define RESOLVER_DEFAULT_ROOT_HINTS "zones/root.hints"
#endif

/* Defaults of the resolution and cache sections (docs/resolver-configuration.md). */
#define RESOLVER_DEFAULT_MAX_REFERRALS 30u
#define RESOLVER_DEFAULT_MAX_NS_NAMES 8u /* NXNSAttack, CVE-2020-12662 */
#define RESOLVER_DEFAULT_MAX_OUTBOUND_QUERIES 64u
#define RESOLVER_DEFAULT_MAX_CNAME_CHAIN 12u
#define RESOLVER_DEFAULT_QUERY_TIMEOUT_MS 10000u
#define RESOLVER_DEFAULT_UPSTREAM_TIMEOUT_MS 1500u
#define RESOLVER_DEFAULT_CACHE_BYTES (64ull << 20)
#define RESOLVER_DEFAULT_CACHE_SHARDS 16u
#define RESOLVER_DEFAULT_MIN_TTL 0u
#define RESOLVER_DEFAULT_MAX_TTL 86400u
#define RESOLVER_DEFAULT_MAX_NEGATIVE_TTL 3600u
#define RESOLVER_DEFAULT_MAX_PENDING                                                               \
    1024u /* resolutions in flight per worker (Unbound's                                           \
             num-queries-per-thread) */
#define RESOLVER_DEFAULT_SNAPSHOT_INTERVAL_MS 300000u /* 5 minutes */
/* Serve-stale (RFC 8767) defaults: docs/serve-stale.md. */
#define RESOLVER_DEFAULT_MAX_STALE_AGE 86400u        /* seconds (RFC 8767 §5: 1 to 3 days) */
#define RESOLVER_DEFAULT_STALE_TTL 30u               /* seconds (RFC 8767 §4) */
#define RESOLVER_DEFAULT_CLIENT_TIMEOUT_MS 1800u     /* RFC 8767 §5: client response timer */
#define RESOLVER_DEFAULT_FAILURE_RECHECK_MS 30000u   /* RFC 8767 §5: failure recheck timer */
#define RESOLVER_DEFAULT_PREFETCH_PERCENT 10u        /* refresh in the last 10% of the TTL */
#define RESOLVER_DEFAULT_SUSPICION_WINDOW_MS 600000u /* 10 minutes */
#define RESOLVER_MAX_CRITICAL_SUFFIXES 1024

enum resolver_zone_kind {
    RESOLVER_ZONE_FORWARD, /* queries sent with RD=1 to recursive upstreams */
    RESOLVER_ZONE_STUB,    /* queries sent with RD=0 to authoritative servers */
};

/* A forward or stub zone: names at or below `name` go to the servers in `to`. */
struct resolver_zone_config {
    enum resolver_zone_kind kind;
    char *name;                  /* lowercase, no trailing dot except the root "." */
    uint8_t wire[WIRE_NAME_MAX]; /* the same name, lowercase wire form */
    size_t wire_len;
    struct addr *to; /* owned; port 53 unless given. Neither upstream-port nor the private
                        address check applies: the operator named these servers */
    size_t to_count;
    unsigned line; /* of the zone name in the config file; 0 when it came from a flag */
};

struct resolver_resolution_config {
    char *root_hints;              /* path of the hints file (config-relative paths resolved) */
    bool qname_minimisation;       /* RFC 9156, relaxed mode */
    bool allow_private_upstreams;  /* may query acl_address_is_private() servers (tests) */
    uint16_t upstream_port;        /* port of servers from hints and referrals */
    uint32_t max_referrals;        /* referrals followed for one client query */
    uint32_t max_ns_names;         /* NS names without glue resolved for one client query */
    uint32_t max_outbound_queries; /* upstream queries sent for one client query */
    uint32_t max_cname_chain;      /* CNAME/DNAME links followed for one client query */
    uint32_t query_timeout_ms;     /* whole client query, from arrival to answer */
    uint32_t upstream_timeout_ms;  /* longest wait for one upstream try (the RTO ceiling) */
    uint32_t max_pending;          /* resolutions in flight per worker; beyond, stale or SERVFAIL */
};

struct resolver_cache_config {
    uint64_t size_bytes;           /* memory for cached RRsets and negative entries */
    uint32_t shards;               /* a power of two */
    uint32_t min_ttl;              /* seconds; TTLs below are raised */
    uint32_t max_ttl;              /* seconds; TTLs above are lowered */
    uint32_t max_negative_ttl;     /* seconds; cap on RFC 2308 §5 negative TTLs */
    char *snapshot_file;           /* cache snapshot path (config-relative resolved); NULL = none */
    uint32_t snapshot_interval_ms; /* periodic snapshot writes; 0 = only on shutdown */
    uint64_t snapshot_max_bytes;   /* larger snapshot files are refused; 0 = twice size_bytes */
};

/* A name suffix in lowercase wire form. */
struct resolver_suffix {
    uint8_t wire[WIRE_NAME_MAX];
    size_t wire_len;
};

/* Serve-stale and graceful degradation (RFC 8767; docs/serve-stale.md). */
struct resolver_stale_config {
    bool enable;                  /* serve stale data when resolution fails or is slow */
    uint32_t max_stale_age;       /* seconds an expired entry is kept and may be served */
    uint32_t stale_ttl;           /* TTL of stale records in answers (seconds) */
    uint32_t client_timeout_ms;   /* answer stale after this long; 0 = at once, refresh behind */
    uint32_t failure_recheck_ms;  /* after a failure, answer stale without retrying this long */
    bool prefetch;                /* refresh popular entries before they expire */
    uint32_t prefetch_percent;    /* ... when a query finds less than this % of the TTL left */
    uint32_t suspicion_window_ms; /* keep data of critical names that turn empty this long */
    struct resolver_suffix *critical; /* critical suffixes (owned), may be NULL */
    size_t critical_count;
};

struct resolver_config {
    char *source_file; /* config file path, NULL when built from flags */
    struct addr listen[RESOLVER_MAX_LISTEN];
    char *listen_text[RESOLVER_MAX_LISTEN]; /* as written, for logs */
    size_t listen_count;
    unsigned workers; /* 0 = one per CPU */
    enum log_level log_level;
    enum log_format log_format; /* server.log-format / --log-format: text (default) or json */
    enum log_target log_target; /* server.log-target / --log-target: stderr (default) or syslog */
    bool log_queries;           /* server.log-queries: one info line per answer; off by default */
    char *control_path;         /* Unix control socket; NULL = none */
    char *pid_file;             /* NULL = none */
    char *user;                 /* server.user / --user: "USER[:GROUP]" to drop to; NULL = none */
    bool has_metrics;           /* server.metrics: the Prometheus endpoint (off by default) */
    struct addr metrics;
    struct control_tcp_config control_tcp; /* server.control-tcp, control-key-file; off */
    struct acl acl; /* the defaults (acl_defaults) unless access-control is given */
    struct resolver_resolution_config resolution;
    struct resolver_cache_config cache;
    struct resolver_stale_config stale;
    struct resolver_zone_config *zones; /* forward and stub zones, in the order given */
    size_t zone_count;
    struct limits limits; /* tcp-clients, tcp-idle-timeout, tcp-pipeline, edns-udp-size */
    struct rrl_config client_limits; /* queries per second per client prefix; off (rate 0) */
};

/* Defaults: no listeners, the default ACL, the shipped root hints, every default above.
 * Returns 0 or BALLAST_ENOMEM (cfg is then still safe to free). */
int resolver_config_init(struct resolver_config *cfg);
/* Free everything and leave cfg zeroed (not initialised); safe to call twice. */
void resolver_config_free(struct resolver_config *cfg);

/* Load a YAML file (schema in docs/resolver-configuration.md) into cfg, which is initialised
 * here. Unknown keys, bad values, duplicate zones or ACL prefixes are errors with file:line.
 * On error cfg is freed. */
int resolver_config_load(const char *path, struct resolver_config *cfg, struct config_error *err);

/* Command-line helpers; errors name "command line" and the flag. */
/* --listen ADDR[@PORT] (port 53 if omitted). */
int resolver_config_add_listen(struct resolver_config *cfg, const char *text,
                               struct config_error *err);
/* --forward ZONE=ADDR[@PORT][,ADDR[@PORT]...]; ZONE may be "." (forward everything). */
int resolver_config_add_forward_arg(struct resolver_config *cfg, const char *arg,
                                    struct config_error *err);
/* The same form for a stub zone (--stub). */
int resolver_config_add_stub_arg(struct resolver_config *cfg, const char *arg,
                                 struct config_error *err);
/* --root-hints FILE: kept as given (relative to the working directory). */
int resolver_config_set_root_hints(struct resolver_config *cfg, const char *path,
                                   struct config_error *err);
/* --upstream-port N (1-65535). */
int resolver_config_set_upstream_port(struct resolver_config *cfg, const char *text,
                                      struct config_error *err);
/* --workers N (0-256). */
int resolver_config_set_workers(struct resolver_config *cfg, const char *text,
                                struct config_error *err);
/* --log-level error|warn|info|debug. */
int resolver_config_set_log_level(struct resolver_config *cfg, const char *text,
                                  struct config_error *err);
/* --control PATH and --pid-file PATH: kept as given. */
int resolver_config_set_control(struct resolver_config *cfg, const char *path,
                                struct config_error *err);
int resolver_config_set_pid_file(struct resolver_config *cfg, const char *path,
                                 struct config_error *err);
/* --user USER[:GROUP]: the form is checked (daemon_user_check), the names at start-up. */
int resolver_config_set_user(struct resolver_config *cfg, const char *spec,
                             struct config_error *err);
/* --allow-private-upstreams needs no helper: set cfg->resolution.allow_private_upstreams. */

/* Final checks on the merged file and flags: at least one listener, unique forward/stub zone
 * names, each with at least one server, min-ttl <= max-ttl, upstream-timeout <= query-timeout.
 * Errors name the config file (or "command line") without a line. */
int resolver_config_validate(const struct resolver_config *cfg, struct config_error *err);

/* Is name (lowercase wire form) at or below one of the critical suffixes? */
bool resolver_config_is_critical(const struct resolver_config *cfg, const uint8_t *name,
                                 size_t len);

/* The forward or stub zone closest to name (lowercase wire form): the longest zone name equal
 * to or above it; NULL when none is (iterate from the root hints). */
const struct resolver_zone_config *resolver_config_find_zone(const struct resolver_config *cfg,
                                                             const uint8_t *name, size_t len);

#endif
