# System test of health-checked answers in ballast-authd (issue 4): the daemon on 127.0.8.1 probes
# real TCP, HTTP(S) and DNS endpoints on 127.0.8.10-.30 that the test starts and stops, and pulls
# JSON health feeds from files; answers, log lines and `ballast health`/`stats` are checked.
"""ballast-authd health pools: probes, priority levels, never-empty, damping, velocity, feeds."""

import base64
import http.server
import json
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

ADDR = '127.0.8.1'  # the daemon
ZONE = 'health.test'
STATIC_TTL = 300    # the zone's static RRsets
POOL_TTL = 5        # the pools' answers

# Probe timing of every check (fast so the suite runs in about a minute). Slow builds (the
# sanitizer run in CI, a loaded 2-core machine) scale it with BALLAST_TIMING_SCALE; the bounds
# below follow, so the "interval x fall + 1 s" is still what is checked.
SCALE = float(os.environ.get('BALLAST_TIMING_SCALE', '1'))
INTERVAL = 0.3 * SCALE
TIMEOUT = 0.2 * SCALE
RISE = 2
FALL = 2
# The bounds: gone within interval x fall + 1 s, back within interval x rise + 1 s.
DOWN_BOUND = INTERVAL * FALL + 1.0
UP_BOUND = INTERVAL * RISE + 1.0
POLL = 0.05           # how often answers are sampled while waiting for a change
SLOW_LIMIT = 12.0     # how long to keep watching past a bound, to report the real time
FEED_INTERVAL = 0.3 * SCALE  # file feeds are pulled this often
FEED_BOUND = FEED_INTERVAL + 1.0


def ip(n):
    return '127.0.8.%d' % n


# ---- endpoints the probes check ----------------------------------------------------------

class TcpEndpoint:
    """A TCP listener that accepts and closes every connection; stopped, it refuses them."""

    def __init__(self, addr, port):
        self.addr, self.port = addr, port
        self.sock = None
        self.thread = None
        self.stopping = False

    def running(self):
        return self.sock is not None

    def start(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.addr, self.port))
        sock.listen(128)
        sock.settimeout(0.05)
        self.sock, self.stopping = sock, False
        self.thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self.thread.start()
        return self

    def _serve(self, sock):
        while not self.stopping:
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.on_connection(conn)

    def on_connection(self, conn):
        conn.close()

    def signal_stop(self):
        self.stopping = True

    def finish_stop(self):
        if self.thread:
            self.thread.join(5)
        if self.sock:
            self.sock.close()
        self.sock = self.thread = None

    def stop(self):
        self.signal_stop()
        self.finish_stop()


class BlackholeEndpoint(TcpEndpoint):
    """Accepts connections and never answers or closes them (a target that hangs)."""

    def __init__(self, addr, port):
        super().__init__(addr, port)
        self.held = []

    def on_connection(self, conn):
        self.held.append(conn)

    def finish_stop(self):
        super().finish_stop()
        for conn in self.held:
            conn.close()
        self.held = []


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'

    def do_GET(self):  # noqa: N802 (http.server's name)
        ep = self.server.endpoint
        ep.hosts.add(self.headers.get('Host'))
        data = ep.body.encode()
        self.send_response(ep.status)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        ep.requests += 1

    def log_message(self, *args):
        pass


class HttpEndpoint:
    """An HTTP (or, with a certificate, HTTPS) server whose status and body the test sets."""

    def __init__(self, addr, port, status=200, body='status: healthy\n', cert=None):
        self.addr, self.port = addr, port
        self.status, self.body = status, body
        self.cert = cert  # (certfile, keyfile) for HTTPS
        self.server = None
        self.thread = None
        self.requests = 0
        self.hosts = set()  # Host headers seen

    def running(self):
        return self.server is not None

    def start(self):
        server = http.server.ThreadingHTTPServer((self.addr, self.port), _HttpHandler)
        server.daemon_threads = True
        server.endpoint = self
        if self.cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.cert)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def signal_stop(self):
        pass

    def finish_stop(self):
        self.stop()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
        self.server = self.thread = None


class DnsEndpoint:
    """A UDP DNS server that answers every query with the RCODE the test sets."""

    def __init__(self, addr, port, rcode=dns.rcode.NOERROR):
        self.addr, self.port, self.rcode = addr, port, rcode
        self.sock = None
        self.thread = None
        self.stopping = False
        self.queries = 0

    def running(self):
        return self.sock is not None

    def start(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.addr, self.port))
        self.sock, self.stopping = sock, False
        self.thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self.thread.start()
        return self

    def _serve(self, sock):
        while not self.stopping:
            ready, _, _ = select.select([sock], [], [], 0.05)
            if not ready:
                continue
            try:
                wire, peer = sock.recvfrom(65535)
                q = dns.message.from_wire(wire)
            except Exception:  # noqa: BLE001 (anything unparsable is ignored)
                continue
            r = dns.message.make_response(q)
            r.set_rcode(self.rcode)
            r.flags |= dns.flags.AA
            self.queries += 1
            sock.sendto(r.to_wire(), peer)

    def signal_stop(self):
        self.stopping = True

    def finish_stop(self):
        if self.thread:
            self.thread.join(5)
        if self.sock:
            self.sock.close()
        self.sock = self.thread = None

    def stop(self):
        self.signal_stop()
        self.finish_stop()


def stop_all(endpoints):
    """Stop several endpoints at (nearly) the same moment."""
    for ep in endpoints:
        ep.signal_stop()
    for ep in endpoints:
        ep.finish_stop()


def pick_port(addrs):
    """A port free for TCP and UDP on every address in addrs."""
    for _ in range(50):
        port = bt.free_port(addrs[0])
        ok = True
        for addr in addrs[1:]:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, kind)
                try:
                    s.bind((addr, port))
                except OSError:
                    ok = False
                finally:
                    s.close()
        if ok:
            return port
    raise AssertionError('no common free port on %s' % addrs)


# ---- config ------------------------------------------------------------------------------

def tcp_check(port, **over):
    check = {'type': 'tcp', 'port': port, 'interval': '%dms' % (INTERVAL * 1000),
             'timeout': '%dms' % (TIMEOUT * 1000), 'rise': RISE, 'fall': FALL}
    check.update(over)
    return check


