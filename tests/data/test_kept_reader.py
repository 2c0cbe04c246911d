"""datapruner.data.KeptSamples over a real run (plain and gzip sources, a shard with a repeated key): what it
yields is what the pruned shards hold, once per epoch across ranks and DataLoader workers, resumable."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from kept_run import scored_run  # noqa: E402

from datapruner.cli import app  # noqa: E402
from datapruner.data import KeptSamples  # noqa: E402
from datapruner.data.fetch import SLACK, coalesced  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return scored_run(tmp_path_factory.mktemp("kept"))


def pruned(run: Path) -> list[dict]:
    urls = sorted(str(p) for p in (run / "shards").glob("*.tar"))
    return [{k: v for k, v in s.items() if k == "__key__" or not k.startswith("__")}
            for s in wds.WebDataset(urls, shardshuffle=False)]


def content(samples) -> Counter:
    """Each sample as (key, members), counted: what must match, whatever the order."""
    return Counter((s["__key__"], tuple(sorted((k, v) for k, v in s.items() if not k.startswith("__"))))
                   for s in samples)


def through_loader(dataset, workers: int = 2) -> list[dict]:
    return list(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers))


def keys(samples) -> list[str]:
    return [s["__key__"] for s in samples]


def test_the_sources_hold_what_the_test_needs(run):
    keep = pq.read_table(run / "manifest/keep.parquet").to_pydict()
    shards = {Path(s).name for s, k in zip(keep["shard"], keep["kept"]) if k}
    assert {"shard-1.tar.gz", "shard-3.tar"} <= shards  # the gzip sources have kept samples
    assert any("duplicate key" in (r or "") for r in keep["reason"])
    assert len(pruned(run)) == sum(keep["kept"]) == 24


def test_two_ranks_two_workers_two_epochs_yield_each_kept_sample_once(run):
    expected = content(pruned(run))
    orders = {}
    for epoch in (0, 1):
        for rank in (0, 1):
            dataset = KeptSamples(run, seed=3, buffer=5, rank=rank, world_size=2)
            dataset.set_epoch(epoch)
            orders[epoch, rank] = through_loader(dataset)
        assert content(orders[epoch, 0] + orders[epoch, 1]) == expected  # byte-identical, nothing else
        assert abs(len(orders[epoch, 0]) - len(orders[epoch, 1])) <= 1
        assert not set(keys(orders[epoch, 0])) & set(keys(orders[epoch, 1]))
    assert keys(orders[0, 0]) != keys(orders[1, 0])
    again = KeptSamples(run, seed=3, buffer=5, rank=0, world_size=2)
    assert keys(through_loader(again, workers=0)) == keys(orders[0, 0])  # same seed, same order, any workers
    other = KeptSamples(run, seed=4, buffer=5, rank=0, world_size=2)
    assert keys(through_loader(other, workers=0)) != keys(orders[0, 0])


def test_a_resume_mid_epoch_yields_exactly_the_unseen_samples(run):
    dataset = KeptSamples(run, seed=1, buffer=4, rank=1, world_size=2)
    dataset.set_epoch(1)
    whole = keys(through_loader(dataset))
    seen = []
    for sample in torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2):
        seen.append(sample["__key__"])
        if len(seen) == 5:
            break
    state = dataset.state_dict(consumed=len(seen))
    resumed = KeptSamples(run, seed=1, buffer=4, rank=1, world_size=2)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    rest = keys(through_loader(resumed))
    assert state == {"epoch": 1, "position": 5} and seen == whole[:5]
    assert rest == whole[5:]


def test_bytes_read_stay_within_five_percent_of_the_kept_bytes(run):
    dataset = KeptSamples(run, shuffle=False)
    assert len(list(dataset)) == 24
    kept = dataset.kept
    plain = [not kept.shards[s].endswith(("/shard-1.tar.gz", "/shard-3.tar")) for s in kept.shard]
    kept_plain = int(kept.length[plain].sum())
    gzip_files = sum(Path(u).stat().st_size for u in kept.shards if u.endswith(("/shard-1.tar.gz", "/shard-3.tar")))
    assert kept_plain <= dataset.bytes_read - gzip_files <= (1 + SLACK) * kept_plain


def test_coalescing_reads_through_the_smallest_gaps_within_the_slack():
    rng = np.random.default_rng(0)
    lengths = rng.integers(512, 20_000, 500)
    offsets = np.cumsum(lengths + rng.choice([0, 512, 50_000], 500, p=[0.5, 0.3, 0.2])) - lengths
    reads = coalesced(offsets, lengths)
    covered = [i for _, _, idx in reads for i in idx]
    assert covered == list(range(500)) and 1 < len(reads) < 500
    assert sum(end - start for start, end, _ in reads) <= (1 + SLACK) * lengths.sum()
    assert all(start == offsets[idx[0]] and end == offsets[idx[-1]] + lengths[idx[-1]] for start, end, idx in reads)


def test_the_stored_embeddings_come_as_the_members_write_with_embeddings_adds(run, tmp_path):
    plain = pruned(run)
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    result = CliRunner().invoke(app, ["write", str(copy), "--with-embeddings", "-q"])
    assert result.exit_code == 0, result.output
    written = pruned(copy)
    assert [{k: v for k, v in s.items() if "_emb" not in k} for s in written] == plain  # inputs unchanged
    read = [{k: v for k, v in s.items() if k != "__url__"} for s in KeptSamples(copy, shuffle=False, embeddings=True)]
    assert read == written
    decoded = next(iter(wds.DataPipeline(wds.SimpleShardList(str(copy / "shards/000000.tar")), wds.tarfile_to_samples(),
                                         wds.decode())))
    meta = pq.read_table(run / "embeddings/metadata/metadata_0.parquet").column("key").to_pylist()
    stored = np.load(run / "embeddings/img_emb/img_emb_0.npy")[meta.index(decoded["__key__"])]
    assert decoded["img_emb.npy"].dtype == np.float16 and np.array_equal(decoded["img_emb.npy"], stored)
    assert decoded["txt_emb.npy"].shape == stored.shape


def test_a_keep_parquet_alone_reads_the_same_samples(run, tmp_path):
    alone = Path(shutil.copy(run / "manifest/keep.parquet", tmp_path / "keep.parquet"))
    assert content(KeptSamples(alone, seed=2)) == content(pruned(run))


def _discovering_rank(rank: int, run: str, store: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        found = keys(KeptSamples(run, seed=5))
        Path(out, f"{rank}.json").write_text(json.dumps(found))
    finally:
        torch.distributed.destroy_process_group()


def test_rank_and_world_size_are_found_from_torch_distributed(run, tmp_path):
    context = multiprocessing.get_context("fork")
    ranks = [context.Process(target=_discovering_rank, args=(r, str(run), str(tmp_path / "store"), str(tmp_path)))
             for r in (0, 1)]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(120)
    assert [p.exitcode for p in ranks] == [0, 0]
    for r in (0, 1):
        given = keys(KeptSamples(run, seed=5, rank=r, world_size=2))
        assert json.loads((tmp_path / f"{r}.json").read_text()) == given


def test_a_source_shard_changed_since_embed_is_refused(tmp_path):
    from conftest import TINY
    from shardmaker import sample_members, write_tar

    from datapruner import api
    from datapruner.config import Config
    from datapruner.io.identity import SourceChanged

    samples = [(f"{i:06d}", sample_members(i, i % 4, "png")) for i in range(8)]
    shard = write_tar(tmp_path / "src/a.tar", samples)
    api.score(str(shard), tmp_path / "run", 0.5, Config(**TINY, clusters=2), progress=False)
    reader = KeptSamples(tmp_path / "run", shuffle=False)
    write_tar(shard, samples[::-1])  # the same size, other samples at the recorded offsets
    with pytest.raises(SourceChanged, match="changed since it was embedded"):
        list(reader)
    with pytest.raises(SourceChanged, match="source shard .*a.tar changed since it was embedded"):
        KeptSamples(tmp_path / "run")


def test_the_training_example_runs_clip_and_a_student_on_the_kept_samples(run):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples/train_on_kept.py"
    spec = importlib.util.spec_from_file_location("train_on_kept", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = example.main([str(run), "--steps", "3", "--batch-size", "6", "--workers", "2"])
    assert len(out["clip"]) == len(out["student"]) == 3 and np.isfinite(out["clip"]).all()
    assert out["student"][-1] < out["student"][0]  # the student moves towards the stored teacher embeddings
    assert out["state"] == {"epoch": 0, "position": 18}  # 3 batches of 6 of the 24 kept


def test_shards_on_object_storage_are_read_by_ranges_with_fsspec(run, tmp_path):
    import fsspec
    import pyarrow as pa
    import pyarrow.compute as pc

    keep = pq.read_table(run / "manifest/keep.parquet")
    store = fsspec.filesystem("memory")
    moved = {}
    for shard in keep.column("shard").unique().to_pylist():
        moved[shard] = f"memory://kept-reader/{Path(shard).name}"
        store.pipe(moved[shard], Path(shard).read_bytes())
    urls = pa.array([moved[s] for s in keep.column("shard").to_pylist()])
    pq.write_table(keep.set_column(keep.schema.get_field_index("shard"), "shard", urls), tmp_path / "keep.parquet")
    samples = KeptSamples(tmp_path / "keep.parquet", shuffle=False)
    assert content(samples) == content(pruned(run))
    gzipped = [url for url in moved.values() if url.endswith(("/shard-1.tar.gz", "/shard-3.tar"))]
    plain = ~np.isin(np.array(samples.kept.shards)[samples.kept.shard], gzipped)
    gzip_bytes = sum(len(store.cat(url)) for url in gzipped)  # read whole, once
    assert samples.bytes_read - gzip_bytes <= (1 + SLACK) * samples.kept.length[plain].sum()
    assert pc.all(pc.starts_with(pa.array(samples.kept.shards), "memory://")).as_py()
