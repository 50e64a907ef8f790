"""Reports of pruning runs: the round table and the paper's Figure 4.

A run (from `tf_asap.rounds.controller.RoundController`, or the records of the
`AdaptivePruning` callback) is a list of round records, one per round:
threshold, accuracy and its drop from the baseline, parameters and FLOPs
left, and the policy's decision. This module turns them into

- `rounds_table`: a Markdown table, one row per round;
- `plot_rounds`: a PNG of the accuracy drop and the parameter and FLOPs
  reduction per round, as in Figure 4 of the paper (appendix A.6), with
  unacceptable rounds, rollbacks and the best round marked;
- `plot_layers`: a PNG of the filters kept per layer against the original,
  and each layer's share of the pruned model's params and FLOPs;
- `write_report`: all of them, written into a run directory (`report.md`,
  `rounds.png`, `layers.png`).

The command line's `report` command uses the same functions. Matplotlib is
imported only when a plot is drawn, through its object-oriented API (no
`pyplot`), so the report works on headless machines and leaves the user's
plotting backend alone.
"""

from __future__ import annotations

import io
import json
import os

from tf_asap.errors import ConfigurationError, RunDirectoryError
from tf_asap.files import atomic_write_bytes, atomic_write_text
from tf_asap.pruning.policies.results import ROUNDING_SLACK
from tf_asap.rounds.run_directory import (  # noqa: F401 - REPORT_NAME, PLOT_NAME re-exported
    LAYERS_PLOT_NAME,
    LOG_NAME,
    MANIFEST_NAME,
    PLOT_NAME,
    REPORT_NAME,
    read_round_log,
)

__all__ = ["plot_layers", "plot_rounds", "read_rounds", "rounds_table", "write_report"]



def read_rounds(run_dir):
    """Reads the round records of a run directory (or of a `rounds.jsonl` file).

    Args:
        run_dir: A run directory or its round log.

    Returns:
        The list of round records, round 0 first.

    Raises:
        RunDirectoryError: If there is no round log or it is damaged.
    """
    path = os.fspath(run_dir)
    log = os.path.join(path, LOG_NAME) if os.path.isdir(path) else path
    if not os.path.exists(log):
        raise RunDirectoryError(
            f"'{path}' has no round log ({LOG_NAME}). Pass the run directory of "
            "a pruning run (the run_dir given to RoundController)."
        )
    return read_round_log(log)


def _final_tuning_lines(tuning, metric):
    """The final stage's lines: each attempt, and against `final_max_drop` when set."""
    attempts = tuning.get("attempts") or [tuning]
    lines = []
    for number, attempt in enumerate(attempts):
        if not attempt.get("epochs"):
            lines.append("- Final fine-tuning: no pruned round kept final_max_drop; the result "
                         "is round 0, the unpruned model")
            continue
        changes = [
            f"{split} {metric} {_value(attempt[f'{split}_{metric}_before'], metric)} -> "
            f"{_value(attempt[f'{split}_{metric}_after'], metric)}"
            for split in ("validation", "test") if f"{split}_{metric}_before" in attempt
        ]
        which = "the chosen round" if number == 0 else f"round {attempt['round']}, a step back"
        lines.append(
            f"- Final fine-tuning of {which}: {attempt['epochs']} epoch(s) from learning rate "
            f"{attempt['learning_rate']:.3g}; " + ", ".join(changes)
        )
        if tuning.get("max_drop") is not None:
            kept = attempt["validation_drop"] <= tuning["max_drop"] + ROUNDING_SLACK
            lines[-1] += (
                f"; round {attempt['round']} {'kept' if kept else 'missed'} final_max_drop "
                f"{_value(tuning['max_drop'], metric)} (validation drop "
                f"{_value(attempt['validation_drop'], metric)})"
            )
    return lines


def _percent(value, signed=False):
    if value is None:
        return "–"
    return f"{100 * value:+.2f}%" if signed else f"{100 * value:.2f}%"


def _decision(record):
    action = record.get("decision", "")
    if action == "rollback":
        return f"rollback to {record.get('rollback_to')}"
    if action == "stop":
        return f"stop (best {record.get('best_round')})"
    return action


