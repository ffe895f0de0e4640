/* Zone store: loads RFC 1035 master files with ldns (with $INCLUDE confined to the zone's
 * directory), validates them against the limits, and builds the immutable in-memory zone (node
 * hash, pre-rendered RRsets) in one storage region. Also the zone set, found by longest apex. */
#include "zone.h"

#include <errno.h>
#include <ldns/ldns.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "errors.h"
#include "wire.h"

#define ZONE_NAME_TEXT_MAX 1100 /* a 255-byte name with every byte escaped as \DDD */
#define ZONE_LINE_TEXT_MAX 4200 /* enough for "$INCLUDE <PATH_MAX path> <name>" */
#define ZONE_CONTEXT_MAX 120    /* record text quoted in a syntax error */
#define ZONE_DEFAULT_TTL 3600u  /* TTL of records before any $TTL and without their own */
#define ZONE_ARENA_FIRST 4096u
#define ZONE_ARENA_MAX 1048576u

/* ---- Storage region: chunks freed in one call, so error paths cannot leak. ---- */

struct zone_chunk {
    struct zone_chunk *next;
    size_t size;
    size_t used;
};

struct zone_arena {
    struct zone_chunk *head;
    size_t next_size;
};

#define ZONE_CHUNK_HEADER ((sizeof(struct zone_chunk) + 15u) & ~(size_t)15u)

static void zone_arena_init(struct zone_arena *arena)
{
    arena->head = NULL;
    arena->next_size = ZONE_ARENA_FIRST;
}

static void zone_chunks_free(struct zone_chunk *chunk)
{
    while (chunk) {
        struct zone_chunk *next = chunk->next;
        free(chunk);
        chunk = next;
    }
}

static void *zone_arena_alloc(struct zone_arena *arena, size_t size)
{
    size = (size + 15u) & ~(size_t)15u;
    struct zone_chunk *head = arena->head;
    if (head && head->size - head->used >= size) {
        void *p = (uint8_t *)head + ZONE_CHUNK_HEADER + head->used;
        head->used += size;
        return p;
    }
    /* Large blocks get a chunk of their own, kept behind the head so its free space stays. */
    bool own = size > arena->next_size / 4;
    size_t chunk_size = own ? size : arena->next_size;
    struct zone_chunk *chunk = malloc(ZONE_CHUNK_HEADER + chunk_size);
    if (!chunk)
        return NULL;
    chunk->size = chunk_size;
    chunk->used = size;
    if (own && head) {
        chunk->next = head->next;
        head->next = chunk;
    } else {
        chunk->next = head;
        arena->head = chunk;
        if (!own && arena->next_size < ZONE_ARENA_MAX)
            arena->next_size *= 2;
    }
    return (uint8_t *)chunk + ZONE_CHUNK_HEADER;
}

static void *zone_arena_calloc(struct zone_arena *arena, size_t size)
{
    void *p = zone_arena_alloc(arena, size);
    if (p)
        memset(p, 0, size);
    return p;
}

static void *zone_arena_copy(struct zone_arena *arena, const void *data, size_t size)
{
    void *p = zone_arena_alloc(arena, size);
    if (p && size)
        memcpy(p, data, size);
    return p;
}

/* ---- Loader state ---- */

/* One record as parsed, before grouping. pos/line_before locate its text for error messages. */
struct zone_record {
    const uint8_t *owner;
    const uint8_t *rdata;
    int64_t pos;
    uint32_t ttl;
    uint32_t seq; /* order in the input, for errors that name the first or the crossing record */
    uint32_t line_before;
    uint32_t file_index;
    uint16_t type;
    uint16_t rdlen;
    uint8_t owner_len;
    uint8_t duplicate;
};

struct zone_loader {
    const struct limits *limits;
    struct zone_error *err;
    uint8_t apex[WIRE_NAME_MAX];
    size_t apex_len;
    unsigned apex_labels;
    char apex_text[ZONE_NAME_TEXT_MAX];
    char dir[PATH_MAX]; /* $INCLUDE files must resolve inside this directory */
    char **files;       /* every file read, indexed by zone_record.file_index */
    size_t file_count;
    size_t file_cap;
    struct zone_record *records;
    size_t record_count;
    size_t record_cap;
    struct zone_arena bytes; /* owners and RDATA of the parsed records */
    uint64_t bytes_read;
    ldns_buffer *rdata_buf;
};

static void zone_copy_text(char *to, size_t to_size, const char *from)
{
    size_t len = strlen(from);
    if (len >= to_size)
        len = to_size - 1;
    memcpy(to, from, len);
    to[len] = '\0';
}

__attribute__((format(printf, 5, 6))) static int
zone_fail(struct zone_loader *ld, int code, const char *file, unsigned line, const char *fmt, ...)
{
    if (!ld->err)
        return code;
    zone_copy_text(ld->err->file, sizeof ld->err->file, file ? file : "");
    ld->err->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->err->reason, sizeof ld->err->reason, fmt, ap);
    va_end(ap);
    return code;
}

static const char *zone_type_name(uint16_t type, char *buf, size_t buf_len)
{
    const ldns_rr_descriptor *descriptor = ldns_rr_descript(type);
    if (descriptor && descriptor->_name)
        return descriptor->_name;
    snprintf(buf, buf_len, "TYPE%u", (unsigned)type);
    return buf;
}

static const char *zone_name_text(const uint8_t *name, char *buf)
{
    if (wire_name_to_text(name, buf, ZONE_NAME_TEXT_MAX) < 0)
        zone_copy_text(buf, ZONE_NAME_TEXT_MAX, "?");
    return buf;
}

/* ---- Reading files ---- */

/* Skip blanks and ';' comments from the current position; returns the newlines passed. */
static unsigned zone_skip_blank(FILE *fp)
{
    unsigned lines = 0;
    bool comment = false;
    int c;
    while ((c = getc(fp)) != EOF) {
        if (c == '\n') {
            lines++;
            comment = false;
        } else if (comment || c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            continue;
        } else if (c == ';') {
            comment = true;
        } else {
            ungetc(c, fp);
            break;
        }
    }
    return lines;
}

