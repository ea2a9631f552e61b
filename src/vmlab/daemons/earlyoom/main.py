"""earlyoom's main.c: the command line (getopt_long() over the short and long options), the limits,
lowmem_sig() and sleep_time_ms().

Every option is modelled except --kernel-oom (accepted with a note; earlyoom kills by itself). -g, -p
act on the model machine (process groups, niceness, oom_score_adj); -n, -N and -P are programs
earlyoom would start (dbus-send, the scripts): the model records them with their argv and environment
and runs nothing; --syslog changes where the lines go (`Output` streams "syslog.PRIORITY").

Regular expressions are Python's `re`, which agrees with POSIX extended ones for the usual patterns
(`^chrome$`, `a|b`, `[0-9]+`) but not in every corner (a backslash escape such as `\\d` means a digit
only here).
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field

from vmlab.daemons.earlyoom.flavor import Flavor
from vmlab.daemons.earlyoom.meminfo import MemInfo
from vmlab.daemons.earlyoom.msg import parse_term_kill_tuple, pct, strtod

SIGTERM, SIGKILL = int(signal.SIGTERM), int(signal.SIGKILL)
SIGNAMES = {SIGTERM: "SIGTERM", SIGKILL: "SIGKILL", 0: "0 (no-op signal)"}
#: Fill rates sleep_time_ms() assumes, in KiB per millisecond (about MiB/s).
MEM_FILL_RATE, SWAP_FILL_RATE = 6000, 800
MIN_SLEEP_MS, MAX_SLEEP_MS = 100, 1000


class UsageError(Exception):
    """earlyoom refuses its command line: `message` is what it prints, `code` its exit status, `arg`
    the index in argv of the word at fault."""

    def __init__(self, message: str, code: int, arg: int) -> None:
        super().__init__(message)
        self.message, self.code, self.arg = message, code, arg


@dataclass
class Options:
    """poll_loop_args_t, with the defaults of main()."""

    mem_term_percent: float = 10
    swap_term_percent: float = 10
    mem_kill_percent: float = 5
    swap_kill_percent: float = 5
    report_interval_ms: int = 1000
    ignore_root_user: bool = False
    sort_by_rss: bool = False
    dryrun: bool = False
    debug: bool = False
    prefer: re.Pattern[str] | None = None
    avoid: re.Pattern[str] | None = None
    ignore: re.Pattern[str] | None = None
    #: -g: kill the victim's whole process group.
    kill_process_group: bool = False
    #: -n: D-Bus notifications through dbus-send.
    notify: bool = False
    #: -N SCRIPT: run after a kill; -P PROGRAM: run before one (v1.8+).
    notify_ext: str | None = None
    kill_process_prehook: str | None = None
    #: -p: niceness -20 and oom_score_adj -100 for earlyoom itself.
    set_my_priority: bool = False
    #: --syslog: warn(), info(), debug() go to syslog from then on.
    syslog: bool = False
    #: main() exits at once (-v, -h) with this status.
    exit_now: int | None = None
    #: What earlyoom prints while it reads its options: (stream, line), stream as `Output` takes it.
    notes: list[tuple[str, str]] = field(default_factory=list)

    def stream(self, priority: str) -> str:
        """Where a message of syslog `priority` (warning, info, debug, err) goes: syslog once --syslog
        was read, else stderr (warn, fatal) or stdout (info, debug)."""
        if self.syslog:
            return f"syslog.{priority}"
        return "stderr" if priority in ("warning", "err") else "stdout"

    def warn(self, text: str) -> None:
        """A warn() note printed while the options are read."""
        self.notes.append((self.stream("warning"), text))

    def note(self, text: str) -> None:
        """A fprintf(stderr) note printed while the options are read (never to syslog)."""
        self.notes.append(("stderr", text))


def _getopt(argv: list[str], flavor: Flavor) -> tuple[list[tuple[str, str | None, int]], list[int]]:
    """getopt_long() with GNU permutation: the options in order as (name, argument, argv index) and
    the indexes of the operands. Errors are glibc's messages (status 13, as after `case '?'`)."""
    takes_arg = {c: flavor.short_options[i + 1:i + 2] == ":" for i, c in enumerate(flavor.short_options)
                 if c != ":"}
    long_arg = {"prefer": True, "avoid": True, "ignore": True}
    opts: list[tuple[str, str | None, int]] = []
    operands: list[int] = []
    hint = "\nTry 'earlyoom --help' for more information."
    i = 1
    while i < len(argv):
        word = argv[i]
        if word == "--":
            operands.extend(range(i + 1, len(argv)))
            break
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            exact = [o for o in flavor.long_options if o == name]
            matches = exact or [o for o in flavor.long_options if o.startswith(name)]
            if not matches:
                raise UsageError(f"earlyoom: unrecognized option '{word}'{hint}", 13, i)
            if len(matches) > 1:
                alts = " ".join(f"'--{o}'" for o in matches)
                raise UsageError(f"earlyoom: option '{word}' is ambiguous; possibilities: {alts}{hint}",
                                 13, i)
            opt = matches[0]
            if long_arg.get(opt):
                if not eq:
                    if i + 1 >= len(argv):
                        raise UsageError(f"earlyoom: option '--{opt}' requires an argument{hint}", 13, i)
                    i += 1
                    value = argv[i]
                opts.append((opt, value, i))
            elif eq:
                raise UsageError(f"earlyoom: option '--{opt}' doesn't allow an argument{hint}", 13, i)
            else:
                opts.append(({"help": "h", "debug": "d"}.get(opt, opt), None, i))
        elif word.startswith("-") and word != "-":
            j = 1
            while j < len(word):
                c = word[j]
                if c not in takes_arg:
                    raise UsageError(f"earlyoom: invalid option -- '{c}'{hint}", 13, i)
                if takes_arg[c]:
                    if j + 1 < len(word):
                        opts.append((c, word[j + 1:], i))
                    elif i + 1 < len(argv):
                        i += 1
                        opts.append((c, argv[i], i))
                    else:
                        raise UsageError(f"earlyoom: option requires an argument -- '{c}'{hint}", 13, i)
                    break
                opts.append((c, None, i))
                j += 1
        else:
            operands.append(i)
        i += 1
    return opts, operands


