"""Per-file page-cache residency as util-linux `fincore --bytes` prints it: resident bytes, resident
pages, file size and name, one file a line, columns right-aligned to their widest cell (libsmartcols)
with one space between them, the FILE column left-aligned.

The residency is the inode's page cache (`i_pages`), what mincore()/cachestat() report for the file.
"""

from __future__ import annotations

from vmlab.kernel.mm_types import Inode
from vmlab.kernel.uapi import PAGE_SIZE

HEADERS = ("RES", "PAGES", "SIZE", "FILE")


def fincore_rows(inodes: list[tuple[str, Inode]]) -> list[tuple[str, str, str, str]]:
    """(RES, PAGES, SIZE, FILE) cells of each (name as given, inode)."""
    return [(str(len(inode.i_pages) * PAGE_SIZE), str(len(inode.i_pages)), str(inode.size), name)
            for name, inode in inodes]


def show_fincore(inodes: list[tuple[str, Inode]]) -> str:
    """The text of `fincore --bytes NAME...` for the given (name, inode) pairs."""
    rows = [HEADERS, *fincore_rows(inodes)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "".join(" ".join(cell.rjust(w) for cell, w in zip(row[:3], widths, strict=True)) + f" {row[3]}\n"
                   for row in rows)
