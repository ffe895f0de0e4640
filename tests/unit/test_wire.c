/* Unit tests for common/wire.c: query parsing (good, FORMERR, drop), names and the writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"
#include "wire.h"

/* A query for www.Example.test/A with the given counts, optionally with an OPT record. */
static size_t build_query(uint8_t *buf, uint16_t flags, bool with_opt, uint8_t edns_version)
{
    static const uint8_t question[] = {3,   'w', 'w', 'w', 7,   'E', 'x', 'a', 'm', 'p', 'l',
                                       'e', 4,   't', 'e', 's', 't', 0,   0,   1,   0,   1};
    memset(buf, 0, 12);
    wire_write_u16(buf, 0xBEEF);
    wire_write_u16(buf + 2, flags);
    wire_write_u16(buf + 4, 1);
    wire_write_u16(buf + 10, with_opt ? 1 : 0);
    memcpy(buf + 12, question, sizeof question);
    size_t len = 12 + sizeof question;
    if (with_opt) {
        uint8_t opt[] = {0, 0, 41, 0x04, 0xD0, 0, edns_version, 0x80, 0, 0, 0};
        memcpy(buf + len, opt, sizeof opt);
        len += sizeof opt;
    }
    return len;
}

static void test_wire_parses_plain_query(void **state)
{
    uint8_t pkt[512];
    struct wire_query q;
    size_t len = build_query(pkt, WIRE_FLAG_RD, false, 0);
    assert_int_equal(wire_parse_query(pkt, len, &q), 0);
    assert_int_equal(q.id, 0xBEEF);
    assert_int_equal(q.qtype, WIRE_TYPE_A);
    assert_int_equal(q.qclass, WIRE_CLASS_IN);
    assert_int_equal(q.qname_len, 18);
    assert_int_equal(q.qname_labels, 3);
    assert_int_equal(q.question_end, len);
    assert_false(q.has_edns);
    assert_memory_equal(q.qname + 5, "Example", 7);       /* case preserved */
    assert_memory_equal(q.qname_lower + 5, "example", 7); /* and lowered for lookups */
}

static void test_wire_parses_edns(void **state)
{
    uint8_t pkt[512];
    struct wire_query q;
    size_t len = build_query(pkt, 0, true, 0);
    assert_int_equal(wire_parse_query(pkt, len, &q), 0);
    assert_true(q.has_edns);
    assert_int_equal(q.edns_udp_size, 1232);
    assert_int_equal(q.edns_version, 0);
    assert_int_equal(q.edns_flags & WIRE_EDNS_DO, WIRE_EDNS_DO);
}

static void test_wire_drops_short_packets_and_responses(void **state)
{
    uint8_t pkt[512];
    struct wire_query q;
    size_t len = build_query(pkt, WIRE_FLAG_QR, false, 0);
    assert_int_equal(wire_parse_query(pkt, len, &q), BALLAST_EINVAL);
    assert_int_equal(wire_parse_query(pkt, 11, &q), BALLAST_EINVAL);
    assert_int_equal(wire_parse_query(pkt, 0, &q), BALLAST_EINVAL);
}

static void test_wire_formerr_cases(void **state)
{
    uint8_t pkt[512];
    struct wire_query q;
    size_t len = build_query(pkt, 0, false, 0);
    /* truncated question */
    assert_int_equal(wire_parse_query(pkt, len - 3, &q), BALLAST_EFORMERR);
    assert_int_equal(q.id, 0xBEEF);
    /* two questions announced */
    wire_write_u16(pkt + 4, 2);
    assert_int_equal(wire_parse_query(pkt, len, &q), BALLAST_EFORMERR);
    /* zero questions */
    wire_write_u16(pkt + 4, 0);
    assert_int_equal(wire_parse_query(pkt, len, &q), BALLAST_EFORMERR);
    /* trailing garbage */
    len = build_query(pkt, 0, false, 0);
    pkt[len] = 0xFF;
    assert_int_equal(wire_parse_query(pkt, len + 1, &q), BALLAST_EFORMERR);
    /* huge counts with no records */
    wire_write_u16(pkt + 6, 0xFFFF);
    assert_int_equal(wire_parse_query(pkt, len, &q), BALLAST_EFORMERR);
    /* compression pointer in the question */
    len = build_query(pkt, 0, false, 0);
    pkt[12] = 0xC0;
    pkt[13] = 12;
    assert_int_equal(wire_parse_query(pkt, len, &q), BALLAST_EFORMERR);
    /* two OPT records */
    len = build_query(pkt, 0, true, 0);
    memcpy(pkt + len, pkt + len - 11, 11);
    wire_write_u16(pkt + 10, 2);
    assert_int_equal(wire_parse_query(pkt, len + 11, &q), BALLAST_EFORMERR);
}

