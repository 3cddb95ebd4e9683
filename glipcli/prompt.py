"""The prompt grammar: from what a user types to captions, token ids and positive maps.

Phrase prompts ("cat. dog"), prompt files and dataset category names all become labels whose
caption pieces are joined as ``"a. b. c."``; grounding keeps a free caption and marks where its
phrases occur. ``encode_prompt`` tokenizes the caption and, when it does not fit the text
encoder, splits the labels into chunks that do, keeping global 1-based label ids (GLIP_SPEC
§4.3-4.5). Torch-free: inference runs on ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from glipcli.errors import ConfigError, PromptError
from glipcli.tokenizer import PAD, spans_to_token_indices

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

Span = tuple[int, int]

# A comment starts at a '#' that opens the line or follows whitespace, so "c#" stays a name.
_COMMENT = re.compile(r"(?:^|\s)#.*")
# GLIP's clean_name: drop everything from the first "(" to the last ")".
_PARENTHESES = re.compile(r"\(.*\)")
# A prompt-file line's own score threshold: "red circle: round and red >= 0.6" (after the last ">=").
_THRESHOLD = re.compile(r"^(?P<label>.*?)\s*>=\s*(?P<value>\S*)$")


@dataclass(frozen=True)
class Label:
    """A class to detect: ``name`` is scored and reported; ``description`` only enters the caption;
    ``threshold``, when set, replaces the run's score threshold for this class."""

    name: str
    description: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class Prompt:
    """Labels in prompt order (label id = index + 1); grounding prompts add a caption and spans."""

    labels: tuple[Label, ...]
    caption: str | None = None
    spans: tuple[tuple[Span, ...], ...] | None = None

    def __post_init__(self) -> None:
        if not self.labels:
            raise PromptError("a prompt needs at least one class")
        if (self.caption is None) != (self.spans is None):
            raise ValueError("a grounding prompt needs both a caption and spans")
        if self.spans is not None and len(self.spans) != len(self.labels):
            raise ValueError(f"{len(self.labels)} labels but {len(self.spans)} span lists")

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _short(text: str, limit: int = 60) -> str:
    """``repr`` of a possibly long user text, cut so an error message stays one readable line."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _check_text(text: str, what: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. undecodable bytes in a command line
        raise PromptError(f"{what} {_short(text)} contains characters that are not valid text") from None


def _parse_label(phrase: str, where: str) -> Label:
    """``name`` or ``name: description`` (split at the first colon) of a whitespace-normalised phrase."""
    name, _, description = phrase.partition(":")
    name, description = name.strip(), description.strip()
    if not name:
        raise PromptError(f"{where}: no class name before ':' in {_short(phrase)}")
    return Label(name, description or None)


def _check_unique(labels: Sequence[Label], wheres: Sequence[str]) -> None:
    """Identical labels would score identically and report every object twice: refuse them.

    The same name with different descriptions is allowed (e.g. two senses of "bow").
    """
    seen: set[tuple[str, str]] = set()
    for label, where in zip(labels, wheres, strict=True):
        key = (label.name.casefold(), (label.description or "").casefold())
        if key in seen:
            raise PromptError(f"{where}: class {label.name!r} is listed twice")
        seen.add(key)


def parse_prompt(text: str) -> Prompt:
    """Phrase mode: ``"red circle. blue rectangle"``, one label per ``.``-separated phrase.

    Whitespace is collapsed and a trailing ``.`` forgiven; an empty phrase is an error.
    """
    _check_text(text, "prompt")
    phrases = [_normalise(p) for p in text.split(".")]
    if not phrases[-1]:
        phrases.pop()
    if not any(phrases):
        raise PromptError(f"prompt {_short(text)} has no classes; separate class names with '.', e.g. 'cat. dog'")
    if "" in phrases:
        raise PromptError(f"prompt {_short(text)} has an empty class between two '.'")
    labels = [_parse_label(p, "prompt") for p in phrases]
    _check_unique(labels, ["prompt"] * len(labels))
    return Prompt(tuple(labels))


def _parse_line(phrase: str, where: str) -> Label:
    """A prompt-file line: a label, optionally ending in ``>= 0.6``, its own score threshold."""
    match = _THRESHOLD.match(phrase)
    if match is None:
        return _parse_label(phrase, where)
    text = match["value"]
    try:
        value = float(text)
    except ValueError:
        raise PromptError(f"{where}: threshold {_short(text)} after '>=' is not a number") from None
    if not 0 <= value <= 1:
        raise PromptError(f"{where}: threshold {text} is not between 0 and 1")
    if not match["label"]:
        raise PromptError(f"{where}: no class name before '>='")
    label = _parse_label(match["label"], where)
    return Label(label.name, label.description, value)


def read_prompt_file(path: str | Path) -> Prompt:
    """One class per line (``name``, ``name: description``, either ending in ``>= 0.6`` for a
    threshold of its own); blank lines and ``#`` comments skipped.

    Identical lines are an error (see ``_check_unique``). UTF-8, with or without a BOM.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PromptError(f"prompt file {path} not found") from None
    except OSError as exc:
        raise PromptError(f"cannot read prompt file {path}: {exc.strerror or exc}") from None
    try:
        if b"\x00" in data:
            raise UnicodeError
        text = data.decode("utf-8-sig")
    except UnicodeError:
        raise PromptError(f"prompt file {path} is not UTF-8 text") from None
    labels: list[Label] = []
    wheres: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        phrase = _normalise(_COMMENT.sub("", line))
        if phrase:
            wheres.append(f"prompt file {path} line {number}")
            labels.append(_parse_line(phrase, wheres[-1]))
    if not labels:
        raise PromptError(f"prompt file {path} has no classes (only blank lines and comments)")
    _check_unique(labels, wheres)
    return Prompt(tuple(labels))


