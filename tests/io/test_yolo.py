"""YOLO labels: normalised lines, mirrored sub-folders, class lists, collisions refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from glipcli.errors import DataError
from glipcli.io.yolo import label_path, write_yolo, yolo_lines


def _parse(lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.array([[float(v) for v in line.split()] for line in lines]).reshape(-1, 5)
    return rows[:, 0].astype(int), rows[:, 1:]


def test_lines_normalised_centre_size() -> None:
    # inclusive boxes: pixels 10..49 x 20..99 (40 x 80 pixels), and the whole 200 x 100 image
    boxes = np.array([[10, 20, 49, 99], [0, 0, 199, 99]], dtype=np.float32)
    classes, cxcywh = _parse(yolo_lines(200, 100, boxes, np.array([2, 0])))
    assert classes.tolist() == [2, 0]
    np.testing.assert_allclose(cxcywh[0], [30 / 200, 60 / 100, 40 / 200, 80 / 100], atol=1e-5)
    np.testing.assert_allclose(cxcywh[1], [0.5, 0.5, 1.0, 1.0], atol=1e-5)
    assert yolo_lines(200, 100, boxes, np.array([2, 0]))[0] == "2 0.15000 0.60000 0.20000 0.80000"


def test_lines_clip_to_image() -> None:
    _, cxcywh = _parse(yolo_lines(100, 50, np.array([[-10.0, -5.0, 59.0, 70.0]]), np.array([0])))
    np.testing.assert_allclose(cxcywh[0], [0.3, 0.5, 0.6, 1.0], atol=1e-5)  # x spans 0..60, y 0..50
    _, cxcywh = _parse(yolo_lines(100, 50, np.array([[0.0, 0.0, 99.0, 49.0]]), np.array([0])))
    np.testing.assert_allclose(cxcywh[0], [0.5, 0.5, 1.0, 1.0], atol=1e-5)  # last pixel included
    assert yolo_lines(100, 50, np.zeros((0, 4)), np.zeros(0, int)) == []
    with pytest.raises(ValueError):
        yolo_lines(100, 50, np.zeros((2, 4)), np.zeros(1, int))


def test_label_path_mirrors_tree_and_refuses_escapes(tmp_path: Path) -> None:
    assert label_path(tmp_path, "a/b/猫.JPG") == tmp_path / "a" / "b" / "猫.txt"
    assert label_path(tmp_path, "x.y.png") == tmp_path / "x.y.txt"
    for bad in ("../x.jpg", "/etc/x.jpg", "a/../../x.jpg"):
        with pytest.raises(DataError, match="relative"):
            label_path(tmp_path, bad)


def test_write_yolo_tree(tmp_path: Path) -> None:
    out = tmp_path / "labels"
    items = [
        ("a/x.jpg", 200, 100, np.array([[10, 20, 49, 99]], np.float32), np.array([1])),
        ("b/x.jpg", 10, 10, np.zeros((0, 4), np.float32), np.zeros(0, int)),
        ("top.png", 4, 4, np.array([[0, 0, 1, 1], [2, 2, 3, 3]], np.float32), np.array([0, 1])),
    ]
    write_yolo(out, iter(items), ["cat", "sea: lion"])
    assert (out / "a" / "x.txt").read_text() == "1 0.15000 0.60000 0.20000 0.80000\n"
    assert (out / "b" / "x.txt").read_text() == ""  # background image
    classes, cxcywh = _parse((out / "top.txt").read_text().splitlines())
    assert classes.tolist() == [0, 1]
    np.testing.assert_allclose(cxcywh, [[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]], atol=1e-5)
    assert (out / "classes.txt").read_text().splitlines() == ["cat", "sea: lion"]
    assert yaml.safe_load((out / "data.yaml").read_text()) == {"nc": 2, "names": ["cat", "sea: lion"]}
    assert not [p for p in out.rglob(".*")]  # no temp files left


def test_write_yolo_refuses_collisions(tmp_path: Path) -> None:
    empty = (np.zeros((0, 4)), np.zeros(0, int))
    with pytest.raises(DataError, match=r"d/a\.png and d/a\.jpg would share"):
        write_yolo(tmp_path, [("d/a.jpg", 1, 1, *empty), ("d/a.png", 1, 1, *empty)], ["c"])
    with pytest.raises(DataError, match="class list"):
        write_yolo(tmp_path, [("classes.jpg", 1, 1, *empty)], ["c"])
    assert (tmp_path / "classes.txt").read_text() == "c\n"


def test_write_yolo_rejects_bad_class_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside 0..1"):
        write_yolo(tmp_path, [("a.jpg", 4, 4, np.zeros((1, 4)), np.array([2]))], ["a", "b"])
