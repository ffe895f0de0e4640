/* The iterator: one client question resolved from the cache, or from the root hints down through
 * referrals (RFC 1034 §5.3.3), with QNAME minimisation (RFC 9156, relaxed), CNAME chasing and
 * the per-query budgets that stop NXNSAttack-style amplification. Upstream I/O goes through
 * the transport callbacks; responses are checked by scrub.c before anything is cached. */
#include "iterate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "errors.h"
#include "scrub.h"
#include "wire.h"

#define ITER_MAX_NS 16         /* NS names remembered for one delegation */
#define ITER_QMIN_MAX_COUNT 10 /* RFC 9156 §2.3 MAX_MINIMISE_COUNT */
#define ITER_QMIN_ONE_LABEL 4  /* RFC 9156 §2.3 MINIMISE_ONE_LAB */
#define ITER_OPT_LEN 11
#define ITER_EDE_OPTION 15 /* RFC 8914 §2 OPTION-CODE */
#define ITER_EDE_LEN 6     /* OPTION-CODE, OPTION-LENGTH, INFO-CODE; no EXTRA-TEXT */

/* One RRset of the answer, in the cache's wire layout. */
struct iter_rrset {
    uint8_t owner[WIRE_NAME_MAX];
    size_t owner_len;
    uint16_t type;
    uint32_t ttl;
    uint16_t count;
    uint8_t *data; /* count x [RDLENGTH][RDATA] */
    size_t data_len;
};

/* Where the iterator is: the zone whose servers it asks. */
struct iter_delegation {
    uint8_t zone[WIRE_NAME_MAX];
    size_t zone_len;
    unsigned zone_labels;
    bool forward; /* the servers are recursive resolvers (RD=1, no referrals expected) */
    uint8_t ns[ITER_MAX_NS][WIRE_NAME_MAX];
    size_t ns_len[ITER_MAX_NS];
    unsigned ns_count;
    unsigned ns_next; /* next NS name whose address we may resolve */
    struct addr servers[ITER_MAX_SERVERS];
    bool tried[ITER_MAX_SERVERS];
    bool timed_out[ITER_MAX_SERVERS]; /* tried, and the try timed out: may be asked again */
    size_t server_count;
    unsigned tries;
};

struct iter_request {
    struct iter_env *env;
    struct iter_request *parent; /* set when resolving an NS name's address */
    struct iter_request *child;
    unsigned depth;
    struct iter_budget own_budget;
    struct iter_budget *budget; /* the top request's, shared by its children */
    iter_done_fn done;
    void *done_ctx;
    bool finished;
    bool done_called;
    bool in_step;
    bool child_finished; /* the child completed while we were inside iter_step */

    uint16_t qtype;
    uint8_t qname[WIRE_NAME_MAX];
    size_t qname_len;
    uint8_t target[WIRE_NAME_MAX]; /* the name being resolved now (after CNAMEs) */
    size_t target_len;
    unsigned target_labels;

    struct iter_rrset answer[ITER_MAX_ANSWER];
    unsigned answer_count;
    struct iter_rrset soa;
    bool has_soa;
    uint16_t rcode;
    const char *failure;
    bool refresh;        /* never answer the question from the cache: re-resolve it */
    bool accept_stale;   /* build the answer from stale entries too (iter_request_stale) */
    bool from_stale;     /* some RRset of the answer was stale */
    bool stale_nxdomain; /* ... and the answer is a stale NXDOMAIN */
    bool prefetch_due;   /* an RRset of the answer is in the last part of its TTL */
    bool suspect;        /* a critical name that had data answered empty (suspicion window) */
    uint32_t timeouts;   /* upstream tries that timed out */
    uint32_t net_errors; /* upstream tries that failed with a network error */

    struct iter_delegation dp;
    bool have_dp;
    bool qmin; /* minimising toward target */
    unsigned qmin_labels;

    void *send_handle;
    size_t sent_index; /* into dp.servers */
    uint32_t sent_rto;
    uint8_t sent_name[WIRE_NAME_MAX];
    size_t sent_name_len;
    uint16_t sent_type;
    bool sent_edns;
};

static void iter_step(struct iter_request *req);

/* One cache lookup buffer per thread: every lookup copies what it needs out of it before the
 * next one. */
static _Thread_local uint8_t iter_cache_buf[CACHE_LOOKUP_BUF_MAX];

static uint64_t iter_now(const struct iter_request *req)
{
    return req->env->transport.now_ms(req->env->transport.io);
}

/* --- hints ------------------------------------------------------------------------------ */

int iter_hints_load(const char *path, uint16_t port, struct iter_hints *hints, char *err,
                    size_t err_len)
{
    memset(hints, 0, sizeof *hints);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return BALLAST_EIO;
    }
    uint32_t ttl = 3600;
    ldns_rdf *origin = NULL, *prev = NULL;
    int line = 1;
    int rc = BALLAST_OK;
    while (!feof(fp) && rc == BALLAST_OK) {
        ldns_rr *rr = NULL;
        int line_before = line;
        ldns_status s = ldns_rr_new_frm_fp_l(&rr, fp, &ttl, &origin, &prev, &line);
        if (s == LDNS_STATUS_SYNTAX_EMPTY || s == LDNS_STATUS_SYNTAX_TTL ||
            s == LDNS_STATUS_SYNTAX_ORIGIN)
            continue;
        if (s != LDNS_STATUS_OK) {
            snprintf(err, err_len, "%s:%d: %s", path, line_before, ldns_get_errorstr_by_id(s));
            rc = BALLAST_EPARSE;
            break;
        }
        ldns_rr_type type = ldns_rr_get_type(rr);
        if ((type == LDNS_RR_TYPE_A || type == LDNS_RR_TYPE_AAAA) &&
            hints->count < ITER_MAX_HINTS) {
            char text[64];
            ldns_buffer *buf = ldns_buffer_new(64);
            if (buf && ldns_rdf2buffer_str(buf, ldns_rr_rdf(rr, 0)) == LDNS_STATUS_OK) {
                snprintf(text, sizeof text, "%.*s", (int)ldns_buffer_position(buf),
                         (char *)ldns_buffer_begin(buf));
                if (addr_parse(text, port, &hints->addrs[hints->count]) == 0)
                    hints->count++;
            }
            ldns_buffer_free(buf);
        }
        ldns_rr_free(rr);
    }
    if (origin)
        ldns_rdf_deep_free(origin);
    if (prev)
        ldns_rdf_deep_free(prev);
    fclose(fp);
    if (rc == BALLAST_OK && hints->count == 0) {
        snprintf(err, err_len, "%s: no root server addresses (A/AAAA records) found", path);
        rc = BALLAST_EPARSE;
    }
    return rc;
}

