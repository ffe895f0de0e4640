/* Response checks for upstream answers: match against the query sent, classify (answer, CNAME,
 * negative, referral, lame, ...) and keep only records inside the bailiwick (see scrub.h). */
#include "scrub.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "limit.h"
#include "wire.h"

/* One parsed response and the in-bailiwick records of each section (borrowed from pkt). */
struct scrub_ctx {
    const struct scrub_query *sent;
    ldns_pkt *pkt;
    ldns_rdf *qname;
    ldns_rr_list *answer;     /* borrowed pointers into pkt */
    ldns_rr_list *authority;  /* borrowed */
    ldns_rr_list *additional; /* borrowed */
    const ldns_rr **kept;     /* records of pkt used in the result (a record may repeat) */
    size_t kept_count, kept_cap;
    struct scrub_result *out;
};

/* A name as a lowercase wire buffer, for comparisons. */
struct scrub_name {
    uint8_t data[WIRE_NAME_MAX];
    size_t len;
};

static bool scrub_name_load(const ldns_rdf *rdf, struct scrub_name *name)
{
    if (rdf == NULL || ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME)
        return false;
    size_t len = ldns_rdf_size(rdf);
    if (len == 0 || len > WIRE_NAME_MAX || wire_name_length(ldns_rdf_data(rdf), len) != len)
        return false;
    wire_name_lower(name->data, ldns_rdf_data(rdf), len);
    name->len = len;
    return true;
}

/* Is rdf equal to or below parent (lowercase wire)? strict: below only. */
static bool scrub_rdf_under(const ldns_rdf *rdf, const uint8_t *parent, size_t parent_len,
                            bool strict)
{
    struct scrub_name name;
    if (!scrub_name_load(rdf, &name))
        return false;
    if (strict && name.len == parent_len)
        return false;
    return wire_name_is_subdomain(name.data, name.len, parent, parent_len);
}

static bool scrub_rdf_under_rdf(const ldns_rdf *rdf, const ldns_rdf *parent, bool strict)
{
    struct scrub_name p;
    return scrub_name_load(parent, &p) && scrub_rdf_under(rdf, p.data, p.len, strict);
}

static bool scrub_rdf_equal(const ldns_rdf *a, const ldns_rdf *b)
{
    return a != NULL && b != NULL &&
           wire_name_equal_nocase(ldns_rdf_data(a), ldns_rdf_size(a), ldns_rdf_data(b),
                                  ldns_rdf_size(b));
}

/* The name in the first RDATA field (NS, CNAME, DNAME), or NULL if there is none. */
static const ldns_rdf *scrub_rr_target(const ldns_rr *rr)
{
    if (ldns_rr_rd_count(rr) < 1)
        return NULL;
    const ldns_rdf *rdf = ldns_rr_rdf(rr, 0);
    struct scrub_name check;
    return scrub_name_load(rdf, &check) ? rdf : NULL;
}

const char *scrub_status_name(enum scrub_status status)
{
    switch (status) {
    case SCRUB_REJECTED:
        return "rejected";
    case SCRUB_ANSWER:
        return "answer";
    case SCRUB_CNAME:
        return "cname";
    case SCRUB_NXDOMAIN:
        return "nxdomain";
    case SCRUB_NODATA:
        return "nodata";
    case SCRUB_REFERRAL:
        return "referral";
    case SCRUB_LAME:
        return "lame";
    case SCRUB_SERVFAIL:
        return "servfail";
    case SCRUB_FORMERR:
        return "formerr";
    case SCRUB_TRUNCATED:
        return "truncated";
    }
    return "unknown";
}

const char *scrub_reject_name(enum scrub_reject reject)
{
    switch (reject) {
    case SCRUB_REJECT_NONE:
        return "none";
    case SCRUB_REJECT_ADDRESS:
        return "wrong source address";
    case SCRUB_REJECT_PORT:
        return "wrong source port";
    case SCRUB_REJECT_ID:
        return "wrong ID";
    case SCRUB_REJECT_NOT_REPLY:
        return "QR bit not set";
    case SCRUB_REJECT_OPCODE:
        return "opcode is not QUERY";
    case SCRUB_REJECT_QUESTION:
        return "question does not match";
    case SCRUB_REJECT_MALFORMED:
        return "malformed packet";
    }
    return "unknown";
}

