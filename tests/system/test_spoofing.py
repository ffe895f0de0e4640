# Spoofing test: the hierarchy (net 127.0.5) delegates spoof.test to a fake Python server that,
# before each real answer, sends answers with a wrong ID, from a wrong port, from a wrong address
# and for a wrong question, and then pads the real answer with out-of-bailiwick records. None of
# it may reach the client or ballast-resolver's cache. race.test is delegated to a second fake that
# does DNS cookies and plays a Kaminsky race against itself: before each real answer to a random
# name it floods forged answers (guessed IDs, and even the right ID and port) that try to take
# over the zone; zero of them may be cached.
"""ballast-resolver against a spoofing authority (127.0.5.109)."""

import os
import random
import selectors
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402
import hierarchy  # noqa: E402
import test_resolver as tr  # noqa: E402

import dns.edns  # noqa: E402
import dns.exception  # noqa: E402
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.rrset  # noqa: E402

NET = '127.0.5'
FAKE_ADDR = NET + '.109'
WRONG_ADDR = NET + '.110'  # a second address on the fake's host, same port
RESOLVER_ADDR = NET + '.50'
POISON = '6.6.6.6'
POISON_NS = '6.6.6.7'
REAL_WWW = '192.0.2.66'
ZONE = dns.name.from_text('spoof.test.')
RACE_ADDR = NET + '.111'
RACE_ZONE = dns.name.from_text('race.test.')
REAL_RACE_WWW = '192.0.2.77'
REAL_RACE_OTHER = '192.0.2.78'
COOKIE = 10  # EDNS option code (RFC 7873)
RACE_SERVER_COOKIE = bytes.fromhex('a1a2a3a4a5a6a7a8b1b2b3b4b5b6b7b8')
RACE_ROUNDS = 25   # random names raced
RACE_GUESSES = 200  # forged answers with guessed IDs per round


class SpoofHierarchy(hierarchy.Hierarchy):
    """The hierarchy with spoof.test delegated from test. to the fake server (with glue)."""

    def _write_zone(self, zone, fname):
        path = super()._write_zone(zone, fname)
        if fname == 'test.zone':
            with open(path, 'a') as f:
                f.write('\n; added by test_spoofing.py\n'
                        'spoof               IN NS    ns.spoof\n'
                        'ns.spoof            IN A     %s\n'
                        'race                IN NS    ns.race\n'
                        'ns.race             IN A     %s\n' % (FAKE_ADDR, RACE_ADDR))
        return path


def rrset(name, rdtype, *rdatas, ttl=3600):
    return dns.rrset.from_text(name, ttl, 'IN', rdtype, *rdatas)


