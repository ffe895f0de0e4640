/* Zones in memory: RFC 1035 master files read with ldns (with $INCLUDE confined to the zone's
 * directory), checked against limits, and turned into a hash of nodes whose RRsets are kept in
 * uncompressed wire form. Also the zone set, found by most specific apex. */
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

#define ZONE_ARENA_CHUNK (64u * 1024u)
#define ZONE_MAX_FILES 256 /* zone file plus every $INCLUDE */

/* --- arena: everything of a zone is freed in one call ------------------------------------- */

struct zone_arena_chunk {
    struct zone_arena_chunk *next;
    size_t used;
    size_t size;
    max_align_t data[];
};

struct zone_arena {
    struct zone_arena_chunk *head;
};

static void *zone_arena_alloc(struct zone_arena *arena, size_t size)
{
    size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    struct zone_arena_chunk *chunk = arena->head;
    if (!chunk || chunk->size - chunk->used < size) {
        size_t chunk_size = size > ZONE_ARENA_CHUNK ? size : ZONE_ARENA_CHUNK;
        chunk = malloc(sizeof *chunk + chunk_size);
        if (!chunk)
            return NULL;
        chunk->size = chunk_size;
        chunk->used = 0;
        chunk->next = arena->head;
        arena->head = chunk;
    }
    void *p = (uint8_t *)chunk->data + chunk->used;
    chunk->used += size;
    return p;
}

static void zone_arena_free(struct zone_arena *arena)
{
    struct zone_arena_chunk *chunk = arena->head;
    while (chunk) {
        struct zone_arena_chunk *next = chunk->next;
        free(chunk);
        chunk = next;
    }
    free(arena);
}

/* --- loading ------------------------------------------------------------------------------ */

/* One record as read, before it is grouped into nodes and RRsets. */
struct zone_record {
    uint8_t owner[WIRE_NAME_MAX]; /* lowercase */
    uint8_t owner_len;
    uint16_t type;
    uint32_t ttl;
    uint16_t rdlen;
    uint8_t *rdata;    /* malloc'd, lowercase names where RFC 4034 §6.2 says so */
    unsigned file;     /* index into loader->files */
    unsigned line;
};

struct zone_loader {
    const struct limits *limits;
    struct zone_error *err;
    uint8_t apex[WIRE_NAME_MAX];
    size_t apex_len;
    char root_dir[PATH_MAX]; /* $INCLUDE must stay inside this directory */
    char *files[ZONE_MAX_FILES];
    unsigned file_count;
    uint64_t bytes;
    struct zone_record *records;
    size_t record_count;
    size_t record_cap;
    ldns_buffer *buffer;
};

static int zone_fail(struct zone_loader *loader, const char *file, unsigned line, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));

static int zone_fail(struct zone_loader *loader, const char *file, unsigned line, const char *fmt,
                     ...)
{
    struct zone_error *err = loader->err;
    snprintf(err->file, sizeof err->file, "%s", file ? file : "");
    err->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof err->reason, fmt, ap);
    va_end(ap);
    return BALLAST_EPARSE;
}

static void zone_name_text(const uint8_t *name, char *buf, size_t len)
{
    if (wire_name_to_text(name, buf, len) != 0)
        snprintf(buf, len, "?");
}

static const char *zone_type_text(uint16_t type, char *buf, size_t len)
{
    const ldns_rr_descriptor *d = ldns_rr_descript(type);
    if (d && d->_name)
        snprintf(buf, len, "%s", d->_name);
    else
        snprintf(buf, len, "TYPE%u", type);
    return buf;
}

