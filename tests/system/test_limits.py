# Limits crossed on real daemons (issue #7, docs/limits.md): each test starts ballast-authd or
# ballast-resolver with a small limit, crosses it, sees the clear error or the counted drop, and
# checks that a normal query is still answered afterwards.
"""Every limit of docs/limits.md that no other test crosses on a running daemon."""

import os
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402
import test_resolver as tr  # noqa: E402

import dns.flags  # noqa: E402
import dns.rcode  # noqa: E402

NET = '127.0.23'
AUTHD_ADDR = NET + '.1'
RESOLVER_ADDR = NET + '.2'
HIERARCHY_NET = '127.0.24'
BIG_RRSET = 60  # A records of big.limits.test: 60 * 16 bytes, far over 512

ZONE = """$ORIGIN limits.test.
$TTL 300
@    IN SOA ns.limits.test. admin.limits.test. 1 3600 600 86400 300
@    IN NS  ns.limits.test.
ns   IN A   192.0.2.1
www  IN A   192.0.2.10
"""
BIG = ''.join('big  IN A   198.51.100.%d\n' % (i + 1) for i in range(BIG_RRSET))
ZONE_RECORDS = 4  # records of ZONE (SOA, NS, two A)

H = None
TMPDIR = None


def setUpModule():
    global TMPDIR
    bt.require_binaries(bt.AUTHD, bt.TOOL, tr.RESOLVER)
    TMPDIR = bt.make_tmpdir('ballast-limits-')


def tearDownModule():
    if H is not None:
        H.stop()
    if TMPDIR is not None:
        bt.remove_tmpdir(TMPDIR)


def hierarchy():
    """The loopback hierarchy, started by the first resolver test that needs it."""
    global H
    if H is None:
        H = tr.start_hierarchy(os.path.join(TMPDIR, 'hierarchy'), HIERARCHY_NET)
    return H


_counter = [0]


def fresh_dir(name):
    _counter[0] += 1
    path = os.path.join(TMPDIR, '%s-%d' % (name[:20], _counter[0]))  # short: sun_path
    os.makedirs(path)
    return path


def tcp_closed_within(addr, port, seconds):
    """Open a TCP connection, send nothing, and return True if the server closes it in time."""
    with socket.create_connection((addr, port), timeout=seconds) as s:
        try:
            return s.recv(1) == b''
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


# ---- ballast-authd -------------------------------------------------------------------------

