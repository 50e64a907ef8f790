import keras
import numpy as np
import pytest

from tf_asap.core.masks import apply_masks, make_prunable
from tf_asap.errors import ConfigurationError
from tf_asap.rounds.controller import snapshot_state
from tf_asap.rounds.distillation import (
    Distillation,
    Distiller,
    TeacherOutputs,
    distillation_config,
    soft_target_loss,
)
from tf_asap.rounds.slim_training import build_slim_trainable, slicing_plan, write_back

layers = keras.layers


def classifier(activation=None, seed=0, units=6):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((5,))
    x = layers.Dense(units, activation="relu", name="hidden")(inputs)
    outputs = layers.Dense(3, activation=activation, name="out")(x)
    return keras.Model(inputs, outputs)


def data(count=16, seed=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, 5)).astype("float32"), rng.integers(0, 3, count).astype("int32")


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def hand_loss(labels, student_logits, teacher_logits, alpha, tau):
    task = -log_softmax(student_logits)[np.arange(len(labels)), labels].mean()
    log_t, log_s = log_softmax(teacher_logits / tau), log_softmax(student_logits / tau)
    kl = (np.exp(log_t) * (log_t - log_s)).sum(axis=-1).mean()
    return alpha * task + (1 - alpha) * tau**2 * kl


