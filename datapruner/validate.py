"""Every option a command uses, checked when it starts, before anything is read or written (DESIGN §7).

`check_config(cfg, command)` raises DataprunerError with one line naming the option, the value and
what it accepts ("--keep 1.5: must be a number in [0, 1]"). Names come from the registries
(plugins.py), the orders from select/policy.py, the filter modes through filters.one_mode. The model
and its pretrained weights are checked without importing torch or open_clip: the model names are
the stems of open_clip's and datapruner's model_configs/*.json, the tags are read from the source of
open_clip/pretrained.py.

A command checks only what its steps use: a RUN-only command layers the run's recorded config, and
`write` must not fail on, say, a metric plug-in that is no longer installed.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import math
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from datapruner.config import Config
from datapruner.errors import DataprunerError

DEVICES = "auto, cpu, cuda, cuda:N"
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
RUNNERS = ("local", "ray")
RANDOM_INIT = (None, "", "none")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
SEED_MAX = 2**31 - 1  # faiss takes a C int; numpy refuses negative seeds
# Config fields with a flag of their own (named --flag in messages); the others are config-file keys.
FLAGS = {"keep", "metric", "order", "budget", "clusters", "model", "pretrained", "batch_size", "num_workers",
         "embeddings", "allow_pipe", "seed", "shard_size", "device", "runner", "ray_address", "re_embed"}
# The built-in filters' modes (the keys, checked by filters.one_mode) and the range of each value.
FILTER_RANGES = {
    "semdedup": {"eps": (0.0, 1.0), "fraction": (0.0, 1.0)},
    "clip_score": {"threshold": (-1.0, 1.0), "fraction": (0.0, 1.0)},
    "el2n": {"offset": (0.0, 1.0)},
}
# The built-in metrics' option values: choices, or (kind, low, high) with kind int, float or float>
# (a number above `low`).
METRIC_OPTION_RULES = {
    "dbp": {"neighbours": ("int", 1, None), "tau": ("float>", 0, None), "beta": ("float", 0, 1)},
    "el2n": {"models": ("int", 1, None), "epochs": ("int", 1, None), "hidden": ("int", 0, None),
             "lr": ("float>", 0, None), "batch_size": ("int", 1, None), "chunk_rows": ("int", 1, None),
             "labels": ("auto", "data", "cluster")},
    "semdedup": {"order": ("hard", "easy"), "max_rows": ("int", 1, None), "block": ("int", 1, None)},
}


def check_config(cfg: Config, command: str, src: str | None = None) -> None:
    """Raise DataprunerError for the first option `command` uses that it cannot run with.

    `command` is a command of steps.COMMANDS, a step name, "partition STEP" or "verify"; anything else
    checks every option.
    """
    steps = command_steps(command, src)
    for check in checks_for(steps, cfg):
        check(cfg)


def command_steps(command: str, src: str | None = None) -> tuple[str, ...]:
    from datapruner.steps import COMMANDS, STEP_NAMES

    if command in COMMANDS:
        return COMMANDS[command]
    if command in STEP_NAMES:
        return (command,)
    if command.startswith("partition "):
        step = command.split(" ", 1)[1]
        return ("plan", "write") if step == "write" else (step,) if step in STEP_NAMES else STEP_NAMES
    if command == "verify":
        return ("embed",) * (src is not None) + ("cluster", "assign", "fit", "score")
    return STEP_NAMES


def checks_for(steps: tuple[str, ...], cfg: Config) -> list[Callable[[Config], None]]:
    from datapruner.steps import MAP_STEPS

    uses = set(steps)
    checks: list[Callable[[Config], None]] = []
    if uses & set(MAP_STEPS):
        checks.append(check_runner)
    if "embed" in uses:
        checks += [check_reading, check_embedding]
        if not cfg.embeddings:
            checks.append(check_model)
    if uses & {"embed", "cluster", "assign", "fit"}:
        checks.append(check_device_option)
    if uses & {"cluster", "fit", "select"}:
        checks.append(check_seed)
    if "cluster" in uses:
        checks.append(check_clustering)
    if uses & {"fit", "score", "select"}:
        checks.append(check_policy)
    if "select" in uses:
        checks.append(lambda c: number(c, "keep", 0.0, 1.0))
    if uses & {"plan", "write"}:
        checks.append(lambda c: integer(c, "shard_size", 1))
    return checks


# option groups ---------------------------------------------------------------------------------------

def check_runner(cfg: Config) -> None:
    choice(cfg, "runner", RUNNERS)
    integer(cfg, "workers", 1)
    if cfg.ray_address is not None and not isinstance(cfg.ray_address, str):
        fail(cfg, "ray_address", "must be an address (host:port, auto or ray://...)")
    integer(cfg, "ray_embed_actors", 1, optional=True)
    integer(cfg, "ray_shards_per_call", 1, optional=True)
    number(cfg, "ray_num_gpus_per_actor", 0.0, None, optional=True)
    number(cfg, "ray_num_cpus_per_actor", 0.0, None, optional=True, open_low=True)
    number(cfg, "ray_num_cpus_per_task", 0.0, None, open_low=True)
    if not isinstance(cfg.ray_runtime_env, dict):
        fail(cfg, "ray_runtime_env", "must be a mapping (e.g. {working_dir: .})")


def check_reading(cfg: Config) -> None:
    for name in ("allow_pipe", "allow_unsafe_names", "re_embed"):
        if not isinstance(getattr(cfg, name), bool):
            fail(cfg, name, "must be true or false")
    for name in ("caption_field", "label_field"):
        if not isinstance(getattr(cfg, name), str) or not getattr(cfg, name):
            fail(cfg, name, "must be a json field name")
    integer(cfg, "max_image_pixels", 1)
    if cfg.embeddings is not None:
        if not isinstance(cfg.embeddings, str) or not cfg.embeddings:
            fail(cfg, "embeddings", "must be a directory of precomputed embeddings")
        from datapruner.io.ownership import local_path

        path = local_path(cfg.embeddings)
        if path is not None and not path.is_dir():
            fail(cfg, "embeddings", "no such directory (precomputed embeddings, embedding-reader layout)")


def check_embedding(cfg: Config) -> None:
    integer(cfg, "batch_size", 1)
    integer(cfg, "num_workers", 0)
    choice(cfg, "precision", PRECISIONS)
    check_seed(cfg)


def check_device_option(cfg: Config) -> None:
    check_device(cfg.device)


def check_device(device: Any) -> None:
    """auto | cpu | cuda | cuda:N; anything else is refused (embed/model.py pick_device calls this too)."""
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise DataprunerError(f"--device {device}: unknown; choose one of {DEVICES}")


def check_seed(cfg: Config) -> None:
    integer(cfg, "seed", 0, SEED_MAX)


def check_clustering(cfg: Config) -> None:
    integer(cfg, "clusters", 1, optional=True, unset="unset: sqrt(N)")
    integer(cfg, "kmeans_sample", 1, optional=True, unset="unset: 256 per centroid")
    integer(cfg, "kmeans_iters", 1)


def check_policy(cfg: Config) -> None:
    from datapruner.plugins import BUDGETS, METRICS
    from datapruner.select.policy import ORDERS

    choice(cfg, "metric", METRICS.names())
    choice(cfg, "order", ORDERS)
    choice(cfg, "budget", BUDGETS.names())
    if not isinstance(cfg.metrics, (tuple, list)):
        fail(cfg, "metrics", "must be a list of metric names")
    for name in cfg.metrics:
        if name not in METRICS.names():
            raise DataprunerError(f"metrics: {name}: unknown metric; choose one of {', '.join(METRICS.names())}")
    if not isinstance(cfg.filters, (tuple, list)):
        fail(cfg, "filters", "must be a list of {name: FILTER, KEY: VALUE}")
    for spec in cfg.filters:
        check_filter(spec)
    check_metric_options(cfg)


def check_filter(spec: Any) -> None:
    from datapruner.plugins import FILTERS
    from datapruner.select.filters import one_mode

    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise DataprunerError(f"--filter {spec}: expected NAME:KEY=VALUE[,...], e.g. semdedup:eps=0.05")
    name, options = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    text = spec_text("--filter", name, options)
    if name not in FILTERS.names():
        raise DataprunerError(f"{text}: unknown filter; choose one of {', '.join(FILTERS.names())}")
    ranges = FILTER_RANGES.get(name)
    if ranges is None:
        _plugin_check(FILTERS.get(name), options, text)
        return
    for key, value in options.items():
        if key in ranges and as_float(value) is None:
            raise DataprunerError(f"{text}: {key} must be a number in {interval(*ranges[key])}")
    try:
        mode, value = one_mode(name, options, tuple(ranges))
    except DataprunerError as exc:
        raise DataprunerError(f"{text}: {exc}") from None
    low, high = ranges[mode]
    if not low <= value <= high:
        raise DataprunerError(f"{text}: {mode} must be a number in {interval(low, high)}")


def check_metric_options(cfg: Config) -> None:
    from datapruner.plugins import METRICS

    if not isinstance(cfg.metric_options, dict):
        fail(cfg, "metric_options", "must be a mapping {metric: {option: value}}")
    for name, options in cfg.metric_options.items():
        text = spec_text("--metric-option", name, options if isinstance(options, dict) else {})
        if name not in METRICS.names():
            raise DataprunerError(f"{text}: unknown metric; choose one of {', '.join(METRICS.names())}")
        if not isinstance(options, dict):
            raise DataprunerError(f"--metric-option {name}: expected {name}:KEY=VALUE[,...]")
        metric = METRICS.get(name)()
        try:
            metric.options(cfg)  # unknown option names
        except DataprunerError as exc:
            raise DataprunerError(f"{text}: {exc}") from None
        rules = METRIC_OPTION_RULES.get(name)
        if rules is None:
            _plugin_check(metric, options, text)
            continue
        for key, value in options.items():
            _option_value(text, key, value, rules.get(key))


def _option_value(text: str, key: str, value: Any, rule: tuple | None) -> None:
    if rule is None:
        return
    if rule[0] not in ("int", "float", "float>"):
        if value not in rule:
            raise DataprunerError(f"{text}: {key} must be one of {', '.join(rule)}")
        return
    kind, low, high = rule
    x = as_float(value)
    ok = x is not None and in_range(x, low, high) and (kind != "int" or x.is_integer()) \
        and (kind != "float>" or x > low)
    if not ok:
        what = "an integer" if kind == "int" else "a number"
        raise DataprunerError(f"{text}: {key} must be {what} {bounds(low, high, open_low=kind == 'float>')}")


def _plugin_check(obj: Any, options: dict, text: str) -> None:
    """A plug-in that exposes `check_options(options)` checks its own values."""
    check = getattr(obj, "check_options", None)
    if callable(check):
        try:
            check(options)
        except (DataprunerError, ValueError, TypeError) as exc:
            raise DataprunerError(f"{text}: {exc}") from None


# model and pretrained weights (without importing torch or open_clip) ------------------------------------

def check_model(cfg: Config) -> None:
    names = model_names()
    if not isinstance(cfg.model, str) or (names and cfg.model not in names):
        close = difflib.get_close_matches(str(cfg.model), sorted(names), n=5, cutoff=0.6)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise DataprunerError(f"--model {cfg.model}: unknown open_clip model{hint}; choose a model_configs name of "
                              "open_clip or datapruner (open_clip.list_models(), e.g. ViT-B-32, datapruner-tiny)")
    check_pretrained(cfg.model, cfg.pretrained)


def check_pretrained(model: str, pretrained: Any) -> None:
    if pretrained in RANDOM_INIT:
        return
    if not isinstance(pretrained, str):
        raise DataprunerError(f"--pretrained {pretrained}: must be a tag, a checkpoint file or none")
    if pretrained.startswith("hf-hub:"):
        return
    tags = pretrained_tags()
    known = None if tags is None else tags.get(model, set())
    if known is not None and pretrained.lower().replace("-", "_") in known:
        return
    if os.path.isfile(pretrained):
        return
    if "/" in pretrained or os.sep in pretrained or pretrained.lower().endswith(CHECKPOINT_SUFFIXES):
        raise DataprunerError(f"--pretrained {pretrained}: no such checkpoint file")
    if known is None:
        return  # open_clip's tag table could not be read: open_clip decides when the model loads
    if not known:
        raise DataprunerError(f"--pretrained {pretrained}: {model} has no pretrained tags; use none (random init) "
                              "or a checkpoint file")
    raise DataprunerError(f"--pretrained {pretrained}: not a pretrained tag of {model}; choose one of "
                          f"{', '.join(sorted(known))}, none (random init) or a checkpoint file")


@lru_cache(maxsize=1)
def model_names() -> frozenset[str]:
    """open_clip.list_models() plus datapruner's configs, read from the json files; empty if unknown."""
    folders = [Path(__file__).resolve().parent / "model_configs"]
    package = _open_clip_dir()
    if package is None:
        return frozenset()
    folders.append(package / "model_configs")
    names = set()
    for folder in folders:
        for path in folder.glob("*.json"):
            try:
                config = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(config, dict) and all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg")):
                names.add(path.stem)
    return frozenset(names)


