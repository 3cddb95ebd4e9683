"""Does glip-nano name the colour and the shape of what it finds? (its model card's figures)

On a generated COCO set of coloured shapes ("<colour> <shape>" categories), every object that
GLIP's raw output boxes at IoU >= 0.5 (any label) is named by the best-scoring such box; this
prints how often that label has the object's colour and its shape, per shape and by object size,
and which shapes take each other's names. Localisation and naming apart, where mAP mixes them.

    python -m bench.shape_naming runs/test_seen/annotations.json --model exported/glip-nano
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from glipcli.api import Detector
from glipcli.calibration import Scene, load_scenes
from glipcli.io.coco import load_coco

SIZES = ((0, 24), (24, 48), (48, 96), (96, 10_000))


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy boxes -> (N, M) IoU (widths without maskrcnn's +1)."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def naming(scenes: list[Scene], names: dict[int, str]) -> dict[str, Any]:
    """Colour / shape right of the best box per found object, per shape, per size, confusions."""
    found = colour_ok = shape_ok = objects = 0
    per_shape: dict[str, list[int]] = {}
    per_size: dict[str, list[int]] = {f"{lo}-{hi}px": [0, 0] for lo, hi in SIZES}
    confusions: Counter[tuple[str, str]] = Counter()
    for scene in scenes:
        objects += len(scene.gt_xyxy)
        det = scene.detections
        if not len(det) or not len(scene.gt_xyxy):
            continue
        iou = pairwise_iou(scene.gt_xyxy, det.xyxy.astype(np.float64))
        for i, category in enumerate(scene.gt_categories):
            hits = np.flatnonzero(iou[i] >= 0.5)
            if not len(hits):
                continue
            best = hits[np.argmax(det.confidence[hits])]
            said = names[int(scene.category_of_label[det.data["label_id"][best]])].split()
            truth = names[int(category)].split()
            found += 1
            colour_ok += said[0] == truth[0]
            shape_ok += said[-1] == truth[-1]
            counts = per_shape.setdefault(truth[-1], [0, 0])
            counts[0] += said[-1] == truth[-1]
            counts[1] += 1
            side = max(scene.gt_xyxy[i, 2:] - scene.gt_xyxy[i, :2])
            for lo, hi in SIZES:
                if lo <= side < hi:
                    per_size[f"{lo}-{hi}px"][0] += said[-1] == truth[-1]
                    per_size[f"{lo}-{hi}px"][1] += 1
            if said[-1] != truth[-1]:
                confusions[(truth[-1], said[-1])] += 1
    return {
        "objects": objects,
        "found": found,
        "colour_right": colour_ok / max(found, 1),
        "shape_right": shape_ok / max(found, 1),
        "shape_right_per_shape": {k: round(v[0] / v[1], 3) for k, v in sorted(per_shape.items())},
        "shape_right_per_size": {k: round(v[0] / v[1], 3) if v[1] else None for k, v in per_size.items()},
        "confusions": [f"{a} called {b}: {n}" for (a, b), n in confusions.most_common(8)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gt", type=Path, help="COCO ground truth with images/ beside it")
    parser.add_argument("--model", default=None, help="bundle path or name (default glip-nano)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    detector = Detector.load(args.model, threads=args.threads)
    names = {c["id"]: c["name"] for c in load_coco(args.gt)["categories"]}
    result = naming(load_scenes(args.gt, args.gt.parent / "images", detector), names)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
