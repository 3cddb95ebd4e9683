"""glip-nano's pre-training: a GLIP from scratch (text encoder from MiniLM) on synthetic grounding data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from glipcli.config import GLIPConfig
from glipcli.errors import ConfigError
from glipcli.presets import load_config
from glipcli.tokenizer import build_tokenizer
from glipcli.train.pretrained import init_token_projection, load_minilm
from glipcli.train.synth import TRAIN_COMBOS, SyntheticGrounding, sample_captions
from glipcli.train.trainer import StepCallback, TrainConfig, Trainer, initial_model

_MAX_PHRASES = 40  # phrases per detection prompt: up to 40 of the 56 trained names, as in long class lists
_PROJECTION_CAPTIONS = 300  # captions whose tokens set the token projection's principal directions


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
    if train_cfg.threads:  # the projection's SVD sums in a thread-dependent order: same threads, same bits
        torch.set_num_threads(train_cfg.threads)
    model = initial_model(cfg, train_cfg.seed)
    load_minilm(model)
    tokenizer = build_tokenizer()
    captions = sample_captions(train_cfg.seed, _PROJECTION_CAPTIONS, TRAIN_COMBOS, max_phrases=_MAX_PHRASES)
    init_token_projection(model, captions, tokenizer)
    train_cfg = dataclasses.replace(train_cfg, freeze_token_projection=True)
    source = SyntheticGrounding(
        seed=train_cfg.seed,
        length=train_cfg.steps * train_cfg.batch_size,
        combos=TRAIN_COMBOS,
        max_phrases=_MAX_PHRASES,
    )
    return Trainer(model, source, tokenizer, train_cfg, out).fit_new_or_resumed(resume, on_step)
