"""Prompt tuning: a tuned bundle detects exactly like the PyTorch model with the learned offset."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from glipcli.api import Detector
from glipcli.digests import sha256_file
from glipcli.errors import CheckpointError, ConfigError
from glipcli.prompt import encode_prompt, parse_prompt
from glipcli.runtime.bundle import load_bundle
from glipcli.runtime.engine import Engine
from glipcli.tokenizer import load_tokenizer
from glipcli.train.data import encode_sample
from glipcli.train.finetune import initial_weights
from glipcli.train.targets import WordTargets, default_targets
from glipcli.train.torch_engine import TorchEngine
from glipcli.train.trainer import TrainConfig
from glipcli.train.tune import tune_prompt, tuned_features, write_tuned_bundle
from tests.conftest import tiny_config
from tests.train.test_coco_data import TOKENIZER, ann, load, write_coco

SETTINGS = dict(steps=3, batch_size=1, lr=0.05, warmup=1, scales=(64,), max_size=96, workers=0)


pytestmark = pytest.mark.usefixtures("one_thread")


def bundle_with_weights(tiny_model, tiny_bundle, root):
    """A copy of the tiny bundle and the checkpoint it was exported from (its manifest says so)."""
    weights = root / "model.pth"
    torch.save({"model": tiny_model.state_dict(), "config": tiny_config().to_dict()}, weights)
    bundle = root / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["source"] = {"checkpoint": weights.name, "sha256": sha256_file(weights), "config": "tiny"}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle, weights


@pytest.fixture(scope="module")
def source(tiny_model, tiny_bundle, tmp_path_factory):
    return bundle_with_weights(tiny_model, tiny_bundle, tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    annotations = [ann(1, 1, [4, 4, 30, 20]), ann(2, 2, [10, 8, 20, 30]), ann(3, 1, [40, 30, 20, 20])]
    images = {"a.png": (64, 48), "b.png": (72, 64), "c.png": (80, 64)}
    return write_coco(root, images, annotations, {1: "cat", 2: "dog"}), root / "images"


@pytest.fixture(scope="module")
def tuned(source, data, tmp_path_factory):
    bundle, weights = source
    out = tmp_path_factory.mktemp("tuned") / "bundle"
    return tune_prompt(bundle, weights, *data, out, TrainConfig(**SETTINGS), shots=1)


def _detections(detector, image, prompt):
    found = detector(image, prompt, threshold=0.0, all_labels=True)
    return found.xyxy, found.confidence, found.class_id


def test_tuned_bundle_detects_like_the_tuned_pytorch_model(tuned, data):
    assert tuned.model.rpn.tunable_linear.weight.abs().sum() > 0  # the offset learned something
    assert [entry["caption"] for entry in tuned.bundle.prompts.values()] == ["cat. dog."]
    assert len(tuned.data.images) == 2  # one shot of each category
    onnx = Detector(Engine(load_bundle(tuned.bundle.path), device="cpu"), load_tokenizer(tuned.bundle.tokenizer_path))
    torch_detector = Detector(TorchEngine(tuned.model), load_tokenizer(tuned.bundle.tokenizer_path))
    assert onnx.tuned_captions == {"cat. dog."}
    image = data[1] / "b.png"
    boxes, scores, labels = _detections(onnx, image, "cat. dog")
    ref_boxes, ref_scores, ref_labels = _detections(torch_detector, image, "cat. dog")
    assert onnx.engine.runs["text"] == 0  # the stored features replaced the text encoder
    np.testing.assert_allclose(scores, ref_scores, atol=2e-4)
    np.testing.assert_allclose(boxes, ref_boxes, atol=2e-2)
    np.testing.assert_array_equal(labels, ref_labels)


def test_another_prompt_falls_back_to_the_untuned_text_encoder(tuned, source, data):
    plain = Detector.load(source[0], device="cpu")
    onnx = Detector.load(tuned.bundle.path, device="cpu")
    image = data[1] / "b.png"
    for prompt in ("dog. cat", "cat: a small pet. dog"):
        for got, want in zip(_detections(onnx, image, prompt), _detections(plain, image, prompt), strict=True):
            np.testing.assert_array_equal(got, want)
    assert onnx.engine.runs["text"] == 2
    untuned = _detections(plain, image, "cat. dog")[1]
    assert not np.array_equal(_detections(onnx, image, "cat. dog")[1], untuned)


def test_tuned_bundle_shares_the_graphs_and_records_how_it_was_made(tuned, source):
    manifest = tuned.bundle.manifest
    assert manifest["name"] == "tiny-tuned"
    (entry,) = manifest["prompts"].values()
    assert entry["shots"] == 1 and entry["steps"] == 3 and entry["images"] == 2
    assert entry["targets"] == "phrases"  # the tiny model averages its phrases' tokens, as GLIP
    for graph in manifest["graphs"].values():
        new, old = tuned.bundle.path / graph["file"], source[0] / graph["file"]
        assert os.path.samefile(new, old) or new.read_bytes() == old.read_bytes()


def test_features_carry_only_the_learned_part_of_the_offset(source):
    model, _ = initial_weights(source[1], prompt_tuning=True)
    initial = torch.randn_like(model.rpn.tunable_linear.weight)  # an offset already in the head graph
    learned = torch.randn_like(initial)
    with torch.no_grad():
        model.rpn.tunable_linear.weight.copy_(initial + learned)
    tokenizer = load_tokenizer(load_bundle(source[0]).tokenizer_path)
    (chunk,) = encode_prompt(parse_prompt("cat. dog"), tokenizer)
    features = tuned_features(model, [chunk], initial)[chunk.caption]
    text = model.encode_text(torch.tensor(chunk.input_ids[None]), torch.tensor(chunk.attention_mask[None]))[0]
    expected = text + learned[: len(chunk.input_ids)]
    np.testing.assert_allclose(features, expected.detach().numpy(), atol=1e-5)


def test_retuning_a_caption_replaces_its_features_and_keeps_the_others(tuned, tmp_path):
    width = tuned.bundle.config.language.dim
    first = write_tuned_bundle(tuned.bundle, {"bird.": np.ones((3, width), np.float32)}, tmp_path / "b1")
    assert sorted(e["caption"] for e in first.prompts.values()) == ["bird.", "cat. dog."]
    new = np.zeros((5, width), np.float32)
    second = write_tuned_bundle(first, {"cat. dog.": new}, tmp_path / "b2")
    entries = {e["caption"]: e for e in second.prompts.values()}
    assert sorted(entries) == ["bird.", "cat. dog."]
    np.testing.assert_array_equal(np.load(second.path / entries["cat. dog."]["file"]), new)
    assert len(list((second.path / "prompts").iterdir())) == 2


def test_wrong_weights_and_outputs_are_refused(source, data, tmp_path, tiny_model):
    bundle, weights = source
    other = tmp_path / "other.pth"
    torch.save({"model": {k: v + 1 for k, v in tiny_model.state_dict().items()}, "config": {}}, other)
    cfg = TrainConfig(**SETTINGS)
    with pytest.raises(CheckpointError, match="not the checkpoint"):
        tune_prompt(bundle, other, *data, tmp_path / "out", cfg)
    with pytest.raises(ConfigError, match="unknown tuning targets 'letters'"):
        tune_prompt(bundle, weights, *data, tmp_path / "out", cfg, targets="letters")
    with pytest.raises(ConfigError, match="source bundle"):
        tune_prompt(bundle, weights, *data, bundle, cfg)
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="--overwrite"):
        tune_prompt(bundle, weights, *data, tmp_path / "taken", cfg)
    assert not (tmp_path / "out").exists()


def test_word_targets_ground_the_words_a_name_shares_with_the_others(tmp_path):
    """glip-nano was pre-trained with per-word targets: "red" in "red star" is positive for a red
    circle. Tuning its prompt with phrase targets pushed those shared words down, and the names'
    own words with them (trained names' mAP@0.5 0.675 -> 0.623, docs/learning.md)."""
    names = {1: "red circle", 2: "red star", 3: "blue circle", 4: "green heart"}
    annotations = [ann(1, 1, [2, 3, 20, 20]), ann(1, 4, [30, 5, 10, 10])]
    data = load(write_coco(tmp_path, {"a.png": (64, 48)}, annotations, names), tmp_path)
    phrases, words = data.sample(0, 0), WordTargets(data).sample(0, 0)
    assert words.caption == phrases.caption == "red circle. red star. blue circle. green heart."
    np.testing.assert_array_equal(words.boxes, phrases.boxes)
    grounded = [[words.caption[a:b] for a, b in spans] for spans in words.box_spans]
    assert grounded == [["red circle", "red", "circle"], ["green heart"]]
    assert [[phrases.caption[a:b] for a, b in spans] for spans in phrases.box_spans] == [
        ["red circle"],
        ["green heart"],
    ]
    # the spans become token targets: the red circle's row is positive on "red" of "red star"
    example = encode_sample(words, TOKENIZER, tiny_config().input, 64, 256)
    tokens = TOKENIZER.encode(words.caption).tokens
    positive = [tokens[i] for i in np.flatnonzero(example.positive_map[0])]
    assert positive == ["red", "circle", "red", "circle"]
    assert len(WordTargets(data).with_length(5)) == 5 and isinstance(WordTargets(data).with_length(5), WordTargets)


def test_word_targets_carry_the_names_each_box_competes_among(tmp_path):
    """The name ranking term (glipcli.train.loss.name_rank_loss) needs every name of the chunk,
    weighted as the model scores it, and each box's own one; phrase targets carry none."""
    names = {1: "red circle", 2: "red hexagon", 3: "blue circle"}
    annotations = [ann(1, 2, [2, 3, 20, 20]), ann(1, 3, [30, 5, 10, 10])]
    data = load(write_coco(tmp_path, {"a.png": (64, 48)}, annotations, names), tmp_path)
    words = WordTargets(data).sample(0, 0)
    assert [words.caption[a:b] for a, b in words.name_spans] == ["red circle", "red hexagon", "blue circle"]
    assert words.box_names == (1, 2)
    assert data.sample(0, 0).name_spans == ()
    example = encode_sample(words, TOKENIZER, tiny_config().input, 64, 256)
    tokens = TOKENIZER.encode(words.caption).tokens
    hexagon = {tokens[i]: round(float(w), 4) for i, w in enumerate(example.name_weights[1]) if w}
    assert hexagon == {"red": 0.5, "he": 0.1667, "##xa": 0.1667, "##gon": 0.1667}  # each word weighs 1/2
    np.testing.assert_allclose(example.name_weights.sum(1), 1.0, rtol=1e-6)
    assert example.box_names.tolist() == [1, 2]
    # a name truncated away cannot be a box's own, and weighs nothing
    short = encode_sample(words, TOKENIZER, tiny_config().input, 64, 8)
    assert short.name_weights[2].sum() == 0 and short.box_names.tolist() == [1, -1]


def test_the_default_targets_follow_how_the_model_scores_a_phrase(tiny_bundle):
    assert default_targets(load_bundle("exported/glip-nano").config) == "words"  # geometric mean of its words
    assert default_targets(load_bundle(tiny_bundle).config) == "phrases"  # GLIP's mean of tokens
