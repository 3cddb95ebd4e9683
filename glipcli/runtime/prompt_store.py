"""Tokenised prompts kept on disk, so a prompt used before needs no tokenizer.

For a prompt seen before, the text features come from the disk (glipcli.runtime.text_store), and
what was left of the text side was loading the tokenizer: 0.05 s to parse ``tokenizer.json``,
which overlaps nothing (``tokenizers`` holds the GIL), plus 0.015 s to import ``tokenizers``.
A prompt's chunks depend only on the tokenizer file (its sha256, which the bundle verifies), the
prompt, the max query length and the code that chunks (``prompt.py`` and ``tokenizer.py``, whose
bytes enter the key, so an upgrade never reads an old encoding). They are stored as small JSON
files under that key in ``~/.cache/glipcli/prompts/``, written atomically, the least recently used
dropped past :data:`MAX_FILES`; a file that does not read back whole is recomputed. The same switch
as the text features turns it off (``GLIPCLI_TEXT_CACHE=0``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import cache
from pathlib import Path

import numpy as np

from glipcli.prompt import Prompt, PromptChunk
from glipcli.runtime.cache_folder import CacheFolder, user_folder

MAX_FILES = 2000


@cache
def _code_digest() -> str:
    """The chunking code's bytes: a change to it is a new key."""
    import glipcli.prompt
    import glipcli.tokenizer

    digest = hashlib.sha256()
    for module in (glipcli.prompt, glipcli.tokenizer):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


class PromptStore(CacheFolder):
    """The chunks of prompts tokenised with one tokenizer file, one JSON file per prompt."""

    def __init__(self, folder: Path, max_files: int = MAX_FILES) -> None:
        super().__init__(folder, ".json", max_files=max_files)

    @classmethod
    def for_tokenizer(cls, digest: str) -> PromptStore | None:
        """The store of the tokenizer file with sha256 ``digest`` in the user cache, or None when disabled."""
        folder = user_folder("prompts", digest)
        return cls(folder) if folder is not None else None

    @staticmethod
    def key(prompt: Prompt, max_query_len: int) -> str:
        described = [_code_digest(), max_query_len, [dataclasses.astuple(label) for label in prompt.labels]]
        described += [prompt.caption, prompt.spans]
        return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:40]

    def get(self, key: str) -> tuple[PromptChunk, ...] | None:
        """The stored chunks of prompt ``key``, or None if absent or damaged."""
        return self.read(key, lambda path: tuple(_chunk(entry) for entry in json.loads(path.read_text("utf-8"))))

    def put(self, key: str, chunks: tuple[PromptChunk, ...]) -> None:
        """Store ``chunks`` atomically; a cache that cannot be written never stops detection."""
        data = json.dumps([_entry(chunk) for chunk in chunks]).encode()
        self.write(key, lambda fh: fh.write(data))


def _entry(chunk: PromptChunk) -> dict:
    return {
        "caption": chunk.caption,
        "label_ids": list(chunk.label_ids),
        "input_ids": chunk.input_ids.tolist(),
        "attention_mask": chunk.attention_mask.tolist(),
        "positive_map": [[label, list(tokens)] for label, tokens in chunk.positive_map.items()],
        "token_words": chunk.token_words.tolist(),
    }


def _chunk(entry: dict) -> PromptChunk:
    arrays = [np.asarray(entry[name], np.int64) for name in ("input_ids", "attention_mask", "token_words")]
    for array in arrays:
        if array.ndim != 1 or len(array) != len(arrays[0]):
            raise ValueError("stored chunk arrays of unequal lengths")
        array.setflags(write=False)  # as encode_prompt makes them
    return PromptChunk(
        caption=str(entry["caption"]),
        label_ids=tuple(int(i) for i in entry["label_ids"]),
        input_ids=arrays[0],
        attention_mask=arrays[1],
        positive_map={int(label): [int(t) for t in tokens] for label, tokens in entry["positive_map"]},
        token_words=arrays[2],
    )
