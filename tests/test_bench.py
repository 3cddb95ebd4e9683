"""bench/: the quick run end to end on the reduced model, and the pieces whose numbers it reports."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench import common, gpu, models, precision, run, vocab
from bench import ort_profile as profile
from glipcli.runtime.bundle import load_bundle
from tests.conftest import needs_reference

REPO = Path(__file__).resolve().parents[1]


@needs_reference
def test_quick_run_writes_the_expected_json(reduced_bundle, reference, tmp_path):
    """--quick on the reduced model (cache seeded with the session's reduced bundle: no export)."""
    cache = tmp_path / "cache"
    seeded = cache / "reduced-fp32"
    shutil.copytree(reduced_bundle, seeded)
    manifest = json.loads((seeded / "manifest.json").read_text())
    manifest["source"] = {
        "checkpoint": "bench model reduced",
        "sha256": models.weights_digest(models.build("reduced", reference)),
        "exporter": models.exporter_digest(),
    }
    (seeded / "manifest.json").write_text(json.dumps(manifest))
    argv = ["--quick", "--only", "ort_vs_torch,vocab", "--threads", "1", "--repeats", "1"]
    argv += ["--cache", str(cache), "--out", str(tmp_path / "out"), "--vocab-classes", "40", "--vocab-images", "1"]
    written = run.main(argv)

    assert set(written) == {"ort_vs_torch", "vocab"}
    assert sorted(p.name for p in cache.iterdir()) == ["reduced-fp32"]  # the seeded bundle was reused
    timing = json.loads(written["ort_vs_torch"].read_text())
    assert timing["machine"]["threads"] == 1 and timing["command"].startswith("python -m bench --quick")
    (model,) = timing["models"]
    (size,) = model["sizes"]
    assert size["input_hw"] == [320, 544]
    for contender in ("torch", "ort"):
        ms = size["timings"][contender]["ms"]
        assert set(ms) == {"text", "backbone", "head"} and all(v > 0 for v in ms.values())
    speedup = size["speedup_vs_torch"]["ort"]
    torch_ms, ort_ms = size["timings"]["torch"], size["timings"]["ort"]
    assert speedup["all_graphs"] == pytest.approx(torch_ms["total_ms"] / ort_ms["total_ms"], rel=1e-2)
    assert size["gemm_peak_gflops"] > 0
    for graph in ("text", "backbone", "head"):  # FLOPs of this input over the median time
        expected = size["gflop"][graph] / (ort_ms["ms"][graph] / 1e3)
        assert size["achieved_gflops"]["ort"][graph] == pytest.approx(expected, rel=0.05, abs=0.1)
    head = size["ort_profile"]["head"]
    assert sum(v["share"] for v in head["by_op"].values()) <= 1.0 + 1e-6
    assert head["by_op"]["MatMul"]["ms"] > 0

    chunks = json.loads(written["vocab"].read_text())
    assert chunks["classes"] == 40 and chunks["identical_detections"]
    runs = chunks["graph_runs_per_folder"]
    assert runs["chunked"] == {"text": chunks["chunks"], "backbone": 1, "head": chunks["chunks"]}
    assert runs["rerun"] == {"text": chunks["chunks"], "backbone": chunks["chunks"], "head": chunks["chunks"]}


def test_interleave_alternates_order_and_reports_medians():
    calls = []
    values = {"a": iter([9.0, 0.001, 0.003, 0.002]), "b": iter([9.0, 0.010, 0.030, 0.020])}

    def step(name):
        def run_once():
            calls.append(name)
            return {"x": next(values[name])}

        return run_once

    result = common.interleave({"a": step("a"), "b": step("b")}, repeats=3)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then forward, reverse, forward
    assert result["a"]["ms"]["x"] == 2.0 and result["b"]["total_ms"] == 20.0
    assert result["b"]["total_ms_min_max"] == [10.0, 30.0] and result["a"]["rounds"] == 3


def test_predicted_chunk_speedup_is_one_for_one_chunk_and_tends_to_the_bound():
    per_call = {"text": 0.01, "backbone": 0.3, "head": 0.5, "post": 0.05}
    assert vocab.predicted_speedup(per_call, chunks=1, images=1) == pytest.approx(1.0)
    assert vocab.speedup_bound(per_call) == pytest.approx((0.01 + 0.3 + 0.5 + 0.05) / 0.55)
    assert vocab.predicted_speedup(per_call, 10**6, 10**6) == pytest.approx(vocab.speedup_bound(per_call), rel=1e-5)
    assert vocab.predicted_speedup(per_call, 12, 4) < vocab.speedup_bound(per_call)


def test_vocabulary_has_distinct_names_of_vocabulary_words():
    words = ["cat", "dog", "red", "blue", "##ing", "a", "x1", "tree", "stone", "river", "house"]
    names = vocab.vocabulary(words, count=40, seed=3)
    assert len(names) == len(set(names)) == 40
    assert names == vocab.vocabulary(words, count=40, seed=3)
    allowed = {"cat", "dog", "red", "blue", "tree", "stone", "river", "house"}
    for name in names:
        parts = name.split()
        assert 1 <= len(parts) <= 3 and set(parts) <= allowed and len(set(parts)) == len(parts)


def _detections(boxes, labels, scores):
    import supervision as sv

    return sv.Detections(
        xyxy=np.asarray(boxes, dtype=np.float32),
        confidence=np.asarray(scores, dtype=np.float32),
        class_id=np.asarray(labels) - 1,
        data={"label_id": np.asarray(labels)},
    )


def test_drift_matches_the_nearest_detection_of_the_same_label():
    reference = _detections([[0, 0, 10, 10], [50, 50, 60, 70]], [1, 2], [0.9, 0.5])
    other = _detections([[0, 0, 10, 10], [1, 0, 10, 12], [52, 49, 60, 70]], [2, 1, 2], [0.3, 0.8, 0.45])
    d = precision.drift(reference, other)
    assert d["matched"] == 2
    assert d["box_px_max"] == pytest.approx(2.0) and d["box_px_median"] == pytest.approx(2.0)
    assert d["score_max"] == pytest.approx(0.1, abs=1e-6) and d["score_median"] == pytest.approx(0.075, abs=1e-6)
    missing = precision.drift(reference, _detections([[0, 0, 10, 11]], [1], [0.9]))
    assert missing["matched"] == 1 and missing["unmatched"] == 1 and missing["box_px_max"] == pytest.approx(1.0)
    assert precision.drift(reference, _detections([[0, 0, 1, 1]], [3], [0.9])) == {"matched": 0, "unmatched": 2}


def test_int8_twin_is_a_valid_quantised_bundle_and_is_reused(tiny_bundle, tmp_path):
    import onnx

    twin = precision.int8_twin(tiny_bundle, tmp_path / "tiny-int8")
    bundle = load_bundle(twin)  # hashes verified
    assert bundle.precision == "int8"
    ops = {n.op_type for n in onnx.load(str(bundle.graph_path("head"))).graph.node}
    assert "DynamicQuantizeLinear" in ops
    stamp = (twin / "head.onnx").stat().st_mtime_ns
    assert precision.int8_twin(tiny_bundle, tmp_path / "tiny-int8") == twin
    assert (twin / "head.onnx").stat().st_mtime_ns == stamp
    # same graphs, another way of scoring them: the twin follows the fp32 manifest
    source = shutil.copytree(tiny_bundle, tmp_path / "rescored")
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["config"]["postprocess"]["score_agg"] = "GEOMEAN"
    (source / "manifest.json").write_text(json.dumps(manifest))
    rescored = precision.int8_twin(source, tmp_path / "tiny-int8")
    assert load_bundle(rescored).config.postprocess.score_agg == "GEOMEAN"


def test_op_profile_attributes_kernel_time_to_ops_and_modules(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(1, 3, 64, 96)).astype(np.float32)
    result = profile.op_profile(bundle.graph_path("backbone"), {"images": images}, 1)
    assert result["nodes_run"] > 10 and result["kernel_ms"] > 0
    assert sum(v["ms"] for v in result["by_op"].values()) <= result["kernel_ms"] + 0.05
    assert any(k.startswith("backbone/body/layers/blocks") for k in result["by_module"])


def test_module_of_merges_layers_and_repeated_calls():
    assert profile.module_of("/rpn/head/dyhead_tower.3/b_attn/attn/MatMul_2") == "rpn/head/dyhead_tower/b_attn/attn"
    assert profile.module_of("/rpn/head/dyhead_tower.2/DyConv.2/conv_1/GridSample") == (
        "rpn/head/dyhead_tower/DyConv/conv"
    )
    assert profile.module_of("MatMul_5") == "MatMul"


def test_gpu_measure_and_parity_run_on_cpu(tiny_bundle, tmp_path):
    """The GPU script's measuring code, dry-run on CPU providers with the tiny bundle."""
    rng = np.random.default_rng(0)
    inputs = {
        "ids": np.array([[101, 2417, 4418, 1012, 102]], dtype=np.int64),
        "mask": np.ones((1, 5), dtype=np.int64),
        "images": rng.normal(size=(1, 3, 64, 96)).astype(np.float32),
    }
    timing = gpu.measure_ort(tiny_bundle, "cpu", inputs, repeats=2)
    assert timing["provider"] == "CPUExecutionProvider" and timing["rounds"] == 2
    assert gpu.images_per_s(timing) == pytest.approx(1000 / (timing["ms"]["backbone"] + timing["ms"]["head"]), rel=1e-3)
    twin = precision.int8_twin(tiny_bundle, tmp_path / "int8")
    drifted = gpu.output_parity(tiny_bundle, twin, "cpu", inputs)
    assert 0 < drifted["token_logits_max_rel"] < 10 and drifted["boxes_max_px"] > 0


def test_gpu_script_refuses_clearly_without_a_gpu(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == gpu.EXIT_NO_GPU
    assert "no NVIDIA GPU" in done.stderr and not list(tmp_path.iterdir())


def test_gpu_python_part_refuses_without_cuda(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert gpu.main(["--out", str(tmp_path)]) == gpu.EXIT_NO_GPU
    assert "sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "gpu.json").exists()


def test_nano_map_compares_fp32_and_int8_on_a_coco_folder(tiny_bundle, tmp_path):
    """The optional glip-nano accuracy step, run with the tiny bundle on a 3-image synthetic set."""
    from glipcli.train.synth import write_detection_set

    write_detection_set(tmp_path / "set", 3, seed=0, combos=[("red", "circle"), ("blue", "square")])
    twin = precision.int8_twin(tiny_bundle, tmp_path / "int8")
    result = precision.nano_map(tiny_bundle, twin, tmp_path / "set", threads=1, log=lambda _msg: None)
    fp32, int8 = result["metrics"]["fp32"], result["metrics"]["int8"]
    assert fp32["images"] == int8["images"] == 3
    assert set(result["map_change"]) == {"mAP", "mAP50", "mAP75"}
    assert result["map_change"]["mAP50"] == pytest.approx(int8["mAP50"] - fp32["mAP50"], abs=1e-4)


def test_label_throughput_ratio_is_the_median_of_back_to_back_rounds(tiny_bundle):
    from bench import label_throughput

    result = label_throughput.measure(tiny_bundle, images=3, repeats=3, threads=1)
    rounds = result["ratio_per_round"]
    assert len(rounds) == 3 and all(r > 0 for r in rounds)
    assert result["ratio"] == pytest.approx(sorted(rounds)[1], abs=1e-3)
    assert result["images"] == 3 and result["end_to_end_images_per_s"] > 0 and result["model_only_images_per_s"] > 0
