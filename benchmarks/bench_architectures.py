"""Architecture sweep: channel groups, params removed and slim time per keras.applications family.

For each family (weights=None, small input, BatchNormalization statistics
randomised): `make_prunable`, `channel_groups`, random masks keeping each
channel with probability 1/2, `slim`, and a check that the slimmed model
computes the masked model's function. Prints a markdown table and appends it to
RESULTS.md under "Architecture sweep".

Usage:
    python benchmarks/bench_architectures.py [--families ResNet50 EfficientNetB0 ...]
"""

import argparse
import collections
import datetime
import os
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_asap as asap  # noqa: E402
from tests.architectures import randomize_batchnorm  # noqa: E402

A = keras.applications
FAMILIES = {
    "ResNet50": (A.ResNet50, 32, {}),
    "ResNet50V2": (A.ResNet50V2, 32, {}),
    "DenseNet121": (A.DenseNet121, 32, {}),
    "EfficientNetB0": (A.EfficientNetB0, 32, {}),
    "EfficientNetV2B0": (A.EfficientNetV2B0, 32, {}),
    "Xception": (A.Xception, 71, {}),
    "InceptionV3": (A.InceptionV3, 75, {}),
    "InceptionResNetV2": (A.InceptionResNetV2, 75, {}),
    "MobileNet": (A.MobileNet, 32, {"alpha": 0.25}),
    "MobileNetV2": (A.MobileNetV2, 32, {"alpha": 0.35}),
    "MobileNetV3Small": (A.MobileNetV3Small, 32, {}),
    "VGG16": (A.VGG16, 32, {}),
    "NASNetMobile": (A.NASNetMobile, 32, {}),
    "ConvNeXtTiny": (A.ConvNeXtTiny, 32, {}),
}


def randomize_layer_scales(model, seed=0):
    """ConvNeXt's LayerScale starts at 1e-6, which would hide any difference in its blocks."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "LayerScale":
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.weights])
    return model


def reason_kind(reason):
    """A blocking reason without layer names, so that reasons of one kind count together."""
    return re.sub(r"'[^']*'", "'…'", reason).split(" (")[0].split(", ")[0]


def measure(name):
    build, size, options = FAMILIES[name]
    model = randomize_layer_scales(randomize_batchnorm(
        build(weights=None, input_shape=(size, size, 3), classes=5, classifier_activation=None, **options)
    ))
    pm = asap.make_prunable(model)
    groups = asap.channel_groups(pm)
    rng = np.random.default_rng(0)
    masks = {}
    for group in groups:
        if group.prunable:
            keep = rng.random(group.size) > 0.5
            keep[rng.permutation(group.size)[: group.min_filters]] = True
            masks[group.name] = keep
    asap.apply_masks(pm, masks)
    start = time.perf_counter()
    small = asap.slim(pm)
    slim_seconds = time.perf_counter() - start
    x = rng.normal(size=(2, size, size, 3)).astype("float32")
    masked, slimmed = np.asarray(pm(x, training=False)), np.asarray(small(x, training=False))
    reasons = collections.Counter(reason_kind(g.reason) for g in groups if not g.prunable)
    return {
        "family": f"{name} {size}x{size}",
        "groups": len(groups),
        "prunable": sum(g.prunable for g in groups),
        "removed": 1.0 - small.count_params() / model.count_params(),
        "slim": slim_seconds,
        "diff": float(np.abs(slimmed - masked).max() / np.abs(masked).max()),
        "blocked": "; ".join(f"{count}x {reason}" for reason, count in reasons.most_common(2)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "RESULTS.md"))
    args = parser.parse_args()
    lines = [
        "| family | groups | prunable | params removed (random 50% masks) | slim s | max rel. diff | main reasons groups stay whole |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.families:
        row = measure(name)
        lines.append(
            f"| {row['family']} | {row['groups']} | {row['prunable']} | {row['removed']:.1%} | "
            f"{row['slim']:.1f} | {row['diff']:.1e} | {row['blocked']} |"
        )
        print(lines[-1], flush=True)
        keras.backend.clear_session()
    command = "python benchmarks/bench_architectures.py" + (
        "" if args.families == list(FAMILIES) else " --families " + " ".join(args.families)
    )
    with open(args.results, "a") as results:
        results.write(
            f"\n## Architecture sweep ({datetime.date.today()}, 2 cores shared, Keras {keras.__version__})\n"
            f"Command: `{command}`\n\n" + "\n".join(lines) + "\n"
        )


if __name__ == "__main__":
    main()
