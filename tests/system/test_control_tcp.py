# System test of TCP control (issue #8) on 127.0.31.x: both daemons with control-tcp and a key made
# by `ballast keygen`; `ballast -s ADDR@PORT --key-file` works, a wrong key and a forged raw line
# are refused and counted, config errors name file:line, and the Unix socket keeps working.
"""TCP control authenticated with a shared key (HMAC-SHA-256 over the server's nonce)."""

import os
import shutil
import socket
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402

RESOLVER = os.path.join(bt.BUILD_DIR, 'resolver', 'ballast-resolver')
AUTHD_ADDR = '127.0.31.1'
RESOLVER_ADDR = '127.0.31.2'
GREETING = 'ballast-control 1 '
AUTH_FAILED = 'error\nauthentication failed\n'


def keygen(path, *extra):
    return bt.run_tool('keygen', *extra, path)


def authd_config(port, control_port, sock, key_file):
    lines = ['server:', '  listen:', '    - %s@%d' % (AUTHD_ADDR, port), '  workers: 1',
             '  control: %s' % sock]
    if control_port is not None:
        lines.append('  control-tcp: %s@%d' % (AUTHD_ADDR, control_port))
    if key_file is not None:
        lines.append('  control-key-file: %s' % key_file)
    zone = os.path.join(bt.ZONES_DIR, 'example.test.zone')
    lines += ['zones:', '  - name: example.test', '    file: %s' % zone]
    return '\n'.join(lines) + '\n'


def resolver_config(tmp, port, control_port, key_file):
    lines = ['server:', '  listen:', '    - %s@%d' % (RESOLVER_ADDR, port), '  workers: 1',
             '  control: %s' % os.path.join(tmp, 'resolver.sock')]
    if control_port is not None:
        lines.append('  control-tcp: %s@%d' % (RESOLVER_ADDR, control_port))
    if key_file is not None:
        lines.append('  control-key-file: %s' % key_file)
    lines += ['access-control:', '  - { prefix: 127.0.0.0/8, action: allow }',
              'resolution:', '  root-hints: %s' % os.path.join(bt.ROOT, 'zones', 'root.hints')]
    return '\n'.join(lines) + '\n'


