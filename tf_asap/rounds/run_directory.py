"""The run directory: every file name spelled once, its lock, manifest, round log and fingerprint.

What a run directory holds (every file written atomically through
`tf_asap.files`: a temporary file in the same directory, `fsync`,
`os.replace`):

```
run_dir/
  run.json            manifest: model fingerprint and architecture, settings,
                      policy config and state, threshold reference, held-out
                      test metrics, status (the commit point)
  run.lock            held (flock) while a process runs in the directory
  rounds.jsonl        one JSON line per completed round
  rewind.npz          what every round rewinds to (optimizer state; weights
                      too with weight rewinding)
  calibration.npz     the calibration samples the filters are scored on,
                      chosen once per run (`tf_asap.rounds.calibration`)
  checkpoints/        round_0000.npz ...: weights and masks of round 0, of the
                      acceptable rounds a rollback can still reach, and of the
                      best round (older ones are deleted; see
                      `RunDirectory.prune_checkpoints`)
  final/model.keras   the best round's masked model
  final/slim.keras    the same with the pruned channels removed
  report.md           the round table; rounds.png, the paper's Figure 4;
                      layers.png, filters kept per layer
  tensorboard/        per-round scalars
  baseline/           written by `train_baseline`: rewind.npz (epoch k),
                      model.keras (the trained baseline), baseline.json
  .workers/           scratch directories of the non-chief workers of a
                      multi-worker run (`tf_asap.distribute.worker_directory`)
```

The `AdaptivePruning` callback, given a `run_dir`, writes the same manifest,
round log and checkpoints (plus `callback.npz`, its rewind state).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil

import keras
import tensorflow as tf

from tf_asap.core.layers import MaskedLayer
from tf_asap.distribute import WORKERS_DIR
from tf_asap.errors import RunDirectoryError
from tf_asap.files import atomic_write_json, atomic_write_text
from tf_asap.rounds.state import mask_variable_ids

__all__ = [
    "RunDirectory",
    "ScalarWriter",
    "describe_architecture",
    "directory_size",
    "first_difference",
    "model_fingerprint",
    "read_json",
    "read_round_log",
]

RUN_FORMAT = 2
"""Format 2 added the graph's wiring and layer names to the fingerprint."""

MANIFEST_NAME = "run.json"
LOG_NAME = "rounds.jsonl"
LOCK_NAME = "run.lock"
REWIND_NAME = "rewind.npz"
CALLBACK_REWIND_NAME = "callback.npz"
TUNED_NAME = "tuned.npz"
BASELINE_DIR = "baseline"
BASELINE_MODEL_NAME = "model.keras"
BASELINE_INFO_NAME = "baseline.json"
CHECKPOINT_DIR = "checkpoints"
FINAL_DIR = "final"
FINAL_MODEL_NAME = "model.keras"
SLIM_MODEL_NAME = "slim.keras"
TENSORBOARD_DIR = "tensorboard"
CALIBRATION_NAME = "calibration.npz"
REPORT_NAME = "report.md"
PLOT_NAME = "rounds.png"
LAYERS_PLOT_NAME = "layers.png"


def read_json(path, what):
    """Reads a JSON file of a run directory.

    Raises:
        RunDirectoryError: If it cannot be read or is not JSON.
    """
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise RunDirectoryError(
            f"Cannot read the {what} '{path}' ({error}). The run directory is "
            "damaged or not tf_asap's; start a new one."
        ) from error


