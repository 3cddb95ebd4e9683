"""One trainer for every GLIP: pre-training glip-nano on synthetic grounding data and
fine-tuning any variant on labelled data, with GLIP's unified loss.

Runs are deterministic given a seed (a sample is a pure function of its index, the model is
initialised from the seed, RNG state travels in checkpoints), checkpoint periodically and
atomically, and resume exactly where they stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from glipcli.config import GLIPConfig
from glipcli.errors import ConfigError, DataError
from glipcli.model.bert_layer import BertEncoderLayer
from glipcli.model.glip import GLIP
from glipcli.train.data import Batch, SampleSource, TrainingSet, collate
from glipcli.train.loss import LossConfig, glip_loss

LAST = "last.pt"
StepCallback = Callable[[int, dict[str, float]], None]
"""Called after every optimiser step with its number and losses (a progress bar, a log)."""
FINAL = "model.pth"
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 6000
    batch_size: int = 8
    lr: float = 1e-3
    text_lr: float = 0.0  # 0 freezes the language backbone (a pretrained BERT stays as it is)
    head_text_lr: float = 1e-4  # the BERT layers inside the DyHead (GLIP: 10x below the base lr)
    weight_decay: float = 0.05
    warmup: int = 200
    min_lr_ratio: float = 0.05  # cosine decay ends at lr * min_lr_ratio
    grad_clip: float = 1.0  # GLIP clips the full-model gradient norm at 1.0
    seed: int = 0
    scales: tuple[int, ...] = (256, 288, 320)  # training short sides
    max_size: int = 320  # training long-side cap = side of the fixed square canvas batches are padded to
    checkpoint_every: int = 250
    workers: int = 1
    threads: int | None = None
    trainable: str = "all"  # all | head | prompt (GLIP's full, linear_prob-like and language_prompt_v2)
    # "bf16" runs the forward pass under bfloat16 autocast (weights, optimiser and loss stay float32),
    # as GLIP trains under fp16 autocast: glip-nano's steps ran 1.42x faster on AVX512-BF16 cores.
    precision: str = "fp32"
    # Keep the text side of the token dot product at its initialisation (for glip-nano: the captions'
    # principal directions, pretrained.init_token_projection). Learned from scratch, it collapsed every
    # word onto one "objectness" direction before the image side told colours apart.
    freeze_token_projection: bool = False
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0:
            raise ConfigError("steps and batch size must be positive")
        if self.lr <= 0 or self.text_lr < 0 or not self.scales:
            raise ConfigError("learning rates must be positive (text_lr may be 0) and scales non-empty")
        if self.trainable not in ("all", "head", "prompt"):
            raise ConfigError(f"unknown trainable set {self.trainable!r}: all, head or prompt")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown training precision {self.precision!r}: {' or '.join(PRECISIONS)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_HEAD_PARAMS = (
    "rpn.head.bbox_pred",
    "rpn.head.centerness",
    "rpn.head.cls_logits",
    "rpn.head.dot_product_projection_text",
    "rpn.head.log_scale",
    "rpn.head.bias_lang",
    "rpn.head.bias0",
    "rpn.head.scales",
)


def parameter_groups(model: GLIP, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Which parameters train, and with which learning rate / weight decay."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    # At the base lr the post-LN BERT layers of the head collapse every token to one vector.
    head_text = {
        f"rpn.head.dyhead_tower.{i}.{n}"
        for i, module in enumerate(model.rpn.head.dyhead_tower)
        if isinstance(module, BertEncoderLayer)
        for n, _ in module.named_parameters()
    }
    for name, param in model.named_parameters():
        if cfg.trainable == "prompt":
            train = name.startswith("rpn.tunable_linear")
        elif cfg.trainable == "head":
            train = name.startswith(_HEAD_PARAMS)
        else:
            train = not name.startswith("language_backbone") or cfg.text_lr > 0
            if cfg.freeze_token_projection and name.startswith("rpn.head.dot_product_projection_text"):
                train = False
        param.requires_grad_(train)
        if not train:
            continue
        if name.startswith("language_backbone"):
            lr = cfg.text_lr
        elif name in head_text:
            lr = cfg.head_text_lr
        else:
            lr = cfg.lr
        decay = 0.0 if param.ndim <= 1 or "relative_position_bias_table" in name else cfg.weight_decay
        groups.setdefault((lr, decay), []).append(param)
    if not groups:
        raise ConfigError("nothing to train: no parameter is trainable in this configuration")
    return [{"params": p, "lr": lr, "base_lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class _BatchIndices(torch.utils.data.Sampler):
    """Batch ``step`` holds samples step*B .. step*B+B-1 (modulo the source length)."""

    def __init__(self, start: int, steps: int, batch_size: int, length: int) -> None:
        self.start, self.steps, self.batch_size, self.length = start, steps, batch_size, length

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            yield [(step * self.batch_size + i) % self.length for i in range(self.batch_size)]

    def __len__(self) -> int:
        return self.steps - self.start


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any] | None:
    """A run's ``last.pt``, or None when there is none; a torn or foreign file is a one-line error.
    ``mmap`` maps the tensors instead of reading them, for callers that only want the configs."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # a torn or foreign file: say which and stop
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(f"cannot resume from {path}: {detail}") from None


