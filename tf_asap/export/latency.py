"""Batch-1 LiteRT latency of several models side by side, next to their FLOPs ratio.

A slimmed model's speedup is bounded by its FLOPs ratio on a compute-bound
runtime; on small models per-operator overhead dominates and the speedup falls
short. The report shows both, and their quotient, so that the gap can be read
off directly.
"""

import dataclasses
import statistics
import time

import keras
import numpy as np

from tf_asap.checks import check_choice, check_int
from tf_asap.core.counting import count_cost
from tf_asap.errors import ConfigurationError, UnsupportedLayerError, UnsupportedModelError
from tf_asap.export.flatbuffer import io_tensors, read_model_bytes
from tf_asap.export.litert import litert_interpreter, resize_batch
from tf_asap.export.runtime_io import quantize
from tf_asap.export.tflite import convert_tflite

_CLOCKS = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}


@dataclasses.dataclass(frozen=True)
class LatencyRow:
    """One model's line in a latency report.

    Attributes:
        name: The key the model was given under.
        size_bytes: Size of the `.tflite` flatbuffer.
        latency_ms: Median batch-1 latency in milliseconds.
        latency_p10_ms / latency_p90_ms: 10th and 90th percentiles.
        params: Parameter count, or `None` when unknown.
        flops: FLOPs of one sample, or `None` when unknown.
        speedup: Baseline latency divided by this latency.
        flops_ratio: Baseline FLOPs divided by these FLOPs (the speedup a
            perfectly compute-bound runtime would reach), or `None`.
        efficiency: `speedup / flops_ratio`, how close the runtime gets to
            the FLOPs bound, or `None`.
    """

    name: str
    size_bytes: int
    latency_ms: float
    latency_p10_ms: float
    latency_p90_ms: float
    params: int = None
    flops: int = None
    speedup: float = 1.0
    flops_ratio: float = None
    efficiency: float = None


def _cost_pair(cost):
    """Reads (params, flops) from a pair, a mapping or an object."""
    if cost is None:
        return None, None
    if isinstance(cost, dict):
        return cost.get("params"), cost.get("flops")
    if isinstance(cost, (tuple, list)) and len(cost) == 2:
        return cost[0], cost[1]
    if hasattr(cost, "params") and hasattr(cost, "flops"):
        return cost.params, cost.flops
    raise ConfigurationError(
        "Each value of `costs` must be a (params, flops) pair, a dict with "
        "'params' and 'flops', or an object with .params and .flops; "
        f"received {type(cost).__name__}. Omit the model from `costs` to count it."
    )


def _count_cost(model):
    try:
        return count_cost(model)
    except (UnsupportedModelError, UnsupportedLayerError):
        # Latency is still worth reporting for a model we cannot count.
        return None


def _check_arguments(models, baseline, clock, num_threads, num_runs, warmup_runs):
    """Validates the arguments of `latency_report`; returns the baseline's name."""
    if not models:
        raise ConfigurationError("`models` is empty; give at least one model, e.g. {'original': model}.")
    names = list(models)
    baseline = names[0] if baseline is None else baseline
    if baseline not in models:
        raise ConfigurationError(
            f"`baseline` {baseline!r} is not one of the models {names}. Pass one of those names, or omit it."
        )
    check_choice("clock", clock, tuple(_CLOCKS))
    check_int("num_threads", num_threads, minimum=1)
    if clock == "cpu" and num_threads != 1:
        raise ConfigurationError(
            "clock='cpu' measures the calling thread only, which misses the "
            f"work of LiteRT's other threads: use num_threads=1, received "
            f"{num_threads}."
        )
    check_int("num_runs", num_runs, minimum=1)
    check_int("warmup_runs", warmup_runs, minimum=0)
    return baseline


def _ready_interpreter(flatbuffer, num_threads, rng, warmup_runs):
    """A LiteRT interpreter with batch 1, a random input set, and warmed up."""
    input_infos, _ = io_tensors(flatbuffer)
    interpreter = litert_interpreter(flatbuffer, num_threads)
    resize_batch(interpreter, 1)
    details = interpreter.get_input_details()
    for info in input_infos:
        sample = rng.standard_normal((1,) + info.shape[1:]).astype(np.float32)
        interpreter.set_tensor(details[info.position]["index"], quantize(sample, info))
    for _ in range(warmup_runs):
        interpreter.invoke()
    return interpreter


def _interleaved_timings(interpreters, num_runs, now):
    """Milliseconds per call, timing the models round robin."""
    timings = {name: [] for name in interpreters}
    for _ in range(num_runs):
        for name, interpreter in interpreters.items():
            start = now()
            interpreter.invoke()
            timings[name].append((now() - start) / 1e6)
    return timings


def _row(name, timings, baseline_median, sizes, cost, baseline_cost):
    params, flops = _cost_pair(cost)
    _, base_flops = _cost_pair(baseline_cost)
    median = statistics.median(timings)
    speedup = baseline_median / median
    flops_ratio = base_flops / flops if flops and base_flops else None
    p10, p90 = np.percentile(timings, [10, 90])
    return LatencyRow(
        name=name,
        size_bytes=sizes[name],
        latency_ms=median,
        latency_p10_ms=float(p10),
        latency_p90_ms=float(p90),
        params=None if params is None else int(params),
        flops=None if flops is None else int(flops),
        speedup=speedup,
        flops_ratio=flops_ratio,
        efficiency=None if flops_ratio is None else speedup / flops_ratio,
    )


def latency_report(
    models,
    quantization="none",
    representative_data=None,
    costs=None,
    baseline=None,
    num_runs=200,
    warmup_runs=20,
    num_threads=1,
    seed=0,
    clock="wall",
):
    """Measures batch-1 LiteRT latency and size of several models side by side.

    Keras models are converted with `convert_tflite(model, quantization,
    batch_size=1)`; `.tflite` paths or bytes are used as they are. Every model
    gets its own interpreter with `num_threads` threads (XNNPACK, LiteRT's
    default CPU path), `warmup_runs` untimed calls, then `num_runs` timed
    calls. The timed calls are interleaved across models (round robin) so that
    CPU frequency changes and background load hit all models alike; the
    median is reported.

    `clock="cpu"` times each call with the calling thread's CPU time: with one
    LiteRT thread the work runs on the calling thread, so this excludes the
    time the process waits while other processes hold the cores. Use it on a
    shared or loaded machine, where wall-clock medians mostly measure the
    neighbours.

    With params and FLOPs (from `costs`, or `tf_asap.count_cost` for Keras
    models), each row also shows the FLOPs ratio to the baseline, the speedup
    a compute-bound runtime would reach, and `efficiency = speedup /
    flops_ratio`.

    Args:
        models: Dict from display name to a `keras.Model`, a `.tflite` path
            or `.tflite` bytes. Insertion order is the row order.
        quantization: Quantization for Keras models (see `convert_tflite`).
            Defaults to `"none"`.
        representative_data: Calibration data when `quantization="int8"`.
            Defaults to `None`.
        costs: Optional dict from name to `(params, flops)`, a dict with
            those keys, or an object with `.params` and `.flops`. Defaults to
            `None`.
        baseline: Name of the reference model for speedups. Defaults to
            `None`, the first model.
        num_runs: Timed calls per model. Defaults to `200`.
        warmup_runs: Untimed calls per model before timing. Defaults to `20`.
        num_threads: LiteRT threads. Defaults to `1`.
        seed: Seed of the random input. Defaults to `0`.
        clock: `"wall"` (elapsed time) or `"cpu"` (CPU time of the calling
            thread; only meaningful with `num_threads=1`). Defaults to
            `"wall"`.

    Returns:
        A list of `LatencyRow`, in the order of `models`.

    Raises:
        ConfigurationError: If `models` is empty, `baseline` is not one of
            its names, or run counts are not positive.
        ImportError: If `ai-edge-litert` is not installed.

    Example:

    >>> rows = latency_report({"original": model, "slimmed": slim_model})
    >>> print(render_latency_table(rows))
    """
    baseline = _check_arguments(models, baseline, clock, num_threads, num_runs, warmup_runs)
    costs = dict(costs or {})
    rng = np.random.default_rng(seed)
    interpreters, sizes = {}, {}
    for name, model in models.items():
        if isinstance(model, keras.Model):
            flatbuffer = convert_tflite(model, quantization, representative_data, batch_size=1)
            if name not in costs:
                costs[name] = _count_cost(model)
        else:
            flatbuffer = read_model_bytes(model)
        interpreters[name] = _ready_interpreter(flatbuffer, num_threads, rng, warmup_runs)
        sizes[name] = len(flatbuffer)
    timings = _interleaved_timings(interpreters, num_runs, _CLOCKS[clock])
    baseline_median = statistics.median(timings[baseline])
    return [
        _row(name, timings[name], baseline_median, sizes, costs.get(name), costs.get(baseline))
        for name in models
    ]


def int8_latency_caveat(cpuinfo="/proc/cpuinfo"):
    """A sentence on why int8 latency may not follow FLOPs on this CPU, or `None`.

    On x86 CPUs with AMX (Intel since Sapphire Rapids) XNNPACK runs int8
    convolutions on AMX tiles, 64 output channels at a time: every layer of
    up to 64 channels costs the same, so a slimmed small model is about as
    fast in int8 as the original there, while on CPUs without AMX its latency
    follows its channels in blocks of 16 (measured in
    `benchmarks/results/runtime_widths*.md`). Reports print this next to an
    int8 latency measured on such a CPU.

    Args:
        cpuinfo: The file listing the CPU's flags. Defaults to
            `"/proc/cpuinfo"`; elsewhere (or unreadable) there is no caveat.

    Returns:
        The sentence, or `None` when the CPU has no AMX.
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as file:
            flags = {flag for line in file if line.startswith("flags") for flag in line.split()}
    except OSError:
        return None
    if "amx_int8" not in flags:
        return None
    return (
        "This CPU has AMX: LiteRT's int8 kernels compute 64 output channels at a time on it, so "
        "int8 layers of up to 64 channels all cost the same and a slimmed small model gains "
        "little int8 speed here; on CPUs without AMX its int8 latency follows its channels."
    )


def _human(count):
    if count is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def render_latency_table(rows):
    """Renders `latency_report` rows as a Markdown table.

    Args:
        rows: A list of `LatencyRow`.

    Returns:
        The table as a string, one row per model, with size, params, FLOPs,
        median latency (and its 10th-90th percentile range), speedup, FLOPs
        ratio and efficiency (`speedup / FLOPs ratio`; 100% is the
        compute-bound limit).

    Example:

    >>> print(render_latency_table(latency_report({"a": a, "b": b})))
    | model | size (KiB) | params | FLOPs | latency (ms) | ...
    """
    lines = [
        "| model | size (KiB) | params | FLOPs | latency ms (p10-p90) | speedup | FLOPs ratio | speedup / FLOPs ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = "-" if row.flops_ratio is None else f"{row.flops_ratio:.2f}x"
        efficiency = "-" if row.efficiency is None else f"{row.efficiency:.0%}"
        lines.append(
            f"| {row.name} | {row.size_bytes / 1024:.1f} | {_human(row.params)} "
            f"| {_human(row.flops)} | {row.latency_ms:.3f} "
            f"({row.latency_p10_ms:.3f}-{row.latency_p90_ms:.3f}) "
            f"| {row.speedup:.2f}x | {ratio} | {efficiency} |"
        )
    return "\n".join(lines)
