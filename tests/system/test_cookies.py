# System test of DNS cookies (RFC 7873, RFC 9018) on 127.0.20.0/24: both daemons answer a client
# cookie with their own 16-byte server cookie, keep answering when it is sent back, and FORMERR a
# malformed COOKIE option; ballast-resolver sends cookies upstream, echoes the server cookie it
# learnt, and drops a response whose COOKIE carries a client cookie it did not send.
"""DNS cookies in ballast-authd and ballast-resolver (127.0.20.x)."""

import os
import select
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402
import test_resolver as tr  # noqa: E402

import dns.edns  # noqa: E402
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.rrset  # noqa: E402

AUTHD_ADDR = '127.0.20.1'
RESOLVER_ADDR = '127.0.20.2'
FAKE_ADDR = '127.0.20.10'
COOKIE = 10
CLIENT_COOKIE = bytes.fromhex('0123456789abcdef')
FAKE_SERVER_COOKIE = bytes.fromhex('00112233445566778899aabbccddeeff')
REAL_A = '192.0.2.7'
POISON_A = '6.6.6.6'


def cookie_query(qname, data, rdtype='A', rd=True):
    q = dns.message.make_query(qname, rdtype, use_edns=0,
                               options=[dns.edns.GenericOption(COOKIE, data)])
    if not rd:
        q.flags &= ~dns.flags.RD
    return q


def cookie_of(msg):
    """The COOKIE option's data of a dnspython message, or None."""
    for opt in msg.options:
        if opt.otype == COOKIE:
            return opt.to_wire()
    return None


def exchange(addr, port, q, tcp=False):
    wire = q.to_wire()
    if tcp:
        replies = bt.tcp_exchange(addr, port, [wire])
        return dns.message.from_wire(replies[0])
    return dns.message.from_wire(bt.udp_exchange(addr, port, wire, expect_id=q.id))


class CookieAuthority:
    """Authoritative for cookie.test over UDP: every A query gets REAL_A, other types NODATA.
    Records each query's COOKIE option and answers it with the client cookie and
    FAKE_SERVER_COOKIE. For names starting with 'spoof', first sends a poisoned answer whose
    COOKIE has another client cookie."""

    def __init__(self, addr):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, 0))
        self.port = self.sock.getsockname()[1]
        self.cookies = []  # (qname text, COOKIE data or None)
        self.lock = threading.Lock()
        self.stop_r, self.stop_w = socket.socketpair()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def response(self, q, client_cookie, address):
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        r.flags &= ~dns.flags.RA
        question = q.question[0]
        if question.rdtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(question.name, 60, 'IN', 'A', address))
        else:
            r.authority.append(dns.rrset.from_text(
                'cookie.test.', 60, 'IN', 'SOA', 'ns.cookie.test. h.cookie.test. 1 60 60 60 60'))
        if client_cookie is not None:
            r.use_edns(0, options=[dns.edns.GenericOption(COOKIE,
                                                          client_cookie + FAKE_SERVER_COOKIE)])
        return r.to_wire()

    def run(self):
        while True:
            ready, _, _ = select.select([self.sock, self.stop_r], [], [])
            if self.stop_r in ready:
                return
            data, peer = self.sock.recvfrom(4096)
            try:
                q = dns.message.from_wire(data)
            except Exception:
                continue
            cookie = cookie_of(q) if q.edns >= 0 else None
            name = q.question[0].name.to_text()
            with self.lock:
                self.cookies.append((name, cookie))
            client = cookie[:8] if cookie else None
            if name.startswith('spoof') and client is not None:
                wrong = bytes(b ^ 0xff for b in client)
                self.sock.sendto(self.response(q, wrong, POISON_A), peer)
            self.sock.sendto(self.response(q, client, REAL_A), peer)

    def queries_for(self, prefix):
        with self.lock:
            return [c for n, c in self.cookies if n.startswith(prefix)]

    def stop(self):
        self.stop_w.send(b'x')
        self.thread.join(5)
        self.sock.close()
        self.stop_r.close()
        self.stop_w.close()


