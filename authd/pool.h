/* Health-checked RRsets ("pools"): their definition, the choice of which members answer (best
 * priority level with enough healthy members, never empty), and the answer set published to the
 * workers, from which each query picks its records (weights, a maximum, rotation). */
#ifndef BALLAST_POOL_H
#define BALLAST_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"
#include "zone.h"

#define POOL_MAX_MEMBERS 4096
#define POOL_RDATA_MAX 255 /* an address or a (CNAME target) name */

enum pool_empty_mode {
    POOL_FAIL_OPEN = 0,    /* every member down: answer with all members (default) */
    POOL_LAST_HEALTHY = 1, /* every member down: keep answering the last healthy set */
    POOL_FAIL_CLOSED = 2,  /* every member down: no records (plain DNS without the never-empty
                              rule; only `ballast-authd --fail-closed`, for replay baselines) */
};

struct pool_member_def {
    uint8_t rdata[POOL_RDATA_MAX]; /* A: 4 bytes, AAAA: 16, CNAME: lowercase wire name */
    uint16_t rdlen;
    uint16_t priority; /* lower is preferred (0 = first level) */
    uint16_t weight;   /* relative share within its level, >= 1 */
    char text[256];    /* as configured ("192.0.2.10", "eu.api.example.test."), for ops */
};

struct pool_def {
    char *name;                   /* "api.example.test/A", for ops and feeds */
    uint8_t owner[WIRE_NAME_MAX]; /* lowercase wire */
    size_t owner_len;
    uint16_t type; /* WIRE_TYPE_A, _AAAA or _CNAME */
    uint32_t ttl;  /* short, e.g. 30 s */
    struct pool_member_def *members;
    size_t count;
    uint32_t min_healthy; /* a level answers only with at least this many serving members */
    uint32_t max_records; /* records per answer (0 = all) */
    enum pool_empty_mode empty_mode;
};

/* The set of records a pool answers with now. Immutable once built; published with RCU. */
struct pool_answer {
    uint32_t ttl;
    uint16_t type;
    uint16_t count;               /* members in the set */
    uint16_t max_records;         /* per answer, <= count */
    uint16_t level;               /* priority level answering */
    bool fail_open;               /* no member was healthy: this is the never-empty fallback */
    bool last_healthy;            /* with fail_open: the fallback is the last healthy set kept
                                     (POOL_LAST_HEALTHY), not all members */
    const uint16_t *weights;      /* count entries */
    const uint16_t *member_index; /* count entries: index into pool_def.members */
    uint32_t total_weight;
    uint32_t data_len;
    const uint8_t *data; /* count x [RDLENGTH][RDATA], zone_rrset layout */
};

/* Choose the members that answer, from serving[] (one flag per member):
 *  1. the lowest priority level with at least min_healthy serving members answers with its
 *     serving members;
 *  2. else the lowest level with any serving member;
 *  3. else (no member serving), with fail_open set: all members when POOL_FAIL_OPEN, or
 *     previous's set (last_healthy set too) when POOL_LAST_HEALTHY and previous is not itself an
 *     all-members fail-open set (else all members).
 * *out is owned by the caller (pool_answer_free). Returns 0, BALLAST_ENOMEM, or BALLAST_EINVAL
 * for a pool without members (or more than POOL_MAX_MEMBERS). */
int pool_build_answer(const struct pool_def *def, const bool *serving,
                      const struct pool_answer *previous, struct pool_answer **out);
void pool_answer_free(struct pool_answer *answer);

/* For one query: pick up to max_records records of answer by weight (without replacement),
 * starting from a position derived from seed so successive queries rotate, and present them as
 * a zone_rrset whose data lives in buf (buf_len >= answer->data_len). Returns 0 or
 * BALLAST_ESPACE. */
int pool_answer_pick(const struct pool_answer *answer, uint32_t seed, uint8_t *buf, size_t buf_len,
                     struct zone_rrset *out);

/* Parse a member as written in config for a pool of type: an IPv4/IPv6 address or a name. */
int pool_member_parse(uint16_t type, const char *text, struct pool_member_def *out);

void pool_def_free(struct pool_def *def);

#endif
