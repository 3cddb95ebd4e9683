"""Where ONNX Runtime spends its time, and what session settings change it.

- :func:`op_profile`: one profiled run of a graph (ONNX Runtime's own profiler), kernel time
  summed per op type and per model module (node names carry the PyTorch module path).
- :func:`session_variants`: session options against ONNX Runtime's defaults with full graph
  optimisation (``ort_defaults``): optimisation level, memory-reuse planning, thread spinning,
  fixed input shapes, thread count.
  Run time is interleaved; creation time and memory (peak while creating, held by the session,
  peak while running above that) come from one subprocess per variant, so each starts clean.

    python -m bench.ort_profile memory GRAPH.onnx FEED.npz VARIANT THREADS   (used by session_variants)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench import common

VARIANTS: dict[str, dict[str, Any]] = {
    "ort_defaults": {},  # ORT_ENABLE_ALL; memory reuse and spinning on, as ONNX Runtime defaults
    "no_mem_reuse": {"mem_reuse": False},
    "basic_optimisation": {"level": "ORT_ENABLE_BASIC"},
    "extended_optimisation": {"level": "ORT_ENABLE_EXTENDED"},
    "no_spinning": {"spinning": False},
    "fixed_shapes": {"fixed_shapes": True},
    "all_cores": {"intra_threads": 0},
}
_INDEX = re.compile(r"(\.|_)\d+(?=/|$)")  # layer indices and the exporter's repeat-call suffixes


def session(path: Path, threads: int, feed: Mapping[str, np.ndarray] | None = None, **variant: Any) -> Any:
    """A CPU InferenceSession with ``threads`` intra-op threads, full optimisation, changed by ``variant``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, variant.get("level", "ORT_ENABLE_ALL"))
    options.log_severity_level = 3
    threads = variant.get("intra_threads", threads)
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.enable_mem_reuse = variant.get("mem_reuse", True)
    if not variant.get("spinning", True):
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if variant.get("fixed_shapes") and feed is not None:
        for name, dim in _free_dimensions(path, feed).items():
            options.add_free_dimension_override_by_name(name, dim)
    if variant.get("profile_prefix"):
        options.enable_profiling = True
        options.profile_file_prefix = variant["profile_prefix"]
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _free_dimensions(path: Path, feed: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Symbolic input dimension names -> the sizes ``feed`` gives them."""
    import onnx

    dims = {}
    for inp in onnx.load(str(path), load_external_data=False).graph.input:
        for dim, size in zip(inp.type.tensor_type.shape.dim, feed[inp.name].shape, strict=True):
            if dim.dim_param:
                dims[dim.dim_param] = int(size)
    return dims


def op_profile(path: Path, feed: Mapping[str, np.ndarray], threads: int, top: int = 12) -> dict[str, Any]:
    """Kernel milliseconds of one warm run per op type and per module, largest first."""
    with tempfile.TemporaryDirectory(prefix="glip-profile-") as tmp:
        # without memory reuse planning the session is created several times faster; kernels are the same
        sess = session(path, threads, mem_reuse=False, profile_prefix=str(Path(tmp) / "ort"))
        sess.run(None, dict(feed))
        sess.run(None, dict(feed))
        events = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    start, end = runs[-1]["ts"], runs[-1]["ts"] + runs[-1]["dur"]
    nodes = [
        e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and start <= e["ts"] <= end
    ]
    total = sum(e["dur"] for e in nodes) or 1
    by_op: Counter[str] = Counter()
    by_module: Counter[str] = Counter()
    for e in nodes:
        by_op[e["args"]["op_name"]] += e["dur"]
        by_module[module_of(e["name"][: -len("_kernel_time")])] += e["dur"]

    def shares(counter: Counter[str]) -> dict[str, dict[str, float]]:
        return {k: {"ms": round(v / 1000, 2), "share": round(v / total, 3)} for k, v in counter.most_common(top)}

    return {
        "run_ms": round(runs[-1]["dur"] / 1000, 2),
        "kernel_ms": round(total / 1000, 2),
        "nodes_run": len(nodes),
        "by_op": shares(by_op),
        "by_module": shares(by_module),
    }


def module_of(node: str, depth: int = 5) -> str:
    """'/rpn/head/dyhead_tower.3/b_attn/attn/MatMul_2' -> 'rpn/head/dyhead_tower/b_attn/attn' (layers merged)."""
    parts = [p for p in node.split("/") if p]
    scope = parts[:-1] if len(parts) > 1 else parts
    return _INDEX.sub("", "/".join(scope[:depth])) or "(graph)"


def session_variants(
    path: Path,
    feed: Mapping[str, np.ndarray],
    threads: int,
    repeats: int,
    names: tuple[str, ...] = tuple(VARIANTS),
    log: Callable[[str], None] = common.log,
) -> dict[str, Any]:
    """Creation seconds, peak memory and median run ms of each session variant of one graph."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="glip-variants-") as tmp:
        feed_file = Path(tmp) / "feed.npz"
        np.savez(feed_file, **feed)
        for name in names:
            log(f"session variant {name}: creation and peak memory in a subprocess")
            results[name] = {"options": VARIANTS[name], **_memory_run(path, feed_file, name, threads)}
    sessions = {}
    for name in names:
        sessions[name] = session(path, threads, feed, **VARIANTS[name])

    def step(sess: Any) -> common.Step:
        def run() -> dict[str, float]:
            seconds, _ = common.timed(lambda: sess.run(None, dict(feed)))
            return {"run": seconds}

        return run

    log(f"session variants: {repeats} interleaved rounds")
    timings = common.interleave({name: step(s) for name, s in sessions.items()}, repeats)
    base = timings[names[0]]["total_ms"]
    for name in names:
        results[name]["run_ms"] = timings[name]["total_ms"]
        results[name]["run_ms_min_max"] = timings[name]["total_ms_min_max"]
        results[name]["speedup_vs_first"] = common.ratio(base, timings[name]["total_ms"])
    return results


def _memory_run(path: Path, feed_file: Path, variant: str, threads: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.ort_profile", "memory", str(path), str(feed_file), variant, str(threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM restarts from the current RSS


def _memory_main(path: str, feed_file: str, variant: str, threads: str) -> None:
    feed = dict(np.load(feed_file))
    _reset_peak()
    before = _status_mb("VmRSS")
    created, sess = common.timed(lambda: session(Path(path), int(threads), feed, **VARIANTS[variant]))
    create_peak, loaded = _status_mb("VmHWM"), _status_mb("VmRSS")
    _reset_peak()
    first, _ = common.timed(lambda: sess.run(None, feed))
    report = {
        "create_s": round(created, 2),
        "first_run_s": round(first, 2),
        "create_peak_mb": round(create_peak - before, 1),
        "session_mb": round(loaded - before, 1),
        "run_peak_mb": round(_status_mb("VmHWM") - loaded, 1),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "memory":
        _memory_main(*sys.argv[2:])
    else:
        sys.exit(__doc__)
