"""glip calibrate: the threshold of best F1 of right boxes, on one validation set or several pooled."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from glipcli.api import Detector
from glipcli.calibration import Scene, best_threshold
from glipcli.cli import app
from glipcli.selection import Thresholds
from glipcli.train.synth import HELD_OUT, TRAIN_COMBOS, write_detection_set
from tests.test_selection import detections

A, B = [10, 10, 60, 60], [100, 100, 150, 150]


def scene(boxes, scores, labels, gt_boxes, gt_categories, category_of_label) -> Scene:
    return Scene(
        image_id=0,
        detections=detections(boxes, scores, labels),
        gt_xyxy=np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4),
        gt_categories=np.asarray(gt_categories),
        category_of_label=np.asarray([0, *category_of_label]),
    )


def test_best_threshold_pools_sets_with_their_own_label_maps():
    # set 1 (label 1 -> category 1, label 2 -> category 2): a right box at 0.9, a wrong label at 0.6
    known = scene([A, B], [0.9, 0.6], [1, 2], [A, B], [1, 1], [1, 2])
    # set 2 (label 1 -> category 7): its objects score low, 0.3 and 0.25, and are right
    new = scene([A, B], [0.3, 0.25], [1, 1], [A, B], [7, 7], [7])
    assert best_threshold([known])[0] == 0.61  # F1 2/3: dropping the wrong box beats keeping it (2/4)
    threshold, counts = best_threshold([known, new])
    # pooled, 4 objects: at <= 0.25 4 boxes, 3 right (F1 6/8); at 0.61 1 box, 1 right (2/5)
    assert threshold == 0.05 and (counts.boxes, counts.right, counts.objects) == (4, 3, 4)


def _set(folder, seed, combos):
    write_detection_set(folder, 2, seed, combos)
    return folder / "annotations.json"


def test_cli_calibrates_on_several_sets_and_refuses_one_images_folder_for_them(tiny_bundle, tmp_path):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    known = _set(tmp_path / "known", 1, TRAIN_COMBOS[:3])
    new = _set(tmp_path / "new", 2, tuple(sorted(HELD_OUT))[:2])
    result = CliRunner().invoke(app, ["calibrate", str(known), str(new), "--model", str(bundle), "-q"])
    assert result.exit_code == 0, result.output
    calibration = json.loads((bundle / "manifest.json").read_text())["calibration"]
    assert calibration["ground_truth"] == "known/annotations.json + new/annotations.json"
    assert calibration["images"] == 4 and [s["seed"] for s in calibration["data"]["sets"]] == [1, 2]
    before = (bundle / "manifest.json").read_text()
    args = ["calibrate", str(known), str(new), "--images", str(tmp_path / "known" / "images"), "--model", str(bundle)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and "--images applies to one GT.json" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and (bundle / "manifest.json").read_text() == before


def test_cli_new_names_sets_choose_a_second_threshold_for_other_classes(tiny_bundle, tmp_path):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    known = _set(tmp_path / "known", 1, TRAIN_COMBOS[:3])
    new = _set(tmp_path / "new", 2, tuple(sorted(HELD_OUT))[:2])
    args = ["calibrate", str(known), "--new-names", str(new), "--model", str(bundle)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "new names' threshold" in result.stdout
    calibration = json.loads((bundle / "manifest.json").read_text())["calibration"]
    known_names = sorted(c["name"] for c in json.loads(known.read_text())["categories"])
    assert calibration["names"] == known_names and calibration["ground_truth"] == "known/annotations.json"
    other = calibration["new_names"]
    assert other["ground_truth"] == "new/annotations.json" and other["images"] == 2 and 0 < other["threshold"] < 1
    detector = Detector.load(bundle, device="cpu")
    new_name = json.loads(new.read_text())["categories"][0]["name"]
    prepared = detector.prepare_prompt(f"{known_names[0]}. {new_name}")
    assert detector.thresholds(prepared) == Thresholds(calibration["threshold"], {2: other["threshold"]})


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--new-names", "{known}"], "holds classes of the main sets ('"),
        (["--new-names", "{new}", "--prompt-file", "{prompt}"], "--prompt-file and --new-names"),
        (["--new-names", "{new}", "--images", "{images}"], "--images applies to one GT.json"),
    ],
)
def test_cli_bad_new_names_sets_are_one_line_errors(tiny_bundle, tmp_path, extra, fragment):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    known = _set(tmp_path / "known", 1, TRAIN_COMBOS[:3])
    new = _set(tmp_path / "new", 2, tuple(sorted(HELD_OUT))[:2])
    prompt = tmp_path / "classes.txt"
    prompt.write_text(" ".join(TRAIN_COMBOS[0]) + "\n")
    values = {"known": known, "new": new, "prompt": prompt, "images": tmp_path / "known" / "images"}
    before = (bundle / "manifest.json").read_text()
    args = ["calibrate", str(known), *[e.format(**values) for e in extra], "--model", str(bundle)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and fragment in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and (bundle / "manifest.json").read_text() == before
