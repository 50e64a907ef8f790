"""tf_asap: adaptive activation-based structured pruning for Keras 3.

The public API, in the order data flows through it:

- masks: `make_prunable`, `apply_masks`, `get_masks`, `strip_masks`;
- graph: `channel_groups`, `ChannelGroup` (which channels are pruned together),
  `register_layer`, `LayerRule` (teach tf_asap a custom layer's channels);
- counting: `count_cost` (params and FLOPs, dense and effective);
- statistics and importance: `collect_activation_stats`, `tf_asap.pruning.importance`;
- thresholds: `threshold_masks`, `ratio_masks`, `attention_reference`;
- policies: `AccuracyGuaranteed`, `ParamsTarget`, `FlopsTarget`;
- controller and callbacks: `RoundController`, `train_baseline`,
  `AdaptivePruning`, `ActivationStatsCallback`;
- surgery: `slim`;
- export: `export_saved_model`, `export_tflite`, `export_micro`,
  `latency_report`;
- on top: `load_dataset`, `build_model`.
"""

__version__ = "0.1.0"

import importlib
import os
import sys

# Where each public name lives: name -> (module, attribute in it); attribute
# None means the name is the module itself. `tf_asap.X` imports its module on
# first use (PEP 562), so that `tf-asap --help` answers before TensorFlow is
# imported; outside the command line every name is imported at once (below),
# as before, which also registers tf_asap's layers and the recipe's optimizer
# with Keras for `keras.models.load_model`.
_PUBLIC = {
    "AccuracyGuaranteed": ("tf_asap.pruning.policies", "AccuracyGuaranteed"),
    "ActivationAttention": ("tf_asap.pruning.importance", "ActivationAttention"),
    "ActivationStatistics": ("tf_asap.pruning.stats", "ActivationStatistics"),
    "ActivationStatsCallback": ("tf_asap.pruning.stats_callback", "ActivationStatsCallback"),
    "AdaptivePruning": ("tf_asap.rounds.callback", "AdaptivePruning"),
    "APoZ": ("tf_asap.pruning.importance", "APoZ"),
    "apply_masks": ("tf_asap.core.masks", "apply_masks"),
    "as_arrays": ("tf_asap.inputs", "as_arrays"),
    "as_batches": ("tf_asap.inputs", "as_batches"),
    "attention_reference": ("tf_asap.pruning.thresholds", "attention_reference"),
    "available_models": ("tf_asap.zoo", "available_models"),
    "Baseline": ("tf_asap.rounds.baseline", "Baseline"),
    "build_model": ("tf_asap.zoo", "build_model"),
    "channel_groups": ("tf_asap.core.analysis", "channel_groups"),
    "ChannelGroup": ("tf_asap.core.channels", "ChannelGroup"),
    "ChannelRef": ("tf_asap.core.channels", "ChannelRef"),
    "choose_calibration": ("tf_asap.rounds.calibration", "choose_calibration"),
    "collect_activation_stats": ("tf_asap.pruning.stats", "collect_activation_stats"),
    "convert_tflite": ("tf_asap.export", "convert_tflite"),
    "Cost": ("tf_asap.core.counting", "Cost"),
    "count_cost": ("tf_asap.core.counting", "count_cost"),
    "Decision": ("tf_asap.pruning.policies", "Decision"),
    "evaluate_tflite": ("tf_asap.export", "evaluate_tflite"),
    "evaluate_tflite_micro": ("tf_asap.export", "evaluate_tflite_micro"),
    "export_micro": ("tf_asap.export", "export_micro"),
    "export_saved_model": ("tf_asap.export", "export_saved_model"),
    "export_tflite": ("tf_asap.export", "export_tflite"),
    "find_arena_size": ("tf_asap.export", "find_arena_size"),
    "Distillation": ("tf_asap.rounds.distillation", "Distillation"),
    "FlopsTarget": ("tf_asap.pruning.policies", "FlopsTarget"),
    "get_criterion": ("tf_asap.pruning.importance", "get_criterion"),
    "get_masks": ("tf_asap.core.masks", "get_masks"),
    "importance": ("tf_asap.pruning.importance", None),
    "L1Norm": ("tf_asap.pruning.importance", "L1Norm"),
    "L2Norm": ("tf_asap.pruning.importance", "L2Norm"),
    "latency_report": ("tf_asap.export", "latency_report"),
    "LatencyRow": ("tf_asap.export", "LatencyRow"),
    "LayerCost": ("tf_asap.core.counting", "LayerCost"),
    "LayerRule": ("tf_asap.core.rules", "LayerRule"),
    "load_arrays": ("tf_asap.data", "load_arrays"),
    "load_dataset": ("tf_asap.data", "load_dataset"),
    "make_prunable": ("tf_asap.core.masks", "make_prunable"),
    "MaskedLayer": ("tf_asap.core.layers", "MaskedLayer"),
    "MicroBundle": ("tf_asap.export", "MicroBundle"),
    "ParamsTarget": ("tf_asap.pruning.policies", "ParamsTarget"),
    "policies": ("tf_asap.pruning.policies", None),
    "Policy": ("tf_asap.pruning.policies", "Policy"),
    "policy_from_state": ("tf_asap.pruning.policies", "policy_from_state"),
    "PruningResult": ("tf_asap.rounds.result", "PruningResult"),
    "RandomScore": ("tf_asap.pruning.importance", "RandomScore"),
    "ratio_masks": ("tf_asap.pruning.thresholds", "ratio_masks"),
    "recipe": ("tf_asap.recipe", None),
    "register_layer": ("tf_asap.core.rules", "register_layer"),
    "render_latency_table": ("tf_asap.export", "render_latency_table"),
    "report": ("tf_asap.rounds.report", None),
    "RoundController": ("tf_asap.rounds.controller", "RoundController"),
    "RoundResult": ("tf_asap.pruning.policies", "RoundResult"),
    "run_tflite": ("tf_asap.export", "run_tflite"),
    "run_tflite_micro": ("tf_asap.export", "run_tflite_micro"),
    "slim": ("tf_asap.core.surgery", "slim"),
    "strip_masks": ("tf_asap.core.masks", "strip_masks"),
    "threshold_masks": ("tf_asap.pruning.thresholds", "threshold_masks"),
    "train_baseline": ("tf_asap.rounds.baseline", "train_baseline"),
}

__all__ = sorted(_PUBLIC, key=str.lower)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'tf_asap' has no attribute {name!r}")
    module_name, attribute = _PUBLIC[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))


def _started_as_command_line():
    """Whether this process is the `tf-asap` program, still parsing its arguments."""
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    if script in ("tf-asap", "tf-asap.exe", "tf-asap-script.py"):
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return any(
        flag == "-m" and module == "tf_asap.cli" for flag, module in zip(argv, argv[1:])
    ) or "-mtf_asap.cli" in argv


if not _started_as_command_line():
    for _name in __all__:
        __getattr__(_name)
