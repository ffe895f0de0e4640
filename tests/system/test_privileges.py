# System test of the privilege drop (issue #7), as root on 127.0.23.x port 53: both daemons bind
# port 53 then run as server.user (every thread), still answer, reload and stop cleanly; without
# a user they refuse root (before binding anything) unless --allow-root; unknown users fail.
"""Privileges: bind port 53 as root, then drop to server.user; refuse root unless told."""

import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402

import dns.rcode  # noqa: E402

RESOLVER = os.path.join(bt.BUILD_DIR, 'resolver', 'ballast-resolver')
AUTHD_ADDR = '127.0.23.1'
RESOLVER_ADDR = '127.0.23.2'
SPARE_ADDR = '127.0.23.3'  # a listen address added by a reload
PORT = 53
USER = 'nobody'
UNKNOWN_USER = 'ballast-no-such-user'
REFUSAL = 'running as root; set server.user or pass --allow-root'
RELOAD_TIMEOUT = 10.0
IS_ROOT = os.geteuid() == 0


def child_env():
    """The environment without BALLAST_ALLOW_ROOT (meson sets it for the other tests)."""
    env = dict(os.environ)
    env.pop('BALLAST_ALLOW_ROOT', None)
    return env


def nobody_ids():
    pw = pwd.getpwnam(USER)
    return pw.pw_uid, pw.pw_gid


def thread_ids(pid):
    """{tid: (Uid fields, Gid fields, Groups)} from /proc/PID/task/*/status."""
    out = {}
    for tid in os.listdir('/proc/%d/task' % pid):
        fields = {}
        with open('/proc/%d/task/%s/status' % (pid, tid)) as f:
            for line in f:
                key, _, value = line.partition(':')
                fields[key] = value.split()
        out[tid] = (fields['Uid'], fields['Gid'], fields.get('Groups', []))
    return out


def authd_config(zone_path, user=USER, listen=(AUTHD_ADDR,), control=None, pid_file=None):
    lines = ['server:', '  listen:']
    lines += ['    - %s@%d' % (addr, PORT) for addr in listen]
    lines += ['  workers: 2']
    if user is not None:
        lines.append('  user: %s' % user)
    if control:
        lines.append('  control: %s' % control)
    if pid_file:
        lines.append('  pid-file: %s' % pid_file)
    lines += ['zones:', '  - name: example.test', '    file: %s' % zone_path]
    return '\n'.join(lines) + '\n'


def resolver_config(tmp, user=USER, upstream=AUTHD_ADDR, snapshot_dir=None):
    lines = ['server:', '  listen:', '    - %s@%d' % (RESOLVER_ADDR, PORT), '  workers: 2',
             '  control: %s' % os.path.join(tmp, 'resolver.sock')]
    if user is not None:
        lines.append('  user: %s' % user)
    lines += ['access-control:', '  - { prefix: 127.0.0.0/8, action: allow }',
              'resolution:', '  root-hints: %s' % os.path.join(tmp, 'root.hints'),
              'stub:', '  - zone: example.test', '    to: [ "%s@%d" ]' % (upstream, PORT)]
    if snapshot_dir:
        lines += ['cache:', '  snapshot-file: %s' % os.path.join(snapshot_dir, 'resolver.cache')]
    return '\n'.join(lines) + '\n'


def set_www(zone_path, address, serial):
    with open(zone_path) as f:
        lines = f.read().split('\n')
    out = []
    for line in lines:
        if line.startswith('www ') and ' A ' in line and 'AAAA' not in line:
            line = 'www         IN A     %s' % address
        elif '; serial' in line:
            line = '                         %d ; serial' % serial
        out.append(line)
    bt.write_file(zone_path, '\n'.join(out))


def www_address(addr):
    msg = bt.query(addr, PORT, 'www.example.test.', 'A', timeout=5)
    if msg is None or msg.rcode() != dns.rcode.NOERROR:
        return None
    return sorted(rd.address for rrset in msg.answer for rd in rrset if hasattr(rd, 'address'))


@unittest.skipUnless(IS_ROOT, 'test_privileges needs root (it binds port 53 and switches to '
                     'user nobody); run the suite as root, as CI does')