class SpoofingServer:
    """Authoritative for spoof.test (SOA, NS, ns A, www A). For every UDP query it sends, in
    this order: (1) a poisoned answer with a wrong ID; (2) a poisoned answer with the right ID
    from another source port; (3) the same from another source address; (4) the right ID for
    another question (www.example.test A); (5) the real answer with the right ID, padded with
    out-of-bailiwick records: an A for www.example.test in the answer and additional sections,
    NS for test. in the authority section and a poisoned ns.test A."""

    def __init__(self, addr, port):
        self.queries = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, port))
        self.other_port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other_port.bind((addr, 0))
        self.other_addr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other_addr.bind((WRONG_ADDR, port))
        self.stop_r, self.stop_w = socket.socketpair()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    # -- answers --------------------------------------------------------------------------

    def real_answer(self, q):
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        r.flags &= ~dns.flags.RA
        qname, qtype = q.question[0].name, q.question[0].rdtype
        soa = rrset(ZONE, 'SOA', 'ns.spoof.test. hostmaster.spoof.test. 1 7200 3600 1209600 300',
                    ttl=300)
        data = {
            (ZONE, dns.rdatatype.SOA): soa,
            (ZONE, dns.rdatatype.NS): rrset(ZONE, 'NS', 'ns.spoof.test.'),
            (dns.name.from_text('ns.spoof.test.'), dns.rdatatype.A):
                rrset('ns.spoof.test.', 'A', FAKE_ADDR),
            (dns.name.from_text('www.spoof.test.'), dns.rdatatype.A):
                rrset('www.spoof.test.', 'A', REAL_WWW),
        }
        names = {name for name, _ in data}
        if not qname.is_subdomain(ZONE):
            r.flags &= ~dns.flags.AA
            r.set_rcode(dns.rcode.REFUSED)
        elif (qname, qtype) in data:
            r.answer.append(data[(qname, qtype)])
        else:
            if qname not in names:
                r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(soa)
        return r

    def poisoned(self, q, qid=None):
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        r.flags &= ~dns.flags.RA
        if qid is not None:
            r.id = qid
        if q.question[0].rdtype == dns.rdatatype.A:
            r.answer.append(rrset(q.question[0].name, 'A', POISON))
        r.answer.append(rrset('www.example.test.', 'A', POISON))
        r.authority.append(rrset('test.', 'NS', 'ns.spoof.test.'))
        r.additional.append(rrset('ns.test.', 'A', POISON_NS))
        return r

    def wrong_question(self, q):
        other = dns.message.make_query('www.example.test.', 'A')
        other.id = q.id
        other.flags = q.flags
        r = dns.message.make_response(other)
        r.flags |= dns.flags.AA
        r.answer.append(rrset('www.example.test.', 'A', POISON))
        return r

    def padded_real_answer(self, q):
        r = self.real_answer(q)
        r.answer.append(rrset('www.example.test.', 'A', POISON))
        r.authority.append(rrset('test.', 'NS', 'ns.spoof.test.'))
        r.additional.append(rrset('ns.test.', 'A', POISON_NS))
        r.additional.append(rrset('www.example.test.', 'A', POISON))
        return r

    def respond(self, q, peer):
        self.sock.sendto(self.poisoned(q, qid=q.id ^ 0x5a5a).to_wire(), peer)
        self.other_port.sendto(self.poisoned(q).to_wire(), peer)
        self.other_addr.sendto(self.poisoned(q).to_wire(), peer)
        self.sock.sendto(self.wrong_question(q).to_wire(), peer)
        self.sock.sendto(self.padded_real_answer(q).to_wire(), peer)

    # -- loop -------------------------------------------------------------------------------

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
                if len(q.question) != 1:
                    continue
                with self.lock:
                    self.queries.append((q.question[0].name.to_text().lower(),
                                         dns.rdatatype.to_text(q.question[0].rdtype)))
                self.respond(q, peer)

    def seen(self):
        with self.lock:
            return list(self.queries)

    def close(self):
        self.stop_w.send(b'x')
        self.thread.join(5)
        for s in (self.sock, self.other_port, self.other_addr, self.stop_r, self.stop_w):
            s.close()


