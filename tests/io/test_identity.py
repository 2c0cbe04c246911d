"""A source shard's identity: recorded in the pass that reads it, compared before its bytes are read again."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tarfile

import fsspec
import pyarrow.parquet as pq
import pytest
from conftest import TINY
from shardmaker import sample_members, write_tar

from datapruner import api
from datapruner.config import Config
from datapruner.io.identity import (IDENTITY_KEY, Fingerprint, Sources, change_of, recorded_identity,
                                    without_identity)
from datapruner.io.rundir import RunDir
from datapruner.io.shards import NotARegularFile, open_shard
from datapruner.io.tar_samples import iter_samples, leading_key

CFG = Config(**TINY, clusters=2, shard_size=16)


def samples(prefix: str, n: int = 4, start: int = 0):
    return [(f"{prefix}-{i:03d}", sample_members(start + i, i % 4, "png")) for i in range(n)]


def read_through(url: str) -> dict | None:
    fingerprint = Fingerprint()
    with open_shard(url, fingerprint) as stream:
        list(iter_samples(stream))
    return fingerprint.identity


def identity_of_file(path) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "stamp": {"mtime_ns": st.st_mtime_ns},
            "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()}


@pytest.fixture
def src(tmp_path):
    """A plain tar, a gzip one, and one cut inside its last sample (read to where it breaks, hashed to its end)."""
    root = tmp_path / "src"
    write_tar(root / "a.tar", samples("a"))
    (root / "b.tar.gz").write_bytes(gzip.compress(write_tar(tmp_path / "b.tar", samples("b", start=10)).read_bytes()))
    data = write_tar(tmp_path / "c.tar", samples("c", start=20)).read_bytes()
    (root / "c.tar").write_bytes(data[:len(data) - 1500])
    return root


def test_the_identity_is_the_files_size_time_and_sha256_from_the_one_read(src):
    for name in ("a.tar", "b.tar.gz", "c.tar"):
        assert read_through(str(src / name)) == identity_of_file(src / name), name


def test_embed_records_each_shards_identity_in_its_metadata_and_not_in_the_manifest(src, tmp_path):
    run = tmp_path / "run"
    api.score(str(src), run, 0.5, CFG, progress=False)
    rd = RunDir(run)
    for part, shard in zip(rd.part_ids(), rd.shards()):
        assert recorded_identity(rd.metadata(part)) == identity_of_file(shard)
    assert IDENTITY_KEY not in (run / "manifest/keep.parquet").read_bytes()
    assert all(IDENTITY_KEY not in p.read_bytes() for p in (run / "scores").iterdir())


def test_the_join_scan_records_it_for_precomputed_embeddings(src, tmp_path):
    first = tmp_path / "first"
    api.embed(str(src), first, CFG, progress=False)
    emb = tmp_path / "precomputed"
    shutil.copytree(first / "embeddings", emb)
    run = RunDir(tmp_path / "run")
    api.embed(str(src), run.root, CFG.replace(embeddings=str(emb)), progress=False)
    for part, shard in zip(run.part_ids(), run.shards()):
        assert recorded_identity(run.metadata(part)) == identity_of_file(shard)
        assert recorded_identity(run.join_samples(part)) == identity_of_file(shard)


def test_a_change_is_told_by_size_then_by_content_when_only_the_time_differs(tmp_path):
    path = write_tar(tmp_path / "a.tar", samples("a"))
    recorded = read_through(str(path))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert change_of(str(path), recorded) is None  # touched: the same bytes
    write_tar(path, [(k.replace("a-", "z-"), m) for k, m in samples("a")])
    assert path.stat().st_size == recorded["size"]
    assert change_of(str(path), recorded) == "its content is not what was embedded (same size, modified since)"
    path.write_bytes(path.read_bytes()[:-1024])  # tar pads to 10 KiB records: a cut tells the size apart
    assert change_of(str(path), recorded).startswith(f"it is {path.stat().st_size} bytes, {recorded['size']} when")
    path.unlink()
    assert change_of(str(path), recorded) == "it is gone"
    path.symlink_to(path.name)
    assert change_of(str(path), recorded) == "it cannot be read (Too many levels of symbolic links)"


def test_same_size_and_time_is_trusted_without_reading(tmp_path):
    path = write_tar(tmp_path / "a.tar", samples("a"))
    recorded = {**read_through(str(path)), "sha256": "not read"}
    assert change_of(str(path), recorded) is None


def test_an_object_store_shard_is_stamped_by_what_the_store_gives():
    fs = fsspec.filesystem("memory")
    data = write_tar_bytes(samples("m"))
    fs.pipe_file("/ident/m.tar", data)
    recorded = read_through("memory://ident/m.tar")
    assert recorded["size"] == len(data) and recorded["sha256"] == hashlib.sha256(data).hexdigest()
    assert set(recorded["stamp"]) == {"created"}  # the memory store's only stamp (S3: ETag, VersionId)
    fs.pipe_file("/ident/m.tar", data[:100] + bytes([data[100] ^ 1]) + data[101:])
    assert change_of("memory://ident/m.tar", recorded).startswith("its content is not")
    fs.pipe_file("/ident/m.tar", data)
    assert change_of("memory://ident/m.tar", recorded) is None
    fs.rm("/ident/m.tar")
    assert change_of("memory://ident/m.tar", recorded) == "it is gone"


def write_tar_bytes(members) -> bytes:
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, ms in members:
            for ext, data in ms.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime = len(data), 1700000000
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_fifo_is_refused_without_being_opened_for_reading(tmp_path):
    os.mkfifo(tmp_path / "f.tar")
    with pytest.raises(NotARegularFile, match="is a FIFO, not a regular file"):
        with open_shard(str(tmp_path / "f.tar")):
            pass


def test_leading_key_reads_plain_pax_and_gnu_headers():
    deep = "d" * 120 + "/key-1"
    for fmt in (tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        name = "dir/key-1" if fmt == tarfile.USTAR_FORMAT else deep
        data = write_tar_bytes([(name, {"jpg": b"x" * 600, "txt": b"y"})])
        assert leading_key(data) == name, fmt
    assert leading_key(b"\x07" * 1024) is None and leading_key(b"") is None


def test_a_run_embedded_before_identities_were_recorded_is_written_with_a_warning(src, tmp_path, caplog):
    run = RunDir(tmp_path / "run")
    api.embed(str(src), run.root, CFG, progress=False)
    for part in run.part_ids():  # as an older datapruner wrote them
        pq.write_table(without_identity(pq.read_table(run.metadata(part))), run.metadata(part))
    api.cluster(run.root, CFG)
    api.select(run.root, 1.0, CFG, progress=False)
    with caplog.at_level(logging.WARNING, logger="datapruner.io.identity"):
        api.write(run.root, CFG, progress=False)
    assert "were embedded before datapruner recorded a shard's identity" in caplog.text
    assert len(list((run.root / "shards").glob("*.tar"))) == 1
    assert Sources(run).change(run.shards()[0]) is None
