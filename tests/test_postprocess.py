"""Post-processing reproduces the official ATSSPostProcessor + ml_nms (reference case and unit cases)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from glipcli.config import PostprocessConfig
from glipcli.errors import ConfigError
from glipcli.postprocess import (
    RawDetections,
    level_sizes,
    merge_chunks,
    nms,
    postprocess,
    rescale_boxes,
    select_candidates,
)
from glipcli.presets import load_config
from tests.conftest import needs_reference

BIG = 30.0  # a centerness logit whose float32 sigmoid is exactly 1


# ------------------------------------------------------------------ reference case


@pytest.fixture(scope="module")
def head_outputs(case):
    """The npz raw head outputs decoded and flattened as the runtime hands them over."""
    import torch

    from glipcli.model.anchors import decode_boxes

    boxes, centerness, logits, level_hw = [], [], [], []
    for level in range(5):
        deltas = case[f"bbox_regression_l{level}"][0]
        height, width = deltas.shape[1:]
        level_hw.append((height, width))
        flat = torch.from_numpy(deltas.reshape(4, -1).T.copy())
        boxes.append(decode_boxes(flat, torch.from_numpy(case[f"anchors_l{level}"])).numpy())
        centerness.append(case[f"centerness_l{level}"][0, 0].reshape(-1))
        logits.append(case[f"dot_product_logits_l{level}"][0])
    positive_map = {int(k): v for k, v in json.loads(str(case["positive_map_label_to_token"])).items()}
    assert positive_map == {1: [1, 2], 2: [4, 5, 6], 3: [8, 9]}
    return np.concatenate(boxes), np.concatenate(centerness), np.concatenate(logits), level_hw, positive_map


@pytest.fixture(scope="module")
def reduced_cfg(reference):
    return load_config(reference / "config_reduced.yaml").postprocess


@needs_reference
def test_level_sizes_match_reference(case):
    assert level_sizes(tuple(case["image_tensor"].shape[-2:]), (8, 16, 32, 64, 128)) == [
        tuple(hw) for hw in case["level_sizes_hw"]
    ]


@needs_reference
def test_final_detections_match_reference(case, head_outputs, reduced_cfg):
    boxes, centerness, logits, level_hw, positive_map = head_outputs
    result = postprocess(boxes, centerness, logits, level_hw, positive_map, (320, 426), reduced_cfg)
    assert (result.boxes.dtype, result.scores.dtype, result.labels.dtype) == (np.float32, np.float32, np.int64)
    assert len(result) == 100
    np.testing.assert_array_equal(result.labels, case["det_labels"])
    np.testing.assert_allclose(result.boxes, case["det_boxes"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(result.scores, case["det_scores"], rtol=0, atol=1e-5)
    original = rescale_boxes(result.boxes, (320, 426), (480, 640))
    np.testing.assert_allclose(original, case["det_boxes_orig"], rtol=0, atol=1e-3)


@needs_reference
def test_candidates_match_reference_as_a_set(case, head_outputs, reduced_cfg):
    boxes, centerness, logits, level_hw, positive_map = head_outputs
    ours = select_candidates(boxes, centerness, logits, level_hw, positive_map, (320, 426), reduced_cfg)
    ref_boxes, ref_scores, ref_labels = case["prenms_boxes"], case["prenms_scores"], case["prenms_labels"]
    same = (
        (ours.labels[:, None] == ref_labels[None])
        & (np.abs(ours.scores[:, None] - ref_scores[None]) <= 1e-5)
        & (np.abs(ours.boxes[:, None, :] - ref_boxes[None]).max(axis=-1) <= 1e-3)
    )
    # near-ties at the 0.05 threshold and the top-1000 cut (README) may swap a few candidates
    assert abs(len(ours) - len(ref_scores)) <= 3
    assert (~same.any(axis=1)).sum() <= 3 and (~same.any(axis=0)).sum() <= 3
    assert (same.sum(axis=1) <= 1).all()


# ------------------------------------------------------------------ level sizes


def test_level_sizes_glip_t_example():
    # GLIP_SPEC 5.3: padded 800 x 1088
    assert level_sizes((800, 1088), (8, 16, 32, 64, 128)) == [(100, 136), (50, 68), (25, 34), (13, 17), (7, 9)]


@pytest.mark.parametrize("padded_hw", [(32, 32), (96, 160), (224, 416), (800, 1344)])
def test_extra_levels_follow_stride2_convs(padded_hw):
    torch = pytest.importorskip("torch")
    p5 = torch.zeros(1, 1, padded_hw[0] // 32, padded_hw[1] // 32)
    p6 = torch.nn.functional.conv2d(p5, torch.zeros(1, 1, 3, 3), stride=2, padding=1)
    p7 = torch.nn.functional.conv2d(p6, torch.zeros(1, 1, 3, 3), stride=2, padding=1)
    sizes = level_sizes(padded_hw, (8, 16, 32, 64, 128))
    assert sizes[:3] == [(padded_hw[0] // s, padded_hw[1] // s) for s in (8, 16, 32)]
    assert sizes[3:] == [tuple(p6.shape[-2:]), tuple(p7.shape[-2:])]


# ------------------------------------------------------------------ NMS


def _naive_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, threshold: float) -> list[int]:
    """Textbook greedy NMS over all pairs, +1 areas, for cross-checking."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    suppressed: set[int] = set()
    kept = []
    for a, i in enumerate(order):
        if i in suppressed:
            continue
        kept.append(i)
        for j in order[a + 1 :]:
            if labels[j] != labels[i]:
                continue
            x1, y1 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            x2, y2 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(x2 - x1 + 1, 0) * max(y2 - y1 + 1, 0)
            area_i = (boxes[i, 2] - boxes[i, 0] + 1) * (boxes[i, 3] - boxes[i, 1] + 1)
            area_j = (boxes[j, 2] - boxes[j, 0] + 1) * (boxes[j, 3] - boxes[j, 1] + 1)
            if inter / (area_i + area_j - inter) > threshold:
                suppressed.add(j)
    return sorted(kept)


