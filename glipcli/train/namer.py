"""Training the region namer (glipcli.model.namer) on the generator's scenes.

Every object of fresh scenes (their own seed stream) is cut out as the runtime cuts detections
out (glipcli.crops), its box jittered as a detector's boxes are off, plus background crops that
hold no object. Jittered boxes never look like a detector's loose or false boxes, so, as two-stage
detectors train their second stage on the first stage's proposals, the detector's own boxes on the
first scenes are added: named as the object they overlap, or as background. Prompts are lists of
the trained names (and bare shape names) in random order and number, encoded once by the bundle's
own text graph, so the namer learns on exactly the features it will see. Targets are per word, as
glip-nano's: "red" is positive for every red object, "heart" for every heart; a background crop
has no positive. Deterministic given the seed and the thread count; a run takes minutes, so it is
not resumable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from glipcli.config import NamerConfig
from glipcli.crops import box_crops
from glipcli.model.namer import RegionNamer
from glipcli.train.synth import COLOURS, SHAPES, TRAIN_COMBOS, crop_scene

if TYPE_CHECKING:
    from glipcli.api import Detector

COLOUR_NAMES = tuple(COLOURS)


@dataclass(frozen=True)
class NamerRecipe:
    """How the namer is trained; the defaults are glip-nano's (docs/glip-nano.md)."""

    steps: int = 3600
    batch_size: int = 64
    lr: float = 2e-3
    scenes: int = 4000  # about 18,000 objects, each cut out twice with different jitter
    prompts: int = 400
    background: float = 0.15  # share of crops with no object
    jitter: float = 0.07  # box centre moves by this share of its size (one standard deviation)
    proposal_scenes: int = 1000  # scenes whose detector boxes are added (0: jittered boxes only)
    proposal_threshold: float = 0.15  # GLIP score a detector box needs to be added
    seed: int = 0


RIGHT_IOU = 0.5  # a detector box this close to an object is named as it
BACKGROUND_IOU = 0.2  # one this far from every object names nothing; those between are left out


@dataclass(frozen=True)
class Examples:
    crops: np.ndarray  # (M, 3, S, S) uint8
    colours: np.ndarray  # (M,) index into COLOUR_NAMES, -1 for background
    shapes: np.ndarray  # (M,) index into SHAPES, -1 for background


@dataclass(frozen=True)
class EncodedPrompt:
    features: np.ndarray  # (T, D) each word's features, encoded alone
    token_colour: np.ndarray  # (T,) the colour a token names, -1 if none
    token_shape: np.ndarray  # (T,) the shape a token names, -1 if none


def _jittered(rng: np.random.Generator, box: np.ndarray, jitter: float) -> np.ndarray:
    width, height = box[2] - box[0], box[3] - box[1]
    cx = (box[0] + box[2]) / 2 + rng.normal(0, jitter) * width
    cy = (box[1] + box[3]) / 2 + rng.normal(0, jitter) * height
    width, height = width * np.exp(rng.normal(0, 0.1)), height * np.exp(rng.normal(0, 0.1))
    return np.array([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2])


def _background_box(rng: np.random.Generator, hw: tuple[int, int], objects: np.ndarray) -> np.ndarray | None:
    """A box of an object's size whose overlap with each object is at most a tenth of the smaller of the two."""
    side = float(np.exp(rng.uniform(np.log(16), np.log(0.5 * min(hw)))))
    aspect = float(np.exp(rng.uniform(-0.3, 0.3)))
    width, height = side * aspect, side / aspect
    x0, y0 = rng.uniform(0, max(1.0, hw[1] - width)), rng.uniform(0, max(1.0, hw[0] - height))
    box = np.array([x0, y0, x0 + width, y0 + height])
    for other in objects:
        inter = max(0.0, min(box[2], other[2]) - max(box[0], other[0])) * max(
            0.0, min(box[3], other[3]) - max(box[1], other[1])
        )
        smaller = min(width * height, (other[2] - other[0]) * (other[3] - other[1]))
        if inter > 0.1 * smaller:
            return None
    return box


def make_examples(recipe: NamerRecipe, cfg: NamerConfig) -> Examples:
    """Crops of ``recipe.scenes`` fresh scenes: each object twice, and background crops."""
    crops, colours, shapes = [], [], []
    for index in range(recipe.scenes):
        scene = crop_scene(recipe.seed, index)
        rng = np.random.default_rng([recipe.seed, index])
        boxes, cols, shps = [], [], []
        for box, colour, shape in zip(scene.boxes, scene.colours, scene.shapes, strict=True):
            for _ in range(2):
                boxes.append(_jittered(rng, box, recipe.jitter))
                cols.append(COLOUR_NAMES.index(colour))
                shps.append(SHAPES.index(shape))
        wanted = rng.binomial(len(boxes), recipe.background / (1 - recipe.background))
        for _ in range(4 * wanted):
            if wanted == 0:
                break
            box = _background_box(rng, scene.image.shape[:2], scene.boxes)
            if box is not None:
                boxes.append(box)
                cols.append(-1)
                shps.append(-1)
                wanted -= 1
        cut = box_crops(scene.image, np.asarray(boxes), cfg.crop, cfg.margin)
        crops.append(np.rint(cut * 255).astype(np.uint8))
        colours += cols
        shapes += shps
    return Examples(np.concatenate(crops), np.asarray(colours), np.asarray(shapes))


