# System test under valgrind memcheck (issue 7): ballast-authd and ballast-resolver (normal build)
# serve several kinds of answers, reload by SIGHUP and `ballast reload`, stop on SIGTERM, and
# must exit 0 with no memcheck error and no definitely or indirectly lost bytes.
"""ballast-authd and ballast-resolver under valgrind --tool=memcheck (127.0.18.x)."""

import os
import re
import signal
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402
import hierarchy  # noqa: E402
import test_resolver as tr  # noqa: E402

import dns.flags  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

VALGRIND = '/usr/bin/valgrind'
NET = '127.0.18'
AUTHD_ADDR = NET + '.20'
UPSTREAM_ADDR = NET + '.21'   # plain ballast-authd, the resolver's stub zone authority
RESOLVER_ADDR = NET + '.22'
DEAD_ROOT = NET + '.250'      # the resolver's root hints: nothing listens there
SCALE = float(os.environ.get('BALLAST_TIMING_SCALE', '1'))
# Everything runs 20-50 times slower under memcheck.
START_TIMEOUT = 120.0
QUERY_TIMEOUT = 20.0
STOP_TIMEOUT = 180.0
MEMCHECK_EXIT = 99
MEMCHECK = ['--tool=memcheck', '--leak-check=full', '--show-leak-kinds=definite,indirect',
            '--errors-for-leak-kinds=definite,indirect', '--error-exitcode=%d' % MEMCHECK_EXIT,
            '--track-fds=no', '--num-callers=30']


