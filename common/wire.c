/* DNS wire format on the hot path: in-place query parsing, name helpers and the compressing
 * packet writer. Nothing here allocates except the text conversions, which go through ldns. */
#include "wire.h"

#include <ldns/ldns.h>
#include <string.h>

#include "errors.h"

#define WIRE_MAX_POINTER_HOPS 128
#define WIRE_RR_FIXED_LEN 10 /* TYPE, CLASS, TTL, RDLENGTH */

static uint8_t wire_lower_byte(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + ('a' - 'A')) : c;
}

int wire_name_unpack(const uint8_t *pkt, size_t pkt_len, size_t *pos, uint8_t *out, size_t *out_len)
{
    size_t at = *pos;
    size_t written = 0;
    size_t end_after = 0; /* where the name ends in the packet (before the first pointer) */
    bool jumped = false;
    unsigned hops = 0;

    for (;;) {
        if (at >= pkt_len)
            return BALLAST_EFORMERR;
        uint8_t len = pkt[at];
        if ((len & 0xC0) == 0xC0) {
            if (at + 1 >= pkt_len)
                return BALLAST_EFORMERR;
            size_t target = ((size_t)(len & 0x3F) << 8) | pkt[at + 1];
            /* Pointers must point strictly backwards: this also rules out loops. */
            if (target >= at || ++hops > WIRE_MAX_POINTER_HOPS)
                return BALLAST_EFORMERR;
            if (!jumped) {
                end_after = at + 2;
                jumped = true;
            }
            at = target;
            continue;
        }
        if ((len & 0xC0) != 0)
            return BALLAST_EFORMERR; /* extended label types (RFC 6891 §5) are not supported */
        if (written + 1 + len > WIRE_NAME_MAX || at + 1 + len > pkt_len)
            return BALLAST_EFORMERR;
        if (out)
            memcpy(out + written, pkt + at, (size_t)len + 1);
        written += (size_t)len + 1;
        at += (size_t)len + 1;
        if (len == 0)
            break;
    }
    *pos = jumped ? end_after : at;
    if (out_len)
        *out_len = written;
    return BALLAST_OK;
}

/* Skip one resource record (compressed owner, fixed part, RDATA) starting at *pos. */
static int wire_skip_rr(const uint8_t *pkt, size_t len, size_t *pos, uint16_t *type_out,
                        size_t *fixed_at)
{
    if (wire_name_unpack(pkt, len, pos, NULL, NULL) != 0)
        return BALLAST_EFORMERR;
    if (*pos + WIRE_RR_FIXED_LEN > len)
        return BALLAST_EFORMERR;
    *fixed_at = *pos;
    *type_out = wire_read_u16(pkt + *pos);
    uint16_t rdlen = wire_read_u16(pkt + *pos + 8);
    *pos += WIRE_RR_FIXED_LEN;
    if (*pos + rdlen > len)
        return BALLAST_EFORMERR;
    *pos += rdlen;
    return BALLAST_OK;
}

/* Read the OPT record (RFC 6891 §6.1.2) whose fixed part starts at `at`. */
static int wire_parse_opt(const uint8_t *pkt, size_t owner_at, size_t at, struct wire_query *q)
{
    if (pkt[owner_at] != 0) /* owner must be the root */
        return BALLAST_EFORMERR;
    if (q->has_edns) /* RFC 6891 §6.1.1: more than one OPT is FORMERR */
        return BALLAST_EFORMERR;
    q->has_edns = true;
    q->edns_udp_size = wire_read_u16(pkt + at + 2);
    q->edns_ext_rcode = pkt[at + 4];
    q->edns_version = pkt[at + 5];
    q->edns_flags = wire_read_u16(pkt + at + 6);
    q->edns_options_len = wire_read_u16(pkt + at + 8);
    q->edns_options = pkt + at + WIRE_RR_FIXED_LEN;
    return BALLAST_OK;
}

static int wire_parse_question(const uint8_t *pkt, size_t len, struct wire_query *q)
{
    size_t pos = WIRE_HEADER_LEN;
    size_t name_len = 0;
    /* Compression is not expected in the question; a pointer would have nowhere to point. */
    for (;;) {
        if (pos >= len)
            return BALLAST_EFORMERR;
        uint8_t label = pkt[pos];
        if (label & 0xC0)
            return BALLAST_EFORMERR;
        if (name_len + 1 + label > WIRE_NAME_MAX || pos + 1 + label > len)
            return BALLAST_EFORMERR;
        memcpy(q->qname + name_len, pkt + pos, (size_t)label + 1);
        name_len += (size_t)label + 1;
        pos += (size_t)label + 1;
        if (label == 0)
            break;
        q->qname_labels++;
    }
    if (pos + 4 > len)
        return BALLAST_EFORMERR;
    q->qname_len = (uint8_t)name_len;
    wire_name_lower(q->qname_lower, q->qname, name_len);
    q->qtype = wire_read_u16(pkt + pos);
    q->qclass = wire_read_u16(pkt + pos + 2);
    q->question_end = pos + 4;
    return BALLAST_OK;
}

