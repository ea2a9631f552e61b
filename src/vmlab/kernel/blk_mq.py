"""A task's block plug and the requests it gathers, after block/blk-core.c (blk_start_plug,
blk_finish_plug), block/blk-merge.c (blk_attempt_plug_merge) and block/blk-mq.c
(blk_add_rq_to_plug), as far as swap writes meet them (6.18).

Reclaim plugs its scan (shrink_lruvec), so the swap writes one pass starts are not sent one by one:
each bio merges into the plug's last request when it continues it on the same device (a back merge:
the next slot) and the request has room (`max_segments` pages: every page is a segment of its own,
swap-out pages lying anywhere in memory); otherwise it starts a new request, and before that the
plug is flushed if it already holds BLK_MAX_REQUEST_COUNT requests or its last one reached
BLK_PLUG_FLUSH_SIZE. blk_finish_plug() dispatches what is left. Without a plug each bio is a request
dispatched at once.

The device serves the requests dispatched to it one after another, one I/O (Costs.swap_io_ns) each,
whatever its size (as a read's I/O carries its readahead pages); when a request completes, each of
its pages' end_io runs (end_swap_bio_write). (Served in parallel, every request done one I/O after
it was sent, the writer below wrote 2,705 pages instead of 2,400, before reclaim's scan was costed as
on the kernel (Costs.scan_ns): further from the kernel's.)

Measured on this machine (tests/test_host_swap.py, a 16 MiB writer in an 8 MiB memcg): the kernel
sent about 2,500 swap writes as about 100 requests of up to 254 pages (virtio-blk's max_segments).
MADV_PAGEOUT holds no plug of its own, but its 1,020 writes of a 1,020-page range reached the disk as
7 requests of up to 254 pages: the I/O scheduler (mq-deadline) merged the burst of bios while they
queued. The model plugs MADV_PAGEOUT's pass to stand for that merging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from vmlab.kernel.clock import Clock
from vmlab.kernel.uapi import PAGE_SIZE

#: blk_plug_max_rq_count() with one hardware queue: a plug holding this many requests is flushed
#: before it takes another.
BLK_MAX_REQUEST_COUNT: Final = 32
#: A plug whose last request holds this many bytes is flushed before it takes another request.
BLK_PLUG_FLUSH_SIZE: Final = 128 * 1024
#: The block layer's default max_segments (BLK_MAX_SEGMENTS): the model's device when it has no host
#: device to take it from.
BLK_MAX_SEGMENTS: Final = 128


@dataclass
class BlockDevice:
    """A request queue: its max_segments, and when the last request dispatched to it completes."""

    max_segments: int = BLK_MAX_SEGMENTS
    busy_until: int = 0


@dataclass
class Request:
    """Pages written to consecutive sectors of one device: the first page's position (a slot, in
    the device's pages) and each page's end_io, in order."""

    device: BlockDevice
    start: int
    end_io: list[Callable[[], None]]

    def bytes(self) -> int:
        """blk_rq_bytes(): the request's size."""
        return len(self.end_io) * PAGE_SIZE


@dataclass
class BlkPlug:
    """struct blk_plug: the requests gathered since blk_start_plug(), oldest first."""

    requests: list[Request] = field(default_factory=list)


@dataclass
class BlockLayer:
    """The machine's block layer: the clock that times the devices, and the plug of the task
    submitting now (current->plug: the model runs one task at a time), None when unplugged."""

    clock: Clock
    plug: BlkPlug | None = None

    def start_plug(self) -> bool:
        """blk_start_plug(): plug unless already plugged (a nested plug is a no-op). True when this
        call plugged: the caller then finishes the plug."""
        if self.plug is not None:
            return False
        self.plug = BlkPlug()
        return True

    def finish_plug(self, plugged: bool) -> None:
        """blk_finish_plug() of the plug start_plug() returned `plugged` for: dispatch its requests."""
        if plugged and self.plug is not None:
            plug, self.plug = self.plug, None
            self._dispatch(plug.requests)

    @contextmanager
    def plugged(self) -> Iterator[None]:
        """blk_start_plug() ... blk_finish_plug() around the block."""
        plugged = self.start_plug()
        try:
            yield
        finally:
            self.finish_plug(plugged)

    def flush_plug(self) -> None:
        """blk_flush_plug(), as schedule() does before the task sleeps: dispatch the requests gathered
        so far, staying plugged."""
        if self.plug is not None:
            requests, self.plug.requests = self.plug.requests, []
            self._dispatch(requests)

    def submit_page(self, device: BlockDevice, position: int, end_io: Callable[[], None]) -> None:
        """submit_bio() of a one-page write at `position` (in pages) of `device`; `end_io` runs when
        the request that carries it completes."""
        plug = self.plug
        if plug is None:
            self._dispatch([Request(device, position, [end_io])])
            return
        if plug.requests:
            last = plug.requests[-1]
            if (last.device is device and last.start + len(last.end_io) == position
                    and len(last.end_io) < device.max_segments):
                last.end_io.append(end_io)  # blk_attempt_plug_merge(): a back merge
                return
            if len(plug.requests) >= BLK_MAX_REQUEST_COUNT or last.bytes() >= BLK_PLUG_FLUSH_SIZE:
                self._dispatch(plug.requests)  # blk_add_rq_to_plug()'s early flush
                plug.requests = []
        plug.requests.append(Request(device, position, [end_io]))

    def _dispatch(self, requests: list[Request]) -> None:
        """blk_mq_flush_plug_list(): each request in turn to its device, completing one I/O after the
        ones before it there."""
        clock = self.clock
        for rq in requests:
            done = max(clock.now_ns, rq.device.busy_until) + clock.costs.swap_io_ns
            rq.device.busy_until = done
            clock.at(done, lambda rq=rq: _complete(rq))  # type: ignore[misc]


def _complete(rq: Request) -> None:
    """The request's I/O completed: each page's end_io, in order (blk_update_request -> bio_endio)."""
    for end_io in rq.end_io:
        end_io()
