# System test of serve-stale in ballast-resolver (issue 5, RFC 8767): the resolver on 127.0.16.2
# stubs stale.test to one authority on 127.0.16.1 (ballast-authd or a Python answerer the test
# breaks on purpose) and must keep answering from expired data, mark it with EDE (RFC 8914),
# recover, not storm the authority, prefetch, protect critical names and keep its cache across
# restarts.
"""ballast-resolver serve-stale against a failing authority (127.0.16.x)."""

import os
import selectors
import shutil
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402
import test_resolver as tr  # noqa: E402

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.rrset  # noqa: E402

NET = '127.0.16'
AUTH_ADDR = NET + '.1'  # the authority of stale.test (ballast-authd or FakeAuthority)
RES_ADDR = NET + '.2'   # the resolver under test
ZONE = 'stale.test.'
ROOT_HINTS = os.path.join(bt.ZONES_DIR, 'root.hints')  # never used: stale.test is a stub zone

# Slow builds (the sanitizer run) scale the latency bounds, as test_health.py does.
SCALE = float(os.environ.get('BALLAST_TIMING_SCALE', '1'))
TTL = 2                   # of every record in stale.test, and its SOA MINIMUM (negative TTL)
STALE_TTL = 30            # serve-stale.stale-ttl
CLIENT_TIMEOUT = 1.0      # serve-stale.client-timeout
RECHECK = 3.0             # serve-stale.failure-recheck
WINDOW = 6.0              # serve-stale.suspicion-window
QUERY_TIMEOUT = 10.0      # resolution.query-timeout (the default)
PAST_TTL = TTL + 0.6      # sleep after a warm-up until every record is expired
FAST = 0.1 * SCALE        # an answer from the cache, stale or fresh
MARGIN = 0.6 * SCALE      # on top of a timer when the client waits for it
# How long the real authority may take to be believed again after an outage: the failure
# recheck time, plus the infra hold-down's probe interval (one probe per 10 s to a server held
# down after 5 failures, docs/serve-stale.md), plus margin: within failure-recheck + stale-ttl
# (33 s), the time a downstream cache holding a stale answer takes to ask again.
RECOVERY_BOUND = RECHECK + 10.0 + 2.0 * SCALE

EDE_OPTION = 15
EDE_STALE = 3
EDE_STALE_NXDOMAIN = 19
EDE_SERVFAIL = (22, 23)  # No Reachable Authority, Network Error

OLD_WWW = '192.0.2.1'
NEW_WWW = '192.0.2.2'
CRIT = '192.0.2.10'
CRITNX = '192.0.2.11'


# ---- the authority -------------------------------------------------------------------------

def zone_text(www=OLD_WWW, extra=()):
    lines = ['$ORIGIN %s' % ZONE, '$TTL %d' % TTL,
             '@ %d IN SOA ns.%s hostmaster.%s 1 60 60 600 %d' % (TTL, ZONE, ZONE, TTL),
             '@ IN NS ns', 'ns IN A %s' % AUTH_ADDR, 'www IN A %s' % www]
    return '\n'.join(lines + list(extra)) + '\n'


class RealAuthority:
    """ballast-authd serving stale.test on AUTH_ADDR@port (started and stopped by the test)."""

    def __init__(self, tmpdir, port):
        self.tmpdir, self.port = tmpdir, port
        self.proc = None

    def start(self, www=OLD_WWW):
        zone = os.path.join(self.tmpdir, 'stale.test.zone')
        bt.write_file(zone, zone_text(www))
        config = os.path.join(self.tmpdir, 'authd.yaml')
        bt.write_file(config, bt.config_yaml(AUTH_ADDR, self.port, [('stale.test', zone)],
                                             workers=1))
        self.proc = bt.Authd([bt.AUTHD, '-c', config], AUTH_ADDR, self.port)
        self.proc.wait_for('event=ready')
        return self

    def stop(self):
        if self.proc is not None:
            rc = self.proc.stop()
            self.proc = None
            if rc != 0:
                raise AssertionError('ballast-authd exit code %r' % rc)