int wire_parse_query(const uint8_t *pkt, size_t len, struct wire_query *q)
{
    q->id = 0;
    q->flags = 0;
    q->qname_len = 0;
    q->qname_labels = 0;
    q->qtype = 0;
    q->qclass = 0;
    q->question_end = 0;
    q->has_edns = false;
    q->edns_udp_size = 0;
    q->edns_version = 0;
    q->edns_ext_rcode = 0;
    q->edns_flags = 0;
    q->edns_options = NULL;
    q->edns_options_len = 0;

    if (len < WIRE_HEADER_LEN)
        return BALLAST_EINVAL;
    q->id = wire_read_u16(pkt);
    q->flags = wire_read_u16(pkt + 2);
    q->qdcount = wire_read_u16(pkt + 4);
    q->ancount = wire_read_u16(pkt + 6);
    q->nscount = wire_read_u16(pkt + 8);
    q->arcount = wire_read_u16(pkt + 10);
    if (q->flags & WIRE_FLAG_QR)
        return BALLAST_EINVAL; /* never answer a response: avoids reflection loops */
    if (q->qdcount != 1)
        return BALLAST_EFORMERR;
    if (wire_parse_question(pkt, len, q) != 0)
        return BALLAST_EFORMERR;

    size_t pos = q->question_end;
    unsigned records = (unsigned)q->ancount + q->nscount + q->arcount;
    for (unsigned i = 0; i < records; i++) {
        size_t owner_at = pos;
        size_t fixed_at = 0;
        uint16_t type = 0;
        if (wire_skip_rr(pkt, len, &pos, &type, &fixed_at) != 0)
            return BALLAST_EFORMERR;
        if (type == WIRE_TYPE_OPT) {
            bool in_additional = i >= (unsigned)q->ancount + q->nscount;
            if (!in_additional || wire_parse_opt(pkt, owner_at, fixed_at, q) != 0)
                return BALLAST_EFORMERR;
        }
    }
    if (pos != len)
        return BALLAST_EFORMERR; /* trailing garbage */
    return BALLAST_OK;
}

size_t wire_write_error(const uint8_t *query, const struct wire_query *q, uint16_t rcode,
                        uint16_t extra_flags, uint8_t *resp, size_t resp_cap)
{
    size_t question_len = q->question_end > WIRE_HEADER_LEN ? q->question_end - WIRE_HEADER_LEN : 0;
    if (WIRE_HEADER_LEN + question_len > resp_cap)
        return 0;
    uint16_t flags = WIRE_FLAG_QR | (q->flags & (0x7800u | WIRE_FLAG_RD | WIRE_FLAG_CD)) |
                     extra_flags | (rcode & 0xF);
    wire_write_u16(resp, q->id);
    wire_write_u16(resp + 2, flags);
    wire_write_u16(resp + 4, question_len ? 1 : 0);
    memset(resp + 6, 0, 6);
    memcpy(resp + WIRE_HEADER_LEN, query + WIRE_HEADER_LEN, question_len);
    return WIRE_HEADER_LEN + question_len;
}

size_t wire_name_length(const uint8_t *name, size_t max)
{
    size_t at = 0;
    while (at < max) {
        uint8_t label = name[at];
        if (label & 0xC0)
            return 0;
        at += (size_t)label + 1;
        if (label == 0)
            return at <= max && at <= WIRE_NAME_MAX ? at : 0;
    }
    return 0;
}

unsigned wire_name_labels(const uint8_t *name)
{
    unsigned labels = 0;
    while (*name) {
        labels++;
        name += *name + 1;
    }
    return labels;
}

void wire_name_lower(uint8_t *to, const uint8_t *from, size_t len)
{
    size_t at = 0;
    while (at < len) {
        uint8_t label = from[at];
        to[at] = label;
        for (size_t i = 1; i <= label && at + i < len; i++)
            to[at + i] = wire_lower_byte(from[at + i]);
        at += (size_t)label + 1;
        if (label == 0)
            break;
    }
}

size_t wire_name_skip_labels(const uint8_t *name, unsigned skip)
{
    size_t at = 0;
    for (unsigned i = 0; i < skip && name[at] != 0; i++)
        at += (size_t)name[at] + 1;
    return at;
}

bool wire_name_is_subdomain(const uint8_t *name, size_t len, const uint8_t *parent,
                            size_t parent_len)
{
    if (parent_len > len)
        return false;
    /* Walk label boundaries of name until the remaining suffix has parent's length. */
    size_t at = 0;
    while (len - at > parent_len) {
        if (name[at] == 0)
            return false;
        at += (size_t)name[at] + 1;
    }
    return len - at == parent_len && memcmp(name + at, parent, parent_len) == 0;
}

