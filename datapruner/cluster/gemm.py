"""Similarities of unit rows in bfloat16 with a proven error bound, and the exact check that makes the answers exact.

Every answer here (a row's nearest centroid, a row's maximum similarity to earlier rows) is the one
that *exact* similarities give, with similarities evaluated by `pair_similarity` (float64 products of
the float32 rows, summed in float64: within ~1e-13 of the real value) and ties to the lowest index.
The fast pass only proposes candidates:

- `products` computes Ŝ = A·Bᵀ in bfloat16 (or float32) with float32 accumulation;
- `error_bound` bounds |Ŝ_ij − s_ij| for every entry (derivation below), so the exact maximum of a
  row lies among the entries whose upper bound Ŝ + E reaches the row's best lower bound max(Ŝ − E);
- those candidates (usually one) are evaluated exactly with `pair_similarity`.

So the result does not depend on the precision of the fast pass (bf16 and fp32 give the same
output), only its speed does. The bound, for rows a, b rounded to ã, b̃ (bf16, u = 2⁻⁸) with residuals
a − ã, b − b̃ and products accumulated in float32 (γ_d = d·2⁻²⁴ / (1 − d·2⁻²⁴)), then rounded:

    |ã·b̃ − a·b| ≤ ‖a − ã‖·‖b‖ + ‖ã‖·‖b − b̃‖                  (Cauchy–Schwarz, per row norms)
    |fl32(Σ ã_i b̃_i) − ã·b̃| ≤ γ_d·‖ã‖·‖b̃‖                     (bf16×bf16 products are exact in fp32)
    |fl_bf16(t) − t| ≤ ½ ulp_bf16(Ŝ)                            (the output is rounded to bf16)

plus 2·γ_d(float64) for `pair_similarity` itself and 2⁻¹⁰⁰ for flushed denormals. In float32 the
first and last terms are 0. tests/cluster/test_gemm.py checks the bound against float64 products.

Precision: DATAPRUNER_GEMM_PRECISION=fp32|bf16|auto (default auto: bf16 on CUDA or on a CPU with
AVX-512 BF16 / AMX, float32 otherwise, with a log line).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from datapruner.devices import resolve_device

log = logging.getLogger(__name__)

PRECISION_ENV = "DATAPRUNER_GEMM_PRECISION"
TINY = 2.0 ** -100  # covers denormals flushed to zero by bf16 kernels
F32_EPS = 2.0 ** -24
F64_EPS = 2.0 ** -53
ROUNDING_SLACK = 2.0 ** -30  # margin on the float64 bound arithmetic


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def torch_device(device: str = "auto") -> torch.device:
    """Where SemDeDup multiplies: --device by the one rule of datapruner/devices.py."""
    return resolve_device(device)


@lru_cache(maxsize=None)
def gemm_precision(device_type: str = "cpu") -> str:
    """'bf16' or 'fp32' for the fast pass on this device type ('cpu' or 'cuda')."""
    asked = os.environ.get(PRECISION_ENV, "auto").lower()
    if asked not in ("auto", "bf16", "fp32"):
        raise ValueError(f"{PRECISION_ENV} must be fp32, bf16 or auto, got {asked!r}")
    if asked != "auto":
        return asked
    if device_type == "cuda" or cpu_has_bf16():
        return "bf16"
    log.info("this CPU has no bfloat16 dot-product instructions: similarities in float32")
    return "fp32"


@dataclass
class Operand:
    """Unit rows ready for the fast product: the exact float32 rows, their low-precision copy and the norms
    the error bound needs (rounded up)."""

    exact: np.ndarray  # (n, d) float32, C-contiguous (the rows every exact value is computed from)
    low: torch.Tensor  # (n, d) as multiplied (bf16 or fp32), on the compute device
    exact_norm: np.ndarray  # (n,) float64 ≥ ‖a‖
    low_norm: np.ndarray  # (n,) float64 ≥ ‖ã‖
    residual_norm: np.ndarray  # (n,) float64 ≥ ‖a − ã‖
    precision: str


NORM_SLACK = 1 + 2.0 ** -12  # float32 norms of ≤ 4096-d rows are within d·2⁻²⁴ relative of the real ones


def row_norms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", x, x).astype(np.float64)) * NORM_SLACK


def prepare(x: np.ndarray, device: torch.device, precision: str, measure_residual: bool = True) -> Operand:
    """The operand for unit rows x. Without `measure_residual` (where the extra passes would cost more than
    they save) the norms take their a-priori bounds ‖a − ã‖ ≤ 2⁻⁸‖a‖ and ‖ã‖ ≤ (1 + 2⁻⁸)‖a‖."""
    exact = np.ascontiguousarray(x, np.float32)
    norm = row_norms(exact)
    if precision != "bf16":
        return Operand(exact, torch.from_numpy(exact).to(device), norm, norm, np.zeros(len(exact)), precision)
    low = torch.from_numpy(exact).to(torch.bfloat16)  # round to nearest even
    if measure_residual:
        rounded = low.float().numpy()
        low_norm, residual = row_norms(rounded), row_norms(exact - rounded)
    else:
        low_norm, residual = norm * (1 + 2.0 ** -8), norm * 2.0 ** -8
    return Operand(exact, low.to(device), norm, low_norm, residual, precision)


def rows_of(a: Operand, lo: int, hi: int) -> Operand:
    return Operand(a.exact[lo:hi], a.low[lo:hi], a.exact_norm[lo:hi], a.low_norm[lo:hi], a.residual_norm[lo:hi],
                   a.precision)


def raw_products(a: Operand, b: Operand) -> torch.Tensor:
    """Ŝ = ã·b̃ᵀ on the CPU, in the operands' precision (bf16 out of a bf16 product, float32 accumulation)."""
    if a.low.is_cuda:
        with _exact_cuda_accumulation():
            return (a.low @ b.low.T).cpu()
    if a.precision != "bf16":
        return torch.from_numpy(a.exact @ b.exact.T)  # numpy's sgemm: faster than torch's float32 on this kind of CPU
    return torch.nn.functional.linear(a.low, b.low)


