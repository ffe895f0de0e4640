/* Cache snapshot files (see snapshot.h for the format): cache_walk() output serialised into a
 * checksummed memory buffer and written with an atomic rename; a file is validated as a whole
 * before any entry reaches cache_restore(). */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "wire.h"

/* u8 name_len, u16 type, u16 class, u8 kind, u8 rank, u32 ttl, i64 expires_in_ms, u16 count,
 * u8 soa_owner_len, u32 data_len: everything of a record but its name and data. */
#define SNAPSHOT_RECORD_FIXED_LEN 26u
#define SNAPSHOT_DATA_MAX (CACHE_RDATA_MAX + 255u)
#define SNAPSHOT_SOA_FIXED_LEN 20u /* SERIAL REFRESH RETRY EXPIRE MINIMUM (RFC 1035 §3.3.13) */
#define SNAPSHOT_COUNT_OFFSET 24u  /* of the record count in the header */
#define SNAPSHOT_BUF_INITIAL 4096u

#if SNAPSHOT_CHECKSUM_LEN != crypto_generichash_BYTES
#error "the snapshot checksum is libsodium's default BLAKE2b length"
#endif

/* ---- big-endian fields ---- */

static uint64_t snapshot_read_u64(const uint8_t *p)
{
    return ((uint64_t)wire_read_u32(p) << 32) | wire_read_u32(p + 4);
}

static uint8_t *snapshot_put_u8(uint8_t *p, uint8_t v)
{
    *p = v;
    return p + 1;
}

static uint8_t *snapshot_put_u16(uint8_t *p, uint16_t v)
{
    wire_write_u16(p, v);
    return p + 2;
}

static uint8_t *snapshot_put_u32(uint8_t *p, uint32_t v)
{
    wire_write_u32(p, v);
    return p + 4;
}

static uint8_t *snapshot_put_u64(uint8_t *p, uint64_t v)
{
    wire_write_u32(p, (uint32_t)(v >> 32));
    wire_write_u32(p + 4, (uint32_t)v);
    return p + 8;
}

static uint8_t *snapshot_put_bytes(uint8_t *p, const uint8_t *bytes, size_t len)
{
    if (len > 0)
        memcpy(p, bytes, len);
    return p + len;
}

/* ---- building a snapshot in memory ---- */

struct snapshot_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    uint64_t records;
};

static int snapshot_buf_reserve(struct snapshot_buf *buf, size_t more)
{
    if (buf->cap - buf->len >= more)
        return BALLAST_OK;
    size_t cap = buf->cap ? buf->cap : SNAPSHOT_BUF_INITIAL;
    while (cap - buf->len < more) {
        if (cap > SIZE_MAX / 2)
            return BALLAST_ENOMEM;
        cap *= 2;
    }
    uint8_t *data = realloc(buf->data, cap);
    if (data == NULL)
        return BALLAST_ENOMEM;
    buf->data = data;
    buf->cap = cap;
    return BALLAST_OK;
}

/* cache_walk callback: runs under a shard lock, so it only copies into the buffer. */
static int snapshot_append_record(void *ctx, const struct cache_record *rec)
{
    struct snapshot_buf *buf = ctx;
    if (rec->name_len > WIRE_NAME_MAX || rec->data_len > SNAPSHOT_DATA_MAX)
        return BALLAST_EINVAL; /* cannot happen for entries the cache accepted */
    if (snapshot_buf_reserve(buf, SNAPSHOT_RECORD_FIXED_LEN + rec->name_len + rec->data_len) != 0)
        return BALLAST_ENOMEM;
    uint8_t *p = buf->data + buf->len;
    p = snapshot_put_u8(p, (uint8_t)rec->name_len);
    p = snapshot_put_bytes(p, rec->name, rec->name_len);
    p = snapshot_put_u16(p, rec->type);
    p = snapshot_put_u16(p, rec->rrclass);
    p = snapshot_put_u8(p, (uint8_t)rec->kind);
    p = snapshot_put_u8(p, (uint8_t)rec->rank);
    p = snapshot_put_u32(p, rec->ttl);
    p = snapshot_put_u64(p, (uint64_t)rec->expires_in_ms);
    p = snapshot_put_u16(p, rec->count);
    p = snapshot_put_u8(p, rec->soa_owner_len);
    p = snapshot_put_u32(p, (uint32_t)rec->data_len);
    p = snapshot_put_bytes(p, rec->data, rec->data_len);
    buf->len = (size_t)(p - buf->data);
    buf->records++;
    return BALLAST_OK;
}

