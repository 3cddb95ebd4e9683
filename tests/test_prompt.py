"""The prompt grammar: phrases, prompt files, category names, grounding, chunking."""

from __future__ import annotations

import json
import random
import re
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glipcli.errors import ConfigError, PromptError
from glipcli.prompt import (
    Label,
    Prompt,
    clean_name,
    encode_prompt,
    grounding_prompt,
    parse_prompt,
    prompt_from_names,
    read_prompt_file,
)
from glipcli.tokenizer import build_tokenizer

CLS, SEP = 101, 102


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def decoded(tok, chunk, label_id: int) -> str:
    return tok.decode([int(chunk.input_ids[i]) for i in chunk.positive_map[label_id]])


def check_chunks(chunks, prompt: Prompt, max_query_len: int) -> None:
    """Invariants every encoding must satisfy, whatever the prompt."""
    assert [i for c in chunks for i in c.label_ids] == list(range(1, len(prompt.labels) + 1))
    for chunk in chunks:
        n = int(chunk.attention_mask.sum())
        assert n <= max_query_len
        assert chunk.input_ids[0] == CLS and chunk.input_ids[n - 1] == SEP
        assert chunk.attention_mask[:n].all() and not chunk.attention_mask[n:].any()
        assert set(chunk.positive_map) == set(chunk.label_ids)
        for tokens in chunk.positive_map.values():
            assert tokens and tokens == sorted(set(tokens))
            assert all(0 < t < n - 1 for t in tokens)
        words = chunk.token_words
        assert len(words) == len(chunk.input_ids) and words[0] == words[n - 1] == -1 and (words[n:] == -1).all()
        assert (words[1 : n - 1] >= 0).all() and (np.diff(words[1 : n - 1]) >= 0).all()


# --- the reference case ----------------------------------------------------------------------


def test_reference_case(tok, case):
    caption = str(case["caption"])
    prompt = parse_prompt(caption)
    assert prompt.names == json.loads(str(case["phrases"]))
    (chunk,) = encode_prompt(prompt, tok, max_query_len=256, pad_to=256)
    assert chunk.caption == caption
    assert chunk.label_ids == (1, 2, 3)
    np.testing.assert_array_equal(chunk.input_ids, case["input_ids"][0])
    np.testing.assert_array_equal(chunk.attention_mask, case["attention_mask"][0])
    expected = {int(k): v for k, v in json.loads(str(case["positive_map_label_to_token"])).items()}
    assert chunk.positive_map == expected


def test_names_caption_like_glip_spec(tok):
    # GLIP_SPEC §4.4: "person. bicycle. car" -> {1: [1], 2: [3], 3: [5]}; we add a final "."
    (chunk,) = encode_prompt(prompt_from_names(["person", "bicycle", "car"]), tok)
    assert chunk.caption == "person. bicycle. car."
    assert chunk.positive_map == {1: [1], 2: [3], 3: [5]}
    assert chunk.input_ids.dtype == np.int64 and chunk.attention_mask.dtype == np.int64


def test_token_words_group_word_pieces(tok):
    (chunk,) = encode_prompt(parse_prompt("red hexagon. star"), tok, max_query_len=12, pad_to=12)
    assert tok.decode(chunk.input_ids[2:5].tolist()) == "hexagon"  # he ##xa ##gon
    assert chunk.token_words.tolist() == [-1, 0, 1, 1, 1, 2, 3, 4, -1, -1, -1, -1]


# --- phrase grammar ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("red circle. blue rectangle", ["red circle", "blue rectangle"]),
        ("red circle. blue rectangle.", ["red circle", "blue rectangle"]),
        ("  red \t circle .blue   rectangle .  ", ["red circle", "blue rectangle"]),
        ("cat", ["cat"]),
        ("c++. c#", ["c++", "c#"]),
    ],
)
def test_phrases(text, names):
    assert parse_prompt(text).names == names


@pytest.mark.parametrize("text", ["", "...", " . ", "a. . b", ". a", "a.. ", "\n"])
def test_empty_phrases_are_errors(text):
    with pytest.raises(PromptError) as err:
        parse_prompt(text)
    assert "\n" not in str(err.value)


