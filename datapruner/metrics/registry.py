"""Metrics by name (datapruner/plugins.py holds the registries); `register` is the public way to add one."""

from __future__ import annotations

from datapruner.metrics.base import Metric
from datapruner.plugins import METRICS


def register(cls: type[Metric]) -> type[Metric]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    return METRICS.register(cls.name, cls)


def get_metric(name: str) -> Metric:
    return METRICS.get(name)()


def available() -> list[str]:
    return METRICS.names()
