"""``glip label`` as a user runs it: bad files, exit codes, SIGKILL and resume, a second writer, --help."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from typer.testing import CliRunner

from glipcli.api import Detector
from glipcli.cli import app
from glipcli.labelling.journals import journal_path
from glipcli.labelling.writers import errors_path
from tests.labelling.test_folder import PROMPT, THRESHOLD, make_images, messy_folder, without_date

runner = CliRunner()
CLI = [sys.executable, "-c", "from glipcli.cli import app; app()"]


@pytest.fixture(scope="module")
def detector(tiny_bundle):
    return Detector.load(tiny_bundle, device="cpu")


@pytest.fixture
def fast(monkeypatch, detector):
    """Detector.load returns the loaded tiny detector: the CLI path without the session start-up."""
    monkeypatch.setattr(Detector, "load", classmethod(lambda cls, *args, **kwargs: detector))
    return detector


def label(*args):
    return runner.invoke(app, ["label", *map(str, args)])


def assert_one_line_error(result, fragment):
    assert result.exit_code == 1, result.output
    assert result.exc_info is None or result.exc_info[0] is SystemExit, result.exc_info
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]


def test_messy_folder_exit_2_reasons_in_summary_and_errors_json(fast, tmp_path):
    good, bad = messy_folder(tmp_path / "messy")
    out = tmp_path / "labels.json"
    result = label(tmp_path / "messy", "--prompt", PROMPT, "--out", out, "-t", THRESHOLD)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"labelled {len(good)} of {len(good) + 6} images" in result.stdout
    errors = json.loads(errors_path(out).read_text())
    assert {e["file"] for e in errors} == set(bad)
    summary = result.stderr
    assert f"skipped {len(bad)} files" in summary and str(errors_path(out)) in summary.replace("\n", "")
    for entry in errors:
        assert bad[entry["file"]] in entry["reason"]
        assert entry["file"] in summary, entry  # each kind of problem is distinct here: all names shown
    coco = COCO(str(out))
    assert {i["file_name"] for i in coco.dataset["images"]} == set(good)
    coco.loadRes(copy.deepcopy(coco.dataset["annotations"]))


def test_all_good_exit_0_and_quiet_prints_nothing(fast, tmp_path):
    make_images(tmp_path / "imgs", 2)
    (tmp_path / "labels.json.errors.json").write_text("[]")  # stale, from an earlier run
    result = label(tmp_path / "imgs", "-P", PROMPT, "-o", tmp_path / "labels.json", "-q")
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
    assert len(json.loads((tmp_path / "labels.json").read_text())["images"]) == 2
    assert not (tmp_path / "labels.json.errors.json").exists()


def test_one_label_is_the_default_and_all_labels_gives_glips_output(fast, tmp_path):
    """Fails if the default goes back to GLIP's several labels per object; --one-label is still accepted."""
    make_images(tmp_path / "imgs", 2)
    docs = []
    for i, extra in enumerate(([], ["--one-label"], ["--all-labels"])):
        out = tmp_path / f"labels{i}.json"
        result = label(tmp_path / "imgs", "-P", PROMPT, "-o", out, "-t", "0", "-q", *extra)
        assert result.exit_code == 0, result.output
        docs.append(json.loads(out.read_text()))
    assert [d["info"]["one_label"] for d in docs] == [True, True, False]
    assert docs[0]["annotations"] == docs[1]["annotations"]
    assert 0 < len(docs[0]["annotations"]) < len(docs[2]["annotations"])


