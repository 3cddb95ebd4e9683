"""``glip train`` and ``glip tune``: learning from labels (policy in glipcli.train.policy)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from glipcli.api import DEFAULT_THRESHOLD
from glipcli.cli.console import console, err_console, handle_errors
from glipcli.cli.options import (
    CompactOption,
    DataImagesOption,
    ModelOption,
    NoProgressOption,
    TorchThreadsOption,
)
from glipcli.extras import require_extra
from glipcli.io.coco import images_folder
from glipcli.train.policy import DEFAULT_LR, FINETUNE, TUNE
from glipcli.train.recipe import NANO_PRETRAIN


@contextlib.contextmanager
def _training_progress(steps: int, quiet: bool) -> Iterator[Callable[[int, dict[str, float]], None]]:
    """A progress bar that appears with the first finished step: a run refused before it trains
    (unknown config, a run already in --out) prints its error alone. Yields the step callback."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [
        TextColumn("[bold]training[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    progress = Progress(*columns, console=err_console, disable=quiet, transient=False)
    task = progress.add_task("train", total=steps, loss=float("nan"))

    def on_step(step: int, metrics: dict[str, float]) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=step, loss=metrics["loss"])

    try:
        yield on_step
    finally:
        progress.stop()


def _print_data(data: Any, issues_file: Path | None) -> None:
    """What the training data holds, and every repair made to it (a few here, all in issues_file)."""
    from rich.markup import escape

    pseudo = sum(image.pseudo for image in data.images)
    origin = f" ({len(data.images) - pseudo} gold, {pseudo} pseudo-labelled)" if pseudo else ""
    captions = len(data.chunks)
    console.print(
        f"data: {len(data.images)} images{origin}, {data.boxes} boxes, {len(data.prompt.labels)} classes "
        f"in {captions} caption{'s' * (captions != 1)}: {escape(data.captions[0][:80])}",
        highlight=False,
        soft_wrap=True,
    )
    if data.issues:
        where = f" (all listed in {escape(str(issues_file))})" if issues_file else ""
        err_console.print(
            f"[yellow]{len(data.issues)} annotation(s) clipped, dropped or ignored[/]{where}:", highlight=False
        )
        for issue in data.issues[:5]:
            err_console.print(f"  {escape(issue.file)}: {escape(issue.what)}", highlight=False)


