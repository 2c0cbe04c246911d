"""The pruned folder is a drop-in img2dataset / open_clip / DataComp folder, and the manifest keeps what the
source knew: per-shard parquet and _stats.json, sizes.json, configurable names, keep_uids.npy by value."""

import json
import logging
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml
from conftest import TINY
from shardmaker import sample_members, write_tar

from datapruner import api
from datapruner.config import Config
from datapruner.select.manifest import datacomp_uids
from datapruner.select.scores import concat_parts

CFG = Config(**TINY, clusters=3, shard_size=7, output_digits=5)
KEEP = 0.75
PER_SHARD = 12


def uid_for(i: int, rng: random.Random) -> str | None:
    """32 hex digits, 31 (a DataComp uid whose leading zero was dropped), upper case, none, or not hex."""
    if i % 6 == 1:
        return f"{rng.getrandbits(124):x}"  # < 2**124: at most 31 digits
    if i % 6 == 2:
        return None
    if i % 6 == 3:
        return "not-a-uid"
    if i % 6 == 4:
        return f"{rng.getrandbits(128):032X}"
    return f"{rng.getrandbits(128) | 1 << 127:032x}"


def source(root: Path) -> Path:
    rng = random.Random(7)
    for s in range(2):
        samples = []
        for j in range(PER_SHARD):
            i = s * PER_SHARD + j
            members = sample_members(i, i % 4)
            uid = uid_for(i, rng)
            members["json"] = json.dumps({"label": i % 4, **({"uid": uid} if uid else {})}).encode()
            samples.append((f"{i:06d}", members))
        write_tar(root / f"part-{s}.tar", samples)
    return root


def source_fields(part: int, keys: list[str]) -> dict[str, pa.Array]:
    """img2dataset's per-sample columns, as the source's metadata would bring them: part 1 has width as
    int64 where part 0 has int32, and an exif column part 0 lacks."""
    n = len(keys)
    cols = {"url": pa.array([f"https://example.com/{k}.jpg" for k in keys]),
            "width": pa.array([40 + i for i in range(n)], pa.int32() if part == 0 else pa.int64()),
            "height": pa.array([40] * n, pa.int32()),
            "sha256": pa.array([f"{int(k):064x}" for k in keys]),
            "status": pa.array(["success"] * n)}
    if part == 1:
        cols["exif"] = pa.array([json.dumps({"Image Make": "x"})] * n)
    return cols


def build(src: Path, run: Path) -> Path:
    """embed, then the source's extra columns written into the metadata (as the embed step will write
    them: the embed marker records the file names, not their bytes), then everything else."""
    api.embed(str(src), run, CFG, progress=False)
    for i, path in enumerate(sorted((run / "embeddings/metadata").glob("metadata_*.parquet"))):
        table = pq.read_table(path)
        for name, column in source_fields(i, table.column("key").to_pylist()).items():
            table = table.append_column(name, column)
        pq.write_table(table, path)
    api.score(str(src), run, KEEP, CFG, progress=False)
    return run


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("i2d")
    return build(source(base / "src"), base / "run")


def tars(run: Path) -> list[Path]:
    return sorted((run / "shards").glob("*.tar"))


def test_output_shards_are_named_as_configured_and_read_by_webdataset(pruned):
    names = [p.name for p in tars(pruned)]
    assert names == ["00000.tar", "00001.tar", "00002.tar"]  # 18 kept, 7 per shard, 5 digits
    files = sorted(p.name for p in (pruned / "shards").iterdir())
    assert files == sorted(["sizes.json"] + [f"0000{j}{ext}" for j in range(3)
                                             for ext in (".tar", ".parquet", "_stats.json")])
    samples = list(wds.WebDataset([str(p) for p in tars(pruned)], shardshuffle=False))
    manifest = pq.read_table(pruned / "manifest/keep.parquet")
    kept = manifest.filter(manifest.column("kept")).column("key").to_pylist()
    assert len(samples) == len(kept) == round(KEEP * 2 * PER_SHARD) and {s["__key__"] for s in samples} == set(kept)


def test_a_prefix_and_a_width_rename_the_shards_and_sweep_the_old_names(pruned, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pruned, run)
    api.write(run, CFG.replace(output_digits=8, output_prefix="laion-"), progress=False)
    files = sorted(p.name for p in (run / "shards").iterdir())
    assert files == sorted(["sizes.json"] + [f"laion-0000000{j}{ext}" for j in range(3)
                                             for ext in (".tar", ".parquet", "_stats.json")])
    assert sorted(json.loads((run / "shards/sizes.json").read_text())) == [f"laion-0000000{j}.tar" for j in range(3)]
    for j in range(3):  # the same bytes under the new name
        assert (run / f"shards/laion-0000000{j}.tar").read_bytes() == (pruned / f"shards/0000{j}.tar").read_bytes()


