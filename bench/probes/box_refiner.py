"""Can the region namer's crops tighten glip-nano's boxes? A second-stage box regressor, as
two-stage detectors have: the namer's CNN body (glipcli.model.namer) with four box deltas, trained
on boxes jittered wider than the namer's, applied once to the detector's boxes of a fresh set.

    python -m bench.probes.box_refiner            # 10 min on 2 cores (GLIP over 150 scenes, 1,500 steps)

It prints the IoU of each box with its object before and after refinement, by how tight the box was,
and the README picture's large black cross (whose best box is loose).

Measured 2026-12-03 (training scenes of the generator's crop stream, seed 5; 13,318 crops, 1,500
steps of 64, 492 s with GLIP's pass over the set, 2 AVX2 cores), IoU of 10,004 boxes, before -> after:
mean 0.855 -> 0.869; boxes at 0.3-0.5 0.416 -> 0.546 (62 % of them then >= 0.5); 0.5-0.7 0.608 ->
0.752; 0.7-0.85 0.801 -> 0.857; 0.85-1 0.906 -> 0.892 (the tight ones lose). The README cross's
loose box: 0.62 -> 0.63, still pulled towards the circle it lies on. Not pursued for the cross;
a lead for recall at IoU 0.5 and for mAP (docs/glip-nano.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.shape_naming import pairwise_iou
from glipcli.api import Detector
from glipcli.calibration import load_scenes
from glipcli.config import NamerConfig
from glipcli.crops import box_crops
from glipcli.io.coco import load_coco
from glipcli.io.images import load_image
from glipcli.model.namer import CROP_MEAN, CROP_STD, RegionNamer
from glipcli.train.synth import TRAIN_COMBOS, crop_scene, write_detection_set

WEIGHTS = np.array([10.0, 10.0, 5.0, 5.0])  # Faster R-CNN's delta scaling
README_IMAGE = Path("examples/images/000004.png")
README_CROSS = np.array([[183, 174, 365, 355]], np.float64)  # its ground truth
README_LOOSE = np.array([[157, 134, 391, 362]], np.float64)  # the detector's best box for it


def encode(boxes: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """Deltas (dx, dy, log dw, log dh) from ``boxes`` to ``objects``, xyxy, scaled by WEIGHTS."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ow, oh = objects[:, 2] - objects[:, 0], objects[:, 3] - objects[:, 1]
    dx = (objects[:, 0] + ow / 2 - boxes[:, 0] - w / 2) / w
    dy = (objects[:, 1] + oh / 2 - boxes[:, 1] - h / 2) / h
    return np.stack([dx, dy, np.log(ow / w), np.log(oh / h)], 1) * WEIGHTS


def decode(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    d = deltas / WEIGHTS
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + w * (0.5 + d[:, 0]), boxes[:, 1] + h * (0.5 + d[:, 1])
    w, h = w * np.exp(np.clip(d[:, 2], -2, 2)), h * np.exp(np.clip(d[:, 3], -2, 2))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


class Refiner(nn.Module):
    def __init__(self, cfg: NamerConfig) -> None:
        super().__init__()
        self.body = RegionNamer(cfg).body
        self.deltas = nn.Linear(cfg.channels[-1], 4)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.deltas(self.body((crops - CROP_MEAN) / CROP_STD))


def training_crops(cfg: NamerConfig, scenes: int, jitter: float, sides: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    crops, targets = [], []
    for index in range(scenes):
        scene = crop_scene(5, index)
        objects = np.repeat(scene.boxes.astype(np.float64), 2, axis=0)
        w, h = objects[:, 2] - objects[:, 0], objects[:, 3] - objects[:, 1]
        cx = objects[:, 0] + w / 2 + rng.normal(0, jitter, len(w)) * w
        cy = objects[:, 1] + h / 2 + rng.normal(0, jitter, len(h)) * h
        w, h = w * np.exp(rng.normal(0, sides, len(w))), h * np.exp(rng.normal(0, sides, len(h)))
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        crops.append(np.rint(box_crops(scene.image, boxes, cfg.crop, cfg.margin) * 255).astype(np.uint8))
        targets.append(encode(boxes, objects))
    return np.concatenate(crops), np.concatenate(targets).astype(np.float32)


def train(cfg: NamerConfig, crops: np.ndarray, targets: np.ndarray, steps: int) -> Refiner:
    torch.manual_seed(0)
    rng = np.random.default_rng(8)
    net = Refiner(cfg)
    optimiser = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    mirror = torch.tensor([-1.0, 1.0, 1.0, 1.0])
    for _ in range(steps):
        rows = rng.integers(0, len(crops), 64)
        x, y = torch.from_numpy(crops[rows]).float() / 255, torch.from_numpy(targets[rows])
        if rng.random() < 0.5:
            x, y = x.flip(3), y * mirror
        loss = nn.functional.smooth_l1_loss(net(x), y, beta=1 / 9)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return net.eval()


def refined(net: Refiner, cfg: NamerConfig, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return decode(boxes, net(torch.from_numpy(box_crops(rgb, boxes, cfg.crop, cfg.margin))).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=1500, help="generator scenes to train on")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--jitter", type=float, default=0.15, help="box centre shift, share of its size (sd)")
    parser.add_argument("--sides", type=float, default=0.25, help="log box side change (sd)")
    parser.add_argument("--images", type=int, default=150, help="fresh validation scenes (seed 401)")
    args = parser.parse_args()
    cfg = NamerConfig()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        truth = write_detection_set(Path(tmp), args.images, 401, TRAIN_COMBOS)
        detector = Detector.load("glip-nano", namer=False, size="384,768@0-96,256@64-")
        scenes = load_scenes(truth, Path(tmp) / "images", detector)
        files = {image["id"]: image["file_name"] for image in load_coco(truth)["images"]}
        crops, targets = training_crops(cfg, args.scenes, args.jitter, args.sides)
        net = train(cfg, crops, targets, args.steps)
        print(f"{len(crops)} training crops, {args.steps} steps ({time.monotonic() - started:.0f} s)")
        before, after = [], []
        for scene in scenes:
            keep = scene.detections.confidence > 0.3
            if not keep.any() or not len(scene.gt_xyxy):
                continue
            boxes = scene.detections.xyxy[keep].astype(np.float64)
            rgb = load_image(Path(tmp) / "images" / files[scene.image_id])
            first = pairwise_iou(boxes, scene.gt_xyxy).max(1)
            second = pairwise_iou(refined(net, cfg, rgb, boxes), scene.gt_xyxy).max(1)
            near = first > 0.3
            before.append(first[near])
            after.append(second[near])
    b, a = np.concatenate(before), np.concatenate(after)
    print(f"{len(b)} boxes (GLIP > 0.3, IoU > 0.3 with an object): mean IoU {b.mean():.3f} -> {a.mean():.3f}")
    for low, high in ((0.3, 0.5), (0.5, 0.7), (0.7, 0.85), (0.85, 1.01)):
        m = (b >= low) & (b < high)
        print(
            f"  IoU {low}-{min(high, 1)}: {m.sum()} boxes, {b[m].mean():.3f} -> {a[m].mean():.3f}"
            f" (>= 0.5: {(b[m] >= 0.5).mean():.2f} -> {(a[m] >= 0.5).mean():.2f})"
        )
    cross = refined(net, cfg, load_image(README_IMAGE), README_LOOSE)
    loose, moved = pairwise_iou(README_LOOSE, README_CROSS)[0, 0], pairwise_iou(cross, README_CROSS)[0, 0]
    print(f"README cross: loose box IoU {loose:.2f} -> {moved:.2f}")


if __name__ == "__main__":
    main()
