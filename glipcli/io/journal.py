"""Crash-safe, resumable record of a long run (``glip label`` over a big folder).

Layout: the first line is ``{"glipcli_journal": 1, "header": {...}}`` (what the run was: model,
prompt, thresholds), then one JSON object per finished item. Lines are ASCII (``ensure_ascii``)
so any file name, even one with undecodable bytes, round-trips exactly.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from glipcli.errors import DataError
from glipcli.io.coco import fsync_dir

_MAGIC = "glipcli_journal"
_VERSION = 1

SYNC_SECONDS = 1.0
"""Longest time an appended record waits for fsync. A record is in the kernel when ``append``
returns, which is all a killed or crashed process needs; fsync guards against an OS crash or a
power cut. Once per image it cost ~4 % of glip-nano's labelling time on this machine's disk."""


class JournalLocked(DataError):
    """Another writer (process, or another Journal in this one) holds the journal."""


class Journal:
    """One JSON object per line; each append is written to the file before it returns, so a SIGKILL
    loses at most the line being written, and fsynced within ``SYNC_SECONDS`` (and on close), so an
    OS crash loses at most that last second. Opening acquires an exclusive lock (fcntl.flock on a
    .lock file, non-blocking) so a second writer on the same output is refused clearly."""

    def __init__(self, path: Path, fd: int, lock_fd: int, size: int) -> None:
        self.path = path
        self._fd = fd
        self._lock_fd = lock_fd
        self._size = size  # bytes committed: the file ends here, on a line boundary
        self._synced_at = time.monotonic()
        self._unsynced = False

    @classmethod
    def open(cls, path: Path, header: dict, resume: bool) -> Journal:
        """Start a journal, or with ``resume`` continue one written with the same ``header``.

        An existing journal is never overwritten without ``resume``; a last line torn by a crash
        is dropped on resume.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = _lock(path)
        except OSError as e:
            raise DataError(f"{path}: cannot open journal ({e.strerror})") from None
        try:
            stored = _stored_header(path)
            if stored is None:
                size = _start(path, header)
            elif not resume:
                raise DataError(
                    f"{path}: a journal of an earlier run exists; pass --resume to continue it, "
                    "or delete it to start over"
                )
            else:
                _check_header(path, stored, header)
                size = _committed_size(path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except BaseException as e:
            os.close(lock_fd)
            if isinstance(e, OSError):
                raise DataError(f"{path}: cannot open journal ({e.strerror})") from None
            raise
        return cls(path, fd, lock_fd, size)

    def append(self, record: dict) -> None:
        """Commit one record: when this returns, it survives a crash of the process (and of the OS
        once synced: within ``SYNC_SECONDS``)."""
        if not isinstance(record, dict):
            raise TypeError(f"journal records are dicts, not {type(record).__name__}")
        data = _line(record)
        fd = self._require_open()
        try:
            _write_all(fd, data)
        except OSError as e:
            os.ftruncate(fd, self._size)  # no half line for the next append to glue onto
            raise DataError(f"{self.path}: cannot write journal ({e.strerror})") from None
        self._size += len(data)
        self._unsynced = True
        if time.monotonic() - self._synced_at >= SYNC_SECONDS:
            self.sync()

    def sync(self) -> None:
        """fsync what was appended: then it survives an OS crash too."""
        fd = self._require_open()
        if self._unsynced:
            try:
                os.fsync(fd)
            except OSError as e:
                raise DataError(f"{self.path}: cannot write journal ({e.strerror})") from None
            self._unsynced = False
        self._synced_at = time.monotonic()

    def records(self) -> Iterator[dict]:
        """The records committed when called, in order, read from disk one line at a time."""
        self._require_open()
        return _read_records(self.path, self._size)

    def done_keys(self, key: str = "file_name") -> set[str]:
        """Values of ``key`` over the committed records: the items a resumed run can skip."""
        return {record[key] for record in self.records() if key in record}

    def close(self) -> None:
        """Sync what is pending and release the lock. Closing twice is harmless."""
        if self._fd < 0:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)
            os.close(self._lock_fd)
            self._fd = self._lock_fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _require_open(self) -> int:
        if self._fd < 0:
            raise ValueError(f"journal {self.path} is closed")
        return self._fd


def _lock(path: Path) -> int:
    """Take ``<journal>.lock`` (kept afterwards: removing lock files races) and note our pid in it."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        who = "this process" if holder == str(os.getpid()) else f"process {holder}"
        raise JournalLocked(
            f"{path} is in use by {who} (lock {lock_path}); wait for that run to finish or stop it"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _stored_header(path: Path) -> dict | None:
    """The header of the journal at ``path``, or None when there is nothing to keep.

    A crash while the header was being written leaves a torn first line, which counts as
    nothing; any other content that is not a journal is refused, never overwritten.
    """
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except FileNotFoundError:
        return None
    prefix = b'{"' + _MAGIC.encode("ascii")
    if not first.endswith(b"\n") and (prefix.startswith(first) or first.startswith(prefix)):
        return None
    try:
        stored = json.loads(first)
    except ValueError:
        stored = None
    if not isinstance(stored, dict) or not isinstance(stored.get("header"), dict) or _MAGIC not in stored:
        raise DataError(f"{path}: not a glipcli journal; choose another output or delete it")
    if stored[_MAGIC] != _VERSION:
        raise DataError(f"{path}: journal format {stored[_MAGIC]} is not supported (expected {_VERSION})")
    return stored["header"]


def _start(path: Path, header: dict) -> int:
    data = _line({_MAGIC: _VERSION, "header": header})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
    return len(data)


def _committed_size(path: Path) -> int:
    """Validate every committed line and cut a torn last line; return the committed size."""
    with open(path, "rb") as f:
        end = len(f.readline())
        for number, line in enumerate(f, start=2):
            if not line.endswith(b"\n"):
                break  # torn by a crash mid-append: never committed
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                raise DataError(f"{path}: line {number} is damaged; the journal cannot be resumed")
            end += len(line)
    if os.path.getsize(path) != end:
        with open(path, "r+b") as f:
            f.truncate(end)
            os.fsync(f.fileno())
    return end


def _check_header(path: Path, then: dict, header: dict) -> None:
    """Refuse to mix runs: name the first setting that differs, with both values."""
    now = json.loads(json.dumps(header))
    changed = [key for key in sorted({*then, *now}) if then.get(key) != now.get(key)]
    if changed:
        key = changed[0]
        others = f" (and {', '.join(changed[1:])})" if len(changed) > 1 else ""
        raise DataError(
            f"{path}: the earlier run used a different {key}{others}: {_short(then.get(key))} then, "
            f"{_short(now.get(key))} now; rerun with the same settings or delete the journal to start over"
        )


def _read_records(path: Path, end: int) -> Iterator[dict]:
    with open(path, "rb") as f:
        position = len(f.readline())  # the header
        while position < end:
            line = f.readline()
            position += len(line)
            yield json.loads(line)


def _line(obj: dict) -> bytes:
    return (json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":")) + "\n").encode("ascii")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