static int zone_add_record(struct zone_loader *loader, ldns_rr *rr, unsigned file, unsigned line)
{
    const char *path = loader->files[file];
    if (ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN)
        return zone_fail(loader, path, line, "class other than IN is not supported");
    if (loader->record_count >= loader->limits->max_zone_records)
        return zone_fail(loader, path, line, "zone has more than %u records (max-zone-records)",
                         loader->limits->max_zone_records);
    ldns_rr2canonical(rr);
    const ldns_rdf *owner = ldns_rr_owner(rr);
    struct zone_record record;
    memset(&record, 0, sizeof record);
    if (ldns_rdf_size(owner) > WIRE_NAME_MAX)
        return zone_fail(loader, path, line, "owner name too long");
    memcpy(record.owner, ldns_rdf_data(owner), ldns_rdf_size(owner));
    record.owner_len = (uint8_t)ldns_rdf_size(owner);
    wire_name_lower(record.owner, record.owner, record.owner_len);
    if (!wire_name_is_subdomain(record.owner, record.owner_len, loader->apex, loader->apex_len)) {
        char name[256], apex[256];
        zone_name_text(record.owner, name, sizeof name);
        zone_name_text(loader->apex, apex, sizeof apex);
        return zone_fail(loader, path, line, "record outside zone %s: %s", apex, name);
    }
    record.type = (uint16_t)ldns_rr_get_type(rr);
    record.ttl = ldns_rr_ttl(rr);
    ldns_buffer_clear(loader->buffer);
    if (ldns_rr_rdata2buffer_wire(loader->buffer, rr) != LDNS_STATUS_OK ||
        ldns_buffer_position(loader->buffer) > UINT16_MAX)
        return zone_fail(loader, path, line, "cannot encode RDATA");
    record.rdlen = (uint16_t)ldns_buffer_position(loader->buffer);
    record.rdata = malloc(record.rdlen ? record.rdlen : 1);
    if (!record.rdata)
        return BALLAST_ENOMEM;
    memcpy(record.rdata, ldns_buffer_begin(loader->buffer), record.rdlen);
    record.file = file;
    record.line = line;
    if (loader->record_count == loader->record_cap) {
        size_t cap = loader->record_cap ? loader->record_cap * 2 : 256;
        struct zone_record *grown = realloc(loader->records, cap * sizeof *grown);
        if (!grown) {
            free(record.rdata);
            return BALLAST_ENOMEM;
        }
        loader->records = grown;
        loader->record_cap = cap;
    }
    loader->records[loader->record_count++] = record;
    return BALLAST_OK;
}

static int zone_read_file(struct zone_loader *loader, const char *path, ldns_rdf *origin,
                          unsigned depth);

/* ldns reports "$INCLUDE" without its argument: re-read the directive line ourselves. */
static int zone_include(struct zone_loader *loader, FILE *fp, long line_start, unsigned file,
                        unsigned line, ldns_rdf *origin, unsigned depth)
{
    const char *path = loader->files[file];
    char text[4096];
    if (fseek(fp, line_start, SEEK_SET) != 0)
        return zone_fail(loader, path, line, "cannot re-read $INCLUDE line");
    char *directive = NULL;
    while (fgets(text, sizeof text, fp)) {
        directive = strstr(text, "$INCLUDE");
        if (directive)
            break;
    }
    if (!directive)
        return zone_fail(loader, path, line, "cannot re-read $INCLUDE line");
    char name[PATH_MAX], origin_text[256] = "";
    int fields = sscanf(directive + 8, " %4095s %255s", name, origin_text);
    if (fields < 1 || name[0] == ';')
        return zone_fail(loader, path, line, "$INCLUDE needs a file name");
    if (depth + 1 > loader->limits->max_include_depth)
        return zone_fail(loader, path, line, "$INCLUDE nested deeper than %u (max-include-depth)",
                         loader->limits->max_include_depth);
    /* Relative to the directory of the including file (RFC 1035 leaves this open). */
    char full[PATH_MAX * 2];
    if (name[0] == '/') {
        snprintf(full, sizeof full, "%s", name);
    } else {
        const char *slash = strrchr(path, '/');
        int dir_len = slash ? (int)(slash - path) : 1;
        snprintf(full, sizeof full, "%.*s/%s", dir_len, slash ? path : ".", name);
    }
    char resolved[PATH_MAX];
    if (!realpath(full, resolved))
        return zone_fail(loader, path, line, "$INCLUDE %s: %s", name, strerror(errno));
    size_t root_len = strlen(loader->root_dir);
    if (strncmp(resolved, loader->root_dir, root_len) != 0 || resolved[root_len] != '/')
        return zone_fail(loader, path, line, "$INCLUDE %s is outside the zone directory %s", name,
                         loader->root_dir);
    ldns_rdf *include_origin = origin;
    ldns_rdf *own_origin = NULL;
    if (fields == 2 && origin_text[0] != ';') {
        if (ldns_str2rdf_dname(&own_origin, origin_text) != LDNS_STATUS_OK)
            return zone_fail(loader, path, line, "$INCLUDE origin '%s' is not a name", origin_text);
        include_origin = own_origin;
    }
    int rc = zone_read_file(loader, full, include_origin, depth + 1);
    if (own_origin)
        ldns_rdf_deep_free(own_origin);
    return rc;
}

