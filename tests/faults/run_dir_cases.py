"""Run directories and inputs that must not widen what datapruner runs or where it writes (issue 42).

Each case builds a small run (the tiny random-init model over two 4-sample shards), changes something a
colleague, a crafted run directory or an accident could change, and names one CLI command, the exit code it
must end with and its one `error:` line (None: it completes), and what must hold afterwards (no shell command
run, no pickle executed, no user file written). test_run_dir_faults.py runs them and prints the table.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from conftest import TINY  # noqa: E402
from shardmaker import sample_members, write_tar  # noqa: E402

from datapruner import api  # noqa: E402
from datapruner.config import Config  # noqa: E402

CFG = Config(**TINY, clusters=2, shard_size=16)
TINY_FLAGS = ["--model", "datapruner-tiny", "--pretrained", "none", "--batch-size", "8", "--num-workers", "0",
              "--device", "cpu"]
LINK = r"error: \S+ is a symbolic link \(to \S+\): datapruner writes only inside the run directory"
GONE = r"error: source shard \S+a\.tar changed since it was embedded: it is gone"
OTHER_FILES = (r"error: \S+ was embedded with other inputs \(embeddings files changed since the run read them: "
               r"img_emb/img_emb_0\.npy \(same size, modified since, other content\)\); use a new --out")


@dataclass
class Setup:
    args: list[str]  # the datapruner command
    after: Callable[[], list[str]] = lambda: []  # what is wrong once it ran


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Setup]
    exit: int
    line: str | None = None  # the one `error:` line (a regex); None: no error line
    notes: list[str] = field(default_factory=list)


# runs to start from --------------------------------------------------------------------------------------

def source(root: Path) -> Path:
    src = root / "src"
    for prefix, start in (("a", 0), ("b", 20)):
        write_tar(src / f"{prefix}.tar", [(f"{prefix}-{i:03d}", sample_members(start + i, i % 4, "png"))
                                          for i in range(4)])
    return src


def selected(root: Path, cfg: Config = CFG) -> tuple[Path, Path]:
    """(SRC, RUN): embedded, clustered and selected at keep 1.0; nothing written yet."""
    src, run = source(root), root / "run"
    api.embed(str(src), run, cfg, progress=False)
    api.cluster(run, cfg)
    api.select(run, 1.0, cfg, progress=False)
    return src, run


def written(root: Path) -> tuple[Path, Path]:
    src, run = selected(root)
    api.write(run, CFG, progress=False)
    return src, run


def precomputed(root: Path, ranges: bool = True) -> Path:
    """An embedding-reader folder: a run's own embeddings (without byte ranges: key and caption only)."""
    scratch = root / "scratch"
    api.embed(str(source(root)), scratch, CFG, progress=False)
    emb = Path(shutil.copytree(scratch / "embeddings", root / "emb"))
    shutil.rmtree(scratch)
    for path in (emb / "metadata").glob("*.parquet") if not ranges else []:
        pq.write_table(pq.read_table(path).select(["key", "caption"]), path)
    return emb


def tree(root: Path, subs: tuple[str, ...] = ("",)) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for sub in subs for p in sorted((root / sub).rglob("*"))
            if p.is_file()}


def unchanged(root: Path, what: str, subs: tuple[str, ...] = ("",)) -> Callable[[], list[str]]:
    before = tree(root, subs)
    return lambda: [] if tree(root, subs) == before else [f"{what} changed"]


# a run directory that records a pipe: and allow_pipe ------------------------------------------------------

def record_pipe(run: Path, shard: str, command: str) -> None:
    """run.json lists `pipe:COMMAND; cat SHARD` instead of the shard and records allow_pipe: true, and the
    manifest names it: a run directory made (or crafted) with --allow-pipe."""
    pipe = f"pipe:{command}; cat {shard}"
    info = json.loads((run / "run.json").read_text())
    info["shards"] = [pipe if s == shard else s for s in info["shards"]]
    info["config"]["allow_pipe"] = True
    (run / "run.json").write_text(json.dumps(info))
    keep = pq.read_table(run / "manifest/keep.parquet")
    column = pa.array([pipe if s == shard else s for s in keep.column("shard").to_pylist()], pa.string())
    pq.write_table(keep.set_column(keep.schema.get_field_index("shard"), "shard", column), run / "manifest/keep.parquet")


def recorded_pipe(flags: list[str]):
    def build(root: Path) -> Setup:
        src, run = selected(root)
        proof = root / "the-pipe-ran"
        record_pipe(run, str(src / "a.tar"), f"touch {proof}")
        ran = "--allow-pipe" in flags

        def after() -> list[str]:
            if proof.exists() != ran:
                return [f"the pipe's shell command {'did not run' if ran else 'ran'}"]
            return []
        return Setup(["write", str(run), *flags], after)
    return build


# links inside RUN -----------------------------------------------------------------------------------------

def linked(sub: str, command: Callable[[Path], list[str]]):
    """RUN/<sub> moved to a user's folder and replaced by a link to it."""
    def build(root: Path) -> Setup:
        _, run = written(root)
        api.select(run, 0.5, CFG, progress=False)  # the pruned shards go: write has work to do
        user = root / "user"
        shutil.move(str(run / sub), str(user))
        (user / "mine.txt" if user.is_dir() else root / "mine.txt").write_text("the user's")
        (run / sub).symlink_to(user, target_is_directory=user.is_dir())
        return Setup(command(run), unchanged(user if user.is_dir() else root, "the user's folder"))
    return build


# odd names, checkpoints, deleted shards ---------------------------------------------------------------------

