"""The model code the pipeline ships: read a CSV, fit, evaluate, predict.

Plain functions with no orchestration, so the CI `test` stage covers them in
seconds (tests/test_train.py) and the flows in flow.py only wire them up.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from errors import P4Error

TARGET = "target"


@dataclass(frozen=True)
class Dataset:
    features: list[str]
    X: np.ndarray
    y: np.ndarray | None
    sha256: str


def read_csv(path: Path, *, with_target: bool = True) -> Dataset:
    """A numeric CSV with a header; `target` is the label column when `with_target`."""
    if not path.is_file():
        raise P4Error(f"data file {path} does not exist", "pass an existing CSV path (relative to the pattern folder)")
    raw = path.read_bytes()
    rows = list(csv.reader(raw.decode("utf-8").splitlines()))
    if len(rows) < 2:
        raise P4Error(f"{path} has no data rows", "give a CSV with a header line and at least one row")
    header, body = rows[0], rows[1:]
    if with_target and TARGET not in header:
        raise P4Error(f"{path} has no {TARGET!r} column (columns: {', '.join(header)})", f"add the {TARGET} column")
    try:
        values = np.array([[float(v) for v in row] for row in body])
    except ValueError as exc:
        raise P4Error(f"{path} has a non-numeric value ({exc})", "every column must be numeric") from None
    if values.shape[1] != len(header):
        raise P4Error(f"{path}: rows have {values.shape[1]} values for {len(header)} columns", "fix the CSV")
    digest = hashlib.sha256(raw).hexdigest()
    if with_target:
        t = header.index(TARGET)
        features = header[:t] + header[t + 1 :]
        return Dataset(features, np.delete(values, t, axis=1), values[:, t].astype(int), digest)
    return Dataset(header, values, None, digest)


def split(data: Dataset, *, test_size: float, seed: int = 0) -> list[np.ndarray]:
    """The stratified train/held-out split: X_train, X_test, y_train, y_test."""
    if data.y is None:
        raise P4Error("the training data has no labels", f"train on a CSV with a {TARGET!r} column")
    return train_test_split(data.X, data.y, test_size=test_size, random_state=seed, stratify=data.y)


def fit_and_evaluate(
    data: Dataset, *, n_estimators: int, max_depth: int, test_size: float, seed: int = 0
) -> tuple[RandomForestClassifier, dict[str, float]]:
    """A random forest fitted on a stratified split; accuracy and macro F1 on the
    held-out part. `max_depth=0` is no depth limit (scikit-learn's None)."""
    X_train, X_test, y_train, y_test = split(data, test_size=test_size, seed=seed)
    model = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth or None, random_state=seed, n_jobs=1)
    model.fit(X_train, y_train)
    metrics = scores(y_test, model.predict(X_test)) | {"n_train": len(y_train), "n_test": len(y_test)}
    return model, metrics


def scores(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1, rounded as the model card records them."""
    return {
        "accuracy": round(float(accuracy_score(y_true, predicted)), 4),
        "f1_macro": round(float(f1_score(y_true, predicted, average="macro")), 4),
    }


def predict(model: RandomForestClassifier, features: list[str], batch: Dataset) -> np.ndarray:
    """Predictions for a batch whose columns must be the model's features, in order."""
    if batch.features != features:
        missing = sorted(set(features) - set(batch.features))
        extra = sorted(set(batch.features) - set(features))
        raise P4Error(
            f"the batch's columns do not match the model's features (missing: {missing or '-'}, extra: {extra or '-'})",
            "score a CSV with exactly the training columns, without the target",
        )
    return model.predict(batch.X)
