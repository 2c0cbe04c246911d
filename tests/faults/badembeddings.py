"""A generator of hostile `--embeddings DIR` folders: one case per fault, each with what must happen.

Every case writes real shards (SRC: 2 shards × 5 samples, images, captions, labels, uids) and a DIR in the
embedding-reader / clip-retrieval, LAION or DataComp layout with one fault. A case either names the file
whose fault must be refused up front (`refused`: exit 2, one line naming it, nothing written), or says per
sample what errors/ must give it (anything else is valid and must be kept byte for byte).
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from badshards import Expected
from shardmaker import NAMES, sample_members, write_tar

DIM, SHARDS, PER_SHARD = 16, 2, 5
N = SHARDS * PER_SHARD
BAD, MISSING, UNREADABLE = "bad embedding", "no embedding", "unreadable embedding"


@dataclass(frozen=True)
class Built:
    src: Path
    emb: Path
    expected: Expected  # what a completed run must show (every input sample)
    refused: str | None  # the file the one-line refusal must name, when the case must be refused
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    name: str
    layout: str
    build: Callable[[Path], Built]


@dataclass
class Fault:
    """What a case changes: the arrays before they are saved, the files after; the outcome it expects."""
    arrays: Callable[[list, list], None] | None = None  # (image arrays, text arrays) per part, changed in place
    files: Callable[[Path], None] | None = None
    refused: str | None = None
    invalid: dict[int, str] = field(default_factory=dict)  # sample index -> category
    unsure: tuple[int, ...] = ()
    text: bool = False
    dim: int = DIM
    dtype: str = "<f2"
    args: tuple[str, ...] = ()


# the shards and their vectors -------------------------------------------------------------------------------

def key(i: int) -> str:
    return f"{i:06d}"


def vector(i: int, kind: int, dim: int) -> np.ndarray:
    v = np.random.default_rng([i, kind]).normal(size=dim)
    return v / np.linalg.norm(v)


def write_src(src: Path) -> dict[int, tuple[str, dict[str, bytes]]]:
    """sample index -> (shard file, members)."""
    found = {}
    for s in range(SHARDS):
        idx = range(s * PER_SHARD, (s + 1) * PER_SHARD)
        samples = [(key(i), sample_members(i, i % 4, ["jpg", "png", "webp"][i % 3])) for i in idx]
        write_tar(src / f"{s:05d}.tar", samples)
        found.update({i: (f"{s:05d}.tar", m) for i, (_, m) in zip(idx, samples)})
    return found


def expected(samples: dict, fault: Fault) -> Expected:
    exp = Expected()
    for i, (shard, members) in samples.items():
        if i in fault.invalid:
            exp.invalid[(shard, key(i))] = fault.invalid[i]
        elif i in fault.unsure:
            exp.unsure[(shard, key(i))] = members
        else:
            exp.valid[(shard, key(i))] = members
    return exp


def caption(i: int) -> str:
    return f"a {NAMES[i % 4]} disc number {i}"


# embedding-reader / clip-retrieval / LAION ------------------------------------------------------------------

def part_of(i: int) -> tuple[int, int]:
    """Rows are spread round-robin: sample i is row i // 2 of part i % 2 (each part spans both shards)."""
    return i % 2, i // 2


def reader_columns(i: int) -> dict:
    return {"key": key(i), "caption": caption(i)}


def laion_columns(i: int) -> dict:
    return {"image_path": key(i), "caption": caption(i), "url": f"https://img.example/{i}.jpg", "key": key(i),
            "similarity": 0.3, "width": 40, "height": 40, "md5": "ab" * 16}


def clip_retrieval_columns(i: int) -> dict:
    return {"image_path": f"{key(i)}.jpg", "caption": caption(i)}


def reader(fault: Fault, columns: Callable[[int], dict] = reader_columns):
    def build(root: Path) -> Built:
        src, emb = root / "src", root / "emb"
        samples = write_src(src)
        parts = [[i for i in range(N) if part_of(i)[0] == p] for p in range(2)]
        img = [np.array([vector(i, 0, fault.dim) for i in ids]).astype(fault.dtype) for ids in parts]
        txt = [np.array([vector(i, 1, fault.dim) for i in ids]).astype(fault.dtype) for ids in parts]
        if fault.arrays:
            fault.arrays(img, txt)
        for p, ids in enumerate(parts):
            save_npy(emb / f"img_emb/img_emb_{p}.npy", img[p])
            if fault.text:
                save_npy(emb / f"text_emb/text_emb_{p}.npy", txt[p])
            save_parquet(emb / f"metadata/metadata_{p}.parquet", [columns(i) for i in ids])
        if fault.files:
            fault.files(emb)
        return Built(src, emb, expected(samples, fault), fault.refused, fault.args)
    return build


def save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=True)  # a hostile folder may well hold pickles


def save_parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


# DataComp ----------------------------------------------------------------------------------------------------

