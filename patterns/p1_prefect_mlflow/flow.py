"""Pattern 1: Prefect orchestrates, MLflow tracks and registers, DVC versions data.

Who owns what (the guide's advice, kept strictly):
- Prefect owns the schedule and run state: the flow, its tasks, retries, the
  deployment's cron schedule, and the summary artifact.
- MLflow owns experiments and models: params, metrics, plots, the logged
  model, the registry and the `champion` alias.
- DVC owns the data version: the md5 in the committed `.dvc` pointer.

    python flow.py                 train once (parameters: --help)
    python flow.py serve           a long-lived deployment that retrains on a cron schedule

The run ends with a summary and one stable line for scripts and tests:
    Result: pattern=p1 status=ok decision=promoted model=... version=... ...
"""

# ## Settings first
# Prefect reads PREFECT_API_URL when it is imported, so the settings object
# exports the endpoints before prefect and mlflow are imported.
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from errors import P1Error
from settings import PATTERN_DIR, P1Settings

SETTINGS = P1Settings()
SETTINGS.export_to_environ()

import httpx  # noqa: E402
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from prefect import flow, get_run_logger, runtime, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

import data  # noqa: E402

SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree", "numpy.dtype"]  # we trained it ourselves; see README


@dataclass
class TrainParams:
    n_estimators: int = 200
    max_depth: int | None = 6
    test_size: float = 0.25
    random_state: int = 42

    def validate(self) -> None:
        if self.n_estimators < 1:
            raise P1Error(f"n_estimators={self.n_estimators} must be >= 1", "pass --n-estimators 1 or more")
        if self.max_depth is not None and self.max_depth < 1:
            raise P1Error(f"max_depth={self.max_depth} must be >= 1 or None", "pass --max-depth 1 or more")
        if not 0.05 <= self.test_size <= 0.5:
            raise P1Error(f"test_size={self.test_size} must be between 0.05 and 0.5", "pass --test-size 0.25")


@dataclass
class Outcome:
    """What the run produced: returned by the flow, printed, and published."""

    status: str = "ok"
    decision: str = ""
    reason: str = ""
    mlflow_run_id: str = ""
    model_version: str = ""
    champion_version: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    data_md5: str = ""
    git_commit: str = ""
    prefect_flow_run_id: str = ""
    predictions: int = 0
    prediction_counts: dict[str, int] = field(default_factory=dict)
    mlflow_run_url: str = ""
    model_url: str = ""
    prefect_flow_run_url: str = ""


# ## Pre-flight
# Unreachable services and wrong keys fail here, in seconds, with the fix,
# before anything is written anywhere.
def check_prefect(settings: P1Settings) -> None:
    _check_http(f"{settings.prefect_api_url}/health", "Prefect API", "PREFECT_API_URL", settings)


def _check_http(url: str, what: str, variable: str, settings: P1Settings) -> None:
    try:
        response = httpx.get(url, timeout=settings.connect_timeout)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise P1Error(
            f"{what} at {url} is unreachable ({type(exc).__name__}: {exc})",
            f"start the local stack with `make up`, or set {variable} (or P1_{variable}) to a running server",
        ) from exc


@task
def check_mlflow(settings: P1Settings) -> None:
    _check_http(f"{settings.mlflow_tracking_uri}/health", "MLflow tracking server", "MLFLOW_TRACKING_URI", settings)


