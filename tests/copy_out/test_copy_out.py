"""Each pattern folder works on its own, copied out of this repository.

For each pattern: copy the files git tracks in its folder (nothing else: no
`.venv`, no `.state`, no root files) into a fresh folder outside the
repository, make it a new git repository, and follow the README's "Copy into
your project" steps literally, as a user would: `cp .env.example .env` and
point it at the test's stack (the only thing from the repository the copy
may use), `uv sync --locked`, then the commands the README gives, run from
inside the copy with an environment stripped of every variable the
repository's Makefile and tests set. The settings must come from the copy's
`.env`. Then assert on what the run produced in the stack's services.

The names (MLflow model, buckets, work pools, deployments) are the copy's
own, set in `.env`, so these runs do not disturb the other tests' objects.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import REPO, UV, Completed, Stack, parse_result, run, wait_for

pytestmark = pytest.mark.stack

# What a user's shell has; everything else (PREFECT_*, MLFLOW_*, S3_*, P1_-P4_*,
# STACK_*, DO_NOT_TRACK, VIRTUAL_ENV...) is the repository's and is dropped.
KEEP = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "TZ", "SHELL"}
KEEP_PREFIXES = ("UV_", "SSL_CERT", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
DROP = {"UV_PROJECT", "UV_PROJECT_ENVIRONMENT"}


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if (k in KEEP or k.upper().startswith(KEEP_PREFIXES)) and k not in DROP}
    # PATH without this repository's environments (`uv run` put one first).
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and not Path(p).resolve().is_relative_to(REPO)
    )
    leaked = [k for k in env if k.startswith(("PREFECT_", "MLFLOW_", "S3_", "P1_", "P2_", "P3_", "P4_", "AWS_"))]
    assert not leaked, f"the copy must get its settings from .env, not from {leaked}"
    return env


def git(copy: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=copy-out", "-c", "user.email=copy-out@example.invalid", *args],
        cwd=copy,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout.strip()


def copy_out(pattern: str, parent: Path) -> Path:
    """The files git tracks in patterns/<pattern>, as a new git repository."""
    assert not parent.resolve().is_relative_to(REPO), f"{parent} is inside the repository"
    folder = f"patterns/{pattern}"
    listed = subprocess.run(["git", "ls-files", "-z", "--", folder], cwd=REPO, capture_output=True, text=True)
    files = [f for f in listed.stdout.split("\0") if f]
    assert listed.returncode == 0 and files, f"git ls-files {folder} found nothing: {listed.stderr}"
    copy = parent / pattern
    for name in files:
        target = copy / Path(name).relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    git(copy, "init", "-q", "-b", "main")
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "-m", f"add {pattern}, copied from hybrid-ml-orchestration-patterns")
    return copy


def edit_env(path: Path, **values: str) -> None:
    """Set KEY=value in a .env the way a person edits it: the existing line (or
    the commented-out example) is changed, a missing key is added at the end."""
    lines = path.read_text().splitlines()
    for key, value in values.items():
        line = re.compile(rf"^#?\s*{re.escape(key)}=")
        at = next((i for i, text in enumerate(lines) if line.match(text)), None)
        if at is None:
            lines.append(f"{key}={value}")
        else:
            lines[at] = f"{key}={value}"
    path.write_text("\n".join(lines) + "\n")


def dot_env(copy: Path, **values: str) -> None:
    """README: `cp .env.example .env`, then point it at your servers."""
    shutil.copy(copy / ".env.example", copy / ".env")
    edit_env(copy / ".env", **values)


def ok(done: Completed, what: str) -> Completed:
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.output[-5000:]}"
    return done


def sh(copy: Path, *command: str, cwd: Path | None = None, timeout: float = 900) -> Completed:
    return run(list(command), env=user_env(), cwd=cwd or copy, timeout=timeout)


def sync(copy: Path, cwd: Path | None = None) -> None:
    ok(sh(copy, UV, "sync", "--locked", cwd=cwd), f"uv sync --locked in {cwd or copy}")


def fast_tests(copy: Path, cwd: Path | None = None) -> None:
    """The folder's own tests (its tests/), as the README says: `uv run pytest`
    in the copy, no service. They must be collected and pass there."""
    done = ok(sh(copy, UV, "run", "--locked", "pytest", "-q", cwd=cwd), "uv run pytest")
    assert re.search(r"\b\d+ passed\b", done.stdout) and " skipped" not in done.stdout, done.stdout[-2000:]


@contextmanager
def background(copy: Path, *command: str, log: Path) -> Iterator[subprocess.Popen]:
    """A long-running command started from the copy (a worker, `cmd &`), always
    stopped with its process group: SIGTERM, then SIGKILL after 30 s."""
    with log.open("w") as out:
        process = subprocess.Popen(
            list(command), cwd=copy, env=user_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


def s3_keys(stack: Stack, bucket: str, prefix: str) -> list[str]:
    listed = stack.s3().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def new_bucket(stack: Stack, name: str) -> str:
    """The user's own bucket (the README: the bucket must exist)."""
    s3 = stack.s3()
    if name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=name)
    return name


