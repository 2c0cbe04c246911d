"""The first m rows of each group in (order value, shard, key, row) order, found over a stream of parts
in O(groups + ties) memory: no pass holds more than one part and a bounded band of candidate rows.

Order values are mapped to unsigned 64-bit keys whose integer order is the order `np.lexsort` gives the
float64 values (−0.0 = 0.0, every NaN equal and last). A first pass counts each group's eligible rows and
their key range; each further pass histograms the keys still in a group's band (the range where its m-th
row lies) into 2^bits cells, starting below the bits that the band's minimum and maximum share, and
narrows the band to the cell holding the m-th row, to the exact minimum and maximum seen in that cell.
When the bands hold few rows (or only equal keys: the tie band), one last pass collects them with their
(shard, key) and takes the first rows of each band exactly as the in-memory sort would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TOP = np.uint64(1 << 63)
ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
BAND_ROWS = 1 << 18  # collect the bands once they hold at most this many rows in all
HISTOGRAM_CELLS = 1 << 20  # groups × cells per refining pass


def order_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys that sort as np.sort sorts float64 `values` (−0.0 equal to 0.0, NaNs equal and last)."""
    v = np.asarray(values, np.float64) + 0.0  # -0.0 + 0.0 = +0.0
    bits = v.view(np.uint64)
    keys = np.where(bits & TOP, ~bits, bits | TOP)
    keys[np.isnan(v)] = ALL_ONES
    return keys


@dataclass
class Rows:
    """One part's rows as a selection sees them."""

    start: int  # the global index of the part's first row
    group: np.ndarray  # int64 per row
    key: np.ndarray  # uint64 order key per row
    eligible: np.ndarray  # bool per row: only these compete
    names: Callable[[np.ndarray], pa.Table]  # the (shard, key) columns of the rows at these positions


@dataclass
class Cut:
    """Per group: every eligible row with key < lo is in; rows in [lo, hi] are in when `whole` or when
    their global index is in `chosen`; rows above hi are out."""

    lo: np.ndarray
    hi: np.ndarray
    whole: np.ndarray
    chosen: np.ndarray  # sorted global row indices

    def member(self, rows: Rows) -> np.ndarray:
        g, key = rows.group, rows.key
        below = key < self.lo[g]
        band = (key >= self.lo[g]) & (key <= self.hi[g])
        picked = np.isin(np.arange(rows.start, rows.start + len(key)), self.chosen, assume_unique=True)
        return rows.eligible & (below | (band & (self.whole[g] | picked)))


def first_in_order(passes: Callable[[], Iterable[Rows]], quotas: np.ndarray) -> Cut:
    """The first quotas[g] eligible rows of each group g (each quota at most the group's eligible count).
    `passes()` reads the parts again, in the same order, each time it is called."""
    need = np.asarray(quotas, np.int64).copy()
    count, lo, hi = _band_stats(passes, len(need))
    if (need > count).any():
        raise ValueError("a quota exceeds its group's eligible rows")
    while True:
        partial = (need > 0) & (need < count)
        refine = partial & (lo < hi)
        if not refine.any() or count[partial].sum() <= BAND_ROWS:
            break
        _narrow(passes, refine, need, count, lo, hi)
    partial = (need > 0) & (need < count)
    chosen = _collect(passes, partial, need, lo, hi) if partial.any() else np.zeros(0, np.int64)
    return Cut(lo, hi, need == count, chosen)  # a zero quota: lo is the least key, nothing is below it


def _in_band(rows: Rows, lo: np.ndarray, hi: np.ndarray, open_: np.ndarray) -> np.ndarray:
    g = rows.group
    return rows.eligible & open_[g] & (rows.key >= lo[g]) & (rows.key <= hi[g])


def _band_stats(passes, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count = np.zeros(n, np.int64)
    lo = np.full(n, ALL_ONES, np.uint64)
    hi = np.zeros(n, np.uint64)
    for rows in passes():
        g, key = rows.group[rows.eligible], rows.key[rows.eligible]
        count += np.bincount(g, minlength=n)
        np.minimum.at(lo, g, key)
        np.maximum.at(hi, g, key)
    return count, lo, hi


def _bit_length(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    length = np.zeros(len(x), np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        high = (x >> np.uint64(step)) != 0
        length += np.where(high, step, 0)
        x = np.where(high, x >> np.uint64(step), x)
    return length + (x != 0)


def _narrow(passes, refine: np.ndarray, need, count, lo, hi) -> None:
    """One histogram pass over the refined groups' bands; updates need, count, lo, hi in place."""
    groups = np.flatnonzero(refine)
    slot = np.full(len(refine), -1, np.int64)
    slot[groups] = np.arange(len(groups))
    bits = int(np.clip(np.log2(HISTOGRAM_CELLS / len(groups)), 1, 16))
    width = 1 << bits
    shift = np.maximum(_bit_length(lo[groups] ^ hi[groups]) - bits, 0).astype(np.uint64)
    base = lo[groups] >> shift
    cells = len(groups) * width
    cell_count = np.zeros(cells, np.int64)
    cell_lo = np.full(cells, ALL_ONES, np.uint64)
    cell_hi = np.zeros(cells, np.uint64)
    for rows in passes():
        band = _in_band(rows, lo, hi, refine)
        s, key = slot[rows.group[band]], rows.key[band]
        cell = s * width + ((key >> shift[s]) - base[s]).astype(np.int64)
        cell_count += np.bincount(cell, minlength=cells)
        np.minimum.at(cell_lo, cell, key)
        np.maximum.at(cell_hi, cell, key)
    before = np.cumsum(cell_count.reshape(len(groups), width), axis=1)
    pick = np.argmax(before >= need[groups, None], axis=1)
    taken_below = np.where(pick > 0, before[np.arange(len(groups)), pick - 1], 0)
    at = np.arange(len(groups)) * width + pick
    need[groups] -= taken_below
    count[groups] = cell_count[at]
    lo[groups], hi[groups] = cell_lo[at], cell_hi[at]


def _collect(passes, partial: np.ndarray, need, lo, hi) -> np.ndarray:
    """The global indices of the first need[g] band rows of each partial group, in (key, shard, key, row)."""
    found = []
    for rows in passes():
        band = np.flatnonzero(_in_band(rows, lo, hi, partial))
        if len(band):
            names = rows.names(band)
            found.append(pa.table({"group": rows.group[band], "order": rows.key[band],
                                   "shard": names.column("shard"), "key": names.column("key"),
                                   "row": rows.start + band}))
    band = pa.concat_tables(found)
    ordered = band.take(pc.sort_indices(band, sort_keys=[(c, "ascending") for c in band.column_names]))
    groups = ordered.column("group").to_numpy()
    rows = ordered.column("row").to_numpy()
    starts = np.r_[0, np.flatnonzero(groups[1:] != groups[:-1]) + 1]
    rank = np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    return np.sort(rows[rank < need[groups]])
