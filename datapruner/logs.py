"""What other libraries may print: with -q, datapruner's own warnings and errors only.

Quiet drops other libraries' log records below ERROR (open_clip warns on the root logger) and their
Python warnings. The CLI applies it for one command (cli_logging); a Ray actor of a quiet driver for
its whole life (runners/ray.py), so that nothing of the kind is echoed from the cluster either.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Iterator

OURS = "datapruner"


def is_ours(logger_name: str) -> bool:
    return logger_name == OURS or logger_name.startswith(OURS + ".")


class OursOrErrors(logging.Filter):
    """A handler's filter under -q: datapruner's records, and other loggers' errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return is_ours(record.name) or record.levelno >= logging.ERROR


def ignore_other_warnings() -> None:
    """Python warnings raised outside datapruner are ignored (in this process, from now on)."""
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=rf"{OURS}(\.|$)")


@contextmanager
def quiet_warnings(quiet: bool) -> Iterator[None]:
    """With `quiet`, ignore_other_warnings for the block; the filters as they were afterwards."""
    with warnings.catch_warnings():
        if quiet:
            ignore_other_warnings()
        yield


def driver_level() -> int:
    """The level the CLI set on datapruner's logger (NOTSET when no CLI set one: a library call)."""
    return logging.getLogger(OURS).level


def follow_driver(level: int) -> None:
    """In a worker process (a Ray actor): datapruner's logger at the driver's `level`; when that is quiet
    (WARNING or above), other libraries' warnings dropped. NOTSET leaves the process as it is."""
    if level == logging.NOTSET:
        return
    logging.getLogger(OURS).setLevel(level)
    if level >= logging.WARNING:
        logging.getLogger().setLevel(logging.ERROR)  # loggers without a level of their own, the root's included
        ignore_other_warnings()
