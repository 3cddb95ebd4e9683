"""Shapes as another program would draw them, for checking glip-nano beyond its own renderer.

Nothing here comes from glipcli.train: PIL's ImageDraw, CSS colour values ("orange" is
255,165,0, "purple" 128,0,128), regular polygons with hard edges, flat fills or outlines, no
clutter, blur or JPEG. Boxes come from the drawn geometry, so the ground truth is independent too.

    python -m tests.drawn_shapes runs/drawn_seen --images 120
    glip eval runs/drawn_seen/annotations.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from glipcli.train.synth import HELD_OUT, TRAIN_COMBOS

Point = tuple[float, float]


def _polygon(corners: int, radius: float, angle: float, inner: float | None = None) -> list[Point]:
    """A regular polygon (or a star: every other vertex at ``inner`` x radius) around (0, 0)."""
    count = corners * (2 if inner else 1)
    return [
        (r * math.cos(angle + 2 * math.pi * i / count), r * math.sin(angle + 2 * math.pi * i / count))
        for i in range(count)
        for r in [radius if inner is None or i % 2 == 0 else radius * inner]
    ]


def outline(shape: str, radius: float, angle: float) -> list[Point]:
    """The shape's outline around (0, 0); ``angle`` is a small tilt (squares stay squares)."""
    if shape == "circle":
        return _polygon(64, radius, 0.0)
    if shape == "square":
        return _polygon(4, radius, math.pi / 4 + 0.2 * angle)
    if shape == "diamond":
        return [(0.75 * x, y) for x, y in _polygon(4, radius, math.pi / 2 + 0.1 * angle)]
    if shape == "triangle":
        return _polygon(3, radius, -math.pi / 2 + angle)
    if shape == "hexagon":
        return _polygon(6, radius, angle)
    if shape == "star":
        return _polygon(5, radius, -math.pi / 2 + angle, inner=0.42)
    if shape == "cross":
        t = radius / 3
        arms = [(-t, -radius), (t, -radius), (t, -t), (radius, -t), (radius, t), (t, t), (t, radius), (-t, radius)]
        arms += [(-t, t), (-radius, t), (-radius, -t), (-t, -t)]
        c, s = math.cos(angle), math.sin(angle)
        return [(x * c - y * s, x * s + y * c) for x, y in arms]
    if shape == "heart":  # the classic parametric heart, 72 points
        t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return [(float(a) * radius / 17, float(b) * radius / 17) for a, b in zip(x, y, strict=True)]
    raise ValueError(f"unknown shape {shape!r}")


def write_drawn_set(
    out: Path, combos: Sequence[tuple[str, str]], images: int, *, seed: int = 0, white_background: bool = False
) -> Path:
    """``images`` PNGs of 1-5 non-overlapping shapes of ``combos`` and their COCO file; returns its path."""
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    coco: dict[str, list] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": f"{c} {s}"} for i, (c, s) in enumerate(combos)],
    }
    for index in range(images):
        w, h = (int(v) for v in rng.integers(320, 560, size=2))
        background = (255, 255, 255) if white_background else tuple(int(v) for v in rng.integers(90, 200, size=3))
        picture = Image.new("RGB", (w, h), background)
        draw = ImageDraw.Draw(picture)
        placed: list[tuple[float, float, float]] = []
        for _ in range(int(rng.integers(1, 6))):
            category = int(rng.integers(len(combos)))
            colour, shape = combos[category]
            if white_background and colour == "white":
                continue
            radius = float(rng.uniform(12, 70))
            for _ in range(40):
                cx, cy = float(rng.uniform(radius + 3, w - radius - 3)), float(rng.uniform(radius + 3, h - radius - 3))
                if all(math.hypot(cx - x, cy - y) > radius + r + 4 for x, y, r in placed):
                    break
            else:
                continue
            placed.append((cx, cy, radius))
            points = [(cx + x, cy + y) for x, y in outline(shape, radius, float(rng.uniform(-0.35, 0.35)))]
            rgb = ImageColor.getrgb(colour)
            hollow, width = rng.random() < 0.3, max(2, int(radius * 0.12))
            if hollow:
                draw.line([*points, points[0]], fill=rgb, width=width, joint="curve")
            else:
                draw.polygon(points, fill=rgb)
            margin = width / 2 if hollow else 0.0
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            x0, y0, x1, y1 = min(xs) - margin, min(ys) - margin, max(xs) + margin, max(ys) + margin
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": index + 1,
                    "category_id": category + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
        name = f"{index:04d}.png"
        picture.save(out / "images" / name)
        coco["images"].append({"id": index + 1, "file_name": name, "width": w, "height": h})
    path = out / "annotations.json"
    path.write_text(json.dumps(coco))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.drawn_shapes", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write images/ and annotations.json into")
    parser.add_argument("--held-out", action="store_true", help="the 8 held-out combinations instead of the 56")
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--white", action="store_true", help="white background (and no white shapes)")
    args = parser.parse_args(argv)
    combos = sorted(HELD_OUT) if args.held_out else TRAIN_COMBOS
    print(write_drawn_set(args.out, combos, args.images, seed=args.seed, white_background=args.white))


if __name__ == "__main__":
    main()
