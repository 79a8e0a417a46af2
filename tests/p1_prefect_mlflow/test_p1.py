"""Pattern 1 against a real local stack: the smoke run as a user runs it
(`make pattern-1`), idempotency, the champion rule, every bad input from the
issue, and the scheduled deployment."""

from __future__ import annotations

import csv
import io
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import (
    PATTERNS,
    RESULT_RE,
    Stack,
    check_ui,
    free_port,
    parse_result,
    remove_loop_batches,
    wait_for,
)

P1 = PATTERNS / "p1_prefect_mlflow"
MODEL = "p1-breast-cancer"
EXPERIMENT = "p1-prefect-mlflow"
RAW = P1 / "data" / "raw" / "breast_cancer.csv"
POINTER_MD5 = yaml.safe_load((P1 / "data" / "raw" / "breast_cancer.csv.dvc").read_text())["outs"][0]["md5"]
TEST_ROWS = 143  # 25 % of 569 rows, the held-out batch the flow serves

pytestmark = pytest.mark.stack


def tags(entity: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in entity.get("tags", [])}


@pytest.fixture(scope="module")
def first_run(p1_first_run: dict[str, str]) -> dict[str, str]:
    """`make pattern-1` on the session's empty stack (tests/conftest.py: lineage reads the same run)."""
    return p1_first_run


# ---- smoke ------------------------------------------------------------------------
@pytest.mark.browser
def test_the_pages_the_readme_shows_show_the_first_run(ui, first_run: dict[str, str]) -> None:
    """Prefect's flow run and summary artifact, MLflow's run, confusion matrix and model
    with `champion`: loaded in Chromium, with this run's names on them (tests/conftest.py check_ui)."""
    fields = check_ui(ui, "p1_prefect_mlflow", first_run)
    assert fields["prefect_flow_run"] == first_run["prefect_flow_run"] and fields["version"] == first_run["version"]


