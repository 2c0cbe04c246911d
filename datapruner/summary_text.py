"""The one-screen summary a CLI command ends with: what was read, kept and removed, where the outputs
are, and the time per step (the CLI's --json prints the summary dict instead)."""

from __future__ import annotations

import json
from pathlib import Path


OUTPUTS = {  # what each command's summary points to
    "embed": ("embeddings", "errors"), "cluster": ("centroids",), "select": ("manifest", "report"),
    "write": ("shards",), "report": ("report",), "score": ("shards", "manifest", "report"),
}


def summary_lines(title: str, summary: dict, run: Path, seconds: float) -> list[str]:
    """What was read, valid and invalid (by category), kept and removed (by stage), where the outputs are,
    and the time per step."""
    from datapruner.io.rundir import RunDir

    rd = RunDir(run)
    info = rd.read_run_json() if rd.run_json.is_file() else {}
    selection = _selection(summary, rd, title)
    lines = [f"datapruner {title}: done in {_duration(seconds)}  (run: {rd.root})"]
    lines += _read_lines(summary, rd, info, selection)
    lines += _kept_lines(selection)
    lines += _output_lines(title, summary, rd)
    lines += _step_lines(summary)
    removed = (summary.get("select") or {}).get("removed_stale", {})
    if removed.get("write"):
        lines.append(f"note      the pruned shards of the previous selection were removed ({removed['write']} file(s)): "
                     f"run `datapruner write {run}` to write this selection's")
    if any(isinstance(step, dict) and step.get("cleanup_resumed") for step in summary.values()):
        lines.append("note      an interrupted command had not finished removing the outputs it made stale: "
                     "this one did, so RUN holds nothing its manifest does not")
    return lines


def _selection(summary: dict, rd, title: str) -> dict | None:
    """The selection's counts and reasons: this command's, or (write, report) the run's manifest summary."""
    if isinstance(summary.get("select"), dict) and "counts" in summary["select"]:
        return summary["select"]
    if title in ("write", "report", "select", "score") and rd.summary_json.is_file():
        return json.loads(rd.summary_json.read_text())
    return None