/* Header, every live entry (expiries relative to now_ms, i.e. to wall_ms), checksum. */
static int snapshot_build(struct cache *cache, uint64_t now_ms, uint64_t wall_ms,
                          struct snapshot_buf *buf)
{
    if (sodium_init() < 0)
        return BALLAST_ESYS;
    /* An entry takes more bytes in the cache than in the file, so this is usually all the walk
     * needs: no large realloc (a copy of the whole buffer) while it holds a shard lock. */
    struct cache_stats cache_stats;
    cache_get_stats(cache, &cache_stats);
    size_t expected = cache_stats.bytes < SIZE_MAX / 2 ? (size_t)cache_stats.bytes : 0;
    if (snapshot_buf_reserve(buf, SNAPSHOT_HEADER_LEN + expected + SNAPSHOT_CHECKSUM_LEN) != 0)
        return BALLAST_ENOMEM;
    uint8_t *p = snapshot_put_bytes(buf->data, (const uint8_t *)SNAPSHOT_MAGIC, SNAPSHOT_MAGIC_LEN);
    p = snapshot_put_u32(p, SNAPSHOT_VERSION);
    p = snapshot_put_u32(p, 0);
    p = snapshot_put_u64(p, wall_ms);
    p = snapshot_put_u64(p, 0); /* the record count, known after the walk */
    buf->len = SNAPSHOT_HEADER_LEN;
    int rc = cache_walk(cache, now_ms, snapshot_append_record, buf);
    if (rc != 0)
        return rc;
    snapshot_put_u64(buf->data + SNAPSHOT_COUNT_OFFSET, buf->records);
    if (snapshot_buf_reserve(buf, SNAPSHOT_CHECKSUM_LEN) != 0)
        return BALLAST_ENOMEM;
    crypto_generichash(buf->data + buf->len, SNAPSHOT_CHECKSUM_LEN, buf->data, buf->len, NULL, 0);
    buf->len += SNAPSHOT_CHECKSUM_LEN;
    return BALLAST_OK;
}

/* ---- atomic file replacement ---- */

static bool snapshot_write_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return false;
        }
        data += n;
        len -= (size_t)n;
    }
    return true;
}

/* The directory holding path ("." for a bare file name), malloc'd. */
static char *snapshot_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return strdup(".");
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    return strndup(path, len);
}

/* The rename is durable only once the directory entry is on disk. */
static int snapshot_sync_dir(const char *path, char *err_text, size_t err_len)
{
    char *dir = snapshot_dir_of(path);
    if (dir == NULL)
        return BALLAST_ENOMEM;
    int rc = BALLAST_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        ballast_set_error(err_text, err_len, "snapshot %s: written, but syncing directory %s: %s",
                          path, dir, strerror(errno));
        rc = BALLAST_EIO;
    }
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

/* Write data to tmp_path and rename it over path; on failure remove tmp_path, leave path alone. */
static int snapshot_replace_file(const char *path, const char *tmp_path, const uint8_t *data,
                                 size_t len, char *err_text, size_t err_len)
{
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        ballast_set_error(err_text, err_len, "snapshot %s: cannot create %s: %s", path, tmp_path,
                          strerror(errno));
        return BALLAST_EIO;
    }
    const char *failed = NULL;
    int saved_errno = 0;
    /* An old temporary keeps its mode across O_TRUNC: cache data is for this user only. */
    if (fchmod(fd, 0600) != 0)
        failed = "chmod";
    else if (!snapshot_write_all(fd, data, len))
        failed = "write";
    else if (fsync(fd) != 0)
        failed = "fsync";
    if (failed != NULL)
        saved_errno = errno;
    if (close(fd) != 0 && failed == NULL) {
        failed = "close";
        saved_errno = errno;
    }
    if (failed == NULL && rename(tmp_path, path) != 0) {
        failed = "rename";
        saved_errno = errno;
    }
    if (failed != NULL) {
        unlink(tmp_path);
        ballast_set_error(err_text, err_len, "snapshot %s: %s of %s failed: %s", path, failed,
                          tmp_path, strerror(saved_errno));
        return BALLAST_EIO;
    }
    return snapshot_sync_dir(path, err_text, err_len);
}