def test_the_datacomp_preset_names_shards_as_datacomps_resharder_expects(pruned, tmp_path):
    """configs/datacomp.yaml: `{:08d}.tar`, the shard format DataComp's resharder and scripts default to."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pruned, run)
    preset = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs/datacomp.yaml").read_text())
    assert preset["output_digits"] == 8
    api.write(run, CFG.replace(**preset), progress=False)
    names = [p.name for p in tars(run)]
    assert names == ["00000000.tar"] and names == [f"{0:08d}.tar"]  # 18 kept, 10,000 per shard
    assert json.loads((run / "shards/sizes.json").read_text()) == {"00000000.tar": 18}


def open_clip_dataset_size(shards: str) -> tuple[int, int]:
    """open_clip_train.data.get_dataset_size, imported when installed; else its documented rule: sizes.json
    beside the first shard, summed by each shard's base name."""
    try:
        from open_clip_train.data import get_dataset_size
    except ImportError:
        import os

        import braceexpand

        urls = list(braceexpand.braceexpand(shards))
        sizes = json.load(open(os.path.join(os.path.dirname(urls[0]), "sizes.json")))
        return sum(int(sizes[os.path.basename(u)]) for u in urls), len(urls)
    return get_dataset_size(shards)


def test_sizes_json_gives_open_clip_the_number_of_samples(pruned):
    folder = pruned / "shards"
    sizes = json.loads((folder / "sizes.json").read_text())
    per_tar = {p.name: len(list(wds.WebDataset(str(p), shardshuffle=False))) for p in tars(pruned)}
    assert sizes == per_tar == {"00000.tar": 7, "00001.tar": 7, "00002.tar": 4}
    assert open_clip_dataset_size(f"{folder}/{{00000..00002}}.tar") == (18, 3)
    assert open_clip_dataset_size(f"{folder}/{{00001..00002}}.tar") == (11, 2)


def test_stats_files_are_what_img2dataset_and_datacomp_read(pruned):
    sizes = json.loads((pruned / "shards/sizes.json").read_text())
    for tar in tars(pruned):
        stats = json.loads(tar.with_name(tar.stem + "_stats.json").read_text())
        # img2dataset logger.write_stats: these fields, these types
        for name in ("count", "successes", "failed_to_download", "failed_to_resize"):
            assert type(stats[name]) is int
        for name in ("duration", "start_time", "end_time"):
            assert isinstance(stats[name], (int, float)) and not isinstance(stats[name], bool)
        assert stats["end_time"] - stats["start_time"] == stats["duration"]
        assert Counter(stats["status_dict"]) == Counter(success=sizes[tar.name])  # CappedCounter.load
        assert stats["count"] == stats["successes"] == sizes[tar.name]
        assert stats["failed_to_download"] == stats["failed_to_resize"] == 0
        # DataComp resharder.load_shard_size: int(json["successes"]) is the shard's size (no TypeError)
        assert int(stats.get("successes")) == len(list(wds.WebDataset(str(tar), shardshuffle=False)))
        assert all(isinstance(s, str) and s.endswith(".tar") for s in stats["sources"])
        assert stats["bytes"] == tar.stat().st_size
    # DataComp's --shard-table (default sizes.json): shard name → size, ints
    assert all(type(v) is int for v in sizes.values())


def test_shard_parquets_hold_the_rows_of_their_shard_with_every_metadata_column(pruned):
    manifest = pq.read_table(pruned / "manifest/keep.parquet")
    for name in ("url", "width", "height", "sha256", "status", "exif", "uid", "caption", "label"):
        assert name in manifest.column_names, name
    assert manifest.schema.field("width").type == pa.int64()  # int32 in one part, int64 in the other
    rows = {r["key"]: r for r in manifest.to_pylist()}
    assert {rows[k]["exif"] is None for k in rows if int(k) < PER_SHARD} == {True}  # part 0 had none
    for tar in tars(pruned):
        table = pq.read_table(tar.with_suffix(".parquet"))
        assert table.column_names[0] == "key"
        assert set(table.column_names) == {"key", "uid", "caption", "label", "url", "width", "height", "sha256",
                                           "status", "exif"}
        keys = [s["__key__"] for s in wds.WebDataset(str(tar), shardshuffle=False)]
        assert table.column("key").to_pylist() == keys  # shard order
        assert set(table.column("status").to_pylist()) == {"success"}
        for row in table.to_pylist():
            source_row = rows[row["key"]]
            assert row["url"] == f"https://example.com/{row['key']}.jpg" == source_row["url"]
            assert all(row[c] == source_row[c] for c in row if c != "status")


