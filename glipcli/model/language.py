"""The BERT language backbone (GLIP_SPEC section 4.2), built from a config, never from the hub."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers import BertConfig, BertModel

from glipcli.config import LanguageConfig


def bert_config(values: dict[str, Any]) -> BertConfig:
    """A BertConfig with eager attention: exact, exportable, and what the reference used."""
    cfg = BertConfig(**values, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    cfg._attn_implementation = "eager"
    return cfg


class _Body(nn.Module):
    def __init__(self, cfg: LanguageConfig) -> None:
        super().__init__()
        self.model = BertModel(bert_config(cfg.bert), add_pooling_layer=False)


class LanguageBackbone(nn.Module):
    """token ids -> (hidden, embedded): last-layer features, and the same with padding zeroed
    (GLIP's N_LAYERS = 1, the setting of every released model)."""

    def __init__(self, cfg: LanguageConfig) -> None:
        super().__init__()
        self.body = _Body(cfg)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        # BertModel's embeddings and encoder, called with an additive mask we build ourselves:
        # transformers' own mask helpers do not trace to ONNX with a dynamic text length.
        bert = self.body.model
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        embeddings = bert.embeddings(
            input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids), position_ids=positions
        )
        dtype = embeddings.dtype
        additive = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        hidden = bert.encoder(embeddings, attention_mask=additive).last_hidden_state
        embedded = hidden * attention_mask.unsqueeze(-1).to(dtype)
        return hidden, embedded
