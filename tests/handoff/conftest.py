"""One folder of generated scenes, labelled once by glip-nano into every hand-off format."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from glipcli.train.synth import TRAIN_COMBOS, write_detection_set

CLASSES = ["red circle", "blue star", "green square", "yellow triangle", "white hexagon"]


@dataclass(frozen=True)
class Handoff:
    images: Path
    out: Path  # the folder glip label wrote every format into
    coco: dict

    def expected(self) -> dict[str, list[tuple[str, float, float, float, float, float]]]:
        """{file name: sorted [(label, x, y, w, h, score)]} of the COCO output: what every tool must read."""
        names = {c["id"]: c["name"] for c in self.coco["categories"]}
        files = {image["id"]: image["file_name"] for image in self.coco["images"]}
        boxes: dict[str, list] = {name: [] for name in files.values()}
        for a in self.coco["annotations"]:
            boxes[files[a["image_id"]]].append((names[a["category_id"]], *a["bbox"], a["score"]))
        return {name: sorted(found) for name, found in boxes.items()}


@pytest.fixture(scope="session")
def handoff(tmp_path_factory: pytest.TempPathFactory) -> Handoff:
    from glipcli.labelling.folder import label_folder

    root = tmp_path_factory.mktemp("handoff")
    combos = [c for c in TRAIN_COMBOS if " ".join(c) in CLASSES] or list(TRAIN_COMBOS[:5])
    write_detection_set(root / "set", 5, seed=24, combos=combos)
    images = root / "set" / "images"
    prompt = ". ".join(" ".join(c) for c in combos)
    out = root / "labels"
    label_folder(images, prompt, out, fmt="coco,yolo,voc,labelstudio,cvat", threshold=0.35, workers=1)
    coco = json.loads((out / "labels.json").read_text())
    assert coco["annotations"], "glip-nano found nothing: the checks below would be empty"
    return Handoff(images, out, coco)
