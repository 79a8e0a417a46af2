"""This repository's harness (not the pattern): pattern 2 against a running
Airflow (`make pattern-2` on either tier), one ETL run through Airflow 3's REST
API, as any other system would trigger it, then the training run the
scheduler starts from its asset event.

    P2_AIRFLOW_API_URL=http://127.0.0.1:8080 python -m harness [--date ...]

Airflow's own services do the work: the dag-processor parses `dags/`, the
scheduler queues the runs and its LocalExecutor runs the tasks. This process
only asks, over HTTP:
1. a JWT from the simple auth manager (`POST /auth/token`, username and password);
2. both DAGs, once the dag-processor has parsed them (`GET /api/v2/dags/{dag_id}`,
   bounded by P2_DAG_PARSE_TIMEOUT; on failure the dag-processor's import
   errors, `GET /api/v2/importErrors`), unpaused if paused (p2_train first:
   Airflow queues asset events only for a DAG that is not paused);
3. an ETL DAG run for the logical date, with the run's conf (`POST .../dagRuns`);
4. its state until it ends (bounded by P2_DAG_RUN_TIMEOUT);
5. its asset event (`GET /api/v2/assets/events?source_run_id=...`) and the
   training DAG run the scheduler created from it (the event's
   `created_dagruns`), followed to its end in the same way;
6. the task states and `return_value` XComs of both runs: the same dict as
   in_process.py's, so report.py's `outcome_of` and `result_line` serve both.

One logical date, one ETL run. The run id derives from the date only
(`manual__2026-03-01T00:00:00+00:00`, the form of Airflow's own manual run
ids), and Airflow refuses a second run for the same DAG and date (409). So a
second call for a date follows the run that exists (waits for it if it is
still going, reports it if it has ended) and triggers nothing: no second
training. The same date with other options is refused, not silently
answered with the first run's result.

This module imports httpx and the pattern's settings, never airflow.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx

from errors import P2Error
from harness.report import DAG_FILE, ETL_DAG_ID, TRAIN_DAG_ID
from settings import P2Settings

TERMINAL = ("success", "failed")
POLL_SECONDS = 2.0
REQUEST_TIMEOUT = 30.0  # seconds for one answer once connected


def dag_run_id(logical_date: datetime) -> str:
    """The DAG run id for a logical date: the same on every call, so a retry
    finds the run it started instead of starting another."""
    if logical_date.tzinfo is None or logical_date.utcoffset() is None:
        raise ValueError(f"the logical date {logical_date} has no time zone")
    return f"manual__{logical_date.isoformat()}"


def decode_xcom(value):
    """An XCom value as the API returns it (`deserialize=true`): JSON values
    arrive as they are, except where the stored value was itself a JSON
    string of an object or a list."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class AirflowAPI:
    """The few calls the harness makes, each failure turned into a P2Error with the fix."""

    def __init__(self, settings: P2Settings):
        self.settings = settings
        self.url = settings.airflow_api_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=settings.connect_timeout)
        )
        self.token: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AirflowAPI:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ## HTTP, with errors a user can act on
    def _send(self, method: str, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
        headers = (headers or {}) | ({"Authorization": f"Bearer {self.token}"} if self.token else {})
        try:
            return self.http.request(method, path, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise P2Error(
                f"Airflow's API at {self.url} is unreachable ({type(exc).__name__}: {exc})",
                "start the Airflow services (api-server, scheduler, dag-processor) or correct "
                "P2_AIRFLOW_API_URL; unset P2_AIRFLOW_API_URL to run the DAG in this process instead",
            ) from exc
        except httpx.TimeoutException as exc:
            raise P2Error(
                f"Airflow's API at {self.url} did not answer {method} {path} within {REQUEST_TIMEOUT:.0f} s",
                "look at the api-server's log and its metadata database",
            ) from exc
        except httpx.HTTPError as exc:
            raise P2Error(
                f"{method} {self.url}{path} failed: {type(exc).__name__}: {exc}",
                "check P2_AIRFLOW_API_URL (the api-server's base URL, e.g. http://127.0.0.1:8080)",
            ) from exc

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs) -> httpx.Response:
        if self.token is None:
            self.login()
        response = self._send(method, path, **kwargs)
        if response.status_code == 401:  # the token expired during a long wait: once more
            self.login()
            response = self._send(method, path, **kwargs)
        if response.status_code in expect:
            return response
        if response.status_code == 403:
            raise P2Error(
                f"Airflow at {self.url} does not allow user {self.settings.airflow_username!r} to "
                f"{method} {path}: {detail(response)}",
                "give that user the admin or op role (AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=name:admin), "
                "or use another one (P2_AIRFLOW_USERNAME / P2_AIRFLOW_PASSWORD)",
            )
        raise P2Error(
            f"{method} {self.url}{path} answered {response.status_code}: {detail(response)}",
            "look at the api-server's log",
        )

    def login(self) -> None:
        """A JWT from the simple auth manager (`POST /auth/token`)."""
        user = self.settings.airflow_username
        response = self._send(
            "POST", "/auth/token", json={"username": user, "password": self.settings.airflow_password}
        )
        if response.status_code == 401:
            raise P2Error(
                f"Airflow at {self.url} refused the credentials of user {user!r} ({detail(response)})",
                "set P2_AIRFLOW_USERNAME and P2_AIRFLOW_PASSWORD to a user of the simple auth manager "
                "(AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS) and its password in the passwords file "
                "(AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE)",
            )
        if response.status_code in (404, 405, 501):
            raise P2Error(
                f"{self.url} has no Airflow 3 token endpoint (POST /auth/token answered {response.status_code})",
                "set P2_AIRFLOW_API_URL to the base URL of an Airflow 3 api-server, "
                "e.g. http://127.0.0.1:8080 (without /api/v2)",
            )
        try:
            token = response.json()["access_token"] if response.status_code in (200, 201) else None
        except (ValueError, KeyError, TypeError):
            token = None
        if not token:
            raise P2Error(
                f"POST {self.url}/auth/token answered {response.status_code} without a token: {detail(response)}",
                "check P2_AIRFLOW_API_URL and the api-server's auth manager (the simple auth manager is expected)",
            )
        self.token = token

    # ## The DAG, parsed and unpaused
    def wait_for_dag(self, dag_id: str) -> dict:
        """The DAG as the API shows it, once the dag-processor has parsed it
        without import errors. An import error of its file recorded while this
        waits ends the wait at once; an older one may predate a fix (the
        dag-processor records the file's error again each time it parses it)."""
        wait = self.settings.dag_parse_timeout
        since = datetime.now(UTC) - timedelta(seconds=2)  # some slack for the server's clock
        deadline = time.monotonic() + wait
        announced = False
        while True:
            response = self.call("GET", f"/api/v2/dags/{dag_id}", expect=(200, 404))
            dag = response.json() if response.status_code == 200 else {}
            if dag and not dag.get("has_import_errors") and not dag.get("is_stale"):
                return dag
            fresh = [e for e in self.import_errors(DAG_FILE) if recorded_at(e) >= since]
            if fresh or time.monotonic() >= deadline:
                raise self.import_failure(dag_id, wait, dag)
            if not announced:
                print(f"Waiting up to {wait:.0f} s for Airflow's dag-processor to parse {dag_id}", flush=True)
                announced = True
            time.sleep(POLL_SECONDS)

    def import_errors(self, filename: str = "") -> list[dict]:
        """The dag-processor's import errors (those of one DAG file if named)."""
        response = self.call("GET", "/api/v2/importErrors", params={"limit": 100})
        errors = response.json().get("import_errors", [])
        return [e for e in errors if str(e.get("filename", "")).endswith(filename)]

    def import_failure(self, dag_id: str, wait: float, dag: dict) -> P2Error:
        errors = self.import_errors()
        if errors:
            text = "\n".join(
                f"--- {e.get('filename')} ({e.get('timestamp')}):\n"
                + "\n".join(str(e.get("stack_trace", "")).rstrip().splitlines()[-15:])
                for e in errors
            )
            return P2Error(
                f"Airflow at {self.url} cannot load the DAG {dag_id}: the dag-processor reports "
                f"{len(errors)} import error(s):\n{text}",
                "fix the error above (the DAG file or the modules beside dags/, or the services' P2_* "
                "variables); the dag-processor parses the file again by itself",
            )
        if not dag:
            state = "was not found"
        elif dag.get("is_stale"):
            state = "is stale (its file left the DAGs folder)"
        else:
            state = "is marked as having import errors"
        return P2Error(
            f"the DAG {dag_id} was not ready in Airflow at {self.url} within {wait:.0f} s: it {state}, "
            "and the dag-processor reports no import errors",
            "check that the dag-processor runs and that its DAGs folder (AIRFLOW__CORE__DAGS_FOLDER) is this "
            "pattern's dags/, with settings.py, errors.py, etl.py and handoff.py beside it; "
            "raise P2_DAG_PARSE_TIMEOUT if parsing is just slow",
        )

    def unpause(self, dag: dict) -> None:
        if not dag.get("is_paused"):
            return
        self.call("PATCH", f"/api/v2/dags/{dag['dag_id']}", json={"is_paused": False})
        print(
            f"Unpaused the DAG {dag['dag_id']} (it was paused): its schedule ({dag.get('timetable_summary')}) is on",
            flush=True,
        )

    # ## One DAG run per logical date
    def run_path(self, dag_id: str, run_id: str) -> str:
        return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"

    def run_for_date(self, logical_date: datetime) -> dict | None:
        stamp = logical_date.isoformat()
        response = self.call(
            "GET", f"/api/v2/dags/{ETL_DAG_ID}/dagRuns", params={"logical_date_gte": stamp, "logical_date_lte": stamp}
        )
        runs = response.json().get("dag_runs", [])
        return runs[0] if runs else None

    def trigger(self, logical_date: datetime, conf: dict) -> tuple[dict, bool]:
        """The ETL DAG run for this logical date, and whether this call created it.
        Looked up first (a retry, the usual case, triggers nothing); created
        otherwise, where Airflow's 409 settles a race with another caller."""
        run_id = dag_run_id(logical_date)
        response = self.call("GET", self.run_path(ETL_DAG_ID, run_id), expect=(200, 404))
        existing = response.json() if response.status_code == 200 else None
        if existing is None:
            body = {"dag_run_id": run_id, "logical_date": logical_date.isoformat(), "conf": conf}
            response = self.call("POST", f"/api/v2/dags/{ETL_DAG_ID}/dagRuns", expect=(200, 400, 409), json=body)
            if response.status_code == 200:
                print(f"Triggered the {ETL_DAG_ID} run {run_id} (conf {json.dumps(conf)}) at {self.url}", flush=True)
                return response.json(), True
            if response.status_code == 400:
                raise P2Error(
                    f"Airflow refused to trigger {ETL_DAG_ID} for {logical_date.date()}: {detail(response)}",
                    "check the options (--n-estimators >= 1, --max-depth >= 0, 0 <= --min-accuracy <= 1)",
                )
            # 409: another caller created it meanwhile, or a run of another id holds this date.
            existing = self.run_for_date(logical_date)
            if existing is None:
                raise P2Error(
                    f"Airflow answered 409 to the DAG run {run_id} but has no run for {logical_date.date()}: "
                    f"{detail(response)}",
                    "look at the DAG's runs in the UI",
                )
        found = existing["dag_run_id"]
        if (existing.get("conf") or {}) != conf:
            raise P2Error(
                f"the DAG run {found} for logical date {logical_date.date()} already exists with conf "
                f"{json.dumps(existing.get('conf') or {})}, and this call asks for {json.dumps(conf)}",
                f"repeat it with the same options to follow that run, or delete that run first "
                f"(DELETE {self.url}{self.run_path(ETL_DAG_ID, found)}, or Delete in the UI) and run again",
            )
        print(
            f"The {ETL_DAG_ID} run {found} for {logical_date.date()} already exists ({existing.get('state')}): "
            "following it, nothing new is triggered",
            flush=True,
        )
        return existing, False

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """The run's task instances, in the order they ended (those still going last)."""
        response = self.call("GET", f"{self.run_path(dag_id, run_id)}/taskInstances", params={"limit": 100})
        return sorted(response.json().get("task_instances", []), key=lambda ti: ti.get("end_date") or "~")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {ti["task_id"]: str(ti.get("state")) for ti in self.task_instances(dag_id, run_id)}

    def task_errors(self, dag_id: str, run_id: str, task: str, try_number: int) -> list[str]:
        """The exceptions a failed task logged (the model rejected, a component's
        error, ...): what in-process mode shows inline with the task logs."""
        path = f"{self.run_path(dag_id, run_id)}/taskInstances/{task}/logs/{try_number}"
        try:
            response = self.call(
                "GET", path, expect=(200, 404), params={"full_content": "true"}, headers={"Accept": "application/json"}
            )
        except P2Error:
            return []
        if response.status_code != 200:
            return []
        lines = []
        for event in response.json().get("content", []):
            if not isinstance(event, dict) or event.get("level") not in ("error", "critical"):
                continue
            details = event.get("error_detail") or []
            lines += [f"{d.get('exc_type')}: {d.get('exc_value')}" for d in details if isinstance(d, dict)]
            if not details:
                lines.append(str(event.get("event")))
        return [line[:2000] for line in lines[-5:]]

    def wait(self, dag_id: str, run: dict) -> dict:
        """Poll the run until it ends, printing its state and each task as it ends."""
        run_id = run["dag_run_id"]
        wait = self.settings.dag_run_wait
        deadline = time.monotonic() + wait
        state, seen, queued_since, told_queue = None, {}, time.monotonic(), False
        while True:
            run = self.call("GET", self.run_path(dag_id, run_id)).json()
            changed = run.get("state") != state
            state = run.get("state")
            if changed and state not in TERMINAL:
                print(f"{dag_id} run {run_id}: {state}", flush=True)
            for task, task_state in self.task_states(dag_id, run_id).items():
                if task_state in ("success", "failed", "skipped", "upstream_failed") and seen.get(task) != task_state:
                    seen[task] = task_state
                    print(f"  {task}: {task_state}", flush=True)
            if changed and state in TERMINAL:  # after its tasks
                print(f"{dag_id} run {run_id}: {state}", flush=True)
            if state in TERMINAL:
                return run
            if state == "queued" and not told_queue and time.monotonic() - queued_since > 5:
                told_queue = True
                self.tell_queue(dag_id, run_id)
            if time.monotonic() >= deadline:
                hint = (
                    "is the scheduler running? A queued run also waits for any other active run of this DAG "
                    "(max_active_runs=1)"
                    if state == "queued"
                    else f"look at the task logs in the UI ({self.url}/dags/{dag_id}/runs/{quote(run_id, safe='')})"
                )
                raise P2Error(
                    f"the {dag_id} run {run_id} is still {state} after {wait:.0f} s (P2_DAG_RUN_TIMEOUT)",
                    f"{hint}; running it again follows the same run; raise P2_DAG_RUN_TIMEOUT if it is just slow",
                )
            time.sleep(POLL_SECONDS)

    def tell_queue(self, dag_id: str, run_id: str) -> None:
        response = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"state": "running"})
        ahead = [r["dag_run_id"] for r in response.json().get("dag_runs", []) if r["dag_run_id"] != run_id]
        if ahead:
            print(f"  queued behind {', '.join(ahead)} (the DAG allows one active run at a time)", flush=True)

    def results(self, dag_id: str, run: dict) -> dict:
        """Task states and `return_value` XComs, shaped as in_process.run_dag's answer."""
        run_id = run["dag_run_id"]
        instances = self.task_instances(dag_id, run_id)
        states = {ti["task_id"]: str(ti.get("state")) for ti in instances}
        errors = {
            ti["task_id"]: self.task_errors(dag_id, run_id, ti["task_id"], ti.get("try_number") or 1)
            for ti in instances
            if ti.get("state") == "failed"
        }
        xcoms = {}
        for task, state in states.items():
            if state != "success":
                continue
            response = self.call(
                "GET",
                f"{self.run_path(dag_id, run_id)}/taskInstances/{task}/xcomEntries/return_value",
                expect=(200, 404),
                params={"deserialize": "true"},
            )
            if response.status_code == 200:
                xcoms[task] = decode_xcom(response.json().get("value"))
        return {
            "run_id": run_id,
            "run_type": run.get("run_type"),
            "state": run["state"],
            "tasks": states,
            "xcom": xcoms,
            "task_errors": errors,
        }

    # ## The handoff: the ETL run's asset event, and the training run it started
    def asset_events_of(self, etl_run_id: str) -> list[dict] | None:
        """The asset events an ETL run wrote, newest first; None while Airflow cannot
        list them: Airflow 3.3 answers 500 while a DAG run created from the event has
        not started yet (its start_date is NULL; apache/airflow#71360, fixed by #71379)."""
        response = self.call(
            "GET",
            "/api/v2/assets/events",
            expect=(200, 500),
            params={"source_dag_id": ETL_DAG_ID, "source_run_id": etl_run_id, "order_by": "-timestamp"},
        )
        return response.json().get("asset_events", []) if response.status_code == 200 else None

    def training_run_for(self, etl_run_id: str) -> tuple[dict | None, dict | None]:
        """The asset event of a successful ETL run and the p2_train run the scheduler
        created from it, waited for (bounded by P2_DAG_PARSE_TIMEOUT); (None, None)
        if the run wrote no event."""
        wait = self.settings.dag_parse_timeout
        deadline = time.monotonic() + wait
        while True:
            events = self.asset_events_of(etl_run_id)
            if events == []:
                return None, None
            event = events[0] if events else None
            runs = [r for r in (event or {}).get("created_dagruns") or [] if r.get("dag_id") == TRAIN_DAG_ID]
            if runs:
                run = self.call("GET", self.run_path(TRAIN_DAG_ID, runs[-1]["run_id"])).json()
                print(
                    f"The scheduler started the {TRAIN_DAG_ID} run {run['dag_run_id']} ({run.get('run_type')}) "
                    f"from asset event {event['id']} of {event.get('uri')}",
                    flush=True,
                )
                return run, event
            if time.monotonic() >= deadline:
                raise P2Error(
                    f"no {TRAIN_DAG_ID} run was created from the asset event of {ETL_DAG_ID} run {etl_run_id} "
                    f"within {wait:.0f} s",
                    f"check that the scheduler runs and that {TRAIN_DAG_ID} is not paused (Airflow queues asset "
                    f"events only for unpaused DAGs: trigger {TRAIN_DAG_ID} by hand to train on the newest dataset)",
                )
            time.sleep(POLL_SECONDS / 2)


