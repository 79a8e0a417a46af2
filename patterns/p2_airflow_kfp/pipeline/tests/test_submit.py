"""submit.py without a pipeline run: the parameters it accepts (the pipeline
signature's, each of its type), a component's error as the task will show it,
and the idempotency decision: a run name with a record is reused, with the
same parameters only."""

from __future__ import annotations

import argparse
import json

import pytest
import submit
from submit import SubmitError


def test_parameters_are_the_pipelines_own_with_their_types() -> None:
    assert submit.parse_params('{"n_estimators": 50, "max_depth": 0, "test_size": 0.3, "random_state": 7.0}') == {
        "n_estimators": 50,
        "max_depth": 0,
        "test_size": 0.3,
        "random_state": 7,
    }
    assert submit.parse_params("") == {}
    assert isinstance(submit.parse_params('{"test_size": 1}')["test_size"], float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"learning_rate": 0.1}', "unknown pipeline parameter 'learning_rate'; known: ['max_depth', "),
        ('{"dataset_uri": "s3://b/k"}', "unknown pipeline parameter 'dataset_uri'"),  # an option of its own
        ('{"n_estimators": 1.5}', "pipeline parameter n_estimators=1.5 must be a int"),
        ('{"n_estimators": true}', "pipeline parameter n_estimators=True must be a int"),
        ('{"test_size": "a quarter"}', "pipeline parameter test_size='a quarter' must be a float"),
        ("[200]", "--params-json must be a JSON object"),
    ],
)
def test_parameters_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(SubmitError) as failed:
        submit.parse_params(text)
    assert message in str(failed.value)


def test_a_components_error_is_its_last_exception() -> None:
    log = (
        "\x1b[32mvalidate: reading\x1b[0m\n"
        "Traceback (most recent call last):\n"
        "  File ...\n"
        "botocore.exceptions.ClientError: An error occurred (NoSuchKey)\n"
        "Traceback (most recent call last):\n"
        "ValueError: validate: s3://p2-data/x.csv has 1 class(es) {0: 59}; training needs at least 2\n"
    )
    assert submit.component_error(submit.ANSI.sub("", log)) == (
        "ValueError: validate: s3://p2-data/x.csv has 1 class(es) {0: 59}; training needs at least 2"
    )
    assert submit.component_error("no traceback here") == ""


def test_export_uri_must_be_an_s3_prefix() -> None:
    with pytest.raises(SubmitError, match="is not an s3://bucket/prefix URI"):
        submit.read_record("/tmp/runs/r")


def _args(**given) -> argparse.Namespace:
    return argparse.Namespace(**({"mode": "local", "run_name": "r", "export_uri": "s3://b/runs/r"} | given))


def test_a_recorded_run_is_reused_and_nothing_executes(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*args, **kwargs):
        raise AssertionError("a recorded run executed again")

    monkeypatch.setattr(submit, "run_local", must_not_run)
    monkeypatch.setattr(submit, "write_record", must_not_run)
    record = {"run_name": "r", "run_id": "local-abc", "state": "SUCCEEDED", "params": {"n_estimators": 5}}
    result: dict = {}
    submit._run_or_reuse(_args(), {"n_estimators": 5}, record, result)
    assert result == {"run_id": "local-abc", "state": "SUCCEEDED", "reused": True}


def test_a_recorded_run_with_other_parameters_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submit, "run_local", lambda *a: pytest.fail("executed"))
    record = {"run_name": "r", "run_id": "local-abc", "state": "SUCCEEDED", "params": {"n_estimators": 5}}
    with pytest.raises(SubmitError) as failed:
        submit._run_or_reuse(_args(), {"n_estimators": 50}, record, {})
    assert "run r already exists with other parameters" in str(failed.value)
    assert "delete s3://b/runs/r/run.json to train again" in str(failed.value)


def test_no_record_executes_once_and_records_it(monkeypatch: pytest.MonkeyPatch) -> None:
    executed, written = [], []
    monkeypatch.setattr(submit, "run_local", lambda args, params: executed.append(params) or {"run_id": "local-1"})
    monkeypatch.setattr(submit, "write_record", lambda uri, record: written.append((uri, dict(record))))
    result = {"run_name": "r", "params": {"n_estimators": 5}}
    submit._run_or_reuse(_args(), {"n_estimators": 5}, None, result)
    assert executed == [{"n_estimators": 5}] and result["reused"] is False and result["run_id"] == "local-1"
    assert written == [("s3://b/runs/r", result)]  # the record is the result, written after the run


def test_cluster_mode_needs_a_host() -> None:
    with pytest.raises(SubmitError, match="cluster mode needs --host"):
        submit._run_or_reuse(_args(mode="cluster", host=""), {}, None, {})


class _Runs:
    """What kfp.Client.get_run answers for one run, state after state (the
    cluster itself runs only in GitHub Actions: .github/workflows/e2e-kind.yml)."""

    def __init__(self, *states: str, error: str = "") -> None:
        self.states, self.error, self.asked = list(states), error, 0

    def get_run(self, run_id: str) -> argparse.Namespace:
        self.asked += 1
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return argparse.Namespace(run_id=run_id, state=state, error=argparse.Namespace(message=self.error))


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _wait(runs: _Runs, timeout: float = 60):
    clock = _Clock()
    return submit.wait_for_run(runs, "run-1", timeout=timeout, poll=5, clock=clock, sleep=clock.sleep), clock


def test_waiting_ends_when_the_run_succeeds() -> None:
    runs = _Runs("PENDING", "RUNNING", "RUNNING", "SUCCEEDED")
    finished, clock = _wait(runs)
    assert finished.state == "SUCCEEDED" and runs.asked == 4 and clock.now == 15


@pytest.mark.parametrize("states", [("RUNNING", "CANCELING"), ("RUNNING", "CANCELED")])
def test_a_canceled_run_is_reported_canceled_not_waited_on(states: tuple[str, ...]) -> None:
    runs = _Runs(*states)
    with pytest.raises(submit.RunEnded, match=r"KFP run run-1 was canceled \(CANCEL") as ended:
        _wait(runs, timeout=3600)
    assert ended.value.state == "CANCELED" and runs.asked == 2  # kfp's own wait would poll for an hour


def test_a_failed_run_names_its_state_and_error() -> None:
    with pytest.raises(submit.RunEnded, match="KFP run run-1 ended FAILED: train: exit code 1") as ended:
        _wait(_Runs("RUNNING", "FAILED", error="train: exit code 1"))
    assert ended.value.state == "FAILED"


def test_a_run_past_the_timeout_is_an_error_naming_the_option() -> None:
    with pytest.raises(SubmitError, match=r"KFP run run-1 still RUNNING after 12 s \(--timeout\)"):
        _wait(_Runs("RUNNING"), timeout=12)


def test_the_result_reports_a_canceled_run_as_canceled(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def canceled(*args):
        raise submit.RunEnded("KFP run run-1 was canceled (CANCELED); submit it again to train", "CANCELED")

    monkeypatch.setattr(submit, "read_record", lambda uri: None)
    monkeypatch.setattr(submit, "run_cluster", canceled)
    code = submit.main(
        ["--mode", "cluster", "--host", "http://127.0.0.1:1", "--run-name", "r"]
        + ["--dataset-uri", "s3://b/d", "--export-uri", "s3://b/runs/r"]
    )
    result = json.loads(capsys.readouterr().out.splitlines()[-1].removeprefix(submit.RESULT_PREFIX))
    assert code == 1 and result["state"] == "CANCELED" and "was canceled" in result["error"]
