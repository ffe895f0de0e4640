#!/usr/bin/python3
# bench/stale_client.py: the client and the report of bench/stale.sh (serve-stale benchmark).
#   load:   sends A queries for nNN.ZONE at a fixed rate, each from its own UDP socket with its own
#           random ID, and records per query the latency, RCODE, answer data and TTL (CSV) and a
#           JSON summary: success rate, latency percentiles, the first query of every name, and
#           with --until-new the time until every name answers the zone's new data.
#   report: reads the runs' JSON files under a results directory and writes the side-by-side
#           tables (summary.md, summary.csv).
import argparse
import collections
import csv
import glob
import json
import math
import os
import random
import resource
import select
import socket
import sys
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype


def percentile(values, p):
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(p / 100.0 * len(v)) - 1))
    return v[k]


def rnd(x, nd=1):
    return None if x is None else round(x, nd)


def name_of(zone, i):
    return f"n{i:02d}.{zone}"


def cmd_load(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = int(args.rate * args.timeout) + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))

    names = [name_of(args.zone, i) for i in range(args.names)]
    wires = []
    for n in names:
        q = dns.message.make_query(n, dns.rdatatype.A)
        q.flags |= dns.flags.RD
        wires.append(bytearray(q.to_wire()))

    total = int(args.rate * args.duration) if args.duration > 0 else args.names
    if args.count:
        total = args.count
    ep = select.epoll()
    pending = {}  # fd -> [sock, idx, name_idx, qid, t_send, deadline]
    order = collections.deque()  # (deadline, idx, fd) in send order: one timeout for all
    recs = []  # per query: [idx, name_idx, t_send, latency_s, rcode, nans, version, ttl]
    first_new = {}  # name_idx -> time (from start) of its first answer with new data
    first_new_at = None
    all_new_at = None

    t0 = time.monotonic()
    start_epoch = time.time()
    next_i = 0
    stopped_sending = False

    def finish(fd, rec_fields):
        ent = pending.pop(fd)
        sock = ent[0]
        try:
            ep.unregister(fd)
        except OSError:
            pass
        sock.close()
        recs[ent[1]][3:] = rec_fields

    while True:
        now = time.monotonic()
        # Send every query that is due (a late loop sends them at once; the real send time is
        # recorded, so latency stays accurate).
        while not stopped_sending and next_i < total and t0 + next_i / args.rate <= now:
            ni = next_i % args.names
            qid = random.getrandbits(16)
            w = wires[ni]
            w[0] = qid >> 8
            w[1] = qid & 0xFF
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            ts = time.monotonic()
            try:
                s.connect((args.server, args.port))
                s.send(w)
            except OSError as e:
                s.close()
                err = "SENDERR:" + e.__class__.__name__
                recs.append([next_i, ni, ts - t0, None, err, 0, "", None])
                next_i += 1
                continue
            fd = s.fileno()
            pending[fd] = [s, next_i, ni, qid, ts, ts + args.timeout]
            order.append((ts + args.timeout, next_i, fd))
            ep.register(fd, select.EPOLLIN)
            recs.append([next_i, ni, ts - t0, None, "PENDING", 0, "", None])
            next_i += 1
            now = time.monotonic()
        if next_i >= total:
            stopped_sending = True
        # Expire: queries time out in send order. A closed socket's fd number is reused, so an
        # entry of `order` counts only while the same query still holds that fd.
        while order:
            deadline, idx, fd = order[0]
            ent = pending.get(fd)
            if ent is None or ent[1] != idx:
                order.popleft()
                continue
            if deadline > now:
                break
            order.popleft()
            finish(fd, [None, "TIMEOUT", 0, "", None])
        if stopped_sending and not pending:
            break
        if args.until_new and all_new_at is not None:
            break
        # Wait for answers until the next send or the next deadline.
        wake = []
        if not stopped_sending:
            wake.append(t0 + next_i / args.rate)
        if order:
            wake.append(order[0][0])
        timeout = max(0.0, min(wake) - time.monotonic()) if wake else 0.05
        for fd, _ev in ep.poll(timeout):
            ent = pending.get(fd)
            if ent is None:
                continue
            try:
                data = ent[0].recv(65535)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                tr = time.monotonic()
                finish(fd, [tr - ent[4], "RECVERR:" + e.__class__.__name__, 0, "", None])
                continue
            tr = time.monotonic()
            try:
                m = dns.message.from_wire(data)
            except Exception:
                continue  # not an answer to this query: keep waiting for one
            if m.id != ent[3] or not m.question:
                continue
            if m.question[0].name.to_text().lower() != names[ent[2]].lower() + ".":
                continue
            rcode = dns.rcode.to_text(m.rcode())
            addrs = []
            ttl = None
            for rrset in m.answer:
                if rrset.rdtype == dns.rdatatype.A:
                    addrs.extend(r.address for r in rrset)
                    ttl = rrset.ttl
            version = ""
            if addrs:
                if all(a.startswith(args.new_prefix) for a in addrs):
                    version = "new"
                elif all(a.startswith(args.old_prefix) for a in addrs):
                    version = "old"
                else:
                    version = "other"
            finish(fd, [tr - ent[4], rcode, len(addrs), version, ttl])
            if version == "new" and ent[2] not in first_new:
                first_new[ent[2]] = tr - t0
                if first_new_at is None:
                    first_new_at = tr - t0
                if len(first_new) == args.names:
                    all_new_at = tr - t0
    end = time.monotonic()
    for fd in list(pending):  # --until-new stops with queries in flight: not counted
        ent = pending.pop(fd)
        ent[0].close()
        recs[ent[1]] = None
    recs = [r for r in recs if r is not None]

    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["idx", "name", "send_s", "latency_ms", "rcode", "answers", "data", "ttl"])
            for r in recs:
                w.writerow([r[0], name_of(args.zone, r[1]), f"{r[2]:.4f}",
                            "" if r[3] is None else f"{r[3] * 1000:.3f}", r[4], r[5], r[6],
                            "" if r[7] is None else r[7]])

    ok = [r for r in recs if r[4] == "NOERROR" and r[5] > 0]
    answered = [r for r in recs if r[3] is not None and not r[4].startswith("RECVERR")]
    rcodes = {}
    for r in recs:
        rcodes[r[4]] = rcodes.get(r[4], 0) + 1
    lat_ok = [r[3] * 1000 for r in ok]
    lat_all = [r[3] * 1000 for r in answered]
    firsts = {}
    for r in recs:
        if r[1] not in firsts:
            firsts[r[1]] = r
    first_lat = [(args.timeout if r[3] is None else r[3]) * 1000 for r in firsts.values()]
    first_ok = sum(1 for r in firsts.values() if r[4] == "NOERROR" and r[5] > 0)
    timeline = []
    for r in recs:
        sec = int(r[2])
        while len(timeline) <= sec:
            timeline.append([0, 0])
        timeline[sec][0 if (r[4] == "NOERROR" and r[5] > 0) else 1] += 1
    n = len(recs)
    summary = {
        "label": args.label,
        "server": f"{args.server}@{args.port}",
        "start_epoch": start_epoch,
        "elapsed_s": round(end - t0, 3),
        "rate": args.rate,
        "queries": n,
        "answered": len(answered),
        "success": len(ok),
        "success_pct": rnd(100.0 * len(ok) / n, 2) if n else None,
        "old_data": sum(1 for r in ok if r[6] == "old"),
        "new_data": sum(1 for r in ok if r[6] == "new"),
        "other_data": sum(1 for r in ok if r[6] == "other"),
        "timeouts": rcodes.get("TIMEOUT", 0),
        "rcodes": rcodes,
        "latency_ok_ms": {"median": rnd(percentile(lat_ok, 50), 2),
                          "p90": rnd(percentile(lat_ok, 90), 2),
                          "p99": rnd(percentile(lat_ok, 99), 2),
                          "max": rnd(max(lat_ok) if lat_ok else None, 2)},
        "latency_answered_ms": {"median": rnd(percentile(lat_all, 50), 2),
                                "p99": rnd(percentile(lat_all, 99), 2)},
        "first_per_name": {"names": len(firsts), "success": first_ok,
                           "median_ms": rnd(percentile(first_lat, 50), 2),
                           "max_ms": rnd(max(first_lat) if first_lat else None, 2)},
        "ttl_ok": {"median": percentile([r[7] for r in ok if r[7] is not None], 50),
                   "max": max([r[7] for r in ok if r[7] is not None], default=None)},
        "first_new_s": rnd(first_new_at, 3),
        "all_new_s": rnd(all_new_at, 3),
        "names_new": len(first_new),
        "timeline_ok_fail": timeline,
    }
    out = json.dumps(summary, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(out + "\n")
    else:
        print(out)
    return 0


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def cmd_report(args):
    rows = []
    for path in sorted(glob.glob(os.path.join(args.dir, "*", "*", "run.json"))):
        with open(path) as f:
            rows.append(json.load(f))
    order_o = {o: i for i, o in enumerate(args.outages.split())}
    order_r = {r: i for i, r in enumerate(args.resolvers.split())}
    rows.sort(key=lambda r: (order_o.get(r["outage"], 99), order_r.get(r["resolver"], 99)))
    cols = ["outage", "resolver", "success_pct", "stale_answers", "servfail", "timeouts",
            "median_ms", "p99_ms", "first_stale_median_ms", "first_stale_max_ms",
            "first_ok", "stale_ttl", "upstream_queries", "upstream_qps", "upstream_tcp_syns",
            "recovery_first_s", "recovery_all_s", "note"]
    flat = []
    for r in rows:
        o = r.get("outage_load") or {}
        u = r.get("upstream") or {}
        rec = r.get("recovery") or {}
        # Upstream queries per second of client load (none are expected before the load starts).
        secs = o.get("elapsed_s") or 0
        if not o:
            flat.append({c: None for c in cols} | {"outage": r["outage"], "resolver": r["resolver"],
                                                   "first_ok": "-", "note": r.get("note", "")})
            continue
        fp = o.get("first_per_name") or {}
        counted = u.get("counted_udp", True)
        flat.append({
            "outage": r["outage"], "resolver": r["resolver"],
            "success_pct": o.get("success_pct"),
            "stale_answers": o.get("old_data"),
            "servfail": (o.get("rcodes") or {}).get("SERVFAIL", 0),
            "timeouts": o.get("timeouts"),
            "median_ms": (o.get("latency_ok_ms") or {}).get("median"),
            "p99_ms": (o.get("latency_ok_ms") or {}).get("p99"),
            "first_stale_median_ms": fp.get("median_ms"),
            "first_stale_max_ms": fp.get("max_ms"),
            "first_ok": f'{fp.get("success", "-")}/{fp.get("names", "-")}',
            "stale_ttl": (o.get("ttl_ok") or {}).get("median"),
            "upstream_queries": u.get("udp_queries") if counted else None,
            "upstream_qps": round(u["udp_queries"] / secs, 1) if secs and counted else None,
            "upstream_tcp_syns": u.get("tcp_syns") if u.get("counted_tcp") else None,
            "recovery_first_s": rec.get("first_new_s"),
            "recovery_all_s": rec.get("all_new_s") if rec.get("all_new_s") is not None
            else (f'>{rec.get("elapsed_s")}' if rec else None),
            "note": r.get("note", ""),
        })
    with open(os.path.join(args.dir, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for x in flat:
            w.writerow({k: ("" if v is None else v) for k, v in x.items()})
    lines = []
    meta = {}
    mp = os.path.join(args.dir, "meta.json")
    if os.path.exists(mp):
        with open(mp) as f:
            meta = json.load(f)
    if meta:
        lines.append(f"Load {meta.get('rate')} qps over {meta.get('names')} names for "
                     f"{meta.get('seconds')} s per outage "
                     f"(closed port: {meta.get('closed_seconds')} s), "
                     f"client timeout {meta.get('timeout')} s, record TTL {meta.get('ttl')} s; "
                     f"the load starts {meta.get('expire_wait')} s after the outage began "
                     f"(every cached record expired).")
        lines.append("")
    titles = {"silent": "Silent authority (queries dropped)",
              "refused": "Refusing authority (REFUSED)",
              "closed": "Closed port (nothing listening, ICMP port unreachable)"}
    for outage in args.outages.split():
        sub = [x for x in flat if x["outage"] == outage]
        if not sub:
            continue
        lines.append(f"### {titles.get(outage, outage)}")
        lines.append("")
        lines.append("| resolver | success % | stale answers | SERVFAIL | timeouts | median ms "
                     "| p99 ms "
                     "| first stale median ms (max) | first ok | stale TTL | upstream queries (/s) "
                     "| recovery s (first, all names) |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for x in sub:
            up = "-"
            if x["upstream_queries"] is not None:
                up = f'{x["upstream_queries"]} ({fmt(x["upstream_qps"])})'
            if x["upstream_tcp_syns"]:
                up += f' + {x["upstream_tcp_syns"]} TCP'
            lines.append(
                f'| {x["resolver"]} | {fmt(x["success_pct"], 2)} | {fmt(x["stale_answers"])} '
                f'| {fmt(x["servfail"])} | {fmt(x["timeouts"])} | {fmt(x["median_ms"], 2)} '
                f'| {fmt(x["p99_ms"], 1)} | {fmt(x["first_stale_median_ms"], 1)} '
                f'({fmt(x["first_stale_max_ms"], 0)}) '
                f'| {x["first_ok"]} | {fmt(x["stale_ttl"])} | {up} '
                f'| {fmt(x["recovery_first_s"], 2)}, {fmt(x["recovery_all_s"], 2)} |')
        notes = [f'{x["resolver"]}: {x["note"]}' for x in sub if x["note"]]
        if notes:
            lines.append("")
            lines.extend(f"- {n}" for n in notes)
        lines.append("")
    text = "\n".join(lines)
    with open(os.path.join(args.dir, "summary.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


def main():
    ap = argparse.ArgumentParser(description="serve-stale benchmark client and report")
    sub = ap.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("load", help="fixed-rate query load")
    lp.add_argument("--server", required=True)
    lp.add_argument("--port", type=int, default=53)
    lp.add_argument("--zone", default="stale.test")
    lp.add_argument("--names", type=int, default=50)
    lp.add_argument("--rate", type=float, default=100.0, help="queries per second")
    lp.add_argument("--duration", type=float, default=60.0,
                    help="seconds of sending (the cap with --until-new)")
    lp.add_argument("--count", type=int, default=0, help="send exactly this many queries instead")
    lp.add_argument("--timeout", type=float, default=5.0, help="per-query timeout, seconds")
    lp.add_argument("--old-prefix", default="192.0.2.")
    lp.add_argument("--new-prefix", default="198.51.100.")
    lp.add_argument("--until-new", action="store_true",
                    help="stop once every name has answered the new data")
    lp.add_argument("--label", default="")
    lp.add_argument("--csv")
    lp.add_argument("--json")
    rp = sub.add_parser("report", help="tables from a results directory")
    rp.add_argument("--dir", required=True)
    rp.add_argument("--outages", default="silent refused closed")
    rp.add_argument("--resolvers", default="ballast ballast-nostale unbound kresd kresd-stub pdns")
    args = ap.parse_args()
    return cmd_load(args) if args.cmd == "load" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
