"""Follow a model back to its commit: git commit -> data version -> orchestrator
run -> tracker run -> model version, from any one of those ids.

    python infra/lineage/lineage.py ID [--kind KIND]      (make lineage ID=...)

ID is any of:
    models:/NAME/VERSION, models:/NAME@ALIAS, NAME/VERSION     an MLflow model version (pattern 1)
    32 hex digits                                                an MLflow run id (pattern 1)
    a UUID                                                       a Prefect flow run (patterns 1, 3, 4)
    DAG_ID/RUN_ID, e.g. p2_train/asset_triggered__2026-...       an Airflow DAG run (pattern 2's training run)
    local-<12 hex>                                               a KFP run id (pattern 2)
    P3TrainFlow/<run id>                                         a Metaflow run (pattern 3)
    a 40-hex commit SHA, <sha>-dirty.<hash> or src.<hash>        a pattern-4 release

Each pattern records the chain in its own tools; this script only reads them,
over the services' APIs, with the same environment variables the patterns use:

  p1: git = MLflow tag git_commit; data = DVC md5 (tag dvc_data_md5); orchestrator = Prefect flow run
      (tag prefect_flow_run_id); tracker = the MLflow run; model = the MLflow model version.
  p2: git and data (sha256 of the dataset in S3) = the training run's plan XCom, copied from the asset event
      the ETL run's load task wrote; orchestrator = the training DAG run, and through its asset event the ETL
      DAG run; tracker = the KFP run (run.json in S3); model = the published model.joblib in S3.
  p3: git = Metaflow tag git_commit; data = Metaflow artifact data_sha256; orchestrator = Prefect flow run
      (tag prefect_flow_run_id); tracker = the Metaflow run; model = its Metaflow artifact `model`.
  p4: git, data sha256 and Prefect flow run = the model card in S3; tracker = that card (pattern 4 has no
      experiment tracker); model = models/<release>/<flow run>/model.joblib.

A link the records do not hold is printed as `unknown (why)`, never guessed.
The last line is greppable:
    Lineage: pattern=pN git_commit=... data_version=... orchestrator_run=... tracker_run=... model_version=...
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

REPO = Path(__file__).resolve().parents[2]
P2_DIR = REPO / "patterns" / "p2_airflow_kfp"
P3_DIR = REPO / "patterns" / "p3_metaflow_prefect"
METAFLOW_READER = Path(__file__).with_name("metaflow_reader.py")
UV = os.environ.get("UV", "uv")

KINDS = ["model-version", "mlflow-run", "prefect-run", "airflow-run", "kfp-run", "metaflow-run", "release"]
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
RELEASE = re.compile(r"^(?:[0-9a-f]{40}(?:-dirty\.[0-9a-f]{8})?|src\.[0-9a-f]{12})$")
KFP_LOCAL = re.compile(r"^local-[0-9a-f]{12}$")
METAFLOW = re.compile(r"^[A-Z]\w*Flow/\d+$")
AIRFLOW_RUN = re.compile(r"^(?:manual|scheduled|backfill|asset_triggered|dataset_triggered)__")
ROLES = ["git commit", "data version", "orchestrator run", "tracker run", "model version"]
FIELDS = ["git_commit", "data_version", "orchestrator_run", "tracker_run", "model_version"]
NO_GIT = "none (not a git checkout)"


class LineageError(RuntimeError):
    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem, self.fix = problem, fix

    def render(self) -> str:
        return f"error: {self.problem}\n  fix: {self.fix}"


def env(*names: str, default: str = "") -> str:
    """The first of `names` that is set (the pattern's own P<N>_ name, then the shared one)."""
    return next((os.environ[n] for n in names if os.environ.get(n)), default)


# ## The chain
@dataclass
class Link:
    tool: str
    value: str  # an id, or "unknown (why)" / "none (why)"
    where: str = ""  # a UI URL, an S3 URI or a command


@dataclass
class Chain:
    pattern: str
    links: dict[str, Link] = field(default_factory=dict)  # keyed by FIELDS
    notes: list[str] = field(default_factory=list)

    def render(self, given: str, kind: str) -> str:
        lines = [f"Lineage of {given} ({kind}), pattern {self.pattern}:"]
        for name, role in zip(FIELDS, ROLES, strict=True):
            link = self.links.get(name) or Link("-", "unknown (not recorded)")
            lines.append(
                f"  {role:<17} {link.tool:<9} {link.value}" + (f"\n{'':<30}{link.where}" if link.where else "")
            )
        lines += [f"  note: {n}" for n in self.notes]
        values = {n: _token(self.links.get(n)) for n in FIELDS}
        lines.append(f"Lineage: pattern={self.pattern} " + " ".join(f"{k}={v}" for k, v in values.items()))
        return "\n".join(lines)


def _token(link: Link | None) -> str:
    """A link's value for the greppable line: no spaces ('unknown (why)' -> 'unknown')."""
    return (link.value if link else "unknown").split(" ", 1)[0] or "unknown"


def unknown(why: str) -> str:
    return f"unknown ({why})"


def git_link(commit: str | None) -> Link:
    if not commit:
        return Link("git", unknown("the run recorded no commit"))
    if commit.startswith("none") or commit == "unknown":
        return Link("git", NO_GIT if commit.startswith("none") else unknown("git was not available to the run"))
    sha = commit.split("-", 1)[0]
    dirty = " (with uncommitted changes: the files that ran differ from the commit)" if "-dirty" in commit else ""
    return Link("git", commit, f"git show {sha}{dirty}")


# ## Service clients (the patterns' variables)
def http(method: str, url: str, what: str, variable: str, secret: str, **kwargs) -> httpx.Response:
    """One HTTP call; an unreachable service or refused credentials are an error naming
    the variable. The Prefect server answers 503 when its SQLite is busy and means "retry"."""
    for attempt in range(6):
        try:
            response = httpx.request(method, url, timeout=30, **kwargs)
        except httpx.HTTPError as exc:
            raise LineageError(
                f"{what} at {url} is unreachable ({type(exc).__name__})",
                f"start the stack (`make up`), or set {variable} to the server the pattern used",
            ) from None
        if response.status_code == 401:
            raise LineageError(
                f"{what} at {url} refused the credentials (401)",
                f"set {secret} to the stack's (make exports them; `make -s env` prints them)",
            )
        if response.status_code != 503:
            return response
        time.sleep(0.5 * 2**attempt)
    return response


class MLflow:
    def __init__(self) -> None:
        self.url = env("P1_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI", default="http://127.0.0.1:5000").rstrip("/")
        user, password = env("MLFLOW_TRACKING_USERNAME"), env("MLFLOW_TRACKING_PASSWORD")
        self.auth = (user, password) if user and password else None

    def call(self, method: str, endpoint: str, **kwargs) -> httpx.Response:
        url = f"{self.url}/api/2.0/mlflow/{endpoint}"
        secret = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        return http(method, url, "the MLflow tracking server", "MLFLOW_TRACKING_URI", secret, auth=self.auth, **kwargs)

    def get(self, endpoint: str, **params) -> dict | None:
        response = self.call("GET", endpoint, params=params)
        if response.status_code in (400, 404) and ("DOES_NOT_EXIST" in response.text or "not found" in response.text):
            return None
        response.raise_for_status()
        return response.json()

    def post(self, endpoint: str, body: dict) -> dict:
        response = self.call("POST", endpoint, json=body)
        response.raise_for_status()
        return response.json()

    def experiment_ids(self) -> list[str]:
        found = self.post("experiments/search", {"max_results": 1000}).get("experiments", [])
        return [e["experiment_id"] for e in found]

    def run_url(self, run: dict) -> str:
        return f"{self.url}/#/experiments/{run['info']['experiment_id']}/runs/{run['info']['run_id']}"

    def model_url(self, name: str, version: str) -> str:
        return f"{self.url}/#/models/{quote(name)}/versions/{version}"


class Prefect:
    def __init__(self) -> None:
        self.api = env("PREFECT_API_URL", default="http://127.0.0.1:4200/api").rstrip("/")
        self.ui = self.api.removesuffix("/api")
        auth = env("PREFECT_API_AUTH_STRING")
        self.headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}

    def call(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        if method != "GET" and "Prefect-Csrf-Token" not in self.headers:
            self._csrf_token()
        url = f"{self.api}/{path}"
        return http(
            method,
            url,
            "the Prefect API",
            "PREFECT_API_URL",
            "PREFECT_API_AUTH_STRING",
            json=body,
            headers=self.headers,
        )

    def _csrf_token(self) -> None:
        """A server with CSRF protection on wants a token with every write (its own
        client does the same); one without it answers 422 and wants none."""
        client = f"lineage-{uuid.uuid4()}"
        response = self.call("GET", f"csrf-token?client={client}")
        if response.status_code == 200:
            self.headers |= {"Prefect-Csrf-Token": response.json()["token"], "Prefect-Csrf-Client": client}

    def flow_run(self, flow_run_id: str) -> dict | None:
        response = self.call("GET", f"flow_runs/{flow_run_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        run = response.json()
        flow = self.call("GET", f"flows/{run['flow_id']}")
        flow.raise_for_status()
        return run | {"flow_name": flow.json()["name"]}

    def artifacts(self, flow_run_id: str, key: str) -> list[dict]:
        body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": [key]}}}
        response = self.call("POST", "artifacts/filter", body)
        response.raise_for_status()
        return response.json()

    def run_url(self, flow_run_id: str) -> str:
        return f"{self.ui}/runs/flow-run/{flow_run_id}"


def s3_client(prefix: str):
    endpoint = env(f"{prefix}_S3_ENDPOINT_URL", "S3_ENDPOINT_URL", default="http://127.0.0.1:8333")
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env(f"{prefix}_S3_ACCESS_KEY_ID", "S3_ACCESS_KEY_ID", default="patterns-local"),
        aws_secret_access_key=env(
            f"{prefix}_S3_SECRET_ACCESS_KEY", "S3_SECRET_ACCESS_KEY", default="patterns-local-secret"
        ),
        region_name="us-east-1",
        config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}),
    )


