import gzip
import io
import tarfile

import pyarrow as pa
import pytest
from shardmaker import sample_members, write_tar

from datapruner.io.shards import SourceError, list_shards, open_shard
from datapruner.io.tar_samples import SHARD_KEY, iter_samples
from datapruner.reasons import category_of


def test_samples_group_by_key_and_ranges_cover_their_members(tmp_path):
    path = write_tar(tmp_path / "a.tar", [(f"{i:04d}", sample_members(i, i % 4)) for i in range(5)])
    raw = path.read_bytes()
    with open(path, "rb") as f:
        samples = list(iter_samples(f))
    assert [s.key for s in samples] == [f"{i:04d}" for i in range(5)]
    for s in samples:
        assert s.error is None
        assert set(s.members) == {"jpg", "txt", "cls", "json"}
        # the byte range alone is a valid tar holding exactly this sample's members
        piece = raw[s.offset:s.offset + s.length] + b"\0" * 1024
        with tarfile.open(fileobj=io.BytesIO(piece)) as tar:
            names = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        assert names == {f"{s.key}.{ext}": data for ext, data in s.members.items()}


def test_long_names_use_pax_headers_and_still_copy_whole(tmp_path):
    key = "deep/" + "x" * 150
    path = tmp_path / "long.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for ext, data in {"txt": b"caption", "cls": b"1"}.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with open(path, "rb") as f:
        (sample,) = list(iter_samples(f))
    assert sample.key == key and sample.offset == 0
    piece = path.read_bytes()[sample.offset:sample.offset + sample.length] + b"\0" * 1024
    with tarfile.open(fileobj=io.BytesIO(piece)) as tar:
        assert sorted(m.name for m in tar.getmembers()) == [f"{key}.cls", f"{key}.txt"]


