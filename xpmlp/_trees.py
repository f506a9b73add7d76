"""Trees of arrays (dicts, lists and tuples of arrays): the parameters and the optimizer state."""

from __future__ import annotations

import array_api_compat

from . import backends

__all__ = ["flat_pairs", "pairs", "leaves", "copy_state", "state_to_numpy", "tree_to"]


def flat_pairs(params) -> list:
    """``[(W1, b1), (W2, b2)]`` -> ``[W1, b1, W2, b2]``."""
    return [a for pair in params for a in pair]


def pairs(flat: list) -> list:
    """``[W1, b1, W2, b2]`` -> ``[(W1, b1), (W2, b2)]``."""
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def leaves(tree) -> list:
    """The arrays of a tree, in a fixed order (dict keys sorted)."""
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in leaves(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [leaf for v in tree for leaf in leaves(v)]
    return [tree]


def copy_state(state, xp=None):
    """A copy of a tree; the leaves are copied (on their device)."""
    if isinstance(state, dict):
        return {k: copy_state(v, xp) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(copy_state(v, xp) for v in state)
    xp = xp or array_api_compat.array_namespace(state)
    return xp.asarray(state, copy=True)


def state_to_numpy(state):
    """The same tree with every array as a NumPy array (for pickling)."""
    if isinstance(state, dict):
        return {k: state_to_numpy(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(state_to_numpy(v) for v in state)
    return backends.to_numpy(state)


def tree_to(state, xp, device):
    """The same tree with every array moved to namespace ``xp`` on ``device``."""
    if isinstance(state, dict):
        return {k: tree_to(v, xp, device) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(tree_to(v, xp, device) for v in state)
    return backends.to_backend(state, xp, device)
