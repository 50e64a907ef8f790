"""The package's shape: data flows one way, nothing imports in a cycle, modules stay small.

The stages of the pipeline (see STYLE.md and the package docstring) may import
only from earlier stages or from their own folder. The check reads every
module's source with `ast`, so it sees imports inside functions too (a lazy
import is still a dependency).
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tf_asap")

# The stage of each top-level module or folder of tf_asap. A module may import
# from its own stage's folder and from any earlier stage, never a later one.
STAGES = {
    "errors": 0,
    "files": 0,
    "checks": 0,
    "defaults": 0,
    "inputs": 0,
    "recipe": 0,
    "core": 1,
    "pruning": 2,
    "rounds": 3,
    "export": 4,
    "data": 5,
    "zoo": 5,
    "distribute": 0,
    "cli": 6,
}

# Lines a module may have before it counts as holding two jobs.
MAX_MODULE_LINES = 500
# Modules allowed past the limit, each with the reason (keep this list short).
LONG_MODULES = {
    # One class, the round-by-round state machine every policy shares (start,
    # observe, rollback, the best round, its saved state): split, one
    # decision would be read across two files.
    "tf_asap.pruning.policies.base": (540, "the Policy state machine"),
}


def _modules():
    """Yields (dotted module name, path) for every module of the package."""
    for directory, _, files in os.walk(PACKAGE):
        for file_name in sorted(files):
            if not file_name.endswith(".py"):
                continue
            path = os.path.join(directory, file_name)
            relative = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
            if relative[-1] == "__init__":
                relative = relative[:-1]
            yield ".".join(relative), path


MODULES = dict(_modules())


def _resolve(name):
    """The package module an imported dotted name refers to (a module, or the module defining it)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module, path):
    """The tf_asap modules `module` imports, anywhere in its source."""
    with open(path, encoding="utf-8") as source:
        tree = ast.parse(source.read(), path)
    found = set()
    is_package = path.endswith("__init__.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from package import module` depends on that module (the package's
            # __init__ runs on any submodule import, so it is no dependency of
            # its own); `from package import name` depends on the package.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name == "tf_asap" or name.startswith("tf_asap."):
                target = _resolve(name)
                if target and target != module:
                    found.add(target)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _stage(module):
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package itself fixes the public paths: it may import anything
    return STAGES.get(parts[1])


def test_every_module_has_a_stage():
    unknown = sorted(m for m in MODULES if m != "tf_asap" and _stage(m) is None)
    assert not unknown, f"Add these to STAGES in tests/test_layout.py: {unknown}"


def test_no_module_imports_a_later_stage():
    wrong = []
    for module, targets in GRAPH.items():
        stage = _stage(module)
        if stage is None:
            continue
        for target in targets:
            if target == "tf_asap":
                wrong.append(f"{module} imports the package root (import the module instead)")
            elif _stage(target) > stage:
                wrong.append(f"{module} (stage {stage}) imports {target} (stage {_stage(target)})")
    assert not wrong, "\n".join(sorted(wrong))


def _cycles(graph):
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycles():
    # Package __init__ files re-export their modules; a module importing its
    # own package's __init__ is the usual way cycles sneak in, so they count.
    assert _cycles(GRAPH) == []


def test_cycle_detection_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_nothing_imports_the_command_line():
    importers = sorted(m for m, targets in GRAPH.items() if any(t.startswith("tf_asap.cli") for t in targets))
    assert all(m.startswith("tf_asap.cli") for m in importers), importers


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    with open(MODULES[module], encoding="utf-8") as source:
        lines = sum(1 for _ in source)
    limit = LONG_MODULES.get(module, (MAX_MODULE_LINES, ""))[0]
    assert lines <= limit, (
        f"{module} has {lines} lines (limit {limit}): it probably holds two jobs; split it along them."
    )
