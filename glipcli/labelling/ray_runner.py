"""The Ray engine of ``glip label``: the same labels as the local engine, from a pool of Ray workers.

:func:`glipcli.labelling.folder.label_folder` lists the folder, assigns ids, opens the journal and writes the
output exactly as for the local engine; only the images still to do come here, as blocks of the
listing (``batch_size`` images, so batches, and scores, are those of a local run):

- Ray Data tasks read and decode each block (bad files become the same skip reasons as locally);
- an actor pool (``num_workers`` actors, ``gpus_per_worker`` GPUs each) holds one Detector per
  actor (ONNX sessions, text features cached) and labels the blocks through the same
  :func:`glipcli.labelling.records.label_block` as the local engine;
- each actor appends its records to its own journal shard in ``<out>.journal.d/``, fsynced per
  image, so a crash anywhere loses only the images in flight; ``label_folder`` then merges the
  shards with the journal by id into one COCO/YOLO output.

Blocks reach each actor in listing order (the dataset preserves order), so a shard is sorted by
id; an actor that ever got an earlier block would start a new shard rather than go back.

Ray is imported only here, when this engine is asked for. Paths are read by the workers, so on a
multi-node cluster the folder, the model bundle and the output must be on storage every node sees
at the same path, and glipcli must be installed on every node.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import numpy as np

from glipcli import errors
from glipcli.api import Detector, PreparedPrompt
from glipcli.errors import ConfigError, DataError, GlipError, ImageError
from glipcli.io.folder import FolderListing
from glipcli.io.images import IMAGE_EXTENSIONS, decode_image_bytes, decode_or_reason, load_image
from glipcli.io.journal import Journal
from glipcli.labelling.journals import open_shard
from glipcli.labelling.records import Block, label_block

INSTALL_HINT = 'pip install "glipcli[ray]"'
_WORKER_ERROR = re.compile(r"^glipcli\.errors\.(\w+): (.*)$", re.MULTILINE)
DECODE_CPUS = 0.5
"""Ray CPUs a decoding task reserves: decoding is light next to the model. Being unlike the
workers' request also keeps Ray Data from fusing decoding into the workers, where it would no
longer overlap inference."""


def import_ray() -> ModuleType:
    """``ray`` with Ray Data, or a one-line ConfigError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra, not only ray core)
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray Data, which is not installed: {INSTALL_HINT}") from None
    return ray


def check_arguments(num_workers: int, gpus_per_worker: float) -> None:
    """Refuse bad pool sizes and a missing Ray before the model loads or any journal exists."""
    if num_workers < 1:
        raise ConfigError(f"num workers must be at least 1, got {num_workers}")
    if gpus_per_worker < 0:
        raise ConfigError(f"gpus per worker must be 0 or more, got {gpus_per_worker}")
    import_ray()


