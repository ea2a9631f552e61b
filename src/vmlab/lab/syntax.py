"""The one parser for strace's call syntax, shared by the scenario language and the strace log reader.

A line of `strace -f -v -s N [-y] [-tt|-ttt|-r] [-T]` output is: an optional pid (`1234  ` or
`[pid 1234] `), an optional timestamp, then a body — a call `name(args) = result`, a call head ending in
`<unfinished ...>`, a `<... name resumed>` tail, a signal `--- SIGSEGV {...} ---` or an exit
`+++ exited with 0 +++` / `+++ killed by SIGSEGV +++` — and an optional `<0.000012>` duration.

Arguments are kept as token slices and only turned into expressions (`parse_expr`) for the calls a
reader wants to interpret, so an unmodelled call with structs and keyword arguments never fails to parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmlab.errors import InputError

#: Size suffixes accepted after a decimal number in scenarios (`4K`, `2M`, `1G`).
SIZE_SUFFIXES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

_PREFIX = re.compile(
    r"(?:\[pid\s+(?P<pid1>\d+)\]\s+|(?P<pid2>\d+)\s+(?=\S))?"
    r"(?:(?P<ts>\d\d:\d\d:\d\d(?:\.\d+)?|\d+\.\d+)\s+)?"
)
_DURATION = re.compile(r"\s+<\d+\.\d+>\s*$")
_UNFINISHED = " <unfinished ...>"
_RESUMED = re.compile(r"<\.\.\. (?P<name>\w+) resumed>")
_SIGNAL = re.compile(r"--- (?P<sig>SIG\w+)(?: \{(?P<info>.*)\})? ---$")
_EXITED = re.compile(r"\+\+\+ exited with (?P<status>-?\d+) \+\+\+$")
_KILLED = re.compile(r"\+\+\+ killed by (?P<sig>SIG\w+)(?: \(core dumped\))? \+\+\+$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|\d+")
_OPS = ("...", "<<", ">>")


@dataclass(frozen=True)
class Token:
    """One lexical token: kind is NUM, NAME, STR or OP; `col` is 1-based in the source line."""

    kind: str
    text: str
    col: int
    value: int | bytes | None = None
    decoration: str | None = None  # strace -y: the path after `3<...>`
    truncated: bool = False  # a string strace cut short (`"abc"...`)


# --- expressions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    """An integer literal; `path` is strace -y's decoration of a file descriptor (`3</etc/passwd>`)."""

    value: int
    col: int
    path: str | None = None


@dataclass(frozen=True)
class Name:
    """A symbolic name: a uapi constant (`MAP_PRIVATE`, `NULL`) or a scenario variable."""

    name: str
    col: int
    path: str | None = None


@dataclass(frozen=True)
class Str:
    """A C string literal with its escapes decoded to bytes."""

    value: bytes
    col: int
    truncated: bool = False

    def text(self) -> str:
        """The string as a path: UTF-8 with undecodable bytes kept (surrogateescape)."""
        return self.value.decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Seq:
    """An array `[a, b, ...]` (execve's argv/envp); `truncated` when strace printed `...`."""

    items: tuple[Expr, ...]
    col: int
    truncated: bool = False


@dataclass(frozen=True)
class BinOp:
    """`left OP right` for OP in | + - * / << >> &."""

    op: str
    left: Expr
    right: Expr
    col: int


@dataclass(frozen=True)
class Unary:
    """`-x` or `~x`."""

    op: str
    operand: Expr
    col: int


Expr = Num | Name | Str | Seq | BinOp | Unary


def expr_names(expr: Expr) -> list[Name]:
    """Every Name node inside `expr`, in source order."""
    if isinstance(expr, Name):
        return [expr]
    if isinstance(expr, BinOp):
        return expr_names(expr.left) + expr_names(expr.right)
    if isinstance(expr, Unary):
        return expr_names(expr.operand)
    if isinstance(expr, Seq):
        return [n for item in expr.items for n in expr_names(item)]
    return []


class EvalError(ValueError):
    """An expression without a value (C leaves it undefined): a division by zero, or a shift by a
    count outside 0..63; `col` is the operator's column."""

    def __init__(self, message: str, col: int) -> None:
        super().__init__(message)
        self.message, self.col = message, col


