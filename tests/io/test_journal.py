"""Journal: resume, torn lines, header checks, single writer, SIGKILL survival."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from glipcli.errors import DataError
from glipcli.io.journal import Journal, JournalLocked

HEADER = {"model": "glip-t", "prompt": ["cat", "dog"], "box_threshold": 0.3}


def _record(i: int) -> dict:
    return {"file_name": f"dir/img_{i:04d}.jpg", "boxes": [[i, i + 0.5, i + 1, i + 2]], "scores": [0.5]}


def test_append_close_resume(tmp_path: Path) -> None:
    path = tmp_path / "out" / "run.journal"
    with Journal.open(path, HEADER, resume=False) as journal:
        for i in range(3):
            journal.append(_record(i))
        assert list(journal.records()) == [_record(i) for i in range(3)]
    with Journal.open(path, dict(HEADER), resume=True) as journal:
        assert list(journal.records()) == [_record(i) for i in range(3)]
        journal.append(_record(3))
        assert journal.done_keys() == {f"dir/img_{i:04d}.jpg" for i in range(4)}
        assert journal.done_keys("missing") == set()
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["header"] == HEADER and len(lines) == 5


def test_records_is_a_lazy_iterator(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j", HEADER, resume=False) as journal:
        journal.append(_record(0))
        records = journal.records()
        assert iter(records) is records
        journal.append(_record(1))  # appended after the iterator started: not part of it
        assert list(records) == [_record(0)]


def test_resume_of_nothing_starts_fresh(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "new.journal", HEADER, resume=True) as journal:
        assert list(journal.records()) == []
        assert journal.done_keys() == set()


def test_existing_journal_needs_resume(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    with Journal.open(path, HEADER, resume=False) as journal:
        journal.append(_record(0))
    before = path.read_bytes()
    with pytest.raises(DataError, match="--resume"):
        Journal.open(path, HEADER, resume=False)
    assert path.read_bytes() == before
    Journal.open(path, HEADER, resume=True).close()  # the failed open released its lock


def test_header_mismatch_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    Journal.open(path, HEADER, resume=False).close()
    with pytest.raises(DataError, match=r'different model: "glip-t" then, "glip-l" now'):
        Journal.open(path, {**HEADER, "model": "glip-l"}, resume=True)
    with pytest.raises(DataError, match=r"different box_threshold \(and prompt\)"):
        Journal.open(path, {**HEADER, "prompt": ["cat"], "box_threshold": 0.5}, resume=True)
    with pytest.raises(DataError, match="different extra"):
        Journal.open(path, {**HEADER, "extra": 1}, resume=True)


def test_torn_last_line_dropped_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    with Journal.open(path, HEADER, resume=False) as journal:
        journal.append(_record(0))
        journal.append(_record(1))
    whole = path.read_bytes()
    path.write_bytes(whole + json.dumps(_record(2)).encode()[:25])  # crash mid-append
    with Journal.open(path, HEADER, resume=True) as journal:
        assert list(journal.records()) == [_record(0), _record(1)]
        assert path.read_bytes() == whole  # the torn bytes are gone, not glued to the next line
        journal.append(_record(2))
    with Journal.open(path, HEADER, resume=True) as journal:
        assert list(journal.records()) == [_record(i) for i in range(3)]


def test_damaged_committed_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    with Journal.open(path, HEADER, resume=False) as journal:
        journal.append(_record(0))
        journal.append(_record(1))
    lines = path.read_bytes().split(b"\n")
    lines[1] = b"{garbage"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match="line 2 is damaged"):
        Journal.open(path, HEADER, resume=True)


def test_foreign_file_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "precious.json"
    for content in (b'{"images": []}\n', b"no newline at all"):
        path.write_bytes(content)
        for resume in (False, True):
            with pytest.raises(DataError, match="not a glipcli journal"):
                Journal.open(path, HEADER, resume=resume)
        assert path.read_bytes() == content


@pytest.mark.parametrize("content", [b"", b'{"glipcli_jour', b'{"glipcli_journal":1,"header":{"mo'])
def test_torn_or_empty_header_counts_as_nothing(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "run.journal"
    path.write_bytes(content)
    with Journal.open(path, HEADER, resume=False) as journal:
        journal.append(_record(0))
    with Journal.open(path, HEADER, resume=True) as journal:
        assert list(journal.records()) == [_record(0)]


def test_second_writer_in_same_process_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    first = Journal.open(path, HEADER, resume=False)
    with pytest.raises(JournalLocked, match=r"run\.journal is in use by this process"):
        Journal.open(path, HEADER, resume=True)
    first.append(_record(0))  # the refused open did not disturb the holder
    first.close()
    with Journal.open(path, HEADER, resume=True) as journal:
        assert list(journal.records()) == [_record(0)]


_OPENER = """
import sys
from pathlib import Path
from glipcli.errors import GlipError
from glipcli.io.journal import Journal
try:
    Journal.open(Path(sys.argv[1]), {}, resume=True)
except GlipError as e:
    print(type(e).__name__, e)
"""


def test_second_writer_in_other_process_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    with Journal.open(path, HEADER, resume=False):
        out = subprocess.run([sys.executable, "-c", _OPENER, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("JournalLocked ")
    assert f"in use by process {os.getpid()}" in out.stdout


def test_lock_not_inherited_by_children(tmp_path: Path) -> None:
    """A tool started by the run (e.g. a converter) must not keep the lock after the run ends."""
    path = tmp_path / "run.journal"
    with Journal.open(path, HEADER, resume=False):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        Journal.open(path, HEADER, resume=True).close()
    finally:
        child.kill()
        child.wait()


_APPENDER = """
import sys
from pathlib import Path
from glipcli.io.journal import Journal
journal = Journal.open(Path(sys.argv[1]), {"model": "m"}, resume=False)
for i in range(100_000):
    journal.append({"file_name": f"{i}.jpg", "i": i, "pad": "x" * 50_000})
    print(i, flush=True)
"""


def test_sigkill_mid_stream_resumes_to_exactly_the_records_written(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    proc = subprocess.Popen([sys.executable, "-c", _APPENDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        acknowledged = -1
        while acknowledged < 30:
            acknowledged = int(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    with Journal.open(path, {"model": "m"}, resume=True) as journal:
        records = list(journal.records())
    assert len(records) > acknowledged  # everything acknowledged survived
    assert records == [{"file_name": f"{i}.jpg", "i": i, "pad": "x" * 50_000} for i in range(len(records))]


def test_odd_keys_round_trip_and_bad_records_refused(tmp_path: Path) -> None:
    names = ["猫/ü.jpg", "bad-\udcff-byte.jpg", 'quote"and\nnewline.png']
    with Journal.open(tmp_path / "j", HEADER, resume=False) as journal:
        for name in names:
            journal.append({"file_name": name})
        with pytest.raises(ValueError):
            journal.append({"file_name": "nan.jpg", "score": float("nan")})
        with pytest.raises(TypeError):
            journal.append(["not", "a", "dict"])
    with Journal.open(tmp_path / "j", HEADER, resume=True) as journal:
        assert journal.done_keys() == set(names)


def test_closed_journal(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j", HEADER, resume=False)
    journal.close()
    journal.close()
    with pytest.raises(ValueError, match="closed"):
        journal.append(_record(0))
    with pytest.raises(ValueError, match="closed"):
        list(journal.records())


def test_unusable_location_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="cannot open journal"):
        Journal.open(tmp_path / "file" / "run.journal", HEADER, resume=False)
