# The loopback DNS hierarchy of DESIGN.md ("Test topology convention") for the resolver's system
# tests, differential test and benchmark: root, TLD and leaf zones on 127.0.0.101-108, a
# root-hints file, the lame/silent/TCP-only servers, and an Unbound instance to compare against.
"""Loopback test hierarchy for recursive resolvers.

    with Hierarchy(tmpdir, port=53) as h:      # starts every server, waits until each answers
        h.root_hints                            # path of the generated root-hints file
        h.port, h.addresses                     # upstream port, role -> address
        with unbound_resolver(h, '127.0.0.100') as u:
            u.query('www.example.test', 'A')

CLI (benchmarks, manual use):  /usr/bin/python3 tests/system/hierarchy.py --port 53 --dir /tmp/x

Layout (the default net is 127.0.0; another /24 of 127/8 can be chosen with net=, or the
BALLAST_HIERARCHY_NET environment variable, so that two runs do not clash):

    .1xx  role      zones                       server
    101   root      .                           ballast-authd
    102   tld       test.                       ballast-authd
    103   example   example.test.               ballast-authd
    104   other     other.test., oob.test.      ballast-authd
    105   sub       sub.example.test.           ballast-authd
    106   lame      decoy.test. (not lame.test) ballast-authd, REFUSED for lame.test
    107   silent    -                           python: drops every UDP/TCP message
    108   tcponly   tcponly.test.               python: UDP -> TC=1, TCP -> answer
    100   resolver  -                           (the resolver under test listens here)

Every server listens on the same port (default 53): a resolver learns name server addresses from
NS/A records, which carry no port. Unbound always sends to port 53 for addresses learnt from
referrals and hints (UNBOUND_DNS_PORT in iterator/iter_delegpt.c), so the Unbound comparison needs
port 53; ballast-resolver has an upstream-port option and can use any port.
"""

import argparse
import contextlib
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdataclass  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.rrset  # noqa: E402
import dns.zone  # noqa: E402

import ballast_test as bt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ZONE_DIR = os.path.join(HERE, 'hierarchy')
DEFAULT_PORT = 53
DEFAULT_NET = '127.0.0'
UNBOUND = '/usr/sbin/unbound'
UNBOUND_CHECKCONF = '/usr/sbin/unbound-checkconf'

# role -> last octet of the address.
HOSTS = {
    'resolver': 100,
    'root': 101,
    'tld': 102,
    'example': 103,
    'other': 104,
    'sub': 105,
    'lame': 106,
    'silent': 107,
    'tcponly': 108,
}

# ballast-authd instances: role -> [(zone, file in hierarchy/)].
AUTHD_ZONES = {
    'root': [('.', 'root.zone')],
    'tld': [('test.', 'test.zone')],
    'example': [('example.test.', 'example.test.zone')],
    'other': [('other.test.', 'other.test.zone'), ('oob.test.', 'oob.test.zone')],
    'sub': [('sub.example.test.', 'sub.example.test.zone')],
    'lame': [('decoy.test.', 'decoy.test.zone')],
}
TCPONLY_ZONE = ('tcponly.test.', 'tcponly.test.zone')
ROOT_NS = 'a.root-servers.test.'

