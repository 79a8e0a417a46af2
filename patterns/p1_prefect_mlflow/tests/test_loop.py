"""The loop's contracts, no service: derived batches (the same bytes for the
same seed, a shift that scales every feature), a data version asked for by an
event (exactly that one, or an error), the triggers Prefect renders from an
event, the drift measure on real Evidently, and the scoring's output."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import POINTER

import data
import events
from checks import validate
from cli import main
from drift import Drift, measure
from errors import P1Error
from flow import scoring_flow, training_flow
from report import scoring_result_line
from settings import P1Settings

POINTER_MD5 = yaml.safe_load(POINTER.read_text())["outs"][0]["md5"]


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("batches")
    made = {}
    for name, seed, shift in [("a", 1, 0.0), ("again", 1, 0.0), ("b", 2, 0.0), ("shifted", 1, 0.5)]:
        made[name] = folder / f"{name}.csv"
        data.derive_batch(made[name], seed, shift)
    return made


# ## Derived batches
def test_a_batch_is_the_same_bytes_for_the_same_seed(batches) -> None:
    assert batches["a"].read_bytes() == batches["again"].read_bytes()
    assert batches["a"].read_bytes() != batches["b"].read_bytes()


def test_a_batch_passes_the_flows_validation_with_its_labels(batches) -> None:
    frame = validate.fn(batches["a"], 0.05)
    assert len(frame) == data.BATCH_ROWS and list(frame.columns) == [*data.FEATURES, data.TARGET]
    assert set(frame[data.TARGET]) == {0, 1}


def test_a_shift_scales_every_feature_and_keeps_the_labels(batches) -> None:
    plain, shifted = pd.read_csv(batches["a"]), pd.read_csv(batches["shifted"])
    assert shifted[data.TARGET].equals(plain[data.TARGET])
    ratio = (shifted[data.FEATURES] / plain[data.FEATURES]).stack().dropna()
    assert ratio.between(1.5 * (1 - 1e-5), 1.5 * (1 + 1e-5)).all()  # %.6g in the CSV


def test_an_event_names_a_path_relative_to_this_folder() -> None:
    assert data.relative_name(data.BATCHES / "x.csv") == "data/batches/x.csv"
    assert data.relative_name(Path("/elsewhere/y.csv")) == "/elsewhere/y.csv"


# ## Exactly the version an event names
def test_the_version_the_pointer_names_is_resolved_from_a_relative_path() -> None:
    settings = P1Settings(_env_file=None)
    version = data.resolve("data/raw/breast_cancer.csv", POINTER_MD5, settings)
    assert version.md5 == POINTER_MD5 and version.pointer == POINTER


def test_another_version_than_the_pointer_names_is_an_error_with_the_fix() -> None:
    with pytest.raises(P1Error) as error:
        data.resolve("data/raw/breast_cancer.csv", "0" * 32, P1Settings(_env_file=None))
    assert error.value.problem == (f"data version {'0' * 32} was asked for, but {POINTER} names {POINTER_MD5}")
    assert "publish that version of breast_cancer.csv again" in error.value.fix


# ## The triggers, rendered by Prefect's own server code from an event
@pytest.mark.parametrize("name", [events.DATA_PUBLISHED, events.DRIFT_DETECTED])
def test_each_event_starts_a_run_on_the_version_it_names(name: str) -> None:
    from prefect.events import Event
    from prefect.server.events.actions import RunDeployment
    from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

    (trigger,) = [t for t in events.triggers() if t.expect == {name}]
    assert trigger.match.model_dump() == {"prefect.resource.id": "p1.data.*"}
    event = Event(
        event=name,
        resource={"prefect.resource.id": f"p1.data.{POINTER_MD5}"},
        payload={"data_file": "data/batches/b.csv", "data_md5": POINTER_MD5},
    )
    parameters = dict(trigger.parameters)
    RunDeployment._upgrade_v1_templates(parameters)
    rendered = hydrate(parameters, HydrationContext(render_jinja=True, jinja_context={"event": event}))
    assert rendered == {
        "data_file": "data/batches/b.csv",
        "data_md5": POINTER_MD5,
        "trigger_event": f"{name}:{event.id}",
    }
    flow_parameters = {p for p in training_flow.parameters.properties}
    assert set(rendered) <= flow_parameters


# ## Drift, measured by Evidently
def test_a_batch_like_the_training_data_does_not_drift_and_a_shifted_one_does(batches) -> None:
    from sklearn.datasets import load_breast_cancer

    reference = load_breast_cancer(as_frame=True).frame.iloc[:, :30]
    reference.columns = data.FEATURES
    calm, _ = measure(reference, pd.read_csv(batches["a"]), 0.5)
    assert calm.share < 0.5 and not calm.detected
    shifted, _ = measure(reference, pd.read_csv(batches["shifted"]), 0.5)
    assert shifted.detected and sorted(shifted.drifted) == sorted(data.FEATURES) and shifted.share == 1.0


def test_drift_is_detected_at_the_threshold_itself() -> None:
    assert Drift(share=0.5, threshold=0.5).detected and not Drift(share=0.49, threshold=0.5).detected


# ## The scoring's command line and output
def test_score_takes_only_the_data_parameters(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(training_flow, ["score", "--n-estimators", "3"], scoring=scoring_flow)
    assert exited.value.code == 2 and "unrecognized arguments: --n-estimators" in capsys.readouterr().err


def test_a_failed_scoring_says_so_in_its_result_line(environ, capsys) -> None:
    environ["P1_PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # nothing listens on the discard port
    assert main(training_flow, ["score", "--data-file", "x.csv"], scoring=scoring_flow) == 1
    err = capsys.readouterr().err
    assert "error: Prefect API at http://127.0.0.1:9/api/health is unreachable" in err
    assert err.rstrip().endswith("Result: pattern=p1 step=score status=failed")


def test_the_scoring_result_line() -> None:
    drift = {"share": 1.0, "threshold": 0.5, "mlflow_run_id": "r1"}
    line = scoring_result_line(
        {
            "status": "ok",
            "champion_version": "2",
            "drift": drift,
            "event": "p1.drift.detected:e1",
            "prefect_flow_run_id": "f1",
            "data_md5": "m1",
            "predictions": 400,
        }
    )
    assert line == (
        "Result: pattern=p1 step=score status=ok champion=2 drift_share=1.0000 drifted=yes "
        "event=p1.drift.detected:e1 mlflow_run=r1 prefect_flow_run=f1 data_md5=m1 predictions=400"
    )


def test_each_loop_run_publishes_new_batches() -> None:
    import loop

    assert loop.last_run([]) == 0
    assert loop.last_run(["loop-1-fresh.csv.dvc", "loop-7-shifted.csv", "twice.csv.dvc", "loop-x-fresh.csv"]) == 7


def test_seed_and_shift_without_a_batch_are_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        data.main(["publish", "--shift", "0.5"])
    assert exited.value.code == 2 and "give --batch NAME too" in capsys.readouterr().err


def test_two_loops_started_together_claim_different_batches(tmp_path: Path, monkeypatch) -> None:
    import loop

    monkeypatch.setattr(data, "BATCHES", tmp_path)
    monkeypatch.setattr(loop, "next_run", lambda settings: 3)  # both read the same N
    assert [loop.claim_run(None), loop.claim_run(None)] == [3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop-3-fresh.csv", "loop-4-fresh.csv"]


# ## A checkout that cannot be written (the compose tier's p1-retrain container)
def test_a_read_only_checkout_pulls_into_a_dvc_project_of_its_own(tmp_path: Path, monkeypatch) -> None:
    """The version is fetched into $TMPDIR/p1-dvc/<md5>: the checkout's remote, a copy of
    the pointer, no git; DVC opens it as a project."""
    from types import SimpleNamespace

    monkeypatch.setattr(data.tempfile, "gettempdir", lambda: str(tmp_path))
    version = data.data_version(POINTER.with_suffix(""))
    scratch = data.scratch_project(version)
    assert scratch.dvc_root == tmp_path / "p1-dvc" / POINTER_MD5 and scratch.md5 == version.md5
    assert scratch.path == scratch.dvc_root / "breast_cancer.csv" and not scratch.path.exists()
    assert scratch.pointer.read_text() == POINTER.read_text()
    config = (scratch.dvc_root / ".dvc" / "config").read_text()
    assert "no_scm = true" in config and "url = s3://dvc/p1_prefect_mlflow" in config
    settings = SimpleNamespace(s3_endpoint_url="http://127.0.0.1:1", s3_access_key_id="k", s3_secret_access_key="s")
    repo = data.open_repo(scratch.dvc_root, settings)
    try:
        assert repo.config["core"]["remote"] == "storage" and type(repo.scm).__name__ == "NoSCM"
    finally:
        repo.close()
    assert data.scratch_project(version) == scratch  # a second pull of that version: the same project
