# System test of rate limiting on 127.0.19.0/24: response rate limiting in ballast-authd (UDP
# floods from one prefix dropped or slipped with TC=1, TCP and other prefixes served, stats, reload)
# and client-limits in ballast-resolver (floods dropped over UDP and TCP, other clients served).
"""Rate limits: ballast-authd `rrl` and ballast-resolver `client-limits` under bounded floods."""

import os
import random
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402
import test_resolver as tr  # noqa: E402

import dns.flags  # noqa: E402
import dns.rcode  # noqa: E402

AUTHD_ADDR = '127.0.19.1'
RESOLVER_ADDR = '127.0.19.2'
RELOAD_ADDR = '127.0.19.3'
RATE = 20
DRAIN_S = 1.0  # how long replies are collected after the last query of a flood
SLACK = 3      # replies allowed past the bucket's exact count (clock edges)

# Sources: the authd tests group clients by /28, so each block below is its own prefix.
FLOODER = '127.0.19.50'     # block .48-.63
NEIGHBOUR = '127.0.19.60'   # same /28 as FLOODER
STRANGER = '127.0.19.70'    # block .64-.79
NXFLOODER = '127.0.19.100'  # block .96-.111
WHITELISTED = '127.0.19.120'  # block .112-.127, whitelisted
RELOADER = '127.0.19.130'   # block .128-.143
RELOADER2 = '127.0.19.150'  # block .144-.159
# The resolver groups by /32 (its default).
R_FLOODER = '127.0.19.200'
R_OTHER = '127.0.19.201'
R_WHITELISTED = '127.0.19.202'
R_TCP = '127.0.19.203'


def rrl_yaml(enable=True, rate=RATE, slip=2, extra=()):
    lines = ['rrl:', '  enable: %s' % ('yes' if enable else 'no'), '  rate: %d' % rate,
             '  slip: %d' % slip, '  ipv4-prefix: 28'] + ['  ' + line for line in extra]
    return '\n'.join(lines) + '\n'


def start_authd(tmpdir, addr, rrl_text):
    """ballast-authd -c CONFIG with the example zones, a control socket and rrl_text appended."""
    bt.require_binaries()
    control = os.path.join(tmpdir, 'control.sock')
    config = os.path.join(tmpdir, 'authd.yaml')

    def make_argv(port):
        bt.write_file(config, bt.config_yaml(addr, port, bt.standard_zone_paths(),
                                             control=control) + rrl_text)
        return [bt.AUTHD, '-c', config], {}

    return bt._start_ready(make_argv, addr, control=control, config=config)


def stop_clean(proc):
    rc = proc.stop()
    if rc != 0:
        raise AssertionError('%s exit code %r after SIGTERM; log:\n%s'
                             % (proc.argv[0], rc, proc.log_text()))


def stats(proc):
    res = proc.ctl('stats')
    if res.returncode != 0:
        raise AssertionError('ballast stats failed: %s%s' % (res.stdout, res.stderr))
    return {k: int(v) for k, v in bt.parse_kv(res.stdout).items() if v.isdigit()}


def delta(before, after, key):
    return after[key] - before[key]


class Flood:
    """The outcome of one UDP flood: replies by kind and how long the flood lasted."""

    def __init__(self):
        self.full = []       # parsed replies without TC
        self.truncated = []  # parsed replies with TC=1
        self.sent = 0
        self.seconds = 0.0

    @property
    def silent(self):
        return self.sent - len(self.full) - len(self.truncated)

    def most_passed(self, rate=RATE, burst=RATE):
        """The most full replies a bucket of burst tokens refilled at rate can have given."""
        return burst + int(rate * self.seconds) + SLACK


def udp_flood(src, addr, port, qnames, count, rdtype='A'):
    """Send count queries (cycling through qnames) from src as fast as the socket takes them,
    reading replies in between, then collect replies for DRAIN_S. Bounded in count and time."""
    return udp_flood_mixed(addr, port, [(src, qnames[i % len(qnames)]) for i in range(count)],
                           rdtype)[src]