static void scrub_free_rrsets(struct scrub_result *r)
{
    for (size_t i = 0; i < r->answer_count; i++)
        ldns_rr_list_deep_free(r->answer[i]);
    free(r->answer);
    r->answer = NULL;
    r->answer_count = 0;
    ldns_rdf_deep_free(r->referral_zone);
    r->referral_zone = NULL;
    ldns_rr_list_deep_free(r->referral_ns);
    r->referral_ns = NULL;
    ldns_rr_list_deep_free(r->glue);
    r->glue = NULL;
    ldns_rr_free(r->soa);
    r->soa = NULL;
}

void scrub_result_free(struct scrub_result *result)
{
    if (result == NULL)
        return;
    scrub_free_rrsets(result);
    ldns_rdf_deep_free(result->target);
    memset(result, 0, sizeof *result);
}

static int scrub_set(struct scrub_result *r, enum scrub_status status, const char *why)
{
    r->status = status;
    r->why = why;
    return BALLAST_OK;
}

static int scrub_reject(struct scrub_result *r, enum scrub_reject reject)
{
    r->reject = reject;
    return scrub_set(r, SCRUB_REJECTED, scrub_reject_name(reject));
}

/* RFC 5452 §9.1: the answer must come from the address and port the query went to. */
static enum scrub_reject scrub_check_source(const struct sockaddr *from, const struct addr *server)
{
    const struct sockaddr *to = (const struct sockaddr *)&server->ss;
    if (from->sa_family != to->sa_family)
        return SCRUB_REJECT_ADDRESS;
    if (from->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)from;
        const struct sockaddr_in *b = (const struct sockaddr_in *)to;
        if (memcmp(&a->sin_addr, &b->sin_addr, sizeof a->sin_addr) != 0)
            return SCRUB_REJECT_ADDRESS;
        return a->sin_port == b->sin_port ? SCRUB_REJECT_NONE : SCRUB_REJECT_PORT;
    }
    if (from->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)from;
        const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)to;
        if (memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) != 0)
            return SCRUB_REJECT_ADDRESS;
        return a->sin6_port == b->sin6_port ? SCRUB_REJECT_NONE : SCRUB_REJECT_PORT;
    }
    return SCRUB_REJECT_ADDRESS;
}

/* Header checks on the raw bytes, before spending a parse on the packet (RFC 5452 §9.1). */
static enum scrub_reject scrub_check_header(const uint8_t *pkt, size_t len, uint16_t id)
{
    if (len < WIRE_HEADER_LEN)
        return SCRUB_REJECT_MALFORMED;
    if (wire_read_u16(pkt) != id)
        return SCRUB_REJECT_ID;
    uint16_t flags = wire_read_u16(pkt + 2);
    if ((flags & WIRE_FLAG_QR) == 0)
        return SCRUB_REJECT_NOT_REPLY;
    if (WIRE_OPCODE(flags) != LDNS_PACKET_QUERY)
        return SCRUB_REJECT_OPCODE;
    return SCRUB_REJECT_NONE;
}

static bool scrub_rcode_is_formerr(uint8_t rcode)
{
    return rcode == LDNS_RCODE_FORMERR || rcode == LDNS_RCODE_NOTIMPL;
}

/* The question must be ours: name (case-insensitive, so 0x20 is allowed but not required), type
 * and class. FORMERR/NOTIMP may come without a question. */
static enum scrub_reject scrub_check_question(const struct scrub_ctx *ctx)
{
    const ldns_rr_list *question = ldns_pkt_question(ctx->pkt);
    size_t count = question != NULL ? ldns_rr_list_rr_count(question) : 0;
    if (count == 0 && scrub_rcode_is_formerr(ldns_pkt_get_rcode(ctx->pkt)))
        return SCRUB_REJECT_NONE;
    if (count != 1)
        return SCRUB_REJECT_QUESTION;
    const ldns_rr *q = ldns_rr_list_rr(question, 0);
    if (!scrub_rdf_equal(ldns_rr_owner(q), ctx->qname) || ldns_rr_get_type(q) != ctx->sent->qtype ||
        ldns_rr_get_class(q) != ctx->sent->qclass)
        return SCRUB_REJECT_QUESTION;
    return SCRUB_REJECT_NONE;
}

