"""Path arguments: what a name on the command line is, and whether an output can be written there.

Checked before any model loads, so a typo costs nothing and fails in one line naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from glipcli.errors import ConfigError


def exists(arg: str | Path, kind: str = "any") -> bool:
    """Whether ``arg`` names a file, folder or anything; False for text no file system takes as a name."""
    path = Path(arg)
    try:
        return {"file": path.is_file, "dir": path.is_dir, "any": path.exists}[kind]()
    except (OSError, ValueError):  # e.g. a prompt longer than the longest file name
        return False


def check_writable(path: Path) -> None:
    """Fail before any work when ``path`` could not be created (not a folder, no permission)."""
    if exists(path, "dir"):
        raise ConfigError(f"{path} is a folder; give a file name")
    parent = path.parent
    while not exists(parent) and parent != parent.parent:
        parent = parent.parent
    if not exists(parent, "dir") or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: {parent} is not a writable folder")


def write_json(path: Path, document: Any) -> None:
    """``--json FILE``: written atomically; a failure (a full disk) is one line naming the file."""
    from glipcli.io.coco import write_json_atomic

    try:
        write_json_atomic(path, document)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
