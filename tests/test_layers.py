"""The package's import graph, read from the source with ast (function-local imports included): no circle,
and no module imports a layer above its own."""

import ast
from pathlib import Path

import datapruner

ROOT = Path(datapruner.__file__).parent

# top to bottom; a module may import its own layer's modules and any layer below
LAYERS = [
    ("cli", "cli_errors", "cli_logging", "cli_index", "cli_parse", "summary_text", "integrations"),
    ("api",),
    ("verify",),
    ("session", "validate"),
    ("steps",),
    ("runners",),
    ("report",),
    ("data",),
    ("write", "indexes"),
    ("select",),
    ("metrics",),
    ("cluster",),
    ("embed",),
    ("io", "progress", "reasons", "plugins", "devices", "logs"),
    ("config", "errors"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, name: str, modules: set[str]) -> dict[str, int]:
    """{module of this package: line} for every import in the file (relative ones resolved)."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: the package imports absolutely"
            base = node.module or ""
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.setdefault(target, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: imported(path, name, set(files)) for name, path in files.items()}


def layer_of(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    return None


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for module, targets in sorted(graph.items()):
        here = layer_of(module)
        for target, line in sorted(targets.items()):
            there = layer_of(target)
            if here is not None and there is not None and there < here:
                out.append(f"{module} (line {line}) imports {target}, a layer above it")
    return out


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in import_graph() if m != "datapruner" and layer_of(m) is None)
    assert not unplaced, f"give these modules a layer in tests/test_layers.py: {unplaced}"


def test_no_module_imports_a_layer_above_its_own():
    upward = upward_imports(import_graph())
    assert not upward, "\n".join(upward)


def test_the_package_has_no_import_circle():
    found = circles(import_graph())
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_the_checks_see_a_function_local_upward_import(tmp_path):
    """What the layer test reports when a room reaches up from inside a function."""
    room = tmp_path / "model.py"
    room.write_text("def load():\n    from datapruner.validate import check_config\n")
    graph = import_graph()
    graph["datapruner.embed.model"] = {**graph["datapruner.embed.model"],
                                       **imported(room, "datapruner.embed.model", set(graph))}
    assert upward_imports(graph) == ["datapruner.embed.model (line 2) imports datapruner.validate, a layer above it"]
    assert any("datapruner.embed.model" in c and "datapruner.validate" in c for c in circles(graph))


def test_functions_and_files_stay_small():
    """Median function at most 10 lines, none over 60, no file over 400 lines."""
    import statistics

    lengths, long_functions, long_files = [], [], []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            long_files.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths.append(node.end_lineno - node.lineno + 1)
                if lengths[-1] > 60:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lengths[-1]} lines")
    assert statistics.median(lengths) <= 10 and not long_functions and not long_files, \
        [f"median {statistics.median(lengths)}", *long_functions, *long_files]
