"""Adaptive pruning policies: when to prune harder, when to roll back, when to stop.

A policy implements one of the paper's adaptive pruning objectives (Section
3.2): Algorithm 2 (accuracy-guaranteed), Algorithm 4 (memory-constrained) and
Algorithm 5 (FLOPs-constrained, appendix A.3/A.4). Each is a pure Python state
machine with no Keras inside: it is told the unpruned baseline and the result
of every pruning round, and answers with a `Decision`: prune the next round
with global threshold `T`, restore an earlier round and then prune, or stop.
The round controller and the `fit()` callback execute those decisions.

The protocol, as the controller runs it (Algorithm 1):

```python
policy = AccuracyGuaranteed(max_accuracy_drop=0.01)
decision = policy.start(baseline)            # RoundResult of round 0
while decision.action != "stop":
    if decision.action == "rollback":
        restore_round(decision.rollback_to)  # weights, masks, optimizer
    result = prune_retrain_evaluate(round=policy.next_round,
                                    threshold=decision.threshold)
    decision = policy.observe(result)
model = load_round(decision.best_round)
```

Round numbers only grow: after a rollback to round 24 the next round is still
`policy.next_round` (26 after a failed round 25), pruned on top of round 24's
restored state. The controller must keep the saved state of the baseline and
of every acceptable round, since a policy may roll back to, or finish with,
any of them.

The unit of `T`. The paper's `T = 0.0, λ = 0.005` (Algorithm 2, line 3) are
absolute attention values, which only fit one model's activation scale (the
authors' own scripts pass `λ = 1.0`). Here `T` is relative: the thresholds
step multiplies it by a reference attention scale measured in the first round,
so that `T ≈ 1` means "a typical filter's score". The default steps below are
chosen in these units so that a run converges in roughly 10-25 rounds.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
from typing import Any, ClassVar

from tf_asap.errors import ConfigurationError

__all__ = [
    "AccuracyGuaranteed",
    "Decision",
    "FlopsTarget",
    "ParamsTarget",
    "Policy",
    "RoundResult",
    "policy_from_state",
]

_ACTIONS = ("prune", "rollback", "stop")
_METRICS = ("params", "flops")
# A drop of exactly the allowed 1% computes as 0.010000000000000009 in floating
# point; this slack keeps such a round acceptable without loosening any bound
# a user could notice.
_ROUNDING_SLACK = 1e-9
# The controller may carry T through float32 (a Keras variable, a log); a
# reported T this close to the requested one is the same T.
_THRESHOLD_RTOL = 1e-6
_STATE_FORMAT = 1


def _as_count(name, value, minimum=0):
    """Returns `value` as a Python int >= `minimum`, or raises."""
    if isinstance(value, bool):
        integer = None
    elif isinstance(value, float) and value.is_integer():
        integer = int(value)
    else:
        try:
            integer = operator.index(value)
        except TypeError:
            integer = None
    if integer is None or integer < minimum:
        raise ConfigurationError(
            f"`{name}` must be an integer >= {minimum}; received {value!r}."
        )
    return integer


def _as_number(name, value, low, high, low_open=False, high_open=False, hint=""):
    """Returns `value` as a finite Python float within the given interval."""
    number = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    left, right = ("(" if low_open else "["), (")" if high_open else "]")
    inside = (
        number is not None
        and math.isfinite(number)
        and (number > low if low_open else number >= low)
        and (number < high if high_open else number <= high)
    )
    if not inside:
        raise ConfigurationError(
            f"`{name}` must be a number in {left}{low}, {high}{right}"
            f"{hint}; received {value!r}."
        )
    return number


def _percent(fraction):
    return f"{100.0 * fraction:.2f}%"


def _times(count):
    return f"{count} time" if count == 1 else f"{count} times"


def _relative_change(before, after):
    if before == 0:
        return 0.0 if after == 0 else math.inf
    return abs(after - before) / before


@dataclasses.dataclass(frozen=True)
class RoundResult:
    """What one pruning round produced, as reported to a policy.

    Values are validated and normalised to plain Python numbers, so that a
    policy's state stays JSON-serialisable and a resumed policy computes
    exactly what the original did.

    Args:
        round: The round number: `0` is the unpruned baseline, `1, 2, ...`
            are pruning rounds, numbered in the order they ran.
        threshold: The global threshold `T` the round pruned with (`0.0` for
            the baseline), in the relative units described in the module
            docstring.
        accuracy: Validation accuracy after retraining, in `[0, 1]`.
        params: Remaining (effective, unmasked) parameters.
        flops: Remaining (effective, unmasked) FLOPs.

    Raises:
        ConfigurationError: If a value is outside its range, for example an
            accuracy given in percent.
    """

    round: int
    threshold: float
    accuracy: float
    params: int
    flops: int

    def __post_init__(self):
        fields = {
            "round": _as_count("round", self.round),
            "threshold": _as_number(
                "threshold", self.threshold, 0.0, math.inf, high_open=True
            ),
            "accuracy": _as_number(
                "accuracy", self.accuracy, 0.0, 1.0, hint=" (a fraction, not a percent)"
            ),
            "params": _as_count("params", self.params),
            "flops": _as_count("flops", self.flops),
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)


@dataclasses.dataclass(frozen=True)
class Decision:
    """What a policy asks the controller to do next.

    Args:
        action: `"prune"`: prune the next round with `threshold` on top of
            the current model. `"rollback"`: first restore the saved state
            of round `rollback_to` (weights, masks, optimizer), then prune
            the next round with `threshold`. `"stop"`: the run is over and
            `best_round` is its result.
        threshold: `T` for the next round; `None` on stop.
        rollback_to: The round whose saved state must be restored first;
            only set for `"rollback"`.
        best_round: The round whose model is the result; only set for
            `"stop"`.
        reason: One human-readable line saying why, for logs and progress.
    """

    action: str
    threshold: float | None
    rollback_to: int | None
    best_round: int | None
    reason: str

    def __post_init__(self):
        if self.action not in _ACTIONS:
            raise ConfigurationError(
                f"`action` must be one of {_ACTIONS}; received {self.action!r}."
            )


@dataclasses.dataclass
class _LineageEntry:
    """One acceptable round on the line of rounds the current model descends from."""

    round: int
    # T this round pruned with (for the baseline: the initial threshold).
    threshold: float
    # λ that continues from this round: λ_k in Algorithm 2, lines 12 and 22.
    step: float
    # Consecutive rounds on this lineage whose size changed by at most
    # `min_relative_change` (the convergence rule, Algorithm 2, line 9).
    streak: int
    # Whether a round after the first one has moved the size metric yet.
    armed: bool
    # N in Algorithm 2, line 22: how many times the policy rolled back here.
    rollbacks: int = 0
    # The unacceptable rounds pruned from this round, in order.
    failed_rounds: list = dataclasses.field(default_factory=list)


class Policy:
    """Base class of the adaptive pruning policies (Algorithms 2, 4 and 5).

    It owns the search shared by all three objectives. `T` starts at
    `initial_threshold` and grows by `step` (λ) after every acceptable round
    (Algorithm 2, lines 12-13). After an unacceptable round it rolls back to
    the last acceptable round `k` and retries with `T[k] + λ_k / 2^(N+1)`,
    where λ_k is the step in effect when `k` was accepted and `N` the number of
    earlier rollbacks to `k`; the halved step then carries on (lines 21-23).
    An unacceptable round that removed nothing (its size equals its
    parent's) failed on retraining noise alone; the policy restores the parent
    and raises `T` by the current step without halving it or counting a
    rollback. A retry that prunes exactly what an earlier failure from `k`
    pruned counts as a rollback like any other; the controller and the
    callback report it without retraining (see `repeated_failure`). After
    `max_rollbacks` rollbacks to the same `k`, `k` is marked exhausted and the
    policy goes back to the acceptable round before it (lines 17-19).
    Rounds before `k` that hold the same model as `k` (they pruned nothing
    since) are exhausted with it: going back to one of them would climb
    through the same thresholds to the same failures. A rollback to the
    baseline retries from `initial_threshold` with the halved step, since no
    `T` is smaller than the one round 1 used.

    The run stops when the size metric (`objective`) changed by at most
    `min_relative_change` over `patience` consecutive acceptable rounds
    (line 9), or after `max_rounds` rounds, or when even the baseline has
    been retried `max_rollbacks` times. Subclasses say which rounds are
    acceptable and which round is the best result.

    Two refinements of the convergence rule keep it from ending a run that
    has not started: the first round after the baseline never counts (at
    `T = 0` it prunes only dead filters), and the rule is armed only once a
    later round has changed the size by more than `min_relative_change`
    (until then `T` is still below every live filter's score). Streaks are
    counted along the lineage of the current model, so a rolled-back round,
    whose model was discarded, neither breaks nor extends one.

    Args:
        step: The initial increment λ of `T` per acceptable round.
        initial_threshold: `T` of round 1.
        patience: Consecutive acceptable rounds of (almost) unchanged size
            that count as converged.
        min_relative_change: Largest relative change of the size metric
            between a round and the round it was pruned from that counts as
            unchanged.
        max_rollbacks: Rollbacks to one round before it is marked exhausted;
            `0` stops at the first unacceptable round.
        max_rounds: The last pruning round the policy asks for.
        step_growth: After an acceptable round that changed the size, λ is
            multiplied by this, up to `step`. `1` (the default) is the
            paper: a halved λ carries on for the rest of the run.

    Raises:
        ConfigurationError: If an argument is outside its range.
    """

    _kinds: ClassVar[dict[str, type[Policy]]] = {}
    objective: str

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            Policy._kinds[cls.__name__] = cls

    def __init__(
        self,
        *,
        step,
        initial_threshold,
        patience,
        min_relative_change,
        max_rollbacks,
        max_rounds,
        step_growth=1.0,
    ):
        self.initial_step = _as_number(
            "step", step, 0.0, math.inf, low_open=True, high_open=True
        )
        self.initial_threshold = _as_number(
            "initial_threshold", initial_threshold, 0.0, math.inf, high_open=True
        )
        self.patience = _as_count("patience", patience, minimum=1)
        self.min_relative_change = _as_number(
            "min_relative_change", min_relative_change, 0.0, 1.0, high_open=True
        )
        self.max_rollbacks = _as_count("max_rollbacks", max_rollbacks, minimum=0)
        self.max_rounds = _as_count("max_rounds", max_rounds, minimum=1)
        self.step_growth = _as_number(
            "step_growth", step_growth, 1.0, math.inf, high_open=True,
            hint=" (1 keeps a halved step, as the paper does; 2 doubles it back)",
        )
        self._history: list[RoundResult] = []
        self._lineage: list[_LineageEntry] = []
        self._exhausted: list[int] = []
        self._step = self.initial_step
        self._pending: tuple[int, float] | None = None
        self._last_decision: Decision | None = None

    # ----------------------------------------------------------- subclass API
    def acceptable(self, result: RoundResult) -> bool:
        """Returns whether `result` satisfies this policy's constraint."""
        raise NotImplementedError

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
        }

    def _verdict(self, result):
        """One phrase comparing `result` with the constraint."""
        raise NotImplementedError

    def _meets_target(self, result):
        """Whether `result` reaches a target that ends the run at once."""
        return False

    def _best(self):
        """Returns `(round, summary)` of the best acceptable round so far."""
        raise NotImplementedError

    # ------------------------------------------------------------- protocol
    @property
    def history(self) -> list[RoundResult]:
        """Every result observed so far, the baseline (round 0) first."""
        return list(self._history)

    @property
    def reduction_limit(self) -> float | None:
        """The largest reduction of `objective` a round may reach, or `None`.

        Target policies return `reduction + tolerance`, so that the pruning
        step can trim a round that would overshoot into the target window
        instead of wasting it on a rollback; the accuracy policy has no limit.
        """
        return None

    @property
    def step(self) -> float:
        """The current λ: the step the policy will add after the next acceptable round."""
        return self._step

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
        return list(self._exhausted)

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

    def start(self, baseline: RoundResult) -> Decision:
        """Begins a run from the unpruned model and asks for round 1.

        Args:
            baseline: The `RoundResult` of the trained, unpruned model, with
                `round=0`.

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
        baseline = self._check_result_type(baseline)
        if baseline.round != 0:
            raise ConfigurationError(
                f"The baseline must be round 0; received round {baseline.round}."
            )
        if baseline.params <= 0 or baseline.flops <= 0:
            raise ConfigurationError(
                "The baseline must have params > 0 and flops > 0, since sizes are "
                f"measured relative to it; received params={baseline.params}, "
                f"flops={baseline.flops}."
            )
        self._history.append(baseline)
        self._lineage.append(
            _LineageEntry(
                round=0,
                threshold=self.initial_threshold,
                step=self.initial_step,
                streak=0,
                armed=False,
            )
        )
        return self._finish(
            self._prune(
                self.initial_threshold,
                f"round 1: prune with the initial threshold T={self.initial_threshold:.6g}",
            )
        )

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
        if not self._history:
            raise ConfigurationError(
                "observe() was called before start(); call "
                "policy.start(baseline) with the unpruned model's RoundResult first."
            )
        if self._pending is None:
            raise ConfigurationError(
                "observe() was called after the policy stopped (best round "
                f"{self.best_round}); it expects no more rounds. Create a new "
                "policy to prune again."
            )
        result = self._check_result_type(result)
        expected_round, expected_threshold = self._pending
        if result.round != expected_round:
            raise ConfigurationError(
                f"The policy asked for round {expected_round} but was told the "
                f"result of round {result.round}; report rounds in the order the "
                "policy asks for them (see `next_round`)."
            )
        if not math.isclose(
            result.threshold,
            expected_threshold,
            rel_tol=_THRESHOLD_RTOL,
            abs_tol=_ROUNDING_SLACK,
        ):
            raise ConfigurationError(
                f"Round {result.round} was asked to prune with T={expected_threshold!r} "
                f"but reports T={result.threshold!r}; prune with the threshold of "
                "the last decision."
            )
        self._history.append(result)
        decision = self._decide(result, expected_threshold)
        if decision.action != "stop" and result.round >= self.max_rounds:
            decision = self._stop(f"reached max_rounds={self.max_rounds}")
        return self._finish(decision)

    # --------------------------------------------------------- the algorithm
    def _decide(self, result, threshold):
        verdict = self._verdict(result)
        if self._meets_target(result):
            return self._stop(f"{verdict}: target met")
        parent = self._lineage[-1]
        moved = (
            _relative_change(self._size(self._result(parent.round)), self._size(result))
            > self.min_relative_change + _ROUNDING_SLACK
        )
        if not self.acceptable(result):
            if not moved:
                return self._skip_noise(verdict, parent, threshold)
            parent.failed_rounds.append(result.round)
            return self._roll_back(verdict)
        # Algorithm 2, lines 8-13.
        if moved and self.step_growth > 1.0:
            self._step = min(self._step * self.step_growth, self.initial_step)
        if parent.round == 0:
            streak, armed = 0, False
        else:
            armed = parent.armed or moved
            streak = parent.streak + 1 if armed and not moved else 0
        self._lineage.append(
            _LineageEntry(result.round, threshold, self._step, streak, armed)
        )
        if streak >= self.patience:
            return self._stop(
                f"{self.objective} changed by at most "
                f"{_percent(self.min_relative_change)} over {streak} acceptable "
                "rounds: converged"
            )
        next_threshold = threshold + self._step
        return self._prune(
            next_threshold,
            f"{verdict}: raise T to {next_threshold:.6g} (step {self._step:.6g})",
        )

    def _skip_noise(self, verdict, parent, threshold):
        """A failed round that removed nothing: keep its parent, raise T.

        The round pruned nothing (its size is its parent's), so its accuracy
        change is retraining noise, not damage done by pruning. Halving λ or
        counting a rollback would let noise stall the search at a threshold
        that removes nothing (at a 0% accuracy bound it never starts).
        The parent's model is restored and T moves on by the current step.
        """
        next_threshold = threshold + self._step
        return Decision(
            action="rollback",
            threshold=next_threshold,
            rollback_to=parent.round,
            best_round=None,
            reason=(
                f"{verdict}, but nothing was pruned (retraining noise): keep round "
                f"{parent.round}, raise T to {next_threshold:.6g} (step {self._step:.6g})"
            ),
        )

    def _roll_back(self, verdict):
        # Algorithm 2, lines 16-23. A round is exhausted after `max_rollbacks`
        # retries; so is every round before it on the lineage that holds the
        # same model (it pruned nothing since), since retrying from it would
        # retry from the exhausted model under another round number.
        walked_past, same_model_rounds = [], []
        exhausted_model = None
        while True:
            k = self._lineage[-1]
            result = self._result(k.round)
            same_model = exhausted_model == (result.params, result.flops)
            if k.rollbacks < self.max_rollbacks and not same_model:
                break
            if k.round == 0:
                if same_model:
                    return self._stop(
                        f"{verdict}; round {walked_past[0]} still held the baseline's "
                        f"model and was already retried {_times(self.max_rollbacks)}"
                    )
                return self._stop(
                    f"{verdict}; the baseline was already retried "
                    f"{_times(self.max_rollbacks)}"
                )
            exhausted_model = (result.params, result.flops)
            self._exhausted.append(k.round)
            (same_model_rounds if same_model else walked_past).append(k.round)
            self._lineage.pop()
        step = k.step / 2.0 ** (k.rollbacks + 1)
        k.rollbacks += 1
        self._step = step
        threshold = self.initial_threshold if k.round == 0 else k.threshold + step
        further = ""
        if walked_past:
            label = "round" if len(walked_past) == 1 else "rounds"
            rounds = ", ".join(str(r) for r in walked_past)
            further = f"{label} {rounds} already retried {_times(self.max_rollbacks)}"
            if same_model_rounds:
                label = "round" if len(same_model_rounds) == 1 else "rounds"
                holds = "holds" if len(same_model_rounds) == 1 else "hold"
                same = ", ".join(str(r) for r in same_model_rounds)
                further += f" and {label} {same} before it {holds} the same model"
            further = f" ({further}, so further back)"
        return Decision(
            action="rollback",
            threshold=threshold,
            rollback_to=k.round,
            best_round=None,
            reason=(
                f"{verdict}: roll back to round {k.round}{further}, "
                f"T={threshold:.6g}, step {step:.6g}"
            ),
        )

    def repeated_failure(self, params, flops) -> RoundResult | None:
        """The unacceptable round that already pruned the current model to this size.

        The next round prunes the model of `lineage`'s last round. If an
        earlier round pruned that same model to exactly `params` and `flops`
        and failed, the next round would very likely retrain the same filters
        from the same state: a smaller `T` on the same scores picks a subset
        of the filters, and under the thresholds' per-round cap it is often
        the same set. The controller and the callback check that the masks
        are identical and then report that round's accuracy again instead of
        retraining (the round takes 0 epochs); the policy halves `λ` as for
        any failure, so a threshold cliff costs rounds but no training.

        Args:
            params: Effective params of the next round's masked model.
            flops: Effective FLOPs of the next round's masked model.

        Returns:
            The earlier round's `RoundResult`, or `None`.
        """
        if self._pending is None or not self._lineage:
            return None
        for number in self._lineage[-1].failed_rounds:
            earlier = self._result(number)
            if (earlier.params, earlier.flops) == (params, flops):
                return earlier
        return None

    def _prune(self, threshold, reason):
        return Decision("prune", threshold, None, None, reason)

    def _stop(self, why):
        best, summary = self._best()
        return Decision("stop", None, None, best, f"{why}; {summary}")

    def _finish(self, decision):
        self._last_decision = decision
        if decision.action == "stop":
            self._pending = None
        else:
            self._pending = (self._history[-1].round + 1, decision.threshold)
        return decision

    # --------------------------------------------------------------- helpers
    def _size(self, result):
        return result.params if self.objective == "params" else result.flops

    def _result(self, round_number):
        # Round numbers are consecutive, so the history is indexed by them.
        return self._history[round_number]

    def _acceptable_results(self):
        return [r for r in self._history if self.acceptable(r)]

    def _check_result_type(self, result):
        if not isinstance(result, RoundResult):
            raise ConfigurationError(
                "A policy must be given a tf_asap.pruning.policies.RoundResult; received "
                f"{type(result).__name__}."
            )
        return result

    def _require_baseline(self):
        if not self._history:
            raise ConfigurationError(
                "This needs the baseline: call policy.start(baseline) first."
            )
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
            "format": _STATE_FORMAT,
            "config": self.to_config(),
            "history": [dataclasses.asdict(r) for r in self._history],
            "lineage": [dataclasses.asdict(e) for e in self._lineage],
            "exhausted": list(self._exhausted),
            "step": self._step,
            "pending": None if self._pending is None else list(self._pending),
            "last_decision": None if decision is None else dataclasses.asdict(decision),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Policy:
        """Rebuilds a policy from `state_dict()`; the exact inverse.

        Called on `Policy` it restores whichever kind the state names; called
        on a subclass it also checks that the state is of that kind.

        Args:
            state: A dict returned by `state_dict()`, possibly after a JSON
                round trip.

        Returns:
            A policy that makes the same decisions the saved one would have.

        Raises:
            ConfigurationError: If `state` is not a policy state, or is the
                state of another kind of policy.

        Example:

        >>> policy = AccuracyGuaranteed(max_accuracy_drop=0.01)
        >>> _ = policy.start(RoundResult(0, 0.0, 0.9, 1000, 5000))
        >>> restored = Policy.from_state(policy.state_dict())
        >>> restored.next_round
        1
        """
        kind = state.get("kind") if isinstance(state, dict) else None
        if not isinstance(kind, str) or kind not in Policy._kinds:
            raise ConfigurationError(
                "`state` must be a dict from Policy.state_dict() whose 'kind' is "
                f"one of {sorted(Policy._kinds)}; received kind {kind!r}."
            )
        policy_class = Policy._kinds[kind]
        if cls is not Policy and policy_class is not cls:
            raise ConfigurationError(
                f"This state belongs to a {kind} policy, not "
                f"{cls.__name__}; use policy_from_state(state) to restore "
                "whichever kind it is."
            )
        if state.get("format") != _STATE_FORMAT:
            raise ConfigurationError(
                f"Policy state format {state.get('format')!r} is not supported; "
                f"this version reads format {_STATE_FORMAT}."
            )
        try:
            policy = policy_class(**state["config"])
            policy._history = [RoundResult(**r) for r in state["history"]]
            policy._lineage = [
                _LineageEntry(**{k: v for k, v in e.items() if k != "failed_sizes"})
                for e in state["lineage"]
            ]
            policy._exhausted = [int(r) for r in state["exhausted"]]
            policy._step = float(state["step"])
            pending = state["pending"]
            policy._pending = (
                None if pending is None else (int(pending[0]), float(pending[1]))
            )
            decision = state["last_decision"]
            policy._last_decision = None if decision is None else Decision(**decision)
        except (KeyError, TypeError, IndexError) as error:
            raise ConfigurationError(
                f"`state` is not a complete {kind} state "
                f"(format {_STATE_FORMAT}): {error!r}. Pass the dict returned "
                "by state_dict() unchanged."
            ) from error
        return policy


def policy_from_state(state: dict[str, Any]) -> Policy:
    """Rebuilds whichever policy `state` (from `Policy.state_dict()`) describes.

    Args:
        state: A dict returned by `state_dict()`, possibly after a JSON round
            trip.

    Returns:
        An `AccuracyGuaranteed`, `ParamsTarget` or `FlopsTarget` policy that
        continues where the saved one stopped.

    Raises:
        ConfigurationError: If `state` is not a policy state.
    """
    return Policy.from_state(state)


class AccuracyGuaranteed(Policy):
    """The smallest model whose accuracy drop stays within a bound (Algorithm 2).

    A round is acceptable when `baseline.accuracy - result.accuracy <=
    max_accuracy_drop`. The threshold grows while rounds are acceptable, rolls
    back with a halved step when one is not, and the run stops when the size
    has converged (see `Policy` for the exact rules). The result is the
    acceptable round with the smallest `minimize` metric, ties going to the
    higher accuracy.

    The default `step=0.1` is in relative units (`T ≈ 1` is a typical filter's
    attention): about ten rounds reach typical filters, so a run finds its
    limit within roughly 10-25 rounds, leaving room under `max_rounds` for the
    rollbacks near the accuracy bound, where every failure costs a round.

    Args:
        max_accuracy_drop: Largest acceptable drop of validation accuracy
            from the baseline, as a fraction in `[0, 1)` (`0.01` is one
            percentage point). Defaults to `0.01`.
        minimize: `"params"` or `"flops"`: the size to minimise, watched by
            the convergence rule and used to pick the result. Pass the same
            objective to the layer-aware thresholds. Defaults to `"params"`.
        step: Initial increment λ of `T` per acceptable round, `> 0`.
            Defaults to `0.1`.
        initial_threshold: `T` of round 1, `>= 0`; `0` prunes only dead
            filters. Defaults to `0.0`.
        patience: Consecutive acceptable rounds of unchanged size that end the
            run, `>= 1`. Defaults to `3`.
        min_relative_change: Largest relative size change, in `[0, 1)`, that
            counts as unchanged (the paper's 0.1%). Defaults to `0.001`.
        max_rollbacks: Rollbacks to one round before going further back,
            `>= 0`. Defaults to `3`.
        max_rounds: The last pruning round, `>= 1`. Defaults to `50`.
        step_growth: After an acceptable round that changed the size, λ is
            multiplied by this, up to `step`, so that after a rollback the
            search speeds up again. `1` keeps the halved λ for the rest of
            the run, as Algorithm 2 does. Defaults to `1`.

    Raises:
        ConfigurationError: If an argument is outside its range.

    Example:

    >>> policy = AccuracyGuaranteed(max_accuracy_drop=0.01)
    >>> policy.start(RoundResult(0, 0.0, 0.92, 100_000, 9_000_000)).threshold
    0.0
    >>> policy.observe(RoundResult(1, 0.0, 0.918, 90_000, 8_000_000)).reason
    'accuracy drop 0.20% <= 1.00%: raise T to 0.1 (step 0.1)'
    """

    def __init__(
        self,
        max_accuracy_drop=0.01,
        minimize="params",
        step=0.1,
        initial_threshold=0.0,
        patience=3,
        min_relative_change=0.001,
        max_rollbacks=3,
        max_rounds=50,
        step_growth=1.0,
    ):
        self.max_accuracy_drop = _as_number(
            "max_accuracy_drop", max_accuracy_drop, 0.0, 1.0, high_open=True,
            hint=" (a fraction: 0.01 is one percentage point)",
        )
        if minimize not in _METRICS:
            raise ConfigurationError(
                f"`minimize` must be one of {_METRICS}; received {minimize!r}."
            )
        self.objective = minimize
        super().__init__(
            step=step,
            initial_threshold=initial_threshold,
            patience=patience,
            min_relative_change=min_relative_change,
            max_rollbacks=max_rollbacks,
            max_rounds=max_rounds,
            step_growth=step_growth,
        )

    def to_config(self):
        return {
            "max_accuracy_drop": self.max_accuracy_drop,
            "minimize": self.objective,
            **super().to_config(),
        }

    def accuracy_drop(self, result: RoundResult) -> float:
        """Returns `baseline.accuracy - result.accuracy`."""
        return self._require_baseline().accuracy - result.accuracy

    def acceptable(self, result: RoundResult) -> bool:
        """Returns whether the accuracy drop of `result` is within `max_accuracy_drop`."""
        return self.accuracy_drop(result) <= self.max_accuracy_drop + _ROUNDING_SLACK

    def _verdict(self, result):
        relation = "<=" if self.acceptable(result) else ">"
        return (
            f"accuracy drop {_percent(self.accuracy_drop(result))} {relation} "
            f"{_percent(self.max_accuracy_drop)}"
        )

    def _best(self):
        best = min(
            self._acceptable_results(),
            key=lambda r: (self._size(r), -r.accuracy, r.round),
        )
        remaining = self._size(best) / self._size(self._history[0])
        return best.round, (
            f"best round {best.round}: {self.objective} {_percent(remaining)} of "
            f"baseline, accuracy drop {_percent(self.accuracy_drop(best))}"
        )


class _ReductionTarget(Policy):
    """Shared search of the memory- and FLOPs-constrained policies (Algorithms 4, 5).

    The paper raises `T` while the reduction is below the target and rolls
    back when it overshoots, stopping only when the size converges. A user
    who needs the model to fit wants the run to end as soon as it does, so a
    round whose reduction `1 - remaining / baseline` lies in `[reduction,
    reduction + tolerance]` meets the target and ends the run at once; below
    the target a round is acceptable and `T` keeps rising; above `reduction +
    tolerance` it overshoots and the policy rolls back with a halved step.
    """

    objective: ClassVar[str]

    def __init__(
        self,
        reduction,
        tolerance,
        step,
        initial_threshold,
        patience,
        min_relative_change,
        max_rollbacks,
        max_rounds,
        step_growth=1.0,
    ):
        self.reduction = _as_number(
            "reduction", reduction, 0.0, 1.0, low_open=True, high_open=True,
            hint=f" (the fraction of {self.objective} to remove)",
        )
        self.tolerance = _as_number(
            "tolerance", tolerance, 0.0, 1.0, high_open=True
        )
        super().__init__(
            step=step,
            initial_threshold=initial_threshold,
            patience=patience,
            min_relative_change=min_relative_change,
            max_rollbacks=max_rollbacks,
            max_rounds=max_rounds,
            step_growth=step_growth,
        )

    def to_config(self):
        return {
            "reduction": self.reduction,
            "tolerance": self.tolerance,
            **super().to_config(),
        }

    @property
    def reduction_limit(self) -> float:
        """`reduction + tolerance`: the far edge of the target window."""
        return min(self.reduction + self.tolerance, 1.0)

    def achieved_reduction(self, result: RoundResult) -> float:
        """Returns `1 - remaining / baseline` of the target metric for `result`."""
        return 1.0 - self._size(result) / self._size(self._require_baseline())

    def acceptable(self, result: RoundResult) -> bool:
        """Returns whether `result` does not overshoot `reduction + tolerance`."""
        return (
            self.achieved_reduction(result)
            <= self.reduction + self.tolerance + _ROUNDING_SLACK
        )

    def meets_target(self, result: RoundResult) -> bool:
        """Returns whether the reduction of `result` is within `[reduction, reduction + tolerance]`."""
        return self.acceptable(result) and (
            self.achieved_reduction(result) >= self.reduction - _ROUNDING_SLACK
        )

    def _meets_target(self, result):
        return self.meets_target(result)

    def _verdict(self, result):
        achieved = _percent(self.achieved_reduction(result))
        window = f"[{_percent(self.reduction)}, {_percent(self.reduction + self.tolerance)}]"
        if self.meets_target(result):
            return f"{self.objective} reduction {achieved} within {window}"
        if self.acceptable(result):
            return f"{self.objective} reduction {achieved} < target {_percent(self.reduction)}"
        return f"{self.objective} reduction {achieved} > {window} (overshoot)"

    def _best(self):
        accepted = self._acceptable_results()
        meeting = [r for r in accepted if self.meets_target(r)]
        if meeting:
            best = max(meeting, key=lambda r: (r.accuracy, -self._size(r), -r.round))
            prefix = f"best round {best.round}"
        else:
            # Closest to the target from below: the smallest acceptable size.
            best = max(accepted, key=lambda r: (-self._size(r), r.accuracy, -r.round))
            prefix = f"target not met: best round {best.round}"
        return best.round, (
            f"{prefix} reduces {self.objective} by "
            f"{_percent(self.achieved_reduction(best))} (target "
            f"{_percent(self.reduction)}), accuracy {_percent(best.accuracy)}"
        )


class ParamsTarget(_ReductionTarget):
    """The most accurate model with a given parameter reduction (Algorithm 4).

    Memory-constrained pruning, for a model that must fit a memory budget.
    A round whose parameter reduction `1 - params / baseline.params` lies in
    `[reduction, reduction + tolerance]` meets the target and ends the run;
    below it `T` keeps rising; above it the policy rolls back and retries with
    a halved step (see `Policy`). Accuracy does not steer the search, only
    the choice of result: the most accurate round meeting the target, else
    the acceptable round closest to it, with the stop reason saying that the
    target was not met.

    The tolerance window makes the target reachable: a step of `T` moves the
    reduction in jumps of whole filters, and a window of 3 points is usually
    hit after one or two halvings; a tighter window costs more rounds. The
    default `step=0.2` (relative units, `T ≈ 1` is a typical filter's
    attention) is twice the accuracy policy's, since accuracy is not at stake
    and a 50-80% reduction typically needs `T` beyond 1: about 5-10 rounds
    reach the target and an overshoot costs one round each.

    Args:
        reduction: Fraction of the baseline's parameters to remove, in
            `(0, 1)`. Defaults to `0.7`.
        tolerance: How far beyond `reduction` still meets the target, in
            `[0, 1)`. Defaults to `0.03`.
        step: Initial increment λ of `T` per acceptable round, `> 0`.
            Defaults to `0.2`.
        initial_threshold: `T` of round 1, `>= 0`. Defaults to `0.0`.
        patience: Consecutive acceptable rounds of unchanged size that end
            the run, `>= 1`. Defaults to `3`.
        min_relative_change: Largest relative size change, in `[0, 1)`, that
            counts as unchanged. Defaults to `0.001`.
        max_rollbacks: Rollbacks to one round before going further back,
            `>= 0`. Defaults to `3`.
        max_rounds: The last pruning round, `>= 1`. Defaults to `50`.
        step_growth: After an acceptable round that changed the size, λ is
            multiplied by this, up to `step`, so that after a rollback the
            search speeds up again. `1` keeps the halved λ for the rest of
            the run, as Algorithm 2 does. Defaults to `1`.

    Raises:
        ConfigurationError: If an argument is outside its range.

    Example:

    >>> policy = ParamsTarget(reduction=0.5)
    >>> _ = policy.start(RoundResult(0, 0.0, 0.9, 1000, 50_000))
    >>> policy.observe(RoundResult(1, 0.0, 0.9, 480, 30_000)).reason
    'params reduction 52.00% within [50.00%, 53.00%]: target met; best round 1 reduces params by 52.00% (target 50.00%), accuracy 90.00%'
    """

    objective = "params"

    def __init__(
        self,
        reduction=0.7,
        tolerance=0.03,
        step=0.2,
        initial_threshold=0.0,
        patience=3,
        min_relative_change=0.001,
        max_rollbacks=3,
        max_rounds=50,
        step_growth=1.0,
    ):
        super().__init__(
            reduction, tolerance, step, initial_threshold, patience,
            min_relative_change, max_rollbacks, max_rounds, step_growth,
        )


class FlopsTarget(_ReductionTarget):
    """The most accurate model with a given FLOPs reduction (Algorithm 5).

    Latency-constrained pruning. It works as `ParamsTarget` with FLOPs in
    place of parameters: the reduction is `1 - flops / baseline.flops`, and
    the convergence rule watches FLOPs. The paper's reference code compared
    the remaining FLOPs with the remaining *parameters*; here FLOPs are
    compared with FLOPs only.

    The defaults follow `ParamsTarget`: a window of 3 points above the
    target, and `step=0.2` in relative units (`T ≈ 1` is a typical filter's
    attention), which reaches a 50% FLOPs reduction in about 5-10 rounds.

    Args:
        reduction: Fraction of the baseline's FLOPs to remove, in `(0, 1)`.
            Defaults to `0.5`.
        tolerance: How far beyond `reduction` still meets the target, in
            `[0, 1)`. Defaults to `0.03`.
        step: Initial increment λ of `T` per acceptable round, `> 0`.
            Defaults to `0.2`.
        initial_threshold: `T` of round 1, `>= 0`. Defaults to `0.0`.
        patience: Consecutive acceptable rounds of unchanged FLOPs that end
            the run, `>= 1`. Defaults to `3`.
        min_relative_change: Largest relative FLOPs change, in `[0, 1)`, that
            counts as unchanged. Defaults to `0.001`.
        max_rollbacks: Rollbacks to one round before going further back,
            `>= 0`. Defaults to `3`.
        max_rounds: The last pruning round, `>= 1`. Defaults to `50`.
        step_growth: After an acceptable round that changed the size, λ is
            multiplied by this, up to `step`, so that after a rollback the
            search speeds up again. `1` keeps the halved λ for the rest of
            the run, as Algorithm 2 does. Defaults to `1`.

    Raises:
        ConfigurationError: If an argument is outside its range.

    Example:

    >>> policy = FlopsTarget(reduction=0.5)
    >>> _ = policy.start(RoundResult(0, 0.0, 0.9, 1000, 50_000))
    >>> policy.observe(RoundResult(1, 0.0, 0.9, 900, 40_000)).threshold
    0.2
    """

    objective = "flops"

    def __init__(
        self,
        reduction=0.5,
        tolerance=0.03,
        step=0.2,
        initial_threshold=0.0,
        patience=3,
        min_relative_change=0.001,
        max_rollbacks=3,
        max_rounds=50,
        step_growth=1.0,
    ):
        super().__init__(
            reduction, tolerance, step, initial_threshold, patience,
            min_relative_change, max_rollbacks, max_rounds, step_growth,
        )