def rounds_table(records):
    """A Markdown table of the rounds of a run.

    Args:
        records: Round records (see `read_rounds`).

    Returns:
        The table as a string, one row per round, the best round in bold.

    Example:

    >>> print(rounds_table(read_rounds("runs/fmnist")))
    | round | T | accuracy | drop | params left | FLOPs left | decision | ...
    """
    best = _best_round(records)
    metric = _metric(records)
    test_key = f"test_{metric}"
    with_test = any(test_key in record for record in records)
    header = (
        f"| round | T | step | validation {metric} | validation drop "
        + (f"| test {metric} (reported only) " if with_test else "")
        + "| params left | FLOPs left | acceptable | decision | epochs | time (s) |"
    )
    lines = [header, _rule(header)]
    for record in records:
        test_cell = [_value(record.get(test_key), metric)] if with_test else []
        cells = [
            str(record["round"]),
            f"{record.get('threshold', 0.0):.4g}",
            "–" if record.get("step") is None else f"{record['step']:.4g}",
            _value(record.get("accuracy"), metric),
            _value(record.get("accuracy_drop"), metric, signed=True),
            *test_cell,
            _percent(record.get("params_left")),
            _percent(record.get("flops_left")),
            "yes" if record.get("acceptable") else "no",
            _decision(record),
            str(record.get("epochs", "")),
            "" if record.get("wall_time_s") is None else f"{record['wall_time_s']:.1f}",
        ]
        if record["round"] == best:
            cells = [f"**{cell}**" if cell else cell for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _metric(records):
    return (records[0].get("metric") if records else None) or "accuracy"


def _value(value, metric, signed=False):
    """Accuracy-like metrics in percent; any other metric as a plain number."""
    if metric.endswith("accuracy") or value is None:
        return _percent(value, signed)
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def _rule(header):
    return "|" + "|".join("---" for _ in range(header.count("|") - 1)) + "|"


def _best_round(records):
    for record in reversed(records):
        if record.get("decision") == "stop":
            return record.get("best_round")
    return None


def _summary(records, manifest):
    lines = []
    if manifest:
        policy = manifest.get("policy", {})
        config = ", ".join(f"{k}={v}" for k, v in (policy.get("config") or {}).items())
        lines.append(f"- Policy: `{policy.get('kind')}({config})`")
        settings = manifest.get("settings", {})
        if settings:
            lines.append(
                "- Retraining: {retrain} epoch(s) per round ({rewinding} rewinding to "
                "epoch {k} of {epochs}), criterion `{criterion}`, objective `{objective}`".format(
                    retrain=settings.get("retrain_epochs"),
                    rewinding="weight" if settings.get("rewinding") == "weights" else "learning-rate",
                    k=settings.get("rewind_epoch"),
                    epochs=settings.get("epochs"),
                    criterion=settings.get("criterion"),
                    objective=settings.get("objective"),
                )
            )
        if manifest.get("threshold_reference") is not None:
            lines.append(
                f"- Threshold reference (attention scale of T = 1): "
                f"{manifest['threshold_reference']:.6g}"
            )
        lines.append(f"- Status: {manifest.get('status')}")
        lines.append(f"- Decisions on validation data: {settings.get('validation', 'given')}")
        test = manifest.get("test")
        if test:
            metric = test.get("metric", "accuracy")
            final = test.get("final")
            lines.append(
                f"- Test {metric} (reported only): baseline "
                f"{_value(test.get('baseline'), metric)}"
                + ("" if final is None else
                   f", best round {test.get('best_round')} {_value(final, metric)}")
            )
        tuning = manifest.get("final_tuning")
        if tuning:
            lines.extend(_final_tuning_lines(tuning, settings.get("metric", "accuracy")))
    if records:
        baseline = records[0]
        lines.append(
            f"- Baseline: accuracy {_percent(baseline.get('accuracy'))}, "
            f"{baseline.get('params', 0):,} params, {baseline.get('flops', 0):,} FLOPs"
        )
        best = _best_round(records)
        if best is not None:
            record = next((r for r in records if r["round"] == best), None)
            if record is not None:
                lines.append(
                    f"- Best round {best}: accuracy {_percent(record['accuracy'])} "
                    f"(drop {_percent(record['accuracy_drop'], signed=True)}), params "
                    f"reduced by {_percent(record['params_reduction'])}, FLOPs by "
                    f"{_percent(record['flops_reduction'])}"
                )
        epochs = sum(r.get("epochs") or 0 for r in records)
        seconds = sum(r.get("wall_time_s") or 0 for r in records)
        lines.append(
            f"- {len(records) - 1} pruning round(s), {epochs} retraining epoch(s), "
            f"{seconds / 60:.1f} min"
        )
    return "\n".join(lines) + "\n"


def plot_rounds(records, path=None, title=None):
    """Draws the accuracy drop and the reduction per round (the paper's Figure 4).

    The upper panel shows the accuracy drop from the baseline (percentage
    points) with the accepted bound when the policy has one; the lower panel
    shows the parameter and FLOPs reduction with the target when there is
    one. Each round is joined to the round it was pruned from, so a rollback
    shows as a branch back to an earlier round; unacceptable rounds are red
    crosses on dotted branches, and the best round is a star.

    Args:
        records: Round records (see `read_rounds`).
        path: Where to write the PNG (atomically). Defaults to `None`: return
            the bytes only.
        title: Figure title. Defaults to `None`.

    Returns:
        The PNG as bytes.

    Raises:
        ConfigurationError: If `records` is empty.
        ImportError: If matplotlib is not installed.
    """
    if not records:
        raise ConfigurationError("No rounds to plot: the run has not completed round 0 yet.")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    best = _best_round(records)
    parents = _parents(records)
    series = (
        ("accuracy_drop", "accuracy drop", "tab:blue", "o"),
        ("params_reduction", "params reduction", "tab:green", "o"),
        ("flops_reduction", "FLOPs reduction", "tab:orange", "s"),
    )

    figure = Figure(figsize=(6.4, 5.6), dpi=120)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    axes = {"accuracy_drop": top, "params_reduction": bottom, "flops_reduction": bottom}
    for key, label, color, marker in series:
        axis = axes[key]
        value = {r["round"]: 100 * r[key] for r in records}
        # Each round is drawn from the round it was pruned from: after a
        # rollback the path branches back, as the search did.
        for record in records[1:]:
            parent = parents.get(record["round"])
            if parent not in value:
                continue
            ok = record.get("acceptable", True)
            axis.plot(
                [parent, record["round"]], [value[parent], value[record["round"]]],
                color=color, linestyle="-" if ok else ":", linewidth=1.5 if ok else 1,
            )
        good = [r["round"] for r in records if r.get("acceptable", True)]
        bad = [r["round"] for r in records if not r.get("acceptable", True)]
        axis.plot(good, [value[r] for r in good], linestyle="none", marker=marker,
                  markersize=4, color=color, label=label)
        if bad:
            axis.plot(bad, [value[r] for r in bad], linestyle="none", marker="x",
                      markersize=6, color="tab:red",
                      label="unacceptable" if key != "flops_reduction" else None)
        if best in value:
            axis.plot([best], [value[best]], linestyle="none", marker="*", markersize=13,
                      color="gold", markeredgecolor="black",
                      label="best round" if key != "flops_reduction" else None)
    bound = records[-1].get("max_accuracy_drop")
    if bound is not None:
        top.axhline(100 * bound, color="tab:red", linestyle="--", linewidth=1, label="accepted drop")
    target = records[-1].get("target_reduction")
    if target is not None:
        bottom.axhline(100 * target, color="tab:red", linestyle="--", linewidth=1, label="target")
    top.set_ylabel("accuracy drop (pp)")
    bottom.set_ylabel("reduction (%)")
    bottom.set_xlabel("round")
    for axis in (top, bottom):
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7, loc="best")
    if title:
        top.set_title(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = buffer.getvalue()
    if path is not None:
        atomic_write_bytes(path, data)
    return data


def plot_layers(layers, path=None, title=None):
    """Draws filters kept per layer and each layer's share of params and FLOPs.

    The upper panel shows, per prunable layer, its filters as built (light)
    and kept (dark); the lower one each layer's share of the pruned model's
    params and FLOPs, so the layers that still dominate the cost stand out.

    Args:
        layers: Rows of `tf_asap.rounds.journal.layer_summary` (the
            manifest's `layers`).
        path: Where to write the PNG (atomically). Defaults to `None`.
        title: Figure title. Defaults to `None`.

    Returns:
        The PNG as bytes.

    Raises:
        ConfigurationError: If `layers` is empty.
        ImportError: If matplotlib is not installed.
    """
    if not layers:
        raise ConfigurationError(
            "No layers to plot: the run has not finished (the manifest lists the "
            "best round's layers once it has)."
        )
    # Lazy: matplotlib is an optional dependency.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [row["name"] for row in layers]
    positions = list(range(len(names)))
    figure = Figure(figsize=(max(6.4, 0.45 * len(names)), 5.6), dpi=120)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.bar(positions, [row["filters"] for row in layers], color="lightgray", label="original")
    top.bar(positions, [row["kept"] for row in layers], color="tab:blue", label="kept")
    top.set_ylabel("filters")
    total_params = sum(row["effective_params"] for row in layers) or 1
    total_flops = sum(row["effective_flops"] for row in layers) or 1
    width = 0.4
    bottom.bar([p - width / 2 for p in positions],
               [100 * row["effective_params"] / total_params for row in layers],
               width, color="tab:green", label="share of params")
    bottom.bar([p + width / 2 for p in positions],
               [100 * row["effective_flops"] / total_flops for row in layers],
               width, color="tab:orange", label="share of FLOPs")
    bottom.set_ylabel("share of pruned model (%)")
    bottom.set_xticks(positions)
    bottom.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    for axis in (top, bottom):
        axis.grid(True, axis="y", alpha=0.3)
        axis.legend(fontsize=7, loc="best")
    if title:
        top.set_title(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = buffer.getvalue()
    if path is not None:
        atomic_write_bytes(path, data)
    return data


def _parents(records):
    """`{round: the round it was pruned from}`, following rollbacks."""
    parents = {}
    previous = None
    for record in records:
        if previous is not None:
            if previous.get("decision") == "rollback":
                parents[record["round"]] = previous.get("rollback_to")
            else:
                parents[record["round"]] = previous["round"]
        previous = record
    return parents


def write_report(run_dir):
    """Writes `report.md` and `rounds.png` into a run directory.

    Args:
        run_dir: The run directory of a `RoundController` run.

    Returns:
        `{"report": path, "plot": path or None}`; the plot is skipped (with
        a note in the report) when matplotlib is not installed.

    Raises:
        RunDirectoryError: If the directory has no round log.
    """
    directory = os.fspath(run_dir)
    records = read_rounds(directory)
    manifest = None
    manifest_path = os.path.join(directory, MANIFEST_NAME)
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as file:
            manifest = json.load(file)
    plot_path = os.path.join(directory, PLOT_NAME)
    title = None
    if manifest:
        title = f"{manifest.get('model', {}).get('name')}: {manifest.get('policy', {}).get('kind')}"
    try:
        plot_rounds(records, plot_path, title=title)
        plot_line = f"![accuracy drop and reduction per round]({PLOT_NAME})\n"
    except ImportError:
        plot_path = None
        plot_line = "(Install matplotlib for the round plot.)\n"
    layers_path = None
    if manifest and manifest.get("layers"):
        try:
            layers_path = os.path.join(directory, LAYERS_PLOT_NAME)
            plot_layers(manifest["layers"], layers_path, title=title)
            plot_line += f"\n![filters kept and cost share per layer]({LAYERS_PLOT_NAME})\n"
        except ImportError:
            layers_path = None
    text = (
        f"# Pruning run `{os.path.basename(os.path.abspath(directory))}`\n\n"
        + _summary(records, manifest)
        + "\n"
        + plot_line
        + "\n"
        + rounds_table(records)
    )
    report_path = os.path.join(directory, REPORT_NAME)
    atomic_write_text(report_path, text)
    return {"report": report_path, "plot": plot_path, "layers_plot": layers_path}
