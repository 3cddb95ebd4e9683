"""Large vocabularies: glipcli's chunk sharing against rerunning every graph per chunk per image.

A 1,203-class prompt (LVIS's size) does not fit one text-encoder input, so it is split into
chunks. The official evaluation runs text encoder, backbone and head for every chunk of every
image. glipcli (``Detector.detect_many``) runs the backbone once per image and the text encoder
once per chunk for the whole folder (cached); only the head runs per chunk per image. Both
paths here run the same sessions and post-processing and must give identical detections.

With per-call times t_text, t_backbone, t_head, t_post, C chunks and N images the ratio is

    C (t_text + t_backbone + t_head + t_post) / (t_backbone + C (t_head + t_post) + C t_text / N)

which tends to 1 + (t_text + t_backbone) / (t_head + t_post): the head, run per chunk per image
by both paths, bounds it. The class names are synthetic (English words from the BERT
vocabulary, 1-3 words each, about as many tokens as LVIS names): no dataset is needed offline.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from glipcli.api import Detector
from glipcli.postprocess import RawDetections, level_sizes, merge_chunks, postprocess, rescale_boxes
from glipcli.preprocess import prepare_image
from glipcli.prompt import read_prompt_file
from glipcli.runtime.bundle import load_bundle
from glipcli.runtime.engine import Engine
from glipcli.runtime.sessions import make_session
from glipcli.tokenizer import load_tokenizer

LVIS_CLASSES = 1203
WORDS_PER_NAME = (1, 2, 3)
WORDS_WEIGHTS = (0.6, 0.3, 0.1)


def vocabulary(tokenizer_vocab: list[str], count: int = LVIS_CLASSES, seed: int = 0) -> list[str]:
    """``count`` distinct class names of 1-3 whole English words drawn from a tokenizer vocabulary."""
    words = sorted(w for w in tokenizer_vocab if w.isascii() and w.isalpha() and len(w) >= 3)
    rng = np.random.default_rng(seed)
    names: dict[str, None] = {}
    while len(names) < count:
        n = int(rng.choice(WORDS_PER_NAME, p=WORDS_WEIGHTS))
        names[" ".join(rng.choice(words, size=n, replace=False))] = None
    return list(names)


def write_prompt_file(path: Path, names: list[str]) -> Path:
    path.write_text("# synthetic large vocabulary for bench.vocab\n" + "\n".join(names) + "\n", encoding="utf-8")
    return path


def folder_images(count: int, height: int = 480, width: int = 640) -> list[np.ndarray]:
    """Decoded RGB images of structured synthetic scenes (decoding costs the same on both paths)."""
    from glipcli.export.verify import sample_image

    return [sample_image(height, width, seed=i) for i in range(count)]


class Rerun:
    """The official strategy on glipcli's sessions: all three graphs per chunk per image."""

    def __init__(self, detector: Detector, text_session: Any) -> None:
        self.detector = detector
        self.text = text_session
        self.seconds = {"text": 0.0, "backbone": 0.0, "head": 0.0, "post": 0.0}
        self.calls = 0

    def detect(self, rgb: np.ndarray, chunks: tuple, limit: int) -> RawDetections:
        engine, cfg = self.detector.engine, self.detector.config
        post = dataclasses.replace(cfg.postprocess, detections_per_img=limit)
        image = prepare_image(rgb, cfg.input)
        tensor = image.tensor[None]
        level_hw = level_sizes(tensor.shape[-2:], cfg.anchors.strides)
        parts = []
        for chunk in chunks:
            ticks = [time.perf_counter()]
            feed = {"input_ids": chunk.input_ids[None], "attention_mask": chunk.attention_mask[None]}
            (text,) = self.text.run(None, feed)
            ticks.append(time.perf_counter())
            levels = engine.backbone(tensor)
            ticks.append(time.perf_counter())
            out = engine.head(levels, text, chunk.attention_mask[None])
            ticks.append(time.perf_counter())
            boxes, centerness, logits = out.boxes[0], out.centerness[0], out.token_logits[0]
            parts.append(
                postprocess(
                    boxes, centerness, logits, level_hw, chunk.positive_map, image.resized_hw, post, chunk.token_words
                )
            )
            ticks.append(time.perf_counter())
            for key, start, end in zip(self.seconds, ticks, ticks[1:]):
                self.seconds[key] += end - start
            self.calls += 1
        merged = merge_chunks(parts, limit)
        boxes = rescale_boxes(merged.boxes, image.resized_hw, image.original_hw)
        return RawDetections(boxes, merged.scores, merged.labels)


