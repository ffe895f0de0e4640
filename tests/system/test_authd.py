# System test of ballast-authd answers: one daemon on 127.0.0.11 serving zones/*.zone, every
# answer case asked over UDP and TCP with dnspython, plus raw malformed input and EDNS/TC rules.
"""ballast-authd answer cases (RFC 1034 §4.3.2, RFC 2308, RFC 4592, RFC 6891, RFC 8482)."""

import os
import random
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402
from ballast_test import rr  # noqa: E402

import dns.flags  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

ADDR = '127.0.0.11'

SOA_EXAMPLE = rr('example.test', 300, 'SOA', 'ns1.example.test. hostmaster.example.test. '
                 '2026112301 7200 3600 1209600 300')
SOA_DEEP = rr('deep.example.test', 600, 'SOA', 'ns1.deep.example.test. hostmaster.example.test. '
              '2026112302 7200 3600 1209600 600')
SOA_OTHER = rr('other.test', 600, 'SOA', 'ns1.other.test. hostmaster.other.test. '
               '2026112301 7200 3600 1209600 3600')
WWW_A = rr('www.example.test', 3600, 'A', '192.0.2.10')
WWW_AAAA = rr('www.example.test', 3600, 'AAAA', '2001:db8::10')
SUB_NS = {rr('sub.example.test', 3600, 'NS', 'ns.sub.example.test.'),
          rr('sub.example.test', 3600, 'NS', 'ns1.other.test.')}
SUB_GLUE = {rr('ns.sub.example.test', 3600, 'A', '192.0.2.53'),
            rr('ns.sub.example.test', 3600, 'AAAA', '2001:db8::53')}
# Everything at the apex of example.test (for the RFC 8482 ANY check).
APEX_DATA = {
    rr('example.test', 3600, 'SOA', SOA_EXAMPLE[3]),
    rr('example.test', 3600, 'NS', 'ns1.example.test.'),
    rr('example.test', 3600, 'NS', 'ns2.example.test.'),
    rr('example.test', 3600, 'MX', '10 mail.example.test.'),
    rr('example.test', 3600, 'TXT', '"v=ballast example zone"'),
}
BIG_RECORDS = 40
TRANSPORTS = (False, True)


