"""Knowledge distillation while a pruned model retrains.

The unpruned model (the teacher) knows more than the labels say: which wrong
classes are plausible. A pruned model (the student) recovers faster when it
also learns to match the teacher's softened outputs (Hinton et al., 2015):

    loss = alpha * task_loss + (1 - alpha) * tau^2 * KL(p_teacher^tau || p_student^tau)

where `p^tau = softmax(logits / tau)`. The `tau^2` keeps the soft term's
gradients on the scale of the task loss's as `tau` grows.

`Distiller` is a `keras.Model` that wraps the student: `fit`, `evaluate`,
callbacks and metrics work as usual, and the student's variables are the
only ones it trains (the teacher is held outside Keras' tracking, so its
weights never reach the optimizer). Models that end in softmax and models
that output logits both work (`tf_asap.recipe.outputs_logits` tells which):
probabilities are turned back into logits up to a constant with `log`,
which `softmax` ignores.

Teacher outputs for un-augmented training arrays do not change from round
to round: `TeacherOutputs` computes them once per data set and hands
`fit` a dataset of `(x, {"labels": y, "teacher_outputs": t})`, which
`Distiller` recognises. Data that is augmented on the fly (a
`tf.data.Dataset`) is passed as it is, and the teacher runs on every batch.

Example:

```python
config = distillation_config({"alpha": 0.5, "temperature": 4.0})
cache = TeacherOutputs(teacher)
distiller = Distiller(student, teacher, config.alpha, config.temperature)
distiller.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
distiller.fit(cache.dataset(x, y, batch_size=128), epochs=2)
```
"""

import dataclasses
import hashlib

import keras
import numpy as np
import tensorflow as tf

from tf_asap import defaults
from tf_asap.checks import check_fraction, check_int, check_number
from tf_asap.errors import ConfigurationError

# Coupling to the rest of tf_asap: only `outputs_logits`, to tell whether a
# model ends in softmax.
from tf_asap.recipe import outputs_logits

LABELS = "labels"
TEACHER_OUTPUTS = "teacher_outputs"

_PROBABILITY_FLOOR = 1e-12
"""Probabilities are clipped here before `log`: a softmax can underflow to 0."""


@dataclasses.dataclass(frozen=True)
class Distillation:
    """How to distil: the loss weights and the teacher.

    Attributes:
        alpha: Weight of the task loss; the soft-target term gets
            `1 - alpha`. `1` is plain training. Defaults to `0.5`.
        temperature: The softmax temperature `tau` (> 0); higher values
            soften both distributions. Defaults to `4.0`.
        teacher: The teacher model, or `None` for the unpruned model the
            pruning run starts from. Defaults to `None`.
    """

    alpha: float = defaults.DISTILL_ALPHA
    temperature: float = defaults.DISTILL_TEMPERATURE
    teacher: object = None


_FIELDS = ("alpha", "temperature", "teacher")


def distillation_config(value):
    """Normalises a user's `distillation=` argument.

    Args:
        value: `None` or `False` (no distillation), `True` (the defaults of
            `Distillation`), a dict with keys among `alpha`, `temperature`,
            `teacher`, or a `Distillation`.

    Returns:
        A validated `Distillation`, or `None` for no distillation.

    Raises:
        ConfigurationError: For another type, an unknown key, `alpha`
            outside `[0, 1]`, a temperature that is not positive, or a
            teacher that is not a `keras.Model`.

    Example:

    >>> distillation_config({"alpha": 0.3})
    Distillation(alpha=0.3, temperature=4.0, teacher=None)
    """
    if value is None or value is False:
        return None
    if value is True:
        return Distillation()
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(_FIELDS))
        if unknown:
            raise ConfigurationError(
                f"distillation has unknown key(s) {', '.join(map(repr, unknown))}; "
                f"expected keys among {', '.join(map(repr, _FIELDS))}. For example "
                "distillation={'alpha': 0.5, 'temperature': 4.0}."
            )
        value = Distillation(**value)
    if not isinstance(value, Distillation):
        raise ConfigurationError(
            "distillation must be None, True, a dict such as {'alpha': 0.5, "
            "'temperature': 4.0} or a tf_asap Distillation; received "
            f"{type(value).__name__}."
        )
    alpha = check_fraction(
        "distillation alpha", value.alpha,
        fix="It weights the task loss: 1 is plain training, 0 is soft targets only.",
    )
    temperature = check_number(
        "distillation temperature", value.temperature, low=0.0, low_open=True,
        fix="Use 1 for the teacher's own probabilities, or 2-8 to soften them.",
    )
    if value.teacher is not None and not isinstance(value.teacher, keras.Model):
        raise ConfigurationError(
            "distillation teacher must be a keras.Model or None (the unpruned "
            f"model); received {type(value.teacher).__name__}. Pass the trained "
            "model before pruning."
        )
    return Distillation(alpha, temperature, value.teacher)


