"""Running tf_asap on `tf.distribute`: which strategy, which worker writes.

tf_asap follows Keras' convention: whatever is created inside
`with strategy.scope():` runs on that strategy. The round controller, the
`AdaptivePruning` callback and `train_baseline` remember the strategy in scope
when they are created (or one passed as `strategy=`) and build every model
and optimizer under it.

With `tf.distribute.MultiWorkerMirroredStrategy` every worker runs the same
program on its shard of the data and all of them take the same decisions
(policies are deterministic and the statistics are summed across workers), but
only the *chief* writes the run directory. The others write to a scratch
directory of their own under `run_dir/.workers/`, which nobody reads and
which may be deleted once the run has finished (it is left in place, so that
a worker can be inspected after a failure).

Which worker is the chief comes from `TF_CONFIG`: the task of type `chief`
when the cluster has one, else worker 0.

Example (two workers on one machine, one command per worker):

    TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]},
                "task": {"type": "worker", "index": 0}}' tf-asap prune ... --distribute multi-worker
    TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]},
                "task": {"type": "worker", "index": 1}}' tf-asap prune ... --distribute multi-worker
"""

import json
import os

from tf_asap.errors import ConfigurationError

STRATEGY_NAMES = ("none", "mirrored", "multi-worker")
TF_CONFIG_ENV = "TF_CONFIG"
_WORKER_TYPES = ("chief", "worker")
WORKERS_DIR = ".workers"
"""Where non-chief workers write inside a run directory."""


def read_tf_config(environ=None):
    """Reads and checks the cluster description in `TF_CONFIG`.

    Args:
        environ: The environment to read. Defaults to `None`: `os.environ`.

    Returns:
        The parsed dict (`{"cluster": ..., "task": {"type": ..., "index": ...}}`),
        or `None` when `TF_CONFIG` is not set (a single worker).

    Raises:
        ConfigurationError: If `TF_CONFIG` is not JSON, has no `cluster` or
            `task`, names a task type or index the cluster does not have, or
            names a chief task without a `chief` entry in the cluster.
    """
    environ = os.environ if environ is None else environ
    text = environ.get(TF_CONFIG_ENV, "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(
            f"{TF_CONFIG_ENV} is not valid JSON ({error.msg} at character {error.pos}). Set it to "
            '\'{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}\'.'
        ) from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigurationError(
            f"{TF_CONFIG_ENV} has no `cluster` (a dict of task type to addresses); received {text!r}. "
            'Add e.g. "cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]}.'
        )
    if not isinstance(task, dict) or "type" not in task:
        raise ConfigurationError(
            f"{TF_CONFIG_ENV} has no `task` with a `type`; received {text!r}. "
            'Add e.g. "task": {"type": "worker", "index": 0} (a different index on each worker).'
        )
    task_type, index = task["type"], task.get("index", 0)
    addresses = cluster.get(task_type)
    if addresses is None:
        missing = "no chief" if task_type == "chief" else f"no {task_type!r} task"
        raise ConfigurationError(
            f"{TF_CONFIG_ENV} names task type {task_type!r} but its cluster has {missing}: the cluster "
            f"lists {sorted(cluster)}. Add a {task_type!r} entry to the cluster, or give this process "
            f"one of the listed task types."
        )
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(addresses):
        raise ConfigurationError(
            f"{TF_CONFIG_ENV} task index {index!r} is outside the cluster's {len(addresses)} "
            f"{task_type!r} address(es). Use an index from 0 to {len(addresses) - 1}."
        )
    if "chief" in cluster and len(cluster["chief"]) != 1:
        raise ConfigurationError(
            f"{TF_CONFIG_ENV} lists {len(cluster['chief'])} chief addresses; a cluster has exactly one chief."
        )
    return config


