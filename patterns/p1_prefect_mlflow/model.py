"""Pattern 1's model, inside the MLflow run the flow opens: split, train,
score against the champion, register. MLflow owns what these produce: the
run's params, metrics and plot, the logged model, the registry and the
`champion` alias.

To train your own model, change `build_model` (and `FEATURES` / `TARGET` in
data.py for your own data).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prefect import get_run_logger, task

import data
import integrity
from errors import P1Error
from settings import P1Settings

SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree", "numpy.dtype"]  # we trained it ourselves; see docs/operations.md


@task
def preprocess(frame: pd.DataFrame, test_size: float, random_state: int):
    """A stratified, seeded split: the same data version gives the same split."""
    from sklearn.model_selection import train_test_split

    features = frame[data.FEATURES].astype("float64")
    target = frame[data.TARGET].astype("int64")
    return train_test_split(features, target, test_size=test_size, random_state=random_state, stratify=target)


# ## Train and evaluate inside the MLflow run
METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc")


def _score(model, x_test: pd.DataFrame, y_test: pd.Series) -> dict[str, float]:
    from sklearn import metrics as m

    predicted = model.predict(x_test)
    probability = model.predict_proba(x_test)[:, 1]
    return {
        "accuracy": float(m.accuracy_score(y_test, predicted)),
        "f1": float(m.f1_score(y_test, predicted)),
        "precision": float(m.precision_score(y_test, predicted)),
        "recall": float(m.recall_score(y_test, predicted)),
        "roc_auc": float(m.roc_auc_score(y_test, probability)),
    }


def build_model(n_estimators: int, max_depth: int, random_state: int):
    """The candidate: median imputation, then a random forest."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        SimpleImputer(strategy="median"),  # the few NaNs validation lets through
        RandomForestClassifier(
            n_estimators=n_estimators,
            max_depth=max_depth or None,  # 0 = no depth limit, scikit-learn's None
            random_state=random_state,
            n_jobs=1,
        ),
    )


@task
def train(x_train, x_test, y_train, y_test, params: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """Fit the candidate and log it to the active MLflow run: params, metrics,
    a confusion-matrix plot, the model with signature and input example."""
    import matplotlib

    matplotlib.use("Agg")
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.metrics import ConfusionMatrixDisplay

    model = build_model(params["n_estimators"], params["max_depth"], params["random_state"])
    model.fit(x_train, y_train)
    mlflow.log_params({**params, "model": "RandomForestClassifier", "imputer": "median"})
    scores = _score(model, x_test, y_test)
    mlflow.log_metrics(scores)

    display = ConfusionMatrixDisplay.from_estimator(
        model, x_test, y_test, display_labels=["malignant", "benign"], cmap="Blues"
    )
    display.ax_.set_title("Confusion matrix (test split)")
    mlflow.log_figure(display.figure_, "plots/confusion_matrix.png")

    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(x_test, model.predict(x_test)),
        input_example=x_test.head(5),
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        # Only what serving needs, not this project's whole environment.
        pip_requirements=[
            f"mlflow=={mlflow.__version__}",
            f"scikit-learn=={sklearn.__version__}",
            f"pandas=={pd.__version__}",
        ],
    )
    integrity.record(info.model_uri)  # its sha256, checked before it is ever loaded again
    get_run_logger().info("Candidate: %s", ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    return info.model_uri, scores


@task
def evaluate_against_champion(
    settings: P1Settings, candidate: dict[str, float], x_test, y_test
) -> tuple[bool, str, dict[str, float]]:
    """Score the current champion on the same test split; promote only if better.
    Returns (promote, the reason in words, the champion's scores)."""
    client = MlflowClient()
    try:
        champion = client.get_model_version_by_alias(settings.model_name, "champion")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return True, "no champion yet: the first model becomes champion", {}
    with tempfile.TemporaryDirectory() as tmp:
        _, local = integrity.verified_copy(settings.model_name, "champion", Path(tmp))
        model = mlflow.sklearn.load_model(str(local))
    try:
        champion_scores = _score(model, x_test, y_test)
    except (ValueError, KeyError) as exc:
        return True, f"champion v{champion.version} cannot score the current data ({exc})", {}
    mlflow.log_metrics({f"champion_{k}": v for k, v in champion_scores.items()})
    gain = candidate["roc_auc"] - champion_scores["roc_auc"]
    if gain > settings.min_improvement:
        return (
            True,
            (
                f"roc_auc {candidate['roc_auc']:.4f} beats champion v{champion.version} "
                f"({champion_scores['roc_auc']:.4f}) by {gain:+.4f}"
            ),
            champion_scores,
        )
    return (
        False,
        (
            f"roc_auc {candidate['roc_auc']:.4f} does not beat champion v{champion.version} "
            f"({champion_scores['roc_auc']:.4f}) by more than {settings.min_improvement}"
        ),
        champion_scores,
    )


@task
def register_and_promote(settings: P1Settings, model_uri: str, lineage: dict[str, str]) -> str:
    """Register the candidate and move `champion` to it, as the run's last act."""
    version = mlflow.register_model(model_uri, settings.model_name, tags=lineage)
    client = MlflowClient()
    client.set_registered_model_alias(settings.model_name, "champion", version.version)
    get_run_logger().info("Registered %s v%s and moved 'champion' to it", settings.model_name, version.version)
    return version.version


def champion_version(settings: P1Settings) -> str:
    """The version `champion` names now: what the deploy step and a scoring use."""
    try:
        return MlflowClient().get_model_version_by_alias(settings.model_name, "champion").version
    except MlflowException as exc:
        raise P1Error(
            f"registered model {settings.model_name!r} has no 'champion' alias to deploy",
            "set it in the MLflow UI (model > version > aliases), or retrain with other parameters or data",
        ) from exc
