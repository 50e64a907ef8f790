import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tf_asap
from tf_asap.errors import ConfigurationError, MaskError
from tf_asap.pruning.stats import collect_activation_stats
from tf_asap.pruning.thresholds import (
    attention_reference,
    group_costs,
    group_thresholds,
    ratio_masks,
    threshold_masks,
)

from tests.architectures import resnet20

layers = keras.layers

# conv1: Conv2D(4, 3) on 6x6x2 -> 4x4x4; conv2: Conv2D(5, 3) -> 2x2x5.
CONV1_PARAMS, CONV2_PARAMS = 3 * 3 * 2 * 4 + 4, 3 * 3 * 4 * 5 + 5  # 76, 185
CONV1_FLOPS, CONV2_FLOPS = 2 * 16 * (3 * 3 * 2 * 4), 2 * 4 * (3 * 3 * 4 * 5)  # 2304, 1440


def two_convs(**options):
    inputs = keras.Input((6, 6, 2))
    x = layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(5, 3, activation="relu", name="conv2")(x)
    outputs = layers.Dense(2, name="out")(layers.Flatten()(x))
    return tf_asap.make_prunable(keras.Model(inputs, outputs), **options)


SCORES = {"conv1": np.array([0.4, 0.1, 0.3, 0.2]), "conv2": np.array([0.5, 0.9, 0.7, 0.6, 0.8])}


def test_group_thresholds_by_hand_for_params():
    thresholds = group_thresholds(two_convs(), 2.0, "params", reference=3.0)
    total = CONV1_PARAMS + CONV2_PARAMS
    assert thresholds == pytest.approx({"conv1": 6 * 76 / total, "conv2": 6 * 185 / total})
    assert total == 261


def test_group_thresholds_by_hand_for_flops():
    thresholds = group_thresholds(two_convs(), 2.0, "flops", reference=3.0)
    total = CONV1_FLOPS + CONV2_FLOPS
    assert thresholds == pytest.approx({"conv1": 6 * 2304 / total, "conv2": 6 * 1440 / total})


def test_group_thresholds_use_remaining_cost_after_pruning():
    model = two_convs()
    tf_asap.apply_masks(model, {"conv1": np.array([False, True, True, True])})
    # conv1 keeps 3 filters: 3*3*2*3 + 3 = 57 params, 2*16*54 FLOPs; conv2
    # reads 3 channels: 3*3*3*5 + 5 = 140 params, 2*4*135 FLOPs.
    assert group_costs(model, "params") == {"conv1": 57, "conv2": 140}
    assert group_costs(model, "flops") == {"conv1": 1728, "conv2": 1080}
    thresholds = group_thresholds(model, 1.0, "flops")
    assert thresholds == pytest.approx({"conv1": 1728 / 2808, "conv2": 1080 / 2808})


def test_residual_group_is_priced_as_its_mean_producer():
    model = tf_asap.make_prunable(resnet20(input_shape=(8, 8, 3), blocks=2, widths=(4, 8, 8)))
    group = next(g for g in tf_asap.channel_groups(model) if g.prunable and len(g.producers) > 1)
    cost = tf_asap.count_cost(model)
    expected = np.mean([cost.layer(name).effective_params for name in group.producers])
    assert group_costs(model)[group.name] == pytest.approx(expected)


def test_identical_scores_prune_a_residual_stage_like_the_layers_of_its_size():
    # Algorithm 3 gives each layer its own share. The stage-3 residual group of
    # resnet56 couples 10 producers; priced as their sum it was pruned ~10x
    # harder than the inner layers of the same stage (36x the median group).
    model = tf_asap.make_prunable(tf_asap.build_model("resnet56", input_shape=(8, 8, 3)))
    groups = [g for g in tf_asap.channel_groups(model) if g.prunable]
    scores = {g.name: np.random.default_rng(index).permutation(np.linspace(0.01, 1.0, g.size)) for index, g in enumerate(groups)}
    reference = attention_reference(scores)
    masks = threshold_masks(model, scores, 0.2, reference=reference, max_fraction=None)
    pruned = {g.name: 1.0 - masks[g.name].mean() for g in groups}
    for size in {g.size for g in groups}:
        residual = [pruned[g.name] for g in groups if g.size == size and len(g.producers) > 2]
        inner = [pruned[g.name] for g in groups if g.size == size and len(g.producers) == 1]
        assert len(residual) == 1 and inner and min(inner) > 0
        assert 0.5 <= residual[0] / np.median(inner) <= 2.0, (size, residual, inner)
    # Across stages the layers differ 16x in size; the fractions stay within 8x.
    assert max(pruned.values()) <= 8 * min(pruned.values())