def test_caption_is_sent_as_typed(tok):
    (chunk,) = encode_prompt(parse_prompt(" red  circle.blue rectangle"), tok)
    assert chunk.caption == "red circle. blue rectangle."


def test_description_enters_caption_not_score(tok):
    prompt = parse_prompt("stingray:  flat and round fish. shark")
    assert prompt.labels == (Label("stingray", "flat and round fish"), Label("shark"))
    (chunk,) = encode_prompt(prompt, tok)
    assert chunk.caption == "stingray: flat and round fish. shark."
    assert decoded(tok, chunk, 1) == "stingray"
    assert decoded(tok, chunk, 2) == "shark"
    assert "fish" in tok.decode(chunk.input_ids.tolist())


def test_colon_edge_cases():
    assert parse_prompt("cat:. dog").labels == (Label("cat"), Label("dog"))
    assert parse_prompt("time: 12:30").labels == (Label("time", "12:30"),)
    with pytest.raises(PromptError, match="before ':'"):
        parse_prompt(": a description")


def test_duplicates():
    with pytest.raises(PromptError, match="'Cat' is listed twice"):
        parse_prompt("cat. dog. Cat")
    assert parse_prompt("bow: a weapon. bow: a ribbon").names == ["bow", "bow"]


def test_undecodable_text_is_a_prompt_error():
    with pytest.raises(PromptError, match="not valid text"):
        parse_prompt("cat. \udcff")


def test_unlocatable_label_is_an_error(tok):
    with pytest.raises(PromptError, match="no characters"):
        encode_prompt(parse_prompt("\x00\x01. cat"), tok)


# --- prompt files --------------------------------------------------------------------------


def test_prompt_file(tmp_path, tok):
    path = tmp_path / "classes.txt"
    text = (
        "# animals of the aquarium\r\n"
        "\r\n"
        "fish\r\n"
        "  stingray :  flat and round fish   # knowledge for GLIP\r\n"
        "   # an indented comment\r\n"
        "c# \r\n"
        "puffin with orange beaks\r\n"
    )
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    prompt = read_prompt_file(path)
    assert prompt.labels == (
        Label("fish"),
        Label("stingray", "flat and round fish"),
        Label("c#"),
        Label("puffin with orange beaks"),
    )
    (chunk,) = encode_prompt(prompt, tok)
    assert chunk.caption == "fish. stingray: flat and round fish. c#. puffin with orange beaks."
    assert [decoded(tok, chunk, i) for i in (1, 2, 3, 4)] == ["fish", "stingray", "c #", "puffin with orange beaks"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no classes"),
        (b"# only a comment\n\n   \n", "no classes"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text"),
        (b"caf\xe9\n", "not UTF-8 text"),
        (b"cat\ndog\nCAT\n", "line 3: class 'CAT' is listed twice"),
        (b"cat\n: orphan description\n", "line 2: no class name"),
    ],
)
def test_bad_prompt_files(tmp_path, content, message):
    path = tmp_path / "bad prompt.txt"
    path.write_bytes(content)
    with pytest.raises(PromptError, match=re.escape(message)) as err:
        read_prompt_file(path)
    assert str(path) in str(err.value)


def test_missing_or_unreadable_prompt_file(tmp_path):
    with pytest.raises(PromptError, match="not found"):
        read_prompt_file(tmp_path / "absent.txt")
    with pytest.raises(PromptError, match="cannot read prompt file"):
        read_prompt_file(tmp_path)


# --- category names ------------------------------------------------------------------------


def test_clean_name():
    assert clean_name("bow_(weapon)") == "bow"
    assert clean_name("traffic_light") == "traffic light"
    assert clean_name("hair  drier ") == "hair drier"
    assert clean_name("a_(b)_c_(d)") == "a"  # greedy, like GLIP: first "(" to last ")"


def test_prompt_from_names(tok):
    prompt = prompt_from_names(["bow_(weapon)", "bow_(decorative_ribbons)", "traffic_light"])
    assert prompt.names == ["bow", "bow", "traffic light"]  # duplicates kept: ids are positions
    (chunk,) = encode_prompt(prompt, tok)
    assert [decoded(tok, chunk, i) for i in (1, 2, 3)] == ["bow", "bow", "traffic light"]
    with pytest.raises(PromptError, match="class name 2"):
        prompt_from_names(["cat", "(nothing)"])
    with pytest.raises(PromptError, match="no class names"):
        prompt_from_names([])


