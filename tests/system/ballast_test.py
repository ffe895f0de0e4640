# Shared helpers for the system tests: start ballast-authd (or another daemon) on a loopback
# address and a free port, wait for readiness, stop it by PID; send DNS queries over UDP and TCP
# as raw wire (so malformed input can be sent too) and turn sections into comparable sets.
"""Helpers shared by tests/system/test_*.py (python3 stdlib + dnspython)."""

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.path.abspath(os.environ.get('BALLAST_BUILD_DIR', os.path.join(ROOT, 'build')))
AUTHD = os.path.join(BUILD_DIR, 'authd', 'ballast-authd')
TOOL = os.path.join(BUILD_DIR, 'tools', 'ballast')
ZONES_DIR = os.path.join(ROOT, 'zones')

# (apex, file name in zones/) of the three example zones.
STANDARD_ZONES = [
    ('example.test', 'example.test.zone'),
    ('other.test', 'other.test.zone'),
    ('deep.example.test', 'deep.example.test.zone'),
]

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
QUERY_TIMEOUT = 3.0
EDNS_PAYLOAD = 1232  # the payload Ballast advertises (limits.h LIMIT_DEFAULT_EDNS_UDP_SIZE)


def require_binaries(*paths):
    """Fail (not skip) when a binary is missing: meson builds them before running tests."""
    for path in paths or (AUTHD, TOOL):
        if not os.access(path, os.X_OK):
            raise AssertionError('%s not built (BALLAST_BUILD_DIR=%s)' % (path, BUILD_DIR))


def make_tmpdir(prefix='ballast-test-'):
    return tempfile.mkdtemp(prefix=prefix)


def remove_tmpdir(path):
    if os.environ.get('BALLAST_KEEP_TMP'):
        print('keeping', path)
        return
    shutil.rmtree(path, ignore_errors=True)


def free_port(addr):
    """A port free for both UDP and TCP on addr (racy by nature; callers retry on clash)."""
    for _ in range(100):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((addr, 0))
            port = udp.getsockname()[1]
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((addr, port))
            return port
        except OSError:
            continue
        finally:
            udp.close()
            tcp.close()
    raise AssertionError('no free port on %s' % addr)


class Process:
    """A daemon started by a test. stderr and stdout are collected line by line in a thread so
    the test can wait for a log event; stop() sends a signal to this PID only."""

    def __init__(self, argv, cwd=None, env=None):
        self.argv = list(argv)
        self._lines = []
        self._cond = threading.Condition()
        self._open_streams = 2
        self.proc = subprocess.Popen(self.argv, cwd=cwd or ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self._readers = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                         for stream in (self.proc.stdout, self.proc.stderr)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream):
        for raw in iter(stream.readline, b''):
            with self._cond:
                self._lines.append(raw.decode('utf-8', 'replace').rstrip('\n'))
                self._cond.notify_all()
        with self._cond:
            self._open_streams -= 1
            self._cond.notify_all()

    def lines(self):
        with self._cond:
            return list(self._lines)

    def line_count(self):
        with self._cond:
            return len(self._lines)

    def log_text(self):
        return '\n'.join(self.lines())

    def alive(self):
        return self.proc.poll() is None

    def wait_for(self, needle, timeout=READY_TIMEOUT, since=0, all_of=()):
        """Wait for a log line (index >= since) containing needle and every string in all_of.
        Returns (index, line). Fails with the whole log on timeout or exit."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(since, len(self._lines)):
                    line = self._lines[i]
                    if needle in line and all(s in line for s in all_of):
                        return i, line
                since = max(since, len(self._lines))
                if self._open_streams == 0 and self.proc.poll() is not None:
                    raise AssertionError('%s exited (rc=%s) before logging %r; log:\n%s' % (
                        self.argv[0], self.proc.returncode, needle, '\n'.join(self._lines)))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError('no log line with %r within %.0fs; log:\n%s' % (
                        needle, timeout, '\n'.join(self._lines)))
                self._cond.wait(min(left, 0.2))

    def send_signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def _close_streams(self):
        """After exit: collect the last log lines, then close the pipes."""
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signal this PID and wait; returns the exit code (None if it had to be killed)."""
        rc = self.proc.poll()
        if rc is None:
            os.kill(self.pid, sig)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
                rc = None
        self._close_streams()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_streams()


