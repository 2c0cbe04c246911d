"""The report's text: run facts, the policy in words, counts by stage and reason, written shards."""

from __future__ import annotations

import json
import time

from datapruner.io.rundir import RunDir
from datapruner.reasons import INVALID

NAMES = {"semdedup": "SemDeDup", "dbp": "DBP", "el2n_probe": "EL2N (probes)", "clip_score": "CLIP score",
         "prototypicality": "prototypicality", "random": "random"}


def display(metric: str) -> str:
    return NAMES.get(metric, metric)


def percent(x: float) -> str:
    return f"{100 * x:.3g} %"


def filter_words(spec: dict) -> str:
    name = spec.get("name", "?")
    options = {k: v for k, v in spec.items() if k != "name"}
    if name == "semdedup" and "eps" in options:
        return f"SemDeDup ε={options['eps']:g} (remove samples with cosine similarity > {1 - float(options['eps']):g} " \
               "to an earlier sample of their cluster)"
    if name == "semdedup" and "fraction" in options:
        return f"SemDeDup removing the most duplicated {percent(float(options['fraction']))}"
    if name == "clip_score" and "threshold" in options:
        return f"CLIP score ≥ {options['threshold']:g}"
    if name == "clip_score" and "fraction" in options:
        return f"CLIP score dropping the lowest {percent(float(options['fraction']))}"
    if name == "el2n_probe" and "offset" in options:
        return f"probe EL2N dropping the hardest {percent(float(options['offset']))}"
    return display(name) + (f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else "")


def budget_words(budget: str, details: dict | None) -> str:
    if budget == "global":
        return "one global budget"
    if budget == "cluster":
        return "uniform per-cluster quotas"
    if budget == "dbp":
        words = "DBP budget (per-cluster quotas from cluster complexity"
        if details and "tau" in details:
            words += f", τ={details['tau']:g}"
        if details and "p_max_over_min" in details:
            words += f"; P max/min = {details['p_max_over_min']:.4g}"
        return words + ")"
    return f"{budget} budget"


def policy_words(summary: dict) -> str:
    """E.g. "SemDeDup ε=0.05, then DBP budget (…), keep the hardest 30 % by dbp"."""
    policy = summary.get("policy", {})
    keep = percent(float(summary.get("keep_fraction", 0.0)))
    order, metric = policy.get("order", "hard"), display(policy.get("metric", "?"))
    if order == "random":
        what = f"keep a random {keep}"
    else:
        what = f"keep the {'hardest' if order == 'hard' else 'easiest'} {keep} by {metric}"
    steps = [filter_words(f) for f in policy.get("filters", [])]
    steps.append(budget_words(policy.get("budget", "global"), summary.get("budget")))
    return ", then ".join(steps) + ", " + what


def run_facts(run: RunDir, manifest) -> list[tuple[str, str]]:
    info = run.read_run_json()
    cfg = info.get("config", {})
    counts = manifest.summary.get("counts", {})
    facts = [
        ("source", str(info.get("source", "?"))),
        ("input shards", f"{len(info.get('shards', []))}" + (f" ({len(info['skipped'])} other files skipped)"
                                                           if info.get("skipped") else "")),
        ("model", str(cfg.get("model", "?"))),
        ("pretrained", str(cfg.get("pretrained", "?"))),
    ]
    if info.get("embeddings_dir"):
        facts.append(("precomputed embeddings", str(info["embeddings_dir"])))
    facts += [
        ("samples", f"{counts.get('samples', 0):,} read, {counts.get('valid', 0):,} valid, "
                    f"{counts.get('invalid', 0):,} invalid"),
        ("kept", f"{counts.get('kept', 0):,} of {counts.get('valid', 0):,} valid "
                 f"(keep fraction {manifest.summary.get('keep_fraction')})"),
        ("clusters (k)", str(len(manifest.summary.get("clusters", {}).get("size", [])))),
        ("seed", str(cfg.get("seed", "?"))),
        ("datapruner", str(info.get("versions", {}).get("datapruner", "?"))),
    ]
    return facts


