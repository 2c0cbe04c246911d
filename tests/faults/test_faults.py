"""The bad-input contract on every case of badshards.py: each input sample is in the manifest or in
errors/ with a reason of its category, kept samples read back byte-identical, nothing outside RUN."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit import run_cases, table  # noqa: E402
from badshards import CASES  # noqa: E402


@pytest.fixture(scope="module")
def faults_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def audited(faults_root) -> dict:
    rows = run_cases(faults_root)
    print("\n" + table(rows))
    return {r.case: r for r in rows}


def test_the_suite_is_at_least_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", [c.name for c in CASES])
def test_every_sample_is_accounted_for(audited, case):
    row = audited[case]
    assert not row.problems, "\n".join(row.problems)
    assert row.lost == 0


def test_no_unexpected_output_and_nothing_written_outside_run(audited):
    problems = [p for name, r in audited.items() if name.startswith("(") for p in r.problems]
    assert not problems, problems


def test_the_summary_counts_reasons_by_category_only(audited, faults_root):
    import json

    reasons = json.loads((faults_root / "run/manifest/summary.json").read_text())["reasons"]
    invalid = {r for r in reasons if r.startswith("invalid at ")}
    assert "invalid at read: truncated shard" in invalid and "invalid at decode: bad label" in invalid
    assert all(r.count(": ") == 1 for r in invalid), invalid  # "invalid at STAGE: CATEGORY", no detail
    assert len(invalid) <= 12


def test_two_fresh_runs_on_corrupt_images_write_identical_manifests_and_errors(tmp_path):
    from badshards import build_source

    from datapruner import api
    from datapruner.config import Config

    corrupt = [c for c in CASES if c.name in ("corrupt-jpeg", "not-an-image", "empty-image", "too-many-pixels")]
    build_source(tmp_path / "src", corrupt)
    cfg = Config(model="datapruner-tiny", pretrained="none", batch_size=8, num_workers=0, device="cpu", clusters=2)
    for run in ("a", "b"):
        api.score(str(tmp_path / "src"), tmp_path / run, 1.0, cfg, progress=False)

    def files(run: str) -> dict:
        root = tmp_path / run
        return {p.relative_to(root): p.read_bytes() for sub in ("manifest", "errors") for p in (root / sub).rglob("*")
                if p.is_file()}

    assert files("a") == files("b")
    assert len(files("a")) >= 3
