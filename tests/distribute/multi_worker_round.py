"""One worker of a two-worker `MultiWorkerMirroredStrategy` pruning run (run as a script).

Usage: python -m tests.distribute.multi_worker_round INDEX PORT0,PORT1 RUN_DIR [STOP_AFTER]

Runs the rounds of Algorithm 1 without retraining (Keras 3.15's `fit` and
`evaluate` fail under this strategy upstream; see the README): round 0, then
two pruning rounds, each scoring filters with activation statistics summed
across both workers, setting masks, measuring the model with a forward pass
and committing the round through `RunJournal`, which writes the run directory
on the chief only. With STOP_AFTER, the workers exit once that round is
committed, as if the job had been killed; started again, they resume from the
run directory. Prints one line `RESULT {json}` for the test to compare.
"""

import json
import os
import sys

INDEX, PORTS, RUN_DIR = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
STOP_AFTER = int(sys.argv[4]) if len(sys.argv) > 4 else None
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{port}" for port in PORTS]},
    "task": {"type": "worker", "index": INDEX},
})
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_asap as asap  # noqa: E402
from tf_asap import distribute  # noqa: E402
from tf_asap.core.counting import count_cost  # noqa: E402
from tf_asap.core.masks import mask_digest  # noqa: E402
from tf_asap.pruning.policies import RoundResult  # noqa: E402
from tf_asap.rounds.calibration import pin_calibration  # noqa: E402
from tf_asap.rounds.journal import RunJournal  # noqa: E402
from tf_asap.rounds.step import measure_threshold_reference, prune_filters, round_record  # noqa: E402


def tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="tiny")


def measure(model, x, y, round_number, threshold):
    accuracy = float(np.mean(np.argmax(model(x, training=False).numpy(), -1) == y))
    cost = count_cost(model)
    result = RoundResult(
        round=round_number, threshold=float(threshold), score=accuracy,
        params=cost.effective_params, flops=cost.effective_flops,
    )
    return result, cost


def main():
    strategy = distribute.strategy_from_name("multi-worker")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(45, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 45)
    with strategy.scope():
        model = asap.make_prunable(tiny_model())
    reference_model = asap.make_prunable(tiny_model())  # one device, the same weights
    reference_model.set_weights(model.get_weights())

    policy = asap.ParamsTarget(reduction=0.3, step=0.5, max_rounds=2)
    with strategy.scope():
        journal = RunJournal(RUN_DIR, model, {"test": "multi-worker"}, verbose=False)
        manifest = journal.open(policy)
        calibration = pin_calibration(journal.directory.calibration, (x, y), model, samples=40)
        resumed = bool(manifest and manifest.get("policy_state"))
        if resumed:
            policy = journal.resume(manifest)
            decision = policy.last_decision
            if decision.action == "prune":
                journal.restore_round(policy.history[-1].round)
        else:
            result, cost = measure(model, x, y, 0, 0.0)
            decision = policy.start(result)
            journal.commit(policy, result, decision, round_record(policy, result, decision, cost, epochs=0))
        attention = [{}]
        while decision.action != "stop":
            if STOP_AFTER is not None and journal.records[-1]["round"] >= STOP_AFTER:
                print("RESULT " + json.dumps({"stopped_after": journal.records[-1]["round"]}), flush=True)
                return
            if decision.action == "rollback":
                journal.restore_round(decision.rollback_to)
            scores = asap.collect_activation_stats(model, calibration, batch_size=8)
            single = asap.collect_activation_stats(reference_model, calibration, batch_size=8)
            attention.append({
                name: float(np.max(np.abs(scores[name] - single[name]))) for name in scores
            })
            if journal.threshold_reference is None:
                journal.threshold_reference = measure_threshold_reference(scores, model, "params")
            prune_filters(model, scores, decision.threshold, "params", journal.threshold_reference)
            reference_model.set_weights(model.get_weights())
            result, cost = measure(model, x, y, policy.next_round, decision.threshold)
            decision = policy.observe(result)
            journal.commit(policy, result, decision, round_record(
                policy, result, decision, cost, epochs=0, mask_digest=mask_digest(model),
            ))
        slim_model = asap.slim(model)
        journal.finish(policy, decision.best_round, slim_model)
    mirrored = all(
        strategy.extended.variable_created_in_scope(variable.value) for variable in slim_model.weights
    )
    print("RESULT " + json.dumps({
        "chief": distribute.is_chief(strategy),
        "directory": journal.path,
        "digest": mask_digest(model),
        "rounds": len(journal.records),
        "best_round": decision.best_round,
        "max_stats_difference": max(max(entry.values(), default=0.0) for entry in attention),
        "resumed": resumed,
        "logged_rounds": [record["round"] for record in journal.records],
        "slim_variables_distributed": mirrored,
    }), flush=True)


if __name__ == "__main__":
    main()
