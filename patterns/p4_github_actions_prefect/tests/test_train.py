"""The model code (train.py), with no server. This folder's tests are the
`test` stage of its CI/CD (`make p4-test`, `uv run pytest` here): the model
code, the flows' parameters and the release tooling, in seconds. A failure
here stops the pipeline before anything is built or deployed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from errors import P4Error
from train import fit_and_evaluate, predict, read_csv

PATTERN = Path(__file__).resolve().parents[1]


def test_training_data_trains_a_model_above_the_gate():
    data = read_csv(PATTERN / "data" / "wine.csv")
    assert data.X.shape == (178, 13) and sorted(set(data.y.tolist())) == [0, 1, 2]
    model, metrics = fit_and_evaluate(data, n_estimators=50, max_depth=0, test_size=0.25)
    assert metrics["accuracy"] >= 0.85  # the deployed gate (prefect.yaml min_accuracy)
    assert metrics["n_train"] + metrics["n_test"] == 178


def test_batch_scores_with_the_training_features():
    data = read_csv(PATTERN / "data" / "wine.csv")
    model, _ = fit_and_evaluate(data, n_estimators=20, max_depth=4, test_size=0.25)
    batch = read_csv(PATTERN / "data" / "batch.csv", with_target=False)
    labels = predict(model, data.features, batch)
    assert len(labels) == 40 and set(labels.tolist()) <= {0, 1, 2}


def test_a_batch_with_other_columns_is_refused(tmp_path):
    data = read_csv(PATTERN / "data" / "wine.csv")
    model, _ = fit_and_evaluate(data, n_estimators=5, max_depth=2, test_size=0.25)
    bad = tmp_path / "bad.csv"
    bad.write_text("alcohol,colour\n13.0,4.2\n")
    with pytest.raises(P4Error, match="missing: .*extra: \\['colour'\\]"):
        predict(model, data.features, read_csv(bad, with_target=False))


@pytest.mark.parametrize(
    ("content", "message"),
    [("a,b\n", "no data rows"), ("a,b\n1,2\n", "no 'target' column"), ("a,target\nx,1\n", "non-numeric")],
)
def test_bad_training_csv_names_the_problem(tmp_path, content, message):
    path = tmp_path / "data.csv"
    path.write_text(content)
    with pytest.raises(P4Error, match=message):
        read_csv(path)


def test_max_depth_0_is_no_depth_limit_and_a_number_is_a_limit():
    data = read_csv(PATTERN / "data" / "wine.csv")
    unlimited, _ = fit_and_evaluate(data, n_estimators=5, max_depth=0, test_size=0.25)
    limited, _ = fit_and_evaluate(data, n_estimators=5, max_depth=2, test_size=0.25)
    assert unlimited.max_depth is None  # scikit-learn's spelling, set at the constructor only
    assert max(tree.get_depth() for tree in unlimited.estimators_) > 2
    assert limited.max_depth == 2 and max(tree.get_depth() for tree in limited.estimators_) <= 2
