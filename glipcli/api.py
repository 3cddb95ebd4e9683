"""The Python API: ``Detector.load(model)(image, prompt) -> supervision.Detections``.

``Detector.detect_arrays`` gives the same detections as numpy arrays (glipcli.detections.Found)
without importing supervision, which costs more than the model on one small image: the CLI's
JSON paths and ``glip label`` use it.

Inference runs on ONNX Runtime and numpy only (no torch, no transformers). Per image the
backbone runs once; per prompt chunk the text encoder runs once (cached across images) and the
fused head once; chunk results are merged without NMS across chunks, as the official chunked
evaluation does (GLIP_SPEC §4.5, §12.22).

Text is encoded at its own length, not padded to the max query length as the official code
does: padding tokens are masked out of every path that reaches the real tokens or the image, so
the detections are the same (checked against the reference within 2e-4 px) at half the cost.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glipcli.config import GLIPConfig, InputConfig, NamerConfig, PostprocessConfig
from glipcli.detections import Found
from glipcli.errors import BundleError, ConfigError, ImageError, PromptError
from glipcli.io.coco import PIXEL_DECIMALS, SCORE_DECIMALS
from glipcli.io.images import load_image
from glipcli.postprocess import (
    RawDetections,
    level_sizes,
    merge_chunks,
    merge_scales,
    postprocess,
    rescale_boxes,
    select_candidates,
)
from glipcli.preprocess import PreparedImage, batch_images, prepare_image
from glipcli.prompt import Prompt, PromptChunk, encode_prompt, grounding_prompt, name_key, parse_prompt
from glipcli.rescore import namer_scores, rescore, word_features
from glipcli.runtime.bundle import Bundle, load_bundle, resolve_model
from glipcli.runtime.engine import Engine, InferenceEngine
from glipcli.runtime.prompt_store import PromptStore
from glipcli.scales import ScalePass, parse_scales, scales_text
from glipcli.selection import Thresholds, check_threshold, describe, per_label_thresholds, select
from glipcli.tokenizer import load_tokenizer

if TYPE_CHECKING:
    import supervision as sv
    from tokenizers import Tokenizer

DEFAULT_THRESHOLD = 0.4
"""Threshold of bundles without a calibrated one (official GLIP exports), on the final scores
sqrt(phrase probability x centerness).