def test_nms_iou_uses_plus_one_and_strict_threshold():
    boxes = np.array([[0, 0, 9, 9], [0, 2.5, 9, 11.5], [0, 2.4, 9, 11.4]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    # +1 IoU of box 1 with box 0 is exactly 75 / 125 = 0.6 (without +1 it would be 63 / 99 > 0.6)
    assert nms(boxes[:2], scores[:2], np.array([1, 1]), 0.6).tolist() == [0, 1]
    # box 2 overlaps a bit more (76 / 124): suppressed
    assert nms(boxes[[0, 2]], scores[[0, 2]], np.array([1, 1]), 0.6).tolist() == [0]


def test_nms_is_class_aware_and_greedy():
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 9], [0, 3, 9, 12], [0, 6, 9, 15]], np.float32)
    scores = np.array([0.5, 0.9, 0.8, 0.7], np.float32)
    labels = np.array([2, 1, 1, 1])
    # box 0 has another label than box 1: kept; box 2 is suppressed by box 1 (IoU 70 / 130 > 0.5)
    kept = nms(boxes, scores, labels, 0.5)
    assert kept.tolist() == _naive_nms(boxes, scores, labels, 0.5)
    # greedy: 2 suppresses 3 only if 2 is kept; with box 1 suppressing 2, box 3 survives
    assert kept.tolist() == [0, 1, 3]
    assert nms(boxes, scores, np.array([1, 2, 3, 4]), 0.5).tolist() == [0, 1, 2, 3]


def test_nms_matches_naive_on_random_boxes():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, (300, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(1, 60, (300, 2)).astype(np.float32)], axis=1)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    labels = rng.integers(1, 4, 300)
    for threshold in (0.3, 0.6):
        assert nms(boxes, scores, labels, threshold).tolist() == _naive_nms(boxes, scores, labels, threshold)


def test_nms_of_nothing():
    kept = nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.6)
    assert kept.dtype == np.int64 and kept.shape == (0,)


