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

from pathlib import Path

import numpy as np

from glipcli.runtime.cache_folder import TEXT_CACHE_ENV, CacheFolder, user_folder

__all__ = ["MAX_BYTES", "TEXT_CACHE_ENV", "TextFeatureStore"]

MAX_BYTES = 64 << 20


class TextFeatureStore(CacheFolder):
    """(T, D) float32 text features of one text graph, one ``.npy`` per prompt chunk key."""

    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES) -> None:
        super().__init__(folder, ".npy", max_bytes=max_bytes)

    @classmethod
    def for_graph(cls, digest: str) -> TextFeatureStore | None:
        """The store of the text graph with sha256 ``digest`` in the user cache, or None when disabled."""
        folder = user_folder("text", digest)
        return cls(folder) if folder is not None else None

    def get(self, key: str, tokens: int) -> np.ndarray | None:
        """The stored features of chunk ``key`` (``tokens`` long), or None if absent or damaged."""

        def load(path: Path) -> np.ndarray:
            features = np.load(path, allow_pickle=False)
            if features.dtype != np.float32 or features.ndim != 2 or features.shape[0] != tokens:
                raise ValueError(f"stored features of shape {features.shape}, {features.dtype}")
            return features

        return self.read(key, load)

    def put(self, key: str, features: np.ndarray) -> None:
        """Store ``features`` atomically; a cache that cannot be written never stops detection."""
        array = np.ascontiguousarray(features, dtype=np.float32)
        self.write(key, lambda fh: np.save(fh, array, allow_pickle=False))
