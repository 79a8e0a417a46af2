"""Pattern 2: Airflow moves the data, Kubeflow Pipelines trains.

Who owns what (the guide: "keep Airflow where it excels, scheduling and
orchestration"):
- Airflow owns the schedule, the data movement and the decision: the daily
  DAG run, extract -> transform -> load to S3, the trigger, the metrics in
  XCom, and the publish-or-fail branch.
- KFP owns the training run: validate -> train -> evaluate with typed
  artifacts (pipeline/pipeline.py), one run per logical date.
- S3 holds what passes between them: the dataset (by URI), the run record
  (metrics.json, model.joblib) and the published model.

    extract >> transform >> load >> submit_pipeline >> collect_metrics >> check_threshold
                                                           check_threshold >> [publish_model, reject_model]

The submit step is chosen by the environment when the file is parsed: a
subprocess of the KFP environment running kfp.local (no KFP host), or a
KubernetesPodOperator that submits with kfp.Client (P2_KFP_HOST set).

Parsing imports only the Airflow SDK, pydantic and this folder's settings:
boto3, the Kubernetes provider (local mode) and kfp (never) stay out of the
DAG processor.
"""

from __future__ import annotations

import functools
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

# ## Imports from the pattern folder
# Airflow puts only the DAGs folder on sys.path; the DAG's helpers live one
# level up, beside settings.py, so the folder stays one copyable unit.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import etl  # noqa: E402
import trigger  # noqa: E402
from airflow.sdk import Param, dag, get_current_context, task  # noqa: E402
from airflow.sdk.exceptions import AirflowFailException  # noqa: E402

from errors import P2Error  # noqa: E402
from settings import P2Settings  # noqa: E402

DAG_ID = "p2_airflow_kfp"
SETTINGS = P2Settings()


def fail_fast(func):
    """A user-fixable error (P2Error: what is wrong and the fix) fails the task
    at once, with that message: no retry can fix it."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except P2Error as exc:
            raise AirflowFailException(str(exc)) from exc

    return wrapper


# ## The DAG
@dag(
    dag_id=DAG_ID,
    schedule=SETTINGS.schedule,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0, "execution_timeout": timedelta(minutes=5)},
    params={
        "n_estimators": Param(SETTINGS.n_estimators, type="integer", minimum=1),
        "max_depth": Param(SETTINGS.max_depth, type="integer", minimum=0, description="0: unlimited"),
        "min_accuracy": Param(SETTINGS.min_accuracy, type="number", minimum=0, maximum=1),
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
        """Load the dataset under a key derived from the logical date, and
        name the KFP run after the DAG and that date."""
        context = get_current_context()
        # Lineage: the data version and the code version, in this XCom and on the object.
        lineage = {"dataset_sha256": etl.data_sha256(clean["csv"]), "git_commit": etl.git_commit()}
        dataset_uri = etl.load(SETTINGS, clean["csv"], context["ds"], lineage | {"dag_run_id": context["run_id"]})
        name = trigger.run_name(DAG_ID, context["logical_date"])
        params = context["params"]
        request = {
            "run_name": name,
            "dataset_uri": dataset_uri,
            "export_uri": trigger.export_uri(SETTINGS, name),
            "params_json": json.dumps({"n_estimators": params["n_estimators"], "max_depth": params["max_depth"]}),
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
        return trigger.submit_local(request, SETTINGS)

    # ## Back in Airflow: metrics into XCom, then the decision
    @task
    @fail_fast
    def collect_metrics(result: dict) -> dict:
        trigger.check_result(result)
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
            "(param min_accuracy, P2_MIN_ACCURACY); nothing was published"
        )

    request = load(transform(extract()))
    if SETTINGS.mode == "cluster":
        pod = trigger.submit_pod(SETTINGS, task_id="submit_pipeline", upstream="load")
        request >> pod
        result = pod.output
    else:
        result = submit_local(request)
    metrics = collect_metrics(result)
    check_threshold(metrics) >> [publish_model(request, result, metrics), reject_model(metrics)]


DAG = p2_airflow_kfp()