# ------------------------------------------------------------------ postprocess on hand-made heads


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _separate_boxes(n: int) -> np.ndarray:
    """n disjoint 10x10 boxes on a row (no NMS interaction)."""
    x = np.arange(n, dtype=np.float32) * 20
    return np.stack([x, np.zeros(n), x + 9, np.full(n, 9)], axis=1).astype(np.float32)


def _run(probs, centerness, positive_map, cfg=None, boxes=None, resized_hw=(100, 1000), token_words=None):
    probs = np.asarray(probs, np.float64)
    logits = np.log(probs / (1 - probs)).astype(np.float32)
    n = len(logits)
    boxes = _separate_boxes(n) if boxes is None else boxes
    ctr = np.asarray(centerness, np.float32)
    cfg = cfg or PostprocessConfig()
    return postprocess(boxes, ctr, logits, [(1, n)], positive_map, resized_hw, cfg, token_words)


def test_threshold_applies_before_centerness_and_score_is_geometric_mean():
    # location 0: prob 0.06 passes 0.05 although centerness is tiny; location 1: 0.04 never passes
    result = _run([[0.06], [0.04]], [_logit(0.01), BIG], {1: [0]})
    assert result.labels.tolist() == [1]
    np.testing.assert_allclose(result.scores, [math.sqrt(0.06 * 0.01)], rtol=1e-5)
    np.testing.assert_array_equal(result.boxes, _separate_boxes(1))


def test_mean_counts_duplicate_tokens_and_max_aggregation():
    probs = [[0.2, 0.9]]
    mean = _run(probs, [BIG], {1: [0, 1], 2: [0, 0, 1]})
    by_label = dict(zip(mean.labels.tolist(), mean.scores.tolist(), strict=True))
    np.testing.assert_allclose(by_label[1], math.sqrt((0.2 + 0.9) / 2), rtol=1e-5)
    np.testing.assert_allclose(by_label[2], math.sqrt((0.2 + 0.2 + 0.9) / 3), rtol=1e-5)
    best = _run(probs, [BIG], {1: [0, 1]}, PostprocessConfig(score_agg="MAX"))
    np.testing.assert_allclose(best.scores, [math.sqrt(0.9)], rtol=1e-5)


def test_geometric_mean_aggregation_needs_every_token():
    cfg = PostprocessConfig(score_agg="GEOMEAN")
    # location 0 has both words, location 1 only one of them: the mean would rank them 0.55 vs 0.5
    probs = [[0.5, 0.6, 0.01], [0.99, 0.002, 0.01]]
    result = _run(probs, [BIG, BIG], {1: [0, 1], 2: [0, 0, 1]}, cfg)
    scores = {(int(lab), tuple(box)): s for lab, box, s in zip(result.labels, result.boxes.tolist(), result.scores)}
    boxes = [tuple(b) for b in _separate_boxes(2).tolist()]
    np.testing.assert_allclose(scores[(1, boxes[0])], (0.5 * 0.6) ** 0.25, rtol=1e-5)
    np.testing.assert_allclose(scores[(2, boxes[0])], (0.5 * 0.5 * 0.6) ** (1 / 6), rtol=1e-5)
    assert (1, boxes[1]) not in scores  # sqrt(0.99 * 0.002) < 0.05: below the threshold; the mean is 0.5
    # a word grounded nowhere scales every location alike: the order of the others is kept
    filler = _run([[0.01, 0.9, 0.8], [0.01, 0.5, 0.6]], [BIG, BIG], {1: [0, 1, 2]}, cfg)
    np.testing.assert_array_equal(filler.boxes, _separate_boxes(2))
    # a logit far below float32's sigmoid range gives no NaN; a label without tokens never scores
    logits = np.array([[-200.0, 8.0], [8.0, 8.0]], np.float32)
    ctr = np.full(2, BIG, np.float32)
    raw = postprocess(_separate_boxes(2), ctr, logits, [(1, 2)], {1: [0, 1], 2: []}, (100, 1000), cfg)
    assert raw.labels.tolist() == [1] and np.isfinite(raw.scores).all()
    np.testing.assert_array_equal(raw.boxes, _separate_boxes(2)[1:])


