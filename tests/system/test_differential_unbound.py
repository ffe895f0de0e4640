# Differential test: Unbound (Debian) and ballast-resolver side by side on the same loopback
# hierarchy (net 127.0.6, port 53, as Unbound needs), the same query list to both, RCODE and
# answer section compared as sets with TTLs ignored.
"""ballast-resolver vs Unbound on the hierarchy. Needs root (port 53) and /usr/sbin/unbound."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402
import hierarchy  # noqa: E402
import test_resolver as tr  # noqa: E402

import dns.flags  # noqa: E402

NET = '127.0.6'
BALLAST_ADDR = NET + '.50'
# Unbound gives up a silent server after about 5 s (infra-cache-max-rtt 3 s, hierarchy.py);
# ballast-resolver within its 10 s query timeout.
PATIENCE = tr.PATIENCE

# Records added to the temporary copies of the hierarchy's zones for the extra queries.
EXTRA_RECORDS = {
    'example.test.zone': [
        '; added by test_differential_unbound.py: CNAMEs whose target does not exist',
        'dangling            IN CNAME nope.other.test.',
        'dangling-local      IN CNAME nope.example.test.',
    ],
}

# (qname as sent, qtype). Beyond hierarchy.CASES: mixed case, AAAA and NODATA, NXDOMAIN below
# delegated zones, CNAMEs to NXDOMAIN (RFC 6604 §2.1: the RCODE is that of the last name of the
# chain, and the CNAMEs stay in the answer), an empty non-terminal, wildcards, apex data.
EXTRA_QUERIES = [
    ('WwW.ExAmPlE.TeSt.', 'A'),
    ('CHAIN.example.TEST.', 'A'),
    ('www.Sub.Example.Test.', 'AAAA'),
    ('www.other.test.', 'AAAA'),
    ('mail.example.test.', 'AAAA'),
    ('www.oob.test.', 'AAAA'),
    ('to-sub.example.test.', 'AAAA'),
    ('www.tcponly.test.', 'AAAA'),
    ('a.b.nope.sub.example.test.', 'A'),
    ('nope.oob.test.', 'A'),
    ('nope.other.test.', 'TXT'),
    ('nope.tcponly.test.', 'A'),
    ('dangling.example.test.', 'A'),
    ('dangling-local.example.test.', 'A'),
    ('wild.example.test.', 'A'),  # empty non-terminal above *.wild: NODATA (RFC 8020 §2)
    ('x.y.wild.example.test.', 'TXT'),
    ('example.test.', 'NS'),
    ('sub.example.test.', 'NS'),
    ('sub.example.test.', 'SOA'),
    ('oob.test.', 'NS'),
    ('ns.other.test.', 'A'),
    ('test.', 'SOA'),
]

# Queries where the two may legitimately differ, with the reason. Empty: none found so far.
KNOWN_DIFFERENCES = {}

H = None
TMPDIR = None
UNBOUND_CTX = None
UNBOUND = None
BALLAST = None


class DiffHierarchy(hierarchy.Hierarchy):
    """The hierarchy with EXTRA_RECORDS appended to the copies of its zone files."""

    def _write_zone(self, zone, fname):
        path = super()._write_zone(zone, fname)
        if fname in EXTRA_RECORDS:
            with open(path, 'a') as f:
                f.write('\n' + '\n'.join(EXTRA_RECORDS[fname]) + '\n')
        return path


def setUpModule():
    global H, TMPDIR, UNBOUND_CTX, UNBOUND, BALLAST
    bt.require_binaries(tr.RESOLVER, bt.AUTHD, bt.TOOL)
    TMPDIR = bt.make_tmpdir('ballast-diff-unbound-')
    try:
        H = DiffHierarchy(os.path.join(TMPDIR, 'hierarchy'), port=53, net=NET,
                          authd=bt.AUTHD).start()
        UNBOUND_CTX = hierarchy.unbound_resolver(H, H.addresses['resolver'])
        UNBOUND = UNBOUND_CTX.__enter__()
        BALLAST = tr.start_resolver(os.path.join(TMPDIR, 'ballast'), BALLAST_ADDR, H)
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    global UNBOUND_CTX
    if BALLAST is not None:
        BALLAST.stop()
    if UNBOUND_CTX is not None:
        UNBOUND_CTX.__exit__(None, None, None)
        UNBOUND_CTX = None
    if H is not None:
        H.stop()
    if TMPDIR is not None:
        bt.remove_tmpdir(TMPDIR)


def summary(msg):
    return (tr.rcode_text(msg), hierarchy.answer_set(msg))


class DifferentialTest(unittest.TestCase):

    @classmethod
    def tearDownClass(cls):
        # Last: ballast-resolver still alive after every query, and it exits cleanly.
        global BALLAST
        r, BALLAST = BALLAST, None
        tr.stop_checked(r)

    def both(self, qname, rdtype, tcp=False):
        u = UNBOUND.query(qname, rdtype, tcp=tcp, timeout=PATIENCE)
        b = BALLAST.query(qname, rdtype, tcp=tcp, timeout=PATIENCE)
        return u, b

    def assert_same(self, qname, rdtype, tcp=False):
        u, b = self.both(qname, rdtype, tcp=tcp)
        msg = '%s %s over %s\n--- unbound:\n%s\n--- ballast-resolver:\n%s' % (
            qname, rdtype, bt.transport_name(tcp), u, b)
        self.assertTrue(b.flags & dns.flags.RA, msg)
        # RFC 1035 §4.1.2 (the question is copied) with RFC 4343 §4 (case is kept).
        self.assertEqual(qname, b.question[0].name.to_text(), msg)
        self.assertEqual(summary(u)[0], summary(b)[0], 'RCODE differs: ' + msg)
        if summary(u)[0] != 'SERVFAIL':
            self.assertEqual(summary(u)[1], summary(b)[1], 'answer differs: ' + msg)
        return u, b

    def test_shared_cases_agree_with_unbound_and_with_the_expected_answers(self):
        for qname, rdtype, rcode, answer in hierarchy.CASES:
            with self.subTest(qname=qname, rdtype=rdtype):
                u, b = self.assert_same(qname, rdtype)
                self.assertEqual(rcode, tr.rcode_text(b), b)
                if answer is not None:
                    self.assertEqual(answer, hierarchy.answer_set(b), b)

    def test_extra_queries_agree_with_unbound(self):
        for qname, rdtype in EXTRA_QUERIES:
            if (qname, rdtype) in KNOWN_DIFFERENCES:
                continue
            with self.subTest(qname=qname, rdtype=rdtype):
                self.assert_same(qname, rdtype)

    def test_cname_to_nxdomain_keeps_the_cname_with_nxdomain(self):
        # RFC 6604 §2.1 and RFC 1034 §4.3.2 step 3a: the chain is in the answer, the RCODE is
        # that of its last name.
        for qname, target in (('dangling.example.test.', 'nope.other.test.'),
                              ('dangling-local.example.test.', 'nope.example.test.')):
            with self.subTest(qname=qname):
                u, b = self.assert_same(qname, 'A')
                self.assertEqual('NXDOMAIN', tr.rcode_text(b), b)
                self.assertEqual({(qname, 'CNAME', target)}, hierarchy.answer_set(b), b)

    def test_tcp_answers_agree(self):
        for qname, rdtype in [('www.example.test.', 'A'), ('chain.example.test.', 'A'),
                              ('nope.sub.example.test.', 'A'), ('www.tcponly.test.', 'A')]:
            with self.subTest(qname=qname, rdtype=rdtype):
                self.assert_same(qname, rdtype, tcp=True)


def main():
    # Meson counts exit code 77 as a skipped test.
    if not os.access(hierarchy.UNBOUND, os.X_OK):
        print('SKIP: unbound is not installed (%s)' % hierarchy.UNBOUND)
        sys.exit(77)
    if os.geteuid() != 0:
        print('SKIP: Unbound needs the hierarchy on port 53, which needs root')
        sys.exit(77)
    bt.main()


if __name__ == '__main__':
    main()