def recorded_at(error: dict) -> datetime:
    """When the dag-processor last recorded an import error."""
    try:
        return datetime.fromisoformat(str(error.get("timestamp")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or "(empty body)"
    return str(body.get("detail", body) if isinstance(body, dict) else body)[:1000]


def trigger_and_wait(settings: P2Settings, logical_date: datetime, conf: dict) -> dict:
    """One ETL run for `logical_date` on the Airflow at settings.airflow_api_url and
    the training run its asset event started, each followed to its end:
    {"etl": run, "train": run or None, "asset_event": event or None, "created",
    "already_ended"}, a run being {"run_id", "run_type", "state", "tasks", "xcom",
    "task_errors"}. An ETL run that already exists for the date is followed, not
    repeated (created=False; already_ended if it had ended)."""
    with AirflowAPI(settings) as api:
        api.login()
        train_dag, etl_dag = api.wait_for_dag(TRAIN_DAG_ID), api.wait_for_dag(ETL_DAG_ID)
        api.unpause(train_dag)  # first: an event for a paused DAG would start nothing
        api.unpause(etl_dag)
        run, created = api.trigger(logical_date, conf)
        ended = not created and run.get("state") in TERMINAL
        etl = api.results(ETL_DAG_ID, api.wait(ETL_DAG_ID, run))
        answer = {"etl": etl, "train": None, "asset_event": None, "created": created, "already_ended": ended}
        train, event = api.training_run_for(etl["run_id"]) if etl["state"] == "success" else (None, None)
        if train is None:
            print(f"No asset event from {etl['run_id']}: nothing trains", flush=True)
            return answer
        ended = ended and train.get("state") in TERMINAL  # both had ended before this call
        answer |= {"already_ended": ended, "asset_event": event}
        return answer | {"train": api.results(TRAIN_DAG_ID, api.wait(TRAIN_DAG_ID, train))}


def rerun_hint(settings: P2Settings, answer: dict) -> str:
    """How to run again a date whose runs had already ended, one of them failed:
    clear the failed one (the training run, else the ETL run)."""
    failed = answer["train"] if (answer.get("train") or {}).get("state") == "failed" else answer["etl"]
    dag_id = TRAIN_DAG_ID if failed is answer.get("train") else ETL_DAG_ID
    path = f"{settings.airflow_api_url.rstrip('/')}/api/v2/dags/{dag_id}/dagRuns/{quote(failed['run_id'], safe='')}"
    return (
        f"The {dag_id} run {failed['run_id']} already existed and had failed; nothing ran again. To run it "
        f'again once the cause is fixed, clear it (POST {path}/clear with {{"dry_run": false}}, or Clear '
        "in the UI), or delete it (DELETE, same URL) and run this again."
    )