def test_max_fraction_none_applies_algorithm_3_as_written():
    scores = {"conv1": np.array([0.4, 0.1, 0.3, 0.2]), "conv2": np.full(5, 0.01)}
    capped = threshold_masks(two_convs(), scores, 1.0, max_fraction=0.5)
    paper = threshold_masks(two_convs(), scores, 1.0, max_fraction=None)
    # Every conv2 filter scores under its threshold: the paper's rule prunes all
    # but min_filters in one round; the default cap prunes half (rounded up).
    assert paper["conv2"].sum() == 1 and capped["conv2"].sum() == 2


def test_threshold_masks_analyses_once_and_never_writes_masks(monkeypatch):
    from tf_asap.core import channels, masks as masks_module

    model = two_convs()
    analyses = []
    original = channels.ChannelAnalysis.__init__

    def counted(self, *args, **kwargs):
        analyses.append(1)
        original(self, *args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError("deciding code wrote masks into the model")

    monkeypatch.setattr(channels.ChannelAnalysis, "__init__", counted)
    monkeypatch.setattr(masks_module, "_write_masks", refuse)
    threshold_masks(model, SCORES, 1e9, max_reduction=0.05)
    assert len(analyses) == 1

def test_filter_at_its_threshold_is_pruned_and_just_above_is_kept():
    model = two_convs()
    limit = group_thresholds(model, 0.7)["conv1"]
    scores = dict(SCORES, conv1=np.array([limit, np.nextafter(limit, 1.0), 10.0, limit / 2]))
    masks = threshold_masks(model, scores, 0.7)
    np.testing.assert_array_equal(masks["conv1"], [False, True, True, False])


def test_threshold_zero_prunes_exactly_the_dead_filters():
    model = two_convs()
    conv1, conv2 = model.get_layer("conv1").layer, model.get_layer("conv2").layer
    kernel, bias = conv1.get_weights()
    kernel[..., 2], bias[2] = 0.0, 0.0  # a filter with all-zero weights
    conv1.set_weights([kernel, bias])
    kernel, bias = conv2.get_weights()
    bias[3] = -1e4  # a dead ReLU
    conv2.set_weights([kernel, bias])
    x = np.random.default_rng(0).normal(size=(16, 6, 6, 2)).astype("float32")
    attention = collect_activation_stats(model, x)
    masks = threshold_masks(model, attention, 0.0)
    np.testing.assert_array_equal(masks["conv1"], [True, True, False, True])
    np.testing.assert_array_equal(masks["conv2"], [True, True, True, False, True])


def test_min_filters_keeps_the_best_scoring_filters():
    model = two_convs(min_filters=2)
    masks = threshold_masks(model, SCORES, 1e9)
    np.testing.assert_array_equal(masks["conv1"], [True, False, True, False])
    np.testing.assert_array_equal(masks["conv2"], [False, True, False, False, True])


def test_default_min_filters_keeps_one():
    masks = threshold_masks(two_convs(), SCORES, 1e9, max_fraction=None)
    assert masks["conv1"].sum() == 1 and masks["conv1"][0]


def test_layers_ignored_by_make_prunable_are_left_out():
    model = two_convs(ignored_layers=["conv1"])
    scores = {"conv2": SCORES["conv2"]}
    masks = threshold_masks(model, scores, 1e9)
    assert set(masks) == {"conv2"}
    # conv2 holds all of the prunable cost, so its threshold is T x reference.
    assert group_thresholds(model, 0.65) == pytest.approx({"conv2": 0.65})
    np.testing.assert_array_equal(threshold_masks(model, scores, 0.65)["conv2"], [False, True, True, False, True])


def test_ignored_layers_argument_leaves_groups_out():
    masks = threshold_masks(two_convs(), SCORES, 1e9, ignored_layers=["conv2"])
    assert set(masks) == {"conv1"}


def test_unknown_ignored_layer_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="conv3"):
        threshold_masks(two_convs(), SCORES, 0.1, ignored_layers=["conv3"])