class AuthdLimitsTest(unittest.TestCase):
    """One ballast-authd per test, serving limits.test with the limits the test gives."""

    def start(self, limits, zone_text=ZONE):
        self.dir = fresh_dir(self.id().rsplit('.', 1)[-1].replace('test_', ''))
        self.zone = os.path.join(self.dir, 'limits.test.zone')
        bt.write_file(self.zone, zone_text)
        self.authd = bt.start_authd_config(self.dir, AUTHD_ADDR, [('limits.test', self.zone)],
                                           limits=limits)

    def tearDown(self):
        authd = getattr(self, 'authd', None)
        if authd is not None:
            rc = authd.stop()
            self.assertEqual(rc, 0, 'ballast-authd exit code %r; log:\n%s' % (rc,
                                                                            authd.log_text()))

    def stats(self):
        res = self.authd.ctl('stats')
        self.assertEqual(res.returncode, 0, res.stderr)
        return {k: int(v) for k, v in bt.parse_kv(res.stdout).items() if v.isdigit()}

    def assert_www_answered(self):
        r = self.authd.query('www.limits.test', 'A')
        self.assertEqual(r.rcode(), dns.rcode.NOERROR, str(r))
        self.assertEqual(bt.rrs(r.answer), {bt.rr('www.limits.test.', 300, 'A', '192.0.2.10')})

    def assert_reload_refused(self, limit_key, new_name):
        """A reload of the grown zone is refused naming file and limit; the old zone serves."""
        before = self.stats()
        res = self.authd.ctl('reload')
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn(limit_key, res.stderr)
        self.assertIn(self.zone, res.stderr)
        self.authd.wait_for('event=zone_rejected', all_of=(limit_key,))
        self.assertEqual(self.stats()['reloads_failed'], before['reloads_failed'] + 1)
        r = self.authd.query(new_name, 'A')
        self.assertEqual(r.rcode(), dns.rcode.NXDOMAIN, str(r))  # the new version never served
        self.assert_www_answered()
        self.assertTrue(self.authd.alive())

    def append_zone(self, text):
        with open(self.zone, 'a') as f:
            f.write(text)

    def test_udp_answer_over_edns_udp_size_is_truncated_and_counted(self):
        self.start({'edns-udp-size': 512}, ZONE + BIG)
        before = self.stats()
        r = self.authd.query('big.limits.test', 'A', payload=4096)
        self.assertTrue(r.flags & dns.flags.TC, str(r))
        self.assertLessEqual(len(r.wire), 512)
        self.assertEqual(r.payload, 512)  # RFC 6891 §6.2.3: our own size is advertised
        self.assertEqual(self.stats()['answers_truncated'], before['answers_truncated'] + 1)
        r = self.authd.query('big.limits.test', 'A', tcp=True)
        self.assertFalse(r.flags & dns.flags.TC)
        self.assertEqual(len(bt.rrs(r.answer)), BIG_RRSET)
        self.assert_www_answered()

    def test_zone_past_max_zone_records_is_refused_on_reload(self):
        self.start({'max-zone-records': ZONE_RECORDS + 2})
        self.append_zone(''.join('n%d IN A 192.0.2.%d\n' % (i, i + 20) for i in range(3)))
        self.assert_reload_refused('max-zone-records', 'n0.limits.test')

    def test_zone_past_max_zone_size_is_refused_on_reload(self):
        self.start({'max-zone-size': len(ZONE) + 64})
        self.append_zone(''.join('pad%d IN A 192.0.2.%d\n' % (i, i + 20) for i in range(10)))
        self.assert_reload_refused('max-zone-size', 'pad0.limits.test')

    def test_include_past_max_include_depth_is_refused_on_reload(self):
        self.start({'max-include-depth': 0})
        extra = os.path.join(self.dir, 'extra.zone')
        bt.write_file(extra, 'inc IN A 192.0.2.99\n')
        self.append_zone('$INCLUDE %s\n' % extra)
        self.assert_reload_refused('max-include-depth', 'inc.limits.test')

    def test_idle_tcp_connection_closed_after_tcp_idle_timeout_and_counted(self):
        self.start({'tcp-idle-timeout': '200ms'})
        before = self.stats()
        self.assertTrue(tcp_closed_within(AUTHD_ADDR, self.authd.port, 3.0))
        deadline = time.monotonic() + 3.0
        while self.stats()['tcp_idle_closed'] == before['tcp_idle_closed']:
            self.assertLess(time.monotonic(), deadline, 'tcp_idle_closed never counted')
            time.sleep(0.05)
        self.assert_www_answered()
        r = self.authd.query('www.limits.test', 'A', tcp=True)
        self.assertEqual(r.rcode(), dns.rcode.NOERROR)

    def test_metrics_request_head_over_limit_is_closed_unanswered(self):
        # common/metrics.h: METRICS_REQUEST_MAX (8192) bytes of request head, then a close.
        self.dir = fresh_dir('metrics')
        self.zone = os.path.join(self.dir, 'limits.test.zone')
        bt.write_file(self.zone, ZONE)
        mport = bt.free_port(AUTHD_ADDR)
        self.authd = bt.start_authd_config(self.dir, AUTHD_ADDR, [('limits.test', self.zone)],
                                           metrics='%s@%d' % (AUTHD_ADDR, mport))
        with socket.create_connection((AUTHD_ADDR, mport), timeout=3) as s:
            try:
                s.sendall(b'GET /metrics HTTP/1.1\r\nX-Pad: ' + b'a' * 9000)
                reply = s.recv(4096)
            except ConnectionResetError:
                reply = b''
        self.assertEqual(reply, b'', 'an oversized request head must get no answer')
        with socket.create_connection((AUTHD_ADDR, mport), timeout=3) as s:
            s.sendall(b'GET /metrics HTTP/1.0\r\n\r\n')
            reply = b''
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        self.assertTrue(reply.startswith(b'HTTP/1.'), reply[:100])
        self.assertIn(b' 200 ', reply.split(b'\r\n', 1)[0])
        self.assert_www_answered()

    def test_metrics_connections_over_limit_are_closed(self):
        # common/metrics.h: METRICS_MAX_CONNECTIONS (16) scrapes at once; more are closed.
        self.dir = fresh_dir('metrics-conns')
        self.zone = os.path.join(self.dir, 'limits.test.zone')
        bt.write_file(self.zone, ZONE)
        mport = bt.free_port(AUTHD_ADDR)
        self.authd = bt.start_authd_config(self.dir, AUTHD_ADDR, [('limits.test', self.zone)],
                                           metrics='%s@%d' % (AUTHD_ADDR, mport))
        held = [socket.create_connection((AUTHD_ADDR, mport), timeout=3) for _ in range(16)]
        try:
            time.sleep(0.2)  # every held connection accepted before the next one
            with socket.create_connection((AUTHD_ADDR, mport), timeout=3) as extra:
                extra.settimeout(1.0)
                try:
                    self.assertEqual(extra.recv(1), b'', 'connection 17 must be closed')
                except ConnectionResetError:
                    pass
                except socket.timeout:
                    self.fail('connection 17 was kept open')
        finally:
            for s in held:
                s.close()
        deadline = time.monotonic() + 3.0
        while True:  # the held connections are gone: scrapes are served again
            try:
                with socket.create_connection((AUTHD_ADDR, mport), timeout=3) as s:
                    s.sendall(b'GET /metrics HTTP/1.0\r\n\r\n')
                    if s.recv(64).startswith(b'HTTP/1.'):
                        break
            except OSError:  # closed while the server still counts the held ones
                pass
            self.assertLess(time.monotonic(), deadline, 'metrics not served after the flood')
            time.sleep(0.1)
        self.assert_www_answered()