def test_geometric_mean_weighs_words_not_word_pieces():
    # [CLS] red he ##xa ##gon . [SEP]: "hexagon" is one word of three pieces
    probs = [[0.5, 0.8, 0.4, 0.4, 0.4, 0.5, 0.5]]
    words = np.array([-1, 0, 1, 1, 1, 2, -1])
    cfg = PostprocessConfig(score_agg="GEOMEAN")
    by_word = _run(probs, [BIG], {1: [1, 2, 3, 4]}, cfg, token_words=words)
    np.testing.assert_allclose(by_word.scores, [(0.8 * 0.4) ** 0.25], rtol=1e-5)
    by_piece = _run(probs, [BIG], {1: [1, 2, 3, 4]}, cfg)
    np.testing.assert_allclose(by_piece.scores, [(0.8 * 0.4**3) ** 0.125], rtol=1e-5)
    # special tokens in a label stand alone; the mean ignores words (GLIP's semantics)
    special = _run(probs, [BIG], {1: [0, 6, 1]}, cfg, token_words=words)
    np.testing.assert_allclose(special.scores, [(0.5 * 0.5 * 0.8) ** (1 / 6)], rtol=1e-5)
    mean = _run(probs, [BIG], {1: [1, 2, 3, 4]}, token_words=words)
    np.testing.assert_allclose(mean.scores, [math.sqrt((0.8 + 1.2) / 4)], rtol=1e-5)


def test_labels_are_positive_map_keys_and_empty_token_lists_never_score():
    result = _run([[0.3, 0.7]], [BIG], {7: [1], 3: [0], 5: []})
    assert result.labels.tolist() == [7, 3]
    np.testing.assert_allclose(result.scores, np.sqrt([0.7, 0.3]), rtol=1e-5)
    assert 5 not in _run([[0.3, 0.7]], [BIG], {5: []}, PostprocessConfig(score_agg="MAX")).labels


def test_pre_nms_top_n_is_per_level_by_score_times_centerness():
    probs = [[0.9], [0.8], [0.7], [0.6]]
    ctr = [_logit(0.1), BIG, BIG, BIG]  # ranks by product: 1 (0.8), 2 (0.7), 3 (0.6), 0 (0.09)
    cfg = PostprocessConfig(pre_nms_top_n=2)
    result = _run(probs, ctr, {1: [0]}, cfg)
    np.testing.assert_allclose(result.scores, np.sqrt([0.8, 0.7]), rtol=1e-5)
    np.testing.assert_array_equal(result.boxes, _separate_boxes(4)[[1, 2]])
    # two levels of two locations: each level keeps its own best candidate
    logits = np.log(np.asarray(probs) / (1 - np.asarray(probs))).astype(np.float32)
    ctr32 = np.asarray(ctr, np.float32)
    cfg = PostprocessConfig(pre_nms_top_n=1)
    two = postprocess(_separate_boxes(4), ctr32, logits, [(1, 2), (2, 1)], {1: [0]}, (100, 1000), cfg)
    np.testing.assert_allclose(two.scores, np.sqrt([0.8, 0.7]), rtol=1e-5)


def test_ties_at_the_detection_cut_are_kept():
    probs = [[0.9], [0.5], [0.5], [0.3]]
    result = _run(probs, [BIG] * 4, {1: [0]}, PostprocessConfig(detections_per_img=2))
    np.testing.assert_allclose(result.scores, np.sqrt([0.9, 0.5, 0.5]), rtol=1e-5)
    assert len(_run(probs, [BIG] * 4, {1: [0]}, PostprocessConfig(detections_per_img=0))) == 4
    assert len(_run(probs, [BIG] * 4, {1: [0]}, PostprocessConfig(detections_per_img=1))) == 1


