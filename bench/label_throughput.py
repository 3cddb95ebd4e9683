"""How close ``glip label`` comes to the model's own speed: end-to-end vs model-only images/s.

On one folder, in one run:

- end-to-end: :func:`glipcli.labelling.folder.label_folder` as ``glip label`` runs it (listing, decoding and
  preprocessing in worker threads, backbone, head, post-processing, journal appends with batched
  fsync, the final COCO file);
- model-only: ``engine.backbone`` + ``engine.head`` (per prompt chunk) on tensors decoded and
  preprocessed beforehand, text features cached: the ceiling for the pipeline.

The ratio is the share of the model's speed the pipeline keeps (goal: >= 0.9): the median over
rounds of each round's ratio, its two runs back to back, so that the machine's slower and faster
phases (tens of seconds on this shared host: one run's ratio of medians read 1.38) cancel within a
round instead of landing on one side. Runs alternate; ``python -m bench --quick`` runs this on glip-nano and the reduced
reference model. Without ``--model`` a randomly initialised bundle of ``--config``
(default glip-nano) is exported on the fly, which needs torch; random weights give few boxes, so
post-processing costs less than with a trained model.

    python -m bench.label_throughput --quick
    python -m bench.label_throughput --model exported/glip-t --images 64 --workers 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from glipcli.api import Detector
from glipcli.io.folder import list_images
from glipcli.io.images import load_image
from glipcli.labelling.folder import label_folder
from glipcli.train.synth import write_detection_set

COMBOS = [("red", "circle"), ("blue", "square"), ("yellow", "triangle"), ("green", "star")]


def random_bundle(config: str, out: Path) -> Path:
    """A bundle of ``config`` with random weights (torch is imported only here)."""
    from glipcli.export.exporter import export_bundle
    from glipcli.model.glip import build_model
    from glipcli.presets import preset

    model = build_model(preset(config)).eval()
    source = {"checkpoint": f"random {config}", "sha256": "0" * 64}
    return export_bundle(model, out / config, name=f"{config}-random", source=source).path


def end_to_end(detector: Detector, folder: Path, prompt: str, out: Path, workers: int) -> float:
    """Seconds of one ``label_folder`` run, final file included."""
    start = time.perf_counter()
    label_folder(folder, prompt, out, detector=detector, workers=workers)
    seconds = time.perf_counter() - start
    out.unlink()
    return seconds


def model_only(detector: Detector, tensors: list, prompt: str) -> float:
    """Seconds of backbone + head over pre-processed tensors, text features cached."""
    engine = detector.engine
    chunks = detector.prepare_prompt(prompt).chunks
    features = [(engine.encode_text(chunk)[None], chunk.attention_mask[None]) for chunk in chunks]
    start = time.perf_counter()
    for tensor in tensors:
        levels = engine.backbone(tensor[None])
        for text, mask in features:
            engine.head(levels, text, mask)
    return time.perf_counter() - start


def measure(
    model: str | Path, images: int, repeats: int, workers: int = 2, threads: int | None = None, device: str = "auto"
) -> dict:
    """End-to-end and model-only images/s of ``model`` on a generated folder, runs alternating."""
    with tempfile.TemporaryDirectory(prefix="glip-bench-") as tmp:
        work = Path(tmp)
        detector = Detector.load(model, device=device, threads=threads)
        write_detection_set(work / "set", images, seed=0, combos=COMBOS, file_ext=".jpg")
        folder = work / "set" / "images"
        prompt = ". ".join(f"{colour} {shape}" for colour, shape in COMBOS)
        paths = list_images(folder).images
        tensors = [detector.prepare(load_image(p)).tensor for p in paths]
        model_only(detector, tensors[:1], prompt)  # warm-up: first runs allocate

        e2e, bare = [], []
        for r in range(repeats):
            pair = [(e2e, lambda: end_to_end(detector, folder, prompt, work / "labels.json", workers))]
            pair.append((bare, lambda: model_only(detector, tensors, prompt)))
            for times, step in pair if r % 2 == 0 else reversed(pair):
                times.append(step())
    n = len(paths)
    e2e_rate, bare_rate = n / statistics.median(e2e), n / statistics.median(bare)
    per_round = [model_s / pipeline_s for pipeline_s, model_s in zip(e2e, bare, strict=True)]
    return {
        "model": detector.bundle.name,
        "device": device,
        "threads": threads,
        "images": n,
        "input_hw_max": [max(t.shape[1] for t in tensors), max(t.shape[2] for t in tensors)],
        "workers": workers,
        "repeats": repeats,
        "end_to_end_images_per_s": round(e2e_rate, 2),
        "model_only_images_per_s": round(bare_rate, 2),
        "ratio": round(statistics.median(per_round), 3),
        "ratio_per_round": [round(r, 3) for r in per_round],
        "goal": "ratio >= 0.9",
    }


def print_result(result: dict) -> None:
    height, width = result["input_hw_max"]
    print(f"model      {result['model']} (device {result['device']}, threads {result['threads'] or 'default'})")
    workers = result["workers"]
    print(f"folder     {result['images']} JPEG images, model inputs up to {height}x{width}, workers {workers}")
    print(f"end-to-end {result['end_to_end_images_per_s']:8.2f} images/s   (glip label, median of {result['repeats']})")
    print(f"model-only {result['model_only_images_per_s']:8.2f} images/s   (backbone + head on pre-processed tensors)")
    rounds = ", ".join(f"{r:.2f}" for r in result["ratio_per_round"])
    print(f"ratio      {result['ratio']:8.2f}          (goal >= 0.9; median of the rounds' {rounds})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="bundle path or name; default: a random --config bundle exported now")
    parser.add_argument("--config", default="glip-nano", help="preset for the random bundle (default glip-nano)")
    parser.add_argument("--images", type=int, default=48, help="images in the generated folder (default 48)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each measure (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads of glip label (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per graph")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or tensorrt")
    parser.add_argument("--quick", action="store_true", help="12 images, 1 repeat: well under a minute")
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats = 12, 1
    with tempfile.TemporaryDirectory(prefix="glip-bench-") as tmp:
        model = args.model or random_bundle(args.config, Path(tmp))
        print_result(measure(model, args.images, args.repeats, args.workers, args.threads, args.device))


if __name__ == "__main__":
    main()
