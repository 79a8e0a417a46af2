"""The model side without MLflow: the seeded split the flow serves, and the
candidate model (max_depth=0 means no depth limit, scikit-learn's None)."""

from __future__ import annotations

import pandas as pd
import pytest

import data
from model import METRICS, _score, build_model, preprocess

TEST_ROWS = 143  # 25 % of 569 rows: the batch the stack tests expect to be served


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("raw") / "breast_cancer.csv"
    data.export_raw(path)
    return pd.read_csv(path)


def test_the_split_is_seeded_and_stratified(frame: pd.DataFrame) -> None:
    x_train, x_test, y_train, y_test = preprocess.fn(frame, 0.25, 42)
    assert len(x_test) == len(y_test) == TEST_ROWS and len(x_train) == 569 - TEST_ROWS
    assert list(x_test.columns) == data.FEATURES
    again = preprocess.fn(frame, 0.25, 42)[1]
    assert x_test.index.equals(again.index)
    assert abs(y_test.mean() - frame[data.TARGET].mean()) < 0.01


@pytest.mark.parametrize("max_depth, expected", [(0, None), (1, 1), (6, 6)])
def test_max_depth_zero_is_no_depth_limit(max_depth: int, expected: int | None) -> None:
    forest = build_model(10, max_depth, 42)[-1]
    assert forest.max_depth == expected and forest.n_estimators == 10 and forest.random_state == 42


def test_the_candidate_scores_every_metric(frame: pd.DataFrame) -> None:
    x_train, x_test, y_train, y_test = preprocess.fn(frame, 0.25, 42)
    scores = _score(build_model(20, 0, 42).fit(x_train, y_train), x_test, y_test)
    assert set(scores) == set(METRICS)
    assert 0.9 < scores["roc_auc"] <= 1.0
