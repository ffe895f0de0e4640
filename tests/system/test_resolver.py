# System test of ballast-resolver on the loopback hierarchy (hierarchy.py, net 127.0.4): every
# shared case over UDP and TCP, the cache, RD=0, ACL, malformed input, reload, flush, forwarding,
# budgets, QNAME minimisation and shutdown. Also the resolver helpers the other resolver tests use.
"""ballast-resolver against the loopback hierarchy (127.0.4.x, one port for every server)."""

import contextlib
import os
import random
import re
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402
import hierarchy  # noqa: E402

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.rrset  # noqa: E402

RESOLVER = os.path.join(bt.BUILD_DIR, 'resolver', 'ballast-resolver')
NET = '127.0.4'
PORTS = (53535, 53536, 53537, 53538)  # the first one free on every hierarchy address is used
# The default query-timeout is 10 s (docs/resolver-configuration.md); a client waiting for a
# SERVFAIL about a silent server must wait longer than that.
QUERY_TIMEOUT_S = 10.0
PATIENCE = QUERY_TIMEOUT_S + 3.0
RELOAD_TIMEOUT = 10.0

H = None
TMPDIR = None


# ---- helpers shared with test_differential_unbound.py and test_spoofing.py ------------------

class BallastResolver(bt.Process):
    """ballast-resolver started by a test and ready (event=ready logged)."""

    def __init__(self, argv, addr, port, control=None, config=None):
        super().__init__(argv)
        self.addr = addr
        self.port = port
        self.control = control
        self.config = config

    def query(self, qname, rdtype, tcp=False, timeout=bt.QUERY_TIMEOUT, **kw):
        return bt.query(self.addr, self.port, qname, rdtype, tcp=tcp, timeout=timeout, **kw)

    def ctl(self, *args, timeout=10):
        return bt.run_tool('-s', self.control, *args, timeout=timeout)

    def stats(self):
        res = self.ctl('stats')
        if res.returncode != 0:
            raise AssertionError('ballast stats failed (rc=%d): %s%s' % (
                res.returncode, res.stdout, res.stderr))
        return {k: int(v) for k, v in bt.parse_kv(res.stdout).items()}


def start_resolver(tmpdir, addr, h=None, args=(), config_text=None, port=None, workers=2,
                   control=True, attempts=3):
    """Start ballast-resolver on addr (a free port unless given), iterating from h's root hints
    when h is given. config_text: YAML written to tmpdir/resolver.yaml and passed with -c (the
    listen address always comes from --listen). Retries on a port clash."""
    bt.require_binaries(RESOLVER, bt.TOOL)
    os.makedirs(tmpdir, exist_ok=True)
    control_path = os.path.join(tmpdir, 'control.sock') if control else None
    config_path = None
    if config_text is not None:
        config_path = os.path.join(tmpdir, 'resolver.yaml')
        bt.write_file(config_path, config_text)
    last = None
    for _ in range(attempts):
        p = port or bt.free_port(addr)
        argv = [RESOLVER, '--listen', '%s@%d' % (addr, p), '--workers', str(workers)]
        if config_path:
            argv += ['-c', config_path]
        if control_path:
            argv += ['--control', control_path]
        if h is not None:
            argv += ['--root-hints', h.root_hints, '--allow-private-upstreams',
                     '--upstream-port', str(h.port)]
        argv += list(args)
        r = BallastResolver(argv, addr, p, control=control_path, config=config_path)
        try:
            r.wait_for('event=ready')
            return r
        except AssertionError as e:
            last = e
            r.kill()
            if port or 'in use' not in r.log_text().lower():
                raise
    raise last


def stop_checked(r):
    """Stop r with SIGTERM; fail unless it exits 0 (a sanitizer report or a crash does not)."""
    rc = r.stop()
    if rc != 0:
        raise AssertionError('ballast-resolver did not exit cleanly (rc=%s):\n%s' % (
            rc, r.log_text()))


@contextlib.contextmanager
def running_resolver(*a, **kw):
    r = start_resolver(*a, **kw)
    try:
        yield r
    except BaseException:
        r.stop()
        raise
    stop_checked(r)


def start_hierarchy(tmpdir, net, ports=PORTS, cls=hierarchy.Hierarchy, **kw):
    """A hierarchy on the first port of `ports` that is free on all its addresses."""
    last = None
    for port in ports:
        try:
            return cls(tmpdir, port=port, net=net, authd=bt.AUTHD, **kw).start()
        except AssertionError as e:
            if 'is not free' not in str(e):
                raise
            last = e
    raise last


def rcode_text(msg):
    return dns.rcode.to_text(msg.rcode())


def udp_from(src, addr, port, wire, timeout=bt.QUERY_TIMEOUT):
    """Send one datagram from source address src; the reply (wire) or None on timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        s.settimeout(timeout)
        s.sendto(wire, (addr, port))
        try:
            return s.recvfrom(65535)[0]
        except socket.timeout:
            return None


def tcp_from(src, addr, port, wire, timeout=bt.QUERY_TIMEOUT):
    """One length-prefixed query over TCP from source address src: the reply (wire) or None
    when the server closes or stays silent."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((src, 0))
        s.settimeout(timeout)
        s.connect((addr, port))
        s.sendall(struct.pack('!H', len(wire)) + wire)
        try:
            (length,) = struct.unpack('!H', bt._recv_exact(s, 2))
            return bt._recv_exact(s, length)
        except (socket.timeout, ConnectionError):
            return None


