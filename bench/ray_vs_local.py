"""The pipeline with the Ray runner against the local runner on the same shards (default 8 × 200, tiny model).

    python bench/ray_vs_local.py [--shards 8] [--per-shard 200] [--num-workers 2] [--cpus 2] [--json PATH]

Prints the wall time of every step for both runners, Ray's own costs (ray.init, one embed actor's start
and model load), a second Ray run on the already-started Ray, and whether the outputs are byte-identical.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from datapruner import api
from datapruner.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from shardmaker import write_shards  # noqa: E402

from publish import add_json_option, table, write  # noqa: E402

COMPARED = ("embeddings", "scores", "manifest", "shards")


def timed_score(src: str, run: Path, cfg: Config) -> dict:
    steps = [("embed", lambda: api.embed(src, run, cfg, False)), ("cluster", lambda: api.cluster(run, cfg)),
             ("measure", lambda: api.measure(run, cfg, False)), ("select", lambda: api.select(run, cfg.keep, cfg)),
             ("write", lambda: api.write(run, cfg, False))]
    times = {}
    for name, step in steps:
        start = time.perf_counter()
        step()
        times[name] = round(time.perf_counter() - start, 2)
    times["total"] = round(sum(times.values()), 2)
    return times


def actor_ready_seconds(run: Path, cfg: Config) -> float:
    """One embed actor: process start, imports and model load, then an empty call."""
    import ray

    from datapruner.runners.ray import Worker, actor_resources
    from datapruner.steps.loop import PartTask

    cpus, gpus = actor_resources(cfg)
    start = time.perf_counter()
    task = PartTask("embed", str(run), cfg, {}, has_setup=True)
    actor = ray.remote(Worker).options(num_cpus=cpus, num_gpus=gpus).remote(task)
    ray.get(actor.run.remote([]))
    seconds = time.perf_counter() - start
    ray.kill(actor)
    return round(seconds, 2)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for sub in COMPARED for p in sorted((root / sub).rglob("*")) if p.is_file()}


def main() -> None:
    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--per-shard", type=int, default=200)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2)
    add_json_option(parser, "ray_vs_local")
    args = parser.parse_args()
    cfg = Config(model="datapruner-tiny", pretrained="none", device="cpu", batch_size=64, num_workers=args.num_workers,
                 clusters=8, shard_size=200, keep=0.3)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_shards(root / "src", args.shards, args.per_shard)
        src = str(root / "src")
        result = {"samples": args.shards * args.per_shard, "local": timed_score(src, root / "local", cfg)}
        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        result["ray_init"] = round(time.perf_counter() - start, 2)
        ray_cfg = cfg.replace(runner="ray")
        result["ray_first_run"] = timed_score(src, root / "ray1", ray_cfg)
        result["ray_second_run"] = timed_score(src, root / "ray2", ray_cfg)
        result["ray_one_actor_ready"] = actor_ready_seconds(root / "ray2", ray_cfg)
        result["byte_identical"] = tree(root / "local") == tree(root / "ray1") == tree(root / "ray2")
        ray.shutdown()
    result.update(shards=args.shards, per_shard=args.per_shard, num_workers=args.num_workers, cpus=args.cpus)
    print(json.dumps(result, indent=1))
    write(args.json_path, "ray_vs_local", title=__doc__.splitlines()[0], result=result, headline=headline(result),
          tables=tables(result), notes=[f"ray.init {result['ray_init']} s; one embed actor ready (process, imports, "
                                        f"model) {result['ray_one_actor_ready']} s."])


def headline(r: dict) -> str:
    same = "byte-identical outputs" if r["byte_identical"] else "**outputs differ**"
    return (f"{r['samples']:,} samples: local {r['local']['total']} s, Ray {r['ray_first_run']['total']} s "
            f"(second run {r['ray_second_run']['total']} s); {same}")


def tables(r: dict) -> list[dict]:
    steps = [s for s in r["local"] if s != "total"] + ["total"]
    return [table(f"Wall seconds per command, {r['shards']} shards × {r['per_shard']} samples, Ray on {r['cpus']} CPUs",
                  ["command", "local", "Ray, first run", "Ray, second run"],
                  [[s, r["local"][s], r["ray_first_run"][s], r["ray_second_run"][s]] for s in steps])]


if __name__ == "__main__":
    main()
