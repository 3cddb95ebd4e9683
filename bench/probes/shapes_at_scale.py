"""Which image-side design learns the 8 shapes at the scale detection shows them, in minutes?

Scenes from the training generator are resized as at inference (short side 384, or another
``short_side``); around each object of at most 48 px there (the ones glip-nano names worst: shape
right for 0.51 under 24 px) a window of 56 px is cut (scaled with the short side; 56 = 2x2 Swin
windows at stride 4, one at stride 8, where glip-nano's one-block stages never shift), its centre
jittered by up to 8 px so that objects fall anywhere on the window and stride grids as in scenes.
glip-nano's Swin (``preset("glip-nano").swin`` with a design's overrides) and a linear classifier
learn the object's shape from the features where detection would read them:

- ``c3_2x2``: the stride-8 map (C3, what FPN's P3 starts from), the 2x2 cells nearest the centre
  (``../shared/probes/swin_native_scale.py``'s readout);
- ``c3_box`` / ``c2_box``: the stride-8 / stride-4 cells whose centres lie in the object's box, averaged;
- ``head``: a detection head in miniature, the project's FPN on C3-C5 (64 channels) and two 3x3
  conv + GroupNorm + ReLU layers (the DyHead's tower without its dynamic parts) on P3, read at the
  cell holding the object's centre, the ATSS positive a small object gets.

Designs are compared on equal budgets of CPU time of the probe's one thread (``time.process_time``,
evaluations excluded), which other work on a shared machine does not shrink; steps/s is per CPU
second, 32 windows a step. Accuracy is on the objects of 600 scenes of another seed; size
bins are the object's longer side at short side 384 (the same objects at every input scale).
Chance is 0.125. ``+`` combines designs: ``--design stem16-32+c3_box``.

    nice -n 15 python -m bench.probes.shapes_at_scale --budget 60 --design stock --design stem16-32

Measured 2026-12-02, 60 CPU-seconds each (about 19,000 windows; docs/glip-nano.md, "Shapes at
detection scale, probed", has the table with bench.probes.step_cost's whole-model costs), shape
right overall / under 24 px: stock 0.212 / 0.17 (seed 1: 0.217 / 0.17); stem16-32 0.247 / 0.21
(seed 1: 0.256 / 0.23); stem8-16 0.244 / 0.20; depth2-2 0.163 / 0.16; embed48 0.159 / 0.18;
side512 0.148 / 0.14; c3_box 0.164 / 0.16; c2_box 0.149 / 0.15; head 0.131 / 0.13; lr3e-3 0.173 /
0.14; lr3e-4 0.182 / 0.18. At 120 CPU-seconds (--seed 2 --evals 4): stock 0.263 / 0.23, stem16-32
0.339 / 0.31, stem8-16 0.364 / 0.26, c3_box 0.277 / 0.23, head 0.197 / 0.19, side512 0.175 / 0.17,
depth2-2 0.170 / 0.16. Only the conv stems beat the patch embedding at equal time.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glipcli.config import SwinConfig
from glipcli.model.fpn import FPN
from glipcli.model.swin import SwinTransformer
from glipcli.presets import preset
from glipcli.train.synth import SHAPES, TRAIN_COMBOS, render_scene

WINDOW = 56  # px at short side 384: an object of up to MAX_OBJECT px and some of what surrounds it
MAX_OBJECT = 48
BATCH = 32
SIZE_BINS = ((0, 24), (24, 48))
READOUTS = ("c3_2x2", "c3_box", "c2_box", "head")


@dataclasses.dataclass(frozen=True)
class Design:
    swin: tuple[tuple[str, object], ...] = ()  # SwinConfig fields replaced in glip-nano's
    short_side: int = 384
    readout: str = "c3_2x2"
    lr: float = 1e-3

    def swin_config(self) -> SwinConfig:
        return dataclasses.replace(preset("glip-nano").swin, **dict(self.swin))


DESIGNS: dict[str, dict] = {
    "stock": {},
    "stem16-32": {"swin": {"stem_channels": (16, 32)}},  # the stem the 10,000-step retrain used
    "stem8-16": {"swin": {"stem_channels": (8, 16)}},  # the lightest stem the option allows
    "depth2-2": {"swin": {"depths": (2, 2, 2, 1)}},  # a shifted block in stages 1 and 2
    "embed48": {"swin": {"embed_dim": 48}},
    "side512": {"short_side": 512},  # objects 1.33x bigger on the input
    "c3_box": {"readout": "c3_box"},
    "c2_box": {"readout": "c2_box"},
    "head": {"readout": "head"},
    "lr3e-3": {"lr": 3e-3},
    "lr3e-4": {"lr": 3e-4},
}


def design(spec: str) -> Design:
    """'stem16-32+c3_box' -> the merged Design (later parts win; SwinConfig overrides merge)."""
    swin: dict = {}
    fields: dict = {}
    for part in spec.split("+"):
        if part not in DESIGNS:
            raise SystemExit(f"unknown design {part!r}: {', '.join(DESIGNS)}")
        for key, value in DESIGNS[part].items():
            if key == "swin":
                swin.update(value)
            else:
                fields[key] = value
    return Design(swin=tuple(sorted(swin.items())), **fields)


@dataclasses.dataclass
class Windows:
    images: np.ndarray  # (N, S, S, 3) uint8 RGB
    boxes: np.ndarray  # (N, 4) float32 xyxy in window pixels
    shapes: np.ndarray  # (N,) int64 index into SHAPES
    size384: np.ndarray  # (N,) the object's longer side at short side 384


def cut_windows(seed: int, scenes: int, short_side: int, jitter: int = 8) -> Windows:
    """One window per object of at most MAX_OBJECT px (at 384) of ``scenes`` scenes, cached under /tmp."""
    cache = Path("/tmp/glip-shape-probe") / f"{seed}-{scenes}-{short_side}-{jitter}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return Windows(**{k: z[k] for k in z.files})
    rng = np.random.default_rng(seed)
    side = WINDOW * short_side // 384 // 8 * 8
    jit = jitter * short_side // 384
    images, boxes, shapes, sizes = [], [], [], []
    for _ in range(scenes):
        scene = render_scene(rng, TRAIN_COMBOS)
        h, w = scene.image.shape[:2]
        k = short_side / min(h, w)
        img = cv2.resize(scene.image, (round(w * k), round(h * k)), interpolation=cv2.INTER_LINEAR)
        pad = cv2.copyMakeBorder(img, side, side, side, side, cv2.BORDER_REFLECT)
        for box, shape in zip(scene.boxes * k, scene.shapes):
            size = max(box[2] - box[0], box[3] - box[1]) * 384 / short_side
            if size > MAX_OBJECT:
                continue
            cx, cy = (box[:2] + box[2:]) / 2 + rng.integers(-jit, jit + 1, 2)
            x0, y0 = int(cx) - side // 2, int(cy) - side // 2
            images.append(pad[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side])
            boxes.append(np.clip(box - [x0, y0, x0, y0], 0, side))
            shapes.append(SHAPES.index(shape))
            sizes.append(size)
    out = Windows(np.stack(images), np.array(boxes, np.float32), np.array(shapes), np.array(sizes, np.float32))
    cache.parent.mkdir(exist_ok=True)
    np.savez(cache, **dataclasses.asdict(out))
    return out


def cell_weights(boxes: Tensor, stride: int, grid: int, mode: str) -> Tensor:
    """(B, grid, grid) weights summing to 1 over the cells a readout averages."""
    centres = (torch.arange(grid, dtype=torch.float32) + 0.5) * stride
    mid = (boxes[:, :2] + boxes[:, 2:]) / 2  # (B, 2) x, y
    if mode == "2x2":  # the two cells on each axis whose centres are nearest the object's centre
        first = (mid / stride - 0.5).floor().clamp(0, grid - 2)
        idx = torch.arange(grid)
        near = (idx[None, None] >= first[..., None]) & (idx[None, None] <= first[..., None] + 1)
    else:
        own = (mid / stride).floor().clamp(0, grid - 1)
        near = torch.arange(grid)[None, None] == own[..., None]  # the cell holding the centre
        if mode == "box":
            lo, hi = boxes[:, :2], boxes[:, 2:]
            near = near | ((centres[None, None] >= lo[..., None]) & (centres[None, None] <= hi[..., None]))
    w = (near[:, 1, :, None] & near[:, 0, None, :]).float()  # y rows, x columns
    return w / w.sum((1, 2), keepdim=True)


class ShapeProbe(nn.Module):
    def __init__(self, d: Design) -> None:
        super().__init__()
        cfg = d.swin_config()
        self.readout = d.readout
        self.swin = SwinTransformer(cfg)
        pixels = preset("glip-nano").input
        self.register_buffer("mean", torch.tensor(pixels.pixel_mean).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(pixels.pixel_std).reshape(1, 3, 1, 1))
        if d.readout == "head":
            self.fpn = FPN(cfg.out_channels[1:], 64)
            self.tower = nn.Sequential(
                *[m for _ in range(2) for m in (nn.Conv2d(64, 64, 3, padding=1), nn.GroupNorm(16, 64), nn.ReLU())]
            )
            width = 64
        else:
            width = cfg.out_channels[0 if d.readout == "c2_box" else 1]
        self.fc = nn.Linear(width, len(SHAPES))

    def forward(self, images: Tensor, boxes: Tensor) -> Tensor:
        """images (B, S, S, 3) uint8 RGB, boxes (B, 4) in window pixels -> shape logits."""
        x = images.permute(0, 3, 1, 2).flip(1).float()  # BGR 0-255, as the model's preprocessing
        feats = self.swin((x - self.mean) / self.std)
        if self.readout == "head":
            fmap, stride, mode = self.tower(self.fpn(feats[1:])[0]), 8, "centre"
        elif self.readout == "c2_box":
            fmap, stride, mode = feats[0], 4, "box"
        else:
            fmap, stride, mode = feats[1], 8, self.readout[3:]
        w = cell_weights(boxes, stride, fmap.shape[-1], mode)
        return self.fc(torch.einsum("bchw,bhw->bc", fmap, w))


def accuracy(model: ShapeProbe, test: Windows) -> tuple[float, list[float]]:
    model.eval()
    with torch.no_grad():
        pred = torch.cat(
            [
                model(torch.from_numpy(test.images[i : i + 256]), torch.from_numpy(test.boxes[i : i + 256])).argmax(1)
                for i in range(0, len(test.shapes), 256)
            ]
        ).numpy()
    model.train()
    right = pred == test.shapes
    by_size = [float(right[(test.size384 >= lo) & (test.size384 < hi)].mean()) for lo, hi in SIZE_BINS]
    return float(right.mean()), by_size


def run(name: str, d: Design, budget: float, train_scenes: int, evals: int, seed: int = 0) -> dict:
    train = cut_windows(0, train_scenes, d.short_side)
    test = cut_windows(1, 600, d.short_side)
    torch.manual_seed(seed)  # the initialisation and the order of batches; the windows stay
    rng = np.random.default_rng(seed)
    model = ShapeProbe(d)
    opt = torch.optim.AdamW(model.parameters(), d.lr, weight_decay=0.05)
    side = train.images.shape[1]
    curve, step, spent = [], 0, 0.0
    while spent < budget:
        started = time.process_time()
        idx = rng.integers(0, len(train.shapes), BATCH)
        images, boxes = torch.from_numpy(train.images[idx]), torch.from_numpy(train.boxes[idx])
        if step % 2:  # mirror every other batch, boxes with it
            images = images.flip(2)
            boxes = torch.stack([side - boxes[:, 2], boxes[:, 1], side - boxes[:, 0], boxes[:, 3]], 1)
        loss = F.cross_entropy(model(images, boxes), torch.from_numpy(train.shapes[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        spent += time.process_time() - started
        if len(curve) < evals - 1 and spent >= budget * (len(curve) + 1) / evals:
            curve.append(accuracy(model, test)[0])
    acc, by_size = accuracy(model, test)
    result = {"design": name, "steps": step, "steps_per_s": step / spent, "acc": acc, "by_size": by_size}
    result["curve"] = curve
    print(
        f"{name}: {step} steps ({step / spent:.2f}/s, {step * BATCH // 1000}k windows) in {spent:.0f} CPU-s; "
        f"curve {' '.join(f'{a:.2f}' for a in curve)}; acc {acc:.3f}; by size "
        + " ".join(f"{lo}-{hi}px:{a:.2f}" for (lo, hi), a in zip(SIZE_BINS, by_size)),
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=60, help="CPU seconds of training per design")
    parser.add_argument("--design", action="append", help=f"one of {', '.join(DESIGNS)}, or a+b; repeatable")
    parser.add_argument("--train-scenes", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order (not the data)")
    parser.add_argument("--evals", type=int, default=3, help="accuracy checks along the budget")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    specs = args.design or ["stock"]
    results = [run(s, design(s), args.budget, args.train_scenes, args.evals, args.seed) for s in specs]
    print("\n| design | steps/s | shape acc | under 24 px |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['design']} | {r['steps_per_s']:.2f} | {r['acc']:.3f} | {r['by_size'][0]:.2f} |")


if __name__ == "__main__":
    main()
