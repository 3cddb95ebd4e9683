"""What ``glip label --engine ray`` costs next to the local engine, on one machine, in one run.

On one folder, alternating: :func:`glipcli.labelling.folder.label_folder` with the local engine, then with the
Ray engine on a Ray started once beforehand. Each run is timed from the call to its return, with
the moment of every finished image (progress callback), which splits the cost into:

- Ray startup: ``ray.init`` of a local Ray (once per ``glip label --engine ray`` without --address);
- first image: from the call to the first finished image (Ray: scheduling, starting the actors,
  each loading the model; local: loading nothing, the detector is already loaded);
- per image: steady state, (last - first finished image) / (images - 1);
- end: from the last image to the return (merging shards, writing the COCO file), in the total.

Without ``--model`` a randomly initialised bundle of ``--config`` (default glip-nano) is exported
on the fly, which needs torch.

    python -m bench.label_ray --quick
    python -m bench.label_ray --model exported/glip-t --images 64 --cpus 8 --num-workers 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.label_throughput import COMBOS, random_bundle
from glipcli.api import Detector
from glipcli.labelling.folder import label_folder
from glipcli.train.synth import write_detection_set


@dataclass
class Timing:
    total: float
    first: float  # seconds to the first finished image
    per_image: float  # steady-state seconds per image
    end: float  # seconds from the last image to the return

    @property
    def images_per_second(self) -> float:
        return 1 / self.per_image if self.per_image > 0 else float("inf")


def timed_run(folder: Path, prompt: str, out: Path, **kwargs: object) -> Timing:
    """One ``label_folder`` run, with the time of every finished image."""
    moments: list[float] = []
    start = time.perf_counter()
    summary = label_folder(folder, prompt, out, progress=lambda state: moments.append(time.perf_counter()), **kwargs)
    total = time.perf_counter() - start
    out.unlink()
    finished = moments[1:]  # the first call reports the state before any image
    n = len(finished)
    assert n == summary.total >= 2, (n, summary.total)
    return Timing(total, finished[0] - start, (finished[-1] - finished[0]) / (n - 1), start + total - finished[-1])


def median_timing(timings: list[Timing]) -> Timing:
    names = ("total", "first", "per_image", "end")
    return Timing(*(statistics.median(getattr(t, name) for t in timings) for name in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="bundle path or name; default: a random --config bundle exported now")
    parser.add_argument("--config", default="glip-nano", help="preset for the random bundle (default glip-nano)")
    parser.add_argument("--images", type=int, default=48, help="images in the generated folder (default 48)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each engine (default 3)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (default 2)")
    parser.add_argument("--num-workers", type=int, default=1, help="Ray workers (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads, both engines (default 1)")
    parser.add_argument("--quick", action="store_true", help="12 images, 1 repeat: under 2 minutes")
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats = 12, 1
    quiet = {"RAY_DATA_LOG_LEVEL": "ERROR"}  # as glip label: no Ray Data INFO lines around the table
    for key, value in {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **quiet}.items():
        os.environ.setdefault(key, value)
    import ray

    ray_temp = tempfile.mkdtemp(prefix="glipray", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        with tempfile.TemporaryDirectory(prefix="glip-bench-") as tmp:
            work = Path(tmp)
            model = args.model or random_bundle(args.config, work)
            detector = Detector.load(model, device="cpu", threads=args.threads)
            write_detection_set(work / "set", args.images, seed=0, combos=COMBOS, file_ext=".jpg")
            folder = work / "set" / "images"
            prompt = ". ".join(f"{colour} {shape}" for colour, shape in COMBOS)
            common = {"detector": detector, "threshold": 0.0}  # all 100 boxes: post-processing and writing count

            start = time.perf_counter()
            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, _temp_dir=ray_temp)
            ray_startup = time.perf_counter() - start
            ray_kwargs = {"engine": "ray", "device": "cpu", "threads": args.threads, "num_workers": args.num_workers}
            local, remote = [], []
            for _ in range(args.repeats):
                local.append(timed_run(folder, prompt, work / "local.json", **common))
                remote.append(timed_run(folder, prompt, work / "ray.json", **common, **ray_kwargs))
            ray.shutdown()
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)

    here, there = median_timing(local), median_timing(remote)
    print(f"model    {detector.bundle.name}, {args.images} JPEG images, median of {args.repeats} alternating runs")
    print(f"ray      {args.cpus} CPUs, {args.num_workers} worker(s) x {args.threads} thread(s), decoding in tasks")
    print(f"local    {args.threads} thread(s), 2 decoding threads\n")
    n = args.images
    print(f"{'engine':<7}{'total s':>9}{'images/s':>10}{'first image s':>15}{'then ms/image':>15}{'images/s':>10}")
    for name, t in (("local", here), ("ray", there)):
        steady = f"{1000 * t.per_image:15.1f}{t.images_per_second:10.2f}"
        print(f"{name:<7}{t.total:9.2f}{n / t.total:10.2f}{t.first:15.2f}{steady}")
    print(f"\nRay startup (ray.init, once per run without --address): {ray_startup:.1f} s")
    print(f"Ray overhead before the first image (actors, model load): {there.first - here.first:+.1f} s")
    print(f"Ray overhead per image, steady state: {1000 * (there.per_image - here.per_image):+.1f} ms")


if __name__ == "__main__":
    main()
