"""Where a pruning run's models live and which directory this process writes.

The round controller, the `AdaptivePruning` callback and `train_baseline`
follow Keras' convention for `tf.distribute`: they run on the strategy in
scope when they are created (or the one passed as `strategy=`), and everything
they build (masked copies, optimizers, slimmed models, loaded baselines) is
built under that strategy's scope. Two decorators carry this out, so that the
round code itself never mentions a strategy:

- `builds_in_strategy_scope` wraps an entry point that takes `strategy=`: it
  resolves the strategy once and runs the whole call inside its scope;
- `runs_in_strategy_scope` wraps a method of an object that already holds
  `self.strategy` (each round, each Keras callback hook).

Under `tf.distribute.MultiWorkerMirroredStrategy` only the chief writes the
run directory: `writing_directory` gives every other worker a scratch
directory of its own (`tf_asap.distribute.worker_directory`).
"""

import functools

import tensorflow as tf

from tf_asap import distribute
from tf_asap.core.masks import is_prunable_model, make_prunable

__all__ = [
    "builds_in_strategy_scope",
    "chosen_strategy",
    "prunable_in_scope",
    "run_strategy",
    "runs_in_strategy_scope",
    "wait_for_workers",
    "writing_directory",
]


def run_strategy(strategy=None):
    """The strategy a run uses: `strategy`, else the one in scope now.

    Raises:
        ConfigurationError: If `strategy` is not a `tf.distribute.Strategy`.
    """
    return distribute.current_strategy(strategy)


def chosen_strategy(strategy=None):
    """`strategy`, else the one in scope now, else `None` (none was chosen).

    A Keras callback created outside any scope runs on its model's strategy,
    which it only learns when `fit` starts.
    """
    if strategy is not None or tf.distribute.has_strategy():
        return run_strategy(strategy)
    return None


def builds_in_strategy_scope(function):
    """Runs `function(..., strategy=...)` inside the scope of its resolved strategy.

    The wrapped function receives the resolved strategy (never `None`) as its
    `strategy` keyword argument.
    """

    @functools.wraps(function)
    def wrapper(*args, strategy=None, **kwargs):
        strategy = run_strategy(strategy)
        with strategy.scope():
            return function(*args, strategy=strategy, **kwargs)

    return wrapper


def runs_in_strategy_scope(method):
    """Runs a method inside the scope of `self.strategy` (else of `self.model`'s strategy)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.strategy is None:
            self.strategy = self.model.distribute_strategy
        with self.strategy.scope():
            return method(self, *args, **kwargs)

    return wrapper


def prunable_in_scope(model, strategy):
    """`model` itself if it has masks, else a prunable copy built under `strategy`.

    Raises:
        ConfigurationError: If `model` was built outside `strategy`'s scope:
            its variables are not the strategy's, and Keras would fail deep
            inside `fit`.
    """
    distribute.check_built_in_scope(model, strategy)
    if is_prunable_model(model):
        return model
    with strategy.scope():
        return make_prunable(model)


def writing_directory(run_dir, strategy=None):
    """The directory this process writes a run's files to.

    The run directory itself on a single worker and on the chief; a scratch
    directory under `run_dir/.workers/` on every other worker of a
    multi-worker strategy.

    Args:
        run_dir: The run directory.
        strategy: The run's strategy. Defaults to `None`: the one in scope.
    """
    strategy = tf.distribute.get_strategy() if strategy is None else strategy
    return distribute.worker_directory(run_dir, strategy)


def wait_for_workers(strategy=None):
    """Returns once every worker of a multi-worker strategy has called it.

    A non-chief worker copies the chief's committed state when it opens a
    run; the chief waits here before it writes anything, so that no worker
    copies a half-written round. On a single worker this returns at once.

    Args:
        strategy: The run's strategy. Defaults to `None`: the one in scope.
    """
    strategy = tf.distribute.get_strategy() if strategy is None else strategy
    if not distribute.is_multi_worker(strategy):
        return

    @tf.function(autograph=False)
    def barrier():
        # Any collective is a barrier: it completes only when all workers join.
        ones = strategy.run(lambda: tf.ones([1]))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

    barrier()