/* ldns swallows comment lines before a record and reports no start line, so find it again:
 * from the position before the ldns call, skip blanks and comments. Returns the line where the
 * text starts and copies that line (without newline) to text; text is empty at end of file.
 * Leaves fp just after the copied text. */
static unsigned zone_locate(FILE *fp, int64_t pos, unsigned line_before, char *text,
                            size_t text_len)
{
    text[0] = '\0';
    if (fseeko(fp, (off_t)pos, SEEK_SET) != 0)
        return line_before;
    unsigned line = line_before + zone_skip_blank(fp);
    if (fgets(text, (int)text_len, fp)) {
        size_t len = strcspn(text, "\r\n");
        text[len] = '\0';
    }
    return line;
}

/* Where a parsed record came from, found by reopening its file (error paths only). */
static unsigned zone_record_line(const struct zone_loader *ld, const struct zone_record *rec)
{
    FILE *fp = fopen(ld->files[rec->file_index], "r");
    if (!fp)
        return rec->line_before;
    char text[ZONE_CONTEXT_MAX];
    unsigned line = zone_locate(fp, rec->pos, rec->line_before, text, sizeof text);
    fclose(fp);
    return line;
}

__attribute__((format(printf, 4, 5))) static int
zone_fail_at(struct zone_loader *ld, int code, const struct zone_record *rec, const char *fmt, ...)
{
    char reason[sizeof ld->err->reason];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return zone_fail(ld, code, ld->files[rec->file_index], zone_record_line(ld, rec), "%s", reason);
}

/* Next whitespace-separated token of a directive line, with "quoted" tokens and ';' comments. */
static char *zone_next_token(char **cursor)
{
    char *p = *cursor;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0' || *p == ';') {
        *cursor = p;
        return NULL;
    }
    char *start = p;
    if (*p == '"') {
        start = ++p;
        while (*p && *p != '"')
            p++;
    } else {
        while (*p && *p != ' ' && *p != '\t' && *p != ';')
            p++;
    }
    if (*p == ';') {
        *p = '\0'; /* the rest is a comment */
        *cursor = p;
    } else if (*p) {
        *p = '\0';
        *cursor = p + 1;
    } else {
        *cursor = p;
    }
    return start;
}