def products(a: Operand, b: Operand) -> np.ndarray:
    """Ŝ as a float32 numpy array."""
    return raw_products(a, b).float().numpy()


class _exact_cuda_accumulation:
    """No TF32 for float32 products and no reduced-precision reductions for bf16 ones (the bound assumes both)."""

    def __enter__(self):
        m = torch.backends.cuda.matmul
        self.saved = (m.allow_tf32, m.allow_bf16_reduced_precision_reduction)
        m.allow_tf32, m.allow_bf16_reduced_precision_reduction = False, False

    def __exit__(self, *exc):
        m = torch.backends.cuda.matmul
        m.allow_tf32, m.allow_bf16_reduced_precision_reduction = self.saved


def accumulation_gammas(d: int) -> tuple[float, float]:
    """γ for a float32 sum of d products, and 2γ for the float64 evaluation (pair_similarity) of one."""
    return d * F32_EPS / (1 - d * F32_EPS), 2 * d * F64_EPS / (1 - d * F64_EPS)


def row_bound(a: Operand, b: Operand) -> np.ndarray:
    """(n_a,) float64: the part of the error bound that does not depend on Ŝ, for each row of a against any row of b."""
    gamma32, gamma64 = accumulation_gammas(a.exact.shape[1])
    bound = (a.residual_norm * b.exact_norm.max() + a.low_norm * b.residual_norm.max()
             + gamma32 * a.low_norm * b.low_norm.max() + gamma64 * a.exact_norm * b.exact_norm.max())
    return bound + TINY


def half_ulp_bf16(v: np.ndarray) -> np.ndarray:
    """An upper bound on half a bf16 ulp at each |v| (|v| in [2^(e-1), 2^e) → 2^(e-9)), 0 at 0."""
    _, exponent = np.frexp(v)
    return np.where(v != 0, np.ldexp(1.0, exponent - 9), 0.0)


def entry_bound(top: np.ndarray, rows: np.ndarray, precision: str, lowest: np.ndarray | None = None) -> np.ndarray:
    """(n,) float64 E_i ≥ |Ŝ_ij − s_ij| for every entry of row i that can be a candidate (see `candidates`).

    `rows` from row_bound, `top` the row maxima of Ŝ (−inf where a row is masked out). In bf16 the output
    rounding adds half an ulp at |Ŝ_ij| ≤ |top_i| for entries ≥ 0; an entry < 0 has upper bound ≤ rows_i, so when
    top_i − 2E_i > 0 it cannot be a candidate and the bound at |top_i| is enough. The other rows (`near_zero`)
    need `lowest`, their smallest finite entries: the half ulp is then taken at their largest |Ŝ_ij|."""
    bound = rows + ROUNDING_SLACK
    if precision != "bf16":
        return bound
    largest = np.abs(np.where(np.isfinite(top), top, 0.0).astype(np.float64))
    if lowest is not None:
        largest = np.maximum(largest, np.abs(np.where(np.isfinite(lowest), lowest, 0.0)))
    return bound + half_ulp_bf16(largest)


