"""The run directory of DESIGN section 2: paths, atomic writes and completion markers."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __truediv__(self, rel: str) -> Path:
        return self.root / rel

    @property
    def embeddings_dir(self) -> Path:
        """RUN/embeddings, or the precomputed embeddings directory the run was pointed at."""
        if self.run_json.exists():
            linked = self.read_run_json().get("embeddings_dir")
            if linked:
                return Path(linked)
        return self.root / "embeddings"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    def read_run_json(self) -> dict:
        if not self.run_json.exists():
            raise FileNotFoundError(f"{self.root} is not a datapruner run directory (no run.json); run `datapruner embed` first")
        return json.loads(self.run_json.read_text())

    def update_run_json(self, **fields) -> None:
        info = json.loads(self.run_json.read_text()) if self.run_json.exists() else {}
        info.update(fields)
        write_json(self.run_json, info)

    def part_ids(self) -> list[str]:
        """Zero-padded part ids of the input shards, in sorted shard order."""
        return [part_id(i, len(self.shards())) for i in range(len(self.shards()))]

    def shards(self) -> list[str]:
        return self.read_run_json()["shards"]

    # completion markers: the marker's text is a token of the inputs that produced the part
    def _marker(self, step: str, part: str) -> Path:
        return self.root / "_done" / step / part

    def is_done(self, step: str, part: str, token: str = "") -> bool:
        marker = self._marker(step, part)
        return marker.exists() and marker.read_text() == token

    def mark_done(self, step: str, part: str, token: str = "") -> None:
        with atomic_path(self._marker(step, part)) as tmp:
            tmp.write_text(token)

    def clear(self, rel: str) -> None:
        shutil.rmtree(self.root / rel, ignore_errors=True)


def part_id(index: int, count: int) -> str:
    """DESIGN: the shard index zero-padded to the width of the count."""
    return f"{index:0{len(str(count))}d}"