static int zone_read_records(struct zone_loader *loader, FILE *fp, unsigned file,
                             ldns_rdf *start_origin, unsigned depth)
{
    const char *path = loader->files[file];
    uint32_t default_ttl = LDNS_DEFAULT_TTL;
    ldns_rdf *origin = ldns_rdf_clone(start_origin);
    ldns_rdf *prev = NULL;
    int line_nr = 1;
    int rc = BALLAST_OK;
    while (rc == BALLAST_OK && !feof(fp)) {
        long line_start = ftell(fp);
        int line_before = line_nr;
        ldns_rr *rr = NULL;
        ldns_status status = ldns_rr_new_frm_fp_l(&rr, fp, &default_ttl, &origin, &prev, &line_nr);
        switch (status) {
        case LDNS_STATUS_OK:
            rc = zone_add_record(loader, rr, file, (unsigned)line_before);
            ldns_rr_free(rr);
            break;
        case LDNS_STATUS_SYNTAX_EMPTY:
        case LDNS_STATUS_SYNTAX_TTL:
        case LDNS_STATUS_SYNTAX_ORIGIN:
            break;
        case LDNS_STATUS_SYNTAX_INCLUDE: {
            rc = zone_include(loader, fp, line_start, file, (unsigned)line_before, origin, depth);
            break;
        }
        default:
            rc = zone_fail(loader, path, (unsigned)line_before, "%s", ldns_get_errorstr_by_id(status));
            break;
        }
    }
    ldns_rdf_deep_free(origin);
    if (prev)
        ldns_rdf_deep_free(prev);
    return rc;
}

static int zone_read_file(struct zone_loader *loader, const char *path, ldns_rdf *origin,
                          unsigned depth)
{
    if (loader->file_count >= ZONE_MAX_FILES)
        return zone_fail(loader, path, 0, "more than %d included files", ZONE_MAX_FILES);
    unsigned file = loader->file_count;
    loader->files[file] = strdup(path);
    if (!loader->files[file])
        return BALLAST_ENOMEM;
    loader->file_count++;
    FILE *fp = fopen(path, "r");
    if (!fp)
        return zone_fail(loader, path, 0, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return zone_fail(loader, path, 0, "not a regular file");
    }
    loader->bytes += (uint64_t)st.st_size;
    if (loader->bytes > loader->limits->max_zone_bytes) {
        fclose(fp);
        return zone_fail(loader, path, 0,
                         "zone files total %llu bytes, limit is %llu (max-zone-size)",
                         (unsigned long long)loader->bytes,
                         (unsigned long long)loader->limits->max_zone_bytes);
    }
    int rc = zone_read_records(loader, fp, file, origin, depth);
    fclose(fp);
    return rc;
}

/* --- building nodes ----------------------------------------------------------------------- */

static int zone_record_compare(const void *a, const void *b)
{
    const struct zone_record *x = a, *y = b;
    if (x->owner_len != y->owner_len)
        return x->owner_len < y->owner_len ? -1 : 1;
    int c = memcmp(x->owner, y->owner, x->owner_len);
    if (c != 0)
        return c;
    if (x->type != y->type)
        return x->type < y->type ? -1 : 1;
    if (x->rdlen != y->rdlen)
        return x->rdlen < y->rdlen ? -1 : 1;
    c = memcmp(x->rdata, y->rdata, x->rdlen);
    if (c != 0)
        return c;
    /* keep file order among identical records so errors name the first */
    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    return x->line < y->line ? -1 : (x->line > y->line);
}

static bool zone_same_rrset(const struct zone_record *a, const struct zone_record *b)
{
    return a->owner_len == b->owner_len && a->type == b->type &&
           memcmp(a->owner, b->owner, a->owner_len) == 0;
}

static size_t zone_bucket(const struct zone *zone, const uint8_t *name, size_t len)
{
    return (size_t)wire_name_hash(name, len) & zone->bucket_mask;
}

const struct zone_node *zone_find_node(const struct zone *zone, const uint8_t *name, size_t len)
{
    const struct zone_node *node = zone->buckets[zone_bucket(zone, name, len)];
    for (; node; node = node->hash_next)
        if (node->name_len == len && memcmp(node->name, name, len) == 0)
            return node;
    return NULL;
}

