/* Answer building for ballast-authd: finds the zone and node for a query and writes the response
 * straight from the zone's pre-rendered RRsets into the caller's buffer (RFC 1034 §4.3.2). */
#include "answer.h"

#include <string.h>

#include "cookie.h"
#include "errors.h"
#include "healthd.h"
#include "wire.h"

#define ANSWER_QUESTION_OFFSET WIRE_HEADER_LEN
#define ANSWER_OPT_LEN 11         /* root owner, TYPE, CLASS, TTL, RDLENGTH=0 */
#define ANSWER_MAX_TARGETS 32     /* names considered for additional-section processing */
#define ANSWER_MAX_CHAIN_NAMES 64 /* hard ceiling for CNAME loop detection */
#define ANSWER_POOL_SCRATCH 65536 /* a pool's records picked for one RRset */

enum answer_section { SECTION_ANSWER = 0, SECTION_AUTHORITY = 1, SECTION_ADDITIONAL = 2 };

/* A name whose addresses may go in the additional section. */
struct answer_target {
    const uint8_t *name; /* lowercase wire form, points into zone data */
    size_t len;
    bool referral_glue; /* from a referral's NS set: glue below the cut is allowed */
};

struct answer_builder {
    struct wire_writer writer;
    const struct wire_query *query;
    const struct limits *limits;
    const struct zone *zone;
    const struct healthd *health; /* NULL: static zone data only */
    uint16_t counts[3];
    uint16_t rcode;
    bool authoritative;
    bool truncated;
    bool referral;
    const uint8_t *referral_cut; /* owner of the delegation returned, for RFC 9471 glue */
    size_t referral_cut_len;
    struct answer_target targets[ANSWER_MAX_TARGETS];
    unsigned target_count;
    uint8_t cookie[COOKIE_OPTION_MAX]; /* our COOKIE option, in the OPT RDATA */
    size_t cookie_len;
};

enum lookup_kind { LOOKUP_FOUND, LOOKUP_NXDOMAIN, LOOKUP_DELEGATION };

struct lookup_result {
    enum lookup_kind kind;
    const struct zone_node *node; /* FOUND: the node answering (wildcard source when synthesised);
                                     DELEGATION: the zone cut */
    bool wildcard;
};

/* --- finding names ------------------------------------------------------------------------ */

/* The topmost zone cut above (or at) the node whose name is name[offset..]. Names strictly
 * below a cut are occluded (RFC 1034 §4.2.1), so the cut that matters is the highest one. */
static const struct zone_node *answer_find_cut(const struct zone *zone, const uint8_t *name,
                                               size_t len, size_t offset)
{
    const struct zone_node *cut = NULL;
    while (offset < len && len - offset > zone->apex_len) {
        const struct zone_node *node = zone_find_node(zone, name + offset, len - offset);
        if (node && (node->flags & ZONE_NODE_DELEGATION))
            cut = node;
        offset += (size_t)name[offset] + 1;
    }
    return cut;
}

/* RFC 1034 §4.3.2 step 3 with RFC 4592 wildcards: exact match, zone cut, wildcard or NXDOMAIN. */
static void answer_lookup(const struct zone *zone, const uint8_t *name, size_t len, uint16_t qtype,
                          struct lookup_result *out)
{
    out->wildcard = false;
    const struct zone_node *node = zone_find_node(zone, name, len);
    if (node) {
        if (node->flags & ZONE_NODE_OCCLUDED) {
            out->kind = LOOKUP_DELEGATION;
            out->node = answer_find_cut(zone, name, len, 0);
            return;
        }
        /* RFC 4035 §3.1.4.1: DS lives on the parent side of the cut. */
        if ((node->flags & ZONE_NODE_DELEGATION) && qtype != WIRE_TYPE_DS) {
            out->kind = LOOKUP_DELEGATION;
            out->node = node;
            return;
        }
        out->kind = LOOKUP_FOUND;
        out->node = node;
        return;
    }

