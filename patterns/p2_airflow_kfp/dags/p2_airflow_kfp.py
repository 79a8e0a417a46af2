"""Pattern 2: Airflow moves the data and decides, Kubeflow Pipelines trains.

Who owns what (the guide: "keep Airflow where it excels, scheduling and
orchestration"):
- Airflow, this DAG, owns the schedule, the data movement and the decision:
  extract -> transform -> load to S3 (etl.py), the trigger, the metrics in
  XCom, and the publish-or-reject branch.
- KFP owns the training run: validate -> train -> evaluate with typed
  artifacts (pipeline/pipeline.py), one run per logical date, submitted and
  waited for by pipeline/submit.py in the KFP environment (handoff.py).
- S3 holds what passes between them: the dataset (by URI), the run record
  (metrics.json, model.joblib, run.json) and the published model.

    extract >> transform >> load >> submit_pipeline >> collect_metrics >> check_threshold >> publish_model
                                                                                          >> reject_model

The submit task is chosen when the file is parsed: a subprocess running
kfp.local (no KFP host), or a KubernetesPodOperator that submits with
kfp.Client (P2_KFP_HOST set). Parsing imports only the Airflow SDK, pydantic
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
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from errors import fail_fast
from settings import P2Settings

DAG_ID = "p2_airflow_kfp"
SETTINGS = P2Settings()
TRAINING_PARAMS = ("n_estimators", "max_depth")  # the DAG params passed on to the KFP pipeline


@dag(
    dag_id=DAG_ID,
    schedule=SETTINGS.schedule,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0, "execution_timeout": timedelta(minutes=5)},
    # Each run's parameters, declared here once: a trigger's conf overrides them, within these ranges.
    params={
        "n_estimators": Param(200, type="integer", minimum=1, description="trees in the random forest"),
        "max_depth": Param(6, type="integer", minimum=0, description="0: unlimited"),
        "min_accuracy": Param(0.9, type="number", minimum=0, maximum=1, description="publish at this accuracy"),
    },
    tags=["p2", "kfp"],
    doc_md=__doc__,
)
def p2_airflow_kfp():
    # ## ETL: Airflow's part
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

    @task
    @fail_fast
    def load(clean: dict) -> dict:
        """Load the dataset under a key derived from the logical date; name the
        KFP run after the DAG and that date. Returns the submit request."""
        context = get_current_context()
        # Lineage: the data version and the code version, in this XCom and on the object.
        lineage = {"dataset_sha256": etl.data_sha256(clean["csv"]), "git_commit": etl.git_commit()}
        dataset_uri = etl.load(SETTINGS, clean["csv"], context["ds"], lineage | {"dag_run_id": context["run_id"]})
        name = handoff.run_name(DAG_ID, context["logical_date"])
        request = {
            "run_name": name,
            "dataset_uri": dataset_uri,
            "export_uri": handoff.export_uri(SETTINGS, name),
            "params_json": json.dumps({k: context["params"][k] for k in TRAINING_PARAMS}),
            "rows": clean["rows"],
            **lineage,
            # The KFP run record keeps this: a KFP run leads back to its DAG run, data and commit.
            "origin_json": json.dumps({"dag_id": DAG_ID, "dag_run_id": context["run_id"], **lineage}),
        }
        print(f"Loaded {clean['rows']} rows to {dataset_uri}; KFP run name {name}")
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
    def check_threshold(metrics: dict) -> str:
        threshold = get_current_context()["params"]["min_accuracy"]
        passed = metrics["accuracy"] >= threshold
        print(f"accuracy {metrics['accuracy']:.4f} {'>=' if passed else '<'} threshold {threshold}")
        return "publish_model" if passed else "reject_model"

    @task
    @fail_fast
    def publish_model(request: dict, result: dict, metrics: dict) -> dict:
        context = get_current_context()
        decision = {
            "decision": "published",
            "run_name": result["run_name"],
            "kfp_run_id": result["run_id"],
            "metrics": metrics,
            "min_accuracy": context["params"]["min_accuracy"],
            "dag_run_id": context["run_id"],
            "dataset_uri": request["dataset_uri"],
            "dataset_sha256": request["dataset_sha256"],
            "git_commit": request["git_commit"],
        }
        uri = etl.publish(SETTINGS, result["export_uri"], context["ds"], decision)
        print(f"Published the model of {result['run_name']} to {uri}/")
        return {"published_uri": uri, **decision}

    @task
    def reject_model(metrics: dict) -> None:
        threshold = get_current_context()["params"]["min_accuracy"]
        raise AirflowFailException(
            f"model rejected: accuracy {metrics['accuracy']:.4f} is below the threshold {threshold} "
            "(param min_accuracy); nothing was published"
        )

    request = load(transform(extract()))
    if SETTINGS.mode == "cluster":
        pod = handoff.submit_pod(SETTINGS, task_id="submit_pipeline", upstream="load")
        request >> pod
        result = pod.output
    else:
        result = submit_local(request)
    metrics = collect_metrics(result)
    check_threshold(metrics) >> [publish_model(request, result, metrics), reject_model(metrics)]


DAG = p2_airflow_kfp()
