"""FLOPs per graph: counted at export into the manifest, and scaling as the arithmetic does."""

from __future__ import annotations

import json

from glipcli.export.flops import count_flops, reference_input
from glipcli.runtime.bundle import MANIFEST


def test_manifest_holds_the_count_at_the_test_size(tiny_model, tiny_bundle):
    entry = json.loads((tiny_bundle / MANIFEST).read_text())["flops"]
    (height, width), tokens = reference_input(tiny_model.cfg)
    assert entry["image_hw"] == [height, width] and entry["tokens"] == tokens
    assert height % 32 == 0 and width % 32 == 0 and height >= tiny_model.cfg.input.min_size
    assert entry["graphs"] == count_flops(tiny_model, (height, width), tokens)
    assert all(entry["graphs"][g] > 0 for g in ("text", "backbone", "head"))


def test_counts_follow_the_input(tiny_model):
    # sides where every stage's map is whole 7x7 windows: convolutions and attention scale with area
    small = count_flops(tiny_model, (224, 224), 8)
    large = count_flops(tiny_model, (448, 448), 8)
    assert 3.9 < large["backbone"] / small["backbone"] <= 4.0  # P6/P7's odd sizes round down
    assert large["text"] == small["text"]  # the caption did not change
    longer = count_flops(tiny_model, (224, 224), 16)
    assert longer["text"] > small["text"] and longer["head"] > small["head"]
    assert longer["backbone"] == small["backbone"]
