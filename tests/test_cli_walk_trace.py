"""`vmlab walk` and `vmlab run --trace` on a small scenario: the walk reaches the frame of a written page
and the zero page of a read one; the trace shows the fault handlers the lecture names."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmlab.cli import main

SCENARIO = """\
a = mmap(0x10000000, 64K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)
write a + 4096
read a
"""


@pytest.fixture
def scn(tmp_path: Path) -> str:
    path = tmp_path / "w.vml"
    path.write_text(SCENARIO)
    return str(path)


def test_walk_of_a_written_page(scn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["walk", scn, "0x10001234"]) == 0
    out = capsys.readouterr().out.splitlines()
    head = "walk 0x0000000010001234  (pgd 0, p4d folded, pud 0, pmd 128, pte 1, offset 0x234)"
    assert out[0].startswith(head)
    assert [line.split()[0] for line in out[1:5]] == ["PGD", "PUD", "PMD", "PTE"]
    assert "PRESENT|RW|USER" in out[4] and out[5].startswith("  => 4 KiB page:") and out[5].endswith("234")


def test_walk_of_a_read_page_reaches_the_zero_page(scn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["walk", scn, "0x10000000"]) == 0
    pte = capsys.readouterr().out.splitlines()[4]
    assert "SPECIAL" in pte and "|RW|" not in pte


def test_walk_of_an_unmapped_page_and_bad_input(scn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["walk", scn, "0x10002000"]) == 0
    assert "not mapped" in capsys.readouterr().out
    assert main(["walk", scn, "zz"]) == 2
    assert main(["walk", scn, "0x1000", "--process", "nobody"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("error:" in line for line in err)


def test_trace_names_the_fault_path(scn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--trace", scn]) == 0
    out = capsys.readouterr().out
    write = out[out.index("write 0x10001000"):out.index("read 0x10000000")]
    assert "do_user_addr_fault" in write and "handle_mm_fault" in write and "do_anonymous_page" in write
    assert "read: map the shared zero page" in out[out.index("read 0x10000000"):]
    assert "0x408000" not in out  # the program's own startup faults are not traced
