"""Decode workers: every sample of a shard becomes a row or an error row; nothing bad stops the shard."""

import io
import tarfile

import numpy as np
import torch
from shardmaker import image_bytes, sample_members, write_tar

from datapruner.embed.stream import Decoder, ShardTask, shard_batches
from datapruner.reasons import category_of


def _to_tensor(img):
    if img.size == (13, 13):  # a size these transforms refuse, as real ones refuse odd inputs
        raise RuntimeError("cannot take 13×13")
    return torch.from_numpy(np.asarray(img.resize((8, 8)), np.float32)).permute(2, 0, 1)


def _accounted(url: str, decoder=Decoder(_to_tensor, 8), batch_size: int = 2) -> tuple[list[str], dict[str, str]]:
    rows, errors = [], {}
    for batch in shard_batches(ShardTask(0, url), decoder, batch_size):
        rows += [r["key"] for r in batch["rows"]]
        errors.update({e["key"]: e["reason"] for e in batch["errors"]})
    return rows, errors


def test_each_bad_sample_is_an_error_row_and_the_rest_are_rows(tmp_path):
    good = [(f"g{i}", sample_members(i, i % 4)) for i in range(3)]
    bad = {
        "no-image": ({"txt": b"x"}, "no image"),
        "undecodable": ({"jpg": b"\x13\x37" * 100}, "undecodable image"),
        "odd-size": ({"png": image_bytes(1, 2, "PNG", size=13)}, "undecodable image"),
        "bad-cls": ({**sample_members(5, 1), "cls": b"cat"}, "bad label"),
        "bad-json": ({**sample_members(6, 1), "json": b"[1]"}, "bad json"),
        "bad-caption": ({"jpg": image_bytes(1, 7), "json": b'{"caption": 5}'}, "bad caption"),
        "/etc/unsafe": (sample_members(8, 1), "unsafe member name"),
    }
    samples = [good[0]] + [(k, m) for k, (m, _) in bad.items()] + good[1:]
    path = write_tar(tmp_path / "mixed.tar", samples)
    rows, errors = _accounted(str(path))
    assert rows == ["g0", "g1", "g2"]
    assert {k: category_of(r) for k, r in errors.items()} == {k: c for k, (_, c) in bad.items()}
    assert _accounted(str(path)) == (rows, errors)  # the same reasons on every read
    rows, errors = _accounted(str(path), Decoder(_to_tensor, 8, allow_unsafe_names=True))
    assert "/etc/unsafe" in rows


def test_a_truncated_shard_keeps_its_whole_samples(tmp_path):
    path = write_tar(tmp_path / "t.tar", [(f"{i:04d}", sample_members(i, 0)) for i in range(6)])
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    rows, errors = _accounted(str(path))
    assert [category_of(r) for r in errors.values()] == ["truncated shard"]
    assert rows + list(errors) == [f"{i:04d}" for i in range(len(rows) + 1)]


def test_a_shard_that_cannot_be_opened_is_one_error_row(tmp_path):
    rows, errors = _accounted(str(tmp_path / "missing.tar"))
    assert rows == [] and list(errors) == ["__shard__"]
    assert errors["__shard__"].startswith("cannot open shard: FileNotFoundError: ")


def test_an_image_over_max_pixels_is_an_error_row(tmp_path):
    path = write_tar(tmp_path / "big.tar", [("small", {"png": image_bytes(0, 1, "PNG", size=20)}),
                                            ("big", {"png": image_bytes(0, 1, "PNG", size=40)})])
    rows, errors = _accounted(str(path), Decoder(_to_tensor, 8, max_pixels=20 * 20))
    assert rows == ["small"] and category_of(errors["big"]) == "image too large"


def test_members_that_are_not_regular_files_are_not_samples(tmp_path):
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        data = image_bytes(0, 1)
        info = tarfile.TarInfo("a.jpg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("b.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "a.jpg"
        tar.addfile(link)
    assert _accounted(str(path)) == (["a"], {})
