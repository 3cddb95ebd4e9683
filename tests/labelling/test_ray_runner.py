"""``glip label --engine ray``: the local engine's output from Ray workers, resumable across engines.

One local Ray (2 CPUs) serves the module; each test runs one or two small datasets on it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from glipcli.api import Detector
from glipcli.cli import app
from glipcli.errors import ConfigError, DataError
from glipcli.labelling.folder import label_folder
from glipcli.labelling.journals import journal_path, shards_path
from glipcli.labelling.writers import errors_path
from tests.labelling.test_folder import PROMPT, THRESHOLD, Interrupt, interrupt_after, make_images, without_date
from tests.test_cli_label import CLI, assert_one_line_error

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray for this module (2 CPUs, its own temp dir), shut down after its tests."""
    import ray

    saved = {key: os.environ.get(key) for key in RAY_ENV}
    os.environ.update(RAY_ENV)
    temp = tempfile.mkdtemp(prefix="glipray", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def detector(tiny_bundle):
    return Detector.load(tiny_bundle, device="cpu")


def folder_with_bad_files(root: Path) -> None:
    """12 images (some in a sub-folder) and 3 files that cannot be labelled."""
    make_images(root, 12)
    (root / "empty.jpg").write_bytes(b"")
    (root / "sub" / "text.png").write_bytes(b"not an image\n")
    jpeg = root / "img_00.png"
    (root / "sub" / "truncated.png").write_bytes(jpeg.read_bytes()[:200])


def assert_same_labels(expected: Path, got: Path) -> None:
    """Same images, ids, categories and annotations; boxes and scores to their rounding (1e-5 for scores)."""
    first, second = (without_date(json.loads(path.read_text())) for path in (expected, got))
    anns_1, anns_2 = first.pop("annotations"), second.pop("annotations")
    assert first == second
    assert len(anns_1) == len(anns_2) > 0
    for a, b in zip(anns_1, anns_2):
        assert (a["id"], a["image_id"], a["category_id"]) == (b["id"], b["image_id"], b["category_id"])
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=0.011)
        assert abs(a["score"] - b["score"]) <= 1.1e-5


def assert_cleaned_up(out: Path) -> None:
    assert not journal_path(out).exists() and not shards_path(out).exists()


