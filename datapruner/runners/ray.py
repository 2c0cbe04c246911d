"""The Ray runner: a map step's parts as Ray tasks, or on a pool of actors when the step has a setup.

An actor runs the step's setup once (the embed model: GPU actors hold it) and then batches of
parts. Each part is written into the run directory (a path every node sees) and marked as it
finishes, so a retried task or restarted actor redoes only the parts that are not marked (PartTask skips them).
Barrier steps stay on the driver. `ray` is imported only here, and only when the runner is used.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
from contextlib import contextmanager
from typing import Iterator

from datapruner import progress as progress_
from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.logs import driver_level, follow_driver
from datapruner.runners.actor_pool import ActorPool

log = logging.getLogger(__name__)
RETRIES = 2  # a task that dies (node lost, OOM kill) is retried, an actor replaced; finished parts are kept
CONNECT_TIMEOUT_S = 5  # to reach a cluster's GCS, then for it to accept us (RAY_gcs_server_port_wait_time_s)
AUTH_HINT = ("if the cluster uses token authentication (the default of `ray start --head`), give this machine its "
             "token: `ray get-auth-token` on the head node, into ~/.ray/auth_token or RAY_AUTH_TOKEN")


def connect(cfg: Config) -> None:
    """Join cfg.ray_address (or RAY_ADDRESS, or a new local Ray) unless this process already has.

    Against an existing cluster, datapruner first joins as a plain `ray.init(address=...)` does (token
    authentication only when RAY_AUTH_MODE says so). A cluster that refuses that is tried again with the
    token Ray's own CLI would use (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; the default of
    `ray start --head`). Turning token mode on for a cluster without it lets the driver join but leaves
    every actor dead before it starts, so a token on this machine is never taken as the cluster's mode. A
    cluster that cannot be reached, or refuses us, is one DataprunerError within seconds, saying what to set."""
    import ray

    if ray.is_initialized():
        return
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {"runtime_env": cfg.ray_runtime_env} if cfg.ray_runtime_env else {}
    if not address:  # a new local Ray on this machine
        ray.init(**kwargs)
        log.info("ray cluster: %s", ray.cluster_resources())
        return
    check_reachable(address)
    explicit = os.environ.get("RAY_AUTH_MODE") is not None
    try:
        join(address, kwargs)
    except DataprunerError:
        if explicit or not use_token_like_ray_cli():
            raise
        ray.shutdown()
        join(address, kwargs)
    log.info("ray cluster: %s", ray.cluster_resources())


def join(address: str, kwargs: dict) -> None:
    import ray

    try:
        with connect_timeout(), quiet_stderr() as captured:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ray.exceptions.RaySystemError) as exc:
        raise connection_error(address, exc, captured.text) from None
    except Exception as exc:  # ray's AuthenticationError and kin: still one line
        if "auth" not in type(exc).__name__.lower():
            raise
        raise connection_error(address, exc, captured.text) from None


def check_reachable(address: str) -> None:
    """HOST:PORT (or ray://HOST:PORT) answers a TCP connect within CONNECT_TIMEOUT_S ("auto" is found by Ray)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    if address == "auto" or "://" in address and not address.startswith("ray://"):
        return
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise DataprunerError(f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.1:6379, the address "
                              "`ray start --head` prints), ray://HOST:10001 or auto")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise DataprunerError(f"no Ray cluster answers at {address} ({exc.strerror or exc}): start one with "
                              "`ray start --head` and pass the address it prints (--ray-address HOST:PORT, or "
                              "RAY_ADDRESS), or leave both unset to start a local Ray") from None


def use_token_like_ray_cli() -> bool:
    """What `ray start` does before it talks to a cluster: with RAY_AUTH_MODE unset, a token that exists
    (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token) turns token authentication on. Returns whether
    token authentication is now on."""
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return os.environ["RAY_AUTH_MODE"].lower() == "token"
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return False
    return maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


@contextmanager
def connect_timeout() -> Iterator[None]:
    """Ray waits ~20 s for a GCS that refuses it; CONNECT_TIMEOUT_S is enough (the user's value wins)."""
    name = "RAY_gcs_server_port_wait_time_s"
    if name in os.environ:
        yield
        return
    os.environ[name] = str(CONNECT_TIMEOUT_S)
    try:
        yield
    finally:
        os.environ.pop(name, None)


class _Captured:
    text = ""


@contextmanager
def quiet_stderr() -> Iterator[_Captured]:
    """Hold what is written to fd 2 (Ray's C++ core logs a retry line a second while it is refused):
    shown as it was when the block succeeds, dropped when it fails (the error says it in one line)."""
    captured = _Captured()
    try:
        fd = os.dup(2)
    except OSError:
        yield captured
        return
    with tempfile.TemporaryFile() as hold:
        os.dup2(hold.fileno(), 2)
        ok = False
        try:
            yield captured
            ok = True
        finally:
            os.dup2(fd, 2)
            os.close(fd)
            hold.seek(0)
            data = hold.read()
            captured.text = data.decode(errors="replace")
            if ok and data:
                os.write(2, data)


def connection_error(address: str | None, exc: BaseException, stderr: str) -> DataprunerError:
    chain, cause = [], exc
    while cause is not None:
        chain.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    seen = " ".join(chain) + " " + stderr
    where = f"the Ray cluster at {address}" if address else "a local Ray"
    if "InvalidAuthToken" in seen or "Unauthenticated" in seen or "token" in seen.lower() and "auth" in seen.lower():
        return DataprunerError(f"{where} refused this machine's authentication token (or it has none): {AUTH_HINT}")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataprunerError(f"cannot connect to {where} ({first}): check --ray-address / RAY_ADDRESS "
                           f"(the address `ray start --head` prints); {AUTH_HINT}")


class Worker:
    """A Ray actor: the task's setup once, then batches of parts. A GPU embed actor takes its decoded
    batches from CPU decode tasks (decode_feed) instead of decode workers of its own."""

    def __init__(self, task, remote_decode: bool = False, log_level: int = logging.NOTSET):
        follow_driver(log_level)  # before the setup: loading the model is what libraries warn about
        self.task, self.state = task, task.setup()
        if remote_decode and self.state is not None:
            from datapruner.embed.embedding import EmbedState

            self.state = EmbedState(self.state, decode_feed)

    def run(self, parts: list[str]) -> list:
        return list(self.task(self.state, parts))


DECODE_CPUS = 1  # per decode task: one shard, read and decoded in order
DECODE_AHEAD = 4  # batches a decode task may hold unconsumed in the object store


def decode_feed(tasks: list, decoder, batch_size: int):
    """The shards' decoded batches, shard after shard, from one Ray CPU task per shard (all submitted at
    once, each a streaming generator): decoding runs on any CPU of the cluster, apart from the GPU actors,
    with as many shards in flight as the call holds. A failed decode task fails the actor's call, which
    Ray retries; parts already written are skipped."""
    import ray

    remote = ray.remote(decode_shard).options(num_cpus=DECODE_CPUS, num_returns="streaming", max_retries=0,
                                              _generator_backpressure_num_objects=DECODE_AHEAD,
                                              **storage_runtime_env())
    streams = [remote.remote(task, decoder, batch_size) for task in tasks]
    try:
        for stream in streams:
            for ref in stream:
                yield ray.get(ref)
    finally:
        for stream in streams:  # the call stopped early (an error, a cancel): stop decoding
            ray.cancel(stream)


def decode_shard(task, decoder, batch_size: int):
    """A Ray decode task's body: one shard's batches, as the local decode workers make them."""
    from datapruner.embed.stream import collated, shard_batches

    for batch in shard_batches(task, decoder, batch_size):
        yield collated(batch)


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
        env = storage_runtime_env()
        if task.has_setup:
            pool = start_actors(task, self.cfg, len(batches), env)
            try:
                return collect(pool.map_unordered(batches), len(parts), desc, progress)
            finally:
                pool.kill_all()
        remote = ray.remote(run_task).options(num_cpus=self.cfg.ray_num_cpus_per_task, max_retries=RETRIES, **env)
        task_ref = ray.put(task)
        refs = [remote.remote(task_ref, batch) for batch in batches]
        return collect(as_completed(refs), len(parts), desc, progress)


def collect(batches, total: int, desc: str, progress: bool) -> list[dict]:
    results = []
    with progress_.bar(desc, total=total, unit="part", enabled=progress) as bar:
        for batch in batches:
            results.extend(r for _, r in batch)
            bar.update(len(batch))
    return results


def as_completed(refs: list):
    import ray

    remaining = list(refs)
    try:
        while remaining:
            ready, remaining = ray.wait(remaining, num_returns=1)
            yield ray.get(ready[0])
    finally:
        for ref in remaining:  # the driver stopped (an Airflow on_kill, Ctrl-C): stop what is not done
            ray.cancel(ref)


def actor_resources(cfg: Config) -> tuple[float, float]:
    """(CPUs, GPUs) for one actor: a CPU actor's decode workers beside its model; a GPU actor decodes in
    CPU tasks of its own (decode_feed), so it holds one CPU."""
    import ray

    gpus = cfg.ray_num_gpus_per_actor
    if gpus is None:
        gpus = 1.0 if cfg.device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    if gpus > 0 and ray.cluster_resources().get("GPU", 0) == 0:
        from datapruner.errors import DataprunerError

        raise DataprunerError(f"ray_num_gpus_per_actor={gpus} but the Ray cluster has no GPUs: set it to 0 "
                              "or use --device cpu")
    cpus = cfg.ray_num_cpus_per_actor or (1 if gpus > 0 else max(1, cfg.num_workers))
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


def storage_runtime_env() -> dict:
    """The storage options the driver opens the source with (an Airflow connection's), for the tasks:
    as fsspec's environment variables in their runtime_env (which the Ray dashboard shows: on a shared
    cluster prefer credentials the nodes already have, such as instance roles)."""
    from datapruner.io.shards import storage_env

    env = storage_env()
    return {"runtime_env": {"env_vars": env}} if env else {}


def start_actors(task, cfg: Config, n_batches: int, env: dict | None = None) -> ActorPool:
    import ray

    cpus, gpus = actor_resources(cfg)
    n = actor_count(cfg, cpus, gpus, n_batches)
    remote_decode = gpus > 0 and task.step == "embed" and not cfg.embeddings
    log.info("%s: %d Ray actor(s), %s CPU and %s GPU each%s", task.step, n, cpus, gpus,
             "; decoding in Ray CPU tasks, one per shard" if remote_decode else "")
    actor = ray.remote(Worker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0, max_task_retries=0,
                                       **(env or {}))
    task_ref = ray.put(task)
    return ActorPool(lambda: actor.remote(task_ref, remote_decode, driver_level()), n, replacements=n * RETRIES)
