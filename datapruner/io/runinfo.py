"""run.json: the resolved config, package versions and the sorted input shard list."""

from __future__ import annotations

import platform
from importlib import metadata

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir

PACKAGES = ("datapruner", "torch", "open_clip_torch", "faiss-cpu", "faiss-gpu", "numpy", "pyarrow", "webdataset", "ray")


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def check_shards(run: RunDir, shards: list[str]) -> None:
    """A run directory belongs to one shard list."""
    if run.run_json.exists():
        previous = run.read_run_json().get("shards")
        if previous is not None and previous != shards:
            raise DataprunerError(
                f"{run.root} was made from a different shard list ({len(previous)} shards, now {len(shards)}); "
                "use a new --out directory"
            )


def start_run(run: RunDir, src: str, shards: list[str], skipped: list[str], cfg: Config) -> None:
    """Record the run's inputs (and the files of SRC that are not shards), config and package versions."""
    run.update_run_json(source=src, shards=shards, skipped=skipped, config=cfg.to_dict(), versions=package_versions())
