"""``glip detect`` and ``glip info`` as a user runs them (Typer's CliRunner)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from glipcli.api import DEFAULT_THRESHOLD, Detector
from glipcli.cli import app
from glipcli.io.images import load_image
from glipcli.runtime.bundle import resolve_model
from tests.conftest import needs_reference
from tests.test_api import scene

runner = CliRunner()
PROMPT = "red circle. blue rectangle. yellow triangle."


@pytest.fixture(scope="module")
def detector(tiny_bundle):
    return Detector.load(tiny_bundle, device="cpu")


def reuse(monkeypatch, detector):
    """Detector.load returns the already loaded tiny detector: the CLI path, minus the session start-up."""
    monkeypatch.setattr(Detector, "load", classmethod(lambda cls, *args, **kwargs: detector))


@pytest.fixture
def fast(monkeypatch, detector):
    reuse(monkeypatch, detector)
    detector.engine.runs.update(dict.fromkeys(detector.engine.runs, 0))
    return detector


@pytest.fixture
def img(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(scene(240, 320)).save(path)
    return path


def run(*args):
    return runner.invoke(app, ["detect", *map(str, args)])


def assert_one_line_error(result, fragment):
    assert result.exit_code not in (0, None), result.output
    assert result.exc_info is None or result.exc_info[0] is SystemExit, result.exc_info
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]


@needs_reference
def test_reference_detections_through_the_cli(reduced_bundle, reference, case, tmp_path):
    out = tmp_path / "det.json"
    result = run(
        reference / "image_public.png",
        PROMPT,
        *("--model", reduced_bundle, "--threshold", "0", "--max-detections", "100", "--all-labels"),
        *("--json", out, "-q"),
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert (doc["width"], doc["height"]) == (640, 480) and doc["prompt"] == PROMPT
    dets = doc["detections"]
    assert len(dets) == 100
    np.testing.assert_array_equal([d["label_id"] for d in dets], case["det_labels"])
    names = ["red circle", "blue rectangle", "yellow triangle"]
    assert [d["label"] for d in dets] == [names[i - 1] for i in case["det_labels"]]
    assert np.abs(np.array([d["box_xyxy"] for d in dets]) - case["det_boxes_orig"]).max() <= 1e-2
    assert np.abs(np.array([d["score"] for d in dets]) - case["det_scores"]).max() <= 1e-4


def test_table_and_summary(fast, img):
    result = run(img, PROMPT, "--threshold", "0", "--max-detections", "7", "--all-labels")
    assert result.exit_code == 0, result.output
    assert "7 detections" in result.stdout and "score" in result.stdout
    assert any(name in result.stdout for name in ("red circle", "blue rectangle", "yellow triangle"))
    assert result.stderr == ""


def test_quiet_prints_nothing(fast, img):
    result = run(img, PROMPT, "-q")
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""


def test_json_to_stdout_is_pure_json_and_matches_the_api(fast, img):
    result = run(img, PROMPT, "--json", "-")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    expected = fast(img, PROMPT)
    assert doc["image"] == str(img) and (doc["width"], doc["height"]) == (320, 240)
    assert (doc["threshold"], doc["threshold_source"], doc["one_label"]) == (DEFAULT_THRESHOLD, "default", True)
    assert [d["label"] for d in doc["detections"]] == list(expected.data["class_name"])
    np.testing.assert_allclose([d["box_xyxy"] for d in doc["detections"]], expected.xyxy, atol=0.006)
    np.testing.assert_allclose([d["score"] for d in doc["detections"]], expected.confidence, atol=1e-5)
    assert min(d["score"] for d in doc["detections"]) >= DEFAULT_THRESHOLD


def test_several_images_glob_out_folder_and_json_list(fast, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    sizes = {"a.png": (240, 320), "b.jpg": (200, 150), "c.bmp": (100, 130)}
    for name, (h, w) in sizes.items():
        Image.fromarray(scene(h, w)).save(folder / name)
    out = tmp_path / "annotated"
    result = run(str(folder / "*"), "cat. dog", "--out", f"{out}/", "--json", tmp_path / "all.json", "-q")
    assert result.exit_code == 0, result.output
    docs = json.loads((tmp_path / "all.json").read_text())
    assert [doc["image"] for doc in docs] == [str(folder / n) for n in sorted(sizes)]
    written = {"a.png": "a.png", "b.jpg": "b.jpg", "c.bmp": "c.png"}  # BMP is not an output format
    for name, (h, w) in sizes.items():
        annotated = load_image(out / written[name])
        assert annotated.shape == (h, w, 3)
    assert fast.engine.runs["backbone"] == 3 and fast.engine.runs["text"] <= 1  # text cached across images


def test_annotated_image_differs_from_the_input_where_boxes_are(fast, img, tmp_path):
    result = run(img, PROMPT, "--threshold", "0", "--max-detections", "1", "--out", tmp_path / "one.png", "--json", "-")
    assert result.exit_code == 0, result.output
    (x1, y1, x2, y2) = json.loads(result.stdout)["detections"][0]["box_xyxy"]
    changed = np.any(load_image(tmp_path / "one.png") != load_image(img), axis=2)
    assert changed[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1].any()
    assert changed.mean() < 0.5


def test_grounding_through_the_cli(fast, img):
    caption = "a man walking a dog on the beach"
    result = run(img, caption, "--ground", "man", "--ground", "dog", "-t", "0", "--json", "-")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["prompt"] == caption
    assert {d["label"] for d in doc["detections"]} <= {"man", "dog"}


def test_lvis_sized_prompt_file_runs_backbone_once_per_image(fast, tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("# 1203 classes\n" + "\n".join(f"thing {i}: kind {i}" for i in range(1203)) + "\n")
    images = []
    for seed in range(2):
        images.append(tmp_path / f"{seed}.png")
        Image.fromarray(scene(seed=seed)).save(images[-1])
    result = run(*images, "--prompt-file", classes, "--json", "-", "-t", "0", "--all-labels")
    assert result.exit_code == 0, result.output
    docs = json.loads(result.stdout)
    chunks = fast.engine.runs["text"]
    assert chunks > 10
    assert fast.engine.runs == {"text": chunks, "backbone": 2, "head": 2 * chunks}
    assert all(len(doc["detections"]) == 100 for doc in docs)
    assert {d["label"] for doc in docs for d in doc["detections"]} <= {f"thing {i}" for i in range(1203)}


def test_existing_json_survives_a_failed_run(fast, img, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(img.read_bytes()[:200])  # a valid header, truncated pixels
    target = tmp_path / "keep.json"
    target.write_text('"earlier results"\n')
    result = run(img, broken, PROMPT, "--json", target)
    assert result.exit_code != 0
    assert "error: " in result.stderr and "Traceback" not in result.output
    assert target.read_text() == '"earlier results"\n'


def _bundle_with_version(tiny_bundle, tmp_path, version):
    target = tmp_path / "old-bundle"
    shutil.copytree(tiny_bundle, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["format_version"] = version
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


BAD_INPUTS = {
    "missing image": (lambda p: [p / "missing.jpg", "cat"], "not found"),
    "not an image": (lambda p: [p / "notes.png", "cat"], "not an image"),
    "empty prompt": (lambda p: [p / "scene.png", ""], "no classes"),
    "only separators": (lambda p: [p / "scene.png", ". . ."], "no classes"),
    "empty class": (lambda p: [p / "scene.png", "cat..dog"], "empty class"),
    "ground phrase absent": (lambda p: [p / "scene.png", "a man and a dog", "--ground", "cat"], "does not occur"),
    "prompt file without classes": (lambda p: [p / "scene.png", "--prompt-file", p / "empty.txt"], "no classes"),
    "missing prompt file": (lambda p: [p / "scene.png", "--prompt-file", p / "nope.txt"], "not found"),
    "prompt and prompt file": (lambda p: [p / "scene.png", "cat", "--prompt-file", p / "classes.txt"], "not both"),
    "ground with prompt file": (
        lambda p: [p / "scene.png", "--prompt-file", p / "classes.txt", "--ground", "cat"],
        "--ground needs",
    ),
    "no prompt": (lambda p: [p / "scene.png"], "no prompt"),
    "image as prompt": (lambda p: [p / "scene.png", p / "scene.png"], "not a prompt"),
    "no image": (lambda p: ["cat. dog"], "no image"),
    "nothing": (lambda p: [], "no image"),
    "glob without match": (lambda p: [p / "nothing" / "*.jpg", "cat"], "no file matches"),
    "unknown model": (lambda p: [p / "scene.png", "cat", "--model", "no-such-model"], "unknown model"),
    "unknown device": (lambda p: [p / "scene.png", "cat", "--model", p / "tiny", "--device", "tpu"], "unknown device"),
    "bundle format version": (lambda p: [p / "scene.png", "cat", "--model", p / "old-bundle"], "format version 99"),
    "out under a file": (lambda p: [p / "scene.png", "cat", "--out", p / "notes.png" / "x.png"], "writable folder"),
    "out suffix": (lambda p: [p / "scene.png", "cat", "--out", p / "x.gif"], "'.gif'"),
    "out file for several": (lambda p: [p / "scene.png", p / "scene.png", "cat", "--out", p / "x.png"], "folder"),
    "out onto the input": (lambda p: [p / "scene.png", "cat", "--out", p], "overwrite the input"),
    "json is a folder": (lambda p: [p / "scene.png", "cat", "--json", p], "is a folder"),
}


@pytest.mark.parametrize("case_name", list(BAD_INPUTS))
def test_bad_input_is_one_error_line(case_name, img, tiny_bundle, tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    (tmp_path / "empty.txt").write_text("# nothing here\n\n   \n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    shutil.copytree(tiny_bundle, tmp_path / "tiny")
    _bundle_with_version(tiny_bundle, tmp_path, 99)
    make_args, fragment = BAD_INPUTS[case_name]
    assert_one_line_error(run(*make_args(tmp_path)), fragment)


_prompts = st.one_of(st.text(max_size=60), st.lists(st.text(min_size=1, max_size=10), min_size=1).map(". ".join))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_prompts)
def test_arbitrary_prompts_never_crash_the_cli(detector, img, text):
    with pytest.MonkeyPatch.context() as monkeypatch:
        reuse(monkeypatch, detector)
        result = runner.invoke(app, ["detect", "--json", "-", "-q", "--", str(img), text])
    if result.exit_code == 0:
        event("detected")
        assert isinstance(json.loads(result.stdout)["detections"], list)
    else:
        event("error")
        assert_one_line_error(result, "")
        assert result.exit_code == 1


def test_detect_help_lists_every_option_and_an_example():
    result = runner.invoke(app, ["detect", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--model",
        "--device",
        "--threads",
        "--threshold",
        "--max-detections",
        "--ground",
        "--prompt-file",
        "--out",
        "--json",
        "--quiet",
    ):
        assert option in result.stdout, option
    assert "Examples" in result.stdout and 'glip detect img.jpg "stingray. flat and round fish"' in result.stdout


def test_info_describes_a_bundle(tiny_bundle):
    result = runner.invoke(app, ["info", str(tiny_bundle)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for fragment in ("tiny", "fp32", "random", "text.onnx", "backbone.onnx", "head.onnx", "tuned prompts", "ok:"):
        assert fragment in result.stdout, fragment
    assert "mean of its tokens' probabilities (GLIP's MEAN)" in result.stdout
    nano = runner.invoke(app, ["info", "glip-nano"], env={"COLUMNS": "200"})
    assert "geometric mean of its words' probabilities (GEOMEAN)" in nano.stdout, nano.output
    assert "threshold     0.4 (not calibrated: glip calibrate chooses one)" in result.stdout
    calibration = json.loads((resolve_model("glip-nano") / "manifest.json").read_text())["calibration"]
    line = next(line for line in nano.stdout.splitlines() if line.startswith("threshold"))
    assert f"{calibration['threshold']} (F1 {calibration['f1']} on {calibration['ground_truth']})" in line
    flops = json.loads((tiny_bundle / "manifest.json").read_text())["flops"]
    h, w = flops["image_hw"]
    assert f"GFLOP at {h}x{w}, {flops['tokens']} tokens" in result.stdout
    head = next(line for line in result.stdout.splitlines() if "head.onnx" in line)
    assert head.split()[-1] == f"{flops['graphs']['head'] / 1e9:.1f}"


def test_info_of_an_unknown_model_is_one_error_line():
    assert_one_line_error(runner.invoke(app, ["info", "no-such-model"]), "unknown model")
