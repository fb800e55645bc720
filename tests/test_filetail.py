"""FileTail: complete lines appended since the last read, a partial line waits, a shrunk file is read anew."""

from __future__ import annotations

from pathlib import Path

from smtpbench.filetail import FileTail


def test_lines_appended_since_the_last_read(tmp_path: Path) -> None:
    path = tmp_path / "log"
    tail = FileTail(path)
    assert tail.lines() == [] and not tail.restarted  # not there yet
    path.write_bytes(b"one\ntw")
    assert tail.lines() == [b"one"]  # "tw" is still being written
    with path.open("ab") as f:
        f.write(b"o\n\nthree\n")
    assert tail.lines() == [b"two", b"", b"three"]
    assert tail.lines() == []
    with path.open("ab") as f:
        f.write(b"\xff\n\nfour\n")
    assert tail.text_lines() == ["\ufffd", "four"]  # empty lines left out, bad octets replaced


def test_from_end_and_a_shrunk_file(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    path.write_bytes(b"old\n")
    tail = FileTail(path, from_end=True)
    with path.open("ab") as f:
        f.write(b"new\n")
    assert tail.lines() == [b"new"] and not tail.restarted
    path.write_bytes(b"x\n")  # replaced by a shorter file
    assert tail.lines() == [b"x"] and tail.restarted
    assert tail.lines() == [] and not tail.restarted
