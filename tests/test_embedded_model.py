"""The model that ships in exported/: what a fresh clone runs with no --model and no network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from supervision import box_iou_batch
from typer.testing import CliRunner

from glipcli.api import Detector
from glipcli.calibration import best_threshold, load_scenes
from glipcli.cli import app
from glipcli.evaluation import evaluate_folder
from glipcli.runtime.bundle import embedded_models_dir
from glipcli.selection import FRAGMENT_INSIDE
from glipcli.train.synth import HELD_OUT, TRAIN_COMBOS, write_detection_set
from tests.drawn_shapes import write_drawn_set

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


def test_readme_command_boxes_each_named_object_once_and_nothing_else():
    """The picture a new user sees first (the README's command at the defaults: one label per
    object, the calibrated threshold): each of the five objects the prompt names (two black
    crosses) gets one box with its name at IoU >= 0.5, and no other box is drawn: not on the
    white cross, the triangle or the scribbles. Measured: five boxes, the large cross's 0.60 and
    the small one's 0.61 the closest to the threshold (0.57)."""
    gt = json.loads((EXAMPLES / "annotations.json").read_text())
    image = next(i for i in gt["images"] if i["file_name"] == "000004.png")
    names = {c["id"]: c["name"] for c in gt["categories"]}
    named = ("red heart", "blue circle", "black cross", "white circle")
    objects = [
        (
            names[a["category_id"]],
            [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]],
        )
        for a in gt["annotations"]
        if a["image_id"] == image["id"] and names[a["category_id"]] in named
    ]
    assert len(objects) == 5
    shown = _detect_json()
    iou = box_iou_batch(
        np.array([d["box_xyxy"] for d in shown], np.float32).reshape(-1, 4), np.array([box for _, box in objects])
    )
    right = (iou >= 0.5) & np.array([[d["label"] == name for name, _ in objects] for d in shown]).reshape(iou.shape)
    assert (right.sum(0) == 1).all(), ("each named object boxed once", shown)
    assert (right.sum(1) == 1).all(), ("no box that is not a named object", shown)


def test_embedded_model_tells_the_example_classes_apart():
    """64 colour-shape classes on the 8 example scenes: mAP@0.5 0.94 measured at the defaults (the
    detector alone at one pass 0.90; a random or collapsed model scores < 0.2; batch 4, 0.84; GLIP's
    mean of the tokens' probabilities instead of glip-nano's geometric mean, 0.75)."""
    report = evaluate_folder(EXAMPLES / "annotations.json", EXAMPLES / "images", detector=Detector.load())
    assert report.metrics.map50 > 0.87


def test_embedded_model_runs_three_passes_and_they_beat_one(tmp_path):
    """glip-nano's default input is the three passes it was calibrated at (docs/labels.md): the image
    at 384, at 768 for small boxes and at 256 for large ones. On 32 fresh generator scenes of the 56
    trained names (a seed no training, calibration or figure uses) they must beat the single pass:
    measured with the region namer on (both): here 0.945 against 0.886 (seed 612: 0.951 / 0.921;
    without the namer, on the 200-scene test set, the second-stage model shipped before had 0.821
    against 0.734). Fails if the default goes back to one pass, or if the other passes stop adding
    what the first misses."""
    detector = Detector.load()
    assert detector.size == "384:768,768:1536@0-96,256:512@64-"
    gt = write_detection_set(tmp_path, 32, 611, TRAIN_COMBOS)
    three = evaluate_folder(gt, tmp_path / "images", detector=detector).metrics.map50
    one = evaluate_folder(gt, tmp_path / "images", detector=Detector.load(size=384)).metrics.map50
    assert three > one + 0.03, (three, one)


def test_embedded_model_region_namer_names_what_glip_confuses(tmp_path):
    """glip-nano carries a region namer (glipcli.rescore), and with it each object's best label is far
    more often right: best F1 of right boxes at one label per object, on 32 fresh generator scenes of
    the 56 trained names (seed 614, used nowhere else), with the namer against GLIP's scores alone
    (each at its own best threshold, so the calibration does not decide). Measured: 0.890 against
    0.741 (seed 615: 0.945 / 0.742; calib401: 0.958 at its calibrated threshold). Fails if the namer
    is dropped, loses its weights or stops seeing the boxes it re-scores."""
    detector = Detector.load()
    assert detector.namer is not None and detector.namer.weight == 0.3
    gt = write_detection_set(tmp_path, 32, 614, TRAIN_COMBOS)
    with_namer = best_threshold(load_scenes(gt, tmp_path / "images", detector))[1].f1
    without = best_threshold(load_scenes(gt, tmp_path / "images", Detector.load(namer=False)))[1].f1
    assert with_namer > without + 0.05, (with_namer, without)


