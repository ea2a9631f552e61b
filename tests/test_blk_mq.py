"""The block plug and its requests (vmlab.kernel.blk_mq): which writes merge, when a plug is flushed
early, and when each request completes."""

from __future__ import annotations

from vmlab.kernel.blk_mq import BLK_MAX_REQUEST_COUNT, BlockDevice, BlockLayer
from vmlab.kernel.clock import Clock, Costs

IO_NS = 1_000


def _layer() -> tuple[BlockLayer, list[tuple[int, int]]]:
    """A block layer on a clock of IO_NS an I/O, and the list its test writes log (position, time
    completed) into."""
    return BlockLayer(Clock(Costs(swap_io_ns=IO_NS))), []


def _write(block: BlockLayer, device: BlockDevice, done: list[tuple[int, int]], position: int) -> None:
    """A one-page write at `position` that logs its completion."""
    block.submit_page(device, position, lambda: done.append((position, block.clock.now_ns)))


def test_writes_to_consecutive_slots_merge_up_to_max_segments() -> None:
    """Under a plug, 300 writes to consecutive slots make requests of max_segments pages; the first
    request is sent when the second starts (it holds 128 KiB or more: BLK_PLUG_FLUSH_SIZE), the last
    at blk_finish_plug; the device serves them one after another, all pages of a request at once."""
    block, done = _layer()
    device = BlockDevice(max_segments=128)
    plugged = block.start_plug()
    assert plugged and not block.start_plug()  # nested: a no-op
    for position in range(1, 301):
        _write(block, device, done, position)
    assert block.plug is not None and [len(r.end_io) for r in block.plug.requests] == [44]
    block.finish_plug(False)  # the nested plug's finish leaves the outer one alone
    assert block.plug is not None
    block.finish_plug(plugged)
    assert block.plug is None and device.busy_until == 3 * IO_NS
    block.clock.advance(3 * IO_NS)
    assert [t for _, t in done] == [IO_NS] * 128 + [2 * IO_NS] * 128 + [3 * IO_NS] * 44
    assert [p for p, _ in done] == list(range(1, 301))


def test_a_write_elsewhere_starts_a_request_and_a_full_plug_is_flushed() -> None:
    """Writes to slots that do not continue the last request start requests of their own; the plug
    is sent when it holds BLK_MAX_REQUEST_COUNT of them and another comes."""
    block, done = _layer()
    device = BlockDevice()
    with block.plugged():
        for i in range(BLK_MAX_REQUEST_COUNT + 1):
            _write(block, device, done, 10 * i + 1)
        assert block.plug is not None and len(block.plug.requests) == 1  # the first 32 were sent
        assert device.busy_until == BLK_MAX_REQUEST_COUNT * IO_NS
    assert block.plug is None and device.busy_until == (BLK_MAX_REQUEST_COUNT + 1) * IO_NS
    block.clock.advance(device.busy_until)
    assert [t for _, t in done] == [IO_NS * (i + 1) for i in range(BLK_MAX_REQUEST_COUNT + 1)]


def test_without_a_plug_each_write_is_a_request_sent_at_once() -> None:
    block, done = _layer()
    device, other = BlockDevice(), BlockDevice()
    for position in (1, 2, 3):
        _write(block, device, done, position)
    _write(block, other, done, 4)  # another device's queue is its own
    assert device.busy_until == 3 * IO_NS and other.busy_until == IO_NS
    block.clock.advance(3 * IO_NS)
    assert done == [(1, IO_NS), (4, IO_NS), (2, 2 * IO_NS), (3, 3 * IO_NS)]


def test_flush_plug_sends_what_it_holds_and_stays_plugged() -> None:
    """blk_flush_plug() (a task about to sleep) sends the requests gathered; later writes gather anew."""
    block, done = _layer()
    device = BlockDevice()
    plugged = block.start_plug()
    _write(block, device, done, 1)
    block.flush_plug()
    assert device.busy_until == IO_NS and block.plug is not None and not block.plug.requests
    _write(block, device, done, 2)  # continues slot 1, but that request has gone
    block.finish_plug(plugged)
    assert device.busy_until == 2 * IO_NS
