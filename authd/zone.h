/* Zones in memory: loaded from RFC 1035 master files with ldns, checked against limits, and kept
 * as a hash of nodes (owner names, including empty non-terminals) whose RRsets are pre-rendered
 * in uncompressed wire form for the answer builder. Also the zone set: all zones of a server,
 * found by most specific apex. A loaded zone is immutable; reload builds a new one. */
#ifndef BALLAST_ZONE_H
#define BALLAST_ZONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limit.h"

/* One RRset. data holds `count` records, each [RDLENGTH: 2 bytes big-endian][RDATA], RDATA in
 * uncompressed wire form with domain names lowercased. TTL is the RRset's (the lowest of its
 * records, RFC 2181 §5.2). */
struct zone_rrset {
    uint16_t type;
    uint16_t count;
    uint32_t ttl;
    uint32_t data_len;
    uint8_t *data;
};

enum zone_node_flags {
    ZONE_NODE_APEX = 1u << 0,           /* the zone apex */
    ZONE_NODE_DELEGATION = 1u << 1,     /* has NS and is not the apex: a zone cut */
    ZONE_NODE_OCCLUDED = 1u << 2,       /* strictly below a zone cut (glue or occluded data) */
    ZONE_NODE_WILDCARD_CHILD = 1u << 3, /* "*.<this name>" exists in the zone */
};

struct zone_node {
    uint8_t *name; /* lowercase, uncompressed wire form, absolute */
    uint8_t name_len;
    uint8_t labels;            /* not counting the root */
    uint16_t rrset_count;      /* 0 for an empty non-terminal */
    uint32_t flags;            /* enum zone_node_flags */
    struct zone_rrset *rrsets; /* sorted by type */
    struct zone_node *hash_next;
};

struct zone {
    char *name_text;   /* apex as text, with trailing dot */
    char *file;        /* file it was loaded from */
    uint8_t apex[255]; /* lowercase wire form */
    uint8_t apex_len;
    uint8_t apex_labels;
    uint32_t serial;
    uint32_t negative_ttl; /* RFC 2308 §5: min(SOA TTL, SOA MINIMUM) */
    const struct zone_node *apex_node;
    const struct zone_rrset *soa;
    size_t node_count;
    size_t record_count;
    size_t bucket_mask; /* buckets = mask + 1, a power of two */
    struct zone_node **buckets;
    void *storage; /* private: owns nodes, names and rdata */
};

struct zone_error {
    char file[512]; /* the file (zone or $INCLUDE) where the error is */
    unsigned line;  /* 0 if not tied to a line */
    char reason[512];
};

/* Load the zone `origin` (text, e.g. "example.test") from file. Enforces limits->max_zone_records,
 * max_zone_bytes (total bytes read, including $INCLUDE files), max_rrset_records and
 * max_include_depth; $INCLUDE is allowed only for files inside the zone file's directory.
 * Requires exactly one SOA, at the apex, and NS at the apex; records outside the zone, CNAME
 * beside other data, and class other than IN are errors. On error nothing is allocated and err
 * says file, line and reason. The zone is owned by the caller (zone_free). */
int zone_load(const char *origin, const char *file, const struct limits *limits, struct zone **out,
              struct zone_error *err);

/* Exact lookup of a lowercase wire name; NULL if the name does not exist (empty non-terminals
 * exist). */
const struct zone_node *zone_find_node(const struct zone *zone, const uint8_t *name, size_t len);
/* The RRset of a given type at a node, or NULL. */
const struct zone_rrset *zone_node_rrset(const struct zone_node *node, uint16_t type);
void zone_free(struct zone *zone);

/* All zones of a server. */
struct zone_set {
    struct zone **zones;
    size_t count;
    size_t bucket_mask;
    struct zone **buckets; /* open addressing by apex hash */
};

/* Build a set taking ownership of the zones array entries (the array itself is copied).
 * Duplicate apexes are an error (BALLAST_EEXIST); on error the zones are NOT freed. */
int zone_set_create(struct zone **zones, size_t count, struct zone_set **out);
/* The zone whose apex is the longest suffix of name (lowercase wire), or NULL. */
const struct zone *zone_set_find(const struct zone_set *set, const uint8_t *name, size_t len);
/* The zone with exactly this apex, or NULL. */
const struct zone *zone_set_find_exact(const struct zone_set *set, const uint8_t *apex, size_t len);
/* Free the set and every zone in it. */
void zone_set_free(struct zone_set *set);
/* Free the set but not its zones (when the zones move to a new set). */
void zone_set_free_shallow(struct zone_set *set);

#endif
