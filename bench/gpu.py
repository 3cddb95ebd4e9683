"""GPU benchmark (run by bench/gpu.sh): ONNX Runtime CUDA / TensorRT against eager PyTorch on CUDA.

Exports a GLIP-T-sized random model in fp32 and fp16, then at 800x1333 measures images/s
(backbone + head per image; the text graph runs once per prompt) of eager PyTorch fp32 and fp16
on CUDA, and of both bundles on ONNX Runtime's CUDA provider and, when this onnxruntime has it,
TensorRT's (in a subprocess under a time limit: TensorRT builds engines first). Then it compares
fp16 outputs and detections against fp32 on the GPU. Installs nothing and needs no network.
The JSON is rewritten after every stage, so a run cut short still leaves its figures.

``--device cpu`` is a dry run of the same code on CPU providers (default model: reduced), for
machines without a GPU; it measures nothing about GPUs.

    python -m bench.gpu --out runs/bench-gpu
    python -m bench.gpu --device cpu --model reduced --size 320x533 --out /tmp/dry
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import common, models

BUDGET_S = 450  # the whole script must finish in 8 minutes; leave room for start-up
TENSORRT_LIMIT_S = 150
EXIT_NO_GPU = 2


class NoGpu(RuntimeError):
    """The machine cannot run the GPU benchmark; the message says what is missing."""


def check_cuda() -> dict[str, Any]:
    """What this machine offers, or :class:`NoGpu` saying what is missing."""
    import onnxruntime as ort
    import torch

    providers = ort.get_available_providers()
    if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN libraries of the nvidia-* wheels torch brought along
        ort.preload_dlls()
    if not torch.cuda.is_available():
        raise NoGpu(f"PyTorch {torch.__version__} sees no CUDA device (CUDA build: {torch.version.cuda or 'none'})")
    if "CUDAExecutionProvider" not in providers:
        raise NoGpu(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (has: {', '.join(providers)})")
    return {
        "gpu": torch.cuda.get_device_name(0),
        "torch_cuda": torch.version.cuda,
        "onnxruntime_providers": providers,
        "tensorrt": "TensorrtExecutionProvider" in providers,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or models.REPO / "runs" / "bench-gpu"))
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: dry run without a GPU")
    parser.add_argument("--model", choices=models.MODELS, default=None, help="glip-t (cuda) or reduced (cpu)")
    parser.add_argument("--size", default="800x1333", help="image HxW (default 800x1333)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per contender (default 10)")
    parser.add_argument("--cache", type=Path, default=models.CACHE, help="exported bundles (bench/.cache)")
    parser.add_argument("--reference", type=Path, default=None, help="reference oracle folder (for reduced)")
    parser.add_argument("--no-tensorrt", action="store_true", help="skip TensorRT even when available")
    parser.add_argument("--measure", nargs=3, metavar=("DEVICE", "BUNDLE", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.model = args.model or ("glip-t" if args.device == "cuda" else "reduced")
    try:
        height, width = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size {args.size!r}: expected HxW, e.g. 800x1333")
    args.hw = (height, width)
    return args


# --------------------------------------------------------------------------------------------
# contenders: callables that run the three graphs and return seconds per graph


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def torch_contender(model: Any, ids: np.ndarray, mask: np.ndarray, images: np.ndarray, device: str) -> common.Step:
    import torch

    t_ids, t_mask = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
    dtype = next(model.parameters()).dtype
    t_images = torch.from_numpy(images).to(device)

    def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        return time.perf_counter() - start, out

    def step() -> dict[str, float]:
        with torch.inference_mode():
            s_text, text = timed(lambda: model.encode_text(t_ids, t_mask))
            s_backbone, levels = timed(lambda: model.encode_image(t_images.to(dtype)))
            s_head, _ = timed(lambda: model.decode(model.head(levels, text.to(dtype), t_mask)))
        return {"text": s_text, "backbone": s_backbone, "head": s_head}

    return step


def measure_ort(bundle_dir: Path, device: str, inputs: dict[str, np.ndarray], repeats: int) -> dict[str, Any]:
    """Session creation and per-graph timings of one bundle on one ONNX Runtime device."""
    from bench.ort_vs_torch import glipcli_sessions, ort_step

    sessions, created = glipcli_sessions(bundle_dir, device=device)
    provider = sessions["head"].get_providers()[0]
    if device != "cpu" and provider == "CPUExecutionProvider":
        raise RuntimeError(f"ONNX Runtime could not start its {device} provider and fell back to the CPU")
    timing = common.interleave({"ort": ort_step(sessions, inputs["ids"], inputs["mask"], inputs["images"])}, repeats)
    return {"provider": provider, "session_create_s": created, **timing["ort"]}


def images_per_s(timing: dict[str, Any]) -> float:
    """Throughput per image with the prompt's text features cached: backbone + head."""
    ms = timing["ms"]["backbone"] + timing["ms"]["head"]
    return round(1000 / ms, 3) if ms > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# parity of fp16 against fp32


