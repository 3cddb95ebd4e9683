"""Fine-tuning any GLIP on labelled detection data (gold, plus a teacher's pseudo-labels), from the
weights :func:`initial_weights` finds: a checkpoint, a bundle or a preset's released checkpoint."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from glipcli.config import GLIPConfig
from glipcli.errors import BundleError, CheckpointError, ConfigError
from glipcli.model.checkpoint import checkpoint_source, load_weights, read_state_dict
from glipcli.model.glip import GLIP
from glipcli.presets import PRESETS, checkpoint_config
from glipcli.runtime.bundle import load_bundle, resolve_model
from glipcli.tokenizer import build_tokenizer
from glipcli.train.coco_data import DetectionSource
from glipcli.train.targets import default_targets, with_targets
from glipcli.train.trainer import StepCallback, TrainConfig, Trainer, initial_model

TUNABLE = "rpn.tunable_linear.weight"


def initial_weights(
    init: str | Path, config: str | GLIPConfig | None = None, *, prompt_tuning: bool = False
) -> tuple[GLIP, dict[str, Any]]:
    """The model to fine-tune, loaded strictly: a checkpoint file, a model bundle (a folder, or a
    name in exported/ or the model cache: its weights come from its own graphs, see
    glipcli.export.rebuild), or a preset's released checkpoint.

    ``config`` defaults to the preset named by ``init``, or to the config our own checkpoints
    carry (``model.pth``, ``last.pt``); official checkpoints need it, bundles carry theirs.
    ``prompt_tuning`` adds GLIP's zero-initialised ``rpn.tunable_linear`` when the model has none.
    Returns the model and its provenance.
    """
    spec = str(init)
    path = Path(spec).expanduser()
    bundle = None if path.is_file() else _bundle_path(spec)
    if bundle is not None:
        return _bundle_weights(bundle, config, prompt_tuning)
    if spec in PRESETS and not path.is_file():
        from glipcli.export.weights import default_weights, resolve_weights

        if PRESETS[spec].checkpoint is None:
            raise ConfigError(
                f"preset {spec!r} has no released weights and no bundle of that name was found: "
                "pass --init CHECKPOINT or BUNDLE"
            )
        path = resolve_weights(default_weights(spec))
        config = config or spec
    elif not path.is_file():
        raise CheckpointError(
            f"checkpoint or bundle {path} not found "
            f"(give a checkpoint file, a bundle or a preset: {', '.join(PRESETS)})"
        )
    state = read_state_dict(path)
    cfg = config if isinstance(config, GLIPConfig) else checkpoint_config(path, config)
    if prompt_tuning and not cfg.head.prompt_tuning:
        cfg = cfg.replace(head=dataclasses.replace(cfg.head, prompt_tuning=True))
    model = initial_model(cfg, 0)
    if cfg.head.prompt_tuning and TUNABLE not in state:
        state[TUNABLE] = torch.zeros_like(model.rpn.tunable_linear.weight)
    load_weights(model, state, source=f"checkpoint {path}")
    return model, checkpoint_source(path, cfg.name)


def _bundle_path(spec: str) -> Path | None:
    """The bundle ``spec`` names (a folder, or a name glip detect --model would find), or None.
    Names of bundles come before presets: an exported model is used offline, as it is."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists() or os.sep in spec or spec.startswith("."):
        return None
    try:
        return resolve_model(spec)
    except BundleError:
        return None


def _bundle_weights(path: Path, config: str | GLIPConfig | None, prompt_tuning: bool) -> tuple[GLIP, dict[str, Any]]:
    from glipcli.export.rebuild import bundle_model

    if isinstance(config, str):
        raise ConfigError(f"--config does not apply to bundle {path}: a bundle carries its model's config")
    bundle = load_bundle(path)
    torch.manual_seed(0)  # as initial_model: the RNG state a run starts from does not depend on where weights came from
    model = bundle_model(bundle, prompt_tuning=prompt_tuning)
    source = bundle.manifest.get("source", {})
    return model, {
        "bundle": bundle.name,
        "checkpoint": source.get("checkpoint", "?"),
        "sha256": source.get("sha256", ""),
        "config": model.cfg.name,
    }


def finetune(
    model: GLIP,
    data: DetectionSource,
    out: Path,
    train_cfg: TrainConfig,
    *,
    tokenizer: Any = None,
    resume: bool = False,
    targets: str | None = None,
    on_step: StepCallback | None = None,
) -> Path:
    """Fine-tune ``model`` on ``data`` with the trainer and loss of pre-training.

    ``train_cfg.trainable`` picks what learns: ``all`` (full fine-tuning; the language backbone
    only if ``text_lr`` > 0), ``head`` (GLIP's linear probing) or ``prompt`` (prompt tuning: the
    model needs ``rpn.tunable_linear``, see :func:`initial_weights`). ``targets`` grounds the boxes
    per ``words`` or per ``phrases``; by default as the model scores a phrase
    (glipcli.train.targets: per word for glip-nano). Returns ``out/model.pth``.
    """
    data = with_targets(data, targets or default_targets(model.cfg))
    if train_cfg.trainable == "prompt" and not model.cfg.head.prompt_tuning:
        raise ConfigError(
            "prompt tuning needs a model with rpn.tunable_linear: initial_weights(..., prompt_tuning=True)"
        )
    data = data.with_length(max(len(data), train_cfg.steps * train_cfg.batch_size))
    return Trainer(model, data, tokenizer or build_tokenizer(), train_cfg, out).fit_new_or_resumed(resume, on_step)
