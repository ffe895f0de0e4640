/* DNS wire format on the hot path: in-place query parsing (header, question, OPT), name helpers,
 * and a packet writer with name compression. ldns is used for text conversion and zone files;
 * per-query work never allocates. */
#ifndef BALLAST_WIRE_H
#define BALLAST_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_HEADER_LEN 12
#define WIRE_NAME_MAX 255
#define WIRE_LABEL_MAX 63

/* Header flag bits (second 16-bit word). */
#define WIRE_FLAG_QR 0x8000u
#define WIRE_FLAG_AA 0x0400u
#define WIRE_FLAG_TC 0x0200u
#define WIRE_FLAG_RD 0x0100u
#define WIRE_FLAG_RA 0x0080u
#define WIRE_FLAG_AD 0x0020u
#define WIRE_FLAG_CD 0x0010u
#define WIRE_OPCODE(flags) (((flags) >> 11) & 0xFu)
#define WIRE_RCODE(flags) ((flags)&0xFu)

enum wire_rcode {
    WIRE_RCODE_NOERROR = 0,
    WIRE_RCODE_FORMERR = 1,
    WIRE_RCODE_SERVFAIL = 2,
    WIRE_RCODE_NXDOMAIN = 3,
    WIRE_RCODE_NOTIMP = 4,
    WIRE_RCODE_REFUSED = 5,
    WIRE_RCODE_BADVERS = 16, /* extended: upper 8 bits go in OPT */
};

enum wire_type {
    WIRE_TYPE_A = 1,
    WIRE_TYPE_NS = 2,
    WIRE_TYPE_CNAME = 5,
    WIRE_TYPE_SOA = 6,
    WIRE_TYPE_PTR = 12,
    WIRE_TYPE_HINFO = 13,
    WIRE_TYPE_MX = 15,
    WIRE_TYPE_TXT = 16,
    WIRE_TYPE_AAAA = 28,
    WIRE_TYPE_SRV = 33,
    WIRE_TYPE_DNAME = 39,
    WIRE_TYPE_OPT = 41,
    WIRE_TYPE_DS = 43,
    WIRE_TYPE_RRSIG = 46,
    WIRE_TYPE_IXFR = 251,
    WIRE_TYPE_AXFR = 252,
    WIRE_TYPE_ANY = 255,
};

#define WIRE_CLASS_IN 1
#define WIRE_EDNS_DO 0x8000u

static inline uint16_t wire_read_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t wire_read_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void wire_write_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void wire_write_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A parsed query. Names are uncompressed wire format including the root label. */
struct wire_query {
    uint16_t id;
    uint16_t flags;
    uint16_t qdcount, ancount, nscount, arcount;
    uint8_t qname[WIRE_NAME_MAX];       /* as received: case preserved */
    uint8_t qname_lower[WIRE_NAME_MAX]; /* lowercased, for lookups */
    uint8_t qname_len;
    uint8_t qname_labels; /* not counting the root */
    uint16_t qtype;
    uint16_t qclass;
    size_t question_end; /* offset just past the question */
    bool has_edns;
    uint16_t edns_udp_size; /* as sent by the client */
    uint8_t edns_version;
    uint8_t edns_ext_rcode;
    uint16_t edns_flags;         /* DO bit etc. */
    const uint8_t *edns_options; /* points into the packet */
    uint16_t edns_options_len;
};

/* Parse a query in place. Returns 0 when the query is well formed; BALLAST_EFORMERR when the
 * header is readable but the rest is malformed (answer FORMERR: q->id, q->flags and, if it was
 * parsed, the question are set); BALLAST_EINVAL when the packet must be dropped (shorter than a
 * header, or QR=1). Checks: QDCOUNT == 1 for opcode QUERY, no compression in the question,
 * label and name lengths, at most one OPT (owner root) in the additional section, every
 * record of every section within the packet (compression pointers must point backwards). */
int wire_parse_query(const uint8_t *pkt, size_t len, struct wire_query *q);

