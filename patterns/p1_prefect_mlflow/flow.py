"""Pattern 1: Prefect orchestrates, MLflow tracks and registers, DVC versions data.

Who owns what (the guide's advice, kept strictly):
- Prefect owns the schedule, the events and run state: these flows, their
  tasks, retries, the training slot, the deployment's cron schedule and its
  triggers on new data and drift (deploy.py, events.py), the artifacts (report.py).
- MLflow owns experiments and models: params, metrics, plots, the logged
  model, the registry and the `champion` alias (model.py), the scoring server
  (serving.py; endpoint.py keeps one serving `champion`) and the drift reports.
- DVC owns the data version: the md5 in the `.dvc` pointer (data.py).
- Evidently measures drift: a scored batch against the champion's training data (drift.py).

The loop: new data (`python data.py publish --batch NAME`) emits an event, and
the deployment's trigger retrains on exactly that data version; `python flow.py
score` scores a batch with the champion and, if the batch drifted, emits the
event that retrains on it. The champion gate decides each time; the endpoint follows.

    python flow.py                 train once (parameters: --help)
    python flow.py serve           deployment p1-retrain: a cron schedule and the two event triggers
    python flow.py score --data-file F.csv   score a batch, check drift, emit the event if it drifted

The run ends with a summary and one stable line for scripts and tests:
    Result: pattern=p1 status=ok decision=promoted model=... version=... ...
"""

import contextlib
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import httpx
import mlflow
from mlflow import MlflowClient
from prefect import flow, get_run_logger, runtime, task
from pydantic import Field

import data
import drift
import events
import integrity
from checks import check_mlflow, check_s3, validate
from errors import P1Error
from model import METRICS, champion_version, evaluate_against_champion, preprocess, register_and_promote, train
from report import Outcome, Scoring, add_links, git_commit, lineage_tags, publish_scoring, publish_summary
from serving import serve_and_score
from settings import P1Settings, load_settings

# ## The flows
DataFile = Annotated[
    str | None, Field(description="a DVC-tracked CSV, relative to this folder (default: P1_DATA_FILE)")
]
DataMd5 = Annotated[str | None, Field(description="the data version (DVC md5) the file must have, if given")]


# Each parameter is declared once, here: type, default and range. Prefect
# validates them (and shows them in its UI); the command line (cli.py) reads them.
@flow(name="p1-train-register-serve", log_prints=True)
def training_flow(
    n_estimators: Annotated[int, Field(ge=1, description="trees in the random forest")] = 200,
    max_depth: Annotated[int, Field(ge=0, description="depth limit of each tree, 0 = no limit")] = 6,
    test_size: Annotated[float, Field(ge=0.05, le=0.5, description="share of rows held out, scored and served")] = 0.25,
    random_state: Annotated[int, Field(ge=0, le=2**32 - 1, description="seed of the split and the forest")] = 42,
    data_file: DataFile = None,
    data_md5: DataMd5 = None,
    trigger_event: Annotated[
        str | None, Field(description="the event that started this run (set by its trigger)")
    ] = None,
) -> dict:
    settings = load_settings()
    params = dict(n_estimators=n_estimators, max_depth=max_depth, test_size=test_size, random_state=random_state)
    check_mlflow(settings)
    version = resolve_data_version(data_file, data_md5, settings)
    check_s3(settings, version)

    outcome = Outcome(
        data_md5=version.md5,
        git_commit=git_commit(),
        prefect_flow_run_id=str(runtime.flow_run.id or ""),
        trigger_event=trigger_event or "",
    )
    lineage = lineage_tags(version, outcome.git_commit, outcome.prefect_flow_run_id, trigger_event)
    key = training_key(version.md5, params)
    experiment = mlflow.set_experiment(settings.experiment_name)

    with training_slot(key, settings.slot_timeout):
        outcome, x_test = train_or_reuse(settings, params, version, outcome, lineage, key, experiment)

    outcome.champion_version = champion_version(settings)
    predictions = serve_and_score(settings, x_test)
    outcome.predictions = len(predictions)
    outcome.prediction_counts = {str(c): predictions.count(c) for c in sorted(set(predictions))}
    add_links(outcome, settings, experiment.experiment_id)
    publish_summary(settings, outcome)
    return asdict(outcome)


