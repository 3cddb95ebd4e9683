"""The trainer: deterministic given a seed, resumable exactly, and clear about bad setups."""

from __future__ import annotations

import pytest
import torch

from glipcli.config import PostprocessConfig
from glipcli.errors import ConfigError, DataError
from glipcli.tokenizer import build_tokenizer
from glipcli.train.synth import SyntheticGrounding
from glipcli.train.trainer import LAST, TrainConfig, Trainer, initial_model
from tests.conftest import tiny_config

SETTINGS = dict(batch_size=2, lr=1e-3, warmup=2, scales=(96,), max_size=128, workers=0, checkpoint_every=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def run(out, steps, seed=0, resume=False, **changes):
    model = initial_model(tiny_config(), seed)
    cfg = TrainConfig(steps=steps, seed=seed, **{**SETTINGS, **changes})
    trainer = Trainer(model, SyntheticGrounding(seed=seed, length=1000), build_tokenizer(), cfg, out)
    if resume:
        assert trainer.resume()
    losses = []
    trainer.fit(lambda step, m: losses.append(m["loss"]))
    return model.state_dict(), losses


def test_same_seed_same_weights(tmp_path):
    a, la = run(tmp_path / "a", 3)
    b, lb = run(tmp_path / "b", 3)
    assert la == lb
    assert all(torch.equal(a[k], b[k]) for k in a)
    c, _ = run(tmp_path / "c", 3, seed=1)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    full, losses = run(tmp_path / "full", 4)
    run(tmp_path / "part", 2)  # checkpoints at step 2
    resumed, tail = run(tmp_path / "part", 4, resume=True)
    assert tail == losses[2:]
    assert all(torch.allclose(full[k].float(), resumed[k].float()) for k in full)


def test_resume_refuses_other_settings(tmp_path):
    run(tmp_path / "r", 2)
    model = initial_model(tiny_config(), 0)
    cfg = TrainConfig(steps=4, **{**SETTINGS, "lr": 5e-4})
    trainer = Trainer(model, SyntheticGrounding(seed=0, length=10), build_tokenizer(), cfg, tmp_path / "r")
    with pytest.raises(ConfigError, match="lr"):
        trainer.resume()


def test_resume_accepts_other_post_processing_but_not_another_model(tmp_path):
    run(tmp_path / "r", 2)
    cfg = TrainConfig(steps=4, **SETTINGS)
    source = SyntheticGrounding(seed=0, length=10)
    scored = tiny_config().replace(postprocess=PostprocessConfig(score_agg="GEOMEAN"))
    assert Trainer(initial_model(scored, 0), source, build_tokenizer(), cfg, tmp_path / "r").resume()
    other = tiny_config().replace(postprocess=PostprocessConfig(score_agg="GEOMEAN"), separation_tokens=" ")
    with pytest.raises(ConfigError, match="another model config"):
        Trainer(initial_model(other, 0), source, build_tokenizer(), cfg, tmp_path / "r").resume()


def test_broken_checkpoint_is_reported(tmp_path):
    out = tmp_path / "broken"
    out.mkdir()
    (out / LAST).write_bytes(b"not a checkpoint")
    model = initial_model(tiny_config(), 0)
    trainer = Trainer(model, SyntheticGrounding(seed=0, length=10), build_tokenizer(), TrainConfig(**SETTINGS), out)
    with pytest.raises(DataError, match="cannot resume"):
        trainer.resume()


@pytest.mark.parametrize(
    "bad", [dict(steps=0), dict(lr=0.0), dict(scales=()), dict(trainable="everything"), dict(precision="fp16")]
)
def test_bad_training_config(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**{**SETTINGS, **bad})


def test_empty_training_set(tmp_path):
    class Empty:
        def __len__(self):
            return 0

        def __getitem__(self, i):
            raise IndexError(i)

    with pytest.raises(DataError, match="empty"):
        Trainer(initial_model(tiny_config(), 0), Empty(), build_tokenizer(), TrainConfig(**SETTINGS), tmp_path)


def test_frozen_token_projection_stays_at_its_init(tmp_path):
    """Synthetic pre-training keeps the text side of the dot product fixed; the rest still learns."""
    from glipcli.train.trainer import parameter_groups

    model = initial_model(tiny_config(), 0)
    groups = parameter_groups(model, TrainConfig(freeze_token_projection=True))
    trained = {id(p) for g in groups for p in g["params"]}
    projection = model.rpn.head.dot_product_projection_text.weight
    assert id(projection) not in trained and not projection.requires_grad
    assert id(model.rpn.head.bias_lang) in trained
    weights, _ = run(tmp_path, 2, freeze_token_projection=True)
    assert torch.equal(weights["rpn.head.dot_product_projection_text.weight"], projection)
    assert not torch.equal(weights["rpn.head.bias_lang"], model.rpn.head.bias_lang)


def test_bf16_runs_the_forward_pass_in_bfloat16_and_keeps_float32_weights(tmp_path):
    """Mixed precision: matrix products in bfloat16, weights and optimiser state in float32, still
    deterministic, and a loss that follows the float32 run's (the same batches, the same init)."""
    model = initial_model(tiny_config(), 0)
    seen: list[torch.dtype] = []
    model.rpn.head.dot_product_projection_text.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    cfg = TrainConfig(steps=3, **{**SETTINGS, "precision": "bf16"})
    trainer = Trainer(model, SyntheticGrounding(seed=0, length=1000), build_tokenizer(), cfg, tmp_path / "bf16")
    losses: list[float] = []
    trainer.fit(lambda step, m: losses.append(m["loss"]))
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(v.dtype == torch.float32 for s in trainer.optimizer.state.values() for v in s.values() if v.ndim)
    again, losses_again = run(tmp_path / "again", 3, precision="bf16")
    assert losses == losses_again and all(torch.equal(model.state_dict()[k], again[k]) for k in again)
    _, fp32 = run(tmp_path / "fp32", 3)
    assert losses != fp32 and losses == pytest.approx(fp32, rel=0.05)