int snapshot_write(struct cache *cache, const char *path, uint64_t now_ms, uint64_t wall_ms,
                   struct snapshot_stats *stats, char *err_text, size_t err_len)
{
    if (stats != NULL)
        memset(stats, 0, sizeof *stats);
    struct snapshot_buf buf = {0};
    char *tmp_path = malloc(strlen(path) + sizeof ".tmp");
    int rc = tmp_path == NULL ? BALLAST_ENOMEM : snapshot_build(cache, now_ms, wall_ms, &buf);
    if (rc != BALLAST_OK) {
        ballast_set_error(err_text, err_len, "snapshot %s: building it in memory: %s", path,
                          ballast_strerror(rc));
    } else {
        strcpy(tmp_path, path);
        strcat(tmp_path, ".tmp");
        rc = snapshot_replace_file(path, tmp_path, buf.data, buf.len, err_text, err_len);
    }
    if (rc == BALLAST_OK && stats != NULL) {
        stats->entries = buf.records;
        stats->bytes = buf.len;
    }
    free(tmp_path);
    free(buf.data);
    return rc;
}

/* ---- reading and validating ---- */

struct snapshot_reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
};

/* Take n bytes, or return NULL (nothing consumed) if the buffer ends first. */
static const uint8_t *snapshot_take(struct snapshot_reader *r, size_t n)
{
    if (r->len - r->pos < n)
        return NULL;
    const uint8_t *p = r->buf + r->pos;
    r->pos += n;
    return p;
}

struct snapshot_header {
    uint32_t version;
    uint32_t flags;
    uint64_t created_ms;
    uint64_t count;
};

static int snapshot_parse_header(const uint8_t *buf, size_t len, struct snapshot_header *hdr,
                                 char *err_text, size_t err_len)
{
    size_t magic_len = len < SNAPSHOT_MAGIC_LEN ? len : SNAPSHOT_MAGIC_LEN;
    if (memcmp(buf, SNAPSHOT_MAGIC, magic_len) != 0) {
        ballast_set_error(err_text, err_len, "not a cache snapshot (bad magic)");
        return BALLAST_EPARSE;
    }
    /* The version comes before anything else so that a newer layout is named as such. */
    if (len >= SNAPSHOT_MAGIC_LEN + 4) {
        hdr->version = wire_read_u32(buf + SNAPSHOT_MAGIC_LEN);
        if (hdr->version != SNAPSHOT_VERSION) {
            ballast_set_error(err_text, err_len, "wrong version %" PRIu32 " (this build reads %u)",
                              hdr->version, SNAPSHOT_VERSION);
            return BALLAST_EPARSE;
        }
    }
    if (len < SNAPSHOT_HEADER_LEN) {
        ballast_set_error(err_text, err_len, "truncated at byte %zu (in the %u-byte header)", len,
                          SNAPSHOT_HEADER_LEN);
        return BALLAST_EPARSE;
    }
    hdr->flags = wire_read_u32(buf + SNAPSHOT_MAGIC_LEN + 4);
    hdr->created_ms = snapshot_read_u64(buf + SNAPSHOT_MAGIC_LEN + 8);
    hdr->count = snapshot_read_u64(buf + SNAPSHOT_COUNT_OFFSET);
    if (hdr->flags != 0) {
        ballast_set_error(err_text, err_len, "unknown flags 0x%08" PRIx32, hdr->flags);
        return BALLAST_EPARSE;
    }
    return BALLAST_OK;
}

/* count x [RDLENGTH][RDATA] exactly filling len, as cache_insert_rrset requires. */
static bool snapshot_rdata_valid(const uint8_t *data, size_t len, uint16_t count)
{
    if (count == 0 || len > CACHE_RDATA_MAX)
        return false;
    struct snapshot_reader r = {data, len, 0};
    for (uint16_t i = 0; i < count; i++) {
        const uint8_t *rdlen = snapshot_take(&r, 2);
        if (rdlen == NULL || snapshot_take(&r, wire_read_u16(rdlen)) == NULL)
            return false;
    }
    return r.pos == len;
}

