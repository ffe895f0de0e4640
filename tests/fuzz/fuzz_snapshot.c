/* libFuzzer harness: any bytes as a cache snapshot to snapshot_parse(), every record it accepts
 * restored into a small cache. A record the parser passes but the cache calls malformed is a bug.
 * Each input is tried as is and with its last 32 bytes replaced by the right checksum, so that
 * mutations reach record validation and cache_restore() instead of dying at the checksum.
 * Build: docs/fuzzing.md. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cache.h"
#include "errors.h"
#include "fuzz_util.h"
#include "snapshot.h"

#define FUZZ_NOW_MS 100000000u        /* the cache clock: room for a day of staleness */
#define FUZZ_WALL_MS 1700000000000ull /* the wall clock the snapshot is shifted to */

static struct cache *fuzz_cache;

static int fuzz_restore(void *ctx, const struct cache_record *rec)
{
    int rc = cache_restore(ctx, rec, FUZZ_NOW_MS);
    if (rc == BALLAST_EINVAL)
        abort(); /* snapshot_parse must refuse whatever cache_restore calls malformed */
    return 0;
}

static void fuzz_parse(const uint8_t *data, size_t size)
{
    char err[256];
    int rc = snapshot_parse(data, size, SNAPSHOT_DEFAULT_MAX_BYTES, FUZZ_WALL_MS, fuzz_restore,
                            fuzz_cache, err, sizeof err);
    if (rc != 0 && rc != BALLAST_EPARSE && rc != BALLAST_ELIMIT)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_cache == NULL) {
        struct cache_options opts;
        cache_options_init_defaults(&opts);
        opts.max_bytes = 1u << 20;
        opts.shards = 4;
        opts.stale_retention_ms = 86400000u;
        if (cache_create(&opts, &fuzz_cache) != 0)
            abort();
    }
    fuzz_parse(data, size);
    if (size >= SNAPSHOT_HEADER_LEN + SNAPSHOT_CHECKSUM_LEN) {
        uint8_t *sealed = malloc(size);
        if (sealed == NULL)
            abort();
        memcpy(sealed, data, size);
        size_t end = size - SNAPSHOT_CHECKSUM_LEN;
        crypto_generichash(sealed + end, SNAPSHOT_CHECKSUM_LEN, sealed, end, NULL, 0);
        fuzz_parse(sealed, size);
        free(sealed);
    }
    cache_flush_all(fuzz_cache);
    return 0;
}
