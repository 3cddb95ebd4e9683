"""train.policy: what glip train and glip tune make of their options, without training."""

from __future__ import annotations

import re

import pytest

from glipcli.errors import ConfigError
from glipcli.train.policy import (
    DEFAULT_LR,
    FINETUNE,
    PROMPT_WEIGHT_DECAY,
    check_train_options,
    native_bf16,
    train_config,
    tune_config,
    warmup_steps,
)
from glipcli.train.recipe import NANO_PRETRAIN


def test_warmup_is_a_tenth_of_the_run_between_1_and_300_steps():
    assert [warmup_steps(n) for n in (5, 200, 3000, 10000)] == [1, 20, 300, 300]


def test_pretraining_follows_the_glip_nano_recipe():
    cfg = train_config(finetuning=False, seed=3)
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.warmup) == (13000, 2, NANO_PRETRAIN["lr"], NANO_PRETRAIN["warmup"])
    assert (cfg.trainable, cfg.seed, cfg.checkpoint_every) == ("all", 3, 100)
    assert cfg.precision == ("bf16" if native_bf16() else "fp32")


@pytest.mark.parametrize("native", [True, False])
def test_the_recipes_bf16_only_where_the_cpu_has_it_unless_asked_for(monkeypatch, native):
    """Emulated bfloat16 made a glip-nano step 5x slower than fp32 on an AVX2 CPU."""
    import torch

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert native_bf16() is native
    assert train_config(finetuning=False).precision == ("bf16" if native else "fp32")
    assert train_config(finetuning=False, precision="bf16").precision == "bf16"
    assert train_config(finetuning=False, precision="fp32").precision == "fp32"


@pytest.mark.parametrize(("mode", "trainable"), [("full", "all"), ("head", "head"), ("prompt", "prompt")])
def test_fine_tuning_defaults_per_mode_and_given_options_win(mode, trainable):
    cfg = train_config(finetuning=True, mode=mode)
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.trainable) == (3000, 8, DEFAULT_LR[mode], trainable)
    assert cfg.warmup == 300 and cfg.precision == FINETUNE["precision"]
    assert (cfg.weight_decay == PROMPT_WEIGHT_DECAY) == (mode == "prompt")
    given = train_config(finetuning=True, mode=mode, steps=50, batch_size=2, lr=0.01, precision="bf16")
    assert (given.steps, given.batch_size, given.lr, given.precision, given.warmup) == (50, 2, 0.01, "bf16", 5)


def test_a_resumed_run_keeps_its_settings_unless_given_again():
    """`glip train --resume` needs none of the options the run was started with; --steps extends it
    without moving fine-tuning's warm-up, which the checkpoint's run followed."""
    stored = train_config(finetuning=True, steps=1200, batch_size=4, lr=1e-4, seed=7).to_dict()
    resumed = train_config(finetuning=True, resumed=stored)
    assert resumed.to_dict() == stored
    longer = train_config(finetuning=True, resumed=stored, steps=2000)
    assert (longer.steps, longer.warmup, longer.lr, longer.seed) == (2000, 120, 1e-4, 7)
    stored = train_config(finetuning=False, precision="fp32", batch_size=3).to_dict()
    assert train_config(finetuning=False, resumed=stored, lr=0.01).to_dict() == {**stored, "lr": 0.01}


def test_tuning_is_prompt_tuning_with_glips_recipe_at_a_fifth_of_its_rate():
    cfg = tune_config(steps=100)
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.warmup) == (100, 4, 0.01, 10)
    assert DEFAULT_LR["prompt"] == 0.05  # glip train --mode prompt keeps GLIP's rate
    assert (cfg.trainable, cfg.weight_decay, cfg.checkpoint_every) == ("prompt", PROMPT_WEIGHT_DECAY, 50)


def options(**given):
    base = dict(mode="full", data=None, images=None, init=None, pseudo=None, pseudo_images=None)
    return {**base, "export_to": None, "compact": False, **given}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"mode": "all"}, "unknown --mode 'all'"),
        ({"init": "glip-nano"}, "--init needs --data"),
        ({"mode": "head"}, "--mode needs --data"),
        ({"data": "gt.json"}, "fine-tuning needs --init"),
        ({"pseudo_images": "more/"}, "--pseudo-images needs --pseudo"),
        ({"compact": True}, "--compact applies to the exported bundle"),
    ],
)
def test_options_that_do_not_go_together_are_refused(given, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_train_options(**options(**given))


def test_an_export_folder_that_holds_files_is_refused(tmp_path):
    check_train_options(**options(export_to=tmp_path / "new", compact=True))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.onnx").write_bytes(b"")
    with pytest.raises(ConfigError, match="already holds files"):
        check_train_options(**options(export_to=tmp_path / "old"))