def near_zero(top: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Rows whose maximum is too close to 0 for the bound at |top| (entries < 0 could be candidates)."""
    return np.flatnonzero(np.isfinite(top) & (top - 2 * bound <= 0))


def bound_rows(s_rows, top: np.ndarray, rows: np.ndarray, precision: str) -> np.ndarray:
    """entry_bound for every row; `s_rows(indices)` gives those rows of Ŝ (float32) for the near-zero ones."""
    bound = entry_bound(top, rows, precision)
    near = near_zero(top, bound) if precision == "bf16" else np.empty(0, np.int64)
    if len(near):
        sub = s_rows(near)
        lowest = np.where(np.isneginf(sub), np.inf, sub).min(axis=1)
        bound[near] = entry_bound(top[near], rows[near], precision, lowest)
    return bound


def floor_of(top: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """float32 top − 2E, rounded down; +inf for rows without a finite entry (no candidate)."""
    floor = (np.asarray(top, np.float64) - 2 * bound).astype(np.float32)
    floor = np.nextafter(floor, np.float32(-np.inf))  # a float32 floor may only widen the set
    floor[~np.isfinite(top)] = np.inf
    return floor


def top_two(s_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's first maximum (column, value) and its runner-up value (−inf for a single column), in two
    passes over the float32 array (the maximum is set aside for the second and put back)."""
    rows = np.arange(len(s_hat))
    arg = s_hat.argmax(axis=1)
    top = s_hat[rows, arg].copy()
    s_hat[rows, arg] = -np.inf
    second = s_hat.max(axis=1)
    s_hat[rows, arg] = top
    return arg, top, second


def candidates(s_hat: np.ndarray, floor: np.ndarray, two=None) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every entry ≥ its row's floor (floor_of: the entries whose upper bound Ŝ + E reaches the
    row's best lower bound, a superset of the row's exact maxima), sorted by row then column.

    Most rows have one candidate, their maximum: two passes (argmax, then the runner-up with the maximum set
    aside) find them, and only the other rows are scanned against their floor. `two`: top_two(s_hat), where the
    caller has it already."""
    arg, top, second = two if two is not None else top_two(s_hat)
    reached = top >= floor
    multi = np.flatnonzero(reached & (second >= floor))
    single = np.flatnonzero(reached & ~(second >= floor))
    r, c = np.nonzero(s_hat[multi] >= floor[multi, None])
    out_rows = np.concatenate([single, multi[r]]).astype(np.int64)
    out_cols = np.concatenate([arg[single], c]).astype(np.int64)
    order = np.lexsort((out_cols, out_rows))
    return out_rows[order], out_cols[order]


def pair_similarity(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """float64 x_i·y_i for paired float32 rows: exact products, a float64 sum in the same order for every row
    (tests/cluster/test_gemm.py checks that a row's value does not depend on its batch)."""
    return (np.asarray(x, np.float64) * np.asarray(y, np.float64)).sum(axis=1)


def exact_rowwise_max(rows: np.ndarray, cols: np.ndarray, a: np.ndarray, b: np.ndarray, n: int,
                      chunk: int = 1 << 15) -> tuple[np.ndarray, np.ndarray]:
    """For candidate pairs (rows[i], cols[i]) sorted by row then column: per row r < n, the column with the
    largest exact similarity a[r]·b[c] (lowest column on ties) and that similarity (−inf where none)."""
    sims = np.concatenate([pair_similarity(a[rows[lo:lo + chunk]], b[cols[lo:lo + chunk]])
                           for lo in range(0, len(rows), chunk)] or [np.empty(0)])
    best = np.full(n, -np.inf)
    np.maximum.at(best, rows, sims)
    winner = np.full(n, -1, np.int64)
    hit = np.flatnonzero(sims == best[rows])
    hit_rows, first = np.unique(rows[hit], return_index=True)  # pairs are sorted: the first hit has the lowest column
    winner[hit_rows] = cols[hit[first]]
    return winner, best
