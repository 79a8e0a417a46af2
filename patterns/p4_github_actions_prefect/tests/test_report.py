"""The pull request's report (report.py, `make p4-report`): trained as the
p4-retrain deployment would be, with no server; when the model store does not
answer, the report says so and still stands. The comparison with a model in
service runs against the test stack (tests/p4_github_actions_prefect)."""

from __future__ import annotations

from pathlib import Path

import report
from settings import PATTERN_DIR
from train import fit_and_evaluate, read_csv


def test_the_report_trains_as_the_deployment_would_and_says_why_nothing_was_compared(settings, tmp_path: Path) -> None:
    settings(P4_S3_ENDPOINT_URL="http://127.0.0.1:9", P4_CONNECT_TIMEOUT="1")  # nothing listens on port 9
    params = report.retrain_parameters()
    # prefect.yaml's p4-retrain parameters over the flow's defaults
    assert params["n_estimators"] == 200 and params["min_accuracy"] == 0.85 and params["max_depth"] == 0
    done = report.build(tmp_path / "r")

    _, metrics = fit_and_evaluate(
        read_csv(PATTERN_DIR / "data" / "wine.csv"), n_estimators=200, max_depth=0, test_size=params["test_size"]
    )
    text = (tmp_path / "r" / "report.md").read_text()
    assert f"| this branch | {metrics['accuracy']} | {metrics['f1_macro']} |" in text
    assert f"{metrics['n_train']} rows to train, {metrics['n_test']} held out" in text
    assert "The gate `min_accuracy=0.85` passes." in text
    assert "No comparison with the model in service: S3 is unreachable at http://127.0.0.1:9" in text
    assert done["in_service"] is None and "in service (release" not in text
    # the confusion matrix counts the held-out rows; its diagonal is the accuracy
    matrix = done["matrix"]
    assert sum(map(sum, matrix)) == metrics["n_test"]
    assert round(sum(matrix[i][i] for i in range(len(matrix))) / metrics["n_test"], 4) == metrics["accuracy"]
    png = (tmp_path / "r" / report.PICTURE).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) < 100_000
    assert f"![confusion matrix]({report.PICTURE})" in text
