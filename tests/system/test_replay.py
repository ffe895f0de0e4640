"""System tests of `ballast replay`: every scenario of tests/scenarios/ replayed time-scaled
against the real daemons, with its expectations (exit status 0); the outputs a user reads (CSV
timeline, SVG plot, summary); and proof that the expectations mean something: with the
protections off (--protections-off: serve-stale disabled) the outage scenarios fail (exit 1).
"""

import csv
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ballast_test as bt  # noqa: E402

SCENARIOS = os.path.join(bt.ROOT, 'tests', 'scenarios')
SPEED = '5'
CSV_HEADER = ['second', 'queries', 'with_data', 'stale', 'nodata', 'nxdomain', 'servfail',
              'timeouts', 'success_rate', 'p50_ms', 'p99_ms', 'upstream']


def replay(scenario, out_dir, *flags, timeout=240):
    argv = [bt.TOOL, 'replay', '--quiet', '--speed', SPEED, '--out', out_dir, *flags,
            os.path.join(SCENARIOS, scenario + '.yaml')]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


class ReplayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        bt.require_binaries(bt.TOOL, bt.AUTHD)
        cls.tmp = bt.make_tmpdir('ballast-replay-')

    @classmethod
    def tearDownClass(cls):
        bt.remove_tmpdir(cls.tmp)

    def run_scenario(self, name, *flags, want=0):
        out = os.path.join(self.tmp, name + ('-off' if flags else ''))
        result = replay(name, out, *flags)
        self.assertEqual(result.returncode, want,
                         '%s %s: exit %d\nstdout:\n%s\nstderr:\n%s' % (
                             name, ' '.join(flags), result.returncode, result.stdout,
                             result.stderr[-3000:]))
        return out, result

    def check_outputs(self, out, result):
        with open(os.path.join(out, 'timeline.csv')) as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[0], CSV_HEADER)
        self.assertGreater(len(rows), 5)
        queries = sum(int(r[1]) for r in rows[1:])
        self.assertGreater(queries, 100)
        with open(os.path.join(out, 'plot.svg')) as f:
            svg = f.read()
        self.assertTrue(svg.startswith('<svg'))
        self.assertIn('<polyline', svg)
        self.assertIn('run', result.stdout)
        with open(os.path.join(out, 'summary.txt')) as f:
            self.assertIn('expectations:', f.read())

    # --- the library: each scenario meets its expectations --------------------------------

    def test_aws_us_east_1_2025_never_empty(self):
        out, result = self.run_scenario('aws-us-east-1-2025')
        self.check_outputs(out, result)
        self.assertIn('ok: every expectation met', result.stdout)

    def test_authority_blackout(self):
        out, result = self.run_scenario('authority-blackout')
        self.check_outputs(out, result)
        # the outage window is shaded and labelled on the plot
        with open(os.path.join(out, 'plot.svg')) as f:
            self.assertIn('drop leaf-a', f.read())

    def test_slow_authority(self):
        self.run_scenario('slow-authority')

    def test_region_failover(self):
        out, _ = self.run_scenario('region-failover')
        with open(os.path.join(out, 'run-ballast', 'edge.log')) as f:
            log = f.read()
        # the answer really moved to the standby level and back
        self.assertIn('level=1', log)
        self.assertIn('state=down', log)

    def test_flapping_endpoint(self):
        self.run_scenario('flapping-endpoint')

    def test_bad_generated_input_rejected(self):
        out, _ = self.run_scenario('bad-generated-input')
        with open(os.path.join(out, 'run-ballast', 'gen.log')) as f:
            log = f.read()
        self.assertIn('max-zone-records', log)  # the oversized zone was refused by its limit
        self.assertIn('event=reload result=partial', log)  # ... and the garbage one
        self.assertIn('invalid JSON', log)  # the garbage feed
        self.assertIn('document larger than', log)  # the oversized feed

    def test_retry_storm_recovery(self):
        self.run_scenario('retry-storm-recovery')

    def test_resolver_restart_mid_outage(self):
        out, _ = self.run_scenario('resolver-restart-mid-outage')
        with open(os.path.join(out, 'run-ballast', 'resolver.log')) as f:
            log = f.read()
        self.assertIn('event=cache_snapshot result=loaded', log)

    # --- the expectations fail when the protection is off ----------------------------------

    def test_aws_scenario_fails_without_protections(self):
        _, result = self.run_scenario('aws-us-east-1-2025', '--protections-off', want=1)
        self.assertIn('FAILED', result.stdout)
        self.assertIn('never', result.stdout)

    def test_failover_scenario_answers_empty_without_never_empty_rule(self):
        out, result = self.run_scenario('region-failover', '--protections-off', want=1)
        self.assertIn('never', result.stdout)
        with open(os.path.join(out, 'run-protections-off', 'edge.log')) as f:
            self.assertIn('event=fail_closed', f.read())

    def test_blackout_scenario_fails_without_protections(self):
        _, result = self.run_scenario('authority-blackout', '--protections-off', want=1)
        self.assertIn('success rate', result.stdout)

    # --- --compare: both runs on one plot -------------------------------------------------

    def test_compare_with_unbound_draws_both_runs(self):
        out, result = self.run_scenario('blackout-vs-unbound', '--compare')
        self.assertIn('unbound', result.stdout)
        self.assertIn('with Unbound', result.stdout)
        self.assertTrue(os.path.exists(os.path.join(out, 'timeline-unbound.csv')))
        with open(os.path.join(out, 'plot.svg')) as f:
            svg = f.read()
        self.assertGreaterEqual(svg.count('<polyline'), 4)  # two panels x two runs
        self.assertIn('unbound', svg)

    # --- bad scenarios are rejected with file:line ------------------------------------------

    def test_bad_scenario_named_with_file_and_line(self):
        path = os.path.join(self.tmp, 'bad.yaml')
        with open(path, 'w') as f:
            f.write('name: bad\nduration: 10s\nauthorities:\n  - name: a\n'
                    '    address: 192.0.2.1\n')
        result = subprocess.run([bt.TOOL, 'replay', '--check', path], capture_output=True,
                                text=True, timeout=30)
        self.assertEqual(result.returncode, 2)
        self.assertIn('%s:5:' % path, result.stderr)
        self.assertIn('loopback', result.stderr)

    def test_every_library_scenario_checks(self):
        for name in sorted(os.listdir(SCENARIOS)):
            result = subprocess.run([bt.TOOL, 'replay', '--check',
                                     os.path.join(SCENARIOS, name)],
                                    capture_output=True, text=True, timeout=30)
            self.assertEqual(result.returncode, 0, name + ': ' + result.stderr)


if __name__ == '__main__':
    unittest.main(verbosity=2)
