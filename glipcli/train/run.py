"""Training entry points the CLI calls: glip-nano pre-training on synthetic grounding data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from glipcli.config import GLIPConfig, load_config
from glipcli.errors import ConfigError
from glipcli.tokenizer import build_tokenizer
from glipcli.train.pretrained import load_minilm
from glipcli.train.synth import TRAIN_COMBOS, SyntheticGrounding
from glipcli.train.trainer import TrainConfig, Trainer, initial_model

StepCallback = Callable[[int, dict[str, float]], None]


def pretrain_synthetic(
    config: str | GLIPConfig,
    out: Path,
    train_cfg: TrainConfig,
    *,
    resume: bool = False,
    on_step: StepCallback | None = None,
) -> Path:
    """Pre-train a GLIP from scratch (text encoder from MiniLM) on synthetic shapes.

    Returns the final weights (``out/model.pth``) in the official checkpoint layout.
    """
    cfg = load_config(config) if isinstance(config, str) else config
    if cfg.language.bert["hidden_size"] != 384 or cfg.language.bert["num_hidden_layers"] != 6:
        raise ConfigError(
            f"synthetic pre-training starts the text encoder from the 6-layer, 384-wide MiniLM; "
            f"config {cfg.name!r} has a {cfg.language.bert['num_hidden_layers']}-layer, "
            f"{cfg.language.bert['hidden_size']}-wide BERT"
        )
    model = initial_model(cfg, train_cfg.seed)
    load_minilm(model)
    source = SyntheticGrounding(seed=train_cfg.seed, length=train_cfg.steps * train_cfg.batch_size, combos=TRAIN_COMBOS)
    trainer = Trainer(model, source, build_tokenizer(), train_cfg, out)
    if resume:
        trainer.resume()
    elif (Path(out) / "last.pt").exists():
        raise ConfigError(f"{out} already holds a training run: pass --resume to continue it, or choose another --out")
    return trainer.fit(on_step)