def query_from(src, r, qname, rdtype, timeout=bt.QUERY_TIMEOUT, tcp=False):
    """Query resolver r from source address src: the parsed reply, or None (no answer)."""
    q = bt.make_query(qname, rdtype)
    wire = (tcp_from if tcp else udp_from)(src, r.addr, r.port, q.to_wire(), timeout=timeout)
    if wire is None:
        return None
    msg = bt.parse(wire)
    if msg.id != q.id:
        raise AssertionError('reply id %d for query id %d' % (msg.id, q.id))
    return msg


def describe(qname, rdtype, msg):
    return '%s %s:\n%s' % (qname, rdtype, msg)


# ---- module setup ----------------------------------------------------------------------------

def setUpModule():
    global H, TMPDIR
    bt.require_binaries(RESOLVER, bt.AUTHD, bt.TOOL)
    TMPDIR = bt.make_tmpdir('ballast-resolver-')
    H = start_hierarchy(os.path.join(TMPDIR, 'hierarchy'), NET)


def tearDownModule():
    if H is not None:
        H.stop()
    if TMPDIR is not None:
        bt.remove_tmpdir(TMPDIR)


_counter = [0]


def fresh_dir(name):
    _counter[0] += 1
    # short: the control socket path must fit in sun_path (108 bytes)
    path = os.path.join(TMPDIR, '%s-%d' % (name.replace('test_', '')[:24], _counter[0]))
    os.makedirs(path)
    return path


class ResolverTestCase(unittest.TestCase):
    """Each test gets its own resolver (an empty cache) on ADDR unless it starts others."""

    ADDR = NET + '.50'
    ARGS = ()
    CONFIG = None

    def setUp(self):
        self.dir = fresh_dir(self.id().rsplit('.', 1)[-1])
        self.r = start_resolver(self.dir, self.ADDR, H, args=self.ARGS, config_text=self.CONFIG)

    def tearDown(self):
        stop_checked(self.r)

    def assert_answer(self, r, qname, rdtype, rcode, answer, tcp=False, timeout=PATIENCE):
        msg = r.query(qname, rdtype, tcp=tcp, timeout=timeout)
        self.assertEqual(rcode, rcode_text(msg), describe(qname, rdtype, msg))
        if answer is not None:
            self.assertEqual(answer, hierarchy.answer_set(msg), describe(qname, rdtype, msg))
        return msg


# ---- every shared case, UDP and TCP ----------------------------------------------------------

class SharedCasesTest(unittest.TestCase):
    """hierarchy.CASES (what Unbound answers too) through ballast-resolver, over UDP and over
    TCP, each transport on its own resolver so both resolve from an empty cache."""

    def run_cases(self, tcp):
        d = fresh_dir('cases-' + bt.transport_name(tcp))
        with running_resolver(d, NET + '.60', H) as r:
            for qname, rdtype, rcode, answer in hierarchy.CASES:
                with self.subTest(qname=qname, rdtype=rdtype, transport=bt.transport_name(tcp)):
                    msg = r.query(qname, rdtype, tcp=tcp, timeout=PATIENCE)
                    self.assertTrue(msg.flags & dns.flags.RA, describe(qname, rdtype, msg))
                    self.assertFalse(msg.flags & dns.flags.AA, describe(qname, rdtype, msg))
                    self.assertEqual(rcode, rcode_text(msg), describe(qname, rdtype, msg))
                    if answer is not None:
                        self.assertEqual(answer, hierarchy.answer_set(msg),
                                         describe(qname, rdtype, msg))

    def test_every_case_over_udp(self):
        self.run_cases(tcp=False)

    def test_every_case_over_tcp(self):
        self.run_cases(tcp=True)


# ---- resolution paths --------------------------------------------------------------------------

