"""Loading official GLIP checkpoints (and our own) safely and strictly (GLIP_SPEC section 10).

Accepted: ``{"model": state_dict, ...}`` or a bare state dict, keys with or without the
``module.`` prefix of DistributedDataParallel, ``.pth``/``.pt``/``.bin`` files read with
``torch.load(weights_only=True)`` and ``.safetensors``. Every tensor of the model must be
filled; extra training entries (optimizer, scheduler, model_ema, BERT position_ids) are ignored.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from glipcli.digests import sha256_file
from glipcli.errors import CheckpointError

# Keys a checkpoint may carry that no GLIP inference module uses.
_IGNORED_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")
_IGNORED_PARTS = ("pooler.", "resizer.", "mlm_head.")


def checkpoint_source(path: str | Path, config: str) -> dict[str, str]:
    """The manifest's ``source`` for a model read from the checkpoint at ``path``: what tuning
    later checks a ``--weights`` file against (glipcli.train.tune)."""
    return {"checkpoint": Path(path).name, "sha256": sha256_file(path), "config": config}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict inside a checkpoint file, float tensors cast to fp32."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if path.suffix == ".safetensors":
        raw = _read_safetensors(path)
    else:
        raw = _read_torch(path)
    state = raw["model"] if isinstance(raw, Mapping) and isinstance(raw.get("model"), Mapping) else raw
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"checkpoint {path} holds no state dict (found {type(state).__name__})")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(state):
        odd = next(k for k, v in state.items() if not isinstance(v, torch.Tensor))
        raise CheckpointError(f"checkpoint {path}: entry {odd!r} is not a tensor")
    keys = list(tensors)
    if all(k.startswith("module.") for k in keys):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}


def stored_config(path: str | Path) -> Mapping | None:
    """The model config a checkpoint of ``glip train`` carries (``config``), or None: official
    checkpoints and safetensors files do not say which model they are."""
    path = Path(path)
    if path.suffix == ".safetensors" or not path.is_file():
        return None
    raw = _read_torch(path, mmap=True)  # only the pickled structure is read, not the tensors' bytes
    stored = (raw.get("config") or raw.get("model_config")) if isinstance(raw, Mapping) else None
    return stored if isinstance(stored, Mapping) else None


def _read_torch(path: Path, mmap: bool = False) -> object:
    """A torch checkpoint, safely (tensors and plain containers only); ``mmap`` maps the tensors'
    storage instead of reading it, for the zip format (torch >= 1.6; older files are read whole)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if mmap:
                try:
                    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError:  # the legacy (pre-zip) format cannot be mapped
                    pass
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if unsafe:
            raise CheckpointError(
                f"checkpoint {path} was refused: loading it would run code ({unsafe.group(1)}); "
                "only tensors and plain containers are loaded"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a checkpoint the safe loader can read (refused, nothing was run)"
        ) from None
    except Exception as exc:  # truncated zips, text files, foreign pickles: torch raises many types
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt, truncated or not a PyTorch checkpoint ({detail})"
        ) from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is not a valid safetensors file: {exc}") from None


def _ignorable(key: str) -> bool:
    return key.endswith(_IGNORED_SUFFIXES) or any(part in key for part in _IGNORED_PARTS)


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Fill every parameter and buffer of ``model`` or fail naming what does not fit."""
    expected = model.state_dict()
    given = {k: v for k, v in state.items() if not _ignorable(k)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(
        f"{k} {tuple(given[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(expected) & set(given)
        if given[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} with wrong shape (checkpoint vs model): {_few(wrong)}")
        if missing:
            parts.append(f"{len(missing)} missing: {_few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_few(unexpected)}")
        raise CheckpointError(f"{source} does not fit this architecture: " + "; ".join(parts))
    model.load_state_dict({k: given[k] for k in expected}, strict=True)


def _few(items: list[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def load_checkpoint(model: nn.Module, path: str | Path) -> str:
    """Load ``path`` into ``model``; returns the file's sha256."""
    load_weights(model, read_state_dict(path), source=f"checkpoint {path}")
    return sha256_file(path)
