"""GLIP's detections re-scored by a bundle's region namer (glipcli.model.namer).

Each box is cut out of the original image (glipcli.crops), the namer scores the box's label from
its words as the head scores it (glipcli.postprocess.label_scores, the model's aggregation), and
the final score is ``glip ** (1 - w) * namer ** w``: a box keeps its place where both agree, and
a label the namer does not see in the crop (a circle called "hexagon") falls below the label it
does. Boxes and labels are unchanged; only scores and their order move.

A namer re-scores only the phrases it was trained on (``NamerConfig.names``; others keep GLIP's
score): glip-nano's, trained on the 56 trained colour-shape names, lowered the best F1 on the 8
held-out names from 0.934 to 0.850 (docs/glip-nano.md), as it never saw those objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from glipcli.config import NamerConfig
from glipcli.crops import box_crops
from glipcli.postprocess import RawDetections, label_scores
from glipcli.prompt import PromptChunk, name_key

NamerGraph = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(N, 3, S, S) crops and one chunk's (T, D) word features -> (N, T) token logits."""
TextGraph = Callable[[PromptChunk], np.ndarray]
"""The bundle's text encoder: a chunk's (T, D) features."""


def word_features(chunk: PromptChunk, encode: TextGraph) -> np.ndarray:
    """(T, D): each word of the chunk encoded alone, ``[CLS] word [SEP]``, at its tokens' places
    (zeros elsewhere), so a word reads the same in every phrase.

    The namer is trained on the trained names only; with the features of the whole caption, where
    "purple" in "purple triangle" differs from "purple" in "purple star", it met every unseen
    pairing as a new word (best F1 on the held-out names 0.60, against 0.93 without it). WordPiece
    splits a word the same alone as in a caption, so its tokens are the caption's own."""
    ids, mask = chunk.input_ids, chunk.attention_mask
    cls, sep = ids[0], ids[int(mask.sum()) - 1]
    out: np.ndarray | None = None
    for word in sorted(set(chunk.token_words[chunk.token_words >= 0].tolist())):
        where = np.flatnonzero(chunk.token_words == word)
        alone = np.concatenate([[cls], ids[where], [sep]]).astype(np.int64)
        single = PromptChunk(
            "", (), alone, np.ones_like(alone), {}, np.concatenate([[-1], np.zeros(len(where), np.int64), [-1]])
        )
        features = encode(single)[1:-1]
        if out is None:
            out = np.zeros((len(ids), features.shape[1]), np.float32)
        out[where] = features
    return out if out is not None else np.zeros((len(ids), 1), np.float32)


def namer_scores(
    raw: RawDetections,
    rgb: np.ndarray,
    chunks: Sequence[PromptChunk],
    words_of: Sequence[np.ndarray],
    namer: NamerGraph,
    cfg: NamerConfig,
    score_agg: str,
    labels: Sequence[str],
) -> np.ndarray:
    """The namer's score of each detection's own label, in [0, 1]; ``words_of``: each chunk's
    :func:`word_features`; ``labels``: the prompt's names by 1-based label id. A label outside
    ``cfg.names`` (if set) keeps GLIP's score."""
    scores = raw.scores.astype(np.float32)
    trained = {name_key(name) for name in cfg.names}
    known = np.asarray([not trained or name_key(name) in trained for name in labels])
    rescored = known[raw.labels - 1] if len(raw) else np.zeros(0, bool)
    if not rescored.any():
        return scores
    cut = np.flatnonzero(rescored)
    crops = box_crops(rgb, raw.boxes[cut], cfg.crop, cfg.margin)  # row k is detection cut[k]
    for chunk, features in zip(chunks, words_of, strict=True):
        rows = np.flatnonzero(np.isin(raw.labels, chunk.label_ids) & rescored)
        if not len(rows):
            continue
        logits = namer(crops[np.searchsorted(cut, rows)], features)
        table = label_scores(logits, chunk.positive_map, score_agg, chunk.token_words)
        columns = np.searchsorted(np.asarray(sorted(chunk.positive_map)), raw.labels[rows])
        scores[rows] = table[np.arange(len(rows)), columns]
    return scores


def rescore(raw: RawDetections, by_namer: np.ndarray, weight: float) -> RawDetections:
    """Scores blended geometrically, ``raw ** (1 - weight) * by_namer ** weight``, best first."""
    scores = (raw.scores.astype(np.float64) ** (1 - weight) * by_namer.astype(np.float64) ** weight).astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    return RawDetections(raw.boxes[order], scores[order], raw.labels[order])
