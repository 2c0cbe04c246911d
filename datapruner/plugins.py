"""Plug-in registries by name: metrics, filters and budgets, each with its own entry-point group.

Built-ins are named here as "module:attribute" and imported on first use, so no module imports
its plug-ins back for a registration side effect. A separate package adds one through its entry
points (`datapruner.metrics`, `datapruner.filters`, `datapruner.budgets`); code in the same process
can call `register`.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Any

from datapruner.errors import DataprunerError


class Registry:
    def __init__(self, kind: str, group: str, builtins: dict[str, str]):
        self.kind, self.group = kind, group
        self._builtins = dict(builtins)
        self._loaded: dict[str, Any] = {}
        self._entry_points_read = False

    def register(self, name: str, obj: Any = None):
        """register(name, obj), or @register(name) as a decorator."""
        if obj is None:
            return lambda target: self.register(name, target)
        self._loaded[name] = obj
        return obj

    def names(self) -> list[str]:
        self._read_entry_points()
        return sorted({*self._builtins, *self._loaded})

    def get(self, name: str) -> Any:
        if name not in self._loaded and name in self._builtins:
            module, _, attr = self._builtins[name].partition(":")
            self._loaded[name] = getattr(import_module(module), attr)
        if name not in self._loaded:
            self._read_entry_points()
        if name not in self._loaded:
            raise DataprunerError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._loaded[name]

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        self._entry_points_read = True
        for ep in metadata.entry_points(group=self.group):
            self._loaded.setdefault(ep.name, ep.load())


METRICS = Registry("metric", "datapruner.metrics", {
    "prototypicality": "datapruner.metrics.prototypicality:Prototypicality",
    "random": "datapruner.metrics.random:Random",
    "clip_score": "datapruner.metrics.clip_score:ClipScore",
    "dbp": "datapruner.metrics.dbp:DBP",
    "el2n_probe": "datapruner.metrics.el2n:EL2N",
    "semdedup": "datapruner.metrics.semdedup:SemDeDup",
})
# fn(table, alive, options, cfg) -> bool mask of the alive rows the filter removes
FILTERS = Registry("filter", "datapruner.filters", {
    "semdedup": "datapruner.select.filters:semdedup_filter",
    "clip_score": "datapruner.select.filters:clip_score_filter",
    "el2n_probe": "datapruner.select.filters:el2n_offset_filter",
    "el2n_student": "datapruner.select.filters:student_el2n_offset_filter",
})
# fn(table, alive, k, cfg) -> None (global), per-cluster quotas, or a per-cluster table with a "quota" column
BUDGETS = Registry("budget", "datapruner.budgets", {
    "global": "datapruner.select.budgets:global_budget",
    "cluster": "datapruner.select.budgets:uniform_cluster_budget",
    "dbp": "datapruner.select.dbp:dbp_budget",
})
