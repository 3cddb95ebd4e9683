"""Synthetic grounding data: coloured shapes, detection-style prompts and grounding captions.

No GLIP weights can be downloaded, so glip-nano learns from generated scenes with GLIP's own
grounding objective. What the model must learn is the *words* — eight colours, eight shapes and
their composition — so eight colour/shape pairs (``HELD_OUT``) are never drawn nor named in
training and measure compositional zero-shot detection.

Conventions:
- Boxes are xyxy in pixel edges of the visible pixels: x2 is the last visible column + 1, so a
  COCO width is ``x2 - x1`` pixels (GLIP's loaders subtract 1 from x2/y2 for their "+1" boxes).
- Square and diamond differ only by rotation: squares are drawn within 20 degrees of upright and
  diamonds (squares turned 45 degrees, or rhombi 0.6-1.0 as wide as tall) within 20 degrees of
  standing on a corner, so the two never meet.
- Colour names cover disjoint HSV boxes (``_HSV_RANGES``) that each contain the everyday RGB
  value of the name (pure red, CSS orange and purple, lime and dark green, ...); sampled colours
  of different names stay at least ~13 CIELAB units apart.
- Prompts name bare colours ("red") as well as bare shapes ("star"): a bare word grounds every
  object that has it, which teaches each word on its own as well as in combination.
- Every object is at least half visible: a placement that would hide more of an earlier object
  is re-drawn elsewhere, so no object in the image is missing from the boxes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from glipcli.errors import ConfigError
from glipcli.train import render

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 20, 20),
    "green": (30, 160, 60),
    "blue": (30, 80, 220),
    "yellow": (250, 220, 20),
    "orange": (255, 140, 0),
    "purple": (130, 40, 170),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
# Per-name jitter: (hue degrees, saturation, value) ranges; hue may wrap below 0.
_HSV_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "red": ((-12, 6), (0.75, 1.0), (0.7, 1.0)),
    "green": ((90, 150), (0.55, 1.0), (0.45, 1.0)),
    "blue": ((200, 238), (0.6, 1.0), (0.6, 1.0)),
    "yellow": ((51, 63), (0.75, 1.0), (0.85, 1.0)),
    "orange": ((22, 40), (0.8, 1.0), (0.9, 1.0)),
    "purple": ((272, 300), (0.45, 1.0), (0.42, 0.78)),
    "white": ((0, 360), (0.0, 0.06), (0.93, 1.0)),
    "black": ((0, 360), (0.0, 0.3), (0.0, 0.15)),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "heart")
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {
        ("purple", "triangle"),
        ("orange", "star"),
        ("green", "heart"),
        ("blue", "diamond"),
        ("yellow", "cross"),
        ("white", "hexagon"),
        ("black", "circle"),
        ("red", "square"),
    }
)
ALL_COMBOS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)
TRAIN_COMBOS: tuple[tuple[str, str], ...] = tuple(c for c in ALL_COMBOS if c not in HELD_OUT)

# Longer side of a shape's outline box before occlusion (strokes add half their width); shapes
# are also kept under 0.6 of the image's shorter side so that several fit.
MIN_SIZE, MAX_SIZE = 16, 200
MIN_SIDE, MAX_SIDE = 256, 640  # image width and height, each drawn independently
MIN_VISIBLE = 0.5  # fraction of an object's pixels that must stay visible
MIN_CONTRAST = 22.0  # CIELAB distance between a shape and the mean of what lies under it
_PLACEMENT_TRIES = 12
_SCENE_TRIES = 20
# separate streams: no seed reproduces another's samples
_TRAIN_STREAM, _DETECTION_STREAM, _CAPTION_STREAM, _CROP_STREAM = 0, 1, 2, 3
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")


def sample_colour(rng: np.random.Generator, colour: str) -> np.ndarray:
    """One instance of a colour name: RGB float32 0-255 drawn from the name's HSV range."""
    (h0, h1), (s0, s1), (v0, v1) = _HSV_RANGES[colour]
    return render.hsv_colour(rng.uniform(h0, h1), rng.uniform(s0, s1), rng.uniform(v0, v1))