class ResolutionTest(ResolverTestCase):

    def test_nxdomain_carries_the_soa_of_the_zone(self):
        # RFC 2308 §3: a negative answer carries the SOA of the zone for negative caching.
        msg = self.assert_answer(self.r, 'nope.example.test.', 'A', 'NXDOMAIN', set())
        soas = [rrset for rrset in msg.authority if rrset.rdtype == dns.rdatatype.SOA]
        self.assertEqual(['example.test.'], [s.name.to_text().lower() for s in soas], msg)
        # RFC 2308 §5: its TTL is at most the SOA MINIMUM (300 in example.test).
        self.assertLessEqual(soas[0].ttl, 300, msg)

    def test_nodata_carries_the_soa_of_the_zone(self):
        msg = self.assert_answer(self.r, 'www.example.test.', 'MX', 'NOERROR', set())
        self.assertIn('example.test.', [s.name.to_text().lower() for s in msg.authority
                                        if s.rdtype == dns.rdatatype.SOA], msg)

    def test_lame_delegation_gives_servfail(self):
        self.assert_answer(self.r, 'www.lame.test.', 'A', 'SERVFAIL', set())

    def test_silent_server_gives_servfail_within_the_query_timeout(self):
        start = time.monotonic()
        self.assert_answer(self.r, 'www.silent.test.', 'A', 'SERVFAIL', set(), timeout=PATIENCE)
        self.assertLess(time.monotonic() - start, QUERY_TIMEOUT_S + 1.0)

    def test_tcp_only_server_is_asked_again_over_tcp_after_tc(self):
        before = self.r.stats()
        self.assert_answer(self.r, 'www.tcponly.test.', 'A', 'NOERROR',
                           {('www.tcponly.test.', 'A', '192.0.2.180')})
        after = self.r.stats()
        self.assertGreater(after['upstream_tcp'], before['upstream_tcp'], after)
        self.assertGreater(after['upstream_tc_fallbacks'], before['upstream_tc_fallbacks'], after)

    def test_out_of_bailiwick_name_server_without_glue_is_resolved(self):
        self.assert_answer(self.r, 'www.oob.test.', 'A', 'NOERROR',
                           {('www.oob.test.', 'A', '192.0.2.150')})

    def test_cname_chain_across_three_zones_is_followed(self):
        self.assert_answer(self.r, 'chain.example.test.', 'A', 'NOERROR', {
            ('chain.example.test.', 'CNAME', 'chain.other.test.'),
            ('chain.other.test.', 'CNAME', 'www.sub.example.test.'),
            ('www.sub.example.test.', 'A', '192.0.2.110')})

    def test_question_case_is_echoed(self):
        # RFC 1035 §4.1.2 / RFC 4343 §4: the question is copied; names compare without case.
        msg = self.assert_answer(self.r, 'WwW.ExAmPlE.TeSt.', 'A', 'NOERROR',
                                 {('www.example.test.', 'A', '192.0.2.10')})
        self.assertEqual('WwW.ExAmPlE.TeSt.', msg.question[0].name.to_text())


# ---- cache -------------------------------------------------------------------------------------

class CacheTest(ResolverTestCase):

    def upstream(self, stats):
        return stats['upstream_udp'] + stats['upstream_tcp']

    def test_second_query_is_answered_from_cache_without_upstream_queries(self):
        expect = {('www.example.test.', 'A', '192.0.2.10')}
        self.assert_answer(self.r, 'www.example.test.', 'A', 'NOERROR', expect)
        first = self.r.stats()
        self.assertGreater(first['upstream_udp'], 0, first)
        self.assert_answer(self.r, 'www.example.test.', 'A', 'NOERROR', expect)
        second = self.r.stats()
        self.assertEqual(first['answers_from_cache'] + 1, second['answers_from_cache'], second)
        self.assertEqual(first['upstream_udp'], second['upstream_udp'], second)
        self.assertEqual(first['upstream_tcp'], second['upstream_tcp'], second)

    def test_negative_answer_is_cached(self):
        self.assert_answer(self.r, 'nope.example.test.', 'A', 'NXDOMAIN', set())
        first = self.r.stats()
        self.assert_answer(self.r, 'nope.example.test.', 'A', 'NXDOMAIN', set())
        second = self.r.stats()
        self.assertEqual(first['answers_from_cache'] + 1, second['answers_from_cache'], second)
        self.assertEqual(self.upstream(first), self.upstream(second), second)

    def test_ttl_counts_down_between_two_queries(self):
        first = self.r.query('www.example.test.', 'A')
        self.assertEqual(3600, first.answer[0].ttl, first)  # fresh from the authority
        time.sleep(2.2)
        second = self.r.query('www.example.test.', 'A')
        self.assertEqual('NOERROR', rcode_text(second))
        self.assertLessEqual(second.answer[0].ttl, 3600 - 2, second)
        self.assertGreaterEqual(second.answer[0].ttl, 3600 - 4, second)

    def test_rd0_query_is_answered_from_cache_only(self):
        msg = self.r.query('www.other.test.', 'A', timeout=PATIENCE)  # control: RD=1 works
        self.assertEqual('NOERROR', rcode_text(msg))
        # An uncached name with RD=0: no records and nothing sent upstream.
        before = self.r.stats()
        q = bt.make_query('www.example.test.', 'A')
        q.flags &= ~dns.flags.RD
        wire = bt.udp_exchange(self.r.addr, self.r.port, q.to_wire(), expect_id=q.id)
        self.assertIsNotNone(wire, 'no answer to an RD=0 query')
        msg = bt.parse(wire)
        self.assertEqual([], msg.answer, msg)
        self.assertNotEqual('NXDOMAIN', rcode_text(msg), msg)  # the name does exist
        time.sleep(0.3)
        after = self.r.stats()
        self.assertEqual(self.upstream(before), self.upstream(after), after)
        # Once cached (RD=1 query), RD=0 gets the record, still with nothing sent upstream.
        self.assert_answer(self.r, 'www.example.test.', 'A', 'NOERROR',
                           {('www.example.test.', 'A', '192.0.2.10')})
        before = self.r.stats()
        q = bt.make_query('www.example.test.', 'A')
        q.flags &= ~dns.flags.RD
        msg = bt.parse(bt.udp_exchange(self.r.addr, self.r.port, q.to_wire(), expect_id=q.id))
        self.assertEqual('NOERROR', rcode_text(msg), msg)
        self.assertEqual({('www.example.test.', 'A', '192.0.2.10')}, hierarchy.answer_set(msg))
        self.assertEqual(self.upstream(before), self.upstream(self.r.stats()))

    def assert_goes_upstream(self, qname, rdtype, answer, upstream_expected):
        before = self.r.stats()
        self.assert_answer(self.r, qname, rdtype, 'NOERROR', answer)
        after = self.r.stats()
        if upstream_expected:
            self.assertGreater(self.upstream(after), self.upstream(before),
                               '%s %s was answered from cache' % (qname, rdtype))
        else:
            self.assertEqual(self.upstream(after), self.upstream(before),
                             '%s %s went upstream' % (qname, rdtype))

    def ok_ctl(self, *args):
        res = self.r.ctl(*args)
        self.assertEqual(0, res.returncode, '%s: %s%s' % (args, res.stdout, res.stderr))

    def test_flush_name_zone_and_all_send_the_next_query_upstream(self):
        www = {('www.example.test.', 'A', '192.0.2.10')}
        sub = {('www.sub.example.test.', 'A', '192.0.2.110')}
        other = {('www.other.test.', 'A', '192.0.2.202')}
        self.assert_goes_upstream('www.example.test.', 'A', www, True)
        self.assert_goes_upstream('www.sub.example.test.', 'A', sub, True)
        self.assert_goes_upstream('www.other.test.', 'A', other, True)
        self.assert_goes_upstream('www.example.test.', 'A', www, False)

        self.ok_ctl('flush', 'www.example.test')
        self.assert_goes_upstream('www.example.test.', 'A', www, True)
        self.assert_goes_upstream('www.sub.example.test.', 'A', sub, False)  # not at the name

        self.ok_ctl('flush-zone', 'example.test')
        self.assert_goes_upstream('www.sub.example.test.', 'A', sub, True)  # below the name
        self.assert_goes_upstream('www.other.test.', 'A', other, False)  # outside the zone

        self.ok_ctl('flush-all')
        self.assert_goes_upstream('www.other.test.', 'A', other, True)


