"""Progress of a long step: a tqdm bar on a terminal, INFO log lines elsewhere.

On a terminal (stderr is a TTY) a step shows a tqdm bar. Anywhere else (Airflow task logs, CI, a
`2>&1 | tee` log) a bar's carriage returns are noise, so the same progress is logged through the
`datapruner.progress` logger at a steady interval (`DATAPRUNER_PROGRESS_INTERVAL` seconds, default
30) and once more when a step that lasted at least that long ends:

    embed: 1200/3000 samples (40%), 17.5 samples/s, elapsed 0:01:08, ETA 0:01:43
    embed: 1200 samples, 17.5 samples/s, elapsed 0:01:08          (total not known yet)
    embed: done, 3000 samples in 0:02:51 (17.5 samples/s)

`DATAPRUNER_PROGRESS=log` (or `bar`) forces one form whatever stderr is.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

LOGGER = "datapruner.progress"
INTERVAL_ENV = "DATAPRUNER_PROGRESS_INTERVAL"
MODE_ENV = "DATAPRUNER_PROGRESS"
DEFAULT_INTERVAL = 30.0

log = logging.getLogger(LOGGER)


def interval() -> float:
    """Seconds between progress log lines."""
    try:
        return max(0.01, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def use_bars() -> bool:
    mode = os.environ.get(MODE_ENV, "").strip().lower()
    if mode in ("bar", "bars", "tqdm"):
        return True
    if mode in ("log", "logs", "lines"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def bar(desc: str, total: float | None = None, unit: str = "part", enabled: bool = True) -> Iterator["Progress"]:
    """A progress counter for one step: `update(n)`, `set_total(t)`; a bar, log lines, or nothing."""
    if not enabled:
        yield Progress()
        return
    if use_bars():
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm(), tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True) as t:
            yield _Bar(t)  # log lines are written above the bar, not through it
        return
    progress = _Lines(desc, total, unit)
    progress.start()
    try:
        yield progress
    finally:
        progress.stop()


class Progress:
    """Counts and says nothing (progress disabled)."""

    def __init__(self, total: float | None = None):
        self.n = 0
        self.total = total

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_total(self, total: float | None) -> None:
        self.total = total


class _Bar(Progress):
    def __init__(self, t):
        super().__init__(t.total)
        self._t = t

    def update(self, n: float = 1) -> None:
        super().update(n)
        self._t.update(n)

    def set_total(self, total: float | None) -> None:
        super().set_total(total)
        if self._t.total != total:
            self._t.total = total
            self._t.refresh()


_active: list["_Lines"] = []  # running line-loggers, outermost first: only the innermost speaks


class _Lines(Progress):
    """Logs the count every interval() seconds from a daemon thread, and a last line at the end. While
    a nested one runs (embed's samples inside the runner's parts), only the nested one logs."""

    def __init__(self, desc: str, total: float | None, unit: str):
        super().__init__(total)
        self.desc, self.unit = desc, unit
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name=f"progress-{desc}", daemon=True)

    def start(self) -> None:
        _active.append(self)
        self._thread.start()

    def stop(self) -> None:
        """The last line, for a step that ran at least one interval (fast steps stay quiet)."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self in _active:
            _active.remove(self)
        if time.monotonic() - self._start >= interval():
            log.info("%s", self.done_line())

    def _tick(self) -> None:
        every = interval()
        while not self._stop.wait(every):
            if _active and _active[-1] is self:
                log.info("%s", self.line())

    def _rate(self, elapsed: float) -> float:
        return self.n / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        rate = self._rate(elapsed)
        units = plural(self.unit)
        n = _count(self.n)
        if self.total:
            text = f"{self.desc}: {n}/{_count(self.total)} {units} ({min(100.0, 100 * self.n / self.total):.0f}%)"
        else:
            text = f"{self.desc}: {n} {units}"
        text += (f", {rate:.3g} {units}/s" if self.n else "") + f", elapsed {clock(elapsed)}"
        if self.total and rate > 0:
            text += f", ETA {clock(max(0.0, self.total - self.n) / rate)}"
        return text

    def done_line(self) -> str:
        elapsed = time.monotonic() - self._start
        return (f"{self.desc}: done, {_count(self.n)} {plural(self.unit)} in {clock(elapsed)} "
                f"({self._rate(elapsed):.3g} {plural(self.unit)}/s)")


def plural(unit: str) -> str:
    return unit if unit.endswith("s") else unit + "s"


def clock(seconds: float) -> str:
    """0:01:08 (h:mm:ss)."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


class ShardEstimate:
    """The total of a count over shards read in parallel (samples), before they are all read: from the
    shards' byte sizes and the count per byte read so far, or else the mean count of the finished shards.

    `read(index, n, position, last)` after each batch of shard `index`: n more counted, `position` the
    byte offset reached in it (None: unknown). `total()` is None until there is something to go on.
    """

    def __init__(self, sizes: dict[int, int | None]):
        self.sizes = dict(sizes)
        self.known = bool(sizes) and all(s for s in sizes.values())
        self.position = {i: 0.0 for i in sizes}
        self.count = {i: 0 for i in sizes}
        self.finished: set[int] = set()

    def read(self, index: int, n: int, position: float | None = None, last: bool = False) -> int | None:
        self.count[index] = self.count.get(index, 0) + n
        size = self.sizes.get(index)
        if last:
            self.finished.add(index)
            self.position[index] = size or self.position.get(index, 0.0)
        elif position is not None and size:
            self.position[index] = max(self.position.get(index, 0.0), min(float(position), 0.99 * size))
        return self.total()

    def total(self) -> int | None:
        done = sum(self.count.values())
        seen = sum(self.position.values())
        if self.known and seen > 0 and done > 0:
            estimate = done * sum(self.sizes.values()) / seen
        elif self.finished:
            per_shard = sum(self.count[i] for i in self.finished) / len(self.finished)
            unfinished = [i for i in self.sizes if i not in self.finished]
            estimate = sum(self.count[i] for i in self.finished) + per_shard * len(unfinished)
        else:
            return None
        if len(self.finished) == len(self.sizes):
            return done
        return max(done, int(round(estimate)))


def local_size(url: str) -> int | None:
    """A shard's byte size when it is a plain local file (a compressed one's offsets are of the
    decompressed stream, so it has none); never a remote call."""
    path = url[len("file://"):] if url.startswith("file://") else url
    if "://" in path or path.startswith("pipe:") or path.endswith((".gz", ".tgz")):
        return None
    try:
        return os.path.getsize(path) or None
    except OSError:
        return None
