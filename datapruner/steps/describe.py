"""The step table in words, for docs/design.md: `python -m datapruner.steps.describe docs/design.md`
rewrites the lines between its markers; a test checks that they are current."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.steps.contract import Step
from datapruner.steps.table import TABLE

BEGIN, END = "<!-- step table: generated -->", "<!-- /step table -->"
FIELDS = {f.name for f in dataclasses.fields(Config)}


class _FieldsRead(Config):
    """A default Config that notes which fields are read."""

    def __getattribute__(self, name):
        if name in FIELDS:
            object.__getattribute__(self, "__dict__").setdefault("_read", set()).add(name)
        return object.__getattribute__(self, name)


def token_fields(step: Step) -> list[str]:
    cfg = _FieldsRead()
    step.inputs(cfg)
    return sorted(cfg.__dict__.get("_read", set()))


def parts_text(step: Step) -> tuple[str, str]:
    """The parts in words and the placeholder their names take in the outputs."""
    doc = (step.parts.__doc__ or "").strip().splitlines()[0]
    found = re.search(r"\{(\w+)\}", doc)
    return doc, found.group(0) if found else "{part}"


def row(step: Step) -> str:
    parts, placeholder = parts_text(step)
    writes = ", ".join(f"`{p.relative_to('RUN')}`" for p in step.outputs(RunDir("RUN"), placeholder))
    after = ", ".join(step.after) or "—"
    token = ", ".join(token_fields(step)) or "—"
    left_out = ", ".join(sorted(step.untokened)) or "—"
    return f"| {step.name} | {step.kind} | `{step.command}` | {after} | {parts} | {token} | {left_out} | {writes} |"


def table_text() -> str:
    head = ["| step | kind | command | after | parts | config in its token | config read, not in its token | writes |",
            "|---|---|---|---|---|---|---|---|"]
    return "\n".join([*head, *(row(s) for s in TABLE.values())])


def rewritten(text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + table_text() + "\n" + text[end:]


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.write_text(rewritten(path.read_text()))