def s3_call(call, what: str):
    """One S3 call; None for a missing key, an error naming the variables otherwise."""
    try:
        return call()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            return None
        raise LineageError(
            f"S3 refused to {what} ({code})",
            "set S3_ENDPOINT_URL, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY to the stack the pattern used",
        ) from None
    except BotoCoreError as exc:
        raise LineageError(
            f"S3 is unreachable while trying to {what} ({type(exc).__name__})",
            "start the stack (`make up`), or set S3_ENDPOINT_URL",
        ) from None


def s3_json(client, bucket: str, key: str) -> dict | None:
    body = s3_call(lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read(), f"read s3://{bucket}/{key}")
    return None if body is None else json.loads(body)


def s3_keys(client, bucket: str, prefix: str) -> list[str]:
    def listing() -> list[str]:
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    return s3_call(listing, f"list s3://{bucket}/{prefix}") or []


# ## Pattern 1: Prefect + MLflow + DVC
def tags_of(entity: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in entity.get("tags", [])}


def p1_from_run(mlflow: MLflow, run: dict, flow_run_id: str | None = None) -> Chain:
    tags = tags_of(run["data"])
    prefect = Prefect()
    chain = Chain("p1" if "p1.training_key" in tags or "dvc_data_md5" in tags else "mlflow")
    chain.links["git_commit"] = git_link(tags.get("git_commit") or tags.get("mlflow.source.git.commit"))
    md5 = tags.get("dvc_data_md5")
    if md5:
        config = REPO / "patterns" / "p1_prefect_mlflow" / ".dvc" / "config"
        found = re.search(r"^\s*url\s*=\s*(\S+)", config.read_text(), re.MULTILINE) if config.exists() else None
        remote = found.group(1).rstrip("/") if found else "the DVC remote"  # the pattern's .dvc/config
        path = tags.get("dvc_data_path", "the data")
        pointer = (
            "a derived batch's pointer, made again by `data.py publish --batch`" if "batches/" in path else "in git"
        )
        where = f"{path}.dvc ({pointer}); bytes at {remote}/files/md5/{md5[:2]}/{md5[2:]}"
        chain.links["data_version"] = Link("DVC", md5, where)
    else:
        chain.links["data_version"] = Link("DVC", unknown("the run has no dvc_data_md5 tag"))
    recorded = tags.get("prefect_flow_run_id")
    if recorded:
        chain.links["orchestrator_run"] = Link("Prefect", recorded, prefect.run_url(recorded))
        if tags.get("p1.trigger_event"):
            chain.notes.append(
                f"flow run {recorded} was started by the Prefect event {tags['p1.trigger_event']} "
                "(a trigger of the deployment p1-retrain)"
            )
        if flow_run_id and flow_run_id != recorded:
            chain.notes.append(
                f"flow run {flow_run_id} reused this MLflow run (same data and parameters); "
                f"flow run {recorded} trained it"
            )
    else:
        chain.links["orchestrator_run"] = Link("Prefect", unknown("the run has no prefect_flow_run_id tag"))
    run_id = run["info"]["run_id"]
    chain.links["tracker_run"] = Link("MLflow", run_id, mlflow.run_url(run))
    versions = mlflow.get("model-versions/search", filter=f"run_id='{run_id}'") or {}
    versions = versions.get("model_versions", [])
    if versions:
        v = max(versions, key=lambda v: int(v["version"]))
        chain.links["model_version"] = Link(
            "MLflow", f"{v['name']}/{v['version']}", mlflow.model_url(v["name"], v["version"])
        )
        if len(versions) > 1:
            chain.notes.append(f"run {run_id} registered {len(versions)} versions; the latest is shown")
    else:
        why = tags.get("p1.decision", "")
        reason = f"this run registered no model version: {why}" if why else "this run registered no model version"
        chain.links["model_version"] = Link("MLflow", f"none ({reason})")
    return chain