The weakest candidates sit near sqrt(0.05 x centerness), about 0.15-0.22, and the official demo
shows boxes above 0.5, which drops many plausible open-vocabulary matches; 0.4 lies between.
Bundles calibrated with ``glip calibrate`` carry their own (``calibration`` in the manifest).
Use 0 with the default max_detections and ``all_labels=True`` for the official output (evaluation).
"""
BEFORE_TUNING = "before_tuning"
"""Marks a calibration a tuned bundle copied from its source (chosen on the untuned prompt's scores);
``glip calibrate`` on the tuned bundle writes a new one without it."""

ImageInput = np.ndarray | str | Path | PreparedImage
"""A path, an (H, W, 3) uint8 array, or an image this detector prepared ahead (:meth:`Detector.prepare`)."""


@dataclass(frozen=True)
class PreparedPrompt:
    """A prompt tokenised once, for reuse over many images."""

    prompt: Prompt
    chunks: tuple[PromptChunk, ...]
    text: str  # the prompt as the user wrote it (or its caption), for reports

    @property
    def labels(self) -> list[str]:
        """Label names; ``class_id`` i in the detections is ``labels[i]``."""
        return self.prompt.names


class Detector:
    """Open-vocabulary detection with one model bundle; create it with :meth:`load`."""

    def __init__(
        self,
        engine: InferenceEngine,
        tokenizer: Tokenizer | Path,
        size: str | int | Sequence[int] | None = None,
        prompt_store: PromptStore | None = None,
        namer: bool = True,
    ) -> None:
        """``tokenizer`` is a Tokenizer, or the ``tokenizer.json`` to load when a prompt is first
        tokenised; ``prompt_store`` keeps tokenised prompts between runs (see :meth:`load`).
        ``size`` defaults to the size the bundle was calibrated at (:attr:`size`). ``namer=False``
        leaves out the bundle's region namer, if it has one: GLIP's scores alone."""
        self.engine = engine
        self.namer: NamerConfig | None = getattr(engine, "namer_config", None) if namer else None
        self._tokenizer_source = tokenizer
        self._prompts = prompt_store
        self.scales: tuple[ScalePass, ...] = parse_scales(
            size if size is not None else self._calibrated_size(), engine.config.input
        )
        self.input: InputConfig = self.scales[0].input

    @property
    def _tokenizer(self) -> Tokenizer:
        if isinstance(self._tokenizer_source, Path):
            self._tokenizer_source = load_tokenizer(self._tokenizer_source)
        return self._tokenizer_source

    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        *,
        device: str = "auto",
        threads: int | None = None,
        size: str | int | Sequence[int] | None = None,
        namer: bool = True,
    ) -> Detector:
        """A bundle by path or name (default ``glip-nano``); ``device`` is auto, cpu, cuda or tensorrt.

        ``size`` (``480``, ``"480:800"`` or ``(480, 800)``: SHORT[:MAX_LONG] pixels) replaces the
        model's test size, trading accuracy for speed (glipcli.preprocess.with_size); several,
        ``"384,768@0-96"``, run GLIP's multi-scale test (glipcli.scales). It is checked before the
        model loads. ``namer=False`` runs GLIP alone on a bundle with a region namer
        (glipcli.rescore).
        """
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        bundle = load_bundle(resolve_model(model))
        parse_scales(size, bundle.config.input)  # a bad size fails before the sessions load
        # The tokenizer loads when a prompt is not in the prompt store: a prompt used before needs none.
        prompts = PromptStore.for_tokenizer(bundle.manifest["tokenizer"]["sha256"])
        tokenizer: Tokenizer | Path = bundle.tokenizer_path if prompts else load_tokenizer(bundle.tokenizer_path)
        return cls(Engine(bundle, device=device, threads=threads), tokenizer, size, prompts, namer)

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def bundle(self) -> Bundle:
        """The model bundle (ONNX engines only)."""
        return self.engine.bundle  # type: ignore[attr-defined]

    @property
    def config(self) -> GLIPConfig:
        return self.engine.config

    @property
    def size(self) -> str:
        """The test size images are resized to, ``"SHORT:MAX_LONG"``, or the sizes of a multi-scale
        test (``"384:768,768:1536@0-96"``): ``size`` if given, else the size the bundle's threshold was
        calibrated at (manifest ``calibration.input_size``), else the model's."""
        return scales_text(self.scales)

    def _calibrated_size(self) -> str | None:
        calibration = self._calibration
        size = calibration.get("input_size") if isinstance(calibration, dict) else None
        if size is None:
            return None
        try:
            parse_scales(size, self.engine.config.input)
        except ConfigError as exc:
            raise BundleError(f"bundle {self.bundle.path}: manifest calibration.input_size: {exc}") from None
        return str(size)

    @property
    def tuned_captions(self) -> frozenset[str]:
        """Captions the model carries tuned text features for (``glip tune``); other captions,
        including other prompts for the same classes, run the untuned text encoder."""
        return frozenset(getattr(self.engine, "tuned_captions", ()))

    def prepare(self, image: ImageInput, bgr: bool = False) -> PreparedImage:
        """The image decoded, resized to :attr:`size` and normalised: the model's input.

        Detection accepts the result in place of the image, so callers can prepare images ahead
        in threads (``glip label`` does, beside the model) and keep the model busy. Only this
        detector's (or one of the same sizes) prepared images are valid input. A multi-scale
        detector prepares every size (the first, with the others in ``others``).
        """
        source = _as_input(image, bgr)
        if isinstance(source, PreparedImage):
            if len(source.others) != len(self.scales) - 1:
                sizes = len(source.others) + 1
                raise ImageError(f"an image prepared for {sizes} input size(s); this detector runs {self.size}")
            return source
        first, *rest = (prepare_image(source, scale.input) for scale in self.scales)
        return dataclasses.replace(first, others=tuple(rest)) if rest else first

    def prepare_prompt(
        self, prompt: str | Prompt | PreparedPrompt, ground: Sequence[str] | None = None
    ) -> PreparedPrompt:
        """Parse and tokenise a prompt, split into chunks the text encoder can take.

        A string is a phrase prompt ("cat. dog") or, with ``ground`` phrases, a free caption in
        which those phrases are located. A :class:`Prompt` is used as is. The result belongs to
        this detector's tokenizer and max query length: do not pass it to another model.
        """
        if isinstance(prompt, PreparedPrompt):
            if ground:
                raise PromptError("ground phrases apply to a caption string, not to a prepared prompt")
            return prompt
        parsed = to_prompt(prompt, ground)
        text = prompt if isinstance(prompt, str) else parsed.caption or ". ".join(parsed.names)
        max_query_len = self.config.language.max_query_len
        key = self._prompts.key(parsed, max_query_len) if self._prompts else ""
        chunks = self._prompts.get(key) if self._prompts else None
        if chunks is None:
            chunks = tuple(encode_prompt(parsed, self._tokenizer, max_query_len))
            if self._prompts:
                self._prompts.put(key, chunks)
        return PreparedPrompt(parsed, chunks, text)

    def __call__(
        self,
        image: ImageInput,
        prompt: str | Prompt | PreparedPrompt,
        *,
        threshold: float | None = None,
        class_thresholds: Mapping[str, float] | None = None,
        all_labels: bool = False,
        max_detections: int | None = None,
        ground: Sequence[str] | None = None,
        bgr: bool = False,
    ) -> sv.Detections:
        """Detections of one image, in original pixels, sorted by score descending.

        ``image`` is a path or an (H, W, 3) uint8 array in RGB order (``bgr=True`` for arrays
        from OpenCV). ``max_detections`` defaults to the model's detections per image (100).

        By default each object keeps its best label and fragments of it go (glipcli.selection);
        ``all_labels=True`` gives GLIP's output, every label's boxes. ``threshold`` (default: the
        bundle's calibrated one, see :attr:`default_threshold`) and ``class_thresholds`` (class
        name -> threshold) filter the final scores after that.
        """
        ((_, detections),) = self.detect_many(
            [image],
            prompt,
            threshold=threshold,
            class_thresholds=class_thresholds,
            all_labels=all_labels,
            max_detections=max_detections,
            ground=ground,
            bgr=bgr,
        )
        return detections

    def detect_many(
        self,
        images: Iterable[ImageInput],
        prompt: str | Prompt | PreparedPrompt,
        *,
        threshold: float | None = None,
        class_thresholds: Mapping[str, float] | None = None,
        all_labels: bool = False,
        max_detections: int | None = None,
        ground: Sequence[str] | None = None,
        bgr: bool = False,
        batch_size: int = 1,
    ) -> Iterator[tuple[ImageInput, sv.Detections]]:
        """``(image, detections)`` per input, lazily, in input order; the prompt is tokenised once.

        Arguments are checked at the call, images only when the iteration reaches them; the
        selection and thresholds are those of :meth:`__call__`.

        ``batch_size`` > 1 shares backbone and head runs between images, padded to the largest of
        the batch; that padding changes scores slightly (see glipcli.runtime.engine).
        """
        found = self.detect_arrays(
            images,
            prompt,
            threshold=threshold,
            class_thresholds=class_thresholds,
            all_labels=all_labels,
            max_detections=max_detections,
            ground=ground,
            bgr=bgr,
            batch_size=batch_size,
        )
        return ((source, detections.to_supervision()) for source, detections in found)

    def detect_arrays(
        self,
        images: Iterable[ImageInput],
        prompt: str | Prompt | PreparedPrompt,
        *,
        threshold: float | None = None,
        class_thresholds: Mapping[str, float] | None = None,
        all_labels: bool = False,
        max_detections: int | None = None,
        ground: Sequence[str] | None = None,
        bgr: bool = False,
        batch_size: int = 1,
    ) -> Iterator[tuple[ImageInput, Found]]:
        """:meth:`detect_many` with numpy arrays instead of ``sv.Detections``: the same boxes,
        scores and labels (``Found.to_supervision()`` converts), without importing supervision."""
        limit = self._max_detections(max_detections)
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        prepared = self.prepare_prompt(prompt, ground)
        thresholds = self.thresholds(prepared, threshold, class_thresholds)
        return self._iterate(images, prepared, limit, thresholds, all_labels, bgr, batch_size)

    @property
    def default_threshold(self) -> tuple[float, str]:
        """The threshold used when none is given, and where it comes from.

        ``glip calibrate`` records one in the bundle's manifest; other bundles (official GLIP
        exports) get ``DEFAULT_THRESHOLD``. A tuned bundle keeps its source's, and where it comes
        from ends in ``before tuning`` until the tuned bundle is calibrated itself.
        """
        calibration = self._calibration
        if calibration is None:
            return DEFAULT_THRESHOLD, "default"
        try:
            value = check_threshold(calibration["threshold"])
        except (TypeError, KeyError, ConfigError):
            raise BundleError(f"bundle {self.bundle.path}: manifest calibration has no valid threshold") from None
        tuned = " before tuning" if calibration.get(BEFORE_TUNING) else ""
        return value, f"calibrated on {calibration.get('ground_truth', 'a validation set')}{tuned}"

    @property
    def new_name_threshold(self) -> tuple[float, frozenset[str]] | None:
        """The default threshold of classes the model was not calibrated on, and the name keys
        (glipcli.prompt.name_key) of those it was: ``glip calibrate --new-names`` records both."""
        calibration = self._calibration
        if not calibration or "new_names" not in calibration:
            return None
        try:
            value = check_threshold(calibration["new_names"]["threshold"])
            names = frozenset(name_key(str(name)) for name in calibration["names"])
        except (TypeError, KeyError, ConfigError):
            raise BundleError(f"bundle {self.bundle.path}: manifest calibration.new_names is not valid") from None
        return value, names

    @property
    def _calibration(self) -> Any:
        """The manifest's ``calibration`` entry (None for engines without a bundle, or bundles without one)."""
        bundle = getattr(self.engine, "bundle", None)
        return bundle.manifest.get("calibration") if bundle is not None else None

    def thresholds(
        self,
        prompt: PreparedPrompt,
        threshold: float | None = None,
        class_thresholds: Mapping[str, float] | None = None,
    ) -> Thresholds:
        """The threshold of each label of ``prompt``: ``threshold`` (default: :attr:`default_threshold`,
        and :attr:`new_name_threshold` for classes outside the calibrated ones), except labels with
        their own (a prompt file's ``>= 0.6``), except classes named in ``class_thresholds``;
        unknown names and values outside [0, 1] are errors."""
        default = self.default_threshold[0] if threshold is None else check_threshold(threshold)
        own = {i: label.threshold for i, label in enumerate(prompt.prompt.labels, 1) if label.threshold is not None}
        return Thresholds(
            default,
            {**self.new_name_labels(prompt, threshold), **own, **per_label_thresholds(prompt.labels, class_thresholds)},
        )

    def new_name_labels(self, prompt: PreparedPrompt, threshold: float | None = None) -> dict[int, float]:
        """Label id -> the new-name threshold, for the labels it applies to (none when ``threshold`` is given)."""
        rule = self.new_name_threshold if threshold is None else None
        if rule is None:
            return {}
        value, known = rule
        return {i: value for i, name in enumerate(prompt.labels, 1) if name_key(name) not in known}

    def _iterate(
        self,
        images: Iterable[ImageInput],
        prepared: PreparedPrompt,
        limit: int,
        thresholds: Thresholds,
        all_labels: bool,
        bgr: bool,
        batch_size: int,
    ) -> Iterator[tuple[ImageInput, Found]]:
        batch: list[tuple[ImageInput, np.ndarray | PreparedImage]] = []
        for source in images:
            batch.append((source, _as_input(source, bgr)))
            if len(batch) == batch_size:
                yield from self._emit(batch, prepared, limit, thresholds, all_labels)
                batch = []
        if batch:
            yield from self._emit(batch, prepared, limit, thresholds, all_labels)

    def _emit(
        self,
        batch: list[tuple[ImageInput, np.ndarray | PreparedImage]],
        prepared: PreparedPrompt,
        limit: int,
        thresholds: Thresholds,
        all_labels: bool,
    ) -> Iterator[tuple[ImageInput, Found]]:
        results = self._detect_batch([rgb for _, rgb in batch], prepared, limit)
        for (source, _), raw in zip(batch, results, strict=True):
            found = _to_found(raw, prepared.labels, thresholds.floor)
            yield source, select(found, thresholds, all_labels=all_labels)

    def _detect_batch(
        self, inputs: list[np.ndarray | PreparedImage], prepared: PreparedPrompt, limit: int
    ) -> list[RawDetections]:
        """Official post-processing per image and chunk, chunks merged, boxes in original pixels;
        re-scored by the region namer if the bundle has one (and it is on)."""
        images = [self.prepare(image) for image in inputs]
        # text first: a prompt in no cache loads the text session while the image graphs still load
        features_of = [self.engine.encode_text(chunk) for chunk in prepared.chunks]
        post = dataclasses.replace(self.config.postprocess, detections_per_img=limit)
        if len(self.scales) == 1 and self.scales[0].keeps_all:
            parts = self._run_scale(images, prepared, features_of, functools.partial(_pass_output, post, None))
            found = [_to_original(merge_chunks(p, limit), image) for p, image in zip(parts, images, strict=True)]
        else:  # multi-scale test: each pass's candidates before NMS, kept by its range, in original pixels
            by_scale = []
            for k, scale in enumerate(self.scales):
                at_scale = [image if k == 0 else image.others[k - 1] for image in images]
                finish = functools.partial(_pass_output, post, scale)
                by_scale.append(self._run_scale(at_scale, prepared, features_of, finish))
            found = [
                merge_chunks([merge_scales(per_chunk, post.nms_thresh, limit) for per_chunk in zip(*per_scale)], limit)
                for per_scale in zip(*by_scale, strict=True)
            ]
        if self.namer is None:
            return found
        words_of = [word_features(chunk, self.engine.encode_text) for chunk in prepared.chunks]
        return [self._rescore(raw, image, prepared, words_of) for raw, image in zip(found, images, strict=True)]

    def _rescore(
        self, raw: RawDetections, image: PreparedImage, prepared: PreparedPrompt, words_of: list[np.ndarray]
    ) -> RawDetections:
        """``raw`` re-scored by the region namer; ``words_of``: each chunk's word features."""
        assert self.namer is not None  # _detect_batch calls this only with a namer
        if image.rgb is None:
            raise ImageError("this model's region namer needs the image's pixels: prepare it with Detector.prepare")
        graph = self.engine.namer  # type: ignore[attr-defined]
        agg = self.config.postprocess.score_agg
        by_namer = namer_scores(raw, image.rgb, prepared.chunks, words_of, graph, self.namer, agg, prepared.labels)
        return rescore(raw, by_namer, self.namer.weight)

    def _run_scale(
        self,
        images: list[PreparedImage],
        prepared: PreparedPrompt,
        features_of: list[np.ndarray],
        finish: Finish,
    ) -> list[list[RawDetections]]:
        """Per image, per chunk: ``finish(boxes, centerness, token_logits, level_hw, chunk, image)``
        of the head's outputs on the batch ``images`` (one size)."""
        tensor = batch_images(images, self.config.input.size_divisibility)
        levels = self.engine.backbone(tensor)
        level_hw = level_sizes(tensor.shape[-2:], self.config.anchors.strides)
        parts: list[list[RawDetections]] = [[] for _ in images]
        for chunk, features in zip(prepared.chunks, features_of, strict=True):
            count = len(images)
            out = self.engine.head(
                levels,
                np.broadcast_to(features, (count, *features.shape)),
                np.broadcast_to(chunk.attention_mask, (count, len(chunk.attention_mask))),
            )
            for i, image in enumerate(images):
                parts[i].append(finish(out.boxes[i], out.centerness[i], out.token_logits[i], level_hw, chunk, image))
        return parts

    def _max_detections(self, max_detections: int | None) -> int:
        if max_detections is None:
            return self.config.postprocess.detections_per_img
        if isinstance(max_detections, bool) or not isinstance(max_detections, numbers.Integral) or max_detections < 1:
            raise ConfigError(f"max detections must be a whole number >= 1, got {max_detections!r}")
        return int(max_detections)


def to_prompt(prompt: str | Prompt, ground: Sequence[str] | None = None) -> Prompt:
    """A phrase prompt, a grounding caption with its ``ground`` phrases, or a Prompt as is."""
    if isinstance(prompt, Prompt):
        if ground:
            raise PromptError("ground phrases apply to a caption string, not to a Prompt")
        return prompt
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str or Prompt, not {type(prompt).__name__}")
    return grounding_prompt(prompt, list(ground)) if ground is not None else parse_prompt(prompt)


def _as_input(image: ImageInput, bgr: bool) -> np.ndarray | PreparedImage:
    """A path is decoded (EXIF-oriented RGB); an array must be (H, W, 3) uint8; a prepared image is kept."""
    if isinstance(image, PreparedImage):
        return image
    if isinstance(image, str | Path):
        return load_image(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a path or a numpy array, not {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ImageError(f"expected an (H, W, 3) uint8 image array, got shape {image.shape} dtype {image.dtype}")
    return image[..., ::-1] if bgr else image


def _to_original(raw: RawDetections, image: PreparedImage) -> RawDetections:
    return RawDetections(rescale_boxes(raw.boxes, image.resized_hw, image.original_hw), raw.scores, raw.labels)


Finish = Callable[
    [np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int]], PromptChunk, PreparedImage], RawDetections
]
"""What becomes of one image's head outputs for one chunk (:meth:`Detector._run_scale`)."""


def _pass_output(
    post: PostprocessConfig,
    scale: ScalePass | None,
    boxes: np.ndarray,
    centerness: np.ndarray,
    logits: np.ndarray,
    level_hw: list[tuple[int, int]],
    chunk: PromptChunk,
    image: PreparedImage,
) -> RawDetections:
    """One image's head outputs for one chunk (a :data:`Finish` once ``post`` and ``scale`` are bound):
    without ``scale`` the official post-processing, in resized pixels; with one, a multi-scale pass's
    candidates before NMS, those in its range, in original pixels (NMS runs over all passes)."""
    args = (boxes, centerness, logits, level_hw, chunk.positive_map, image.resized_hw, post, chunk.token_words)
    if scale is None:
        return postprocess(*args)
    found = select_candidates(*args)
    return _to_original(found.take(np.flatnonzero(scale.keep(found.boxes))), image)


def _to_found(raw: RawDetections, labels: Sequence[str], threshold: float) -> Found:
    keep = raw.take(np.flatnonzero(raw.scores >= threshold))
    names = np.asarray(labels, dtype=str)
    return Found(
        xyxy=keep.boxes.astype(np.float32).reshape(-1, 4),
        confidence=keep.scores.astype(np.float32),
        class_id=(keep.labels - 1).astype(np.int64),
        data={"class_name": names[keep.labels - 1], "label_id": keep.labels.astype(np.int64)},
    )


def selection_info(
    detector: Detector, prepared: PreparedPrompt, thresholds: Thresholds, defaulted: bool, all_labels: bool
) -> dict[str, Any]:
    """How detections were chosen, for COCO ``info`` and JSON output: the input size, thresholds
    (and where the default came from: ``defaulted`` when none was given) and the selection rule."""
    # the classes held to the new-name threshold: new ones without a threshold of their own
    candidates = detector.new_name_labels(prepared) if defaulted else {}
    new = {i for i, v in candidates.items() if thresholds.per_label.get(i) == v}
    own = {i: v for i, v in thresholds.per_label.items() if i not in new}
    rule = detector.new_name_threshold if new else None
    return {
        "input_size": detector.size,
        "threshold": thresholds.default,
        "threshold_source": detector.default_threshold[1] if defaulted else "given",
        **({"new_name_threshold": rule[0], "new_names": [prepared.labels[i - 1] for i in sorted(new)]} if rule else {}),
        "class_thresholds": {prepared.labels[i - 1]: v for i, v in sorted(own.items())},
        "one_label": not all_labels,
        "selection": describe(all_labels),
    }


def result_record(
    image: str,
    size_wh: tuple[int, int],
    prompt: str,
    detections: Found | sv.Detections,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document of one image's detections (pixels to 2 decimals, scores to 5), with the
    ``settings`` that chose them (:func:`selection_info`)."""
    return {
        "image": image,
        "width": int(size_wh[0]),
        "height": int(size_wh[1]),
        "prompt": prompt,
        **(settings or {}),
        "detections": [
            {
                "label": str(name),
                "label_id": int(label_id),
                "score": round(float(score), SCORE_DECIMALS),
                "box_xyxy": [round(float(v), PIXEL_DECIMALS) for v in box],
            }
            for box, score, name, label_id in zip(
                detections.xyxy, detections.confidence, detections.data["class_name"], detections.data["label_id"]
            )
        ],
    }