/* Borrow the records of section whose class is ours and whose owner is inside the bailiwick;
 * count the others (RFC 2181 §5.4.1: data from outside the zone is not authoritative). */
static ldns_rr_list *scrub_filter_section(struct scrub_ctx *ctx, const ldns_rr_list *section)
{
    ldns_rr_list *kept = ldns_rr_list_new();
    if (kept == NULL)
        return NULL;
    size_t count = section != NULL ? ldns_rr_list_rr_count(section) : 0;
    for (size_t i = 0; i < count; i++) {
        ldns_rr *rr = ldns_rr_list_rr(section, i);
        if (ldns_rr_get_class(rr) != ctx->sent->qclass)
            continue;
        if (!scrub_rdf_under(ldns_rr_owner(rr), ctx->sent->zone, ctx->sent->zone_len, false)) {
            ctx->out->out_of_bailiwick++;
            continue;
        }
        if (!ldns_rr_list_push_rr(kept, rr)) {
            ldns_rr_list_free(kept);
            return NULL;
        }
    }
    return kept;
}

/* Note that rr (a record of the packet) is used in the result. */
static int scrub_mark_kept(struct scrub_ctx *ctx, const ldns_rr *rr)
{
    if (ctx->kept_count == ctx->kept_cap) {
        size_t cap = ctx->kept_cap ? ctx->kept_cap * 2 : 16;
        const ldns_rr **grown = realloc(ctx->kept, cap * sizeof *grown);
        if (grown == NULL)
            return BALLAST_ENOMEM;
        ctx->kept = grown;
        ctx->kept_cap = cap;
    }
    ctx->kept[ctx->kept_count++] = rr;
    return BALLAST_OK;
}

static int scrub_pointer_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (const ldns_rr *const *)a;
    uintptr_t y = (uintptr_t) * (const ldns_rr *const *)b;
    return x < y ? -1 : x > y;
}

/* Distinct records of the packet used in the result: one used twice (a looping chain, a
 * repeated NS name) counts once. Sorts ctx->kept. */
static size_t scrub_kept_distinct(struct scrub_ctx *ctx)
{
    if (ctx->kept_count == 0)
        return 0;
    qsort(ctx->kept, ctx->kept_count, sizeof *ctx->kept, scrub_pointer_cmp);
    size_t distinct = 1;
    for (size_t i = 1; i < ctx->kept_count; i++)
        distinct += ctx->kept[i] != ctx->kept[i - 1];
    return distinct;
}

/* Records of the packet that were not kept. */
static size_t scrub_dropped(const ldns_pkt *pkt, size_t kept)
{
    size_t total = ldns_rr_list_rr_count(ldns_pkt_answer(pkt)) +
                   ldns_rr_list_rr_count(ldns_pkt_authority(pkt)) +
                   ldns_rr_list_rr_count(ldns_pkt_additional(pkt));
    return total > kept ? total - kept : 0;
}

/* Copy rr (a record of the packet) onto list. */
static int scrub_keep(struct scrub_ctx *ctx, ldns_rr_list *list, const ldns_rr *rr)
{
    ldns_rr *copy = ldns_rr_clone(rr);
    if (copy == NULL)
        return BALLAST_ENOMEM;
    if (!ldns_rr_list_push_rr(list, copy)) {
        ldns_rr_free(copy);
        return BALLAST_ENOMEM;
    }
    return scrub_mark_kept(ctx, rr);
}

/* Append an RRset to out->answer; the result takes rrset over (also on failure). */
static int scrub_add_rrset(struct scrub_result *out, ldns_rr_list *rrset)
{
    ldns_rr_list **grown = realloc(out->answer, (out->answer_count + 1) * sizeof *grown);
    if (grown == NULL) {
        ldns_rr_list_deep_free(rrset);
        return BALLAST_ENOMEM;
    }
    out->answer = grown;
    out->answer[out->answer_count++] = rrset;
    return BALLAST_OK;
}

/* Copy the records of section at owner whose type is type. When
 * first_only, one record at most (a CNAME "RRset" has one record, RFC 2181 §10.1). Returns the
 * number added to *rrset (created on first match) or a negative error. */
