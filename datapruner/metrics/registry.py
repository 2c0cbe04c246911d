"""Metrics by name. Third-party metrics register through the `datapruner.metrics` entry point group."""

from __future__ import annotations

from importlib import import_module, metadata

from datapruner.metrics.base import Metric

_METRICS: dict[str, type[Metric]] = {}
_BUILTIN = ("prototypicality", "random", "clip_score", "dbp", "el2n", "semdedup")


def register(cls: type[Metric]) -> type[Metric]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _METRICS[cls.name] = cls
    return cls


def _load_all() -> None:
    for module in _BUILTIN:
        import_module(f"datapruner.metrics.{module}")
    for ep in metadata.entry_points(group="datapruner.metrics"):
        if ep.name not in _METRICS:
            register(ep.load())


def get_metric(name: str) -> Metric:
    _load_all()
    if name not in _METRICS:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(available())}")
    return _METRICS[name]()


def available() -> list[str]:
    _load_all()
    return sorted(_METRICS)