def test_pruned_filters_are_never_revived():
    model = two_convs()
    tf_asap.apply_masks(model, {"conv1": np.array([True, False, True, True])})
    important = dict(SCORES, conv1=np.array([5.0, 9.0, 5.0, 5.0]))  # claims the pruned one matters
    masks = threshold_masks(model, important, 0.0)
    assert not masks["conv1"][1]
    assert not ratio_masks(model, important, 0.0)["conv1"][1]


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    thresholds=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=4),
)
def test_masks_only_shrink_over_rounds_and_keep_min_filters(seed, thresholds):
    model = MODEL_WITH_MIN_FILTERS
    tf_asap.apply_masks(model, {"conv1": np.ones(4, bool), "conv2": np.ones(5, bool)})
    rng = np.random.default_rng(seed)
    previous = tf_asap.get_masks(model)
    for threshold in thresholds:
        scores = {name: rng.uniform(size=len(values)) for name, values in SCORES.items()}
        masks = threshold_masks(model, scores, threshold, reference=attention_reference(scores))
        for name, keep in masks.items():
            assert not np.any(keep & ~previous[name])
            assert keep.sum() >= min(2, previous[name].sum())
        tf_asap.apply_masks(model, masks)
        previous = tf_asap.get_masks(model)


MODEL_WITH_MIN_FILTERS = two_convs(min_filters=2)


def test_attention_reference_is_groups_times_median_of_live_scores():
    assert attention_reference({"a": [0.0, 1.0, 2.0, 3.0], "b": [4.0, 5.0, 0.0]}) == 2 * 3.0
    assert attention_reference({"a": [0.0, 0.0]}) == 1.0


def test_relative_threshold_one_halves_groups_of_equal_cost():
    inputs = keras.Input((6, 6, 2))
    left = layers.Conv2D(4, 3, activation="relu", name="left")(inputs)
    right = layers.Conv2D(4, 3, activation="relu", name="right")(inputs)
    merged = layers.Concatenate()([left, right])
    outputs = layers.Dense(2)(layers.Flatten()(layers.Conv2D(3, 1, name="mix")(merged)))
    model = tf_asap.make_prunable(keras.Model(inputs, outputs))
    scores = {"left": np.array([1.0, 8.0, 3.0, 6.0]), "right": np.array([2.0, 7.0, 5.0, 4.0])}
    masks = threshold_masks(model, scores, 1.0, reference=attention_reference(scores),
                            ignored_layers=["mix"])  # fmt: skip
    # Equal shares: each threshold is the median (4.5) of all live scores.
    np.testing.assert_array_equal(masks["left"], [False, True, False, True])
    np.testing.assert_array_equal(masks["right"], [False, True, True, False])


def test_ratio_per_group_prunes_the_lowest_fraction_of_remaining_filters():
    model = two_convs()
    masks = ratio_masks(model, SCORES, 0.5)
    np.testing.assert_array_equal(masks["conv1"], [True, False, True, False])  # 2 of 4
    np.testing.assert_array_equal(masks["conv2"], [False, True, False, False, True])  # round(2.5) = 3
    tf_asap.apply_masks(model, masks)
    masks = ratio_masks(model, SCORES, 0.5)  # half of the 2 left in each
    np.testing.assert_array_equal(masks["conv1"], [True, False, False, False])
    np.testing.assert_array_equal(masks["conv2"], [False, True, False, False, False])


def test_ratio_per_group_rounds_so_small_groups_still_shrink():
    masks = ratio_masks(two_convs(), SCORES, 0.2)  # 0.8 -> 1 and 1.0 -> 1
    assert masks["conv1"].sum() == 3 and masks["conv2"].sum() == 4


def test_ratio_global_ranks_raw_scores_across_groups():
    scores = {"conv1": np.array([10.0, 11.0, 12.0, 13.0]), "conv2": np.array([5.0, 1.0, 4.0, 2.0, 3.0])}
    masks = ratio_masks(two_convs(), scores, 0.4, scope="global")  # round(3.6) = 4 of 9
    assert masks["conv1"].all()
    np.testing.assert_array_equal(masks["conv2"], [True, False, False, False, False])
    masks = ratio_masks(two_convs(), scores, 0.6, scope="global")  # 5; conv2 stops at 1
    np.testing.assert_array_equal(masks["conv1"], [False, True, True, True])
    assert masks["conv2"].sum() == 1


