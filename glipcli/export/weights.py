"""Where a checkpoint comes from: a local path or ``hf://REPO/FILE`` through the Hugging Face cache.

Downloads happen only when a user asks for hub weights and the machine is online; offline and
not cached, the error says exactly what to download and where to put it.
"""

from __future__ import annotations

from pathlib import Path

from glipcli.config import HF_REPO, PRESETS
from glipcli.errors import CheckpointError, ConfigError

HF_SCHEME = "hf://"


def default_weights(preset_name: str) -> str:
    """The official checkpoint of a preset, as an hf:// reference."""
    entry = PRESETS.get(preset_name)
    if entry is None or entry.checkpoint is None:
        raise ConfigError(f"config {preset_name!r} has no released checkpoint: give --weights PATH")
    return f"{HF_SCHEME}{HF_REPO}/{entry.checkpoint}"


def parse_hf(spec: str) -> tuple[str, str]:
    rest = spec[len(HF_SCHEME) :]
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts):
        raise CheckpointError(f"bad hub reference {spec!r}: expected hf://OWNER/REPO/FILE")
    return "/".join(parts[:2]), "/".join(parts[2:])


def resolve_weights(spec: str) -> Path:
    """A local checkpoint path for ``spec`` (a path or hf://OWNER/REPO/FILE)."""
    if not spec.startswith(HF_SCHEME):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} not found")
        return path
    repo, filename = parse_hf(spec)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - a dependency
        raise CheckpointError("huggingface_hub is not installed; download the checkpoint by hand") from None
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, local_files_only=True))
    except Exception:  # not in the cache: try the network below
        pass
    try:
        from huggingface_hub.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as exc:  # offline, unknown file, no permission: all end the same way for users
        url = f"https://huggingface.co/{repo}/resolve/main/{filename}"
        why = "the hub is unreachable (offline?)" if _is_offline(exc) else type(exc).__name__
        raise CheckpointError(
            f"cannot download {filename}: {why}; download {url} on a machine with network access "
            "and pass the file with --weights PATH (or copy it into the Hugging Face cache)"
        ) from None


def _is_offline(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("connect", "offline", "name or service", "timed out", "resolve", "network"))