class FakeAuthority:
    """A UDP authority for stale.test in a thread, answering per `mode`:
    answer (from `records`), silent (drops everything), servfail, refused, slow (answers
    correctly after `delay` seconds). `empty` maps a label to 'nodata' or 'nxdomain' to make
    that name answer empty. stop() closes the socket: the resolver then gets ICMP port
    unreachable. `received` counts every datagram that reached it."""

    def __init__(self, port, records=None, mode='answer', delay=3.0, ttl=TTL):
        self.port = port
        self.ttl = ttl  # of every record, and the SOA MINIMUM
        self.records = dict(records or {'www': OLD_WWW})  # label -> A address
        self.empty = {}
        self.mode = mode
        self.delay = delay
        self.received = 0
        self.lock = threading.Lock()
        self.sock = None
        self.thread = None
        self.stop_r = self.stop_w = None
        self.timers = []

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((AUTH_ADDR, self.port))
        self.stop_r, self.stop_w = socket.socketpair()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def running(self):
        return self.sock is not None

    def count(self):
        with self.lock:
            return self.received

    def _soa(self):
        return dns.rrset.from_text(ZONE, self.ttl, 'IN', 'SOA', 'ns.%s hostmaster.%s 1 60 60 600 %d'
                                   % (ZONE, ZONE, self.ttl))

    def answer(self, q):
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        qname = q.question[0].name
        qtype = q.question[0].rdtype
        zone = dns.name.from_text(ZONE)
        if not qname.is_subdomain(zone):
            r.flags &= ~dns.flags.AA
            r.set_rcode(dns.rcode.REFUSED)
            return r
        label = qname.relativize(zone).to_text().lower()
        if label == '@':
            if qtype == dns.rdatatype.SOA:
                r.answer.append(self._soa())
            elif qtype == dns.rdatatype.NS:
                r.answer.append(dns.rrset.from_text(ZONE, self.ttl, 'IN', 'NS', 'ns.' + ZONE))
            else:
                r.authority.append(self._soa())
            return r
        records = dict(self.records, ns=AUTH_ADDR)
        empty = self.empty.get(label)
        if label not in records or empty == 'nxdomain':
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(self._soa())
        elif qtype != dns.rdatatype.A or empty == 'nodata':
            r.authority.append(self._soa())
        else:
            r.answer.append(dns.rrset.from_text(qname, self.ttl, 'IN', 'A', records[label]))
        return r

    def _reply(self, sock, q, peer, rcode=None):
        r = self.answer(q) if rcode is None else dns.message.make_response(q)
        if rcode is not None:
            r.set_rcode(rcode)
        try:
            sock.sendto(r.to_wire(), peer)
        except OSError:
            pass  # stopped meanwhile

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        sel.register(self.stop_r, selectors.EVENT_READ)
        while True:
            for key, _ in sel.select():
                if key.fileobj is self.stop_r:
                    sel.close()
                    return
                wire, peer = self.sock.recvfrom(65535)
                with self.lock:
                    self.received += 1
                try:
                    q = dns.message.from_wire(wire)
                except Exception:  # noqa: BLE001 (anything unparsable is ignored)
                    continue
                if not q.question:
                    continue
                mode = self.mode
                if mode == 'silent':
                    continue
                if mode == 'servfail':
                    self._reply(self.sock, q, peer, dns.rcode.SERVFAIL)
                elif mode == 'refused':
                    self._reply(self.sock, q, peer, dns.rcode.REFUSED)
                elif mode == 'slow':
                    t = threading.Timer(self.delay, self._reply, args=(self.sock, q, peer))
                    t.daemon = True
                    self.timers.append(t)
                    t.start()
                else:
                    self._reply(self.sock, q, peer)

    def stop(self):
        if self.sock is None:
            return
        for t in self.timers:
            t.cancel()
        self.stop_w.send(b'x')
        self.thread.join(5)
        self.sock.close()
        self.stop_r.close()
        self.stop_w.close()
        self.sock = self.thread = None


# ---- the resolver --------------------------------------------------------------------------

def resolver_config(port, stale=None, resolution=None, cache=None):
    """The resolver's YAML: stale.test stubbed to AUTH_ADDR@port, the test's serve-stale
    timers unless overridden (stale/resolution/cache: dict key -> value)."""
    s = {'enable': 'yes', 'stale-ttl': STALE_TTL,
         'client-timeout': '%dms' % (CLIENT_TIMEOUT * 1000),
         'failure-recheck': '%ds' % RECHECK, 'suspicion-window': '%ds' % WINDOW,
         'critical-suffixes': '[ crit.stale.test, critnx.stale.test ]'}
    s.update(stale or {})
    res = {'root-hints': ROOT_HINTS, 'allow-private-upstreams': 'yes'}
    res.update(resolution or {})
    out = ['server:', '  log-level: info', 'resolution:']
    out += ['  %s: %s' % kv for kv in res.items()]
    out += ['stub:', '  - zone: stale.test', '    to: [ "%s@%d" ]' % (AUTH_ADDR, port)]
    out += ['serve-stale:'] + ['  %s: %s' % kv for kv in s.items()]
    if cache:
        out += ['cache:'] + ['  %s: %s' % kv for kv in cache.items()]
    return '\n'.join(out) + '\n'


