"""The README's screenshot of a report (docs/img/report.png): a semdedup + dbp run over the shipped sample
data (Fashion-MNIST shards) plus copies and bad samples, opened in headless Chromium.

    .venv/bin/python tests/report/screenshot.py [OUT.png]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(HERE.parent)]

from browser import screenshot  # noqa: E402
from reportdemo import DEMO_POLICY, write_demo_source  # noqa: E402


def main(out: Path) -> None:
    from PIL import Image

    from datapruner.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        src = write_demo_source(Path(tmp) / "sample", ROOT / "datapruner/data/sample", copies=12)
        run = Path(tmp) / "run"
        try:
            cli(["score", str(src), "--keep", "0.3", "--out", str(run), "--config", str(ROOT / "configs/offline-demo.yaml"),
                 "-q", *DEMO_POLICY])
        except SystemExit as exc:
            if exc.code:
                raise
        shot = screenshot(run / "report/index.html", Path(tmp) / "shot.png", 1280, 2400)
        image = Image.open(shot).convert("RGB")
        image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs/img/report.png")
