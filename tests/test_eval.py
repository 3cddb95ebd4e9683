"""``glip eval``: the mAP equals pycocotools on the same detections; prompt files; bad ground truths."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from glipcli.api import Detector
from glipcli.cli import app
from glipcli.errors import DataError, PromptError
from glipcli.evaluation import category_prompt, evaluate_folder
from glipcli.prompt import Label, Prompt
from glipcli.train.synth import write_detection_set

runner = CliRunner()
COMBOS = [("red", "circle"), ("blue", "square"), ("yellow", "triangle")]


@pytest.fixture(scope="module")
def detector(tiny_bundle):
    return Detector.load(tiny_bundle, device="cpu")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A small COCO ground truth of synthetic shapes: images/ and annotations.json."""
    return write_detection_set(tmp_path_factory.mktemp("gt"), n_images=4, seed=0, combos=COMBOS)


def pycocotools_stats(gt_path: Path, detections: list[dict]) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(detections), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def with_near_misses(detector, dataset: Path, out: Path) -> Path:
    """The ground truth plus objects shifted from a few detections, so that AP is far from 0 at every
    IoU threshold (a random model alone scores about 0) and the comparison below means something."""
    gt = json.loads(dataset.read_text())
    names = ". ".join(c["name"] for c in gt["categories"])
    for image in gt["images"][:2]:
        det = detector(dataset.parent / "images" / image["file_name"], names, threshold=0, all_labels=True)
        for k, ((x1, y1, x2, y2), label_id) in enumerate(zip(det.xyxy[:6].tolist(), det.data["label_id"][:6])):
            shift = 0.04 * k * (x2 - x1)  # IoU from 1 down to about 0.6
            bbox = [x1 + shift, y1, x2 - x1 + 1, y2 - y1 + 1]
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": image["id"],
                    "category_id": int(label_id),
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    out.write_text(json.dumps(gt))
    return out


def test_map_equals_pycocotools_on_the_same_detections(detector, dataset, tmp_path):
    gt_path = with_near_misses(detector, dataset, tmp_path / "gt.json")
    gt = json.loads(gt_path.read_text())
    names = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    detections = []
    for image in gt["images"]:
        det = detector(
            dataset.parent / "images" / image["file_name"],
            ". ".join(names),
            threshold=0,
            all_labels=True,
            max_detections=100,
        )
        for (x1, y1, x2, y2), score, label_id in zip(det.xyxy, det.confidence, det.data["label_id"]):
            x1, y1, x2, y2 = map(float, (x1, y1, x2, y2))
            category = gt["categories"][int(label_id) - 1]["id"]
            bbox = [x1, y1, x2 - x1 + 1, y2 - y1 + 1]  # GLIP's inclusive boxes
            detections.append({"image_id": image["id"], "category_id": category, "bbox": bbox, "score": float(score)})
    stats = pycocotools_stats(gt_path, detections)
    assert min(stats[:3]) > 0.01  # not a comparison of zeros

    report = evaluate_folder(gt_path, dataset.parent / "images", detector=detector)
    assert (report.metrics.map, report.metrics.map50, report.metrics.map75) == (stats[0], stats[1], stats[2])
    assert report.metrics.detections == len(detections) and report.exit_code == 0
    assert report.prompt == "red circle. blue square. yellow triangle."
    assert report.captions == [report.prompt]

    # "area" is optional in many exporters' files: the box's area stands in, and nothing else changes.
    for annotation in gt["annotations"]:
        del annotation["area"]
    no_area = tmp_path / "no_area.json"
    no_area.write_text(json.dumps(gt))
    again = evaluate_folder(no_area, dataset.parent / "images", detector=detector)
    assert (again.metrics.map, again.metrics.map50) == (report.metrics.map, report.metrics.map50)


def test_category_prompt_maps_a_prompt_file_by_name():
    categories = [{"id": 7, "name": "Sea_lion"}, {"id": 3, "name": "stingray"}, {"id": 5, "name": "bow_(weapon)"}]
    prompt, ids = category_prompt(categories, None)
    assert prompt.names == ["stingray", "bow", "Sea lion"] and ids == [3, 5, 7]  # id order, cleaned
    described = Prompt((Label("sea lion"), Label("Stingray", "flat and round fish")))
    prompt, ids = category_prompt(categories, described)
    assert prompt is described and ids == [7, 3]  # by name, in the prompt file's order
    with pytest.raises(PromptError, match="'manta' is not a category"):
        category_prompt(categories, Prompt((Label("manta"),)))
    twice = Prompt((Label("stingray"), Label("stingray", "a fish")))
    with pytest.raises(PromptError, match="same category"):
        category_prompt(categories, twice)
    with pytest.raises(DataError, match="matches 2"):
        category_prompt([{"id": 1, "name": "cat"}, {"id": 2, "name": "Cat"}], Prompt((Label("cat"),)))


def test_prompt_file_subset_and_missing_images(detector, dataset, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((dataset.parent / "images").iterdir())[1:]:  # the first image is missing
        (images / path.name).write_bytes(path.read_bytes())
    prompt = Prompt((Label("yellow triangle", "three corners"), Label("red circle")))
    report = evaluate_folder(dataset, images, detector=detector, prompt=prompt)
    assert report.categories == {3: "yellow triangle", 1: "red circle"}
    assert report.unused == ["blue square"]
    assert [(s.file, s.reason) for s in report.skipped] == [("000000.png", "not found")]
    assert report.exit_code == 2 and report.metrics.images == 3
    assert set(report.metrics.per_class) <= {"red circle", "yellow triangle"}
    assert report.prompt == "yellow triangle: three corners. red circle."


def test_bad_ground_truths(detector, dataset, tmp_path):
    with pytest.raises(DataError, match="not found"):
        evaluate_folder(tmp_path / "none.json", tmp_path, detector=detector)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        evaluate_folder(tmp_path / "bad.json", tmp_path, detector=detector)
    (tmp_path / "empty.json").write_text('{"images": [], "categories": [{"id": 1, "name": "a"}]}')
    with pytest.raises(DataError, match="lists no images"):
        evaluate_folder(tmp_path / "empty.json", tmp_path, detector=detector)
    with pytest.raises(DataError, match="none of the 4 images"):
        evaluate_folder(dataset, tmp_path, detector=detector)
    with pytest.raises(DataError, match="image folder not found"):
        evaluate_folder(dataset, tmp_path / "nowhere", detector=detector)


def test_cli_prints_the_table_and_writes_json(monkeypatch, detector, dataset, tmp_path):
    monkeypatch.setattr(Detector, "load", classmethod(lambda cls, *args, **kwargs: detector))
    out = tmp_path / "scores.json"
    result = runner.invoke(app, ["eval", str(dataset), "--json", str(out)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    numbers = json.loads(out.read_text())
    assert f"mAP {numbers['mAP']:.4f}" in result.stdout and f"mAP@0.5 {numbers['mAP50']:.4f}" in result.stdout
    for name in ("red circle", "blue square", "yellow triangle"):
        assert name in result.stdout and name in numbers["per_class"]
    report = evaluate_folder(dataset, dataset.parent / "images", detector=detector)
    assert numbers["mAP"] == report.metrics.map and numbers["images"] == 4

    bad = runner.invoke(app, ["eval", str(tmp_path / "none.json")])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: ") and "not found" in bad.stderr


def test_cli_help_documents_the_prompt_mapping_and_exit_codes():
    result = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--images", "--prompt-file", "--threshold", "--max-detections", "--model", "--json", "--quiet"):
        assert option in result.stdout, option
    assert "Exit codes" in result.stdout and "glip eval val/annotations.json" in result.stdout
