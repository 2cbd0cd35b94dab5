"""Reporting: the results table, the traffic and warm summaries, the targets, docs splicing."""
from __future__ import annotations

from pathlib import Path
import datetime
import os
import platform
import sqlite3
import statistics
import subprocess

from bench_common import BEGIN, END, log
from bench_setup import levels_of

def pct(xs):
    if not xs:
        return None
    xs = sorted(xs)
    return {"median": statistics.median(xs), "p99": xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))],
            "n": len(xs)}


def splice_docs(doc: Path, text: str):
    body = doc.read_text() if doc.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in body or END not in body:
        body += f"\n{BEGIN}\n{END}\n"
    head, rest = body.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    text = text.replace("\n# litestream-vfs comparison", "\n## litestream-vfs comparison", 1)
    if text.startswith("# "):
        text = "#" + text
    text = text.replace("\n## Targets", "\n### Targets")
    doc.parent.mkdir(exist_ok=True)
    doc.write_text(f"{head}{BEGIN}\n{text.rstrip()}\n{END}{tail}")
    log(f"updated {doc}")


def stripped_size(lib):
    out = Path("/tmp") / f"lsvfs-bench-strip-{os.getpid()}.so"
    try:
        subprocess.run(["strip", "-o", str(out), lib], check=True, capture_output=True)
        return out.stat().st_size
    finally:
        out.unlink(missing_ok=True)


def fmt_s(s):
    if s is None:
        return "—"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_b(n):
    if n is None:
        return "—"
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} B"


def traffic(rec, backend):
    """'requests / bytes' of one step: proxy for S3, our counters or read syscalls for file."""
    if rec is None:
        return "—"
    if backend == "s3":
        p = rec.get("proxy") or {}
        if not p:
            return "—"
        kinds = "+".join(f"{p[k]}{k[0]}" for k in ("LIST", "RANGE", "GET", "HEAD") if p.get(k))
        o = rec.get("ours") or {}
        mine = f" [stats: {o['reads']}R / {fmt_b(o['read_bytes'])}]" if "reads" in o else ""
        return f"{p['requests']} req ({kinds or '0'}) / {fmt_b(p['bytes_down'])}{mine}"
    o = rec.get("ours") or {}
    if "reads" in o:
        return f"{o['lists']}L+{o['reads']}R / {fmt_b(o['read_bytes'])}"
    io = rec.get("io") or {}
    return f"{io.get('syscr', 0)} sysr / {fmt_b(io.get('rchar', 0))}" if io else "—"