def test_first_run_registers_champion_with_lineage(stack: Stack, first_run: dict[str, str]) -> None:
    assert first_run["status"] == "ok"
    assert first_run["decision"] == "promoted", first_run["_output"][-2000:]
    assert first_run["data_md5"] == POINTER_MD5
    assert int(first_run["predictions"]) == TEST_ROWS

    # The registry: a version, and the champion alias on it.
    versions = stack.model_versions(MODEL)
    assert [v["version"] for v in versions] == [first_run["version"]]
    assert stack.alias_version(MODEL, "champion") == first_run["version"] == first_run["champion"]

    # The MLflow run: params, metrics, the plot, the model, lineage tags.
    run = stack.mlflow_get("runs/get", run_id=first_run["mlflow_run"])["run"]
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["n_estimators"] == "200" and params["model"] == "RandomForestClassifier"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    for name in ("accuracy", "f1", "precision", "recall", "roc_auc"):
        assert 0.8 < metrics[name] <= 1.0, (name, metrics)
    assert f"{metrics['roc_auc']:.4f}" == first_run["roc_auc"]
    run_tags = tags(run["data"])
    assert run_tags["dvc_data_md5"] == POINTER_MD5
    assert len(run_tags["git_commit"].removesuffix("-dirty")) == 40
    assert run_tags["prefect_flow_run_id"] == first_run["prefect_flow_run"]
    assert run_tags["p1.decision"] == "promoted"
    plots = stack.mlflow_get("artifacts/list", run_id=first_run["mlflow_run"], path="plots")
    assert [f["path"] for f in plots["files"]] == ["plots/confusion_matrix.png"]
    png = httpx.get(
        f"{stack.mlflow}/get-artifact",
        params={"path": "plots/confusion_matrix.png", "run_uuid": first_run["mlflow_run"]},
        auth=stack.mlflow_auth,
        timeout=30,
    )
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"

    # The model version carries the same lineage.
    version = stack.mlflow_get("model-versions/get", name=MODEL, version=first_run["version"])["model_version"]
    version_tags = tags(version)
    assert version_tags["dvc_data_md5"] == POINTER_MD5
    assert version_tags["mlflow_run_id"] == first_run["mlflow_run"]
    assert version_tags["prefect_flow_run_id"] == first_run["prefect_flow_run"]

    # Prefect: the flow run completed and its artifact names the MLflow run and version.
    flow_run = stack.prefect_get(f"flow_runs/{first_run['prefect_flow_run']}")
    assert flow_run["state"]["type"] == "COMPLETED"
    artifacts = stack.prefect_post("artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]}}})
    summary = next(a for a in artifacts if a["key"] == "p1-training-summary")
    assert first_run["mlflow_run"] in summary["data"]
    assert f"{MODEL} v{first_run['version']}" in summary["data"]
    assert f"{TEST_ROWS} predictions over HTTP" in summary["data"]

    # DVC: the data version is in the remote on the S3 server.
    key = f"p1_prefect_mlflow/files/md5/{POINTER_MD5[:2]}/{POINTER_MD5[2:]}"
    assert stack.s3().head_object(Bucket="dvc", Key=key)["ContentLength"] == RAW.stat().st_size


def test_the_live_endpoint_serves_the_champion_and_follows_it(stack: Stack, first_run: dict[str, str]) -> None:
    """endpoint.py, what `make p1-endpoint` runs, on a registered model of its own whose
    versions are the first run's model: it serves @champion with the version in every
    answer; the alias moves under a request loop and no request fails, each answered
    by the old or the new version; a version it cannot check is refused, the old serves on;
    restarted, it serves the current champion again."""
    name = "p1-endpoint-test"
    champion = stack.mlflow_get("registered-models/alias", name=MODEL, alias="champion")["model_version"]
    stack.mlflow_post("registered-models/create", {"name": name})
    model_id = champion["source"].removeprefix("models:/")  # MLflow 3: the logged model m-...
    good = {"name": name, "source": champion["source"], "model_id": model_id, "run_id": champion["run_id"]}
    v1, v2 = (stack.mlflow_post("model-versions/create", good)["model_version"]["version"] for _ in range(2))
    # The same files, from a run that recorded no digest: they cannot be checked.
    experiment = stack.mlflow_post("experiments/create", {"name": name})["experiment_id"]
    unrecorded = stack.mlflow_post("runs/create", {"experiment_id": experiment})["run"]["info"]["run_id"]
    stack.mlflow_post("registered-models/alias", {"name": name, "alias": "champion", "version": v1})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"P1_MODEL_NAME": name, "P1_ENDPOINT_PORT": str(port), "P1_ENDPOINT_POLL_SECONDS": "0.2"}

    def serving() -> str | None:
        try:
            return httpx.get(f"{base}/version", timeout=2).json()["version"]
        except httpx.HTTPError:
            return None

    rows = _raw_rows()[:7]
    columns = [c for c in rows[0] if c != "target"]
    body = {"dataframe_split": {"columns": columns, "data": [[float(r[c]) for c in columns] for r in rows]}}
    one_row = {"dataframe_split": {"columns": columns, "data": body["dataframe_split"]["data"][:1]}}
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def request_loop() -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            while not stop.is_set():
                try:
                    response = http.post("/invocations", json=one_row)
                except httpx.HTTPError as exc:  # a failed request is an answer too: it must not happen
                    answers.append((0, repr(exc)))
                    continue
                answers.append((response.status_code, response.headers.get("x-model-version", "")))

    with stack.in_background(P1, "python", "endpoint.py", env=env) as server:
        wait_for(lambda: serving() == v1, 180, f"serve version {v1}", server)
        response = httpx.post(f"{base}/invocations", json=body, timeout=60)
        assert response.status_code == 200 and response.headers["x-model-version"] == v1, response.text
        predictions = response.json()["predictions"]
        # The first rows of the data set are malignant (0): a trained model agrees on most.
        assert sum(p == int(r["target"]) for p, r in zip(predictions, rows, strict=True)) >= 6
        # The swap, under load.
        loop = threading.Thread(target=request_loop)
        loop.start()
        try:
            wait_for(lambda: len(answers) >= 20, 60, "answer the request loop", server)
            stack.mlflow_post("registered-models/alias", {"name": name, "alias": "champion", "version": v2})
            wait_for(lambda: serving() == v2, 120, f"serve version {v2}", server)
            seen = len(answers)
            wait_for(lambda: len(answers) >= seen + 20, 60, "answer after the swap", server)
        finally:
            stop.set()
            loop.join(timeout=30)
        assert {status for status, _ in answers} == {200}, [a for a in answers if a[0] != 200][:5]
        assert {version for _, version in answers} == {v1, v2}
        # A version that cannot be checked: refused, the old one serves on.
        bad = {**good, "run_id": unrecorded}
        v3 = stack.mlflow_post("model-versions/create", bad)["model_version"]["version"]
        stack.mlflow_post("registered-models/alias", {"name": name, "alias": "champion", "version": v3})
        wait_for(lambda: v3 in httpx.get(f"{base}/version", timeout=2).json()["refused"], 120, "refuse v3", server)
        assert serving() == v2
        response = httpx.post(f"{base}/invocations", json=body, timeout=60)
        assert response.status_code == 200 and response.headers["x-model-version"] == v2
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert (
        f"error: refused models:/{name}/{v3} (@champion): models:/{name}/{v3} (@champion) has no recorded digest"
        in output
    )
    assert f"fix: move @champion to a version that loads; version {v2} keeps serving" in output
    assert f"serving models:/{name}/{v2} (@champion), was {v1}" in output
    # Restarted (supervisord restarts it when it dies), it comes back on the current champion.
    stack.mlflow_post("registered-models/alias", {"name": name, "alias": "champion", "version": v2})
    with stack.in_background(P1, "python", "endpoint.py", env=env) as server:
        wait_for(lambda: serving() == v2, 180, f"serve version {v2} after a restart", server)
        response = httpx.post(f"{base}/invocations", json=one_row, timeout=60)
        assert response.status_code == 200 and response.headers["x-model-version"] == v2


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# ---- bad input ----------------------------------------------------------------------
def _raw_rows() -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(RAW.read_text())))


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _drop_column(rows):
    return [{k: v for k, v in r.items() if k != "mean_texture"} for r in rows]


