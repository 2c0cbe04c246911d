"""A generator of malformed WebDataset shards: one case per kind of fault, each with what must happen.

Every case writes its shard(s) into a source folder and says, for each input (shard, key) it knows
of, either the members a pruned shard must hold byte for byte (a valid sample) or the reason
category errors/ must give (an invalid one). A truncated shard names the category its shard-level
or in-progress row must carry; samples cut off entirely cannot be named and are not expected.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from shardmaker import image_bytes


@dataclass
class Expected:
    valid: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)  # (shard file, key) -> members
    invalid: dict[tuple[str, str], str] = field(default_factory=dict)  # (shard file, key) -> category
    unsure: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)  # just before a cut: valid
    # (then byte-identical) or invalid, either way accounted
    shard_errors: dict[str, tuple[str, ...]] = field(default_factory=dict)  # shard file -> categories, one a row has
    skipped: set[str] = field(default_factory=set)  # files in SRC that are not shards


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, str], Expected]  # (src dir, shard file prefix) -> Expected


def good_members(i: int, fmt: str = "jpg") -> dict[str, bytes]:
    pil = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt]
    return {fmt: image_bytes(i % 4, i, pil), "txt": f"a disc {i}".encode(), "cls": str(i % 4).encode()}


def tar_bytes(samples: list[tuple[str, dict[str, bytes]]], fmt=tarfile.USTAR_FORMAT, end: bool = True) -> bytes:
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape")
    for key, members in samples:
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime = len(data), 1700000000
            tar.addfile(info, io.BytesIO(data))
    if end:
        tar.close()
        return buf.getvalue()
    tar.fileobj = io.BytesIO()  # close() would write the end-of-archive blocks into buf
    tar.close()
    return buf.getvalue()


def member_offsets(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


def write(src: Path, name: str, data: bytes) -> str:
    (src / name).write_bytes(data)
    return name


def keys(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(n)]


# cases whose shard is plain and whose samples are all valid -------------------------------------------------

def valid_case(samples_of: Callable[[str], list[tuple[str, dict[str, bytes]]]], fmt=tarfile.USTAR_FORMAT,
               suffix: str = ".tar", pack: Callable[[bytes], bytes] = lambda b: b):
    def build(src: Path, prefix: str) -> Expected:
        samples = samples_of(prefix)
        shard = write(src, prefix + suffix, pack(tar_bytes(samples, fmt)))
        return Expected(valid={(shard, k): m for k, m in samples})
    return build


def plain(prefix: str, n: int = 4, fmt: str = "jpg"):
    return [(k, good_members(i, fmt)) for i, k in enumerate(keys(prefix, n))]


def image_of(mode: str, fmt: str, size=(24, 24), **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format=fmt, **save)
    return buf.getvalue()


def odd_images(prefix: str):
    images = {"cmyk": ("jpg", image_of("CMYK", "JPEG")), "i16": ("png", image_of("I;16", "PNG")),
              "la": ("png", image_of("LA", "PNG")), "palette": ("png", image_of("P", "PNG", transparency=0)),
              "onepixel": ("png", image_of("RGB", "PNG", (1, 1))), "gray": ("webp", image_of("L", "WEBP"))}
    return [(f"{prefix}-{name}", {ext: data, "txt": name.encode()}) for name, (ext, data) in images.items()]


def upper_case_ext(prefix: str):
    return [(k, {"JPG": m["jpg"], "Txt": m["txt"]}) for k, m in plain(prefix, 3)]


def long_names(prefix: str):
    deep = "d" * 60 + "/" + "e" * 60
    return [(f"{deep}/{k}", m) for k, m in plain(prefix, 3)]


def dotted_dirs(prefix: str):
    return [(f"dir.v1/{k}", m) for k, m in plain(prefix, 3)]


# cases with invalid samples among valid ones ---------------------------------------------------------------

def with_bad(bad: Callable[[str], dict[str, bytes]], category: str, key_of=lambda prefix: f"{prefix}-bad"):
    """Two good samples around one bad one."""
    def build(src: Path, prefix: str) -> Expected:
        good = plain(prefix, 2)
        bad_key = key_of(prefix)
        shard = write(src, prefix + ".tar", tar_bytes([good[0], (bad_key, bad(prefix)), good[1]]))
        return Expected(valid={(shard, k): m for k, m in good}, invalid={(shard, stored_key(bad_key)): category})
    return build


def stored_key(key: str) -> str:
    """A key as a parquet manifest can hold it: undecodable name bytes shown as backslash escapes."""
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height: decoding it would take gigabytes, reading its size takes none."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def members(**changes) -> Callable[[str], dict[str, bytes]]:
    """A sample's members: a good jpg and a caption, with `changes` (None removes a member)."""
    def make(prefix: str) -> dict[str, bytes]:
        out = {"jpg": image_bytes(1, 7), "txt": b"one bad sample", **changes}
        return {k: v for k, v in out.items() if v is not None}
    return make


