"""The README's promises: its first two commands, its links, the shipped baseline."""

import json
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as file:
        return file.read()


def first_commands(markdown, count):
    """The first `count` commands of the README's first shell code block."""
    block = re.search(r"```(?:bash|sh|console)\n(.*?)```", markdown, re.S)
    assert block, "the README has no shell code block"
    commands = []
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            commands.append(line)
    return commands[:count]


def test_readme_starts_with_the_main_job_and_the_tests():
    assert first_commands(read("README.md"), 2) == [
        "bash scripts/main_job.sh",
        "bash scripts/test.sh",
    ]


@pytest.mark.parametrize("script", ["scripts/main_job.sh", "scripts/test.sh"])
def test_the_first_commands_point_at_executable_bash_scripts(script):
    path = os.path.join(ROOT, script)
    assert os.path.isfile(path)
    assert os.access(path, os.X_OK), f"{script} is not executable (chmod +x)"
    text = read(script)
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text


def _repository_paths(script_text):
    """Tokens of a shell script that name files or directories of the repository."""
    paths = set()
    for line in script_text.splitlines():
        line = line.split("#", 1)[0] if not line.startswith("#!") else ""
        try:
            tokens = shlex.split(line, posix=True)
        except ValueError:
            tokens = line.split()
        for token in tokens:
            token = token.strip("\"'();")
            if re.match(r"^(examples|saved_models|scripts|tf_asap|tests|benchmarks)/", token):
                paths.add(token)
            if token.startswith("--") and "=" in token:
                value = token.split("=", 1)[1]
                if re.match(r"^(examples|saved_models)/", value):
                    paths.add(value)
    return paths


def test_main_job_references_files_that_exist():
    text = read("scripts/main_job.sh")
    paths = _repository_paths(text)
    for path in paths:
        assert os.path.exists(os.path.join(ROOT, path)), f"main_job.sh names missing {path}"
    # What it runs: the demo command of the CLI, whose default baseline ships.
    assert re.search(r"\.venv/bin/tf-asap demo\b", text)
    from tf_asap.cli import directories

    baseline = os.path.join(ROOT, directories.DEFAULT_DEMO_BASELINE)
    assert os.path.isfile(os.path.join(baseline, directories.BASELINE_MODEL))
    assert os.path.isfile(os.path.join(baseline, directories.REWIND_CHECKPOINT))
    # The entry point the script calls is the one setup.cfg declares.
    assert "tf-asap = tf_asap.cli:main" in read("setup.cfg")


def test_readme_links_point_at_files_that_exist():
    markdown = read("README.md")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", markdown)
    local = [link for link in links if not re.match(r"^[a-z]+://", link)]
    assert local, "the README links no examples"
    for link in local:
        assert os.path.exists(os.path.join(ROOT, link)), f"README links missing {link}"


def test_readme_cli_commands_exist():
    from tf_asap.cli import build_parser

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    used = set(re.findall(r"^\s*tf-asap (\w+)", read("README.md"), re.M))
    assert used, "the README shows no tf-asap command"
    assert used <= commands, f"README uses unknown commands {used - commands}"


def test_shipped_baseline_is_documented_small_and_loads_in_safe_mode():
    import keras

    import tf_asap  # registers MaskedLayer and the recipe's optimizer the model was compiled with
    from tf_asap.cli import directories

    directory = os.path.join(ROOT, directories.DEFAULT_DEMO_BASELINE)
    settings = json.loads(read(os.path.join(directories.DEFAULT_DEMO_BASELINE, directories.TRAIN_SETTINGS)))
    notes = read("saved_models/README.md")
    assert settings["command"] in notes
    assert f"{100 * settings['test_accuracy']:.2f}%" in notes
    assert settings["date"] in notes
    model_path = os.path.join(directory, directories.BASELINE_MODEL)
    total = sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(directory) for name in names
    )
    assert total < 5_000_000
    model = keras.models.load_model(model_path, safe_mode=True)
    assert tuple(model.inputs[0].shape[1:]) == (28, 28, 1)
    assert tf_asap.count_cost(model).params == settings["params"]
