"""The one way a class gets a name in a registry (activations, losses), and the identity of
configured objects (activations, optimizers: equal when of one type with one ``config()``)."""

from __future__ import annotations


def register(registry: dict, cls, base: type, kind: str, *, overwrite: bool = False):
    """Put ``cls`` (a subclass of ``base``) into ``registry`` under ``cls.name``; return it."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"register_{kind} expects a {base.__name__} subclass, got {cls!r}")
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name; set the class attribute `name`")
    if cls.name in registry and not overwrite and registry[cls.name] is not cls:
        raise ValueError(f"{kind} {cls.name!r} is already registered; pass overwrite=True to replace it")
    registry[cls.name] = cls
    return cls


class Configured:
    """Equality, hashing and ``repr`` from ``config()``, the constructor's keyword arguments."""

    def config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(self.config().items()))))