def _as_logits(outputs, logits):
    if logits:
        return outputs
    return keras.ops.log(keras.ops.maximum(outputs, _PROBABILITY_FLOOR))


def soft_target_loss(
    teacher_outputs,
    student_outputs,
    temperature,
    teacher_logits=True,
    student_logits=True,
    sample_weight=None,
):
    """`tau^2 * KL(softmax(t / tau) || softmax(s / tau))`, averaged over the batch.

    Args:
        teacher_outputs: The teacher's outputs, `(batch, classes)`.
        student_outputs: The student's outputs, same shape.
        temperature: `tau`, a positive number.
        teacher_logits: Whether `teacher_outputs` are logits (else
            probabilities). Defaults to `True`.
        student_logits: Whether `student_outputs` are logits. Defaults to
            `True`.
        sample_weight: Optional per-example weights, `(batch,)`; the result is
            `sum(weight * kl) / batch`, as Keras losses reduce. Defaults to
            `None`.

    Returns:
        A scalar tensor.
    """
    teacher = _as_logits(keras.ops.stop_gradient(teacher_outputs), teacher_logits)
    student = _as_logits(student_outputs, student_logits)
    teacher = keras.ops.cast(teacher, student.dtype)
    log_teacher = keras.ops.log_softmax(teacher / temperature, axis=-1)
    log_student = keras.ops.log_softmax(student / temperature, axis=-1)
    divergence = keras.ops.sum(
        keras.ops.exp(log_teacher) * (log_teacher - log_student), axis=-1
    )
    if sample_weight is not None:
        divergence = divergence * keras.ops.cast(
            keras.ops.reshape(sample_weight, (-1,)), divergence.dtype
        )
    return (temperature**2) * keras.ops.mean(divergence)


def split_targets(y):
    """`(labels, teacher outputs or None)` from what a `Distiller` is fed."""
    if isinstance(y, dict) and TEACHER_OUTPUTS in y:
        return y[LABELS], y[TEACHER_OUTPUTS]
    return y, None


class _Frozen:
    """Holds the teacher out of Keras' variable tracking (it must never train)."""

    def __init__(self, model):
        self.model = model