def clean_name(name: str) -> str:
    """GLIP's category-name cleaning (GLIP_SPEC §4.3 step 2), stripped: "bow_(weapon)" -> "bow"."""
    return _normalise(_PARENTHESES.sub("", name).replace("_", " "))


def name_key(name: str) -> str:
    """How class names compare everywhere (prompts, thresholds, categories): spacing and case aside."""
    return _normalise(name).casefold()


def categories_named(names: Sequence[str], categories: Sequence[dict]) -> list[list[int]]:
    """Per name, the ids of the COCO categories it names: those written the same way (spacing and
    case aside), failing that those whose GLIP-cleaned name is its cleaned name. So "bow_(weapon)"
    names one LVIS category and "bow" two; callers decide what none or several mean."""
    written: dict[str, list[int]] = {}
    cleaned: dict[str, list[int]] = {}
    for category in categories:
        written.setdefault(name_key(category["name"]), []).append(category["id"])
        cleaned.setdefault(name_key(clean_name(category["name"])), []).append(category["id"])
    return [written.get(name_key(name)) or cleaned.get(name_key(clean_name(name)), []) for name in names]


def prompt_from_names(names: Sequence[str]) -> Prompt:
    """Dataset categories in id order (COCO, LVIS). Duplicates stay: label ids must match positions."""
    if isinstance(names, str):
        raise TypeError("names must be a sequence of names, not one str")
    labels = []
    for position, raw in enumerate(names, start=1):
        _check_text(raw, f"class name {position}")
        name = clean_name(raw)
        if not name:
            raise PromptError(f"class name {position} ({_short(raw)}) is empty after cleaning")
        labels.append(Label(name))
    if not labels:
        raise PromptError("no class names given")
    return Prompt(tuple(labels))


def grounding_prompt(caption: str, phrases: Sequence[str]) -> Prompt:
    """Grounding mode: every case-insensitive occurrence of each phrase in ``caption`` is a span.

    Phrases are plain text (not patterns); runs of whitespace inside a phrase match any run of
    whitespace in the caption. Labels follow the order of ``phrases``; a phrase given twice is an
    error. The caption is sent unchanged.
    """
    _check_text(caption, "grounding caption")
    if isinstance(phrases, str):
        raise TypeError("phrases must be a sequence of phrases, not one str")
    if not caption.strip():
        raise PromptError("grounding caption is empty")
    labels: list[Label] = []
    spans: list[tuple[Span, ...]] = []
    for raw in phrases:
        _check_text(raw, "grounding phrase")
        phrase = _normalise(raw)
        if not phrase:
            raise PromptError(f"grounding phrase {_short(raw)} is empty")
        pattern = r"\s+".join(re.escape(word) for word in phrase.split(" "))
        found = tuple(m.span() for m in re.finditer(pattern, caption, re.IGNORECASE))
        if not found:
            raise PromptError(f"grounding phrase {_short(phrase)} does not occur in the caption {_short(caption)}")
        labels.append(Label(phrase))
        spans.append(found)
    if not labels:
        raise PromptError("no grounding phrases given")
    _check_unique(labels, ["grounding phrases"] * len(labels))
    return Prompt(tuple(labels), caption=caption, spans=tuple(spans))


@dataclass(frozen=True, eq=False)
class PromptChunk:
    """One text-encoder input: a caption, its tokens, and where each of its labels sits in them."""

    caption: str
    label_ids: tuple[int, ...]
    input_ids: np.ndarray
    attention_mask: np.ndarray
    positive_map: dict[int, list[int]]
    token_words: np.ndarray  # word index of each token in the caption, -1 for special tokens and padding

    def key(self) -> str:
        """Cache key for text features, which depend on exactly the ids and mask the encoder sees."""
        digest = hashlib.sha1(self.input_ids.astype("<i8").tobytes())
        digest.update(self.attention_mask.astype("<i8").tobytes())
        return digest.hexdigest()


def _piece(label: Label) -> str:
    return f"{label.name}: {label.description}" if label.description else label.name


