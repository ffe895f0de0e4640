/* Response rate limiting (RRL, after BIND, NSD and Knot DNS) and per-client query limits: a
 * fixed-size table of token buckets keyed by client prefix and a caller's key, shared by the
 * worker threads, deciding pass, slip (TC=1) or drop; and the config section both daemons read. */
#ifndef BALLAST_RRL_H
#define BALLAST_RRL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "wire.h"

/* Defaults (docs/authd.md "Response rate limiting", docs/limits.md "Rate limits"). */
#define RRL_DEFAULT_RATE 200u          /* responses per second per bucket (NSD, Knot DNS) */
#define RRL_DEFAULT_SLIP 2u            /* every 2nd limited response is a TC=1 slip */
#define RRL_DEFAULT_IPV4_PREFIX 24u    /* clients are grouped by /24 ... */
#define RRL_DEFAULT_IPV6_PREFIX 56u    /* ... and by /56 (BIND, NSD, Knot DNS) */
#define RRL_DEFAULT_TABLE_SIZE 100000u /* buckets (24 bytes each) */
#define RRL_RATE_MAX 1000000u          /* rate and burst: at most a million per second */
#define RRL_SLIP_MAX 100u
#define RRL_TABLE_SIZE_MIN 64u
#define RRL_TABLE_SIZE_MAX 16777216u /* 400 MB of buckets */
#define RRL_WHITELIST_MAX 64u        /* prefixes; checked by a linear scan per response */
#define RRL_WAYS 8u                  /* a key may sit in one of 8 buckets of its set */
/* A key: class (1 byte), QTYPE (2) and a name. */
#define RRL_KEY_MAX (3u + WIRE_NAME_MAX)

/* An address prefix. IPv4-mapped IPv6 is stored as IPv4, so one entry covers a client however
 * it arrives. Host bits past len are zero. */
struct rrl_prefix {
    sa_family_t family; /* AF_INET or AF_INET6 */
    uint8_t len;        /* bits: 0-32 or 0-128 */
    uint8_t addr[16];   /* network byte order; IPv4 in the first 4 bytes */
};

/* One limiter's settings (the authd rrl section or the resolver's client-limits section). */
struct rrl_config {
    bool enable;
    uint32_t rate;        /* tokens per second: 1..RRL_RATE_MAX */
    uint32_t burst;       /* bucket capacity; 0 = rate (one second's worth) */
    uint32_t slip;        /* 0: never slip; N: every Nth limited answer is a TC=1 slip */
    uint32_t ipv4_prefix; /* 1..32 */
    uint32_t ipv6_prefix; /* 1..128 */
    uint32_t table_size;  /* buckets, rounded up to a multiple of RRL_WAYS */
    size_t whitelist_count;
    struct rrl_prefix whitelist[RRL_WHITELIST_MAX]; /* never limited */
};

/* The two sections that fill a struct rrl_config. */
enum rrl_section_kind {
    RRL_SECTION_RESPONSES, /* authd `rrl:` enable, rate, burst, slip, ipv4-prefix, ipv6-prefix,
                              table-size, whitelist; off by default */
    RRL_SECTION_QUERIES,   /* resolver `client-limits:` rate (0 = off), burst, ipv4-prefix,
                              ipv6-prefix, table-size, whitelist; never slips */
};

/* The defaults of a section kind: RESPONSES is off with rate 200, slip 2, /24 and /56; QUERIES is
 * off (rate 0) with slip 0, /32 and /64 (one client, one bucket). Both have 100000 buckets. */
void rrl_config_defaults(struct rrl_config *cfg, enum rrl_section_kind kind);
/* The section's name in a config file: "rrl" or "client-limits". */
const char *rrl_section_name(enum rrl_section_kind kind);
/* Read the kind's map section of root (absent or empty: cfg is left alone). Unknown keys, values
 * out of range, bad or repeated whitelist prefixes and more than RRL_WHITELIST_MAX of them fail
 * with file:line. For QUERIES, enable follows from rate > 0. */
