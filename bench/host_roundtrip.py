"""Round-trip cost of one HostBackend command, against a bare SOCK_SEQPACKET ping-pong measured in the
same run (a forked Python echo: the floor any channel-driven oracle pays).

Run: PYTHONPATH=src /work/venv/bin/python bench/host_roundtrip.py [N]
"""

from __future__ import annotations

import os
import socket
import sys
import time

from vmlab.backend import Settings
from vmlab.host.oracle import HostBackend
from vmlab.host.stepper_build import stepper_program


def echo_round_trip(n: int) -> float:
    """Seconds per 64-byte ping-pong with a forked Python echo process."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # the echo
        ours.close()
        while data := theirs.recv(64):
            theirs.send(data[:24])
        os._exit(0)
    theirs.close()
    msg = bytes(64)
    start = time.perf_counter()
    for _ in range(n):
        ours.send(msg)
        ours.recv(24)
    elapsed = time.perf_counter() - start
    ours.close()
    os.waitpid(pid, 0)
    return elapsed / n


def main() -> None:
    """Print µs per NOP, getpid syscall and present-page access, and their ratio to the echo."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    floor = echo_round_trip(n)
    with HostBackend() as host:
        pid = host.start(stepper_program(), Settings())
        page = host.syscall(pid, "mmap", (0, 4096, 3, 0x22, -1, 0))
        host.access(pid, page, 1, True)
        steps = {
            "nop": lambda: host.nop(pid),
            "syscall getpid": lambda: host.syscall(pid, "getpid", ()),
            "access (present page)": lambda: host.access(pid, page, 1, True),
        }
        print(f"echo ping-pong (reference): {floor * 1e6:7.1f} us")
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(n):
                step()
            per = (time.perf_counter() - start) / n
            print(f"{name:26s}: {per * 1e6:7.1f} us  ({per / floor:.2f}x the echo)")


if __name__ == "__main__":
    main()