static struct zone_node *zone_new_node(struct zone *zone, struct zone_arena *arena,
                                       const uint8_t *name, size_t len)
{
    struct zone_node *node = zone_arena_alloc(arena, sizeof *node);
    uint8_t *copy = zone_arena_alloc(arena, len);
    if (!node || !copy)
        return NULL;
    memcpy(copy, name, len);
    memset(node, 0, sizeof *node);
    node->name = copy;
    node->name_len = (uint8_t)len;
    node->labels = (uint8_t)wire_name_labels(name);
    size_t bucket = zone_bucket(zone, name, len);
    node->hash_next = zone->buckets[bucket];
    zone->buckets[bucket] = node;
    zone->node_count++;
    return node;
}

/* Make sure every ancestor of name below the apex exists (empty non-terminals, RFC 4592 §2.2.2)
 * and mark wildcard parents. */
static int zone_add_ancestors(struct zone *zone, struct zone_arena *arena, const uint8_t *name,
                              size_t len)
{
    bool child_is_wildcard = name[0] == 1 && name[1] == '*';
    size_t offset = (size_t)name[0] + 1;
    while (len - offset >= zone->apex_len && offset < len) {
        struct zone_node *node =
            (struct zone_node *)zone_find_node(zone, name + offset, len - offset);
        if (!node) {
            node = zone_new_node(zone, arena, name + offset, len - offset);
            if (!node)
                return BALLAST_ENOMEM;
        }
        if (child_is_wildcard)
            node->flags |= ZONE_NODE_WILDCARD_CHILD;
        child_is_wildcard = false;
        if (len - offset == zone->apex_len)
            break;
        offset += (size_t)name[offset] + 1;
    }
    return BALLAST_OK;
}

/* Copy one RRset (records [first, end) of the sorted array, duplicates already removed). */
static int zone_fill_rrset(struct zone_arena *arena, struct zone_rrset *rrset,
                           const struct zone_record *records, size_t first, size_t end)
{
    size_t bytes = 0;
    uint32_t ttl = UINT32_MAX;
    for (size_t i = first; i < end; i++) {
        bytes += 2 + (size_t)records[i].rdlen;
        if (records[i].ttl < ttl)
            ttl = records[i].ttl; /* RFC 2181 §5.2: one TTL per RRset, use the lowest */
    }
    rrset->type = records[first].type;
    rrset->count = (uint16_t)(end - first);
    rrset->ttl = ttl;
    rrset->data_len = (uint32_t)bytes;
    rrset->data = zone_arena_alloc(arena, bytes ? bytes : 1);
    if (!rrset->data)
        return BALLAST_ENOMEM;
    uint8_t *at = rrset->data;
    for (size_t i = first; i < end; i++) {
        wire_write_u16(at, records[i].rdlen);
        memcpy(at + 2, records[i].rdata, records[i].rdlen);
        at += 2 + (size_t)records[i].rdlen;
    }
    return BALLAST_OK;
}

/* RFC 1034 §3.6.2: a CNAME cannot share its name with other data (DNSSEC types excepted). */
static bool zone_cname_conflict(const struct zone_node *node)
{
    if (!zone_node_rrset(node, WIRE_TYPE_CNAME))
        return false;
    for (uint16_t i = 0; i < node->rrset_count; i++) {
        uint16_t type = node->rrsets[i].type;
        if (type != WIRE_TYPE_CNAME && type != WIRE_TYPE_RRSIG && type != 47 /* NSEC */)
            return true;
    }
    return false;
}

/* Remove identical records (same owner, type and RDATA); the array is sorted. */
static void zone_dedupe(struct zone_loader *loader)
{
    size_t kept = 0;
    for (size_t i = 0; i < loader->record_count; i++) {
        struct zone_record *r = &loader->records[i];
        if (kept > 0) {
            struct zone_record *last = &loader->records[kept - 1];
            if (zone_same_rrset(last, r) && last->rdlen == r->rdlen &&
                memcmp(last->rdata, r->rdata, r->rdlen) == 0) {
                if (r->ttl < last->ttl)
                    last->ttl = r->ttl;
                free(r->rdata);
                continue;
            }
        }
        loader->records[kept++] = *r;
    }
    loader->record_count = kept;
}

