"""The PyTorch GLIP reproduces the official reduced model, tensor by tensor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from glipcli.model.bert_layer import BertEncoderLayer
from glipcli.model.checkpoint import load_checkpoint
from glipcli.model.dyhead import DyConv
from glipcli.model.fusion import VLFuse
from glipcli.model.glip import build_model
from glipcli.presets import load_config, preset
from tests.conftest import needs_reference


def assert_close(ours: torch.Tensor, ref: np.ndarray, name: str, tol: float = 1e-4) -> None:
    o = ours.detach().float().numpy()
    assert o.shape == ref.shape, f"{name}: shape {o.shape} vs {ref.shape}"
    err = np.abs(o - ref) / np.maximum(1.0, np.abs(ref))  # absolute, relative for large values
    assert err.max() <= tol, f"{name}: max error {err.max():.3e} > {tol}"


@pytest.fixture(scope="module")
def reduced(reference):
    model = build_model(load_config(reference / "config_reduced.yaml"))
    load_checkpoint(model, reference / "reduced.pth")
    return model


@pytest.mark.parametrize("name,ref", [("glip-t", "state_dict_glip_t.json"), ("glip-l", "state_dict_glip_l.json")])
@needs_reference
def test_state_dict_matches_official(reference, name, ref):
    data = json.loads((reference / ref).read_text())
    expected = {k: tuple(shape) for k, shape, _ in data["entries"]}
    with torch.device("meta"):
        model = build_model(preset(name))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected
    assert sum(p.numel() for p in model.parameters()) == data["num_parameters"]


@needs_reference
@torch.no_grad()
def test_every_intermediate_matches(reduced, case):
    ids = torch.from_numpy(case["input_ids"])
    mask = torch.from_numpy(case["attention_mask"])
    hidden, embedded = reduced.language_backbone(ids, mask)
    assert_close(hidden, case["lang_hidden"], "lang_hidden")
    assert_close(embedded, case["lang_embedded"], "lang_embedded")
    stages = reduced.backbone.body(torch.from_numpy(case["image_tensor"]))
    for i, s in enumerate(stages):
        assert_close(s, case[f"swin_stage{i + 2}"], f"swin_stage{i + 2}")
    levels = reduced.backbone.fpn(stages[1:])
    for i, p in enumerate(levels):
        assert_close(p, case[f"fpn_p{i + 3}"], f"fpn_p{i + 3}")
    visual, text = list(levels), hidden
    for k, module in enumerate(reduced.rpn.head.dyhead_tower):
        if isinstance(module, VLFuse):
            visual, text = module(visual, text, mask)
            kind = "VLFuse"
            assert_close(text, case[f"tower{k:02d}_VLFuse_lang"], f"tower{k:02d} lang")
        elif isinstance(module, BertEncoderLayer):
            text = module(text, mask)
            assert_close(text, case[f"tower{k:02d}_BertEncoderLayer_lang"], f"tower{k:02d} lang")
            continue
        else:
            assert isinstance(module, DyConv)
            visual = module(visual)
            kind = "DyConv"
        for level in range(5):
            name = f"tower{k:02d}_{kind}_visual_l{level}"
            assert_close(visual[level], case[name], name)


@needs_reference
@torch.no_grad()
def test_head_outputs_and_anchors_match(reduced, case):
    mask = torch.from_numpy(case["attention_mask"])
    text = reduced.encode_text(torch.from_numpy(case["input_ids"]), mask)
    out = reduced.head(reduced.encode_image(torch.from_numpy(case["image_tensor"])), text, mask)
    for level in range(5):
        assert_close(out.bbox_regression[level], case[f"bbox_regression_l{level}"], f"bbox l{level}")
        assert_close(out.centerness[level], case[f"centerness_l{level}"], f"centerness l{level}")
        assert_close(out.dot_product_logits[level], case[f"dot_product_logits_l{level}"], f"logits l{level}")
        assert_close(out.cls_logits[level], case[f"cls_logits_l{level}"], f"cls l{level}")
        h, w = out.centerness[level].shape[-2:]
        anchors = reduced.rpn.anchor_generator.level_anchors(level, h, w)
        assert_close(anchors, case[f"anchors_l{level}"], f"anchors l{level}", tol=0)


@needs_reference
@torch.no_grad()
def test_text_padding_does_not_change_valid_outputs(reduced, case):
    """Padding to the prompt's length instead of 256 is exact for every valid token."""
    mask = torch.from_numpy(case["attention_mask"])
    n = int(mask.sum())
    ids = torch.from_numpy(case["input_ids"])
    features = reduced.encode_image(torch.from_numpy(case["image_tensor"]))
    full = reduced.decode(reduced.head(features, reduced.encode_text(ids, mask), mask))
    short = reduced.decode(reduced.head(features, reduced.encode_text(ids[:, :n], mask[:, :n]), mask[:, :n]))
    torch.testing.assert_close(short[0], full[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(short[1], full[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(short[2], full[2][..., :n], atol=1e-4, rtol=1e-4)
