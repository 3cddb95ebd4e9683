"""Prompt tuning into a bundle (GLIP_SPEC §11, GLIP's ``language_prompt_v2``).

Everything stays frozen; GLIP learns a position-indexed offset P that is added to the text
encoder's output before the head. For one caption that offset is a constant, so a tuned prompt
is just text features: ``BERT(caption) + P[:T]``. The tuned bundle therefore shares the source
bundle's graphs (hard links where possible) and adds one (T, D) ``.npy`` per caption; the engine
uses those features whenever a prompt chunk has exactly that caption, and the text encoder
otherwise (see glipcli.runtime.engine).

Gradients need the PyTorch model: it is rebuilt from the bundle itself (glipcli.export.rebuild),
or read from the checkpoint the bundle was exported from, refusing any other (its features would
not fit the bundle's head). If the source model already has an offset P0 (inside its head
graph), the stored features carry only P - P0. A tuned bundle's graphs are its source's, so
tuning it again starts from the untuned model: the new caption is added (or replaces the same
caption's features) and the other tuned prompts are kept.

A box is grounded as the model scores a phrase (``targets``, glipcli.train.targets): glip-nano
was pre-trained with per-word targets and scores a phrase by its words' geometric mean, so its
prompt is tuned with per-word targets too ("red" in "red star" is positive for a red circle),
plus a term that ranks each box's own name above the prompt's other names as the model scores
them (glipcli.train.loss.name_rank_loss); official GLIPs are tuned with GLIP's phrase targets.

The run checkpoints into a hidden folder beside ``out`` (``.NAME.tune-run``), which ``resume``
continues after an interruption and which is removed once the tuned bundle is in place.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glipcli.api import BEFORE_TUNING
from glipcli.digests import sha256_file
from glipcli.errors import CheckpointError, ConfigError
from glipcli.export.exporter import move_into_place
from glipcli.model.glip import GLIP
from glipcli.prompt import PromptChunk
from glipcli.runtime.bundle import MANIFEST, Bundle, load_bundle, resolve_model
from glipcli.tokenizer import load_tokenizer
from glipcli.train.coco_data import DetectionSource, load_detection_data
from glipcli.train.finetune import StepCallback, finetune, initial_weights
from glipcli.train.targets import TARGETS, default_targets, with_targets
from glipcli.train.trainer import LAST, TrainConfig

PROMPTS_DIR = "prompts"


def tuning_model(bundle: Bundle, weights: str | Path | None = None) -> GLIP:
    """The PyTorch model behind ``bundle`` with a tunable offset: rebuilt from the bundle, or from
    ``weights``, which must be the checkpoint it was exported from."""
    if weights is None:
        model, _ = initial_weights(bundle.path, prompt_tuning=True)
        return model
    weights = Path(weights)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {weights} not found")
    source = bundle.manifest.get("source", {})
    expected, actual = str(source.get("sha256", "")), sha256_file(weights)
    if actual != expected:
        raise CheckpointError(
            f"{weights} (sha256 {actual[:12]}) is not the checkpoint bundle {bundle.path} was exported from "
            f"({source.get('checkpoint', '?')}, sha256 {expected[:12] or '?'}): a prompt tuned on it would not "
            "fit the bundle's graphs"
        )
    model, _ = initial_weights(weights, bundle.config, prompt_tuning=True)
    return model


def run_folder(out: Path) -> Path:
    """Where the tuning run behind ``out`` keeps its checkpoint until the bundle is written."""
    return out.parent / f".{out.name}.tune-run"


@torch.no_grad()
def tuned_features(model: GLIP, chunks: Sequence[PromptChunk], initial_offset: torch.Tensor) -> dict[str, np.ndarray]:
    """Caption -> (T, D) float32 text features: the text encoder's output plus the learned offset."""
    model.eval()
    delta = model.rpn.tunable_linear.weight.detach() - initial_offset
    features = {}
    for chunk in chunks:
        ids = torch.from_numpy(np.array(chunk.input_ids[None]))
        mask = torch.from_numpy(np.array(chunk.attention_mask[None]))
        text = model.encode_text(ids, mask)[0]
        features[chunk.caption] = (text + delta[: text.shape[0]]).numpy().astype(np.float32)
    return features


@dataclass(frozen=True)
class TuneResult:
    bundle: Bundle  # the tuned bundle
    model: GLIP  # the PyTorch model with the learned offset (its detections are the bundle's)
    data: DetectionSource


