# System test of the command lines on 127.0.0.14: ballast-authd flags (--listen/--zone without a
# config, --check, --version), the `ballast` tool against the control socket (status, zones,
# stats, stop, errors and exit codes), and clean shutdown on SIGTERM/SIGINT.
"""ballast-authd and ballast command-line contract (notes/authd-cli.md)."""

import json
import os
import re
import signal
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402
from ballast_test import rr  # noqa: E402

import dns.rcode  # noqa: E402
import dns.zone  # noqa: E402

ADDR = '127.0.0.14'
VERSION = '0.1.0'
STATS_NAMES = ['queries_udp', 'queries_tcp', 'answers_noerror', 'answers_nxdomain',
               'answers_refused', 'answers_formerr', 'answers_notimp', 'answers_servfail',
               'answers_truncated', 'dropped_malformed', 'reloads_ok', 'reloads_failed', 'zones']
SERIALS = {'example.test': 2026112301, 'other.test': 2026112301, 'deep.example.test': 2026112302}


def zone_record_count(name, path):
    zone = dns.zone.from_file(path, origin=name, relativize=False)
    return sum(len(rdataset) for _, node in zone.nodes.items() for rdataset in node)


class Flags(unittest.TestCase):
    """Runs without a control socket."""

    def setUp(self):
        bt.require_binaries()

    def test_listen_and_zone_flags_serve_without_config(self):
        d = bt.start_authd_flags(ADDR, bt.standard_zone_paths(), extra=['--workers', '1'])
        try:
            for tcp in (False, True):
                r = d.query('www.example.test', 'A', tcp=tcp)
                self.assertEqual(bt.rrs(r.answer),
                                 {rr('www.example.test', 3600, 'A', '192.0.2.10')}, str(r))
                r = d.query('www.deep.example.test', 'A', tcp=tcp)
                self.assertEqual(r.rcode(), dns.rcode.NOERROR, str(r))
        finally:
            self.assertEqual(d.stop(), 0, d.log_text())
        self.assertIn('event=shutdown', d.log_text())

    def test_ready_line_names_listener_workers_zones(self):
        d = bt.start_authd_flags(ADDR, bt.standard_zone_paths(), extra=['--workers', '2'])
        try:
            _, line = d.wait_for('event=ready')
            self.assertIn('listen=%s@%d' % (ADDR, d.port), line)
            self.assertIn('workers=2', line)
            self.assertIn('zones=3', line)
            self.assertIn('level=info', line)
        finally:
            self.assertEqual(d.stop(), 0, d.log_text())

    def test_check_with_flags_and_default_port(self):
        # No @PORT: port 53 is parsed; --check binds nothing.
        zone = 'example.test:%s' % os.path.join(bt.ZONES_DIR, 'example.test.zone')
        res = bt.run_authd('--check', '--listen', ADDR, '--zone', zone)
        self.assertEqual(res.returncode, 0, res.stderr)
        res = bt.run_authd('--check', '--listen', '%s@53' % ADDR, '--zone', zone)
        self.assertEqual(res.returncode, 0, res.stderr)

    def test_check_rejects_bad_flags(self):
        zone = 'example.test:%s' % os.path.join(bt.ZONES_DIR, 'example.test.zone')
        for args in (['--listen', '%s@99999' % ADDR, '--zone', zone],
                     ['--listen', 'not-an-address', '--zone', zone],
                     ['--listen', ADDR, '--zone', 'example.test'],
                     ['--listen', ADDR, '--zone', 'example.test:/nonexistent/zone'],
                     ['--listen', ADDR],
                     ['--zone', zone]):
            with self.subTest(args=args):
                res = bt.run_authd('--check', *args)
                self.assertNotEqual(res.returncode, 0, res.stderr)
                self.assertNotEqual(res.stderr.strip(), '')

    def test_unknown_flag_fails(self):
        res = bt.run_authd('--no-such-flag')
        self.assertNotEqual(res.returncode, 0)
        self.assertNotEqual(res.stderr.strip(), '')

    def test_version_and_help(self):
        res = bt.run_authd('--version')
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn(VERSION, res.stdout + res.stderr)
        res = bt.run_authd('--help')
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn('--listen', res.stdout + res.stderr)

    def test_tool_check_command(self):
        res = bt.run_tool('check', '-c', os.path.join(bt.ZONES_DIR, 'authd.yaml'))
        self.assertEqual(res.returncode, 0, res.stderr)
        tmp = bt.make_tmpdir()
        try:
            bad = os.path.join(tmp, 'bad.yaml')
            bt.write_file(bad, 'server:\n  listen: [%s@5399]\n  workers: many\n' % ADDR)
            res = bt.run_tool('check', '-c', bad)
            self.assertEqual(res.returncode, 1, res.stderr)
            self.assertIn('%s:3:' % bad, res.stderr)
        finally:
            bt.remove_tmpdir(tmp)

    def test_tool_check_takes_resolver_configs_and_scenarios(self):
        res = bt.run_tool('check', os.path.join(bt.ZONES_DIR, 'resolver.yaml'))
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn('resolver', res.stdout)
        scenario = os.path.join(bt.ROOT, 'tests', 'scenarios', 'authority-blackout.yaml')
        res = bt.run_tool('check', scenario)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn("scenario 'authority-blackout'", res.stdout)
        bad = os.path.join(bt.ROOT, 'tests', 'unit', 'data', 'resolver_config',
                           'stale_bad_suffix.yaml')
        res = bt.run_tool('check', '--resolver', bad)
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn('%s:4:' % bad, res.stderr)
        # forcing the wrong kind reports that kind's errors
        res = bt.run_tool('check', '--authd', os.path.join(bt.ZONES_DIR, 'resolver.yaml'))
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn('unknown key', res.stderr)

    def test_tool_unreachable_daemon_exits_2(self):
        res = bt.run_tool('-s', '/nonexistent/ballast.sock', 'status')
        self.assertEqual(res.returncode, 2, res.stdout + res.stderr)
        self.assertNotEqual(res.stderr.strip(), '')


