"""The CLI's option values parsed: NAME:KEY=VALUE filters and metric options, comma lists, KD weights."""

from __future__ import annotations

from typing import Optional

import yaml

from datapruner.config import Config, yaml_problem
from datapruner.errors import DataprunerError


def with_metric_options(cfg: Config, specs: Optional[list[str]]) -> Config:
    """--metric-option values merged over the config's metric_options."""
    if not specs:
        return cfg
    from datapruner.metrics.registry import available

    merged = {name: dict(options) for name, options in cfg.metric_options.items()}

    for text in specs:
        spec = parse(text, "--metric-option")
        name = spec.pop("name")
        if name not in available() or not spec:
            raise DataprunerError(f"--metric-option {text}: expected METRIC:KEY=VALUE[,...] with METRIC one of "
                                  f"{', '.join(available())}")
        merged.setdefault(name, {}).update(spec)
    return cfg.replace(metric_options=merged)


def filters(specs: Optional[list[str]]) -> Optional[list[dict]]:
    """--filter values as Config.filters entries (None: keep the config file's)."""
    if not specs:
        return None
    return [parse(s, "--filter") for s in specs]


def parse(text: str, flag: str) -> dict:
    """NAME:KEY=VALUE[,...] (select/filters.py parse_filter), a value that is not YAML as a one-line error."""
    from datapruner.select.filters import parse_filter

    try:
        return parse_filter(text, flag)
    except yaml.YAMLError as exc:
        raise DataprunerError(f"{flag} {text}: a value is not valid YAML ({yaml_problem(exc)})") from None


def csv(value: str, cast=str, flag: str = "") -> tuple:
    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise DataprunerError(f"{flag} {value}: {exc}".strip()) from None


def alpha(value: str):
    return "auto" if value == "auto" else float(value)
