"""Pattern 4 against a real local stack: the CD cycle the way a user runs it
(`make pattern-4`: lint, test, build, `prefect deploy`, run on a worker,
verify), then what must hold around it: a redeploy changes nothing, a failing
test stops the cycle before deploy, prefect.yaml's deployments resolve to
flows with valid parameters, and bad input fails clearly without publishing.

Asserts on what the cycle produced: the deployments and flow runs in Prefect
(versions, tags, pull step), the model, its card and the predictions on S3,
and the snapshot the worker ran the code from."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PATTERNS, REPO, Stack, check_ui, free_port, parse_result

pytestmark = pytest.mark.stack

P4 = PATTERNS / "p4_github_actions_prefect"
DEPLOYMENTS = ("p4-retrain/p4-retrain", "p4-batch-score/p4-batch-score")
WINE_SHA = hashlib.sha256((P4 / "data" / "wine.csv").read_bytes()).hexdigest()
HEAD = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


def deployment(stack: Stack, name: str) -> dict:
    return stack.prefect_get(f"deployments/name/{name}")


def deployments_named(stack: Stack, names: list[str]) -> list[dict]:
    return stack.prefect_post("deployments/filter", {"deployments": {"name": {"any_": names}}})


def runs_of(stack: Stack, deployment_id: str) -> list[dict]:
    return stack.prefect_post("flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}})


def s3_json(stack: Stack, key: str) -> dict:
    return json.loads(stack.s3().get_object(Bucket="p4-models", Key=key)["Body"].read())


@pytest.fixture(scope="module")
def cycle(p4_cycle: dict) -> dict:
    """`make pattern-4`, the first release of this commit (tests/conftest.py: lineage reads the same run)."""
    return p4_cycle


def test_local_cycle_runs_every_stage_in_order_and_ships_a_model(stack: Stack, cycle: dict) -> None:
    out, result = cycle["output"], cycle["result"]
    stages = [out.index(f"stage {n}/5: {name}") for n, name in enumerate(("lint", "test", "build", "deploy", "run"), 1)]
    assert stages == sorted(stages), "the stages ran out of order"
    assert "passed" in out[stages[1] : stages[2]], "the test stage ran no tests"
    # No Docker engine in the test environment: the build says it shipped source.
    assert result["mode"] == "source" and "SOURCE snapshot, not an image" in out
    release = result["release"]
    assert release.startswith(HEAD), f"release {release} is not this commit {HEAD}"
    assert (
        result["pattern"] == "p4"
        and result["status"] == "ok"
        and result["state"] == "COMPLETED"
        and result["new_run"] == "true"
    )

    # Prefect: both deployments carry the release, the commit, the pool and the pull step.
    snapshot = Path(stack.env["P4_STATE_DIR"]) / "releases" / release
    for name in DEPLOYMENTS:
        d = deployment(stack, name)
        assert d["version"] == release
        assert f"git:{HEAD}" in d["tags"] and f"release:{release}" in d["tags"]
        assert d["work_pool_name"] == "p4-process"
        assert d["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(snapshot)}}]
        assert d["enforce_parameter_schema"] is True
    retrain = deployment(stack, DEPLOYMENTS[0])
    assert [s["schedule"]["cron"] for s in retrain["schedules"]] == ["0 3 * * 1"]
    assert deployment(stack, DEPLOYMENTS[1])["schedules"] == []

    # The flow run: from the retrain deployment, tagged with the release, run by the local worker.
    run = stack.prefect_get(f"flow_runs/{result['retrain_run']}")
    assert run["deployment_id"] == retrain["id"] and run["state"]["type"] == "COMPLETED"
    assert f"release:{release}" in run["tags"]
    assert run["labels"]["prefect.worker.name"].startswith("p4-worker-pid")

    # S3: the model, its card and the pointer; the card traces to commit, data, run and snapshot.
    prefix = f"models/{release}/{result['retrain_run']}"
    card = s3_json(stack, f"{prefix}/model.json")
    assert card["release"] == release and card["git_sha"] == HEAD
    assert card["flow_run_id"] == result["retrain_run"] and card["data_sha256"] == WINE_SHA
    assert card["artifact"] == f"source:{release}"
    assert card["code_dir"] == str(snapshot), "the run imported code from outside its release snapshot"
    assert card["model_url"] == result["model"] == f"s3://p4-models/{prefix}/model.joblib"
    assert s3_json(stack, "models/latest.json") == card
    assert float(result["accuracy"]) == card["metrics"]["accuracy"] >= 0.85

    # The snapshot is read-only and is exactly the release's files.
    manifest = json.loads((snapshot / "RELEASE.json").read_text())
    assert manifest["release"] == release and "flow.py" in manifest["files"] and "tests" not in str(manifest["files"])
    assert (snapshot / "flow.py").read_bytes() == (P4 / "flow.py").read_bytes()
    assert not (snapshot / "flow.py").stat().st_mode & 0o222

    # Batch scoring used that model; its predictions are on S3.
    lines = (
        stack.s3()
        .get_object(Bucket="p4-models", Key=f"predictions/{release}/{result['score_run']}.csv")["Body"]
        .read()
        .decode()
        .splitlines()
    )
    assert lines[0].endswith(",prediction") and len(lines) == 41 == int(result["rows"]) + 1
    assert {line.rsplit(",", 1)[1] for line in lines[1:]} <= {"0", "1", "2"}

    # And the published model loads and predicts outside Prefect.
    check = stack.in_env(
        P4,
        "python",
        "-c",
        "from settings import load_settings; from store import ModelStore; from train import read_csv, predict;"
        "s = ModelStore(load_settings()); c = s.card(); m = s.load_model(c);"
        "print(predict(m, c['features'], read_csv(__import__('pathlib').Path('data/wine.csv')))[:3].tolist())",
    )
    assert check.returncode == 0 and check.stdout.strip() == "[0, 0, 0]", check.output[-2000:]


@pytest.mark.browser
def test_the_pages_the_readme_shows_show_the_release(ui, cycle: dict) -> None:
    """Prefect's UI: the deployment with the commit SHA as its version, and the retraining
    run's model card naming that release (tests/conftest.py check_ui)."""
    fields = check_ui(ui, "p4_github_actions_prefect", cycle["result"])
    assert fields["release"] == cycle["result"]["release"]


