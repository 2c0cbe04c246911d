"""verify --task clip end to end on real shards with the tiny open_clip model, and its verdicts on result rows:
a planted effect is detected, pure noise is inconclusive, and a row that did not converge gates its verdict."""

import json

import numpy as np
import pytest

from datapruner import api
from datapruner.config import Config, load_config
from datapruner.verify import clip_verdicts
from datapruner.verify.clip_eval import METRICS, _hits, _same_caption
from datapruner.verify.clip_methods import CLIP_METHODS
from datapruner.verify.pipeline import VerifySpec
from conftest import TINY

CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs"


def test_clip_task_end_to_end(run_copy, tmp_path):
    """Two seeds, one pruned fraction, with and without KD: every arm sees the same samples, no held-out pair is
    in the training pool, the tables are written and the verdicts recompute from the folder alone."""
    out = tmp_path / "clip"
    spec = VerifySpec(task="clip", methods=("random", "semdedup_dbp", "clip_score"), fractions=(0.5,), seeds=(0, 1),
                      kd_alphas=(0.0, 0.5), epochs=2, batch_size=16, lr=5e-3, workers=1, out=out)
    summary = api.verify(run_copy, spec, Config(**TINY, clusters=4), progress=False)
    rows = json.loads((out / "results.json").read_text())
    assert summary["students_trained"] == 2 * (1 + 3 * 2)  # per seed: the full pool, then 3 methods × (KD, no KD)
    assert len({r["samples_seen"] for r in rows}) == 1
    assert {r["method"] for r in rows if r["fraction"] == 1.0} == {"random", "semdedup_dbp", "clip_score"}
    assert all(0.0 <= r[m] <= 1.0 for r in rows for m in METRICS)
    assert {r["kept"] for r in rows if r["fraction"] == 0.5} == {round(0.5 * summary["n_train"])}
    comps, claims = clip_verdicts.recompute(out)
    assert claims == json.loads((out / "claims.json").read_text())
    assert comps == json.loads((out / "comparisons.json").read_text())
    markdown = (out / "summary.md").read_text()
    assert "| semdedup_dbp | 0.5 | 0.5 |" in markdown and "## Every comparison" in markdown
    assert summary["n_train"] + summary["n_val"] + summary["n_test"] == 60


def test_semdedup_dbp_is_the_shipped_recipe():
    recipe = load_config(CONFIGS / "semdedup-dbp.yaml")
    mine = CLIP_METHODS["semdedup_dbp"]
    assert (recipe.metric, recipe.order, recipe.budget) == (mine["metric"], mine["order"], mine["budget"])
    assert list(recipe.filters) == list(mine["filters"])
    assert {k: recipe.metric_options[k] for k in ("semdedup", "dbp")} == mine["metric_options"]


def test_recall_counts_any_copy_of_the_right_caption():
    same = _same_caption(["a cat", "a dog", "a cat"])
    sim = np.array([[0.1, 0.9, 0.8], [0.9, 0.1, 0.0], [0.2, 0.1, 0.3]])
    assert _hits(sim, same, 1).tolist() == [False, False, True]
    assert _hits(sim, same, 2).tolist() == [True, True, True]


def planted(rng, good: float, converged: bool = True, seeds: int = 5, n_test: int = 400):
    """Result rows of random and of `semdedup` at fraction 0.5, plus the full pool: each student's per-sample
    correctness drawn with probability 0.5 (random, full) or `good` (semdedup)."""
    rows, correct = [], {}
    for seed in range(seeds):
        for method, fraction, p in (("random", 1.0, 0.5), ("random", 0.5, 0.5), ("semdedup", 0.5, good)):
            hits = {m: rng.random(n_test) < p for m in METRICS}
            correct[len(rows)] = hits
            rows.append({"method": method, "fraction": fraction, "alpha": 0.0, "seed": seed, "student_id": len(rows),
                         "converged": converged or method == "random", **{m: float(v.mean()) for m, v in hits.items()}})
    full = [r for r in rows if r["fraction"] == 1.0]
    return rows + [{**r, "method": "semdedup"} for r in full], correct


def verdict_of(rows, correct, claim="beats_random", metric="zero_shot"):
    comps = clip_verdicts.comparisons(rows, correct)
    return next(c for c in comps if (c["claim"], c["metric"], c["method"]) == (claim, metric, "semdedup"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_effect_holds_and_noise_is_inconclusive(seed):
    rng = np.random.default_rng(seed)
    effect = verdict_of(*planted(rng, good=0.7))
    assert effect["verdict"] == "holds" and effect["ci"][0] > 0
    noise = verdict_of(*planted(rng, good=0.5))
    assert noise["verdict"] == "inconclusive"
    assert (noise["ci"][0] <= 0 <= noise["ci"][1]) == (noise["p"] >= 0.05)  # the CI is the test's own


def test_a_row_that_did_not_converge_gates_the_verdict():
    rows, correct = planted(np.random.default_rng(3), good=0.7, converged=False)
    assert verdict_of(rows, correct)["verdict"] == clip_verdicts.NOT_CONVERGED
    claim = next(c for c in clip_verdicts.claims(clip_verdicts.comparisons(rows, correct))
                 if (c["claim"], c["metric"], c["method"]) == ("beats_random", "zero_shot", "semdedup"))
    assert claim["verdict"] == clip_verdicts.NOT_CONVERGED


def test_held_out_pairs_are_in_no_training_pool(scored_run):
    from datapruner.verify.clip_study import load

    spec = VerifySpec(task="clip", test_fraction=0.25, val_fraction=0.1)
    data = load(scored_run, Config(**TINY), spec)
    ids = lambda pairs: set(zip(pairs.ids.column("shard").to_pylist(), pairs.ids.column("key").to_pylist()))  # noqa: E731
    assert not ids(data.test) & ids(data.train) and not ids(data.val) & ids(data.train)
    assert not ids(data.test) & ids(data.val)
    assert len(data.train) == len(data.img) == len(data.txt)
    assert len(data.train) + len(data.val) + len(data.test) == 60 and abs(len(data.test) - 15) <= 2
