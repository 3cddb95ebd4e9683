"""The ``glip`` command: a thin Typer layer over the Python API.

Commands parse options, call the library and print with rich. Errors a user can cause
(GlipError) become one line on stderr and a non-zero exit code; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from glipcli import __version__
from glipcli.errors import GlipError

app = typer.Typer(
    name="glip",
    help="Open-vocabulary detection and auto-annotation with GLIP, on ONNX Runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn GlipError into 'error: <message>' on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GlipError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"glipcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Open-vocabulary detection and auto-annotation with GLIP, on ONNX Runtime."""


@app.command()
@handle_errors
def export(
    config: Annotated[
        str,
        typer.Option(
            "--config",
            "-c",
            help="A preset (glip-t-a, glip-t-b, glip-t-c, glip-t, glip-l, glip-nano) or an official GLIP YAML config.",
        ),
    ] = "glip-t",
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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing bundle at --out.")] = False,
) -> None:
    """Turn a GLIP checkpoint into a self-verified ONNX bundle (text, backbone, fused head).

    [bold]Examples[/]

      glip export --config glip-t --fp16

      glip export --config glip-t --weights ~/glip_tiny_model_o365_goldg_cc_sbu.pth --out exported/glip-t

      glip export --config configs/glip_Swin_T_O365_GoldG.yaml --weights hf://GLIPModel/GLIP/glip_tiny_model_o365_goldg.pth
    """
    from glipcli.export.exporter import build_from_checkpoint, export_bundle
    from glipcli.export.weights import default_weights, resolve_weights
    from glipcli.runtime.bundle import embedded_models_dir

    if fp16 and int8:
        raise GlipError("choose one of --fp16 and --int8")
    precision = "fp16" if fp16 else "int8" if int8 else "fp32"
    checkpoint = resolve_weights(weights or default_weights(config))
    console.print(f"loading [bold]{checkpoint}[/] with config [bold]{config}[/]")
    model, source = build_from_checkpoint(config, checkpoint, str(bert_config) if bert_config else None)
    name = name or model.cfg.name
    target = out or embedded_models_dir() / (name if precision == "fp32" else f"{name}-{precision}")
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
