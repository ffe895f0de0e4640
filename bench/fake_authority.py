#!/usr/bin/python3
# bench/fake_authority.py: the failed authority of bench/stale.sh. Stands on the authority's
# address and port during an outage and counts the queries the resolvers send it.
#
# Modes:
#   silent  binds the UDP port, reads every datagram and drops it (a blackholed server)
#   refuse  binds the UDP port and answers REFUSED (RCODE 5, RFC 1035 section 4.1.1) to all
#   closed  binds nothing, so the kernel answers ICMP port unreachable; the datagrams are
#           counted with a raw socket (needs CAP_NET_RAW) that sees every UDP packet received
# In every mode a raw TCP socket (when allowed) counts SYNs to the port, since a resolver may
# retry over TCP. Prints `ready` once listening; on SIGTERM or SIGINT writes a JSON summary
# (packets, first/last arrival, per-second counts) to --stats and exits.
import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import time


def refused_reply(query):
    """Header of QUERY with QR=1, RCODE=REFUSED, the question kept and no other section."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000:  # a response: never answer one
        return None
    end = 12
    if qdcount == 1:
        # Walk the question name's labels (no compression in a question we accept).
        while end < len(query):
            n = query[end]
            if n == 0:
                end += 1
                break
            if n & 0xC0:
                return None
            end += 1 + n
        end += 4  # QTYPE, QCLASS
        if end > len(query):
            return None
    else:
        qdcount = 0
        end = 12
    # QR, the query's opcode and RD; RA=0; RCODE=5.
    rflags = 0x8000 | (flags & 0x7800) | (flags & 0x0100) | 5
    return struct.pack("!HHHHHH", qid, rflags, qdcount, 0, 0, 0) + query[12:end]


def raw_socket(proto):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    except OSError as e:
        print(f"fake_authority: no raw socket for protocol {proto}: {e}", file=sys.stderr)
        return None
    s.setblocking(False)
    return s


def raw_match(pkt, addr, port, tcp_syn):
    """True for an IPv4 packet to ADDR:PORT (a TCP SYN without ACK when TCP_SYN)."""
    if len(pkt) < 20:
        return False
    ihl = (pkt[0] & 0x0F) * 4
    if pkt[16:20] != addr or len(pkt) < ihl + 14:
        return False
    dport = struct.unpack("!H", pkt[ihl + 2 : ihl + 4])[0]
    if dport != port:
        return False
    if tcp_syn:
        flags = pkt[ihl + 13]
        return (flags & 0x02) != 0 and (flags & 0x10) == 0
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--addr", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=("silent", "refuse", "closed"), required=True)
    ap.add_argument("--stats", required=True, help="JSON summary written on exit")
    args = ap.parse_args()

    addr_bin = socket.inet_aton(args.addr)
    udp = None
    if args.mode != "closed":
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        udp.bind((args.addr, args.port))
        udp.setblocking(False)
    raw_udp = raw_socket(socket.IPPROTO_UDP) if args.mode == "closed" else None
    if args.mode == "closed" and raw_udp is None:
        print("fake_authority: closed mode cannot count without a raw socket", file=sys.stderr)
    raw_tcp = raw_socket(socket.IPPROTO_TCP)

    start = time.monotonic()
    start_epoch = time.time()
    counts = {"udp": 0, "tcp_syn": 0, "refused_sent": 0}
    per_second = []
    first = last = None
    stop = False

    def on_signal(_sig, _frm):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def seen(kind):
        nonlocal first, last
        now = time.monotonic() - start
        counts[kind] += 1
        if kind == "udp":
            if first is None:
                first = now
            last = now
            sec = int(now)
            while len(per_second) <= sec:
                per_second.append(0)
            per_second[sec] += 1

    poller = select.poll()
    socks = {}
    for s, kind in ((udp, "udp"), (raw_udp, "raw_udp"), (raw_tcp, "raw_tcp")):
        if s is not None:
            poller.register(s.fileno(), select.POLLIN)
            socks[s.fileno()] = (s, kind)
    print("ready", flush=True)

    while not stop:
        try:
            events = poller.poll(200)
        except InterruptedError:
            continue
        for fd, _ev in events:
            s, kind = socks[fd]
            for _ in range(256):
                try:
                    if kind == "udp":
                        data, peer = s.recvfrom(65535)
                    else:
                        data = s.recv(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if kind == "udp":
                    seen("udp")
                    if args.mode == "refuse":
                        reply = refused_reply(data)
                        if reply is not None:
                            try:
                                s.sendto(reply, peer)
                                counts["refused_sent"] += 1
                            except OSError:
                                pass
                elif kind == "raw_udp":
                    if raw_match(data, addr_bin, args.port, False):
                        seen("udp")
                elif raw_match(data, addr_bin, args.port, True):
                    seen("tcp_syn")

    duration = time.monotonic() - start
    summary = {
        "mode": args.mode,
        "start_epoch": start_epoch,
        "duration_s": round(duration, 3),
        "udp_queries": counts["udp"],
        "tcp_syns": counts["tcp_syn"],
        "refused_sent": counts["refused_sent"],
        "first_s": None if first is None else round(first, 3),
        "last_s": None if last is None else round(last, 3),
        "per_second": per_second,
        "counted_udp": args.mode != "closed" or raw_udp is not None,
        "counted_tcp": raw_tcp is not None,
    }
    tmp = args.stats + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f)
    os.replace(tmp, args.stats)


if __name__ == "__main__":
    main()
