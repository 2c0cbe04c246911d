"""The resolved configuration of a run: defaults, then a YAML preset, then explicit overrides."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datapruner.errors import DataprunerError

log = logging.getLogger(__name__)
# deprecated metric / filter names → their current name (warned once per Config built with them)
ALIASES = {"el2n": "el2n_probe"}


@dataclass(frozen=True)
class Config:
    # reading
    allow_pipe: bool = False
    embeddings: str | None = None  # precomputed embeddings dir: skip embed (layouts: embed/layouts.py)
    embeddings_layout: str = "auto"  # auto (found from the files) | embedding-reader | laion | datacomp
    join_key: str = "auto"  # how embeddings rows meet shard samples: auto | key | image_path | uid | url
    embeddings_column: str | None = None  # datacomp npz array to use, e.g. l14_img (None: the only image one)
    re_embed: bool = False  # replace a run's embeddings when the embed inputs changed (else refused)
    caption_field: str = "caption"  # json field used when a sample has no txt member
    label_field: str = "label"  # json field used when a sample has no cls member
    max_image_pixels: int = 200_000_000  # larger images are invalid (read from the header, before decoding)
    # images in a format decoded only at full size (all but JPEG: PNG, WebP, …) over this many pixels are
    # invalid: each costs seconds of a core and 4 bytes a pixel (JPEGs decode at a reduced scale)
    max_full_decode_pixels: int = 4096 * 4096
    allow_unsafe_names: bool = False  # member names that would escape an extraction dir (../x, /x) are invalid
    # embedding
    model: str = "ViT-B-32"
    pretrained: str = "laion2b_s34b_b79k"  # a tag, a local checkpoint file, or "none"
    batch_size: int = 256
    num_workers: int = 2
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | bf16 | fp16 | fp32; auto: bf16 on a GPU or CPU that has it (else fp16 / fp32)
    # text embeddings: None (auto) when the policy or `metrics` uses them (clip_score); true: whenever
    # captions exist; false: never
    embed_text: bool | None = None
    # clustering
    clusters: int | None = None  # None: round(sqrt(N))
    kmeans_sample: int | None = None  # None: 256 points per centroid
    kmeans_iters: int = 20
    seed: int = 0
    # scoring and selection
    metric: str = "prototypicality"
    order: str = "hard"  # hard | easy | random
    budget: str = "global"  # global | cluster
    filters: tuple[dict, ...] = ()  # e.g. ({"name": "semdedup", "eps": 0.05},)
    metric_options: dict = field(default_factory=dict)  # {metric_name: {option: value}}
    metrics: tuple[str, ...] = ()  # more metrics to score beside the policy's (columns score_<name>)
    keep: float = 0.3
    # writing
    shard_size: int = 10000
    output_digits: int = 6  # pruned shards are {output_prefix}{j:0{output_digits}d}.tar (img2dataset: 5)
    output_prefix: str = ""
    with_embeddings: bool = False  # add {key}.img_emb.npy (and .txt_emb.npy) to each written sample
    # running
    runner: str = "local"  # local | ray
    ray_address: str | None = None
    workers: int = 1  # local processes for the score and write map steps
    ray_embed_actors: int | None = None  # None: as many as the cluster's GPUs (or CPUs) hold
    ray_num_gpus_per_actor: float | None = None  # None: 1 when the cluster has GPUs, else 0; 0.5 = two per GPU
    ray_num_cpus_per_actor: float | None = None  # None: max(1, num_workers), the actor's decode workers
    ray_num_cpus_per_task: float = 1  # score and write map tasks
    ray_shards_per_call: int | None = None  # shards per embed actor call; None: max(1, num_workers)
    ray_runtime_env: dict = field(default_factory=dict)  # passed to ray.init when set (e.g. {"working_dir": "."})

    def __post_init__(self):
        """Old metric and filter names (ALIASES) are read as the new ones, with a deprecation warning. (Through
        __dict__: building a Config reads no field, for steps/describe.py's count of the fields a step reads.)"""
        given = self.__dict__
        metrics, options, filters = given["metrics"], given["metric_options"], given["filters"]
        renamed = {
            "metric": _current(given["metric"]),
            "metrics": tuple(_current(m) for m in metrics) if isinstance(metrics, (tuple, list)) else metrics,
            "metric_options": {_current(k): v for k, v in options.items()} if isinstance(options, dict) else options,
            "filters": tuple({**f, "name": _current(f["name"])} if isinstance(f, dict) and "name" in f else f
                             for f in filters) if isinstance(filters, (tuple, list)) else filters,
        }
        for name, value in renamed.items():
            if value != given[name]:
                object.__setattr__(self, name, value)

    def replace(self, **overrides: Any) -> "Config":
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise DataprunerError(f"unknown config option(s): {', '.join(sorted(unknown))}")
        # a value of the wrong shape (a config file's `filters: semdedup`) is kept as given, for
        # datapruner.validate to name it when the command starts
        if "filters" in overrides and isinstance(overrides["filters"] or (), (list, tuple)):
            overrides["filters"] = tuple(dict(f) if isinstance(f, dict) else f for f in overrides["filters"] or ())
        if "metrics" in overrides and isinstance(overrides["metrics"] or (), (list, tuple)):
            overrides["metrics"] = tuple(overrides["metrics"] or ())
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def options_for(self, metric: str) -> dict:
        return dict(self.metric_options.get(metric, {}))


def _current(name):
    if isinstance(name, str) and name in ALIASES:
        import warnings

        message = f"metric/filter name {name!r} is deprecated: it is {ALIASES[name]!r}"
        warnings.warn(message, DeprecationWarning, stacklevel=4)
        log.warning(message)
        return ALIASES[name]
    return name


def load_config(path: str | Path | list | tuple | None = None, base: dict | None = None, **overrides: Any) -> Config:
    """Defaults, then `base` (what a command on a run inherits from its recorded config), then the YAML file(s) at `path` (one path or a
    list: each later file overrides the earlier ones, mappings such as metric_options merged key by key),
    then the overrides that are not None."""
    paths = [] if path is None else [path] if isinstance(path, (str, Path)) else list(path)
    values: dict = {}
    for one in paths:
        values = _merged(values, _read_config_file(one))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(Config)} - {"re_embed"}
    return Config().replace(**{**{k: v for k, v in (base or {}).items() if k in known}, **values})


