"""COCO builders, the atomic writer and the validating reader, with a pycocotools round trip."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from glipcli.errors import DataError
from glipcli.io.coco import (
    coco_annotations,
    coco_boxes,
    coco_categories,
    coco_document,
    coco_image,
    load_coco,
    write_coco_atomic,
    write_json_atomic,
)

BOXES = np.array([[10.123456, 20.0, 50.5, 80.25], [0.0, 0.0, 1.0, 2.0]], dtype=np.float32)
SCORES = np.array([0.876543219, 0.5], dtype=np.float32)


def _document() -> dict:
    categories = coco_categories(["cat", "sea lion", "stingray"], [None, None, "flat and round fish"])
    images = [coco_image(1, "a/b/猫 1.jpg", 640, 480), coco_image(2, "x.png", 100, 50)]
    annotations = coco_annotations(1, BOXES, SCORES, np.array([3, 1]), first_id=1)
    annotations += coco_annotations(2, BOXES[:1], SCORES[:1], np.array([2]), first_id=len(annotations) + 1)
    return coco_document(images, annotations, categories, {"description": "test", "model": "glip-t"})


def test_categories_one_based_in_prompt_order() -> None:
    categories = coco_categories(["b", "a"], ["about b", None])
    assert categories == [
        {"id": 1, "name": "b", "supercategory": "object", "description": "about b"},
        {"id": 2, "name": "a", "supercategory": "object"},
    ]
    assert coco_categories([]) == []
    with pytest.raises(ValueError):
        coco_categories(["a"], [None, None])


def test_image_entry() -> None:
    assert coco_image(np.int64(7), "d/e.jpg", np.int32(3), 4) == {
        "id": 7,
        "file_name": "d/e.jpg",
        "width": 3,
        "height": 4,
    }
    json.dumps(coco_image(np.int64(7), "d/e.jpg", np.int32(3), 4))  # numpy scalars made plain


def test_boxes_inclusive_plus_one() -> None:
    # a box over pixels 0..9 (x) and 5..5 (y) is 10 wide and 1 high, as COCO counts pixels
    np.testing.assert_array_equal(coco_boxes(np.array([[0, 5, 9, 5]])), [[0, 5, 10, 1]])
    np.testing.assert_allclose(coco_boxes(np.array([[1.5, 2.0, 3.25, 9.0]], np.float32)), [[1.5, 2.0, 2.75, 8.0]])
    assert coco_boxes(np.zeros((0, 4))).shape == (0, 4)


def test_annotations_xywh_plus_one_and_rounding() -> None:
    anns = coco_annotations(5, BOXES, SCORES, np.array([2, 1], dtype=np.int64), first_id=10)
    first = anns[0]
    assert first["id"] == 10 and anns[1]["id"] == 11
    assert first["image_id"] == 5 and first["category_id"] == 2 and first["iscrowd"] == 0
    assert first["bbox"] == [10.12, 20.0, 41.38, 61.25]  # 50.5 - 10.123456 + 1 = 41.376544
    assert first["area"] == round(41.376544 * 61.25, 2)
    assert first["score"] == 0.87654
    assert anns[1]["bbox"] == [0.0, 0.0, 2.0, 3.0] and anns[1]["area"] == 6.0
    assert all(type(v) is float for v in first["bbox"])
    json.dumps(anns, allow_nan=False)
    assert coco_annotations(1, np.zeros((0, 4)), np.zeros(0), np.zeros(0), first_id=1) == []
    with pytest.raises(ValueError):
        coco_annotations(1, BOXES, SCORES[:1], np.array([1, 1]), first_id=1)


def test_pycocotools_round_trip_keeps_scores_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "out" / "labels.json"
    document = _document()
    write_json_atomic(path, document)
    gt = COCO(str(path))
    assert gt.getCatIds() == [1, 2, 3]
    assert gt.loadCats(3)[0]["description"] == "flat and round fish"
    assert gt.loadImgs(1)[0]["file_name"] == "a/b/猫 1.jpg"
    ann = gt.loadAnns(gt.getAnnIds(imgIds=[1], catIds=[3]))[0]
    assert ann["score"] == 0.87654 and ann["bbox"] == [10.12, 20.0, 41.38, 61.25]
    results = gt.loadRes(copy.deepcopy(document["annotations"]))  # loadRes edits its input
    assert sorted(a["score"] for a in results.dataset["annotations"]) == [0.5, 0.87654, 0.87654]
    assert load_coco(path) == document
    assert "猫" in path.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes


def test_write_json_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    write_json_atomic(path, {"v": 1})
    write_json_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    with pytest.raises(ValueError):
        write_json_atomic(path, {"v": float("nan")})
    assert json.loads(path.read_text()) == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_write_coco_atomic_streams_the_same_document(tmp_path: Path) -> None:
    document = _document()
    path = tmp_path / "stream.json"
    images = iter(document["images"])  # one-shot iterators: nothing is read twice
    annotations = iter(document["annotations"])
    write_coco_atomic(path, document["info"], images, annotations, document["categories"])
    assert json.loads(path.read_text(encoding="utf-8")) == document
    write_coco_atomic(path, {}, [], [], [])
    assert json.loads(path.read_text()) == coco_document([], [], [], {})


def test_write_coco_atomic_keeps_old_file_when_the_stream_fails(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    write_json_atomic(path, {"old": True})

    def failing():
        yield coco_image(1, "a.jpg", 1, 1)
        raise RuntimeError("crash mid-stream")

    with pytest.raises(RuntimeError):
        write_coco_atomic(path, {}, failing(), [], [])
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]


def test_write_json_atomic_respects_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "m.json", [])
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o640


_WRITER = """
import sys
from pathlib import Path
from glipcli.io.coco import write_json_atomic
path = Path(sys.argv[1])
i = 0
while True:
    write_json_atomic(path, {"i": i, "pad": [i] * 200_000})
    if i == 0:
        print("ready", flush=True)
    i += 1