def _non_numeric(rows):
    rows[4]["mean_radius"] = "abc"
    return rows


def _many_nans(rows):
    for i, row in enumerate(rows):
        if i % 8 == 0:
            row["worst_area"] = ""
    return rows


BAD_DATA = {
    "missing-column": (_drop_column, "lacks column(s) mean_texture"),
    "non-numeric": (_non_numeric, "column 'mean_radius' has non-numeric values, e.g. 'abc' at row 6"),
    "too-many-nans": (_many_nans, "column 'worst_area' is 12.7% missing, above the limit of 5.0%"),
}


def _snapshot(stack: Stack) -> tuple[list[str], str | None, set[str]]:
    return (
        [v["version"] for v in stack.model_versions(MODEL)],
        stack.alias_version(MODEL, "champion"),
        {r["info"]["run_id"] for r in stack.runs(EXPERIMENT)},
    )


def _run_flow(stack: Stack, *args: str, env: dict[str, str] | None = None):
    return stack.in_env(P1, "python", "flow.py", *args, env=env)


def _assert_failed_cleanly(done, expected: str) -> None:
    assert done.returncode == 1, done.output
    assert expected in done.stderr, done.stderr[-3000:]
    assert "fix:" in done.stderr
    assert "Result: pattern=p1 status=failed" in done.stderr


@pytest.mark.failure_mode
@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_fails_the_run_and_registers_nothing(
    stack: Stack, first_run: dict[str, str], tmp_path: Path, case: str
) -> None:
    corrupt, expected = BAD_DATA[case]
    project = tmp_path / f"bad-{case}-{time.time_ns()}"
    project.mkdir()
    _write_csv(project / "data.csv", corrupt(_raw_rows()))
    tracked = stack.in_env(
        P1,
        "python",
        str(Path(__file__).with_name("make_dvc_project.py")),
        str(project),
        "data.csv",
        env={
            "AWS_ACCESS_KEY_ID": stack.env["S3_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": stack.env["S3_SECRET_ACCESS_KEY"],
        },
    )
    assert tracked.returncode == 0, tracked.output
    (project / "data.csv").unlink()  # the flow must fetch it through DVC from S3
    versions, champion, runs = _snapshot(stack)

    done = _run_flow(stack, "--data-file", str(project / "data.csv"))
    _assert_failed_cleanly(done, expected)
    assert (project / "data.csv").exists(), "the flow should have pulled the data with DVC"

    versions_after, champion_after, runs_after = _snapshot(stack)
    assert (versions_after, champion_after) == (versions, champion)
    new_runs = runs_after - runs
    assert len(new_runs) == 1, "the failed attempt is recorded as exactly one MLflow run"
    run = stack.mlflow_get("runs/get", run_id=new_runs.pop())["run"]
    assert run["info"]["status"] == "FAILED"
    assert expected in tags(run["data"])["p1.error"]


@pytest.mark.failure_mode
def test_missing_data_file(stack: Stack, first_run: dict[str, str], tmp_path: Path) -> None:
    before = _snapshot(stack)
    done = _run_flow(stack, "--data-file", str(tmp_path / "nowhere.csv"))
    _assert_failed_cleanly(done, "does not exist and no DVC pointer nowhere.csv.dvc tracks it")
    assert _snapshot(stack) == before


@pytest.mark.parametrize(
    "variable, expected",
    [
        ("MLFLOW_TRACKING_URI", "MLflow tracking server at http://127.0.0.1:{port}/health is unreachable"),
        ("PREFECT_API_URL", "Prefect API at http://127.0.0.1:{port}/api/health is unreachable"),
    ],
)
@pytest.mark.failure_mode
def test_unreachable_service(stack: Stack, first_run: dict[str, str], variable: str, expected: str) -> None:
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}" + ("/api" if variable == "PREFECT_API_URL" else "")
    before = _snapshot(stack)
    done = _run_flow(stack, env={variable: url})
    _assert_failed_cleanly(done, expected.format(port=port))
    assert _snapshot(stack) == before