/* SOA RDATA: MNAME, RNAME and 20 bytes (RFC 1035 §3.3.13). */
static bool snapshot_soa_rdata_valid(const uint8_t *rdata, size_t len)
{
    size_t mname = wire_name_length(rdata, len);
    if (mname == 0)
        return false;
    size_t rname = wire_name_length(rdata + mname, len - mname);
    return rname != 0 && len - mname - rname == SNAPSHOT_SOA_FIXED_LEN;
}

static const char *snapshot_negative_problem(const struct cache_record *rec)
{
    if ((rec->kind == CACHE_KIND_NXDOMAIN) != (rec->type == 0))
        return rec->type == 0 ? "type 0 in a NODATA entry" : "NXDOMAIN entry with a type";
    if (rec->count != 0)
        return "record count in a negative entry";
    if (rec->soa_owner_len == 0 || rec->soa_owner_len > rec->data_len ||
        wire_name_length(rec->data, rec->soa_owner_len) != rec->soa_owner_len)
        return "malformed SOA owner name";
    if (!snapshot_soa_rdata_valid(rec->data + rec->soa_owner_len,
                                  rec->data_len - rec->soa_owner_len))
        return "malformed SOA RDATA";
    return NULL;
}

/* What would make cache_restore() refuse the record as malformed, or NULL if nothing. */
static const char *snapshot_record_problem(const struct cache_record *rec)
{
    if (rec->name_len == 0 || wire_name_length(rec->name, rec->name_len) != rec->name_len)
        return "malformed owner name";
    if (rec->rank < CACHE_RANK_ADDITIONAL || rec->rank > CACHE_RANK_ANSWER_AUTH)
        return "rank out of range";
    switch (rec->kind) {
    case CACHE_KIND_RRSET:
        if (rec->type == 0)
            return "RRset of type 0";
        if (rec->soa_owner_len != 0)
            return "SOA owner length in an RRset";
        if (!snapshot_rdata_valid(rec->data, rec->data_len, rec->count))
            return "malformed RDATA";
        return NULL;
    case CACHE_KIND_NODATA:
    case CACHE_KIND_NXDOMAIN:
        return snapshot_negative_problem(rec);
    default:
        return "unknown kind";
    }
}

enum snapshot_read {
    SNAPSHOT_READ_OK,
    SNAPSHOT_READ_TRUNCATED,   /* the buffer ends inside the record */
    SNAPSHOT_READ_DATA_TOO_BIG /* data_len over SNAPSHOT_DATA_MAX; data not read */
};

/* Read one record's fields; nothing is checked but the lengths. */
static enum snapshot_read snapshot_read_record(struct snapshot_reader *r, struct cache_record *rec)
{
    const uint8_t *name_len = snapshot_take(r, 1);
    if (name_len == NULL || (rec->name = snapshot_take(r, name_len[0])) == NULL)
        return SNAPSHOT_READ_TRUNCATED;
    rec->name_len = name_len[0];
    const uint8_t *p = snapshot_take(r, SNAPSHOT_RECORD_FIXED_LEN - 1);
    if (p == NULL)
        return SNAPSHOT_READ_TRUNCATED;
    rec->type = wire_read_u16(p);
    rec->rrclass = wire_read_u16(p + 2);
    rec->kind = (enum cache_kind)p[4];
    rec->rank = (enum cache_rank)p[5];
    rec->ttl = wire_read_u32(p + 6);
    rec->expires_in_ms = (int64_t)snapshot_read_u64(p + 10);
    rec->count = wire_read_u16(p + 18);
    rec->soa_owner_len = p[20];
    rec->data_len = wire_read_u32(p + 21);
    if (rec->data_len > SNAPSHOT_DATA_MAX)
        return SNAPSHOT_READ_DATA_TOO_BIG;
    rec->data = snapshot_take(r, rec->data_len);
    return rec->data != NULL ? SNAPSHOT_READ_OK : SNAPSHOT_READ_TRUNCATED;
}

