"""Preprocessing equals the official test pipeline: sizes, pixels, padding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from glipcli.config import InputConfig
from glipcli.errors import ImageError
from glipcli.preprocess import batch_images, prepare_image, resized_size
from glipcli.presets import load_config
from tests.conftest import needs_reference


@pytest.mark.parametrize(
    "width,height,min_size,max_size,expected",
    [
        (640, 480, 800, 1333, (1066, 800)),  # GLIP_SPEC 3.1 worked example (COCO)
        (1920, 1080, 800, 1333, (1333, 750)),  # GLIP_SPEC 3.1: capped, int(round(749.81)) = 750
        (480, 640, 800, 1333, (800, 1066)),  # portrait
        (1080, 1920, 800, 1333, (750, 1333)),  # portrait, capped
        (500, 500, 800, 1333, (800, 800)),  # square, upscaled
        (2000, 2000, 800, 1333, (800, 800)),  # square, downscaled
        (7, 3, 800, 1333, (1332, 571)),  # tiny: cap int(round(571.29)) = 571, long int(1332.33)
        (1, 1, 800, 1333, (800, 800)),
        (1066, 800, 800, 1333, (1066, 800)),  # short side already right: untouched
        (800, 1500, 800, 1333, (711, 1333)),  # capped size 711 != 800: resized, not kept
        (10, 5, 800, 1333, (1332, 666)),  # 666.5 rounds to even (666), then int(666 * 2) = 1332
        (10, 3, 800, 1333, (1333, 400)),  # 399.9 rounds to 400, int(1333.33) = 1333
        (640, 480, 320, 533, (426, 320)),  # the reference case
        (1920, 1080, 800, 0, (1422, 800)),  # max_size <= 0: no cap (demo path), int(1422.2)
    ],
)
def test_resized_size(width, height, min_size, max_size, expected):
    assert resized_size(width, height, min_size, max_size) == expected


def test_half_rounds_to_even_not_up():
    # Python round(): 666.5 -> 666 and 667.5 -> 668; rounding half up would give 667 and 668
    assert resized_size(2, 1, 800, 1333) == (1332, 666)
    assert resized_size(2, 1, 800, 1335) == (1336, 668)
    assert resized_size(1, 2, 800, 1333) == (666, 1332)


@needs_reference
def test_reference_image_is_bit_identical(reference, case):
    cfg = load_config(reference / "config_reduced.yaml").input
    rgb = np.asarray(Image.open(reference / "image_public.png").convert("RGB"))
    prepared = prepare_image(rgb, cfg)
    assert prepared.resized_hw == tuple(case["image_size_hw"]) == (320, 426)
    assert prepared.original_hw == tuple(case["original_size_hw"]) == (480, 640)
    assert prepared.tensor.dtype == np.float32
    np.testing.assert_array_equal(prepared.tensor[None], case["image_tensor"])
    np.testing.assert_array_equal(batch_images([prepared], cfg.size_divisibility), case["image_tensor"])


def _solid(height: int, width: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (height, width, 3)).copy()


def test_bgr255_normalisation_and_padding():
    cfg = InputConfig(min_size=20, max_size=0, size_divisibility=32)
    prepared = prepare_image(_solid(20, 30, (10, 128, 250)), cfg)  # short side 20: no resize
    assert prepared.tensor.shape == (3, 32, 32)
    assert prepared.resized_hw == (20, 30)
    expected_bgr = [(250 - 103.530) / 57.375, (128 - 116.280) / 57.120, (10 - 123.675) / 58.395]
    for channel, value in enumerate(expected_bgr):
        np.testing.assert_allclose(prepared.tensor[channel, :20, :30], value, rtol=1e-6)
    assert not prepared.tensor[:, 20:, :].any() and not prepared.tensor[:, :, 30:].any()


def test_rgb_unit_range_when_not_bgr255():
    cfg = InputConfig(min_size=4, max_size=0, to_bgr255=False, pixel_mean=(0.5, 0.5, 0.5), pixel_std=(0.25, 0.5, 1.0))
    prepared = prepare_image(_solid(4, 4, (255, 0, 51)), cfg)
    np.testing.assert_allclose(prepared.tensor[:, 0, 0], [(1 - 0.5) / 0.25, (0 - 0.5) / 0.5, 0.2 - 0.5], rtol=1e-6)
    assert prepared.tensor.shape == (3, 32, 32)


def test_no_padding_without_size_divisibility():
    prepared = prepare_image(_solid(5, 7, (1, 2, 3)), InputConfig(min_size=5, max_size=0, size_divisibility=0))
    assert prepared.tensor.shape == (3, 5, 7)


def test_downscale_uses_pillow_antialiased_bilinear():
    # a 1-pixel checkerboard shrunk 3x: an antialiasing filter averages it to grey, a plain
    # bilinear sampler (OpenCV INTER_LINEAR, torch without antialias) hits pixel centres: 0 or 255
    board = ((np.indices((48, 48)).sum(axis=0) % 2) * 255).astype(np.uint8)
    rgb = np.repeat(board[:, :, None], 3, axis=2)
    cfg = InputConfig(min_size=16, max_size=0, to_bgr255=True, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))
    prepared = prepare_image(rgb, cfg)
    assert prepared.resized_hw == (16, 16)
    assert np.abs(prepared.tensor[:, 2:14, 2:14] - 127.5).max() < 5
    expected = np.asarray(Image.fromarray(rgb).resize((16, 16), Image.Resampling.BILINEAR), np.float32)
    np.testing.assert_array_equal(prepared.tensor[0, :16, :16], expected[:, :, 2])


def test_batch_pads_to_largest_image():
    cfg = InputConfig(min_size=40, max_size=0, size_divisibility=32)
    small = prepare_image(_solid(40, 50, (0, 0, 0)), cfg)
    large = prepare_image(_solid(40, 90, (255, 255, 255)), cfg)
    batch = batch_images([small, large], 32)
    assert batch.shape == (2, 3, 64, 96)
    np.testing.assert_array_equal(batch[0, :, :40, :50], small.tensor[:, :40, :50])
    np.testing.assert_array_equal(batch[1, :, :40, :90], large.tensor[:, :40, :90])
    assert not batch[0, :, 40:].any() and not batch[0, :, :, 50:].any()
    assert not batch[1, :, 40:].any() and not batch[1, :, :, 90:].any()
    assert batch_images([small, large], 0).shape == (2, 3, 40, 90)


def test_one_image_batch_is_its_padded_tensor_as_is():
    cfg = InputConfig(min_size=40, max_size=0, size_divisibility=32)
    image = prepare_image(_solid(40, 50, (10, 200, 30)), cfg)
    one = batch_images([image], 32)
    assert one.shape == (1, 3, 64, 64) and np.shares_memory(one, image.tensor)
    np.testing.assert_array_equal(one, batch_images([image, image], 32)[:1])  # the copying path's bits
    assert batch_images([image], 0).shape == (1, 3, 40, 50)  # another divisibility: padded anew


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
    ],
)
def test_rejects_non_rgb_uint8(bad):
    with pytest.raises(ImageError, match="uint8 RGB"):
        prepare_image(bad, InputConfig())