    /* The closest encloser: the longest existing ancestor (empty non-terminals exist). */
    size_t offset = (size_t)name[0] + 1;
    const struct zone_node *encloser = NULL;
    while (offset < len) {
        encloser = zone_find_node(zone, name + offset, len - offset);
        if (encloser)
            break;
        offset += (size_t)name[offset] + 1;
    }
    if (!encloser)
        encloser = zone->apex_node;

    if (encloser->flags & (ZONE_NODE_DELEGATION | ZONE_NODE_OCCLUDED)) {
        out->kind = LOOKUP_DELEGATION;
        out->node = answer_find_cut(zone, name, len, offset);
        return;
    }
    if (encloser->flags & ZONE_NODE_WILDCARD_CHILD) {
        /* RFC 4592 §3.3.1: the source of synthesis is "*." + closest encloser. */
        uint8_t wildcard[WIRE_NAME_MAX];
        size_t wildcard_len = (size_t)encloser->name_len + 2;
        if (wildcard_len <= WIRE_NAME_MAX) {
            wildcard[0] = 1;
            wildcard[1] = '*';
            memcpy(wildcard + 2, encloser->name, encloser->name_len);
            const struct zone_node *source = zone_find_node(zone, wildcard, wildcard_len);
            if (source) {
                out->kind = LOOKUP_FOUND;
                out->node = source;
                out->wildcard = true;
                return;
            }
        }
    }
    out->kind = LOOKUP_NXDOMAIN;
    out->node = NULL;
}

/* The RRset of type at node: the zone's, or, when a health-checked pool owns this name and
 * type, the records the pool answers with now (picked per query: weights, maximum, rotation).
 * A picked RRset lives in a per-thread scratch buffer until the next call. */
static const struct zone_rrset *answer_rrset(const struct answer_builder *b,
                                             const struct zone_node *node, uint16_t type)
{
    static _Thread_local uint8_t scratch[ANSWER_POOL_SCRATCH];
    static _Thread_local struct zone_rrset picked;
    static _Thread_local uint32_t rotation;
    const struct zone_rrset *rrset = zone_node_rrset(node, type);
    if (!rrset || !b->health ||
        (type != WIRE_TYPE_A && type != WIRE_TYPE_AAAA && type != WIRE_TYPE_CNAME))
        return rrset;
    const struct pool_answer *pool = healthd_find(b->health, node->name, node->name_len, type);
    if (!pool || pool_answer_pick(pool, rotation++, scratch, sizeof scratch, &picked) != 0)
        return rrset;
    return &picked;
}

/* --- writing records ---------------------------------------------------------------------- */

/* Owner name: NULL means "the query name", written as a pointer to the question so the
 * client's spelling (case) is preserved (RFC 4343 §4.1). */
static int answer_put_owner(struct answer_builder *b, const uint8_t *owner, size_t owner_len)
{
    if (!owner)
        return wire_writer_u16(&b->writer, 0xC000 | ANSWER_QUESTION_OFFSET);
    return wire_writer_name(&b->writer, owner, owner_len, true);
}

/* Write one record of an RRset; on lack of space nothing is written. */
static int answer_put_record(struct answer_builder *b, const uint8_t *owner, size_t owner_len,
                             uint16_t type, uint32_t ttl, const uint8_t *rdata, uint16_t rdlen)
{
    struct wire_writer_mark mark = wire_writer_mark(&b->writer);
    if (answer_put_owner(b, owner, owner_len) != 0 || wire_writer_u16(&b->writer, type) != 0 ||
        wire_writer_u16(&b->writer, WIRE_CLASS_IN) != 0 || wire_writer_u32(&b->writer, ttl) != 0 ||
        wire_writer_rdata(&b->writer, type, rdata, rdlen) != 0) {
        wire_writer_rollback(&b->writer, mark);
        return BALLAST_ESPACE;
    }
    return BALLAST_OK;
}

/* Write every record of rrset that fits; returns BALLAST_ESPACE if any did not. */
static int answer_put_rrset(struct answer_builder *b, enum answer_section section,
                            const uint8_t *owner, size_t owner_len, const struct zone_rrset *rrset,
                            uint32_t ttl)
{
    const uint8_t *at = rrset->data;
    for (uint16_t i = 0; i < rrset->count; i++) {
        uint16_t rdlen = wire_read_u16(at);
        if (answer_put_record(b, owner, owner_len, rrset->type, ttl, at + 2, rdlen) != 0)
            return BALLAST_ESPACE;
        b->counts[section]++;
        at += 2 + (size_t)rdlen;
    }
    return BALLAST_OK;
}