def datacomp(fault: Fault):
    """{shard}.npz (b32_img, b32_txt) beside {shard}.parquet (uid, text), rows in reverse sample order."""
    def build(root: Path) -> Built:
        src, emb = root / "src", root / "emb"
        samples = write_src(src)
        parts = [list(range((s + 1) * PER_SHARD - 1, s * PER_SHARD - 1, -1)) for s in range(SHARDS)]
        img = [np.array([vector(i, 0, fault.dim) for i in ids]).astype(fault.dtype) for ids in parts]
        txt = [np.array([vector(i, 1, fault.dim) for i in ids]).astype(fault.dtype) for ids in parts]
        if fault.arrays:
            fault.arrays(img, txt)
        emb.mkdir(parents=True)
        for s, ids in enumerate(parts):
            np.savez(emb / f"{s:08d}.npz", allow_pickle=True, b32_img=img[s], b32_txt=txt[s])
            save_parquet(emb / f"{s:08d}.parquet", [{"uid": f"{i:032x}", "text": caption(i)} for i in ids])
        if fault.files:
            fault.files(emb)
        return Built(src, emb, expected(samples, fault), fault.refused, fault.args)
    return build


def dc_row(i: int) -> tuple[int, int]:
    """Sample i's (part, row) in the DataComp folder."""
    s = i // PER_SHARD
    return s, (s + 1) * PER_SHARD - 1 - i


# array faults --------------------------------------------------------------------------------------------------

def set_rows(where: Callable[[int], tuple[int, int]], values: dict[int, Callable[[np.ndarray], None]], text=False):
    """Change sample i's row in place with values[i]."""
    def change(img: list, txt: list) -> None:
        for i, fn in values.items():
            p, r = where(i)
            fn((txt if text else img)[p][r])
    return change


def nan_component(row: np.ndarray) -> None:
    row[3] = np.nan


def all_nan(row: np.ndarray) -> None:
    row[:] = np.nan


def infinite(row: np.ndarray) -> None:
    row[0], row[5] = np.inf, -np.inf


def zero(row: np.ndarray) -> None:
    row[:] = 0


def scaled(factor: float) -> Callable[[np.ndarray], None]:
    def scale(row: np.ndarray) -> None:
        row *= factor
    return scale


def replace_part(p: int, make: Callable[[np.ndarray], np.ndarray], text: bool = False):
    def change(img: list, txt: list) -> None:
        arrays = txt if text else img
        arrays[p] = make(arrays[p])
    return change


def as_objects(a: np.ndarray) -> np.ndarray:
    out = np.empty(len(a), object)
    out[:] = [list(row) for row in a]
    return out


# file faults ---------------------------------------------------------------------------------------------------

def edit(rel: str, change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / rel
        path.write_bytes(change(path.read_bytes()))
    return apply


def remove(rel: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).unlink()


def copy_as(rel: str, new: str) -> Callable[[Path], None]:
    return lambda root: (root / new).write_bytes((root / rel).read_bytes())


def cut(fraction: float) -> Callable[[bytes], bytes]:
    return lambda data: data[:int(len(data) * fraction)]


def npy_header_garbage(data: bytes) -> bytes:
    """The magic is kept; the header's dict becomes text that is no Python literal."""
    header_len = int.from_bytes(data[8:10], "little")
    return data[:10] + b"{'descr': <f2 oops" + b" " * (header_len - 19) + b"\n" + data[10 + header_len:]


def garbage_body(data: bytes) -> bytes:
    header_len = int.from_bytes(data[8:10], "little")
    body = np.random.default_rng(7).integers(0, 256, len(data) - 10 - header_len, np.uint8).tobytes()
    return data[:10 + header_len] + body


def parquet_footer_garbage(data: bytes) -> bytes:
    footer_len = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer_len
    return data[:start] + b"\xa5" * footer_len + data[-8:]


def parquet_pages_garbage(data: bytes) -> bytes:
    """The footer is sound; every column chunk's pages (from their first page header) are overwritten."""
    import io

    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    out = bytearray(data)
    for g in range(meta.num_row_groups):
        for c in range(meta.row_group(g).num_columns):
            chunk = meta.row_group(g).column(c)
            start = chunk.dictionary_page_offset or chunk.data_page_offset
            out[start:start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    return bytes(out)


def zip_member_flipped(member: str) -> Callable[[bytes], bytes]:
    """Bytes near the end of a stored member's data are flipped: the zip directory and the member's npy
    header stay sound, its CRC does not."""
    def flip(data: bytes) -> bytes:
        import io

        with zipfile.ZipFile(io.BytesIO(data)) as z:
            info = z.getinfo(member)
        name_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
        extra_len = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
        end = info.header_offset + 30 + name_len + extra_len + info.compress_size
        out = bytearray(data)
        out[end - 40:end - 8] = bytes(b ^ 0x5A for b in out[end - 40:end - 8])
        return bytes(out)
    return flip


def npz_with(rel: str, **members: bytes) -> Callable[[Path], None]:
    """Rewrite an npz with raw member bytes (a truncated or corrupt npy inside a sound zip)."""
    def apply(root: Path) -> None:
        with zipfile.ZipFile(root / rel) as z:
            kept = {n: z.read(n) for n in z.namelist() if n[:-4] not in members}
        with zipfile.ZipFile(root / rel, "w") as z:
            for name, data in {**kept, **{f"{k}.npy": v for k, v in members.items()}}.items():
                z.writestr(name, data)
    return apply


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def pickle_of(array: np.ndarray) -> bytes:
    return pickle.dumps(array)