def online_workers(stack: Stack, pool: str) -> list[str]:
    workers = stack.prefect_post(f"work_pools/{pool}/workers/filter", {})
    return [w["name"] for w in workers if w.get("status") == "ONLINE"]


def logins(stack: Stack, prefix: str, mlflow: bool = False) -> dict[str, str]:
    """The servers' logins, in the copy's .env as a user writes them (README step 2)."""
    found = {f"{prefix}_PREFECT_API_AUTH_STRING": stack.env["PREFECT_API_AUTH_STRING"]}
    if mlflow:
        found |= {
            f"{prefix}_MLFLOW_TRACKING_USERNAME": stack.env["MLFLOW_TRACKING_USERNAME"],
            f"{prefix}_MLFLOW_TRACKING_PASSWORD": stack.env["MLFLOW_TRACKING_PASSWORD"],
        }
    return found


def s3_settings(stack: Stack, prefix: str) -> dict[str, str]:
    return {
        f"{prefix}_S3_ENDPOINT_URL": stack.env["S3_ENDPOINT_URL"],
        f"{prefix}_S3_ACCESS_KEY_ID": stack.env["S3_ACCESS_KEY_ID"],
        f"{prefix}_S3_SECRET_ACCESS_KEY": stack.env["S3_SECRET_ACCESS_KEY"],
    }


# ---- pattern 1 --------------------------------------------------------------------
@pytest.mark.timeout(1500)
def test_p1_copied_out_trains_registers_and_serves(stack: Stack, tmp_path: Path) -> None:
    copy = copy_out("p1_prefect_mlflow", tmp_path)
    model, experiment = "copyout-p1-model", "copyout-p1"
    dot_env(
        copy,
        P1_PREFECT_API_URL=stack.prefect,
        P1_MLFLOW_TRACKING_URI=stack.mlflow,
        P1_EXPERIMENT_NAME=experiment,
        P1_MODEL_NAME=model,
        **s3_settings(stack, "P1"),
        **logins(stack, "P1", mlflow=True),
    )
    sync(copy)
    fast_tests(copy)
    ok(sh(copy, UV, "run", "dvc", "remote", "modify", "storage", "url", "s3://dvc/copyout-p1"), "dvc remote modify")
    ok(
        sh(copy, UV, "run", "dvc", "remote", "modify", "storage", "endpointurl", stack.env["S3_ENDPOINT_URL"]),
        "dvc remote modify endpointurl",
    )
    git(copy, "commit", "-q", "-am", "point the DVC remote at our bucket")
    ok(sh(copy, UV, "run", "python", "data.py", "publish"), "data.py publish")
    done = ok(sh(copy, UV, "run", "python", "flow.py"), "flow.py")

    result = parse_result(done.stdout)
    assert result["status"] == "ok" and result["decision"] == "promoted", result
    assert result["model"] == model and result["version"] == result["champion"] == "1", result
    assert int(result["predictions"]) > 0
    # MLflow: the version, the alias and the run with its lineage (the copy's own commit).
    (version,) = stack.model_versions(model)
    assert version["version"] == "1" and version["run_id"] == result["mlflow_run"]
    assert stack.alias_version(model, "champion") == "1"
    mlflow_run = stack.mlflow_get("runs/get", run_id=result["mlflow_run"])["run"]
    tags = {t["key"]: t["value"] for t in mlflow_run["data"]["tags"]}
    assert tags["git_commit"] == git(copy, "rev-parse", "HEAD"), "the copy's commit, clean (.gitignore)"
    assert tags["dvc_data_md5"] == result["data_md5"] and tags["prefect_flow_run_id"] == result["prefect_flow_run"]
    # DVC pushed the data to the remote the copy points at; Prefect has the run.
    assert s3_keys(stack, "dvc", "copyout-p1/"), "nothing under s3://dvc/copyout-p1/"
    assert stack.prefect_get(f"flow_runs/{result['prefect_flow_run']}")["state"]["type"] == "COMPLETED"


