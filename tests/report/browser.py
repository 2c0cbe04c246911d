"""Headless Chromium (Debian's `chromium`), driven by its own flags: --dump-dom and --screenshot.

No driver library and no download: the test opens the report as a user's browser would, lets its inline
script run (it records on <body> how many images loaded), and reads the DOM back.
"""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

TIMEOUT = 120


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(args: list[str]) -> subprocess.CompletedProcess:
    exe = chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed (scripts/setup.sh installs it as root)")
    with tempfile.TemporaryDirectory(prefix="dp-chromium-") as profile:
        flags = ["--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=15000"]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=TIMEOUT, check=False)


def dump_dom(page: Path) -> str:
    """The page's DOM after load (scripts run), as Chromium serialises it."""
    result = _run(["--dump-dom", Path(page).resolve().as_uri()])
    if result.returncode != 0 or "<body" not in result.stdout:
        raise RuntimeError(f"chromium --dump-dom failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def screenshot(page: Path, out: Path, width: int = 1400, height: int = 3000) -> Path:
    out = Path(out).resolve()
    result = _run([f"--window-size={width},{height}", f"--screenshot={out}", Path(page).resolve().as_uri()])
    if result.returncode != 0 or not out.exists():
        raise RuntimeError(f"chromium --screenshot failed ({result.returncode}): {result.stderr[-2000:]}")
    return out


class Elements(html.parser.HTMLParser):
    """Every start tag's attributes, by tag name."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: dict[str, list[dict]] = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.setdefault(tag, []).append(dict(attrs))
