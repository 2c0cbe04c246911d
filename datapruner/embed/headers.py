"""What a precomputed embeddings file says about itself, read from its header or footer only.

npy headers and the headers of an npz's members are read with numpy.lib.format, which parses the header
as a literal and never unpickles: an object (pickled) array is refused from its dtype, and no code from it
runs. Parquet files are read up to their footer. A file that cannot serve is refused in one line that
names it and what is wrong (DataprunerError), before any work.
"""

from __future__ import annotations

import tokenize
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datapruner.errors import DataprunerError

FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))  # accepted, in any byte order
# what numpy's header parser raises on a header that is not one (it tokenizes the header's dict literal)
BAD_HEADER = (ValueError, EOFError, SyntaxError, TypeError, tokenize.TokenError)


@dataclass(frozen=True)
class ArrayHeader:
    shape: tuple
    dtype: np.dtype
    data_bytes: int  # what the file holds after the header

    @property
    def rows(self) -> int:
        return int(self.shape[0]) if self.shape else 0

    @property
    def dim(self) -> int:
        return int(self.shape[1]) if len(self.shape) > 1 else 0


def npy_header(path: Path) -> ArrayHeader:
    try:
        with open(path, "rb") as f:
            shape, dtype = _read_header(f)
            start = f.tell()
    except BAD_HEADER as exc:
        raise DataprunerError(f"{path}: not a readable .npy file ({one_line(exc)})") from None
    return ArrayHeader(shape, dtype, path.stat().st_size - start)


def npz_headers(path: Path) -> dict[str, ArrayHeader]:
    """{array name: header} of an npz, from its zip directory and its members' headers (nothing is loaded)."""
    try:
        with zipfile.ZipFile(path) as z:
            return {info.filename[:-4]: _member_header(z, info) for info in z.infolist()
                    if info.filename.endswith(".npy")}
    except (zipfile.BadZipFile, OSError, *BAD_HEADER) as exc:
        raise DataprunerError(f"{path}: not a readable .npz file ({one_line(exc)})") from None


def _member_header(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> ArrayHeader:
    with z.open(info) as f:
        shape, dtype = _read_header(f)
        return ArrayHeader(shape, dtype, info.file_size - f.tell())


def _read_header(f) -> tuple[tuple, np.dtype]:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(f)
    return tuple(shape), dtype


def check_embeddings(where: str, header: ArrayHeader) -> None:
    """Refuse an array that cannot be embeddings: not float16/32/64, not 2-D, rows of no dimension, or
    fewer bytes than its header promises (a truncated file)."""
    dtype, shape = header.dtype, header.shape
    if dtype.hasobject:
        raise DataprunerError(f"{where} holds Python objects (a pickled array): refused, and nothing of it is "
                              "loaded; embeddings must be float16, float32 or float64 numbers")
    if dtype.kind in "iub":
        what = "booleans" if dtype.kind == "b" else f"{dtype.name} integers"
        raise DataprunerError(f"{where} holds {what}: embeddings must be float16, float32 or float64 "
                              "(quantised embeddings are not read; convert them to floats first)")
    if dtype.newbyteorder("=") not in FLOATS:
        raise DataprunerError(f"{where} has dtype {dtype}: embeddings must be float16, float32 or float64")
    if len(shape) != 2:
        raise DataprunerError(f"{where} is {len(shape)}-D (shape {shape}): embeddings are a 2-D array, one row "
                              "per sample")
    if header.rows and not header.dim:
        raise DataprunerError(f"{where} has {header.rows} rows of dimension 0")
    needed = header.rows * header.dim * dtype.itemsize
    if header.data_bytes < needed:
        raise DataprunerError(f"{where} is truncated: its header says {header.rows} × {header.dim} {dtype.name} "
                              f"({needed} bytes) but it holds {max(0, header.data_bytes)} bytes after the header")


def parquet_rows(path: Path) -> int:
    return _footer(path).num_rows


def parquet_columns(path: Path) -> set[str]:
    return set(_footer(path).schema.to_arrow_schema().names)


def _footer(path: Path) -> pq.FileMetaData:
    try:
        return pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException) as exc:
        raise DataprunerError(f"{path}: not a readable parquet file, its footer is corrupt or the file is truncated "
                              f"({one_line(exc)})") from None


def one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit] + "…"
