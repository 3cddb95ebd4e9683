"""Finding the images in a folder tree, whatever the tree holds.

Nothing found while walking raises: unreadable directories, broken links and loops become
``skipped`` entries the CLI can report, so one bad corner never stops a labelling run.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from glipcli.errors import DataError
from glipcli.io.images import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class FolderListing:
    images: list[Path]  # root / relative path, sorted by relative POSIX path
    skipped: list[tuple[Path, str]]  # (path, reason), in walk order


def list_images(root: str | Path) -> FolderListing:
    """All images under ``root``, recursively, following symbolic links without ever looping.

    Hidden files and directories (name starting with ".") are ignored. Extensions are matched
    case-insensitively against IMAGE_EXTENSIONS. A directory reachable twice (through a link) is
    walked once, under its shallowest path (ties: the first by name); the others are ``skipped``.
    """
    root = Path(root)
    try:
        root_stat = root.stat()
    except FileNotFoundError:
        raise DataError(f"{root}: folder not found") from None
    except OSError as e:
        raise DataError(f"{root}: cannot read folder ({e.strerror})") from None
    if not stat.S_ISDIR(root_stat.st_mode):
        raise DataError(f"{root}: not a folder")

    images: list[tuple[str, Path]] = []
    skipped: list[tuple[Path, str]] = []
    visited: dict[tuple[int, int], Path] = {_identity(root_stat): root}
    queue: deque[Path] = deque([root])  # breadth-first: a folder is kept under its shallowest path
    while queue:
        directory = queue.popleft()
        try:
            with os.scandir(directory) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as e:
            if directory == root:
                raise DataError(f"{root}: cannot read folder ({e.strerror})") from None
            skipped.append((directory, f"unreadable folder: {e.strerror}"))
            continue
        for entry in entries:
            path = directory / entry.name
            try:
                entry_stat = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                reason = f"broken symbolic link to {_link_target(path)}" if entry.is_symlink() else "vanished"
                skipped.append((path, reason))
                continue
            except OSError as e:
                skipped.append((path, f"unreadable: {e.strerror}"))
                continue
            if stat.S_ISDIR(entry_stat.st_mode):
                first = visited.setdefault(_identity(entry_stat), path)
                if first is path:
                    queue.append(path)
                elif _is_within(path, first):
                    skipped.append((path, f"symbolic link loop back to {first}"))
                else:
                    skipped.append((path, f"same folder as {first}, listed there"))
            elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                if stat.S_ISREG(entry_stat.st_mode):
                    images.append((path.relative_to(root).as_posix(), path))
                else:
                    skipped.append((path, "not a regular file"))
    images.sort(key=lambda item: item[0])
    return FolderListing(images=[path for _, path in images], skipped=skipped)


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _is_within(path: Path, ancestor: Path) -> bool:
    return ancestor == path or ancestor in path.parents


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:  # replaced or removed since the walk saw it
        return "?"