class Privileges(unittest.TestCase):
    def setUp(self):
        bt.require_binaries(bt.AUTHD, RESOLVER, bt.TOOL)
        self.uid, self.gid = nobody_ids()
        self.tmp = bt.make_tmpdir('ballast-priv-')
        os.chmod(self.tmp, 0o755)  # the dropped user re-reads configs and zones on reload
        self.zone = os.path.join(self.tmp, 'example.test.zone')
        shutil.copyfile(os.path.join(bt.ZONES_DIR, 'example.test.zone'), self.zone)
        shutil.copyfile(os.path.join(bt.ROOT, 'zones', 'root.hints'),
                        os.path.join(self.tmp, 'root.hints'))
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.kill()
        bt.remove_tmpdir(self.tmp)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        bt.write_file(path, text)
        os.chmod(path, 0o644)
        return path

    def start(self, argv, ready=True):
        p = bt.Process(argv, env=child_env())
        self.procs.append(p)
        if ready:
            p.wait_for('event=ready')
        return p

    def run_daemon(self, argv):
        """Run a daemon expected to exit at once; returns (rc, output)."""
        p = bt.Process(argv, env=child_env())
        self.procs.append(p)
        try:
            rc = p.proc.wait(15)
        except Exception:
            p.kill()
            raise AssertionError('%s did not exit; log:\n%s' % (argv[0], p.log_text()))
        p.stop()
        return rc, p.log_text()

    def assert_dropped(self, p):
        threads = thread_ids(p.pid)
        self.assertGreaterEqual(len(threads), 3, threads)  # main loop and two workers
        for tid, (uids, gids, groups) in threads.items():
            self.assertEqual([str(self.uid)] * 4, uids, 'thread %s: Uid %s' % (tid, uids))
            self.assertEqual([str(self.gid)] * 4, gids, 'thread %s: Gid %s' % (tid, gids))
            self.assertNotIn('0', groups, 'thread %s kept group root: %s' % (tid, groups))
        p.wait_for('event=privileges', all_of=('action=dropped', 'user=%s' % USER,
                                               'uid=%d' % self.uid))

    def reload(self, p, signal_=signal.SIGHUP):
        since = p.line_count()
        p.send_signal(signal_)
        return p.wait_for('event=reload', since=since, timeout=RELOAD_TIMEOUT)[1]

    def stop_clean(self, p, name):
        rc = p.stop()
        self.assertEqual(0, rc, '%s did not stop cleanly; log:\n%s' % (name, p.log_text()))

    def start_authd(self, addr=AUTHD_ADDR, **kw):
        control = os.path.join(self.tmp, 'authd.sock')
        config = self.write('authd.yaml', authd_config(self.zone, listen=(addr,), control=control,
                                                       **kw))
        return self.start([bt.AUTHD, '-c', config]), config, control

    # (1) port 53, then every thread runs as nobody; answers, reloads and stops as before.

    def test_authd_binds_port_53_then_runs_as_user_and_still_reloads(self):
        pid_file = os.path.join(self.tmp, 'authd.pid')
        authd, config, control = self.start_authd(pid_file=pid_file)
        self.assert_dropped(authd)
        self.assertEqual(['192.0.2.10'], www_address(AUTHD_ADDR))
        tcp = bt.query(AUTHD_ADDR, PORT, 'example.test.', 'SOA', tcp=True)
        self.assertEqual(dns.rcode.NOERROR, tcp.rcode())
        with open(pid_file) as f:
            self.assertEqual(authd.pid, int(f.read()))

        # The control socket belongs to the user now; root's `ballast` still connects.
        st = os.stat(control)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual((self.uid, self.gid, 0o600), (st.st_uid, st.st_gid, st.st_mode & 0o777))
        res = bt.run_tool('-s', control, 'status')
        self.assertEqual(0, res.returncode, res.stdout + res.stderr)

        # SIGHUP as nobody re-reads the zone file.
        set_www(self.zone, '192.0.2.99', 2026112302)
        self.assertIn('result=ok', self.reload(authd))
        self.assertEqual(['192.0.2.99'], www_address(AUTHD_ADDR))

        # A new listen address cannot be bound any more: restart needed, the old one serves.
        bt.write_file(config, authd_config(self.zone, listen=(AUTHD_ADDR, SPARE_ADDR),
                                           control=control, pid_file=pid_file))
        since = authd.line_count()
        res = bt.run_tool('-s', control, 'reload')
        self.assertEqual(0, res.returncode, res.stdout + res.stderr)
        authd.wait_for('event=reload_restart_needed', since=since)
        self.assertEqual(['192.0.2.99'], www_address(AUTHD_ADDR))
        with self.assertRaises(ConnectionRefusedError):  # nothing listens there
            bt.query(SPARE_ADDR, PORT, 'www.example.test.', 'A', timeout=1)

        self.stop_clean(authd, 'ballast-authd')

    def test_resolver_binds_port_53_then_runs_as_user_and_still_reloads(self):
        authd = self.start_authd()[0]
        state = os.path.join(self.tmp, 'state')
        os.mkdir(state)
        os.chown(state, self.uid, self.gid)
        config = self.write('resolver.yaml', resolver_config(self.tmp, snapshot_dir=state))
        resolver = self.start([RESOLVER, '-c', config])
        self.assert_dropped(resolver)
        self.assertNotIn('not writable', resolver.log_text())
        self.assertEqual(['192.0.2.10'], www_address(RESOLVER_ADDR))

        # SIGHUP as nobody re-reads the config: refuse 127.0.0.0/8 and see REFUSED.
        bt.write_file(config, resolver_config(self.tmp, snapshot_dir=state).replace(
            'action: allow', 'action: refuse'))
        self.assertIn('result=ok', self.reload(resolver))
        msg = bt.query(RESOLVER_ADDR, PORT, 'www.example.test.', 'A', timeout=5)
        self.assertEqual(dns.rcode.REFUSED, msg.rcode())

        # The control socket works for root; the snapshot is written by the user.
        control = os.path.join(self.tmp, 'resolver.sock')
        res = bt.run_tool('-s', control, 'cache', 'dump')
        self.assertEqual(0, res.returncode, res.stdout + res.stderr)
        self.assertEqual(self.uid, os.stat(os.path.join(state, 'resolver.cache')).st_uid)

        self.stop_clean(resolver, 'ballast-resolver')
        self.assertIn('result=written', resolver.log_text())
        self.stop_clean(authd, 'ballast-authd')

    def test_resolver_says_when_the_snapshot_directory_is_not_writable(self):
        config = self.write('resolver.yaml', resolver_config(self.tmp, snapshot_dir=self.tmp))
        resolver = self.start([RESOLVER, '-c', config])
        resolver.wait_for('event=privileges', all_of=('level=warn', 'not writable',
                                                      'cache snapshot directory'))
        self.stop_clean(resolver, 'ballast-resolver')

    def test_allow_root_flag_keeps_root_with_a_warning(self):
        config = self.write('authd.yaml', authd_config(self.zone, user=None))
        authd = self.start([bt.AUTHD, '-c', config, '--allow-root'])
        authd.wait_for('event=privileges', all_of=('level=warn', 'action=kept', 'user=root'))
        for tid, (uids, _, _) in thread_ids(authd.pid).items():
            self.assertEqual('0', uids[1], tid)
        self.stop_clean(authd, 'ballast-authd')

    # (2) root without a user and without --allow-root / BALLAST_ALLOW_ROOT=1: refused before
    # anything is bound.

    def assert_refused_before_binding(self, argv, addr, files):
        # Held without SO_REUSEPORT: a daemon that bound first would fail with "in use" instead.
        held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        held.bind((addr, PORT))
        try:
            rc, log = self.run_daemon(argv)
        finally:
            held.close()
        self.assertNotEqual(0, rc, log)
        self.assertIn('level=error event=startup_failed reason="%s"' % REFUSAL, log)
        self.assertNotIn('in use', log.lower())
        self.assertNotIn('event=ready', log)
        for path in files:
            self.assertFalse(os.path.exists(path), '%s was created:\n%s' % (path, log))

    def test_authd_refuses_root_without_user(self):
        control = os.path.join(self.tmp, 'authd.sock')
        pid_file = os.path.join(self.tmp, 'authd.pid')
        config = self.write('authd.yaml', authd_config(self.zone, user=None, control=control,
                                                       pid_file=pid_file))
        self.assert_refused_before_binding([bt.AUTHD, '-c', config], AUTHD_ADDR,
                                           (control, pid_file))
        # The same flags-only (no config file).
        self.assert_refused_before_binding(
            [bt.AUTHD, '--listen', '%s@%d' % (AUTHD_ADDR, PORT), '--zone',
             'example.test:%s' % self.zone], AUTHD_ADDR, ())

    def test_resolver_refuses_root_without_user(self):
        config = self.write('resolver.yaml', resolver_config(self.tmp, user=None))
        self.assert_refused_before_binding([RESOLVER, '-c', config], RESOLVER_ADDR,
                                           (os.path.join(self.tmp, 'resolver.sock'),))

    # (3) an unknown user (or group) is a clear error naming it.

    def test_unknown_user_is_an_error_naming_it(self):
        authd_yaml = self.write('authd.yaml', authd_config(self.zone, user=UNKNOWN_USER))
        resolver_yaml = self.write('resolver.yaml', resolver_config(self.tmp, user=UNKNOWN_USER))
        for argv in ([bt.AUTHD, '-c', authd_yaml], [RESOLVER, '-c', resolver_yaml],
                     [bt.AUTHD, '-c', authd_yaml, '--allow-root']):
            rc, log = self.run_daemon(argv)
            self.assertNotEqual(0, rc, log)
            self.assertIn("user '%s' does not exist" % UNKNOWN_USER, log)
            self.assertNotIn('event=ready', log)
        rc, log = self.run_daemon([bt.AUTHD, '-c', authd_yaml, '--user', '%s:%s' % (
            USER, 'ballast-no-such-group')])
        self.assertNotEqual(0, rc, log)
        self.assertIn("group 'ballast-no-such-group' does not exist", log)

    def test_user_flag_overrides_the_config(self):
        config = self.write('authd.yaml', authd_config(self.zone, user=UNKNOWN_USER))
        authd = self.start([bt.AUTHD, '-c', config, '--user', '%s:%s' % (
            USER, grp.getgrgid(self.gid).gr_name)])
        self.assert_dropped(authd)
        self.stop_clean(authd, 'ballast-authd')


if __name__ == '__main__':
    unittest.main(verbosity=2)