# ---- malformed and unsupported queries ------------------------------------------------------

class MalformedTest(ResolverTestCase):

    def test_garbage_burst_then_a_normal_query_is_answered(self):
        rnd = random.Random(20261123)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(2000):
                n = rnd.choice((0, 1, 11, 12, 13, 17, 30, 64, 300, 512, 1500))
                data = bytes(rnd.getrandbits(8) for _ in range(n))
                if i % 3 == 0 and n >= 12:
                    # A plausible header (QR=0, QDCOUNT=1) with garbage behind it reaches the
                    # question parser instead of being dropped at the header.
                    data = data[:2] + b'\x01\x00\x00\x01' + data[6:]
                s.sendto(data, (self.r.addr, self.r.port))
                if i % 200 == 199:
                    time.sleep(0.01)  # bounded; lets the receive buffer drain
        # Over TCP too: a length-prefixed garbage message, then a half message and a close.
        with contextlib.suppress(OSError):
            with socket.create_connection((self.r.addr, self.r.port), timeout=2) as c:
                c.sendall(b'\x00\x10' + bytes(range(16)) + b'\x00\x40\x01\x02')
                c.settimeout(2)
                with contextlib.suppress(socket.timeout):
                    c.recv(65535)
        time.sleep(0.5)
        self.assertTrue(self.r.alive(), self.r.log_text())
        self.assert_answer(self.r, 'www.example.test.', 'A', 'NOERROR',
                           {('www.example.test.', 'A', '192.0.2.10')})
        self.assert_answer(self.r, 'www.example.test.', 'A', 'NOERROR',
                           {('www.example.test.', 'A', '192.0.2.10')}, tcp=True)
        self.assertTrue(self.r.alive(), self.r.log_text())

    def test_two_questions_get_formerr(self):
        q1 = bt.wire_name('www.example.test') + b'\x00\x01\x00\x01'
        q2 = bt.wire_name('www.other.test') + b'\x00\x01\x00\x01'
        wire = bt.raw_query(0x4242, None, qdcount=2, questions=[q1, q2])
        reply = bt.udp_exchange(self.r.addr, self.r.port, wire, expect_id=0x4242)
        self.assertIsNotNone(reply, 'no answer to QDCOUNT=2')
        self.assertTrue(bt.is_response(reply))
        self.assertEqual(dns.rcode.FORMERR, bt.rcode_of(reply))

    def test_opcode_5_gets_notimp(self):
        # RFC 1035 §4.1.1: an opcode the server does not implement gets NOTIMP (4).
        wire = bt.raw_query(0x4343, 'example.test', qtype=6, flags=(5 << 11))
        reply = bt.udp_exchange(self.r.addr, self.r.port, wire, expect_id=0x4343)
        self.assertIsNotNone(reply, 'no answer to opcode 5')
        self.assertTrue(bt.is_response(reply))
        self.assertEqual(dns.rcode.NOTIMP, bt.rcode_of(reply))
        self.assertEqual(5, bt.opcode_of(reply))


# ---- access control ------------------------------------------------------------------------

ACL_CONFIG = '''access-control:
  - { prefix: 127.0.0.1/32, action: allow }
  - { prefix: 127.0.0.3/32, action: deny }
'''