@task
def check_s3(settings: P1Settings, version: data.DataVersion) -> None:
    """The DVC remote's bucket answers to these keys (a wrong key fails here,
    not halfway through a pull)."""
    url = data.remote_url(version, settings)
    if not url.startswith("s3://"):
        return  # a local or non-S3 remote: DVC itself reports its errors
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = url.removeprefix("s3://").split("/", 1)[0]
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=Config(connect_timeout=settings.connect_timeout, retries={"max_attempts": 1}),
    )
    try:
        client.list_objects_v2(Bucket=bucket, MaxKeys=1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            raise P1Error(
                f"the S3 server at {settings.s3_endpoint_url} rejected access key "
                f"{settings.s3_access_key_id!r} ({code})",
                "set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (or P1_S3_...) to the keys the "
                "S3 server was started with; the local stack's are in .env.example",
            ) from exc
        raise P1Error(
            f"S3 at {settings.s3_endpoint_url}: bucket {bucket!r} of the DVC remote {url} is not usable ({code})",
            "create the bucket (`make up` creates the local stack's), or fix the remote with `dvc remote modify`",
        ) from exc
    except BotoCoreError as exc:
        raise P1Error(
            f"S3 server at {settings.s3_endpoint_url} is unreachable ({exc})",
            "start the local stack with `make up`, or set S3_ENDPOINT_URL",
        ) from exc


# ## Data: version, fetch, validate
@task
def resolve_data_version(data_file: Path) -> data.DataVersion:
    version = data.data_version(data_file)
    get_run_logger().info("Data version (DVC md5) %s from %s", version.md5, version.pointer)
    return version


@task(retries=2, retry_delay_seconds=2)
def fetch_data(version: data.DataVersion, settings: P1Settings) -> Path:
    return data.pull(version, settings)


@task
def validate(path: Path, max_nan_fraction: float) -> pd.DataFrame:
    """Schema and values: every expected column, numeric, few NaNs, a 0/1 target."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise P1Error(
            f"{path} is not a readable CSV ({exc})", "re-export it, or restore it with `dvc checkout`"
        ) from exc
    expected = [*data.FEATURES, data.TARGET]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise P1Error(
            f"{path.name} lacks column(s) {', '.join(missing)}",
            f"supply all {len(expected)} columns listed in data.py (FEATURES + {data.TARGET!r})",
        )
    if frame.empty:
        raise P1Error(f"{path.name} has no rows", "supply a data file with rows")
    for column in expected:
        coerced = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column][coerced.isna() & frame[column].notna()]
        if len(bad):
            raise P1Error(
                f"column {column!r} has non-numeric values, e.g. {bad.iloc[0]!r} at row {bad.index[0] + 2}",
                "clean the source so every feature is a number (empty cells count as missing)",
            )
        frame[column] = coerced
        nan_fraction = frame[column].isna().mean()
        if nan_fraction > max_nan_fraction:
            raise P1Error(
                f"column {column!r} is {nan_fraction:.1%} missing, above the limit of {max_nan_fraction:.1%}",
                "fill or drop the missing values at the source, or raise P1_MAX_NAN_FRACTION "
                "if that much missing data is acceptable",
            )
    labels = set(frame[data.TARGET].dropna().unique())
    if not labels <= {0, 1} or len(labels) < 2:
        raise P1Error(
            f"column {data.TARGET!r} must hold both classes 0 and 1, found {sorted(labels)}",
            "supply a binary target (0 = malignant, 1 = benign)",
        )
    if frame[data.TARGET].isna().any():
        raise P1Error(f"column {data.TARGET!r} has missing labels", "drop rows without a label at the source")
    return frame


@task
def preprocess(frame: pd.DataFrame, params: TrainParams):
    """A stratified, seeded split: the same data version gives the same split."""
    from sklearn.model_selection import train_test_split

    features = frame[data.FEATURES].astype("float64")
    target = frame[data.TARGET].astype("int64")
    return train_test_split(
        features, target, test_size=params.test_size, random_state=params.random_state, stratify=target
    )


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


@task
def train(x_train, x_test, y_train, y_test, params: TrainParams) -> tuple[str, dict[str, float]]:
    import matplotlib

    matplotlib.use("Agg")
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.metrics import ConfusionMatrixDisplay
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        SimpleImputer(strategy="median"),  # the few NaNs validation lets through
        RandomForestClassifier(
            n_estimators=params.n_estimators,
            max_depth=params.max_depth,
            random_state=params.random_state,
            n_jobs=1,
        ),
    ).fit(x_train, y_train)
    mlflow.log_params({**asdict(params), "model": "RandomForestClassifier", "imputer": "median"})
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
    model = mlflow.sklearn.load_model(f"models:/{settings.model_name}@champion")
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


# ## Deploy: serve the champion and score a batch over HTTP
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@task(retries=1, retry_delay_seconds=2)
def serve_and_score(settings: P1Settings, batch: pd.DataFrame) -> list[int]:
    """Load the champion by its alias, serve it with MLflow's scoring server
    (the FastAPI app `mlflow models serve` runs) on 127.0.0.1, POST the batch
    to /invocations, check one prediction came back per row, stop the server.

    The server runs in this process, on its own thread: starting a separate
    `mlflow models serve` costs ~15 s of imports on two cores, for the same app.
    """
    import threading

    import uvicorn
    from mlflow.pyfunc import scoring_server

    uri = f"models:/{settings.model_name}@champion"
    app = scoring_server.init(mlflow.pyfunc.load_model(uri))
    port = settings.serve_port or _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="model-server", daemon=True)
    log = get_run_logger()
    log.info("Serving %s on http://127.0.0.1:%d", uri, port)
    thread.start()
    try:
        deadline = time.monotonic() + settings.serve_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise P1Error(
                    f"the model server for {uri} did not start on port {port}",
                    "free the port named by P1_SERVE_PORT (0 picks a free one), or raise P1_SERVE_TIMEOUT",
                )
            time.sleep(0.05)
        httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5).raise_for_status()
        response = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"dataframe_split": json.loads(batch.to_json(orient="split", index=False))},
            timeout=60,
        )
        if response.status_code != 200:
            raise P1Error(
                f"the model server answered {response.status_code}: {response.text[:500]}",
                "check the served model's signature against the batch's columns",
            )
        predictions = [int(p) for p in response.json()["predictions"]]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    if len(predictions) != len(batch):
        raise P1Error(
            f"the model server returned {len(predictions)} predictions for {len(batch)} rows",
            "check the served model's signature against the batch's columns",
        )
    log.info("Scored %d rows over HTTP", len(predictions))
    return predictions


# ## Lineage and idempotency helpers
def git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PATTERN_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=PATTERN_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "none (not a git checkout)"
    return f"{sha}-dirty" if dirty else sha


def training_key(data_md5: str, params: TrainParams) -> str:
    """Same data version + same parameters = same key = no second model."""
    payload = json.dumps({"data_md5": data_md5, "params": asdict(params), "model": "rf-v1"}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@contextlib.contextmanager
def training_slot(key: str, timeout: float):
    """One training per key at a time, across processes and machines: a
    Prefect global concurrency limit of one slot named after the key. A
    second trigger of the same training waits here, then finds the first
    one's FINISHED run and reuses it instead of training a duplicate. The
    slot is a lease: a holder that dies frees it when the lease expires."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    name = f"p1-train-{key}"
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):  # two at once
        client.upsert_global_concurrency_limit_by_name(name, 1)
    try:
        # A failed lease renewal (the server away for longer than the renewal's
        # retries) logs a warning instead of cancelling the training half-way:
        # the MLflow run's own state, not the lease, decides what is reused.
        with concurrency(name, occupy=1, timeout_seconds=timeout, strict=True, raise_on_lease_renewal_failure=False):
            yield
    except TimeoutError as exc:
        raise P1Error(
            f"another run has held the training slot {name!r} for over {timeout:.0f} s",
            "wait for that run to finish (Prefect UI, Concurrency), or raise P1_SLOT_TIMEOUT",
        ) from exc


