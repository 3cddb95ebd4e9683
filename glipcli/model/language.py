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
    """token ids -> (hidden, embedded): last-layer features, and the same with padding zeroed."""

    def __init__(self, cfg: LanguageConfig) -> None:
        super().__init__()
        self.n_layers = cfg.n_layers
        self.body = _Body(cfg)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        out = self.body.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
            output_hidden_states=self.n_layers > 1,
        )
        hidden = out.last_hidden_state
        if self.n_layers > 1:
            layers = torch.stack(out.hidden_states[-self.n_layers :], 1)
            features = layers.mean(1) / self.n_layers  # GLIP divides the mean once more
        else:
            features = hidden
        embedded = features * attention_mask.unsqueeze(-1).to(features.dtype)
        return hidden, embedded
