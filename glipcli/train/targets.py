"""How a labelled box is grounded in its prompt while fine-tuning or prompt tuning: as the model
scores a phrase.

glip-nano was pre-trained with per-word targets ("red" in "red star" positive for a red circle,
glipcli.train.synth) and scores a phrase by the geometric mean of its words, so it learns from
labelled data with per-word targets too. GLIP's phrase targets make every word an object shares
with another name a negative: on glip-nano's 56 names, 60 steps of fine-tuning with them lowered
mAP@0.5 from 0.703 to 0.671, and with per-word targets raised it to 0.720 (docs/learning.md);
prompt tuning fell by 0.05 the same way. Official GLIPs average the tokens of phrases trained as
wholes and keep GLIP's targets.
"""

from __future__ import annotations

import re

import numpy as np

from glipcli.config import GLIPConfig
from glipcli.errors import ConfigError
from glipcli.io.images import load_image
from glipcli.train.coco_data import DetectionSource, Span
from glipcli.train.synth import GroundingSample

TARGETS = ("words", "phrases")


def default_targets(config: GLIPConfig) -> str:
    """``words`` for a model that scores a phrase by the geometric mean of its words, else ``phrases``."""
    return "words" if config.postprocess.score_agg == "GEOMEAN" else "phrases"


def with_targets(source: DetectionSource, targets: str) -> DetectionSource:
    """``source`` grounding its boxes with ``targets`` (``words`` or ``phrases``)."""
    if targets not in TARGETS:
        raise ConfigError(f"unknown grounding targets {targets!r}: {' or '.join(TARGETS)}")
    if targets == "words" and not isinstance(source, WordTargets):
        return WordTargets(source)
    return source


class WordTargets(DetectionSource):
    """``source`` with per-word targets: a box grounds its own name and, in every other name of the
    chunk, each word its own name also has ("red" and "circle" of "red star" and "blue circle" for
    a red circle), as glip-nano was pre-trained (glipcli.train.synth._Caption). The chunk's names
    also go along as the names each box competes among, so the loss ranks its own name first as
    the model scores names (glipcli.train.loss.name_rank_loss)."""

    def __init__(self, source: DetectionSource) -> None:
        self.__dict__.update(source.__dict__)
        self.word_spans = [_word_spans(chunk.caption, spans) for chunk, spans in zip(self.chunks, self.spans)]

    def sample(self, image_index: int, chunk_index: int) -> GroundingSample:
        image = self.images[image_index]
        chunk, spans = self.chunks[chunk_index], self.word_spans[chunk_index]
        keep = np.isin(image.labels, chunk.label_ids)
        box_spans = [list(spans[int(label)]) for label in image.labels[keep]]
        names = sorted(self.spans[chunk_index])
        return GroundingSample(
            load_image(image.path),
            image.boxes[keep],
            chunk.caption,
            box_spans,
            name_spans=tuple(self.spans[chunk_index][label] for label in names),
            box_names=tuple(names.index(int(label)) for label in image.labels[keep]),
        )


def _word_spans(caption: str, spans: dict[int, Span]) -> dict[int, tuple[Span, ...]]:
    """Label id -> its name's span plus the spans of its words in the other names of ``caption``."""
    words = {
        label: [
            (m.group().casefold(), (start + m.start(), start + m.end()))
            for m in re.finditer(r"\S+", caption[start:end])
        ]
        for label, (start, end) in spans.items()
    }
    out = {}
    for label, own in spans.items():
        mine = {word for word, _ in words[label]}
        shared = [span for other, ws in words.items() if other != label for word, span in ws if word in mine]
        out[label] = (own, *sorted(shared))
    return out
