"""The kernel log ring (kernel/printk/printk.c): records stamped with the simulated clock, read as `dmesg`
prints them.

The model's time is the node's `Clock`, so two runs of one scenario print the same stamps. Only what the
model logs is here (no boot messages); `dmesg()` prints every record, `since(seq)` the newer ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmlab.kernel.clock import NSEC_PER_SEC, NSEC_PER_USEC, Clock

# Log levels (include/linux/kern_levels.h).
KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR, KERN_WARNING, KERN_NOTICE, KERN_INFO, KERN_DEBUG = range(8)
#: The ring keeps this many records (the kernel's is sized in bytes: CONFIG_LOG_BUF_SHIFT).
LOG_RECORDS = 1 << 16


@dataclass(frozen=True)
class LogRecord:
    """One printk record: its sequence number, level, time (ns since boot) and text (one line)."""

    seq: int
    level: int
    ts_ns: int
    text: str

    def dmesg(self) -> str:
        """The line as `dmesg` prints it: `[SSSSS.UUUUUU] text`."""
        secs, rem = divmod(self.ts_ns, NSEC_PER_SEC)
        return f"[{secs:5d}.{rem // NSEC_PER_USEC:06d}] {self.text}"


@dataclass
class Printk:
    """The log ring of one machine; `printk()` appends with the clock's current time."""

    clock: Clock
    records: list[LogRecord] = field(default_factory=list)
    next_seq: int = 0

    def printk(self, level: int, text: str) -> None:
        """Log `text` (one record per line, as pr_cont-free printk calls make them)."""
        for line in text.split("\n"):
            self.records.append(LogRecord(self.next_seq, level, self.clock.now_ns, line))
            self.next_seq += 1
        if len(self.records) > LOG_RECORDS:
            del self.records[: len(self.records) - LOG_RECORDS]

    def since(self, seq: int) -> list[LogRecord]:
        """The records with sequence number >= `seq`, oldest first."""
        return [r for r in self.records if r.seq >= seq]

    def dmesg(self, seq: int = 0) -> str:
        """The ring as `dmesg` prints it (from record `seq`), one line per record."""
        return "".join(r.dmesg() + "\n" for r in self.since(seq))


@dataclass
class RateLimit:
    """`DEFINE_RATELIMIT_STATE(name, interval, burst)`: at most `burst` passes per `interval_ns`."""

    interval_ns: int
    burst: int
    begin_ns: int = -1
    printed: int = 0
    missed: int = 0

    def __call__(self, now_ns: int) -> bool:
        """__ratelimit(): True when this event may print."""
        if self.begin_ns < 0 or now_ns >= self.begin_ns + self.interval_ns:
            self.begin_ns, self.printed = now_ns, 0
        if self.printed < self.burst:
            self.printed += 1
            return True
        self.missed += 1
        return False
