# System test of fault injection in ballast-authd: a daemon started with --fault-injection on
# 127.0.17.1, each fault added with `ballast -s SOCK fault add ...`, and what dnspython sees.
"""ballast-authd --fault-injection: drop, loss, latency, servfail, refused, empty, nxdomain,
truncate, name= scoping, clear, stats and logs; and the command refused without the flag."""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402

import dns.edns  # noqa: E402
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

ADDR = '127.0.17.1'
ADDR_DISABLED = '127.0.17.2'
ADDR_SHUTDOWN = '127.0.17.3'
WWW_A = bt.rr('www.example.test', 3600, 'A', '192.0.2.10')
MAIL_A = bt.rr('mail.example.test', 3600, 'A', '192.0.2.25')
NEGATIVE_SOA = bt.rr('example.test', 300, 'SOA', 'ns1.example.test. hostmaster.example.test. '
                     '2026112301 7200 3600 1209600 300')
NO_ANSWER_WAIT = 1.0  # how long a dropped query is waited for
DISABLED_TEXT = 'fault injection is disabled (start ballast-authd with --fault-injection)'


def start_authd(tmpdir, addr, fault_injection=True):
    """ballast-authd -c CONFIG [--fault-injection] with the example zones and a control socket."""
    bt.require_binaries()
    control = os.path.join(tmpdir, 'control.sock')
    config = os.path.join(tmpdir, 'authd.yaml')

    def make_argv(port):
        bt.write_file(config, bt.config_yaml(addr, port, bt.standard_zone_paths(),
                                             control=control))
        argv = [bt.AUTHD, '-c', config]
        return argv + (['--fault-injection'] if fault_injection else []), {}

    return bt._start_ready(make_argv, addr, control=control, config=config)


def stop_clean(authd):
    rc = authd.stop()
    if rc != 0:
        raise AssertionError('ballast-authd exit code %r after SIGTERM; log:\n%s'
                             % (rc, authd.log_text()))