/* --- QNAME minimisation ------------------------------------------------------------------- */

unsigned iter_qmin_next(const uint8_t *target, size_t target_len, unsigned labels_done,
                        unsigned zone_labels, uint8_t *out, size_t *out_len)
{
    unsigned total = wire_name_labels(target);
    if (labels_done < zone_labels)
        labels_done = zone_labels;
    unsigned next = labels_done + 1;
    unsigned steps_done = labels_done - zone_labels;
    if (steps_done >= ITER_QMIN_ONE_LABEL) {
        /* RFC 9156 §2.3: spread what is left over the remaining allowed queries */
        unsigned remaining = total - labels_done;
        unsigned queries_left =
            ITER_QMIN_MAX_COUNT > steps_done + 1 ? ITER_QMIN_MAX_COUNT - steps_done - 1 : 1;
        unsigned step = (remaining + queries_left - 1) / queries_left;
        next = labels_done + (step ? step : 1);
    }
    if (next > total)
        next = total;
    size_t offset = wire_name_skip_labels(target, total - next);
    memcpy(out, target + offset, target_len - offset);
    *out_len = target_len - offset;
    return next;
}

/* --- answer storage ----------------------------------------------------------------------- */

static int iter_rrset_set(struct iter_rrset *set, const uint8_t *owner, size_t owner_len,
                          uint16_t type, uint32_t ttl, uint16_t count, const uint8_t *data,
                          size_t data_len)
{
    set->data = malloc(data_len ? data_len : 1);
    if (!set->data)
        return BALLAST_ENOMEM;
    memcpy(set->owner, owner, owner_len);
    set->owner_len = owner_len;
    set->type = type;
    set->ttl = ttl;
    set->count = count;
    memcpy(set->data, data, data_len);
    set->data_len = data_len;
    return BALLAST_OK;
}

static int iter_answer_add(struct iter_request *req, const uint8_t *owner, size_t owner_len,
                           uint16_t type, uint32_t ttl, uint16_t count, const uint8_t *data,
                           size_t data_len)
{
    if (req->answer_count >= ITER_MAX_ANSWER)
        return BALLAST_ELIMIT;
    int rc = iter_rrset_set(&req->answer[req->answer_count], owner, owner_len, type, ttl, count,
                            data, data_len);
    if (rc == 0)
        req->answer_count++;
    return rc;
}

/* Flatten an ldns RRset into owner + the cache's [RDLENGTH][RDATA] layout (names lowercased
 * where RFC 4034 §6.2 allows, owner lowercased). buf receives the data. */
static int iter_ldns_rrset(ldns_rr_list *list, uint8_t *owner, size_t *owner_len, uint16_t *type,
                           uint32_t *ttl, uint16_t *count, ldns_buffer *buf)
{
    size_t n = ldns_rr_list_rr_count(list);
    if (n == 0 || n > UINT16_MAX)
        return BALLAST_EINVAL;
    ldns_buffer_clear(buf);
    *ttl = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        ldns_rr *rr = ldns_rr_list_rr(list, i);
        ldns_rr2canonical(rr);
        if (ldns_rr_ttl(rr) < *ttl)
            *ttl = ldns_rr_ttl(rr);
        size_t at = ldns_buffer_position(buf);
        ldns_buffer_write_u16(buf, 0);
        if (ldns_rr_rdata2buffer_wire(buf, rr) != LDNS_STATUS_OK)
            return BALLAST_EINVAL;
        size_t rdlen = ldns_buffer_position(buf) - at - 2;
        ldns_buffer_write_u16_at(buf, at, (uint16_t)rdlen);
    }
    if (!ldns_buffer_status_ok(buf))
        return BALLAST_ENOMEM;
    const ldns_rdf *name = ldns_rr_owner(ldns_rr_list_rr(list, 0));
    *owner_len = ldns_rdf_size(name);
    memcpy(owner, ldns_rdf_data(name), *owner_len);
    *type = (uint16_t)ldns_rr_get_type(ldns_rr_list_rr(list, 0));
    *count = (uint16_t)n;
    return BALLAST_OK;
}

/* Cache an RRset from a response and, if answer is set, add it to the request's answer. */
static void iter_take_rrset(struct iter_request *req, ldns_rr_list *list, enum cache_rank rank,
                            bool answer)
{
    uint8_t owner[WIRE_NAME_MAX];
    size_t owner_len = 0;
    uint16_t type = 0, count = 0;
    uint32_t ttl = 0;
    ldns_buffer *buf = ldns_buffer_new(512);
    if (!buf)
        return;
    if (iter_ldns_rrset(list, owner, &owner_len, &type, &ttl, &count, buf) == 0) {
        cache_insert_rrset(req->env->cache, owner, owner_len, type, WIRE_CLASS_IN, ttl, rank,
                           ldns_buffer_begin(buf), ldns_buffer_position(buf), count, iter_now(req));
        if (answer)
            iter_answer_add(req, owner, owner_len, type, cache_effective_ttl(req->env->cache, ttl),
                            count, ldns_buffer_begin(buf), ldns_buffer_position(buf));
    }
    ldns_buffer_free(buf);
}

/* Cache a list that may hold several RRsets (glue): group by owner and type. */
static void iter_take_mixed(struct iter_request *req, ldns_rr_list *list, enum cache_rank rank)
{
    size_t n = list ? ldns_rr_list_rr_count(list) : 0;
    bool *done = calloc(n ? n : 1, sizeof *done);
    if (!done)
        return;
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        ldns_rr *first = ldns_rr_list_rr(list, i);
        ldns_rr_list *set = ldns_rr_list_new();
        if (!set)
            break;
        for (size_t j = i; j < n; j++) {
            ldns_rr *rr = ldns_rr_list_rr(list, j);
            if (!done[j] && ldns_rr_get_type(rr) == ldns_rr_get_type(first) &&
                ldns_dname_compare(ldns_rr_owner(rr), ldns_rr_owner(first)) == 0) {
                ldns_rr_list_push_rr(set, rr);
                done[j] = true;
            }
        }
        iter_take_rrset(req, set, rank, false);
        ldns_rr_list_free(set); /* shallow: the records belong to list */
    }
    free(done);
}

