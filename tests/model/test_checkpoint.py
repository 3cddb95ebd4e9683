"""Checkpoint loading: official layouts accepted, anything unsafe or ill-fitting refused clearly."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from glipcli.errors import CheckpointError
from glipcli.model.checkpoint import load_checkpoint, read_state_dict, stored_config
from glipcli.model.glip import build_model
from tests.conftest import tiny_config


@pytest.fixture()
def tiny_state(tiny_model):
    return {k: v.clone() for k, v in tiny_model.state_dict().items()}


def fresh():
    return build_model(tiny_config())


def same_weights(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("prefix", ["", "module."])
@pytest.mark.parametrize("wrapped", [True, False])
def test_official_layouts_load(tmp_path, tiny_state, prefix, wrapped):
    state = {prefix + k: v for k, v in tiny_state.items()}
    state[prefix + "language_backbone.body.model.embeddings.position_ids"] = torch.arange(512)[None]
    obj = (
        {
            "model": state,
            "optimizer": {"state": {}},
            "scheduler": {},
            "iteration": 7,
            "model_ema": {k: v * 0 for k, v in state.items()},
        }
        if wrapped
        else state
    )
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    model = fresh()
    sha = load_checkpoint(model, path)
    assert len(sha) == 64
    assert same_weights(tiny_state, model.state_dict())  # "model" is used, never "model_ema"


def test_safetensors(tmp_path, tiny_state):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_state.items()}, str(path))
    model = fresh()
    load_checkpoint(model, path)
    assert same_weights(tiny_state, model.state_dict())


def test_fp16_weights_are_cast_to_fp32(tmp_path, tiny_state):
    path = tmp_path / "half.pth"
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in tiny_state.items()}, path)
    state = read_state_dict(path)
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_missing_and_unexpected_keys_are_named(tmp_path, tiny_state):
    state = dict(tiny_state)
    del state["rpn.head.bias0"]
    state["rpn.head.extra_weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"1 missing: rpn\.head\.bias0.*1 unexpected: rpn\.head\.extra_weight"):
        load_checkpoint(fresh(), path)


def test_wrong_architecture(tmp_path, reference):
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_checkpoint(fresh(), reference / "reduced.pth")


def test_truncated_file(tmp_path, tiny_state):
    path = tmp_path / "full.pth"
    torch.save({"model": tiny_state}, path)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(fresh(), cut)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch exploited-by-checkpoint",))


def test_pickle_with_code_is_refused_and_never_run(tmp_path, tiny_state, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"model": tiny_state, "payload": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(fresh(), path)
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(CheckpointError, match="refused|corrupt"):
        load_checkpoint(fresh(), legacy)
    assert not (tmp_path / "exploited-by-checkpoint").exists()


@pytest.mark.parametrize(
    "content,message",
    [(b"", "empty"), (b"this is not a checkpoint", "corrupt|not a"), (None, "not found")],
)
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "x.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(fresh(), path)


def test_non_tensor_entries_are_refused(tmp_path, tiny_state):
    path = tmp_path / "odd.pth"
    torch.save({"model": {**tiny_state, "note": "hello"}}, path)
    with pytest.raises(CheckpointError, match="'note' is not a tensor"):
        load_checkpoint(fresh(), path)


@pytest.mark.slow
def test_glip_t_sized_checkpoint_builds_loads_and_runs(tmp_path):
    """GLIP-T size: a random checkpoint in the official format loads and runs one forward on CPU."""
    from glipcli.presets import preset

    model = build_model(preset("glip-t"))
    path = tmp_path / "glip_t.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    del model
    model = build_model(preset("glip-t"))
    load_checkpoint(model, path)
    ids = torch.tensor([[101, 2417, 4418, 1012, 102]])
    with torch.no_grad():
        boxes, ctr, logits = model(torch.randn(1, 3, 256, 320), ids, torch.ones_like(ids))
    n = sum(h * w for h, w in [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)])
    assert boxes.shape == (1, n, 4) and ctr.shape == (1, n) and logits.shape == (1, n, 5)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("zipped", [True, False])
def test_the_stored_config_is_read_from_both_file_formats(tmp_path, tiny_state, zipped, monkeypatch):
    path = tmp_path / "trained.pth"
    torch.save({"model": tiny_state, "config": {"name": "mine"}}, path, _use_new_zipfile_serialization=zipped)
    assert stored_config(path) == {"name": "mine"}
    monkeypatch.chdir(tmp_path)
    torch.save({"model": tiny_state, "config": _Exploit()}, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(CheckpointError, match="refused"):
        stored_config(path)
    assert not (tmp_path / "exploited-by-checkpoint").exists()
