/* Response checks for upstream answers: is this packet the answer to the query we sent (address,
 * port, ID, question), what kind of answer is it (answer, CNAME to chase, negative, referral,
 * lame, ...), and which of its records may be trusted (bailiwick scrubbing) before caching. */
#ifndef BALLAST_SCRUB_H
#define BALLAST_SCRUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ldns/ldns.h>

#include "addr.h"

/* What we sent, and to whom. Names are uncompressed wire form, lowercase. */
struct scrub_query {
    uint16_t id;
    const uint8_t *qname;
    size_t qname_len;
    uint16_t qtype;
    uint16_t qclass;
    /* The bailiwick: apex of the zone whose servers we asked ("." for the root servers). Only
     * records at or below it are believed. */
    const uint8_t *zone;
    size_t zone_len;
    const struct addr *server; /* where the query went */
    /* The server is a recursive resolver (forward zone): answers are not expected to carry AA,
     * and a referral from it is lame. */
    bool forwarder;
};

enum scrub_status {
    SCRUB_REJECTED,  /* not an answer to our query (see reject): ignore it, keep waiting */
    SCRUB_ANSWER,    /* the data for qname/qtype (maybe after a CNAME/DNAME chain) */
    SCRUB_CNAME,     /* the chain ends at `target`, whose data is not here: chase it */
    SCRUB_NXDOMAIN,  /* `target` (qname, or the chain's end: RFC 6604) does not exist */
    SCRUB_NODATA,    /* `target` exists without data of qtype */
    SCRUB_REFERRAL,  /* delegation to referral_zone, strictly below our zone */
    SCRUB_LAME,      /* the server is not authoritative for the zone (see why): try another */
    SCRUB_SERVFAIL,  /* SERVFAIL (or an RCODE that makes no sense here): try another */
    SCRUB_FORMERR,   /* FORMERR or NOTIMP: maybe retry without EDNS (RFC 6891 §7) */
    SCRUB_TRUNCATED, /* TC=1: retry over TCP (RFC 7766 §5); nothing here is used */
};

enum scrub_reject {
    SCRUB_REJECT_NONE,
    SCRUB_REJECT_ADDRESS,   /* from another address than the one we asked */
    SCRUB_REJECT_PORT,      /* from another port */
    SCRUB_REJECT_ID,        /* ID differs */
    SCRUB_REJECT_NOT_REPLY, /* QR bit clear */
    SCRUB_REJECT_OPCODE,    /* opcode is not QUERY */
    SCRUB_REJECT_QUESTION,  /* question differs from ours (case-insensitive) */
    SCRUB_REJECT_MALFORMED, /* does not parse */
};

/* The verdict and the records that survived scrubbing. Every ldns object here is owned by the
 * result (deep copies: nothing points into the packet); release them with scrub_result_free().
 * A caller that wants to keep one sets the field to NULL before freeing the rest. */
struct scrub_result {
    enum scrub_status status;
    enum scrub_reject reject; /* SCRUB_REJECT_NONE unless status is SCRUB_REJECTED */
    const char *why;          /* static text explaining a non-answer verdict, else NULL */
    uint8_t rcode;            /* the response's RCODE (4 bits; 0 when rejected) */
    bool aa;                  /* AA bit */
    bool edns;                /* the response carried an OPT record */

    /* ANSWER, CNAME, NXDOMAIN, NODATA: the chain from qname in order (CNAME, DNAME and the
     * CNAMEs synthesised from DNAMEs, RFC 6672 §3.1) followed, for ANSWER, by the data RRsets
     * of qtype at target. Each element is one RRset (same owner, type and class). */
    ldns_rr_list **answer;
    size_t answer_count;
    ldns_rdf *target;      /* the last name of the chain (qname when there is none) */
    unsigned chain_length; /* CNAME/DNAME hops followed inside this response */

    /* REFERRAL: the child zone and its NS RRset; glue holds the A/AAAA records of those NS
     * names found in the additional section and inside our bailiwick. For an ANSWER to an NS
     * query, glue holds the addresses of the answered NS names. */
    ldns_rdf *referral_zone;
    ldns_rr_list *referral_ns;
    ldns_rr_list *glue;

    /* NXDOMAIN, NODATA: the SOA from the authority section, owned by an ancestor of target
     * inside our bailiwick (RFC 2308 §3); NULL when absent (then not negatively cacheable,
     * RFC 2308 §5). */
    ldns_rr *soa;

    size_t out_of_bailiwick; /* records dropped because they lie outside our zone */
    size_t dropped;          /* records not kept, including the above */
};

/* Check and classify the response pkt[0..len) received from `from` to the query `sent`.
 * Always initialises *out (free it with scrub_result_free() even on error). Returns 0 when a
 * verdict was reached, including SCRUB_REJECTED; BALLAST_EINVAL for bad arguments;
 * BALLAST_ENOMEM. A FORMERR or NOTIMP response without a question section is accepted (servers
 * that reject EDNS often answer that way). */
int scrub_response(const uint8_t *pkt, size_t len, const struct scrub_query *sent,
                   const struct sockaddr *from, struct scrub_result *out);

/* Release everything *result owns and reset it. */
void scrub_result_free(struct scrub_result *result);

/* Static names for logs: "answer", "referral", "wrong ID", ... */
const char *scrub_status_name(enum scrub_status status);
const char *scrub_reject_name(enum scrub_reject reject);

#endif