def http_check(port, path='/health', scheme='http', **over):
    check = tcp_check(port, type=scheme, url='%s://{member}:%d%s' % (scheme, port, path))
    del check['port']
    check.update(over)
    return check


def pool(owner, members, check=None, **kw):
    """A pool at owner.health.test/A. members: addresses or dicts (address, priority, ...)."""
    out = {'name': '%s.%s' % (owner, ZONE), 'type': 'A', 'ttl': '%ds' % POOL_TTL,
           'max-withdraw-share': '1.0', 'withdraw-interval': '1s'}
    out.update(kw)
    if check is not None:
        out['check'] = check
    out['members'] = [m if isinstance(m, dict) else {'address': m} for m in members]
    return out


def pool_name(owner):
    return '%s.%s/A' % (owner, ZONE)


def zone_text(pools):
    """The zone file: SOA, NS and each pool's full static RRset (the fallback)."""
    lines = ['$ORIGIN %s.' % ZONE, '$TTL %d' % STATIC_TTL,
             '@ 3600 IN SOA ns1.%s. hostmaster.%s. 1 7200 3600 1209600 300' % (ZONE, ZONE),
             '@ IN NS ns1', 'ns1 IN A %s' % ADDR]
    for p in pools:
        for m in p['members']:
            lines.append('%s. %d IN A %s' % (p['name'], STATIC_TTL, m['address']))
    return '\n'.join(lines) + '\n'


def health_yaml(pools, feeds=(), damping=None):
    """The health section as YAML (JSON flow style, indented under the key)."""
    health = {'damping': damping or {'threshold': 0}, 'pools': list(pools)}
    if feeds:
        health['feeds'] = list(feeds)
    body = json.dumps(health, indent=2)
    return 'health: ' + '\n'.join('  ' + line if i else line
                                  for i, line in enumerate(body.splitlines())) + '\n'


# ---- feeds -------------------------------------------------------------------------------

def feed_doc(generation, states, timestamp=None, **extra):
    """states: [(owner, address, 'up'|'down')]; an owner with a '/' is a pool name as is."""
    doc = {
        'generation': generation,
        'timestamp': int(time.time()) if timestamp is None else timestamp,
        'members': [{'pool': o if '/' in o else pool_name(o), 'member': a, 'state': s}
                    for o, a, s in states],
    }
    doc.update(extra)
    return json.dumps(doc, indent=1)


def write_atomic(path, data):
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def new_key():
    return Ed25519PrivateKey.generate()


def public_b64(key):
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign_b64(key, data):
    return base64.b64encode(key.sign(data.encode())).decode() + '\n'


# ---- `ballast health` --------------------------------------------------------------------

_KV = re.compile(r'([A-Za-z_]+)=("(?:[^"\\]|\\.)*"|\S*)')


def kv_line(line):
    return {k: v[1:-1] if v.startswith('"') else v for k, v in _KV.findall(line)}


def parse_health(text):
    """`ballast health` output -> ({pool: {'fields': {...}, 'members': {addr: {...}}}},
    {feed: {...}})."""
    pools, feeds, current = {}, {}, None
    for line in text.splitlines():
        fields = kv_line(line)
        stripped = line.strip()
        if stripped.startswith('pool='):
            current = pools[fields['pool']] = {'fields': fields, 'members': {}}
        elif stripped.startswith('member=') and current is not None:
            current['members'][fields['member']] = fields
        elif stripped.startswith('feed='):
            feeds[fields['feed']] = fields
    return pools, feeds


# ---- the test base -----------------------------------------------------------------------