def ede_codes(msg):
    return [int(o.code) for o in msg.options if o.otype == EDE_OPTION]


def a_records(msg):
    return sorted(rd.address for rrset in msg.answer if rrset.rdtype == dns.rdatatype.A
                  for rd in rrset)


def ttls(msg):
    return sorted({rrset.ttl for rrset in msg.answer + msg.authority})


def rcode_text(msg):
    return dns.rcode.to_text(msg.rcode())


def fqdn(label):
    return '%s.%s' % (label, ZONE)


class StaleCase(unittest.TestCase):
    """Per test: a temporary directory, a port on AUTH_ADDR, and cleanups that stop every
    daemon and Python authority the test started (by PID / handle)."""

    def setUp(self):
        bt.require_binaries(tr.RESOLVER, bt.AUTHD, bt.TOOL)
        self.tmp = bt.make_tmpdir('ballast-stale-')
        self.addCleanup(bt.remove_tmpdir, self.tmp)
        self.port = bt.free_port(AUTH_ADDR)
        self._n = 0

    def fake(self, **kw):
        f = FakeAuthority(self.port, **kw).start()
        self.addCleanup(f.stop)
        return f

    def real(self, www=OLD_WWW):
        a = RealAuthority(self.tmp, self.port).start(www)
        self.addCleanup(a.stop)
        return a

    def resolver(self, config_text, name='r', workers=2):
        """Start a resolver (fresh cache unless a snapshot says otherwise) in its own dir."""
        self._n += 1
        d = os.path.join(self.tmp, '%s%d' % (name, self._n))
        r = tr.start_resolver(d, RES_ADDR, config_text=config_text, workers=workers)
        self.addCleanup(self._stop_resolver, r)
        return r

    def _stop_resolver(self, r):
        if r.alive():
            tr.stop_checked(r)
        else:
            r.stop()

    def ask(self, r, label, rdtype='A', timeout=QUERY_TIMEOUT + 3):
        """(message, seconds) of one EDNS query for label.stale.test."""
        t0 = time.monotonic()
        msg = r.query(fqdn(label), rdtype, timeout=timeout)
        return msg, time.monotonic() - t0

    def assert_fresh(self, msg, address, what=''):
        self.assertEqual('NOERROR', rcode_text(msg), '%s\n%s' % (what, msg))
        self.assertEqual([address], a_records(msg), '%s\n%s' % (what, msg))
        self.assertEqual([], ede_codes(msg), '%s: a fresh answer carries no EDE\n%s' % (what, msg))
        self.assertLessEqual(max(ttls(msg)), TTL, '%s\n%s' % (what, msg))

    def assert_stale(self, msg, address, what=''):
        """The old address, TTL stale-ttl, EDE 3 (RFC 8767 §4, RFC 8914 §4.4)."""
        self.assertEqual('NOERROR', rcode_text(msg), '%s\n%s' % (what, msg))
        self.assertEqual([address], a_records(msg), '%s\n%s' % (what, msg))
        self.assertEqual([STALE_TTL], [rrset.ttl for rrset in msg.answer], '%s\n%s' % (what, msg))
        self.assertEqual([EDE_STALE], ede_codes(msg), '%s\n%s' % (what, msg))

    def assert_stale_nxdomain(self, msg, what=''):
        self.assertEqual('NXDOMAIN', rcode_text(msg), '%s\n%s' % (what, msg))
        self.assertEqual([], msg.answer, '%s\n%s' % (what, msg))
        self.assertEqual([EDE_STALE_NXDOMAIN], ede_codes(msg), '%s\n%s' % (what, msg))
        soas = [rrset for rrset in msg.authority if rrset.rdtype == dns.rdatatype.SOA]
        self.assertEqual(1, len(soas), '%s: the SOA goes with a stale NXDOMAIN\n%s' % (what, msg))
        # docs/serve-stale.md: a stale NXDOMAIN goes out with its SOA at TTL stale-ttl.
        self.assertEqual(STALE_TTL, soas[0].ttl, '%s\n%s' % (what, msg))

    def assert_servfail(self, msg, what=''):
        self.assertEqual('SERVFAIL', rcode_text(msg), '%s\n%s' % (what, msg))
        codes = ede_codes(msg)
        self.assertEqual(1, len(codes), '%s: one EDE on the SERVFAIL\n%s' % (what, msg))
        self.assertIn(codes[0], EDE_SERVFAIL, '%s\n%s' % (what, msg))

    def stats(self, r):
        return r.stats()

    def ctl_ok(self, r, *args):
        res = r.ctl(*args)
        self.assertEqual(0, res.returncode, '%s: %s%s' % (args, res.stdout, res.stderr))
        return res.stdout


