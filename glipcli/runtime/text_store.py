"""Text features kept on disk between runs, so a prompt seen before needs no text encoder at all.

The text encoder's session is most of a small model's start-up (glip-nano: 0.13-0.2 s of the
0.2-0.3 s its three sessions take to load, its graph being 23 MB of BERT), yet its output depends
only on that graph and the token ids and mask of the prompt chunk. So the engine stores each
chunk's features under the text graph's sha256 and the chunk's key, and loads the text session
only when a chunk is missing: ``glip detect`` with a prompt used before skips it.

The files are the encoder's float32 output, unchanged (detections are identical to the bit).
A file that cannot be read back whole is deleted and recomputed; writes are atomic; each graph's
folder is kept under :data:`MAX_BYTES` by dropping the least recently used files.
``GLIPCLI_TEXT_CACHE=0`` turns the store off, and the folder can be deleted at any time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

TEXT_CACHE_ENV = "GLIPCLI_TEXT_CACHE"
MAX_BYTES = 64 << 20


class TextFeatureStore:
    """(T, D) float32 text features of one text graph, one ``.npy`` per prompt chunk key."""

    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes

    @classmethod
    def for_graph(cls, digest: str) -> TextFeatureStore | None:
        """The store of the text graph with sha256 ``digest`` in the user cache, or None when disabled."""
        if os.environ.get(TEXT_CACHE_ENV, "1") == "0":
            return None
        from glipcli.runtime.bundle import user_cache_dir

        return cls(user_cache_dir() / "text" / digest[:32])

    def get(self, key: str, tokens: int) -> np.ndarray | None:
        """The stored features of chunk ``key`` (``tokens`` long), or None if absent or damaged."""
        path = self.folder / f"{key}.npy"
        try:
            features = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # truncated, foreign or unreadable: the encoder recomputes it
            _discard(path)
            return None
        if features.dtype != np.float32 or features.ndim != 2 or features.shape[0] != tokens:
            _discard(path)
            return None
        try:
            os.utime(path)  # recently used: kept when the folder is pruned
        except OSError:
            pass
        return features

    def put(self, key: str, features: np.ndarray) -> None:
        """Store ``features`` atomically; a cache that cannot be written never stops detection."""
        path = self.folder / f"{key}.npy"
        partial = path.with_name(f"{key}.{os.getpid()}.partial")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as fh:
                np.save(fh, np.ascontiguousarray(features, dtype=np.float32), allow_pickle=False)
            os.replace(partial, path)
            self._prune()
        except OSError:
            _discard(partial)

    def _prune(self) -> None:
        entries = []
        for path in self.folder.glob("*.npy"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            _discard(path)
            total -= size


def _discard(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # e.g. a file where the folder should be: nothing to remove
        pass
