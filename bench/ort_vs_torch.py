"""ONNX Runtime against eager PyTorch: same weights, same input, same thread count.

Per graph (text, backbone, fused head incl. box decoding) and in total, median of interleaved
rounds. "ort" is the bundle run exactly as glipcli runs it (``make_session``); further bundles
of the same weights (``extra``, e.g. an export with another option) join the same rounds.
Speedups are eager-PyTorch time over ONNX Runtime time, for all three graphs and per image
(backbone + head: the text graph runs once per prompt and is cached for a folder).

Each graph's FLOPs at each input (glipcli.export.flops, counted as the export counts them for
the manifest) over its median time give achieved GFLOP/s, reported against this machine's fp32
GEMM peak at the same thread count (bench.peak), the better of two measurements taken just
before and after that size's rounds. The count is of the eager PyTorch model, so a graph that
computes the same result with fewer operations (the head's factored fusion attention,
glipcli/export/fusion.py) can show more than the peak: its share says how much faster it is than
the eager arithmetic run at peak.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench import common
from bench import ort_profile as profile
from bench.models import scene
from bench.peak import gemm_peak_gflops
from glipcli.errors import ConfigError
from glipcli.prompt import encode_prompt, parse_prompt
from glipcli.runtime.bundle import GRAPHS, LEVELS, load_bundle
from glipcli.runtime.sessions import make_session
from glipcli.tokenizer import load_tokenizer

if TYPE_CHECKING:
    from glipcli.model.glip import GLIP

PROMPT = "person. bicycle. car. dog. traffic light. red circle. blue rectangle. potted plant"
"""Eight everyday classes (a few tokens each): the size of prompt most detection calls use."""


def text_inputs(bundle_dir: Path, prompt: str = PROMPT) -> tuple[np.ndarray, np.ndarray]:
    """(1, T) token ids and mask of ``prompt`` with the bundle's tokenizer."""
    bundle = load_bundle(bundle_dir, verify_hashes=False)
    tokenizer = load_tokenizer(bundle.tokenizer_path)
    chunk = encode_prompt(parse_prompt(prompt), tokenizer, bundle.config.language.max_query_len)[0]
    return chunk.input_ids[None].copy(), chunk.attention_mask[None].copy()


def torch_step(model: GLIP, ids: np.ndarray, mask: np.ndarray, images: np.ndarray) -> common.Step:
    import torch

    t_ids, t_mask, t_images = torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(images)

    def step() -> dict[str, float]:
        with torch.inference_mode():
            s_text, text = common.timed(lambda: model.encode_text(t_ids, t_mask))
            s_backbone, levels = common.timed(lambda: model.encode_image(t_images))
            s_head, _ = common.timed(lambda: model.decode(model.head(levels, text, t_mask)))
        return {"text": s_text, "backbone": s_backbone, "head": s_head}

    return step


def ort_step(sessions: Mapping[str, Any], ids: np.ndarray, mask: np.ndarray, images: np.ndarray) -> common.Step:
    def step() -> dict[str, float]:
        s_text, (text,) = common.timed(lambda: sessions["text"].run(None, {"input_ids": ids, "attention_mask": mask}))
        s_backbone, levels = common.timed(lambda: sessions["backbone"].run(None, {"images": images}))
        feed = head_feed(levels, text, mask)
        s_head, _ = common.timed(lambda: sessions["head"].run(None, feed))
        return {"text": s_text, "backbone": s_backbone, "head": s_head}

    return step