# ---- pattern 2 --------------------------------------------------------------------
@pytest.mark.timeout(1500)
def test_p2_copied_out_runs_the_dag_and_the_kfp_pipeline(stack: Stack, tmp_path: Path) -> None:
    copy = copy_out("p2_airflow_kfp", tmp_path)
    bucket, day = new_bucket(stack, "copyout-p2"), "2031-05-01"
    dot_env(copy, P2_BUCKET=bucket, **s3_settings(stack, "P2"))
    sync(copy)
    sync(copy, cwd=copy / "pipeline")
    fast_tests(copy)
    fast_tests(copy, cwd=copy / "pipeline")
    done = ok(sh(copy, UV, "run", "python", "-m", "harness", "--date", day), "python -m harness")

    result = parse_result(done.stdout)
    assert result["status"] == "ok" and result["decision"] == "published" and result["mode"] == "local", result
    assert result["dataset"] == f"s3://{bucket}/datasets/wine/ds={day}/wine.csv"
    assert result["published"] == f"s3://{bucket}/published/ds={day}"
    assert result["reused"] == "false" and float(result["accuracy"]) >= 0.9
    assert s3_keys(stack, bucket, f"datasets/wine/ds={day}/"), "no dataset in the copy's bucket"
    assert s3_keys(stack, bucket, f"published/ds={day}/"), "nothing published in the copy's bucket"
    # Both DAGs ran in-process (no Airflow URL in the copy): Airflow's home and kfp.local's outputs are the copy's own.
    assert result["etl_run"] != "none" and result["train_run"] != "none"
    assert (copy / ".state" / "airflow-dag-test" / "airflow.db").is_file()
    assert git(copy, "status", "--porcelain") == "", "the run left files git does not ignore"


# ---- pattern 3 --------------------------------------------------------------------
READ_BACK = """
import json, sys
from settings import P3Settings

P3Settings().export_to_environ()
from metaflow import Flow, namespace

namespace(None)
run = next(iter(Flow("P3TrainFlow").runs("prefect_flow_run_id:" + sys.argv[1])))
print(json.dumps({"pathspec": run.pathspec, "cv_accuracy": run.data.cv_accuracy, "sha": run.data.data_sha256}))
"""


@pytest.mark.timeout(1800)
def test_p3_copied_out_fans_out_on_its_own_workers(stack: Stack, tmp_path: Path) -> None:
    copy = copy_out("p3_metaflow_prefect", tmp_path)
    pool = "copyout-p3"
    dot_env(
        copy,
        P3_PREFECT_API_URL=stack.prefect,
        P3_METAFLOW_S3_ROOT="s3://metaflow/copyout-p3",
        P3_WORK_POOL=pool,
        P3_DEPLOYMENT="copyout-p3-train",
        **s3_settings(stack, "P3"),
        **logins(stack, "P3"),
    )
    sync(copy)
    fast_tests(copy)
    ok(sh(copy, UV, "run", "python", "flow.py", "deploy"), "flow.py deploy")
    with (
        background(copy, UV, "run", "python", "worker.py", "copyout-w1", log=tmp_path / "w1.log"),
        background(copy, UV, "run", "python", "worker.py", "copyout-w2", log=tmp_path / "w2.log"),
    ):
        wait_for(lambda: len(online_workers(stack, pool)) >= 2, 300, "two workers of the copy polling its pool")
        done = sh(copy, UV, "run", "python", "flow.py", "--grid", "50x4,100x0")
    logs = "".join((tmp_path / f"w{i}.log").read_text()[-2000:] for i in (1, 2))
    ok(done, f"flow.py (worker logs: {logs})")

    result = parse_result(done.stdout)
    assert result["status"] == "ok" and result["runs"] == "2", result
    # Prefect: the fan-out's two child runs, completed by the copy's workers.
    fan_out = stack.prefect_get(f"flow_runs/{result['prefect_flow_run']}")
    assert fan_out["state"]["type"] == "COMPLETED"
    children = stack.prefect_post(
        "flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [result["prefect_flow_run"]]}}}
    )
    finished = [c for c in children if c["state"]["type"] == "COMPLETED"]
    assert len(finished) == 2, [c["state"]["type"] for c in children]
    for child in finished:
        assert child["labels"]["prefect.worker.name"].startswith(("copyout-w1-pid", "copyout-w2-pid")), child["labels"]
    # Metaflow: each run read back from the copy, as its README shows; the best is one of them.
    read = [
        json.loads(
            ok(sh(copy, UV, "run", "python", "-c", READ_BACK, c["id"]), "Metaflow read-back").stdout.splitlines()[-1]
        )
        for c in finished
    ]
    assert result["best"] in {r["pathspec"] for r in read}, (result, read)
    assert all(r["sha"].startswith(result["data_sha256"]) for r in read), read
    assert s3_keys(stack, "metaflow", "copyout-p3/metaflow/P3TrainFlow/"), "no Metaflow artifacts on S3"


