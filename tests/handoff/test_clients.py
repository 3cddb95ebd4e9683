"""The real tools read back what glip label wrote: Datumaro (CVAT's library) and a Label Studio server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.handoff import clients
from tests.handoff.conftest import Handoff

needs_datumaro = pytest.mark.skipif(
    clients.datumaro_python() is None,
    reason="Datumaro not installed (.ci/run makes .venv-dm; or GLIPCLI_DATUMARO_PYTHON)",
)
needs_label_studio = pytest.mark.skipif(
    clients.label_studio() is None,
    reason="Label Studio not installed (.ci/run makes .venv-ls; or GLIPCLI_LABEL_STUDIO)",
)


def _assert_same(got: list[list], want: list[tuple], tolerance: float, scores: bool = True) -> None:
    """Same boxes (each once, same label, within ``tolerance`` px) and, where carried, the same scores."""
    assert len(got) == len(want), (got, want)
    left = list(got)
    for label, *box, score in want:
        hits = [
            k
            for k, g in enumerate(left)
            if g[0] == label and np.allclose(g[1:5], box, atol=tolerance) and (not scores or g[5] == score)
        ]
        assert hits, f"{label} {box} {score} not read back"
        left.pop(hits[0])


@needs_datumaro
def test_datumaro_reads_cvat_voc_and_yolo(handoff: Handoff, tmp_path: Path) -> None:
    expected = handoff.expected()
    sizes = {image["file_name"]: (image["width"], image["height"]) for image in handoff.coco["images"]}
    # CVAT's own export layout: annotations.xml beside images/
    cvat = tmp_path / "cvat"
    cvat.mkdir()
    shutil.copy(handoff.out / "cvat.xml", cvat / "annotations.xml")
    (cvat / "images").symlink_to(handoff.images)
    # YOLO as Datumaro's loose importer finds it: obj.names, labels/<subset>/, images/<subset>/
    yolo = tmp_path / "yolo"
    (yolo / "labels").mkdir(parents=True)
    (yolo / "images").mkdir()
    shutil.copy(handoff.out / "yolo" / "classes.txt", yolo / "obj.names")
    shutil.copytree(handoff.out / "yolo", yolo / "labels" / "default", ignore=shutil.ignore_patterns("*.txt.*"))
    (yolo / "labels" / "default" / "classes.txt").unlink()
    (yolo / "images" / "default").symlink_to(handoff.images)
    read = {
        "cvat": clients.datumaro_boxes("cvat", cvat),
        "voc": clients.datumaro_boxes("voc_detection", handoff.out / "voc"),
        "yolo": clients.datumaro_boxes("yolo", yolo),
    }
    for name, boxes in expected.items():
        stem = Path(name).stem
        width, height = sizes[name]
        _assert_same(read["cvat"][stem], boxes, 1e-6)
        # VOC: whole 1-based pixels, which Datumaro takes as they are (x = xmin, w = xmax - xmin)
        voc = [[g[0], g[1] - 1, g[2] - 1, g[3] + 1, g[4] + 1, g[5]] for g in read["voc"][stem]]
        _assert_same(voc, boxes, 0.5 + 1e-6 + 0.5, scores=True)
        clipped = []
        for label, x, y, w, h, score in boxes:
            x1, y1, x2, y2 = np.clip([x, y, x + w, y + h], 0, [width, height, width, height])
            clipped.append((label, x1, y1, x2 - x1, y2 - y1, score))
        _assert_same(read["yolo"][stem], clipped, 2e-5 * max(width, height) + 1e-3, scores=False)


@needs_label_studio
def test_label_studio_imports_tasks_and_predictions(handoff: Handoff, tmp_path: Path) -> None:
    """A real server: project from our config, our tasks imported, predictions read back equal."""
    folder = handoff.out / "labelstudio"
    tasks = json.loads((folder / "tasks.json").read_text())
    data_dir = tmp_path / "ls"
    data_dir.mkdir()
    with clients.label_studio_server(data_dir, handoff.images) as server:
        project = server.call(
            "POST", "/api/projects", {"title": "glipcli hand-off", "label_config": (folder / "config.xml").read_text()}
        )
        imported = server.call("POST", f"/api/projects/{project['id']}/import", tasks)
        assert imported["task_count"] == len(handoff.coco["images"])
        assert imported["prediction_count"] == len(handoff.coco["images"])
        predictions = server.call("GET", f"/api/predictions/?project={project['id']}")
        files = {
            task["id"]: task["data"]["file_name"]
            for task in server.call("GET", f"/api/tasks/?project={project['id']}")["tasks"]
        }
    sizes = {image["file_name"]: (image["width"], image["height"]) for image in handoff.coco["images"]}
    expected = handoff.expected()
    assert sorted(files.values()) == sorted(expected)
    for prediction in predictions:
        name = files[prediction["task"]]
        width, height = sizes[name]
        assert prediction["model_version"] == handoff.coco["info"]["model"]
        got = []
        for result in prediction["result"]:
            v = result["value"]
            box = [v["x"] * width / 100, v["y"] * height / 100, v["width"] * width / 100, v["height"] * height / 100]
            got.append([v["rectanglelabels"][0], *(round(b, 2) for b in box), result["score"]])
        _assert_same(got, expected[name], 1e-9)