"""


def test_write_json_atomic_never_partial_under_sigkill(tmp_path: Path) -> None:
    """Readers during the writes, and the file after a SIGKILL, only ever see whole documents."""
    path = tmp_path / "big.json"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        seen = set()
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            raw = path.read_bytes()
            assert raw.startswith(b'{"i": ') and raw.endswith(b"]}\n"), f"partial file: {len(raw)} bytes"
            seen.add(raw[:20])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert len(seen) > 1  # the reads really overlapped the writes
    data = json.loads(path.read_text())
    assert data["pad"] == [data["i"]] * 200_000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", r"not valid JSON \(.* line 1, column 2\)"),
        ("[]", "top level is not an object"),
        ('{"images": [], "categories": {}}', "'categories' missing or not a list"),
        ('{"images": [{"id": 1}], "categories": []}', r"images\[0\]: 'file_name' missing or not str"),
        (
            '{"images": [{"id": 1, "file_name": "a", "width": 1, "height": 1}], "categories": [],'
            ' "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]}',
            r"annotations\[0\]: unknown image_id 2",
        ),
        (
            '{"images": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}',
            r"categories\[1\]: duplicate id 1",
        ),
        (
            '{"images": [{"id": 1, "file_name": "a", "width": 1, "height": 1}],'
            ' "categories": [{"id": 1, "name": "a"}],'
            ' "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1]}]}',
            r"annotations\[0\]: bbox must be",
        ),
    ],
)
def test_load_coco_rejects_malformed(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_coco(path)


def test_load_coco_missing_file_and_optional_annotations(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_coco(tmp_path / "none.json")
    path = tmp_path / "test.json"
    path.write_text('{"images": [], "categories": [{"id": 1, "name": "a"}]}')
    assert load_coco(path)["annotations"] == []
