"""Pattern 2, the KFP side: the training pipeline Airflow triggers.

Kubeflow Pipelines owns the training run: three KFP v2 lightweight Python
components with typed artifacts, run as one pipeline run per logical date.

    validate  s3 dataset URI -> Output[Dataset] train_set, test_set
    train     Input[Dataset] train_set -> Output[Model] model
    evaluate  Input[Model] + Input[Dataset] test_set -> Output[Metrics],
              Output[ClassificationMetrics]; writes the run record
              (metrics.json, model.joblib) under export_uri for Airflow

    python pipeline.py compile [--output p2_pipeline.yaml]   the IR YAML a KFP server runs

Components take everything they need as parameters or artifacts. S3 access
comes from the environment the component runs in (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3): locally the environment of
`submit.py`, on a cluster a Kubernetes secret mounted into the component pods.

Resource requests and the optional accelerator are declared on the tasks for
a cluster; kfp.local's SubprocessRunner ignores them (they have no effect on
this machine, and none has a GPU).
"""

# No `from __future__ import annotations` here: KFP reads the real annotation
# objects (Input[Dataset], Output[Model], ...) to build the component specs.
import argparse
import os
from pathlib import Path

from kfp import compiler, dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

PIPELINE_DIR = Path(__file__).resolve().parent
PIPELINE_NAME = "p2-wine-training"
IR_PATH = PIPELINE_DIR / "p2_pipeline.yaml"
TARGET = "target"

# ## The image every component runs in on a cluster
# The image holds this folder's locked environment (kfp, scikit-learn, pandas,
# boto3), so no component installs anything at run time
# (`install_kfp_package=False`, no `packages_to_install`). Locally the
# SubprocessRunner runs the same code with this environment's python3.
IMAGE = os.environ.get("P2_KFP_IMAGE", "p2-kfp-python:0.1.0")
# Cluster mode only (set by the submit pod; unset when compiling the committed IR):
# the Kubernetes secret with the S3 keys, and S3 as pods reach it.
CLUSTER_S3_SECRET = os.environ.get("P2_CLUSTER_S3_SECRET", "")
CLUSTER_S3_ENDPOINT_URL = os.environ.get("P2_CLUSTER_S3_ENDPOINT_URL", "")
# Declared for the cluster only; `P2_TRAIN_ACCELERATOR=nvidia.com/gpu` asks
# for one GPU on the train task. Read at compile time.
ACCELERATOR = os.environ.get("P2_TRAIN_ACCELERATOR", "")