@pytest.mark.failure_mode
def test_wrong_s3_credentials(stack: Stack, first_run: dict[str, str]) -> None:
    before = _snapshot(stack)
    done = _run_flow(stack, env={"S3_SECRET_ACCESS_KEY": "not-the-secret"})
    _assert_failed_cleanly(done, f"rejected access key '{stack.env['S3_ACCESS_KEY_ID']}' (SignatureDoesNotMatch)")
    assert _snapshot(stack) == before


@pytest.mark.parametrize(
    "variable, expected",
    [
        ("MLFLOW_TRACKING_PASSWORD", "MLflow tracking server at {url} refused the request (401, wrong credentials)"),
        ("PREFECT_API_AUTH_STRING", "Prefect API at {url} refused the request (401, wrong credentials)"),
    ],
)
@pytest.mark.failure_mode
@pytest.mark.security
def test_wrong_credentials(stack: Stack, first_run: dict[str, str], variable: str, expected: str) -> None:
    """Refused before anything is written, with the variable to fix named."""
    url = (
        f"{stack.mlflow}/api/2.0/mlflow/experiments/search?max_results=1"
        if variable.startswith("MLFLOW")
        else f"{stack.prefect}/admin/version"
    )
    before = _snapshot(stack)
    done = _run_flow(stack, env={variable: "admin:not-the-password"})
    _assert_failed_cleanly(done, expected.format(url=url))
    assert f"fix: set {variable}" in done.stderr or f"and {variable}" in done.stderr, done.stderr
    assert _snapshot(stack) == before


@pytest.mark.failure_mode
@pytest.mark.security
def test_a_tampered_champion_is_refused_and_nothing_is_served(stack: Stack, first_run: dict[str, str]) -> None:
    """The champion's weights changed in S3 behind MLflow's back: the run stops before
    loading them, naming the version, and serves nothing; the registry is untouched."""
    champion = stack.mlflow_get("registered-models/alias", name=MODEL, alias="champion")["model_version"]
    model_id = champion["source"].removeprefix("models:/")
    s3 = stack.s3()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow", Prefix="artifacts/").get("Contents", [])]
    weights = next(k for k in keys if k.endswith(f"{model_id}/artifacts/model.skops"))
    original = s3.get_object(Bucket="mlflow", Key=weights)["Body"].read()
    before = _snapshot(stack)[:2]
    s3.put_object(Bucket="mlflow", Key=weights, Body=original[:-1] + bytes([original[-1] ^ 1]))
    try:
        done = _run_flow(stack)
    finally:
        s3.put_object(Bucket="mlflow", Key=weights, Body=original)
    _assert_failed_cleanly(done, f"the files of models:/{MODEL}/{champion['version']} (@champion) are not the ones")
    assert "Scored" not in done.output and "/invocations" not in done.output
    assert _snapshot(stack)[:2] == before, "a refused champion changed the registry"


@pytest.mark.failure_mode
def test_bad_parameter(stack: Stack, first_run: dict[str, str]) -> None:
    before = _snapshot(stack)
    done = _run_flow(stack, "--test-size", "0.9")
    _assert_failed_cleanly(done, "test_size=0.9 must be between 0.05 and 0.5")
    assert _snapshot(stack) == before


