"""Which directory a worker writes, and the strategy rounds build under (single-process parts)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests import architectures
from tf_asap.core.masks import is_prunable_model
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.policies import ParamsTarget
from tf_asap.rounds.journal import RunJournal
from tf_asap.rounds.placement import chosen_strategy, prunable_in_scope, run_strategy, writing_directory
from tf_asap.rounds.run_directory import RunDirectory

WORKERS = ["127.0.0.1:20001", "127.0.0.1:20002"]


def tf_config(monkeypatch, index):
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": WORKERS}, "task": {"type": "worker", "index": index}}
    ))


def test_the_chief_writes_the_run_directory_and_another_worker_its_scratch(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert writing_directory(str(tmp_path)) == str(tmp_path)
    tf_config(monkeypatch, 0)
    assert writing_directory(str(tmp_path)) == str(tmp_path)
    tf_config(monkeypatch, 1)
    assert writing_directory(str(tmp_path)) == str(tmp_path / ".workers" / "worker-1")


def test_a_tf_config_without_the_chief_it_names_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": WORKERS}, "task": {"type": "chief", "index": 0}}
    ))
    with pytest.raises(ConfigurationError, match="has no chief"):
        writing_directory(str(tmp_path))


def test_a_worker_resumes_from_the_chiefs_committed_state(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    model = prunable_in_scope(architectures.plain_cnn(), run_strategy())
    chief = RunJournal(str(tmp_path), model, {"kind": "test"}, verbose=False)
    chief.open(ParamsTarget(reduction=0.5))
    (tmp_path / "checkpoints").mkdir()
    np.savez(tmp_path / "checkpoints" / "round_0000.npz", a=np.zeros(2))
    (tmp_path / "checkpoints" / ".round_0001.npz.tmp").write_bytes(b"half written")
    (tmp_path / "rounds.jsonl").write_text('{"round": 0}\n')

    tf_config(monkeypatch, 1)
    worker = RunJournal(str(tmp_path), model, {"kind": "test"}, verbose=False)
    worker.open(ParamsTarget(reduction=0.5))
    scratch = RunDirectory(worker.path)
    assert worker.path == str(tmp_path / ".workers" / "worker-1")
    assert scratch.checkpoint_rounds() == [0]
    assert (tmp_path / ".workers" / "worker-1" / "rounds.jsonl").read_text() == '{"round": 0}\n'
    assert not list((tmp_path / ".workers" / "worker-1" / "checkpoints").glob(".*"))
    # The chief's directory size leaves the scratch directories out.
    own = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file() and ".workers" not in p.parts)
    assert scratch.size() > 0 and RunDirectory(str(tmp_path)).size() == own


def test_a_plain_model_gets_a_prunable_copy_and_a_prunable_one_is_used_as_is():
    strategy = run_strategy()
    assert strategy is tf.distribute.get_strategy()
    plain = architectures.plain_cnn()
    copy = prunable_in_scope(plain, strategy)
    assert is_prunable_model(copy) and copy is not plain
    assert prunable_in_scope(copy, strategy) is copy


def test_a_strategy_that_is_not_one_is_refused():
    with pytest.raises(ConfigurationError, match="must be a tf.distribute.Strategy"):
        run_strategy("mirrored")


def test_a_callback_strategy_is_the_one_in_scope_or_left_to_the_model():
    assert chosen_strategy() is None
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        assert chosen_strategy() is strategy
    assert chosen_strategy(strategy) is strategy