# ---- 1 and 2: every fault, then recovery ----------------------------------------------------

class FaultTest(StaleCase):
    """Warm from ballast-authd, let the data expire, break the authority in one way; then bring
    ballast-authd back with a new address for www."""

    FAULTS = ('stopped', 'silent', 'servfail', 'refused', 'slow')

    def apply_fault(self, fault):
        if fault == 'stopped':
            return None  # nothing listens: ICMP port unreachable
        return self.fake(mode=fault, delay=3.0)

    def run_fault(self, fault):
        authd = self.real()
        r = self.resolver(resolver_config(self.port), fault)
        msg, _ = self.ask(r, 'www')
        self.assert_fresh(msg, OLD_WWW, 'warm-up')
        msg, _ = self.ask(r, 'nx')
        self.assertEqual('NXDOMAIN', rcode_text(msg), msg)
        self.assertEqual([], ede_codes(msg), msg)
        warmed = time.monotonic()
        authd.stop()
        fake = self.apply_fault(fault)
        time.sleep(max(0.0, warmed + PAST_TTL - time.monotonic()))

        # The first client of the outage waits at most the client timer.
        msg, took = self.ask(r, 'www')
        self.assert_stale(msg, OLD_WWW, 'first query after the fault')
        self.assertLess(took, CLIENT_TIMEOUT + MARGIN, 'first stale answer took %.2f s' % took)
        # Later ones are answered at once (failure recheck / refresh in flight).
        for i in range(3):
            msg, took = self.ask(r, 'www')
            self.assert_stale(msg, OLD_WWW, 'query %d after the fault' % (i + 2))
            self.assertLess(took, FAST, 'stale answer %d took %.3f s' % (i + 2, took))
        # A cached NXDOMAIN stays NXDOMAIN, marked Stale NXDOMAIN (EDE 19).
        msg, took = self.ask(r, 'nx')
        self.assert_stale_nxdomain(msg, 'cached NXDOMAIN after the fault')
        self.assertLess(took, CLIENT_TIMEOUT + MARGIN, 'stale NXDOMAIN took %.2f s' % took)
        # A name never cached has nothing to fall back on: SERVFAIL with EDE 22 or 23.
        msg, took = self.ask(r, 'never')
        self.assert_servfail(msg, 'never-cached name')
        self.assertLess(took, QUERY_TIMEOUT + 1.0)
        st = self.stats(r)
        self.assertGreaterEqual(st['stale_answers'], 5, st)
        self.assertGreaterEqual(st['cache_stale_hits'], 1, st)
        self.assertGreaterEqual(st['stale_at_once'], 3, st)
        self.assertGreaterEqual(st['resolution_failures'], 1, st)
        # The first client got its stale answer from the client timer or the failed resolution.
        self.assertGreaterEqual(st['stale_on_timer'] + st['stale_on_failure'], 1, st)
        packets = fake.count() if fake else 0

        # Recovery: the real authority comes back with a new address for www.
        if fake:
            fake.stop()
        self.real(NEW_WWW)
        restored = time.monotonic()
        while True:
            msg, took = self.ask(r, 'www')
            since = time.monotonic() - restored
            if a_records(msg) == [NEW_WWW]:
                self.assert_fresh(msg, NEW_WWW, 'after recovery')
                break
            self.assert_stale(msg, OLD_WWW, 'before recovery (%.1f s)' % since)
            self.assertLess(took, FAST, 'stale answer while recovering took %.3f s' % took)
            self.assertLess(since, RECOVERY_BOUND, 'no fresh data %.1f s after the authority '
                            'came back' % since)
            time.sleep(0.2)
        return since, packets



def _fault_test(fault):
    def test(self):
        since, packets = self.run_fault(fault)
        sys.stderr.write('\n  %s: fresh data %.1f s after the authority came back (the fault '
                         'server saw %d packets)\n' % (fault, since, packets))
    test.__name__ = 'test_%s_authority_serves_stale_then_recovers' % fault
    test.__doc__ = None
    return test


for _fault in FaultTest.FAULTS:
    _t = _fault_test(_fault)
    setattr(FaultTest, _t.__name__, _t)


# ---- 3: no retry storm ----------------------------------------------------------------------

LOAD_NAMES = ['n%d' % i for i in range(1, 6)]
LOAD_QPS = 20
LOAD_SECONDS = 12.0