/* --- finishing ---------------------------------------------------------------------------- */

static void iter_child_done(void *ctx, struct iter_request *child);

static void iter_finish(struct iter_request *req, uint16_t rcode, const char *failure)
{
    if (req->finished)
        return;
    req->finished = true;
    req->rcode = rcode;
    req->failure = failure;
    if (req->send_handle) {
        req->env->transport.cancel(req->env->transport.io, req->send_handle);
        req->send_handle = NULL;
    }
    /* done runs at the end of iter_step, as its last action, so no caller touches a request
     * that its owner may have freed */
}

static void iter_fail(struct iter_request *req, const char *why)
{
    iter_finish(req, WIRE_RCODE_SERVFAIL, why);
}

/* --- the cache ---------------------------------------------------------------------------- */

enum iter_cache_outcome { ITER_CACHE_MISS, ITER_CACHE_DONE, ITER_CACHE_FOLLOW };

static void iter_set_target(struct iter_request *req, const uint8_t *name, size_t len)
{
    wire_name_lower(req->target, name, len);
    req->target_len = len;
    req->target_labels = wire_name_labels(req->target);
    req->have_dp = false;
}

/* The SOA for a negative answer's authority section. */
static void iter_set_soa(struct iter_request *req, const uint8_t *owner, size_t owner_len,
                         uint32_t ttl, const uint8_t *rdata, size_t rdlen)
{
    if (owner_len > WIRE_NAME_MAX || rdlen > 65535)
        return;
    uint8_t *data = malloc(2 + rdlen);
    if (!data)
        return;
    wire_write_u16(data, (uint16_t)rdlen);
    memcpy(data + 2, rdata, rdlen);
    free(req->soa.data);
    req->soa.data = NULL;
    req->has_soa =
        iter_rrset_set(&req->soa, owner, owner_len, WIRE_TYPE_SOA, ttl, 1, data, 2 + rdlen) == 0;
    free(data);
}

/* A small hash of a name (FNV-1a), to spread prefetch points; not security relevant. */
static uint32_t iter_name_spread(const uint8_t *name, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ name[i]) * 16777619u;
    return h;
}

/* Use a cache result? Fresh always; stale when building a stale answer (its TTL becomes the
 * stale TTL, RFC 8767 §4). Notes a fresh entry near its end for prefetch: within the last
 * prefetch-threshold percent of its TTL, the threshold spread per name between half and all of
 * it so entries cached together are not refreshed together. */
static bool iter_cache_usable(struct iter_request *req, int status, struct cache_result *r)
{
    const struct resolver_stale_config *stale = &req->env->cfg->stale;
    if (status == CACHE_FRESH) {
        uint32_t spread = iter_name_spread(req->target, req->target_len) % 51u;
        uint64_t threshold = (uint64_t)r->original_ttl * stale->prefetch_percent * (50u + spread);
        if (stale->prefetch && r->original_ttl > 0 && (uint64_t)r->ttl * 10000u < threshold)
            req->prefetch_due = true;
        return true;
    }
    if (status != CACHE_STALE || !req->accept_stale)
        return false;
    req->from_stale = true;
    r->ttl = stale->stale_ttl;
    return true;
}

/* RFC 1034 §5.3.3 step 1: answer from the cache when it can, following cached CNAMEs. */
static enum iter_cache_outcome iter_from_cache(struct iter_request *req)
{
    struct cache_result r;
    uint64_t now = iter_now(req);
    if (req->refresh)
        return ITER_CACHE_MISS;
    int status = cache_lookup(req->env->cache, req->target, req->target_len, req->qtype,
                              WIRE_CLASS_IN, now, &r, iter_cache_buf, sizeof iter_cache_buf);
    if (iter_cache_usable(req, status, &r)) {
        if (r.kind == CACHE_KIND_RRSET) {
            iter_answer_add(req, req->target, req->target_len, req->qtype, r.ttl, r.count, r.rdata,
                            r.rdata_len);
            iter_finish(req, WIRE_RCODE_NOERROR, NULL);
            return ITER_CACHE_DONE;
        }
        iter_set_soa(req, r.soa_owner, r.soa_owner_len, r.ttl, r.soa_rdata, r.soa_rdlen);
        if (status == CACHE_STALE && r.kind == CACHE_KIND_NXDOMAIN)
            req->stale_nxdomain = true;
        iter_finish(req, r.kind == CACHE_KIND_NXDOMAIN ? WIRE_RCODE_NXDOMAIN : WIRE_RCODE_NOERROR,
                    NULL);
        return ITER_CACHE_DONE;
    }
    if (req->qtype == WIRE_TYPE_CNAME)
        return ITER_CACHE_MISS;
    status = cache_lookup(req->env->cache, req->target, req->target_len, WIRE_TYPE_CNAME,
                          WIRE_CLASS_IN, now, &r, iter_cache_buf, sizeof iter_cache_buf);
    if (status <= 0 || r.kind != CACHE_KIND_RRSET || r.count < 1 ||
        !iter_cache_usable(req, status, &r))
        return ITER_CACHE_MISS;
    if (++req->budget->chain > req->env->cfg->resolution.max_cname_chain) {
        iter_fail(req, "CNAME chain limit");
        return ITER_CACHE_DONE;
    }
    iter_answer_add(req, req->target, req->target_len, WIRE_TYPE_CNAME, r.ttl, r.count, r.rdata,
                    r.rdata_len);
    size_t target_len = wire_name_length(r.rdata + 2, wire_read_u16(r.rdata));
    if (target_len == 0) {
        iter_fail(req, "bad CNAME in cache");
        return ITER_CACHE_DONE;
    }
    iter_set_target(req, r.rdata + 2, target_len);
    return ITER_CACHE_FOLLOW;
}

/* --- delegations -------------------------------------------------------------------------- */

static bool iter_server_allowed(const struct iter_request *req, const struct addr *a)
{
    return req->env->cfg->resolution.allow_private_upstreams ||
           !acl_address_is_private((const struct sockaddr *)&a->ss);
}

static void iter_dp_add_server(struct iter_request *req, const struct addr *a)
{
    struct iter_delegation *dp = &req->dp;
    if (dp->server_count >= ITER_MAX_SERVERS || !iter_server_allowed(req, a))
        return;
    for (size_t i = 0; i < dp->server_count; i++)
        if (dp->servers[i].len == a->len && memcmp(&dp->servers[i].ss, &a->ss, a->len) == 0)
            return;
    dp->servers[dp->server_count] = *a;
    dp->tried[dp->server_count] = false;
    dp->server_count++;
}