def sanitizer_build():
    """True for an ASan build (valgrind cannot run it) or a run with a timing scale > 1."""
    if SCALE > 1:
        return True
    try:
        out = subprocess.run(['ldd', bt.AUTHD], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return 'asan' in out or 'ubsan' in out


def skip_reason():
    if not os.access(VALGRIND, os.X_OK):
        return '%s is not installed (tools/install-deps.sh should install valgrind)' % VALGRIND
    if sanitizer_build():
        return 'sanitizer build (BALLAST_BUILD_DIR=%s): valgrind needs the normal build' % (
            bt.BUILD_DIR)
    return None


SKIP = skip_reason()


class Daemon(bt.Process):
    def __init__(self, argv, addr, port, control, log_path):
        super().__init__(argv)
        self.addr = addr
        self.port = port
        self.control = control
        self.log_path = log_path

    def query(self, qname, rdtype, tcp=False, **kw):
        return bt.query(self.addr, self.port, qname, rdtype, tcp=tcp, timeout=QUERY_TIMEOUT, **kw)

    def ctl(self, *args):
        return bt.run_tool('-s', self.control, *args, timeout=QUERY_TIMEOUT * 3)

    def stats(self):
        res = self.ctl('stats')
        if res.returncode != 0:
            raise AssertionError('ballast stats failed: %s%s' % (res.stdout, res.stderr))
        return {k: int(v) for k, v in bt.parse_kv(res.stdout).items()}

    def valgrind_log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ''


def start_under_valgrind(tmpdir, name, addr, make_argv, attempts=3):
    """Start make_argv(port) under memcheck, logging to tmpdir/NAME.valgrind; wait for ready."""
    control = os.path.join(tmpdir, name + '.sock')
    log_path = os.path.join(tmpdir, name + '.valgrind')
    last = None
    for _ in range(attempts):
        port = bt.free_port(addr)
        argv = [VALGRIND] + MEMCHECK + ['--log-file=%s' % log_path] + make_argv(port, control)
        d = Daemon(argv, addr, port, control, log_path)
        try:
            d.wait_for('event=ready', timeout=START_TIMEOUT)
            return d
        except AssertionError as e:
            last = e
            d.kill()
            if 'in use' not in d.log_text().lower():
                raise
    raise last


LOST = re.compile(r'(definitely|indirectly) lost: ([\d,]+) bytes')


class ValgrindCase(unittest.TestCase):

    def setUp(self):
        self.tmp = bt.make_tmpdir('ballast-valgrind-')
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.alive():
                p.kill()
        bt.remove_tmpdir(self.tmp)

    def reload_both_ways(self, d, log_event='event=reload'):
        since = d.line_count()
        d.send_signal(signal.SIGHUP)
        _, line = d.wait_for(log_event, timeout=START_TIMEOUT, since=since)
        self.assertIn('result=ok', line)
        res = d.ctl('reload')
        self.assertEqual(0, res.returncode, 'ballast reload: %s%s' % (res.stdout, res.stderr))
        self.assertEqual(2, d.stats()['reloads_ok'])

    def stop_and_check(self, d):
        """SIGTERM; exit 0 (99 = a memcheck error), no lost bytes in the valgrind log."""
        rc = d.stop(signal.SIGTERM, timeout=STOP_TIMEOUT)
        report = d.valgrind_log()
        self.assertIn('ERROR SUMMARY', report, 'no memcheck summary (rc=%s):\n%s\n%s' % (
            rc, report, d.log_text()))
        self.assertNotEqual(MEMCHECK_EXIT, rc, 'memcheck found errors:\n%s' % report)
        self.assertEqual(0, rc, 'exit status %r after SIGTERM:\n%s\n%s' % (
            rc, d.log_text(), report))
        lost = [(kind, int(n.replace(',', ''))) for kind, n in LOST.findall(report)]
        self.assertEqual([], [x for x in lost if x[1] > 0], 'leaks:\n%s' % report)
        self.assertRegex(report, r'ERROR SUMMARY: 0 errors', report)

    def ask(self, d, qname, rdtype, rcode, tcp, **kw):
        return d.query(qname, rdtype, tcp=tcp, **kw)

    def expect(self, d, qname, rdtype, rcode, answer=None, tcp=False, **kw):
        r = self.ask(d, qname, rdtype, rcode, tcp, **kw)
        self.assertEqual(dns.rcode.to_text(rcode), dns.rcode.to_text(r.rcode()),
                         '%s %s:\n%s' % (qname, rdtype, r))
        if answer is not None:
            got = {rd.to_text() for rrset in r.answer
                   if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset}
            self.assertEqual(answer, got, '%s %s:\n%s' % (qname, rdtype, r))
        return r


@unittest.skipIf(SKIP, SKIP)
class AuthdUnderValgrind(ValgrindCase):

    def test_authd_serves_reloads_and_exits_without_leaks(self):
        zones = bt.copy_standard_zones(self.tmp)
        config = os.path.join(self.tmp, 'authd.yaml')

        def argv(port, control):
            bt.write_file(config, bt.config_yaml(AUTHD_ADDR, port, zones, control=control))
            return [bt.AUTHD, '-c', config]

        d = start_under_valgrind(self.tmp, 'authd', AUTHD_ADDR, argv)
        self.procs.append(d)
        self.serve(d)
        self.reload_both_ways(d)
        self.serve(d)
        self.stop_and_check(d)

    def serve(self, d):
        NOERROR, NXDOMAIN = dns.rcode.NOERROR, dns.rcode.NXDOMAIN
        self.expect(d, 'www.example.test', 'A', NOERROR, {'192.0.2.10'})
        self.expect(d, 'www.example.test', 'AAAA', NOERROR, {'2001:db8::10'}, tcp=True)
        self.expect(d, 'example.test', 'MX', NOERROR, {'10 mail.example.test.'})
        self.expect(d, 'nonexistent.example.test', 'A', NXDOMAIN, set())
        self.expect(d, 'www.example.test', 'MX', NOERROR, set())
        self.expect(d, 'chain1.example.test', 'A', NOERROR, {'192.0.2.10'})
        self.expect(d, 'loop1.example.test', 'A', NOERROR)
        self.expect(d, 'x.wild.example.test', 'A', NOERROR, {'192.0.2.50'})
        r = self.expect(d, 'www.sub.example.test', 'A', NOERROR, set())
        self.assertTrue(r.authority, 'no referral:\n%s' % r)
        self.expect(d, 'www.example.org', 'A', dns.rcode.REFUSED)
        self.expect(d, 'www.deep.example.test', 'A', NOERROR, {'192.0.2.101'})
        self.expect(d, 'example.test', 'ANY', NOERROR)
        r = self.expect(d, 'big.example.test', 'TXT', NOERROR, payload=1232)
        self.assertTrue(r.flags & dns.flags.TC, 'big TXT not truncated over UDP')
        r = self.expect(d, 'big.example.test', 'TXT', NOERROR, tcp=True)
        self.assertEqual(40, len(r.answer[0]))
        r = d.query('www.example.test', 'A', version=1)
        self.assertEqual(dns.rcode.BADVERS, r.rcode())
        # Malformed and unsupported: FORMERR and NOTIMP; a response is dropped.
        two = bt.raw_query(0x1111, 'www.example.test', qdcount=2,
                           questions=[bt.wire_name('www.example.test') +
                                      struct.pack('!HH', 1, 1)] * 2)
        reply = bt.udp_exchange(d.addr, d.port, two, timeout=QUERY_TIMEOUT, expect_id=0x1111)
        self.assertEqual(dns.rcode.FORMERR, bt.rcode_of(reply))
        notimp = bt.raw_query(0x2222, 'www.example.test', flags=(2 << 11))
        reply = bt.udp_exchange(d.addr, d.port, notimp, timeout=QUERY_TIMEOUT, expect_id=0x2222)
        self.assertEqual(dns.rcode.NOTIMP, bt.rcode_of(reply))
        for tcp in (False, True):
            self.expect(d, 'www.example.test', 'A', NOERROR, {'192.0.2.10'}, tcp=tcp)
        res = d.ctl('zones')
        self.assertEqual(0, res.returncode, res.stderr)


@unittest.skipIf(SKIP, SKIP)
class ResolverUnderValgrind(ValgrindCase):

    def test_resolver_serves_reloads_and_exits_without_leaks(self):
        # The stub zone authority runs normally (not under valgrind).
        adir = os.path.join(self.tmp, 'upstream')
        os.makedirs(adir)
        upstream = bt.start_authd_config(adir, UPSTREAM_ADDR, bt.standard_zone_paths())
        self.procs.append(upstream)
        hints = os.path.join(self.tmp, 'root.hints')
        bt.write_file(hints, hierarchy.root_hints_text(DEAD_ROOT))
        config = os.path.join(self.tmp, 'resolver.yaml')
        # lame.test: its only server (the upstream authd) answers REFUSED, hence SERVFAIL.
        bt.write_file(config, '\n'.join([
            'resolution:',
            '  root-hints: %s' % hints,
            '  allow-private-upstreams: true',
            # Everything is slow under memcheck: leave room for retries after a timeout.
            '  upstream-timeout: 20s',
            '  query-timeout: 60s',
            'stub:',
            '  - zone: example.test',
            '    to: [ "%s@%d" ]' % (UPSTREAM_ADDR, upstream.port),
            '  - zone: lame.test',
            '    to: [ "%s@%d" ]' % (UPSTREAM_ADDR, upstream.port),
            '']))

        def argv(port, control):
            return [tr.RESOLVER, '-c', config, '--listen', '%s@%d' % (RESOLVER_ADDR, port),
                    '--workers', '2', '--control', control]

        d = start_under_valgrind(self.tmp, 'resolver', RESOLVER_ADDR, argv)
        self.procs.append(d)
        self.serve(d, 'a')
        self.reload_both_ways(d)
        self.serve(d, 'b')
        for cmd in (('flush', 'www.example.test'), ('flush-zone', 'example.test'),
                    ('flush-all',)):
            res = d.ctl(*cmd)
            self.assertEqual(0, res.returncode, '%s: %s%s' % (cmd, res.stdout, res.stderr))
        self.expect(d, 'www.example.test', 'A', dns.rcode.NOERROR, {'192.0.2.10'})
        self.stop_and_check(d)
        self.assertEqual(0, upstream.stop(), upstream.log_text())

    def ask(self, d, qname, rdtype, rcode, tcp, **kw):
        # Under memcheck the resolver handles an answer late, often later than its RTO (50 ms
        # after a fast loopback RTT), and it asks each server of a delegation only once per
        # resolution, so one late answer from the only stub server is a SERVFAIL (EDE 22).
        # Retry like a stub resolver would; the timeout doubles the RTO. (The same happens
        # without valgrind with a 150 ms authority: SlowAuthorityTest in test_hostile.py.)
        for _ in range(4):
            r = d.query(qname, rdtype, tcp=tcp, **kw)
            if rcode == dns.rcode.SERVFAIL or r.rcode() != dns.rcode.SERVFAIL:
                break
        return r

    def serve(self, d, tag):
        NOERROR = dns.rcode.NOERROR
        before = d.stats()
        # A miss, then the same question from the cache.
        self.expect(d, '%s.wild.example.test' % tag, 'A', NOERROR, {'192.0.2.50'})
        self.expect(d, '%s.wild.example.test' % tag, 'A', NOERROR, {'192.0.2.50'})
        after = d.stats()
        self.assertGreaterEqual(after['answers_from_cache'] - before['answers_from_cache'], 1,
                                (before, after))
        self.expect(d, 'www.example.test', 'A', NOERROR, {'192.0.2.10'})
        self.expect(d, 'www.example.test', 'AAAA', NOERROR, {'2001:db8::10'}, tcp=True)
        self.expect(d, 'alias.example.test', 'A', NOERROR, {'192.0.2.10'})
        self.expect(d, '%s.nonexistent.example.test' % tag, 'A', dns.rcode.NXDOMAIN, set())
        self.expect(d, '%s.nonexistent.example.test' % tag, 'A', dns.rcode.NXDOMAIN, set())
        self.expect(d, 'www.example.test', 'MX', NOERROR, set())
        self.expect(d, '%s.lame.test' % tag, 'A', dns.rcode.SERVFAIL)
        r = self.expect(d, 'big.example.test', 'TXT', NOERROR, tcp=True)
        self.assertEqual(40, len(r.answer[0]))
        two = bt.raw_query(0x1111, 'www.example.test', qdcount=2,
                           questions=[bt.wire_name('www.example.test') +
                                      struct.pack('!HH', 1, 1)] * 2)
        reply = bt.udp_exchange(d.addr, d.port, two, timeout=QUERY_TIMEOUT, expect_id=0x1111)
        self.assertEqual(dns.rcode.FORMERR, bt.rcode_of(reply))


if __name__ == '__main__':
    if SKIP:
        print('test_valgrind: skipped:', SKIP)
    bt.main()