def p1_model_version(mlflow: MLflow, given: str) -> Chain:
    text = given.removeprefix("models:/")
    if "@" in text:
        name, alias = text.rsplit("@", 1)
        found = mlflow.get("registered-models/alias", name=name, alias=alias)
        what = f"alias {alias!r} of registered model {name!r}"
    else:
        name, _, version = text.rpartition("/")
        found = mlflow.get("model-versions/get", name=name, version=version) if name and version.isdigit() else None
        what = f"version {version} of registered model {name!r}"
    if not found:
        raise LineageError(
            f"MLflow at {mlflow.url} has no {what}",
            f"list the versions in the MLflow UI ({mlflow.url}/#/models) or pass one as models:/NAME/VERSION",
        )
    version = found["model_version"]
    run = mlflow.get("runs/get", run_id=version["run_id"]) if version.get("run_id") else None
    if run is None:
        chain = Chain("p1")
        vtags = tags_of(version)
        chain.links["git_commit"] = git_link(vtags.get("git_commit"))
        chain.links["data_version"] = Link("DVC", vtags.get("dvc_data_md5") or unknown("no dvc_data_md5 tag"))
        chain.links["orchestrator_run"] = Link("Prefect", vtags.get("prefect_flow_run_id") or unknown("no tag"))
        chain.links["tracker_run"] = Link("MLflow", unknown("the version's run is gone from MLflow"))
    else:
        chain = p1_from_run(mlflow, run["run"])
    chain.links["model_version"] = Link(
        "MLflow", f"{version['name']}/{version['version']}", mlflow.model_url(version["name"], version["version"])
    )
    aliases = version.get("aliases") or []
    if aliases:
        chain.notes.append(f"aliases of this version: {', '.join(aliases)}")
    return chain


