"""The report in a real browser: every image loads, every section is there, and a screenshot is saved."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from browser import Elements, chromium, dump_dom, screenshot
from PIL import Image

from datapruner.io.rundir import RunDir

pytestmark = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (scripts/setup.sh, as root)")

SECTIONS = ("facts", "counts", "scores", "clusters", "galleries", "duplicates", "invalid", "map", "random")


def test_every_image_loads_and_every_section_is_shown(demo_run, tmp_path):
    page = tmp_path / "index.html"  # a copy elsewhere: the page needs nothing beside it
    shutil.copyfile(RunDir(demo_run).report_html, page)
    dom = Elements(dump_dom(page))
    body = dom.tags["body"][0]
    images = dom.tags.get("img", [])
    assert len(images) >= 20  # plots + gallery + duplicate-group thumbnails
    assert body.get("data-images") == str(len(images)), "the page's load script did not run"
    assert body.get("data-images-broken") == "0", [i.get("alt") for i in images if i.get("data-broken")]
    assert all(i["src"].startswith("data:image/") for i in images)
    assert SECTIONS == tuple(s["id"] for s in dom.tags["section"])

    shot = screenshot(page, tmp_path / "report.png")
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (3000, 1400)
    assert (pixels < 128).mean() > 0.01  # text, plots and thumbnails, not a blank page