def compare(
    bundle_dir: Path,
    name: str,
    images: int,
    repeats: int,
    threads: int,
    classes: int = LVIS_CLASSES,
    log: Callable[[str], None] = common.log,
) -> dict[str, Any]:
    """Seconds for a folder with a ``classes``-class prompt file, both strategies interleaved."""
    import tempfile

    bundle = load_bundle(bundle_dir, verify_hashes=False)
    tokenizer = load_tokenizer(bundle.tokenizer_path)
    detector = Detector(Engine(bundle, device="cpu", threads=threads), tokenizer)
    rerun = Rerun(detector, make_session(bundle.graph_path("text"), "cpu", threads))
    with tempfile.TemporaryDirectory(prefix="glip-vocab-") as tmp:
        prompt_file = write_prompt_file(Path(tmp) / "vocabulary.txt", vocabulary(_vocab(tokenizer), classes))
        prepared = detector.prepare_prompt(read_prompt_file(prompt_file))
    rgbs = folder_images(images)
    limit = detector.config.postprocess.detections_per_img
    chunks = len(prepared.chunks)
    log(f"vocab: {classes} classes -> {chunks} chunks; {images} images; {repeats} interleaved rounds")

    results: dict[str, list] = {"chunked": [], "rerun": []}
    runs: dict[str, int] = {}

    def chunked() -> dict[str, float]:
        _forget_text(detector)  # every round labels the folder from scratch, as a new `glip label` would
        before = dict(detector.engine.runs)
        seconds, dets = common.timed(lambda: list(detector.detect_many(rgbs, prepared, threshold=0.0, all_labels=True)))
        runs.update({g: detector.engine.runs[g] - before[g] for g in before})
        results["chunked"] = [d for _, d in dets]
        return {"folder": seconds}

    def rerun_all() -> dict[str, float]:
        seconds, dets = common.timed(lambda: [rerun.detect(rgb, prepared.chunks, limit) for rgb in rgbs])
        results["rerun"] = dets
        return {"folder": seconds}

    detector(rgbs[0], "warm up", threshold=0.0)  # first runs allocate; not part of either path
    timings = common.interleave({"chunked": chunked, "rerun": rerun_all}, repeats, warmup=0)
    per_call = {k: v / max(rerun.calls, 1) for k, v in rerun.seconds.items()}
    measured = common.ratio(timings["rerun"]["total_ms"], timings["chunked"]["total_ms"])
    return {
        "model": name,
        "classes": classes,
        "chunks": chunks,
        "images": images,
        "image_hw": list(rgbs[0].shape[:2]),
        "threads": threads,
        "timings": timings,
        "images_per_s": {k: round(images / (timings[k]["total_ms"] / 1000), 3) for k in ("chunked", "rerun")},
        "speedup": measured,
        "graph_runs_per_folder": {"chunked": runs, "rerun": {g: chunks * images for g in ("text", "backbone", "head")}},
        "ms_per_call": {k: round(v * 1000, 2) for k, v in per_call.items()},
        "predicted_speedup": round(predicted_speedup(per_call, chunks, images), 3),
        "bound_many_chunks_and_images": round(speedup_bound(per_call), 3),
        "identical_detections": _same(results["chunked"], results["rerun"]),
    }


def predicted_speedup(per_call: dict[str, float], chunks: int, images: int) -> float:
    """The ratio the per-call times predict for ``chunks`` chunks over ``images`` images."""
    t, b, h, p = (per_call[k] for k in ("text", "backbone", "head", "post"))
    return chunks * (t + b + h + p) / (b + chunks * (h + p) + chunks * t / images)


def speedup_bound(per_call: dict[str, float]) -> float:
    """The limit for many chunks and many images: the head and post-processing run on both paths."""
    t, b, h, p = (per_call[k] for k in ("text", "backbone", "head", "post"))
    return 1 + (t + b) / (h + p)


def _forget_text(detector: Detector) -> None:
    detector.engine._text_cache.clear()  # type: ignore[attr-defined]


def _vocab(tokenizer: Any) -> list[str]:
    return list(tokenizer.get_vocab())


def _same(chunked: list, rerun: list[RawDetections]) -> bool:
    """Both strategies run identical graph calls on identical inputs: detections must match."""
    if len(chunked) != len(rerun):
        return False
    for det, raw in zip(chunked, rerun, strict=True):
        if len(det) != len(raw) or not np.array_equal(det.data["label_id"], raw.labels):
            return False
        if not np.allclose(det.xyxy, raw.boxes, atol=1e-3) or not np.allclose(det.confidence, raw.scores, atol=1e-6):
            return False
    return True


def print_result(result: dict[str, Any]) -> None:
    t = result["timings"]
    runs = result["graph_runs_per_folder"]
    rows = [
        [
            label,
            t[label]["total_ms"] / 1000,
            result["images_per_s"].get(label, 0.0),
            runs[label]["text"],
            runs[label]["backbone"],
            runs[label]["head"],
        ]
        for label in ("chunked", "rerun")
    ]
    common.print_table(
        f"{result['model']}: {result['classes']} classes in {result['chunks']} chunks, {result['images']} images",
        ["", "s / folder", "images/s", "text runs", "backbone runs", "head runs"],
        rows,
    )
    common.print_table(
        "chunk sharing",
        ["", "value"],
        [
            ["speedup measured", result["speedup"]],
            ["speedup predicted from per-call times", result["predicted_speedup"]],
            ["bound (many chunks, many images)", result["bound_many_chunks_and_images"]],
            ["identical detections", str(result["identical_detections"])],
            *[[f"ms per {k} call", v] for k, v in result["ms_per_call"].items()],
        ],
    )
