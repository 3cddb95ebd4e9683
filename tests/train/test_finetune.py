"""Fine-tuning: weights from a checkpoint, one trainer for full, head and prompt modes."""

from __future__ import annotations

import pytest
import torch

from glipcli.errors import BundleError, CheckpointError, ConfigError
from glipcli.tokenizer import build_tokenizer
from glipcli.train.coco_data import load_detection_data
from glipcli.train.finetune import TUNABLE, finetune, initial_weights
from glipcli.train.trainer import FINAL, LAST, TrainConfig
from tests.conftest import tiny_config
from tests.train.test_coco_data import ann, write_coco

SETTINGS = dict(steps=2, batch_size=1, lr=1e-2, warmup=1, scales=(64,), max_size=96, workers=0, checkpoint_every=2)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    torch.save({"model": tiny_model.state_dict(), "config": tiny_config().to_dict()}, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    annotations = [ann(1, 1, [4, 4, 30, 20]), ann(2, 2, [10, 8, 20, 30]), ann(2, 1, [40, 30, 20, 20])]
    path = write_coco(root, {"a.png": (64, 48), "b.png": (72, 64)}, annotations, {1: "cat", 2: "dog"})
    return load_detection_data(path, root / "images", build_tokenizer(), 256, workers=1)


def test_initial_weights_load_a_checkpoint_with_its_config(checkpoint, tiny_model):
    model, source = initial_weights(checkpoint)
    assert model.cfg == tiny_config()
    expected = tiny_model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    assert source["checkpoint"] == "model.pth" and len(source["sha256"]) == 64


def test_prompt_tuning_adds_a_zero_offset(checkpoint):
    model, _ = initial_weights(checkpoint, prompt_tuning=True)
    assert model.cfg.head.prompt_tuning
    assert not model.rpn.tunable_linear.weight.any()


def test_initial_weights_refuse_what_they_cannot_build(tmp_path, tiny_model, monkeypatch):
    bare = tmp_path / "official.pth"
    torch.save({"model": tiny_model.state_dict()}, bare)
    with pytest.raises(ConfigError, match="--config"):
        initial_weights(bare)

    def no_bundle(name):
        raise BundleError(f"unknown model {name!r}")

    monkeypatch.setattr("glipcli.train.finetune.resolve_model", no_bundle)  # as where no glip-nano bundle is installed
    with pytest.raises(ConfigError, match="no released weights and no bundle"):
        initial_weights("glip-nano")
    with pytest.raises(CheckpointError, match="not found"):
        initial_weights(tmp_path / "nope.pth")


def _changed(before, model):
    return {k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])}


@pytest.mark.parametrize(
    "trainable, learns",
    [("head", lambda k: k.startswith("rpn.head.") and "dyhead_tower" not in k), ("prompt", lambda k: k == TUNABLE)],
)
def test_modes_share_the_trainer_and_train_only_their_part(checkpoint, data, tmp_path, trainable, learns):
    model, _ = initial_weights(checkpoint, prompt_tuning=trainable == "prompt")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    final = finetune(model, data, tmp_path / "run", TrainConfig(trainable=trainable, **SETTINGS))
    changed = _changed(before, model)
    assert changed and all(learns(k) for k in changed)
    assert final == tmp_path / "run" / FINAL and (tmp_path / "run" / LAST).is_file()
    saved = torch.load(final, weights_only=True)
    assert saved["config"] == model.cfg.to_dict()


def test_full_fine_tuning_keeps_the_text_encoder_and_resumes(checkpoint, data, tmp_path):
    model, _ = initial_weights(checkpoint)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    finetune(model, data, tmp_path / "run", TrainConfig(**SETTINGS))
    changed = _changed(before, model)
    assert any(k.startswith("backbone.") for k in changed)
    assert not any(k.startswith("language_backbone.") for k in changed)
    with pytest.raises(ConfigError, match="--resume"):
        finetune(initial_weights(checkpoint)[0], data, tmp_path / "run", TrainConfig(**SETTINGS))
    longer = TrainConfig(**{**SETTINGS, "steps": 3})
    resumed, _ = initial_weights(checkpoint)
    finetune(resumed, data, tmp_path / "run", longer, resume=True)
    assert _changed(model.state_dict(), resumed)  # it went on from step 2


def test_prompt_mode_needs_the_offset(checkpoint, data, tmp_path):
    model, _ = initial_weights(checkpoint)
    with pytest.raises(ConfigError, match="tunable_linear"):
        finetune(model, data, tmp_path / "run", TrainConfig(trainable="prompt", **SETTINGS))


@pytest.mark.parametrize(
    ("score_agg", "given", "expected"),
    [
        ("GEOMEAN", None, "words"),
        ("MEAN", None, "phrases"),
        ("GEOMEAN", "phrases", "phrases"),
        ("MEAN", "words", "words"),
    ],
)
def test_fine_tuning_grounds_boxes_as_the_model_scores_phrases(
    checkpoint, data, tmp_path, monkeypatch, score_agg, given, expected
):
    """glip-nano (geometric mean of words) learns per word: with GLIP's phrase targets 60 steps of
    fine-tuning lowered its mAP@0.5 on its own 56 names (0.703 -> 0.671); per word raised it (0.720)."""
    import dataclasses

    from glipcli.train import finetune as module
    from glipcli.train.targets import WordTargets

    model, _ = initial_weights(checkpoint)
    model.cfg = model.cfg.replace(postprocess=dataclasses.replace(model.cfg.postprocess, score_agg=score_agg))
    seen = []

    class Recorder:
        def __init__(self, model, source, *args):
            seen.append(source)

        def fit_new_or_resumed(self, resume, on_step):
            return tmp_path / "model.pth"

    monkeypatch.setattr(module, "Trainer", Recorder)
    finetune(model, data, tmp_path, TrainConfig(**SETTINGS), targets=given)
    assert isinstance(seen[0], WordTargets) == (expected == "words")
    with pytest.raises(ConfigError, match="unknown grounding targets 'boxes'"):
        finetune(model, data, tmp_path, TrainConfig(**SETTINGS), targets="boxes")