def read_round_log(path):
    """Reads a JSON-lines round log.

    Args:
        path: A run directory or its `rounds.jsonl`.

    Returns:
        The list of round records, in order (empty if there is no log yet).

    Raises:
        RunDirectoryError: If a line is not JSON.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, LOG_NAME)
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as error:
                raise RunDirectoryError(
                    f"Line {number} of the round log '{path}' is not JSON "
                    f"({error}). The log is damaged; restore it or start a new "
                    "run directory."
                ) from error
    return records


def directory_size(path):
    """Bytes of all files under `path` (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(os.fspath(path)):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


# ---------------------------------------------------------------------------
# Fingerprints.


def _snake_case(name):
    # The rule Keras uses for automatic layer names (class name in snake case).
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _stable_name(layer, inner):
    """The layer's name, with Keras' automatic numbering (`conv2d_3`) removed.

    A name the user chose is kept; an automatic one becomes `<auto>`, because
    Keras numbers automatic names per process and the same model built again
    in a notebook must still resume its run.
    """
    automatic = re.escape(_snake_case(type(inner).__name__))
    if re.fullmatch(rf"{automatic}(_\d+)?", layer.name):
        return "<auto>"
    return layer.name


def _histories(value):
    """Every `keras_history` `[layer name, node, tensor]` in a serialized node."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [tuple(value["config"]["keras_history"])]
        found = []
        for item in value.values():
            found.extend(_histories(item))
        return found
    if isinstance(value, (list, tuple)):
        found = []
        for item in value:
            found.extend(_histories(item))
        return found
    return []


def _inbound(model):
    """`{layer name: [(source layer index, node, tensor), ...]}` from the public config.

    Uses `model.get_config()` (the serialized graph), not Keras' private node
    lists. A `Sequential` model is a chain.
    """
    index = {layer.name: position for position, layer in enumerate(model.layers)}
    if isinstance(model, keras.Sequential):
        return {layer.name: [[position - 1, 0, 0]] for position, layer in enumerate(model.layers)}
    config = model.get_config()
    wiring = {}
    for entry in config.get("layers", []):
        sources = []
        for name, node, tensor in _histories(entry.get("inbound_nodes", [])):
            sources.append([index.get(name, name), node, tensor])
        wiring[entry.get("name")] = sources
    return wiring


def describe_architecture(model):
    """One entry per layer: `[name, type, weight shapes, inbound connections]`.

    The name is the user's (automatic names become `<auto>`), the type is the
    unwrapped layer's class, the shapes leave the masks out, and each inbound
    connection is `[source layer index, node, tensor]`. Weight values are left
    out, so a model keeps its description while it is trained and pruned.
    """
    masks = mask_variable_ids(model)
    wiring = _inbound(model)
    layers = []
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, MaskedLayer) else layer
        shapes = [list(v.shape) for v in layer.weights if id(v) not in masks]
        if isinstance(layer, keras.layers.InputLayer):
            shapes = [list(layer.batch_shape)]
        layers.append(
            [_stable_name(layer, inner), type(inner).__name__, shapes, wiring.get(layer.name, [])]
        )
    return json.loads(json.dumps(layers))


def model_fingerprint(model, wiring=True):
    """A hash of a prunable model's architecture.

    Layer by layer, in order: the layer's name (automatic names excepted, see
    `describe_architecture`), its unwrapped type, its weight shapes (masks
    left out) and which layers feed it. States are matched variable by
    variable in the same order, so equal fingerprints mean that every saved
    array fits, and that the arrays mean the same thing in the same graph.

    Args:
        model: A model from `make_prunable`.
        wiring: Include names and connections. `False` gives the format-1
            fingerprint (types and shapes only), which baselines trained by
            earlier versions recorded. Defaults to `True`.

    Returns:
        A hex SHA-256 digest.
    """
    if wiring:
        layers = describe_architecture(model)
    else:
        layers = [[entry[1], entry[2]] for entry in describe_architecture(model)]
    text = json.dumps(layers, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def first_difference(saved, current):
    """A sentence naming the first layer whose description differs, or `None`."""
    parts = ("name", "type", "weight shapes", "inputs")
    for position, (old, new) in enumerate(zip(saved, current)):
        if old != new:
            what = [f"{part} {a!r} -> {b!r}" for part, a, b in zip(parts, old, new) if a != b]
            return f"layer {position} ('{new[0]}', {new[1]}) differs: {'; '.join(what)}"
    if len(saved) != len(current):
        return f"the saved model has {len(saved)} layers, this one {len(current)}"
    return None


# ---------------------------------------------------------------------------
# The directory.


class RunDirectory:
    """Paths and atomic reads and writes of one run directory."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.manifest = os.path.join(self.path, MANIFEST_NAME)
        self.log = os.path.join(self.path, LOG_NAME)
        self.rewind = os.path.join(self.path, REWIND_NAME)
        self.callback_rewind = os.path.join(self.path, CALLBACK_REWIND_NAME)
        self.tuned = os.path.join(self.path, TUNED_NAME)
        self.calibration = os.path.join(self.path, CALIBRATION_NAME)
        self.checkpoints = os.path.join(self.path, CHECKPOINT_DIR)
        self.final_model = os.path.join(self.path, FINAL_DIR, FINAL_MODEL_NAME)
        self.slim_model = os.path.join(self.path, FINAL_DIR, SLIM_MODEL_NAME)
        self.tensorboard = os.path.join(self.path, TENSORBOARD_DIR)
        self.report = os.path.join(self.path, REPORT_NAME)
        self.plot = os.path.join(self.path, PLOT_NAME)
        self.layers_plot = os.path.join(self.path, LAYERS_PLOT_NAME)

    def checkpoint(self, round_number):
        """The checkpoint file of a round."""
        return os.path.join(self.checkpoints, f"round_{round_number:04d}.npz")

    def checkpoint_rounds(self):
        """The round numbers that have a checkpoint, in order."""
        if not os.path.isdir(self.checkpoints):
            return []
        found = []
        for name in os.listdir(self.checkpoints):
            match = re.fullmatch(r"round_(\d+)\.npz", name)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def prune_checkpoints(self, keep):
        """Deletes every round checkpoint whose round is not in `keep`."""
        for round_number in self.checkpoint_rounds():
            if round_number not in keep:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.checkpoint(round_number))

    def size(self):
        """Bytes the run directory holds (other workers' scratch directories left out)."""
        return directory_size(self.path) - directory_size(os.path.join(self.path, WORKERS_DIR))

    def copy_committed_state(self, source):
        """Replaces this directory's run state by `source`'s, if `source` has one.

        A non-chief worker calls this on its scratch directory with the run
        directory as `source`: the manifest, round log, rewind states,
        calibration set and checkpoints are copied, so it resumes exactly
        where the chief does. Nothing is copied when `source` has no manifest
        (a new run, or a run directory this machine cannot see).
        """
        if not os.path.exists(source.manifest):
            return
        os.makedirs(self.path, exist_ok=True)
        for name in (LOG_NAME, REWIND_NAME, CALLBACK_REWIND_NAME, CALIBRATION_NAME, MANIFEST_NAME):
            if os.path.exists(os.path.join(source.path, name)):
                shutil.copyfile(os.path.join(source.path, name), os.path.join(self.path, name))
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        if os.path.isdir(source.checkpoints):
            # Temporary files of an atomic write are not state.
            shutil.copytree(source.checkpoints, self.checkpoints, ignore=shutil.ignore_patterns(".*"))

    @contextlib.contextmanager
    def locked(self):
        """Holds an exclusive lock on the run directory while a run uses it.

        Two processes pruning into one directory would interleave their
        rounds. The lock is an OS file lock (`flock`), released by the
        operating system even when the process is killed, so a crashed run
        never leaves a stale lock behind. Where `fcntl` does not exist
        (Windows), runs are not locked.
        """
        os.makedirs(self.path, exist_ok=True)
        try:
            import fcntl  # POSIX only: Windows runs are not locked
        except ImportError:
            yield
            return
        with open(os.path.join(self.path, LOCK_NAME), "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise RunDirectoryError(
                    f"Run directory '{self.path}' is in use by another process. "
                    "Wait for that run to finish (or stop it), or use another run_dir."
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read_manifest(self):
        """The manifest, or `None` before the run has started."""
        if not os.path.exists(self.manifest):
            return None
        manifest = read_json(self.manifest, "run manifest")
        if manifest.get("format") != RUN_FORMAT:
            raise RunDirectoryError(
                f"'{self.manifest}' has format {manifest.get('format')!r}; this "
                f"version of tf_asap reads format {RUN_FORMAT}. Use a new run directory."
            )
        return manifest

    def write_manifest(self, manifest):
        """Replaces the manifest atomically (the commit point of a round)."""
        atomic_write_json(self.manifest, manifest)

    def write_log(self, records):
        """Replaces the round log atomically."""
        text = "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)
        atomic_write_text(self.log, text)

    def check_model(self, manifest, fingerprint, architecture, model_name):
        """Raises unless the manifest was written for a model of this architecture."""
        saved = manifest.get("model", {})
        if saved.get("fingerprint") == fingerprint:
            return
        difference = first_difference(saved.get("architecture") or [], architecture)
        raise RunDirectoryError(
            f"Run directory '{self.path}' belongs to a different model "
            f"('{saved.get('name')}', architecture fingerprint "
            f"{str(saved.get('fingerprint'))[:12]}; this model '{model_name}' has "
            f"{fingerprint[:12]}): {difference or 'the layers or their wiring differ'}. "
            "Use a new run_dir for this model, or pass the model that run was "
            "started with to resume it."
        )

    def check_settings(self, manifest, settings, policy_kind, policy_config):
        """Raises unless the run was started with these settings and this policy."""
        differences = [
            f"{key}: saved {manifest['settings'].get(key)!r}, now {value!r}"
            for key, value in settings.items()
            if manifest.get("settings", {}).get(key) != value
        ]
        saved_policy = manifest.get("policy", {})
        if saved_policy.get("kind") != policy_kind or _normalised(
            saved_policy.get("config")
        ) != _normalised(policy_config):
            differences.append(
                f"policy: saved {saved_policy.get('kind')}({saved_policy.get('config')}), "
                f"now {policy_kind}({policy_config})"
            )
        if differences:
            raise RunDirectoryError(
                f"Run directory '{self.path}' was started with other "
                f"settings ({'; '.join(differences)}). Resume it with the same "
                "settings, or use a new run_dir."
            )


def _normalised(value):
    # JSON round trip, so a saved config compares equal to a live one.
    return json.loads(json.dumps(value, sort_keys=True))


class ScalarWriter:
    """Writes TensorBoard scalars with TensorFlow alone.

    `tf.summary.scalar` needs the `tensorboard` package installed; the
    low-level `tf.summary.write` with the scalar plugin's metadata writes the
    same events without it, so TensorBoard (wherever it runs) reads them.
    """

    def __init__(self, directory):
        # The metadata proto has no public Python home outside tensorboard.
        from tensorflow.core.framework import summary_pb2

        self._writer = tf.summary.create_file_writer(directory)
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        ).SerializeToString()

    def write(self, values, step):
        """Writes `{tag: number}` at `step` under `pruning/`."""
        with self._writer.as_default():
            for key, value in values.items():
                tf.summary.write(
                    f"pruning/{key}", tf.constant(float(value), tf.float32),
                    step=int(step), metadata=self._metadata,
                )
        self._writer.flush()

    def close(self):
        """Closes the event file."""
        self._writer.close()