/* expires_in - (wall_ms - created_ms), saturated to +-INT64_MAX. */
static int64_t snapshot_shift_expiry(int64_t expires_in, uint64_t created_ms, uint64_t wall_ms)
{
    int64_t elapsed;
    if (wall_ms >= created_ms)
        elapsed = wall_ms - created_ms > INT64_MAX ? INT64_MAX : (int64_t)(wall_ms - created_ms);
    else
        elapsed = created_ms - wall_ms > INT64_MAX ? -INT64_MAX : -(int64_t)(created_ms - wall_ms);
    int64_t shifted;
    if (__builtin_sub_overflow(expires_in, elapsed, &shifted))
        return elapsed > 0 ? -INT64_MAX : INT64_MAX;
    return shifted < -INT64_MAX ? -INT64_MAX : shifted;
}

/* Walk the records after the header: check each (record == NULL) or hand each to record().
 * *end gets the offset just past the last record. */
static int snapshot_each_record(const uint8_t *buf, size_t len, const struct snapshot_header *hdr,
                                uint64_t wall_ms, snapshot_record_fn record, void *ctx, size_t *end,
                                char *err_text, size_t err_len)
{
    struct snapshot_reader r = {buf, len, SNAPSHOT_HEADER_LEN};
    for (uint64_t i = 0; i < hdr->count; i++) {
        size_t start = r.pos;
        struct cache_record rec = {0};
        enum snapshot_read read = snapshot_read_record(&r, &rec);
        if (read == SNAPSHOT_READ_TRUNCATED) {
            ballast_set_error(err_text, err_len,
                              "truncated at byte %zu (in record %" PRIu64 " of %" PRIu64 ")", len,
                              i + 1, hdr->count);
            return BALLAST_EPARSE;
        }
        if (read == SNAPSHOT_READ_DATA_TOO_BIG) {
            ballast_set_error(err_text, err_len,
                              "record %" PRIu64 " at byte %zu: data length %zu over %u", i + 1,
                              start, rec.data_len, SNAPSHOT_DATA_MAX);
            return BALLAST_EPARSE;
        }
        const char *problem = snapshot_record_problem(&rec);
        if (problem != NULL) {
            ballast_set_error(err_text, err_len, "record %" PRIu64 " at byte %zu: %s", i + 1, start,
                              problem);
            return BALLAST_EPARSE;
        }
        if (record == NULL)
            continue;
        rec.expires_in_ms = snapshot_shift_expiry(rec.expires_in_ms, hdr->created_ms, wall_ms);
        int rc = record(ctx, &rec);
        if (rc != 0) {
            ballast_set_error(err_text, err_len, "record %" PRIu64 " at byte %zu: %s", i + 1, start,
                              ballast_strerror(rc));
            return rc;
        }
    }
    *end = r.pos;
    return BALLAST_OK;
}

/* Exactly the checksum must follow the records, and match them. */
static int snapshot_check_trailer(const uint8_t *buf, size_t len, size_t end,
                                  const struct snapshot_header *hdr, char *err_text, size_t err_len)
{
    if (len - end < SNAPSHOT_CHECKSUM_LEN) {
        ballast_set_error(err_text, err_len, "truncated at byte %zu (in the %u-byte checksum)", len,
                          SNAPSHOT_CHECKSUM_LEN);
        return BALLAST_EPARSE;
    }
    if (len - end > SNAPSHOT_CHECKSUM_LEN) {
        ballast_set_error(err_text, err_len,
                          "%zu trailing bytes after the checksum (the header counts %" PRIu64
                          " records)",
                          len - end - SNAPSHOT_CHECKSUM_LEN, hdr->count);
        return BALLAST_EPARSE;
    }
    uint8_t sum[SNAPSHOT_CHECKSUM_LEN];
    crypto_generichash(sum, sizeof sum, buf, end, NULL, 0);
    if (sodium_memcmp(sum, buf + end, sizeof sum) != 0) {
        ballast_set_error(err_text, err_len, "checksum mismatch (the file is corrupt)");
        return BALLAST_EPARSE;
    }
    return BALLAST_OK;
}

