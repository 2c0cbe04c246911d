"""The Ray runner: a map step's parts as Ray tasks, or on a pool of actors when the step has a setup.

An actor runs the step's setup once (the embed model: GPU actors hold it) and then batches of
parts. Each part is written into the run directory (a path every node sees) and marked as it
finishes, so a retried task or restarted actor redoes only the parts that are not marked (PartTask skips them).
Barrier steps stay on the driver. `ray` is imported only here, and only when the runner is used.
"""

from __future__ import annotations

import logging
import math

from tqdm import tqdm

from datapruner.config import Config

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


class Worker:
    """A Ray actor: the task's setup once, then batches of parts."""

    def __init__(self, task):
        self.task, self.state = task, task.setup()

    def run(self, parts: list[str]) -> list:
        return list(self.task(self.state, parts))


def run_task(task, parts: list[str]) -> list:
    """The body of a Ray task (steps without a setup)."""
    return list(task(task.setup(), parts))


class RayRunner:
    def __init__(self, cfg: Config):
        self.cfg = cfg

    def map(self, task, parts: list[str], desc: str, progress: bool = True) -> list[dict]:
        import ray

        if not parts:
            return []
        connect(self.cfg)
        batches = [parts[i:i + task.batch] for i in range(0, len(parts), task.batch)]
        if task.has_setup:
            actors = start_actors(task, self.cfg, len(batches))
            try:
                return collect(submit_to_pool(actors, batches), len(parts), desc, progress)
            finally:
                for actor in actors:
                    ray.kill(actor)  # free their CPUs/GPUs for the next step
        remote = ray.remote(run_task).options(num_cpus=self.cfg.ray_num_cpus_per_task, max_retries=RETRIES)
        task_ref = ray.put(task)
        refs = [remote.remote(task_ref, batch) for batch in batches]
        return collect(as_completed(refs), len(parts), desc, progress)


def collect(batches, total: int, desc: str, progress: bool) -> list[dict]:
    results = []
    with tqdm(total=total, desc=desc, unit="part", disable=not progress) as bar:
        for batch in batches:
            results.extend(r for _, r in batch)
            bar.update(len(batch))
    return results


def as_completed(refs: list):
    import ray

    remaining = list(refs)
    while remaining:
        ready, remaining = ray.wait(remaining, num_returns=1)
        yield ray.get(ready[0])


def submit_to_pool(actors: list, batches: list[list[str]]):
    """Each call's results as it finishes; an idle actor takes the next batch."""
    from ray.util import ActorPool

    yield from ActorPool(actors).map_unordered(lambda actor, batch: actor.run.remote(batch), batches)


def actor_resources(cfg: Config) -> tuple[float, float]:
    """(CPUs, GPUs) for one actor."""
    import ray

    cpus = cfg.ray_num_cpus_per_actor or max(1, cfg.num_workers)
    gpus = cfg.ray_num_gpus_per_actor
    if gpus is None:
        gpus = 1.0 if cfg.device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    if gpus > 0 and ray.cluster_resources().get("GPU", 0) == 0:
        from datapruner.errors import DataprunerError

        raise DataprunerError(f"ray_num_gpus_per_actor={gpus} but the Ray cluster has no GPUs: set it to 0 "
                              "or use --device cpu")
    return cpus, gpus


def actor_count(cfg: Config, cpus: float, gpus: float, n_batches: int) -> int:
    """cfg.ray_embed_actors, else as many as the cluster's GPUs (or CPUs) hold; never more than the work."""
    import ray

    if cfg.ray_embed_actors:
        wanted = cfg.ray_embed_actors
    elif gpus > 0:
        wanted = math.floor(ray.cluster_resources().get("GPU", 0) / gpus)
    else:
        wanted = math.floor(ray.cluster_resources().get("CPU", 1) / cpus)
    return max(1, min(wanted, n_batches))


def start_actors(task, cfg: Config, n_batches: int) -> list:
    import ray

    cpus, gpus = actor_resources(cfg)
    n = actor_count(cfg, cpus, gpus, n_batches)
    log.info("%s: %d Ray actor(s), %s CPU and %s GPU each", task.step, n, cpus, gpus)
    actor = ray.remote(Worker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=RETRIES,
                                       max_task_retries=RETRIES)
    return [actor.remote(task) for _ in range(n)]
