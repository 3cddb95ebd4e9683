"""Folder walking over messy trees: links, loops, hidden and unreadable entries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from glipcli.errors import DataError
from glipcli.io.folder import FolderListing, list_images


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")  # the walk never opens files: content does not matter


def _rel(listing: FolderListing, root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in listing.images]


def test_recursive_sorted_case_insensitive(tmp_path: Path) -> None:
    _touch(tmp_path, "b.JPG", "a.png", "sub/z.Jpeg", "sub/deeper/y.webp", "a b.tif", "c.TIFF", "d.bmp", "sub/x.GIF")
    _touch(tmp_path, "notes.txt", "model.onnx", "noext")
    listing = list_images(tmp_path)
    expected = ["a b.tif", "a.png", "b.JPG", "c.TIFF", "d.bmp", "sub/deeper/y.webp", "sub/x.GIF", "sub/z.Jpeg"]
    assert _rel(listing, tmp_path) == sorted(expected)
    assert listing.skipped == []
    assert all(p.is_absolute() == tmp_path.is_absolute() and p.is_file() for p in listing.images)


def test_order_is_by_relative_posix_path(tmp_path: Path) -> None:
    _touch(tmp_path, "a/x.jpg", "a-b.jpg", "a.jpg", "A/y.jpg")
    names = _rel(list_images(tmp_path), tmp_path)
    assert names == sorted(["a/x.jpg", "a-b.jpg", "a.jpg", "A/y.jpg"])
    assert names == _rel(list_images(str(tmp_path)), tmp_path)


def test_hidden_files_and_dirs_ignored(tmp_path: Path) -> None:
    _touch(tmp_path, ".hidden.jpg", ".cache/a.jpg", "ok/.b.png", "ok/c.png")
    listing = list_images(tmp_path)
    assert _rel(listing, tmp_path) == ["ok/c.png"]
    assert listing.skipped == []


def test_unicode_names(tmp_path: Path) -> None:
    _touch(tmp_path, "日本/猫.jpg", "café.png")
    assert _rel(list_images(tmp_path), tmp_path) == sorted(["日本/猫.jpg", "café.png"])


def test_follows_symlinks_to_files_and_dirs(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _touch(outside, "o.jpg")
    root = tmp_path / "root"
    _touch(root, "r.jpg")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "alias.png").symlink_to(root / "r.jpg")
    listing = list_images(root)
    assert _rel(listing, root) == ["alias.png", "linked/o.jpg", "r.jpg"]
    assert listing.skipped == []


def test_symlink_loops_terminate_and_are_reported(tmp_path: Path) -> None:
    _touch(tmp_path, "a/b/img.jpg")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "a" / "self").symlink_to(".", target_is_directory=True)
    (tmp_path / "root_again").symlink_to(tmp_path, target_is_directory=True)
    listing = list_images(tmp_path)
    assert _rel(listing, tmp_path) == ["a/b/img.jpg"]
    reasons = {p.relative_to(tmp_path).as_posix(): r for p, r in listing.skipped}
    assert set(reasons) == {"a/b/up", "a/self", "root_again"}
    assert all("loop" in r for r in reasons.values())


def test_folder_linked_twice_listed_once_under_shallowest_path(tmp_path: Path) -> None:
    _touch(tmp_path, "deep/er/real/x.jpg")
    (tmp_path / "a_link").symlink_to(tmp_path / "deep" / "er" / "real", target_is_directory=True)
    listing = list_images(tmp_path)
    assert _rel(listing, tmp_path) == ["a_link/x.jpg"]
    ((path, reason),) = listing.skipped
    assert path == tmp_path / "deep" / "er" / "real" and "a_link" in reason


def test_two_sided_link_cycle(tmp_path: Path) -> None:
    (tmp_path / "p").symlink_to("q")
    (tmp_path / "q").symlink_to("p")
    _touch(tmp_path, "ok.jpg")
    listing = list_images(tmp_path)
    assert _rel(listing, tmp_path) == ["ok.jpg"]
    assert sorted(p.name for p, _ in listing.skipped) == ["p", "q"]


def test_broken_symlink_reported(tmp_path: Path) -> None:
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (tmp_path / "gone_dir").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    listing = list_images(tmp_path)
    assert listing.images == []
    reasons = dict(listing.skipped)
    assert set(reasons) == {tmp_path / "gone.jpg", tmp_path / "gone_dir"}
    assert "broken symbolic link" in reasons[tmp_path / "gone.jpg"]
    assert "missing.jpg" in reasons[tmp_path / "gone.jpg"]


def test_non_regular_file_with_image_name(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    _touch(tmp_path, "dir.jpg/inner.png")  # a folder named like an image is walked, not listed
    listing = list_images(tmp_path)
    assert _rel(listing, tmp_path) == ["dir.jpg/inner.png"]
    assert listing.skipped == [(tmp_path / "pipe.jpg", "not a regular file")]


def test_unreadable_directory_is_skipped_not_raised(tmp_path: Path) -> None:
    _touch(tmp_path, "ok/a.jpg", "locked/b.jpg")
    locked = tmp_path / "locked"
    locked.chmod(0)
    try:
        listing = list_images(tmp_path)
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reads")
        assert _rel(listing, tmp_path) == ["ok/a.jpg"]
        ((path, reason),) = listing.skipped
        assert path == locked and "unreadable" in reason
    finally:
        locked.chmod(0o755)


def test_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope: folder not found"):
        list_images(tmp_path / "nope")
    _touch(tmp_path, "file.jpg")
    with pytest.raises(DataError, match=r"file\.jpg: not a folder"):
        list_images(tmp_path / "file.jpg")


def test_root_may_be_a_symlink(tmp_path: Path) -> None:
    _touch(tmp_path, "real/a.jpg")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    listing = list_images(tmp_path / "alias")
    assert listing.images == [tmp_path / "alias" / "a.jpg"]


def test_unreadable_directory_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same as above where chmod cannot deny (root): the OS refusal is injected instead."""
    _touch(tmp_path, "ok/a.jpg", "locked/b.jpg")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    listing = list_images(tmp_path)
    assert _rel(listing, tmp_path) == ["ok/a.jpg"]
    assert listing.skipped == [(tmp_path / "locked", "unreadable folder: Permission denied")]
    with pytest.raises(DataError, match=r"locked: cannot read folder \(Permission denied\)"):
        list_images(tmp_path / "locked")
