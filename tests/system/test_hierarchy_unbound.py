# The loopback test hierarchy (hierarchy.py) checked server by server, then resolved through by
# Unbound from the generated root hints: the reference a resolver's tests compare against, and
# the template of the ballast-resolver system and differential tests.
"""Loopback hierarchy + Unbound 1.17 (Debian). Needs port 53 on 127.0.0.100-108 (root)."""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402
import hierarchy  # noqa: E402

import dns.flags  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

# Unbound gives up a silent server after infra-cache-max-rtt (3 s here) plus the backoff before
# it: about 5 s; the client waits longer than that but far less than Unbound's default (~30 s).
SILENT_PATIENCE = 15.0
H = None
TMPDIR = None


def setUpModule():
    global H, TMPDIR
    TMPDIR = bt.make_tmpdir('ballast-hierarchy-')
    H = hierarchy.Hierarchy(TMPDIR, port=53).start()


def tearDownModule():
    if H is not None:
        H.stop()
    if TMPDIR is not None:
        bt.remove_tmpdir(TMPDIR)


def rcode_text(msg):
    return dns.rcode.to_text(msg.rcode())


class HierarchyServersTest(unittest.TestCase):
    """Each server of the hierarchy answers (or fails) the way its role says."""

    def ask(self, role, qname, rdtype, tcp=False):
        return bt.query(H.addresses[role], H.port, qname, rdtype, tcp=tcp)

    def test_root_hints_name_the_root_server_of_the_root_zone(self):
        with open(H.root_hints) as f:
            hints = [line.split() for line in f if line.strip() and not line.startswith(';')]
        self.assertEqual([['.', '3600000', 'NS', 'A.ROOT-SERVERS.TEST.'],
                          ['A.ROOT-SERVERS.TEST.', '3600000', 'A', H.addresses['root']]], hints)
        r = self.ask('root', '.', 'NS')
        self.assertTrue(r.flags & dns.flags.AA)
        self.assertEqual({('.', 'NS', 'a.root-servers.test.')}, hierarchy.answer_set(r))
        r = self.ask('tld', 'a.root-servers.test.', 'A')
        self.assertEqual({('a.root-servers.test.', 'A', H.addresses['root'])},
                         hierarchy.answer_set(r))

    def test_root_refers_test_to_the_tld_server_with_glue(self):
        r = self.ask('root', 'www.example.test.', 'A')
        self.assertEqual('NOERROR', rcode_text(r))
        self.assertFalse(r.flags & dns.flags.AA)
        self.assertEqual({('test.', 3600 * 48, 'NS', 'ns.test.')}, bt.rrs(r.authority))
        self.assertIn(('ns.test.', 3600 * 48, 'A', H.addresses['tld']), bt.rrs(r.additional))

    def test_example_test_delegates_sub_with_glue(self):
        r = self.ask('example', 'www.sub.example.test.', 'A')
        self.assertFalse(r.flags & dns.flags.AA)
        self.assertEqual({('sub.example.test.', 3600, 'NS', 'ns.sub.example.test.')},
                         bt.rrs(r.authority))
        self.assertIn(('ns.sub.example.test.', 3600, 'A', H.addresses['sub']),
                      bt.rrs(r.additional))

    def test_oob_test_is_delegated_without_glue_to_a_name_in_other_test(self):
        r = self.ask('tld', 'www.oob.test.', 'A')
        self.assertEqual({('oob.test.', 3600, 'NS', 'ns.other.test.')}, bt.rrs(r.authority))
        self.assertEqual(set(), {t for t in bt.rrs(r.additional) if t[2] in ('A', 'AAAA')})
        r = self.ask('other', 'ns.other.test.', 'A')
        self.assertEqual({('ns.other.test.', 'A', H.addresses['other'])}, hierarchy.answer_set(r))
        r = self.ask('other', 'www.oob.test.', 'A')
        self.assertEqual({('www.oob.test.', 'A', '192.0.2.150')}, hierarchy.answer_set(r))

    def test_lame_server_refuses_lame_test(self):
        r = self.ask('tld', 'www.lame.test.', 'A')
        self.assertIn(('lame.test.', 3600, 'NS', 'ns.lame.test.'), bt.rrs(r.authority))
        for tcp in (False, True):
            r = self.ask('lame', 'www.lame.test.', 'A', tcp=tcp)
            self.assertEqual('REFUSED', rcode_text(r))
            self.assertEqual([], r.answer)

    def test_silent_server_answers_nothing_over_udp_or_tcp(self):
        wire = bt.make_query('www.silent.test.', 'A').to_wire()
        self.assertIsNone(bt.udp_exchange(H.addresses['silent'], H.port, wire, timeout=1.0))
        with self.assertRaises(socket.timeout):
            bt.tcp_exchange(H.addresses['silent'], H.port, wire, timeout=1.0)

    def test_tcponly_server_truncates_udp_and_answers_tcp(self):
        r = self.ask('tcponly', 'www.tcponly.test.', 'A')
        self.assertTrue(r.flags & dns.flags.TC)
        self.assertEqual([], r.answer)
        self.assertEqual('www.tcponly.test.', r.question[0].name.to_text())
        r = self.ask('tcponly', 'www.tcponly.test.', 'A', tcp=True)
        self.assertFalse(r.flags & dns.flags.TC)
        self.assertTrue(r.flags & dns.flags.AA)
        self.assertEqual({('www.tcponly.test.', 'A', '192.0.2.180')}, hierarchy.answer_set(r))
        r = self.ask('tcponly', 'nope.tcponly.test.', 'A', tcp=True)
        self.assertEqual('NXDOMAIN', rcode_text(r))
        self.assertEqual('SOA', dns.rdatatype.to_text(r.authority[0].rdtype))


