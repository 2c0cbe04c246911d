"""Every option a command uses, checked when it starts, before anything is read or written (docs/design.md, Bad input).

`check_config(cfg, command)` raises DataprunerError with one line naming the option, the value and
what it accepts ("--keep 1.5: must be a number in [0, 1]"). Names come from the registries
(plugins.py), the orders from select/policy.py; filters and metrics check their own option values
(filters.one_mode, Metric.check_options). The model
and its pretrained weights are checked without importing torch or open_clip (embed/catalog.py).

A command checks only what its steps use: a RUN-only command layers the run's recorded config, and
`write` must not fail on, say, a metric plug-in that is no longer installed.
"""

from __future__ import annotations

import difflib
import math
import os
from typing import Any, Callable

from datapruner.config import Config
from datapruner.devices import check_device
from datapruner.errors import DataprunerError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
RUNNERS = ("local", "ray")
EMBEDDINGS_LAYOUTS = ("auto", "embedding-reader", "laion", "datacomp")
JOIN_KEYS = ("auto", "key", "image_path", "uid", "url")
RANDOM_INIT = (None, "", "none")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
SEED_MAX = 2**31 - 1  # faiss takes a C int; numpy refuses negative seeds
# Config fields with a flag of their own (named --flag in messages); the others are config-file keys.
FLAGS = {"keep", "metric", "order", "budget", "clusters", "model", "pretrained", "batch_size", "num_workers",
         "embeddings", "allow_pipe", "seed", "shard_size", "device", "runner", "ray_address", "re_embed",
         "embeddings_layout", "join_key", "embeddings_column", "with_embeddings"}


def check_config(cfg: Config, command: str, src: str | None = None) -> None:
    """Raise DataprunerError for the first option `command` uses that it cannot run with.

    `command` is a command of steps.COMMANDS, a step name, "partition STEP" or "verify"; anything else
    checks every option.
    """
    steps = command_steps(command, src)
    for check in checks_for(steps, cfg):
        check(cfg)


def command_steps(command: str, src: str | None = None) -> tuple[str, ...]:
    from datapruner.steps.table import COMMANDS, STEP_NAMES

    if command in COMMANDS:
        return COMMANDS[command]
    if command in STEP_NAMES:
        return (command,)
    if command.startswith("partition "):
        step = command.split(" ", 1)[1]
        return ("plan", "write") if step == "write" else (step,) if step in STEP_NAMES else STEP_NAMES
    if command == "verify":
        return ("embed",) * (src is not None) + ("cluster", "assign", "fit", "measure")
    return STEP_NAMES


def checks_for(steps: tuple[str, ...], cfg: Config) -> list[Callable[[Config], None]]:
    from datapruner.steps.table import MAP_STEPS

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
    if uses & {"fit", "measure", "select"}:
        checks.append(check_policy)
    if "select" in uses:
        checks.append(lambda c: number(c, "keep", 0.0, 1.0))
    if uses & {"plan", "write"}:
        checks.append(check_output_names)
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
    if cfg.runner == "ray" and isinstance(cfg.device, str) and cfg.device.startswith("cuda:"):
        fail(cfg, "device", "names one GPU, but on Ray each actor sees only the GPU Ray gives it: use cuda or auto")


def check_reading(cfg: Config) -> None:
    for name in ("allow_pipe", "allow_unsafe_names", "re_embed"):
        if not isinstance(getattr(cfg, name), bool):
            fail(cfg, name, "must be true or false")
    for name in ("caption_field", "label_field"):
        if not isinstance(getattr(cfg, name), str) or not getattr(cfg, name):
            fail(cfg, name, "must be a json field name")
    integer(cfg, "max_image_pixels", 1)
    integer(cfg, "max_full_decode_pixels", 1)
    if cfg.embeddings is not None:
        if not isinstance(cfg.embeddings, str) or not cfg.embeddings:
            fail(cfg, "embeddings", "must be a directory of precomputed embeddings")
        from datapruner.io.ownership import local_path

        path = local_path(cfg.embeddings)
        if path is not None and not path.is_dir():
            fail(cfg, "embeddings", "no such directory (precomputed embeddings, embedding-reader layout)")
        choice(cfg, "embeddings_layout", EMBEDDINGS_LAYOUTS)
        choice(cfg, "join_key", JOIN_KEYS)
        if cfg.embeddings_column is not None and (not isinstance(cfg.embeddings_column, str) or not cfg.embeddings_column):
            fail(cfg, "embeddings_column", "must be the name of an array in the npz files (e.g. l14_img)")


def check_output_names(cfg: Config) -> None:
    integer(cfg, "shard_size", 1)
    integer(cfg, "output_digits", 1, 12)
    prefix = cfg.output_prefix
    if not isinstance(prefix, str) or "/" in prefix or "\\" in prefix or prefix.startswith("."):
        fail(cfg, "output_prefix", "must be a file name prefix (no slashes, not starting with a dot)")
    if not isinstance(cfg.with_embeddings, bool):
        fail(cfg, "with_embeddings", "must be true or false")


def check_embedding(cfg: Config) -> None:
    integer(cfg, "batch_size", 1)
    integer(cfg, "num_workers", 0)
    choice(cfg, "precision", PRECISIONS)
    if cfg.embed_text is not None and not isinstance(cfg.embed_text, bool):
        fail(cfg, "embed_text", "must be true, false or unset (text embeddings when the policy uses them)")
    check_seed(cfg)


def check_device_option(cfg: Config) -> None:
    check_device(cfg.device)


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
    from datapruner.select.filters import MODES, one_mode

    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise DataprunerError(f"--filter {spec}: expected NAME:KEY=VALUE[,...], e.g. semdedup:eps=0.05")
    name, options = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    text = spec_text("--filter", name, options)
    if name not in FILTERS.names():
        raise DataprunerError(f"{text}: unknown filter; choose one of {', '.join(FILTERS.names())}")
    check = (lambda o: one_mode(name, o)) if name in MODES else getattr(FILTERS.get(name), "check_options", None)
    _checked_by(check, options, text)


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
        _checked_by(metric.options, cfg, text)  # unknown option names
        _checked_by(getattr(metric, "check_options", None), options, text)


def _checked_by(check: Callable | None, value: Any, text: str) -> None:
    """`check(value)`, its complaint prefixed with the option as the user wrote it (plug-ins may have none)."""
    if not callable(check):
        return
    try:
        check(value)
    except (DataprunerError, ValueError, TypeError) as exc:
        raise DataprunerError(f"{text}: {exc}") from None


# model and pretrained weights (without importing torch or open_clip) ------------------------------------

def check_model(cfg: Config) -> None:
    from datapruner.embed.catalog import model_names

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
    from datapruner.embed.catalog import pretrained_tags

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


def spec_text(flag: str, name: str, options: dict) -> str:
    return f"{flag} {name}:" + ",".join(f"{k}={v}" for k, v in options.items()) if options else f"{flag} {name}"
