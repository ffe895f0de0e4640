/* Serve-stale bookkeeping shared by every worker (RFC 8767): per question (name, type), when its
 * last resolution failed (the failure recheck timer), whether a refresh is in flight (one
 * background refresh per question), and since when a critical name answers empty (the
 * suspicion window). A bounded table with one lock per shard; time is passed in. Also the
 * Extended DNS Error codes (RFC 8914) the resolver puts on stale and failed answers. */
#ifndef BALLAST_STALE_H
#define BALLAST_STALE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 8914 §4 INFO-CODEs. */
#define STALE_EDE_NONE (-1)
#define STALE_EDE_STALE_ANSWER 3
#define STALE_EDE_STALE_NXDOMAIN 19
#define STALE_EDE_NO_REACHABLE_AUTHORITY 22
#define STALE_EDE_NETWORK_ERROR 23

#define STALE_DEFAULT_MAX_ENTRIES 65536u

struct stale_table;

/* Create a table holding at most max_entries questions (0: the default); when full, the oldest
 * question's record is forgotten. The caller owns it (stale_table_free). Returns 0,
 * BALLAST_ENOMEM or BALLAST_ESYS (libsodium failed to initialise). */
int stale_table_create(size_t max_entries, struct stale_table **out);
void stale_table_free(struct stale_table *table);

/* Names are wire form, any case (compared without regard to case). Every function is
 * thread-safe; the ones that record something return false/do nothing when out of memory. */

/* Resolution of name/type failed at now_ms: for recheck_ms, stale_recently_failed() is true;
 * stale_failed_before() stays true until stale_mark_resolved(). */
void stale_mark_failed(struct stale_table *table, const uint8_t *name, size_t len, uint16_t type,
                       uint64_t now_ms, uint32_t recheck_ms);
/* Did a resolution of name/type fail less than its recheck time ago? */
bool stale_recently_failed(struct stale_table *table, const uint8_t *name, size_t len,
                           uint16_t type, uint64_t now_ms);
/* Has the last resolution of name/type failed (however long ago)? */
bool stale_failed_before(struct stale_table *table, const uint8_t *name, size_t len, uint16_t type);
/* Resolution of name/type succeeded: forget its failure and any suspicion. */
void stale_mark_resolved(struct stale_table *table, const uint8_t *name, size_t len, uint16_t type);

/* Take the refresh slot of name/type: true when no refresh is in flight (or the one recorded
 * started more than hold_ms ago and is presumed lost); the caller must stale_refresh_end(). */
bool stale_refresh_begin(struct stale_table *table, const uint8_t *name, size_t len, uint16_t type,
                         uint64_t now_ms, uint32_t hold_ms);
/* Is a refresh of name/type in flight (begun less than hold_ms ago)? */
bool stale_refresh_running(struct stale_table *table, const uint8_t *name, size_t len,
                           uint16_t type, uint64_t now_ms, uint32_t hold_ms);
void stale_refresh_end(struct stale_table *table, const uint8_t *name, size_t len, uint16_t type);

/* A critical name that had data answered empty (NODATA or NXDOMAIN) at now_ms. The first call
 * starts its suspicion window; returns true while the window (window_ms from that first call)
 * lasts — keep serving the old data — and false once it is over (accept the empty answer; the
 * record is forgotten). */
bool stale_suspect_empty(struct stale_table *table, const uint8_t *name, size_t len, uint16_t type,
                         uint64_t now_ms, uint32_t window_ms);

/* Counters and size. */
struct stale_table_stats {
    uint64_t entries;          /* questions recorded now */
    uint64_t failures;         /* stale_mark_failed calls */
    uint64_t suspicions;       /* suspicion windows started */
    uint64_t suspicions_ended; /* windows that ran out: the empty answer was accepted */
    uint64_t evicted;          /* records forgotten because the table was full */
};
void stale_table_get_stats(struct stale_table *table, struct stale_table_stats *out);

#endif