# ---- pattern 4 --------------------------------------------------------------------
@pytest.mark.timeout(1800)
def test_p4_copied_out_runs_the_cd_cycle_outside_github_actions(stack: Stack, tmp_path: Path) -> None:
    copy = copy_out("p4_github_actions_prefect", tmp_path)
    bucket, pool = new_bucket(stack, "copyout-p4"), "copyout-p4"
    # Source releases: image builds need a Docker engine (and run in GitHub Actions).
    dot_env(
        copy,
        P4_PREFECT_API_URL=stack.prefect,
        P4_MODEL_BUCKET=bucket,
        P4_BUILD="source",
        P4_WORK_POOL=pool,
        **s3_settings(stack, "P4"),
        **logins(stack, "P4"),
    )
    sync(copy)
    for stage in (("ruff", "check", "."), ("ruff", "format", "--check", ".")):
        ok(sh(copy, UV, "run", "--locked", *stage), " ".join(stage))
    fast_tests(copy)
    ok(sh(copy, UV, "run", "--locked", "python", "release.py", "build"), "release.py build")
    ok(sh(copy, UV, "run", "--locked", "python", "release.py", "deploy"), "release.py deploy")
    with background(copy, UV, "run", "--locked", "python", "worker.py", "copyout-p4", log=tmp_path / "w.log"):
        done = sh(copy, UV, "run", "--locked", "python", "release.py", "run")
    ok(done, f"release.py run (worker log: {(tmp_path / 'w.log').read_text()[-3000:]})")

    result = parse_result(done.stdout)
    head = git(copy, "rev-parse", "HEAD")
    assert result["status"] == "ok" and result["state"] == "COMPLETED" and result["mode"] == "source", result
    assert result["release"] == head, "the release is the copy's own commit, clean"
    prefix = f"models/{head}/{result['retrain_run']}"
    assert result["model"] == f"s3://{bucket}/{prefix}/model.joblib"
    assert f"{prefix}/model.joblib" in s3_keys(stack, bucket, prefix)
    card = json.loads(stack.s3().get_object(Bucket=bucket, Key="models/latest.json")["Body"].read())
    assert card["release"] == head and card["flow_run_id"] == result["retrain_run"]
    assert card["code_dir"].startswith(str(copy / ".state" / "releases")), card["code_dir"]
    assert s3_keys(stack, bucket, f"predictions/{head}/{result['score_run']}"), "no predictions on S3"
    # Prefect: both runs from the copy's deployments, on its pool, run by its worker.
    for run_id in (result["retrain_run"], result["score_run"]):
        flow_run = stack.prefect_get(f"flow_runs/{run_id}")
        assert flow_run["state"]["type"] == "COMPLETED" and flow_run["work_pool_name"] == pool
        assert flow_run["labels"]["prefect.worker.name"].startswith("copyout-p4-pid"), flow_run["labels"]
        assert f"release:{head}" in flow_run["tags"]
