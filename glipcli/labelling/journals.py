"""The journal of a ``glip label`` run and the shards Ray workers write beside it.

``<out>.journal`` holds the records the local engine finished; ``<out>.journal.d/`` one shard per
Ray worker. A run resumes from all of them and merges them by image id, so the output is the
same whichever engine labelled which image.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

from glipcli.errors import DataError
from glipcli.io.journal import Journal, JournalLocked

SHARD_WAIT_SECONDS = 30.0  # for Ray workers that are done to exit and release their shards
_SHARD = ".journal"


def journal_path(out: Path) -> Path:
    return out.with_name(out.name + ".journal")


def shards_path(out: Path) -> Path:
    """The folder of journal shards that Ray workers write (glipcli.labelling.ray_runner), one journal each."""
    return out.with_name(out.name + ".journal.d")


def resumed(journals: list[Journal], ids: dict[str, int]) -> tuple[set[str], int]:
    """Files earlier runs finished, and how many of them they skipped.

    Refuses a journal whose files no longer have the same ids (the folder changed).
    """
    done: set[str] = set()
    skipped = 0
    for journal in journals:
        for record in journal.records():
            if ids.get(record["file_name"]) != record["id"]:
                raise DataError(
                    f"{journal.path}: {record['file_name']} is no longer image {record['id']} of the folder "
                    "(files were added, removed or renamed); delete the journal to start over"
                )
            if record["file_name"] not in done:  # a retried Ray worker may have journaled it twice
                skipped += "skipped" in record
            done.add(record["file_name"])
    return done, skipped


def check_shards(folder: Path, resume: bool) -> None:
    """Like the journal, shards of an earlier run are continued with ``resume`` and never dropped."""
    if not resume and any(folder.glob(f"*{_SHARD}")):
        raise DataError(
            f"{folder}: journal shards of an earlier run exist; pass --resume to continue it, "
            "or delete them to start over"
        )


def open_shard(folder: Path, header: dict[str, Any]) -> Journal:
    """A new journal shard for one Ray worker, in the folder :class:`Shards` reads."""
    return Journal.open(folder / f"{uuid.uuid4().hex}{_SHARD}", header, resume=False)


class Shards:
    """The journal shards in ``folder``, each opened (locked, checked against ``header``) for reading.

    Each shard holds its records in id order (a worker starts a new shard rather than go back),
    as the main journal does, so all of them merge by id in one streaming pass.
    """

    def __init__(self, folder: Path, header: dict[str, Any]) -> None:
        self.folder = folder
        self.header = header
        self.journals: list[Journal] = []

    def open_new(self) -> None:
        """Open the shards not open yet, waiting for their writers to exit (SHARD_WAIT_SECONDS).

        Whoever holds the main journal's lock owns the run, so the workers of any other run on
        these shards have lost their driver and are exiting: waiting for them is safe.
        """
        known = {journal.path for journal in self.journals}
        for path in sorted(self.folder.glob(f"*{_SHARD}")):
            if path not in known:
                self.journals.append(_open_when_free(path, self.header, SHARD_WAIT_SECONDS))

    def remove(self) -> None:
        for journal in self.journals:
            remove(journal)
        self.journals = []
        with suppress(OSError):  # absent, or a lock left by a worker killed before its first line
            self.folder.rmdir()

    def __enter__(self) -> Shards:
        try:
            self.open_new()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for journal in self.journals:
            journal.close()


def _open_when_free(path: Path, header: dict[str, Any], wait: float) -> Journal:
    """A worker that just finished may still hold its shard's lock for a moment while it exits."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return Journal.open(path, header, resume=True)
        except JournalLocked:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def in_id_order(journals: list[Journal]) -> Iterator[dict[str, Any]]:
    """The records of all journals by image id, each once: the order of an uninterrupted local run."""
    last = 0
    for record in heapq.merge(*(_ascending(journal) for journal in journals), key=lambda r: r["id"]):
        if record["id"] != last:
            last = record["id"]
            yield record


def _ascending(journal: Journal) -> Iterator[dict[str, Any]]:
    last = 0
    for record in journal.records():
        if record["id"] < last:
            raise DataError(f"{journal.path}: image {record['id']} after image {last}; delete it to start over")
        last = record["id"]
        yield record


def remove(journal: Journal) -> None:
    """The output is complete: drop a journal and its lock (unlinked while still held)."""
    journal.path.unlink()
    journal.path.with_name(journal.path.name + ".lock").unlink(missing_ok=True)
    journal.close()
