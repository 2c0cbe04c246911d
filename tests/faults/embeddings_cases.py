"""The hostile embeddings folders (badembeddings.py builds them): what each must give.

A case with `refused` must stop before any work with one line naming that file (exit 2) and write nothing;
every other case must complete with each input sample kept byte for byte or invalid with its category.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from badembeddings import (BAD, DIM, MISSING, UNREADABLE, Case, Fault, all_nan, as_objects, clip_retrieval_columns,
                           copy_as, cut, datacomp, dc_row, edit, garbage_body, infinite, laion_columns, nan_component,
                           npy_bytes, npy_header_garbage, npz_with, parquet_footer_garbage, parquet_pages_garbage,
                           part_of, pickle_of, reader, reader_columns, remove, replace_part, save_npy, save_parquet,
                           scaled, set_rows, vector, zero, zip_member_flipped)

CLIP = ("--metric", "clip_score")  # a policy that reads the text embeddings


def append_row(p: int, i: int):
    """Part p gets one more row: a good copy of sample i's (so sample i's value is on two rows)."""
    def apply(root: Path) -> None:
        img = np.load(root / f"img_emb/img_emb_{p}.npy")
        save_npy(root / f"img_emb/img_emb_{p}.npy", np.vstack([img, vector(i, 0, DIM).astype(img.dtype)]))
        meta = pq.read_table(root / f"metadata/metadata_{p}.parquet")
        save_parquet(root / f"metadata/metadata_{p}.parquet", meta.to_pylist() + [reader_columns(i)])
    return apply


def drop_rows_of(*samples: int):
    """The rows of these samples are missing (their metadata row and vector both)."""
    def apply(root: Path) -> None:
        for p in range(2):
            meta = pq.read_table(root / f"metadata/metadata_{p}.parquet").to_pylist()
            img = np.load(root / f"img_emb/img_emb_{p}.npy")
            keep = [r for r, row in enumerate(meta) if int(row["key"]) not in samples]
            save_npy(root / f"img_emb/img_emb_{p}.npy", img[keep])
            save_parquet(root / f"metadata/metadata_{p}.parquet", [meta[r] for r in keep])
    return apply


def strangers(root: Path) -> None:
    """Rows of images that are not in the shards."""
    img = np.load(root / "img_emb/img_emb_1.npy")
    save_npy(root / "img_emb/img_emb_1.npy", np.vstack([img, img[:3]]))
    meta = pq.read_table(root / "metadata/metadata_1.parquet").to_pylist()
    save_parquet(root / "metadata/metadata_1.parquet", meta + [{"key": f"zz{j}", "caption": "x"} for j in range(3)])


def empty_part(root: Path) -> None:
    """A third part with no rows (its metadata keeps its columns)."""
    save_npy(root / "img_emb/img_emb_2.npy", np.zeros((0, DIM), np.float16))
    schema = pa.schema([("key", pa.string()), ("caption", pa.string())])
    pq.write_table(schema.empty_table(), root / "metadata/metadata_2.parquet")


def without_join_column(root: Path) -> None:
    meta = pq.read_table(root / "metadata/metadata_1.parquet")
    pq.write_table(meta.drop_columns(["key"]), root / "metadata/metadata_1.parquet")


def npy_as_pickle(data: bytes) -> bytes:
    return pickle_of(np.load(io.BytesIO(data)))


def renamed_member(rel: str, old: str, new: str):
    def apply(root: Path) -> None:
        with zipfile.ZipFile(root / rel) as z:
            members = {n.replace(old, new): z.read(n) for n in z.namelist()}
        with zipfile.ZipFile(root / rel, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
    return apply


def even(i: int) -> bool:
    return part_of(i)[0] == 0


IMG1, META1, TXT1 = "img_emb_1.npy", "metadata_1.parquet", "text_emb_1.npy"
NPZ1 = "00000001.npz"

CASES = [
    # sound folders, and rows that reading shows to be bad: exit 0, every sample accounted
    Case("reader-float16", "embedding-reader", reader(Fault())),
    Case("reader-float32", "embedding-reader", reader(Fault(dtype="<f4"))),
    Case("reader-float64", "embedding-reader", reader(Fault(dtype="<f8"))),
    Case("reader-big-endian-float32", "embedding-reader", reader(Fault(dtype=">f4"))),
    Case("reader-fortran-order", "embedding-reader",
         reader(Fault(arrays=replace_part(1, np.asfortranarray)))),
    Case("clip-retrieval-with-text", "embedding-reader", reader(Fault(text=True, args=CLIP), clip_retrieval_columns)),
    Case("laion", "laion", reader(Fault(), laion_columns)),
    Case("datacomp", "datacomp", datacomp(Fault(args=CLIP))),
    Case("datacomp-float32", "datacomp", datacomp(Fault(dtype="<f4"))),
    Case("nan-component", "embedding-reader", reader(Fault(arrays=set_rows(part_of, {3: nan_component}),
                                                           invalid={3: BAD}))),
    Case("nan-row", "embedding-reader", reader(Fault(arrays=set_rows(part_of, {4: all_nan}), invalid={4: BAD}))),
    Case("inf-row", "embedding-reader", reader(Fault(arrays=set_rows(part_of, {5: infinite}), invalid={5: BAD}))),
    Case("zero-row", "embedding-reader", reader(Fault(arrays=set_rows(part_of, {6: zero}), invalid={6: BAD}))),
    Case("block-of-nan-inf-zero-rows", "laion",
         reader(Fault(arrays=set_rows(part_of, {1: all_nan, 2: infinite, 3: zero, 8: nan_component}),
                      invalid={1: BAD, 2: BAD, 3: BAD, 8: BAD}), laion_columns)),
    Case("float32-rows-far-from-unit", "embedding-reader",
         reader(Fault(dtype="<f4", arrays=set_rows(part_of, {2: scaled(1e-30), 7: scaled(1e30)})))),
    Case("float64-huge-finite-rows", "embedding-reader",
         reader(Fault(dtype="<f8", arrays=set_rows(part_of, {2: scaled(1e300)})))),
    Case("nan-first-of-two-rows-sharing-a-key", "embedding-reader",
         reader(Fault(arrays=set_rows(part_of, {0: all_nan}), files=append_row(1, 0), invalid={0: BAD}))),
    Case("text-nan-row", "embedding-reader",
         reader(Fault(text=True, args=CLIP, arrays=set_rows(part_of, {7: nan_component}, text=True),
                      invalid={7: BAD}))),
    Case("text-zero-row-with-a-caption", "embedding-reader",
         reader(Fault(text=True, args=CLIP, arrays=set_rows(part_of, {8: zero}, text=True), invalid={8: BAD}))),
    Case("datacomp-nan-and-zero-rows", "datacomp",
         datacomp(Fault(arrays=set_rows(dc_row, {1: all_nan, 6: zero}), invalid={1: BAD, 6: BAD}))),
    Case("datacomp-text-inf-row", "datacomp",
         datacomp(Fault(args=CLIP, arrays=set_rows(dc_row, {9: infinite}, text=True), invalid={9: BAD}))),
    Case("rows-for-images-not-in-the-shards", "embedding-reader", reader(Fault(files=strangers))),
    Case("samples-without-rows", "embedding-reader",
         reader(Fault(files=drop_rows_of(2, 9), invalid={2: MISSING, 9: MISSING}))),
    Case("duplicate-rows", "embedding-reader", reader(Fault(files=append_row(0, 3)))),
    Case("an-empty-part", "embedding-reader", reader(Fault(files=empty_part))),
    Case("npy-garbage-body", "embedding-reader",
         reader(Fault(files=edit(f"img_emb/{IMG1}", garbage_body), unsure=tuple(i for i in range(10) if not even(i))))),
    Case("parquet-corrupt-body", "embedding-reader",
         reader(Fault(files=edit(f"metadata/{META1}", parquet_pages_garbage),
                      invalid={i: MISSING for i in range(10) if not even(i)}))),
    Case("npz-corrupt-member-body", "datacomp",
         datacomp(Fault(dim=256, dtype="<f4", files=edit(NPZ1, zip_member_flipped("b32_img.npy")),
                        invalid={i: UNREADABLE for i in range(5, 10)}))),
    # faults the headers and footers show: exit 2, one line naming the file, nothing written
    Case("parquet-corrupt-footer", "embedding-reader",
         reader(Fault(files=edit(f"metadata/{META1}", parquet_footer_garbage), refused=META1))),
    Case("parquet-truncated", "embedding-reader", reader(Fault(files=edit(f"metadata/{META1}", cut(0.6)),
                                                               refused=META1))),
    Case("parquet-empty-file", "embedding-reader", reader(Fault(files=edit(f"metadata/{META1}", cut(0)),
                                                                refused=META1))),
    Case("npy-corrupt-header", "embedding-reader", reader(Fault(files=edit(f"img_emb/{IMG1}", npy_header_garbage),
                                                                refused=IMG1))),
    Case("npy-not-an-npy", "embedding-reader", reader(Fault(files=edit(f"img_emb/{IMG1}", lambda d: b"\x07" * 300),
                                                            refused=IMG1))),
    Case("npy-truncated-body", "embedding-reader", reader(Fault(files=edit(f"img_emb/{IMG1}", cut(0.7)),
                                                                refused=IMG1))),
    Case("npy-truncated-header", "embedding-reader", reader(Fault(files=edit(f"img_emb/{IMG1}", lambda d: d[:40]),
                                                                  refused=IMG1))),
    Case("npy-empty-file", "embedding-reader", reader(Fault(files=edit(f"img_emb/{IMG1}", cut(0)), refused=IMG1))),
    Case("npy-1d", "embedding-reader", reader(Fault(arrays=replace_part(1, np.ravel), refused=IMG1))),
    Case("npy-3d", "embedding-reader", reader(Fault(arrays=replace_part(1, lambda a: a.reshape(len(a), 4, -1)),
                                                    refused=IMG1))),
    Case("npy-int8", "embedding-reader", reader(Fault(arrays=replace_part(1, lambda a: (a * 127).astype(np.int8)),
                                                      refused=IMG1))),
    Case("npy-bool", "embedding-reader", reader(Fault(arrays=replace_part(1, lambda a: a > 0), refused=IMG1))),
    Case("npy-complex", "embedding-reader", reader(Fault(arrays=replace_part(1, lambda a: a.astype(np.complex64)),
                                                         refused=IMG1))),
    Case("npy-pickled-objects", "embedding-reader", reader(Fault(arrays=replace_part(1, as_objects), refused=IMG1))),
    Case("npy-is-a-pickle", "embedding-reader",
         reader(Fault(files=edit(f"img_emb/{IMG1}", npy_as_pickle), refused=IMG1))),
    Case("npy-rows-of-dimension-0", "embedding-reader",
         reader(Fault(arrays=replace_part(1, lambda a: np.zeros((len(a), 0), a.dtype)), refused=IMG1))),
    Case("image-dimensions-differ-between-parts", "embedding-reader",
         reader(Fault(arrays=replace_part(1, lambda a: np.hstack([a, a])), refused=IMG1))),
    Case("rows-differ-from-metadata", "embedding-reader", reader(Fault(arrays=replace_part(1, lambda a: a[:-1]),
                                                                       refused=IMG1))),
    Case("text-of-another-dimension", "embedding-reader",
         reader(Fault(text=True, arrays=replace_part(1, lambda a: a[:, :8], text=True), refused=TXT1))),
    Case("text-rows-differ", "embedding-reader",
         reader(Fault(text=True, arrays=replace_part(1, lambda a: a[:-2], text=True), refused=TXT1))),
    Case("text-pickled-objects", "embedding-reader",
         reader(Fault(text=True, arrays=replace_part(1, as_objects, text=True), refused=TXT1))),
    Case("text-part-missing", "embedding-reader", reader(Fault(text=True, files=remove(f"text_emb/{TXT1}"),
                                                               refused=IMG1))),
    Case("metadata-part-missing", "embedding-reader", reader(Fault(files=remove(f"metadata/{META1}"),
                                                                   refused=IMG1))),
    Case("metadata-part-without-image", "embedding-reader",
         reader(Fault(files=copy_as(f"metadata/{META1}", "metadata/metadata_7.parquet"), refused="metadata_7.parquet"))),
    Case("no-join-column", "embedding-reader", reader(Fault(refused="metadata_0.parquet"),
                                                      lambda i: {"caption": f"c{i}"})),
    Case("a-part-without-the-join-column", "embedding-reader", reader(Fault(files=without_join_column,
                                                                            refused=META1))),
    Case("npz-pickled-objects", "datacomp", datacomp(Fault(arrays=replace_part(1, as_objects), refused=NPZ1))),
    Case("npz-not-a-zip", "datacomp", datacomp(Fault(files=edit(NPZ1, lambda d: b"\x13" * 500), refused=NPZ1))),
    Case("npz-truncated", "datacomp", datacomp(Fault(files=edit(NPZ1, cut(0.5)), refused=NPZ1))),
    Case("npz-is-a-pickle", "datacomp", datacomp(Fault(files=edit(NPZ1, lambda d: pickle_of(np.zeros((5, DIM)))),
                                                       refused=NPZ1))),
    Case("npz-member-truncated", "datacomp",
         datacomp(Fault(files=npz_with(NPZ1, b32_img=npy_bytes(np.zeros((5, DIM), np.float16))[:150]), refused=NPZ1))),
    Case("npz-member-corrupt-header", "datacomp",
         datacomp(Fault(files=npz_with(NPZ1, b32_img=npy_header_garbage(npy_bytes(np.zeros((5, DIM), np.float16)))),
                        refused=NPZ1))),
    Case("npz-int8", "datacomp", datacomp(Fault(arrays=replace_part(1, lambda a: (a * 127).astype(np.int8)),
                                                refused=NPZ1))),
    Case("npz-text-of-another-dimension", "datacomp",
         datacomp(Fault(arrays=replace_part(0, lambda a: a[:, :4], text=True), refused="00000000.npz"))),
    Case("npz-without-its-parquet", "datacomp", datacomp(Fault(files=remove("00000001.parquet"), refused=NPZ1))),
    Case("npz-without-the-column", "datacomp",
         datacomp(Fault(files=renamed_member(NPZ1, "b32_img", "l14_img"), refused=NPZ1))),
]
