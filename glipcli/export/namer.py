"""A bundle with a region namer (glipcli.model.namer): a copy of the bundle, plus ``namer.onnx``,
checked against the PyTorch namer at several crop counts and prompt lengths like every graph.

The bundle's calibrated thresholds were chosen for GLIP's scores alone; the namer changes the
scores, so the copy drops them (and their input size): run ``glip calibrate`` on it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glipcli.digests import sha256_file
from glipcli.errors import BundleError
from glipcli.export.graphs import OPSET
from glipcli.io.coco import write_text_atomic
from glipcli.model.namer import NamerConfig, RegionNamer
from glipcli.runtime.bundle import MANIFEST, load_bundle
from glipcli.runtime.sessions import make_session

NAMER_FILE = "namer.onnx"
TOLERANCE = 1e-4
CHECKS = ((1, 5), (7, 40), (100, 256))
"""(crops, tokens) the graph is compared at: shapes must stay dynamic."""


def _export(namer: RegionNamer, cfg: NamerConfig, path: Path) -> None:
    crops = torch.rand(3, 3, cfg.crop, cfg.crop)
    text = torch.randn(11, cfg.text_dim)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            namer.eval(),
            (crops, text),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["crops", "text_features"],
            output_names=["token_logits"],
            dynamic_axes={
                "crops": {0: "boxes"},
                "text_features": {0: "tokens"},
                "token_logits": {0: "boxes", 1: "tokens"},
            },
            do_constant_folding=True,
        )


def _max_error(namer: RegionNamer, cfg: NamerConfig, path: Path) -> float:
    session = make_session(path, "cpu")
    rng = np.random.default_rng(0)
    worst = 0.0
    for boxes, tokens in CHECKS:
        crops = rng.random((boxes, 3, cfg.crop, cfg.crop), dtype=np.float32)
        text = rng.normal(size=(tokens, cfg.text_dim)).astype(np.float32)
        with torch.no_grad():
            ref = namer(torch.from_numpy(crops), torch.from_numpy(text)).numpy()
        (ours,) = session.run(None, {"crops": crops, "text_features": text})
        worst = max(worst, float(np.abs(ours - ref).max() / max(1.0, float(np.abs(ref).max()))))
    return worst


def check_new_folder(out: str | Path) -> Path:
    """``out`` as a Path, if a bundle may be written there: checked before minutes of training."""
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise BundleError(f"{target} exists and is not empty: choose a new folder for the bundle")
    return target


def write_namer_bundle(
    source: str | Path, out: str | Path, namer: RegionNamer, cfg: NamerConfig, training: dict[str, Any]
) -> Path:
    """``out``: ``source`` with ``namer`` added (replacing any namer it had), uncalibrated."""
    bundle = load_bundle(source)
    target = check_new_folder(out)
    with tempfile.TemporaryDirectory(dir=target.parent if target.parent.exists() else None) as tmp:
        work = Path(tmp) / "bundle"
        shutil.copytree(bundle.path, work)
        _export(namer, cfg, work / NAMER_FILE)
        error = _max_error(namer, cfg, work / NAMER_FILE)
        if error > TOLERANCE:
            raise BundleError(f"the exported namer differs from PyTorch by {error:.2e} (limit {TOLERANCE:.0e})")
        manifest = json.loads((work / MANIFEST).read_text(encoding="utf-8"))
        manifest.pop("calibration", None)
        manifest["namer"] = {
            "file": NAMER_FILE,
            "sha256": sha256_file(work / NAMER_FILE),
            "bytes": (work / NAMER_FILE).stat().st_size,
            "config": cfg.to_dict(),
            "parity": {"max_error": error, "tolerance": TOLERANCE, "checked": [list(c) for c in CHECKS]},
            "training": training,
        }
        write_text_atomic(work / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.rmdir()
        shutil.move(str(work), target)
    load_bundle(target)
    return target
