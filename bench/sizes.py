"""Speed of one model at several ``--size`` values: milliseconds per image (preprocessing, backbone,
head, post-processing), sizes interleaved round by round in one process, ratios to the model's own
size. Accuracy at the same sizes comes from ``glip eval --size`` (docs/speed.md).

    python -m bench.sizes --model exported/glip-nano --sizes 384,768@0-96 384:768 448 320 256 192
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.label_throughput import COMBOS
from glipcli.api import Detector
from glipcli.io.folder import list_images
from glipcli.io.images import load_image
from glipcli.tokenizer import load_tokenizer
from glipcli.train.synth import write_detection_set


def measure(model: str | Path, sizes: list[str], images: int = 4, repeats: int = 3, threads: int | None = None) -> dict:
    """Median ms per image at each size; the first size is the reference of the ratios."""
    base = Detector.load(model, device="cpu", threads=threads)
    tokenizer = load_tokenizer(base.bundle.tokenizer_path)
    detectors = {size: Detector(base.engine, tokenizer, size) for size in sizes}  # one set of sessions
    prompt = ". ".join(f"{colour} {shape}" for colour, shape in COMBOS)
    with tempfile.TemporaryDirectory(prefix="glip-sizes-") as tmp:
        write_detection_set(Path(tmp), images, seed=0, combos=COMBOS, file_ext=".jpg")
        rgbs = [load_image(p) for p in list_images(Path(tmp) / "images").images]

    def step(detector: Detector) -> common.Step:
        def run() -> dict[str, float]:
            start = time.perf_counter()
            for _ in detector.detect_arrays(rgbs, prompt, threshold=0.0, all_labels=True):
                pass
            return {"per_image": (time.perf_counter() - start) / len(rgbs)}

        return run

    timings = common.interleave({size: step(d) for size, d in detectors.items()}, repeats)
    reference = timings[sizes[0]]["total_ms"]
    rows = {
        detector.size: {
            "ms_per_image": timings[size]["total_ms"],
            "speedup_vs_first": common.ratio(reference, timings[size]["total_ms"]),
        }
        for size, detector in detectors.items()
    }
    return {"model": base.bundle.name, "images": len(rgbs), "repeats": repeats, "threads": threads, "sizes": rows}


def print_result(result: dict[str, Any]) -> None:
    rows = [[size, v["ms_per_image"], v["speedup_vs_first"]] for size, v in result["sizes"].items()]
    common.print_table(
        f"{result['model']}: ms per image by --size ({result['images']} images, median of {result['repeats']})",
        ["size", "ms / image", "speed vs first"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="glip-nano", help="bundle name or path (default glip-nano)")
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["384:768", "448", "320", "256"],
        help="sizes as --size takes them, space-separated (a multi-scale one holds commas), first = 1x",
    )
    parser.add_argument("--images", type=int, default=4, help="generated images (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per graph")
    args = parser.parse_args()
    print_result(measure(args.model, args.sizes, args.images, args.repeats, args.threads))


if __name__ == "__main__":
    main()