class RaceServer:
    """Authoritative for race.test over UDP and TCP, with DNS cookies: a query's client cookie is
    answered with it and RACE_SERVER_COOKIE (unless cookies_on is cleared). For every UDP query
    for a name starting with 'rnd' it first plays the attacker, from its own address and port (as
    an off-path attacker spoofing the server's address would): RACE_GUESSES forged answers with
    guessed IDs, then one with the query's own ID and a COOKIE carrying another client cookie,
    then one with the right ID and no COOKIE option. The forgeries answer the name with POISON
    and claim race.test for ns.evil.race.test at POISON_NS, with www.race.test at POISON. Only
    then does the real answer go out: the attacker wins every timing race."""

    def __init__(self, addr, port):
        self.cookies_on = True
        self.queries = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((addr, port))
        self.tcp.listen(16)
        self.tcp_queries = 0
        self.stop_r, self.stop_w = socket.socketpair()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @staticmethod
    def _response(q):
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        r.flags &= ~dns.flags.RA
        return r

    def real_answer(self, q, client_cookie):
        r = self._response(q)
        qname, qtype = q.question[0].name, q.question[0].rdtype
        soa = rrset(RACE_ZONE, 'SOA', 'ns.race.test. h.race.test. 1 7200 3600 1209600 300',
                    ttl=300)
        fixed = {
            (RACE_ZONE, dns.rdatatype.SOA): soa,
            (RACE_ZONE, dns.rdatatype.NS): rrset(RACE_ZONE, 'NS', 'ns.race.test.'),
            (dns.name.from_text('ns.race.test.'), dns.rdatatype.A):
                rrset('ns.race.test.', 'A', RACE_ADDR),
            (dns.name.from_text('www.race.test.'), dns.rdatatype.A):
                rrset('www.race.test.', 'A', REAL_RACE_WWW),
        }
        if not qname.is_subdomain(RACE_ZONE):
            r.flags &= ~dns.flags.AA
            r.set_rcode(dns.rcode.REFUSED)
        elif (qname, qtype) in fixed:
            r.answer.append(fixed[(qname, qtype)])
        elif qname in {n for n, _ in fixed}:
            r.authority.append(soa)
        elif qname.is_subdomain(dns.name.from_text('evil.race.test.')):
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(soa)
        elif qtype == dns.rdatatype.A:
            r.answer.append(rrset(qname, 'A', REAL_RACE_OTHER))
        else:
            r.authority.append(soa)
        if client_cookie is not None and self.cookies_on:
            r.use_edns(0, options=[dns.edns.GenericOption(COOKIE,
                                                          client_cookie + RACE_SERVER_COOKIE)])
        return r

    def forged(self, q, qid, cookie=None):
        r = self._response(q)
        r.id = qid
        r.answer.append(rrset(q.question[0].name, 'A', POISON))
        r.authority.append(rrset(RACE_ZONE, 'NS', 'ns.evil.race.test.'))
        r.additional.append(rrset('ns.evil.race.test.', 'A', POISON_NS))
        r.additional.append(rrset('www.race.test.', 'A', POISON))
        if cookie is not None:
            r.use_edns(0, options=[dns.edns.GenericOption(COOKIE, cookie)])
        return r.to_wire()

    def attack(self, q, peer):
        for _ in range(RACE_GUESSES):
            qid = random.randrange(65536)
            if qid != q.id:
                self.sock.sendto(self.forged(q, qid), peer)
        self.sock.sendto(self.forged(q, q.id, os.urandom(8) + RACE_SERVER_COOKIE), peer)
        self.sock.sendto(self.forged(q, q.id), peer)

    @staticmethod
    def query_cookie(q):
        for opt in q.options:
            if opt.otype == COOKIE:
                return opt.to_wire()[:8]
        return None

    def serve_tcp(self, conn):
        """Real answers to every framed query on conn (the attacker cannot race TCP)."""
        with conn:
            conn.settimeout(5)
            try:
                while True:
                    head = conn.recv(2, socket.MSG_WAITALL)
                    if len(head) < 2:
                        return
                    wire = conn.recv(int.from_bytes(head, 'big'), socket.MSG_WAITALL)
                    q = dns.message.from_wire(wire)
                    with self.lock:
                        self.tcp_queries += 1
                    out = self.real_answer(q, self.query_cookie(q)).to_wire()
                    conn.sendall(len(out).to_bytes(2, 'big') + out)
            except (OSError, dns.exception.DNSException):
                return

    def run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        sel.register(self.tcp, selectors.EVENT_READ)
        sel.register(self.stop_r, selectors.EVENT_READ)
        while True:
            for key, _ in sel.select():
                if key.fileobj is self.stop_r:
                    return
                if key.fileobj is self.tcp:
                    conn, _ = self.tcp.accept()
                    threading.Thread(target=self.serve_tcp, args=(conn,), daemon=True).start()
                    continue
                wire, peer = self.sock.recvfrom(65535)
                try:
                    q = dns.message.from_wire(wire)
                except Exception:
                    continue
                if len(q.question) != 1:
                    continue
                cookie = self.query_cookie(q)
                name = q.question[0].name.to_text().lower()
                with self.lock:
                    self.queries.append((name, cookie is not None))
                if name.startswith('rnd'):
                    self.attack(q, peer)
                self.sock.sendto(self.real_answer(q, cookie).to_wire(), peer)

    def seen(self):
        with self.lock:
            return list(self.queries)

    def close(self):
        self.stop_w.send(b'x')
        self.thread.join(5)
        for s in (self.sock, self.tcp, self.stop_r, self.stop_w):
            s.close()