@lru_cache(maxsize=1)
def pretrained_tags() -> dict[str, set[str]] | None:
    """{model: its pretrained tags} parsed from open_clip/pretrained.py; None when it cannot be read."""
    package = _open_clip_dir()
    try:
        return parse_pretrained_tags((package / "pretrained.py").read_text()) if package else None
    except (OSError, SyntaxError, ValueError):
        return None


def parse_pretrained_tags(source: str) -> dict[str, set[str]] | None:
    """The `_PRETRAINED` table of open_clip's pretrained.py: module-level `NAME = dict(tag=_pcfg(...), ...)`
    tables and a `_PRETRAINED = {"model": NAME | dict(...)}` literal; `-quickgelu` variants for the tags
    whose config says quick_gelu=True, as open_clip adds them."""
    tables: dict[str, dict[str, bool]] = {}
    models: dict[str, dict[str, bool]] | None = None
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if name == "_PRETRAINED" and isinstance(node.value, ast.Dict):
            models = {}
            for key, value in zip(node.value.keys, node.value.values):
                table = tables.get(value.id) if isinstance(value, ast.Name) else _tag_table(value)
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)) or table is None:
                    return None
                models[key.value] = table
        else:
            table = _tag_table(node.value)
            if table is not None:
                tables[name] = table
    if not models:
        return None
    tags = {model: set(table) for model, table in models.items()}
    for model, table in models.items():
        quick = {tag for tag, quick_gelu in table.items() if quick_gelu}
        if quick:
            tags.setdefault(f"{model}-quickgelu", set()).update(quick)
    return tags