def evaluate(expr: Expr, env: dict[str, int]) -> int | str | tuple[str, ...]:
    """The value of `expr` with names looked up in `env` (a KeyError names an unbound variable; an
    EvalError an operation C leaves undefined)."""
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Name):
        return env[expr.name]
    if isinstance(expr, Str):
        return expr.text()
    if isinstance(expr, Seq):
        return tuple(item.text() for item in expr.items if isinstance(item, Str))
    if isinstance(expr, Unary):
        val = evaluate(expr.operand, env)
        assert isinstance(val, int)
        return -val if expr.op == "-" else ~val
    left, right = evaluate(expr.left, env), evaluate(expr.right, env)
    assert isinstance(left, int) and isinstance(right, int)
    _check_operand(expr, right)
    return _BINOPS[expr.op](left, right)


def _check_operand(expr: BinOp, right: int) -> None:
    """Raise EvalError when `right` makes `expr` undefined in C (and, for a huge shift, unbounded)."""
    if expr.op == "/" and right == 0:
        raise EvalError("division by zero", expr.col)
    if expr.op in ("<<", ">>") and not 0 <= right < 64:
        raise EvalError(f"shift count {right} is not 0 to 63", expr.col)


def check_operands(expr: Expr, src: Source, constants: dict[str, int]) -> None:
    """Raise InputError at the operator when an operand made of constants alone (no variables) makes an
    operation of `expr` undefined, so that a scenario or log fails before anything runs."""
    if isinstance(expr, Unary):
        check_operands(expr.operand, src, constants)
    elif isinstance(expr, Seq):
        for item in expr.items:
            check_operands(item, src, constants)
    elif isinstance(expr, BinOp):
        check_operands(expr.left, src, constants)
        check_operands(expr.right, src, constants)
        if all(n.name in constants for n in expr_names(expr.right)):
            right = evaluate(expr.right, constants)
            if isinstance(right, int):
                try:
                    _check_operand(expr, right)
                except EvalError as err:
                    raise src.error(err.message, err.col) from None


