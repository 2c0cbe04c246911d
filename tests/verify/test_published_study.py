"""The published Fashion-MNIST study recomputes: every verdict, p-value and CI of docs/verify-study/ (and the
README's verdicts table) comes out of the committed per-seed rows and per-sample test correctness."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from study_readme import PUBLISHED, published_studies, read_published, readme_table  # noqa: E402

from datapruner.verify import claims  # noqa: E402

FOLDER = ROOT / PUBLISHED
STUDIES = published_studies(FOLDER)


def test_the_study_is_published_with_its_per_sample_correctness():
    assert {"ssl", "ssl_pools", "pca"} <= set(STUDIES)
    assert sum(p.stat().st_size for p in FOLDER.rglob("*") if p.is_file()) < 8 * 2 ** 20  # a few MB


@pytest.mark.parametrize("name", STUDIES)
def test_every_published_verdict_recomputes_from_the_committed_rows(name):
    rows = read_published(FOLDER / name)
    assert all(r.get("_test_correct") is not None for r in rows)  # the test-set term is in every test
    recomputed = json.loads(json.dumps(claims.evaluate(rows)))
    assert recomputed == json.loads((FOLDER / name / "claims.json").read_text())


def test_the_readme_verdicts_are_the_published_ones():
    assert readme_table(FOLDER) in (ROOT / "README.md").read_text()
