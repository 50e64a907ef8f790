"""Batch-1 LiteRT latency of slimmed models next to their FLOPs reduction.

Issue target: for a model pruned to ~50% of its FLOPs, the slimmed TFLite
model's measured speedup is >= 80% of the FLOPs ratio (e.g. >= 1.6x for a 2x
FLOPs cut), measured side by side in one run.

Each model from the zoo is made prunable; every prunable channel group keeps
the same fraction of its channels (chosen by bisection so that the effective
FLOPs are `--flops-target` of the original; which channels go is random, as
latency does not depend on it), then `slim` removes them. Original and slimmed
models are converted to TFLite (batch 1) and timed by
`tf_asap.export.latency_report`: one LiteRT thread, warm-up, interleaved timed
runs, median. Each call is timed twice over: with the wall clock (`wall`) and,
in a separate measurement, with the calling thread's CPU time (`cpu`), which
stays meaningful on a shared machine where other processes hold the cores.

With `--multiple-of N`, the kept channel counts are rounded to multiples of N
(what hardware-aware pruning does; XNNPACK packs channels in blocks of 8/16).

`--pair NAME ORIGINAL SLIMMED` times two saved Keras models instead (e.g. a
shipped baseline and the `final/slim.keras` of a pruning run), and
`--without-amx` times XNNPACK as on x86 CPUs without AMX (see
`benchmarks/amx.py`; with AMX, int8 layers of up to 64 channels all cost the
same).

Usage:
    python benchmarks/bench_export.py [--models vgg16 resnet56]
        [--quantization none int8] [--clock wall cpu] [--flops-target 0.5]
        [--runs 300] [--multiple-of 1] [--pair NAME ORIGINAL SLIMMED]... [--without-amx]
"""

import argparse
import datetime
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_asap as asap  # noqa: E402
from tf_asap import export  # noqa: E402
from tf_asap.zoo import build_model  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_widths import describe_machine  # noqa: E402 - needs the path above
from amx import withhold_amx  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def kept_counts(groups, fraction, multiple_of):
    counts = {}
    for group in groups:
        if not group.prunable:
            continue
        count = max(group.min_filters, int(round(group.size * fraction)))
        if multiple_of > 1 and group.size >= multiple_of:
            count = max(multiple_of, int(round(count / multiple_of)) * multiple_of)
        counts[group.name] = min(count, group.size)
    return counts


def prune_to_flops(model, flops_target, multiple_of, seed):
    """Slims `model` to about `flops_target` of its FLOPs, uniformly."""
    prunable = asap.make_prunable(model)
    groups = [g for g in asap.channel_groups(prunable) if g.prunable]
    dense_flops = asap.count_cost(prunable).flops
    rng = np.random.default_rng(seed)
    order = {g.name: rng.permutation(g.size) for g in groups}

    def apply(fraction):
        masks = {}
        for name, count in kept_counts(groups, fraction, multiple_of).items():
            keep = np.zeros(len(order[name]), bool)
            keep[order[name][:count]] = True
            masks[name] = keep
        asap.apply_masks(prunable, masks)
        return asap.count_cost(prunable).effective_flops / dense_flops

    low, high = 0.0, 1.0
    for _ in range(20):
        middle = (low + high) / 2
        if apply(middle) > flops_target:
            high = middle
        else:
            low = middle
    fraction = min((low, high), key=lambda f: abs(apply(f) - flops_target))
    apply(fraction)
    return asap.slim(prunable), fraction


