"""The CLI's logging: datapruner's INFO lines on stderr by default (-q: datapruner's warnings and errors
only, datapruner/logs.py; -v: debug), other libraries' at WARNING (INFO with -v), restored afterwards (a
command run inside a test or a notebook)."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

from datapruner.logs import OursOrErrors, quiet_warnings

# third-party loggers that speak at INFO about their own business: warnings only, unless -v
NOISY = ("matplotlib", "PIL", "urllib3", "httpx", "httpcore", "huggingface_hub", "filelock", "fsspec", "asyncio",
         "numba", "timm", "torch", "faiss")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a redirect made later)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


@contextmanager
def cli_logging(quiet: bool, verbose: bool):
    root, ours = logging.getLogger(), logging.getLogger("datapruner")
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    noisy = [logging.getLogger(name) for name in NOISY]
    saved = (root.level, ours.level, [n.level for n in noisy])
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    if quiet and not verbose:
        handler.addFilter(OursOrErrors())
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    ours.setLevel(level)
    for logger in noisy:
        logger.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        with quiet_warnings(quiet and not verbose):
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])
        for logger, before in zip(noisy, saved[2]):
            logger.setLevel(before)