def random_init_model(run: RunDir) -> str | None:
    """The model's name when the run embedded with a random init (pretrained none), else None."""
    inputs = (run.read_run_json().get("embed") or {}).get("inputs") or {}
    return inputs.get("model") if inputs.get("model") and inputs.get("pretrained") == "none" else None


def step_times(run: RunDir) -> list[dict]:
    """When each step's parts were finished (from their completion markers), and run.json `timings` when
    a front recorded them ({step: seconds}); in the order the steps first finished a part."""
    recorded = run.read_run_json().get("timings") or {}
    done = run.root / "_done"
    stamps = {f.name: sorted(p.stat().st_mtime for p in f.iterdir() if not p.name.startswith("."))
              for f in (sorted(done.iterdir()) if done.is_dir() else []) if f.is_dir()}
    stamps = {step: s for step, s in stamps.items() if s}
    order = sorted(stamps, key=lambda step: (stamps[step][0], step)) + [s for s in recorded if s not in stamps]
    return [_step_row(step, stamps.get(step, []), recorded.get(step)) for step in order]


def _step_row(step: str, stamps: list[float], seconds) -> dict:
    return {"step": step, "parts": len(stamps),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamps[-1])) if stamps else "",
            "span": f"{stamps[-1] - stamps[0]:.1f} s" if len(stamps) > 1 else "",
            "seconds": f"{float(seconds):.1f} s" if isinstance(seconds, (int, float)) else ""}


def stage_of(reason: str) -> str:
    if reason.startswith(INVALID):
        return "invalid"
    if reason.startswith("removed by filter"):
        return "filter"
    if reason == "kept":
        return "kept"
    return "budget"


STAGES = (("invalid", "invalid (could not be used)"), ("filter", "removed by a filter"),
          ("budget", "not selected by the budget"), ("kept", "kept"))


def counts_by_stage(summary: dict) -> list[dict]:
    """One row per stage with its reasons beneath: (stage, reason, count, share of all samples)."""
    total = max(1, int(summary.get("counts", {}).get("samples", 0)))
    reasons = summary.get("reasons", {})
    out = []
    for stage, label in STAGES:
        mine = sorted(((r, n) for r, n in reasons.items() if stage_of(r) == stage), key=lambda x: (-x[1], x[0]))
        count = sum(n for _, n in mine)
        out.append({"stage": label, "count": count, "share": percent(count / total),
                    "reasons": [{"reason": r, "count": n, "share": percent(n / total)} for r, n in mine]})
    return out


def written(run: RunDir) -> dict | None:
    """The pruned shards the write step marked done: count, samples, bytes (from the files its markers record,
    and the shards folder's sizes.json when the plan wrote one)."""
    if run.read_marker("plan", "plan") is None:
        return None
    sizes = {}
    sizes_file = run.shards_dir / "sizes.json"
    if sizes_file.exists():
        try:
            sizes = json.loads(sizes_file.read_text())
        except ValueError:
            sizes = {}
    shards = samples = size = 0
    for part in run.marked_parts("write"):
        record = run.read_marker("write", part)
        if record is None:
            continue
        shards += 1
        for rel in record.get("outputs", []):
            path = run.root / rel
            if path.suffix == ".tar" and path.exists():
                size += path.stat().st_size
                samples += int(sizes.get(path.name, 0)) or _stats_samples(path)
    return {"shards": shards, "samples": samples, "bytes": size, "folder": str(run.shards_dir)}


def _stats_samples(tar) -> int:
    try:
        stats = json.loads(tar.with_name(tar.stem + "_stats.json").read_text())
    except (OSError, ValueError):
        return 0
    return int(stats.get("samples", stats.get("successes", 0)) or 0)


def write_state(run: RunDir) -> list:
    """What `written` shows depends on: the plan's marker token and the write parts that are done."""
    plan = run.read_marker("plan", "plan")
    done = [p for p in run.marked_parts("write") if run.read_marker("write", p) is not None]
    return [plan.get("digest") or plan["token"] if plan else None, done]


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
