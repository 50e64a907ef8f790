"""`Policy`: the protocol and bookkeeping shared by the three adaptive objectives.

A policy is told the unpruned baseline and the result of every round, and
answers with a `Decision`. This module holds what does not depend on the
objective: checking that results arrive in the order asked for, the stop
rules (`max_rounds`, a met target), the choice of the best round, the
watched metric and its direction, early rejection of a round part-way
through retraining, and saving and restoring the whole state. How `T` moves
is delegated to a search (`PaperSearch` or `BisectSearch`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from tf_asap import defaults
from tf_asap.checks import check_choice, check_fraction, check_int, check_number
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.policies.bisection import BisectSearch
from tf_asap.pruning.policies.results import (
    MODES,
    ROUNDING_SLACK,
    THRESHOLD_RTOL,
    Decision,
    RoundResult,
    is_fraction_metric,
    percent,
    prune,
    relative_change,
    stop,
)
from tf_asap.pruning.policies.recovery import RecoveryTracker
from tf_asap.pruning.policies.search import PaperSearch
from tf_asap.pruning.policies.state import STATE_FORMAT, register_kind, restore

__all__ = ["Policy", "SCHEDULES"]

SCHEDULES = {"paper": PaperSearch, "bisect": BisectSearch}


class Policy:
    """Base class of the adaptive pruning policies (Algorithms 2, 4 and 5).

    It runs the protocol (`start`, `observe`), the stop rules and the
    persistence shared by all three objectives, and delegates how `T` moves
    to a search chosen by `schedule`:

    - `"paper"` (the default): Algorithm 2's rule. `T` grows by λ after every
      acceptable round; after an unacceptable one the policy rolls back to
      the last acceptable round and retries with a halved λ, which carries
      on (see `tf_asap.pruning.policies.search.PaperSearch`).
    - `"bisect"`: from `initial_threshold`, λ doubles after every acceptable
      round until one fails; then `T` bisects between the last passing and
      the first failing threshold until a model's own bracket is narrower
      than `threshold_tolerance`; a ceiling inherited from an earlier model
      is re-tested first. Where every `T` in the bracket prunes too much
      (the scores moved during retraining), rounds are trimmed to the middle
      of the size bracket instead (see `tf_asap.pruning.policies.bisection`).

    Either stops when the size metric (`objective`) converges (the paper's
    0.1% rule, Algorithm 2, line 9), after `max_rounds` rounds, or when the
    search has no retry left. Subclasses say which rounds are acceptable and
    which is the best result. Quality is one metric with a direction:
    `metric` names it (the controller reads it from `model.evaluate`) and
    `mode` says whether larger (`"max"`: accuracy, AUC) or smaller (`"min"`:
    a loss, MAE) is better; a "drop" is a change in the bad direction.

    Args:
        step: The initial increment λ of `T` per acceptable round, `> 0`.
        initial_threshold: `T` of round 1, `>= 0`.
        patience: Consecutive acceptable rounds of (almost) unchanged size
            that count as converged, `>= 1`.
        min_relative_change: Largest relative change of the size metric
            between a round and the round it was pruned from that counts as
            unchanged, in `[0, 1)`.
        max_rollbacks: Rollbacks to one round before it is exhausted, `>= 0`;
            `0` stops at the first unacceptable round. The paper's search
            then goes further back; the bisecting one stops.
        max_rounds: The last pruning round the policy asks for, `>= 1`.
        step_growth: With the paper's schedule, λ is multiplied by this after
            an acceptable round that changed the size, up to `step`. `1` is
            the paper. Defaults to `1`.
        metric: The name of the watched metric. Defaults to `"accuracy"`.
        mode: `"max"` or `"min"`: the metric's better direction. Defaults to
            `"max"`.
        schedule: `"paper"` or `"bisect"`. Defaults to `"paper"`.
        threshold_tolerance: With `schedule="bisect"`, the bracket width of
            `T` at which the search stops, `> 0`. Defaults to `0.01`.
        size_tolerance: With `schedule="bisect"`, the size bracket (a share
            of the baseline's `objective`) above which trimmed retries follow
            a closed `T` bracket, in `(0, 1)`; `None`: none. Defaults to `0.02`.

    Raises:
        ConfigurationError: If an argument is outside its range.
    """

    objective: ClassVar[str]

    def __init_subclass__(cls, register=True, **kwargs):
        # `register=False` marks a shared base, not a kind `from_state` restores.
        super().__init_subclass__(**kwargs)
        if register:
            register_kind(cls)

    def __init__(self, *, step, initial_threshold, patience, min_relative_change, max_rollbacks,
                 max_rounds, step_growth=defaults.STEP_GROWTH, metric=defaults.METRIC,
                 mode=defaults.MODE, schedule=defaults.SCHEDULE, threshold_tolerance=0.01,
                 size_tolerance=defaults.SIZE_TOLERANCE):
        self.initial_step = check_number("step", step, 0.0, low_open=True)
        self.initial_threshold = check_number("initial_threshold", initial_threshold, 0.0)
        self.patience = check_int("patience", patience, minimum=1)
        self.min_relative_change = check_fraction("min_relative_change", min_relative_change, allow_one=False)
        self.max_rollbacks = check_int("max_rollbacks", max_rollbacks, minimum=0)
        self.max_rounds = check_int("max_rounds", max_rounds, minimum=1)
        self.step_growth = check_number(
            "step_growth", step_growth, 1.0,
            fix="1 keeps a halved step, as the paper does; 2 doubles it back.",
        )
        if not isinstance(metric, str) or not metric:
            raise ConfigurationError(
                f"`metric` must be the name of a metric model.evaluate reports, such as "
                f"'accuracy', 'auc' or 'mae'; received {metric!r}."
            )
        self.metric = metric
        self.mode = check_choice(
            "mode", mode, MODES, fix="'max' when larger is better (accuracy), 'min' for a loss or MAE."
        )
        self.schedule = check_choice("schedule", schedule, tuple(SCHEDULES))
        self.threshold_tolerance = check_number("threshold_tolerance", threshold_tolerance, 0.0, low_open=True)
        self.size_tolerance = check_fraction("size_tolerance", size_tolerance, allow_zero=False, allow_one=False,
                                             allow_none=True, fix="A share of the size, e.g. 0.02; None: off.")
        self._search = self._make_search()
        self._history: list[RoundResult] = []
        self._pending: tuple[int, float] | None = None
        self._last_decision: Decision | None = None
        self._recovery = RecoveryTracker(self.mode)

    def _make_search(self):
        options = dict(
            objective=self.objective, step=self.initial_step, initial_threshold=self.initial_threshold,
            patience=self.patience, min_relative_change=self.min_relative_change,
            max_rollbacks=self.max_rollbacks, step_growth=self.step_growth,
        )
        if self.schedule == "bisect":
            options.update(threshold_tolerance=self.threshold_tolerance, size_tolerance=self.size_tolerance)
        return SCHEDULES[self.schedule](**options)

    # ----------------------------------------------------------- subclass API
    def acceptable(self, result: RoundResult) -> bool:
        """Returns whether `result` satisfies this policy's constraint."""
        raise NotImplementedError

    def score_bound(self) -> float | None:
        """The worst acceptable score, or `None` when the score does not decide acceptance."""
        return None

    def to_config(self) -> dict[str, Any]:
        """Returns the constructor arguments, for logs and `from_state`."""
        return {
            "step": self.initial_step,
            "initial_threshold": self.initial_threshold,
            "patience": self.patience,
            "min_relative_change": self.min_relative_change,
            "max_rollbacks": self.max_rollbacks,
            "max_rounds": self.max_rounds,
            "step_growth": self.step_growth,
            "metric": self.metric,
            "mode": self.mode,
            "schedule": self.schedule,
            "threshold_tolerance": self.threshold_tolerance,
            "size_tolerance": self.size_tolerance,
        }

    def get_config(self) -> dict[str, Any]:
        """The Keras-style name of `to_config()`."""
        return self.to_config()

    def _verdict(self, result):
        """One phrase comparing `result` with the constraint."""
        raise NotImplementedError

    def meets_target(self, result: RoundResult) -> bool:
        """Returns whether `result` reaches a target that ends the run at once."""
        return False

    def _best(self):
        """Returns `(round, summary)` of the best acceptable round so far."""
        raise NotImplementedError

    # ---------------------------------------------------------------- metric
    def improvement(self, before: float, after: float) -> float:
        """How much better `after` is than `before` in the metric's direction."""
        return after - before if self.mode == "max" else before - after

    def format_score(self, value: float) -> str:
        """A metric value or difference as printed in reasons: percent for fractions."""
        return percent(value) if is_fraction_metric(self.metric) else f"{value:.4g}"

    def _rank(self, result):
        """Sort key: smaller is better quality."""
        return -result.score if self.mode == "max" else result.score

    # ------------------------------------------------------------- protocol
    @property
    def history(self) -> list[RoundResult]:
        """Every result observed so far, the baseline (round 0) first."""
        return list(self._history)

    @property
    def reduction_limit(self) -> float | None:
        """The largest reduction of `objective` a round may reach, or `None`.

        Target policies return `reduction + tolerance`, so that the pruning
        step trims a round that would overshoot into the target window; the
        bisecting search's trimmed retries set one too (the smaller applies).
        The round controller prices it in this policy's `objective`.
        """
        return self._search.limit

    @property
    def step(self) -> float:
        """The current λ: the step the policy will add after the next acceptable round."""
        return self._search.step

    @property
    def next_round(self) -> int | None:
        """The round number `observe()` expects next; `None` when not running."""
        return None if self._pending is None else self._pending[0]

    @property
    def last_decision(self) -> Decision | None:
        """The decision returned last; after a resume, the one to carry out."""
        return self._last_decision

    @property
    def exhausted_rounds(self) -> list[int]:
        """Acceptable rounds abandoned after `max_rollbacks` failed retries."""
        return list(self._search.exhausted)

    @property
    def best_round(self) -> int | None:
        """The best acceptable round so far (the result, once stopped)."""
        if self._last_decision is not None and self._last_decision.action == "stop":
            return self._last_decision.best_round
        if not self._history:
            return None
        return self._best()[0]

    @property
    def baseline(self) -> RoundResult | None:
        """The unpruned model's result given to `start()`."""
        return self._history[0] if self._history else None

    def start(self, baseline: RoundResult, initial_threshold: float | None = None) -> Decision:
        """Begins a run from the unpruned model and asks for round 1.

        Args:
            baseline: The `RoundResult` of the trained, unpruned model, with
                `round=0`.
            initial_threshold: `T` of round 1 for this run, `>= 0`, in place
                of the configured `initial_threshold` (which `to_config`
                keeps): for a start sized by a sensitivity scan. It is part
                of the saved state. Defaults to `None`: the configured one.

        Returns:
            A `"prune"` decision with `threshold=initial_threshold`.

        Raises:
            ConfigurationError: If the policy was already started, or the
                baseline is not round 0 or has no parameters or FLOPs.
        """
        if self._history:
            raise ConfigurationError(
                "start() was called on a policy that has already started; "
                "create a new policy for a new run, or restore one with "
                "from_state() to continue a run."
            )
        baseline = _check_result_type(baseline)
        if baseline.round != 0:
            raise ConfigurationError(f"The baseline must be round 0; received round {baseline.round}.")
        if baseline.params <= 0 or baseline.flops <= 0:
            raise ConfigurationError(
                "The baseline must have params > 0 and flops > 0, since sizes are "
                f"measured relative to it; received params={baseline.params}, "
                f"flops={baseline.flops}."
            )
        if initial_threshold is not None:
            self._search.initial_threshold = check_number("initial_threshold", initial_threshold, 0.0)
        self._history.append(baseline)
        threshold = self._search.begin()
        return self._finish(prune(threshold, f"round 1: prune with the initial threshold T={threshold:.6g}"))

    def observe(self, result: RoundResult) -> Decision:
        """Takes the result of the round last asked for and decides the next step.

        Args:
            result: The `RoundResult` of round `next_round`, pruned with the
                threshold of the last decision.

        Returns:
            The next `Decision`.

        Raises:
            ConfigurationError: If called before `start()` or after a stop,
                or if `result` is not the round (or threshold) asked for.
        """
        expected_round, expected_threshold = self._require_running("observe()")
        result = _check_result_type(result)
        if result.round != expected_round:
            raise ConfigurationError(
                f"The policy asked for round {expected_round} but was told the "
                f"result of round {result.round}; report rounds in the order the "
                "policy asks for them (see `next_round`)."
            )
        if not math.isclose(result.threshold, expected_threshold, rel_tol=THRESHOLD_RTOL, abs_tol=ROUNDING_SLACK):
            raise ConfigurationError(
                f"Round {result.round} was asked to prune with T={expected_threshold!r} "
                f"but reports T={result.threshold!r}; prune with the threshold of "
                "the last decision."
            )
        self._recovery.final_value(result.round, result.score)
        self._history.append(result)
        decision = self._decide(result, expected_threshold)
        if decision.action != "stop" and result.round >= self.max_rounds:
            decision = stop(f"reached max_rounds={self.max_rounds}")
        return self._finish(decision)

    def _decide(self, result, threshold):
        verdict = self._verdict(result)
        if self.meets_target(result):
            return stop(f"{verdict}: target met")
        parent = self._result(self._search.parent.round)
        moved = relative_change(self._size(parent), self._size(result)) > self.min_relative_change + ROUNDING_SLACK
        reduction = 1.0 - self._size(result) / self._size(self._history[0])
        if self.acceptable(result):
            return self._search.accepted(result.round, threshold, moved, verdict, reduction)
        if not moved:
            return self._search.noise(threshold, verdict)
        return self._search.rejected(result.round, threshold, verdict, self._model_of, reduction)

    def _require_running(self, what):
        """Returns `(round, threshold)` asked for, or raises if not running."""
        if not self._history:
            raise ConfigurationError(
                f"{what} was called before start(); call "
                "policy.start(baseline) with the unpruned model's RoundResult first."
            )
        if self._pending is None:
            raise ConfigurationError(
                f"{what} was called after the policy stopped (best round "
                f"{self.best_round}); it expects no more rounds. Create a new "
                "policy to prune again."
            )
        return self._pending

    def repeated_failure(self, params, flops) -> RoundResult | None:
        """The unacceptable round that already pruned the current model to this size.

        If an earlier round pruned the next round's parent model to exactly
        `params` and `flops` and failed, the next round would very likely
        retrain the same filters from the same state (a smaller `T` on the
        same scores picks a subset, often the same set under the per-round
        cap). The controller and the callback check that the masks are
        identical and then report that round's score again instead of
        retraining; the policy treats it as any failure.

        Args:
            params: Effective params of the next round's masked model.
            flops: Effective FLOPs of the next round's masked model.

        Returns:
            The earlier round's `RoundResult`, or `None`.
        """
        if self._pending is None or not self._search.lineage:
            return None
        for number in self._search.parent.failed_rounds:
            earlier = self._result(number)
            if (earlier.params, earlier.flops) == (params, flops):
                return earlier
        return None

    def _finish(self, decision):
        if decision.action == "stop":
            best, summary = self._best()
            decision = Decision("stop", None, None, best, f"{decision.reason}; {summary}")
        self._last_decision = decision
        if decision.action == "stop":
            self._pending = None
        else:
            self._pending = (self._history[-1].round + 1, decision.threshold)
        return decision

    def early_reject(self, partial_metric, epochs_done, epochs_total) -> bool:
        """Whether the round being retrained cannot become acceptable: stop it early.

        The controller may call this after each retraining epoch of round
        `next_round` with the watched metric's validation value. The rule
        (see `tf_asap.pruning.policies.recovery`): reject when the value plus
        the best per-epoch recovery seen so far, times the epochs left, still
        misses the bound. Without a metric bound (the target policies) or
        before any recovery has been seen, it never rejects. A rejected round
        is then reported to `observe()` as usual, with the partial value.

        Args:
            partial_metric: The metric's validation value after
                `epochs_done` epochs of this round's retraining.
            epochs_done: Epochs of retraining done, in `[1, epochs_total]`.
            epochs_total: Epochs this round retrains for in all, `>= 1`.

        Returns:
            `True` to stop retraining this round now.

        Raises:
            ConfigurationError: If the policy is not running or an argument
                is out of range.

        Example:

        >>> policy = AccuracyGuaranteed(max_accuracy_drop=0.01)
        >>> _ = policy.start(RoundResult(0, 0.0, 0.90, 1000, 5000))
        >>> [policy.early_reject(a, e, 3) for a, e in ((0.80, 1), (0.86, 2))]
        [False, False]
        >>> _ = policy.observe(RoundResult(1, 0.0, 0.885, 900, 4000))
        >>> policy.early_reject(0.70, 1, 3)  # 0.70 + 2 epochs * 0.06 < 0.89
        True
        """
        round_number, _ = self._require_running("early_reject()")
        epochs_total = check_int("epochs_total", epochs_total, minimum=1)
        epochs_done = check_int("epochs_done", epochs_done, minimum=1, maximum=epochs_total)
        partial_metric = check_number("partial_metric", partial_metric)
        self._recovery.partial_value(round_number, partial_metric, epochs_done, epochs_total)
        bound = self.score_bound()
        reachable = self._recovery.best_reachable(partial_metric, epochs_total - epochs_done)
        if bound is None or reachable is None:
            return False
        return self.improvement(bound, reachable) < -ROUNDING_SLACK

    # --------------------------------------------------------------- helpers
    def _size(self, result):
        return result.params if self.objective == "params" else result.flops

    def _result(self, round_number):
        # Round numbers are consecutive, so the history is indexed by them.
        return self._history[round_number]

    def _model_of(self, round_number):
        result = self._result(round_number)
        return result.params, result.flops

    def _acceptable_results(self):
        return [r for r in self._history if self.acceptable(r)]

    def _require_baseline(self):
        if not self._history:
            raise ConfigurationError("This needs the baseline: call policy.start(baseline) first.")
        return self._history[0]

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items())
        return f"{type(self).__name__}({arguments})"

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Returns the policy's full state as JSON-serialisable data.

        Save it after every decision; `from_state()` rebuilds a policy that
        continues exactly where this one is, so a run killed mid-round
        resumes by redoing `last_decision`.

        Returns:
            A dict of plain Python values with a `"kind"` key naming the class.
        """
        decision = self._last_decision
        return {
            "kind": type(self).__name__,
            "format": STATE_FORMAT,
            "config": self.to_config(),
            "history": [dataclasses.asdict(r) for r in self._history],
            **self._search.state_dict(),
            "recovery": self._recovery.state_dict(),
            "pending": None if self._pending is None else list(self._pending),
            "last_decision": None if decision is None else dataclasses.asdict(decision),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the run state saved by `state_dict()` into this new policy.

        Prefer `Policy.from_state(state)`, which also builds the policy from
        the saved configuration and checks the state's kind and format.

        Raises:
            KeyError, TypeError, IndexError: If `state` is incomplete.
        """
        self._history = [RoundResult(**r) for r in state["history"]]
        self._search.load_state(state)
        self._recovery.load_state(state.get("recovery"))
        pending = state["pending"]
        self._pending = None if pending is None else (int(pending[0]), float(pending[1]))
        decision = state["last_decision"]
        self._last_decision = None if decision is None else Decision(**decision)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Policy:
        """Rebuilds a policy from `state_dict()`; the exact inverse.

        Called on `Policy` it restores whichever kind the state names; called
        on a subclass it also checks that the state is of that kind. States
        of format 1 (before `score`, `metric` and `schedule`) still load.

        Args:
            state: A dict returned by `state_dict()`, possibly after a JSON
                round trip.

        Returns:
            A policy that makes the same decisions the saved one would have.

        Raises:
            ConfigurationError: If `state` is not a complete policy state, or
                is the state of another kind of policy.

        Example:

        >>> policy = AccuracyGuaranteed(max_accuracy_drop=0.01)
        >>> _ = policy.start(RoundResult(0, 0.0, 0.9, 1000, 5000))
        >>> restored = Policy.from_state(policy.state_dict())
        >>> restored.next_round
        1
        """
        return restore(state, expected=None if cls is Policy else cls)


def _check_result_type(result):
    if not isinstance(result, RoundResult):
        raise ConfigurationError(
            "A policy must be given a tf_asap.pruning.policies.RoundResult; received "
            f"{type(result).__name__}."
        )
    return result