def run_load(r, labels, qps, seconds, drain):
    """Send qps queries a second for `seconds` (names round-robin) from one UDP socket without
    waiting for answers; collect answers until `drain` seconds after the last send.
    Returns [(label, latency or None, message or None)] in send order."""
    total = int(qps * seconds)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect((r.addr, r.port))
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sent = {}     # id -> index
    results = []  # [label, sent_at, latency, msg]
    start = time.monotonic()
    i = 0
    try:
        while True:
            now = time.monotonic()
            while i < total and start + i / qps <= now:
                label = labels[i % len(labels)]
                q = bt.make_query(fqdn(label), 'A', qid=i + 1)
                sock.send(q.to_wire())
                sent[i + 1] = i
                results.append([label, time.monotonic(), None, None])
                i += 1
            pending = len(sent)
            if i >= total and (pending == 0 or now > start + seconds + drain):
                break
            wait = (start + i / qps - now) if i < total else 0.1
            for _ in sel.select(max(0.0, min(wait, 0.1))):
                while True:
                    try:
                        wire = sock.recv(65535)
                    except BlockingIOError:
                        break
                    msg = bt.parse(wire)
                    idx = sent.pop(msg.id, None)
                    if idx is not None:
                        results[idx][2] = time.monotonic() - results[idx][1]
                        results[idx][3] = msg
    finally:
        sel.close()
        sock.close()
    return [(label, lat, msg) for label, _, lat, msg in results]


