/* libFuzzer harness: any bytes as a query to answer_query() over the example zones
 * (tests/unit/data/answer, loaded once; run from the source root). Over UDP or TCP by the
 * input's length. Checks that a response, when one is due, fits the transport's limit, echoes
 * the ID with QR set and parses as DNS. Build: docs/fuzzing.md. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <ldns/ldns.h>

#include "answer.h"
#include "fuzz_util.h"
#include "wire.h"

static struct zone_set *fuzz_zones;
static struct limits fuzz_limits;

static void fuzz_load_zones(void)
{
    static const char *const zones[][2] = {
        {"example.test", "tests/unit/data/answer/example.test.zone"},
        {"deep.example.test", "tests/unit/data/answer/deep.example.test.zone"},
    };
    struct zone *loaded[2];
    struct zone_error err;
    limits_init_defaults(&fuzz_limits);
    for (size_t i = 0; i < 2; i++) {
        if (zone_load(zones[i][0], zones[i][1], &fuzz_limits, &loaded[i], &err) != 0) {
            fprintf(stderr, "fuzz_answer: %s:%u: %s (run from the source root)\n", err.file,
                    err.line, err.reason);
            abort();
        }
    }
    if (zone_set_create(loaded, 2, &fuzz_zones) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t response[65535];
    struct answer_info info;
    if (!fuzz_zones)
        fuzz_load_zones();
    bool over_tcp = size % 2 == 0;
    size_t n = answer_query(fuzz_zones, &fuzz_limits, data, size, response, sizeof response,
                            over_tcp, &info);
    if (n == 0) {
        FUZZ_CHECK(info.outcome == ANSWER_DROPPED);
        return 0;
    }
    FUZZ_CHECK(n >= WIRE_HEADER_LEN && info.outcome == ANSWER_SENT);
    FUZZ_CHECK(over_tcp || n <= fuzz_limits.edns_udp_size);
    FUZZ_CHECK(wire_read_u16(response) == wire_read_u16(data));
    FUZZ_CHECK(wire_read_u16(response + 2) & WIRE_FLAG_QR);
    ldns_pkt *pkt = NULL;
    FUZZ_CHECK(ldns_wire2pkt(&pkt, response, n) == LDNS_STATUS_OK);
    ldns_pkt_free(pkt);
    return 0;
}