static int zone_build_node(struct zone_loader *loader, struct zone *zone, struct zone_arena *arena,
                           size_t first, size_t end)
{
    const struct zone_record *records = loader->records;
    struct zone_node *node = zone_new_node(zone, arena, records[first].owner,
                                           records[first].owner_len);
    if (!node)
        return BALLAST_ENOMEM;
    size_t sets = 0;
    for (size_t i = first; i < end; i++)
        if (i == first || records[i].type != records[i - 1].type)
            sets++;
    node->rrsets = zone_arena_alloc(arena, sets * sizeof *node->rrsets);
    if (!node->rrsets)
        return BALLAST_ENOMEM;
    size_t set_start = first;
    for (size_t i = first + 1; i <= end; i++) {
        if (i < end && records[i].type == records[set_start].type)
            continue;
        if (i - set_start > loader->limits->max_rrset_records) {
            char name[256], type[32];
            zone_name_text(records[set_start].owner, name, sizeof name);
            zone_type_text(records[set_start].type, type, sizeof type);
            return zone_fail(loader, loader->files[records[set_start].file],
                             records[set_start].line,
                             "RRset %s/%s has %zu records, limit is %u (max-rrset-records)", name,
                             type, i - set_start, loader->limits->max_rrset_records);
        }
        int rc = zone_fill_rrset(arena, &node->rrsets[node->rrset_count++], records, set_start, i);
        if (rc != 0)
            return rc;
        set_start = i;
    }
    if (zone_cname_conflict(node)) {
        char name[256];
        size_t cname = first;
        while (cname < end && records[cname].type != WIRE_TYPE_CNAME)
            cname++;
        zone_name_text(node->name, name, sizeof name);
        return zone_fail(loader, loader->files[records[cname].file], records[cname].line,
                         "CNAME and other data at %s (RFC 1034 §3.6.2)", name);
    }
    return BALLAST_OK;
}

/* A node strictly below a zone cut is occluded: only glue lives there (RFC 1034 §4.2.1). */
static void zone_mark_occluded(struct zone *zone)
{
    for (size_t b = 0; b <= zone->bucket_mask; b++) {
        for (struct zone_node *node = zone->buckets[b]; node; node = node->hash_next) {
            size_t offset = (size_t)node->name[0] + 1;
            while (node->name[0] != 0 && node->name_len - offset > zone->apex_len) {
                const struct zone_node *up =
                    zone_find_node(zone, node->name + offset, node->name_len - offset);
                if (up && (up->flags & ZONE_NODE_DELEGATION)) {
                    node->flags |= ZONE_NODE_OCCLUDED;
                    break;
                }
                offset += (size_t)node->name[offset] + 1;
            }
        }
    }
}

static int zone_check_apex(struct zone_loader *loader, struct zone *zone, const char *file)
{
    const struct zone_node *apex = zone_find_node(zone, zone->apex, zone->apex_len);
    const struct zone_rrset *soa = apex ? zone_node_rrset(apex, WIRE_TYPE_SOA) : NULL;
    if (!soa)
        return zone_fail(loader, file, 0, "no SOA record at the zone apex %s", zone->name_text);
    if (soa->count != 1)
        return zone_fail(loader, file, 0, "%u SOA records at the apex, expected exactly one",
                         soa->count);
    if (!zone_node_rrset(apex, WIRE_TYPE_NS))
        return zone_fail(loader, file, 0, "no NS records at the zone apex %s", zone->name_text);
    /* SOA RDATA: MNAME, RNAME, SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM */
    const uint8_t *rdata = soa->data + 2;
    uint16_t rdlen = wire_read_u16(soa->data);
    size_t mname = wire_name_length(rdata, rdlen);
    size_t rname = mname ? wire_name_length(rdata + mname, rdlen - mname) : 0;
    if (!rname || mname + rname + 20 != rdlen)
        return zone_fail(loader, file, 0, "malformed SOA record");
    zone->serial = wire_read_u32(rdata + mname + rname);
    uint32_t minimum = wire_read_u32(rdata + mname + rname + 16);
    zone->negative_ttl = soa->ttl < minimum ? soa->ttl : minimum; /* RFC 2308 §5 */
    zone->apex_node = apex;
    zone->soa = soa;
    ((struct zone_node *)apex)->flags |= ZONE_NODE_APEX;
    return BALLAST_OK;
}

