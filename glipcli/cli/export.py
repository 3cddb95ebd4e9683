"""``glip export``: a GLIP checkpoint -> a self-verified ONNX bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glipcli.cli.console import console, handle_errors
from glipcli.cli.options import CompactOption, OverwriteOption
from glipcli.errors import GlipError
from glipcli.extras import require_extra


@handle_errors
def export(
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="A preset (glip-t-a, glip-t-b, glip-t-c, glip-t, glip-l, glip-nano) or an official GLIP YAML config. "
            "Default: the config a checkpoint of glip train carries, else glip-t.",
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            "-w",
            help="Checkpoint: a path (.pth/.pt/.bin/.safetensors) or hf://OWNER/REPO/FILE. "
            "Default: the preset's official checkpoint from hf://GLIPModel/GLIP.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Bundle folder to write. Default: exported/<name>[-fp16|-int8].")
    ] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="fp16 graphs for GPUs (fragile parts stay fp32).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Dynamically quantised int8 graphs for CPUs.")] = False,
    bert_config: Annotated[
        Path | None, typer.Option("--bert-config", help="BERT config JSON for YAML configs whose LANG_DIM is not 768.")
    ] = None,
    vocab: Annotated[
        Path | None, typer.Option("--vocab", help="WordPiece vocab.txt (default: bert-base-uncased).")
    ] = None,
    deform: Annotated[
        str,
        typer.Option("--deform", help="Deformable conv in the graph: grid_sample (default) or deform_conv."),
    ] = "grid_sample",
    name: Annotated[str | None, typer.Option("--name", help="Model name recorded in the bundle.")] = None,
    compact: CompactOption = False,
    overwrite: OverwriteOption = False,
) -> None:
    """Turn a GLIP checkpoint into a self-verified ONNX bundle (text, backbone, fused head).

    [bold]Examples[/]

      glip export --config glip-t --fp16

      glip export --config glip-t --weights ~/glip_tiny_model_o365_goldg_cc_sbu.pth --out exported/glip-t

      glip export --config configs/glip_Swin_T_O365_GoldG.yaml --weights hf://GLIPModel/GLIP/glip_tiny_model_o365_goldg.pth
    """
    require_extra("export", "export")
    from glipcli.export.weights import default_weights, resolve_weights
    from glipcli.runtime.bundle import default_export_dir

    if fp16 and int8:
        raise GlipError("choose one of --fp16 and --int8")
    precision = "fp16" if fp16 else "int8" if int8 else "fp32"
    if weights is None:  # a preset's released checkpoint
        config = config or "glip-t"
    checkpoint = resolve_weights(weights or default_weights(config))
    # imports torch (seconds), so after the download: an offline export fails at once
    from glipcli.export.exporter import build_from_checkpoint, export_bundle
    from glipcli.model.rounding import round_for_export

    console.print(f"loading [bold]{checkpoint}[/]")
    model, source = build_from_checkpoint(config, checkpoint, str(bert_config) if bert_config else None)
    console.print(f"model [bold]{model.cfg.name}[/]")
    if compact:
        source = round_for_export(model, source)
    name = name or model.cfg.name
    target = out or default_export_dir() / (name if precision == "fp32" else f"{name}-{precision}")
    result = export_bundle(
        model,
        target,
        name=name,
        source=source,
        precision=precision,
        vocab=vocab,
        deform=deform,
        overwrite=overwrite,
        log=lambda msg: console.print(f"  {msg}"),
    )
    parity = result.manifest["parity"][precision]
    size = sum(p.stat().st_size for p in result.path.iterdir()) / 1e6
    if parity.get("verified"):
        errors = ", ".join(f"{k} {v:.1e}" for k, v in parity["max_error"].items())
        console.print(f"[green]verified[/] {precision} against PyTorch: {errors}")
    else:
        console.print(f"[yellow]not verified here[/]: {parity['reason']}")
    console.print(f"wrote [bold]{result.path}[/] ({size:.0f} MB) in {result.seconds:.0f} s")