def output_parity(fp32_dir: Path, fp16_dir: Path, device: str, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Largest normalised differences of the fp16 bundle's head outputs from the fp32 bundle's."""
    from bench.ort_vs_torch import glipcli_sessions, ort_step

    outputs = {}
    for label, path in (("fp32", fp32_dir), ("fp16", fp16_dir)):
        sessions, _ = glipcli_sessions(path, device=device)
        captured: dict[str, Any] = {}
        run = sessions["head"].run
        sessions["head"] = _Capture(run, captured)
        ort_step(sessions, inputs["ids"], inputs["mask"], inputs["images"])()
        outputs[label] = captured["outputs"]
    ref, ours = outputs["fp32"], outputs["fp16"]
    size = np.maximum(ref[0][..., 2] - ref[0][..., 0], ref[0][..., 3] - ref[0][..., 1])[..., None]
    return {
        "boxes_max_rel": float((np.abs(ours[0] - ref[0]) / np.maximum(1.0, size)).max()),
        "boxes_max_px": float(np.abs(ours[0] - ref[0]).max()),
        "centerness_max_rel": _rel(ours[1], ref[1]),
        "token_logits_max_rel": _rel(ours[2], ref[2]),
        "metric": "max |fp16 - fp32| / max(1, |fp32|); boxes: / max(1, box size)",
    }


class _Capture:
    """A session stand-in that keeps the outputs of its run."""

    def __init__(self, run: Callable, store: dict[str, Any]) -> None:
        self._run, self._store = run, store

    def run(self, names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        self._store["outputs"] = self._run(names, feed)
        return self._store["outputs"]


def _rel(ours: np.ndarray, ref: np.ndarray) -> float:
    return float((np.abs(ours.astype(np.float64) - ref) / np.maximum(1.0, np.abs(ref))).max())


def detection_parity(fp32_dir: Path, fp16_dir: Path, device: str, image: np.ndarray) -> dict[str, Any]:
    from bench.precision import REFERENCE_PROMPT, drift
    from glipcli.api import Detector

    found = {
        label: Detector.load(path, device=device)(image, REFERENCE_PROMPT, threshold=0.0, all_labels=True)
        for label, path in (("fp32", fp32_dir), ("fp16", fp16_dir))
    }
    return {"prompt": REFERENCE_PROMPT, **drift(found["fp32"], found["fp16"])}


# --------------------------------------------------------------------------------------------


class Run:
    """One benchmark run: stages in order, the JSON rewritten after each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.start = time.time()
        self.result: dict[str, Any] = {
            "benchmark": "gpu",
            "device": args.device,
            "model": args.model,
            "image_hw": list(args.hw),
            "stages_s": {},
            "contenders": {},
            "skipped": {},
        }

    def left(self) -> float:
        return BUDGET_S - (time.time() - self.start)

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        common.log(f"gpu: {name} ({self.left():.0f} s of budget left)")
        seconds, value = common.timed(fn)
        self.result["stages_s"][name] = round(seconds, 1)
        self.save()
        return value

    def save(self) -> Path:
        self.result["elapsed_s"] = round(time.time() - self.start, 1)
        return common.write_json(self.args.out, "gpu", self.result)

    def contender(self, label: str, fn: Callable[[], dict[str, Any]]) -> None:
        try:
            timing = self.stage(label, fn)
        except Exception as exc:  # a provider that cannot run a graph is a finding, not a crash
            self.result["contenders"][label] = {"error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
            self.save()
            return
        timing["images_per_s"] = images_per_s(timing)
        self.result["contenders"][label] = timing
        self.save()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure:
        device, bundle, target = args.measure
        inputs = dict(np.load(Path(target).with_suffix(".npz")))
        Path(target).write_text(json.dumps(measure_ort(Path(bundle), device, inputs, args.repeats)))
        return 0
    import torch

    run = Run(args)
    if args.device == "cuda":
        try:
            run.result["machine"] = check_cuda()
        except NoGpu as exc:
            print(f"bench.gpu: no usable GPU: {exc}", file=sys.stderr)
            return EXIT_NO_GPU
    else:
        run.result["machine"] = {"note": "CPU dry run: the figures say nothing about GPUs"}
    run.result["machine"].update(common.machine(torch.get_num_threads()))
    model = run.stage("build model", lambda: models.build(args.model, args.reference))
    bundles = {
        precision: run.stage(
            f"export {precision}", lambda p=precision: models.cached_bundle(model, args.model, p, args.cache)
        )
        for precision in ("fp32", "fp16")
    }
    inputs = _inputs(bundles["fp32"], model, args.hw)
    ort_device = "cuda" if args.device == "cuda" else "cpu"

    model.to(args.device)
    run.contender("torch fp32", lambda: _torch_timing(model, inputs, args))
    from glipcli.export.half import half_precision

    with half_precision(model):
        run.contender("torch fp16", lambda: _torch_timing(model, inputs, args))
    model.to("cpu")
    if args.device == "cuda":
        torch.cuda.empty_cache()
    for precision, path in bundles.items():
        run.contender(f"ort {ort_device} {precision}", lambda p=path: measure_ort(p, ort_device, inputs, args.repeats))
    if args.device == "cuda" and run.result["machine"]["tensorrt"] and not args.no_tensorrt:
        for precision, path in bundles.items():
            limit = min(TENSORRT_LIMIT_S, run.left() - 60)
            if limit < 30:
                run.result["skipped"][f"ort tensorrt {precision}"] = "time budget"
                continue
            run.contender(f"ort tensorrt {precision}", lambda p=path, s=limit: _subprocess_timing(p, inputs, args, s))
    try:
        run.result["fp16_vs_fp32"] = {
            "outputs": run.stage("fp16 output parity", lambda: output_parity(*bundles.values(), ort_device, inputs)),
            "detections": run.stage(
                "fp16 detection parity", lambda: detection_parity(*bundles.values(), ort_device, _image(args.hw))
            ),
        }
    except Exception as exc:  # e.g. the CPU provider lacks fp16 kernels in a dry run
        run.result["fp16_vs_fp32"] = {"error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
    path = run.save()
    _print(run.result)
    common.log(f"gpu: {run.result['elapsed_s']} s -> {path}")
    return 0


def _image(hw: tuple[int, int]) -> np.ndarray:
    from glipcli.export.verify import sample_image

    return sample_image(*hw)


def _inputs(bundle_dir: Path, model: Any, hw: tuple[int, int]) -> dict[str, np.ndarray]:
    from bench.ort_vs_torch import text_inputs

    ids, mask = text_inputs(bundle_dir)
    return {"ids": ids, "mask": mask, "images": models.scene(model.cfg, *hw)}


def _torch_timing(model: Any, inputs: dict[str, np.ndarray], args: argparse.Namespace) -> dict[str, Any]:
    step = torch_contender(model, inputs["ids"], inputs["mask"], inputs["images"], args.device)
    return common.interleave({"torch": step}, args.repeats)["torch"]


def _subprocess_timing(bundle: Path, inputs: dict[str, np.ndarray], args: argparse.Namespace, limit: float) -> dict:
    """TensorRT in a child process: its engine build can take minutes and must not eat the budget."""
    target = args.out / f".measure-{os.getpid()}.json"
    np.savez(target.with_suffix(".npz"), **inputs)
    command = [sys.executable, "-m", "bench.gpu", "--repeats", str(args.repeats)]
    command += ["--measure", "tensorrt", str(bundle), str(target)]
    try:
        subprocess.run(command, check=True, timeout=limit, capture_output=True, text=True)
        return json.loads(target.read_text())
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"TensorRT took over {limit:.0f} s (engine build); skipped") from None
    except subprocess.CalledProcessError as exc:
        raise RuntimeError((exc.stderr.strip().splitlines() or ["failed"])[-1]) from None
    finally:
        target.unlink(missing_ok=True)
        target.with_suffix(".npz").unlink(missing_ok=True)


def _print(result: dict[str, Any]) -> None:
    rows = []
    for label, c in result["contenders"].items():
        if "error" in c:
            rows.append([label, "-", "-", "-", "-", c["error"][:60]])
        else:
            ms = c["ms"]
            rows.append([label, ms["text"], ms["backbone"], ms["head"], c["images_per_s"], c.get("provider", "torch")])
    h, w = result["image_hw"]
    common.print_table(
        f"{result['model']} at {h}x{w} on {result['machine'].get('gpu', result['device'])}: median ms",
        ["", "text", "backbone", "head", "images/s", "provider"],
        rows,
    )
    parity = result.get("fp16_vs_fp32", {})
    if "outputs" in parity:
        rows = [[k, v] for k, v in parity["outputs"].items() if k != "metric"]
        rows += [[f"detections {k}", v] for k, v in parity["detections"].items() if k != "prompt"]
        common.print_table("fp16 against fp32", ["", "value"], rows)


if __name__ == "__main__":
    sys.exit(main())
