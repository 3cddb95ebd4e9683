"""glip-nano's start: the text side of the token dot product from the captions' principal directions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from glipcli.errors import ConfigError
from glipcli.model.glip import build_model
from glipcli.tokenizer import build_tokenizer
from glipcli.train.pretrained import init_token_projection
from glipcli.train.synth import sample_captions
from tests.conftest import tiny_config


def _projected_tokens(model, captions, tokenizer):
    """What the head scores against: projected normalised text features of every caption token."""
    out = []
    with torch.no_grad():
        for caption in captions:
            ids = torch.tensor([tokenizer.encode(caption).ids])
            text = model.encode_text(ids, torch.ones_like(ids))[0]
            out.append(model.rpn.head.dot_product_projection_text(F.normalize(text, dim=-1) / 2.0))
    return torch.cat(out)


def _shared_fraction(tokens):
    return float(tokens.mean(0).norm() / tokens.norm(dim=1).mean())


@pytest.mark.parametrize("norm", [1.0, 3.0])
def test_projection_is_centred_principal_and_scaled(norm):
    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    tokenizer = build_tokenizer()
    captions = sample_captions(0, 120, max_phrases=40)
    before = _projected_tokens(model, captions, tokenizer)
    assert _shared_fraction(before) > 0.5  # a random projection: most of each vector is one shared direction
    init_token_projection(model, captions, tokenizer, norm)
    after = _projected_tokens(model, captions, tokenizer)
    assert _shared_fraction(after) < 1e-3
    assert after.norm(dim=1).mean().item() == pytest.approx(norm, rel=1e-4)
    weight = model.rpn.head.dot_product_projection_text.weight.double()
    gram = weight @ weight.T
    assert torch.allclose(gram, gram[0, 0] * torch.eye(len(gram), dtype=gram.dtype), atol=1e-5 * gram[0, 0].item())
    # Principal: the projection keeps more of the tokens' spread than any other subspace of its size would,
    # in particular more than the random one it replaced (both compared at equal scale).
    fresh = _projected_tokens(model, sample_captions(1, 60, max_phrases=40), tokenizer)
    assert _shared_fraction(fresh) < 0.2  # holds for captions it was not fitted on
    distinct = torch.cdist(after[:200], after[:200]).mean() / after.norm(dim=1).mean()
    assert distinct > 2 * torch.cdist(before[:200], before[:200]).mean() / before.norm(dim=1).mean()


def test_too_few_tokens_for_the_projection():
    model = build_model(tiny_config()).eval()
    with pytest.raises(ConfigError, match="caption tokens"):
        init_token_projection(model, ["red."], build_tokenizer())
