"""`make lineage` / infra/lineage/lineage.py against real pattern runs: the
chain is asked for from every kind of id a pattern's run produces, and every
link must equal what is known independently (the pattern's Result line, `git
rev-parse HEAD` of this checkout, the DVC pointer's md5, the sha256 of the
data's bytes, the objects in S3). Then ids that match nothing, and the make
target's usage error.

The runs are on the session stack: patterns 1 and 4 are the session's first
runs (tests/conftest.py), which their smoke tests read too; pattern 3 runs one
training run here. Pattern 2's chain is checked beside its first run, in
tests/p2_airflow_kfp/test_p2.py (its Airflow services start once per session).
"""

from __future__ import annotations

import hashlib
import re
import subprocess

import pytest
import yaml
from conftest import LINEAGE_RE, PATTERNS, REPO, Stack, commit_of, in_env, lineage_chain, parse_result

pytestmark = pytest.mark.stack

P1 = PATTERNS / "p1_prefect_mlflow"
P2 = PATTERNS / "p2_airflow_kfp"
P3 = PATTERNS / "p3_metaflow_prefect"
P4 = PATTERNS / "p4_github_actions_prefect"
LINEAGE = REPO / "infra" / "lineage" / "lineage.py"
FLOW_RUN_URL = re.compile(r"View at \S+/runs/flow-run/([0-9a-f-]{36})")
HEAD = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def lstack(stack: Stack, p2_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """The session stack, with pattern 2's state folder (its Airflow runs) and a
    Metaflow metadata folder of this module's: what lineage.py reads."""
    metadata = tmp_path_factory.mktemp("lineage-metaflow")
    env = p2_env | {"P3_METAFLOW_METADATA_DIR": str(metadata)}
    return Stack(env=env, state_dir=stack.state_dir)


def lineage(stack: Stack, given: str, *args: str, env: dict[str, str] | None = None):
    return in_env(REPO, "python", str(LINEAGE), given, *args, env={**stack.env, **(env or {})}, cwd=REPO)


def chain(stack: Stack, given: str, *args: str) -> dict[str, str]:
    return lineage_chain(stack, given, *args)


def links(found: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in found.items() if not k.startswith("_")}


# ---- pattern 1: model version, MLflow run, Prefect flow run -----------------------
def test_p1_chain_from_model_version_mlflow_run_and_prefect_run(lstack: Stack, p1_first_run: dict[str, str]) -> None:
    result = p1_first_run
    assert result["decision"] == "promoted", result["_output"][-3000:]
    md5 = yaml.safe_load((P1 / "data" / "raw" / "breast_cancer.csv.dvc").read_text())["outs"][0]["md5"]
    expected = {
        "pattern": "p1",
        "git_commit": commit_of(P1),
        "data_version": md5,
        "orchestrator_run": result["prefect_flow_run"],
        "tracker_run": result["mlflow_run"],
        "model_version": f"{result['model']}/{result['version']}",
    }
    for given in (
        f"models:/{result['model']}/{result['version']}",
        f"{result['model']}/{result['version']}",
        result["mlflow_run"],
        result["prefect_flow_run"],
    ):
        found = chain(lstack, given)
        assert links(found) == expected, (given, found["_output"])
    # The alias, through the make target, as a user asks for it.
    by_make = lstack.make("lineage", env={"ID": f"models:/{result['model']}@champion"})
    assert by_make.returncode == 0, by_make.output[-3000:]
    line = LINEAGE_RE.findall(by_make.stdout)
    assert len(line) == 1 and dict(f.split("=", 1) for f in line[0].split()) == expected, by_make.stdout
    # The DVC remote really holds the bytes of that data version where the chain says.
    s3 = lstack.s3()
    assert s3.head_object(Bucket="dvc", Key=f"p1_prefect_mlflow/files/md5/{md5[:2]}/{md5[2:]}")
    assert f"s3://dvc/p1_prefect_mlflow/files/md5/{md5[:2]}/{md5[2:]}" in found["_output"]


# ---- pattern 2: tests/p2_airflow_kfp/test_p2.py follows its first run's model back
# (the training run, the asset event, the ETL run), on the Airflow services it started.


# ---- pattern 3: Metaflow run, Prefect flow run ------------------------------------
def test_p3_chain_from_metaflow_run_and_prefect_run(lstack: Stack) -> None:
    p3_env = {"P3_METAFLOW_METADATA_DIR": lstack.env["P3_METAFLOW_METADATA_DIR"]}
    done = lstack.in_env(P3, "python", "flow.py", "train-one", "--n-estimators", "20", "--max-depth", "4", env=p3_env)
    assert done.returncode == 0, done.output[-5000:]
    pathspec = parse_result(done.stdout)["pathspec"]
    match = FLOW_RUN_URL.search(done.output)
    assert match, done.output[-3000:]
    flow_run_id = match.group(1)
    # Independently: the Prefect flow run's own artifact names that Metaflow run.
    artifacts = lstack.prefect_post("artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    assert any(f"`{pathspec}`" in (a.get("data") or "") for a in artifacts), artifacts
    expected = {
        "pattern": "p3",
        "git_commit": commit_of(P3),
        "data_version": hashlib.sha256((P3 / "data" / "digits.csv").read_bytes()).hexdigest(),
        "orchestrator_run": flow_run_id,
        "tracker_run": pathspec,
    }
    for given in (pathspec, flow_run_id):
        found = chain(lstack, given)
        model = found.pop("model_version")
        assert links(found) == expected, (given, found["_output"])
        assert re.fullmatch(rf"{re.escape(pathspec)}/train/\d+/model", model), model
    # The model artifact is where the chain says: Metaflow's content-addressed store on S3.
    location = re.search(r"(s3://metaflow/\S+/data/[0-9a-f]{2}/[0-9a-f]{40})", found["_output"])
    assert location, found["_output"]
    bucket, key = location.group(1).removeprefix("s3://").split("/", 1)
    assert lstack.s3().head_object(Bucket=bucket, Key=key)


# ---- pattern 4: release, Prefect flow run -----------------------------------------
def test_p4_chain_from_release_and_prefect_run(lstack: Stack, p4_cycle: dict) -> None:
    result = p4_cycle["result"]
    release, run = result["release"], result["retrain_run"]
    assert release.startswith(HEAD)
    card = f"s3://p4-models/models/{release}/{run}/model.json"
    expected = {
        "pattern": "p4",
        "git_commit": HEAD,
        "data_version": hashlib.sha256((P4 / "data" / "wine.csv").read_bytes()).hexdigest(),
        "orchestrator_run": run,
        "tracker_run": card,
        "model_version": result["model"],
    }
    for given in (release, HEAD, run):
        found = chain(lstack, given)
        assert links(found) == expected, (given, found["_output"])
    # A batch-score run publishes no model: its own links are unknown, not invented.
    found = chain(lstack, result["score_run"])
    assert found["orchestrator_run"] == result["score_run"] and found["git_commit"] == HEAD
    assert found["model_version"] == found["tracker_run"] == found["data_version"] == "unknown"
    assert "only p4-retrain runs publish models" in found["_output"]


# ---- ids that match nothing, and the make target -----------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "00000000-0000-4000-8000-000000000000",
            "no prefect-run '00000000-0000-4000-8000-000000000000' in the Prefect API",
        ),
        ("0" * 32, "no mlflow-run '00000000000000000000000000000000' in MLflow"),
        ("models:/no-such-model/1", "has no version 1 of registered model 'no-such-model'"),
        ("local-000000000000", "no kfp-run 'local-000000000000' in the run records s3://p2-data/runs/"),
        ("p2_train/manual__1999-01-01T00:00:00+00:00", "no airflow-run"),
        ("P3TrainFlow/1", "no metaflow-run 'P3TrainFlow/1' in Metaflow's metadata"),
        ("f" * 40, "no release 'ffffffffffffffffffffffffffffffffffffffff' in s3://p4-models/models/"),
        ("what-is-this", "'what-is-this' is not an id this command knows"),
    ],
)
def test_unknown_id_fails_naming_what_was_searched(lstack: Stack, given: str, expected: str) -> None:
    done = lineage(lstack, given)
    assert done.returncode == 1, done.output[-3000:]
    assert expected in done.stderr and "fix: " in done.stderr, done.stderr
    assert "Lineage:" not in done.stdout


def test_unreachable_service_names_the_variable(lstack: Stack) -> None:
    done = lineage(lstack, "00000000-0000-4000-8000-000000000000", env={"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert done.returncode == 1
    assert "the Prefect API at http://127.0.0.1:9/api" in done.stderr and "PREFECT_API_URL" in done.stderr


def test_make_lineage_without_id_says_what_to_pass(lstack: Stack) -> None:
    usage = lstack.make("lineage", env={"ID": ""})
    assert usage.returncode != 0
    assert "usage: make lineage ID=" in usage.stderr and "models:/p1-breast-cancer@champion" in usage.stderr
    done = lstack.make("lineage", env={"ID": "models:/no-such-model@champion"})
    assert done.returncode != 0 and "has no alias 'champion' of registered model 'no-such-model'" in done.stderr
