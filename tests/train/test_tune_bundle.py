"""Prompt tuning from the bundle alone: no checkpoint, resumable, and clean refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from glipcli.errors import BundleError, ConfigError
from glipcli.train.trainer import LAST, TrainConfig
from glipcli.train.tune import run_folder, tune_prompt
from tests.train.test_coco_data import ann, write_coco

SETTINGS = dict(
    steps=4, batch_size=1, lr=0.05, warmup=1, scales=(64,), max_size=96, workers=0, checkpoint_every=2, threads=1
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    annotations = [ann(1, 1, [4, 4, 30, 20]), ann(2, 2, [10, 8, 20, 30]), ann(3, 1, [40, 30, 20, 20])]
    images = {"a.png": (64, 48), "b.png": (72, 64), "c.png": (80, 64)}
    return write_coco(root, images, annotations, {1: "cat", 2: "dog"}), root / "images"


@pytest.fixture(scope="module")
def uninterrupted(tiny_bundle, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned") / "bundle"
    return tune_prompt(tiny_bundle, None, *data, out, TrainConfig(**SETTINGS), workers=1)


def _features(bundle):
    (entry,) = bundle.prompts.values()
    return np.load(bundle.path / entry["file"])


def test_tuning_needs_no_checkpoint(uninterrupted, tiny_bundle):
    assert uninterrupted.model.rpn.tunable_linear.weight.abs().sum() > 0
    assert [e["caption"] for e in uninterrupted.bundle.prompts.values()] == ["cat. dog."]
    assert not run_folder(uninterrupted.bundle.path).exists()  # the run's checkpoints go with it


def test_an_interrupted_tuning_resumes_to_the_same_result(uninterrupted, tiny_bundle, data, tmp_path):
    out = tmp_path / "tuned"

    def stop_after_the_first_checkpoint(step, _metrics):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune_prompt(tiny_bundle, None, *data, out, TrainConfig(**SETTINGS), on_step=stop_after_the_first_checkpoint)
    assert not out.exists() and (run_folder(out) / LAST).is_file()
    with pytest.raises(ConfigError, match="pass --resume"):
        tune_prompt(tiny_bundle, None, *data, out, TrainConfig(**SETTINGS))
    steps = []
    resumed = tune_prompt(
        tiny_bundle, None, *data, out, TrainConfig(**SETTINGS), resume=True, on_step=lambda s, _m: steps.append(s)
    )
    assert steps == [3, 4]
    np.testing.assert_array_equal(_features(resumed.bundle), _features(uninterrupted.bundle))
    assert torch.equal(resumed.model.rpn.tunable_linear.weight, uninterrupted.model.rpn.tunable_linear.weight)


def test_a_resumed_tuning_must_learn_from_the_same_targets_shots_and_data(tiny_bundle, data, tmp_path):
    out = tmp_path / "tuned"

    def stop(step, _metrics):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune_prompt(tiny_bundle, None, *data, out, TrainConfig(**SETTINGS), targets="phrases", on_step=stop)
    for given, changed in (({"targets": "words"}, "targets"), ({"targets": "phrases", "shots": 1}, "shots")):
        with pytest.raises(ConfigError, match=f"tuned with other {changed}: resume with the same"):
            tune_prompt(tiny_bundle, None, *data, out, TrainConfig(**SETTINGS), resume=True, **given)
    other = tmp_path / "other.json"
    other.write_text(data[0].read_text().replace('"cat"', '"kitten"'))
    with pytest.raises(ConfigError, match="other data_sha256"):
        tune_prompt(tiny_bundle, None, other, data[1], out, TrainConfig(**SETTINGS), resume=True, targets="phrases")
    resumed = tune_prompt(tiny_bundle, None, *data, out, TrainConfig(**SETTINGS), resume=True, targets="phrases")
    assert resumed.bundle.prompts and not run_folder(out).exists()


def test_a_tuned_bundle_tunes_again_from_its_untuned_model(uninterrupted, data, tmp_path):
    annotations = [ann(1, 1, [4, 4, 30, 20]), ann(2, 1, [10, 8, 20, 30])]
    birds = write_coco(tmp_path, {"a.png": (64, 48), "b.png": (72, 64)}, annotations, {1: "bird"}, name="birds.json")
    again = tune_prompt(
        uninterrupted.bundle.path, None, birds, tmp_path / "images", tmp_path / "t2", TrainConfig(**SETTINGS)
    )
    assert sorted(e["caption"] for e in again.bundle.prompts.values()) == ["bird.", "cat. dog."]
    assert again.model.rpn.tunable_linear.weight.abs().sum() > 0


def _broken(bundle, root, what):
    copy = root / "source"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    if what == "int8":
        manifest["precision"] = "int8"
    elif what == "old":
        del manifest["pytorch_weights"]
    else:
        with open(copy / "head.onnx", "ab") as fh:
            fh.write(b"\0")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize(
    "what, message",
    [
        ("int8", "holds int8 graphs"),
        ("old", "carries no PyTorch weights"),
        ("tampered", "head.onnx does not match its sha256"),
    ],
)
def test_bundles_that_cannot_be_tuned_are_refused_and_nothing_is_written(tiny_bundle, data, tmp_path, what, message):
    source = _broken(tiny_bundle, tmp_path, what)
    out = tmp_path / "out" / "tuned"
    with pytest.raises(BundleError, match=message):
        tune_prompt(source, None, *data, out, TrainConfig(**SETTINGS))
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