@handle_errors
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints (last.pt), log.jsonl, model.pth.")],
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="Model preset or config file. Default: glip-nano; with --init, the checkpoint's own or the preset's.",
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Fine-tune on this COCO detection file (category names = prompt).")
    ] = None,
    images: DataImagesOption = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Weights to fine-tune: a checkpoint file, a model bundle (a folder or a name such as glip-nano: "
            "the weights its graphs hold) or a preset with released weights.",
        ),
    ] = None,
    pseudo: Annotated[
        Path | None, typer.Option("--pseudo", help="Teacher's pseudo-labels (a `glip label` COCO file) to add.")
    ] = None,
    pseudo_images: Annotated[
        Path | None,
        typer.Option(
            "--pseudo-images", help="Folder the pseudo-labels' file names are relative to (default: --images)."
        ),
    ] = None,
    pseudo_threshold: Annotated[
        float,
        typer.Option(
            "--pseudo-threshold",
            min=0.0,
            max=1.0,
            help="Keep pseudo-labels scoring at least this (glip label's default).",
        ),
    ] = DEFAULT_THRESHOLD,
    pseudo_nms: Annotated[
        float,
        typer.Option(
            "--pseudo-nms",
            min=0.01,
            max=1.0,
            help="One pseudo-label per object: drop those overlapping a higher-scoring one by this IoU (1 keeps all).",
        ),
    ] = 0.5,
    mode: Annotated[
        str, typer.Option("--mode", help="What learns: full (all but BERT), head (output layers) or prompt.")
    ] = "full",
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            min=1,
            help=f"Optimiser steps. Default: {NANO_PRETRAIN['steps']} (glip-nano recipe); "
            f"fine-tuning {FINETUNE['steps']}.",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            "-b",
            min=1,
            help=f"Images per step. Default: {NANO_PRETRAIN['batch_size']} (glip-nano recipe); "
            f"fine-tuning {FINETUNE['batch_size']}.",
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            min=0.0,
            help=f"Peak learning rate (cosine schedule). Default: {DEFAULT_LR['pretrain']:g} (glip-nano recipe); "
            f"fine-tuning {DEFAULT_LR['full']:g} (full), {DEFAULT_LR['head']:g} (head), "
            f"{DEFAULT_LR['prompt']:g} (prompt).",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Seed of the model init and the data. Default: 0.")
    ] = None,
    threads: TorchThreadsOption = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help=f"fp32, or bf16 (forward pass under bfloat16 autocast; fast only on CPUs with AVX512-BF16 or "
            f"AMX, emulated and about 5x slower elsewhere). Default: {NANO_PRETRAIN['precision']} (glip-nano "
            f"recipe) where the CPU has it, else fp32; fine-tuning {FINETUNE['precision']}.",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out from its last checkpoint, with its model config and the training "
            "options it was started with (give --steps to train longer).",
        ),
    ] = False,
    export_to: Annotated[
        Path | None, typer.Option("--export", help="After training, export a verified bundle to this folder.")
    ] = None,
    compact: CompactOption = False,
    quiet: NoProgressOption = False,
) -> None:
    """Train a GLIP with GLIP's own grounding objective: pre-train glip-nano on synthetic shapes,
    or fine-tune any GLIP on labelled data (--data).

    Deterministic given --seed; checkpoints every 100 steps to --out/last.pt (atomically) and
    continues with --resume after an interruption. The final weights are --out/model.pth in the
    official checkpoint layout, which `glip export --weights` turns into a bundle (or pass --export).

    [bold]Fine-tuning[/] (--data, --init): the categories' names, in id order, form the prompt, chunked
    as `glip eval` chunks it. --mode full trains everything but the text encoder, head only the output
    layers (GLIP's linear probing), prompt only a text offset (see `glip tune` for a tuned bundle).

    [bold]Teacher -> student[/]: label unlabelled images with a teacher (`glip label ... --threshold 0`),
    then pass them with --pseudo; those scoring at least --pseudo-threshold join the gold labels, one
    class per object (--pseudo-nms).

    [bold]Data checks[/], before the first step: missing, unreadable or wrongly sized images, unknown
    category ids and empty annotation lists are errors; boxes reaching past the image are clipped and
    boxes outside it dropped, all listed in --out/data_issues.json.

    [bold]Examples[/]

      glip train --config glip-nano --out runs/glip-nano --export my-nano --compact

      glip train --out runs/glip-nano --resume

      glip train --data gold.json --init glip-nano --steps 300 --out runs/ft

      glip train --data gold.json --pseudo teacher.json --pseudo-images unlabelled/ --init glip-t --out runs/student
    """
    require_extra("train", "train")
    from glipcli.train.policy import check_train_options, export_trained, train_config
    from glipcli.train.trainer import run_setup

    check_train_options(
        mode=mode,
        data=data,
        images=images,
        init=init,
        pseudo=pseudo,
        pseudo_images=pseudo_images,
        export_to=export_to,
        compact=compact,
    )
    setup = run_setup(out) if resume else None
    cfg = train_config(
        resumed=setup[1] if setup else None,
        finetuning=data is not None,
        mode=mode,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        precision=precision,
        seed=seed,
        threads=threads,
    )
    if setup is None and precision is None and cfg.precision != (FINETUNE if data else NANO_PRETRAIN)["precision"]:
        note = "bf16 would be emulated, ~5x slower"
        console.print(f"this CPU has no native bfloat16: training in {cfg.precision} ({note})")
    model = None
    if data is None:
        from glipcli.train.pretrain import pretrain_synthetic

        with _training_progress(cfg.steps, quiet) as on_step:
            model_config = config or (setup[0] if setup else "glip-nano")
            weights = pretrain_synthetic(model_config, out, cfg, resume=resume, on_step=on_step)
    else:
        from glipcli.tokenizer import build_tokenizer
        from glipcli.train.coco_data import load_detection_data, write_issues
        from glipcli.train.finetune import finetune, initial_weights

        model, _ = initial_weights(init, config, prompt_tuning=mode == "prompt")
        tokenizer = build_tokenizer()
        source = load_detection_data(
            data,
            images_folder(data, images),
            tokenizer,
            model.cfg.language.max_query_len,
            pseudo=pseudo,
            pseudo_images=pseudo_images,
            pseudo_threshold=pseudo_threshold,
            pseudo_nms=pseudo_nms,
            seed=cfg.seed,
        )
        out.mkdir(parents=True, exist_ok=True)
        _print_data(source, write_issues(source, out))
        with _training_progress(cfg.steps, quiet) as on_step:
            weights = finetune(model, source, out, cfg, tokenizer=tokenizer, resume=resume, on_step=on_step)
    console.print(f"wrote [bold]{weights}[/]")
    if export_to is not None:
        log = lambda msg: console.print(f"  {msg}")  # noqa: E731
        result = export_trained(weights, export_to, model=model, config=config, compact=compact, log=log)
        console.print(f"exported [bold]{result.path}[/]")


