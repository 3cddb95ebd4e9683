"""``python -m bench``: every benchmark of glipcli in one command, tables on screen, JSON on disk.

    python -m bench --quick                      # reduced model only, well under a minute once cached
    python -m bench                              # + GLIP-T-sized model at 480x800 and 800x1333
    python -m bench --only vocab,precision --threads 1
    python -m bench --only precision --nano-bundle exported/glip-nano --nano-data runs/val_seen

Benchmarks (``--only``): ort_vs_torch (per-graph timings and ORT op profiles), sessions (ORT
session options against ONNX Runtime's defaults), vocab (chunk sharing with a 1,203-class prompt), precision
(fp32 / int8 / fp16), startup (``glip detect`` one image -> JSON against ``python -c "import numpy,
onnxruntime, cv2"``, glip-nano), label_throughput (``glip label`` end-to-end against model-only
images/s, glip-nano and the reduced model). Each writes ``<out>/<name>.json`` with the machine and its load average.
Exported bundles are cached in ``bench/.cache`` (GLIP-T: minutes to export, once).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common, models
from bench import ort_profile as profile

BENCHMARKS = ("ort_vs_torch", "sessions", "vocab", "precision", "startup", "label_throughput")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced model only, fewer rounds: < 1 min once cached")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated of {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=models.REPO / "runs" / "bench", help="JSON folder (runs/bench)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for ORT and torch (all)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (quick 2, full 3)")
    parser.add_argument("--cache", type=Path, default=models.CACHE, help="exported bundles (bench/.cache)")
    parser.add_argument("--reference", type=Path, default=None, help="reference oracle folder (reduced.pth)")
    parser.add_argument(
        "--extra-bundle",
        action="append",
        default=[],
        metavar="MODEL:LABEL=DIR",
        help="ort_vs_torch: also time this export of the same weights, e.g. glip-t:factored=/tmp/b",
    )
    parser.add_argument("--vocab-classes", type=int, default=None, help="vocab prompt classes (quick 300, full 1203)")
    parser.add_argument("--vocab-images", type=int, default=None, help="images in the vocab folder (quick 2, full 4)")
    parser.add_argument("--nano-bundle", type=Path, default=None, help="precision: glip-nano fp32 bundle for mAP")
    parser.add_argument("--nano-data", type=Path, default=None, help="precision: COCO dataset folder")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in BENCHMARKS]
    if unknown or not only:
        wrong = ", ".join(unknown) or "(none)"
        parser.error(f"--only: unknown benchmark(s) {wrong}; choose from {', '.join(BENCHMARKS)}")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if (args.nano_bundle is None) != (args.nano_data is None):
        parser.error("--nano-bundle and --nano-data go together")
    args.only = only
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.extra = _extra_bundles(parser, args.extra_bundle)
    return args


def _extra_bundles(parser: argparse.ArgumentParser, specs: list[str]) -> dict[str, dict[str, Path]]:
    extra: dict[str, dict[str, Path]] = {}
    for spec in specs:
        model, _, rest = spec.partition(":")
        label, _, folder = rest.partition("=")
        if model not in models.MODELS or not label or not folder:
            parser.error(f"--extra-bundle {spec!r}: expected MODEL:LABEL=DIR with MODEL in {', '.join(models.MODELS)}")
        extra.setdefault(model, {})[label] = Path(folder)
    return extra


class Plan:
    """Sizes, rounds and models of a run: --quick keeps to the reduced model and its own size."""

    def __init__(self, args: argparse.Namespace) -> None:
        quick = args.quick
        self.repeats = args.repeats or (2 if quick else 3)
        self.models = ["reduced"] if quick else ["reduced", "glip-t"]
        self.sizes = {
            "reduced": [(320, 533)] if quick else [(320, 533), (800, 1333)],
            "glip-t": [(480, 800), (800, 1333)],
        }
        self.variant_size = {"reduced": (320, 533), "glip-t": (800, 1333)}  # peak memory matters most there
        every = tuple(n for n in profile.VARIANTS if n != "all_cores")
        self.variants = {
            "reduced": ("ort_defaults", "no_mem_reuse") if quick else every,
            "glip-t": ("ort_defaults", "no_mem_reuse", "no_spinning"),
        }
        if args.threads != (os.cpu_count() or 1) and not quick:
            self.variants = {m: (*v, "all_cores") for m, v in self.variants.items()}
        self.vocab_images = args.vocab_images or (2 if quick else 4)
        self.vocab_classes = args.vocab_classes or (300 if quick else 1203)
        self.fp16 = not quick
        self.startup_rounds = 5 if quick else 9
        self.label_images, self.label_repeats = (16, 5) if quick else (48, 7)


class Runner:
    def __init__(self, args: argparse.Namespace, log: Callable[[str], None] = common.log) -> None:
        self.args = args
        self.plan = Plan(args)
        self.log = log
        self._models: dict[str, Any] = {}

    def model(self, name: str) -> Any:
        if name not in self._models:
            self.log(f"building the {name} PyTorch model")
            self._models[name] = models.build(name, self.args.reference)
        return self._models[name]

    def bundle(self, name: str, precision: str = "fp32") -> Path:
        return models.cached_bundle(self.model(name), name, precision, self.args.cache, log=self.log)

    def run(self) -> dict[str, Path]:
        written = {}
        for benchmark in self.args.only:
            start = time.time()
            load_before = os.getloadavg()
            result = getattr(self, benchmark)()
            result["machine"] = common.machine(self.args.threads)
            result["machine"]["load_average_before"] = [round(v, 2) for v in load_before]
            result["seconds"] = round(time.time() - start, 1)
            result["command"] = " ".join(["python -m bench", *self.args.argv])
            written[benchmark] = common.write_json(self.args.out, benchmark, result)
            self.log(f"{benchmark}: {result['seconds']} s -> {written[benchmark]}")
        return written

    def ort_vs_torch(self) -> dict[str, Any]:
        from bench import ort_vs_torch

        results = []
        for name in self.plan.models:
            result = ort_vs_torch.compare(
                self.model(name),
                name,
                self.bundle(name),
                self.plan.sizes[name],
                self.args.threads,
                self.plan.repeats,
                extra=self.args.extra.get(name),
                log=self.log,
            )
            ort_vs_torch.print_result(result)
            results.append(result)
        return {"benchmark": "ort_vs_torch", "models": results}

    def sessions(self) -> dict[str, Any]:
        from glipcli.runtime.bundle import load_bundle

        results = []
        for name in self.plan.models:
            bundle_dir = self.bundle(name)
            bundle = load_bundle(bundle_dir, verify_hashes=False)
            height, width = self.plan.variant_size[name]
            feed = _head_feed(bundle_dir, models.scene(bundle.config, height, width), self.args.threads)
            self.log(f"sessions: {name} head graph at {height}x{width}")
            variants = profile.session_variants(
                bundle.graph_path("head"), feed, self.args.threads, self.plan.repeats, self.plan.variants[name]
            )
            results.append({"model": name, "graph": "head", "image_hw": [height, width], "variants": variants})
            keys = ("create_s", "create_peak_mb", "session_mb", "run_peak_mb", "run_ms", "speedup_vs_first")
            rows = [[k, *(v.get(m, "-") for m in keys)] for k, v in variants.items()]
            common.print_table(
                f"{name} head at {height}x{width}: ONNX Runtime session options",
                ["variant", "create s", "create peak MB", "session MB", "run peak MB", "run ms", "speedup"],
                rows,
            )
        return {"benchmark": "sessions", "models": results, "threads": self.args.threads}

    def vocab(self) -> dict[str, Any]:
        from bench import vocab

        result = vocab.compare(
            self.bundle("reduced"),
            "reduced",
            self.plan.vocab_images,
            max(1, self.plan.repeats - 1),
            self.args.threads,
            self.plan.vocab_classes,
            log=self.log,
        )
        vocab.print_result(result)
        return {"benchmark": "vocab", **result}

    def precision(self) -> dict[str, Any]:
        from bench import precision

        reference = models.reference_dir(self.args.reference)
        nano = (self.args.nano_bundle, self.args.nano_data) if self.args.nano_bundle else None
        result = precision.compare(
            self.bundle("reduced"),
            "reduced",
            reference / "image_public.png",
            self.args.threads,
            self.plan.repeats + 1,
            self.args.cache,
            fp16_dir=self.bundle("reduced", "fp16") if self.plan.fp16 else None,
            nano=nano,
            log=self.log,
        )
        precision.print_result(result)
        return {"benchmark": "precision", **result}

    def startup(self) -> dict[str, Any]:
        from bench import startup

        result = startup.measure("glip-nano", self.plan.startup_rounds, log=self.log)
        startup.print_result(result)
        return {"benchmark": "startup", **result}

    def label_throughput(self) -> dict[str, Any]:
        from bench import label_throughput

        results = []
        for name, model in (("glip-nano", "glip-nano"), ("reduced", self.bundle("reduced"))):
            self.log(f"label_throughput: {name}, {self.plan.label_images} images")
            result = label_throughput.measure(
                model, self.plan.label_images, self.plan.label_repeats, threads=self.args.threads
            )
            label_throughput.print_result(result)
            results.append(result)
        return {"benchmark": "label_throughput", "models": results}


def _head_feed(bundle_dir: Path, images: Any, threads: int) -> dict[str, Any]:
    """The head graph's inputs for ``images``, computed by the bundle's text and backbone graphs."""
    from bench.ort_vs_torch import head_feed, text_inputs
    from glipcli.runtime.bundle import load_bundle
    from glipcli.runtime.sessions import make_session

    bundle = load_bundle(bundle_dir, verify_hashes=False)
    ids, mask = text_inputs(bundle_dir)
    text_session = make_session(bundle.graph_path("text"), "cpu", threads)
    (text,) = text_session.run(None, {"input_ids": ids, "attention_mask": mask})
    levels = make_session(bundle.graph_path("backbone"), "cpu", threads).run(None, {"images": images})
    return head_feed(levels, text, mask)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    return Runner(args).run()
