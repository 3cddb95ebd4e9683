"""Grounding samples -> model-ready training batches.

A sample is an image, its boxes, a caption and, per box, the character spans of the caption
that ground it (GLIP's ``tokens_positive``). Here the caption is tokenised, spans become token
positive maps, the image is resized like the test pipeline (at a scale chosen per sample) and
boxes move to GLIP's inclusive pixel convention (x2 = last pixel, widths are x2 - x1 + 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer
from torch import Tensor

from glipcli.config import InputConfig
from glipcli.postprocess import word_weights
from glipcli.preprocess import prepare_image, resized_size
from glipcli.tokenizer import spans_to_token_indices
from glipcli.train.loss import GroundingTarget


class Sample(Protocol):
    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (n, 4) xyxy pixel edges (x2 = one past the last pixel)
    caption: str
    box_spans: list[list[tuple[int, int]]]
    name_spans: Sequence[tuple[int, int]]  # names the boxes compete among (may be empty)
    box_names: Sequence[int]  # per box, its own name's index in name_spans


class SampleSource(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


@dataclass
class Example:
    image: np.ndarray  # (3, Hp, Wp) normalised, padded
    boxes: np.ndarray  # (n, 4) inclusive xyxy in resized pixels
    positive_map: np.ndarray  # (n, T) 0/1
    input_ids: np.ndarray  # (T,)
    name_weights: np.ndarray  # (P, T) each competing name's token weights: its score is exp(log p @ w)
    box_names: np.ndarray  # (n,) each box's own name, -1 where it has none (or it was truncated away)


def encode_sample(
    sample: Sample, tokenizer: Tokenizer, input_cfg: InputConfig, short_side: int, max_query_len: int
) -> Example:
    h, w = sample.image.shape[:2]
    cfg = dataclasses.replace(input_cfg, min_size=short_side)
    new_w, new_h = resized_size(w, h, cfg.min_size, cfg.max_size)
    prepared = prepare_image(sample.image, cfg)
    scale = np.array([new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float32)
    boxes = sample.boxes.astype(np.float32).reshape(-1, 4) * scale
    boxes[:, 2:] -= 1.0  # pixel edges -> GLIP's inclusive coordinates
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    encoding = tokenizer.encode(sample.caption)
    ids = np.asarray(encoding.ids[:max_query_len], dtype=np.int64)
    if len(encoding.ids) > max_query_len:
        ids[-1] = encoding.ids[-1]  # keep [SEP] at the end of a truncated caption
    positive = np.zeros((len(boxes), len(ids)), dtype=np.float32)
    for i, spans in enumerate(sample.box_spans):
        tokens = [t for t in spans_to_token_indices(encoding, spans) if t < len(ids) - 1]
        positive[i, tokens] = 1.0
    name_weights, box_names = _names(encoding, sample, len(ids))
    return Example(prepared.tensor, boxes, positive, ids, name_weights, box_names)


def _names(encoding: Encoding, sample: Sample, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Each competing name's token weights as the model scores it (each word weighs the same
    however WordPiece splits it, glipcli.postprocess.word_weights), and each box's own name; a name
    truncated away has no weights and cannot be a box's own."""
    words = np.asarray([-1 if w is None else w for w in encoding.word_ids[:length]], dtype=np.int64)
    weights = np.zeros((len(sample.name_spans), length), dtype=np.float32)
    for k, span in enumerate(sample.name_spans):
        tokens = np.asarray([t for t in spans_to_token_indices(encoding, [span]) if t < length - 1], np.int64)
        if len(tokens):
            weights[k, tokens] = word_weights(tokens, words)
    named = np.asarray(sample.box_names, dtype=np.int64).reshape(-1)
    if len(named) and len(named) != len(sample.boxes):
        raise ValueError(f"{len(named)} box names for {len(sample.boxes)} boxes")
    has_tokens = weights.sum(1) > 0
    box_names = np.asarray([k if k >= 0 and has_tokens[k] else -1 for k in named.tolist()], dtype=np.int64)
    return weights, box_names if len(named) else np.full(len(sample.boxes), -1, dtype=np.int64)


@dataclass
class Batch:
    images: Tensor  # (B, 3, H, W)
    input_ids: Tensor  # (B, T)
    attention_mask: Tensor  # (B, T)
    targets: list[GroundingTarget]


def collate(examples: Sequence[Example], canvas: int | None = None, token_multiple: int = 16) -> Batch:
    """Pad images bottom/right (to a fixed square ``canvas`` if given) and captions to the longest
    in the batch rounded up to ``token_multiple``. Few distinct shapes keep CPU kernels' cached
    plans warm: with a new shape every step, oneDNN re-plans every convolution."""
    h = max(canvas or 0, max(e.image.shape[1] for e in examples))
    w = max(canvas or 0, max(e.image.shape[2] for e in examples))
    t = max(len(e.input_ids) for e in examples)
    t = -(-t // token_multiple) * token_multiple
    images = np.zeros((len(examples), 3, h, w), dtype=np.float32)
    ids = np.zeros((len(examples), t), dtype=np.int64)
    mask = np.zeros((len(examples), t), dtype=np.int64)
    targets = []
    for i, e in enumerate(examples):
        images[i, :, : e.image.shape[1], : e.image.shape[2]] = e.image
        ids[i, : len(e.input_ids)] = e.input_ids
        mask[i, : len(e.input_ids)] = 1
        positive = np.zeros((len(e.boxes), t), dtype=np.float32)
        positive[:, : e.positive_map.shape[1]] = e.positive_map
        names = np.zeros((len(e.name_weights), t), dtype=np.float32)
        names[:, : e.name_weights.shape[1]] = e.name_weights
        targets.append(
            GroundingTarget(
                torch.from_numpy(e.boxes),
                torch.from_numpy(positive),
                torch.from_numpy(names),
                torch.from_numpy(e.box_names),
            )
        )
    return Batch(torch.from_numpy(images), torch.from_numpy(ids), torch.from_numpy(mask), targets)


class TrainingSet(torch.utils.data.Dataset):
    """Samples encoded at a training scale that is a pure function of the sample index."""

    def __init__(
        self,
        source: SampleSource,
        tokenizer: Tokenizer,
        input_cfg: InputConfig,
        scales: Sequence[int],
        max_query_len: int,
        group: int = 1,
    ) -> None:
        self.group = group  # consecutive indices (a batch) share a scale: less padding
        self.source = source
        self.tokenizer = tokenizer
        self.input_cfg = input_cfg
        self.scales = tuple(scales)
        self.max_query_len = max_query_len

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Example:
        scale = self.scales[(index // self.group) % len(self.scales)]
        return encode_sample(self.source[index], self.tokenizer, self.input_cfg, scale, self.max_query_len)
