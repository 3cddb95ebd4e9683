"""Presets and official YAML configs."""

from __future__ import annotations

import json

import pytest
import torch

from glipcli.config import GLIPConfig
from glipcli.errors import ConfigError
from glipcli.model.glip import build_model
from glipcli.presets import PRESETS, load_config, preset

OFFICIAL_GLIP_T_YAML = """
MODEL:
  META_ARCHITECTURE: "GeneralizedVLRCNN"
  RPN_ONLY: True
  RPN_ARCHITECTURE: "VLDYHEAD"
  BACKBONE:
    CONV_BODY: "SWINT-FPN-RETINANET"
    OUT_CHANNELS: 256
  LANGUAGE_BACKBONE:
    MODEL_TYPE: "bert-base-uncased"
    MASK_SPECIAL: False
  RPN:
    USE_FPN: True
    ANCHOR_SIZES: (64, 128, 256, 512, 1024)
    ANCHOR_STRIDE: (8, 16, 32, 64, 128)
    ASPECT_RATIOS: (1.0,)
    SCALES_PER_OCTAVE: 1
  DYHEAD:
    CHANNELS: 256
    NUM_CONVS: 6
    USE_GN: True
    USE_DYRELU: True
    USE_DFCONV: True
    USE_DYFUSE: True
    SCORE_AGG: "MEAN"
    LOG_SCALE: 0.0
    FUSE_CONFIG:
      EARLY_FUSE_ON: True
      TYPE: "MHA-B"
      USE_DOT_PRODUCT_TOKEN_LOSS: True
      USE_FUSED_FEATURES_DOT_PRODUCT: True
      USE_LAYER_SCALE: True
      CLAMP_MIN_FOR_UNDERFLOW: True
      CLAMP_MAX_FOR_OVERFLOW: True
      CLAMP_BERTATTN_MIN_FOR_UNDERFLOW: True
      CLAMP_BERTATTN_MAX_FOR_OVERFLOW: True
      CLAMP_DOT_PRODUCT: True
DATASETS:
  SEPARATION_TOKENS: ". "
INPUT:
  PIXEL_MEAN: [ 103.530, 116.280, 123.675 ]
  PIXEL_STD: [ 57.375, 57.120, 58.395 ]
DATALOADER:
  SIZE_DIVISIBILITY: 32
"""


def test_official_yaml_equals_the_preset(tmp_path):
    path = tmp_path / "glip_Swin_T_O365_GoldG.yaml"
    path.write_text(OFFICIAL_GLIP_T_YAML)
    assert load_config(path).replace(name="glip-t") == preset("glip-t")


def test_reduced_reference_yaml(reference):
    cfg = load_config(reference / "config_reduced.yaml")  # finds bert_config_reduced.json beside it
    assert cfg.swin.embed_dim == 32 and cfg.head.channels == 64 and cfg.head.num_convs == 3
    assert cfg.language.bert["hidden_size"] == 96 and cfg.language.bert["num_attention_heads"] == 3
    assert (cfg.input.min_size, cfg.input.max_size) == (320, 533)


@pytest.mark.parametrize("name,params", [("glip-t-a", 151_430_526), ("glip-t-b", 231_780_222), ("glip-l", 430_422_384)])
def test_preset_parameter_counts(name, params):
    with torch.device("meta"):
        model = build_model(preset(name))
    assert sum(p.numel() for p in model.parameters()) == params


def test_every_preset_round_trips_through_json():
    for name, entry in PRESETS.items():
        data = json.loads(json.dumps(entry.config.to_dict()))
        assert GLIPConfig.from_dict(data) == entry.config, name


@pytest.mark.parametrize(
    "text,message",
    [
        ("MODEL: [unclosed", "not valid YAML"),
        ("- just a list", "no mapping"),
        ("MODEL:\n  BACKBONE:\n    CONV_BODY: R-50-FPN", "backbone"),
        (
            "MODEL:\n  BACKBONE:\n    CONV_BODY: SWINT-FPN-RETINANET\n  LANGUAGE_BACKBONE:\n    LANG_DIM: 96\n"
            "  DYHEAD:\n    FUSE_CONFIG:\n      USE_DOT_PRODUCT_TOKEN_LOSS: True\n"
            "  RPN:\n    ASPECT_RATIOS: (1.0,)\n    SCALES_PER_OCTAVE: 1\n"
            "    ANCHOR_STRIDE: (8, 16, 32, 64, 128)\n    ANCHOR_SIZES: (64, 128, 256, 512, 1024)",
            "--bert-config",
        ),
    ],
)
def test_bad_yaml(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown config 'glip-xl'"):
        load_config("glip-xl")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="invalid model config"):
        GLIPConfig.from_dict({"swin": {"embed_dims": 3}})