static void test_wire_unpack_rejects_pointer_loops(void **state)
{
    /* header + a name that points to itself, then one that points forward */
    uint8_t pkt[32] = {0};
    pkt[12] = 0xC0;
    pkt[13] = 12;
    size_t pos = 12;
    assert_int_equal(wire_name_unpack(pkt, sizeof pkt, &pos, NULL, NULL), BALLAST_EFORMERR);
    pkt[12] = 0xC0;
    pkt[13] = 20;
    pos = 12;
    assert_int_equal(wire_name_unpack(pkt, sizeof pkt, &pos, NULL, NULL), BALLAST_EFORMERR);
    /* a good backward pointer */
    uint8_t good[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 1, 'b', 0xC0, 12};
    uint8_t out[WIRE_NAME_MAX];
    size_t out_len = 0;
    pos = 15;
    assert_int_equal(wire_name_unpack(good, sizeof good, &pos, out, &out_len), 0);
    assert_int_equal(pos, sizeof good);
    assert_int_equal(out_len, 5);
    assert_memory_equal(out, "\1b\1a\0", 5);
}

/* A name reached through `hops` backward pointers, each to the one before, the first to "a". */
static int unpack_after_pointer_chain(unsigned hops)
{
    uint8_t pkt[12 + 3 + 2 * 200] = {0};
    pkt[12] = 1;
    pkt[13] = 'a';
    size_t at = 15, target = 12;
    for (unsigned i = 0; i < hops; i++, at += 2) {
        pkt[at] = (uint8_t)(0xC0 | (target >> 8));
        pkt[at + 1] = (uint8_t)(target & 0xFF);
        target = at;
    }
    size_t pos = target;
    uint8_t out[WIRE_NAME_MAX];
    size_t out_len = 0;
    return wire_name_unpack(pkt, at, &pos, out, &out_len);
}

static void test_wire_unpack_stops_after_max_pointer_hops(void **state)
{
    (void)state;
    /* common/wire.c WIRE_MAX_POINTER_HOPS: 128 pointers are followed, the 129th is FORMERR. */
    assert_int_equal(unpack_after_pointer_chain(128), 0);
    assert_int_equal(unpack_after_pointer_chain(129), BALLAST_EFORMERR);
}

static void test_wire_name_helpers(void **state)
{
    uint8_t name[WIRE_NAME_MAX], parent[WIRE_NAME_MAX];
    size_t len = 0, parent_len = 0;
    assert_int_equal(wire_name_from_text("a.B.example.test", name, &len), 0);
    assert_int_equal(len, 18);
    assert_int_equal(wire_name_labels(name), 4);
    wire_name_lower(name, name, len);
    assert_int_equal(wire_name_from_text("example.test.", parent, &parent_len), 0);
    assert_true(wire_name_is_subdomain(name, len, parent, parent_len));
    assert_false(wire_name_is_subdomain(parent, parent_len, name, len));
    assert_int_equal(wire_name_skip_labels(name, 2), 4);
    char text[256];
    assert_int_equal(wire_name_to_text(name, text, sizeof text), 0);
    assert_string_equal(text, "a.b.example.test.");
    assert_true(wire_name_equal_nocase((const uint8_t *)"\1A\0", 3, (const uint8_t *)"\1a\0", 3));
    assert_int_equal(wire_name_length((const uint8_t *)"\3abc", 4), 0);
    assert_int_not_equal(wire_name_from_text("a..b", name, &len), 0);
    /* "notexample.test" is not below "example.test" even though it ends with its bytes */
    assert_int_equal(wire_name_from_text("x.notexample.test", name, &len), 0);
    assert_false(wire_name_is_subdomain(name, len, parent, parent_len));
}

