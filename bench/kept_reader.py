"""The kept samples three ways, in one process, on local disk: datapruner.data.KeptSamples (ranged reads of the
source shards), webdataset over the pruned shards `write` made, and webdataset over every source shard with a
key filter. Samples/s and bytes read at each keep fraction.

    python bench/kept_reader.py [--shards 8] [--per-shard 1000] [--image-kb 40] [--keeps 0.3,0.1] [--rounds 3]
                                [--json PATH]

The source is synthetic: shards of samples with a random-bytes .jpg of about --image-kb KiB, a caption .txt and
a .json (a few hundred MB with the defaults). A run directory is made from them without embedding (run.json
and the manifest, a seeded random keep), and the pruned shards by the write step's own code (plan, then
write). Every file is read once before timing, so each way reads from the page cache; the ways alternate over
--rounds rounds and each one's best round is reported. No decoding: each way yields the raw member bytes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from publish import add_json_option, table, write  # noqa: E402
from shardmaker import write_tar  # noqa: E402


def write_source(root: Path, shards: int, per_shard: int, image_kb: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    urls = []
    for s in range(shards):
        samples = []
        for j in range(per_shard):
            key = f"{s * per_shard + j:09d}"
            size = int(rng.integers(image_kb * 512, image_kb * 1536))
            samples.append((key, {"jpg": rng.bytes(size), "txt": f"caption {key}".encode(),
                                  "json": f'{{"key": "{key}"}}'.encode()}))
        urls.append(str(write_tar(root / f"src-{s:05d}.tar", samples)))
    return urls


def make_run(run_root: Path, urls: list[str], keep: float, seed: int = 0):
    """A run directory holding what the reader and the write step read: run.json's shards and keep.parquet."""
    from datapruner.io.atomic import save_parquet
    from datapruner.io.rundir import RunDir
    from datapruner.io.shards import open_shard
    from datapruner.io.tar_samples import iter_samples

    run = RunDir(run_root)
    run.update_run_json(shards=urls, source="synthetic")
    rows = {"shard": [], "key": [], "offset": [], "length": []}
    for url in urls:
        with open_shard(url) as stream:
            for sample in iter_samples(stream):
                for name, value in zip(rows, (url, sample.key, sample.offset, sample.length)):
                    rows[name].append(value)
    kept = np.random.default_rng(seed).random(len(rows["key"])) < keep
    save_parquet(run.keep_parquet, pa.table({**rows, "kept": kept, "reason": [None] * len(kept)}))
    return run


def write_pruned(run) -> list[str]:
    from datapruner.write.shards import build_plan, plan_names, write_shards

    build_plan(run, 10000, "", 6, False, False)
    names = plan_names(run.write_plan)
    for _ in write_shards(run, names, False):
        pass
    return [str(run.shard(name)) for name in names]


def reader_way(run_root: Path, shuffle: bool):
    def prepare():
        from datapruner.data import KeptSamples

        samples = KeptSamples(run_root, shuffle=shuffle)  # reads the manifest, checks the sources
        return samples, lambda: samples.bytes_read
    return prepare


def webdataset_way(urls: list[str], kept: set | None = None):
    def prepare():
        import webdataset as wds

        dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
        if kept is not None:
            dataset = dataset.select(lambda s: (s["__url__"], s["__key__"]) in kept)
        return dataset, lambda: sum(Path(u).stat().st_size for u in urls)
    return prepare


def timed(ways: dict, rounds: int) -> dict:
    """Each way's best round (of iterating; setting it up is timed apart), after one untimed round."""
    best = {name: None for name in ways}
    for round_ in range(rounds + 1):
        for name, prepare in ways.items():
            start = time.perf_counter()
            dataset, bytes_read = prepare()
            ready = time.perf_counter()
            count = sum(1 for _ in dataset)
            seconds = time.perf_counter() - ready
            if round_ and (best[name] is None or seconds < best[name]["seconds"]):
                best[name] = {"samples": count, "bytes_read": bytes_read(), "seconds": seconds,
                              "setup_seconds": ready - start}
    return best