bool wire_name_equal_nocase(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    if (a_len != b_len)
        return false;
    for (size_t i = 0; i < a_len; i++)
        if (wire_lower_byte(a[i]) != wire_lower_byte(b[i]))
            return false;
    return true;
}

int wire_name_from_text(const char *text, uint8_t *out, size_t *out_len)
{
    ldns_rdf *rdf = NULL;
    if (ldns_str2rdf_dname(&rdf, text) != LDNS_STATUS_OK || rdf == NULL)
        return BALLAST_EINVAL;
    size_t size = ldns_rdf_size(rdf);
    if (size > WIRE_NAME_MAX) {
        ldns_rdf_deep_free(rdf);
        return BALLAST_EINVAL;
    }
    memcpy(out, ldns_rdf_data(rdf), size);
    *out_len = size;
    ldns_rdf_deep_free(rdf);
    return BALLAST_OK;
}

int wire_name_to_text(const uint8_t *name, char *buf, size_t buf_len)
{
    size_t len = wire_name_length(name, WIRE_NAME_MAX);
    if (len == 0 || buf_len == 0)
        return BALLAST_EINVAL;
    ldns_rdf *rdf = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_DNAME, len, name);
    if (!rdf)
        return BALLAST_ENOMEM;
    char *text = ldns_rdf2str(rdf);
    ldns_rdf_deep_free(rdf);
    if (!text)
        return BALLAST_ENOMEM;
    size_t text_len = strlen(text);
    int rc = BALLAST_OK;
    if (text_len >= buf_len) {
        rc = BALLAST_ESPACE;
        text_len = buf_len - 1;
    }
    memcpy(buf, text, text_len);
    buf[text_len] = '\0';
    free(text);
    return rc;
}

uint64_t wire_name_hash(const uint8_t *name, size_t len)
{
    /* FNV-1a: fast and good enough for zone tables built from trusted files. */
    uint64_t hash = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        hash ^= name[i];
        hash *= 1099511628211ull;
    }
    return hash;
}

/* --- writer -------------------------------------------------------------------------------- */

void wire_writer_init(struct wire_writer *w, uint8_t *buf, size_t limit)
{
    w->buf = buf;
    w->len = 0;
    w->limit = limit;
    w->slot_count = 0;
}

void wire_writer_remember_name(struct wire_writer *w, size_t offset)
{
    if (w->slot_count < WIRE_COMPRESS_SLOTS && offset < 0x4000)
        w->slot_offset[w->slot_count++] = (uint16_t)offset;
}

/* Compare the uncompressed name suffix `suffix` with the (possibly compressed) name at `at` in
 * the packet being written. */
static bool wire_writer_name_matches(const struct wire_writer *w, size_t at, const uint8_t *suffix)
{
    for (;;) {
        uint8_t label = w->buf[at];
        if ((label & 0xC0) == 0xC0) {
            at = ((size_t)(label & 0x3F) << 8) | w->buf[at + 1];
            continue;
        }
        if (label != *suffix)
            return false;
        if (label == 0)
            return true;
        for (unsigned i = 1; i <= label; i++)
            if (wire_lower_byte(w->buf[at + i]) != wire_lower_byte(suffix[i]))
                return false;
        at += (size_t)label + 1;
        suffix += label + 1;
    }
}

/* Offset of a name already in the packet equal to suffix, or 0 when none. Each remembered name
 * offers itself and all of its suffixes. */
static size_t wire_writer_find(const struct wire_writer *w, const uint8_t *suffix,
                               unsigned suffix_labels)
{
    for (unsigned s = 0; s < w->slot_count; s++) {
        size_t at = w->slot_offset[s];
        /* Count labels of the stored name, then step to the candidate with as many labels. */
        unsigned labels = 0;
        size_t walk = at;
        for (;;) {
            uint8_t label = w->buf[walk];
            if ((label & 0xC0) == 0xC0) {
                walk = ((size_t)(label & 0x3F) << 8) | w->buf[walk + 1];
                continue;
            }
            if (label == 0)
                break;
            labels++;
            walk += (size_t)label + 1;
        }
        if (labels < suffix_labels)
            continue;
        for (unsigned skip = labels - suffix_labels; skip > 0; skip--) {
            while ((w->buf[at] & 0xC0) == 0xC0)
                at = ((size_t)(w->buf[at] & 0x3F) << 8) | w->buf[at + 1];
            at += (size_t)w->buf[at] + 1;
        }
        while ((w->buf[at] & 0xC0) == 0xC0)
            at = ((size_t)(w->buf[at] & 0x3F) << 8) | w->buf[at + 1];
        if (at < 0x4000 && wire_writer_name_matches(w, at, suffix))
            return at;
    }
    return 0;
}