def test_boxes_are_clipped_to_the_unpadded_resized_image():
    boxes = np.array([[-5, -7, 30, 40], [50, 10, 90, 70]], np.float32)
    result = _run([[0.9], [0.8]], [BIG, BIG], {1: [0]}, boxes=boxes, resized_hw=(32, 60))
    np.testing.assert_array_equal(result.boxes, [[0, 0, 30, 31], [50, 10, 59, 31]])


def test_nms_inside_postprocess_only_within_a_label():
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 9]], np.float32)
    same = _run([[0.9], [0.8]], [BIG, BIG], {1: [0]}, boxes=boxes)
    assert same.scores.tolist() == pytest.approx([math.sqrt(0.9)], rel=1e-5)
    multi = _run([[0.9, 0.8]], [BIG], {1: [0], 2: [1]}, boxes=boxes[:1])
    assert multi.labels.tolist() == [1, 2]


def test_no_candidates_gives_typed_empty_arrays():
    for positive_map in ({1: [0]}, {}):
        result = _run([[0.01], [0.02]], [BIG, BIG], positive_map)
        assert result.boxes.shape == (0, 4) and result.scores.shape == (0,) and result.labels.shape == (0,)
        assert (result.boxes.dtype, result.scores.dtype, result.labels.dtype) == (np.float32, np.float32, np.int64)


def test_unknown_score_aggregation_is_a_config_error():
    with pytest.raises(ConfigError, match="POWER"):
        _run([[0.9]], [BIG], {1: [0]}, PostprocessConfig(score_agg="POWER"))


def test_glip_t_sized_input_is_fast():
    # 18,134 anchors x 256 tokens x 80 labels: a Python loop over pairs would take minutes
    rng = np.random.default_rng(1)
    level_hw = level_sizes((800, 1088), (8, 16, 32, 64, 128))
    n = sum(h * w for h, w in level_hw)
    corners = rng.uniform(0, 1000, (n, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(5, 300, (n, 2)).astype(np.float32)], axis=1)
    logits = rng.normal(-2, 1.5, (n, 256)).astype(np.float32)
    positive_map = {k + 1: [3 * k + 1, 3 * k + 2] for k in range(80)}
    start = time.perf_counter()
    result = postprocess(
        boxes, rng.normal(size=n).astype(np.float32), logits, level_hw, positive_map, (800, 1066), PostprocessConfig()
    )
    assert time.perf_counter() - start < 10
    assert len(result) == 100 and np.all(np.diff(result.scores) <= 0)


# ------------------------------------------------------------------ rescale and chunks


def test_rescale_boxes_scales_x_and_y_separately():
    boxes = np.array([[0, 0, 425, 319], [10, 20, 30, 40]], np.float32)
    out = rescale_boxes(boxes, (320, 426), (480, 640))
    expected = boxes * np.array([640 / 426, 1.5, 640 / 426, 1.5])
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32


def _dets(scores, labels, boxes=None) -> RawDetections:
    n = len(scores)
    boxes = np.zeros((n, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32)
    return RawDetections(boxes, np.asarray(scores, np.float32), np.asarray(labels, np.int64))


def test_merge_chunks_is_a_sorted_union_without_cross_chunk_nms():
    a = _dets([0.9, 0.4], [1, 2], [[0, 0, 9, 9], [5, 5, 20, 20]])
    b = _dets([0.7, 0.5], [41, 42], [[0, 0, 9, 9], [5, 5, 20, 20]])  # same boxes, other labels
    merged = merge_chunks([a, b], 0)
    assert merged.scores.tolist() == pytest.approx([0.9, 0.7, 0.5, 0.4])
    assert merged.labels.tolist() == [1, 41, 42, 2]
    np.testing.assert_array_equal(merged.boxes, [[0, 0, 9, 9], [0, 0, 9, 9], [5, 5, 20, 20], [5, 5, 20, 20]])
    cut = merge_chunks([a, b], 3)
    assert cut.labels.tolist() == [1, 41, 42]


def test_merge_chunks_of_nothing():
    for parts in ([], [_dets([], [])]):
        merged = merge_chunks(parts, 100)
        assert merged.boxes.shape == (0, 4) and merged.labels.dtype == np.int64 and merged.scores.dtype == np.float32
