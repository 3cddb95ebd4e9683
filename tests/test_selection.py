"""glipcli.selection and thresholds: one label per object, fragments, per-class and calibrated thresholds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import supervision as sv
from typer.testing import CliRunner

from glipcli.api import DEFAULT_THRESHOLD, Detector
from glipcli.calibration import Calibration, write_calibration
from glipcli.cli import app
from glipcli.errors import BundleError, ConfigError, PromptError
from glipcli.prompt import read_prompt_file
from glipcli.runtime.bundle import load_bundle
from glipcli.selection import FRAGMENT_INSIDE, Thresholds, one_label_per_object, select
from tests.test_api import scene

PROMPT = "red circle. blue rectangle"


def detections(boxes, scores, labels) -> sv.Detections:
    labels = np.asarray(labels)
    return sv.Detections(
        xyxy=np.asarray(boxes, dtype=np.float32),
        confidence=np.asarray(scores, dtype=np.float32),
        class_id=labels - 1,
        data={"label_id": labels},
    )


def test_an_object_named_by_two_phrases_keeps_its_best_label():
    det = detections([[0, 0, 100, 100], [2, 1, 101, 99], [200, 200, 250, 250]], [0.6, 0.7, 0.5], [1, 2, 1])
    kept = select(det, Thresholds(0.0))
    assert kept.data["label_id"].tolist() == [2, 1] and kept.confidence.tolist() == pytest.approx([0.7, 0.5])
    assert len(select(det, Thresholds(0.0), all_labels=True)) == 3  # GLIP's output, untouched


def test_fragments_inside_a_better_box_of_their_label_go():
    """A partial box of the blue circle inside its main box (IoU < 0.5, so NMS keeps it) goes; a small
    black cross lying on the circle, another label, stays."""
    main, fragment, cross = [0, 0, 100, 100], [10, 10, 50, 50], [20, 20, 60, 60]
    det = detections([main, fragment, cross], [0.7, 0.5, 0.6], [1, 1, 2])
    assert one_label_per_object(det.xyxy, det.confidence, det.data["label_id"]).tolist() == [0, 2]
    kept = one_label_per_object(det.xyxy, det.confidence, det.data["label_id"], inside=None)
    assert kept.tolist() == [0, 2, 1]
    # half inside is the measured limit; a box mostly outside stays
    half = [50 + 100 * (1 - FRAGMENT_INSIDE) - 1, 10, 150, 50]
    det = detections([main, half], [0.7, 0.5], [1, 1])
    assert one_label_per_object(det.xyxy, det.confidence, det.data["label_id"]).tolist() == [0, 1]


def test_a_larger_box_is_not_a_fragment_of_a_smaller_better_one():
    det = detections([[10, 10, 50, 50], [0, 0, 100, 100]], [0.7, 0.5], [1, 1])
    assert one_label_per_object(det.xyxy, det.confidence, det.data["label_id"]).tolist() == [0, 1]


def test_per_class_thresholds_apply_after_the_one_label_selection():
    """Raising a class's threshold drops its objects; it does not hand them to a worse label."""
    det = detections([[0, 0, 100, 100], [1, 1, 100, 100]], [0.6, 0.55], [1, 2])
    assert len(select(det, Thresholds(0.4, {1: 0.7}))) == 0
    assert select(det, Thresholds(0.4, {1: 0.7}), all_labels=True).data["label_id"].tolist() == [2]


@pytest.fixture(scope="module")
def detector(tiny_bundle):
    return Detector.load(tiny_bundle, device="cpu")


def test_default_is_one_label_per_object(detector):
    """Fails if the API's default goes back to GLIP's several labels per object."""
    raw = detector(scene(), PROMPT, threshold=0, all_labels=True)
    default = detector(scene(), PROMPT, threshold=0)
    assert len(default) < len(raw)
    expected = select(raw, Thresholds(0.0))
    np.testing.assert_array_equal(default.xyxy, expected.xyxy)
    iou = sv.box_iou_batch(default.xyxy, default.xyxy)
    assert (iou[~np.eye(len(default), dtype=bool)] < 0.5).all()