# What a correct recursive resolver answers on this hierarchy: (qname, qtype, rcode, answer),
# answer as a set of (owner, type, rdata) with no TTL. None for the answer: not compared
# (SERVFAIL cases). Shared by the Unbound test, ballast-resolver's tests and the differential
# test; qnames are lowercase and absolute.
CASES = [
    ('www.example.test.', 'A', 'NOERROR', {('www.example.test.', 'A', '192.0.2.10')}),
    ('www.example.test.', 'AAAA', 'NOERROR', {('www.example.test.', 'AAAA', '2001:db8::10')}),
    ('example.test.', 'MX', 'NOERROR', {('example.test.', 'MX', '10 mail.example.test.')}),
    ('example.test.', 'TXT', 'NOERROR',
     {('example.test.', 'TXT', '"v=ballast hierarchy example.test"')}),
    ('txt.example.test.', 'TXT', 'NOERROR',
     {('txt.example.test.', 'TXT', '"hello from example.test"')}),
    ('foo.wild.example.test.', 'A', 'NOERROR', {('foo.wild.example.test.', 'A', '192.0.2.50')}),
    ('to-other.example.test.', 'A', 'NOERROR',
     {('to-other.example.test.', 'CNAME', 'www.other.test.'),
      ('www.other.test.', 'A', '192.0.2.202')}),
    ('chain.example.test.', 'A', 'NOERROR',
     {('chain.example.test.', 'CNAME', 'chain.other.test.'),
      ('chain.other.test.', 'CNAME', 'www.sub.example.test.'),
      ('www.sub.example.test.', 'A', '192.0.2.110')}),
    ('to-sub.example.test.', 'A', 'NOERROR',
     {('to-sub.example.test.', 'CNAME', 'www.sub.example.test.'),
      ('www.sub.example.test.', 'A', '192.0.2.110')}),
    ('www.sub.example.test.', 'A', 'NOERROR', {('www.sub.example.test.', 'A', '192.0.2.110')}),
    ('www.sub.example.test.', 'AAAA', 'NOERROR',
     {('www.sub.example.test.', 'AAAA', '2001:db8::110')}),
    ('host.sub.example.test.', 'TXT', 'NOERROR',
     {('host.sub.example.test.', 'TXT', '"in sub.example.test"')}),
    ('www.other.test.', 'A', 'NOERROR', {('www.other.test.', 'A', '192.0.2.202')}),
    ('www.oob.test.', 'A', 'NOERROR', {('www.oob.test.', 'A', '192.0.2.150')}),
    ('www.tcponly.test.', 'A', 'NOERROR', {('www.tcponly.test.', 'A', '192.0.2.180')}),
    ('txt.tcponly.test.', 'TXT', 'NOERROR',
     {('txt.tcponly.test.', 'TXT', '"answered over tcp"')}),
    ('nope.example.test.', 'A', 'NXDOMAIN', set()),
    ('nope.sub.example.test.', 'A', 'NXDOMAIN', set()),
    ('nope.test.', 'A', 'NXDOMAIN', set()),
    ('www.example.test.', 'MX', 'NOERROR', set()),  # NODATA
    ('www.lame.test.', 'A', 'SERVFAIL', None),
    ('www.silent.test.', 'A', 'SERVFAIL', None),
]


def net_from_env():
    return os.environ.get('BALLAST_HIERARCHY_NET', DEFAULT_NET)


def addresses_for(net=DEFAULT_NET):
    return {role: '%s.%d' % (net, host) for role, host in HOSTS.items()}


def _rewrite_addresses(text, net):
    """Zone text with 127.0.0.1xx (the checked-in addresses) moved to net.1xx."""
    if net == DEFAULT_NET:
        return text
    return re.sub(r'(?<![\d.])127\.0\.0\.(1\d\d)(?![\d.])', lambda m: '%s.%s' % (net, m.group(1)),
                  text)


def root_hints_text(root_addr):
    """A hints file in the format of the real named.root (the root server's name and address)."""
    return ('; Root hints of the loopback test hierarchy (tests/system/hierarchy.py).\n'
            '.                        3600000      NS    %s\n'
            '%-24s 3600000      A     %s\n') % (ROOT_NS.upper(), ROOT_NS.upper(), root_addr)


