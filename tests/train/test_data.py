"""Grounding samples -> training examples: resizing, boxes, positive maps and random crop windows."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from glipcli.config import InputConfig
from glipcli.tokenizer import build_tokenizer
from glipcli.train.data import TrainingSet, encode_sample

CAPTION = "red circle. blue star. green heart."
SPANS = [[(0, 10)], [(12, 21)], [(23, 34)]]  # one phrase per box, in order


@dataclass
class _Sample:
    image: np.ndarray
    boxes: np.ndarray
    caption: str
    box_spans: list[list[tuple[int, int]]]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def _sample(h: int = 200, w: int = 300) -> _Sample:
    """Three boxes (pixel edges): near the top-left, in the middle, at the bottom-right corner."""
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 50, 40], [120, 80, 180, 140], [w - 40, h - 30, w, h]], dtype=np.float32)
    return _Sample(image, boxes, CAPTION, SPANS)


def _cfg() -> InputConfig:
    return dataclasses.replace(InputConfig(), max_size=1000)


def _phrase_of_rows(example, tokenizer) -> list[str]:
    return [tokenizer.decode([int(example.input_ids[t]) for t in np.flatnonzero(row)]) for row in example.positive_map]


def test_without_crop_every_box_keeps_its_phrase(tokenizer):
    example = encode_sample(_sample(), tokenizer, _cfg(), 200, 256)  # short side 200: scale 1
    assert example.image.shape[1:] == (224, 320)  # padded to multiples of 32
    np.testing.assert_array_equal(example.boxes[0], [10, 10, 49, 39])  # inclusive last pixel
    assert _phrase_of_rows(example, tokenizer) == ["red circle", "blue star", "green heart"]


def test_crop_window_shows_the_picture_and_moves_boxes_with_it(tokenizer):
    sample = _sample()
    for seed in range(20):
        rng = np.random.default_rng(seed)
        example = encode_sample(sample, tokenizer, _cfg(), 200, 256, crop=(128, rng))
        full = encode_sample(sample, tokenizer, _cfg(), 200, 256)
        assert example.image.shape == (3, 128, 128)
        # the window is a piece of the resized picture: find its offset from the pixels
        hits = [
            (y, x)
            for y in range(0, 200 - 128 + 1)
            for x in range(0, 300 - 128 + 1)
            if np.array_equal(full.image[:, y, x], example.image[:, 0, 0])
            and np.array_equal(full.image[:, y : y + 128, x : x + 128], example.image)
        ]
        assert len(hits) == 1
        y0, x0 = hits[0]
        kept = {p: b for p, b in zip(_phrase_of_rows(example, tokenizer), example.boxes, strict=True)}
        for phrase, box in zip(["red circle", "blue star", "green heart"], full.boxes, strict=True):
            moved = box - [x0, y0, x0, y0]
            clipped = np.clip(moved, 0, 127)
            area = lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1)  # noqa: E731
            visible = clipped[2] > clipped[0] and clipped[3] > clipped[1]
            if visible and area(clipped) >= 0.5 * area(moved):
                np.testing.assert_allclose(kept.pop(phrase), clipped)
        assert not kept  # nothing else is kept, and each box keeps its own phrase


def test_crop_larger_than_the_picture_keeps_it_whole(tokenizer):
    sample = _sample(h=100, w=90)
    sample.boxes = sample.boxes[[0, 2]]
    sample.box_spans = [SPANS[0], SPANS[2]]
    example = encode_sample(sample, tokenizer, _cfg(), 90, 256, crop=(128, np.random.default_rng(0)))
    whole = encode_sample(sample, tokenizer, _cfg(), 90, 256)  # short side 90: scale 1
    np.testing.assert_array_equal(example.image[:, :100, :90], whole.image[:, :100, :90])
    np.testing.assert_array_equal(example.boxes, whole.boxes)
    np.testing.assert_array_equal(example.positive_map, whole.positive_map)


def test_training_set_crops_are_a_pure_function_of_seed_and_index(tokenizer):
    source = [_sample() for _ in range(4)]
    make = lambda seed: TrainingSet(source, tokenizer, _cfg(), (200,), 256, crop=128, seed=seed)  # noqa: E731
    a, b, c = make(0), make(0), make(1)
    windows = [a[i].image for i in range(4)]
    assert all(np.array_equal(w, b[i].image) for i, w in enumerate(windows))
    assert not all(np.array_equal(w, c[i].image) for i, w in enumerate(windows))
    assert not all(np.array_equal(windows[0], w) for w in windows[1:])  # each index its own window
