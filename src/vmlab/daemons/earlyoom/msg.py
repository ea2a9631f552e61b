"""earlyoom's msg.c: parse_term_kill_tuple() (the `-m/-s/-M/-S TERM[,KILL]` arguments) with strtod()'s
rules, and the C printf conversions the log lines use."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_DEC = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_HEX = re.compile(r"\s*([+-]?)0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][+-]?\d+)?")
_SPECIAL = re.compile(r"\s*([+-]?)(infinity|inf|nan)", re.IGNORECASE)
DBL_MAX = 1.7976931348623157e308


def strtod(text: str) -> tuple[float, str, bool]:
    """C strtod(): the value of the longest numeric prefix (0 if none), the rest of the text (endptr),
    and whether errno would be ERANGE (an overflow to HUGE_VAL)."""
    if m := _HEX.match(text):
        mant = m.group(2)
        value = float.fromhex(f"{m.group(1)}0x{mant}{m.group(3) or 'p0'}")
        return value, text[m.end():], math.isinf(value)
    if m := _SPECIAL.match(text):
        value = float(m.group(1) + m.group(2))
        return value, text[m.end():], False
    if m := _DEC.match(text):
        value = float(m.group().strip())
        return value, text[m.end():], math.isinf(value)
    return 0.0, text, False


def fmt_lf(value: float) -> str:
    """printf("%lf"): six decimals, and glibc's spelling of infinities and NaN."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if math.isnan(value):
        return "nan" if math.copysign(1, value) > 0 else "-nan"
    return f"{value:f}"


def pct(value: float) -> str:
    """PRIPCT, "%5.2lf%%"."""
    text = f"{value:5.2f}" if math.isfinite(value) else fmt_lf(value).rjust(5)
    return text + "%"


@dataclass(frozen=True)
class TermKill:
    """A parsed TERM[,KILL] tuple; `err` is the message earlyoom prints after "-m: " (empty: fine);
    `warning` a line it prints and goes on."""

    term: float = 0.0
    kill: float = 0.0
    err: str = ""
    warning: str = ""


def _parse_part(part: str, upper_limit: int) -> tuple[float, str]:
    """parse_part(): a value 0 <= v <= upper_limit, or an error message."""
    value, rest, erange = strtod(part)
    if rest:
        return 0.0, f"trailing garbage '{rest}'"
    if erange:
        return 0.0, "conversion error: Numerical result out of range"
    if value > upper_limit:
        return 0.0, f"value {fmt_lf(value)} exceeds limit {upper_limit}"
    if value < 0:
        return 0.0, f"value {fmt_lf(value)} below zero"
    return value, ""


def parse_term_kill_tuple(optarg: str, upper_limit: int) -> TermKill:
    """parse_term_kill_tuple(): "TERM" (KILL = TERM/2) or "TERM,KILL"; TERM below KILL is raised to it
    (with a warning); both zero is an error."""
    if len(optarg.encode()) > 255:
        return TermKill(err=f"argument too long ({len(optarg.encode())} bytes)")
    part1, comma, part2 = optarg.partition(",")
    term, err = _parse_part(part1, upper_limit)
    if err:
        return TermKill(err=err)
    if comma:
        kill, err = _parse_part(part2, upper_limit)
        if err:
            return TermKill(term=term, err=err)
    else:
        kill = term / 2
    warning = ""
    if term < kill:
        warning = (f"warning: SIGTERM value {term:.2f} is below SIGKILL value {kill:.2f}, "
                   f"setting SIGTERM = SIGKILL = {kill:.2f}")
        term = kill
    if kill == 0 and term == 0:
        return TermKill(term, kill, "both SIGTERM and SIGKILL values are zero", warning)
    return TermKill(term, kill, "", warning)