def is_chief(strategy=None, environ=None):
    """Whether this process writes the run directory.

    A single-process strategy (none, `OneDeviceStrategy`, `MirroredStrategy`)
    always writes. Under `MultiWorkerMirroredStrategy` the chief is the task of
    type `chief`, or worker 0 in a cluster without one.

    Args:
        strategy: The strategy in use. Defaults to `None`: only `TF_CONFIG`
            is read.
        environ: The environment. Defaults to `None`: `os.environ`.

    Returns:
        `True` if this process is the one that writes.
    """
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is not None and getattr(resolver, "task_type", None) is not None:
        task_type, task_id = resolver.task_type, resolver.task_id
        has_chief = "chief" in resolver.cluster_spec().as_dict()
    else:
        config = read_tf_config(environ)
        if config is None:
            return True
        task_type = config["task"]["type"]
        task_id = config["task"].get("index", 0)
        has_chief = "chief" in config["cluster"]
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_directory(run_dir, strategy=None, environ=None):
    """The directory this process writes its run files to.

    The chief writes `run_dir` itself; every other worker writes to
    `run_dir/.workers/<type>-<index>`, a scratch directory that is never read
    by anyone else and may be deleted when the run ends.
    """
    if is_chief(strategy, environ):
        return run_dir
    config = read_tf_config(environ)
    task = config["task"] if config else {"type": "worker", "index": 0}
    return os.path.join(run_dir, WORKERS_DIR, f"{task['type']}-{task.get('index', 0)}")


def is_multi_worker(strategy):
    """Whether `strategy` is a `MultiWorkerMirroredStrategy` (one or more worker processes)."""
    import tensorflow as tf  # see current_strategy

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def current_strategy(strategy=None):
    """The strategy to run on: `strategy` if given, else the one in scope.

    Outside any `strategy.scope()` this is TensorFlow's default strategy (one
    device), so code written for one device keeps working unchanged.
    """
    import tensorflow as tf  # imported here so that this module stays importable without TensorFlow

    if strategy is not None:
        if not isinstance(strategy, tf.distribute.Strategy):
            raise ConfigurationError(
                f"`strategy` must be a tf.distribute.Strategy (e.g. tf.distribute.MirroredStrategy()); "
                f"received {type(strategy).__name__}. Pass None to use the strategy in scope."
            )
        return strategy
    return tf.distribute.get_strategy()


def strategy_from_name(name):
    """Builds the strategy the command line's `--distribute NAME` asks for.

    Args:
        name: `"none"` (the default strategy, one device), `"mirrored"`
            (`MirroredStrategy` over every visible GPU, or over the logical
            CPU devices configured when there is no GPU) or `"multi-worker"`
            (`MultiWorkerMirroredStrategy` from `TF_CONFIG`, which must be set).

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ConfigurationError: For an unknown name, or `"multi-worker"` without a
            valid `TF_CONFIG`.
    """
    import tensorflow as tf  # imported here: the command line parses its flags before TensorFlow loads

    if name not in STRATEGY_NAMES:
        raise ConfigurationError(
            f"--distribute must be one of {', '.join(STRATEGY_NAMES)}; received {name!r}."
        )
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [device.name for device in gpus] or [
            device.name for device in tf.config.list_logical_devices("CPU")
        ]
        return tf.distribute.MirroredStrategy(devices)
    if read_tf_config() is None:
        raise ConfigurationError(
            f"--distribute multi-worker needs {TF_CONFIG_ENV} describing the cluster and this "
            "worker's task; it is not set. See the README's 'Several devices and machines' "
            "section for one command per worker."
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def check_built_in_scope(model, strategy):
    """Raises if `model`'s variables were not created under `strategy`.

    A model built outside the scope keeps plain variables that the strategy
    cannot replicate; Keras then fails deep inside `fit` with a message about
    variable placement.
    """
    if strategy is None or not hasattr(strategy, "extended"):
        return
    import tensorflow as tf  # see strategy_from_name

    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return  # the default strategy owns every variable
    for variable in model.weights:
        value = getattr(variable, "value", variable)
        if not strategy.extended.variable_created_in_scope(value):
            raise ConfigurationError(
                f"Model '{model.name}' was built outside the scope of the {type(strategy).__name__} it runs "
                f"on (variable '{variable.path}'). Build or load the model inside `with strategy.scope():`."
            )
