"""The ONNX Runtime engine: sessions reused, text features cached, runs counted, tuned-prompt seam."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from glipcli.digests import sha256_file
from glipcli.errors import BundleError
from glipcli.postprocess import level_sizes
from glipcli.preprocess import batch_images, prepare_image
from glipcli.prompt import encode_prompt, parse_prompt
from glipcli.runtime import engine as engine_module
from glipcli.runtime.bundle import load_bundle
from glipcli.runtime.engine import Engine
from glipcli.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    return Engine(load_bundle(tiny_bundle), device="cpu")


@pytest.fixture(scope="module")
def tokenizer(engine):
    return load_tokenizer(engine.bundle.tokenizer_path)


def chunk_of(tokenizer, text):
    (chunk,) = encode_prompt(parse_prompt(text), tokenizer)
    return chunk


def image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_text_features_are_cached_per_chunk_and_read_only(engine, tokenizer):
    chunk = chunk_of(tokenizer, "zebra. giraffe")
    before = engine.runs["text"]
    first = engine.encode_text(chunk)
    again = engine.encode_text(chunk_of(tokenizer, "zebra. giraffe"))  # equal tokens, new object
    assert engine.runs["text"] == before + 1
    assert again is first
    assert first.shape == (len(chunk.input_ids), engine.bundle.config.language.dim)
    assert not first.flags.writeable


def test_text_cache_is_bounded_lru(engine, tokenizer, monkeypatch):
    monkeypatch.setattr(engine_module, "TEXT_CACHE_SIZE", 2)
    engine._text_cache.clear()
    a, b, c = (chunk_of(tokenizer, t) for t in ("lru a", "lru b", "lru c"))
    start = engine.runs["text"]
    engine.encode_text(a)
    engine.encode_text(b)
    engine.encode_text(a)  # hit: a becomes most recent, b is evicted by c
    engine.encode_text(c)
    assert engine.runs["text"] == start + 3
    engine.encode_text(a)
    assert engine.runs["text"] == start + 3
    engine.encode_text(b)
    assert engine.runs["text"] == start + 4
    assert len(engine._text_cache) == 2


def test_backbone_and_head_shapes_and_counters(engine, tokenizer):
    cfg = engine.bundle.config
    prepared = [prepare_image(image(100, 150), cfg.input), prepare_image(image(100, 150, 1), cfg.input)]
    batch = batch_images(prepared, cfg.input.size_divisibility)
    runs = dict(engine.runs)
    levels = engine.backbone(batch)
    sizes = level_sizes(batch.shape[-2:], cfg.anchors.strides)
    assert [lv.shape[-2:] for lv in levels] == [tuple(s) for s in sizes]
    chunk = chunk_of(tokenizer, "red circle. blue square")
    text = engine.encode_text(chunk)
    out = engine.head(levels, np.stack([text, text]), np.stack([chunk.attention_mask] * 2))
    anchors = sum(h * w for h, w in sizes)
    assert out.boxes.shape == (2, anchors, 4)
    assert out.centerness.shape == (2, anchors)
    assert out.token_logits.shape == (2, anchors, len(chunk.input_ids))
    assert engine.runs["backbone"] == runs["backbone"] + 1
    assert engine.runs["head"] == runs["head"] + 1


def test_same_size_batch_equals_single_runs(engine, tokenizer):
    cfg = engine.bundle.config
    images = [prepare_image(image(120, 160, s), cfg.input) for s in (3, 4)]
    chunk = chunk_of(tokenizer, "cat. dog")
    text = engine.encode_text(chunk)
    levels = engine.backbone(batch_images(images, cfg.input.size_divisibility))
    both = engine.head(levels, np.stack([text] * 2), np.stack([chunk.attention_mask] * 2))
    for i, im in enumerate(images):
        alone = engine.head(engine.backbone(im.tensor[None]), text[None], chunk.attention_mask[None])
        np.testing.assert_allclose(both.token_logits[i], alone.token_logits[0], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(both.boxes[i], alone.boxes[0], atol=1e-3)


def _with_tuned_prompt(tiny_bundle, tmp_path, caption, features):
    target = tmp_path / "tuned"
    shutil.copytree(tiny_bundle, target)
    np.save(target / "prompt0.npy", features)
    manifest = json.loads((target / "manifest.json").read_text())
    entry = {"caption": caption, "file": "prompt0.npy", "sha256": sha256_file(target / "prompt0.npy")}
    manifest["prompts"] = {"p0": entry}
    (target / "manifest.json").write_text(json.dumps(manifest))
    return load_bundle(target)


def test_tuned_prompt_features_replace_the_text_encoder(engine, tokenizer, tiny_bundle, tmp_path):
    chunk = chunk_of(tokenizer, "stingray. flat fish")
    plain = engine.encode_text(chunk)
    tuned_features = (plain + 0.5).astype(np.float32)
    tuned = Engine(_with_tuned_prompt(tiny_bundle, tmp_path, chunk.caption, tuned_features), device="cpu")
    np.testing.assert_array_equal(tuned.encode_text(chunk), tuned_features)
    other = chunk_of(tokenizer, "stingray")
    np.testing.assert_allclose(tuned.encode_text(other), engine.encode_text(other), atol=1e-6)
    assert tuned.runs["text"] == 1  # only the caption without tuned features ran the encoder


def test_tuned_prompt_of_the_wrong_length_is_refused(tokenizer, tiny_bundle, tmp_path):
    chunk = chunk_of(tokenizer, "stingray")
    bundle = _with_tuned_prompt(tiny_bundle, tmp_path, chunk.caption, np.zeros((3, 32), np.float32))
    with pytest.raises(BundleError, match="expected"):
        Engine(bundle, device="cpu").encode_text(chunk)
