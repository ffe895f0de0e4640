# System test of the log options (issue 8): server.log-format json makes every stderr line of
# ballast-authd and ballast-resolver one JSON object with ts, level and event; server.log-queries
# writes one line per query with its fields, none when off, and a reload turns it on and off.
"""Log format and query logs of both daemons (127.0.21.x)."""

import json
import os
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402

RESOLVER = os.path.join(bt.BUILD_DIR, 'resolver', 'ballast-resolver')
NET = '127.0.21'
AUTH_ADDR = NET + '.1'  # ballast-authd under test, and the stub authority of the resolver
RES_ADDR = NET + '.2'   # ballast-resolver under test
CLIENT_ADDR = NET + '.9'  # the source address of the queries whose client field is checked
EXAMPLE_ZONE = os.path.join(bt.ZONES_DIR, 'example.test.zone')
RELOAD_TIMEOUT = 10.0

TMPDIR = None


def setUpModule():
    global TMPDIR
    bt.require_binaries(bt.AUTHD, RESOLVER, bt.TOOL)
    TMPDIR = bt.make_tmpdir('ballast-logs-')


def tearDownModule():
    if TMPDIR is not None:
        bt.remove_tmpdir(TMPDIR)


_counter = [0]


def fresh_dir(name):
    _counter[0] += 1
    # short: the control socket path must fit in sun_path (108 bytes)
    path = os.path.join(TMPDIR, '%s-%d' % (name.replace('test_', '')[:20], _counter[0]))
    os.makedirs(path)
    return path


def server_lines(log_format=None, log_queries=None):
    out = []
    if log_format is not None:
        out.append('  log-format: %s' % log_format)
    if log_queries is not None:
        out.append('  log-queries: %s' % ('yes' if log_queries else 'no'))
    return out


def authd_yaml(port, control, **log):
    return '\n'.join(['server:', '  listen: [ "%s@%d" ]' % (AUTH_ADDR, port), '  workers: 2',
                      '  control: %s' % control] + server_lines(**log) +
                     ['zones:', '  - name: example.test', '    file: %s' % EXAMPLE_ZONE]) + '\n'


def resolver_yaml(auth_port, **log):
    lines = server_lines(**log)
    return '\n'.join((['server:'] + lines if lines else []) +
                     ['stub:', '  - zone: example.test',
                      '    to: [ "%s@%d" ]' % (AUTH_ADDR, auth_port)]) + '\n'


def ready_needle(json_format):
    return '"event":"ready"' if json_format else 'event=ready'


def start_ready(make_argv, addr, json_format, cls=bt.Authd, attempts=3, **kw):
    """Start on a fresh port and wait for the ready line in the format asked; retry a clash."""
    last = None
    for _ in range(attempts):
        port = bt.free_port(addr)
        d = cls(make_argv(port), addr, port, **kw)
        try:
            d.wait_for(ready_needle(json_format))
            return d
        except AssertionError as e:
            last = e
            d.kill()
            if 'in use' not in d.log_text().lower():
                raise
    raise last


def stop_checked(test, d):
    rc = d.stop()
    test.assertEqual(0, rc, 'daemon did not exit cleanly:\n%s' % d.log_text())


