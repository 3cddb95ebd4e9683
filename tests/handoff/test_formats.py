"""The hand-off writers, glip convert and supervision's readers, without any outside tool."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from typer.testing import CliRunner

from glipcli.cli import app
from glipcli.convert import convert_labels, parse_formats
from glipcli.errors import ConfigError, DataError
from glipcli.io.labelled import LabelledImage
from glipcli.io.voc import write_voc
from tests.handoff.conftest import Handoff


def _same_tree(a: Path, b: Path) -> None:
    compared = filecmp.dircmp(a, b)
    assert not compared.left_only and not compared.right_only and not compared.diff_files, compared.report()
    for sub in compared.common_dirs:
        _same_tree(a / sub, b / sub)


def test_convert_equals_what_label_wrote(handoff: Handoff, tmp_path: Path) -> None:
    """One finished run: the formats converted from its COCO file are byte for byte the ones it wrote."""
    out = tmp_path / "converted"
    summary = convert_labels(handoff.out / "labels.json", "yolo,voc,labelstudio,cvat", handoff.images, out)
    assert summary.boxes == len(handoff.coco["annotations"])
    for name in ("yolo", "voc", "labelstudio"):
        _same_tree(out / name, handoff.out / name)
    assert (out / "cvat.xml").read_text() == (handoff.out / "cvat.xml").read_text()


def _sv_boxes(dataset: sv.DetectionDataset) -> dict[str, list[tuple[str, np.ndarray]]]:
    return {
        Path(path).name: [(dataset.classes[c], box) for c, box in zip(d.class_id, d.xyxy, strict=True)]
        for path, _, d in dataset
    }


def _assert_match(got: list[tuple[str, np.ndarray]], want: list[tuple[str, np.ndarray]], tolerance: float) -> None:
    """Every wanted box is read back once, with its label, within ``tolerance`` pixels."""
    assert len(got) == len(want), (got, want)
    left = list(got)
    for label, box in want:
        hits = [
            k for k, (g_label, g_box) in enumerate(left) if g_label == label and np.allclose(g_box, box, atol=tolerance)
        ]
        assert hits, f"{label} {box} not read back (tolerance {tolerance} px)"
        left.pop(hits[0])


def test_supervision_reads_coco_voc_and_yolo(handoff: Handoff, tmp_path: Path) -> None:
    """COCO exactly; VOC within half a pixel (whole pixels, as the format defines); YOLO within its 5 decimals."""
    coco = sv.DetectionDataset.from_coco(str(handoff.images), str(handoff.out / "labels.json"))
    pascal = sv.DetectionDataset.from_pascal_voc(str(handoff.images), str(handoff.out / "voc" / "Annotations"))
    yolo_root = tmp_path / "yolo"  # Ultralytics' layout: images/ beside labels/
    yolo_root.mkdir()
    (yolo_root / "images").symlink_to(handoff.images)
    (yolo_root / "labels").symlink_to(handoff.out / "yolo")
    yolo = sv.DetectionDataset.from_yolo(
        str(yolo_root / "images"), str(yolo_root / "labels"), str(handoff.out / "yolo" / "data.yaml")
    )
    sizes = {image["file_name"]: (image["width"], image["height"]) for image in handoff.coco["images"]}
    read = {"coco": _sv_boxes(coco), "voc": _sv_boxes(pascal), "yolo": _sv_boxes(yolo)}
    for name, boxes in handoff.expected().items():
        width, height = sizes[name]
        want = [(label, np.array([x, y, x + w, y + h])) for label, x, y, w, h, _ in boxes]
        clipped = [(label, np.clip(box, 0, [width, height, width, height])) for label, box in want]
        _assert_match(read["coco"][name], want, 1e-3)
        _assert_match(read["voc"][name], want, 0.5 + 1e-3)
        _assert_match(read["yolo"][name], clipped, 1e-5 * max(width, height) + 1e-3)


def test_voc_mirrors_the_folder_tree(tmp_path: Path) -> None:
    image = LabelledImage("a/b/x.jpg", 100, 50, np.array([[10.0, 5.0, 19.0, 14.0]]), np.array([0.5]), np.array([1]))
    write_voc(
        tmp_path, [image, LabelledImage("x.jpg", 10, 10, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))], ["a", "b"]
    )
    xml = (tmp_path / "Annotations" / "a" / "b" / "x.xml").read_text()
    assert "<xmin>11</xmin>" in xml and "<xmax>20</xmax>" in xml and "<name>b</name>" in xml  # 1-based, inclusive
    assert (tmp_path / "ImageSets" / "Main" / "default.txt").read_text() == "a/b/x\nx\n"


def test_unknown_format_is_one_line() -> None:
    with pytest.raises(ConfigError, match="unknown format 'pascal'"):
        parse_formats("voc,pascal")


def test_convert_refuses_an_existing_output(handoff: Handoff, tmp_path: Path) -> None:
    out = tmp_path / "voc"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists"):
        convert_labels(handoff.out / "labels.json", "voc", handoff.images, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_convert_refuses_labels_of_another_folder(handoff: Handoff, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(DataError, match="does not match"):
        convert_labels(handoff.out / "labels.json", "cvat", other, tmp_path / "x.xml")
    assert not (tmp_path / "x.xml").exists()


def test_cli_errors_are_one_line(handoff: Handoff, tmp_path: Path) -> None:
    labels, images = str(handoff.out / "labels.json"), str(handoff.images)
    cases = [
        (["convert", labels, "-f", "coco-ish", "--images", images, "--out", str(tmp_path / "a")], "unknown format"),
        (["convert", labels, "-f", "voc", "--images", str(tmp_path), "--out", str(tmp_path / "b")], "does not match"),
        (["review", labels, "--images", images, "--out", labels], "exists"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert json.loads((handoff.out / "labels.json").read_text()) == handoff.coco  # nothing overwritten