def test_class_thresholds_in_the_api(detector):
    raw = detector(scene(), PROMPT, threshold=0)
    cut = float(np.median(raw.confidence))
    found = detector(scene(), PROMPT, threshold=0, class_thresholds={"Red  Circle": cut})
    keep = (raw.data["label_id"] == 2) | (raw.confidence >= cut)
    np.testing.assert_array_equal(found.confidence, raw.confidence[keep])


@pytest.mark.parametrize(
    "class_thresholds, message",
    [
        ({"green star": 0.5}, "no such class"),
        ({"red circle": 1.5}, "between 0 and 1"),
        ({"red circle": "x"}, "0 and 1"),
    ],
)
def test_bad_class_thresholds_are_errors(detector, class_thresholds, message):
    with pytest.raises(ConfigError, match=message):
        detector(scene(), PROMPT, class_thresholds=class_thresholds)


def test_prompt_file_thresholds(tmp_path, detector):
    path = tmp_path / "classes.txt"
    path.write_text("red circle >= 0.6  # strict\nblue rectangle: a flat box >=0.25\ngreen star\n")
    prompt = read_prompt_file(path)
    assert [label.threshold for label in prompt.labels] == [0.6, 0.25, None]
    assert prompt.labels[1].description == "a flat box"
    thresholds = detector.thresholds(detector.prepare_prompt(prompt), 0.4, {"green star": 0.3})
    assert thresholds == Thresholds(0.4, {1: 0.6, 2: 0.25, 3: 0.3})
    for text, message in [
        ("red >= 1.5\n", "not between 0 and 1"),
        ("red >= x\n", "not a number"),
        (">= 0.5\n", "no class"),
    ]:
        path.write_text(text)
        with pytest.raises(PromptError, match=message):
            read_prompt_file(path)


@pytest.fixture
def calibrated(tiny_bundle, tmp_path):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "calibrated")
    write_calibration(bundle, Calibration(0.47, 0.5, 0.5, 0.5, 10, 20, "val/annotations.json", {"seed": 401}))
    return bundle


def test_the_manifest_threshold_is_the_default_and_threshold_overrides_it(calibrated, tiny_bundle):
    load_bundle(calibrated)  # the graphs' sha256s still verify
    detector = Detector.load(calibrated, device="cpu")
    assert detector.default_threshold == (0.47, "calibrated on val/annotations.json")
    assert Detector.load(tiny_bundle, device="cpu").default_threshold == (DEFAULT_THRESHOLD, "default")
    assert detector(scene(), PROMPT).confidence.min() >= 0.47
    lower = detector(scene(), PROMPT, threshold=0.3)
    assert lower.confidence.min() < 0.47


def test_cli_records_the_threshold_and_its_source(calibrated, tmp_path):
    image = tmp_path / "scene.png"
    from PIL import Image

    Image.fromarray(scene()).save(image)
    runner = CliRunner()
    args = ["detect", str(image), PROMPT, "--model", str(calibrated), "--json", "-"]
    doc = json.loads(runner.invoke(app, args).stdout)
    assert (doc["threshold"], doc["threshold_source"], doc["one_label"]) == (
        0.47,
        "calibrated on val/annotations.json",
        True,
    )
    result = runner.invoke(app, [*args, "-t", "0.3", "-T", "blue rectangle=0.9"])
    doc = json.loads(result.stdout)
    assert (doc["threshold"], doc["threshold_source"], doc["class_thresholds"]) == (
        0.3,
        "given",
        {"blue rectangle": 0.9},
    )
    assert "threshold 0.3 (--threshold), blue rectangle 0.9; one label per object" in result.stderr


