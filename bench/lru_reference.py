"""The reference the page-replay benchmarks compare with: an `OrderedDict` LRU replaying a page trace."""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np


def ordered_dict_rate(pages: np.ndarray, capacity: int | None = None) -> float:
    """References per second of an OrderedDict LRU over the page numbers `pages`: a hit moves the page
    to the newest end; a miss adds it and, past `capacity` pages (None: unbounded), evicts the oldest."""
    lru: OrderedDict[int, bool] = OrderedDict()
    trace = pages.tolist()
    start = time.perf_counter()
    for page in trace:
        if page in lru:
            lru.move_to_end(page)
        else:
            lru[page] = True
            if capacity is not None and len(lru) > capacity:
                lru.popitem(last=False)
    return len(trace) / (time.perf_counter() - start)
