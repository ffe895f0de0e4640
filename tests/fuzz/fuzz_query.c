/* libFuzzer harness: any bytes as a query packet to wire_parse_query() and, when a response is
 * due, wire_write_error(); then every name of the packet through wire_name_unpack() and back
 * through the compressing writer. Checks the parser's promises (lengths, pointers inside the
 * packet) and that a compressed name reads back equal. Build: docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "fuzz_util.h"
#include "wire.h"

#define FUZZ_MAX_NAMES 32

/* What a successful parse promises about the question and OPT record. */
static void fuzz_check_query(const uint8_t *pkt, size_t len, const struct wire_query *q)
{
    FUZZ_CHECK(q->question_end > WIRE_HEADER_LEN && q->question_end <= len);
    FUZZ_CHECK(q->qname_len >= 1 && q->qname_len <= WIRE_NAME_MAX);
    FUZZ_CHECK(wire_name_length(q->qname, q->qname_len) == q->qname_len);
    FUZZ_CHECK(wire_name_labels(q->qname) == q->qname_labels);
    FUZZ_CHECK(wire_name_equal_nocase(q->qname, q->qname_len, q->qname_lower, q->qname_len));
    FUZZ_CHECK(memcmp(q->qname, pkt + WIRE_HEADER_LEN, q->qname_len) == 0);
    if (q->has_edns) {
        FUZZ_CHECK(q->edns_options >= pkt);
        FUZZ_CHECK((size_t)(q->edns_options - pkt) + q->edns_options_len <= len);
    }
    char text[4 * WIRE_NAME_MAX + 2];
    uint8_t back[WIRE_NAME_MAX];
    size_t back_len = 0;
    FUZZ_CHECK(wire_name_to_text(q->qname, text, sizeof text) == 0);
    FUZZ_CHECK(wire_name_from_text(text, back, &back_len) == 0);
    FUZZ_CHECK(back_len == q->qname_len && memcmp(back, q->qname, back_len) == 0);
}

/* The error response: header plus the question when it was readable, never a query again. */
static void fuzz_check_error(const uint8_t *pkt, const struct wire_query *q, size_t cap)
{
    uint8_t resp[WIRE_HEADER_LEN + WIRE_NAME_MAX + 4];
    size_t question = q->question_end > WIRE_HEADER_LEN ? q->question_end - WIRE_HEADER_LEN : 0;
    FUZZ_CHECK(question <= WIRE_NAME_MAX + 4);
    if (cap > sizeof resp)
        cap = sizeof resp;
    size_t n = wire_write_error(pkt, q, WIRE_RCODE_FORMERR, WIRE_FLAG_RA, resp, cap);
    if (WIRE_HEADER_LEN + question > cap) {
        FUZZ_CHECK(n == 0);
        return;
    }
    FUZZ_CHECK(n == WIRE_HEADER_LEN + question);
    FUZZ_CHECK(wire_read_u16(resp) == q->id);
    FUZZ_CHECK(wire_read_u16(resp + 2) & WIRE_FLAG_QR);
    struct wire_query again;
    FUZZ_CHECK(wire_parse_query(resp, n, &again) == BALLAST_EINVAL);
}

/* Read the names of every record the header announces (stopping at the first malformed one),
 * write them compressed into a fresh packet and read each back. */
static void fuzz_check_names(const uint8_t *pkt, size_t len)
{
    static uint8_t names[FUZZ_MAX_NAMES][WIRE_NAME_MAX];
    size_t name_len[FUZZ_MAX_NAMES];
    size_t count = 0;
    size_t pos = WIRE_HEADER_LEN;
    unsigned records = (unsigned)wire_read_u16(pkt + 4) + wire_read_u16(pkt + 6) +
                       wire_read_u16(pkt + 8) + wire_read_u16(pkt + 10);
    for (unsigned i = 0; i < records && count < FUZZ_MAX_NAMES; i++) {
        size_t start = pos;
        if (wire_name_unpack(pkt, len, &pos, names[count], &name_len[count]) != 0)
            break;
        FUZZ_CHECK(pos > start && pos <= len);
        FUZZ_CHECK(wire_name_length(names[count], name_len[count]) == name_len[count]);
        count++;
        size_t fixed = i < wire_read_u16(pkt + 4) ? 4 : 10; /* question: type, class */
        if (pos + fixed > len)
            break;
        if (fixed == 10)
            pos += wire_read_u16(pkt + pos + 8);
        pos += fixed;
        if (pos > len)
            break;
    }

    static uint8_t out[WIRE_HEADER_LEN + FUZZ_MAX_NAMES * WIRE_NAME_MAX];
    size_t at[FUZZ_MAX_NAMES];
    struct wire_writer w;
    wire_writer_init(&w, out, sizeof out);
    FUZZ_CHECK(wire_writer_bytes(&w, pkt, WIRE_HEADER_LEN) == 0);
    for (size_t i = 0; i < count; i++) {
        at[i] = w.len;
        FUZZ_CHECK(wire_writer_name(&w, names[i], name_len[i], true) == 0);
        wire_writer_remember_name(&w, at[i]);
    }
    for (size_t i = 0; i < count; i++) {
        uint8_t back[WIRE_NAME_MAX];
        size_t back_len = 0;
        size_t p = at[i];
        FUZZ_CHECK(wire_name_unpack(out, w.len, &p, back, &back_len) == 0);
        FUZZ_CHECK(wire_name_equal_nocase(back, back_len, names[i], name_len[i]));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wire_query q;
    memset(&q, 0xA5, sizeof q); /* nothing the parser leaves unset may look valid */
    int rc = wire_parse_query(data, size, &q);
    FUZZ_CHECK(rc == 0 || rc == BALLAST_EFORMERR || rc == BALLAST_EINVAL);
    if (size < WIRE_HEADER_LEN) {
        FUZZ_CHECK(rc == BALLAST_EINVAL);
        return 0;
    }
    if (rc == 0)
        fuzz_check_query(data, size, &q);
    if (rc != BALLAST_EINVAL)
        fuzz_check_error(data, &q, WIRE_HEADER_LEN + size % 300);
    fuzz_check_names(data, size);
    return 0;
}