class RayLabeller:
    """The Ray engine for :func:`glipcli.labelling.folder.label_folder`: a context manager that connects to Ray.

    Uses the Ray this process is connected to, else connects to ``address`` (``None``: a new
    local Ray, or ``RAY_ADDRESS``) and disconnects on exit. Each actor reserves ``threads`` CPUs
    (default 1) and runs ONNX Runtime with that many threads.
    """

    def __init__(
        self,
        *,
        shards: Path,
        header: dict[str, Any],
        filesystem: Any,
        model: Path,
        device: str,
        threads: int | None,
        size: str,
        namer: bool,
        prepared: PreparedPrompt,
        threshold: float,
        limit: int,
        address: str | None,
        num_workers: int,
        gpus_per_worker: float,
    ) -> None:
        self.address = address
        self.num_workers = num_workers
        self.gpus_per_worker = gpus_per_worker
        self.cpus = threads or 1
        # workers need not share this process's working folder: local paths go absolute
        self.worker_kwargs = {
            "model": model.absolute(),
            "device": device,
            "threads": self.cpus,
            "size": size,
            "namer": namer,
            "prepared": prepared,
            "threshold": threshold,
            "limit": limit,
            "shards": shards.absolute(),
            "header": header,
        }
        self.filesystem = filesystem  # pyarrow's, for a folder given by URL; None: local paths
        self.started = False

    def __enter__(self) -> RayLabeller:
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            self.started = True
        try:
            _check_resources(ray.cluster_resources(), self.num_workers, self.cpus, self.gpus_per_worker)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            import_ray().shutdown()
            self.started = False

    def __call__(self, todo: list[Block], done: set[str], journal: Journal) -> Iterator[bool]:
        """Label the ``todo`` blocks on Ray; yield, per image journaled (in a shard), whether it was skipped."""
        if not todo:
            return
        ray = import_ray()
        rows = [
            {
                "ids": [image_id for image_id, _, _ in block],
                "files": [rel for _, rel, _ in block],
                "paths": [str(path if self.filesystem else path.absolute()) for _, _, path in block],
                "done": [rel in done for _, rel, _ in block],
            }
            for block in todo
        ]
        dataset = (
            ray.data.from_items(rows)
            .map(decode_block, fn_kwargs={"filesystem": self.filesystem}, num_cpus=DECODE_CPUS)
            .map_batches(
                Worker,
                batch_size=1,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=self.num_workers),
                num_cpus=self.cpus,
                num_gpus=self.gpus_per_worker or None,
                fn_constructor_kwargs=self.worker_kwargs,
            )
        )
        dataset.context.execution_options.preserve_order = True
        dataset.context.enable_progress_bars = False  # label_folder reports progress itself
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                for flags in batch.column("skipped").to_pylist():
                    yield from flags
        except ray.exceptions.RayError as exc:
            cause = _glip_error(exc)
            if cause is None:
                raise
            raise cause from None


def _check_resources(cluster: dict[str, float], num_workers: int, cpus: int, gpus: float) -> None:
    """Ray Data waits forever for resources the cluster lacks: refuse such a pool up front."""
    need = num_workers * cpus + DECODE_CPUS
    if cluster.get("CPU", 0) < need:
        raise ConfigError(
            f"{num_workers} Ray workers with {cpus} CPUs each, plus decoding, need {need:g} CPUs; the cluster "
            f"has {cluster.get('CPU', 0):g}: use fewer --num-workers or --threads"
        )
    if gpus and cluster.get("GPU", 0) < num_workers * gpus:
        raise ConfigError(
            f"{num_workers} Ray workers with {gpus:g} GPUs each need {num_workers * gpus:g} GPUs; the cluster "
            f"has {cluster.get('GPU', 0):g}: use fewer --num-workers or less --gpus-per-worker"
        )


def list_url(url: str) -> tuple[Path, FolderListing, Any]:
    """(folder path in its filesystem, listing, pyarrow filesystem) of a folder given by URL.

    Any URL pyarrow opens (file://, s3://, gs://, hdfs://; credentials from the environment).
    Ids and names follow the local rules (sorted relative paths, hidden names and other
    extensions ignored); object stores have no links, devices or unreadable folders to skip.
    """
    import pyarrow.fs

    try:
        filesystem, base = pyarrow.fs.FileSystem.from_uri(url)
        root = filesystem.get_file_info(base)
        entries = (
            []
            if root.type != pyarrow.fs.FileType.Directory
            else filesystem.get_file_info(pyarrow.fs.FileSelector(base, recursive=True))
        )
    except (OSError, ValueError) as exc:
        raise DataError(f"{url}: cannot list folder ({str(exc).splitlines()[0]})") from None
    if root.type == pyarrow.fs.FileType.NotFound:
        raise DataError(f"{url}: folder not found")
    if root.type != pyarrow.fs.FileType.Directory:
        raise DataError(f"{url}: not a folder")
    names = []
    for entry in entries:
        rel = PurePosixPath(entry.path).relative_to(PurePosixPath(base))
        visible = not any(part.startswith(".") for part in rel.parts)
        if entry.type == pyarrow.fs.FileType.File and visible and rel.suffix.lower() in IMAGE_EXTENSIONS:
            names.append(rel.as_posix())
    return Path(base), FolderListing(images=[Path(base, name) for name in sorted(names)], skipped=[]), filesystem