class AuthdAnswers(unittest.TestCase):
    """One daemon for the whole class; every test asks over UDP then TCP."""

    @classmethod
    def setUpClass(cls):
        bt.require_binaries()
        cls.tmp = bt.make_tmpdir()
        cls.authd = bt.start_authd_config(cls.tmp, ADDR, bt.standard_zone_paths())

    @classmethod
    def tearDownClass(cls):
        try:
            rc = cls.authd.stop()
            if rc != 0:
                raise AssertionError('ballast-authd exit code %r after SIGTERM; log:\n%s'
                                     % (rc, cls.authd.log_text()))
        finally:
            bt.remove_tmpdir(cls.tmp)

    # ---- helpers -------------------------------------------------------------------------

    def ask(self, qname, rdtype, tcp, **kw):
        r = self.authd.query(qname, rdtype, tcp=tcp, **kw)
        # RFC 1035 §4.1.1 / RFC 6895 §2: the question is echoed as sent (case too).
        if r.rcode() != dns.rcode.FORMERR:
            self.assertEqual(len(r.question), 1, 'question not echoed:\n%s' % r)
            self.assertEqual(r.question[0].name.to_text(), bt.absolute(qname),
                             'question name changed:\n%s' % r)
            self.assertEqual(r.question[0].rdtype, dns.rdatatype.from_text(rdtype))
        return r

    def assert_answer(self, r, answer, aa=True, rcode=dns.rcode.NOERROR):
        self.assertEqual(dns.rcode.to_text(r.rcode()), dns.rcode.to_text(rcode), str(r))
        self.assertEqual(bool(r.flags & dns.flags.AA), aa, 'AA flag wrong:\n%s' % r)
        self.assertFalse(r.flags & dns.flags.TC, 'TC set:\n%s' % r)
        self.assertEqual(bt.rrs(r.answer), set(answer), str(r))

    def assert_negative(self, r, rcode, soa=SOA_EXAMPLE, answer=()):
        """NXDOMAIN/NODATA: AA, the given answer (CNAMEs before it, if any) and exactly the
        zone's SOA in authority with the negative TTL (RFC 2308 §2.1, §2.2, §3, §5)."""
        self.assert_answer(r, answer, aa=True, rcode=rcode)
        self.assertEqual(bt.rrs(r.authority), {soa}, 'authority must be the SOA:\n%s' % r)

    def assert_nodata(self, qname, rdtype, soa=SOA_EXAMPLE):
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                self.assert_negative(self.ask(qname, rdtype, tcp), dns.rcode.NOERROR, soa)

    def assert_nxdomain(self, qname, rdtype='A', soa=SOA_EXAMPLE):
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                self.assert_negative(self.ask(qname, rdtype, tcp), dns.rcode.NXDOMAIN, soa)

    def assert_positive(self, qname, rdtype, answer):
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                self.assert_answer(self.ask(qname, rdtype, tcp), answer)

    def assert_referral(self, qname, rdtype):
        """RFC 1034 §4.3.2 step 3b: no AA, NS of the cut in authority, in-bailiwick glue only
        (ns1.other.test is outside sub.example.test: no address for it)."""
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                r = self.ask(qname, rdtype, tcp)
                self.assert_answer(r, (), aa=False)
                self.assertEqual(bt.rrs(r.authority), SUB_NS, str(r))
                self.assertEqual(bt.rrs(r.additional), SUB_GLUE, str(r))

    def assert_refused(self, qname, rdtype):
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                r = self.ask(qname, rdtype, tcp)
                self.assert_answer(r, (), aa=False, rcode=dns.rcode.REFUSED)
                self.assertEqual(bt.rrs(r.authority), set(), str(r))

    # ---- positive answers ----------------------------------------------------------------

    def test_a_and_aaaa_answered_with_aa(self):
        self.assert_positive('www.example.test', 'A', {WWW_A})
        self.assert_positive('www.example.test', 'AAAA', {WWW_AAAA})
        self.assert_positive('ns1.example.test', 'AAAA',
                             {rr('ns1.example.test', 3600, 'AAAA', '2001:db8::1')})

    def test_apex_mx_txt_soa_ns(self):
        self.assert_positive('example.test', 'MX',
                             {rr('example.test', 3600, 'MX', '10 mail.example.test.')})
        self.assert_positive('example.test', 'TXT',
                             {rr('example.test', 3600, 'TXT', '"v=ballast example zone"')})
        self.assert_positive('example.test', 'SOA',
                             {rr('example.test', 3600, 'SOA', SOA_EXAMPLE[3])})
        self.assert_positive('example.test', 'NS',
                             {rr('example.test', 3600, 'NS', 'ns1.example.test.'),
                              rr('example.test', 3600, 'NS', 'ns2.example.test.')})

    def test_srv(self):
        self.assert_positive('_sip._tcp.example.test', 'SRV',
                             {rr('_sip._tcp.example.test', 3600, 'SRV',
                                 '0 5 5060 www.example.test.')})

    def test_record_ttl_from_zone(self):
        self.assert_positive('short.example.test', 'A',
                             {rr('short.example.test', 60, 'A', '192.0.2.80')})

    # ---- negative answers ----------------------------------------------------------------

    def test_nxdomain_has_soa_with_negative_ttl(self):
        # RFC 2308 §5: the SOA TTL in a negative answer is min(SOA TTL 3600, MINIMUM 300).
        self.assert_nxdomain('nonexistent.example.test')
        self.assert_nxdomain('a.b.c.nonexistent.example.test', 'AAAA')

    def test_nxdomain_negative_ttl_is_soa_ttl_when_lower_than_minimum(self):
        # other.test: SOA TTL 600 < MINIMUM 3600.
        self.assert_nxdomain('nonexistent.other.test', 'A', soa=SOA_OTHER)

    def test_nodata_is_noerror_with_soa(self):
        self.assert_nodata('www.example.test', 'MX')
        self.assert_nodata('example.test', 'A')

    def test_empty_non_terminal_is_nodata_not_nxdomain(self):
        # RFC 8020 / RFC 4592 §2.2.2: an empty non-terminal exists.
        self.assert_nodata('b.ent.example.test', 'A')
        self.assert_nodata('ent.example.test', 'A')
        self.assert_nodata('_tcp.example.test', 'SRV')
        self.assert_positive('a.b.ent.example.test', 'A',
                             {rr('a.b.ent.example.test', 3600, 'A', '192.0.2.40')})
        self.assert_nxdomain('zz.ent.example.test')

    # ---- delegation ----------------------------------------------------------------------

    def test_referral_at_and_below_cut(self):
        self.assert_referral('www.sub.example.test', 'A')
        self.assert_referral('a.b.sub.example.test', 'AAAA')
        self.assert_referral('sub.example.test', 'A')
        # RFC 1034 §4.3.2: NS at a cut is the child's data; the parent answers with a referral.
        self.assert_referral('sub.example.test', 'NS')

    def test_glue_name_itself_gets_referral(self):
        # Glue below the cut is not authoritative data (RFC 1034 §4.2.1, RFC 9471).
        self.assert_referral('ns.sub.example.test', 'A')

    def test_ds_at_cut_answered_by_parent(self):
        # RFC 4035 §3.1.4.1: DS belongs to the parent side of the cut; none here: NODATA, AA.
        self.assert_nodata('sub.example.test', 'DS')

    # ---- CNAME ---------------------------------------------------------------------------

    def test_cname_followed_in_zone(self):
        alias = rr('alias.example.test', 3600, 'CNAME', 'www.example.test.')
        self.assert_positive('alias.example.test', 'A', {alias, WWW_A})
        self.assert_positive('alias.example.test', 'CNAME', {alias})

    def test_cname_chain_fully_followed(self):
        chain = {rr('chain1.example.test', 3600, 'CNAME', 'chain2.example.test.'),
                 rr('chain2.example.test', 3600, 'CNAME', 'chain3.example.test.'),
                 rr('chain3.example.test', 3600, 'CNAME', 'www.example.test.')}
        self.assert_positive('chain1.example.test', 'A', chain | {WWW_A})
        self.assert_positive('chain1.example.test', 'AAAA', chain | {WWW_AAAA})
        # RFC 2308 §2.2.1: NODATA at the end of the chain; the CNAMEs stay in the answer.
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                self.assert_negative(self.ask('chain1.example.test', 'MX', tcp), dns.rcode.NOERROR,
                                     answer=chain)

    def test_cname_chain_answer_is_ordered(self):
        # RFC 1034 §4.3.2 step 3a: each CNAME comes before the records of its target.
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                r = self.ask('chain1.example.test', 'A', tcp)
                owners = [rrset.name.to_text().lower() for rrset in r.answer]
                self.assertEqual(owners, ['chain1.example.test.', 'chain2.example.test.',
                                          'chain3.example.test.', 'www.example.test.'], str(r))

    def test_out_of_zone_cname_returns_only_cname(self):
        self.assert_positive('external.example.test', 'A',
                             {rr('external.example.test', 3600, 'CNAME', 'www.example.org.')})

    def test_cname_loop_terminates(self):
        loop = {rr('loop1.example.test', 3600, 'CNAME', 'loop2.example.test.'),
                rr('loop2.example.test', 3600, 'CNAME', 'loop1.example.test.')}
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                t0 = time.monotonic()
                r = self.ask('loop1.example.test', 'A', tcp)
                self.assertLess(time.monotonic() - t0, 2.0)
                self.assertIn(r.rcode(), (dns.rcode.NOERROR, dns.rcode.SERVFAIL), str(r))
                self.assertEqual(bt.rrs(r.answer), loop, str(r))
        self.assertTrue(self.authd.alive())

    # ---- wildcards (RFC 4592) ------------------------------------------------------------

    def test_wildcard_synthesis_uses_query_name(self):
        # RFC 4592 §3.3.1: the owner of a synthesized record is the query name, not '*'.
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                r = self.ask('foo.wild.example.test', 'A', tcp)
                self.assert_answer(r, {rr('foo.wild.example.test', 3600, 'A', '192.0.2.50')})
                self.assertEqual(r.answer[0].name.to_text(), 'foo.wild.example.test.')
        self.assert_positive('foo.wild.example.test', 'TXT',
                             {rr('foo.wild.example.test', 3600, 'TXT', '"wildcard"')})
        # The wildcard matches more than one label (closest encloser wild.example.test).
        self.assert_positive('a.b.wild.example.test', 'A',
                             {rr('a.b.wild.example.test', 3600, 'A', '192.0.2.50')})

    def test_explicit_name_beats_wildcard(self):
        self.assert_positive('host.wild.example.test', 'A',
                             {rr('host.wild.example.test', 3600, 'A', '192.0.2.51')})
        # host.wild exists, so the wildcard's TXT does not apply to it (RFC 4592 §2.2.1).
        self.assert_nodata('host.wild.example.test', 'TXT')

    def test_wildcard_nodata_for_missing_type(self):
        self.assert_nodata('foo.wild.example.test', 'MX')

    def test_wildcard_owner_queried_literally(self):
        self.assert_positive('*.wild.example.test', 'A',
                             {rr('*.wild.example.test', 3600, 'A', '192.0.2.50')})
        # RFC 4592 §2.2.1: closest encloser of ghost.*.wild is *.wild; no *.*.wild: NXDOMAIN.
        self.assert_nxdomain('ghost.*.wild.example.test')

    def test_wildcard_parent_is_empty_non_terminal(self):
        self.assert_nodata('wild.example.test', 'A')

    def test_wildcard_cname_synthesized_and_followed(self):
        self.assert_positive('foo.wc.example.test', 'A',
                             {rr('foo.wc.example.test', 3600, 'CNAME', 'www.example.test.'),
                              WWW_A})

    def test_empty_non_terminal_blocks_wildcard(self):
        # RFC 4592 §2.2.1 / §3.3.1: y.w2 exists (empty non-terminal), so it is NODATA, and it is
        # the closest encloser of z.y.w2, which has no *.y.w2: NXDOMAIN, *.w2 does not apply.
        self.assert_nodata('y.w2.example.test', 'A')
        self.assert_nxdomain('z.y.w2.example.test')
        self.assert_positive('foo.w2.example.test', 'A',
                             {rr('foo.w2.example.test', 3600, 'A', '192.0.2.60')})
        self.assert_positive('x.y.w2.example.test', 'A',
                             {rr('x.y.w2.example.test', 3600, 'A', '192.0.2.61')})

    # ---- zone selection ------------------------------------------------------------------

    def test_refused_outside_every_zone(self):
        self.assert_refused('www.example.org', 'A')
        self.assert_refused('test', 'SOA')
        self.assert_refused('.', 'NS')

    def test_most_specific_zone_answers(self):
        self.assert_positive('www.deep.example.test', 'A',
                             {rr('www.deep.example.test', 3600, 'A', '192.0.2.101')})
        self.assert_positive('deep.example.test', 'SOA',
                             {rr('deep.example.test', 3600, 'SOA', SOA_DEEP[3])})
        self.assert_nxdomain('nx.deep.example.test', 'A', soa=SOA_DEEP)
        self.assert_positive('www.other.test', 'A',
                             {rr('www.other.test', 3600, 'A', '192.0.2.202')})

    # ---- case ----------------------------------------------------------------------------

    def test_query_name_case_preserved(self):
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                r = self.ask('wWw.ExAmPlE.tEsT', 'A', tcp)
                self.assert_answer(r, {WWW_A})
                self.assertEqual(r.answer[0].name.to_text(), 'wWw.ExAmPlE.tEsT.', str(r))

    def test_mixed_case_owner_matches_any_case(self):
        answer = {rr('mixed.example.test', 3600, 'A', '192.0.2.70')}
        for qname in ('mixed.example.test', 'MIXED.EXAMPLE.TEST', 'MiXeD.example.test'):
            with self.subTest(qname=qname):
                self.assert_positive(qname, 'A', answer)

    # ---- ANY (RFC 8482) ------------------------------------------------------------------

    def test_any_answered_minimally(self):
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                r = self.ask('example.test', 'ANY', tcp)
                self.assertEqual(r.rcode(), dns.rcode.NOERROR, str(r))
                self.assertTrue(r.flags & dns.flags.AA)
                self.assertGreater(len(r.answer), 0, 'RFC 8482 §4: ANY answer must not be empty')
                # RFC 8482 §4.1: one RRset of the name, or §4.2: a synthesized HINFO.
                kinds = {(rrset.name.to_text().lower(), rrset.rdtype) for rrset in r.answer}
                self.assertEqual(len(kinds), 1, 'more than one RRset:\n%s' % r)
                if r.answer[0].rdtype != dns.rdatatype.HINFO:
                    self.assertLessEqual(bt.rrs(r.answer), APEX_DATA, str(r))

    def test_any_at_name_without_data_is_nxdomain(self):
        self.assert_nxdomain('nonexistent.example.test', 'ANY')

    # ---- EDNS (RFC 6891) -----------------------------------------------------------------

    def test_edns_opt_echoed_with_server_payload(self):
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                r = self.ask('www.example.test', 'A', tcp, payload=4096)
                self.assert_answer(r, {WWW_A})
                self.assertEqual(r.edns, 0, 'no OPT in reply to an EDNS query:\n%s' % r)
                self.assertEqual(r.payload, bt.EDNS_PAYLOAD, str(r))

    def test_no_opt_without_edns(self):
        # RFC 6891 §7: no OPT in the response when the query had none.
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                r = self.ask('www.example.test', 'A', tcp, edns=False)
                self.assert_answer(r, {WWW_A})
                self.assertEqual(r.edns, -1, str(r))
                self.assertEqual(bt.header(r.wire)[5], 0, 'ARCOUNT must be 0:\n%s' % r)

    def test_edns_version_1_gets_badvers(self):
        # RFC 6891 §6.1.3: unsupported version -> BADVERS (16, upper bits in OPT), OPT version 0.
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                r = self.ask('www.example.test', 'A', tcp, version=1)
                self.assertEqual(dns.rcode.to_text(r.rcode()), 'BADVERS', str(r))
                self.assertEqual(r.edns, 0, str(r))
                self.assertEqual(len(r.answer), 0, str(r))

    def test_do_bit_copied(self):
        # RFC 3225 §3: the DO bit of the query is copied into the response.
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                r = self.ask('www.example.test', 'A', tcp, dnssec_ok=True)
                self.assert_answer(r, {WWW_A})
                self.assertTrue(r.ednsflags & dns.flags.DO, str(r))

    def test_big_rrset_truncated_over_udp(self):
        # RFC 2181 §9 / RFC 1035 §4.2.1: TC=1, whole records only, never above the client's
        # payload (no EDNS: 512; EDNS below 512 counts as 512, RFC 6891 §6.2.5).
        for edns, payload, limit in ((True, 1232, 1232), (True, 4096, 4096), (False, 0, 512),
                                     (True, 100, 512)):
            with self.subTest(edns=edns, payload=payload):
                q = bt.make_query('big.example.test', 'TXT', edns=edns, payload=payload or 512)
                wire = bt.udp_exchange(ADDR, self.authd.port, q.to_wire(), expect_id=q.id)
                self.assertIsNotNone(wire, 'no UDP answer')
                self.assertLessEqual(len(wire), limit)
                self.assertTrue(bt.header(wire)[1] & 0x0200, 'TC not set')
                self.assertEqual(bt.rcode_of(wire), 0)
                r = bt.parse(wire)  # whole records only: parsing must succeed
                self.assertLess(bt.header(wire)[3], BIG_RECORDS)
                for rec in bt.rrs(r.answer):
                    self.assertEqual(rec[:3], ('big.example.test.', 3600, 'TXT'))

    def test_big_rrset_complete_over_tcp(self):
        r = self.ask('big.example.test', 'TXT', True)
        self.assertFalse(r.flags & dns.flags.TC)
        self.assertEqual(len(bt.rrs(r.answer)), BIG_RECORDS, str(r))
        self.assertGreater(len(r.wire), 4096)

    # ---- raw and malformed input ---------------------------------------------------------

    def raw(self, wire, tcp):
        if tcp:
            return bt.tcp_exchange(ADDR, self.authd.port, wire)[0]
        reply = bt.udp_exchange(ADDR, self.authd.port, wire,
                                expect_id=struct.unpack('!H', wire[:2])[0])
        self.assertIsNotNone(reply, 'no reply to %r' % wire)
        return reply

    def test_formerr_for_two_questions(self):
        # RFC 9619: QDCOUNT > 1 is a format error.
        q = bt.wire_name('www.example.test') + struct.pack('!HH', 1, 1)
        wire = bt.raw_query(0x1234, None, qdcount=2, questions=[q, q])
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                reply = self.raw(wire, tcp)
                self.assertEqual(bt.header(reply)[0], 0x1234)
                self.assertTrue(bt.is_response(reply))
                self.assertEqual(bt.rcode_of(reply), dns.rcode.FORMERR)

    def test_formerr_for_truncated_question(self):
        wire = bt.raw_query(0x2345, 'www.example.test')[:12 + 9]
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                reply = self.raw(wire, tcp)
                self.assertEqual(bt.header(reply)[0], 0x2345)
                self.assertTrue(bt.is_response(reply))
                self.assertEqual(bt.rcode_of(reply), dns.rcode.FORMERR)

    def test_notimp_for_unknown_opcode(self):
        # RFC 1035 §4.1.1: NOTIMP for a kind of query the server does not support.
        for opcode in (3, 15):
            wire = bt.raw_query(0x3400 + opcode, 'www.example.test', flags=(opcode << 11))
            for tcp in TRANSPORTS:
                with self.subTest(transport=bt.transport_name(tcp)):
                    with self.subTest(opcode=opcode):
                        reply = self.raw(wire, tcp)
                        self.assertEqual(bt.header(reply)[0], 0x3400 + opcode)
                        self.assertTrue(bt.is_response(reply))
                        self.assertEqual(bt.opcode_of(reply), opcode)
                        self.assertEqual(bt.rcode_of(reply), dns.rcode.NOTIMP)

    def test_tcp_pipelining(self):
        # RFC 7766 §6.2.1.1: several queries on one connection, sent together, all answered.
        names = ['www.example.test', 'mail.example.test', 'nonexistent.example.test']
        queries = [bt.make_query(n, 'A', qid=0x4000 + i) for i, n in enumerate(names)]
        replies = bt.tcp_exchange(ADDR, self.authd.port, [q.to_wire() for q in queries])
        by_id = {bt.header(w)[0]: bt.parse(w) for w in replies}
        self.assertEqual(set(by_id), {0x4000, 0x4001, 0x4002})
        self.assertEqual(bt.rrs(by_id[0x4000].answer), {WWW_A})
        self.assertEqual(bt.rrs(by_id[0x4001].answer),
                         {rr('mail.example.test', 3600, 'A', '192.0.2.25')})
        self.assertEqual(by_id[0x4002].rcode(), dns.rcode.NXDOMAIN)

    def test_malformed_burst_then_normal_query_answered(self):
        rng = random.Random(4242)
        packets = malformed_packets(rng, 2000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            for i, p in enumerate(packets):
                try:
                    s.sendto(p, (ADDR, self.authd.port))
                except BlockingIOError:
                    time.sleep(0.01)
                if i % 200 == 0:
                    drain(s)
                    time.sleep(0.005)
            time.sleep(0.2)
            drain(s)
        for p in tcp_garbage(rng):
            try:
                with socket.create_connection((ADDR, self.authd.port), timeout=2) as c:
                    c.sendall(p)
                    c.settimeout(0.5)
                    try:
                        c.recv(65535)
                    except (socket.timeout, ConnectionError):
                        pass
            except ConnectionError:
                pass
        self.assertTrue(self.authd.alive(), 'daemon died:\n%s' % self.authd.log_text())
        for tcp in TRANSPORTS:
            with self.subTest(transport=bt.transport_name(tcp)):
                self.assert_answer(self.ask('www.example.test', 'A', tcp), {WWW_A})
        st = self.authd.ctl('stats')
        self.assertEqual(st.returncode, 0, st.stderr)
        stats = bt.parse_kv(st.stdout)
        dropped = int(stats.get('dropped_malformed', 0)) + int(stats.get('answers_formerr', 0))
        self.assertGreater(dropped, 0, st.stdout)


def drain(s):
    while True:
        try:
            s.recv(65535)
        except (BlockingIOError, socket.timeout, ConnectionRefusedError):
            return


def malformed_packets(rng, count):
    """Bounded mix of garbage: random bytes, truncated headers and questions, compression loops,
    oversized labels and names, absurd section counts, responses, bad or doubled OPT."""
    qname = bt.wire_name('www.example.test')
    question = qname + struct.pack('!HH', 1, 1)
    opt = b'\x00' + struct.pack('!HHIH', 41, 1232, 0, 0)
    kinds = [
        lambda i: bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 600))),
        lambda i: struct.pack('!HH', i, 0x0100)[:rng.randrange(0, 12)],
        lambda i: bt.raw_query(i, 'www.example.test')[:12 + rng.randrange(0, len(question))],
        # question name is a pointer to itself / two pointers to each other
        lambda i: bt.raw_query(i, None, questions=[b'\xc0\x0c' + struct.pack('!HH', 1, 1)]),
        lambda i: bt.raw_query(i, None, questions=[b'\x01a\xc0\x0e\xc0\x0c' +
                                                   struct.pack('!HH', 1, 1)]),
        # pointer forward past the end of the message
        lambda i: bt.raw_query(i, None, questions=[b'\xc3\xff' + struct.pack('!HH', 1, 1)]),
        # label longer than 63 (0x40 is an extended label type) and a name over 255 bytes
        lambda i: bt.raw_query(i, None, questions=[b'\x40' + b'a' * 64 + b'\x00' +
                                                   struct.pack('!HH', 1, 1)]),
        lambda i: bt.raw_query(i, None, questions=[(b'\x3f' + b'a' * 63) * 5 + b'\x00' +
                                                   struct.pack('!HH', 1, 1)]),
        # absurd counts with nothing behind them
        lambda i: bt.raw_query(i, 'www.example.test', qdcount=65535, ancount=65535,
                               nscount=65535, arcount=65535),
        lambda i: bt.raw_query(i, 'www.example.test', arcount=65535),
        lambda i: bt.raw_query(i, 'www.example.test', qdcount=0),
        # a response (QR=1) must never be answered
        lambda i: bt.raw_query(i, 'www.example.test', flags=0x8000),
        # truncated OPT, two OPTs (RFC 6891 §6.1.1: FORMERR)
        lambda i: bt.raw_query(i, 'www.example.test', arcount=1, tail=opt[:5]),
        lambda i: bt.raw_query(i, 'www.example.test', arcount=2, tail=opt + opt),
        # OPT with an option length running past the end
        lambda i: bt.raw_query(i, 'www.example.test', arcount=1,
                               tail=opt[:-2] + struct.pack('!HHH', 8, 10, 0xffff)),
    ]
    return [kinds[i % len(kinds)](i & 0xffff) for i in range(count)]


def tcp_garbage(rng):
    """Bad TCP streams: zero length, length then close, junk, a header only."""
    return [
        b'\x00\x00',
        b'\xff\xff' + b'abc',
        b'\x00\x05abcde',
        b'\x00\x0c' + struct.pack('!6H', 1, 0x0100, 1, 0, 0, 0),
        bytes(rng.getrandbits(8) for _ in range(300)),
    ]


if __name__ == '__main__':
    bt.main()
