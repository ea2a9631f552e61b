"""Run a command repeatedly while the host is loaded the way a busy CI machine is, and count passes.

The load (all started here, all stopped here by process-group id, even on Ctrl-C):
- two busy-loop Python processes (both CPUs taken),
- one Python process allocating, touching and freeing 64 MiB in a loop (what other test runs do),
- a shell loop streaming a large file through the page cache with dd (write it, read it back),
- `echo 1 > /proc/sys/vm/drop_caches` every `--drop-every` seconds (needs root).

    python bench/hostload.py -n 10 -- python -m pytest -q tests/test_lru_host.py -k mmap_random_twice

Prints one line per run (exit status, seconds) and the pass count; the output of failed runs goes to
`--log` (default /tmp/hostload-<pid>.log).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

BUSY = "while True: pass"
#: Another test run's memory traffic: 64 MiB allocated, touched and freed again and again (page faults,
#: page allocations and frees on every CPU it runs on).
CHURN = "while True: b = b\"\\x01\" * (64 << 20); del b"


def _start(argv: list[str]) -> subprocess.Popen[bytes]:
    """A load process in its own session (so its whole group can be stopped by its id)."""
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group `proc` leads (its own, made by _start), reap it, and wait (10 s at
    most) until every member has gone (a dd in the middle of a write dies only when its I/O ends)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    for _ in range(200):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _dropper(stop: threading.Event, every: float) -> None:
    """Drop the clean page cache every `every` seconds until `stop` is set."""
    while not stop.wait(every):
        with contextlib.suppress(OSError), open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1")


@contextlib.contextmanager
def load(stream_mib: int, drop_every: float) -> Iterator[None]:
    """The load described in the module text, for the duration of the `with` block."""
    scratch = Path(tempfile.mkdtemp(prefix="hostload-", dir="/var/tmp"))
    big = scratch / "stream.dat"
    stream = (f"while :; do dd if=/dev/zero of={big} bs=1M count={stream_mib} status=none; "
              f"dd if={big} of=/dev/null bs=1M status=none; done")
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    dropper = threading.Thread(target=_dropper, args=(stop, drop_every), daemon=True)
    try:
        procs += [_start([sys.executable, "-c", BUSY]) for _ in range(2)]
        procs.append(_start([sys.executable, "-c", CHURN]))
        procs.append(_start(["bash", "-c", stream]))
        dropper.start()
        yield
    finally:
        stop.set()
        for proc in procs:
            _stop(proc)
        if dropper.is_alive():
            dropper.join()
        big.unlink(missing_ok=True)
        scratch.rmdir()


def main() -> int:
    """Parse the options, run the command under load `-n` times; exit 0 when every run passed."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10, help="runs (default 10)")
    parser.add_argument("--no-load", action="store_true", help="run without the load (a baseline)")
    parser.add_argument("--stream-mib", type=int, default=2048, help="size of the streamed file")
    parser.add_argument("--drop-every", type=float, default=3.0, help="seconds between drop_caches")
    parser.add_argument("--log", default=f"/tmp/hostload-{os.getpid()}.log")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    passes = 0
    ctx = contextlib.nullcontext() if args.no_load else load(args.stream_mib, args.drop_every)
    with ctx, open(args.log, "w") as log:
        if not args.no_load:
            time.sleep(2)  # let the stream fill the cache first
        for i in range(args.n):
            start = time.monotonic()
            run = subprocess.run(command, capture_output=True, text=True, check=False)
            took = time.monotonic() - start
            passes += run.returncode == 0
            print(f"run {i + 1}: exit {run.returncode} ({took:.1f} s)", flush=True)
            if run.returncode != 0:
                log.write(f"===== run {i + 1}: exit {run.returncode}\n{run.stdout}\n{run.stderr}\n")
                log.flush()
    print(f"{passes}/{args.n} passed{'' if args.no_load else ' under load'}; failures in {args.log}")
    return 0 if passes == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
