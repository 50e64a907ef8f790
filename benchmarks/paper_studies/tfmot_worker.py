"""The tfmot side of the unstructured baseline, run in a subprocess.

`studies.py _tfmot-worker SPEC` calls `tfmot_worker` with
`TF_USE_LEGACY_KERAS=1` and tfmot / tf_keras on `PYTHONPATH` (installed into
`benchmarks/work/baselines-site`, never into the main environment). It never
imports tf_asap or Keras 3: importing tfmot switches `tf.keras` to tf_keras.
It rebuilds the model from a framework-neutral layer list, loads the
baseline's weights, prunes Conv2D/Dense kernels to the given sparsity with
`prune_low_magnitude` while fine-tuning, strips the wrappers, evaluates on
the test arrays and converts to `.tflite`.
"""

import json
import os


def read_json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def write_json(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2, sort_keys=True)
    os.replace(temporary, path)


def tfmot_worker(spec_path):
    """Runs in a subprocess with TF_USE_LEGACY_KERAS=1: never imports tf_asap."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    spec = read_json(spec_path)
    work = spec["work"]
    tf_keras.utils.set_random_seed(spec["seed"])
    tensors = {}
    model_spec = spec["model"]
    for layer_spec in model_spec["layers"]:
        if layer_spec["class_name"] == "InputLayer":
            tensors[layer_spec["name"]] = tf_keras.Input(
                shape=tuple(layer_spec["shape"]), name=layer_spec["name"])
            continue
        layer = getattr(tf_keras.layers, layer_spec["class_name"])(
            name=layer_spec["name"], **layer_spec["config"])
        inputs = [tensors[name] for name in layer_spec["inputs"]]
        tensors[layer_spec["name"]] = layer(inputs if len(inputs) > 1 else inputs[0])
    inputs = [tensors[l["name"]] for l in model_spec["layers"] if l["class_name"] == "InputLayer"]
    model = tf_keras.Model(inputs, tensors[model_spec["output"]])
    weights = np.load(os.path.join(work, "weights.npz"))
    for layer in model.layers:
        count = len(layer.get_weights())
        if count:
            layer.set_weights([weights[f"{layer.name}/{i}"] for i in range(count)])
    data = np.load(os.path.join(work, "data.npz"))
    probe = np.load(os.path.join(work, "probe_keras3.npy"))
    copy_diff = float(np.max(np.abs(model(data["x_test"][:64], training=False).numpy() - probe)))

    steps = int(np.ceil(len(data["x_train"]) / spec["batch_size"]))
    schedule = tfmot.sparsity.keras.ConstantSparsity(
        spec["sparsity"], begin_step=0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(
        optimizer=tf_keras.optimizers.SGD(spec["learning_rate"], momentum=0.9, nesterov=True),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"])
    pruned.fit(data["x_train"], data["y_train"], batch_size=spec["batch_size"],
               epochs=spec["epochs"], steps_per_epoch=steps, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    stripped.compile(loss=tf_keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    _, accuracy = stripped.evaluate(data["x_test"], data["y_test"], verbose=0)
    kernels = [w.numpy() for w in stripped.weights if "kernel" in w.name]
    zeros = sum(int((k == 0).sum()) for k in kernels)
    total = sum(k.size for k in kernels)
    converter = tf.lite.TFLiteConverter.from_keras_model(stripped)
    with open(os.path.join(work, "tfmot.tflite"), "wb") as file:
        file.write(converter.convert())
    write_json(os.path.join(work, "tfmot.json"), {
        "accuracy": float(accuracy), "copy_max_abs_diff": copy_diff,
        "measured_sparsity": zeros / total,
    })