class AuthdStartupLimitsTest(unittest.TestCase):
    """Limits crossed by the config itself: the daemon refuses to start, naming file:line."""

    def run_authd(self, config_text):
        d = fresh_dir('startup')
        zone = os.path.join(d, 'limits.test.zone')
        bt.write_file(zone, ZONE)
        other = os.path.join(d, 'other.test.zone')
        bt.write_file(other, ZONE.replace('limits.test', 'other.test'))
        path = os.path.join(d, 'authd.yaml')
        bt.write_file(path, config_text.format(zone=zone, other=other,
                                               port=bt.free_port(AUTHD_ADDR)))
        try:
            res = subprocess.run([bt.AUTHD, '-c', path], capture_output=True, text=True,
                                 timeout=15)
        except subprocess.TimeoutExpired:
            self.fail('ballast-authd started although its config crosses a limit')
        return path, res

    def test_more_zones_than_max_zones_refused_naming_file_line(self):
        path, res = self.run_authd(
            'server:\n  listen: [ "%s@{port}" ]\nlimits:\n  max-zones: 1\nzones:\n'
            '  - name: limits.test\n    file: {zone}\n'
            '  - name: other.test\n    file: {other}\n' % AUTHD_ADDR)
        self.assertNotEqual(res.returncode, 0)
        self.assertLess(res.returncode, 128, 'crashed: %s' % res.stderr)  # not a signal
        self.assertRegex(res.stderr, r'%s:\d+: .*limit is 1, max-zones' % path)

    def test_limit_out_of_its_range_refused_naming_file_line_and_range(self):
        path, res = self.run_authd(
            'server:\n  listen: [ "%s@{port}" ]\nlimits:\n  edns-udp-size: 9000\nzones:\n'
            '  - name: limits.test\n    file: {zone}\n' % AUTHD_ADDR)
        self.assertNotEqual(res.returncode, 0)
        self.assertLess(res.returncode, 128, 'crashed: %s' % res.stderr)
        self.assertIn('%s:4:' % path, res.stderr)
        self.assertIn('between 512 and 4096', res.stderr)

    def test_config_file_over_max_config_size_refused(self):
        path, res = self.run_authd('# ' + 'x' * (16 << 20) + '\n')
        self.assertNotEqual(res.returncode, 0)
        self.assertLess(res.returncode, 128, 'crashed: %s' % res.stderr)
        self.assertIn('max-config-size', res.stderr)


