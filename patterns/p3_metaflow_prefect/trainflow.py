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


class P3TrainFlow(FlowSpec):
    data_url = Parameter("data_url", help="s3:// URL of the dataset (CSV with a 'target' column)", required=True)
    data_version = Parameter(
        "data_version", help="expected sha256 of the dataset; the run fails if the object differs", default=""
    )
    n_estimators = Parameter("n_estimators", help="trees in the forest (1-2000)", type=int, default=50)
    max_depth = Parameter("max_depth", help="tree depth (1-100; 0 = unlimited)", type=int, default=8)
    folds = Parameter("folds", help="cross-validation folds (2-10)", type=int, default=3)
    seed = Parameter("seed", help="random seed for folds and forest", type=int, default=0)

    @step
    def start(self):
        """Check the parameters, read the dataset from S3 and version it."""
        problems = []
        if not 1 <= self.n_estimators <= 2000:
            problems.append(f"n_estimators={self.n_estimators} is outside 1-2000")
        if not 0 <= self.max_depth <= 100:
            problems.append(f"max_depth={self.max_depth} is outside 0-100 (0 means unlimited)")
        if not 2 <= self.folds <= 10:
            problems.append(f"folds={self.folds} is outside 2-10")
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