def config_yaml(addr, port, zones, control=None, workers=2, log_level='info', pid_file=None,
                limits=None, listen=None, metrics=None):
    """Text of an authd YAML config. zones: list of (name, file). limits: dict key -> value."""
    out = ['server:', '  listen:']
    for item in (listen if listen is not None else ['%s@%d' % (addr, port)]):
        out.append('    - %s' % item)
    out.append('  workers: %d' % workers)
    out.append('  log-level: %s' % log_level)
    if control:
        out.append('  control: %s' % control)
    if pid_file:
        out.append('  pid-file: %s' % pid_file)
    if metrics:
        out.append('  metrics: "%s"' % metrics)
    if limits:
        out.append('limits:')
        for key, value in limits.items():
            out.append('  %s: %s' % (key, value))
    if zones:
        out.append('zones:')
        for name, path in zones:
            out.append('  - name: %s' % name)
            out.append('    file: %s' % path)
    else:
        out.append('zones: []')
    return '\n'.join(out) + '\n'


def write_file(path, text):
    with open(path, 'w') as f:
        f.write(text)


def copy_standard_zones(dest_dir):
    """Copy the example zones to dest_dir; returns [(name, absolute path)]."""
    zones = []
    for name, fname in STANDARD_ZONES:
        dest = os.path.join(dest_dir, fname)
        shutil.copyfile(os.path.join(ZONES_DIR, fname), dest)
        zones.append((name, dest))
    return zones


def standard_zone_paths():
    return [(name, os.path.join(ZONES_DIR, fname)) for name, fname in STANDARD_ZONES]


class Authd(Process):
    """ballast-authd started and ready (event=ready seen)."""

    def __init__(self, argv, addr, port, control=None, config=None):
        super().__init__(argv)
        self.addr = addr
        self.port = port
        self.control = control
        self.config = config

    def query(self, qname, rdtype, tcp=False, **kw):
        return query(self.addr, self.port, qname, rdtype, tcp=tcp, **kw)

    def ctl(self, *args, timeout=10):
        return run_tool('-s', self.control, *args, timeout=timeout)


def _start_ready(make_argv, addr, attempts=3, **authd_kw):
    """Start with a fresh port; retry on a port clash (the daemon exits before ready)."""
    last = None
    for _ in range(attempts):
        port = free_port(addr)
        argv, extra = make_argv(port)
        d = Authd(argv, addr, port, **dict(authd_kw, **extra))
        try:
            d.wait_for('event=ready')
            return d
        except AssertionError as e:
            last = e
            d.kill()
            if 'in use' not in d.log_text().lower():
                raise
    raise last


def start_authd_config(tmpdir, addr, zones, control=True, **cfg_kw):
    """Write tmpdir/authd.yaml for zones and start ballast-authd -c on it."""
    require_binaries(AUTHD)
    control_path = os.path.join(tmpdir, 'control.sock') if control else None
    config_path = os.path.join(tmpdir, 'authd.yaml')

    def make_argv(port):
        write_file(config_path, config_yaml(addr, port, zones, control=control_path, **cfg_kw))
        return [AUTHD, '-c', config_path], {}

    return _start_ready(make_argv, addr, control=control_path, config=config_path)


def start_authd_flags(addr, zones, extra=()):
    """Start ballast-authd with --listen/--zone only (no config file)."""
    require_binaries(AUTHD)

    def make_argv(port):
        argv = [AUTHD, '--listen', '%s@%d' % (addr, port)]
        for name, path in zones:
            argv += ['--zone', '%s:%s' % (name, path)]
        return argv + list(extra), {}

    return _start_ready(make_argv, addr)


