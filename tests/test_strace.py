"""The strace log reader and replay, on logs captured on this machine (fixtures/strace/README.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fake_backend import FakeBackend
from vmlab.errors import InputError
from vmlab.lab.strace import Call, Exited, Replay, maps_read_in_log, read_log

FIX = Path(__file__).parent / "fixtures" / "strace"


def test_unfinished_resumed_pairs_are_joined() -> None:
    events = read_log(str(FIX / "fork_sh.log"))
    vfork = next(e for e in events if isinstance(e.body, Call) and e.body.name == "vfork")
    assert vfork.pid == 3840 and vfork.body.result is not None  # type: ignore[union-attr]
    raw = (FIX / "fork_sh.log").read_text().splitlines()
    assert "vfork( <unfinished ...>" in raw[vfork.line - 1]  # reported at the head's line
    sig = next(e for e in events if isinstance(e.body, Call) and e.body.name == "rt_sigaction"
               and e.pid == 3841)
    assert len(sig.body.args) == 4  # type: ignore[union-attr]
    assert not any(isinstance(e.body, Call) and e.body.unfinished for e in events)


def test_exits_and_signals() -> None:
    events = read_log(str(FIX / "segv.log"))
    assert events[-1].body == Exited(None, "SIGSEGV")


def test_maps_text_the_program_read() -> None:
    events = read_log(str(FIX / "cat_y_tt_T.log"))
    text = maps_read_in_log(events, "/proc/self/maps")
    assert len(text) == 2214 and text.endswith("[vsyscall]\n")
    write = next(e for e in events if isinstance(e.body, Call) and e.body.name == "write")
    assert write.body.args[1].toks[0].value == text.encode()  # type: ignore[union-attr]  # cat wrote what it read
    assert maps_read_in_log(read_log(str(FIX / "cat_plain.log")), "/proc/self/maps").startswith(
        "555555554000-555555556000 r--p 00000000 fe:00 260131")


def test_maps_text_read_with_seeks_back() -> None:
    """bash's `read` builtin reads 128 bytes, takes one line and lseeks back to its end: the text is
    each read put at its offset, and bash echoed exactly that, line by line."""
    events = read_log(str(FIX / "bash_read.log"))
    text = maps_read_in_log(events, "/proc/self/maps")
    writes = [e.body for e in events if isinstance(e.body, Call) and e.body.name == "write"]
    echoed = b"".join(w.args[1].toks[0].value for w in writes if w.args[0].toks[0].value == 1)  # type: ignore[union-attr]
    assert text.endswith("[vsyscall]\n") and text.encode() == echoed


def test_missing_read_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no read"):
        maps_read_in_log(read_log(str(FIX / "errs.log")), "/proc/self/maps")


def test_replay_tracks_descriptors_and_follows_the_log() -> None:
    backend = FakeBackend()
    seen: list[str] = []
    replay = Replay(read_log(str(FIX / "cat_y_tt_T.log")), backend, report=lambda d: seen.append(d.message))
    maps = replay.run()
    # libc was opened as fd 3 after ld.so.cache's fd 3 was closed: the replay maps the right file.
    assert "7ffff7dfb000-7ffff7f51000 r-xp 00000000 00:00 0                          " \
           "/usr/lib/x86_64-linux-gnu/libc.so.6" in maps
    # the fake places memory elsewhere: each divergence is reported and the log's address is used.
    assert any("re-mapped with MAP_FIXED at the log's address" in m for m in seen)
    assert "7ffff7db0000-" not in maps  # cat's buffer was unmapped before exit
    assert backend.procs == {}  # the process exited and was reaped


def test_replay_at_read_stops_before_the_read() -> None:
    replay = Replay(read_log(str(FIX / "cat_y_tt_T.log")), FakeBackend(), at_read="/proc/self/maps",
                    report=lambda d: None)
    assert "7ffff7db0000-7ffff7dd2000 rw-p" in replay.run()  # cat's read buffer exists at the read


def test_unmodelled_calls_are_reported() -> None:
    log = ('1 execve("/bin/true", ["/bin/true"], []) = 0\n'
           "1 shmat(5, NULL, 0) = 0x7ffff7ff0000\n1 +++ exited with 0 +++\n")
    seen: list[str] = []
    Replay(_events(log), FakeBackend(), report=lambda d: seen.append(d.message)).run()
    assert seen == ["shmat() changes the address space but is not modelled; not followed"]


def _events(text: str) -> list:  # type: ignore[type-arg]
    from vmlab.lab.strace import parse_log

    return parse_log(text, "t.log")


needs_model = pytest.mark.skipif(importlib.util.find_spec("vmlab.kernel.machine") is None,
                                 reason="vmlab.kernel.machine (the model) is not merged yet")


@needs_model
@pytest.mark.parametrize("log", ["cat_y_tt_T.log", "cat_plain.log", "nof.log"])
def test_model_replay_matches_what_cat_read(log: str) -> None:
    from vmlab.lab.backends import make_backend

    events = read_log(str(FIX / log))
    backend = make_backend("model")
    try:
        got = Replay(events, backend, at_read="/proc/self/maps").run()
    finally:
        backend.close()
    assert got == maps_read_in_log(events, "/proc/self/maps")
