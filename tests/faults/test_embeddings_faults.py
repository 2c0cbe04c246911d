"""The bad-input contract on every hostile embeddings folder of embeddings_cases.py: exit 0 with every
input sample accounted for, or exit 2 with one line naming the file and nothing written; never a
traceback, and DIR's files keep their sha256."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from embeddings_audit import run_cases, table  # noqa: E402
from embeddings_cases import CASES  # noqa: E402


@pytest.fixture(scope="module")
def faults_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embedding-faults")


@pytest.fixture(scope="module")
def audited(faults_root) -> dict:
    outcomes = run_cases(faults_root)
    print("\n" + table(outcomes))
    return {o.case: o for o in outcomes}


def test_the_suite_covers_every_fault_of_the_issue():
    names = {c.name for c in CASES}
    assert len(CASES) >= 43
    for fault in ("parquet-corrupt-footer", "parquet-truncated", "parquet-corrupt-body", "npy-corrupt-header",
                  "npy-truncated-body", "npy-1d", "npy-3d", "npy-int8", "npy-pickled-objects", "npz-pickled-objects",
                  "text-of-another-dimension", "npz-not-a-zip", "npz-truncated", "nan-component",
                  "block-of-nan-inf-zero-rows", "nan-first-of-two-rows-sharing-a-key"):
        assert fault in names


@pytest.mark.parametrize("case", [c.name for c in CASES])
def test_each_case_completes_accounted_or_is_refused_in_one_line(audited, case):
    outcome = audited[case]
    assert not outcome.problems, "\n".join(outcome.problems)
    assert outcome.exit in (0, 2)
    if outcome.exit == 0:
        assert outcome.accounted == outcome.samples


def test_the_summary_counts_bad_embeddings_by_category(audited, faults_root):
    import json

    summary = json.loads((faults_root / "block-of-nan-inf-zero-rows/run/manifest/summary.json").read_text())
    assert summary["reasons"]["invalid at embed: bad embedding"] == 4
