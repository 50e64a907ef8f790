"""The policies stay pure Python: no Keras, TensorFlow or NumPy, no later pipeline stage."""

import ast
import pathlib

import tf_asap.pruning.policies as policies

ALLOWED = ("tf_asap.checks", "tf_asap.defaults", "tf_asap.errors", "tf_asap.pruning.policies")
STANDARD = {"__future__", "dataclasses", "math", "typing"}


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "tf_asap":
            yield from (f"tf_asap.{alias.name}" for alias in node.names)  # from tf_asap import x
        elif isinstance(node, ast.ImportFrom):
            yield node.module


def test_policy_modules_import_only_the_standard_library_and_each_other():
    folder = pathlib.Path(policies.__file__).parent
    modules = sorted(folder.glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        for name in imported_modules(path):
            assert name in STANDARD or name.startswith(ALLOWED), f"{path.name} imports {name}"