def json_lines(test, d):
    """Every line the daemon wrote, each parsed as JSON (the test fails on one that is not)."""
    out = []
    for line in d.lines():
        try:
            obj = json.loads(line)
        except ValueError as e:
            test.fail('not a JSON line (%s): %r\nlog:\n%s' % (e, line, d.log_text()))
        test.assertIsInstance(obj, dict, line)
        for key in ('ts', 'level', 'event'):
            test.assertIn(key, obj, line)
            test.assertIsInstance(obj[key], str, line)
        test.assertRegex(obj['ts'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$', line)
        test.assertIn(obj['level'], ('error', 'warn', 'info', 'debug'), line)
        out.append(obj)
    return out


def text_query_lines(d, since=0):
    """The key=value fields of each event=query line from index since."""
    out = []
    for line in d.lines()[since:]:
        if ' event=query ' in line:
            out.append(dict(item.split('=', 1) for item in line.split() if '=' in item))
    return out


def query_from_client(addr, port, qname, qtype=1):
    """One UDP query for qname from CLIENT_ADDR; returns (client port, reply wire)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(bt.QUERY_TIMEOUT)
        s.bind((CLIENT_ADDR, 0))
        s.sendto(bt.raw_query(4242, qname, qtype), (addr, port))
        return s.getsockname()[1], s.recv(65535)


def wait_reload(d, since):
    d.wait_for('event=reload', since=since, all_of=('result=ok',), timeout=RELOAD_TIMEOUT)


class AuthdLogsTest(unittest.TestCase):

    def start(self, json_format=False, extra=(), **log):
        self.dir = fresh_dir(self.id().rsplit('.', 1)[-1])
        self.control = os.path.join(self.dir, 'control.sock')
        self.config = os.path.join(self.dir, 'authd.yaml')
        self.log = log

        def make_argv(port):
            self.port = port
            bt.write_file(self.config, authd_yaml(port, self.control, **log))
            return [bt.AUTHD, '-c', self.config] + list(extra)

        return start_ready(make_argv, AUTH_ADDR, json_format, control=self.control,
                           config=self.config)

    def reload_with(self, d, **log):
        since = d.line_count()
        bt.write_file(self.config, authd_yaml(self.port, self.control, **log))
        res = d.ctl('reload')
        self.assertEqual(0, res.returncode, res.stdout + res.stderr)
        wait_reload(d, since)

    def test_json_format_makes_every_line_json_with_query_fields(self):
        d = self.start(json_format=True, log_format='json', log_queries=True)
        try:
            client_port, _ = query_from_client(AUTH_ADDR, self.port, 'www.example.test')
            d.query('nope.example.test', 'AAAA', tcp=True)
            d.wait_for('"qname":"nope.example.test."')
            res = d.ctl('reload')  # a reload line, JSON too
            self.assertEqual(0, res.returncode, res.stdout + res.stderr)
            d.wait_for('"event":"reload"')
        finally:
            stop_checked(self, d)
        objs = json_lines(self, d)
        events = [o['event'] for o in objs]
        self.assertIn('ready', events)
        ready = next(o for o in objs if o['event'] == 'ready')
        self.assertIn('%s@%d' % (AUTH_ADDR, self.port), json.dumps(ready))
        queries = [o for o in objs if o['event'] == 'query']
        self.assertEqual(2, len(queries), queries)
        www, nope = queries
        self.assertEqual('info', www['level'])
        self.assertEqual('%s@%d' % (CLIENT_ADDR, client_port), www['client'])
        self.assertEqual(('udp', 'www.example.test.', 'A', 'NOERROR'),
                         (www['proto'], www['qname'], www['qtype'], www['rcode']))
        self.assertIsInstance(www['size'], int)
        self.assertGreater(www['size'], 12)
        self.assertEqual(('tcp', 'nope.example.test.', 'AAAA', 'NXDOMAIN'),
                         (nope['proto'], nope['qname'], nope['qtype'], nope['rcode']))

    def test_query_log_is_off_by_default_and_reload_turns_it_on_and_off(self):
        d = self.start()
        try:
            for _ in range(3):
                d.query('www.example.test', 'A')
            self.assertEqual([], text_query_lines(d), d.log_text())
            self.reload_with(d, log_queries=True)
            since = d.line_count()
            d.query('www.example.test', 'A')
            d.query('mail.example.test', 'A', tcp=True)
            d.wait_for('qname=mail.example.test.', since=since)
            lines = text_query_lines(d, since)
            self.assertEqual(2, len(lines), d.log_text())
            self.assertEqual(('udp', 'www.example.test.', 'A', 'NOERROR', 'info'),
                             (lines[0]['proto'], lines[0]['qname'], lines[0]['qtype'],
                              lines[0]['rcode'], lines[0]['level']))
            self.assertEqual('tcp', lines[1]['proto'])
            self.assertTrue(lines[1]['size'].isdigit(), lines[1])
            self.reload_with(d, log_queries=False)
            since = d.line_count()
            d.query('www.example.test', 'A')
            d.query('other.example.test', 'TXT')
            self.assertEqual([], text_query_lines(d, since), d.log_text())
        finally:
            stop_checked(self, d)

    def test_log_format_flag_overrides_the_file(self):
        d = self.start(json_format=True, extra=('--log-format', 'json'), log_format='text')
        stop_checked(self, d)
        self.assertTrue(any(o['event'] == 'ready' for o in json_lines(self, d)))

    def test_log_format_flag_keeps_winning_after_reload(self):
        d = self.start(json_format=True, extra=('--log-format', 'json'), log_format='text',
                       log_queries=True)
        try:
            for _ in range(2):  # the file still says text; the flag must win every time
                since = d.line_count()
                res = d.ctl('reload')
                self.assertEqual(0, res.returncode, res.stdout + res.stderr)
                d.wait_for('"event":"reload"', since=since, timeout=RELOAD_TIMEOUT)
            since = d.line_count()
            d.query('www.example.test', 'A')
            d.wait_for('"qname":"www.example.test."', since=since)
        finally:
            stop_checked(self, d)
        objs = json_lines(self, d)  # fails on any text line after a reload
        self.assertEqual(2, sum(1 for o in objs if o['event'] == 'reload'))
        self.assertEqual(1, sum(1 for o in objs if o['event'] == 'query'))

    def test_bad_log_format_or_target_is_refused_naming_the_key(self):
        d = fresh_dir('bad')
        config = os.path.join(d, 'authd.yaml')
        bt.write_file(config, authd_yaml(5353, os.path.join(d, 'c.sock'), log_format='xml'))
        res = bt.run_authd('-c', config, '--check')
        self.assertNotEqual(0, res.returncode)
        self.assertIn('log-format', res.stderr)
        res = bt.run_authd('--listen', AUTH_ADDR, '--zone', 'example.test:' + EXAMPLE_ZONE,
                           '--log-target', 'file', '--check')
        self.assertNotEqual(0, res.returncode)
        self.assertIn('--log-target', res.stderr)


class ResolverLogsTest(unittest.TestCase):
    """The resolver stubs example.test to a quiet ballast-authd."""

    @classmethod
    def setUpClass(cls):
        cls.auth = bt.start_authd_flags(AUTH_ADDR, [('example.test', EXAMPLE_ZONE)])

    @classmethod
    def tearDownClass(cls):
        if cls.auth is not None:
            cls.auth.stop()

    def start(self, json_format=False, extra=(), **log):
        self.dir = fresh_dir(self.id().rsplit('.', 1)[-1])
        self.control = os.path.join(self.dir, 'control.sock')
        self.config = os.path.join(self.dir, 'resolver.yaml')
        self.log = log
        bt.write_file(self.config, resolver_yaml(self.auth.port, **log))

        def make_argv(port):
            return [RESOLVER, '--listen', '%s@%d' % (RES_ADDR, port), '--workers', '2', '-c',
                    self.config, '--control', self.control] + list(extra)

        return start_ready(make_argv, RES_ADDR, json_format, control=self.control,
                           config=self.config)

    def reload_with(self, d, **log):
        since = d.line_count()
        bt.write_file(self.config, resolver_yaml(self.auth.port, **log))
        res = d.ctl('reload')
        self.assertEqual(0, res.returncode, res.stdout + res.stderr)
        wait_reload(d, since)

    def test_json_format_makes_every_line_json_with_source_and_latency(self):
        d = self.start(json_format=True, log_format='json', log_queries=True)
        try:
            client_port, _ = query_from_client(RES_ADDR, d.port, 'www.example.test')
            d.query('www.example.test', 'A', tcp=True)
            d.query('nope.example.test', 'A')
            d.wait_for('"qname":"nope.example.test."')
        finally:
            stop_checked(self, d)
        objs = json_lines(self, d)
        self.assertIn('ready', [o['event'] for o in objs])
        queries = [o for o in objs if o['event'] == 'query']
        self.assertEqual(3, len(queries), queries)
        first, second, nope = queries
        self.assertEqual('%s@%d' % (CLIENT_ADDR, client_port), first['client'])
        self.assertEqual(('udp', 'www.example.test.', 'A', 'NOERROR', 'resolved'),
                         (first['proto'], first['qname'], first['qtype'], first['rcode'],
                          first['source']))
        self.assertEqual(('tcp', 'cache'), (second['proto'], second['source']))
        self.assertEqual(('NXDOMAIN', 'resolved'), (nope['rcode'], nope['source']))
        for q in queries:
            self.assertEqual('info', q['level'])
            self.assertIsInstance(q['ms'], int)
            self.assertGreaterEqual(q['ms'], 0)

    def test_query_log_is_off_by_default_and_reload_turns_it_on_and_off(self):
        d = self.start()
        try:
            d.query('www.example.test', 'A')
            d.query('mail.example.test', 'A')
            self.assertEqual([], text_query_lines(d), d.log_text())
            self.reload_with(d, log_queries=True)
            since = d.line_count()
            d.query('www.example.test', 'A')
            d.query('nope.example.test', 'MX', tcp=True)
            d.wait_for('qname=nope.example.test.', since=since)
            lines = text_query_lines(d, since)
            self.assertEqual(2, len(lines), d.log_text())
            self.assertEqual(('udp', 'www.example.test.', 'A', 'NOERROR', 'cache'),
                             (lines[0]['proto'], lines[0]['qname'], lines[0]['qtype'],
                              lines[0]['rcode'], lines[0]['source']))
            self.assertEqual(('tcp', 'MX', 'NXDOMAIN', 'resolved'),
                             (lines[1]['proto'], lines[1]['qtype'], lines[1]['rcode'],
                              lines[1]['source']))
            self.assertTrue(lines[1]['ms'].isdigit(), lines[1])
            self.reload_with(d, log_queries=False)
            since = d.line_count()
            d.query('www.example.test', 'A')
            d.query('other.example.test', 'A')
            self.assertEqual([], text_query_lines(d, since), d.log_text())
        finally:
            stop_checked(self, d)

    def test_refused_query_is_logged_with_source_none(self):
        d = self.start(log_queries=True)
        try:
            since = d.line_count()
            wire = bt.raw_query(77, 'www.example.test', qtype=252)  # AXFR: REFUSED
            bt.udp_exchange(RES_ADDR, d.port, wire)
            d.wait_for('event=query', since=since)
        finally:
            stop_checked(self, d)
        lines = text_query_lines(d, since)
        self.assertEqual(1, len(lines), d.log_text())
        self.assertEqual(('AXFR', 'REFUSED', 'none'),
                         (lines[0]['qtype'], lines[0]['rcode'], lines[0]['source']))

    def test_log_format_flag_gives_json(self):
        d = self.start(json_format=True, extra=('--log-format', 'json'))
        stop_checked(self, d)
        self.assertTrue(any(o['event'] == 'ready' for o in json_lines(self, d)))


if __name__ == '__main__':
    unittest.main(verbosity=2)