class Distiller(keras.Model):
    """A student model that trains with soft targets from a teacher.

    Calling it calls the student; compile it with the task loss and metrics
    as you would compile the student. Its loss is
    `alpha * task loss + (1 - alpha) * tau^2 * KL(teacher || student)` on
    softened outputs, in training and evaluation alike; metrics see the
    labels only. Targets are either plain labels (the teacher runs on every
    batch) or `{"labels": y, "teacher_outputs": t}` from `TeacherOutputs`.
    The student's weights are trained in place: save `distiller.student`.

    Args:
        student: The `keras.Model` to train.
        teacher: The `keras.Model` to learn from, run with `training=False`;
            `None` is allowed when every batch brings its teacher outputs.
            Defaults to `None`.
        alpha: Weight of the task loss, in `[0, 1]`. Defaults to `0.5`.
        temperature: `tau`, positive. Defaults to `4.0`.
        teacher_logits: Whether the teacher outputs logits. Defaults to
            `None`: read from its output layer (`outputs_logits`), or `True`
            without a teacher.
        student_logits: Whether the student outputs logits. Defaults to
            `None`: read from its output layer.
        **kwargs: Base `keras.Model` arguments (`name`).

    Raises:
        ConfigurationError: For a bad `alpha`, `temperature` or model.

    Example:

    >>> distiller = Distiller(student, teacher, alpha=0.5, temperature=4.0)
    >>> distiller.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    >>> distiller.fit(x, y, epochs=1)
    """

    def __init__(
        self,
        student,
        teacher=None,
        alpha=0.5,
        temperature=4.0,
        teacher_logits=None,
        student_logits=None,
        **kwargs,
    ):
        if not isinstance(student, keras.Model):
            raise ConfigurationError(
                f"Distiller needs the student as a keras.Model; received "
                f"{type(student).__name__}. Pass the (pruned) model to train."
            )
        config = distillation_config(
            Distillation(alpha=alpha, temperature=temperature, teacher=teacher)
        )
        kwargs.setdefault("name", f"{student.name}_distiller")
        super().__init__(**kwargs)
        self.student = student
        self._teacher = _Frozen(config.teacher)
        self.alpha = config.alpha
        self.temperature = config.temperature
        if teacher_logits is None:
            teacher_logits = True if config.teacher is None else outputs_logits(config.teacher)
        if student_logits is None:
            student_logits = outputs_logits(student)
        self.teacher_logits = bool(teacher_logits)
        self.student_logits = bool(student_logits)
        self.built = student.built

    @property
    def teacher(self):
        """The teacher model (not tracked: its weights are never trained)."""
        return self._teacher.model

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels, teacher_outputs = split_targets(y)
        task = super().compute_loss(x, labels, y_pred, sample_weight, training=training)
        if self.alpha == 1.0:
            return task
        if teacher_outputs is None:
            if self.teacher is None:
                raise ConfigurationError(
                    "This Distiller has no teacher and the batch brings no teacher "
                    "outputs. Pass teacher=... or feed data from "
                    "TeacherOutputs(teacher).dataset(x, y)."
                )
            teacher_outputs = self.teacher(x, training=False)
        soft = soft_target_loss(
            teacher_outputs,
            y_pred,
            self.temperature,
            teacher_logits=self.teacher_logits,
            student_logits=self.student_logits,
            sample_weight=sample_weight,
        )
        return self.alpha * task + (1.0 - self.alpha) * soft

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels, _ = split_targets(y)
        return super().compute_metrics(x, labels, y_pred, sample_weight=sample_weight)


def _fingerprint(x):
    """A key of the data itself (shapes, dtypes and bytes), not of the Python object."""
    digest = hashlib.sha1()
    for array in tf.nest.flatten(x):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode("ascii"))
        digest.update(array.data)
    return digest.hexdigest()


class TeacherOutputs:
    """The teacher's outputs on un-augmented data, computed once and reused.

    Rounds retrain on the same training arrays again and again; the teacher
    (the unpruned model) does not change, so its outputs are computed on the
    first request and kept, keyed by the data's contents.

    Args:
        teacher: The teacher `keras.Model`.
        batch_size: Batch size of the teacher's forward passes. Defaults to
            `256`.

    Example:

    >>> cache = TeacherOutputs(teacher)
    >>> distiller.fit(cache.dataset(x, y, batch_size=128), epochs=2)
    """

    def __init__(self, teacher, batch_size=256):
        if not isinstance(teacher, keras.Model):
            raise ConfigurationError(
                f"TeacherOutputs needs the teacher as a keras.Model; received "
                f"{type(teacher).__name__}. Pass the unpruned model."
            )
        self.teacher = teacher
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self._outputs = {}

    def outputs(self, x):
        """The teacher's outputs on `x` (arrays), computed on the first call only."""
        key = _fingerprint(x)
        if key not in self._outputs:
            self._outputs[key] = np.asarray(
                self.teacher.predict(x, batch_size=self.batch_size, verbose=0)
            )
        return self._outputs[key]

    def dataset(self, x, y, batch_size=32, shuffle=True, seed=None):
        """A dataset of `(x, {"labels": y, "teacher_outputs": t})` batches for `Distiller.fit`.

        Args:
            x: Training inputs (arrays).
            y: Labels, one per example.
            batch_size: Examples per batch. Defaults to `32`.
            shuffle: Reshuffle the examples every epoch, as `fit` does with
                arrays. Defaults to `True`.
            seed: Seed of the shuffling. Defaults to `None`.

        Returns:
            A batched `tf.data.Dataset`.

        Raises:
            ConfigurationError: If `x` and `y` hold different numbers of
                examples.
        """
        batch_size = check_int("batch_size", batch_size, minimum=1)
        count = len(tf.nest.flatten(x)[0])
        if len(y) != count:
            raise ConfigurationError(
                f"x holds {count} examples but y holds {len(y)}; pass one label "
                "per example."
            )
        targets = {LABELS: np.asarray(y), TEACHER_OUTPUTS: self.outputs(x)}
        dataset = tf.data.Dataset.from_tensor_slices((x, targets))
        if shuffle:
            dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
