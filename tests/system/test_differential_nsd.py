# Differential test on 127.0.0.12: NSD (the reference) and ballast-authd serve the same zones;
# the same queries go to both over UDP and TCP and the answers must agree (rcode, flags, every
# section as a set of records with TTLs). Legitimate differences are listed with their RFC.
"""ballast-authd versus NSD 4 on zones/*.zone."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402

import dns.flags  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

ADDR = '127.0.0.12'

# (query name, type, options). Options are make_query keywords; names cover every answer case
# of zones/example.test.zone (see zones/README.md).
QUERIES = [
    # existing data
    ('www.example.test', 'A', {}),
    ('www.example.test', 'AAAA', {}),
    ('example.test', 'SOA', {}),
    ('example.test', 'NS', {}),
    ('example.test', 'MX', {}),
    ('example.test', 'TXT', {}),
    ('_sip._tcp.example.test', 'SRV', {}),
    ('short.example.test', 'A', {}),
    ('mail.example.test', 'AAAA', {}),
    ('ns1.example.test', 'A', {}),
    # NXDOMAIN and NODATA
    ('nonexistent.example.test', 'A', {}),
    ('a.b.nonexistent.example.test', 'TXT', {}),
    ('www.example.test', 'MX', {}),
    ('example.test', 'A', {}),
    # empty non-terminals
    ('ent.example.test', 'A', {}),
    ('b.ent.example.test', 'A', {}),
    ('a.b.ent.example.test', 'A', {}),
    ('zz.ent.example.test', 'A', {}),
    ('_tcp.example.test', 'SRV', {}),
    # wildcards (RFC 4592)
    ('wild.example.test', 'A', {}),
    ('foo.wild.example.test', 'A', {}),
    ('foo.wild.example.test', 'TXT', {}),
    ('foo.wild.example.test', 'MX', {}),
    ('a.b.wild.example.test', 'A', {}),
    ('host.wild.example.test', 'A', {}),
    ('host.wild.example.test', 'TXT', {}),
    ('*.wild.example.test', 'A', {}),
    ('ghost.*.wild.example.test', 'A', {}),
    ('foo.wc.example.test', 'A', {}),
    ('foo.wc.example.test', 'AAAA', {}),
    ('w2.example.test', 'A', {}),
    ('y.w2.example.test', 'A', {}),
    ('z.y.w2.example.test', 'A', {}),
    ('foo.w2.example.test', 'A', {}),
    ('x.y.w2.example.test', 'A', {}),
    # delegation
    ('sub.example.test', 'NS', {}),
    ('sub.example.test', 'A', {}),
    ('sub.example.test', 'DS', {}),
    ('www.sub.example.test', 'A', {}),
    ('a.b.sub.example.test', 'AAAA', {}),
    ('ns.sub.example.test', 'A', {}),
    # CNAME
    ('alias.example.test', 'A', {}),
    ('alias.example.test', 'CNAME', {}),
    ('chain1.example.test', 'A', {}),
    ('chain1.example.test', 'AAAA', {}),
    ('chain1.example.test', 'MX', {}),
    ('chain2.example.test', 'A', {}),
    ('external.example.test', 'A', {}),
    ('external.example.test', 'CNAME', {}),
    ('loop1.example.test', 'A', {}),
    ('loop2.example.test', 'AAAA', {}),
    # case
    ('mixed.example.test', 'A', {}),
    ('MIXED.EXAMPLE.TEST', 'A', {}),
    ('wWw.ExAmPlE.tEsT', 'A', {}),
    ('ChAiN1.example.test', 'A', {}),
    # truncation and EDNS
    ('big.example.test', 'TXT', {'payload': 1232}),
    ('big.example.test', 'TXT', {'edns': False}),
    ('www.example.test', 'A', {'edns': False}),
    ('www.example.test', 'A', {'payload': 512}),
    ('www.example.test', 'A', {'dnssec_ok': True}),
    ('www.example.test', 'A', {'version': 1}),
    ('nonexistent.example.test', 'A', {'edns': False}),
    # zone selection
    ('www.example.org', 'A', {}),
    ('test', 'SOA', {}),
    ('.', 'NS', {}),
    ('deep.example.test', 'SOA', {}),
    ('deep.example.test', 'NS', {}),
    ('www.deep.example.test', 'A', {}),
    ('nx.deep.example.test', 'A', {}),
    ('www.other.test', 'A', {}),
    ('nx.other.test', 'A', {}),
    ('ns1.other.test', 'A', {}),
]

# RFC 8482 §4.1: ANY may be answered with one RRset (or everything); compared as a subset.
ANY_QUERIES = ['example.test', 'www.example.test', 'foo.wild.example.test', 'alias.example.test',
               'deep.example.test', 'nonexistent.example.test', 'www.sub.example.test']


def describe(qname, rdtype, opts, tcp):
    extra = ' '.join('%s=%s' % kv for kv in sorted(opts.items()))
    return '%s %s %s%s' % (qname, rdtype, bt.transport_name(tcp), (' ' + extra) if extra else '')


def opt_summary(r):
    """OPT as compared: presence, version, payload, DO. EDNS options are not compared: NSD adds
    Extended DNS Errors (e.g. EDE 20 to REFUSED), which RFC 8914 §3 makes optional."""
    if r.edns < 0:
        return None
    return (r.edns, r.payload, bool(r.ednsflags & dns.flags.DO))


def additional_targets(answer):
    """Lowercase names whose addresses additional section processing may add: MX exchanges,
    SRV targets and NS names of the answer."""
    out = set()
    for rrset in answer:
        for rd in rrset:
            if rrset.rdtype == dns.rdatatype.MX:
                out.add(rd.exchange.to_text().lower())
            elif rrset.rdtype == dns.rdatatype.SRV:
                out.add(rd.target.to_text().lower())
            elif rrset.rdtype == dns.rdatatype.NS:
                out.add(rd.target.to_text().lower())
    return out


class DifferentialNsd(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not os.access(bt.NSD, os.X_OK):
            raise unittest.SkipTest('nsd is not installed (%s); apt-get install nsd' % bt.NSD)
        bt.require_binaries(bt.AUTHD)
        cls.tmp = bt.make_tmpdir()
        cls.nsd_tmp = os.path.join(cls.tmp, 'nsd')
        os.mkdir(cls.nsd_tmp)
        zones = bt.standard_zone_paths()
        cls.nsd = None
        cls.authd = None
        try:
            cls.nsd = bt.start_nsd(cls.nsd_tmp, ADDR, zones)
            cls.authd = bt.start_authd_config(cls.tmp, ADDR, zones)
        except BaseException:
            cls.stop_all()
            raise

    @classmethod
    def stop_all(cls):
        errors = []
        if cls.authd is not None:
            rc = cls.authd.stop()
            if rc != 0:
                errors.append('ballast-authd exit code %r:\n%s' % (rc, cls.authd.log_text()))
        if cls.nsd is not None:
            cls.nsd.stop()
        bt.remove_tmpdir(cls.tmp)
        if errors:
            raise AssertionError('\n'.join(errors))

    @classmethod
    def tearDownClass(cls):
        cls.stop_all()

    def both(self, qname, rdtype, tcp, opts):
        return (self.authd.query(qname, rdtype, tcp=tcp, **opts),
                self.nsd.query(qname, rdtype, tcp=tcp, **opts))

    def assert_same_header(self, b, n, what):
        msg = '%s\n--- ballast:\n%s\n--- nsd:\n%s' % (what, b, n)
        self.assertEqual(dns.rcode.to_text(b.rcode()), dns.rcode.to_text(n.rcode()), msg)
        self.assertEqual(dns.flags.to_text(b.flags), dns.flags.to_text(n.flags), msg)
        self.assertEqual([q.to_text() for q in b.question], [q.to_text() for q in n.question],
                         msg)
        self.assertEqual(opt_summary(b), opt_summary(n), msg)

    def assert_same(self, b, n, what):
        self.assert_same_header(b, n, what)
        msg = '%s\n--- ballast:\n%s\n--- nsd:\n%s' % (what, b, n)
        if n.flags & dns.flags.TC:
            # RFC 2181 §9: a truncated answer holds any whole-record prefix (NSD sends none);
            # only TC and rcode (above) are compared; test_authd checks sizes and records.
            return
        self.assertEqual(bt.rrs(b.answer), bt.rrs(n.answer), 'answer: ' + msg)
        self.assertEqual(bt.rrs(b.authority), bt.rrs(n.authority), 'authority: ' + msg)
        self.assert_same_additional(b, n, msg)

    def assert_same_additional(self, b, n, msg):
        """Equal additional sections, with one documented exception. NSD runs with
        minimal-responses (no optional data); Ballast adds the addresses of MX exchanges and SRV
        targets it holds, the additional section processing of RFC 1035 §3.3.9 and RFC 2782
        (optional, RFC 1034 §4.3.2 step 6). Each extra record must be an A/AAAA of a target
        named in the answer and equal to NSD's own answer for that name and type."""
        extra = bt.rrs(b.additional) - bt.rrs(n.additional)
        self.assertLessEqual(bt.rrs(n.additional), bt.rrs(b.additional), 'additional: ' + msg)
        if not extra:
            return
        self.assertTrue(b.flags & dns.flags.AA, 'extra additional data in a referral: ' + msg)
        targets = additional_targets(b.answer)
        for owner, _, rdtype, _ in sorted(extra):
            self.assertIn(rdtype, ('A', 'AAAA'), 'additional: ' + msg)
            self.assertIn(owner, targets, 'additional for a name not in the answer: ' + msg)
            ref = self.nsd.query(owner, rdtype, tcp=True)
            expected = {r for r in bt.rrs(ref.answer) if r[0] == owner and r[2] == rdtype}
            got = {r for r in bt.rrs(b.additional) if r[0] == owner and r[2] == rdtype}
            self.assertEqual(got, expected, 'additional %s %s: %s' % (owner, rdtype, msg))

    def test_same_answers_as_nsd(self):
        for qname, rdtype, opts in QUERIES:
            for tcp in (False, True):
                what = describe(qname, rdtype, opts, tcp)
                with self.subTest(query=what):
                    b, n = self.both(qname, rdtype, tcp, opts)
                    self.assert_same(b, n, what)

    def test_any_is_subset_of_nsd(self):
        """RFC 8482 §4.1 lets a server return one RRset for ANY; NSD may return more. Same rcode
        and flags; each RRset Ballast returns equals NSD's answer for that name and type."""
        for qname in ANY_QUERIES:
            for tcp in (False, True):
                what = describe(qname, 'ANY', {}, tcp)
                with self.subTest(query=what):
                    b, n = self.both(qname, 'ANY', tcp, {})
                    self.assert_same_header(b, n, what)
                    msg = '%s\n--- ballast:\n%s\n--- nsd:\n%s' % (what, b, n)
                    if n.rcode() != dns.rcode.NOERROR or not n.answer:
                        self.assertEqual(bt.rrs(b.answer), bt.rrs(n.answer), msg)
                        self.assertEqual(bt.rrs(b.authority), bt.rrs(n.authority), msg)
                        continue
                    self.assertGreater(len(b.answer), 0, 'RFC 8482 §4: not empty; ' + msg)
                    for rrset in b.answer:
                        if rrset.rdtype == dns.rdatatype.HINFO:  # RFC 8482 §4.2
                            continue
                        ref = self.nsd.query(qname, dns.rdatatype.to_text(rrset.rdtype),
                                             tcp=True)
                        self.assertEqual(bt.rrs([rrset]), bt.rrs(ref.answer), msg)


def main():
    if not os.access(bt.NSD, os.X_OK):
        # Meson counts exit code 77 as a skipped test.
        print('SKIP: nsd is not installed (%s)' % bt.NSD)
        sys.exit(77)
    bt.main()


if __name__ == '__main__':
    main()