@pytest.mark.parametrize(
    "option, fragment",
    [
        ("green star=0.5", "no such class"),
        ("red circle=2", "between 0 and 1"),
        ("red circle", "NAME=VALUE"),
        ("red circle=x", "not a number"),
    ],
)
def test_cli_bad_class_thresholds_are_one_line_errors(calibrated, tmp_path, option, fragment):
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    Image.fromarray(scene()).save(folder / "a.png")
    result = CliRunner().invoke(app, ["label", str(folder), "-P", PROMPT, "--model", str(calibrated), "-T", option])
    assert result.exit_code == 1 and result.stdout == "" and "Traceback" not in result.output
    assert result.stderr.startswith("error: ") and fragment in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "labels.json.journal").exists()


@pytest.fixture
def calibrated_new_names(tiny_bundle, tmp_path):
    """Calibrated on 'red circle' (0.47) and, for every other class, on a set of new ones (0.2)."""
    bundle = shutil.copytree(tiny_bundle, tmp_path / "calibrated-new")
    known = Calibration(0.47, 0.5, 0.5, 0.5, 10, 20, "val/annotations.json", {"seed": 401})
    new = Calibration(0.2, 0.6, 0.6, 0.6, 10, 20, "val-new/annotations.json", {"seed": 402})
    write_calibration(bundle, known, (["Red  Circle"], new))
    return bundle


def test_classes_outside_the_calibrated_ones_get_the_new_name_threshold(calibrated_new_names):
    load_bundle(calibrated_new_names)  # still verifies
    detector = Detector.load(calibrated_new_names, device="cpu")
    assert detector.new_name_threshold == (0.2, frozenset({"red circle"}))
    prepared = detector.prepare_prompt(PROMPT)  # "red circle. blue rectangle": the second is new
    assert detector.thresholds(prepared) == Thresholds(0.47, {2: 0.2})
    assert detector.thresholds(prepared, 0.3) == Thresholds(0.3, {})  # a given threshold applies to all
    assert detector.thresholds(prepared, class_thresholds={"blue rectangle": 0.6}) == Thresholds(0.47, {2: 0.6})
    raw = detector(scene(), PROMPT, threshold=0.0, max_detections=100, all_labels=True)
    found = detector(scene(), PROMPT)
    assert found.confidence[found.data["label_id"] == 1].min(initial=1) >= 0.47
    new = found.confidence[found.data["label_id"] == 2]
    assert new.min() >= 0.2 and new.min() < 0.47  # only the new-name threshold lets these through
    assert len(found) == len(select(raw, Thresholds(0.47, {2: 0.2})))


def test_cli_says_which_classes_got_the_new_name_threshold(calibrated_new_names, tmp_path):
    from PIL import Image

    image = tmp_path / "scene.png"
    Image.fromarray(scene()).save(image)
    args = ["detect", str(image), PROMPT, "--model", str(calibrated_new_names), "--json", "-"]
    result = CliRunner().invoke(app, args)
    doc = json.loads(result.stdout)
    assert (doc["threshold"], doc["new_name_threshold"], doc["new_names"], doc["class_thresholds"]) == (
        0.47,
        0.2,
        ["blue rectangle"],
        {},
    )
    assert "threshold 0.47 (calibrated on val/annotations.json), 0.2 for 1 new class;" in result.stderr
    given = json.loads(CliRunner().invoke(app, [*args, "-t", "0.5"]).stdout)
    assert "new_names" not in given and given["threshold"] == 0.5
    own = json.loads(CliRunner().invoke(app, [*args, "-T", "blue rectangle=0.3"]).stdout)  # its own wins
    assert "new_names" not in own and own["class_thresholds"] == {"blue rectangle": 0.3}


def test_a_bad_new_name_calibration_is_a_bundle_error(calibrated_new_names):
    path = calibrated_new_names / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["calibration"]["names"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="calibration.new_names"):
        Detector.load(calibrated_new_names, device="cpu")(scene(), PROMPT)