static int scrub_collect(struct scrub_ctx *ctx, const ldns_rr_list *section, const ldns_rdf *owner,
                         uint16_t type, bool first_only, ldns_rr_list **rrset)
{
    int added = 0;
    for (size_t i = 0; i < ldns_rr_list_rr_count(section); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(section, i);
        if (ldns_rr_get_type(rr) != type || !scrub_rdf_equal(ldns_rr_owner(rr), owner))
            continue;
        if (*rrset == NULL && (*rrset = ldns_rr_list_new()) == NULL)
            return BALLAST_ENOMEM;
        int rc = scrub_keep(ctx, *rrset, rr);
        if (rc != BALLAST_OK)
            return rc;
        added++;
        if (first_only)
            break;
    }
    return added;
}

/* The DNAME of the answer section that applies to name: owner strictly above name (RFC 6672
 * §2.3); the deepest one if several. */
static const ldns_rr *scrub_find_dname(const struct scrub_ctx *ctx, const ldns_rdf *name)
{
    const ldns_rr *best = NULL;
    for (size_t i = 0; i < ldns_rr_list_rr_count(ctx->answer); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(ctx->answer, i);
        if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_DNAME || scrub_rr_target(rr) == NULL ||
            !scrub_rdf_under_rdf(name, ldns_rr_owner(rr), true))
            continue;
        if (best == NULL || ldns_rdf_size(ldns_rr_owner(rr)) > ldns_rdf_size(ldns_rr_owner(best)))
            best = rr;
    }
    return best;
}

/* RFC 6672 §2.2: replace the DNAME owner suffix of name by the DNAME target. NULL when the result
 * would be longer than 255 octets (the server should have said YXDOMAIN) or out of memory. */
static ldns_rdf *scrub_dname_substitute(const ldns_rdf *name, const ldns_rr *dname)
{
    const ldns_rdf *owner = ldns_rr_owner(dname);
    const ldns_rdf *target = scrub_rr_target(dname);
    size_t prefix = ldns_rdf_size(name) - ldns_rdf_size(owner);
    size_t len = prefix + ldns_rdf_size(target);
    if (len > WIRE_NAME_MAX)
        return NULL;
    uint8_t buf[WIRE_NAME_MAX];
    memcpy(buf, ldns_rdf_data(name), prefix);
    memcpy(buf + prefix, ldns_rdf_data(target), ldns_rdf_size(target));
    return ldns_rdf_new_frm_data(LDNS_RDF_TYPE_DNAME, len, buf);
}

/* RFC 6672 §3.1: the CNAME name -> new_name, with the DNAME's TTL. */
static ldns_rr *scrub_synthesise_cname(const ldns_rdf *name, const ldns_rdf *new_name,
                                       const ldns_rr *dname)
{
    ldns_rr *rr = ldns_rr_new();
    ldns_rdf *owner = ldns_rdf_clone(name);
    ldns_rdf *target = ldns_rdf_clone(new_name);
    if (rr == NULL || owner == NULL || target == NULL) {
        ldns_rr_free(rr);
        ldns_rdf_deep_free(owner);
        ldns_rdf_deep_free(target);
        return NULL;
    }
    ldns_rr_set_owner(rr, owner);
    ldns_rr_set_type(rr, LDNS_RR_TYPE_CNAME);
    ldns_rr_set_class(rr, ldns_rr_get_class(dname));
    ldns_rr_set_ttl(rr, ldns_rr_ttl(dname));
    if (!ldns_rr_push_rdf(rr, target)) {
        ldns_rdf_deep_free(target);
        ldns_rr_free(rr);
        return NULL;
    }
    return rr;
}

/* One DNAME step from *name: keep the DNAME, add the synthesised CNAME (a CNAME the server sent
 * is used only as a witness: if it agrees it counts as kept, otherwise it is dropped), and move
 * *name to the substituted name. Returns 0, BALLAST_ELIMIT (name too long) or BALLAST_ENOMEM. */