_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
_WHITE_XYZ = np.array([0.950456, 1.0, 1.088754])


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours 0-255, shape (..., 3): distances in it are close to perceived ones."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE_XYZ
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def _check_combos(combos: Sequence[tuple[str, str]] | AbstractSet[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    if isinstance(combos, AbstractSet):  # a set's order changes with PYTHONHASHSEED: sort it, or scenes would too
        combos = sorted(combos)
    combos = tuple((str(c), str(s)) for c, s in combos)
    if not combos:
        raise ConfigError("no colour/shape combinations to draw from")
    for colour, shape in combos:
        if colour not in COLOURS or shape not in SHAPES:
            known = f"colours are {', '.join(COLOURS)}; shapes are {', '.join(SHAPES)}"
            raise ConfigError(f"unknown combination {colour!r} {shape!r}: {known}")
    return combos


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (n, 4) float32 xyxy, tight boxes of the visible pixels of each shape
    colours: list[str]
    shapes: list[str]


@dataclass
class _Layer:
    """What occlusion bookkeeping needs of a drawn object: its pixels, and which are still visible."""

    y0: int
    x0: int
    mask: np.ndarray  # bool, window-local
    visible: np.ndarray  # bool, window-local
    colour: str | None  # None for clutter
    shape: str | None


def _window_overlap(a: _Layer, b: _Layer) -> tuple[slice, slice, slice, slice] | None:
    """Slices of a's and b's windows that cover the same image pixels, or None."""
    y0, x0 = max(a.y0, b.y0), max(a.x0, b.x0)
    y1 = min(a.y0 + a.mask.shape[0], b.y0 + b.mask.shape[0])
    x1 = min(a.x0 + a.mask.shape[1], b.x0 + b.mask.shape[1])
    if y0 >= y1 or x0 >= x1:
        return None
    return (
        slice(y0 - a.y0, y1 - a.y0),
        slice(x0 - a.x0, x1 - a.x0),
        slice(y0 - b.y0, y1 - b.y0),
        slice(x0 - b.x0, x1 - b.x0),
    )


def _occludes_too_much(new: _Layer, layers: list[_Layer]) -> bool:
    """True if ``new`` would leave an earlier object under MIN_VISIBLE, or covers one of its own colour."""
    for old in layers:
        if old.colour is None:
            continue
        ov = _window_overlap(old, new)
        if ov is None:
            continue
        hidden = int(np.count_nonzero(old.visible[ov[0], ov[1]] & new.mask[ov[2], ov[3]]))
        if hidden and new.colour == old.colour:  # two touching shapes of one colour merge into one blob
            return True
        if np.count_nonzero(old.visible) - hidden < MIN_VISIBLE * np.count_nonzero(old.mask):
            return True
    return False


def _cover(new: _Layer, layers: list[_Layer]) -> None:
    for old in layers:
        ov = _window_overlap(old, new)
        if ov is not None:
            old.visible[ov[0], ov[1]] &= ~new.mask[ov[2], ov[3]]


def _pick_combos(rng: np.random.Generator, combos: tuple[tuple[str, str], ...], n: int) -> list[tuple[str, str]]:
    """Objects to draw; repeats and shared colours/shapes are favoured, since telling
    "red star" from "red heart" and "blue star" is the point of grounding."""
    picked: list[tuple[str, str]] = []
    while len(picked) < n:
        u = rng.random()
        ref = picked[rng.integers(len(picked))] if picked else None
        related = [c for c in combos if (c[0] == ref[0]) != (c[1] == ref[1])] if ref and u >= 0.25 else []
        if ref and u < 0.25:
            picked.append(ref)
        elif related and u < 0.55:
            picked.append(related[rng.integers(len(related))])
        else:
            picked.append(combos[rng.integers(len(combos))])
    return picked


def _background_tone(colours: set[str]) -> tuple[float, float]:
    """Value range of background colours that leaves room for white and black shapes to stand out."""
    lo = 0.35 if "black" in colours else 0.0
    hi = 0.7 if "white" in colours else 1.0
    return lo, hi


def _place(
    rng: np.random.Generator,
    canvas: np.ndarray,
    layers: list[_Layer],
    colour: str | None,
    shape: str | None,
    paint: np.ndarray | None,
) -> None:
    """Draw one object (or a clutter blob when ``shape`` is None) where it keeps the scene legible."""
    hw = canvas.shape[:2]
    max_size = min(MAX_SIZE, 0.6 * min(hw))
    for _ in range(_PLACEMENT_TRIES):
        size = float(np.exp(rng.uniform(np.log(MIN_SIZE), np.log(max_size))))
        geom = render.sample_geometry(rng, shape, size) if shape else render.blob_geometry(rng, size)
        thickness = 0 if rng.random() < 0.65 else int(rng.integers(2, max(3, round(size * 0.08)) + 1))
        style = render.STYLES[rng.integers(len(render.STYLES))]
        rgb = sample_colour(rng, colour) if colour else paint
        half = np.abs(geom.points).max(axis=0) + thickness / 2
        centre = (rng.uniform(half[0], hw[1] - half[0]), rng.uniform(half[1], hw[0] - half[1]))
        coverage, y0, x0 = render.rasterise(geom, centre, hw, thickness=thickness, style=style)
        mask = coverage >= 128
        if np.count_nonzero(mask) < 12:
            continue
        layer = _Layer(y0, x0, mask, mask.copy(), colour, shape)
        if _occludes_too_much(layer, layers):
            continue
        region = canvas[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]]
        if colour and np.linalg.norm(np.subtract(*lab(np.stack([region[mask].mean(axis=0), rgb])))) < MIN_CONTRAST:
            continue
        render.composite(canvas, coverage, y0, x0, render.shaded(rgb, mask.shape, rng))
        _cover(layer, layers)
        layers.append(layer)
        return


def _compose(
    rng: np.random.Generator, combos: tuple[tuple[str, str], ...], min_objects: int, max_objects: int, plain: bool
) -> Scene:
    hw = (int(rng.integers(MIN_SIDE, MAX_SIDE + 1)), int(rng.integers(MIN_SIDE, MAX_SIDE + 1)))
    wanted = _pick_combos(rng, combos, int(rng.integers(min_objects, max_objects + 1)))
    tone = _background_tone({c for c, _ in wanted})
    if plain:
        canvas = render.flat(render.muted_colour(rng, tone), hw)
    else:
        canvas = render.background(rng, hw, tone)
        for _ in range(int(rng.integers(0, 6))):
            render.scribble(canvas, rng, render.muted_colour(rng, (0.25, 0.85)))
    layers: list[_Layer] = []
    for _ in range(0 if plain else int(rng.integers(0, 3))):  # blobs behind the shapes
        _place(rng, canvas, layers, None, None, render.muted_colour(rng, (0.25, 0.85)))
    for colour, shape in wanted:
        _place(rng, canvas, layers, colour, shape, None)
    if not plain and rng.random() < 0.3:  # a blob in front: occlusion by something that is not a shape
        _place(rng, canvas, layers, None, None, render.muted_colour(rng, (0.25, 0.85)))
    objects = [layer for layer in layers if layer.colour is not None]
    boxes = np.zeros((len(objects), 4), np.float32)
    for i, layer in enumerate(objects):
        ys, xs = np.nonzero(layer.visible)
        boxes[i] = (layer.x0 + xs.min(), layer.y0 + ys.min(), layer.x0 + xs.max() + 1, layer.y0 + ys.max() + 1)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8) if plain else render.degrade(canvas, rng)
    return Scene(image, boxes, [o.colour for o in objects], [o.shape for o in objects])


