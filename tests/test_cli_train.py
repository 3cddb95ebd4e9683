"""``glip train`` (pre-training and fine-tuning) and ``glip tune`` as a user runs them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from glipcli.cli import app
from tests.train.test_coco_data import ann, write_coco
from tests.train.test_tune import bundle_with_weights

runner = CliRunner()
FAST = ["--steps", "2", "--batch-size", "1", "--threads", "1", "--quiet"]


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def source(tiny_model, tiny_bundle, tmp_path_factory):
    return bundle_with_weights(tiny_model, tiny_bundle, tmp_path_factory.mktemp("source"))


@pytest.fixture
def gold(tmp_path):
    annotations = [ann(1, 1, [4, 4, 30, 20]), ann(2, 2, [10, 8, 20, 30]), ann(2, 1, [60, 50, 20, 20])]
    return write_coco(tmp_path, {"a.png": (64, 48), "b.png": (72, 64)}, annotations, {1: "cat", 2: "dog"})


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--init", "x.pth"], "--init needs --data"),
        (["--mode", "head"], "--mode needs --data"),
        (["--data", "gt.json"], "needs --init"),
        (["--data", "gt.json", "--init", "x.pth", "--mode", "linear"], "unknown --mode"),
        (["--precision", "fp16"], "unknown training precision 'fp16'"),
    ],
)
def test_train_refuses_inconsistent_options(tmp_path, args, message):
    result = invoke("train", "--out", tmp_path / "run", *args)
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output


def test_a_refused_pretraining_prints_its_error_without_a_progress_bar(tmp_path):
    result = invoke("train", "--config", "no-such-model", "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, no empty bar above it
    assert "unknown config 'no-such-model'" in result.stderr and "steps" not in result.stderr


def test_train_fine_tunes_on_coco_data_and_lists_repairs(gold, source, tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "--data", gold, "--init", source[1], "--mode", "head", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "2 images, 3 boxes, 2 classes in 1 caption: cat. dog." in result.stdout
    assert "1 annotation(s) clipped" in result.stderr
    issues = json.loads((out / "data_issues.json").read_text())
    assert [i["annotation_id"] for i in issues] == [3]
    assert (out / "model.pth").is_file() and (out / "last.pt").is_file()


def test_bad_data_stops_before_any_training(gold, source, tmp_path):
    (gold.parent / "images" / "b.png").unlink()
    out = tmp_path / "run"
    result = invoke("train", "--data", gold, "--init", source[1], "--out", out, *FAST)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 1 image(s) of") and "b.png" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (out / "last.pt").exists()


def test_export_after_training_can_be_compact(gold, source, tmp_path):
    out, bundle = tmp_path / "run", tmp_path / "bundle"
    args = ["train", "--data", gold, "--init", source[1], "--mode", "head", "--out", out, *FAST]
    result = invoke(*args, "--export", bundle, "--compact")
    assert result.exit_code == 0, result.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert "glip export --compact" in manifest["source"]["rounded"]
    assert manifest["source"]["checkpoint"] == "model.pth"


@pytest.mark.parametrize("case", ["compact without export", "export target holds files"])
def test_export_options_are_checked_before_training(gold, source, tmp_path, case):
    out, bundle = tmp_path / "run", tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "keep.txt").write_text("mine")
    extra = ["--compact"] if case == "compact without export" else ["--export", bundle]
    result = invoke("train", "--data", gold, "--init", source[1], "--out", out, *FAST, *extra)
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert ("add --export" if "compact" in case else "already holds files") in result.stderr
    assert not (out / "last.pt").exists() and (bundle / "keep.txt").read_text() == "mine"


def test_tune_writes_a_bundle_that_detect_and_info_describe(gold, source, tmp_path):
    bundle, weights = source
    out = tmp_path / "tuned"
    result = invoke(
        "tune", "--data", gold, "--model", bundle, "--weights", weights, "--out", out, "--shots", "1", *FAST
    )
    assert result.exit_code == 0, result.output
    assert "with tuned prompt(s) 'cat. dog.'" in result.stdout
    info = invoke("info", out)
    assert info.exit_code == 0 and "'cat. dog.'" in info.stdout and "shots 1" in info.stdout
    image = gold.parent / "images" / "a.png"
    tuned = invoke("detect", image, "cat. dog", "--model", out, "--device", "cpu")
    assert tuned.exit_code == 0 and "using tuned prompt 'cat. dog.'" in tuned.stderr
    other = invoke("detect", image, "dog", "--model", out, "--device", "cpu")
    assert other.exit_code == 0 and "untuned text encoder is used" in other.stderr
    plain = invoke("detect", image, "cat. dog", "--model", bundle, "--device", "cpu")
    assert "tuned" not in plain.stderr
    scored = invoke("eval", gold, "--model", out, "--device", "cpu")
    assert scored.exit_code == 0 and "using tuned prompt 'cat. dog.'" in scored.stderr, scored.output


def test_tune_refuses_weights_the_bundle_was_not_exported_from(gold, source, tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"model": {}}, other)
    result = invoke("tune", "--data", gold, "--model", source[0], "--weights", other, "--out", tmp_path / "t", *FAST)
    assert result.exit_code == 1 and "is not the checkpoint bundle" in result.stderr


def test_pretraining_glip_nano_starts_from_minilm_and_the_principal_projection(tmp_path):
    """The documented command itself, one step: the text side is MiniLM's and stays fixed, the token
    projection is orthogonal and centred, and a second run is bit-identical."""
    from safetensors.torch import load_file

    from glipcli.train.pretrained import minilm_weights_path

    runs = []
    for name in ("a", "b"):
        result = invoke("train", "--config", "glip-nano", "--out", tmp_path / name, *FAST)
        assert result.exit_code == 0, result.output
        runs.append(torch.load(tmp_path / name / "model.pth", weights_only=True))
    weights = runs[0]["model"]
    assert runs[0]["config"]["name"] == "glip-nano"
    assert all(torch.equal(weights[k], runs[1]["model"][k]) for k in weights)
    minilm = load_file(str(minilm_weights_path()))
    key = "encoder.layer.5.output.dense.weight"
    assert torch.equal(weights[f"language_backbone.body.model.{key}"], minilm[key])
    projection = weights["rpn.head.dot_product_projection_text.weight"].double()
    gram = projection @ projection.T
    assert torch.allclose(gram, gram[0, 0] * torch.eye(len(gram), dtype=gram.dtype), atol=1e-5 * float(gram[0, 0]))


def test_pretraining_defaults_are_the_glip_nano_recipe_and_flags_override_them(tmp_path):
    """The README's one command must train the shipped model: the recipe's values, not the
    fine-tuning defaults, reach the trainer; --batch-size and --lr still win."""
    from glipcli.train.policy import native_bf16
    from glipcli.train.recipe import NANO_PRETRAIN

    result = invoke("train", "--config", "glip-nano", "--out", tmp_path / "r", "--steps", "1", "--threads", "1", "-q")
    assert result.exit_code == 0, result.output
    stored = torch.load(tmp_path / "r" / "last.pt", weights_only=True)["train_config"]
    recipe = {**NANO_PRETRAIN, "steps": 1, "precision": "bf16" if native_bf16() else "fp32"}
    assert {k: stored[k] for k in NANO_PRETRAIN} == recipe
    assert ("no native bfloat16" in result.output) != native_bf16()
    result = invoke(
        "train", "--config", "glip-nano", "--out", tmp_path / "o", *FAST, "--lr", "0.002", "--precision", "fp32"
    )
    assert result.exit_code == 0, result.output
    stored = torch.load(tmp_path / "o" / "last.pt", weights_only=True)["train_config"]
    assert (stored["batch_size"], stored["lr"], stored["max_size"]) == (1, 0.002, NANO_PRETRAIN["max_size"])
    assert stored["precision"] == "fp32" != NANO_PRETRAIN["precision"]


def test_resume_alone_continues_a_pretraining_of_another_config(tmp_path):
    """A run started with a config file and options resumes with --out and --resume alone, as the
    --help example says, to the weights of an uninterrupted run."""
    from glipcli.presets import load_config

    config = load_config("glip-nano").to_dict()
    config["swin"]["stem_channels"] = [8, 16]
    (tmp_path / "stem.json").write_text(json.dumps(config))
    fast = ["--batch-size", "1", "--lr", "0.002", "--seed", "3", "--threads", "1", "-q"]
    full, part = tmp_path / "full", tmp_path / "part"
    result = invoke("train", "--config", tmp_path / "stem.json", "--out", full, "--steps", "2", *fast)
    assert result.exit_code == 0, result.output
    result = invoke("train", "--config", tmp_path / "stem.json", "--out", part, "--steps", "1", *fast)
    assert result.exit_code == 0, result.output
    result = invoke("train", "--out", part, "--resume", "--steps", "2", "--threads", "1", "-q")
    assert result.exit_code == 0, result.output
    a, b = (torch.load(run / "model.pth", weights_only=True) for run in (full, part))
    assert a["config"] == b["config"] and list(a["config"]["swin"]["stem_channels"]) == [8, 16]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    result = invoke("train", "--out", part, "--resume", "--lr", "0.01", "--threads", "1", "-q")
    assert result.exit_code == 1 and "other training settings (lr)" in result.stderr


def test_a_bundle_alone_is_enough_to_tune_label_and_fine_tune(gold, tiny_bundle, tmp_path):
    """The issue's figures, on the tiny bundle: tune with no checkpoint, label with the tuned bundle,
    fine-tune from the bundle and export the result."""
    tuned = tmp_path / "tuned"
    images = gold.parent / "images"
    result = invoke("tune", "--data", gold, "--images", images, "--model", tiny_bundle, "--out", tuned, *FAST)
    assert result.exit_code == 0, result.output
    labels = tmp_path / "labels.json"
    result = invoke("label", images, "--prompt", "cat. dog", "--model", tuned, "--out", labels, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "using tuned prompt 'cat. dog.'" in result.stderr
    run, exported = tmp_path / "run", tmp_path / "exported"
    result = invoke("train", "--init", tiny_bundle, "--data", gold, "--out", run, "--export", exported, *FAST)
    assert result.exit_code == 0, result.output
    assert (run / "model.pth").is_file() and json.loads((exported / "manifest.json").read_text())["pytorch_weights"]


def test_tune_resumes_only_when_asked(gold, tiny_bundle, tmp_path):
    from glipcli.train.tune import run_folder

    out = tmp_path / "tuned"
    (run_folder(out)).mkdir()
    (run_folder(out) / "last.pt").write_bytes(b"")
    result = invoke("tune", "--data", gold, "--model", tiny_bundle, "--out", out, *FAST)
    assert result.exit_code == 1 and "pass --resume" in result.stderr and len(result.stderr.splitlines()) == 1
    result = invoke("tune", "--data", gold, "--model", tiny_bundle, "--out", out, "--resume", *FAST)
    assert result.exit_code == 1 and "cannot resume" in result.stderr and not out.exists()


def test_tuning_an_int8_bundle_is_one_line_and_writes_nothing(gold, tiny_bundle, tmp_path):
    import shutil

    source = tmp_path / "int8"
    shutil.copytree(tiny_bundle, source)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["precision"] = "int8"
    (source / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out" / "tuned"
    result = invoke("tune", "--data", gold, "--model", source, "--out", out, *FAST)
    assert result.exit_code == 1 and "holds int8 graphs" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not any(p.name.startswith(".tuned") for p in out.parent.glob(".*"))


def test_a_tuned_bundle_says_its_calibration_predates_tuning_until_calibrated_again(gold, tiny_bundle, tmp_path):
    from glipcli.api import Detector

    source = tmp_path / "source"
    shutil.copytree(tiny_bundle, source)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["calibration"] = {"threshold": 0.3, "ground_truth": "val/annotations.json"}
    (source / "manifest.json").write_text(json.dumps(manifest))
    tuned = tmp_path / "tuned"
    result = invoke("tune", "--data", gold, "--model", source, "--out", tuned, *FAST)
    assert result.exit_code == 0, result.output
    assert "calibrated before tuning" in " ".join(result.output.split())
    assert Detector.load(source).default_threshold == (0.3, "calibrated on val/annotations.json")
    assert Detector.load(tuned).default_threshold == (0.3, "calibrated on val/annotations.json before tuning")
    result = invoke("calibrate", gold, "--model", tuned, "-q")
    assert result.exit_code == 0, result.output
    _, where = Detector.load(tuned).default_threshold
    assert where == f"calibrated on {gold.parent.name}/{gold.name}"  # the tuned prompt's own, no longer flagged