def tune_prompt(
    model: str | Path | None,
    weights: str | Path | None,
    annotations: str | Path,
    images: str | Path,
    out: str | Path,
    train_cfg: TrainConfig,
    *,
    shots: int | None = None,
    name: str | None = None,
    overwrite: bool = False,
    workers: int = 2,
    resume: bool = False,
    targets: str | None = None,
    on_data: Callable[[DetectionSource], None] | None = None,
    on_step: StepCallback | None = None,
) -> TuneResult:
    """Tune the prompt of ``annotations``' category names on its images; write a tuned bundle.

    ``model`` is a bundle (name or folder); ``weights``, optional, the checkpoint it was exported
    from; ``shots`` keeps K images per category; ``resume`` continues an interrupted run;
    ``targets`` is ``words`` or ``phrases`` (default: as the model scores phrases, see
    :func:`glipcli.train.targets.default_targets`). The new bundle is written to ``out``.
    """
    bundle = load_bundle(resolve_model(model))
    targets = targets or default_targets(bundle.config)
    if targets not in TARGETS:
        raise ConfigError(f"unknown tuning targets {targets!r}: {' or '.join(TARGETS)}")
    out = _check_out(Path(out), bundle, overwrite)
    run = run_folder(out)
    if (run / LAST).exists() and not resume:
        raise ConfigError(f"an interrupted tuning run for {out} is in {run}: pass --resume to continue it or delete it")
    torch_model = tuning_model(bundle, weights)
    tokenizer = load_tokenizer(bundle.tokenizer_path)
    data = load_detection_data(
        annotations,
        images,
        tokenizer,
        bundle.config.language.max_query_len,
        shots=shots,
        seed=train_cfg.seed,
        workers=workers,
    )
    _check_run_identity(run, bundle, annotations, shots, targets, resume)
    data = with_targets(data, targets)
    if on_data:
        on_data(data)
    cfg = dataclasses.replace(train_cfg, trainable="prompt")
    initial = torch_model.rpn.tunable_linear.weight.detach().clone()
    finetune(torch_model, data, run, cfg, tokenizer=tokenizer, resume=resume, targets=targets, on_step=on_step)
    details = {
        "data": Path(annotations).name,
        "images": len(data.images),
        "boxes": data.boxes,
        "shots": shots,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "targets": targets,
        "seed": cfg.seed,
    }
    features = tuned_features(torch_model, data.chunks, initial)
    tuned = write_tuned_bundle(bundle, features, out, name=name, details=details, overwrite=overwrite)
    shutil.rmtree(run, ignore_errors=True)
    return TuneResult(tuned, torch_model, data)


RUN_IDENTITY = "tuning.json"


def _check_run_identity(
    run: Path, bundle: Bundle, annotations: str | Path, shots: int | None, targets: str, resume: bool
) -> None:
    """What the tuning run learns from beyond its TrainConfig (which the trainer checks): the model, the
    data, the shots and the targets. A fresh run records them; a resumed one must match, or the offset
    it continues would be half one run and half another."""
    identity = {
        "model": bundle.manifest.get("source", {}).get("sha256") or bundle.name,
        "data_sha256": sha256_file(Path(annotations)),
        "shots": shots,
        "targets": targets,
    }
    path = run / RUN_IDENTITY
    if resume and path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in identity if recorded.get(k) != identity[k])
        if changed:
            what = ", ".join(changed)
            raise ConfigError(f"{run} was tuned with other {what}: resume with the same ones or delete it")
        return
    run.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, indent=2) + "\n", encoding="utf-8")


def _check_out(out: Path, bundle: Bundle, overwrite: bool) -> Path:
    if out.exists() and out.resolve() == bundle.path.resolve():
        raise ConfigError(f"--out {out} is the source bundle: write the tuned bundle to another folder")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; choose another --out or pass --overwrite")
    return out


def write_tuned_bundle(
    bundle: Bundle,
    features: dict[str, np.ndarray],
    out: str | Path,
    *,
    name: str | None = None,
    details: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Bundle:
    """A copy of ``bundle`` (files hard-linked where possible) carrying tuned text features.

    ``features`` maps a caption to its (T, D) features; a caption the source already carries a
    tuned prompt for is replaced. The bundle is written beside ``out`` and moved into place whole.
    """
    out = _check_out(Path(out), bundle, overwrite)
    replaced = {key for key, entry in bundle.prompts.items() if entry.get("caption") in features}
    skip = {bundle.path / bundle.prompts[key]["file"] for key in replaced}
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        for file in sorted(bundle.path.rglob("*")):
            if file.is_file() and file.name != MANIFEST and file not in skip:
                _link_or_copy(file, work / file.relative_to(bundle.path))
        manifest = copy.deepcopy(bundle.manifest)
        manifest["name"] = name or (bundle.name if bundle.name.endswith("-tuned") else f"{bundle.name}-tuned")
        if isinstance(manifest.get("calibration"), dict):  # chosen on the untuned scores: kept, and said so
            manifest["calibration"][BEFORE_TUNING] = True
        prompts = {k: v for k, v in bundle.prompts.items() if k not in replaced}
        for caption, array in features.items():
            relative = f"{PROMPTS_DIR}/{_slug(caption)}.npy"
            (work / PROMPTS_DIR).mkdir(exist_ok=True)
            np.save(work / relative, np.ascontiguousarray(array, dtype=np.float32))
            entry = {"caption": caption, "file": relative, "sha256": sha256_file(work / relative)}
            prompts[caption] = {**entry, "tokens": int(array.shape[0]), **(details or {})}
        manifest["prompts"] = prompts
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        load_bundle(work)  # what we wrote must open
        move_into_place(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return load_bundle(out, verify_hashes=False)  # checked as written, just above


def _slug(caption: str) -> str:
    """A file name that says which caption it holds, unique per caption."""
    readable = re.sub(r"[^a-z0-9]+", "-", caption.lower()).strip("-")[:40] or "prompt"
    return f"{readable}-{hashlib.sha256(caption.encode()).hexdigest()[:8]}"


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)
