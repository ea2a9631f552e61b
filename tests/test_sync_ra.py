"""page_cache_sync_ra() reads a one-page request (standalone, or forced by FMODE_RANDOM / ra_pages 0)
itself instead of through force_page_cache_ra() / do_page_cache_ra() / page_cache_ra_unbounded(). The
property: on the same machine state, it leaves exactly what the kernel's composition of those general
functions leaves (`_composed_sync_ra`, the function as it reads in mm/readahead.c), for any request
size, index (past EOF too), previous position, readahead hint and device limits."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from test_replay import _machine, _state
from vmlab.kernel import readahead
from vmlab.kernel.filemap import filemap_read
from vmlab.kernel.readahead import (
    ULONG_MAX,
    ReadaheadControl,
    do_page_cache_ra,
    force_page_cache_ra,
    get_init_ra_size,
    page_cache_prev_miss,
    page_cache_ra_order,
    page_cache_sync_ra,
    ractl_max_pages,
)
from vmlab.kernel.uapi import PAGE_SHIFT, PAGE_SIZE


def _composed_sync_ra(ractl: ReadaheadControl, req_count: int) -> None:
    """page_cache_sync_ra() of mm/readahead.c, every read through the general functions."""
    file = ractl.file
    ra = file.f_ra
    index = ractl.index
    do_forced_ra = file.fmode_random
    if not ra.ra_pages:
        req_count = 1
        do_forced_ra = True
    if do_forced_ra:
        force_page_cache_ra(ractl, req_count)
        return
    max_pages = ractl_max_pages(ractl, req_count)
    prev_index = (ra.prev_pos & ULONG_MAX) >> PAGE_SHIFT
    if not index or req_count > max_pages or (index - prev_index) & ULONG_MAX <= 1:
        ra.start = index
        ra.size = get_init_ra_size(req_count, max_pages)
        ra.async_size = ra.size - req_count if ra.size > req_count else ra.size >> 1
    else:
        miss = page_cache_prev_miss(file, index - 1, max_pages)
        contig_count = (index - miss - 1) & ULONG_MAX
        if contig_count <= req_count:
            do_page_cache_ra(ractl, req_count, 0)
            return
        if miss == ULONG_MAX:
            contig_count *= 2
        ra.start = index
        ra.size = min(contig_count + req_count, max_pages)
        ra.async_size = 1
    ra.order = 0
    ractl.index = ra.start
    page_cache_ra_order(ractl, ra)


@settings(max_examples=200, deadline=None)
@given(file_pages=st.integers(8, 3000), tail=st.sampled_from([0, 1, 4095]), seed=st.integers(0, 2**32 - 1),
       n=st.integers(0, 3000), req_count=st.sampled_from([1, 1, 1, 2, 5, 40]), random_hint=st.booleans(),
       ra_pages=st.sampled_from([None, 0, 1]), io_pages=st.sampled_from([None, 0, 1, 64]),
       last=st.sampled_from([None, -1, 1]), eof=st.sampled_from([None, -1, 0, 1]))
@example(file_pages=100, tail=0, seed=1, n=0, req_count=1, random_hint=True, ra_pages=None, io_pages=None,
         last=None, eof=0)  # forced, at the page after the last: nothing to read
@example(file_pages=100, tail=0, seed=1, n=0, req_count=1, random_hint=False, ra_pages=None, io_pages=None,
         last=None, eof=0)  # standalone, at the page after the last
def test_sync_ra_one_page_is_the_general_readahead(file_pages: int, tail: int, seed: int, n: int,
                                                   req_count: int, random_hint: bool, ra_pages: int | None,
                                                   io_pages: int | None, last: int | None,
                                                   eof: int | None) -> None:
    rng = np.random.default_rng(seed)
    trace = rng.integers(0, file_pages, n).tolist()
    index = int(rng.integers(0, file_pages + 3)) if eof is None else file_pages + eof  # at EOF, or anywhere
    labs = [_machine("two-list", file_pages, tail, False, random_hint) for _ in range(2)]
    try:
        ractls = []
        for lab, _, fd in labs:
            file = lab.model.tasks[lab.pid].files[fd]
            for i in trace:  # some state: cached pages, shadows, reclaim
                filemap_read(lab.mem, file, i << PAGE_SHIFT, PAGE_SIZE)
            if ra_pages is not None:
                file.f_ra.ra_pages = ra_pages
            if io_pages is not None:
                file.inode.io_pages = io_pages
            if last is not None:  # the previous read ended just before the index, or never was
                file.f_ra.prev_pos = -1 if last < 0 else index << PAGE_SHIFT
            ractls.append(ReadaheadControl(lab.mem, file, index))
        page_cache_sync_ra(ractls[0], req_count)
        _composed_sync_ra(ractls[1], req_count)
        (one, path, fd1), (two, _, fd2) = labs
        assert _state(one, path, fd1) == _state(two, path, fd2)
        assert (ractls[0].index, ractls[0].ios, ractls[0].workingset) == (
            ractls[1].index, ractls[1].ios, ractls[1].workingset)
    finally:
        for lab, _, _ in labs:
            lab.close()


def test_one_page_reads_take_the_short_path() -> None:
    """The property above is not vacuous: standalone and forced one-page misses do not reach
    do_page_cache_ra() nor force_page_cache_ra(), and read their page."""
    lab, path, fd = _machine("two-list", 400, 0, False)
    calls: list[str] = []
    saved = readahead.do_page_cache_ra, readahead.force_page_cache_ra
    readahead.do_page_cache_ra = lambda *a: calls.append("do")  # type: ignore[assignment]
    readahead.force_page_cache_ra = lambda *a: calls.append("force")  # type: ignore[assignment]
    try:
        file = lab.model.tasks[lab.pid].files[fd]
        file.f_ra.prev_pos = 100 << PAGE_SHIFT
        page_cache_sync_ra(ReadaheadControl(lab.mem, file, 200), 1)  # standalone: nothing cached before
        file.fmode_random = True
        page_cache_sync_ra(ReadaheadControl(lab.mem, file, 300), 1)  # forced
        inode = lab.model._inode(path)
        assert calls == [] and 200 in inode.i_pages and 300 in inode.i_pages
        assert lab.mem.events["ra_io"] == 2
    finally:
        readahead.do_page_cache_ra, readahead.force_page_cache_ra = saved
        lab.close()