int snapshot_parse(const uint8_t *buf, size_t len, size_t max_bytes, uint64_t wall_ms,
                   snapshot_record_fn record, void *ctx, char *err_text, size_t err_len)
{
    if (len > max_bytes) {
        ballast_set_error(err_text, err_len, "larger than snapshot-max-size (%zu bytes)",
                          max_bytes);
        return BALLAST_ELIMIT;
    }
    if (sodium_init() < 0) {
        ballast_set_error(err_text, err_len, "libsodium initialisation failed");
        return BALLAST_ESYS;
    }
    struct snapshot_header hdr;
    size_t end = 0;
    int rc = snapshot_parse_header(buf, len, &hdr, err_text, err_len);
    if (rc == BALLAST_OK)
        rc = snapshot_each_record(buf, len, &hdr, wall_ms, NULL, NULL, &end, err_text, err_len);
    if (rc == BALLAST_OK)
        rc = snapshot_check_trailer(buf, len, end, &hdr, err_text, err_len);
    if (rc == BALLAST_OK && record != NULL)
        rc = snapshot_each_record(buf, len, &hdr, wall_ms, record, ctx, &end, err_text, err_len);
    return rc;
}

/* ---- loading into a cache ---- */

/* The whole file, refused before reading if larger than max_bytes. */
static int snapshot_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *out_len,
                              char *err_text, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int saved_errno = errno;
        ballast_set_error(err_text, err_len, "snapshot %s: %s", path, strerror(saved_errno));
        return saved_errno == ENOENT ? BALLAST_ENOTFOUND : BALLAST_EIO;
    }
    struct stat st;
    int rc = BALLAST_OK;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (fstat(fd, &st) != 0) {
        ballast_set_error(err_text, err_len, "snapshot %s: %s", path, strerror(errno));
        rc = BALLAST_EIO;
    } else if (!S_ISREG(st.st_mode)) {
        ballast_set_error(err_text, err_len, "snapshot %s: not a regular file", path);
        rc = BALLAST_EIO;
    } else if ((uint64_t)st.st_size > max_bytes) {
        ballast_set_error(err_text, err_len,
                          "snapshot %s: %lld bytes, larger than snapshot-max-size (%zu bytes)",
                          path, (long long)st.st_size, max_bytes);
        rc = BALLAST_ELIMIT;
    } else if ((buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1)) == NULL) {
        ballast_set_error(err_text, err_len, "snapshot %s: out of memory for %lld bytes", path,
                          (long long)st.st_size);
        rc = BALLAST_ENOMEM;
    }
    /* Read what fstat promised; a file changed meanwhile fails the checksum or the length. */
    while (rc == BALLAST_OK && len < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ballast_set_error(err_text, err_len, "snapshot %s: %s", path, strerror(errno));
            rc = BALLAST_EIO;
        } else if (n == 0) {
            break;
        } else {
            len += (size_t)n;
        }
    }
    close(fd);
    if (rc != BALLAST_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return BALLAST_OK;
}

struct snapshot_load_ctx {
    struct cache *cache;
    uint64_t now_ms;
    struct snapshot_stats *stats;
};

/* Refusals by the cache's own rules are expected (time passed, fresher data is there). */
static int snapshot_restore_record(void *ctx, const struct cache_record *rec)
{
    struct snapshot_load_ctx *load = ctx;
    int rc = cache_restore(load->cache, rec, load->now_ms);
    switch (rc) {
    case BALLAST_OK:
        load->stats->entries++;
        return 0;
    case BALLAST_ENOTFOUND:
    case BALLAST_EEXIST:
    case BALLAST_ELIMIT:
        load->stats->skipped++;
        return 0;
    default:
        return rc;
    }
}

int snapshot_load(struct cache *cache, const char *path, size_t max_bytes, uint64_t now_ms,
                  uint64_t wall_ms, struct snapshot_stats *stats, char *err_text, size_t err_len)
{
    struct snapshot_stats local;
    if (stats == NULL)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = snapshot_read_file(path, max_bytes, &buf, &len, err_text, err_len);
    if (rc != BALLAST_OK)
        return rc;
    stats->bytes = len;
    struct snapshot_load_ctx load = {cache, now_ms, stats};
    char why[256] = "";
    rc = snapshot_parse(buf, len, max_bytes, wall_ms, snapshot_restore_record, &load, why,
                        sizeof why);
    free(buf);
    if (rc != BALLAST_OK)
        ballast_set_error(err_text, err_len, "snapshot %s: %s", path, why);
    return rc;
}