/* Addresses of the delegation's NS names that the cache holds (glue included). */
static void iter_dp_fill_servers(struct iter_request *req)
{
    static const uint16_t types[] = {WIRE_TYPE_A, WIRE_TYPE_AAAA};
    uint64_t now = iter_now(req);
    for (unsigned n = 0; n < req->dp.ns_count; n++) {
        for (size_t t = 0; t < 2; t++) {
            struct cache_result r;
            if (cache_lookup(req->env->cache, req->dp.ns[n], req->dp.ns_len[n], types[t],
                             WIRE_CLASS_IN, now, &r, iter_cache_buf,
                             sizeof iter_cache_buf) != CACHE_FRESH ||
                r.kind != CACHE_KIND_RRSET)
                continue;
            const uint8_t *at = r.rdata;
            for (uint16_t i = 0; i < r.count; i++) {
                uint16_t rdlen = wire_read_u16(at);
                struct addr a;
                memset(&a, 0, sizeof a);
                if (types[t] == WIRE_TYPE_A && rdlen == 4) {
                    struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
                    sin->sin_family = AF_INET;
                    sin->sin_port = htons(req->env->cfg->resolution.upstream_port);
                    memcpy(&sin->sin_addr, at + 2, 4);
                    a.len = sizeof *sin;
                    iter_dp_add_server(req, &a);
                } else if (types[t] == WIRE_TYPE_AAAA && rdlen == 16) {
                    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
                    sin6->sin6_family = AF_INET6;
                    sin6->sin6_port = htons(req->env->cfg->resolution.upstream_port);
                    memcpy(&sin6->sin6_addr, at + 2, 16);
                    a.len = sizeof *sin6;
                    iter_dp_add_server(req, &a);
                }
                at += 2 + (size_t)rdlen;
            }
        }
    }
}

static void iter_dp_reset(struct iter_request *req, const uint8_t *zone, size_t zone_len)
{
    memset(&req->dp, 0, sizeof req->dp);
    memcpy(req->dp.zone, zone, zone_len);
    req->dp.zone_len = zone_len;
    req->dp.zone_labels = wire_name_labels(zone);
    req->have_dp = true;
}

/* NS names of an NS RRset in cache layout. */
static void iter_dp_set_ns(struct iter_request *req, const uint8_t *data, uint16_t count)
{
    const uint8_t *at = data;
    for (uint16_t i = 0; i < count && req->dp.ns_count < ITER_MAX_NS; i++) {
        uint16_t rdlen = wire_read_u16(at);
        size_t len = wire_name_length(at + 2, rdlen);
        if (len > 0) {
            memcpy(req->dp.ns[req->dp.ns_count], at + 2, len);
            req->dp.ns_len[req->dp.ns_count++] = len;
        }
        at += 2 + (size_t)rdlen;
    }
}

/* The closest known zone cut: a configured forward/stub zone, the deepest cached NS set at or
 * above the target, or the root hints. */
static void iter_find_delegation(struct iter_request *req)
{
    const struct resolver_zone_config *configured =
        resolver_config_find_zone(req->env->cfg, req->target, req->target_len);
    uint64_t now = iter_now(req);
    size_t offset = 0;
    for (;;) {
        const uint8_t *name = req->target + offset;
        size_t len = req->target_len - offset;
        if (configured && len < configured->wire_len)
            break; /* the configured zone is deeper than anything cached */
        if (configured && configured->kind == RESOLVER_ZONE_FORWARD)
            break; /* forwarding covers everything below the zone */
        struct cache_result r;
        if (cache_lookup(req->env->cache, name, len, WIRE_TYPE_NS, WIRE_CLASS_IN, now, &r,
                         iter_cache_buf, sizeof iter_cache_buf) == CACHE_FRESH &&
            r.kind == CACHE_KIND_RRSET) {
            iter_dp_reset(req, name, len);
            iter_dp_set_ns(req, r.rdata, r.count);
            iter_dp_fill_servers(req);
            if (req->dp.server_count > 0 || req->dp.ns_count > 0)
                return;
        }
        if (name[0] == 0)
            break;
        offset += (size_t)name[0] + 1;
    }
    if (configured) {
        iter_dp_reset(req, configured->wire, configured->wire_len);
        req->dp.forward = configured->kind == RESOLVER_ZONE_FORWARD;
        for (size_t i = 0; i < configured->to_count; i++)
            if (req->dp.server_count < ITER_MAX_SERVERS)
                req->dp.servers[req->dp.server_count++] = configured->to[i];
        return;
    }
    static const uint8_t root[1] = {0};
    iter_dp_reset(req, root, 1);
    for (size_t i = 0; i < req->env->hints->count; i++)
        iter_dp_add_server(req, &req->env->hints->addrs[i]);
}

/* --- sending ------------------------------------------------------------------------------ */

static void iter_on_response(void *ctx, int status, const uint8_t *resp, size_t resp_len,
                             uint32_t rtt_ms);