static int zone_check_soa_placement(struct zone_loader *loader)
{
    for (size_t i = 0; i < loader->record_count; i++) {
        const struct zone_record *r = &loader->records[i];
        if (r->type == WIRE_TYPE_SOA &&
            (r->owner_len != loader->apex_len || memcmp(r->owner, loader->apex, r->owner_len)))
            return zone_fail(loader, loader->files[r->file], r->line,
                             "SOA record is not at the zone apex");
    }
    return BALLAST_OK;
}

static int zone_build(struct zone_loader *loader, struct zone *zone, struct zone_arena *arena)
{
    qsort(loader->records, loader->record_count, sizeof *loader->records, zone_record_compare);
    zone_dedupe(loader);
    zone->record_count = loader->record_count;
    int rc = zone_check_soa_placement(loader);
    if (rc != 0)
        return rc;
    size_t buckets = 64;
    while (buckets < loader->record_count * 2)
        buckets <<= 1;
    zone->bucket_mask = buckets - 1;
    zone->buckets = zone_arena_alloc(arena, buckets * sizeof *zone->buckets);
    if (!zone->buckets)
        return BALLAST_ENOMEM;
    memset(zone->buckets, 0, buckets * sizeof *zone->buckets);
    size_t first = 0;
    for (size_t i = 1; i <= loader->record_count && rc == 0; i++) {
        const struct zone_record *r = &loader->records[first];
        if (i < loader->record_count && loader->records[i].owner_len == r->owner_len &&
            memcmp(loader->records[i].owner, r->owner, r->owner_len) == 0)
            continue;
        rc = zone_build_node(loader, zone, arena, first, i);
        first = i;
    }
    for (size_t i = 0; i < loader->record_count && rc == 0; i++)
        if (i == 0 || !zone_same_rrset(&loader->records[i - 1], &loader->records[i]))
            rc = zone_add_ancestors(zone, arena, loader->records[i].owner,
                                    loader->records[i].owner_len);
    if (rc != 0)
        return rc;
    for (size_t b = 0; b < buckets; b++)
        for (struct zone_node *node = zone->buckets[b]; node; node = node->hash_next)
            if (zone_node_rrset(node, WIRE_TYPE_NS) &&
                !(node->name_len == zone->apex_len &&
                  memcmp(node->name, zone->apex, zone->apex_len) == 0))
                node->flags |= ZONE_NODE_DELEGATION;
    zone_mark_occluded(zone);
    return zone_check_apex(loader, zone, loader->files[0]);
}

static void zone_loader_free(struct zone_loader *loader)
{
    for (size_t i = 0; i < loader->record_count; i++)
        free(loader->records[i].rdata);
    free(loader->records);
    for (unsigned i = 0; i < loader->file_count; i++)
        free(loader->files[i]);
    if (loader->buffer)
        ldns_buffer_free(loader->buffer);
}

static int zone_loader_init(struct zone_loader *loader, const char *origin, const char *file,
                            const struct limits *limits, struct zone_error *err)
{
    memset(loader, 0, sizeof *loader);
    loader->limits = limits;
    loader->err = err;
    if (wire_name_from_text(origin, loader->apex, &loader->apex_len) != 0)
        return zone_fail(loader, file, 0, "invalid zone name '%s'", origin);
    wire_name_lower(loader->apex, loader->apex, loader->apex_len);
    char resolved[PATH_MAX];
    if (!realpath(file, resolved))
        return zone_fail(loader, file, 0, "cannot open: %s", strerror(errno));
    char *slash = strrchr(resolved, '/');
    if (slash == resolved)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    snprintf(loader->root_dir, sizeof loader->root_dir, "%s", resolved);
    loader->buffer = ldns_buffer_new(1024);
    return loader->buffer ? BALLAST_OK : BALLAST_ENOMEM;
}