def no_image(prefix: str) -> dict[str, bytes]:
    return {"txt": b"a caption and no picture", "cls": b"1"}


def json_caption(value) -> Callable[[str], dict[str, bytes]]:
    return lambda prefix: {"jpg": image_bytes(2, 3), "json": json.dumps({"caption": value}).encode()}


def json_raw(raw: bytes) -> Callable[[str], dict[str, bytes]]:
    return lambda prefix: {"jpg": image_bytes(2, 3), "txt": b"fine", "json": raw}


# shard-level faults ---------------------------------------------------------------------------------------

def duplicate_key_in_shard(src: Path, prefix: str) -> Expected:
    a, b, c = plain(prefix, 3)
    shard = write(src, prefix + ".tar", tar_bytes([a, b, (a[0], good_members(99)), c]))
    # the first a is valid, the repeat is invalid: both are (shard, a) — the valid one is checked by bytes
    return Expected(valid={(shard, k): m for k, m in (a, b, c)}, invalid={(shard, a[0]): "duplicate key"})


def repeated_member(src: Path, prefix: str) -> Expected:
    """Two `.jpg` members of one key in a row: webdataset would merge them; the second starts a duplicate."""
    a, b = plain(prefix, 2)
    data = tar_bytes([a, (a[0], {"jpg": image_bytes(3, 5)}), b])
    shard = write(src, prefix + ".tar", data)
    return Expected(valid={(shard, k): m for k, m in (a, b)}, invalid={(shard, a[0]): "duplicate key"})


def keys_repeat_across_shards(src: Path, prefix: str) -> Expected:
    """Two crawls whose key ranges overlap: the first shard's last key is the second's first, so kept
    together the two samples would be adjacent in a pruned shard (webdataset would merge them)."""
    expected = Expected()
    for s, first in enumerate((0, 2)):
        samples = [(f"{prefix}-{i:03d}", good_members(10 * s + i)) for i in range(first, first + 3)]
        shard = write(src, f"{prefix}-{s}.tar", tar_bytes(samples))
        expected.valid.update({(shard, k): m for k, m in samples})
    return expected


def truncated(cut_at: Callable[[list[tarfile.TarInfo]], int], last: str):
    """Three samples, cut at a byte position inside the last one's members. The shard must carry a
    'truncated shard' row; `last` says what the cut-into sample must be: invalid, unsure (its members may
    all be there) or gone (not even its first name is whole)."""
    def build(src: Path, prefix: str) -> Expected:
        samples = plain(prefix, 3)
        data = tar_bytes(samples)
        shard = write(src, prefix + ".tar", data[:cut_at(member_offsets(data))])
        expected = Expected(valid={(shard, samples[0][0]): samples[0][1]}, unsure={(shard, samples[1][0]): samples[1][1]},
                            shard_errors={shard: ("truncated shard",)})
        if last == "invalid":
            expected.invalid[(shard, samples[2][0])] = "truncated shard"
        elif last == "unsure":
            expected.unsure[(shard, samples[2][0])] = samples[2][1]
        return expected
    return build


