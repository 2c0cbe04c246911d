"""`datapruner index RUN --format F [--out DIR]`: a loader's index of the kept samples (docs/indexes.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

FORMAT_HELP = ("dali (.idx files per source shard), wids (dataset.json and kept_indices.npy), energon (split.yaml "
               "with exclude entries) or uids (names RUN/manifest/keep_uids.npy).")


def index(run: Path, fmt: str = typer.Option(..., "--format", "-f", help=FORMAT_HELP),
          out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the index (new, empty, or an "
                                             "earlier index's).", show_default="RUN/indexes/FORMAT"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="Warnings and errors only."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug lines, and a traceback with every error."),
          as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON.")):
    """Index RUN's kept samples for another loader (DALI, wids, Energon) without writing shards."""
    from datapruner import api

    summary = api.index(run, fmt, out)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"{summary['format']} index of {summary['samples']} kept samples in {summary['folder']}: "
               f"{', '.join(summary['files'][:4])}{' …' if len(summary['files']) > 4 else ''}")