def scrape_metrics(url):
    """(text, {series: value}) of one scrape; histogram sums are floats."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith('#'):
            key, value = line.rsplit(' ', 1)
            samples[key] = float(value) if '.' in value else int(value)
    return text, samples


class Metrics(unittest.TestCase):
    """server.metrics on ballast-authd: the Prometheus text format, counters that follow the
    queries."""

    def test_metrics_endpoint_counts_queries(self):
        bt.require_binaries()
        tmp = bt.make_tmpdir()
        port = bt.free_port(ADDR)
        authd = bt.start_authd_config(tmp, ADDR, bt.standard_zone_paths(),
                                      metrics='%s@%d' % (ADDR, port))
        try:
            url = 'http://%s:%d/metrics' % (ADDR, port)

            def scrape():
                return scrape_metrics(url)

            _, before = scrape()
            authd.query('www.example.test', 'A')
            authd.query('nonexistent.example.test', 'A')
            authd.query('www.example.test', 'A', tcp=True)
            text, after = scrape()
            self.assertIn('# TYPE ballast_authd_queries_total counter', text)
            udp = 'ballast_authd_queries_total{transport="udp"}'
            tcp = 'ballast_authd_queries_total{transport="tcp"}'
            self.assertEqual(after[udp] - before[udp], 2)
            self.assertEqual(after[tcp] - before[tcp], 1)
            nx = 'ballast_authd_answers_total{rcode="NXDOMAIN"}'
            self.assertEqual(after[nx] - before[nx], 1)
            self.assertEqual(after['ballast_authd_zones'], 3)
        finally:
            rc = authd.stop()
            bt.remove_tmpdir(tmp)
            self.assertEqual(rc, 0, authd.log_text())

    def test_metrics_count_queries_by_type_and_time_every_reply(self):
        bt.require_binaries()
        tmp = bt.make_tmpdir()
        port = bt.free_port(ADDR)
        authd = bt.start_authd_config(tmp, ADDR, bt.standard_zone_paths(),
                                      metrics='%s@%d' % (ADDR, port))
        try:
            url = 'http://%s:%d/metrics' % (ADDR, port)
            _, before = scrape_metrics(url)
            for _ in range(3):
                authd.query('www.example.test', 'AAAA')
            authd.query('www.example.test', 'MX', tcp=True)
            authd.query('www.example.test', 'TYPE65280')  # private use: counted as other
            text, after = scrape_metrics(url)

            def delta(key):
                return after[key] - before.get(key, 0)

            by_type = 'ballast_authd_queries_by_type_total{type="%s"}'
            self.assertIn('# TYPE ballast_authd_queries_by_type_total counter', text)
            self.assertEqual(delta(by_type % 'AAAA'), 3)
            self.assertEqual(delta(by_type % 'MX'), 1)
            self.assertEqual(delta(by_type % 'other'), 1)
            self.assertEqual(delta(by_type % 'A'), 0)
            hist = 'ballast_authd_query_duration_seconds'
            self.assertIn('# TYPE %s histogram' % hist, text)
            queries = sum(delta('ballast_authd_queries_total{transport="%s"}' % t)
                          for t in ('udp', 'tcp'))
            self.assertEqual(queries, 5)
            self.assertEqual(delta(hist + '_count'), queries)
            buckets = [v for k, v in after.items() if k.startswith(hist + '_bucket{')]
            self.assertEqual(len(buckets), 15)
            self.assertEqual(buckets, sorted(buckets), 'buckets not cumulative')
            self.assertEqual(buckets[-1], after[hist + '_count'])
            self.assertEqual(after[hist + '_bucket{le="+Inf"}'], after[hist + '_count'])
            self.assertLess(after[hist + '_sum'], 5.0)  # five loopback answers, in seconds
            with open(os.path.join(bt.ROOT, 'docs', 'authd.md')) as f:
                doc = f.read()
            families = re.findall(r'^# TYPE (\S+) ', text, flags=re.M)
            self.assertEqual([], [f for f in families if '`%s`' % f not in doc],
                             'metrics not documented in docs/authd.md')
        finally:
            rc = authd.stop()
            bt.remove_tmpdir(tmp)
            self.assertEqual(rc, 0, authd.log_text())


class Control(unittest.TestCase):
    """A daemon with a config, control socket and pid file for each test."""

    def setUp(self):
        bt.require_binaries()
        self.tmp = bt.make_tmpdir()
        self.pid_file = os.path.join(self.tmp, 'authd.pid')
        self.authd = bt.start_authd_config(self.tmp, ADDR, bt.standard_zone_paths(),
                                           pid_file=self.pid_file)

    def tearDown(self):
        try:
            was_alive = self.authd.alive()
            rc = self.authd.stop()
            if was_alive:
                self.assertEqual(rc, 0, self.authd.log_text())
        finally:
            bt.remove_tmpdir(self.tmp)

    def ctl_ok(self, *args):
        res = self.authd.ctl(*args)
        self.assertEqual(res.returncode, 0, '%s: %s%s' % (args, res.stdout, res.stderr))
        self.assertFalse(res.stdout.startswith('ok'), 'reply status line printed:\n' + res.stdout)
        return res.stdout

    def test_status(self):
        st = bt.parse_kv(self.ctl_ok('status'))
        self.assertEqual(st.get('version'), VERSION, st)
        self.assertEqual(st.get('pid'), str(self.authd.pid), st)
        self.assertRegex(st.get('uptime_s', ''), r'^\d+$')
        self.assertEqual(st.get('workers'), '2', st)
        self.assertEqual(st.get('zones'), '3', st)

    def test_pid_file_holds_pid(self):
        with open(self.pid_file) as f:
            self.assertEqual(f.read().strip(), str(self.authd.pid))

    def test_zones(self):
        lines = [l for l in self.ctl_ok('zones').splitlines() if l.strip()]
        self.assertEqual(len(lines), 3, lines)
        seen = {}
        for line in lines:
            m = re.match(r'^(\S+?)\.? serial=(\d+) records=(\d+) file=(\S+)$', line)
            self.assertIsNotNone(m, 'bad zones line: %r' % line)
            seen[m.group(1)] = (int(m.group(2)), int(m.group(3)), m.group(4))
        for name, path in bt.standard_zone_paths():
            with self.subTest(zone=name):
                self.assertIn(name, seen)
                serial, records, file = seen[name]
                self.assertEqual(serial, SERIALS[name])
                self.assertEqual(records, zone_record_count(name, path))
                self.assertEqual(os.path.realpath(file), os.path.realpath(path))

    def test_stats_names_and_counters(self):
        self.authd.query('www.example.test', 'A')
        self.authd.query('www.example.test', 'A', tcp=True)
        self.authd.query('nonexistent.example.test', 'A')
        self.authd.query('www.example.org', 'A')
        self.authd.query('big.example.test', 'TXT', payload=1232)
        stats = bt.parse_kv(self.ctl_ok('stats'))
        for name in STATS_NAMES:
            with self.subTest(stat=name):
                self.assertRegex(stats.get(name, ''), r'^\d+$', 'missing or not a number')
        self.assertGreaterEqual(int(stats['queries_udp']), 4, stats)
        self.assertGreaterEqual(int(stats['queries_tcp']), 1, stats)
        self.assertGreaterEqual(int(stats['answers_noerror']), 2, stats)
        self.assertGreaterEqual(int(stats['answers_nxdomain']), 1, stats)
        self.assertGreaterEqual(int(stats['answers_refused']), 1, stats)
        self.assertGreaterEqual(int(stats['answers_truncated']), 1, stats)
        self.assertEqual(stats['zones'], '3')

    def test_json_output_for_scripts(self):
        self.authd.query('www.example.test', 'A')
        res = bt.run_tool('-s', self.authd.control, '--json', 'stats')
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        stats = json.loads(res.stdout)
        self.assertIs(stats['ok'], True)
        self.assertIsInstance(stats['queries_udp'], int)
        self.assertGreaterEqual(stats['queries_udp'], 1)
        self.assertEqual(stats['zones'], 3)
        res = bt.run_tool('-s', self.authd.control, '--json', 'zones')
        zones = json.loads(res.stdout)['items']
        self.assertEqual(sorted(z['name'] for z in zones),
                         ['deep.example.test.', 'example.test.', 'other.test.'])
        self.assertEqual({z['name']: z['serial'] for z in zones}['example.test.'],
                         SERIALS['example.test'])
        res = bt.run_tool('-s', self.authd.control, '--json', 'no-such-command')
        self.assertEqual(res.returncode, 1)
        reply = json.loads(res.stdout)
        self.assertIs(reply['ok'], False)
        self.assertIn('unknown command', reply['error'])
        res = bt.run_tool('-s', '/nonexistent/ballast.sock', '--json', 'status')
        self.assertEqual(res.returncode, 2)
        self.assertIn('no daemon listening', json.loads(res.stdout)['error'])

    def test_unknown_command_exits_1(self):
        res = self.authd.ctl('no-such-command')
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertNotEqual(res.stderr.strip(), '')
        self.assertTrue(self.authd.alive())

    def test_sigterm_exits_0_and_removes_control_socket(self):
        self.assertTrue(os.path.exists(self.authd.control))
        self.assertEqual(self.authd.stop(signal.SIGTERM), 0, self.authd.log_text())
        self.assertIn('event=shutdown', self.authd.log_text())
        self.assertFalse(os.path.exists(self.authd.control), 'control socket left behind')
        res = bt.run_tool('-s', self.authd.control, 'status')
        self.assertEqual(res.returncode, 2)

    def test_sigint_exits_0(self):
        self.assertEqual(self.authd.stop(signal.SIGINT), 0, self.authd.log_text())
        self.assertIn('event=shutdown', self.authd.log_text())

    def test_stop_command_exits_0(self):
        self.ctl_ok('stop')
        self.authd.proc.wait(bt.STOP_TIMEOUT)
        self.assertEqual(self.authd.proc.returncode, 0, self.authd.log_text())
        self.assertFalse(os.path.exists(self.authd.control))


if __name__ == '__main__':
    bt.main()
