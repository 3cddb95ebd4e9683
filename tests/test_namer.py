"""The region namer: crops, context-free word features, its graph in a bundle, and the Detector's
re-scoring (glipcli.crops, glipcli.rescore, glipcli.export.namer, glipcli.train.namer)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from glipcli.api import Detector
from glipcli.cli import app
from glipcli.config import NamerConfig
from glipcli.crops import box_crops
from glipcli.errors import BundleError, ConfigError
from glipcli.export.namer import write_namer_bundle
from glipcli.export.verify import sample_image
from glipcli.model.namer import AttentionPool, RegionNamer
from glipcli.postprocess import label_scores
from glipcli.rescore import word_features
from glipcli.train.namer import (
    NamerRecipe,
    encode_prompts,
    make_examples,
    proposal_examples,
    proposal_targets,
    sample_prompts,
    train_namer,
)
from glipcli.train.synth import COLOURS, SHAPES, crop_scene

PROMPT = "red square. blue circle. red circle"


def _namer(seed: int = 0, text_dim: int = 32, pool: str = "both") -> tuple[RegionNamer, NamerConfig]:
    cfg = NamerConfig(crop=16, channels=(8, 16), embed=16, text_dim=text_dim, pool=pool)
    torch.manual_seed(seed)
    namer = RegionNamer(cfg)
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so export must carry them
        for module in namer.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        namer.bias.fill_(0.3)
    return namer.eval(), cfg


@pytest.fixture(scope="module")
def namer_bundle(tiny_bundle, tmp_path_factory):
    namer, cfg = _namer()
    out = tmp_path_factory.mktemp("namer") / "tiny-namer"
    return write_namer_bundle(tiny_bundle, out, namer, cfg, {"steps": 0})


def test_box_crops_cut_the_box_with_its_margin_resized():
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[40:60, 100:120] = 255  # a 20 px white square
    crops = box_crops(rgb, np.array([[100, 40, 119, 59], [500, 500, 520, 520]], np.float32), 12, 0.25)
    assert crops.shape == (2, 3, 12, 12) and crops.dtype == np.float32
    assert crops[0, :, 5:7, 5:7].min() == 1.0  # the object fills the middle
    assert crops[0, :, 0, :].max() < 0.05 and crops[0, :, :, 0].max() < 0.05  # the margin is context, here black
    assert crops[1].max() == 0.0  # a box outside the image: a black crop, no error


def test_word_features_do_not_depend_on_the_phrase_around_the_word(tiny_bundle):
    detector = Detector.load(tiny_bundle)
    encode = detector.engine.encode_text
    (one,) = detector.prepare_prompt("red square. blue circle").chunks
    (two,) = detector.prepare_prompt("blue star. red circle. circle").chunks
    a, b = word_features(one, encode), word_features(two, encode)
    red_a = a[one.positive_map[1][0]]
    red_b = b[two.positive_map[2][0]]
    circle_a, circle_b = a[one.positive_map[2][-1]], b[two.positive_map[3][0]]
    np.testing.assert_allclose(red_a, red_b, atol=1e-5)
    np.testing.assert_allclose(circle_a, circle_b, atol=1e-5)
    assert np.abs(red_a - circle_a).max() > 1e-3
    contextual = encode(one)
    assert np.abs(contextual[one.positive_map[1][0]] - red_a).max() > 1e-3  # not the caption's own features


def test_bundle_with_namer_loads_verified_and_uncalibrated(namer_bundle, tiny_bundle, tmp_path):
    manifest = json.loads((namer_bundle / "manifest.json").read_text())
    assert manifest["namer"]["parity"]["max_error"] < 1e-4
    assert "calibration" not in manifest
    assert Detector.load(namer_bundle).namer == NamerConfig.from_dict(manifest["namer"]["config"])
    assert Detector.load(namer_bundle, namer=False).namer is None and Detector.load(tiny_bundle).namer is None
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for file in namer_bundle.iterdir():
        (tampered / file.name).write_bytes(file.read_bytes())
    (tampered / "namer.onnx").write_bytes((namer_bundle / "namer.onnx").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(BundleError, match="namer.onnx does not match its sha256"):
        Detector.load(tampered)
    with pytest.raises(BundleError, match="not empty"):
        write_namer_bundle(tiny_bundle, namer_bundle, *_namer(), {})


@pytest.mark.parametrize("pool", ["mean", "attention"])  # "both": the namer_bundle fixture's
def test_each_pool_exports_with_parity_and_manifests_without_one_read_as_mean(pool, tiny_bundle, tmp_path):
    namer, cfg = _namer(pool=pool)
    bundle = write_namer_bundle(tiny_bundle, tmp_path / pool, namer, cfg, {"steps": 0})
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["namer"]["config"]["pool"] == pool and manifest["namer"]["parity"]["max_error"] < 1e-4
    older = {k: v for k, v in manifest["namer"]["config"].items() if k != "pool"}
    assert NamerConfig.from_dict(older).pool == "mean"  # bundles from before the option pooled by the mean
    with pytest.raises(ConfigError, match="invalid namer config"):
        NamerConfig.from_dict({**older, "pool": "max"})


def test_attention_pool_reads_where_its_weights_point():
    """The pooled vector is the weighted mean of the map: all weight on one position gives that position."""
    pool = AttentionPool(3)
    with torch.no_grad():
        pool.score.weight.zero_()
        pool.score.bias.zero_()
        features = torch.randn(2, 3, 4, 4)
        torch.testing.assert_close(pool(features), features.mean((2, 3)))  # equal scores: the plain mean
        pool.score.weight[0, 0, 0, 0] = 100.0
        features[:, 0] = 0.0
        features[:, 0, 1, 2] = 1.0  # channel 0 marks one position, the score reads channel 0
        torch.testing.assert_close(pool(features), features[:, :, 1, 2], atol=1e-4, rtol=0)


def test_detector_blends_the_namers_score_of_each_box_label(namer_bundle, tiny_bundle):
    """Against an independent computation: GLIP's raw output without the namer, each box cut out and
    scored by the PyTorch namer on its label's words, blended glip ** 0.7 * namer ** 0.3."""
    image = sample_image(180, 240, seed=3)
    namer, cfg = _namer()
    with_namer = Detector.load(namer_bundle)
    plain = Detector.load(tiny_bundle)
    got = with_namer(image, PROMPT, threshold=0.0, all_labels=True)
    raw = plain(image, PROMPT, threshold=0.0, all_labels=True)
    assert len(got) == len(raw) > 10
    np.testing.assert_array_equal(
        Detector.load(namer_bundle, namer=False)(image, PROMPT, threshold=0.0, all_labels=True).confidence,
        raw.confidence,
    )
    (chunk,) = plain.prepare_prompt(PROMPT).chunks
    words = torch.from_numpy(word_features(chunk, plain.engine.encode_text))
    with torch.no_grad():
        logits = namer(torch.from_numpy(box_crops(image, raw.xyxy, cfg.crop, cfg.margin)), words).numpy()
    table = label_scores(logits, chunk.positive_map, "MEAN", chunk.token_words)  # the tiny model's aggregation
    by_namer = table[np.arange(len(raw)), raw.data["label_id"] - 1]
    expected = raw.confidence.astype(np.float64) ** 0.7 * by_namer.astype(np.float64) ** 0.3
    order = np.argsort(-expected, kind="stable")
    np.testing.assert_allclose(got.confidence, expected[order], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.xyxy, raw.xyxy[order], atol=1e-4)
    assert not np.allclose(got.confidence, raw.confidence)  # the namer moved the scores


