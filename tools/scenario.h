/* Outage scenarios for `ballast replay` (docs/scenarios.md): the YAML schema — topology (zones,
 * authorities, endpoints, the resolver), client load, a timeline of faults and expectations —
 * parsed and checked into one struct scenario, every error with file:line. */
#ifndef BALLAST_SCENARIO_H
#define BALLAST_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"
#include "wire.h"

/* Limits (a scenario is an input made by people and generators: DESIGN.md rule). */
#define SCENARIO_MAX_BYTES (1u << 20) /* file size */
#define SCENARIO_MAX_ZONES 64
#define SCENARIO_MAX_RECORDS 10000 /* per zone */
#define SCENARIO_MAX_AUTHORITIES 32
#define SCENARIO_MAX_ENDPOINTS 256
#define SCENARIO_MAX_NAMES 1000 /* in the client load */
#define SCENARIO_MAX_EVENTS 1000
#define SCENARIO_MAX_DURATION_MS (7ull * 86400000ull)
#define SCENARIO_MAX_RATE 100000u /* client queries per second (before --speed) */

/* What an event does. */
enum scenario_action {
    SCENARIO_FAULT,       /* fault on an authority (fault kind below) */
    SCENARIO_HEAL,        /* clear every fault of an authority */
    SCENARIO_ENDPOINT,    /* endpoint goes down, slow or up */
    SCENARIO_RESTART,     /* restart a daemon (SIGTERM, wait, start again) */
    SCENARIO_KILL,        /* SIGKILL a daemon (it stays down until a start event) */
    SCENARIO_START,       /* start a killed daemon again */
    SCENARIO_PUSH_ZONE,   /* replace a zone's file with bad content, then reload the authority */
    SCENARIO_PUSH_FEED,   /* replace a health feed file with bad content */
    SCENARIO_RESTORE_ZONE /* put the scenario's own zone file back and reload */
};

/* Faults an authority can be given (the daemons' fault-injection layer, common/fault.h). */
enum scenario_fault {
    SCENARIO_FAULT_DROP,     /* every query dropped (unreachable, blackholed) */
    SCENARIO_FAULT_LOSS,     /* percent of queries dropped */
    SCENARIO_FAULT_LATENCY,  /* every answer delayed by delay_ms */
    SCENARIO_FAULT_SERVFAIL, /* every answer SERVFAIL */
    SCENARIO_FAULT_REFUSED,  /* every answer REFUSED */
    SCENARIO_FAULT_EMPTY,    /* NOERROR with an empty answer (NODATA) for name */
    SCENARIO_FAULT_NXDOMAIN, /* NXDOMAIN for name */
    SCENARIO_FAULT_TRUNCATE, /* TC=1 with no records over UDP */
};

enum scenario_endpoint_state {
    SCENARIO_ENDPOINT_UP,
    SCENARIO_ENDPOINT_DOWN,
    SCENARIO_ENDPOINT_SLOW
};
enum scenario_endpoint_kind { SCENARIO_ENDPOINT_TCP, SCENARIO_ENDPOINT_HTTP };
/* Bad content for push events. */
enum scenario_bad_input { SCENARIO_BAD_GARBAGE, SCENARIO_BAD_OVERSIZED, SCENARIO_BAD_EMPTY };

struct scenario_zone {
    char *name;      /* "example.test" (no trailing dot), lowercase */
    char *authority; /* name of the authority serving it */
    uint32_t ttl;    /* default TTL of its records (seconds) */
    char **records;  /* master-file lines relative to the zone ("www A 192.0.2.1") */
    size_t record_count;
    unsigned line;
};

struct scenario_authority {
    char *name;          /* "auth1"; "root" is reserved for the generated root */
    struct addr address; /* 127.0.0.x; port 0 = the scenario's port */
    char *extra_config;  /* YAML appended to its generated config (e.g. a health: section) */
    unsigned line;
};

struct scenario_endpoint {
    char *name;
    struct addr address; /* where the tool listens (loopback) */
    enum scenario_endpoint_kind kind;
    uint32_t slow_ms; /* delay of a slow endpoint (default 5000) */
    unsigned line;
};

struct scenario_resolver {
    struct addr address;  /* where ballast-resolver listens */
    char *extra_config;   /* YAML appended to its generated config (serve-stale:, cache: ...) */
    bool compare_unbound; /* with --compare: the second run uses Unbound instead */
};

struct scenario_name {
    char *text; /* "www.example.test" */
    uint8_t wire[WIRE_NAME_MAX];
    size_t wire_len;
    uint16_t qtype;
    uint32_t weight; /* relative share of the queries (default 1) */
};

struct scenario_load {
    uint32_t rate;       /* queries per second, all clients together */
    uint32_t clients;    /* client sockets (default 1) */
    uint32_t timeout_ms; /* per query (default 2000) */
    struct scenario_name *names;
    size_t name_count;
};

struct scenario_event {
    uint64_t at_ms; /* scenario time */
    enum scenario_action action;
    char *target; /* authority, endpoint, "resolver" or zone name (push-zone) */
    enum scenario_fault fault;
    char *name;        /* empty/nxdomain: the name (text); NULL = every name */
    uint32_t percent;  /* loss */
    uint32_t delay_ms; /* latency */
    enum scenario_endpoint_state state;
    enum scenario_bad_input bad;
    char *file; /* push-feed: the feed file (relative to the scenario) */
    unsigned line;
};

/* Expectations; each is checked only when set. Rates are in per mille (0..1000). */
struct scenario_expect {
    bool has_success_rate;
    uint32_t success_permille; /* answers with data / queries, whole run */
    bool has_window;
    uint64_t window_ms;               /* every window of this length (scenario time) ... */
    uint32_t window_success_permille; /* ... has at least this success rate */
    bool has_p99;
    uint32_t p99_ms; /* client latency p99, whole run */
    bool has_upstream;
    uint32_t max_upstream_qps; /* resolver's upstream queries per second, any second */
    char **never_empty;        /* names that must never get NODATA/NXDOMAIN/SERVFAIL */
    size_t never_empty_count;
};

struct scenario {
    char *source_file;
    char *dir; /* directory of source_file (relative paths) */
    char *name;
    char *description;
    uint64_t duration_ms;
    uint16_t port; /* every daemon's port (default 5300) */
    struct scenario_zone *zones;
    size_t zone_count;
    struct scenario_authority *authorities;
    size_t authority_count;
    struct scenario_endpoint *endpoints;
    size_t endpoint_count;
    struct scenario_resolver resolver;
    struct scenario_load load;
    struct scenario_event *events; /* sorted by at_ms (stable) */
    size_t event_count;
    struct scenario_expect expect;
};

/* Parse and check a scenario file; on error *err has FILE:LINE: reason and s is freed. Checks:
 * unknown keys, ranges, every reference (zone authority, event target, never-empty name in the
 * load) resolves, addresses are loopback, events within the duration. */
int scenario_load(const char *path, struct scenario *s, struct config_error *err);
void scenario_free(struct scenario *s);

/* Names for messages and the CLI: "drop", "loss", ... and back. */
const char *scenario_fault_name(enum scenario_fault fault);
const char *scenario_action_name(enum scenario_action action);

#endif
