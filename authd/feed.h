/* Health feeds: JSON documents of member states made by an external prober, pulled from a file
 * or an HTTP(S) URL. This module parses, authenticates (Ed25519 over the exact bytes) and
 * checks them; a feed that is stale, older than the last one applied, unparsable, oversized,
 * empty or badly signed is rejected with a reason and changes nothing.
 *
 * Format (docs/health.md):
 *   {"generation": 42, "timestamp": 1763900000,
 *    "members": [{"pool": "api.example.test/A", "member": "192.0.2.10", "state": "up"}, ...]}
 * The signature is detached: base64 of the 64-byte Ed25519 signature of the document's bytes. */
#ifndef BALLAST_FEED_H
#define BALLAST_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "health.h"

#define FEED_REASON_MAX 256

struct feed_limits {
    size_t max_bytes;    /* document size (default 16 MiB) */
    size_t max_members;  /* entries (default 100000) */
    uint64_t max_age_s;  /* timestamp older than now - max_age is stale (default 300) */
    uint64_t max_skew_s; /* timestamp in the future by more than this is rejected (default 60) */
};
void feed_limits_defaults(struct feed_limits *limits);

struct feed_entry {
    char *pool;   /* "owner/TYPE" as in the config, e.g. "api.example.test/A" */
    char *member; /* as in the config, e.g. "192.0.2.10" */
    enum health_state state;
};

struct feed_doc {
    uint64_t generation;
    uint64_t timestamp; /* seconds since the epoch */
    struct feed_entry *entries;
    size_t count;
};

/* Parse a document. Returns 0, or BALLAST_EPARSE / BALLAST_ELIMIT with reason filled (for JSON
 * errors: line and column). doc is owned by the caller (feed_doc_free) on success. */
int feed_parse(const char *text, size_t len, const struct feed_limits *limits, struct feed_doc *doc,
               char *reason, size_t reason_len);
void feed_doc_free(struct feed_doc *doc);

/* Check a detached signature (base64 text, surrounding whitespace ignored) of payload with an
 * Ed25519 public key. Returns 0 or BALLAST_EINVAL with reason. */
int feed_verify(const uint8_t *payload, size_t len, const char *signature_b64,
                const uint8_t public_key[32], char *reason, size_t reason_len);
/* Parse a base64 public key (32 bytes). */
int feed_public_key_parse(const char *text, uint8_t public_key[32]);

/* May doc be applied after last_generation (0 = none yet) at now_s? Rejects: generation not
 * greater than the last one applied (the AWS October 2025 race), timestamp stale or in the
 * future, no entries. Returns 0 or BALLAST_EINVAL with reason. */
int feed_check(const struct feed_doc *doc, uint64_t last_generation, uint64_t now_s,
               const struct feed_limits *limits, char *reason, size_t reason_len);

#endif
