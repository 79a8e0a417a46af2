"""Each parameter is declared once, on the flow's signature: its type, default
and range. The pre-run check, Prefect's own validation (deployment runs, the
UI) and the command line all read that one declaration."""

from __future__ import annotations

import pytest
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema

from checks import check_parameters, parameters_of
from errors import P1Error
from flow import scoring_flow, training_flow


def test_the_signature_declares_defaults_and_ranges() -> None:
    declared = {p.name: (p.type, p.default, p.rule) for p in parameters_of(training_flow)}
    assert declared == {
        "n_estimators": (int, 200, ">= 1"),
        "max_depth": (int, 6, ">= 0"),
        "test_size": (float, 0.25, "between 0.05 and 0.5"),
        "random_state": (int, 42, "between 0 and 4294967295"),
        "data_file": (str, None, ""),
        "data_md5": (str, None, ""),
        "trigger_event": (str, None, ""),
    }
    assert all(p.description for p in parameters_of(training_flow))


def test_the_scoring_flow_declares_the_data_parameters_the_same_way() -> None:
    training = {p.name: p for p in parameters_of(training_flow)}
    scoring = parameters_of(scoring_flow)
    assert [p.name for p in scoring] == ["data_file", "data_md5"]
    assert all(p == training[p.name] for p in scoring)  # one declaration (DataFile, DataMd5), two flows


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"max_depth": 0},  # no depth limit
        {"test_size": 0.05},
        {"test_size": 0.5},
        {"n_estimators": 1, "max_depth": 1, "random_state": 0},
        {"data_file": "/somewhere/data.csv"},
    ],
)
def test_values_in_range_pass(given: dict) -> None:
    check_parameters(training_flow, given)
    training_flow.validate_parameters(given)


@pytest.mark.parametrize(
    "given, problem, fix",
    [
        ({"test_size": 0.9}, "test_size=0.9 must be between 0.05 and 0.5", "pass --test-size between 0.05 and 0.5"),
        ({"test_size": 0.01}, "test_size=0.01 must be between 0.05 and 0.5", "pass --test-size between 0.05 and 0.5"),
        ({"n_estimators": 0}, "n_estimators=0 must be >= 1", "pass --n-estimators >= 1"),
        ({"max_depth": -1}, "max_depth=-1 must be >= 0", "pass --max-depth >= 0"),
        ({"random_state": -1}, "random_state=-1 must be between 0 and 4294967295", "pass --random-state between"),
    ],
)
def test_values_out_of_range_fail_before_the_run_with_the_flag_to_fix(given: dict, problem: str, fix: str) -> None:
    with pytest.raises(P1Error) as raised:
        check_parameters(training_flow, given)
    assert raised.value.problem == problem
    assert raised.value.fix.startswith(fix)
    # A deployment run (no command line) is refused by Prefect, from the same declaration.
    with pytest.raises(ParameterTypeError):
        training_flow.validate_parameters(given)


def test_prefect_publishes_the_ranges_to_its_ui() -> None:
    properties = parameter_schema(training_flow.fn).model_dump()["properties"]
    assert properties["test_size"]["minimum"] == 0.05 and properties["test_size"]["maximum"] == 0.5
    assert properties["test_size"]["default"] == 0.25
    assert properties["max_depth"]["minimum"] == 0 and properties["max_depth"]["default"] == 6
    assert properties["n_estimators"]["minimum"] == 1


def test_a_served_run_validates_the_parameters() -> None:
    """`python flow.py serve` runs each flow run in a subprocess, sent the flow
    by value (cloudpickle: flow.py is `__main__` there), so the function's
    globals hold only the names its code uses. Its annotations must not need
    others: `from __future__ import annotations` in flow.py made every served
    run fail (`Training_FlowModel` is not fully defined) while every run from
    the command line passed."""
    import cloudpickle

    import flow

    cloudpickle.register_pickle_by_value(flow)
    try:
        served = cloudpickle.loads(cloudpickle.dumps(flow.training_flow))
    finally:
        cloudpickle.unregister_pickle_by_value(flow)
    assert served.validate_parameters({"max_depth": 0})["max_depth"] == 0
    with pytest.raises(ParameterTypeError):
        served.validate_parameters({"test_size": 0.9})
