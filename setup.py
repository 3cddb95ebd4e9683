"""Build hook: the wheel carries the embedded model, copied from ``exported/`` at build time.

``exported/glip-nano/`` stays where users and tooling expect it (and where ``glip export`` writes),
so the repository holds one copy; whatever bundle is there when the wheel is built ships as
``glipcli/embedded/glip-nano/``, which glipcli.runtime.bundle resolves with importlib.resources.
Only the files the bundle's manifest names are copied: other exports beside it in ``exported/``
(GLIP-T is 700 MB) never slip into a wheel. Everything else about the build is in pyproject.toml.
"""

from __future__ import annotations

import json
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

EMBEDDED = ("glip-nano",)
SOURCE = Path("exported")
TARGET = Path("glipcli", "embedded")  # glipcli.runtime.bundle.PACKAGED_DIR


def bundle_files(folder: Path) -> list[str]:
    """manifest.json and the files it names (graphs, tokenizer, tuned prompts, the region namer, the
    weights index that glip tune and glip train --init rebuild the PyTorch model from)."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    entries = [*manifest["graphs"].values(), manifest["tokenizer"], *manifest.get("prompts", {}).values()]
    entries += [manifest[key] for key in ("namer", "pytorch_weights") if key in manifest]
    return ["manifest.json", *(entry["file"] for entry in entries)]


class BuildPyWithModels(build_py):
    """build_py, plus the embedded bundles; editable installs read ``exported/`` in place instead."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for name in EMBEDDED:
            for file in bundle_files(SOURCE / name):
                target = Path(self.build_lib, TARGET, name, file)
                self.mkpath(str(target.parent))
                self.copy_file(str(SOURCE / name / file), str(target))


setup(cmdclass={"build_py": BuildPyWithModels})
