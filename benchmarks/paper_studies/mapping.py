"""Table-3 analog: the attention mappings vs L1 vs random, one-shot at 50% params.

Every criterion scores the converged baseline once; each group then loses
the same fraction of its filters, ranked by that criterion within the group
(`ratio_masks(scope="group")`; the fraction is found by bisection so that
50% of the params go), and the pruned model gets the budget's fine-tuning.
Only the ranking differs between rows.
"""

from __future__ import annotations

import time

from tf_asap.core.counting import count_cost

from paper_studies import tables
from paper_studies.budgets import MAPPING_METHODS, MAPPING_PARAMS_REDUCTION, QUICK_METHODS
from paper_studies.context import say
from paper_studies.pruning import (
    accuracy,
    cost_summary,
    criterion_of,
    fine_tune,
    prune_to_params_reduction,
)


def run_mapping_case(context, model_name, method, seed):
    done = context.load_result("mapping", model_name, method, seed)
    if done is not None:
        return done
    baseline = context.baseline(model_name)
    data = context.data(model_name, seed)
    model = context.fresh_model(model_name, seed)
    baseline_cost = count_cost(model)
    started = time.monotonic()
    baseline_validation = accuracy(model, data, "validation")
    baseline_test = accuracy(model, data, "test")
    scores = criterion_of(method, seed).score(model, data.calibration)
    fraction, reduction = prune_to_params_reduction(
        model, scores, MAPPING_PARAMS_REDUCTION, scope="group"
    )
    validation_pruned = accuracy(model, data, "validation")
    finetune_s = fine_tune(model, context.budget, baseline, data)
    validation = accuracy(model, data, "validation")
    test = accuracy(model, data, "test")
    outcome = dict(
        cost_summary(model, baseline_cost),
        filter_fraction=fraction,
        baseline_validation_accuracy=baseline_validation,
        baseline_test_accuracy=baseline_test,
        validation_before_finetune=validation_pruned,
        validation_accuracy=validation,
        test_accuracy=test,
        validation_drop=baseline_validation - validation,
        test_drop=baseline_test - test,
        finetune_epochs=context.budget.finetune_epochs,
        finetune_s=round(finetune_s, 1),
        wall_time_s=round(time.monotonic() - started, 1),
    )
    say(f"mapping {model_name} {method} seed {seed}: params -{100 * reduction:.1f}%, "
        f"test accuracy {100 * test:.2f}% (baseline {100 * baseline_test:.2f}%)")
    return context.save_result("mapping", model_name, method, seed, outcome)


def study_mapping(context, models, methods):
    if context.budget.is_smoke_run and not methods:
        methods = QUICK_METHODS["mapping"]
    results = tables.run_cases(context, "mapping", models,
                               tables.selected(MAPPING_METHODS, methods), run_mapping_case)
    rows = []
    for (model_name, method), group in tables.grouped(results).items():
        rows.append([
            model_name, method, tables.seeds_cell(group),
            tables.mean_cell(group, "params_reduction"), tables.mean_cell(group, "flops_reduction"),
            tables.mean_cell(group, "validation_before_finetune"),
            tables.mean_cell(group, "validation_drop"),
            tables.mean_cell(group, "baseline_test_accuracy"),
            tables.mean_cell(group, "test_accuracy"),
            tables.mean_cell(group, "test_drop"),
            tables.mean_cell(group, "wall_time_s", percent=False, digits=0),
        ])
    header = ["model", "criterion", "seeds", "params red.", "FLOPs red.",
              "validation acc before fine-tuning", "validation drop", "baseline test acc",
              "test acc", "test drop", "wall s"]
    notes = [f"One-shot: every criterion prunes the converged baseline to "
             f"{100 * MAPPING_PARAMS_REDUCTION:.0f}% params reduction, ranking filters within "
             "each group (`ratio_masks(scope='group')`, one fraction for all groups, found by "
             f"bisection), then fine-tunes {context.budget.finetune_epochs} epoch(s) "
             "(the budget's fine-tuning). mean-pP: mean of |a|^P; max, sum: the other "
             "mappings of Table 3 (P=1); l1: filter L1 norm; random: seeded random scores."]
    tables.plot_bars(context, "mapping", results, "test_accuracy", "test accuracy after fine-tuning")
    return header, rows, notes
