"""label_folder: COCO/YOLO output, ids, resume equal to an uninterrupted run, bad files, runs per graph."""

from __future__ import annotations

import copy
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from supervision import box_iou_batch

from glipcli.api import Detector
from glipcli.errors import ConfigError, DataError
from glipcli.labelling.folder import label_folder
from glipcli.labelling.journals import journal_path
from glipcli.labelling.writers import errors_path
from glipcli.prompt import Label, Prompt
from glipcli.selection import FRAGMENT_INSIDE
from tests.test_api import scene

PROMPT = "red circle. blue rectangle"
THRESHOLD = 0.46  # the random tiny model scores 0.44-0.53: keeps about a quarter of its 100 boxes


@pytest.fixture(scope="module")
def detector(tiny_bundle):
    return Detector.load(tiny_bundle, device="cpu")


def make_images(root: Path, count: int) -> list[str]:
    """``count`` small scenes of varied sizes, some in sub-folders; their relative paths, sorted."""
    names = []
    for i in range(count):
        name = f"{'sub/' if i % 3 == 1 else ''}img_{i:02d}.png"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene(80 + 23 * (i % 7), 100 + 37 * (i % 5), seed=i)).save(path)  # padded sizes vary
        names.append(name)
    return sorted(names)


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims ``width`` x ``height`` (CRC fixed): a cheap huge image."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    chunk = data[12:29]  # "IHDR" + 13 bytes of fields
    chunk[4:12] = struct.pack(">II", width, height)
    data[12:29] = chunk
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(chunk)))
    return bytes(data)


