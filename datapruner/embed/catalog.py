"""open_clip's model names and pretrained tags, read from its files without importing it (or torch):
the option checks run before a command reads anything, in well under a second."""

from __future__ import annotations

import ast
import importlib.util
import json
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def model_names() -> frozenset[str]:
    """open_clip.list_models() plus datapruner's configs, read from the json files; empty if unknown."""
    from datapruner.embed.model import MODEL_CONFIGS

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