class FaultInjection(unittest.TestCase):
    """One daemon with --fault-injection; every test starts and ends with no rules."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = bt.make_tmpdir()
        cls.authd = start_authd(cls.tmp, ADDR)

    @classmethod
    def tearDownClass(cls):
        try:
            stop_clean(cls.authd)
        finally:
            bt.remove_tmpdir(cls.tmp)

    def setUp(self):
        self.fault('clear')

    def tearDown(self):
        self.fault('clear')

    # ---- helpers -------------------------------------------------------------------------

    def fault(self, *args):
        """Run `ballast -s SOCK fault ARGS`; fail unless it succeeds. Returns stdout."""
        r = self.authd.ctl('fault', *args)
        self.assertEqual(r.returncode, 0, 'fault %s: %s%s' % (' '.join(args), r.stdout, r.stderr))
        return r.stdout

    def stats(self):
        r = self.authd.ctl('stats')
        self.assertEqual(r.returncode, 0, r.stderr)
        return bt.parse_kv(r.stdout)

    def ask(self, qname, rdtype='A', tcp=False, **kw):
        return self.authd.query(qname, rdtype, tcp=tcp, **kw)

    def assert_normal(self, qname='www.example.test', want=WWW_A, tcp=False):
        r = self.ask(qname, tcp=tcp)
        self.assertEqual(r.rcode(), dns.rcode.NOERROR, str(r))
        self.assertEqual(bt.rrs(r.answer), {want}, str(r))

    def assert_no_answer(self, qname='www.example.test', tcp=False):
        q = bt.make_query(qname, 'A')
        if tcp:
            with self.assertRaises(socket.timeout):
                bt.tcp_exchange(self.authd.addr, self.authd.port, q.to_wire(),
                                timeout=NO_ANSWER_WAIT)
        else:
            reply = bt.udp_exchange(self.authd.addr, self.authd.port, q.to_wire(),
                                    timeout=NO_ANSWER_WAIT, expect_id=q.id)
            self.assertIsNone(reply, 'an answer came despite the fault')

    # ---- faults --------------------------------------------------------------------------

    def test_drop_sends_nothing_over_udp_and_tcp(self):
        before = int(self.stats()['fault_drop'])
        self.assertEqual(self.fault('add', 'drop').strip(), '1 rule')
        self.assert_no_answer(tcp=False)
        self.assert_no_answer(tcp=True)
        stats = self.stats()
        self.assertEqual(int(stats['fault_drop']) - before, 2)
        self.assertGreaterEqual(int(stats['fault_dropped']), 2)
        self.fault('clear')
        self.assert_normal()

    def test_loss_drops_a_share_of_queries(self):
        self.fault('add', 'loss', 'percent=100')
        self.assert_no_answer()
        self.fault('clear')
        self.fault('add', 'loss', 'percent=0')
        for _ in range(5):
            self.assert_normal()
        self.fault('clear')
        self.fault('add', 'loss', 'percent=50')
        answered = 0
        queries = 40
        for _ in range(queries):
            q = bt.make_query('www.example.test', 'A')
            if bt.udp_exchange(self.authd.addr, self.authd.port, q.to_wire(), timeout=0.3,
                               expect_id=q.id) is not None:
                answered += 1
        # 40 draws at 50 %: 8..32 answered is more than 3.7 standard deviations either side.
        self.assertTrue(8 <= answered <= 32, 'answered %d of %d' % (answered, queries))

    def test_latency_delays_the_normal_answer(self):
        self.fault('add', 'latency', 'delay=1s')
        for tcp in (False, True):
            start = time.monotonic()
            r = self.ask('www.example.test', tcp=tcp, timeout=5)
            took = time.monotonic() - start
            self.assertGreaterEqual(took, 1.0, bt.transport_name(tcp))
            self.assertLess(took, 3.0, bt.transport_name(tcp))
            self.assertEqual(bt.rrs(r.answer), {WWW_A})
        self.assertGreaterEqual(int(self.stats()['fault_delayed']), 2)
        self.fault('clear')
        start = time.monotonic()
        self.assert_normal()
        self.assertLess(time.monotonic() - start, 0.5)

    def test_latency_answers_queries_in_parallel(self):
        """Delayed answers do not hold the worker: many wait at the same time."""
        self.fault('add', 'latency', 'delay=500ms')
        socks = []
        start = time.monotonic()
        try:
            for i in range(20):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(3)
                s.sendto(bt.make_query('www.example.test', 'A', qid=1000 + i).to_wire(),
                         (self.authd.addr, self.authd.port))
                socks.append(s)
            ids = sorted(bt.header(s.recv(65535))[0] for s in socks)
        finally:
            for s in socks:
                s.close()
        self.assertEqual(ids, list(range(1000, 1020)))
        self.assertLess(time.monotonic() - start, 2.0)

    def test_servfail_and_refused_answer_with_that_rcode(self):
        for kind, rcode in (('servfail', dns.rcode.SERVFAIL), ('refused', dns.rcode.REFUSED)):
            self.fault('clear')
            self.fault('add', kind)
            for tcp in (False, True):
                r = self.ask('www.example.test', tcp=tcp)
                self.assertEqual(r.rcode(), rcode, '%s %s\n%s' % (kind, bt.transport_name(tcp), r))
                self.assertEqual(len(r.question), 1)
                self.assertEqual((r.answer, r.authority), ([], []), str(r))
        self.assertGreaterEqual(int(self.stats()['fault_rewritten']), 4)

    def test_rewritten_answers_carry_the_dns_cookie(self):
        # A failing server that does cookies still answers with one (RFC 7873 §5.2), else a
        # resolver that learnt its cookie would take the fault for a forgery.
        client = bytes.fromhex('0123456789abcdef')
        for kind in ('servfail', 'refused', 'empty', 'nxdomain', 'truncate'):
            self.fault('clear')
            self.fault('add', kind)
            q = dns.message.make_query('www.example.test', 'A', use_edns=0,
                                       options=[dns.edns.GenericOption(10, client)])
            r = dns.message.from_wire(bt.udp_exchange(self.authd.addr, self.authd.port,
                                                      q.to_wire(), expect_id=q.id))
            cookies = [o.to_wire() for o in r.options if o.otype == 10]
            self.assertEqual(len(cookies), 1, '%s\n%s' % (kind, r))
            self.assertEqual(cookies[0][:8], client, kind)
            self.assertEqual(len(cookies[0]), 24, kind)

    def test_empty_answers_nodata_with_the_soa(self):
        self.fault('add', 'empty')
        for tcp in (False, True):
            r = self.ask('www.example.test', tcp=tcp)
            self.assertEqual(r.rcode(), dns.rcode.NOERROR, str(r))
            self.assertTrue(r.flags & dns.flags.AA, str(r))
            self.assertEqual(r.answer, [], str(r))
            self.assertEqual(bt.rrs(r.authority), {NEGATIVE_SOA}, str(r))

    def test_nxdomain_answers_nxdomain_with_the_soa(self):
        self.fault('add', 'nxdomain')
        for tcp in (False, True):
            r = self.ask('www.example.test', tcp=tcp)
            self.assertEqual(r.rcode(), dns.rcode.NXDOMAIN, str(r))
            self.assertTrue(r.flags & dns.flags.AA, str(r))
            self.assertEqual(r.answer, [], str(r))
            self.assertEqual(bt.rrs(r.authority), {NEGATIVE_SOA}, str(r))

    def test_truncate_sets_tc_over_udp_and_tcp_gets_the_answer(self):
        self.fault('add', 'truncate')
        r = self.ask('www.example.test', tcp=False)
        self.assertTrue(r.flags & dns.flags.TC, str(r))
        self.assertEqual((r.answer, r.authority), ([], []), str(r))
        self.assert_normal(tcp=True)
        # A real client falls back to TCP on TC=1 (RFC 7766 §6.2) and gets the whole answer.
        q = dns.message.make_query('www.example.test', 'A')
        r, used_tcp = dns.query.udp_with_fallback(q, self.authd.addr, port=self.authd.port,
                                                  timeout=3)
        self.assertTrue(used_tcp)
        self.assertEqual(bt.rrs(r.answer), {WWW_A})

    def test_name_rule_affects_only_that_name_and_below(self):
        self.fault('add', 'servfail', 'name=WWW.Example.test.')
        for qname in ('www.example.test', 'WWW.EXAMPLE.TEST', 'deeper.www.example.test'):
            self.assertEqual(self.ask(qname).rcode(), dns.rcode.SERVFAIL, qname)
        self.assert_normal('mail.example.test', MAIL_A)
        self.assertEqual(self.ask('other.test', 'SOA').rcode(), dns.rcode.NOERROR)
        self.fault('clear')
        self.fault('add', 'nxdomain', 'name=example.test')
        self.assertEqual(self.ask('mail.example.test').rcode(), dns.rcode.NXDOMAIN)
        self.assertEqual(self.ask('other.test', 'SOA').rcode(), dns.rcode.NOERROR)

    def test_first_rule_added_wins(self):
        self.fault('add', 'refused', 'name=www.example.test')
        self.assertEqual(self.fault('add', 'drop').strip(), '2 rules')
        self.assertEqual(self.ask('www.example.test').rcode(), dns.rcode.REFUSED)
        self.assert_no_answer('mail.example.test')

    def test_clear_restores_normal_answers(self):
        self.fault('add', 'servfail')
        self.fault('add', 'latency', 'delay=2s')
        self.assertEqual(self.fault('clear').strip(), '0 rules')
        self.assert_normal()
        self.assert_normal(tcp=True)
        self.assertEqual(self.stats()['fault_rules'], '0')

    def test_list_shows_one_line_per_rule(self):
        self.fault('add', 'loss', 'percent=30', 'name=Example.test')
        self.fault('add', 'latency', 'delay=500ms')
        self.assertEqual(self.fault('list').splitlines(),
                         ['rule=1 kind=loss name=example.test. percent=30',
                          'rule=2 kind=latency delay=500ms'])
        self.assertEqual(self.stats()['fault_rules'], '2')

    def test_bad_arguments_are_refused_and_named(self):
        for args, named in ((('add', 'explode'), 'explode'),
                            (('add', 'loss'), 'percent='),
                            (('add', 'loss', 'percent=120'), 'percent='),
                            (('add', 'latency'), 'delay='),
                            (('add', 'latency', 'delay=soon'), 'delay='),
                            (('add', 'drop', 'name=a..b'), 'name='),
                            (('add', 'drop', 'colour=red'), 'colour=red')):
            r = self.authd.ctl('fault', *args)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn(named, r.stderr, args)
        self.assertEqual(self.fault('list'), '')
        self.assert_normal()

    def test_changes_are_logged(self):
        self.authd.wait_for('event=fault', all_of=('action=enabled', 'level=warn'))
        since = self.authd.line_count()
        self.fault('add', 'drop', 'name=www.example.test')
        self.authd.wait_for('event=fault', since=since,
                            all_of=('action=add', 'kind=drop', 'name=www.example.test.'))
        self.fault('clear')
        self.authd.wait_for('event=fault', since=since, all_of=('action=clear', 'removed=1'))


class FaultInjectionDisabled(unittest.TestCase):
    """Without --fault-injection the command is refused and nothing changes."""

    def test_fault_command_is_refused_and_answers_stay_normal(self):
        tmp = bt.make_tmpdir()
        authd = start_authd(tmp, ADDR_DISABLED, fault_injection=False)
        try:
            for args in (('add', 'drop'), ('list',), ('clear',)):
                r = authd.ctl('fault', *args)
                self.assertEqual(r.returncode, 1, args)
                self.assertIn(DISABLED_TEXT, r.stderr)
            r = authd.query('www.example.test', 'A')
            self.assertEqual(bt.rrs(r.answer), {WWW_A})
            stats = authd.ctl('stats').stdout
            self.assertNotIn('fault_', stats)
            self.assertNotIn('event=fault', authd.log_text())
        finally:
            stop_clean(authd)
            bt.remove_tmpdir(tmp)


class FaultInjectionShutdown(unittest.TestCase):
    """Stopping while answers are held back drops them and exits cleanly."""

    def test_stop_with_delayed_answers_waiting(self):
        tmp = bt.make_tmpdir()
        authd = start_authd(tmp, ADDR_SHUTDOWN)
        try:
            r = authd.ctl('fault', 'add', 'latency', 'delay=60s')
            self.assertEqual(r.returncode, 0, r.stderr)
            for i in range(5):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(bt.make_query('www.example.test', 'A', qid=i).to_wire(),
                             (authd.addr, authd.port))
            with socket.create_connection((authd.addr, authd.port), timeout=3) as s:
                wire = bt.make_query('www.example.test', 'A').to_wire()
                s.sendall(len(wire).to_bytes(2, 'big') + wire)
                time.sleep(0.3)
                start = time.monotonic()
                stop_clean(authd)
                self.assertLess(time.monotonic() - start, 10)
        finally:
            if authd.alive():
                authd.kill()
            bt.remove_tmpdir(tmp)


if __name__ == '__main__':
    bt.main()
