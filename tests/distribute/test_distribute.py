"""Tests for choosing a strategy and the writing worker (tf_asap/distribute.py)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tf_asap import distribute
from tf_asap.errors import ConfigurationError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKERS = ["127.0.0.1:20001", "127.0.0.1:20002"]


def env(task_type="worker", index=0, cluster=None):
    cluster = {"worker": WORKERS} if cluster is None else cluster
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


def test_no_tf_config_is_a_single_chief_worker(tmp_path):
    assert distribute.read_tf_config({}) is None
    assert distribute.is_chief(environ={})
    assert distribute.worker_directory(str(tmp_path), environ={}) == str(tmp_path)


def test_worker_zero_is_chief_without_a_chief_task(tmp_path):
    assert distribute.is_chief(environ=env(index=0))
    assert not distribute.is_chief(environ=env(index=1))
    scratch = distribute.worker_directory(str(tmp_path), environ=env(index=1))
    assert scratch == os.path.join(str(tmp_path), ".workers", "worker-1")


def test_the_chief_task_writes_when_the_cluster_has_one():
    cluster = {"chief": ["127.0.0.1:20000"], "worker": WORKERS}
    assert distribute.is_chief(environ=env("chief", 0, cluster))
    assert not distribute.is_chief(environ=env("worker", 0, cluster))


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "has no `cluster`"),
        (json.dumps({"cluster": {"worker": WORKERS}}), "has no `task`"),
        (json.dumps({"cluster": {"worker": WORKERS}, "task": {"type": "chief", "index": 0}}), "has no chief"),
        (json.dumps({"cluster": {"worker": WORKERS}, "task": {"type": "worker", "index": 2}}), "index 2 is outside"),
    ],
)
def test_bad_tf_config_names_the_problem_and_the_fix(text, message):
    with pytest.raises(ConfigurationError, match=message.replace("`", "`").replace("(", r"\(")):
        distribute.read_tf_config({"TF_CONFIG": text})


def test_missing_chief_message_says_what_the_cluster_lists():
    text = json.dumps({"cluster": {"worker": WORKERS}, "task": {"type": "chief", "index": 0}})
    with pytest.raises(ConfigurationError, match=r"has no chief: the cluster lists \['worker'\]"):
        distribute.read_tf_config({"TF_CONFIG": text})


def test_unknown_strategy_name_lists_the_choices():
    with pytest.raises(ConfigurationError, match="none, mirrored, multi-worker"):
        distribute.strategy_from_name("tpu")


_MIRRORED = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tf_asap import distribute
    from tf_asap.errors import ConfigurationError

    def tiny():
        return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                                 keras.layers.Dense(3)])

    strategy = distribute.strategy_from_name("mirrored")
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    outside = tiny()
    with strategy.scope():
        inside = tiny()
        assert distribute.current_strategy() is strategy
    distribute.check_built_in_scope(inside, strategy)
    try:
        distribute.check_built_in_scope(outside, strategy)
    except ConfigurationError as error:
        assert "built outside the scope of the MirroredStrategy" in str(error), error
        print("OK")
    """
)


def test_mirrored_on_two_logical_cpus_and_models_built_outside_its_scope_are_refused():
    result = subprocess.run(
        [sys.executable, "-c", _MIRRORED],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-3000:]