static int scrub_follow_dname(struct scrub_ctx *ctx, const ldns_rr *dname, ldns_rdf **name)
{
    size_t prefix = ldns_rdf_size(*name) - ldns_rdf_size(ldns_rr_owner(dname));
    if (prefix + ldns_rdf_size(scrub_rr_target(dname)) > WIRE_NAME_MAX)
        return BALLAST_ELIMIT;
    ldns_rdf *next = scrub_dname_substitute(*name, dname);
    if (next == NULL)
        return BALLAST_ENOMEM;
    ldns_rr_list *dname_set = NULL;
    int rc =
        scrub_collect(ctx, ctx->answer, ldns_rr_owner(dname), LDNS_RR_TYPE_DNAME, true, &dname_set);
    if (rc >= 0)
        rc = scrub_add_rrset(ctx->out, dname_set);
    ldns_rr_list *cname_set = ldns_rr_list_new();
    ldns_rr *cname = scrub_synthesise_cname(*name, next, dname);
    if (rc < 0 || cname_set == NULL || cname == NULL || !ldns_rr_list_push_rr(cname_set, cname)) {
        ldns_rr_free(cname);
        ldns_rr_list_deep_free(cname_set);
        ldns_rdf_deep_free(next);
        return rc < 0 ? rc : BALLAST_ENOMEM;
    }
    for (size_t i = 0; i < ldns_rr_list_rr_count(ctx->answer); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(ctx->answer, i);
        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME &&
            scrub_rdf_equal(ldns_rr_owner(rr), *name) &&
            scrub_rdf_equal(scrub_rr_target(rr), next)) {
            if (scrub_mark_kept(ctx, rr) != 0) {
                ldns_rr_list_deep_free(cname_set);
                ldns_rdf_deep_free(next);
                return BALLAST_ENOMEM;
            }
            break;
        }
    }
    ldns_rdf_deep_free(*name);
    *name = next;
    return scrub_add_rrset(ctx->out, cname_set);
}

/* One CNAME step: keep the CNAME at *name and move *name to its target. */
static int scrub_follow_cname(struct scrub_ctx *ctx, const ldns_rr *cname, ldns_rdf **name)
{
    ldns_rdf *next = ldns_rdf_clone(scrub_rr_target(cname));
    ldns_rr_list *set = ldns_rr_list_new();
    if (next == NULL || set == NULL || scrub_keep(ctx, set, cname) != BALLAST_OK) {
        ldns_rdf_deep_free(next);
        ldns_rr_list_deep_free(set);
        return BALLAST_ENOMEM;
    }
    ldns_rdf_deep_free(*name);
    *name = next;
    return scrub_add_rrset(ctx->out, set);
}

static const ldns_rr *scrub_find_cname(const struct scrub_ctx *ctx, const ldns_rdf *name)
{
    for (size_t i = 0; i < ldns_rr_list_rr_count(ctx->answer); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(ctx->answer, i);
        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME && scrub_rr_target(rr) != NULL &&
            scrub_rdf_equal(ldns_rr_owner(rr), name))
            return rr;
    }
    return NULL;
}

/* The data at name for the query type, one RRset per type (several for ANY, RRSIGs aside).
 * Returns the number of RRsets added to out->answer, or a negative error. */
static int scrub_collect_data(struct scrub_ctx *ctx, const ldns_rdf *name)
{
    uint16_t qtype = ctx->sent->qtype;
    size_t before = ctx->out->answer_count;
    for (size_t i = 0; i < ldns_rr_list_rr_count(ctx->answer); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(ctx->answer, i);
        uint16_t type = ldns_rr_get_type(rr);
        bool wanted = qtype == LDNS_RR_TYPE_ANY ? type != LDNS_RR_TYPE_RRSIG : type == qtype;
        if (!wanted || !scrub_rdf_equal(ldns_rr_owner(rr), name))
            continue;
        bool seen = false; /* an earlier record of this type already made the RRset */
        for (size_t j = before; j < ctx->out->answer_count && !seen; j++)
            seen = ldns_rr_get_type(ldns_rr_list_rr(ctx->out->answer[j], 0)) == type;
        if (seen)
            continue;
        ldns_rr_list *rrset = NULL;
        int rc = scrub_collect(ctx, ctx->answer, name, type, false, &rrset);
        if (rc >= 0)
            rc = scrub_add_rrset(ctx->out, rrset);
        if (rc < 0)
            return rc;
    }
    return (int)(ctx->out->answer_count - before);
}

/* Walk the answer section from qname through DNAMEs and CNAMEs (RFC 1034 §3.6.2, RFC 6672 §3)
 * up to the chain limit; records off the chain are left behind. Sets out->target and
 * out->chain_length; *answered when the data of qtype at the end was found. */