class ServerCookieChecks:
    """Server side checks run against self.addr/self.port (mixed into the classes below)."""

    qname = 'www.example.test'

    def ask(self, data, tcp=False):
        return exchange(self.addr, self.port, cookie_query(self.qname, data), tcp=tcp)

    def test_client_cookie_answered_with_server_cookie(self):
        for tcp in (False, True):
            r = self.ask(CLIENT_COOKIE, tcp=tcp)
            self.assertEqual(r.rcode(), dns.rcode.NOERROR)
            self.assertTrue(r.answer)
            cookie = cookie_of(r)
            self.assertIsNotNone(cookie, 'no COOKIE in the response')
            self.assertEqual(len(cookie), 24)
            self.assertEqual(cookie[:8], CLIENT_COOKIE)
            self.assertEqual(cookie[8], 1)  # RFC 9018 §4: version 1, reserved 0
            self.assertEqual(cookie[9:12], b'\0\0\0')

    def test_server_cookie_sent_back_still_answered(self):
        first = cookie_of(self.ask(CLIENT_COOKIE))
        r = self.ask(first)
        self.assertEqual(r.rcode(), dns.rcode.NOERROR)
        self.assertTrue(r.answer)
        again = cookie_of(r)
        self.assertIsNotNone(again)
        self.assertEqual(again[:8], CLIENT_COOKIE)
        self.assertEqual(len(again), 24)

    def test_malformed_cookie_length_is_formerr(self):
        for data in (b'\x01' * 5, CLIENT_COOKIE + b'\x02' * 4, CLIENT_COOKIE + b'\x03' * 33):
            r = self.ask(data)
            self.assertEqual(r.rcode(), dns.rcode.FORMERR, 'COOKIE of %d bytes' % len(data))

    def test_no_cookie_no_cookie_back(self):
        r = exchange(self.addr, self.port, dns.message.make_query(self.qname, 'A', use_edns=0))
        self.assertEqual(r.rcode(), dns.rcode.NOERROR)
        self.assertIsNone(cookie_of(r))


class AuthdCookies(ServerCookieChecks, unittest.TestCase):
    """ballast-authd with the example zones."""

    @classmethod
    def setUpClass(cls):
        cls.authd = bt.start_authd_flags(AUTHD_ADDR, bt.standard_zone_paths())
        cls.addr, cls.port = AUTHD_ADDR, cls.authd.port

    @classmethod
    def tearDownClass(cls):
        rc = cls.authd.stop()
        if rc != 0:
            raise AssertionError('ballast-authd exit code %r:\n%s' % (rc, cls.authd.log_text()))


class ResolverCookies(ServerCookieChecks, unittest.TestCase):
    """ballast-resolver stubbing example.test to an authd and cookie.test to CookieAuthority."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = bt.make_tmpdir('ballast-cookies-')
        cls.authd = bt.start_authd_flags(AUTHD_ADDR, bt.standard_zone_paths())
        cls.fake = CookieAuthority(FAKE_ADDR)
        config = '\n'.join([
            'stub:',
            '  - zone: example.test',
            '    to: %s@%d' % (AUTHD_ADDR, cls.authd.port),
            '  - zone: cookie.test',
            '    to: %s@%d' % (FAKE_ADDR, cls.fake.port),
        ]) + '\n'
        try:
            # One worker: server cookies learnt upstream are remembered per worker.
            cls.resolver = tr.start_resolver(os.path.join(cls.tmp, 'resolver'), RESOLVER_ADDR,
                                             config_text=config, workers=1)
        except BaseException:
            cls.fake.stop()
            cls.authd.stop()
            raise
        cls.addr, cls.port = RESOLVER_ADDR, cls.resolver.port

    @classmethod
    def tearDownClass(cls):
        try:
            tr.stop_checked(cls.resolver)
        finally:
            cls.fake.stop()
            cls.authd.stop()
            bt.remove_tmpdir(cls.tmp)

    def resolve(self, qname):
        q = dns.message.make_query(qname, 'A', use_edns=0)
        return exchange(self.addr, self.port, q)

    def test_upstream_gets_client_cookie_then_learnt_server_cookie(self):
        first = self.resolve('one.cookie.test')
        self.assertEqual(first.rcode(), dns.rcode.NOERROR)
        second = self.resolve('two.cookie.test')
        self.assertEqual(second.rcode(), dns.rcode.NOERROR)
        sent_first = self.fake.queries_for('one.')
        sent_second = self.fake.queries_for('two.')
        self.assertTrue(sent_first and sent_second)
        for cookie in sent_first + sent_second:
            self.assertIsNotNone(cookie, 'a query upstream without a COOKIE option')
        client = sent_first[0][:8]
        # Same server, same client cookie (RFC 7873 §5.1), and the server cookie it returned.
        self.assertEqual(sent_second[-1], client + FAKE_SERVER_COOKIE)

    def test_response_with_wrong_client_cookie_dropped(self):
        before = self.resolver.stats()
        r = self.resolve('spoof.cookie.test')
        self.assertEqual(r.rcode(), dns.rcode.NOERROR)
        self.assertEqual([rd.to_text() for rrset in r.answer for rd in rrset], [REAL_A])
        after = self.resolver.stats()
        self.assertGreater(after['upstream_bad_cookie'], before['upstream_bad_cookie'])


if __name__ == '__main__':
    unittest.main(verbosity=2)