def udp_flood_mixed(addr, port, plan, rdtype='A'):
    """Send one query per (source, qname) of plan, in order, each source from its own socket,
    then collect replies for DRAIN_S. Returns {source: Flood}."""
    floods = {src: Flood() for src, _ in plan}
    socks = {}
    try:
        for src in floods:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks[src] = s
            s.bind((src, 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.setblocking(False)
        start = time.monotonic()
        last = [start]

        def receive():
            for src, s in socks.items():
                while True:
                    try:
                        data = s.recv(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    msg = bt.parse(data)
                    if not 0 <= msg.id < len(plan) or plan[msg.id][0] != src:
                        raise AssertionError('reply to %s with an unknown id %d' % (src, msg.id))
                    f = floods[src]
                    (f.truncated if msg.flags & dns.flags.TC else f.full).append(msg)
                    last[0] = time.monotonic()

        for qid, (src, qname) in enumerate(plan):
            socks[src].sendto(bt.make_query(qname, rdtype, qid=qid).to_wire(), (addr, port))
            floods[src].sent += 1
            receive()
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline:
            receive()
            time.sleep(0.005)
    finally:
        for s in socks.values():
            s.close()
    for f in floods.values():
        f.seconds = last[0] - start
    return floods


def tcp_pipeline(src, addr, port, qname, count, timeout=2.0):
    """count queries for qname in one TCP connection from src; the replies read before the server
    went quiet for timeout seconds (or closed)."""
    wires = [bt.make_query(qname, 'A', qid=i).to_wire() for i in range(count)]
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((src, 0))
        s.settimeout(timeout)
        s.connect((addr, port))
        s.sendall(b''.join(struct.pack('!H', len(w)) + w for w in wires))
        try:
            while len(replies) < count:
                (length,) = struct.unpack('!H', bt._recv_exact(s, 2))
                replies.append(bt.parse(bt._recv_exact(s, length)))
        except (socket.timeout, ConnectionError):
            pass
    return replies


def udp_answers(src, addr, port, qname, count, rdtype='A'):
    """Full (not truncated) answers to count queries sent one after the other from src."""
    full = 0
    for _ in range(count):
        q = bt.make_query(qname, rdtype)
        wire = tr.udp_from(src, addr, port, q.to_wire(), timeout=0.5)
        if wire is not None and not (bt.parse(wire).flags & dns.flags.TC):
            full += 1
    return full


class AuthdRateLimit(unittest.TestCase):
    """One ballast-authd with rrl rate 20, slip 2, clients grouped by /28, one /28 whitelisted.
    Each test floods from its own /28, so buckets of one test never meet another's."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = bt.make_tmpdir('ballast-rrl-')
        cls.authd = start_authd(cls.tmp, AUTHD_ADDR,
                                rrl_yaml(extra=['whitelist: [127.0.19.112/28]']))

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.authd)
        bt.remove_tmpdir(cls.tmp)

    def flood(self, src, qnames, count=500, rdtype='A'):
        return udp_flood(src, AUTHD_ADDR, self.authd.port, qnames, count, rdtype)

    def test_udp_flood_for_one_name_is_limited_with_tc_slips(self):
        before = stats(self.authd)
        f = self.flood(FLOODER, ['www.example.test'])
        after = stats(self.authd)
        self.assertGreaterEqual(len(f.full), RATE // 2)
        self.assertLessEqual(len(f.full), f.most_passed(), 'flood lasted %.2fs' % f.seconds)
        # slip 2: about half of the limited answers slip, the other half are dropped
        self.assertGreater(len(f.truncated), 100)
        self.assertGreater(f.silent, 100)
        for msg in f.truncated:
            self.assertEqual(msg.rcode(), dns.rcode.NOERROR)
            self.assertEqual(msg.answer, [])
            self.assertEqual(msg.question[0].name.to_text(), 'www.example.test.')
        for msg in f.full:
            self.assertEqual(len(msg.answer), 1)
        queries = delta(before, after, 'queries_udp')
        limited = [delta(before, after, k) for k in ('rrl_passed', 'rrl_slipped', 'rrl_dropped')]
        self.assertEqual(sum(limited), queries)
        self.assertGreaterEqual(limited[1], len(f.truncated))
        self.assertGreaterEqual(limited[2], 100)

    def test_tcp_is_answered_while_udp_is_limited(self):
        f = self.flood(FLOODER, ['mail.example.test'], count=300)
        self.assertLessEqual(len(f.full), f.most_passed())
        replies = tcp_pipeline(FLOODER, AUTHD_ADDR, self.authd.port, 'mail.example.test', 60)
        self.assertEqual(len(replies), 60)
        for msg in replies:
            self.assertFalse(msg.flags & dns.flags.TC)
            self.assertEqual(len(msg.answer), 1)

    def test_same_prefix_shares_the_limit_and_other_prefixes_do_not(self):
        # A neighbour in the flooder's /28 and a stranger in the next one, among the flood.
        plan = [(FLOODER, 'ns1.example.test')] * 300
        for i in range(30):
            plan.insert(10 * i + 5, (NEIGHBOUR, 'ns1.example.test'))
        for i in range(10):
            plan.insert(30 * i + 7, (STRANGER, 'ns1.example.test'))
        floods = udp_flood_mixed(AUTHD_ADDR, self.authd.port, plan)
        flooder, neighbour = floods[FLOODER], floods[NEIGHBOUR]
        self.assertLessEqual(len(flooder.full) + len(neighbour.full), flooder.most_passed())
        self.assertLessEqual(len(neighbour.full), 10)
        self.assertGreater(len(neighbour.truncated), 0)
        self.assertEqual(len(floods[STRANGER].full), 10)

    def test_each_name_has_its_own_bucket(self):
        f = self.flood(FLOODER, ['ns2.example.test'], count=300)
        self.assertLessEqual(len(f.full), f.most_passed())
        other = udp_answers(FLOODER, AUTHD_ADDR, self.authd.port, 'short.example.test', 10)
        self.assertEqual(other, 10)

    def test_nxdomain_for_random_names_shares_the_zone_bucket(self):
        names = ['r%d-%d.example.test' % (i, random.randrange(1 << 30)) for i in range(400)]
        f = self.flood(NXFLOODER, names, count=400)
        self.assertLessEqual(len(f.full), f.most_passed())
        self.assertGreater(len(f.truncated) + f.silent, 300)
        for msg in f.full:
            self.assertEqual(msg.rcode(), dns.rcode.NXDOMAIN)

    def test_whitelisted_prefix_is_never_limited(self):
        before = stats(self.authd)
        f = self.flood(WHITELISTED, ['www.example.test'], count=300)
        after = stats(self.authd)
        self.assertEqual(len(f.full), 300)
        self.assertEqual(delta(before, after, 'rrl_exempt'), 300)
        self.assertEqual(delta(before, after, 'rrl_dropped'), 0)


class AuthdRateLimitReload(unittest.TestCase):
    """Off by default; a reload turns it on and off again."""

    def setUp(self):
        self.tmp = bt.make_tmpdir('ballast-rrl-reload-')
        self.authd = start_authd(self.tmp, RELOAD_ADDR, '')

    def tearDown(self):
        stop_clean(self.authd)
        bt.remove_tmpdir(self.tmp)

    def reload_with(self, rrl_text):
        bt.write_file(self.authd.config,
                      bt.config_yaml(RELOAD_ADDR, self.authd.port, bt.standard_zone_paths(),
                                     control=self.authd.control) + rrl_text)
        res = self.authd.ctl('reload')
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)

    def flood(self, src):
        return udp_flood(src, RELOAD_ADDR, self.authd.port, ['www.example.test'], 200)

    def test_off_by_default_and_reload_turns_it_on_and_off(self):
        self.assertEqual(len(self.flood(RELOADER).full), 200)
        self.assertEqual(stats(self.authd)['rrl_passed'], 0)
        self.reload_with(rrl_yaml())
        self.authd.wait_for('event=rrl', all_of=['action=enabled', 'rate=20'])
        f = self.flood(RELOADER2)
        self.assertLessEqual(len(f.full), f.most_passed())
        self.assertGreater(stats(self.authd)['rrl_dropped'], 0)
        self.reload_with(rrl_yaml(enable=False))
        self.assertEqual(len(self.flood(RELOADER2).full), 200)
        self.assertEqual(stats(self.authd)['rrl_dropped'], 0)

    def test_bad_rrl_section_is_refused_and_the_old_config_kept(self):
        self.reload_with(rrl_yaml())
        bt.write_file(self.authd.config,
                      bt.config_yaml(RELOAD_ADDR, self.authd.port, bt.standard_zone_paths(),
                                     control=self.authd.control) + 'rrl:\n  rate: 0\n')
        res = self.authd.ctl('reload')
        self.assertNotEqual(res.returncode, 0)
        self.assertIn('rate', res.stdout + res.stderr)
        f = self.flood(RELOADER)
        self.assertLessEqual(len(f.full), f.most_passed())


class ResolverClientLimits(unittest.TestCase):
    """ballast-resolver with client-limits rate 20 (per /32), stubbing example.test to an authd."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = bt.make_tmpdir('ballast-rrl-resolver-')
        os.makedirs(os.path.join(cls.tmp, 'authd'))
        cls.authd = start_authd(os.path.join(cls.tmp, 'authd'), AUTHD_ADDR, '')
        config = '\n'.join([
            'stub:',
            '  - zone: example.test',
            '    to: %s@%d' % (AUTHD_ADDR, cls.authd.port),
            'client-limits:',
            '  rate: %d' % RATE,
            '  whitelist: [%s]' % R_WHITELISTED,
        ]) + '\n'
        try:
            cls.resolver = tr.start_resolver(os.path.join(cls.tmp, 'resolver'), RESOLVER_ADDR,
                                             config_text=config)
        except BaseException:
            cls.authd.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            tr.stop_checked(cls.resolver)
        finally:
            stop_clean(cls.authd)
            bt.remove_tmpdir(cls.tmp)

    def test_udp_flood_from_one_client_is_dropped_and_others_are_served(self):
        before = self.resolver.stats()
        f = udp_flood(R_FLOODER, RESOLVER_ADDR, self.resolver.port, ['www.example.test'], 400)
        after = self.resolver.stats()
        self.assertGreaterEqual(len(f.full), RATE // 2)
        self.assertLessEqual(len(f.full), f.most_passed(), 'flood lasted %.2fs' % f.seconds)
        self.assertEqual(f.truncated, [])  # a resolver drops, it does not slip
        for msg in f.full:
            self.assertEqual(msg.rcode(), dns.rcode.NOERROR)
        limited = delta(before, after, 'client_limited')
        self.assertEqual(limited + len(f.full), delta(before, after, 'queries'))
        self.assertGreater(limited, 300)
        other = udp_answers(R_OTHER, RESOLVER_ADDR, self.resolver.port, 'www.example.test', 10)
        self.assertEqual(other, 10)

    def test_tcp_queries_over_the_limit_are_dropped_too(self):
        start = time.monotonic()
        replies = tcp_pipeline(R_TCP, RESOLVER_ADDR, self.resolver.port, 'mail.example.test', 60,
                               timeout=1.0)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(len(replies), RATE // 2)
        self.assertLessEqual(len(replies), RATE + int(RATE * elapsed) + SLACK)
        self.assertLess(len(replies), 60)

    def test_whitelisted_client_is_never_limited(self):
        f = udp_flood(R_WHITELISTED, RESOLVER_ADDR, self.resolver.port, ['www.example.test'], 200)
        self.assertEqual(len(f.full), 200)


if __name__ == '__main__':
    unittest.main(verbosity=2)
