"""Issue 25's speed features keep results exact: the supervision-free path, the optimised-graph
cache and ``--size`` (validated, recorded in outputs, and what the model actually sees)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from glipcli.api import Detector
from glipcli.cli import app
from glipcli.config import InputConfig
from glipcli.errors import ConfigError
from glipcli.preprocess import prepare_image, with_size
from glipcli.runtime import sessions
from glipcli.runtime.bundle import load_bundle
from tests.test_api import scene

PROMPT = "red circle. blue rectangle. yellow triangle."
runner = CliRunner()


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GLIPCLI_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def img(tmp_path_factory):
    path = tmp_path_factory.mktemp("speed") / "scene.png"
    Image.fromarray(scene(240, 320)).save(path)
    return path


def _same(a, b) -> None:
    assert np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.confidence, b.confidence)
    assert np.array_equal(a.class_id, b.class_id) and list(a.data["class_name"]) == list(b.data["class_name"])


def test_cached_optimised_graphs_give_identical_detections(tiny_bundle, img, cache_home, monkeypatch):
    monkeypatch.setenv(sessions.GRAPH_CACHE_ENV, "0")
    plain = Detector.load(tiny_bundle, device="cpu")(img, PROMPT, threshold=0.0, all_labels=True)
    assert not (cache_home / "graphs").exists()
    monkeypatch.delenv(sessions.GRAPH_CACHE_ENV)
    first = Detector.load(tiny_bundle, device="cpu")(img, PROMPT, threshold=0.0, all_labels=True)  # writes the copies
    copies = sorted(path.name[:32] for path in (cache_home / "graphs").glob("*.onnx"))
    graphs = load_bundle(tiny_bundle).manifest["graphs"]
    # the image graphs only: the text graph runs once per prompt and loads as exported (engine.py)
    assert copies == sorted(graphs[g]["sha256"][:32] for g in ("backbone", "head"))
    assert not list((cache_home / "graphs").glob("*.partial"))
    cached = Detector.load(tiny_bundle, device="cpu")(img, PROMPT, threshold=0.0, all_labels=True)
    _same(plain, first)
    _same(plain, cached)
    assert len(plain) > 0


def test_a_damaged_cached_graph_is_rebuilt(tiny_bundle, img, cache_home):
    Detector.load(tiny_bundle, device="cpu")(img, PROMPT)  # the sessions load in the background until used
    copy = sorted((cache_home / "graphs").glob("*.onnx"))[0]
    copy.write_bytes(b"not a graph")
    detections = Detector.load(tiny_bundle, device="cpu")(img, PROMPT, threshold=0.0)
    assert copy.stat().st_size > 100 and len(detections) >= 0


def test_arrays_equal_supervision_output(tiny_bundle, img):
    detector = Detector.load(tiny_bundle, device="cpu")
    for all_labels in (False, True):
        sv_result = detector(img, PROMPT, threshold=0.0, all_labels=all_labels)
        ((_, found),) = detector.detect_arrays([img], PROMPT, threshold=0.0, all_labels=all_labels)
        _same(sv_result, found)
        _same(sv_result, found.to_supervision())


def test_detect_json_does_not_import_supervision(tiny_bundle, img, tmp_path, cache_home):
    """The JSON path of ``glip detect`` never pays for supervision's import (about 0.7 s)."""
    out = tmp_path / "x.json"
    argv = ["glip", "detect", str(img), PROMPT, "-m", str(tiny_bundle), "--json", str(out), "-q"]
    code = (
        "import sys; from glipcli.cli import run\n"
        f"sys.argv = {argv!r}\n"
        "try:\n    run()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'supervision' not in sys.modules, 'supervision was imported'\n"
    )
    env = {**os.environ, "GLIPCLI_HOME": str(cache_home)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert json.loads(out.read_text())["input_size"] == "128:224"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("480", (480, 800)),
        ("480:1000", (480, 1000)),
        (" 320:320 ", (320, 320)),
        (512, (512, 853)),
        ((300, 500), (300, 500)),
    ],
)
def test_size_values(size, expected):
    cfg = with_size(InputConfig(min_size=800, max_size=1333), size)
    assert (cfg.min_size, cfg.max_size) == expected


@pytest.mark.parametrize(
    "size", ["", "abc", "480x800", "480:", ":800", "-480", "1.5", "480:800:1", "16", "480:400", "9000", True, 4.0]
)
def test_bad_sizes_are_one_line_errors(size):
    with pytest.raises(ConfigError, match="size") as info:
        with_size(InputConfig(), size)
    assert "\n" not in str(info.value)


def test_size_changes_the_model_input(tiny_bundle, img):
    small = Detector.load(tiny_bundle, device="cpu", size="64:96")
    assert small.size == "64:96" and Detector.load(tiny_bundle, device="cpu").size == "128:224"
    rgb = np.asarray(Image.open(img).convert("RGB"))
    assert prepare_image(rgb, small.input).resized_hw == (64, 85)
    small.engine.runs.update(dict.fromkeys(small.engine.runs, 0))
    small(img, PROMPT, threshold=0.0)
    assert small.engine.runs["backbone"] == 1


def test_cli_size_recorded_and_checked(tiny_bundle, img, tmp_path):
    out = tmp_path / "d.json"
    result = runner.invoke(
        app, ["detect", str(img), PROMPT, "-m", str(tiny_bundle), "--size", "96", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["input_size"] == "96:168"
    bad = runner.invoke(app, ["detect", str(img), PROMPT, "-m", str(tiny_bundle), "--size", "96x100"])
    assert bad.exit_code != 0 and bad.stdout == ""
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "SHORT:MAX_LONG" in lines[0]


def test_label_records_size_in_coco_info(tiny_bundle, img, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(img.read_bytes())
    out = tmp_path / "labels.json"
    result = runner.invoke(
        app, ["label", str(folder), "-P", PROMPT, "-m", str(tiny_bundle), "--size", "96:128", "-o", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["info"]["input_size"] == "96:128"


def test_journal_syncs_at_most_once_a_second_and_on_close(tmp_path, monkeypatch):
    """A killed process keeps every appended line (written before append returns: the SIGKILL tests
    of test_cli_label and io/test_journal); fsync, for OS crashes, is batched."""
    from glipcli.io import journal as journal_module

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(journal_module.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    with journal_module.Journal.open(tmp_path / "j", {"run": 1}, resume=False) as journal:
        before = len(synced)
        for i in range(50):
            journal.append({"file_name": f"{i}.jpg"})
        assert len(synced) - before <= 1
        assert len((tmp_path / "j").read_text().splitlines()) == 51  # in the file before any sync
    assert len(synced) - before >= 1  # close synced what was pending


def test_prepared_images_give_the_same_detections(tiny_bundle, img):
    detector = Detector.load(tiny_bundle, device="cpu")
    ((_, direct),) = detector.detect_arrays([img], PROMPT, threshold=0.0, all_labels=True)
    ((_, ahead),) = detector.detect_arrays([detector.prepare(img)], PROMPT, threshold=0.0, all_labels=True)
    _same(direct, ahead)
