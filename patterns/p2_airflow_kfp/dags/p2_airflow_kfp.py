"""Pattern 2: Airflow moves the data and decides, Kubeflow Pipelines trains.

Who owns what (the guide: "keep Airflow where it excels, scheduling and
orchestration"):
- Airflow owns the schedules, the data movement, the handoff and the decision.
  Two DAGs meet at one Asset, WINE (the dataset family in S3):
  - p2_etl, daily: extract -> transform -> load to S3 (etl.py). Its load task
    writes an asset event naming the exact dataset (URI, sha256, logical date).
  - p2_train, scheduled on WINE, not on a clock: the scheduler starts it from
    that asset event. It submits the KFP pipeline for the dataset the event
    names, takes the metrics into XCom and publishes or rejects the model.
- KFP owns the training run: validate -> train -> evaluate with typed artifacts
  (pipeline/pipeline.py), one run per dataset content and parameters, submitted
  and waited for by pipeline/submit.py in the KFP environment (handoff.py).
- S3 holds what passes between them: the dataset (by URI), the run record
  (metrics.json, model.joblib, run.json) and the published model.

    p2_etl:    extract >> transform >> load ──(asset event: WINE)──┐
    p2_train:  plan << ────────────────────────────────────────────┘
               plan >> submit_pipeline >> collect_metrics >> check_threshold >> publish_model | reject_model

The submit task is chosen when the file is parsed: a subprocess running kfp.local
(no KFP host) or submitting to Vertex AI Pipelines (P2_KFP_MODE=vertex), or a
KubernetesPodOperator that submits with kfp.Client (P2_KFP_HOST set). Parsing imports only the Airflow SDK, pydantic
and this folder's modules; boto3, kfp and the Kubernetes provider stay out.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

# Airflow puts only the DAGs folder on sys.path; the DAG's modules live one
# level up, beside settings.py, so the pattern folder stays one copyable unit.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import etl
import handoff
from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from errors import fail_fast
from settings import P2Settings

ETL_DAG_ID, TRAIN_DAG_ID = "p2_etl", "p2_train"
SETTINGS = P2Settings()
# The handoff: one Asset for the dataset family; each event's extra names one dataset.
WINE = Asset(name="p2_wine", uri=f"s3://{SETTINGS.bucket}/datasets/wine", group="p2")
# Each run's training parameters and publish gate, declared here once. A trigger of
# p2_etl may set them (validated there); they ride with the asset event to p2_train.
PARAMS = {
    "n_estimators": Param(200, type="integer", minimum=1, description="trees in the random forest"),
    "max_depth": Param(6, type="integer", minimum=0, description="0: unlimited"),
    "min_accuracy": Param(0.9, type="number", minimum=0, maximum=1, description="publish at this accuracy"),
}
TRAINING_PARAMS = ("n_estimators", "max_depth")  # the params passed on to the KFP pipeline
DEFAULTS = {"start_date": datetime(2026, 1, 1), "catchup": False, "max_active_runs": 1, "params": PARAMS}
TASK_DEFAULTS = {"retries": 0, "execution_timeout": timedelta(minutes=5)}


# ## Airflow's ETL: daily, and its output is an asset event
@dag(
    dag_id=ETL_DAG_ID,
    schedule=SETTINGS.schedule or None,
    default_args=TASK_DEFAULTS,
    tags=["p2"],
    doc_md=__doc__,
    **DEFAULTS,
)
def p2_etl():
    @task
    @fail_fast
    def extract() -> str:
        return etl.extract(SETTINGS.source_file)

    @task(multiple_outputs=False)  # the CSV once in XCom, not once more as its own key
    @fail_fast
    def transform(raw: str) -> dict:
        text, facts = etl.transform(raw, source=str(SETTINGS.source_file))
        print(f"Transformed: {facts}")
        return {"csv": text, **facts}

    @task(outlets=[WINE])
    @fail_fast
    def load(clean: dict) -> dict:
        """Load the dataset under a key derived from the logical date and announce
        it: the asset event's extra is what p2_train reads. A failure before this
        point writes no event, so nothing trains."""
        context = get_current_context()
        lineage = {"dataset_sha256": etl.data_sha256(clean["csv"]), "git_commit": etl.git_commit()}
        uri = etl.load(SETTINGS, clean["csv"], context["ds"], lineage | {"dag_run_id": context["run_id"]})
        dataset = {
            "dataset_uri": uri,
            "logical_date": context["ds"],
            "rows": clean["rows"],
            **lineage,
            "train_params": {k: context["params"][k] for k in PARAMS},
        }
        context["outlet_events"][WINE].extra = dataset
        print(f"Loaded {clean['rows']} rows to {uri}; asset event on {WINE.uri}: {json.dumps(dataset)}")
        return dataset

    load(transform(extract()))


# ## Airflow hands over to KFP: started by the asset event, not by a clock
@dag(dag_id=TRAIN_DAG_ID, schedule=[WINE], default_args=TASK_DEFAULTS, tags=["p2", "kfp"], doc_md=__doc__, **DEFAULTS)
def p2_train():
    @task(inlets=[WINE])
    @fail_fast
    def plan() -> dict:
        """Which dataset to train on, and how: the triggering asset event's (the
        newest, if several queued up), or for a manual run the newest event of WINE
        with this run's params. Returns the submit request."""
        context = get_current_context()
        event, params = handoff.dataset_event(context, WINE, TRAIN_DAG_ID)
        name = handoff.run_name(event.extra["dataset_sha256"], {k: params[k] for k in TRAINING_PARAMS})
        origin = {"etl_dag_id": event.source_dag_id, "etl_dag_run_id": event.source_run_id}
        request = {
            "run_name": name,
            "dataset_uri": event.extra["dataset_uri"],
            "logical_date": event.extra["logical_date"],
            "export_uri": handoff.export_uri(SETTINGS, name),
            "params_json": json.dumps({k: params[k] for k in TRAINING_PARAMS}),
            "min_accuracy": params["min_accuracy"],
            "dataset_sha256": event.extra["dataset_sha256"],
            "git_commit": event.extra["git_commit"],
            "asset_event": {"asset": WINE.uri, "timestamp": event.timestamp.isoformat(), **origin},
            # The KFP run record keeps this: a KFP run leads back to both DAG runs, data and commit.
            "origin_json": json.dumps(
                {"dag_id": TRAIN_DAG_ID, "dag_run_id": context["run_id"], **origin}
                | {"dataset_sha256": event.extra["dataset_sha256"], "git_commit": event.extra["git_commit"]}
            ),
        }
        print(f"Training on {request['dataset_uri']} (event of {event.source_run_id}); KFP run name {name}")
        return request

    # ## The trigger: a local subprocess or a cluster pod, the same XCom either way
    @task(task_id="submit_pipeline", execution_timeout=timedelta(seconds=SETTINGS.pipeline_timeout + 60))
    @fail_fast
    def submit_local(request: dict) -> dict:
        return handoff.submit_local(request, SETTINGS)

    # ## Back in Airflow: metrics into XCom, then the decision
    @task
    @fail_fast
    def collect_metrics(result: dict) -> dict:
        handoff.check_result(result)
        metrics = etl.read_metrics(SETTINGS, result["export_uri"])
        print(f"KFP run {result['run_name']} ({result['run_id']}, reused={result['reused']}): {metrics}")
        return metrics

    @task.branch
    def check_threshold(request: dict, metrics: dict) -> str:
        threshold = request["min_accuracy"]
        passed = metrics["accuracy"] >= threshold
        print(f"accuracy {metrics['accuracy']:.4f} {'>=' if passed else '<'} threshold {threshold}")
        return "publish_model" if passed else "reject_model"

    @task
    @fail_fast
    def publish_model(request: dict, result: dict, metrics: dict) -> dict:
        decision = {
            "decision": "published",
            "run_name": result["run_name"],
            "kfp_run_id": result["run_id"],
            "metrics": metrics,
            "min_accuracy": request["min_accuracy"],
            "dag_run_id": get_current_context()["run_id"],
            "asset_event": request["asset_event"],
            "dataset_uri": request["dataset_uri"],
            "dataset_sha256": request["dataset_sha256"],
            "git_commit": request["git_commit"],
        }
        uri = etl.publish(SETTINGS, result["export_uri"], request["logical_date"], decision)
        print(f"Published the model of {result['run_name']} to {uri}/")
        return {"published_uri": uri, **decision}

    @task
    def reject_model(request: dict, metrics: dict) -> None:
        raise AirflowFailException(
            f"model rejected: accuracy {metrics['accuracy']:.4f} is below the threshold {request['min_accuracy']} "
            "(param min_accuracy); nothing was published"
        )

    request = plan()
    if SETTINGS.mode == "cluster":
        pod = handoff.submit_pod(SETTINGS, task_id="submit_pipeline", upstream="plan")
        request >> pod
        result = pod.output
    else:
        result = submit_local(request)
    metrics = collect_metrics(result)
    check_threshold(request, metrics) >> [publish_model(request, result, metrics), reject_model(request, metrics)]


ETL_DAG = p2_etl()
TRAIN_DAG = p2_train()
