"""The documentation runs: every Python block and every shell block with a `datapruner` command in README.md and
docs/*.md is run on the shipped sample data (one test per block, ids like README.md:L42).

- A block right after a line `<!-- docs-test: skip (REASON) -->` is skipped with REASON (the network, a GPU, real
  model weights, a cluster). Other fenced blocks (text, yaml, json, shell without `datapruner`) are not collected.
- Each block runs in a folder of its own holding links to the repository's datapruner/ (so
  `datapruner/data/sample`), configs/, tests/, examples/, scripts/, bench/ and .venv/. A block that reads
  runs/demo without writing it (`--out runs/demo`) finds there a copy of the README's quick-start run.
- A shell block whose every command is `datapruner …` (or `.venv/bin/datapruner …`) runs in this process through
  `datapruner.cli.main`; any other shell block runs in bash with .venv/bin first on PATH. Python blocks are
  exec'd in this process, except those that import Airflow: they run in a subprocess whose AIRFLOW_HOME is in
  the block's folder (Airflow reads its configuration once per process, and must not write to ~/airflow).

Also here: bench/README.md and the README's performance table are what bench/readme.py renders from
bench/results/*.json, the relative links of the pages resolve, and no page points outside the repository.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED = ("datapruner", "configs", "tests", "examples", "scripts", "bench", ".venv")
DEMO = ["score", "datapruner/data/sample", "--keep", "0.3", "--out", "runs/demo", "--config",
        "configs/offline-demo.yaml"]
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)\s*$")
SKIP = re.compile(r"^\s*<!--\s*docs-test:\s*skip\s*\((.+)\)\s*-->\s*$")
PYTHON, SHELL = {"python", "py", "python3"}, {"bash", "sh", "shell", "console", "zsh"}
HEAVY = re.compile(r"\b(score|embed|verify)\b")  # commands that run the model (or train students)
AIRFLOW = re.compile(r"^\s*(from|import)\s+airflow\b", re.M)


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:L{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of a page, with the skip reason of the directive on the non-blank line before it."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), len(lines))
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1:end]]
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.match(before)
        blocks.append(Block(path.relative_to(ROOT).as_posix(), i + 1, lang.lower(), "\n".join(body) + "\n",
                            skip.group(1) if skip else None))
        i = end + 1
    return blocks


def commands(code: str) -> list[list[str]]:
    """The block's commands as argument lists: continuation lines joined, comments dropped, split at && and ;."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in words + ["&&"]:
            if word in ("&&", ";"):
                if command:
                    out.append(command)
                command = []
            else:
                command.append(word)
    return out


def is_datapruner(command: list[str]) -> bool:
    return bool(command) and Path(command[0]).name == "datapruner"


def runnable(block: Block) -> bool:
    if block.lang in PYTHON:
        return True
    if block.lang not in SHELL:
        return False
    try:
        return any(is_datapruner(c) for c in commands(block.code))
    except ValueError:  # not shell syntax shlex reads
        return False


BLOCKS = [b for page in PAGES for b in fenced_blocks(page) if runnable(b)]


def _params() -> list:
    return [_param(b) for b in BLOCKS]


def _param(b: Block):
    marks = []
    if b.skip:
        marks.append(pytest.mark.skip(reason=b.skip))
    elif b.lang in PYTHON or HEAVY.search(b.code):
        marks.append(pytest.mark.slow)
    if AIRFLOW.search(b.code):
        marks.append(pytest.mark.airflow)
    return pytest.param(b, id=b.id, marks=marks)


def _workspace(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        if (ROOT / name).exists():
            (root / name).symlink_to(ROOT / name, target_is_directory=True)
    return root


def _cli(args: list[str]) -> None:
    from datapruner.cli import main

    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None), f"datapruner {shlex.join(args)} exited with {exc.code}"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The README's quick-start run, made once: copied into the folder of each block that reads runs/demo."""
    ws = _workspace(tmp_path_factory.mktemp("docs-demo") / "ws")
    cwd = os.getcwd()
    os.chdir(ws)
    try:
        _cli([*DEMO, "-q"])
    finally:
        os.chdir(cwd)
    return ws / "runs/demo"


