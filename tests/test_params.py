"""The parameter vocabulary (xpmlp/_params.py) and the estimators' table built from it."""

import math

import numpy as np
import pytest

from xpmlp._params import Check, Flag, Integer, Known, Number, OneOf, Or, check_all


@pytest.mark.parametrize("rule, value, message", [
    (Number(0.0), -1.0, r"^p must be a number in \[0, inf\), got -1.0$"),
    (Number(0.0, low_open=True), 0, r"^p must be a number in \(0, inf\), got 0$"),
    (Number(0.0, 1.0), 1.0, r"^p must be a number in \[0, 1\), got 1.0$"),
    (Number(0.0), math.inf, r"^p must be a number in \[0, inf\), got inf$"),
    (Number(0.0), math.nan, r"^p must be a number in \[0, inf\), got nan$"),
    (Number(0.0), True, r"^p must be a number in \[0, inf\), got True$"),
    (Number(0.0), "1", r"^p must be a number in \[0, inf\), got '1'$"),
    (Integer(1), 0, r"^p must be an integer >= 1, got 0$"),
    (Integer(1), 2.0, r"^p must be an integer >= 1, got 2.0$"),
    (Integer(0), False, r"^p must be an integer >= 0, got False$"),
    (OneOf("float32", "float64"), "float16", r"^p must be 'float32' or 'float64', got 'float16'$"),
    (OneOf("auto", True, False), 1, r"^p must be 'auto', True or False, got 1$"),
    (OneOf("auto", True, False), "yes", r"^p must be 'auto', True or False, got 'yes'$"),
    (Known(lambda: ["b", "a"]), "c", r"^unknown p 'c'; expected one of \['b', 'a'\]$"),
    (Known(lambda: ["a"]), ["a"], r"^unknown p \['a'\]; expected one of \['a'\]$"),
    (Known(lambda: ["a"], also=(None, "auto")), "x", r"^unknown p 'x'; expected None, 'auto' or one of \['a'\]$"),
    (Or(Integer(1), "auto"), "big", r"^p must be an integer >= 1 or 'auto', got 'big'$"),
    (Or(None, Integer(1)), 0, r"^p must be an integer >= 1 or None, got 0$"),
])
def test_a_bad_value_names_the_parameter_the_value_and_what_is_allowed(rule, value, message):
    with pytest.raises(ValueError, match=message):
        rule("p", value)


def test_flag_refuses_what_is_not_a_bool_with_a_type_error():
    with pytest.raises(TypeError, match=r"^p must be True or False, got 'yes'$"):
        Flag()("p", "yes")
    assert Flag()("p", np.bool_(True)) is np.bool_(True)


@pytest.mark.parametrize("rule, value", [
    (Number(0.0), 0.0), (Number(0.0, low_open=True), 1e-300), (Number(0.0, 1.0), 0.999),
    (Number(0.0), np.float32(2.5)), (Integer(1), 1), (Integer(1), np.int64(7)),
    (OneOf("auto", True, False), np.bool_(False)), (OneOf("auto", True, False), "auto"),
    (Known(lambda: ["a"], also=(None,)), None), (Or(Integer(1), "auto"), "auto"), (Or(Integer(1), "auto"), 3),
])
def test_an_allowed_value_comes_back_unchanged(rule, value):
    assert rule("p", value) is value


def test_known_names_are_looked_up_when_checked():
    names = ["a"]
    rule = Known(lambda: names)
    names.append("late")
    assert rule("p", "late") == "late"


def test_check_all_runs_the_table_in_order_on_objects_and_mappings():
    table = {"size": Check(lambda name, v: [int(v)] * 2), "rate": Number(0.0), "mode": OneOf("x")}
    assert check_all(table, {"size": 3, "rate": 0.5, "mode": "x"}) == {"size": [3, 3], "rate": 0.5, "mode": "x"}

    class Obj:
        size, rate, mode = 1, -1, "y"  # two bad values: the first in the table is reported

    with pytest.raises(ValueError, match="^rate must be"):
        check_all(table, Obj())


def test_the_estimators_table_checks_every_hyperparameter():
    """A new hyperparameter needs a row: only those checked where they are used are missing."""
    from xpmlp.estimators import MLPClassifier, MLPRegressor

    for cls in (MLPClassifier, MLPRegressor):
        names, table = set(cls._get_param_names()), set(cls._PARAMETERS)
        assert table <= names
        # random_state: backends.make_rng; device: backends.resolve_device (both name the parameter)
        assert names - table == {"random_state", "device"}
