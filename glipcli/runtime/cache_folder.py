"""One folder of the user cache holding a file per key: read back whole or recomputed, written
atomically, kept under a bound by dropping the least recently used files. Text features
(text_store) and tokenised prompts (prompt_store) keep their files this way; ``GLIPCLI_TEXT_CACHE=0``
turns both off, and any of it can be deleted at any time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

TEXT_CACHE_ENV = "GLIPCLI_TEXT_CACHE"
T = TypeVar("T")


def user_folder(kind: str, digest: str) -> Path | None:
    """``~/.cache/glipcli/KIND/DIGEST[:32]`` (``$GLIPCLI_HOME``), or None when ``GLIPCLI_TEXT_CACHE=0``."""
    if os.environ.get(TEXT_CACHE_ENV, "1") == "0":
        return None
    from glipcli.runtime.bundle import user_cache_dir

    return user_cache_dir() / kind / digest[:32]


class CacheFolder:
    """Files ``KEY + suffix`` in ``folder``, at most ``max_bytes`` and ``max_files`` of them."""

    def __init__(self, folder: Path, suffix: str, *, max_bytes: int | None = None, max_files: int | None = None):
        self.folder = folder
        self.suffix = suffix
        self.max_bytes = max_bytes
        self.max_files = max_files

    def read(self, key: str, load: Callable[[Path], T]) -> T | None:
        """``load(path)`` of ``key``'s file, or None when it is absent; a file ``load`` cannot read
        back (OSError, ValueError, KeyError, TypeError: truncated, foreign, wrong shape) is deleted."""
        path = self.folder / f"{key}{self.suffix}"
        try:
            value = load(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            _discard(path)
            return None
        try:
            os.utime(path)  # recently used: kept when the folder is pruned
        except OSError:
            pass
        return value

    def write(self, key: str, save: Callable[[BinaryIO], None]) -> None:
        """``save`` into ``key``'s file, atomically; a cache that cannot be written never stops detection."""
        path = self.folder / f"{key}{self.suffix}"
        partial = path.with_name(f"{key}.{os.getpid()}.partial")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as fh:
                save(fh)
            os.replace(partial, path)
            self._prune()
        except OSError:
            _discard(partial)

    def _prune(self) -> None:
        entries = []
        for path in self.folder.glob(f"*{self.suffix}"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime_ns, stat.st_size, path))
        entries.sort(key=lambda e: e[0])
        total, count = sum(size for _, size, _ in entries), len(entries)
        for _, size, path in entries:
            over_bytes = self.max_bytes is not None and total > self.max_bytes
            over_files = self.max_files is not None and count > self.max_files
            if not (over_bytes or over_files):
                break
            _discard(path)
            total, count = total - size, count - 1


def _discard(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # e.g. a file where the folder should be: nothing to remove
        pass
