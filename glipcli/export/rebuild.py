"""The PyTorch model back from a bundle: prompt tuning and fine-tuning need no checkpoint.

A bundle's graphs already hold every weight, but not under the model's names: constant folding
stores a Linear's weight transposed for MatMul under a generated name, gathers the Swin
relative-position tables into per-block constants, folds eval-mode BatchNorm into the conv
before it, and the compact export stores weights as fp16 or int8 rows behind Cast nodes. So the
exporter writes, beside the graphs, ``weights.safetensors``: an index (model key -> graph,
initializer, transposed or not), found by matching values bit for bit against the graphs'
weights as they compute with them, plus the few tensors no initializer holds as they are (the
folded ones, and small tensors). Nothing about the folding is assumed, so a new module (a
convolutional stem with BatchNorm) is carried whatever the exporter does to it; and since every
weight is the exported model's exactly, the rebuilt model gives the bundle's detections. For
glip-nano that costs 0.47 MB (1.4 % of the bundle) where even an int8 state dict would add 23 MB.

Only fp32 bundles carry it: fp16 and int8 graphs hold rounded or quantised weights, and a model
rebuilt from them would not be the one they were verified against.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from glipcli.digests import sha256_file
from glipcli.errors import BundleError, ExportError
from glipcli.export.compact import stored_weights
from glipcli.model.checkpoint import load_weights
from glipcli.model.glip import GLIP, build_model
from glipcli.runtime.bundle import Bundle

WEIGHTS_FILE = "weights.safetensors"
MANIFEST_KEY = "pytorch_weights"
INDEX_KEY = "glipcli_index"
MIN_INDEXED = 1024  # smaller tensors are stored: cheaper than their index entry, and often Constant nodes
TUNABLE = "rpn.tunable_linear.weight"


def _digest(array: np.ndarray) -> tuple[str, int, bytes]:
    """Equal values in the same order, equal digests, whatever the shape (the fusion attention's
    projections are folded reshaped), and -0.0 counts as 0.0 (rounding leaves -0.0 where the
    compact graph's int8 rows hold 0, and the two compute alike)."""
    array = np.ascontiguousarray(array + 0.0 if array.dtype.kind == "f" else array)
    return array.dtype.str, array.size, hashlib.blake2b(array.tobytes(), digest_size=16).digest()


def _graph_index(graphs: dict[str, Path]) -> dict[tuple, tuple[str, str, bool]]:
    """Value digest -> (graph, initializer, transposed) for every weight of the graphs."""
    found: dict[tuple, tuple[str, str, bool]] = {}
    for graph, path in graphs.items():
        for name, values in stored_weights(onnx.load(str(path))).items():
            if values.size < MIN_INDEXED:
                continue
            found.setdefault(_digest(values), (graph, name, False))
            if values.ndim == 2:
                found.setdefault(_digest(values.T), (graph, name, True))
    return found


def write_weights(model: GLIP, graphs: dict[str, Path], work: Path) -> dict[str, Any]:
    """Write ``work/weights.safetensors`` for ``model`` exported as ``graphs``; returns its
    manifest entry. Reads the result back and refuses a bundle it cannot rebuild ``model`` from."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    found = _graph_index(graphs)
    index, stored = {}, {}
    for key, tensor in state.items():
        hit = found.get(_digest(tensor.numpy())) if tensor.numel() >= MIN_INDEXED else None
        if hit is not None:
            index[key] = [*hit, list(tensor.shape)]
        elif tensor.dtype == torch.float32 and torch.equal(tensor.half().float(), tensor):
            stored[key] = tensor.half()  # compact bundles' weights: half the bytes, read back exactly
        else:
            stored[key] = tensor.clone()
    path = work / WEIGHTS_FILE
    save_file(stored, str(path), metadata={INDEX_KEY: json.dumps(index, separators=(",", ":"))})
    rebuilt = _read(path, graphs)
    wrong = [k for k in state if k not in rebuilt or not torch.equal(rebuilt[k], state[k])]
    if wrong:
        raise ExportError(f"the bundle's weights do not rebuild the model ({', '.join(wrong[:3])}); no bundle written")
    return {
        "file": WEIGHTS_FILE,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "from_graphs": len(index),
        "stored": len(stored),
    }


def _read(path: Path, graphs: dict[str, Path]) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as fh:
        index = json.loads((fh.metadata() or {}).get(INDEX_KEY, "{}"))
        stored = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
    state = {k: v.float() if v.dtype == torch.float16 else v for k, v in stored.items()}
    needed = {entry[0] for entry in index.values()}
    weights = {graph: stored_weights(onnx.load(str(graphs[graph]))) for graph in needed}
    for key, (graph, name, transposed, shape) in index.items():
        values = weights[graph][name]
        state[key] = torch.from_numpy(np.array(values.T if transposed else values)).reshape(shape)  # a copy
    return state


def bundle_state_dict(bundle: Bundle) -> dict[str, torch.Tensor]:
    """The state dict ``bundle`` was exported from, bit for bit, or a one-line BundleError."""
    entry = bundle.manifest.get(MANIFEST_KEY)
    if bundle.precision != "fp32":
        raise BundleError(
            f"bundle {bundle.path} holds {bundle.precision} graphs, not the weights to learn from: use the fp32 "
            "bundle of the same model (glip export without --fp16/--int8), or pass --weights CHECKPOINT"
        )
    if not isinstance(entry, dict) or "file" not in entry or "sha256" not in entry:
        raise BundleError(
            f"bundle {bundle.path} carries no PyTorch weights (exported by an older glip export): re-export it "
            "with this glip export, or pass --weights CHECKPOINT"
        )
    path = bundle.path / entry["file"]
    if not path.is_file():
        raise BundleError(f"bundle {bundle.path}: weights file {entry['file']} is missing")
    if sha256_file(path) != entry["sha256"]:
        raise BundleError(f"bundle {bundle.path}: {entry['file']} does not match its sha256 (corrupted or tampered)")
    try:
        return _read(path, {g: bundle.graph_path(g) for g in bundle.manifest["graphs"]})
    except (KeyError, ValueError, OSError, SafetensorError) as exc:
        raise BundleError(f"bundle {bundle.path}: cannot rebuild the model from its graphs ({exc})") from None


def bundle_model(bundle: Bundle, *, prompt_tuning: bool = False) -> GLIP:
    """The PyTorch model of ``bundle`` (eval mode). ``prompt_tuning`` adds GLIP's zero-initialised
    ``rpn.tunable_linear`` when the model has none."""
    cfg = bundle.config
    if prompt_tuning and not cfg.head.prompt_tuning:
        cfg = cfg.replace(head=dataclasses.replace(cfg.head, prompt_tuning=True))
    state = bundle_state_dict(bundle)
    model = build_model(cfg)
    if cfg.head.prompt_tuning and TUNABLE not in state:
        state[TUNABLE] = torch.zeros_like(model.rpn.tunable_linear.weight)
    load_weights(model, state, source=f"bundle {bundle.path}")
    return model.eval()
