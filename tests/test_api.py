"""The Python API: Detector -> supervision.Detections, chunking, batching, inputs, torch-free."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from glipcli.api import Detector, PreparedPrompt
from glipcli.errors import ConfigError, GlipError, ImageError, PromptError
from glipcli.prompt import Label, Prompt, encode_prompt

PROMPT = "red circle. blue rectangle. yellow triangle"


def scene(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    """A gradient with two solid shapes: structured enough to give varied scores."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], -1)
    img[height // 4 : height // 2, width // 5 : width // 2] = (220, 30, 30)
    img[height // 2 :, width // 2 : width - 10] = (30, 40, 210)
    return np.clip(img + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def detector(tiny_bundle):
    return Detector.load(tiny_bundle, device="cpu")


def reset_runs(detector):
    detector.engine.runs.update(dict.fromkeys(detector.engine.runs, 0))


def test_detections_fields_and_order(detector):
    img = scene(240, 320)  # resized to 128 x 170 for the tiny model
    det = detector(img, PROMPT, threshold=0, all_labels=True)
    assert 0 < len(det) <= 100
    assert det.xyxy.dtype == np.float32 and det.confidence.dtype == np.float32
    assert np.all(np.diff(det.confidence) <= 0)
    names = PROMPT.split(". ")
    np.testing.assert_array_equal(det.data["label_id"], det.class_id + 1)
    assert list(det.data["class_name"]) == [names[i] for i in det.class_id]
    height, width = img.shape[:2]
    # original pixels: inside the original image, not squeezed into the resized one (128 px high)
    assert det.xyxy.min() >= 0 and det.xyxy[:, 0::2].max() <= width and det.xyxy[:, 1::2].max() <= height
    assert det.xyxy[:, 1::2].max() > 128


def test_threshold_filters_after_postprocessing(detector):
    everything = detector(scene(), PROMPT, threshold=0, all_labels=True)
    cut = float(everything.confidence[len(everything) // 2])  # a real score: ties at the cut are kept
    kept = detector(scene(), PROMPT, threshold=cut, all_labels=True)
    expected = everything.confidence >= cut
    assert 0 < len(kept) < len(everything)
    np.testing.assert_array_equal(kept.xyxy, everything.xyxy[expected])
    np.testing.assert_array_equal(kept.confidence, everything.confidence[expected])


def test_max_detections(detector):
    many = detector(scene(), PROMPT, threshold=0, all_labels=True, max_detections=1000)
    assert len(many) > 100  # the model default (100) is only a default
    few = detector(scene(), PROMPT, threshold=0, all_labels=True, max_detections=5)
    np.testing.assert_array_equal(few.confidence, many.confidence[:5])
    assert len(detector(scene(), PROMPT, threshold=0, all_labels=True)) == 100


def test_path_bgr_and_rgb_inputs_agree(detector, tmp_path):
    img = scene()
    Image.fromarray(img).save(tmp_path / "scene.png")
    rgb = detector(img, PROMPT, threshold=0, all_labels=True)
    from_path = detector(tmp_path / "scene.png", PROMPT, threshold=0, all_labels=True)
    from_bgr = detector(np.ascontiguousarray(img[..., ::-1]), PROMPT, threshold=0, all_labels=True, bgr=True)
    swapped = detector(np.ascontiguousarray(img[..., ::-1]), PROMPT, threshold=0, all_labels=True)
    for other in (from_path, from_bgr):
        np.testing.assert_array_equal(other.xyxy, rgb.xyxy)
        np.testing.assert_array_equal(other.confidence, rgb.confidence)
    assert not np.array_equal(swapped.confidence, rgb.confidence)  # colour order matters


def test_grounding_prompt(detector):
    det = detector(scene(), "a man walking a dog on the beach", ground=["dog", "man"], threshold=0, all_labels=True)
    assert set(det.data["class_name"]) <= {"dog", "man"} and len(det)
    np.testing.assert_array_equal(det.data["label_id"], np.where(det.data["class_name"] == "dog", 1, 2))
    with pytest.raises(PromptError, match="does not occur"):
        detector(scene(), "a man walking a dog", ground=["cat"])


def test_prompt_objects_and_prepared_prompts(detector):
    prompt = Prompt((Label("red circle"), Label("blue rectangle", "a flat shape"), Label("yellow triangle")))
    prepared = detector.prepare_prompt(prompt)
    assert prepared.labels == ["red circle", "blue rectangle", "yellow triangle"]
    assert "a flat shape" in prepared.chunks[0].caption
    reset_runs(detector)
    first = detector(scene(), prepared, threshold=0, all_labels=True)
    second = detector(scene(seed=1), prepared, threshold=0, all_labels=True)
    assert detector.engine.runs == {"text": 1, "backbone": 2, "head": 2}
    assert not np.array_equal(first.confidence, second.confidence)
    np.testing.assert_array_equal(detector(scene(), prompt, threshold=0, all_labels=True).confidence, first.confidence)
    with pytest.raises(PromptError, match="caption string"):
        detector(scene(), prompt, ground=["red"])


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"threshold": 1.5}, ConfigError),
        ({"threshold": float("nan")}, ConfigError),
        ({"max_detections": 0}, ConfigError),
        ({"image": np.zeros((10, 10), np.uint8)}, ImageError),
        ({"image": np.zeros((10, 10, 3), np.float32)}, ImageError),
        ({"image": "/no/such/image.png"}, ImageError),
        ({"prompt": " . . "}, PromptError),
        ({"prompt": ""}, PromptError),
    ],
)
def test_bad_arguments_raise_glip_errors(detector, kwargs, error):
    args = {"image": scene(), "prompt": PROMPT, **kwargs}
    with pytest.raises(error):
        detector(args.pop("image"), args.pop("prompt"), **args)


def test_detect_many_checks_arguments_at_the_call(detector):
    with pytest.raises(ConfigError, match="threshold"):
        detector.detect_many([], PROMPT, threshold=2)
    with pytest.raises(ConfigError, match="batch size"):
        detector.detect_many([], PROMPT, batch_size=0)
    with pytest.raises(PromptError):
        detector.detect_many([], "")


def test_detect_many_is_lazy_ordered_and_runs_text_once(detector):
    images = [scene(seed=s) for s in range(3)]
    reset_runs(detector)
    results = list(detector.detect_many(iter(images), "zebra. horse", threshold=0, all_labels=True))
    assert [src is img for (src, _), img in zip(results, images)] == [True] * 3
    assert detector.engine.runs == {"text": 1, "backbone": 3, "head": 3}
    for img, (_, det) in zip(images, results):
        np.testing.assert_array_equal(
            det.confidence, detector(img, "zebra. horse", threshold=0, all_labels=True).confidence
        )


def test_batched_images_of_one_size_share_a_backbone_run(detector):
    images = [scene(seed=s) for s in range(4)]
    reset_runs(detector)
    batched = [det for _, det in detector.detect_many(images, PROMPT, threshold=0, all_labels=True, batch_size=2)]
    assert detector.engine.runs["backbone"] == 2 and detector.engine.runs["head"] == 2
    for img, det in zip(images, batched):
        alone = detector(img, PROMPT, threshold=0, all_labels=True)
        np.testing.assert_allclose(det.confidence, alone.confidence, atol=1e-5)
        np.testing.assert_allclose(det.xyxy, alone.xyxy, atol=1e-2)


def test_chunked_prompt_equals_each_chunk_alone_merged(detector):
    """Chunks from a small max query length give what running each chunk's labels alone gives."""
    names = ["red circle", "blue rectangle", "yellow triangle", "green ellipse", "person", "small dog", "tree"]
    prompt = Prompt(tuple(Label(n) for n in names))
    chunks = encode_prompt(prompt, detector._tokenizer, max_query_len=9)
    assert len(chunks) >= 3
    prepared = PreparedPrompt(prompt, tuple(chunks), "chunked")
    img = scene()
    reset_runs(detector)
    chunked = detector(img, prepared, threshold=0, all_labels=True, max_detections=60)
    assert detector.engine.runs["backbone"] == 1 and detector.engine.runs["head"] == len(chunks)
    boxes, scores, ids = [], [], []
    for chunk in chunks:
        alone = detector(img, Prompt(tuple(Label(names[i - 1]) for i in chunk.label_ids)), threshold=0, all_labels=True)
        boxes.append(alone.xyxy)
        scores.append(alone.confidence)
        ids.append(np.asarray(chunk.label_ids)[alone.class_id])
    order = np.argsort(-np.concatenate(scores), kind="stable")[:60]
    np.testing.assert_array_equal(chunked.confidence, np.concatenate(scores)[order])
    np.testing.assert_array_equal(chunked.xyxy, np.concatenate(boxes)[order])
    np.testing.assert_array_equal(chunked.data["label_id"], np.concatenate(ids)[order])
    assert list(chunked.data["class_name"]) == [names[i - 1] for i in chunked.data["label_id"]]


def test_long_vocabulary_runs_backbone_once(detector):
    prompt = Prompt(tuple(Label(f"thing {i}") for i in range(1203)))
    prepared = detector.prepare_prompt(prompt)
    assert len(prepared.chunks) > 10
    reset_runs(detector)
    det = detector(scene(), prepared, threshold=0, all_labels=True)
    assert detector.engine.runs == {"text": len(prepared.chunks), "backbone": 1, "head": len(prepared.chunks)}
    assert len(det) == 100 and det.data["label_id"].max() <= 1203


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=80), st.lists(st.text(min_size=1, max_size=12), min_size=1).map(". ".join)))
def test_arbitrary_prompts_never_crash(detector, text):
    try:
        det = detector(scene(64, 64), text, threshold=0, all_labels=True)
    except GlipError as exc:
        event(type(exc).__name__)
        assert str(exc) and "\n" not in str(exc)
    else:
        event("detected")
        assert len(det.data["class_name"]) == len(det)


def test_detection_imports_neither_torch_nor_transformers(tiny_bundle):
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from glipcli.api import Detector
        from glipcli.draw import annotate
        det = Detector.load({str(tiny_bundle)!r}, device="cpu")
        img = np.zeros((90, 120, 3), np.uint8)
        annotate(img, det(img, "cat. dog", threshold=0, all_labels=True))
        loaded = sorted(m for m in ("torch", "transformers") if m in sys.modules)
        print("loaded:", loaded)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout
