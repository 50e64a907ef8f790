"""How LiteRT's batch-1 latency of one convolution follows its channel count.

A slimmed model is faster only where the runtime's kernels get cheaper with
fewer channels. CPU kernels process output channels in fixed blocks (the SIMD
or matrix tile), so the latency of a layer is a step function of its width,
not a line through FLOPs; on some CPUs the step is wider than every layer of a
small model, and then channel pruning cannot speed that model up at all. This
benchmark measures the steps of the machine it runs on.

For each stage shape (input size, input channels) it builds one 3x3 `Conv2D`
+ ReLU per output width, converts each to TFLite (batch 1; `int8` calibrated
on random data, which does not change the kernels chosen) and times them side
by side with `tf_asap.export.latency_report` (one LiteRT thread, XNNPACK,
interleaved runs, median of the calling thread's CPU time). Each row gives the
latency and its ratio to the widest layer next to the FLOPs ratio: where the
latency stays flat while FLOPs fall, pruning those channels buys nothing on
this machine.

`--without-amx` times XNNPACK as on x86 CPUs without AMX (see
`benchmarks/amx.py`).

Usage:
    python benchmarks/bench_widths.py [--quantization none int8]
        [--shapes 28x16 14x32 7x64] [--widths 4 8 16 24 32 48 64 96 128]
        [--runs 1000] [--without-amx] [--out benchmarks/results/runtime_widths]
"""

import argparse
import datetime
import json
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tf_asap import export  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from amx import amx_request_allowed, withhold_amx  # noqa: E402 - needs the path above

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "amx_int8", "asimddp", "i8mm")


def stage_shape(text):
    """`28x16` -> (28, 16): input height = width, input channels."""
    try:
        size, channels = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is SIZExCHANNELS, e.g. 28x16; received {text!r}")
    if size < 1 or channels < 1:
        raise argparse.ArgumentTypeError(f"sizes and channels must be positive; received {text!r}")
    return size, channels


def cpu_features():
    """The CPU's model name and the SIMD/matrix features that decide XNNPACK's kernels."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                if key.strip() in ("flags", "Features"):
                    flags.update(value.split())
    except OSError:
        pass
    return name, [feature for feature in CPU_FEATURES if feature in flags]


def describe_machine():
    """The CPU, its kernel-deciding features, and whether this process may use AMX."""
    name, features = cpu_features()
    amx = "AMX in use" if amx_request_allowed() else "AMX not in use"
    return (f"{name} ({', '.join(features) or 'none of ' + '/'.join(CPU_FEATURES)}; {amx}), "
            f"{os.cpu_count()} cores, LiteRT 1 thread (XNNPACK), thread CPU time")


def one_conv(size, channels, width):
    inputs = keras.Input((size, size, channels))
    outputs = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, outputs, name=f"conv_{size}x{channels}_to_{width}")


def measure(shape, widths, quantization, runs, warmup, rng):
    size, channels = shape
    models = {width: one_conv(size, channels, width) for width in sorted(widths, reverse=True)}
    calibration = rng.standard_normal((16, size, size, channels)).astype(np.float32)
    rows = export.latency_report(
        {f"{width}": model for width, model in models.items()},
        quantization=quantization,
        representative_data=calibration if quantization == "int8" else None,
        num_runs=runs, warmup_runs=warmup, clock="cpu",
    )
    widest = rows[0]
    return [
        {
            "width": int(row.name),
            "latency_us": row.latency_ms * 1000,
            "latency_share": row.latency_ms / widest.latency_ms,
            "flops_share": row.flops / widest.flops,
        }
        for row in rows
    ]


def render(shape, quantization, records):
    size, channels = shape
    lines = [
        f"**{size}x{size}x{channels} input, 3x3 conv, `{quantization}`**",
        "",
        "| output channels | latency us | latency / widest | FLOPs / widest |",
        "|---:|---:|---:|---:|",
    ]
    for record in sorted(records, key=lambda r: r["width"]):
        lines.append(
            f"| {record['width']} | {record['latency_us']:.1f} "
            f"| {record['latency_share']:.2f} | {record['flops_share']:.2f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quantization", nargs="+", default=["none", "int8"],
                        choices=list(export.QUANTIZATION_MODES))
    parser.add_argument("--shapes", nargs="+", type=stage_shape,
                        default=[(28, 16), (14, 32), (7, 64)],
                        help="SIZExCHANNELS of each input (default: resnet20's three stages)")
    parser.add_argument("--widths", nargs="+", type=int,
                        default=[4, 8, 12, 16, 24, 32, 48, 64, 96, 128])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--without-amx", action="store_true",
                        help="withhold AMX from this process (XNNPACK's AVX-512 kernels)")
    parser.add_argument("--out", default=os.path.join(RESULTS_DIR, "runtime_widths"),
                        help="prefix of the .md and .json written")
    args = parser.parse_args()
    if min(args.widths) < 1:
        parser.error(f"--widths must be positive; received {args.widths}")
    if args.without_amx:
        withhold_amx()
    command = "python benchmarks/bench_widths.py " + " ".join(sys.argv[1:])
    rng = np.random.default_rng(args.seed)
    machine = describe_machine()
    results, sections = [], []
    for quantization in args.quantization:
        for shape in args.shapes:
            records = measure(shape, args.widths, quantization, args.runs, args.warmup, rng)
            results.append({"size": shape[0], "channels": shape[1],
                            "quantization": quantization, "rows": records})
            sections.append(render(shape, quantization, records))
            print(sections[-1] + "\n", flush=True)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    report = (
        f"### LiteRT latency of one 3x3 convolution by output width "
        f"({datetime.date.today()}, {machine}, load average at the end {load})\n"
        f"Command: `{command}`\n\n" + "\n\n".join(sections) + "\n"
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".md", "w", encoding="utf-8") as file:
        file.write(report)
    with open(args.out + ".json", "w", encoding="utf-8") as file:
        json.dump({"command": command, "machine": machine, "results": results}, file, indent=2)
    print(f"Wrote {args.out}.md and .json")


if __name__ == "__main__":
    main()
