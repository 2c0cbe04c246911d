"""The Ray runner: embed with a pool of actors that each load the model once; other map steps as Ray tasks.

The step functions are the local runner's: each writes its part into the run directory (a path every
node sees) and marks it done, so a rerun after a crash skips finished parts, exactly as locally.
Barrier steps stay on the driver. `ray` is imported only here, and only when the runner is used.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Iterable

from tqdm import tqdm

from datapruner.config import Config
from datapruner.io.rundir import RunDir

log = logging.getLogger(__name__)
RETRIES = 2  # a task or actor that dies (node lost, OOM kill) is retried; its finished parts are kept


def connect(cfg: Config) -> None:
    """Join cfg.ray_address (or RAY_ADDRESS, or a new local Ray) unless this process already has."""
    import ray

    if ray.is_initialized():
        return
    kwargs = {"runtime_env": cfg.ray_runtime_env} if cfg.ray_runtime_env else {}
    ray.init(address=cfg.ray_address or None, **kwargs)
    log.info("ray cluster: %s", ray.cluster_resources())


class EmbedWorker:
    """One model per actor; each call embeds a few whole shards with the embed step of the local runner."""

    def __init__(self, run_root: str, n_shards: int, cfg: Config):
        from datapruner.embed.model import load_clip

        self.run, self.n_shards, self.cfg = RunDir(run_root), n_shards, cfg
        self.clip = load_clip(cfg.model, cfg.pretrained, cfg.device, cfg.precision, cfg.seed)

    def embed(self, tasks: list) -> dict:
        """Shards already marked done are skipped: a call retried after a crash redoes only the rest."""
        from datapruner.embed.step import STEP, embed_tasks
        from datapruner.io.rundir import part_id

        todo = [t for t in tasks if not self.run.is_done(STEP, part_id(t.index, self.n_shards))]
        done = embed_tasks(self.run, todo, self.n_shards, self.cfg, clip=self.clip, progress=False)
        return {**done, "shards": len(tasks)}


def apply(fn: Callable, item):
    """The body of a map task."""
    return fn(item)


class RayRunner:
    def __init__(self, cfg: Config):
        self.cfg = cfg

    def embed(self, run: RunDir, shards: list[str], cfg: Config, progress: bool = True,
              parts: list[int] | None = None) -> dict:
        from datapruner.embed.step import pending_tasks

        tasks = pending_tasks(run, shards, parts)
        totals = {"samples": 0, "errors": 0, "shards": 0}
        if not tasks:
            return totals
        connect(cfg)
        chunks = split(tasks, shards_per_call(cfg))
        actors = start_embed_actors(str(run.root), len(shards), cfg, len(chunks))
        try:
            for done in run_on_pool(actors, chunks, len(tasks), progress):
                for name in totals:
                    totals[name] += done[name]
        finally:
            stop(actors)
        return totals

    def map(self, fn: Callable, items: Iterable, desc: str, progress: bool = True) -> list:
        """fn(item) for every item as Ray tasks; results in item order."""
        import ray

        items = list(items)
        if not items:
            return []
        connect(self.cfg)
        task = ray.remote(apply).options(num_cpus=self.cfg.ray_num_cpus_per_task, max_retries=RETRIES)
        fn_ref = ray.put(fn)
        refs = [task.remote(fn_ref, item) for item in items]
        wait_with_progress(refs, desc, progress)
        return ray.get(refs)


def shards_per_call(cfg: Config) -> int:
    return cfg.ray_shards_per_call or max(1, cfg.num_workers)


def split(tasks: list, size: int) -> list[list]:
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


def actor_resources(cfg: Config) -> tuple[float, float]:
    """(CPUs, GPUs) for one embed actor."""
    import ray

    cpus = cfg.ray_num_cpus_per_actor or max(1, cfg.num_workers)
    gpus = cfg.ray_num_gpus_per_actor
    if gpus is None:
        gpus = 1.0 if cfg.device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    if gpus > 0 and ray.cluster_resources().get("GPU", 0) == 0:
        raise ValueError(f"ray_num_gpus_per_actor={gpus} but the Ray cluster has no GPUs: set it to 0 "
                         "or use --device cpu")
    return cpus, gpus


def actor_count(cfg: Config, cpus: float, gpus: float, n_chunks: int) -> int:
    """cfg.ray_embed_actors, else as many as the cluster's GPUs (or CPUs) hold; never more than the work."""
    import ray

    if cfg.ray_embed_actors:
        wanted = cfg.ray_embed_actors
    elif gpus > 0:
        wanted = math.floor(ray.cluster_resources().get("GPU", 0) / gpus)
    else:
        wanted = math.floor(ray.cluster_resources().get("CPU", 1) / cpus)
    return max(1, min(wanted, n_chunks))


def start_embed_actors(run_root: str, n_shards: int, cfg: Config, n_chunks: int) -> list:
    import ray

    cpus, gpus = actor_resources(cfg)
    n = actor_count(cfg, cpus, gpus, n_chunks)
    log.info("embedding with %d Ray actor(s), %s CPU and %s GPU each", n, cpus, gpus)
    actor = ray.remote(EmbedWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=RETRIES,
                                            max_task_retries=RETRIES)
    return [actor.remote(run_root, n_shards, cfg) for _ in range(n)]


def run_on_pool(actors: list, chunks: list[list], n_tasks: int, progress: bool):
    """Yield each call's totals as it finishes; an idle actor takes the next chunk."""
    from ray.util import ActorPool

    pool = ActorPool(actors)
    with tqdm(total=n_tasks, unit="shard", desc="embed", disable=not progress) as bar:
        for done in pool.map_unordered(lambda actor, chunk: actor.embed.remote(chunk), chunks):
            bar.update(done["shards"])
            yield done


def stop(actors: list) -> None:
    """Free the actors' CPUs/GPUs for the next step's tasks."""
    import ray

    for actor in actors:
        ray.kill(actor)


def wait_with_progress(refs: list, desc: str, progress: bool) -> None:
    import ray

    remaining = list(refs)
    with tqdm(total=len(refs), desc=desc, unit="part", disable=not progress) as bar:
        while remaining:
            ready, remaining = ray.wait(remaining, num_returns=1)
            bar.update(len(ready))
