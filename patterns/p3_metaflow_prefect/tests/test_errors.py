"""The error type and the mapping of failures to `error:` / `fix:` text."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

from errors import P3Error, exception_line, fan_out_failed, not_started, tail

TRACEBACK = """Traceback (most recent call last):
  File "trainflow.py", line 40, in start
    raise ValueError("bad parameter: n_estimators=0 is outside 1-2000")
ValueError: bad parameter: n_estimators=0 is outside 1-2000
    Internal error
"""


def test_p3_error_renders_the_problem_and_the_fix_and_survives_pickling() -> None:
    error = P3Error("S3 is unreachable.", "start it.")
    assert error.render() == "error: S3 is unreachable.\n  fix: start it."
    assert str(error) == "S3 is unreachable. Fix: start it."
    again = pickle.loads(pickle.dumps(error))  # Prefect pickles a failed flow's exception
    assert isinstance(again, P3Error) and (again.problem, again.fix) == (error.problem, error.fix)


def test_the_exception_line_of_a_traceback() -> None:
    assert exception_line(TRACEBACK) == "ValueError: bad parameter: n_estimators=0 is outside 1-2000"
    assert exception_line("all fine\nno error here") == ""
    assert tail("a\n\nb\nc\n", 2) == "b | c"


def test_a_run_that_never_started_names_the_cli_error() -> None:
    error = not_started("P3TrainFlow", "Usage: ...\nError: no such option: --nope\n")
    assert error.problem == "Metaflow did not start a run of P3TrainFlow: Error: no such option: --nope"
    assert "Metaflow settings in .env.example" in error.fix


def test_a_failed_fan_out_lists_each_failed_run_in_grid_order() -> None:
    def child(name: str, kind: str, message: str) -> SimpleNamespace:
        state = SimpleNamespace(type=SimpleNamespace(value=kind), message=message)
        return SimpleNamespace(name=name, id=f"id-{name}", state=state)

    failed = {
        "0x8": child("red-fox", "FAILED", "Flow run encountered an exception: P3Error: Metaflow run X failed"),
        "30x4": child("blue-owl", "CRASHED", "no heartbeat for 75 s"),
    }
    error = fan_out_failed(failed, 4)
    assert error.problem == (
        "2 of 4 training runs failed, so none was compared or published:\n"
        "  0x8 (flow run red-fox, id-red-fox) FAILED: Metaflow run X failed\n"
        "  30x4 (flow run blue-owl, id-blue-owl) CRASHED: no heartbeat for 75 s"
    )
    assert "each line names the Metaflow run or task" in error.fix
