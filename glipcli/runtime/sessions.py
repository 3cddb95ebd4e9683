"""ONNX Runtime sessions: provider choice and thread settings, one session per graph."""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

from glipcli.errors import BundleError, ConfigError

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


GRAPH_CACHE_ENV = "GLIPCLI_GRAPH_CACHE"
"""Set to 0 to build every session from the bundle's graph, as before the cache existed."""


def make_session(  # noqa: ANN201
    path: Path, device: str = "cpu", threads: int | None = None, digest: str | None = None, optimise: bool = True
):
    """An InferenceSession with full graph optimisation; ``threads`` bounds intra-op threads.

    ``optimise=False`` loads a CPU session as exported, for graphs run once (see glipcli.runtime.engine).

    With the graph's ``digest`` (its sha256) a CPU session is built from a cached copy of the graph
    as ONNX Runtime optimised it (:func:`optimised_path`) with optimisation off: the same graph,
    so the same outputs to the bit, but glip-nano's three sessions load 3-4x faster (the optimiser
    was most of ``glip detect``'s start-up). The first load writes the copy.
    """
    providers = providers_for(device)
    if not optimise and providers == ["CPUExecutionProvider"]:
        return _session(path, _options(threads, optimise=False), providers)
    cached = optimised_path(digest) if digest and providers == ["CPUExecutionProvider"] else None
    if cached is not None and cached.is_file():
        try:
            return _session(cached, _options(threads, optimise=False), providers)
        except BundleError:
            cached.unlink(missing_ok=True)  # a damaged copy: rebuild it from the bundle's graph
    if cached is None:
        return _session(path, _options(threads), providers)
    options = _options(threads)
    partial = cached.with_name(f"{cached.stem}.{os.getpid()}.partial")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        options.optimized_model_filepath = str(partial)
        session = _session(path, options, providers)
        os.replace(partial, cached)  # atomic: a concurrent load sees the whole copy or none
        return session
    except (OSError, BundleError):  # an unwritable cache (or a graph ORT cannot save) must not stop detection
        partial.unlink(missing_ok=True)
        return _session(path, _options(threads), providers)


def optimised_path(digest: str) -> Path | None:
    """Where the optimised copy of the graph with sha256 ``digest`` is cached, or None when disabled.

    ORT's full optimisation writes layouts for this CPU's vector width, so the key holds the ORT
    version and the CPU's model and flags besides the graph: a cache shared between machines
    (a home folder on NFS) never hands one machine another's graph.
    """
    if os.environ.get(GRAPH_CACHE_ENV, "1") == "0":
        return None
    import onnxruntime as ort

    from glipcli.runtime.bundle import user_cache_dir

    machine = hashlib.sha256(f"{ort.__version__} {_cpu_signature()}".encode()).hexdigest()[:12]
    return user_cache_dir() / "graphs" / f"{digest[:32]}-{machine}.onnx"


def _cpu_signature() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    wanted = ("model name", "flags", "Features")
    return " ".join(sorted({line for line in lines if line.split(":", 1)[0].strip() in wanted}))


def _options(threads: int | None, optimise: bool = True):  # noqa: ANN202
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.log_severity_level = 3
    # ORT's memory-reuse planner is slow on graphs with thousands of symbolic shapes: GLIP-T's head
    # took 20 s to load with it and 4 s without, at equal run time and peak memory (bench: sessions)
    options.enable_mem_reuse = False
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def _session(path: Path, options, providers: list[str]):  # noqa: ANN001, ANN202
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for bad graphs
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"ONNX Runtime cannot load {path}: {first}") from None
