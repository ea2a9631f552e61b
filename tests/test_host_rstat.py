"""vmlab.host.rstat reads the memcg_flush_stats lines of a trace buffer as this kernel writes them."""

from __future__ import annotations

from vmlab.host.rstat import ROOT_ID, parse_trace

#: Captured on this host (6.18) from a tracefs instance with trace_clock mono and
#: events/memcg/memcg_flush_stats enabled: `cat /sys/kernel/tracing/instances/vt/trace` after 4.5 s.
CAPTURE = """\
# tracer: nop
#
    kworker/u8:3-7250    [000] ..... 82503.996117: memcg_flush_stats: memcg_id=1 stats_updates=129 force=1 needs_flush=1
          python-12725   [000] ..... 82504.244803: memcg_flush_stats: memcg_id=270239 stats_updates=0 force=0 needs_flush=0
    kworker/u8:3-7250    [000] ..... 82506.016075: memcg_flush_stats: memcg_id=1 stats_updates=192 force=1 needs_flush=1
"""  # noqa: E501  (the kernel's lines, as captured)


def test_parse_trace_reads_time_memcg_and_whether_it_flushed() -> None:
    flushes = parse_trace(CAPTURE)
    assert [(f.time_ns, f.memcg_id, f.flushed) for f in flushes] == [
        (82503_996117_000, ROOT_ID, True),
        (82504_244803_000, 270239, False),
        (82506_016075_000, ROOT_ID, True),
    ]
    # The periodic worker: the root, every FLUSH_TIME (2 s) and a little.
    assert 2.0e9 <= flushes[2].time_ns - flushes[0].time_ns < 2.1e9