def _read_lines(summary: dict, rd, info: dict, selection: dict | None) -> list[str]:
    counts = {**info.get("counts", {}), **summary.get("counts", {})}
    lines = []
    if info.get("shards"):
        samples = (selection or {}).get("counts", {}).get("samples")
        samples = samples if samples is not None else counts.get("valid", 0) + counts.get("errors", 0)
        skipped = counts.get("skipped_files", len(info.get("skipped", [])))
        text = f"read      {len(info['shards'])} shard(s), {samples} sample(s)"
        if skipped:
            text += f"; {skipped} file(s) in SRC that are not shards were skipped (listed in {rd.run_json})"
        lines.append(text)
    valid = (selection or {}).get("counts", {}).get("valid", counts.get("valid"))
    if valid is not None:
        invalid = _invalid_by_category(selection, rd)
        total = sum(invalid.values())
        text = f"valid     {valid}; invalid {total}"
        if total:
            text += f" (reasons in {rd.errors_dir} and the manifest): " + ", ".join(
                f"{n} {reason}" for reason, n in sorted(invalid.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(text)
    return lines


def _invalid_by_category(selection: dict | None, rd) -> dict[str, int]:
    """summary.json's invalid reasons, or (before a selection) the errors/ parts counted by category."""
    from datapruner.reasons import INVALID, counted_as, invalid

    if selection is not None and "reasons" in selection:
        return {r: n for r, n in selection["reasons"].items() if r.startswith(INVALID)}
    out: dict[str, int] = {}
    if not rd.errors_dir.is_dir():
        return out
    import pyarrow.parquet as pq

    for path in sorted(rd.errors_dir.glob("*.parquet")):
        table = pq.read_table(path, columns=["stage", "reason"])
        for stage, text in zip(table.column("stage").to_pylist(), table.column("reason").to_pylist()):
            key = counted_as(invalid(stage, text))
            out[key] = out.get(key, 0) + 1
    return out


def _kept_lines(selection: dict | None) -> list[str]:
    from datapruner.reasons import INVALID

    if selection is None or "counts" not in selection:
        return []
    counts, policy = selection["counts"], selection.get("policy", {})
    share = f" ({100 * counts['kept'] / counts['valid']:.1f}%)" if counts.get("valid") else ""
    how = ", ".join(x for x in (
        f"{policy['metric']} ({policy.get('order', 'hard')})" if policy.get("metric") else "",
        f"{policy['budget']} budget" if policy.get("budget") else "",
        "filters " + ", ".join(_filter_text(f) for f in policy["filters"]) if policy.get("filters") else "") if x)
    lines = [f"kept      {counts['kept']} of {counts['valid']} valid{share}" + (f": {how}" if how else "")]
    removed = {r: n for r, n in selection.get("reasons", {}).items() if r != "kept" and not r.startswith(INVALID)}
    if removed:
        lines.append("removed   " + ", ".join(f"{n} {r.removeprefix('removed ')}" for r, n in sorted(removed.items(), key=lambda kv: (not kv[0].startswith("removed by filter"), -kv[1]))))
    return lines


def _filter_text(spec) -> str:
    if not isinstance(spec, dict):
        return str(spec)
    options = ",".join(f"{k}={v}" for k, v in spec.items() if k != "name")
    return f"{spec.get('name')}:{options}" if options else str(spec.get("name"))


def _output_lines(title: str, summary: dict, rd) -> list[str]:
    cluster = summary.get("cluster") or {}
    where = {
        "embeddings": (rd.embeddings_root, ""),
        "errors": (rd.errors_dir, ""),
        "centroids": (rd.centroids, f"{cluster['clusters']} clusters" if "clusters" in cluster else ""),
        "manifest": (rd.keep_parquet, f"+ {rd.summary_json.name}"),
        "report": (rd.report_html, ""),
        "shards": (rd.shards_dir, _shards_note(summary)),
    }
    lines = []
    for name in OUTPUTS.get(title, ()):
        path, note = where[name]
        if not path.exists():
            continue
        label = "outputs" if not lines else ""
        lines.append(f"{label:<10}{name:<11}{path}" + (f"  ({note})" if note else ""))
    return lines


def _shards_note(summary: dict) -> str:
    write, plan = summary.get("write") or {}, summary.get("plan") or {}
    if not write:
        return ""
    samples = plan.get("samples", write.get("samples"))
    return f"{write.get('parts', 0)} shard(s)" + (f", {samples} sample(s)" if samples is not None else "")


def _step_lines(summary: dict) -> list[str]:
    from datapruner.steps.table import STEP_NAMES

    items = []
    for name in STEP_NAMES:
        step = summary.get(name)
        if not isinstance(step, dict) or "seconds" not in step or step.get("parts") == 0:
            continue  # a step with nothing to do here (index, scan, join without --embeddings; fit without a fitted metric)
        text = f"{name} {_duration(step['seconds'])}"
        if step.get("parts") and step.get("parts_reused") == step["parts"]:
            text += " (done before)"
        elif step.get("parts_reused"):
            text += f" ({step['parts_reused']}/{step['parts']} parts done before)"
        items.append(text)
    if not items:
        return []
    rows = [items[0]]
    for item in items[1:]:  # wrapped between steps, never inside one
        if len(rows[-1]) + 3 + len(item) > 90:
            rows.append(item)
        else:
            rows[-1] += f" · {item}"
    return [f"{'steps' if i == 0 else '':<10}{row}" for i, row in enumerate(rows)]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes}m{s:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def verify_lines(summary: dict) -> list[str]:
    if summary.get("task") == "clip":
        return clip_verify_lines(summary)
    teachers = summary.get("teachers") or {}
    lines = [f"datapruner verify: done in {_duration(summary.get('seconds', 0))}",
             f"data      train {summary['n_train']}, validation {summary.get('n_val', 0)}, test {summary['n_test']}"]
    for pool, teacher in teachers.items():
        lines.append(f"teacher   pool {pool}: accuracy {100 * teacher.get('accuracy', 0):.2f}%"
                     + ("" if teacher.get("converged") else " (not converged)"))
    unseen = summary.get("unseen_test_labels") or {}
    if unseen:
        lines.append(f"test      {sum(unseen.values())} sample(s) with labels training never has "
                     f"({', '.join(map(str, unseen))}): counted as errors")
    lines.append(f"students  {summary['rows']} result row(s), {summary.get('students_not_converged', 0)} "
                 "student(s) not converged")
    skipped = summary.get("skipped_methods") or {}
    if skipped:
        lines.append("skipped   " + (", ".join(f"{m} ({why})" for m, why in skipped.items())
                                     if isinstance(skipped, dict) else str(skipped)))
    for claim in summary.get("claims", []):
        lines.append(f"claim     {claim.get('verdict')}: {claim.get('claim')} "
                     f"({claim.get('budget_mode')}, balance {claim.get('balance')})")
    lines.append(f"results   {summary['files'][0]} (+ csv, plots, power_law.json, claims.json, summary.md)")
    return lines


def clip_verify_lines(summary: dict) -> list[str]:
    """verify --task clip: the data, the students, and how many claims came out each way (summary.md has them)."""
    from collections import Counter

    counts = Counter(c["verdict"] for c in summary.get("claims", []))
    return [f"datapruner verify --task clip: done in {_duration(summary.get('seconds', 0))} on {summary.get('device')}",
            f"data      train {summary['n_train']}, validation {summary['n_val']}, held-out pairs {summary['n_test']}",
            f"students  {summary['students_trained']} CLIP(s), {summary['rows']} result row(s), "
            f"{summary.get('students_not_converged', 0)} row(s) not converged",
            "claims    " + (", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "none"),
            f"results   {summary['files'][0]} (+ csv, test_correct.npz, comparisons.json, claims.json, summary.md)"]


def one_screen(summary: dict) -> dict:
    """The summary without per-cluster arrays (they are in manifest/summary.json)."""
    return {step: {k: v for k, v in part.items() if not isinstance(v, list)} if isinstance(part, dict) else part
            for step, part in summary.items()}
