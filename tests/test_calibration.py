"""glip calibrate: the threshold of best F1 of right boxes, on one validation set or several pooled."""

from __future__ import annotations

import json
import shutil

import numpy as np
from typer.testing import CliRunner

from glipcli.calibration import Scene, best_threshold
from glipcli.cli import app
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