def colons_in_the_shard_name(given: Callable[[Path], str]):
    """a.tar renamed x::y.tar (fsspec reads `::` as a chain of filesystems); SRC the folder or the shard."""
    def build(root: Path) -> Setup:
        src, run = source(root), root / "run"
        (src / "a.tar").rename(src / "x::y.tar")
        expected = 8 if given(src) == str(src) else 4

        def after() -> list[str]:
            kept = pq.read_table(run / "manifest/keep.parquet").column("kept").to_pylist()
            shards = sorted((run / "shards").glob("*.tar"))
            return [] if kept.count(True) == expected and shards else [f"{kept.count(True)} of {expected} kept"]
        return Setup(["score", given(src), "--keep", "1.0", "--out", str(run), "--clusters", "2", *TINY_FLAGS], after)
    return build


def not_utf8_name(root: Path) -> Setup:
    src = source(root)
    os.rename(src / "a.tar", os.path.join(os.fsencode(src), b"a\xff.tar"))
    run = root / "run"
    return Setup(["score", str(src), "--keep", "1.0", "--out", str(run), "--clusters", "2", *TINY_FLAGS],
                 lambda: ["RUN was created"] if run.exists() else [])


def pickled_code(root: Path) -> Setup:
    """A checkpoint whose unpickling runs a shell command (what torch.load without weights_only would do)."""
    import torch

    proof, evil = root / "the-pickle-ran", root / "evil.pt"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {proof}",)
    torch.save({"state_dict": Payload()}, evil)
    args = ["embed", str(source(root)), "--out", str(root / "run"), *TINY_FLAGS[:2], "--pretrained", str(evil),
            *TINY_FLAGS[4:]]
    return Setup(args, lambda: ["the pickle ran"] if proof.exists() else [])


def not_a_checkpoint(root: Path) -> Setup:
    junk = root / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    return Setup(["embed", str(source(root)), "--out", str(root / "run"), *TINY_FLAGS[:2], "--pretrained", str(junk),
                  *TINY_FLAGS[4:]])


def deleted_before_write(ranges: bool):
    def build(root: Path) -> Setup:
        if ranges:
            src, run = selected(root)
        else:
            emb = precomputed(root, ranges=False)
            src, run = selected(root, CFG.replace(embeddings=str(emb)))
        (src / "a.tar").unlink()
        return Setup(["write", str(run)], lambda: [] if not list((run / "shards").glob("*.tar")) else ["wrote shards"])
    return build


# precomputed embeddings changed in place ---------------------------------------------------------------------

def precomputed_rerun(change: Callable[[Path], None]):
    """A score with --embeddings DIR, DIR's first embeddings file changed, the same score again: RUN's
    embeddings, manifest and shards stay as they were (refused, or every part reused)."""
    def build(root: Path) -> Setup:
        emb, run = precomputed(root), root / "run"
        args = ["score", str(root / "src"), "--keep", "0.5", "--out", str(run), "--embeddings", str(emb),
                "--clusters", "2", "--shard-size", "16", *TINY_FLAGS]
        api.score(str(root / "src"), run, 0.5, CFG.replace(embeddings=str(emb)), progress=False)
        change(emb / "img_emb/img_emb_0.npy")
        return Setup(args, unchanged(run, "RUN's outputs", ("embeddings", "manifest", "shards", "_done/embed")))
    return build


def other_vectors(path: Path) -> None:
    """The same names, shapes and row counts, other vectors (the rows reversed and negated)."""
    vectors = np.load(path)
    np.save(path, -vectors[::-1])


def touched(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


CASES = [
    Case("recorded allow_pipe, write", recorded_pipe([]), 2,
         r"error: refusing pipe: shard 'pipe:touch \S+; cat \S+a\.tar' in \S+run\.json: it runs a shell command"),
    Case("recorded allow_pipe, write --no-allow-pipe", recorded_pipe(["--no-allow-pipe"]), 2, r"error: refusing pipe:"),
    Case("recorded allow_pipe, write --allow-pipe", recorded_pipe(["--allow-pipe"]), 0),
    Case("RUN/shards a link to a user folder", linked("shards", lambda run: ["write", str(run)]), 2, LINK),
    Case("RUN/manifest a link to a user folder", linked("manifest", lambda run: ["select", str(run), "--keep", "0.3"]),
         2, LINK),
    Case("RUN/report/index.html a link to a user file", linked("report/index.html", lambda run: ["report", str(run)]),
         2, LINK),
    Case("shard named x::y.tar in SRC", colons_in_the_shard_name(str), 0),
    Case("SRC the shard x::y.tar", colons_in_the_shard_name(lambda src: str(src / "x::y.tar")), 0),
    Case("shard name not UTF-8", not_utf8_name, 2, r"error: \S+a\\xff\.tar: its name is not valid UTF-8"),
    Case("checkpoint that runs code", pickled_code, 2,
         r"error: --pretrained \S+evil\.pt: it holds pickled objects besides tensors, which would run code"),
    Case("checkpoint that is not one", not_a_checkpoint, 2,
         r"error: --pretrained \S+junk\.pt: it is not a checkpoint of open_clip datapruner-tiny"),
    Case("shard deleted before write", deleted_before_write(ranges=True), 2, GONE),
    Case("shard deleted before write (embeddings without byte ranges)", deleted_before_write(ranges=False), 2, GONE),
    Case("precomputed vectors replaced in place", precomputed_rerun(other_vectors), 2, OTHER_FILES),
    Case("precomputed file touched, same bytes", precomputed_rerun(touched), 0),
]