def test_ratio_respects_min_filters():
    masks = ratio_masks(two_convs(min_filters=3), SCORES, 0.9)
    assert masks["conv1"].sum() == 3 and masks["conv2"].sum() == 3


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda m: threshold_masks(m, SCORES, -0.1), ConfigurationError),
        (lambda m: threshold_masks(m, SCORES, float("nan")), ConfigurationError),
        (lambda m: threshold_masks(m, SCORES, 0.1, objective="latency"), ConfigurationError),
        (lambda m: threshold_masks(m, SCORES, 0.1, reference=0.0), ConfigurationError),
        (lambda m: threshold_masks(m, {"conv1": SCORES["conv1"]}, 0.1), MaskError),
        (lambda m: threshold_masks(m, dict(SCORES, conv1=np.ones(3)), 0.1), MaskError),
        (lambda m: threshold_masks(m, dict(SCORES, conv1=np.full(4, np.nan)), 0.1), MaskError),
        (lambda m: ratio_masks(m, SCORES, 1.0), ConfigurationError),
        (lambda m: ratio_masks(m, SCORES, 0.1, scope="layer"), ConfigurationError),
    ],
)
def test_bad_arguments_raise_typed_errors(call, error):
    with pytest.raises(error):
        call(MODEL_WITH_MIN_FILTERS)


def test_one_round_prunes_at_most_max_fraction_of_a_group_lowest_first():
    masks = threshold_masks(two_convs(), SCORES, 1e9, max_fraction=0.5)
    np.testing.assert_array_equal(masks["conv1"], [True, False, True, False])
    # 5 live filters: half-up rounding allows 3; the two best stay.
    np.testing.assert_array_equal(masks["conv2"], [False, True, False, False, True])
    masks = threshold_masks(two_convs(), SCORES, 1e9, max_fraction=0.25)
    np.testing.assert_array_equal(masks["conv1"], [True, False, True, True])


def test_cap_never_spares_filters_that_score_zero():
    scores = {"conv1": np.array([0.0, 0.0, 0.0, 0.3]), "conv2": SCORES["conv2"]}
    masks = threshold_masks(two_convs(), scores, 0.0, max_fraction=0.25)
    np.testing.assert_array_equal(masks["conv1"], [False, False, False, True])
    assert masks["conv2"].all()


@pytest.mark.parametrize("value", [0, 1.5, -0.1, True, "half"])
def test_bad_max_fraction_gets_a_clear_error(value):
    with pytest.raises(ConfigurationError, match="max_fraction"):
        threshold_masks(two_convs(), SCORES, 1.0, max_fraction=value)


def test_max_reduction_gives_back_the_least_confidently_pruned_filters():
    model = two_convs()
    dense = tf_asap.count_cost(model).params  # 76 + 185 + out 2*(2*2*5)+2 = 283
    # Unlimited, T = 1e9 with the cap prunes conv1 -> 2 and conv2 -> 2 filters.
    unlimited = threshold_masks(model, SCORES, 1e9)
    tf_asap.apply_masks(model, unlimited)
    full_reduction = tf_asap.count_cost(model).params_reduction
    tf_asap.apply_masks(model, {"conv1": np.ones(4, bool), "conv2": np.ones(5, bool)})

    limit = full_reduction / 2
    masks = threshold_masks(model, SCORES, 1e9, max_reduction=limit)
    # The model itself is left untouched.
    assert all(mask.all() for mask in tf_asap.get_masks(model).values())
    tf_asap.apply_masks(model, masks)
    reduction = tf_asap.count_cost(model).params_reduction
    assert 0 < reduction <= limit
    # Only filters the unlimited round pruned are given back, never others.
    for name in masks:
        assert np.all(masks[name] >= unlimited[name])
    assert dense == tf_asap.count_cost(model).params


def test_max_reduction_that_is_not_exceeded_changes_nothing():
    model = two_convs()
    assert {k: v.tolist() for k, v in threshold_masks(model, SCORES, 1e9, max_reduction=1.0).items()} == {
        k: v.tolist() for k, v in threshold_masks(model, SCORES, 1e9).items()
    }


@pytest.mark.parametrize("value", [0, 1.5, True])
def test_bad_max_reduction_gets_a_clear_error(value):
    with pytest.raises(ConfigurationError, match="max_reduction"):
        threshold_masks(two_convs(), SCORES, 1e9, max_reduction=value)