def run_tool(*args, timeout=10):
    """Run the ballast tool; returns CompletedProcess with text stdout/stderr."""
    return subprocess.run([TOOL] + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def run_authd(*args, timeout=30):
    return subprocess.run([AUTHD] + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def parse_kv(text):
    """'name=value' lines into a dict (values as text)."""
    out = {}
    for line in text.splitlines():
        if '=' in line:
            key, _, value = line.partition('=')
            out[key.strip()] = value.strip()
    return out


# ---- DNS on the wire ---------------------------------------------------------------------

def make_query(qname, rdtype, edns=True, payload=4096, version=0, dnssec_ok=False, qid=None,
               rdclass='IN'):
    """A query message; with edns the client advertises `payload` (default 4096)."""
    q = dns.message.make_query(qname, rdtype, rdclass=rdclass, use_edns=False)
    if edns:
        # make_query(use_edns=1) would send version 0; use_edns() takes the version as given.
        q.use_edns(version, ednsflags=dns.flags.DO if dnssec_ok else 0, payload=payload)
    if qid is not None:
        q.id = qid
    return q


def udp_exchange(addr, port, wire, timeout=QUERY_TIMEOUT, expect_id=None):
    """Send one datagram; return the first reply (with matching id if given) or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((addr, port))
        s.send(wire)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            s.settimeout(left)
            try:
                data = s.recv(65535)
            except socket.timeout:
                return None
            if expect_id is None or (len(data) >= 2 and struct.unpack('!H', data[:2])[0]
                                     == expect_id):
                return data


def _recv_exact(s, n):
    buf = b''
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError('connection closed after %d of %d bytes' % (len(buf), n))
        buf += chunk
    return buf


def tcp_exchange(addr, port, wires, timeout=QUERY_TIMEOUT, replies=None):
    """Send the messages (length-prefixed) in ONE send call and read `replies` answers
    (default: one per message). Returns the list of reply wires."""
    if isinstance(wires, (bytes, bytearray)):
        wires = [wires]
    n = len(wires) if replies is None else replies
    with socket.create_connection((addr, port), timeout=timeout) as s:
        s.sendall(b''.join(struct.pack('!H', len(w)) + w for w in wires))
        out = []
        for _ in range(n):
            (length,) = struct.unpack('!H', _recv_exact(s, 2))
            out.append(_recv_exact(s, length))
        return out


def parse(wire):
    """Parse a response; keep the wire on the message and check that no section repeats an RR
    (RFC 2181 §5: an RRset holds no duplicate records)."""
    msg = dns.message.from_wire(wire)
    msg.wire = wire
    per_rr = dns.message.from_wire(wire, one_rr_per_rrset=True)
    for name, section in (('answer', per_rr.answer), ('authority', per_rr.authority),
                          ('additional', per_rr.additional)):
        rrs = [r for rrset in section for r in rr_tuples([rrset])]
        if len(rrs) != len(set(rrs)):
            raise AssertionError('duplicate records in %s section:\n%s' % (name, msg))
    return msg


def query(addr, port, qname, rdtype, tcp=False, timeout=QUERY_TIMEOUT, **kw):
    """Send a query over UDP or TCP; return the parsed response (.wire holds the bytes).
    Fails when there is no answer or when it does not answer this query (RFC 1035 §7.3)."""
    q = make_query(qname, rdtype, **kw)
    wire = q.to_wire()
    if tcp:
        reply = tcp_exchange(addr, port, wire, timeout=timeout)[0]
    else:
        reply = udp_exchange(addr, port, wire, timeout=timeout, expect_id=q.id)
        if reply is None:
            raise AssertionError('no UDP answer from %s@%d for %s %s within %.0fs' % (
                addr, port, qname, rdtype, timeout))
    r = parse(reply)
    if r.id != q.id or not (r.flags & dns.flags.QR):
        raise AssertionError('reply is not a response to query id %d:\n%s' % (q.id, r))
    return r


def transport_name(tcp):
    return 'tcp' if tcp else 'udp'


def rdata_text(rdtype, rd):
    """RDATA as text, names lowercased (DNS names compare without case, RFC 4343) but character
    strings kept as they are."""
    text = rd.to_text()
    if rdtype in (dns.rdatatype.TXT, dns.rdatatype.SPF, dns.rdatatype.HINFO):
        return text
    return text.lower()


def rr_tuples(section):
    """Section -> list of (owner lowercase, ttl, type, rdata text)."""
    out = []
    for rrset in section:
        owner = rrset.name.to_text().lower()
        for rd in rrset:
            out.append((owner, rrset.ttl, dns.rdatatype.to_text(rrset.rdtype),
                        rdata_text(rrset.rdtype, rd)))
    return out


def rrs(section):
    return set(rr_tuples(section))


def rr(owner, ttl, rdtype, rdata):
    """Expected record; owner is made absolute and lowercase."""
    if not owner.endswith('.'):
        owner += '.'
    return (owner.lower(), ttl, rdtype, rdata)


def header(wire):
    """(id, flags, qdcount, ancount, nscount, arcount) of a message."""
    return struct.unpack('!6H', wire[:12])


def wire_name(name):
    out = b''
    for label in name.strip('.').split('.'):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b'\x00'


def raw_query(qid, qname, qtype=1, flags=0x0100, qdcount=1, ancount=0, nscount=0, arcount=0,
              questions=None, tail=b''):
    """Build a query byte by byte (no validation), for malformed input."""
    hdr = struct.pack('!6H', qid, flags, qdcount, ancount, nscount, arcount)
    if questions is None:
        questions = [wire_name(qname) + struct.pack('!HH', qtype, 1)]
    return hdr + b''.join(questions) + tail


def rcode_of(wire):
    return header(wire)[1] & 0x000F


def opcode_of(wire):
    return (header(wire)[1] >> 11) & 0x0F


def is_response(wire):
    return bool(header(wire)[1] & 0x8000)


def absolute(name):
    """Name text made absolute, case kept ('.' stays '.')."""
    return name if name.endswith('.') else name + '.'


NSD = '/usr/sbin/nsd'
NSD_CHECKCONF = '/usr/sbin/nsd-checkconf'


def nsd_config(tmpdir, addr, port, zones):
    """An NSD 4.6 config that keeps every file in tmpdir, runs in the foreground as the current
    user, and answers like Ballast does by design: minimal responses (no optional authority or
    additional data), additional data only from the zone of the answer, no rate limiting."""
    out = ['server:',
           '    ip-address: %s@%d' % (addr, port),
           '    do-ip6: no',
           '    server-count: 1',
           '    zonesdir: "%s"' % tmpdir,
           '    username: ""',
           '    chroot: ""',
           '    database: ""',
           '    zonelistfile: "%s/zone.list"' % tmpdir,
           '    xfrdfile: "%s/xfrd.state"' % tmpdir,
           '    xfrdir: "%s"' % tmpdir,
           '    pidfile: "%s/nsd.pid"' % tmpdir,
           '    logfile: "%s/nsd.log"' % tmpdir,
           '    hide-version: yes',
           '    hide-identity: yes',
           '    minimal-responses: yes',
           '    confine-to-zone: yes',
           '    refuse-any: no',
           '    rrl-ratelimit: 0',
           '    rrl-whitelist-ratelimit: 0',
           '    verbosity: 1',
           'remote-control:',
           '    control-enable: no']
    for name, path in zones:
        out += ['zone:', '    name: %s' % name, '    zonefile: %s' % path]
    return '\n'.join(out) + '\n'


class Nsd(Process):
    def __init__(self, argv, addr, port, tmpdir):
        super().__init__(argv)
        self.addr = addr
        self.port = port
        self.tmpdir = tmpdir

    def query(self, qname, rdtype, tcp=False, **kw):
        return query(self.addr, self.port, qname, rdtype, tcp=tcp, **kw)

    def nsd_log(self):
        try:
            with open(os.path.join(self.tmpdir, 'nsd.log')) as f:
                return f.read()
        except OSError:
            return ''

    def wait_ready(self, apex, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError('nsd exited (rc=%s):\n%s\n%s' % (
                    self.proc.returncode, self.log_text(), self.nsd_log()))
            try:
                if self.query(apex, 'SOA', timeout=0.5).rcode() == 0:
                    return
            except (AssertionError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError('nsd not answering within %.0fs:\n%s' % (timeout, self.nsd_log()))


def start_nsd(tmpdir, addr, zones):
    """Start NSD in the foreground on a free port; wait until it answers for the first zone."""
    conf = os.path.join(tmpdir, 'nsd.conf')
    port = free_port(addr)
    write_file(conf, nsd_config(tmpdir, addr, port, zones))
    check = subprocess.run([NSD_CHECKCONF, conf], capture_output=True, text=True)
    if check.returncode != 0:
        raise AssertionError('nsd-checkconf rejects %s: %s%s' % (conf, check.stdout, check.stderr))
    n = Nsd([NSD, '-d', '-c', conf], addr, port, tmpdir)
    n.wait_ready(zones[0][0])
    return n


def main():
    unittest.main(verbosity=2)
