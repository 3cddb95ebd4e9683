"""glip export: bundles that reproduce the official reference through ONNX Runtime."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from glipcli.config import PostprocessConfig
from glipcli.errors import BundleError, ExportError
from glipcli.export import exporter, verify
from glipcli.export.exporter import export_bundle
from glipcli.postprocess import level_sizes, postprocess, rescale_boxes
from glipcli.runtime.bundle import load_bundle
from glipcli.runtime.sessions import make_session
from tests.conftest import needs_reference


def run_bundle(bundle_dir, case):
    """The three graphs on the reference input (text padded to 256 like the official run)."""
    bundle = load_bundle(bundle_dir)
    s = {g: make_session(bundle.graph_path(g)) for g in ("text", "backbone", "head")}
    (text,) = s["text"].run(None, {"input_ids": case["input_ids"], "attention_mask": case["attention_mask"]})
    levels = s["backbone"].run(None, {"images": case["image_tensor"]})
    feed = dict(zip(("p3", "p4", "p5", "p6", "p7"), levels))
    feed.update(text_features=text, text_mask=case["attention_mask"])
    boxes, ctr, logits = s["head"].run(None, feed)
    return bundle, boxes[0], ctr[0], logits[0]


def detections(bundle, boxes, ctr, logits, case):
    positive = {int(k): v for k, v in json.loads(str(case["positive_map_label_to_token"])).items()}
    hw = tuple(int(v) for v in case["image_size_hw"])
    levels = level_sizes(tuple(case["image_tensor"].shape[-2:]), bundle.config.anchors.strides)
    det = postprocess(boxes, ctr, logits, levels, positive, hw, PostprocessConfig())
    return det, rescale_boxes(det.boxes, hw, tuple(int(v) for v in case["original_size_hw"]))


def flat_reference(case, name):
    return np.concatenate([case[f"{name}_l{l}"].reshape(case[f"{name}_l{l}"].shape[1], -1).T for l in range(5)])


@needs_reference
def test_fp32_bundle_reproduces_official_outputs(reduced_bundle, case):
    bundle, boxes, ctr, logits = run_bundle(reduced_bundle, case)
    ref_ctr = np.concatenate([case[f"centerness_l{l}"].reshape(-1) for l in range(5)])
    ref_logits = np.concatenate([case[f"dot_product_logits_l{l}"][0] for l in range(5)])
    assert np.abs(ctr - ref_ctr).max() <= 1e-4
    assert (np.abs(logits - ref_logits) / np.maximum(1, np.abs(ref_logits))).max() <= 1e-4
    det, orig = detections(bundle, boxes, ctr, logits, case)
    np.testing.assert_array_equal(det.labels, case["det_labels"])
    assert np.abs(det.boxes - case["det_boxes"]).max() <= 1e-2
    assert np.abs(orig - case["det_boxes_orig"]).max() <= 1e-2
    assert np.abs(det.scores - case["det_scores"]).max() <= 1e-4


# Stated bounds over the 50 strongest official detections, each matched to the nearest detection
# of the same label: (median box px, 90th percentile box px, median score, max score).
DRIFT_BOUNDS = {"fp16": (0.1, 0.5, 0.005, 0.02), "int8": (2.0, 15.0, 0.05, 0.15)}


@needs_reference
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_drift_within_stated_bounds(reference, case, tmp_path, precision):
    model, source = exporter.build_from_checkpoint(str(reference / "config_reduced.yaml"), reference / "reduced.pth")
    out = export_bundle(model, tmp_path / precision, name="reduced", source=source, precision=precision)
    parity = out.manifest["parity"][precision]
    assert parity["verified"] and parity["ok"]
    for key, limit in parity["tolerance"].items():
        assert 0 < parity["max_error"][key] <= limit  # drift is real and recorded
    bundle, boxes, ctr, logits = run_bundle(out.path, case)
    det, _ = detections(bundle, boxes, ctr, logits, case)
    box_drift, score_drift = [], []
    for box, label, ref_score in zip(case["det_boxes"][:50], case["det_labels"][:50], case["det_scores"][:50]):
        same = det.labels == label
        dist = np.abs(det.boxes[same] - box).max(axis=1)
        i = int(dist.argmin())
        box_drift.append(dist[i])
        score_drift.append(abs(det.scores[same][i] - ref_score))
    median_px, p90_px, median_score, max_score = DRIFT_BOUNDS[precision]
    assert np.median(box_drift) <= median_px and np.percentile(box_drift, 90) <= p90_px
    assert np.median(score_drift) <= median_score and max(score_drift) <= max_score


def test_graphs_run_at_several_sizes(tiny_model, tiny_bundle):
    """No silent shape specialisation: every graph matches PyTorch at sizes it was not traced at."""
    import torch

    bundle = load_bundle(tiny_bundle)
    s = {g: make_session(bundle.graph_path(g)) for g in ("text", "backbone", "head")}
    ids = np.array([[101, 2417, 4418, 1012, 2630, 2732, 1012, 102]], dtype=np.int64)
    mask = np.ones_like(ids)
    (text,) = s["text"].run(None, {"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        text_ref = tiny_model.encode_text(torch.from_numpy(ids), torch.from_numpy(mask))
    np.testing.assert_allclose(text, text_ref.numpy(), atol=1e-4)
    rng = np.random.default_rng(0)
    for hw in [(64, 64), (96, 160), (224, 128), (32, 320)]:
        images = rng.normal(size=(2, 3, *hw)).astype(np.float32)
        levels = s["backbone"].run(None, {"images": images})
        feed = dict(zip(("p3", "p4", "p5", "p6", "p7"), levels))
        feed.update(text_features=np.repeat(text, 2, 0), text_mask=np.repeat(mask, 2, 0))
        outs = s["head"].run(None, feed)
        with torch.no_grad():
            ref = tiny_model.decode(
                tiny_model.head(
                    tiny_model.encode_image(torch.from_numpy(images)),
                    text_ref.repeat(2, 1, 1),
                    torch.from_numpy(mask).repeat(2, 1),
                )
            )
        assert outs[0].shape == (2, sum(h * w for h, w in level_sizes(hw, (8, 16, 32, 64, 128))), 4)
        for o, r in zip(outs, ref):
            np.testing.assert_allclose(o, r.numpy(), rtol=1e-3, atol=1e-3)


def test_failed_verification_leaves_no_bundle(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setitem(verify.TOLERANCE, "fp32", {"boxes": 0.0, "centerness": 0.0, "token_logits": 0.0})
    with pytest.raises(ExportError, match="do not reproduce"):
        export_bundle(tiny_model, tmp_path / "b", name="tiny", source={})
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_not_overwritten(tiny_bundle, tiny_model, tmp_path):
    target = tmp_path / "b"
    shutil.copytree(tiny_bundle, target)
    with pytest.raises(ExportError, match="already exists"):
        export_bundle(tiny_model, target, name="tiny", source={})
    load_bundle(target)


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda d: (d / "head.onnx").write_bytes((d / "head.onnx").read_bytes()[:-10] + b"x" * 10), "sha256"),
        (lambda d: (d / "backbone.onnx").unlink(), "missing"),
        (lambda d: _edit_manifest(d, format_version=99), "format version 99"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "not JSON"),
        (lambda d: (d / "manifest.json").unlink(), "manifest.json is missing"),
        (lambda d: _edit_manifest(d, onnxruntime_min_version="99.0"), "needs ONNX Runtime >= 99.0"),
    ],
)
def test_damaged_bundles_are_refused(tiny_bundle, tmp_path, damage, message):
    target = tmp_path / "b"
    shutil.copytree(tiny_bundle, target)
    damage(target)
    with pytest.raises(BundleError, match=message):
        load_bundle(target)


def _edit_manifest(folder, **changes):
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.slow
def test_glip_t_sized_random_checkpoint_exports(tmp_path):
    """A GLIP-T-sized model saved in the official checkpoint format exports and verifies."""
    import time

    import torch

    from glipcli.model.glip import build_model
    from glipcli.presets import preset

    model = build_model(preset("glip-t"))
    ckpt = tmp_path / "glip_t_random.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "iteration": 0}, ckpt)
    del model
    loaded, source = exporter.build_from_checkpoint("glip-t", ckpt)
    ckpt.unlink()  # 0.9 GB: keep the suite's peak disk use to one GLIP-T-sized file
    start = time.time()
    out = export_bundle(loaded, tmp_path / "glip-t", name="glip-t-random", source=source)
    size = sum(p.stat().st_size for p in out.path.iterdir())
    print(f"GLIP-T export: {time.time() - start:.0f} s, bundle {size / 1e6:.0f} MB")
    assert out.manifest["parity"]["fp32"]["ok"]
    assert size > 800e6  # the 231M parameters are really there


def test_rounded_weights_are_stored_compactly_and_exactly(tiny_model, tiny_bundle, tmp_path):
    """fp16-exact weights and int8-row word embeddings shrink the bundle without changing a bit."""
    import copy

    from glipcli.model.rounding import round_weights

    model = copy.deepcopy(tiny_model)
    round_weights(model)
    out = export_bundle(model, tmp_path / "compact", name="tiny", source={})
    size = {p.name: p.stat().st_size for p in out.path.glob("*.onnx")}
    full = {p.name: p.stat().st_size for p in tiny_bundle.glob("*.onnx")}
    assert size["text.onnx"] < 0.35 * full["text.onnx"]  # the embedding table dominates the text graph
    assert sum(size.values()) < 0.6 * sum(full.values())
    assert out.manifest["parity"]["fp32"]["max_error"]["token_logits"] < 1e-4


def test_int8_tables_are_scaled_after_use_and_compute_the_same_bits(tiny_model, tmp_path):
    """An int8 word-embedding table is gathered before it is scaled and a MatMul scales its output, so
    no run (nor the optimiser) expands the whole table; the text features do not change by a bit."""
    import copy

    import onnx
    import onnxruntime as ort

    from glipcli.export.compact import _scale_before_use, expand_graph
    from glipcli.model.rounding import round_weights

    model = copy.deepcopy(tiny_model)
    round_weights(model)
    text = export_bundle(model, tmp_path / "compact", name="tiny", source={}).path / "text.onnx"
    names = [n.name for n in onnx.load(str(text)).graph.node]
    assert any(n.endswith("word_embeddings.weight__rows_mul") for n in names)
    assert any(n.endswith("__scale_after") for n in names)  # the text encoder's Linear weights
    assert not any(n.endswith("word_embeddings.weight__scale_mul") for n in names)
    expand_graph(text, tmp_path / "plain.onnx")
    before = onnx.load(str(text))
    _scale_before_use(before.graph)
    onnx.save(before, str(tmp_path / "before.onnx"))
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for tokens in (3, 9, 40):
        ids = np.array([[101, *range(2000, 2000 + tokens - 2), 102]])
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        outputs = [
            ort.InferenceSession(str(p), plain).run(None, feed)[0]
            for p in (text, tmp_path / "before.onnx", tmp_path / "plain.onnx")
        ]
        np.testing.assert_array_equal(outputs[0], outputs[1])
        np.testing.assert_array_equal(outputs[0], outputs[2])


def test_compact_graph_expands_back_to_the_same_weights(tiny_model, tmp_path):
    """expand_graph undoes compact_graph exactly, so tools that need plain weights can read a bundle."""
    import copy

    import onnx
    from onnx import numpy_helper

    from glipcli.export.compact import expand_graph
    from glipcli.model.rounding import round_weights

    model = copy.deepcopy(tiny_model)
    round_weights(model)
    plain = export_bundle(model, tmp_path / "plain", name="tiny", source={})
    text = plain.path / "text.onnx"
    expand_graph(text, tmp_path / "expanded.onnx")
    expanded = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "expanded.onnx")).graph.initializer}
    assert not any(name.endswith(("__fp16", "__int8", "__scale")) for name in expanded)
    import onnxruntime as ort

    feed = {"input_ids": np.array([[101, 2417, 4418, 1012, 102]]), "attention_mask": np.ones((1, 5), dtype=np.int64)}
    outputs = [ort.InferenceSession(str(p)).run(None, feed)[0] for p in (text, tmp_path / "expanded.onnx")]
    np.testing.assert_array_equal(outputs[0], outputs[1])
