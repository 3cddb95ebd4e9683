"""COCO detection data as grounding samples: prompts as at inference, bad data caught up front."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from glipcli.errors import DataError
from glipcli.prompt import encode_prompt, prompt_from_names
from glipcli.tokenizer import build_tokenizer
from glipcli.train.coco_data import load_detection_data

TOKENIZER = build_tokenizer()


def write_coco(root, images, annotations, categories, name="gt.json"):
    """``images``: {file: (width, height)} written as PNGs under root/images; returns the json path."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (file, (w, h)) in enumerate(images.items(), start=1):
        pixels = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / file)
        entries.append({"id": i, "file_name": file, "width": w, "height": h})
    anns = [{"id": k, "iscrowd": 0, **a} for k, a in enumerate(annotations, start=1)]
    cats = [{"id": cid, "name": name} for cid, name in categories.items()]
    path = root / name
    path.write_text(json.dumps({"images": entries, "annotations": anns, "categories": cats}))
    return path


def ann(image_id, category_id, bbox, **extra):
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


def load(path, root, **kwargs):
    return load_detection_data(path, root / "images", TOKENIZER, 256, workers=1, **kwargs)


@pytest.fixture
def two_images(tmp_path):
    images = {"a.png": (64, 48), "b.png": (40, 40)}
    annotations = [ann(1, 7, [2, 3, 10, 20]), ann(1, 3, [30, 5, 4, 4]), ann(2, 7, [0, 0, 40, 40])]
    return write_coco(tmp_path, images, annotations, {7: "red_circle", 3: "blue star (shape)"}), tmp_path


def test_samples_use_the_evaluation_prompt_and_pixel_edge_boxes(two_images):
    path, root = two_images
    data = load(path, root)
    # category names in id order, cleaned as glip eval cleans them
    assert data.prompt.names == ["blue star", "red circle"]
    expected = encode_prompt(prompt_from_names(["blue star (shape)", "red_circle"]), TOKENIZER, 256)
    assert data.captions == [c.caption for c in expected] == ["blue star. red circle."]
    sample = data.sample(0, 0)
    np.testing.assert_array_equal(sample.image, np.asarray(Image.open(root / "images" / "a.png")))
    np.testing.assert_allclose(sample.boxes, [[2, 3, 12, 23], [30, 5, 34, 9]])
    words = [[sample.caption[s:e] for s, e in spans] for spans in sample.box_spans]
    assert words == [["red circle"], ["blue star"]]
    assert data.boxes == 3 and not data.issues


def test_an_epoch_visits_every_image_once_in_a_seeded_order(two_images):
    path, root = two_images
    data = load(path, root, seed=3).with_length(6)
    firsts = [tuple(data[i].boxes.shape) for i in range(2)]
    assert sorted(firsts) == [(1, 4), (2, 4)]
    again = load(path, root, seed=3).with_length(6)
    assert all(np.array_equal(data[i].boxes, again[i].boxes) for i in range(6))
    with pytest.raises(IndexError):
        data[6]


def test_long_prompts_are_chunked_and_each_chunk_holds_its_own_boxes(tmp_path):
    names = {i: f"thing number {i}" for i in range(1, 7)}
    annotations = [ann(1, i, [i, i, 5, 5]) for i in names]
    path = write_coco(tmp_path, {"a.png": (32, 32)}, annotations, names)
    data = load_detection_data(path, tmp_path / "images", TOKENIZER, 12, workers=1)
    assert len(data.chunks) > 1
    seen = []
    for c, chunk in enumerate(data.chunks):
        sample = data.sample(0, c)
        assert sample.caption == chunk.caption
        for box, spans in zip(sample.boxes, sample.box_spans, strict=True):
            ((start, end),) = spans
            seen.append((sample.caption[start:end], int(box[0])))
    assert sorted(seen) == sorted((name, i) for i, name in names.items())


def test_boxes_past_the_edge_are_clipped_and_outside_ones_dropped_with_a_list(tmp_path):
    annotations = [
        ann(1, 1, [50, 40, 30, 30]),  # reaches past the right and bottom edges
        ann(1, 1, [70, 10, 5, 5]),  # entirely right of the image
        ann(1, 1, [5, 5, 0.5, 10]),  # less than a pixel wide
        ann(1, 1, [5, 5, 10, 10], iscrowd=1),
        ann(1, 1, [1, 1, 8, 8]),
    ]
    path = write_coco(tmp_path, {"a.png": (64, 48)}, annotations, {1: "cat"})
    data = load(path, tmp_path)
    np.testing.assert_allclose(data.images[0].boxes, [[50, 40, 64, 48], [1, 1, 9, 9]])
    whats = {issue.annotation_id: issue.what for issue in data.issues}
    assert set(whats) == {1, 2, 3, 4}
    assert "clipped" in whats[1] and "outside the image" in whats[2] and "pixel" in whats[3] and "crowd" in whats[4]