H = None
TMPDIR = None
FAKE = None
RACE = None


def setUpModule():
    global H, TMPDIR, FAKE, RACE
    bt.require_binaries(tr.RESOLVER, bt.AUTHD, bt.TOOL)
    TMPDIR = bt.make_tmpdir('ballast-spoofing-')
    try:
        H = tr.start_hierarchy(os.path.join(TMPDIR, 'hierarchy'), NET, cls=SpoofHierarchy)
        FAKE = SpoofingServer(FAKE_ADDR, H.port)
        RACE = RaceServer(RACE_ADDR, H.port)
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    if FAKE is not None:
        FAKE.close()
    if RACE is not None:
        RACE.close()
    if H is not None:
        H.stop()
    if TMPDIR is not None:
        bt.remove_tmpdir(TMPDIR)


class SpoofingTest(unittest.TestCase):
    """A fresh resolver (empty cache) per test."""

    def setUp(self):
        self.dir = bt.make_tmpdir('ballast-spoof-r-')
        self.r = tr.start_resolver(self.dir, RESOLVER_ADDR, H)

    def tearDown(self):
        try:
            tr.stop_checked(self.r)
        finally:
            bt.remove_tmpdir(self.dir)

    def resolve(self, qname, rdtype, rcode, answer):
        msg = self.r.query(qname, rdtype, timeout=tr.PATIENCE)
        self.assertEqual(rcode, tr.rcode_text(msg), tr.describe(qname, rdtype, msg))
        self.assertEqual(answer, hierarchy.answer_set(msg), tr.describe(qname, rdtype, msg))
        for section in (msg.authority, msg.additional):
            for _, _, _, rdata in bt.rr_tuples(section):
                self.assertNotIn(rdata, (POISON, POISON_NS), tr.describe(qname, rdtype, msg))
        return msg

    def test_client_gets_the_real_answer_not_a_spoofed_one(self):
        before = len(FAKE.seen())
        self.resolve('www.spoof.test.', 'A', 'NOERROR', {('www.spoof.test.', 'A', REAL_WWW)})
        self.assertGreater(len(FAKE.seen()), before, 'the fake server was never asked')
        self.resolve('nope.spoof.test.', 'A', 'NXDOMAIN', set())

    def test_out_of_bailiwick_records_do_not_reach_the_cache(self):
        self.resolve('www.spoof.test.', 'A', 'NOERROR', {('www.spoof.test.', 'A', REAL_WWW)})
        self.resolve('ns.spoof.test.', 'A', 'NOERROR', {('ns.spoof.test.', 'A', FAKE_ADDR)})
        # Everything the fake said about names outside spoof.test must have been dropped.
        self.resolve('www.example.test.', 'A', 'NOERROR',
                     {('www.example.test.', 'A', '192.0.2.10')})
        self.resolve('test.', 'NS', 'NOERROR', {('test.', 'NS', 'ns.test.')})
        self.resolve('ns.test.', 'A', 'NOERROR', {('ns.test.', 'A', H.addresses['tld'])})
        self.resolve('www.other.test.', 'A', 'NOERROR', {('www.other.test.', 'A', '192.0.2.202')})
        # And the same again from the cache.
        self.resolve('www.example.test.', 'A', 'NOERROR',
                     {('www.example.test.', 'A', '192.0.2.10')})

    def test_mismatched_answers_are_counted(self):
        self.resolve('www.spoof.test.', 'A', 'NOERROR', {('www.spoof.test.', 'A', REAL_WWW)})
        stats = self.r.stats()
        # At least the wrong-ID and the wrong-question answers reach the resolver's socket (the
        # wrong port and address may be dropped by the kernel on a connected socket).
        self.assertGreater(stats['upstream_mismatched'], 0, stats)


    def test_kaminsky_race_poisons_nothing(self):
        # Learn race.test's delegation and its server cookie first.
        self.resolve('www.race.test.', 'A', 'NOERROR', {('www.race.test.', 'A', REAL_RACE_WWW)})
        before = self.r.stats()
        seen = len(RACE.seen())
        for i in range(RACE_ROUNDS):
            name = 'rnd%d-%d.race.test.' % (i, random.randrange(10**9))
            self.resolve(name, 'A', 'NOERROR', {(name, 'A', REAL_RACE_OTHER)})
        after = self.r.stats()
        raced = {n for n, _ in RACE.seen()[seen:] if n.startswith('rnd')}
        self.assertGreaterEqual(len(raced), RACE_ROUNDS, 'the resolver did not ask the racer')
        self.assertTrue(all(c for _, c in RACE.seen()), 'a query to race.test without a cookie')
        # Every round's forgeries with the right ID were refused for their cookie (wrong, then
        # missing: that one sends the question again over TCP, where the real answer is taken),
        # and the guessed IDs reached the socket and were ignored.
        delta = {k: after[k] - before[k] for k in after if k.startswith('upstream_')}
        self.assertGreaterEqual(delta['upstream_bad_cookie'], 2 * len(raced), delta)
        self.assertGreaterEqual(delta['upstream_tcp'], len(raced), delta)
        self.assertGreaterEqual(delta['upstream_mismatched'], len(raced) * RACE_GUESSES // 2,
                                delta)
        # Nothing the forgeries said is in the cache: the zone, its server and www are the real
        # ones, and the attacker's name server does not exist.
        self.resolve('www.race.test.', 'A', 'NOERROR', {('www.race.test.', 'A', REAL_RACE_WWW)})
        self.resolve('race.test.', 'NS', 'NOERROR', {('race.test.', 'NS', 'ns.race.test.')})
        self.resolve('ns.evil.race.test.', 'A', 'NXDOMAIN', set())
        self.resolve('ns.race.test.', 'A', 'NOERROR', {('ns.race.test.', 'A', RACE_ADDR)})

    def test_server_that_stops_doing_cookies_is_still_answered(self):
        self.resolve('www.race.test.', 'A', 'NOERROR', {('www.race.test.', 'A', REAL_RACE_WWW)})
        before = self.r.stats()
        RACE.cookies_on = False
        try:
            # The cookieless UDP answer is not taken (the server did cookies before): the
            # question goes again over TCP, whose answer is taken, and the cookie forgotten, so
            # the next question is answered over UDP. No timeout anywhere.
            self.resolve('plain.race.test.', 'A', 'NOERROR',
                         {('plain.race.test.', 'A', REAL_RACE_OTHER)})
            middle = self.r.stats()
            self.resolve('plain2.race.test.', 'A', 'NOERROR',
                         {('plain2.race.test.', 'A', REAL_RACE_OTHER)})
        finally:
            RACE.cookies_on = True
        after = self.r.stats()
        first = {k: middle[k] - before[k] for k in after if k.startswith('upstream_')}
        second = {k: after[k] - middle[k] for k in after if k.startswith('upstream_')}
        self.assertGreaterEqual(first['upstream_bad_cookie'], 1, first)
        self.assertGreaterEqual(first['upstream_tcp'], 1, first)
        self.assertEqual(first['upstream_timeouts'], 0, first)
        self.assertEqual(second['upstream_tcp'], 0, second)
        self.assertEqual(second['upstream_bad_cookie'], 0, second)


if __name__ == '__main__':
    bt.main()
