"""Time and memory of finding channel groups and slimming a large model.

Issue target: finding groups and slimming keras.applications.ResNet50
(weights=None) takes <= 10 s on a 2-core machine and never holds more than two
copies of the weights.

Memory is read from the process's resident set (VmRSS, sampled every 5 ms by
a thread) and expressed in copies of the model's weights: the masked model
already holds one copy, so "peak growth <= 1 copy" means at most two copies
exist at any time.

Usage:
    python benchmarks/bench_core.py [--model resnet50|mobilenetv2] [--size 224]
"""

import argparse
import datetime
import os
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_asap as asap  # noqa: E402


def rss_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    def __init__(self):
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", choices=["resnet50", "mobilenetv2"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--keep", type=float, default=0.5, help="fraction of channels kept")
    parser.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "RESULTS.md"))
    args = parser.parse_args()

    build = {"resnet50": keras.applications.ResNet50, "mobilenetv2": keras.applications.MobileNetV2}
    model = build[args.model](weights=None, input_shape=(args.size, args.size, 3))
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.weights)

    start = time.perf_counter()
    pm = asap.make_prunable(model)
    make_seconds = time.perf_counter() - start
    del model
    rng = np.random.default_rng(0)

    before = rss_bytes()
    with PeakRss() as peak:
        start = time.perf_counter()
        groups = asap.channel_groups(pm)
        groups_seconds = time.perf_counter() - start
        asap.apply_masks(
            pm,
            {g.name: rng.random(g.size) < args.keep for g in groups if g.prunable},
        )
        start = time.perf_counter()
        small = asap.slim(pm)
        slim_seconds = time.perf_counter() - start
    growth_copies = (peak.peak - before) / weight_bytes

    x = rng.normal(size=(1, args.size, args.size, 3)).astype("float32")
    diff = float(np.abs(np.asarray(pm(x)) - np.asarray(small(x))).max())
    cost = asap.count_cost(pm)
    row = (
        f"| {args.model} {args.size}x{args.size} | {len(groups)} ({sum(g.prunable for g in groups)} prunable) "
        f"| {make_seconds:.2f} | {groups_seconds:.2f} | {slim_seconds:.2f} | {groups_seconds + slim_seconds:.2f} "
        f"| {weight_bytes / 2**20:.0f} MiB | {growth_copies:.2f} | {cost.params_reduction:.1%} | {diff:.1e} |"
    )
    header = (
        "| model | groups | make_prunable s | channel_groups s | slim s | groups+slim s "
        "| weights | peak growth (weight copies) | params removed | max abs diff |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    print(header)
    print(row)
    command = "python benchmarks/bench_core.py " + " ".join(
        f"--{k} {v}" for k, v in (("model", args.model), ("size", args.size), ("keep", args.keep))
    )
    with open(args.results, "a") as results:
        results.write(
            f"\n### Channel groups + slim ({datetime.date.today()}, {os.cpu_count()} cores)\n"
            f"Command: `{command}`\n\n{header}\n{row}\n"
        )


if __name__ == "__main__":
    main()