/* A response with only a header (and the question when it was readable: q->question_end > 12),
 * e.g. FORMERR, NOTIMP, REFUSED. Opcode, RD and CD are copied; extra_flags (e.g. RA) are set.
 * Returns the length, or 0 when resp_cap is too small. */
size_t wire_write_error(const uint8_t *query, const struct wire_query *q, uint16_t rcode,
                        uint16_t extra_flags, uint8_t *resp, size_t resp_cap);

/* Read a possibly compressed name at *pos into out (uncompressed), advance *pos past it in the
 * packet. Pointers must point strictly backwards; at most 128 pointer hops. Returns 0, or
 * BALLAST_EFORMERR. out_len gets the wire length; out may be NULL to only skip and check. */
int wire_name_unpack(const uint8_t *pkt, size_t pkt_len, size_t *pos, uint8_t *out,
                     size_t *out_len);

/* Length of an uncompressed wire name at name (bounded by max); 0 if malformed. */
size_t wire_name_length(const uint8_t *name, size_t max);
/* Number of labels, not counting the root. */
unsigned wire_name_labels(const uint8_t *name);
/* Lowercase ASCII letters of a wire name, in place (to) from from; same length. */
void wire_name_lower(uint8_t *to, const uint8_t *from, size_t len);
/* Byte offset of the suffix left after skipping `skip` leftmost labels. */
size_t wire_name_skip_labels(const uint8_t *name, unsigned skip);
/* Is name equal to or below parent (both lowercase, uncompressed)? */
bool wire_name_is_subdomain(const uint8_t *name, size_t len, const uint8_t *parent,
                            size_t parent_len);
/* Case-insensitive equality of two uncompressed names. */
bool wire_name_equal_nocase(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len);

/* Text <-> wire (via ldns). Text may lack the final dot. Returns 0 or BALLAST_EINVAL. */
int wire_name_from_text(const char *text, uint8_t *out, size_t *out_len);
int wire_name_to_text(const uint8_t *name, char *buf, size_t buf_len);

/* A 64-bit hash of a lowercase name, for hash tables. */
uint64_t wire_name_hash(const uint8_t *name, size_t len);

/* Packet writer with name compression (RFC 1035 §4.1.4). */
#define WIRE_COMPRESS_SLOTS 64
struct wire_writer {
    uint8_t *buf;
    size_t len;                                /* bytes written */
    size_t limit;                              /* never write past this */
    uint16_t slot_offset[WIRE_COMPRESS_SLOTS]; /* offsets of names (and their suffixes) written */
    unsigned slot_count;
};

void wire_writer_init(struct wire_writer *w, uint8_t *buf, size_t limit);
/* Remember that a name starts at offset (e.g. 12 for the question), so later names can
 * point to it and to each of its suffixes. */
void wire_writer_remember_name(struct wire_writer *w, size_t offset);
/* Write a name (uncompressed input), compressed against names already in the packet when
 * compress is true. Returns 0 or BALLAST_ESPACE (w->len unchanged on failure). */
int wire_writer_name(struct wire_writer *w, const uint8_t *name, size_t len, bool compress);
/* Raw bytes. Returns 0 or BALLAST_ESPACE (nothing written on failure). */
int wire_writer_bytes(struct wire_writer *w, const void *data, size_t len);
int wire_writer_u16(struct wire_writer *w, uint16_t v);
int wire_writer_u32(struct wire_writer *w, uint32_t v);

/* A position to return to when what follows does not fit (e.g. a whole RR for TC=1). */
struct wire_writer_mark {
    size_t len;
    unsigned slot_count;
};
struct wire_writer_mark wire_writer_mark(const struct wire_writer *w);
/* Forget everything written after mark, including remembered names. */
void wire_writer_rollback(struct wire_writer *w, struct wire_writer_mark mark);

/* Write an RR's RDATA (uncompressed wire form, rdlen bytes) with its 2-byte RDLENGTH, compressing
 * the embedded names of the types RFC 3597 §4 allows (NS, CNAME, SOA, PTR, MX). */
int wire_writer_rdata(struct wire_writer *w, uint16_t type, const uint8_t *rdata, uint16_t rdlen);

#endif