def proposal_targets(boxes: np.ndarray, objects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the boxes kept, the object each names or -1 for background): boxes between
    the two IoU limits are ambiguous, so they are left out."""
    from supervision import box_iou_batch

    if not len(objects):
        return np.arange(len(boxes)), np.full(len(boxes), -1)
    iou = box_iou_batch(boxes, objects.astype(np.float32))
    best, which = iou.max(1), iou.argmax(1)
    kept = np.flatnonzero((best >= RIGHT_IOU) | (best < BACKGROUND_IOU))
    return kept, np.where(best[kept] >= RIGHT_IOU, which[kept], -1)


def proposal_examples(detector: Detector, recipe: NamerRecipe, cfg: NamerConfig) -> Examples:
    """``detector``'s boxes (all 56 trained names in one prompt, every label) on the first
    ``recipe.proposal_scenes`` scenes, cut out as the runtime cuts them."""
    prompt = ". ".join(f"{c} {s}" for c, s in TRAIN_COMBOS)
    crops, colours, shapes = [], [], []
    for index in range(recipe.proposal_scenes):
        scene = crop_scene(recipe.seed, index)
        found = detector(scene.image, prompt, threshold=recipe.proposal_threshold, all_labels=True)
        boxes = np.unique(np.round(found.xyxy, 1), axis=0)  # a box's labels share one crop
        kept, named = proposal_targets(boxes, scene.boxes)
        if not len(kept):
            continue
        cut = box_crops(scene.image, boxes[kept], cfg.crop, cfg.margin)
        crops.append(np.rint(cut * 255).astype(np.uint8))
        colours += [COLOUR_NAMES.index(scene.colours[k]) if k >= 0 else -1 for k in named]
        shapes += [SHAPES.index(scene.shapes[k]) if k >= 0 else -1 for k in named]
    if not crops:
        return Examples(np.zeros((0, 3, cfg.crop, cfg.crop), np.uint8), np.zeros(0, int), np.zeros(0, int))
    return Examples(np.concatenate(crops), np.asarray(colours), np.asarray(shapes))


def sample_prompts(rng: np.random.Generator, count: int) -> list[list[tuple[str | None, str]]]:
    """Prompts as (colour or None, shape) phrases: the trained names, sometimes a few bare shape
    names among them, in random order and number (half of them all 56, as labelling uses them)."""
    prompts = []
    for _ in range(count):
        combos = list(TRAIN_COMBOS)
        rng.shuffle(combos)
        size = len(combos) if rng.random() < 0.5 else int(rng.integers(1, len(combos) + 1))
        phrases: list[tuple[str | None, str]] = [(c, s) for c, s in combos[:size]]
        if rng.random() < 0.2:
            bare = rng.choice(len(SHAPES), int(rng.integers(1, 4)), replace=False)
            phrases += [(None, SHAPES[int(k)]) for k in bare]
            rng.shuffle(phrases)  # type: ignore[arg-type]
        prompts.append(phrases)
    return prompts


def encode_prompts(
    phrase_lists: list[list[tuple[str | None, str]]],
    prepare: Callable[[list[str]], list[tuple[np.ndarray, dict[int, list[int]], np.ndarray]]],
) -> list[EncodedPrompt]:
    """Each prompt's chunks as text features with, per token, the colour or shape it names.

    ``prepare(names)`` returns per chunk (text features, positive map, token words), as the
    Detector's prompt preparation and text engine give them."""
    encoded = []
    for phrases in phrase_lists:
        names = [f"{c} {s}" if c else s for c, s in phrases]
        for features, positive_map, token_words in prepare(names):
            colour = np.full(len(features), -1, np.int64)
            shape = np.full(len(features), -1, np.int64)
            for label_id, tokens in positive_map.items():
                colour_name, shape_name = phrases[label_id - 1]
                words = token_words[np.asarray(tokens)]
                for token, word in zip(tokens, words, strict=True):
                    if colour_name is not None and word == words.min():
                        colour[token] = COLOUR_NAMES.index(colour_name)
                    else:
                        shape[token] = SHAPES.index(shape_name)
            encoded.append(EncodedPrompt(np.asarray(features, np.float32), colour, shape))
    return encoded