def third(infos: list[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """The members of the third sample."""
    return [i for i in infos if "-002." in i.name]


def end_of_data(info: tarfile.TarInfo) -> int:
    return info.offset_data + -(-info.size // 512) * 512


def compressed_as_tar(src: Path, prefix: str) -> Expected:
    samples = plain(prefix, 3)
    shard = write(src, prefix + ".tar", gzip.compress(tar_bytes(samples), mtime=0))
    return Expected(valid={(shard, k): m for k, m in samples})


def whole_shard_fault(data: bytes, *categories: str):
    def build(src: Path, prefix: str) -> Expected:
        shard = write(src, prefix + ".tar", data)
        return Expected(shard_errors={shard: categories})
    return build


def garbage_after_samples(src: Path, prefix: str) -> Expected:
    samples = plain(prefix, 2)
    shard = write(src, prefix + ".tar", tar_bytes(samples, end=False) + b"\x07" * 700)
    return Expected(valid={(shard, samples[0][0]): samples[0][1]}, unsure={(shard, samples[1][0]): samples[1][1]},
                    shard_errors={shard: ("corrupt shard", "truncated shard")})


def not_regular_members(src: Path, prefix: str) -> Expected:
    """Directories, symlinks and extension-less files inside a shard are not samples (as in webdataset)."""
    samples = plain(prefix, 2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        extra = [tarfile.TarInfo("somedir"), tarfile.TarInfo("README")]
        extra[0].type = tarfile.DIRTYPE
        for info in extra:
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(b"") if info.isdir() else None)
        for key, ms in samples:
            for ext, data in ms.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime = len(data), 1700000000
                tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{prefix}-link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, f"{samples[0][0]}.jpg"
        tar.addfile(link)
    shard = write(src, prefix + ".tar", buf.getvalue())
    return Expected(valid={(shard, k): m for k, m in samples})


def skipped_files(src: Path, prefix: str) -> Expected:
    samples = plain(prefix, 2)
    shard = write(src, prefix + ".tar", tar_bytes(samples))
    write(src, prefix + "-README.md", b"# not a shard\n")
    write(src, prefix + "-extra.zip", b"PK\x05\x06" + b"\0" * 18)
    return Expected(valid={(shard, k): m for k, m in samples},
                    skipped={prefix + "-README.md", prefix + "-extra.zip"})


def not_a_file(make: Callable[[Path], None]):
    """A SRC entry named like a shard that cannot be read as one: a "cannot open shard" row, never a hang
    (a FIFO opened for reading waits for a writer, a device never ends) nor a traceback."""
    def build(src: Path, prefix: str) -> Expected:
        make(src / f"{prefix}.tar")
        return Expected(shard_errors={f"{prefix}.tar": ("cannot open shard",)})
    return build


def unreadable(path: Path) -> None:
    path.write_bytes(tar_bytes(plain(path.stem, 2)))
    path.chmod(0)


ODD_NAMES = ("x::y", "a b", "[1]", "{a,b}", "#1?", "é", "pipe:x", "s3:x", "-dash")  # fsspec chains, globs,
# braces, a pipe: look-alike, a URL scheme look-alike


def odd_shard_names(src: Path, prefix: str) -> Expected:
    """Shards whose names mean something to fsspec, a glob, braceexpand or a shell: each is read as the file it is."""
    valid = {}
    for i, odd in enumerate(ODD_NAMES):
        samples = plain(f"{prefix}-{i}", 2)
        shard = write(src, f"{prefix}-{odd}.tar", tar_bytes(samples))
        valid.update({(shard, k): m for k, m in samples})
    return Expected(valid=valid)


def empty_tar(src: Path, prefix: str) -> Expected:
    write(src, prefix + ".tar", tar_bytes([]))
    return Expected()


CASES = [
    Case("good", valid_case(plain)),
    Case("odd-image-modes", valid_case(odd_images)),
    Case("upper-case-ext", valid_case(upper_case_ext)),
    Case("pax-long-names", valid_case(long_names, fmt=tarfile.PAX_FORMAT)),
    Case("gnu-long-names", valid_case(long_names, fmt=tarfile.GNU_FORMAT)),
    Case("dotted-dirs", valid_case(dotted_dirs)),
    Case("tar-gz", valid_case(plain, suffix=".tar.gz", pack=lambda b: gzip.compress(b, mtime=0))),
    Case("tgz", valid_case(plain, suffix=".tgz", pack=lambda b: gzip.compress(b, mtime=0))),
    Case("gzip-named-tar", compressed_as_tar),
    Case("empty-tar", empty_tar),
    Case("odd-shard-names", odd_shard_names),
    Case("not-regular-members", not_regular_members),
    Case("skipped-files", skipped_files),
    Case("corrupt-jpeg", with_bad(members(jpg=image_bytes(0, 1)[:150]), "undecodable image")),
    Case("not-an-image", with_bad(members(jpg=b"\x13\x37" * 300), "undecodable image")),
    Case("empty-image", with_bad(members(jpg=None, png=b""), "undecodable image")),
    Case("no-image", with_bad(no_image, "no image")),
    Case("too-many-pixels", with_bad(members(jpg=None, png=huge_png_header(30000, 20000)), "image too large")),
    Case("non-utf8-name", with_bad(members(txt=b"x"), "bad member name", key_of=lambda p: f"{p}-\udcff\udcfe")),
    Case("non-utf8-cls", with_bad(members(cls=b"\xff\xfe"), "bad label")),
    Case("cls-beyond-int64", with_bad(members(cls=str(2 ** 70).encode()), "bad label")),
    Case("cls-not-a-number", with_bad(members(cls=b"cat"), "bad label")),
    Case("json-caption-number", with_bad(json_caption(5), "bad caption")),
    Case("json-caption-list", with_bad(json_caption(["a", "b"]), "bad caption")),
    Case("json-not-an-object", with_bad(json_raw(b"[1, 2]"), "bad json")),
    Case("json-unparsable", with_bad(json_raw(b"{caption: "), "bad json")),
    Case("path-dotdot", with_bad(members(txt=b"x"), "unsafe member name", key_of=lambda p: f"../../{p}-bad")),
    Case("path-absolute", with_bad(members(txt=b"x"), "unsafe member name", key_of=lambda p: f"/etc/{p}-bad")),
    Case("duplicate-key-in-shard", duplicate_key_in_shard),
    Case("repeated-member", repeated_member),
    Case("keys-repeat-across-shards", keys_repeat_across_shards),
    Case("cut-in-data", truncated(lambda infos: third(infos)[0].offset_data + 100, "invalid")),
    Case("cut-in-header", truncated(lambda infos: third(infos)[-1].offset + 200, "invalid")),
    Case("cut-in-first-name", truncated(lambda infos: third(infos)[0].offset + 5, "gone")),
    Case("cut-at-member-boundary", truncated(lambda infos: third(infos)[-1].offset, "invalid")),
    Case("cut-before-end-blocks", truncated(lambda infos: end_of_data(third(infos)[-1]), "unsure")),
    Case("garbage-after-samples", garbage_after_samples),
    Case("empty-file", whole_shard_fault(b"", "truncated shard", "corrupt shard")),
    Case("random-bytes", whole_shard_fault(bytes(range(256)) * 8, "corrupt shard")),
    Case("symlink-loop", not_a_file(lambda path: path.symlink_to(path.name))),
    Case("fifo", not_a_file(os.mkfifo)),
    Case("device", not_a_file(lambda path: path.symlink_to("/dev/zero"))),
    *([Case("unreadable", not_a_file(unreadable))] if os.geteuid() != 0 else []),  # root reads it anyway
]


def build_source(src: Path, cases: list[Case] = CASES) -> dict[str, Expected]:
    src.mkdir(parents=True, exist_ok=True)
    return {case.name: case.build(src, case.name) for case in cases}
