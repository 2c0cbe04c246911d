from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from shardmaker import write_shards  # noqa: E402

from datapruner.config import Config  # noqa: E402

TINY = dict(model="datapruner-tiny", pretrained="none", batch_size=8, num_workers=0, device="cpu")


@pytest.fixture
def tiny_cfg() -> Config:
    return Config(**TINY, clusters=4, shard_size=16)


def _snapshot(roots) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for root in roots for p in sorted(Path(root).rglob("*"))}


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory) -> Path:
    """3 real shards × 20 samples (jpg/png/webp, txt, cls, json uid), 4 colour classes.

    Every test reads these; at the end of the session they (and the project's shipped sample data and
    configs) must be exactly as they were: no test's datapruner run wrote outside its RUN.
    """
    root = tmp_path_factory.mktemp("shards")
    write_shards(root, n_shards=3, per_shard=20)
    project = Path(__file__).resolve().parents[1]
    inputs = [root, project / "datapruner/data/sample", project / "configs"]
    before = _snapshot(inputs)
    yield root
    assert _snapshot(inputs) == before, "a test wrote into an input folder"


@pytest.fixture(scope="session")
def scored_run(tmp_path_factory, shard_dir) -> Path:
    """One end-to-end `score` run over shard_dir (with text embeddings, for clip_score), shared read-only by the tests."""
    from datapruner import api

    run = tmp_path_factory.mktemp("scored") / "run"
    api.score(str(shard_dir), run, 0.3, Config(**TINY, clusters=4, shard_size=16, embed_text=True), progress=False)
    return run


def _private_copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


@pytest.fixture
def run_copy(scored_run, tmp_path) -> Path:
    """A private copy of the shared run, for tests that change it."""
    return _private_copy(scored_run, tmp_path)


@pytest.fixture
def one_thread():
    """Single-threaded torch, so seeded trainings are bit-reproducible."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A semdedup + dbp run (end to end, tiny random-init model, through the CLI) over test shards with
    copies and bad samples: what the report tests look at."""
    from typer.testing import CliRunner

    sys.path.insert(0, str(Path(__file__).parent / "report"))
    from reportdemo import DEMO_POLICY, write_demo_source

    from datapruner.cli import app

    root = tmp_path_factory.mktemp("report-demo")
    src = write_demo_source(root / "src")
    run = root / "run"
    args = ["score", str(src), "--keep", "0.4", "--out", str(run), "--model", "datapruner-tiny", "--pretrained", "none",
            "--device", "cpu", "--batch-size", "16", "--num-workers", "0", "--clusters", "4", "--shard-size", "16",
            "-q", *DEMO_POLICY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def demo_copy(demo_run, tmp_path) -> Path:
    return _private_copy(demo_run, tmp_path)
