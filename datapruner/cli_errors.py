"""How a CLI command reports what a user can fix: one line on stderr, exit 2 (DataprunerError) or 1
(a full disk, a permission refused); with -v the traceback comes first. A bug keeps its traceback."""

from __future__ import annotations

import errno
import sys
import traceback
from contextlib import contextmanager

import typer

from datapruner.errors import DataprunerError, OutputError

# errno values a rerun recovers from once the user frees space or fixes permissions
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
NOT_PERMITTED = {errno.EACCES, errno.EPERM, errno.EROFS}


@contextmanager
def user_errors(verbose: bool = False):
    try:
        yield
    except OutputError as exc:  # a full disk met while writing a run file (io/atomic.py names the file)
        _fail(str(exc), 1, verbose)
    except DataprunerError as exc:
        _fail(str(exc), 2, verbose)
    except OSError as exc:
        if exc.errno not in DISK_FULL | NOT_PERMITTED:
            raise
        what = "free space" if exc.errno in DISK_FULL else "fix permissions"
        where = exc.filename if exc.filename is not None else exc.filename2
        _fail(f"{f'{where}: ' if where is not None else ''}{exc.strerror or exc} "
              f"({what} and rerun: finished parts are kept)", 1, verbose)


def _fail(message: str, code: int, verbose: bool):
    if verbose:
        traceback.print_exc(file=sys.stderr)
    print_error(message)
    raise typer.Exit(code) from None


def print_error(message: str) -> None:
    typer.secho(f"error: {' '.join(message.split())}", fg=typer.colors.RED, err=True)