class AclTest(ResolverTestCase):
    CONFIG = ACL_CONFIG

    def test_only_the_allowed_client_is_answered(self):
        ok = query_from('127.0.0.1', self.r, 'www.example.test.', 'A')
        self.assertIsNotNone(ok)
        self.assertEqual('NOERROR', rcode_text(ok), ok)
        self.assertEqual({('www.example.test.', 'A', '192.0.2.10')}, hierarchy.answer_set(ok))
        # No match means refuse (docs/resolver-configuration.md), even for a cached name.
        refused = query_from('127.0.0.2', self.r, 'www.example.test.', 'A')
        self.assertIsNotNone(refused, 'no answer for a refused client')
        self.assertEqual('REFUSED', rcode_text(refused), refused)
        self.assertEqual([], refused.answer)
        refused = query_from('127.0.0.2', self.r, 'www.example.test.', 'A', tcp=True)
        self.assertIsNotNone(refused, 'no TCP answer for a refused client')
        self.assertEqual('REFUSED', rcode_text(refused), refused)
        ok = query_from('127.0.0.1', self.r, 'www.example.test.', 'A', tcp=True)
        self.assertEqual('NOERROR', rcode_text(ok), ok)
        stats = self.r.stats()
        self.assertGreaterEqual(stats['acl_refused'], 2, stats)

    def test_denied_client_gets_no_answer_at_all(self):
        self.assertIsNone(query_from('127.0.0.3', self.r, 'www.example.test.', 'A', timeout=2.0))
        self.assertIsNone(query_from('127.0.0.3', self.r, 'www.example.test.', 'A', timeout=2.0,
                                     tcp=True))
        self.assertTrue(self.r.alive())


# ---- reload ----------------------------------------------------------------------------------

RELOAD_BASE = '''server:
  log-level: info
access-control:
  - { prefix: 127.0.0.0/8, action: allow }
'''


class ReloadTest(ResolverTestCase):
    CONFIG = RELOAD_BASE

    def write_config(self, text):
        bt.write_file(self.r.config, text)

    def answered_from(self, src, qname='www.example.test.'):
        msg = query_from(src, self.r, qname, 'A', timeout=PATIENCE)
        self.assertIsNotNone(msg, 'no answer for %s from %s' % (qname, src))
        return rcode_text(msg)

    def test_sighup_and_control_reload_apply_acl_and_forward_changes(self):
        self.assertEqual('NOERROR', self.answered_from('127.0.0.2'))

        # SIGHUP: refuse 127.0.0.2.
        self.write_config(RELOAD_BASE + '  - { prefix: 127.0.0.2/32, action: refuse }\n')
        since = self.r.line_count()
        self.r.send_signal(signal.SIGHUP)
        self.r.wait_for('event=reload', since=since, all_of=('result=ok',),
                        timeout=RELOAD_TIMEOUT)
        self.assertEqual('REFUSED', self.answered_from('127.0.0.2'))
        self.assertEqual('NOERROR', self.answered_from('127.0.0.1'))

        # ballast reload: the ACL back as it was, and example.test forwarded to a server that
        # refuses it (other.test's authority), so names there now fail.
        other = '%s@%d' % (H.addresses['other'], H.port)
        self.write_config(RELOAD_BASE + 'forward:\n  - zone: example.test\n    to: [ "%s" ]\n'
                          % other)
        res = self.r.ctl('reload')
        self.assertEqual(0, res.returncode, res.stdout + res.stderr)
        self.assertEqual(0, self.r.ctl('flush-all').returncode)
        self.assertEqual('NOERROR', self.answered_from('127.0.0.2', 'www.other.test.'))
        self.assertEqual('SERVFAIL', self.answered_from('127.0.0.1', 'txt.example.test.'))

    def test_bad_config_is_refused_and_the_old_one_keeps_serving(self):
        self.write_config(RELOAD_BASE + '  - { prefix: 127.0.0.2/32, action: refuse }\n')
        self.assertEqual(0, self.r.ctl('reload').returncode)
        self.assertEqual('REFUSED', self.answered_from('127.0.0.2'))

        self.write_config(RELOAD_BASE + 'resolution:\n  qname-minimization: true\n')
        res = self.r.ctl('reload')
        self.assertEqual(1, res.returncode, res.stdout + res.stderr)
        self.assertIn('qname-minimization', res.stdout + res.stderr)
        # Same through SIGHUP: refused, logged, still serving.
        since = self.r.line_count()
        self.r.send_signal(signal.SIGHUP)
        self.r.wait_for('event=reload', since=since, all_of=('result=refused',),
                        timeout=RELOAD_TIMEOUT)
        self.assertTrue(self.r.alive())
        self.assertEqual('REFUSED', self.answered_from('127.0.0.2'))  # old ACL still applies
        self.assertEqual('NOERROR', self.answered_from('127.0.0.1'))
        stats = self.r.stats()
        self.assertEqual(2, stats['reloads_failed'], stats)
        self.assertEqual(1, stats['reloads_ok'], stats)


# ---- Prometheus metrics ----------------------------------------------------------------------

