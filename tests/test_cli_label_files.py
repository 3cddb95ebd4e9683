"""``glip label`` and the files around it: a GIF among the images, a disk that fills while the output is written.

Both run the embedded glip-nano on a few small images (no torch, a second or two each).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from glipcli.errors import DataError
from glipcli.io import coco
from glipcli.labelling.folder import label_folder
from glipcli.labelling.journals import journal_path

runner = CliRunner()


def _circle(colour: str, size: int = 96) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).ellipse((20, 20, size - 20, size - 20), fill=colour)
    return image


def _folder(root: Path) -> Path:
    root.mkdir(parents=True)
    _circle("red").save(root / "a.png")
    _circle("blue").save(root / "b.gif")
    frames = [_circle("red"), _circle("green")]
    frames[0].save(root / "c.gif", save_all=True, append_images=frames[1:])  # animated: the first frame counts
    return root


def _label(*args: object):
    from glipcli.cli import app

    return runner.invoke(app, ["label", *map(str, args)])


def test_gifs_are_labelled_like_any_image(tmp_path: Path) -> None:
    out = tmp_path / "labels.json"
    result = _label(_folder(tmp_path / "images"), "--prompt", "red circle. blue circle", "--out", out)
    assert result.exit_code == 0, result.output
    images = json.loads(out.read_text())["images"]
    assert [(i["file_name"], i["width"], i["height"]) for i in images] == [
        ("a.png", 96, 96),
        ("b.gif", 96, 96),
        ("c.gif", 96, 96),
    ]


def test_full_disk_while_writing_the_output_is_one_line_and_resume_finishes(tmp_path, monkeypatch) -> None:
    folder = _folder(tmp_path / "images")
    out = tmp_path / "labels.json"

    def no_space(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(coco, "_write_list", no_space)  # fails half-way into the file, as a full disk does
        result = _label(folder, "--prompt", "red circle", "--out", out)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exc_info[0] is SystemExit
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot write {out}: No space left on device;")
    assert str(journal_path(out)) in lines[0] and "--resume" in lines[0] and "free some space" in lines[0]
    assert journal_path(out).is_file() and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the partial file is gone

    resumed = _label(folder, "--prompt", "red circle", "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "3 from the journal" in resumed.stdout
    assert len(json.loads(out.read_text())["images"]) == 3 and not journal_path(out).exists()


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 256 KiB tmpfs: a real ENOSPC (needs root, as on CI machines run as root; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk_keeps_the_journal_and_resume_finishes(tmp_path: Path, tiny_disk: Path) -> None:
    folder = _folder(tmp_path / "images")
    out = tiny_disk / "labels.json"
    filler = tiny_disk / "filler"

    def fill_when_all_are_journaled(state) -> None:
        if state.done == state.total:  # every image is in the journal: the output comes next
            with open(filler, "wb", buffering=0) as f, pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 4096)

    with pytest.raises(DataError, match=f"cannot write {out}: No space left on device; every image is kept"):
        label_folder(folder, "red circle", out, threshold=0.0, progress=fill_when_all_are_journaled)
    assert journal_path(out).is_file() and not out.exists()
    filler.unlink()
    summary = label_folder(folder, "red circle", out, threshold=0.0, resume=True)
    assert summary.resumed == 3 and len(json.loads(out.read_text())["images"]) == 3