int rrl_config_read(const struct config_node *root, enum rrl_section_kind kind,
                    struct rrl_config *cfg, struct config_error *err);
/* Do a and b describe the same limiter (a table built for one serves the other)? */
bool rrl_config_equal(const struct rrl_config *a, const struct rrl_config *b);

/* Parse "ADDR/LEN" or "ADDR" (/32, /128). Host bits must be zero. On error returns BALLAST_EINVAL
 * and writes the reason to reason. */
int rrl_prefix_parse(const char *text, struct rrl_prefix *out, char *reason, size_t reason_len);

enum rrl_action {
    RRL_PASS, /* send the response */
    RRL_SLIP, /* over the limit: send rrl_slip_response() so a real client retries over TCP */
    RRL_DROP, /* over the limit: send nothing */
};

/* Counters of one table, summed over its lock stripes. */
struct rrl_stats {
    uint64_t passed;  /* checks within the limit */
    uint64_t slipped; /* over the limit, answered with TC=1 */
    uint64_t dropped; /* over the limit, not answered */
    uint64_t exempt;  /* whitelisted clients (and non-IP addresses): never counted against */
    uint64_t evicted; /* busy buckets given to a new key because their set was full */
};

struct rrl;

/* A table for cfg (copied; cfg->enable is not looked at). Owned by the caller (rrl_free).
 * Returns 0, BALLAST_EINVAL (rate 0, or a size or prefix out of range), BALLAST_ENOMEM, or
 * BALLAST_ESYS when libsodium cannot start (the hash key is random). */
int rrl_create(const struct rrl_config *cfg, struct rrl **out);
void rrl_free(struct rrl *rrl);
const struct rrl_config *rrl_get_config(const struct rrl *rrl);

/* Take one token from the bucket of (client prefix, key) at time now_ms (any monotonic clock in
 * milliseconds, the same for every caller of one table; a time before the bucket's last one adds
 * nothing). The bucket holds burst tokens and refills at rate per second; without a token the
 * answer is limited: every slip-th limited answer of the bucket slips, the others drop. Safe to
 * call from any number of threads at once. key may be NULL when key_len is 0 (the client prefix
 * alone, as for query limits). */
enum rrl_action rrl_check(struct rrl *rrl, const struct sockaddr *client, const uint8_t *key,
                          size_t key_len, uint64_t now_ms);
void rrl_get_stats(const struct rrl *rrl, struct rrl_stats *out);

/* CLOCK_MONOTONIC_COARSE in milliseconds: cheap enough for every response. */
uint64_t rrl_now_ms(void);

/* --- response keys (authoritative answers) --------------------------------------------------- */

/* What kind of response a bucket counts, so that legitimate answers of one kind are not held
 * back by floods of another (the classes of BIND's and Knot's RRL). */
enum rrl_class {
    RRL_CLASS_ANSWER = 1, /* NOERROR with answers (or TC=1): keyed by QNAME and QTYPE */
    RRL_CLASS_NODATA,     /* NOERROR, AA, no answer: keyed by the zone (the SOA owner) */
    RRL_CLASS_NXDOMAIN,   /* keyed by the zone (the SOA owner), whatever the QNAME */
    RRL_CLASS_REFERRAL,   /* NOERROR, not AA, NS in authority: keyed by the delegation point */
    RRL_CLASS_ERROR,      /* any other RCODE (REFUSED, FORMERR, ...): one key per client */
};

/* The key of a response built by the server (resp, len bytes): the class, then QTYPE and QNAME
 * for answers, or the "imputed name" — the owner of the first authority record (the zone's SOA
 * for NXDOMAIN and NODATA, the delegation's NS for a referral) — so random names under one zone
 * share one bucket. Names are lowercased. Writes up to RRL_KEY_MAX bytes; returns the length. */
size_t rrl_response_key(const uint8_t *resp, size_t len, uint8_t *key);
/* Cut a response to its header and question with TC=1 (RFC 1035 §4.1.1; RFC 7766 §5 clients
 * then retry over TCP); returns the new length. */
size_t rrl_slip_response(uint8_t *resp, size_t len);

#endif
