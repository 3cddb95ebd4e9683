"""Run by Datumaro's own Python (tests/handoff/clients.py): import a dataset, print its boxes as JSON.

    python datumaro_dump.py FORMAT PATH  ->  {"item id": [[label, x, y, w, h, score or null], ...], ...}

Kept free of glipcli imports: Datumaro lives in its own virtual environment (its pins clash with ours).
"""

from __future__ import annotations

import json
import sys

import datumaro as dm


def main(fmt: str, path: str) -> None:
    dataset = dm.Dataset.import_from(path, fmt)
    labels = dataset.categories()[dm.AnnotationType.label]
    boxes: dict[str, list[list[object]]] = {}
    for item in dataset:
        found = boxes.setdefault(item.id, [])
        for ann in item.annotations:
            if ann.type == dm.AnnotationType.bbox:
                x, y, w, h = ann.get_bbox()
                score = ann.attributes.get("score")
                found.append([labels[ann.label].name, x, y, w, h, None if score is None else float(score)])
    json.dump(boxes, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
