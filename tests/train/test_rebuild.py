"""A bundle is all a user needs: the PyTorch model rebuilt from it detects as the bundle does."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from glipcli.api import Detector
from glipcli.errors import BundleError, ConfigError
from glipcli.export.exporter import export_bundle
from glipcli.export.rebuild import MANIFEST_KEY, WEIGHTS_FILE, bundle_model
from glipcli.model.glip import build_model
from glipcli.model.rounding import round_weights
from glipcli.runtime.bundle import load_bundle
from glipcli.tokenizer import load_tokenizer
from glipcli.train.finetune import initial_weights
from glipcli.train.torch_engine import TorchEngine
from tests.conftest import _randomise, tiny_config

# Two image sizes: two padded input sizes and aspect ratios, as export verification uses.
IMAGES = {"wide.png": (150, 96), "tall.png": (70, 130)}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for i, (name, (w, h)) in enumerate(IMAGES.items()):
        pixels = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name)
    return [root / name for name in IMAGES]


@pytest.fixture(scope="module")
def stem_bundle(tmp_path_factory):
    """glip-nano's kind of model: a conv stem with BatchNorm (which export folds into the conv),
    weights rounded by --compact and stored compactly."""
    cfg = tiny_config()
    cfg = cfg.replace(name="tiny-stem", swin=dataclasses.replace(cfg.swin, stem_channels=(8, 16)))
    model = build_model(cfg)
    _randomise(model, 1)
    for module in model.modules():  # running statistics away from 0 / 1, so folding them matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    round_weights(model.eval())
    out = tmp_path_factory.mktemp("bundles") / "stem"
    export_bundle(model, out, name="tiny-stem", source={"checkpoint": "random", "sha256": "1" * 64})
    return out, model


def _detections(detector, image):
    found = detector(image, "cat. dog. red circle", threshold=0.0, all_labels=True)
    return found.xyxy, found.confidence, found.class_id


@pytest.mark.parametrize("which", ["plain", "conv stem, compact"])
def test_the_model_rebuilt_from_a_bundle_detects_as_the_bundle(which, tiny_bundle, tiny_model, stem_bundle, images):
    path, exported = (tiny_bundle, tiny_model) if which == "plain" else stem_bundle
    bundle = load_bundle(path)
    rebuilt = bundle_model(bundle)
    for key, value in exported.state_dict().items():  # the very weights it was exported from
        assert torch.equal(rebuilt.state_dict()[key], value), key
    tokenizer = load_tokenizer(bundle.tokenizer_path)
    onnx = Detector.load(path, device="cpu")
    torch_detector = Detector(TorchEngine(rebuilt), tokenizer)
    for image in images:
        boxes, scores, labels = _detections(onnx, image)
        ref_boxes, ref_scores, ref_labels = _detections(torch_detector, image)
        assert len(scores) > 0
        np.testing.assert_allclose(scores, ref_scores, atol=2e-4)
        np.testing.assert_allclose(boxes, ref_boxes, atol=2e-2)
        np.testing.assert_array_equal(labels, ref_labels)


def test_the_bundle_carries_little_beside_its_graphs(stem_bundle):
    path, _ = stem_bundle
    entry = load_bundle(path).manifest[MANIFEST_KEY]
    graphs = sum(g["bytes"] for g in load_bundle(path).manifest["graphs"].values())
    assert entry["from_graphs"] > 0 and entry["bytes"] < 0.1 * graphs


def test_fine_tuning_starts_from_a_bundle_by_folder_and_refuses_a_config(tiny_bundle, tiny_model):
    model, source = initial_weights(tiny_bundle, prompt_tuning=True)
    assert source["bundle"] == "tiny" and model.rpn.tunable_linear.weight.abs().sum() == 0
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tiny_model.state_dict().items())
    with pytest.raises(ConfigError, match="carries its model's config"):
        initial_weights(tiny_bundle, "glip-t")


def _copy(bundle, root, edit=None):
    target = root / "copy"
    shutil.copytree(bundle, target)
    manifest = json.loads((target / "manifest.json").read_text())
    if edit:
        edit(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.pop(MANIFEST_KEY), "carries no PyTorch weights .* re-export it"),
        (lambda m: m.update(precision="int8"), "holds int8 graphs, not the weights to learn from"),
        (lambda m: m[MANIFEST_KEY].update(sha256="0" * 64), "does not match its sha256"),
    ],
)
def test_bundles_without_usable_weights_are_refused_in_one_line(tiny_bundle, tmp_path, edit, message):
    with pytest.raises(BundleError, match=message) as error:
        bundle_model(load_bundle(_copy(tiny_bundle, tmp_path, edit)))
    assert "\n" not in str(error.value)


def test_a_tampered_weights_file_is_refused(tiny_bundle, tmp_path):
    copy = _copy(tiny_bundle, tmp_path)
    with open(copy / WEIGHTS_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="does not match its sha256"):
        initial_weights(copy)
