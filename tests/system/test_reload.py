# System test of ballast-authd reloads on 127.0.0.13: SIGHUP and `ballast reload` pick up new
# zone data, a bad zone keeps its last good version (logged with file and line), a config that
# would stop serving is refused, limits are enforced on reload, and --check reports FILE:LINE.
"""Staged reload: validate everything, swap atomically, keep the last good version."""

import os
import shutil
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402
from ballast_test import rr  # noqa: E402

import dns.rcode  # noqa: E402

ADDR = '127.0.0.13'
OLD_WWW = {rr('www.example.test', 3600, 'A', '192.0.2.10')}
NEW_WWW = {rr('www.example.test', 3600, 'A', '192.0.2.99')}
RELOAD_TIMEOUT = 10.0


def edit_zone(path, www='192.0.2.99', serial=2026112302, insert_after_www=None, append=()):
    """Rewrite the copied example.test zone: www's address, the serial, optionally a line right
    after the www A line, and lines at the end. Returns the 1-based line of the inserted line."""
    with open(path) as f:
        lines = f.read().split('\n')
    inserted_at = None
    out = []
    for line in lines:
        if line.startswith('www ') and ' A ' in line and 'AAAA' not in line:
            line = 'www         IN A     %s' % www
            out.append(line)
            if insert_after_www is not None:
                out.append(insert_after_www)
                inserted_at = len(out)
            continue
        if '; serial' in line:
            line = '                         %d ; serial' % serial
        out.append(line)
    out.extend(append)
    bt.write_file(path, '\n'.join(out))
    return inserted_at


class Reload(unittest.TestCase):
    """A fresh daemon per test, on copies of the zones in a temporary directory."""

    def setUp(self):
        bt.require_binaries()
        self.tmp = bt.make_tmpdir()
        self.zones = bt.copy_standard_zones(self.tmp)
        self.example = self.zones[0][1]
        self.authd = None

    def tearDown(self):
        try:
            if self.authd is not None:
                rc = self.authd.stop()
                self.assertEqual(rc, 0, 'exit code after SIGTERM; log:\n%s'
                                 % self.authd.log_text())
        finally:
            bt.remove_tmpdir(self.tmp)

    def start(self, **cfg_kw):
        self.authd = bt.start_authd_config(self.tmp, ADDR, self.zones, **cfg_kw)
        self.assert_www(OLD_WWW)

    def www(self, tcp=False):
        r = self.authd.query('www.example.test', 'A', tcp=tcp)
        return r.rcode(), bt.rrs(r.answer)

    def assert_www(self, expected):
        for tcp in (False, True):
            self.assertEqual(self.www(tcp), (dns.rcode.NOERROR, expected))

    def assert_all_zones_served(self):
        for qname, rcode in (('www.example.test', 0), ('www.other.test', 0),
                             ('www.deep.example.test', 0)):
            r = self.authd.query(qname, 'A')
            self.assertEqual(r.rcode(), rcode, str(r))
            self.assertEqual(len(r.answer), 1, str(r))

    def sighup_and_wait(self, needle='event=reload'):
        mark = self.authd.line_count()
        self.authd.send_signal(signal.SIGHUP)
        return self.authd.wait_for(needle, timeout=RELOAD_TIMEOUT, since=mark)

    def stats(self):
        res = self.authd.ctl('stats')
        self.assertEqual(res.returncode, 0, res.stderr)
        return bt.parse_kv(res.stdout)

    # ---- good reloads --------------------------------------------------------------------

    def test_sighup_serves_changed_record(self):
        self.start()
        edit_zone(self.example)
        _, line = self.sighup_and_wait()
        self.assertIn('result=ok', line)
        self.assert_www(NEW_WWW)
        zones = self.authd.ctl('zones')
        self.assertEqual(zones.returncode, 0, zones.stderr)
        self.assertRegex(zones.stdout, r'(?m)^example\.test\.? serial=2026112302 ')
        self.assertGreaterEqual(int(self.stats()['reloads_ok']), 1)

    def test_control_reload_serves_changed_record(self):
        self.start()
        edit_zone(self.example)
        res = self.authd.ctl('reload')
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn('zones=3', res.stdout)
        self.assert_www(NEW_WWW)
        self.assert_all_zones_served()

    # ---- a bad zone keeps its last good version ------------------------------------------

    def test_bad_zone_keeps_previous_version(self):
        self.start()
        # A syntax error on a known line; the same edit also changes www, which must NOT show.
        bad_line = edit_zone(self.example, insert_after_www='broken      IN A     not-an-address')
        _, rejected = self.sighup_and_wait('event=zone_rejected')
        self.assertIn('zone=example.test', rejected)
        self.assertIn('file=%s' % self.example, rejected)
        self.assertIn('line=%d' % bad_line, rejected)
        self.assertIn('level=error', rejected)
        self.authd.wait_for('event=reload', since=0, all_of=('result=partial',))
        self.assert_www(OLD_WWW)
        self.assert_all_zones_served()

        res = self.authd.ctl('reload')
        self.assertEqual(res.returncode, 1, 'ballast reload must fail:\n%s%s'
                         % (res.stdout, res.stderr))
        self.assertIn('%s:%d:' % (self.example, bad_line), res.stderr)
        self.assertIn('example.test', res.stderr)
        self.assert_www(OLD_WWW)
        self.assertGreaterEqual(int(self.stats()['reloads_failed']), 1)

        # Fixed: the next reload takes the new version.
        shutil.copyfile(os.path.join(bt.ZONES_DIR, 'example.test.zone'), self.example)
        edit_zone(self.example, serial=2026112303)
        res = self.authd.ctl('reload')
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assert_www(NEW_WWW)

    def test_zone_over_rrset_limit_rejected_naming_limit(self):
        self.start(limits={'max-rrset-records': 45})
        many = ['many        IN A     192.0.2.%d' % (i + 1) for i in range(50)]
        edit_zone(self.example, append=many)
        res = self.authd.ctl('reload')
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn('max-rrset-records', res.stderr)
        self.assertIn(self.example, res.stderr)
        _, rejected = self.authd.wait_for('event=zone_rejected', all_of=('max-rrset-records',))
        self.assertIn('zone=example.test', rejected)
        r = self.authd.query('many.example.test', 'A')
        self.assertEqual(r.rcode(), dns.rcode.NXDOMAIN, str(r))
        self.assert_www(OLD_WWW)

    # ---- config reloads that would stop serving are refused ------------------------------

    def rewrite_config(self, **cfg_kw):
        bt.write_file(self.authd.config, bt.config_yaml(ADDR, self.authd.port, control=
                                                        self.authd.control, **cfg_kw))

    def assert_refused_reload(self):
        res = self.authd.ctl('reload')
        self.assertEqual(res.returncode, 1, 'reload must be refused:\n%s%s'
                         % (res.stdout, res.stderr))
        self.assertNotEqual(res.stderr.strip(), '')
        mark = self.authd.line_count()
        self.authd.send_signal(signal.SIGHUP)
        self.authd.wait_for('level=error', timeout=RELOAD_TIMEOUT, since=mark)
        self.assertTrue(self.authd.alive())
        self.assert_www(OLD_WWW)
        self.assert_all_zones_served()

    def test_config_without_zones_is_refused(self):
        self.start()
        self.rewrite_config(zones=[])
        self.assert_refused_reload()

    def test_config_without_listeners_is_refused(self):
        self.start()
        self.rewrite_config(zones=self.zones, listen=[])
        self.assert_refused_reload()

    # ---- atomic swap ---------------------------------------------------------------------

    def test_queries_during_reloads_never_fail(self):
        """Answers are the old or the new version, never an error or nothing (RCU swap)."""
        self.start()
        results, stop = [], threading.Event()

        def ask():
            while not stop.is_set() and len(results) < 20000:
                try:
                    results.append(self.www())
                except AssertionError as e:
                    results.append(('error', str(e)))

        worker = threading.Thread(target=ask)
        worker.start()
        try:
            for i in range(10):
                edit_zone(self.example, www='192.0.2.99' if i % 2 == 0 else '192.0.2.10',
                          serial=2026112302 + i)
                _, line = self.sighup_and_wait()
                self.assertIn('result=ok', line)
                time.sleep(0.05)
        finally:
            stop.set()
            worker.join(30)
        self.assertGreater(len(results), 10)
        bad = [r for r in results if r not in ((0, OLD_WWW), (0, NEW_WWW))]
        self.assertEqual(bad[:5], [], '%d of %d answers were wrong' % (len(bad), len(results)))