static void test_wire_writer_compresses_names(void **state)
{
    uint8_t buf[512];
    struct wire_writer w;
    uint8_t name[WIRE_NAME_MAX], other[WIRE_NAME_MAX];
    size_t len = 0, other_len = 0;
    wire_name_from_text("www.example.test", name, &len);
    wire_name_from_text("mail.EXAMPLE.test", other, &other_len);
    wire_writer_init(&w, buf, sizeof buf);
    w.len = 12;
    assert_int_equal(wire_writer_name(&w, name, len, true), 0);
    assert_int_equal(w.len, 12 + len);
    /* the same name again becomes a pointer to offset 12 */
    assert_int_equal(wire_writer_name(&w, name, len, true), 0);
    assert_int_equal(w.len, 12 + len + 2);
    assert_int_equal(wire_read_u16(buf + 12 + len), 0xC000 | 12);
    /* a sibling shares the suffix: label "mail" then a pointer to "example.test" at 16 */
    size_t before = w.len;
    assert_int_equal(wire_writer_name(&w, other, other_len, true), 0);
    assert_int_equal(w.len, before + 5 + 2);
    assert_int_equal(wire_read_u16(buf + before + 5), 0xC000 | 16);
}

static void test_wire_writer_rollback_and_space(void **state)
{
    uint8_t buf[40];
    struct wire_writer w;
    uint8_t name[WIRE_NAME_MAX];
    size_t len = 0;
    wire_name_from_text("www.example.test", name, &len);
    wire_writer_init(&w, buf, sizeof buf);
    w.len = 12;
    struct wire_writer_mark mark = wire_writer_mark(&w);
    assert_int_equal(wire_writer_name(&w, name, len, true), 0);
    wire_writer_rollback(&w, mark);
    assert_int_equal(w.len, 12);
    assert_int_equal(w.slot_count, 0);
    assert_int_equal(wire_writer_bytes(&w, buf, 30), BALLAST_ESPACE);
    assert_int_equal(w.len, 12);
    assert_int_equal(wire_writer_u32(&w, 7), 0);
    assert_int_equal(wire_read_u32(buf + 12), 7);
}

static void test_wire_writer_rdata_compresses_mx(void **state)
{
    uint8_t buf[512];
    struct wire_writer w;
    uint8_t name[WIRE_NAME_MAX];
    size_t len = 0;
    wire_name_from_text("example.test", name, &len);
    wire_writer_init(&w, buf, sizeof buf);
    w.len = 12;
    wire_writer_name(&w, name, len, true);
    uint8_t mx[2 + 5 + 14];
    mx[0] = 0;
    mx[1] = 10;
    size_t mail_len = 0;
    wire_name_from_text("mail.example.test", mx + 2, &mail_len);
    size_t before = w.len;
    assert_int_equal(wire_writer_rdata(&w, WIRE_TYPE_MX, mx, (uint16_t)(2 + mail_len)), 0);
    /* RDLENGTH counts the compressed form: preference + "mail" label + pointer */
    assert_int_equal(wire_read_u16(buf + before), 2 + 5 + 2);
    /* TXT is never compressed */
    before = w.len;
    assert_int_equal(wire_writer_rdata(&w, WIRE_TYPE_TXT, mx, 5), 0);
    assert_int_equal(wire_read_u16(buf + before), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_parses_plain_query),
        cmocka_unit_test(test_wire_parses_edns),
        cmocka_unit_test(test_wire_drops_short_packets_and_responses),
        cmocka_unit_test(test_wire_formerr_cases),
        cmocka_unit_test(test_wire_unpack_rejects_pointer_loops),
        cmocka_unit_test(test_wire_unpack_stops_after_max_pointer_hops),
        cmocka_unit_test(test_wire_name_helpers),
        cmocka_unit_test(test_wire_writer_compresses_names),
        cmocka_unit_test(test_wire_writer_rollback_and_space),
        cmocka_unit_test(test_wire_writer_rdata_compresses_mx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
