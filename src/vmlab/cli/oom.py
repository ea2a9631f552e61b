"""`vmlab oom`: which process the kernel's OOM killer would kill now, and why (a ranked badness table)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from vmlab.errors import InputError
from vmlab.host.oom import MiB_PAGES, OomReport, scan


def register(subparsers: Any) -> None:
    """Add the `oom` subcommand."""
    p = subparsers.add_parser(
        "oom",
        help="explain the OOM killer's choice on the running kernel",
        description="Rank live processes by the kernel's oom_badness() and name the victim "
        "select_bad_process() would pick; check every /proc/PID/oom_score.",
    )
    p.add_argument("--cgroup", metavar="PATH",
                   help="a memory cgroup directory (v1 or v2): rank as its memcg OOM would")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--top", metavar="N", type=_top, default=15, help="rows to show (0 = all; default 15)")
    p.add_argument("--what-if", action="store_true",
                   help="import the live processes (of --cgroup, or all) into the model and print the "
                   "kernel log lines the model's OOM killer writes for --grow or --new")
    p.add_argument("--grow", metavar="PID:SIZE", help="with --what-if: process PID touches SIZE more "
                   "(MiB, or with a K/M/G suffix)")
    p.add_argument("--new", metavar="SIZE", help="with --what-if: a new process (in --cgroup) touches SIZE")
    p.set_defaults(func=run)


def parse_size(text: str, option: str) -> int:
    """A size in bytes: an integer number of MiB, or an integer with a K, M or G suffix."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    suffix = text[-1:].upper()
    body, unit = (text[:-1], units[suffix]) if suffix in units else (text, 1 << 20)
    if not body.isdigit() or int(body) == 0:
        raise InputError(f"expected a size such as 64, 512K or 2G, got {text!r}", option)
    return int(body) * unit


def parse_grow(text: str) -> tuple[int, int]:
    """`PID:SIZE` of --grow."""
    pid, sep, size = text.partition(":")
    if not sep or not pid.isdigit():
        raise InputError(f"expected PID:SIZE, got {text!r}", "--grow")
    return int(pid), parse_size(size, "--grow")


def what_if(args: argparse.Namespace) -> int:
    """--what-if: import, grow or start one process in the model, print the model's log lines."""
    from vmlab.host import oomsnap
    from vmlab.lab import oom_whatif

    if (args.grow is None) == (args.new is None):
        raise InputError("--what-if needs exactly one of --grow PID:SIZE and --new SIZE", "--what-if")
    grow = parse_grow(args.grow) if args.grow is not None else None
    size = grow[1] if grow is not None else parse_size(args.new, "--new")
    if grow is not None:
        oomsnap.read_proc(grow[0])  # an unknown pid is reported before the import
    snap = oomsnap.snapshot_memcg(args.cgroup) if args.cgroup else oomsnap.snapshot_all()
    if grow is not None and grow[0] not in {p.pid for p in snap.procs}:
        raise InputError(f"process {grow[0]} is not in memory cgroup {args.cgroup}", "--grow")
    model = oom_whatif.build(snap, global_fill=not args.cgroup)
    where = snap.memcgs[0].path if snap.memcgs else None
    out = oom_whatif.grow(model, grow[0] if grow else None, size, where)
    who = f"process {out.grower}" if grow else f"a new process (pid {out.grower})"
    sys.stdout.write(f"# model: {len(snap.procs)} processes imported; {who} touches {size >> 10} kB more\n")
    sys.stdout.writelines(line + "\n" for line in out.log)
    if not out.killed:
        sys.stdout.write("# no OOM kill: the memory fits\n" if out.result is None
                         else f"# the process ends with {out.result}\n")
    for pid, comm in out.killed:
        sys.stdout.write(f"# killed: {pid} ({comm})\n")
    if out.result == "SIGKILL":
        sys.stdout.write("Killed\n")
    return 0


