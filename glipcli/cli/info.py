"""``glip info``: what a model bundle is, where it came from and how well its export matched PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from glipcli.cli.console import console, handle_errors

if TYPE_CHECKING:
    from glipcli.config import InputConfig, NamerConfig


def _megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


_SCORE_AGGREGATIONS = {
    "MEAN": "mean of its tokens' probabilities (GLIP's MEAN)",
    "MAX": "highest of its tokens' probabilities (GLIP's MAX)",
    "GEOMEAN": "geometric mean of its words' probabilities (GEOMEAN)",
}


def _parity_line(figures: dict[str, Any]) -> str:
    """Rich markup: the export-time parity figures of one precision."""
    from rich.markup import escape

    if not figures.get("verified"):
        return f"not verified: {escape(str(figures.get('reason', 'no figures recorded')))}"
    errors = ", ".join(f"{k} {v:.1e}" for k, v in figures.get("max_error", {}).items())
    sizes = ", ".join("x".join(str(v) for v in hw) for hw in figures.get("image_sizes", []))
    verdict = "ok" if figures.get("ok") else "[red]over tolerance[/]"
    return f"{verdict}: max error {escape(errors)} at {sizes} on {escape(str(figures.get('provider', '?')))}"


@handle_errors
def info(
    model: Annotated[
        str | None, typer.Argument(help="Model bundle: a name (see exported/) or a folder path. Default: glip-nano.")
    ] = None,
) -> None:
    """Describe a model bundle: source checkpoint, precision, export parity, graphs and tuned prompts.

    The bundle's files are checked against their sha256 on the way.

    [bold]Examples[/]

      glip info

      glip info exported/glip-t-fp16
    """
    from rich.markup import escape
    from rich.table import Table

    from glipcli.runtime.bundle import load_bundle, resolve_model

    bundle = load_bundle(resolve_model(model))
    manifest, cfg = bundle.manifest, bundle.config
    source = manifest.get("source", {})
    rows = [
        ("name", bundle.name),
        ("path", str(bundle.path)),
        ("precision", bundle.precision),
        ("source", f"{source.get('checkpoint', '?')} (sha256 {str(source.get('sha256', '?'))[:12]})"),
        ("created", f"{manifest.get('created', '?')} with glipcli {manifest.get('glipcli_version', '?')}"),
        ("architecture", f"{cfg.name}: Swin {cfg.swin.embed_dim}x{list(cfg.swin.depths)}, text {cfg.language.dim}-d"),
        ("input", _input_line(cfg.input, manifest.get("calibration"))),
        ("max query", f"{cfg.language.max_query_len} tokens"),
        ("phrase score", _SCORE_AGGREGATIONS.get(cfg.postprocess.score_agg, cfg.postprocess.score_agg)),
        ("threshold", _threshold_line(manifest.get("calibration"))),
        ("region namer", _namer_line(bundle.namer, manifest.get("namer"))),
    ]
    rows += [(f"parity {name}", _parity_line(figures)) for name, figures in manifest.get("parity", {}).items()]
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    for key, value in rows:
        summary.add_row(key, value if key.startswith("parity") else escape(value))
    console.print(summary)

    flops = manifest.get("flops") or {}
    counted = flops.get("graphs", {})
    at = f" (GFLOP at {'x'.join(map(str, flops['image_hw']))}, {flops['tokens']} tokens)" if counted else ""
    graphs = Table(
        "graph", "file", "size", "sha256", "GFLOP", title=f"graphs{at}", title_justify="left", show_edge=False
    )
    for graph, entry in manifest["graphs"].items():
        gflop = f"{counted[graph] / 1e9:.1f}" if graph in counted else "-"
        graphs.add_row(graph, escape(entry["file"]), _megabytes(bundle.graph_path(graph)), entry["sha256"][:12], gflop)
    if bundle.namer:
        file, digest = manifest["namer"]["file"], bundle.graph_sha256("namer")
        graphs.add_row("namer", escape(file), _megabytes(bundle.graph_path("namer")), digest[:12], "-")
    graphs.add_row("tokenizer", escape(manifest["tokenizer"]["file"]), _megabytes(bundle.tokenizer_path), "", "")
    console.print(graphs)
    prompts = bundle.prompts
    if prompts:
        console.print(
            f"[bold]tuned prompts[/] ({len(prompts)}), used when a prompt's caption is exactly one of these "
            "(any other prompt runs the untuned text encoder):"
        )
        for entry in prompts.values():
            how = ", ".join(f"{k} {entry[k]}" for k in ("data", "images", "shots", "steps") if entry.get(k) is not None)
            console.print(
                f"  {escape(repr(entry.get('caption', '')))}" + (f"  ({escape(how)})" if how else ""), highlight=False
            )
    else:
        console.print("[bold]tuned prompts[/]: none")


def _input_line(model_input: InputConfig, calibration: dict[str, Any] | None) -> str:
    """The model's test size, and the size(s) detection uses by default when calibrated at others."""
    from glipcli.preprocess import size_text

    line = f"short side {model_input.min_size}, long side <= {model_input.max_size}"
    size = (calibration or {}).get("input_size")
    if size and size != size_text(model_input):
        line += f"; by default {size} (--size), as calibrated"
    return line


def _namer_line(namer: NamerConfig | None, entry: dict[str, Any] | None) -> str:
    if namer is None or entry is None:
        return "none (GLIP's scores)"
    names = f"{len(namer.names)} names it was trained on" if namer.names else "every name"
    error = entry.get("parity", {}).get("max_error")
    checked = f"; parity max error {error:.1e}" if isinstance(error, float) else ""
    return f"re-scores {names} from {namer.crop}x{namer.crop} crops, weight {namer.weight} (--no-namer){checked}"


def _threshold_line(calibration: dict[str, Any] | None) -> str:
    """The default threshold and how it was chosen (glip calibrate), as one line."""
    from glipcli.api import DEFAULT_THRESHOLD

    if not calibration:
        return f"{DEFAULT_THRESHOLD:g} (not calibrated: glip calibrate chooses one)"

    def chosen(entry: dict[str, Any]) -> str:
        return f"{entry.get('threshold')} (F1 {entry.get('f1')} on {entry.get('ground_truth', '?')})"

    line = chosen(calibration)
    if "new_names" in calibration:
        count = len(calibration.get("names", []))
        line += f"; classes outside its {count} calibrated ones: {chosen(calibration['new_names'])}"
    return line