def _tag_table(node: ast.AST) -> dict[str, bool] | None:
    """`dict(tag=cfg, ...)` or `{"tag": cfg}` → {tag: quick_gelu}; None for anything else."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(kw.arg is None for kw in node.keywords):
            return None
        return {kw.arg: _quick_gelu(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict) and node.keys and all(isinstance(k, ast.Constant) and isinstance(k.value, str)
                                                         for k in node.keys):
        return {k.value: _quick_gelu(v) for k, v in zip(node.keys, node.values)}
    return None


def _quick_gelu(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and any(kw.arg == "quick_gelu" and isinstance(kw.value, ast.Constant)
                                              and kw.value.value is True for kw in node.keywords)


def _open_clip_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("open_clip")  # finds the package without importing it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


# one-value checks ----------------------------------------------------------------------------------------

def label(name: str) -> str:
    return f"--{name.replace('_', '-')}" if name in FLAGS else name


def fail(cfg: Config, name: str, what: str) -> None:
    raise DataprunerError(f"{label(name)} {getattr(cfg, name)}: {what}")


def choice(cfg: Config, name: str, choices) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, str) or value not in choices:
        fail(cfg, name, f"unknown; choose one of {', '.join(choices)}")


def integer(cfg: Config, name: str, low: int, high: int | None = None, optional: bool = False,
            unset: str = "") -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not in_range(value, low, high):
        extra = f" (or {unset})" if unset else ""
        fail(cfg, name, f"must be an integer {bounds(low, high)}{extra}")


def number(cfg: Config, name: str, low: float, high: float | None, optional: bool = False,
           open_low: bool = False) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and in_range(value, low, high)
    if not ok or (open_low and value == low):
        fail(cfg, name, f"must be a number {bounds(low, high, open_low)}")


def in_range(value: float, low: float | None, high: float | None) -> bool:
    return not math.isnan(value) and (low is None or value >= low) and (high is None or value <= high)


def bounds(low: float | None, high: float | None, open_low: bool = False) -> str:
    if high is None:
        return f"> {low}" if open_low else f">= {low}"
    return f"in {interval(low, high)}"


def interval(low: float, high: float) -> str:
    return f"[{low:g}, {high:g}]" if isinstance(low, float) or isinstance(high, float) else f"[{low}, {high}]"


def as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def spec_text(flag: str, name: str, options: dict) -> str:
    return f"{flag} {name}:" + ",".join(f"{k}={v}" for k, v in options.items()) if options else f"{flag} {name}"