def test_training_targets_name_colour_and_shape_words():
    recipe = NamerRecipe(scenes=3, seed=4)
    examples = make_examples(recipe, NamerConfig(crop=16))
    assert examples.crops.shape[1:] == (3, 16, 16) and examples.crops.dtype == np.uint8
    assert (examples.colours >= 0).sum() == (examples.shapes >= 0).sum() > 0
    assert ((examples.colours < 0) == (examples.shapes < 0)).all()  # background crops name nothing

    def prepare(names):
        # "red heart. circle": tokens [CLS] red heart . circle [SEP], one word each
        assert names == ["red heart", "circle"]
        return [(np.zeros((6, 4), np.float32), {1: [1, 2], 2: [4]}, np.array([-1, 0, 1, 2, 3, -1]))]

    (encoded,) = encode_prompts([[("red", "heart"), (None, "circle")]], prepare)
    assert encoded.token_colour.tolist() == [-1, 0, -1, -1, -1, -1]  # "red" is COLOURS' first
    assert encoded.token_shape.tolist() == [-1, -1, 7, -1, 0, -1]
    prompts = sample_prompts(np.random.default_rng(0), 20)
    assert all(len(set(p)) == len(p) for p in prompts) and any(c is None for p in prompts for c, _ in p)


def test_proposals_name_close_boxes_as_their_object_and_far_ones_as_background():
    objects = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 40.0, 20.0]])
    boxes = np.array(
        [
            [21.0, 1.0, 41.0, 21.0],  # the second object, loosely: named as it
            [0.0, 0.0, 10.0, 12.0],  # the first
            [0.0, 0.0, 10.0, 30.0],  # IoU 1/3 with the first: ambiguous, left out
            [60.0, 60.0, 80.0, 80.0],  # nowhere near an object: background
        ],
        np.float32,
    )
    kept, named = proposal_targets(boxes, objects)
    assert kept.tolist() == [0, 1, 3]
    assert named.tolist() == [1, 0, -1]
    kept, named = proposal_targets(boxes, np.zeros((0, 4)))  # a scene without objects
    assert kept.tolist() == [0, 1, 2, 3] and (named == -1).all()