def model_pairs(args):
    """(name, original, slimmed, kept fraction or None, seconds) per model to time."""
    for name, original, slimmed in args.pair:
        yield (name, keras.models.load_model(original, compile=False),
               keras.models.load_model(slimmed, compile=False), None, 0.0)
    for model_name in [] if args.pair else args.models:
        model = build_model(model_name)
        start = time.perf_counter()
        slimmed, fraction = prune_to_flops(model, args.flops_target, args.multiple_of, args.seed)
        yield model_name, model, slimmed, fraction, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet56"])
    parser.add_argument("--quantization", nargs="+", default=["none", "int8"],
                        choices=list(export.QUANTIZATION_MODES))
    parser.add_argument("--clock", nargs="+", default=["wall", "cpu"], choices=["wall", "cpu"])
    parser.add_argument("--flops-target", type=float, default=0.5)
    parser.add_argument("--multiple-of", type=int, default=1)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pair", nargs=3, action="append", default=[],
                        metavar=("NAME", "ORIGINAL", "SLIMMED"),
                        help="time two saved .keras models instead of pruning zoo models")
    parser.add_argument("--without-amx", action="store_true",
                        help="withhold AMX from this process (XNNPACK's AVX-512 kernels)")
    parser.add_argument("--target", type=float, default=0.8,
                        help="the speedup / FLOPs ratio a row must reach to be 'met'")
    parser.add_argument("--out", default=os.path.join(RESULTS_DIR, "export_latency"),
                        help="prefix of the .md, .json and .png written")
    args = parser.parse_args()
    command = "python benchmarks/bench_export.py " + " ".join(sys.argv[1:])
    if args.without_amx:
        withhold_amx()

    rng = np.random.default_rng(args.seed)
    records = []
    sections = []
    for model_name, model, slimmed, fraction, prune_seconds in model_pairs(args):
        costs = {"original": asap.count_cost(model), "slimmed": asap.count_cost(slimmed)}
        calibration = rng.uniform(0, 1, (32,) + tuple(model.inputs[0].shape[1:]))
        for quantization, clock in [(q, c) for q in args.quantization for c in args.clock]:
            rows = export.latency_report(
                {"original": model, "slimmed": slimmed},
                quantization=quantization,
                representative_data=(
                    calibration.astype(np.float32) if quantization == "int8" else None
                ),
                costs=costs,
                num_runs=args.runs,
                warmup_runs=args.warmup,
                clock=clock,
            )
            slim_row = rows[1]
            records.append(
                {
                    "model": model_name,
                    "quantization": quantization,
                    "clock": clock,
                    "kept_fraction": fraction,
                    "flops_ratio": slim_row.flops_ratio,
                    "speedup": slim_row.speedup,
                    "efficiency": slim_row.efficiency,
                    "rows": [vars(row) for row in rows],
                }
            )
            how = ("saved models" if fraction is None else
                   f"{fraction:.1%} of channels kept per group "
                   f"(pruned and slimmed in {prune_seconds:.1f} s)")
            sections.append(
                f"**{model_name}**, quantization `{quantization}`, clock `{clock}`, {how}\n\n"
                + export.render_latency_table(
                    [
                        export.LatencyRow(**{**vars(r), "name": f"{model_name} {r.name}"})
                        for r in rows
                    ]
                )
            )
            print(sections[-1] + "\n", flush=True)

    summary = [
        "| model | quantization | clock | FLOPs ratio | speedup | speedup / FLOPs ratio "
        f"| target (>= {args.target:.0%}) |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for record in records:
        summary.append(
            f"| {record['model']} | {record['quantization']} | {record['clock']} "
            f"| {record['flops_ratio']:.2f}x | {record['speedup']:.2f}x "
            f"| {record['efficiency']:.0%} "
            f"| {'met' if record['efficiency'] >= args.target else 'missed'} |"
        )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    machine = f"{describe_machine()}, load average at the end {load}"
    report = (
        f"### Slimmed vs original, batch-1 LiteRT latency "
        f"({datetime.date.today()}, {machine})\n"
        f"Command: `{command}`\n\n"
        + "\n".join(summary)
        + "\n\n"
        + "\n\n".join(sections)
        + "\n"
    )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".md", "w") as file:
        file.write(report)
    with open(args.out + ".json", "w") as file:
        json.dump({"command": command, "machine": machine, "results": records}, file, indent=2)
    plot(records, args.out + ".png")
    print("\n".join(summary))
    print(f"\nWrote {args.out}.md, .json and .png")


def plot(records, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    labels = [f"{r['model']}\n{r['quantization']}, {r['clock']}" for r in records]
    positions = np.arange(len(records))
    figure, axis = plt.subplots(figsize=(1.6 * len(records) + 2, 3.5))
    axis.bar(positions - 0.2, [r["flops_ratio"] for r in records], 0.4,
             label="FLOPs ratio (compute-bound limit)")
    axis.bar(positions + 0.2, [r["speedup"] for r in records], 0.4,
             label="measured LiteRT speedup")
    axis.axhline(1.0, color="gray", linewidth=0.8)
    axis.set_xticks(positions, labels)
    axis.set_ylabel("original / slimmed")
    axis.set_title("Batch-1 LiteRT latency, slimmed vs original")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