@pytest.mark.failure_mode
def test_redeploy_and_rerun_are_idempotent(stack: Stack, cycle: dict) -> None:
    release = cycle["result"]["release"]
    before = {d["name"]: d for d in deployments_named(stack, ["p4-retrain", "p4-batch-score"])}
    runs_before = runs_of(stack, before["p4-retrain"]["id"])

    again = stack.make("p4-deploy")
    assert again.returncode == 0, again.output[-3000:]
    after = deployments_named(stack, ["p4-retrain", "p4-batch-score"])
    assert sorted(d["name"] for d in after) == ["p4-batch-score", "p4-retrain"], "a redeploy duplicated a deployment"
    for d in after:
        assert d["id"] == before[d["name"]]["id"] and d["version"] == release
        assert len(d["schedules"]) == len(before[d["name"]]["schedules"]), "a redeploy duplicated a schedule"

    # Re-running the pipeline for the same release (a CI retry) does not retrain twice.
    rerun = stack.make("p4-run")
    assert rerun.returncode == 0, rerun.output[-3000:]
    result = parse_result(rerun.stdout)
    assert result["new_run"] == "false" and result["retrain_run"] == cycle["result"]["retrain_run"]
    assert "not running it twice" in rerun.output
    assert len(runs_of(stack, before["p4-retrain"]["id"])) == len(runs_before)


@pytest.mark.failure_mode
def test_a_failing_test_stops_the_cycle_before_deploy(stack: Stack, cycle: dict, tmp_path: Path) -> None:
    copy = tmp_path / "p4"
    shutil.copytree(P4, copy, ignore=shutil.ignore_patterns(".venv", ".state", "__pycache__", ".pytest_cache"))
    (copy / "tests" / "test_regression.py").write_text(
        "def test_a_regression_someone_just_pushed():\n    assert 1 + 1 == 3\n"
    )
    before = {d["name"]: d for d in deployments_named(stack, ["p4-retrain", "p4-batch-score"])}
    runs_before = runs_of(stack, before["p4-retrain"]["id"])
    state = Path(stack.env["P4_STATE_DIR"])
    record = (state / "release.json").read_text()
    built = sorted(p.name for p in (state / "build").iterdir())

    failed = stack.make("pattern-4", f"P4={copy}")
    assert failed.returncode != 0
    assert "stage 2/5: test" in failed.output and "1 failed" in failed.output
    assert "stage 3/5" not in failed.output and "stage 4/5" not in failed.output
    # Nothing built, published or recorded for the copy's release (outside git: `src.<hash>`).
    assert (state / "release.json").read_text() == record
    assert sorted(p.name for p in (state / "build").iterdir()) == built
    assert not [p for p in (state / "releases").iterdir() if p.name.startswith("src.")]
    for d in deployments_named(stack, ["p4-retrain", "p4-batch-score"]):
        assert d["version"] == before[d["name"]]["version"] and d["updated"] == before[d["name"]]["updated"]
    assert len(runs_of(stack, before["p4-retrain"]["id"])) == len(runs_before)


VALIDATE = """
import json, sys
from pathlib import Path
import yaml
from prefect.flows import load_flow_from_entrypoint
config = yaml.safe_load(Path("prefect.yaml").read_text())
out = []
for spec in config["deployments"]:
    flow = load_flow_from_entrypoint(spec["entrypoint"])
    flow.validate_parameters(spec.get("parameters") or {})  # pydantic, as a run would
    out.append({"name": spec["name"], "flow": flow.name, "params": sorted(spec.get("parameters") or {})})
print(json.dumps(out))
"""


