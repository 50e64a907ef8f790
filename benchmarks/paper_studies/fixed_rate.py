"""Table-4 analog: adaptive vs fixed-rate IAP / ILP vs one-shot + fine-tune, at equal wall time.

The reference is the adaptive accuracy-guaranteed run (`acc1-attention`):
its wall time `W` is the budget every other method gets, and its bound (1
point of validation drop) is the bound every method's result must pass.

- IAP / ILP (the paper's fixed-rate baselines): each round removes 5% of
  every group's live filters, ranked by attention (IAP) or by L1 within the
  group (ILP), then fine-tunes as an adaptive round does; rounds continue
  until `W` is spent. The result is the smallest model whose validation drop
  is within the bound.
- one-shot: prune the converged baseline once to each of the budget's
  params reductions (attention, ranked per group), fine-tune each for an
  equal share of `W`, and keep the largest reduction whose validation drop
  is within the bound.

The test accuracy of each result is reported; no choice reads it.
"""

from __future__ import annotations

import time

from tf_asap.core.counting import count_cost
from tf_asap.rounds.state import restore_state, snapshot_state

from paper_studies import tables
from paper_studies.adaptive import run_adaptive_case
from paper_studies.budgets import (
    FIXED_RATE,
    FIXED_RATE_METHODS,
    QUICK_METHODS,
    REFERENCE_METHOD,
    max_accuracy_drop,
)
from paper_studies.context import say
from paper_studies.pruning import (
    accuracy,
    apply_fraction,
    cost_summary,
    criterion_of,
    fine_tune,
    prune_to_params_reduction,
)

BOUND = max_accuracy_drop(REFERENCE_METHOD.split("-")[0])


def _fixed_rate(context, model_name, method, seed, wall_budget):
    baseline = context.baseline(model_name)
    data = context.data(model_name, seed)
    model = context.fresh_model(model_name, seed)
    baseline_cost = count_cost(model)
    started = time.monotonic()
    baseline_validation = accuracy(model, data, "validation")
    criterion = criterion_of("attention" if method == "IAP" else "l1", seed)
    trace, best = [], None
    while (len(trace) < context.budget.fixed_rate_max_rounds
           and (not trace or time.monotonic() - started < wall_budget)):
        scores = criterion.score(model, data.calibration)
        apply_fraction(model, scores, FIXED_RATE, scope="group")
        fine_tune(model, context.budget, baseline, data)
        validation = accuracy(model, data, "validation")
        step = dict(cost_summary(model, baseline_cost), round=len(trace) + 1,
                    validation_accuracy=validation, validation_drop=baseline_validation - validation,
                    elapsed_s=round(time.monotonic() - started, 1))
        trace.append(step)
        if step["validation_drop"] <= BOUND + 1e-9:
            best = (step, snapshot_state(model, optimizer=False))
        say(f"fixed-rate {model_name} {method} round {step['round']}: params "
            f"-{100 * step['params_reduction']:.1f}%, validation drop "
            f"{100 * step['validation_drop']:.2f} points, {step['elapsed_s']:.0f}/{wall_budget:.0f} s")
    if best is None:
        chosen = {"params_reduction": 0.0, "flops_reduction": 0.0, "round": 0,
                  "validation_drop": 0.0}
        model = context.fresh_model(model_name, seed)
    else:
        chosen = best[0]
        restore_state(model, best[1], optimizer=False)
    return chosen, trace, baseline_validation, model, time.monotonic() - started


def _one_shot(context, model_name, seed, wall_budget, epoch_s):
    baseline = context.baseline(model_name)
    data = context.data(model_name, seed)
    reductions = context.budget.oneshot_reductions
    epochs = max(1, int(wall_budget / len(reductions) / max(epoch_s, 1e-3)))
    started = time.monotonic()
    trace, best = [], None
    baseline_validation = None
    for target in reductions:
        model = context.fresh_model(model_name, seed)
        baseline_cost = count_cost(model)
        if baseline_validation is None:
            baseline_validation = accuracy(model, data, "validation")
        scores = criterion_of("attention", seed).score(model, data.calibration)
        prune_to_params_reduction(model, scores, target, scope="group")
        fine_tune(model, context.budget, baseline, data, epochs=epochs)
        validation = accuracy(model, data, "validation")
        step = dict(cost_summary(model, baseline_cost), target=target, epochs=epochs,
                    validation_accuracy=validation, validation_drop=baseline_validation - validation,
                    elapsed_s=round(time.monotonic() - started, 1))
        trace.append(step)
        say(f"one-shot {model_name} -{100 * target:.0f}% params, {epochs} epochs: validation "
            f"drop {100 * step['validation_drop']:.2f} points")
        passed = step["validation_drop"] <= BOUND + 1e-9
        if passed and (best is None or step["params_reduction"] > best[0]["params_reduction"]):
            best = (step, model)
    if best is None:
        best = ({"params_reduction": 0.0, "flops_reduction": 0.0, "validation_drop": 0.0,
                 "target": 0.0, "epochs": epochs}, context.fresh_model(model_name, seed))
    return best[0], trace, baseline_validation, best[1], time.monotonic() - started


