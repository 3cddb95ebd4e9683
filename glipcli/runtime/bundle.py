"""Model bundles: a folder with manifest.json, three ONNX graphs and tokenizer.json (and, optionally,
a region namer's graph, glipcli.model.namer).

The manifest is the contract between ``glip export`` (which writes it) and the runtime (which
refuses anything it cannot trust: unknown format version, missing or tampered files, an ONNX
Runtime too old for the graphs).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glipcli.config import GLIPConfig, NamerConfig
from glipcli.digests import sha256_file
from glipcli.errors import BundleError, ConfigError

FORMAT = "glipcli-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GRAPHS = ("text", "backbone", "head")
LEVELS = ("p3", "p4", "p5", "p6", "p7")
"""The backbone graph's outputs and the head graph's inputs: FPN levels, strides 8 to 128."""
MIN_ORT_VERSION = "1.25"  # CPU DeformConv kernel and the opset-19 GridSample the graphs use


VERIFY_ENV = "GLIPCLI_VERIFY"
RACY_NS = 1_000_000_000
VERIFIED_ENTRIES = 512


def verified_sha256(path: Path) -> str:
    """sha256 of a bundle file, remembered while the file is untouched.

    Hashing glip-nano's 33 MB is about 0.03 s of every load, a sixth of what Python takes to import
    numpy, onnxruntime and cv2. Like git's index, a digest is reused while the file's size, inode,
    mtime and ctime are those it was hashed with: rewriting a file changes its ctime, which no user
    can set back (``touch -d`` restores an mtime only), so a tampered or re-exported file is hashed
    again. A digest taken within a second of the file's last change is not kept (a write in the
    same clock tick would not move the times). ``GLIPCLI_VERIFY=full`` always hashes. The record
    is ``verified.json`` in the user cache; losing it only costs a hash.
    """
    if os.environ.get(VERIFY_ENV) == "full":
        return sha256_file(path)
    path = path.resolve()
    stat = path.stat()
    signature = [stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns]
    store = user_cache_dir() / "verified.json"
    try:
        records = json.loads(store.read_text(encoding="utf-8"))
        records = records if isinstance(records, dict) else {}
    except (OSError, ValueError):
        records = {}
    record = records.get(str(path))
    if isinstance(record, list) and record[:4] == signature:
        return str(record[4])
    digest = sha256_file(path)
    if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) > RACY_NS:
        records.pop(str(path), None)
        records[str(path)] = [*signature, digest]
        _write_atomic(store, json.dumps(dict(list(records.items())[-VERIFIED_ENTRIES:])))
    return digest


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` whole or not at all; a cache that cannot be written is not an error."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: dict[str, Any]
    config: GLIPConfig

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def precision(self) -> str:
        return str(self.manifest["precision"])

    def graph_path(self, graph: str) -> Path:
        return self.path / self._graph_entry(graph)["file"]

    def _graph_entry(self, graph: str) -> dict[str, Any]:
        return self.manifest["namer"] if graph == "namer" else self.manifest["graphs"][graph]

    def graph_sha256(self, graph: str) -> str:
        return str(self._graph_entry(graph)["sha256"])

    @property
    def namer(self) -> NamerConfig | None:
        """The region namer's config (glipcli.model.namer) if the bundle carries one."""
        entry = self.manifest.get("namer")
        return NamerConfig.from_dict(entry["config"]) if entry else None

    @property
    def tokenizer_path(self) -> Path:
        return self.path / self.manifest["tokenizer"]["file"]

    @property
    def prompts(self) -> dict[str, Any]:
        """Tuned prompts carried by the bundle (caption -> file of tuned text features)."""
        return dict(self.manifest.get("prompts", {}))