# ## Score a batch: the champion answers, and drift starts the next training
@flow(name="p1-score-batch", log_prints=True)
def scoring_flow(data_file: DataFile = None, data_md5: DataMd5 = None) -> dict:
    settings = load_settings()
    check_mlflow(settings)
    version = resolve_data_version(data_file, data_md5, settings)
    check_s3(settings, version)
    flow_run = str(runtime.flow_run.id or "")
    scoring = Scoring(data_file=data.relative_name(version.path), data_md5=version.md5, prefect_flow_run_id=flow_run)
    batch = validate(fetch_data(version, settings), settings.max_nan_fraction)[data.FEATURES]
    scoring.champion_version = champion_version(settings)
    scoring.predictions = len(serve_and_score(settings, batch))
    mlflow.set_experiment(settings.experiment_name)
    found = drift.check_drift(settings, scoring.champion_version, batch, lineage_tags(version, git_commit(), flow_run))
    scoring.drift = found
    if found.detected:  # the next training: p1-retrain's trigger on this event
        scoring.event = str(events.emit(events.DRIFT_DETECTED, scoring.data_file, version.md5, drift_share=found.share))
    publish_scoring(settings, scoring)
    return asdict(scoring)


# ## Train once per data version and parameters
def train_or_reuse(settings, params, version, outcome, lineage, key, experiment):
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
        _, x_test, _, _ = preprocess(frame, params["test_size"], params["random_state"])
    else:
        # Everything from here to the registry lives in one MLflow run: an
        # exception anywhere inside marks it FAILED, and registration is its
        # last act, so a failed run never registers a model.
        with mlflow.start_run(run_name=f"train-{version.md5[:8]}", tags={**lineage, "p1.training_key": key}) as run:
            outcome.mlflow_run_id = run.info.run_id
            try:
                frame = validate(fetch_data(version, settings), settings.max_nan_fraction)
                mlflow.log_metrics({"data_rows": len(frame), "data_max_nan_fraction": float(frame.isna().mean().max())})
                x_train, x_test, y_train, y_test = preprocess(frame, params["test_size"], params["random_state"])
                drift.log_reference(x_train)
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


def training_key(data_md5: str, params: dict[str, Any]) -> str:
    """Same data version + same parameters = same key = no second model.

    The payload is frozen: a new payload would retrain what MLflow already
    holds. Keys were first written with "no depth limit" as null, so it stays null."""
    frozen = {**params, "max_depth": params["max_depth"] or None}
    payload = json.dumps({"data_md5": data_md5, "params": frozen, "model": "rf-v1"}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def find_finished_run(experiment_id: str, key: str):
    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`p1.training_key` = '{key}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    # A run from before models were hashed (no digest to check it by) is trained again.
    return runs[0] if runs and integrity.DIGEST_TAG in runs[0].data.tags else None


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
    trained = False
    try:
        # A failed lease renewal (the server away for longer than the renewal's
        # retries) logs a warning instead of cancelling the training half-way:
        # the MLflow run's own state, not the lease, decides what is reused.
        with concurrency(name, occupy=1, timeout_seconds=timeout, strict=True, raise_on_lease_renewal_failure=False):
            yield
            trained = True
    except httpx.HTTPError as exc:
        if not trained:
            raise
        # The training is done and recorded; only the release failed (the
        # Prefect server away at that moment): the lease expires by itself.
        get_run_logger().warning("training slot %s not released (%s): its lease expires by itself", name, exc)
    except TimeoutError as exc:
        raise P1Error(
            f"another run has held the training slot {name!r} for over {timeout:.0f} s",
            "wait for that run to finish (Prefect UI, Concurrency), or raise P1_SLOT_TIMEOUT",
        ) from exc


# ## Data version
@task
def resolve_data_version(data_file: str | None, data_md5: str | None, settings: P1Settings) -> data.DataVersion:
    version = data.resolve(data_file, data_md5, settings)
    get_run_logger().info("Data version (DVC md5) %s from %s", version.md5, version.pointer)
    return version


@task(retries=2, retry_delay_seconds=2)
def fetch_data(version: data.DataVersion, settings: P1Settings) -> Path:
    return data.pull(version, settings)


if __name__ == "__main__":
    from cli import main

    sys.exit(main(training_flow, scoring=scoring_flow))