def test_every_deployment_in_prefect_yaml_is_importable_with_valid_parameters(stack: Stack) -> None:
    dry = stack.make("p4-validate")
    assert dry.returncode == 0, dry.output[-3000:]
    assert "ok  p4-retrain/p4-retrain" in dry.stdout and "ok  p4-batch-score/p4-batch-score" in dry.stdout

    loaded = stack.in_env(P4, "python", "-c", VALIDATE)
    assert loaded.returncode == 0, loaded.output[-3000:]
    found = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert [(d["name"], d["flow"]) for d in found] == [
        ("p4-retrain", "p4-retrain"),
        ("p4-batch-score", "p4-batch-score"),
    ]

    # A broken prefect.yaml lists each of its problems: checked, with no server, by the
    # folder's fast tests (patterns/p4_github_actions_prefect/tests/test_deploy.py, `make p4-test`).


@pytest.mark.failure_mode
def test_bad_input_fails_clearly_and_publishes_nothing(stack: Stack, cycle: dict, tmp_path: Path) -> None:
    retrain = deployment(stack, DEPLOYMENTS[0])
    latest = s3_json(stack, "models/latest.json")

    # A parameter out of range: the server refuses the run (enforced schema), nothing runs.
    refused = stack.prefect_post_raw(
        f"deployments/{retrain['id']}/create_flow_run", {"parameters": {"min_accuracy": 2}}
    )
    assert refused.status_code in (409, 422) and "min_accuracy" in refused.text, refused.text

    # A model below the gate: the run FAILS with the reason, and no model is published.
    noisy = tmp_path / "noisy.csv"
    rows = (P4 / "data" / "wine.csv").read_text().splitlines()
    noisy.write_text("\n".join([rows[0]] + [r.rsplit(",", 1)[0] + f",{i % 3}" for i, r in enumerate(rows[1:])]))
    created = stack.prefect_post(
        f"deployments/{retrain['id']}/create_flow_run",
        {"parameters": {"data_file": str(noisy), "min_accuracy": 0.85}},
    )
    final = stack.final_flow_run(created["id"], "the gated run to finish")
    assert final["state"]["type"] == "FAILED", final["state"]
    assert "below min_accuracy=0.85; nothing was published" in final["state"]["message"]
    listed = stack.s3().list_objects_v2(
        Bucket="p4-models", Prefix=f"models/{cycle['result']['release']}/{created['id']}"
    )
    assert listed.get("KeyCount", 0) == 0
    assert s3_json(stack, "models/latest.json") == latest, "a failed run changed the model in service"

    # Prefect unreachable at deploy; an invalid setting: clear one-line errors, exit 1, no traceback.
    dead = stack.make("p4-deploy", env={"PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"})
    assert dead.returncode != 0 and "does not answer" in dead.output and "Traceback" not in dead.output
    wrong = stack.make("p4-build", env={"P4_BUILD": "wheel"})
    assert wrong.returncode != 0 and "P4_BUILD" in wrong.output and "Traceback" not in wrong.output
    # A wrong auth string: refused before anything is deployed, the variable named.
    refused = stack.make("p4-deploy", env={"PREFECT_API_AUTH_STRING": "admin:not-the-password"})
    assert refused.returncode != 0 and "refused the request (401)" in refused.output, refused.output
    assert "fix: set PREFECT_API_AUTH_STRING" in refused.output and "Traceback" not in refused.output


@pytest.mark.security
def test_a_tampered_model_is_refused_and_nothing_is_scored(stack: Stack, cycle: dict) -> None:
    """The model in service swapped in the bucket (its card left alone): the scoring
    run fails naming the mismatch before unpickling it, and writes no predictions."""
    latest = s3_json(stack, "models/latest.json")
    key = latest["model_url"].removeprefix("s3://p4-models/")
    s3 = stack.s3()
    original = s3.get_object(Bucket="p4-models", Key=key)["Body"].read()
    s3.put_object(Bucket="p4-models", Key=key, Body=original + b"tampered")
    try:
        score = deployment(stack, DEPLOYMENTS[1])
        created = stack.prefect_post(f"deployments/{score['id']}/create_flow_run", {"parameters": {}})
        final = stack.final_flow_run(created["id"], "the scoring run to finish")
    finally:
        s3.put_object(Bucket="p4-models", Key=key, Body=original)
    assert final["state"]["type"] == "FAILED", final["state"]
    assert "is not the one its card records" in final["state"]["message"], final["state"]["message"]
    listed = s3.list_objects_v2(Bucket="p4-models", Prefix="predictions/").get("Contents", [])
    assert not [o["Key"] for o in listed if created["id"] in o["Key"]], "a refused model scored a batch"


def test_the_pull_request_report_compares_with_the_model_in_service(stack: Stack, cycle: dict) -> None:
    """`make p4-report` (p4-cd.yml's report job) after the cycle published a
    model: the model in service is scored on the branch's held-out rows. Same
    code, data and parameters: its accuracy there is the one its card records."""
    done = stack.make("p4-report")
    assert done.returncode == 0, done.output[-3000:]
    result = parse_result(done.stdout)
    card = s3_json(stack, "models/latest.json")
    assert result["in_service"] == str(card["metrics"]["accuracy"]) and result["gate"] == "passes"
    report = Path(result["report"]).read_text()
    assert f"| in service (release `{card['release'][:12]}`) | {card['metrics']['accuracy']} |" in report
    assert (Path(result["report"]).parent / "confusion_matrix.png").stat().st_size > 1000