# A command on an existing run (cluster, select, write, report, verify) takes only these from the config
# its run.json records (docs/design.md, Ownership). Everything else is this command's flags and config
# files, or the default: the selection policy (metric, order, budget, filters, metric_options, metrics,
# keep), the seed, where and how the work runs, and every permission (allow_pipe, allow_unsafe_names,
# runner, ray_address, ray_runtime_env): what a run directory records never widens what runs.
EMBED_INPUTS = ("model", "pretrained", "precision", "caption_field", "label_field", "max_image_pixels",
                "max_full_decode_pixels", "embed_text", "embeddings", "embeddings_layout", "join_key",
                "embeddings_column")  # what the run's embeddings are
RUN_LAYOUT = ("clusters", "kmeans_sample", "kmeans_iters", "shard_size", "output_digits", "output_prefix")


def inherited(recorded: dict | None) -> dict:
    """What a command on an existing run takes from its recorded config: the embed inputs and the layout
    of its clusters and pruned shards."""
    known = {f.name for f in dataclasses.fields(Config)}
    return {k: v for k, v in (recorded or {}).items() if k in known and k in EMBED_INPUTS + RUN_LAYOUT}


def with_recorded_embed_inputs(cfg: Config, recorded: dict | None) -> Config:
    """`cfg` with the run's embed inputs as recorded, for a command that embeds nothing: a run's embeddings
    are what they are, whatever its config files say (a warning names what they asked otherwise)."""
    kept = {k: v for k, v in inherited(recorded).items() if k in EMBED_INPUTS}
    ignored = sorted(k for k, v in kept.items() if getattr(cfg, k) != v)
    if ignored:
        log.warning("the run was embedded with %s: this command's %s do(es) not change its embeddings "
                    "(`datapruner embed SRC --out RUN --re-embed` does)",
                    ", ".join(f"{k}={kept[k]!r}" for k in ignored), ", ".join(ignored))
    return cfg.replace(**kept)


def _read_config_file(path: str | Path) -> dict:
    if not Path(path).is_file():
        raise DataprunerError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataprunerError(f"--config {path}: not valid YAML ({yaml_problem(exc)})") from None
    if not isinstance(values, dict):
        raise DataprunerError(f"config file {path} must hold a mapping of option: value")
    return values


def _merged(earlier: dict, later: dict) -> dict:
    """`later` over `earlier`; where both hold a mapping, merged key by key (lists are replaced)."""
    out = dict(earlier)
    for key, value in later.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def yaml_problem(exc) -> str:
    """Where a YAML text went wrong, for a one-line message."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(exc, 'problem', None) or exc}{where}"
