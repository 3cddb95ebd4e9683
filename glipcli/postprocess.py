"""ATSS test post-processing in numpy, with the official GLIP semantics (GLIP_SPEC sections 8-9).

Token probabilities become label scores, which are thresholded before centerness, ranked per
level by score x centerness, clipped, and reduced by class-aware NMS with the legacy +1 pixel
convention. Every step follows ``ATSSPostProcessor`` and the CUDA ``ml_nms`` kernel, so boxes,
scores and labels equal the official ones; only the order of exact score ties may differ (the
official order there is implementation-defined).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from glipcli.config import PostprocessConfig
from glipcli.errors import ConfigError


def level_sizes(padded_hw: tuple[int, int], strides: Sequence[int]) -> list[tuple[int, int]]:
    """(H, W) of each FPN level for a padded input.

    The backbone levels are Hp/stride (Swin pads to its patch and merge sizes, i.e. rounds up)
    and each extra level is a stride-2 conv of the previous one, ceil(prev / 2); with doubling
    strides both are ceil(Hp / stride), since nested ceilings of integer divisions compose.
    """
    height, width = padded_hw
    return [(-(-height // s), -(-width // s)) for s in strides]


@dataclass(frozen=True)
class RawDetections:
    boxes: np.ndarray  # (n, 4) float32 xyxy
    scores: np.ndarray  # (n,) float32
    labels: np.ndarray  # (n,) int64, 1-based label ids (positive-map keys)

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index: np.ndarray) -> RawDetections:
        return RawDetections(self.boxes[index], self.scores[index], self.labels[index])


def empty_detections() -> RawDetections:
    return RawDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Sigmoid in the input's precision; exp overflows to inf for logits << 0, giving exactly 0."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def word_weights(tokens: np.ndarray, token_words: np.ndarray | None) -> np.ndarray:
    """Per token of one label, 1 / (its label's words x its word's tokens in the label): each word
    counts once however WordPiece splits it ("red hexagon" = red, he, ##xa, ##gon: 1/2, 1/6 x 3).
    Without word ids every token is its own word."""
    if token_words is None or not len(tokens):
        return np.full(len(tokens), 1 / max(len(tokens), 1), np.float32)
    words = np.where(token_words[tokens] >= 0, token_words[tokens], -1 - tokens)  # special tokens stand alone
    word_index = np.searchsorted(_distinct(words), words)
    per_word = np.bincount(word_index)
    return (1 / (len(per_word) * per_word[word_index])).astype(np.float32)


def _distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of a small integer array. Not ``np.unique``: its first call imports
    ``numpy.ma`` (17-40 ms), a tenth of what ``glip detect`` on one image may add to its imports."""
    return np.asarray(sorted(set(values.tolist())), values.dtype)


def label_scores(
    token_logits: np.ndarray,
    positive_map: Mapping[int, Sequence[int]],
    score_agg: str,
    token_words: np.ndarray | None = None,
) -> np.ndarray:
    """(N, K) score per label, columns in ``sorted(positive_map)`` order.

    Only the tokens some label uses go through the sigmoid. MEAN is one matmul with a (U, K)
    matrix whose column k holds count(token in label k) / len(label k), so duplicate indices
    count twice as in the official mean; a label without tokens keeps score 0.

    GEOMEAN (ours, not an official option) is a weighted mean of log-probabilities: for a model
    trained with per-word targets (glip-nano: "red" is positive for every red object), each word is
    an attribute detector and a phrase holds only where all its words do. A product does that; its
    root keeps the score on a probability scale for phrases of any length, and a filler word the
    model grounds nowhere ("a red circle") scales every box alike instead of zeroing all of them as
    a minimum would. With ``token_words`` (word index per token, -1 for special tokens) each word
    weighs the same however many pieces it has (:func:`word_weights`).
    """
    keys = sorted(positive_map)
    used = _distinct(np.asarray([t for key in keys for t in positive_map[key]], np.int64))
    columns = [np.searchsorted(used, np.asarray(positive_map[key], np.int64)) for key in keys]
    if score_agg in ("MEAN", "GEOMEAN"):
        words = token_words if score_agg == "GEOMEAN" else None
        weights = np.zeros((len(used), len(keys)), np.float32)
        for k, (key, tokens) in enumerate(zip(keys, columns, strict=True)):
            np.add.at(weights[:, k], tokens, word_weights(np.asarray(positive_map[key], np.int64), words))
        if score_agg == "MEAN":
            return _sigmoid(token_logits[:, used]) @ weights
        # log sigmoid(x) = -log(1 + exp(-x)): exact where the sigmoid itself would underflow to 0
        log_probs = -np.logaddexp(np.float32(0), -token_logits[:, used])
        has_tokens = np.asarray([len(tokens) > 0 for tokens in columns])
        return np.where(has_tokens, np.exp(log_probs @ weights), np.float32(0)).astype(np.float32)
    if score_agg == "MAX":
        probs = _sigmoid(token_logits[:, used])
        scores = np.zeros((len(token_logits), len(keys)), np.float32)
        for k, tokens in enumerate(columns):
            if len(tokens):
                scores[:, k] = probs[:, tokens].max(axis=1)
        return scores
    raise ConfigError(f"unknown score aggregation {score_agg!r}: choose MEAN, GEOMEAN or MAX")


def _level_candidates(
    label_scores: np.ndarray, centerness: np.ndarray, threshold: float, top_n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(location, column, score x centerness) of one level's top_n candidates above threshold."""
    flat = np.flatnonzero(label_scores.ravel() > threshold)
    products = (label_scores * _sigmoid(centerness)[:, None]).ravel()[flat]
    if len(flat) > top_n:
        best = np.sort(np.argpartition(-products, top_n - 1)[:top_n])
        flat, products = flat[best], products[best]
    location, column = np.divmod(flat, label_scores.shape[1])
    return location, column, products


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one box (or a column of boxes, (k, 1, 4)) with many, +1 convention, float32 like the CUDA kernel."""
    width = np.maximum(np.minimum(box[..., 2], others[:, 2]) - np.maximum(box[..., 0], others[:, 0]) + 1, 0)
    height = np.maximum(np.minimum(box[..., 3], others[:, 3]) - np.maximum(box[..., 1], others[:, 1]) + 1, 0)
    inter = width * height
    area = (box[..., 2] - box[..., 0] + 1) * (box[..., 3] - box[..., 1] + 1)
    areas = (others[:, 2] - others[:, 0] + 1) * (others[:, 3] - others[:, 1] + 1)
    return inter / (area + areas - inter)


MATRIX_NMS_LIMIT = 2048
"""Boxes of one label up to which NMS computes all IoUs at once (16 MB): the same values as one row
at a time, but two numpy calls per kept box fewer, which on a busy CPU was most of post-processing."""


def nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by class-aware greedy NMS, ascending (the order ``ml_nms`` returns).

    A box is suppressed when its IoU with a kept, higher-scored box of the same label is
    strictly greater than ``threshold``; score ties go to the earlier box.
    """
    keep: list[np.ndarray] = []
    for label in _distinct(labels):
        members = np.flatnonzero(labels == label)
        ordered = members[np.argsort(-scores[members], kind="stable")]
        keep.append(ordered[_greedy(boxes[ordered], threshold)])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def _greedy(boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Positions kept among ``boxes`` sorted best first: each unless a kept one overlaps it > threshold."""
    if len(boxes) > MATRIX_NMS_LIMIT:
        kept: list[int] = []
        remaining = np.arange(len(boxes))
        while remaining.size:
            best, remaining = remaining[0], remaining[1:]
            kept.append(best)
            remaining = remaining[~(_iou(boxes[best], boxes[remaining]) > threshold)]
        return np.asarray(kept, np.int64)
    overlaps = _iou(boxes[:, None, :], boxes) > threshold
    suppressed = np.zeros(len(boxes), bool)
    kept = []
    for i in range(len(boxes)):
        if not suppressed[i]:
            kept.append(i)
            suppressed |= overlaps[i]
    return np.asarray(kept, np.int64)


def _concatenate(parts: Sequence[RawDetections]) -> RawDetections:
    return RawDetections(
        np.concatenate([p.boxes for p in parts]).astype(np.float32),
        np.concatenate([p.scores for p in parts]).astype(np.float32),
        np.concatenate([p.labels for p in parts]).astype(np.int64),
    )


def _by_score(detections: RawDetections) -> RawDetections:
    return detections.take(np.argsort(-detections.scores, kind="stable"))


def select_candidates(
    boxes: np.ndarray,
    centerness: np.ndarray,
    token_logits: np.ndarray,
    level_hw: Sequence[tuple[int, int]],
    positive_map: Mapping[int, Sequence[int]],
    resized_hw: tuple[int, int],
    cfg: PostprocessConfig,
    token_words: np.ndarray | None = None,
) -> RawDetections:
    """The clipped candidates that enter NMS, levels concatenated (P3 first), before any sorting.

    Arguments as for :func:`postprocess`; scores are already final (sqrt of score x centerness).
    """
    if sum(h * w for h, w in level_hw) != len(boxes):
        raise ValueError(f"level sizes {list(level_hw)} do not cover the {len(boxes)} head outputs")
    per_label = label_scores(token_logits, positive_map, cfg.score_agg, token_words)
    label_ids = np.asarray(sorted(positive_map), np.int64)
    height, width = resized_hw
    parts = [empty_detections()]
    start = 0
    for h, w in level_hw:
        stop = start + h * w
        location, column, products = _level_candidates(
            per_label[start:stop], centerness[start:stop], cfg.pre_nms_thresh, cfg.pre_nms_top_n
        )
        level_boxes = boxes[start:stop][location].astype(np.float32)
        level_boxes[:, 0::2] = np.clip(level_boxes[:, 0::2], 0, width - 1)
        level_boxes[:, 1::2] = np.clip(level_boxes[:, 1::2], 0, height - 1)
        # remove_small_boxes(min_size=0): drops only negative +1 sizes (and NaN boxes)
        valid = (level_boxes[:, 2] - level_boxes[:, 0] + 1 >= 0) & (level_boxes[:, 3] - level_boxes[:, 1] + 1 >= 0)
        parts.append(RawDetections(level_boxes[valid], np.sqrt(products[valid]), label_ids[column[valid]]))
        start = stop
    return _concatenate(parts)


def postprocess(
    boxes: np.ndarray,
    centerness: np.ndarray,
    token_logits: np.ndarray,
    level_hw: Sequence[tuple[int, int]],
    positive_map: Mapping[int, Sequence[int]],
    resized_hw: tuple[int, int],
    cfg: PostprocessConfig,
    token_words: np.ndarray | None = None,
) -> RawDetections:
    """Detections of one image, in resized-image pixels, sorted by score descending.

    ``boxes`` (N, 4) are decoded xyxy boxes, ``centerness`` (N,) logits and ``token_logits``
    (N, T), with N = sum of H*W over ``level_hw``, levels first, then rows, then columns.
    ``positive_map`` maps each 1-based label id to its token indices; ``token_words`` gives each
    token's word (GEOMEAN weighs words, not word pieces).
    """
    candidates = select_candidates(
        boxes, centerness, token_logits, level_hw, positive_map, resized_hw, cfg, token_words
    )
    return _suppressed(candidates, cfg.nms_thresh, cfg.detections_per_img)


def merge_scales(parts: Sequence[RawDetections], nms_thresh: float, limit: int) -> RawDetections:
    """One chunk's candidates from several test scales (original pixels, each scale's range kept)
    as one result: NMS per label over all of them, then the best ``limit``, sorted by score, as the
    official multi-scale test merges them (``merge_result_from_multi_scales``)."""
    return _suppressed(_concatenate([empty_detections(), *parts]), nms_thresh, limit)


def _suppressed(candidates: RawDetections, nms_thresh: float, limit: int) -> RawDetections:
    result = candidates.take(nms(candidates.boxes, candidates.scores, candidates.labels, nms_thresh))
    count = len(result)
    if count > limit > 0:
        # keep every score >= the limit-th largest (kthvalue), so ties at the cut all stay
        cut = np.partition(result.scores, count - limit)[count - limit]
        result = result.take(np.flatnonzero(result.scores >= cut))
    return _by_score(result)


def rescale_boxes(boxes: np.ndarray, resized_hw: tuple[int, int], original_hw: tuple[int, int]) -> np.ndarray:
    """Resized-image boxes to original pixels, as ``BoxList.resize``: x * W0/w, y * H0/h, no +1."""
    ratio_w = float(original_hw[1]) / float(resized_hw[1])
    ratio_h = float(original_hw[0]) / float(resized_hw[0])
    scale = np.asarray([ratio_w, ratio_h, ratio_w, ratio_h], np.float32)
    return (boxes * scale).astype(np.float32)


def merge_chunks(parts: Sequence[RawDetections], max_detections: int) -> RawDetections:
    """Union of per-chunk detections, sorted by score, cut to ``max_detections`` (<= 0: all).

    Chunk labels are global ids, so no NMS runs across chunks: each chunk's detections are
    exactly those of running that chunk alone, as in the official chunked evaluation.
    """
    merged = _by_score(_concatenate([empty_detections(), *parts]))
    return merged.take(np.arange(min(len(merged), max_detections))) if max_detections > 0 else merged