class MetricsTest(unittest.TestCase):
    """server.metrics: GET /metrics in the Prometheus text format, counters that follow the
    queries, 404 elsewhere; off unless configured."""

    ADDR = NET + '.53'

    def scrape(self, port, path='/metrics'):
        with urllib.request.urlopen('http://%s:%d%s' % (self.ADDR, port, path), timeout=5) as resp:
            self.assertEqual(resp.headers['Content-Type'].split(';')[0], 'text/plain')
            return resp.read().decode()

    def samples(self, text):
        out = {}
        for line in text.splitlines():
            if line and not line.startswith('#'):
                key, value = line.rsplit(' ', 1)
                out[key] = float(value) if '.' in value else int(value)
        return out

    def server_label(self, zone):
        """The server label of the hierarchy server for zone: ADDR@PORT (the port is not 53)."""
        return '%s@%d' % (H.zone_server[zone], H.port)

    def test_metrics_endpoint_follows_queries(self):
        port = bt.free_port(self.ADDR)
        d = fresh_dir('metrics')
        r = start_resolver(d, self.ADDR, H, config_text='server:\n  metrics: "%s@%d"\n' % (
            self.ADDR, port))
        try:
            before = self.samples(self.scrape(port))
            r.query('www.example.test.', 'A')
            r.query('www.example.test.', 'A')
            r.query('nope.example.test.', 'A')
            text = self.scrape(port)
            after = self.samples(text)
            self.assertIn('# TYPE ballast_resolver_queries_total counter', text)
            self.assertIn('# TYPE ballast_resolver_cache_entries gauge', text)
            q = 'ballast_resolver_queries_total{transport="udp"}'
            self.assertEqual(after[q] - before[q], 3)
            nx = 'ballast_resolver_answers_total{rcode="NXDOMAIN"}'
            self.assertEqual(after[nx] - before[nx], 1)
            cache = 'ballast_resolver_answers_by_source_total{source="cache"}'
            self.assertGreaterEqual(after[cache] - before[cache], 1)
            up = 'ballast_resolver_upstream_queries_total{transport="udp"}'
            self.assertGreater(after[up], before[up])
            self.assertGreater(after['ballast_resolver_cache_entries'], 0)
            with self.assertRaises(urllib.error.HTTPError) as cm:
                self.scrape(port, '/nothing')
            self.assertEqual(cm.exception.code, 404)
        finally:
            stop_checked(r)

    def test_metrics_have_types_latency_per_server_and_bad_cookie(self):
        port = bt.free_port(self.ADDR)
        d = fresh_dir('metrics-families')
        r = start_resolver(d, self.ADDR, H, config_text='server:\n  metrics: "%s@%d"\n' % (
            self.ADDR, port))
        try:
            before = self.samples(self.scrape(port))
            for _ in range(3):
                r.query('www.example.test.', 'AAAA')
            r.query('www.example.test.', 'A')
            r.query('www.example.test.', 'A', tcp=True)
            r.query('www.example.test.', 'SPF')  # type 99: not listed, counted as other
            text = self.scrape(port)
            after = self.samples(text)

            def delta(key):
                return after[key] - before.get(key, 0)

            by_type = 'ballast_resolver_queries_by_type_total{type="%s"}'
            self.assertIn('# TYPE ballast_resolver_queries_by_type_total counter', text)
            self.assertEqual(delta(by_type % 'AAAA'), 3)
            self.assertEqual(delta(by_type % 'A'), 2)
            self.assertEqual(delta(by_type % 'other'), 1)
            self.assertEqual(delta(by_type % 'MX'), 0)
            self.assertEqual(len([k for k in after if k.startswith(
                'ballast_resolver_queries_by_type_total{')]), 19)

            hist = 'ballast_resolver_query_duration_seconds'
            self.assertIn('# TYPE %s histogram' % hist, text)
            queries = sum(delta('ballast_resolver_queries_total{transport="%s"}' % t)
                          for t in ('udp', 'tcp'))
            self.assertEqual(queries, 6)
            self.assertEqual(delta(hist + '_count'), queries)
            buckets = [(k, v) for k, v in after.items() if k.startswith(hist + '_bucket{')]
            self.assertEqual(len(buckets), 15)
            self.assertEqual(buckets[-1][0], hist + '_bucket{le="+Inf"}')
            counts = [v for _, v in buckets]
            self.assertEqual(counts, sorted(counts), 'buckets not cumulative: %s' % buckets)
            self.assertEqual(counts[-1], after[hist + '_count'])
            self.assertGreater(after[hist + '_sum'], 0)
            self.assertLess(after[hist + '_sum'], 60)  # six loopback answers, seconds not micros

            sq = 'ballast_resolver_upstream_server_queries_total{server="%s"}'
            st = 'ballast_resolver_upstream_server_timeouts_total{server="%s"}'
            self.assertGreater(after[sq % self.server_label('.')], 0)
            self.assertGreater(after[sq % self.server_label('example.test.')], 0)
            self.assertEqual(after[st % self.server_label('example.test.')], 0)
            self.assertIn(sq % 'other', after)
            self.assertIn(st % 'other', after)
            self.assertEqual(after['ballast_resolver_upstream_bad_cookie_total'],
                             r.stats()['upstream_bad_cookie'])
            with open(os.path.join(bt.ROOT, 'docs', 'resolver.md')) as f:
                doc = f.read()
            families = re.findall(r'^# TYPE (\S+) ', text, flags=re.M)
            self.assertEqual([], [f for f in families if '`%s`' % f not in doc],
                             'metrics not documented in docs/resolver.md')
        finally:
            stop_checked(r)

    def test_metrics_are_off_by_default(self):
        port = bt.free_port(self.ADDR)
        d = fresh_dir('metrics-off')
        r = start_resolver(d, self.ADDR, H)
        try:
            with self.assertRaises(OSError):
                self.scrape(port)
        finally:
            stop_checked(r)


