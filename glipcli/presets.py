"""Presets: the released GLIP variants (and the checkpoint each expects) plus our glip-nano, and
:func:`load_config`, which turns a preset name, an official YAML file or a bundle's JSON into a
:class:`~glipcli.config.GLIPConfig`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from glipcli.config import MINILM_L6, GLIPConfig, HeadConfig, InputConfig, LanguageConfig, PostprocessConfig, SwinConfig
from glipcli.errors import ConfigError
from glipcli.official_yaml import load_official_yaml

_GLIP_T = GLIPConfig(name="glip-t")
_GLIP_T_A = GLIPConfig(name="glip-t-a", head=HeadConfig(early_fuse=False, fused_dot_product=False))
_GLIP_L = GLIPConfig(
    name="glip-l",
    swin=SwinConfig(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12),
    head=HeadConfig(num_convs=8),
)
_GLIP_NANO = GLIPConfig(
    name="glip-nano",
    # The 4x4 patch embedding: a conv stem (stem_channels=(16, 32)), trained 10,000 and then 13,000
    # steps plus the second stage, named shapes a little better and colours worse, and lost at the
    # defaults on every label-quality set but one (docs/glip-nano.md), so glip-nano keeps GLIP's.
    swin=SwinConfig(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=7),
    language=LanguageConfig(bert=dict(MINILM_L6), max_query_len=256),
    head=HeadConfig(
        fpn_channels=64,
        channels=64,
        num_convs=2,
        fusion_dim=256,
        fusion_heads=4,
        joint_emb_size=64,
        use_deform=False,  # official USE_DFCONV option; deformable sampling's backward dominates CPU training
        # Score against the pretrained text features, as GLIP-T (A) does: trained end to end on
        # synthetic data, the head's last BERT layer collapsed every token to one vector.
        fused_dot_product=False,
    ),
    # Above the training short sides (288-352, glipcli/train/recipe.py): small shapes get more pixels.
    # Chosen on the validation set (batch-4 glip-nano): mAP@0.5 0.441 at 320, 0.446 at 352, 0.465 at 384.
    input=InputConfig(min_size=384, max_size=768),
    # Trained with per-word targets (glipcli/train/synth.py), so a phrase needs all its words: validation
    # mAP@0.5 0.550 with the geometric mean of its words' probabilities, 0.463 with GLIP's mean of tokens
    # (batch-4 glip-nano; stage 1 of the shipped model scores 0.659 vs 0.554 on the trained-combination test set).
    postprocess=PostprocessConfig(score_agg="GEOMEAN"),
)


@dataclass(frozen=True)
class Preset:
    config: GLIPConfig
    checkpoint: str | None  # file name in the official Hugging Face repository, if released
    description: str


HF_REPO = "GLIPModel/GLIP"

PRESETS: dict[str, Preset] = {
    "glip-t-a": Preset(_GLIP_T_A, "glip_a_tiny_o365.pth", "GLIP-T (A): Swin-T, no deep fusion, O365"),
    "glip-t-b": Preset(
        _GLIP_T.replace(name="glip-t-b"), "glip_tiny_model_o365.pth", "GLIP-T (B): Swin-T, deep fusion, O365"
    ),
    "glip-t-c": Preset(
        _GLIP_T.replace(name="glip-t-c"),
        "glip_tiny_model_o365_goldg.pth",
        "GLIP-T (C): Swin-T, deep fusion, O365+GoldG",
    ),
    "glip-t": Preset(
        _GLIP_T, "glip_tiny_model_o365_goldg_cc_sbu.pth", "GLIP-T: Swin-T, deep fusion, O365+GoldG+CC3M+SBU"
    ),
    "glip-l": Preset(_GLIP_L, "glip_large_model.pth", "GLIP-L: Swin-L, deep fusion, 8 head layers"),
    "glip-nano": Preset(_GLIP_NANO, None, "glip-nano: tiny GLIP trained here on synthetic shapes"),
}


def preset(name: str) -> GLIPConfig:
    try:
        return PRESETS[name].config
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def checkpoint_config(
    weights: str | Path, config: str | Path | None, bert_config: str | Path | None = None, default: str | None = None
) -> GLIPConfig:
    """The config to load ``weights`` into: ``config`` when given, else the one the checkpoint
    carries (``glip train`` writes it), else the preset ``default``; without one, a clear error."""
    from glipcli.model.checkpoint import stored_config

    if config is not None:
        return load_config(config, bert_config)
    stored = stored_config(weights)
    if stored is not None:
        return GLIPConfig.from_dict(dict(stored))
    if default is None:
        raise ConfigError(f"checkpoint {weights} does not say which model it is: pass --config PRESET or YAML")
    return load_config(default, bert_config)


def load_config(spec: str | Path, bert_config: str | Path | None = None) -> GLIPConfig:
    """A preset name, an official GLIP YAML file, or a JSON file written by :meth:`to_dict`."""
    text = str(spec)
    if text in PRESETS:
        return preset(text)
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_official_yaml(path, bert_config)
    if path.suffix.lower() == ".json":
        try:
            return GLIPConfig.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
    raise ConfigError(f"unknown config {text!r}: give a preset ({', '.join(PRESETS)}) or a .yaml/.json file")
