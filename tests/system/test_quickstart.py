# System test of tools/quickstart.sh --demo: the scripted tour a newcomer runs (README, Quick
# start) starts the daemons on its fixed loopback ports, fails a pool endpoint and sees the answer
# change, stops the authority and gets a stale answer, then stops everything.
"""tools/quickstart.sh --demo, run against the build under test."""

import os
import re
import shutil
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ballast_test as bt  # noqa: E402

SCRIPT = os.path.join(bt.ROOT, 'tools', 'quickstart.sh')
RESOLVER = os.path.join(bt.BUILD_DIR, 'resolver', 'ballast-resolver')
# The fixed addresses of the quickstart (tools/quickstart.sh, zones/*.yaml).
PORTS = [('127.0.0.1', 5300), ('127.0.0.1', 5301), ('127.0.0.1', 5302), ('127.0.0.31', 5321),
         ('127.0.0.32', 5321)]
SOCKETS = ['/tmp/ballast-resolver-5300.sock', '/tmp/ballast-authd-5301.sock',
           '/tmp/ballast-authd-5302.sock']


def busy(addr, port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not busy
            try:
                s.bind((addr, port))
            except OSError:
                return True
    return False


class QuickstartDemoTest(unittest.TestCase):

    def setUp(self):
        bt.require_binaries(bt.AUTHD, bt.TOOL, RESOLVER)
        if not shutil.which('dig'):
            self.skipTest('dig (bind9-dnsutils) is not installed')
        taken = ['%s@%d' % p for p in PORTS if busy(*p)]
        if taken:
            self.skipTest('quickstart ports in use (another quickstart running?): %s' % taken)
        taken = [path for path in SOCKETS if os.path.exists(path)]
        if taken:
            self.skipTest('quickstart control sockets exist (another quickstart running?): %s'
                          % taken)

    def run_demo(self):
        env = dict(os.environ, BALLAST_BUILD_DIR=bt.BUILD_DIR)
        res = subprocess.run(['sh', SCRIPT, '--demo'], env=env, capture_output=True, text=True,
                             timeout=120)
        output = res.stdout + res.stderr
        self.assertEqual(0, res.returncode, output)
        return res.stdout, output

    def test_demo_shows_an_endpoint_leaving_the_answer_and_a_stale_answer(self):
        out, output = self.run_demo()
        sections = re.split(r'^== \d\. ', out, flags=re.M)
        self.assertEqual(4, len(sections), output)
        _, query, pool, stale = sections
        self.assertIn('192.0.2.10', query, output)
        before, after = pool.split('$ kill', 1)
        self.assertIn('127.0.0.31', before, output)
        self.assertIn('127.0.0.32', before, output)
        answer_after = after.split('$ ', 2)[1]  # the dig after the kill
        self.assertIn('127.0.0.31', answer_after, output)
        self.assertNotIn('127.0.0.32', answer_after, output)
        self.assertRegex(after, r'member=127\.0\.0\.32 .*state=down', output)
        self.assertIn('; EDE: 3 (Stale Answer)', stale, output)
        self.assertRegex(stale, r'short\.example\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.80', output)

    def test_demo_leaves_nothing_running(self):
        self.run_demo()
        still = ['%s@%d' % p for p in PORTS if busy(*p)]
        self.assertEqual([], still)
        self.assertEqual([], [path for path in SOCKETS if os.path.exists(path)])


if __name__ == '__main__':
    unittest.main(verbosity=2)