# ---- ballast-resolver ----------------------------------------------------------------------

class ResolverLimitsTest(unittest.TestCase):
    """One ballast-resolver per test, iterating from the loopback hierarchy."""

    def start(self, config_text, workers=2):
        self.dir = fresh_dir(self.id().rsplit('.', 1)[-1].replace('test_', ''))
        self.r = tr.start_resolver(self.dir, RESOLVER_ADDR, hierarchy(), config_text=config_text,
                                   workers=workers)

    def tearDown(self):
        r = getattr(self, 'r', None)
        if r is not None:
            tr.stop_checked(r)
        authd = getattr(self, 'authd', None)
        if authd is not None:
            authd.stop()

    def assert_www_answered(self, tcp=False):
        msg = self.r.query('www.example.test.', 'A', tcp=tcp, timeout=tr.PATIENCE)
        self.assertEqual(dns.rcode.NOERROR, msg.rcode(), str(msg))
        self.assertIn(('www.example.test.', 'A', '192.0.2.10'), tr.hierarchy.answer_set(msg))

    def test_cname_chain_longer_than_max_cname_chain_is_servfail(self):
        # chain.example.test -> chain.other.test -> www.sub.example.test: two links.
        self.start('resolution:\n  max-cname-chain: 1\n')
        before = self.r.stats()
        msg = self.r.query('chain.example.test.', 'A', timeout=tr.PATIENCE)
        self.assertEqual(dns.rcode.SERVFAIL, msg.rcode(), str(msg))
        self.assertEqual(self.r.stats()['answers_servfail'], before['answers_servfail'] + 1)
        self.assert_www_answered()

    def test_cname_chain_within_max_cname_chain_is_followed(self):
        self.start('resolution:\n  max-cname-chain: 2\n')
        msg = self.r.query('chain.example.test.', 'A', timeout=tr.PATIENCE)
        self.assertEqual(dns.rcode.NOERROR, msg.rcode(), str(msg))
        self.assertIn(('www.sub.example.test.', 'A', '192.0.2.110'),
                      tr.hierarchy.answer_set(msg))

    def test_query_past_max_pending_is_servfail_at_once_and_counted(self):
        # One resolution in flight per worker: a query to the silent server holds it for the
        # query-timeout; the next query (nothing stale cached) is SERVFAIL at once (overload).
        self.start('resolution:\n  max-pending: 1\n  query-timeout: 3s\n', workers=1)
        before = self.r.stats()
        q = bt.make_query('www.silent.test.', 'A')
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hold:
            hold.sendto(q.to_wire(), (RESOLVER_ADDR, self.r.port))
            time.sleep(0.3)
            started = time.monotonic()
            msg = self.r.query('www.example.test.', 'A', timeout=2.0)
            self.assertEqual(dns.rcode.SERVFAIL, msg.rcode(), str(msg))
            self.assertLess(time.monotonic() - started, 1.0)
            self.assertEqual(self.r.stats()['overload'], before['overload'] + 1)
            hold.settimeout(5.0)
            self.assertEqual(dns.rcode.SERVFAIL, bt.parse(hold.recv(65535)).rcode())
        self.assert_www_answered()

    def test_idle_tcp_connection_closed_after_tcp_idle_timeout_and_counted(self):
        self.start('limits:\n  tcp-idle-timeout: 200ms\n')
        before = self.r.stats()['tcp_idle_closed']
        self.assertTrue(tcp_closed_within(RESOLVER_ADDR, self.r.port, 3.0))
        self.assertEqual(self.r.stats()['tcp_idle_closed'], before + 1)
        self.assert_www_answered(tcp=True)

    def test_tcp_connections_beyond_tcp_clients_are_closed_and_counted(self):
        self.start('limits:\n  tcp-clients: 1\n  tcp-idle-timeout: 5s\n', workers=1)
        before = self.r.stats()['tcp_refused']
        socks = [socket.create_connection((RESOLVER_ADDR, self.r.port), timeout=2)
                 for _ in range(4)]
        try:
            closed = 0
            for s in socks:
                s.settimeout(1.0)
                try:
                    closed += s.recv(1) == b''
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    closed += 1
            self.assertGreaterEqual(closed, 3, 'at most tcp-clients connections stay open')
            self.assertGreaterEqual(self.r.stats()['tcp_refused'], before + 3)
        finally:
            for s in socks:
                s.close()
        deadline = time.monotonic() + 3.0
        while True:  # once the flood has gone, TCP is served again
            try:
                self.assert_www_answered(tcp=True)
                break
            except (ConnectionError, OSError, AssertionError):
                self.assertLess(time.monotonic(), deadline, 'TCP not served after the flood')
                time.sleep(0.1)
        self.assert_www_answered()

    def test_udp_answer_over_edns_udp_size_is_truncated_and_counted(self):
        # The resolver's own answers are cut at min(client payload, limits.edns-udp-size); the
        # big RRset comes from a ballast-authd the resolver stubs limits.test to.
        adir = fresh_dir('edns-authd')
        zone = os.path.join(adir, 'limits.test.zone')
        bt.write_file(zone, ZONE + BIG)
        self.authd = bt.start_authd_config(adir, AUTHD_ADDR, [('limits.test', zone)])
        self.start('limits:\n  edns-udp-size: 512\nstub:\n  - zone: limits.test\n'
                   '    to: "%s@%d"\n' % (AUTHD_ADDR, self.authd.port))
        before = self.r.stats()['answers_truncated']
        msg = self.r.query('big.limits.test.', 'A', payload=4096, timeout=tr.PATIENCE)
        self.assertTrue(msg.flags & dns.flags.TC, str(msg))
        self.assertLessEqual(len(msg.wire), 512)
        self.assertEqual(msg.payload, 512)
        self.assertEqual(self.r.stats()['answers_truncated'], before + 1)
        full = self.r.query('big.limits.test.', 'A', tcp=True, timeout=tr.PATIENCE)
        self.assertEqual(len(bt.rrs(full.answer)), BIG_RRSET)
        self.assert_www_answered()

    def test_limit_out_of_its_range_refused_naming_file_line_and_range(self):
        d = fresh_dir('resolver-range')
        path = os.path.join(d, 'resolver.yaml')
        bt.write_file(path, 'resolution:\n  max-cname-chain: 65\n')
        res = subprocess.run([tr.RESOLVER, '--listen', '%s@%d' % (
            RESOLVER_ADDR, bt.free_port(RESOLVER_ADDR)), '-c', path], capture_output=True,
            text=True, timeout=15)
        self.assertNotEqual(res.returncode, 0)
        self.assertLess(res.returncode, 128, 'crashed: %s' % res.stderr)
        self.assertIn('%s:2:' % path, res.stderr)
        self.assertIn('max-cname-chain', res.stderr)


if __name__ == '__main__':
    unittest.main(verbosity=2)