static int scrub_follow_chain(struct scrub_ctx *ctx, bool *answered)
{
    struct scrub_result *out = ctx->out;
    ldns_rdf *name = ldns_rdf_clone(ctx->qname);
    if (name == NULL)
        return BALLAST_ENOMEM;
    uint16_t qtype = ctx->sent->qtype;
    int rc = BALLAST_OK;
    *answered = false;
    for (;;) {
        const ldns_rr *dname = scrub_find_dname(ctx, name);
        const ldns_rr *cname = qtype == LDNS_RR_TYPE_CNAME ? NULL : scrub_find_cname(ctx, name);
        if (dname == NULL) {
            rc = scrub_collect_data(ctx, name);
            if (rc > 0) {
                *answered = true;
                break;
            }
        }
        if ((dname == NULL && cname == NULL) || rc < 0 ||
            out->chain_length >= LIMIT_DEFAULT_CNAME_CHAIN)
            break;
        rc = dname != NULL ? scrub_follow_dname(ctx, dname, &name)
                           : scrub_follow_cname(ctx, cname, &name);
        if (rc < 0)
            break;
        out->chain_length++;
    }
    out->target = name;
    return rc < 0 ? rc : BALLAST_OK;
}

/* Addresses (A/AAAA in the in-bailiwick additional section) of the NS names in ns_set. */
static int scrub_collect_glue(struct scrub_ctx *ctx, const ldns_rr_list *ns_set)
{
    for (size_t i = 0; i < ldns_rr_list_rr_count(ns_set); i++) {
        const ldns_rdf *host = scrub_rr_target(ldns_rr_list_rr(ns_set, i));
        if (host == NULL)
            continue;
        for (uint16_t type = LDNS_RR_TYPE_A;; type = LDNS_RR_TYPE_AAAA) {
            int rc = scrub_collect(ctx, ctx->additional, host, type, false, &ctx->out->glue);
            if (rc < 0)
                return rc;
            if (type == LDNS_RR_TYPE_AAAA)
                break;
        }
    }
    return BALLAST_OK;
}

/* RFC 2308 §3: the SOA of the zone that denies name: an ancestor of (or equal to) name. */
static int scrub_collect_soa(struct scrub_ctx *ctx, const ldns_rdf *name)
{
    for (size_t i = 0; i < ldns_rr_list_rr_count(ctx->authority); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(ctx->authority, i);
        if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA ||
            !scrub_rdf_under_rdf(name, ldns_rr_owner(rr), false))
            continue;
        ctx->out->soa = ldns_rr_clone(rr);
        if (ctx->out->soa == NULL || scrub_mark_kept(ctx, rr) != 0)
            return BALLAST_ENOMEM;
        return 1;
    }
    return 0;
}

/* The owner of the NS RRset that makes a downward referral: strictly below our zone and at or
 * above qname (RFC 1034 §4.3.2 step 3b); the deepest if several. NULL if none. */
static const ldns_rdf *scrub_find_referral(const struct scrub_ctx *ctx)
{
    const ldns_rdf *best = NULL;
    const struct scrub_query *sent = ctx->sent;
    for (size_t i = 0; i < ldns_rr_list_rr_count(ctx->authority); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(ctx->authority, i);
        const ldns_rdf *owner = ldns_rr_owner(rr);
        if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_NS || scrub_rr_target(rr) == NULL ||
            !scrub_rdf_under(owner, sent->zone, sent->zone_len, true) ||
            !scrub_rdf_under_rdf(ctx->qname, owner, false))
            continue;
        if (best == NULL || ldns_rdf_size(owner) > ldns_rdf_size(best))
            best = owner;
    }
    return best;
}

/* Why a non-authoritative, non-referral response is lame. The raw authority section is looked
 * at, since bailiwick filtering already removed an NS RRset for "." or the parent zone. */
