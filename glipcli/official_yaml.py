"""Official GLIP YAML (yacs) files read into glipcli's config schema, for the keys that matter at
inference; options glipcli does not implement are refused by name."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from glipcli.config import (
    BERT_BASE_UNCASED,
    AnchorConfig,
    GLIPConfig,
    HeadConfig,
    InputConfig,
    LanguageConfig,
    PostprocessConfig,
    SwinConfig,
)
from glipcli.errors import ConfigError

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