def p1_mlflow_run(mlflow: MLflow, run_id: str) -> Chain | None:
    found = mlflow.get("runs/get", run_id=run_id)
    return p1_from_run(mlflow, found["run"]) if found else None


def p1_prefect_run(mlflow: MLflow, flow_run: dict) -> Chain:
    flow_run_id = flow_run["id"]
    body = {
        "experiment_ids": mlflow.experiment_ids(),
        "filter": f"tags.prefect_flow_run_id = '{flow_run_id}'",
        "max_results": 10,
        "order_by": ["attributes.start_time DESC"],
    }
    runs = mlflow.post("runs/search", body).get("runs", []) if body["experiment_ids"] else []
    if runs:
        return p1_from_run(mlflow, runs[0])
    # A run that reused an earlier MLflow run (same data, same parameters) names it in its summary artifact.
    for artifact in Prefect().artifacts(flow_run_id, "p1-training-summary"):
        match = re.search(r"\| MLflow run \| \[([0-9a-f]{32})\]", artifact.get("data") or "")
        if match and (found := mlflow.get("runs/get", run_id=match.group(1))):
            return p1_from_run(mlflow, found["run"], flow_run_id)
    chain = Chain("p1")
    chain.links["orchestrator_run"] = Link("Prefect", flow_run_id, Prefect().run_url(flow_run_id))
    why = f"no MLflow run is tagged prefect_flow_run_id={flow_run_id} (the flow run failed before training?)"
    for name in ("git_commit", "data_version", "tracker_run", "model_version"):
        chain.links[name] = Link("-", unknown(why))
    return chain


