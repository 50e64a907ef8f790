"""Tests of the final stage's bound (`final_max_drop`): fine-tune the chosen
round, step back to smaller accepted rounds while the fine-tuned model misses
the bound on validation, resume without retraining what is recorded.

The fine-tuning itself is replaced by a counter and the validation accuracy
after it is scripted per round (the rounds are recognised by their masks),
so the decisions are exact; the rounds before the stage are real."""

import json

import keras
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tf_asap.core.masks import mask_digest
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.policies import AccuracyGuaranteed
from tf_asap.rounds import final_tuning
from tf_asap.rounds.final_tuning import fallback_rounds
from tf_asap.rounds.controller import RoundController
from tf_asap.rounds.retraining import Retraining
from tests.rounds.test_retraining import (  # noqa: F401 - trained_weights is a fixture
    BATCH, TEST, TRAIN, VALIDATION, trained_model, trained_weights,
)

# The rounds this run makes (asserted in `first_run`): 1 prunes nothing, then
# 2, 3 and 4 remove ever more params; 4 is the policy's choice.
POLICY = dict(max_accuracy_drop=0.9, step=0.5, max_rounds=4)


class Script:
    """Stands in for fine-tuning: counts it, and says what validation shows after it."""

    def __init__(self, monkeypatch, drops):
        self.drops, self.tuned, self.digests, self.baseline = drops, [], {}, None
        real_quality = final_tuning.quality
        script = self

        def fine_tune(retraining, epochs):
            script.tuned.append(script.round_of(retraining.model))

        def quality(model, metric, validation, test=None):
            values = real_quality(model, metric, validation, test)
            values[f"validation_{metric}"] = script.baseline - script.drops[script.round_of(model)]
            return values

        monkeypatch.setattr(Retraining, "fine_tune", fine_tune)
        monkeypatch.setattr(final_tuning, "quality", quality)

    def learn(self, run_dir):
        records = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
        self.baseline = records[0]["accuracy"]
        for record in records[1:]:
            self.digests.setdefault(record["mask_digest"], record["round"])

    def round_of(self, model):
        return self.digests.get(mask_digest(model), 0)


def run(weights, run_dir, final_max_drop, final_epochs=2):
    keras.utils.set_random_seed(0)
    return final_tuning_controller(weights, run_dir, final_max_drop, final_epochs).run()


def final_tuning_controller(weights, run_dir, final_max_drop, final_epochs=2):
    return RoundController(
        trained_model(weights), AccuracyGuaranteed(**POLICY), TRAIN, VALIDATION,
        run_dir=run_dir, epochs=2, rewind_epoch=1, batch_size=BATCH, test_data=TEST,
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9), verbose=0,
        final_epochs=final_epochs, final_max_drop=final_max_drop,
    )


@pytest.fixture
def first_run(trained_weights, tmp_path, monkeypatch):
    """A finished run without a bound; its stage fine-tuned round 4 once."""
    script = Script(monkeypatch, {0: 0.0, 1: 0.0, 2: 0.001, 3: 0.004, 4: 0.02})
    # The digests are only known once the rounds ran: learn them before the stage.
    original = final_tuning.FinalStage.run

    def learning_run(stage, model, retraining, journal, *args, **kwargs):
        script.learn(tmp_path)
        return original(stage, model, retraining, journal, *args, **kwargs)

    monkeypatch.setattr(final_tuning.FinalStage, "run", learning_run)
    result = run(trained_weights, tmp_path, None)
    reductions = [r["params_reduction"] for r in result.rounds]
    assert reductions[1] == 0.0 and 0.0 < reductions[2] < reductions[3] < reductions[4]
    assert result.best_round == 4 and script.tuned == [4]
    monkeypatch.setattr(final_tuning.FinalStage, "run", original)
    return result, script


def manifest(run_dir):
    return json.loads((run_dir / "run.json").read_text())


def test_a_missed_bound_steps_back_to_the_largest_round_that_keeps_it(
    first_run, trained_weights, tmp_path
):
    _, script = first_run
    result = run(trained_weights, tmp_path, final_max_drop=0.005)
    # Round 4 was fine-tuned already (0.02 > 0.005): only round 3 is trained now.
    assert script.tuned == [4, 3]
    assert result.best_round == 3
    stage = result.final_tuning
    assert stage["round"] == 3 and stage["met"] is True and stage["max_drop"] == 0.005
    assert [a["round"] for a in stage["attempts"]] == [4, 3]
    assert [a["validation_drop"] for a in stage["attempts"]] == pytest.approx([0.02, 0.004])
    assert manifest(tmp_path)["final_tuning"] == stage
    assert manifest(tmp_path)["best_round"] == 3
    # The result is round 3's model, in both forms.
    assert result.slim_model.count_params() == result.rounds[3]["params"]
    assert result.test["best_round"] == 3
    report = (tmp_path / "report.md").read_text()
    assert "round 4 missed final_max_drop" in report and "round 3 kept final_max_drop" in report


