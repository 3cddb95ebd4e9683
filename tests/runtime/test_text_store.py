"""Text features on disk: a prompt seen before runs no text encoder and loads no text session, with
detections identical to the bit; damaged files are recomputed; the folder stays bounded."""

from __future__ import annotations

import os

import numpy as np
import pytest

from glipcli.api import Detector
from glipcli.runtime.text_store import TEXT_CACHE_ENV, TextFeatureStore


@pytest.fixture
def store_on(tmp_path, monkeypatch):
    monkeypatch.setenv(TEXT_CACHE_ENV, "1")
    monkeypatch.setenv("GLIPCLI_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "text"


def detect(detector: Detector, prompt: str):
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    ((_, found),) = detector.detect_arrays([image], prompt, threshold=0.0, all_labels=True)
    return found


def test_second_process_skips_the_text_session_with_identical_output(tiny_bundle, store_on):
    first = Detector.load(tiny_bundle, device="cpu")
    expected = detect(first, "zebra. giraffe")
    assert first.engine.runs["text"] == 1
    assert len(list(store_on.glob("*/*.npy"))) == 1

    second = Detector.load(tiny_bundle, device="cpu")  # a new run: nothing in memory
    got = detect(second, "zebra. giraffe")
    assert second.engine.runs["text"] == 0
    assert "text" not in second.engine._sessions  # never loaded
    np.testing.assert_array_equal(got.xyxy, expected.xyxy)
    np.testing.assert_array_equal(got.confidence, expected.confidence)

    detect(second, "a new prompt")  # not stored: the session loads now
    assert second.engine.runs["text"] == 1 and "text" in second.engine._sessions


def test_switched_off_by_the_environment(tiny_bundle, store_on, monkeypatch):
    monkeypatch.setenv(TEXT_CACHE_ENV, "0")
    for _ in range(2):
        detector = Detector.load(tiny_bundle, device="cpu")
        detect(detector, "zebra")
        assert detector.engine.runs["text"] == 1
    assert not store_on.exists()


def test_damaged_or_mismatched_files_are_dropped(tmp_path):
    store = TextFeatureStore(tmp_path)
    features = np.arange(12, dtype=np.float32).reshape(4, 3)
    store.put("k", features)
    np.testing.assert_array_equal(store.get("k", 4), features)
    assert store.get("k", 5) is None and not (tmp_path / "k.npy").exists()  # other token count
    store.put("k", features)
    (tmp_path / "k.npy").write_bytes((tmp_path / "k.npy").read_bytes()[:40])  # truncated
    assert store.get("k", 4) is None and not (tmp_path / "k.npy").exists()
    assert store.get("absent", 4) is None


def test_folder_is_pruned_least_recently_used_first(tmp_path):
    row = np.zeros((64, 64), dtype=np.float32)  # 16 KiB + header each
    store = TextFeatureStore(tmp_path, max_bytes=3 * row.nbytes + 1000)
    for i, key in enumerate("abc"):
        store.put(key, row)
        ns = (1_000 + i) * 10**9
        os.utime(tmp_path / f"{key}.npy", ns=(ns, ns))
    assert store.get("a", 64) is not None  # used: now the most recent
    store.put("d", row)
    assert sorted(p.stem for p in tmp_path.glob("*.npy")) == ["a", "c", "d"]


def test_an_unwritable_cache_does_not_stop_detection(tiny_bundle, store_on):
    store_on.parent.mkdir(parents=True)
    store_on.write_text("a file where the folder should be")
    detector = Detector.load(tiny_bundle, device="cpu")
    found = detect(detector, "zebra")
    assert detector.engine.runs["text"] == 1 and len(found.xyxy) > 0
