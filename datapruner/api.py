"""The functions the CLI, Airflow and Ray fronts call: one per command. Each takes a run directory and a
Config, opens a session on the run and runs the command's steps (datapruner/session.py); finished parts
are skipped, so rerunning a command resumes it."""

from __future__ import annotations

from pathlib import Path

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.session import partition as _partition
from datapruner.session import run_command, session
from datapruner.steps.table import get_step


def score(src: str, run: str | Path, keep: float | None = None, cfg: Config = Config(), progress: bool = True) -> dict:
    """Everything, end to end (`datapruner score SRC --keep F`): every step of the table, embed through report."""
    cfg = cfg if keep is None else cfg.replace(keep=keep)
    return run_command("score", run, cfg, src, progress)


def embed(src: str, run: str | Path, cfg: Config = Config(), progress: bool = True,
          parts: list[int] | None = None) -> dict:
    """Embed every shard of `src` (or the shards with indices `parts`) into RUN/embeddings."""
    return run_command("embed", run, cfg, src, progress, parts)


def cluster(run: str | Path, cfg: Config = Config()) -> dict:
    """Fit spherical k-means centroids on a sample of the run's embeddings."""
    return run_command("cluster", run, cfg, progress=False)


def measure(run: str | Path, cfg: Config = Config(), progress: bool = True, parts: list[int] | None = None) -> dict:
    """Assign every sample to its centroid, fit the metrics that need it, measure every part (scores/)."""
    return run_command("measure", run, cfg, progress=progress, parts=parts)


def select(run: str | Path, keep: float | None = None, cfg: Config = Config(), progress: bool = True) -> dict:
    """Write manifest/ for a keep fraction (measuring first what the policy needs and the scores lack).

    Pruned shards of an earlier selection are removed (the summary says so) and the report is rebuilt,
    so RUN never shows a selection its manifest does not hold.
    """
    cfg = cfg if keep is None else cfg.replace(keep=keep)
    return run_command("select", run, cfg, progress=progress)


def write(run: str | Path, cfg: Config = Config(), progress: bool = True, parts: list[int] | None = None) -> dict:
    """Copy the manifest's kept samples, byte for byte, into RUN/shards/ (only output shards `parts`)."""
    return run_command("write", run, cfg, progress=progress, parts=parts)


def report(run: str | Path, cfg: Config = Config()) -> str:
    """RUN/report/index.html: summary, score and cluster plots, galleries of kept vs. dropped samples."""
    run_command("report", run, cfg, progress=False)
    return str(RunDir(run).report_html)


def command(name: str, run: str | Path, cfg: Config = Config(), src: str | None = None, progress: bool = True,
            parts: list[int] | None = None) -> dict:
    """Run one command of steps.table.COMMANDS by name; returns {step: summary}."""
    return run_command(name, run, cfg, src, progress, parts)


def step(name: str, run: str | Path, cfg: Config = Config(), src: str | None = None, progress: bool = True,
         parts: list[int] | None = None) -> dict:
    """Run one step of the table by name (an orchestrator's task: Airflow runs one per step)."""
    get_step(name)
    summary = run_command(name, run, cfg, src, progress, parts, steps=(name,))
    return {**summary[name], **({"counts": summary["counts"]} if "counts" in summary else {})}


def partition(step: str, run: str | Path, cfg: Config = Config(), groups: int = 8, src: str | None = None) -> list[list[int]]:
    """Split a map step's parts into at most `groups` contiguous groups of part indices, for an
    orchestrator that runs each group as its own task (Airflow mapped tasks). For `write` this runs
    the plan step first (run it after select); for `embed` it needs `src`."""
    return _partition(step, run, cfg, groups, src)


def load_scores(run: str | Path):
    """All score parts as one pyarrow Table (with uid/caption/label/offset/length from metadata)."""
    from datapruner.select.scores import load_scores as load

    return load(RunDir(run))


def verify(run: str | Path, spec=None, cfg: Config = Config(), progress: bool = True) -> dict:
    """Train a teacher and students on the subsets each method keeps; RUN/verify (see verify/pipeline.py)."""
    from datapruner.verify.pipeline import VerifySpec, run_verify

    spec = spec or VerifySpec()
    with session(run, cfg, "verify", spec.src, progress):
        return run_verify(run, cfg, spec, progress)


def index(run: str | Path, fmt: str, out: str | Path | None = None) -> dict:
    """A loader's index of RUN's kept samples: DALI .idx files, a wids description, an Energon split with
    exclude entries, or DataComp's uids (docs/indexes.md)."""
    from datapruner.indexes.build import build_index

    return build_index(run, fmt, out)