/* In the answer and authority sections, running out of space means TC=1 (RFC 2181 §9). */
static int answer_put_or_truncate(struct answer_builder *b, enum answer_section section,
                                  const uint8_t *owner, size_t owner_len,
                                  const struct zone_rrset *rrset, uint32_t ttl)
{
    if (answer_put_rrset(b, section, owner, owner_len, rrset, ttl) != 0) {
        b->truncated = true;
        return BALLAST_ESPACE;
    }
    return BALLAST_OK;
}

/* RFC 2308 §3: the SOA goes in authority with TTL = min(SOA TTL, SOA MINIMUM). */
static void answer_put_negative(struct answer_builder *b)
{
    answer_put_or_truncate(b, SECTION_AUTHORITY, b->zone->apex, b->zone->apex_len, b->zone->soa,
                           b->zone->negative_ttl);
}

/* --- additional section processing -------------------------------------------------------- */

static void answer_add_target(struct answer_builder *b, const uint8_t *name, size_t len,
                              bool referral_glue)
{
    if (b->target_count >= ANSWER_MAX_TARGETS || len == 0)
        return;
    for (unsigned i = 0; i < b->target_count; i++)
        if (b->targets[i].len == len && memcmp(b->targets[i].name, name, len) == 0)
            return;
    b->targets[b->target_count++] = (struct answer_target){name, len, referral_glue};
}

/* Remember the names in an RRset's RDATA that want addresses (RFC 1035 §3.3.9, 3.3.11;
 * RFC 2782 for SRV). */
static void answer_collect_targets(struct answer_builder *b, const struct zone_rrset *rrset,
                                   bool referral_glue)
{
    size_t name_offset;
    switch (rrset->type) {
    case WIRE_TYPE_NS:
        name_offset = 0;
        break;
    case WIRE_TYPE_MX:
        name_offset = 2;
        break;
    case WIRE_TYPE_SRV:
        name_offset = 6;
        break;
    default:
        return;
    }
    const uint8_t *at = rrset->data;
    for (uint16_t i = 0; i < rrset->count; i++) {
        uint16_t rdlen = wire_read_u16(at);
        if (rdlen > name_offset) {
            const uint8_t *name = at + 2 + name_offset;
            answer_add_target(b, name, wire_name_length(name, rdlen - name_offset), referral_glue);
        }
        at += 2 + (size_t)rdlen;
    }
}

static void answer_put_additional(struct answer_builder *b)
{
    static const uint16_t address_types[] = {WIRE_TYPE_A, WIRE_TYPE_AAAA};
    for (unsigned i = 0; i < b->target_count && !b->truncated; i++) {
        const struct answer_target *target = &b->targets[i];
        if (!wire_name_is_subdomain(target->name, target->len, b->zone->apex, b->zone->apex_len))
            continue;
        const struct zone_node *node = zone_find_node(b->zone, target->name, target->len);
        if (!node)
            continue;
        bool is_glue = (node->flags & (ZONE_NODE_OCCLUDED | ZONE_NODE_DELEGATION)) != 0;
        if (is_glue && !target->referral_glue)
            continue;
        /* RFC 9471 §3: glue for names below the cut must fit, or the response is truncated. */
        bool required =
            target->referral_glue && b->referral_cut &&
            wire_name_is_subdomain(target->name, target->len, b->referral_cut, b->referral_cut_len);
        for (size_t t = 0; t < sizeof address_types / sizeof address_types[0]; t++) {
            const struct zone_rrset *rrset = answer_rrset(b, node, address_types[t]);
            if (!rrset)
                continue;
            if (answer_put_rrset(b, SECTION_ADDITIONAL, node->name, node->name_len, rrset,
                                 rrset->ttl) != 0) {
                if (required)
                    b->truncated = true;
                return;
            }
        }
    }
}