class Check(unittest.TestCase):
    """ballast-authd --check: validates config and every zone without serving."""

    def setUp(self):
        bt.require_binaries()
        self.tmp = bt.make_tmpdir()
        self.zones = bt.copy_standard_zones(self.tmp)

    def tearDown(self):
        bt.remove_tmpdir(self.tmp)

    def test_check_good_config_exits_0(self):
        path = os.path.join(self.tmp, 'good.yaml')
        bt.write_file(path, bt.config_yaml(ADDR, 5399, self.zones))
        res = bt.run_authd('--check', '-c', path)
        self.assertEqual(res.returncode, 0, res.stderr)

    def test_check_quickstart_config_exits_0(self):
        res = bt.run_authd('--check', '-c', os.path.join(bt.ZONES_DIR, 'authd.yaml'))
        self.assertEqual(res.returncode, 0, res.stderr)

    def test_check_bad_config_reports_file_line(self):
        path = os.path.join(self.tmp, 'bad.yaml')
        text = bt.config_yaml(ADDR, 5399, self.zones).replace(
            '  workers: 2\n', '  workers: 2\n  no-such-key: 1\n')
        bt.write_file(path, text)
        line = text.split('\n').index('  no-such-key: 1') + 1
        res = bt.run_authd('--check', '-c', path)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn('%s:%d:' % (path, line), res.stderr)
        self.assertIn('no-such-key', res.stderr)

    def test_check_bad_zone_reports_zone_file_line(self):
        bad_line = edit_zone(self.zones[0][1], insert_after_www='broken IN A 300.1.2.3')
        path = os.path.join(self.tmp, 'authd.yaml')
        bt.write_file(path, bt.config_yaml(ADDR, 5399, self.zones))
        res = bt.run_authd('--check', '-c', path)
        self.assertEqual(res.returncode, 1, res.stderr)
        self.assertIn('%s:%d:' % (self.zones[0][1], bad_line), res.stderr)

    def test_check_zone_over_limit_names_limit(self):
        path = os.path.join(self.tmp, 'authd.yaml')
        bt.write_file(path, bt.config_yaml(ADDR, 5399, self.zones,
                                           limits={'max-rrset-records': 39}))
        res = bt.run_authd('--check', '-c', path)  # big.example.test has 40 TXT records
        self.assertEqual(res.returncode, 1, res.stderr)
        self.assertIn('max-rrset-records', res.stderr)
        self.assertIn(self.zones[0][1], res.stderr)


if __name__ == '__main__':
    bt.main()
