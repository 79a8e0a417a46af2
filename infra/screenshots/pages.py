"""The UI pages each pattern README shows, and what each page must show.

One catalogue for both users of it: `make screenshots` (shoot.py) saves each page
as patterns/<pattern>/docs/img/<name>.png, and the browser tests (marker
`browser`) open the same pages on the test stack and check that they show the
pattern's record. A page's `path` and `expect` are templates over the pattern's
records: the fields of its `Result:` line, plus the ids only the services know
(an artifact's id, an experiment's id, an asset's id), looked up by `records()`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from browser import BrowserError, Logins


@dataclass(frozen=True)
class Page:
    pattern: str  # the folder under patterns/
    name: str  # docs/img/<name>.png
    ui: str  # prefect | mlflow | airflow
    path: str  # after the UI's base URL; {field} from the records
    expect: tuple[str, ...]  # texts the page must show once loaded; {field} from the records
    caption: str  # the README's alt text

    def url_path(self, records: dict[str, str]) -> str:
        return self.path.format(**records)

    def texts(self, records: dict[str, str]) -> list[str]:
        return [text.format(**records) for text in self.expect]

    @property
    def image(self) -> str:
        return f"patterns/{self.pattern}/docs/img/{self.name}.png"


P1, P2, P3, P4 = "p1_prefect_mlflow", "p2_airflow_kfp", "p3_metaflow_prefect", "p4_github_actions_prefect"

PAGES = (
    Page(
        P1,
        "prefect-flow-run",
        "prefect",
        "/runs/flow-run/{prefect_flow_run}",
        ("{flow_run_name}", "Completed"),
        "Prefect: pattern 1's flow run, its tasks on the timeline",
    ),
    Page(
        P1,
        "prefect-summary",
        "prefect",
        "/artifacts/artifact/{summary_artifact}",
        ("Pattern 1 training summary", "roc_auc"),
        "Prefect: the run's summary artifact (metrics, decision, lineage)",
    ),
    Page(
        P1,
        "mlflow-run",
        "mlflow",
        "/#/experiments/{experiment_id}/runs/{mlflow_run}",
        ("{mlflow_run_name}", "roc_auc"),
        "MLflow: the training run with its metrics and parameters",
    ),
    Page(
        P1,
        "mlflow-confusion-matrix",
        "mlflow",
        "/#/experiments/{experiment_id}/runs/{mlflow_run}/artifacts/plots/confusion_matrix.png",
        ("confusion_matrix.png",),
        "MLflow: the run's confusion matrix",
    ),
    Page(
        P1,
        "mlflow-model",
        "mlflow",
        "/#/models/{model}",
        ("{model}", "@ champion"),
        "MLflow: the registered model, its versions and the champion alias",
    ),
    Page(
        P2,
        "airflow-train-run",
        "airflow",
        "/dags/p2_train/runs/{train_run}",
        ("p2_train", "{train_run}", "success"),
        "Airflow: the training DAG run the asset event started",
    ),
    Page(
        P2,
        "airflow-asset",
        "airflow",
        "/assets/{asset_id}",
        ("p2_wine", "Triggered Dag Run", "{event_time}"),
        "Airflow: the asset p2_wine and the event the ETL run wrote",
    ),
    Page(
        P3,
        "prefect-fan-out",
        "prefect",
        "/artifacts/artifact/{fan_out_artifact}",
        ("{best}", "cv_accuracy"),
        "Prefect: the fan-out table, one Metaflow run per row",
    ),
    Page(
        P3,
        "prefect-work-pool",
        "prefect",
        "/work-pools/work-pool/{work_pool}?tab=Workers",
        ("p3-worker-1", "p3-worker-2"),
        "Prefect: the work pool and its two workers",
    ),
    Page(
        P4,
        "prefect-deployment",
        "prefect",
        "/deployments/deployment/{deployment_id}",
        ("p4-retrain", "{release}"),
        "Prefect: the deployment, its version the commit SHA",
    ),
    Page(
        P4,
        "prefect-model-card",
        "prefect",
        "/artifacts/artifact/{model_artifact}",
        ("Model published", "{release}"),
        "Prefect: the model card artifact of the retraining run",
    ),
)

PATTERNS = (P1, P2, P3, P4)


def pages_of(pattern: str) -> list[Page]:
    return [page for page in PAGES if page.pattern == pattern]


# ---- the records: a Result line's fields, and the ids the services hold ------------------


class Services:
    """The stack's REST APIs, signed in as its clients are."""

    def __init__(self, logins: Logins):
        self.logins = logins
        auth = base64.b64encode(logins.prefect_auth.encode()).decode() if logins.prefect_auth else ""
        self._prefect_headers = {"Authorization": f"Basic {auth}"} if auth else {}
        self._airflow_headers: dict[str, str] = {}

    def _call(self, what: str, method: str, url: str, **kwargs) -> Any:
        try:
            response = httpx.request(method, url, timeout=30, **kwargs)
        except httpx.HTTPError as exc:
            raise BrowserError(f"{what} at {url} does not answer ({exc})", "start the stack: `make up`") from exc
        if response.status_code >= 400:
            raise BrowserError(f"{what} answered {response.status_code} to {url}", "check the stack: `make status`")
        return response.json()

    def prefect(self, path: str, body: dict | None = None) -> Any:
        method = "POST" if body is not None else "GET"
        if method == "POST" and "Prefect-Csrf-Token" not in self._prefect_headers:
            self._csrf()
        return self._call(
            "Prefect", method, f"{self.logins.prefect_api}/{path}", json=body, headers=self._prefect_headers
        )

    def _csrf(self) -> None:
        """Prefect's server refuses a write (its filters are POSTs) without a CSRF token when
        it checks them (PREFECT_SERVER_CSRF_PROTECTION_ENABLED); 422: it does not."""
        client = "make-screenshots"
        url = f"{self.logins.prefect_api}/csrf-token"
        try:
            response = httpx.get(url, params={"client": client}, headers=self._prefect_headers, timeout=30)
        except httpx.HTTPError as exc:
            raise BrowserError(f"Prefect at {url} does not answer ({exc})", "start the stack: `make up`") from exc
        if response.status_code == 200:
            self._prefect_headers |= {"Prefect-Csrf-Token": response.json()["token"], "Prefect-Csrf-Client": client}

    def mlflow(self, endpoint: str, **params) -> Any:
        auth = (self.logins.mlflow_user, self.logins.mlflow_password) if self.logins.mlflow_user else None
        return self._call("MLflow", "GET", f"{self.logins.mlflow}/api/2.0/mlflow/{endpoint}", params=params, auth=auth)

    def airflow(self, path: str, **params) -> Any:
        if not self._airflow_headers:
            self._airflow_headers = {"Authorization": f"Bearer {self.logins.airflow_token()}"}
        return self._call(
            "Airflow", "GET", f"{self.logins.airflow}/api/v2/{path}", params=params, headers=self._airflow_headers
        )

    # Prefect lookups
    def artifact(self, key: str, flow_run: str) -> str:
        body = {"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [flow_run]}}, "limit": 1}
        found = self.prefect("artifacts/filter", body)
        if not found:
            raise BrowserError(f"flow run {flow_run} has no artifact {key!r}", "run the pattern again")
        return found[0]["id"]

    def latest_flow_run(self, body: dict, what: str, fix: str) -> dict:
        body = {**body, "sort": "START_TIME_DESC", "limit": 1}
        body.setdefault("flow_runs", {})["state"] = {"type": {"any_": ["COMPLETED"]}}
        found = self.prefect("flow_runs/filter", body)
        if not found:
            raise BrowserError(f"no completed {what} on the Prefect server at {self.logins.prefect_api}", fix)
        return found[0]


def records(pattern: str, services: Services, result: dict[str, str] | None = None) -> dict[str, str]:
    """The fields the pattern's pages need. `result`: the fields of the run's Result line
    (the browser tests pass their run's); without it, the latest run on the stack."""
    return {P1: _p1, P2: _p2, P3: _p3, P4: _p4}[pattern](services, dict(result or {}))


def _p1(s: Services, r: dict[str, str]) -> dict[str, str]:
    r.setdefault("model", "p1-breast-cancer")
    if "mlflow_run" not in r:  # the champion's run
        alias = s.mlflow("registered-models/alias", name=r["model"], alias="champion")["model_version"]
        r["mlflow_run"] = alias["run_id"]
    run = s.mlflow("runs/get", run_id=r["mlflow_run"])["run"]
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    r.setdefault("prefect_flow_run", tags.get("prefect_flow_run_id", ""))
    if not r["prefect_flow_run"]:
        raise BrowserError(f"MLflow run {r['mlflow_run']} has no tag prefect_flow_run_id", "run `make pattern-1`")
    r["experiment_id"] = run["info"]["experiment_id"]
    r["mlflow_run_name"] = run["info"]["run_name"]
    r["flow_run_name"] = s.prefect(f"flow_runs/{r['prefect_flow_run']}")["name"]
    r["summary_artifact"] = s.artifact("p1-training-summary", r["prefect_flow_run"])
    return r


def _p2(s: Services, r: dict[str, str]) -> dict[str, str]:
    if "train_run" not in r:
        runs = s.airflow("dags/p2_train/dagRuns", order_by="-run_after", limit=1, state="success")["dag_runs"]
        if not runs:
            where = f"on the Airflow at {s.logins.airflow}"
            raise BrowserError(f"no successful p2_train DAG run {where}", "run `make pattern-2`")
        r["train_run"] = runs[0]["dag_run_id"]
    events = s.airflow(f"dags/p2_train/dagRuns/{quote(r['train_run'], safe='')}/upstreamAssetEvents")["asset_events"]
    if not events:
        raise BrowserError(f"training run {r['train_run']} has no asset event", "run `make pattern-2`")
    r.setdefault("etl_run", events[-1]["source_run_id"])
    # The UI lists the event by its time (UTC, to the second), not by the ETL run's id.
    r["event_time"] = events[-1]["timestamp"].replace("T", " ")[:19]
    assets = s.airflow("assets", name_pattern="p2_wine")["assets"]
    r["asset_id"] = str(assets[0]["id"])
    return r


def _p3(s: Services, r: dict[str, str]) -> dict[str, str]:
    if "prefect_flow_run" not in r:
        body = {"flows": {"name": {"any_": ["p3-fan-out"]}}}
        r["prefect_flow_run"] = s.latest_flow_run(body, "p3-fan-out run", "run `make pattern-3`")["id"]
    r["fan_out_artifact"] = s.artifact("p3-fan-out", r["prefect_flow_run"])
    if "best" not in r:
        table = s.prefect(f"artifacts/{r['fan_out_artifact']}")["data"]
        rows = json.loads(table) if isinstance(table, str) else table
        r["best"] = max(rows, key=lambda row: row["cv_accuracy"])["metaflow_pathspec"]
    # The pool the fan-out's runs went to (the fan-out itself runs in the caller's process).
    body = {"flow_runs": {"parent_flow_run_id": {"any_": [r["prefect_flow_run"]]}}, "limit": 1}
    children = s.prefect("flow_runs/filter", body)
    if not children or not children[0].get("work_pool_name"):
        raise BrowserError(f"fan-out {r['prefect_flow_run']} has no runs in a work pool", "run `make pattern-3`")
    r["work_pool"] = children[0]["work_pool_name"]
    return r


def _p4(s: Services, r: dict[str, str]) -> dict[str, str]:
    deployment = s.prefect("deployments/name/p4-retrain/p4-retrain")
    r["deployment_id"] = deployment["id"]
    r.setdefault("release", deployment["version"])
    if "retrain_run" not in r:
        body = {"deployments": {"id": {"any_": [deployment["id"]]}}}
        r["retrain_run"] = s.latest_flow_run(body, "p4-retrain run", "run `make pattern-4`")["id"]
    r["model_artifact"] = s.artifact("p4-model", r["retrain_run"])
    return r
