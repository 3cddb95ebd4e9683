"""What a run over many images reports: where it stands, the files it skipped and why, its exit code.

``glip label``, ``glip eval`` and ``glip calibrate`` all walk many images, skip the ones that cannot
be read with a reason, and end in 2 when they skipped any; they share these records so the command
line shows their progress and skipped files the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

EXIT_SKIPPED = 2
"""Exit code of a run that finished but skipped some files."""


@dataclass(frozen=True)
class Skipped:
    file: str  # relative to the folder, "/" separators
    reason: str


@dataclass(frozen=True)
class ImageProgress:
    """Where a run stands, passed to its ``progress`` callback after every image."""

    done: int  # images handled (labelled or skipped), resumed ones included
    total: int  # images found in the folder
    skipped: int  # files skipped so far, folder problems included
    processed: int  # images handled by this run (not resumed)
    seconds: float  # since this run started

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.images_per_second
        return (self.total - self.done) / rate if rate > 0 else None


def group_by_kind(skipped: Iterable[Skipped]) -> dict[str, list[Skipped]]:
    """Skipped files by kind of problem: the reason without its per-file details.

    "damaged image (broken data stream)" -> "damaged image"; "too large: 9000x9000 ..." -> "too large".
    """
    groups: dict[str, list[Skipped]] = {}
    for item in skipped:
        kind = re.split(r"[:(]| to | as ", item.reason, maxsplit=1)[0].strip() or item.reason
        groups.setdefault(kind, []).append(item)
    return groups