def render_scene(
    rng: np.random.Generator,
    combos: Sequence[tuple[str, str]],
    *,
    min_objects: int = 1,
    max_objects: int = 8,
    plain: bool = False,
) -> Scene:
    """A random scene of ``min_objects``..``max_objects`` shapes drawn from ``combos``.

    ``plain`` draws on a flat background without clutter or degradations (tests, debugging).
    """
    combos = _check_combos(combos)
    if not 0 <= min_objects <= max_objects or max_objects < 1:
        raise ConfigError(f"object counts must satisfy 0 <= min <= max, max >= 1; got {min_objects}..{max_objects}")
    for _ in range(_SCENE_TRIES):
        scene = _compose(rng, combos, min_objects, max_objects, plain)
        if len(scene.boxes) >= min_objects:
            return scene
    raise ConfigError(f"could not place {min_objects} shapes legibly in {_SCENE_TRIES} tries; ask for fewer objects")


@dataclass
class GroundingSample:
    image: np.ndarray
    boxes: np.ndarray  # (n, 4)
    caption: str
    box_spans: list[list[tuple[int, int]]]  # per box: character spans in `caption` that ground it
    # The names a box competes among (character spans, e.g. every category of a detection prompt) and
    # each box's own name (index into name_spans): the loss ranks a box's own name first among them,
    # as the model scores names (glipcli.train.loss.name_rank_loss). Empty where none compete.
    name_spans: tuple[tuple[int, int], ...] = ()
    box_names: tuple[int, ...] = ()


