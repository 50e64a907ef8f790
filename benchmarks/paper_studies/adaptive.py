"""Table-1 analog: every adaptive policy with attention and with L1 ranked per group.

Each case is one `RoundController` run from the converged baseline. The
policy and the choice of the best round read the held-out validation split;
the test accuracy of the baseline and of the best round is only reported.
For accuracy policies the table reports what was achieved (the reduction at
the validation drop the bound allowed), not whether the bound held: the
best round is by construction one that passed it on validation data. For
params and FLOPs targets, whether the target was reached is a real outcome.
"""

from __future__ import annotations

import os
import time

from tf_asap.rounds.controller import RoundController

from paper_studies import tables
from paper_studies.budgets import (
    ADAPTIVE_CRITERIA,
    ADAPTIVE_POLICIES,
    QUICK_METHODS,
    REFERENCE_METHOD,
    max_accuracy_drop,
)
from paper_studies.context import read_json, say, write_json
from paper_studies.pruning import RoundTestAccuracy, controller_settings, criterion_of, policy_of

TEST_TRACE = "test_per_round.json"


def run_adaptive_case(context, model_name, method, seed):
    """One adaptive run (resumable); returns its result dict."""
    done = context.load_result("adaptive", model_name, method, seed)
    if done is not None:
        return done
    policy_name, criterion_name = method.split("-")
    baseline = context.baseline(model_name)
    data = context.data(model_name, seed)
    run_dir = context.work_dir("adaptive", model_name, method, seed)
    os.makedirs(run_dir, exist_ok=True)
    trace_path = os.path.join(run_dir, TEST_TRACE)
    test_per_round = read_json(trace_path) if os.path.exists(trace_path) else {}

    def record(round_number, accuracy):
        test_per_round[str(round_number)] = accuracy
        write_json(trace_path, test_per_round)

    # Only the trace's run pays for a test evaluation after every round.
    callbacks = [RoundTestAccuracy(data.test, run_dir, record)] if method == REFERENCE_METHOD else []
    say(f"adaptive {model_name} {method} seed {seed}: {data.description}")
    started = time.monotonic()
    controller = RoundController(
        context.fresh_model(model_name, seed), policy_of(policy_name, context.budget),
        data.train, data.validation, run_dir=run_dir, seed=seed, test_data=data.test,
        calibration_data=data.calibration, criterion=criterion_of(criterion_name, seed),
        callbacks=callbacks, verbose=context.verbose,
        # `--controller-option` values win over the budget's settings.
        **{**controller_settings(context.budget, baseline, data.steps_per_epoch),
           **context.controller_options},
    )
    result = controller.run()
    best = result.best
    pruning_rounds = [r for r in result.rounds if r["round"] > 0]
    outcome = {
        "baseline_validation_accuracy": result.rounds[0]["accuracy"],
        "validation_accuracy": best["accuracy"],
        "validation_drop": best["accuracy_drop"],
        "baseline_test_accuracy": result.test["baseline"],
        "test_accuracy": result.test["final"],
        "test_drop": result.test["baseline"] - result.test["final"],
        "params_reduction": best["params_reduction"],
        "flops_reduction": best["flops_reduction"],
        "best_round": result.best_round,
        "rounds": len(pruning_rounds),
        "pruning_epochs": sum(r.get("epochs", 0) for r in pruning_rounds),
        "wall_time_s": round(sum(r.get("wall_time_s", 0.0) for r in result.rounds), 1),
        "this_invocation_s": round(time.monotonic() - started, 1),
        "baseline_train_seconds": baseline.train_seconds,
        "target_met": target_met(policy_name, best),
        "test_per_round": test_per_round,
        "run_dir": os.path.abspath(result.run_dir),
        "baseline_dir": os.path.abspath(baseline.directory),
    }
    return context.save_result("adaptive", model_name, method, seed, outcome)


