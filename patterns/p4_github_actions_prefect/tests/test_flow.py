"""The flows' parameters (flow.py), declared once on the flow signatures:
Prefect checks a run's parameters against these ranges (and the server
refuses a deployment run outside them), with no server needed here."""

from __future__ import annotations

import pytest
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema

from flow import batch_score, retrain


def test_retrain_declares_each_parameter_once_with_its_range():
    properties = parameter_schema(retrain).model_dump_for_openapi()["properties"]
    max_depth = {key: properties["max_depth"][key] for key in ("type", "default", "minimum", "maximum")}
    assert max_depth == {"type": "integer", "default": 0, "minimum": 0, "maximum": 64}  # 0: no depth limit
    assert (properties["n_estimators"]["minimum"], properties["n_estimators"]["maximum"]) == (1, 2000)
    assert (properties["min_accuracy"]["minimum"], properties["min_accuracy"]["maximum"]) == (0.0, 1.0)
    assert (properties["test_size"]["exclusiveMinimum"], properties["test_size"]["exclusiveMaximum"]) == (0.05, 0.9)


@pytest.mark.parametrize("params", [{}, {"max_depth": 0}, {"max_depth": 64, "n_estimators": 1, "min_accuracy": 1}])
def test_parameters_in_range_are_accepted(params):
    retrain.validate_parameters(params)


@pytest.mark.parametrize(
    "params",
    [{"max_depth": -1}, {"max_depth": 65}, {"max_depth": None}, {"n_estimators": 0}, {"min_accuracy": 2}],
)
def test_parameters_out_of_range_are_refused(params):
    with pytest.raises(ParameterTypeError, match=next(iter(params))):
        retrain.validate_parameters(params)


def test_batch_score_scores_the_shipped_batch_by_default():
    assert batch_score.validate_parameters({}) == {"batch_file": "data/batch.csv", "expect_release": None}