/* --- the answer algorithm ----------------------------------------------------------------- */

static void answer_referral(struct answer_builder *b, const struct zone_node *cut, bool first)
{
    const struct zone_rrset *ns = zone_node_rrset(cut, WIRE_TYPE_NS);
    if (!ns)
        return;
    if (first)
        b->authoritative = false; /* RFC 1034 §4.3.2 step 3b: a referral is not authoritative */
    b->referral = true;
    b->referral_cut = cut->name;
    b->referral_cut_len = cut->name_len;
    if (answer_put_or_truncate(b, SECTION_AUTHORITY, cut->name, cut->name_len, ns, ns->ttl) == 0)
        answer_collect_targets(b, ns, true);
}

/* RFC 8482 §4.2: answer ANY with one RRset of the node (the lowest type present). */
static const struct zone_rrset *answer_any_rrset(const struct zone_node *node)
{
    return node->rrset_count > 0 ? &node->rrsets[0] : NULL;
}

static bool answer_chain_seen(const uint8_t *const *seen, unsigned count, const uint8_t *name,
                              size_t len)
{
    for (unsigned i = 0; i < count; i++)
        if (wire_name_length(seen[i], WIRE_NAME_MAX) == len && memcmp(seen[i], name, len) == 0)
            return true;
    return false;
}

/* Walk from the query name through in-zone CNAMEs, writing the answer and authority sections. */
static void answer_resolve(struct answer_builder *b)
{
    const struct wire_query *q = b->query;
    const uint8_t *name = q->qname_lower;
    size_t name_len = q->qname_len;
    const uint8_t *owner = NULL; /* NULL: the query name as the client spelled it */
    const uint8_t *seen[ANSWER_MAX_CHAIN_NAMES];
    uint8_t chain[ANSWER_MAX_CHAIN_NAMES][WIRE_NAME_MAX]; /* targets copied out of scratch */
    unsigned seen_count = 0;
    unsigned chain_limit = b->limits->cname_chain;
    if (chain_limit > ANSWER_MAX_CHAIN_NAMES - 1)
        chain_limit = ANSWER_MAX_CHAIN_NAMES - 1;

    for (unsigned hops = 0;; hops++) {
        struct lookup_result found;
        answer_lookup(b->zone, name, name_len, q->qtype, &found);
        if (found.kind == LOOKUP_DELEGATION) {
            if (found.node)
                answer_referral(b, found.node, hops == 0);
            return;
        }
        if (found.kind == LOOKUP_NXDOMAIN) {
            b->rcode = WIRE_RCODE_NXDOMAIN; /* RFC 6604 §2.1: rcode of the last name */
            answer_put_negative(b);
            return;
        }
        const struct zone_node *node = found.node;
        const struct zone_rrset *rrset =
            q->qtype == WIRE_TYPE_ANY ? answer_any_rrset(node) : answer_rrset(b, node, q->qtype);
        if (rrset) {
            /* An NS answer may carry glue below a cut too, like a referral (the root zone's
             * a.root-servers.net addresses, for instance). */
            if (answer_put_or_truncate(b, SECTION_ANSWER, owner, name_len, rrset, rrset->ttl) == 0)
                answer_collect_targets(b, rrset, rrset->type == WIRE_TYPE_NS);
            return;
        }
        const struct zone_rrset *cname = answer_rrset(b, node, WIRE_TYPE_CNAME);
        if (!cname) {
            answer_put_negative(b); /* NODATA (RFC 2308 §2.2), including empty non-terminals */
            return;
        }
        if (answer_put_or_truncate(b, SECTION_ANSWER, owner, name_len, cname, cname->ttl) != 0)
            return;
        /* RFC 1034 §4.3.2 step 3a: restart with the canonical name if it is in this zone. */
        size_t target_len = wire_name_length(cname->data + 2, wire_read_u16(cname->data));
        const uint8_t *target = chain[hops];
        if (target_len > 0)
            memcpy(chain[hops], cname->data + 2, target_len);
        seen[seen_count++] = name;
        if (target_len == 0 || hops + 1 >= chain_limit ||
            !wire_name_is_subdomain(target, target_len, b->zone->apex, b->zone->apex_len) ||
            answer_chain_seen(seen, seen_count, target, target_len))
            return;
        name = target;
        name_len = target_len;
        owner = target;
    }
}

