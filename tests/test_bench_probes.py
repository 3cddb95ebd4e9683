"""bench/probes: the readouts average the cells they say, and designs merge as documented."""

from __future__ import annotations

import pytest
import torch

from bench.probes.shapes_at_scale import DESIGNS, ShapeProbe, cell_weights, design


def test_readouts_weigh_the_cells_at_the_object():
    boxes = torch.tensor([[20.0, 4.0, 36.0, 12.0]])  # centre (28, 8) on a 7x7 grid of stride 8
    two = cell_weights(boxes, 8, 7, "2x2")[0]
    assert two.nonzero().tolist() == [[0, 3], [0, 4], [1, 3], [1, 4]] and two.sum() == pytest.approx(1)
    assert cell_weights(boxes, 8, 7, "centre")[0].nonzero().tolist() == [[1, 3]]
    box = cell_weights(boxes, 8, 7, "box")[0]
    # cell centres 4, 12 (y) and 20, 28, 36 (x) lie in the box
    assert box.nonzero().tolist() == [[i, j] for i in (0, 1) for j in (2, 3, 4)]
    assert box[0, 2] == pytest.approx(1 / 6)


def test_designs_merge_and_every_one_runs():
    merged = design("stem16-32+depth2-2+c3_box")
    assert merged.readout == "c3_box"
    assert merged.swin_config().stem_channels == (16, 32) and merged.swin_config().depths == (2, 2, 2, 1)
    images = torch.randint(0, 255, (2, 56, 56, 3), dtype=torch.uint8)
    boxes = torch.tensor([[10.0, 10.0, 30.0, 40.0], [0.0, 0.0, 56.0, 56.0]])
    for name in DESIGNS:
        assert ShapeProbe(design(name)).eval()(images, boxes).shape == (2, 8)


def test_box_refiner_deltas_decode_to_the_object_they_encode():
    import numpy as np

    from bench.probes.box_refiner import decode, encode
    from bench.shape_naming import pairwise_iou

    boxes = np.array([[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 100.0, 100.0]])
    objects = np.array([[14.0, 18.0, 44.0, 46.0], [20.0, 30.0, 60.0, 90.0]])
    deltas = encode(boxes, objects)
    np.testing.assert_allclose(decode(boxes, deltas), objects, atol=1e-9)
    np.testing.assert_allclose(decode(boxes, np.zeros((2, 4))), boxes)  # no delta: the box itself
    assert deltas[0, 0] == pytest.approx((29 - 30) / 40 * 10)  # dx in tenths of the box's width
    overlap = 30 * 20
    assert pairwise_iou(boxes, objects)[0, 0] == pytest.approx(overlap / (40 * 20 + 30 * 28 - overlap))
