"""`make p2-mwaa-bundle` (mwaa.py): the DAGs laid out for Amazon MWAA, built
here and parsed by Airflow from the bundle alone; never uploaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import mwaa
import pytest

from errors import P2Error
from settings import PATTERN_DIR

CLUSTER = {"P2_KFP_HOST": "http://ml-pipeline.kubeflow:8888", "P2_BUCKET": "my-p2-data"}
PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
train = bag.dags.get("p2_train")
print(json.dumps({"dags": sorted(bag.dag_ids), "errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "files": sorted(s.file for s in bag.dagbag_stats),
                  "submit": type(train.get_task("submit_pipeline")).__name__ if train else None}))
"""


def test_the_bundle_holds_the_dags_their_modules_the_pins_and_the_settings(tmp_path: Path) -> None:
    out = mwaa.build(tmp_path / "mwaa", "3.0.6", "3.12", CLUSTER | {"P2_AIRFLOW_PASSWORD": "pw", "HOME": "/root"})
    folder = out / "dags" / mwaa.DAG_FOLDER
    assert (folder / "dags" / "p2_airflow_kfp.py").read_bytes() == (
        PATTERN_DIR / "dags" / "p2_airflow_kfp.py"
    ).read_bytes()
    assert all((folder / m).is_file() for m in mwaa.MODULES) and (folder / "data" / "wine.csv").is_file()
    locked = {p["name"]: p["version"] for p in tomllib.loads((PATTERN_DIR / "uv.lock").read_text())["package"]}
    # MWAA's constraints pin the versions (a second pin would fail the install); the tested ones are noted
    assert (out / "requirements.txt").read_text().splitlines() == [
        '--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-3.0.6/constraints-3.12.txt"',
        "# tested here with apache-airflow-providers-cncf-kubernetes=="
        f"{locked['apache-airflow-providers-cncf-kubernetes']}, pydantic-settings=={locked['pydantic-settings']} "
        f"on apache-airflow=={locked['apache-airflow']}",
        "apache-airflow-providers-cncf-kubernetes",
        "pydantic-settings",
    ]
    startup = (out / "startup.sh").read_text()
    assert "export P2_KFP_MODE=cluster\n" in startup and "export P2_BUCKET=my-p2-data\n" in startup
    assert "P2_AIRFLOW_PASSWORD" not in startup and "HOME" not in startup  # no credential, nothing but P2_*


def test_airflow_parses_the_bundle_alone_two_dags_and_the_cluster_submit(tmp_path: Path) -> None:
    """The bundle's dags/ as MWAA's DAG folder: no import error, the modules
    beside the DAG not taken for DAG files, the submit task a pod."""
    out = mwaa.build(tmp_path / "mwaa", mwaa.MWAA_AIRFLOW, mwaa.MWAA_PYTHON, CLUSTER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("P2_", "AIRFLOW", "PYTHONPATH", "KFP_"))}
    env |= CLUSTER | {"AIRFLOW_HOME": str(tmp_path / "home"), "P2_KFP_MODE": "cluster"}
    parsed = subprocess.run(
        [sys.executable, "-c", PARSE, str(out / "dags")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert parsed.returncode == 0, parsed.stderr[-3000:]
    found = json.loads(parsed.stdout.splitlines()[-1])
    assert found["errors"] == {} and found["dags"] == ["p2_etl", "p2_train"]
    assert found["submit"] == "KubernetesPodOperator"
    assert [Path(f).name for f in found["files"]] == ["p2_airflow_kfp.py"]  # .airflowignore: modules are not DAGs


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, r"needs cluster mode \(P2_KFP_MODE=local\)"),
        ({"P2_KFP_MODE": "cluster"}, "needs cluster mode"),
        (CLUSTER | {"P2_KFP_MODE": "vertex"}, r"needs cluster mode \(P2_KFP_MODE=vertex\)"),
        (CLUSTER | {"P2_S3_ENDPOINT_URL": "http://127.0.0.1:8333"}, "points at this machine"),
    ],
)
def test_a_bundle_mwaa_could_not_run_is_refused_and_nothing_is_written(tmp_path: Path, environ, problem) -> None:
    with pytest.raises(P2Error, match=problem):
        mwaa.build(tmp_path / "mwaa", "3.3.2", "3.12", environ)
    assert not (tmp_path / "mwaa").exists()