def warm(steps, prefix):
    xs = [v for k, v in steps.items() if k.startswith(prefix) and "error" not in v]
    if not xs:
        return None
    times = sorted(xs, key=lambda v: v["s"])
    return times[len(times) // 2]


def render(a, rep, elapsed):
    cfgs = rep["configs"]
    names = list(cfgs)
    lines = []
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines.append(f"# litestream-vfs comparison — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    lines.append(f"Machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
                 f"SQLite {sqlite3.sqlite_version} (Python {platform.python_version()}). Run took {elapsed:.0f} s.\n")
    d = rep["db"]
    lines.append(f"Database: `orders` {d['rows']:,} rows + index on `customer`, {d['bytes'] / 1e6:.1f} MB, page 4096, "
                 f"table B-tree depth {d['depth']}, index depth {d['index_depth']}. "
                 f"S3 = s3s-fs behind a proxy adding {a.rtt_ms:g} ms per request (+1 round trip per new connection). "
                 f"Lookups per pass: {rep['workload']['lookups_file']} (native, file://), "
                 f"{rep['workload']['lookups_s3']} (S3). Warm = median of {a.reps} passes. "
                 f"Per-workload cap: {a.cap_s:g} s (file), {a.s3_cap_s:g} s (S3).\n")
    for kind, files in (rep.get("replica") or {}).items():
        if files:
            lines.append(f"Replica {kind}: {len(files)} LTX files, levels {', '.join(levels_of(files))}. ")
    lines.append("")
    lines.append("Traffic: S3 = requests at the proxy (L=LIST, R=ranged GET, G=GET, H=HEAD) / bytes returned "
                 "[ours: what its own `litestream_stats` counted]; "
                 "ours on file:// = our `litestream_stats` (L lists + R reads / bytes); "
                 "native and official on file:// = read syscalls / bytes read (/proc/self/io).\n")
    hdr = "| workload | " + " | ".join(names) + " |"
    lines += [hdr, "|" + "---|" * (len(names) + 1)]

    def backend(n):
        return cfgs[n].get("steps", {}) and ("s3" if n.endswith("-s3") else "file")

    def row(label, fn):
        cells = []
        for n in names:
            c = cfgs[n]
            if c.get("fatal") and label != "status":
                cells.append("—")
                continue
            try:
                cells.append(fn(n, c, c.get("steps", {})))
            except Exception:  # noqa: BLE001
                cells.append("—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def cell_time(rec, per=None):
        if rec is None:
            return "—"
        if "error" in rec:
            return "error"
        if rec.get("capped") and not per:
            return f"> {fmt_s(rec['s'])} (capped)"
        if per:
            done = rec.get("done") or 1
            if rec.get("capped"):
                return f"> {fmt_s(rec['s'])} (capped after {done}; {fmt_s(rec['s'] / done)}/op)"
            return f"{fmt_s(rec['s'])} ({fmt_s(rec['s'] / done)}/op)"
        return fmt_s(rec["s"])

    def status(n, c, st):
        if c.get("fatal"):
            msg = c["fatal"]
            if "not built into this library" in msg or "not built into" in str(c):
                return "**S3 not built into this library yet**"
            return "**failed**: " + msg[:80].replace("|", "/")
        return "ok"

    row("status", status)
    row("load + open", lambda n, c, st: fmt_s(st["lookup:load"]["s"] + st["lookup:open"]["s"]) if "lookup:load" in st
        else fmt_s(st["lookup:open"]["s"]))
    row("  open traffic", lambda n, c, st: traffic(st.get("lookup:open"), backend(n)))
    row("first query (1 lookup)", lambda n, c, st: cell_time(st.get("lookup:first_query")))
    row("  first query traffic", lambda n, c, st: traffic(st.get("lookup:first_query"), backend(n)))
    row("point lookups cold", lambda n, c, st: cell_time(st.get("lookup:lookups_cold"), c["lookups"]))
    row("  cold lookups traffic", lambda n, c, st: traffic(st.get("lookup:lookups_cold"), backend(n)))
    row("point lookups warm", lambda n, c, st: cell_time(warm(st, "lookup:lookups_warm"), c["lookups"]))
    row("  warm lookups traffic", lambda n, c, st: traffic(warm(st, "lookup:lookups_warm"), backend(n)))
    row(f"point lookups warm, after {a.settle_s:g} s idle", lambda n, c, st: cell_time(warm(st, "lookup:lookups_settled"), 1))
    row("  native, warm, on the S3 id subset", lambda n, c, st: cell_time(warm(st, "lookup:lookups_small"), 1)
        if warm(st, "lookup:lookups_small") else "")
    row("  warm lookups in one transaction", lambda n, c, st: cell_time(st.get("lookup:lookups_warm_1tx"), 1))
    row("range query cold (~250 rows)", lambda n, c, st: cell_time(st.get("range:range_cold")))
    row("  cold range traffic", lambda n, c, st: traffic(st.get("range:range_cold"), backend(n)))
    row("range query warm", lambda n, c, st: cell_time(warm(st, "range:range_warm")))
    row("full scan aggregate cold", lambda n, c, st: cell_time(st.get("scan:scan_cold")))
    row("  cold scan traffic", lambda n, c, st: traffic(st.get("scan:scan_cold"), backend(n)))
    row(f"full scan aggregate warm (after {a.settle_s:g} s idle)", lambda n, c, st: cell_time(warm(st, "scan:scan_warm")))
    row("  warm scan traffic", lambda n, c, st: traffic(warm(st, "scan:scan_warm"), backend(n)))
    row(f"idle {a.idle_s:g} s: traffic", lambda n, c, st: traffic(st.get("range:idle"), backend(n)))
    row("peak RSS (max of the 3 processes)", lambda n, c, st: fmt_b(c["hwm"]))
    lines.append("")

    lib = rep.get("lib", {})
    lines.append(f"Stripped library size: official {fmt_b(lib.get('official'))}, ours {fmt_b(lib.get('ours'))}"
                 + (f" (the S3 build: {fmt_b(lib['ours_s3'])})" if lib.get("ours_s3") else "") + ".\n")
    if rep["args"].get("ours_s3_lib"):
        lines.append(f"**Note:** the `ours-s3` column and the S3 follow lag used `{rep['args']['ours_s3_lib']}`, "
                     f"not `{rep['args']['ours']}` (see the notes on how it was built).\n")
    fol = rep.get("follow") or {}
    if fol:
        lines.append("Follow lag (commit on the primary → row visible through the VFS; a commit every 200 ms for "
                     f"{a.follow_s:g} s; readers poll the VFS every 20 ms; default poll interval 1 s for both). "
                     "`ship` = commit → LTX file lands in the replica (Litestream's part); "
                     "`vfs` = file lands → visible (the extension's part):\n")
        lines.append("| backend | extension | e2e median | e2e p99 | ship median | vfs median | vfs p99 | missed |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for b, r in fol.items():
            if "error" in r:
                lines.append(f"| {b} | — | error: {r['error'][:80]} | | | | | |")
                continue
            for kind in ("official", "ours"):
                k = r.get(kind) or {}
                if "error" in k:
                    lines.append(f"| {b} | {kind} | error: {k['error'][:80]} | | | | | |")
                    continue
                g = lambda key, q: fmt_s(k[key][q]) if k.get(key) else "—"  # noqa: E731
                lines.append(f"| {b} | {kind} | {g('e2e', 'median')} | {g('e2e', 'p99')} | {g('ship', 'median')} "
                             f"| {g('vfs', 'median')} | {g('vfs', 'p99')} | {k.get('missing', '—')}/{r['commits']} |")
        lines.append("")
    lines.append(targets(a, rep))
    return "\n".join(lines) + "\n"


def targets(a, rep):
    cfgs = rep["configs"]
    out = ["## Targets (ratios from this run)\n", "| target | measured | verdict |", "|---|---|---|"]

    def st(n):
        return (cfgs.get(n) or {}).get("steps", {})

    def t(n, key, warm_prefix=None):
        s = st(n)
        rec = warm(s, warm_prefix) if warm_prefix else s.get(key)
        if rec is None or "error" in rec:
            return None, False
        per = (rec.get("done") or 1) if "lookups" in (warm_prefix or key) else 1
        return rec["s"] / per, bool(rec.get("capped"))

    def verdict(ok):
        return "**met**" if ok else "**missed**"

    def ratio_line(label, num, den, limit, inverse=False):
        (x, xc), (y, yc) = num, den
        if x is None or y is None:
            out.append(f"| {label} | n/a | — |")
            return
        r = x / y
        capped = " (lower bound: capped)" if (yc if inverse else xc) else ""
        if inverse:
            out.append(f"| {label} | {r:.1f}×{capped} | {verdict(r >= limit)} |")
        else:
            out.append(f"| {label} | {r:.2f}×{capped} | {verdict(r <= limit)} |")

    for back in ("file", "s3"):
        ours, off = f"ours-{back}", f"official-{back}"
        if ours not in cfgs or cfgs[ours].get("fatal"):
            continue
        nat = "lookup:lookups_small" if (back == "s3" and warm(st("native"), "lookup:lookups_small")) \
            else "lookup:lookups_settled"
        ratio_line(f"warm point lookups ≤ 1.5× native ({back}; steady state, after {a.settle_s:g} s idle)",
                   t(ours, None, "lookup:lookups_settled"), t("native", None, nat), 1.5)
        if back == "file":
            ratio_line(f"warm point lookups ≤ 1.5× native ({back}; right after the cold pass)",
                       t(ours, None, "lookup:lookups_warm"), t("native", None, "lookup:lookups_warm"), 1.5)
        ratio_line(f"warm full scan ≤ 2× native ({back})", t(ours, None, "scan:scan_warm"),
                   t("native", None, "scan:scan_warm"), 2)
        if off in cfgs and not cfgs[off].get("fatal"):
            ratio_line(f"warm lookups ≥ 10× faster than official ({back}; steady state)",
                       t(off, None, "lookup:lookups_settled"), t(ours, None, "lookup:lookups_settled"), 10, inverse=True)
            ratio_line(f"warm scan ≥ 10× faster than official ({back})", t(off, None, "scan:scan_warm"),
                       t(ours, None, "scan:scan_warm"), 10, inverse=True)
    o = st("ours-s3")
    if o and not cfgs["ours-s3"].get("fatal"):
        reqs = sum((o.get(k, {}).get("proxy") or {}).get("requests", 0) for k in ("lookup:load", "lookup:open"))
        conns = sum((o.get(k, {}).get("proxy") or {}).get("connections", 0) for k in ("lookup:load", "lookup:open"))
        wall = sum(o.get(k, {}).get("s", 0) for k in ("lookup:load", "lookup:open"))
        waves = o.get("lookup:open", {}).get("waves")
        if waves is not None:
            out.append(f"| cold open ≤ 3 round trips (S3) | {waves} sequential round trips (TCP connects included) "
                       f"for {reqs} requests on {conns} new connections; wall {wall * 1000:.0f} ms "
                       f"= {wall * 1000 / a.rtt_ms:.1f} RTTs | {verdict(waves <= 3)} |")
        else:
            out.append(f"| cold open ≤ 3 round trips (S3) | {reqs} requests, "
                       f"{wall * 1000 / a.rtt_ms:.1f} RTTs of wall time | {verdict(reqs <= 3)} |")
        fq = o.get("lookup:first_query", {})
        depth = rep["db"]["depth"]
        n = fq.get("waves", (fq.get("proxy") or {}).get("requests", 99))
        out.append(f"| cold point lookup ≤ B-tree depth ({depth}) round trips (S3) | {n} round trips, "
                   f"{(fq.get('proxy') or {}).get('requests', '?')} requests, {fmt_s(fq.get('s'))} | {verdict(n <= depth)} |")
    o = st("ours-file")
    if o and not cfgs["ours-file"].get("fatal"):
        op = sum((o.get(k, {}).get("ours") or {}).get(x, 0) for k in ("lookup:open",) for x in ("lists", "reads"))
        fq = (o.get("lookup:first_query", {}).get("ours") or {}).get("reads", 0)
        depth = rep["db"]["depth"]
        out.append(f"| cold open ≤ 3 round trips (file://: storage calls) | {op} calls "
                   f"({o['lookup:open']['ours'].get('lists', 0)} lists + {o['lookup:open']['ours'].get('reads', 0)} reads) "
                   f"| {verdict(op <= 3)} |")
        out.append(f"| cold point lookup ≤ B-tree depth ({depth}) round trips (file://: reads) | {fq} reads | "
                   f"{verdict(fq <= depth)} |")
    for back in ("file", "s3"):
        o = st(f"ours-{back}")
        idle = o.get("range:idle") if o else None
        if idle and idle.get("ours", {}).get("polls"):
            lv = len(levels_of((rep.get("replica") or {}).get(back) or []))
            lists = idle["proxy"]["LIST"] if back == "s3" else idle["ours"]["lists"]
            per = lists / idle["ours"]["polls"]
            out.append(f"| poll with nothing new = one listing per watched level ({back}; {lv} levels in the replica) "
                       f"| {per:.1f} lists/poll ({lists} over {idle['ours']['polls']} polls) | {verdict(per <= lv)} |")
    for back in ("file", "s3"):
        c = cfgs.get(f"ours-{back}")
        if c and not c.get("fatal"):
            budget = None
            for v in c["steps"].values():
                budget = budget or (v.get("ours") or {}).get("cache_budget")
            budget = budget or 128 * 2**20
            out.append(f"| peak RSS ≤ cache budget + 40 MB ({back}) | {fmt_b(c['hwm'])} vs {fmt_b(budget + 40e6)} "
                       f"(128 MiB default budget) | {verdict(c['hwm'] <= budget + 40e6)} |")
    lib = rep.get("lib", {})
    if lib.get("ours"):
        out.append(f"| stripped library ≤ 12 MB | {fmt_b(lib['ours'])} | {verdict(lib['ours'] <= 12e6)} |")
    if lib.get("ours_s3"):
        out.append(f"| stripped library ≤ 12 MB (the S3 build) | {fmt_b(lib['ours_s3'])} | "
                   f"{verdict(lib['ours_s3'] <= 12e6)} |")
    for back, r in (rep.get("follow") or {}).items():
        k = (r or {}).get("ours") or {}
        if k.get("vfs"):
            limit = 1.0 + (a.rtt_ms / 1000 if back == "s3" else 0)
            out.append(f"| follow lag median ≤ poll interval + one round trip ({back}) | vfs part "
                       f"{fmt_s(k['vfs']['median'])} (e2e {fmt_s(k['e2e']['median'])}) vs {fmt_s(limit)} | "
                       f"{verdict(k['vfs']['median'] <= limit)} |")
    return "\n".join(out) + "\n"
