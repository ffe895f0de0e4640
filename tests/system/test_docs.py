"""The configuration references are checked against the code: every key the config and scenario
readers accept (their key tables in C) and every command-line flag the programs print in
--help must be documented, so a new option cannot land undocumented (issue 8)."""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ballast_test as bt  # noqa: E402

ROOT = bt.ROOT
KEY_ARRAY = re.compile(r'static const char \*const (\w+)\[\] = \{(.*?)\};', re.S)
KEY_MACRO = re.compile(r'(?:RESOLVER_KEY|RRL_KEY|AUTHD_LIMIT|SCENARIO_KEY)\(\s*"([^"]+)"'
                       r'(?:,\s*"([^"]+)")?')
FLAG = re.compile(r'(?<![\w-])(--[a-z][a-z0-9-]+)')


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def keys_in(path, arrays=None):
    """Keys of the key tables (arrays named *keys*, or those listed) and key macros of a file."""
    text = read(path)
    keys = set()
    for name, body in KEY_ARRAY.findall(text):
        if (arrays is None and 'keys' in name) or (arrays and name in arrays):
            keys.update(re.findall(r'"([^"]+)"', body))
    for a, b in KEY_MACRO.findall(text):
        keys.add(b or a)
    return keys


def documented(docs):
    text = '\n'.join(read(d) for d in docs)
    return set(re.findall(r'`([a-z0-9][a-z0-9.-]*)`', text)) | set(
        re.findall(r'^\s*([a-z0-9-]+):', text, re.M))


class ConfigReferenceTest(unittest.TestCase):

    def assert_documented(self, keys, docs):
        missing = sorted(k for k in keys if k not in documented(docs))
        self.assertEqual([], missing, 'keys accepted by the code but not documented in %s'
                         % ', '.join(docs))

    def test_resolver_keys_are_documented(self):
        keys = keys_in('resolver/resolver_config.c')
        keys |= {k for k in keys_in('common/rrl.c')}
        self.assertIn('client-timeout', keys)  # the extraction itself works
        self.assertIn('snapshot-file', keys)
        self.assert_documented(keys, ['docs/resolver-configuration.md', 'docs/serve-stale.md',
                                      'docs/limits.md'])

    def test_authd_keys_are_documented(self):
        keys = keys_in('authd/authd_config.c') | keys_in('common/rrl.c')
        self.assertIn('max-zone-records', keys)
        self.assertIn('when-all-down', keys)
        self.assert_documented(keys, ['docs/configuration.md', 'docs/health.md',
                                      'docs/authd.md', 'docs/limits.md'])

    def test_scenario_keys_are_documented(self):
        keys = keys_in('tools/scenario.c')
        self.assertIn('never-empty', keys)
        self.assert_documented(keys, ['docs/scenarios.md'])

    def test_every_flag_is_documented(self):
        bt.require_binaries(bt.AUTHD, bt.TOOL)
        resolver = os.path.join(bt.BUILD_DIR, 'resolver', 'ballast-resolver')
        programs = {
            'ballast-authd': ([bt.AUTHD, '--help'], ['docs/authd.md', 'docs/configuration.md']),
            'ballast-resolver': ([resolver, '--help'], ['docs/resolver-configuration.md']),
            'ballast replay': ([bt.TOOL, 'replay', '--help'], ['docs/scenarios.md']),
            'ballast': ([bt.TOOL, '--help'], ['docs/authd.md', 'README.md']),
        }
        for name, (argv, docs) in programs.items():
            with self.subTest(program=name):
                out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
                flags = set(FLAG.findall(out.stdout + out.stderr)) - {'--help', '--version'}
                self.assertTrue(flags, 'no flags found in %s --help' % name)
                text = '\n'.join(read(d) for d in docs)
                missing = sorted(f for f in flags if f not in text)
                self.assertEqual([], missing, '%s flags not documented in %s' % (name, docs))


if __name__ == '__main__':
    unittest.main(verbosity=2)
