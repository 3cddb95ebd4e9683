"""What every benchmark shares: interleaved timing, the machine's description, tables and JSON.

Absolute times on a shared CPU drift by tens of percent between runs, so benchmarks compare
contenders in one process, alternating them round by round, and report medians and ratios.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

Step = Callable[[], Mapping[str, float]]
"""One round of one contender: seconds per named part (e.g. per graph)."""


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def interleave(contenders: Mapping[str, Step], repeats: int, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """Median milliseconds per part and in total for each contender, rounds alternating in order.

    Every contender runs ``warmup`` untimed rounds first (first runs allocate and JIT). Odd
    rounds go in reverse order so a contender does not always follow the same neighbour.
    """
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            contenders[name]()
    rounds: dict[str, list[Mapping[str, float]]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            rounds[name].append(contenders[name]())
    return {name: summarise(parts) for name, parts in rounds.items()}


def summarise(rounds: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Medians in ms of each part and of the per-round total, with the spread of the total."""
    totals = [sum(r.values()) * 1000 for r in rounds]
    return {
        "ms": {part: round(statistics.median(r[part] for r in rounds) * 1000, 2) for part in rounds[0]},
        "total_ms": round(statistics.median(totals), 2),
        "total_ms_min_max": [round(min(totals), 2), round(max(totals), 2)],
        "rounds": len(rounds),
    }


def ratio(slow: float, fast: float) -> float:
    return round(slow / fast, 3) if fast > 0 else float("nan")


def machine(threads: int) -> dict[str, Any]:
    """Where and under what load the figures were measured."""
    import numpy
    import onnxruntime

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "nice": os.nice(0),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_json(folder: Path, name: str, data: Mapping[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=_plain) + "\n", encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    """numpy scalars and paths in results become JSON numbers and strings."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    Console().print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def log(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}", highlight=False)
