"""Figure-4 analog: validation and test drop per round of one accuracy-guaranteed run."""

from __future__ import annotations

import os

from tf_asap.rounds.controller import read_round_log
from tf_asap.rounds.report import plot_rounds

from paper_studies import tables
from paper_studies.adaptive import run_adaptive_case
from paper_studies.budgets import REFERENCE_METHOD


def study_trace(context, models, methods):
    """Tabulates and plots every round of the reference run (`acc1-attention`).

    The test accuracy after each retrained round is recorded by the run
    itself (`RoundTestAccuracy`); a round that pruned nothing was not
    retrained and shows its parent's. Nothing decided on the test column.
    """
    model_name = (models or [context.budget.models[0]])[0]
    seed = context.seeds[0]
    reference = run_adaptive_case(context, model_name, REFERENCE_METHOD, seed)
    records = read_round_log(context.work_dir("adaptive", model_name, REFERENCE_METHOD, seed))
    tested = reference.get("test_per_round", {})
    if not records:
        # A reused case whose run directory is gone (another --work-dir, a
        # fresh checkout): its rounds were saved with the trace.
        saved = context.load_result("trace", model_name, REFERENCE_METHOD, seed)
        if not saved or not saved.get("rounds"):
            raise RuntimeError(
                f"The trace of {model_name} {REFERENCE_METHOD} seed {seed} needs its round log, "
                f"which is neither in {context.work_dir('adaptive', model_name, REFERENCE_METHOD, seed)} "
                "nor saved with an earlier trace: delete the adaptive case's result file under "
                f"{context.runs} to run it again, or pass the --work-dir it ran in."
            )
        records, tested = saved["rounds"], saved.get("test_per_round", tested)
    test_baseline = reference["baseline_test_accuracy"]
    rows = []
    for r in records:
        test = test_baseline if r["round"] == 0 else tested.get(str(r["round"]))
        rows.append([
            r["round"], f"{r['threshold']:.3f}", tables.pretty(r["accuracy"]),
            tables.pretty(r["accuracy_drop"]),
            "n/a (not retrained)" if test is None else tables.pretty(test_baseline - test),
            tables.pretty(r["params_reduction"]), tables.pretty(r["flops_reduction"]),
            "yes" if r["acceptable"] else "no",
            r["decision"] + (f" to {r['rollback_to']}" if r.get("rollback_to") is not None else ""),
            f"{r.get('wall_time_s', 0.0):.0f}",
        ])
    header = ["round", "T", "validation acc", "validation drop", "test drop", "params red.",
              "FLOPs red.", "acceptable", "decision", "wall s"]
    notes = [f"{model_name}, `{REFERENCE_METHOD}`, seed {seed}; best round "
             f"{reference['best_round']} (chosen on validation): test drop "
             f"{100 * reference['test_drop']:.2f} points at {100 * reference['params_reduction']:.1f}% "
             "fewer params. Test accuracy is evaluated after each retraining for this table only."]
    plot_rounds(records, os.path.join(context.results, "trace.png"),
                title=f"{model_name} {REFERENCE_METHOD} seed {seed} ({context.budget.name} budget)")
    context.save_result("trace", model_name, REFERENCE_METHOD, seed,
                        {"rounds": records, "test_per_round": tested})
    return header, rows, notes