def measure(root: Path, urls: list[str], keep: float, rounds: int) -> dict:
    run = make_run(root / f"run-{keep}", urls, keep)
    pruned = write_pruned(run)
    table_ = pq.read_table(run.keep_parquet, filters=[("kept", "==", True)])
    kept = set(zip(table_.column("shard").to_pylist(), table_.column("key").to_pylist()))
    for path in urls + pruned:  # into the page cache, for every way alike
        Path(path).read_bytes()
    ways = {"KeptSamples (reader)": reader_way(run.root, False),
            "KeptSamples, shuffled": reader_way(run.root, True),
            "webdataset, pruned shards": webdataset_way(pruned),
            "webdataset, all sources + key filter": webdataset_way(urls, kept)}
    best = timed(ways, rounds)
    assert {b["samples"] for b in best.values()} == {len(kept)}, best
    return {"keep": keep, "kept": len(kept), "kept_bytes": int(table_.column("length").to_numpy().sum()),
            "ways": best}


def rows_of(result: dict) -> list[list]:
    pruned = result["ways"]["webdataset, pruned shards"]
    rate = lambda b: b["samples"] / b["seconds"]  # noqa: E731
    return [[result["keep"], name, f"{rate(b):,.0f}", f"{rate(b) / rate(pruned):.2f}×",
             f"{b['bytes_read'] / 2**20:,.1f}", f"{b['bytes_read'] / result['kept_bytes']:.3f}",
             f"{b['setup_seconds']:.3f}"]
            for name, b in result["ways"].items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--image-kb", type=int, default=40)
    parser.add_argument("--keeps", default="0.3,0.1")
    parser.add_argument("--rounds", type=int, default=3)
    add_json_option(parser, "kept_reader")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = write_source(Path(tmp) / "src", args.shards, args.per_shard, args.image_kb)
        source_mb = sum(Path(u).stat().st_size for u in urls) / 2**20
        results = [measure(Path(tmp), urls, float(k), args.rounds) for k in args.keeps.split(",")]
    rows = [row for r in results for row in rows_of(r)]
    for row in rows:
        print(row)
    publish(args, results, rows, source_mb)


def publish(args, results: list[dict], rows: list[list], source_mb: float) -> None:
    def ratio(r, name):
        ways = r["ways"]
        return (ways[name]["samples"] / ways[name]["seconds"]) / (
            ways["webdataset, pruned shards"]["samples"] / ways["webdataset, pruned shards"]["seconds"])
    headline = "; ".join(
        f"keep {r['keep']}: reader {ratio(r, 'KeptSamples (reader)'):.2f}× the pruned shards' samples/s, key filter "
        f"{ratio(r, 'webdataset, all sources + key filter'):.2f}×, reader read "
        f"{r['ways']['KeptSamples (reader)']['bytes_read'] / r['kept_bytes']:.3f}× the kept bytes" for r in results)
    columns = ["keep", "way", "samples/s", "vs pruned shards", "MiB read", "read / kept bytes", "setup s"]
    title = (f"{args.shards} synthetic shards × {args.per_shard} samples ({source_mb:,.0f} MiB, ~{args.image_kb} KiB "
             f"images), page cache warm, best of {args.rounds} alternating rounds after an untimed one, raw bytes (no decode)")
    write(args.json_path, "kept_reader", title="The kept samples read in place (datapruner.data) against webdataset "
          "over pruned shards and over all shards with a key filter", result={"results": results},
          headline=headline, tables=[table(title, columns, rows)],
          notes=["One process, one thread, local disk, on 2 cores shared with other work: compare the ratios within "
                 "the run, not rates across runs. Bytes read are the stored bytes each way opened: the "
                 "reader's ranged reads, the pruned shards' size, every source shard's size. samples/s times the iteration; setup (the reader's manifest read and source check, webdataset's pipeline) is timed apart."])


if __name__ == "__main__":
    main()