# ## Components
# Lightweight components: KFP ships each function's source to the pod, so
# every import lives inside the function body.
@dsl.component(base_image=IMAGE, install_kfp_package=False)
def validate(
    dataset_uri: str,
    test_size: float,
    random_state: int,
    min_rows_per_class: int,
    train_set: Output[Dataset],
    test_set: Output[Dataset],
) -> int:
    """Read the dataset Airflow loaded, check the training contract, split it.

    Airflow's transform already guaranteed a well-formed table; this is the
    model's own contract: enough rows of at least two classes. Returns the
    number of rows."""
    import io

    import boto3
    import pandas as pd
    from sklearn.model_selection import train_test_split

    if not dataset_uri.startswith("s3://"):
        raise ValueError(f"validate: dataset_uri {dataset_uri!r} is not an s3:// URI")
    bucket, key = dataset_uri.removeprefix("s3://").split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    frame = pd.read_csv(io.BytesIO(body))
    if "target" not in frame.columns:
        raise ValueError(f"validate: {dataset_uri} has no 'target' column (columns: {list(frame.columns)})")
    counts = frame["target"].value_counts().sort_index()
    if len(counts) < 2:
        raise ValueError(
            f"validate: {dataset_uri} has {len(counts)} class(es) {counts.to_dict()}; training needs at least 2"
        )
    small = counts[counts < min_rows_per_class]
    if len(small):
        raise ValueError(
            f"validate: classes {small.to_dict()} have fewer than {min_rows_per_class} rows in {dataset_uri}"
        )
    train, test = train_test_split(frame, test_size=test_size, random_state=random_state, stratify=frame["target"])
    train.to_csv(train_set.path, index=False)
    test.to_csv(test_set.path, index=False)
    train_set.metadata.update({"rows": len(train), "source": dataset_uri})
    test_set.metadata.update({"rows": len(test), "source": dataset_uri})
    print(f"validate: {len(frame)} rows, classes {counts.to_dict()}, train {len(train)}, test {len(test)}")
    return len(frame)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    train_set: Input[Dataset],
    n_estimators: int,
    max_depth: int,
    random_state: int,
    model: Output[Model],
):
    """Fit a random forest on the training split (max_depth 0: unlimited)."""
    import joblib
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier

    frame = pd.read_csv(train_set.path)
    estimator = RandomForestClassifier(
        n_estimators=n_estimators, max_depth=max_depth or None, random_state=random_state, n_jobs=1
    )
    estimator.fit(frame.drop(columns=["target"]), frame["target"])
    joblib.dump(estimator, model.path)
    model.metadata.update(
        {"framework": "scikit-learn", "estimator": "RandomForestClassifier", "n_estimators": n_estimators}
    )
    print(f"train: fitted on {len(frame)} rows")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    test_set: Input[Dataset],
    export_uri: str,
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
):
    """Score the model on the held-out split, log the metrics as KFP artifacts,
    and write the run record Airflow reads back: metrics.json and model.joblib
    under export_uri (s3://bucket/prefix)."""
    import json

    import boto3
    import joblib
    import pandas as pd
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    frame = pd.read_csv(test_set.path)
    x, y = frame.drop(columns=["target"]), frame["target"]
    estimator = joblib.load(model.path)
    predicted = estimator.predict(x)
    scores = {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1_macro": float(f1_score(y, predicted, average="macro")),
        "test_rows": len(frame),
    }
    for name, value in scores.items():
        metrics.log_metric(name, value)
    labels = sorted(int(v) for v in set(y) | set(predicted))
    classification.log_confusion_matrix(
        [str(label) for label in labels], confusion_matrix(y, predicted, labels=labels).tolist()
    )

    bucket, prefix = export_uri.removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3")
    s3.upload_file(model.path, bucket, f"{prefix.rstrip('/')}/model.joblib")
    s3.put_object(
        Bucket=bucket,
        Key=f"{prefix.rstrip('/')}/metrics.json",
        Body=json.dumps(scores, indent=2).encode(),
        ContentType="application/json",
    )
    print("evaluate: " + ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))


# ## The pipeline
@dsl.pipeline(name=PIPELINE_NAME, description="Pattern 2: validate -> train -> evaluate a wine classifier.")
def wine_training(
    dataset_uri: str,
    export_uri: str,
    n_estimators: int = 200,
    max_depth: int = 6,
    test_size: float = 0.25,
    random_state: int = 42,
    min_rows_per_class: int = 5,
) -> Metrics:
    checked = validate(
        dataset_uri=dataset_uri,
        test_size=test_size,
        random_state=random_state,
        min_rows_per_class=min_rows_per_class,
    ).set_display_name("validate")
    fitted = train(
        train_set=checked.outputs["train_set"],
        n_estimators=n_estimators,
        max_depth=max_depth,
        random_state=random_state,
    ).set_display_name("train")
    # For the cluster (ignored by kfp.local): what the training pod asks for.
    fitted.set_cpu_request("1").set_cpu_limit("2").set_memory_request("1G").set_memory_limit("4G")
    if ACCELERATOR:
        fitted.set_accelerator_type(ACCELERATOR).set_accelerator_limit(1)
    scored = evaluate(
        model=fitted.outputs["model"], test_set=checked.outputs["test_set"], export_uri=export_uri
    ).set_display_name("evaluate")
    scored.set_cpu_request("500m").set_memory_request("512M")
    if CLUSTER_S3_SECRET:
        # On a cluster each component is its own pod: give the two that touch
        # S3 the endpoint and the keys (from a Kubernetes secret, never inlined
        # into the pipeline spec). Locally they inherit the submit process's env.
        from kfp import kubernetes

        keys = {name: name for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        for task in (checked, scored):
            task.set_env_variable("AWS_ENDPOINT_URL_S3", CLUSTER_S3_ENDPOINT_URL)
            kubernetes.use_secret_as_env(task, secret_name=CLUSTER_S3_SECRET, secret_key_to_env=keys)
    return scored.outputs["metrics"]


def compile_pipeline(output: Path = IR_PATH) -> Path:
    compiler.Compiler().compile(pipeline_func=wine_training, package_path=str(output))
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pattern 2's KFP pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_compile = sub.add_parser("compile", help="compile to KFP IR YAML")
    p_compile.add_argument("--output", type=Path, default=IR_PATH)
    args = parser.parse_args(argv)
    path = compile_pipeline(args.output)
    print(f"compiled {PIPELINE_NAME} to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
