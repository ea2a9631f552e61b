"""The kernel log as /dev/kmsg gives it: records since a cursor, rendered as `dmesg` prints them."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    """One printk record: `PRI,SEQ,TS_USEC,FLAGS;MESSAGE` (Documentation/ABI/testing/dev-kmsg)."""

    level: int
    seq: int
    usec: int
    text: str

    def dmesg(self) -> str:
        """The line as `dmesg` prints it: `[SSSSS.UUUUUU] text`."""
        return f"[{self.usec // 1_000_000:5d}.{self.usec % 1_000_000:06d}] {self.text}"


def parse_record(raw: bytes) -> Record:
    """One /dev/kmsg read: the header, then the message up to the first newline (dictionary lines dropped)."""
    head, _, body = raw.partition(b";")
    pri, seq, usec = (int(x) for x in head.split(b",")[:3])
    text = body.split(b"\n", 1)[0].decode(errors="replace")
    return Record(pri & 7, seq, usec, text)


class Kmsg:
    """A reader of /dev/kmsg positioned at the end when opened: `read()` returns only newer records."""

    def __init__(self) -> None:
        """Open /dev/kmsg (needs CAP_SYSLOG when dmesg_restrict=1) and skip what is already there."""
        self._fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)

    def read(self) -> list[Record]:
        """Every record logged since the last read (records overwritten meanwhile are skipped)."""
        out = []
        while True:
            try:
                raw = os.read(self._fd, 8192)
            except BlockingIOError:
                return out
            except OSError as err:
                if err.errno == errno.EPIPE:  # the ring overwrote records we had not read
                    continue
                raise
            out.append(parse_record(raw))

    def close(self) -> None:
        """Close the reader."""
        os.close(self._fd)

    def __enter__(self) -> Kmsg:
        """Context manager: the reader itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the block."""
        self.close()