int wire_writer_name(struct wire_writer *w, const uint8_t *name, size_t len, bool compress)
{
    size_t start = w->len;
    if (!compress) {
        if (w->len + len > w->limit)
            return BALLAST_ESPACE;
        memcpy(w->buf + w->len, name, len);
        w->len += len;
        return BALLAST_OK;
    }
    unsigned labels = wire_name_labels(name);
    const uint8_t *suffix = name;
    while (labels > 0) {
        size_t target = wire_writer_find(w, suffix, labels);
        if (target != 0) {
            if (w->len + 2 > w->limit) {
                w->len = start;
                return BALLAST_ESPACE;
            }
            wire_write_u16(w->buf + w->len, (uint16_t)(0xC000 | target));
            w->len += 2;
            goto done;
        }
        size_t label_len = (size_t)suffix[0] + 1;
        if (w->len + label_len > w->limit) {
            w->len = start;
            return BALLAST_ESPACE;
        }
        memcpy(w->buf + w->len, suffix, label_len);
        w->len += label_len;
        suffix += label_len;
        labels--;
    }
    if (w->len + 1 > w->limit) {
        w->len = start;
        return BALLAST_ESPACE;
    }
    w->buf[w->len++] = 0;
done:
    wire_writer_remember_name(w, start);
    return BALLAST_OK;
}

int wire_writer_bytes(struct wire_writer *w, const void *data, size_t len)
{
    if (w->len + len > w->limit)
        return BALLAST_ESPACE;
    memcpy(w->buf + w->len, data, len);
    w->len += len;
    return BALLAST_OK;
}

int wire_writer_u16(struct wire_writer *w, uint16_t v)
{
    if (w->len + 2 > w->limit)
        return BALLAST_ESPACE;
    wire_write_u16(w->buf + w->len, v);
    w->len += 2;
    return BALLAST_OK;
}

int wire_writer_u32(struct wire_writer *w, uint32_t v)
{
    if (w->len + 4 > w->limit)
        return BALLAST_ESPACE;
    wire_write_u32(w->buf + w->len, v);
    w->len += 4;
    return BALLAST_OK;
}

/* Write the compressible names of an RDATA of the RFC 3597 §4 well-known types: the embedded
 * names are at known positions (leading_bytes before the first name, name_count names, then the
 * rest copied verbatim). */
static int wire_writer_rdata_names(struct wire_writer *w, const uint8_t *rdata, uint16_t rdlen,
                                   size_t leading_bytes, unsigned name_count)
{
    if (wire_writer_bytes(w, rdata, leading_bytes) != 0)
        return BALLAST_ESPACE;
    size_t at = leading_bytes;
    for (unsigned i = 0; i < name_count; i++) {
        size_t name_len = wire_name_length(rdata + at, rdlen - at);
        if (name_len == 0)
            return BALLAST_EINVAL;
        if (wire_writer_name(w, rdata + at, name_len, true) != 0)
            return BALLAST_ESPACE;
        at += name_len;
    }
    return wire_writer_bytes(w, rdata + at, rdlen - at);
}

struct wire_writer_mark wire_writer_mark(const struct wire_writer *w)
{
    struct wire_writer_mark mark = {w->len, w->slot_count};
    return mark;
}

void wire_writer_rollback(struct wire_writer *w, struct wire_writer_mark mark)
{
    w->len = mark.len;
    w->slot_count = mark.slot_count;
}

int wire_writer_rdata(struct wire_writer *w, uint16_t type, const uint8_t *rdata, uint16_t rdlen)
{
    struct wire_writer_mark start_mark = wire_writer_mark(w);
    size_t start = w->len;
    if (wire_writer_u16(w, rdlen) != 0)
        return BALLAST_ESPACE;
    size_t rdata_start = w->len;
    int rc;
    switch (type) {
    case WIRE_TYPE_NS:
    case WIRE_TYPE_CNAME:
    case WIRE_TYPE_PTR:
        rc = wire_writer_rdata_names(w, rdata, rdlen, 0, 1);
        break;
    case WIRE_TYPE_SOA:
        rc = wire_writer_rdata_names(w, rdata, rdlen, 0, 2);
        break;
    case WIRE_TYPE_MX:
        rc = rdlen >= 3 ? wire_writer_rdata_names(w, rdata, rdlen, 2, 1) : BALLAST_EINVAL;
        break;
    default:
        rc = wire_writer_bytes(w, rdata, rdlen);
        break;
    }
    if (rc != 0) {
        wire_writer_rollback(w, start_mark);
        return rc;
    }
    wire_write_u16(w->buf + start, (uint16_t)(w->len - rdata_start));
    return BALLAST_OK;
}