def find_finished_run(experiment_id: str, key: str):
    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`p1.training_key` = '{key}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0] if runs else None


# ## The flow
@flow(name="p1-train-register-serve", log_prints=True)
def training_flow(
    n_estimators: int = 200,
    max_depth: int | None = 6,
    test_size: float = 0.25,
    random_state: int = 42,
    data_file: str | None = None,
) -> dict:
    settings = SETTINGS
    params = TrainParams(n_estimators, max_depth, test_size, random_state)
    params.validate()
    check_mlflow(settings)
    version = resolve_data_version(Path(data_file) if data_file else settings.data_file)
    check_s3(settings, version)

    outcome = Outcome(data_md5=version.md5, git_commit=git_commit(), prefect_flow_run_id=str(runtime.flow_run.id or ""))
    lineage = {
        "git_commit": outcome.git_commit,
        "dvc_data_md5": version.md5,
        "dvc_data_path": version.path.name,
        "prefect_flow_run_id": outcome.prefect_flow_run_id,
    }
    key = training_key(version.md5, params)
    experiment = mlflow.set_experiment(settings.experiment_name)

    with training_slot(key, settings.slot_timeout):
        outcome, x_test = _train_or_reuse(settings, params, version, outcome, lineage, key, experiment)

    try:
        outcome.champion_version = MlflowClient().get_model_version_by_alias(settings.model_name, "champion").version
    except MlflowException as exc:
        raise P1Error(
            f"registered model {settings.model_name!r} has no 'champion' alias to deploy",
            "set it in the MLflow UI (model > version > aliases), or retrain with other parameters or data",
        ) from exc
    predictions = serve_and_score(settings, x_test)
    outcome.predictions = len(predictions)
    outcome.prediction_counts = {str(c): predictions.count(c) for c in sorted(set(predictions))}
    base = settings.mlflow_tracking_uri.rstrip("/")
    outcome.mlflow_run_url = f"{base}/#/experiments/{experiment.experiment_id}/runs/{outcome.mlflow_run_id}"
    outcome.model_url = f"{base}/#/models/{settings.model_name}/versions/{outcome.champion_version}"
    prefect_ui = settings.prefect_api_url.rstrip("/").removesuffix("/api")
    outcome.prefect_flow_run_url = f"{prefect_ui}/runs/flow-run/{outcome.prefect_flow_run_id}"
    publish_summary(settings, outcome)
    return asdict(outcome)