@pytest.mark.parametrize(
    "combos, images, white, floor",
    [(TRAIN_COMBOS, 24, False, 0.95), (sorted(HELD_OUT), 16, False, 0.95), (TRAIN_COMBOS, 24, True, 0.95)],
    ids=["trained", "held-out", "white-background"],
)
def test_embedded_model_finds_shapes_drawn_by_another_renderer(tmp_path, combos, images, white, floor):
    """PIL-drawn shapes in CSS colours (tests/drawn_shapes.py), not glip-nano's own renderer: it
    learned shapes and colour names, not its generator's look. Measured mAP@0.5 at the defaults (three
    passes, the namer): 1.00 on all three sets. At one pass, before the namer, glip-nano scored at
    least 0.86 trained, 0.96 held-out and 0.87 on white over seeds 0-4 (with GLIP's mean instead of
    the geometric mean of the words' probabilities, 0.73 trained), so on the trained names 0.95 fails
    if the passes or the namer stop adding to it. A model that told colours but not shapes apart
    would rank the 7 trained classes of a colour alike: AP near 1/7 each."""
    gt = write_drawn_set(tmp_path, combos, images, white_background=white)
    report = evaluate_folder(gt, tmp_path / "images", detector=Detector.load())
    assert report.metrics.map50 > floor


def test_examples_label_into_coco(tmp_path):
    out = tmp_path / "labels.json"
    result = CliRunner().invoke(
        app,
        ["label", str(EXAMPLES / "images"), "--prompt-file", str(EXAMPLES / "classes.txt"), "--out", str(out), "-q"],
    )
    assert result.exit_code == 0, result.output
    coco = json.loads(out.read_text())
    assert len(coco["images"]) == 8 and len(coco["categories"]) == 64


def _detect_json(*options: str) -> list[dict]:
    prompt = "red heart. blue circle. black cross. white circle"
    image = str(EXAMPLES / "images" / "000004.png")
    result = CliRunner().invoke(app, ["detect", image, prompt, "--json", "-", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["detections"]


def test_one_label_keeps_the_best_label_of_each_object():
    """The default (also --one-label) against GLIP's output (--all-labels): fails if the default goes back
    to several labels per object. At 0.25, below the calibrated threshold, so that GLIP's output has
    objects named twice whatever the calibration (with the region namer, 0.4 no longer had any)."""
    every, one = _detect_json("--all-labels", "-t", "0.25"), _detect_json("-t", "0.25")
    assert one == _detect_json("--one-label", "-t", "0.25")
    boxes = lambda ds: np.array([d["box_xyxy"] for d in ds], dtype=np.float32)  # noqa: E731
    overlap = box_iou_batch(boxes(every), boxes(every)) >= 0.5
    labels = np.array([d["label"] for d in every])
    assert (overlap & (labels[:, None] != labels[None, :])).any()  # GLIP's output: objects with several labels
    kept = box_iou_batch(boxes(one), boxes(one))
    assert 0 < len(one) < len(every) and (kept[~np.eye(len(one), dtype=bool)] < 0.5).all()
    assert one[0] == every[0] and all(d in every for d in one)  # a subset, best first, nothing altered
    for d in every:  # a box is dropped only for a better-scoring kept box over the same object, or as its fragment
        if d not in one:
            rivals = [k for k in one if box_iou_batch(boxes([d]), boxes([k]))[0, 0] >= 0.5 or _fragment_of(d, k)]
            assert rivals and max(k["score"] for k in rivals) >= d["score"]


def _fragment_of(d: dict, k: dict) -> bool:
    """d has k's label and at least FRAGMENT_INSIDE of its area inside k."""
    (x1, y1, x2, y2), (a1, b1, a2, b2) = d["box_xyxy"], k["box_xyxy"]
    inside = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
    return d["label"] == k["label"] and inside >= FRAGMENT_INSIDE * (x2 - x1) * (y2 - y1) - 1e-3