# ---- the loop: events retrain, the endpoint follows -------------------------------------
def test_the_loop_retrains_on_new_data_and_drift_through_triggers(stack: Stack, first_run: dict[str, str]) -> None:
    """`make pattern-1-loop` as a user runs it: `make pattern-1` again (the same data and
    parameters: reused, nothing registered), p1-retrain (cron + triggers) and the endpoint
    under the stack's supervisord; each retraining is a flow run the deployment's trigger
    created, on the data version its event named, through the champion gate (a weaker
    candidate kept out and why; a better one promoted), and the endpoint answers with the
    champion. Then one new data version announced twice (one training), and an event naming a
    data version that does not exist (a failed run that says so, nothing registered).
    It moves p1-breast-cancer@champion: it runs after the tests that read v1 as champion."""
    env = {"P1_ENDPOINT_PORT": str(free_port()), "P1_ENDPOINT_POLL_SECONDS": "0.5"}
    batches = P1 / "data" / "batches"
    done = None
    try:
        done = stack.make("pattern-1-loop", env=env)
        assert done.returncode == 0, done.output
        loop = parse_result(done.stdout)
        after_loop = stack.alias_version(MODEL, "champion")
        # `make pattern-1` first: the first run's training, reused.
        again = dict(f.split("=", 1) for f in RESULT_RE.findall(done.stdout)[0].split())
        assert (again["decision"], again["mlflow_run"]) == ("reused", first_run["mlflow_run"])
        assert "no new run, no new model version" in done.output
        # New data like the bundled set, against a champion trained on the bundled rows
        # (which it has seen): the weaker candidate is kept out, the endpoint stays on v1.
        assert (loop["data_decision"], loop["data_endpoint"]) == ("kept-champion", "1"), done.stdout[-3000:]
        runs = {r["info"]["run_id"]: r for r in stack.runs(EXPERIMENT)}

        # The deployment: the cron schedule stays, next to one trigger per event.
        by_name = {"deployments": {"name": {"any_": ["p1-retrain"]}}}
        deployment = stack.prefect_post("deployments/filter", by_name)[0]
        assert [(s["schedule"]["cron"], s["active"]) for s in deployment["schedules"]] == [("0 3 * * *", True)]
        automations = stack.prefect_get(f"automations/related-to/prefect.deployment.{deployment['id']}")
        assert sorted(a["trigger"]["expect"][0] for a in automations) == ["p1.data.published", "p1.drift.detected"]

        def triggered(flow_run_id: str, event: str, batch: str) -> dict:
            """The run the trigger made from `event`, on `batch`'s version: its MLflow training run."""
            flow_run = stack.prefect_get(f"flow_runs/{flow_run_id}")
            assert flow_run["deployment_id"] == deployment["id"] and flow_run["state_type"] == "COMPLETED"
            assert flow_run["created_by"]["type"] == "AUTOMATION", flow_run["created_by"]  # not this test
            md5 = yaml.safe_load((batches / f"{batch}.csv.dvc").read_text())["outs"][0]["md5"]
            assert flow_run["parameters"] == {
                "data_file": f"data/batches/{batch}.csv",
                "data_md5": md5,
                "trigger_event": event,
            }
            trained = [r for r in runs.values() if tags(r["data"]).get("prefect_flow_run_id") == flow_run_id]
            assert len(trained) == 1 and tags(trained[0]["data"])["dvc_data_md5"] == md5
            assert tags(trained[0]["data"])["p1.trigger_event"] == event
            return trained[0]

        n = loop["batches"].removeprefix("loop-")  # this run's loop-N-*
        kept = triggered(loop["data_run"], loop["data_event"], f"loop-{n}-fresh")
        assert tags(kept["data"])["p1.decision"] == "kept-champion" and "p1.model_version" not in tags(kept["data"])
        assert f"does not beat champion v{first_run['version']}" in tags(kept["data"])["p1.decision_reason"]
        registered = stack.mlflow_get("model-versions/search", filter=f"run_id='{kept['info']['run_id']}'")
        assert not registered.get("model_versions"), registered
        drift_trained = triggered(loop["drift_run"], loop["drift_event"], f"loop-{n}-shifted")
        assert loop["data_event"].startswith("p1.data.published:")
        assert loop["drift_event"].startswith("p1.drift.detected:")
        assert float(loop["calm_drift"]) < 0.5 <= float(loop["drift_share"])
        # The recalibrated batch beats the champion trained on the old scale; the endpoint follows.
        assert loop["drift_decision"] == "promoted" and loop["champion"] == loop["endpoint"] == after_loop
        assert tags(drift_trained["data"])["p1.model_version"] == after_loop
        traced = stack.make("lineage", env={"ID": drift_trained["info"]["run_id"]})
        assert traced.returncode == 0, traced.output
        assert f"was started by the Prefect event {loop['drift_event']}" in traced.stdout
        assert f"data/batches/loop-{n}-shifted.csv.dvc (a derived batch's pointer" in traced.stdout
        # The drift reports: one MLflow run per scoring, with Evidently's HTML.
        reports = [r for r in runs.values() if tags(r["data"]).get("p1.kind") == "drift"]
        assert sorted(tags(r["data"])["p1.drift_detected"] for r in reports) == ["false", "true"]
        for report in reports:
            listed = stack.mlflow_get("artifacts/list", run_id=report["info"]["run_id"], path="drift")
            assert [(f["path"], f["file_size"] > 100_000) for f in listed["files"]] == [("drift/report.html", True)]

        # New data announced twice (two events naming one version): two triggered runs, one
        # training; promoted (the champion knows only the x1.5 scale), and the endpoint
        # answers with it. Then an event naming a version that does not exist.
        bogus = "0" * 32
        script = (
            "import data, events, settings; found = settings.load_settings(); path = data.BATCHES / 'twice.csv'; "
            "data.derive_batch(path, 9, 0.0); version = data.publish_new(path, found); "
            "data.announce(version); data.announce(version); "
            f"events.emit(events.DATA_PUBLISHED, 'data/batches/twice.csv', '{bogus}')"
        )
        both = stack.in_env(P1, "python", "-c", script, env=env)
        assert both.returncode == 0, both.output
        twice_md5 = yaml.safe_load((batches / "twice.csv.dvc").read_text())["outs"][0]["md5"]

        def runs_on(md5: str, count: int) -> list[dict]:
            flow_runs = stack.prefect_post("flow_runs/filter", {"deployments": {"id": {"any_": [deployment["id"]]}}})
            found = [r for r in flow_runs if r["parameters"].get("data_md5") == md5]
            final = [r for r in found if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
            return final if len(final) == count else []

        twice = wait_for(lambda: runs_on(twice_md5, 2), 240, "two runs on the twice-published data")
        assert [r["state_type"] for r in twice] == ["COMPLETED", "COMPLETED"]
        trained = [r for r in stack.runs(EXPERIMENT) if tags(r["data"]).get("dvc_data_md5") == twice_md5]
        assert len(trained) == 1, "the same data version, twice: one training"
        promoted = tags(trained[0]["data"])["p1.model_version"]
        assert promoted == stack.alias_version(MODEL, "champion") != after_loop
        port = env["P1_ENDPOINT_PORT"]
        wait_for(lambda: _serving(port) == promoted, 120, f"the endpoint on v{promoted}")
        row = _raw_rows()[0]
        columns = [c for c in row if c != "target"]
        one_row = {"dataframe_split": {"columns": columns, "data": [[float(row[c]) for c in columns]]}}
        response = httpx.post(f"http://127.0.0.1:{port}/invocations", json=one_row, timeout=30)
        assert response.status_code == 200 and response.headers["x-model-version"] == promoted

        # An event naming a version that does not exist: a failed run that names it.
        versions = stack.model_versions(MODEL)
        failed = wait_for(lambda: runs_on(bogus, 1), 120, "the run on a data version that does not exist")[0]
        assert failed["state_type"] == "FAILED"
        assert f"data version {bogus} was asked for, but" in failed["state"]["message"]
        assert "twice.csv.dvc names " + twice_md5 in failed["state"]["message"]
        assert "Fix: publish that version of twice.csv again" in failed["state"]["message"]
        assert stack.model_versions(MODEL) == versions and _serving(port) == promoted
    finally:
        for program in ("p1-retrain", "p1-endpoint"):
            stack.stack_py("remove", program)
        remove_loop_batches(done.stdout if done else "", "twice.csv")


def _serving(port: str) -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/version", timeout=2).json()["version"]
    except httpx.HTTPError:
        return None
