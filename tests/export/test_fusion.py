"""The export-time factored fusion attention computes GLIP's MHA-B function."""

from __future__ import annotations

import pytest
import torch

from glipcli.export.fusion import factored_fusion
from glipcli.export.half import half_precision
from glipcli.model.fusion import BiMultiHeadAttention


def _attention(v_dim, l_dim, clamp, seed=0):
    torch.manual_seed(seed)
    attn = BiMultiHeadAttention(v_dim, l_dim, 256, 4, clamp).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.2)  # non-zero biases: the factoring must carry them through
    return attn


@pytest.mark.parametrize("clamp", [True, False])
@pytest.mark.parametrize("n,t,padded", [(300, 7, 0), (50, 40, 11), (1, 3, 1)])
def test_factored_attention_equals_the_module(clamp, n, t, padded):
    attn = _attention(32, 48, clamp)
    v, lang = torch.randn(2, n, 32), torch.randn(2, t, 48)
    mask = torch.ones(2, t, dtype=torch.long)
    mask[1, t - padded :] = 0
    with torch.no_grad():
        ref = attn(v, lang, mask)
        with factored_fusion(attn):
            ours = attn(v, lang, mask)
    for o, r in zip(ours, ref):
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5)


def test_large_scores_are_clamped_as_in_the_module():
    attn = _attention(16, 16, clamp=True)
    with torch.no_grad():
        attn.v_proj.weight.mul_(1e4)  # scores far beyond +-50000
    v, lang, mask = torch.randn(1, 20, 16), torch.randn(1, 5, 16), torch.ones(1, 5, dtype=torch.long)
    with torch.no_grad():
        ref = attn(v, lang, mask)
        with factored_fusion(attn):
            ours = attn(v, lang, mask)
    for o, r in zip(ours, ref):
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-3)


def test_context_restores_forward_also_inside_half_precision():
    attn = _attention(16, 16, clamp=True)
    plain = type(attn).forward
    with factored_fusion(attn):
        assert attn.forward is not plain
    assert "forward" not in attn.__dict__
    v, lang, mask = torch.randn(1, 9, 16), torch.randn(1, 4, 16), torch.ones(1, 4, dtype=torch.long)
    with torch.no_grad():
        ref = attn(v, lang, mask)
        with half_precision(attn):
            wrapped = attn.__dict__["forward"]
            with factored_fusion(attn):
                ours = attn(v.half(), lang.half(), mask)  # fp16 in and out, fp32 inside
            assert attn.__dict__["forward"] is wrapped
    assert ours[0].dtype == torch.float16
    torch.testing.assert_close(ours[0].float(), ref[0], rtol=1e-2, atol=1e-2)