def messy_folder(root: Path) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """Over 20 kinds of files: {good file: (width, height) as labelled}, {bad file: reason fragment}."""
    rgb = scene(60, 80)
    good: dict[str, tuple[int, int]] = {}
    bad: dict[str, str] = {}

    def save(name: str, image: Image.Image, size: tuple[int, int] | None = None, **kwargs: object) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **kwargs)
        good[name] = size or image.size

    def write(name: str, data: bytes, reason: str) -> None:
        (root / name).write_bytes(data)
        bad[name] = reason

    image = Image.fromarray(rgb)
    save("rgb.png", image)
    save("photo.jpg", image)
    save("UPPER.JPG", image, format="JPEG")
    save("sub/deeper/nested.png", image)
    save("猫 ü é.png", image)  # unicode name
    save("grey.png", image.convert("L"))
    save("grey16.png", Image.fromarray(np.arange(80 * 60, dtype=np.uint16).reshape(60, 80) * 13))
    save("cmyk.jpg", image.convert("CMYK"))
    save("rgba.png", image.convert("RGBA"))
    save("grey_alpha.png", image.convert("LA"))
    save("palette.png", image.convert("P"), transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 80x60, displayed rotated: 60x80
    save("exif_rotated.jpg", image, size=(60, 80), exif=exif)
    save("png_inside.jpg", image, format="PNG")  # wrong extension, still an image
    save("image.bmp", image)
    save("image.webp", image)
    save("image.tiff", image)
    save("one_pixel.png", Image.new("RGB", (1, 1), (255, 0, 0)))
    save("folder.jpg/inside.png", image)  # a folder named like an image is walked, not decoded

    write("empty.jpg", b"", "empty file")
    jpeg = (root / "photo.jpg").read_bytes()
    write("truncated.jpg", jpeg[: len(jpeg) // 2], "truncated")
    write("text.png", b"just some text, not pixels\n", "not an image")
    write("huge.png", png_claiming_size(9000, 9000), "too large")
    damaged = bytearray((root / "rgb.png").read_bytes())
    damaged[60:200] = bytes(range(140))
    write("damaged.png", bytes(damaged), "damaged image")
    os.symlink(root / "gone.png", root / "broken_link.png")
    bad["broken_link.png"] = "broken symbolic link"
    os.symlink(root / "sub", root / "sub" / "loop")
    bad["sub/loop"] = "symbolic link loop"
    os.mkfifo(root / "fifo.png")
    bad["fifo.png"] = "not a regular file"
    (root / os.fsdecode(b"latin1_\xe9.png")).write_bytes((root / "rgb.png").read_bytes())
    bad["latin1_\\xe9.png"] = "not valid UTF-8"
    (root / ".hidden.png").write_bytes(b"ignored: hidden")
    (root / "notes.txt").write_text("ignored: not an image extension")
    return good, bad


def test_messy_folder_labels_the_good_and_lists_the_bad(detector, tmp_path):
    root = tmp_path / "messy"
    good, bad = messy_folder(root)
    out = tmp_path / "labels.json"
    summary = label_folder(root, PROMPT, out, detector=detector, threshold=THRESHOLD)
    assert summary.exit_code == 2
    assert summary.labelled == len(good) and summary.total == len(good) + 6  # 6 bad files are candidates
    reasons = {item.file: item.reason for item in summary.skipped}
    assert set(reasons) == set(bad)
    for name, fragment in bad.items():
        assert fragment in reasons[name], (name, reasons[name])
    assert json.loads(errors_path(out).read_text()) == [{"file": s.file, "reason": s.reason} for s in summary.skipped]
    coco = COCO(str(out))
    images = {image["file_name"]: image for image in coco.dataset["images"]}
    assert {name: (i["width"], i["height"]) for name, i in images.items()} == good
    candidates = sorted(
        (Path(folder) / name).relative_to(root).as_posix()
        for folder, _, names in os.walk(root)
        for name in names
        if name.lower().endswith((".png", ".jpg", ".bmp", ".webp", ".tiff")) and not name.startswith(".")
        if (Path(folder) / name).is_file() and not (Path(folder) / name).is_symlink()
    )
    assert len(candidates) == summary.total
    assert {name: i["id"] for name, i in images.items()} == {name: candidates.index(name) + 1 for name in good}
    assert coco.loadRes(copy.deepcopy(coco.dataset["annotations"])).getAnnIds()
    assert not journal_path(out).exists() and not Path(f"{journal_path(out)}.lock").exists()


def test_coco_content_matches_the_detector(detector, tmp_path):
    names = make_images(tmp_path / "imgs", 4)
    prompt = Prompt((Label("red circle"), Label("blue rectangle", "a flat box")))
    out = tmp_path / "out" / "labels.json"
    summary = label_folder(tmp_path / "imgs", prompt, out, detector=detector, threshold=THRESHOLD, workers=3)
    assert summary.exit_code == 0 and summary.skipped == [] and not errors_path(out).exists()
    doc = json.loads(out.read_text())
    assert doc["categories"] == [
        {"id": 1, "name": "red circle", "supercategory": "object"},
        {"id": 2, "name": "blue rectangle", "supercategory": "object", "description": "a flat box"},
    ]
    info = doc["info"]
    manifest = json.loads((Path(detector.bundle.path) / "manifest.json").read_text())
    assert info["model"] == "tiny" and info["threshold"] == THRESHOLD and info["max_detections"] == 100
    assert info["source"]["sha256"] == manifest["source"]["sha256"]
    assert info["graphs_sha256"]["backbone"] == manifest["graphs"]["backbone"]["sha256"]
    assert info["prompt"] == "red circle. blue rectangle: a flat box."
    assert [i["file_name"] for i in doc["images"]] == names and [i["id"] for i in doc["images"]] == [1, 2, 3, 4]
    expected = []
    for image_id, name in enumerate(names, start=1):
        det = detector(tmp_path / "imgs" / name, prompt, threshold=THRESHOLD)
        for (x1, y1, x2, y2), score, label in zip(det.xyxy, det.confidence, det.data["label_id"]):
            box = [round(float(v), 2) for v in (x1, y1, x2 - x1 + 1, y2 - y1 + 1)]
            expected.append((image_id, int(label), box, round(float(score), 5)))
    got = [(a["image_id"], a["category_id"], a["bbox"], a["score"]) for a in doc["annotations"]]
    assert got == expected and len(got) == summary.boxes > 0
    assert [a["id"] for a in doc["annotations"]] == list(range(1, len(got) + 1))


def test_text_once_per_chunk_backbone_once_per_image(detector, tmp_path):
    make_images(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / "bad.png").write_bytes(b"not an image")
    many = ". ".join(f"object number {i} of this folder" for i in range(60))  # unique to this test
    prepared = detector.prepare_prompt(many)
    assert len(prepared.chunks) >= 2
    detector.engine.runs.update(dict.fromkeys(detector.engine.runs, 0))
    label_folder(tmp_path / "imgs", prepared, tmp_path / "l.json", detector=detector, threshold=0.6)
    assert detector.engine.runs == {"text": len(prepared.chunks), "backbone": 5, "head": 5 * len(prepared.chunks)}


class Interrupt(Exception):
    """Stands for Ctrl-C or a crash in the middle of a run."""


def interrupt_after(count: int):
    def progress(state):
        if state.processed >= count:
            raise Interrupt

    return progress


def without_date(doc: dict) -> dict:
    return {**doc, "info": {k: v for k, v in doc["info"].items() if k != "date_created"}}


@pytest.mark.parametrize(("batch_size", "stops"), [(1, [1, 4]), (3, [2, 5])])
def test_resume_equals_an_uninterrupted_run(detector, tmp_path, batch_size, stops):
    root = tmp_path / "imgs"
    make_images(root, 8)
    (root / "sub" / "zz_bad.jpg").write_bytes(b"")
    kwargs = {"detector": detector, "threshold": THRESHOLD, "batch_size": batch_size}
    whole = label_folder(root, PROMPT, tmp_path / "whole.json", **kwargs)
    out = tmp_path / "resumed.json"
    for stop in stops:
        with pytest.raises(Interrupt):
            label_folder(root, PROMPT, out, resume=True, progress=interrupt_after(stop), **kwargs)
        assert journal_path(out).exists() and not out.exists()
    resumed = label_folder(root, PROMPT, out, resume=True, **kwargs)
    assert resumed.resumed == sum(stops) and resumed.labelled == whole.labelled == 8
    assert [s.file for s in resumed.skipped] == [s.file for s in whole.skipped] == ["sub/zz_bad.jpg"]
    first, second = (json.loads(p.read_text()) for p in (tmp_path / "whole.json", out))
    assert without_date(first) == without_date(second)
    assert not journal_path(out).exists()


def test_one_label_is_the_default_and_resumes_any_journal(detector, tmp_path):
    """The selection filters what is written, not what is journaled: a run interrupted with all_labels
    and resumed without equals a fresh default run, which is GLIP's output less other labels' boxes
    over an object and fragments inside a better box of the same label."""
    root = tmp_path / "imgs"
    make_images(root, 6)
    kwargs = {"detector": detector, "threshold": 0.0}  # many overlapping boxes of both labels
    label_folder(root, PROMPT, tmp_path / "all.json", all_labels=True, **kwargs)
    fresh = label_folder(root, PROMPT, tmp_path / "one.json", **kwargs)
    out = tmp_path / "resumed.json"
    with pytest.raises(Interrupt):
        label_folder(root, PROMPT, out, progress=interrupt_after(2), all_labels=True, **kwargs)
    label_folder(root, PROMPT, out, resume=True, **kwargs)
    every, one, resumed = (json.loads((tmp_path / n).read_text()) for n in ("all.json", "one.json", "resumed.json"))
    assert without_date(resumed) == without_date(one) and one["info"]["one_label"] is True
    assert every["info"]["one_label"] is False
    assert fresh.boxes == len(one["annotations"]) < len(every["annotations"])
    key = lambda a: (a["image_id"], a["category_id"], tuple(a["bbox"]), a["score"])  # noqa: E731
    assert {key(a) for a in one["annotations"]} <= {key(a) for a in every["annotations"]}
    xyxy = lambda anns: np.array([[x, y, x + w - 1, y + h - 1] for x, y, w, h in (a["bbox"] for a in anns)])  # noqa: E731
    for image in one["images"]:
        kept = [a for a in one["annotations"] if a["image_id"] == image["id"]]
        overlap = box_iou_batch(xyxy(kept), xyxy(kept))
        assert (overlap[~np.eye(len(kept), dtype=bool)] < 0.5 + 1e-3).all()  # COCO boxes are rounded
        for a in every["annotations"]:  # a box is dropped only for a better-scoring kept box on the same object
            if a["image_id"] == image["id"] and key(a) not in {key(k) for k in kept}:
                ious = box_iou_batch(xyxy([a]), xyxy(kept))[0]
                rivals = [
                    k["score"]
                    for k, iou in zip(kept, ious)
                    if iou >= 0.499
                    or (k["category_id"] == a["category_id"] and _inside(a, k) >= FRAGMENT_INSIDE - 1e-3)
                ]
                assert rivals and max(rivals) >= a["score"]


def _inside(a: dict, b: dict) -> float:
    """The share of COCO box a's area inside COCO box b."""
    (ax, ay, aw, ah), (bx, by, bw, bh) = a["bbox"], b["bbox"]
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah)


def test_existing_journal_needs_resume_and_same_settings(detector, tmp_path):
    make_images(tmp_path / "imgs", 3)
    out = tmp_path / "l.json"
    with pytest.raises(Interrupt):
        label_folder(tmp_path / "imgs", PROMPT, out, detector=detector, progress=interrupt_after(1))
    with pytest.raises(DataError, match="--resume"):
        label_folder(tmp_path / "imgs", PROMPT, out, detector=detector)
    with pytest.raises(DataError, match="different threshold"):
        label_folder(tmp_path / "imgs", PROMPT, out, detector=detector, threshold=0.5, resume=True)
    with pytest.raises(DataError, match="different format"):
        label_folder(tmp_path / "imgs", PROMPT, tmp_path / "l.json", detector=detector, fmt="yolo", resume=True)
    with pytest.raises(DataError, match="different classes"):
        label_folder(tmp_path / "imgs", "red circle", out, detector=detector, resume=True)
    (tmp_path / "imgs" / "img_00.png").unlink()  # the journal's first image is gone: ids would shift
    with pytest.raises(DataError, match="no longer image 1"):
        label_folder(tmp_path / "imgs", PROMPT, out, detector=detector, resume=True)


def test_second_writer_on_the_same_output_is_refused(detector, tmp_path):
    make_images(tmp_path / "imgs", 2)
    out = tmp_path / "l.json"
    errors = []

    def nested(state):
        if state.processed == 1 and not errors:
            with pytest.raises(DataError, match="in use") as caught:
                label_folder(tmp_path / "imgs", PROMPT, out, detector=detector, resume=True)
            errors.append(caught.value)

    label_folder(tmp_path / "imgs", PROMPT, out, detector=detector, progress=nested)
    assert errors and out.exists()


def yolo_boxes(path: Path, width: int, height: int) -> tuple[list[int], np.ndarray]:
    """Back from YOLO lines to GLIP's inclusive pixel boxes."""
    rows = np.array([[float(v) for v in line.split()] for line in path.read_text().splitlines()]).reshape(-1, 5)
    cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    return rows[:, 0].astype(int).tolist(), np.stack([cx - w / 2, cy - h / 2, cx + w / 2 - 1, cy + h / 2 - 1], 1)


def test_yolo_round_trip_matches_coco(detector, tmp_path):
    root = tmp_path / "imgs"
    names = make_images(root, 4)
    Image.fromarray(scene(90, 120)).save(root / "img_00.jpg")  # its label file would be img_00.txt too
    coco = label_folder(root, PROMPT, tmp_path / "l.json", detector=detector, threshold=THRESHOLD)
    out = tmp_path / "labels"
    summary = label_folder(root, PROMPT, out, detector=detector, threshold=THRESHOLD, fmt="yolo")
    assert [(s.file, "img_00.txt" in s.reason) for s in summary.skipped] == [("img_00.png", True)]
    assert summary.labelled == 4 and summary.exit_code == 2
    assert (out / "classes.txt").read_text() == "red circle\nblue rectangle\n"
    doc = json.loads((tmp_path / "l.json").read_text())
    for image in doc["images"]:
        if image["file_name"] == "img_00.png":
            continue
        anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
        label_file = out / Path(image["file_name"]).with_suffix(".txt")
        classes, boxes = yolo_boxes(label_file, image["width"], image["height"])
        assert classes == [a["category_id"] - 1 for a in anns]
        x, y, w, h = np.array([a["bbox"] for a in anns]).reshape(-1, 4).T
        inclusive = np.stack([x, y, x + w - 1, y + h - 1], 1)
        clipped = np.clip(inclusive, 0, [image["width"] - 1, image["height"] - 1] * 2)
        np.testing.assert_allclose(boxes, clipped, atol=0.02)
    assert coco.labelled == 5 and len(names) == 4


def test_bad_arguments_fail_before_any_journal(detector, tmp_path):
    make_images(tmp_path / "imgs", 1)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    cases = [
        ({"out": tmp_path / "folder"}, ConfigError, "is a folder"),
        ({"out": tmp_path / "file", "fmt": "yolo"}, ConfigError, "is a file"),
        ({"fmt": "pascal"}, ConfigError, "unknown format"),
        ({"workers": 0}, ConfigError, "workers"),
        ({"threshold": 2.0}, ConfigError, "threshold"),
        ({"batch_size": 0}, ConfigError, "batch size"),
    ]
    for kwargs, error, message in cases:
        kwargs = {"out": tmp_path / "l.json", **kwargs}
        with pytest.raises(error, match=message):
            label_folder(tmp_path / "imgs", PROMPT, detector=detector, **kwargs)
    with pytest.raises(DataError, match="folder not found"):
        label_folder(tmp_path / "nowhere", PROMPT, tmp_path / "l.json", detector=detector)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder", "imgs"]