def _regex(pattern: str, arg: int) -> re.Pattern[str]:
    """regcomp(REG_EXTENDED | REG_NOSUB), or fatal(6)."""
    try:
        return re.compile(pattern)
    except re.error:
        raise UsageError(f"fatal: could not compile regexp '{pattern}'", 6, arg) from None


def parse_args(argv: list[str], m: MemInfo, flavor: Flavor) -> Options:
    """main()'s option loop and the merging of -M/-S into the percentages (the lower one wins when both
    forms are given). `argv[0]` is the program name; `m` is the meminfo read at start (the -M/-S
    limits). Raises UsageError as earlyoom exits."""
    args = Options()
    opts, operands = _getopt(argv, flavor)
    have_m = have_M = have_s = have_S = False
    mem_kib = swap_kib = (0.0, 0.0)
    regexes: dict[str, tuple[str, int]] = {}
    for name, value, idx in opts:
        if name in ("m", "s", "M", "S"):
            assert value is not None
            upper = {"m": 99, "s": 100, "M": m.MemTotalKiB * 100 // 99, "S": m.SwapTotalKiB * 100 // 99}[name]
            tuple_ = parse_term_kill_tuple(value, upper)
            if tuple_.warning:
                args.warn(tuple_.warning)
            if tuple_.err:
                raise UsageError(f"fatal: -{name}: {tuple_.err}", 15 if name in "mM" else 16, idx)
            if name == "m":
                args.mem_term_percent, args.mem_kill_percent, have_m = tuple_.term, tuple_.kill, True
            elif name == "s":
                args.swap_term_percent, args.swap_kill_percent, have_s = tuple_.term, tuple_.kill, True
            elif name == "M":
                mem_kib, have_M = (tuple_.term, tuple_.kill), True
            elif m.SwapTotalKiB == 0:
                args.warn("warning: -S: total swap is zero, using default percentages")
            else:
                swap_kib, have_S = (tuple_.term, tuple_.kill), True
        elif name == "r":
            assert value is not None
            interval = strtod(value)[0]
            if interval < 0:
                raise UsageError(f"fatal: -r: invalid interval '{value}'", 14, idx)
            args.report_interval_ms = int(interval * 1000)
        elif name in ("prefer", "avoid", "ignore"):
            assert value is not None
            regexes[name] = (value, idx)
        elif name == "dryrun":
            args.warn("dryrun mode enabled, will not kill anything")
            args.dryrun = True
        elif name == "ignore-root-user":
            args.ignore_root_user = True
            args.note("Processes owned by root will not be killed")
        elif name == "sort-by-rss":
            args.sort_by_rss = True
            args.note("Find process with the largest rss")
        elif name == "d":
            args.debug = True
        elif name in ("v", "h"):
            args.exit_now = 0
            return args
        elif name in _FLAGS:
            setattr(args, _FLAGS[name], True)
            if name == "n":
                args.note("Notifying through D-Bus")
        elif name in ("N", "P"):
            setattr(args, "notify_ext" if name == "N" else "kill_process_prehook", value)
        else:
            args.note(_IGNORED[name])
    if operands:
        raise UsageError(f"fatal: extra argument not understood: '{argv[operands[0]]}'", 13, operands[0])
    if have_M:
        term, kill = (100 * kib / m.MemTotalKiB for kib in mem_kib)
        args.mem_term_percent = min(args.mem_term_percent, term) if have_m else term
        args.mem_kill_percent = min(args.mem_kill_percent, kill) if have_m else kill
    if have_S:
        term, kill = (100 * kib / m.SwapTotalKiB for kib in swap_kib)
        args.swap_term_percent = min(args.swap_term_percent, term) if have_s else term
        args.swap_kill_percent = min(args.swap_kill_percent, kill) if have_s else kill
    for name, what in (("prefer", "Preferring to kill process names that match regex '{}'"),
                       ("avoid", "Will avoid killing process names that match regex '{}'"),
                       ("ignore", "Will ignore process names that match regex '{}'")):
        if name in regexes:
            pattern, idx = regexes[name]
            setattr(args, name, _regex(pattern, idx))
            args.note(what.format(pattern))
    return args


#: The options that only switch a field of Options on.
_FLAGS = {"g": "kill_process_group", "n": "notify", "p": "set_my_priority", "syslog": "syslog"}
#: What earlyoom prints for the options it ignores, and the one the model ignores (--kernel-oom).
_IGNORED = {
    "k": "Option -k is ignored since earlyoom v1.2",
    "i": "Option -i is ignored since earlyoom v1.7",
    "kernel-oom": "--kernel-oom: ignored in the model (earlyoom kills by itself)",
}


def startup_lines(args: Options, m: MemInfo, flavor: Flavor) -> list[str]:
    """What main() prints on stderr after its options: the totals and the limits."""
    if not flavor.user_mem_total:
        return [f"mem total: {m.MemTotalKiB // 1024:4d} MiB, swap total: {m.SwapTotalKiB // 1024:4d} MiB",
                f"sending SIGTERM when mem <= {pct(args.mem_term_percent)} and swap <= "
                f"{pct(args.swap_term_percent)},",
                f"        SIGKILL when mem <= {pct(args.mem_kill_percent)} and swap <= "
                f"{pct(args.swap_kill_percent)}"]
    return [f"mem total: {m.MemTotalKiB // 1024:4d} MiB, user mem total: {m.UserMemTotalKiB // 1024:4d} MiB, "
            f"swap total: {m.SwapTotalKiB // 1024:4d} MiB",
            f"sending SIGTERM when mem avail <= {pct(args.mem_term_percent)} and swap free <= "
            f"{pct(args.swap_term_percent)},",
            f"        SIGKILL when mem avail <= {pct(args.mem_kill_percent)} and swap free <= "
            f"{pct(args.swap_kill_percent)}"]


def lowmem_sig(args: Options, m: MemInfo) -> int:
    """lowmem_sig(): SIGKILL when memory and swap are both at or below their KILL limits, SIGTERM when
    both are at or below their TERM limits, else 0."""
    if m.MemAvailablePercent <= args.mem_kill_percent and m.SwapFreePercent <= args.swap_kill_percent:
        return SIGKILL
    if m.MemAvailablePercent <= args.mem_term_percent and m.SwapFreePercent <= args.swap_term_percent:
        return SIGTERM
    return 0


def _c_ll(x: float) -> int:
    """A C cast of a double to long long: truncation toward zero."""
    return int(x)


def sleep_time_ms(args: Options, m: MemInfo, flavor: Flavor) -> int:
    """sleep_time_ms(): how long memory and swap, filling at MEM_FILL_RATE and SWAP_FILL_RATE, take to
    reach the TERM limits from here, clamped to 100..1000 ms."""
    if flavor.user_mem_total:
        mem_kib = _c_ll((m.MemAvailablePercent - args.mem_term_percent) * m.UserMemTotalKiB / 100)
        swap_kib = _c_ll((m.SwapFreePercent - args.swap_term_percent) * m.SwapTotalKiB / 100)
    else:  # v1.7 counts in MiB: percent * 10 * MiB = KiB
        mem_kib = _c_ll((m.MemAvailablePercent - args.mem_term_percent) * 10 * (m.MemTotalKiB // 1024))
        swap_kib = _c_ll((m.SwapFreePercent - args.swap_term_percent) * 10 * (m.SwapTotalKiB // 1024))
    ms = max(mem_kib, 0) // MEM_FILL_RATE + max(swap_kib, 0) // SWAP_FILL_RATE
    return min(max(ms, MIN_SLEEP_MS), MAX_SLEEP_MS)