def test_prompt_file_and_yolo_format(fast, tmp_path):
    names = make_images(tmp_path / "imgs", 3)
    classes = tmp_path / "classes.txt"
    classes.write_text("# shapes\nred circle\nblue rectangle: a flat box\n")
    out = tmp_path / "dataset" / "labels"
    result = label(tmp_path / "imgs", "--prompt-file", classes, "--format", "yolo", "--out", out, "-t", THRESHOLD)
    assert result.exit_code == 0, result.output
    assert (out / "classes.txt").read_text() == "red circle\nblue rectangle\n"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("img_*.txt")) == [
        Path(n).with_suffix(".txt").as_posix() for n in names
    ]
    for path in out.rglob("img_*.txt"):
        for line in path.read_text().splitlines():
            cls, *values = line.split()
            assert cls in ("0", "1") and all(0 <= float(v) <= 1 for v in values)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--model", "x"], "exactly one of --prompt"),
        (["-P", "cat", "--prompt-file", "c.txt"], "exactly one of --prompt"),
        (["-P", "cat. . dog"], "empty class"),
        (["-P", "cat", "--format", "pascal"], "unknown format"),
        (["-P", "cat", "--out", "/proc/version/x.json"], "not a writable folder"),
    ],
)
def test_user_errors_are_one_line(fast, tmp_path, args, fragment):
    make_images(tmp_path / "imgs", 1)
    assert_one_line_error(label(tmp_path / "imgs", *args), fragment)


def test_missing_folder_and_existing_journal(fast, tmp_path):
    assert_one_line_error(label(tmp_path / "nowhere", "-P", "cat"), "folder not found")
    make_images(tmp_path / "imgs", 1)
    out = tmp_path / "l.json"
    journal_path(out).write_text('{"glipcli_journal": 1, "header": {}}\n')
    assert_one_line_error(label(tmp_path / "imgs", "-P", "cat", "-o", out), "--resume")


def test_help_documents_options_examples_and_exit_codes():
    result = runner.invoke(app, ["label", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--prompt ", "--prompt-file", "--out", "--format", "--threshold", "--max-detections", "--model"):
        assert option in result.stdout, option
    for option in ("--device", "--threads", "--batch-size", "--workers", "--resume", "--quiet"):
        assert option in result.stdout, option
    assert "glip label photos/" in result.stdout and "Exit codes" in result.stdout
    assert "2 finished, but some files were skipped" in result.stdout


def journal_lines(path: Path) -> int:
    try:
        return max(path.read_bytes().count(b"\n") - 1, 0)
    except FileNotFoundError:
        return 0


def assert_whole_json_or_absent(path: Path) -> None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    json.loads(raw)  # a partial file would not parse


def run_cli(args: list[str], out: Path, kill_after: int | None = None) -> int:
    """Run ``glip label`` in a process; SIGKILL it once the journal holds ``kill_after`` images.

    Meanwhile the output is polled: it must always be absent or a whole JSON document.
    """
    proc = subprocess.Popen([*CLI, "label", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while proc.poll() is None:
            assert_whole_json_or_absent(out)
            if kill_after is not None and journal_lines(journal_path(out)) >= kill_after:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.002)
        assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.read().decode()
        return proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_sigkill_at_several_points_then_resume_equals_an_uninterrupted_run(tiny_bundle, tmp_path):
    make_images(tmp_path / "imgs", 30)
    common = [str(tmp_path / "imgs"), "-P", PROMPT, "-m", str(tiny_bundle), "-d", "cpu", "-t", str(THRESHOLD), "-q"]
    whole = tmp_path / "whole.json"
    assert run_cli([*common, "-o", str(whole)], whole) == 0

    out = tmp_path / "resumed.json"
    for k in (1, 9, 20):
        assert run_cli([*common, "-o", str(out), "--resume"], out, kill_after=k) == -signal.SIGKILL
        assert not out.exists() and journal_lines(journal_path(out)) >= k
    assert run_cli([*common, "-o", str(out), "--resume"], out) == 0

    first, second = (json.loads(p.read_text()) for p in (whole, out))
    assert len(first["images"]) == 30 and first["annotations"]
    assert without_date(first) == without_date(second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "resumed.json", "whole.json"]


def test_a_second_process_on_the_same_output_is_refused(fast, tiny_bundle, tmp_path):
    make_images(tmp_path / "imgs", 30)
    out = tmp_path / "l.json"
    args = [str(tmp_path / "imgs"), "-P", PROMPT, "-m", str(tiny_bundle), "-d", "cpu", "-o", str(out), "-q"]
    proc = subprocess.Popen([*CLI, "label", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while journal_lines(journal_path(out)) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, "the first run ended before the second could start"
        for extra in ([], ["--resume"]):
            assert_one_line_error(label(*args, *extra), f"in use by process {proc.pid}")
    finally:
        proc.kill()
        proc.wait()
