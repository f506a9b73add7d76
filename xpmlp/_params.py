"""One vocabulary for checking parameters, and tables of them.

A *rule* checks one value and returns it (some rules normalise it, e.g. a size to a list of
ints); a bad value raises an error that names the parameter, the value and what is allowed::

    Number(low=0.0)                  alpha must be a number in [0, inf), got -1.0
    Number(low=0.0, low_open=True)   learning_rate_init must be a number in (0, inf), got 0
    Number(low=0.0, high=1.0)        momentum must be a number in [0, 1), got 1.5
    Integer(low=1)                   max_iter must be an integer >= 1, got 0
    OneOf("float32", "float64")      dtype must be 'float32' or 'float64', got 'float16'
    Known(lambda: sorted(OPTIMIZERS))  unknown solver 'lbfgs'; expected one of ['adam', ...]
    Flag()                           shuffle must be True or False, got 'yes'
    Or("auto", Integer(low=1))       batch_size must be an integer >= 1 or 'auto', got 'big'

A table is a dict ``name -> rule``; :func:`check_all` applies it to an object's attributes
(or a dict) and returns the checked values, so that adding a parameter is adding a row.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["Rule", "Number", "Integer", "OneOf", "Known", "Flag", "Or", "Check", "check_all"]


class Rule:
    """Checks one parameter's value: ``rule(name, value)`` returns the value (or its normal form)."""

    def __call__(self, name: str, value: Any) -> Any:  # pragma: no cover - every rule overrides it
        raise NotImplementedError

    def allowed(self) -> str:
        """What the rule accepts, in words (for :class:`Or`'s message)."""
        raise NotImplementedError

    def accepts(self, value: Any) -> bool:
        try:
            self("", value)
        except (TypeError, ValueError):
            return False
        return True


def _is_bool(value: Any) -> bool:
    """A Python or NumPy bool (NumPy is not imported for this: where it is not loaded, no value is
    one of its bools; this module stays importable by the CLI without it)."""
    np = sys.modules.get("numpy")
    return isinstance(value, bool) or (np is not None and isinstance(value, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not _is_bool(value)


class Number(Rule):
    """A finite real number in ``[low, high)`` (``(low, ...`` with ``low_open``; no ``high``: unbounded)."""

    def __init__(self, low: float, high: float | None = None, *, low_open: bool = False):
        self.low, self.high, self.low_open = low, high, low_open

    def allowed(self) -> str:
        return (f"a number in {'(' if self.low_open else '['}{self.low:g}, "
                f"{'inf)' if self.high is None else f'{self.high:g})'}")

    def __call__(self, name: str, value: Any) -> Any:
        ok = _is_real(value) and math.isfinite(value)
        if ok:
            ok = (value > self.low if self.low_open else value >= self.low) and (self.high is None or value < self.high)
        if not ok:
            raise ValueError(f"{name} must be {self.allowed()}, got {value!r}")
        return value


class Integer(Rule):
    """An integer (not a bool) ``>= low``."""

    def __init__(self, low: int):
        self.low = low

    def allowed(self) -> str:
        return f"an integer >= {self.low}"

    def __call__(self, name: str, value: Any) -> Any:
        if _is_bool(value) or not isinstance(value, numbers.Integral) or value < self.low:
            raise ValueError(f"{name} must be {self.allowed()}, got {value!r}")
        return value


def _matches(value: Any, choice: Any) -> bool:
    """``value == choice``, where a bool only matches a bool (1 is not True here)."""
    if isinstance(choice, bool) or _is_bool(value):
        return _is_bool(value) and isinstance(choice, bool) and bool(value) == choice
    try:
        return bool(value == choice)
    except Exception:  # an array, say: not one of the choices
        return False


class OneOf(Rule):
    """One of a few fixed values (compared with ``==``; a bool only matches a bool)."""

    def __init__(self, *choices: Any):
        self.choices = choices

    def allowed(self) -> str:
        words = [repr(c) for c in self.choices]
        return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"

    def __call__(self, name: str, value: Any) -> Any:
        if not any(_matches(value, c) for c in self.choices):
            raise ValueError(f"{name} must be {self.allowed()}, got {value!r}")
        return value


class Known(Rule):
    """A name from a registry, looked up when checked (so that names registered later count).

    ``names()`` returns the names in the order the message lists them; ``also`` are other
    accepted values, listed first (``None``, ``"auto"``)."""

    def __init__(self, names: Callable[[], Iterable[str]], *, also: tuple = ()):
        self.names, self.also = names, also

    def allowed(self) -> str:
        extra = ", ".join(repr(c) for c in self.also)
        return f"{extra + ' or ' if extra else ''}one of {list(self.names())}"

    def __call__(self, name: str, value: Any) -> Any:
        if any(_matches(value, c) for c in self.also):
            return value
        try:
            known = value in list(self.names())
        except TypeError:  # unhashable or incomparable: not a name
            known = False
        if not known:
            raise ValueError(f"unknown {name} {value!r}; expected {self.allowed()}")
        return value


class Flag(Rule):
    """True or False (a NumPy bool or an int is accepted as scikit-learn does)."""

    def allowed(self) -> str:
        return "True or False"

    def __call__(self, name: str, value: Any) -> Any:
        if not (_is_bool(value) or isinstance(value, int)):
            raise TypeError(f"{name} must be True or False, got {value!r}")
        return value


class Or(Rule):
    """The value passes one of ``rules`` (plain values stand for :class:`OneOf` them); the message
    lists the alternatives: ``batch_size must be an integer >= 1 or 'auto', got 'big'``."""

    def __init__(self, *rules: Any):
        self.rules = [r if isinstance(r, Rule) else OneOf(r) for r in rules]
        # the rule that describes the value best goes first: a bound before a literal
        self.rules.sort(key=lambda r: isinstance(r, OneOf))

    def allowed(self) -> str:
        return " or ".join(r.allowed() for r in self.rules)

    def __call__(self, name: str, value: Any) -> Any:
        for rule in self.rules:
            if rule.accepts(value):
                return rule(name, value)
        raise ValueError(f"{name} must be {self.allowed()}, got {value!r}")


class Check(Rule):
    """A rule written as a function ``check(name, value) -> value`` that raises its own error."""

    def __init__(self, check: Callable[[str, Any], Any], allowed: str = ""):
        self.check, self.description = check, allowed

    def allowed(self) -> str:
        return self.description

    def __call__(self, name: str, value: Any) -> Any:
        return self.check(name, value)


def check_all(table: Mapping[str, Rule], source: Any) -> dict[str, Any]:
    """Every parameter of ``table`` checked, in the table's order: ``{name: checked value}``.

    ``source`` is an object (its attributes) or a mapping."""
    get = source.__getitem__ if isinstance(source, Mapping) else (lambda n: getattr(source, n))
    return {name: rule(name, get(name)) for name, rule in table.items()}