static int zone_add_file(struct zone_loader *ld, const char *path, uint32_t *index)
{
    if (ld->file_count == ld->file_cap) {
        size_t cap = ld->file_cap ? ld->file_cap * 2 : 8;
        char **files = realloc(ld->files, cap * sizeof *files);
        if (!files)
            return BALLAST_ENOMEM;
        ld->files = files;
        ld->file_cap = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        return BALLAST_ENOMEM;
    ld->files[ld->file_count] = copy;
    *index = (uint32_t)ld->file_count++;
    return BALLAST_OK;
}

/* Text of a $ORIGIN or $INCLUDE name, relative names taken relative to origin (RFC 1035 §5.1). */
static ldns_rdf *zone_directive_name(const char *text, const ldns_rdf *origin)
{
    ldns_rdf *name = ldns_dname_new_frm_str(text);
    if (!name || ldns_dname_str_absolute(text))
        return name;
    if (ldns_dname_cat(name, origin) != LDNS_STATUS_OK) {
        ldns_rdf_deep_free(name);
        return NULL;
    }
    return name;
}

/* Where the parser is: the text that ldns read last starts at pos, on or after line_before. */
struct zone_cursor {
    FILE *fp;
    uint32_t file_index;
    int64_t pos;
    unsigned line_before;
};

__attribute__((format(printf, 4, 5))) static int
zone_fail_here(struct zone_loader *ld, int code, const struct zone_cursor *at, const char *fmt, ...)
{
    char reason[sizeof ld->err->reason], text[ZONE_CONTEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    unsigned line = zone_locate(at->fp, at->pos, at->line_before, text, sizeof text);
    return zone_fail(ld, code, ld->files[at->file_index], line, "%s", reason);
}

static int zone_check_record(struct zone_loader *ld, const ldns_rr *rr,
                             const struct zone_cursor *at)
{
    char type_buf[16], owner_text[ZONE_NAME_TEXT_MAX];
    uint16_t type = (uint16_t)ldns_rr_get_type(rr);
    const ldns_rdf *owner = ldns_rr_owner(rr);
    if (ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN) {
        char *class_text = ldns_rr_class2str(ldns_rr_get_class(rr));
        int rc = zone_fail_here(ld, BALLAST_EPARSE, at, "class %s is not supported, only IN",
                                class_text ? class_text : "?");
        free(class_text);
        return rc;
    }
    /* RFC 6891 §6.1.1 (OPT) and RFC 1035 §3.2.3/RFC 2845 (QTYPEs, TSIG) never live in zones. */
    if (type == LDNS_RR_TYPE_OPT || (type >= 249 && type <= 255))
        return zone_fail_here(ld, BALLAST_EPARSE, at, "type %s cannot appear in a zone",
                              zone_type_name(type, type_buf, sizeof type_buf));
    if (!wire_name_is_subdomain(ldns_rdf_data(owner), ldns_rdf_size(owner), ld->apex, ld->apex_len))
        return zone_fail_here(ld, BALLAST_EPARSE, at, "record outside zone %s: %s", ld->apex_text,
                              zone_name_text(ldns_rdf_data(owner), owner_text));
    if (type == LDNS_RR_TYPE_SOA && ldns_rdf_size(owner) != ld->apex_len)
        return zone_fail_here(ld, BALLAST_EPARSE, at, "SOA record at %s, not at the zone apex %s",
                              zone_name_text(ldns_rdf_data(owner), owner_text), ld->apex_text);
    if (ld->record_count >= UINT32_MAX)
        return zone_fail_here(ld, BALLAST_ELIMIT, at, "too many records");
    return BALLAST_OK;
}

static int zone_push_record(struct zone_loader *ld, const struct zone_record *rec)
{
    if (ld->record_count == ld->record_cap) {
        size_t cap = ld->record_cap ? ld->record_cap * 2 : 256;
        struct zone_record *records = realloc(ld->records, cap * sizeof *records);
        if (!records)
            return BALLAST_ENOMEM;
        ld->records = records;
        ld->record_cap = cap;
    }
    ld->records[ld->record_count++] = *rec;
    return BALLAST_OK;
}

/* Check a parsed record, canonicalize it (RFC 4034 §6.2 lowercasing) and keep its wire form. */
static int zone_add_record(struct zone_loader *ld, ldns_rr *rr, const struct zone_cursor *at)
{
    ldns_rr2canonical(rr);
    const ldns_rdf *owner = ldns_rr_owner(rr);
    int rc = zone_check_record(ld, rr, at);
    if (rc < 0)
        return rc;
    ldns_buffer_clear(ld->rdata_buf);
    if (ldns_rr_rdata2buffer_wire(ld->rdata_buf, rr) != LDNS_STATUS_OK ||
        ldns_buffer_position(ld->rdata_buf) > UINT16_MAX)
        return zone_fail_here(ld, BALLAST_EPARSE, at, "RDATA does not fit in 65535 bytes");
    struct zone_record rec = {
        .pos = at->pos,
        .ttl = ldns_rr_ttl(rr),
        .seq = (uint32_t)ld->record_count,
        .line_before = at->line_before,
        .file_index = at->file_index,
        .type = (uint16_t)ldns_rr_get_type(rr),
        .rdlen = (uint16_t)ldns_buffer_position(ld->rdata_buf),
        .owner_len = (uint8_t)ldns_rdf_size(owner),
    };
    /* Records of one owner usually follow each other: share the owner bytes. */
    const struct zone_record *last = ld->record_count ? &ld->records[ld->record_count - 1] : NULL;
    if (last && last->owner_len == rec.owner_len &&
        memcmp(last->owner, ldns_rdf_data(owner), rec.owner_len) == 0)
        rec.owner = last->owner;
    else
        rec.owner = zone_arena_copy(&ld->bytes, ldns_rdf_data(owner), rec.owner_len);
    rec.rdata = zone_arena_copy(&ld->bytes, ldns_buffer_begin(ld->rdata_buf), rec.rdlen);
    if (!rec.owner || !rec.rdata)
        return BALLAST_ENOMEM;
    return zone_push_record(ld, &rec);
}

static int zone_parse_file(struct zone_loader *ld, const char *path, unsigned depth,
                           const ldns_rdf *origin, uint32_t ttl, const char *where_file,
                           unsigned where_line);

/* Resolve an $INCLUDE file name: relative names are taken from the including file's directory
 * (RFC 1035 §5.1 leaves this open; Knot DNS does the same), and the result must stay inside the
 * top zone file's directory. */
static int zone_include_path(struct zone_loader *ld, const char *name, char *resolved,
                             const char *file, unsigned line)
{
    char joined[PATH_MAX * 2];
    const char *slash = strrchr(file, '/');
    if (name[0] == '/')
        snprintf(joined, sizeof joined, "%s", name);
    else if (slash)
        snprintf(joined, sizeof joined, "%.*s/%s", (int)(slash - file), file, name);
    else
        snprintf(joined, sizeof joined, "%s", name);
    if (!realpath(joined, resolved))
        return zone_fail(ld, BALLAST_EIO, file, line, "cannot open $INCLUDE file %s: %s", name,
                         strerror(errno));
    size_t dir_len = strlen(ld->dir);
    bool inside = strncmp(resolved, ld->dir, dir_len) == 0 &&
                  (resolved[dir_len] == '/' || (dir_len == 1 && ld->dir[0] == '/'));
    if (!inside)
        return zone_fail(ld, BALLAST_EINVAL, file, line,
                         "$INCLUDE outside the zone directory %s: %s", ld->dir, name);
    return BALLAST_OK;
}

/* Re-read the directive ldns has just consumed (ldns reports only that it saw one): copy its
 * line to text and return the line number; fp goes back to where ldns left it. */
static unsigned zone_reread(const struct zone_cursor *at, char *text, size_t text_len,
                            int64_t *after)
{
    *after = ftello(at->fp);
    return zone_locate(at->fp, at->pos, at->line_before, text, text_len);
}

static int zone_resume(struct zone_loader *ld, const struct zone_cursor *at, int64_t after,
                       unsigned line)
{
    if (fseeko(at->fp, (off_t)after, SEEK_SET) != 0)
        return zone_fail(ld, BALLAST_EIO, ld->files[at->file_index], line, "cannot seek: %s",
                         strerror(errno));
    return BALLAST_OK;
}

/* RFC 1035 §5.1: "$INCLUDE <file-name> [<domain-name>]"; the included file gets its own origin
 * and never changes the parent's. */
static int zone_include(struct zone_loader *ld, const struct zone_cursor *at, unsigned depth,
                        const ldns_rdf *origin, uint32_t ttl)
{
    const char *file = ld->files[at->file_index];
    char text[ZONE_LINE_TEXT_MAX];
    int64_t after;
    unsigned line = zone_reread(at, text, sizeof text, &after);
    char *cursor = text + strlen("$INCLUDE");
    char *name = zone_next_token(&cursor);
    char *origin_text = name ? zone_next_token(&cursor) : NULL;
    if (!name || !*name)
        return zone_fail(ld, BALLAST_EPARSE, file, line, "$INCLUDE without a file name");
    if (depth + 1 > ld->limits->max_include_depth)
        return zone_fail(ld, BALLAST_ELIMIT, file, line,
                         "$INCLUDE %s nested deeper than %u files (max-include-depth)", name,
                         ld->limits->max_include_depth);
    char resolved[PATH_MAX];
    int rc = zone_include_path(ld, name, resolved, file, line);
    if (rc < 0)
        return rc;
    ldns_rdf *include_origin =
        origin_text ? zone_directive_name(origin_text, origin) : ldns_rdf_clone(origin);
    if (!include_origin)
        return zone_fail(ld, BALLAST_EPARSE, file, line, "$INCLUDE with a bad origin: %s",
                         origin_text ? origin_text : "");
    rc = zone_parse_file(ld, resolved, depth + 1, include_origin, ttl, file, line);
    ldns_rdf_deep_free(include_origin);
    return rc < 0 ? rc : zone_resume(ld, at, after, line);
}

/* ldns accepts "$TTL junk" as 0 and takes a relative "$ORIGIN" as absolute: check both
 * (RFC 1035 §5.1: a relative $ORIGIN is relative to the current origin). */
static int zone_directive(struct zone_loader *ld, const struct zone_cursor *at, bool is_ttl,
                          ldns_rdf **origin, ldns_rdf **origin_before)
{
    const char *file = ld->files[at->file_index];
    char text[ZONE_LINE_TEXT_MAX];
    int64_t after;
    unsigned line = zone_reread(at, text, sizeof text, &after);
    char *cursor = text + (is_ttl ? strlen("$TTL") : strlen("$ORIGIN"));
    const char *value = zone_next_token(&cursor);
    if (!value)
        return zone_fail(ld, BALLAST_EPARSE, file, line, "%s without a value",
                         is_ttl ? "$TTL" : "$ORIGIN");
    if (is_ttl) {
        const char *end = NULL;
        ldns_str2period(value, &end);
        if (end == value || (end && *end != '\0'))
            return zone_fail(ld, BALLAST_EPARSE, file, line, "bad $TTL value: %s", value);
        return zone_resume(ld, at, after, line);
    }
    if (!ldns_dname_str_absolute(value)) {
        ldns_rdf *absolute = zone_directive_name(value, *origin_before);
        if (!absolute)
            return zone_fail(ld, BALLAST_EPARSE, file, line, "bad $ORIGIN: %s", value);
        ldns_rdf_deep_free(*origin);
        *origin = absolute;
    }
    ldns_rdf *copy = ldns_rdf_clone(*origin);
    if (!copy)
        return BALLAST_ENOMEM;
    ldns_rdf_deep_free(*origin_before);
    *origin_before = copy;
    return zone_resume(ld, at, after, line);
}

/* Parser state of one file. */
struct zone_file_state {
    uint32_t ttl;
    ldns_rdf *origin;
    ldns_rdf *origin_before; /* the origin before the last $ORIGIN, for relative ones */
    ldns_rdf *prev;          /* previous owner, for lines that start with blanks */
    int line;
};

/* One ldns call. Returns 1 at a clean end of file, 0 to go on, or an error. */
static int zone_parse_step(struct zone_loader *ld, FILE *fp, uint32_t file_index, unsigned depth,
                           struct zone_file_state *st)
{
    struct zone_cursor at = {fp, file_index, ftello(fp), (unsigned)st->line};
    ldns_rr *rr = NULL;
    ldns_status status = ldns_rr_new_frm_fp_l(&rr, fp, &st->ttl, &st->origin, &st->prev, &st->line);
    switch (status) {
    case LDNS_STATUS_OK: {
        int rc = zone_add_record(ld, rr, &at);
        ldns_rr_free(rr);
        return rc;
    }
    case LDNS_STATUS_SYNTAX_TTL:
    case LDNS_STATUS_SYNTAX_ORIGIN:
        return zone_directive(ld, &at, status == LDNS_STATUS_SYNTAX_TTL, &st->origin,
                              &st->origin_before);
    case LDNS_STATUS_SYNTAX_INCLUDE:
        return zone_include(ld, &at, depth, st->origin, st->ttl);
    case LDNS_STATUS_SYNTAX_EMPTY:
        if (!feof(fp))
            return 0;
        /* At the end: only blanks and comments may remain. */
        __attribute__((fallthrough));
    default: {
        char text[ZONE_CONTEXT_MAX];
        unsigned line = zone_locate(fp, at.pos, at.line_before, text, sizeof text);
        if (text[0] == '\0')
            return 1; /* ldns reports the end of the file as an error */
        return zone_fail(ld, BALLAST_EPARSE, ld->files[file_index], line, "%s: \"%s\"",
                         ldns_get_errorstr_by_id(status), text);
    }
    }
}

static int zone_open(struct zone_loader *ld, const char *path, const char *where_file,
                     unsigned where_line, FILE **out)
{
    FILE *fp = fopen(path, "r");
    struct stat st;
    if (!fp)
        return zone_fail(ld, BALLAST_EIO, where_file, where_line, "cannot open %s: %s", path,
                         strerror(errno));
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return zone_fail(ld, BALLAST_EIO, where_file, where_line, "%s is not a regular file", path);
    }
    ld->bytes_read += (uint64_t)st.st_size;
    if (ld->bytes_read > ld->limits->max_zone_bytes) {
        fclose(fp);
        return zone_fail(ld, BALLAST_ELIMIT, where_file, where_line,
                         "zone files reach %llu bytes with %s, limit is %llu (max-zone-size)",
                         (unsigned long long)ld->bytes_read, path,
                         (unsigned long long)ld->limits->max_zone_bytes);
    }
    *out = fp;
    return BALLAST_OK;
}

static int zone_parse_file(struct zone_loader *ld, const char *path, unsigned depth,
                           const ldns_rdf *origin_in, uint32_t ttl_in, const char *where_file,
                           unsigned where_line)
{
    FILE *fp = NULL;
    uint32_t file_index = 0;
    int rc = zone_open(ld, path, where_file, where_line, &fp);
    if (rc < 0)
        return rc;
    rc = zone_add_file(ld, path, &file_index);
    struct zone_file_state st = {
        .ttl = ttl_in,
        .origin = ldns_rdf_clone(origin_in),
        .origin_before = ldns_rdf_clone(origin_in),
        .line = 1,
    };
    if (rc == 0 && (!st.origin || !st.origin_before))
        rc = BALLAST_ENOMEM;
    while (rc == 0)
        rc = zone_parse_step(ld, fp, file_index, depth, &st);
    ldns_rdf_deep_free(st.origin);
    ldns_rdf_deep_free(st.origin_before);
    if (st.prev)
        ldns_rdf_deep_free(st.prev);
    fclose(fp);
    return rc < 0 ? rc : BALLAST_OK;
}

static int zone_parse(struct zone_loader *ld, const char *file)
{
    char resolved[PATH_MAX];
    if (!realpath(file, resolved))
        return zone_fail(ld, BALLAST_EIO, file, 0, "cannot open %s: %s", file, strerror(errno));
    char *slash = strrchr(resolved, '/');
    if (slash == resolved)
        slash[1] = '\0';
    else
        *slash = '\0';
    zone_copy_text(ld->dir, sizeof ld->dir, resolved);
    ldns_rdf *origin = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_DNAME, ld->apex_len, ld->apex);
    if (!origin)
        return BALLAST_ENOMEM;
    int rc = zone_parse_file(ld, file, 0, origin, ZONE_DEFAULT_TTL, file, 0);
    ldns_rdf_deep_free(origin);
    return rc;
}