class _BoxesOf:
    """A detector that finds each object of the recipe's scenes twice (its box, and the same box
    under another label) plus a false box in an empty corner."""

    def __init__(self, seed: int):
        self.seed, self.calls = seed, 0

    def __call__(self, image, prompt, threshold, all_labels):
        scene = crop_scene(self.seed, self.calls)
        self.calls += 1
        assert image is scene.image or np.array_equal(image, scene.image)
        assert all_labels and threshold == 0.15 and prompt.count(". ") == 55  # every trained name
        corner = np.array([[0.0, 0.0, 1.0, 1.0]])
        xyxy = np.concatenate([scene.boxes, scene.boxes, corner]).astype(np.float32)
        return type("Found", (), {"xyxy": xyxy})()


def test_proposal_examples_cut_the_detectors_boxes_named_as_their_objects():
    recipe = NamerRecipe(proposal_scenes=3, seed=5)
    detector = _BoxesOf(recipe.seed)
    examples = proposal_examples(detector, recipe, NamerConfig(crop=16))
    assert detector.calls == 3
    scenes = [crop_scene(recipe.seed, index) for index in range(3)]
    objects = [pair for scene in scenes for pair in zip(scene.colours, scene.shapes, strict=True)]
    assert examples.crops.shape[1:] == (3, 16, 16) and examples.crops.dtype == np.uint8
    named = [(list(COLOURS)[c], SHAPES[s]) for c, s in zip(examples.colours, examples.shapes, strict=True) if c >= 0]
    assert sorted(named) == sorted(objects)  # each object once: a box's second label adds no crop
    corner_boxes = int((examples.colours < 0).sum())
    assert corner_boxes == 3 and ((examples.colours < 0) == (examples.shapes < 0)).all()


def test_training_is_deterministic():
    recipe = NamerRecipe(steps=3, batch_size=4, scenes=2, seed=1)
    cfg = NamerConfig(crop=16, channels=(8,), embed=8, text_dim=4)
    examples = make_examples(recipe, cfg)
    prompts = encode_prompts(
        [[("red", "heart")]],
        lambda names: [(np.ones((4, 4), np.float32), {1: [1, 2]}, np.array([-1, 0, 1, -1]))],
    )
    first, second = (train_namer(examples, prompts, cfg, recipe) for _ in range(2))
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_glip_namer_command_writes_a_bundle_that_detects(tiny_bundle, tmp_path):
    out = tmp_path / "with-namer"
    args = ["namer", "--model", str(tiny_bundle), "--out", str(out), "--steps", "2", "--scenes", "2"]
    result = CliRunner().invoke(app, [*args, "--proposal-scenes", "2"])
    assert result.exit_code == 0, result.output
    assert "glip calibrate" in result.output and "boxes of" in result.output
    training = json.loads((out / "manifest.json").read_text())["namer"]["training"]
    assert training["proposal_scenes"] == 2 and training["steps"] == 2
    image = tmp_path / "image.png"
    import cv2

    cv2.imwrite(str(image), sample_image(120, 160))
    for extra in ([], ["--no-namer"]):
        result = CliRunner().invoke(app, ["detect", str(image), PROMPT, "--model", str(out), "--json", "-", *extra])
        assert result.exit_code == 0, result.output
    info = CliRunner().invoke(app, ["info", str(out)], env={"COLUMNS": "200"})
    assert info.exit_code == 0 and "re-scores 64 names it was trained on from 40x40 crops" in info.output
    assert "none (GLIP's scores)" in CliRunner().invoke(app, ["info", str(tiny_bundle)], env={"COLUMNS": "200"}).output
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "not empty" in again.output
    bad = CliRunner().invoke(
        app, ["namer", "--model", str(tiny_bundle), "--out", str(tmp_path / "other"), "--pool", "max"]
    )
    assert bad.exit_code != 0 and "--pool 'max': expected one of mean, attention, both" in bad.output
    assert not (tmp_path / "other").exists()


def test_a_prepared_image_without_its_pixels_is_a_clear_error_with_a_namer(namer_bundle):
    import dataclasses

    from glipcli.errors import ImageError

    detector = Detector.load(namer_bundle)
    prepared = dataclasses.replace(detector.prepare(sample_image(100, 120)), rgb=None)
    with pytest.raises(ImageError, match="needs the image's pixels"):
        detector(prepared, PROMPT)
    assert len(Detector.load(namer_bundle, namer=False)(prepared, PROMPT, threshold=0.0)) > 0