/* Ask the next server of the delegation; false when none is left. */
static bool iter_send_next(struct iter_request *req)
{
    struct iter_delegation *dp = &req->dp;
    struct addr candidates[ITER_MAX_SERVERS];
    size_t index[ITER_MAX_SERVERS];
    size_t n = 0;
    if (dp->tries >= ITER_MAX_SERVER_TRIES)
        return false;
    for (size_t i = 0; i < dp->server_count; i++)
        if (!dp->tried[i]) {
            candidates[n] = dp->servers[i];
            index[n++] = i;
        }
    if (n == 0) {
        /* every server was asked: those that only timed out are asked again (a lost packet or
         * one slow answer must not end the resolution), with their backed-off RTO, within
         * ITER_MAX_SERVER_TRIES; a server held down after repeated failures fails fast */
        for (size_t i = 0; i < dp->server_count; i++)
            if (dp->timed_out[i]) {
                dp->timed_out[i] = false;
                candidates[n] = dp->servers[i];
                index[n++] = i;
            }
    }
    if (n == 0)
        return false;
    const struct resolver_resolution_config *res = &req->env->cfg->resolution;
    if (++req->budget->outbound > res->max_outbound_queries) {
        iter_fail(req, "outbound query limit");
        return true;
    }
    uint64_t now = iter_now(req);
    int pick = infra_select(req->env->infra, candidates, n, now, NULL);
    if (pick == BALLAST_ELIMIT) {
        /* every server is held down and none is due a probe: the retry budget is spent */
        req->budget->outbound--;
        iter_fail(req, "all servers held down");
        return true;
    }
    if (pick < 0)
        pick = 0;
    req->sent_index = index[pick];
    dp->tried[req->sent_index] = true;
    dp->tries++;
    const struct addr *server = &dp->servers[req->sent_index];

    unsigned labels = req->target_labels;
    if (req->qmin && !dp->forward) {
        labels = iter_qmin_next(req->target, req->target_len, req->qmin_labels, dp->zone_labels,
                                req->sent_name, &req->sent_name_len);
    }
    if (labels >= req->target_labels || !req->qmin || dp->forward) {
        memcpy(req->sent_name, req->target, req->target_len);
        req->sent_name_len = req->target_len;
        req->sent_type = req->qtype;
    } else {
        req->sent_type = WIRE_TYPE_A; /* RFC 9156 §2.1: QTYPE A hides the real one */
    }
    req->sent_edns = !infra_noedns(req->env->infra, server, now);
    req->sent_rto = infra_rto(req->env->infra, server, now);
    if (req->sent_rto > res->upstream_timeout_ms)
        req->sent_rto = res->upstream_timeout_ms;
    struct iter_send q = {
        .server = server,
        .qname = req->sent_name,
        .qname_len = req->sent_name_len,
        .qtype = req->sent_type,
        .rd = dp->forward,
        .edns = req->sent_edns,
        .timeout_ms = req->sent_rto,
    };
    int rc = req->env->transport.send(req->env->transport.io, &q, iter_on_response, req,
                                      &req->send_handle);
    if (rc != 0) {
        req->send_handle = NULL;
        return iter_send_next(req); /* that server cannot be asked; try another */
    }
    return true;
}

/* --- NS name resolution ------------------------------------------------------------------- */

/* Start resolving the address of the next NS name without one; false when none is left. */
static bool iter_resolve_next_ns(struct iter_request *req)
{
    const struct resolver_resolution_config *res = &req->env->cfg->resolution;
    while (req->dp.ns_next < req->dp.ns_count) {
        unsigned n = req->dp.ns_next++;
        /* An NS name below the zone it serves has no address without glue: skip it. */
        if (wire_name_is_subdomain(req->dp.ns[n], req->dp.ns_len[n], req->dp.zone,
                                   req->dp.zone_len) &&
            req->dp.zone_len > 1)
            continue;
        if (req->depth + 1 > ITER_MAX_DEPTH)
            return false;
        if (++req->budget->ns_names > res->max_ns_names)
            return false; /* NXNSAttack limit (CVE-2020-12662) */
        struct iter_request *child = calloc(1, sizeof *child);
        if (!child)
            return false;
        child->env = req->env;
        child->parent = req;
        child->depth = req->depth + 1;
        child->budget = req->budget;
        child->done = iter_child_done;
        child->done_ctx = req;
        child->qtype = WIRE_TYPE_A;
        memcpy(child->qname, req->dp.ns[n], req->dp.ns_len[n]);
        child->qname_len = req->dp.ns_len[n];
        iter_set_target(child, child->qname, child->qname_len);
        child->qmin = req->env->cfg->resolution.qname_minimisation;
        req->child = child;
        req->child_finished = false;
        iter_step(child);
        return true;
    }
    return false;
}

static void iter_child_collect(struct iter_request *req)
{
    iter_request_free(req->child);
    req->child = NULL;
    req->child_finished = false;
    iter_dp_fill_servers(req);
}

static void iter_child_done(void *ctx, struct iter_request *child)
{
    struct iter_request *req = ctx;
    req->child_finished = true;
    if (req->in_step)
        return; /* iter_step picks it up */
    iter_child_collect(req);
    iter_step(req);
}

/* --- the state machine -------------------------------------------------------------------- */

static void iter_step(struct iter_request *req)
{
    req->in_step = true;
    while (!req->finished) {
        if (req->child) {
            if (!req->child_finished)
                break; /* waiting for an NS address */
            iter_child_collect(req);
        }
        if (req->send_handle)
            break; /* waiting for an upstream answer */
        if (!req->have_dp) {
            enum iter_cache_outcome outcome = iter_from_cache(req);
            if (outcome == ITER_CACHE_DONE)
                break;
            if (outcome == ITER_CACHE_FOLLOW)
                continue;
            iter_find_delegation(req);
            req->qmin = req->env->cfg->resolution.qname_minimisation && !req->dp.forward;
            req->qmin_labels = req->dp.zone_labels;
        }
        if (iter_send_next(req))
            continue;
        if (iter_resolve_next_ns(req))
            continue;
        iter_fail(req, req->dp.server_count ? "no server answered" : "no address for any NS");
    }
    req->in_step = false;
    if (req->finished && !req->done_called) {
        req->done_called = true;
        req->done(req->done_ctx, req); /* last action: req may be freed here */
    }
}

/* A referral: cache it and move down (RFC 1034 §5.3.3 step 4b). */
static void iter_follow_referral(struct iter_request *req, struct scrub_result *r)
{
    if (req->dp.forward) {
        iter_fail(req, "referral from a forwarder");
        return;
    }
    if (++req->budget->referrals > req->env->cfg->resolution.max_referrals) {
        iter_fail(req, "referral limit");
        return;
    }
    iter_take_rrset(req, r->referral_ns, CACHE_RANK_AUTHORITY_NONAUTH, false);
    iter_take_mixed(req, r->glue, CACHE_RANK_ADDITIONAL);
    iter_dp_reset(req, ldns_rdf_data(r->referral_zone), ldns_rdf_size(r->referral_zone));
    wire_name_lower(req->dp.zone, req->dp.zone, req->dp.zone_len);
    for (size_t i = 0; i < ldns_rr_list_rr_count(r->referral_ns); i++) {
        const ldns_rdf *ns = ldns_rr_rdf(ldns_rr_list_rr(r->referral_ns, i), 0);
        if (req->dp.ns_count < ITER_MAX_NS && ldns_rdf_size(ns) <= WIRE_NAME_MAX) {
            wire_name_lower(req->dp.ns[req->dp.ns_count], ldns_rdf_data(ns), ldns_rdf_size(ns));
            req->dp.ns_len[req->dp.ns_count++] = ldns_rdf_size(ns);
        }
    }
    iter_dp_fill_servers(req);
    if (req->qmin_labels < req->dp.zone_labels)
        req->qmin_labels = req->dp.zone_labels;
}

