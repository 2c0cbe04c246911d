"""What the benchmarks measure a process by: its CPU seconds and its peak resident size per phase."""

from __future__ import annotations

import resource
import time


def now() -> float:
    """The clock the recipe's figures use: this process's CPU seconds. With one thread that is the work done, whatever
    else shares the core (on a shared machine wall time mostly measures the neighbours); wall times are printed
    beside it."""
    return time.process_time()


def peak_rss_mib() -> int:
    """This process's peak RSS since the last reset_peak_rss (VmHWM), or since it started (ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


PHASE_START_RSS = []  # MiB resident when each phase began (what the process already held)


def reset_peak_rss() -> None:
    """Start a phase's peak from the current RSS (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    PHASE_START_RSS.append(peak_rss_mib())


# data ------------------------------------------------------------------------------------------------