def check_free(addr, port):
    """Fail with a clear message when addr:port is taken (UDP or TCP)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
        except OSError as e:
            raise AssertionError('%s %s:%d is not free (%s); another hierarchy running? choose '
                                 'another net (BALLAST_HIERARCHY_NET) or port' % (
                                     'udp' if kind == socket.SOCK_DGRAM else 'tcp', addr, port, e))
        finally:
            s.close()


class Hierarchy:
    """Every server of the hierarchy, started by start() (or `with`), stopped by stop(), which
    signals only the PIDs started here."""

    def __init__(self, tmpdir, port=DEFAULT_PORT, net=None, authd=None, workers=1,
                 log_level='info'):
        self.tmpdir = os.path.abspath(tmpdir)
        self.port = port
        self.net = net or net_from_env()
        self.authd = authd or bt.AUTHD
        self.workers = workers
        self.log_level = log_level
        self.addresses = addresses_for(self.net)
        self.root_hints = os.path.join(self.tmpdir, 'root.hints')
        self.zone_files = {}   # zone -> path of the file served
        self.zone_server = {}  # zone -> address of its server
        self.processes = {}    # role -> bt.Process
        self._zone_dir = os.path.join(self.tmpdir, 'zones')

    # -- setup ---------------------------------------------------------------------------------

    def _write_zone(self, zone, fname):
        with open(os.path.join(ZONE_DIR, fname)) as f:
            text = _rewrite_addresses(f.read(), self.net)
        path = os.path.join(self._zone_dir, fname)
        bt.write_file(path, text)
        self.zone_files[zone] = path
        return path

    def _write_files(self):
        os.makedirs(self._zone_dir, exist_ok=True)
        for role, zones in AUTHD_ZONES.items():
            for zone, fname in zones:
                self._write_zone(zone, fname)
                self.zone_server[zone] = self.addresses[role]
        self._write_zone(*TCPONLY_ZONE)
        self.zone_server[TCPONLY_ZONE[0]] = self.addresses['tcponly']
        bt.write_file(self.root_hints, root_hints_text(self.addresses['root']))

    def _start_authd(self, role):
        addr = self.addresses[role]
        rundir = os.path.join(self.tmpdir, role)
        os.makedirs(rundir, exist_ok=True)
        conf = os.path.join(rundir, 'authd.yaml')
        zones = [(zone, self.zone_files[zone]) for zone, _ in AUTHD_ZONES[role]]
        bt.write_file(conf, bt.config_yaml(addr, self.port, zones, workers=self.workers,
                                           log_level=self.log_level))
        proc = bt.Authd([self.authd, '-c', conf], addr, self.port, config=conf)
        self.processes[role] = proc
        return proc

    def _start_python(self, role, *args):
        argv = [sys.executable, os.path.abspath(__file__), '--serve', role,
                '--listen', '%s@%d' % (self.addresses[role], self.port)] + list(args)
        proc = bt.Process(argv)
        self.processes[role] = proc
        return proc

    def start(self):
        bt.require_binaries(self.authd)
        for role in HOSTS:
            if role != 'resolver':
                check_free(self.addresses[role], self.port)
        self._write_files()
        try:
            for role in AUTHD_ZONES:
                self._start_authd(role)
            self._start_python('silent')
            self._start_python('tcponly', '--zone', TCPONLY_ZONE[0],
                               self.zone_files[TCPONLY_ZONE[0]])
            for proc in self.processes.values():
                proc.wait_for('event=ready')
            self._check_answers()
        except BaseException:
            self.stop()
            raise
        return self

    def _check_answers(self):
        """Each authority answers its apex SOA with AA (over TCP for the TCP-only one)."""
        for zone, addr in self.zone_server.items():
            tcp = zone == TCPONLY_ZONE[0]
            r = bt.query(addr, self.port, zone, 'SOA', tcp=tcp)
            if r.rcode() != dns.rcode.NOERROR or not (r.flags & dns.flags.AA) or not r.answer:
                raise AssertionError('%s@%d does not serve %s:\n%s' % (addr, self.port, zone, r))

    def stop(self):
        for role, proc in list(self.processes.items()):
            proc.stop()
            del self.processes[role]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def logs(self):
        """Logs of every server (for failure messages)."""
        return '\n'.join('--- %s\n%s' % (role, p.log_text()) for role, p in self.processes.items())


# ---- Unbound on the hierarchy ----------------------------------------------------------------

def unbound_config(h, address, port, workdir, verbosity=1, max_rtt_ms=3000, extra=()):
    """Unbound's defaults except what a private loopback hierarchy needs (PEERS.md), plus:
    discard-timeout 0, because Debian's 1.17.1 (with the 2024 backport) otherwise drops the
    SERVFAIL for a silent server, which is older than 1900 ms when it is ready; and
    infra-cache-max-rtt (max_rtt_ms, None for the default of 120 s), after which a timing out
    server is given up: 3000 gives SERVFAIL for silent.test in about 5 s instead of about 30 s."""
    lines = [
        'server:',
        '    interface: %s' % address,
        '    port: %d' % port,
        '    do-ip4: yes',
        '    do-ip6: no',
        '    do-udp: yes',
        '    do-tcp: yes',
        '    num-threads: 1',
        '    username: ""',
        '    chroot: ""',
        '    directory: "%s"' % workdir,
        '    pidfile: "%s"' % os.path.join(workdir, 'unbound.pid'),
        '    logfile: ""',
        '    use-syslog: no',
        '    verbosity: %d' % verbosity,
        '    root-hints: "%s"' % h.root_hints,
        '    do-not-query-localhost: no',
        '    module-config: "iterator"',
        '    qname-minimisation: yes',
        '    local-zone: "test." nodefault',
        '    access-control: 127.0.0.0/8 allow',
        '    discard-timeout: 0',
    ]
    if max_rtt_ms:
        lines.append('    infra-cache-max-rtt: %d' % max_rtt_ms)
    lines += ['    %s' % line for line in extra] + [
        'remote-control:',
        '    control-enable: no',
    ]
    return '\n'.join(lines) + '\n'


class Resolver:
    """A running recursive resolver: where to query it and its process."""

    def __init__(self, addr, port, process):
        self.addr = addr
        self.port = port
        self.process = process

    def query(self, qname, rdtype, tcp=False, timeout=bt.QUERY_TIMEOUT, **kw):
        return bt.query(self.addr, self.port, qname, rdtype, tcp=tcp, timeout=timeout, **kw)


@contextlib.contextmanager
def unbound_resolver(h, address=None, port=None, verbosity=1, max_rtt_ms=3000, extra=()):
    """Unbound iterating from h's root hints, listening on address:port (default: the
    hierarchy's resolver address and port). extra: more `server:` lines. Yields a Resolver;
    stops the Unbound it started (by PID)."""
    if h.port != 53:
        raise AssertionError('Unbound sends to port 53 for every address learnt from hints or '
                             'referrals; start the hierarchy on port 53 (it is on %d)' % h.port)
    address = address or h.addresses['resolver']
    port = port or h.port
    workdir = os.path.join(h.tmpdir, 'unbound-%s-%d' % (address, port))
    os.makedirs(workdir, exist_ok=True)
    conf = os.path.join(workdir, 'unbound.conf')
    bt.write_file(conf, unbound_config(h, address, port, workdir, verbosity, max_rtt_ms,
                                                   extra))
    check = subprocess.run([UNBOUND_CHECKCONF, conf], capture_output=True, text=True)
    if check.returncode != 0:
        raise AssertionError('unbound-checkconf rejects %s: %s%s' % (conf, check.stdout,
                                                                       check.stderr))
    check_free(address, port)
    proc = bt.Process([UNBOUND, '-d', '-c', conf])
    try:
        resolver = Resolver(address, port, proc)
        _wait_answering(resolver, proc)
        yield resolver
    finally:
        proc.stop()


def _wait_answering(resolver, proc, timeout=bt.READY_TIMEOUT):
    """Ready when it answers localhost (a default local zone: no upstream query needed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise AssertionError('%s exited (rc=%s):\n%s' % (proc.argv[0], proc.proc.returncode,
                                                              proc.log_text()))
        try:
            resolver.query('localhost.', 'A', timeout=0.5)
            return
        except (AssertionError, OSError):
            time.sleep(0.1)
    raise AssertionError('%s not answering on %s@%d:\n%s' % (proc.argv[0], resolver.addr,
                                                             resolver.port, proc.log_text()))


def answer_set(msg):
    """Answer section as {(owner, type, rdata)} (TTLs ignored, names lowercased)."""
    return {(owner, rdtype, rdata) for owner, _ttl, rdtype, rdata in bt.rr_tuples(msg.answer)}


# ---- the Python servers: silent and TCP-only --------------------------------------------------

def _ready():
    print('event=ready', flush=True)


def _bind(addr, port):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((addr, port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((addr, port))
    tcp.listen(64)
    return udp, tcp


def serve_silent(addr, port):
    """Receive every UDP datagram and TCP byte and answer nothing (a server that drops queries,
    unlike a closed port, which fails at once with ICMP unreachable or RST)."""
    udp, tcp = _bind(addr, port)
    sel = selectors.DefaultSelector()
    sel.register(udp, selectors.EVENT_READ, 'udp')
    sel.register(tcp, selectors.EVENT_READ, 'listen')
    _ready()
    while True:
        for key, _ in sel.select():
            if key.data == 'udp':
                udp.recvfrom(65535)
            elif key.data == 'listen':
                conn, _ = tcp.accept()
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, 'conn')
            else:
                try:
                    data = key.fileobj.recv(65535)
                except OSError:
                    data = b''
                if not data:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()


class ZoneAnswerer:
    """Authoritative answers from one zone file (enough for the TCP-only test zone: exact
    matches, CNAME, NODATA and NXDOMAIN with the SOA, RFC 1034 §4.3.2 and RFC 2308 §3)."""

    def __init__(self, origin, path):
        self.origin = dns.name.from_text(origin)
        self.zone = dns.zone.from_file(path, origin=self.origin, relativize=False)
        soa = self.zone.get_rdataset(self.origin, dns.rdatatype.SOA)
        self.soa = dns.rrset.from_rdata_list(self.origin, min(soa.ttl, soa[0].minimum),
                                             list(soa))

    def _exists(self, qname):
        """The name or an empty non-terminal above some name of the zone."""
        return any(name == qname or name.is_subdomain(qname) for name in self.zone.nodes)

    def answer(self, query):
        r = dns.message.make_response(query)
        r.flags &= ~dns.flags.RA
        if len(query.question) != 1:
            r.set_rcode(dns.rcode.FORMERR)
            return r
        q = query.question[0]
        if q.rdclass != dns.rdataclass.IN or not q.name.is_subdomain(self.origin):
            r.set_rcode(dns.rcode.REFUSED)
            return r
        r.flags |= dns.flags.AA
        node = self.zone.get_node(q.name)
        if node is not None:
            rds = node.get_rdataset(dns.rdataclass.IN, q.rdtype)
            if rds is None and q.rdtype != dns.rdatatype.CNAME:
                rds = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if rds is not None:
                r.answer.append(dns.rrset.from_rdata_list(q.name, rds.ttl, list(rds)))
                return r
            r.authority.append(self.soa)
            return r
        if not self._exists(q.name):
            r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(self.soa)
        return r


def _recv_exact(conn, n):
    buf = b''
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _tcp_client(conn, answerer):
    with conn:
        conn.settimeout(30)
        try:
            while True:
                head = _recv_exact(conn, 2)
                if head is None:
                    return
                wire = _recv_exact(conn, struct.unpack('!H', head)[0])
                if wire is None:
                    return
                try:
                    query = dns.message.from_wire(wire)
                except Exception:  # malformed: close, as a TCP server may (RFC 7766 §6.2.4)
                    return
                out = answerer.answer(query).to_wire(max_size=65535)
                conn.sendall(struct.pack('!H', len(out)) + out)
        except OSError:
            return


def serve_tcponly(addr, port, origin, path):
    """UDP: every query gets TC=1 with the question and no records (RFC 1035 §4.2.1, RFC 7766:
    the client retries over TCP). TCP: the real answer from the zone file."""
    answerer = ZoneAnswerer(origin, path)
    udp, tcp = _bind(addr, port)

    def accept_loop():
        while True:
            conn, _ = tcp.accept()
            threading.Thread(target=_tcp_client, args=(conn, answerer), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    _ready()
    while True:
        wire, peer = udp.recvfrom(65535)
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            continue
        r = dns.message.make_response(query)
        r.flags |= dns.flags.TC | dns.flags.AA
        r.flags &= ~dns.flags.RA
        udp.sendto(r.to_wire(), peer)


# ---- CLI ------------------------------------------------------------------------------------

def _parse_listen(text):
    addr, _, port = text.rpartition('@')
    return addr, int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(description='Run the loopback test DNS hierarchy until SIGINT '
                                 'or SIGTERM.')
    ap.add_argument('--port', type=int, default=DEFAULT_PORT,
                    help='port of every server (default 53; Unbound needs 53)')
    ap.add_argument('--dir', help='working directory (zone copies, root hints, configs)')
    ap.add_argument('--net', default=None, help='first three octets of the addresses '
                    '(default $BALLAST_HIERARCHY_NET or 127.0.0)')
    ap.add_argument('--authd', default=None, help='ballast-authd binary')
    ap.add_argument('--workers', type=int, default=1, help='workers per ballast-authd')
    ap.add_argument('--unbound', action='store_true',
                    help='also run Unbound on the resolver address (.100)')
    ap.add_argument('--serve', choices=['silent', 'tcponly'], help=argparse.SUPPRESS)
    ap.add_argument('--listen', help=argparse.SUPPRESS)
    ap.add_argument('--zone', nargs=2, metavar=('ORIGIN', 'FILE'), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.serve:
        addr, port = _parse_listen(args.listen)
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        if args.serve == 'silent':
            serve_silent(addr, port)
        else:
            serve_tcponly(addr, port, args.zone[0], args.zone[1])
        return 0

    tmpdir = args.dir or bt.make_tmpdir('ballast-hierarchy-')
    os.makedirs(tmpdir, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Hierarchy(tmpdir, port=args.port, net=args.net, authd=args.authd,
                   workers=args.workers) as h:
        with contextlib.ExitStack() as stack:
            if args.unbound:
                u = stack.enter_context(unbound_resolver(h))
                print('unbound=%s@%d' % (u.addr, u.port), flush=True)
            print('root_hints=%s' % h.root_hints)
            print('port=%d' % h.port)
            for role, addr in h.addresses.items():
                print('%s=%s' % (role, addr))
            print('event=ready', flush=True)
            while not stop.wait(1):
                pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