def test_ray_labels_equal_the_local_engine(ray_address, detector, tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    folder_with_bad_files(root)
    kwargs = {"detector": detector, "threshold": THRESHOLD}
    local = label_folder(root, PROMPT, tmp_path / "local.json", **kwargs)
    seen = []
    monkeypatch.chdir(tmp_path)  # relative paths: the workers resolve them as this process does
    ray = label_folder("imgs", PROMPT, "ray.json", engine="ray", device="cpu", progress=seen.append, **kwargs)
    assert ray.exit_code == local.exit_code == 2
    assert (ray.labelled, ray.boxes, ray.skipped) == (local.labelled, local.boxes, local.skipped)
    assert [s.file for s in ray.skipped] == ["empty.jpg", "sub/text.png", "sub/truncated.png"]
    assert_same_labels(tmp_path / "local.json", tmp_path / "ray.json")
    assert errors_path(tmp_path / "ray.json").read_text() == errors_path(tmp_path / "local.json").read_text()
    assert [state.done for state in seen] == list(range(16)) and seen[-1].skipped == 3
    assert_cleaned_up(tmp_path / "ray.json")


def test_cli_reads_a_folder_url_like_the_local_engine_reads_the_folder(ray_address, detector, tiny_bundle, tmp_path):
    root = tmp_path / "imgs"
    folder_with_bad_files(root)
    (root / ".hidden").mkdir()
    (root / ".hidden" / "skipped.png").write_bytes((root / "img_00.png").read_bytes())
    (root / "notes.txt").write_text("not an image extension")
    label_folder(root, PROMPT, tmp_path / "local.json", detector=detector, threshold=THRESHOLD)
    out = tmp_path / "ray.json"
    args = [root.as_uri(), "-P", PROMPT, "-m", tiny_bundle, "-d", "cpu", "-t", THRESHOLD, "-o", out]
    result = CliRunner().invoke(app, ["label", *map(str, args), "--engine", "ray", "--num-workers", "1"])
    assert result.exit_code == 2, result.output
    assert "labelled 12 of 15 images" in result.stdout and "skipped 3 files" in result.stderr
    assert "INFO" not in result.stderr
    assert_same_labels(tmp_path / "local.json", out)
    assert errors_path(out).read_text() == errors_path(tmp_path / "local.json").read_text()
    assert_cleaned_up(out)


def test_interrupted_ray_run_resumes_on_either_engine(ray_address, detector, tmp_path):
    root = tmp_path / "imgs"
    folder_with_bad_files(root)
    kwargs = {"detector": detector, "threshold": THRESHOLD, "batch_size": 2}
    label_folder(root, PROMPT, tmp_path / "whole.json", **kwargs)
    out = tmp_path / "resumed.json"
    with pytest.raises(Interrupt):
        label_folder(root, PROMPT, out, engine="ray", device="cpu", progress=interrupt_after(3), **kwargs)
    assert list(shards_path(out).glob("*.journal")) and not out.exists()
    with pytest.raises(Interrupt):  # the local engine takes over from the shards...
        label_folder(root, PROMPT, out, resume=True, progress=interrupt_after(2), **kwargs)
    resumed = label_folder(root, PROMPT, out, engine="ray", device="cpu", resume=True, **kwargs)  # ...and back
    assert 5 <= resumed.resumed < 15 and resumed.labelled == 12 and len(resumed.skipped) == 3
    assert_same_labels(tmp_path / "whole.json", out)
    assert_cleaned_up(out)


def shard_records(out: Path) -> int:
    return sum(max(path.read_bytes().count(b"\n") - 1, 0) for path in shards_path(out).glob("*.journal"))


def test_sigkilled_ray_driver_resumes_locally(ray_address, detector, tiny_bundle, tmp_path):
    root = tmp_path / "imgs"
    folder_with_bad_files(root)
    out = tmp_path / "l.json"
    args = [root, "-P", PROMPT, "-m", tiny_bundle, "-d", "cpu", "-t", THRESHOLD, "-o", out, "-q"]
    ray_args = ["--engine", "ray", "--address", ray_address]
    env = {**os.environ, **RAY_ENV}
    proc = subprocess.Popen([*CLI, "label", *map(str, args + ray_args)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while shard_records(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert not out.exists() and shard_records(out) >= 1
    resumed = label_folder(root, PROMPT, out, detector=detector, threshold=THRESHOLD, resume=True)
    assert resumed.resumed >= 1 and resumed.labelled == 12
    label_folder(root, PROMPT, tmp_path / "whole.json", detector=detector, threshold=THRESHOLD)
    assert_same_labels(tmp_path / "whole.json", out)
    assert_cleaned_up(out)


def test_an_error_in_a_worker_is_one_line(ray_address, tiny_bundle, tmp_path):
    make_images(tmp_path / "imgs", 2)
    out = tmp_path / "l.json"
    shards_path(out).write_text("a file where the workers' shard folder goes")
    args = [tmp_path / "imgs", "-P", PROMPT, "-m", tiny_bundle, "-d", "cpu", "-o", out, "--engine", "ray"]
    result = CliRunner().invoke(app, ["label", *map(str, args)])
    assert_one_line_error(result, f"{shards_path(out)}/")
    assert "cannot open journal" in result.stderr


def test_a_pool_the_cluster_cannot_hold_is_refused_before_any_journal(ray_address, detector, tmp_path):
    make_images(tmp_path / "imgs", 1)
    out = tmp_path / "l.json"
    for kwargs, message in [({"num_workers": 2}, "need 2.5 CPUs"), ({"gpus_per_worker": 1}, "need 1 GPUs")]:
        with pytest.raises(ConfigError, match=message):
            label_folder(tmp_path / "imgs", PROMPT, out, detector=detector, engine="ray", **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def test_missing_ray_is_one_line_with_the_install_command(monkeypatch, detector, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    make_images(tmp_path / "imgs", 1)
    hint = 'pip install "glipcli[ray]"'
    with pytest.raises(ConfigError, match=hint.replace("[", r"\[").replace("]", r"\]")):
        label_folder(tmp_path / "imgs", PROMPT, tmp_path / "l.json", detector=detector, engine="ray")
    result = CliRunner().invoke(app, ["label", str(tmp_path / "imgs"), "-P", PROMPT, "--engine", "ray"])
    assert_one_line_error(result, hint)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def test_unknown_engine_and_bad_pool_sizes(detector, tmp_path):
    make_images(tmp_path / "imgs", 1)
    cases = [({"engine": "spark"}, "unknown engine"), ({"engine": "ray", "num_workers": 0}, "num workers")]
    cases.append(({"engine": "ray", "gpus_per_worker": -1}, "gpus per worker"))
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            label_folder(tmp_path / "imgs", PROMPT, tmp_path / "l.json", detector=detector, **kwargs)
    result = CliRunner().invoke(app, ["label", str(tmp_path / "imgs"), "-P", PROMPT, "--engine", "spark"])
    assert_one_line_error(result, "unknown engine 'spark'")
    url = (tmp_path / "imgs").as_uri()
    with pytest.raises(ConfigError, match="use the ray engine"):
        label_folder(url, PROMPT, tmp_path / "l.json", detector=detector)
    for folder, message in [(f"{url}/none", "folder not found"), (f"{url}/img_00.png", "not a folder")]:
        with pytest.raises(DataError, match=message):
            label_folder(folder, PROMPT, tmp_path / "l.json", detector=detector, engine="ray")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]
