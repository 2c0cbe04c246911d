"""Source shards that change after embed, before select and write (issue 41).

Each case embeds two real shards (a.tar is changed, b.tar is not), clusters, changes a.tar, then runs
`select` and `write` through the CLI. `select` reads no source bytes but its report's thumbnails: it
goes on. `write` reads them: it refuses with one line, exit 2, before anything is written, or (a shard
touched but holding the same bytes) writes. Either way no pruned shard is left that webdataset cannot
read or whose samples differ from the embedded ones, and no temp file.

    .venv/bin/python -m pytest -q tests/faults/test_after_embed.py -s     # prints the table
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from conftest import TINY  # noqa: E402
from shardmaker import sample_members, write_tar  # noqa: E402

from datapruner import api  # noqa: E402
from datapruner.cli import app  # noqa: E402
from datapruner.config import Config  # noqa: E402
from datapruner.io.rundir import RunDir  # noqa: E402
from datapruner.io.tar_samples import iter_samples  # noqa: E402

CFG = Config(**TINY, clusters=2, shard_size=16)
PER_SHARD = 4
REFUSED = r"error: source shard \S*a\.tar changed since it was embedded: "


def samples(prefix: str, start: int = 0, n: int = PER_SHARD) -> list[tuple[str, dict[str, bytes]]]:
    return [(f"{prefix}-{i:03d}", sample_members(start + i, i % 4, "png")) for i in range(n)]


def same_size_other_samples() -> list[tuple[str, dict[str, bytes]]]:
    """Other keys and captions of the same lengths around a's own images: another tar of a's size."""
    return [(key.replace("a-", "c-"), {**m, "txt": m["txt"].upper()}) for key, m in samples("a")]


# the changes ------------------------------------------------------------------------------------------

def replace_in_place(src: Path, store: Path) -> None:
    write_tar(src / "a.tar", samples("a", start=50, n=3 * PER_SHARD))  # another size: tar pads to 10 KiB


def replace_same_size(src: Path, store: Path) -> None:
    write_tar(src / "a.tar", same_size_other_samples())


def truncate(src: Path, store: Path) -> None:
    data = (src / "a.tar").read_bytes()
    (src / "a.tar").write_bytes(data[:len(data) // 2])


def delete(src: Path, store: Path) -> None:
    (src / "a.tar").unlink()


def retarget_link(src: Path, store: Path) -> None:
    write_tar(store / "a2.tar", samples("a", start=80))
    (src / "a.tar").unlink()
    (src / "a.tar").symlink_to(store / "a2.tar")


def make_loop(src: Path, store: Path) -> None:
    (src / "a.tar").unlink()
    (src / "a.tar").symlink_to(src / "a.tar")


def make_fifo(src: Path, store: Path) -> None:
    (src / "a.tar").unlink()
    os.mkfifo(src / "a.tar")


def touch(src: Path, store: Path) -> None:
    st = (src / "a.tar").stat()
    os.utime(src / "a.tar", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def replace_keeping_size_and_time(src: Path, store: Path) -> None:
    st = (src / "a.tar").stat()
    write_tar(src / "a.tar", same_size_other_samples())
    assert (src / "a.tar").stat().st_size == st.st_size
    os.utime(src / "a.tar", ns=(st.st_atime_ns, st.st_mtime_ns))


@dataclass(frozen=True)
class Case:
    name: str
    change: Callable[[Path, Path], None]
    write_exit: int
    line: str | None  # the one `error:` line write prints (a regex), None when it writes


CASES = [
    Case("replaced-in-place", replace_in_place, 2, REFUSED + r"it is \d+ bytes, \d+ when it was embedded; restore it"),
    Case("replaced-same-size", replace_same_size, 2, REFUSED + r"its content is not what was embedded"),
    Case("truncated", truncate, 2, REFUSED + r"it is \d+ bytes, \d+ when it was embedded"),
    Case("deleted", delete, 2, REFUSED + r"it is gone; restore it, or embed the new content with "
         r"`datapruner embed \S+ --out \S+ --re-embed`"),
    Case("retargeted-link", retarget_link, 2, REFUSED + r"(it is \d+ bytes|its content is not)"),
    Case("symlink-loop", make_loop, 2, REFUSED + r"it cannot be read \(Too many levels of symbolic links\)"),
    Case("replaced-by-fifo", make_fifo, 2, REFUSED + r"it cannot be read \(.*is a FIFO, not a regular file\)"),
    Case("touched-same-bytes", touch, 0, None),
    Case("same-size-and-time", replace_keeping_size_and_time, 2,
         r"error: 000000\.tar was not written: the bytes at offset 0 of \S*a\.tar hold sample 'c-000', not sample "
         r"'a-000', so the shard changed since it was embedded; restore it"),
]


# one case ---------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    select: tuple[int, list[str]]  # exit code, `error:` lines
    write: tuple[int, list[str]]
    pruned: int  # samples in the pruned shards
    problems: list[str]


def cli(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, [*args, "-q"])
    return result.exit_code, [line for line in result.stderr.splitlines() if line.startswith("error:")]


def embedded_samples(src: Path) -> dict[str, dict[str, bytes]]:
    found = {}
    for shard in sorted(src.glob("*.tar")):
        with open(shard, "rb") as f:
            found.update({s.key: s.members for s in iter_samples(f) if s.error is None})
    return found


def pruned_problems(run: Path, embedded: dict[str, dict[str, bytes]]) -> list[str]:
    """Pruned shards webdataset cannot read, samples not as embedded, temp files left."""
    import webdataset as wds

    problems = [f"temp file left: {p.name}" for p in (run / "shards").glob(".*tmp-*")] if (run / "shards").is_dir() else []
    for tar in sorted((run / "shards").glob("*.tar")):
        try:
            for sample in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False):
                members = {k: v for k, v in sample.items() if not k.startswith("__")}
                if embedded.get(sample["__key__"]) != members:
                    problems.append(f"{tar.name}: {sample['__key__']} is not the embedded sample")
        except (tarfile.TarError, ValueError, OSError) as exc:
            problems.append(f"{tar.name}: webdataset cannot read it: {exc}")
    return problems


def run_case(root: Path, case: Case) -> Outcome:
    src, store, run = root / "src", root / "store", root / "run"
    write_tar(store / "a1.tar", samples("a"))
    write_tar(src / "b.tar", samples("b", start=20))
    if case.change is retarget_link:
        (src / "a.tar").symlink_to(store / "a1.tar")
    else:
        shutil.copy(store / "a1.tar", src / "a.tar")
    embedded = embedded_samples(src)
    api.embed(str(src), run, CFG, progress=False)
    api.cluster(run, CFG)
    case.change(src, store)
    selected = cli("select", str(run), "--keep", "1.0")
    written = cli("write", str(run))
    problems = pruned_problems(run, embedded) + marked_after_refusal(run, written[0])
    return Outcome(selected, written, len(embedded_samples(run / "shards")), problems)


def marked_after_refusal(run: Path, code: int) -> list[str]:
    rd = RunDir(run)
    done = [p for p in rd.marked_parts("write") if rd.read_marker("write", p) is not None]
    return [f"write part {p} marked done after a refusal" for p in done] if code else []


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    found = {c.name: run_case(tmp_path_factory.mktemp(c.name), c) for c in CASES}
    print("\n" + table(found))
    return found


def table(found: dict[str, Outcome]) -> str:
    lines = ["case                select  write  pruned  problems  write's line"]
    for name, o in found.items():
        line = o.write[1][0] if o.write[1] else "(writes)"
        lines.append(f"{name:<20}{o.select[0]:>6}{o.write[0]:>7}{o.pruned:>8}{len(o.problems):>10}  {line}")
    return "\n".join(lines)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_shard_changed_after_embed_is_refused_by_write_in_one_line(outcomes, case):
    o = outcomes[case.name]
    assert o.select == (0, []), o.select  # select reads no source bytes but thumbnails: it goes on
    code, lines = o.write
    assert code == case.write_exit, lines
    if case.line is None:
        assert lines == []
    else:
        assert len(lines) == 1 and re.match(case.line, lines[0]), lines
    assert not o.problems, o.problems


def test_a_refusal_leaves_no_pruned_sample_and_a_write_copies_every_one(outcomes):
    pruned = {name: o.pruned for name, o in outcomes.items()}
    assert pruned == {c.name: 2 * PER_SHARD if c.write_exit == 0 else 0 for c in CASES}


def test_the_write_step_checks_its_shards_when_the_plan_is_already_made(tmp_path):
    src, store, run = tmp_path / "src", tmp_path / "store", tmp_path / "run"
    write_tar(src / "a.tar", samples("a"))
    write_tar(src / "b.tar", samples("b", start=20))
    api.embed(str(src), run, CFG, progress=False)
    api.cluster(run, CFG)
    api.select(run, 1.0, CFG, progress=False)
    api.step("plan", run, CFG)
    replace_in_place(src, store)
    code, lines = cli("write", str(run))
    assert code == 2 and len(lines) == 1 and re.match(REFUSED, lines[0]), lines
    assert not list((run / "shards").glob("*.tar"))
    assert api.step("plan", run, CFG)["parts_reused"] == 1  # the refusal came from the write step


def test_re_embed_embeds_the_new_content_and_write_then_copies_it(tmp_path):
    src, store, run = tmp_path / "src", tmp_path / "store", tmp_path / "run"
    write_tar(src / "a.tar", samples("a"))
    write_tar(src / "b.tar", samples("b", start=20))
    api.score(str(src), run, 1.0, CFG, progress=False)
    replace_same_size(src, store)
    assert cli("write", str(run))[0] == 0  # the pruned shards were written before the change: nothing to do
    assert cli("select", str(run), "--keep", "0.9")[0] == 0
    assert cli("write", str(run))[0] == 2
    summary = api.embed(str(src), run, CFG.replace(re_embed=True), progress=False)
    assert summary["embed"]["parts_reused"] == 0
    api.score(str(src), run, 1.0, CFG, progress=False)
    assert pruned_problems(run, embedded_samples(src)) == []
    assert sorted(embedded_samples(run / "shards")) == sorted(embedded_samples(src))