def test_loss_equals_the_hand_computed_value_on_a_tiny_batch():
    student, teacher = classifier(seed=1), classifier(seed=2, units=9)
    x, y = data(count=4)
    distiller = Distiller(student, teacher, alpha=0.3, temperature=2.5)
    distiller.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = distiller.evaluate(x, y, batch_size=4, verbose=0)
    expected = hand_loss(y, student.predict(x, verbose=0), teacher.predict(x, verbose=0), 0.3, 2.5)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_softmax_outputs_give_the_same_loss_as_logits():
    logits_student, logits_teacher = classifier(seed=1), classifier(seed=2)
    soft_student, soft_teacher = classifier("softmax", seed=1), classifier("softmax", seed=2)
    x, y = data(count=8)
    losses = []
    for student, teacher, from_logits in (
        (logits_student, logits_teacher, True),
        (soft_student, soft_teacher, False),
    ):
        distiller = Distiller(student, teacher, alpha=0.4, temperature=3.0)
        distiller.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
        losses.append(distiller.evaluate(x, y, batch_size=8, verbose=0))
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_alpha_one_is_plain_training():
    x, y = data()
    plain, distilled = classifier(seed=1), classifier(seed=1)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    plain.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    plain.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    distiller = Distiller(distilled, classifier(seed=2), alpha=1.0, temperature=4.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    distiller.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for got, want in zip(distilled.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_distillation_changes_the_step_and_moves_the_student_toward_the_teacher():
    x, y = data()
    teacher = classifier(seed=2)
    student = classifier(seed=1)
    distiller = Distiller(student, teacher, alpha=0.0, temperature=2.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = float(soft_target_loss(teacher(x), student(x), 2.0))
    distiller.fit(x, y, batch_size=16, epochs=5, verbose=0)
    after = float(soft_target_loss(teacher(x), student(x), 2.0))
    assert after < before


def test_temperature_scales_the_soft_loss_as_tau_squared_times_kl():
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(5, 4)).astype("float32"), rng.normal(size=(5, 4)).astype("float32")
    for tau in (1.0, 2.0, 7.0):
        log_t, log_s = log_softmax(teacher / tau), log_softmax(student / tau)
        kl = (np.exp(log_t) * (log_t - log_s)).sum(axis=-1).mean()
        assert float(soft_target_loss(teacher, student, tau)) == pytest.approx(tau**2 * kl, rel=1e-5)
    # Scaling both logits by tau and the temperature by tau gives tau^2 times the tau=1 loss.
    assert float(soft_target_loss(3 * teacher, 3 * student, 3.0)) == pytest.approx(
        9 * float(soft_target_loss(teacher, student, 1.0)), rel=1e-5
    )
    assert float(soft_target_loss(teacher, teacher, 2.0)) == pytest.approx(0.0, abs=1e-6)


def test_sample_weights_weight_the_soft_loss_per_example():
    rng = np.random.default_rng(1)
    teacher, student = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    weights = np.array([1.0, 0.0, 2.0, 0.0])
    each = [float(soft_target_loss(teacher[i : i + 1], student[i : i + 1], 2.0)) for i in range(4)]
    got = float(soft_target_loss(teacher, student, 2.0, sample_weight=weights))
    assert got == pytest.approx(sum(w * l for w, l in zip(weights, each)) / 4, rel=1e-5)


def test_cached_teacher_outputs_are_computed_once_and_train_like_the_live_teacher():
    x, y = data()
    teacher = classifier(seed=2)
    cache = TeacherOutputs(teacher)
    first = cache.outputs(x)
    assert cache.outputs(x.copy()) is first  # keyed by content, not by object
    np.testing.assert_allclose(first, teacher.predict(x, verbose=0), atol=1e-6)

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    live, cached = classifier(seed=1), classifier(seed=1)
    for student, feed in ((live, None), (cached, cache.dataset(x, y, batch_size=8, shuffle=False))):
        distiller = Distiller(student, teacher, alpha=0.5, temperature=3.0)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, metrics=["accuracy"])
        if feed is None:
            history = distiller.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        else:
            history = distiller.fit(feed, epochs=1, verbose=0)
        assert 0.0 <= history.history["accuracy"][0] <= 1.0
    for got, want in zip(cached.get_weights(), live.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_the_teacher_is_never_trained():
    x, y = data()
    teacher = classifier(seed=2)
    before = [w.copy() for w in teacher.get_weights()]
    distiller = Distiller(classifier(seed=1), teacher, alpha=0.2)
    distiller.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(x, y, epochs=1, verbose=0)
    assert len(distiller.trainable_variables) == len(distiller.student.trainable_variables)
    for got, want in zip(teacher.get_weights(), before):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "value, match",
    [
        ({"alpha": 1.5}, "alpha.*\\[0, 1\\]"),
        ({"temperature": 0}, "temperature.*> 0"),
        ({"temperature": "hot"}, "temperature"),
        ({"tau": 2.0}, "unknown key.*'tau'.*'temperature'"),
        ({"teacher": "model.keras"}, "teacher must be a keras.Model"),
        (0.5, "must be None, True, a dict"),
    ],
)
def test_bad_distillation_arguments_name_the_fix(value, match):
    with pytest.raises(ConfigurationError, match=match):
        distillation_config(value)


def test_distillation_config_defaults_and_off_switches():
    assert distillation_config(None) is None
    assert distillation_config(False) is None
    assert distillation_config(True) == Distillation(0.5, 4.0, None)
    assert distillation_config({"alpha": 0.3}) == Distillation(0.3, 4.0, None)


def test_a_distiller_without_any_teacher_says_how_to_give_one():
    x, y = data()
    distiller = Distiller(classifier(seed=1), None, alpha=0.5)
    distiller.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ConfigurationError, match="TeacherOutputs"):
        distiller.evaluate(x, y, verbose=0)


def test_mismatched_cache_data_is_refused():
    with pytest.raises(ConfigurationError, match="one label per example"):
        TeacherOutputs(classifier()).dataset(np.zeros((4, 5), "float32"), np.zeros(3))


def test_a_distiller_trains_the_slim_model_with_its_sliced_optimizer():
    x, y = data()
    teacher = classifier(seed=2, units=8)
    pm = make_prunable(classifier(seed=2, units=8))
    pm.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pm.fit(x, y, batch_size=8, epochs=1, verbose=0)
    apply_masks(pm, {"hidden": np.arange(8) % 2 == 0})
    plan = slicing_plan(pm)
    student, optimizer = build_slim_trainable(pm, snapshot_state(pm), plan, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller = Distiller(student, teacher, alpha=0.5, temperature=2.0)
    distiller.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert int(optimizer.iterations.numpy()) == 2 + 2  # continued from the masked model's state
    write_back(pm, student, plan)
    np.testing.assert_allclose(pm.predict(x, verbose=0), student.predict(x, verbose=0), atol=1e-5)
