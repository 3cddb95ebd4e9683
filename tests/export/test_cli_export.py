"""``glip export`` as a user runs it: a checkpoint and a config in, a verified bundle out."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from glipcli.cli import app
from tests.conftest import tiny_config

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_model, tmp_path_factory):
    """The tiny model as a user would hold it: official checkpoint layout plus a JSON config."""
    import torch

    folder = tmp_path_factory.mktemp("ckpt")
    torch.save({"model": {f"module.{k}": v for k, v in tiny_model.state_dict().items()}}, folder / "tiny.pth")
    (folder / "tiny.json").write_text(json.dumps(tiny_config().to_dict()))
    return folder


def _size(folder) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def test_export_writes_a_verified_bundle_and_compact_halves_it(tiny_checkpoint, tmp_path):
    base = ["export", "--config", tiny_checkpoint / "tiny.json", "--weights", tiny_checkpoint / "tiny.pth"]
    full = run(*base, "--out", tmp_path / "full")
    assert full.exit_code == 0, full.output
    assert "verified" in full.output
    compact = run(*base, "--out", tmp_path / "compact", "--compact")
    assert compact.exit_code == 0, compact.output
    manifest = json.loads((tmp_path / "compact" / "manifest.json").read_text())
    assert "rounded" in manifest["source"]
    assert manifest["parity"]["fp32"]["ok"]
    assert _size(tmp_path / "compact") < 0.6 * _size(tmp_path / "full")


def test_export_refuses_bad_arguments_in_one_line(tiny_checkpoint, tmp_path):
    config = tiny_checkpoint / "tiny.json"
    both = run("export", "--config", config, "--weights", tiny_checkpoint / "tiny.pth", "--fp16", "--int8")
    assert both.exit_code != 0 and "--fp16" in both.output
    missing = run("export", "--config", config, "--weights", tmp_path / "nope.pth", "--out", tmp_path / "b")
    assert missing.exit_code != 0 and "nope.pth" in missing.output
    assert "Traceback" not in both.output + missing.output
    assert not (tmp_path / "b").exists()


def test_compact_int8_bundle_loads_and_verifies(tiny_checkpoint, tmp_path):
    """Rounded weights, then int8: the quantiser must see plain weights, and the result must load."""
    from glipcli.api import Detector

    args = ["export", "--config", tiny_checkpoint / "tiny.json", "--weights", tiny_checkpoint / "tiny.pth"]
    result = run(*args, "--compact", "--int8", "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["parity"]["int8"]["ok"]
    Detector.load(tmp_path / "b", device="cpu")


def test_export_reads_the_config_a_trained_checkpoint_carries(tiny_model, tiny_checkpoint, tmp_path):
    """``glip train`` writes its config into model.pth: exporting it needs no --config. An official
    checkpoint (no config inside) is still read as glip-t, and refused in one line if it is not."""
    import torch

    trained = tmp_path / "model.pth"
    torch.save({"model": tiny_model.state_dict(), "config": tiny_config().to_dict()}, trained)
    result = run("export", "--weights", trained, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["config"]["name"] == tiny_config().name and manifest["parity"]["fp32"]["ok"]
    official = run("export", "--weights", tiny_checkpoint / "tiny.pth", "--out", tmp_path / "c")
    assert official.exit_code != 0 and "does not fit this architecture" in official.output
    assert "Traceback" not in official.output and not (tmp_path / "c").exists()