def _outside(doc):
    for a in doc["annotations"]:
        a["bbox"] = [90, 90, 5, 5]


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda root, doc: (root / "images" / "b.png").unlink(), "b.png"),
        (lambda root, doc: (root / "images" / "b.png").write_bytes(b"not a png"), "b.png"),
        (lambda root, doc: doc["images"][0].update(width=65), "annotated as 65x48"),
        (lambda root, doc: doc["annotations"][0].update(category_id=99), "unknown category_id 99"),
        (lambda root, doc: doc.update(annotations=[]), "annotation list is empty"),
        (lambda root, doc: doc.update(categories=[], annotations=[]), "no categories"),
        (lambda root, doc: _outside(doc), "no usable box"),
    ],
    ids=["missing", "unreadable", "resized", "unknown-category", "no-annotations", "no-categories", "all-outside"],
)
def test_unusable_data_is_one_clear_error(tmp_path, break_it, message):
    annotations = [ann(1, 1, [0, 0, 4, 4]), ann(2, 1, [0, 0, 4, 4])]
    path = write_coco(tmp_path, {"a.png": (64, 48), "b.png": (40, 40)}, annotations, {1: "cat"})
    doc = json.loads(path.read_text())
    break_it(tmp_path, doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=message) as info:
        load(path, tmp_path)
    assert "\n" not in str(info.value)


def test_pseudo_labels_join_above_the_threshold(tmp_path):
    gold = write_coco(tmp_path, {"a.png": (32, 32)}, [ann(1, 1, [0, 0, 8, 8])], {1: "cat", 2: "dog"})
    teacher_dir = tmp_path / "teacher"
    images = {"u1.png": (32, 32), "u2.png": (32, 32)}
    scored = [
        ann(1, 5, [1, 1, 9, 9], score=0.9),
        ann(1, 5, [2, 2, 9, 9], score=0.2),
        ann(2, 6, [3, 3, 9, 9], score=0.1),  # u2 has nothing confident: left out
    ]
    pseudo = write_coco(teacher_dir, images, scored, {5: "Dog", 6: "cat"})
    data = load(gold, tmp_path, pseudo=pseudo, pseudo_images=teacher_dir / "images", pseudo_threshold=0.5)
    assert [image.path.name for image in data.images] == ["a.png", "u1.png"]
    assert [image.pseudo for image in data.images] == [False, True]
    np.testing.assert_array_equal(data.images[1].labels, [2])  # "Dog" is the gold "dog"
    np.testing.assert_allclose(data.images[1].boxes, [[1, 1, 10, 10]])


def test_pseudo_labels_keep_one_class_per_object(tmp_path):
    gold = write_coco(tmp_path, {"a.png": (32, 32)}, [ann(1, 1, [0, 0, 8, 8])], {1: "cat", 2: "dog"})
    scored = [
        ann(1, 1, [1, 1, 10, 10], score=0.7),
        ann(1, 2, [2, 1, 10, 10], score=0.9),  # the same object, named "dog" more confidently
        ann(1, 1, [20, 20, 8, 8], score=0.6),
    ]
    pseudo = write_coco(tmp_path / "t", {"u.png": (32, 32)}, scored, {1: "cat", 2: "dog"})
    folder = tmp_path / "t" / "images"
    one = load(gold, tmp_path, pseudo=pseudo, pseudo_images=folder)
    np.testing.assert_array_equal(one.images[1].labels, [2, 1])
    every = load(gold, tmp_path, pseudo=pseudo, pseudo_images=folder, pseudo_nms=None)
    assert len(every.images[1].labels) == 3


def test_pseudo_labels_must_name_gold_categories_and_carry_scores(tmp_path):
    gold = write_coco(tmp_path, {"a.png": (32, 32)}, [ann(1, 1, [0, 0, 8, 8])], {1: "cat"})
    other = write_coco(tmp_path, {"a.png": (32, 32)}, [ann(1, 1, [0, 0, 8, 8], score=0.9)], {1: "bird"}, "p1.json")
    with pytest.raises(DataError, match="'bird' is not a category"):
        load(gold, tmp_path, pseudo=other)
    unscored = write_coco(tmp_path, {"a.png": (32, 32)}, [ann(1, 1, [0, 0, 8, 8])], {1: "cat"}, "p2.json")
    with pytest.raises(DataError, match="need a score"):
        load(gold, tmp_path, pseudo=unscored)


def test_shots_keep_k_images_per_category(tmp_path):
    images = {f"{i}.png": (16, 16) for i in range(8)}
    annotations = [ann(i + 1, 1 + (i % 2), [0, 0, 4, 4]) for i in range(8)]
    path = write_coco(tmp_path, images, annotations, {1: "cat", 2: "dog"})
    data = load(path, tmp_path, shots=2, seed=1)
    labels = sorted(int(image.labels[0]) for image in data.images)
    assert labels == [1, 1, 2, 2]
    assert {im.path.name for im in data.images} != {im.path.name for im in load(path, tmp_path, shots=2, seed=2).images}


def test_pseudo_label_categories_are_matched_as_glip_eval_matches_prompts(tmp_path):
    names = {1: "bow_(weapon)", 2: "bow_(decorative_ribbon)"}
    gold = write_coco(tmp_path, {"a.png": (32, 32)}, [ann(1, 1, [0, 0, 8, 8])], names)
    scored = [ann(1, 7, [1, 1, 9, 9], score=0.9)]
    exact = write_coco(tmp_path / "t1", {"u.png": (32, 32)}, scored, {7: "Bow_(Decorative_Ribbon)"})
    data = load(gold, tmp_path, pseudo=exact, pseudo_images=tmp_path / "t1" / "images")
    np.testing.assert_array_equal(data.images[1].labels, [2])
    vague = write_coco(tmp_path / "t2", {"u.png": (32, 32)}, scored, {7: "bow"})  # names both: refused
    with pytest.raises(DataError, match="pseudo-label category 'bow' names 2 categories"):
        load(gold, tmp_path, pseudo=vague, pseudo_images=tmp_path / "t2" / "images")
