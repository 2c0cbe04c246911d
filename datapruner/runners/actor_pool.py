"""A pool of Ray actors that outlives a lost node.

A batch goes only to an actor that has started (its `__ray_ready__` answered), so an actor Ray cannot
place (its node is gone, the rest of the cluster is full) holds no work while the others finish it. A
call whose actor dies (node lost, OOM kill) goes to another actor: its finished parts are marked, so the
new call redoes only the rest. Each death starts one replacement, up to `replacements` in all; it takes
work once Ray places it. Ray's own actor restarts are off: a restart waits for room on the cluster, and
the call waiting on it would wait with it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

from datapruner.errors import DataprunerError

log = logging.getLogger(__name__)
PLACE_TIMEOUT_S = 600  # after a death, with no actor working: how long to wait for a replacement to start


class ActorPool:
    def __init__(self, start_actor: Callable[[], Any], n: int, replacements: int):
        self.start_actor, self.replacements = start_actor, replacements
        self.actors: list = []
        self.starting: dict = {}  # the `__ray_ready__` call of each actor not yet started -> the actor
        self.deaths: list[BaseException] = []
        for _ in range(n):
            self.start_one()

    def start_one(self) -> None:
        actor = self.start_actor()
        self.actors.append(actor)
        self.starting[actor.__ray_ready__.remote()] = actor

    def map_unordered(self, batches: list) -> Iterator[Any]:
        """Each batch's result as its call finishes."""
        todo, idle, running = list(reversed(batches)), [], {}
        while todo or running:
            ref = self.next_done(list(running) + list(self.starting), bool(running))
            if ref in self.starting:
                actor = self.starting.pop(ref)
                if self.outcome(ref)[0]:
                    idle.append(actor)
            else:
                actor, batch = running.pop(ref)
                ok, result = self.outcome(ref)
                if ok:
                    idle.append(actor)
                    yield result
                else:
                    todo.append(batch)
            while idle and todo:
                actor, batch = idle.pop(), todo.pop()
                running[actor.run.remote(batch)] = (actor, batch)

    def next_done(self, refs: list, working: bool):
        import ray

        if not refs:
            raise self.all_dead()
        timeout = None if working or not self.deaths else PLACE_TIMEOUT_S
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            raise DataprunerError(f"no Ray actor could be started within {PLACE_TIMEOUT_S} s after "
                                  f"{len(self.deaths)} died (last: {first_line(self.deaths[-1])}): the cluster has no room "
                                  "for one; add a node or lower ray_num_cpus_per_actor, then rerun (finished "
                                  "parts are kept)")
        return ready[0]

    def outcome(self, ref) -> tuple[bool, Any]:
        """(True, the call's result), or (False, None) when its actor died: counted, and replaced while
        allowed. An actor whose setup raised is an error: every replacement would raise it too."""
        import ray

        try:
            return True, ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            if exc.actor_init_failed:
                raise
            self.deaths.append(exc)
            log.warning("a Ray actor died (%s); its batch goes to another actor", first_line(exc))
            if len(self.deaths) <= self.replacements:
                self.start_one()
            return False, None

    def all_dead(self) -> DataprunerError:
        last = first_line(self.deaths[-1]) if self.deaths else "none started"
        return DataprunerError(f"every Ray actor died ({len(self.deaths)} in all; last: {last}); rerun to "
                               "continue (finished parts are kept)")

    def kill_all(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)  # free their CPUs/GPUs for the next step


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
