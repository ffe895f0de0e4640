/* Cache snapshots (issue 5): the resolver's cache written to a file on shutdown or on demand and
 * read back at start, so fresh and stale answers survive a restart. Owns the file format, its
 * validation, and atomic replacement of the file. */
#ifndef BALLAST_SNAPSHOT_H
#define BALLAST_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"

/* File format, version 1. Every integer is big-endian.
 *
 *   header   magic "BALLASTC" (8 bytes)
 *            u32 version (SNAPSHOT_VERSION)
 *            u32 flags (0; any other value is refused)
 *            u64 created: CLOCK_REALTIME of the writer, in ms
 *            u64 record count
 *   records  count times:
 *            u8 name_len, name (lowercase uncompressed wire name)
 *            u16 type (0 for NXDOMAIN), u16 class, u8 kind (enum cache_kind),
 *            u8 rank (enum cache_rank), u32 ttl (the clamped TTL stored, seconds),
 *            i64 expires_in_ms (relative to created; negative once stale), u16 count (RRSET),
 *            u8 soa_owner_len (negative entries), u32 data_len, data (as struct cache_record)
 *   trailer  32-byte BLAKE2b (libsodium crypto_generichash, unkeyed) of every byte before it.
 *
 * Nothing may follow the trailer. A reader of another version refuses the file rather than
 * guessing; the cache then starts empty, as it would without a snapshot. */
#define SNAPSHOT_MAGIC "BALLASTC"
#define SNAPSHOT_MAGIC_LEN 8u
#define SNAPSHOT_VERSION 1u
#define SNAPSHOT_HEADER_LEN 32u   /* magic, version, flags, created, count */
#define SNAPSHOT_CHECKSUM_LEN 32u /* crypto_generichash_BYTES */
/* Default for the snapshot-max-size setting: a snapshot of a full default cache (64 MiB of
 * entries) is smaller than this, since the file holds no per-entry bookkeeping. */
#define SNAPSHOT_DEFAULT_MAX_BYTES (256u << 20)

struct snapshot_stats {
    uint64_t entries; /* written, or stored into the cache by a load */
    uint64_t skipped; /* load: refused by the cache (beyond stale retention, rank, too large) */
    uint64_t bytes;   /* file size */
};

/* Write every live entry (fresh and stale) of cache to path atomically: path + ".tmp" is written
 * (mode 0600), synced, renamed over path, and the directory synced. The entries are collected
 * into memory first (cache_walk), so no shard lock is held during I/O. now_ms is the cache's
 * clock (what inserts used); wall_ms is CLOCK_REALTIME in ms, stored so that a later process can
 * convert expiries to its own clock. stats may be NULL.
 * Returns 0; BALLAST_EIO (open, write, sync or rename failed: the old file is untouched and the
 * temporary removed) or BALLAST_ENOMEM. err_text names the path and the system error. Only one
 * writer per path at a time (the temporary name is fixed). */
int snapshot_write(struct cache *cache, const char *path, uint64_t now_ms, uint64_t wall_ms,
                   struct snapshot_stats *stats, char *err_text, size_t err_len);

/* Called by snapshot_parse for each record. rec and its pointers are valid only during the call.
 * A nonzero return stops the parse and is returned by it. */
typedef int (*snapshot_record_fn)(void *ctx, const struct cache_record *rec);

/* Check a whole snapshot held in memory, then call record() for each entry with expires_in_ms
 * shifted by (wall_ms - the file's created time), i.e. relative to wall_ms. record() is not called
 * at all unless everything is valid: magic, version, flags, every record well formed (as
 * cache_restore would accept it), the record count, the checksum and no trailing bytes.
 * Returns 0 or the first nonzero record() return; BALLAST_ELIMIT when len > max_bytes;
 * BALLAST_EPARSE for anything malformed. err_text says what is wrong and where (byte offset). */
int snapshot_parse(const uint8_t *buf, size_t len, size_t max_bytes, uint64_t wall_ms,
                   snapshot_record_fn record, void *ctx, char *err_text, size_t err_len);

/* Read path (a file larger than max_bytes is refused before reading), check it with
 * snapshot_parse and cache_restore() every entry at now_ms. Entries the cache refuses (beyond
 * stale retention now, lower rank than a fresh entry, larger than a shard) count as skipped.
 * A snapshot that is not valid as a whole loads nothing. stats may be NULL.
 * Returns 0; BALLAST_ENOTFOUND (no file), BALLAST_ELIMIT, BALLAST_EPARSE, BALLAST_EIO,
 * BALLAST_ENOMEM. err_text names the path. */
int snapshot_load(struct cache *cache, const char *path, size_t max_bytes, uint64_t now_ms,
                  uint64_t wall_ms, struct snapshot_stats *stats, char *err_text, size_t err_len);

#endif