class RetryStormTest(StaleCase):

    def load_run(self, enable):
        fake = self.fake(records={n: OLD_WWW for n in LOAD_NAMES})
        cfg = resolver_config(self.port, stale={'enable': enable},
                              resolution={'query-timeout': '4s'})
        r = self.resolver(cfg, 'load-' + enable)
        for n in LOAD_NAMES:
            msg, _ = self.ask(r, n)
            self.assert_fresh(msg, OLD_WWW, 'warm-up of %s' % n)
        time.sleep(PAST_TTL)
        fake.mode = 'silent'
        before = fake.count()
        results = run_load(r, LOAD_NAMES, LOAD_QPS, LOAD_SECONDS, drain=5.0)
        packets = fake.count() - before
        st = self.stats(r)
        self._stop_resolver(r)
        fake.stop()
        return results, packets, st

    def test_silent_authority_is_not_stormed_under_steady_load(self):
        results, packets, st = self.load_run('yes')
        off_results, off_packets, off_st = self.load_run('no')
        total = len(results)
        answered = [(n, lat, m) for n, lat, m in results if m is not None]
        noerror = [x for x in answered if rcode_text(x[2]) == 'NOERROR']
        off_servfail = [x for x in off_results
                        if x[2] is not None and rcode_text(x[2]) == 'SERVFAIL']
        # The bound: each question is resolved at most once per failure-recheck period
        # (docs/serve-stale.md: "each question costs at most one resolution per recheck
        # period"), plus the first resolution and one at a period boundary; a resolution against
        # one server sends at most 2 packets (one try, plus a retry without EDNS). The infra
        # hold-down (5 failures of a server: held down 30 s, one probe per 10 s) usually keeps
        # the real count well below it.
        bound = len(LOAD_NAMES) * (int(LOAD_SECONDS / RECHECK) + 2) * 2
        sys.stderr.write(
            '\n  retry storm: %d client queries over %.0f s, %d names; serve-stale on: silent '
            'authority got %d packets (bound %d), %d/%d answered NOERROR, max latency %.3f s; '
            'serve-stale off: %d packets, %d/%d SERVFAIL\n' % (
                total, LOAD_SECONDS, len(LOAD_NAMES), packets, bound, len(noerror), total,
                max(lat for _, lat, _ in answered) if answered else -1, off_packets,
                len(off_servfail), len(off_results)))
        self.assertEqual(total, len(answered), 'unanswered queries with serve-stale on')
        self.assertEqual(total, len(noerror), 'not every query got the stale answer')
        for n, lat, m in answered:
            self.assert_stale(m, OLD_WWW, 'load query for %s' % n)
        slow = [lat for _, lat, _ in answered if lat >= FAST]
        self.assertLessEqual(len(slow), len(LOAD_NAMES),
                             'only the first client per name may wait: %s' % slow)
        self.assertLess(max(lat for _, lat, _ in answered), CLIENT_TIMEOUT + MARGIN)
        self.assertLessEqual(packets, bound, 'retry storm: %d packets for %d queries' % (
            packets, total))
        self.assertGreater(packets, 0, 'the resolver never tried the authority')
        self.assertGreaterEqual(st['stale_at_once'], total - 2 * len(LOAD_NAMES), st)
        # The same load without serve-stale: the clients get SERVFAIL, not the data.
        self.assertGreaterEqual(len(off_servfail), total * 9 // 10, off_st)
        self.assertEqual(0, off_st['stale_answers'], off_st)


# ---- 4: client timer 0 and the client timer ------------------------------------------------

class ClientTimerTest(StaleCase):
    """The authority answers the warm-up after WARM_DELAY, so the resolver measures a long RTT
    and keeps waiting for it (RTO = SRTT + 4 RTTVAR, RFC 6298): a later answer after
    SLOW_DELAY still comes within the resolver's per-try timeout. (An authority slower than the
    RTO counts as failed, which FaultTest covers with its 3 s 'slow' fault.)"""

    WARM_DELAY = 0.3
    SLOW_DELAY = 0.6

    def warm_then_slow(self, client_timeout):
        fake = self.fake(mode='slow', delay=self.WARM_DELAY)
        r = self.resolver(resolver_config(self.port, stale={'client-timeout': client_timeout}))
        msg, took = self.ask(r, 'www')
        self.assert_fresh(msg, OLD_WWW, 'warm-up')
        self.assertGreaterEqual(took, self.WARM_DELAY)
        time.sleep(PAST_TTL)
        fake.delay = self.SLOW_DELAY
        fake.records['www'] = NEW_WWW
        return fake, r

    def test_client_timeout_zero_answers_stale_at_once_and_refreshes_behind(self):
        fake, r = self.warm_then_slow('0')
        msg, took = self.ask(r, 'www')
        self.assert_stale(msg, OLD_WWW, 'client-timeout 0')
        self.assertLess(took, FAST, 'stale answer with client-timeout 0 took %.3f s' % took)
        st = self.stats(r)
        self.assertGreaterEqual(st['stale_at_once'], 1, st)
        self.assertGreaterEqual(st['refreshes'], 1, st)
        time.sleep(self.SLOW_DELAY + 0.4 * SCALE)  # the background refresh has its answer
        msg, took = self.ask(r, 'www')
        self.assert_fresh(msg, NEW_WWW, 'after the background refresh')
        self.assertLess(took, FAST, 'answer after the refresh took %.3f s' % took)

    def test_client_timer_answers_stale_and_resolution_goes_on(self):
        fake, r = self.warm_then_slow('300ms')
        msg, took = self.ask(r, 'www')
        self.assert_stale(msg, OLD_WWW, 'client timer 300 ms')
        self.assertGreaterEqual(took, 0.3 - 0.05, 'the client timer did not wait (%.3f s)' % took)
        self.assertLess(took, self.SLOW_DELAY, 'answered after the authority (%.3f s)' % took)
        st = self.stats(r)
        self.assertGreaterEqual(st['stale_on_timer'], 1, st)
        time.sleep(self.SLOW_DELAY + 0.4 * SCALE)
        msg, took = self.ask(r, 'www')
        self.assert_fresh(msg, NEW_WWW, 'after the resolution behind the stale answer')
        self.assertLess(took, FAST)


# ---- overload: past max-pending, stale at once rather than queueing -------------------------

class OverloadTest(StaleCase):
    """With max-pending 1 and one resolution stuck on a silent authority, a query for stale data
    is answered stale at once and one without stale data gets SERVFAIL at once (docs/serve-stale.md,
    Overload) instead of queueing behind the stuck one."""

    def test_past_max_pending_stale_is_answered_at_once(self):
        # a slow warm-up makes the resolver wait long (RTO = SRTT + 4 RTTVAR, about 0.9 s)
        # for the silent authority later, so the stuck resolution really stays pending
        fake = self.fake(mode='slow', delay=0.3)
        # one worker: max-pending counts per worker
        r = self.resolver(resolver_config(self.port, stale={'client-timeout': '5s'},
                                          resolution={'max-pending': 1}), workers=1)
        msg, _ = self.ask(r, 'www')
        self.assert_fresh(msg, OLD_WWW, 'warm-up')
        time.sleep(PAST_TTL)
        fake.mode = 'silent'
        # a name never cached: its resolution waits for the silent authority
        stuck = threading.Thread(target=lambda: self.ask(r, 'never1', timeout=QUERY_TIMEOUT + 5))
        stuck.start()
        self.addCleanup(stuck.join)
        time.sleep(0.2)  # not scaled: the stuck resolution lasts about 0.9 s in every build
        msg, took = self.ask(r, 'www')
        self.assert_stale(msg, OLD_WWW, 'past max-pending')
        self.assertLess(took, FAST, 'stale answer past max-pending took %.3f s' % took)
        msg, took = self.ask(r, 'never2')
        self.assertEqual('SERVFAIL', rcode_text(msg), msg)
        self.assertLess(took, FAST, 'SERVFAIL past max-pending took %.3f s' % took)
        st = self.stats(r)
        self.assertGreaterEqual(st['overload'], 2, st)
        self.assertGreaterEqual(st['stale_at_once'], 1, st)


# ---- 5: critical names that turn empty -----------------------------------------------------

class SuspicionTest(StaleCase):

    def test_critical_name_keeps_its_data_during_the_suspicion_window(self):
        fake = self.fake(records={'www': OLD_WWW, 'crit': CRIT, 'critnx': CRITNX,
                                  'plain': OLD_WWW})
        r = self.resolver(resolver_config(self.port))
        for label, addr in (('crit', CRIT), ('critnx', CRITNX), ('plain', OLD_WWW)):
            msg, _ = self.ask(r, label)
            self.assert_fresh(msg, addr, 'warm-up of %s' % label)
        time.sleep(PAST_TTL)
        fake.empty = {'crit': 'nodata', 'critnx': 'nxdomain', 'plain': 'nodata'}

        # A name that is not critical: the empty answer is served at once.
        msg, took = self.ask(r, 'plain')
        self.assertEqual('NOERROR', rcode_text(msg), msg)
        self.assertEqual([], msg.answer, msg)
        self.assertEqual([], ede_codes(msg), msg)
        self.assertLess(took, CLIENT_TIMEOUT, 'NODATA for plain took %.2f s' % took)

        first = {}
        ended = {}
        expect = {'crit': CRIT, 'critnx': CRITNX}
        deadline = time.monotonic() + WINDOW + RECHECK + 4.0 * SCALE
        while len(ended) < 2:
            self.assertLess(time.monotonic(), deadline, 'suspicion never ended: %s' % ended)
            for label in expect:
                if label in ended:
                    continue
                msg, took = self.ask(r, label)
                now = time.monotonic()
                if msg.answer:
                    first.setdefault(label, now)
                    self.assert_stale(msg, expect[label], '%s at %.1f s of the window' % (
                        label, now - first[label]))
                    self.assertLess(took, CLIENT_TIMEOUT + MARGIN)
                else:
                    self.assertIn(label, first, 'no suspicion for %s:\n%s' % (label, msg))
                    ended[label] = (now - first[label], msg)
            time.sleep(0.25)
        sys.stderr.write('\n  suspicion: crit empty after %.1f s, critnx after %.1f s '
                         '(window %.0f s)\n' % (ended['crit'][0], ended['critnx'][0], WINDOW))
        for label in expect:
            since, msg = ended[label]
            self.assertGreaterEqual(since, WINDOW - 0.5, '%s empty after %.1f s' % (label, since))
            self.assertLessEqual(since, WINDOW + RECHECK + 2.0 * SCALE)
            self.assertEqual([], ede_codes(msg), msg)
        self.assertEqual('NOERROR', rcode_text(ended['crit'][1]), ended['crit'][1])
        self.assertEqual('NXDOMAIN', rcode_text(ended['critnx'][1]), ended['critnx'][1])
        st = self.stats(r)
        self.assertGreaterEqual(st['suspicions'], 2, st)
        self.assertGreaterEqual(st['stale_suspect'], 2, st)
        self.assertGreaterEqual(st['suspicions_ended'], 2, st)


# ---- 6: the cache across restarts ----------------------------------------------------------

class SnapshotTest(StaleCase):

    def snapshot_config(self, path):
        return resolver_config(self.port, cache={'snapshot-file': path})

    def test_snapshot_survives_restart_and_corrupt_one_is_rejected(self):
        snap = os.path.join(self.tmp, 'resolver.cache')
        cfg = self.snapshot_config(snap)
        authd = self.real()
        r = self.resolver(cfg)
        r.wait_for('event=cache_snapshot', all_of=('result=absent',), timeout=5)
        for label, rcode in (('www', 'NOERROR'), ('nx', 'NXDOMAIN')):
            msg, _ = self.ask(r, label)
            self.assertEqual(rcode, rcode_text(msg), msg)
        warmed = time.monotonic()
        authd.stop()
        tr.stop_checked(r)
        self.assertTrue(any('event=cache_snapshot' in line and 'result=written' in line
                            for line in r.lines()), r.log_text())
        self.assertTrue(os.path.getsize(snap) > 0)
        good = os.path.join(self.tmp, 'good.cache')
        shutil.copyfile(snap, good)

        time.sleep(max(0.0, warmed + PAST_TTL - time.monotonic()))
        r = self.resolver(cfg)
        _, line = r.wait_for('event=cache_snapshot', all_of=('result=loaded',), timeout=5)
        self.assertNotIn('entries=0 ', line)
        msg, took = self.ask(r, 'www')
        self.assert_stale(msg, OLD_WWW, 'after restart')
        self.assertLess(took, CLIENT_TIMEOUT + MARGIN)
        msg, _ = self.ask(r, 'nx')
        self.assert_stale_nxdomain(msg, 'after restart')
        tr.stop_checked(r)

        with open(good, 'rb') as f:
            data = f.read()
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x40
        for what, bad in (('truncated', data[:len(data) // 2]), ('byte flipped', bytes(flipped))):
            with self.subTest(corruption=what):
                with open(snap, 'wb') as f:
                    f.write(bad)
                r = self.resolver(cfg)
                _, line = r.wait_for('event=cache_snapshot', all_of=('result=rejected',),
                                     timeout=5)
                self.assertIn('reason="', line)
                self.assertFalse(any('result=loaded' in x for x in r.lines()), r.log_text())
                msg, _ = self.ask(r, 'www')
                self.assert_servfail(msg, 'www with a rejected snapshot (%s)' % what)
                tr.stop_checked(r)

    def test_cache_dump_and_load_over_the_control_socket(self):
        authd = self.real()
        r = self.resolver(resolver_config(self.port))
        msg, _ = self.ask(r, 'www')
        self.assert_fresh(msg, OLD_WWW, 'warm-up')
        warmed = time.monotonic()
        path = os.path.join(self.tmp, 'dump.cache')
        self.ctl_ok(r, 'cache', 'dump', path)
        self.assertTrue(os.path.getsize(path) > 0)
        authd.stop()
        time.sleep(max(0.0, warmed + PAST_TTL - time.monotonic()))
        # Into a second resolver with an empty cache: its first answer is the stale one.
        r2 = self.resolver(resolver_config(self.port))
        msg, _ = self.ask(r2, 'www')
        self.assert_servfail(msg, 'empty cache, authority down')
        self.ctl_ok(r2, 'cache', 'load', path)
        msg, took = self.ask(r2, 'www')
        self.assert_stale(msg, OLD_WWW, 'after cache load')
        self.assertLess(took, CLIENT_TIMEOUT + MARGIN)
        # And back into the first one after a flush.
        self.ctl_ok(r, 'flush', 'www.stale.test')
        msg, _ = self.ask(r, 'www')
        self.assert_servfail(msg, 'flushed, authority down')
        self.ctl_ok(r, 'cache', 'load', path)
        msg, _ = self.ask(r, 'www')
        self.assert_stale(msg, OLD_WWW, 'flushed, then cache load')


# ---- 7: prefetch ---------------------------------------------------------------------------

class PrefetchTest(StaleCase):
    # The default prefetch-threshold (10 %, spread per name between 5 and 10 %) makes a 4 s
    # entry due for prefetch near its end; a query every 0.2 s finds it there.
    TTL = 4

    def test_popular_name_is_refreshed_before_it_expires(self):
        fake = self.fake(records={'pre': OLD_WWW}, ttl=self.TTL)
        r = self.resolver(resolver_config(self.port, stale={'prefetch': 'yes'}))
        msg, _ = self.ask(r, 'pre')
        self.assertEqual([OLD_WWW], a_records(msg), msg)
        self.assertEqual([self.TTL], [rrset.ttl for rrset in msg.answer], msg)
        fake.records['pre'] = NEW_WWW  # a prefetch brings the new address
        base = self.stats(r)
        lats = []
        seen_new = None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2 * self.TTL + 0.5:
            msg, took = self.ask(r, 'pre')
            lats.append(took)
            self.assertEqual('NOERROR', rcode_text(msg), msg)
            self.assertEqual([], ede_codes(msg), 'a stale answer during prefetch:\n%s' % msg)
            if a_records(msg) == [NEW_WWW] and seen_new is None:
                seen_new = time.monotonic() - t0
            time.sleep(0.2)
        st = self.stats(r)
        sys.stderr.write('\n  prefetch: %d queries, max latency %.1f ms, new data after %s s, '
                         'prefetches=%d\n' % (len(lats), 1000 * max(lats),
                                              '%.1f' % seen_new if seen_new else 'never',
                                              st['prefetches']))
        self.assertGreaterEqual(st['prefetches'], 1, st)
        self.assertIsNotNone(seen_new, 'the prefetch never brought the new address')
        self.assertLess(seen_new, self.TTL + 0.5)
        self.assertEqual(base['answers_resolved'], st['answers_resolved'],
                         'a client query waited for a resolution: %s' % st)
        self.assertEqual(0, st['stale_answers'], st)
        self.assertLess(max(lats), 0.05 * SCALE, 'slowest query %.1f ms' % (1000 * max(lats)))


if __name__ == '__main__':
    bt.main()