static const char *scrub_lame_reason(const struct scrub_ctx *ctx)
{
    const ldns_rr_list *authority = ldns_pkt_authority(ctx->pkt);
    for (size_t i = 0; i < ldns_rr_list_rr_count(authority); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(authority, i);
        struct scrub_name owner;
        if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_NS || !scrub_name_load(ldns_rr_owner(rr), &owner))
            continue;
        if (wire_name_is_subdomain(ctx->sent->zone, ctx->sent->zone_len, owner.data, owner.len))
            return "upward referral (NS at or above the zone asked)";
        if (!wire_name_is_subdomain(owner.data, owner.len, ctx->sent->zone, ctx->sent->zone_len))
            return "sideways referral (NS outside the zone asked)";
        return "sideways referral (NS not an ancestor of the query name)";
    }
    return "not authoritative and no referral";
}

static int scrub_referral(struct scrub_ctx *ctx, const ldns_rdf *zone)
{
    struct scrub_result *out = ctx->out;
    if (ctx->sent->forwarder)
        return scrub_set(out, SCRUB_LAME, "referral from a forwarder");
    out->referral_zone = ldns_rdf_clone(zone);
    if (out->referral_zone == NULL)
        return BALLAST_ENOMEM;
    int rc = scrub_collect(ctx, ctx->authority, zone, LDNS_RR_TYPE_NS, false, &out->referral_ns);
    if (rc >= 0)
        rc = scrub_collect_glue(ctx, out->referral_ns);
    if (rc < 0)
        return rc;
    return scrub_set(out, SCRUB_REFERRAL, NULL);
}

/* RCODE NOERROR or NXDOMAIN: classify after the chain walk. Iterative servers must be
 * authoritative (AA) for anything but a referral; forwarders need not be. */
static int scrub_classify(struct scrub_ctx *ctx)
{
    struct scrub_result *out = ctx->out;
    bool answered = false;
    int rc = scrub_follow_chain(ctx, &answered);
    if (rc == BALLAST_ELIMIT)
        return scrub_set(out, SCRUB_SERVFAIL, "DNAME substitution longer than 255 octets");
    if (rc < 0)
        return rc;
    bool trusted = out->aa || ctx->sent->forwarder;
    bool nxdomain = out->rcode == LDNS_RCODE_NXDOMAIN;
    bool chained = out->chain_length > 0;
    if (!trusted && (answered || chained || nxdomain))
        return scrub_set(out, SCRUB_LAME, "answer without the AA bit");
    if (answered) {
        for (size_t i = 0; i < out->answer_count; i++) {
            if (ldns_rr_get_type(ldns_rr_list_rr(out->answer[i], 0)) != LDNS_RR_TYPE_NS)
                continue;
            if ((rc = scrub_collect_glue(ctx, out->answer[i])) < 0)
                return rc;
        }
        return scrub_set(out, SCRUB_ANSWER, NULL);
    }
    /* RFC 6604 §3: after a chain the RCODE and SOA speak of the last name; believe them only
     * when that name is in our zone, otherwise it must be chased. */
    bool target_inside = scrub_rdf_under(out->target, ctx->sent->zone, ctx->sent->zone_len, false);
    if (chained && (!target_inside || out->chain_length >= LIMIT_DEFAULT_CNAME_CHAIN))
        return scrub_set(out, SCRUB_CNAME, NULL);
    if (nxdomain) {
        rc = scrub_collect_soa(ctx, out->target);
        return rc < 0 ? rc : scrub_set(out, SCRUB_NXDOMAIN, NULL);
    }
    const ldns_rdf *referral = chained ? NULL : scrub_find_referral(ctx);
    rc = scrub_collect_soa(ctx, out->target);
    if (rc < 0)
        return rc;
    if (referral != NULL && out->soa == NULL)
        return scrub_referral(ctx, referral);
    if (chained)
        return scrub_set(out, out->soa != NULL ? SCRUB_NODATA : SCRUB_CNAME, NULL);
    if (trusted)
        return scrub_set(out, SCRUB_NODATA, NULL);
    return scrub_set(out, SCRUB_LAME, scrub_lame_reason(ctx));
}