# --- grounding -----------------------------------------------------------------------------


def test_grounding_occurrences_and_case(tok):
    caption = "A cat sat on the mat. The CAT ran to a red\n circle."
    prompt = grounding_prompt(caption, ["cat", "red circle"])
    assert prompt.names == ["cat", "red circle"]
    assert [caption[b:e] for b, e in prompt.spans[0]] == ["cat", "CAT"]
    assert [caption[b:e] for b, e in prompt.spans[1]] == ["red\n circle"]
    (chunk,) = encode_prompt(prompt, tok)
    assert chunk.caption == caption
    tokens = chunk.positive_map[1]
    assert len(tokens) == 2 and all(tok.id_to_token(int(chunk.input_ids[t])) == "cat" for t in tokens)
    assert decoded(tok, chunk, 2) == "red circle"


def test_grounding_phrases_are_plain_text(tok):
    caption = "I write c++ and cpp; a.b differs from axb; f(x is odd"
    prompt = grounding_prompt(caption, ["c++", "a.b", "f(x"])
    assert [[caption[b:e] for b, e in spans] for spans in prompt.spans] == [["c++"], ["a.b"], ["f(x"]]
    (chunk,) = encode_prompt(prompt, tok)
    assert decoded(tok, chunk, 1) == "c + +"
    assert decoded(tok, chunk, 2) == "a. b"


def test_grounding_errors(tok):
    with pytest.raises(PromptError, match="'dog' does not occur"):
        grounding_prompt("a cat", ["cat", "dog"])
    with pytest.raises(PromptError, match="listed twice"):
        grounding_prompt("a cat", ["cat", "CAT"])
    with pytest.raises(PromptError, match="empty"):
        grounding_prompt("   ", ["cat"])
    with pytest.raises(PromptError, match="empty"):
        grounding_prompt("a cat", [" "])
    with pytest.raises(PromptError, match="no grounding phrases"):
        grounding_prompt("a cat", [])
    long = grounding_prompt("the cat " * 10, ["cat"])
    with pytest.raises(PromptError, match="cannot be split"):
        encode_prompt(long, tok, max_query_len=16)


# --- chunking ------------------------------------------------------------------------------


