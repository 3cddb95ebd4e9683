"""Test scales (glipcli.scales): parsing, GLIP's box ranges, the multi-scale merge, and the calibrated default."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from glipcli.api import Detector
from glipcli.calibration import Calibration, write_calibration
from glipcli.cli import app
from glipcli.config import InputConfig
from glipcli.errors import BundleError, ConfigError, ImageError
from glipcli.postprocess import RawDetections, merge_scales
from glipcli.scales import ScalePass, parse_scales, scales_text
from tests.test_api import scene

NANO_INPUT = InputConfig(min_size=384, max_size=768)
PROMPT = "red circle. blue rectangle"


def test_sizes_parse_to_passes_and_print_back():
    (single,) = parse_scales(None, NANO_INPUT)
    assert single == ScalePass(NANO_INPUT) and scales_text([single]) == "384:768"
    scales = parse_scales("384, 768@0-96", NANO_INPUT)
    assert [(s.input.min_size, s.input.max_size, s.low, s.high) for s in scales] == [
        (384, 768, 0, math.inf),
        (768, 1536, 0, 96),
    ]
    assert scales_text(scales) == "384:768,768:1536@0-96"
    assert parse_scales(scales_text(scales), NANO_INPUT) == scales  # what outputs record reads back
    assert scales_text(parse_scales("320:640,600@32-", NANO_INPUT)) == "320:640,600:1200@32-"
    assert parse_scales(480, NANO_INPUT)[0].input.max_size == 960


@pytest.mark.parametrize(
    "size, fragment",
    [
        ("384,", "comma-separated"),
        ("384,768,960,1152,1344", "comma-separated"),
        ("384@0-96", "at least one size must keep every box"),
        ("384,768@96-0", "LOW must be below"),
        ("384,768@a-96", "LOW-HIGH in whole pixels"),
        ("384,768@96", "LOW-HIGH in whole pixels"),
        ("384,7x8", "SHORT or SHORT:MAX_LONG"),
        ("384,9000", "SHORT must be"),
    ],
)
def test_bad_sizes_are_clear_errors(size, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_scales(size, NANO_INPUT)


def test_a_range_keeps_boxes_as_glip_remove_boxes_does():
    scale = ScalePass(NANO_INPUT, 10, 20)
    # sqrt of the +1 area: 10 (out: strict), 10.05, 19.95, 20 (out)
    boxes = np.asarray([[0, 0, 9, 9], [0, 0, 9, 10], [0, 0, 18, 19.95 * 19.95 / 19 - 1], [5, 5, 24, 24]], np.float32)
    assert scale.keep(boxes).tolist() == [False, True, True, False]
    assert ScalePass(NANO_INPUT).keep(boxes).all()


def test_scales_merge_by_nms_per_label_and_keep_the_best():
    first = RawDetections(
        np.asarray([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32), np.asarray([0.5, 0.4]), np.asarray([1, 1])
    )
    second = RawDetections(
        np.asarray([[0, 0, 10, 11], [0, 0, 10, 10], [80, 80, 90, 90]], np.float32),
        np.asarray([0.7, 0.6, 0.3]),
        np.asarray([1, 2, 1]),
    )
    merged = merge_scales([first, second], 0.6, 100)
    assert merged.scores.tolist() == pytest.approx([0.7, 0.6, 0.4, 0.3])  # first's 0.5 box overlaps 0.7's
    assert merged.labels.tolist() == [1, 2, 1, 1]
    assert len(merge_scales([first, second], 0.6, 2)) == 2


def test_a_second_pass_at_the_same_size_changes_nothing(tiny_bundle):
    """The multi-scale path (candidates of each pass, one NMS in original pixels) on a pass that
    repeats the first must give the single-scale output: NMS drops every duplicate."""
    single = Detector.load(tiny_bundle, device="cpu")
    double = Detector.load(tiny_bundle, device="cpu", size="128:224,128:224@0-100000")
    # at the input size already: NMS with GLIP's +1 widths is not scale-invariant, and the
    # multi-scale test suppresses in original pixels, the single one in resized pixels
    image = scene(128, 128)
    a = single(image, PROMPT, threshold=0.0, all_labels=True)
    b = double(image, PROMPT, threshold=0.0, all_labels=True)
    assert len(a) > 5 and len(a) == len(b)
    np.testing.assert_allclose(b.xyxy, a.xyxy, atol=1e-3)
    np.testing.assert_array_equal(b.confidence, a.confidence)
    assert b.data["label_id"].tolist() == a.data["label_id"].tolist()


def _boxes(detector, image):
    found = detector(image, PROMPT, threshold=0.0, all_labels=True, max_detections=1000)
    return {(tuple(box), label) for box, label in zip(found.xyxy.round(2).tolist(), found.data["label_id"].tolist())}


def test_a_larger_pass_adds_boxes_of_its_range_only(tiny_bundle):
    image = scene(128, 128)  # at the first pass's size (see above)
    single = _boxes(Detector.load(tiny_bundle, device="cpu"), image)
    nothing = Detector.load(tiny_bundle, device="cpu", size="128,256@0-1")  # no box is that small
    assert nothing.size == "128:224,256:448@0-1" and _boxes(nothing, image) == single
    small = _boxes(Detector.load(tiny_bundle, device="cpu", size="128,256@0-40"), image)
    added = [box for box, _ in small - single]
    # the second pass's pixels are 2x the original's; boxes of sqrt(area) < 40 there come in
    assert any(math.sqrt(((x1 - x0) * 2 + 1) * ((y1 - y0) * 2 + 1)) < 40 for x0, y0, x1, y1 in added)


def test_images_prepared_for_other_sizes_are_refused(tiny_bundle):
    multi = Detector.load(tiny_bundle, device="cpu", size="128,256@0-40")
    prepared = Detector.load(tiny_bundle, device="cpu").prepare(scene())
    with pytest.raises(ImageError, match=r"prepared for 1 input size\(s\)"):
        multi(prepared, PROMPT)
    assert len(multi.prepare(scene()).others) == 1
    assert len(multi(multi.prepare(scene()), PROMPT, threshold=0.0)) > 0


def _calibrated_at(bundle, size):
    write_calibration(
        bundle, Calibration(0.3, 0.5, 0.5, 0.5, 10, 20, "val/annotations.json", {"seed": 401}, input_size=size)
    )
    return bundle


def test_the_calibrated_size_is_the_default_and_size_overrides_it(tiny_bundle, tmp_path):
    bundle = _calibrated_at(shutil.copytree(tiny_bundle, tmp_path / "b"), "128:224,256:448@0-40")
    assert Detector.load(bundle, device="cpu").size == "128:224,256:448@0-40"
    assert Detector.load(bundle, device="cpu", size=160).size == "160:280"
    image = tmp_path / "scene.png"
    from PIL import Image

    Image.fromarray(scene()).save(image)
    doc = json.loads(
        CliRunner().invoke(app, ["detect", str(image), PROMPT, "--model", str(bundle), "--json", "-"]).stdout
    )
    assert doc["input_size"] == "128:224,256:448@0-40"


def test_a_bad_calibrated_size_names_the_bundle(tiny_bundle, tmp_path):
    bundle = _calibrated_at(shutil.copytree(tiny_bundle, tmp_path / "bad"), "128@0-40")
    with pytest.raises(BundleError, match="calibration.input_size"):
        Detector.load(bundle, device="cpu")


def test_cli_bad_size_is_a_one_line_error(tiny_bundle, tmp_path):
    image = tmp_path / "scene.png"
    from PIL import Image

    Image.fromarray(scene()).save(image)
    result = CliRunner().invoke(
        app, ["detect", str(image), PROMPT, "--model", str(tiny_bundle), "--size", "128,256@40"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("error: ") and "LOW-HIGH" in result.stderr and len(result.stderr.splitlines()) == 1