class HealthCase(unittest.TestCase):
    """Each test starts its own endpoints and daemon; cleanups stop both by PID/handle."""

    def setUp(self):
        bt.require_binaries()
        self.tmp = bt.make_tmpdir('ballast-health-')
        self.addCleanup(bt.remove_tmpdir, self.tmp)
        self.endpoints = []
        self.authd = None

        def stop_endpoints():
            stop_all([ep for ep in self.endpoints if ep.running()])
        self.addCleanup(stop_endpoints)

    def endpoint(self, ep, start=True):
        self.endpoints.append(ep)
        return ep.start() if start else ep

    def config_text(self, port, pools, feeds, damping):
        zone_path = os.path.join(self.tmp, 'health.test.zone')
        return (bt.config_yaml(ADDR, port, [(ZONE, zone_path)],
                               control=os.path.join(self.tmp, 'control.sock'), workers=2)
                + health_yaml(pools, feeds, damping))

    def start(self, pools, feeds=(), damping=None):
        """Write the zone and config and start ballast-authd; --check must accept them first."""
        zone_path = os.path.join(self.tmp, 'health.test.zone')
        bt.write_file(zone_path, zone_text(pools))
        config_path = os.path.join(self.tmp, 'authd.yaml')
        control = os.path.join(self.tmp, 'control.sock')
        bt.write_file(config_path, self.config_text(53, pools, feeds, damping))
        res = bt.run_authd('--check', '-c', config_path)
        if res.returncode != 0:
            with open(config_path) as f:
                self.fail('--check rejects the test config:\n%s%s\n%s' % (
                    res.stdout, res.stderr, f.read()))

        def make_argv(port):
            bt.write_file(config_path, self.config_text(port, pools, feeds, damping))
            return [bt.AUTHD, '-c', config_path], {}

        self.authd = bt._start_ready(make_argv, ADDR, control=control, config=config_path)
        authd = self.authd

        def stop_authd():
            rc = authd.stop()
            if rc != 0:
                raise AssertionError('ballast-authd exit code %r after SIGTERM; log:\n%s'
                                     % (rc, authd.log_text()))
        self.addCleanup(stop_authd)
        authd.wait_for('event=health_started', timeout=5)
        return authd

    # ---- answers -------------------------------------------------------------------------

    def records(self, owner, tcp=False):
        """(addresses in wire order, TTLs) of the A answer for owner; fails on anything but a
        NOERROR answer with at least one A record (a pool never answers empty)."""
        qname = '%s.%s' % (owner, ZONE)
        r = self.authd.query(qname, 'A', tcp=tcp)
        per_rr = dns.message.from_wire(r.wire, one_rr_per_rrset=True)
        addrs = [rd.address for rrset in per_rr.answer if rrset.rdtype == dns.rdatatype.A
                 for rd in rrset]
        ttls = {rrset.ttl for rrset in per_rr.answer}
        if r.rcode() != dns.rcode.NOERROR or not addrs:
            raise AssertionError('empty or failed answer for %s (never allowed):\n%s\nlog:\n%s'
                                 % (qname, r, self.authd.log_text()))
        if not (r.flags & dns.flags.AA):
            raise AssertionError('answer for %s without AA:\n%s' % (qname, r))
        return addrs, ttls

    def answer(self, owner):
        return frozenset(self.records(owner)[0])

    def assert_answer(self, owner, expected, msg=''):
        got = self.answer(owner)
        self.assertEqual(got, frozenset(expected), '%s answer for %s; log:\n%s' % (
            msg, owner, self.authd.log_text()))

    def wait_answer(self, owner, after, bound, since, before=None):
        """Poll until owner answers `after` (a set of addresses); returns the seconds since
        `since`. Fails when that is later than bound (having watched up to SLOW_LIMIT to say
        how late), or when a set other than before/after shows up meanwhile."""
        after = frozenset(after)
        allowed = {after} | ({frozenset(before)} if before is not None else set())
        seen = []
        while True:
            got = self.answer(owner)
            elapsed = time.monotonic() - since
            if not seen or seen[-1][1] != got:
                seen.append((round(elapsed, 2), got))
            if before is not None and got not in allowed:
                self.fail('%s answered %s while changing from %s to %s; seen %s; log:\n%s' % (
                    owner, sorted(got), sorted(before), sorted(after), seen,
                    self.authd.log_text()))
            if got == after:
                break
            if elapsed > bound + SLOW_LIMIT:
                self.fail('%s still not %s after %.1f s (bound %.1f s); seen %s; log:\n%s' % (
                    owner, sorted(after), elapsed, bound, seen, self.authd.log_text()))
            time.sleep(POLL)
        self.assertLessEqual(elapsed, bound, '%s became %s after %.2f s, bound %.2f s; seen %s; '
                             'log:\n%s' % (owner, sorted(after), elapsed, bound, seen,
                                           self.authd.log_text()))
        return elapsed

    def assert_steady(self, owner, expected, seconds, msg=''):
        """owner answers exactly `expected` on every sample for `seconds`."""
        expected = frozenset(expected)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            got = self.answer(owner)
            if got != expected:
                self.fail('%s %s answered %s, expected %s to hold; log:\n%s' % (
                    msg, owner, sorted(got), sorted(expected), self.authd.log_text()))
            time.sleep(POLL * 2)

    # ---- control -------------------------------------------------------------------------

    def ctl_ok(self, *args):
        res = self.authd.ctl(*args)
        self.assertEqual(res.returncode, 0, 'ballast %s: rc=%d\n%s%s' % (
            ' '.join(args), res.returncode, res.stdout, res.stderr))
        return res.stdout

    def health(self):
        return parse_health(self.ctl_ok('health'))

    def stats(self):
        return bt.parse_kv(self.ctl_ok('stats'))

    def transition(self, owner, member, state, since, timeout=SLOW_LIMIT):
        return self.authd.wait_for('event=health_transition', timeout=timeout, since=since,
                                   all_of=('pool=%s ' % pool_name(owner),
                                           'member=%s ' % member, 'state=%s' % state))


# ---- probes: a member goes down and comes back ----------------------------------------------

class ProbeTransitions(HealthCase):

    def down_and_up(self, owner, members, victim, fail, repair, what):
        """fail() makes victim's check fail: it must be gone within DOWN_BOUND and stay gone;
        repair() makes it pass: back within UP_BOUND."""
        rest = [m for m in members if m != victim]
        self.assert_answer(owner, members, 'before %s:' % what)
        mark = self.authd.line_count()
        t0 = time.monotonic()
        fail()
        self.wait_answer(owner, rest, DOWN_BOUND, t0, before=members)
        self.transition(owner, victim, 'down', mark)
        self.assert_steady(owner, rest, 1.0, 'after %s:' % what)
        mark = self.authd.line_count()
        t1 = time.monotonic()
        repair()
        self.wait_answer(owner, members, UP_BOUND, t1, before=rest)
        self.transition(owner, victim, 'up', mark)

    def test_tcp_member_down_gone_then_back_within_bounds(self):
        members = [ip(10), ip(11), ip(12)]
        port = pick_port(members)
        eps = {a: self.endpoint(TcpEndpoint(a, port)) for a in members}
        self.start([pool('tcp', members, tcp_check(port))])
        addrs, ttls = self.records('tcp')
        self.assertEqual(ttls, {POOL_TTL}, 'the pool TTL must replace the zone TTL %d' % STATIC_TTL)
        self.down_and_up('tcp', members, ip(11), eps[ip(11)].stop, eps[ip(11)].start,
                         'listener stopped')
        # Twice: the member's history does not change the bounds (damping is off here).
        self.down_and_up('tcp', members, ip(11), eps[ip(11)].stop, eps[ip(11)].start,
                         'listener stopped again')

    def test_http_status_and_body_match_decide(self):
        members = [ip(13), ip(14)]
        port = pick_port(members)
        eps = {a: self.endpoint(HttpEndpoint(a, port)) for a in members}
        self.start([pool('http', members, http_check(port, **{'expect-status': 200,
                                                            'body-match': 'healthy'}))])
        victim = eps[ip(13)]

        def set_(status=200, body='status: healthy\n'):
            def apply():
                victim.status, victim.body = status, body
            return apply

        self.down_and_up('http', members, ip(13), set_(status=503), set_(), 'HTTP 503')
        requests = victim.requests
        self.down_and_up('http', members, ip(13), set_(body='status: degraded\n'), set_(),
                         'body without the match')
        self.down_and_up('http', members, ip(13), victim.stop, victim.start, 'server stopped')
        self.assertGreater(victim.requests, requests, 'the probe must send HTTP requests')
        # expect-status 200: a redirect is a failure too (without it any 2xx/3xx would pass).
        self.down_and_up('http', members, ip(13), set_(status=302), set_(), 'HTTP 302')

    def test_http_url_host_is_sent_but_probe_goes_to_member(self):
        members = [ip(27), ip(28)]
        port = pick_port(members)
        eps = {a: self.endpoint(HttpEndpoint(a, port)) for a in members}
        # No {member}: the URL names the service; each member is still probed at its address.
        self.start([pool('named', members,
                         http_check(port, path='/health', **{'url': 'http://svc.%s:%d/health' % (
                             ZONE, port)}))])
        self.assert_steady('named', members, INTERVAL * (FALL + 2), 'service URL:')
        for a in members:
            self.assertEqual(eps[a].hosts, {'svc.%s:%d' % (ZONE, port)}, a)
        t0 = time.monotonic()
        eps[ip(28)].stop()
        self.wait_answer('named', [ip(27)], DOWN_BOUND, t0, before=members)

    def test_https_check_verifies_certificate_unless_told_not_to(self):
        members = [ip(15), ip(16)]
        port = pick_port(members)
        cert = os.path.join(self.tmp, 'cert.pem')
        key = os.path.join(self.tmp, 'key.pem')
        res = subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                              'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
                              '-subj', '/CN=ballast-test', '-addext',
                              'subjectAltName=IP:%s,IP:%s' % tuple(members),
                              '-keyout', key, '-out', cert], capture_output=True, text=True)
        self.assertEqual(res.returncode, 0, res.stderr)
        eps = {a: self.endpoint(HttpEndpoint(a, port, cert=(cert, key))) for a in members}
        check = http_check(port, scheme='https', **{'tls-verify': False, 'expect-status': 200})
        # .16 overrides one key of the pool's check: its self-signed certificate is verified,
        # so it fails and is withdrawn; .15 keeps working over TLS.
        self.start([pool('tls', [ip(15), {'address': ip(16), 'check': {'tls-verify': True}}],
                         check)])
        t0 = time.monotonic()
        self.wait_answer('tls', [ip(15)], DOWN_BOUND + 1.0, t0, before=members)
        self.assert_steady('tls', [ip(15)], 1.0, 'untrusted certificate:')
        self.assertGreater(eps[ip(15)].requests, 0, 'no HTTPS request reached %s' % ip(15))
        # Over TLS the status still decides.
        mark = self.authd.line_count()
        t1 = time.monotonic()
        eps[ip(15)].status = 500
        # .15 down too: nobody is healthy, so the pool fails open with both.
        self.wait_answer('tls', members, DOWN_BOUND, t1, before=[ip(15)])
        self.transition('tls', ip(15), 'down', mark)

    def test_dns_check_expects_rcode(self):
        members = [ip(17), ip(18)]
        port = pick_port(members)
        eps = {a: self.endpoint(DnsEndpoint(a, port)) for a in members}
        check = tcp_check(port, type='dns', **{'dns-name': 'probe.example.', 'dns-rcode':
                                                'NOERROR'})
        self.start([pool('dns', members, check)])

        def rcode(value):
            def apply():
                eps[ip(18)].rcode = value
            return apply

        self.down_and_up('dns', members, ip(18), rcode(dns.rcode.SERVFAIL),
                         rcode(dns.rcode.NOERROR), 'SERVFAIL')
        self.down_and_up('dns', members, ip(18), eps[ip(18)].stop, eps[ip(18)].start,
                         'no DNS server')
        self.assertGreater(eps[ip(17)].queries, 0)

    def test_startup_down_member_joins_after_rise_successes(self):
        port = pick_port([ip(19)])
        self.endpoint(TcpEndpoint(ip(19), port))
        t0 = time.monotonic()
        self.start([pool('boot', [ip(20), {'address': ip(19),
                                           'check': tcp_check(port, startup='down')}])])
        # .20 has no check (always up); .19 starts down and needs RISE good probes.
        self.assert_answer('boot', [ip(20)], 'at start-up:')
        self.wait_answer('boot', [ip(19), ip(20)], UP_BOUND + 1.0, t0, before=[ip(20)])


# ---- selection: levels, never empty, weights ----------------------------------------------

