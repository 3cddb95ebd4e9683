"""ONNX Runtime sessions: provider choice and thread settings, one session per graph."""

from __future__ import annotations

import os
from pathlib import Path

from glipcli.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "tensorrt")

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def _cuda_usable() -> bool:
    """onnxruntime-gpu lists CUDA even without a GPU or CUDA libraries; probe for a device."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/dev/nvidia0").exists() or Path("/dev/dxg").exists() or os.name == "nt"


def providers_for(device: str) -> list[str]:
    """Execution providers, best first, restricted to what this ONNX Runtime build offers."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    available = set(ort.get_available_providers())
    if device == "auto":
        if _cuda_usable() and "CUDAExecutionProvider" in available:
            wanted = _PROVIDERS["tensorrt"] if "TensorrtExecutionProvider" in available else _PROVIDERS["cuda"]
        else:
            wanted = _PROVIDERS["cpu"]
    else:
        wanted = _PROVIDERS[device]
        if wanted[0] not in available:
            raise ConfigError(
                f"device {device!r} needs {wanted[0]}, which this onnxruntime build does not have "
                f"(available: {', '.join(sorted(available))})"
            )
    return [p for p in wanted if p in available]


def make_session(path: Path, device: str = "cpu", threads: int | None = None):  # noqa: ANN201
    """An InferenceSession with full graph optimisation; ``threads`` bounds intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # ORT's memory-reuse planner is slow on graphs with thousands of symbolic shapes: GLIP-T's head
    # took 20 s to load with it and 4 s without, at equal run time and peak memory (bench: sessions)
    options.enable_mem_reuse = False
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=providers_for(device))
    except Exception as exc:  # ORT raises its own exception types for bad graphs
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        from glipcli.errors import BundleError

        raise BundleError(f"ONNX Runtime cannot load {path}: {first}") from None
