"""The training key decides whether a run trains or reuses an earlier
training, so it must stay the same for the same inputs: a changed key
retrains what MLflow already holds. The keys below were computed by the
flow before its parameters moved onto its signature (TrainParams, where
"no depth limit" was max_depth=None; now it is max_depth=0)."""

from __future__ import annotations

import pytest

from checks import parameters_of
from flow import training_flow, training_key

MD5 = "106c40cb3d7e70102bdce451c97db272"  # the committed pointer's data version


def params(n_estimators=200, max_depth=6, test_size=0.25, random_state=42) -> dict:
    return {"n_estimators": n_estimators, "max_depth": max_depth, "test_size": test_size, "random_state": random_state}


@pytest.mark.parametrize(
    "given, key",
    [
        (params(), "278b65d8fad5b64b"),
        (params(max_depth=0), "79d336711c2c2dd2"),  # was max_depth=None
        (params(n_estimators=1, max_depth=1), "5b51dd6b13698f60"),
        (params(n_estimators=50, max_depth=3, test_size=0.3, random_state=7), "418566da66f0f2e4"),
    ],
)
def test_same_inputs_give_the_key_recorded_before(given: dict, key: str) -> None:
    assert training_key(MD5, given) == key


def test_the_flow_defaults_give_the_default_key() -> None:
    defaults = {p.name: p.default for p in parameters_of(training_flow) if not p.name.startswith(("data_", "trigger_"))}
    assert defaults == params()
    assert training_key(MD5, defaults) == "278b65d8fad5b64b"


def test_other_data_gives_another_key() -> None:
    assert training_key("0" * 32, params()) == "c592faffc756a577"


@pytest.mark.parametrize("change", [{"n_estimators": 201}, {"max_depth": 7}, {"test_size": 0.3}, {"random_state": 1}])
def test_every_parameter_is_part_of_the_key(change: dict) -> None:
    assert training_key(MD5, params() | change) != training_key(MD5, params())


def test_the_key_does_not_depend_on_the_order_of_the_parameters() -> None:
    assert training_key(MD5, dict(reversed(params().items()))) == training_key(MD5, params())
