"""The models the benchmarks compare, as eager PyTorch and as cached ONNX bundles.

- ``reduced``: the reference oracle's reduced GLIP (real checkpoint, GLIP-T architecture, small widths);
- ``glip-t``: GLIP-T-sized (231M parameters) with seeded random weights: speed does not depend on
  the values of dense fp32 weights, and no trained GLIP-T checkpoint is available offline.

Exports take seconds (reduced) to minutes (GLIP-T), so bundles are cached under ``bench/.cache``
and reused while their manifest records the weights of the model built now and the digest of
the export code that made them (a change to glipcli/export re-exports).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glipcli.config import GLIPConfig
from glipcli.errors import ConfigError

if TYPE_CHECKING:
    from glipcli.model.glip import GLIP

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(__file__).resolve().parent / ".cache"
MODELS = ("reduced", "glip-t")
GLIP_T_SEED = 0


def reference_dir(explicit: str | Path | None = None) -> Path:
    """The reference oracle folder: ``explicit``, $GLIP_REFERENCE, or shared/reference beside the repo."""
    candidates = [explicit, os.environ.get("GLIP_REFERENCE"), REPO / "shared" / "reference"]
    candidates.append(REPO.parent / "shared" / "reference")
    for c in candidates:
        if c and (Path(c) / "reduced.pth").is_file():
            return Path(c)
    raise ConfigError("reference oracle not found: pass --reference DIR or set GLIP_REFERENCE (needs reduced.pth)")


def build(name: str, reference: Path | None = None) -> GLIP:
    """The eager model of ``name`` in eval mode, weights loaded (torch is imported here only)."""
    import torch

    from glipcli.export.exporter import build_from_checkpoint
    from glipcli.model.glip import build_model
    from glipcli.presets import preset

    if name == "reduced":
        ref = reference_dir(reference)
        model, _ = build_from_checkpoint(str(ref / "config_reduced.yaml"), ref / "reduced.pth")
        return model
    if name == "glip-t":
        torch.manual_seed(GLIP_T_SEED)
        return build_model(preset("glip-t")).eval()
    raise ConfigError(f"unknown benchmark model {name!r}; choose one of: {', '.join(MODELS)}")


def weights_digest(model: GLIP) -> str:
    """sha256 over every tensor of the state dict: identifies the weights a cached bundle holds."""
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def exporter_digest() -> str:
    """sha256 of glipcli's export code: a bundle exported by other code is stale."""
    import glipcli.export

    digest = hashlib.sha256()
    for path in sorted(Path(glipcli.export.__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cached_bundle(
    model: GLIP,
    name: str,
    precision: str = "fp32",
    cache: Path = CACHE,
    deform: str = "grid_sample",
    log: Callable[[str], None] = print,
) -> Path:
    """A verified bundle of ``model`` at ``precision``, exported unless the cache holds one of these
    weights made by this export code."""
    from glipcli.export.exporter import export_bundle

    suffix = "" if deform == "grid_sample" else f"-{deform}"
    out = Path(cache) / f"{name}-{precision}{suffix}"
    source = {"checkpoint": f"bench model {name}", "sha256": weights_digest(model), "exporter": exporter_digest()}
    if _cached_source(out) == source:
        return out
    log(f"exporting {name} ({precision}{suffix}) to {out}: once, then cached")
    return export_bundle(model, out, name=name, source=source, precision=precision, deform=deform, overwrite=True).path


def _cached_source(folder: Path) -> dict[str, Any] | None:
    try:
        manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest.get("source")


def scene(cfg: GLIPConfig, height: int, width: int) -> np.ndarray:
    """A (1, 3, H', W') model input for a synthetic scene whose resize lands exactly on (height, width)."""
    import dataclasses

    from glipcli.export.verify import sample_image
    from glipcli.preprocess import prepare_image

    size = dataclasses.replace(cfg.input, min_size=min(height, width), max_size=max(height, width))
    return prepare_image(sample_image(height, width), size).tensor[None]
