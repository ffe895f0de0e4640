/* libFuzzer harness: any bytes as an upstream response to scrub_response(), the resolver's
 * response parser and bailiwick scrubber, then scrub_result_free(). The input's ID is taken as
 * the ID sent, so mutations get past the ID check; the ID also picks one of a few fixed queries
 * (question, zone asked, forwarder or not). Checks that what survives scrubbing is inside the
 * bailiwick and that each answer element is one RRset. Build: docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "errors.h"
#include "fuzz_util.h"
#include "scrub.h"
#include "wire.h"

/* The queries "sent": qname, qtype, the zone whose servers were asked, forwarder. */
static const struct {
    const char *qname;
    uint16_t qtype;
    const char *zone;
    bool forwarder;
} fuzz_queries[] = {
    {"www.example.test", WIRE_TYPE_A, "example.test", false},
    {"www.example.test", WIRE_TYPE_A, "test", false},
    {"www.example.test", WIRE_TYPE_A, ".", false},
    {"example.test", WIRE_TYPE_NS, "example.test", false},
    {"alias.example.test", WIRE_TYPE_AAAA, "example.test", false},
    {"mail.example.test", WIRE_TYPE_MX, "example.test", false},
    {"www.example.test", WIRE_TYPE_A, ".", true},
    {"x.dname.example.test", WIRE_TYPE_TXT, "example.test", false},
};
#define FUZZ_QUERY_COUNT (sizeof fuzz_queries / sizeof fuzz_queries[0])

struct fuzz_query {
    uint8_t qname[WIRE_NAME_MAX];
    uint8_t zone[WIRE_NAME_MAX];
    struct scrub_query sent;
};

static struct fuzz_query fuzz_sent[FUZZ_QUERY_COUNT];
static struct addr fuzz_server;

static void fuzz_init(void)
{
    if (addr_parse("127.0.0.1@5301", 53, &fuzz_server) != 0)
        abort();
    for (size_t i = 0; i < FUZZ_QUERY_COUNT; i++) {
        struct fuzz_query *f = &fuzz_sent[i];
        if (wire_name_from_text(fuzz_queries[i].qname, f->qname, &f->sent.qname_len) != 0 ||
            wire_name_from_text(fuzz_queries[i].zone, f->zone, &f->sent.zone_len) != 0)
            abort();
        f->sent.qname = f->qname;
        f->sent.zone = f->zone;
        f->sent.qtype = fuzz_queries[i].qtype;
        f->sent.qclass = WIRE_CLASS_IN;
        f->sent.server = &fuzz_server;
        f->sent.forwarder = fuzz_queries[i].forwarder;
    }
}

static bool fuzz_under(const ldns_rdf *name, const struct scrub_query *sent, bool strict)
{
    if (name == NULL || ldns_rdf_get_type(name) != LDNS_RDF_TYPE_DNAME)
        return false;
    size_t len = ldns_rdf_size(name);
    uint8_t lower[WIRE_NAME_MAX];
    if (len == 0 || len > WIRE_NAME_MAX)
        return false;
    wire_name_lower(lower, ldns_rdf_data(name), len);
    if (strict && len == sent->zone_len)
        return false;
    return wire_name_is_subdomain(lower, len, sent->zone, sent->zone_len);
}

/* One RRset: non-empty, same owner, type and class, all inside the bailiwick. */
static void fuzz_check_rrset(const ldns_rr_list *list, const struct scrub_query *sent)
{
    FUZZ_CHECK(list != NULL && ldns_rr_list_rr_count(list) > 0);
    const ldns_rr *first = ldns_rr_list_rr(list, 0);
    for (size_t i = 0; i < ldns_rr_list_rr_count(list); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(list, i);
        FUZZ_CHECK(ldns_dname_compare(ldns_rr_owner(rr), ldns_rr_owner(first)) == 0);
        FUZZ_CHECK(ldns_rr_get_type(rr) == ldns_rr_get_type(first));
        FUZZ_CHECK(ldns_rr_get_class(rr) == ldns_rr_get_class(first));
        FUZZ_CHECK(fuzz_under(ldns_rr_owner(rr), sent, false));
    }
}

static void fuzz_check_result(const struct scrub_result *r, const struct scrub_query *sent)
{
    if (r->status == SCRUB_REJECTED) {
        FUZZ_CHECK(r->reject != SCRUB_REJECT_NONE);
        FUZZ_CHECK(r->answer_count == 0 && r->referral_ns == NULL && r->soa == NULL);
        return;
    }
    FUZZ_CHECK(r->reject == SCRUB_REJECT_NONE);
    FUZZ_CHECK(r->dropped >= r->out_of_bailiwick);
    FUZZ_CHECK((r->answer == NULL) == (r->answer_count == 0));
    for (size_t i = 0; i < r->answer_count; i++)
        fuzz_check_rrset(r->answer[i], sent);
    switch (r->status) {
    case SCRUB_ANSWER:
        FUZZ_CHECK(r->answer_count > 0);
        /* fall through */
    case SCRUB_CNAME:
    case SCRUB_NXDOMAIN:
    case SCRUB_NODATA:
        FUZZ_CHECK(r->target != NULL);
        FUZZ_CHECK(r->chain_length <= r->answer_count); /* each hop is an element of answer */
        break;
    case SCRUB_REFERRAL:
        FUZZ_CHECK(fuzz_under(r->referral_zone, sent, true));
        fuzz_check_rrset(r->referral_ns, sent);
        FUZZ_CHECK(ldns_dname_compare(ldns_rr_owner(ldns_rr_list_rr(r->referral_ns, 0)),
                                      r->referral_zone) == 0);
        break;
    default:
        break;
    }
    if (r->soa != NULL) {
        FUZZ_CHECK(ldns_rr_get_type(r->soa) == LDNS_RR_TYPE_SOA);
        FUZZ_CHECK(fuzz_under(ldns_rr_owner(r->soa), sent, false));
    }
    for (size_t i = 0; r->glue != NULL && i < ldns_rr_list_rr_count(r->glue); i++)
        FUZZ_CHECK(fuzz_under(ldns_rr_owner(ldns_rr_list_rr(r->glue, i)), sent, false));
    FUZZ_CHECK(scrub_status_name(r->status) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_server.len == 0)
        fuzz_init();
    uint16_t id = size >= 2 ? wire_read_u16(data) : 0;
    struct scrub_query sent = fuzz_sent[id % FUZZ_QUERY_COUNT].sent;
    sent.id = id;
    struct scrub_result result;
    int rc = scrub_response(data, size, &sent, (const struct sockaddr *)&fuzz_server.ss, &result);
    FUZZ_CHECK(rc == 0 || rc == BALLAST_ENOMEM);
    if (rc == 0)
        fuzz_check_result(&result, &sent);
    scrub_result_free(&result);
    return 0;
}
