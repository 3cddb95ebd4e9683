"""Grounding samples -> training examples: resizing, inclusive boxes and positive maps."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from glipcli.config import InputConfig
from glipcli.tokenizer import build_tokenizer
from glipcli.train.data import encode_sample

CAPTION = "red circle. blue star. green heart."
SPANS = [[(0, 10)], [(12, 21)], [(23, 34)]]  # one phrase per box, in order


@dataclass
class _Sample:
    image: np.ndarray
    boxes: np.ndarray
    caption: str
    box_spans: list[list[tuple[int, int]]]
    name_spans: tuple[tuple[int, int], ...] = ()
    box_names: tuple[int, ...] = ()


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def _sample() -> _Sample:
    """A 300 x 200 picture, three boxes (pixel edges): top-left, middle, bottom-right corner."""
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 50, 40], [120, 80, 180, 140], [260, 170, 300, 200]], dtype=np.float32)
    return _Sample(image, boxes, CAPTION, SPANS)


def _cfg() -> InputConfig:
    return dataclasses.replace(InputConfig(), max_size=1000)


def _phrase_of_rows(example, tokenizer) -> list[str]:
    return [tokenizer.decode([int(example.input_ids[t]) for t in np.flatnonzero(row)]) for row in example.positive_map]


def test_every_box_keeps_its_phrase_in_inclusive_pixels(tokenizer):
    example = encode_sample(_sample(), tokenizer, _cfg(), 200, 256)  # short side 200: scale 1
    assert example.image.shape[1:] == (224, 320)  # padded to multiples of 32
    np.testing.assert_array_equal(example.boxes[0], [10, 10, 49, 39])  # inclusive last pixel
    assert _phrase_of_rows(example, tokenizer) == ["red circle", "blue star", "green heart"]


def test_resizing_scales_boxes_with_the_picture(tokenizer):
    example = encode_sample(_sample(), tokenizer, _cfg(), 100, 256)  # short side 200 -> 100: scale 0.5
    assert example.image.shape[1:] == (128, 160)
    np.testing.assert_allclose(example.boxes[1], [60, 40, 89, 69])  # (120, 80, 180, 140) / 2, inclusive