int zone_load(const char *origin, const char *file, const struct limits *limits,
              struct zone **out, struct zone_error *err)
{
    memset(err, 0, sizeof *err);
    *out = NULL;
    struct zone_loader loader;
    int rc = zone_loader_init(&loader, origin, file, limits, err);
    struct zone *zone = NULL;
    struct zone_arena *arena = NULL;
    ldns_rdf *origin_rdf = NULL;
    if (rc == 0) {
        origin_rdf = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_DNAME, loader.apex_len, loader.apex);
        rc = origin_rdf ? zone_read_file(&loader, file, origin_rdf, 0) : BALLAST_ENOMEM;
    }
    if (rc == 0) {
        zone = calloc(1, sizeof *zone);
        arena = calloc(1, sizeof *arena);
        rc = zone && arena ? BALLAST_OK : BALLAST_ENOMEM;
    }
    if (rc == 0) {
        memcpy(zone->apex, loader.apex, loader.apex_len);
        zone->apex_len = (uint8_t)loader.apex_len;
        zone->apex_labels = (uint8_t)wire_name_labels(loader.apex);
        char text[256];
        zone_name_text(loader.apex, text, sizeof text);
        zone->name_text = strdup(text);
        zone->file = strdup(file);
        zone->storage = arena;
        rc = zone->name_text && zone->file ? zone_build(&loader, zone, arena) : BALLAST_ENOMEM;
    }
    if (rc == BALLAST_ENOMEM && err->reason[0] == '\0')
        zone_fail(&loader, file, 0, "out of memory");
    if (origin_rdf)
        ldns_rdf_deep_free(origin_rdf);
    zone_loader_free(&loader);
    if (rc != 0) {
        if (zone) {
            zone->storage = arena;
            arena = NULL;
            zone_free(zone);
        }
        if (arena)
            zone_arena_free(arena);
        return rc;
    }
    *out = zone;
    return BALLAST_OK;
}

const struct zone_rrset *zone_node_rrset(const struct zone_node *node, uint16_t type)
{
    for (uint16_t i = 0; i < node->rrset_count; i++) {
        if (node->rrsets[i].type == type)
            return &node->rrsets[i];
        if (node->rrsets[i].type > type)
            break; /* sorted by type */
    }
    return NULL;
}

void zone_free(struct zone *zone)
{
    if (!zone)
        return;
    if (zone->storage)
        zone_arena_free(zone->storage);
    free(zone->name_text);
    free(zone->file);
    free(zone);
}

/* --- zone set ----------------------------------------------------------------------------- */

static size_t zone_set_slot(const struct zone_set *set, const uint8_t *apex, size_t len)
{
    return (size_t)wire_name_hash(apex, len) & set->bucket_mask;
}

const struct zone *zone_set_find_exact(const struct zone_set *set, const uint8_t *apex,
                                       size_t len)
{
    if (!set || set->count == 0)
        return NULL;
    for (size_t i = zone_set_slot(set, apex, len);; i = (i + 1) & set->bucket_mask) {
        const struct zone *zone = set->buckets[i];
        if (!zone)
            return NULL;
        if (zone->apex_len == len && memcmp(zone->apex, apex, len) == 0)
            return zone;
    }
}

const struct zone *zone_set_find(const struct zone_set *set, const uint8_t *name, size_t len)
{
    size_t offset = 0;
    while (offset < len) {
        const struct zone *zone = zone_set_find_exact(set, name + offset, len - offset);
        if (zone)
            return zone;
        if (name[offset] == 0)
            break;
        offset += (size_t)name[offset] + 1;
    }
    return NULL;
}

int zone_set_create(struct zone **zones, size_t count, struct zone_set **out)
{
    struct zone_set *set = calloc(1, sizeof *set);
    size_t slots = 16;
    while (slots < count * 2)
        slots <<= 1;
    if (set) {
        set->zones = calloc(count ? count : 1, sizeof *set->zones);
        set->buckets = calloc(slots, sizeof *set->buckets);
    }
    if (!set || !set->zones || !set->buckets) {
        if (set) {
            free(set->zones);
            free(set->buckets);
        }
        free(set);
        return BALLAST_ENOMEM;
    }
    set->bucket_mask = slots - 1;
    for (size_t i = 0; i < count; i++) {
        struct zone *zone = zones[i];
        if (zone_set_find_exact(set, zone->apex, zone->apex_len)) {
            free(set->zones);
            free(set->buckets);
            free(set);
            return BALLAST_EEXIST;
        }
        size_t slot = zone_set_slot(set, zone->apex, zone->apex_len);
        while (set->buckets[slot])
            slot = (slot + 1) & set->bucket_mask;
        set->buckets[slot] = zone;
        set->zones[set->count++] = zone;
    }
    *out = set;
    return BALLAST_OK;
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