def _c_div(a: int, b: int) -> int:
    """C's integer division: the quotient truncated toward zero (Python's // rounds down)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


_BINOPS = {
    "|": lambda a, b: a | b,
    "&": lambda a, b: a & b,
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _c_div,
    "<<": lambda a, b: a << b,
    ">>": lambda a, b: a >> b,
}

# --- lexer -----------------------------------------------------------------------------------------

_ESCAPES = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, "e": 27, '"': 34, "\\": 92, "'": 39}


class Source:
    """Where a text being parsed came from, so errors can point at FILE:LINE:COL."""

    def __init__(self, path: str, line: int, col0: int = 0) -> None:
        self.path, self.line, self.col0 = path, line, col0

    def error(self, message: str, col: int) -> InputError:
        """An InputError at column `col` of the parsed text (1-based)."""
        return InputError(message, self.path, self.line, self.col0 + col)


def unescape_c(text: str, start: int, src: Source) -> tuple[bytes, int]:
    """Decode the C string literal whose opening quote is at text[start]; return (bytes, index after it)."""
    out = bytearray()
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            return bytes(out), i + 1
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        i += 1
        if i >= n:
            break
        esc = text[i]
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 1
        elif esc == "x":
            m = re.match(r"[0-9a-fA-F]{1,2}", text[i + 1 :])
            if not m:
                raise src.error("bad \\x escape in string", i)
            out.append(int(m.group(), 16))
            i += 1 + len(m.group())
        elif esc in "01234567":
            m = re.match(r"[0-7]{1,3}", text[i:])
            assert m
            out.append(int(m.group(), 8) & 0xFF)
            i += len(m.group())
        else:
            out += esc.encode()
            i += 1
    raise src.error("unterminated string", start + 1)


def _decoration(text: str, i: int) -> int:
    """Index just past the `<...>` decoration starting at text[i] == '<' (brackets inside may nest)."""
    depth = 0
    j = i + 1
    while j < len(text):
        ch = text[j]
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif ch == ">" and depth == 0:
            return j + 1
        j += 1
    return len(text)


def tokenize(text: str, src: Source, sizes: bool = False) -> list[Token]:
    """Split `text` into tokens; `/* comments */` are dropped; `sizes` allows `4K`-style suffixes.

    Any character that is not part of a number, name or string becomes a one-character OP token, so
    arbitrary strace argument text (structs, `~[...]`, `makedev(...)`) always tokenizes.
    """
    toks: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        col = i + 1
        if ch.isspace():
            i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise src.error("unterminated /* comment", col)
            i = end + 2
        elif ch == '"':
            value, i = unescape_c(text, i, src)
            truncated = text.startswith("...", i)
            if truncated:
                i += 3
            toks.append(Token("STR", text[col - 1 : i], col, value, truncated=truncated))
        elif ch.isdigit():
            m = _NUMBER.match(text, i)
            assert m
            digits = m.group()
            i = m.end()
            if digits.lower().startswith("0x"):
                value = int(digits, 16)
            elif len(digits) > 1 and digits[0] == "0":
                if not set(digits) <= set("01234567"):
                    raise src.error(f"bad octal number '{digits}'", col)
                value = int(digits, 8)
            else:
                value = int(digits)
            if i < n and (text[i].isalnum() or text[i] == "_"):
                if sizes and text[i] in SIZE_SUFFIXES and not (i + 1 < n and (text[i + 1].isalnum())):
                    value *= SIZE_SUFFIXES[text[i]]
                    i += 1
                else:
                    m2 = re.match(r"\w+", text[i:])
                    assert m2
                    raise src.error(f"bad number '{digits}{m2.group()}'", col)
            toks.append(_decorated(Token("NUM", text[col - 1 : i], col, value), text, i))
            i = _skip_decoration(text, i)
        elif ch.isalpha() or ch == "_":
            m = _NAME.match(text, i)
            assert m
            i = m.end()
            toks.append(_decorated(Token("NAME", m.group(), col), text, i))
            i = _skip_decoration(text, i)
        else:
            op = next((o for o in _OPS if text.startswith(o, i)), ch)
            toks.append(Token("OP", op, col))
            i += len(op)
    return toks


def _decorated(tok: Token, text: str, i: int) -> Token:
    """`tok` with strace -y's `<path>` attached when one follows it directly."""
    if i < len(text) and text[i] == "<" and i + 1 < len(text) and text[i + 1] not in " <=":
        end = _decoration(text, i)
        return Token(tok.kind, tok.text, tok.col, tok.value, decoration=text[i + 1 : end - 1])
    return tok


def _skip_decoration(text: str, i: int) -> int:
    """Index after a decoration at text[i], or i when there is none."""
    if i < len(text) and text[i] == "<" and i + 1 < len(text) and text[i + 1] not in " <=":
        return _decoration(text, i)
    return i


# --- expression parser -----------------------------------------------------------------------------

_PRECEDENCE = (("|",), ("&",), ("<<", ">>"), ("+", "-"), ("*", "/"))


