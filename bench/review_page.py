"""How long the review page of a big labelled folder takes to write and to open in Chromium.

    python -m bench.review_page --images 2000 --out bench/.cache/review

Scenes come from glipcli.train.synth (a few rendered, then copied under new names, so the folder
is big without rendering each); the labels are a COCO file of ~10 boxes per image with spread
scores, as glip label writes them. The page's cost does not depend on where the boxes came from.
Opening is measured twice: the page's own time from navigation to the first page of cards drawn
(``performance.now()``, stored in ``body[data-render-ms]``), and the wall time of a whole headless
Chromium run (start, load, render, dump the DOM, exit).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np

from glipcli.review import write_review
from glipcli.train.synth import TRAIN_COMBOS, write_detection_set
from tests.handoff import clients


def make_folder(root: Path, n_images: int, rendered: int = 24, seed: int = 5) -> Path:
    """``root/images`` with ``n_images`` scenes and ``root/labels.json`` with boxes and scores for them."""
    combos = list(TRAIN_COMBOS[:8])
    source = json.loads(write_detection_set(root / "source", rendered, seed, combos, file_ext=".jpg").read_text())
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(n_images):
        scene = source["images"][i % rendered]
        name = f"{i // 500:02d}/{i:06d}.jpg"
        (images_dir / name).parent.mkdir(exist_ok=True)
        shutil.copyfile(root / "source" / "images" / scene["file_name"], images_dir / name)
        images.append({"id": i + 1, "file_name": name, "width": scene["width"], "height": scene["height"]})
        for _ in range(int(rng.integers(0, 20))):
            w, h = rng.uniform(16, scene["width"] / 3), rng.uniform(16, scene["height"] / 3)
            x, y = rng.uniform(0, scene["width"] - w), rng.uniform(0, scene["height"] - h)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": int(rng.integers(1, len(combos) + 1)),
                    "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                    "area": round(w * h, 2),
                    "score": round(float(rng.beta(5, 3)), 5),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": " ".join(c), "supercategory": "object"} for i, c in enumerate(combos)]
    info = {
        "description": "bench.review_page",
        "model": "glip-nano",
        "prompt": ". ".join(c["name"] for c in categories),
    }
    labels = root / "labels.json"
    labels.write_text(
        json.dumps({"info": info, "images": images, "annotations": annotations, "categories": categories})
    )
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("bench/.cache/review"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    labels = make_folder(args.out, args.images)
    page = args.out / "review.html"
    start = time.perf_counter()
    summary = write_review(labels, args.out / "images", page)
    written = time.perf_counter() - start
    opens = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        done = clients.run_chromium(page.resolve().as_uri(), "--dump-dom")
        wall = time.perf_counter() - start
        rendered = re.search(r'data-render-ms="(\d+)"', done.stdout)
        cards = done.stdout.count('class="card"')
        assert rendered and cards, "the page did not render"
        opens.append({"render_ms": int(rendered.group(1)), "chromium_wall_s": round(wall, 2), "cards": cards})
    result = {
        "images": summary.images,
        "boxes": summary.boxes,
        "page_mb": round(summary.bytes / 1e6, 1),
        "write_s": round(written, 1),
        "opens": opens,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
