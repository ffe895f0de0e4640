# System test of `meson install` (issue 8): installs the current build into a temporary DESTDIR
# and checks the layout (binaries, man pages, systemd units, example configs, root hints), that
# the man pages render without groff warnings and name every flag of --help, that the installed
# units and examples name the installed paths, and that the examples pass --check.
"""meson install layout and packaging files (docs/packaging.md)."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.path.abspath(os.environ.get('BALLAST_BUILD_DIR', os.path.join(ROOT, 'build')))
MESON = shutil.which('meson')

BINARIES = ['ballast', 'ballast-authd', 'ballast-resolver']
MAN_PAGES = {'man8': ['ballast.8', 'ballast-authd.8', 'ballast-resolver.8'],
             'man5': ['ballast-authd.conf.5', 'ballast-resolver.conf.5']}
UNITS = ['ballast-authd.service', 'ballast-resolver.service']
EXAMPLES = ['authd.yaml', 'resolver.yaml', 'resolver-container.yaml', 'example.test.zone']
# Hardening every unit must keep (docs/packaging.md, "What the units allow").
UNIT_SETTINGS = ['Type=simple', 'ExecReload=/bin/kill -HUP $MAINPID', 'DynamicUser=yes',
                 'User=ballast', 'RuntimeDirectory=ballast', 'ProtectSystem=strict',
                 'ProtectHome=yes', 'PrivateTmp=yes', 'NoNewPrivileges=yes',
                 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE',
                 'AmbientCapabilities=CAP_NET_BIND_SERVICE',
                 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX',
                 'SystemCallFilter=@system-service', 'MemoryDenyWriteExecute=yes',
                 'LockPersonality=yes']
TOOL_TIMEOUT = 120


def run(args, **kwargs):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=TOOL_TIMEOUT, **kwargs)


def build_options():
    """The install directories of the build, as meson resolved them (absolute)."""
    res = run([MESON, 'introspect', '--buildoptions', BUILD_DIR])
    if res.returncode != 0:
        raise AssertionError('meson introspect failed: ' + res.stderr)
    values = {o['name']: o['value'] for o in json.loads(res.stdout)}
    prefix = values['prefix']
    return {name: os.path.join(prefix, values[name])
            for name in ('bindir', 'datadir', 'mandir', 'sysconfdir')} | {'prefix': prefix}


def man_flags(path):
    """Every --flag written in a man page source (\\- is a hyphen there)."""
    with open(path, encoding='utf-8') as f:
        text = f.read().replace('\\-', '-')
    return set(re.findall(r'--[a-z][a-z-]*', text))


def help_flags(text):
    return set(re.findall(r'(?<![\w-])--[a-z][a-z-]*', text))


class InstallTree(unittest.TestCase):
    """One `meson install` into a temporary DESTDIR, shared by the tests."""

    @classmethod
    def setUpClass(cls):
        if MESON is None:
            raise AssertionError('meson not found on PATH')
        if not os.path.exists(os.path.join(BUILD_DIR, 'build.ninja')):
            raise AssertionError('no build in %s (BALLAST_BUILD_DIR)' % BUILD_DIR)
        cls.destdir = tempfile.mkdtemp(prefix='ballast-install-')
        env = dict(os.environ, DESTDIR=cls.destdir)
        res = run([MESON, 'install', '-C', BUILD_DIR, '--no-rebuild'], env=env)
        if res.returncode != 0:
            shutil.rmtree(cls.destdir, ignore_errors=True)
            raise AssertionError('meson install failed:\n' + res.stdout + res.stderr)
        cls.dirs = build_options()

    @classmethod
    def tearDownClass(cls):
        if os.environ.get('BALLAST_KEEP_TMP'):
            print('keeping', cls.destdir)
        else:
            shutil.rmtree(cls.destdir, ignore_errors=True)

    def staged(self, path):
        """Where an absolute install path lies inside DESTDIR."""
        return os.path.join(self.destdir, path.lstrip('/'))

    def examples_dir(self):
        return self.staged(os.path.join(self.dirs['datadir'], 'doc', 'ballast', 'examples'))

    def installed_binary(self, name):
        return self.staged(os.path.join(self.dirs['bindir'], name))

    # --- layout ----------------------------------------------------------------------------

    def test_binaries_are_installed_executable(self):
        for name in BINARIES:
            path = self.installed_binary(name)
            self.assertTrue(os.access(path, os.X_OK), path)
        res = run([self.installed_binary('ballast-resolver'), '--version'])
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn('ballast-resolver', res.stdout)

    def test_man_pages_are_installed_in_sections_8_and_5(self):
        for section, pages in MAN_PAGES.items():
            for page in pages:
                path = self.staged(os.path.join(self.dirs['mandir'], section, page))
                self.assertTrue(os.path.isfile(path), path)

    def test_systemd_units_are_installed_under_lib_systemd_system(self):
        unit_dir = self.staged(os.path.join(self.dirs['prefix'], 'lib', 'systemd', 'system'))
        for unit in UNITS:
            self.assertTrue(os.path.isfile(os.path.join(unit_dir, unit)), unit)

    def test_examples_and_root_hints_are_installed(self):
        for name in EXAMPLES:
            self.assertTrue(os.path.isfile(os.path.join(self.examples_dir(), name)), name)
        hints = self.staged(os.path.join(self.dirs['datadir'], 'ballast', 'root.hints'))
        source = os.path.join(ROOT, 'zones', 'root.hints')
        with open(hints, 'rb') as got, open(source, 'rb') as want:
            self.assertEqual(got.read(), want.read())

    def test_test_programs_are_not_installed(self):
        bindir = self.staged(self.dirs['bindir'])
        self.assertEqual(sorted(os.listdir(bindir)), sorted(BINARIES))

    # --- units -----------------------------------------------------------------------------

    def read_unit(self, unit):
        path = self.staged(os.path.join(self.dirs['prefix'], 'lib', 'systemd', 'system', unit))
        with open(path, encoding='utf-8') as f:
            return f.read()

    def test_units_start_the_installed_binary_with_the_etc_config(self):
        for unit, daemon, config in [('ballast-authd.service', 'ballast-authd', 'authd.yaml'),
                                     ('ballast-resolver.service', 'ballast-resolver',
                                      'resolver.yaml')]:
            text = self.read_unit(unit)
            exec_start = '%s -c %s' % (os.path.join(self.dirs['bindir'], daemon),
                                       os.path.join(self.dirs['sysconfdir'], 'ballast', config))
            self.assertIn('ExecStart=' + exec_start + '\n', text, unit)
            for setting in UNIT_SETTINGS:
                self.assertIn(setting + '\n', text, '%s lacks %s' % (unit, setting))
        self.assertIn('StateDirectory=ballast\n', self.read_unit('ballast-resolver.service'))

    def test_units_pass_systemd_analyze_verify(self):
        analyze = shutil.which('systemd-analyze')
        if analyze is None:
            self.skipTest('systemd-analyze not installed')
        # verify checks that ExecStart exists and that the Documentation= man pages resolve:
        # point both at the staged tree.
        unit_dir = tempfile.mkdtemp(prefix='ballast-units-', dir=self.destdir)
        paths = []
        for unit in UNITS:
            text = self.read_unit(unit).replace('ExecStart=' + self.dirs['bindir'],
                                                'ExecStart=' + self.staged(self.dirs['bindir']))
            paths.append(os.path.join(unit_dir, unit))
            with open(paths[-1], 'w', encoding='utf-8') as f:
                f.write(text)
        env = dict(os.environ, MANPATH=self.staged(self.dirs['mandir']))
        res = run([analyze, 'verify'] + paths, env=env)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(res.stderr.strip(), '')

    # --- man pages -------------------------------------------------------------------------

    def test_man_pages_render_without_groff_warnings(self):
        groff = shutil.which('groff')
        if groff is None:
            self.skipTest('groff not installed')
        env = dict(os.environ, LC_ALL='C.UTF-8')
        for section, pages in MAN_PAGES.items():
            for page in pages:
                path = self.staged(os.path.join(self.dirs['mandir'], section, page))
                res = run([groff, '-man', '-Tutf8', '-ww', '-z', path], env=env)
                self.assertEqual(res.returncode, 0, page + ': ' + res.stderr)
                self.assertEqual(res.stderr, '', page)
                # Drop grotty's overstrike (bold and underline) to read the text.
                text = re.sub('.\x08', '', run([groff, '-man', '-Tutf8', path], env=env).stdout)
                for heading in ('NAME', 'SYNOPSIS', 'DESCRIPTION', 'SEE ALSO'):
                    self.assertIn(heading, text, '%s lacks %s' % (page, heading))

    def test_man_pages_name_every_flag_of_the_usage(self):
        man8 = os.path.join(self.dirs['mandir'], 'man8')
        cases = [([self.installed_binary('ballast-authd'), '--help'], 'ballast-authd.8'),
                 ([self.installed_binary('ballast-resolver'), '--help'], 'ballast-resolver.8'),
                 ([self.installed_binary('ballast'), '--help'], 'ballast.8'),
                 ([self.installed_binary('ballast'), 'replay', '--help'], 'ballast.8')]
        for args, page in cases:
            res = run(args)
            self.assertEqual(res.returncode, 0, res.stderr)
            flags = help_flags(res.stdout)
            self.assertTrue(flags, args)
            missing = flags - man_flags(self.staged(os.path.join(man8, page)))
            self.assertEqual(missing, set(), '%s does not document %s' % (page, sorted(missing)))

    # --- example configs -------------------------------------------------------------------

    def staged_config(self, name, workdir):
        """An installed example with its absolute paths moved into DESTDIR and workdir, so
        --check can load it without /etc/ballast, /run/ballast or /var/lib/ballast."""
        with open(os.path.join(self.examples_dir(), name), encoding='utf-8') as f:
            text = f.read()
        text = text.replace(os.path.join(self.dirs['datadir'], 'ballast') + '/',
                            self.staged(os.path.join(self.dirs['datadir'], 'ballast')) + '/')
        text = text.replace(os.path.join(self.dirs['sysconfdir'], 'ballast', 'zones') + '/',
                            self.examples_dir() + '/')
        text = text.replace('/run/ballast/', workdir + '/').replace('/var/lib/ballast/',
                                                                    workdir + '/')
        path = os.path.join(workdir, name)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
        return path

    def test_installed_examples_name_the_installed_root_hints(self):
        hints = os.path.join(self.dirs['datadir'], 'ballast', 'root.hints')
        for name in ('resolver.yaml', 'resolver-container.yaml'):
            with open(os.path.join(self.examples_dir(), name), encoding='utf-8') as f:
                self.assertIn('root-hints: %s\n' % hints, f.read(), name)

    def test_example_configs_pass_check(self):
        workdir = tempfile.mkdtemp(prefix='ballast-check-', dir=self.destdir)
        for name, daemon in [('resolver.yaml', 'ballast-resolver'),
                             ('resolver-container.yaml', 'ballast-resolver'),
                             ('authd.yaml', 'ballast-authd')]:
            config = self.staged_config(name, workdir)
            res = run([self.installed_binary(daemon), '--check', '-c', config], cwd=workdir)
            self.assertEqual(res.returncode, 0, '%s: %s' % (name, res.stdout + res.stderr))
            self.assertTrue(res.stdout.startswith('ok: '), res.stdout)
        res = run([self.installed_binary('ballast'), 'check', '-c',
                   os.path.join(workdir, 'authd.yaml')])
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn('1 zones', res.stdout)


if __name__ == '__main__':
    unittest.main(verbosity=2)