def by_datacomp(uids) -> np.ndarray:
    """DataComp resharder.py: np.array([divmod(int(key_str, 16), 2**64)], u16), subset sorted."""
    out = np.array([divmod(int(u, 16), 2**64) for u in uids], np.dtype("u8,u8"))
    out.sort()
    return out


def is_hex(uid) -> bool:
    try:
        return uid is not None and 0 <= int(uid, 16) < 2**128
    except ValueError:
        return False


def test_keep_uids_are_datacomp_values_and_the_others_are_counted(pruned):
    manifest = pq.read_table(pruned / "manifest/keep.parquet").to_pylist()
    kept = [r["uid"] for r in manifest if r["kept"]]
    assert {31, 32} <= {len(u) for u in kept if is_hex(u)}  # both widths are among the kept
    got = np.load(pruned / "manifest/keep_uids.npy")
    assert got.dtype == np.dtype("u8,u8")
    assert got.tolist() == by_datacomp([u for u in kept if is_hex(u)]).tolist()
    summary = json.loads((pruned / "manifest/summary.json").read_text())
    missing, not_hex = sum(u is None for u in kept), sum(u is not None and not is_hex(u) for u in kept)
    assert missing > 0 and not_hex > 0
    assert summary["keep_uids"] == {"written": len(got), "missing": missing, "not_hex": not_hex}


def test_a_leading_zero_dropped_is_the_same_uid():
    rng = random.Random(3)
    full = [f"{rng.getrandbits(124):032x}" for _ in range(50)]  # leading digit 0
    uids, skipped = datacomp_uids([u.lstrip("0") for u in full])
    assert uids.tolist() == datacomp_uids(full)[0].tolist() == by_datacomp(full).tolist()
    assert sum(skipped.values()) == 0


def test_uids_follow_pythons_int_as_datacomp_does_and_the_rest_are_counted():
    rng = random.Random(5)
    good = [f"{rng.getrandbits(128):032x}" for _ in range(200)] + [
        "F" * 32, "0" * 32, "1", "abcdef", "0x1f", " 12_34 ", "Aa" * 16]
    bad = ["not hex", "-1", "1" * 33, "", "g" * 32, "12 34"]
    uids, skipped = datacomp_uids(good + bad + [None, None])
    assert uids.dtype == np.dtype("u8,u8")
    assert uids.tolist() == by_datacomp(good).tolist()
    assert skipped == Counter({"not hex": len(bad), "missing": 2})
    assert datacomp_uids(pa.array([1, 2]))[1]["not hex"] == 2  # uids that are not strings


def test_a_missing_uid_is_logged_once_with_its_count(pruned, tmp_path, caplog):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pruned, run)
    with caplog.at_level(logging.WARNING, logger="datapruner.select.manifest"):
        summary = api.select(run, 1.0, CFG)["select"]
    lines = [r.getMessage() for r in caplog.records if "keep_uids.npy" in r.getMessage()]
    assert summary["keep_uids"] == {"written": 16, "missing": 4, "not_hex": 4}
    assert len(lines) == 1 and "8 kept sample(s) left out: 4 without a uid, 4 not 128-bit hex" in lines[0]


def test_parts_with_clashing_column_types_carry_them_as_strings():
    a = pa.table({"key": ["a"], "width": pa.array([1], pa.int32()), "note": ["x"]})
    b = pa.table({"key": ["b"], "width": pa.array([2], pa.int64())})
    c = pa.table({"key": ["c"], "note": pa.array([3], pa.int64())})
    table = concat_parts([a, b, c])
    assert table.schema.field("width").type == pa.int64() and table.column("width").to_pylist() == [1, 2, None]
    assert table.schema.field("note").type == pa.string() and table.column("note").to_pylist() == ["x", None, "3"]


def test_rerun_writes_the_same_pruned_folder(pruned, tmp_path):
    run = build(pruned.parent / "src", tmp_path / "again")
    for sub in ("shards", "manifest"):
        expected = {p.name: p.read_bytes() for p in (pruned / sub).iterdir()}
        got = {p.name: p.read_bytes() for p in (run / sub).iterdir()}
        assert got == expected, sub