/* --- the response envelope ---------------------------------------------------------------- */

static size_t answer_udp_limit(const struct wire_query *q, const struct limits *limits)
{
    if (!q->has_edns)
        return LIMIT_UDP_MIN_PAYLOAD;
    size_t size =
        q->edns_udp_size < limits->edns_udp_size ? q->edns_udp_size : limits->edns_udp_size;
    return size < LIMIT_UDP_MIN_PAYLOAD ? LIMIT_UDP_MIN_PAYLOAD : size;
}

/* RFC 6891 §6.1.2-6.1.3: our OPT, with the upper 8 bits of the extended RCODE and DO copied. */
static void answer_put_opt(struct answer_builder *b)
{
    uint8_t *p;
    b->writer.limit += ANSWER_OPT_LEN + b->cookie_len; /* this space was reserved at the start */
    if (b->writer.len + ANSWER_OPT_LEN + b->cookie_len > b->writer.limit)
        return;
    p = b->writer.buf + b->writer.len;
    p[0] = 0;
    wire_write_u16(p + 1, WIRE_TYPE_OPT);
    wire_write_u16(p + 3, b->limits->edns_udp_size);
    p[5] = (uint8_t)(b->rcode >> 4);
    p[6] = 0; /* version */
    wire_write_u16(p + 7, b->query->edns_flags & WIRE_EDNS_DO);
    wire_write_u16(p + 9, (uint16_t)b->cookie_len);
    memcpy(p + ANSWER_OPT_LEN, b->cookie, b->cookie_len);
    b->writer.len += ANSWER_OPT_LEN + b->cookie_len;
    b->counts[SECTION_ADDITIONAL]++;
}

static void answer_finish_header(struct answer_builder *b)
{
    const struct wire_query *q = b->query;
    uint16_t flags = WIRE_FLAG_QR | (q->flags & (0x7800u | WIRE_FLAG_RD | WIRE_FLAG_CD));
    if (b->authoritative)
        flags |= WIRE_FLAG_AA;
    if (b->truncated)
        flags |= WIRE_FLAG_TC;
    flags |= b->rcode & 0xF;
    uint8_t *h = b->writer.buf;
    wire_write_u16(h, q->id);
    wire_write_u16(h + 2, flags);
    wire_write_u16(h + 4, 1);
    wire_write_u16(h + 6, b->counts[SECTION_ANSWER]);
    wire_write_u16(h + 8, b->counts[SECTION_AUTHORITY]);
    wire_write_u16(h + 10, b->counts[SECTION_ADDITIONAL]);
}

/* Which zone answers: the most specific, except that DS at a zone apex is the parent's data
 * when we serve the parent too (RFC 4035 §3.1.4.1). */
static const struct zone *answer_find_zone(const struct zone_set *zones, const struct wire_query *q)
{
    const struct zone *zone = zone_set_find(zones, q->qname_lower, q->qname_len);
    if (zone && q->qtype == WIRE_TYPE_DS && zone->apex_labels > 0 &&
        zone->apex_len == q->qname_len) {
        size_t parent_offset = (size_t)q->qname_lower[0] + 1;
        const struct zone *parent =
            zone_set_find(zones, q->qname_lower + parent_offset, q->qname_len - parent_offset);
        if (parent)
            return parent;
    }
    return zone;
}

static bool answer_refused_type(uint16_t qtype)
{
    /* Zone transfers are not offered; other meta types (RFC 6895 §3.1) have no data. */
    return qtype == WIRE_TYPE_AXFR || qtype == WIRE_TYPE_IXFR || qtype == WIRE_TYPE_OPT ||
           (qtype >= 128 && qtype <= 254);
}

size_t answer_query(const struct zone_set *zones, const struct limits *limits, const uint8_t *query,
                    size_t query_len, uint8_t *resp, size_t resp_cap, bool over_tcp,
                    struct answer_info *info)
{
    return answer_query_health(zones, NULL, limits, query, query_len, resp, resp_cap, over_tcp,
                               info);
}