static void iter_take_negative(struct iter_request *req, struct scrub_result *r, bool nxdomain)
{
    if (!r->soa)
        return; /* RFC 2308 §5: not cacheable without an SOA */
    ldns_rr2canonical(r->soa);
    ldns_buffer *buf = ldns_buffer_new(256);
    if (!buf)
        return;
    if (ldns_rr_rdata2buffer_wire(buf, r->soa) == LDNS_STATUS_OK) {
        const ldns_rdf *owner = ldns_rr_owner(r->soa);
        enum cache_rank rank = r->aa ? CACHE_RANK_ANSWER_AUTH : CACHE_RANK_ANSWER_NONAUTH;
        cache_insert_negative(req->env->cache, req->target, req->target_len,
                              nxdomain ? 0 : req->qtype, WIRE_CLASS_IN, ldns_rdf_data(owner),
                              ldns_rdf_size(owner), ldns_buffer_begin(buf),
                              ldns_buffer_position(buf), ldns_rr_ttl(r->soa), rank, iter_now(req));
        /* RFC 2308 §5: the SOA goes out with TTL min(SOA TTL, MINIMUM), capped as cached */
        size_t rdlen = ldns_buffer_position(buf);
        uint32_t minimum = rdlen >= 4 ? wire_read_u32(ldns_buffer_begin(buf) + rdlen - 4) : 0;
        uint32_t ttl = cache_effective_negative_ttl(req->env->cache, ldns_rr_ttl(r->soa), minimum);
        iter_set_soa(req, ldns_rdf_data(owner), ldns_rdf_size(owner), ttl, ldns_buffer_begin(buf),
                     rdlen);
    }
    ldns_buffer_free(buf);
}

/* The suspicion window: a critical name with data in the cache (fresh or stale) answered empty.
 * While the window lasts the empty answer is neither cached nor given: the old data is served
 * stale (docs/serve-stale.md). */
static bool iter_suspect_empty(struct iter_request *req, bool nxdomain)
{
    const struct resolver_config *cfg = req->env->cfg;
    if (req->env->stale == NULL || !cfg->stale.enable || cfg->stale.suspicion_window_ms == 0 ||
        !resolver_config_is_critical(cfg, req->target, req->target_len))
        return false;
    /* NODATA takes away the type asked; NXDOMAIN the whole name, so the addresses it had count
     * too (clients ask A and AAAA together, and a cached NXDOMAIN would hide both) */
    const uint16_t types[3] = {req->qtype, WIRE_TYPE_A, WIRE_TYPE_AAAA};
    bool had_data = false;
    for (unsigned i = 0; i < (nxdomain ? 3u : 1u) && !had_data; i++) {
        struct cache_result r;
        int status = cache_lookup(req->env->cache, req->target, req->target_len, types[i],
                                  WIRE_CLASS_IN, iter_now(req), &r, NULL, 0);
        had_data = status > 0 && r.kind == CACHE_KIND_RRSET;
    }
    if (!had_data)
        return false;
    return stale_suspect_empty(req->env->stale, req->target, req->target_len, req->qtype,
                               iter_now(req), cfg->stale.suspicion_window_ms);
}

/* An answer to the full question: cache and record it (steps 4a and 4c). */
static void iter_take_answer(struct iter_request *req, struct scrub_result *r)
{
    enum cache_rank rank = r->aa ? CACHE_RANK_ANSWER_AUTH : CACHE_RANK_ANSWER_NONAUTH;
    for (size_t i = 0; i < r->answer_count; i++)
        iter_take_rrset(req, r->answer[i], rank, true);
    switch (r->status) {
    case SCRUB_ANSWER:
        iter_finish(req, WIRE_RCODE_NOERROR, NULL);
        break;
    case SCRUB_NXDOMAIN:
    case SCRUB_NODATA:
        if (r->target)
            iter_set_target(req, ldns_rdf_data(r->target), ldns_rdf_size(r->target));
        if (iter_suspect_empty(req, r->status == SCRUB_NXDOMAIN)) {
            req->suspect = true;
            iter_fail(req, "critical name answered empty");
            break;
        }
        iter_take_negative(req, r, r->status == SCRUB_NXDOMAIN);
        iter_finish(req, r->status == SCRUB_NXDOMAIN ? WIRE_RCODE_NXDOMAIN : WIRE_RCODE_NOERROR,
                    NULL);
        break;
    default: /* SCRUB_CNAME: chase the target from the top (step 4c) */
        req->budget->chain += r->chain_length;
        if (req->budget->chain > req->env->cfg->resolution.max_cname_chain) {
            iter_fail(req, "CNAME chain limit");
            return;
        }
        iter_set_target(req, ldns_rdf_data(r->target), ldns_rdf_size(r->target));
        break;
    }
}

static void iter_handle_scrubbed(struct iter_request *req, struct scrub_result *r)
{
    struct iter_delegation *dp = &req->dp;
    const struct addr *server = &dp->servers[req->sent_index];
    uint64_t now = iter_now(req);
    bool minimised = req->sent_name_len != req->target_len || req->sent_type != req->qtype;
    switch (r->status) {
    case SCRUB_REFERRAL:
        iter_follow_referral(req, r);
        break;
    case SCRUB_FORMERR:
        if (req->sent_edns) { /* RFC 6891 §7: retry this server without EDNS */
            infra_set_noedns(req->env->infra, server, now);
            dp->tried[req->sent_index] = false;
        } else {
            infra_report_failure(req->env->infra, server, now);
        }
        break;
    case SCRUB_ANSWER:
    case SCRUB_NODATA:
    case SCRUB_CNAME:
    case SCRUB_NXDOMAIN:
        if (minimised) {
            /* RFC 9156 §2.3: no cut at this name; continue downward. A CNAME or NXDOMAIN for
             * a minimised name is not trusted in relaxed mode: ask the full name instead. */
            if (r->status == SCRUB_ANSWER || r->status == SCRUB_NODATA)
                req->qmin_labels = wire_name_labels(req->sent_name);
            else
                req->qmin = false;
            memset(dp->tried, 0, sizeof dp->tried);
            break;
        }
        iter_take_answer(req, r);
        break;
    case SCRUB_REJECTED:
    case SCRUB_LAME:
    case SCRUB_SERVFAIL:
    case SCRUB_TRUNCATED:
    default:
        if (minimised && r->status != SCRUB_REJECTED) {
            req->qmin = false; /* relaxed mode: a server that fails minimised queries */
            dp->tried[req->sent_index] = false;
        }
        infra_report_failure(req->env->infra, server, now);
        break;
    }
}

