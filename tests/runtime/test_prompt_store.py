"""Tokenised prompts on disk: a prompt used before loads no tokenizer and gets the very chunks
encode_prompt makes; damaged files are recomputed; the key changes with whatever changes chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glipcli.api import Detector
from glipcli.prompt import Label, Prompt, encode_prompt, parse_prompt
from glipcli.runtime.prompt_store import PromptStore
from glipcli.runtime.text_store import TEXT_CACHE_ENV
from glipcli.tokenizer import load_tokenizer


@pytest.fixture
def store_on(tmp_path, monkeypatch):
    monkeypatch.setenv(TEXT_CACHE_ENV, "1")
    monkeypatch.setenv("GLIPCLI_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "prompts"


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.caption, x.label_ids, x.positive_map) == (y.caption, y.label_ids, y.positive_map)
        for name in ("input_ids", "attention_mask", "token_words"):
            got, expected = getattr(x, name), getattr(y, name)
            assert got.dtype == expected.dtype and not got.flags.writeable
            np.testing.assert_array_equal(got, expected)


def test_a_prompt_used_before_needs_no_tokenizer(tiny_bundle, store_on):
    long_prompt = ". ".join(f"class number {i}" for i in range(120))  # several chunks
    first = Detector.load(tiny_bundle, device="cpu")
    expected = first.prepare_prompt(long_prompt).chunks
    assert len(expected) > 1 and len(list(store_on.glob("*/*.json"))) == 1
    tokenizer = load_tokenizer(first.bundle.tokenizer_path)
    _same(expected, encode_prompt(parse_prompt(long_prompt), tokenizer, first.config.language.max_query_len))

    second = Detector.load(tiny_bundle, device="cpu")
    _same(second.prepare_prompt(long_prompt).chunks, expected)
    assert isinstance(second._tokenizer_source, Path)  # never loaded
    second.prepare_prompt("zebra")  # a new prompt loads it
    assert not isinstance(second._tokenizer_source, Path)


def test_a_damaged_file_is_tokenised_again(tiny_bundle, store_on):
    expected = Detector.load(tiny_bundle, device="cpu").prepare_prompt("zebra. giraffe").chunks
    (stored,) = store_on.glob("*/*.json")
    for damage in (
        "{not json",
        '[{"caption": "x"}]',
        '[{"caption": "x", "label_ids": [1], "input_ids": [1, 2], '
        '"attention_mask": [1], "positive_map": [], "token_words": [1, 2]}]',
    ):
        stored.write_text(damage)
        _same(Detector.load(tiny_bundle, device="cpu").prepare_prompt("zebra. giraffe").chunks, expected)


def test_the_key_follows_what_changes_the_chunks(tmp_path):
    prompt = Prompt((Label("red circle"), Label("star")))
    key = PromptStore.key(prompt, 256)
    assert key == PromptStore.key(Prompt((Label("red circle"), Label("star"))), 256)
    assert key != PromptStore.key(prompt, 128)
    assert key != PromptStore.key(Prompt((Label("red circle", "round and red"), Label("star"))), 256)
    assert key != PromptStore.key(Prompt((Label("star"), Label("red circle"))), 256)
    grounding = Prompt((Label("dog"),), "a dog", (((2, 5),),))
    assert PromptStore.key(grounding, 256) != PromptStore.key(Prompt((Label("dog"),)), 256)


def test_switched_off_by_the_environment(tiny_bundle, store_on, monkeypatch):
    monkeypatch.setenv(TEXT_CACHE_ENV, "0")
    detector = Detector.load(tiny_bundle, device="cpu")
    assert not isinstance(detector._tokenizer_source, Path)
    detector.prepare_prompt("zebra")
    assert not store_on.exists()


def test_the_folder_stays_bounded(tmp_path):
    store = PromptStore(tmp_path / "p", max_files=3)
    chunks = encode_prompt(parse_prompt("zebra"), load_tokenizer(Path("exported/glip-nano/tokenizer.json")), 256)
    for i in range(6):
        store.put(f"k{i}", tuple(chunks))
    assert len(list((tmp_path / "p").glob("*.json"))) == 3
    assert store.get("k5") is not None and store.get("k0") is None
