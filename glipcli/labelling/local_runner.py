"""The local engine of ``glip label``: the model in this process, images decoded ahead in threads.

Decoding and preprocessing run ahead of inference in worker threads (in order, a bounded window
of ``2 x workers`` images); the text encoder runs once per prompt chunk for the whole folder (the
Detector caches it) and the backbone once per image (or per batch).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import closing

from glipcli.api import Detector, PreparedPrompt
from glipcli.io.journal import Journal
from glipcli.io.prefetch import prefetch
from glipcli.labelling.records import Block, label_block, prepare_or_reason


class LocalLabeller:
    """A :data:`~glipcli.labelling.records.Labeller` over ``detector``; a context manager like
    :class:`~glipcli.labelling.ray_runner.RayLabeller`, with nothing to connect to."""

    def __init__(
        self, detector: Detector, prepared: PreparedPrompt, threshold: float, limit: int, workers: int
    ) -> None:
        self.detector = detector
        self.prepared = prepared
        self.threshold = threshold
        self.limit = limit
        self.workers = workers

    def __enter__(self) -> LocalLabeller:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, todo: list[Block], done: set[str], journal: Journal) -> Iterator[bool]:
        """Journal each image of ``todo`` in this process; yield whether it was skipped."""
        paths = (path for block in todo for _, _, path in block)
        prepare = functools.partial(prepare_or_reason, self.detector)
        with closing(prefetch(prepare, paths, self.workers)) as decoded:
            for block in todo:
                items = [(image_id, rel, next(decoded)) for image_id, rel, _ in block]
                for record in label_block(self.detector, self.prepared, items, self.threshold, self.limit):
                    if record["file_name"] in done:  # done before a crash; rerun only to batch alike
                        continue
                    journal.append(record)
                    yield "skipped" in record