class UnboundOnHierarchyTest(unittest.TestCase):
    """Unbound resolves through the hierarchy from the root hints alone."""

    @classmethod
    def setUpClass(cls):
        cls._ctx = hierarchy.unbound_resolver(H, H.addresses['resolver'])
        cls.unbound = cls._ctx.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls._ctx.__exit__(None, None, None)

    def resolve(self, qname, rdtype, timeout=bt.QUERY_TIMEOUT, tcp=False):
        r = self.unbound.query(qname, rdtype, timeout=timeout, tcp=tcp)
        self.assertTrue(r.flags & dns.flags.RA, 'Unbound did not set RA:\n%s' % r)
        return r

    def assert_answer(self, qname, rdtype, rcode, answer, **kw):
        r = self.resolve(qname, rdtype, **kw)
        self.assertEqual(rcode, rcode_text(r), '%s %s:\n%s' % (qname, rdtype, r))
        if answer is not None:
            self.assertEqual(answer, hierarchy.answer_set(r), '%s %s:\n%s' % (qname, rdtype, r))
        return r

    def test_www_example_test_a_and_aaaa(self):
        self.assert_answer('www.example.test.', 'A', 'NOERROR',
                           {('www.example.test.', 'A', '192.0.2.10')})
        self.assert_answer('www.example.test.', 'AAAA', 'NOERROR',
                           {('www.example.test.', 'AAAA', '2001:db8::10')})

    def test_cname_chain_across_three_zones_is_followed_to_the_end(self):
        self.assert_answer('chain.example.test.', 'A', 'NOERROR', {
            ('chain.example.test.', 'CNAME', 'chain.other.test.'),
            ('chain.other.test.', 'CNAME', 'www.sub.example.test.'),
            ('www.sub.example.test.', 'A', '192.0.2.110')})

    def test_cname_to_another_leaf_zone(self):
        self.assert_answer('to-other.example.test.', 'A', 'NOERROR', {
            ('to-other.example.test.', 'CNAME', 'www.other.test.'),
            ('www.other.test.', 'A', '192.0.2.202')})

    def test_names_in_the_delegated_subzone(self):
        self.assert_answer('www.sub.example.test.', 'A', 'NOERROR',
                           {('www.sub.example.test.', 'A', '192.0.2.110')})
        self.assert_answer('host.sub.example.test.', 'TXT', 'NOERROR',
                           {('host.sub.example.test.', 'TXT', '"in sub.example.test"')})
        self.assert_answer('nope.sub.example.test.', 'A', 'NXDOMAIN', set())

    def test_out_of_bailiwick_name_server_is_resolved(self):
        self.assert_answer('www.oob.test.', 'A', 'NOERROR',
                           {('www.oob.test.', 'A', '192.0.2.150')})

    def test_nxdomain_in_example_test_carries_its_soa(self):
        r = self.assert_answer('nope.example.test.', 'A', 'NXDOMAIN', set())
        self.assertEqual(['example.test.'], [rrset.name.to_text() for rrset in r.authority
                                             if rrset.rdtype == dns.rdatatype.SOA])

    def test_lame_delegation_gives_servfail(self):
        self.assert_answer('www.lame.test.', 'A', 'SERVFAIL', set())

    def test_silent_server_gives_servfail_within_the_client_timeout(self):
        start = time.monotonic()
        self.assert_answer('www.silent.test.', 'A', 'SERVFAIL', set(), timeout=SILENT_PATIENCE)
        self.assertLess(time.monotonic() - start, SILENT_PATIENCE)

    def test_tcp_only_server_is_retried_over_tcp(self):
        self.assert_answer('www.tcponly.test.', 'A', 'NOERROR',
                           {('www.tcponly.test.', 'A', '192.0.2.180')})

    def test_every_shared_case_matches(self):
        """hierarchy.CASES is what ballast-resolver's tests expect: Unbound agrees with all."""
        for qname, rdtype, rcode, answer in hierarchy.CASES:
            with self.subTest(qname=qname, rdtype=rdtype):
                self.assert_answer(qname, rdtype, rcode, answer, timeout=SILENT_PATIENCE)


if __name__ == '__main__':
    bt.main()
