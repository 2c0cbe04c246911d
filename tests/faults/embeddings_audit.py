"""Run `datapruner score --embeddings DIR` over the hostile embeddings folders and audit each one.

    .venv/bin/python tests/faults/embeddings_audit.py    # prints the table

A case passes when the command either exits 0 and every input sample is accounted for (kept and byte
for byte in a pruned shard, or invalid with its category in errors/ and the manifest), or exits 2 with
one line naming the faulty file and writes nothing. Never a traceback, and DIR's files keep their sha256.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the cases, audit.py, and the tests' shardmaker

from audit import audit_case, output_samples, recorded, snapshot  # noqa: E402
from embeddings_cases import CASES  # noqa: E402

FLAGS = ("--keep", "1.0", "--clusters", "2", "--shard-size", "16", "--device", "cpu", "-q")


@dataclass
class Outcome:
    case: str
    layout: str
    exit: int | None = None
    samples: int = 0
    accounted: int | None = None  # None: refused, nothing to account
    message: str = ""
    problems: list[str] = field(default_factory=list)


def run_case(case, root: Path) -> Outcome:
    from typer.testing import CliRunner

    from datapruner.cli import app

    built = case.build(root)
    out = Outcome(case.name, case.layout, samples=count(built.expected))
    before = snapshot(built.emb, built.emb / "none"), snapshot(built.src, built.src / "none")
    run = root / "run"
    result = CliRunner().invoke(app, ["score", str(built.src), "--out", str(run), "--embeddings", str(built.emb),
                                      *FLAGS, *built.args])
    out.exit = result.exit_code
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    out.message = lines[0].replace(f"{built.emb}/", "DIR/") if len(lines) == 1 else ""  # the table's short form
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        out.problems.append(f"traceback: {type(result.exception).__name__}: {result.exception}")
    elif built.refused:
        check_refused(out, built, lines, run)
    else:
        check_completed(out, built, run)
    if (snapshot(built.emb, built.emb / "none"), snapshot(built.src, built.src / "none")) != before:
        out.problems.append("DIR or SRC changed")
    return out


def count(expected) -> int:
    return len(expected.valid) + len(expected.invalid) + len(expected.unsure)


def check_refused(out: Outcome, built, lines: list[str], run: Path) -> None:
    if out.exit != 2:
        out.problems.append(f"exit {out.exit}, not 2: {built.refused} should have been refused")
    if len(lines) != 1 or not lines[0].startswith("error: ") or built.refused not in lines[0]:
        out.problems.append(f"not one line naming {built.refused}: {lines}")
    if run.exists():
        out.problems.append(f"wrote {sorted(str(p.relative_to(run)) for p in run.rglob('*')) or 'an empty RUN'}")


def check_completed(out: Outcome, built, run: Path) -> None:
    if out.exit != 0:
        out.problems.append(f"exit {out.exit}: {out.message or 'no message'}")
        return
    manifest, errors = recorded(run)
    row = audit_case(out.case, built.expected, manifest, errors, output_samples(run), set())
    out.accounted, out.problems = row.accounted, out.problems + row.problems
    rows = sum(len(v) for v in manifest.values())
    if rows != out.samples:
        out.problems.append(f"the manifest has {rows} rows for {out.samples} input samples")


def run_cases(root: Path, cases=CASES) -> list[Outcome]:
    outcomes = []
    for case in cases:
        (root / case.name).mkdir(parents=True)
        outcomes.append(run_case(case, root / case.name))
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    width = max(len(o.case) for o in outcomes)
    lines = [f"{'case':<{width}}  {'layout':<16}  exit  samples  accounted  lost  problems  message"]
    for o in outcomes:
        accounted = "-" if o.accounted is None else str(o.accounted)
        lost = "-" if o.accounted is None else str(o.samples - o.accounted)
        message = o.message[:110] if o.exit == 2 else ""
        lines.append(f"{o.case:<{width}}  {o.layout:<16}  {o.exit!s:>4}  {o.samples:>7}  {accounted:>9}  {lost:>4}  "
                     f"{len(o.problems):>8}  {message}")
    completed = [o for o in outcomes if o.accounted is not None]
    lines.append(f"{len(outcomes)} cases: {len(completed)} completed, {sum(o.exit == 2 for o in outcomes)} refused "
                 f"in one line, {sum(1 for o in outcomes if o.problems)} with problems, "
                 f"{sum(o.samples - o.accounted for o in completed)} samples lost")
    lines += [f"  {o.case}: {p}" for o in outcomes for p in o.problems]
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = run_cases(Path(tmp))
    print(table(outcomes))
    return 1 if any(o.problems for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
