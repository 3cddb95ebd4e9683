"""glip-nano's convolutional stem: same token grid as GLIP's patch embedding, a config option only."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from glipcli.config import GLIPConfig, SwinConfig
from glipcli.model.swin import SwinTransformer
from glipcli.presets import PRESETS, preset


@pytest.mark.parametrize("hw", [(64, 96), (61, 99), (33, 35)])
def test_conv_stem_keeps_the_patch_grid_at_any_size(hw):
    patch = SwinConfig(embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=7)
    conv = dataclasses.replace(patch, stem_channels=(4, 8))
    x = torch.rand(1, 3, *hw)
    torch.manual_seed(0)
    shapes = [[tuple(o.shape) for o in SwinTransformer(cfg).eval()(x)] for cfg in (patch, conv)]
    assert shapes[0] == shapes[1]
    assert shapes[1][0][-2:] == (-(-hw[0] // 4), -(-hw[1] // 4))


def test_conv_stem_learns_3x3_convolutions_with_batchnorm():
    model = SwinTransformer(SwinConfig(embed_dim=8, depths=(1, 1), num_heads=(1, 2), stem_channels=(4, 8, 8)))
    convs = [m for m in model.patch_embed.proj if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2), (2, 2), (1, 1), (1, 1)]
    assert [c.kernel_size for c in convs] == [(3, 3), (3, 3), (3, 3), (1, 1)]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.patch_embed.proj) == 3


def test_the_stem_is_an_option_that_round_trips_and_old_manifests_read_as_patches():
    assert all(not p.config.swin.stem_channels for p in PRESETS.values())  # the official layout everywhere
    nano = preset("glip-nano")
    cfg = nano.replace(swin=dataclasses.replace(nano.swin, stem_channels=(16, 32)))
    assert GLIPConfig.from_dict(cfg.to_dict()) == cfg
    old = cfg.to_dict()
    del old["swin"]["stem_channels"]  # a manifest written before the option existed
    assert GLIPConfig.from_dict(old).swin.stem_channels == ()


@pytest.mark.parametrize("patch,stem", [(4, (8,)), (3, (8, 8))])
def test_a_stem_that_cannot_reach_the_patch_stride_is_refused(patch, stem):
    with pytest.raises(ValueError, match="conv stem"):
        SwinConfig(patch_size=patch, stem_channels=stem)