class Selection(HealthCase):

    def test_priority_level_failover_and_back(self):
        level0, level1 = [ip(10), ip(11)], [ip(12), ip(13)]
        port = pick_port(level0 + level1)
        eps = {a: self.endpoint(TcpEndpoint(a, port)) for a in level0 + level1}
        members = [{'address': a, 'priority': 0} for a in level0] + \
                  [{'address': a, 'priority': 1} for a in level1]
        self.start([pool('levels', members, tcp_check(port), **{'min-healthy': 2})])
        self.assert_answer('levels', level0, 'all healthy:')

        # The whole first level fails: the second answers.
        t0 = time.monotonic()
        stop_all([eps[a] for a in level0])
        self.wait_answer('levels', level1, DOWN_BOUND, t0, before=level0)
        pools, _ = self.health()
        self.assertEqual(pools[pool_name('levels')]['fields'].get('level'), '1', pools)
        self.assert_steady('levels', level1, 1.0, 'level 0 down:')

        # It is healthy again: answers move back.
        t1 = time.monotonic()
        for a in level0:
            eps[a].start()
        self.wait_answer('levels', level0, UP_BOUND, t1, before=level1)
        pools, _ = self.health()
        self.assertEqual(pools[pool_name('levels')]['fields'].get('level'), '0', pools)

        # min-healthy 2: one member down leaves level 0 too small, level 1 answers.
        t2 = time.monotonic()
        eps[ip(10)].stop()
        self.wait_answer('levels', level1, DOWN_BOUND, t2, before=level0)

        # Level 1 down too: no level has 2, the best level with any serving member answers.
        mark = self.authd.line_count()
        t3 = time.monotonic()
        stop_all([eps[a] for a in level1])
        self.wait_answer('levels', [ip(11)], DOWN_BOUND, t3, before=level1)
        for a in level1:
            self.transition('levels', a, 'down', mark)
        self.assert_steady('levels', [ip(11)], 1.0)

    def test_all_down_fails_open_with_every_member(self):
        members = [ip(10), ip(11)]
        port = pick_port(members)
        eps = {a: self.endpoint(TcpEndpoint(a, port)) for a in members}
        self.start([pool('open', members, tcp_check(port), **{'when-all-down': 'fail-open'})])
        t0 = time.monotonic()
        eps[ip(10)].stop()
        self.wait_answer('open', [ip(11)], DOWN_BOUND, t0, before=members)
        self.assertNotIn('event=pool_fail_open', self.authd.log_text())
        mark = self.authd.line_count()
        t1 = time.monotonic()
        eps[ip(11)].stop()
        self.wait_answer('open', members, DOWN_BOUND, t1, before=[ip(11)])
        _, line = self.authd.wait_for('event=pool_fail_open', since=mark, timeout=5)
        self.assertIn('pool=%s' % pool_name('open'), line)
        self.assert_steady('open', members, 1.0, 'every member down:')
        pools, _ = self.health()
        fields = pools[pool_name('open')]['fields']
        self.assertEqual(fields.get('fail_open'), 'yes', fields)
        self.assertEqual(fields.get('fail_open_events'), '1', fields)
        self.assertEqual(self.stats().get('pool_fail_open_events'), '1')
        # One comes back: answers hold only it, and fail-open ends.
        t2 = time.monotonic()
        eps[ip(11)].start()
        self.wait_answer('open', [ip(11)], UP_BOUND, t2, before=members)
        pools, _ = self.health()
        self.assertEqual(pools[pool_name('open')]['fields'].get('fail_open'), 'no', pools)

    def test_all_down_last_healthy_keeps_last_set(self):
        members = [ip(10), ip(11), ip(12)]
        port = pick_port(members)
        eps = {a: self.endpoint(TcpEndpoint(a, port)) for a in members}
        self.start([pool('last', members, tcp_check(port), **{'when-all-down': 'last-healthy'})])
        t0 = time.monotonic()
        eps[ip(10)].stop()
        self.wait_answer('last', [ip(11), ip(12)], DOWN_BOUND, t0, before=members)
        t1 = time.monotonic()
        eps[ip(11)].stop()
        self.wait_answer('last', [ip(12)], DOWN_BOUND, t1, before=[ip(11), ip(12)])
        mark = self.authd.line_count()
        eps[ip(12)].stop()
        self.transition('last', ip(12), 'down', mark)
        _, line = self.authd.wait_for('event=pool_fail_open', since=mark, timeout=5)
        self.assertIn('pool=%s' % pool_name('last'), line)
        # Not every member (fail-open would answer all three): the last healthy set.
        self.assert_steady('last', [ip(12)], 1.5, 'every member down, last-healthy:')
        t2 = time.monotonic()
        eps[ip(10)].start()
        self.wait_answer('last', [ip(10)], UP_BOUND, t2, before=[ip(12)])

    def test_weights_max_records_and_rotation(self):
        self.start([
            pool('weighted', [{'address': ip(10), 'weight': 3}, {'address': ip(11), 'weight': 1}],
                 **{'max-records': 1}),
            pool('pick2', [ip(20), ip(21), ip(22), ip(23)], **{'max-records': 2}),
            pool('rotate', [ip(24), ip(25), ip(26)]),
        ])
        # Weights: max-records 1 over 400 queries, .10 has 3/4 of the weight.
        counts = {ip(10): 0, ip(11): 0}
        n = 400
        for _ in range(n):
            addrs, ttls = self.records('weighted')
            self.assertEqual(len(addrs), 1, 'max-records 1: %s' % addrs)
            self.assertEqual(ttls, {POOL_TTL})
            counts[addrs[0]] += 1
        self.assertGreater(counts[ip(11)], 0, 'the lighter member never answered: %s' % counts)
        share = counts[ip(10)] / n
        self.assertTrue(0.62 <= share <= 0.88, 'weight 3:1 gave %s (share %.2f)' % (counts, share))

        # max-records 2 of 4: always two distinct records; over many queries all four appear.
        seen = set()
        for _ in range(100):
            addrs, _ = self.records('pick2')
            self.assertEqual(len(addrs), 2, 'max-records 2: %s' % addrs)
            self.assertEqual(len(set(addrs)), 2, addrs)
            seen |= set(addrs)
        self.assertEqual(seen, {ip(20), ip(21), ip(22), ip(23)})

        # No maximum: every answer holds all three, in rotating order (each comes first).
        first = set()
        for tcp in (False, True):
            for _ in range(30):
                addrs, _ = self.records('rotate', tcp=tcp)
                self.assertEqual(sorted(addrs), sorted([ip(24), ip(25), ip(26)]))
                first.add(addrs[0])
        self.assertEqual(first, {ip(24), ip(25), ip(26)}, 'no rotation of the first record')


# ---- protection: damping, velocity, slow targets ----------------------------------------

