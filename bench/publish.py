"""A benchmark's results file: bench/results/<name>.json, which bench/readme.py renders into bench/README.md.

Every benchmark script takes `--json PATH` (default bench/results/<name>.json) and writes there what it printed,
the machine it ran on, the command, a one-line headline and its tables (every row of the run):

    {"benchmark": NAME, "title": ..., "command": ..., "machine": {...}, "date": "YYYY-MM-DD",
     "headline": ..., "tables": [{"title": ..., "columns": [...], "rows": [[...], ...]}], "notes": [...],
     "result": {what the script printed}}

Under pytest (PYTEST_CURRENT_TEST is set) the default path is left alone, so that a test's small run never
replaces the published results; an explicit --json PATH is always written.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def add_json_option(parser, name: str) -> None:
    parser.add_argument("--json", dest="json_path", default=None, metavar="PATH",
                        help=f"write the results file here (default bench/results/{name}.json)")


def machine() -> dict:
    """The CPU (model name, usable cores, native bf16 or not) and the GPU if torch sees one."""
    info = {"cpu": platform.processor() or platform.machine(), "usable_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags"))
        info["native_bf16"] = any(f in flags for f in ("avx512_bf16", "amx_bf16"))
    except (OSError, StopIteration):
        pass
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    return info


def command() -> str:
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(Path(__file__).resolve().parent.parent)
    except ValueError:
        pass
    return " ".join(["python", shlex.quote(script.as_posix()), *map(shlex.quote, sys.argv[1:])])


def write(path: str | None, name: str, *, title: str, result: dict, headline: str, tables: list[dict],
          notes: list[str] = ()) -> Path | None:
    """Write the results file (see the module docstring); returns its path, or None when nothing was written."""
    if path is None and os.environ.get("PYTEST_CURRENT_TEST"):
        return None
    target = Path(path) if path else RESULTS / f"{name}.json"
    record = {"benchmark": name, "title": title, "command": command(), "machine": machine(),
              "date": datetime.date.today().isoformat(), "headline": headline, "tables": tables,
              "notes": list(notes), "result": result}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=1, ensure_ascii=False, default=str) + "\n")
    print(f"results: {target}", file=sys.stderr)
    return target


def table(title: str, columns: list[str], rows: list[list]) -> dict:
    return {"title": title, "columns": list(columns), "rows": [list(r) for r in rows]}
