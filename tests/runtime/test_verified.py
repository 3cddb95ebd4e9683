"""Bundle files are checked against their sha256 on every load; a digest is remembered only while
the file is untouched, so a tampered file is refused even with its mtime put back."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from glipcli.errors import BundleError
from glipcli.runtime import bundle as bundle_module
from glipcli.runtime.bundle import VERIFY_ENV, load_bundle


@pytest.fixture
def settled(tiny_bundle, tmp_path, monkeypatch):
    """A copy of the tiny bundle, older than the racy window, with its own cache folder; and a
    counter of the files hashed."""
    monkeypatch.setenv("GLIPCLI_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(VERIFY_ENV, raising=False)
    copy = shutil.copytree(tiny_bundle, tmp_path / "tiny")
    time.sleep(bundle_module.RACY_NS / 1e9 + 0.1)
    hashed = []
    real = bundle_module.sha256_file
    monkeypatch.setattr(bundle_module, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    return copy, hashed


def test_an_untouched_bundle_is_hashed_once(settled):
    copy, hashed = settled
    load_bundle(copy)
    first = len(hashed)
    assert first >= 4  # three graphs and the tokenizer
    load_bundle(copy)
    assert len(hashed) == first


def test_a_tampered_graph_is_refused_with_its_mtime_restored(settled):
    copy, _ = settled
    load_bundle(copy)  # remembered
    graph = copy / "backbone.onnx"
    before = graph.stat()
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0xFF  # same size
    graph.write_bytes(bytes(data))
    os.utime(graph, ns=(before.st_atime_ns, before.st_mtime_ns))  # touch -d: mtime back, ctime moves on
    with pytest.raises(BundleError, match="backbone.onnx does not match its sha256"):
        load_bundle(copy)


def test_full_verification_hashes_every_time(settled, monkeypatch):
    copy, hashed = settled
    monkeypatch.setenv(VERIFY_ENV, "full")
    load_bundle(copy)
    first = len(hashed)
    load_bundle(copy)
    assert len(hashed) == 2 * first


def test_a_fresh_file_is_not_remembered(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("GLIPCLI_HOME", str(tmp_path / "home"))
    copy = shutil.copytree(tiny_bundle, tmp_path / "fresh")  # changed just now: inside the racy window
    load_bundle(copy)
    assert not (tmp_path / "home" / "verified.json").exists()


def test_an_unreadable_record_costs_only_a_hash(settled):
    copy, hashed = settled
    store = bundle_module.user_cache_dir() / "verified.json"
    store.parent.mkdir(parents=True)
    store.write_text("{not json")
    load_bundle(copy)
    assert len(hashed) >= 4 and store.read_text().startswith("{")