class ExprParser:
    """Recursive descent over a token slice: C precedence for | & << >> + - * /, unary - and ~."""

    def __init__(self, toks: list[Token], src: Source, end_col: int) -> None:
        self.toks, self.src, self.pos, self.end_col = toks, src, 0, end_col

    def peek(self) -> Token | None:
        """The next token, or None at the end."""
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def next(self, what: str) -> Token:
        """Consume and return the next token; at the end, an error saying `what` was expected."""
        tok = self.peek()
        if tok is None:
            raise self.src.error(f"expected {what}", self.end_col)
        self.pos += 1
        return tok

    def parse_all(self) -> Expr:
        """One expression that uses every token."""
        expr = self.binary(0)
        tok = self.peek()
        if tok is not None:
            raise self.src.error(f"unexpected '{tok.text}'", tok.col)
        return expr

    def binary(self, level: int) -> Expr:
        """An expression whose operators bind at least as tightly as _PRECEDENCE[level]."""
        if level == len(_PRECEDENCE):
            return self.unary()
        left = self.binary(level + 1)
        while (tok := self.peek()) is not None and tok.kind == "OP" and tok.text in _PRECEDENCE[level]:
            self.pos += 1
            left = BinOp(tok.text, left, self.binary(level + 1), tok.col)
        return left

    def unary(self) -> Expr:
        """`-x`, `~x` or an atom."""
        tok = self.peek()
        if tok is not None and tok.kind == "OP" and tok.text in "-~":
            self.pos += 1
            operand = self.unary()
            if tok.text == "-" and isinstance(operand, Num):
                return Num(-operand.value, tok.col, operand.path)
            return Unary(tok.text, operand, tok.col)
        return self.atom()

    def atom(self) -> Expr:
        """A number, name, string, `( expr )` or `[ list ]`."""
        tok = self.next("an expression")
        if tok.kind == "NUM":
            assert isinstance(tok.value, int)
            return Num(tok.value, tok.col, tok.decoration)
        if tok.kind == "NAME":
            return Name(tok.text, tok.col, tok.decoration)
        if tok.kind == "STR":
            assert isinstance(tok.value, bytes)
            return Str(tok.value, tok.col, tok.truncated)
        if tok.text == "(":
            inner = self.binary(0)
            close = self.next("')'")
            if close.text != ")":
                raise self.src.error("expected ')'", close.col)
            return inner
        if tok.text == "[":
            return self.array(tok.col)
        raise self.src.error(f"unexpected '{tok.text}'", tok.col)

    def array(self, col: int) -> Seq:
        """The rest of `[a, b, ...]` after its `[`."""
        items: list[Expr] = []
        truncated = False
        while True:
            tok = self.peek()
            if tok is not None and tok.text == "]":
                self.pos += 1
                return Seq(tuple(items), col, truncated)
            if tok is not None and tok.text == "...":
                self.pos += 1
                truncated = True
            else:
                items.append(self.binary(0))
            sep = self.next("']'")
            if sep.text == "]":
                return Seq(tuple(items), col, truncated)
            if sep.text != ",":
                raise self.src.error("expected ',' or ']'", sep.col)


def parse_expr(toks: list[Token], src: Source, end_col: int) -> Expr:
    """Parse a complete expression from `toks`; `end_col` is where to point when it ends too early."""
    return ExprParser(toks, src, end_col).parse_all()


# --- calls and lines -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """One argument of a call, still as tokens (interpreted only for calls a reader models)."""

    toks: tuple[Token, ...]
    col: int  # where the argument starts (for errors)
    end_col: int

    @property
    def text(self) -> str:
        """The argument's tokens joined (for messages and unmodelled calls)."""
        return " ".join(t.text for t in self.toks)


@dataclass(frozen=True)
class Result:
    """The `= ...` part: a value (None for `?`), an errno name, strace -y's path of a returned fd."""

    value: Expr | None
    errno: str | None
    col: int
    path: str | None = None


@dataclass(frozen=True)
class Call:
    """A parsed call `name(args) [= result]`; `unfinished` for a head ending in `<unfinished ...>`."""

    name: str
    col: int
    args: tuple[Arg, ...]
    result: Result | None
    unfinished: bool = False


@dataclass(frozen=True)
class Signal:
    """`--- SIGSEGV {si_signo=SIGSEGV, ...} ---`."""

    signal: str
    info: str


@dataclass(frozen=True)
class Exited:
    """`+++ exited with N +++` (signal None) or `+++ killed by SIG +++`."""

    status: int | None
    signal: str | None


@dataclass(frozen=True)
class Resumed:
    """A `<... name resumed>TAIL` line, to be joined with its `<unfinished ...>` head."""

    name: str
    tail: str
    tail_col: int


@dataclass(frozen=True)
class Line:
    """A strace line split into its pid prefix and body; `body_col` is the body's 1-based column."""

    pid: int | None
    body: str
    body_col: int


def split_prefix(text: str) -> Line:
    """Strip the pid prefix, timestamp and `<duration>` of a strace line (all optional)."""
    lead = len(text) - len(text.lstrip())
    m = _PREFIX.match(text, lead)
    assert m
    pid = m.group("pid1") or m.group("pid2")
    body = _DURATION.sub("", text[m.end() :]).rstrip()
    return Line(int(pid) if pid else None, body, m.end() + 1)


