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
from tokenizers import Tokenizer
from torch import Tensor

from glipcli.config import InputConfig
from glipcli.preprocess import prepare_image, resized_size
from glipcli.tokenizer import spans_to_token_indices
from glipcli.train.loss import GroundingTarget


class Sample(Protocol):
    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (n, 4) xyxy pixel edges (x2 = one past the last pixel)
    caption: str
    box_spans: list[list[tuple[int, int]]]


class SampleSource(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


@dataclass
class Example:
    image: np.ndarray  # (3, Hp, Wp) normalised, padded
    boxes: np.ndarray  # (n, 4) inclusive xyxy in resized pixels
    positive_map: np.ndarray  # (n, T) 0/1
    input_ids: np.ndarray  # (T,)


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
    return Example(prepared.tensor, boxes, positive, ids)


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
        targets.append(GroundingTarget(torch.from_numpy(e.boxes), torch.from_numpy(positive)))
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