def run_setup(out_dir: Path) -> tuple[GLIPConfig, dict[str, Any]] | None:
    """The model config and training settings the run in ``out_dir`` checkpointed, so a resumed run
    needs none of its options again; None when there is no checkpoint to resume."""
    path = Path(out_dir) / LAST
    state = _load_checkpoint(path, mmap=True)  # the trainer reads the tensors once, when it resumes
    if state is None:
        return None
    model_config, settings = state.get("model_config"), state.get("train_config")
    if not isinstance(model_config, dict) or not isinstance(settings, dict):
        raise DataError(f"cannot resume from {path}: it records no model config or training settings")
    return GLIPConfig.from_dict(model_config), settings


def _without_postprocess(model_config: Any) -> Any:
    return {k: v for k, v in model_config.items() if k != "postprocess"} if isinstance(model_config, dict) else None


class Trainer:
    def __init__(
        self,
        model: GLIP,
        source: SampleSource,
        tokenizer: Any,
        cfg: TrainConfig,
        out_dir: Path,
    ) -> None:
        if len(source) == 0:
            raise DataError("the training set is empty")
        self.model = model
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        input_cfg = dataclasses.replace(model.cfg.input, max_size=cfg.max_size)
        self.dataset = TrainingSet(
            source, tokenizer, input_cfg, cfg.scales, model.cfg.language.max_query_len, cfg.batch_size
        )
        self.optimizer = torch.optim.AdamW(parameter_groups(model, cfg), lr=cfg.lr)
        self.step = 0

    # -- checkpoints ------------------------------------------------------------------------
    def save(self) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "model": self._learned_state(),
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "train_config": self.cfg.to_dict(),
            "model_config": self.model.cfg.to_dict(),
        }
        path = self.out_dir / LAST
        _atomic_save(state, path)
        return path

    def _learned_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must hold to resume: the whole model when all of it learns; with the
        rest frozen (and in eval mode, see train_step) only the learning parameters, so a prompt
        tuning checkpoint of an official GLIP is a few MB, not 1-3 GB."""
        if self.cfg.trainable == "all":
            return self.model.state_dict()
        return {k: v.detach() for k, v in self.model.named_parameters() if v.requires_grad}

    def resume(self) -> bool:
        """Continue from ``last.pt`` if there is one; refuses a checkpoint of another setup."""
        path = self.out_dir / LAST
        state = _load_checkpoint(path)
        if state is None:
            return False
        # Post-processing is applied after the model and does not change what a run learns.
        if _without_postprocess(state.get("model_config")) != _without_postprocess(self.model.cfg.to_dict()):
            raise ConfigError(f"{path} was written for another model config; use another --out")
        # How long and on how many threads a run goes may change between sessions; what it learns may not.
        free = {"steps", "threads", "workers", "checkpoint_every"}
        mine, theirs = self.cfg.to_dict(), dict(state.get("train_config", {}))
        if {k: v for k, v in mine.items() if k not in free} != {k: v for k, v in theirs.items() if k not in free}:
            changed = sorted(k for k in mine if k not in free and mine[k] != theirs.get(k))
            raise ConfigError(f"{path} was written with other training settings ({', '.join(changed)})")
        learned = self._learned_state()
        if set(state["model"]) != set(learned):
            raise ConfigError(f"{path} holds other tensors than this run learns; use another --out")
        self.model.load_state_dict(state["model"], strict=self.cfg.trainable == "all")
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        self.step = int(state["step"])
        return True

    def save_final(self) -> Path:
        """Weights in the official layout ({"model": state_dict}) plus our config."""
        path = self.out_dir / FINAL
        _atomic_save({"model": self.model.state_dict(), "config": self.model.cfg.to_dict()}, path)
        return path

    # -- training ---------------------------------------------------------------------------
    def _loader(self) -> torch.utils.data.DataLoader:
        sampler = _BatchIndices(self.step, self.cfg.steps, self.cfg.batch_size, len(self.dataset))
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=functools.partial(collate, canvas=-(-self.cfg.max_size // 32) * 32),
            num_workers=self.cfg.workers,
            persistent_workers=False,
            prefetch_factor=4 if self.cfg.workers else None,
        )

    def train_step(self, batch: Batch) -> dict[str, float]:
        model = self.model
        # Head and prompt tuning learn on the frozen model as it detects: eval mode, so no dropout and
        # no BatchNorm statistics drift away from the weights (or bundle) the learned part must fit.
        model.train(self.cfg.trainable == "all")
        frozen_text = self.cfg.text_lr == 0 or self.cfg.trainable != "all"
        if frozen_text:
            model.language_backbone.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16"):
            with torch.set_grad_enabled(not frozen_text):
                text = model.encode_text(batch.input_ids, batch.attention_mask)
            levels = model.encode_image(batch.images)
            out = model.head(levels, text, batch.attention_mask)
        anchors = model.rpn.anchor_generator(levels)
        losses = glip_loss(out, anchors, batch.targets, batch.attention_mask, self.cfg.loss)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise DataError(f"non-finite loss at step {self.step}: { ({k: float(v) for k, v in losses.items()}) }")
        factor = lr_factor(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        return {
            "loss": float(total.detach()),
            **{k: float(v.detach()) for k, v in losses.items()},
            "grad_norm": float(norm),
            "lr": self.cfg.lr * factor,
        }

    def fit_new_or_resumed(self, resume: bool, on_step: StepCallback | None = None) -> Path:
        """:meth:`fit` from ``last.pt`` when ``resume``; without it a run already in the folder is refused,
        never overwritten."""
        if resume:
            self.resume()
        elif (self.out_dir / LAST).exists():
            raise ConfigError(
                f"{self.out_dir} already holds a training run: pass --resume to continue it, or choose another --out"
            )
        return self.fit(on_step)

    def fit(self, on_step: StepCallback | None = None) -> Path:
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.out_dir / "log.jsonl"
        started = time.time()
        with open(log_path, "a", encoding="utf-8") as log:
            for batch in self._loader():
                metrics = self.train_step(batch)
                if on_step:
                    on_step(self.step, metrics)
                if self.step % 50 == 0 or self.step == self.cfg.steps:
                    record = {"step": self.step, "time": round(time.time() - started, 1), **metrics}
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                    self.save()
        return self.save_final()


def initial_model(cfg: GLIPConfig, seed: int) -> GLIP:
    """A freshly initialised GLIP for ``cfg`` (deterministic in ``seed``)."""
    from glipcli.model.glip import build_model

    torch.manual_seed(seed)
    return build_model(cfg)