static void iter_on_response(void *ctx, int status, const uint8_t *resp, size_t resp_len,
                             uint32_t rtt_ms)
{
    struct iter_request *req = ctx;
    req->send_handle = NULL;
    const struct addr *server = &req->dp.servers[req->sent_index];
    uint64_t now = iter_now(req);
    if (status != 0) {
        if (status == BALLAST_ETIMEOUT) {
            req->timeouts++;
            req->dp.timed_out[req->sent_index] = true;
            infra_report_timeout(req->env->infra, server, req->sent_rto, now);
        } else if (status != BALLAST_ECANCELED) {
            req->net_errors++;
            infra_report_failure(req->env->infra, server, now);
        }
        if (status == BALLAST_ECANCELED)
            iter_fail(req, "canceled");
        iter_step(req);
        return;
    }
    infra_report_rtt(req->env->infra, server, rtt_ms, now);
    struct scrub_query sent = {
        .id = resp_len >= 2 ? wire_read_u16(resp) : 0,
        .qname = req->sent_name,
        .qname_len = req->sent_name_len,
        .qtype = req->sent_type,
        .qclass = WIRE_CLASS_IN,
        .zone = req->dp.zone,
        .zone_len = req->dp.zone_len,
        .server = server,
        .forwarder = req->dp.forward,
    };
    struct scrub_result result;
    if (scrub_response(resp, resp_len, &sent, (const struct sockaddr *)&server->ss, &result) == 0)
        iter_handle_scrubbed(req, &result);
    else
        infra_report_failure(req->env->infra, server, now);
    scrub_result_free(&result);
    iter_step(req);
}

/* --- public ------------------------------------------------------------------------------- */

static int iter_request_new(struct iter_env *env, const uint8_t *qname, size_t qname_len,
                            uint16_t qtype, iter_done_fn done, void *ctx, struct iter_request **out)
{
    if (qname_len == 0 || qname_len > WIRE_NAME_MAX || !done)
        return BALLAST_EINVAL;
    struct iter_request *req = calloc(1, sizeof *req);
    if (!req)
        return BALLAST_ENOMEM;
    req->env = env;
    req->budget = &req->own_budget;
    req->done = done;
    req->done_ctx = ctx;
    req->qtype = qtype;
    memcpy(req->qname, qname, qname_len);
    req->qname_len = qname_len;
    iter_set_target(req, qname, qname_len);
    *out = req;
    return BALLAST_OK;
}

int iter_request_start(struct iter_env *env, const uint8_t *qname, size_t qname_len, uint16_t qtype,
                       iter_done_fn done, void *ctx, struct iter_request **out)
{
    int rc = iter_request_new(env, qname, qname_len, qtype, done, ctx, out);
    if (rc == 0)
        iter_step(*out);
    return rc;
}

int iter_request_create(struct iter_env *env, const uint8_t *qname, size_t qname_len,
                        uint16_t qtype, iter_done_fn done, void *ctx, struct iter_request **out)
{
    return iter_request_new(env, qname, qname_len, qtype, done, ctx, out);
}

bool iter_request_try_cache(struct iter_request *req)
{
    while (!req->finished) {
        enum iter_cache_outcome outcome = iter_from_cache(req);
        if (outcome == ITER_CACHE_MISS)
            return false;
    }
    iter_step(req); /* finished: only delivers done */
    return true;
}

void iter_request_set_refresh(struct iter_request *req)
{
    req->refresh = true;
}

void iter_request_run(struct iter_request *req)
{
    iter_step(req);
}

/* Nothing is called back: the result is read from *out at once. */
static void iter_stale_done(void *ctx, struct iter_request *req)
{
}

int iter_request_stale(struct iter_env *env, const uint8_t *qname, size_t qname_len, uint16_t qtype,
                       struct iter_request **out)
{
    struct iter_request *req = NULL;
    int rc = iter_request_new(env, qname, qname_len, qtype, iter_stale_done, NULL, &req);
    if (rc != 0)
        return rc;
    req->accept_stale = true;
    while (!req->finished) {
        if (iter_from_cache(req) == ITER_CACHE_MISS) {
            iter_request_free(req);
            return BALLAST_ENOTFOUND;
        }
    }
    if (req->rcode == WIRE_RCODE_SERVFAIL) {
        iter_request_free(req);
        return BALLAST_ENOTFOUND;
    }
    req->done_called = true;
    *out = req;
    return BALLAST_OK;
}

bool iter_request_from_stale(const struct iter_request *req)
{
    return req->from_stale;
}

bool iter_request_prefetch_due(const struct iter_request *req)
{
    return req->prefetch_due;
}

bool iter_request_suspect(const struct iter_request *req)
{
    return req->suspect;
}

int iter_request_ede(const struct iter_request *req)
{
    if (req->from_stale)
        return req->stale_nxdomain ? STALE_EDE_STALE_NXDOMAIN : STALE_EDE_STALE_ANSWER;
    if (req->rcode != WIRE_RCODE_SERVFAIL || req->suspect)
        return STALE_EDE_NONE;
    if (req->net_errors > 0 && req->timeouts == 0)
        return STALE_EDE_NETWORK_ERROR;
    if (req->failure != NULL && (strcmp(req->failure, "no server answered") == 0 ||
                                 strcmp(req->failure, "all servers held down") == 0 ||
                                 strcmp(req->failure, "no address for any NS") == 0))
        return STALE_EDE_NO_REACHABLE_AUTHORITY;
    return STALE_EDE_NONE;
}

int iter_request_cache_only(struct iter_env *env, const uint8_t *qname, size_t qname_len,
                            uint16_t qtype, iter_done_fn done, void *ctx, struct iter_request **out)
{
    int rc = iter_request_new(env, qname, qname_len, qtype, done, ctx, out);
    if (rc != 0)
        return rc;
    struct iter_request *req = *out;
    while (!req->finished) {
        enum iter_cache_outcome outcome = iter_from_cache(req);
        if (outcome == ITER_CACHE_MISS) {
            /* RFC 1034 §4.3.1: without recursion, what we have (maybe a partial chain) */
            iter_finish(req, WIRE_RCODE_NOERROR, NULL);
        }
    }
    iter_step(req); /* finished: only delivers done */
    return BALLAST_OK;
}