def head_feed(levels: list[np.ndarray], text: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    feed = dict(zip(LEVELS, levels, strict=True))
    feed.update(text_features=text, text_mask=mask)
    return feed


def glipcli_sessions(
    bundle_dir: Path, threads: int | None = None, device: str = "cpu"
) -> tuple[dict[str, Any], dict[str, float]]:
    """The three sessions exactly as glipcli creates them for ``device``, and creation seconds."""
    bundle = load_bundle(bundle_dir, verify_hashes=False)
    sessions, seconds = {}, {}
    for graph in GRAPHS:
        path = bundle.graph_path(graph)
        created, sessions[graph] = common.timed(lambda p=path: make_session(p, device, threads))
        seconds[graph] = round(created, 2)
    return sessions, seconds


def compare(
    model: GLIP,
    name: str,
    bundle_dir: Path,
    sizes: list[tuple[int, int]],
    threads: int,
    repeats: int,
    extra: Mapping[str, Path] | None = None,
    profile_ops: bool = True,
    log: Callable[[str], None] = common.log,
) -> dict[str, Any]:
    """Timings of eager PyTorch and of each bundle at each input size, achieved GFLOP/s against the
    GEMM peak, plus ORT's op profile."""
    from glipcli.export.flops import count_flops

    bundles = {"ort": Path(bundle_dir), **(extra or {})}
    _check_same_weights(bundles)
    ids, mask = text_inputs(bundle_dir)
    sessions, created = {}, {}
    for label, path in bundles.items():
        log(f"{name}: creating ONNX Runtime sessions for {label} ({path})")
        sessions[label], created[label] = glipcli_sessions(path, threads)
    result: dict[str, Any] = {
        "model": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "prompt": PROMPT,
        "tokens": int(ids.shape[1]),
        "threads": threads,
        "bundles": {label: str(path) for label, path in bundles.items()},
        "session_create_s": created,
        "sizes": [],
    }
    for height, width in sizes:
        images = scene(model.cfg, height, width)
        log(f"{name}: {height}x{width} (input {images.shape[2]}x{images.shape[3]}), {repeats} interleaved rounds")
        contenders: dict[str, common.Step] = {"torch": torch_step(model, ids, mask, images)}
        contenders.update({label: ort_step(s, ids, mask, images) for label, s in sessions.items()})
        peak_before = gemm_peak_gflops(threads)  # around the rounds: the machine's load moves
        timings = common.interleave(contenders, repeats)
        peak = max(peak_before, gemm_peak_gflops(threads))
        entry = {
            "image_hw": [height, width],
            "input_hw": list(images.shape[2:]),
            "timings": timings,
            "speedup_vs_torch": {label: _speedups(timings["torch"], timings[label]) for label in sessions},
            "gemm_peak_gflops": round(peak, 1),
        }
        flops = count_flops(model, tuple(images.shape[2:]), int(ids.shape[1]))
        entry["gflop"] = {graph: round(flops[graph] / 1e9, 3) for graph in GRAPHS}
        entry["achieved_gflops"] = {
            label: {graph: _gflops(flops[graph], timings[label]["ms"][graph]) for graph in GRAPHS}
            for label in ["torch", *sessions]
        }
        if profile_ops:
            log(f"{name}: ONNX Runtime op profile at {height}x{width}")
            entry["ort_profile"] = _profiles(bundles["ort"], sessions["ort"], ids, mask, images, threads)
        result["sizes"].append(entry)
    return result


def _gflops(flops: int, ms: float) -> float:
    return round(flops / (ms / 1e3) / 1e9, 1) if ms > 0 else 0.0


def _speedups(torch_timing: Mapping[str, Any], ort_timing: Mapping[str, Any]) -> dict[str, float]:
    t, o = torch_timing["ms"], ort_timing["ms"]
    speedups = {graph: common.ratio(t[graph], o[graph]) for graph in GRAPHS}
    speedups["all_graphs"] = common.ratio(torch_timing["total_ms"], ort_timing["total_ms"])
    speedups["per_image"] = common.ratio(t["backbone"] + t["head"], o["backbone"] + o["head"])
    return speedups


def _profiles(
    bundle_dir: Path, sessions: Mapping[str, Any], ids: np.ndarray, mask: np.ndarray, images: np.ndarray, threads: int
) -> dict[str, Any]:
    bundle = load_bundle(bundle_dir, verify_hashes=False)
    (text,) = sessions["text"].run(None, {"input_ids": ids, "attention_mask": mask})
    levels = sessions["backbone"].run(None, {"images": images})
    feeds = {
        "text": {"input_ids": ids, "attention_mask": mask},
        "backbone": {"images": images},
        "head": head_feed(levels, text, mask),
    }
    return {graph: profile.op_profile(bundle.graph_path(graph), feeds[graph], threads) for graph in GRAPHS}


def _check_same_weights(bundles: Mapping[str, Path]) -> None:
    """Comparing exports only makes sense for one set of weights."""
    digests = {}
    for label, path in bundles.items():
        try:
            digests[label] = json.loads((path / "manifest.json").read_text())["source"].get("sha256")
        except (OSError, ValueError, KeyError):
            raise ConfigError(f"{path} is not a model bundle (no readable manifest.json)") from None
    if len(set(digests.values())) > 1:
        raise ConfigError(f"bundles hold different weights: {digests}")


def print_result(result: Mapping[str, Any]) -> None:
    labels = list(result["bundles"])
    for entry in result["sizes"]:
        rows = []
        for contender in ["torch", *labels]:
            t = entry["timings"][contender]
            speed = entry["speedup_vs_torch"].get(contender, {})
            rows.append(
                [
                    contender,
                    t["ms"]["text"],
                    t["ms"]["backbone"],
                    t["ms"]["head"],
                    t["total_ms"],
                    speed.get("per_image", 1.0),
                    speed.get("all_graphs", 1.0),
                ]
            )
        h, w = entry["input_hw"]
        common.print_table(
            f"{result['model']} at {h}x{w}, {result['tokens']} tokens, {result['threads']} thread(s): median ms",
            ["", "text", "backbone", "head", "total", "speedup/image", "speedup all"],
            rows,
        )
        peak = entry["gemm_peak_gflops"]
        rows = [
            [graph, entry["gflop"][graph], entry["timings"]["ort"]["ms"][graph], achieved, common.ratio(achieved, peak)]
            for graph, achieved in entry["achieved_gflops"]["ort"].items()
        ]
        common.print_table(
            f"{result['model']} at {h}x{w}: achieved GFLOP/s against the fp32 GEMM peak ({peak} GFLOP/s)",
            ["graph", "GFLOP", "ort ms", "GFLOP/s", "share of peak"],
            rows,
        )
        if "ort_profile" in entry:
            head = entry["ort_profile"]["head"]
            rows = [[k, v["ms"], v["share"]] for k, v in list(head["by_module"].items())[:6]]
            rows += [[f"op {k}", v["ms"], v["share"]] for k, v in list(head["by_op"].items())[:6]]
            common.print_table(f"where the head's time goes (ORT profiler, {h}x{w})", ["", "ms", "share"], rows)
