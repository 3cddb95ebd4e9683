"""Precision on CPU: fp32 against int8 (and fp16 where ONNX Runtime's CPU provider runs it).

- speed: the three graphs of each precision, interleaved, on the reference image and prompt;
- drift: the 50 strongest fp32 detections of the reference image, each matched to the nearest
  detection of the same label at the other precision (box pixels, score), as the export tests
  state their bounds; plus the largest raw output differences;
- accuracy: COCO mAP of glip-nano in fp32 and int8 on a labelled folder, when given.

The int8 bundle is made from the fp32 bundle by the exporter's own quantisation step
(``glipcli.export.int8.to_int8``, dynamic quantisation of MatMul/Gemm weights), so any fp32
bundle, glip-nano's included, gets an int8 twin in seconds and without PyTorch.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from glipcli.api import Detector
from glipcli.digests import sha256_file
from glipcli.errors import BundleError
from glipcli.io.images import load_image
from glipcli.preprocess import prepare_image
from glipcli.runtime.bundle import GRAPHS, MANIFEST, load_bundle
from glipcli.runtime.engine import Engine
from glipcli.tokenizer import load_tokenizer

REFERENCE_PROMPT = "red circle. blue rectangle. yellow triangle"
STRONGEST = 50


def int8_twin(fp32_dir: Path, out: Path) -> Path:
    """``out``: the bundle of ``fp32_dir`` with int8 graphs (reused while the fp32 bundle is unchanged:
    its graphs and its manifest, whose config says how detections are scored)."""
    from glipcli.export.int8 import to_int8

    manifest = json.loads((fp32_dir / MANIFEST).read_text())
    origin = {g: manifest["graphs"][g]["sha256"] for g in GRAPHS} | {MANIFEST: sha256_file(fp32_dir / MANIFEST)}
    try:
        if json.loads((out / MANIFEST).read_text()).get("quantized_from") == origin:
            return out
    except (OSError, ValueError):
        pass
    work = out.with_name(f".{out.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(fp32_dir, work, ignore=shutil.ignore_patterns("*.onnx"))
    logging.disable(logging.WARNING)  # onnxruntime.quantization's "consider pre-processing" advice, per graph
    try:
        for graph in GRAPHS:
            to_int8(fp32_dir / manifest["graphs"][graph]["file"], work / manifest["graphs"][graph]["file"])
    finally:
        logging.disable(logging.NOTSET)
    for graph in GRAPHS:
        target = work / manifest["graphs"][graph]["file"]
        manifest["graphs"][graph].update(sha256=sha256_file(target), bytes=target.stat().st_size)
    manifest.update(precision="int8", quantized_from=origin, name=f"{manifest['name']}-int8")
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    return out


def detectors(bundles: Mapping[str, Path], threads: int) -> tuple[dict[str, Detector], dict[str, Any]]:
    """A CPU detector per precision, and why a bundle could not get one (fp16 kernels missing)."""
    found, refused = {}, {}
    for label, path in bundles.items():
        bundle = load_bundle(path, verify_hashes=False)
        try:
            engine = Engine(bundle, device="cpu", threads=threads)
        except BundleError as exc:
            refused[label] = {"runs_on_cpu": False, "reason": str(exc)}
            continue
        found[label] = Detector(engine, load_tokenizer(bundle.tokenizer_path))
    return found, refused


def speed(found: Mapping[str, Detector], image: np.ndarray, repeats: int) -> dict[str, Any]:
    """Interleaved backbone and head timings of each precision on one image (text features cached)."""

    def step(detector: Detector) -> common.Step:
        engine = detector.engine
        chunk = detector.prepare_prompt(REFERENCE_PROMPT).chunks[0]
        text, mask = engine.encode_text(chunk)[None], chunk.attention_mask[None]
        tensor = prepare_image(image, detector.config.input).tensor[None]

        def run() -> dict[str, float]:
            s_backbone, levels = common.timed(lambda: engine.backbone(tensor))
            s_head, _ = common.timed(lambda: engine.head(levels, text, mask))
            return {"backbone": s_backbone, "head": s_head}

        return run

    timings = common.interleave({label: step(d) for label, d in found.items()}, repeats)
    base = timings["fp32"]
    return {
        "timings": timings,
        "speedup_vs_fp32": {
            label: {g: common.ratio(base["ms"][g], t["ms"][g]) for g in ("backbone", "head")}
            | {"per_image": common.ratio(base["total_ms"], t["total_ms"])}
            for label, t in timings.items()
        },
        "bytes": {label: _bundle_bytes(d.bundle.path) for label, d in found.items()},
    }


def drift(reference: Any, other: Any) -> dict[str, float]:
    """Box (px) and score drift of the strongest ``reference`` detections against ``other``'s.

    Each of the ``STRONGEST`` highest-scoring reference detections is matched to the detection
    of the same label in ``other`` nearest by largest coordinate difference; a reference
    detection whose label ``other`` never reports counts as unmatched.
    """
    box, score, unmatched = [], [], 0
    for xyxy, label, conf in zip(
        reference.xyxy[:STRONGEST], reference.data["label_id"][:STRONGEST], reference.confidence[:STRONGEST]
    ):
        same = other.data["label_id"] == label
        if not same.any():
            unmatched += 1
            continue
        distance = np.abs(other.xyxy[same] - xyxy).max(axis=1)
        i = int(distance.argmin())
        box.append(float(distance[i]))
        score.append(abs(float(other.confidence[same][i]) - float(conf)))
    if not box:
        return {"matched": 0, "unmatched": unmatched}
    return {
        "matched": len(box),
        "unmatched": unmatched,
        "box_px_median": round(float(np.median(box)), 4),
        "box_px_p90": round(float(np.percentile(box, 90)), 4),
        "box_px_max": round(max(box), 4),
        "score_median": round(float(np.median(score)), 5),
        "score_max": round(max(score), 5),
    }


def detections_drift(found: Mapping[str, Detector], image: np.ndarray) -> dict[str, Any]:
    """Drift of every precision's detections on ``image`` from fp32's (threshold 0, official top 100)."""
    detections = {
        label: detector(image, REFERENCE_PROMPT, threshold=0.0, all_labels=True) for label, detector in found.items()
    }
    return {label: drift(detections["fp32"], det) for label, det in detections.items() if label != "fp32"}


def nano_map(fp32_dir: Path, int8_dir: Path, data: Path, threads: int, log: Callable[[str], None]) -> dict[str, Any]:
    """COCO metrics of glip-nano fp32 and int8 on ``data`` (annotations.json + images/)."""
    from glipcli.evaluation import evaluate_folder

    metrics = {}
    for label, path in (("fp32", fp32_dir), ("int8", int8_dir)):
        log(f"precision: glip-nano {label} mAP on {data}")
        detector = Detector.load(path, device="cpu", threads=threads)
        report = evaluate_folder(data / "annotations.json", data / "images", detector=detector)
        metrics[label] = {**report.metrics.to_dict(), "seconds": round(report.seconds, 2)}
    return {
        "data": str(data),
        "metrics": metrics,
        "map_change": {
            key: round(metrics["int8"][key] - metrics["fp32"][key], 4)
            for key in metrics["fp32"]
            if key.startswith("mAP")
        },
    }


def compare(
    fp32_dir: Path,
    name: str,
    image_path: Path,
    threads: int,
    repeats: int,
    cache: Path,
    fp16_dir: Path | None = None,
    nano: tuple[Path, Path] | None = None,
    log: Callable[[str], None] = common.log,
) -> dict[str, Any]:
    """Speed, drift and (optionally) glip-nano mAP of int8 (and fp16) against fp32."""
    log(f"precision: int8 twin of {fp32_dir}")
    bundles = {"fp32": fp32_dir, "int8": int8_twin(fp32_dir, cache / f"{fp32_dir.name}-int8")}
    if fp16_dir is not None:
        bundles["fp16"] = fp16_dir
    result: dict[str, Any] = {"model": name, "image": str(image_path), "prompt": REFERENCE_PROMPT, "threads": threads}
    found, result["refused"] = detectors(bundles, threads)
    image = load_image(image_path)
    log(f"precision: {', '.join(found)} speed, {repeats} interleaved rounds")
    result["speed"] = speed(found, image, repeats)
    result["drift_vs_fp32"] = detections_drift(found, image)
    if nano is not None:
        nano_fp32, data = nano
        result["nano"] = nano_map(nano_fp32, int8_twin(nano_fp32, cache / "nano-int8"), data, threads, log)
    return result


def _bundle_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).glob("*.onnx"))


def print_result(result: Mapping[str, Any]) -> None:
    speedups = result["speed"]["speedup_vs_fp32"]
    timings = result["speed"]["timings"]
    rows = [
        [label, t["ms"]["backbone"], t["ms"]["head"], t["total_ms"], speedups[label]["per_image"]]
        + [result["speed"]["bytes"][label] / 1e6]
        for label, t in timings.items()
    ]
    common.print_table(
        f"{result['model']}: precision on CPU, median ms",
        ["", "backbone", "head", "per image", "speedup vs fp32", "MB"],
        rows,
    )
    keys = ("unmatched", "box_px_median", "box_px_p90", "box_px_max", "score_median", "score_max")
    drift_rows = [[label, *(d.get(k, "-") for k in keys)] for label, d in result["drift_vs_fp32"].items()]
    common.print_table(
        f"drift of the {STRONGEST} strongest fp32 detections",
        ["", "unmatched", "box px median", "box px p90", "box px max", "score median", "score max"],
        drift_rows,
    )
    if "nano" in result:
        change = result["nano"]["map_change"]
        common.print_table("glip-nano int8 - fp32", ["metric", "change"], [[k, v] for k, v in change.items()])