@pytest.fixture
def workspace(tmp_path, request) -> Path:
    ws = _workspace(tmp_path / "ws")
    block: Block = request.node.callspec.params["block"]
    if re.search(r"runs/demo\b", block.code) and not re.search(r"--out\s+runs/demo\b", block.code):
        shutil.copytree(request.getfixturevalue("demo_run"), ws / "runs/demo")
    return ws


@pytest.mark.parametrize("block", _params())
def test_block_runs(block: Block, workspace: Path, monkeypatch):
    monkeypatch.chdir(workspace)
    if block.lang in PYTHON and AIRFLOW.search(block.code):
        env = {**os.environ, "AIRFLOW_HOME": str(workspace / "airflow-home")}
        done = subprocess.run([sys.executable, "-c", block.code], cwd=workspace, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"{block.id} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return
    if block.lang in PYTHON:
        exec(compile(block.code, block.id, "exec"), {"__name__": "__docs__"})
        return
    steps = commands(block.code)
    if all(is_datapruner(c) for c in steps):
        for c in steps:
            _cli(c[1:])
        return
    env = {**os.environ, "PATH": f"{ROOT / '.venv/bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{block.id} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"


def test_the_pages_have_runnable_blocks_and_every_skip_says_why():
    run = [b for b in BLOCKS if not b.skip]
    assert len(run) >= 5, [b.id for b in BLOCKS]
    assert all(b.skip.strip() for b in BLOCKS if b.skip)
    stray = [b.id for page in PAGES for b in fenced_blocks(page) if b.skip and not runnable(b)]
    assert not stray, f"a skip directive before a block that is never run: {stray}"


# bench/README.md --------------------------------------------------------------------------------------------

def _bench_readme():
    spec = importlib.util.spec_from_file_location("bench_readme", ROOT / "bench/readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_readme_and_the_performance_table_are_rendered_from_the_results():
    readme = _bench_readme()
    pages = readme.rendered()
    assert pages == readme.rendered()  # the same files give the same text
    for path, text in pages.items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} differs: run `python bench/readme.py`"


def test_every_results_file_names_its_machine_and_publishes_rows():
    records = _bench_readme().load()
    assert records
    for r in records:
        assert r["machine"].get("cpu") and r["headline"] and r["command"], r["benchmark"]
        assert r["tables"] and all(t["rows"] for t in r["tables"]), r["benchmark"]
        assert all(len(row) == len(t["columns"]) for t in r["tables"] for row in t["rows"]), r["benchmark"]


# links ------------------------------------------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_resolve():
    broken = []
    for page in [*PAGES, ROOT / "bench/README.md"]:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken


def test_no_page_points_outside_the_repository():
    outside = ("shared/" + "DESIGN", "DESIGN" + " §", ".." + "/shared", "design-" + "notes.md")
    hits = []
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "bench").rglob("*.*"),
                 *(ROOT / "tests").rglob("*.py")]:
        if path.suffix in (".md", ".py", ".json"):
            text = path.read_text()
            hits += [f"{path.relative_to(ROOT)}: {s}" for s in outside if s in text]
    assert not hits


# generated pages --------------------------------------------------------------------------------------------

def test_the_design_pages_step_table_lists_the_steps_of_the_table_in_order():
    from datapruner.steps.table import STEP_NAMES

    text = (ROOT / "docs/design.md").read_text()
    table = text.split("<!-- step table: generated -->", 1)[1].split("<!-- /step table -->", 1)[0]
    rows = [line.split("|")[1].strip().strip("`") for line in table.strip().splitlines()[2:]]
    assert rows == list(STEP_NAMES)


def test_the_verify_study_page_opens_with_its_generators_introduction():
    spec = importlib.util.spec_from_file_location("study_readme", ROOT / "bench/study_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs/verify-study.md").read_text().startswith(module.INTRO)