def _top(text: str) -> int:
    """`--top` value: a non-negative integer."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return n


def to_json(report: OomReport) -> dict[str, Any]:
    """The report as plain JSON data (victim and tie included)."""
    data = dataclasses.asdict(report)
    data["victim"] = dataclasses.asdict(report.victim) if report.victim else None
    data["tie"] = report.tie
    return data


def _mib(pages: int) -> str:
    """Pages as MiB with one decimal."""
    return f"{pages / MiB_PAGES:.1f}"


def render(report: OomReport, top: int) -> str:
    """The plain-text table: domain, ranked candidates with the badness terms, victim, checks."""
    d = report.domain
    if d.kind == "global":
        head = (f"OOM domain: whole machine, totalpages = MemTotal + SwapTotal = {d.totalpages} pages "
                f"({_mib(d.totalpages)} MiB)")
    else:
        swap = f" + swap {d.swap_pages}" if d.swap_pages else ""
        head = (f"OOM domain: memcg {d.cgroup_name} (cgroup v{d.cgroup_version}), totalpages = limit "
                f"{d.limit_pages}{swap} = {d.totalpages} pages ({_mib(d.totalpages)} MiB)")
    unit = f"1 point of oom_score_adj = totalpages/1000 = {d.adj_unit} pages ({_mib(d.adj_unit)} MiB)"
    lines = [head, unit,
             "points = rss + swap + pgtables + adj*(totalpages/1000), in pages; "
             "oom_score uses the global domain", ""]
    cols = ("rank", "pid", "rss", "swap", "pgtbl", "adj", "adj_term", "points", "MiB", "oom_score", "kernel",
            "comm")
    rows = [cols]
    shown = report.candidates if top == 0 else report.candidates[:top]
    for rank, c in enumerate(shown, 1):
        rows.append((str(rank), str(c.pid), str(c.rss), str(c.swapents), str(c.pgtables),
                     str(c.oom_score_adj), str(c.adj_term), str(c.points), f"{c.points_mib:.1f}",
                     str(c.oom_score), str(c.kernel_oom_score), c.comm))
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols) - 1)]
    for r in rows:
        lines.append("  ".join(v.rjust(w) for v, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1])
    if len(report.candidates) > len(shown):
        lines.append(f"... {len(report.candidates) - len(shown)} more candidates (--top 0 shows all)")
    lines.append("")
    v = report.victim
    if v is None:
        lines.append("victim: none (no killable process)")
    else:
        lines.append(f"victim: pid {v.pid} ({v.comm}), {v.points} points = {_mib(v.points)} MiB")
        if len(report.candidates) > 1:
            r = report.candidates[1]
            lines.append(f"runner-up: pid {r.pid} ({r.comm}), {v.points - r.points} points behind")
        if report.tie:
            lines.append("tie: the kernel keeps the task it scans last; scan order is approximated "
                         "(fork order), so this choice is uncertain")
    reasons: dict[str, int] = {}
    for s in report.skipped:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    if reasons:
        lines.append("not considered: " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())))
    if report.mismatches:
        lines.append(f"oom_score check: {len(report.mismatches)} of {report.checked} differ from the kernel:")
        lines += [f"  pid {m.pid} ({m.comm}): computed {m.computed}, kernel {m.kernel} ({m.detail})"
                  for m in report.mismatches]
    else:
        lines.append(f"oom_score check: all {report.checked} processes agree with /proc/PID/oom_score")
    if report.unstable:
        lines.append("changing while read (not compared): " + " ".join(map(str, report.unstable)))
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Scan, then print the table or the JSON report."""
    if args.cgroup is not None and not args.cgroup:
        raise InputError("empty cgroup path", "--cgroup")
    if args.what_if:
        return what_if(args)
    if args.grow is not None or args.new is not None:
        raise InputError("--grow and --new need --what-if", "--grow" if args.grow is not None else "--new")
    report = scan(args.cgroup)
    if args.json:
        json.dump(to_json(report), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(report, args.top))
    return 0