def run_fixed_rate_case(context, model_name, method, seed):
    done = context.load_result("fixed-rate", model_name, method, seed)
    if done is not None:
        return done
    reference = run_adaptive_case(context, model_name, REFERENCE_METHOD, seed)
    wall_budget = reference["wall_time_s"]
    if method == "one-shot":
        epoch_s = wall_budget / max(reference["pruning_epochs"], 1)
        chosen, trace, baseline_validation, model, wall = _one_shot(
            context, model_name, seed, wall_budget, epoch_s)
    else:
        chosen, trace, baseline_validation, model, wall = _fixed_rate(
            context, model_name, method, seed, wall_budget)
    data = context.data(model_name, seed)
    test = accuracy(model, data, "test")
    outcome = {
        "reference": REFERENCE_METHOD,
        "bound": BOUND,
        "wall_budget_s": wall_budget,
        "wall_time_s": round(wall, 1),
        "baseline_validation_accuracy": baseline_validation,
        "baseline_test_accuracy": reference["baseline_test_accuracy"],
        "params_reduction": chosen["params_reduction"],
        "flops_reduction": chosen["flops_reduction"],
        "validation_drop": chosen["validation_drop"],
        "test_accuracy": test,
        "test_drop": reference["baseline_test_accuracy"] - test,
        "steps": len(trace),
        "trace": trace,
        "adaptive_params_reduction": reference["params_reduction"],
        "adaptive_validation_drop": reference["validation_drop"],
        "adaptive_test_drop": reference["test_drop"],
        "adaptive_wall_time_s": reference["wall_time_s"],
    }
    return context.save_result("fixed-rate", model_name, method, seed, outcome)


def study_fixed_rate(context, models, methods):
    if context.budget.is_smoke_run and not methods:
        methods = QUICK_METHODS["fixed-rate"]
    results = tables.run_cases(context, "fixed-rate", models,
                               tables.selected(FIXED_RATE_METHODS, methods), run_fixed_rate_case)
    rows = []
    adaptive_rows = {}
    for (model_name, method), group in tables.grouped(results).items():
        adaptive_rows.setdefault(model_name, [
            model_name, f"adaptive ({REFERENCE_METHOD})", tables.seeds_cell(group), "n/a",
            tables.mean_cell(group, "adaptive_params_reduction"),
            tables.mean_cell(group, "adaptive_validation_drop"),
            tables.mean_cell(group, "adaptive_test_drop"),
            tables.mean_cell(group, "adaptive_wall_time_s", percent=False, digits=0),
        ])
        label = method if method == "one-shot" else f"{method} ({100 * FIXED_RATE:.0f}%/round)"
        rows.append([
            model_name, label, tables.seeds_cell(group),
            tables.mean_cell(group, "steps", percent=False, digits=1),
            tables.mean_cell(group, "params_reduction"),
            tables.mean_cell(group, "validation_drop"),
            tables.mean_cell(group, "test_drop"),
            tables.mean_cell(group, "wall_time_s", percent=False, digits=0),
        ])
    rows = list(adaptive_rows.values()) + rows
    header = ["model", "method", "seeds", "rounds / candidates", "params red.",
              "validation drop", "test drop", "wall s"]
    notes = [
        f"Equal wall time: each method gets the wall time of the adaptive `{REFERENCE_METHOD}` "
        f"run of the same model and seed, and its result is the smallest model within "
        f"{100 * BOUND:g} point of validation drop. IAP / ILP: 5% of each group's live "
        "filters per round (attention / L1 within the group), the budget's fine-tuning after "
        "each; one-shot: attention ranked per group at params reductions "
        f"{', '.join(f'{100 * r:.0f}%' for r in context.budget.oneshot_reductions)}, each "
        "fine-tuned for an equal share of the time.",
    ]
    return header, rows, notes
