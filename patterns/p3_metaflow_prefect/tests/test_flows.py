"""The contracts between the pieces, checked without a service: what the
fan-out sends is what the training flow accepts, the command line passes on
only what the user gave, and the Metaflow flow owns the training parameters'
defaults and ranges (a bad value must reach its `start` step, which names
the task: tests/p3_metaflow_prefect relies on that)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

import cli
from settings import PATTERN_DIR, P3Settings


@pytest.fixture(scope="module")
def flow():
    import flow

    return flow


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """os.environ restored after the test, the metadata folder in tmp, no .env."""
    monkeypatch.setattr(os, "environ", os.environ.copy())
    monkeypatch.setitem(P3Settings.model_config, "env_file", None)
    monkeypatch.setenv("P3_METAFLOW_METADATA_DIR", str(tmp_path / "metadata"))
    monkeypatch.setenv("P3_PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing may be contacted
    return tmp_path


# ---- the Prefect flows -----------------------------------------------------------------
def test_the_flows_are_named_as_deployed(flow) -> None:
    assert flow.fan_out.name == "p3-fan-out" and flow.train_one.name == "p3-train-one"
    assert flow.train_one.name == flow.CHILD_FLOW


def test_train_one_accepts_what_the_fan_out_sends_even_out_of_range(flow) -> None:
    sent = dict(data_url="s3://metaflow/p3/datasets/d.csv", data_version="a" * 64, folds=3, seed=0)
    for n_estimators, max_depth in [(50, 8), (100, 0), (0, 8), (5, -1)]:
        given = sent | {"n_estimators": n_estimators, "max_depth": max_depth}
        assert flow.train_one.validate_parameters(given) == given


def test_train_one_leaves_missing_training_parameters_to_metaflow(flow) -> None:
    # None is passed on as "not given": run_metaflow leaves the option out.
    assert flow.train_one.validate_parameters({"data_url": "s3://b/d.csv", "n_estimators": 10}) == {
        "data_url": "s3://b/d.csv",
        "data_version": "",
        "n_estimators": 10,
        "max_depth": None,
        "folds": None,
        "seed": None,
    }
    defaults = {k: p.default for k, p in inspect.signature(flow.train_one.fn).parameters.items()}
    assert defaults["data_url"] is inspect.Parameter.empty
    assert [defaults[k] for k in ("n_estimators", "max_depth", "folds", "seed")] == [None] * 4


def test_train_one_refuses_a_parameter_of_the_wrong_type(flow) -> None:
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError):
        flow.train_one.validate_parameters({"data_url": "s3://b/d.csv", "n_estimators": "many"})


def test_a_bare_fan_out_is_the_same_logical_run_as_before(flow) -> None:
    """`python flow.py` passes nothing: fan_out's defaults make the logical run,
    and they give the key main gave before issue 18 (tests/test_keys.py)."""
    from keys import logical_run_key, parse_grid

    params = inspect.signature(flow.fan_out.fn).parameters
    s = P3Settings(P3_METAFLOW_S3_ROOT="s3://metaflow/p3", P3_METAFLOW_METADATA_DIR="/p3-golden/metadata")
    key = logical_run_key(
        s,
        "a" * 64,
        parse_grid(params["grid"].default),
        params["folds"].default,
        params["seed"].default,
        params["run_key"].default,
        f"{flow.CHILD_FLOW}/{s.deployment}",
    )
    assert key == "120433b0ffae7204"


def test_the_deployment_entrypoint_loads_the_training_flow(flow) -> None:
    from prefect.flows import load_flow_from_entrypoint

    loaded = load_flow_from_entrypoint(f"{PATTERN_DIR / 'flow.py'}:train_one")
    assert loaded.name == "p3-train-one"


# ---- the command line ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], {"command": None}),
        (["--grid", "50x8", "--folds", "5"], {"command": None, "grid": "50x8", "folds": 5}),
        (["--run-key", "r1"], {"command": None, "run_key": "r1"}),
        (["deploy"], {"command": "deploy"}),
        (["train-one"], {"command": "train-one"}),
        (["train-one", "--max-depth", "0", "--seed", "2"], {"command": "train-one", "max_depth": 0, "seed": 2}),
    ],
)
def test_the_command_line_passes_on_only_what_was_given(argv: list[str], expected: dict) -> None:
    assert vars(cli.parse_args(argv)) == expected


def test_a_grid_typo_fails_before_anything_is_contacted(isolated, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--grid", "50by8"]) == 1
    err = capsys.readouterr().err
    assert "error: grid item '50by8' is not N_ESTIMATORSxMAX_DEPTH" in err and "\n  fix: " in err


def test_python_flow_py_configures_before_prefect_is_imported(isolated) -> None:
    """`python flow.py` hands over to cli.main() before flow.py imports Prefect,
    so Prefect reads the settings' API URL (and DO_NOT_TRACK) when imported."""
    probe = (
        "import runpy, sys; sys.argv = ['flow.py', '--grid', 'bad']\n"
        "import settings; real = settings.configure\n"
        "def spy():\n"
        "    assert 'prefect' not in sys.modules, 'Prefect imported before configure()'\n"
        "    print('configured first')\n"
        "    return real()\n"
        "settings.configure = spy\n"
        "import cli; cli.configure = spy\n"
        "runpy.run_path('flow.py', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=PATTERN_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "configured first" in done.stdout, done.stderr
    assert "error: grid item 'bad'" in done.stderr and "Prefect imported before" not in done.stderr


# ---- the Metaflow flow -----------------------------------------------------------------
@pytest.fixture(scope="module")
def trainflow():
    import trainflow

    return trainflow


def test_the_metaflow_flow_names_each_value_outside_its_range(trainflow) -> None:
    ok = {"n_estimators": 50, "max_depth": 8, "folds": 3}
    assert trainflow.out_of_range(ok) == []
    assert trainflow.out_of_range(ok | {"max_depth": 0}) == [], "0: no depth limit"
    assert trainflow.out_of_range(ok | {"n_estimators": 0}) == ["n_estimators=0 is outside 1-2000"]
    assert trainflow.out_of_range({"n_estimators": 2001, "max_depth": -1, "folds": 1}) == [
        "n_estimators=2001 is outside 1-2000",
        "max_depth=-1 is outside 0-100 (0 means unlimited)",
        "folds=1 is outside 2-10",
    ]


def test_max_depth_0_becomes_no_limit_at_the_model(trainflow) -> None:
    model = trainflow.P3TrainFlow._model(SimpleNamespace(n_estimators=7, max_depth=0, seed=3))
    assert (model.n_estimators, model.max_depth, model.random_state) == (7, None, 3)
    assert trainflow.P3TrainFlow._model(SimpleNamespace(n_estimators=7, max_depth=4, seed=3)).max_depth == 4


def test_the_metaflow_graph_is_start_train_end(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAFLOW_")} | {"METAFLOW_USER": "tester"}
    done = subprocess.run(
        [sys.executable, str(PATTERN_DIR / "trainflow.py"), "--no-pylint", "show"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    steps = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("Step ")]
    assert steps == ["start", "train", "end"]
    assert "=> train" in done.stdout and "=> end" in done.stdout