/* ---- Validation of the parsed records ---- */

static int zone_compare_names(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    if (a_len != b_len)
        return a_len < b_len ? -1 : 1;
    return memcmp(a, b, a_len);
}

/* RFC 4034 §6.3: RDATA compared as left-justified octet strings. */
static int zone_compare_rdata(const struct zone_record *a, const struct zone_record *b)
{
    size_t common = a->rdlen < b->rdlen ? a->rdlen : b->rdlen;
    int c = common ? memcmp(a->rdata, b->rdata, common) : 0;
    if (c != 0)
        return c;
    return (a->rdlen > b->rdlen) - (a->rdlen < b->rdlen);
}

static int zone_compare_records(const void *pa, const void *pb)
{
    const struct zone_record *a = pa, *b = pb;
    int c = zone_compare_names(a->owner, a->owner_len, b->owner, b->owner_len);
    if (c != 0)
        return c;
    if (a->type != b->type)
        return a->type < b->type ? -1 : 1;
    c = zone_compare_rdata(a, b);
    if (c != 0)
        return c;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

static bool zone_same_owner(const struct zone_record *a, const struct zone_record *b)
{
    return a->owner_len == b->owner_len && memcmp(a->owner, b->owner, a->owner_len) == 0;
}

/* End of the run of records sharing the owner (and the type, if same_type) of records[from]. */
static size_t zone_group_end(const struct zone_loader *ld, size_t from, bool same_type)
{
    const struct zone_record *first = &ld->records[from];
    size_t i = from + 1;
    while (i < ld->record_count && zone_same_owner(first, &ld->records[i]) &&
           (!same_type || ld->records[i].type == first->type))
        i++;
    return i;
}

/* Sort and mark identical records as duplicates (the first in input order is kept). */
static size_t zone_dedupe(struct zone_loader *ld)
{
    if (ld->record_count > 1)
        qsort(ld->records, ld->record_count, sizeof *ld->records, zone_compare_records);
    size_t unique = 0;
    for (size_t i = 0; i < ld->record_count; i++) {
        struct zone_record *rec = &ld->records[i];
        const struct zone_record *before = i ? &ld->records[i - 1] : NULL;
        rec->duplicate = before && zone_same_owner(before, rec) && before->type == rec->type &&
                         zone_compare_rdata(before, rec) == 0;
        if (!rec->duplicate)
            unique++;
    }
    return unique;
}

static int zone_compare_seq(const void *pa, const void *pb)
{
    uint32_t a = (*(const struct zone_record *const *)pa)->seq;
    uint32_t b = (*(const struct zone_record *const *)pb)->seq;
    return (a > b) - (a < b);
}

/* The unique record among records[from, to) that is n-th (0-based) in input order: the one that
 * crossed a limit of n records. Called only when there are more than n. */
static const struct zone_record *zone_nth_in_input(const struct zone_loader *ld, size_t from,
                                                   size_t to, size_t n)
{
    const struct zone_record **unique = malloc((to - from) * sizeof *unique);
    if (!unique)
        return &ld->records[from];
    size_t count = 0;
    for (size_t i = from; i < to; i++)
        if (!ld->records[i].duplicate)
            unique[count++] = &ld->records[i];
    qsort(unique, count, sizeof *unique, zone_compare_seq);
    const struct zone_record *nth = unique[n < count ? n : count - 1];
    free(unique);
    return nth;
}

static size_t zone_unique_in(const struct zone_loader *ld, size_t from, size_t to)
{
    size_t count = 0;
    for (size_t i = from; i < to; i++)
        count += !ld->records[i].duplicate;
    return count;
}

/* Checks of one RRset: its size limit and single-record types. */
static int zone_check_rrset(struct zone_loader *ld, size_t from, size_t to)
{
    const struct zone_record *first = &ld->records[from];
    char owner_text[ZONE_NAME_TEXT_MAX], type_buf[16];
    size_t count = zone_unique_in(ld, from, to);
    const char *type = zone_type_name(first->type, type_buf, sizeof type_buf);
    zone_name_text(first->owner, owner_text);
    if (count > ld->limits->max_rrset_records)
        return zone_fail_at(ld, BALLAST_ELIMIT, zone_nth_in_input(ld, from, to, 0),
                            "RRset %s/%s has %zu records, limit is %u (max-rrset-records)",
                            owner_text, type, count, ld->limits->max_rrset_records);
    if (count > 1 && first->type == LDNS_RR_TYPE_SOA)
        return zone_fail_at(ld, BALLAST_EPARSE, zone_nth_in_input(ld, from, to, 1),
                            "second SOA record in zone %s (exactly one is allowed)", owner_text);
    /* RFC 2181 §10.1: one name, one CNAME. */
    if (count > 1 && first->type == LDNS_RR_TYPE_CNAME)
        return zone_fail_at(ld, BALLAST_EPARSE, zone_nth_in_input(ld, from, to, 1),
                            "second CNAME record at %s (RFC 2181 §10.1)", owner_text);
    return BALLAST_OK;
}

static bool zone_type_allowed_beside_cname(uint16_t type)
{
    /* RFC 1034 §3.6.2, amended by RFC 4035 §2.5 (RRSIG) and RFC 4034 §4 (NSEC). */
    return type == LDNS_RR_TYPE_CNAME || type == LDNS_RR_TYPE_RRSIG || type == LDNS_RR_TYPE_NSEC;
}

static int zone_check_cname(struct zone_loader *ld, size_t from, size_t to)
{
    const struct zone_record *cname = NULL, *other = NULL;
    for (size_t i = from; i < to && !(cname && other); i++) {
        const struct zone_record *rec = &ld->records[i];
        if (rec->type == LDNS_RR_TYPE_CNAME && !cname)
            cname = rec;
        else if (!zone_type_allowed_beside_cname(rec->type) && !other)
            other = rec;
    }
    if (!cname || !other)
        return BALLAST_OK;
    char owner_text[ZONE_NAME_TEXT_MAX], type_buf[16];
    return zone_fail_at(ld, BALLAST_EPARSE, cname,
                        "CNAME and other data (%s) at %s (RFC 1034 §3.6.2)",
                        zone_type_name(other->type, type_buf, sizeof type_buf),
                        zone_name_text(cname->owner, owner_text));
}

static int zone_validate(struct zone_loader *ld, size_t unique)
{
    if (unique > ld->limits->max_zone_records)
        return zone_fail_at(
            ld, BALLAST_ELIMIT,
            zone_nth_in_input(ld, 0, ld->record_count, ld->limits->max_zone_records),
            "zone %s has %zu records, limit is %u (max-zone-records)", ld->apex_text, unique,
            ld->limits->max_zone_records);
    bool soa = false, ns = false;
    for (size_t i = 0; i < ld->record_count;) {
        size_t owner_end = zone_group_end(ld, i, false);
        int rc = zone_check_cname(ld, i, owner_end);
        for (size_t j = i; rc == 0 && j < owner_end;) {
            size_t type_end = zone_group_end(ld, j, true);
            rc = zone_check_rrset(ld, j, type_end);
            j = type_end;
        }
        if (rc < 0)
            return rc;
        if (ld->records[i].owner_len == ld->apex_len) {
            for (size_t j = i; j < owner_end; j++) {
                soa |= ld->records[j].type == LDNS_RR_TYPE_SOA;
                ns |= ld->records[j].type == LDNS_RR_TYPE_NS;
            }
        }
        i = owner_end;
    }
    if (!soa)
        return zone_fail(ld, BALLAST_EPARSE, ld->files[0], 0, "no SOA record at the zone apex %s",
                         ld->apex_text);
    if (!ns)
        return zone_fail(ld, BALLAST_EPARSE, ld->files[0], 0, "no NS records at the zone apex %s",
                         ld->apex_text);
    return BALLAST_OK;
}

/* ---- Building the zone ---- */

struct zone_table {
    struct zone_node **buckets;
    size_t mask;
    size_t count;
};

static size_t zone_pow2_at_least(size_t n)
{
    size_t size = 1;
    while (size < n)
        size <<= 1;
    return size;
}

static struct zone_node *zone_table_find(struct zone_node *const *buckets, size_t mask,
                                         const uint8_t *name, size_t len)
{
    struct zone_node *node = buckets[wire_name_hash(name, len) & mask];
    while (node && (node->name_len != len || memcmp(node->name, name, len) != 0))
        node = node->hash_next;
    return node;
}

static void zone_table_link(struct zone_node **buckets, size_t mask, struct zone_node *node)
{
    size_t slot = wire_name_hash(node->name, node->name_len) & mask;
    node->hash_next = buckets[slot];
    buckets[slot] = node;
}

/* Move every node into buckets of the given size (a power of two). */
static void zone_table_relink(struct zone_table *table, struct zone_node **buckets, size_t size)
{
    memset(buckets, 0, size * sizeof *buckets);
    for (size_t i = 0; i <= table->mask; i++) {
        struct zone_node *node = table->buckets[i];
        while (node) {
            struct zone_node *next = node->hash_next;
            zone_table_link(buckets, size - 1, node);
            node = next;
        }
    }
}

static int zone_table_insert(struct zone_table *table, struct zone_node *node)
{
    if (table->count > table->mask) {
        size_t size = (table->mask + 1) * 2;
        struct zone_node **buckets = malloc(size * sizeof *buckets);
        if (!buckets)
            return BALLAST_ENOMEM;
        zone_table_relink(table, buckets, size);
        free(table->buckets);
        table->buckets = buckets;
        table->mask = size - 1;
    }
    zone_table_link(table->buckets, table->mask, node);
    table->count++;
    return BALLAST_OK;
}

/* One RRset from records[from, to): the unique records as [RDLENGTH][RDATA], lowest TTL. */
static int zone_build_rrset(const struct zone_loader *ld, struct zone_arena *arena, size_t from,
                            size_t to, struct zone_rrset *rrset)
{
    uint32_t data_len = 0, ttl = UINT32_MAX;
    uint16_t count = 0;
    for (size_t i = from; i < to; i++) {
        const struct zone_record *rec = &ld->records[i];
        if (rec->ttl < ttl)
            ttl = rec->ttl; /* RFC 2181 §5.2: differing TTLs in an RRset; use the lowest */
        if (!rec->duplicate) {
            data_len += 2u + rec->rdlen;
            count++;
        }
    }
    uint8_t *data = zone_arena_alloc(arena, data_len ? data_len : 1);
    if (!data)
        return BALLAST_ENOMEM;
    uint8_t *p = data;
    for (size_t i = from; i < to; i++) {
        const struct zone_record *rec = &ld->records[i];
        if (rec->duplicate)
            continue;
        wire_write_u16(p, rec->rdlen);
        if (rec->rdlen)
            memcpy(p + 2, rec->rdata, rec->rdlen);
        p += 2u + rec->rdlen;
    }
    *rrset = (struct zone_rrset){
        .type = ld->records[from].type,
        .count = count,
        .ttl = ttl,
        .data_len = data_len,
        .data = data,
    };
    return BALLAST_OK;
}

static struct zone_node *zone_new_node(struct zone_arena *arena, const uint8_t *name, size_t len)
{
    struct zone_node *node = zone_arena_calloc(arena, sizeof *node);
    if (!node)
        return NULL;
    node->name = (uint8_t *)name;
    node->name_len = (uint8_t)len;
    node->labels = (uint8_t)wire_name_labels(name);
    return node;
}

/* The node of one owner, records[from, to), with its RRsets (sorted by type, as the records). */
static struct zone_node *zone_build_owner(const struct zone_loader *ld, struct zone_arena *arena,
                                          size_t from, size_t to)
{
    const struct zone_record *first = &ld->records[from];
    uint8_t *name = zone_arena_copy(arena, first->owner, first->owner_len);
    struct zone_node *node = name ? zone_new_node(arena, name, first->owner_len) : NULL;
    if (!node)
        return NULL;
    size_t rrsets = 0;
    for (size_t i = from; i < to; i = zone_group_end(ld, i, true))
        rrsets++;
    node->rrsets = zone_arena_calloc(arena, rrsets * sizeof *node->rrsets);
    if (!node->rrsets)
        return NULL;
    for (size_t i = from; i < to;) {
        size_t type_end = zone_group_end(ld, i, true);
        if (zone_build_rrset(ld, arena, i, type_end, &node->rrsets[node->rrset_count]) < 0)
            return NULL;
        if (ld->records[i].type == LDNS_RR_TYPE_NS && first->owner_len != ld->apex_len)
            node->flags |= ZONE_NODE_DELEGATION;
        node->rrset_count++;
        i = type_end;
    }
    if (first->owner_len == ld->apex_len)
        node->flags |= ZONE_NODE_APEX;
    return node;
}

/* Every name between the apex and an owner exists, as an empty non-terminal if it owns nothing
 * (RFC 4592 §2.2.2). ENT names point into the owner's name. */
static int zone_add_ancestors(const struct zone_loader *ld, struct zone_arena *arena,
                              struct zone_table *table, struct zone_node *node)
{
    unsigned depth = node->labels - ld->apex_labels;
    for (unsigned skip = 1; skip < depth; skip++) {
        size_t offset = wire_name_skip_labels(node->name, skip);
        const uint8_t *name = node->name + offset;
        size_t len = node->name_len - offset;
        if (zone_table_find(table->buckets, table->mask, name, len))
            continue;
        struct zone_node *empty = zone_new_node(arena, name, len);
        if (!empty || zone_table_insert(table, empty) < 0)
            return BALLAST_ENOMEM;
    }
    return BALLAST_OK;
}

static int zone_build_nodes(const struct zone_loader *ld, struct zone_arena *arena,
                            struct zone_table *table)
{
    size_t owners = 0;
    for (size_t i = 0; i < ld->record_count; i = zone_group_end(ld, i, false))
        owners++;
    struct zone_node **owner_nodes = malloc(owners * sizeof *owner_nodes);
    table->mask = zone_pow2_at_least(owners) - 1;
    table->buckets = calloc(table->mask + 1, sizeof *table->buckets);
    if (!owner_nodes || !table->buckets) {
        free(owner_nodes);
        return BALLAST_ENOMEM;
    }
    int rc = BALLAST_OK;
    size_t n = 0;
    for (size_t i = 0; rc == 0 && i < ld->record_count; n++) {
        size_t end = zone_group_end(ld, i, false);
        owner_nodes[n] = zone_build_owner(ld, arena, i, end);
        rc = owner_nodes[n] ? zone_table_insert(table, owner_nodes[n]) : BALLAST_ENOMEM;
        i = end;
    }
    for (size_t i = 0; rc == 0 && i < owners; i++)
        rc = zone_add_ancestors(ld, arena, table, owner_nodes[i]);
    free(owner_nodes);
    return rc;
}

/* Flags that depend on other nodes: below a zone cut (RFC 1034 §4.2.1: glue and occluded
 * data), and parents of wildcards (RFC 4592). */
static void zone_set_flags(struct zone *zone)
{
    for (size_t i = 0; i <= zone->bucket_mask; i++) {
        for (struct zone_node *node = zone->buckets[i]; node; node = node->hash_next) {
            unsigned depth = node->labels - zone->apex_labels;
            for (unsigned skip = 1; skip < depth; skip++) {
                size_t offset = wire_name_skip_labels(node->name, skip);
                const struct zone_node *above = zone_table_find(
                    zone->buckets, zone->bucket_mask, node->name + offset, node->name_len - offset);
                if (above && (above->flags & ZONE_NODE_DELEGATION)) {
                    node->flags |= ZONE_NODE_OCCLUDED;
                    break;
                }
            }
            if (depth > 0 && node->name[0] == 1 && node->name[1] == '*') {
                size_t offset = (size_t)node->name[0] + 1;
                struct zone_node *parent = zone_table_find(
                    zone->buckets, zone->bucket_mask, node->name + offset, node->name_len - offset);
                if (parent)
                    parent->flags |= ZONE_NODE_WILDCARD_CHILD;
            }
        }
    }
}

/* Serial and negative TTL from the apex SOA (RFC 1035 §3.3.13, RFC 2308 §5). */
static int zone_read_soa(struct zone *zone)
{
    const struct zone_rrset *soa = zone_node_rrset(zone->apex_node, LDNS_RR_TYPE_SOA);
    if (!soa || soa->data_len < 2)
        return BALLAST_EINVAL;
    const uint8_t *rdata = soa->data + 2;
    size_t rdlen = wire_read_u16(soa->data);
    size_t mname = wire_name_length(rdata, rdlen);
    size_t rname = mname ? wire_name_length(rdata + mname, rdlen - mname) : 0;
    if (!rname || rdlen != mname + rname + 20)
        return BALLAST_EINVAL;
    const uint8_t *numbers = rdata + mname + rname;
    uint32_t minimum = wire_read_u32(numbers + 16);
    zone->soa = soa;
    zone->serial = wire_read_u32(numbers);
    zone->negative_ttl = soa->ttl < minimum ? soa->ttl : minimum;
    return BALLAST_OK;
}

static int zone_build(const struct zone_loader *ld, const char *file, size_t unique,
                      struct zone_arena *arena, struct zone **out)
{
    struct zone *zone = zone_arena_calloc(arena, sizeof *zone);
    if (!zone)
        return BALLAST_ENOMEM;
    struct zone_table table = {0};
    int rc = zone_build_nodes(ld, arena, &table);
    size_t size = zone_pow2_at_least(table.count);
    zone->buckets = rc == 0 ? zone_arena_alloc(arena, size * sizeof *zone->buckets) : NULL;
    if (zone->buckets)
        zone_table_relink(&table, zone->buckets, size);
    free(table.buckets);
    if (!zone->buckets)
        return rc < 0 ? rc : BALLAST_ENOMEM;
    zone->bucket_mask = size - 1;
    zone->node_count = table.count;
    zone->record_count = unique;
    memcpy(zone->apex, ld->apex, ld->apex_len);
    zone->apex_len = (uint8_t)ld->apex_len;
    zone->apex_labels = (uint8_t)ld->apex_labels;
    zone->apex_node = zone_find_node(zone, ld->apex, ld->apex_len);
    zone->name_text = zone_arena_copy(arena, ld->apex_text, strlen(ld->apex_text) + 1);
    zone->file = zone_arena_copy(arena, file, strlen(file) + 1);
    if (!zone->apex_node || !zone->name_text || !zone->file)
        return BALLAST_ENOMEM;
    rc = zone_read_soa(zone);
    if (rc < 0)
        return rc;
    zone_set_flags(zone);
    *out = zone;
    return BALLAST_OK;
}

static int zone_loader_init(struct zone_loader *ld, const char *origin, const struct limits *limits,
                            struct zone_error *err)
{
    memset(ld, 0, sizeof *ld);
    ld->limits = limits;
    ld->err = err;
    zone_arena_init(&ld->bytes);
    size_t len = 0;
    if (!origin || wire_name_from_text(origin, ld->apex, &len) < 0)
        return zone_fail(ld, BALLAST_EINVAL, "", 0, "invalid zone name: %s",
                         origin ? origin : "(none)");
    wire_name_lower(ld->apex, ld->apex, len);
    ld->apex_len = len;
    ld->apex_labels = wire_name_labels(ld->apex);
    zone_name_text(ld->apex, ld->apex_text);
    ld->rdata_buf = ldns_buffer_new(LDNS_MAX_PACKETLEN);
    return ld->rdata_buf ? BALLAST_OK : BALLAST_ENOMEM;
}

static void zone_loader_free(struct zone_loader *ld)
{
    for (size_t i = 0; i < ld->file_count; i++)
        free(ld->files[i]);
    free(ld->files);
    free(ld->records);
    zone_chunks_free(ld->bytes.head);
    if (ld->rdata_buf)
        ldns_buffer_free(ld->rdata_buf);
}

int zone_load(const char *origin, const char *file, const struct limits *limits, struct zone **out,
              struct zone_error *err)
{
    struct limits defaults;
    struct zone_error scratch;
    if (!limits) {
        limits_init_defaults(&defaults);
        limits = &defaults;
    }
    if (!err)
        err = &scratch;
    memset(err, 0, sizeof *err);
    *out = NULL;
    struct zone_loader ld;
    int rc = zone_loader_init(&ld, origin, limits, err);
    if (rc == 0)
        rc = zone_parse(&ld, file);
    size_t unique = rc == 0 ? zone_dedupe(&ld) : 0;
    if (rc == 0)
        rc = zone_validate(&ld, unique);
    struct zone_arena arena;
    zone_arena_init(&arena);
    if (rc == 0)
        rc = zone_build(&ld, file, unique, &arena, out);
    if (rc == 0) {
        (*out)->storage = arena.head;
    } else {
        zone_chunks_free(arena.head);
        *out = NULL;
        if (rc == BALLAST_ENOMEM && err->reason[0] == '\0')
            zone_fail(&ld, rc, file, 0, "out of memory");
    }
    zone_loader_free(&ld);
    return rc;
}

const struct zone_node *zone_find_node(const struct zone *zone, const uint8_t *name, size_t len)
{
    if (!zone || len == 0 || len > WIRE_NAME_MAX)
        return NULL;
    return zone_table_find(zone->buckets, zone->bucket_mask, name, len);
}

const struct zone_rrset *zone_node_rrset(const struct zone_node *node, uint16_t type)
{
    if (!node)
        return NULL;
    for (uint16_t i = 0; i < node->rrset_count && node->rrsets[i].type <= type; i++)
        if (node->rrsets[i].type == type)
            return &node->rrsets[i];
    return NULL;
}

void zone_free(struct zone *zone)
{
    if (zone)
        zone_chunks_free(zone->storage); /* the zone struct itself lives in its storage */
}

/* ---- Zone set ---- */

static size_t zone_set_slot(const struct zone_set *set, const uint8_t *apex, size_t len)
{
    size_t slot = wire_name_hash(apex, len) & set->bucket_mask;
    while (set->buckets[slot] && (set->buckets[slot]->apex_len != len ||
                                  memcmp(set->buckets[slot]->apex, apex, len) != 0))
        slot = (slot + 1) & set->bucket_mask;
    return slot;
}

int zone_set_create(struct zone **zones, size_t count, struct zone_set **out)
{
    *out = NULL;
    struct zone_set *set = calloc(1, sizeof *set);
    if (!set)
        return BALLAST_ENOMEM;
    size_t size = zone_pow2_at_least(count * 2 + 1); /* always a free slot to end probes */
    set->zones = calloc(count ? count : 1, sizeof *set->zones);
    set->buckets = calloc(size, sizeof *set->buckets);
    set->bucket_mask = size - 1;
    if (!set->zones || !set->buckets) {
        zone_set_free_shallow(set);
        return BALLAST_ENOMEM;
    }
    for (size_t i = 0; i < count; i++) {
        size_t slot = zone_set_slot(set, zones[i]->apex, zones[i]->apex_len);
        if (set->buckets[slot]) {
            zone_set_free_shallow(set);
            return BALLAST_EEXIST;
        }
        set->buckets[slot] = zones[i];
        set->zones[set->count++] = zones[i];
    }
    *out = set;
    return BALLAST_OK;
}

const struct zone *zone_set_find_exact(const struct zone_set *set, const uint8_t *apex, size_t len)
{
    if (!set || len == 0 || len > WIRE_NAME_MAX)
        return NULL;
    return set->buckets[zone_set_slot(set, apex, len)];
}

const struct zone *zone_set_find(const struct zone_set *set, const uint8_t *name, size_t len)
{
    if (!set || len == 0 || len > WIRE_NAME_MAX)
        return NULL;
    /* Longest suffix first: the most specific zone wins. */
    for (size_t at = 0; at < len; at += (size_t)name[at] + 1) {
        const struct zone *zone = zone_set_find_exact(set, name + at, len - at);
        if (zone)
            return zone;
        if (name[at] == 0)
            break;
    }
    return NULL;
}

void zone_set_free_shallow(struct zone_set *set)
{
    if (!set)
        return;
    free(set->zones);
    free(set->buckets);
    free(set);
}

void zone_set_free(struct zone_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->count; i++)
        zone_free(set->zones[i]);
    zone_set_free_shallow(set);
}