def _train_or_reuse(settings, params, version, outcome, lineage, key, experiment):
    """Reuse the FINISHED run of this key, or train (inside the training slot)."""
    previous = find_finished_run(experiment.experiment_id, key)
    if previous is not None:
        # Idempotency: MLflow already holds this exact training; reuse it.
        outcome.decision = "reused"
        outcome.reason = (
            f"MLflow run {previous.info.run_id} already trained on data {version.md5} "
            f"with these parameters (key {key}); no new run, no new model version"
        )
        outcome.mlflow_run_id = previous.info.run_id
        outcome.model_version = previous.data.tags.get("p1.model_version", "")
        outcome.metrics = {k: v for k, v in previous.data.metrics.items() if k in METRICS}
        print(outcome.reason)
        frame = validate(fetch_data(version, settings), settings.max_nan_fraction)
        _, x_test, _, _ = preprocess(frame, params)
    else:
        # Everything from here to the registry lives in one MLflow run: an
        # exception anywhere inside marks it FAILED, and registration is its
        # last act, so a failed run never registers a model.
        with mlflow.start_run(run_name=f"train-{version.md5[:8]}", tags={**lineage, "p1.training_key": key}) as run:
            outcome.mlflow_run_id = run.info.run_id
            try:
                frame = validate(fetch_data(version, settings), settings.max_nan_fraction)
                mlflow.log_metrics({"data_rows": len(frame), "data_max_nan_fraction": float(frame.isna().mean().max())})
                x_train, x_test, y_train, y_test = preprocess(frame, params)
                model_uri, outcome.metrics = train(x_train, x_test, y_train, y_test, params)
                promote, outcome.reason, outcome.champion_metrics = evaluate_against_champion(
                    settings, outcome.metrics, x_test, y_test
                )
                outcome.decision = "promoted" if promote else "kept-champion"
                mlflow.set_tags({"p1.decision": outcome.decision, "p1.decision_reason": outcome.reason})
                if promote:
                    outcome.model_version = register_and_promote(
                        settings, model_uri, {**lineage, "mlflow_run_id": run.info.run_id}
                    )
                    mlflow.set_tag("p1.model_version", outcome.model_version)
            except Exception as exc:
                mlflow.set_tag("p1.error", str(exc)[:5000])
                raise
        print(f"Decision: {outcome.decision}: {outcome.reason}")
    return outcome, x_test