def random_names(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    word = lambda: "".join(rng.choice(letters) for _ in range(rng.randint(2, 12)))  # noqa: E731
    return ["_".join(word() for _ in range(rng.choice((1, 1, 1, 2, 3)))) for _ in range(count)]


class CountingTokenizer:
    """Counts whole-caption encodes: chunking must not re-tokenize a growing caption per label."""

    def __init__(self, tok):
        self.tok = tok
        self.encodes = 0

    def encode(self, text):
        self.encodes += 1
        return self.tok.encode(text)

    def __getattr__(self, name):
        return getattr(self.tok, name)


def test_chunking_lvis_sized(tok):
    names = random_names(1203)
    prompt = prompt_from_names(names)
    counting = CountingTokenizer(tok)
    chunks = encode_prompt(prompt, counting, max_query_len=256)
    assert len(chunks) > 1
    assert counting.encodes == len(chunks)
    check_chunks(chunks, prompt, 256)
    for chunk in chunks:
        assert tok.encode(chunk.caption).ids == chunk.input_ids.tolist()
        for label_id, tokens in chunk.positive_map.items():
            assert tokens == list(range(tokens[0], tokens[-1] + 1))
            assert decoded(tok, chunk, label_id) == names[label_id - 1].replace("_", " ")
    for chunk, following in pairwise(chunks):  # greedy: the next label would not have fit
        longer = chunk.caption + " " + prompt.names[following.label_ids[0] - 1] + "."
        assert len(tok.encode(longer).ids) > 256


def test_chunking_with_descriptions_and_padding(tok):
    prompt = parse_prompt("cat: a small feline. dog: a loyal canine. bird. stingray: flat fish. eel")
    chunks = encode_prompt(prompt, tok, max_query_len=12, pad_to=16)
    check_chunks(chunks, prompt, 12)
    assert [c.label_ids for c in chunks] == [(1,), (2, 3), (4, 5)]
    assert all(c.input_ids.shape == (16,) and c.attention_mask.shape == (16,) for c in chunks)
    assert all((c.input_ids[c.attention_mask == 0] == 0).all() for c in chunks)
    assert [decoded(tok, c, i) for c in chunks for i in c.label_ids] == prompt.names


class UnderCountingTokenizer:
    """Claims every piece is one token, so chunk sizes from counts alone would overflow."""

    def __init__(self, tok):
        self.tok = tok

    def encode_batch(self, pieces, add_special_tokens):
        return self.tok.encode_batch(["x"] * len(pieces), add_special_tokens=add_special_tokens)

    def __getattr__(self, name):
        return getattr(self.tok, name)


def test_chunks_are_verified_by_their_real_encoding(tok):
    prompt = prompt_from_names(random_names(60, seed=1))
    chunks = encode_prompt(prompt, UnderCountingTokenizer(tok), max_query_len=32)
    check_chunks(chunks, prompt, 32)
    expected = encode_prompt(prompt, tok, max_query_len=32)
    assert [c.caption for c in chunks] == [c.caption for c in expected]


def test_label_too_long_for_a_chunk(tok):
    prompt = parse_prompt("cat. " + "enormous " * 300 + "thing. dog")
    with pytest.raises(PromptError, match="'enormous enormous.*too long"):
        encode_prompt(prompt, tok, max_query_len=256)


def test_bad_lengths(tok):
    prompt = parse_prompt("cat")
    with pytest.raises(ConfigError):
        encode_prompt(prompt, tok, max_query_len=2)
    with pytest.raises(ConfigError):
        encode_prompt(prompt, tok, max_query_len=256, pad_to=128)


def test_chunk_key(tok):
    (a,) = encode_prompt(parse_prompt("cat. dog"), tok)
    (b,) = encode_prompt(parse_prompt(" cat .dog. "), tok)
    (c,) = encode_prompt(parse_prompt("cat. dogs"), tok)
    (d,) = encode_prompt(parse_prompt("cat. dog"), tok, pad_to=256)
    assert a.key() == b.key()
    assert len({a.key(), c.key(), d.key()}) == 3


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(text=st.text(), max_query_len=st.integers(3, 40))
def test_any_text_encodes_or_raises_prompt_error(tok, text, max_query_len):
    try:
        prompt = parse_prompt(text)
        chunks = encode_prompt(prompt, tok, max_query_len=max_query_len)
    except PromptError:
        return
    check_chunks(chunks, prompt, max_query_len)


@settings(max_examples=100, deadline=None)
@given(
    text=st.text(st.sampled_from(list("ab .:#_()\u0301\u00e9\x00\t日")), max_size=40),
    max_query_len=st.integers(3, 12),
)
def test_dense_grammar_text_encodes_or_raises_prompt_error(tok, text, max_query_len):
    try:
        prompt = parse_prompt(text)
        chunks = encode_prompt(prompt, tok, max_query_len=max_query_len)
    except PromptError:
        return
    check_chunks(chunks, prompt, max_query_len)


@settings(max_examples=100, deadline=None)
@given(caption=st.text(min_size=1), data=st.data())
def test_grounding_any_caption(tok, caption, data):
    starts = data.draw(st.lists(st.integers(0, len(caption) - 1), min_size=1, max_size=3))
    phrases = [caption[s : s + data.draw(st.integers(1, 6))] for s in starts]
    try:
        prompt = grounding_prompt(caption, phrases)
        chunks = encode_prompt(prompt, tok, max_query_len=64)
    except PromptError:
        return
    check_chunks(chunks, prompt, 64)


def test_categories_named_prefers_the_name_as_written_then_glips_cleaning():
    from glipcli.prompt import categories_named, name_key

    lvis = [
        {"id": 1, "name": "bow_(weapon)"},
        {"id": 2, "name": "bow_(decorative_ribbon)"},
        {"id": 3, "name": "Red  Circle"},
    ]
    named = categories_named(["bow_(weapon)", "BOW (weapon)", "bow", "red circle", "stingray"], lvis)
    assert named == [[1], [1, 2], [1, 2], [3], []]  # "bow (weapon)" is not written as any: cleaned, it is "bow"
    assert name_key("  Red\tCircle ") == "red circle"
