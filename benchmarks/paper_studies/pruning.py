"""Pieces the studies share: criteria, policies, fine-tuning, one-shot masks, costs."""

from __future__ import annotations

import time

import keras
import numpy as np

from tf_asap import importance
from tf_asap.core.counting import count_cost
from tf_asap.core.masks import apply_masks, get_masks
from tf_asap.pruning.policies import AccuracyGuaranteed, FlopsTarget, ParamsTarget
from tf_asap.pruning.thresholds import ratio_masks
from tf_asap.recipe import paper_optimizer
from tf_asap.rounds.controller import load_state, read_round_log, restore_state
from tf_asap.rounds.state import built_optimizer
from tf_asap.rounds.training import compile_model

from paper_studies.budgets import max_accuracy_drop


class PerGroupNormalized(importance.Criterion):
    """A criterion whose scores are divided by each group's mean live score.

    The paper's ILP baseline ranks filters by L1 norm within each layer. Raw
    L1 norms grow with a layer's fan-in, so one global threshold on them
    prunes the layers with few inputs first; dividing by the group's mean
    makes a global threshold rank within each group, as ILP does.

    Args:
        criterion: The criterion to normalise (a name or object).
    """

    def __init__(self, criterion):
        self.inner = importance.get_criterion(criterion)
        self.name = f"{self.inner.name}-per-group"
        self.requires_data = self.inner.requires_data

    def _score(self, model, data):
        scores = self.inner.score(model, data)
        keep = get_masks(model)
        normalised = {}
        for name, values in scores.items():
            live = values[keep[name].astype(bool)] if name in keep else values
            mean = float(np.mean(live)) if live.size else 0.0
            normalised[name] = values / mean if mean > 0 else values
        return normalised

    def get_config(self):
        return {"criterion": repr(self.inner)}


def criterion_of(method, seed=0):
    """The criterion of a method name: `attention`, `l1` (per group), `random`, `mean-p2`, ..."""
    if method == "attention":
        return importance.get_criterion("attention")
    if method == "l1":
        return PerGroupNormalized("l1")
    if method == "random":
        return importance.RandomScore(seed=seed)
    mapping, power = method.split("-p")
    return importance.ActivationAttention(power=float(power), mapping=mapping)


def policy_of(name, budget):
    """The policy of a Table-1 policy name (`acc05`, `acc1`, `params70`, `flops50`)."""
    rounds = {"max_rounds": budget.max_rounds, "step": budget.policy_step}
    bound = max_accuracy_drop(name)
    if bound is not None:
        return AccuracyGuaranteed(max_accuracy_drop=bound, **rounds)
    if name == "params70":
        return ParamsTarget(reduction=0.7, **rounds)
    if name == "flops50":
        return FlopsTarget(reduction=0.5, **rounds)
    raise ValueError(f"Unknown policy {name!r}; expected acc05, acc1, params70 or flops50.")


def fine_tuning_schedule(budget, baseline, epochs=None):
    """`(schedule_epochs, start_epoch)` of one fine-tuning of `epochs` epochs.

    Learning-rate rewinding runs the paper's schedule for twice the epochs
    from its middle (lr/10, then lr/100); weight rewinding is the baseline's
    own schedule from epoch k.
    """
    if budget.rewinding == "weights":
        return baseline.epochs, baseline.rewind_epoch
    epochs = epochs or budget.finetune_epochs
    return 2 * epochs, epochs


def controller_settings(budget, baseline, steps_per_epoch):
    """`RoundController` keyword arguments that give its rounds the study's fine-tuning."""
    schedule_epochs, start = fine_tuning_schedule(budget, baseline)
    if budget.rewinding == "weights":
        return {"epochs": baseline.epochs, "rewind_epoch": baseline.rewind_epoch,
                "rewind_checkpoint": baseline.rewind_path}
    return {"epochs": schedule_epochs, "rewind_epoch": start,
            "optimizer": paper_optimizer(schedule_epochs, steps_per_epoch,
                                         learning_rate=baseline.learning_rate)}


def fine_tune(model, budget, baseline, data, epochs=None):
    """Fine-tunes a pruned model as every adaptive round retrains (masks kept).

    Returns:
        The wall time in seconds.
    """
    started = time.monotonic()
    schedule_epochs, start = fine_tuning_schedule(budget, baseline, epochs)
    if budget.rewinding == "weights":
        state, metadata = load_state(baseline.rewind_path)
        compile_model(model, keras.optimizers.deserialize(metadata["optimizer"]), None)
        built_optimizer(model)
        restore_state(model, state, masks=False)
    else:
        compile_model(model, paper_optimizer(schedule_epochs, data.steps_per_epoch,
                                             learning_rate=baseline.learning_rate), None)
        built_optimizer(model).iterations.assign(start * data.steps_per_epoch)
    model.fit(data.train, epochs=schedule_epochs, initial_epoch=start, verbose=0)
    return time.monotonic() - started


def accuracy(model, data, part):
    """Top-1 accuracy on `data.validation` (`part="validation"`) or `data.test`."""
    if part == "validation":
        if not getattr(model, "compiled", False):
            compile_model(model, "sgd", None)  # evaluate() needs the loss and metric
        return float(model.evaluate(data.validation, verbose=0, return_dict=True)["accuracy"])
    x, y = data.test
    predictions = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(predictions, axis=-1) == y))


def apply_fraction(model, scores, fraction, scope="group"):
    """Masks `fraction` of the live filters (of each group, or globally) by `scores`."""
    masks = ratio_masks(model, scores, fraction, scope=scope)
    apply_masks(model, masks)
    return masks


def prune_to_params_reduction(model, scores, target, scope="group", tolerance=0.005):
    """Finds by bisection the filter fraction whose masks remove `target` of the params.

    Returns:
        `(fraction, params reduction)` of the masks left applied.
    """
    original = get_masks(model)
    dense_params = count_cost(model).effective_params
    low, high = 0.0, 0.99
    best = None
    for _ in range(20):
        fraction = (low + high) / 2
        apply_masks(model, original)
        apply_fraction(model, scores, fraction, scope)
        reduction = 1.0 - count_cost(model).effective_params / dense_params
        if best is None or abs(reduction - target) < abs(best[1] - target):
            best = (fraction, reduction)
        if abs(reduction - target) <= tolerance:
            break
        if reduction < target:
            low = fraction
        else:
            high = fraction
    apply_masks(model, original)
    apply_fraction(model, scores, best[0], scope)
    return best


def cost_summary(model, baseline_cost):
    """Params and FLOPs of the masked model, and their reductions."""
    cost = count_cost(model)
    return {
        "params": cost.effective_params,
        "flops": cost.effective_flops,
        "params_reduction": 1.0 - cost.effective_params / baseline_cost.effective_params,
        "flops_reduction": 1.0 - cost.effective_flops / baseline_cost.effective_flops,
    }


class RoundTestAccuracy(keras.callbacks.Callback):
    """Records each retrained round's test accuracy, for the Figure-4 trace only.

    Passed to `RoundController(callbacks=...)`, it runs at the end of every
    retraining `fit`. The round being retrained is the number of records the
    round log holds at that moment (round 0 is logged first), so a resumed
    run keeps counting right. Nothing decides on these numbers.
    """

    def __init__(self, test, run_dir, record):
        super().__init__()
        self.test = test
        self.run_dir = run_dir
        self.record = record

    def on_train_end(self, logs=None):
        round_number = len(read_round_log(self.run_dir))
        x, y = self.test
        predictions = self.model.predict(x, batch_size=256, verbose=0)
        self.record(round_number, float(np.mean(np.argmax(predictions, axis=-1) == y)))