def target_met(policy_name, best):
    """Whether a params/FLOPs target was reached; `None` for accuracy policies.

    An accuracy policy's best round passed the bound on validation data by
    construction (round 0 always does), so "met" would say nothing there.
    """
    if max_accuracy_drop(policy_name) is not None:
        return None
    key, target = {"params70": ("params_reduction", 0.7),
                   "flops50": ("flops_reduction", 0.5)}[policy_name]
    return best[key] >= target - 1e-9


def study_adaptive(context, models, methods):
    all_methods = [f"{p}-{c}" for p in ADAPTIVE_POLICIES for c in ADAPTIVE_CRITERIA]
    if context.budget.is_smoke_run and not methods:
        methods = QUICK_METHODS["adaptive"]
    results = tables.run_cases(context, "adaptive", models, tables.selected(all_methods, methods),
                               run_adaptive_case)
    rows = []
    for (model_name, method), group in tables.grouped(results).items():
        met = [r["target_met"] for r in group]
        rows.append([
            model_name, method, tables.seeds_cell(group),
            tables.mean_cell(group, "baseline_test_accuracy"),
            tables.mean_cell(group, "validation_drop"),
            tables.mean_cell(group, "test_drop"),
            tables.mean_cell(group, "params_reduction"),
            tables.mean_cell(group, "flops_reduction"),
            tables.mean_cell(group, "rounds", percent=False, digits=1),
            tables.mean_cell(group, "pruning_epochs", percent=False, digits=1),
            tables.mean_cell(group, "wall_time_s", percent=False, digits=0),
            "n/a (accuracy bound)" if met[0] is None else "/".join("yes" if m else "no" for m in met),
        ])
    header = ["model", "policy-criterion", "seeds", "baseline test acc", "validation drop",
              "test drop", "params red.", "FLOPs red.", "rounds", "fine-tuning epochs",
              "wall s", "target reached"]
    notes = [
        "acc05 / acc1: accuracy-guaranteed at 0.5 / 1 point of validation drop; params70 / "
        "flops50: 70% params / 50% FLOPs targets. `l1` ranks each group by L1 norm divided "
        "by the group's mean (per-layer ranking, as the paper's ILP), never raw norms across "
        "layers. Decisions and the best round use the held-out validation split; test drop "
        "is reported only.",
        attention_vs_l1(results),
    ]
    tables.plot_bars(context, "adaptive", results, "params_reduction",
                     "params reduction (best round)")
    return header, rows, notes


# How much larger attention's test drop may be for its params gap over L1 to
# count as "at the same drop" (0.1 points).
SAME_DROP_TOLERANCE = 0.001


def attention_vs_l1(results):
    """The issue's goal: under the same accuracy policy attention removes >= 10 points
    more params than L1 at the same test drop. A gap bought with a larger test drop
    (beyond `SAME_DROP_TOLERANCE`) does not meet it, and the line says so."""
    lines = []
    for model_name in sorted({r["model"] for r in results}):
        for policy_name in ("acc05", "acc1"):
            mine = {c: [r for r in results if r["model"] == model_name
                        and r["method"] == f"{policy_name}-{c}"] for c in ("attention", "l1")}
            if not mine["attention"] or not mine["l1"]:
                continue
            mean = {c: {k: sum(r[k] for r in rs) / len(rs)
                        for k in ("params_reduction", "test_drop")} for c, rs in mine.items()}
            gap = 100 * (mean["attention"]["params_reduction"] - mean["l1"]["params_reduction"])
            same_drop = (mean["attention"]["test_drop"]
                         <= mean["l1"]["test_drop"] + SAME_DROP_TOLERANCE)
            if gap >= 10 and not same_drop:
                verdict = "NOT MET: the gap comes with a larger test drop"
            else:
                verdict = "MET" if gap >= 10 else "NOT MET"
            lines.append(
                f"{model_name} {policy_name}: attention removes {gap:+.1f} points of params vs "
                f"L1 (test drop {100 * mean['attention']['test_drop']:.2f} vs "
                f"{100 * mean['l1']['test_drop']:.2f} points; goal >= +10 at the same test "
                f"drop: {verdict})"
            )
    return "; ".join(lines)