# ---- budgets -------------------------------------------------------------------------------

class TtlCapTest(ResolverTestCase):
    CONFIG = 'cache:\n  max-ttl: 5s\n  max-negative-ttl: 4s\n'

    def test_first_answer_already_carries_the_capped_ttl(self):
        # The authority says 3600; the first client (resolved now) sees the cap like later ones.
        for _ in range(2):
            msg = self.assert_answer(self.r, 'www.example.test.', 'A', 'NOERROR',
                                     {('www.example.test.', 'A', '192.0.2.10')})
            self.assertTrue(msg.answer, msg)
            for rrset in msg.answer:
                self.assertLessEqual(rrset.ttl, 5, msg)
        for _ in range(2):
            msg = self.assert_answer(self.r, 'nope.example.test.', 'A', 'NXDOMAIN', set())
            soas = [rrset for rrset in msg.authority if rrset.rdtype == dns.rdatatype.SOA]
            self.assertTrue(soas, msg)
            self.assertLessEqual(soas[0].ttl, 4, msg)


class OutboundBudgetTest(ResolverTestCase):
    CONFIG = 'resolution:\n  max-outbound-queries: 1\n'

    def test_one_outbound_query_is_not_enough_for_three_referrals(self):
        # www.sub.example.test needs root -> test -> example.test -> sub.example.test.
        self.assert_answer(self.r, 'www.sub.example.test.', 'A', 'SERVFAIL', set())
        stats = self.r.stats()
        self.assertLessEqual(stats['upstream_udp'] + stats['upstream_tcp'], 1, stats)


class ReferralBudgetTest(ResolverTestCase):
    CONFIG = 'resolution:\n  max-referrals: 1\n'

    def test_one_referral_is_not_enough_for_a_delegated_subzone(self):
        self.assert_answer(self.r, 'www.sub.example.test.', 'A', 'SERVFAIL', set())


# ---- QNAME minimisation ----------------------------------------------------------------------

class LoggingRoot:
    """A Python root server on addr:port that records every question and refers test. to the
    hierarchy's TLD server (with glue). The authd servers do not log queries, so this is how
    the resolver's questions to the root are seen."""

    def __init__(self, addr, port, tld_addr):
        self.addr, self.port, self.tld_addr = addr, port, tld_addr
        self.questions = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, port))
        self.stop_r, self.stop_w = socket.socketpair()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def answer(self, q):
        r = dns.message.make_response(q)
        r.flags &= ~dns.flags.RA
        qname = q.question[0].name
        test = dns.name.from_text('test.')
        ns_test = dns.name.from_text('ns.test.')
        if qname.is_subdomain(test):
            r.authority.append(dns.rrset.from_text(test, 172800, 'IN', 'NS', 'ns.test.'))
            r.additional.append(dns.rrset.from_text(ns_test, 172800, 'IN', 'A', self.tld_addr))
        elif qname == dns.name.root and q.question[0].rdtype == dns.rdatatype.NS:
            r.flags |= dns.flags.AA
            r.answer.append(dns.rrset.from_text('.', 518400, 'IN', 'NS', hierarchy.ROOT_NS))
            r.additional.append(dns.rrset.from_text(hierarchy.ROOT_NS, 518400, 'IN', 'A',
                                                    self.addr))
        else:
            r.flags |= dns.flags.AA
            r.set_rcode(dns.rcode.NXDOMAIN)
        return r

    def run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        sel.register(self.stop_r, selectors.EVENT_READ)
        while True:
            for key, _ in sel.select():
                if key.fileobj is self.stop_r:
                    return
                wire, peer = self.sock.recvfrom(65535)
                try:
                    q = dns.message.from_wire(wire)
                except Exception:
                    continue
                if not q.question:
                    continue
                with self.lock:
                    self.questions.append((q.question[0].name.to_text().lower(),
                                           dns.rdatatype.to_text(q.question[0].rdtype)))
                self.sock.sendto(self.answer(q).to_wire(), peer)

    def seen(self):
        with self.lock:
            return list(self.questions)

    def close(self):
        self.stop_w.send(b'x')
        self.thread.join(5)
        self.sock.close()
        self.stop_r.close()
        self.stop_w.close()


