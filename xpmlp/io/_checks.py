"""An estimator file's fields against each other and against the classes and registries of this
xpmlp (what the schema cannot say).
"""

from __future__ import annotations

import re

import numpy as np

from ._format import ModelFileError, _header_network
from ._state import _network_design, params_from_json

_XPMLP = __package__.rpartition(".")[0]  # xpmlp, whatever it is installed as


# ---------------------------------------------------------------------- estimators
def _estimator_class(path: str, kind: str):
    """The xpmlp estimator class a file names (only xpmlp's own classes are ever looked up)."""
    import importlib

    try:
        found = vars(importlib.import_module(f"{_XPMLP}.estimators"))
    except ModuleNotFoundError as exc:  # an xpmlp without estimators; other missing modules propagate
        if exc.name != f"{_XPMLP}.estimators":
            raise
        found = {}
    loadable = {name: c for name, c in found.items() if not name.startswith("_")
                and isinstance(c, type) and callable(getattr(c, "_from_state", None))}
    cls = loadable.get(kind)
    if cls is None:
        known = sorted(loadable)
        raise ModelFileError(path, f"holds a model of kind {kind!r}, which this xpmlp does not know; "
                                   f"expected 'MLP' or one of {known}")
    return cls


def _refuser(path: str, kind: str):
    """A function that raises the ModelFileError of an inconsistent estimator file."""
    def refuse(problem: str):
        raise ModelFileError(path, f"inconsistent {kind} file: {problem}")

    return refuse


def _check_state(path: str, header: dict) -> None:
    """An estimator's fields against each other and its network (the schema has checked their types)."""
    kind = header["kind"]
    if kind == "MLP":
        return
    state = header["state"]
    sizes = state["sizes"]
    refuse = _refuser(path, kind)
    if state["class"] != kind:
        refuse(f"its state is of class {state['class']!r}")
    if len(state["activations"]) != len(sizes) - 1 or len(state["activation_configs"]) != len(sizes) - 1:
        refuse(f"sizes {sizes} define {len(sizes) - 1} layers but there are {len(state['activations'])} "
               f"activations and {len(state['activation_configs'])} activation configs")
    if state["n_features_in_"] != sizes[0] or state["n_outputs_"] != sizes[-1]:
        refuse(f"n_features_in_ = {state['n_features_in_']} and n_outputs_ = {state['n_outputs_']}, but the "
               f"network's sizes are {sizes}")
    if state["out_activation_"] != state["activations"][-1]:
        refuse(f"out_activation_ is {state['out_activation_']!r} but the output layer is "
               f"{state['activations'][-1]!r}")
    names = state.get("feature_names_in_")
    if names is not None and len(names) != sizes[0]:
        refuse(f"{len(names)} feature_names_in_ for {sizes[0]} features")
    if "classes_" in state:
        _check_classes(state, refuse)
    if state.get("y_1d") and sizes[-1] != 1:
        refuse(f"y_1d is true but the network has {sizes[-1]} outputs")


def _check_loadable(path: str, header: dict) -> None:
    """What only a load needs: the activations and loss are registered here and rebuild
    from their configs; an estimator's hyperparameters pass its own validation."""
    kind = header["kind"]
    try:
        _network_design(_header_network(header))
    except ValueError as exc:
        whose = "network" if kind == "MLP" else f"{kind}'s network"
        raise ModelFileError(path, f"cannot rebuild the {whose}: {exc}") from None
    if kind != "MLP":
        _check_params(_estimator_class(path, kind), header["state"]["params"], _refuser(path, kind))


def _check_params(cls, params: dict, refuse) -> None:
    """The hyperparameters are the class's and pass its own validation."""
    names = cls._get_param_names()
    unknown = sorted(set(params) - set(names))
    if unknown:
        refuse(f"unknown parameter(s) {unknown[:8]} in state.params; {cls.__name__} takes {names}")
    probe = cls(**params_from_json(params))
    validate = getattr(probe, "_validate_params", None)
    if validate is not None:
        try:
            validate()
        except (TypeError, ValueError) as exc:
            refuse(f"state.params: {exc}")


_CLASSES_DTYPE = re.compile(r"[<>|=]?[biufUO][0-9]{0,4}")


def _check_classes(state: dict, refuse) -> None:
    """``classes_`` come back exactly, unique and sorted, one per output (two share one sigmoid)."""
    classes, dtype_text, multilabel = state["classes_"], state["classes_dtype"], state["multilabel"]
    if not _CLASSES_DTYPE.fullmatch(dtype_text):
        refuse(f"classes_dtype {dtype_text[:40]!r} is not a NumPy dtype of numbers, booleans or strings")
    try:
        dtype = np.dtype(dtype_text)
        restored = np.asarray(classes, dtype=None if dtype.kind == "O" else dtype)
        same = restored.ndim == 1 and restored.tolist() == classes
        ordered = same and (restored.size < 2 or bool(np.all(restored[1:] > restored[:-1])))
    except (TypeError, ValueError, OverflowError) as exc:
        refuse(f"classes_ {str(classes)[:60]} cannot be read as {dtype_text} ({exc})")
    if not same:
        refuse(f"classes_ {str(classes)[:60]} do not come back unchanged as {dtype_text}")
    if not ordered:
        refuse(f"classes_ {str(classes)[:60]} are not unique and sorted")
    if len(classes) < 2:
        refuse(f"a classifier needs at least 2 classes_, the file has {len(classes)}")
    outputs = 1 if len(classes) == 2 and not multilabel else len(classes)
    if state["n_outputs_"] != outputs:
        refuse(f"{len(classes)} classes_{' (multilabel)' if multilabel else ''} need {outputs} output(s), the "
               f"network has {state['n_outputs_']}")