_Key = tuple[str | None, str | None]  # (colour, shape) a phrase refers to; None = any


def _phrase(key: _Key) -> str:
    return " ".join(w for w in key if w)


class _Caption:
    """A caption built piece by piece, recording where each grounded word lands.

    Targets are per word, not per phrase: "red" in "red heart" is positive for a red circle too,
    "heart" is not. With phrase targets the same "red" token would be positive in "red circle" and
    negative in "red heart" at the same anchor; glip-nano's text side is nearly context-free (a
    frozen MiniLM and a frozen projection), so those are almost one vector and the loss capped its
    probability (measured 0.26 own phrase vs 0.22 shared-word phrase). A phrase still scores highest
    on the object it names, as inference averages its tokens' probabilities.
    """

    def __init__(self) -> None:
        self.text = ""
        self.spans: list[tuple[_Key, tuple[int, int]]] = []

    def add(self, text: str) -> None:
        self.text += text

    def phrase(self, text: str, key: _Key) -> None:
        """Append ``text`` naming ``key``: "<colour> <shape>", a plural, or one bare word."""
        start = len(self.text)
        self.text += text
        colour, shape = key
        if colour and shape:  # the colour is the first word, the shape (maybe plural) the rest
            cut = start + len(colour)
            self.spans += [((colour, None), (start, cut)), ((None, shape), (cut + 1, len(self.text)))]
        else:
            self.spans.append((key, (start, len(self.text))))

    def box_spans(self, scene: Scene) -> list[list[tuple[int, int]]]:
        return [
            [span for (kc, ks), span in self.spans if kc in (None, colour) and ks in (None, shape)]
            for colour, shape in zip(scene.colours, scene.shapes, strict=True)
        ]


def detection_prompt(
    rng: np.random.Generator, scene: Scene, combos: Sequence[tuple[str, str]], *, max_phrases: int = 12
) -> tuple[str, list[list[tuple[int, int]]]]:
    """A detection-style prompt "red circle. star. blue heart." for ``scene``, and each box's spans.

    Positives name objects present ("<colour> <shape>", sometimes a bare shape or colour);
    negatives are phrases of ``combos`` and bare words that match nothing in the image, half of
    them sharing a word with an object present (the hard negatives of a compositional task).
    """
    combos = _check_combos(combos)
    if max_phrases < 1:
        raise ConfigError(f"max_phrases must be at least 1, got {max_phrases}")
    present = list(dict.fromkeys(zip(scene.colours, scene.shapes, strict=True)))
    colours, shapes = {c for c, _ in present}, {s for _, s in present}
    positives: list[_Key] = [k for k in present if rng.random() < 0.85]
    positives += [(None, s) for s in sorted(shapes) if rng.random() < 0.15]
    positives += [(c, None) for c in sorted(colours) if rng.random() < 0.07]
    if present and not positives:
        positives.append(present[0])
    rng.shuffle(positives)
    positives = positives[:max_phrases]

    absent = [k for k in combos if k not in present]
    hard = [k for k in absent if k[0] in colours or k[1] in shapes]
    pools: list[list[_Key]] = [
        hard,
        absent,
        [(None, s) for s in dict.fromkeys(s for _, s in combos) if s not in shapes],
        [(c, None) for c in dict.fromkeys(c for c, _ in combos) if c not in colours],
    ]
    negatives: list[_Key] = []
    for _ in range(int(rng.integers(0, max_phrases - len(positives) + 1))):
        u = rng.random()
        pool = pools[0 if u < 0.4 else 1 if u < 0.8 else 2 if u < 0.93 else 3]
        fresh = [k for k in pool if k not in negatives]
        if fresh:
            negatives.append(fresh[rng.integers(len(fresh))])
    phrases = positives + negatives
    rng.shuffle(phrases)
    caption = _Caption()
    for i, key in enumerate(phrases):
        caption.add(". " if i else "")
        caption.phrase(_phrase(key), key)
    caption.add(".")
    return caption.text, caption.box_spans(scene)


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def _entity(caption: _Caption, key: tuple[str, str], count: int, size: str | None) -> None:
    """Append "a small red circle" or "three blue stars"; the span covers the colour and shape words."""
    if count > 1:
        caption.add(f"{_NUMBERS[count] if count < len(_NUMBERS) else count} ")
        caption.phrase(f"{key[0]} {_plural(key[1])}", key)
        return
    first = size or key[0]
    caption.add(("an " if first[0] in "aeiou" else "a ") + (f"{size} " if size else ""))
    caption.phrase(f"{key[0]} {key[1]}", key)