class QnameMinimisationTest(unittest.TestCase):
    ROOT_ADDR = NET + '.120'

    def setUp(self):
        self.dir = fresh_dir('qmin')
        self.root = LoggingRoot(self.ROOT_ADDR, H.port, H.addresses['tld'])
        self.hints = os.path.join(self.dir, 'root.hints')
        bt.write_file(self.hints, hierarchy.root_hints_text(self.ROOT_ADDR))

    def tearDown(self):
        self.root.close()

    def resolve_through_logging_root(self, *args):
        argv = ['--root-hints', self.hints, '--allow-private-upstreams',
                '--upstream-port', str(H.port)] + list(args)
        with running_resolver(os.path.join(self.dir, 'r%d' % len(args)), NET + '.53',
                              args=argv) as r:
            msg = r.query('www.sub.example.test.', 'A', timeout=PATIENCE)
            self.assertEqual('NOERROR', rcode_text(msg), msg)
            self.assertEqual({('www.sub.example.test.', 'A', '192.0.2.110')},
                             hierarchy.answer_set(msg))
        return [(name, qtype) for name, qtype in self.root.seen() if name != '.']

    def test_root_sees_only_the_tld_label(self):
        # RFC 9156 §2: the root is asked about test., never the full name; §2.1 and
        # docs/resolver.md: with QTYPE A (not NS) in relaxed mode.
        seen = self.resolve_through_logging_root()
        self.assertTrue(seen, 'the root was never asked: %s' % self.root.seen())
        self.assertEqual({('test.', 'A')}, set(seen), self.root.seen())

    def test_without_minimisation_the_root_sees_the_full_name(self):
        seen = self.resolve_through_logging_root('--no-qname-minimisation')
        self.assertIn(('www.sub.example.test.', 'A'), seen, self.root.seen())


# ---- forward and stub zones ------------------------------------------------------------------

class ConfiguredZonesTest(unittest.TestCase):
    """Forward and stub zones. The resolver under test gets a logging root as its root hints,
    so a name sent to the root instead of the configured servers is seen."""

    ROOT_ADDR = NET + '.120'

    def setUp(self):
        self.dir = fresh_dir('zones')
        self.root = LoggingRoot(self.ROOT_ADDR, H.port, H.addresses['tld'])
        self.hints = os.path.join(self.dir, 'root.hints')
        bt.write_file(self.hints, hierarchy.root_hints_text(self.ROOT_ADDR))
        self.procs = []

    def tearDown(self):
        errors = []
        for p in reversed(self.procs):
            try:
                stop_checked(p)
            except AssertionError as e:
                errors.append(str(e))
        self.root.close()
        if errors:
            self.fail('\n'.join(errors))

    def start(self, name, addr, args, h=None):
        r = start_resolver(os.path.join(self.dir, name), addr, h, args=args)
        self.procs.append(r)
        return r

    def logging_root_args(self):
        return ['--root-hints', self.hints, '--allow-private-upstreams',
                '--upstream-port', str(H.port)]

    def names_at_root(self):
        return [name for name, _ in self.root.seen() if name != '.']

    def test_pure_forwarder_answers_through_a_recursive_target(self):
        # A second ballast-resolver iterates on the hierarchy; the one under test forwards
        # everything (.) to it.
        target = self.start('target', NET + '.51', [], h=H)
        fwd = '.=%s@%d' % (target.addr, target.port)
        r = self.start('fwd', NET + '.52', ['--forward', fwd] + self.logging_root_args())
        for qname, rdtype, rcode, answer in hierarchy.CASES:
            if rcode == 'SERVFAIL':
                continue
            with self.subTest(qname=qname, rdtype=rdtype):
                msg = r.query(qname, rdtype, timeout=PATIENCE)
                self.assertEqual(rcode, rcode_text(msg), describe(qname, rdtype, msg))
                self.assertEqual(answer, hierarchy.answer_set(msg), describe(qname, rdtype, msg))
        self.assertEqual([], self.names_at_root(), 'a forwarded name went to the root')
        fwd_stats, target_stats = r.stats(), target.stats()
        self.assertGreater(fwd_stats['upstream_udp'], 0, fwd_stats)
        self.assertGreaterEqual(target_stats['queries'], fwd_stats['upstream_udp'], target_stats)

    def test_stub_zone_goes_to_its_authority_and_follows_referrals_below_it(self):
        stub = 'example.test=%s@%d' % (H.addresses['example'], H.port)
        r = self.start('stub', NET + '.52', ['--stub', stub] + self.logging_root_args())
        for qname, answer in (('www.example.test.', {('www.example.test.', 'A', '192.0.2.10')}),
                              ('www.sub.example.test.',
                               {('www.sub.example.test.', 'A', '192.0.2.110')})):
            with self.subTest(qname=qname):
                msg = r.query(qname, 'A', timeout=PATIENCE)
                self.assertEqual('NOERROR', rcode_text(msg), describe(qname, 'A', msg))
                self.assertEqual(answer, hierarchy.answer_set(msg), describe(qname, 'A', msg))
        self.assertEqual([], self.names_at_root(), 'a stub zone name went to the root')
        # A name outside the stub zone is still iterated from the (logging) root.
        msg = r.query('www.other.test.', 'A', timeout=PATIENCE)
        self.assertEqual({('www.other.test.', 'A', '192.0.2.202')}, hierarchy.answer_set(msg))
        self.assertTrue(self.names_at_root(), self.root.seen())


# ---- shutdown --------------------------------------------------------------------------------

class ShutdownTest(unittest.TestCase):

    def test_sigterm_exits_zero(self):
        r = start_resolver(fresh_dir('term'), NET + '.54', H)
        try:
            self.assertEqual('NOERROR', rcode_text(r.query('www.example.test.', 'A')))
        finally:
            rc = r.stop(signal.SIGTERM)
        self.assertEqual(0, rc, r.log_text())


if __name__ == '__main__':
    bt.main()