def train_namer(
    examples: Examples,
    prompts: list[EncodedPrompt],
    cfg: NamerConfig,
    recipe: NamerRecipe,
    progress: Callable[[int, float], None] | None = None,
) -> RegionNamer:
    """The namer after ``recipe.steps`` steps of AdamW (cosine schedule) on per-token BCE."""
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng([recipe.seed, 1 << 20])
    namer = RegionNamer(cfg)
    optimiser = torch.optim.AdamW(namer.parameters(), lr=recipe.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, recipe.steps)
    texts = [torch.tensor(p.features) for p in prompts]
    namer.train()
    for step in range(recipe.steps):
        rows = rng.integers(0, len(examples.crops), recipe.batch_size)
        crops = torch.from_numpy(examples.crops[rows]).float() / 255
        if rng.random() < 0.5:
            crops = crops.flip(3)
        k = int(rng.integers(0, len(prompts)))
        prompt = prompts[k]
        colour, shape = examples.colours[rows][:, None], examples.shapes[rows][:, None]
        target = ((prompt.token_colour[None] == colour) & (colour >= 0)) | (
            (prompt.token_shape[None] == shape) & (shape >= 0)
        )
        named = torch.from_numpy((prompt.token_colour >= 0) | (prompt.token_shape >= 0))
        logits = namer(crops, texts[k])[:, named]
        loss = nn.functional.binary_cross_entropy_with_logits(
            logits, torch.from_numpy(target[:, named.numpy()]).float()
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress:
            progress(step + 1, loss.item())
    return namer.eval()


def training_prompts(detector: Detector, recipe: NamerRecipe) -> list[EncodedPrompt]:
    """The recipe's sampled prompts, encoded word by word by ``detector``'s text graph."""
    from glipcli.rescore import word_features

    def prepare(names: list[str]) -> list[tuple[np.ndarray, dict[int, list[int]], np.ndarray]]:
        prompt = detector.prepare_prompt(". ".join(names))
        return [(word_features(c, detector.engine.encode_text), c.positive_map, c.token_words) for c in prompt.chunks]

    return encode_prompts(sample_prompts(np.random.default_rng([recipe.seed, 1 << 21]), recipe.prompts), prepare)


def build_namer_bundle(
    model: str | Path,
    out: str | Path,
    recipe: NamerRecipe = NamerRecipe(),
    cfg: NamerConfig | None = None,
    log: Callable[[str], None] = lambda message: None,
    pool: str = "mean",
) -> Path:
    """Train a namer for bundle ``model`` (with its text graph's features) and write the bundle
    with it to ``out`` (glipcli.export.namer): uncalibrated, ready for ``glip calibrate``.
    ``pool`` is the default config's (``NamerConfig.pool``) when ``cfg`` is not given."""
    from glipcli.api import Detector
    from glipcli.export.namer import check_new_folder, write_namer_bundle

    check_new_folder(out)
    detector = Detector.load(model, namer=False)
    names = tuple(f"{c} {s}" for c, s in TRAIN_COMBOS) + SHAPES  # what sample_prompts names
    cfg = cfg or NamerConfig(text_dim=int(detector.config.language.bert["hidden_size"]), names=names, pool=pool)
    started = time.monotonic()

    prompts = training_prompts(detector, recipe)
    log(f"{len(prompts)} prompt chunks encoded by {detector.name}'s text graph")
    examples = make_examples(recipe, cfg)
    log(f"{len(examples.crops)} crops of {recipe.scenes} scenes ({time.monotonic() - started:.0f} s)")
    if recipe.proposal_scenes:
        single = detector.engine.config.input  # one pass at the model's size: the boxes it is trained on
        proposer = Detector.load(model, namer=False, size=f"{single.min_size}:{single.max_size}")
        proposed = proposal_examples(proposer, recipe, cfg)
        background = int((proposed.colours < 0).sum())
        log(
            f"{len(proposed.crops)} boxes of {detector.name} on {recipe.proposal_scenes} scenes, "
            f"{background} of them background ({time.monotonic() - started:.0f} s)"
        )
        examples = Examples(
            np.concatenate([examples.crops, proposed.crops]),
            np.concatenate([examples.colours, proposed.colours]),
            np.concatenate([examples.shapes, proposed.shapes]),
        )

    def progress(step: int, loss: float) -> None:
        if step % 500 == 0 or step == recipe.steps:
            log(f"step {step}/{recipe.steps} loss {loss:.4f} ({time.monotonic() - started:.0f} s)")

    namer = train_namer(examples, prompts, cfg, recipe, progress)
    training = {**asdict(recipe), "seconds": round(time.monotonic() - started), "crops": len(examples.crops)}
    return write_namer_bundle(detector.bundle.path, out, namer, cfg, training)
