"""``glip export``: a checkpoint -> a self-verified model bundle.

The bundle is assembled in a hidden sibling folder and moved into place only after its graphs
reproduced PyTorch within the tolerance of its precision, so a failed export never leaves
something that looks like a valid bundle.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from glipcli import __version__
from glipcli.config import GLIPConfig, InputConfig
from glipcli.digests import sha256_file
from glipcli.errors import BundleError, ExportError
from glipcli.export import graphs as G
from glipcli.export.compact import compact_graph
from glipcli.export.flops import manifest_entry as flops_entry
from glipcli.export.half import half_precision
from glipcli.export.int8 import to_int8
from glipcli.export.rebuild import MANIFEST_KEY, write_weights
from glipcli.export.verify import VERIFY_PROMPT, Parity, sample_image, verify_graphs
from glipcli.model.checkpoint import checkpoint_source, load_weights, read_state_dict
from glipcli.model.glip import GLIP, build_model
from glipcli.preprocess import prepare_image
from glipcli.presets import checkpoint_config
from glipcli.prompt import encode_prompt, parse_prompt
from glipcli.runtime.bundle import FORMAT, FORMAT_VERSION, MANIFEST, MIN_ORT_VERSION
from glipcli.tokenizer import build_tokenizer, save_tokenizer

PRECISIONS = ("fp32", "fp16", "int8")
# Images verified at export (H, W before resizing); two aspect ratios -> two padded sizes.
VERIFY_IMAGES = [(480, 640), (600, 400)]
VERIFY_MIN_SIZE = 384


@dataclass
class ExportResult:
    path: Path
    manifest: dict[str, Any]
    seconds: float


def _verify_input(cfg: InputConfig) -> InputConfig:
    """Verification runs at a moderate size: dynamic shapes matter, not the 800-pixel cost."""
    short = min(cfg.min_size, VERIFY_MIN_SIZE)
    longest = int(short * cfg.max_size / cfg.min_size) if cfg.max_size > 0 else 0
    return dataclasses.replace(cfg, min_size=short, max_size=longest)


def export_bundle(
    model: GLIP,
    out: Path,
    *,
    name: str,
    source: dict[str, Any],
    precision: str = "fp32",
    vocab: Path | None = None,
    deform: str = "grid_sample",
    overwrite: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> ExportResult:
    """Export ``model`` (weights loaded) to a verified bundle at ``out``."""
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; choose another --out or pass --overwrite")
    start = time.time()
    cfg = model.cfg
    model.eval()
    tokenizer = build_tokenizer(vocab)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        verify_cfg = dataclasses.replace(cfg, input=_verify_input(cfg.input))
        # int8 graphs are compacted after quantisation: the quantiser cannot read Cast-fed weights
        graphs = _export_graphs(model, work, tokenizer, cfg, deform, log, compact=precision != "int8")
        log("verifying fp32 graphs against PyTorch")
        parity = {"fp32": verify_graphs(model, graphs, tokenizer, verify_cfg, "fp32", VERIFY_IMAGES)}
        _require(parity["fp32"], "fp32")
        log("counting each graph's FLOPs at the test size")
        flops = flops_entry(model)
        weights = None
        if precision == "fp32":
            log("indexing the weights for glip tune / glip train --init (bundle -> PyTorch)")
            weights = write_weights(model, graphs, work)
        if precision == "fp16":
            for path in graphs.values():
                path.unlink()
            with half_precision(model):
                graphs = _export_graphs(model, work, tokenizer, cfg, deform, log, torch.float16)
            parity["fp16"] = _verify_reduced(model, graphs, tokenizer, verify_cfg, "fp16", log)
        elif precision == "int8":
            graphs = _quantize(graphs, work, log)
            _compact(graphs.values(), log)
            parity["int8"] = _verify_reduced(model, graphs, tokenizer, verify_cfg, "int8", log)
        save_tokenizer(tokenizer, work / "tokenizer.json")
        manifest = _manifest(cfg, name, source, precision, deform, graphs, parity, work, weights, flops)
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        move_into_place(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportResult(out, manifest, time.time() - start)


def _export_graphs(
    model: GLIP,
    work: Path,
    tokenizer: Any,
    cfg: GLIPConfig,
    deform: str,
    log: Callable,
    dtype: torch.dtype = torch.float32,
    compact: bool = True,
) -> dict[str, Path]:
    chunk = encode_prompt(parse_prompt(VERIFY_PROMPT), tokenizer, cfg.language.max_query_len)[0]
    ids = torch.tensor(chunk.input_ids[None])
    mask = torch.tensor(chunk.attention_mask[None])
    small = dataclasses.replace(cfg.input, min_size=min(cfg.input.min_size, 256), max_size=min(cfg.input.max_size, 352))
    images = torch.from_numpy(prepare_image(sample_image(300, 400), small).tensor[None])
    paths = {g: work / f"{g}.onnx" for g in ("text", "backbone", "head")}
    with torch.no_grad():
        text = model.encode_text(ids, mask).float()
        levels = [p.float() for p in model.encode_image(images.to(dtype))]
    precision = "fp16 " if dtype == torch.float16 else ""
    log(f"exporting {precision}text graph")
    G.export_text(model, paths["text"], ids, mask, dtype)
    log(f"exporting {precision}backbone graph")
    G.export_backbone(model, paths["backbone"], images, dtype)
    log(f"exporting {precision}fused head graph (deformable conv as {deform})")
    G.export_head(model, paths["head"], levels, text, mask, deform, dtype)
    model.eval()
    if dtype == torch.float32 and compact:
        _compact(paths.values(), log)
    return paths


def _compact(paths: Iterable[Path], log: Callable) -> None:
    saved = sum(compact_graph(p) for p in paths)
    if saved:
        log(f"stored exactly representable weights compactly (-{saved / 1e6:.0f} MB)")


def _quantize(graphs: dict[str, Path], work: Path, log: Callable) -> dict[str, Path]:
    quantized = {}
    for name, path in graphs.items():
        target = work / f"{name}.int8.onnx"
        log(f"quantizing {name} graph to int8")
        to_int8(path, target)
        path.unlink()
        quantized[name] = target.rename(work / f"{name}.onnx")
    return quantized


def _verify_reduced(
    model: GLIP, graphs: dict[str, Path], tokenizer: Any, cfg: GLIPConfig, precision: str, log: Callable
) -> Parity | dict[str, Any]:
    """Drift of fp16/int8 graphs against the fp32 PyTorch model."""
    log(f"verifying {precision} graphs against PyTorch fp32")
    try:
        parity = verify_graphs(model, graphs, tokenizer, cfg, precision, VERIFY_IMAGES)
    except BundleError as exc:  # ORT's CPU provider lacks some fp16 kernels: say so, do not fail
        if precision != "fp16":
            raise
        return {
            "verified": False,
            "reason": f"the CPU provider cannot run it: {exc}",
            "how_to_verify": "bash bench/gpu.sh on a machine with an NVIDIA GPU",
        }
    _require(parity, precision)
    return parity


def _require(parity: Parity, precision: str) -> None:
    if not parity.ok:
        worst = ", ".join(f"{k} {v:.2e} (limit {parity.tolerance[k]:.0e})" for k, v in parity.errors.items())
        raise ExportError(f"{precision} graphs do not reproduce PyTorch: {worst}; no bundle written")


def _manifest(
    cfg: GLIPConfig,
    name: str,
    source: dict[str, Any],
    precision: str,
    deform: str,
    graphs: dict[str, Path],
    parity: dict[str, Any],
    work: Path,
    weights: dict[str, Any] | None,
    flops: dict[str, Any],
) -> dict[str, Any]:
    import onnxruntime

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "glipcli_version": __version__,
        "source": source,
        "precision": precision,
        "opset": G.OPSET,
        "deform_conv": deform,
        "onnxruntime_min_version": MIN_ORT_VERSION,
        "exported_with": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "config": cfg.to_dict(),
        "preprocessing": dataclasses.asdict(cfg.input),
        "max_query_len": cfg.language.max_query_len,
        "strides": list(cfg.anchors.strides),
        "graphs": {g: {"file": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size} for g, p in graphs.items()},
        "flops": flops,
        "tokenizer": {"file": "tokenizer.json", "sha256": sha256_file(work / "tokenizer.json")},
        "parity": {k: (v.to_dict() if isinstance(v, Parity) else v) for k, v in parity.items()},
        "prompts": {},
    }
    if weights is not None:  # fp32 bundles: the PyTorch model can be rebuilt from them (export.rebuild)
        manifest[MANIFEST_KEY] = weights
    return manifest


def move_into_place(work: Path, out: Path) -> None:
    """Replace ``out`` by the finished folder ``work`` in two renames (never a half-written bundle)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(out)


def build_from_checkpoint(
    config: str | None, weights: Path, bert_config: str | None = None, default: str | None = "glip-t"
) -> tuple[GLIP, dict[str, Any]]:
    """The model of ``config`` with ``weights`` loaded, and the provenance for the manifest.
    Without ``config``: the config the checkpoint carries, else the preset ``default``."""
    cfg = checkpoint_config(weights, config, bert_config, default)
    model = build_model(cfg)
    load_weights(model, read_state_dict(weights), source=f"checkpoint {weights}")
    source = checkpoint_source(weights, str(config) if config is not None else cfg.name)
    return model.eval(), source