def test_truncated_tar_marks_the_sample_in_progress(tmp_path):
    path = write_tar(tmp_path / "t.tar", [(f"{i:04d}", sample_members(i, 0)) for i in range(4)])
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with open(path, "rb") as f:
        samples = list(iter_samples(f))
    good = [s for s in samples if s.error is None]
    bad = [s for s in samples if s.error is not None]
    assert len(bad) == 1 and "truncated" in bad[0].error
    assert [s.key for s in good] == [f"{i:04d}" for i in range(len(good))]
    assert all(s.offset + s.length <= len(raw) // 2 for s in good)


def test_list_shards_sorts_dirs_and_brace_patterns(tmp_path):
    for name in ["b.tar", "a.tar", "c.tar"]:
        write_tar(tmp_path / name, [("k", {"txt": b"x"})])
    assert list_shards(str(tmp_path)) == [str(tmp_path / n) for n in ["a.tar", "b.tar", "c.tar"]]
    assert list_shards(str(tmp_path) + "/{c,a}.tar") == [str(tmp_path / "a.tar"), str(tmp_path / "c.tar")]
    assert list_shards(f"file://{tmp_path}")[0] == f"file://{tmp_path}/a.tar"


def test_pipe_sources_are_refused_unless_allowed(tmp_path):
    with pytest.raises(SourceError, match="--allow-pipe"):
        list_shards("pipe:cat /etc/passwd")
    assert list_shards("pipe:cat x{0..1}.tar", allow_pipe=True) == ["pipe:cat x0.tar", "pipe:cat x1.tar"]


def test_missing_source_has_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        list_shards(str(tmp_path / "nope-{000..002}.tar"))


# faults: every input sample is a valid Sample or an error of a known category ---------------------------

def _tar(names_and_data: list[tuple[str, bytes]], fmt=tarfile.USTAR_FORMAT, end: bool = True) -> bytes:
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape")
    for name, data in names_and_data:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 1700000000
        tar.addfile(info, io.BytesIO(data))
    if not end:
        tar.fileobj = io.BytesIO()  # close() would write the end-of-archive blocks into buf
    tar.close()
    return buf.getvalue()


def _three(fmt=tarfile.USTAR_FORMAT, end: bool = True, prefix: str = "") -> bytes:
    return _tar([(f"{prefix}{i:04d}.{ext}", data) for i in range(3)
                 for ext, data in (("txt", b"x" * (100 + 600 * i)), ("cls", b"1"))], fmt, end)


def _read(data: bytes, **kw) -> list:
    return list(iter_samples(io.BytesIO(data), **kw))


def _errors(samples) -> dict[str, str]:
    return {s.key: s.error for s in samples if s.error is not None}


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_a_cut_at_any_byte_leaves_a_truncated_shard_row(fmt):
    prefix = "" if fmt == tarfile.USTAR_FORMAT else "d" * 120 + "/"  # long names: pax / GNU headers
    data = _three(fmt, prefix=prefix)
    last = _members(data)[-1]
    content_end = last.offset_data + 512
    for cut in range(0, content_end + 512, 37):
        samples = _read(data[:cut])
        errors = _errors(samples)
        assert [category_of(e) for e in errors.values()] == ["truncated shard"], cut
        assert len({s.key for s in samples}) == len(samples)
        assert all(s.offset + s.length <= cut for s in samples if s.error is None)
        assert _errors(_read(data[:cut])) == errors  # the same reasons every time
    assert _errors(_read(data[:content_end + 512])) == {}  # one whole end-of-archive block is an end


def test_a_cut_inside_data_marks_the_sample_it_cuts():
    data = _three()
    third = [m for m in _members(data) if m.name.startswith("0002")]
    samples = _read(data[:third[0].offset_data + 100])
    assert [s.key for s in samples] == ["0000", "0001", "0002"]
    assert _errors(samples) == {"0002": "truncated shard: the stream ends inside the data of '0002.txt' "
                                        f"(header at byte {third[0].offset})"}


def test_a_cut_in_a_header_or_on_a_boundary_marks_the_sample_in_progress():
    data = _three()
    third = [m for m in _members(data) if m.name.startswith("0002")]
    in_header = _errors(_read(data[:third[0].offset + 200]))  # its name is whole, its header is not
    assert in_header == {"0001": f"truncated shard: the stream ends inside the tar header at byte {third[0].offset}"}
    boundary = third[1].offset  # between 0002.txt and 0002.cls, and no end-of-archive blocks
    assert _errors(_read(data[:boundary])) == {
        "0002": f"truncated shard: the stream ends at byte {boundary} without an end-of-archive block"}
    no_end = _three(end=False)  # every member whole, the end-of-archive blocks missing
    assert _errors(_read(no_end)) == {
        "0002": f"truncated shard: the stream ends at byte {len(no_end)} without an end-of-archive block"}


def test_a_cut_before_any_sample_is_a_shard_row():
    data = _three()
    assert _errors(_read(data[:5])) == {SHARD_KEY: "truncated shard: the stream ends inside the tar header at byte 0"}
    assert _errors(_read(b"")) == {SHARD_KEY: "truncated shard: the stream ends at byte 0 without an end-of-archive block"}
    assert _read(_tar([])) == []  # an empty archive holds no sample and is whole


def test_garbage_is_a_corrupt_shard():
    assert _errors(_read(bytes(range(256)) * 8)) == {SHARD_KEY: "corrupt shard: invalid tar header at byte 0: invalid header"}
    data = _three(end=False) + b"\x07" * 700
    samples = _read(data)
    assert [s.key for s in samples] == ["0000", "0001", "0002"]
    assert {k: category_of(e) for k, e in _errors(samples).items()} == {"0002": "corrupt shard"}


def _read_shard(path) -> list:
    with open_shard(str(path)) as stream:
        return list(iter_samples(stream))


def test_a_truncated_gzip_shard_is_recorded_even_after_its_last_sample(tmp_path):
    gz, path = gzip.compress(_three(), mtime=0), tmp_path / "cut.tar.gz"
    for cut in range(0, len(gz), 7):
        path.write_bytes(gz[:cut])
        samples = _read_shard(path)
        assert "truncated shard" in {category_of(e) for e in _errors(samples).values()}, cut
    path.write_bytes(gz[:-4])  # every sample whole, the trailer cut
    samples = _read_shard(path)
    assert [s.key for s in samples] == ["0000", "0001", "0002", SHARD_KEY]
    assert category_of(_errors(samples)[SHARD_KEY]) == "truncated shard"


def test_a_name_that_is_not_utf8_is_a_bad_member_name_with_a_storable_key():
    data = _tar([("a.txt", b"1"), ("b\udcff\udcfe.txt", b"2"), ("b\udcff\udcfe.cls", b"3"), ("c.txt", b"4")])
    samples = _read(data)
    assert [s.key for s in samples] == ["a", "b\\xff\\xfe", "c"]
    assert _errors(samples) == {"b\\xff\\xfe": "bad member name: 'b\\xff\\xfe.txt' is not valid UTF-8"}
    pa.array([s.key for s in samples] + [s.error for s in samples])  # no surrogate reaches Arrow


@pytest.mark.parametrize("name", ["/etc/x.png", "../x.png", "a/../../x.png", "a\\..\\x.png",
                                  "\\x.png", "C:\\x.png", "c:x.png"])
def test_a_name_that_escapes_an_extraction_directory_is_unsafe_unless_allowed(name):
    data = _tar([("a.txt", b"1"), (name, b"2"), ("z.txt", b"3")])
    assert [category_of(e) for e in _errors(_read(data)).values()] == ["unsafe member name"]
    assert _errors(_read(data, allow_unsafe_names=True)) == {}


@pytest.mark.parametrize("name", ["./a/x.png", "a..b/x.png", "dir.v1/x.png", "x..png"])
def test_dots_that_stay_inside_are_safe(name):
    assert _errors(_read(_tar([(name, b"1")]))) == {}


def test_a_key_seen_again_in_a_shard_marks_the_later_sample():
    data = _tar([("a.txt", b"1"), ("b.txt", b"2"), ("a.txt", b"3"), ("a.cls", b"4")])
    samples = _read(data)
    assert [(s.key, s.error is None) for s in samples] == [("a", True), ("b", True), ("a", False)]
    assert category_of(samples[2].error) == "duplicate key"
    assert samples[2].members == {"txt": b"3", "cls": b"4"}


def test_extensions_are_lowercased_and_keys_end_at_the_first_dot_of_the_basename():
    samples = _read(_tar([("dir.v1/k.seg.JPG", b"1"), ("dir.v1/k.Txt", b"2"), ("README", b"3")]))
    assert [(s.key, sorted(s.members)) for s in samples] == [("dir.v1/k", ["seg.jpg", "txt"])]
