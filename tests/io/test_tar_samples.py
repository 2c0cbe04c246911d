import io
import tarfile

import pytest
from shardmaker import sample_members, write_tar

from datapruner.io.shards import SourceError, list_shards
from datapruner.io.tar_samples import iter_samples


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