# ## Pattern 2: Airflow + KFP (+ S3)
class Airflow:
    """Pattern 2's Airflow metadata: its SQLite database (local tier), or the REST
    API of a running Airflow when P2_AIRFLOW_API_URL is set (compose tier)."""

    def __init__(self) -> None:
        self.api = env("P2_AIRFLOW_API_URL").rstrip("/")
        state = Path(env("P2_STATE_DIR", default=str(P2_DIR / ".state")))
        self.db = state.resolve() / "airflow" / "airflow.db"
        self.token: str | None = None

    @property
    def where(self) -> str:
        return f"the Airflow API at {self.api}" if self.api else f"Airflow's database {self.db}"

    def run_url(self, dag_id: str, run_id: str) -> str:
        if self.api:
            return f"{self.api}/dags/{dag_id}/runs/{quote(run_id, safe='')}"
        return f"cd {P2_DIR} && uv run --locked python -m harness airflow tasks states-for-dag-run {dag_id} {run_id}"

    # REST ------------------------------------------------------------------------
    def _rest(self, path: str, **params) -> httpx.Response:
        if self.token is None:
            user = env("P2_AIRFLOW_USERNAME", default="admin")
            body = {"username": user, "password": env("P2_AIRFLOW_PASSWORD", default="admin")}
            response = http("POST", f"{self.api}/auth/token", "the Airflow API", "P2_AIRFLOW_API_URL", json=body)
            if response.status_code not in (200, 201):
                raise LineageError(
                    f"{self.api}/auth/token refused user {user!r} ({response.status_code})",
                    "set P2_AIRFLOW_USERNAME and P2_AIRFLOW_PASSWORD to the Airflow user the pattern used",
                )
            self.token = response.json()["access_token"]
        headers = {"Authorization": f"Bearer {self.token}"}
        return http(
            "GET", f"{self.api}/api/v2/{path}", "the Airflow API", "P2_AIRFLOW_API_URL", headers=headers, params=params
        )

    def _rest_xcom(self, dag_id: str, run_id: str, task: str):
        path = f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task}/xcomEntries/return_value"
        response = self._rest(path, deserialize="true")
        if response.status_code != 200:
            return None
        value = response.json().get("value")
        return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value

    # SQLite ----------------------------------------------------------------------
    def _sql(self, query: str, *args) -> list[tuple]:
        if not self.db.exists():
            raise LineageError(
                f"pattern 2 has no Airflow database at {self.db}",
                "set P2_STATE_DIR to the state folder pattern 2 ran with, or P2_AIRFLOW_API_URL for a running Airflow",
            )
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            return db.execute(query, args).fetchall()

    @staticmethod
    def _decode(value):
        if isinstance(value, bytes):
            value = value.decode()
        value = json.loads(value) if isinstance(value, str) else value
        return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value

    # Both ------------------------------------------------------------------------
    def dag_run(self, dag_id: str, run_id: str) -> dict | None:
        """{'state', 'xcom': {task: value}} of one DAG run, or None."""
        tasks = ("load", "plan", "submit_pipeline", "collect_metrics", "publish_model")
        if self.api:
            response = self._rest(f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
            if response.status_code == 404:
                return None
            response.raise_for_status()
            xcom = {t: v for t in tasks if (v := self._rest_xcom(dag_id, run_id, t)) is not None}
            return {"state": response.json().get("state"), "xcom": xcom}
        rows = self._sql("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id)
        if not rows:
            return None
        found = self._sql(
            "SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value'", dag_id, run_id
        )
        return {"state": rows[0][0], "xcom": {task: self._decode(value) for task, value in found if task in tasks}}

    def runs_that_submitted(self, dag_id: str, kfp_run_id: str) -> list[tuple[str, dict]]:
        """(DAG run id, submit XCom) of every DAG run whose submit task returned this KFP run."""
        if self.api:
            response = self._rest(f"dags/{dag_id}/dagRuns", limit=100, order_by="-run_after")
            if response.status_code == 404:
                return []
            response.raise_for_status()
            found = []
            for run in response.json().get("dag_runs", []):
                value = self._rest_xcom(dag_id, run["dag_run_id"], "submit_pipeline")
                if isinstance(value, dict) and value.get("run_id") == kfp_run_id:
                    found.append((run["dag_run_id"], value))
            return found
        rows = self._sql(
            "SELECT run_id, value FROM xcom WHERE dag_id = ? AND task_id = 'submit_pipeline' "
            "AND key = 'return_value' ORDER BY timestamp",
            dag_id,
        )
        return [
            (run, v) for run, raw in rows if isinstance(v := self._decode(raw), dict) and v.get("run_id") == kfp_run_id
        ]


def p2_chain(airflow: Airflow, dag_id: str, run_id: str, run: dict, kfp_run_id: str | None = None) -> Chain:
    x = run["xcom"]
    # The training run's plan task names its data (from the asset event); an older one-DAG run, its load task.
    load, submit, metrics, published = (
        x.get(t) or {}
        for t in ("plan" if "plan" in x else "load", "submit_pipeline", "collect_metrics", "publish_model")
    )
    chain = Chain("p2")
    older = "the run recorded none (a DAG run from before lineage was recorded)"
    if load:
        chain.links["git_commit"] = (
            git_link(load.get("git_commit")) if load.get("git_commit") else Link("git", unknown(older))
        )
        sha = load.get("dataset_sha256")
        chain.links["data_version"] = Link(
            "S3", sha or unknown(older), f"{load.get('dataset_uri')} (sha256 of its bytes; object metadata sha256)"
        )
    else:
        why = f"the DAG run's load task left no XCom (state {run['state']})"
        chain.links["git_commit"] = Link("git", unknown(why))
        chain.links["data_version"] = Link("S3", unknown(why))
    handoff = load.get("asset_event") or {}
    where = airflow.run_url(dag_id, run_id)
    if handoff.get("etl_dag_run_id"):
        etl_id, etl_run = handoff.get("etl_dag_id") or "p2_etl", handoff["etl_dag_run_id"]
        found = airflow.dag_run(etl_id, etl_run)
        state = f"ETL run {found['state']}" if found else f"ETL run no longer in {airflow.where}"
        where += (
            f"; started by the asset event of {handoff.get('asset')} at {handoff.get('timestamp')}, "
            f"written by {etl_id}/{etl_run} ({state}, {airflow.run_url(etl_id, etl_run)})"
        )
    chain.links["orchestrator_run"] = Link("Airflow", f"{dag_id}/{run_id}", where)
    if submit.get("run_id"):
        where = f"{submit.get('export_uri')}/run.json, metrics.json"
        if metrics:
            where += f"; metrics {', '.join(f'{k}={v:.4f}' for k, v in metrics.items() if isinstance(v, float))}"
        chain.links["tracker_run"] = Link("KFP", submit["run_id"], where)
        if submit.get("reused"):
            chain.notes.append(
                f"this DAG run reused KFP run {submit['run_id']} ({submit.get('run_name')}), trained by an earlier "
                "DAG run on the same dataset content and parameters"
            )
    else:
        chain.links["tracker_run"] = Link("KFP", unknown(f"the submit task left no XCom (DAG run {run['state']})"))
    if published.get("published_uri"):
        uri = published["published_uri"]
        chain.links["model_version"] = Link("S3", f"{uri}/model.joblib", f"{uri}/decision.json")
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        decision = s3_json(s3_client("P2"), bucket, f"{prefix}/decision.json")
        if decision and decision.get("dag_run_id") != run_id:
            chain.notes.append(
                f"{uri}/ has since been overwritten by DAG run {decision.get('dag_run_id')} "
                f"(KFP run {decision.get('kfp_run_id')}); the run record {submit.get('export_uri')}/model.joblib "
                "still holds this run's model"
            )
    elif submit.get("export_uri"):
        chain.links["model_version"] = Link(
            "S3", f"none (not published: DAG run {run['state']})", f"trained model: {submit['export_uri']}/model.joblib"
        )
    else:
        chain.links["model_version"] = Link("S3", unknown(f"nothing trained or published (DAG run {run['state']})"))
    if kfp_run_id and submit.get("run_id") != kfp_run_id:
        chain.notes.append(f"KFP run {kfp_run_id} is not this DAG run's")
    return chain


def p2_dag_run(airflow: Airflow, given: str) -> Chain | None:
    dag_id, _, run_id = given.partition("/")
    run = airflow.dag_run(dag_id, run_id)
    return None if run is None else p2_chain(airflow, dag_id, run_id, run)


def p2_kfp_run(airflow: Airflow, kfp_run_id: str) -> Chain | None:
    bucket = env("P2_BUCKET", default="p2-data")
    client = s3_client("P2")
    record = None
    for key in s3_keys(client, bucket, "runs/"):
        if key.endswith("/run.json") and (found := s3_json(client, bucket, key)) and found.get("run_id") == kfp_run_id:
            record = found
            break
    if record is None:
        return None
    # The record names the DAG run that submitted it (runs since lineage was recorded).
    origin = record.get("origin") or {}
    dag_id = origin.get("dag_id") or env("P2_DAG_ID", default="p2_train")
    submitted = airflow.runs_that_submitted(dag_id, kfp_run_id)
    later = [r for r, v in submitted if v.get("reused") and r != origin.get("dag_run_id")]
    trained_by = origin.get("dag_run_id") or next((r for r, v in submitted if not v.get("reused")), None)
    run = airflow.dag_run(dag_id, trained_by) if trained_by else None
    if run is not None:
        chain = p2_chain(airflow, dag_id, trained_by, run)
    else:
        chain = Chain("p2")
        gone = f"no longer in {airflow.where}" if trained_by else ""
        why = f"the run record names no DAG run and none in {airflow.where} trained it"
        chain.links["git_commit"] = (
            git_link(origin["git_commit"]) if origin.get("git_commit") else Link("git", unknown(why))
        )
        chain.links["data_version"] = Link(
            "S3", origin.get("dataset_sha256") or unknown(why), f"{record.get('dataset_uri')} (sha256 of its bytes)"
        )
        chain.links["orchestrator_run"] = (
            Link("Airflow", f"{dag_id}/{trained_by}", gone) if trained_by else Link("Airflow", unknown(why))
        )
        chain.links["tracker_run"] = Link("KFP", kfp_run_id, f"{record.get('export_uri')}/run.json, metrics.json")
        chain.links["model_version"] = p2_published_model(record, kfp_run_id)
    if later:
        chain.notes.append(f"later DAG run(s) reused this KFP run: {', '.join(later)}")
    return chain


def p2_published_model(record: dict, kfp_run_id: str) -> Link:
    """The published copy of this KFP run's model, if its date's decision.json names this run."""
    trained = f"trained model: {record.get('export_uri')}/model.joblib"
    date = re.search(r"/ds=([0-9-]+)/", record.get("dataset_uri") or "")
    if not date:
        return Link("S3", unknown("the run record names no dataset date"), trained)
    bucket = env("P2_BUCKET", default="p2-data")
    prefix = f"published/ds={date.group(1)}"
    decision = s3_json(s3_client("P2"), bucket, f"{prefix}/decision.json")
    if decision and decision.get("kfp_run_id") == kfp_run_id:
        return Link("S3", f"s3://{bucket}/{prefix}/model.joblib", f"s3://{bucket}/{prefix}/decision.json")
    return Link("S3", f"none (s3://{bucket}/{prefix}/ does not hold this run's model)", trained)


# ## Pattern 3: Prefect workers + Metaflow
def metaflow_read(request: dict) -> dict:
    """Pattern 3's reader in pattern 3's own environment (it needs metaflow)."""
    command = [UV, "run", "--locked", "--quiet", "--project", str(P3_DIR), "python", str(METAFLOW_READER)]
    done = subprocess.run([*command, json.dumps(request)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise LineageError(
            f"reading Metaflow failed: {(done.stderr or done.stdout).strip()[-1500:]}",
            "sync pattern 3's environment (`make setup`), and set P3_METAFLOW_METADATA_DIR and P3_METAFLOW_S3_ROOT "
            "to what pattern 3 ran with",
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def p3_chain(run: dict) -> Chain:
    prefect = Prefect()
    tags = dict(t.split(":", 1) for t in run["tags"] if ":" in t)
    chain = Chain("p3")
    chain.links["git_commit"] = (
        git_link(tags.get("git_commit"))
        if "git_commit" in tags
        else Link("git", unknown("the Metaflow run has no git_commit tag (a run from before lineage was recorded)"))
    )
    if run.get("data_sha256"):
        chain.links["data_version"] = Link(
            "Metaflow", run["data_sha256"], f"{run.get('data_url')} (artifact data_sha256)"
        )
    else:
        chain.links["data_version"] = Link(
            "Metaflow", unknown(f"the run has no data_sha256 artifact ({run['status']})")
        )
    recorded = tags.get("prefect_flow_run_id")
    if recorded:
        chain.links["orchestrator_run"] = Link("Prefect", recorded, prefect.run_url(recorded))
        found = prefect.flow_run(recorded)
        if found and found.get("parent_task_run_id"):
            task = prefect.call("GET", f"task_runs/{found['parent_task_run_id']}")
            if task.status_code == 200 and task.json().get("flow_run_id"):
                parent = task.json()["flow_run_id"]
                chain.notes.append(f"submitted by the fan-out flow run {parent}: {prefect.run_url(parent)}")
    else:
        chain.links["orchestrator_run"] = Link("Prefect", unknown("the Metaflow run has no prefect_flow_run_id tag"))
    chain.links["tracker_run"] = Link(
        "Metaflow", run["pathspec"], f"Flow('{run['pathspec'].split('/')[0]}') in the Metaflow Client ({run['status']})"
    )
    model = run.get("model")
    if model:
        chain.links["model_version"] = Link("Metaflow", model["pathspec"], f"{model['location']} (sha {model['sha']})")
    else:
        chain.links["model_version"] = Link("Metaflow", f"none (the run has no model artifact: {run['status']})")
    return chain


def p3_metaflow_run(pathspec: str) -> Chain | None:
    runs = metaflow_read({"pathspecs": [pathspec]})["runs"]
    return p3_chain(runs[0]) if runs else None


def p3_prefect_run(flow_run: dict) -> Chain:
    flow_run_id = flow_run["id"]
    if flow_run["flow_name"] == "p3-fan-out":
        rows = []
        for artifact in Prefect().artifacts(flow_run_id, "p3-fan-out"):
            data = artifact.get("data")
            rows += json.loads(data) if isinstance(data, str) else (data or [])
        if not rows:
            raise LineageError(
                f"the fan-out flow run {flow_run_id} published no p3-fan-out table (it failed or is still running)",
                "pass one of its child flow runs (p3-train-one) or a Metaflow pathspec instead",
            )
        best = max(rows, key=lambda r: float(r["cv_accuracy"]))
        chain = p3_chain(metaflow_read({"pathspecs": [best["metaflow_pathspec"]]})["runs"][0])
        chain.notes.insert(0, f"fan-out of {len(rows)} runs: the best (cv_accuracy {best['cv_accuracy']}) is shown")
        return chain
    runs = metaflow_read({"tags": [f"prefect_flow_run_id:{flow_run_id}"]})["runs"]
    if not runs:
        chain = Chain("p3")
        why = f"no Metaflow run is tagged prefect_flow_run_id:{flow_run_id}"
        chain.links["orchestrator_run"] = Link("Prefect", flow_run_id, Prefect().run_url(flow_run_id))
        for name in ("git_commit", "data_version", "tracker_run", "model_version"):
            chain.links[name] = Link("-", unknown(why))
        return chain
    chosen = next((r for r in runs if r["status"] == "successful"), runs[0])
    chain = p3_chain(chosen)
    if len(runs) > 1:
        chain.notes.append(f"{len(runs)} Metaflow runs carry this flow run's tag; the successful one is shown")
    return chain


# ## Pattern 4: CD of Prefect deployments, models on S3 by release
def p4_chain(card: dict, bucket: str) -> Chain:
    prefect = Prefect()
    chain = Chain("p4")
    chain.links["git_commit"] = git_link(card.get("git_sha") or "none") if card.get("git_sha") else Link("git", NO_GIT)
    chain.links["data_version"] = Link(
        "S3",
        card.get("data_sha256") or unknown("the card has no data_sha256"),
        f"{card.get('code_dir')}/{card.get('data_file')}: the release's snapshot (sha256 of its bytes)",
    )
    run_id = card.get("flow_run_id")
    chain.links["orchestrator_run"] = Link(
        "Prefect",
        run_id or unknown("the card has no flow_run_id"),
        f"{prefect.run_url(run_id)} (deployment {card.get('deployment')}, version {card.get('release')})",
    )
    chain.links["tracker_run"] = Link(
        "S3",
        card.get("card_url") or unknown("no card URL"),
        "the model card: params, metrics (pattern 4 has no experiment tracker)",
    )
    chain.links["model_version"] = Link(
        "S3", card.get("model_url") or unknown("no model URL"), f"release {card.get('release')}"
    )
    latest = s3_json(s3_client("P4"), bucket, "models/latest.json")
    if latest and latest.get("model_url") == card.get("model_url"):
        chain.notes.append(f"this model is in service (s3://{bucket}/models/latest.json)")
    return chain


def p4_release(given: str) -> Chain | None:
    bucket = env("P4_MODEL_BUCKET", default="p4-models")
    client = s3_client("P4")
    cards = []
    for key in s3_keys(client, bucket, f"models/{given}"):
        release = key.split("/")[1]
        if key.endswith("/model.json") and (release == given or release.startswith(f"{given}-dirty.")):
            cards.append(s3_json(client, bucket, key))
    if not cards:
        return None
    cards.sort(key=lambda c: c.get("created_at", ""))
    chain = p4_chain(cards[-1], bucket)
    if len(cards) > 1:
        chain.notes.append(f"{len(cards)} models were trained from this release; the latest is shown")
    return chain


def p4_prefect_run(flow_run: dict) -> Chain:
    bucket = env("P4_MODEL_BUCKET", default="p4-models")
    release = next((t.removeprefix("release:") for t in flow_run.get("tags", []) if t.startswith("release:")), None)
    release = release or "adhoc"
    card = s3_json(s3_client("P4"), bucket, f"models/{release}/{flow_run['id']}/model.json")
    if card:
        return p4_chain(card, bucket)
    chain = Chain("p4")
    git = next((t.removeprefix("git:") for t in flow_run.get("tags", []) if t.startswith("git:")), None)
    chain.links["git_commit"] = (
        git_link(git)
        if git and git != "none"
        else Link("git", NO_GIT if git else unknown("the flow run has no git: tag"))
    )
    why = (
        f"no model card at s3://{bucket}/models/{release}/{flow_run['id']}/model.json "
        f"({flow_run['flow_name']} run, state {flow_run.get('state_type')}; only p4-retrain runs publish models)"
    )
    chain.links["data_version"] = Link("S3", unknown(why))
    chain.links["orchestrator_run"] = Link("Prefect", flow_run["id"], Prefect().run_url(flow_run["id"]))
    chain.links["tracker_run"] = Link("S3", unknown(why))
    chain.links["model_version"] = Link("S3", unknown(why))
    return chain


# ## Which kind of id, and which pattern
def detect(given: str) -> str:
    if given.startswith("models:/"):
        return "model-version"
    if UUID.match(given):
        return "prefect-run"
    if HEX32.match(given):
        return "mlflow-run"
    if KFP_LOCAL.match(given):
        return "kfp-run"
    if RELEASE.match(given):
        return "release"
    if METAFLOW.match(given):
        return "metaflow-run"
    if "/" in given:
        head, _, tail = given.partition("/")
        if AIRFLOW_RUN.match(tail) or head in (env("P2_DAG_ID", default="p2_train"), "p2_etl"):
            return "airflow-run"
        if tail.isdigit():
            return "model-version"
    raise LineageError(
        f"{given!r} is not an id this command knows",
        "pass models:/NAME/VERSION, models:/NAME@ALIAS, an MLflow run id (32 hex), a Prefect flow run id (UUID), "
        "DAG_ID/RUN_ID, a KFP run id (local-...), a Metaflow pathspec (P3TrainFlow/123) or a pattern-4 release "
        "(commit SHA), or name the kind with --kind",
    )


def resolve(given: str, kind: str) -> Chain:
    mlflow = MLflow()
    chain: Chain | None
    if kind == "model-version":
        return p1_model_version(mlflow, given)
    if kind == "mlflow-run":
        chain = p1_mlflow_run(mlflow, given)
        searched = f"MLflow at {mlflow.url}"
        how = f"copy a run id from the MLflow UI ({mlflow.url}) or the `mlflow_run=` field of pattern 1's Result line"
    elif kind == "prefect-run":
        prefect = Prefect()
        flow_run = prefect.flow_run(given)
        if flow_run is not None:
            name = flow_run["flow_name"]
            if name.startswith("p1-"):
                return p1_prefect_run(mlflow, flow_run)
            if name.startswith("p3-"):
                return p3_prefect_run(flow_run)
            if name.startswith("p4-"):
                return p4_prefect_run(flow_run)
            raise LineageError(
                f"flow run {given} is of flow {name!r}, which no pattern records lineage for",
                "pass a flow run of p1-train-register-serve, p3-fan-out, p3-train-one or p4-retrain",
            )
        # A KFP cluster's run ids are UUIDs too: its run records answer next.
        chain = p2_kfp_run(Airflow(), given)
        records = f"s3://{env('P2_BUCKET', default='p2-data')}/runs/"
        searched = f"the Prefect API at {prefect.api} and the KFP run records in {records}"
        how = f"copy a flow run id from the Prefect UI ({prefect.ui}/runs) or a pattern's Result line, or a KFP run id"
    elif kind == "airflow-run":
        airflow = Airflow()
        if not airflow.api and not airflow.db.exists():
            raise LineageError(
                f"no airflow-run {given!r}: pattern 2 has no Airflow database at {airflow.db}",
                "set P2_STATE_DIR to the state folder pattern 2 ran with, or P2_AIRFLOW_API_URL for a running Airflow",
            )
        chain = p2_dag_run(airflow, given) if "/" in given else None
        searched = airflow.where
        how = "pass DAG_ID/RUN_ID, e.g. the `train_run=` field of pattern 2's Result line prefixed with p2_train/"
    elif kind == "kfp-run":
        airflow = Airflow()
        chain = p2_kfp_run(airflow, given)
        searched = f"the run records s3://{env('P2_BUCKET', default='p2-data')}/runs/*/run.json"
        how = "copy the `kfp_run_id=` field of pattern 2's Result line"
    elif kind == "metaflow-run":
        chain = p3_metaflow_run(given)
        searched = (
            f"Metaflow's metadata in {env('P3_METAFLOW_METADATA_DIR', default=str(P3_DIR / '.state'))} "
            f"and datastore {env('P3_METAFLOW_S3_ROOT', default='s3://metaflow/p3')} "
            "(P3_METAFLOW_METADATA_DIR, P3_METAFLOW_S3_ROOT)"
        )
        how = "copy a pathspec from pattern 3's fan-out table (`best=` in its Result line)"
    elif kind == "release":
        chain = p4_release(given)
        searched = f"s3://{env('P4_MODEL_BUCKET', default='p4-models')}/models/<release>/"
        how = "pass the `release=` field of pattern 4's Result line, or a commit SHA that pattern 4 deployed"
    else:
        raise LineageError(f"unknown kind {kind!r}", f"use one of {', '.join(KINDS)}")
    if chain is None:
        raise LineageError(f"no {kind} {given!r} in {searched}", how)
    return chain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Print git commit -> data version -> orchestrator run -> tracker run -> model version."
    )
    parser.add_argument("id", help="a model version, a run id of any tool, or a pattern-4 release (see the docstring)")
    parser.add_argument("--kind", choices=KINDS, help="the kind of id, when it is ambiguous (detected otherwise)")
    args = parser.parse_args(argv)
    given = args.id.strip()
    try:
        if not given:
            raise LineageError("the id is empty", "pass one, e.g. make lineage ID=models:/p1-breast-cancer@champion")
        kind = args.kind or detect(given)
        chain = resolve(given, kind)
    except LineageError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    print(chain.render(given, kind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