def decode_block(row: dict[str, Any], filesystem: Any) -> dict[str, Any]:
    """A Ray Data task: read and decode the images of one block, as raw pixels or skip reasons."""
    load = load_image if filesystem is None else functools.partial(_load_url, filesystem)
    images = [decode_or_reason(Path(path), load) for path in row["paths"]]
    return {
        "ids": list(row["ids"]),
        "files": list(row["files"]),
        "done": list(row["done"]),
        "pixels": [image.tobytes() if isinstance(image, np.ndarray) else b"" for image in images],
        "shapes": [list(image.shape[:2]) if isinstance(image, np.ndarray) else [0, 0] for image in images],
        "reasons": [image if isinstance(image, str) else None for image in images],
    }


class Worker:
    """A Ray actor: one Detector, labelling blocks into its own journal shard."""

    def __init__(
        self,
        model: Path,
        device: str,
        threads: int,
        size: str,
        namer: bool,
        prepared: PreparedPrompt,
        threshold: float,
        limit: int,
        shards: Path,
        header: dict[str, Any],
    ) -> None:
        self.detector = Detector.load(model, device=device, threads=threads, size=size, namer=namer)
        self.prepared = prepared
        self.threshold = threshold
        self.limit = limit
        self.shards = shards
        self.header = header
        self.journal: Journal | None = None
        self.last_id = 0

    def __call__(self, batch: Any) -> dict[str, list[list[bool]]]:
        return {"skipped": [self._label(row) for row in batch.to_pylist()]}

    def _label(self, row: dict[str, Any]) -> list[bool]:
        items = [
            (image_id, rel, reason if reason is not None else _pixels(data, shape))
            for image_id, rel, data, shape, reason in zip(
                row["ids"], row["files"], row["pixels"], row["shapes"], row["reasons"], strict=True
            )
        ]
        done = {image_id for image_id, finished in zip(row["ids"], row["done"], strict=True) if finished}
        records = [
            record
            for record in label_block(self.detector, self.prepared, items, self.threshold, self.limit)
            if record["id"] not in done  # done before a crash; rerun only to batch alike
        ]
        if not records:
            return []
        if self.journal is None or records[0]["id"] < self.last_id:
            if self.journal is not None:
                self.journal.close()
            self.journal = open_shard(self.shards, self.header)
        for record in records:
            self.journal.append(record)
        self.last_id = records[-1]["id"]
        return ["skipped" in record for record in records]

    def __del__(self) -> None:
        if getattr(self, "journal", None) is not None:
            self.journal.close()


def _load_url(filesystem: Any, path: Path) -> np.ndarray:
    """:func:`glipcli.io.images.load_image` for a file in a pyarrow filesystem."""
    try:
        with filesystem.open_input_file(str(path)) as stream:
            data = stream.readall()
    except OSError as exc:
        raise ImageError(f"{path}: unreadable: {str(exc).splitlines()[0]}") from None
    return decode_image_bytes(data, str(path))


def _pixels(data: bytes, shape: list[int]) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).reshape(shape[0], shape[1], 3)


def _glip_error(exc: BaseException) -> GlipError | None:
    """The GlipError a worker raised. Ray passes it on only as text, in the traceback it carries."""
    found = _WORKER_ERROR.findall(str(exc))
    if not found:
        return None
    name, message = found[-1]
    kind = getattr(errors, name, None)
    return kind(message) if isinstance(kind, type) and issubclass(kind, GlipError) else None
