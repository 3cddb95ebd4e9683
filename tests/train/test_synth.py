"""Synthetic grounding data: vocabulary, scenes, boxes, prompts and spans, dataset, COCO sets."""

from __future__ import annotations

import json
import re
import time

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from glipcli.errors import ConfigError
from glipcli.train import render
from glipcli.train.synth import (
    ALL_COMBOS,
    COLOURS,
    HELD_OUT,
    SHAPES,
    TRAIN_COMBOS,
    Scene,
    SyntheticGrounding,
    detection_prompt,
    grounding_caption,
    lab,
    make_sample,
    render_scene,
    sample_captions,
    sample_colour,
    write_detection_set,
)

# Straight from the issue, not from the module.
ISSUE_COLOURS = {"red", "green", "blue", "yellow", "orange", "purple", "white", "black"}
ISSUE_SHAPES = {"circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "heart"}
ISSUE_HELD_OUT = {
    ("purple", "triangle"),
    ("orange", "star"),
    ("green", "heart"),
    ("blue", "diamond"),
    ("yellow", "cross"),
    ("white", "hexagon"),
    ("black", "circle"),
    ("red", "square"),
}


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def cv2_lab(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's CIELAB, an implementation independent of the module's."""
    return cv2.cvtColor(np.asarray(rgb, np.float32).reshape(1, -1, 3) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3)


def words_of(phrase: str, colour: str, shape: str) -> bool:
    """Whether a prompt phrase ("red", "star", "red star", "red stars") describes a colour/shape object."""
    allowed = {colour, shape, shape + "s", shape + "es"}
    return set(phrase.split()) <= allowed


# --- vocabulary and colours ---------------------------------------------------------------------


def test_vocabulary_is_the_issues():
    assert set(COLOURS) == ISSUE_COLOURS and len(COLOURS) == 8
    assert set(SHAPES) == ISSUE_SHAPES and len(SHAPES) == 8
    assert HELD_OUT == ISSUE_HELD_OUT
    assert len(ALL_COMBOS) == len(set(ALL_COMBOS)) == 64
    assert set(TRAIN_COMBOS) == set(ALL_COMBOS) - ISSUE_HELD_OUT and len(TRAIN_COMBOS) == 56


def test_lab_agrees_with_opencv():
    colours = rng(0).uniform(0, 255, (500, 3))
    np.testing.assert_allclose(lab(colours), cv2_lab(colours), atol=0.5)


def test_colour_names_never_collide_and_cover_everyday_values():
    g = rng(1)
    samples = {name: cv2_lab(np.stack([sample_colour(g, name) for _ in range(400)])) for name in COLOURS}
    names = list(COLOURS)
    for i, a in enumerate(names):
        assert samples[a].std(axis=0).max() > 1.0, f"{a} is not jittered"
        for b in names[i + 1 :]:
            gap = np.linalg.norm(samples[a][:, None] - samples[b][None], axis=-1).min()
            assert gap > 10, f"{a} and {b} come within {gap:.1f} CIELAB units"

    def nearest(rgb: tuple[int, int, int]) -> str:
        point = cv2_lab(np.array(rgb))
        return min(names, key=lambda n: np.linalg.norm(samples[n] - point, axis=-1).min())

    for name, rgb in COLOURS.items():
        assert nearest(rgb) == name
    everyday = {
        "red": [(255, 0, 0), (214, 39, 40)],
        "green": [(0, 128, 0), (0, 255, 0), (44, 160, 44)],
        "blue": [(0, 0, 255), (31, 119, 180)],
        "yellow": [(255, 255, 0)],
        "orange": [(255, 165, 0), (255, 127, 14)],
        "purple": [(128, 0, 128), (148, 0, 211)],
        "white": [(255, 255, 255)],
        "black": [(0, 0, 0)],
    }
    for name, values in everyday.items():
        for rgb in values:
            assert nearest(rgb) == name, rgb


# --- geometry and rasterisers -------------------------------------------------------------------


def test_square_and_diamond_are_told_apart_by_rotation():
    g = rng(2)
    for _ in range(200):
        square = render.sample_geometry(g, "square", 50).points
        dx, dy = square[1] - square[0]
        tilt = (np.degrees(np.arctan2(dy, dx)) + 45) % 90 - 45
        assert abs(tilt) <= 20.0 + 1e-6
        diamond = render.sample_geometry(g, "diamond", 50).points
        top = diamond[0]  # the corner that points up before rotation
        assert np.degrees(np.arccos(-top[1] / np.linalg.norm(top))) <= 20.0 + 1e-6


@pytest.mark.parametrize("shape", SHAPES)
def test_rasterisers_agree_on_the_shape(shape):
    """OpenCV (both line types), Pillow and supersampling draw the same geometry within a pixel."""
    geom = render.sample_geometry(rng(3), shape, 60)
    masks = {}
    for style in render.STYLES:
        coverage, y0, x0 = render.rasterise(geom, (50.0, 50.0), (100, 100), thickness=0, style=style)
        full = np.zeros((100, 100), bool)
        full[y0 : y0 + coverage.shape[0], x0 : x0 + coverage.shape[1]] = coverage >= 128
        masks[style] = full
    for style, mask in masks.items():
        iou = (mask & masks["supersample"]).sum() / (mask | masks["supersample"]).sum()
        assert iou > 0.9, (style, iou)
        ys, xs = np.nonzero(mask)
        assert 58 <= max(np.ptp(xs), np.ptp(ys)) + 1 <= 62, style


def test_circle_ellipse_matches_its_outline():
    """The OpenCV path draws circles with cv2.ellipse; it must cover the same pixels as the polygon."""
    for seed in range(10):
        geom = render.sample_geometry(rng(seed), "circle", 150)
        coverage, y0, x0 = render.rasterise(geom, (100.0, 100.0), (200, 200), thickness=0, style="cv2")
        drawn = np.zeros((200, 200), bool)
        drawn[y0 : y0 + coverage.shape[0], x0 : x0 + coverage.shape[1]] = coverage >= 128
        polygon = np.zeros((200, 200), np.uint8)
        cv2.fillPoly(polygon, [np.rint(geom.points + 100).astype(np.int32)], 255)
        iou = (drawn & (polygon > 0)).sum() / (drawn | (polygon > 0)).sum()
        assert iou > 0.97, (seed, iou)


# --- scenes -------------------------------------------------------------------------------------


def test_scenes_stay_within_the_issues_ranges():
    for seed in range(12):
        scene = render_scene(rng(seed), TRAIN_COMBOS)
        h, w = scene.image.shape[:2]
        assert scene.image.dtype == np.uint8 and scene.image.shape == (h, w, 3)
        assert 256 <= h <= 640 and 256 <= w <= 640
        n = len(scene.boxes)
        assert 1 <= n <= 8 and len(scene.colours) == len(scene.shapes) == n
        assert scene.boxes.dtype == np.float32 and scene.boxes.shape == (n, 4)
        x1, y1, x2, y2 = scene.boxes.T
        assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= w).all() and (y2 <= h).all()
        sides = np.maximum(x2 - x1, y2 - y1)
        assert (sides >= 8).all() and (sides <= 220).all()  # >= half of 16 (occlusion); <= 200 + stroke
    three = render_scene(rng(0), TRAIN_COMBOS, min_objects=3, max_objects=3)
    assert len(three.boxes) == 3


def test_held_out_pairs_are_never_drawn_in_training():
    drawn = set()
    for seed in range(150):
        scene = render_scene(rng(seed), TRAIN_COMBOS)
        drawn |= set(zip(scene.colours, scene.shapes, strict=True))
    assert not drawn & HELD_OUT
    assert drawn <= set(TRAIN_COMBOS) and len(drawn) > 40  # many pairs, so the absence means something


def test_only_requested_pairs_are_drawn():
    combos = [("black", "circle"), ("white", "heart")]
    for seed in range(20):
        scene = render_scene(rng(seed), combos)
        assert set(zip(scene.colours, scene.shapes, strict=True)) <= set(combos)


def background_of(image: np.ndarray) -> np.ndarray:
    packed = image.reshape(-1, 3).astype(np.int32) @ np.array([1 << 16, 1 << 8, 1])
    values, counts = np.unique(packed, return_counts=True)
    mode = int(values[counts.argmax()])
    return np.array([mode >> 16, (mode >> 8) & 255, mode & 255])


def test_box_is_tight_around_a_lone_shape():
    """Against the pixels at least half-way from background to shape colour (no blur in plain scenes)."""
    errors = []
    for shape in SHAPES:
        for seed in range(4):
            colour = list(COLOURS)[(seed + SHAPES.index(shape)) % 8]
            scene = render_scene(rng(seed), [(colour, shape)], min_objects=1, max_objects=1, plain=True)
            diff = np.abs(scene.image.astype(int) - background_of(scene.image)).max(axis=-1)
            ys, xs = np.nonzero(diff > 0.5 * diff.max())
            expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            errors.append(scene.boxes[0] - expected)
            side = max(expected[2] - expected[0], expected[3] - expected[1])
            assert 15 <= side <= 220, (shape, seed, side)
    errors = np.abs(np.array(errors))
    assert errors.max() <= 1 and errors.mean() < 0.15, errors.mean(axis=0)


def test_boxes_of_overlapping_shapes_hold_only_visible_pixels():
    combos = [("red", "square"), ("blue", "square")]
    checked = 0
    for seed in range(300):
        scene = render_scene(rng(seed), combos, min_objects=2, max_objects=2, plain=True)
        if sorted(scene.colours) != ["blue", "red"]:
            continue
        a, b = scene.boxes
        if min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]):
            continue
        hsv = cv2.cvtColor(scene.image, cv2.COLOR_RGB2HSV)
        hue, saturated = hsv[..., 0].astype(int), hsv[..., 1] > 120
        pixels = {"red": saturated & ((hue <= 8) | (hue >= 170)), "blue": saturated & (hue >= 98) & (hue <= 122)}
        for box, colour in zip(scene.boxes, scene.colours, strict=True):
            ys, xs = np.nonzero(pixels[colour])
            expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert np.abs(box - expected).max() <= 1, (seed, colour, box, expected)
        checked += 1
        if checked == 4:
            return
    pytest.fail(f"only {checked} overlapping red/blue scenes found")


# --- prompts and captions -----------------------------------------------------------------------


def hand_scene() -> Scene:
    """A small red circle left of a large blue star, and two yellow hearts below."""
    boxes = np.array([[10, 100, 50, 140], [180, 60, 300, 180], [60, 250, 100, 290], [150, 250, 190, 290]], np.float32)
    image = np.zeros((320, 320, 3), np.uint8)
    return Scene(image, boxes, ["red", "blue", "yellow", "yellow"], ["circle", "star", "heart", "heart"])


def test_detection_prompts_ground_each_phrase_in_the_right_boxes():
    scene = hand_scene()
    train_phrases = {f"{c} {s}" for c, s in TRAIN_COMBOS} | ISSUE_COLOURS | ISSUE_SHAPES
    seen_bare, seen_hard_negative = False, False
    for seed in range(80):
        caption, spans = detection_prompt(rng(seed), scene, TRAIN_COMBOS, max_phrases=12)
        assert caption.endswith(".") and not caption.endswith("..")
        phrases = caption[:-1].split(". ")
        assert 1 <= len(phrases) <= 12 and len(set(phrases)) == len(phrases)
        assert set(phrases) <= train_phrases
        assert len(spans) == len(scene.boxes)
        for i, (colour, shape) in enumerate(zip(scene.colours, scene.shapes, strict=True)):
            texts = [caption[s:e] for s, e in spans[i]]
            assert all(s == 0 or caption[s - 1] == " " for s, _ in spans[i])
            # per-word targets: every word describing the object, wherever it stands
            assert sorted(texts) == sorted(w for p in phrases for w in p.split() if words_of(w, colour, shape))
        assert any(spans), caption
        present_words = set(scene.colours) | set(scene.shapes)
        seen_bare |= any(" " not in p and p in present_words for p in phrases)
        seen_hard_negative |= any(p in {"red star", "blue circle", "red heart", "yellow star"} for p in phrases)
    assert seen_bare and seen_hard_negative


def test_detection_prompts_keep_to_max_phrases():
    scene = render_scene(rng(4), TRAIN_COMBOS, min_objects=8, max_objects=8)
    for seed in range(20):
        caption, _ = detection_prompt(rng(seed), scene, TRAIN_COMBOS, max_phrases=3)
        assert 1 <= len(caption[:-1].split(". ")) <= 3


def test_grounding_captions_are_true_of_the_scene():
    scene = hand_scene()
    relation = re.compile(
        r"(?:(small|large) )?(\w+ \w+) (left of|right of|above|below) an? (?:(small|large) )?(\w+ \w+)"
    )
    seen_relation, seen_plural = False, False
    for seed in range(120):
        caption, spans = grounding_caption(rng(seed), scene)
        assert len(spans) == len(scene.boxes)
        for i, (colour, shape) in enumerate(zip(scene.colours, scene.shapes, strict=True)):
            words = [caption[s:e] for s, e in spans[i]]
            assert words in ([], [colour, shape], [colour, f"{shape}s"])  # this scene shares no words
        assert spans[2] == spans[3]  # the two hearts are one plural entity or unmentioned
        if spans[2]:
            (s, _), (_, e) = spans[2]
            assert caption[s:e] == "yellow hearts" and caption[:s].endswith("two ")
            seen_plural = True
        assert any(spans)
        m = relation.search(caption)
        if m:
            seen_relation = True
            first, rel, second = m.group(2), m.group(3), m.group(5)
            assert {first, second} == {"red circle", "blue star"}
            assert rel == ("left of" if first == "red circle" else "right of")
            assert (m.group(1), m.group(4)) == (("small", "large") if first == "red circle" else ("large", "small"))
    assert seen_relation and seen_plural


def test_training_captions_never_name_held_out_pairs():
    dataset = SyntheticGrounding(3, 120)
    both_words = 0
    for i in range(len(dataset)):
        caption = dataset[i].caption
        for colour, shape in HELD_OUT:
            assert f"{colour} {shape}" not in caption
        both_words += "purple" in caption and "triangle" in caption
    assert both_words > 0  # the held-out words do appear, just never together


# --- samples and dataset ------------------------------------------------------------------------


@pytest.mark.parametrize("grounding_prob", [0.0, 1.0])
def test_samples_are_consistent(grounding_prob):
    vocabulary = {f"{c} {s}" for c, s in TRAIN_COMBOS} | ISSUE_COLOURS | ISSUE_SHAPES
    for seed in range(6):
        sample = make_sample(rng(seed), TRAIN_COMBOS, grounding_prob=grounding_prob)
        n = len(sample.boxes)
        assert sample.boxes.shape == (n, 4) and len(sample.box_spans) == n
        assert sample.image.dtype == np.uint8 and sample.image.ndim == 3
        for spans in sample.box_spans:
            assert all(0 <= s < e <= len(sample.caption) for s, e in spans)
        is_prompt = set(sample.caption.removesuffix(".").split(". ")) <= vocabulary
        assert is_prompt == (grounding_prob == 0.0), sample.caption


def test_sampled_captions_are_training_captions_without_pictures():
    """The token projection is initialised from these: they must read like training captions."""
    captions = sample_captions(4, 200, max_phrases=40)
    assert captions == sample_captions(4, 200, max_phrases=40) and captions != sample_captions(5, 200, max_phrases=40)
    vocabulary = {f"{c} {s}" for c, s in TRAIN_COMBOS} | ISSUE_COLOURS | ISSUE_SHAPES
    prompts = [c for c in captions if set(c.removesuffix(".").split(". ")) <= vocabulary]
    assert 0.5 < len(prompts) / len(captions) < 0.9  # both kinds, mostly detection prompts as in training
    assert max(len(p.split(". ")) for p in prompts) > 12  # long class lists reach max_phrases
    for caption in captions:
        assert not any(f"{colour} {shape}" in caption for colour, shape in HELD_OUT)
    only = sample_captions(0, 30, [("red", "circle")], grounding_prob=0.0)
    assert all(set(c.removesuffix(".").split(". ")) <= {"red circle", "red", "circle"} for c in only)


def test_dataset_is_a_pure_function_of_seed_and_index():
    a, b = SyntheticGrounding(11, 50), SyntheticGrounding(11, 50)
    first, again = a[7], b[7]
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.boxes, again.boxes)
    assert (first.caption, first.box_spans) == (again.caption, again.box_spans)
    for other in (a[8], SyntheticGrounding(12, 50)[7]):
        assert other.image.shape != first.image.shape or not np.array_equal(other.image, first.image)
    assert a[-1].caption == a[49].caption and len(a) == 50
    with pytest.raises(IndexError):
        a[50]


def test_rendering_is_fast():
    dataset = SyntheticGrounding(0, 30)
    dataset[0]
    start = time.perf_counter()
    for i in range(1, 30):
        dataset[i]
    per_sample = (time.perf_counter() - start) / 29
    assert per_sample < 0.05, f"{per_sample * 1000:.1f} ms per sample"  # ~9 ms on 2 busy cores


def test_bad_requests_raise_config_errors():
    with pytest.raises(ConfigError, match="pink"):
        render_scene(rng(0), [("pink", "circle")])
    with pytest.raises(ConfigError):
        render_scene(rng(0), [])
    with pytest.raises(ConfigError):
        render_scene(rng(0), TRAIN_COMBOS, min_objects=3, max_objects=2)
    with pytest.raises(ConfigError, match="-1"):
        SyntheticGrounding(-1, 10)


# --- COCO evaluation sets -----------------------------------------------------------------------


def test_detection_set_is_a_coco_ground_truth(tmp_path):
    combos = [("red", "circle"), ("blue", "star"), ("black", "circle")]
    path = write_detection_set(tmp_path / "set", 3, seed=5, combos=combos)
    assert path == tmp_path / "set" / "annotations.json"
    coco = COCO(str(path))
    cats = coco.loadCats(coco.getCatIds())
    assert [(c["id"], c["name"]) for c in cats] == [(1, "red circle"), (2, "blue star"), (3, "black circle")]
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) >= 3
    for image in coco.loadImgs(coco.getImgIds()):
        with Image.open(tmp_path / "set" / "images" / image["file_name"]) as im:
            assert im.size == (image["width"], image["height"]) and im.format == "PNG"
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and w > 0 and h > 0
            assert x + w <= image["width"] and y + h <= image["height"]
            assert ann["area"] == pytest.approx(w * h) and ann["iscrowd"] == 0 and ann["category_id"] in (1, 2, 3)


def test_detection_set_is_deterministic_and_apart_from_training(tmp_path):
    one = write_detection_set(tmp_path / "one", 2, 9, TRAIN_COMBOS, file_ext=".jpg")
    two = write_detection_set(tmp_path / "two", 2, 9, TRAIN_COMBOS, file_ext=".jpg")
    assert one.read_text() == two.read_text()
    names = [im["file_name"] for im in json.loads(one.read_text())["images"]]
    assert names == ["000000.jpg", "000001.jpg"]
    for name in names:
        assert (tmp_path / "one" / "images" / name).read_bytes() == (tmp_path / "two" / "images" / name).read_bytes()
    other = write_detection_set(tmp_path / "other", 2, 10, TRAIN_COMBOS)
    assert json.loads(other.read_text())["annotations"] != json.loads(one.read_text())["annotations"]
    lossless = write_detection_set(tmp_path / "png", 1, 9, TRAIN_COMBOS)
    trained = SyntheticGrounding(9, 1)[0].image  # same seed, same pairs: only the seed streams differ
    evaluated = np.asarray(Image.open(lossless.parent / "images" / "000000.png"))
    assert evaluated.shape != trained.shape or not np.array_equal(evaluated, trained)
    with pytest.raises(ConfigError, match=".gif"):
        write_detection_set(tmp_path / "bad", 1, 0, TRAIN_COMBOS, file_ext=".gif")


def test_a_set_of_combinations_draws_the_same_scenes_in_every_process():
    """Sets iterate in hash order, which changes between interpreters: scenes must not."""
    import subprocess
    import sys

    code = (
        "from glipcli.train.synth import HELD_OUT, render_scene, _rng, _check_combos;print(_check_combos(HELD_OUT)[:3])"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outs) == 1