@pytest.mark.parametrize("priced", ["params", "flops"])
def test_max_reduction_is_priced_in_the_reduction_objective(priced):
    # Thresholds weigh params; the limit may be a FLOPs reduction (the policy's).
    model = two_convs()
    unlimited = threshold_masks(model, SCORES, 1e9)
    full = tf_asap.count_cost(model, masks=unlimited)
    limit = (full.params_reduction if priced == "params" else full.flops_reduction) / 2
    masks = threshold_masks(model, SCORES, 1e9, max_reduction=limit, reduction_objective=priced)
    trimmed = tf_asap.count_cost(model, masks=masks)
    reached = trimmed.params_reduction if priced == "params" else trimmed.flops_reduction
    assert 0 < reached <= limit
    # Giving back one filter fewer would exceed the limit: the trim is tight.
    assert sum(int((masks[n] & ~unlimited[n]).sum()) for n in masks) >= 1


def test_a_bad_reduction_objective_gets_a_clear_error():
    with pytest.raises(ConfigurationError, match="reduction_objective"):
        threshold_masks(two_convs(), SCORES, 1e9, max_reduction=0.1, reduction_objective="latency")


def _top_by_score(scores, count):
    """Indices of the `count` highest scores (ties: the lower index)."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    return set(order[:count].tolist())


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    threshold=st.floats(0.0, 4.0),
    round_to=st.integers(1, 12),
    max_fraction=st.sampled_from([None, 0.5]),
)
def test_round_to_keeps_a_multiple_of_the_best_channels_or_all_of_them(seed, threshold, round_to, max_fraction):
    model = RESNET_FOR_ROUNDING
    rng = np.random.default_rng(seed)
    groups = [g for g in tf_asap.channel_groups(model) if g.prunable]
    scores = {g.name: rng.uniform(0.01, 1.0, g.size) for g in groups}
    reference = attention_reference(scores)
    exact = threshold_masks(model, scores, threshold, reference=reference, max_fraction=max_fraction)
    rounded = threshold_masks(
        model, scores, threshold, reference=reference, max_fraction=max_fraction, round_to=round_to
    )
    for group in groups:
        keep, kept = rounded[group.name], int(rounded[group.name].sum())
        assert kept % round_to == 0 or kept == group.size
        # Only gives channels back, and no more than one block.
        assert np.all(keep | ~exact[group.name])
        assert kept - int(exact[group.name].sum()) < round_to
        assert set(np.flatnonzero(keep).tolist()) == _top_by_score(scores[group.name], kept)


RESNET_FOR_ROUNDING = tf_asap.make_prunable(resnet20(input_shape=(8, 8, 3), blocks=2, widths=(12, 20, 24)))


def test_round_to_by_hand():
    # T = 0 prunes nothing, a high T prunes conv1 to its min_filters (1) and
    # conv2 to 1: rounded up to 2, the best-scoring channels stay.
    model = two_convs()
    masks = threshold_masks(model, SCORES, 10.0, max_fraction=None, round_to=2)
    assert masks["conv1"].tolist() == [True, False, True, False]
    assert masks["conv2"].tolist() == [False, True, False, False, True]
    # 5 live channels cannot be rounded up to 6: a group keeps all it has.
    masks = threshold_masks(model, SCORES, 0.0, round_to=4)
    assert masks["conv2"].all() and masks["conv1"].all()


def test_round_to_keeps_max_reduction_and_shapes_ratio_masks():
    model = tf_asap.make_prunable(resnet20(input_shape=(8, 8, 3), blocks=2, widths=(12, 20, 24)))
    groups = [g for g in tf_asap.channel_groups(model) if g.prunable]
    rng = np.random.default_rng(3)
    scores = {g.name: rng.uniform(0.01, 1.0, g.size) for g in groups}
    masks = threshold_masks(
        model, scores, 2.0, reference=attention_reference(scores), max_reduction=0.3, round_to=8
    )
    assert tf_asap.count_cost(model, masks=masks).params_reduction <= 0.3
    for scope in ("group", "global"):
        masks = ratio_masks(model, scores, 0.6, scope=scope, round_to=8)
        assert all(keep.sum() % 8 == 0 or keep.all() for keep in masks.values())
        assert any(not keep.all() for keep in masks.values())


@pytest.mark.parametrize("value", [0, -8, 2.5, True, "16"])
def test_bad_round_to_gets_a_clear_error(value):
    with pytest.raises(ConfigurationError, match="round_to"):
        threshold_masks(two_convs(), SCORES, 0.5, round_to=value)
    with pytest.raises(ConfigurationError, match="round_to"):
        ratio_masks(two_convs(), SCORES, 0.5, round_to=value)