void iter_request_free(struct iter_request *req)
{
    if (!req)
        return;
    if (req->send_handle)
        req->env->transport.cancel(req->env->transport.io, req->send_handle);
    if (req->child)
        iter_request_free(req->child);
    for (unsigned i = 0; i < req->answer_count; i++)
        free(req->answer[i].data);
    free(req->soa.data);
    free(req);
}

uint16_t iter_request_rcode(const struct iter_request *req)
{
    return req->rcode;
}

const struct iter_budget *iter_request_budget(const struct iter_request *req)
{
    return req->budget;
}

const char *iter_request_failure(const struct iter_request *req)
{
    return req->failure;
}

/* --- the client's response ---------------------------------------------------------------- */

static int iter_write_rrset(struct wire_writer *w, const struct iter_rrset *set,
                            const struct wire_query *q, uint16_t *count)
{
    const uint8_t *at = set->data;
    for (uint16_t i = 0; i < set->count; i++) {
        struct wire_writer_mark mark = wire_writer_mark(w);
        uint16_t rdlen = wire_read_u16(at);
        int rc;
        if (wire_name_equal_nocase(set->owner, set->owner_len, q->qname, q->qname_len))
            rc = wire_writer_u16(w, 0xC000 | WIRE_HEADER_LEN); /* the client's spelling */
        else
            rc = wire_writer_name(w, set->owner, set->owner_len, true);
        if (rc == 0)
            rc = wire_writer_u16(w, set->type);
        if (rc == 0)
            rc = wire_writer_u16(w, WIRE_CLASS_IN);
        if (rc == 0)
            rc = wire_writer_u32(w, set->ttl);
        if (rc == 0)
            rc = wire_writer_rdata(w, set->type, at + 2, rdlen);
        if (rc != 0) {
            wire_writer_rollback(w, mark);
            return rc;
        }
        (*count)++;
        at += 2 + (size_t)rdlen;
    }
    return BALLAST_OK;
}

/* The OPT record (RFC 6891 §6.1.2) at p, with an Extended DNS Error option (RFC 8914 §2) when
 * ede is not STALE_EDE_NONE. Returns its length. */
static size_t iter_write_opt(uint8_t *p, const struct wire_query *q, uint16_t edns_size, int ede)
{
    p[0] = 0;
    wire_write_u16(p + 1, WIRE_TYPE_OPT);
    wire_write_u16(p + 3, edns_size);
    p[5] = 0;
    p[6] = 0;
    wire_write_u16(p + 7, q->edns_flags & WIRE_EDNS_DO);
    if (ede == STALE_EDE_NONE) {
        wire_write_u16(p + 9, 0);
        return ITER_OPT_LEN;
    }
    wire_write_u16(p + 9, ITER_EDE_LEN);
    wire_write_u16(p + 11, ITER_EDE_OPTION);
    wire_write_u16(p + 13, 2);
    wire_write_u16(p + 15, (uint16_t)ede);
    return ITER_OPT_LEN + ITER_EDE_LEN;
}

size_t iter_write_servfail(const uint8_t *query, const struct wire_query *q, uint16_t edns_size,
                           int ede, uint8_t *resp, size_t limit)
{
    size_t opt = q->has_edns ? ITER_OPT_LEN + (ede != STALE_EDE_NONE ? ITER_EDE_LEN : 0) : 0;
    if (q->question_end < WIRE_HEADER_LEN || limit < q->question_end + opt)
        return 0;
    memcpy(resp + WIRE_HEADER_LEN, query + WIRE_HEADER_LEN, q->question_end - WIRE_HEADER_LEN);
    size_t len = q->question_end;
    if (q->has_edns)
        len += iter_write_opt(resp + len, q, edns_size, ede);
    uint16_t flags = WIRE_FLAG_QR | WIRE_FLAG_RA | (q->flags & (WIRE_FLAG_RD | WIRE_FLAG_CD)) |
                     WIRE_RCODE_SERVFAIL;
    wire_write_u16(resp, q->id);
    wire_write_u16(resp + 2, flags);
    wire_write_u16(resp + 4, 1);
    wire_write_u16(resp + 6, 0);
    wire_write_u16(resp + 8, 0);
    wire_write_u16(resp + 10, q->has_edns ? 1 : 0);
    return len;
}

size_t iter_write_response(const struct iter_request *req, const uint8_t *query,
                           const struct wire_query *q, uint16_t edns_size, uint8_t *resp,
                           size_t limit)
{
    struct wire_writer w;
    int ede = iter_request_ede(req);
    size_t opt = q->has_edns ? ITER_OPT_LEN + (ede != STALE_EDE_NONE ? ITER_EDE_LEN : 0) : 0;
    if (limit < q->question_end + opt)
        return 0;
    wire_writer_init(&w, resp, limit - opt);
    memcpy(resp + WIRE_HEADER_LEN, query + WIRE_HEADER_LEN, q->question_end - WIRE_HEADER_LEN);
    w.len = q->question_end;
    wire_writer_remember_name(&w, WIRE_HEADER_LEN);
    uint16_t counts[3] = {0, 0, 0};
    bool truncated = false;
    bool servfail = req->rcode == WIRE_RCODE_SERVFAIL;
    for (unsigned i = 0; i < req->answer_count && !truncated && !servfail; i++)
        truncated = iter_write_rrset(&w, &req->answer[i], q, &counts[0]) != 0;
    if (!truncated && !servfail && req->has_soa)
        truncated = iter_write_rrset(&w, &req->soa, q, &counts[1]) != 0;
    if (q->has_edns) {
        w.len += iter_write_opt(resp + w.len, q, edns_size, ede);
        counts[2]++;
    }
    uint16_t flags = WIRE_FLAG_QR | WIRE_FLAG_RA | (q->flags & (WIRE_FLAG_RD | WIRE_FLAG_CD)) |
                     (req->rcode & 0xF);
    if (truncated)
        flags |= WIRE_FLAG_TC;
    wire_write_u16(resp, q->id);
    wire_write_u16(resp + 2, flags);
    wire_write_u16(resp + 4, 1);
    wire_write_u16(resp + 6, counts[0]);
    wire_write_u16(resp + 8, counts[1]);
    wire_write_u16(resp + 10, counts[2]);
    return w.len;
}
