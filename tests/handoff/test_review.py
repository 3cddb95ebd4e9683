"""The review page opened for real in headless Chromium: renders, counts right, filters by class."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest

from glipcli.review import write_review
from tests.handoff import clients
from tests.handoff.conftest import Handoff

pytestmark = pytest.mark.skipif(clients.chromium() is None, reason="Chromium not installed (apt-get install chromium)")


def _dom(page: Path, fragment: str = "") -> str:
    done = clients.run_chromium(page.as_uri() + fragment, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _number(dom: str, element: str) -> int:
    found = re.search(rf'id="{element}">(\d+)<', dom)
    assert found, f"#{element} not in the page"
    return int(found.group(1))


def test_review_page_renders_and_filters(handoff: Handoff, tmp_path: Path) -> None:
    (handoff.out / "labels.json.errors.json").write_text('[{"file": "broken.png", "reason": "damaged image"}]')
    page = tmp_path / "review.html"
    summary = write_review(handoff.out / "labels.json", handoff.images, page)
    assert summary.images == len(handoff.coco["images"]) and summary.skipped == 1

    dom = _dom(page)
    assert _number(dom, "match-images") == len(handoff.coco["images"])
    assert _number(dom, "match-boxes") == len(handoff.coco["annotations"])
    assert dom.count('class="card"') == len(handoff.coco["images"])
    assert dom.count('class="box"') == len(handoff.coco["annotations"])
    assert "broken.png" in dom and "damaged image" in dom  # the errors file
    assert handoff.coco["info"]["prompt"] in dom  # the run's settings

    names = {c["id"]: c["name"] for c in handoff.coco["categories"]}
    counts: dict[str, set[int]] = {}
    for a in handoff.coco["annotations"]:
        counts.setdefault(names[a["category_id"]], set()).add(a["image_id"])
    label = max(counts, key=lambda name: len(counts[name]))
    boxes = sum(names[a["category_id"]] == label for a in handoff.coco["annotations"])
    dom = _dom(page, "#classes=" + quote(label))
    assert _number(dom, "match-images") == len(counts[label])
    assert _number(dom, "match-boxes") == boxes
    assert set(re.findall(r'class="box" data-class="([^"]*)"', dom)) == {label}
    assert dom.count('class="box"') == boxes


def test_review_screenshot(handoff: Handoff, tmp_path: Path) -> None:
    """A picture for people to look at (docs/review.png is made the same way by bench/review_page.py)."""
    page = tmp_path / "review.html"
    write_review(handoff.out / "labels.json", handoff.images, page)
    shot = tmp_path / "review.png"
    done = clients.run_chromium(page.as_uri(), f"--screenshot={shot}", "--window-size=1400,900")
    assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