@task
def publish_summary(settings: P1Settings, outcome: Outcome) -> None:
    rows = "\n".join(
        f"| {k} | {v:.4f} | {outcome.champion_metrics.get(k, float('nan')):.4f} |"
        for k, v in sorted(outcome.metrics.items())
    )
    create_markdown_artifact(
        key="p1-training-summary",
        description="Pattern 1: metrics, decision, lineage",
        markdown=f"""# Pattern 1 training summary

**Decision:** {outcome.decision}: {outcome.reason}

| metric | candidate | champion before |
|---|---|---|
{rows}

| lineage | |
|---|---|
| MLflow run | [{outcome.mlflow_run_id}]({outcome.mlflow_run_url}) |
| model version registered by this run | {outcome.model_version or "none"} |
| champion now | [{settings.model_name} v{outcome.champion_version}]({outcome.model_url}) |
| data version (DVC md5) | {outcome.data_md5} |
| git commit | {outcome.git_commit} |
| served batch | {outcome.predictions} predictions over HTTP, classes {outcome.prediction_counts} |
""",
    )


# ## Command line: run once, or serve on a schedule
def result_line(outcome: dict) -> str:
    fields = {
        "pattern": "p1",
        "status": outcome["status"],
        "decision": outcome["decision"],
        "model": SETTINGS.model_name,
        "version": outcome["model_version"] or "none",
        "champion": outcome["champion_version"],
        "roc_auc": f"{outcome['metrics'].get('roc_auc', 0):.4f}",
        "mlflow_run": outcome["mlflow_run_id"],
        "prefect_flow_run": outcome["prefect_flow_run_id"],
        "data_md5": outcome["data_md5"],
        "predictions": outcome["predictions"],
    }
    return "Result: " + " ".join(f"{k}={v}" for k, v in fields.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pattern 1: train, register and serve with Prefect + MLflow.")
    parser.add_argument("command", nargs="?", default="run", choices=["run", "serve"])
    parser.add_argument("--n-estimators", type=int, default=200)
    parser.add_argument("--max-depth", type=int, default=6, help="0 means unlimited")
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--random-state", type=int, default=42)
    parser.add_argument("--data-file", help="a DVC-tracked CSV (default: P1_DATA_FILE, the bundled data set)")
    parser.add_argument("--cron", default="0 3 * * *", help="schedule for `serve` (default: daily 03:00 UTC)")
    args = parser.parse_args(argv)
    parameters = dict(
        n_estimators=args.n_estimators,
        max_depth=args.max_depth or None,
        test_size=args.test_size,
        random_state=args.random_state,
        data_file=args.data_file,
    )
    try:
        check_prefect(SETTINGS)
        if args.command == "serve":
            # A deployment named p1-retrain, served by this process: Prefect's
            # scheduler creates a run on each cron tick and this process runs it.
            training_flow.serve(name="p1-retrain", cron=args.cron, parameters=parameters)
            return 0
        outcome = training_flow(**parameters)
    except P1Error as exc:
        print(exc.render(), file=sys.stderr)
        print("Result: pattern=p1 status=failed", file=sys.stderr)
        return 1
    except MlflowException as exc:
        # The tracking server went away mid-run for longer than the client's
        # retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES) cover: nothing was registered
        # unless the registry said so, and a rerun trains again (no FINISHED run).
        error = P1Error(
            f"the MLflow tracking server at {SETTINGS.mlflow_tracking_uri} failed mid-run: {str(exc)[:500]}",
            "check it answers (`make status`), then run again: an unfinished run is never reused",
        )
        print(error.render(), file=sys.stderr)
        print("Result: pattern=p1 status=failed", file=sys.stderr)
        return 1
    print(
        "\nPattern 1 finished.\n"
        f"  decision      {outcome['decision']}: {outcome['reason']}\n"
        f"  champion      {SETTINGS.model_name} v{outcome['champion_version']}  {outcome['model_url']}\n"
        f"  MLflow run    {outcome['mlflow_run_url']}\n"
        f"  Prefect run   {outcome['prefect_flow_run_url']}\n"
        f"  data version  {outcome['data_md5']} (DVC md5 of {SETTINGS.data_file.name})\n"
        f"  served batch  {outcome['predictions']} predictions over HTTP, per class {outcome['prediction_counts']}\n"
    )
    print(result_line(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
