"""Runners run the map steps (one `map`, nothing step-specific); barrier steps run in the calling process."""

from __future__ import annotations

from datapruner.config import Config
from datapruner.errors import DataprunerError


def get_runner(cfg: Config):
    if cfg.runner == "local":
        from datapruner.runners.local import LocalRunner

        return LocalRunner(cfg)
    if cfg.runner == "ray":
        from datapruner.runners.ray import RayRunner

        return RayRunner(cfg)
    raise DataprunerError(f"unknown runner {cfg.runner!r}: use local or ray")
