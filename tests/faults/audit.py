"""Run datapruner over the bad-shard cases and account for every input sample.

    .venv/bin/python tests/faults/audit.py          # prints the table: case, samples, accounted, lost

A sample is accounted when errors/ gives it a reason of the expected category, or when it is kept
and a pruned shard holds its members byte for byte (read back through webdataset). Anything else is
lost, and so is any problem found on the way (an unexpected output sample, a byte written outside RUN).
"""

from __future__ import annotations

import collections
import hashlib
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # badshards, and the tests' shardmaker

import pyarrow.parquet as pq  # noqa: E402

from badshards import CASES, Expected, build_source  # noqa: E402
from datapruner.reasons import category_of  # noqa: E402


@dataclass
class Row:
    case: str
    samples: int = 0
    accounted: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.samples - self.accounted


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """sha256 of every readable regular file under root, except under `skip` (FIFOs, devices and links
    that loop are not files; an unreadable one is known by its size and time)."""
    return {str(p.relative_to(root)): fingerprint(p)
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_relative_to(skip)}


def fingerprint(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except PermissionError:
        st = path.stat()
        return f"unreadable {st.st_size} {st.st_mtime_ns}"


def output_samples(run: Path) -> dict[str, list[dict[str, bytes]]]:
    """Every sample of the pruned shards, as webdataset reads them: key -> [members]."""
    import webdataset as wds

    urls = sorted(str(p) for p in (run / "shards").glob("*.tar"))
    found = collections.defaultdict(list)
    if urls:
        for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
            found[sample["__key__"]].append({k: v for k, v in sample.items() if not k.startswith("__")})
    return found


def recorded(run: Path) -> tuple[dict, dict]:
    """(shard file, key) -> manifest rows, and -> errors/ rows."""
    manifest, errors = collections.defaultdict(list), collections.defaultdict(list)
    for r in pq.read_table(run / "manifest/keep.parquet", columns=["shard", "key", "kept", "reason"]).to_pylist():
        manifest[(Path(r["shard"]).name, r["key"])].append(r)
    if (run / "errors").is_dir() and any((run / "errors").iterdir()):
        for r in pq.read_table(run / "errors").to_pylist():
            errors[(Path(r["shard"]).name, r["key"])].append(r)
    return manifest, errors


def audit_case(name: str, exp: Expected, manifest: dict, errors: dict, outputs: dict, skipped: set[str]) -> Row:
    row = Row(name, samples=len(exp.valid) + len(exp.invalid) + len(exp.unsure))
    for (shard, key), members in exp.valid.items():
        kept = [r for r in manifest.get((shard, key), []) if r["kept"]]
        if kept and take_output(outputs, key, members):
            row.accounted += 1
        else:
            row.problems.append(f"{key}: valid but {'not byte-identical in' if kept else 'not kept into'} the output")
    for (shard, key), category in exp.invalid.items():
        reasons = [category_of(r["reason"]) for r in errors.get((shard, key), []) if r["reason"]]
        if category in reasons and any(not r["kept"] for r in manifest.get((shard, key), [])):
            row.accounted += 1
        else:
            row.problems.append(f"{key!r}: expected '{category}', errors/ has {reasons}")
    for (shard, key), members in exp.unsure.items():
        kept = [r for r in manifest.get((shard, key), []) if r["kept"]]
        if kept and not take_output(outputs, key, members):
            row.problems.append(f"{key}: kept but not byte-identical in the output")
        elif kept or errors.get((shard, key)):
            row.accounted += 1
        else:
            row.problems.append(f"{key}: in neither the manifest nor errors/")
    for shard, categories in exp.shard_errors.items():
        found = {category_of(r["reason"]) for (s, _), rows in errors.items() if s == shard for r in rows}
        if not found & set(categories):
            row.problems.append(f"{shard}: no row of category {' or '.join(categories)} (has {sorted(found)})")
    missing = exp.skipped - skipped
    if missing:
        row.problems.append(f"skipped without a count: {sorted(missing)}")
    return row


def take_output(outputs: dict, key: str, members: dict[str, bytes]) -> bool:
    """Find (and use up) an output sample of `key` with exactly these members."""
    want = {ext.lower(): data for ext, data in members.items()}
    if want in outputs.get(key, []):
        outputs[key].remove(want)
        return True
    return False


def run_cases(root: Path, cfg=None, cases=CASES) -> list[Row]:
    """Build every case into root/src, prune it with keep 1.0 into root/run, and audit each case."""
    from datapruner import api
    from datapruner.config import Config
    from datapruner.io.rundir import RunDir

    src, run = root / "src", root / "run"
    expected = build_source(src, cases)
    before = snapshot(root, run)
    cfg = cfg or Config(model="datapruner-tiny", pretrained="none", batch_size=8, num_workers=0, device="cpu",
                        clusters=3, shard_size=16)
    api.score(str(src), run, 1.0, cfg, progress=False)
    manifest, errors = recorded(run)
    outputs = output_samples(run)
    skipped = {Path(p).name for p in RunDir(run).read_run_json().get("skipped", [])}
    rows = [audit_case(name, exp, manifest, errors, outputs, skipped) for name, exp in expected.items()]
    extra = [k for k, left in outputs.items() for _ in left]
    if extra:
        rows.append(Row("(unexpected output samples)", problems=[f"{k}" for k in extra]))
    if snapshot(root, run) != before:
        rows.append(Row("(outside RUN)", problems=["files outside RUN changed"]))
    return rows


def table(rows: list[Row]) -> str:
    width = max(len(r.case) for r in rows)
    lines = [f"{'case':<{width}}  samples  accounted  lost  problems"]
    for r in rows:
        lines.append(f"{r.case:<{width}}  {r.samples:>7}  {r.accounted:>9}  {r.lost:>4}  {len(r.problems):>8}")
    real = [r for r in rows if not r.case.startswith("(")]
    lines.append(f"{f'{len(real)} cases':<{width}}  {sum(r.samples for r in rows):>7}  "
                 f"{sum(r.accounted for r in rows):>9}  {sum(r.lost for r in rows):>4}  "
                 f"{sum(len(r.problems) for r in rows):>8}")
    lines += [f"  {r.case}: {p}" for r in rows for p in r.problems]
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_cases(Path(tmp))
    print(table(rows))
    return 1 if any(r.problems for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
