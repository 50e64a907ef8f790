"""Structured (ours, slimmed) vs tfmot's unstructured pruning at the same params reduction.

Ours: the best round of the adaptive `params70-attention` run, slimmed. tfmot:
a tf_keras copy of the same architecture with the baseline's weights, whose
Conv2D/Dense kernels lose the same number of parameters to
`prune_low_magnitude` while fine-tuning for as many epochs as our run
fine-tuned, on the same training images. Reported: test accuracy, `.tflite`
size raw and gzipped, batch-1 LiteRT latency. tfmot runs in a subprocess
(`paper_studies.tfmot_worker`), so this process never imports it.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time

import keras
import numpy as np

from tf_asap.core.counting import count_cost
from tf_asap.core.masks import strip_masks
from tf_asap.export import evaluate_tflite, export_tflite, latency_report

from paper_studies import tables
from paper_studies.adaptive import run_adaptive_case
from paper_studies.budgets import UNSTRUCTURED_REFERENCE
from paper_studies.context import read_json, say, write_json

BENCHMARKS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDIES_SCRIPT = os.path.join(BENCHMARKS, "studies.py")
BASELINE_PACKAGES = ("tensorflow-model-optimization==0.8.1", "tf-keras==2.21.0")


def baselines_site(context):
    return os.path.join(os.path.dirname(context.work), "baselines-site")


def _layer_spec(model):
    """A framework-neutral description of a plain functional Keras 3 model.

    Only the hyper-parameters that change what a layer computes are kept;
    initialisers and regularisers are dropped because the weights are copied.
    The graph comes from the public `layer.input` of each layer.
    """
    keep = {
        "Conv2D": ("filters", "kernel_size", "strides", "padding", "use_bias",
                   "activation", "dilation_rate", "groups"),
        "DepthwiseConv2D": ("kernel_size", "strides", "padding", "use_bias",
                            "activation", "depth_multiplier"),
        "Dense": ("units", "activation", "use_bias"),
        "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
        "ReLU": ("max_value", "negative_slope", "threshold"),
        "Activation": ("activation",),
        "Add": (),
        "MaxPooling2D": ("pool_size", "strides", "padding"),
        "AveragePooling2D": ("pool_size", "strides", "padding"),
        "GlobalAveragePooling2D": (),
        "Flatten": (),
        "Dropout": ("rate",),
    }
    layers = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            layers.append({"name": layer.name, "class_name": "InputLayer",
                           "shape": list(layer.output.shape[1:]), "inputs": []})
            continue
        if kind not in keep:
            raise ValueError(f"The unstructured baseline cannot translate layer "
                             f"'{layer.name}' of type {kind}; supported: {sorted(keep)}.")
        config = layer.get_config()
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        layers.append({
            "name": layer.name, "class_name": kind,
            "config": {key: config[key] for key in keep[kind] if key in config},
            "inputs": [tensor._keras_history[0].name for tensor in inputs],
        })
    return {"layers": layers, "output": model.outputs[0]._keras_history[0].name}


def _ensure_baseline_packages(site):
    if os.path.isdir(os.path.join(site, "tensorflow_model_optimization")):
        return
    say(f"installing {' '.join(BASELINE_PACKAGES)} into {site} "
         "(kept out of the main environment)")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target",
                    site, *BASELINE_PACKAGES], check=True)


def _kernel_params(model):
    return sum(int(w.numpy().size) for layer in model.layers for w in layer.weights
               if w.name == "kernel" or w.path.endswith("/kernel"))


def run_unstructured_case(context, model_name, method, seed):
    done = context.load_result("unstructured", model_name, method, seed)
    if done is not None:
        return done
    reference = run_adaptive_case(context, model_name, UNSTRUCTURED_REFERENCE, seed)
    baseline = context.baseline(model_name)
    data = context.data(model_name, seed)
    dense = strip_masks(context.fresh_model(model_name, seed))
    slim_model = keras.models.load_model(os.path.join(reference["run_dir"], "final", "slim.keras"))
    dense_cost, slim_cost = count_cost(dense), count_cost(slim_model)
    params_reduction = 1.0 - slim_cost.params / dense_cost.params
    # tfmot zeroes kernel entries only; the sparsity that removes the same
    # number of parameters from the whole model:
    sparsity = min(params_reduction * dense_cost.params / _kernel_params(dense), 0.99)

    work = context.work_dir("unstructured", model_name, method, seed)
    os.makedirs(work, exist_ok=True)
    x_test, y_test = data.test
    x_train, y_train = _training_arrays(data)
    np.savez(os.path.join(work, "data.npz"), x_train=x_train, y_train=y_train,
             x_test=x_test, y_test=y_test)
    np.savez(os.path.join(work, "weights.npz"), **{
        f"{layer.name}/{i}": weight for layer in dense.layers
        for i, weight in enumerate(layer.get_weights())
    })
    np.save(os.path.join(work, "probe_keras3.npy"), np.asarray(dense(x_test[:64], training=False)))
    epochs = max(1, int(reference["pruning_epochs"]))
    spec = {
        "model": _layer_spec(dense), "sparsity": sparsity, "epochs": epochs,
        "batch_size": baseline.batch_size,
        # Our fine-tuning starts at lr/10 (see `Budget`): tfmot gets the same rate.
        "learning_rate": baseline.learning_rate / 10, "seed": seed, "work": work,
    }
    write_json(os.path.join(work, "spec.json"), spec)
    site = baselines_site(context)
    _ensure_baseline_packages(site)
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [site, BENCHMARKS] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    ), TF_USE_LEGACY_KERAS="1")
    say(f"unstructured {model_name} seed {seed}: tfmot at sparsity {100 * sparsity:.1f}% "
        f"of kernels (= {100 * params_reduction:.1f}% of params), {epochs} epochs, in a subprocess")
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, STUDIES_SCRIPT, "_tfmot-worker", os.path.join(work, "spec.json")],
        env=environment, capture_output=True, text=True,
    )
    if completed.returncode != 0:
        raise RuntimeError("The tfmot worker failed:\n" + completed.stderr[-4000:])
    tfmot = read_json(os.path.join(work, "tfmot.json"))
    tfmot_wall = round(time.monotonic() - started, 1)

    slim_path = export_tflite(slim_model, os.path.join(work, "slim.tflite"))
    dense_path = export_tflite(dense, os.path.join(work, "dense.tflite"))
    sparse_path = os.path.join(work, "tfmot.tflite")
    paths = {"dense": dense_path, "tf_asap slim": slim_path, "tfmot sparse": sparse_path}
    rows = latency_report(
        paths, costs={"dense": dense_cost, "tf_asap slim": slim_cost,
                      "tfmot sparse": (dense_cost.params, dense_cost.flops)},
        num_runs=context.budget.latency_runs, seed=seed,
    )
    by_name = {row.name: row for row in rows}
    outcome = {
        "baseline_test_accuracy": reference["baseline_test_accuracy"],
        "params_reduction": params_reduction,
        "flops_reduction": 1.0 - slim_cost.flops / dense_cost.flops,
        "tfmot_kernel_sparsity": sparsity,
        "tfmot_epochs": epochs,
        "tfmot_copy_max_abs_diff": tfmot["copy_max_abs_diff"],
        "tfmot_test_accuracy": tfmot["accuracy"],
        "tfmot_measured_sparsity": tfmot["measured_sparsity"],
        "tfmot_wall_time_s": tfmot_wall,
        "ours_test_accuracy": reference["test_accuracy"],
        "ours_tflite_test_accuracy": evaluate_tflite(slim_path, x_test, y_test),
        "ours_wall_time_s": reference["wall_time_s"],
        "sizes_bytes": {name: row.size_bytes for name, row in by_name.items()},
        "gzip_bytes": {name: len(gzip.compress(open(path, "rb").read(), 9))
                       for name, path in paths.items()},
        "latency_ms": {name: row.latency_ms for name, row in by_name.items()},
        "latency_p10_ms": {name: row.latency_p10_ms for name, row in by_name.items()},
        "latency_p90_ms": {name: row.latency_p90_ms for name, row in by_name.items()},
        "speedup": {name: row.speedup for name, row in by_name.items()},
        "flops_ratio": dense_cost.flops / slim_cost.flops,
        "latency_runs": context.budget.latency_runs,
    }
    outcome["slim_speedup_over_flops_ratio"] = (
        outcome["speedup"]["tf_asap slim"] / outcome["flops_ratio"]
    )
    return context.save_result("unstructured", model_name, method, seed, outcome)


def _training_arrays(data):
    """The fine-tuning images as arrays (one pass over `data.train`, augmentation included)."""
    xs, ys = [], []
    for x, y in data.train:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def study_unstructured(context, models, methods):
    results = tables.run_cases(context, "unstructured", models, ["tfmot-vs-slim"],
                               run_unstructured_case)
    rows, verdicts = [], []
    for r in results:
        for name, accuracy, wall in (
                ("dense baseline", r["baseline_test_accuracy"], None),
                ("tf_asap slim (ours)", r["ours_test_accuracy"], r["ours_wall_time_s"]),
                ("tfmot prune_low_magnitude", r["tfmot_test_accuracy"], r["tfmot_wall_time_s"])):
            key = {"dense baseline": "dense", "tf_asap slim (ours)": "tf_asap slim",
                   "tfmot prune_low_magnitude": "tfmot sparse"}[name]
            rows.append([
                r["model"], r["seed"], name, tables.pretty(accuracy),
                "0.00%" if key == "dense" else tables.pretty(r["params_reduction"]),
                f"{r['sizes_bytes'][key] / 1024:.1f}", f"{r['gzip_bytes'][key] / 1024:.1f}",
                f"{r['latency_ms'][key]:.3f} ({r['latency_p10_ms'][key]:.3f}-"
                f"{r['latency_p90_ms'][key]:.3f})",
                f"{r['speedup'][key]:.2f}x", "n/a" if wall is None else f"{wall:.0f}",
            ])
        pruned = r["flops_ratio"] >= 1.05
        slim_ok = r["slim_speedup_over_flops_ratio"] >= 0.9
        tfmot_none = r["speedup"]["tfmot sparse"] < 1.1
        slim_verdict = ("MET" if slim_ok else "NOT MET") if pruned else (
            "NOT MEASURED: the reference run removed no FLOPs")
        tfmot_verdict = ("MET" if tfmot_none else "NOT MET") if pruned else "NOT MEASURED"
        verdicts.append(
            f"{r['model']} seed {r['seed']}: slim speedup {r['speedup']['tf_asap slim']:.2f}x "
            f"vs FLOPs ratio {r['flops_ratio']:.2f}x = {100 * r['slim_speedup_over_flops_ratio']:.0f}% "
            f"(goal >= 90%: {slim_verdict}); tfmot speedup "
            f"{r['speedup']['tfmot sparse']:.2f}x (goal: no speedup: "
            f"{tfmot_verdict}); tf_keras copy matched Keras 3 to "
            f"{r['tfmot_copy_max_abs_diff']:.1e}; tfmot measured kernel sparsity "
            f"{100 * r['tfmot_measured_sparsity']:.1f}%; our .tflite accuracy "
            f"{100 * r['ours_tflite_test_accuracy']:.2f}%")
    header = ["model", "seed", "model variant", "test acc", "params red.", ".tflite KiB",
              "gzip KiB", "batch-1 LiteRT ms, median (p10-p90)", "speedup", "wall s"]
    notes = ["Same params reduction: ours from the adaptive "
             f"`{UNSTRUCTURED_REFERENCE}` run (slimmed); tfmot zeroes the same number of "
             "parameters in Conv2D/Dense kernels of a tf_keras copy of the same "
             "architecture and baseline weights, fine-tuned on the same training images for as "
             "many epochs as our run fine-tuned (ConstantSparsity, frequency 1, SGD at lr/10), "
             "then strip_pruning. Wall s: ours is the whole adaptive run, tfmot its "
             "fine-tuning. Latency: LiteRT, 1 thread, XNNPACK, interleaved runs; the CPU is "
             "shared, so timings are noisy."] + verdicts
    tables.plot_unstructured(context, results)
    return header, rows, notes


