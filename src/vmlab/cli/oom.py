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
    p.set_defaults(func=run)


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
    report = scan(args.cgroup)
    if args.json:
        json.dump(to_json(report), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(report, args.top))
    return 0