class Protection(HealthCase):

    def test_flapping_member_is_damped(self):
        members = [ip(10), ip(11)]
        port = pick_port(members)
        eps = {a: self.endpoint(TcpEndpoint(a, port)) for a in members}
        holddown = 4.0
        self.start([pool('flap', members, tcp_check(port))],
                   damping={'window': '60s', 'threshold': 4, 'holddown': '%ds' % holddown})
        flapper = eps[ip(10)]
        # Transitions 1-3 (down, up, down) behave normally.
        for step in range(1, 4):
            t = time.monotonic()
            if step % 2:
                flapper.stop()
                self.wait_answer('flap', [ip(11)], DOWN_BOUND, t, before=members)
            else:
                flapper.start()
                self.wait_answer('flap', members, UP_BOUND, t, before=[ip(11)])
        # Transition 4 (up) reaches the threshold: the member is held down for the hold-down
        # although its probes pass again.
        mark = self.authd.line_count()
        t4 = time.monotonic()
        flapper.start()
        self.transition('flap', ip(10), 'down', mark, timeout=UP_BOUND + 1.0)
        self.assert_steady('flap', [ip(11)], min(holddown - 1.5, UP_BOUND + 1.0),
                           'damped member (probes pass):')
        pools, _ = self.health()
        member = pools[pool_name('flap')]['members'][ip(10)]
        self.assertEqual(member.get('state'), 'down', member)
        self.assertEqual(member.get('last_probe'), 'ok', member)
        # Released once the hold-down ends (the engine re-checks every second).
        back = self.wait_answer('flap', members, UP_BOUND + holddown + 1.5, t4, before=[ip(11)])
        self.assertGreaterEqual(back, holddown - 0.2,
                                'back after %.2f s, before the %.0f s hold-down' % (back, holddown))

    def test_ten_members_failing_at_once_are_withdrawn_at_the_rate(self):
        members = [ip(n) for n in range(10, 20)]
        port = pick_port(members)
        eps = [self.endpoint(TcpEndpoint(a, port)) for a in members]
        share, per_s = 0.2, 2  # 0.2 x 10 members per 1 s window
        self.start([pool('ten', members, tcp_check(port), **{
            'max-withdraw-share': str(share), 'withdraw-interval': '1s',
            'when-all-down': 'fail-open'})])
        self.assert_answer('ten', members, 'all healthy:')
        mark = self.authd.line_count()
        t0 = time.monotonic()
        stop_all(eps)
        samples = []  # (seconds since the failure, records)
        fail_open_at = None
        while time.monotonic() - t0 < 20:
            got = self.answer('ten')  # fails on an empty answer
            now = time.monotonic() - t0
            self.assertTrue(got <= set(members), got)
            samples.append((now, len(got)))
            # Back to all ten after a descent: the fail-open fallback.
            if len(got) == 10 and any(c < 10 for _, c in samples):
                fail_open_at = now
                break
            time.sleep(0.1)
        trace = ' '.join('%.1f:%d' % s for s in samples)
        self.assertIsNotNone(fail_open_at, 'no fail-open within 20 s: %s; log:\n%s' % (
            trace, self.authd.log_text()))
        descent = [(t, c) for t, c in samples if c < 10]
        # Windows are 1 s long: a span under 1 s touches at most two of them, so at most
        # 2 x 2 members go between any two samples less than 0.9 s apart.
        for i, (t_a, c_a) in enumerate(samples):
            for t_b, c_b in samples[i + 1:]:
                if t_b - t_a > 0.9:
                    break
                self.assertLessEqual(c_a - c_b, 2 * per_s, 'dropped %d between %.1f and %.1f s: '
                                     '%s' % (c_a - c_b, t_a, t_b, trace))
        first_drop = descent[0]
        self.assertGreaterEqual(first_drop[1], 10 - 2 * per_s, 'first step too big: %s' % trace)
        # From 10 to 2 left is 8 withdrawals, four windows: the first may end just after the
        # first drop, the fourth starts 2 s after the second began, so >= 2 s (less sampling).
        low = next(((t, c) for t, c in descent if c <= 2), None)
        self.assertIsNotNone(low, 'never down to 2 before failing open: %s' % trace)
        self.assertGreaterEqual(low[0] - first_drop[0], 1.8,
                                'withdrawn faster than %d per second: %s' % (per_s, trace))
        self.assertGreaterEqual(len({c for _, c in descent}), 3, 'not gradual: %s' % trace)
        _, line = self.authd.wait_for('event=pool_fail_open', since=mark, timeout=5)
        self.assertIn('pool=%s' % pool_name('ten'), line)
        stats = self.stats()
        self.assertGreater(int(stats.get('withdrawals_held_back', '0')), 0, stats)

    def test_blackholed_target_times_out_without_delaying_other_probes(self):
        holes = [ip(n) for n in range(20, 25)]
        members = [ip(10), ip(11)]
        port = pick_port(holes + members)
        for a in holes:
            self.endpoint(BlackholeEndpoint(a, port))
        eps = {a: self.endpoint(TcpEndpoint(a, port)) for a in members}
        t_start = time.monotonic()
        self.start([pool('hole', holes, http_check(port, path='/')),
                    pool('fast', members, tcp_check(port))])
        # The hanging targets time out and go down (fail-open then answers all of them).
        for a in holes:
            self.transition('hole', a, 'down', 0,
                            timeout=INTERVAL * (FALL + 1) + TIMEOUT * FALL + 3.0)
        self.assertLess(time.monotonic() - t_start, 10.0)
        pools, _ = self.health()
        for a in holes:
            member = pools[pool_name('hole')]['members'][a]
            self.assertEqual(member.get('state'), 'down', member)
            self.assertIn('time', member.get('error', '').lower(),
                          'the error should say it timed out: %s' % member)
        # Meanwhile the other pool's member is withdrawn and restored within the same bounds.
        for _ in range(2):
            t0 = time.monotonic()
            eps[ip(11)].stop()
            self.wait_answer('fast', [ip(10)], DOWN_BOUND, t0, before=members)
            t1 = time.monotonic()
            eps[ip(11)].start()
            self.wait_answer('fast', members, UP_BOUND, t1, before=[ip(10)])
        self.assertTrue(all(pools[pool_name('hole')]['members'][a].get('last_probe') == 'failed'
                            for a in holes), pools)


# ---- feeds -------------------------------------------------------------------------------