def parse_event(body: str, src: Source, sizes: bool = False) -> Call | Signal | Exited | Resumed:
    """Parse a body (after split_prefix): a call, a signal, an exit, or a resumed tail."""
    if m := _SIGNAL.match(body):
        return Signal(m.group("sig"), m.group("info") or "")
    if m := _EXITED.match(body):
        return Exited(int(m.group("status")), None)
    if m := _KILLED.match(body):
        return Exited(None, m.group("sig"))
    if m := _RESUMED.match(body):
        return Resumed(m.group("name"), body[m.end() :], m.end() + 1)
    return parse_call(body, src, sizes)


def parse_call(text: str, src: Source, sizes: bool = False) -> Call:
    """Parse `name(args) [= result]` (optionally ending in `<unfinished ...>`)."""
    unfinished = text.endswith(_UNFINISHED.strip())
    if unfinished:
        text = text[: text.rindex("<unfinished")].rstrip()
    toks = tokenize(text, src, sizes)
    if not toks or toks[0].kind != "NAME":
        raise src.error("expected a syscall name", toks[0].col if toks else 1)
    name = toks[0]
    if len(toks) < 2 or toks[1].text != "(":
        raise src.error(f"expected '(' after '{name.text}'", name.col + len(name.text))
    args, pos = _split_args(toks, 2, src, len(text) + 1, unfinished)
    result = None
    if pos < len(toks):
        if toks[pos].text != "=":
            raise src.error(f"expected '= result' after the call, found '{toks[pos].text}'", toks[pos].col)
        result = parse_result(toks[pos + 1 :], src, len(text) + 1)
    return Call(name.text, name.col, tuple(args), result, unfinished)


def _split_args(
    toks: list[Token], pos: int, src: Source, end_col: int, unfinished: bool
) -> tuple[list[Arg], int]:
    """Split the tokens after `(` into arguments at depth-0 commas; return them and the index after `)`."""
    args: list[Arg] = []
    depth = 0
    start = pos
    closers = {")": "(", "]": "[", "}": "{"}
    while pos < len(toks):
        tok = toks[pos]
        if tok.kind == "OP" and tok.text in "([{":
            depth += 1
        elif tok.kind == "OP" and tok.text in closers:
            if depth == 0:
                if tok.text != ")":
                    raise src.error(f"unbalanced '{tok.text}'", tok.col)
                _add_arg(args, toks, start, pos, tok.col)
                return args, pos + 1
            depth -= 1
        elif tok.kind == "OP" and tok.text == "," and depth == 0:
            _add_arg(args, toks, start, pos, tok.col, keep_empty=True)
            start = pos + 1
        pos += 1
    if not unfinished:
        raise src.error("missing ')'", end_col)
    _add_arg(args, toks, start, pos, end_col)
    return args, pos


def _add_arg(args: list[Arg], toks: list[Token], start: int, end: int, end_col: int,
             keep_empty: bool = False) -> None:
    """Append toks[start:end] as an argument (an empty trailing one is dropped: `f()`)."""
    if start == end and not keep_empty:
        return
    col = toks[start].col if start < end else end_col
    args.append(Arg(tuple(toks[start:end]), col, end_col))


def parse_result(toks: list[Token], src: Source, end_col: int) -> Result:
    """Parse what follows `=`: `?`, a value (`0x7ffff7ff6000`, `3</path>`), or `-1 ENAME (message)`.

    Anything after the value or errno (strace's `(flags ...)`, `(Timeout)`) is ignored.
    """
    if not toks:
        raise src.error("expected a result after '='", end_col)
    if toks[0].text == "?":
        return Result(None, None, toks[0].col)
    # The value ends at the first errno name or parenthesised comment strace appends.
    stop = len(toks)
    for i, tok in enumerate(toks):
        after_value = i > 0 and toks[i - 1].kind != "OP"
        is_errno = tok.kind == "NAME" and re.fullmatch(r"E[A-Z0-9_]+", tok.text)
        if after_value and (is_errno or tok.text == "("):
            stop = i
            break
    value = parse_expr(list(toks[:stop]), src, end_col)
    errno = None
    if stop < len(toks) and toks[stop].kind == "NAME":
        errno = toks[stop].text
    path = value.path if isinstance(value, Num) else None
    return Result(value, errno, toks[0].col, path)


def read_source(path: str, what: str) -> str:
    """The text of a user's input file (a scenario, a log); InputError naming it when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read()
    except OSError as err:
        raise InputError(f"cannot read {what}: {err.strerror}", path) from None