def _size_word(box: np.ndarray) -> str | None:
    side = float(max(box[2] - box[0], box[3] - box[1]))
    return "small" if side <= 48 else "large" if side >= 100 else None


def _region(box: np.ndarray, hw: tuple[int, int]) -> str:
    cx, cy = (box[0] + box[2]) / 2 / hw[1], (box[1] + box[3]) / 2 / hw[0]
    row = ("top", "", "bottom")[min(2, int(cy * 3))]
    col = ("left", "", "right")[min(2, int(cx * 3))]
    return f"{row} {col}".strip() or "center"


def _relation(a: np.ndarray, b: np.ndarray) -> str | None:
    """Where box a is relative to box b, along the axis that separates their centres most."""
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    if max(abs(dx), abs(dy)) < 10:
        return None
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def grounding_caption(rng: np.random.Generator, scene: Scene) -> tuple[str, list[list[tuple[int, int]]]]:
    """A short sentence about one to three kinds of object in ``scene``, true of the image.

    "a small red circle left of a large blue star", "two green hearts and a white cross",
    "a black star in the top left of the image". Objects not mentioned are background for it.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(scene.colours, scene.shapes, strict=True)):
        groups.setdefault(key, []).append(i)
    keys = list(groups)
    rng.shuffle(keys)
    keys = keys[: int(rng.integers(1, min(3, len(keys)) + 1))]
    caption = _Caption()
    single = [len(groups[k]) == 1 for k in keys]
    boxes = [scene.boxes[groups[k][0]] for k in keys]
    relation = _relation(boxes[0], boxes[1]) if len(keys) == 2 and all(single) else None
    if relation and rng.random() < 0.7:
        areas = [float((b[2] - b[0]) * (b[3] - b[1])) for b in boxes]
        contrast = max(areas) > 2.5 * min(areas)  # size words only where they tell the two apart
        sizes = [_size_word(b) if contrast else None for b in boxes]
        _entity(caption, keys[0], 1, sizes[0])
        caption.add(f" {relation} ")
        _entity(caption, keys[1], 1, sizes[1])
    elif len(keys) == 1:
        key, count = keys[0], len(groups[keys[0]])
        size = _size_word(boxes[0]) if count == 1 and rng.random() < 0.5 else None
        templates = [("", ""), ("a photo of ", ""), ("there is " if count == 1 else "there are ", " in the image")]
        templates.append(("this picture shows ", ""))
        if count == 1:
            templates.append(("", f" in the {_region(boxes[0], scene.image.shape[:2])} of the image"))
        before, after = templates[rng.integers(len(templates))]
        caption.add(before)
        _entity(caption, key, count, size)
        caption.add(after)
    else:
        for i, key in enumerate(keys):
            caption.add("" if i == 0 else " and " if i == len(keys) - 1 else ", ")
            _entity(caption, key, len(groups[key]), None)
    if rng.random() < 0.5:
        caption.add(".")
    return caption.text, caption.box_spans(scene)


def make_sample(
    rng: np.random.Generator, combos: Sequence[tuple[str, str]], *, grounding_prob: float = 0.3, max_phrases: int = 12
) -> GroundingSample:
    """A scene (``render_scene`` with the same generator) and a detection prompt or grounding caption."""
    scene = render_scene(rng, combos)
    if rng.random() < grounding_prob and len(scene.boxes):
        caption, spans = grounding_caption(rng, scene)
    else:
        caption, spans = detection_prompt(rng, scene, combos, max_phrases=max_phrases)
    return GroundingSample(scene.image, scene.boxes, caption, spans)


def _check_seed(seed: int) -> int:
    if seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    return seed


def _rng(stream: int, seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([stream, _check_seed(seed), index])


class SyntheticGrounding:
    """Map-style dataset (a torch DataLoader takes it as is): sample i is a pure function of (seed, i)."""

    def __init__(
        self,
        seed: int,
        length: int,
        combos: Sequence[tuple[str, str]] = TRAIN_COMBOS,
        *,
        grounding_prob: float = 0.3,
        max_phrases: int = 12,
    ) -> None:
        if length < 0:
            raise ConfigError(f"dataset length must be non-negative, got {length}")
        self.seed, self.length, self.combos = _check_seed(seed), length, _check_combos(combos)
        self.grounding_prob, self.max_phrases = grounding_prob, max_phrases

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> GroundingSample:
        if not -self.length <= i < self.length:
            raise IndexError(f"sample {i} of a dataset of {self.length}")
        rng = _rng(_TRAIN_STREAM, self.seed, i % self.length)
        return make_sample(rng, self.combos, grounding_prob=self.grounding_prob, max_phrases=self.max_phrases)


def sample_captions(
    seed: int,
    n: int,
    combos: Sequence[tuple[str, str]] = TRAIN_COMBOS,
    *,
    grounding_prob: float = 0.3,
    max_phrases: int = 12,
) -> list[str]:
    """``n`` captions distributed like the training samples', from scenes laid out but not drawn.

    For statistics of the text side (the token projection's initialisation): drawing the scenes
    would cost ~0.3 s each for pixels nobody looks at.
    """
    combos = _check_combos(combos)
    captions = []
    for i in range(n):
        rng = _rng(_CAPTION_STREAM, seed, i)
        hw = (int(rng.integers(MIN_SIDE, MAX_SIDE + 1)), int(rng.integers(MIN_SIDE, MAX_SIDE + 1)))
        wanted = _pick_combos(rng, combos, int(rng.integers(1, 9)))
        sizes = np.exp(rng.uniform(np.log(MIN_SIZE), np.log(0.6 * min(hw)), len(wanted)))
        corners = rng.uniform(0, 1, (len(wanted), 2)) * (np.array(hw[::-1]) - sizes[:, None])
        boxes = np.concatenate([corners, corners + sizes[:, None]], axis=1).astype(np.float32)
        scene = Scene(np.zeros((*hw, 0), np.uint8), boxes, [c for c, _ in wanted], [s for _, s in wanted])
        if rng.random() < grounding_prob:
            captions.append(grounding_caption(rng, scene)[0])
        else:
            captions.append(detection_prompt(rng, scene, combos, max_phrases=max_phrases)[0])
    return captions


def crop_scene(seed: int, index: int, combos: Sequence[tuple[str, str]] = TRAIN_COMBOS) -> Scene:
    """Scene ``index`` of the region namer's training data (glipcli.train.namer): its own stream."""
    return render_scene(_rng(_CROP_STREAM, seed, index), combos)


def write_detection_set(
    out_dir: Path, n_images: int, seed: int, combos: Sequence[tuple[str, str]], *, file_ext: str = ".png"
) -> Path:
    """Render ``n_images`` scenes to ``out_dir/images/`` and return ``out_dir/annotations.json``.

    A COCO ground truth for ``glip eval``: categories "<colour> <shape>" with ids 1..K in the
    order of ``combos``; ``file_name`` is relative to ``out_dir/images`` (COCO's convention).
    Scenes come from a seed stream separate from training, so no seed reproduces training images.
    """
    combos = tuple(dict.fromkeys(_check_combos(combos)))
    if file_ext.lower() not in _IMAGE_EXTENSIONS:
        raise ConfigError(f"unsupported image extension {file_ext!r}: use one of {', '.join(_IMAGE_EXTENSIONS)}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    category = {key: i + 1 for i, key in enumerate(combos)}
    images, annotations = [], []
    for i in range(n_images):
        scene = render_scene(_rng(_DETECTION_STREAM, seed, i), combos)
        name = f"{i:06d}{file_ext}"
        Image.fromarray(scene.image).save(out_dir / "images" / name, quality=95)
        h, w = scene.image.shape[:2]
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for box, colour, shape in zip(scene.boxes.tolist(), scene.colours, scene.shapes, strict=True):
            bw, bh = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": category[(colour, shape)],
                    "bbox": [box[0], box[1], bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
    document = {
        "info": {"description": "glipcli synthetic shapes", "seed": seed},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": _phrase(key), "supercategory": "shape"} for key, i in category.items()],
    }
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(document, indent=1))
    return path