class Feeds(HealthCase):

    def feed_config(self, name, **kw):
        feed = {'url': os.path.join(self.tmp, name), 'interval': '%dms' % (FEED_INTERVAL * 1000),
                'valid-for': '60s', 'max-size': '2K', 'max-age': '60s', 'max-members': 4}
        feed.update(kw)
        return feed

    def feed_state(self, url):
        _, feeds = self.health()
        self.assertIn(url, feeds, feeds)
        return feeds[url]

    def assert_rejected(self, mark, url, reason_part):
        _, line = self.authd.wait_for('event=feed_rejected', since=mark, timeout=5,
                                      all_of=('feed=%s' % url,))
        if reason_part is not None:
            self.assertIn(reason_part, line)
        self.assertRegex(line, r'reason="[^"]+"')
        return line

    def test_file_feed_marks_members_and_bad_feeds_change_nothing(self):
        port = pick_port([ip(23), ip(24)])
        for a in (ip(23), ip(24)):
            self.endpoint(TcpEndpoint(a, port))  # their probes pass: only the feed fails .23
        path = os.path.join(self.tmp, 'feed.json')
        feed = [ip(20), ip(21), ip(22)]
        write_atomic(path, feed_doc(1, [('feed', a, 'up') for a in feed]))
        self.start([pool('feed', feed),
                    pool('probed', [ip(23), ip(24)], tcp_check(port))],
                   feeds=[self.feed_config('feed.json')])
        self.authd.wait_for('event=feed_applied', timeout=5, all_of=('generation=1 ',))
        self.assert_answer('feed', feed)
        self.assert_answer('probed', [ip(23), ip(24)])

        # Generation 10 marks .21 down (no probe at all) and .23 down (its probe says up).
        mark = self.authd.line_count()
        t0 = time.monotonic()
        write_atomic(path, feed_doc(10, [('feed', ip(21), 'down'), ('probed', ip(23), 'down')]))
        self.wait_answer('feed', [ip(20), ip(22)], FEED_BOUND, t0, before=feed)
        self.wait_answer('probed', [ip(24)], FEED_BOUND, t0, before=[ip(23), ip(24)])
        self.authd.wait_for('event=feed_applied', since=mark, all_of=('generation=10 ',))
        self.transition('feed', ip(21), 'down', mark)
        self.assertEqual(self.feed_state(path).get('generation'), '10')

        now = int(time.time())
        bad = [
            ('older generation', feed_doc(5, [('feed', ip(21), 'up'), ('probed', ip(23), 'up')]),
             'generation 5 is not newer than the applied 10'),
            ('same generation', feed_doc(10, [('feed', ip(21), 'up')]),
             'generation 10 is not newer'),
            ('stale', feed_doc(11, [('feed', ip(21), 'up')], timestamp=now - 3600), 'stale'),
            ('future', feed_doc(11, [('feed', ip(21), 'up')], timestamp=now + 3600), 'future'),
            ('unparsable', feed_doc(12, [('feed', ip(21), 'up')])[:-7], 'invalid JSON'),
            ('oversized', feed_doc(13, [('feed', ip(21), 'up')]) + ' ' * 3000, '2048'),
            ('no members', feed_doc(14, []), 'empty feed'),
            ('over max-members', feed_doc(14, [('feed', a, 'up') for a in feed]
                                          + [('probed', ip(23), 'up'), ('probed', ip(24), 'up')]),
             'max-members'),
            ('unknown key', feed_doc(14, [('feed', ip(21), 'up')], extra=1), 'extra'),
            ('empty file', '', None),
            ('unknown state', feed_doc(15, [('feed', ip(21), 'sideways')]), 'sideways'),
            ('duplicate member', feed_doc(15, [('feed', ip(21), 'up'), ('feed', ip(21), 'down')]),
             None),
        ]
        for what, text, reason in bad:
            with self.subTest(feed=what):
                mark = self.authd.line_count()
                write_atomic(path, text)
                self.assert_rejected(mark, path, reason)
                self.assert_steady('feed', [ip(20), ip(22)], 0.5, '%s feed:' % what)
                self.assert_answer('probed', [ip(24)], '%s feed:' % what)
                self.assertEqual(self.feed_state(path).get('generation'), '10', what)
                self.assertNotEqual(self.feed_state(path).get('last_error', ''), '', what)

        # A good newer generation brings both back. Pool names ignore case and a final dot;
        # entries for unknown pools or members are skipped and counted.
        mark = self.authd.line_count()
        t1 = time.monotonic()
        write_atomic(path, feed_doc(20, [('FEED.Health.Test./A', ip(21), 'up'),
                                         ('probed', ip(23), 'up'), ('probed', ip(29), 'down'),
                                         ('nowhere.health.test/A', ip(20), 'down')]))
        self.wait_answer('feed', feed, FEED_BOUND, t1, before=[ip(20), ip(22)])
        self.wait_answer('probed', [ip(23), ip(24)], FEED_BOUND, t1, before=[ip(24)])
        _, line = self.authd.wait_for('event=feed_applied', since=mark,
                                      all_of=('generation=20 ',))
        self.assertIn('unknown=2', line)
        self.assert_steady('feed', feed, 0.5, 'unknown entries:')
        stats = self.stats()
        self.assertGreaterEqual(int(stats.get('feeds_rejected', '0')), len(bad), stats)
        self.assertGreaterEqual(int(stats.get('feeds_applied', '0')), 3, stats)

    def test_feed_states_expire_after_valid_for(self):
        path = os.path.join(self.tmp, 'feed.json')
        members = [ip(20), ip(21)]
        write_atomic(path, feed_doc(1, [('expire', ip(21), 'down')]))
        valid = 3.0
        self.start([pool('expire', members)],
                   feeds=[self.feed_config('feed.json', **{'valid-for': '%ds' % valid})])
        _, applied = self.authd.wait_for('event=feed_applied', timeout=5)
        t0 = time.monotonic()
        self.assert_answer('expire', [ip(20)], 'feed applied:')
        # The file is never renewed (later pulls are the same generation): once valid-for has
        # passed, .21 falls back to its own state (no check: up).
        back = self.wait_answer('expire', members, valid + 1.5, t0, before=[ip(20)])
        self.assertGreaterEqual(back, valid - 1.0, 'feed state expired after %.2f s' % back)

    def test_signed_feed_with_bad_signature_is_rejected(self):
        path = os.path.join(self.tmp, 'signed.json')
        sig = os.path.join(self.tmp, 'signed.sig')
        key, other = new_key(), new_key()
        members = [ip(20), ip(21)]

        def publish(doc, signature):
            write_atomic(sig, signature)
            write_atomic(path, doc)

        doc = feed_doc(1, [('signed', a, 'up') for a in members])
        publish(doc, sign_b64(key, doc))
        self.start([pool('signed', members)],
                   feeds=[self.feed_config('signed.json', **{'public-key': public_b64(key),
                                                            'signature-url': sig})])
        self.authd.wait_for('event=feed_applied', timeout=5, all_of=('generation=1 ',))
        t0 = time.monotonic()
        doc = feed_doc(2, [('signed', ip(21), 'down')])
        publish(doc, sign_b64(key, doc))
        self.wait_answer('signed', [ip(20)], FEED_BOUND + FEED_INTERVAL, t0, before=members)

        up3 = feed_doc(3, [('signed', ip(21), 'up')])
        bad = [
            ('signature of other bytes', up3, sign_b64(key, feed_doc(3, [('signed', ip(21),
                                                                          'down')]))),
            ('signature by another key', up3, sign_b64(other, up3)),
            ('signature not base64', up3, '!!! not a signature !!!\n'),
            ('signature too short', up3, base64.b64encode(b'x' * 10).decode()),
            ('document changed after signing', up3 + ' ', sign_b64(key, up3)),
        ]
        for what, text, signature in bad:
            with self.subTest(signature=what):
                mark = self.authd.line_count()
                publish(text, signature)
                self.assert_rejected(mark, path, 'ignature')
                self.assert_steady('signed', [ip(20)], 0.6, '%s:' % what)
                self.assertEqual(self.feed_state(path).get('generation'), '2', what)
        # Missing signature file: rejected too.
        mark = self.authd.line_count()
        os.unlink(sig)
        write_atomic(path, up3)
        self.assert_rejected(mark, path, None)
        self.assert_steady('signed', [ip(20)], 0.6, 'no signature file:')

        t1 = time.monotonic()
        publish(up3, sign_b64(key, up3))
        self.wait_answer('signed', members, FEED_BOUND + FEED_INTERVAL, t1, before=[ip(20)])
        self.assertEqual(self.feed_state(path).get('generation'), '3')


