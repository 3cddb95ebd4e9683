"""``glip namer``: add a region namer (glipcli.model.namer) to a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glipcli.cli.console import console, handle_errors
from glipcli.cli.options import ModelOption, TorchThreadsOption
from glipcli.config import POOLS
from glipcli.errors import ConfigError


@handle_errors
def namer(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the new bundle (the model with its namer).")],
    model: ModelOption = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps of 64 crops.")] = 3600,
    scenes: Annotated[int, typer.Option("--scenes", min=1, help="Generated scenes to cut objects from.")] = 4000,
    proposal_scenes: Annotated[
        int,
        typer.Option(
            "--proposal-scenes",
            min=0,
            help="Scenes on which the model's own boxes (loose and false ones too) are added to "
            "the training crops, about 0.25 s each; 0 trains on jittered true boxes only.",
        ),
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the scenes, prompts and initialisation.")] = 0,
    threads: TorchThreadsOption = None,
    pool: Annotated[
        str, typer.Option("--pool", help="How the namer pools its last feature map: mean, attention or both.")
    ] = "mean",
) -> None:
    """Train a region namer for a model and write the model with it to a new bundle.

    The namer is a small CNN that reads each detected box, cut out at 40x40 pixels, against the
    prompt's words, and re-scores the box's label with GLIP's score: shapes too small for the
    detector to name are named from the crop. It learns from scenes of glip's shape generator,
    on their objects and on the model's own boxes there (about 20 minutes on 2 cores), so it
    suits models trained on them (glip-nano). The new bundle is uncalibrated: run glip calibrate
    on it.
    """
    import torch

    from glipcli.train.namer import NamerRecipe, build_namer_bundle

    if pool not in POOLS:
        raise ConfigError(f"--pool {pool!r}: expected one of {', '.join(POOLS)}")
    if threads:
        torch.set_num_threads(threads)
    recipe = NamerRecipe(steps=steps, scenes=scenes, proposal_scenes=proposal_scenes, seed=seed)
    path = build_namer_bundle(
        model or "glip-nano", out, recipe, log=lambda message: console.print(message, highlight=False), pool=pool
    )
    console.print(f"wrote {path}; choose its thresholds with: glip calibrate GROUND_TRUTH --model {path}")