static int scrub_by_rcode(struct scrub_ctx *ctx)
{
    struct scrub_result *out = ctx->out;
    switch (out->rcode) {
    case LDNS_RCODE_NOERROR:
    case LDNS_RCODE_NXDOMAIN:
        return scrub_classify(ctx);
    case LDNS_RCODE_REFUSED:
        return scrub_set(out, SCRUB_LAME, "REFUSED");
    case LDNS_RCODE_NOTAUTH:
        return scrub_set(out, SCRUB_LAME, "NOTAUTH");
    case LDNS_RCODE_SERVFAIL:
        return scrub_set(out, SCRUB_SERVFAIL, "SERVFAIL");
    case LDNS_RCODE_FORMERR:
        return scrub_set(out, SCRUB_FORMERR, "FORMERR");
    case LDNS_RCODE_NOTIMPL:
        return scrub_set(out, SCRUB_FORMERR, "NOTIMP");
    default:
        return scrub_set(out, SCRUB_SERVFAIL, "unexpected RCODE");
    }
}

static int scrub_parsed(struct scrub_ctx *ctx)
{
    struct scrub_result *out = ctx->out;
    out->rcode = ldns_pkt_get_rcode(ctx->pkt);
    out->aa = ldns_pkt_aa(ctx->pkt);
    out->edns = ldns_pkt_edns(ctx->pkt);
    enum scrub_reject reject = scrub_check_question(ctx);
    if (reject != SCRUB_REJECT_NONE) {
        out->rcode = 0;
        return scrub_reject(out, reject);
    }
    /* RFC 7766 §5 / RFC 1035 §4.1.1: a truncated answer is retried over TCP, not used. */
    if (ldns_pkt_tc(ctx->pkt))
        return scrub_set(out, SCRUB_TRUNCATED, "TC=1");
    ctx->answer = scrub_filter_section(ctx, ldns_pkt_answer(ctx->pkt));
    ctx->authority = scrub_filter_section(ctx, ldns_pkt_authority(ctx->pkt));
    ctx->additional = scrub_filter_section(ctx, ldns_pkt_additional(ctx->pkt));
    if (ctx->answer == NULL || ctx->authority == NULL || ctx->additional == NULL)
        return BALLAST_ENOMEM;
    int rc = scrub_by_rcode(ctx);
    if (rc == BALLAST_OK && out->status == SCRUB_LAME) {
        scrub_free_rrsets(out); /* nothing from a lame server is used */
        ctx->kept_count = 0;
    }
    return rc;
}

static bool scrub_query_valid(const struct scrub_query *sent)
{
    return sent != NULL && sent->qname != NULL && sent->zone != NULL && sent->server != NULL &&
           sent->qname_len > 0 && sent->qname_len <= WIRE_NAME_MAX &&
           wire_name_length(sent->qname, sent->qname_len) == sent->qname_len &&
           sent->zone_len > 0 && sent->zone_len <= WIRE_NAME_MAX &&
           wire_name_length(sent->zone, sent->zone_len) == sent->zone_len;
}

int scrub_response(const uint8_t *pkt, size_t len, const struct scrub_query *sent,
                   const struct sockaddr *from, struct scrub_result *out)
{
    if (out == NULL)
        return BALLAST_EINVAL;
    memset(out, 0, sizeof *out);
    if ((pkt == NULL && len > 0) || from == NULL || !scrub_query_valid(sent))
        return BALLAST_EINVAL;
    enum scrub_reject reject = scrub_check_source(from, sent->server);
    if (reject == SCRUB_REJECT_NONE)
        reject = scrub_check_header(pkt, len, sent->id);
    if (reject != SCRUB_REJECT_NONE)
        return scrub_reject(out, reject);
    struct scrub_ctx ctx = {.sent = sent, .out = out};
    if (ldns_wire2pkt(&ctx.pkt, pkt, len) != LDNS_STATUS_OK || ctx.pkt == NULL)
        return scrub_reject(out, SCRUB_REJECT_MALFORMED);
    int rc = BALLAST_ENOMEM;
    ctx.qname = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_DNAME, sent->qname_len, sent->qname);
    if (ctx.qname != NULL)
        rc = scrub_parsed(&ctx);
    if (rc == BALLAST_OK && out->status != SCRUB_REJECTED)
        out->dropped = scrub_dropped(ctx.pkt, scrub_kept_distinct(&ctx));
    free(ctx.kept);
    ldns_rr_list_free(ctx.answer);
    ldns_rr_list_free(ctx.authority);
    ldns_rr_list_free(ctx.additional);
    ldns_rdf_deep_free(ctx.qname);
    ldns_pkt_free(ctx.pkt);
    if (rc != BALLAST_OK)
        scrub_result_free(out);
    return rc;
}
