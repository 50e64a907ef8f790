"""`tf-asap train|prune --distribute`: the strategy a command runs on."""

import json

import numpy as np

import tf_asap.cli
from tests.cli.runner import run_cli, user_lines
from tests.cli.test_user_data import class_images


def test_distribute_is_offered_by_train_and_prune_with_none_by_default():
    for command in ("train", "prune"):
        result = run_cli(command, "--help")
        assert result.returncode == 0
        text = result.stdout
        assert "--distribute {none,mirrored,multi-worker}" in text
        assert "(default: none)" in " ".join(text.split())


def test_multi_worker_without_tf_config_fails_with_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    x, y = class_images(40, seed=0)
    np.savez(tmp_path / "arrays.npz", x_train=x[..., 0], y_train=y)
    code = tf_asap.cli.main([
        "train", "--data", str(tmp_path / "arrays.npz"), "--model", "small_cnn", "--epochs", "1",
        "--output", str(tmp_path / "base"), "--distribute", "multi-worker", "--verbose", "0",
    ])
    assert code == 1
    assert "--distribute multi-worker needs TF_CONFIG" in capsys.readouterr().err


def test_train_and_prune_run_under_mirrored_strategy(tmp_path):
    x, y = class_images(120, seed=0)
    np.savez(tmp_path / "arrays.npz", x_train=x[..., 0], y_train=y)
    trained = run_cli(
        "train", "--data", tmp_path / "arrays.npz", "--model", "small_cnn", "--epochs", "2",
        "--batch-size", "32", "--output", tmp_path / "base", "--verbose", "0",
        "--distribute", "mirrored",
    )
    assert trained.returncode == 0, trained.stderr
    pruned = run_cli(
        "prune", tmp_path / "base", "--data", tmp_path / "arrays.npz", "--params-reduction", "30%",
        "--run-dir", tmp_path / "run", "--max-rounds", "1", "--calibration-samples", "32",
        "--verbose", "0", "--distribute", "mirrored",
    )
    assert pruned.returncode == 0, pruned.stderr
    assert user_lines(trained.stderr) == [] and user_lines(pruned.stderr) == []
    assert (tmp_path / "run" / "final" / "slim.keras").is_file()
    assert (tmp_path / "run" / "calibration.npz").is_file()
    rounds = [json.loads(line) for line in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert [record["round"] for record in rounds] == [0, 1]
