"""P3TrainFlow: the Metaflow half of pattern 3. Cross-validates a random forest
on one dataset version for one set of hyperparameters, then fits the final
model on all rows: start (read and version the data) -> train -> end.

Metaflow owns versions and lineage: every run gets a pathspec
(`P3TrainFlow/<run id>`), and every artifact below (the dataset it read,
its sha256, the fold scores, the model) is stored content-addressed in the S3
datastore, readable later from any process with the Metaflow Client. Prefect
never sees a model, only the pathspec and the score.

    python trainflow.py run --data_url s3://metaflow/p3/datasets/digits-<sha>.csv \\
        --n_estimators 50 --max_depth 8 --folds 3

Prefect's flow (flow.py) starts it with this command line and tags the
run `prefect_flow_run_id:<id>`. The Metaflow variables (datastore, S3
endpoint, metadata folder) come from settings.P3Settings.metaflow_env().
"""

from __future__ import annotations

import hashlib
import io

from metaflow import FlowSpec, Parameter, current, step

LABEL = "target"
RANGES: dict[str, tuple[int, int, str]] = {}  # filled by ranged(): name -> (lowest, highest, note)


def ranged(name: str, default: int, low: int, high: int, help: str, note: str = "") -> Parameter:
    """An int Parameter declared once with its default and range: the help
    shows the range and `start` rejects a value outside it, naming it."""
    RANGES[name] = (low, high, note)
    return Parameter(name, help=f"{help} ({low}-{high}{'; ' + note if note else ''})", type=int, default=default)


def out_of_range(values: dict[str, int]) -> list[str]:
    """One line per value outside its declared range."""
    return [
        f"{name}={values[name]} is outside {low}-{high}" + (f" ({note})" if note else "")
        for name, (low, high, note) in RANGES.items()
        if not low <= values[name] <= high
    ]


class P3TrainFlow(FlowSpec):
    data_url = Parameter("data_url", help="s3:// URL of the dataset (CSV with a 'target' column)", required=True)
    data_version = Parameter(
        "data_version", help="expected sha256 of the dataset; the run fails if the object differs", default=""
    )
    # The training parameters: the Prefect flows pass them on, the defaults and
    # ranges are these. max_depth 0 becomes scikit-learn's None in _model().
    n_estimators = ranged("n_estimators", 50, 1, 2000, "trees in the forest")
    max_depth = ranged("max_depth", 8, 0, 100, "tree depth", note="0 means unlimited")
    folds = ranged("folds", 3, 2, 10, "cross-validation folds")
    seed = Parameter("seed", help="random seed for folds and forest", type=int, default=0)

    @step
    def start(self):
        """Check the parameters, read the dataset from S3 and version it."""
        problems = out_of_range({name: getattr(self, name) for name in RANGES})
        if problems:
            raise ValueError("bad parameter: " + "; ".join(problems))

        import numpy as np
        from metaflow import S3

        with S3() as s3:
            raw = s3.get(self.data_url).blob
        self.data_sha256 = hashlib.sha256(raw).hexdigest()
        if self.data_version and self.data_version != self.data_sha256:
            raise ValueError(
                f"{self.data_url} has sha256 {self.data_sha256}, not the expected {self.data_version}: "
                "the object changed after it was published"
            )
        header = raw.split(b"\n", 1)[0].decode().strip().split(",")
        if LABEL not in header:
            raise ValueError(f"{self.data_url} has no {LABEL!r} column (columns: {', '.join(header[:5])}, ...)")
        table = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, ndmin=2)
        label = header.index(LABEL)
        # Stored once in the datastore, content-addressed: the exact rows this run saw.
        self.features = [name for name in header if name != LABEL]
        self.x = np.delete(table, label, axis=1)
        self.y = table[:, label].astype(int)
        self.rows = len(self.y)
        self.next(self.train)

    @step
    def train(self):
        """Cross-validate, then fit the final model on every row."""
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        folds = StratifiedKFold(n_splits=self.folds, shuffle=True, random_state=self.seed)
        self.fold_scores = [float(v) for v in cross_val_score(self._model(), self.x, self.y, cv=folds)]
        self.cv_accuracy = sum(self.fold_scores) / len(self.fold_scores)
        self.model = self._model().fit(self.x, self.y)
        self.next(self.end)

    @step
    def end(self):
        print(
            f"{current.pathspec}: cv_accuracy={self.cv_accuracy:.4f} folds={self.fold_scores} "
            f"n_estimators={self.n_estimators} max_depth={self.max_depth} data={self.data_sha256[:12]}"
        )

    def _model(self):
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth or None,
            random_state=self.seed,
            n_jobs=1,
        )


if __name__ == "__main__":
    P3TrainFlow()
