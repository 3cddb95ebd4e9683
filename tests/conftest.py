"""Shared fixtures: where the reference oracle lives, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests count text-encoder runs, so features stored on disk by an earlier run must not answer for
# it; tests/runtime/test_text_store.py turns the store on in a folder of its own.
os.environ["GLIPCLI_TEXT_CACHE"] = "0"


def _reference_dir() -> Path | None:
    candidates = [os.environ.get("GLIP_REFERENCE", "")]
    candidates += [str(REPO / "shared" / "reference"), str(REPO.parent / "shared" / "reference")]
    for c in candidates:
        if c and (Path(c) / "case_public.npz").is_file():
            return Path(c)
    return None


REFERENCE = _reference_dir()

needs_reference = pytest.mark.skipif(
    REFERENCE is None,
    reason="reference oracle not found (set GLIP_REFERENCE or put ../shared/reference beside the repo)",
)


@pytest.fixture(scope="session")
def reference() -> Path:
    if REFERENCE is None:
        pytest.skip("reference oracle not found")
    return REFERENCE


@pytest.fixture(scope="session")
def case(reference: Path):
    import numpy as np

    return dict(np.load(reference / "case_public.npz"))


# ---------------------------------------------------------------------------------------------
# Model bundles for tests: exported once per test session.
# ---------------------------------------------------------------------------------------------


def tiny_config():
    """A GLIP small enough to export and run in seconds: every module type, tiny widths."""
    from glipcli.config import GLIPConfig, HeadConfig, InputConfig, LanguageConfig, SwinConfig

    bert = {
        "vocab_size": 30522,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
    }
    return GLIPConfig(
        name="tiny",
        swin=SwinConfig(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), window_size=7),
        language=LanguageConfig(bert=bert),
        head=HeadConfig(fpn_channels=32, channels=32, num_convs=1, fusion_dim=64, fusion_heads=2, joint_emb_size=32),
        input=InputConfig(min_size=128, max_size=224),
    )


def _randomise(model, seed: int) -> None:
    """Weights that make no op trivial (the official init leaves many biases at 0)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            elif "norm" in name.lower() or name.endswith(".bn.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


@pytest.fixture(scope="session")
def tiny_model():
    from glipcli.model.glip import build_model

    model = build_model(tiny_config())
    _randomise(model, 0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model, tmp_path_factory):
    from glipcli.export.exporter import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(tiny_model, out, name="tiny", source={"checkpoint": "random", "sha256": "0" * 64})
    return out


@pytest.fixture(scope="session")
def reduced_model(reference):
    from glipcli.model.checkpoint import load_checkpoint
    from glipcli.model.glip import build_model
    from glipcli.presets import load_config

    model = build_model(load_config(reference / "config_reduced.yaml"))
    load_checkpoint(model, reference / "reduced.pth")
    return model.eval()


@pytest.fixture(scope="session")
def reduced_bundle(reference, tmp_path_factory):
    from glipcli.export.exporter import build_from_checkpoint, export_bundle

    model, source = build_from_checkpoint(str(reference / "config_reduced.yaml"), reference / "reduced.pth")
    out = tmp_path_factory.mktemp("bundles") / "reduced"
    export_bundle(model, out, name="reduced", source=source)
    return out
