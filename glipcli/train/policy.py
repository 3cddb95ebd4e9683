"""What ``glip train`` and ``glip tune`` make of the options a user gives: defaults, checks, the run's
TrainConfig and the bundle exported at the end.

The command line only parses and prints; the choices live here, once, so the Python API and the
commands train alike. torch is imported only when a run is built (``--help`` stays fast).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glipcli.errors import ConfigError
from glipcli.train.recipe import NANO_PRETRAIN

if TYPE_CHECKING:
    from glipcli.export.exporter import ExportResult
    from glipcli.model.glip import GLIP
    from glipcli.train.trainer import TrainConfig

MODES = {"full": "all", "head": "head", "prompt": "prompt"}  # --mode -> TrainConfig.trainable
DEFAULT_LR = {"pretrain": NANO_PRETRAIN["lr"], "full": 1e-4, "head": 1e-3, "prompt": 5e-2}
FINETUNE = {"steps": 3000, "batch_size": 8, "precision": "fp32"}
"""Defaults of fine-tuning; pre-training uses NANO_PRETRAIN."""
RESUMED = ("steps", "batch_size", "lr", "precision", "seed", "warmup")
"""Settings a resumed run takes from its checkpoint unless given again (fine-tuning derives its warm-up from
--steps; a resumed run keeps the one it started with, so --steps can extend it)."""
PROMPT_WEIGHT_DECAY = 0.25  # GLIP's prompt tuning recipe: BASE_LR 0.05, WEIGHT_DECAY 0.25
TUNE = {"steps": 200, "batch_size": 4, "lr": 1e-2}
"""Defaults of ``glip tune``: a few labelled images learn a prompt in a few hundred steps. At GLIP's
0.05 an offset row grew as large as the text feature it is added to within 25 steps; 0.01 tuned
glip-nano's 56 names to +0.039 mAP@0.5 on 200 fresh images (K = 5) where 0.05 gave +0.01 or less
(docs/learning.md).
``glip train --mode prompt`` keeps GLIP's rate."""


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX).

    Without it PyTorch emulates bfloat16 autocast: on a 2-core AVX2 EPYC a glip-nano step took
    over 4.9 s under bf16 against 1.0 s in fp32 (both on a busy machine; fp32 idle: 0.49 s), so
    emulated bf16 would stretch the recipe's 13,000 steps to many hours.
    """
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume none, fp32 is never slow
        return False


def warmup_steps(steps: int) -> int:
    """Linear warm-up of fine-tuning and prompt tuning: a tenth of the run, at most 300 steps."""
    return min(300, max(1, steps // 10))


def check_train_options(
    *,
    mode: str,
    data: Path | None,
    images: Path | None,
    init: str | None,
    pseudo: Path | None,
    pseudo_images: Path | None,
    export_to: Path | None,
    compact: bool,
) -> None:
    """Refuse options that do not go together, before anything loads or trains."""
    if mode not in MODES:
        raise ConfigError(f"unknown --mode {mode!r}: use one of {', '.join(MODES)}")
    if data is None:
        given = [flag for flag, value in (("--images", images), ("--init", init), ("--pseudo", pseudo)) if value]
        if given or mode != "full":
            raise ConfigError(f"{', '.join(given) or '--mode'} needs --data (fine-tuning on labelled images)")
    elif init is None:
        raise ConfigError("fine-tuning needs --init: a bundle (e.g. glip-nano), a checkpoint file or a preset")
    if pseudo is None and pseudo_images is not None:
        raise ConfigError("--pseudo-images needs --pseudo")
    if compact and export_to is None:
        raise ConfigError("--compact applies to the exported bundle: add --export FOLDER")
    if export_to is not None and export_to.exists() and any(export_to.iterdir()):
        raise ConfigError(f"--export {export_to} already holds files: remove them or export elsewhere")


def train_config(
    *,
    finetuning: bool,
    mode: str = "full",
    steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    precision: str | None = None,
    seed: int | None = None,
    threads: int | None = None,
    resumed: dict[str, Any] | None = None,
) -> TrainConfig:
    """The run of ``glip train``: glip-nano's recipe for pre-training, FINETUNE's defaults for fine-tuning
    in ``mode``; options given (not None) override either. The recipe's bf16 becomes fp32 on a CPU
    without native bfloat16 (:func:`native_bf16`); asked for with ``precision``, bf16 is kept.

    ``resumed`` (the settings a run's checkpoint holds, ``trainer.run_setup``) replaces the defaults of
    the options a user can give, warm-up included, so ``--resume`` needs none of them again."""
    from glipcli.train.trainer import TrainConfig

    kind = mode if finetuning else "pretrain"
    settings: dict[str, Any] = dict(FINETUNE if finetuning else NANO_PRETRAIN)
    settings.update(lr=DEFAULT_LR[kind], seed=0, threads=threads, checkpoint_every=100)
    if finetuning:
        settings.update(trainable=MODES[mode], warmup=warmup_steps(steps or settings["steps"]))
        if mode == "prompt":
            settings.update(weight_decay=PROMPT_WEIGHT_DECAY)
    if resumed is not None:
        settings.update({k: resumed[k] for k in RESUMED if k in resumed and (finetuning or k != "warmup")})
    elif precision is None and settings["precision"] == "bf16" and not native_bf16():
        settings["precision"] = "fp32"
    given = (("steps", steps), ("batch_size", batch_size), ("lr", lr), ("precision", precision), ("seed", seed))
    settings.update({k: v for k, v in given if v is not None})
    return TrainConfig(**settings)


def tune_config(
    *,
    steps: int = TUNE["steps"],
    batch_size: int = TUNE["batch_size"],
    lr: float = TUNE["lr"],
    seed: int = 0,
    threads: int | None = None,
) -> TrainConfig:
    """The run of ``glip tune``: GLIP's prompt tuning recipe (only the prompt learns)."""
    from glipcli.train.trainer import TrainConfig

    return TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup=warmup_steps(steps),
        weight_decay=PROMPT_WEIGHT_DECAY,
        seed=seed,
        threads=threads,
        trainable="prompt",
        checkpoint_every=50,
    )


def export_trained(
    weights: Path,
    out: Path,
    *,
    model: GLIP | None = None,
    config: str | None = None,
    compact: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> ExportResult:
    """``glip train --export``: the trained ``weights`` as a verified bundle, as ``glip export`` makes one.

    ``model`` is the trained model when this process holds it (fine-tuning); else it is rebuilt from
    ``weights`` with ``config`` (pre-training: glip-nano unless told).
    """
    from glipcli.export.exporter import build_from_checkpoint, export_bundle
    from glipcli.model.checkpoint import checkpoint_source
    from glipcli.model.rounding import round_for_export

    if model is None:
        model, source = build_from_checkpoint(config, weights, default="glip-nano")
    else:
        source = checkpoint_source(weights, model.cfg.name)
    if compact:
        source = round_for_export(model, source)
    return export_bundle(model.eval(), out, name=model.cfg.name, source=source, log=log)