# ---- operating it ------------------------------------------------------------------------

class Operations(HealthCase):

    def test_health_command_and_stats(self):
        members = [ip(10), ip(11)]
        port = pick_port(members)
        eps = {a: self.endpoint(TcpEndpoint(a, port)) for a in members}
        # Two pools check the same targets the same way: one probe per target.
        self.start([pool('ops', members, tcp_check(port)),
                    pool('ops2', members, tcp_check(port))])
        pools, _ = self.health()
        self.assertEqual(set(pools), {pool_name('ops'), pool_name('ops2')}, pools)
        for name in pools:
            fields = pools[name]['fields']
            self.assertEqual(fields.get('level'), '0', fields)
            self.assertEqual(fields.get('fail_open'), 'no', fields)
            self.assertEqual(set(pools[name]['members']), set(members), pools[name])
            for m in pools[name]['members'].values():
                self.assertEqual(m.get('state'), 'up', m)
        stats = self.stats()
        self.assertEqual(stats.get('health_pools'), '2', stats)
        self.assertEqual(stats.get('health_probes'), '2', 'one probe per distinct target: %s'
                         % stats)
        time.sleep(INTERVAL * 2)
        self.assertGreater(int(self.stats().get('probes_sent', '0')), 0)

        mark = self.authd.line_count()
        t0 = time.monotonic()
        eps[ip(11)].stop()
        self.wait_answer('ops', [ip(10)], DOWN_BOUND, t0, before=members)
        self.wait_answer('ops2', [ip(10)], DOWN_BOUND, t0, before=members)
        for owner in ('ops', 'ops2'):
            _, line = self.transition(owner, ip(11), 'down', mark)
        pools, _ = self.health()
        for name in (pool_name('ops'), pool_name('ops2')):
            down = pools[name]['members'][ip(11)]
            up = pools[name]['members'][ip(10)]
            self.assertEqual(down.get('state'), 'down', down)
            self.assertEqual(down.get('serving'), 'no', down)
            self.assertEqual(down.get('last_probe'), 'failed', down)
            self.assertNotEqual(down.get('error', ''), '', down)
            self.assertEqual(down.get('transitions'), '1', down)
            self.assertEqual(up.get('state'), 'up', up)
            self.assertEqual(up.get('serving'), 'yes', up)
            self.assertEqual(up.get('last_probe'), 'ok', up)
            self.assertEqual(pools[name]['fields'].get('up'), '1', pools[name]['fields'])
            self.assertEqual(pools[name]['fields'].get('down'), '1', pools[name]['fields'])
        stats = self.stats()
        self.assertGreater(int(stats.get('probes_failed', '0')), 0, stats)
        self.assertEqual(stats.get('pool_fail_open_events'), '0', stats)

        t1 = time.monotonic()
        eps[ip(10)].stop()
        self.wait_answer('ops', members, DOWN_BOUND, t1, before=[ip(10)])
        self.wait_answer('ops2', members, DOWN_BOUND, t1, before=[ip(10)])
        self.assertEqual(self.stats().get('pool_fail_open_events'), '2')
        sent = int(self.stats().get('probes_sent', '0'))
        time.sleep(INTERVAL * 3)
        self.assertGreater(int(self.stats().get('probes_sent', '0')), sent,
                           'probes stopped being sent')

    def test_reload_keeps_member_states(self):
        members = [ip(10), ip(11)]
        port = pick_port(members)
        eps = {a: self.endpoint(TcpEndpoint(a, port)) for a in members}
        self.start([pool('kept', members, tcp_check(port))])
        t0 = time.monotonic()
        eps[ip(11)].stop()
        self.wait_answer('kept', [ip(10)], DOWN_BOUND, t0, before=members)
        self.ctl_ok('reload')
        # Neither the static RRset (both) nor a fresh start-up state (both up) comes back.
        self.assert_steady('kept', [ip(10)], 1.0, 'after reload:')
        pools, _ = self.health()
        self.assertEqual(pools[pool_name('kept')]['members'][ip(11)].get('transitions'), '1',
                         pools)
        t1 = time.monotonic()
        eps[ip(11)].start()
        self.wait_answer('kept', members, UP_BOUND, t1, before=[ip(10)])

    def test_example_health_config_passes_check(self):
        res = bt.run_authd('--check', '-c', os.path.join(bt.ZONES_DIR, 'health.yaml'))
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)

    def test_check_rejects_pool_outside_served_zones(self):
        zone_path = os.path.join(self.tmp, 'health.test.zone')
        p = pool('tcp', [ip(10)])
        bt.write_file(zone_path, zone_text([p]))
        bad = dict(p, name='www.elsewhere.test')
        config_path = os.path.join(self.tmp, 'authd.yaml')
        bt.write_file(config_path, bt.config_yaml(ADDR, 5399, [(ZONE, zone_path)])
                      + health_yaml([bad]))
        res = bt.run_authd('--check', '-c', config_path)
        self.assertNotEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn('www.elsewhere.test', res.stderr)
        self.assertIn(config_path, res.stderr)


if __name__ == '__main__':
    bt.main()