size_t answer_query_health(const struct zone_set *zones, const struct healthd *health,
                           const struct limits *limits, const uint8_t *query, size_t query_len,
                           uint8_t *resp, size_t resp_cap, bool over_tcp, struct answer_info *info)
{
    return answer_query_client(zones, health, NULL, limits, query, query_len, resp, resp_cap,
                               over_tcp, info);
}

size_t answer_query_client(const struct zone_set *zones, const struct healthd *health,
                           const struct answer_client *client, const struct limits *limits,
                           const uint8_t *query, size_t query_len, uint8_t *resp, size_t resp_cap,
                           bool over_tcp, struct answer_info *info)
{
    struct wire_query q;
    struct cookie cookie = {.present = false};
    memset(info, 0, sizeof *info);
    int rc = wire_parse_query(query, query_len, &q);
    if (rc == 0 && q.has_edns && client) /* RFC 7873 §5.2.2: malformed COOKIE → FORMERR */
        rc = cookie_parse_option(q.edns_options, q.edns_options_len, &cookie);
    if (rc == BALLAST_EINVAL) {
        info->outcome = ANSWER_DROPPED;
        return 0;
    }
    info->outcome = ANSWER_SENT;
    if (WIRE_OPCODE(q.flags) != 0) {
        info->rcode = WIRE_RCODE_NOTIMP;
        if (rc != 0)
            q.question_end = 0;
        return wire_write_error(query, &q, WIRE_RCODE_NOTIMP, 0, resp, resp_cap);
    }
    if (rc != 0) {
        info->rcode = WIRE_RCODE_FORMERR;
        return wire_write_error(query, &q, WIRE_RCODE_FORMERR, 0, resp, resp_cap);
    }

    size_t limit = over_tcp ? LIMIT_DNS_MESSAGE_MAX : answer_udp_limit(&q, limits);
    if (limit > resp_cap)
        limit = resp_cap;
    if (q.has_edns)
        limit -= ANSWER_OPT_LEN; /* keep room for our OPT whatever else happens */

    struct answer_builder b;
    b.cookie_len =
        client ? cookie_server_option(&cookie, client->peer, client->now, b.cookie, sizeof b.cookie)
               : 0;
    if (limit < q.question_end + b.cookie_len)
        b.cookie_len = 0; /* a tiny resp_cap: the question matters more than the cookie */
    limit -= b.cookie_len;
    b.query = &q;
    b.limits = limits;
    b.zone = NULL;
    b.health = health;
    memset(b.counts, 0, sizeof b.counts);
    b.rcode = WIRE_RCODE_NOERROR;
    b.authoritative = false;
    b.truncated = false;
    b.referral = false;
    b.referral_cut = NULL;
    b.referral_cut_len = 0;
    b.target_count = 0;
    wire_writer_init(&b.writer, resp, limit);
    /* Header (filled in at the end) and the question exactly as received. */
    b.writer.len = q.question_end;
    memcpy(resp + WIRE_HEADER_LEN, query + WIRE_HEADER_LEN, q.question_end - WIRE_HEADER_LEN);
    wire_writer_remember_name(&b.writer, ANSWER_QUESTION_OFFSET);

    if (q.has_edns && q.edns_version != 0) {
        b.rcode = WIRE_RCODE_BADVERS; /* RFC 6891 §6.1.3 */
    } else if (q.qclass != WIRE_CLASS_IN || answer_refused_type(q.qtype) || !zones) {
        b.rcode = WIRE_RCODE_REFUSED;
    } else {
        b.zone = answer_find_zone(zones, &q);
        if (!b.zone) {
            b.rcode = WIRE_RCODE_REFUSED;
        } else {
            b.authoritative = true;
            answer_resolve(&b);
            if (!b.truncated)
                answer_put_additional(&b);
        }
    }
    if (q.has_edns)
        answer_put_opt(&b);
    answer_finish_header(&b);

    info->rcode = b.rcode;
    info->truncated = b.truncated;
    info->authoritative = b.authoritative;
    info->referral = b.referral;
    return b.writer.len;
}