def test_a_finished_run_is_not_trained_again_for_a_bound_it_keeps(
    first_run, trained_weights, tmp_path
):
    _, script = first_run
    tight = run(trained_weights, tmp_path, final_max_drop=0.005)
    weights = [w.copy() for w in tight.model.get_weights()]
    again = run(trained_weights, tmp_path, final_max_drop=0.005)
    looser = run(trained_weights, tmp_path, final_max_drop=0.01)  # round 3 is still the last kept
    assert script.tuned == [4, 3]
    assert again.best_round == looser.best_round == 3
    for a, b in zip(looser.model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    # A bound that round 4 keeps after all: its tuned model is gone, so it is trained again.
    loosest = run(trained_weights, tmp_path, final_max_drop=0.05)
    assert script.tuned == [4, 3, 4] and loosest.best_round == 4
    assert [a["round"] for a in loosest.final_tuning["attempts"]] == [4]


def test_when_no_pruned_round_keeps_the_bound_the_result_is_the_unpruned_model(
    first_run, trained_weights, tmp_path
):
    _, script = first_run
    result = run(trained_weights, tmp_path, final_max_drop=0.0005)
    # Round 1 pruned nothing: it is no candidate.
    assert script.tuned == [4, 3, 2]
    assert result.best_round == 0
    stage = result.final_tuning
    assert stage["round"] == 0 and stage["met"] is False and stage["epochs"] == 0
    assert result.slim_model.count_params() == result.rounds[0]["params"]
    assert "no pruned round kept final_max_drop" in (tmp_path / "report.md").read_text()


def test_a_run_killed_while_stepping_back_redoes_only_the_attempt_in_flight(
    first_run, trained_weights, tmp_path, monkeypatch
):
    _, script = first_run
    scripted = Retraining.fine_tune

    def killed_on_round_2(retraining, epochs):
        if script.round_of(retraining.model) == 2:
            raise KeyboardInterrupt
        scripted(retraining, epochs)

    monkeypatch.setattr(Retraining, "fine_tune", killed_on_round_2)
    with pytest.raises(KeyboardInterrupt):
        run(trained_weights, tmp_path, final_max_drop=0.002)
    assert script.tuned == [4, 3]
    assert [a["round"] for a in manifest(tmp_path)["final_tuning"]["attempts"]] == [4, 3]
    monkeypatch.setattr(Retraining, "fine_tune", scripted)
    result = run(trained_weights, tmp_path, final_max_drop=0.002)
    assert script.tuned == [4, 3, 2] and result.best_round == 2


@given(
    reductions=st.lists(st.floats(0.0, 0.99), min_size=2, max_size=8),
    data=st.data(),
)
def test_fallback_rounds_try_the_chosen_then_smaller_checkpointed_rounds_most_first(reductions, data):
    records = [{"round": 0, "params_reduction": 0.0}] + [
        {"round": i + 1, "params_reduction": r} for i, r in enumerate(reductions)
    ]
    chosen = data.draw(st.integers(1, len(reductions)))
    checkpointed = data.draw(st.sets(st.integers(0, len(reductions)))) | {0, chosen}
    order = fallback_rounds(records, sorted(checkpointed), chosen, "params")
    assert order[0] == chosen and len(set(order)) == len(order)
    rest = [records[r]["params_reduction"] for r in order[1:]]
    assert rest == sorted(rest, reverse=True)
    assert all(0.0 < value < records[chosen]["params_reduction"] for value in rest)
    assert set(order[1:]) == {
        r for r in checkpointed
        if r not in (0, chosen) and 0.0 < records[r]["params_reduction"] < records[chosen]["params_reduction"]
    }


@pytest.mark.parametrize(
    "options, fix",
    [
        ({"final_max_drop": -0.01, "final_epochs": 2}, "largest validation drop"),
        ({"final_max_drop": 0.005, "final_epochs": 0}, "needs final_epochs >= 1"),
        ({"final_max_drop": "half", "final_epochs": 2}, "final_max_drop"),
    ],
)
def test_bad_final_bounds_are_refused_with_the_fix(trained_weights, tmp_path, options, fix):
    with pytest.raises(ConfigurationError, match=fix):
        final_tuning_controller(trained_weights, tmp_path, **options)