def _phrase_caption(labels: Sequence[Label]) -> tuple[str, list[Span]]:
    """``"a. b: described. c."`` and the span of each label's name (not its description)."""
    parts: list[str] = []
    spans: list[Span] = []
    offset = 0
    for label in labels:
        spans.append((offset, offset + len(label.name)))
        part = _piece(label) + ". "
        parts.append(part)
        offset += len(part)
    return "".join(parts)[:-1], spans


def _make_chunk(
    caption: str,
    encoding: Encoding,
    label_ids: Sequence[int],
    label_spans: Sequence[Sequence[Span]],
    prompt: Prompt,
    pad: tuple[int, int] | None,
) -> PromptChunk:
    positive_map: dict[int, list[int]] = {}
    for label_id, spans in zip(label_ids, label_spans, strict=True):
        tokens = spans_to_token_indices(encoding, spans)
        if not tokens:
            name = prompt.labels[label_id - 1].name
            raise PromptError(f"class {_short(name)} has no characters the text encoder can read")
        positive_map[label_id] = tokens
    ids = np.asarray(encoding.ids, dtype=np.int64)
    mask = np.asarray(encoding.attention_mask, dtype=np.int64)
    words = np.asarray([-1 if w is None else w for w in encoding.word_ids], dtype=np.int64)
    if pad is not None:
        pad_to, pad_id = pad
        ids = np.concatenate([ids, np.full(pad_to - len(ids), pad_id, dtype=np.int64)])
        mask = np.concatenate([mask, np.zeros(pad_to - len(mask), dtype=np.int64)])
        words = np.concatenate([words, np.full(pad_to - len(words), -1, dtype=np.int64)])
    for array in (ids, mask, words):
        array.setflags(write=False)
    return PromptChunk(caption, tuple(label_ids), ids, mask, positive_map, words)


def _phrase_chunks(
    prompt: Prompt, tokenizer: Tokenizer, max_query_len: int, pad: tuple[int, int] | None
) -> list[PromptChunk]:
    """Greedy consecutive chunks, sized from per-piece token counts and checked by one encode each.

    WordPiece splits at whitespace and punctuation, so a caption's length is 2 ([CLS], [SEP]) plus,
    per label, its piece's tokens and one for the ".". Should normalisation ever break that sum,
    the chunk is shortened until its real encoding fits.
    """
    labels = prompt.labels
    pieces = [_piece(label) for label in labels]
    counts = [len(e.ids) + 1 for e in tokenizer.encode_batch(pieces, add_special_tokens=False)]
    budget = max_query_len - 2
    chunks: list[PromptChunk] = []
    start = 0
    while start < len(labels):
        stop, used = start, 0
        while stop < len(labels) and used + counts[stop] <= budget:
            used += counts[stop]
            stop += 1
        stop = max(stop, start + 1)  # a label that does not fit alone fails just below
        while True:
            caption, spans = _phrase_caption(labels[start:stop])
            encoding = tokenizer.encode(caption)
            if len(encoding.ids) <= max_query_len:
                break
            if stop == start + 1:
                raise PromptError(
                    f"class {_short(labels[start].name)} is too long for the text encoder "
                    f"({len(encoding.ids)} tokens > {max_query_len})"
                )
            stop -= 1
        label_ids = range(start + 1, stop + 1)
        chunks.append(_make_chunk(caption, encoding, label_ids, [[s] for s in spans], prompt, pad))
        start = stop
    return chunks


def encode_prompt(
    prompt: Prompt, tokenizer: Tokenizer, max_query_len: int = 256, pad_to: int | None = None
) -> list[PromptChunk]:
    """Token ids, attention masks and positive maps, in as many chunks as the caption needs.

    Each chunk holds at most ``max_query_len`` tokens ([CLS] and [SEP] included), padded with
    [PAD] to ``pad_to`` if given. A grounding caption cannot be split: too long is an error.
    """
    if max_query_len < 3:
        raise ConfigError(f"max query length {max_query_len} is too small (at least 3 tokens)")
    if pad_to is not None and pad_to < max_query_len:
        raise ConfigError(f"pad length {pad_to} is shorter than the max query length {max_query_len}")
    pad = None
    if pad_to is not None:
        pad_id = tokenizer.token_to_id(PAD)
        if pad_id is None:
            raise ConfigError(f"the tokenizer has no {PAD} token to pad with")
        pad = (pad_to, pad_id)
    if prompt.caption is None or prompt.spans is None:
        return _phrase_chunks(prompt, tokenizer, max_query_len, pad)
    encoding = tokenizer.encode(prompt.caption)
    if len(encoding.ids) > max_query_len:
        raise PromptError(
            f"grounding caption {_short(prompt.caption)} is {len(encoding.ids)} tokens, more than the "
            f"text encoder's {max_query_len}; a grounding caption cannot be split, shorten it"
        )
    label_ids = range(1, len(prompt.labels) + 1)
    return [_make_chunk(prompt.caption, encoding, label_ids, prompt.spans, prompt, pad)]
