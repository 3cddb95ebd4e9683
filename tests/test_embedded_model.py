"""The model that ships in exported/: what a fresh clone runs with no --model and no network."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from glipcli.api import Detector
from glipcli.cli import app
from glipcli.runtime.bundle import embedded_models_dir

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_default_model_is_the_verified_glip_nano_bundle():
    detector = Detector.load()
    assert detector.name == "glip-nano"
    manifest = json.loads((embedded_models_dir() / "glip-nano" / "manifest.json").read_text())
    parity = manifest["parity"]["fp32"]
    assert parity["verified"] and parity["ok"]
    assert max(parity["max_error"].values()) < 1e-4  # ONNX Runtime reproduced the trained PyTorch model
    size = sum(p.stat().st_size for p in (embedded_models_dir() / "glip-nano").iterdir())
    assert size < 40e6


def test_readme_command_detects_on_the_example(tmp_path):
    out = tmp_path / "out.png"
    result = CliRunner().invoke(
        app,
        ["detect", str(EXAMPLES / "images" / "000004.png"), "red heart. blue circle. black cross", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "detection" in result.output and out.stat().st_size > 0


def test_examples_label_into_coco(tmp_path):
    out = tmp_path / "labels.json"
    result = CliRunner().invoke(
        app,
        ["label", str(EXAMPLES / "images"), "--prompt-file", str(EXAMPLES / "classes.txt"), "--out", str(out), "-q"],
    )
    assert result.exit_code == 0, result.output
    coco = json.loads(out.read_text())
    assert len(coco["images"]) == 8 and len(coco["categories"]) == 64