def line_of(text, needle):
    """1-based line number of the first line containing needle."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError('%r not in config' % needle)


def raw_exchange(addr, port, make_line):
    """Connect, read the greeting, send make_line(nonce_hex) and return (greeting, reply)."""
    with socket.create_connection((addr, port), timeout=10) as s:
        greeting = b''
        while not greeting.endswith(b'\n'):
            chunk = s.recv(1)
            if not chunk:
                break
            greeting += chunk
        text = greeting.decode()
        s.sendall(make_line(text[len(GREETING):].strip()).encode())
        reply = b''
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return text, reply.decode()


class ControlTcp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        bt.require_binaries(bt.AUTHD, RESOLVER, bt.TOOL)
        cls.tmp = bt.make_tmpdir('ballast-ctltcp-')
        cls.key = os.path.join(cls.tmp, 'control.key')
        res = keygen(cls.key)
        assert res.returncode == 0, res.stderr
        cls.daemons = {}
        cls.daemons['authd'] = cls.start('authd')
        cls.daemons['resolver'] = cls.start('resolver')

    @classmethod
    def start(cls, which, name=None):
        name = name or which
        for _ in range(3):
            addr = AUTHD_ADDR if which == 'authd' else RESOLVER_ADDR
            port, control_port = bt.free_port(addr), bt.free_port(addr)
            if port == control_port:
                continue
            config = os.path.join(cls.tmp, '%s.yaml' % name)
            if which == 'authd':
                sock = os.path.join(cls.tmp, '%s.sock' % name)
                bt.write_file(config, authd_config(port, control_port, sock, cls.key))
                argv = [bt.AUTHD, '-c', config]
            else:
                sock = os.path.join(cls.tmp, 'resolver.sock')
                bt.write_file(config, resolver_config(cls.tmp, port, control_port, cls.key))
                argv = [RESOLVER, '-c', config]
            d = bt.Authd(argv, addr, port, control=sock, config=config)
            d.control_tcp = '%s@%d' % (addr, control_port)
            d.control_port = control_port
            try:
                d.wait_for('event=ready')
                return d
            except AssertionError:
                d.kill()
                if 'in use' not in d.log_text().lower():
                    raise
        raise AssertionError('could not start %s' % which)

    @classmethod
    def tearDownClass(cls):
        codes = {name: d.stop() for name, d in cls.daemons.items()}
        bt.remove_tmpdir(cls.tmp)
        for name, code in codes.items():  # 0: clean stop (no sanitizer report either)
            assert code == 0, '%s exited %s:\n%s' % (name, code, cls.daemons[name].log_text())

    def tcp_ctl(self, d, *args, key=None):
        return bt.run_tool('-s', d.control_tcp, '--key-file', key or self.key, *args)

    def auth_failed_count(self, d):
        res = self.tcp_ctl(d, 'stats')
        self.assertEqual(res.returncode, 0, res.stderr)
        return int(bt.parse_kv(res.stdout)['control_auth_failed'])

    def test_keygen_writes_64_hex_characters_mode_0600(self):
        with open(self.key) as f:
            text = f.read()
        self.assertRegex(text, r'^[0-9a-f]{64}\n$')
        self.assertEqual(stat.S_IMODE(os.stat(self.key).st_mode), 0o600)

    def test_stats_and_status_over_tcp_with_the_key(self):
        for name, d in self.daemons.items():
            with self.subTest(daemon=name):
                d.wait_for('event=control_tcp', all_of=('listen=%s ' % d.control_tcp,))
                res = self.tcp_ctl(d, 'stats')
                self.assertEqual(res.returncode, 0, res.stderr + d.log_text())
                self.assertIn('control_auth_failed', bt.parse_kv(res.stdout))
                self.assertIn('reloads_ok', bt.parse_kv(res.stdout))
                res = self.tcp_ctl(d, 'status')
                self.assertEqual(res.returncode, 0, res.stderr)
                self.assertEqual(bt.parse_kv(res.stdout)['pid'], str(d.proc.pid))

    def test_unix_socket_still_works_alongside(self):
        for name, d in self.daemons.items():
            with self.subTest(daemon=name):
                res = d.ctl('status')
                self.assertEqual(res.returncode, 0, res.stderr)
                self.assertEqual(bt.parse_kv(res.stdout)['pid'], str(d.proc.pid))

    def test_wrong_key_is_refused_logged_and_counted(self):
        other = os.path.join(self.tmp, 'other.key')
        if not os.path.exists(other):
            self.assertEqual(keygen(other).returncode, 0)
        for name, d in self.daemons.items():
            with self.subTest(daemon=name):
                before = self.auth_failed_count(d)
                mark = d.line_count()
                res = self.tcp_ctl(d, 'stats', key=other)
                self.assertEqual(res.returncode, 1, res.stdout)
                self.assertIn('authentication failed', res.stderr)
                self.assertNotIn('queries', res.stdout)
                _, line = d.wait_for('event=control_auth_failed', since=mark)
                self.assertRegex(line, r'peer=127\.\d+\.\d+\.\d+@\d+ ')
                self.assertEqual(self.auth_failed_count(d), before + 1)

    def test_forged_raw_line_is_refused(self):
        for name, d in self.daemons.items():
            with self.subTest(daemon=name):
                before = self.auth_failed_count(d)
                greeting, reply = raw_exchange(d.addr, d.control_port,
                                               lambda nonce: '%s stop\n' % ('0' * 64))
                self.assertRegex(greeting, r'^ballast-control 1 [0-9a-f]{64}\n$')
                self.assertEqual(reply, AUTH_FAILED)
                _, reply = raw_exchange(d.addr, d.control_port, lambda nonce: 'stop\n')
                self.assertEqual(reply, AUTH_FAILED)
                self.assertTrue(d.alive(), d.log_text())
                self.assertEqual(self.auth_failed_count(d), before + 2)

    def test_changed_key_on_reload_needs_a_restart(self):
        d = self.daemons['authd']
        new_key = os.path.join(self.tmp, 'reload.key')
        self.assertEqual(keygen(new_key).returncode, 0)
        with open(d.config) as f:
            original = f.read()
        try:
            bt.write_file(d.config, original.replace(self.key, new_key))
            mark = d.line_count()
            res = self.tcp_ctl(d, 'reload')
            self.assertEqual(res.returncode, 0, res.stderr)
            d.wait_for('event=reload_restart_needed', since=mark, all_of=('control-tcp',))
            # The running listener keeps the key it started with.
            self.assertEqual(self.tcp_ctl(d, 'status').returncode, 0)
            self.assertEqual(self.tcp_ctl(d, 'status', key=new_key).returncode, 1)
        finally:
            bt.write_file(d.config, original)
            self.assertEqual(self.tcp_ctl(d, 'reload').returncode, 0)

    def test_stop_over_tcp_stops_the_daemon(self):
        d = self.start('authd', name='authd-stop')
        try:
            res = self.tcp_ctl(d, 'stop')
            self.assertEqual(res.returncode, 0, res.stderr)
            self.assertIn('stopping', res.stdout)
            d.proc.wait(bt.STOP_TIMEOUT)
            self.assertEqual(d.proc.returncode, 0, d.log_text())
        finally:
            d.stop()

    def test_tool_names_missing_daemon_and_unreadable_key(self):
        port = bt.free_port(AUTHD_ADDR)
        res = bt.run_tool('-s', '%s@%d' % (AUTHD_ADDR, port), '--key-file', self.key, 'status')
        self.assertEqual(res.returncode, 2)
        self.assertIn('no daemon listening on %s@%d' % (AUTHD_ADDR, port), res.stderr)
        d = self.daemons['authd']
        missing = os.path.join(self.tmp, 'missing.key')
        res = bt.run_tool('-s', d.control_tcp, '--key-file', missing, 'status')
        self.assertEqual(res.returncode, 2)
        self.assertIn('cannot read key file %s' % missing, res.stderr)
        res = bt.run_tool('-s', os.path.join(self.tmp, 'x.sock'), '--key-file', self.key,
                          'status')
        self.assertEqual(res.returncode, 2)
        self.assertIn('ADDR@PORT', res.stderr)

    def test_keygen_refuses_to_overwrite_without_force(self):
        path = os.path.join(self.tmp, 'regen.key')
        self.assertEqual(keygen(path).returncode, 0)
        with open(path) as f:
            first = f.read()
        res = keygen(path)
        self.assertEqual(res.returncode, 1)
        self.assertIn('--force', res.stderr)
        with open(path) as f:
            self.assertEqual(f.read(), first)
        os.chmod(path, 0o644)
        res = keygen(path, '--force')
        self.assertEqual(res.returncode, 0, res.stderr)
        with open(path) as f:
            self.assertNotEqual(f.read(), first)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def check(self, which, text):
        path = os.path.join(self.tmp, 'check-%s.yaml' % which)
        bt.write_file(path, text)
        binary = bt.AUTHD if which == 'authd' else RESOLVER
        return path, subprocess.run([binary, '--check', '-c', path], cwd=bt.ROOT,
                                    capture_output=True, text=True, timeout=30)

    def test_control_tcp_without_key_file_is_refused_with_file_and_line(self):
        sock = os.path.join(self.tmp, 'unused.sock')
        for which in ('authd', 'resolver'):
            with self.subTest(daemon=which):
                text = (authd_config(5300, 8954, sock, None) if which == 'authd'
                        else resolver_config(self.tmp, 5300, 8953, None))
                path, res = self.check(which, text)
                self.assertNotEqual(res.returncode, 0)
                where = '%s:%d' % (path, line_of(text, 'control-tcp'))
                self.assertIn(where, res.stderr)
                self.assertIn('control-key-file', res.stderr)
                res = bt.run_tool('check', path)
                self.assertEqual(res.returncode, 1)
                self.assertIn(where, res.stderr)

    def test_malformed_key_file_is_refused_with_file_and_line(self):
        bad = os.path.join(self.tmp, 'bad.key')
        bt.write_file(bad, 'not a key\n')
        os.chmod(bad, 0o600)
        sock = os.path.join(self.tmp, 'unused.sock')
        for which in ('authd', 'resolver'):
            with self.subTest(daemon=which):
                text = (authd_config(5300, 8954, sock, bad) if which == 'authd'
                        else resolver_config(self.tmp, 5300, 8953, bad))
                path, res = self.check(which, text)
                self.assertNotEqual(res.returncode, 0)
                self.assertIn('%s:%d' % (path, line_of(text, 'control-key-file')), res.stderr)
                self.assertIn('64 hex characters', res.stderr)

    def test_group_readable_key_file_is_accepted_with_a_warning(self):
        loose = os.path.join(self.tmp, 'loose.key')
        shutil.copyfile(self.key, loose)
        os.chmod(loose, 0o644)
        path, res = self.check('authd', authd_config(5300, 8954,
                                                     os.path.join(self.tmp, 'unused.sock'), loose))
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn('event=control_key_file', res.stderr)
        self.assertIn('chmod 600', res.stderr)


if __name__ == '__main__':
    unittest.main()
