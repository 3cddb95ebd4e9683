"""Shared fixtures: where the reference oracle lives, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _reference_dir() -> Path | None:
    candidates = [os.environ.get("GLIP_REFERENCE", "")]
    candidates += [str(REPO / "shared" / "reference"), str(REPO.parent / "shared" / "reference")]
    for c in candidates:
        if c and (Path(c) / "case_public.npz").is_file():
            return Path(c)
    return None


REFERENCE = _reference_dir()

needs_reference = pytest.mark.skipif(
    REFERENCE is None, reason="reference oracle not found (set GLIP_REFERENCE or put ../shared/reference beside the repo)"
)


@pytest.fixture(scope="session")
def reference() -> Path:
    if REFERENCE is None:
        pytest.skip("reference oracle not found")
    return REFERENCE


@pytest.fixture(scope="session")
def case(reference: Path):
    import numpy as np

    return dict(np.load(reference / "case_public.npz"))