def load_bundle(path: str | Path, verify_hashes: bool = True) -> Bundle:
    """Open a bundle folder, checking format version, files and (optionally) their sha256."""
    root = Path(path)
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"model bundle {root} not found (expected a folder with {MANIFEST})")
    if not manifest_path.is_file():
        raise BundleError(f"{root} is not a model bundle: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path} is unreadable or not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{manifest_path} is not a glipcli bundle manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"bundle {root} has format version {version!r}; this glipcli reads version {FORMAT_VERSION} "
            "(re-export it with this version of glip export)"
        )
    check_onnxruntime(manifest.get("onnxruntime_min_version", MIN_ORT_VERSION))
    files = {g: manifest.get("graphs", {}).get(g) for g in GRAPHS}
    files["tokenizer"] = manifest.get("tokenizer")
    for entry in manifest.get("prompts", {}).values():
        files[f"prompt {entry.get('caption', '')!r}"] = entry
    if "namer" in manifest:
        files["namer"] = manifest["namer"]
    for what, entry in files.items():
        if not isinstance(entry, dict) or "file" not in entry or "sha256" not in entry:
            raise BundleError(f"bundle {root}: manifest has no valid entry for {what}")
        file = root / entry["file"]
        if not file.is_file():
            raise BundleError(f"bundle {root}: {what} file {entry['file']} is missing")
        if verify_hashes and verified_sha256(file) != entry["sha256"]:
            raise BundleError(f"bundle {root}: {entry['file']} does not match its sha256 (corrupted or tampered)")
    bundle = Bundle(path=root, manifest=manifest, config=GLIPConfig.from_dict(manifest["config"]))
    try:
        bundle.namer  # noqa: B018 - validated here, not at first use
    except ConfigError as exc:
        raise BundleError(f"bundle {root}: {exc}") from None
    return bundle


def check_onnxruntime(required: str) -> None:
    try:
        import onnxruntime
    except ImportError:
        raise BundleError("onnxruntime is not installed: pip install onnxruntime-gpu (or onnxruntime)") from None
    have = onnxruntime.__version__
    if _version_tuple(have) < _version_tuple(required):
        raise BundleError(f"this bundle needs ONNX Runtime >= {required}, but {have} is installed")


def user_cache_dir() -> Path:
    base = os.environ.get("GLIPCLI_HOME") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "glipcli" if not os.environ.get("GLIPCLI_HOME") else Path(base)


PACKAGED_DIR = "embedded"
"""Where a wheel holds the embedded models, inside the ``glipcli`` package (setup.py copies them there)."""


def source_models_dir() -> Path:
    """``exported/`` at the top of a source checkout: the embedded models, and ``glip export``'s output."""
    return Path(__file__).resolve().parents[2] / "exported"


def packaged_models_dir() -> Path:
    """The embedded models of an installed wheel (``glipcli/embedded/``); absent in a source checkout.

    pip installs wheels unzipped, so the package's resources are files that ONNX Runtime can open.
    """
    return Path(str(importlib.resources.files("glipcli") / PACKAGED_DIR))


def embedded_models_dir() -> Path:
    """The models that ship with glipcli: in the installed package, else in the checkout's ``exported/``."""
    packaged = packaged_models_dir()
    return packaged if packaged.is_dir() else source_models_dir()


def default_export_dir() -> Path:
    """Where ``glip export`` writes by default: ``exported/`` in a checkout, never into site-packages."""
    return user_cache_dir() / "models" if packaged_models_dir().is_dir() else source_models_dir()


DEFAULT_MODEL = "glip-nano"


def resolve_model(name_or_path: str | Path | None) -> Path:
    """A bundle path, or a name looked up in the embedded models and the user cache directory."""
    spec = str(name_or_path) if name_or_path else DEFAULT_MODEL
    candidate = Path(spec).expanduser()
    if candidate.is_dir() or (os.sep in spec or spec.startswith(".")):
        return candidate
    folders = [embedded_models_dir(), user_cache_dir() / "models"]
    for folder in folders:
        if (folder / spec / MANIFEST).is_file():
            return folder / spec
    names = sorted({p.parent.name for d in folders for p in d.glob(f"*/{MANIFEST}")})
    known = f" (known: {', '.join(names)})" if names else ""
    raise BundleError(f"unknown model {spec!r}: no bundle in {folders[0]} or {folders[1]}{known}")