@handle_errors
def tune(
    data: Annotated[Path, typer.Option("--data", help="COCO detection file: its category names are the prompt.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Tuned bundle folder to write.")],
    images: DataImagesOption = None,
    model: ModelOption = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            help="The checkpoint --model was exported from (checked by sha256). "
            "Default: the weights the bundle's own graphs hold.",
        ),
    ] = None,
    shots: Annotated[
        int | None, typer.Option("--shots", "-k", min=1, help="Use K labelled images per category (default: all).")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps.")] = TUNE["steps"],
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per step.")] = TUNE["batch_size"],
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate (cosine schedule).")] = TUNE["lr"],
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the shot choice and the data order.")] = 0,
    threads: TorchThreadsOption = None,
    name: Annotated[str | None, typer.Option("--name", help="Model name of the tuned bundle.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing bundle at --out.")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted tuning run for --out from its last checkpoint.")
    ] = False,
    quiet: NoProgressOption = False,
) -> None:
    """Prompt tuning: learn the prompt of --data's classes from a few labelled images, into a new bundle.

    As GLIP does it (language_prompt_v2): the whole model stays frozen and a learned offset is added
    to the text encoder's output. The new bundle shares --model's graphs and carries the tuned text
    features of the prompt's caption, e.g. "orange star." for a category "orange star". A box is
    taught as the model scores it: per word for a model that scores a phrase by the geometric mean
    of its words (glip-nano: "red" is right for any red object), with each box's own class ranked
    above the prompt's other classes as the model scores them; per phrase otherwise (GLIP's).

    `glip detect`, `glip label` and `glip eval` with this bundle use the tuned features when the prompt
    is exactly those classes, in that order ("orange star"); any other prompt (another class, a
    description, ...) runs the untuned text encoder. `glip detect` and `glip label` say which;
    `glip info` lists the tuned prompts.

    The PyTorch model is rebuilt from the bundle itself (fp32 bundles exported by this glip export), so
    no checkpoint is needed; --weights takes the one it was exported from instead. A tuned bundle can
    be tuned again: it starts from the untuned model, adds the new caption (or replaces the same
    caption's features) and keeps the other tuned prompts. The run checkpoints every 50 steps into
    .NAME.tune-run beside --out; --resume continues it after an interruption, to the same result.

    [bold]Examples[/]

      glip tune --data rays.json --images ./images --model glip-nano --shots 10 --out exported/nano-rays

      glip detect img.jpg "stingray" --model exported/nano-rays
    """
    require_extra("train", "tune")
    from glipcli.train.policy import tune_config
    from glipcli.train.tune import tune_prompt

    cfg = tune_config(steps=steps, batch_size=batch_size, lr=lr, seed=seed, threads=threads)
    with _training_progress(steps, quiet) as on_step:
        result = tune_prompt(
            model,
            weights,
            data,
            images_folder(data, images),
            out,
            cfg,
            shots=shots,
            name=name,
            overwrite=overwrite,
            resume=resume,
            on_data=lambda source: _print_data(source, None),
            on_step=on_step,
        )
    from rich.markup import escape

    captions = ", ".join(repr(entry["caption"]) for entry in result.bundle.prompts.values())
    console.print(
        f"wrote [bold]{escape(str(result.bundle.path))}[/] with tuned prompt(s) {escape(captions)}",
        highlight=False,
        soft_wrap=True,
    )
    if result.bundle.manifest.get("calibration"):
        console.print(
            "its default thresholds were calibrated before tuning: "
            f"glip calibrate VALIDATION.json --model {escape(str(result.bundle.path))} chooses one for the tuned "
            "prompt (on labelled images not used for tuning)",
            highlight=False,
            soft_wrap=True,
        )
