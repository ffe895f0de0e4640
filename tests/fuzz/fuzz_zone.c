/* libFuzzer harness: any bytes as the master file of zone example.test to zone_load(), with small
 * limits; a zone that loads is checked for consistency (node hash, RRset encoding, sorting) and
 * then answers queries for its own names with answer_query(), whose responses must parse.
 * The input is written to a scratch file (fuzz_util.h): $INCLUDE can only reach that file itself.
 * Build: docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "answer.h"
#include "errors.h"
#include "fuzz_util.h"
#include "wire.h"
#include "zone.h"

#define FUZZ_ORIGIN "example.test"
#define FUZZ_QUERIED_NODES 32 /* nodes whose names are queried, per input */

static struct limits fuzz_limits;

static void fuzz_init(void)
{
    limits_init_defaults(&fuzz_limits);
    fuzz_limits.max_zone_records = 5000;
    fuzz_limits.max_zone_bytes = 1u << 20;
    fuzz_limits.max_rrset_records = 256;
    fuzz_limits.max_include_depth = 4;
}

/* RDATA of an RRset: `count` records of [RDLENGTH][RDATA] filling data_len exactly. */
static void fuzz_check_rrset(const struct zone_rrset *rrset)
{
    FUZZ_CHECK(rrset->count >= 1 && rrset->count <= fuzz_limits.max_rrset_records);
    size_t at = 0;
    for (unsigned i = 0; i < rrset->count; i++) {
        FUZZ_CHECK(at + 2 <= rrset->data_len);
        at += 2 + (size_t)wire_read_u16(rrset->data + at);
    }
    FUZZ_CHECK(at == rrset->data_len);
}

static void fuzz_check_node(const struct zone *zone, const struct zone_node *node)
{
    FUZZ_CHECK(node->name_len >= 1);
    FUZZ_CHECK(wire_name_length(node->name, node->name_len) == node->name_len);
    FUZZ_CHECK(wire_name_labels(node->name) == node->labels);
    FUZZ_CHECK(wire_name_is_subdomain(node->name, node->name_len, zone->apex, zone->apex_len));
    FUZZ_CHECK(zone_find_node(zone, node->name, node->name_len) == node);
    for (unsigned i = 0; i < node->rrset_count; i++) {
        fuzz_check_rrset(&node->rrsets[i]);
        if (i > 0)
            FUZZ_CHECK(node->rrsets[i - 1].type < node->rrsets[i].type);
        FUZZ_CHECK(zone_node_rrset(node, node->rrsets[i].type) == &node->rrsets[i]);
    }
}

/* A query for name/qtype, with an OPT record (DO set) when edns. */
static size_t fuzz_build_query(uint8_t *buf, const uint8_t *name, size_t name_len, uint16_t qtype,
                               bool edns)
{
    static uint16_t id;
    memset(buf, 0, WIRE_HEADER_LEN);
    wire_write_u16(buf, ++id);
    wire_write_u16(buf + 4, 1);
    wire_write_u16(buf + 10, edns ? 1 : 0);
    memcpy(buf + WIRE_HEADER_LEN, name, name_len);
    size_t at = WIRE_HEADER_LEN + name_len;
    wire_write_u16(buf + at, qtype);
    wire_write_u16(buf + at + 2, WIRE_CLASS_IN);
    at += 4;
    if (edns) {
        static const uint8_t opt[] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0};
        memcpy(buf + at, opt, sizeof opt);
        at += sizeof opt;
    }
    return at;
}

/* How a query is sent: UDP without EDNS (512-byte limit), UDP with EDNS, TCP. */
enum fuzz_transport { FUZZ_UDP, FUZZ_UDP_EDNS, FUZZ_TCP };

static void fuzz_ask(const struct zone_set *set, const uint8_t *name, size_t name_len,
                     uint16_t qtype, enum fuzz_transport transport)
{
    static uint8_t query[WIRE_HEADER_LEN + WIRE_NAME_MAX + 4 + 11];
    static uint8_t resp[65535];
    bool over_tcp = transport == FUZZ_TCP;
    size_t len = fuzz_build_query(query, name, name_len, qtype, transport != FUZZ_UDP);
    struct answer_info info;
    size_t n = answer_query(set, &fuzz_limits, query, len, resp, sizeof resp, over_tcp, &info);
    FUZZ_CHECK(n >= WIRE_HEADER_LEN && info.outcome == ANSWER_SENT);
    FUZZ_CHECK(transport != FUZZ_UDP || n <= LIMIT_UDP_MIN_PAYLOAD);
    FUZZ_CHECK(over_tcp || n <= fuzz_limits.edns_udp_size);
    FUZZ_CHECK(wire_read_u16(resp) == wire_read_u16(query));
    ldns_pkt *pkt = NULL;
    if (ldns_wire2pkt(&pkt, resp, n) != LDNS_STATUS_OK) {
        fprintf(stderr, "fuzz_zone: the answer to a query of type %u does not parse\n", qtype);
        abort();
    }
    ldns_pkt_free(pkt);
}

/* Ask each of the first nodes for its own types, A, ANY, and a child name that does not exist. */
static void fuzz_answer_nodes(const struct zone *zone, const struct zone_node *const *nodes,
                              size_t count)
{
    struct zone *zones[1] = {(struct zone *)zone};
    struct zone_set *set = NULL;
    FUZZ_CHECK(zone_set_create(zones, 1, &set) == 0);
    for (size_t i = 0; i < count; i++) {
        const struct zone_node *node = nodes[i];
        for (unsigned t = 0; t < node->rrset_count; t++)
            fuzz_ask(set, node->name, node->name_len, node->rrsets[t].type,
                     (enum fuzz_transport)(t % 3));
        fuzz_ask(set, node->name, node->name_len, WIRE_TYPE_A, FUZZ_UDP);
        fuzz_ask(set, node->name, node->name_len, WIRE_TYPE_ANY, FUZZ_TCP);
        if (node->name_len + 3 <= WIRE_NAME_MAX) {
            uint8_t child[WIRE_NAME_MAX] = {2, 'z', 'z'};
            memcpy(child + 3, node->name, node->name_len);
            fuzz_ask(set, child, node->name_len + 3, WIRE_TYPE_TXT, FUZZ_UDP_EDNS);
        }
    }
    zone_set_free_shallow(set);
}

static void fuzz_check_zone(const struct zone *zone)
{
    const struct zone_node *queried[FUZZ_QUERIED_NODES];
    size_t queried_count = 0;
    size_t nodes = 0;
    FUZZ_CHECK(zone->record_count <= fuzz_limits.max_zone_records);
    FUZZ_CHECK(zone->apex_node != NULL && zone->soa != NULL);
    for (size_t b = 0; b <= zone->bucket_mask; b++) {
        for (const struct zone_node *node = zone->buckets[b]; node; node = node->hash_next) {
            fuzz_check_node(zone, node);
            if (queried_count < FUZZ_QUERIED_NODES)
                queried[queried_count++] = node;
            nodes++;
        }
    }
    FUZZ_CHECK(nodes == zone->node_count);
    fuzz_answer_nodes(zone, queried, queried_count);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_limits.max_zone_records == 0)
        fuzz_init();
    const char *path = fuzz_file_write("input.zone", data, size);
    struct zone *zone = NULL;
    struct zone_error err;
    int rc = zone_load(FUZZ_ORIGIN, path, &fuzz_limits, &zone, &err);
    if (rc != 0) {
        FUZZ_CHECK(zone == NULL && err.reason[0] != '\0');
        return 0;
    }
    fuzz_check_zone(zone);
    zone_free(zone);
    return 0;
}
