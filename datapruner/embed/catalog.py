"""open_clip's model names and pretrained tags, read from its files without importing it (or torch):
the option checks run before a command reads anything, in well under a second."""

from __future__ import annotations

import ast
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

MODEL_CONFIGS = Path(__file__).resolve().parent.parent / "model_configs"  # datapruner's own open_clip configs


@lru_cache(maxsize=1)
def model_names() -> frozenset[str]:
    """open_clip.list_models() plus datapruner's configs, read from the json files; empty if unknown."""
    folders = [MODEL_CONFIGS]
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
def pretrained_table() -> dict[str, dict[str, dict]] | None:
    """{model: {tag: the constant arguments of its config (hf_hub, url, quick_gelu, …)}} parsed from
    open_clip/pretrained.py; None when it cannot be read."""
    package = _open_clip_dir()
    try:
        return parse_pretrained_table((package / "pretrained.py").read_text()) if package else None
    except (OSError, SyntaxError, ValueError):
        return None


def pretrained_tags() -> dict[str, set[str]] | None:
    """{model: its pretrained tags}, as open_clip.list_pretrained() has them; None when unknown."""
    table = pretrained_table()
    return None if table is None else tags_of(table)


def pretrained_entry(model: str, tag: str) -> dict | None:
    """The config arguments of `model`'s `tag` (cleaned as open_clip cleans tags), or None."""
    table = pretrained_table() or {}
    tags = table.get(model) or table.get(model.removesuffix("-quickgelu")) or {}
    wanted = _clean(tag)
    return next((cfg for name, cfg in tags.items() if _clean(name) == wanted), None)


def parse_pretrained_tags(source: str) -> dict[str, set[str]] | None:
    table = parse_pretrained_table(source)
    return None if table is None else tags_of(table)


def tags_of(table: dict[str, dict[str, dict]]) -> dict[str, set[str]]:
    """Each model's tags, and the `-quickgelu` variants of the tags whose config says quick_gelu=True, as
    open_clip adds them."""
    tags = {model: set(entries) for model, entries in table.items()}
    for model, entries in table.items():
        quick = {tag for tag, cfg in entries.items() if cfg.get("quick_gelu") is True}
        if quick:
            tags.setdefault(f"{model}-quickgelu", set()).update(quick)
    return tags


def parse_pretrained_table(source: str) -> dict[str, dict[str, dict]] | None:
    """The `_PRETRAINED` table of open_clip's pretrained.py: module-level `NAME = dict(tag=_pcfg(...), ...)`
    tables and a `_PRETRAINED = {"model": NAME | dict(...)}` literal."""
    tables: dict[str, dict[str, dict]] = {}
    models: dict[str, dict[str, dict]] | None = None
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
    return models or None


def _tag_table(node: ast.AST) -> dict[str, dict] | None:
    """`dict(tag=cfg, ...)` or `{"tag": cfg}` → {tag: cfg's constant keyword arguments}; None for anything else."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(kw.arg is None for kw in node.keywords):
            return None
        return {kw.arg: _constants(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict) and node.keys and all(isinstance(k, ast.Constant) and isinstance(k.value, str)
                                                         for k in node.keys):
        return {k.value: _constants(v) for k, v in zip(node.keys, node.values)}
    return None


def _constants(node: ast.AST) -> dict:
    if not isinstance(node, ast.Call):
        return {}
    return {kw.arg: kw.value.value for kw in node.keywords if kw.arg and isinstance(kw.value, ast.Constant)}


def _clean(tag: str) -> str:
    return tag.lower().replace("-", "_")  # open_clip's _clean_tag


def _open_clip_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("open_clip")  # finds the package without importing it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])
