"""The labels ``glip label`` writes, against the objects really there (issue 21's table).

For each set (fresh scenes of the project's generator, glipcli/train/synth.py, and of another
rasteriser, tests/drawn_shapes.py; the 56 trained names in one prompt, and the 8 held-out ones):
boxes written, right boxes (label names the object's category and IoU >= 0.5, each object matched
once), precision and recall, at the defaults (one label per object, the bundle's threshold) and
with ``--all-labels`` (GLIP's output) at the same threshold; plus mAP@0.5 of GLIP's raw output
(threshold 0, 100 boxes), which ``glip eval`` reports. The defaults include the bundle's
threshold for classes it was not calibrated on (``glip calibrate --new-names``). The model runs
once per image: both rows select from its raw output as the Detector does (glipcli.selection).

    python -m bench.label_quality --model exported/glip-nano --images 150
    python -m bench.label_quality --model runs/new-nano --threshold 0.4 --json runs/quality.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from glipcli.api import Detector
from glipcli.calibration import Scene, counts, load_scenes
from glipcli.evaluation import category_prompt, coco_results
from glipcli.io.coco import load_coco
from glipcli.metrics import coco_metrics
from glipcli.train.synth import HELD_OUT, TRAIN_COMBOS, write_detection_set
from tests.drawn_shapes import write_drawn_set

# Seeds no test, benchmark, calibration (401, 701) or README figure (301, 302) uses.
GENERATOR_SEED = 501
DRAWN_SEED = 601


def make_sets(work: Path, images: int) -> dict[str, Path]:
    """Four COCO ground truths: generator and drawn scenes, trained and held-out combinations."""
    held_out = sorted(HELD_OUT)
    return {
        "generator, 56 trained names": write_detection_set(work / "gen-seen", images, GENERATOR_SEED, TRAIN_COMBOS),
        "generator, 8 held-out names": write_detection_set(work / "gen-held", images, GENERATOR_SEED + 1, held_out),
        "drawn, 56 trained names": write_drawn_set(work / "drawn-seen", TRAIN_COMBOS, images, seed=DRAWN_SEED),
        "drawn, 8 held-out names": write_drawn_set(work / "drawn-held", held_out, images, seed=DRAWN_SEED + 1),
    }


def raw_map50(gt: Path, scenes: list[Scene]) -> float:
    """mAP@0.5 of GLIP's output (threshold 0, 100 boxes), as glip eval computes it."""
    results = []
    for scene in scenes:
        det = scene.detections
        categories = scene.category_of_label[1:].tolist()
        results += coco_results(scene.image_id, det.xyxy, det.confidence, det.data["label_id"], categories)
    return coco_metrics(load_coco(gt), results).map50


def measure(detector: Detector, gt: Path, threshold: float | None) -> dict[str, Any]:
    """The set's figures at ``threshold`` (None: the model's defaults, new-name threshold included)."""
    scenes = load_scenes(gt, gt.parent / "images", detector)
    prompt, _ = category_prompt(load_coco(gt)["categories"], None)
    thresholds = detector.thresholds(detector.prepare_prompt(prompt), threshold)
    row: dict[str, Any] = {"images": len(scenes), "objects": sum(len(s.gt_xyxy) for s in scenes)}
    row["thresholds"] = sorted(set(thresholds.of(np.arange(1, len(prompt.labels) + 1)).tolist()))
    for name, all_labels in (("defaults", False), ("all labels", True)):
        found = counts(scenes, thresholds, all_labels=all_labels)
        row[name] = {"boxes": found.boxes, "right": found.right, "precision": found.precision, "recall": found.recall}
    row["raw mAP@0.5"] = raw_map50(gt, scenes)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.label_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="bundle path or name (default glip-nano)")
    parser.add_argument("--images", type=int, default=150, help="scenes per set")
    parser.add_argument("--threshold", type=float, default=None, help="default: the bundle's (calibrated or 0.4)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--work", type=Path, default=None, help="folder for the generated sets (default: a temp one)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    detector = Detector.load(args.model, threads=args.threads)
    threshold, source = (args.threshold, "given") if args.threshold is not None else detector.default_threshold
    rule = detector.new_name_threshold if args.threshold is None else None
    new_names = f", {rule[0]:g} for classes outside the {len(rule[1])} calibrated ones" if rule else ""
    print(f"model {detector.name} ({detector.bundle.path}), threshold {threshold:g} ({source}){new_names}")
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        rows = {name: measure(detector, gt, args.threshold) for name, gt in make_sets(work, args.images).items()}
    header = f"{'set':30} {'objects':>7} | {'output':10} {'boxes':>6} {'right':>6} {'precision':>9} {'recall':>6}"
    print(header + " | raw mAP@0.5")
    for name, row in rows.items():
        for i, output in enumerate(("defaults", "all labels")):
            c = row[output]
            lead = (
                f"{name:30} {row['objects']:>7}" if i == 0 else f"{'at ' + '/'.join(map(str, row['thresholds'])):>38}"
            )
            tail = f" | {row['raw mAP@0.5']:.3f}" if i == 0 else " |"
            print(
                f"{lead} | {output:10} {c['boxes']:>6} {c['right']:>6} {c['precision']:>9.3f} {c['recall']:>6.3f}{tail}"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"model": detector.name, "threshold": threshold, "threshold_source": source, "sets": rows}
        args.json.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
