"""Where a checkpoint comes from: a local path or ``hf://REPO/FILE`` through the Hugging Face cache.

Downloads happen only when a user asks for hub weights and the machine is online; offline and
not cached, the error says exactly what to download and where to put it.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from glipcli.errors import CheckpointError, ConfigError
from glipcli.presets import HF_REPO, PRESETS

HF_SCHEME = "hf://"
HUB_TIMEOUT = 3.0  # seconds to open a connection to the hub before calling it unreachable


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
    why = hub_unreachable()
    if why is not None:
        raise _download_error(repo, filename, f"the hub is unreachable ({why})")
    try:
        from huggingface_hub.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as exc:  # offline, unknown file, no permission: all end the same way for users
        why = "the hub is unreachable (offline?)" if _is_offline(exc) else type(exc).__name__
        raise _download_error(repo, filename, why) from None


def hub_unreachable(timeout: float = HUB_TIMEOUT) -> str | None:
    """Why the hub cannot be reached, found in at most ``timeout`` seconds; None when it answers (or a
    proxy stands between, which only the download itself can go through).

    huggingface_hub retries a failed connection five times with back-off: offline, a download
    failed only after ~25 s (36 s for ``glip export``). A TCP connection says the same at once.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urlsplit(constants.ENDPOINT)
    proxies = urllib.request.getproxies()
    if endpoint.hostname is None or proxies.get(endpoint.scheme) or proxies.get("all"):
        return None
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    outcome = [f"no answer from {endpoint.hostname} in {timeout:g} s"]

    def connect() -> None:  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
            outcome[0] = None
        except OSError as exc:
            outcome[0] = f"{endpoint.hostname}: {exc.strerror or exc}"

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout)
    return outcome[0]


def _download_error(repo: str, filename: str, why: str) -> CheckpointError:
    url = f"https://huggingface.co/{repo}/resolve/main/{filename}"
    return CheckpointError(
        f"cannot download {filename}: {why}; download {url} on a machine with network access "
        "and pass the file with --weights PATH (or copy it into the Hugging Face cache)"
    )


def _is_offline(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("connect", "offline", "name or service", "timed out", "resolve", "network"))
