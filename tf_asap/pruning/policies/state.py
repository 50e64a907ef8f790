"""Restoring a policy from its saved state: the registry of policy kinds and the format check.

`Policy.state_dict()` names the policy's class under `"kind"`; every policy
class registers itself here when it is defined, so that a state restores to
the right class without a table to keep up to date.
"""

from __future__ import annotations

from tf_asap.errors import ConfigurationError

__all__ = ["STATE_FORMAT", "register_kind", "restore"]

# Format 2 stores a round's quality as `score` (format 1: `accuracy`), the
# search's bracket (`ceiling`) and the early-rejection state; both read.
STATE_FORMAT = 2
READABLE_FORMATS = (1, 2)
_KINDS = {}


def register_kind(policy_class):
    """Makes `policy_class` restorable by its name."""
    _KINDS[policy_class.__name__] = policy_class


def restore(state, expected=None):
    """Rebuilds the policy `state` describes (see `Policy.from_state`).

    Args:
        state: A dict returned by `Policy.state_dict()`.
        expected: The class the state must be of, or `None` for any kind.

    Returns:
        The restored policy.

    Raises:
        ConfigurationError: If `state` is not a complete policy state of a
            readable format, or not of the `expected` kind.
    """
    kind = state.get("kind") if isinstance(state, dict) else None
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ConfigurationError(
            "`state` must be a dict from Policy.state_dict() whose 'kind' is "
            f"one of {sorted(_KINDS)}; received kind {kind!r}."
        )
    policy_class = _KINDS[kind]
    if expected is not None and policy_class is not expected:
        raise ConfigurationError(
            f"This state belongs to a {kind} policy, not {expected.__name__}; use "
            "policy_from_state(state) to restore whichever kind it is."
        )
    if state.get("format") not in READABLE_FORMATS:
        raise ConfigurationError(
            f"Policy state format {state.get('format')!r} is not supported; this "
            f"version reads formats {', '.join(map(str, READABLE_FORMATS))}."
        )
    try:
        policy = policy_class(**state["config"])
        policy.load_state_dict(state)
    except (KeyError, TypeError, IndexError) as error:
        raise ConfigurationError(
            f"`state` is not a complete {kind} state (format {state.get('format')}): "
            f"{error!r}. Pass the dict returned by state_dict() unchanged."
        ) from error
    return policy
